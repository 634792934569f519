//! Property tests: both windows against a reference model (a `VecDeque` of
//! outcomes), through the public API of a metrics-only breaker.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use proptest::prelude::*;
use weft_resilience::{
    breaker::{Breaker, Config, Counts},
    clock::{Clock, ManualClock},
};

const SLOW: Duration = Duration::from_millis(100);

/// A call: failed?, slow?, ignored?, and how far the clock moves before it.
#[derive(Debug, Clone, Copy)]
struct Call {
    failed: bool,
    slow: bool,
    ignored: bool,
    gap_ms: u64,
}

fn call() -> impl Strategy<Value = Call> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.1),
        0u64..700,
    )
        .prop_map(|(failed, slow, ignored, gap_ms)| Call {
            failed,
            slow,
            ignored,
            gap_ms,
        })
}

fn metrics_only(config: weft_resilience::breaker::ConfigBuilder) -> (Breaker, ManualClock) {
    let clock = ManualClock::new();
    let config = config
        .slow_call_threshold(100.0, SLOW)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    let breaker = Breaker::new("props", config);
    let _ = breaker.metrics_only();
    (breaker, clock)
}

/// Makes `call` on `breaker`, moving the clock to make it slow.
fn make(breaker: &Breaker, clock: &ManualClock, call: Call) {
    let permit = breaker.acquire().expect("metrics-only admits");
    if call.slow {
        clock.advance(SLOW);
    }
    if call.ignored {
        permit.ignore();
    } else if call.failed {
        permit.failure();
    } else {
        permit.success();
    }
}

fn counts<'a>(outcomes: impl Iterator<Item = &'a (bool, bool)>) -> Counts {
    let mut counts = Counts::default();
    for &(failed, slow) in outcomes {
        counts.calls += 1;
        counts.failures += u64::from(failed);
        counts.slow_calls += u64::from(slow);
        counts.slow_failures += u64::from(failed && slow);
    }
    counts
}

proptest! {
    #[test]
    fn count_window_matches_the_last_n_calls(
        size in 1u32..12,
        calls in prop::collection::vec(call(), 0..80),
    ) {
        let (breaker, clock) = metrics_only(Config::builder().count_window(size));
        let mut model = VecDeque::new();
        for call in calls {
            make(&breaker, &clock, call);
            if !call.ignored {
                model.push_back((call.failed, call.slow));
                if model.len() > size as usize {
                    model.pop_front();
                }
            }
            prop_assert_eq!(breaker.metrics().counts, counts(model.iter()));
        }
    }

    #[test]
    fn time_window_matches_the_calls_of_the_last_buckets(
        buckets in 1u32..8,
        calls in prop::collection::vec(call(), 0..80),
    ) {
        // Buckets of 250 ms.
        let bucket = Duration::from_millis(250);
        let (breaker, clock) = metrics_only(Config::builder().time_window(bucket * buckets, buckets));
        // The model: (epoch, failed, slow), epoch = time / bucket at record.
        let mut model: VecDeque<(u128, bool, bool)> = VecDeque::new();
        for call in calls {
            clock.advance(Duration::from_millis(call.gap_ms));
            make(&breaker, &clock, call);
            let epoch = clock.now().as_nanos() / bucket.as_nanos();
            if !call.ignored {
                model.push_back((epoch, call.failed, call.slow));
            }
            let oldest = (epoch + 1).saturating_sub(u128::from(buckets));
            model.retain(|&(e, _, _)| e >= oldest);
            let outcomes: Vec<_> = model.iter().map(|&(_, f, s)| (f, s)).collect();
            prop_assert_eq!(breaker.metrics().counts, counts(outcomes.iter()));
        }
    }
}
