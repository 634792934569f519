//! Property tests: backoff delays stay in their bounds; the retry budget
//! decides exactly as a plain model of its window does.

use std::{collections::HashMap, sync::Arc, time::Duration};

use proptest::prelude::*;
use weft_resilience::{
    clock::ManualClock,
    retry::{Backoff, Jitter, RetryBudget},
};

proptest! {
    #[test]
    fn backoff_delays_stay_within_their_bounds(
        base_ms in 0u64..1_000,
        extra_ms in 0u64..60_000,
        multiplier in 1.0f64..8.0,
        retry in 0u32..200,
        previous_ms in 0u64..120_000,
        uniform in 0.0f64..1.0,
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = base + Duration::from_millis(extra_ms);
        let previous = Duration::from_millis(previous_ms);
        let exp = Backoff::exponential(base, cap).multiplier(multiplier);
        // The un-jittered delay: min(cap, base × m^n).
        let grown = exp.jitter(Jitter::None).delay(retry, previous, uniform);
        let ideal = (base.as_secs_f64() * multiplier.powi(retry as i32)).min(cap.as_secs_f64());
        prop_assert!(grown <= cap);
        prop_assert!((grown.as_secs_f64() - ideal).abs() <= 1e-6 * ideal.max(1e-3));
        // Full jitter: in [0, grown].
        let full = exp.jitter(Jitter::Full).delay(retry, previous, uniform);
        prop_assert!(full <= grown);
        // Decorrelated: in [base, min(cap, 3 × max(previous, base))].
        let dec = exp.jitter(Jitter::Decorrelated).delay(retry, previous, uniform);
        prop_assert!(dec >= base.min(cap));
        prop_assert!(dec <= cap);
        prop_assert!(dec <= previous.max(base).saturating_mul(3).max(base));
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Deposit,
    Withdraw,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u64..2_500).prop_map(Op::Advance),
        4 => Just(Op::Deposit),
        3 => Just(Op::Withdraw),
    ]
}

/// The budget's window as a map from bucket epoch to (calls, retries).
struct Model {
    buckets: u64,
    bucket_ms: u64,
    ratio_milli: u64,
    floor: u64,
    counts: HashMap<u64, (u64, u64)>,
}

impl Model {
    fn sums(&self, now_ms: u64) -> (u64, u64) {
        let epoch = now_ms / self.bucket_ms;
        self.counts
            .iter()
            .filter(|(e, _)| epoch - **e < self.buckets)
            .fold((0, 0), |(c, r), (_, (dc, dr))| (c + dc, r + dr))
    }

    fn allowed(&self, calls: u64) -> u64 {
        (calls * self.ratio_milli / 1000).max(self.floor)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn budget_matches_its_model(
        ratio_pct in 0u64..=100,
        floor_per_sec in 0u32..5,
        buckets in 1u32..12,
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let clock = ManualClock::new();
        let window = Duration::from_secs(u64::from(buckets));
        let budget = RetryBudget::builder()
            .ratio(ratio_pct as f64 / 100.0)
            .floor_per_sec(floor_per_sec)
            .window(window, buckets)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        let mut model = Model {
            buckets: u64::from(buckets),
            bucket_ms: 1_000,
            ratio_milli: ratio_pct * 10,
            floor: u64::from(floor_per_sec) * u64::from(buckets),
            counts: HashMap::new(),
        };
        let mut now_ms = 0u64;
        for op in ops {
            let epoch = now_ms / 1_000;
            match op {
                Op::Advance(ms) => {
                    now_ms += ms;
                    clock.advance(Duration::from_millis(ms));
                }
                Op::Deposit => {
                    budget.deposit();
                    model.counts.entry(epoch).or_default().0 += 1;
                }
                Op::Withdraw => {
                    let (calls, retries) = model.sums(now_ms);
                    let expect = retries < model.allowed(calls);
                    prop_assert_eq!(budget.try_withdraw(), expect);
                    if expect {
                        model.counts.entry(epoch).or_default().1 += 1;
                        // The invariant the budget exists for, at every
                        // grant (later, calls may leave the window before
                        // the retries they paid for).
                        let (calls, retries) = model.sums(now_ms);
                        prop_assert!(retries <= model.allowed(calls));
                    }
                }
            }
            let (calls, retries) = model.sums(now_ms);
            let m = budget.metrics();
            prop_assert_eq!((m.calls, m.retries), (calls, retries));
        }
    }
}
