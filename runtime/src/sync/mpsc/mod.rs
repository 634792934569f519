//! Multi-producer, single-consumer channels: bounded ([`channel`]) with
//! `send().await` backpressure, and [`unbounded_channel`].
//!
//! ```
//! # weft::runtime::Runtime::new().unwrap().block_on(async {
//! let (tx, mut rx) = weft::sync::mpsc::channel(16);
//! for i in 0..3 {
//!     let tx = tx.clone();
//!     weft::spawn(async move { tx.send(i).await.unwrap() });
//! }
//! drop(tx);
//! let mut got = Vec::new();
//! while let Ok(v) = rx.recv().await {
//!     got.push(v);
//! }
//! got.sort();
//! assert_eq!(got, [0, 1, 2]);
//! # });
//! ```
//!
//! # From tokio: `recv()` returns a `Result`
//! tokio's `recv()` returns `Option<T>`, `None` meaning "closed". Inside a
//! weft task a receive can also end because the task's scope was cancelled
//! or its deadline passed, and folding that into `None` would make a
//! cancelled consumer look like a finished stream and silently drop the
//! cause. So [`Receiver::recv`] returns `Result<T, RecvError>` with
//! [`RecvError::Closed`] and [`RecvError::Cancelled`]. tokio code keeps
//! its shape with one word changed — `while let Some(v) = rx.recv().await`
//! becomes `while let Ok(v) = rx.recv().await` (and `rx.recv().await.ok()`
//! is tokio's `Option`, if a caller really wants to ignore why) — and code
//! that is not changed fails to compile instead of misbehaving. Sends give
//! their value back in every error ([`SendError::Closed`],
//! [`SendError::Cancelled`], [`TrySendError`]); waits that have no value
//! to return ([`Sender::closed`]) return `Result<(), Cancelled>`.
//!
//! The other differences a tokio user meets:
//! - `recv_many`, `poll_recv` and `blocking_recv` return a `Result` too
//!   (`recv_many`: `Ok(n)`, never `Ok(0)` except for a `limit` of 0).
//! - [`SendError`] is an enum (closed / cancelled): `e.0` becomes
//!   [`e.into_inner()`](SendError::into_inner).
//! - A message sent through a [`Permit`] reserved before the receiver's
//!   `close()` is dropped (tokio delivers it); plain sends after the close
//!   get their value back in both.
//! - `try_recv` returns `Empty` while the next message's sender is between
//!   claiming its slot and writing it (tokio waits for the write).
//!
//! # Protocol
//! - The queue (`list.rs`): a lock-free linked list of 31-slot blocks;
//!   senders claim a slot with a CAS on the tail, write it, mark it ready;
//!   the receiver alone pops, and frees each block once it read every slot
//!   of it. One allocation per 31 messages, none per wait.
//! - The receiver's waker (`chan.rs`): armed by the receiver before it
//!   sleeps, taken by the first sender that publishes after. A sender
//!   that finds it unarmed writes nothing shared.
//! - Capacity (`bounded.rs`, bounded channels): a permit per queued
//!   message, taken by the sender (a CAS on a counter, or a FIFO wait in the
//!   intrusive list of `sync::wait_list`, node in the send future), given
//!   back when the receiver pops the message, or when a [`Permit`] is
//!   dropped unused, or when a waiting sender that was granted one leaves
//!   (cancelled or dropped): then it goes to the next waiting sender.
//! - Closing: the last sender's drop ends the stream after the queued
//!   messages; the receiver's [`close`](Receiver::close) (or drop) closes
//!   the list's tail to new claims, so a send after it gets its value back
//!   and a receive that finds the queue empty after it knows no message
//!   will come. Values left in the channel are dropped with it, exactly
//!   once.
//!
//! # Cancellation
//! `send().await`, `reserve().await`, `recv().await`, `recv_many` and
//! `closed().await` are await points of the task's scope: in a cancelled
//! scope or past its deadline they return the cancellation at once and
//! every time. A cancelled receive takes nothing (the scope is checked
//! before the queue); a cancelled send queues nothing and returns its
//! value, and the capacity it may have been granted goes to the next
//! waiting sender.

