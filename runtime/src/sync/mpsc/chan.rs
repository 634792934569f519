//! The channel shared by senders and the receiver: the queue, the
//! receiver's waker, the sender count, and the close state.
//!
//! # Waking the receiver
//! `rx_state` says whether the receiver's waker (in `rx_waker`) is armed:
//! - [`IDLE`]: not armed. The receiver is running, or will look at the queue
//!   before it sleeps. The receiver writes `rx_waker` only from `IDLE` or
//!   [`ARMED`], through [`REGISTERING`].
//! - [`ARMED`]: the waker is stored; the next notifier takes it.
//! - [`WAKING`]: a notifier won the CAS from `ARMED` and is reading the
//!   waker; it stores `IDLE` right after. A receiver that finds `WAKING`
//!   waits for that store before it touches the slot.
//!
//! A sender publishes (a slot's `ready`, the sender count, the close flag),
//! then `fence(SeqCst)`, then reads `rx_state`; the receiver arms (a CAS to
//! `ARMED`), then `fence(SeqCst)`, then looks at the queue and the flags.
//! Either the sender sees `ARMED` or the receiver sees what was published
//! (the two fences are ordered one way or the other). A sender that sees
//! the receiver not armed pays one fence and one load, and writes nothing
//! shared.

use std::task::{Context, Poll, Waker};

use super::{
    bounded::Semaphore,
    list::{self, Head, Pop, Tail},
};
use crate::{
    cancel::Cancelled,
    coop,
    facade::{
        atomic::{fence, AtomicBool, AtomicUsize, Ordering::*},
        lock, Mutex, UnsafeCell,
    },
    sync::{
        channel_wait::{before_wait, scope_cancelled, wake_all, WaitNode},
        wait_list::WaitList,
    },
};

/// The receiver's waker is not armed.
const IDLE: usize = 0;
/// The receiver is writing its waker.
const REGISTERING: usize = 1;
/// The waker is stored; the next notifier takes it.
const ARMED: usize = 2;
/// A notifier is reading the waker.
const WAKING: usize = 3;

/// What the receiver returns permits to: a [`Semaphore`] for bounded
/// channels, nothing for unbounded ones.
pub(super) trait Capacity: Send + Sync {
    /// A message left the queue (the receiver calls it).
    fn release(&self);
    /// The receiver closed.
    fn close(&self);
}

impl Capacity for Semaphore {
    fn release(&self) {
        Semaphore::release_received(self)
    }
    fn close(&self) {
        Semaphore::close(self)
    }
}

/// Unbounded: no permits.
#[derive(Debug)]
pub(super) struct Unbounded;

impl Capacity for Unbounded {
    fn release(&self) {}
    fn close(&self) {}
}

/// Why a receive returned nothing.
pub(super) enum RecvFail {
    Closed,
    Cancelled(Cancelled),
}

pub(super) struct Chan<T, S> {
    tail: Tail<T>,
    /// The receiver's end of the queue; only the receiver touches it (and
    /// the channel's drop, when nothing else is left).
    head: UnsafeCell<Head<T>>,
    pub(super) capacity: S,
    rx_state: AtomicUsize,
    rx_waker: UnsafeCell<Option<Waker>>,
    /// Live senders (and owned permits). Zero: no more messages come.
    tx_count: AtomicUsize,
    /// The receiver closed or was dropped: sends fail.
    rx_closed: AtomicBool,
    /// Senders waiting in `closed()`.
    closed_waiters: Mutex<WaitList<()>>,
}

// SAFETY: values cross threads (`T: Send`); the head and the waker cell
// follow the protocols in this module and `list`.
unsafe impl<T: Send, S: Send> Send for Chan<T, S> {}
// SAFETY: as above; shared access goes through atomics and those protocols.
unsafe impl<T: Send, S: Sync> Sync for Chan<T, S> {}

impl<T, S: Capacity> Chan<T, S> {
    pub(super) fn new(capacity: S) -> Chan<T, S> {
        let (tail, head) = list::list();
        Chan {
            tail,
            head: UnsafeCell::new(head),
            capacity,
            rx_state: AtomicUsize::new(IDLE),
            rx_waker: UnsafeCell::new(None),
            tx_count: AtomicUsize::new(1),
            rx_closed: AtomicBool::new(false),
            closed_waiters: Mutex::new(WaitList::new()),
        }
    }

