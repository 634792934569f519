//! The io drivers: io_uring (one ring per worker) and the epoll fallback.
//!
//! The worker parks in its driver, so timers, io completions and wakeups
//! share one blocking point: the next timer is the wait's timeout, and an
//! unpark of a parked worker wakes its ring (an eventfd read kept armed, or a
//! `MSG_RING` from another worker) or its epoll (mio's eventfd waker).
//! docs/IO.md describes both drivers.
//!
//! What user code meets here: the owned-buffer traits [`IoBuf`] and
//! [`IoBufMut`] with [`Slice`] (part of a buffer lent to an op), the stream
//! traits [`AsyncReadOwned`] and [`AsyncWriteOwned`], and the buffered
//! [`BufReader`] and [`BufWriter`] built on them (docs/IO.md, "Buffers and
//! framing"), and [`RecvBuf`], the pooled buffer a
//! [`RecvStream`](crate::net::RecvStream) yields (`pool.rs`, with the
//! io_uring provided buffer ring in `buf_ring.rs` and the multishot
//! receive in `uring/multishot.rs`; docs/IO.md, "Pooled receive").

mod buf;
mod buf_ring;
pub mod buffered;
pub(crate) mod epoll;
mod owned;
pub(crate) mod pool;
pub(crate) mod uring;

use std::{
    fmt, io,
    str::FromStr,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::Instant,
};

pub(crate) use self::pool::{BufRing, HeapPool, PoolConfig, RecvPools};
pub use self::{
    buf::{IoBuf, IoBufMut, Slice},
    buffered::{BufReader, BufWriter},
    owned::{AsyncReadOwned, AsyncWriteOwned},
    pool::RecvBuf,
};
use crate::{context, scheduler::Handle};

/// Which io driver a runtime uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Driver {
    /// io_uring if the kernel offers every operation weft uses and lets this
    /// process use it, epoll otherwise. The default; the `WEFT_IO`
    /// environment variable (`uring`, `epoll`, `auto`) overrides it.
    #[default]
    Auto,
    /// io_uring, one ring per worker; building the runtime fails if it is
    /// unavailable.
    Uring,
    /// epoll (through mio), one poll per worker.
    Epoll,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Auto => "auto",
            Driver::Uring => "uring",
            Driver::Epoll => "epoll",
        })
    }
}

/// The error for a `WEFT_IO` value that names no driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDriverError(String);

impl fmt::Display for ParseDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown io driver {:?}: expected `uring`, `epoll` or `auto`",
            self.0
        )
    }
}

impl std::error::Error for ParseDriverError {}

impl FromStr for Driver {
    type Err = ParseDriverError;

    fn from_str(s: &str) -> Result<Driver, ParseDriverError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Driver::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Driver::Uring),
            "epoll" | "mio" => Ok(Driver::Epoll),
            _ => Err(ParseDriverError(s.to_owned())),
        }
    }
}

/// A worker's own driver.
// One per worker, never moved after start: the size difference is moot.
#[allow(clippy::large_enum_variant)]
pub(crate) enum WorkerIo {
    Uring(uring::Driver),
    Epoll(epoll::Driver),
}

/// What other threads hold of a worker's driver.
#[derive(Clone)]
pub(crate) enum RemoteIo {
    Uring(Arc<uring::Remote>),
    Epoll(Arc<epoll::Remote>),
}

/// The drivers of a runtime about to start, one per worker.
pub(crate) struct Built {
    pub(crate) kind: Driver,
    pub(crate) workers: Vec<WorkerIo>,
    pub(crate) remotes: Vec<RemoteIo>,
}

/// Who enters and reaps a runtime's rings (see [`build`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rings {
    /// Each ring's worker alone: `SINGLE_ISSUER` + `DEFER_TASKRUN` where
    /// the kernel has them (thread-per-core, a `LocalRuntime`).
    Owned,
    /// Whichever thread is inside `block_on` (a current-thread runtime's
    /// one ring): no `SINGLE_ISSUER`, so no `DEFER_TASKRUN`.
    Shared,
    /// The worker submits, and a peer may reap it while the worker is
    /// stuck in a poll (the work-stealing flavour; docs/IO.md, "Peers
    /// reap a busy worker's ring"): `COOP_TASKRUN`, if the process could
    /// register for `membarrier` and `WEFT_IO_PEER_REAP` is not `0`;
    /// else as `Owned`.
    PeerReaped,
}

