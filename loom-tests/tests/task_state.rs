//! The task state word under every interleaving loom can find: wakes racing
//! polls, aborts racing polls and completion, joins racing completion, and
//! the reference count reaching zero exactly once (a task cell that is never
//! freed leaks the loom `Arc` inside its future, which fails the model; a
//! double free fails it too).
#![cfg(weft_loom)]

use std::{
    future::{poll_fn, Future},
    pin::Pin,
    task::{Context, Poll, Waker},
};

use loom::{
    future::block_on,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    thread,
};
use weft::__loom::MockScheduler;

/// Counts its own drop; leaks if the task cell is never freed.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Pending until woken once through the waker it publishes.
struct WakeOnce {
    slot: Arc<Mutex<Option<Waker>>>,
    polled: bool,
    _guard: DropCount,
}

impl Future for WakeOnce {
    type Output = u32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        if self.polled {
            return Poll::Ready(7);
        }
        self.polled = true;
        *self.slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let waker = Waker::noop();
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

#[test]
fn wake_racing_poll_is_never_lost() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(Mutex::new(None::<Waker>));
        let mut join = sched.spawn(WakeOnce {
            slot: slot.clone(),
            polled: false,
            _guard: DropCount(drops.clone()),
        });
        let waker_thread = thread::spawn(move || loop {
            if let Some(waker) = slot.lock().unwrap().take() {
                waker.wake();
                break;
            }
            thread::yield_now();
        });
        sched.run_one();
        waker_thread.join().unwrap();
        sched.run_all();
        assert_eq!(noop_poll(&mut join).map(Result::unwrap), Poll::Ready(7));
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(sched.alive(), 0);
    });
}

#[test]
fn abort_racing_poll_drops_the_future_once() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCount(drops.clone());
        let mut join = sched.spawn(async move {
            let _guard = guard;
            // Never woken: only an abort ends it.
            std::future::pending::<()>().await;
        });
        let abort = join.abort_handle();
        let aborter = thread::spawn(move || abort.abort());
        sched.run_one();
        aborter.join().unwrap();
        sched.run_all();
        match noop_poll(&mut join) {
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            other => panic!(
                "expected a cancelled join, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(sched.alive(), 0);
    });
}

#[test]
fn abort_racing_completion_gives_one_outcome() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCount(drops.clone());
        let mut join = sched.spawn(async move {
            let _guard = guard;
            5u8
        });
        let abort = join.abort_handle();
        let aborter = thread::spawn(move || abort.abort());
        sched.run_all();
        aborter.join().unwrap();
        sched.run_all();
        match noop_poll(&mut join) {
            Poll::Ready(Ok(v)) => assert_eq!(v, 5),
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            Poll::Pending => panic!("a finished or aborted task must resolve"),
        }
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn join_racing_completion_wakes_the_joiner() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let join = sched.spawn(async { 3u8 });
        let joiner = thread::spawn(move || block_on(join).unwrap());
        sched.run_all();
        // A lost join wake shows up as a loom deadlock inside block_on.
        assert_eq!(joiner.join().unwrap(), 3);
        assert_eq!(sched.alive(), 0);
    });
}

#[test]
fn dropping_the_join_handle_racing_completion_drops_the_output_once() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let out = DropCount(drops.clone());
        let join = sched.spawn(async move { out });
        let dropper = thread::spawn(move || drop(join));
        sched.run_all();
        dropper.join().unwrap();
        assert_eq!(drops.load(SeqCst), 1);
    });
}

#[test]
fn join_waker_replaced_while_task_completes() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let mut join = sched.spawn(async { 9u8 });
        // First poll stores one waker; the second (from block_on) swaps it
        // while the task may be completing on the other thread.
        assert!(noop_poll(&mut join).is_pending());
        let runner = {
            let sched = sched.clone();
            thread::spawn(move || sched.run_all())
        };
        let out = block_on(poll_fn(|cx| Pin::new(&mut join).poll(cx)));
        runner.join().unwrap();
        assert_eq!(out.unwrap(), 9);
    });
}

