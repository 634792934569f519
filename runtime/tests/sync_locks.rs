//! `weft::sync`'s lock-type primitives on a real runtime: every wait
//! interrupted by a deadline (`time::timeout`, a task spawned with a
//! deadline) and by an explicit cancel (`JoinHandle::cancel`,
//! `cancel::scope`) with nothing lost — permits counted back, the next
//! waiter gets the lock, a notification passed on — level-triggered errors,
//! close semantics, FIFO fairness, and many tasks contending.
//!
//! Run under both io drivers (`WEFT_IO=epoll` for the fallback).

mod common;

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    task::Poll,
    time::Duration,
};

use common::{assert_no_live_tasks, block_on_bounded, rt};
use weft::{
    cancel::{scope, Cause},
    runtime::Runtime,
    sync::{
        error::{AcquireError, SetError, TryAcquireError},
        Barrier, Mutex, Notify, OnceCell, RwLock, Semaphore,
    },
    task::Builder,
    time::{sleep, timeout},
};

const SHORT: Duration = Duration::from_millis(30);
const LONG: Duration = Duration::from_secs(3600);

fn in_task<F>(rt: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_on_bounded(rt, rt.spawn(future)).expect("the test's task completed")
}

/// Polls `fut` once from inside the current task.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Waits (bounded, yielding) until `cond` holds.
async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..200_000 {
        if cond() {
            return;
        }
        weft::task::yield_now().await;
    }
    panic!("condition not reached");
}

// ---------------------------------------------------------------- Semaphore

#[test]
fn semaphore_wait_cut_by_a_task_deadline_hands_its_permits_back() {
    let rt = rt(2);
    let _in_rt = rt.enter();
    let sem = Arc::new(Semaphore::new(2));
    let waiter = {
        let sem = sem.clone();
        Builder::new().timeout(SHORT).spawn(async move {
            // Takes the 2 available permits and waits for 3 more.
            let first = sem.acquire_many(5).await.map(|p| p.num_permits());
            // Level-triggered: permits are there, the scope is still past
            // its deadline.
            let again = sem.try_acquire().map(|p| p.num_permits());
            let second = sem.acquire().await.map(|p| p.num_permits());
            (first, again, second)
        })
    };
    let (first, again, second) = block_on_bounded(&rt, waiter).unwrap();
    let c = first.expect_err("the deadline ends the wait");
    assert!(c.cancelled().unwrap().is_deadline(), "{c:?}");
    assert_eq!(again, Ok(1), "try_acquire is not a wait");
    assert!(matches!(second, Err(AcquireError::Cancelled(_))));
    assert_eq!(sem.available_permits(), 2, "the partial 2 came back");
    assert_no_live_tasks(&rt);
}

#[test]
fn semaphore_wait_cut_by_timeout_and_by_cancel_loses_nothing() {
    let rt = rt(2);
    let sem = Arc::new(Semaphore::new(2));
    let s = sem.clone();
    let r = in_task(&rt, async move {
        let cut = timeout(SHORT, s.acquire_many(3)).await;
        (
            cut.is_err() || matches!(cut, Ok(Err(AcquireError::Cancelled(_)))),
            s.available_permits(),
        )
    });
    assert_eq!(r, (true, 2));

    // An explicit cancel of a waiting task; the next waiter then gets all.
    let held = sem.clone().try_acquire_owned().unwrap();
    let cancelled = {
        let sem = sem.clone();
        rt.spawn(async move { sem.acquire_many(2).await.map(|_| ()) })
    };
    let next = {
        let sem = sem.clone();
        rt.spawn(async move {
            until(|| sem.available_permits() == 0).await;
            sem.acquire_many(2).await.map(|p| p.num_permits())
        })
    };
    std::thread::sleep(SHORT);
    assert!(cancelled.cancel());
    let e = block_on_bounded(&rt, cancelled).unwrap().unwrap_err();
    assert_eq!(e.cancelled().unwrap().cause(), Cause::Explicit);
    drop(held);
    assert_eq!(block_on_bounded(&rt, next).unwrap(), Ok(2));
    assert_eq!(sem.available_permits(), 2);

    // A `cancel::scope` cancelled from another task.
    let s = sem.clone();
    let r = in_task(&rt, async move {
        let _all = s.acquire_many(2).await.unwrap();
        let sc = scope(s.acquire());
        let handle = sc.handle();
        weft::spawn(async move {
            let _ = sleep(Duration::from_millis(5)).await;
            handle.cancel();
        });
        sc.await.map(|_| ()).unwrap_err()
    });
    assert_eq!(r.cancelled().unwrap().cause(), Cause::Explicit);
    assert_eq!(sem.available_permits(), 2);
    assert_no_live_tasks(&rt);
}

