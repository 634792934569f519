//! Networking benches over loopback: a TCP echo server and a UDP ping-pong,
//! each on weft with io_uring, weft with epoll, and tokio (2 worker threads
//! each), in one run; the TCP echo also on monoio (io_uring,
//! thread-per-core: one runtime on each of 2 threads, each with its own
//! `SO_REUSEPORT` listener on the same port, the shape of monoio's own
//! benchmark).
//!
//! - `tcp_echo/<size>B_<conns>c`: messages of 64 B or 4 KiB over 32 or 256
//!   connections. The server accepts and spawns one task per connection,
//!   which reads into a 4 KiB buffer and writes back what it read (weft:
//!   `TcpStream::read` / `write_all` with an owned `Vec<u8>`; tokio:
//!   `AsyncReadExt::read` / `AsyncWriteExt::write_all`). `weft_pooled` is
//!   weft on io_uring reading with `recv_stream` instead (a multishot
//!   receive into the worker's provided buffer ring of 4 KiB buffers) and
//!   writing each chunk back from its pooled buffer; `weft_per_core` is
//!   weft's thread-per-core flavour on io_uring (no stealing; one
//!   `SO_REUSEPORT` listener per worker, like monoio). The load comes from
//!   `weft_benches::echo_load`: 4 OS threads on blocking `std` sockets, each
//!   driving a quarter of the connections in rounds (one request in flight
//!   per connection). One criterion iteration is a batch of
//!   `ROUNDS_PER_ITER` round trips on every connection (`iter_custom`), so
//!   criterion reports the time per batch, and its throughput line is
//!   requests per second.
//! - `tcp_echo_skewed/64B_32c_4heavy`: the 64 B echo over 32 connections
//!   of which 4 (one per client thread) carry requests marked heavy, for
//!   which every server spins 100 µs before answering: a skewed load where
//!   work stealing should beat thread-per-core (see `tcp_echo_skewed`).
//!   Its summary measures three fresh sets of connections, since where the
//!   kernel's `SO_REUSEPORT` puts the heavy ones decides monoio's balance,
//!   and adds a table of ratios to monoio with each server's busiest
//!   thread's share of its CPU (monoio's shows how its heavy connections
//!   were split: ≈ 50% for an even split, which leaves stealing nothing to
//!   even out).
//! - `tcp_echo_skewed/64B_32c_4heavy_1000us_fan_out`: the same servers,
//!   with a 1 ms spin, under a fan-out client
//!   (`LoadClient::connect_fan_out`): its threads run their rounds in
//!   lockstep, a round ending for all when the last reply is in, and the 4
//!   heavy requests of each round go to connections drawn afresh. The skew
//!   is per request, so no placement evens it out, and a round waits for
//!   the busiest server thread: the shape of a front end that asks every
//!   shard. Under the first client the threads run apart, so a
//!   thread-per-core server's idle core serves the client threads whose
//!   heavy connection sits elsewhere, and the cores stay busy whatever the
//!   balance.
//! - `udp_ping_pong`: two connected UDP sockets in one runtime; a task on
//!   one answers every datagram, a task on the other sends 64 B and waits
//!   for the answer, `UDP_ROUND_TRIPS` times per iteration.
//!
//! Criterion's model (time per iteration) says little about a server, so
//! after each workload's criterion runs, the bench measures the servers once
//! more for a summary, alternating between them (10 rounds of a ~100 ms
//! batch on each), so that the background load of a shared machine reaches
//! all of them alike. At the end it prints requests per second, p50/p99
//! latency, server CPU time per request, and weft/tokio ratios, and writes
//! the same table as JSON to `<target dir>/echo-summary.json`. Server CPU is
//! the process's CPU time minus the client threads' (see `echo_load`); for
//! UDP, where both ends are tasks, it is the whole process's.
//!
//! The TCP summary also splits the server's CPU into user and system time
//! and counts its context switches, from `/proc/self/task/TID/{stat,status}`
//! of the server's threads, read at the start and end of its summary (every
//! runtime names its threads `srv-<server>`, and each idles while the
//! others run), and counts its heap allocations per request (the bench's
//! global allocator counts every thread but the load client's and the main
//! thread's; see `weft_benches::server_stats`). User/system come in clock
//! ticks (the kernel samples at `CONFIG_HZ`, 250 Hz here), much coarser
//! than the total, which comes from the CPU clocks: set `ECHO_ROUNDS=50`
//! (default 10) for a split to about ±10%. With `ECHO_PERF=1` (perf
//! installed, root or a low `perf_event_paranoid`) the bench also runs
//! `perf stat --per-thread` on itself during each TCP summary and prints
//! syscalls (`io_uring_enter`, `sendto`, `recvfrom`, `write`, `read`,
//! `epoll_wait`, `futex`) and context switches per request for each server.
//! With `ECHO_METRICS=1` it prints each weft server's scheduler and io
//! counters per request over each TCP summary (polls, steals, parks, LIFO
//! hits, io hand-offs, submissions, completions, driver entries), and for
//! every server its busiest thread's share of the server's CPU (how evenly
//! `SO_REUSEPORT` split a thread-per-core server's connections).
//! `ECHO_REGISTERED_FILES=<slots>` sets weft's registered-file table per
//! ring (`Builder::io_registered_files`; 0 turns registered files off), and
//! `ECHO_EVENT_INTERVAL=<ticks>` weft's `Builder::event_interval`.
//!
//! Each server has its own runtime, started on its first bench function
//! call (a server filtered out on the command line is never built) and
//! dropped after the workload's summary; the ones not under load sit
//! parked. Run with `cargo bench -p weft-benches --bench echo`
//! (≈ 2 min); docs/BENCHMARKS.md holds the figures.

use std::{
    cell::{OnceCell, RefCell},
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        OnceLock,
    },
    time::{Duration, Instant},
};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use weft_benches::{
    echo_load::{process_cpu, Batch, Histogram, LoadClient, HEAVY},
    server_stats::{self, CountingAlloc, ThreadStats},
};

