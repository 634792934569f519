//! The load side of the TCP echo bench: a blocking client on OS threads, a
//! latency histogram, and CPU clocks.
//!
//! The client knows nothing about the server's runtime, so weft (either io
//! driver) and tokio are measured by the very same code. It is closed-loop:
//! each connection has exactly one request in flight. A client thread owns
//! a share of the connections and drives them in rounds: it writes one
//! request on each of its connections, then reads the replies in the same
//! order. A request's latency runs from just before its write to the end of
//! its reply's read, so it includes the time the reply waited in the
//! socket while the thread was reading an earlier connection's reply.
//!
//! Server CPU time is what is left of the process's CPU time once the client
//! threads' own CPU time is subtracted (`CLOCK_PROCESS_CPUTIME_ID` minus each
//! client thread's `CLOCK_THREAD_CPUTIME_ID`). On loopback the kernel's
//! receive path runs in the softirq of whichever thread sent the packet, so
//! each side is charged part of the other's receive work; that is the same
//! for every server.

use crate::server_stats::{exclude_this_thread, ThreadUsage};
use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{mpsc, Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

/// Values below this are counted exactly, one bucket per nanosecond.
const EXACT: u64 = 128;
/// Buckets per power of two above `EXACT`: 64, so a bucket is at most 1/64
/// (1.6 %) wide relative to its value.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// `EXACT` plus 64 buckets for each power of two from 2^7 to 2^63.
const BUCKETS: usize = EXACT as usize + (64 - 7) * SUB as usize;

/// A log-linear latency histogram in nanoseconds (HdrHistogram's layout with
/// six significant bits): fixed size, no allocation per sample.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    /// Counts one sample of `nanos`.
    pub fn record(&mut self, nanos: u64) {
        self.counts[bucket(nanos)] += 1;
        self.total += 1;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// Samples counted.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether no sample was counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The smallest value such that a fraction `q` of the samples are at or
    /// below it (to the bucket's resolution); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_nanos(bucket_middle(index));
            }
        }
        unreachable!("rank {rank} is at most the total {}", self.total)
    }
}

fn bucket(nanos: u64) -> usize {
    if nanos < EXACT {
        return nanos as usize;
    }
    let exp = 63 - nanos.leading_zeros(); // ≥ 7
    let shift = exp - SUB_BITS;
    let mantissa = nanos >> shift; // in [SUB, 2 * SUB)
    EXACT as usize + (exp as usize - 7) * SUB as usize + (mantissa - SUB) as usize
}

/// The middle of bucket `index`'s range of values.
fn bucket_middle(index: usize) -> u64 {
    if index < EXACT as usize {
        return index as u64;
    }
    let above = index - EXACT as usize;
    let exp = (above / SUB as usize) as u32 + 7;
    let shift = exp - SUB_BITS;
    let low = (SUB + (above % SUB as usize) as u64) << shift;
    low + (1 << shift) / 2
}

/// CPU time the whole process has used so far (every thread, including the
/// kernel's io_uring workers, which belong to the process).
pub fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time the calling thread has used so far.
pub fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and `id` one of the CPU
    // clocks every Linux kernel has.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime: {}", io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one batch of round trips measured.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Wall time from handing out the batch until the last reply.
    pub wall: Duration,
    /// Round trips completed.
    pub requests: u64,
    /// Latency of each round trip.
    pub latencies: Histogram,
    /// CPU time of the client threads during the batch.
    pub client_cpu: Duration,
    /// CPU time of the whole process during the batch.
    pub process_cpu: Duration,
    /// What the server's own threads did (user/system CPU, context
    /// switches; see `server_stats`), when the caller measured it.
    pub server_threads: ThreadUsage,
    /// Heap allocations of the server's threads during the batch, when the
    /// caller counted them.
    pub allocations: u64,
    /// The busiest server thread's share of the server threads' CPU (see
    /// `ThreadStats::busiest_share`), when the caller measured it; merged
    /// batches keep the largest.
    pub busiest_thread_share: f64,
}

impl Batch {
    /// Adds `other`'s figures to these.
    pub fn merge(&mut self, other: &Batch) {
        self.wall += other.wall;
        self.requests += other.requests;
        self.latencies.merge(&other.latencies);
        self.client_cpu += other.client_cpu;
        self.process_cpu += other.process_cpu;
        self.server_threads.merge(&other.server_threads);
        self.allocations += other.allocations;
        self.busiest_thread_share = self.busiest_thread_share.max(other.busiest_thread_share);
    }

