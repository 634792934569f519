#![cfg(weft_loom)]
//! `weft::sync::Notify` under every interleaving loom can find: a
//! `notify_one` racing a waiter that leaves (a cancelled or dropped
//! `Notified`) — the notification reaches the next waiter or is stored,
//! never lost and never delivered twice; `notify_one` racing a first poll
//! — no lost wakeup; `notify_waiters` racing a leaving waiter.
//!
//! The `Notify` is leaked to get the `&'static` that a `Notified` moved to
//! a loom thread needs.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use loom::{future::block_on, thread};
use weft::sync::Notify;

fn poll_noop<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn leaked() -> &'static Notify {
    Box::leak(Box::new(Notify::new()))
}

#[test]
fn notify_one_racing_a_dropped_waiter_reaches_the_next() {
    loom::model(|| {
        let n = leaked();
        let mut first = Box::pin(n.notified());
        let mut second = Box::pin(n.notified());
        assert!(!first.as_mut().enable());
        assert!(!second.as_mut().enable());
        let leaver = thread::spawn(move || drop(first));
        let notifier = thread::spawn(move || n.notify_one());
        leaver.join().unwrap();
        notifier.join().unwrap();
        // Whether `first` was chosen and passed it on, or `second` was
        // chosen directly: `second` has it, and it was delivered once.
        assert_eq!(poll_noop(second.as_mut()), Poll::Ready(Ok(())));
        assert!(poll_noop(Box::pin(n.notified()).as_mut()).is_pending());
    });
}

#[test]
fn notify_one_racing_a_dropped_sole_waiter_is_stored() {
    loom::model(|| {
        let n = leaked();
        let waiter = thread::spawn(move || {
            let mut f = Box::pin(n.notified());
            // Consumed if the permit was already stored; otherwise linked
            // and then dropped, passing on anything it was given.
            poll_noop(f.as_mut()).is_ready()
        });
        n.notify_one();
        let consumed = waiter.join().unwrap();
        let stored = poll_noop(Box::pin(n.notified()).as_mut()).is_ready();
        assert!(
            consumed != stored,
            "exactly one consumer: {consumed} {stored}"
        );
    });
}

#[test]
fn notify_one_racing_the_first_poll_is_not_lost() {
    loom::model(|| {
        let n = Arc::new(Notify::new());
        let notifier = {
            let n = n.clone();
            thread::spawn(move || n.notify_one())
        };
        block_on(n.notified()).unwrap();
        notifier.join().unwrap();
    });
}

#[test]
fn notify_waiters_racing_a_leaving_waiter_wakes_the_other() {
    loom::model(|| {
        let n = leaked();
        let mut stays = Box::pin(n.notified());
        let mut leaves = Box::pin(n.notified());
        assert!(!leaves.as_mut().enable());
        assert!(!stays.as_mut().enable());
        let leaver = thread::spawn(move || drop(leaves));
        n.notify_waiters();
        leaver.join().unwrap();
        assert_eq!(poll_noop(stays.as_mut()), Poll::Ready(Ok(())));
        assert!(
            poll_noop(Box::pin(n.notified()).as_mut()).is_pending(),
            "notify_waiters stores nothing"
        );
    });
}

/// Two `notify_one`s from two threads reach two linked waiters: neither
/// notification is lost or stored, and no waiter is woken twice.
#[test]
fn two_notify_ones_reach_two_linked_waiters() {
    loom::model(|| {
        let n = leaked();
        let mut a = Box::pin(n.notified());
        let mut b = Box::pin(n.notified());
        assert!(!a.as_mut().enable());
        assert!(!b.as_mut().enable());
        let notifiers: Vec<_> = (0..2)
            .map(|_| thread::spawn(move || n.notify_one()))
            .collect();
        let waiter = thread::spawn(move || block_on(a).unwrap());
        block_on(b).unwrap();
        waiter.join().unwrap();
        for t in notifiers {
            t.join().unwrap();
        }
        assert!(
            poll_noop(Box::pin(n.notified()).as_mut()).is_pending(),
            "both went to waiters, none was stored"
        );
    });
}

/// A waiter entering the slot with its first poll, racing a
/// `notify_waiters` that must wake it (it was created before the call):
/// the EPOCH flip and the slot take in one CAS, against the waiter's CAS
/// into the slot and its second look at `calls`.
#[test]
fn notify_waiters_racing_a_waiter_entering_the_slot_wakes_it() {
    loom::model(|| {
        let n = leaked();
        let waiter = n.notified();
        let t = thread::spawn(move || block_on(waiter).unwrap());
        n.notify_waiters();
        t.join().unwrap();
        assert!(
            poll_noop(Box::pin(n.notified()).as_mut()).is_pending(),
            "notify_waiters stores nothing"
        );
    });
}

/// Two `notify_waiters` (EPOCH back where it was) racing the first poll of
/// a waiter created before both: it is still woken, not parked for good.
#[test]
fn two_notify_waiters_racing_a_waiter_entering_the_slot_wake_it() {
    loom::model(|| {
        let n = leaked();
        let waiter = n.notified();
        let t = thread::spawn(move || {
            n.notify_waiters();
            n.notify_waiters();
        });
        block_on(waiter).unwrap();
        t.join().unwrap();
    });
}

/// A waiter created while `notify_waiters` runs: woken by it only if
/// created before it; if not woken it waits in a consistent place (the
/// slot or the list), and the next `notify_one` reaches it, once.
#[test]
fn notify_waiters_racing_a_new_waiter_leaves_it_consistent() {
    loom::model(|| {
        let n = leaked();
        let t = thread::spawn(move || n.notify_waiters());
        let mut w = Box::pin(n.notified());
        let woken = w.as_mut().enable();
        t.join().unwrap();
        if !woken && poll_noop(w.as_mut()).is_pending() {
            n.notify_one();
            assert_eq!(poll_noop(w.as_mut()), Poll::Ready(Ok(())));
        }
        drop(w);
        assert!(
            poll_noop(Box::pin(n.notified()).as_mut()).is_pending(),
            "nothing was stored"
        );
    });
}

/// A slot waiter polled with a waker for the first time (it entered with
/// `enable`, without one) moves to the front of the list while a
/// `notify_one` takes the slot: either way it is woken, once.
#[test]
fn notify_one_racing_a_slot_waiter_changing_its_waker() {
    loom::model(|| {
        let n = leaked();
        let mut w = Box::pin(n.notified());
        assert!(!w.as_mut().enable());
        let t = thread::spawn(move || block_on(w).unwrap());
        n.notify_one();
        t.join().unwrap();
        assert!(
            poll_noop(Box::pin(n.notified()).as_mut()).is_pending(),
            "delivered once, not also stored"
        );
    });
}

/// `notify_one` racing the cancel of a slot waiter that a later waiter
/// queues behind: the leaving waiter's poll after its scope is cancelled
/// runs the same leave as this drop, so the notification reaches the list
/// waiter or is passed on to it, exactly once.
#[test]
fn notify_one_racing_a_leaving_slot_waiter_with_a_list_waiter_behind() {
    loom::model(|| {
        let n = leaked();
        let mut first = Box::pin(n.notified());
        assert!(poll_noop(first.as_mut()).is_pending()); // the slot
        let mut second = Box::pin(n.notified());
        assert!(poll_noop(second.as_mut()).is_pending()); // the list
        let leaver = thread::spawn(move || drop(first));
        n.notify_one();
        leaver.join().unwrap();
        assert_eq!(poll_noop(second.as_mut()), Poll::Ready(Ok(())));
        assert!(poll_noop(Box::pin(n.notified()).as_mut()).is_pending());
    });
}
