//! Retry on a real weft runtime: the task's deadline, the caller's
//! cancellation, attempts in child scopes.
#![cfg(feature = "weft")]

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use weft_resilience::{
    env::{Interrupted, WeftEnv},
    retry::{Backoff, Retry, RetryConfig, RetryError, Stop},
};

fn runtime() -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

/// Attempts started, and attempts that ran to their end.
#[derive(Default)]
struct Tally {
    started: AtomicU32,
    finished: AtomicU32,
}

/// An attempt that sleeps `for_` and fails (or reports its interruption).
async fn failing_attempt(tally: Arc<Tally>, for_: Duration) -> Result<(), &'static str> {
    tally.started.fetch_add(1, Ordering::Relaxed);
    weft::time::sleep(for_).await.map_err(|_| "interrupted")?;
    tally.finished.fetch_add(1, Ordering::Relaxed);
    Err("503")
}

#[test]
fn no_attempt_is_cut_by_the_task_deadline() {
    let rt = runtime();
    let tally = Arc::new(Tally::default());
    let retry = Arc::new(Retry::new(
        RetryConfig::builder()
            .max_attempts(20)
            .backoff(Backoff::constant(Duration::from_millis(30)))
            .expected_attempt(Duration::from_millis(150))
            .build()
            .unwrap(),
    ));
    let (t, r) = (tally.clone(), retry.clone());
    let out = rt.block_on(async move {
        weft::task::Builder::new()
            .timeout(Duration::from_millis(600))
            .spawn(async move {
                r.call(&WeftEnv::new(), |_| {
                    failing_attempt(t.clone(), Duration::from_millis(100))
                })
                .await
            })
            .await
            .unwrap()
    });
    let started = tally.started.load(Ordering::Relaxed);
    let finished = tally.finished.load(Ordering::Relaxed);
    assert!(started >= 2, "{started}");
    assert_eq!(started, finished, "an attempt was cut by the deadline");
    match out {
        Err(RetryError::Failed {
            error: "503",
            stop: Stop::Deadline { remaining },
            ..
        }) => assert!(remaining < Duration::from_millis(180), "{remaining:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(retry.metrics().deadline_stops, 1);
}

#[test]
fn cancelling_the_caller_ends_the_backoff_at_once_and_is_not_retried() {
    let rt = runtime();
    let tally = Arc::new(Tally::default());
    let retry = Arc::new(Retry::new(
        RetryConfig::builder()
            .max_attempts(5)
            .backoff(Backoff::constant(Duration::from_secs(30)))
            .build()
            .unwrap(),
    ));
    let (t, r) = (tally.clone(), retry.clone());
    let (out, waited) = rt.block_on(async move {
        let handle = weft::spawn(async move {
            r.call(&WeftEnv::new(), |_| {
                failing_attempt(t.clone(), Duration::ZERO)
            })
            .await
        });
        weft::time::sleep(Duration::from_millis(50)).await.unwrap();
        let start = Instant::now();
        handle.cancel();
        let out = handle.await.unwrap();
        (out, start.elapsed())
    });
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(tally.started.load(Ordering::Relaxed), 1);
    assert_eq!(
        out.unwrap_err().stop(),
        Stop::Interrupted(Interrupted::Cancelled)
    );
    assert_eq!(retry.metrics().interrupted, 1);
}

#[test]
fn each_attempt_runs_in_a_child_scope_under_the_callers_deadline() {
    let rt = runtime();
    let retry = Retry::new(
        RetryConfig::builder()
            .max_attempts(2)
            .backoff(Backoff::none())
            .build()
            .unwrap(),
    );
    let seen = rt.block_on(async {
        weft::time::timeout(Duration::from_secs(5), async {
            let outer = weft::cancel::deadline();
            let mut seen = Vec::new();
            let _ = retry
                .call(&WeftEnv::new(), |a| {
                    // Cancelling inside the attempt cancels only its scope.
                    let inner = weft::cancel::deadline();
                    seen.push((a.number, inner == outer));
                    async move {
                        let children = weft::spawn(async { weft::cancel::cancelled().await });
                        weft::cancel::scope(async {}).await;
                        children.cancel();
                        let why = children.await.unwrap();
                        assert_eq!(why.cause(), weft::cancel::Cause::Explicit);
                        Err::<(), _>(())
                    }
                })
                .await;
            // The caller's scope is intact after its attempts.
            assert!(weft::cancel::check().is_ok());
            seen
        })
        .await
        .unwrap()
    });
    assert_eq!(seen, [(1, true), (2, true)]);
}