/// Chooses and creates the drivers. `choice` comes from the builder; when it
/// is `Auto`, `WEFT_IO` decides, and `auto` falls back to epoll when io_uring
/// is missing, refused or incomplete. `rings` says who enters and reaps
/// the rings, which decides their setup flags. A ring times one op in
/// `time_every` for its latency histogram (0: none).
pub(crate) fn build(
    choice: Driver,
    entries: u32,
    workers: usize,
    pools: PoolConfig,
    rings: Rings,
    registered_files: u32,
    time_every: u32,
) -> io::Result<Built> {
    let choice = match choice {
        Driver::Auto => match std::env::var("WEFT_IO") {
            Ok(v) => v
                .parse::<Driver>()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            Err(_) => Driver::Auto,
        },
        other => other,
    };
    let features =
        match choice {
            Driver::Epoll => None,
            Driver::Uring => Some(uring::probe().map_err(|e| {
                io::Error::new(e.kind(), format!("io_uring is not usable here: {e}"))
            })?),
            Driver::Auto => uring::probe().ok(),
        };
    let mut built = Built {
        kind: if features.is_some() {
            Driver::Uring
        } else {
            Driver::Epoll
        },
        workers: Vec::with_capacity(workers),
        remotes: Vec::with_capacity(workers),
    };
    let peer_reap = rings == Rings::PeerReaped
        && features.is_some()
        && std::env::var_os("WEFT_IO_PEER_REAP").is_none_or(|v| v != "0")
        && uring::membarrier_ready();
    let features = features.map(|f| match peer_reap || rings == Rings::Shared {
        true => f.without_single_issuer(),
        false => f,
    });
    for _ in 0..workers {
        match features {
            Some(features) => {
                let (driver, remote) = uring::Driver::new(
                    entries,
                    features,
                    pools,
                    registered_files,
                    time_every,
                    peer_reap,
                )?;
                built.workers.push(WorkerIo::Uring(driver));
                built.remotes.push(RemoteIo::Uring(remote));
            }
            None => {
                let (driver, remote) = epoll::Driver::new(pools)?;
                built.workers.push(WorkerIo::Epoll(driver));
                built.remotes.push(RemoteIo::Epoll(remote));
            }
        }
    }
    // Each ring's spare op cells go to the next ring (see
    // `uring::Remote::shelve`).
    let rings: Vec<_> = built
        .remotes
        .iter()
        .filter_map(|r| match r {
            RemoteIo::Uring(remote) => Some(remote.clone()),
            RemoteIo::Epoll(_) => None,
        })
        .collect();
    if rings.len() > 1 {
        for (i, worker) in built.workers.iter_mut().enumerate() {
            if let WorkerIo::Uring(driver) = worker {
                driver.set_spill(rings[(i + 1) % rings.len()].clone());
            }
        }
    }
    Ok(built)
}

/// The operations in flight on a worker's ring from which, out of work, it
/// spins reaping the ring rather than parking in it
/// ([`WorkerIo::reaps_while_idle`]). With 256 connections on 2 workers
/// (128 receives each) a hyper server then made 0.03 context switches per
/// request instead of 0.09, and used 5-13% less CPU per request; with 32
/// (16 each) the echo server's parks are rare already, and spinning there
/// cost it CPU (docs/BENCHMARKS.md, 2026-12-05 morning).
pub(crate) const REAP_WHILE_IDLE_LOAD: usize = 64;

impl WorkerIo {
    /// Called once on the worker thread before it runs anything.
    pub(crate) fn enable(&mut self) -> io::Result<()> {
        match self {
            WorkerIo::Uring(d) => d.enable(),
            WorkerIo::Epoll(_) => Ok(()),
        }
    }

    /// After `enable`, on a worker thread the runtime owns (it exits with
    /// the runtime): enters name the ring by a registered index.
    pub(crate) fn register_ring_fd(&mut self) {
        if let WorkerIo::Uring(d) = self {
            d.register_ring_fd();
        }
    }

