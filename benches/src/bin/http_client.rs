//! The HTTP bench's client-side comparison: `--conns` tasks, each sending
//! GETs one after another through one shared pooled client, for `--secs`
//! seconds, against a hello server at `--addr` (run as a separate process
//! by `benches/scripts/http.py`). `weft` is `weft_hyper::Client` (each
//! request inside `weft::time::timeout(5 s)`, a scope with that deadline,
//! so it also encodes and sends `grpc-timeout`); `tokio` is hyper-util's
//! legacy client (each request inside `tokio::time::timeout(5 s)`) with its
//! `HttpConnector`, `TokioExecutor` and `TokioTimer`. 2 worker threads each.
//!
//! `--http2 on`: both speak HTTP/2 with prior knowledge (one multiplexed
//! connection each; the server must accept it: `http_hello --runtime
//! weft-serve --http2 on`).
//!
//! Output, one line: `requests=N secs=S rps=R cpu_us_per_req=C`, where C is
//! this process's CPU time per request (client side only).
//!
//! `--runtime paired --slices N --secs S`: both clients in one process,
//! measured in N alternating slices of S seconds each (see [`paired`]);
//! one line per pair, then the medians of the per-pair ratios. On a host
//! whose speed drifts within seconds, this is the comparison to trust.

use std::{
    error::Error,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full};
use weft_benches::echo_load::process_cpu;

const WORKERS: usize = 2;

fn main() -> Result<(), Box<dyn Error>> {
    let mut runtime = String::from("weft");
    let mut addr: Option<SocketAddr> = None;
    let (mut conns, mut secs) = (50usize, 5.0f64);
    let mut http2 = false;
    let mut slices = 8usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runtime" => runtime = value,
            "--addr" => addr = Some(value.parse()?),
            "--conns" => conns = value.parse()?,
            "--secs" => secs = value.parse()?,
            "--http2" => http2 = value == "on",
            "--slices" => slices = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let uri: Uri = format!("http://{}/", addr.ok_or("--addr is required")?).parse()?;
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs_f64(secs);
    if runtime == "paired" {
        return paired(&uri, conns, http2, slices, measure);
    }
    let (requests, cpu) = match runtime.as_str() {
        "weft" => {
            let weft = WeftSide::new(http2)?;
            let out = weft.run(&uri, conns, warmup, measure);
            // HTTP_CLIENT_METRICS=1: weft's per-worker counters over the
            // whole run (warm-up included), per request measured.
            if std::env::var_os("HTTP_CLIENT_METRICS").is_some() {
                let per = |n: u64| n as f64 / out.0.max(1) as f64;
                for (i, w) in weft.rt.metrics().worker.iter().enumerate() {
                    eprintln!(
                        "worker {i}: per request: polls {:.2} parks {:.3} steals {:.3} lifo hits {:.2} injector pops {:.3} io handoffs {:.3} io enters {:.3} submissions {:.2} completions {:.2}",
                        per(w.polls), per(w.parks), per(w.steals), per(w.lifo_hits),
                        per(w.injector_pops), per(w.io_handoffs), per(w.io_enters),
                        per(w.io_submissions), per(w.io_completions)
                    );
                }
            }
            out
        }
        "tokio" => TokioSide::new(http2)?.run(&uri, conns, warmup, measure),
        other => return Err(format!("unknown runtime {other}").into()),
    };
    println!(
        "requests={requests} secs={secs:.3} rps={:.0} cpu_us_per_req={:.2}",
        requests as f64 / secs,
        cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
    );
    Ok(())
}

/// The requests completed while `measure` ran, and this process's CPU
/// time meanwhile.
type Slice = (u64, Duration);

/// Sleeps `warmup` (with the runtime's `sleep`), then measures the
/// requests `count` gains and this process's CPU time over `measure`.
async fn window<F, Fut>(count: &AtomicU64, warmup: Duration, measure: Duration, sleep: F) -> Slice
where
    F: Fn(Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if !warmup.is_zero() {
        sleep(warmup).await;
    }
    let (c0, n0) = (process_cpu(), count.load(Relaxed));
    sleep(measure).await;
    (count.load(Relaxed) - n0, process_cpu() - c0)
}

/// weft's side: the runtime and its pooled client, kept across runs.
struct WeftSide {
    rt: weft::runtime::Runtime,
    client: weft_hyper::Client<Full<Bytes>>,
}

impl WeftSide {
    fn new(http2: bool) -> Result<WeftSide, Box<dyn Error>> {
        // HTTP_CLIENT_FLAVOR=per_core: the thread-per-core flavour (no
        // stealing), to see what stealing costs this client.
        let builder = match std::env::var("HTTP_CLIENT_FLAVOR").as_deref() {
            Ok("per_core") => weft::runtime::Builder::new_thread_per_core(),
            _ => weft::runtime::Builder::new_multi_thread(),
        };
        // HTTP_CLIENT_MONITOR=off, HTTP_CLIENT_IDLE_SPIN_US=N: the two
        // latency mechanisms that cost this client most of its CPU gap
        // to tokio's (docs/BENCHMARKS.md, "The monitor's ticks: what
        // they buy and cost").
        let mut builder = builder.worker_threads(WORKERS);
        if let Ok(v) = std::env::var("HTTP_CLIENT_IDLE_SPIN_US") {
            builder = builder.idle_spin(Duration::from_micros(v.parse()?));
        }
        if let Ok(v) = std::env::var("HTTP_CLIENT_MONITOR") {
            builder = builder.monitor(v != "off");
        }
        let rt = builder.build()?;
        let client = weft_hyper::Client::builder()
            .http2_only(http2)
            .runtime(rt.handle().clone())
            .build();
        Ok(WeftSide { rt, client })
    }