#[test]
fn semaphore_close_fails_waiters_and_later_acquires() {
    let rt = rt(2);
    let sem = Arc::new(Semaphore::new(2));
    let s = sem.clone();
    let (waited, after, try_after, count) = in_task(&rt, async move {
        let held = s.acquire().await.unwrap();
        let waiter = {
            let s = s.clone();
            weft::spawn(async move { s.acquire_many(2).await.map(|_| ()) })
        };
        until(|| s.available_permits() == 0).await;
        weft::spawn({
            let s = s.clone();
            async move { s.close() }
        });
        let waited = waiter.await.unwrap();
        drop(held);
        let after = s.acquire().await.map(|_| ());
        let try_after = s.try_acquire().map(|_| ());
        (waited, after, try_after, s.available_permits())
    });
    assert_eq!(waited, Err(AcquireError::Closed));
    assert_eq!(after, Err(AcquireError::Closed));
    assert_eq!(try_after, Err(TryAcquireError::Closed));
    assert_eq!(count, 2, "the held and the partially given permits count");
    assert!(sem.is_closed());
    assert_no_live_tasks(&rt);
}

#[test]
fn semaphore_serves_waiters_in_order() {
    let rt = rt(2);
    let order = in_task(&rt, async {
        let sem = Semaphore::new(0);
        let mut a = pin!(sem.acquire_many(2));
        let mut b = pin!(sem.acquire());
        let mut c = pin!(sem.acquire());
        assert!(poll_once(a.as_mut()).await.is_pending());
        assert!(poll_once(b.as_mut()).await.is_pending());
        assert!(poll_once(c.as_mut()).await.is_pending());
        let mut order = Vec::new();
        for _ in 0..4 {
            sem.add_permits(1);
            if !order.contains(&'a') {
                if let Poll::Ready(r) = poll_once(a.as_mut()).await {
                    r.unwrap().forget();
                    order.push('a');
                }
            }
            if !order.contains(&'b') {
                if let Poll::Ready(r) = poll_once(b.as_mut()).await {
                    r.unwrap().forget();
                    order.push('b');
                }
            }
            if !order.contains(&'c') {
                if let Poll::Ready(r) = poll_once(c.as_mut()).await {
                    r.unwrap().forget();
                    order.push('c');
                }
            }
        }
        assert_eq!(sem.available_permits(), 0);
        order
    });
    assert_eq!(order, ['a', 'b', 'c']);
}

// -------------------------------------------------------------------- Mutex

#[test]
fn mutex_many_tasks_contending_end_exact() {
    let rt = rt(2);
    const TASKS: usize = 16;
    const ROUNDS: usize = 2_000;
    let m = Arc::new(Mutex::new((0usize, 0usize)));
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let m = m.clone();
            rt.spawn(async move {
                for r in 0..ROUNDS {
                    let mut g = m.lock().await.unwrap();
                    // A non-atomic read-modify-write across a yield: lost
                    // updates if two tasks were ever inside at once.
                    let v = g.0;
                    if (r + i) % 64 == 0 {
                        weft::task::yield_now().await;
                    }
                    g.0 = v + 1;
                    g.1 += 1;
                }
            })
        })
        .collect();
    for h in handles {
        block_on_bounded(&rt, h).unwrap();
    }
    assert_eq!(*m.try_lock().unwrap(), (TASKS * ROUNDS, TASKS * ROUNDS));
    assert_no_live_tasks(&rt);
}

