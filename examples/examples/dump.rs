//! A small service and its task dump: an echo listener with two idle
//! clients, a job queue with two workers, a ticker, a cache refresh stuck
//! behind a lock another task holds, and a request whose deadline passed.
//! Once everything waits, the program prints `Handle::dump()` and checks
//! that every task is listed with what it waits for, then shuts down.
//!
//! ```text
//! cargo run --release -p weft-examples --example dump
//! WEFT_IO=epoll cargo run --release -p weft-examples --example dump
//! ```

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use weft::{
    net::{TcpListener, TcpStream},
    runtime::{
        dump::{Awaiting, IoOp, SyncOp, TaskDump, TaskState},
        Handle,
    },
    sync::{mpsc, Mutex},
    task::Builder,
};

/// What each named task should be waiting for once the service settles.
const EXPECTED: &[(&str, Awaiting)] = &[
    ("acceptor", Awaiting::Io(IoOp::Accept)),
    ("conn", Awaiting::Io(IoOp::Read)),
    ("job-worker", Awaiting::Sync(SyncOp::MpscRecv)),
    ("ticker", Awaiting::Sleep),
    ("cache-refresh", Awaiting::Sync(SyncOp::Mutex)),
    ("cache-owner", Awaiting::Sleep),
    ("slow-request", Awaiting::Sync(SyncOp::OneshotRecv)),
];

fn settled(dump: &TaskDump) -> bool {
    EXPECTED.iter().all(|(name, kind)| {
        dump.tasks().iter().any(|t| {
            t.name() == Some(name) && t.state() == TaskState::Idle && t.awaiting() == *kind
        })
    })
}

async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        Builder::new().name("conn").spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            loop {
                buf.clear();
                let (res, b) = stream.read(buf).await;
                if !matches!(res, Ok(n) if n > 0) {
                    return;
                }
                let (res, b) = stream.write_all(b).await;
                if res.is_err() {
                    return;
                }
                buf = b;
            }
        });
    }
}

async fn service() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = Builder::new().name("acceptor").spawn(serve(listener));
    let clients = [
        TcpStream::connect(addr).await.map_err(|e| e.to_string())?,
        TcpStream::connect(addr).await.map_err(|e| e.to_string())?,
    ];

    let (jobs, rx) = mpsc::channel::<u32>(16);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..2 {
        let rx = rx.clone();
        Builder::new().name("job-worker").spawn(async move {
            loop {
                // The lock is held across the receive: one worker waits in
                // `recv`, the other for the lock... unless it is free. Take
                // the job and let go of the lock before working on it.
                let job = {
                    let Ok(mut rx) = rx.lock().await else { return };
                    rx.recv().await
                };
                if job.is_err() {
                    return;
                }
            }
        });
    }

    let ticker = Builder::new().name("ticker").spawn(async {
        let mut interval = weft::time::interval(Duration::from_secs(3600));
        // Ticks until its scope is cancelled (`tick` is an await point).
        while interval.tick().await.is_ok() {}
    });

    let cache = Arc::new(Mutex::new(0u64));
    let owner_guard = cache
        .clone()
        .lock_owned()
        .await
        .map_err(|e| e.to_string())?;
    let owner = Builder::new().name("cache-owner").spawn(async move {
        let _guard = owner_guard;
        let _ = weft::time::sleep(Duration::from_secs(3600)).await;
    });
    let c = cache.clone();
    let refresh = Builder::new().name("cache-refresh").spawn(async move {
        let _ = c.lock().await.map(|mut v| *v += 1);
    });

    // A request with a 20 ms budget that outlived it: its scope is
    // cancelled (deadline), and it waits, shielded, for its cleanup.
    let (cleanup_done, cleanup) = weft::sync::oneshot::channel::<()>();
    let slow = Builder::new()
        .name("slow-request")
        .timeout(Duration::from_millis(20))
        .spawn(async move {
            let _ = weft::time::sleep(Duration::from_secs(3600)).await;
            let _ = weft::cancel::shield(Duration::from_secs(3600), cleanup).await;
        });

    let started = Instant::now();
    let dump = loop {
        let dump = Handle::current().dump();
        if settled(&dump) {
            break dump;
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("the service never settled:\n{dump}"));
        }
        let _ = weft::time::sleep(Duration::from_millis(5)).await;
    };
    println!("{dump}");

    // One of the two job workers waits for the receiver, the other for the
    // lock around it.
    let lock_waiters = dump
        .tasks()
        .iter()
        .filter(|t| t.name() == Some("job-worker") && t.awaiting() == Awaiting::Sync(SyncOp::Mutex))
        .count();
    if lock_waiters != 1 {
        return Err(format!(
            "expected one job worker waiting for the lock:\n{dump}"
        ));
    }
    let conns = dump
        .tasks()
        .iter()
        .filter(|t| t.name() == Some("conn"))
        .count();
    if conns != 2 {
        return Err(format!("expected two connections:\n{dump}"));
    }
    let slow_entry = dump
        .tasks()
        .iter()
        .find(|t| t.name() == Some("slow-request"))
        .ok_or("slow-request listed")?;
    if !slow_entry.cancelled().is_some_and(|c| c.is_deadline()) {
        return Err(format!("slow-request's deadline cancelled it:\n{dump}"));
    }

    // Shut the service down: every task ends, the dump empties.
    drop(jobs);
    drop(clients);
    drop(cleanup_done);
    for handle in [acceptor, owner, refresh] {
        handle.cancel();
        let _ = handle.await;
    }
    // An interval's tick is not a cancellation point (it returns the
    // tick's instant): stop the ticker the hard way.
    ticker.abort();
    let _ = ticker.await;
    let _ = slow.await;
    let started = Instant::now();
    loop {
        let left = Handle::current().dump();
        if left.tasks().is_empty() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("tasks left after shutdown:\n{left}"));
        }
        let _ = weft::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() -> ExitCode {
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    println!("io driver: {:?}", rt.io_driver());
    match rt.block_on(service()) {
        Ok(()) => {
            println!("every task was listed with what it awaited; all gone after shutdown");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dump example failed: {e}");
            ExitCode::FAILURE
        }
    }
}