/// Counts the server threads' allocations (see `server_stats`).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Worker threads of every runtime (the machine has 2 cores).
const NUM_WORKERS: usize = 2;
/// OS threads of the load client.
const CLIENT_THREADS: usize = 4;
/// The server's read buffer.
const SERVER_BUF: usize = 4096;
/// Message sizes and connection counts of `tcp_echo`.
const SIZES: [usize; 2] = [64, 4096];
const CONNS: [usize; 2] = [32, 256];
/// The skewed workload ([`tcp_echo_skewed`]): connections, heavy ones,
/// the work per heavy request, fresh sets of connections measured.
const SKEW_CONNS: usize = 32;
const SKEW_HEAVY: usize = 4;
const SKEW_WORK: Duration = Duration::from_micros(100);
/// The spin of a heavy request under the fan-out client: long enough that
/// the heavy requests, not the client's and the light requests' costs,
/// make most of a round (at 100 µs they are a third of it, and even
/// tokio, balanced, gains only 1.03–1.14× over monoio there).
const FAN_OUT_WORK: Duration = Duration::from_millis(1);

/// Heavy connections (per round, under the fan-out client) of the skewed
/// workloads: `SKEW_HEAVY`, or `ECHO_SKEW_HEAVY` for probes.
fn skew_heavy() -> usize {
    static HEAVY_CONNS: OnceLock<usize> = OnceLock::new();
    *HEAVY_CONNS.get_or_init(|| env_or("ECHO_SKEW_HEAVY", SKEW_HEAVY as u64) as usize)
}

/// The spin of a heavy request in a workload whose own is `default`:
/// `ECHO_SKEW_WORK_US` (µs) instead, if set, for probes.
fn skew_work(default: Duration) -> Duration {
    std::env::var_os("ECHO_SKEW_WORK_US").map_or(default, |_| {
        Duration::from_micros(env_or("ECHO_SKEW_WORK_US", 0))
    })
}

/// The spin of a heavy request in the skewed workload being measured, in
/// µs (each workload starts its own servers after setting it).
static SPIN_MICROS: AtomicU64 = AtomicU64::new(0);

/// The number in environment variable `name`, or `default` if it is unset.
///
/// # Panics
/// If it is set to something else than a number.
fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}
const SKEW_PLACEMENTS: usize = 3;
/// Round trips each connection does per criterion iteration.
const ROUNDS_PER_ITER: u64 = 8;
/// Round trips per iteration of `udp_ping_pong`, and the datagram size.
const UDP_ROUND_TRIPS: u64 = 1_000;
const UDP_SIZE: usize = 64;
/// The summary's interleaved measurement: rounds, and the length of one
/// server's batch in a round.
const SUMMARY_ROUNDS: usize = 10;
const SUMMARY_BATCH: Duration = Duration::from_millis(100);
/// Criterion settings: samples, warm-up and measurement per function.
const SAMPLES: usize = 10;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(3);

/// The servers compared, in table order; tokio is the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    WeftUring,
    /// weft on io_uring with peers' reaping off
    /// (`Builder::io_peer_reap(false)`: rings with `DEFER_TASKRUN`, reaped
    /// by their own worker only): what the reaping costs or buys.
    WeftUringOwned,
    /// weft on io_uring with pooled receive (`recv_stream`: a multishot
    /// receive into the worker's provided buffer ring); TCP echo only.
    WeftPooled,
    WeftEpoll,
    /// weft's thread-per-core flavour on io_uring (tasks stay on the worker
    /// that spawned them, no stealing), one `SO_REUSEPORT` listener per
    /// worker as monoio has; TCP echo only.
    WeftPerCore,
    Tokio,
    /// monoio (io_uring, thread-per-core): TCP echo only.
    Monoio,
}

const SERVERS: [Server; 7] = [
    Server::WeftUring,
    Server::WeftUringOwned,
    Server::WeftPooled,
    Server::WeftEpoll,
    Server::WeftPerCore,
    Server::Tokio,
    Server::Monoio,
];

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::WeftUring => "weft_uring",
            Server::WeftUringOwned => "weft_uring_owned",
            Server::WeftPooled => "weft_pooled",
            Server::WeftEpoll => "weft_epoll",
            Server::WeftPerCore => "weft_per_core",
            Server::Tokio => "tokio",
            Server::Monoio => "monoio",
        }
    }

    /// The name prefix of this server's threads (at most 15 bytes with a
    /// suffix: Linux truncates thread names there).
    fn thread_prefix(self) -> &'static str {
        match self {
            Server::WeftUring => "srv-wuring",
            Server::WeftUringOwned => "srv-wuown",
            Server::WeftPooled => "srv-wpool",
            Server::WeftEpoll => "srv-wepoll",
            Server::WeftPerCore => "srv-wpcore",
            Server::Tokio => "srv-tokio",
            Server::Monoio => "srv-monoio",
        }
    }

    fn weft_driver(self) -> Option<weft::io::Driver> {
        match self {
            Server::WeftUring
            | Server::WeftUringOwned
            | Server::WeftPooled
            | Server::WeftPerCore => Some(weft::io::Driver::Uring),
            Server::WeftEpoll => Some(weft::io::Driver::Epoll),
            Server::Tokio | Server::Monoio => None,
        }
    }

    /// Runs `rounds` of `client` and counts the allocations the server's
    /// threads made meanwhile.
    fn measure(self, client: &LoadClient, rounds: u64) -> Batch {
        let allocations = server_stats::allocations();
        let mut batch = client.run(rounds);
        batch.allocations = server_stats::allocations() - allocations;
        batch
    }
}

/// A running runtime of any kind; dropping it shuts it down.
enum Rt {
    Weft(weft::Runtime),
    Tokio(tokio::runtime::Runtime),
    /// Thread-per-core: only its echo server, which it starts itself.
    Monoio(MonoioServer),
}

