//! Adaptive concurrency on a simulated downstream whose latency climbs with
//! load, on a manual clock: the limit converges and p99 stays bounded,
//! where the same load with no limit queues up to 10× the base latency.
//!
//! The downstream serves `CAPACITY` calls at `BASE` latency; beyond that a
//! call admitted with `n` in flight takes `BASE × n / CAPACITY` (a shared
//! server). Closed-loop clients (10× and 30× the capacity) call it back
//! to back; a shed client retries after 10 ms.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::Arc,
    time::Duration,
};

use weft_resilience::{
    clock::{Clock, ManualClock},
    limit::{Adaptive, AdaptiveError, Aimd, Algorithm, ConfigError, Gradient2, Vegas},
};

const CAPACITY: u64 = 10;
const BASE_MS: u64 = 10;
const RUN: Duration = Duration::from_secs(20);

struct Outcome {
    /// Latencies (µs) of calls that finished in the second half of the run.
    latencies: Vec<u64>,
    /// The limit at every second of the second half.
    limits: Vec<u32>,
    shed: u64,
}

impl Outcome {
    fn p99_ms(&mut self) -> f64 {
        self.latencies.sort_unstable();
        let i = (self.latencies.len() as f64 * 0.99) as usize;
        self.latencies[i.min(self.latencies.len() - 1)] as f64 / 1000.0
    }
}

fn latency(in_flight: u64) -> Duration {
    Duration::from_micros(BASE_MS * 1000 * in_flight.max(CAPACITY) / CAPACITY)
}

fn simulate(algorithm: impl Algorithm + 'static, clients: usize) -> Outcome {
    let clock = ManualClock::new();
    let limiter = Adaptive::builder()
        .algorithm(algorithm)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    // Events: (time µs, client). A client's event is a call finishing if
    // it holds a permit, else an attempt.
    let mut events: BinaryHeap<Reverse<(u64, usize)>> =
        (0..clients).map(|c| Reverse((0, c))).collect();
    let mut held = HashMap::new();
    let mut out = Outcome {
        latencies: Vec::new(),
        limits: Vec::new(),
        shed: 0,
    };
    let half = RUN.as_micros() as u64 / 2;
    let mut next_second = half;
    while let Some(Reverse((at, client))) = events.pop() {
        if at > RUN.as_micros() as u64 {
            break;
        }
        clock.set(Duration::from_micros(at));
        while at >= next_second {
            out.limits.push(limiter.limit());
            next_second += 1_000_000;
        }
        if let Some((permit, started)) = held.remove(&client) {
            let permit: weft_resilience::limit::AdaptivePermit<'_> = permit;
            permit.success();
            if at >= half {
                out.latencies.push(at - started);
            }
        }
        match limiter.try_acquire() {
            Ok(permit) => {
                let in_flight = u64::from(limiter.metrics().in_flight);
                let done = at + latency(in_flight).as_micros() as u64;
                held.insert(client, (permit, at));
                events.push(Reverse((done, client)));
            }
            Err(AdaptiveError::OverLimit { limit }) => {
                assert!(limit >= 1);
                if at >= half {
                    out.shed += 1;
                }
                events.push(Reverse((at + 10_000, client)));
            }
            Err(e) => panic!("{e}"),
        }
    }
    drop(held);
    assert_eq!(limiter.metrics().in_flight, 0, "every permit was settled");
    assert!(clock.now() >= RUN / 2);
    out
}