mod bounded;
mod chan;
pub mod error;
mod list;

use std::{
    fmt,
    future::{poll_fn, Future},
    marker::PhantomPinned,
    pin::Pin,
    task::{Context, Poll},
};

pub use self::error::{RecvError, SendError, SendTimeoutError, TryRecvError, TrySendError};
use self::{
    bounded::{AcquireError, Semaphore, TryAcquireError},
    chan::{Capacity, Chan, RecvFail, Unbounded},
};
use super::channel_wait::{block_on, WaitNode};
use crate::{cancel::Cancelled, facade::Arc};

/// A bounded channel holding at most `capacity` messages; senders wait
/// (`send().await`) while it is full.
///
/// # Panics
/// If `capacity` is zero.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "mpsc bounded channel requires capacity > 0");
    let chan = Arc::new(Chan::new(Semaphore::new(capacity)));
    (Sender { chan: chan.clone() }, Receiver { rx: Rx { chan } })
}

/// An unbounded channel: sends never wait.
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let chan = Arc::new(Chan::new(Unbounded));
    (
        UnboundedSender { chan: chan.clone() },
        UnboundedReceiver { rx: Rx { chan } },
    )
}

/// Sends to a bounded channel. Cloning makes another sender; the channel
/// closes for the receiver when the last one is dropped.
pub struct Sender<T> {
    chan: Arc<Chan<T, Semaphore>>,
}

/// Receives from a bounded channel.
pub struct Receiver<T> {
    rx: Rx<T, Semaphore>,
}

/// Sends to an unbounded channel.
pub struct UnboundedSender<T> {
    chan: Arc<Chan<T, Unbounded>>,
}

/// Receives from an unbounded channel.
pub struct UnboundedReceiver<T> {
    rx: Rx<T, Unbounded>,
}

/// A bounded channel's sender that does not count: the receiver sees the
/// channel closed once every [`Sender`] is gone, weak ones included.
/// [`upgrade`](Self::upgrade) gives a sender while one is alive.
pub struct WeakSender<T> {
    chan: Arc<Chan<T, Semaphore>>,
}

/// [`WeakSender`] for an unbounded channel.
pub struct WeakUnboundedSender<T> {
    chan: Arc<Chan<T, Unbounded>>,
}

macro_rules! weak_sender {
    ($weak:ident, $strong:ident) => {
        impl<T> $weak<T> {
            /// A sender, if any sender is still alive.
            pub fn upgrade(&self) -> Option<$strong<T>> {
                self.chan.try_add_sender().then(|| $strong {
                    chan: self.chan.clone(),
                })
            }
        }

        impl<T> Clone for $weak<T> {
            fn clone(&self) -> Self {
                $weak {
                    chan: self.chan.clone(),
                }
            }
        }

        impl<T> fmt::Debug for $weak<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($weak)).finish_non_exhaustive()
            }
        }
    };
}

weak_sender!(WeakSender, Sender);
weak_sender!(WeakUnboundedSender, UnboundedSender);

/// Capacity reserved in a bounded channel: sending through it never waits.
/// Dropped unused, it returns the capacity.
pub struct Permit<'a, T> {
    chan: &'a Chan<T, Semaphore>,
}