#[test]
fn mutex_lock_cut_by_deadline_and_cancel_passes_the_lock_on() {
    let rt = rt(2);
    let m = Arc::new(Mutex::new(0u32));
    let m2 = m.clone();
    let (deadline_err, level, scoped, next) = in_task(&rt, async move {
        let g = m2.clone().lock_owned().await.unwrap();
        // A waiter with a deadline.
        let w = {
            let m = m2.clone();
            Builder::new().timeout(SHORT).spawn(async move {
                let first = m.lock().await.map(|_| ());
                (first, m.lock().await.map(|_| ()))
            })
        };
        let (deadline_err, level) = w.await.unwrap();
        // A waiter in a cancelled scope.
        let sc = scope(m2.lock());
        let h = sc.handle();
        weft::spawn(async move {
            let _ = sleep(Duration::from_millis(5)).await;
            h.cancel();
        });
        let scoped = sc.await.map(|_| ());
        // A waiter cancelled through its handle, then one that gets it.
        let cancelled = {
            let m = m2.clone();
            weft::spawn(async move { m.lock().await.map(|_| ()) })
        };
        let next = {
            let m = m2.clone();
            weft::spawn(async move {
                let mut g = m.lock().await.unwrap();
                *g += 1;
                *g
            })
        };
        let _ = sleep(Duration::from_millis(5)).await;
        cancelled.cancel();
        let c = cancelled.await.unwrap();
        assert_eq!(c.unwrap_err().cause(), Cause::Explicit);
        drop(g);
        (deadline_err, level, scoped, next.await.unwrap())
    });
    assert!(deadline_err.unwrap_err().is_deadline());
    let level = level.unwrap_err();
    assert!(level.is_deadline(), "the second lock fails too: {level:?}");
    assert_eq!(scoped.unwrap_err().cause(), Cause::Explicit);
    assert_eq!(next, 1, "the lock went on to the next waiter");
    assert!(m.try_lock().is_ok(), "and was released");
    let m3 = m.clone();
    let timed = in_task(&rt, async move {
        let _g = m3.lock().await.unwrap();
        let cut = timeout(SHORT, m3.lock()).await;
        cut.is_err() || matches!(cut, Ok(Err(_)))
    });
    assert!(timed);
    assert_eq!(*m.try_lock().unwrap(), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn mutex_is_fair_fifo() {
    let rt = rt(2);
    let order = in_task(&rt, async {
        let m = Mutex::new(Vec::new());
        let g = m.lock().await.unwrap();
        let mut a = pin!(m.lock());
        let mut b = pin!(m.lock());
        let mut c = pin!(m.lock());
        for f in [a.as_mut(), b.as_mut(), c.as_mut()] {
            assert!(poll_once(f).await.is_pending());
        }
        drop(g);
        assert!(m.try_lock().is_err(), "a newcomer does not overtake");
        assert!(poll_once(c.as_mut()).await.is_pending());
        assert!(poll_once(b.as_mut()).await.is_pending());
        let Poll::Ready(Ok(mut ga)) = poll_once(a.as_mut()).await else {
            panic!("a is first")
        };
        ga.push('a');
        drop(ga);
        assert!(poll_once(c.as_mut()).await.is_pending());
        let Poll::Ready(Ok(mut gb)) = poll_once(b.as_mut()).await else {
            panic!("b is second")
        };
        gb.push('b');
        drop(gb);
        let Poll::Ready(Ok(mut gc)) = poll_once(c.as_mut()).await else {
            panic!("c is third")
        };
        gc.push('c');
        drop(gc);
        let out = m.try_lock().unwrap().clone();
        out
    });
    assert_eq!(order, ['a', 'b', 'c']);
}

#[test]
#[should_panic(expected = "inside a weft runtime")]
fn blocking_lock_inside_the_runtime_panics() {
    let rt = rt(1);
    let m = Mutex::new(());
    rt.block_on(async {
        let _g = m.blocking_lock();
    });
}

// ------------------------------------------------------------------- RwLock

#[test]
fn rwlock_writer_cut_short_lets_the_readers_behind_it_in() {
    let rt = rt(2);
    let l = Arc::new(RwLock::new(5u32));
    let l2 = l.clone();
    let (w_err, r_val, cancelled) = in_task(&rt, async move {
        let r1 = l2.read().await.unwrap();
        let writer = {
            let l = l2.clone();
            Builder::new()
                .timeout(SHORT)
                .spawn(async move { l.write().await.map(|_| ()) })
        };
        // A reader queued behind the writer waits for it.
        let reader = {
            let l = l2.clone();
            weft::spawn(async move {
                let _ = sleep(Duration::from_millis(10)).await;
                let v = *l.read().await.unwrap();
                v
            })
        };
        let w_err = writer.await.unwrap();
        let r_val = reader.await.unwrap();
        // Explicit cancel of a writer.
        let writer = {
            let l = l2.clone();
            weft::spawn(async move { l.write().await.map(|_| ()) })
        };
        let _ = sleep(Duration::from_millis(5)).await;
        writer.cancel();
        let cancelled = writer.await.unwrap();
        drop(r1);
        (w_err, r_val, cancelled)
    });
    assert!(w_err.unwrap_err().is_deadline());
    assert_eq!(r_val, 5);
    assert_eq!(cancelled.unwrap_err().cause(), Cause::Explicit);
    *l.try_write().expect("every permit came back") += 1;
    assert_eq!(*l.try_read().unwrap(), 6);
    assert_no_live_tasks(&rt);
}

#[test]
fn rwlock_queued_writer_blocks_new_readers() {
    let rt = rt(2);
    in_task(&rt, async {
        let l = RwLock::new(0);
        let r = l.read().await.unwrap();
        let mut w = pin!(l.write());
        assert!(poll_once(w.as_mut()).await.is_pending());
        let mut r2 = pin!(l.read());
        assert!(poll_once(r2.as_mut()).await.is_pending());
        assert!(l.try_read().is_err());
        drop(r);
        let Poll::Ready(Ok(mut g)) = poll_once(w.as_mut()).await else {
            panic!("writer next")
        };
        *g = 1;
        drop(g);
        let Poll::Ready(Ok(g)) = poll_once(r2.as_mut()).await else {
            panic!("then the reader")
        };
        assert_eq!(*g, 1);
    });
}

// ------------------------------------------------------------------- Notify

#[test]
fn notify_one_given_to_a_cancelled_waiter_goes_to_the_next() {
    let rt = rt(2);
    in_task(&rt, async {
        let n = Notify::new();
        let mut a = pin!(scope(n.notified()));
        let handle = a.handle();
        let mut b = pin!(n.notified());
        assert!(poll_once(a.as_mut()).await.is_pending());
        assert!(poll_once(b.as_mut()).await.is_pending());
        n.notify_one(); // to `a`, first in line
        handle.cancel();
        let Poll::Ready(Err(c)) = poll_once(a.as_mut()).await else {
            panic!("a's scope is cancelled")
        };
        assert_eq!(c.cause(), Cause::Explicit);
        assert_eq!(poll_once(b.as_mut()).await, Poll::Ready(Ok(())));
        assert!(
            poll_once(pin!(n.notified())).await.is_pending(),
            "delivered once, not stored as well"
        );
    });
}

#[test]
fn notify_wait_cut_by_deadline_and_cancel_loses_no_permit() {
    let rt = rt(2);
    let _in_rt = rt.enter();
    let n = Arc::new(Notify::new());
    let w = {
        let n = n.clone();
        Builder::new().timeout(SHORT).spawn(async move {
            let first = n.notified().await;
            n.notify_one();
            // Level-triggered: the stored permit is not consumed.
            (first, n.notified().await)
        })
    };
    let (first, second) = block_on_bounded(&rt, w).unwrap();
    assert!(first.unwrap_err().is_deadline());
    assert!(second.unwrap_err().is_deadline());
    let n2 = n.clone();
    let got = in_task(&rt, async move { n2.notified().await });
    assert_eq!(
        got,
        Ok(()),
        "the permit stored in the cancelled scope is there"
    );

    let waiter = {
        let n = n.clone();
        rt.spawn(async move { n.notified().await })
    };
    let next = {
        let n = n.clone();
        rt.spawn(async move { n.notified().await })
    };
    std::thread::sleep(SHORT);
    waiter.cancel();
    n.notify_one();
    assert_eq!(
        block_on_bounded(&rt, waiter).unwrap().unwrap_err().cause(),
        Cause::Explicit
    );
    assert_eq!(block_on_bounded(&rt, next).unwrap(), Ok(()));
    let n3 = n.clone();
    let timed = in_task(&rt, async move { timeout(SHORT, n3.notified()).await });
    assert!(timed.is_err() || matches!(timed, Ok(Err(_))));
    assert_no_live_tasks(&rt);
}

#[test]
fn notify_waiters_wakes_every_waiter_across_tasks() {
    let rt = rt(2);
    let n = Arc::new(Notify::new());
    let woken = Arc::new(AtomicUsize::new(0));
    let registered = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (n, woken, registered) = (n.clone(), woken.clone(), registered.clone());
            rt.spawn(async move {
                let mut f = pin!(n.notified());
                f.as_mut().enable();
                registered.fetch_add(1, SeqCst);
                f.await.unwrap();
                woken.fetch_add(1, SeqCst);
            })
        })
        .collect();
    assert!(common::eventually(|| registered.load(SeqCst) == 100));
    n.notify_waiters();
    for h in handles {
        block_on_bounded(&rt, h).unwrap();
    }
    assert_eq!(woken.load(SeqCst), 100);
    let n2 = n.clone();
    let after = in_task(&rt, async move {
        let mut f = pin!(n2.notified());
        poll_once(f.as_mut()).await.is_pending()
    });
    assert!(after, "notify_waiters stores no permit");
    assert_no_live_tasks(&rt);
}