    /// Per round trip: `count / requests`.
    pub fn per_request(&self, count: u64) -> f64 {
        count as f64 / self.requests.max(1) as f64
    }

    /// User-space CPU time of the server's threads per round trip.
    pub fn server_user_per_request(&self) -> Duration {
        Duration::from_secs_f64(
            self.server_threads.user.as_secs_f64() / self.requests.max(1) as f64,
        )
    }

    /// Kernel CPU time of the server's threads per round trip.
    pub fn server_system_per_request(&self) -> Duration {
        Duration::from_secs_f64(
            self.server_threads.system.as_secs_f64() / self.requests.max(1) as f64,
        )
    }

    /// Round trips per second of wall time.
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    /// CPU time per round trip of everything but the client threads: the
    /// server.
    pub fn server_cpu_per_request(&self) -> Duration {
        let server = self.process_cpu.saturating_sub(self.client_cpu);
        Duration::from_secs_f64(server.as_secs_f64() / self.requests.max(1) as f64)
    }
}

/// What a client thread hands back for one batch.
#[derive(Debug)]
struct ThreadReport {
    requests: u64,
    latencies: Histogram,
    cpu: Duration,
}

#[derive(Debug)]
struct ClientThread {
    /// Rounds to run next; dropping it stops the thread.
    rounds: mpsc::Sender<u64>,
    reports: mpsc::Receiver<io::Result<ThreadReport>>,
    thread: thread::JoinHandle<()>,
}

/// `conns` blocking connections to an echo server, driven by `threads` OS
/// threads, each owning every `threads`-th connection.
#[derive(Debug)]
pub struct LoadClient {
    threads: Vec<ClientThread>,
    conns: usize,
}

impl LoadClient {
    /// Opens `conns` connections to `addr` (with `TCP_NODELAY`) and starts
    /// `threads` client threads that send `size`-byte requests.
    pub fn connect(
        addr: SocketAddr,
        conns: usize,
        threads: usize,
        size: usize,
    ) -> io::Result<LoadClient> {
        LoadClient::connect_skewed(addr, conns, threads, size, 0)
    }

    /// [`connect`](Self::connect), with the requests of the first `heavy`
    /// connections starting with [`HEAVY`] (the others never do): a server
    /// that does extra work for those makes a skewed load. The heavy
    /// connections are spread over the client threads like the others
    /// (connection `i` belongs to thread `i % threads`).
    pub fn connect_skewed(
        addr: SocketAddr,
        conns: usize,
        threads: usize,
        size: usize,
        heavy: usize,
    ) -> io::Result<LoadClient> {
        assert!(heavy <= conns);
        LoadClient::start(addr, conns, threads, size, Pick::First(heavy))
    }

    /// A fan-out client (a front end that asks every shard and answers when
    /// the last one has): the threads run their rounds in lockstep, each
    /// round ending for all of them at a barrier once every reply is in, so
    /// a round lasts as long as its slowest reply. In every round `heavy`
    /// connections, drawn afresh (the same pseudo-random sequence for every
    /// server), send [`HEAVY`] requests: the skew is per request, not per
    /// connection, so no placement of connections on threads evens it out
    /// for long.
    pub fn connect_fan_out(
        addr: SocketAddr,
        conns: usize,
        threads: usize,
        size: usize,
        heavy: usize,
    ) -> io::Result<LoadClient> {
        assert!(heavy <= conns);
        let threads = threads.min(conns.max(1));
        let barrier = Arc::new(Barrier::new(threads));
        LoadClient::start(
            addr,
            conns,
            threads,
            size,
            Pick::PerRound {
                heavy,
                conns,
                barrier,
            },
        )
    }

    fn start(
        addr: SocketAddr,
        conns: usize,
        threads: usize,
        size: usize,
        pick: Pick,
    ) -> io::Result<LoadClient> {
        assert!(conns > 0 && threads > 0 && size > 0);
        let threads = threads.min(conns);
        let mut shares: Vec<Vec<(TcpStream, usize)>> = (0..threads).map(|_| Vec::new()).collect();
        for i in 0..conns {
            let stream = TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            shares[i % threads].push((stream, i));
        }
        let threads = shares
            .into_iter()
            .enumerate()
            .map(|(i, streams)| {
                let (rounds, rounds_rx) = mpsc::channel();
                let (reports_tx, reports) = mpsc::channel();
                let pick = pick.clone();
                let thread = thread::Builder::new()
                    .name(format!("echo-client-{i}"))
                    .spawn(move || client_thread(streams, size, &pick, &rounds_rx, &reports_tx))
                    .expect("spawn a client thread");
                ClientThread {
                    rounds,
                    reports,
                    thread,
                }
            })
            .collect();
        Ok(LoadClient { threads, conns })
    }

