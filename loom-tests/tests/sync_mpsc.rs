#![cfg(weft_loom)]
//! `weft::sync::mpsc` under loom (`runtime/src/sync/mpsc/`): blocks of two
//! slots under `cfg(weft_loom)`, so a block change is reached. Concurrent
//! pushes across a block boundary deliver every value once and never miss
//! the receiver's waker; a receiver drop racing a send drops the value
//! exactly once; a receive cancelled through its scope while a send lands
//! takes nothing; a waiting sender cancelled while the receiver frees a
//! slot either sends or hands the slot back; a receive racing a sender on
//! its way into the queue never strands the permit it returns (the
//! receiver's `returned` counter and the `queued` handshake); sends racing
//! receives take the returned permits in bulk and lose none.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test sync_mpsc`

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
    sync::mpsc,
    task::JoinHandle,
};

/// Counts its own drop.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A bounded(1) channel holding 1, and a task in `scope` sending 2 into it
/// (it queues for capacity when run). Its output: the send's result, the
/// value back on failure.
fn full_channel_and_a_sender(
    sched: &MockScheduler,
    scope: &CancelNode,
) -> (
    mpsc::Sender<u8>,
    mpsc::Receiver<u8>,
    JoinHandle<Result<(), u8>>,
) {
    let (tx, rx) = mpsc::channel::<u8>(1);
    tx.try_send(1).unwrap();
    let join = {
        let tx = tx.clone();
        sched.spawn_child(scope, async move {
            tx.send(2).await.map_err(|e| e.into_inner())
        })
    };
    (tx, rx, join)
}

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn concurrent_pushes_across_a_block_arrive_once() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<u8>();
        // Slot 0 is taken: the two racing sends fill the block's last slot
        // and the next block's first, one of them installing that block.
        tx.send(0).unwrap();
        let tx2 = tx.clone();
        let a = thread::spawn(move || tx2.send(1).unwrap());
        // Races `a` for the block's last slot; the loser waits for the
        // winner to install the next block.
        tx.send(2).unwrap();
        drop(tx);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(loom::future::block_on(rx.recv()).expect("three values"));
        }
        assert_eq!(got[0], 0, "the first send first");
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2], "each value once");
        a.join().unwrap();
        assert_eq!(
            loom::future::block_on(rx.recv()),
            Err(mpsc::RecvError::Closed)
        );
    });
}

#[test]
fn a_receiver_drop_racing_a_send_drops_the_value_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel(1);
        let value = DropCount(drops.clone());
        let sender = thread::spawn(move || {
            // Err gives the value back; dropping it counts.
            let _ = tx.try_send(value);
            tx
        });
        drop(rx);
        let tx = sender.join().unwrap();
        drop(tx);
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn a_cancelled_receive_racing_a_send_takes_nothing() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let scope = CancelNode::root();
        let (tx, rx) = mpsc::channel::<u8>(1);
        let mut join = sched.spawn_child(&scope, async move {
            let mut rx = rx;
            let got = rx.recv().await;
            (got, rx)
        });
        let sender = thread::spawn(move || {
            tx.try_send(5).unwrap();
            tx
        });
        let canceller = {
            let scope = scope.clone();
            thread::spawn(move || scope.cancel(Cause::Explicit))
        };
        sched.run_all();
        let tx = sender.join().unwrap();
        canceller.join().unwrap();
        sched.run_all();
        let (got, mut rx) = match noop_poll(&mut join) {
            Poll::Ready(Ok(out)) => out,
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            Poll::Pending => panic!("lost wake"),
        };
        match got {
            Ok(v) => {
                assert_eq!(v, 5);
                assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty), "once");
            }
            Err(mpsc::RecvError::Cancelled(_)) => {
                assert_eq!(rx.try_recv(), Ok(5), "a cancelled receive took nothing");
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(tx.capacity(), 1);
    });
}

#[test]
fn a_waiting_sender_cancelled_while_a_slot_frees_sends_or_hands_it_back() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let scope = CancelNode::root();
        let (tx, mut rx, mut join) = full_channel_and_a_sender(&sched, &scope);
        // The sender queues for capacity.
        sched.run_all();
        let receiver = thread::spawn(move || {
            assert_eq!(rx.try_recv(), Ok(1));
            rx
        });
        let canceller = {
            let scope = scope.clone();
            thread::spawn(move || scope.cancel(Cause::Explicit))
        };
        let mut rx = receiver.join().unwrap();
        canceller.join().unwrap();
        sched.run_all();
        let sent = match noop_poll(&mut join) {
            Poll::Ready(Ok(out)) => out,
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            Poll::Pending => panic!("lost wake"),
        };
        match sent {
            Ok(()) => assert_eq!(rx.try_recv(), Ok(2)),
            Err(v) => {
                assert_eq!(v, 2, "the value came back");
                assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
            }
        }
        assert_eq!(tx.capacity(), 1, "the slot is back either way");
    });
}

#[test]
fn a_receive_racing_a_sender_on_its_way_into_the_queue_never_strands_the_permit() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let scope = CancelNode::root();
        let (tx, mut rx, mut join) = full_channel_and_a_sender(&sched, &scope);
        // The receive returns its permit while the send looks for one and
        // queues: either the send takes it, or the receive hands it over.
        let receiver = thread::spawn(move || {
            assert_eq!(rx.try_recv(), Ok(1));
            rx
        });
        sched.run_all();
        let mut rx = receiver.join().unwrap();
        sched.run_all();
        match noop_poll(&mut join) {
            Poll::Ready(Ok(Ok(()))) => {}
            Poll::Ready(Ok(Err(v))) => panic!("the send failed with {v}"),
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            Poll::Pending => panic!("the returned permit was stranded"),
        }
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(tx.capacity(), 1);
    });
}

#[test]
fn a_try_send_racing_a_receive_sees_the_returned_permit_or_full() {
    loom::model(|| {
        let (tx, mut rx) = mpsc::channel::<u8>(1);
        tx.try_send(1).unwrap();
        let receiver = thread::spawn(move || {
            assert_eq!(rx.try_recv(), Ok(1));
            rx
        });
        let early = tx.try_send(2);
        let mut rx = receiver.join().unwrap();
        match early {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(2)) => tx.try_send(2).unwrap(),
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(tx.capacity(), 1);
    });
}

#[test]
fn sends_taking_returned_permits_in_bulk_lose_none() {
    loom::model(|| {
        // Full at 2; the receiver returns both permits (to its counter:
        // fewer than a fold) while the sender tries twice. A send that
        // finds the senders' word empty takes every returned permit and
        // moves the spare one to the word.
        let (tx, mut rx) = mpsc::channel::<u8>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        let receiver = thread::spawn(move || {
            assert_eq!(rx.try_recv(), Ok(1));
            assert_eq!(rx.try_recv(), Ok(2));
            rx
        });
        let early = [tx.try_send(3), tx.try_send(4)];
        let mut rx = receiver.join().unwrap();
        for (result, value) in early.into_iter().zip([3, 4]) {
            match result {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(v)) => tx.try_send(v).unwrap(),
                Err(e) => panic!("unexpected {e:?} for {value}"),
            }
        }
        assert_eq!(tx.capacity(), 0);
        let mut got = [rx.try_recv().unwrap(), rx.try_recv().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [3, 4]);
        assert_eq!(tx.capacity(), 2, "every permit back");
    });
}
