//! A TCP echo server on weft, with a load client to measure it.
//!
//! With no arguments, runs both in one process for three seconds: the server
//! on a weft runtime, the client on plain OS threads with blocking sockets,
//! then prints requests per second, p50/p99 latency and the server's CPU
//! time per request.
//!
//! ```text
//! cargo run --release -p weft-examples --example echo
//! cargo run --release -p weft-examples --example echo -- --driver epoll --conns 256 --size 4096
//! cargo run --release -p weft-examples --example echo -- --flavor current --driver epoll
//! cargo run --release -p weft-examples --example echo -- --flavor per-core
//! cargo run --release -p weft-examples --example echo -- --pooled
//! cargo run --release -p weft-examples --example echo -- --registered-files 0
//! cargo run --release -p weft-examples --example echo -- --server 127.0.0.1:7000
//! cargo run --release -p weft-examples --example echo -- --client 127.0.0.1:7000 --secs 10
//! ```
//!
//! Flags: `--server ADDR` (only the server), `--client ADDR` (only the
//! client), `--conns N` (default 32), `--size BYTES` (default 64), `--secs S`
//! (default 3; a lone server runs until killed unless given), `--driver
//! uring|epoll|auto` (default auto: io_uring where the kernel allows it, else
//! epoll; the `WEFT_IO` environment variable decides when this is auto),
//! `--flavor multi|current|per-core` (default multi: work-stealing workers;
//! `current`: one thread, the server's own `block_on`; `per-core`:
//! thread-per-core workers, one `SO_REUSEPORT` listener each), `--pooled`
//! (the server reads with `TcpStream::recv_stream`: under io_uring one
//! multishot receive per connection into the worker's provided buffer
//! ring, writing each chunk back from its pooled buffer; under epoll the
//! same api over readiness), `--registered-files N` (io_uring: slots per
//! ring for busy sockets, `Builder::io_registered_files`; default 1024, 0
//! off), `--no-peer-reap` (io_uring, work-stealing flavour: only a ring's
//! own worker reaps it, `Builder::io_peer_reap(false)`). Run with server
//! and client together it also prints how many registered-file slots the
//! connections held, and that they came back, and how many completions
//! or readiness events peers took from a worker stuck inside one poll.

use std::{
    error::Error,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use weft::{
    io::Driver,
    net::{TcpListener, TcpStream as WeftStream},
};

/// OS threads of the load client; each drives its share of the connections.
const CLIENT_THREADS: usize = 4;
/// The server's per-connection buffer.
const SERVER_BUF: usize = 4096;

fn main() {
    if let Err(e) = run() {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args = Args::parse()?;
    match (&args.server, &args.client) {
        (Some(addr), None) => run_server(&args, addr),
        (None, Some(addr)) => {
            let report = run_client(addr.parse()?, &args)?;
            report.print(None);
            Ok(())
        }
        (None, None) => run_both(&args),
        (Some(_), Some(_)) => Err("give --server or --client, not both".into()),
    }
}

// ------------------------------------------------------------------ server

/// Which runtime serves (`--flavor`).
#[derive(Clone, Copy, Debug)]
enum Flavor {
    /// Work-stealing workers (`Builder::new_multi_thread`).
    Multi,
    /// One thread, the one inside `block_on` (`Builder::new_current_thread`).
    Current,
    /// Workers that keep their tasks (`Builder::new_thread_per_core`), one
    /// `SO_REUSEPORT` listener each.
    PerCore,
}

/// A running server: its address, its io driver, and its runtime (dropped
/// by the caller at the end; a current-thread runtime stays with the
/// thread whose `block_on` runs it, until the process exits).
type Server = (SocketAddr, Driver, Option<weft::Runtime>);

/// Starts the server on `addr`.
fn start_server(args: &Args, addr: &str) -> Result<Server, Box<dyn Error>> {
    let builder = match args.flavor {
        Flavor::Multi => weft::runtime::Builder::new_multi_thread(),
        Flavor::Current => weft::runtime::Builder::new_current_thread(),
        Flavor::PerCore => weft::runtime::Builder::new_thread_per_core(),
    };
    let builder = match args.registered_files {
        Some(slots) => builder.io_registered_files(slots),
        None => builder,
    };
    let rt = builder
        .io_driver(args.driver)
        .io_peer_reap(args.peer_reap)
        .build()?;
    let driver = rt.io_driver();
    match args.flavor {
        Flavor::Multi => {
            let listener = rt.block_on(TcpListener::bind(addr))?;
            let local = listener.local_addr()?;
            rt.spawn(serve(listener, args.pooled));
            Ok((local, driver, Some(rt)))
        }
        Flavor::Current => {
            let listener = rt.block_on(TcpListener::bind(addr))?;
            let local = listener.local_addr()?;
            // The runtime runs only inside `block_on`: give it a thread.
            let pooled = args.pooled;
            thread::spawn(move || rt.block_on(serve(listener, pooled)));
            Ok((local, driver, None))
        }
        Flavor::PerCore => {
            // One listener per worker on one port: the kernel spreads the
            // connections, and each worker's accept loop keeps its own
            // (spawned from outside, the loops land on the workers in turn).
            let workers = rt.metrics().workers;
            let _enter = rt.enter();
            let mut local: SocketAddr = addr.parse()?;
            for _ in 0..workers {
                let socket = weft::net::TcpSocket::new_v4()?;
                socket.set_reuseport(true)?;
                socket.bind(local)?;
                let listener = socket.listen(1024)?;
                local = listener.local_addr()?;
                rt.spawn(serve(listener, args.pooled));
            }
            drop(_enter);
            Ok((local, driver, Some(rt)))
        }
    }
}

/// Accepts connections for ever, one task each.
async fn serve(listener: TcpListener, pooled: bool) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) if pooled => {
                weft::spawn(echo_pooled(stream));
            }
            Ok((stream, _peer)) => {
                weft::spawn(echo(stream));
            }
            Err(e) => {
                eprintln!("accept: {e}");
                return;
            }
        }
    }
}

