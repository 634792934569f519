//! Scopes inside a task: level-triggered await points after cancellation,
//! leaving a cancelled `scope`, `timeout` as a scope whose deadline spawned
//! tasks inherit, `shield`, `detached`, a long-lived scope that does not
//! accumulate finished children, and `lazy_scope` (made only when needed,
//! no deadline of its own).

mod common;

use std::{
    future::Future,
    sync::{mpsc, Arc, OnceLock},
    time::Duration,
};

use common::{assert_no_live_tasks, block_on_bounded, rt, Flag, LIMIT};
use weft::{
    cancel::{
        cancelled, deadline, is_cancelled, lazy_scope, remaining, scope, shield, CancelHandle,
        Cause,
    },
    runtime::Runtime,
    task::Builder,
    time::{sleep, timeout, Elapsed},
};

const LONG: Duration = Duration::from_secs(3600);

fn in_task<F>(rt: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_on_bounded(rt, rt.spawn(future)).expect("the test's task completed")
}

#[test]
fn every_await_point_after_cancellation_fails_and_keeps_failing() {
    let rt = rt(2);
    // Unrelated: a root spawned from outside, still running afterwards.
    let unrelated = rt.spawn(async { sleep(LONG).await });
    let started = Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            let mut unrelated = unrelated;
            started.set();
            let c = cancelled().await;
            let s1 = sleep(Duration::from_millis(1)).await;
            let s2 = sleep(LONG).await;
            let joined = (&mut unrelated).await;
            let again = cancelled().await;
            let s3 = sleep(LONG).await;
            (c, s1, s2, joined.map(|_| ()), again, s3, unrelated)
        })
    };
    assert!(started.wait());
    assert!(task.cancel());
    let (c, s1, s2, joined, again, s3, unrelated) = block_on_bounded(&rt, task).unwrap();
    assert_eq!(c.cause(), Cause::Explicit);
    assert_eq!(s1.expect_err("first sleep fails"), c);
    assert_eq!(s2.expect_err("second sleep fails"), c);
    let e = joined.expect_err("joining in a cancelled scope is interrupted");
    assert!(e.is_cancelled());
    assert_eq!(e.interrupted(), Some(&c));
    assert_eq!(again, c, "cancelled() resolves again at once");
    assert_eq!(s3.expect_err("and keeps failing"), c);
    assert!(
        !unrelated.is_finished(),
        "the unrelated task was not touched"
    );
    unrelated.abort();
    assert!(block_on_bounded(&rt, unrelated).unwrap_err().is_cancelled());
    assert_no_live_tasks(&rt);
}

#[test]
fn leaving_a_cancelled_scope_makes_await_points_work_again() {
    let rt = rt(2);
    let (inside, after) = in_task(&rt, async {
        let s = scope(async {
            let a = sleep(LONG).await;
            let b = sleep(LONG).await;
            (a, b, is_cancelled())
        });
        let h = s.handle();
        // Cancelled from another task while the scope waits.
        weft::spawn(async move {
            let _ = sleep(Duration::from_millis(10)).await;
            h.cancel_with("part done");
        });
        let inside = s.await;
        let after = (
            sleep(Duration::from_millis(1)).await,
            is_cancelled(),
            weft::cancel::check(),
        );
        (inside, after)
    });
    let (a, b, flag) = inside;
    let c = a.expect_err("the scope's sleep is cancelled");
    assert_eq!(c.cause(), Cause::Explicit);
    assert_eq!(c.reason(), Some("part done"));
    assert_eq!(b.expect_err("level-triggered inside the scope"), c);
    assert!(flag);
    let (slept, flag, checked) = after;
    assert!(slept.is_ok(), "after the scope, the task's sleeps succeed");
    assert!(!flag);
    assert!(checked.is_ok());
}

#[test]
fn cancelling_a_scope_cancels_the_tasks_it_spawned_but_not_the_rest() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel();
    let outside = in_task(&rt, async move {
        let s = scope(async move {
            let tx = tx.clone();
            weft::spawn(async move {
                let _ = tx.send(sleep(LONG).await);
            });
            sleep(LONG).await
        });
        s.handle().cancel();
        let inner = s.await;
        assert!(inner.is_err());
        let sibling = weft::spawn(async { sleep(Duration::from_millis(5)).await });
        sibling.await.unwrap()
    });
    assert!(
        outside.is_ok(),
        "a task spawned after the scope is not cancelled"
    );
    let c = rx.recv_timeout(LIMIT).unwrap().unwrap_err();
    assert_eq!(c.cause(), Cause::Parent);
    assert_eq!(c.origin(), Cause::Explicit);
}

#[test]
fn tasks_spawned_in_a_timeout_inherit_its_deadline() {
    let rt = rt(2);
    let d = Duration::from_secs(30);
    let res = in_task(&rt, async move {
        timeout(d, async {
            weft::spawn(async {
                weft::spawn(async { (deadline(), remaining()) })
                    .await
                    .unwrap()
            })
            .await
            .unwrap()
        })
        .await
    });
    let (dl, rem) = res.expect("the inner finished first");
    assert!(dl.is_some());
    let rem = rem.unwrap();
    // A 30 s timeout's deadline comes from the coarse clock: never early,
    // at most three kernel ticks (<= 12 ms here) late.
    assert!(
        rem <= d + Duration::from_millis(14) && rem > d - Duration::from_secs(1),
        "{rem:?}"
    );
}

