//! Scheduler benches: tokio's `benches/rt_multi_threaded.rs` workloads, each
//! run on weft and on tokio (2 worker threads each) in one criterion group,
//! so the report shows the two runtimes side by side.
//!
//! The workload bodies are written once, in `workloads!`, and instantiated
//! for each runtime: both crates spell `spawn`, `task::yield_now`,
//! `time::sleep`, `Runtime::{spawn, block_on, handle}` the same way, so the
//! two runtimes run the very same code. Messages between tasks go through
//! `futures_channel::oneshot` on both runtimes (tokio's bench uses
//! `tokio::sync::oneshot`, which weft does not have); completion is signalled
//! to the bench thread through a `std::sync::mpsc::sync_channel`, as tokio
//! does.
//!
//! Each runtime is built once per bench function, outside `b.iter`, and
//! dropped before the next one is built, so only one runtime's workers exist
//! at a time. Run with `cargo bench -p weft-benches --bench scheduler`;
//! docs/BENCHMARKS.md holds the figures.
//!
//! The `observability_cost` groups run the same workloads on weft only,
//! with its latency histograms and stuck-poll monitor on (the default) and
//! both off, side by side: the cost of keeping them on
//! (`-- observability_cost` runs just those).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};

/// Worker threads of both runtimes (the machine has 2 cores).
const NUM_WORKERS: usize = 2;
/// Tasks spawned per iteration by the `spawn_many_*` and `timers` workloads.
const NUM_SPAWN: usize = 10_000;
/// How long a busy task burns the CPU between two yields.
const STALL_DUR: Duration = Duration::from_micros(10);
/// Tasks of `yield_many`, and the yields each one does.
const YIELD_TASKS: usize = 200;
const NUM_YIELD: usize = 1_000;
/// Rounds of `ping_pong`.
const NUM_PINGS: usize = 1_000;
/// Length of the spawn chain of `chained_spawn`.
const CHAIN_LEN: usize = 1_000;
/// What each task of `timers` sleeps.
const TIMER_DUR: Duration = Duration::from_millis(1);

fn build_weft() -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .build()
        .unwrap()
}

/// weft without its latency histograms and without its monitor.
fn build_weft_unobserved() -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .histograms(false)
        .monitor(false)
        .build()
        .unwrap()
}

// `enable_all`, as in tokio's own bench: the io driver is tokio's normal
// configuration, and the time driver is needed by `timers`.
fn build_tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .enable_all()
        .build()
        .unwrap()
}

/// Burns the CPU for `STALL_DUR` without holding it against other threads,
/// as tokio's `stall` does.
fn stall() {
    let now = Instant::now();
    while now.elapsed() < STALL_DUR {
        std::thread::yield_now();
    }
}

