//! weft's main demo: the executor at work.
//!
//! Spawns a tree of tasks (each node spawns children and sums their
//! results), lets thousands of tasks yield and sleep, shows a panicking task
//! being reported without taking its worker down, aborts a task, runs a
//! blocking job, lets a deadline flow from a task into its grandchildren,
//! cancels a tree of tasks with a reason, serves TCP echo on the worker's
//! io driver (io_uring, or epoll where io_uring is unavailable) with a
//! deadline reaching a blocked read; then runs a small service mesh on
//! loopback (edge → middle → a flaky leaf, through `weft_resilience`
//! pipelines: retries with a budget, hedging, breakers, a fallback) under
//! load carrying deadlines while faults are injected, with a live table
//! every second; then two hyper services and a pooled client pass a
//! client's deadline across both hops (`grpc-timeout`); and ends with the
//! runtime's metrics.
//!
//! Run with `cargo run --release --example showcase`.

#[path = "mesh/mod.rs"]
mod mesh;
#[path = "two_hops/mod.rs"]
mod two_hops;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use weft::{
    cancel,
    net::{TcpListener, TcpStream},
    runtime::Builder,
    task, time,
};

/// A node of the tree: spawns `fanout` children down to `depth`, returns
/// the number of nodes in its subtree.
fn tree(depth: u32, fanout: u32) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if depth == 0 {
            task::yield_now().await;
            return 1;
        }
        let children: Vec<_> = (0..fanout)
            .map(|_| weft::spawn(tree(depth - 1, fanout)))
            .collect();
        let mut nodes = 1;
        for child in children {
            nodes += child.await.expect("tree nodes do not fail");
        }
        nodes
    })
}

/// `remaining()` in milliseconds, for printing.
fn remaining_ms() -> f64 {
    cancel::remaining().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// A named task of the cancel tree: spawns its children, waits to be
/// cancelled, records what it saw, then joins its children inside a
/// `shield` (awaiting a handle in the cancelled scope would itself be
/// interrupted).
fn cancel_node(
    name: String,
    depth: u32,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let children: Vec<_> = (0..if depth > 0 { 2 } else { 0 })
            .map(|i| {
                let child = format!("{name}.{i}");
                task::Builder::new().name(child.clone()).spawn(cancel_node(
                    child,
                    depth - 1,
                    seen.clone(),
                ))
            })
            .collect();
        let why = cancel::cancelled().await;
        let me = cancel::task_name().unwrap_or_else(|| "?".into());
        seen.lock().unwrap().push(format!(
            "{me:<8} cause {:?}, origin {:?}, reason {:?}",
            why.cause(),
            why.origin(),
            why.reason().unwrap_or("-"),
        ));
        let _ = cancel::shield(Duration::from_millis(100), async {
            for child in children {
                let _ = child.await;
            }
        })
        .await;
    })
}

