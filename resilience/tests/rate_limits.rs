//! Scenario tests of the rate limiters on a manual clock: GCRA bursts and
//! reservations, the keyed limiter's bounded memory, events.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::Duration,
};

use weft_resilience::{
    clock::ManualClock,
    limit::{ConfigError, EventKind, Gcra, KeyedGcra, RateError, Refusal},
};

const MS: Duration = Duration::from_millis(1);

#[test]
fn gcra_holds_the_rate_over_a_long_run() {
    let clock = ManualClock::new();
    let limiter = Gcra::builder()
        .rate(100, Duration::from_secs(1))
        .burst(10)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    // Hammer it every millisecond for 10 s: 10 (burst) + 100/s × 10 s.
    let mut admitted = 0;
    for _ in 0..10_000 {
        while limiter.try_acquire().is_ok() {
            admitted += 1;
        }
        clock.advance(MS);
    }
    assert_eq!(
        admitted,
        10 + 1000 - 1,
        "burst plus the rate (the last token is due at 10 s)"
    );
    assert!(limiter.metrics().rejected >= 9_000);
}

#[test]
fn reservations_wait_their_turn_and_give_back_when_cancelled() {
    let clock = ManualClock::new();
    let limiter = Gcra::builder()
        .rate(10, Duration::from_secs(1))
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let first = limiter.reserve(1, Duration::ZERO).expect("conforms now");
    assert_eq!(first.wait(), Duration::ZERO);
    first.used();
    let second = limiter
        .reserve(1, Duration::from_secs(1))
        .expect("within a second");
    assert_eq!(second.wait(), 100 * MS);
    let third = limiter
        .reserve(1, Duration::from_secs(1))
        .expect("within a second");
    assert_eq!(third.wait(), 200 * MS);
    match limiter.reserve(1, 250 * MS) {
        Err(RateError::WaitTooLong { wait }) => assert_eq!(wait, 300 * MS),
        other => panic!("{other:?}"),
    }
    // The third caller gives up: its 100 ms come back.
    drop(third);
    let again = limiter
        .reserve(1, Duration::from_secs(1))
        .expect("within a second");
    assert_eq!(again.wait(), 200 * MS, "the cancelled slot was reused");
    again.used();
    second.used();
    assert_eq!(limiter.metrics().retry_after, 300 * MS);
}

#[test]
fn asking_for_more_than_the_burst_is_a_clear_error() {
    let limiter = Gcra::builder().burst(3).build().expect("valid");
    assert_eq!(
        limiter.try_acquire_n(4),
        Err(RateError::InsufficientCapacity { asked: 4, burst: 3 })
    );
    assert!(limiter.try_acquire_n(3).is_ok());
}

#[test]
fn refusals_are_reported_to_listeners() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let clock = ManualClock::new();
    let limiter = Gcra::builder()
        .clock(Arc::new(clock))
        .name("api")
        .listener(Arc::new(move |event| {
            assert_eq!(event.limiter, "api");
            assert_eq!(event.kind, EventKind::Rejected(Refusal::RateExceeded));
            counter.fetch_add(1, SeqCst);
        }))
        .build()
        .expect("valid");
    limiter.try_acquire().expect("burst of one");
    assert!(limiter.try_acquire().is_err());
    assert!(limiter.try_acquire().is_err());
    assert_eq!(seen.load(SeqCst), 2);
}

#[test]
fn keyed_limiters_are_independent_per_key() {
    let clock = ManualClock::new();
    let limiter = KeyedGcra::<&str>::builder()
        .rate(1, Duration::from_secs(1))
        .burst(2)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    for _ in 0..2 {
        limiter.try_acquire(&"alice").expect("alice's burst");
    }
    assert!(matches!(
        limiter.try_acquire(&"alice"),
        Err(RateError::Exhausted { .. })
    ));
    limiter.try_acquire(&"bob").expect("bob is not alice");
    clock.advance(Duration::from_secs(1));
    limiter.try_acquire(&"alice").expect("refilled");
}

#[test]
fn keyed_memory_is_bounded_and_idle_keys_are_evicted() {
    let clock = ManualClock::new();
    let evicted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&evicted);
    let limiter = KeyedGcra::<u32>::builder()
        .rate(1, Duration::from_secs(1))
        .burst(1)
        .max_keys(4)
        .shards(1)
        .clock(Arc::new(clock.clone()))
        .listener(Arc::new(move |event| {
            if let EventKind::Evicted { keys } = event.kind {
                counter.fetch_add(keys, SeqCst);
            }
        }))
        .build()
        .expect("valid");
    for key in 0..4 {
        limiter.try_acquire(&key).expect("a new key");
    }
    assert_eq!(limiter.metrics().keys, 4);
    // Every key is still being limited: a fifth is refused, nobody evicted.
    assert_eq!(limiter.try_acquire(&4), Err(RateError::TooManyKeys));
    assert_eq!(limiter.metrics().keys, 4);
    // Keys 0..4 become idle after a second; the fifth key evicts them.
    clock.advance(Duration::from_secs(1));
    limiter.try_acquire(&4).expect("room after eviction");
    let m = limiter.metrics();
    assert_eq!((m.keys, m.evicted), (1, 4));
    assert_eq!(evicted.load(SeqCst), 4);
    // An evicted key starts with its full burst: nothing was lost.
    limiter.try_acquire(&0).expect("full burst");
    clock.advance(Duration::from_secs(5));
    assert_eq!(limiter.retain_recent(), 2);
    assert_eq!(limiter.metrics().keys, 0);
}

#[test]
fn keyed_bad_configs_say_which() {
    let b = KeyedGcra::<u32>::builder;
    assert_eq!(b().max_keys(0).build().unwrap_err(), ConfigError::ZeroKeys);
    assert_eq!(
        b().max_keys(4).shards(8).build().unwrap_err(),
        ConfigError::BadShards(8)
    );
    assert_eq!(
        b().shards(0).build().unwrap_err(),
        ConfigError::BadShards(0)
    );
    assert_eq!(
        b().rate(0, Duration::from_secs(1)).build().unwrap_err(),
        ConfigError::ZeroRate
    );
}
