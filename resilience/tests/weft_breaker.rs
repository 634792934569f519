#![cfg(feature = "weft")]
//! The breaker on a real weft runtime: the caller's cancellation is not the
//! callee's failure, the caller's deadline is a slow call, and a cancelled
//! caller takes no half-open probe.
//!
//! Run: `cargo test -p weft-resilience --features weft --test weft_breaker`
//! (and again with `WEFT_IO=epoll`).

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use weft::{
    cancel::scope,
    runtime::{Builder as RtBuilder, Runtime},
    task::Builder,
    time::sleep,
};
use weft_resilience::{
    breaker::{
        Backoff, Breaker, Classify, Config, DeadlineRule, ErrorsFail, RejectReason, State, Verdict,
    },
    clock::ManualClock,
};

const LONG: Duration = Duration::from_secs(3600);

fn rt() -> Runtime {
    RtBuilder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

/// Trips on one failure, no slow-call criterion.
fn touchy(rule: DeadlineRule, clock: &ManualClock) -> Arc<Breaker> {
    let config = Config::builder()
        .count_window(1)
        .minimum_calls(1)
        .no_slow_calls()
        .half_open_permits(1)
        .half_open_successes(1)
        .open_backoff(Backoff::fixed(Duration::from_secs(1)))
        .deadline_exceeded(rule)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    Arc::new(Breaker::new("downstream", config))
}

/// A call that waits on weft io until its scope ends it.
async fn hanging_call() -> io::Result<()> {
    sleep(LONG).await.map_err(io::Error::from)
}

#[test]
fn an_explicit_cancel_is_not_a_failure() {
    let rt = rt();
    let clock = ManualClock::new();
    let breaker = touchy(DeadlineRule::Slow, &clock);
    let b = Arc::clone(&breaker);
    let result = rt.block_on(async move {
        let handle = rt_spawn_call(b);
        sleep(Duration::from_millis(20))
            .await
            .expect("not cancelled");
        handle.cancel();
        handle.await.expect("the task returns its result")
    });
    let error = result.expect_err("the call was cancelled");
    assert_eq!(error.kind(), io::ErrorKind::Interrupted);
    let m = breaker.metrics();
    assert_eq!(breaker.state(), State::Closed, "{m:?}");
    assert_eq!(m.counts.calls, 0, "ignored, not recorded");
    assert_eq!(m.consecutive_failures, 0);
}

fn rt_spawn_call(breaker: Arc<Breaker>) -> weft::JoinHandle<io::Result<()>> {
    weft::spawn(async move {
        match breaker.call(hanging_call).await {
            Ok(()) => Ok(()),
            Err(weft_resilience::breaker::CallError::Failed(e)) => Err(e),
            Err(weft_resilience::breaker::CallError::Rejected(r)) => Err(io::Error::other(r)),
        }
    })
}

#[test]
fn a_deadline_is_a_slow_call_by_default_and_a_failure_when_configured() {
    let rt = rt();
    for (rule, state, failures, slow) in [
        (DeadlineRule::Slow, State::Closed, 0, 1),
        (DeadlineRule::Failure, State::Open, 1, 0),
        (DeadlineRule::Ignore, State::Closed, 0, 0),
    ] {
        let clock = ManualClock::new();
        let breaker = touchy(rule, &clock);
        // On a loaded machine the task may first run after its deadline:
        // then `acquire` refuses it (a cancelled caller takes nothing) and
        // nothing is recorded; try again with a longer budget.
        let mut budget = Duration::from_millis(30);
        let result = loop {
            let b = Arc::clone(&breaker);
            let result = rt.block_on(async move {
                Builder::new()
                    .timeout(budget)
                    .spawn(async move { b.call(hanging_call).await })
                    .await
                    .expect("joined")
            });
            match result {
                Err(weft_resilience::breaker::CallError::Rejected(r))
                    if r.reason() == RejectReason::Cancelled && budget < Duration::from_secs(5) =>
                {
                    assert_eq!(
                        breaker.metrics().counts.calls,
                        0,
                        "a refused caller records nothing"
                    );
                    budget *= 4;
                }
                result => break result,
            }
        };
        match result {
            Err(weft_resilience::breaker::CallError::Failed(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::TimedOut)
            }
            other => panic!("expected the deadline's error, got {other:?}"),
        }
        let m = breaker.metrics();
        assert_eq!(breaker.state(), state, "{rule:?}: {m:?}");
        if state == State::Closed {
            assert_eq!(m.counts.failures, failures, "{rule:?}");
            assert_eq!(m.counts.slow_calls, slow, "{rule:?}");
        }
    }
}

#[test]
fn a_cancelled_caller_takes_no_half_open_probe() {
    let rt = rt();
    let clock = ManualClock::new();
    let breaker = touchy(DeadlineRule::Slow, &clock);
    breaker.acquire().expect("closed").failure();
    assert_eq!(breaker.state(), State::Open);
    clock.advance(Duration::from_secs(1));
    let rejected_before = breaker.metrics().rejected;

    // Explicitly cancelled scope.
    let b = Arc::clone(&breaker);
    let reason = rt.block_on(async move {
        let s = scope(async move { b.acquire().map(|p| p.ignore()).map_err(|r| r.reason()) });
        s.handle().cancel();
        s.await
    });
    assert_eq!(reason, Err(RejectReason::Cancelled));
    // Past its deadline.
    let b = Arc::clone(&breaker);
    let reason = rt.block_on(async move {
        Builder::new()
            .deadline(Instant::now() - Duration::from_millis(1))
            .spawn(async move { b.acquire().map(|p| p.ignore()).map_err(|r| r.reason()) })
            .await
            .expect("joined")
    });
    assert_eq!(reason, Err(RejectReason::Cancelled));
    assert_eq!(breaker.state(), State::Open, "no probe was taken");
    assert_eq!(breaker.metrics().rejected, rejected_before, "not counted");

    // A live caller gets the probe, and closes the breaker.
    let b = Arc::clone(&breaker);
    rt.block_on(async move { b.acquire().expect("the probe").success() });
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn join_errors_and_acquire_errors_are_recognised() {
    let rt = rt();
    let (aborted, interrupted) = rt.block_on(async {
        let handle = weft::spawn(sleep(LONG));
        handle.abort();
        let aborted: Result<(), weft::JoinError> = handle.await.map(drop);
        // A join cut short by the awaiting scope's deadline.
        let interrupted = Builder::new()
            .timeout(Duration::from_millis(10))
            .spawn(async { weft::spawn(sleep(LONG)).await.map(drop) })
            .await
            .expect("joined");
        (aborted, interrupted)
    });
    assert_eq!(ErrorsFail.classify(&aborted), Verdict::Ignore);
    assert_eq!(ErrorsFail.classify(&interrupted), Verdict::DeadlineExceeded);

    let sem = weft::sync::Semaphore::new(0);
    let waited = rt.block_on(async move {
        let s = scope(async move { sem.acquire().await.map(drop) });
        s.handle().cancel();
        s.await
    });
    assert_eq!(ErrorsFail.classify(&waited), Verdict::Ignore);
    let boxed: Result<(), Box<dyn std::error::Error + Send + Sync>> = Err(Box::new(
        io::Error::from(weft::cancel::check().err().unwrap_or_else(|| {
            // Outside a task nothing is cancelled; build one from a task.
            rt.block_on(async {
                let s = scope(async { weft::cancel::check() });
                s.handle().cancel();
                s.await.expect_err("cancelled")
            })
        })),
    ));
    assert_eq!(ErrorsFail.classify(&boxed), Verdict::Ignore);
    let other: Result<(), io::Error> = Err(io::Error::from(io::ErrorKind::Interrupted));
    assert_eq!(
        ErrorsFail.classify(&other),
        Verdict::Failure,
        "an EINTR without a Cancelled is the callee's"
    );
}
