//! A driver for profiling the sync benches' hot workloads under callgrind
//! or `perf record`: runs one workload a given number of times on one
//! flavour and exits, with no criterion around it. Instruction counts from
//! `valgrind --tool=callgrind` stay comparable while the machine is loaded,
//! where wall times do not.
//!
//! ```text
//! sync_profile FLAVOUR WORKLOAD ROUNDS [WORKERS [ITERATIONS]]
//!   FLAVOUR:  weft | tokio | tokio_on_weft
//!   WORKLOAD: notify  (notify_one / notified().await between two tasks,
//!                      ROUNDS round trips)
//!             oneshot (the ping_pong of the sync_channels bench, ROUNDS
//!                      rounds)
//!             mpsc1 / mpsc4 (the sync_channels bench's mpsc workload:
//!                      ROUNDS messages from 1 or 4 producers)
//! ```
//!
//! WORKERS defaults to 2, as in the benches. ITERATIONS (default 1) runs
//! the workload that many times back to back on the same runtime, as
//! criterion does, and prints the median time per iteration.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        mpsc, Arc,
    },
};

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Rt {
    Weft(weft::Runtime),
    Tokio(tokio::runtime::Runtime),
}

impl Rt {
    fn spawn(&self, f: BoxFut) {
        match self {
            Rt::Weft(rt) => drop(rt.spawn(f)),
            Rt::Tokio(rt) => drop(rt.spawn(f)),
        }
    }
}

/// Spawns from inside a task of the current runtime.
fn spawn_here(weft_rt: bool, f: BoxFut) {
    if weft_rt {
        drop(weft::spawn(f));
    } else {
        drop(tokio::spawn(f));
    }
}

fn notify_weft(rt: &Rt, rounds: usize) {
    let ping = Arc::new(weft::sync::Notify::new());
    let pong = Arc::new(weft::sync::Notify::new());
    let (tx, rx) = mpsc::channel();
    {
        let (ping, pong, tx) = (ping.clone(), pong.clone(), tx.clone());
        rt.spawn(Box::pin(async move {
            for _ in 0..rounds {
                ping.notified().await.unwrap();
                pong.notify_one();
            }
            tx.send(()).unwrap();
        }));
    }
    rt.spawn(Box::pin(async move {
        for _ in 0..rounds {
            ping.notify_one();
            pong.notified().await.unwrap();
        }
        tx.send(()).unwrap();
    }));
    rx.recv().unwrap();
    rx.recv().unwrap();
}

fn notify_tokio(rt: &Rt, rounds: usize) {
    let ping = Arc::new(tokio::sync::Notify::new());
    let pong = Arc::new(tokio::sync::Notify::new());
    let (tx, rx) = mpsc::channel();
    {
        let (ping, pong, tx) = (ping.clone(), pong.clone(), tx.clone());
        rt.spawn(Box::pin(async move {
            for _ in 0..rounds {
                ping.notified().await;
                pong.notify_one();
            }
            tx.send(()).unwrap();
        }));
    }
    rt.spawn(Box::pin(async move {
        for _ in 0..rounds {
            ping.notify_one();
            pong.notified().await;
        }
        tx.send(()).unwrap();
    }));
    rx.recv().unwrap();
    rx.recv().unwrap();
}

macro_rules! oneshot_ping_pong {
    ($name:ident, $channel:path) => {
        fn $name(rt: &Rt, rounds: usize) {
            let weft_rt = matches!(rt, Rt::Weft(_));
            let (done_tx, done_rx) = mpsc::sync_channel(1);
            let rem = Arc::new(AtomicUsize::new(rounds));
            rt.spawn(Box::pin(async move {
                for _ in 0..rounds {
                    let rem = rem.clone();
                    let done_tx = done_tx.clone();
                    spawn_here(
                        weft_rt,
                        Box::pin(async move {
                            let (tx1, rx1) = $channel();
                            let (tx2, rx2) = $channel();
                            spawn_here(
                                weft_rt,
                                Box::pin(async move {
                                    rx1.await.unwrap();
                                    tx2.send(()).unwrap();
                                }),
                            );
                            tx1.send(()).unwrap();
                            rx2.await.unwrap();
                            if 1 == rem.fetch_sub(1, Relaxed) {
                                done_tx.send(()).unwrap();
                            }
                        }),
                    );
                }
            }));
            done_rx.recv().unwrap();
        }
    };
}

macro_rules! mpsc_n_to_1 {
    ($name:ident, $producers:expr, $rt:ident, $sync:ident :: $sub:ident, $ok:expr) => {
        /// The sync_channels bench's mpsc workload: `rounds` messages
        /// through a bounded(1024) channel from the producers to one
        /// consumer, all spawned from `block_on` as the bench does.
        fn $name(rt: &Rt, rounds: usize) {
            let producers: u64 = $producers;
            let body = async move {
                let (tx, mut rx) = $sync::$sub::mpsc::channel::<u64>(1024);
                for p in 0..producers {
                    let tx = tx.clone();
                    ::$rt::spawn(async move {
                        let per = rounds as u64 / producers;
                        for i in 0..per {
                            if tx.send(p * per + i).await.is_err() {
                                panic!("receiver gone");
                            }
                        }
                    });
                }
                drop(tx);
                let consumer = ::$rt::spawn(async move {
                    let mut n = 0u64;
                    while let Some(v) = $ok(rx.recv().await) {
                        n += 1;
                        std::hint::black_box(v);
                    }
                    n
                });
                let per = rounds as u64 / producers;
                assert_eq!(consumer.await.unwrap(), per * producers);
            };
            match rt {
                Rt::Weft(rt) => rt.block_on(body),
                Rt::Tokio(rt) => rt.block_on(body),
            }
        }
    };
}

