//! A bounded channel's capacity: a counting semaphore, one permit per
//! queued message, with a FIFO of waiting senders.
//!
//! # Protocol
//! - `state` holds the free permits (`state >> PERMIT_SHIFT`) and two
//!   flags. Taking a free permit is a CAS; so is giving one back while
//!   [`WAITERS`] is clear.
//! - [`WAITERS`] is set, under the `waiters` lock, by a sender about to
//!   queue; it is cleared, under the lock, when the queue empties. While it
//!   is set, returned permits go to the queued senders, front first (under
//!   the lock), so free permits stay zero while anyone waits: a sender never
//!   overtakes a queued one except in the instant between setting the flag
//!   and queueing, where it takes a permit that was free anyway.
//! - A sender sets [`WAITERS`] *before* its last try for a free permit, so a
//!   permit given back concurrently is either seen by that try or routed to
//!   the lock (the giver's CAS fails on the changed word), never lost.
//! - A queued sender's node lives in its [`Acquire`] future. It is given a
//!   permit (`Granted`) or told the channel closed by whoever pops it, under
//!   the lock. A future that leaves (cancelled or dropped) unlinks itself;
//!   if it was already granted a permit, it gives it back, which hands it to
//!   the next queued sender.
//! - [`CLOSED`] (the receiver is gone or closed): no permit is taken any
//!   more, and every queued sender is told so.
//!
//! # Permits the receiver gives back
//! Every send writes `state`; so did every receive, and with the sender
//! and the receiver on two workers the line crossed between them twice
//! per message (mpsc 1→1 took 105–110 ms for 1 M messages, tokio 90–100,
//! tokio's channel on weft 65). The receiver now returns its permits to
//! `returned`, a counter on its own line, and folds them into `state`
//! [`FOLD_BATCH`] at a time. Nothing observable changes:
//! - A sender that finds no free permit in `state` takes every permit in
//!   `returned` (a swap on the receiver's line: only when `state` is
//!   empty), keeps one and adds the rest to `state`, so a returned permit
//!   is as free as one in `state`, and `available` counts both. Taking
//!   one per send, each send by a sender on the other worker pulled the
//!   receiver's line over (4→1 with the tasks on both workers: 135 →
//!   121 ms in bulk).
//! - Fairness and wakes: a sender about to queue sets `queued` (on the
//!   receiver's line, written only when the queue starts or empties), then
//!   looks at `returned`; the receiver adds to `returned`, then reads
//!   `queued`, and folds at once (handing the permits to the queue) if it
//!   is set. Both writes and both reads are SeqCst, so at least one side
//!   sees the other: a
//!   permit is never left in `returned` while a sender waits. Only the
//!   sender that starts the queue takes from `returned` on its way in;
//!   one arriving behind queued senders does not overtake them.

use std::{
    cell::UnsafeCell as StdUnsafeCell,
    future::Future,
    marker::PhantomPinned,
    pin::Pin,
    ptr::NonNull,
    task::{Context, Poll},
};

use crate::{
    cancel::Cancelled,
    coop,
    facade::{
        atomic::{AtomicBool, AtomicUsize, Ordering::*},
        lock, Mutex,
    },
    sync::{
        channel_wait::{before_wait, scope_cancelled},
        wait_list::{WaitList, Waiter},
    },
};

/// Someone is queued: given-back permits go through the lock.
const WAITERS: usize = 0b01;
/// No more permits are handed out.
const CLOSED: usize = 0b10;
const PERMIT_SHIFT: u32 = 2;
const ONE: usize = 1 << PERMIT_SHIFT;
/// Permits the receiver gathers in `returned` before it folds them into
/// `state` (fewer when a sender is queued: then at once).
const FOLD_BATCH: usize = 32;