    /// Submits and reaps without blocking if anything is in flight; false
    /// (and nothing done) if nothing is.
    pub(crate) fn poll(&mut self) -> bool {
        match self {
            WorkerIo::Uring(d) => {
                if !d.has_work() {
                    return false;
                }
                d.poll();
            }
            WorkerIo::Epoll(d) => {
                if !d.has_work() {
                    return false;
                }
                d.poll();
            }
        }
        true
    }

    /// Hands the operations queued on this worker's ring to the kernel
    /// now (io_uring; epoll has no queue). See `WorkerCtx::run_task`: after
    /// a poll the monitor marked stalled.
    pub(crate) fn submit_queued(&mut self) {
        if let WorkerIo::Uring(d) = self {
            d.submit_queued();
        }
    }

    /// Whether an idle worker keeps reaping this driver in its idle spin
    /// instead of parking at once: io_uring with at least
    /// [`REAP_WHILE_IDLE_LOAD`] operations in flight. Under epoll the
    /// rule is unchanged (a worker with registrations parks in
    /// `epoll_wait`): there the thief without registrations already spins,
    /// and the epoll flavour was not measured better with more spinning.
    pub(crate) fn reaps_while_idle(&self) -> bool {
        match self {
            WorkerIo::Uring(d) => d.in_flight() >= REAP_WHILE_IDLE_LOAD,
            WorkerIo::Epoll(_) => false,
        }
    }

    /// Operations in flight (io_uring) or sockets registered (epoll) here.
    pub(crate) fn load(&self) -> usize {
        match self {
            WorkerIo::Uring(d) => d.in_flight(),
            WorkerIo::Epoll(d) => d.registered(),
        }
    }

    /// Blocks until an event, a wakeup, or `deadline`.
    /// True if io completed (not just a wakeup or the timeout).
    pub(crate) fn park(&mut self, deadline: Option<Instant>) -> bool {
        match self {
            WorkerIo::Uring(d) => d.park(deadline),
            WorkerIo::Epoll(d) => d.park(deadline),
        }
    }
}

impl RemoteIo {
    /// Wakes the worker out of its driver wait.
    pub(crate) fn wake(&self) {
        match self {
            RemoteIo::Uring(r) => uring::Remote::wake(r),
            RemoteIo::Epoll(r) => r.wake(),
        }
    }

    /// Operations this ring still owns (0 under epoll, which owns none).
    pub(crate) fn in_flight(&self) -> usize {
        match self {
            RemoteIo::Uring(r) => r.in_flight(),
            RemoteIo::Epoll(_) => 0,
        }
    }

    /// Registered-file slots in use (io_uring; 0 under epoll).
    pub(crate) fn fixed_files(&self) -> usize {
        match self {
            RemoteIo::Uring(r) => r.fixed_files(),
            RemoteIo::Epoll(_) => 0,
        }
    }

    /// Sockets registered (epoll).
    pub(crate) fn registered(&self) -> usize {
        match self {
            RemoteIo::Uring(_) => 0,
            RemoteIo::Epoll(r) => r.registered(),
        }
    }

    /// Whether peers may reap this ring (io_uring; false under epoll,
    /// whose peers read a stuck worker's epoll instead).
    pub(crate) fn peer_reap(&self) -> bool {
        match self {
            RemoteIo::Uring(r) => r.peer_reap(),
            RemoteIo::Epoll(_) => false,
        }
    }

    /// True if a peer could take io of this worker's while it is stuck
    /// in a poll: sockets registered with its epoll, or operations in
    /// flight on a ring peers may reap (`uring::Remote::peer_reapable`).
    pub(crate) fn has_io_for_peers(&self) -> bool {
        match self {
            RemoteIo::Uring(r) => r.peer_reapable(),
            RemoteIo::Epoll(r) => r.registered() > 0,
        }
    }

    /// The ring's shared half (io_uring), for a worker that checks its own
    /// queue after each poll (`uring::Remote::has_queued`).
    pub(crate) fn uring(&self) -> Option<Arc<uring::Remote>> {
        match self {
            RemoteIo::Uring(r) => Some(r.clone()),
            RemoteIo::Epoll(_) => None,
        }
    }

