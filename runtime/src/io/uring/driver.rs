//! A ring's two sides: the [`Driver`], owned by its worker, which pushes
//! entries, enters the kernel and reaps completions; and the [`Remote`],
//! shared, through which other threads reach it.
//!
//! The owner alone pushes entries and reaps at will; peers reap a stuck
//! owner's completions under `Remote::reaping`, and the monitor may enter
//! the ring to submit what a stuck owner queued
//! (`Remote::submit_for_owner`). Another thread posts a [`Request`] to
//! the remote's mailbox (a submission, a cancellation, or a closed socket's
//! fd to let go of once what may name it is submitted) and writes its
//! eventfd, whose read the owner keeps armed while it parks; a worker with
//! a ring of its own sends a `MSG_RING` instead. The owner drains the
//! mailbox at every park and every `event_interval` ticks.
//!
//! `user_data` values above the generation range are tokens (the eventfd
//! read, a `MSG_RING` arriving or sent, entries whose completion carries
//! nothing), checked before the op table (`table.rs`) sees a completion.

use std::{
    any::{Any, TypeId},
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use super::{
    close::{entry_fd, fd_bit},
    probe::{build_ring, Features, SetupFlags},
    table::{Completable, OpTable},
};
use crate::{
    io::pool::{BufRing, PoolConfig, RecvPools},
    runtime::{histogram::Histogram, ticks},
};

/// `user_data` of the eventfd read kept armed in every ring.
const TOKEN_EVENTFD: u64 = u64::MAX;
/// `IORING_ENTER_GETEVENTS` (the crate keeps its `sys` module private).
const IORING_ENTER_GETEVENTS: u32 = 1;
/// `IORING_ENTER_EXT_ARG`: the argument is an `io_uring_getevents_arg`.
const IORING_ENTER_EXT_ARG: u32 = 8;
/// `IORING_ENTER_REGISTERED_RING`: the fd argument is an index into the
/// calling thread's registered rings.
const IORING_ENTER_REGISTERED_RING: u32 = 16;
/// `io_uring_register` opcodes for the calling thread's registered rings.
const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
const IORING_UNREGISTER_RING_FDS: libc::c_uint = 21;

/// The kernel's `io_uring_rsrc_update` (ring fd registration).
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// The kernel's `io_uring_getevents_arg` (`IORING_ENTER_EXT_ARG`).
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}
/// `user_data` of a wakeup sent by another worker with `MSG_RING`.
const TOKEN_MSG: u64 = u64::MAX - 1;
/// Tag of a `MSG_RING` wake sent from this ring: the rest of `user_data` is
/// the key of its target in `Driver::msgs`. Op `user_data` never has the top
/// bit (generations are 31 bits); the tokens all do, and are checked first.
const MSG_TAG: u64 = 1 << 63;
/// `user_data` of entries whose completion carries nothing to act on
/// (link timeouts, cancellations).
const TOKEN_IGNORE: u64 = u64::MAX - 2;

/// `WEFT_IO_PARK_SLICE_US=<µs>`: the longest one blocking `io_uring_enter`
/// of a parking worker may wait before it returns (and the worker parks
/// again). For running under valgrind only: valgrind 3.19–3.20 treats
/// `io_uring_enter` as a syscall that does not block, so a worker parked in
/// it keeps valgrind's one-thread-at-a-time lock and every other thread of
/// the process stops with it (KDE bug 463859). A slice, with a yield
/// before each, lets the others run between slices (`benches/scripts/http_instr.py`). Unset: no cap.
fn park_slice() -> Option<Duration> {
    static SLICE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *SLICE.get_or_init(|| {
        std::env::var("WEFT_IO_PARK_SLICE_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|us| *us > 0)
            .map(Duration::from_micros)
    })
}

/// What another thread posts to a ring's owner.
pub(super) enum Request {
    Submit(Submission),
    Cancel(Arc<dyn Completable>),
    /// A closed socket's fd (see [`close_socket`](super::close_socket)):
    /// the owner submits what
    /// its queue holds, then lets go of it.
    Release(#[allow(dead_code)] Arc<OwnedFd>),
    /// A dropped socket's registered-file slot (see `fixed.rs`): the owner
    /// submits what its queue holds, then empties the slot.
    ReleaseFixed(u32),
}

/// An entry and the cell that owns its resources.
pub(crate) struct Submission {
    pub(super) entry: squeue::Entry,
    pub(super) target: Arc<dyn Completable>,
    /// Where the link timeout's duration lives (inside `target`), if the op
    /// is linked to one.
    pub(super) timeout: Option<*const types::Timespec>,
}

// SAFETY: the entry holds addresses into buffers owned by `target`, and the
// timespec pointer points into `target` too; the `Arc` keeps them alive on
// whichever thread the submission travels to, and nothing is accessed
// through them except by the kernel.
unsafe impl Send for Submission {}

/// The shared side of one worker's ring.
pub(crate) struct Remote {
    /// Unique among the rings of the process (from 1): what a socket's
    /// registered-file slot names its ring by (`fixed.rs`).
    pub(super) id: u32,
    /// Slots of this ring's registered-file table in use.
    pub(super) fixed_in_use: AtomicUsize,
    pub(super) mailbox: Mailbox,
    eventfd: OwnedFd,
    ring_fd: AtomicU64,
    in_flight: AtomicUsize,
    /// Set when the driver is gone: nothing it owned completes any more.
    closed: AtomicBool,
    /// The fds named by entries in the submission queue that the kernel has
    /// not taken yet, as a 64-bit filter (bit `fd % 64`; `u64::MAX` while
    /// the owner moves mailbox entries into the queue). Set by the owner
    /// after each push and each enter; read by
    /// [`close_socket`](super::close_socket).
    queued_fds: AtomicU64,
    /// Counters for the metrics, written only by the owner (`bump`).
    pub(crate) submissions: AtomicU64,
    pub(crate) completions: AtomicU64,
    pub(crate) enters: AtomicU64,
    /// Submission to completion of every single-shot operation, in
    /// `runtime::ticks` (written by the owner in `reap`).
    pub(crate) op_latency: Histogram,
    /// This worker's pooled-receive buffers (see `io::pool`).
    pub(crate) recv: RecvPools,
    /// Op cells handed back by other workers (see [`Remote::shelve`]),
    /// with room for [`SHELF_MAX`] reserved up front; `shelved` is a hint
    /// of its length, so the owner's miss path locks only when it is not
    /// empty.
    shelf: Mutex<Vec<PooledCell>>,
    shelved: AtomicUsize,
    /// The op table and the completion queue's consumer side, shared
    /// with peers when `peer_reap` is on (see [`Remote::reap_for_peer`]).
    reaping: Mutex<Reaping>,
    /// Peers may reap this ring: it was set up without `DEFER_TASKRUN`
    /// (so a `membarrier` makes the kernel post its completions while the
    /// owner runs user code), and the process registered for
    /// `membarrier`.
    peer_reap: bool,
    /// `reaping.stash` is not empty: the owner has completions to take
    /// even with its queue empty.
    stashed: AtomicBool,
    /// When a peer last had the kernel post this ring's completions, in
    /// `runtime::ticks` (see [`KICK_GAP`]).
    last_kick: AtomicU64,
    /// Completions peers delivered (not in `completions`, which only the
    /// owner writes).
    pub(crate) peer_reaped: AtomicU64,
    /// Enters the monitor made to hand the submission queue to the kernel
    /// while the owner was stuck in a poll (`submit_for_owner`).
    pub(crate) submitted_for_owner: AtomicU64,
    /// Batches of entries the owner pushed (ops, cancels, tokens), stored
    /// (Release) after the tail that publishes them.
    pushed: AtomicU64,
    /// `pushed` when the monitor last entered for the owner: it enters
    /// again only once more were pushed.
    submitted_for_owner_at: AtomicU64,
    /// A multishot op (its completions the owner's alone) was pushed since
    /// the owner's last enter: the monitor leaves the queue to the owner.
    /// Set under `reaping`; cleared by the owner once its queue is empty.
    owner_only_queued: AtomicBool,
}

/// What the owner and a peer that reaps for it share, behind one lock: the
/// op table, the ring (to read its completion queue; `None` once the
/// driver is gone), and the completions a peer took off the queue but
/// left to the owner.
pub(super) struct Reaping {
    ring: Option<Arc<IoUring>>,
    pub(super) ops: OpTable,
    /// Completions for the owner, in queue order: tokens (its eventfd
    /// read, `MSG_RING` traffic) and multishot ops, whose state is the
    /// owner's. The owner takes these before the queue.
    stash: Vec<(u64, i32, u32)>,
    /// The owner is parking: from the moment it found the stash empty
    /// until it has reaped after its wait. Peers leave the queue alone
    /// meanwhile: a completed eventfd read taken now would be one the
    /// owner still counts as armed, and it would sleep without one.
    parking: bool,
}

/// What other threads post to a ring ([`Request`]s), in order: a vector
/// behind a lock, its length mirrored in an atomic so that the owner's
/// look at an empty mailbox (every io pass) takes no lock. The owner swaps
/// the vector for its own empty one (`Driver::posted`), so both keep their
/// room: once they have grown to the largest burst, posting allocates
/// nothing. A crossbeam `Injector` did this before and allocated a block
/// every 63 posts, which a pooled receive that follows its task to another
/// worker (a cancel posted to the old ring per move) made the skewed
/// echo's 0.003 allocations per request. The lock is held for a push or a
/// swap; posts are rare next to the ring's own pushes (a cancel or a
/// submission from another thread), so it is seldom contended.
pub(super) struct Mailbox {
    requests: Mutex<Vec<Request>>,
    len: AtomicUsize,
}

impl Mailbox {
    fn new() -> Mailbox {
        Mailbox {
            requests: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    pub(super) fn push(&self, request: Request) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.push(request);
        // Release: whoever sees the length finds the request under the
        // lock anyway; it orders what the poster did before posting.
        self.len.store(requests.len(), Release);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len.load(Acquire) == 0
    }

    /// Swaps what was posted into `into` (empty: its room goes to the
    /// mailbox).
    fn take(&self, into: &mut Vec<Request>) {
        debug_assert!(into.is_empty());
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *requests, into);
        self.len.store(0, Release);
    }
}

/// A finished op cell, of any operation type.
pub(super) type PooledCell = Arc<dyn Any + Send + Sync>;

/// The most op cells a ring's shelf holds.
const SHELF_MAX: usize = 256;
/// An operation a peer took out of the table, with its completion's result
/// and flags, to complete once the lock is released.
type PeerDelivery = (Arc<dyn Completable>, i32, u32);
/// Room reserved for the completions a peer leaves to the owner.
const STASH_ROOM: usize = 64;
/// The most `MSG_RING` wakes a ring keeps in flight (room reserved up
/// front); past that, a wake goes by the target's eventfd. Growing the
/// table instead allocated whenever a busy machine left more of them
/// unreaped than ever before (the `io_alloc` test's cross-worker echo saw
/// 3–10 allocations in 500 round trips with two busy threads beside it).
const MSGS_ROOM: usize = 64;
/// Batches of completions one `Remote::reap_for_peer` takes at most.
const PEER_BATCHES: usize = 4;
/// The shortest time between two `membarrier` kicks of one ring.
const KICK_GAP: Duration = Duration::from_micros(50);
/// `membarrier` commands (`linux/membarrier.h`).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Registers the process for `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`
/// (once; true if that worked): what lets a peer have the kernel post a
/// busy owner's completions ([`Remote::reap_for_peer`]).
pub(crate) fn membarrier_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        // SAFETY: plain syscall with integer arguments.
        let res = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                0,
                0,
            )
        };
        res == 0
    })
}