fn build(server: Server) -> Rt {
    if server == Server::Monoio {
        return Rt::Monoio(MonoioServer::start(NUM_WORKERS));
    }
    match server.weft_driver() {
        Some(driver) => {
            let builder = if server == Server::WeftPerCore {
                weft::runtime::Builder::new_thread_per_core()
            } else {
                weft::runtime::Builder::new_multi_thread()
            };
            // `ECHO_REGISTERED_FILES=<slots>`: the registered-file table
            // per ring (0 turns it off; for A/B runs).
            let builder = match std::env::var("ECHO_REGISTERED_FILES") {
                Ok(v) => builder.io_registered_files(v.parse().expect("a slot count")),
                Err(_) => builder,
            };
            // `ECHO_EVENT_INTERVAL=<ticks>`: how often a busy worker
            // enters its ring between parks (for A/B runs).
            let builder = match std::env::var("ECHO_EVENT_INTERVAL") {
                Ok(v) => builder.event_interval(v.parse().expect("a tick count")),
                Err(_) => builder,
            };
            let rt = builder
                .io_peer_reap(server != Server::WeftUringOwned)
                .worker_threads(NUM_WORKERS)
                .thread_name(server.thread_prefix())
                .io_driver(driver)
                .build()
                .unwrap();
            assert_eq!(
                rt.io_driver(),
                driver,
                "{} not available here",
                server.name()
            );
            Rt::Weft(rt)
        }
        None => Rt::Tokio(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(NUM_WORKERS)
                .thread_name(server.thread_prefix())
                .enable_all()
                .build()
                .unwrap(),
        ),
    }
}

// ---------------------------------------------------------------- TCP echo

/// Binds a listener on a free loopback port and spawns the accept loop.
fn start_echo_server(rt: &Rt, server: Server) -> SocketAddr {
    match rt {
        Rt::Weft(rt) if server == Server::WeftPerCore => {
            // One listener per worker on one port, as monoio's: the kernel
            // spreads the connections, and each worker's accept loop keeps
            // its own (spawned from outside, the loops land on the workers
            // in turn).
            let _enter = rt.enter();
            let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
            for _ in 0..NUM_WORKERS {
                let socket = weft::net::TcpSocket::new_v4().unwrap();
                socket.set_reuseport(true).unwrap();
                socket.bind(addr).unwrap();
                let listener = socket.listen(1024).unwrap();
                addr = listener.local_addr().unwrap();
                rt.spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        weft::spawn(weft_echo(stream));
                    }
                });
            }
            addr
        }
        Rt::Weft(rt) => {
            let listener = rt
                .block_on(weft::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let pooled = server == Server::WeftPooled;
            rt.spawn(async move {
                // Ends with an error when the runtime shuts down.
                while let Ok((stream, _)) = listener.accept().await {
                    if pooled {
                        weft::spawn(weft_pooled_echo(stream));
                    } else {
                        weft::spawn(weft_echo(stream));
                    }
                }
            });
            addr
        }
        Rt::Tokio(rt) => {
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            rt.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(tokio_echo(stream));
                }
            });
            addr
        }
        Rt::Monoio(server) => server.addr,
    }
}