/// A [`Permit`] that owns its sender.
pub struct OwnedPermit<T> {
    chan: Option<Arc<Chan<T, Semaphore>>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full.
    ///
    /// Errors (each gives the value back): [`SendError::Closed`] if the
    /// receiver is gone, [`SendError::Cancelled`] if the task's scope was
    /// cancelled before capacity was found (nothing is queued then). Waiting
    /// senders get capacity in FIFO order.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.chan.capacity.acquire().await {
            Ok(()) => self.chan.push(value).map_err(|v| {
                self.chan.capacity.release();
                SendError::Closed(v)
            }),
            Err(AcquireError::Closed) => Err(SendError::Closed(value)),
            Err(AcquireError::Cancelled(c)) => Err(SendError::Cancelled(value, c)),
        }
    }

    /// As [`send`](Self::send), giving up (and the value back) if no
    /// capacity frees up within `timeout`.
    pub async fn send_timeout(
        &self,
        value: T,
        timeout: std::time::Duration,
    ) -> Result<(), SendTimeoutError<T>> {
        match crate::time::timeout(timeout, self.chan.capacity.acquire()).await {
            Ok(Ok(())) => self.chan.push(value).map_err(|v| {
                self.chan.capacity.release();
                SendTimeoutError::Closed(v)
            }),
            Ok(Err(AcquireError::Closed)) => Err(SendTimeoutError::Closed(value)),
            Ok(Err(AcquireError::Cancelled(c))) => Err(SendTimeoutError::Cancelled(value, c)),
            Err(_elapsed) => Err(SendTimeoutError::Timeout(value)),
        }
    }

    /// A sender that does not keep the channel open; see [`WeakSender`].
    pub fn downgrade(&self) -> WeakSender<T> {
        WeakSender {
            chan: self.chan.clone(),
        }
    }

    /// Sends `value` if there is capacity now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.chan.capacity.try_acquire() {
            Ok(()) => self.chan.push(value).map_err(|v| {
                self.chan.capacity.release();
                TrySendError::Closed(v)
            }),
            Err(TryAcquireError::Closed) => Err(TrySendError::Closed(value)),
            Err(TryAcquireError::NoPermits) => Err(TrySendError::Full(value)),
        }
    }

    /// Blocks the thread until `value` is sent (for code outside the
    /// runtime).
    ///
    /// # Panics
    /// On a weft worker thread or inside `block_on`.
    pub fn blocking_send(&self, value: T) -> Result<(), SendError<T>> {
        block_on(self.send(value))
    }

    /// Waits for capacity and reserves it.
    pub async fn reserve(&self) -> Result<Permit<'_, T>, SendError<()>> {
        match self.chan.capacity.acquire().await {
            Ok(()) => Ok(Permit { chan: &self.chan }),
            Err(AcquireError::Closed) => Err(SendError::Closed(())),
            Err(AcquireError::Cancelled(c)) => Err(SendError::Cancelled((), c)),
        }
    }

    /// As [`reserve`](Self::reserve), for a permit that owns the sender.
    pub async fn reserve_owned(self) -> Result<OwnedPermit<T>, SendError<()>> {
        match self.chan.capacity.acquire().await {
            Ok(()) => {
                // The sender's count and its reference to the channel move
                // into the permit: no `drop_sender`, no second `Arc`.
                let this = std::mem::ManuallyDrop::new(self);
                // SAFETY: `this` is never used or dropped again, so the
                // `Arc` read out of it has exactly one owner, the permit.
                let chan = unsafe { std::ptr::read(&this.chan) };
                Ok(OwnedPermit { chan: Some(chan) })
            }
            Err(AcquireError::Closed) => Err(SendError::Closed(())),
            Err(AcquireError::Cancelled(c)) => Err(SendError::Cancelled((), c)),
        }
    }

    /// Reserves capacity if there is some now.
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        match self.chan.capacity.try_acquire() {
            Ok(()) => Ok(Permit { chan: &self.chan }),
            Err(TryAcquireError::Closed) => Err(TrySendError::Closed(())),
            Err(TryAcquireError::NoPermits) => Err(TrySendError::Full(())),
        }
    }

    /// Completes when the receiver is dropped or closed; `Err` if the
    /// task's scope is cancelled first.
    pub async fn closed(&self) -> Result<(), Cancelled> {
        Closed::new(&self.chan).await
    }

    /// True once the receiver is dropped or closed.
    pub fn is_closed(&self) -> bool {
        self.chan.is_rx_closed()
    }

    /// Free capacity now.
    pub fn capacity(&self) -> usize {
        self.chan.capacity.available()
    }

    /// The capacity the channel was created with.
    pub fn max_capacity(&self) -> usize {
        self.chan.capacity.bound()
    }

    /// True if both senders send to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> UnboundedSender<T> {
    /// A sender that does not keep the channel open; see
    /// [`WeakUnboundedSender`].
    pub fn downgrade(&self) -> WeakUnboundedSender<T> {
        WeakUnboundedSender {
            chan: self.chan.clone(),
        }
    }

    /// Queues `value`; `Err` (with the value) if the receiver is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.chan.push(value).map_err(SendError::Closed)
    }

    /// Completes when the receiver is dropped or closed; `Err` if the
    /// task's scope is cancelled first.
    pub async fn closed(&self) -> Result<(), Cancelled> {
        Closed::new(&self.chan).await
    }

    /// True once the receiver is dropped or closed.
    pub fn is_closed(&self) -> bool {
        self.chan.is_rx_closed()
    }

    /// True if both senders send to the same channel.
    pub fn same_channel(&self, other: &UnboundedSender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<'a, T> Permit<'a, T> {
    /// Sends `value` without waiting. If the receiver closed since the
    /// permit was reserved, the value is dropped.
    pub fn send(self, value: T) {
        let chan = self.chan;
        std::mem::forget(self);
        if chan.push(value).is_err() {
            chan.capacity.release();
        }
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.chan.capacity.release();
    }
}

impl<T> OwnedPermit<T> {
    /// Sends `value` without waiting and gives the sender back. If the
    /// receiver closed since the permit was reserved, the value is dropped.
    pub fn send(mut self, value: T) -> Sender<T> {
        let chan = self.chan.take().expect("a live permit has its channel");
        if chan.push(value).is_err() {
            chan.capacity.release();
        }
        Sender { chan }
    }

    /// Returns the capacity unused and gives the sender back.
    pub fn release(mut self) -> Sender<T> {
        let chan = self.chan.take().expect("a live permit has its channel");
        chan.capacity.release();
        Sender { chan }
    }
}

impl<T> Drop for OwnedPermit<T> {
    fn drop(&mut self) {
        if let Some(chan) = self.chan.take() {
            chan.capacity.release();
            drop(Sender { chan });
        }
    }
}

/// The receiver's side, shared by both flavours.
struct Rx<T, S: Capacity> {
    chan: Arc<Chan<T, S>>,
}

impl<T, S: Capacity> Rx<T, S> {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        // SAFETY: `&mut self`: we are the one receiver.
        unsafe { self.chan.poll_recv(cx) }.map(|r| {
            r.map_err(|e| match e {
                RecvFail::Closed => RecvError::Closed,
                RecvFail::Cancelled(c) => RecvError::Cancelled(c),
            })
        })
    }

    fn poll_recv_many(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<T>,
        limit: usize,
    ) -> Poll<Result<usize, RecvError>> {
        if limit == 0 {
            return Poll::Ready(Ok(0));
        }
        let first = std::task::ready!(self.poll_recv(cx))?;
        buf.push(first);
        let mut n = 1;
        while n < limit {
            // SAFETY: as in `poll_recv`.
            match unsafe { self.chan.try_pop() } {
                Ok(Some(v)) => {
                    buf.push(v);
                    n += 1;
                }
                _ => break,
            }
        }
        Poll::Ready(Ok(n))
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        // SAFETY: as in `poll_recv`.
        match unsafe { self.chan.try_pop() } {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(TryRecvError::Empty),
            Err(()) => Err(TryRecvError::Disconnected),
        }
    }

    fn is_closed(&self) -> bool {
        self.chan.is_rx_closed() || self.chan.sender_count() == 0
    }

    fn len(&self) -> usize {
        // SAFETY: `&self` of the one receiver: nobody pops meanwhile.
        unsafe { self.chan.len() }
    }
}

