#![cfg(weft_loom)]
//! loom models of the breaker's state word, run on the real code through
//! `weft_resilience`'s `sync` facade. Windows are tiny so every interleaving
//! of the interesting steps is reached.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test breaker`

use std::{
    sync::{
        atomic::{AtomicUsize as StdAtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::Duration,
};

use loom::{
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};
use weft_resilience::{
    breaker::{Backoff, Breaker, Config, ConfigBuilder, EventKind, State},
    clock::ManualClock,
};

const S: Duration = Duration::from_secs(1);

/// A breaker on a manual clock, and a count of its state changes.
fn breaker(builder: ConfigBuilder) -> (Arc<Breaker>, ManualClock, Arc<StdAtomicUsize>) {
    let clock = ManualClock::new();
    // The listener's counter is observation, not part of the model: std's
    // atomic, read after the threads are joined.
    let transitions = Arc::new(StdAtomicUsize::new(0));
    let seen = Arc::clone(&transitions);
    let config = builder
        .open_backoff(Backoff::fixed(S))
        .no_slow_calls()
        .clock(Arc::new(clock.clone()))
        .listener(Arc::new(move |event| {
            if let EventKind::StateChanged { .. } = event.kind {
                seen.fetch_add(1, SeqCst);
            }
        }))
        .build()
        .expect("valid");
    (Arc::new(Breaker::new("loom", config)), clock, transitions)
}

/// Trips `breaker` (which must trip on one failure) and waits out the open
/// duration, so the next acquire probes.
fn trip_and_wait(breaker: &Breaker, clock: &ManualClock) {
    breaker.acquire().expect("closed").failure();
    assert_eq!(breaker.state(), State::Open);
    clock.advance(S);
}

/// Two threads each acquire and report a failure; returns once both are
/// joined.
fn fail_on_two_threads(breaker: &Arc<Breaker>) {
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let breaker = Arc::clone(breaker);
            thread::spawn(move || {
                if let Ok(permit) = breaker.acquire() {
                    permit.failure();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
}

#[test]
fn concurrent_failures_trip_once_per_generation() {
    loom::model(|| {
        // Every failure meets the criterion: both threads try to trip.
        let (breaker, _, transitions) = breaker(
            Config::builder()
                .count_window(2)
                .minimum_calls(1)
                .consecutive_failures(1),
        );
        fail_on_two_threads(&breaker);
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(breaker.generation(), 1, "one trip, one generation");
        assert_eq!(transitions.load(SeqCst), 1, "exactly one winner");
    });
}

#[test]
fn half_open_never_admits_more_than_n() {
    loom::model(|| {
        let (breaker, clock, _) = breaker(
            Config::builder()
                .count_window(1)
                .minimum_calls(1)
                .half_open_permits(1)
                .half_open_successes(2)
                .half_open_max_wait(None),
        );
        trip_and_wait(&breaker, &clock);
        let holders = Arc::new(AtomicUsize::new(0));
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let (breaker, holders, admitted) = (
                    Arc::clone(&breaker),
                    Arc::clone(&holders),
                    Arc::clone(&admitted),
                );
                thread::spawn(move || {
                    if let Ok(permit) = breaker.acquire() {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        let holding = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(holding <= 1, "{holding} probes at once, limit 1");
                        holders.fetch_sub(1, Ordering::SeqCst);
                        // One thread cancels (drop), the other ignores: both
                        // must give the slot back.
                        if i == 0 {
                            drop(permit);
                        } else {
                            permit.ignore();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert!(
            admitted.load(Ordering::SeqCst) >= 1,
            "the first caller probes"
        );
        assert_eq!(breaker.state(), State::HalfOpen);
        assert_eq!(breaker.metrics().half_open_in_flight, 0, "slots returned");
        assert!(breaker.acquire().is_ok());
    });
}

#[test]
fn probe_successes_close_exactly_once() {
    loom::model(|| {
        let (breaker, clock, transitions) = breaker(
            Config::builder()
                .count_window(1)
                .minimum_calls(1)
                .half_open_permits(2)
                .half_open_successes(2)
                .half_open_max_wait(None),
        );
        trip_and_wait(&breaker, &clock);
        let first = breaker.acquire_owned().expect("probe");
        let second = breaker.acquire_owned().expect("probe");
        let before = transitions.load(SeqCst);
        let a = thread::spawn(move || first.success());
        let b = thread::spawn(move || second.success());
        a.join().expect("thread");
        b.join().expect("thread");
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(transitions.load(SeqCst), before + 1);
    });
}

#[test]
fn a_late_verdict_from_an_old_generation_changes_nothing() {
    loom::model(|| {
        let (breaker, clock, transitions) = breaker(
            Config::builder()
                .count_window(1)
                .minimum_calls(1)
                .half_open_permits(1)
                .half_open_successes(1)
                .half_open_max_wait(None),
        );
        trip_and_wait(&breaker, &clock);
        // A probe whose success would close the breaker, racing a force-open
        // that ends its generation.
        let probe = breaker.acquire_owned().expect("probe");
        let probe_generation = probe.generation();
        let before = transitions.load(SeqCst);
        let late = thread::spawn(move || probe.success());
        let forcer = {
            let breaker = Arc::clone(&breaker);
            thread::spawn(move || {
                let _ = breaker.force_open();
            })
        };
        late.join().expect("thread");
        forcer.join().expect("thread");
        assert_eq!(breaker.state(), State::ForcedOpen);
        let metrics = breaker.metrics();
        assert_eq!(metrics.half_open_in_flight, 0);
        if breaker.generation() == probe_generation + 1 {
            // The force came first: the success was stale and did nothing.
            assert_eq!(transitions.load(SeqCst), before + 1);
        } else {
            // The success closed first, then the force.
            assert_eq!(breaker.generation(), probe_generation + 2);
            assert_eq!(transitions.load(SeqCst), before + 2);
        }
    });
}

#[test]
fn a_stale_closed_verdict_cannot_trip_a_new_generation() {
    loom::model(|| {
        let (breaker, _, transitions) = breaker(
            Config::builder()
                .count_window(2)
                .minimum_calls(1)
                .consecutive_failures(1),
        );
        let old = breaker.acquire_owned().expect("closed");
        let late = thread::spawn(move || old.failure());
        let resetter = {
            let breaker = Arc::clone(&breaker);
            thread::spawn(move || {
                let _ = breaker.reset();
            })
        };
        late.join().expect("thread");
        resetter.join().expect("thread");
        // Either the failure tripped generation 0 and the reset followed
        // (generation 2), or the reset came first and the failure was stale
        // (generation 1, no trip). Never a trip of generation 1.
        assert_eq!(breaker.state(), State::Closed);
        match breaker.generation() {
            1 => assert_eq!(transitions.load(SeqCst), 1),
            2 => assert_eq!(transitions.load(SeqCst), 2),
            other => panic!("generation {other}"),
        }
    });
}

#[test]
fn time_window_failures_in_two_stripes_trip_once() {
    loom::model(|| {
        // Two failures reach the minimum together; each thread records into
        // its own stripe, so only a sum across stripes sees both.
        let (breaker, _, transitions) = breaker(
            Config::builder()
                .time_window(Duration::from_secs(2), 2)
                .minimum_calls(2)
                .failure_rate_threshold(50.0),
        );
        fail_on_two_threads(&breaker);
        assert_eq!(
            breaker.state(),
            State::Open,
            "the later recorder's sum saw both"
        );
        assert_eq!(transitions.load(SeqCst), 1, "exactly one winner");
    });
}

#[test]
fn a_failure_in_the_shared_stripe_is_summed_with_the_owned_ones() {
    loom::model(|| {
        // Under loom a time window has two owned stripes: the main thread
        // takes the first, the first spawned thread to record the second,
        // and the other records into the shared stripe by CAS (plain
        // stores elsewhere). The later of the two failures must see the
        // other's, whichever stripe each landed in.
        let (breaker, _, transitions) = breaker(
            Config::builder()
                .time_window(Duration::from_secs(2), 2)
                .minimum_calls(3)
                .failure_rate_threshold(60.0),
        );
        breaker.acquire().expect("closed").success();
        fail_on_two_threads(&breaker);
        assert_eq!(breaker.state(), State::Open, "2 of 3 calls failed");
        assert_eq!(transitions.load(SeqCst), 1, "exactly one winner");
    });
}

#[test]
fn a_success_skipping_a_clean_window_never_hides_a_failure() {
    loom::model(|| {
        // A window full of successes: a success may skip the cursor (a load
        // of the total, no write), racing a failure that takes a slot.
        let (breaker, _, transitions) = breaker(
            Config::builder()
                .count_window(2)
                .minimum_calls(2)
                .failure_rate_threshold(50.0),
        );
        for _ in 0..2 {
            breaker.acquire().expect("closed").success();
        }
        let threads: Vec<_> = [true, false]
            .into_iter()
            .map(|fail| {
                let breaker = Arc::clone(&breaker);
                thread::spawn(move || {
                    if let Ok(permit) = breaker.acquire() {
                        if fail {
                            permit.failure();
                        } else {
                            permit.success();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        // Whatever the order, the last two calls are one failure and one
        // success: 50 %, which trips, once; the total matches the slots.
        assert_eq!(breaker.state(), State::Open, "the failure was seen");
        assert_eq!(transitions.load(SeqCst), 1, "exactly one winner");
        let counts = breaker.metrics().counts;
        assert_eq!((counts.calls, counts.failures), (2, 1), "{counts:?}");
    });
}
