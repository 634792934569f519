//! Deadlines as values: `task::Builder::{timeout, deadline}`, the effective
//! deadline `min(own, parent's)`, what reaching it does (own: cause
//! `Deadline`; inherited: `Parent` with origin `Deadline`), no timer for a
//! task that never waits, and a deadline already in the past.

mod common;

use std::{
    future::Future,
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{block_on_bounded, rt, LIMIT};
use weft::{
    cancel::{cancelled, check, deadline, is_cancelled, remaining, Cancelled, Cause},
    runtime::{Handle, Runtime},
    task::Builder,
    time::sleep,
};

const LONG: Duration = Duration::from_secs(3600);

fn in_task<F>(rt: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_on_bounded(rt, rt.spawn(future)).expect("the test's task completed")
}

/// As `in_task`, but bounded by a channel instead of a weft timeout, for
/// tests that count pending timers (the bounding timeout is one, and it is
/// registered concurrently with the task's first poll).
fn in_task_without_timers<F>(rt: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    drop(rt.spawn(async move {
        let _ = tx.send(future.await);
    }));
    rx.recv_timeout(common::LIMIT)
        .expect("the test's task completed")
}

#[test]
fn deadline_and_remaining_inside_a_task_with_a_timeout() {
    let rt = rt(2);
    let (dl, rem) = in_task(&rt, async {
        Builder::new()
            .timeout(Duration::from_secs(30))
            .spawn(async { (deadline(), remaining()) })
            .await
            .unwrap()
    });
    assert!(dl.is_some());
    let rem = rem.expect("remaining() inside a task with a deadline");
    // Timeouts of 2 s or more are read from the coarse clock: never early,
    // at most three kernel ticks (<= 12 ms here) late.
    assert!(
        rem <= Duration::from_secs(30) + Duration::from_millis(14),
        "{rem:?}"
    );
    assert!(rem > Duration::from_secs(29));

    let at = Instant::now() + Duration::from_secs(40);
    let (dl, rem) = in_task(&rt, async move {
        Builder::new()
            .deadline(at)
            .spawn(async { (deadline(), remaining()) })
            .await
            .unwrap()
    });
    assert_eq!(dl, Some(at));
    assert!(rem.unwrap() <= Duration::from_secs(40));

    // No deadline: none inside, and none outside any task.
    assert_eq!(
        in_task(&rt, async { (deadline(), remaining()) }),
        (None, None)
    );
    assert_eq!(deadline(), None);
    assert_eq!(remaining(), None);
}

#[test]
fn the_effective_deadline_is_the_earlier_of_own_and_parents() {
    let rt = rt(2);
    let parent_at = Instant::now() + Duration::from_secs(30);
    let later = parent_at + Duration::from_secs(30);
    let earlier = parent_at - Duration::from_secs(10);
    let (parent, with_later, with_earlier, plain) = in_task(&rt, async move {
        Builder::new()
            .deadline(parent_at)
            .spawn(async move {
                let with_later = Builder::new()
                    .deadline(later)
                    .spawn(async { deadline() })
                    .await
                    .unwrap();
                let with_earlier = Builder::new()
                    .deadline(earlier)
                    .spawn(async { deadline() })
                    .await
                    .unwrap();
                let plain = weft::spawn(async { weft::spawn(async { deadline() }).await.unwrap() })
                    .await
                    .unwrap();
                (deadline(), with_later, with_earlier, plain)
            })
            .await
            .unwrap()
    });
    assert_eq!(parent, Some(parent_at));
    assert_eq!(
        with_later,
        Some(parent_at),
        "a later own deadline is capped by the parent's"
    );
    assert_eq!(
        with_earlier,
        Some(earlier),
        "an earlier own deadline is kept"
    );
    assert_eq!(plain, Some(parent_at), "a grandchild inherits the deadline");
}

#[test]
fn reaching_its_own_deadline_cancels_a_tasks_sleep() {
    let rt = rt(2);
    let res = in_task(&rt, async {
        Builder::new()
            .timeout(Duration::from_millis(30))
            .spawn(async {
                let first = sleep(LONG).await;
                (first, sleep(LONG).await, is_cancelled())
            })
            .await
            .unwrap()
    });
    let (first, second, flag) = res;
    let c = first.expect_err("the deadline cuts the sleep short");
    assert!(c.is_deadline());
    assert_eq!(c.cause(), Cause::Deadline);
    assert_eq!(c.origin(), Cause::Deadline);
    assert_eq!(second.expect_err("level-triggered"), c);
    assert!(flag);
}

#[test]
fn reaching_an_inherited_deadline_cancels_with_cause_parent_origin_deadline() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel::<Result<(), Cancelled>>();
    let parent = in_task(&rt, async move {
        Builder::new()
            .timeout(Duration::from_millis(30))
            .spawn(async move {
                let tx2 = tx.clone();
                weft::spawn(async move {
                    weft::spawn(async move {
                        let _ = tx2.send(sleep(LONG).await);
                    });
                    let _ = tx.send(sleep(LONG).await);
                });
                cancelled().await
            })
            .await
            .unwrap()
    });
    assert_eq!(parent.cause(), Cause::Deadline);
    for _ in 0..2 {
        let c = rx
            .recv_timeout(LIMIT)
            .expect("the descendant finished")
            .expect_err("the inherited deadline cancels it");
        assert!(c.is_deadline());
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.origin(), Cause::Deadline);
    }
}

