//! Single-shot operations: one submission, one completion.
//!
//! An operation is an [`OpCell`] behind an `Arc`, shared by the [`Op`]
//! future that awaits it and by the owning ring's table until its
//! completion. The cell holds the resources the kernel uses (the buffer, a
//! `sockaddr_storage`, a `msghdr`, the link timeout's timespec) at a fixed
//! heap address, and its lifecycle in one atomic word (see [`OpCell`]):
//! pending, done, abandoned (the future is gone; the kernel still has the
//! op). A dropped future leaves the cell to the ring, which cancels the op
//! and hands the data to [`OpData::orphaned`] at the completion, so
//! nothing is freed while the kernel can write it. Cells of finished ops
//! go back to the worker's pool (`recycle`) for the next op of their type.
//!
//! [`Cancellable`] makes an `Op` a weft await point (coop budget, the
//! scope's cancellation, the kernel link timeout for its deadline);
//! [`prelude`] and [`check`] are what every op does before and after.

use std::{
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
    facade::{
        atomic::{
            AtomicI32, AtomicU32,
            Ordering::{AcqRel, Acquire, Relaxed},
        },
        UnsafeCell,
    },
};

/// The resources one kind of operation lends the kernel.
pub(crate) trait OpData: Send + 'static {
    /// The operation completed after its future was dropped: release what
    /// the result handed over (an accepted fd).
    fn orphaned(&mut self, _res: i32) {}
}

/// `OpCell::state`: the completion arrived (`res` holds its result).
const DONE: u32 = 1;
/// `OpCell::state`: the future is gone.
const ABANDONED: u32 = 2;
/// `OpCell::state`: the future is replacing the waker.
const REGISTERING: u32 = 4;

/// One operation: its lifecycle and the resources the kernel uses.
///
/// # Lifecycle
/// One word, no lock (a lock and an unlock at the completion and again at
/// the poll that takes the result were four locked instructions per op;
/// now the completion makes one and that poll none):
/// - **Completion** (the ring's owner): stores `res`, then
///   `fetch_or(DONE)`. If the future was gone (`ABANDONED`), the data goes
///   to `OpData::orphaned`. Else, unless the future is mid-registration
///   (`REGISTERING`: it sees `DONE` as it finishes and returns the
///   result), the completion takes the waker and wakes it.
/// - **Poll** (the future): `DONE` seen (Acquire) → takes `res` and the
///   data. Else it sets `REGISTERING` with a CAS from the state it saw
///   (failing only if `DONE` came meanwhile), replaces the waker unless
///   it wakes the same task, and clears `REGISTERING`; if that shows
///   `DONE`, the completion left the waker to it and it returns the
///   result. The waker is written only under `REGISTERING` or while the
///   cell is unique (`prepare`).
/// - **Drop of the future**: `fetch_or(ABANDONED)`. If it was not done,
///   the waker is the future's to drop (the completion will see
///   `ABANDONED` and leave it) and the data the completion's; if it was
///   done, the completion already took the waker, and the data is the
///   future's to hand to `orphaned`.
///
/// loom: `loom-tests/tests/io_op.rs`.
pub(crate) struct OpCell<T> {
    /// The ring the op was pushed to on a worker (`None`: posted through
    /// a mailbox, and the [`Op`] holds the ring). Written only while the
    /// cell is unique (`prepare`); a pooled cell keeps it for the next op
    /// on the same ring, which then takes no new reference. A shelf does
    /// not keep one past its ring's driver (`Remote::shelve`), so no cycle
    /// outlives it.
    owner: Option<Arc<Remote>>,
    /// [`DONE`], [`ABANDONED`], [`REGISTERING`] (see the struct docs).
    state: AtomicU32,
    /// The result, written before `DONE` is set (Release), read after it
    /// is seen (Acquire).
    res: AtomicI32,
    /// The waker of the future's last poll (see the struct docs for who
    /// may touch it when).
    waker: UnsafeCell<Option<Waker>>,
    slot: SlotState,
    timespec: types::Timespec,
    /// Only touched by the kernel until the completion, then by whoever
    /// owns the result: the future that sees `DONE`, or, once the future
    /// is gone, whichever of the completion and the future's drop comes
    /// second (and hands it to `OpData::orphaned`).
    data: UnsafeCell<Option<T>>,
}

// SAFETY: `data` and `waker` are reached by one party at a time (see the
// lifecycle), `T: Send` and `Waker: Send + Sync`; the rest is atomics,
// plain fields written only while the cell is unique, and an `Arc`.
unsafe impl<T: OpData> Sync for OpCell<T> {}
// SAFETY: as above.
unsafe impl<T: OpData> Send for OpCell<T> {}

impl<T: OpData> Completable for OpCell<T> {
    fn complete(&self, res: i32, _more: bool) {
        self.slot.set_done(true);
        self.res.store(res, Relaxed);
        let prev = self.state.fetch_or(DONE, AcqRel);
        if prev & ABANDONED != 0 {
            // SAFETY: the future is gone and the kernel is done: the data
            // is ours alone (see the lifecycle).
            if let Some(data) = self.data.with_mut(|d| unsafe { &mut *d }.as_mut()) {
                data.orphaned(res);
            }
            return;
        }
        if prev & REGISTERING != 0 {
            // The future is polling: it sees DONE as it finishes.
            return;
        }
        // SAFETY: with DONE set and no registration under way, the waker
        // is ours (the future no longer writes it).
        if let Some(w) = self.waker.with_mut(|w| unsafe { &mut *w }.take()) {
            w.wake();
        }
    }

    fn slot(&self) -> &SlotState {
        &self.slot
    }