    /// Hands a ring's submission queue to the kernel for its owner, stuck
    /// in a poll (the monitor's call; see `uring::Remote::submit_for_owner`).
    /// Nothing under epoll, whose sends are made by the tasks themselves.
    pub(crate) fn submit_for_owner(&self) -> bool {
        match self {
            RemoteIo::Uring(r) => r.submit_for_owner(),
            RemoteIo::Epoll(_) => false,
        }
    }

    /// Takes and dispatches, on the calling thread, the readiness events
    /// or completions waiting for this (another) worker (see
    /// `epoll::Remote::reap_for_peer` and `uring::Remote::reap_for_peer`;
    /// 0 from a ring peers may not reap, one set up with `DEFER_TASKRUN`).
    pub(crate) fn reap_for_peer(&self) -> u64 {
        match self {
            RemoteIo::Uring(r) => r.reap_for_peer(),
            RemoteIo::Epoll(r) => r.reap_for_peer(),
        }
    }

    /// Events or completions peers took from this worker's driver.
    pub(crate) fn peer_reaped(&self) -> u64 {
        match self {
            RemoteIo::Uring(r) => r.peer_reaped.load(Relaxed),
            RemoteIo::Epoll(r) => r.peer_reaped.load(Relaxed),
        }
    }

    /// Times the monitor handed this worker's submission queue to the
    /// kernel while the worker was stuck in a poll (io_uring; 0 under epoll).
    pub(crate) fn submitted_for_owner(&self) -> u64 {
        match self {
            RemoteIo::Uring(r) => r.submitted_for_owner.load(Relaxed),
            RemoteIo::Epoll(_) => 0,
        }
    }

    /// Op latency (io_uring) or readiness wait time (epoll), in
    /// `runtime::ticks`; written by the owning worker.
    pub(crate) fn op_latency(&self) -> &crate::runtime::histogram::Histogram {
        match self {
            RemoteIo::Uring(r) => &r.op_latency,
            RemoteIo::Epoll(r) => &r.wait_time,
        }
    }

    /// This worker's pooled-receive buffers.
    pub(crate) fn recv_pools(&self) -> &RecvPools {
        match self {
            RemoteIo::Uring(r) => &r.recv,
            RemoteIo::Epoll(r) => &r.recv,
        }
    }

    pub(crate) fn counters(&self) -> (u64, u64, u64) {
        match self {
            RemoteIo::Uring(r) => (
                r.submissions.load(Relaxed),
                r.completions.load(Relaxed),
                r.enters.load(Relaxed),
            ),
            RemoteIo::Epoll(r) => (0, r.events.load(Relaxed), r.polls.load(Relaxed)),
        }
    }
}

/// Runs `f` with the calling worker's io_uring driver, if this thread is a
/// worker with one and the driver is not busy.
pub(crate) fn with_local_uring<R>(f: impl FnOnce(&mut uring::Driver) -> R) -> Option<R> {
    context::with_worker(|w| {
        let w = w?;
        let mut io = w.io().try_borrow_mut().ok()?;
        match &mut *io {
            WorkerIo::Uring(d) => Some(f(d)),
            WorkerIo::Epoll(_) => None,
        }
    })
}

/// The runtime the calling code runs in, for io that needs one.
pub(crate) fn current_handle() -> io::Result<Handle> {
    context::current_handle().ok_or_else(|| {
        io::Error::other(
            "weft io used outside a weft runtime: call it inside \
             `Runtime::block_on`, a spawned task, or after `Runtime::enter`",
        )
    })
}

static NEXT_REMOTE: AtomicUsize = AtomicUsize::new(0);

/// Submits an io_uring operation: straight into the calling worker's ring,
/// or through a ring's mailbox from any other thread. Returns the ring that
/// owns the operation.
pub(crate) fn submit(sub: uring::Submission) -> io::Result<Arc<uring::Remote>> {
    let mut sub = Some(sub);
    if let Some(owner) = with_local_uring(|d| {
        d.push(sub.take().expect("submitted once"));
        d.remote().clone()
    }) {
        return Ok(owner);
    }
    let sub = sub.take().expect("not submitted yet");
    let handle = current_handle()?;
    let remotes = &handle.shared.remotes;
    let start = NEXT_REMOTE.fetch_add(1, Relaxed);
    for i in 0..remotes.len() {
        if let RemoteIo::Uring(remote) = &remotes[(start + i) % remotes.len()].io {
            remote.post_submit(sub);
            return Ok(remote.clone());
        }
    }
    Err(wrong_driver(Driver::Uring))
}

