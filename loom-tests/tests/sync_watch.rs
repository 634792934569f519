#![cfg(weft_loom)]
//! `weft::sync::watch` under loom (`runtime/src/sync/watch.rs`): a send
//! racing a waiting `changed()` always wakes it, and a `changed()` cancelled
//! through its scope while a send lands marks nothing seen.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test sync_watch`

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use loom::thread;
use weft::{
    __loom::{CancelNode, MockScheduler},
    cancel::Cause,
    sync::watch,
};

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_send_racing_a_waiting_changed_wakes_it() {
    loom::model(|| {
        let (tx, mut rx) = watch::channel(0u8);
        let sender = thread::spawn(move || {
            tx.send(1).unwrap();
            tx
        });
        loom::future::block_on(rx.changed()).unwrap();
        assert_eq!(*rx.borrow_and_update(), 1);
        drop(sender.join().unwrap());
        assert_eq!(
            loom::future::block_on(rx.changed()),
            Err(watch::RecvError::Closed)
        );
    });
}

#[test]
fn a_cancelled_changed_racing_a_send_marks_nothing_seen() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let scope = CancelNode::root();
        let (tx, rx) = watch::channel(0u8);
        let mut join = sched.spawn_child(&scope, async move {
            let mut rx = rx;
            let got = rx.changed().await;
            (got, rx)
        });
        let sender = thread::spawn(move || {
            tx.send(1).unwrap();
            tx
        });
        let canceller = {
            let scope = scope.clone();
            thread::spawn(move || scope.cancel(Cause::Explicit))
        };
        sched.run_all();
        let _tx = sender.join().unwrap();
        canceller.join().unwrap();
        sched.run_all();
        let (got, rx) = match noop_poll(&mut join) {
            Poll::Ready(Ok(out)) => out,
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            Poll::Pending => panic!("lost wake"),
        };
        match got {
            Ok(()) => assert_eq!(rx.has_changed(), Ok(false)),
            Err(watch::RecvError::Cancelled(_)) => {
                assert_eq!(rx.has_changed(), Ok(true), "the change stays unseen")
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    });
}
