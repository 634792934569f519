//! The io_uring driver: one ring per worker.
//!
//! Only the owning worker submits to and reaps its ring (the ring is set up
//! with SINGLE_ISSUER + DEFER_TASKRUN where the kernel has them). Each
//! in-flight operation is an [`OpCell`] behind an `Arc`, held by the future
//! that awaits it and by the driver's slab; `user_data` is the slab key plus
//! a generation, so a completion for a slot that was freed and reused is
//! recognised as stale and dropped.
//!
//! Other threads reach a ring only through its [`Remote`]: a lock-free
//! mailbox of submissions and cancellations (a `crossbeam` injector) and an
//! eventfd the ring keeps a read armed on. A future dropped on another
//! thread (or on this one while the driver is busy) posts a cancellation;
//! the owner submits `ASYNC_CANCEL` and the cell, with the buffer the kernel
//! may still write, lives until the completion arrives.
//!
//! Submissions are batched: pushing an operation only fills a submission
//! queue entry. The worker enters the kernel when it parks (submit and wait
//! in one call, with the next timer as timeout) or every `event_interval`
//! ticks (submit and reap, no wait), so one `io_uring_enter` covers every
//! operation the tasks of a scheduler round started.

use std::{
    any::{Any, TypeId},
    cell::UnsafeCell,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*},
        Arc,
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use crossbeam_deque::{Injector, Steal};
use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use slab::Slab;

use super::pool::{BufRing, PoolConfig, RecvPools};
use crate::{
    cancel::{self, Cancelled, Cause},
    facade::{lock, Mutex},
    runtime::{histogram::Histogram, ticks},
};

pub(crate) mod multishot;

/// `user_data` of the eventfd read kept armed in every ring.
const TOKEN_EVENTFD: u64 = u64::MAX;
/// `IORING_ENTER_GETEVENTS` (the crate keeps its `sys` module private).
const IORING_ENTER_GETEVENTS: u32 = 1;
/// `user_data` of a wakeup sent by another worker with `MSG_RING`.
const TOKEN_MSG: u64 = u64::MAX - 1;
/// Tag of a `MSG_RING` wake sent from this ring: the rest of `user_data` is
/// the key of its target in `Driver::msgs`. Op `user_data` never has the top
/// bit (generations are 31 bits); the tokens all do, and are checked first.
const MSG_TAG: u64 = 1 << 63;
/// `user_data` of entries whose completion carries nothing to act on
/// (link timeouts, cancellations).
const TOKEN_IGNORE: u64 = u64::MAX - 2;
/// `IORING_CQE_F_MORE` (the crate keeps its `sys` module private).
const CQE_F_MORE: u32 = 1 << 1;

/// Receives skip the first, usually futile, attempt and arm their poll at
/// once (`IORING_RECVSEND_POLL_FIRST`): in request/response traffic the
/// next request is rarely there when the read is submitted.
static RECV_POLL_FIRST: AtomicBool = AtomicBool::new(false);

/// The `ioprio` flags for a receive.
pub(crate) fn recv_ioprio() -> u16 {
    if RECV_POLL_FIRST.load(Relaxed) {
        1 // IORING_RECVSEND_POLL_FIRST
    } else {
        0
    }
}

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

/// What the kernel offers, found out once at start-up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Features {
    pub(crate) msg_ring: bool,
    pub(crate) flags: SetupFlags,
    /// Multishot receive with a provided buffer ring works here (see
    /// `buf_ring::probe_recv_multishot`).
    pub(crate) recv_multishot: bool,
}

impl Features {
    /// The same, with rings any thread may submit to: `COOP_TASKRUN`
    /// where `SINGLE_ISSUER` + `DEFER_TASKRUN` were found (the kernel
    /// that has those has it too, 5.19 < 6.1).
    pub(crate) fn without_single_issuer(self) -> Features {
        Features {
            flags: match self.flags {
                SetupFlags::SingleIssuerDeferTaskrun => SetupFlags::CoopTaskrun,
                other => other,
            },
            ..self
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetupFlags {
    SingleIssuerDeferTaskrun,
    CoopTaskrun,
    Plain,
}

/// Probes io_uring: it must exist, not be refused (seccomp, sysctl), and
/// support every opcode the driver uses.
pub(crate) fn probe() -> io::Result<Features> {
    let ring: IoUring = IoUring::builder().build(8)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    let needed = [
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring lacks IORING_OP_{name}"),
            ));
        }
    }
    if !ring.params().is_feature_ext_arg() {
        // Waiting with a timeout (the next timer) needs EXT_ARG (5.11).
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks IORING_FEAT_EXT_ARG",
        ));
    }
    let msg_ring = probe.is_supported(opcode::MsgRingData::CODE)
        && std::env::var_os("WEFT_IO_WAKE").is_none_or(|v| v != "eventfd");
    // IORING_RECVSEND_POLL_FIRST (5.19) has no feature bit of its own;
    // RECVSEND_BUNDLE (6.10) implies it.
    RECV_POLL_FIRST.store(ring.params().is_feature_recvsend_bundle(), Relaxed);
    drop(ring);
    // `WEFT_IO_RING_FLAGS` (`defer`, `coop`, `plain`) caps the flags tried,
    // for measurements: the probe still falls back below it.
    let from = match std::env::var("WEFT_IO_RING_FLAGS").as_deref() {
        Ok("coop") => 1,
        Ok("plain") => 2,
        _ => 0,
    };
    let flags = [
        SetupFlags::SingleIssuerDeferTaskrun,
        SetupFlags::CoopTaskrun,
        SetupFlags::Plain,
    ]
    .into_iter()
    .skip(from)
    .find(|f| build_ring(*f, 8).is_ok())
    .unwrap_or(SetupFlags::Plain);
    let recv_multishot = super::buf_ring::probe_recv_multishot();
    Ok(Features {
        msg_ring,
        flags,
        recv_multishot,
    })
}