/// Cancels an operation whose future was dropped.
pub(crate) fn cancel(owner: &Arc<uring::Remote>, target: Arc<dyn uring::Completable>) {
    let mut target = Some(target);
    let done = with_local_uring(|d| {
        if Arc::ptr_eq(d.remote(), owner) {
            d.cancel(target.as_ref().expect("cancelled once"));
            true
        } else {
            false
        }
    });
    if done != Some(true) {
        owner.post_cancel(target.take().expect("not cancelled yet"));
    }
}

/// The heap pool a pooled receive on this thread takes from: the calling
/// worker's, or one picked round-robin from other threads.
pub(crate) fn local_heap_pool() -> io::Result<Arc<HeapPool>> {
    let handle = current_handle()?;
    let remotes = &handle.shared.remotes;
    let index = context::with_worker(|w| match w {
        Some(w) if w.belongs_to(&handle.shared) => w.index(),
        _ => NEXT_REMOTE.fetch_add(1, Relaxed) % remotes.len(),
    });
    Ok(remotes[index].io.recv_pools().heap.clone())
}

/// Cancels an operation without waking its owner: on the owner's own
/// worker at once, from elsewhere at the owner's next pass over its
/// mailbox (see `uring::Remote::post_cancel_quiet`).
pub(crate) fn cancel_quiet(owner: &Arc<uring::Remote>, target: Arc<dyn uring::Completable>) {
    let mut target = Some(target);
    let done = with_local_uring(|d| {
        if Arc::ptr_eq(d.remote(), owner) {
            d.cancel(target.as_ref().expect("cancelled once"));
            true
        } else {
            false
        }
    });
    if done != Some(true) {
        owner.post_cancel_quiet(target.take().expect("not cancelled yet"));
    }
}

/// Registers `fd` with an epoll driver of the current runtime: the calling
/// worker's, or the first worker's from any other thread (a `block_on`
/// accept loop, a connect made before the first spawn).
///
/// A socket's readiness stays with the poll it is registered with, and
/// io consolidation, which moves an io_uring connection to a lower
/// worker's ring, cannot move it. Spread round-robin, the connections a
/// `block_on` loop accepted were split between the workers' polls, so a
/// burst of requests woke every worker and the higher one handed its
/// tasks down with one more wake each: hyper's hello server under
/// `wrk -t1 -c50` made 0.29 context switches per request (tokio 0.06–0.14),
/// p99 3.4 ms. On one poll, as on tokio's one epoll, the first worker runs
/// what a wait returns and wakes a peer only for a backlog
/// (`AFFINITY_BACKLOG`): 0.03 per request, p99 0.4 ms, 1.4× the requests
/// per second (docs/BENCHMARKS.md, 2026-12-04). While the first worker
/// is stuck in a poll, a peer takes the readiness waiting on its epoll
/// (`epoll::Remote::reap_for_peer`, docs/IO.md "A stuck worker's epoll").
pub(crate) fn register_epoll(fd: std::os::fd::RawFd) -> io::Result<epoll::Registration> {
    let handle = current_handle()?;
    let remotes = &handle.shared.remotes;
    let index = context::with_worker(|w| match w {
        Some(w) if w.belongs_to(&handle.shared) => w.index(),
        _ => 0,
    });
    match &remotes[index].io {
        RemoteIo::Epoll(remote) => remote.register(fd),
        RemoteIo::Uring(_) => Err(wrong_driver(Driver::Epoll)),
    }
}

/// The active driver of the current runtime.
pub(crate) fn current_kind() -> io::Result<Driver> {
    Ok(current_handle()?.shared.io_kind)
}

fn wrong_driver(socket: Driver) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "this socket was set up for the {socket} io driver but is used on a runtime \
             running the other one"
        ),
    )
}
