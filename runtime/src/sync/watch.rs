//! A watch channel: one [`Sender`] keeps a value, any number of
//! [`Receiver`]s see its latest version and wait for changes.
//!
//! ```
//! # weft::runtime::Runtime::new().unwrap().block_on(async {
//! let (tx, mut rx) = weft::sync::watch::channel("starting");
//! weft::spawn(async move { tx.send("ready").unwrap() });
//! rx.changed().await.unwrap();
//! assert_eq!(*rx.borrow_and_update(), "ready");
//! # });
//! ```
//!
//! # Protocol
//! - The value sits behind a reader-writer lock. `state` holds the version
//!   (`state >> 1`, bumped by every send after the value is written, with
//!   Release) and `CLOSED` (the sender is gone).
//! - Each receiver remembers the version it saw last; a change is a newer
//!   version in `state`.
//! - A receiver waiting in [`Receiver::changed`] links a node (in its future:
//!   no allocation per wait) into `rx_waiters`, after re-checking `state`
//!   under that list's lock. A send bumps the version first, then takes the
//!   lock and wakes every linked node, so a waiter either sees the new
//!   version or is woken. The sender's drop sets `CLOSED` the same way.
//! - [`Sender::closed`] waits in `tx_waiters` for the receiver count to reach
//!   zero; the last receiver's drop wakes it the same way.
//!
//! # Cancellation
//! `changed().await` and `closed().await` are await points of the task's
//! scope: in a cancelled scope, or past its deadline, they return the
//! cancellation at once and every time, without marking anything seen.

use std::{
    fmt,
    future::Future,
    marker::PhantomPinned,
    ops::Deref,
    pin::Pin,
    task::{Context, Poll},
};

use super::channel_wait::{before_wait, scope_cancelled, wake_all, WaitNode};
use crate::{
    cancel::Cancelled,
    coop,
    facade::{
        atomic::{AtomicUsize, Ordering::*},
        lock, Arc, Mutex,
    },
    sync::wait_list::WaitList,
};

#[cfg(weft_loom)]
use loom::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(weft_shuttle)]
use shuttle::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(any(weft_loom, weft_shuttle)))]
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The sender is gone: no version comes after the current one.
const CLOSED: usize = 1;
/// One version step in `state`.
const VERSION: usize = 2;

/// Creates a watch channel holding `init`.
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        value: RwLock::new(init),
        state: AtomicUsize::new(0),
        rx_count: AtomicUsize::new(1),
        rx_waiters: Mutex::new(WaitList::new()),
        tx_waiters: Mutex::new(WaitList::new()),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared, seen: 0 },
    )
}

struct Shared<T> {
    value: RwLock<T>,
    /// Version and `CLOSED`.
    state: AtomicUsize,
    rx_count: AtomicUsize,
    /// Receivers waiting in `changed()`.
    rx_waiters: Mutex<WaitList<()>>,
    /// The sender waiting in `closed()`.
    tx_waiters: Mutex<WaitList<()>>,
}

/// Publishes new versions of the value.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// Sees the latest value and waits for changes. Cloning makes another
/// receiver that has seen what this one has.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version (`state >> 1`, as stored) this receiver saw last.
    seen: usize,
}

/// A read lock on the value. Holding it blocks the sender: keep it short,
/// and never across an `.await`.
pub struct Ref<'a, T> {
    guard: RwLockReadGuard<'a, T>,
    has_changed: bool,
}

impl<T> Ref<'_, T> {
    /// True if this value was new to the receiver that borrowed it.
    pub fn has_changed(&self) -> bool {
        self.has_changed
    }
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// A send with no receiver left; the value comes back.
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

/// Why a wait for a change ended without one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The sender is gone and this receiver has seen the last version.
    Closed,
    /// The waiting task's scope was cancelled (or its deadline passed).
    Cancelled(Cancelled),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("channel closed"),
            RecvError::Cancelled(c) => write!(f, "wait cancelled: {c}"),
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

