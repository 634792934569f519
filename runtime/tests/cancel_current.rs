//! `cancel::current()` (a task cancels its own subtree) and
//! `cancel::is_cancelled()` noticing a passed deadline with no await point
//! or `check()` in between.

mod common;

use std::{future::Future, time::Duration};

use common::{assert_no_live_tasks, block_on_bounded, recv_cancellations, rt};
use weft::{
    cancel::{cancelled, current, is_cancelled, Cause},
    runtime::Runtime,
    task::Builder,
    time::{sleep, timeout},
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
fn a_task_cancels_its_own_subtree_through_current() {
    const N: usize = 8;
    let rt = rt(2);
    let (tx, rx) = std::sync::mpsc::channel();
    let own = in_task(&rt, async move {
        for _ in 0..N {
            let tx = tx.clone();
            weft::spawn(async move {
                let _ = tx.send(sleep(LONG).await);
            });
        }
        let me = current().expect("inside a task");
        assert!(!me.is_cancelled());
        assert!(me.cancel_with("done"));
        assert!(!me.cancel(), "the first cause stays");
        sleep(LONG).await
    });
    let c = own.expect_err("the task's own await points fail");
    assert_eq!(c.cause(), Cause::Explicit);
    assert_eq!(c.reason(), Some("done"));
    for c in recv_cancellations(&rx, N) {
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.reason(), Some("done"));
    }
    assert_no_live_tasks(&rt);
}

#[test]
fn current_inside_a_timeout_is_the_timeouts_scope() {
    let rt = rt(2);
    let (inner, outer) = in_task(&rt, async {
        let inner = timeout(LONG, async {
            current().unwrap().cancel();
            cancelled().await
        })
        .await
        .expect("cancelled by hand, not elapsed");
        // Only the timeout's scope was cancelled, not the task.
        (inner, is_cancelled())
    });
    assert_eq!(inner.cause(), Cause::Explicit);
    assert!(!outer);
}

#[test]
fn current_is_none_outside_any_task() {
    let rt = rt(1);
    assert!(current().is_none());
    assert!(rt.block_on(async { current().is_none() }));
    assert!(!is_cancelled());
}

#[test]
fn is_cancelled_notices_a_passed_deadline_without_an_await_point() {
    let rt = rt(2);
    let task = Builder::new().timeout(Duration::from_millis(20)).spawn_on(
        async {
            let before = is_cancelled();
            // Busy, no await point, no `check()`: nothing armed a timer.
            std::thread::sleep(Duration::from_millis(40));
            let after = is_cancelled();
            // Noticing it cancelled the scope: a child spawned now is
            // born cancelled, and `check` agrees.
            let child = weft::spawn(cancelled());
            (before, after, weft::cancel::check(), child)
        },
        rt.handle(),
    );
    let (before, after, check, child) = block_on_bounded(&rt, task).unwrap();
    assert!(!before);
    assert!(after, "the deadline passed: is_cancelled says so");
    assert_eq!(check.unwrap_err().cause(), Cause::Deadline);
    let c = block_on_bounded(&rt, child).unwrap();
    assert_eq!(c.origin(), Cause::Deadline);
    assert_no_live_tasks(&rt);
}

#[test]
fn is_cancelled_is_false_before_a_far_deadline() {
    let rt = rt(1);
    let task = Builder::new()
        .timeout(LONG)
        .spawn_on(async { (0..1000).any(|_| is_cancelled()) }, rt.handle());
    assert!(!block_on_bounded(&rt, task).unwrap());
}
