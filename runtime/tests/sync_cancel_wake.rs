//! A waiter on any `weft::sync` primitive, cancelled by its scope, is woken
//! by the cancel itself and ends on its next poll (issue 12's "woken within
//! one scheduler tick"): the waiting future is polled exactly twice, once
//! to wait and once to return the cancellation, whether the cancel is
//! explicit (`JoinHandle::cancel`) or the task's deadline passing. A third
//! poll would mean the wake came from somewhere else (a retry, a timer, a
//! spurious wake the primitive had to absorb).
//!
//! Run under both io drivers (`WEFT_IO=epoll` for the fallback).

mod common;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::Duration,
};

use common::{assert_no_live_tasks, block_on_bounded, counting_polls, eventually, rt};
use weft::{
    cancel::Cause,
    runtime::Runtime,
    sync::{broadcast, mpsc, oneshot, watch, Barrier, Mutex, Notify, OnceCell, RwLock, Semaphore},
    task::Builder,
};

const DEADLINE: Duration = Duration::from_millis(30);

/// How the waiting task is cut short.
#[derive(Clone, Copy, Debug)]
enum Cut {
    Explicit,
    Deadline,
}

/// Runs `wait` (its output: the cancellation's cause if the wait ended
/// with one) in a task cut by `cut`; asserts the cause and that the wait
/// was polled exactly twice.
fn assert_one_wake<F>(rt: &Runtime, what: &str, cut: Cut, wait: F)
where
    F: Future<Output = Option<Cause>> + Send + 'static,
{
    let polls = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let task = counting_polls(polls.clone(), waiting.clone(), wait);
    let handle = match cut {
        Cut::Explicit => rt.spawn(task),
        Cut::Deadline => {
            let _in_rt = rt.enter();
            Builder::new().timeout(DEADLINE).spawn(task)
        }
    };
    assert!(
        eventually(|| waiting.load(SeqCst) == 1),
        "{what}: the task never started waiting"
    );
    if let Cut::Explicit = cut {
        assert!(handle.cancel(), "{what}: the task was still running");
    }
    let cause = block_on_bounded(rt, handle).expect("the task ends with its wait's result");
    let want = match cut {
        Cut::Explicit => Cause::Explicit,
        Cut::Deadline => Cause::Deadline,
    };
    assert_eq!(cause, Some(want), "{what} cut by {cut:?}: the wait's error");
    assert_eq!(
        polls.load(SeqCst),
        2,
        "{what} cut by {cut:?}: one poll to wait, one to report the cancel"
    );
}

#[test]
fn every_primitives_wait_ends_on_the_poll_after_its_cancel() {
    let rt = rt(2);
    for cut in [Cut::Explicit, Cut::Deadline] {
        // Channels: nothing is ever sent, so every wait is a real one.
        let (tx, rx) = oneshot::channel::<u32>();
        assert_one_wake(&rt, "oneshot recv", cut, async move {
            match rx.await {
                Err(oneshot::RecvError::Cancelled(c)) => Some(c.cause()),
                _ => None,
            }
        });
        drop(tx);

        let (tx, mut rx) = mpsc::channel::<u32>(4);
        assert_one_wake(&rt, "mpsc recv", cut, async move {
            rx.recv()
                .await
                .err()
                .and_then(|e| e.cancelled().map(|c| c.cause()))
        });
        drop(tx);

        let (tx, _rx) = mpsc::channel::<u32>(1);
        tx.try_send(1).unwrap();
        let sender = tx.clone();
        assert_one_wake(&rt, "mpsc send on a full channel", cut, async move {
            sender
                .send(2)
                .await
                .err()
                .and_then(|e| e.cancelled().map(|c| c.cause()))
        });
        assert_eq!(tx.capacity(), 0, "the cut send left the channel as it was");

        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        assert_one_wake(&rt, "unbounded mpsc recv", cut, async move {
            rx.recv()
                .await
                .err()
                .and_then(|e| e.cancelled().map(|c| c.cause()))
        });
        drop(tx);

        let (tx, mut rx) = broadcast::channel::<u32>(4);
        assert_one_wake(&rt, "broadcast recv", cut, async move {
            match rx.recv().await {
                Err(broadcast::RecvError::Cancelled(c)) => Some(c.cause()),
                _ => None,
            }
        });
        drop(tx);

        let (tx, mut rx) = watch::channel(0u32);
        assert_one_wake(&rt, "watch changed", cut, async move {
            match rx.changed().await {
                Err(watch::RecvError::Cancelled(c)) => Some(c.cause()),
                _ => None,
            }
        });
        drop(tx);

        // Locks, each held by the test while the task waits.
        let mutex = Arc::new(Mutex::new(0u32));
        let held = mutex.try_lock().unwrap();
        let m = mutex.clone();
        assert_one_wake(&rt, "Mutex lock", cut, async move {
            m.lock().await.err().map(|c| c.cause())
        });
        drop(held);
        assert!(
            mutex.try_lock().is_ok(),
            "the cut waiter does not hold the lock"
        );

        let lock = Arc::new(RwLock::new(0u32));
        let reading = lock.try_read().unwrap();
        let l = lock.clone();
        assert_one_wake(&rt, "RwLock write", cut, async move {
            l.write().await.err().map(|c| c.cause())
        });
        drop(reading);
        assert!(lock.try_write().is_ok(), "the cut writer left no claim");

        let sem = Arc::new(Semaphore::new(1));
        let permit = sem.try_acquire().unwrap();
        let s = sem.clone();
        assert_one_wake(&rt, "Semaphore acquire_many", cut, async move {
            s.acquire_many(2)
                .await
                .err()
                .and_then(|e| e.cancelled().map(|c| c.cause()))
        });
        drop(permit);
        assert_eq!(sem.available_permits(), 1, "every permit is back");

        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        assert_one_wake(&rt, "Notify notified", cut, async move {
            n.notified().await.err().map(|c| c.cause())
        });

        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        assert_one_wake(&rt, "Barrier wait", cut, async move {
            b.wait().await.err().map(|c| c.cause())
        });

        // A `get_or_init` waiting for another caller's initializer.
        let cell = Arc::new(OnceCell::<u32>::new());
        let (init_tx, init_rx) = oneshot::channel::<()>();
        let initializing = Arc::new(AtomicUsize::new(0));
        let initializer = {
            let (cell, initializing) = (cell.clone(), initializing.clone());
            rt.spawn(async move {
                let _ = cell
                    .get_or_init(|| async move {
                        initializing.store(1, SeqCst);
                        let _ = init_rx.await;
                        7
                    })
                    .await;
            })
        };
        // The waiter must find the initializer at work, or it would
        // initialize the cell itself without waiting.
        assert!(eventually(|| initializing.load(SeqCst) == 1));
        let c = cell.clone();
        assert_one_wake(
            &rt,
            "OnceCell get_or_init behind an initializer",
            cut,
            async move { c.get_or_init(|| async { 8 }).await.err().map(|c| c.cause()) },
        );
        init_tx.send(()).unwrap();
        block_on_bounded(&rt, initializer).unwrap();
        assert_eq!(cell.get(), Some(&7), "the first initializer's value stands");
    }
    assert_no_live_tasks(&rt);
}