impl<T, S: Capacity> Drop for Rx<T, S> {
    fn drop(&mut self) {
        self.chan.close_rx();
        // SAFETY: we are the one receiver.
        unsafe { self.chan.drain() };
    }
}

macro_rules! receiver_methods {
    ($name:ident) => {
        impl<T> $name<T> {
            /// Receives the next message, waiting for one.
            ///
            /// `Err(RecvError::Closed)` once every sender is gone (or the
            /// receiver closed) and the queue is drained;
            /// `Err(RecvError::Cancelled)` if the task's scope is cancelled
            /// or past its deadline, checked before the queue, so no
            /// message is taken then.
            pub async fn recv(&mut self) -> Result<T, RecvError> {
                poll_fn(|cx| self.rx.poll_recv(cx)).await
            }

            /// Receives up to `limit` messages into `buf`, waiting for the
            /// first; `Ok(n)` with how many were appended (0 only for a
            /// `limit` of 0). Errors as [`recv`](Self::recv).
            pub async fn recv_many(
                &mut self,
                buf: &mut Vec<T>,
                limit: usize,
            ) -> Result<usize, RecvError> {
                poll_fn(|cx| self.rx.poll_recv_many(cx, buf, limit)).await
            }

            /// Polls for the next message (see [`recv`](Self::recv)).
            pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
                self.rx.poll_recv(cx)
            }

            /// Takes the next message if one is ready. `Empty` also while
            /// the next message's sender is still writing it.
            pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
                self.rx.try_recv()
            }

            /// Blocks the thread until a message arrives (for code outside
            /// the runtime).
            ///
            /// # Panics
            /// On a weft worker thread or inside `block_on`.
            pub fn blocking_recv(&mut self) -> Result<T, RecvError> {
                block_on(self.recv())
            }

            /// Closes the channel to senders: sends fail from now on (giving
            /// their value back), waiting senders are woken with
            /// `Closed`. The messages already queued can still be received;
            /// then `recv` returns `Closed`. A message sent through a
            /// [`Permit`] reserved before the close is dropped.
            pub fn close(&mut self) {
                self.rx.chan.close_rx();
            }

            /// Messages queued now (a snapshot: senders may add more).
            pub fn len(&self) -> usize {
                self.rx.len()
            }

            /// True if no message is queued now.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// True once no message can arrive any more: every sender is
            /// gone or the receiver closed (queued messages may remain).
            pub fn is_closed(&self) -> bool {
                self.rx.is_closed()
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("closed", &self.is_closed())
                    .finish()
            }
        }
    };
}