#[test]
fn an_expiring_timeout_cancels_its_sleeps_and_spawned_tasks() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel();
    let (inner_tx, inner_rx) = mpsc::channel();
    let (res, after) = in_task(&rt, async move {
        let res = timeout(Duration::from_millis(30), async move {
            weft::spawn(async move {
                let _ = tx.send(sleep(LONG).await);
            });
            let r = sleep(LONG).await;
            let _ = inner_tx.send(r.clone());
            r
        })
        .await;
        (res, sleep(Duration::from_millis(1)).await)
    });
    let _: Elapsed = res.expect_err("the timeout expired");
    assert!(after.is_ok(), "after the timeout the task is not cancelled");
    let inner = inner_rx
        .recv_timeout(LIMIT)
        .expect("the inner sleep saw the deadline")
        .unwrap_err();
    assert!(inner.is_deadline());
    assert_eq!(inner.cause(), Cause::Deadline);
    let child = rx.recv_timeout(LIMIT).unwrap().unwrap_err();
    assert!(child.is_deadline());
    assert_eq!(child.cause(), Cause::Parent);
    assert_eq!(child.origin(), Cause::Deadline);
}

/// A `timeout`'s own sleep fires its deadline while it runs. Tasks spawned
/// inside that outlive it are still bound by the deadline: the scope's
/// node, left in the tree for them, takes a timer of its own.
#[test]
fn tasks_spawned_in_a_timeout_that_returned_still_get_its_deadline() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel::<Result<(), weft::cancel::Cancelled>>();
    let started = std::time::Instant::now();
    in_task(&rt, async move {
        let inner = timeout(Duration::from_millis(40), async move {
            for _ in 0..2 {
                let tx = tx.clone();
                weft::spawn(async move {
                    let _ = tx.send(sleep(LONG).await);
                });
            }
        })
        .await;
        assert!(inner.is_ok(), "the timeout's own future finished first");
        // The task goes on past the deadline, outside the timeout.
        sleep(Duration::from_millis(80))
            .await
            .expect("the task itself is not bound by the timeout");
        assert!(!is_cancelled());
    });
    // The timeout's deadline reaches each child.
    for c in common::recv_cancellations(&rx, 2) {
        assert_eq!((c.cause(), c.origin()), (Cause::Parent, Cause::Deadline));
    }
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_no_live_tasks(&rt);
}

#[test]
fn a_timeout_whose_future_finishes_first_is_ok() {
    let rt = rt(2);
    let res = in_task(&rt, async {
        timeout(LIMIT, async {
            sleep(Duration::from_millis(2)).await.unwrap();
            5
        })
        .await
    });
    assert_eq!(res, Ok(5));
}

#[test]
fn a_shield_runs_cleanup_inside_a_cancelled_task() {
    let rt = rt(2);
    let started = Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            started.set();
            let c = cancelled().await;
            let short = shield(LIMIT, async {
                let slept = sleep(Duration::from_millis(5)).await;
                (slept, is_cancelled())
            })
            .await;
            let after = sleep(Duration::from_millis(1)).await;
            (c, short, after)
        })
    };
    assert!(started.wait());
    task.cancel();
    let (c, short, after) = block_on_bounded(&rt, task).unwrap();
    let (slept, flag) = short.expect("the shield's work finished within its limit");
    assert!(
        slept.is_ok(),
        "a sleep in the shield ignores the outer cancellation"
    );
    assert!(!flag);
    assert_eq!(
        after.expect_err("outside the shield it is cancelled again"),
        c
    );
}

#[test]
fn a_shield_longer_than_its_limit_fails_with_elapsed() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel();
    let started = Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            started.set();
            let _ = cancelled().await;
            shield(Duration::from_millis(30), async move {
                let r = sleep(LONG).await;
                let _ = tx.send(r.clone());
                r
            })
            .await
        })
    };
    assert!(started.wait());
    task.cancel();
    let res = block_on_bounded(&rt, task).unwrap();
    let inner = rx.recv_timeout(LIMIT).expect("the shield's sleep returned");
    assert!(
        inner
            .expect_err("the shield's long sleep fails")
            .is_deadline(),
        "at the shield's limit"
    );
    assert!(
        res.is_err(),
        "shield must return Err(Elapsed) when its limit passes, got {res:?}"
    );
}

