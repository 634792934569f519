//! The HTTP bench's own load client: keep-alive HTTP/1.1 GETs over blocking
//! `std` sockets, `--conns` connections shared by `--threads` OS threads,
//! each thread driving its connections in rounds (write a request on each,
//! then read each response), one request in flight per connection, as wrk
//! does. Reports requests per second and p50/p99 latency (from the write of
//! a request to the end of its response's body), after `--warmup` seconds
//! that are not counted.
//!
//! ```text
//! http_load --addr 127.0.0.1:8080 [--conns 50] [--threads 2] [--secs 5] [--warmup 1]
//! ```
//! Output, one line: `requests=N secs=S rps=R p50_us=A p99_us=B`.
//!
//! `--requests N` sends exactly `N` requests (spread evenly over the
//! connections, no warm-up) instead of running for `--secs`, then closes
//! its connections: with `http_hello --requests N` it bounds a server run
//! for an instruction count (`benches/scripts/http_instr.py`). `secs` is
//! then the time it took.

use std::{
    error::Error,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use weft_benches::echo_load::Histogram;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

fn main() -> Result<(), Box<dyn Error>> {
    let mut addr: Option<SocketAddr> = None;
    let (mut conns, mut threads, mut secs, mut warmup) = (50usize, 2usize, 5.0f64, 1.0f64);
    let mut total: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = Some(value.parse()?),
            "--conns" => conns = value.parse()?,
            "--threads" => threads = value.parse()?,
            "--secs" => secs = value.parse()?,
            "--warmup" => warmup = value.parse()?,
            "--requests" => total = Some(value.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    let threads = threads.clamp(1, conns.max(1));
    let start = Instant::now();
    let bound = total.map(|n| Bound::new(n, conns));
    let (count_from, stop) = match bound {
        // Bounded by count; the time limit only guards against a stall.
        Some(_) => (start, start + Duration::from_secs(3600)),
        None => {
            let count_from = start + Duration::from_secs_f64(warmup);
            (count_from, count_from + Duration::from_secs_f64(secs))
        }
    };
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<usize> = (t..conns).step_by(threads).collect();
            thread::spawn(move || drive(addr, &mine, bound, count_from, stop))
        })
        .collect();
    let mut hist = Histogram::default();
    let mut requests = 0u64;
    for w in workers {
        let (n, h) = w.join().map_err(|_| "a load thread panicked")??;
        requests += n;
        hist.merge(&h);
    }
    if bound.is_some() {
        secs = start.elapsed().as_secs_f64();
    }
    println!(
        "requests={requests} secs={secs:.3} rps={:.0} p50_us={:.1} p99_us={:.1}",
        requests as f64 / secs,
        hist.quantile(0.50).as_secs_f64() * 1e6,
        hist.quantile(0.99).as_secs_f64() * 1e6,
    );
    Ok(())
}

/// `--requests`: how many requests each connection sends.
#[derive(Clone, Copy)]
struct Bound {
    total: u64,
    conns: usize,
}

impl Bound {
    fn new(total: u64, conns: usize) -> Bound {
        Bound {
            total,
            conns: conns.max(1),
        }
    }

    /// Connection `i`'s share: an even split, the remainder to the first.
    fn share(&self, i: usize) -> u64 {
        let (each, extra) = (
            self.total / self.conns as u64,
            self.total % self.conns as u64,
        );
        each + u64::from((i as u64) < extra)
    }
}

/// One thread: the connections numbered `ids` in rounds until `stop` (or
/// until each has sent its share of a `bound`); counts what completes
/// after `count_from`.
fn drive(
    addr: SocketAddr,
    ids: &[usize],
    bound: Option<Bound>,
    count_from: Instant,
    stop: Instant,
) -> io::Result<(u64, Histogram)> {
    // A server under callgrind answers its first requests slowly.
    let read_timeout = Duration::from_secs(if bound.is_some() { 120 } else { 10 });
    let mut conns: Vec<Conn> = ids
        .iter()
        .map(|&i| {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(read_timeout))?;
            Ok(Conn {
                s,
                buf: Vec::with_capacity(4096),
                sent: Instant::now(),
                left: bound.map_or(u64::MAX, |b| b.share(i)),
            })
        })
        .collect::<io::Result<_>>()?;
    let mut hist = Histogram::default();
    let mut requests = 0;
    while Instant::now() < stop {
        conns.retain(|c| c.left > 0);
        if conns.is_empty() {
            break;
        }
        for c in &mut conns {
            c.sent = Instant::now();
            c.s.write_all(REQUEST)?;
            c.left -= 1;
        }
        for c in &mut conns {
            c.read_response()?;
            let done = Instant::now();
            if done >= count_from && done < stop {
                requests += 1;
                hist.record((done - c.sent).as_nanos() as u64);
            }
        }
    }
    Ok((requests, hist))
}

struct Conn {
    s: TcpStream,
    /// Bytes read past the last response (none with one request in flight).
    buf: Vec<u8>,
    sent: Instant,
    /// Requests still to send (`u64::MAX` when bounded by time).
    left: u64,
}

impl Conn {
    /// Reads one response: the head, then `content-length` bytes of body.
    fn read_response(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let len = content_length(&self.buf[..end])?;
                let total = end + 4 + len;
                while self.buf.len() < total {
                    self.fill(&mut chunk)?;
                }
                self.buf.drain(..total);
                return Ok(());
            }
            self.fill(&mut chunk)?;
        }
    }

    fn fill(&mut self, chunk: &mut [u8]) -> io::Result<()> {
        let n = self.s.read(chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> io::Result<usize> {
    let text =
        std::str::from_utf8(head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no content-length"))
}
