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
//! (c) `under_echo_load`: a TCP echo server on the runtime serves a
//!     closed-loop loopback client (`ECHO_CONNS` connections, 64-byte
//!     requests, the echo bench's client on two OS threads) while, on the
//!     same runtime, a prober task wakes a receiver task every millisecond
//!     (its delay from the wake to running: the schedule latency a user
//!     sees) and `ECHO_SLEEPERS` tasks sleep 1 ms in a loop (their
//!     lateness), over `LATENCY_SECS` seconds. weft's own sampled
//!     `schedule_latency` histogram is printed beside it.
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
/// Part (c): echo connections, client threads and request size; sleepers.
const ECHO_CONNS: usize = 32;
const ECHO_CLIENT_THREADS: usize = 2;
const ECHO_SIZE: usize = 64;
const ECHO_SLEEPERS: usize = 100;
/// How often the prober wakes its receiver.
const PROBE_PERIOD: Duration = Duration::from_millis(1);

/// What part (c) measured on one runtime.
struct UnderLoad {
    /// Wake-to-run delays of the probe's receiver.
    wake_to_run: Vec<Duration>,
    /// Lateness of the sleepers' 1 ms sleeps.
    timer_late: Vec<Duration>,
    /// Echo round trips per second meanwhile.
    echo_rate: f64,
    /// weft's own sampled `schedule_latency` histogram: p50, p99, p99.9.
    internal: Option<[Duration; 3]>,
}

/// Drives the echo client in small batches on its own thread until `stop`;
/// returns round trips per second.
fn echo_load(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<f64> {
    thread::spawn(move || {
        let client = weft_benches::echo_load::LoadClient::connect(
            addr,
            ECHO_CONNS,
            ECHO_CLIENT_THREADS,
            ECHO_SIZE,
        )
        .expect("connect the echo client");
        let started = Instant::now();
        let mut requests = 0;
        while !stop.load(Relaxed) {
            requests += client.run(20).requests;
        }
        requests as f64 / started.elapsed().as_secs_f64()
    })
}

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
    ($module:ident, $krate:ident, $build:path, $sleep:expr, $serve:path, $internal:path) => {
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

            /// Part (c): schedule latency and timer lateness while the
            /// runtime serves an echo load.
            pub(crate) fn under_echo_load(run: Duration) -> UnderLoad {
                let rt = $build();
                let stop = Arc::new(AtomicBool::new(false));
                let late = Arc::new(Mutex::new(Vec::new()));
                let wake_to_run = rt.block_on(async {
                    let addr = $serve().await;
                    let client = echo_load(addr, stop.clone());
                    let sleepers: Vec<_> = (0..ECHO_SLEEPERS)
                        .map(|_| {
                            let (stop, late) = (stop.clone(), late.clone());
                            $krate::spawn(async move {
                                let mut mine = Vec::with_capacity(4096);
                                while !stop.load(Relaxed) {
                                    let start = Instant::now();
                                    $sleep(TIMER).await;
                                    mine.push(start.elapsed().saturating_sub(TIMER));
                                }
                                late.lock().unwrap().extend(mine);
                            })
                        })
                        .collect();
                    let (tx, mut rx) = futures_channel::mpsc::unbounded::<Instant>();
                    let receiver = $krate::spawn(async move {
                        use futures_util::StreamExt;
                        let mut delays = Vec::with_capacity(8192);
                        while let Some(sent) = rx.next().await {
                            delays.push(sent.elapsed());
                        }
                        delays
                    });
                    let prober = $krate::spawn({
                        let stop = stop.clone();
                        async move {
                            while !stop.load(Relaxed) {
                                $sleep(PROBE_PERIOD).await;
                                tx.unbounded_send(Instant::now()).unwrap();
                            }
                        }
                    });
                    $sleep(run).await;
                    stop.store(true, Relaxed);
                    prober.await.unwrap();
                    for s in sleepers {
                        s.await.unwrap();
                    }
                    let delays = receiver.await.unwrap();
                    (delays, client)
                });
                let (wake_to_run, client) = wake_to_run;
                let echo_rate = client.join().expect("the echo client");
                let internal = $internal(&rt);
                drop(rt);
                let timer_late = std::mem::take(&mut *late.lock().unwrap());
                UnderLoad {
                    wake_to_run,
                    timer_late,
                    echo_rate,
                    internal,
                }
            }
        }
    };
}

/// An echo server on the current weft runtime; its address.
async fn weft_serve() -> std::net::SocketAddr {
    let listener = weft::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    weft::spawn(async move {
        // Ends with an error when the runtime shuts down.
        while let Ok((stream, _)) = listener.accept().await {
            weft::spawn(async move {
                stream.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let (read, b) = stream.read(buf).await;
                    buf = b;
                    if !matches!(read, Ok(n) if n > 0) {
                        return;
                    }
                    let (written, b) = stream.write_all(buf).await;
                    buf = b;
                    if written.is_err() {
                        return;
                    }
                    buf.clear();
                }
            });
        }
    });
    addr
}

/// An echo server on the current tokio runtime; its address.
async fn tokio_serve() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.set_nodelay(true).unwrap();
                let mut buf = vec![0; 4096];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn weft_sleep(d: Duration) {
    weft::time::sleep(d).await.unwrap()
}

workloads!(
    on_weft,
    weft,
    build_weft,
    crate::weft_sleep,
    crate::weft_serve,
    crate::weft_schedule_latency
);
workloads!(
    on_tokio,
    tokio,
    build_tokio,
    tokio::time::sleep,
    crate::tokio_serve,
    crate::no_internal
);

/// weft's sampled schedule-latency histogram, every worker merged.
fn weft_schedule_latency(rt: &weft::Runtime) -> Option<[Duration; 3]> {
    let h = rt.metrics().schedule_latency();
    Some([h.percentile(50.0), h.percentile(99.0), h.percentile(99.9)])
}

fn no_internal(_: &tokio::runtime::Runtime) -> Option<[Duration; 3]> {
    None
}

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
    if wants("under_echo_load") {
        println!(
            "under_echo_load: echo server with {ECHO_CONNS} connections of {ECHO_SIZE} B \
             requests; a wake every {PROBE_PERIOD:?} (wake to run) and {ECHO_SLEEPERS} \
             tasks sleeping {TIMER:?} in a loop (lateness), over {secs:?}"
        );
        for (name, mut got) in [
            ("weft", on_weft::under_echo_load(secs)),
            ("tokio", on_tokio::under_echo_load(secs)),
        ] {
            println!(
                "  {name:>5}: wake to run p50 {}  p99 {}  p99.9 {}  ({} wakes) | timer lateness \
                 p50 {}  p99 {}  p99.9 {}  ({} sleeps) | {:.0} echoes/s",
                ms(quantile(&mut got.wake_to_run, 0.5)),
                ms(quantile(&mut got.wake_to_run, 0.99)),
                ms(quantile(&mut got.wake_to_run, 0.999)),
                got.wake_to_run.len(),
                ms(quantile(&mut got.timer_late, 0.5)),
                ms(quantile(&mut got.timer_late, 0.99)),
                ms(quantile(&mut got.timer_late, 0.999)),
                got.timer_late.len(),
                got.echo_rate,
            );
            if let Some([p50, p99, p999]) = got.internal {
                println!(
                    "         its schedule_latency histogram (every task, sampled): p50 {}  \
                     p99 {}  p99.9 {}",
                    ms(p50),
                    ms(p99),
                    ms(p999)
                );
            }
        }
    }
}