impl Remote {
    /// Wakes the owner if it is blocked in its ring. Called by the parker
    /// after it saw the worker parked. A worker with a ring of its own sends
    /// a `MSG_RING` (no eventfd round trip on the target); anyone else
    /// writes the eventfd.
    pub(crate) fn wake(self: &Arc<Self>) {
        let sent = crate::io::with_local_uring(|d| d.try_msg_ring(self)).unwrap_or(false);
        if !sent {
            self.wake_eventfd();
        }
    }

    /// Wakes the owner through its eventfd, parked or not (a running owner
    /// sees a spurious completion and drains its mailbox on its next tick).
    pub(crate) fn wake_eventfd(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. The
        // fd is blocking (a read of a non-blocking file through the ring
        // fails with EAGAIN instead of waiting on some kernels); a write
        // would block only with the counter near 2^64, which one read per
        // park keeps from happening. The result carries nothing to act on.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// Operations this ring still owns, cancelled ones included.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    pub(super) fn lock_reaping(&self) -> std::sync::MutexGuard<'_, Reaping> {
        self.reaping.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stashed(&self) -> bool {
        self.stashed.load(Relaxed)
    }

    /// Peers may reap this ring (see `peer_reap`).
    pub(crate) fn peer_reap(&self) -> bool {
        self.peer_reap
    }

    /// True if peers may reap this ring and it has operations in flight:
    /// a peer that finds the owner stuck in a poll has something to take.
    pub(crate) fn peer_reapable(&self) -> bool {
        self.peer_reap && self.in_flight() > 0
    }

    /// Takes the completions of this (another worker's) ring and delivers
    /// them on the calling thread, so the woken tasks queue on the caller:
    /// the peer's way to run the io of an owner stuck in a long poll (the
    /// caller decides when; see `WorkerCtx::reap_stuck_peers`). The ring
    /// has no `DEFER_TASKRUN`, so the kernel runs a completion's task work
    /// (the receive itself) on the owner's thread at its next return to
    /// user mode; a `membarrier` (at most one per [`KICK_GAP`]) brings
    /// that return about at once with an IPI (for an owner that is
    /// running: a preempted one posts them when it runs again). Single-shot
    /// operations are delivered here, outside the lock; tokens and
    /// multishot operations, whose state is the owner's, are left to it in
    /// order (`Reaping::stash`), which it takes at its next reap or park.
    /// Nothing is taken while the owner parks (`Reaping::parking`).
    /// Returns the operations delivered; 0 without waiting if another
    /// thread holds the lock. Ops delivered here are not timed for
    /// `op_latency`.
    pub(crate) fn reap_for_peer(&self) -> u64 {
        if !self.peer_reap {
            return 0;
        }
        // The kick first, outside the lock: the owner may take the lock
        // to reap meanwhile (its poll returned), and should not wait for
        // a syscall.
        let now = ticks::now();
        let last = self.last_kick.load(Relaxed);
        let gap = ticks::ticks_in(KICK_GAP).unwrap_or(0);
        if now.saturating_sub(last) >= gap
            && self
                .last_kick
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            // SAFETY: plain syscall with integer arguments; the process
            // registered for it (`membarrier_ready`, a condition of
            // `peer_reap`).
            unsafe {
                libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
            }
        }
        let mut guard = match self.reaping.try_lock() {
            Ok(guard) => guard,
            // Poisoned by a waker that panicked in the owner's reap: that
            // batch's completions may be lost (as they would be without
            // the lock), but the table and the queue can still be read.
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return 0,
        };
        let mut delivered = 0;
        // A few batches at most: the caller saw the owner stuck, which may
        // have ended meanwhile, and its own queue waits.
        for _ in 0..PEER_BATCHES {
            // Taken out of the table under the lock (so each completes
            // exactly once, and the owner's cancels find them gone), and
            // completed after it: a waker may run any code, which must not
            // hold up the owner's next push or reap.
            let mut done: [Option<PeerDelivery>; 32] = Default::default();
            let mut n_done = 0;
            {
                let reaping = &mut *guard;
                if reaping.parking {
                    break;
                }
                let Some(ring) = reaping.ring.as_ref() else {
                    break;
                };
                let mut batch = [(0u64, 0i32, 0u32); 32];
                let mut n = 0;
                // SAFETY: the completion queue's consumers hold `reaping`;
                // the ring is alive (its driver's drop takes it out of
                // `reaping` under the lock first), and the view is dropped,
                // its head published, before the lock is.
                for cqe in unsafe { ring.completion_shared() }.take(batch.len()) {
                    batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                for &(user_data, res, flags) in &batch[..n] {
                    if user_data == TOKEN_IGNORE {
                        // Nothing to act on (a link timeout, a cancel).
                        continue;
                    }
                    // A `MSG_RING` wake (`TOKEN_MSG`) is stashed too: it
                    // may be the one an unpark sent to the owner's park.
                    let ours = user_data & MSG_TAG == 0 && reaping.ops.peer_may_complete(user_data);
                    if !ours {
                        reaping.stash.push((user_data, res, flags));
                        continue;
                    }
                    debug_assert!(!cqueue::more(flags), "a single-shot op with more to come");
                    if let Some(op) = reaping.ops.take_final(user_data) {
                        done[n_done] = Some((op, res, flags));
                        n_done += 1;
                    }
                }
                self.in_flight.store(reaping.ops.len(), Relaxed);
                if !reaping.stash.is_empty() {
                    self.stashed.store(true, Relaxed);
                }
            }
            drop(guard);
            for (op, res, flags) in done.into_iter().flatten() {
                op.complete_cqe(res, flags);
                delivered += 1;
                if let Some(cell) = op.into_pooled() {
                    self.shelve(cell);
                }
            }
            guard = match self.reaping.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                // The owner is back (or another peer): it takes the rest.
                Err(std::sync::TryLockError::WouldBlock) => break,
            };
        }
        if delivered > 0 {
            self.peer_reaped.fetch_add(delivered, Relaxed);
        }
        delivered
    }

