//! Panics: caught per task, reported through `JoinError`, never fatal to a
//! worker or to other tasks; panicking destructors of outputs and futures.

mod common;

use std::any::Any;

use common::{
    assert_no_live_tasks, block_on_bounded, panic_message, quiet_expected_panics, rt, DropCounter,
    Flag, EXPECTED,
};
use weft::task::yield_now;

fn expected(what: &str) -> String {
    format!("{EXPECTED} {what}")
}

#[test]
fn a_panicking_task_is_reported_as_a_panic_with_its_payload() {
    quiet_expected_panics();
    let rt = rt(2);
    let (err, id) = block_on_bounded(&rt, async {
        let join = weft::spawn(async {
            panic!("{}", expected("boom"));
        });
        let id = join.id();
        (join.await.unwrap_err(), id)
    });
    assert!(err.is_panic());
    assert!(!err.is_cancelled());
    assert_eq!(err.id(), id);
    let shown = err.to_string();
    assert!(
        shown.contains("panicked") && shown.contains("boom"),
        "{shown}"
    );
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<String>().unwrap(), &expected("boom"));
    assert_no_live_tasks(&rt);
}

#[test]
fn a_static_str_payload_downcasts_to_str() {
    quiet_expected_panics();
    let rt = rt(1);
    let err = block_on_bounded(&rt, async {
        weft::spawn(async {
            yield_now().await;
            std::panic::panic_any("[expected panic] static");
        })
        .await
        .unwrap_err()
    });
    let payload: Box<dyn Any + Send> = err.try_into_panic().unwrap();
    assert_eq!(
        *payload.downcast_ref::<&str>().unwrap(),
        "[expected panic] static"
    );
}