// ------------------------------------------------------------------ Barrier

#[test]
fn barrier_waiter_cut_short_withdraws_and_the_rest_pass() {
    let rt = rt(2);
    let _in_rt = rt.enter();
    let b = Arc::new(Barrier::new(3));
    let cut = {
        let b = b.clone();
        Builder::new()
            .timeout(SHORT)
            .spawn(async move { b.wait().await.map(|r| r.is_leader()) })
    };
    assert!(block_on_bounded(&rt, cut)
        .unwrap()
        .unwrap_err()
        .is_deadline());
    let cancelled = {
        let b = b.clone();
        rt.spawn(async move { b.wait().await.map(|r| r.is_leader()) })
    };
    std::thread::sleep(SHORT);
    cancelled.cancel();
    assert_eq!(
        block_on_bounded(&rt, cancelled)
            .unwrap()
            .unwrap_err()
            .cause(),
        Cause::Explicit
    );
    // Neither counts: two arrivals do not release a barrier of 3.
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            rt.spawn(async move { b.wait().await.map(|r| r.is_leader()) })
        })
        .collect();
    std::thread::sleep(SHORT);
    assert!(handles.iter().all(|h| !h.is_finished()));
    let b2 = b.clone();
    let third = in_task(&rt, async move { b2.wait().await.map(|r| r.is_leader()) });
    let mut leaders = usize::from(third.unwrap());
    for h in handles {
        leaders += usize::from(block_on_bounded(&rt, h).unwrap().unwrap());
    }
    assert_eq!(leaders, 1);
    assert_no_live_tasks(&rt);
}

