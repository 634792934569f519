//! Tripping: each criterion, the minimum number of calls, and which results
//! count as failures.

use std::{sync::Arc, time::Duration};

use weft_resilience::{
    breaker::{Breaker, Cause, Config, ConfigBuilder, EventKind, Predicates, State},
    clock::ManualClock,
};

const MS: Duration = Duration::from_millis(1);

fn breaker(builder: ConfigBuilder) -> (Breaker, ManualClock) {
    let clock = ManualClock::new();
    let config = builder
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    (Breaker::new("test", config), clock)
}

fn fail(breaker: &Breaker, n: usize) {
    for _ in 0..n {
        breaker.acquire().expect("admitted").failure();
    }
}

fn succeed(breaker: &Breaker, n: usize) {
    for _ in 0..n {
        breaker.acquire().expect("admitted").success();
    }
}

#[test]
fn failure_rate_trips_at_threshold_not_before() {
    let (breaker, _) = breaker(
        Config::builder()
            .count_window(10)
            .minimum_calls(10)
            .failure_rate_threshold(50.0),
    );
    succeed(&breaker, 6);
    fail(&breaker, 3);
    assert_eq!(breaker.state(), State::Closed, "9 calls < minimum");
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Closed, "40% < 50%");
    // The window slides: evicting a success with a failure reaches 50%.
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.generation(), 1);
    assert!(breaker.acquire().is_err());
}

#[test]
fn minimum_calls_guards_every_criterion() {
    let (breaker, _) = breaker(
        Config::builder()
            .count_window(100)
            .minimum_calls(5)
            .consecutive_failures(2)
            .failure_rate_threshold(10.0),
    );
    fail(&breaker, 4);
    assert_eq!(breaker.state(), State::Closed, "4 failures, below 5 calls");
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn a_success_that_reaches_minimum_calls_can_trip() {
    let (breaker, _) = breaker(
        Config::builder()
            .count_window(10)
            .minimum_calls(4)
            .failure_rate_threshold(50.0),
    );
    fail(&breaker, 3);
    succeed(&breaker, 1);
    assert_eq!(breaker.state(), State::Open, "3 of 4 failed");
}

#[test]
fn slow_call_rate_trips_on_slow_successes() {
    let (breaker, clock) = breaker(
        Config::builder()
            .count_window(4)
            .minimum_calls(4)
            .no_failure_rate()
            .slow_call_threshold(50.0, 100 * MS),
    );
    for slow in [false, true, false, true] {
        let permit = breaker.acquire().expect("closed");
        clock.advance(if slow { 100 * MS } else { 99 * MS });
        permit.success();
    }
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, State::Open);
    assert_eq!(metrics.counts.slow_calls, 2);
    assert_eq!(metrics.counts.failures, 0);
}