fn read<T>(value: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    match value.read() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn write<T>(value: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    match value.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl<T> Shared<T> {
    /// Wakes every node of `list` under its lock.
    fn notify(list: &Mutex<WaitList<()>>) {
        wake_all(&mut lock(list));
    }
}

impl<T> Sender<T> {
    /// Replaces the value and notifies the receivers; `Err` (with the
    /// value) if there is no receiver.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.receiver_count() == 0 {
            return Err(SendError(value));
        }
        self.send_replace(value);
        Ok(())
    }

    /// Replaces the value whether or not anyone listens; returns the old
    /// one.
    pub fn send_replace(&self, value: T) -> T {
        let mut value = Some(value);
        let mut old = None;
        self.send_if_modified(|v| {
            old = Some(std::mem::replace(v, value.take().expect("called once")));
            true
        });
        old.expect("the closure ran")
    }

    /// Modifies the value in place and notifies the receivers.
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.send_if_modified(|v| {
            modify(v);
            true
        });
    }

    /// Modifies the value in place; notifies the receivers only if
    /// `modify` returns true. Returns what `modify` returned.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        {
            let mut guard = write(&self.shared.value);
            if !modify(&mut guard) {
                return false;
            }
            // Release (under the write lock): a receiver that sees the new
            // version and then reads the value gets this one or newer.
            self.shared.state.fetch_add(VERSION, Release);
        }
        Shared::<T>::notify(&self.shared.rx_waiters);
        true
    }

    /// A read lock on the current value.
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref {
            guard: read(&self.shared.value),
            has_changed: false,
        }
    }

    /// A new receiver that has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.rx_count.fetch_add(1, Relaxed);
        let seen = self.shared.state.load(Acquire) & !CLOSED;
        Receiver {
            shared: self.shared.clone(),
            seen,
        }
    }

    /// Live receivers.
    pub fn receiver_count(&self) -> usize {
        self.shared.rx_count.load(Acquire)
    }

    /// True if no receiver is left.
    pub fn is_closed(&self) -> bool {
        self.receiver_count() == 0
    }

    /// Completes when every receiver is gone; `Err` if the task's scope is
    /// cancelled first.
    pub async fn closed(&self) -> Result<(), Cancelled> {
        WaitFor {
            shared: &self.shared,
            node: WaitNode::new(),
            kind: Kind::Closed,
            seen: 0,
            _pin: PhantomPinned,
        }
        .await
        .map(|_| ())
        .map_err(|e| match e {
            RecvError::Cancelled(c) => c,
            RecvError::Closed => unreachable!("a closed() wait only ends cancelled"),
        })
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.state.fetch_or(CLOSED, Release);
        Shared::<T>::notify(&self.shared.rx_waiters);
    }
}

impl<T> Receiver<T> {
    /// A read lock on the current value; does not mark it seen.
    pub fn borrow(&self) -> Ref<'_, T> {
        let guard = read(&self.shared.value);
        let version = self.shared.state.load(Acquire) & !CLOSED;
        Ref {
            guard,
            has_changed: version != self.seen,
        }
    }

    /// A read lock on the current value, marking it seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let guard = read(&self.shared.value);
        // Under the read lock no send is writing: the version read now is
        // the value's.
        let version = self.shared.state.load(Acquire) & !CLOSED;
        let has_changed = version != self.seen;
        self.seen = version;
        Ref { guard, has_changed }
    }

    /// True if a version newer than the last seen one exists; `Err` if the
    /// sender is gone and there is none.
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        let state = self.shared.state.load(Acquire);
        let changed = state & !CLOSED != self.seen;
        if !changed && state & CLOSED != 0 {
            return Err(RecvError::Closed);
        }
        Ok(changed)
    }

    /// Marks the current version seen.
    pub fn mark_unchanged(&mut self) {
        self.seen = self.shared.state.load(Acquire) & !CLOSED;
    }

    /// Marks the current version unseen, so `changed()` returns at once.
    pub fn mark_changed(&mut self) {
        self.seen = self.seen.wrapping_sub(VERSION);
    }

    /// Waits for a version newer than the last seen one and marks it seen.
    ///
    /// `Err(Closed)` if the sender is gone and there is none;
    /// `Err(Cancelled)` if the task's scope is cancelled or past its
    /// deadline (checked first: nothing is marked seen then).
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        let seen = WaitFor {
            shared: &self.shared,
            node: WaitNode::new(),
            kind: Kind::Changed,
            seen: self.seen,
            _pin: PhantomPinned,
        }
        .await;
        seen.map(|version| self.seen = version)
    }

    /// Waits until `f` holds for the value, checking the current value
    /// first; returns a read lock on the value that satisfied it.
    pub async fn wait_for(
        &mut self,
        mut f: impl FnMut(&T) -> bool,
    ) -> Result<Ref<'_, T>, RecvError> {
        loop {
            {
                let current = self.borrow_and_update();
                if f(&current) {
                    break;
                }
            }
            self.changed().await?;
        }
        Ok(self.borrow())
    }

    /// True if both receivers watch the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.rx_count.fetch_add(1, Relaxed);
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.shared.rx_count.fetch_sub(1, AcqRel) == 1 {
            Shared::<T>::notify(&self.shared.tx_waiters);
        }
    }
}

enum Kind {
    /// A receiver waits for a version past `seen`.
    Changed,
    /// The sender waits for the receiver count to reach zero.
    Closed,
}

/// The wait future of `changed` (output: the version now seen) and of
/// `closed`.
struct WaitFor<'a, T> {
    shared: &'a Shared<T>,
    node: WaitNode,
    kind: Kind,
    seen: usize,
    _pin: PhantomPinned,
}