// ------------------------------------------------------------------ OnceCell

#[test]
fn once_cell_initializer_cancelled_leaves_it_to_the_next_caller() {
    let rt = rt(2);
    let _in_rt = rt.enter();
    let cell = Arc::new(OnceCell::<u32>::new());
    let started = common::Flag::new();
    let first = {
        let (cell, started) = (cell.clone(), started.clone());
        rt.spawn(async move {
            cell.get_or_try_init(|| async {
                started.set();
                sleep(LONG).await?;
                Ok::<u32, weft::cancel::Cancelled>(1)
            })
            .await
            .copied()
        })
    };
    assert!(started.wait());
    let second = {
        let cell = cell.clone();
        rt.spawn(async move { cell.get_or_init(|| async { 2 }).await.copied() })
    };
    let cut = {
        let cell = cell.clone();
        Builder::new()
            .timeout(SHORT)
            .spawn(async move { cell.get_or_init(|| async { 3 }).await.copied() })
    };
    assert!(block_on_bounded(&rt, cut)
        .unwrap()
        .unwrap_err()
        .is_deadline());
    assert_eq!(cell.set(9), Err(SetError::Initializing(9)));
    first.cancel();
    assert_eq!(
        block_on_bounded(&rt, first).unwrap().unwrap_err().cause(),
        Cause::Explicit
    );
    assert_eq!(block_on_bounded(&rt, second).unwrap(), Ok(2));
    assert_eq!(cell.get(), Some(&2));

    // An initializer dropped by abort leaves the cell empty too.
    let cell = Arc::new(OnceCell::<u32>::new());
    let started = common::Flag::new();
    let aborted = {
        let (cell, started) = (cell.clone(), started.clone());
        rt.spawn(async move {
            cell.get_or_init(|| async {
                started.set();
                std::future::pending::<()>().await;
                1
            })
            .await
            .copied()
        })
    };
    assert!(started.wait());
    aborted.abort();
    assert!(block_on_bounded(&rt, aborted).is_err());
    assert!(!cell.initialized());
    let c = cell.clone();
    assert_eq!(
        in_task(
            &rt,
            async move { c.get_or_init(|| async { 4 }).await.copied() }
        ),
        Ok(4)
    );
    assert_no_live_tasks(&rt);
}

