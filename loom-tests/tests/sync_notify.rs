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