/// The task that set a deadline finishes first; its descendants still
/// inherit it and are cancelled when it passes. (The finished task's node
/// shares a block with its task, see `NodeSlot`: the descendants' counts
/// keep that block alive after the task is freed.)
#[test]
fn an_inherited_deadline_outlives_the_task_that_set_it() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel::<Result<(), Cancelled>>();
    let started = Instant::now();
    in_task(&rt, async move {
        Builder::new()
            .timeout(Duration::from_millis(40))
            .spawn(async move {
                for _ in 0..3 {
                    let tx = tx.clone();
                    weft::spawn(async move {
                        let _ = tx.send(sleep(LONG).await);
                    });
                }
                // Returns at once: the children outlive it.
            })
            .await
            .unwrap()
    });
    // The finished parent's deadline cancels each child.
    for c in common::recv_cancellations(&rx, 3) {
        assert_eq!((c.cause(), c.origin()), (Cause::Parent, Cause::Deadline));
    }
    assert!(started.elapsed() >= Duration::from_millis(40));
    common::assert_no_live_tasks(&rt);
}

#[test]
fn an_unexpired_deadline_that_never_waits_registers_no_timer() {
    let rt = rt(1);
    let (before, during, rem) = in_task_without_timers(&rt, async {
        let before = Handle::current().metrics().timers_pending;
        let (during, rem) = Builder::new()
            .timeout(Duration::from_secs(60))
            .spawn(async {
                // Work without waiting: read the deadline, poll the flag.
                let mut acc = 0u64;
                for i in 0..1000u64 {
                    acc = acc.wrapping_add(i);
                    assert!(!is_cancelled());
                }
                std::hint::black_box(acc);
                (Handle::current().metrics().timers_pending, remaining())
            })
            .await
            .unwrap();
        (before, during, rem)
    });
    assert!(rem.is_some());
    assert_eq!(
        before, during,
        "no timer armed for a task that never waited"
    );
}

/// `check()` is the checkpoint for loops that never wait: per rule 1 of
/// `cancel/mod.rs` ("a timer is armed only when something waits in the
/// scope") it must not arm the deadline timer either.
#[test]
fn check_in_a_loop_that_never_waits_registers_no_timer() {
    let rt = rt(1);
    let (before, during) = in_task_without_timers(&rt, async {
        let before = Handle::current().metrics().timers_pending;
        let during = Builder::new()
            .timeout(Duration::from_secs(60))
            .spawn(async {
                for _ in 0..100 {
                    check().expect("the deadline is a minute away");
                }
                Handle::current().metrics().timers_pending
            })
            .await
            .unwrap();
        (before, during)
    });
    assert_eq!(
        before, during,
        "check() armed a deadline timer without any wait"
    );
}

#[test]
fn a_deadline_in_the_past_fails_the_first_await_point_at_once() {
    let rt = rt(2);
    let past = Instant::now()
        .checked_sub(Duration::from_millis(5))
        .unwrap_or_else(Instant::now);
    let (checked, slept, joined) = in_task(&rt, async move {
        let other = weft::task::Builder::new()
            .detached()
            .spawn(async { sleep(LONG).await });
        let other_abort = other.abort_handle();
        let out = Builder::new()
            .deadline(past)
            .spawn(async move {
                let checked = check();
                let slept = sleep(LONG).await;
                let mut other = other;
                let joined = (&mut other).await;
                (checked, slept, joined.map(|_| ()))
            })
            .await
            .unwrap();
        other_abort.abort();
        out
    });
    let c = checked.expect_err("check() sees the passed deadline");
    assert!(c.is_deadline());
    assert_eq!(c.cause(), Cause::Deadline);
    assert!(slept
        .expect_err("the first sleep fails at once")
        .is_deadline());
    let e = joined.expect_err("the join is interrupted");
    assert!(e.interrupted().is_some_and(|c| c.is_deadline()));

    // Zero timeout behaves the same.
    let slept = in_task(&rt, async {
        Builder::new()
            .timeout(Duration::ZERO)
            .spawn(async { sleep(LONG).await })
            .await
            .unwrap()
    });
    assert!(slept.expect_err("fails at once").is_deadline());
}