// ------------------------------------------------------------ owned & more

#[test]
fn owned_permits_and_guards_move_into_tasks_and_come_back() {
    let rt = rt(2);
    let sem = Arc::new(Semaphore::new(3));
    let m = Arc::new(Mutex::new(Vec::new()));
    let (s, mm) = (sem.clone(), m.clone());
    let left = in_task(&rt, async move {
        let mut permit = s.clone().acquire_many_owned(2).await.unwrap();
        let one = permit.split(1).unwrap();
        assert!(Arc::ptr_eq(one.semaphore(), &s));
        let guard = mm.clone().lock_owned().await.unwrap();
        let h = weft::spawn(async move {
            let mut guard = guard;
            guard.push(permit.num_permits() + one.num_permits());
            // Both permits and the guard are dropped here, in another task.
        });
        h.await.unwrap();
        s.available_permits()
    });
    assert_eq!(left, 3);
    assert_eq!(*m.try_lock().unwrap(), [2]);
    assert_no_live_tasks(&rt);
}

#[test]
fn notify_waiters_skips_a_cancelled_waiter_and_stores_nothing() {
    let rt = rt(2);
    let n = Arc::new(Notify::new());
    let registered = Arc::new(AtomicUsize::new(0));
    let spawn_waiter = |n: Arc<Notify>, registered: Arc<AtomicUsize>| {
        rt.spawn(async move {
            let mut f = pin!(n.notified());
            f.as_mut().enable();
            registered.fetch_add(1, SeqCst);
            f.await
        })
    };
    let a = spawn_waiter(n.clone(), registered.clone());
    let b = spawn_waiter(n.clone(), registered.clone());
    let c = spawn_waiter(n.clone(), registered.clone());
    assert!(common::eventually(|| registered.load(SeqCst) == 3));
    b.cancel();
    assert_eq!(
        block_on_bounded(&rt, b).unwrap().unwrap_err().cause(),
        Cause::Explicit
    );
    n.notify_waiters();
    assert_eq!(block_on_bounded(&rt, a).unwrap(), Ok(()));
    assert_eq!(block_on_bounded(&rt, c).unwrap(), Ok(()));
    let n2 = n.clone();
    let pending = in_task(&rt, async move {
        let mut f = pin!(n2.notified());
        poll_once(f.as_mut()).await.is_pending()
    });
    assert!(pending);
    assert_no_live_tasks(&rt);
}