/// Under loom only, a SeqCst fence where the `queued` handshake puts a
/// SeqCst write before a SeqCst read. In the memory model those accesses
/// alone order the two sides (all four are in the one SeqCst order; on
/// x86 the writes are locked instructions already), but loom does not
/// give SeqCst accesses their total order (a store-then-load Dekker pair
/// fails under it: loom issue #180) and would report a stranded permit
/// that cannot happen; its SeqCst fences are modelled. A fence in the real
/// build would cost every receive a second locked instruction (mpsc 4→1:
/// 132 → 150 ms).
#[inline(always)]
fn loom_sc_fence() {
    #[cfg(weft_loom)]
    crate::facade::atomic::fence(SeqCst);
}

/// What a queued sender was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    Waiting,
    Granted,
    Closed,
}

/// Why no permit was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AcquireError {
    Closed,
    Cancelled(Cancelled),
}

/// Why `try_acquire` took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TryAcquireError {
    Closed,
    NoPermits,
}

/// On a cache line pair of its own: every send and every receive writes
/// `state`, and the channel's fields that senders only read (the
/// receiver's wake state, the close flag) would otherwise be invalidated by
/// each of those writes (mpsc 4→1 took 90 ms instead of 70 with them on one
/// line).
#[repr(align(128))]
pub(super) struct Semaphore {
    state: AtomicUsize,
    waiters: Mutex<WaitList<Grant>>,
    bound: usize,
    /// The receiver's side, on a line (pair) of its own.
    rx: Returned,
}

/// Permits the receiver gave back and has not folded into `state` yet, and
/// whether a sender is queued (see the module doc).
#[repr(align(128))]
struct Returned {
    /// Permits; written by the receiver on every receive, by senders only
    /// when `state` has none.
    count: AtomicUsize,
    /// Senders are queued (set by the first, cleared when the queue
    /// empties, both under the `waiters` lock).
    queued: AtomicBool,
}

impl Semaphore {
    pub(super) fn new(permits: usize) -> Semaphore {
        assert!(
            permits > 0 && permits <= usize::MAX >> PERMIT_SHIFT,
            "a bounded channel's capacity is at least 1 and at most usize::MAX / 4"
        );
        Semaphore {
            state: AtomicUsize::new(permits << PERMIT_SHIFT),
            waiters: Mutex::new(WaitList::new()),
            bound: permits,
            rx: Returned {
                count: AtomicUsize::new(0),
                queued: AtomicBool::new(false),
            },
        }
    }

    pub(super) fn bound(&self) -> usize {
        self.bound
    }

    /// Free permits now (in `state` or returned by the receiver).
    pub(super) fn available(&self) -> usize {
        (self.state.load(Acquire) >> PERMIT_SHIFT) + self.rx.count.load(Acquire)
    }

    pub(super) fn try_acquire(&self) -> Result<(), TryAcquireError> {
        let mut state = self.state.load(Acquire);
        loop {
            if state & CLOSED != 0 {
                return Err(TryAcquireError::Closed);
            }
            if state < ONE {
                // Queued senders come first: what the receiver returns
                // while they wait is folded to them.
                if state & WAITERS == 0 && self.take_returned() {
                    return Ok(());
                }
                return Err(TryAcquireError::NoPermits);
            }
            // Acquire: the permit's previous holder's effects (the popped
            // slot) happen before our use of it.
            match self
                .state
                .compare_exchange_weak(state, state - ONE, AcqRel, Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => state = now,
            }
        }
    }

    /// Takes one permit the receiver returned and has not folded yet, and
    /// moves the others it returned into `state` (see the module doc).
    fn take_returned(&self) -> bool {
        let Some(n) = self.take_all_returned() else {
            return false;
        };
        if n > 1 {
            self.add(n - 1);
        }
        true
    }