/// [`echo`] with pooled receive: the runtime owns the receive buffers and
/// hands over each chunk the kernel filled (a `RecvBuf`, which goes back to
/// the pool when dropped); the chunk is written back as it is, no copy.
async fn echo_pooled(stream: WeftStream) {
    if let Err(e) = stream.set_nodelay(true) {
        eprintln!("set_nodelay: {e}");
    }
    let mut chunks = stream.recv_stream();
    loop {
        let chunk = match chunks.recv().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return, // the peer closed its side
            Err(e) => {
                eprintln!("recv: {e}");
                return;
            }
        };
        let (written, _chunk) = stream.write_all(chunk).await;
        if let Err(e) = written {
            eprintln!("write: {e}");
            return;
        }
    }
}

/// Writes back everything it reads until the peer closes the connection.
///
/// weft's io is completion-based: a read takes the buffer and hands it back
/// with the result, so the kernel can own it while the read is in flight.
async fn echo(stream: WeftStream) {
    if let Err(e) = stream.set_nodelay(true) {
        eprintln!("set_nodelay: {e}");
    }
    // Empty, with room for SERVER_BUF bytes: a read fills the spare capacity
    // and sets the length to what it read, which is what write_all sends.
    let mut buf = Vec::with_capacity(SERVER_BUF);
    loop {
        let (read, b) = stream.read(buf).await;
        buf = b;
        match read {
            Ok(0) => return, // the peer closed its side
            Ok(_) => {}
            Err(e) => {
                eprintln!("read: {e}");
                return;
            }
        }
        let (written, b) = stream.write_all(buf).await;
        buf = b;
        if let Err(e) = written {
            eprintln!("write: {e}");
            return;
        }
        buf.clear();
    }
}

/// Only the server: prints its CPU use once a second.
fn run_server(args: &Args, addr: &str) -> Result<(), Box<dyn Error>> {
    let (local, driver, _rt) = start_server(args, addr)?;
    println!(
        "echo server on {local} (io driver: {driver}, runtime: {:?})",
        args.flavor
    );
    let started = Instant::now();
    let mut last = (started, process_cpu());
    while args.secs.is_none_or(|secs| started.elapsed() < secs) {
        thread::sleep(Duration::from_secs(1));
        let now = (Instant::now(), process_cpu());
        let busy = (now.1 - last.1).as_secs_f64() / (now.0 - last.0).as_secs_f64();
        println!("server CPU: {:.0} % of a core", busy * 100.0);
        last = now;
    }
    Ok(())
}