    /// True if the owner queued entries since its last enter (the fd
    /// filter is not empty; see `queued_fds`).
    #[inline]
    pub(crate) fn has_queued(&self) -> bool {
        self.queued_fds.load(Relaxed) != 0
    }

    /// Hands the owner's submission queue to the kernel while the owner is
    /// stuck in a poll: the monitor's call, for a worker it marked stalled
    /// (`monitor.rs`). What the tasks polled before that poll queued (their
    /// replies) waits otherwise for the poll to end: on the fan-out echo, a
    /// worker that served light requests and then a 1 ms one sent the light
    /// replies after it, and the median request took twice tokio's time.
    ///
    /// Rings peers may reap only: they are not `SINGLE_ISSUER`, so any
    /// thread may enter them. The enter asks for `u32::MAX` entries, and
    /// the kernel takes those up to the tail it reads then, which the
    /// owner publishes after whole pushes (an op and its link timeout
    /// together): asking for the count read before the enter could end
    /// between the two, if the owner entered and pushed a pair in the
    /// meantime, and a link does not reach across submissions (the op
    /// would lose its timeout). The kernel never takes an entry the owner
    /// is still writing, and the owner's view of the head only lags, which
    /// leaves it less room, never a slot still in use.
    ///
    /// The kernel's task work for what this submits (a completion not
    /// posted at once) goes to the submitting thread, the monitor, which
    /// sleeps between samples and is woken for it as a parked worker is;
    /// what it holds when it exits, at shutdown, is cancelled. So not while
    /// a multishot op is queued: all its completions would go through the
    /// monitor for as long as it lives (`owner_only_queued`; the owner
    /// submits those). Once per batch of pushes: not again until the owner
    /// pushed more (`pushed`, `submitted_for_owner_at`). Under the reaping lock,
    /// which keeps the ring alive (the driver's drop takes it out under the
    /// lock) and orders the multishot flag; skipped while the owner parks
    /// (it submitted on its way there) or holds the lock. True if it
    /// entered.
    pub(crate) fn submit_for_owner(&self) -> bool {
        if !self.peer_reap || self.queued_fds.load(Acquire) == 0 {
            return false;
        }
        let pushed = self.pushed.load(Acquire);
        if pushed == self.submitted_for_owner_at.load(Relaxed) {
            return false;
        }
        let guard = match self.reaping.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        if guard.parking || self.owner_only_queued.load(Relaxed) {
            return false;
        }
        let Some(ring) = guard.ring.as_ref() else {
            return false;
        };
        // SAFETY: no argument struct (`arg` is None, no flag says there is
        // one); `to_submit` is capped by the kernel at the published tail.
        let entered = unsafe {
            ring.submitter()
                .enter::<libc::sigset_t>(u32::MAX, 0, 0, None)
        }
        .is_ok();
        drop(guard);
        if entered {
            // Only after an enter that went in: one that failed (no room
            // for requests in the kernel) is tried again at the next sample.
            self.submitted_for_owner_at.store(pushed, Relaxed);
            self.submitted_for_owner.fetch_add(1, Relaxed);
        }
        entered
    }

    /// Slots of this ring's registered-file table in use.
    pub(crate) fn fixed_files(&self) -> usize {
        self.fixed_in_use.load(Relaxed)
    }

    /// True once the driver is gone (the runtime shut down): whatever it
    /// owned was completed or left to the kernel, and waits for it are over.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// Posts a submission from a thread that does not own the ring.
    pub(crate) fn post_submit(&self, submission: Submission) {
        self.mailbox.push(Request::Submit(submission));
        self.wake_eventfd();
    }

    /// Posts a cancellation from a thread that does not own the ring.
    pub(crate) fn post_cancel(&self, target: Arc<dyn Completable>) {
        self.mailbox.push(Request::Cancel(target));
        self.wake_eventfd();
    }

    /// Posts a cancellation that may wait for the owner's next pass over
    /// its mailbox (every `event_interval` ticks while it runs, around
    /// every park): no eventfd write. For cancels nothing waits on
    /// urgently (a stream moving to another worker keeps receiving
    /// through the op meanwhile, and the op's next completion wakes the
    /// owner anyway).
    pub(crate) fn post_cancel_quiet(&self, target: Arc<dyn Completable>) {
        self.mailbox.push(Request::Cancel(target));
    }

    /// True if an entry naming `fd` pushed before now may not have reached
    /// the kernel: queued in the submission queue or still in the mailbox.
    /// The mailbox is read first: an entry the owner has taken out of it is
    /// in the filter (see `drain_mailbox`).
    pub(super) fn may_hold_unsubmitted(&self, fd: RawFd) -> bool {
        !self.mailbox.is_empty() || self.queued_fds.load(Acquire) & fd_bit(fd) != 0
    }
}

/// The owning side: lives on its worker thread.
pub(crate) struct Driver {
    /// Shared with `Remote::reaping` (for peers' reads of the completion
    /// queue): every access goes through `&IoUring` (`sq`, `cq`).
    ring: Arc<IoUring>,
    remote: Arc<Remote>,
    eventfd_armed: bool,
    eventfd_buf: Box<u64>,
    msg_ring: bool,
    /// Targets of `MSG_RING` wakes whose completion has not arrived.
    msgs: Slab<Arc<Remote>>,
    /// Set up with `IORING_SETUP_TASKRUN_FLAG` (with `DEFER_TASKRUN` or
    /// `COOP_TASKRUN`): the kernel says when an enter would post
    /// completions.
    taskrun_flag: bool,
    enabled: bool,
    /// The filter of fds named in the submission queue (see
    /// `Remote::queued_fds`).
    queued_fds: u64,
    /// Mirrors `Remote::owner_only_queued` (set by this driver's pushes).
    owner_only_queued: bool,
    /// Cells of finished operations, reused by the next ones of their type.
    pub(super) cells: CellPool,
    /// When each op in `ops` (by slab key) was pushed, in
    /// `runtime::ticks`, if it is one of the timed ones; 0 if not, and once
    /// a multishot op has completed once (its later completions are not
    /// timed).
    pushed_at: Vec<u64>,
    /// One op in this many is timed for `Remote::op_latency` (the
    /// runtime's `histogram_sample_interval`); 0: none (histograms off).
    time_every: u32,
    /// Ops to push before the next timed one.
    time_countdown: u32,
    /// Multishot receives may be armed here: the probe found them, and
    /// registering the buffer ring has not failed.
    recv_multishot: bool,
    /// The provided buffer ring, registered at the first multishot receive.
    buf_ring: Option<Arc<BufRing>>,
    /// The ring this one hands spare op cells to when its pool is full and
    /// the op was its own (the next worker's; `None` with one worker).
    spill: Option<Arc<Remote>>,
    /// The mailbox's other vector: empty between drains (see [`Mailbox`]).
    posted: Vec<Request>,
    /// In `drain_mailbox`, between taking the requests and pushing the
    /// last of them: the published filter stays "any fd" (see there).
    draining: bool,
    /// The registered-file table (`fixed.rs`).
    fixed: FixedTable,
    /// The ring's index among the worker thread's registered rings
    /// ([`Driver::register_ring_fd`]): enters name it instead of the fd.
    ring_index: Option<u32>,
    /// `reap`'s scratch, kept with room for [`REAP_BATCH`]: the
    /// completions taken under one lock of `Remote::reaping`, and the
    /// cells to pool after it.
    reap_batch: Vec<(u64, i32, u32)>,
    reaped_cells: Vec<PooledCell>,
}

/// Completions `reap` takes off the queue under one lock.
const REAP_BATCH: usize = 32;

/// A ring's table of registered files: sockets that do io often get a
/// slot, and their operations on this ring name the slot instead of the fd
/// (the kernel then skips the fd lookup and the file reference count per
/// operation). Registered sparse at the first use, on the owner's thread
/// (with SINGLE_ISSUER only the submitter may register).
enum FixedTable {
    /// Not registered yet; this many slots wanted (0: never).
    Unused(u32),
    /// Registered: the free slots.
    On(Vec<u32>),
    /// Registering failed (an old kernel, `RLIMIT_NOFILE`): not tried again.
    Off,
}

/// The soft `RLIMIT_NOFILE`, which caps a registered-file table.
fn nofile_limit() -> u32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscall writing the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur.min(u32::MAX as libc::rlim_t) as u32
}

/// The next ring id.
static NEXT_RING_ID: AtomicU32 = AtomicU32::new(1);

/// The most finished op cells a driver keeps per operation type.
const CELL_POOL_MAX: usize = 256;

/// The most cells of a type a pool takes in from ops another ring
/// submitted; beyond it they go back to that ring's shelf. When a task's
/// ops are submitted on one worker and their results taken on the other
/// (a task handed across at every wake, as long polls are), the taking
/// pool filled to 256 before it gave any back, and the submitting worker
/// allocated meanwhile: with the flow going both ways at random, pools
/// settled only after 400–1,000 round trips of such a task. With 32 the
/// two need about 32 cells of a type between them before none is
/// allocated.
const FOREIGN_KEEP: usize = 32;