#[test]
fn try_into_panic_gives_a_cancellation_back() {
    let rt = rt(1);
    let err = block_on_bounded(&rt, async {
        let join = weft::spawn(std::future::pending::<()>());
        join.abort();
        join.await.unwrap_err()
    });
    let err = err.try_into_panic().unwrap_err();
    assert!(err.is_cancelled());
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[test]
#[should_panic(expected = "`JoinError::into_panic` called on a task that did not panic")]
fn into_panic_on_a_cancellation_panics() {
    let rt = rt(1);
    let err = block_on_bounded(&rt, async {
        let join = weft::spawn(std::future::pending::<()>());
        join.abort();
        join.await.unwrap_err()
    });
    drop(rt);
    let _ = err.into_panic();
}

#[test]
fn one_worker_survives_many_panics_in_a_row() {
    quiet_expected_panics();
    let rt = rt(1);
    block_on_bounded(&rt, async {
        for i in 0..200 {
            let err = weft::spawn(async move {
                if i % 2 == 0 {
                    yield_now().await;
                }
                panic!("{}", expected("again"));
            })
            .await
            .unwrap_err();
            assert!(err.is_panic());
        }
        // The single worker still runs ordinary tasks.
        assert_eq!(weft::spawn(async { 7 }).await.unwrap(), 7);
    });
    assert_eq!(rt.metrics().workers, 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn a_detached_panicking_task_does_not_disturb_the_others() {
    quiet_expected_panics();
    let rt = rt(2);
    let sum = block_on_bounded(&rt, async {
        let mut joins = Vec::new();
        for i in 0..100u64 {
            // Detached: nobody ever learns of this panic.
            drop(weft::spawn(async move {
                yield_now().await;
                panic!("{}", expected(&format!("detached {i}")));
            }));
            joins.push(weft::spawn(async move {
                yield_now().await;
                i
            }));
        }
        let mut sum = 0;
        for j in joins {
            sum += j.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 99 * 100 / 2);
    assert_no_live_tasks(&rt);
}

#[test]
fn a_panicking_task_drops_its_future_state() {
    quiet_expected_panics();
    let rt = rt(1);
    let state = DropCounter::new();
    let token = state.token();
    let err = block_on_bounded(&rt, async move {
        weft::spawn(async move {
            let _token = token;
            yield_now().await;
            panic!("{}", expected("with state"));
        })
        .await
        .unwrap_err()
    });
    assert!(err.is_panic());
    assert_eq!(
        state.get(),
        1,
        "the locals of a panicking task are dropped once"
    );
}

/// An output whose destructor panics.
struct PanicOnDrop(#[allow(dead_code)] common::DropToken);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", expected("output drop"));
    }
}

#[test]
fn a_detached_output_with_a_panicking_drop_is_contained() {
    quiet_expected_panics();
    let rt = rt(1);
    let drops = DropCounter::new();
    let done = Flag::new();
    {
        let drops = drops.clone();
        let done = done.clone();
        // No join handle: the worker that completes the task drops the output.
        drop(rt.spawn(async move {
            yield_now().await;
            done.set();
            PanicOnDrop(drops.token())
        }));
    }
    assert!(done.wait());
    assert_eq!(drops.wait_for(1), 1);
    // The worker is alive and the runtime consistent.
    assert_eq!(
        block_on_bounded(&rt, async { weft::spawn(async { 1 }).await.unwrap() }),
        1
    );
    assert_no_live_tasks(&rt);
}

#[test]
fn dropping_a_join_handle_whose_output_panics_on_drop_is_contained() {
    quiet_expected_panics();
    let rt = rt(1);
    let drops = DropCounter::new();
    let join = {
        let drops = drops.clone();
        rt.spawn(async move { PanicOnDrop(drops.token()) })
    };
    assert!(common::eventually(|| join.is_finished()));
    // Must not unwind into the caller.
    drop(join);
    assert_eq!(drops.get(), 1);
    assert_no_live_tasks(&rt);
}

/// A future that never completes and panics when dropped.
struct PanicOnDropFuture(#[allow(dead_code)] common::DropToken);

impl std::future::Future for PanicOnDropFuture {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Pending
    }
}

impl Drop for PanicOnDropFuture {
    fn drop(&mut self) {
        panic!("{}", expected("future drop"));
    }
}

#[test]
fn aborting_a_future_whose_drop_panics_reports_that_panic() {
    quiet_expected_panics();
    let rt = rt(1);
    let drops = DropCounter::new();
    let err = block_on_bounded(&rt, async {
        let join = weft::spawn(PanicOnDropFuture(drops.token()));
        yield_now().await;
        join.abort();
        join.await.unwrap_err()
    });
    assert_eq!(drops.get(), 1);
    assert!(
        err.is_panic(),
        "the destructor's panic is what the joiner sees: {err:?}"
    );
    assert_eq!(
        panic_message(&*err.into_panic()).unwrap(),
        expected("future drop")
    );
    assert_no_live_tasks(&rt);
}

/// A future whose poll panics and whose drop panics too. (A hand-written
/// future, not an async block: unwinding out of an async block would drop its
/// locals during the unwind, and a second panic there aborts the process.)
struct PanicTwice(#[allow(dead_code)] common::DropToken);

impl std::future::Future for PanicTwice {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        panic!("{}", expected("first"));
    }
}

impl Drop for PanicTwice {
    fn drop(&mut self) {
        panic!("{}", expected("second"));
    }
}

#[test]
fn a_panic_in_poll_wins_over_a_panic_in_the_futures_drop() {
    quiet_expected_panics();
    let rt = rt(1);
    let drops = DropCounter::new();
    let err = block_on_bounded(&rt, async {
        weft::spawn(PanicTwice(drops.token())).await.unwrap_err()
    });
    assert_eq!(drops.get(), 1);
    assert_eq!(
        panic_message(&*err.into_panic()).unwrap(),
        expected("first")
    );
    assert_eq!(
        block_on_bounded(&rt, async { weft::spawn(async { 4 }).await.unwrap() }),
        4
    );
    assert_no_live_tasks(&rt);
}

#[test]
fn a_panicking_blocking_job_leaves_the_runtime_usable() {
    quiet_expected_panics();
    let rt = rt(1);
    block_on_bounded(&rt, async {
        for _ in 0..10 {
            let err = weft::spawn_blocking(|| panic!("{}", expected("blocking")))
                .await
                .unwrap_err();
            assert!(err.is_panic());
        }
        assert_eq!(weft::spawn_blocking(|| 9).await.unwrap(), 9);
    });
}

#[weft::test(worker_threads = 1)]
async fn a_panic_inside_a_macro_test_runtime_is_caught() {
    quiet_expected_panics();
    let err = weft::spawn(async { panic!("{}", expected("macro")) })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(weft::spawn(async { 2 }).await.unwrap(), 2);
}
