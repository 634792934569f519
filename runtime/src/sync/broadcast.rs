//! A broadcast channel: every value sent reaches every [`Receiver`] that
//! existed when it was sent, from a ring of `capacity` slots; a receiver
//! that falls more than `capacity` values behind skips the oldest ones and
//! is told how many ([`RecvError::Lagged`]).
//!
//! ```
//! # weft::runtime::Runtime::new().unwrap().block_on(async {
//! let (tx, mut rx1) = weft::sync::broadcast::channel(16);
//! let mut rx2 = tx.subscribe();
//! tx.send(10).unwrap();
//! assert_eq!(rx1.recv().await.unwrap(), 10);
//! assert_eq!(rx2.recv().await.unwrap(), 10);
//! # });
//! ```
//!
//! # Protocol
//! (tokio's design, with a mutex per slot where tokio has a reader-writer
//! lock.)
//! - `tail` (under its lock) holds the next position to write, the receiver
//!   count, the closed flag and the waiting receivers. A send takes the
//!   tail lock, writes slot `pos % capacity` under the slot's lock (its
//!   `pos` and value), advances `pos`, and wakes every waiting receiver.
//!   Lock order: tail, then a slot.
//! - A receiver owns `next`, the position it reads next. The slot at `next`
//!   holds `pos == next` (ready), `pos + capacity == next` (not written yet:
//!   slots start at `pos = index - capacity`), or a later `pos` (overwritten:
//!   the receiver lagged; it jumps to the oldest value still held and
//!   reports how many it missed).
//! - A receiver that finds nothing re-checks under the tail lock, then links
//!   its node (in its future: no allocation per wait) into the waiting list.
//! - A value stays in its slot until it is overwritten or the channel is
//!   dropped, and is dropped then, exactly once.
//!
//! # Cancellation
//! `recv().await` is an await point of the task's scope: in a cancelled
//! scope, or past its deadline, it returns [`RecvError::Cancelled`] at once
//! and every time, before reading: the receiver's position does not move,
//! so the value is still there for its next receive.

use std::{
    fmt,
    future::Future,
    marker::PhantomPinned,
    pin::Pin,
    task::{Context, Poll},
};

use super::channel_wait::{before_wait, block_on, scope_cancelled, wake_all, WaitNode};
use crate::{
    cancel::Cancelled,
    coop,
    facade::{
        atomic::{AtomicUsize, Ordering::*},
        lock, Arc, Mutex, MutexGuard,
    },
    sync::wait_list::WaitList,
};

/// Creates a broadcast channel holding at most `capacity` values (rounded
/// up to a power of two).
///
/// # Panics
/// If `capacity` is zero or above `usize::MAX / 2`.
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "broadcast channel capacity cannot be zero");
    assert!(
        capacity <= usize::MAX >> 1,
        "broadcast channel capacity exceeded `usize::MAX / 2`"
    );
    let capacity = capacity.next_power_of_two();
    let buffer = (0..capacity)
        .map(|i| {
            Mutex::new(Slot {
                pos: (i as u64).wrapping_sub(capacity as u64),
                value: None,
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        buffer,
        mask: capacity - 1,
        tail: Mutex::new(Tail {
            pos: 0,
            rx_count: 1,
            closed: false,
            waiters: WaitList::new(),
        }),
        tx_count: AtomicUsize::new(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared, next: 0 },
    )
}

struct Shared<T> {
    buffer: Box<[Mutex<Slot<T>>]>,
    mask: usize,
    tail: Mutex<Tail>,
    tx_count: AtomicUsize,
}

struct Tail {
    /// The next position to write.
    pos: u64,
    rx_count: usize,
    /// Every sender is gone.
    closed: bool,
    waiters: WaitList<()>,
}

struct Slot<T> {
    /// The position of the value held (see the module protocol).
    pos: u64,
    value: Option<T>,
}

/// Sends to every receiver. Cloning makes another sender; the channel
/// closes when the last one is dropped.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// Receives every value sent after it was created.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    next: u64,
}

/// A send with no receiver; the value comes back.
#[derive(PartialEq, Eq, Clone)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel closed")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why a receive returned no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Every sender is gone and this receiver has read everything.
    Closed,
    /// The receiver fell behind: this many values were overwritten before
    /// it read them. The next receive returns the oldest value still held.
    Lagged(u64),
    /// The receiving task's scope was cancelled (or its deadline passed);
    /// nothing was read.
    Cancelled(Cancelled),
}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing new yet.
    Empty,
    /// Every sender is gone and this receiver has read everything.
    Closed,
    /// As [`RecvError::Lagged`].
    Lagged(u64),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("channel closed"),
            RecvError::Lagged(n) => write!(f, "receiver lagged by {n}"),
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
        match self {
            TryRecvError::Empty => f.write_str("channel empty"),
            TryRecvError::Closed => f.write_str("channel closed"),
            TryRecvError::Lagged(n) => write!(f, "receiver lagged by {n}"),
        }
    }
}