/// Op cells whose operation is over, per cell type: an op started on a
/// worker takes one instead of allocating, and a future that took its
/// result on a worker gives its cell back, so steady-state io allocates
/// nothing per operation. Only unique cells (no other reference, no data)
/// go in. The types are few (one per kind of operation and buffer type), so
/// a linear scan finds the list.
#[derive(Default)]
pub(super) struct CellPool {
    kinds: Vec<(TypeId, Vec<Arc<dyn Any + Send + Sync>>)>,
}

impl CellPool {
    /// A cell of type `C`, if one is pooled.
    ///
    /// No `downcast`: its check is a virtual `type_id` call and a second
    /// `TypeId` comparison (an out-of-line call in this toolchain), and
    /// with the one that finds the list they were 3.4% of a
    /// thread-per-core echo server's user time. The list found is `C`'s.
    pub(super) fn take<C: Any + Send + Sync>(&mut self) -> Option<Arc<C>> {
        let id = TypeId::of::<C>();
        let (_, cells) = self.kinds.iter_mut().find(|(kind, _)| *kind == id)?;
        let cell = cells.pop()?;
        debug_assert!(cell.is::<C>(), "a cell in another type's list");
        // SAFETY: `put` files every cell under its concrete type's id
        // (`Any::type_id` through the vtable), so a cell in the list of
        // `C`'s id is a `C`. The pointer comes from the `Arc`'s own
        // allocation, whose layout for a `C` behind `dyn Any` is that of
        // an `Arc<C>` (what `Arc::downcast` relies on too), and
        // `into_raw` then `from_raw` leave its count as it was.
        Some(unsafe { Arc::from_raw(Arc::into_raw(cell).cast::<C>()) })
    }

    /// Keeps `cell` for the next op of its type; gives it back if that
    /// type's pool holds `limit` cells or more.
    pub(super) fn put(&mut self, cell: PooledCell, limit: usize) -> Option<PooledCell> {
        // The concrete type's id (through the vtable), not the `Arc`'s.
        let id = Any::type_id(&*cell);
        let index = match self.kinds.iter().position(|(kind, _)| *kind == id) {
            Some(index) => index,
            None => {
                // Its whole room at once (4 KiB): a pool that grows as
                // cells pile up allocates in the steady state, each time
                // a busy machine leaves more of them here than before.
                self.kinds.push((id, Vec::with_capacity(CELL_POOL_MAX)));
                self.kinds.len() - 1
            }
        };
        let cells = &mut self.kinds[index].1;
        if cells.len() < limit.min(CELL_POOL_MAX) {
            cells.push(cell);
            None
        } else {
            Some(cell)
        }
    }
}

impl Remote {
    /// Hands a finished op cell to this ring, from another worker whose
    /// pool is full (`Driver::recycle_cell`). Cells drift: an op takes its
    /// cell on the worker that submits it and gives it back on the worker
    /// that takes its result, so tasks that move between the two
    /// (stealing) fill one worker's pool while the other's runs dry and
    /// allocates. Measured on a 256-connection echo: ~0.005 allocations
    /// per request, every one a miss on one worker matched by a full pool
    /// on the other. Locked only on those two events, never per op.
    /// Dropped if the shelf is full.
    ///
    /// Not once the ring's driver is gone (checked under the shelf's lock,
    /// which the driver's drop takes to empty the shelf after it closes):
    /// a cell holds its last ring (`OpCell::owner`), so a shelf outliving
    /// its driver could keep a cycle through its own `Remote`.
    pub(super) fn shelve(&self, cell: PooledCell) {
        let mut shelf = self.shelf.lock().unwrap_or_else(|e| e.into_inner());
        if shelf.len() < SHELF_MAX && !self.closed.load(Acquire) {
            // Within the capacity reserved at start: no allocation.
            shelf.push(cell);
            self.shelved.store(shelf.len(), Release);
            return;
        }
        drop(shelf);
        drop(cell);
    }
}

