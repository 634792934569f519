//! The open duration grows with consecutive trips and resets after a
//! healthy close.

use std::{sync::Arc, time::Duration};

use weft_resilience::{
    breaker::{Backoff, Breaker, Config, State},
    clock::ManualClock,
};

const S: Duration = Duration::from_secs(1);

fn breaker(backoff: Backoff) -> (Breaker, ManualClock) {
    let clock = ManualClock::new();
    let config = Config::builder()
        .count_window(1)
        .minimum_calls(1)
        .half_open_permits(1)
        .half_open_successes(1)
        .open_backoff(backoff)
        .seed(42)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    (Breaker::new("backoff", config), clock)
}

/// The open duration the breaker reports right after tripping.
fn open_for(breaker: &Breaker) -> Duration {
    assert_eq!(breaker.state(), State::Open);
    breaker
        .acquire()
        .expect_err("open")
        .retry_after()
        .expect("known")
}

/// Waits out the open duration and fails the probe.
fn fail_probe(breaker: &Breaker, clock: &ManualClock, open: Duration) {
    clock.advance(open);
    breaker.acquire().expect("probe").failure();
}

#[test]
fn exponential_grows_to_its_cap_then_resets_after_a_close() {
    let (breaker, clock) = breaker(Backoff::exponential(S, 2.0, 5 * S));
    breaker.acquire().expect("closed").failure();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let open = open_for(&breaker);
        seen.push(open);
        fail_probe(&breaker, &clock, open);
    }
    assert_eq!(seen, [S, 2 * S, 4 * S, 5 * S, 5 * S]);
    assert_eq!(breaker.metrics().consecutive_trips, 6);
    // Heal: a successful probe closes and resets the backoff.
    clock.advance(5 * S);
    breaker.acquire().expect("probe").success();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().consecutive_trips, 0);
    breaker.acquire().expect("closed").failure();
    assert_eq!(open_for(&breaker), S);
}

#[test]
fn fixed_stays_fixed() {
    let (breaker, clock) = breaker(Backoff::fixed(3 * S));
    breaker.acquire().expect("closed").failure();
    for _ in 0..3 {
        assert_eq!(open_for(&breaker), 3 * S);
        fail_probe(&breaker, &clock, 3 * S);
    }
}

#[test]
fn jitter_shortens_within_its_band_and_is_seeded() {
    let run = || {
        let (breaker, clock) = breaker(Backoff::exponential(4 * S, 2.0, 60 * S).with_jitter(0.25));
        breaker.acquire().expect("closed").failure();
        let mut seen = Vec::new();
        for step in 0..4u32 {
            let open = open_for(&breaker);
            let nominal = 4 * S * 2u32.pow(step);
            assert!(open <= nominal && open >= nominal.mul_f64(0.75), "{open:?}");
            seen.push(open);
            fail_probe(&breaker, &clock, open);
        }
        seen
    };
    let first = run();
    assert_eq!(first, run(), "same seed, same durations");
    assert!(first.iter().any(|d| d.subsec_nanos() != 0), "jittered");
}

#[test]
fn abandoned_probes_count_as_a_trip() {
    let clock = ManualClock::new();
    let config = Config::builder()
        .count_window(1)
        .minimum_calls(1)
        .half_open_permits(1)
        .half_open_max_wait(Some(S))
        .open_backoff(Backoff::exponential(S, 10.0, 1000 * S))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let breaker = Breaker::new("stuck", config);
    breaker.acquire().expect("closed").failure();
    clock.advance(S);
    let _stuck = breaker.acquire().expect("probe");
    clock.advance(S);
    assert_eq!(
        breaker.acquire().expect_err("reopened").retry_after(),
        Some(10 * S)
    );
}
