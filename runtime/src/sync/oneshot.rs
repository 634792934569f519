//! A one-shot channel: one value from one [`Sender`] to one [`Receiver`].
//!
//! ```
//! # weft::runtime::Runtime::new().unwrap().block_on(async {
//! let (tx, rx) = weft::sync::oneshot::channel();
//! weft::spawn(async move { tx.send(42).unwrap() });
//! assert_eq!(rx.await.unwrap(), 42);
//! # });
//! ```
//!
//! # Protocol
//! One allocation per channel (an `Arc` of `Inner`) and none per wait.
//! The channel's state is one atomic word of four bits:
//! - `VALUE_SENT`: the sender is done: it stored the value (or dropped
//!   without sending; then the slot is empty). Set once, by the sender,
//!   only while `CLOSED` is clear. After it the sender touches neither the
//!   value nor its own waker slot, and the receiver may take the value.
//! - `CLOSED`: the receiver is done (closed or dropped). Set once, by the
//!   receiver. A send that finds it set takes its value back and returns it.
//! - `RX_TASK_SET`: the receiver's waker slot holds a waker the sender
//!   must wake when it sets `VALUE_SENT`. The receiver writes the slot only
//!   while the bit is clear; the sender reads it only after seeing the bit
//!   in the word its own `VALUE_SENT` transition returned.
//! - `TX_TASK_SET`: the same for the sender's waker, which the receiver
//!   wakes when it sets `CLOSED` (for [`Sender::closed`]).
//!
//! To change its waker a side clears its bit first; if the word it gets back
//! says the other side finished meanwhile (which may be reading the old
//! waker), it sets the bit back and completes instead of touching the slot.
//!
//! The value is dropped exactly once: by whoever takes it (a receive, or a
//! send that finds the channel closed and returns it), else by the
//! receiver's drop if `VALUE_SENT` was set when it closed, else with the
//! channel.
//!
//! # Cancellation
//! The [`Receiver`] is an await point of the task's scope: in a cancelled
//! scope, or past its deadline, it returns [`RecvError::Cancelled`] before
//! looking at the value, so a value sent meanwhile stays in the channel and
//! the receiver can be polled again (for instance after the `timeout` or
//! scope that cancelled it is gone). [`Sender::closed`] is an await point
//! the same way.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use super::channel_wait::{before_wait, block_on, scope_cancelled};
use crate::{
    cancel::Cancelled,
    coop,
    facade::{
        atomic::{AtomicUsize, Ordering::*},
        Arc, UnsafeCell,
    },
};

/// The receiver's waker slot holds a waker to wake on `VALUE_SENT`.
const RX_TASK_SET: usize = 0b0001;
/// The sender is done: the value is stored (or the sender dropped without
/// one). Never set while `CLOSED` is set.
const VALUE_SENT: usize = 0b0010;
/// The receiver is done: closed or dropped.
const CLOSED: usize = 0b0100;
/// The sender's waker slot holds a waker to wake on `CLOSED`.
const TX_TASK_SET: usize = 0b1000;

/// Creates a one-shot channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: AtomicUsize::new(0),
        value: UnsafeCell::new(None),
        rx_task: UnsafeCell::new(None),
        tx_task: UnsafeCell::new(None),
    });
    (
        Sender {
            inner: Some(inner.clone()),
        },
        Receiver { inner: Some(inner) },
    )
}

/// Sends the value. Dropping it without sending ends the receiver's wait
/// with [`RecvError::Closed`].
pub struct Sender<T> {
    inner: Option<Arc<Inner<T>>>,
}

/// Receives the value: a future of `Result<T, RecvError>`.
///
/// Unlike tokio's, it can be polled again after it returned
/// [`RecvError::Cancelled`]: the value is still there.
pub struct Receiver<T> {
    inner: Option<Arc<Inner<T>>>,
}

struct Inner<T> {
    state: AtomicUsize,
    value: UnsafeCell<Option<T>>,
    rx_task: UnsafeCell<Option<Waker>>,
    tx_task: UnsafeCell<Option<Waker>>,
}

// SAFETY: the value and the wakers are handed between the two sides under
// the state word's protocol (module doc); `T: Send` is what crosses.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above: the cells are never accessed from both sides at once.
unsafe impl<T: Send> Sync for Inner<T> {}

/// Why a receive ended without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The sender was dropped without sending (or the value was already
    /// received).
    Closed,
    /// The receiving task's scope was cancelled or its deadline passed; the
    /// value, if one was sent, is still in the channel.
    Cancelled(Cancelled),
}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing sent yet.
    Empty,
    /// The sender was dropped without sending, or the value was taken.
    Closed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("channel closed"),
            RecvError::Cancelled(c) => write!(f, "receive cancelled: {c}"),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Cancelled(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "channel empty",
            TryRecvError::Closed => "channel closed",
        })
    }
}

impl std::error::Error for TryRecvError {}

