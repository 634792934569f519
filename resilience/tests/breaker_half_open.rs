//! Half-open: lazy entry, the probe limit, closing, reopening, abandoning
//! stuck probes, and the tickets' generation rule.

use std::{sync::Arc, time::Duration};

use weft_resilience::{
    breaker::{Backoff, Breaker, Config, ConfigBuilder, RejectReason, State},
    clock::ManualClock,
};

const S: Duration = Duration::from_secs(1);

/// Trips on one failure; open 10 s; 2 probes; closes after 3 successes.
fn builder() -> ConfigBuilder {
    Config::builder()
        .count_window(1)
        .minimum_calls(1)
        .open_backoff(Backoff::fixed(10 * S))
        .half_open_permits(2)
        .half_open_successes(3)
        .half_open_max_wait(Some(30 * S))
}

fn tripped(builder: ConfigBuilder) -> (Breaker, ManualClock) {
    let clock = ManualClock::new();
    let config = builder
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let breaker = Breaker::new("test", config);
    breaker.acquire().expect("closed").failure();
    assert_eq!(breaker.state(), State::Open);
    (breaker, clock)
}

#[test]
fn open_says_when_it_will_admit_and_moves_lazily() {
    let (breaker, clock) = tripped(builder());
    clock.advance(4 * S);
    let rejected = breaker.acquire().expect_err("open");
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert_eq!(rejected.retry_after(), Some(6 * S));
    assert_eq!(rejected.retry_at(), Some(10 * S));
    clock.advance(6 * S);
    assert_eq!(breaker.state(), State::Open, "no timer: still open");
    let probe = breaker.acquire().expect("first probe");
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(probe.generation(), breaker.generation());
    assert_eq!(breaker.metrics().rejected, 1);
}

#[test]
fn half_open_admits_at_most_n_and_closes_after_m_successes() {
    let (breaker, clock) = tripped(builder());
    clock.advance(10 * S);
    let first = breaker.acquire().expect("probe 1");
    let second = breaker.acquire().expect("probe 2");
    let full = breaker.acquire().expect_err("limit 2");
    assert_eq!(full.reason(), RejectReason::HalfOpenFull);
    assert_eq!(full.retry_after(), None);
    first.success();
    second.success();
    assert_eq!(breaker.state(), State::HalfOpen, "2 of 3 successes");
    assert_eq!(breaker.metrics().half_open_successes, 2);
    breaker.acquire().expect("a slot is free").success();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        breaker.metrics().counts.calls,
        0,
        "closed with a fresh window"
    );
}

#[test]
fn a_failed_probe_reopens() {
    let (breaker, clock) = tripped(builder());
    clock.advance(10 * S);
    let ok = breaker.acquire().expect("probe");
    let bad = breaker.acquire().expect("probe");
    let generation = breaker.generation();
    bad.failure();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.generation(), generation + 1);
    // The other probe's success is from the half-open generation: ignored.
    ok.success();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.metrics().half_open_successes, 0);
}

#[test]
fn a_slow_probe_fails_when_slowness_is_a_criterion() {
    let (breaker, clock) = tripped(builder().slow_call_threshold(100.0, S));
    clock.advance(10 * S);
    let probe = breaker.acquire().expect("probe");
    clock.advance(S);
    probe.success();
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn a_dropped_permit_returns_its_slot_and_ignore_does_too() {
    let (breaker, clock) = tripped(builder());
    clock.advance(10 * S);
    let first = breaker.acquire().expect("probe");
    let second = breaker.acquire().expect("probe");
    assert!(breaker.acquire().is_err());
    drop(first); // a cancelled call
    assert_eq!(breaker.metrics().half_open_in_flight, 1);
    second.ignore();
    assert_eq!(breaker.metrics().half_open_in_flight, 0);
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.metrics().half_open_successes, 0, "nothing counted");
    let _a = breaker.acquire().expect("slot back");
    let _b = breaker.acquire().expect("slot back");
}

#[test]
fn stuck_probes_are_abandoned_after_the_max_wait() {
    let (breaker, clock) = tripped(builder());
    clock.advance(10 * S);
    let stuck_a = breaker.acquire().expect("probe");
    let stuck_b = breaker.acquire().expect("probe");
    clock.advance(29 * S);
    assert_eq!(
        breaker.acquire().expect_err("full").reason(),
        RejectReason::HalfOpenFull
    );
    clock.advance(S);
    let rejected = breaker.acquire().expect_err("abandoned: open again");
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert_eq!(rejected.retry_after(), Some(10 * S));
    assert_eq!(breaker.state(), State::Open);
    // Their late verdicts are from a dead generation.
    let generation = breaker.generation();
    stuck_a.success();
    stuck_b.failure();
    assert_eq!(breaker.generation(), generation);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn progress_restarts_the_max_wait() {
    let (breaker, clock) = tripped(builder().half_open_successes(100));
    clock.advance(10 * S);
    let _stuck = breaker.acquire().expect("probe");
    for _ in 0..5 {
        clock.advance(20 * S);
        breaker.acquire().expect("one slot cycles").success();
    }
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "progress every 20 s < 30 s"
    );
}

#[test]
fn no_max_wait_waits_forever() {
    let (breaker, clock) = tripped(builder().half_open_max_wait(None));
    clock.advance(10 * S);
    let _a = breaker.acquire().expect("probe");
    let _b = breaker.acquire().expect("probe");
    clock.advance(1_000_000 * S);
    assert_eq!(
        breaker.acquire().expect_err("full").reason(),
        RejectReason::HalfOpenFull
    );
}

