//! `cancel::cancellable`: a foreign future (here futures-channel's, which
//! knows nothing of weft) becomes an await point of the task's scope: a
//! deadline or a cancel ends it with `Err(Cancelled)`, the inner future is
//! dropped at once, the error repeats on every later poll, and a future
//! that is ready costs no deadline timer.

mod common;

use std::{
    future::{poll_fn, Future},
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    task::Poll,
    time::{Duration, Instant},
};

use common::{
    assert_no_live_tasks, block_on_bounded, pending_forever, rt, DropCounter, Flag, LIMIT,
};
use futures_channel::oneshot;
use weft::{
    cancel::{cancellable, CancellableExt, Cause},
    runtime::Runtime,
    task::Builder,
};

fn in_task<F>(rt: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_on_bounded(rt, rt.spawn(future)).expect("the test's task completed")
}

#[test]
fn a_deadline_ends_a_foreign_wait_and_drops_the_inner_future() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let (tx, rx) = oneshot::channel::<u32>();
    let token = drops.token();
    let started = Instant::now();
    let task = Builder::new().timeout(Duration::from_millis(30)).spawn_on(
        async move {
            let _token = token;
            let first = cancellable(rx).await;
            (first, Instant::now())
        },
        rt.handle(),
    );
    let (res, ended) = block_on_bounded(&rt, task).unwrap();
    let err = res.expect_err("the receiver never gets a value");
    assert_eq!(err.cause(), Cause::Deadline);
    assert!(err.is_deadline());
    let waited = ended - started;
    assert!(
        waited >= Duration::from_millis(30),
        "ended early: {waited:?}"
    );
    assert!(waited < LIMIT, "ended late: {waited:?}");
    // The receiver was dropped with the wrapper's inner future: the sender
    // sees it gone.
    assert!(tx.is_canceled());
    assert_eq!(drops.get(), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn an_explicit_cancel_ends_the_wait_at_once_and_keeps_failing() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let started = Flag::new();
    let task = {
        let (drops, started) = (drops.clone(), started.clone());
        rt.spawn(async move {
            let mut wait = Box::pin(cancellable(pending_forever(drops.token())));
            started.set();
            let first = wait.as_mut().await;
            // The inner future is already gone, before the wrapper is.
            let dropped_at_first_error = drops.get();
            let inner_gone = wait.is_cancelled();
            let second = wait.as_mut().await;
            (first, second, dropped_at_first_error, inner_gone)
        })
    };
    assert!(started.wait());
    assert!(task.cancel_with("stop"));
    let (first, second, dropped, inner_gone) = block_on_bounded(&rt, task).unwrap();
    let c = first.expect_err("cancelled");
    assert_eq!(c.cause(), Cause::Explicit);
    assert_eq!(c.reason(), Some("stop"));
    assert_eq!(second.expect_err("level-triggered"), c);
    assert_eq!(dropped, 1, "the inner future is dropped at the first error");
    assert!(inner_gone);
    assert_eq!(drops.get(), 1, "and only once");
    assert_no_live_tasks(&rt);
}

#[test]
fn in_an_already_cancelled_scope_the_inner_future_is_never_polled() {
    let rt = rt(1);
    let polls = Arc::new(AtomicUsize::new(0));
    let out = {
        let polls = polls.clone();
        in_task(&rt, async move {
            weft::cancel::current().unwrap().cancel();
            let inner = poll_fn(move |_| {
                polls.fetch_add(1, SeqCst);
                Poll::Ready(1)
            });
            inner.cancellable().await
        })
    };
    assert_eq!(out.unwrap_err().cause(), Cause::Explicit);
    assert_eq!(polls.load(SeqCst), 0);
}

#[test]
fn a_value_that_arrives_before_the_deadline_is_returned() {
    let rt = rt(2);
    let (tx, rx) = oneshot::channel::<u32>();
    let task = Builder::new()
        .timeout(Duration::from_secs(3600))
        .spawn_on(async move { rx.cancellable().await }, rt.handle());
    std::thread::sleep(Duration::from_millis(5));
    tx.send(7).unwrap();
    let out = block_on_bounded(&rt, task).unwrap();
    assert_eq!(out.unwrap().unwrap(), 7);
}

#[test]
fn a_ready_future_arms_no_deadline_timer() {
    let rt = rt(1);
    let before = rt.metrics().timers_pending;
    let (out, pending_inside) = {
        let rt_handle = rt.handle().clone();
        let task = Builder::new().timeout(Duration::from_secs(3600)).spawn_on(
            async move {
                let mut sum = 0;
                for i in 0..100u32 {
                    sum += cancellable(std::future::ready(i)).await.unwrap();
                }
                (sum, rt_handle.metrics().timers_pending)
            },
            rt.handle(),
        );
        // Not `block_on_bounded`: its own timeout is a timer.
        assert!(common::eventually(|| task.is_finished()));
        rt.block_on(task).unwrap()
    };
    assert_eq!(out, 4950);
    assert_eq!(
        pending_inside, before,
        "no timer was armed for ready futures"
    );
}

#[test]
fn a_pending_wait_arms_the_deadline_timer() {
    let rt = rt(1);
    let before = rt.metrics().timers_pending;
    let (tx, rx) = oneshot::channel::<u32>();
    let armed = Flag::new();
    let task = {
        let armed = armed.clone();
        Builder::new().timeout(Duration::from_secs(3600)).spawn_on(
            async move {
                let mut rx = cancellable(rx);
                let first = common::poll_once(&mut rx).await;
                assert!(first.is_none(), "nothing sent yet");
                armed.set();
                rx.await
            },
            rt.handle(),
        )
    };
    assert!(armed.wait());
    assert!(common::eventually(|| rt.metrics().timers_pending > before));
    tx.send(3).unwrap();
    assert!(common::eventually(|| task.is_finished()));
    assert_eq!(rt.block_on(task).unwrap().unwrap().unwrap(), 3);
    assert!(
        common::eventually(|| rt.metrics().timers_pending == before),
        "the timer went with the task"
    );
}

#[test]
fn outside_any_task_it_only_forwards() {
    let rt = rt(1);
    let (tx, rx) = oneshot::channel::<u32>();
    tx.send(9).unwrap();
    assert_eq!(rt.block_on(cancellable(rx)).unwrap().unwrap(), 9);
}

#[test]
fn a_cancel_of_the_enclosing_scope_reaches_a_nested_wait() {
    let rt = rt(2);
    let out = in_task(&rt, async {
        let scope = weft::cancel::scope(async {
            let (_tx, rx) = oneshot::channel::<u32>();
            cancellable(rx).await
        });
        let handle = scope.handle();
        weft::spawn(async move {
            weft::time::sleep(Duration::from_millis(5)).await.unwrap();
            handle.cancel_with("enough");
        });
        scope.await
    });
    let c = out.unwrap_err();
    assert_eq!(c.reason(), Some("enough"));
    assert_no_live_tasks(&rt);
}