impl<T> Inner<T> {
    /// The sender's transition to done; false if the receiver had closed
    /// (the value, if any, is then still in the slot for the sender).
    #[must_use]
    fn complete(&self) -> bool {
        // AcqRel: Release publishes the value to the receiver; Acquire makes
        // the receiver's waker visible if `RX_TASK_SET` is in `prev`.
        let prev = self.state.fetch_update(AcqRel, Acquire, |s| {
            (s & CLOSED == 0).then_some(s | VALUE_SENT)
        });
        match prev {
            Ok(prev) => {
                if prev & RX_TASK_SET != 0 {
                    self.rx_task.with(|w| {
                        // SAFETY: `RX_TASK_SET` was set and `VALUE_SENT`
                        // now is: the receiver no longer writes its slot.
                        if let Some(w) = unsafe { &*w } {
                            w.wake_by_ref()
                        }
                    });
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Takes the value.
    ///
    /// # Safety
    /// The caller is the receiver and saw `VALUE_SENT`, or is the sender and
    /// saw its `complete` fail.
    unsafe fn take_value(&self) -> Option<T> {
        // SAFETY: per the caller, the other side no longer touches the slot.
        self.value.with_mut(|v| unsafe { (*v).take() })
    }

    /// The receiver closes; returns the state before.
    fn close(&self) -> usize {
        // AcqRel: Acquire makes the value (if `VALUE_SENT`) and the sender's
        // waker (if `TX_TASK_SET`) visible; Release orders our waker writes.
        let prev = self.state.fetch_or(CLOSED, AcqRel);
        if prev & (TX_TASK_SET | VALUE_SENT) == TX_TASK_SET {
            self.tx_task.with(|w| {
                // SAFETY: `TX_TASK_SET` was set when `CLOSED` went in: the
                // sender writes its slot only after clearing the bit and
                // seeing `CLOSED` clear in the word it got back, which can
                // no longer happen.
                if let Some(w) = unsafe { &*w } {
                    w.wake_by_ref()
                }
            });
        }
        prev
    }
}

impl<T> Sender<T> {
    fn inner(&self) -> &Inner<T> {
        self.inner.as_ref().expect("a live sender has its channel")
    }

    /// Sends `value`. `Err(value)` if the receiver was dropped or closed.
    pub fn send(mut self, value: T) -> Result<(), T> {
        let inner = self.inner.take().expect("a live sender has its channel");
        // SAFETY: `VALUE_SENT` is clear (only this sender sets it, once):
        // the receiver does not read the slot.
        inner.value.with_mut(|v| unsafe { *v = Some(value) });
        if inner.complete() {
            return Ok(());
        }
        // SAFETY: `complete` failed: the receiver closed and will never
        // read the slot, which is ours again.
        Err(unsafe { inner.take_value() }.expect("the value just stored"))
    }

    /// True once the receiver was dropped or closed.
    pub fn is_closed(&self) -> bool {
        self.inner().state.load(Acquire) & CLOSED != 0
    }

    /// Completes when the receiver is dropped or closed; `Err` if the
    /// waiting task's scope is cancelled first.
    pub async fn closed(&mut self) -> Result<(), Cancelled> {
        std::future::poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// Polls for the receiver's closing (see [`closed`](Self::closed)).
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Cancelled>> {
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(c) = scope_cancelled() {
            restore.made_progress();
            return Poll::Ready(Err(c));
        }
        let inner = self.inner();
        let mut state = inner.state.load(Acquire);
        if state & CLOSED != 0 {
            restore.made_progress();
            return Poll::Ready(Ok(()));
        }
        if let Some(c) = before_wait() {
            restore.made_progress();
            return Poll::Ready(Err(c));
        }
        if state & TX_TASK_SET != 0 {
            let same = inner.tx_task.with(|w| {
                // SAFETY: reading our own slot is always allowed.
                unsafe { &*w }
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
            });
            if same {
                crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::OneshotClosed);
                return Poll::Pending;
            }
            state = inner.state.fetch_and(!TX_TASK_SET, AcqRel);
            if state & CLOSED != 0 {
                // The receiver may be reading the slot: put the bit back.
                inner.state.fetch_or(TX_TASK_SET, Release);
                restore.made_progress();
                return Poll::Ready(Ok(()));
            }
        }
        // SAFETY: `TX_TASK_SET` is clear: the receiver does not read it.
        inner
            .tx_task
            .with_mut(|w| unsafe { *w = Some(cx.waker().clone()) });
        // Release: publishes the waker to the receiver's `close`.
        state = inner.state.fetch_or(TX_TASK_SET, AcqRel);
        if state & CLOSED != 0 {
            restore.made_progress();
            return Poll::Ready(Ok(()));
        }
        crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::OneshotClosed);
        Poll::Pending
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            // Done without a value: wakes the receiver, which finds the slot
            // empty. A closed receiver needs nothing.
            let _ = inner.complete();
        }
    }
}

impl<T> Receiver<T> {
    fn inner(&self) -> Option<&Inner<T>> {
        self.inner.as_deref()
    }

    /// Takes the value if it was sent.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let Some(inner) = self.inner() else {
            return Err(TryRecvError::Closed);
        };
        let state = inner.state.load(Acquire);
        if state & VALUE_SENT != 0 {
            // SAFETY: `VALUE_SENT` seen (Acquire): the sender is done.
            let value = unsafe { inner.take_value() };
            self.inner = None;
            return value.ok_or(TryRecvError::Closed);
        }
        if state & CLOSED != 0 {
            return Err(TryRecvError::Closed);
        }
        Err(TryRecvError::Empty)
    }

