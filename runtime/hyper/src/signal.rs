//! Two small synchronisation pieces the server needs: a one-shot broadcast
//! ([`Signal`], "start the graceful shutdown") and a count of live things
//! that can be awaited down to zero ([`Tracker`], connections).
//!
//! Both are polled on every poll of a connection, so the hot path is one
//! atomic load; a waker is stored once per waiter (a connection task's
//! waker does not change) and replaced only when it would wake another task.

use std::{
    future::poll_fn,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::*},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll, Waker},
};

use slab::Slab;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A one-shot broadcast: once [`fire`](Signal::fire)d, every
/// [`Listener`] sees it, now and on every later poll.
#[derive(Default)]
pub(crate) struct Signal {
    /// Set once, never cleared. Release on set, Acquire on read: a listener
    /// that sees it also sees everything the firing thread did before.
    fired: AtomicBool,
    wakers: Mutex<Slab<Waker>>,
}

impl Signal {
    pub(crate) fn fire(&self) {
        self.fired.store(true, Release);
        let wakers: Vec<Waker> = lock(&self.wakers).drain().collect();
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Acquire)
    }
}

/// One waiter of a [`Signal`]; removes its waker on drop.
pub(crate) struct Listener {
    signal: Arc<Signal>,
    key: Option<usize>,
    waker: Option<Waker>,
}

impl Listener {
    pub(crate) fn new(signal: Arc<Signal>) -> Listener {
        Listener {
            signal,
            key: None,
            waker: None,
        }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_fired() {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let mut wakers = lock(&self.signal.wakers);
        // Checked again under the lock: `fire` sets the flag before it
        // drains, so a waker stored after the drain sees the flag here.
        if self.signal.is_fired() {
            return Poll::Ready(());
        }
        // Keys are exact: before the fire only their owner removes them,
        // and after it (the drain) nobody inserts.
        match self.key {
            Some(k) => wakers[k] = cx.waker().clone(),
            None => self.key = Some(wakers.insert(cx.waker().clone())),
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            let mut wakers = lock(&self.signal.wakers);
            if !self.signal.is_fired() {
                wakers.remove(k);
            }
        }
    }
}

/// A count of live items and one waiter for it to reach zero.
#[derive(Default)]
pub(crate) struct Tracker {
    live: AtomicUsize,
    waiter: Mutex<Option<Waker>>,
}

impl Tracker {
    /// Counts one more item until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> TrackerGuard {
        // Relaxed: the count is read only as a number; the zero handshake
        // goes through the mutex.
        self.live.fetch_add(1, Relaxed);
        TrackerGuard(self.clone())
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Completes when the count is zero. Not a cancellation point by itself:
    /// the server wraps it in a timeout.
    pub(crate) async fn zero(&self) {
        poll_fn(|cx| {
            if self.live.load(Acquire) == 0 {
                return Poll::Ready(());
            }
            *lock(&self.waiter) = Some(cx.waker().clone());
            if self.live.load(Acquire) == 0 {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }
}

/// Keeps one item of a [`Tracker`] counted.
pub(crate) struct TrackerGuard(Arc<Tracker>);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        // AcqRel: the waiter's Acquire load of zero sees the item's work.
        if self.0.live.fetch_sub(1, AcqRel) == 1 {
            if let Some(w) = lock(&self.0.waiter).take() {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_sees_a_signal_fired_before_or_after_it_waits() {
        let signal = Arc::new(Signal::default());
        let mut early = Listener::new(signal.clone());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(early.poll(&mut cx).is_pending());
        assert_eq!(lock(&signal.wakers).len(), 1);
        // A second poll with the same waker stores nothing new.
        assert!(early.poll(&mut cx).is_pending());
        assert_eq!(lock(&signal.wakers).len(), 1);
        let dropped = {
            let mut l = Listener::new(signal.clone());
            assert!(l.poll(&mut cx).is_pending());
            l
        };
        drop(dropped);
        signal.fire();
        assert!(early.poll(&mut cx).is_ready());
        assert!(Listener::new(signal.clone()).poll(&mut cx).is_ready());
        assert!(lock(&signal.wakers).is_empty());
    }

    #[test]
    fn tracker_counts_guards() {
        let t = Arc::new(Tracker::default());
        let a = t.enter();
        let b = t.enter();
        assert_eq!(t.live(), 2);
        drop(a);
        drop(b);
        assert_eq!(t.live(), 0);
    }
}