receiver_methods!(Receiver);
receiver_methods!(UnboundedReceiver);

macro_rules! sender_common {
    ($name:ident) => {
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                self.chan.add_sender();
                $name {
                    chan: self.chan.clone(),
                }
            }
        }

        impl<T> Drop for $name<T> {
            fn drop(&mut self) {
                self.chan.drop_sender();
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("closed", &self.is_closed())
                    .finish()
            }
        }
    };
}

sender_common!(Sender);
sender_common!(UnboundedSender);

impl<T> fmt::Debug for Permit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for OwnedPermit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit").finish_non_exhaustive()
    }
}

/// The future of [`Sender::closed`] and [`UnboundedSender::closed`]; its
/// node is linked into the channel's list while it waits.
struct Closed<'a, T, S> {
    chan: &'a Chan<T, S>,
    node: WaitNode,
    _pin: PhantomPinned,
}

impl<'a, T, S: Capacity> Closed<'a, T, S> {
    fn new(chan: &'a Chan<T, S>) -> Self {
        Closed {
            chan,
            node: WaitNode::new(),
            _pin: PhantomPinned,
        }
    }
}

impl<T, S: Capacity> Future for Closed<'_, T, S> {
    type Output = Result<(), Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the node is never moved out of the pinned future.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: the node is pinned with us, only used with this channel,
        // and leaves in our `Drop`.
        unsafe { this.chan.poll_closed(&mut this.node, cx) }
    }
}

impl<T, S> Drop for Closed<'_, T, S> {
    fn drop(&mut self) {
        self.node.leave(self.chan.closed_waiters());
    }
}

impl<T, S> fmt::Debug for Closed<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closed").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests;
