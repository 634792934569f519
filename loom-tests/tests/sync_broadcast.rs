#![cfg(weft_loom)]
//! `weft::sync::broadcast` under loom (`runtime/src/sync/broadcast.rs`): a
//! send racing a waiting `recv()` always wakes it, and a `recv()` cancelled
//! through its scope while a send lands reads nothing.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test sync_broadcast`

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use loom::thread;
use weft::{
    __loom::{CancelNode, MockScheduler},
    cancel::Cause,
    sync::broadcast,
};

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_send_racing_a_waiting_recv_wakes_it() {
    loom::model(|| {
        let (tx, mut rx) = broadcast::channel::<u8>(2);
        let sender = thread::spawn(move || {
            tx.send(1).unwrap();
        });
        assert_eq!(loom::future::block_on(rx.recv()), Ok(1));
        sender.join().unwrap();
        assert_eq!(
            loom::future::block_on(rx.recv()),
            Err(broadcast::RecvError::Closed)
        );
    });
}

#[test]
fn a_cancelled_recv_racing_a_send_reads_nothing() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let scope = CancelNode::root();
        let (tx, rx) = broadcast::channel::<u8>(2);
        let mut join = sched.spawn_child(&scope, async move {
            let mut rx = rx;
            let got = rx.recv().await;
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
        let (got, mut rx) = match noop_poll(&mut join) {
            Poll::Ready(Ok(out)) => out,
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            Poll::Pending => panic!("lost wake"),
        };
        match got {
            Ok(v) => {
                assert_eq!(v, 1);
                assert_eq!(rx.try_recv(), Err(broadcast::TryRecvError::Empty), "once");
            }
            Err(broadcast::RecvError::Cancelled(_)) => {
                assert_eq!(rx.try_recv(), Ok(1), "the value is still there")
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    });
}