    /// `conns` tasks send requests back to back for `warmup + measure`.
    fn run(&self, uri: &Uri, conns: usize, warmup: Duration, measure: Duration) -> Slice {
        let done = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        self.rt.block_on(async {
            let tasks: Vec<_> = (0..conns)
                .map(|_| {
                    let (client, uri, done, count) = (
                        self.client.clone(),
                        uri.clone(),
                        done.clone(),
                        count.clone(),
                    );
                    weft::spawn(async move {
                        while !done.load(Relaxed) {
                            // The same shape as the tokio side: a timeout
                            // around the request in the connection's task.
                            // weft's timeout is a scope with that deadline,
                            // so the client also encodes and sends
                            // `grpc-timeout`.
                            let res = weft::time::timeout(Duration::from_secs(5), async {
                                let res = client.get(uri.clone()).await?;
                                weft_hyper::client::read_body(res.into_body()).await
                            })
                            .await;
                            if matches!(res, Ok(Ok(_))) {
                                count.fetch_add(1, Relaxed);
                            }
                        }
                    })
                })
                .collect();
            let out = window(&count, warmup, measure, |d| async move {
                let _ = weft::time::sleep(d).await;
            })
            .await;
            done.store(true, Relaxed);
            for t in tasks {
                let _ = t.await;
            }
            out
        })
    }
}

/// tokio's side: hyper-util's legacy client with its `HttpConnector`,
/// `TokioExecutor` and `TokioTimer`, kept across runs.
struct TokioSide {
    rt: tokio::runtime::Runtime,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl TokioSide {
    fn new(http2: bool) -> Result<TokioSide, Box<dyn Error>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .enable_all()
            .build()?;
        let _guard = rt.enter();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .http2_only(http2)
                .build_http::<Full<Bytes>>();
        drop(_guard);
        Ok(TokioSide { rt, client })
    }

    fn run(&self, uri: &Uri, conns: usize, warmup: Duration, measure: Duration) -> Slice {
        let done = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        self.rt.block_on(async {
            let tasks: Vec<_> = (0..conns)
                .map(|_| {
                    let (client, uri, done, count) = (
                        self.client.clone(),
                        uri.clone(),
                        done.clone(),
                        count.clone(),
                    );
                    tokio::spawn(async move {
                        while !done.load(Relaxed) {
                            let res = tokio::time::timeout(Duration::from_secs(5), async {
                                let res = client.get(uri.clone()).await?;
                                res.into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .map_err(Box::<dyn Error + Send + Sync>::from)
                            })
                            .await;
                            if matches!(res, Ok(Ok(_))) {
                                count.fetch_add(1, Relaxed);
                            }
                        }
                    })
                })
                .collect();
            let out = window(&count, warmup, measure, tokio::time::sleep).await;
            done.store(true, Relaxed);
            for t in tasks {
                let _ = t.await;
            }
            out
        })
    }
}

/// `--runtime paired`: both clients in this one process, their pools
/// kept warm, in alternating slices of `measure` (weft, tokio, tokio,
/// weft, ...), so that the host's drift (this shared machine's speed
/// moves by a third within seconds) falls on both sides of each pair. A
/// slice's CPU is the whole process's; the idle runtime's parked threads
/// add next to nothing. Prints each pair and the medians of the ratios.
fn paired(
    uri: &Uri,
    conns: usize,
    http2: bool,
    slices: usize,
    measure: Duration,
) -> Result<(), Box<dyn Error>> {
    if slices == 0 {
        return Err("--slices must be at least 1".into());
    }
    let weft = WeftSide::new(http2)?;
    let tokio = TokioSide::new(http2)?;
    let warmup = Duration::from_secs(1);
    weft.run(uri, conns, warmup, Duration::ZERO);
    tokio.run(uri, conns, warmup, Duration::ZERO);
    let per_sec = |(n, _): Slice| n as f64 / measure.as_secs_f64();
    let cpu_per = |(n, cpu): Slice| cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
    let (mut rps, mut cpu) = (Vec::new(), Vec::new());
    for i in 0..slices {
        let (w, t) = if i % 2 == 0 {
            let w = weft.run(uri, conns, Duration::ZERO, measure);
            (w, tokio.run(uri, conns, Duration::ZERO, measure))
        } else {
            let t = tokio.run(uri, conns, Duration::ZERO, measure);
            (weft.run(uri, conns, Duration::ZERO, measure), t)
        };
        println!(
            "pair {i}: weft rps={:.0} cpu_us_per_req={:.2}  tokio rps={:.0} cpu_us_per_req={:.2}",
            per_sec(w),
            cpu_per(w),
            per_sec(t),
            cpu_per(t)
        );
        rps.push(per_sec(w) / per_sec(t).max(1.0));
        cpu.push(cpu_per(w) / cpu_per(t).max(f64::MIN_POSITIVE));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        (v[(n - 1) / 2] + v[n / 2]) / 2.0
    };
    let (lo, hi) = (
        rps.iter().copied().fold(f64::MAX, f64::min),
        rps.iter().copied().fold(0.0, f64::max),
    );
    println!(
        "paired slices={slices} rps_ratio_median={:.3} ({lo:.3}-{hi:.3}) cpu_ratio_median={:.3}",
        median(&mut rps),
        median(&mut cpu)
    );
    Ok(())
}