    /// Takes every permit in `returned`, if it holds any.
    fn take_all_returned(&self) -> Option<usize> {
        // SeqCst: the sender's side of the `queued` handshake (a look
        // after its store of `queued`); the swap also acquires the
        // receiver's use of the slots. The load first keeps an empty
        // counter's line shared.
        if self.rx.count.load(SeqCst) == 0 {
            return None;
        }
        match self.rx.count.swap(0, SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// The receiver took a message out: its permit goes to `returned`, and
    /// into `state` [`FOLD_BATCH`] at a time, or at once while a sender is
    /// queued.
    pub(super) fn release_received(&self) {
        // SeqCst add, then SeqCst look at `queued` (paired with the
        // sender's SeqCst store of `queued` and look at `returned`): a
        // sender queueing meanwhile either sees this permit or is seen
        // here. The add also releases our use of the slot.
        let returned = self.rx.count.fetch_add(1, SeqCst) + 1;
        loom_sc_fence();
        if returned >= FOLD_BATCH || self.rx.queued.load(SeqCst) {
            self.fold_returned();
        }
    }

    /// Moves every returned permit into `state` (to queued senders first).
    fn fold_returned(&self) {
        // AcqRel: takes over the permits with what happened before their
        // return, and passes them on with the Release of `add`.
        let n = self.rx.count.swap(0, AcqRel);
        if n > 0 {
            self.add(n);
        }
    }

    /// Gives one permit back: to the first queued sender if any.
    pub(super) fn release(&self) {
        self.add(1);
    }

    /// Gives `n` permits back: to queued senders first, front first.
    fn add(&self, n: usize) {
        let mut state = self.state.load(Relaxed);
        while state & WAITERS == 0 {
            // Release: our use of the permits happens before their next use.
            match self
                .state
                .compare_exchange_weak(state, state + n * ONE, AcqRel, Relaxed)
            {
                Ok(_) => return,
                Err(now) => state = now,
            }
        }
        for _ in 0..n {
            self.release_to_waiter();
        }
    }

    #[cold]
    fn release_to_waiter(&self) {
        let mut waiters = lock(&self.waiters);
        let Some(node) = waiters.pop_front() else {
            // The queue emptied meanwhile: a free permit again.
            self.rx.queued.store(false, SeqCst);
            self.state
                .fetch_update(AcqRel, Relaxed, |s| Some((s & !WAITERS) + ONE))
                .ok();
            return;
        };
        if waiters.is_empty() {
            self.queue_emptied();
        }
        // SAFETY: popped under the lock; its future frees it only after
        // taking the lock (wait_list protocol).
        let waiter = unsafe { &mut *node.as_ptr() };
        waiter.value = Grant::Granted;
        let waker = waiter.waker.take();
        drop(waiters);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The last queued sender left (under the `waiters` lock).
    fn queue_emptied(&self) {
        self.rx.queued.store(false, SeqCst);
        self.state.fetch_and(!WAITERS, Release);
    }

    /// Closes: no permit is handed out any more; queued senders are told.
    pub(super) fn close(&self) {
        let mut wakers = Vec::new();
        {
            let mut waiters = lock(&self.waiters);
            self.state.fetch_or(CLOSED, Release);
            waiters.drain(|w| {
                w.value = Grant::Closed;
                if let Some(waker) = w.waker.take() {
                    wakers.push(waker);
                }
            });
            self.queue_emptied();
        }
        for waker in wakers {
            waker.wake();
        }
    }

    /// Waits for a permit.
    pub(super) fn acquire(&self) -> Acquire<'_> {
        Acquire {
            sem: self,
            node: StdUnsafeCell::new(Waiter::new(Grant::Waiting)),
            queued: false,
            _pin: PhantomPinned,
        }
    }
}

/// The future of [`Semaphore::acquire`]. Its node is linked into the
/// semaphore's queue while `queued`.
pub(super) struct Acquire<'a> {
    sem: &'a Semaphore,
    /// Touched only under the semaphore's lock once linked.
    node: StdUnsafeCell<Waiter<Grant>>,
    /// Linked, or popped with an outcome not yet read.
    queued: bool,
    _pin: PhantomPinned,
}

// SAFETY: the node is only touched under the semaphore's lock.
unsafe impl Send for Acquire<'_> {}
// SAFETY: `&Acquire` gives access to nothing.
unsafe impl Sync for Acquire<'_> {}

impl Acquire<'_> {
    fn node_ptr(&self) -> NonNull<Waiter<Grant>> {
        // SAFETY: a pointer to our own field is never null.
        unsafe { NonNull::new_unchecked(self.node.get()) }
    }

