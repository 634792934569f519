//! The HTTP bench's server: hyper's "Hello, World!" over HTTP/1.1 with
//! hyper's timer on (so the header-read timeout runs, as in a server that
//! resists slowloris), on 2 worker threads of weft (io_uring or epoll),
//! tokio or monoio (the io_uring peer). `benches/scripts/http.py` starts
//! one per measurement and reads its CPU time from `/proc/PID/stat`.
//!
//! ```text
//! http_hello --runtime weft-uring|weft-epoll|weft-serve|weft-compat|weft-tpc|tokio|monoio [--addr 127.0.0.1:0] [--timer on|off]
//! ```
//! `weft-tpc` is the thread-per-core flavour with one `SO_REUSEPORT`
//! listener per worker (monoio's shape). For experiments, not the bench:
//! `HTTP_HELLO_IDLE_SPIN_US`, `HTTP_HELLO_IO_SPIN` and `HTTP_HELLO_MONITOR=0`
//! set the stealing runtime's builder knobs, and `HTTP_HELLO_METRICS=SECS`
//! prints each worker's counters (polls, steals, parks, hand-offs, io
//! submissions and enters) every `SECS` on stderr.
//! `weft-serve` is `weft_hyper::serve` (io_uring), with its per-connection
//! shutdown and idle watch, instead of the bare hyper connection loop;
//! `--http2 on` makes it accept HTTP/2 (prior knowledge) too.
//! `weft-compat` is the set-up before weft-hyper: `TokioIo` over weft's
//! tokio-io traits and a hand-written timer (io_uring).
//! Prints `listening <addr>` once it accepts, then serves until killed.
//!
//! `--requests N` bounds it for an instruction count
//! (`benches/scripts/http_instr.py` runs it under callgrind): once it has
//! answered `N` requests and every connection has closed (the load client,
//! `http_load --requests N`, closes its connections after its last
//! response), it prints `served N` to stderr and exits, so everything it
//! executed belongs to accepting, serving and closing the client's
//! connections. `weft-serve` ends through its graceful shutdown instead
//! (the shutdown future completes at the `N`th request).

use std::{
    convert::Infallible,
    error::Error,
    net::SocketAddr,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};

const WORKERS: usize = 2;

/// Worker threads: `HTTP_HELLO_WORKERS` if set (for experiments), else
/// [`WORKERS`], as in the bench.
fn workers() -> usize {
    std::env::var("HTTP_HELLO_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(WORKERS)
}
/// A number from the environment, for experiments (`HTTP_HELLO_IDLE_SPIN_US`,
/// `HTTP_HELLO_IO_SPIN`, `HTTP_HELLO_MONITOR=0`); unset in the bench.
fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}
const HELLO: &[u8] = b"Hello, World!";

/// Requests answered so far (counted only with `--requests`).
static SERVED: AtomicU64 = AtomicU64::new(0);
/// Connections accepted and not yet closed (bare loops, with `--requests`).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Told once `--requests` have been answered (ends `weft-serve`).
static ALL_SERVED: weft::sync::Notify = weft::sync::Notify::const_new();
/// `--requests`: exit after this many requests once no connection is open.
static LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

async fn hello<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let limit = LIMIT.load(SeqCst);
    if limit != u64::MAX && SERVED.fetch_add(1, SeqCst) + 1 == limit {
        ALL_SERVED.notify_one();
    }
    Ok(Response::new(Full::new(Bytes::from_static(HELLO))))
}

/// Counts a connection of a bare loop in [`LIVE`] while it lives.
struct Live;

impl Live {
    fn new() -> Live {
        LIVE.fetch_add(1, SeqCst);
        Live
    }
}