/// Defines a module `$module` holding every workload, written against the
/// crate `$krate` and the runtime built by `$build`.
macro_rules! workloads {
    ($module:ident, $krate:ident, $build:path) => {
        mod $module {
            use super::*;

            /// 10,000 spawns from inside `block_on`, each task a counter
            /// decrement; the last one signals the bench thread.
            pub(crate) fn spawn_many_local(b: &mut criterion::Bencher<'_>) {
                let rt = $build();
                let (tx, rx) = mpsc::sync_channel(1000);
                let rem = Arc::new(AtomicUsize::new(0));

                b.iter(|| {
                    rem.store(NUM_SPAWN, Relaxed);
                    rt.block_on(async {
                        for _ in 0..NUM_SPAWN {
                            let tx = tx.clone();
                            let rem = rem.clone();
                            ::$krate::spawn(async move {
                                if 1 == rem.fetch_sub(1, Relaxed) {
                                    tx.send(()).unwrap();
                                }
                            });
                        }
                        rx.recv().unwrap();
                    });
                });
            }

            /// 10,000 `rt.spawn` of empty tasks from the bench thread, then
            /// `block_on` awaits every join handle.
            pub(crate) fn spawn_many_remote_idle(b: &mut criterion::Bencher<'_>) {
                let rt = $build();
                let mut handles = Vec::with_capacity(NUM_SPAWN);

                b.iter(|| {
                    for _ in 0..NUM_SPAWN {
                        handles.push(rt.spawn(async {}));
                    }
                    rt.block_on(async {
                        for handle in handles.drain(..) {
                            handle.await.unwrap();
                        }
                    });
                });
            }

            /// `spawn_many_remote_idle` while 2 × `NUM_WORKERS` tasks loop on
            /// yield + 10 µs of work for the whole bench (tokio's
            /// `spawn_many_remote_busy1`): new tasks compete with yielded ones.
            pub(crate) fn spawn_many_remote_busy(b: &mut criterion::Bencher<'_>) {
                let rt = $build();
                let handle = rt.handle();
                let mut handles = Vec::with_capacity(NUM_SPAWN);
                let busy = Arc::new(AtomicBool::new(true));

                for _ in 0..2 * NUM_WORKERS {
                    let busy = busy.clone();
                    rt.spawn(async move {
                        while busy.load(Relaxed) {
                            ::$krate::task::yield_now().await;
                            stall();
                        }
                    });
                }

                b.iter(|| {
                    for _ in 0..NUM_SPAWN {
                        handles.push(handle.spawn(async {}));
                    }
                    rt.block_on(async {
                        for handle in handles.drain(..) {
                            handle.await.unwrap();
                        }
                    });
                });

                busy.store(false, Relaxed);
            }

            /// 200 tasks spawned from the bench thread, each yielding 1,000
            /// times.
            pub(crate) fn yield_many(b: &mut criterion::Bencher<'_>) {
                let rt = $build();
                let (tx, rx) = mpsc::sync_channel(YIELD_TASKS);

                b.iter(|| {
                    for _ in 0..YIELD_TASKS {
                        let tx = tx.clone();
                        rt.spawn(async move {
                            for _ in 0..NUM_YIELD {
                                ::$krate::task::yield_now().await;
                            }
                            tx.send(()).unwrap();
                        });
                    }
                    for _ in 0..YIELD_TASKS {
                        rx.recv().unwrap();
                    }
                });
            }

            /// 1,000 rounds, each a task that spawns a partner and exchanges
            /// one message each way with it through two oneshot channels.
            pub(crate) fn ping_pong(b: &mut criterion::Bencher<'_>) {
                let rt = $build();
                let (done_tx, done_rx) = mpsc::sync_channel(1000);
                let rem = Arc::new(AtomicUsize::new(0));

                b.iter(|| {
                    let done_tx = done_tx.clone();
                    let rem = rem.clone();
                    rem.store(NUM_PINGS, Relaxed);

                    rt.block_on(async {
                        ::$krate::spawn(async move {
                            for _ in 0..NUM_PINGS {
                                let rem = rem.clone();
                                let done_tx = done_tx.clone();
                                ::$krate::spawn(async move {
                                    let (tx1, rx1) = futures_channel::oneshot::channel();
                                    let (tx2, rx2) = futures_channel::oneshot::channel();
                                    ::$krate::spawn(async move {
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
                });
            }

            /// A chain of 1,000 spawns: each task spawns the next, the last
            /// signals the bench thread.
            pub(crate) fn chained_spawn(b: &mut criterion::Bencher<'_>) {
                fn link(done_tx: mpsc::SyncSender<()>, n: usize) {
                    if n == 0 {
                        done_tx.send(()).unwrap();
                    } else {
                        ::$krate::spawn(async move {
                            link(done_tx, n - 1);
                        });
                    }
                }

                let rt = $build();
                let (done_tx, done_rx) = mpsc::sync_channel(1000);

                b.iter(|| {
                    let done_tx = done_tx.clone();
                    rt.block_on(async {
                        ::$krate::spawn(async move {
                            link(done_tx, CHAIN_LEN);
                        });
                        done_rx.recv().unwrap();
                    });
                });
            }

            /// 10,000 tasks spawned from inside `block_on`, each sleeping
            /// 1 ms; `block_on` awaits them all.
            pub(crate) fn timers(b: &mut criterion::Bencher<'_>) {
                let rt = $build();
                let mut handles = Vec::with_capacity(NUM_SPAWN);

                b.iter(|| {
                    rt.block_on(async {
                        for _ in 0..NUM_SPAWN {
                            handles.push(::$krate::spawn(::$krate::time::sleep(TIMER_DUR)));
                        }
                        for handle in handles.drain(..) {
                            // weft's sleep returns Result<(), Cancelled>, tokio's ().
                            let _ = handle.await.unwrap();
                        }
                    });
                });
            }
        }
    };
}

workloads!(on_weft, weft, build_weft);
workloads!(on_tokio, tokio, build_tokio);
workloads!(on_weft_unobserved, weft, build_weft_unobserved);

/// A group for one workload, sized so the whole bench stays under
/// 5 minutes on 2 cores.
fn group<'c>(
    c: &'c mut Criterion,
    workload: &str,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(workload);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group
}

/// Registers one workload: weft first, then tokio, in the same group (the
/// other way round when `weft_benches::swap_order` says so).
macro_rules! side_by_side {
    ($($workload:ident),* $(,)?) => {
        $(
            fn $workload(c: &mut Criterion) {
                let mut group = group(c, stringify!($workload));
                let mut pair: [(&str, fn(&mut criterion::Bencher<'_>)); 2] =
                    [("weft", on_weft::$workload), ("tokio", on_tokio::$workload)];
                if weft_benches::swap_order() {
                    pair.reverse();
                }
                for (name, f) in pair {
                    group.bench_function(name, f);
                }
                group.finish();
            }
        )*

        criterion_group!(scheduler, $($workload),*);
    };
}

side_by_side!(
    spawn_many_local,
    spawn_many_remote_idle,
    spawn_many_remote_busy,
    yield_many,
    ping_pong,
    chained_spawn,
    timers,
);

/// Registers `observability_cost/<workload>`: weft with histograms and
/// monitor on, then both off (the other way round when `weft_benches::swap_order` says so).
macro_rules! histograms_on_and_off {
    ($($workload:ident),* $(,)?) => {
        mod observability_cost {
            use super::*;
            $(
                pub(crate) fn $workload(c: &mut Criterion) {
                    let name = concat!("observability_cost/", stringify!($workload));
                    let mut group = group(c, name);
                    let mut pair: [(&str, fn(&mut criterion::Bencher<'_>)); 2] = [
                        ("on", on_weft::$workload),
                        ("off", on_weft_unobserved::$workload),
                    ];
                    if weft_benches::swap_order() {
                        pair.reverse();
                    }
                    for (name, f) in pair {
                        group.bench_function(name, f);
                    }
                    group.finish();
                }
            )*
        }

        criterion_group!(histograms, $(observability_cost::$workload),*);
    };
}

histograms_on_and_off!(
    spawn_many_local,
    spawn_many_remote_idle,
    spawn_many_remote_busy,
    yield_many,
    ping_pong,
    chained_spawn,
    timers,
);

criterion_main!(scheduler, histograms);