    /// Leaves the queue; a permit already granted goes to the next sender.
    fn leave(&mut self) {
        if !self.queued {
            return;
        }
        self.queued = false;
        let mut waiters = lock(&self.sem.waiters);
        // SAFETY: our node, pinned, under the lock.
        if unsafe { waiters.remove(self.node_ptr()) } {
            if waiters.is_empty() {
                self.sem.queue_emptied();
            }
            return;
        }
        // SAFETY: popped (no longer linked) and we hold the lock.
        let grant = unsafe { (*self.node.get()).value };
        drop(waiters);
        if grant == Grant::Granted {
            self.sem.release();
        }
    }

    /// Queues, unless a permit is free or the semaphore is closed.
    fn enqueue(&mut self, cx: &Context<'_>) -> Poll<Result<(), AcquireError>> {
        let sem = self.sem;
        let mut waiters = lock(&sem.waiters);
        // SeqCst store, then the SeqCst look at `returned` below (paired
        // with `release_received`): the receiver sees `queued`, or we see
        // the permit it returned.
        sem.rx.queued.store(true, SeqCst);
        loom_sc_fence();
        let mut state = sem.state.fetch_or(WAITERS, AcqRel) | WAITERS;
        loop {
            if state & CLOSED != 0 {
                if waiters.is_empty() {
                    sem.queue_emptied();
                }
                return Poll::Ready(Err(AcquireError::Closed));
            }
            if state < ONE {
                // The first in the queue takes what the receiver returned
                // (later ones leave it to the senders ahead of them, to
                // whom the receiver folds it).
                if waiters.is_empty() {
                    if let Some(n) = sem.take_all_returned() {
                        sem.queue_emptied();
                        // WAITERS is clear and only set under the lock we
                        // hold: `add` puts the rest in `state` with a CAS.
                        if n > 1 {
                            sem.add(n - 1);
                        }
                        return Poll::Ready(Ok(()));
                    }
                }
                break;
            }
            match sem
                .state
                .compare_exchange_weak(state, state - ONE, AcqRel, Acquire)
            {
                Ok(_) => {
                    if waiters.is_empty() {
                        sem.queue_emptied();
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(now) => state = now,
            }
        }
        // SAFETY: under the lock, our unlinked node; the future is pinned
        // (we are in its poll) and unlinks it before it goes away.
        unsafe {
            let node = &mut *self.node.get();
            node.value = Grant::Waiting;
            node.set_waker(cx.waker());
            waiters.push_back(self.node_ptr());
        }
        self.queued = true;
        crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::MpscSend);
        Poll::Pending
    }
}

impl Future for Acquire<'_> {
    type Output = Result<(), AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the node is never moved out; it is only reached through
        // `self.node` while pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(c) = scope_cancelled() {
            this.leave();
            restore.made_progress();
            return Poll::Ready(Err(AcquireError::Cancelled(c)));
        }
        if this.queued {
            let waiters = lock(&this.sem.waiters);
            // SAFETY: our node, under the lock.
            let node = unsafe { &mut *this.node.get() };
            match node.value {
                Grant::Waiting => {
                    node.set_waker(cx.waker());
                    crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::MpscSend);
                    return Poll::Pending;
                }
                grant => {
                    drop(waiters);
                    this.queued = false;
                    restore.made_progress();
                    return Poll::Ready(match grant {
                        Grant::Granted => Ok(()),
                        _ => Err(AcquireError::Closed),
                    });
                }
            }
        }
        match this.sem.try_acquire() {
            Ok(()) => {
                restore.made_progress();
                return Poll::Ready(Ok(()));
            }
            Err(TryAcquireError::Closed) => {
                restore.made_progress();
                return Poll::Ready(Err(AcquireError::Closed));
            }
            Err(TryAcquireError::NoPermits) => {}
        }
        if let Some(c) = before_wait() {
            restore.made_progress();
            return Poll::Ready(Err(AcquireError::Cancelled(c)));
        }
        let polled = this.enqueue(cx);
        if polled.is_ready() {
            restore.made_progress();
        }
        polled
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}