/// Server and client in one process; the server's CPU time is the process's
/// minus the client threads'.
fn run_both(args: &Args) -> Result<(), Box<dyn Error>> {
    let (addr, driver, rt) = start_server(args, "127.0.0.1:0")?;
    println!(
        "weft echo server on {addr} (io driver: {driver}, runtime: {:?}{}); client: {} \
         connections × {} B, {} threads, {:?}",
        args.flavor,
        if args.pooled { ", pooled receive" } else { "" },
        args.conns,
        args.size,
        CLIENT_THREADS.min(args.conns),
        args.secs.unwrap_or(DEFAULT_SECS),
    );
    // The registered-file slots the server's sockets hold while the client
    // runs (sampled), and after it closed its connections.
    let busiest = std::sync::atomic::AtomicUsize::new(0);
    let running = std::sync::atomic::AtomicBool::new(true);
    let report = thread::scope(|scope| {
        if let Some(rt) = &rt {
            scope.spawn(|| {
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    let now = rt.metrics().io_registered_files;
                    busiest.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(20));
                }
            });
        }
        let report = run_client(addr, args);
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        report
    })?;
    let server_cpu = report.process_cpu.saturating_sub(report.client_cpu);
    report.print(Some(server_cpu));
    if let Some(rt) = &rt {
        // The server's sockets close as they read the end of the stream.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = rt.metrics().io_registered_files;
        while left > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
            left = rt.metrics().io_registered_files;
        }
        println!(
            "registered files: up to {} slots in use during the run, {left} after",
            busiest.into_inner()
        );
        let workers = rt.metrics().worker;
        let reaped: u64 = workers.iter().map(|w| w.io_peer_reaped).sum();
        let submitted: u64 = workers.iter().map(|w| w.io_submitted_for_stuck).sum();
        let watched: u64 = workers.iter().map(|w| w.park_watch_hits).sum();
        // How peers reach a stuck worker's io: its epoll, or its ring if
        // the rings allow it (work stealing, `membarrier` registered, not
        // switched off).
        let how = match (rt.io_driver(), rt.io_peer_reap()) {
            (weft::io::Driver::Epoll, _) => "epoll read by peers",
            (_, true) => "ring reaped by peers",
            (_, false) => "ring reaped by its worker alone",
        };
        println!(
            "taken by peers from a worker stuck in a poll ({how}): {reaped}; \
             its queued ops submitted by the monitor: {submitted} times; parks cut short for \
             it: {watched}"
        );
        if left > 0 {
            return Err(format!("{left} registered-file slots still in use").into());
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ client

const DEFAULT_SECS: Duration = Duration::from_secs(3);

/// What the client measured.
struct Report {
    elapsed: Duration,
    /// Round-trip times, sorted.
    latencies: Vec<Duration>,
    /// CPU time of the client threads, and of the whole process, during the
    /// run.
    client_cpu: Duration,
    process_cpu: Duration,
}

impl Report {
    fn print(&self, server_cpu: Option<Duration>) {
        let n = self.latencies.len();
        if n == 0 {
            println!("no request completed");
            return;
        }
        let at = |q: f64| self.latencies[((q * n as f64) as usize).min(n - 1)];
        println!(
            "{n} requests in {:.2} s: {:.0} req/s",
            self.elapsed.as_secs_f64(),
            n as f64 / self.elapsed.as_secs_f64()
        );
        println!(
            "latency: p50 {:?}, p99 {:?}, max {:?}",
            at(0.5),
            at(0.99),
            self.latencies[n - 1]
        );
        if let Some(cpu) = server_cpu {
            println!(
                "server CPU: {:.2} µs/request ({:.0} % of a core)",
                cpu.as_secs_f64() * 1e6 / n as f64,
                cpu.as_secs_f64() / self.elapsed.as_secs_f64() * 100.0
            );
        }
    }
}

/// Opens the connections, then has `CLIENT_THREADS` threads drive them for
/// `--secs`. Each thread owns every fourth connection and works in rounds:
/// it sends one request on each of its connections, then reads the replies
/// in order, so every connection always has one request in flight.
fn run_client(addr: SocketAddr, args: &Args) -> Result<Report, Box<dyn Error>> {
    let threads = CLIENT_THREADS.min(args.conns);
    let mut shares: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..args.conns {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        shares[i % threads].push(stream);
    }
    let secs = args.secs.unwrap_or(DEFAULT_SECS);
    let size = args.size;
    let cpu_before = process_cpu();
    let started = Instant::now();
    let deadline = started + secs;
    let workers: Vec<_> = shares
        .into_iter()
        .map(|streams| thread::spawn(move || drive(streams, size, deadline)))
        .collect();
    let mut report = Report {
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        client_cpu: Duration::ZERO,
        process_cpu: Duration::ZERO,
    };
    for worker in workers {
        let (latencies, cpu) = worker.join().expect("client thread panicked")?;
        report.latencies.extend(latencies);
        report.client_cpu += cpu;
    }
    report.elapsed = started.elapsed();
    report.process_cpu = process_cpu() - cpu_before;
    report.latencies.sort_unstable();
    Ok(report)
}

/// One client thread: rounds over its connections until `deadline`;
/// returns each round trip's latency and the thread's CPU time.
fn drive(
    mut streams: Vec<TcpStream>,
    size: usize,
    deadline: Instant,
) -> std::io::Result<(Vec<Duration>, Duration)> {
    let cpu_before = thread_cpu();
    let request: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut reply = vec![0; size];
    let mut sent = vec![Instant::now(); streams.len()];
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        for (stream, sent) in streams.iter_mut().zip(&mut sent) {
            *sent = Instant::now();
            stream.write_all(&request)?;
        }
        for (stream, sent) in streams.iter_mut().zip(&sent) {
            stream.read_exact(&mut reply)?;
            latencies.push(sent.elapsed());
            if reply != request {
                return Err(std::io::Error::other("the reply differs from the request"));
            }
        }
    }
    Ok((latencies, thread_cpu() - cpu_before))
}