#[test]
fn a_detached_task_is_neither_cancelled_with_nor_bound_by_its_parent() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel();
    let started = Flag::new();
    let parent = {
        let started = started.clone();
        Builder::new().timeout(Duration::from_secs(60)).spawn_on(
            async move {
                let child = Builder::new().detached().spawn(async {
                    let slept = sleep(Duration::from_millis(40)).await;
                    (deadline(), slept, is_cancelled())
                });
                let _ = tx.send(child);
                started.set();
                cancelled().await
            },
            rt.handle(),
        )
    };
    assert!(started.wait());
    assert!(parent.cancel());
    assert_eq!(
        block_on_bounded(&rt, parent).unwrap().cause(),
        Cause::Explicit
    );
    let child = rx.recv_timeout(LIMIT).unwrap();
    let (dl, slept, flag) = block_on_bounded(&rt, child).unwrap();
    assert_eq!(dl, None, "a detached task does not inherit the deadline");
    assert!(slept.is_ok(), "nor is it cancelled with its parent");
    assert!(!flag);
}

#[test]
fn a_long_lived_scope_keeps_its_child_count_bounded() {
    const TOTAL: usize = 100_000;
    const BATCH: usize = 100;
    let rt = rt(4);
    let (max_seen, at_end) = in_task(&rt, async {
        let cell: Arc<OnceLock<CancelHandle>> = Arc::new(OnceLock::new());
        let inner_cell = cell.clone();
        let s = scope(async move {
            let h = inner_cell.get().expect("set before the first poll").clone();
            let mut max_seen = 0;
            for _ in 0..TOTAL / BATCH {
                let handles: Vec<_> = (0..BATCH).map(|i| weft::spawn(async move { i })).collect();
                max_seen = max_seen.max(h.child_count());
                for (i, handle) in handles.into_iter().enumerate() {
                    assert_eq!(handle.await.unwrap(), i);
                }
            }
            max_seen
        });
        let h = s.handle();
        cell.set(h.clone()).unwrap();
        let max_seen = s.await;
        // A joiner can see the output a moment before the child detaches.
        let mut at_end = h.child_count();
        for _ in 0..2000 {
            if at_end == 0 {
                break;
            }
            let _ = sleep(Duration::from_millis(1)).await;
            at_end = h.child_count();
        }
        (max_seen, at_end)
    });
    assert!(max_seen <= 2 * BATCH, "child_count grew to {max_seen}");
    assert_eq!(at_end, 0, "finished children detached from the scope");
    assert_no_live_tasks(&rt);
}

#[test]
fn a_lazy_scope_nobody_asks_for_is_never_made_and_sees_the_enclosing_scope() {
    let rt = rt(2);
    let d = Duration::from_secs(30);
    let (outer, inner, made) = in_task(&rt, async move {
        timeout(d, async {
            let outer = deadline();
            let mut lazy = std::pin::pin!(lazy_scope(async {
                sleep(Duration::from_millis(1))
                    .await
                    .expect("not cancelled");
                (deadline(), remaining().is_some())
            }));
            let inner = std::future::poll_fn(|cx| lazy.as_mut().poll(cx)).await;
            (outer, inner, lazy.is_materialized())
        })
        .await
        .expect("finished before the deadline")
    });
    assert!(!made, "nothing inside asked for the scope");
    assert!(outer.is_some());
    assert_eq!(inner, (outer, true), "the enclosing timeout's deadline");
    // Without any deadline around it, none inside either.
    let none = in_task(&rt, lazy_scope(async { (deadline(), remaining()) }));
    assert_eq!(none, (None, None));
    // The enclosing cancellation applies inside (level-triggered).
    let cut = in_task(&rt, async {
        weft::cancel::current().expect("in a task").cancel();
        lazy_scope(sleep(LONG)).await
    });
    let c = cut.expect_err("the task's cancellation reaches inside");
    assert_eq!(c.origin(), Cause::Explicit);
    assert_no_live_tasks(&rt);
}

#[test]
fn a_lazy_scope_made_by_a_spawn_cancels_its_children_but_not_the_rest() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel();
    let (made, outside) = in_task(&rt, async move {
        let mut lazy = std::pin::pin!(lazy_scope(async move {
            let tx = tx.clone();
            let (started_tx, started_rx) = weft::sync::oneshot::channel();
            let child = weft::spawn(async move {
                let _ = started_tx.send(deadline());
                let _ = tx.send(sleep(LONG).await);
            });
            let child_deadline = started_rx.await.expect("the child started");
            assert_eq!(child_deadline, None, "a lazy scope has no deadline");
            weft::cancel::current()
                .expect("in a task")
                .cancel_with("attempt abandoned");
            child.await
        }));
        let joined = std::future::poll_fn(|cx| lazy.as_mut().poll(cx)).await;
        let made = lazy.is_materialized();
        assert!(joined.is_err(), "the join is cut by the lazy scope's end");
        // Our own scope is untouched.
        assert!(!is_cancelled());
        let sibling = weft::spawn(async { sleep(Duration::from_millis(5)).await });
        (made, sibling.await.unwrap())
    });
    assert!(made, "the spawn made the scope");
    assert!(outside.is_ok(), "a task spawned outside is not cancelled");
    let c = rx.recv_timeout(LIMIT).unwrap().unwrap_err();
    assert_eq!(c.cause(), Cause::Parent);
    assert_eq!(c.origin(), Cause::Explicit);
    assert_no_live_tasks(&rt);
}
