//! The HTTP bench's server: hyper's "Hello, World!" over HTTP/1.1 with
//! hyper's timer on (so the header-read timeout runs, as in a server that
//! resists slowloris), on 2 worker threads of weft (io_uring or epoll) or
//! tokio. `benches/scripts/http.py` starts one per measurement and reads
//! its CPU time from `/proc/PID/stat`.
//!
//! ```text
//! http_hello --runtime weft-uring|weft-epoll|weft-serve|weft-compat|tokio [--addr 127.0.0.1:0] [--timer on|off]
//! ```
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
        "tokio" => tokio_server(addr, timer),
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
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .io_driver(driver)
        .build()?;
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
            let live = Live::new();
            weft::spawn(async move {
                let _live = live;
                let mut builder = http1::Builder::new();
                if timer {
                    builder.timer(weft_hyper::WeftTimer);
                }
                let _ = builder
                    .serve_connection(stream, service_fn(hello::<Incoming>))
                    .await;
            });
        }
    })
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
