//! Manual states, listeners, metrics, the keyed set, configuration errors
//! and the call helpers.

use std::{
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use weft_resilience::{
    breaker::{
        Backoff, Breaker, BreakerSet, CallError, Cause, Config, ConfigError, EventKind, Outcome,
        RejectReason, State, Transition,
    },
    clock::ManualClock,
};

const S: Duration = Duration::from_secs(1);

fn breaker() -> (Breaker, ManualClock) {
    let clock = ManualClock::new();
    let config = Config::builder()
        .count_window(2)
        .minimum_calls(2)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    (Breaker::new("control", config), clock)
}

#[test]
fn forced_open_rejects_until_reset() {
    let (breaker, clock) = breaker();
    let outcome = breaker.force_open();
    assert_eq!(
        outcome,
        Transition::Moved {
            from: State::Closed,
            to: State::ForcedOpen,
            generation: 1
        }
    );
    assert_eq!(
        breaker.force_open(),
        Transition::Unchanged(State::ForcedOpen)
    );
    clock.advance(1000 * S);
    let rejected = breaker.acquire().expect_err("forced");
    assert_eq!(rejected.reason(), RejectReason::ForcedOpen);
    assert_eq!(rejected.retry_after(), None);
    assert!(matches!(
        breaker.reset(),
        Transition::Moved {
            to: State::Closed,
            ..
        }
    ));
    breaker.acquire().expect("closed again").success();
}

#[test]
fn disabled_admits_everything_and_records_nothing() {
    let (breaker, _) = breaker();
    let _ = breaker.force_closed();
    assert_eq!(breaker.state(), State::Disabled);
    for _ in 0..10 {
        breaker.acquire().expect("disabled").failure();
    }
    assert_eq!(breaker.metrics().counts.calls, 0);
    assert_eq!(breaker.disable(), Transition::Unchanged(State::Disabled));
}

#[test]
fn metrics_only_records_and_never_trips() {
    let (breaker, _) = breaker();
    let _ = breaker.metrics_only();
    for _ in 0..10 {
        breaker.acquire().expect("metrics-only").failure();
    }
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, State::MetricsOnly);
    assert_eq!(metrics.counts.calls, 2);
    assert_eq!(metrics.failure_rate, 100.0);
}

#[test]
fn reset_clears_the_window_and_ends_the_generation() {
    let (breaker, _) = breaker();
    let old = breaker.acquire().expect("closed");
    breaker.acquire().expect("closed").failure();
    assert!(matches!(
        breaker.reset(),
        Transition::Moved { generation: 1, .. }
    ));
    assert_eq!(breaker.metrics().counts.calls, 0);
    old.failure();
    assert_eq!(breaker.metrics().counts.calls, 0, "old generation");
}

#[test]
fn listeners_see_transitions_and_outcomes_in_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let clock = ManualClock::new();
    let config = Config::builder()
        .count_window(2)
        .minimum_calls(2)
        .half_open_permits(1)
        .half_open_successes(1)
        .open_backoff(Backoff::fixed(S))
        .clock(Arc::new(clock.clone()))
        .listener(Arc::new(move |event| {
            assert_eq!(event.breaker, "events");
            sink.lock().expect("lock").push(event.kind);
        }))
        .build()
        .expect("valid");
    let breaker = Breaker::new("events", config);
    breaker.acquire().expect("closed").failure();
    breaker.acquire().expect("closed").failure();
    let _ = breaker.acquire();
    clock.advance(S);
    breaker.acquire().expect("probe").success();
    let log = log.lock().expect("lock");
    let recorded = |outcome| EventKind::Recorded {
        outcome,
        elapsed: Some(Duration::ZERO),
    };
    assert_eq!(
        *log,
        [
            recorded(Outcome::Failure),
            recorded(Outcome::Failure),
            EventKind::StateChanged {
                from: State::Closed,
                to: State::Open,
                generation: 1,
                cause: Cause::FailureRate
            },
            EventKind::Rejected(RejectReason::Open),
            EventKind::StateChanged {
                from: State::Open,
                to: State::HalfOpen,
                generation: 2,
                cause: Cause::OpenElapsed
            },
            recorded(Outcome::Success),
            EventKind::StateChanged {
                from: State::HalfOpen,
                to: State::Closed,
                generation: 3,
                cause: Cause::ProbesSucceeded
            },
        ]
    );
}

#[test]
fn breaker_set_creates_on_demand_and_shares() {
    let set: BreakerSet<&str> = BreakerSet::new(
        Config::builder()
            .count_window(1)
            .minimum_calls(1)
            .build()
            .expect("valid"),
    );
    assert!(set.is_empty());
    let a = set.get(&"a.example:443");
    let a_again = set.get(&"a.example:443");
    assert!(Arc::ptr_eq(&a, &a_again));
    let b = set.get(&"b.example:443");
    a.acquire().expect("closed").failure();
    assert_eq!(a.state(), State::Open);
    assert_eq!(b.state(), State::Closed, "breakers are independent");
    assert_eq!(a.name(), "\"a.example:443\"");
    assert_eq!(set.len(), 2);
    assert!(set.remove(&"a.example:443").is_some());
    assert!(set.existing(&"a.example:443").is_none());
    assert_eq!(set.snapshot().len(), 1);
}

