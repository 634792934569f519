//! Property tests: the GCRA limiter against a reference model that keeps
//! the credit explicitly (nanoseconds of tokens, refilled with time up to the
//! burst), through the public API on a manual clock.

use std::{sync::Arc, time::Duration};

use proptest::prelude::*;
use weft_resilience::{
    clock::ManualClock,
    limit::{Gcra, RateError},
};

#[derive(Debug, Clone, Copy)]
enum Op {
    Advance(u64),
    TryAcquire(u32),
    Reserve(u32, u64),
    CancelOldest,
}

fn op(burst: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..400).prop_map(Op::Advance),
        4 => (1..=burst + 1).prop_map(Op::TryAcquire),
        2 => ((1..=burst), 0u64..600).prop_map(|(n, w)| Op::Reserve(n, w)),
        1 => Just(Op::CancelOldest),
    ]
}

/// The model: credit in ns (negative: reserved ahead), capped at the burst.
struct Model {
    credit: i128,
    tolerance: i128,
    interval: i128,
    last: i128,
}

impl Model {
    fn at(&mut self, now: i128) {
        self.credit = (self.credit + (now - self.last)).min(self.tolerance);
        self.last = now;
    }

    /// Admits `n` if it conforms within `max_wait`; returns the wait or the
    /// refusal's wait.
    fn take(&mut self, n: u32, max_wait: i128) -> Result<i128, i128> {
        let cost = self.interval * i128::from(n);
        let wait = (cost - self.credit).max(0);
        if wait <= max_wait {
            self.credit -= cost;
            Ok(wait)
        } else {
            Err(wait)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn gcra_matches_the_credit_model(
        (tokens, period_ms, burst) in (1u64..50, 1u64..2000, 1u32..6),
        ops in prop::collection::vec(op(6), 1..120),
    ) {
        let clock = ManualClock::new();
        let limiter = Gcra::builder()
            .rate(tokens, Duration::from_millis(period_ms))
            .burst(burst)
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("valid");
        let interval = i128::from(period_ms * 1_000_000 / tokens);
        let mut model = Model {
            credit: interval * i128::from(burst),
            tolerance: interval * i128::from(burst),
            interval,
            last: 0,
        };
        let mut now: i128 = 0;
        let mut held = std::collections::VecDeque::new();
        for op in ops {
            match op {
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    now += i128::from(ms) * 1_000_000;
                }
                Op::TryAcquire(n) => {
                    model.at(now);
                    let got = limiter.try_acquire_n(n);
                    if n > burst {
                        prop_assert!(matches!(got, Err(RateError::InsufficientCapacity { .. })), "{got:?}");
                        continue;
                    }
                    match (model.take(n, 0), got) {
                        (Ok(_), Ok(())) => {}
                        (Err(wait), Err(RateError::Exhausted { retry_after })) => {
                            prop_assert_eq!(retry_after.as_nanos() as i128, wait);
                        }
                        (m, g) => prop_assert!(false, "model {:?}, limiter {:?}", m, g),
                    }
                }
                Op::Reserve(n, max_ms) => {
                    model.at(now);
                    if n > burst {
                        let got = limiter.reserve(n, Duration::from_millis(max_ms)).map(|r| r.wait());
                        prop_assert!(matches!(got, Err(RateError::InsufficientCapacity { .. })), "{got:?}");
                        continue;
                    }
                    let max = Duration::from_millis(max_ms);
                    let expected = if max_ms == 0 { model.take(n, 0) } else { model.take(n, i128::from(max_ms) * 1_000_000) };
                    match (expected, limiter.reserve(n, max)) {
                        (Ok(wait), Ok(r)) => {
                            prop_assert_eq!(r.wait().as_nanos() as i128, wait);
                            held.push_back((r, interval * i128::from(n)));
                        }
                        (Err(wait), Err(e)) => {
                            prop_assert_eq!(e.retry_after().map(|d| d.as_nanos() as i128), Some(wait));
                        }
                        (m, g) => prop_assert!(false, "model {:?}, limiter {:?}", m, g.map(|r| r.wait())),
                    }
                }
                Op::CancelOldest => {
                    if let Some((r, cost)) = held.pop_front() {
                        model.at(now);
                        r.cancel();
                        model.credit = (model.credit + cost).min(model.tolerance);
                    }
                }
            }
            let m = limiter.metrics();
            model.at(now);
            prop_assert_eq!(i128::from(m.available), (model.credit.max(0) / interval).min(i128::from(u32::MAX)));
        }
        for (r, _) in held {
            r.used();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// One thread: a limiter with leases decides every acquire exactly as
    /// one without (same admissions, same `retry_after`), and reports the
    /// same available tokens right after each admission (a lease's tokens
    /// count as available at its own reading). Leases only change which
    /// compare-and-swap takes the tokens, never how many conform.
    #[test]
    fn leases_decide_as_the_plain_gcra_on_one_thread(
        (tokens, period_ms, burst) in (1u64..50, 1u64..2000, 1u32..300),
        lease in 2u32..20,
        ops in prop::collection::vec(
            prop_oneof![
                1 => (0u64..300).prop_map(Op::Advance),
                4 => (1u32..=4).prop_map(Op::TryAcquire),
            ],
            1..200,
        ),
    ) {
        let build = |clock: &ManualClock, lease: u32| {
            Gcra::builder()
                .rate(tokens, Duration::from_millis(period_ms))
                .burst(burst)
                .lease(lease)
                .clock(Arc::new(clock.clone()))
                .build()
                .expect("valid")
        };
        let (plain_clock, leased_clock) = (ManualClock::new(), ManualClock::new());
        let plain = build(&plain_clock, 1);
        let leased = build(&leased_clock, lease);
        for op in ops {
            match op {
                Op::Advance(ms) => {
                    plain_clock.advance(Duration::from_millis(ms));
                    leased_clock.advance(Duration::from_millis(ms));
                }
                Op::TryAcquire(n) => {
                    let (p, l) = (plain.try_acquire_n(n), leased.try_acquire_n(n));
                    prop_assert_eq!(p, l);
                    if p.is_ok() {
                        prop_assert_eq!(plain.metrics().available, leased.metrics().available);
                    }
                }
                Op::Reserve(..) | Op::CancelOldest => unreachable!("not generated here"),
            }
        }
    }
}