fn build_ring(flags: SetupFlags, entries: u32) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    // Created here, enabled on the worker thread: with SINGLE_ISSUER the
    // thread that enables the ring becomes its only submitter.
    builder.setup_r_disabled();
    match flags {
        SetupFlags::SingleIssuerDeferTaskrun => {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        SetupFlags::CoopTaskrun => {
            builder.setup_coop_taskrun();
        }
        SetupFlags::Plain => {}
    }
    // The kernel caps the completion queue at 65536 entries.
    builder
        .setup_cqsize(entries.saturating_mul(4).min(65536))
        .build(entries)
}

/// One in-flight operation as the driver sees it.
pub(crate) trait Completable: Send + Sync {
    /// A completion arrived; `more` is set when more will follow
    /// (multishot). Called on the owning worker.
    fn complete(&self, res: i32, more: bool);
    /// A completion arrived with the CQE's flags (`IORING_CQE_F_MORE`, a
    /// selected buffer): what the driver calls. Operations that need no
    /// flag but `MORE` keep the default.
    fn complete_cqe(&self, res: i32, flags: u32) {
        self.complete(res, cqueue::more(flags));
    }
    /// Where the driver keeps its `user_data` and the done flag.
    fn slot(&self) -> &SlotState;

    /// The `user_data` the driver gave it (0 before it was submitted).
    fn user_data(&self) -> u64 {
        self.slot().user_data.load(Acquire)
    }
    fn set_user_data(&self, user_data: u64) {
        self.slot().user_data.store(user_data, Release);
    }
    /// True once the final completion was delivered.
    fn is_done(&self) -> bool {
        self.slot().done.load(Acquire)
    }
}

/// The driver's bookkeeping inside every operation.
#[derive(Default)]
pub(crate) struct SlotState {
    user_data: AtomicU64,
    done: AtomicBool,
}

impl SlotState {
    fn set_done(&self, done: bool) {
        self.done.store(done, Release);
    }
}

/// What another thread posts to a ring's owner.
enum Request {
    Submit(Submission),
    Cancel(Arc<dyn Completable>),
    /// A closed socket's fd (see [`close_socket`]): the owner submits what
    /// its queue holds, then lets go of it.
    Release(#[allow(dead_code)] Arc<OwnedFd>),
}

/// An entry and the cell that owns its resources.
pub(crate) struct Submission {
    entry: squeue::Entry,
    target: Arc<dyn Completable>,
    /// Where the link timeout's duration lives (inside `target`), if the op
    /// is linked to one.
    timeout: Option<*const types::Timespec>,
}

// SAFETY: the entry holds addresses into buffers owned by `target`, and the
// timespec pointer points into `target` too; the `Arc` keeps them alive on
// whichever thread the submission travels to, and nothing is accessed
// through them except by the kernel.
unsafe impl Send for Submission {}

/// The shared side of one worker's ring.
pub(crate) struct Remote {
    mailbox: Injector<Request>,
    eventfd: OwnedFd,
    ring_fd: AtomicU64,
    in_flight: AtomicUsize,
    /// Set when the driver is gone: nothing it owned completes any more.
    closed: AtomicBool,
    /// The fds named by entries in the submission queue that the kernel has
    /// not taken yet, as a 64-bit filter (bit `fd % 64`; `u64::MAX` while
    /// the owner moves mailbox entries into the queue). Set by the owner
    /// after each push and each enter; read by [`close_socket`].
    queued_fds: AtomicU64,
    pub(crate) submissions: AtomicU64,
    pub(crate) completions: AtomicU64,
    pub(crate) enters: AtomicU64,
    /// Submission to completion of every single-shot operation, in
    /// `runtime::ticks` (written by the owner in `reap`).
    pub(crate) op_latency: Histogram,
    /// This worker's pooled-receive buffers (see `io::pool`).
    pub(crate) recv: RecvPools,
}

impl Remote {
    /// Wakes the owner if it is blocked in its ring. Called by the parker
    /// after it saw the worker parked. A worker with a ring of its own sends
    /// a `MSG_RING` (no eventfd round trip on the target); anyone else
    /// writes the eventfd.
    pub(crate) fn wake(self: &Arc<Self>) {
        let sent = super::with_local_uring(|d| d.try_msg_ring(self)).unwrap_or(false);
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
    fn may_hold_unsubmitted(&self, fd: RawFd) -> bool {
        !self.mailbox.is_empty() || self.queued_fds.load(Acquire) & fd_bit(fd) != 0
    }
}

/// The owning side: lives on its worker thread.
pub(crate) struct Driver {
    ring: IoUring,
    ops: OpTable,
    remote: Arc<Remote>,
    eventfd_armed: bool,
    eventfd_buf: Box<u64>,
    msg_ring: bool,
    /// Targets of `MSG_RING` wakes whose completion has not arrived.
    msgs: Slab<Arc<Remote>>,
    defer_taskrun: bool,
    enabled: bool,
    /// The filter of fds named in the submission queue (see
    /// `Remote::queued_fds`).
    queued_fds: u64,
    /// Cells of finished operations, reused by the next ones of their type.
    cells: CellPool,
    /// When each op in `ops` (by slab key) was pushed, in
    /// `runtime::ticks`; 0 once a multishot op has completed once (its
    /// later completions are not timed).
    pushed_at: Vec<u64>,
    /// Multishot receives may be armed here: the probe found them, and
    /// registering the buffer ring has not failed.
    recv_multishot: bool,
    /// The provided buffer ring, registered at the first multishot receive.
    buf_ring: Option<Arc<BufRing>>,
}

/// The most finished op cells a driver keeps per operation type.
const CELL_POOL_MAX: usize = 256;

/// Op cells whose operation is over, per cell type: an op started on a
/// worker takes one instead of allocating, and a future that took its
/// result on a worker gives its cell back, so steady-state io allocates
/// nothing per operation. Only unique cells (no other reference, no data)
/// go in. The types are few (one per kind of operation and buffer type), so
/// a linear scan finds the list.
#[derive(Default)]
struct CellPool {
    kinds: Vec<(TypeId, Vec<Arc<dyn Any + Send + Sync>>)>,
}

impl CellPool {
    fn take<C: Any + Send + Sync>(&mut self) -> Option<Arc<C>> {
        let id = TypeId::of::<C>();
        let (_, cells) = self.kinds.iter_mut().find(|(kind, _)| *kind == id)?;
        cells.pop()?.downcast::<C>().ok()
    }

