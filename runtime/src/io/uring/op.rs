//! Single-shot operations: one submission, one completion.
//!
//! An operation is an [`OpCell`] behind an `Arc`, shared by the [`Op`]
//! future that awaits it and by the owning ring's table until its
//! completion. The cell holds the resources the kernel uses (the buffer, a
//! `sockaddr_storage`, a `msghdr`, the link timeout's timespec) at a fixed
//! heap address, and one [`Lifecycle`] under a mutex: pending, abandoned
//! (the future is gone; the kernel still has the op), done, or taken. A
//! dropped future leaves the cell to the ring, which cancels the op and
//! hands the data to [`OpData::orphaned`] at the completion, so nothing is
//! freed while the kernel can write it. Cells of finished ops go back to
//! the worker's pool (`recycle`) for the next op of their type.
//!
//! [`Cancellable`] makes an `Op` a weft await point (coop budget, the
//! scope's cancellation, the kernel link timeout for its deadline);
//! [`prelude`] and [`check`] are what every op does before and after.

use std::{
    cell::UnsafeCell,
    io,
    os::fd::RawFd,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use io_uring::{squeue, types};

use super::{
    driver::{timespec, Remote, Submission},
    fixed::{use_fixed, FixedFile},
    table::{Completable, SlotState},
};
use crate::{
    cancel::{self, Cancelled, Cause},
    facade::{lock, Mutex},
};

/// The resources one kind of operation lends the kernel.
pub(crate) trait OpData: Send + 'static {
    /// The operation completed after its future was dropped: release what
    /// the result handed over (an accepted fd).
    fn orphaned(&mut self, _res: i32) {}
}

/// Where a single-shot operation is, from its submission until its result
/// is taken. Every transition but the last happens under the cell's lock:
///
/// - `Pending` → `Done`: the completion arrived while the future waits
///   ([`complete`](Completable::complete)); its waker, if any, is woken.
/// - `Pending` → `Abandoned`: the future was dropped first
///   ([`abandon`](OpCell::abandon)); the owning ring is asked to cancel.
/// - `Abandoned` → `Taken`: the completion arrived; the data goes to
///   [`OpData::orphaned`] (an accepted fd is closed).
/// - `Done` → `Taken`: the future took the result and the data
///   ([`poll_take`](OpCell::poll_take)), or was dropped and the data goes
///   to `orphaned` ([`abandon`](OpCell::abandon)).
/// - `Taken` → `Pending(None)`: [`prepare`](OpCell::prepare) refills a
///   pooled cell, which is unique then, for the next operation.
///
/// The kernel owns the data in `Pending` and `Abandoned`; whoever makes
/// the move to `Taken` owns it after.
enum Lifecycle {
    /// Submitted; the waker of the future's last poll.
    Pending(Option<Waker>),
    /// The future is gone while the kernel still has the operation.
    Abandoned,
    /// Completed with this result; the data waits for the future.
    Done(i32),
    /// The data was handed on: to the future, or to `OpData::orphaned`.
    Taken,
}

/// One operation: its lifecycle and the resources the kernel uses.
pub(crate) struct OpCell<T> {
    /// The ring the op was pushed to on a worker (`None`: posted through
    /// a mailbox, and the [`Op`] holds the ring). Written only while the
    /// cell is unique (`prepare`); a pooled cell keeps it for the next op
    /// on the same ring, which then takes no new reference. A shelf does
    /// not keep one past its ring's driver (`Remote::shelve`), so no cycle
    /// outlives it.
    owner: Option<Arc<Remote>>,
    lifecycle: Mutex<Lifecycle>,
    slot: SlotState,
    timespec: types::Timespec,
    /// Only touched by the kernel until the completion, then by whoever
    /// moved the lifecycle to `Taken` under the lock (see [`Lifecycle`]).
    data: UnsafeCell<Option<T>>,
}

// SAFETY: `data` is reached by one party at a time (see the field doc), and
// `T: Send`; the rest is atomics and a mutex.
unsafe impl<T: OpData> Sync for OpCell<T> {}
// SAFETY: as above.
unsafe impl<T: OpData> Send for OpCell<T> {}

