//! The io_uring op cell's lifecycle word (`runtime/src/io/uring/op.rs`):
//! a completion on the ring's thread racing the future's polls (a waker
//! being replaced) and the future's drop. A completion is never missed (a
//! lost wake deadlocks `block_on`), the result or the data goes to exactly
//! one side, and every waker is dropped (a leaked one leaks the loom `Arc`
//! inside it, which fails the model). Also the compat write-behind's send,
//! submitted with no waker and looked at before anyone waits for it.
#![cfg(weft_loom)]

use std::{
    future::poll_fn,
    task::{Poll, Wake, Waker},
};

use loom::{
    future::block_on,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    thread,
};
use weft::__loom::IoOpCell;

/// Counts its wakes; holds a loom `Arc` so a leaked waker fails the model.
struct CountingWaker(Arc<AtomicUsize>);

impl Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting_waker(wakes: &Arc<AtomicUsize>) -> Waker {
    Waker::from(std::sync::Arc::new(CountingWaker(wakes.clone())))
}

/// The op was filled with one task's waker; the future is polled by
/// another (a task that moved, a combinator's waker) while the completion
/// arrives: the new waker is registered or the result seen, never neither.
#[test]
fn a_completion_racing_a_waker_change_is_never_lost() {
    loom::model(|| {
        let orphans = Arc::new(AtomicUsize::new(0));
        let first = Arc::new(AtomicUsize::new(0));
        let op = IoOpCell::new(Some(&counting_waker(&first)), orphans.clone());
        let ring = {
            let op = op.clone();
            thread::spawn(move || op.complete(7))
        };
        let res = block_on(poll_fn(|cx| op.poll(cx)));
        ring.join().unwrap();
        assert_eq!(res, 7);
        assert_eq!(orphans.load(SeqCst), 0);
        assert!(first.load(SeqCst) <= 1);
    });
}

/// The future is dropped while the completion arrives: the data is
/// orphaned exactly once, by whichever side comes second; the stored
/// waker is woken at most once and dropped.
#[test]
fn a_completion_racing_the_futures_drop_orphans_the_data_once() {
    loom::model(|| {
        let orphans = Arc::new(AtomicUsize::new(0));
        let wakes = Arc::new(AtomicUsize::new(0));
        let op = IoOpCell::new(Some(&counting_waker(&wakes)), orphans.clone());
        let ring = {
            let op = op.clone();
            thread::spawn(move || op.complete(3))
        };
        let pending = op.abandon();
        ring.join().unwrap();
        assert_eq!(orphans.load(SeqCst), 1);
        // A wake only if the completion came first.
        assert!(wakes.load(SeqCst) <= usize::from(!pending));
    });
}

/// Polled once with a new waker, then dropped, while the completion
/// arrives: a poll that saw the result took the data (nothing orphaned);
/// otherwise the drop or the completion orphans it, once.
#[test]
fn a_poll_then_a_drop_racing_the_completion_hand_the_data_on_once() {
    loom::model(|| {
        let orphans = Arc::new(AtomicUsize::new(0));
        let wakes = Arc::new(AtomicUsize::new(0));
        let op = IoOpCell::new(None, orphans.clone());
        let ring = {
            let op = op.clone();
            thread::spawn(move || op.complete(1))
        };
        let waker = counting_waker(&wakes);
        let polled = op.poll(&mut std::task::Context::from_waker(&waker));
        if polled.is_pending() {
            op.abandon();
        }
        ring.join().unwrap();
        let expected = if polled.is_ready() { 0 } else { 1 };
        assert_eq!(orphans.load(SeqCst), expected);
        assert!(matches!(polled, Poll::Ready(1) | Poll::Pending));
    });
}

/// The compat write-behind: a send submitted with no waker, whose
/// completion wakes nobody; a later write looks (`is_complete`) and, if it
/// must, waits. A look that says complete is followed by a poll that has
/// the result (so the write never waits for a completion already in); a
/// wait after a look that said not yet is woken, or sees the result.
#[test]
fn an_unwaited_op_is_seen_complete_or_waited_for_never_lost() {
    loom::model(|| {
        let orphans = Arc::new(AtomicUsize::new(0));
        let op = IoOpCell::new(None, orphans.clone());
        let ring = {
            let op = op.clone();
            thread::spawn(move || op.complete(5))
        };
        let wakes = Arc::new(AtomicUsize::new(0));
        let waker = counting_waker(&wakes);
        if op.is_complete() {
            let polled = op.poll(&mut std::task::Context::from_waker(&waker));
            assert!(
                matches!(polled, Poll::Ready(5)),
                "seen complete, polled ready"
            );
        } else {
            assert_eq!(block_on(poll_fn(|cx| op.poll(cx))), 5);
        }
        ring.join().unwrap();
        assert_eq!(orphans.load(SeqCst), 0);
        assert_eq!(wakes.load(SeqCst), 0, "the look registers no waker");
    });
}