#[test]
fn rwlock_reader_cut_by_deadline_leaves_the_count_exact() {
    let rt = rt(2);
    let _in_rt = rt.enter();
    let l = Arc::new(RwLock::with_max_readers(0u8, 3));
    let w = l.try_write().unwrap();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let l = l.clone();
            Builder::new()
                .timeout(SHORT)
                .spawn(async move { l.read().await.map(|g| *g) })
        })
        .collect();
    for r in readers {
        assert!(block_on_bounded(&rt, r).unwrap().unwrap_err().is_deadline());
    }
    drop(w);
    let guards: Vec<_> = (0..3).map(|_| l.try_read().unwrap()).collect();
    assert!(l.try_read().is_err(), "exactly max_readers readers");
    drop(guards);
    assert!(l.try_write().is_ok());
    assert_no_live_tasks(&rt);
}

/// `timeout` and `cancel::scope` around the waits not covered above (the
/// RwLock's, the Barrier's, the OnceCell's), each leaving the primitive as
/// it was; a second wait in the cancelled scope fails again.
#[test]
fn rwlock_barrier_once_cell_waits_cut_by_timeout_and_scope() {
    let rt = rt(2);
    let l = Arc::new(RwLock::new(0u32));
    let b = Arc::new(Barrier::new(2));
    let cell = Arc::new(OnceCell::<u32>::new());
    let (l2, b2, c2) = (l.clone(), b.clone(), cell.clone());
    in_task(&rt, async move {
        // RwLock: a writer waiting behind a reader, then a reader waiting
        // behind a writer.
        let r = l2.read().await.unwrap();
        assert!(timeout(SHORT, l2.write()).await.is_err());
        drop(r);
        let w = l2.write().await.unwrap();
        let sc = scope(async {
            let first = l2.read().await.map(|_| ());
            (first, l2.read().await.map(|_| ()))
        });
        let h = sc.handle();
        weft::spawn(async move {
            let _ = sleep(Duration::from_millis(5)).await;
            h.cancel();
        });
        let (first, again) = sc.await;
        assert_eq!(first.unwrap_err().cause(), Cause::Explicit);
        assert_eq!(again.unwrap_err().cause(), Cause::Explicit);
        drop(w);
        assert!(l2.try_write().is_ok(), "nothing left held");

        // Barrier of 2: a lone waiter cut by a timeout, then by a scope;
        // its arrival is withdrawn each time.
        assert!(timeout(SHORT, b2.wait()).await.is_err());
        let sc = scope(b2.wait());
        let h = sc.handle();
        weft::spawn(async move {
            let _ = sleep(Duration::from_millis(5)).await;
            h.cancel();
        });
        assert_eq!(sc.await.unwrap_err().cause(), Cause::Explicit);
        let other = {
            let b = b2.clone();
            weft::spawn(async move { b.wait().await.map(|r| r.is_leader()) })
        };
        let me = b2.wait().await.unwrap().is_leader();
        assert!(me != other.await.unwrap().unwrap(), "one leader of two");

        // OnceCell: an initializer cut by a timeout, a waiter cut by a
        // scope while another initializer runs.
        let cut = timeout(
            SHORT,
            c2.get_or_init(|| async {
                let _ = sleep(LONG).await;
                1
            }),
        )
        .await;
        assert!(cut.is_err());
        assert!(!c2.initialized(), "a cut initializer leaves it empty");
        let started = Arc::new(Notify::new());
        let slow = {
            let (c, started) = (c2.clone(), started.clone());
            weft::spawn(async move {
                c.get_or_init(|| async {
                    started.notify_one();
                    let _ = sleep(Duration::from_millis(50)).await;
                    2
                })
                .await
                .copied()
            })
        };
        started.notified().await.unwrap();
        let sc = scope(c2.get_or_init(|| async { 3 }));
        let h = sc.handle();
        weft::spawn(async move {
            let _ = sleep(Duration::from_millis(5)).await;
            h.cancel();
        });
        assert_eq!(sc.await.copied().unwrap_err().cause(), Cause::Explicit);
        assert_eq!(slow.await.unwrap(), Ok(2));
        assert_eq!(c2.get(), Some(&2));
    });
    assert_eq!(*l.try_read().unwrap(), 0);
    assert_eq!(cell.get(), Some(&2));
    drop(b);
    assert_no_live_tasks(&rt);
}
