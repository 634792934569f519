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

oneshot_ping_pong!(oneshot_weft, weft::sync::oneshot::channel);
oneshot_ping_pong!(oneshot_tokio, tokio::sync::oneshot::channel);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: sync_profile weft|tokio|tokio_on_weft notify|oneshot ROUNDS [WORKERS [ITERATIONS]]";
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
            Rt::Weft(
                weft::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .build()
                    .unwrap(),
            ),
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
        run(&rt, rounds);
        times.push(start.elapsed());
    }
    if iterations > 1 {
        times.sort();
        println!("median per iteration: {:?}", times[times.len() / 2]);
    }
}
