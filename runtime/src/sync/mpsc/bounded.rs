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
        atomic::{AtomicUsize, Ordering::*},
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
        }
    }

    pub(super) fn bound(&self) -> usize {
        self.bound
    }

    /// Free permits now.
    pub(super) fn available(&self) -> usize {
        self.state.load(Acquire) >> PERMIT_SHIFT
    }

    pub(super) fn try_acquire(&self) -> Result<(), TryAcquireError> {
        let mut state = self.state.load(Acquire);
        loop {
            if state & CLOSED != 0 {
                return Err(TryAcquireError::Closed);
            }
            if state < ONE {
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

    /// Gives one permit back: to the first queued sender if any.
    pub(super) fn release(&self) {
        let mut state = self.state.load(Relaxed);
        while state & WAITERS == 0 {
            // Release: our use of the permit happens before its next use.
            match self
                .state
                .compare_exchange_weak(state, state + ONE, AcqRel, Relaxed)
            {
                Ok(_) => return,
                Err(now) => state = now,
            }
        }
        self.release_to_waiter();
    }

    #[cold]
    fn release_to_waiter(&self) {
        let mut waiters = lock(&self.waiters);
        let Some(node) = waiters.pop_front() else {
            // The queue emptied meanwhile: a free permit again.
            self.state
                .fetch_update(AcqRel, Relaxed, |s| Some((s & !WAITERS) + ONE))
                .ok();
            return;
        };
        if waiters.is_empty() {
            self.state.fetch_and(!WAITERS, Release);
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
            self.state.fetch_and(!WAITERS, Release);
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
                self.sem.state.fetch_and(!WAITERS, Release);
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
        let mut state = sem.state.fetch_or(WAITERS, AcqRel) | WAITERS;
        loop {
            if state & CLOSED != 0 {
                if waiters.is_empty() {
                    sem.state.fetch_and(!WAITERS, Release);
                }
                return Poll::Ready(Err(AcquireError::Closed));
            }
            if state < ONE {
                break;
            }
            match sem
                .state
                .compare_exchange_weak(state, state - ONE, AcqRel, Acquire)
            {
                Ok(_) => {
                    if waiters.is_empty() {
                        sem.state.fetch_and(!WAITERS, Release);
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