#[test]
fn slow_failures_count_as_both() {
    let (breaker, clock) = breaker(
        Config::builder()
            .count_window(10)
            .minimum_calls(10)
            .slow_call_threshold(100.0, 10 * MS),
    );
    let permit = breaker.acquire().expect("closed");
    clock.advance(10 * MS);
    permit.failure();
    let counts = breaker.metrics().counts;
    assert_eq!(
        (
            counts.calls,
            counts.failures,
            counts.slow_calls,
            counts.slow_failures
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn consecutive_failures_trip_and_a_success_resets_them() {
    let (breaker, _) = breaker(
        Config::builder()
            .count_window(100)
            .minimum_calls(1)
            .no_failure_rate()
            .consecutive_failures(3),
    );
    fail(&breaker, 2);
    succeed(&breaker, 1);
    fail(&breaker, 2);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().consecutive_failures, 2);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn each_trip_names_its_cause() {
    let causes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&causes);
    let (breaker, _) = breaker(
        Config::builder()
            .count_window(2)
            .minimum_calls(2)
            .consecutive_failures(2)
            .listener(Arc::new(move |event| {
                if let EventKind::StateChanged { cause, .. } = event.kind {
                    seen.lock().expect("lock").push(cause);
                }
            })),
    );
    fail(&breaker, 2);
    assert_eq!(*causes.lock().expect("lock"), [Cause::ConsecutiveFailures]);
}

#[derive(Debug, PartialEq)]
enum HttpError {
    BadRequest,
    Reset,
}

#[test]
fn a_predicate_decides_failures_over_values_and_ignores_errors() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .clock(Arc::new(clock))
        .build()
        .expect("valid");
    let classify = Predicates::new(
        |result: &Result<u16, HttpError>| matches!(result, Err(_) | Ok(500..)),
        |error: &HttpError| *error == HttpError::BadRequest,
    );
    let breaker = Breaker::with_classifier("http", config, classify);
    for result in [Ok(200), Err(HttpError::BadRequest), Ok(204), Ok(503)] {
        breaker.acquire().expect("closed").record(&result);
    }
    let counts = breaker.metrics().counts;
    assert_eq!(counts.calls, 3, "the bad request is ignored");
    assert_eq!(counts.failures, 1, "503 is a failure");
    breaker
        .acquire()
        .expect("closed")
        .record(&Err(HttpError::Reset));
    assert_eq!(breaker.state(), State::Open, "2 of 4 failed");
}

#[test]
fn time_window_trips_only_on_recent_calls() {
    let (breaker, clock) = breaker(
        Config::builder()
            .time_window(Duration::from_secs(10), 10)
            .minimum_calls(4)
            .failure_rate_threshold(50.0),
    );
    fail(&breaker, 3);
    clock.advance(Duration::from_secs(10));
    // The three failures are a whole window old: their buckets are stale.
    assert_eq!(breaker.metrics().counts.calls, 0);
    succeed(&breaker, 3);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Closed, "1 of 4 recent calls failed");
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Closed, "2 of 5 recent calls failed");
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open, "3 of 6");
}

#[test]
fn time_window_rotation_reuses_buckets_without_stale_counts() {
    let (breaker, clock) = breaker(
        Config::builder()
            .time_window(Duration::from_secs(3), 3)
            .minimum_calls(100),
    );
    // One call per second for 7 s: the window never holds more than 3.
    for second in 0..7 {
        fail(&breaker, 1);
        let calls = breaker.metrics().counts.calls;
        assert_eq!(calls, (second + 1).min(3), "at {second} s");
        clock.advance(Duration::from_secs(1));
    }
    // Skip 2 s: only the last bucket written remains, if within the window.
    clock.advance(Duration::from_secs(1));
    assert_eq!(breaker.metrics().counts.calls, 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(breaker.metrics().counts.calls, 0);
}

#[test]
fn a_striped_time_window_sums_every_thread_s_calls_when_judging() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(5)
        .failure_rate_threshold(50.0)
        .no_slow_calls()
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let breaker = Arc::new(Breaker::new("striped", config));
    // Three failures from other threads (other stripes), below minimum.
    for _ in 0..3 {
        let b = Arc::clone(&breaker);
        std::thread::spawn(move || b.acquire().expect("closed").failure())
            .join()
            .expect("no panic");
    }
    assert_eq!(breaker.state(), State::Closed);
    // This thread's first success sees them (4 calls, below minimum); the
    // second reaches the minimum with 60% failures and trips.
    breaker.acquire().expect("closed").success();
    assert_eq!(breaker.state(), State::Closed);
    breaker.acquire().expect("closed").success();
    assert_eq!(breaker.state(), State::Open, "{:?}", breaker.metrics());
    assert_eq!(breaker.metrics().counts.calls, 5);
}

#[test]
fn failures_that_left_the_time_window_no_longer_count() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .time_window(Duration::from_secs(2), 2)
        .minimum_calls(3)
        .failure_rate_threshold(50.0)
        .no_slow_calls()
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let breaker = Breaker::new("expiring", config);
    breaker.acquire().expect("closed").failure();
    breaker.acquire().expect("closed").failure();
    clock.advance(Duration::from_secs(3));
    for _ in 0..3 {
        breaker.acquire().expect("closed").success();
    }
    assert_eq!(breaker.state(), State::Closed);
    let m = breaker.metrics();
    assert_eq!((m.counts.calls, m.counts.failures), (3, 0));
}
