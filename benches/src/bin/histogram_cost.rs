//! A small driver for measuring what weft's latency histograms and its
//! stuck-poll monitor cost with callgrind instruction counts (wall-clock
//! figures come from the `observability_cost` group of `--bench
//! scheduler`). It runs the scheduler bench's workloads once each (and the
//! cancel bench's spawns with a deadline and `timeout`), on one worker
//! without idle spinning so the counts repeat, with the histograms on (the
//! default sampling), on with every poll timed, off, or off with the
//! monitor off too (`bare`):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/histogram_cost on|every|off|bare [WORKLOAD]
//! ```
//! It prints the polls it made and how many were timed.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        mpsc, Arc,
    },
    time::Duration,
};

const NUM_SPAWN: usize = 10_000;
const YIELD_TASKS: usize = 200;
const NUM_YIELD: usize = 100;
const NUM_PINGS: usize = 1_000;
const CHAIN_LEN: usize = 1_000;

fn spawn_many_local(rt: &weft::Runtime) {
    let (tx, rx) = mpsc::sync_channel(1);
    let rem = Arc::new(AtomicUsize::new(NUM_SPAWN));
    rt.block_on(async {
        for _ in 0..NUM_SPAWN {
            let (tx, rem) = (tx.clone(), rem.clone());
            weft::spawn(async move {
                if 1 == rem.fetch_sub(1, Relaxed) {
                    tx.send(()).unwrap();
                }
            });
        }
        rx.recv().unwrap();
    });
}

fn spawn_many_remote(rt: &weft::Runtime) {
    let handles: Vec<_> = (0..NUM_SPAWN).map(|_| rt.spawn(async {})).collect();
    rt.block_on(async {
        for handle in handles {
            handle.await.unwrap();
        }
    });
}

fn yield_many(rt: &weft::Runtime) {
    let (tx, rx) = mpsc::sync_channel(YIELD_TASKS);
    for _ in 0..YIELD_TASKS {
        let tx = tx.clone();
        rt.spawn(async move {
            for _ in 0..NUM_YIELD {
                weft::task::yield_now().await;
            }
            tx.send(()).unwrap();
        });
    }
    for _ in 0..YIELD_TASKS {
        rx.recv().unwrap();
    }
}

fn ping_pong(rt: &weft::Runtime) {
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let rem = Arc::new(AtomicUsize::new(NUM_PINGS));
    rt.block_on(async {
        weft::spawn(async move {
            for _ in 0..NUM_PINGS {
                let (rem, done_tx) = (rem.clone(), done_tx.clone());
                weft::spawn(async move {
                    let (tx1, rx1) = weft::sync::oneshot::channel::<()>();
                    let (tx2, rx2) = weft::sync::oneshot::channel::<()>();
                    weft::spawn(async move {
                        rx1.await.unwrap();
                        tx2.send(()).unwrap();
                    });
                    tx1.send(()).unwrap();
                    rx2.await.unwrap();
                    if 1 == rem.fetch_sub(1, Relaxed) {
                        done_tx.send(()).unwrap();
                    }
                });
            }
        });
        done_rx.recv().unwrap();
    });
}

fn chained_spawn(rt: &weft::Runtime) {
    fn link(done_tx: mpsc::SyncSender<()>, n: usize) {
        if n == 0 {
            done_tx.send(()).unwrap();
        } else {
            weft::spawn(async move { link(done_tx, n - 1) });
        }
    }
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    rt.block_on(async {
        weft::spawn(async move { link(done_tx, CHAIN_LEN) });
        done_rx.recv().unwrap();
    });
}

fn spawn_deadline(rt: &weft::Runtime) {
    rt.block_on(async {
        weft::spawn(async {
            let handles: Vec<_> = (0..NUM_SPAWN)
                .map(|_| {
                    weft::task::Builder::new()
                        .timeout(Duration::from_secs(60))
                        .spawn(async {})
                })
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
        })
        .await
        .unwrap();
    });
}

fn timeout_10k(rt: &weft::Runtime) {
    rt.block_on(async {
        weft::spawn(async {
            let handles: Vec<_> = (0..NUM_SPAWN)
                .map(|_| {
                    weft::spawn(weft::time::timeout(Duration::from_secs(60), async {
                        weft::task::yield_now().await;
                        1
                    }))
                })
                .collect();
            for handle in handles {
                assert_eq!(handle.await.unwrap().unwrap(), 1);
            }
        })
        .await
        .unwrap();
    });
}

type Workload = fn(&weft::Runtime);

const WORKLOADS: &[(&str, Workload)] = &[
    ("spawn_many_local", spawn_many_local),
    ("spawn_many_remote", spawn_many_remote),
    ("yield_many", yield_many),
    ("ping_pong", ping_pong),
    ("chained_spawn", chained_spawn),
    ("spawn_deadline", spawn_deadline),
    ("timeout_10k", timeout_10k),
];

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "on".to_owned());
    let only = args.next();
    let mut builder = weft::runtime::Builder::new_multi_thread();
    builder = builder.worker_threads(1).idle_spin(Duration::ZERO);
    builder = match mode.as_str() {
        "on" => builder,
        "every" => builder.histogram_sample_interval(1),
        "off" => builder.histograms(false),
        "bare" => builder.histograms(false).monitor(false),
        other => {
            eprintln!("usage: histogram_cost on|every|off|bare [WORKLOAD]; got {other:?}");
            std::process::exit(2);
        }
    };
    let rt = builder.build().expect("building the runtime");
    for (name, workload) in WORKLOADS {
        if only.as_deref().is_some_and(|only| only != *name) {
            continue;
        }
        workload(&rt);
    }
    let m = rt.metrics();
    println!(
        "{mode}: {} polls, {} timed (p50 {:?}, p99 {:?})",
        m.total_polls(),
        m.poll_duration().count(),
        m.poll_duration().percentile(50.0),
        m.poll_duration().percentile(99.0),
    );
}