    /// Stops the sender from sending: a later `send` returns its value. A
    /// value sent before can still be received.
    pub fn close(&mut self) {
        if let Some(inner) = self.inner() {
            inner.close();
        }
    }

    /// Blocks the thread until the value arrives (for code outside the
    /// runtime).
    ///
    /// # Panics
    /// On a weft worker thread or inside `block_on`.
    pub fn blocking_recv(self) -> Result<T, RecvError> {
        block_on(self)
    }

    fn poll_value(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        let restore = std::task::ready!(coop::poll_proceed(cx));
        // The scope first: a cancelled wait takes nothing.
        if let Some(c) = scope_cancelled() {
            restore.made_progress();
            return Poll::Ready(Err(RecvError::Cancelled(c)));
        }
        let Some(inner) = self.inner.as_deref() else {
            restore.made_progress();
            return Poll::Ready(Err(RecvError::Closed));
        };
        let mut state = inner.state.load(Acquire);
        if state & VALUE_SENT == 0 && state & CLOSED == 0 {
            if let Some(c) = before_wait() {
                restore.made_progress();
                return Poll::Ready(Err(RecvError::Cancelled(c)));
            }
            state = register_rx(inner, cx.waker(), state);
        }
        if state & VALUE_SENT != 0 {
            restore.made_progress();
            // SAFETY: `VALUE_SENT` seen (Acquire): the sender is done.
            let value = unsafe { inner.take_value() };
            self.inner = None;
            return Poll::Ready(value.ok_or(RecvError::Closed));
        }
        if state & CLOSED != 0 {
            restore.made_progress();
            return Poll::Ready(Err(RecvError::Closed));
        }
        crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::OneshotRecv);
        Poll::Pending
    }
}

/// Stores `waker` in the receiver's slot (module protocol) and returns the
/// state after.
fn register_rx<T>(inner: &Inner<T>, waker: &Waker, mut state: usize) -> usize {
    if state & RX_TASK_SET != 0 {
        // SAFETY: reading our own slot is always allowed.
        let same = inner
            .rx_task
            .with(|w| unsafe { &*w }.as_ref().is_some_and(|w| w.will_wake(waker)));
        if same {
            return state;
        }
        state = inner.state.fetch_and(!RX_TASK_SET, AcqRel);
        if state & VALUE_SENT != 0 {
            // The sender may be reading the slot: put the bit back.
            return inner.state.fetch_or(RX_TASK_SET, AcqRel) | RX_TASK_SET;
        }
    }
    // SAFETY: `RX_TASK_SET` is clear: the sender does not read the slot.
    inner
        .rx_task
        .with_mut(|w| unsafe { *w = Some(waker.clone()) });
    // AcqRel: Release publishes the waker to the sender's `complete`;
    // Acquire makes the value visible if it was sent meanwhile.
    inner.state.fetch_or(RX_TASK_SET, AcqRel) | RX_TASK_SET
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_value(cx)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            if inner.close() & VALUE_SENT != 0 {
                // SAFETY: `VALUE_SENT` seen by `close` (Acquire).
                drop(unsafe { inner.take_value() });
            }
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Sender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner().map(|i| i.state.load(Acquire));
        f.debug_struct("oneshot::Receiver")
            .field("sent", &state.map(|s| s & VALUE_SENT != 0))
            .finish()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use super::*;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn a_value_sent_before_the_poll_is_received() {
        let (tx, mut rx) = channel();
        tx.send(5).unwrap();
        assert_eq!(Pin::new(&mut rx).poll(&mut noop_cx()), Poll::Ready(Ok(5)));
        assert_eq!(
            Pin::new(&mut rx).poll(&mut noop_cx()),
            Poll::Ready(Err(RecvError::Closed)),
            "a second poll finds the value gone"
        );
    }

    #[test]
    fn a_closed_receiver_gives_the_value_back() {
        let (tx, mut rx) = channel::<String>();
        rx.close();
        assert!(tx.is_closed());
        assert_eq!(tx.send("v".into()), Err("v".to_string()));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn try_recv_reports_empty_then_the_value() {
        let (tx, mut rx) = channel();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(1).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn a_sender_dropped_unsent_closes_the_channel() {
        let (tx, mut rx) = channel::<u8>();
        assert_eq!(Pin::new(&mut rx).poll(&mut noop_cx()), Poll::Pending);
        drop(tx);
        assert_eq!(
            Pin::new(&mut rx).poll(&mut noop_cx()),
            Poll::Ready(Err(RecvError::Closed))
        );
    }

    #[test]
    fn poll_closed_sees_the_receiver_drop() {
        let (mut tx, rx) = channel::<u8>();
        assert_eq!(tx.poll_closed(&mut noop_cx()), Poll::Pending);
        drop(rx);
        assert_eq!(tx.poll_closed(&mut noop_cx()), Poll::Ready(Ok(())));
    }
}