impl<T: OpData> Completable for OpCell<T> {
    fn complete(&self, res: i32, _more: bool) {
        let mut lifecycle = lock(&self.lifecycle);
        self.slot.set_done(true);
        let waker = match std::mem::replace(&mut *lifecycle, Lifecycle::Done(res)) {
            Lifecycle::Pending(w) => w,
            Lifecycle::Abandoned => {
                *lifecycle = Lifecycle::Taken;
                drop(lifecycle);
                // SAFETY: the kernel is done with the data and the future is
                // gone: nobody else can reach it.
                if let Some(data) = unsafe { &mut *self.data.get() } {
                    data.orphaned(res);
                }
                return;
            }
            // Not reached: the table delivers one final completion.
            Lifecycle::Done(_) | Lifecycle::Taken => None,
        };
        drop(lifecycle);
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
    ///
    /// No `Arc::get_mut`: its uniqueness check is a compare-exchange on the
    /// weak count, two of which per op were measurable on the echo server.
    /// A new cell is built whole before it goes into its `Arc`, and a
    /// pooled one is unique by the pool's invariant (see [`recycle`]).
    pub(crate) fn prepare(
        pooled: Option<Arc<OpCell<T>>>,
        owner: Option<&Arc<Remote>>,
        data: T,
        timeout: Option<Duration>,
        waker: Option<&Waker>,
        build: impl FnOnce(&mut T) -> squeue::Entry,
    ) -> (Arc<OpCell<T>>, Submission) {
        let fresh = |kept: Option<Arc<Remote>>| OpCell {
            owner: match (kept, owner) {
                // The same ring as the cell's last op: no new reference.
                (Some(kept), Some(owner)) if Arc::ptr_eq(&kept, owner) => Some(kept),
                (_, owner) => owner.cloned(),
            },
            lifecycle: Mutex::new(Lifecycle::Pending(waker.cloned())),
            slot: SlotState::default(),
            timespec: timespec(timeout.unwrap_or_default()),
            data: UnsafeCell::new(Some(data)),
        };
        let cell = match pooled {
            Some(cell) => {
                // SAFETY: a pooled cell had no other strong reference when
                // it was pooled (`recycle`, after an Acquire fence, or
                // through a shelf's lock), none can have been made since
                // (nobody else holds one to clone), and no `Weak` is ever
                // made of an op cell: this is the only access. The pointer
                // comes from the `Arc`'s own allocation.
                let unique = unsafe { &mut *(Arc::as_ptr(&cell) as *mut OpCell<T>) };
                *unique = fresh(unique.owner.take());
                cell
            }
            None => Arc::new(fresh(None)),
        };
        // SAFETY: the cell is not shared yet (`cell` is its only
        // reference); the entry's addresses point into its (pinned,
        // heap-allocated) data.
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
///
/// When this worker's pool is full the cell goes to another ring's shelf
/// (see `Driver::recycle_cell`).
///
/// A pooled cell is unique, which `OpCell::prepare` relies on to refill it
/// without `Arc::get_mut`: the count is 1 here, and the fence orders the
/// other holders' last accesses (before their Release decrements) before
/// the refill.
fn recycle<T: OpData>(cell: Arc<OpCell<T>>, posted_to: Option<Arc<Remote>>) {
    if Arc::strong_count(&cell) != 1 {
        return;
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    let mut cell = Some(cell);
    crate::io::with_local_uring(|d| {
        let cell = cell.take().expect("put once");
        // The op's ring, when it is another worker's (a reference is
        // taken only then: the pool may pass the cell back to it).
        let foreign = match &posted_to {
            Some(owner) => (!Arc::ptr_eq(owner, d.remote())).then(|| owner.clone()),
            None => cell
                .owner
                .as_ref()
                .filter(|owner| !Arc::ptr_eq(owner, d.remote()))
                .cloned(),
        };
        d.recycle_cell(cell, foreign.as_ref())
    });
}

/// A submitted operation. Resolves to the raw result (negative errno on
/// error) and gives the resources back.
pub(crate) struct Op<T: OpData> {
    cell: Option<Arc<OpCell<T>>>,
    /// The ring of an op posted through a mailbox; one pushed on a worker
    /// finds its ring in its cell (one reference fewer to take and drop
    /// per op).
    posted_to: Option<Arc<Remote>>,
    linked: bool,
}

impl<T: OpData> Op<T> {
    /// Builds the entry from the data at its final address and submits it
    /// to the current worker's ring, or posts it to a ring's mailbox when
    /// polled off the workers. `timeout` links a LINK_TIMEOUT.
    ///
    /// `file` is the socket the entry names (its registration and its fd):
    /// on a worker's ring where the socket has a registered-file slot, the
    /// entry names the slot instead (`fixed.rs`).
    pub(crate) fn submit(
        data: T,
        timeout: Option<Duration>,
        file: Option<(&FixedFile, RawFd)>,
        build: impl FnOnce(&mut T) -> squeue::Entry,
    ) -> Result<Op<T>, (io::Error, T)> {
        Op::submit_waking(data, timeout, file, None, build).map(|(op, _)| op)
    }

    /// [`Op::submit`], with the waker of the task that will await the op
    /// stored in its cell up front when the op goes to this worker's ring
    /// (then `true`). The caller may then return `Pending` without polling
    /// the op: its completion wakes that waker, and it cannot complete
    /// unseen before (this worker has not entered its ring since the push,
    /// and if a full queue made it, the completion found the waker). That
    /// spares a lock and unlock of the cell per operation.
    pub(crate) fn submit_waking(
        data: T,
        timeout: Option<Duration>,
        file: Option<(&FixedFile, RawFd)>,
        waker: Option<&Waker>,
        build: impl FnOnce(&mut T) -> squeue::Entry,
    ) -> Result<(Op<T>, bool), (io::Error, T)> {
        let mut args = Some((data, build));
        // On a worker with a ring: a pooled cell and the push, in one borrow.
        let local = crate::io::with_local_uring(|d| {
            let (data, build) = args.take().expect("submitted once");
            let slot = file.and_then(|(file, fd)| file.slot_on(d, fd));
            let (cell, mut sub) =
                OpCell::prepare(d.take_cell(), Some(d.remote()), data, timeout, waker, build);
            if let Some(slot) = slot {
                sub.entry = use_fixed(sub.entry, slot);
            }
            d.push(sub);
            Op {
                cell: Some(cell),
                posted_to: None,
                linked: timeout.is_some(),
            }
        });
        if let Some(op) = local {
            return Ok((op, waker.is_some()));
        }
        let (data, build) = args.take().expect("not submitted yet");
        let (cell, sub) = OpCell::prepare(None, None, data, timeout, None, build);
        let owner = match crate::io::submit(sub) {
            Ok(owner) => owner,
            Err(err) => {
                // Never submitted: the kernel never saw the data.
                // SAFETY: the submission was dropped unsubmitted; only this
                // function reaches the cell.
                let data = unsafe { &mut *cell.data.get() }.take();
                return Err((err, data.expect("stored above")));
            }
        };
        Ok((
            Op {
                cell: Some(cell),
                posted_to: Some(owner),
                linked: timeout.is_some(),
            },
            false,
        ))
    }

    /// The ring that has the op.
    fn owner<'a>(&'a self, cell: &'a OpCell<T>) -> &'a Arc<Remote> {
        self.posted_to
            .as_ref()
            .or(cell.owner.as_ref())
            .expect("an op is pushed on a worker or posted to a ring")
    }

    /// True if this op was linked to a kernel timeout.
    pub(crate) fn is_linked(&self) -> bool {
        self.linked
    }

    /// The result and the resources once complete.
    pub(crate) fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<(i32, T)> {
        let cell = self.cell.as_ref().expect("Op polled after completion");
        let ready = std::task::ready!(cell.poll_take(cx));
        recycle(
            self.cell.take().expect("checked above"),
            self.posted_to.take(),
        );
        Poll::Ready(ready)
    }
}

impl<T: OpData> OpCell<T> {
    /// The future's side of a poll: stores the waker while pending, else
    /// takes the result and the data (once).
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<(i32, T)> {
        let mut lifecycle = lock(&self.lifecycle);
        match &mut *lifecycle {
            Lifecycle::Pending(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Lifecycle::Done(res) => {
                let res = *res;
                *lifecycle = Lifecycle::Taken;
                drop(lifecycle);
                // SAFETY: `Done` seen under the lock and switched to `Taken`:
                // the kernel is finished with the data and no one else takes it.
                let data = unsafe { &mut *self.data.get() }.take();
                Poll::Ready((res, data.expect("taken once")))
            }
            Lifecycle::Abandoned => unreachable!("Op polled after it was dropped"),
            Lifecycle::Taken => unreachable!("Op polled after completion"),
        }
    }

    /// The future is gone. True if the operation is still pending: the
    /// caller has the owner cancel it, and the cell (with its data) stays
    /// in the owner's table until the completion, which hands the data to
    /// `OpData::orphaned`. A completed, untaken result goes there now.
    pub(crate) fn abandon(&self) -> bool {
        let mut lifecycle = lock(&self.lifecycle);
        match *lifecycle {
            Lifecycle::Pending(_) => {
                let pending = std::mem::replace(&mut *lifecycle, Lifecycle::Abandoned);
                drop(lifecycle);
                // The waker goes outside the lock: it may hold the last
                // reference to a task.
                drop(pending);
                true
            }
            Lifecycle::Abandoned => true,
            Lifecycle::Done(res) => {
                *lifecycle = Lifecycle::Taken;
                drop(lifecycle);
                // SAFETY: complete and not taken: the data is ours.
                if let Some(data) = unsafe { &mut *self.data.get() } {
                    data.orphaned(res);
                }
                false
            }
            Lifecycle::Taken => false,
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
            crate::io::cancel(self.owner(&cell), cell.clone());
        }
    }
}

impl<T: OpData> Op<T> {
    /// Asks the kernel to cancel the operation while this future keeps
    /// waiting for its completion (so the buffer comes back to the caller).
    pub(crate) fn cancel_in_place(&self) {
        if let Some(cell) = &self.cell {
            if !cell.is_done() {
                crate::io::cancel(self.owner(cell), cell.clone());
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