    /// Connections open.
    pub fn conns(&self) -> usize {
        self.conns
    }

    /// Every connection does `rounds` round trips; returns once all are
    /// done.
    ///
    /// # Panics
    /// If a connection fails or a reply differs from its request.
    pub fn run(&self, rounds: u64) -> Batch {
        let cpu_before = process_cpu();
        let started = Instant::now();
        for thread in &self.threads {
            thread.rounds.send(rounds).expect("client thread alive");
        }
        let mut batch = Batch::default();
        for thread in &self.threads {
            let report = thread
                .reports
                .recv()
                .expect("client thread alive")
                .expect("echo round trip");
            batch.requests += report.requests;
            batch.latencies.merge(&report.latencies);
            batch.client_cpu += report.cpu;
        }
        batch.wall = started.elapsed();
        batch.process_cpu = process_cpu() - cpu_before;
        batch
    }
}

impl Drop for LoadClient {
    /// Closes the connections (the server sees EOF on each) and joins the
    /// client threads.
    fn drop(&mut self) {
        for thread in self.threads.drain(..) {
            drop(thread.rounds);
            let _ = thread.thread.join();
        }
    }
}

/// The first byte of a request on a heavy connection
/// ([`LoadClient::connect_skewed`]); other requests start with 0.
pub const HEAVY: u8 = 0xFF;

/// Which requests are heavy, and how the client threads pace their rounds.
#[derive(Clone, Debug)]
enum Pick {
    /// Each thread runs its own rounds; the first `n` connections (by
    /// global index) always send heavy requests.
    First(usize),
    /// The threads run their rounds in lockstep (a barrier after each);
    /// `heavy` of the `conns` connections, drawn per round, send heavy
    /// requests.
    PerRound {
        heavy: usize,
        conns: usize,
        barrier: Arc<Barrier>,
    },
}

impl Pick {
    /// Marks which of a thread's connections (their global `indices`) send
    /// a heavy request in `round`; `drawn` is scratch space.
    fn mark(&self, round: u64, indices: &[usize], drawn: &mut Vec<usize>, marks: &mut [bool]) {
        match self {
            Pick::First(n) => {
                for (mark, index) in marks.iter_mut().zip(indices) {
                    *mark = index < n;
                }
            }
            Pick::PerRound { heavy, conns, .. } => {
                draw(round, *heavy, *conns, drawn);
                for (mark, index) in marks.iter_mut().zip(indices) {
                    *mark = drawn.contains(index);
                }
            }
        }
    }

    /// Waits for the other threads at the end of a round (fan-out only).
    fn end_round(&self) {
        if let Pick::PerRound { barrier, .. } = self {
            barrier.wait();
        }
    }
}

/// Puts into `picked` the `heavy` distinct connections of `conns` drawn
/// for `round`: the same for every thread and every server (splitmix64 of
/// the round and a counter, duplicates skipped).
fn draw(round: u64, heavy: usize, conns: usize, picked: &mut Vec<usize>) {
    picked.clear();
    let mut k = 0u64;
    while picked.len() < heavy.min(conns) {
        let mut z = round
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(k.wrapping_mul(0xBF58_476D_1CE4_E5B9))
            .wrapping_add(0x94D0_49BB_1331_11EB);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let index = (z % conns as u64) as usize;
        if !picked.contains(&index) {
            picked.push(index);
        }
        k += 1;
    }
}