impl std::error::Error for TryRecvError {}

impl<T> Sender<T> {
    /// Sends `value` to every receiver; returns how many there are, or
    /// `Err` (with the value) if there is none.
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let mut tail = lock(&self.shared.tail);
        if tail.rx_count == 0 {
            return Err(SendError(value));
        }
        let pos = tail.pos;
        tail.pos = pos.wrapping_add(1);
        let old = {
            let mut slot = lock(&self.shared.buffer[pos as usize & self.shared.mask]);
            slot.pos = pos;
            slot.value.replace(value)
        };
        wake_all(&mut tail.waiters);
        let receivers = tail.rx_count;
        drop(tail);
        // The overwritten value goes outside the locks.
        drop(old);
        Ok(receivers)
    }

    /// A new receiver that gets every value sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        new_receiver(&self.shared)
    }

    /// Live receivers.
    pub fn receiver_count(&self) -> usize {
        lock(&self.shared.tail).rx_count
    }

    /// True if both senders send to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

fn new_receiver<T>(shared: &Arc<Shared<T>>) -> Receiver<T> {
    let mut tail = lock(&shared.tail);
    tail.rx_count += 1;
    Receiver {
        shared: shared.clone(),
        next: tail.pos,
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.tx_count.fetch_add(1, Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.tx_count.fetch_sub(1, AcqRel) == 1 {
            let mut tail = lock(&self.shared.tail);
            tail.closed = true;
            wake_all(&mut tail.waiters);
        }
    }
}

/// What a read at `next` found.
enum Read<'a, T> {
    Ready(MutexGuard<'a, Slot<T>>),
    Empty { closed: bool },
    Lagged(u64),
}

/// Reads the slot at `next` of `shared`; with the tail lock held by the
/// caller if `tail` is given (then `Empty` is final until the next send, and
/// a lag is measured exactly and skipped).
fn read<'a, T>(shared: &'a Shared<T>, next: &mut u64, tail: Option<&Tail>) -> Read<'a, T> {
    let slot = lock(&shared.buffer[*next as usize & shared.mask]);
    if slot.pos == *next {
        return Read::Ready(slot);
    }
    let capacity = shared.buffer.len() as u64;
    if slot.pos.wrapping_add(capacity) == *next {
        return Read::Empty {
            closed: tail.is_some_and(|t| t.closed),
        };
    }
    // Overwritten: jump to the oldest value still held, measured under the
    // tail lock where `tail.pos` is exact.
    match tail {
        Some(tail) => {
            let oldest = tail.pos.wrapping_sub(capacity);
            let missed = oldest.wrapping_sub(*next);
            *next = oldest;
            Read::Lagged(missed)
        }
        None => Read::Empty { closed: false },
    }
}

/// Clones the value of a ready slot and moves `next` past it.
fn take<T: Clone>(slot: MutexGuard<'_, Slot<T>>, next: &mut u64) -> T {
    let value = slot.value.clone().expect("a ready slot holds its value");
    drop(slot);
    *next = next.wrapping_add(1);
    value
}

/// A receive under the tail lock: `Ok(None)` if empty.
fn take_locked<T: Clone>(
    shared: &Shared<T>,
    next: &mut u64,
    tail: &Tail,
) -> Result<Option<T>, TryRecvError> {
    match read(shared, next, Some(tail)) {
        Read::Ready(slot) => Ok(Some(take(slot, next))),
        Read::Empty { closed: true } => Err(TryRecvError::Closed),
        Read::Empty { closed: false } => Ok(None),
        Read::Lagged(n) => Err(TryRecvError::Lagged(n)),
    }
}