mpsc_n_to_1!(mpsc1_weft, 1, weft, weft::sync, Result::ok);
mpsc_n_to_1!(mpsc4_weft, 4, weft, weft::sync, Result::ok);
mpsc_n_to_1!(mpsc1_tokio, 1, tokio, tokio::sync, std::convert::identity);
mpsc_n_to_1!(mpsc4_tokio, 4, tokio, tokio::sync, std::convert::identity);
mpsc_n_to_1!(
    mpsc1_tokio_on_weft,
    1,
    weft,
    tokio::sync,
    std::convert::identity
);
mpsc_n_to_1!(
    mpsc4_tokio_on_weft,
    4,
    weft,
    tokio::sync,
    std::convert::identity
);

oneshot_ping_pong!(oneshot_weft, weft::sync::oneshot::channel);
oneshot_ping_pong!(oneshot_tokio, tokio::sync::oneshot::channel);

/// Per-worker scheduler counters of a weft runtime (empty for tokio).
fn per_worker(rt: &Rt) -> Vec<[u64; 6]> {
    match rt {
        Rt::Weft(rt) => rt
            .metrics()
            .worker
            .iter()
            .map(|w| {
                [
                    w.polls,
                    w.steals,
                    w.parks,
                    w.lifo_hits,
                    w.injector_pops,
                    w.budget_forced_yields,
                ]
            })
            .collect(),
        Rt::Tokio(_) => Vec::new(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: sync_profile weft|tokio|tokio_on_weft notify|oneshot|mpsc1|mpsc4 ROUNDS [WORKERS [ITERATIONS]]";
    if args.len() < 3 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let rounds: usize = args[2].parse().expect("ROUNDS is a number");
    let workers: usize = args
        .get(3)
        .map_or(2, |w| w.parse().expect("WORKERS is a number"));
    let (rt, weft_sync) = match args[0].as_str() {
        "weft" | "tokio_on_weft" => (
            Rt::Weft({
                let mut builder =
                    weft::runtime::Builder::new_multi_thread().worker_threads(workers);
                if let Ok(us) = std::env::var("SYNC_PROFILE_IDLE_SPIN_US") {
                    let us = us.parse().expect("SYNC_PROFILE_IDLE_SPIN_US is a number");
                    builder = builder.idle_spin(std::time::Duration::from_micros(us));
                }
                if std::env::var_os("SYNC_PROFILE_NO_MONITOR").is_some() {
                    builder = builder.monitor(false);
                }
                builder.build().unwrap()
            }),
            args[0] == "weft",
        ),
        "tokio" => (
            Rt::Tokio(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
                    .unwrap(),
            ),
            false,
        ),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let run: fn(&Rt, usize) = match (args[1].as_str(), weft_sync) {
        ("notify", true) => notify_weft,
        ("notify", false) => notify_tokio,
        ("oneshot", true) => oneshot_weft,
        ("oneshot", false) => oneshot_tokio,
        ("mpsc1", true) => mpsc1_weft,
        ("mpsc1", false) if matches!(rt, Rt::Tokio(_)) => mpsc1_tokio,
        ("mpsc1", false) => mpsc1_tokio_on_weft,
        ("mpsc4", true) => mpsc4_weft,
        ("mpsc4", false) if matches!(rt, Rt::Tokio(_)) => mpsc4_tokio,
        ("mpsc4", false) => mpsc4_tokio_on_weft,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let iterations: usize = args
        .get(4)
        .map_or(1, |n| n.parse().expect("ITERATIONS is a number"));
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = std::time::Instant::now();
        let before = per_worker(&rt);
        run(&rt, rounds);
        times.push(start.elapsed());
        if std::env::var_os("SYNC_PROFILE_WORKERS").is_some() {
            let after = per_worker(&rt);
            let delta: Vec<[u64; 6]> = after
                .iter()
                .zip(&before)
                .map(|(a, b)| std::array::from_fn(|i| a[i] - b[i]))
                .collect();
            println!(
                "{:?}: per worker [polls, steals, parks, lifo_hits, injector_pops, forced_yields] {delta:?}",
                times.last().unwrap()
            );
        }
    }
    if iterations > 1 {
        let mean = times.iter().sum::<std::time::Duration>() / times.len() as u32;
        times.sort();
        println!(
            "median per iteration: {:?} (mean {mean:?}, p90 {:?}, min {:?}, max {:?})",
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            times[0],
            times[times.len() - 1]
        );
    }
}