/// Part 9: echo over loopback, then a deadline reaching a blocked read.
async fn networking() -> std::io::Result<()> {
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 100;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = weft::spawn(async move {
        for _ in 0..CLIENTS {
            let (conn, _) = listener.accept().await?;
            weft::spawn(async move {
                let mut buf = Vec::with_capacity(256);
                loop {
                    let (n, mut b) = conn.read(buf).await;
                    match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => b.truncate(n),
                    }
                    let (res, b) = conn.write_all(b).await;
                    if res.is_err() {
                        return;
                    }
                    buf = b;
                    buf.clear();
                }
            });
        }
        Ok::<_, std::io::Error>(listener)
    });
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            weft::spawn(async move {
                let conn = TcpStream::connect(addr).await?;
                conn.set_nodelay(true)?;
                let mut buf = Vec::with_capacity(256);
                for round in 0..ROUNDS {
                    let msg = format!("client {i} round {round}").into_bytes();
                    let (res, sent) = conn.write_all(msg).await;
                    res?;
                    let mut got = 0;
                    while got < sent.len() {
                        buf.clear();
                        let (n, b) = conn.read(buf).await;
                        let n = n?;
                        if n == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                        assert_eq!(&b[..n], &sent[got..got + n], "echoed bytes match");
                        got += n;
                        buf = b;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client task finishes")?;
    }
    let elapsed = start.elapsed();
    let listener = server.await.expect("server task finishes")?;
    println!(
        "9. echo on {}: {CLIENTS} connections x {ROUNDS} round trips in {:.1} ms ({:.0} round trips/s)",
        weft::runtime::Handle::current().io_driver(),
        elapsed.as_secs_f64() * 1e3,
        (CLIENTS * ROUNDS) as f64 / elapsed.as_secs_f64()
    );

    // A silent peer: the read waits until the task's deadline ends it.
    let _silent = TcpStream::connect(addr).await?;
    let (conn, _) = listener.accept().await?;
    let start = Instant::now();
    let read = task::Builder::new()
        .name("reader")
        .timeout(Duration::from_millis(50))
        .spawn(async move {
            let (res, _) = conn.read(Vec::with_capacity(64)).await;
            res
        });
    let err = read
        .await
        .expect("reader finishes")
        .expect_err("the silent peer never writes");
    let cause = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<cancel::Cancelled>())
        .map(|c| c.cause());
    println!(
        "   read under a 50 ms deadline: {:?} after {:.1} ms (cause {:?})",
        err.kind(),
        start.elapsed().as_secs_f64() * 1e3,
        cause
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One line per panic instead of the default report with a backtrace:
    // the panic below is part of the demo.
    std::panic::set_hook(Box::new(|info| eprintln!("   (panic hook) {info}")));
    let workers = 2;
    let rt = Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("showcase-worker")
        .build()?;
    println!("weft showcase: {workers} worker threads\n");

    rt.block_on(async {
        // 1. A tree of tasks: depth 6, fanout 8 = 299,593 tasks.
        let start = Instant::now();
        let nodes = weft::spawn(tree(6, 8)).await.expect("root finishes");
        println!(
            "1. task tree: {nodes} tasks spawned, joined and summed in {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );

        // 2. Cooperative yielding: 1,000 tasks x 100 yields.
        let start = Instant::now();
        let yields = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..1_000)
            .map(|_| {
                let yields = yields.clone();
                weft::spawn(async move {
                    for _ in 0..100 {
                        task::yield_now().await;
                        yields.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("yielders finish");
        }
        println!(
            "2. yield_now: {} yields across 1,000 tasks in {:.1} ms",
            yields.load(Ordering::Relaxed),
            start.elapsed().as_secs_f64() * 1e3
        );

        // 3. Timers: 10,000 tasks sleeping 1-50 ms, a timeout, an interval.
        let start = Instant::now();
        let sleepers: Vec<_> = (0..10_000u64)
            .map(|i| weft::spawn(time::sleep(Duration::from_millis(1 + i % 50))))
            .collect();
        for s in sleepers {
            s.await
                .expect("sleepers finish")
                .expect("nothing cancels them");
        }
        println!(
            "3. timers: 10,000 sleeps of 1-50 ms done after {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        let slow = time::timeout(
            Duration::from_millis(20),
            time::sleep(Duration::from_secs(5)),
        )
        .await;
        println!("   timeout(20 ms, sleep(5 s)) -> {slow:?}");
        let mut interval = time::interval(Duration::from_millis(10));
        let first = interval.tick().await.expect("not cancelled");
        for _ in 0..4 {
            interval.tick().await.expect("not cancelled");
        }
        println!(
            "   interval(10 ms): 5 ticks in {:.1} ms",
            first.elapsed().as_secs_f64() * 1e3
        );

        // 4. A panicking task is reported through its JoinHandle; the
        //    worker that ran it keeps going.
        let failed = weft::spawn(async {
            panic!("boom: this task fails on purpose");
        })
        .await;
        match failed {
            Err(err) if err.is_panic() => println!("4. panic caught and reported: {err}"),
            other => println!("4. unexpected: {other:?}"),
        }
        let after = weft::spawn(async { "still running" })
            .await
            .expect("worker survived");
        println!("   next task on the same runtime: {after}");

        // 5. abort(): the future is dropped at its next schedule.
        let stuck = weft::spawn(std::future::pending::<()>());
        stuck.abort();
        let aborted = stuck.await.expect_err("aborted tasks give an error");
        println!("5. aborted task: is_cancelled = {}", aborted.is_cancelled());

        // 6. A blocking job runs on the blocking pool, not on a worker.
        let name = weft::spawn_blocking(|| std::thread::current().name().unwrap_or("?").to_owned())
            .await
            .expect("blocking job finishes");
        println!("6. spawn_blocking ran on thread {name:?}");

        // 7. A deadline flows from a task into its child and grandchild:
        //    each level sees the same budget, and the grandchild's long
        //    sleep fails when it runs out. Joins in the expired scope are
        //    interrupted too (level-triggered); a `shield` waits for the
        //    child to finish so the output stays in order.
        let start = Instant::now();
        task::Builder::new()
            .name("request")
            .timeout(Duration::from_millis(50))
            .spawn(async move {
                println!("7. deadline: parent      remaining {:4.1} ms", remaining_ms());
                let mut child = weft::spawn(async move {
                    println!("   child       remaining {:4.1} ms", remaining_ms());
                    let mut grandchild = weft::spawn(async move {
                        println!("   grandchild  remaining {:4.1} ms", remaining_ms());
                        if let Err(e) = time::sleep(Duration::from_secs(5)).await {
                            println!(
                                "   grandchild: sleep(5 s) -> Err after {:.1} ms: {e} (is_deadline = {})",
                                start.elapsed().as_secs_f64() * 1e3,
                                e.is_deadline()
                            );
                        }
                    });
                    let interrupted = (&mut grandchild).await.is_err();
                    let _ = cancel::shield(Duration::from_millis(100), grandchild).await;
                    println!("   child: join of the grandchild interrupted = {interrupted}");
                });
                let joined = (&mut child).await;
                let _ = cancel::shield(Duration::from_millis(100), child).await;
                if let Err(e) = joined {
                    println!("   parent: {e}");
                }
            })
            .await
            .expect("request task finishes");

        // 8. A cancel tree: a root with 2 children, each with 2 children;
        //    cancelling the root with a reason reaches every task once.
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let root = task::Builder::new()
            .name("root")
            .spawn(cancel_node("root".into(), 2, seen.clone()));
        time::sleep(Duration::from_millis(10)).await.expect("not cancelled");
        let first = root.cancel_with("operator pressed stop");
        let again = root.cancel();
        root.await.expect("root finishes");
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        println!(
            "8. cancel tree: cancel_with -> {first}, second cancel -> {again}; {} tasks observed:",
            seen.len()
        );
        for line in seen {
            println!("   {line}");
        }

        // 9. Networking: an echo server and 64 clients over loopback, each
        //    doing 100 round trips with owned buffers; then a read in a task
        //    with a 50 ms deadline, on a connection whose peer stays silent.
        networking().await.expect("loopback networking works");

        // 10. The mesh: resilience policies on weft's deadlines and
        //     cancellation tree, under load and injected faults.
        println!();
        let mesh = Arc::new(mesh::Mesh::start().await.expect("the mesh starts"));
        mesh::drive::showcase(mesh).await;

        // 11. HTTP: two hyper services and a pooled client on weft; the
        //     client's deadline travels as grpc-timeout through both hops.
        println!("\n11. http: a client's deadline across two services");
        two_hops::two_hops().await.expect("the two-hop HTTP demo holds");
    });

    let m = rt.metrics();
    println!("\nmetrics:");
    println!(
        "  workers {}  alive tasks {}  timers fired {}  injector depth {}  io driver {}  io ops in flight {}",
        m.workers, m.alive_tasks, m.timers_fired, m.injector_depth, m.io_driver, m.io_ops_in_flight
    );
    for (i, w) in m.worker.iter().enumerate() {
        println!(
            "  worker {i}: polls {:>8}  steals {:>6} (attempts {:>6})  parks {:>5}  lifo hits {:>7}  injector pops {:>6}  forced yields {}  io submissions {}  completions {}  enters {}  taken by a peer {}  io hand-offs {}  long-poll wakes {}",
            w.polls, w.steals, w.steal_attempts, w.parks, w.lifo_hits, w.injector_pops, w.budget_forced_yields,
            w.io_submissions, w.io_completions, w.io_enters, w.io_peer_reaped, w.io_handoffs, w.long_poll_wakes
        );
    }
    // Latency histograms (one task schedule in `histogram_sample_interval`
    // timed; io ops all timed), merged over the workers.
    for (what, h) in [
        ("poll duration", m.poll_duration()),
        ("schedule latency", m.schedule_latency()),
        ("io op latency", m.io_op_latency()),
    ] {
        println!(
            "  {what:<16}  p50 {:>10.1?}  p99 {:>10.1?}  max {:>10.1?}  ({} samples)",
            h.percentile(50.0),
            h.percentile(99.0),
            h.max(),
            h.count()
        );
    }
    let clean = rt.shutdown_timeout(Duration::from_secs(5));
    println!("\nshutdown clean: {clean}");
    Ok(())
}