impl<T> WaitFor<'_, T> {
    fn list<'s>(&self) -> &'s Mutex<WaitList<()>>
    where
        Self: 's,
    {
        let shared: &'s Shared<T> = self.shared;
        match self.kind {
            Kind::Changed => &shared.rx_waiters,
            Kind::Closed => &shared.tx_waiters,
        }
    }

    /// `Some(result)` if the wait is over.
    fn check(&self) -> Option<Result<usize, RecvError>> {
        match self.kind {
            Kind::Changed => {
                let state = self.shared.state.load(Acquire);
                let version = state & !CLOSED;
                if version != self.seen {
                    Some(Ok(version))
                } else if state & CLOSED != 0 {
                    Some(Err(RecvError::Closed))
                } else {
                    None
                }
            }
            Kind::Closed => (self.shared.rx_count.load(Acquire) == 0).then_some(Ok(0)),
        }
    }
}

impl<T> Future for WaitFor<'_, T> {
    type Output = Result<usize, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the node is never moved out of the pinned future.
        let this = unsafe { self.get_unchecked_mut() };
        let restore = std::task::ready!(coop::poll_proceed(cx));
        let list = this.list();
        if let Some(c) = scope_cancelled() {
            this.node.leave(list);
            restore.made_progress();
            return Poll::Ready(Err(RecvError::Cancelled(c)));
        }
        if let Some(done) = this.check() {
            this.node.leave(list);
            restore.made_progress();
            return Poll::Ready(done);
        }
        if let Some(c) = before_wait() {
            this.node.leave(list);
            restore.made_progress();
            return Poll::Ready(Err(RecvError::Cancelled(c)));
        }
        let mut waiters = lock(list);
        // Under the lock: a send bumps the version before taking it.
        if let Some(done) = this.check() {
            drop(waiters);
            this.node.leave(list);
            restore.made_progress();
            return Poll::Ready(done);
        }
        // SAFETY: the future is pinned and leaves the list in `Drop`.
        unsafe { this.node.link(&mut waiters, cx.waker()) };
        crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::Watch);
        Poll::Pending
    }
}

impl<T> Drop for WaitFor<'_, T> {
    fn drop(&mut self) {
        let list = match self.kind {
            Kind::Changed => &self.shared.rx_waiters,
            Kind::Closed => &self.shared.tx_waiters,
        };
        self.node.leave(list);
    }
}

impl<T: fmt::Debug> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Sender")
            .field("receivers", &self.receiver_count())
            .finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Receiver")
            .field("seen", &(self.seen >> 1))
            .finish()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::task::Waker;

    use super::*;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn versions_and_seen_marks() {
        let (tx, mut rx) = channel(1);
        assert_eq!(rx.has_changed(), Ok(false));
        tx.send(2).unwrap();
        assert_eq!(rx.has_changed(), Ok(true));
        assert!(rx.borrow().has_changed());
        assert_eq!(*rx.borrow_and_update(), 2);
        assert_eq!(rx.has_changed(), Ok(false));
        assert!(!tx.send_if_modified(|_| false));
        assert_eq!(rx.has_changed(), Ok(false));
        tx.send_modify(|v| *v += 1);
        rx.mark_unchanged();
        assert_eq!(rx.has_changed(), Ok(false));
        rx.mark_changed();
        assert_eq!(rx.has_changed(), Ok(true));
        assert_eq!(tx.send_replace(9), 3);
        drop(tx);
        assert_eq!(
            rx.has_changed(),
            Ok(true),
            "an unseen version outlives the sender"
        );
        rx.mark_unchanged();
        assert_eq!(rx.has_changed(), Err(RecvError::Closed));
    }

    #[test]
    fn a_pending_changed_sees_the_next_send() {
        let (tx, mut rx) = channel(0);
        {
            let mut changed = std::pin::pin!(rx.changed());
            assert!(changed.as_mut().poll(&mut noop_cx()).is_pending());
            tx.send(1).unwrap();
            assert_eq!(changed.as_mut().poll(&mut noop_cx()), Poll::Ready(Ok(())));
        }
        assert_eq!(rx.has_changed(), Ok(false), "changed() marked it seen");
        let mut changed = std::pin::pin!(rx.changed());
        assert!(changed.as_mut().poll(&mut noop_cx()).is_pending());
        drop(tx);
        assert_eq!(
            changed.as_mut().poll(&mut noop_cx()),
            Poll::Ready(Err(RecvError::Closed))
        );
    }

    #[test]
    fn send_without_receivers_gives_the_value_back() {
        let (tx, rx) = channel(0);
        let rx2 = tx.subscribe();
        assert_eq!(tx.receiver_count(), 2);
        drop(rx);
        drop(rx2);
        assert!(tx.is_closed());
        assert_eq!(tx.send(5), Err(SendError(5)));
    }
}
