//! Latency under a stuck worker, weft and tokio side by side (2 workers
//! each), with percentiles printed (a custom harness: the figures are
//! distributions of delays, not throughput).
//!
//! (a) `lifo_behind_block`: task A wakes task B, then blocks its worker
//!     (a synchronous sleep). B sits in A's worker's LIFO slot. The delay
//!     from the wake to B running, over `LATENCY_TRIES` tries (default 50)
//!     with `LATENCY_BLOCK_MS` blocks (default 50). Issue 17's scenario is
//!     100 tries of 200 ms: `LATENCY_TRIES=100 LATENCY_BLOCK_MS=200`.
//! (b) `timers_with_busy_worker`: 1,000 tasks sleep 1 ms in a loop while
//!     another task blocks a worker 5 ms in every 10; the lateness of each
//!     wake past its 1 ms, p50/p99/p99.9, over `LATENCY_SECS` seconds
//!     (default 2).
//!
//! Run with `cargo bench -p weft-benches --bench latency`;
//! docs/BENCHMARKS.md ("Latency under a stuck worker") holds the figures.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

const NUM_WORKERS: usize = 2;
const SLEEPERS: usize = 1_000;
const TIMER: Duration = Duration::from_millis(1);
const BUSY_BLOCK: Duration = Duration::from_millis(5);
const BUSY_PERIOD: Duration = Duration::from_millis(10);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `q` quantile of `samples` (sorted here).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

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

/// The two workloads, written once against `$krate` (`weft` or `tokio`);
/// `$sleep` awaits a sleep on it (weft's returns a `Result`: a cancelled
/// scope ends it; nothing cancels it here).
macro_rules! workloads {
    ($module:ident, $krate:ident, $build:path, $sleep:expr) => {
        mod $module {
            use super::*;

            /// Delays from A's wake of B to B running, one per try.
            pub(crate) fn lifo_behind_block(tries: usize, block: Duration) -> Vec<Duration> {
                let rt = $build();
                let delays = rt.block_on(async {
                    let mut delays = Vec::with_capacity(tries);
                    for _ in 0..tries {
                        let (tx, rx) = futures_channel::oneshot::channel::<Instant>();
                        let b = $krate::spawn(async move {
                            let woken_at = rx.await.unwrap();
                            woken_at.elapsed()
                        });
                        let a = $krate::spawn(async move {
                            // B waits on the channel by now.
                            $sleep(Duration::from_millis(2)).await;
                            tx.send(Instant::now()).unwrap();
                            thread::sleep(block);
                        });
                        delays.push(b.await.unwrap());
                        a.await.unwrap();
                    }
                    delays
                });
                drop(rt);
                delays
            }

            /// Lateness of every 1 ms sleep of `SLEEPERS` looping tasks while
            /// one task blocks a worker `BUSY_BLOCK` in every `BUSY_PERIOD`.
            pub(crate) fn timers_with_busy_worker(run: Duration) -> Vec<Duration> {
                let rt = $build();
                let stop = Arc::new(AtomicBool::new(false));
                let all = Arc::new(Mutex::new(Vec::new()));
                rt.block_on(async {
                    let busy = $krate::spawn({
                        let stop = stop.clone();
                        async move {
                            while !stop.load(Relaxed) {
                                thread::sleep(BUSY_BLOCK);
                                $sleep(BUSY_PERIOD - BUSY_BLOCK).await;
                            }
                        }
                    });
                    let sleepers: Vec<_> = (0..SLEEPERS)
                        .map(|_| {
                            let (stop, all) = (stop.clone(), all.clone());
                            $krate::spawn(async move {
                                let mut late = Vec::with_capacity(2048);
                                while !stop.load(Relaxed) {
                                    let start = Instant::now();
                                    $sleep(TIMER).await;
                                    late.push(start.elapsed().saturating_sub(TIMER));
                                }
                                all.lock().unwrap().extend(late);
                            })
                        })
                        .collect();
                    $sleep(run).await;
                    stop.store(true, Relaxed);
                    busy.await.unwrap();
                    for s in sleepers {
                        s.await.unwrap();
                    }
                });
                drop(rt);
                let all = std::mem::take(&mut *all.lock().unwrap());
                all
            }
        }
    };
}

async fn weft_sleep(d: Duration) {
    weft::time::sleep(d).await.unwrap()
}

workloads!(on_weft, weft, build_weft, crate::weft_sleep);
workloads!(on_tokio, tokio, build_tokio, tokio::time::sleep);

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects one part.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let tries = env_or("LATENCY_TRIES", 50) as usize;
    let block = Duration::from_millis(env_or("LATENCY_BLOCK_MS", 50));
    let secs = Duration::from_secs(env_or("LATENCY_SECS", 2));

    if wants("lifo_behind_block") {
        println!(
            "lifo_behind_block: A wakes B, then blocks its worker {block:?}; delay until B runs, \
             {tries} tries"
        );
        for (name, mut delays) in [
            ("weft", on_weft::lifo_behind_block(tries, block)),
            ("tokio", on_tokio::lifo_behind_block(tries, block)),
        ] {
            if std::env::var_os("LATENCY_VERBOSE").is_some() {
                println!("  {name:>5}: {delays:?}");
            }
            println!(
                "  {name:>5}: p50 {}  p99 {}  max {}",
                ms(quantile(&mut delays, 0.5)),
                ms(quantile(&mut delays, 0.99)),
                ms(quantile(&mut delays, 1.0)),
            );
        }
    }
    if wants("timers_with_busy_worker") {
        println!(
            "timers_with_busy_worker: {SLEEPERS} tasks sleep {TIMER:?} in a loop, one task \
             blocks a worker {BUSY_BLOCK:?} in every {BUSY_PERIOD:?}; lateness over {secs:?}"
        );
        for (name, mut late) in [
            ("weft", on_weft::timers_with_busy_worker(secs)),
            ("tokio", on_tokio::timers_with_busy_worker(secs)),
        ] {
            println!(
                "  {name:>5}: p50 {}  p99 {}  p99.9 {}  ({} wakes)",
                ms(quantile(&mut late, 0.5)),
                ms(quantile(&mut late, 0.99)),
                ms(quantile(&mut late, 0.999)),
                late.len(),
            );
        }
    }
}
