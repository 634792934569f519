#![cfg(weft_loom)]
//! `weft::sync::oneshot`'s state word (`runtime/src/sync/oneshot.rs`) under
//! loom: a send racing the receiver's drop drops the value exactly once; a
//! send racing a receive that is cancelled through the task's scope neither
//! loses the value nor delivers it twice, and never loses the wake.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test sync_oneshot`

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use loom::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    thread,
};
use weft::{
    __loom::{CancelNode, MockScheduler},
    cancel::Cause,
    sync::oneshot,
};

/// Counts its own drop.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn send_racing_the_receivers_drop_drops_the_value_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel();
        let value = DropCount(drops.clone());
        let sender = thread::spawn(move || {
            // Err gives the value back; dropping it counts.
            let _ = tx.send(value);
        });
        drop(rx);
        sender.join().unwrap();
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn send_racing_a_cancelled_receive_neither_loses_nor_doubles_the_value() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let scope = CancelNode::root();
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel::<(u8, DropCount)>();
        let mut join = sched.spawn_child(&scope, async move {
            let mut rx = rx;
            let got = (&mut rx).await;
            (got, rx)
        });
        let sender = {
            let value = DropCount(drops.clone());
            thread::spawn(move || tx.send((7, value)).map_err(|_| ()))
        };
        let canceller = {
            let scope = scope.clone();
            thread::spawn(move || scope.cancel(Cause::Explicit))
        };
        sched.run_all();
        sender.join().unwrap().expect("the receiver is alive");
        canceller.join().unwrap();
        sched.run_all();
        let (got, mut rx) = match noop_poll(&mut join) {
            Poll::Ready(Ok(out)) => out,
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            Poll::Pending => panic!("lost wake: neither the value nor the cancel woke the task"),
        };
        match got {
            Ok((7, value)) => {
                assert!(rx.try_recv().is_err(), "delivered once");
                drop(value);
            }
            Ok(_) => unreachable!(),
            Err(oneshot::RecvError::Cancelled(c)) => {
                assert_eq!(c.origin(), Cause::Explicit);
                let Ok((n, value)) = rx.try_recv() else {
                    panic!("a cancelled receive took nothing");
                };
                assert_eq!(n, 7);
                drop(value);
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        drop(rx);
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn a_pending_receiver_is_woken_by_the_send() {
    loom::model(|| {
        let (tx, rx) = oneshot::channel::<u8>();
        let sender = thread::spawn(move || tx.send(1).unwrap());
        assert_eq!(loom::future::block_on(rx), Ok(1));
        sender.join().unwrap();
    });
}

#[test]
fn closed_wait_racing_the_receivers_close_is_woken() {
    loom::model(|| {
        let (mut tx, mut rx) = oneshot::channel::<u8>();
        let closer = thread::spawn(move || {
            rx.close();
            rx
        });
        loom::future::block_on(tx.closed()).unwrap();
        assert_eq!(tx.send(2), Err(2));
        drop(closer.join().unwrap());
    });
}
