//! A fan-in pipeline, as a tokio user would write it: four producers feed
//! one consumer through a bounded `weft::sync::mpsc` channel on a
//! two-worker runtime. The runtime is built with `steal_age` (weft's
//! default, 20 µs, spelled out): an idle worker leaves a short run queue to
//! its owner for that long, so the consumer and the producers it wakes stay
//! on one worker instead of trading every message across the cores;
//! `Duration::ZERO` steals at once, as tokio does. Both settings run the
//! pipeline (times printed, not checked: benches/ measures them).
//!
//! Then every await point of the pipeline is shown to end on a deadline
//! and on an explicit cancel, with nothing lost: a send waiting for
//! capacity gets its value back, a receive waiting for a message takes
//! nothing. A steal age past the limit is a build error that says so.
//!
//! ```text
//! cargo run --release -p weft-examples --example fan_in
//! WEFT_IO=epoll cargo run --release -p weft-examples --example fan_in
//! ```

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use weft::{
    cancel::{scope, Cause},
    runtime::Builder,
    sync::mpsc::{self, RecvError, SendError},
    task,
    time::sleep,
};

const PRODUCERS: u64 = 4;
const PER_PRODUCER: u64 = 250_000;

/// Four producers, one consumer; returns the sum the consumer saw.
async fn pipeline() -> Result<u64, String> {
    let (tx, mut rx) = mpsc::channel::<u64>(1024);
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        weft::spawn(async move {
            for i in 0..PER_PRODUCER {
                if tx.send(p * PER_PRODUCER + i).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let consumer = weft::spawn(async move {
        let (mut n, mut sum) = (0u64, 0u64);
        while let Ok(v) = rx.recv().await {
            n += 1;
            sum += v;
        }
        (n, sum)
    });
    let (n, sum) = consumer.await.map_err(|e| e.to_string())?;
    if n != PRODUCERS * PER_PRODUCER {
        return Err(format!("{n} messages arrived"));
    }
    Ok(sum)
}

/// Runs `wait` as a task in a scope of its own and cancels the scope
/// 10 ms later, while `wait` is blocked; its output.
async fn cancelled_while_waiting<F>(wait: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let waiting = scope(wait);
    let handle = waiting.handle();
    let task = weft::spawn(waiting);
    sleep(Duration::from_millis(10))
        .await
        .map_err(|e| e.to_string())?;
    handle.cancel();
    task.await.map_err(|e| e.to_string())
}

/// Each wait of the pipeline under a deadline and under a cancel.
async fn waits_end_early() -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel::<u64>(1);
    tx.try_send(1).map_err(|e| e.to_string())?; // full from now on

    // A send waiting for capacity, under a 50 ms deadline.
    let t = tx.clone();
    let sent = task::Builder::new()
        .timeout(Duration::from_millis(50))
        .spawn(async move { t.send(2).await })
        .await
        .map_err(|e| e.to_string())?;
    match sent {
        Err(SendError::Cancelled(2, c)) if c.cause() == Cause::Deadline => {
            println!("send, deadline: value 2 back, {c}")
        }
        other => return Err(format!("the deadline did not reach send: {other:?}")),
    }

    // The same send, its scope cancelled.
    let t = tx.clone();
    match cancelled_while_waiting(async move { t.send(3).await }).await? {
        Err(SendError::Cancelled(3, c)) if c.cause() == Cause::Explicit => {
            println!("send, cancel: value 3 back, {c}")
        }
        other => return Err(format!("the cancel did not reach send: {other:?}")),
    }

    // Drain: the channel holds exactly the first message.
    if rx.try_recv() != Ok(1) || rx.try_recv().is_ok() {
        return Err("a cancelled send queued its value".into());
    }

    // A receive waiting on the empty channel, under a deadline, then
    // cancelled; a message sent afterwards is still there for the next
    // receive.
    let (mut rx, received) = task::Builder::new()
        .timeout(Duration::from_millis(50))
        .spawn(async move {
            let r = rx.recv().await;
            (rx, r)
        })
        .await
        .map_err(|e| e.to_string())?;
    match received {
        Err(RecvError::Cancelled(c)) if c.cause() == Cause::Deadline => {
            println!("recv, deadline: {c}")
        }
        other => return Err(format!("the deadline did not reach recv: {other:?}")),
    }
    let (mut rx, received) = cancelled_while_waiting(async move {
        let r = rx.recv().await;
        (rx, r)
    })
    .await?;
    match received {
        Err(RecvError::Cancelled(c)) if c.cause() == Cause::Explicit => {
            println!("recv, cancel: {c}")
        }
        other => return Err(format!("the cancel did not reach recv: {other:?}")),
    }
    tx.try_send(4).map_err(|e| e.to_string())?;
    if rx.recv().await != Ok(4) {
        return Err("a message sent after the cancelled receives was lost".into());
    }
    Ok(())
}

fn run(steal_age: Duration) -> Result<(), String> {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .steal_age(steal_age)
        .build()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let sum = rt.block_on(pipeline())?;
    let n = PRODUCERS * PER_PRODUCER;
    if sum != n * (n - 1) / 2 {
        return Err(format!("the consumer summed {sum}"));
    }
    println!(
        "steal_age {steal_age:?}: {n} messages from {PRODUCERS} producers in {:?}",
        start.elapsed()
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = (|| {
        run(Duration::from_micros(20))?;
        run(Duration::ZERO)?;
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .map_err(|e| e.to_string())?;
        println!("io driver: {:?}", rt.io_driver());
        rt.block_on(waits_end_early())?;
        match Builder::new_multi_thread()
            .steal_age(Duration::from_millis(500))
            .build()
        {
            Err(e) => println!("steal_age(500ms): {e}"),
            Ok(_) => return Err("a 500 ms steal age was accepted".into()),
        }
        Ok::<(), String>(())
    })();
    match result {
        Ok(()) => {
            println!("fan-in, deadlines and cancels held");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fan_in example failed: {e}");
            ExitCode::FAILURE
        }
    }
}