#[test]
fn a_verdict_from_before_the_trip_changes_nothing() {
    let clock = ManualClock::new();
    let config = builder()
        .count_window(4)
        .minimum_calls(2)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let breaker = Breaker::new("test", config);
    let old = breaker.acquire().expect("closed");
    assert_eq!(old.generation(), 0);
    breaker.acquire().expect("closed").failure();
    breaker.acquire().expect("closed").failure();
    assert_eq!(breaker.state(), State::Open);
    let before = breaker.metrics();
    old.failure();
    assert_eq!(breaker.metrics(), before, "stale verdict ignored");
    // Even in a later half-open generation, it could not take a slot.
    clock.advance(10 * S);
    let probe = breaker.acquire().expect("probe");
    assert_eq!(breaker.metrics().half_open_in_flight, 1);
    probe.success();
    assert_eq!(breaker.metrics().half_open_in_flight, 0);
}

#[test]
fn owned_permits_follow_the_same_rules() {
    let clock = ManualClock::new();
    let config = builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let breaker = Arc::new(Breaker::new("owned", config));
    let permit = breaker.acquire_owned().expect("closed");
    let handle = std::thread::spawn(move || permit.failure());
    handle.join().expect("thread");
    assert_eq!(breaker.state(), State::Open);
    clock.advance(10 * S);
    let probe = breaker.acquire_owned().expect("probe");
    drop(probe);
    assert_eq!(breaker.metrics().half_open_in_flight, 0);
}

mod failure_rate_mode {
    use std::{sync::Arc, time::Duration};

    use weft_resilience::{
        breaker::{
            Backoff, Breaker, Config, ConfigError, HalfOpenMode, RejectReason, State,
            MAX_HALF_OPEN_PROBES,
        },
        clock::ManualClock,
    };

    fn tripped(probes: u32) -> (Breaker, ManualClock) {
        let clock = ManualClock::new();
        let config = Config::builder()
            .count_window(1)
            .minimum_calls(1)
            .failure_rate_threshold(50.0)
            .no_slow_calls()
            .half_open_mode(HalfOpenMode::FailureRate { probes })
            .half_open_max_wait(None)
            .open_backoff(Backoff::fixed(Duration::from_secs(1)))
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("valid");
        let breaker = Breaker::new("rate", config);
        breaker.acquire().expect("closed").failure();
        clock.advance(Duration::from_secs(1));
        (breaker, clock)
    }

    #[test]
    fn admits_exactly_n_probes_and_closes_below_the_threshold() {
        let (breaker, _clock) = tripped(4);
        let probes: Vec<_> = (0..4)
            .map(|_| breaker.acquire().expect("a probe"))
            .collect();
        assert_eq!(breaker.state(), State::HalfOpen);
        assert_eq!(
            breaker.acquire().unwrap_err().reason(),
            RejectReason::HalfOpenFull,
            "N probes, not N at a time"
        );
        let mut probes = probes.into_iter();
        probes.next().expect("p").failure();
        // One failure in four: no decision until all four settle.
        probes.next().expect("p").success();
        probes.next().expect("p").success();
        assert_eq!(breaker.state(), State::HalfOpen);
        assert!(
            breaker.acquire().is_err(),
            "settled probes still count toward N"
        );
        probes.next().expect("p").success();
        assert_eq!(breaker.state(), State::Closed, "25% < 50%");
    }

    #[test]
    fn reopens_at_the_threshold_and_replaces_ignored_probes() {
        let (breaker, _clock) = tripped(2);
        let a = breaker.acquire().expect("a probe");
        let b = breaker.acquire().expect("a probe");
        b.ignore(); // its slot comes back
        let c = breaker.acquire().expect("the ignored probe is replaced");
        a.success();
        assert_eq!(breaker.metrics().half_open_successes, 1);
        assert_eq!(breaker.metrics().half_open_in_flight, 1);
        c.failure();
        assert_eq!(breaker.state(), State::Open, "1 of 2 = 50% ≥ 50%");
    }

    #[test]
    fn probe_counts_out_of_range_are_errors() {
        for probes in [0, MAX_HALF_OPEN_PROBES + 1] {
            let err = Config::builder()
                .half_open_mode(HalfOpenMode::FailureRate { probes })
                .build()
                .expect_err("out of range");
            assert_eq!(err, ConfigError::HalfOpenProbesOutOfRange(probes));
            assert!(err.to_string().contains("probes"));
        }
    }

    #[test]
    fn a_snapshot_shows_state_rates_and_when_it_admits_again() {
        let (breaker, clock) = tripped(2);
        // Reopen it from half-open (two failed probes of two), so the open
        // duration starts now.
        breaker.acquire().expect("probe").failure();
        breaker.acquire().expect("probe").failure();
        assert_eq!(breaker.state(), State::Open);
        clock.advance(Duration::from_millis(400));
        let snap = breaker.snapshot();
        assert_eq!(snap.metrics.state, State::Open);
        assert_eq!(snap.retry_after, Some(Duration::from_millis(600)));
        let line = snap.to_string();
        assert!(line.starts_with("rate  open  gen "), "{line}");
        assert!(line.contains("retry in 0.6s"), "{line}");
        assert!(line.contains("failures 100.0%"), "{line}");
    }
}