impl Drop for Live {
    /// The last connection to close after `--requests N` were served ends
    /// the process (the bare loops never return from their accept loop).
    fn drop(&mut self) {
        let limit = LIMIT.load(SeqCst);
        if LIVE.fetch_sub(1, SeqCst) == 1 && limit != u64::MAX && SERVED.load(SeqCst) >= limit {
            eprintln!("served {}", SERVED.load(SeqCst));
            std::process::exit(0);
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut runtime = String::from("weft-uring");
    let mut addr: SocketAddr = "127.0.0.1:0".parse()?;
    let mut timer = true;
    let mut http2 = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runtime" => runtime = value,
            "--addr" => addr = value.parse()?,
            "--timer" => timer = value == "on",
            "--http2" => http2 = value == "on",
            "--requests" => LIMIT.store(value.parse()?, SeqCst),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    match runtime.as_str() {
        "weft-uring" => weft_server(addr, timer, weft::io::Driver::Uring, false, false),
        "weft-epoll" => weft_server(addr, timer, weft::io::Driver::Epoll, false, false),
        "weft-compat" => weft_compat_server(addr, timer),
        "weft-serve" => weft_server(addr, timer, weft::io::Driver::Uring, true, http2),
        "weft-tpc" => weft_per_core_server(addr, timer),
        "tokio" => tokio_server(addr, timer),
        "monoio" => monoio_server(addr, timer),
        other => Err(format!("unknown runtime {other}").into()),
    }
}

fn weft_server(
    addr: SocketAddr,
    timer: bool,
    driver: weft::io::Driver,
    with_serve: bool,
    http2: bool,
) -> Result<(), Box<dyn Error>> {
    let mut builder = weft::runtime::Builder::new_multi_thread();
    builder = builder.worker_threads(workers()).io_driver(driver);
    if let Some(us) = env_u64("HTTP_HELLO_IDLE_SPIN_US") {
        builder = builder.idle_spin(std::time::Duration::from_micros(us));
    }
    if let Some(polls) = env_u64("HTTP_HELLO_IO_SPIN") {
        builder = builder.io_spin(polls as u32);
    }
    if env_u64("HTTP_HELLO_MONITOR") == Some(0) {
        builder = builder.monitor(false);
    }
    let rt = builder.build()?;
    print_metrics(&rt);
    rt.block_on(async move {
        let listener = weft::net::TcpListener::bind(addr).await?;
        println!("listening {}", listener.local_addr()?);
        if with_serve {
            let server = weft_hyper::Server::builder()
                .header_read_timeout(if timer {
                    Some(std::time::Duration::from_secs(30))
                } else {
                    None
                })
                .http2(http2)
                .build();
            let limit = LIMIT.load(SeqCst);
            let shutdown = async move {
                if limit == u64::MAX {
                    std::future::pending::<()>().await;
                }
                let _ = ALL_SERVED.notified().await;
            };
            let report = server
                .serve(listener, hello::<weft_hyper::server::Body>, shutdown)
                .await?;
            if limit != u64::MAX {
                eprintln!("served {} ({report})", SERVED.load(SeqCst));
            }
            return Ok(());
        }
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            weft::spawn(serve_bare(stream, timer, Live::new()));
        }
    })
}

/// One connection of a bare loop: hyper's HTTP/1 connection driver over
/// weft's stream, hyper's timer on weft's if `timer`; `live` counted it
/// from its accept.
async fn serve_bare(stream: weft::net::TcpStream, timer: bool, live: Live) {
    let _live = live;
    let mut builder = http1::Builder::new();
    if timer {
        builder.timer(weft_hyper::WeftTimer);
    }
    let _ = builder
        .serve_connection(stream, service_fn(hello::<Incoming>))
        .await;
}

/// Experiments (`HTTP_HELLO_METRICS=SECS`): every `SECS`, each worker's
/// counters since the last print, on stderr.
fn print_metrics(rt: &weft::runtime::Runtime) {
    if let Some(secs) = env_u64("HTTP_HELLO_METRICS") {
        // Experiments: every `secs`, each worker's counters since the last
        // print, per request answered by the whole runtime.
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            let mut last = handle.metrics();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(secs));
                let now = handle.metrics();
                let polls: u64 = now.worker.iter().map(|w| w.polls).sum::<u64>()
                    - last.worker.iter().map(|w| w.polls).sum::<u64>();
                for (i, (n, l)) in now.worker.iter().zip(&last.worker).enumerate() {
                    eprintln!(
                    "w{i} polls {} steals {} parks {} lifo {} inj {} handoffs {} subs {} comps {} enters {} peer-reaped {} submitted-for-stuck {} watch-hits {}",
                    n.polls - l.polls,
                    n.steals - l.steals,
                    n.parks - l.parks,
                    n.lifo_hits - l.lifo_hits,
                    n.injector_pops - l.injector_pops,
                    n.io_handoffs - l.io_handoffs,
                    n.io_submissions - l.io_submissions,
                    n.io_completions - l.io_completions,
                    n.io_enters - l.io_enters,
                    n.io_peer_reaped - l.io_peer_reaped,
                    n.io_submitted_for_stuck - l.io_submitted_for_stuck,
                    n.park_watch_hits - l.park_watch_hits,
                );
                }
                for w in &now.worker {
                    eprintln!(
                        "poll mean {:?} p50 {:?} p90 {:?} p99 {:?}",
                        w.poll_duration.mean(),
                        w.poll_duration.percentile(50.0),
                        w.poll_duration.percentile(90.0),
                        w.poll_duration.percentile(99.0)
                    );
                }
                eprintln!("total polls {polls}");
                last = now;
            }
        });
    }
}