/// Unlinks `node` from the tail's waiting list if it is linked.
fn leave<T>(shared: &Shared<T>, node: &mut WaitNode) {
    if node.is_linked() {
        node.leave_locked(&mut lock(&shared.tail).waiters);
    }
}

impl<T> Receiver<T> {
    /// One non-waiting receive: `Ok(None)` for empty.
    fn try_take(&mut self) -> Result<Option<T>, TryRecvError>
    where
        T: Clone,
    {
        let Receiver { shared, next } = self;
        if let Read::Ready(slot) = read(shared, next, None) {
            return Ok(Some(take(slot, next)));
        }
        // Not ready: look again under the tail lock.
        let tail = lock(&shared.tail);
        take_locked(shared, next, &tail)
    }

    /// Takes the next value if there is one.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError>
    where
        T: Clone,
    {
        self.try_take()?.ok_or(TryRecvError::Empty)
    }

    /// Receives the next value, waiting for one.
    ///
    /// `Err(Lagged(n))` if `n` values were overwritten unread (the next
    /// receive returns the oldest one left); `Err(Closed)` once every sender
    /// is gone and everything was read; `Err(Cancelled)` if the task's
    /// scope is cancelled or past its deadline (checked first; nothing is
    /// read).
    pub async fn recv(&mut self) -> Result<T, RecvError>
    where
        T: Clone,
    {
        Recv {
            rx: self,
            node: WaitNode::new(),
            _pin: PhantomPinned,
        }
        .await
    }

    /// Blocks the thread until a value arrives (for code outside the
    /// runtime).
    ///
    /// # Panics
    /// On a weft worker thread or inside `block_on`.
    pub fn blocking_recv(&mut self) -> Result<T, RecvError>
    where
        T: Clone,
    {
        block_on(self.recv())
    }

    /// A new receiver that gets every value sent from now on.
    pub fn resubscribe(&self) -> Receiver<T> {
        new_receiver(&self.shared)
    }

    /// Values sent that this receiver has not read (at most the capacity).
    pub fn len(&self) -> usize {
        let tail = lock(&self.shared.tail);
        (tail.pos.wrapping_sub(self.next) as usize).min(self.shared.buffer.len())
    }

    /// True if there is nothing new to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live receivers of the channel.
    pub fn receiver_count(&self) -> usize {
        lock(&self.shared.tail).rx_count
    }

    /// True if both receivers listen to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        lock(&self.shared.tail).rx_count -= 1;
    }
}

/// The future of [`Receiver::recv`]; its node is linked into the waiting
/// list while it waits.
struct Recv<'a, T> {
    rx: &'a mut Receiver<T>,
    node: WaitNode,
    _pin: PhantomPinned,
}

impl<T: Clone> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the node is never moved out of the pinned future.
        let this = unsafe { self.get_unchecked_mut() };
        let restore = std::task::ready!(coop::poll_proceed(cx));
        let Receiver { shared, next } = &mut *this.rx;
        let shared: &Shared<T> = shared;
        // The scope first: a cancelled receive reads nothing.
        if let Some(c) = scope_cancelled() {
            leave(shared, &mut this.node);
            restore.made_progress();
            return Poll::Ready(Err(RecvError::Cancelled(c)));
        }
        if let Read::Ready(slot) = read(shared, next, None) {
            let value = take(slot, next);
            leave(shared, &mut this.node);
            restore.made_progress();
            return Poll::Ready(Ok(value));
        }
        if let Some(c) = before_wait() {
            leave(shared, &mut this.node);
            restore.made_progress();
            return Poll::Ready(Err(RecvError::Cancelled(c)));
        }
        let mut tail = lock(&shared.tail);
        let taken = take_locked(shared, next, &tail);
        let result = match taken {
            Ok(None) => {
                // SAFETY: the future is pinned and leaves the list in
                // `Drop`.
                unsafe { this.node.link(&mut tail.waiters, cx.waker()) };
                crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::BroadcastRecv);
                return Poll::Pending;
            }
            Ok(Some(value)) => Ok(value),
            Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(_) => Err(RecvError::Closed),
        };
        this.node.leave_locked(&mut tail.waiters);
        drop(tail);
        restore.made_progress();
        Poll::Ready(result)
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        leave(&self.rx.shared, &mut self.node);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Receiver")
            .field("next", &self.next)
            .finish()
    }
}