/// Adds `n` to a counter only the ring's owner writes (the others read
/// it): a load and a store, no locked instruction (one per op was
/// measurable on the echo server).
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Driver {
    pub(crate) fn new(
        entries: u32,
        features: Features,
        pools: PoolConfig,
        registered_files: u32,
        time_every: u32,
        peer_reap: bool,
    ) -> io::Result<(Driver, Arc<Remote>)> {
        let ring = Arc::new(build_ring(features.flags, entries)?);
        // Peers reap only rings without deferred task work (see
        // `Remote::reap_for_peer`).
        let peer_reap = peer_reap && features.flags != SetupFlags::SingleIssuerDeferTaskrun;
        // SAFETY: plain syscall; the fd is checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh fd we own.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let remote = Arc::new(Remote {
            id: NEXT_RING_ID.fetch_add(1, Relaxed),
            fixed_in_use: AtomicUsize::new(0),
            mailbox: Mailbox::new(),
            eventfd,
            ring_fd: AtomicU64::new(ring.as_raw_fd() as u64),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            queued_fds: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
            completions: AtomicU64::new(0),
            enters: AtomicU64::new(0),
            op_latency: Histogram::new(),
            recv: RecvPools::new(pools),
            shelf: Mutex::new(Vec::with_capacity(SHELF_MAX)),
            shelved: AtomicUsize::new(0),
            reaping: Mutex::new(Reaping {
                ring: peer_reap.then(|| ring.clone()),
                ops: OpTable::with_capacity(entries as usize, 0),
                stash: Vec::with_capacity(STASH_ROOM),
                parking: false,
            }),
            last_kick: AtomicU64::new(0),
            peer_reap,
            stashed: AtomicBool::new(false),
            peer_reaped: AtomicU64::new(0),
            submitted_for_owner: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            submitted_for_owner_at: AtomicU64::new(0),
            owner_only_queued: AtomicBool::new(false),
        });
        let driver = Driver {
            ring,
            remote: remote.clone(),
            eventfd_armed: false,
            eventfd_buf: Box::new(0),
            msg_ring: features.msg_ring,
            msgs: Slab::with_capacity(MSGS_ROOM),
            taskrun_flag: features.flags != SetupFlags::Plain,
            enabled: false,
            queued_fds: 0,
            owner_only_queued: false,
            cells: CellPool::default(),
            pushed_at: Vec::with_capacity(entries as usize),
            time_every,
            time_countdown: time_every,
            recv_multishot: features.recv_multishot,
            buf_ring: None,
            spill: None,
            posted: Vec::new(),
            draining: false,
            fixed: FixedTable::Unused(registered_files),
            ring_index: None,
            reap_batch: Vec::with_capacity(REAP_BATCH),
            reaped_cells: Vec::with_capacity(REAP_BATCH),
        };
        Ok((driver, remote))
    }

    /// Enables the ring on the calling thread, its only submitter from now on.
    pub(crate) fn enable(&mut self) -> io::Result<()> {
        self.ring.submitter().register_enable_rings()?;
        self.enabled = true;
        Ok(())
    }

    /// Registers the ring's fd with the calling thread, so that its enters
    /// name an index instead of the fd: the kernel then skips looking the
    /// ring's file up (and counting a reference on it) at every
    /// `io_uring_enter`, what was left of `fget`/`fput` in an echo server
    /// once its sockets had registered files. For a worker thread only:
    /// the registration belongs to the thread, every enter must come from
    /// it, and the thread's exit undoes it. A kernel without it (before
    /// 5.18) leaves the driver on the fd.
    pub(crate) fn register_ring_fd(&mut self) {
        if !self.enabled || self.ring_index.is_some() {
            return;
        }
        let mut update = RsrcUpdate {
            // Any free index.
            offset: u32::MAX,
            resv: 0,
            data: self.ring.as_raw_fd() as u64,
        };
        if self.ring_fds(IORING_REGISTER_RING_FDS, &mut update) == 1 {
            self.ring_index = Some(update.offset);
        }
    }

    /// Registers or unregisters (`op`) one of the calling thread's ring fds,
    /// as `update` says; the kernel writes the index it chose back into it.
    /// The syscall's result (1: done).
    fn ring_fds(&self, op: libc::c_uint, update: &mut RsrcUpdate) -> libc::c_long {
        // SAFETY: plain syscall; the kernel reads and writes back the one
        // `io_uring_rsrc_update` we pass, which outlives the call.
        unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                op,
                update as *mut RsrcUpdate,
                1u32,
            )
        }
    }

    /// `io_uring_enter` through the registered index when there is one.
    ///
    /// # Safety
    /// `arg` is null or points to what `flags` says (an
    /// `io_uring_getevents_arg` with `IORING_ENTER_EXT_ARG`), alive for the
    /// call.
    unsafe fn sys_enter(
        &self,
        to_submit: u32,
        min_complete: u32,
        flags: u32,
        arg: *const libc::c_void,
        size: usize,
    ) -> io::Result<usize> {
        let (fd, flags) = match self.ring_index {
            Some(index) => (index as libc::c_int, flags | IORING_ENTER_REGISTERED_RING),
            None => (self.ring.as_raw_fd(), flags),
        };
        // SAFETY: the caller's contract for `arg`; the rest are values.
        let res = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit,
                min_complete,
                flags,
                arg,
                size,
            )
        };
        if res < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res as usize)
        }
    }

    /// A pooled cell of type `C`, restocking the pools from the shelf
    /// (cells other workers handed back) when this type's pool is empty.
    pub(super) fn take_cell<C: Any + Send + Sync>(&mut self) -> Option<Arc<C>> {
        if let Some(cell) = self.cells.take() {
            return Some(cell);
        }
        if self.remote.shelved.load(Acquire) == 0 {
            return None;
        }
        {
            let mut shelf = self.remote.shelf.lock().unwrap_or_else(|e| e.into_inner());
            for cell in shelf.drain(..) {
                // A full pool of another type: that cell is freed.
                drop(self.cells.put(cell, CELL_POOL_MAX));
            }
            self.remote.shelved.store(0, Release);
        }
        self.cells.take()
    }

    /// Sets the ring that takes this one's spare op cells.
    pub(crate) fn set_spill(&mut self, to: Arc<Remote>) {
        self.spill = Some(to);
    }

    /// Keeps a finished op's cell in this worker's pool. If the pool is
    /// full, the cell goes to the shelf of the ring that submitted the op
    /// when that was another ring (it lost the cell when the op's task
    /// moved here), else to the next ring's: a full pool here means a
    /// short one elsewhere.
    ///
    /// `foreign`: the submitting ring, when it is not this one. Such a
    /// cell goes back to that ring once this pool holds
    /// [`FOREIGN_KEEP`] of its type, not only when it is full.
    pub(super) fn recycle_cell(&mut self, cell: PooledCell, foreign: Option<&Arc<Remote>>) {
        let limit = if foreign.is_some() {
            FOREIGN_KEEP
        } else {
            CELL_POOL_MAX
        };
        if let Some(spare) = self.cells.put(cell, limit) {
            if let Some(owner) = foreign {
                owner.shelve(spare);
            } else if let Some(next) = &self.spill {
                next.shelve(spare);
            }
        }
    }

    pub(crate) fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    /// The submission queue.
    #[inline]
    fn sq(&self) -> io_uring::SubmissionQueue<'_> {
        // SAFETY: only the owner (this driver, on its worker thread)
        // writes the submission queue, and never through two views at
        // once (each is a temporary); peers read only the completion
        // queue, under `Remote::reaping`, and the monitor only enters the
        // ring (`Remote::submit_for_owner`), which moves the kernel's head:
        // a view's head is a snapshot that can only lag.
        unsafe { self.ring.submission_shared() }
    }

    /// This ring's provided buffer ring, registered on first use (on the
    /// worker thread: with SINGLE_ISSUER only the submitter may register).
    /// `None` where multishot receive is unavailable or registering failed
    /// (then never tried again on this ring).
    pub(crate) fn buf_ring(&mut self) -> Option<Arc<BufRing>> {
        if !self.recv_multishot || !self.enabled {
            return None;
        }
        if self.buf_ring.is_none() {
            let config = self.remote.recv.config;
            match BufRing::register(
                &self.ring,
                config.count,
                config.size,
                self.remote.recv.stats.clone(),
            ) {
                Ok(ring) => self.buf_ring = Some(ring),
                Err(_) => {
                    self.recv_multishot = false;
                    return None;
                }
            }
        }
        self.buf_ring.clone()
    }

    /// Puts `fd` in a free slot of this ring's registered-file table
    /// (registering the table at the first call): the slot, or `None` if
    /// the table is full or unavailable.
    pub(super) fn register_fixed(&mut self, fd: RawFd) -> Option<u32> {
        if let FixedTable::Unused(wanted) = self.fixed {
            let size = wanted.min(nofile_limit());
            self.fixed = if size == 0 || !self.enabled {
                FixedTable::Off
            } else {
                match self.ring.submitter().register_files_sparse(size) {
                    // Popped from the end: slot 0 first.
                    Ok(()) => FixedTable::On((0..size).rev().collect()),
                    Err(_) => FixedTable::Off,
                }
            };
        }
        let FixedTable::On(free) = &mut self.fixed else {
            return None;
        };
        let slot = free.pop()?;
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(1) => {
                self.remote.fixed_in_use.fetch_add(1, Relaxed);
                Some(slot)
            }
            _ => {
                free.push(slot);
                None
            }
        }
    }

    /// Empties `slot` (its socket was dropped) and frees it. What the
    /// queue holds is submitted first: the kernel resolves a fixed file
    /// when it takes the entry, so an entry naming the slot must reach it
    /// before the slot empties (or names the slot's next socket).
    /// Operations in flight keep their file until they complete.
    pub(super) fn release_fixed(&mut self, slot: u32) {
        self.submit_queued();
        if !self.sq().is_empty() {
            // Not taken by the kernel (a full completion queue): emptying
            // the slot now could hand those entries the next socket, so
            // the slot stays registered (the socket's file with it) until
            // the ring goes.
            return;
        }
        let FixedTable::On(free) = &mut self.fixed else {
            return;
        };
        if self
            .ring
            .submitter()
            .register_files_update(slot, &[-1])
            .is_ok()
        {
            free.push(slot);
            self.remote.fixed_in_use.fetch_sub(1, Relaxed);
        }
    }

    /// Queues one operation (and its link timeout) in the submission queue.
    pub(crate) fn push(&mut self, sub: Submission) {
        let Submission {
            entry,
            target,
            timeout,
        } = sub;
        let owner_only = !target.peer_may_complete();
        let user_data = {
            let mut reaping = self.remote.lock_reaping();
            if owner_only {
                // Under the lock the monitor checks it under: it sees the
                // flag, or enters before this op is in the queue.
                self.remote.owner_only_queued.store(true, Relaxed);
                self.owner_only_queued = true;
            }
            let user_data = reaping.ops.register(target);
            self.remote.in_flight.store(reaping.ops.len(), Relaxed);
            match user_data {
                Some(user_data) => user_data,
                None => return,
            }
        };
        let key = (user_data & 0xffff_ffff) as usize;
        if key >= self.pushed_at.len() {
            self.pushed_at.resize(key + 1, 0);
        }
        self.pushed_at[key] = self.op_stamp();
        let mut entry = entry.user_data(user_data);
        if let Some(ts) = timeout {
            entry = entry.flags(squeue::Flags::IO_LINK);
            let link = opcode::LinkTimeout::new(ts).build().user_data(TOKEN_IGNORE);
            self.push_entries(&[entry, link]);
        } else {
            self.push_entries(&[entry]);
        }
        bump(&self.remote.submissions, 1);
    }

    /// The stamp of the op being pushed: the time for one op in
    /// `time_every`, else 0 (not timed). A clock read per op was 2 per
    /// request of a busy echo server (12-20 ns each on the benchmark VM),
    /// where the op itself no longer costs a system call of its own.
    #[inline]
    fn op_stamp(&mut self) -> u64 {
        if self.time_every == 0 {
            return 0;
        }
        if self.time_countdown > 1 {
            self.time_countdown -= 1;
            return 0;
        }
        self.time_countdown = self.time_every;
        ticks::now()
    }

    fn push_entries(&mut self, entries: &[squeue::Entry]) {
        loop {
            // SAFETY: every address in the entries points into an `OpCell`
            // (or a `Box` of this driver) that the op table keeps alive
            // until the completion arrives, whoever delivers it (the owner
            // or a peer, `Remote::reap_for_peer`); the queue is the owner's
            // (`sq`).
            let pushed = unsafe { self.sq().push_multiple(entries) };
            if pushed.is_ok() {
                for entry in entries {
                    self.queued_fds |= fd_bit(entry_fd(entry));
                }
                // Single writer: a load and a store. Release, after the
                // tail's (the view's drop): a monitor that sees this count
                // finds the entries published.
                let batches = self.remote.pushed.load(Relaxed);
                self.remote.pushed.store(batches + 1, Release);
                self.publish_queued();
                return;
            }
            // Full: hand the queue to the kernel now and retry.
            if let Err(err) = self.ring.submit() {
                if err.raw_os_error() == Some(libc::EBUSY) {
                    self.reap();
                }
            }
        }
    }

    /// Asks the kernel to cancel `target` (its future was dropped).
    pub(crate) fn cancel(&mut self, target: &Arc<dyn Completable>) {
        let user_data = self.remote.lock_reaping().ops.to_cancel(target);
        if let Some(user_data) = user_data {
            let entry = opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(TOKEN_IGNORE);
            self.push_entries(&[entry]);
        }
    }

    /// Sends a wakeup to another ring through this one. False when not
    /// possible (no MSG_RING, this driver is mid-reap, or [`MSGS_ROOM`]
    /// wakes are in flight: the caller writes the eventfd). The target is kept
    /// until the send's own completion: if the message could not be
    /// delivered (a full or disabled target ring), the eventfd wakes it.
    pub(crate) fn try_msg_ring(&mut self, target: &Arc<Remote>) -> bool {
        if !self.msg_ring || !self.enabled || self.msgs.len() >= MSGS_ROOM {
            return false;
        }
        let key = self.msgs.insert(target.clone());
        let fd = target.ring_fd.load(Relaxed) as RawFd;
        let entry = opcode::MsgRingData::new(types::Fd(fd), 0, TOKEN_MSG, None)
            .build()
            .user_data(MSG_TAG | key as u64);
        self.push_entries(&[entry]);
        if self.ring.submit().is_ok() {
            return true;
        }
        // Not submitted now; it will be with the next enter, and its
        // completion still releases the target. Wake by eventfd meanwhile.
        false
    }

    fn arm_eventfd(&mut self) {
        if self.eventfd_armed {
            return;
        }
        let entry = opcode::Read::new(
            types::Fd(self.remote.eventfd.as_raw_fd()),
            (&mut *self.eventfd_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(TOKEN_EVENTFD);
        self.push_entries(&[entry]);
        self.eventfd_armed = true;
    }

    /// Takes what other threads posted.
    fn drain_mailbox(&mut self) {
        if self.remote.mailbox.is_empty() {
            return;
        }
        // Entries taken out of the mailbox are in neither it nor the
        // filter until pushed: say "any fd" until the last of them is. The
        // pushes publish the filter as they go; `draining` holds those
        // back, or a close would find the mailbox empty and the fd of a
        // request still waiting in `posted` missing from the filter.
        self.remote.queued_fds.store(u64::MAX, Release);
        self.draining = true;
        let mut released = Vec::new();
        let mut slots = Vec::new();
        let mut posted = std::mem::take(&mut self.posted);
        self.remote.mailbox.take(&mut posted);
        for request in posted.drain(..) {
            match request {
                Request::Submit(sub) => self.push(sub),
                Request::Cancel(target) => self.cancel(&target),
                Request::Release(fd) => released.push(fd),
                Request::ReleaseFixed(slot) => slots.push(slot),
            }
        }
        // Emptied, with its room kept for the next swap.
        self.posted = posted;
        if !released.is_empty() {
            // Everything posted before the release is in the queue now:
            // hand it to the kernel (which resolves each entry's fd) before
            // the fd may close.
            self.submit_queued();
            drop(released);
        }
        for slot in slots {
            // Submits the queue first, as above.
            self.release_fixed(slot);
        }
        self.draining = false;
        self.publish_queued();
    }

    /// Hands the submission queue to the kernel now, if it holds anything.
    pub(crate) fn submit_queued(&mut self) {
        if !self.sq().is_empty() {
            self.enter(None, false);
        }
    }

    fn publish_queued(&mut self) {
        if self.sq().is_empty() {
            self.queued_fds = 0;
            if self.owner_only_queued {
                self.owner_only_queued = false;
                self.remote.owner_only_queued.store(false, Relaxed);
            }
        }
        if !self.draining {
            self.remote.queued_fds.store(self.queued_fds, Release);
        }
    }

    /// Operations this ring owns now (as of the last push or reap, a
    /// peer's included).
    pub(crate) fn in_flight(&self) -> usize {
        self.remote.in_flight()
    }

    /// True if the worker should enter the kernel on its periodic tick.
    pub(crate) fn has_work(&mut self) -> bool {
        self.remote.in_flight() > 0
            || self.remote.stashed()
            || !self.sq().is_empty()
            || !self.remote.mailbox.is_empty()
    }

    /// Submits what is queued and reaps what completed, without blocking.
    pub(crate) fn poll(&mut self) {
        self.drain_mailbox();
        self.enter(None, false);
        self.reap();
    }

    /// Blocks until a completion, a wakeup, or `deadline`.
    /// True if operations completed (not just a wakeup or the timeout).
    pub(crate) fn park(&mut self, deadline: Option<Instant>) -> bool {
        // What peers left here (`Remote::reap_for_peer`) is taken, and
        // then no wait: it may hold the wake meant for this park (a
        // `MSG_RING` or eventfd completion that an unpark posted after the
        // worker went parked), and a completed eventfd read there must be
        // seen by `arm_eventfd`; a spurious return is allowed (the caller
        // looks again). Otherwise, under the same lock that finds the
        // stash empty, peers are told to leave the queue alone until the
        // wait is over (`Reaping::parking`), so a wake stays in the queue
        // for the wait to find.
        {
            let mut reaping = self.remote.lock_reaping();
            if reaping.stash.is_empty() {
                reaping.parking = true;
            } else {
                drop(reaping);
                return self.reap() > 0;
            }
        }
        self.drain_mailbox();
        self.arm_eventfd();
        self.enter(deadline, true);
        let delivered = self.reap();
        self.remote.lock_reaping().parking = false;
        self.drain_mailbox();
        // Submit what the mailbox brought; completions come next time.
        if !self.sq().is_empty() {
            self.enter(None, false);
        }
        delivered > 0
    }

    fn enter(&mut self, deadline: Option<Instant>, wait: bool) {
        if !wait && self.sq().is_empty() {
            let idle = if self.taskrun_flag {
                // The kernel sets IORING_SQ_TASKRUN (the ring is set up
                // with IORING_SETUP_TASKRUN_FLAG) when it queues task work
                // for us, i.e. when a completion waits for an enter to be
                // posted; an overflowed CQ needs one to be flushed. With
                // neither, an enter would find nothing: skip the syscall.
                let sq = self.sq();
                !sq.taskrun() && !sq.cq_overflow()
            } else {
                // Without task work flags completions are posted on
                // their own; those already posted are reaped next.
                let _reaping = self.remote.lock_reaping();
                // SAFETY: the completion queue's consumers hold
                // `reaping` (a peer's reads and head updates too).
                !unsafe { self.ring.completion_shared() }.is_empty()
            };
            if idle {
                return;
            }
        }
        bump(&self.remote.enters, 1);
        let res = if !wait {
            // GETEVENTS with min_complete 0: submit, and run deferred task
            // work so completions become visible, without blocking.
            let to_submit = self.sq().len() as u32;
            // SAFETY: no argument struct (`arg` is null, and no flag says
            // there is one).
            unsafe { self.sys_enter(to_submit, 0, IORING_ENTER_GETEVENTS, std::ptr::null(), 0) }
        } else {
            let deadline = match park_slice() {
                None => deadline,
                Some(slice) => {
                    // valgrind hands its lock over at a yield; without it
                    // the parker would take it back for slice after slice.
                    std::thread::yield_now();
                    let cap = Instant::now() + slice;
                    Some(deadline.map_or(cap, |d| d.min(cap)))
                }
            };
            let to_submit = self.sq().len() as u32;
            match deadline {
                // SAFETY: no argument struct.
                None => unsafe {
                    self.sys_enter(to_submit, 1, IORING_ENTER_GETEVENTS, std::ptr::null(), 0)
                },
                Some(deadline) => {
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    if timeout.is_zero() {
                        return self.enter(None, false);
                    }
                    let ts = timespec(timeout);
                    let arg = GeteventsArg {
                        sigmask: 0,
                        sigmask_sz: 0,
                        min_wait_usec: 0,
                        ts: &ts as *const types::Timespec as u64,
                    };
                    // SAFETY: `arg` is an `io_uring_getevents_arg` as
                    // `IORING_ENTER_EXT_ARG` says, and it and the timespec
                    // it points to (the kernel's `__kernel_timespec`, which
                    // `types::Timespec` wraps transparently) outlive the
                    // call.
                    unsafe {
                        self.sys_enter(
                            to_submit,
                            1,
                            IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                            (&arg as *const GeteventsArg).cast(),
                            std::mem::size_of::<GeteventsArg>(),
                        )
                    }
                }
            }
        };
        self.publish_queued();
        if let Err(err) = res {
            match err.raw_os_error() {
                // Timeout, signal, or completion queue full: all fine, the
                // caller reaps and loops.
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => panic!("io_uring_enter failed: {err}"),
            }
        }
    }

    /// Delivers every completion in the queue as of its last look.
    /// Returns how many operation completions it delivered.
    ///
    /// Batches of [`REAP_BATCH`] under the lock, until one comes back
    /// short with nothing left in the stash: the queue was empty then. A
    /// completion posted after that look (possible only on rings without
    /// deferred task work, which post completions on their own) waits
    /// for the next io pass, and a park's enter returns at once for it.
    /// Looking again to find nothing cost every reap a second lock, and a
    /// clear and a drop of two fixed arrays of 32 per look (the reap's
    /// share of a thread-per-core echo server's user time went from 18.8%
    /// to 16.4% without them, its own share from 1.5% to 0.8%).
    fn reap(&mut self) -> u64 {
        let mut delivered = 0u64;
        // One clock read per reap, taken at the first completion.
        let mut now = 0;
        // Out of `self` for the loop, which calls `recycle_cell(&mut
        // self)` while it drains `cells`; put back with their room at the
        // end. The reserve is free while they have it, and gives it back
        // after a panicking waker unwound a reap and dropped them.
        let mut batch = std::mem::take(&mut self.reap_batch);
        let mut cells = std::mem::take(&mut self.reaped_cells);
        batch.reserve(REAP_BATCH);
        cells.reserve(REAP_BATCH);
        loop {
            batch.clear();
            let more;
            {
                let mut reaping = self.remote.lock_reaping();
                let reaping = &mut *reaping;
                // What a peer left here came off the queue first.
                let stashed = reaping.stash.len().min(REAP_BATCH);
                batch.extend(reaping.stash.drain(..stashed));
                // SAFETY: the completion queue's consumers hold `reaping`
                // (a peer's reads and head updates too); the view is
                // dropped, its head published, before the lock is.
                let cq = unsafe { self.ring.completion_shared() };
                batch.extend(
                    cq.take(REAP_BATCH - stashed)
                        .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
                );
                if batch.is_empty() {
                    self.remote.stashed.store(false, Relaxed);
                    break;
                }
                for &(user_data, res, flags) in &batch {
                    match user_data {
                        TOKEN_EVENTFD => self.eventfd_armed = false,
                        TOKEN_MSG | TOKEN_IGNORE => {}
                        ud if ud & MSG_TAG != 0 => {
                            let key = (ud & !MSG_TAG) as usize;
                            if let Some(target) = self.msgs.try_remove(key) {
                                if res < 0 {
                                    target.wake_eventfd();
                                }
                            }
                        }
                        _ => {
                            let more_to_come = cqueue::more(flags);
                            if let Some(left) = reaping.ops.deliver(user_data, res, flags) {
                                delivered += 1;
                                if let Some(cell) = left.and_then(|op| op.into_pooled()) {
                                    cells.push(cell);
                                }
                                // Timed once, at the first completion: a
                                // multishot op's first result ends its
                                // stamp and is not counted (it measures
                                // the wait for a peer, not an operation).
                                let key = (user_data & 0xffff_ffff) as usize;
                                let pushed_at =
                                    self.pushed_at.get_mut(key).map_or(0, std::mem::take);
                                if pushed_at != 0 && !more_to_come {
                                    if now == 0 {
                                        now = ticks::now();
                                    }
                                    self.remote.op_latency.record(now.saturating_sub(pushed_at));
                                }
                            }
                        }
                    }
                }
                self.remote.in_flight.store(reaping.ops.len(), Relaxed);
                let stash_left = !reaping.stash.is_empty();
                self.remote.stashed.store(stash_left, Relaxed);
                more = stash_left || batch.len() == REAP_BATCH;
            }
            for cell in cells.drain(..) {
                self.recycle_cell(cell, None);
            }
            if !more {
                break;
            }
        }
        self.reap_batch = batch;
        self.reaped_cells = cells;
        if delivered > 0 {
            bump(&self.remote.completions, delivered);
        }
        delivered
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.enabled {
            // Never submitted to; only let the ring go with this driver.
            self.remote.lock_reaping().ring = None;
            return;
        }
        // The kernel may still write into buffers the cells own: cancel
        // everything and wait (bounded) for the completions before the cells
        // can be freed. Whatever does not complete in time is leaked rather
        // than freed under the kernel.
        self.drain_mailbox();
        let pending = self.remote.lock_reaping().ops.user_data();
        for user_data in pending {
            let entry = opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(TOKEN_IGNORE);
            self.push_entries(&[entry]);
        }
        let give_up = Instant::now() + Duration::from_secs(2);
        while !self.remote.lock_reaping().ops.is_empty() && Instant::now() < give_up {
            self.enter(Some(Instant::now() + Duration::from_millis(50)), true);
            self.reap();
        }
        let leaked = {
            let mut reaping = self.remote.lock_reaping();
            let leaked = !reaping.ops.is_empty();
            for target in reaping.ops.drain() {
                std::mem::forget(target);
            }
            // Peers find no ring from now on.
            reaping.ring = None;
            reaping.stash.clear();
            leaked
        };
        // The buffer ring: freed with its last reference (buffers user code
        // still holds keep it). An op leaked above keeps its queue and with
        // it the ring's memory, which the kernel may still write.
        if let Some(ring) = self.buf_ring.take() {
            if !leaked {
                let _ = self
                    .ring
                    .submitter()
                    .unregister_buf_ring(crate::io::buf_ring::BGID);
            }
            drop(ring);
        }
        self.remote.in_flight.store(0, Relaxed);
        self.remote.closed.store(true, Release);
        // No shelving after this (`Remote::shelve`): the cells here may
        // hold this ring's `Remote`.
        let shelved =
            std::mem::take(&mut *self.remote.shelf.lock().unwrap_or_else(|e| e.into_inner()));
        self.remote.shelved.store(0, Release);
        drop(shelved);
        if let Some(index) = self.ring_index.take() {
            let mut update = RsrcUpdate {
                offset: index,
                resv: 0,
                data: 0,
            };
            // Fails harmlessly off the registering thread, whose exit
            // undoes the registration anyway.
            self.ring_fds(IORING_UNREGISTER_RING_FDS, &mut update);
        }
    }
}

pub(super) fn timespec(d: Duration) -> types::Timespec {
    types::Timespec::new()
        .sec(d.as_secs())
        .nsec(d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::uring::table::SlotState;

    fn driver() -> Option<Driver> {
        let features = super::super::probe::probe().ok()?;
        Some(
            Driver::new(64, features, PoolConfig::default(), 0, 1, false)
                .ok()?
                .0,
        )
    }

    /// A cell that is freed shows as a dead `Weak`.
    fn cell() -> (PooledCell, std::sync::Weak<u64>) {
        let cell = Arc::new(7u64);
        let weak = Arc::downgrade(&cell);
        (cell, weak)
    }

    #[test]
    fn a_cell_pool_reserves_its_whole_room_with_a_types_first_cell() {
        let mut pool = CellPool::default();
        let (c, _) = cell();
        assert!(pool.put(c, CELL_POOL_MAX).is_none());
        let room = |pool: &CellPool| pool.kinds[0].1.capacity();
        assert_eq!(room(&pool), CELL_POOL_MAX);
        // Filling it to the limit never reallocates.
        for _ in 1..CELL_POOL_MAX {
            assert!(pool.put(cell().0, CELL_POOL_MAX).is_none());
        }
        assert_eq!(room(&pool), CELL_POOL_MAX);
        assert!(
            pool.put(cell().0, CELL_POOL_MAX).is_some(),
            "full: handed back"
        );
    }

    #[test]
    fn msg_ring_wakes_in_flight_stop_at_their_reserved_room() {
        let (Some(mut a), Some(mut b)) = (driver(), driver()) else {
            eprintln!("io_uring unavailable: skipped");
            return;
        };
        a.enable().expect("enable");
        b.enable().expect("enable");
        if !a.msg_ring {
            eprintln!("no MSG_RING here: skipped");
            return;
        }
        // Not reaped meanwhile: every wake stays in flight until `a` reaps.
        for i in 0..MSGS_ROOM {
            assert!(a.try_msg_ring(&b.remote), "wake {i} went by MSG_RING");
        }
        assert!(
            !a.try_msg_ring(&b.remote),
            "past its room a wake goes by the target's eventfd"
        );
        assert_eq!(a.msgs.len(), MSGS_ROOM);
        assert_eq!(a.msgs.capacity(), MSGS_ROOM, "the table never grew");
        // Their completions release them, and wakes go by MSG_RING again.
        for _ in 0..1000 {
            a.poll();
            if a.msgs.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(a.msgs.is_empty(), "{} wakes never completed", a.msgs.len());
        assert!(a.try_msg_ring(&b.remote));
        b.poll();
    }

    #[test]
    fn a_full_pool_hands_spare_cells_to_the_ring_that_is_short_of_them() {
        let (Some(mut a), Some(mut b)) = (driver(), driver()) else {
            eprintln!("io_uring unavailable: skipped");
            return;
        };
        b.set_spill(a.remote.clone());
        for _ in 0..CELL_POOL_MAX {
            let (c, _) = cell();
            b.recycle_cell(c, None);
        }
        // B's pool is full: its own op's cell goes to the next ring (A),
        // and so does a cell of an op A submitted.
        let (own, own_weak) = cell();
        b.recycle_cell(own, None);
        let (foreign, foreign_weak) = cell();
        b.recycle_cell(foreign, Some(&a.remote.clone()));
        assert_eq!(a.remote.shelved.load(Relaxed), 2);
        // A's pool is empty: a miss restocks it from the shelf.
        let first = a.take_cell::<u64>().expect("restocked from the shelf");
        let second = a.take_cell::<u64>().expect("both shelved cells");
        assert!(a.take_cell::<u64>().is_none(), "nothing else was kept");
        assert_eq!(a.remote.shelved.load(Relaxed), 0);
        drop((first, second));
        assert!(own_weak.upgrade().is_none() && foreign_weak.upgrade().is_none());
        // B still has its full pool.
        assert!(b.take_cell::<u64>().is_some());
    }

    #[test]
    fn a_pool_gives_cells_of_another_rings_ops_back_past_a_few() {
        let (Some(mut a), Some(mut b)) = (driver(), driver()) else {
            eprintln!("io_uring unavailable: skipped");
            return;
        };
        let owner = a.remote.clone();
        let mut weaks = Vec::new();
        for _ in 0..FOREIGN_KEEP + 3 {
            let (c, weak) = cell();
            weaks.push(weak);
            b.recycle_cell(c, Some(&owner));
        }
        // B kept `FOREIGN_KEEP` of A's cells and shelved the rest with A.
        assert_eq!(a.remote.shelved.load(Relaxed), 3);
        for _ in 0..3 {
            assert!(a.take_cell::<u64>().is_some(), "restocked from the shelf");
        }
        assert!(a.take_cell::<u64>().is_none());
        for _ in 0..FOREIGN_KEEP {
            assert!(b.take_cell::<u64>().is_some());
        }
        assert!(b.take_cell::<u64>().is_none());
        // Its own op's cells still fill B's pool to the full size.
        for _ in 0..CELL_POOL_MAX {
            let (c, _) = cell();
            b.recycle_cell(c, None);
        }
        assert_eq!(a.remote.shelved.load(Relaxed), 0);
        assert!(weaks.iter().all(|w| w.upgrade().is_none()));
    }

    /// A completion for nobody: what the mailbox test posts.
    #[derive(Default)]
    struct Nobody(SlotState);

    impl Completable for Nobody {
        fn complete(&self, _res: i32, _more: bool) {}
        fn slot(&self) -> &SlotState {
            &self.0
        }
    }

    /// A cancellation whose target records, when the owner looks at it,
    /// whether a close of `fd` would be told the fd may still be queued.
    struct FilterProbe {
        remote: Arc<Remote>,
        fd: RawFd,
        saw: std::sync::Mutex<Option<bool>>,
        slot: SlotState,
    }

    impl Completable for FilterProbe {
        fn complete(&self, _res: i32, _more: bool) {}
        fn slot(&self) -> &SlotState {
            &self.slot
        }
        fn is_done(&self) -> bool {
            *self.saw.lock().unwrap() = Some(self.remote.may_hold_unsubmitted(self.fd));
            // Done: nothing to cancel.
            true
        }
    }

    /// While the owner pushes what it took from the mailbox, a close of
    /// the fd of a request it has not pushed yet is told to go through the
    /// owner: the mailbox is empty by then, so the filter must still say
    /// "any fd", although the requests pushed before have published theirs.
    #[test]
    fn a_drained_request_not_yet_pushed_keeps_its_fd_in_the_filter() {
        use std::os::fd::AsRawFd;
        let Some(mut d) = driver() else {
            eprintln!("io_uring unavailable: skipped");
            return;
        };
        d.enable().unwrap();
        let null = || {
            std::fs::File::options()
                .write(true)
                .open("/dev/null")
                .unwrap()
        };
        let (first, second) = (null(), null());
        assert_ne!(first.as_raw_fd() % 64, second.as_raw_fd() % 64);
        let buf = Box::new([0u8; 8]);
        let write = |fd: RawFd| Submission {
            entry: opcode::Write::new(types::Fd(fd), buf.as_ptr(), 8).build(),
            target: Arc::new(Nobody::default()),
            timeout: None,
        };
        let probe = Arc::new(FilterProbe {
            remote: d.remote.clone(),
            fd: second.as_raw_fd(),
            saw: std::sync::Mutex::new(None),
            slot: SlotState::default(),
        });
        // As another thread would post them: a write, the probe, then a
        // write on the probed fd.
        d.remote.post_submit(write(first.as_raw_fd()));
        d.remote.post_cancel(probe.clone());
        d.remote.post_submit(write(second.as_raw_fd()));
        d.drain_mailbox();
        assert_eq!(*probe.saw.lock().unwrap(), Some(true));
        // Both writes reach the kernel and complete; then nothing is left.
        assert!(d.remote.may_hold_unsubmitted(second.as_raw_fd()));
        d.submit_queued();
        for _ in 0..100 {
            if d.in_flight() == 0 {
                break;
            }
            d.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(d.in_flight(), 0);
        assert!(!d.remote.may_hold_unsubmitted(second.as_raw_fd()));
    }

    /// The mailbox and the owner's spare vector keep their room: once they
    /// have held the largest burst, posting allocates nothing (the
    /// vectors' buffers are the same two from then on).
    #[test]
    fn the_mailbox_keeps_its_room_across_drains() {
        let mailbox = Mailbox::new();
        let mut spare = Vec::new();
        let target: Arc<dyn Completable> = Arc::new(Nobody::default());
        let mut buffers = std::collections::HashSet::new();
        for round in 0..4 {
            assert!(mailbox.is_empty());
            if round >= 2 {
                // The room the owner's vector had came back with the swap.
                assert!(mailbox.requests.lock().unwrap().capacity() >= 100);
            }
            for _ in 0..100 {
                mailbox.push(Request::Cancel(target.clone()));
            }
            assert!(!mailbox.is_empty());
            let posted = mailbox.requests.lock().unwrap().as_ptr() as usize;
            mailbox.take(&mut spare);
            assert!(mailbox.is_empty());
            assert_eq!(spare.len(), 100, "every post, in one take");
            assert!(spare.iter().all(|r| matches!(r, Request::Cancel(_))));
            spare.clear();
            if round < 2 {
                // The two vectors grow once each (they swap every round).
                buffers.insert(posted);
            } else {
                assert!(buffers.contains(&posted), "round {round} allocated");
            }
        }
        assert_eq!(buffers.len(), 2);
        assert_eq!(Arc::strong_count(&target), 1, "the posts were dropped");
    }

    /// Cells may hold their ring's `Remote`: a shelf is emptied when its
    /// driver goes and takes nothing after, so no cycle outlives it.
    #[test]
    fn a_shelf_frees_its_cells_with_its_driver_and_refuses_more() {
        let Some(mut a) = driver() else {
            eprintln!("io_uring unavailable: skipped");
            return;
        };
        a.enable().unwrap();
        let remote = a.remote.clone();
        let (before, before_weak) = cell();
        remote.shelve(before);
        assert_eq!(remote.shelved.load(Relaxed), 1);
        drop(a);
        assert!(before_weak.upgrade().is_none(), "emptied with the driver");
        let (after, after_weak) = cell();
        remote.shelve(after);
        assert!(after_weak.upgrade().is_none(), "not kept once closed");
        assert_eq!(remote.shelved.load(Relaxed), 0);
    }

    #[test]
    fn a_ring_entered_by_its_registered_index_waits_wakes_and_times_out() {
        let Some(mut d) = driver() else {
            eprintln!("io_uring unavailable: skipped");
            return;
        };
        d.enable().unwrap();
        d.register_ring_fd();
        assert!(
            d.ring_index.is_some(),
            "this kernel (6.18) registers ring fds"
        );
        // A park with a deadline returns at it (the EXT_ARG timeout).
        let start = Instant::now();
        assert!(!d.park(Some(start + Duration::from_millis(20))));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(20),
            "returned after {waited:?}"
        );
        // A wake through the eventfd ends a park without a deadline.
        let remote = d.remote.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            remote.wake_eventfd();
        });
        d.park(None);
        waker.join().unwrap();
        assert!(d.remote.enters.load(Relaxed) >= 2);
        drop(d);
    }

    #[test]
    fn a_full_shelf_frees_what_does_not_fit() {
        let Some(a) = driver() else {
            eprintln!("io_uring unavailable: skipped");
            return;
        };
        let mut weaks = Vec::new();
        for _ in 0..SHELF_MAX + 10 {
            let (c, weak) = cell();
            a.remote.shelve(c);
            weaks.push(weak);
        }
        assert_eq!(a.remote.shelved.load(Relaxed), SHELF_MAX);
        let freed = weaks.iter().filter(|w| w.upgrade().is_none()).count();
        assert_eq!(freed, 10, "the cells past the shelf's room were freed");
        drop(a);
    }
}