    /// Queues `value` (capacity already accounted for) and wakes the
    /// receiver; `Err(value)` once the receiver closed.
    pub(super) fn push(&self, value: T) -> Result<(), T> {
        self.tail.push(value)?;
        self.notify_rx();
        Ok(())
    }

    pub(super) fn is_rx_closed(&self) -> bool {
        self.rx_closed.load(Acquire)
    }

    pub(super) fn add_sender(&self) {
        // Relaxed: a new sender is made from a live one.
        self.tx_count.fetch_add(1, Relaxed);
    }

    /// A new sender from a weak one: false if every sender is gone (the
    /// stream has ended and stays ended).
    pub(super) fn try_add_sender(&self) -> bool {
        let mut count = self.tx_count.load(Relaxed);
        loop {
            if count == 0 {
                return false;
            }
            match self
                .tx_count
                .compare_exchange_weak(count, count + 1, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => count = now,
            }
        }
    }

    /// A sender went; the last one wakes the receiver to see the end.
    pub(super) fn drop_sender(&self) {
        // AcqRel: every send of every sender happens before the receiver's
        // Acquire load that sees zero.
        if self.tx_count.fetch_sub(1, AcqRel) == 1 {
            self.notify_rx();
        }
    }

    pub(super) fn sender_count(&self) -> usize {
        self.tx_count.load(Acquire)
    }