/// Runs `make()`'s algorithm at 100 and at 300 clients (10× and 30× the
/// capacity) and checks that p99 is bounded — far below the unlimited
/// queue's and no worse at 3× the load — and that the limit settles near the
/// capacity, not near the offered load.
fn check<A: Algorithm + 'static>(name: &str, make: impl Fn() -> A) {
    let mut p99s = Vec::new();
    for clients in [100, 300] {
        let mut out = simulate(make(), clients);
        let p99 = out.p99_ms();
        let mut limits = out.limits.clone();
        limits.sort_unstable();
        let median = limits[limits.len() / 2];
        let unlimited = (BASE_MS * clients as u64 / CAPACITY) as f64;
        println!(
            "{name} at {clients} clients: p99 {p99:.1} ms (unlimited {unlimited} ms), limit median {median}, range {}..={}, shed {}",
            limits[0],
            limits[limits.len() - 1],
            out.shed
        );
        assert!(out.shed > 0, "{name}: the excess load was shed");
        assert!(
            p99 <= 8.0 * BASE_MS as f64,
            "{name}: p99 {p99} ms at {clients} clients (unlimited {unlimited} ms)"
        );
        assert!(
            (CAPACITY as u32 / 2..=8 * CAPACITY as u32).contains(&median),
            "{name}: the limit settles near the capacity {CAPACITY}, not the load {clients}: median {median}"
        );
        p99s.push(p99);
    }
    assert!(
        p99s[1] <= p99s[0] * 1.25 + 2.0,
        "{name}: p99 grew with the offered load: {p99s:?}"
    );
}

#[test]
fn aimd_converges_and_bounds_p99() {
    check("AIMD", || {
        Aimd::default()
            .limits(5, 20, 200)
            .timeout(Duration::from_millis(3 * BASE_MS))
    });
}

#[test]
fn vegas_converges_and_bounds_p99() {
    check("Vegas", || Vegas::default().limits(20, 200));
}

#[test]
fn gradient2_converges_and_bounds_p99() {
    check("Gradient2", || {
        Gradient2::default().limits(5, 20, 200).rtt_tolerance(1.0)
    });
}

#[test]
fn bad_algorithm_configs_say_which() {
    let build = |a: Box<dyn Fn() -> Result<Adaptive, ConfigError>>| a().unwrap_err();
    assert!(matches!(
        build(Box::new(|| Adaptive::builder()
            .algorithm(Aimd::default().limits(30, 20, 200))
            .build())),
        ConfigError::LimitsOutOfOrder {
            min: 30,
            initial: 20,
            ..
        }
    ));
    assert!(matches!(
        build(Box::new(|| Adaptive::builder()
            .algorithm(Aimd::default().backoff_ratio(1.2))
            .build())),
        ConfigError::FactorOutOfRange { .. }
    ));
    assert!(matches!(
        build(Box::new(|| Adaptive::builder()
            .algorithm(Vegas::default().smoothing(0.0))
            .build())),
        ConfigError::FactorOutOfRange { .. }
    ));
    assert!(matches!(
        build(Box::new(|| Adaptive::builder()
            .algorithm(Gradient2::default().rtt_tolerance(0.5))
            .build())),
        ConfigError::FactorOutOfRange { .. }
    ));
    assert!(matches!(
        build(Box::new(|| Adaptive::builder()
            .algorithm(Gradient2::default().limits(20, 20, u32::MAX))
            .build())),
        ConfigError::LimitTooLarge { .. }
    ));
}

#[test]
fn over_the_limit_is_shed_at_once_with_the_limit_and_drops_shrink_it() {
    let limiter = Adaptive::builder()
        .algorithm(Aimd::default().limits(1, 2, 10))
        .clock(Arc::new(ManualClock::new()))
        .build()
        .expect("valid");
    let a = limiter.try_acquire().expect("room");
    let b = limiter.try_acquire().expect("room");
    assert_eq!(
        limiter.try_acquire().unwrap_err(),
        AdaptiveError::OverLimit { limit: 2 }
    );
    a.dropped();
    assert_eq!(limiter.limit(), 1, "2 × 0.9 rounds down to 1");
    drop(b); // no sample
    let m = limiter.metrics();
    assert_eq!((m.in_flight, m.shed, m.samples), (0, 1, 1));
    // A call whose error is the caller's cancellation is no sample (the
    // recognition needs the `weft` feature; without it this is a drop).
    let c = limiter.try_acquire().expect("room");
    c.record::<(), std::io::Error>(&Ok(()));
    assert_eq!(limiter.metrics().samples, 2);
}