/// The thread-per-core flavour (io_uring): one `SO_REUSEPORT` listener
/// per worker on one port, each with its own accept loop, so a connection
/// and its task never leave the worker the kernel gave it to (monoio's
/// shape).
fn weft_per_core_server(addr: SocketAddr, timer: bool) -> Result<(), Box<dyn Error>> {
    let rt = weft::runtime::Builder::new_thread_per_core()
        .worker_threads(workers())
        .io_driver(weft::io::Driver::Uring)
        .build()?;
    print_metrics(&rt);
    let _enter = rt.enter();
    let mut addr = addr;
    for _ in 0..workers() {
        let socket = weft::net::TcpSocket::new_v4()?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        // Spawned from outside, the loops land on the workers in turn.
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if stream.set_nodelay(true).is_err() {
                    continue;
                }
                weft::spawn(serve_bare(stream, timer, Live::new()));
            }
        });
    }
    println!("listening {addr}");
    rt.block_on(std::future::pending::<()>());
    Ok(())
}

/// What a user wrote before weft-hyper (the set-up the issue measured):
/// hyper over weft's tokio-io traits through `TokioIo`, and a hand-written
/// timer that boxes a weft sleep (no in-place reset).
fn weft_compat_server(addr: SocketAddr, timer: bool) -> Result<(), Box<dyn Error>> {
    struct NaiveTimer;
    struct NaiveSleep(weft::time::Sleep);
    impl std::future::Future for NaiveSleep {
        type Output = ();
        fn poll(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            std::pin::Pin::new(&mut self.get_mut().0)
                .poll(cx)
                .map(|_| ())
        }
    }
    impl hyper::rt::Sleep for NaiveSleep {}
    impl hyper::rt::Timer for NaiveTimer {
        fn sleep(&self, d: std::time::Duration) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
            Box::pin(NaiveSleep(weft::time::sleep(d)))
        }
        fn sleep_until(&self, t: std::time::Instant) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
            Box::pin(NaiveSleep(weft::time::sleep_until(t)))
        }
    }
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .io_driver(weft::io::Driver::Uring)
        .build()?;
    rt.block_on(async move {
        let listener = weft::net::TcpListener::bind(addr).await?;
        println!("listening {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let live = Live::new();
            weft::spawn(async move {
                let _live = live;
                let mut builder = http1::Builder::new();
                if timer {
                    builder.timer(NaiveTimer);
                }
                let _ = builder
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        service_fn(hello::<Incoming>),
                    )
                    .await;
            });
        }
    })
}

fn tokio_server(addr: SocketAddr, timer: bool) -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let live = Live::new();
            tokio::spawn(async move {
                let _live = live;
                let mut builder = http1::Builder::new();
                if timer {
                    builder.timer(hyper_util::rt::TokioTimer::new());
                }
                let _ = builder
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        service_fn(hello::<Incoming>),
                    )
                    .await;
            });
        }
    })
}

/// The peer: hyper on monoio, one io_uring runtime per thread with its own
/// `SO_REUSEPORT` listener (monoio's shape, as `weft-tpc`), hyper's io
/// through monoio-compat (`into_poll_io`: readiness from the ring, then
/// the receive and send as direct syscalls) and monoio-compat's timer.
fn monoio_server(addr: SocketAddr, timer: bool) -> Result<(), Box<dyn Error>> {
    use monoio::io::IntoPollIo;
    let mut addr = addr;
    let mut threads = Vec::new();
    for _ in 0..workers() {
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        threads.push(std::thread::spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .build()
                .expect("monoio runtime");
            rt.block_on(async move {
                let opts = monoio::net::ListenerOpts::new().reuse_port(true);
                let listener = match monoio::net::TcpListener::bind_with_config(addr, &opts) {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = bound_tx.send(listener.local_addr().map_err(|e| e.to_string()));
                while let Ok((stream, _)) = listener.accept().await {
                    if stream.set_nodelay(true).is_err() {
                        continue;
                    }
                    let Ok(io) = stream.into_poll_io() else {
                        continue;
                    };
                    let live = Live::new();
                    monoio::spawn(async move {
                        let _live = live;
                        let mut builder = http1::Builder::new();
                        if timer {
                            builder.timer(monoio_compat::hyper::MonoioTimer);
                        }
                        let _ = builder
                            .serve_connection(
                                monoio_compat::hyper::MonoioIo::new(io),
                                service_fn(hello::<Incoming>),
                            )
                            .await;
                    });
                }
            });
        }));
        addr = bound_rx.recv()??;
    }
    println!("listening {addr}");
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}
