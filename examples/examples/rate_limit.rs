//! A rate-limited worker pool, as a tokio user would write it with
//! `governor`: four workers share one GCRA limiter (`weft_resilience`),
//! each taking a token per job. The limiter's per-thread leases (on by
//! default with the coarse clock) are checked to admit no more than the
//! rate and burst allow. Then the two ways a wait for a token ends early:
//! the caller's deadline (refused at once, nothing taken) and an explicit
//! cancel of its scope (the reserved token is given back).
//!
//! ```text
//! cargo run --release -p weft-examples --example rate_limit
//! WEFT_IO=epoll cargo run --release -p weft-examples --example rate_limit
//! ```

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use weft::{cancel::scope, task::Builder, time::sleep};
use weft_resilience::{
    caller::CallerEnd,
    limit::{ConfigError, Gcra, RateError},
};

const RATE: u64 = 2_000; // tokens per second
const BURST: u32 = 200;

async fn pool() -> Result<(), String> {
    // 1. Four workers hammer one limiter for 300 ms.
    let limiter = Arc::new(
        Gcra::builder()
            .rate(RATE, Duration::from_secs(1))
            .burst(BURST)
            .build()
            .map_err(|e| e.to_string())?,
    );
    let admitted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let run_for = Duration::from_millis(300);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
            weft::spawn(async move {
                while start.elapsed() < run_for {
                    match limiter.try_acquire() {
                        Ok(()) => {
                            admitted.fetch_add(1, Relaxed);
                        }
                        // Out of tokens: wait for the next one, as a worker
                        // loop would, then try again.
                        Err(RateError::Exhausted { retry_after }) => {
                            let _ = sleep(retry_after.min(Duration::from_millis(1))).await;
                        }
                        Err(other) => panic!("unexpected refusal: {other}"),
                    }
                    weft::task::yield_now().await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    let admitted = admitted.load(Relaxed);
    // The coarse clock may lag the true time by a couple of kernel ticks:
    // allow 10 ms of credit on top of the exact bound.
    let bound =
        u64::from(BURST) + RATE * (elapsed + Duration::from_millis(10)).as_millis() as u64 / 1000;
    println!(
        "1. 4 workers, {RATE}/s, burst {BURST}, {} ms: {admitted} jobs admitted (bound {bound}), {} refusals",
        elapsed.as_millis(),
        limiter.metrics().rejected
    );
    if admitted > bound {
        return Err(format!(
            "{admitted} admitted, more than the rate allows ({bound})"
        ));
    }
    if admitted < u64::from(BURST) {
        return Err(format!("only {admitted} admitted: not even the burst"));
    }

    // 2. A caller whose deadline comes before the next token: refused at
    //    once, nothing taken.
    let slow = Arc::new(
        Gcra::builder()
            .rate(1, Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?,
    );
    slow.try_acquire().map_err(|e| e.to_string())?; // the burst of one
    let l = Arc::clone(&slow);
    let asked = Instant::now();
    let result = Builder::new()
        .timeout(Duration::from_millis(200))
        .spawn(async move { l.acquire(1, Duration::from_secs(5)).await })
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "2. a 200 ms deadline against a 1 s wait: {result:?} after {} ms",
        asked.elapsed().as_millis()
    );
    match result {
        Err(RateError::DeadlineTooSoon { .. })
        | Err(RateError::Cancelled(CallerEnd::DeadlineExceeded)) => {}
        other => return Err(format!("the deadline did not reach the wait: {other:?}")),
    }
    if slow.metrics().retry_after <= Duration::from_millis(700) {
        return Err("the refused caller took a token".into());
    }

    // 3. An explicit cancel of a waiting caller's scope: the wait ends at
    //    once and its reserved token goes back.
    let limiter = Arc::new(
        Gcra::builder()
            .rate(4, Duration::from_secs(1))
            .build()
            .map_err(|e| e.to_string())?,
    );
    limiter.try_acquire().map_err(|e| e.to_string())?;
    let l = Arc::clone(&limiter);
    let waiter = scope(async move { l.acquire(1, Duration::from_secs(1)).await });
    let handle = waiter.handle();
    let task = weft::spawn(waiter);
    let _ = sleep(Duration::from_millis(20)).await;
    let cancelled_at = Instant::now();
    handle.cancel();
    let result = task.await.map_err(|e| e.to_string())?;
    println!(
        "3. cancelled while waiting for a token: {result:?} {} µs after the cancel",
        cancelled_at.elapsed().as_micros()
    );
    if result != Err(RateError::Cancelled(CallerEnd::Cancelled)) {
        return Err(format!("the cancel did not reach the wait: {result:?}"));
    }
    if limiter.metrics().retry_after > Duration::from_millis(250) {
        return Err("the cancelled caller's token was not given back".into());
    }

    // 4. A bad setting is an error that says which.
    match Gcra::builder().lease(0).build() {
        Err(e @ ConfigError::ZeroLease) => println!("4. lease(0): {e}"),
        other => return Err(format!("lease(0) was accepted: {other:?}")),
    }
    Ok(())
}

fn main() -> ExitCode {
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    println!("io driver: {:?}", rt.io_driver());
    match rt.block_on(pool()) {
        Ok(()) => {
            println!("rate, deadline and cancel held");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rate_limit example failed: {e}");
            ExitCode::FAILURE
        }
    }
}