    fn put<C: Any + Send + Sync>(&mut self, cell: Arc<C>) {
        let id = TypeId::of::<C>();
        let index = match self.kinds.iter().position(|(kind, _)| *kind == id) {
            Some(index) => index,
            None => {
                self.kinds.push((id, Vec::new()));
                self.kinds.len() - 1
            }
        };
        let cells = &mut self.kinds[index].1;
        if cells.len() < CELL_POOL_MAX {
            cells.push(cell);
        }
    }
}

impl Driver {
    pub(crate) fn new(
        entries: u32,
        features: Features,
        pools: PoolConfig,
    ) -> io::Result<(Driver, Arc<Remote>)> {
        let ring = build_ring(features.flags, entries)?;
        // SAFETY: plain syscall; the fd is checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh fd we own.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let remote = Arc::new(Remote {
            mailbox: Injector::new(),
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
        });
        let driver = Driver {
            ring,
            ops: OpTable::with_capacity(entries as usize, 0),
            remote: remote.clone(),
            eventfd_armed: false,
            eventfd_buf: Box::new(0),
            msg_ring: features.msg_ring,
            msgs: Slab::new(),
            defer_taskrun: features.flags == SetupFlags::SingleIssuerDeferTaskrun,
            enabled: false,
            queued_fds: 0,
            cells: CellPool::default(),
            pushed_at: Vec::with_capacity(entries as usize),
            recv_multishot: features.recv_multishot,
            buf_ring: None,
        };
        Ok((driver, remote))
    }

    /// Enables the ring on the calling thread, its only submitter from now on.
    pub(crate) fn enable(&mut self) -> io::Result<()> {
        self.ring.submitter().register_enable_rings()?;
        self.enabled = true;
        Ok(())
    }

