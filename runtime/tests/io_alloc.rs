//! Steady-state io allocates nothing per operation: an echo server task on
//! a weft runtime answers a blocking client, and a counting global
//! allocator counts what the runtime's worker threads allocate over 2,000
//! round trips after a warm-up. Under io_uring every read and write is an
//! op whose cell comes from the worker's pool (docs/IO.md, "Op cells");
//! under epoll an op is a syscall retried on readiness. Both drivers, and
//! the same echo reading with pooled receive (`recv_stream`: chunks in
//! buffers from the worker's ring or free list, written back as they are),
//! and through the `futures-io` compat traits (a borrowed slice each way,
//! as hyper and tokio-based code use the stream). And a handler whose
//! polls run long (it computes before it answers): its io wakes go to the
//! other worker (docs/IO.md, "Long polls"), so each op's cell is taken on
//! one worker and its result on the other, and the wake itself crosses
//! workers. That allocates nothing either.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    io::{Read, Write},
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use weft::io::Driver;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the runtime's worker threads (`on_thread_start`): only theirs
    /// count.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

// SAFETY: every call goes to `System` unchanged; counting allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTED.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM_UP: usize = 500;
const MEASURED: u64 = 2_000;
const MESSAGE: usize = 64;

/// How the echo server reads and writes.
#[derive(Clone, Copy, Debug)]
enum Server {
    /// Owned buffers: `read` and `write_all`.
    Owned,
    /// `recv_stream` chunks, written back as they are.
    Pooled,
    /// `futures_io::AsyncRead`/`AsyncWrite` over borrowed slices.
    Compat,
    /// Owned buffers, and `HEAVY_WORK` of computing before each answer.
    Heavy,
}

fn heavy_work() {
    let start = std::time::Instant::now();
    while start.elapsed() < HEAVY_WORK {
        std::hint::spin_loop();
    }
}

/// A heavy handler's work per request: 2× (debug) or 4× (release) what
/// marks a task as polling long (1 ms in debug builds, 50 µs in release
/// ones).
const HEAVY_WORK: Duration = if cfg!(debug_assertions) {
    Duration::from_millis(2)
} else {
    Duration::from_micros(200)
};
/// Round trips of the heavy handler: the warm-up also gets it marked (one
/// poll in 32 is timed) and lets the op cell pools settle (its ops are
/// mostly submitted on one worker and taken on the other, and the workers
/// allocate until they hold enough cells between them; see
/// `FOREIGN_KEEP` in `io/uring/driver.rs`). Fewer are measured (each
/// takes `HEAVY_WORK`).
const HEAVY_WARM_UP: usize = 400;
const HEAVY_MEASURED: u64 = 500;
/// The most round trips of the heavy handler measured while too few of
/// them woke it (a loaded machine; see `allocations_per_round_trip`).
const HEAVY_MEASURED_MAX: u64 = 5_000;

/// Allocations of the worker threads per round trip of a 64-byte echo.
fn allocations_per_round_trip(driver: Driver, server: Server) -> Option<f64> {
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .io_driver(driver)
        .on_thread_start(|| COUNTED.with(|c| c.set(true)))
        .build();
    let rt = match (driver, rt) {
        (_, Ok(rt)) => rt,
        // io_uring may be unavailable here (seccomp, old kernel).
        (Driver::Uring, Err(_)) => return None,
        (_, Err(e)) => panic!("build: {e}"),
    };
    let listener = rt
        .block_on(weft::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        if let Server::Compat = server {
            use futures_util::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            loop {
                match AsyncReadExt::read(&mut stream, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if AsyncWriteExt::write_all(&mut stream, &buf[..n])
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
        if let Server::Pooled = server {
            let mut chunks = stream.recv_stream();
            while let Ok(Some(chunk)) = chunks.recv().await {
                if stream.write_all(chunk).await.0.is_err() {
                    return;
                }
            }
            return;
        }
        let mut buf = Vec::with_capacity(4096);
        loop {
            let (read, b) = stream.read(buf).await;
            buf = b;
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Server::Heavy = server {
                heavy_work();
            }
            let (written, b) = stream.write_all(buf).await;
            buf = b;
            if written.is_err() {
                return;
            }
            buf.clear();
        }
    });
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.set_nodelay(true).unwrap();
    let request = [7u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    let mut round_trip = |client: &mut std::net::TcpStream| {
        client.write_all(&request).unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, request);
    };
    let (warm_up, measured) = match server {
        Server::Heavy => (HEAVY_WARM_UP, HEAVY_MEASURED),
        _ => (WARM_UP, MEASURED),
    };
    for _ in 0..warm_up {
        round_trip(&mut client);
    }
    let before = ALLOCATIONS.load(Relaxed);
    let woken_long_before = long_poll_wakes(&rt);
    let mut done = 0;
    for _ in 0..measured {
        round_trip(&mut client);
    }
    done += measured;
    if let Server::Heavy = server {
        // The case this variant is for: its wakes crossed workers, at
        // least `measured / 2` times. A request only wakes the handler if
        // its read found nothing yet; on a loaded machine the handler is
        // often preempted in its work while the client sends the next
        // request, and its next read finds it at once (no wake: 26 of 500
        // wakes in one such run). So more round trips are made until
        // enough wakes were measured, up to `HEAVY_MEASURED_MAX`.
        let woken_long = || long_poll_wakes(&rt) - woken_long_before;
        while woken_long() < measured / 2 && done < HEAVY_MEASURED_MAX {
            for _ in 0..measured / 5 {
                round_trip(&mut client);
            }
            done += measured / 5;
        }
        let woken_long = woken_long();
        assert!(
            woken_long >= measured / 2,
            "{driver}: only {woken_long} of {done} heavy requests were woken as long polls"
        );
    }
    let allocations = ALLOCATIONS.load(Relaxed) - before;
    drop(client);
    drop(rt);
    Some(allocations as f64 / done as f64)
}

fn long_poll_wakes(rt: &weft::Runtime) -> u64 {
    rt.metrics().worker.iter().map(|w| w.long_poll_wakes).sum()
}

#[test]
fn echo_round_trips_allocate_nothing_on_either_driver() {
    for driver in [Driver::Uring, Driver::Epoll] {
        for server in [Server::Owned, Server::Pooled, Server::Compat, Server::Heavy] {
            let Some(per_request) = allocations_per_round_trip(driver, server) else {
                eprintln!("io_uring unavailable: skipped");
                continue;
            };
            eprintln!("{driver} ({server:?}): {per_request} allocations per round trip");
            // Not exactly zero: a timer wheel slot or a queue block now and
            // then is fine; an allocation per operation (2 per round trip) is
            // what this catches, and for the heavy handler a shared queue's
            // block every 63 wakes (0.016 per round trip: the injector
            // that long polls were woken into before).
            let bound = match server {
                Server::Heavy => 0.006,
                _ => 0.05,
            };
            assert!(
                per_request < bound,
                "{driver} ({server:?}): {per_request} allocations per round trip"
            );
        }
    }
}