    /// After publishing something the receiver waits for.
    fn notify_rx(&self) {
        // SeqCst fence: see the module doc.
        fence(SeqCst);
        if self.rx_state.load(Relaxed) != ARMED {
            return;
        }
        // Acquire: the waker written before `ARMED`.
        if self
            .rx_state
            .compare_exchange(ARMED, WAKING, Acquire, Relaxed)
            .is_ok()
        {
            // SAFETY: `WAKING` is ours: the receiver does not write the
            // slot until we store `IDLE`.
            let waker = self.rx_waker.with_mut(|w| unsafe { (*w).take() });
            self.rx_state.store(IDLE, Release);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Arms the receiver's waker. A notifier in `WAKING` is a few
    /// instructions from storing `IDLE`: wait for it rather than touch the
    /// slot it reads.
    fn arm(&self, waker: &Waker) {
        let mut step = 0;
        loop {
            let state = self.rx_state.load(Acquire);
            if state == WAKING {
                list::backoff(&mut step);
                continue;
            }
            debug_assert!(state == IDLE || state == ARMED, "one receiver arms");
            // Acquire: a notifier's `IDLE` store, after its read of the slot.
            if self
                .rx_state
                .compare_exchange(state, REGISTERING, Acquire, Relaxed)
                .is_ok()
            {
                break;
            }
        }
        // SAFETY: `REGISTERING` is ours: no notifier reads the slot.
        self.rx_waker.with_mut(|w| unsafe {
            match &*w {
                Some(old) if old.will_wake(waker) => {}
                _ => *w = Some(waker.clone()),
            }
        });
        self.rx_state.store(ARMED, Release);
        // SeqCst fence: see the module doc.
        fence(SeqCst);
    }

    /// Disarms after the receiver found a value anyway, so later sends
    /// skip the wake. Best effort.
    fn disarm(&self) {
        let _ = self
            .rx_state
            .compare_exchange(ARMED, IDLE, Relaxed, Relaxed);
    }

    /// # Safety
    /// Only the receiver calls it.
    unsafe fn pop(&self) -> Pop<T> {
        // SAFETY: the head is the receiver's (caller).
        self.head.with_mut(|h| unsafe { (*h).pop(&self.tail) })
    }

    /// Takes a value without waiting: `Ok(None)` when empty (or the next
    /// value is still being written), `Err` when empty for good.
    ///
    /// # Safety
    /// Only the receiver calls it.
    pub(super) unsafe fn try_pop(&self) -> Result<Option<T>, ()> {
        // SAFETY: per the caller.
        match unsafe { self.pop() } {
            Pop::Value(v) => {
                self.capacity.release();
                Ok(Some(v))
            }
            Pop::Busy => Ok(None),
            Pop::Empty => {
                if self.tx_count.load(Acquire) != 0 && !self.rx_closed.load(Acquire) {
                    return Ok(None);
                }
                // No sender left, or the list is closed to new claims:
                // every claimed slot is visible (or `Busy`) now.
                // SAFETY: per the caller.
                match unsafe { self.pop() } {
                    Pop::Value(v) => {
                        self.capacity.release();
                        Ok(Some(v))
                    }
                    Pop::Busy => Ok(None),
                    Pop::Empty => Err(()),
                }
            }
        }
    }

    /// The receive protocol: budget, scope, fast path, arm, re-check.
    ///
    /// # Safety
    /// Only the receiver calls it.
    pub(super) unsafe fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<T, RecvFail>> {
        let restore = std::task::ready!(coop::poll_proceed(cx));
        // The scope first: a cancelled receive takes nothing.
        if let Some(c) = scope_cancelled() {
            restore.made_progress();
            return Poll::Ready(Err(RecvFail::Cancelled(c)));
        }
        // SAFETY: per the caller.
        match unsafe { self.try_pop() } {
            Ok(Some(v)) => {
                restore.made_progress();
                return Poll::Ready(Ok(v));
            }
            Err(()) => {
                restore.made_progress();
                return Poll::Ready(Err(RecvFail::Closed));
            }
            Ok(None) => {}
        }
        if let Some(c) = before_wait() {
            restore.made_progress();
            return Poll::Ready(Err(RecvFail::Cancelled(c)));
        }
        self.arm(cx.waker());
        // SAFETY: per the caller.
        match unsafe { self.try_pop() } {
            Ok(Some(v)) => {
                self.disarm();
                restore.made_progress();
                Poll::Ready(Ok(v))
            }
            Err(()) => {
                self.disarm();
                restore.made_progress();
                Poll::Ready(Err(RecvFail::Closed))
            }
            Ok(None) => {
                crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::MpscRecv);
                Poll::Pending
            }
        }
    }

    /// The receiver closes: sends fail from now on, waiting senders and
    /// `closed()` waiters are woken. Queued messages stay receivable.
    pub(super) fn close_rx(&self) {
        if self.rx_closed.swap(true, AcqRel) {
            return;
        }
        self.tail.close();
        self.capacity.close();
        wake_all(&mut lock(&self.closed_waiters));
    }

    /// Messages queued (including ones still being written).
    ///
    /// # Safety
    /// Only the receiver calls it.
    pub(super) unsafe fn len(&self) -> usize {
        // SAFETY: per the caller, no one moves the head meanwhile.
        self.head.with(|h| unsafe { (*h).len(&self.tail) })
    }

    /// Drops every queued value.
    ///
    /// # Safety
    /// Only the receiver calls it.
    pub(super) unsafe fn drain(&self) {
        // SAFETY: per the caller.
        while let Pop::Value(v) = unsafe { self.pop() } {
            self.capacity.release();
            drop(v);
        }
    }

    /// Waits until the receiver closes (for `Sender::closed`).
    ///
    /// # Safety
    /// `node` is pinned in its future, used with this channel only, and
    /// leaves (`WaitNode::leave` with `closed_waiters()`) before it goes.
    pub(super) unsafe fn poll_closed(
        &self,
        node: &mut WaitNode,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Cancelled>> {
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(c) = scope_cancelled() {
            node.leave(&self.closed_waiters);
            restore.made_progress();
            return Poll::Ready(Err(c));
        }
        if self.is_rx_closed() {
            node.leave(&self.closed_waiters);
            restore.made_progress();
            return Poll::Ready(Ok(()));
        }
        if let Some(c) = before_wait() {
            node.leave(&self.closed_waiters);
            restore.made_progress();
            return Poll::Ready(Err(c));
        }
        let mut waiters = lock(&self.closed_waiters);
        // Under the lock: `close_rx` sets the flag before draining.
        if self.is_rx_closed() {
            node.leave_locked(&mut waiters);
            restore.made_progress();
            return Poll::Ready(Ok(()));
        }
        // SAFETY: per the caller.
        unsafe { node.link(&mut waiters, cx.waker()) };
        crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::MpscClosed);
        Poll::Pending
    }
}

impl<T, S> Chan<T, S> {
    /// The list `Sender::closed` waits in.
    pub(super) fn closed_waiters(&self) -> &Mutex<WaitList<()>> {
        &self.closed_waiters
    }
}

impl<T, S> Drop for Chan<T, S> {
    fn drop(&mut self) {
        // Nothing else holds the channel: the head is ours, every sender
        // finished its push.
        let head = self.head.with_mut(|h| {
            // SAFETY: exclusive access (`&mut self`).
            unsafe { &mut *h }
        });
        while let Pop::Value(v) = head.pop(&self.tail) {
            drop(v);
        }
        head.free();
    }
}