    pub(crate) fn remote(&self) -> &Arc<Remote> {
        &self.remote
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

    /// Queues one operation (and its link timeout) in the submission queue.
    pub(crate) fn push(&mut self, sub: Submission) {
        let Some(user_data) = self.ops.register(&sub.target) else {
            return;
        };
        let key = (user_data & 0xffff_ffff) as usize;
        if key >= self.pushed_at.len() {
            self.pushed_at.resize(key + 1, 0);
        }
        self.pushed_at[key] = ticks::now();
        let mut entry = sub.entry.user_data(user_data);
        if let Some(ts) = sub.timeout {
            entry = entry.flags(squeue::Flags::IO_LINK);
            let link = opcode::LinkTimeout::new(ts).build().user_data(TOKEN_IGNORE);
            self.push_entries(&[entry, link]);
        } else {
            self.push_entries(&[entry]);
        }
        self.remote.submissions.fetch_add(1, Relaxed);
        self.publish_in_flight();
    }

    fn push_entries(&mut self, entries: &[squeue::Entry]) {
        loop {
            // SAFETY: every address in the entries points into an `OpCell`
            // (or a `Box` of this driver) that the slab keeps alive until
            // the completion arrives.
            let pushed = unsafe { self.ring.submission().push_multiple(entries) };
            if pushed.is_ok() {
                for entry in entries {
                    self.queued_fds |= fd_bit(entry_fd(entry));
                }
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
        if let Some(user_data) = self.ops.to_cancel(target) {
            let entry = opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(TOKEN_IGNORE);
            self.push_entries(&[entry]);
        }
    }

    /// Sends a wakeup to another ring through this one. False when not
    /// possible (no MSG_RING, or this driver is mid-reap). The target is kept
    /// until the send's own completion: if the message could not be
    /// delivered (a full or disabled target ring), the eventfd wakes it.
    pub(crate) fn try_msg_ring(&mut self, target: &Arc<Remote>) -> bool {
        if !self.msg_ring || !self.enabled {
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
        // filter until pushed: say "any fd" meanwhile.
        self.remote.queued_fds.store(u64::MAX, Release);
        let mut released = Vec::new();
        loop {
            match self.remote.mailbox.steal() {
                Steal::Success(Request::Submit(sub)) => self.push(sub),
                Steal::Success(Request::Cancel(target)) => self.cancel(&target),
                Steal::Success(Request::Release(fd)) => released.push(fd),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        if !released.is_empty() {
            // Everything posted before the release is in the queue now:
            // hand it to the kernel (which resolves each entry's fd) before
            // the fd may close.
            self.submit_queued();
            drop(released);
        }
        self.publish_queued();
    }

    /// Hands the submission queue to the kernel now, if it holds anything.
    pub(crate) fn submit_queued(&mut self) {
        if !self.ring.submission().is_empty() {
            self.enter(None, false);
        }
    }

    fn publish_queued(&mut self) {
        if self.ring.submission().is_empty() {
            self.queued_fds = 0;
        }
        self.remote.queued_fds.store(self.queued_fds, Release);
    }

    /// Operations this ring owns now.
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// True if the worker should enter the kernel on its periodic tick.
    pub(crate) fn has_work(&mut self) -> bool {
        !self.ops.is_empty()
            || !self.ring.submission().is_empty()
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
        self.drain_mailbox();
        self.arm_eventfd();
        self.enter(deadline, true);
        let delivered = self.reap();
        self.drain_mailbox();
        // Submit what the mailbox brought; completions come next time.
        if !self.ring.submission().is_empty() {
            self.enter(None, false);
        }
        delivered > 0
    }

    fn enter(&mut self, deadline: Option<Instant>, wait: bool) {
        self.remote.enters.fetch_add(1, Relaxed);
        let res = if !wait {
            // GETEVENTS with min_complete 0: submit, and run deferred task
            // work so completions become visible, without blocking.
            let to_submit = self.ring.submission().len() as u32;
            if to_submit == 0 && !self.defer_taskrun && !self.ring.completion().is_empty() {
                return;
            }
            // SAFETY: a plain enter with no argument struct.
            unsafe {
                self.ring.submitter().enter::<libc::sigset_t>(
                    to_submit,
                    0,
                    IORING_ENTER_GETEVENTS,
                    None,
                )
            }
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
            match deadline {
                None => self.ring.submit_and_wait(1),
                Some(deadline) => {
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    if timeout.is_zero() {
                        return self.enter(None, false);
                    }
                    let ts = timespec(timeout);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
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

    /// Delivers every completion in the queue.
    /// Returns how many operation completions it delivered.
    fn reap(&mut self) -> u64 {
        let mut delivered = 0u64;
        // One clock read per reap, taken at the first completion.
        let mut now = 0;
        loop {
            let mut batch = [(0u64, 0i32, 0u32); 32];
            let mut n = 0;
            for cqe in self.ring.completion().take(batch.len()) {
                batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                n += 1;
            }
            if n == 0 {
                break;
            }
            for &(user_data, res, flags) in &batch[..n] {
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
                        let more = cqueue::more(flags);
                        if self.ops.deliver_cqe(user_data, res, flags) {
                            delivered += 1;
                            // Timed once, at the first completion: a
                            // multishot op's first result ends its stamp
                            // and is not counted (it measures the wait for
                            // a peer, not an operation).
                            let key = (user_data & 0xffff_ffff) as usize;
                            let pushed_at = std::mem::take(&mut self.pushed_at[key]);
                            if pushed_at != 0 && !more {
                                if now == 0 {
                                    now = ticks::now();
                                }
                                self.remote.op_latency.record(now.saturating_sub(pushed_at));
                            }
                        }
                    }
                }
            }
        }
        if delivered > 0 {
            self.remote.completions.fetch_add(delivered, Relaxed);
            self.publish_in_flight();
        }
        delivered
    }

    fn publish_in_flight(&self) {
        self.remote.in_flight.store(self.ops.len(), Relaxed);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.enabled {
            return;
        }
        // The kernel may still write into buffers the cells own: cancel
        // everything and wait (bounded) for the completions before the cells
        // can be freed. Whatever does not complete in time is leaked rather
        // than freed under the kernel.
        self.drain_mailbox();
        for user_data in self.ops.user_data() {
            let entry = opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(TOKEN_IGNORE);
            self.push_entries(&[entry]);
        }
        let give_up = Instant::now() + Duration::from_secs(2);
        while !self.ops.is_empty() && Instant::now() < give_up {
            self.enter(Some(Instant::now() + Duration::from_millis(50)), true);
            self.reap();
        }
        let leaked = !self.ops.is_empty();
        for target in self.ops.drain() {
            std::mem::forget(target);
        }
        // The buffer ring: freed with its last reference (buffers user code
        // still holds keep it). An op leaked above keeps its queue and with
        // it the ring's memory, which the kernel may still write.
        if let Some(ring) = self.buf_ring.take() {
            if !leaked {
                let _ = self
                    .ring
                    .submitter()
                    .unregister_buf_ring(super::buf_ring::BGID);
            }
            drop(ring);
        }
        self.publish_in_flight();
        self.remote.closed.store(true, Release);
    }
}

/// The operations a ring owns, by `user_data`: the slab key in the low 32
/// bits, a 31-bit generation above it (the top bit stays clear for the
/// tokens). A completion is delivered only to the entry its `user_data`
/// names now: one for a slot that was freed (and maybe reused by a later
/// operation, with another generation) is stale and dropped. An entry
/// leaves at its final completion, so no operation completes twice, and
/// holds its cell (with the buffers the kernel may write) until then, even
/// after its future is gone.
pub(crate) struct OpTable {
    ops: Slab<(u32, Arc<dyn Completable>)>,
    generation: u32,
}

impl OpTable {
    /// An empty table whose first operation gets generation
    /// `generation + 1`.
    pub(crate) fn with_capacity(capacity: usize, generation: u32) -> OpTable {
        OpTable {
            ops: Slab::with_capacity(capacity),
            generation: generation & 0x7fff_ffff,
        }
    }

    /// Registers `target` and gives it its `user_data`; `None` if it is
    /// already done (nothing to submit).
    pub(crate) fn register(&mut self, target: &Arc<dyn Completable>) -> Option<u64> {
        if target.is_done() {
            return None;
        }
        self.generation = self.generation.wrapping_add(1) & 0x7fff_ffff;
        let generation = self.generation;
        let key = self.ops.insert((generation, target.clone()));
        let user_data = (u64::from(generation) << 32) | key as u64;
        target.set_user_data(user_data);
        Some(user_data)
    }

    /// The `user_data` to name in an `ASYNC_CANCEL` for `target`, if it is
    /// still this table's and not done.
    pub(crate) fn to_cancel(&self, target: &Arc<dyn Completable>) -> Option<u64> {
        if target.is_done() {
            return None;
        }
        let user_data = target.user_data();
        let key = (user_data & 0xffff_ffff) as usize;
        let live = self
            .ops
            .get(key)
            .is_some_and(|(g, _)| u64::from(*g) == user_data >> 32);
        live.then_some(user_data)
    }

    /// Delivers a completion with its CQE flags (multishot receives read
    /// the selected buffer from them); false if `user_data` names no live
    /// entry (stale). The entry leaves unless more completions follow
    /// (`IORING_CQE_F_MORE`).
    pub(crate) fn deliver_cqe(&mut self, user_data: u64, res: i32, flags: u32) -> bool {
        let more = cqueue::more(flags);
        let key = (user_data & 0xffff_ffff) as usize;
        let generation = (user_data >> 32) as u32;
        let Some((g, target)) = self.ops.get(key) else {
            return false;
        };
        if *g != generation {
            // Stale: the slot was freed and reused.
            return false;
        }
        let target = if more {
            target.clone()
        } else {
            self.ops.remove(key).1
        };
        target.complete_cqe(res, flags);
        true
    }

    /// Entries in the table (cancelled ones included).
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The `user_data` of every entry.
    pub(crate) fn user_data(&self) -> Vec<u64> {
        self.ops
            .iter()
            .map(|(key, (g, _))| (u64::from(*g) << 32) | key as u64)
            .collect()
    }

    /// Takes every entry out (the driver's drop).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Arc<dyn Completable>> + '_ {
        self.ops.drain().map(|(_, target)| target)
    }
}

fn timespec(d: Duration) -> types::Timespec {
    types::Timespec::new()
        .sec(d.as_secs())
        .nsec(d.subsec_nanos())
}

// ---------------------------------------------------------------------------
// Single-shot operations.

/// The resources one kind of operation lends the kernel.
pub(crate) trait OpData: Send + 'static {
    /// The operation completed after its future was dropped: release what
    /// the result handed over (an accepted fd).
    fn orphaned(&mut self, _res: i32) {}
}

enum Phase {
    Pending(Option<Waker>),
    Done(i32),
    Taken,
}

struct OpState {
    phase: Phase,
    abandoned: bool,
}

/// One operation: its state and the resources the kernel uses.
pub(crate) struct OpCell<T> {
    state: Mutex<OpState>,
    slot: SlotState,
    timespec: types::Timespec,
    /// Only touched by the kernel while pending, then by whoever observed
    /// `Done` under the lock (the future, or `complete` if abandoned).
    data: UnsafeCell<Option<T>>,
}

// SAFETY: `data` is reached by one party at a time (see the field doc), and
// `T: Send`; the rest is atomics and a mutex.
unsafe impl<T: OpData> Sync for OpCell<T> {}
// SAFETY: as above.
unsafe impl<T: OpData> Send for OpCell<T> {}

impl<T: OpData> Completable for OpCell<T> {
    fn complete(&self, res: i32, _more: bool) {
        let mut state = lock(&self.state);
        self.slot.set_done(true);
        if state.abandoned {
            state.phase = Phase::Taken;
            drop(state);
            // SAFETY: the kernel is done with the data and the future is
            // gone: nobody else can reach it.
            if let Some(data) = unsafe { &mut *self.data.get() } {
                data.orphaned(res);
            }
            return;
        }
        let waker = match std::mem::replace(&mut state.phase, Phase::Done(res)) {
            Phase::Pending(w) => w,
            _ => None,
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn slot(&self) -> &SlotState {
        &self.slot
    }
}

impl<T: OpData> OpCell<T> {
    /// Fills a cell (a pooled one, or a new one) with `data` and builds its
    /// submission from the data at its final address.
    pub(crate) fn prepare(
        pooled: Option<Arc<OpCell<T>>>,
        data: T,
        timeout: Option<Duration>,
        build: impl FnOnce(&mut T) -> squeue::Entry,
    ) -> (Arc<OpCell<T>>, Submission) {
        let fresh = || OpCell {
            state: Mutex::new(OpState {
                phase: Phase::Pending(None),
                abandoned: false,
            }),
            slot: SlotState::default(),
            timespec: timespec(Duration::ZERO),
            data: UnsafeCell::new(None),
        };
        let mut cell = pooled.unwrap_or_else(|| Arc::new(fresh()));
        {
            let c = Arc::get_mut(&mut cell).expect("a pooled cell is unique");
            *c = fresh();
            c.timespec = timespec(timeout.unwrap_or_default());
            *c.data.get_mut() = Some(data);
        }
        // SAFETY: the cell is not shared yet; the entry's addresses point
        // into its (pinned, heap-allocated) data.
        let entry = build(
            unsafe { &mut *cell.data.get() }
                .as_mut()
                .expect("just stored"),
        );
        let sub = Submission {
            entry,
            target: cell.clone(),
            timeout: timeout.map(|_| &cell.timespec as *const types::Timespec),
        };
        (cell, sub)
    }
}

/// Gives a finished op's cell to the calling worker's pool, if this thread
/// is a worker with a ring and nothing else holds the cell (the ring let go
/// of it when the completion arrived; a completion still being delivered on
/// another worker holds it a moment longer, and then it is simply freed).
fn recycle<T: OpData>(cell: Arc<OpCell<T>>) {
    if Arc::strong_count(&cell) != 1 {
        return;
    }
    let mut cell = Some(cell);
    super::with_local_uring(|d| d.cells.put(cell.take().expect("put once")));
}

/// A submitted operation. Resolves to the raw result (negative errno on
/// error) and gives the resources back.
pub(crate) struct Op<T: OpData> {
    cell: Option<Arc<OpCell<T>>>,
    owner: Arc<Remote>,
    linked: bool,
}

impl<T: OpData> Op<T> {
    /// Builds the entry from the data at its final address and submits it
    /// to the current worker's ring, or posts it to a ring's mailbox when
    /// polled off the workers. `timeout` links a LINK_TIMEOUT.
    pub(crate) fn submit(
        data: T,
        timeout: Option<Duration>,
        build: impl FnOnce(&mut T) -> squeue::Entry,
    ) -> Result<Op<T>, (io::Error, T)> {
        let mut args = Some((data, build));
        // On a worker with a ring: a pooled cell and the push, in one borrow.
        let local = super::with_local_uring(|d| {
            let (data, build) = args.take().expect("submitted once");
            let (cell, sub) = OpCell::prepare(d.cells.take(), data, timeout, build);
            d.push(sub);
            Op {
                cell: Some(cell),
                owner: d.remote().clone(),
                linked: timeout.is_some(),
            }
        });
        if let Some(op) = local {
            return Ok(op);
        }
        let (data, build) = args.take().expect("not submitted yet");
        let (cell, sub) = OpCell::prepare(None, data, timeout, build);
        let owner = match super::submit(sub) {
            Ok(owner) => owner,
            Err(err) => {
                // Never submitted: the kernel never saw the data.
                // SAFETY: the submission was dropped unsubmitted; only this
                // function reaches the cell.
                let data = unsafe { &mut *cell.data.get() }.take();
                return Err((err, data.expect("stored above")));
            }
        };
        Ok(Op {
            cell: Some(cell),
            owner,
            linked: timeout.is_some(),
        })
    }

    /// True if this op was linked to a kernel timeout.
    pub(crate) fn is_linked(&self) -> bool {
        self.linked
    }

    /// The result and the resources once complete.
    pub(crate) fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<(i32, T)> {
        let cell = self.cell.as_ref().expect("Op polled after completion");
        let ready = std::task::ready!(cell.poll_take(cx));
        recycle(self.cell.take().expect("checked above"));
        Poll::Ready(ready)
    }
}

impl<T: OpData> OpCell<T> {
    /// The future's side of a poll: stores the waker while pending, else
    /// takes the result and the data (once).
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<(i32, T)> {
        let mut state = lock(&self.state);
        match &mut state.phase {
            Phase::Pending(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Phase::Done(res) => {
                let res = *res;
                state.phase = Phase::Taken;
                drop(state);
                // SAFETY: `Done` seen under the lock and switched to `Taken`:
                // the kernel is finished with the data and no one else takes it.
                let data = unsafe { &mut *self.data.get() }.take();
                Poll::Ready((res, data.expect("taken once")))
            }
            Phase::Taken => unreachable!("Op polled after completion"),
        }
    }

    /// The future is gone. True if the operation is still pending: the
    /// caller has the owner cancel it, and the cell (with its data) stays
    /// in the owner's table until the completion, which hands the data to
    /// `OpData::orphaned`. A completed, untaken result goes there now.
    pub(crate) fn abandon(&self) -> bool {
        let mut state = lock(&self.state);
        match state.phase {
            Phase::Pending(_) => {
                state.abandoned = true;
                true
            }
            Phase::Done(res) => {
                state.phase = Phase::Taken;
                drop(state);
                // SAFETY: complete and not taken: the data is ours.
                if let Some(data) = unsafe { &mut *self.data.get() } {
                    data.orphaned(res);
                }
                false
            }
            Phase::Taken => false,
        }
    }
}

impl<T: OpData> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else {
            return;
        };
        if cell.abandon() {
            // The owner cancels it; the cell (and buffer) stays in its
            // table until the completion.
            super::cancel(&self.owner, cell);
        }
    }
}

// ---------------------------------------------------------------------------
// Multishot accept.

/// The queue a multishot accept fills; the listener drains it.
pub(crate) struct AcceptQueue {
    state: Mutex<AcceptState>,
    slot: SlotState,
}

struct AcceptState {
    ready: std::collections::VecDeque<i32>,
    /// Every task waiting in `accept` (usually one).
    wakers: Vec<Waker>,
    /// The kernel ended the multishot (error, or no MORE): re-arm to go on.
    ended: bool,
    abandoned: bool,
}

impl AcceptQueue {
    pub(crate) fn new() -> Arc<AcceptQueue> {
        Arc::new(AcceptQueue {
            state: Mutex::new(AcceptState {
                ready: Default::default(),
                wakers: Vec::new(),
                ended: false,
                abandoned: false,
            }),
            slot: SlotState::default(),
        })
    }

    /// The next accepted fd (or `-errno`); `None` and the waker stored when
    /// nothing is queued. `Some(Err(()))` when the multishot ended with
    /// nothing queued: the caller must arm a new one.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Result<i32, ()>> {
        let mut state = lock(&self.state);
        if let Some(res) = state.ready.pop_front() {
            return Poll::Ready(Ok(res));
        }
        if state.ended {
            return Poll::Ready(Err(()));
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Ready once the kernel ended the multishot (its last completion
    /// arrived): from then on the ring holds no reference to the socket.
    pub(crate) fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if self.slot.done.load(Acquire) {
            return Poll::Ready(());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The listener is going away: close what was queued, and whatever the
    /// kernel still delivers. True if the multishot is still armed.
    pub(crate) fn abandon(&self) -> bool {
        let mut state = lock(&self.state);
        state.abandoned = true;
        for fd in state.ready.drain(..) {
            close_fd(fd);
        }
        !state.ended
    }
}

impl Completable for AcceptQueue {
    fn complete(&self, res: i32, more: bool) {
        let mut state = lock(&self.state);
        if !more {
            state.ended = true;
            self.slot.set_done(true);
        }
        if state.abandoned {
            close_fd(res);
            if more {
                return;
            }
            // The end: wake a `close` waiting for it.
            let wakers = std::mem::take(&mut state.wakers);
            drop(state);
            wakers.into_iter().for_each(Waker::wake);
            return;
        }
        // ECANCELED ends a multishot we cancelled ourselves: nothing to report.
        if res != -libc::ECANCELED || more {
            state.ready.push_back(res);
        }
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        for w in wakers {
            w.wake();
        }
    }

    fn slot(&self) -> &SlotState {
        &self.slot
    }
}

/// Arms a multishot accept on `fd` feeding `queue`.
pub(crate) fn arm_multishot_accept(fd: RawFd, queue: &Arc<AcceptQueue>) -> io::Result<Arc<Remote>> {
    {
        let mut state = lock(&queue.state);
        state.ended = false;
    }
    queue.slot.set_done(false);
    let entry = opcode::AcceptMulti::new(types::Fd(fd))
        .flags(libc::SOCK_CLOEXEC)
        .build();
    super::submit(Submission {
        entry,
        target: queue.clone(),
        timeout: None,
    })
}

/// Ends a listener's multishot accept: closes what it queued (and what
/// still arrives) and has the owning ring cancel it. The kernel lets go of
/// the socket only with the last completion; see [`wait_multishot_ended`].
pub(crate) fn cancel_multishot(owner: &Arc<Remote>, queue: &Arc<AcceptQueue>) {
    if queue.abandon() {
        super::cancel(owner, queue.clone());
    }
}

/// Waits, at most `limit`, until the kernel delivered the last completion
/// of `queue`'s (cancelled) multishot accept, so that it holds no reference
/// to the listening socket any more and closing the fd really closes it.
/// True if it ended (or the ring is gone), false if the wait gave up.
///
/// The calling worker's own ring is driven meanwhile: it is the owner's
/// when the listener is dropped where it accepted (then one pass of the
/// ring runs the cancellation), and another worker may be waiting the same
/// way for a listener of this ring. Any other thread waits for the owner,
/// which the cancellation's eventfd write woke. A worker whose ring is busy
/// (a drop from inside a completion) cannot wait for it and gives up at
/// once.
pub(crate) fn wait_multishot_ended(owner: &Remote, queue: &AcceptQueue, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let on_worker = crate::context::with_worker(|w| w.is_some());
    let mut spins = 0u32;
    loop {
        if queue.is_done() || owner.is_closed() {
            return true;
        }
        let drove = super::with_local_uring(Driver::poll).is_some();
        if !drove && on_worker {
            return false;
        }
        if Instant::now() >= deadline {
            return false;
        }
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Closes a socket's fd once no entry naming it can still reach the kernel.
///
/// An entry carries the fd as a number, which the kernel resolves when the
/// entry is submitted, not when it is pushed. A future dropped (cancelled,
/// timed out, aborted) right after it pushed its entry, and its socket
/// dropped with it, would close the fd while the entry waits in a
/// submission queue (entries are batched until the worker enters) or in a
/// mailbox; the next socket opened gets the same number, and the stale
/// entry then connects, sends or reads on *that* socket (the soak saw
/// `EISCONN` on connects and foreign bytes in echoes). So: the calling
/// worker's own queue is submitted now; every other ring of the runtime
/// that may hold an unsubmitted entry gets the fd in its mailbox, and the
/// last of them to submit closes it. In the common case (nothing queued
/// elsewhere) the fd closes before this returns.
pub(crate) fn close_socket(fd: OwnedFd) {
    let raw = fd.as_raw_fd();
    let own = super::with_local_uring(|d| {
        d.submit_queued();
        d.remote().clone()
    });
    let Ok(handle) = super::current_handle() else {
        // No runtime here to ask: entries pushed from this thread went to
        // a runtime's rings only while it was current, and it is gone.
        drop(fd);
        return;
    };
    let fd = Arc::new(fd);
    let mut posted = false;
    for slot in handle.shared.remotes.iter() {
        let super::RemoteIo::Uring(remote) = &slot.io else {
            continue;
        };
        if own.as_ref().is_some_and(|own| Arc::ptr_eq(own, remote)) || remote.is_closed() {
            continue;
        }
        if remote.may_hold_unsubmitted(raw) {
            remote.mailbox.push(Request::Release(fd.clone()));
            remote.wake_eventfd();
            posted = true;
        }
    }
    if posted {
        wait_released(&fd, own.is_some());
    }
    // The last reference: closes now (or, if the wait gave up, the last
    // ring to submit closes it).
    drop(fd);
}

/// How long [`close_socket`] waits for other rings to submit what may name
/// the fd before it leaves the close to them.
const CLOSE_WAIT_LIMIT: Duration = Duration::from_millis(100);

/// Waits (bounded) until every ring that got `fd` in its mailbox has
/// submitted and let go of it, driving the calling worker's own ring
/// meanwhile (another worker may be waiting the same way for it). A worker
/// whose ring is busy (a drop from inside a completion) does not wait.
fn wait_released(fd: &Arc<OwnedFd>, own_ring: bool) {
    let on_worker = crate::context::with_worker(|w| w.is_some());
    if on_worker && !own_ring {
        return;
    }
    let deadline = Instant::now() + CLOSE_WAIT_LIMIT;
    let mut spins = 0u32;
    while Arc::strong_count(fd) > 1 && Instant::now() < deadline {
        if own_ring {
            super::with_local_uring(Driver::poll);
        }
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// The bit of `fd` in a ring's filter of queued fds.
fn fd_bit(fd: RawFd) -> u64 {
    1 << (fd as u32 % 64)
}

/// The fd an entry names (its `fd` field; for entries without one, such as
/// cancellations, whatever the field holds: at worst a false positive in
/// the filter).
fn entry_fd(entry: &squeue::Entry) -> RawFd {
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's
    // `io_uring_sqe`, whose layout is the kernel ABI: `opcode` (u8),
    // `flags` (u8), `ioprio` (u16), then `fd` (i32) at byte offset 4. The
    // entry is live and at least 64 bytes long; the read is aligned (the
    // entry is 8-aligned).
    unsafe {
        (entry as *const squeue::Entry)
            .cast::<u8>()
            .add(4)
            .cast::<i32>()
            .read()
    }
}

/// Closes an fd a completion handed over, if it is one.
pub(crate) fn close_fd(res: i32) {
    if res >= 0 {
        // SAFETY: the kernel gave us this fd and nobody else has seen it.
        drop(unsafe { OwnedFd::from_raw_fd(res) });
    }
}

impl<T: OpData> Op<T> {
    /// Asks the kernel to cancel the operation while this future keeps
    /// waiting for its completion (so the buffer comes back to the caller).
    pub(crate) fn cancel_in_place(&self) {
        if let Some(cell) = &self.cell {
            if !cell.is_done() {
                super::cancel(&self.owner, cell.clone());
            }
        }
    }
}

/// An operation awaited as a weft await point: it spends coop budget, and
/// when the task's scope is cancelled (or the linked kernel timeout fires)
/// it cancels the operation, waits for the kernel to let go of the buffer,
/// and returns the cancellation. An operation that completed anyway returns
/// its result; the next await point reports the cancellation.
pub(crate) struct Cancellable<T: OpData> {
    op: Op<T>,
    cancelled: Option<Cancelled>,
    /// What the task dump shows while the op is in flight.
    kind: crate::runtime::dump::IoOp,
}

impl<T: OpData> Cancellable<T> {
    pub(crate) fn new(op: Op<T>, kind: crate::runtime::dump::IoOp) -> Self {
        Cancellable {
            op,
            cancelled: None,
            kind,
        }
    }
}

impl<T: OpData> std::future::Future for Cancellable<T> {
    type Output = (Result<i32, Cancelled>, T);

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let restore = std::task::ready!(crate::coop::poll_proceed(cx));
        if this.cancelled.is_none() {
            if let Some(c) = cancel::poll_cancelled(None, false) {
                this.cancelled = Some(c);
                this.op.cancel_in_place();
            }
        }
        let Poll::Ready((res, data)) = this.op.poll_complete(cx) else {
            crate::runtime::dump::awaiting(
                cx.waker(),
                crate::runtime::dump::Awaiting::Io(this.kind),
            );
            return Poll::Pending;
        };
        restore.made_progress();
        // An op the kernel had handed to an io-wq thread because it blocks
        // there (a Unix stream connect waiting for backlog room) is
        // cancelled by interrupting that thread: it ends with EINTR, not
        // ECANCELED.
        if res == -libc::ECANCELED || (res == -libc::EINTR && self_cancelled(this)) {
            if let Some(c) = this.cancelled.take() {
                return Poll::Ready((Err(c), data));
            }
            if this.op.is_linked() {
                // The kernel timeout fired: the deadline passed, so the
                // scope is (now) cancelled with it.
                let c = cancel::poll_cancelled(None, false).unwrap_or(Cancelled {
                    cause: Cause::Deadline,
                    origin: Cause::Deadline,
                    reason: None,
                });
                return Poll::Ready((Err(c), data));
            }
        }
        Poll::Ready((Ok(res), data))
    }
}

/// True if an `EINTR` result comes from our own cancel or link timeout
/// (io-wq threads are only interrupted by cancellation).
fn self_cancelled<T: OpData>(this: &Cancellable<T>) -> bool {
    this.cancelled.is_some() || this.op.is_linked()
}

/// Checks the scope before submitting: `Err` if it is cancelled, else the
/// budget left until its deadline, for a kernel link timeout.
pub(crate) fn prelude() -> Result<Option<Duration>, Cancelled> {
    if let Some(c) = cancel::poll_cancelled(None, false) {
        return Err(c);
    }
    Ok(cancel::scope_deadline().map(|d| d.saturating_duration_since(Instant::now())))
}

/// Turns a raw result into an `io::Result`.
pub(crate) fn check(res: i32) -> io::Result<i32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res)
    }
}