#[test]
fn breaker_set_is_shared_across_threads() {
    let set = Arc::new(BreakerSet::<u32>::new(Config::default()));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let set = Arc::clone(&set);
            std::thread::spawn(move || {
                for key in 0..50 {
                    set.get(&key).acquire().expect("closed").success();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
    assert_eq!(set.len(), 50);
    assert_eq!(set.get(&7).metrics().counts.calls, 4);
}

#[test]
fn invalid_configurations_are_errors_not_panics() {
    let cases: Vec<(weft_resilience::breaker::ConfigBuilder, ConfigError)> = vec![
        (
            Config::builder().failure_rate_threshold(0.0),
            ConfigError::RateOutOfRange {
                which: "failure-rate",
                value: 0.0,
            },
        ),
        (
            Config::builder().slow_call_threshold(100.5, S),
            ConfigError::RateOutOfRange {
                which: "slow-call-rate",
                value: 100.5,
            },
        ),
        (Config::builder().count_window(0), ConfigError::ZeroWindow),
        (
            Config::builder().count_window(40_000),
            ConfigError::WindowTooLarge(40_000),
        ),
        (
            Config::builder().time_window(S, 0),
            ConfigError::ZeroBuckets,
        ),
        (
            Config::builder().time_window(S * 10, 5000),
            ConfigError::TooManyBuckets(5000),
        ),
        (
            Config::builder().time_window(S, 2000),
            ConfigError::BucketTooShort(Duration::from_micros(500)),
        ),
        (
            Config::builder().minimum_calls(0),
            ConfigError::ZeroMinimumCalls,
        ),
        (
            Config::builder().half_open_permits(0),
            ConfigError::ZeroHalfOpenPermits,
        ),
        (
            Config::builder().half_open_permits(9000),
            ConfigError::TooManyHalfOpenPermits(9000),
        ),
        (
            Config::builder().half_open_successes(0),
            ConfigError::ZeroHalfOpenSuccesses,
        ),
        (
            Config::builder().half_open_successes(70_000),
            ConfigError::TooManyHalfOpenSuccesses(70_000),
        ),
        (
            Config::builder().consecutive_failures(0),
            ConfigError::ZeroConsecutiveFailures,
        ),
        (
            Config::builder().slow_call_threshold(50.0, Duration::ZERO),
            ConfigError::ZeroSlowCallDuration,
        ),
        (
            Config::builder().half_open_max_wait(Some(Duration::ZERO)),
            ConfigError::ZeroHalfOpenMaxWait,
        ),
        (
            Config::builder().open_backoff(Backoff::fixed(Duration::ZERO)),
            ConfigError::ZeroOpenDuration,
        ),
        (
            Config::builder().open_backoff(Backoff::exponential(S, 0.5, 2 * S)),
            ConfigError::BadMultiplier(0.5),
        ),
        (
            Config::builder().open_backoff(Backoff::exponential(2 * S, 2.0, S)),
            ConfigError::CapBelowInitial,
        ),
        (
            Config::builder().open_backoff(Backoff::fixed(S).with_jitter(1.5)),
            ConfigError::JitterOutOfRange(1.5),
        ),
    ];
    for (builder, expected) in cases {
        let error = builder.build().expect_err("invalid");
        assert_eq!(error, expected);
        assert!(!error.to_string().is_empty());
    }
    let message = Config::builder()
        .count_window(0)
        .build()
        .expect_err("zero")
        .to_string();
    assert_eq!(message, "a count window needs at least one call");
}

/// Polls a future that never waits to completion (the futures here are
/// ready at once; a real caller uses its executor).
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

#[test]
fn call_records_and_maps_errors() {
    let (breaker, clock) = breaker();
    let ok: Result<u8, CallError<&str>> = run(breaker.call(|| async { Ok(1) }));
    assert_eq!(ok, Ok(1));
    let err = breaker.call_sync(|| Err::<u8, _>("boom"));
    assert_eq!(err, Err(CallError::Failed("boom")));
    assert_eq!(breaker.metrics().counts.failures, 1);
    assert_eq!(breaker.state(), State::Open, "1 of 2 failed: 50%");
    let _ = breaker.reset();
    let err = run(breaker.call(|| async {
        clock.advance(S);
        Err::<u8, _>("boom")
    }));
    assert_eq!(err, Err(CallError::Failed("boom")));
    breaker
        .call_sync(|| Ok::<u8, &str>(1))
        .expect("one failure of 2");
    match breaker.call_sync(|| Ok::<u8, &str>(1)) {
        Err(CallError::Rejected(rejected)) => {
            assert_eq!(rejected.reason(), RejectReason::Open);
            assert_eq!(
                rejected.to_string(),
                "circuit breaker open; retry after 60s"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_cancelled_call_is_ignored_and_returns_its_probe_slot() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .count_window(1)
        .minimum_calls(1)
        .half_open_permits(1)
        .open_backoff(Backoff::fixed(S))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let breaker = Breaker::new("cancel", config);
    breaker.acquire().expect("closed").failure();
    clock.advance(S);
    {
        let mut call = Box::pin(breaker.call(std::future::pending::<Result<(), ()>>));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(breaker.metrics().half_open_in_flight, 1);
    } // dropped: cancelled
    assert_eq!(breaker.metrics().half_open_in_flight, 0);
    assert_eq!(breaker.state(), State::HalfOpen);
}

fn _assert_send_sync<T: Send + Sync>() {}

#[test]
fn breakers_and_owned_permits_are_send_and_sync() {
    _assert_send_sync::<Breaker>();
    _assert_send_sync::<BreakerSet<String>>();
    _assert_send_sync::<weft_resilience::breaker::OwnedPermit<weft_resilience::breaker::ErrorsFail>>(
    );
}