// -------------------------------------------------------------- CPU clocks

fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn cpu_clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and `id` is one of the CPU
    // clocks every Linux kernel has.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime: {}", std::io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// --------------------------------------------------------------- arguments

struct Args {
    server: Option<String>,
    client: Option<String>,
    conns: usize,
    size: usize,
    secs: Option<Duration>,
    driver: Driver,
    flavor: Flavor,
    pooled: bool,
    registered_files: Option<u32>,
    peer_reap: bool,
}

impl Args {
    fn parse() -> Result<Args, Box<dyn Error>> {
        let mut args = Args {
            server: None,
            client: None,
            conns: 32,
            size: 64,
            secs: None,
            driver: Driver::Auto,
            flavor: Flavor::Multi,
            pooled: false,
            registered_files: None,
            peer_reap: true,
        };
        let mut argv = std::env::args().skip(1);
        while let Some(flag) = argv.next() {
            let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--server" => args.server = Some(value()?),
                "--client" => args.client = Some(value()?),
                "--conns" => args.conns = value()?.parse()?,
                "--size" => args.size = value()?.parse()?,
                "--secs" => args.secs = Some(Duration::from_secs_f64(value()?.parse()?)),
                "--driver" => args.driver = value()?.parse()?,
                "--flavor" => {
                    args.flavor = match value()?.as_str() {
                        "multi" => Flavor::Multi,
                        "current" => Flavor::Current,
                        "per-core" => Flavor::PerCore,
                        other => {
                            return Err(format!(
                                "unknown flavor {other:?}: multi, current or per-core"
                            )
                            .into())
                        }
                    }
                }
                "--pooled" => args.pooled = true,
                "--registered-files" => args.registered_files = Some(value()?.parse()?),
                "--no-peer-reap" => args.peer_reap = false,
                "-h" | "--help" => {
                    println!(
                        "echo [--server ADDR | --client ADDR] [--conns N] [--size BYTES] \
                         [--secs S] [--driver uring|epoll|auto] [--flavor multi|current|per-core] [--pooled] \
                         [--registered-files N] [--no-peer-reap]"
                    );
                    std::process::exit(0);
                }
                other => return Err(format!("unknown flag {other:?} (try --help)").into()),
            }
        }
        if args.conns == 0 || args.size == 0 {
            return Err("--conns and --size must be at least 1".into());
        }
        Ok(args)
    }
}
