//! Channel benches: weft's `weft::sync` channels against tokio's
//! `tokio::sync` ones, each on its own runtime, plus tokio's channels on
//! weft (what a tokio user who keeps `tokio::sync` gets), all in one run
//! (2 worker threads each, one runtime alive at a time).
//!
//! - `oneshot_ping_pong`: the scheduler bench's ping_pong (1,000 rounds, a
//!   task spawns a partner and they exchange one message each way through
//!   two oneshot channels), with each runtime's oneshot and, beside them,
//!   `futures_channel::oneshot` on weft as the scheduler bench runs it.
//! - `mpsc_1to1` / `mpsc_4to1`: `MESSAGES` `u64`s through a bounded(1024)
//!   channel from 1 or 4 producer tasks to one consumer task.
//!
//! Run with `cargo bench -p weft-benches --bench sync_channels`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        mpsc, Arc,
    },
    time::Duration,
};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};

/// Worker threads of both runtimes (the machine has 2 cores).
const NUM_WORKERS: usize = 2;
/// Rounds of `oneshot_ping_pong`.
const NUM_PINGS: usize = 1_000;
/// Messages per iteration of the mpsc workloads.
const MESSAGES: u64 = 1_000_000;
/// Capacity of the bounded channel.
const CAPACITY: usize = 1024;

fn build_weft() -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .build()
        .unwrap()
}

fn build_tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .enable_all()
        .build()
        .unwrap()
}

/// weft's `recv()` is a `Result` (closed or cancelled), tokio's an `Option`.
trait RecvOk<T> {
    fn ok_value(self) -> Option<T>;
}

impl<T, E> RecvOk<T> for Result<T, E> {
    fn ok_value(self) -> Option<T> {
        self.ok()
    }
}

impl<T> RecvOk<T> for Option<T> {
    fn ok_value(self) -> Option<T> {
        self
    }
}

/// Defines `ping_pong` on the runtime crate `$rt` (built by `$build`) with
/// the oneshot constructor `$oneshot`.
macro_rules! ping_pong {
    ($rt:ident, $build:path, $oneshot:path) => {
        pub(crate) fn ping_pong(b: &mut criterion::Bencher<'_>) {
            let rt = $build();
            let (done_tx, done_rx) = mpsc::sync_channel(1000);
            let rem = Arc::new(AtomicUsize::new(0));

            b.iter(|| {
                let done_tx = done_tx.clone();
                let rem = rem.clone();
                rem.store(NUM_PINGS, Relaxed);

                rt.block_on(async {
                    ::$rt::spawn(async move {
                        for _ in 0..NUM_PINGS {
                            let rem = rem.clone();
                            let done_tx = done_tx.clone();
                            ::$rt::spawn(async move {
                                let (tx1, rx1) = $oneshot();
                                let (tx2, rx2) = $oneshot();
                                ::$rt::spawn(async move {
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
    };
}

/// Defines a module `$module` with every workload on the runtime crate
/// `$rt` (built by `$build`) and the channels of `$sync`.
macro_rules! workloads {
    ($module:ident, $rt:ident, $build:path, $sync:ident :: $sub:ident) => {
        mod $module {
            use super::*;

            ping_pong!($rt, $build, $sync::$sub::oneshot::channel);

            fn mpsc_n_to_1(b: &mut criterion::Bencher<'_>, producers: u64) {
                let rt = $build();
                b.iter(|| {
                    rt.block_on(async {
                        let (tx, mut rx) = $sync::$sub::mpsc::channel::<u64>(CAPACITY);
                        for p in 0..producers {
                            let tx = tx.clone();
                            ::$rt::spawn(async move {
                                let per = MESSAGES / producers;
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
                            while let Some(v) = rx.recv().await.ok_value() {
                                n += 1;
                                std::hint::black_box(v);
                            }
                            n
                        });
                        assert_eq!(consumer.await.unwrap(), MESSAGES);
                    });
                });
            }

            pub(crate) fn mpsc_1to1(b: &mut criterion::Bencher<'_>) {
                mpsc_n_to_1(b, 1)
            }

            pub(crate) fn mpsc_4to1(b: &mut criterion::Bencher<'_>) {
                mpsc_n_to_1(b, 4)
            }
        }
    };
}

workloads!(weft_on_weft, weft, build_weft, weft::sync);
workloads!(tokio_on_tokio, tokio, build_tokio, tokio::sync);
workloads!(tokio_on_weft, weft, build_weft, tokio::sync);

/// futures-channel's oneshot on weft, as the scheduler bench's ping_pong
/// runs it.
mod futures_ping_pong {
    use super::*;
    ping_pong!(weft, build_weft, futures_channel::oneshot::channel);
}

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group
}

type Bench = fn(&mut criterion::Bencher<'_>);

fn run(c: &mut Criterion, name: &str, mut variants: Vec<(&str, Bench)>) {
    let mut group = group(c, name);
    if weft_benches::swap_order() {
        variants.reverse();
    }
    for (label, f) in variants {
        group.bench_function(label, f);
    }
    group.finish();
}

fn oneshot_ping_pong(c: &mut Criterion) {
    run(
        c,
        "oneshot_ping_pong",
        vec![
            ("weft+weft::sync", weft_on_weft::ping_pong),
            ("tokio+tokio::sync", tokio_on_tokio::ping_pong),
            ("weft+tokio::sync", tokio_on_weft::ping_pong),
            ("weft+futures-channel", futures_ping_pong::ping_pong),
        ],
    );
}

fn mpsc_1to1(c: &mut Criterion) {
    run(
        c,
        "mpsc_1to1",
        vec![
            ("weft+weft::sync", weft_on_weft::mpsc_1to1),
            ("tokio+tokio::sync", tokio_on_tokio::mpsc_1to1),
            ("weft+tokio::sync", tokio_on_weft::mpsc_1to1),
        ],
    );
}

fn mpsc_4to1(c: &mut Criterion) {
    run(
        c,
        "mpsc_4to1",
        vec![
            ("weft+weft::sync", weft_on_weft::mpsc_4to1),
            ("tokio+tokio::sync", tokio_on_tokio::mpsc_4to1),
            ("weft+tokio::sync", tokio_on_weft::mpsc_4to1),
        ],
    );
}

criterion_group!(sync_channels, oneshot_ping_pong, mpsc_1to1, mpsc_4to1);
criterion_main!(sync_channels);