#[test]
fn shutdown_racing_a_wake_cancels_and_frees() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(Mutex::new(None::<Waker>));
        let mut join = sched.spawn(WakeOnce {
            slot: slot.clone(),
            polled: false,
            _guard: DropCount(drops.clone()),
        });
        sched.run_one();
        let waker = slot
            .lock()
            .unwrap()
            .take()
            .expect("first poll stored its waker");
        let waker_thread = thread::spawn(move || waker.wake());
        sched.shutdown();
        waker_thread.join().unwrap();
        sched.shutdown();
        assert_eq!(drops.load(SeqCst), 1);
        assert!(matches!(noop_poll(&mut join), Poll::Ready(Err(ref e)) if e.is_cancelled()));
    });
}

/// The task registry (`task/list.rs`): a spawn on one thread binds while
/// another thread completes a task and unlinks it, on the single shard of a
/// mock scheduler (the unlink reads its links before taking the lock, as a
/// prefetch hint). Every task runs and is freed once and the registry ends
/// empty.
#[test]
fn registry_bind_racing_remove_keeps_the_list_whole() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let first = {
            let guard = DropCount(drops.clone());
            sched.spawn(async move {
                let _guard = guard;
                1u8
            })
        };
        let spawner = {
            let (sched, drops) = (sched.clone(), drops.clone());
            thread::spawn(move || {
                let guard = DropCount(drops);
                drop(sched.spawn(async move {
                    let _guard = guard;
                    2u8
                }));
            })
        };
        sched.run_all();
        spawner.join().unwrap();
        sched.run_all();
        assert_eq!(sched.alive(), 0);
        drop(first);
        assert_eq!(drops.load(SeqCst), 2);
    });
}

/// Hands its waker's clones to `out` at its first poll: the first clone
/// borrows the poller's reference (`task/waker.rs`), the second takes a
/// new one. Ready at once if `finish`, else at its second poll.
struct LendingClones {
    out: Arc<Mutex<Vec<Waker>>>,
    polled: bool,
    finish: bool,
    _guard: DropCount,
}

impl Future for LendingClones {
    type Output = u8;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
        if self.polled {
            return Poll::Ready(2);
        }
        self.polled = true;
        let clones = [cx.waker().clone(), cx.waker().clone()];
        self.out.lock().unwrap().extend(clones);
        if self.finish {
            Poll::Ready(1)
        } else {
            Poll::Pending
        }
    }
}

/// The lent reference racing the releases it backs: another thread drops
/// one clone and wakes with the other while the poll that made them ends,
/// and the join handle goes at the same time. The count is one low until
/// the poll ends; the task still runs to the end and is freed once.
#[test]
fn a_lent_waker_clone_released_while_its_poll_ends_frees_the_task_once() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let out = Arc::new(Mutex::new(Vec::new()));
        let join = sched.spawn(LendingClones {
            out: out.clone(),
            polled: false,
            finish: false,
            _guard: DropCount(drops.clone()),
        });
        let releaser = thread::spawn(move || loop {
            let mut clones = out.lock().unwrap().split_off(0).into_iter();
            if let (Some(first), Some(second)) = (clones.next(), clones.next()) {
                drop(first);
                second.wake();
                break;
            }
            thread::yield_now();
        });
        drop(join);
        sched.run_one();
        releaser.join().unwrap();
        sched.run_all();
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(sched.alive(), 0);
    });
}

/// A poll that lends its reference and completes: the lent reference is
/// added before the completion releases the poller's, so a clone released
/// on another thread meanwhile cannot free the task under its poller.
#[test]
fn a_lent_waker_clone_outliving_a_completing_poll_frees_the_task_once() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut join = sched.spawn(LendingClones {
            out: out.clone(),
            polled: false,
            finish: true,
            _guard: DropCount(drops.clone()),
        });
        let releaser = thread::spawn(move || loop {
            let clones: Vec<Waker> = out.lock().unwrap().drain(..).collect();
            if !clones.is_empty() {
                // Both go: wakes of a task that is running or complete.
                for (i, w) in clones.into_iter().enumerate() {
                    if i == 0 {
                        w.wake();
                    } else {
                        drop(w);
                    }
                }
                break;
            }
            thread::yield_now();
        });
        sched.run_one();
        releaser.join().unwrap();
        sched.run_all();
        assert_eq!(noop_poll(&mut join).map(Result::unwrap), Poll::Ready(1));
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(sched.alive(), 0);
    });
}