    /// The ring's reference, after the completion: the future's
    /// `recycle` pools the cell when it takes the result after the ring
    /// let go, but a task polled on another worker can take it while the
    /// ring still holds the cell (between the wake and the drop here),
    /// and then the cell was freed and the next op allocated (the skewed
    /// echo's allocations, with its tasks moving between workers). So
    /// whichever of the two lets go last pools it: here, when the count
    /// shows the future gone and its data taken (a result never taken,
    /// an abandoned op's buffer, is freed with the cell, not kept in a
    /// pool). The count and fence are `recycle`'s (the same argument:
    /// both holders check after their last access, and a count of 1
    /// means the other's Release decrement came first).
    fn into_pooled(self: Arc<Self>) -> Option<super::driver::PooledCell> {
        if Arc::strong_count(&self) != 1 {
            return None;
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        // SAFETY: the count is 1 and no `Weak` is made of an op cell:
        // nobody else can reach the data.
        let taken = self.data.with(|d| unsafe { &*d }.is_none());
        taken.then_some(self as super::driver::PooledCell)
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
            state: AtomicU32::new(0),
            res: AtomicI32::new(0),
            waker: UnsafeCell::new(waker.cloned()),
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
        let entry = cell
            .data
            .with_mut(|d| build(unsafe { &mut *d }.as_mut().expect("just stored")));
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
        let foreign = match posted_to {
            Some(owner) => (!Arc::ptr_eq(&owner, d.remote())).then_some(owner),
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
                let data = cell.data.with_mut(|d| unsafe { &mut *d }.take());
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

    /// True once the completion arrived (a poll would return it at once
    /// and register no waker).
    pub(crate) fn is_complete(&self) -> bool {
        self.cell.as_ref().is_none_or(|cell| cell.is_complete())
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
    /// takes the result and the data (once). See the lifecycle.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<(i32, T)> {
        let seen = self.state.load(Acquire);
        if seen & DONE != 0 {
            return Poll::Ready(self.take_result());
        }
        debug_assert_eq!(seen, 0, "polled after the future was dropped");
        if self
            .state
            .compare_exchange(seen, seen | REGISTERING, Acquire, Acquire)
            .is_err()
        {
            // Only the completion changes the word meanwhile.
            return Poll::Ready(self.take_result());
        }
        self.waker.with_mut(|w| {
            // SAFETY: REGISTERING is set: the waker is ours.
            let w = unsafe { &mut *w };
            match w {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        });
        let prev = self.state.fetch_and(!REGISTERING, AcqRel);
        if prev & DONE != 0 {
            // The completion came during the registration and left the
            // waker to us.
            // SAFETY: as above; the completion does not touch it.
            drop(self.waker.with_mut(|w| unsafe { &mut *w }.take()));
            return Poll::Ready(self.take_result());
        }
        Poll::Pending
    }

    /// True once the completion arrived: a poll then takes the result
    /// without registering a waker (Acquire, as the poll's own look).
    pub(crate) fn is_complete(&self) -> bool {
        self.state.load(Acquire) & DONE != 0
    }

    /// `res` and the data, once `DONE` was seen (Acquire).
    fn take_result(&self) -> (i32, T) {
        let res = self.res.load(Relaxed);
        // SAFETY: DONE: the kernel is finished with the data, and only the
        // future (this call) takes it.
        let data = self.data.with_mut(|d| unsafe { &mut *d }.take());
        (res, data.expect("taken once"))
    }

    /// The future is gone. True if the operation is still pending: the
    /// caller has the owner cancel it, and the cell (with its data) stays
    /// in the owner's table until the completion, which hands the data to
    /// `OpData::orphaned`. A completed, untaken result goes there now.
    pub(crate) fn abandon(&self) -> bool {
        let prev = self.state.fetch_or(ABANDONED, AcqRel);
        debug_assert_eq!(prev & (ABANDONED | REGISTERING), 0);
        if prev & DONE == 0 {
            // SAFETY: not done: the completion will see ABANDONED and
            // leave the waker, which is ours to drop (it may hold the last
            // reference to a task).
            drop(self.waker.with_mut(|w| unsafe { &mut *w }.take()));
            return true;
        }
        let res = self.res.load(Relaxed);
        // SAFETY: done and not taken (a taken result leaves the future
        // without its cell): the data is ours.
        if let Some(data) = self.data.with_mut(|d| unsafe { &mut *d }.as_mut()) {
            data.orphaned(res);
        }
        false
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

    /// See [`Op::is_complete`].
    pub(crate) fn is_complete(&self) -> bool {
        self.op.is_complete()
    }

    /// Waits for the completion without the scope's cancellation
    /// cancelling the op (the coop budget still applies: a loop of waits
    /// that never pend must yield). For an op whose result the task
    /// already promised (a send a compat write queued and reported
    /// written): a later wait for it in a cancelled scope must leave it
    /// to go on; the caller checks its scope itself.
    pub(crate) fn poll_uncancelled(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(Result<i32, Cancelled>, T)> {
        let restore = std::task::ready!(crate::coop::poll_proceed(cx));
        let Poll::Ready((res, data)) = self.op.poll_complete(cx) else {
            crate::runtime::dump::awaiting(
                cx.waker(),
                crate::runtime::dump::Awaiting::Io(self.kind),
            );
            return Poll::Pending;
        };
        restore.made_progress();
        Poll::Ready((Ok(res), data))
    }

    /// The result of a completed op, taken without waiting (no budget, no
    /// waker); `None` while it is in flight.
    pub(crate) fn take_completed(&mut self) -> Option<(Result<i32, Cancelled>, T)> {
        if !self.op.is_complete() {
            return None;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.op.poll_complete(&mut cx) {
            Poll::Ready((res, data)) => Some((Ok(res), data)),
            Poll::Pending => unreachable!("a completed op is ready"),
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