/// monoio's echo server the way its own benchmark runs it: one runtime
/// (io_uring driver) per thread, each with its own listener on the same
/// port (`SO_REUSEPORT`, so the kernel spreads the connections), one task
/// per connection reading and writing with owned buffers.
struct MonoioServer {
    addr: SocketAddr,
    /// Each thread's listening socket, shut down to stop its accept loop.
    listeners: Vec<std::os::fd::RawFd>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl MonoioServer {
    fn start(threads: usize) -> MonoioServer {
        let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut listeners = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads {
            let (bound_tx, bound_rx) = std::sync::mpsc::channel();
            let bind_to = addr;
            let thread = std::thread::Builder::new()
                .name(format!("{}-{i}", Server::Monoio.thread_prefix()))
                .spawn(move || monoio_thread(bind_to, bound_tx))
                .unwrap();
            let (bound, fd) = bound_rx.recv().expect("monoio listener bound");
            addr = bound;
            listeners.push(fd);
            handles.push(thread);
        }
        MonoioServer {
            addr,
            listeners,
            threads: handles,
        }
    }
}

impl Drop for MonoioServer {
    fn drop(&mut self) {
        for fd in &self.listeners {
            // SAFETY: the fd is the thread's listener, open until its accept
            // loop ends, which this shutdown causes (the accept fails).
            unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn monoio_thread(addr: SocketAddr, bound: std::sync::mpsc::Sender<(SocketAddr, i32)>) {
    use std::os::fd::AsRawFd;

    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .expect("monoio io_uring runtime");
    rt.block_on(async move {
        let opts = monoio::net::ListenerOpts::new().reuse_port(true);
        let listener = monoio::net::TcpListener::bind_with_config(addr, &opts).unwrap();
        let _ = bound.send((listener.local_addr().unwrap(), listener.as_raw_fd()));
        // Ends when `MonoioServer::drop` shuts the listener down.
        while let Ok((stream, _)) = listener.accept().await {
            monoio::spawn(monoio_echo(stream));
        }
    });
}

async fn monoio_echo(mut stream: monoio::net::TcpStream) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(SERVER_BUF);
    loop {
        let (read, b) = stream.read(buf).await;
        buf = b;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        heavy_work(buf.first());
        let (written, b) = stream.write_all(buf).await;
        buf = b;
        if written.is_err() {
            return;
        }
        buf.clear();
    }
}

async fn weft_echo(stream: weft::net::TcpStream) {
    stream.set_nodelay(true).unwrap();
    // Empty with room for SERVER_BUF: a read fills the capacity and sets the
    // length to what it read, which is what `write_all` sends back.
    let mut buf = Vec::with_capacity(SERVER_BUF);
    loop {
        let (read, b) = stream.read(buf).await;
        buf = b;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        heavy_work(buf.first());
        let (written, b) = stream.write_all(buf).await;
        buf = b;
        if written.is_err() {
            return;
        }
        buf.clear();
    }
}

/// The echo on pooled receive: each chunk the multishot receive delivers
/// is written back from its ring buffer (no copy), which goes back to the
/// ring when the write returns it and it is dropped.
async fn weft_pooled_echo(stream: weft::net::TcpStream) {
    stream.set_nodelay(true).unwrap();
    let mut chunks = stream.recv_stream();
    while let Ok(Some(chunk)) = chunks.recv().await {
        heavy_work(chunk.first());
        let (written, chunk) = stream.write_all(chunk).await;
        drop(chunk);
        if written.is_err() {
            return;
        }
    }
}

async fn tokio_echo(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0; SERVER_BUF];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        heavy_work(buf.first());
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The extra work a request on a heavy connection costs the server (see
/// [`tcp_echo_skewed`]): [`skew_work`] of CPU, spinning, in the task.
fn heavy_work(first: Option<&u8>) {
    if first == Some(&HEAVY) {
        let start = Instant::now();
        let work = Duration::from_micros(SPIN_MICROS.load(Relaxed));
        while start.elapsed() < work {
            std::hint::spin_loop();
        }
    }
}

fn tcp_echo(c: &mut Criterion, summary: &mut Summary) {
    for size in SIZES {
        for conns in CONNS {
            let workload = format!("{size}B_{conns}c");
            // Each server starts on its bench function's first call, so a
            // filtered-out server costs nothing. A client comes first in its
            // tuple so that it closes its connections before its runtime
            // goes away.
            let servers: Vec<(Server, OnceCell<(LoadClient, Rt)>)> = SERVERS
                .into_iter()
                .map(|server| (server, OnceCell::new()))
                .collect();
            let start = |server| {
                let rt = build(server);
                let addr = start_echo_server(&rt, server);
                let client = LoadClient::connect(addr, conns, CLIENT_THREADS, size).unwrap();
                (client, rt)
            };
            let mut group = group(c, &format!("tcp_echo/{workload}"));
            group.throughput(Throughput::Elements(conns as u64 * ROUNDS_PER_ITER));
            for (server, started) in &servers {
                group.bench_function(server.name(), |b| {
                    let (client, _) = started.get_or_init(|| start(*server));
                    b.iter_custom(|iters| client.run(iters * ROUNDS_PER_ITER).wall)
                });
            }
            group.finish();
            let mut loads: Vec<(Server, Load<'_>)> = servers
                .iter()
                .filter_map(|(server, started)| {
                    let (client, _) = started.get()?;
                    let server = *server;
                    Some((
                        server,
                        Box::new(move |rounds| server.measure(client, rounds)) as Load<'_>,
                    ))
                })
                .collect();
            let perf = PerfStat::start();
            // The threads' CPU split and switches over the whole summary:
            // per-batch reads would each lose up to a 10 ms tick, and each
            // server's threads idle while the others run.
            let stats_before: Vec<ThreadStats> = loads
                .iter()
                .map(|(server, _)| ThreadStats::read(server.thread_prefix()))
                .collect();
            let counters_before: Vec<Option<[u64; 8]>> = servers
                .iter()
                .map(|(_, s)| weft_counters(s.get()))
                .collect();
            let mut measured = interleaved(&mut loads, 1);
            for ((server, total), before) in measured.iter_mut().zip(&stats_before) {
                let after = ThreadStats::read(server.thread_prefix());
                total.server_threads = after.since(before);
                total.busiest_thread_share = after.busiest_share(before);
                print_balance(&workload, *server, total.busiest_thread_share);
            }
            print_weft_counters(&workload, &servers, &counters_before, &measured);
            summary.add(&format!("tcp_echo {workload}"), measured);
            if let Some(perf) = perf {
                summary.add_syscalls(&format!("tcp_echo {workload}"), perf.finish());
            }
        }
    }
}

/// A weft server's scheduler and io counters summed over its workers
/// (`ECHO_METRICS=1` only): polls, steals, parks, LIFO hits, io hand-offs,
/// io submissions, completions, driver entries.
fn weft_counters(started: Option<&(LoadClient, Rt)>) -> Option<[u64; 8]> {
    std::env::var_os("ECHO_METRICS")?;
    let Some((_, Rt::Weft(rt))) = started else {
        return None;
    };
    let mut sum = [0u64; 8];
    for w in &rt.metrics().worker {
        let row = [
            w.polls,
            w.steals,
            w.parks,
            w.lifo_hits,
            w.io_handoffs,
            w.io_submissions,
            w.io_completions,
            w.io_enters,
        ];
        for (s, v) in sum.iter_mut().zip(row) {
            *s += v;
        }
    }
    Some(sum)
}

/// Prints the busiest server thread's share of the server's CPU over the
/// summary (`ECHO_METRICS=1`): a thread-per-core server (monoio,
/// `weft_per_core`) keeps the split the kernel's `SO_REUSEPORT` hashing
/// gave its connections, and an uneven one makes bigger batches on the
/// busy thread and fewer wakes on the other: less CPU per request.
fn print_balance(workload: &str, server: Server, busiest_share: f64) {
    if std::env::var_os("ECHO_METRICS").is_some() {
        println!(
            "ECHO_BALANCE {workload} {}: busiest thread {:.0}% of the server's CPU",
            server.name(),
            100.0 * busiest_share
        );
    }
}

/// Prints each weft server's counters per request over the summary
/// (`ECHO_METRICS=1`): where its scheduler spends its rounds.
fn print_weft_counters(
    workload: &str,
    servers: &[(Server, OnceCell<(LoadClient, Rt)>)],
    before: &[Option<[u64; 8]>],
    measured: &[(Server, Batch)],
) {
    for ((server, started), before) in servers.iter().zip(before) {
        let (Some(before), Some(after)) = (before, weft_counters(started.get())) else {
            continue;
        };
        let Some((_, batch)) = measured.iter().find(|(s, _)| s == server) else {
            continue;
        };
        let per = |i: usize| (after[i] - before[i]) as f64 / batch.requests.max(1) as f64;
        println!(
            "ECHO_METRICS {workload} {}: per request polls {:.3} steals {:.4} parks {:.3} \
             lifo_hits {:.3} io_handoffs {:.4} submissions {:.3} completions {:.3} enters {:.3}",
            server.name(),
            per(0),
            per(1),
            per(2),
            per(3),
            per(4),
            per(5),
            per(6),
            per(7)
        );
    }
}

/// A skewed load, where work stealing should beat thread-per-core: 64 B
/// echo over `SKEW_CONNS` connections, of which the first `SKEW_HEAVY`
/// (one per client thread) make the server spin `SKEW_WORK` per request.
/// A thread-per-core server (monoio) keeps each connection on the thread
/// whose `SO_REUSEPORT` listener the kernel gave it, so the heavy ones may
/// share a thread while the other idles; a work-stealing one spreads the
/// work. Where the kernel puts them changes per set of connections, so
/// after the criterion group (one set) the summary measures
/// `SKEW_PLACEMENTS` fresh sets, each a workload row of its own. Measured
/// twice: under the closed-loop client of the other echo workloads, whose
/// threads run apart (its first SKEW_HEAVY connections always heavy), and
/// under a fan-out client, whose threads meet after every round and whose
/// heavy requests go to connections drawn per round (`_fan_out`).
fn tcp_echo_skewed(c: &mut Criterion, summary: &mut Summary) {
    let fixed = |addr| {
        LoadClient::connect_skewed(addr, SKEW_CONNS, CLIENT_THREADS, 64, skew_heavy()).unwrap()
    };
    let fan_out = |addr| {
        LoadClient::connect_fan_out(addr, SKEW_CONNS, CLIENT_THREADS, 64, skew_heavy()).unwrap()
    };
    let workload = format!("64B_{SKEW_CONNS}c_{}heavy", skew_heavy());
    let fixed_work = skew_work(SKEW_WORK);
    let fixed_name = match fixed_work == SKEW_WORK {
        true => workload.clone(),
        false => format!("{workload}_{}us", fixed_work.as_micros()),
    };
    skewed_workload(c, summary, &fixed_name, fixed_work, &fixed);
    let fan_out_work = skew_work(FAN_OUT_WORK);
    let fan_out_name = format!("{workload}_{}us_fan_out", fan_out_work.as_micros());
    skewed_workload(c, summary, &fan_out_name, fan_out_work, &fan_out);
}

/// One skewed workload ([`tcp_echo_skewed`]), heavy requests spinning
/// `work`, on every server: its criterion group, then `SKEW_PLACEMENTS`
/// fresh sets of connections in the summary.
fn skewed_workload(
    c: &mut Criterion,
    summary: &mut Summary,
    workload: &str,
    work: Duration,
    connect: &dyn Fn(SocketAddr) -> LoadClient,
) {
    SPIN_MICROS.store(work.as_micros() as u64, Relaxed);
    summary.spins.push((workload.to_owned(), work));
    let servers: Vec<(Server, OnceCell<(SocketAddr, Rt)>)> = SERVERS
        .into_iter()
        .map(|server| (server, OnceCell::new()))
        .collect();
    let start = |server| {
        let rt = build(server);
        (start_echo_server(&rt, server), rt)
    };
    {
        // The criterion group's clients, closed before the placements' own.
        let clients: Vec<OnceCell<LoadClient>> = servers.iter().map(|_| OnceCell::new()).collect();
        let mut group = group(c, &format!("tcp_echo_skewed/{workload}"));
        group.throughput(Throughput::Elements(SKEW_CONNS as u64 * ROUNDS_PER_ITER));
        for ((server, started), client) in servers.iter().zip(&clients) {
            group.bench_function(server.name(), |b| {
                let (addr, _) = started.get_or_init(|| start(*server));
                let client = client.get_or_init(|| connect(*addr));
                b.iter_custom(|iters| client.run(iters * ROUNDS_PER_ITER).wall)
            });
        }
        group.finish();
    }
    let placements = if bench_mode() { SKEW_PLACEMENTS } else { 1 };
    for placement in 1..=placements {
        let clients: Vec<(Server, LoadClient)> = servers
            .iter()
            .filter_map(|(server, started)| Some((*server, connect(started.get()?.0))))
            .collect();
        let mut loads: Vec<(Server, Load<'_>)> = clients
            .iter()
            .map(|(server, client)| {
                let server = *server;
                let load = Box::new(move |rounds| server.measure(client, rounds)) as Load<'_>;
                (server, load)
            })
            .collect();
        let stats_before: Vec<ThreadStats> = loads
            .iter()
            .map(|(server, _)| ThreadStats::read(server.thread_prefix()))
            .collect();
        let mut measured = interleaved(&mut loads, 1);
        for ((server, total), before) in measured.iter_mut().zip(&stats_before) {
            let after = ThreadStats::read(server.thread_prefix());
            total.server_threads = after.since(before);
            total.busiest_thread_share = after.busiest_share(before);
        }
        summary.add(
            &format!("tcp_echo_skewed {workload} set {placement}"),
            measured,
        );
    }
}

// ----------------------------------------------------------- UDP ping-pong

/// The pinging socket of a runtime, between iterations.
enum Pinger {
    Weft(weft::net::UdpSocket),
    Tokio(tokio::net::UdpSocket),
}

/// Two connected sockets; a task answers every datagram on one of them; the
/// other is returned.
fn start_udp_pair(rt: &Rt) -> Pinger {
    match rt {
        Rt::Weft(rt) => {
            let (ping, pong) = rt.block_on(async {
                let ping = weft::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let pong = weft::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                ping.connect(pong.local_addr().unwrap()).await.unwrap();
                pong.connect(ping.local_addr().unwrap()).await.unwrap();
                (ping, pong)
            });
            rt.spawn(async move {
                let mut buf = Vec::with_capacity(UDP_SIZE);
                loop {
                    let (received, b) = pong.recv(buf).await;
                    buf = b;
                    if received.is_err() {
                        return;
                    }
                    let (sent, b) = pong.send(buf).await;
                    buf = b;
                    if sent.is_err() {
                        return;
                    }
                    buf.clear();
                }
            });
            Pinger::Weft(ping)
        }
        Rt::Tokio(rt) => {
            let (ping, pong) = rt.block_on(async {
                let ping = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let pong = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                ping.connect(pong.local_addr().unwrap()).await.unwrap();
                pong.connect(ping.local_addr().unwrap()).await.unwrap();
                (ping, pong)
            });
            rt.spawn(async move {
                let mut buf = vec![0; UDP_SIZE];
                while let Ok(n) = pong.recv(&mut buf).await {
                    if pong.send(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            Pinger::Tokio(ping)
        }
        Rt::Monoio(_) => unreachable!("the UDP ping-pong runs on weft and tokio only"),
    }
}

/// What a ping task hands back: its socket, for the next iteration, the
/// time its round trips took and their latencies.
type PingResult<S> = (S, Duration, Histogram);

/// `round_trips` pings from a task on `rt`; returns the socket and the
/// batch (wall time measured inside the task).
fn ping(rt: &Rt, pinger: Pinger, round_trips: u64) -> (Pinger, Batch) {
    let cpu_before = process_cpu();
    let (pinger, wall, latencies) = match (rt, pinger) {
        (Rt::Weft(rt), Pinger::Weft(sock)) => {
            let (sock, wall, latencies) =
                rt.block_on(rt.spawn(weft_ping(sock, round_trips))).unwrap();
            (Pinger::Weft(sock), wall, latencies)
        }
        (Rt::Tokio(rt), Pinger::Tokio(sock)) => {
            let (sock, wall, latencies) = rt
                .block_on(rt.spawn(tokio_ping(sock, round_trips)))
                .unwrap();
            (Pinger::Tokio(sock), wall, latencies)
        }
        _ => unreachable!("a pinger always belongs to its runtime"),
    };
    let batch = Batch {
        wall,
        requests: round_trips,
        latencies,
        client_cpu: Duration::ZERO,
        process_cpu: process_cpu() - cpu_before,
        ..Batch::default()
    };
    (pinger, batch)
}

async fn weft_ping(
    sock: weft::net::UdpSocket,
    round_trips: u64,
) -> PingResult<weft::net::UdpSocket> {
    let mut latencies = Histogram::default();
    let mut request = vec![7u8; UDP_SIZE];
    let mut reply = Vec::with_capacity(UDP_SIZE);
    let started = Instant::now();
    for _ in 0..round_trips {
        let sent_at = Instant::now();
        let (sent, b) = sock.send(request).await;
        request = b;
        assert_eq!(sent.unwrap(), UDP_SIZE);
        reply.clear();
        let (received, b) = sock.recv(reply).await;
        reply = b;
        assert_eq!(received.unwrap(), UDP_SIZE);
        latencies.record(sent_at.elapsed().as_nanos() as u64);
    }
    (sock, started.elapsed(), latencies)
}

async fn tokio_ping(
    sock: tokio::net::UdpSocket,
    round_trips: u64,
) -> PingResult<tokio::net::UdpSocket> {
    let mut latencies = Histogram::default();
    let request = vec![7u8; UDP_SIZE];
    let mut reply = vec![0; UDP_SIZE];
    let started = Instant::now();
    for _ in 0..round_trips {
        let sent_at = Instant::now();
        assert_eq!(sock.send(&request).await.unwrap(), UDP_SIZE);
        assert_eq!(sock.recv(&mut reply).await.unwrap(), UDP_SIZE);
        latencies.record(sent_at.elapsed().as_nanos() as u64);
    }
    (sock, started.elapsed(), latencies)
}

/// A runtime and its pinger, which a batch takes and puts back.
type UdpPair = (RefCell<Option<Pinger>>, Rt);

fn udp_ping_pong(c: &mut Criterion, summary: &mut Summary) {
    // Started on first use, as in `tcp_echo`; the pinger is dropped before
    // its runtime.
    let servers: Vec<(Server, OnceCell<UdpPair>)> = SERVERS
        .into_iter()
        .filter(|server| {
            !matches!(
                server,
                Server::Monoio | Server::WeftPooled | Server::WeftPerCore
            )
        })
        .map(|server| (server, OnceCell::new()))
        .collect();
    let start = |server| {
        let rt = build(server);
        let pinger = start_udp_pair(&rt);
        (RefCell::new(Some(pinger)), rt)
    };
    // One batch of `n` round trips; the pinger goes into the task and back.
    let run = |(pinger, rt): &UdpPair, n: u64| {
        let (back, batch) = ping(rt, pinger.take().unwrap(), n);
        *pinger.borrow_mut() = Some(back);
        batch
    };
    let mut group = group(c, "udp_ping_pong");
    group.throughput(Throughput::Elements(UDP_ROUND_TRIPS));
    for (server, started) in &servers {
        group.bench_function(server.name(), |b| {
            let pair = started.get_or_init(|| start(*server));
            b.iter_custom(|iters| run(pair, iters * UDP_ROUND_TRIPS).wall)
        });
    }
    group.finish();
    let mut loads: Vec<(Server, Load<'_>)> = servers
        .iter()
        .filter_map(|(server, started)| {
            let pair = started.get()?;
            Some((*server, Box::new(move |n| run(pair, n)) as Load<'_>))
        })
        .collect();
    summary.add(
        &format!("udp_ping_pong {UDP_SIZE}B"),
        interleaved(&mut loads, UDP_ROUND_TRIPS / 10),
    );
}

// ------------------------------------------------------ interleaved summary

/// A server under load: runs a batch of `n` units (rounds of every
/// connection, or round trips) and reports what it measured.
type Load<'a> = Box<dyn FnMut(u64) -> Batch + 'a>;

/// Measures every server for the summary, alternating between them: each of
/// `SUMMARY_ROUNDS` rounds runs one batch of about `SUMMARY_BATCH` on each
/// server in turn, so a change in the machine's background load reaches
/// every server alike. The batch size, in multiples of `unit`, comes from a
/// short calibration on each server (the median). Under `cargo test
/// --benches`, one batch of one `unit` per server.
fn interleaved(loads: &mut [(Server, Load<'_>)], unit: u64) -> Vec<(Server, Batch)> {
    let (rounds, units) = if bench_mode() {
        let mut per_unit: Vec<Duration> = loads
            .iter_mut()
            .map(|(_, load)| {
                load(unit); // warm
                load(unit).wall
            })
            .collect();
        per_unit.sort();
        let per_unit = per_unit
            .get(per_unit.len() / 2)
            .copied()
            .unwrap_or_default();
        let units = (SUMMARY_BATCH.as_secs_f64() / per_unit.as_secs_f64().max(1e-9)).ceil();
        (summary_rounds(), (units as u64).max(1))
    } else {
        (1, 1)
    };
    let mut totals: Vec<(Server, Batch)> = loads
        .iter()
        .map(|(server, _)| (*server, Batch::default()))
        .collect();
    for _ in 0..rounds {
        for ((_, load), (_, total)) in loads.iter_mut().zip(&mut totals) {
            total.merge(&load(units * unit));
        }
    }
    totals
}

/// `SUMMARY_ROUNDS`, or `ECHO_ROUNDS` from the environment: the user/system
/// split moves in 4 ms ticks, so it takes ~50 rounds to read it to ±10%.
fn summary_rounds() -> usize {
    std::env::var("ECHO_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(SUMMARY_ROUNDS)
}

/// Whether this is a `cargo bench` run (criterion gets `--bench`), not
/// `cargo test --benches`.
fn bench_mode() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

// ----------------------------------------------------------------- summary

/// One measured row: a workload on one server, its measured batches merged.
#[derive(Debug)]
struct Row {
    workload: String,
    server: Server,
    total: Batch,
    /// perf's counts of the server's threads over the whole summary
    /// (`ECHO_PERF=1`): event name and count.
    perf: Vec<(String, u64)>,
}

#[derive(Debug, Default)]
struct Summary {
    rows: Vec<Row>,
    /// Each skewed workload's spin per heavy request.
    spins: Vec<(String, Duration)>,
}

impl Summary {
    fn add(&mut self, workload: &str, measured: Vec<(Server, Batch)>) {
        for (server, total) in measured {
            self.rows.push(Row {
                workload: workload.to_owned(),
                server,
                total,
                perf: Vec::new(),
            });
        }
    }

    /// Files perf's counts with the rows of `workload`, by thread name.
    fn add_syscalls(&mut self, workload: &str, counts: Vec<(String, String, u64)>) {
        for row in self.rows.iter_mut().filter(|r| r.workload == workload) {
            for event in PERF_EVENTS {
                let total = counts
                    .iter()
                    .filter(|(thread, e, _)| {
                        e == event && thread.starts_with(row.server.thread_prefix())
                    })
                    .map(|(_, _, n)| n)
                    .sum();
                row.perf.push((short_event(event).to_owned(), total));
            }
        }
    }

    fn tokio_row(&self, workload: &str) -> Option<&Batch> {
        self.rows
            .iter()
            .find(|r| r.workload == workload && r.server == Server::Tokio)
            .map(|r| &r.total)
    }

    /// The ratios of `row` to tokio's row of the same workload: requests/s,
    /// CPU per request, p99, user-space CPU per request.
    fn ratios(&self, row: &Row) -> Option<[f64; 4]> {
        let tokio = self.tokio_row(&row.workload)?;
        let t = &row.total;
        Some([
            t.requests_per_sec() / tokio.requests_per_sec(),
            t.server_cpu_per_request().as_secs_f64() / tokio.server_cpu_per_request().as_secs_f64(),
            t.latencies.quantile(0.99).as_secs_f64() / tokio.latencies.quantile(0.99).as_secs_f64(),
            t.server_user_per_request().as_secs_f64()
                / tokio.server_user_per_request().as_secs_f64(),
        ])
    }

    fn print(&self) {
        println!();
        println!("Summary (interleaved batches; ratios are to tokio):");
        println!();
        println!(
            "| workload | server | req/s | p50 (µs) | p99 (µs) | server CPU (µs/req) \
             | user (µs/req) | sys (µs/req) | ctx switches/req | allocs/req \
             | req/s ratio | CPU/req ratio | user/req ratio | p99 ratio |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let t = &row.total;
            let ratios = match (row.server, self.ratios(row)) {
                (Server::Tokio, _) | (_, None) => "| — | — | — | —".to_owned(),
                (_, Some([rps, cpu, p99, user])) => {
                    format!("| {rps:.2} | {cpu:.2} | {user:.2} | {p99:.2}")
                }
            };
            println!(
                "| {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} {ratios} |",
                row.workload,
                row.server.name(),
                t.requests_per_sec(),
                micros(t.latencies.quantile(0.5)),
                micros(t.latencies.quantile(0.99)),
                micros(t.server_cpu_per_request()),
                micros(t.server_user_per_request()),
                micros(t.server_system_per_request()),
                t.per_request(t.server_threads.switches()),
                t.per_request(t.allocations),
            );
        }
        let skewed: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.workload.starts_with("tcp_echo_skewed") && r.server != Server::Monoio)
            .collect();
        if !skewed.is_empty() {
            println!();
            println!("Skewed load, weft and tokio against monoio (thread-per-core):");
            println!();
            // How busy the whole process (client and server) kept the
            // machine's cores during monoio's batches: a runtime can beat
            // monoio's req/s by more than `1 / busy` only by spending less
            // CPU per request (client and server together) than monoio.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            // And the most any server could reach with this client: the
            // cores divided by what a request costs at the least, the
            // client's CPU per request (the same blocking client for every
            // server) plus the heavy requests' spin averaged over all.
            let spin_of = |workload: &str| {
                let name = workload.split(" set ").next().unwrap_or(workload);
                let name = name.strip_prefix("tcp_echo_skewed ").unwrap_or(name);
                let work = self.spins.iter().find(|(w, _)| name == w);
                work.map_or(0.0, |(_, work)| work.as_secs_f64()) * skew_heavy() as f64
                    / SKEW_CONNS as f64
            };
            // How the kernel split the heavy connections between monoio's
            // two threads shows as its busiest thread's share of its CPU
            // (the spin is most of it): ≈ 50% for an even split, which
            // leaves a work-stealing server nothing to even out.
            println!(
                "| workload | server | req/s ÷ monoio | p99 ÷ monoio | monoio's busiest thread | server's busiest thread | monoio's cores busy | req/s bound ÷ monoio at monoio's CPU/req | client CPU/req (µs) | ceiling ÷ monoio, a server costing only the spin |"
            );
            println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            for row in skewed {
                let Some(monoio) = self
                    .rows
                    .iter()
                    .find(|r| r.workload == row.workload && r.server == Server::Monoio)
                else {
                    continue;
                };
                let (t, m) = (&row.total, &monoio.total);
                let busy = m.process_cpu.as_secs_f64() / (m.wall.as_secs_f64() * cores);
                let client = t.client_cpu.as_secs_f64() / t.requests.max(1) as f64;
                let ceiling = cores / (client + spin_of(&row.workload));
                println!(
                    "| {} | {} | {:.2} | {:.2} | {:.0}% | {:.0}% | {:.0}% | {:.2} | {:.1} | {:.2} |",
                    row.workload,
                    row.server.name(),
                    t.requests_per_sec() / m.requests_per_sec(),
                    t.latencies.quantile(0.99).as_secs_f64()
                        / m.latencies.quantile(0.99).as_secs_f64(),
                    m.busiest_thread_share * 100.0,
                    t.busiest_thread_share * 100.0,
                    busy * 100.0,
                    1.0 / busy,
                    client * 1e6,
                    ceiling / m.requests_per_sec(),
                );
            }
        }
        if self.rows.iter().any(|r| !r.perf.is_empty()) {
            println!();
            println!("Per request, counted by perf on the server's threads (ECHO_PERF=1):");
            println!();
            let names: Vec<&str> = PERF_EVENTS.iter().map(|e| short_event(e)).collect();
            println!("| workload | server | {} |", names.join(" | "));
            println!("|---|---|{}", "---:|".repeat(names.len()));
            for row in self.rows.iter().filter(|r| !r.perf.is_empty()) {
                let counts: Vec<String> = row
                    .perf
                    .iter()
                    .map(|(_, n)| format!("{:.3}", row.total.per_request(*n)))
                    .collect();
                println!(
                    "| {} | {} | {} |",
                    row.workload,
                    row.server.name(),
                    counts.join(" | ")
                );
            }
        }
    }

    fn json(&self) -> String {
        let mut out = String::from("{\n  \"rows\": [\n");
        for (i, row) in self.rows.iter().enumerate() {
            let t = &row.total;
            let ratio = |r: Option<f64>| r.map_or("null".to_owned(), |r| format!("{r:.4}"));
            let ratios = self.ratios(row).filter(|_| row.server != Server::Tokio);
            let _ = writeln!(
                out,
                "    {{\"workload\": \"{}\", \"server\": \"{}\", \"requests\": {}, \
                 \"wall_secs\": {:.6}, \"req_per_sec\": {:.1}, \"p50_us\": {:.2}, \
                 \"p99_us\": {:.2}, \"server_cpu_us_per_req\": {:.3}, \
                 \"user_us_per_req\": {:.3}, \"sys_us_per_req\": {:.3}, \
                 \"switches_per_req\": {:.4}, \"allocs_per_req\": {:.4}, \
                 \"busiest_thread_share\": {:.3}, \"req_per_sec_vs_tokio\": {}, \"cpu_per_req_vs_tokio\": {}, \
                 \"p99_vs_tokio\": {}}}{}",
                row.workload,
                row.server.name(),
                t.requests,
                t.wall.as_secs_f64(),
                t.requests_per_sec(),
                micros(t.latencies.quantile(0.5)),
                micros(t.latencies.quantile(0.99)),
                micros(t.server_cpu_per_request()),
                micros(t.server_user_per_request()),
                micros(t.server_system_per_request()),
                t.per_request(t.server_threads.switches()),
                t.per_request(t.allocations),
                t.busiest_thread_share,
                ratio(ratios.map(|r| r[0])),
                ratio(ratios.map(|r| r[1])),
                ratio(ratios.map(|r| r[2])),
                if i + 1 < self.rows.len() { "," } else { "" },
            );
        }
        out.push_str("  ]\n}\n");
        out
    }

    /// Writes the JSON next to criterion's reports: in `$CARGO_TARGET_DIR`,
    /// else the workspace's `target/`.
    fn write_json(&self) {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
        let path = dir.join("echo-summary.json");
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, self.json())) {
            Ok(()) => println!("\nwrote {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}

/// The 256-connection workloads hold 3 × 2 × 256 sockets at once, more
/// than the usual soft limit of 1,024 descriptors: raise it to the hard
/// limit.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit, its soft limit within the hard.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A group with short settings (the whole bench stays near 1.5 min on 2
/// cores) and flat sampling, so every sample is a batch of the same size.
fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(SAMPLES)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASURE)
        .sampling_mode(SamplingMode::Flat);
    group
}

/// What `ECHO_PERF=1` counts per server thread over each summary.
const PERF_EVENTS: [&str; 8] = [
    "syscalls:sys_enter_io_uring_enter",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_futex",
    "context-switches",
];

fn short_event(event: &str) -> &str {
    event.strip_prefix("syscalls:sys_enter_").unwrap_or(event)
}

/// `perf stat --per-thread` attached to this process for one summary (with
/// `ECHO_PERF=1` and perf installed; tracepoints need root or a low
/// `perf_event_paranoid`). Counts are per thread name, so each server's
/// threads get their own, whichever server's batch was running.
struct PerfStat {
    child: std::process::Child,
    output: std::path::PathBuf,
}

impl PerfStat {
    fn start() -> Option<PerfStat> {
        if std::env::var_os("ECHO_PERF").is_none_or(|v| v == "0") || !bench_mode() {
            return None;
        }
        let output = std::env::temp_dir().join(format!("echo-perf-{}.csv", std::process::id()));
        let child = std::process::Command::new("perf")
            .args(["stat", "--per-thread", "-x,", "-o"])
            .arg(&output)
            .args(["-e", &PERF_EVENTS.join(","), "-p"])
            .arg(std::process::id().to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("ECHO_PERF: cannot run perf: {e}"))
            .ok()?;
        // Let it attach to every thread before the first batch.
        std::thread::sleep(Duration::from_millis(500));
        Some(PerfStat { child, output })
    }

    /// Stops perf; (thread name, event, count) for every thread it saw.
    fn finish(mut self) -> Vec<(String, String, u64)> {
        // SAFETY: signals our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let _ = std::fs::remove_file(&self.output);
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split(',');
                let thread = fields.next()?;
                let count = fields.next()?.parse().ok()?;
                let event = fields.nth(1)?;
                // "name-tid": drop the thread id.
                let name = thread.rsplit_once('-').map_or(thread, |(n, _)| n);
                Some((name.to_owned(), event.to_owned(), count))
            })
            .collect()
    }
}

fn main() {
    // Count the servers' allocations, not the bench's own.
    server_stats::exclude_this_thread();
    raise_fd_limit();
    let mut c = Criterion::default().configure_from_args();
    let mut summary = Summary::default();
    tcp_echo(&mut c, &mut summary);
    tcp_echo_skewed(&mut c, &mut summary);
    udp_ping_pong(&mut c, &mut summary);
    c.final_summary();
    if !summary.rows.is_empty() {
        summary.print();
        // Not from `cargo test --benches`, whose single batches would
        // overwrite a real run's figures.
        if bench_mode() {
            summary.write_json();
        }
    }
}