fn client_thread(
    streams: Vec<(TcpStream, usize)>,
    size: usize,
    pick: &Pick,
    rounds: &mpsc::Receiver<u64>,
    reports: &mpsc::Sender<io::Result<ThreadReport>>,
) {
    exclude_this_thread();
    let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut heavy = plain.clone();
    heavy[0] = HEAVY;
    let (mut streams, indices): (Vec<TcpStream>, Vec<usize>) = streams.into_iter().unzip();
    let mut reply = vec![0; size];
    let mut sent = vec![Instant::now(); streams.len()];
    let mut is_heavy = vec![false; streams.len()];
    let mut drawn = Vec::new();
    // Rounds run so far: the same on every thread, as every batch gives
    // each the same count.
    let mut round = 0u64;
    while let Ok(n) = rounds.recv() {
        let cpu_before = thread_cpu();
        let mut latencies = Histogram::default();
        let mut result = Ok(());
        for _ in 0..n {
            // After a failure the thread still meets the others at the
            // barrier, so a fan-out batch ends (and reports it) instead of
            // leaving them waiting.
            if result.is_ok() {
                pick.mark(round, &indices, &mut drawn, &mut is_heavy);
                result = (|| {
                    for ((stream, sent), heavy_now) in
                        streams.iter_mut().zip(&mut sent).zip(&is_heavy)
                    {
                        let request = if *heavy_now { &heavy } else { &plain };
                        *sent = Instant::now();
                        stream.write_all(request)?;
                    }
                    for ((stream, sent), heavy_now) in streams.iter_mut().zip(&sent).zip(&is_heavy)
                    {
                        stream.read_exact(&mut reply)?;
                        latencies.record(sent.elapsed().as_nanos() as u64);
                        let request = if *heavy_now { &heavy } else { &plain };
                        if reply != *request {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "the reply differs from the request",
                            ));
                        }
                    }
                    Ok(())
                })();
            }
            pick.end_round();
            round += 1;
        }
        let report = result.map(|()| ThreadReport {
            requests: n * streams.len() as u64,
            latencies,
            cpu: thread_cpu() - cpu_before,
        });
        if reports.send(report).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        net::TcpListener,
        sync::atomic::{AtomicU64, Ordering::Relaxed},
    };

    #[test]
    fn draws_are_distinct_in_range_repeatable_and_spread() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut times_drawn = [0u32; 32];
        for round in 0..4_000 {
            draw(round, 4, 32, &mut a);
            draw(round, 4, 32, &mut b);
            assert_eq!(a, b, "round {round} drawn differently");
            assert_eq!(a.len(), 4);
            for (i, x) in a.iter().enumerate() {
                assert!(*x < 32);
                assert!(!a[..i].contains(x), "round {round}: {a:?}");
                times_drawn[*x] += 1;
            }
        }
        // 500 draws each on average; a fair draw stays well inside this.
        for (conn, n) in times_drawn.iter().enumerate() {
            assert!((400..600).contains(n), "connection {conn} drawn {n} times");
        }
        // More heavy than connections: every connection, once.
        draw(7, 9, 5, &mut a);
        a.sort_unstable();
        assert_eq!(a, [0, 1, 2, 3, 4]);
    }

    /// A plain echo server on threads that counts the heavy requests it
    /// sees.
    fn counting_echo_server() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heavy = Arc::new(AtomicU64::new(0));
        let seen = heavy.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let seen = seen.clone();
                thread::spawn(move || {
                    let mut buf = [0; 16];
                    while stream.read_exact(&mut buf).is_ok() {
                        if buf[0] == HEAVY {
                            seen.fetch_add(1, Relaxed);
                        }
                        if stream.write_all(&buf).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, heavy)
    }

    #[test]
    fn a_fan_out_client_sends_the_drawn_heavy_requests_each_round() {
        let (addr, heavy) = counting_echo_server();
        let client = LoadClient::connect_fan_out(addr, 8, 3, 16, 3).unwrap();
        let batch = client.run(50);
        assert_eq!(batch.requests, 8 * 50);
        assert_eq!(batch.latencies.total, 8 * 50);
        assert_eq!(heavy.load(Relaxed), 3 * 50);
        // Rounds go on from where the last batch stopped.
        let batch = client.run(20);
        assert_eq!(batch.requests, 8 * 20);
        assert_eq!(heavy.load(Relaxed), 3 * 70);
    }

    #[test]
    fn a_skewed_client_sends_heavy_requests_on_its_first_connections() {
        let (addr, heavy) = counting_echo_server();
        let client = LoadClient::connect_skewed(addr, 6, 4, 16, 2).unwrap();
        assert_eq!(client.run(10).requests, 6 * 10);
        assert_eq!(heavy.load(Relaxed), 2 * 10);
    }

    #[test]
    fn buckets_are_monotonic_and_round_trip() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, 1 << 40, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS, "value {v} bucket {b}");
            last = b;
            let middle = bucket_middle(b);
            assert!(
                middle.abs_diff(v) <= v / 64 + 1,
                "value {v} middle {middle}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_uniform_sample() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        let p50 = h.quantile(0.5).as_nanos() as f64;
        let p99 = h.quantile(0.99).as_nanos() as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.02, "p50 {p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.02, "p99 {p99}");
        assert_eq!(h.len(), 10_000);
    }
}
