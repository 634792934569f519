//! The soak's policy part: a `weft-resilience` pipeline (timeout → retry →
//! breaker → bulkhead) around a flaky fake backend, called by more tasks
//! than the bulkhead admits, each call under its own deadline of 3–30 ms.
//!
//! Checked: every attempt sees the caller's deadline and no retry starts at
//! or past it; the bulkhead never holds more than its slots or queue, and
//! every slot is back at shutdown; the breaker has no probe left.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use weft::time::{sleep, timeout_at};
use weft_resilience::{
    breaker::{Backoff as BreakerBackoff, Breaker, Config},
    env::WeftEnv,
    limit::Bulkhead,
    policy::{Layer, OnCallErrors, Pipeline, PolicyError, Unlimited},
    retry::{Backoff, Jitter, Retry, RetryConfig},
};

use crate::{Rng, Stats};

pub(crate) const CALLERS: usize = 6;
pub(crate) const SLOTS: u32 = 3;
pub(crate) const QUEUE: u32 = 4;
pub(crate) const PROBES: u32 = 2;

/// The pipeline the callers share.
pub(crate) type SoakPipeline = Pipeline<
    WeftEnv,
    Unlimited,
    Arc<Bulkhead>,
    Unlimited,
    weft_resilience::breaker::ErrorsFail,
    OnCallErrors,
>;

/// The pipeline and handles on its bulkhead and breaker for the checks.
pub(crate) struct PolicyPart {
    pub(crate) pipeline: Arc<SoakPipeline>,
    pub(crate) bulkhead: Arc<Bulkhead>,
    pub(crate) breaker: Arc<Breaker>,
    started: Instant,
}

impl PolicyPart {
    pub(crate) fn new(seed: u64) -> Result<PolicyPart, Box<dyn std::error::Error>> {
        let bulkhead = Arc::new(
            Bulkhead::builder()
                .max_concurrent(SLOTS)
                .max_waiting(QUEUE)
                .max_wait(Some(Duration::from_millis(5)))
                .name("soak-policy")
                .build()?,
        );
        let breaker = Arc::new(Breaker::new(
            "soak-policy",
            Config::builder()
                .count_window(40)
                .minimum_calls(20)
                .failure_rate_threshold(60.0)
                .open_backoff(BreakerBackoff::fixed(Duration::from_millis(100)))
                .half_open_permits(PROBES)
                .half_open_successes(2)
                .seed(seed)
                .build()?,
        ));
        let retry = Retry::with_predicate(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(
                    Backoff::exponential(Duration::from_millis(1), Duration::from_millis(8))
                        .jitter(Jitter::Full),
                )
                .expected_attempt(Duration::from_millis(3))
                .seed(seed)
                .build()?,
            OnCallErrors,
        );
        let pipeline = Pipeline::new("soak-policy", WeftEnv::new())
            .with_timeout(Duration::from_millis(40))
            .with_retry(retry)
            .with_breaker(breaker.clone())
            .with_bulkhead(bulkhead.clone());
        Ok(PolicyPart {
            pipeline: Arc::new(pipeline),
            bulkhead,
            breaker,
            started: Instant::now(),
        })
    }

    /// The backend fails a quarter of its calls, and nine in ten for 1 s
    /// of every 5 s (when the breaker should open).
    fn failure_percent(&self) -> u64 {
        if self.started.elapsed().as_millis() % 5_000 < 1_000 {
            90
        } else {
            25
        }
    }

    /// `Err` if the bulkhead holds more than it may (any time) or the
    /// breaker more probes than its permits.
    pub(crate) fn check_bounds(&self) -> Result<(), String> {
        let m = self.bulkhead.metrics();
        if m.in_flight > SLOTS || m.waiting > QUEUE {
            return Err(format!(
                "the policy bulkhead holds {} calls and queues {} ({SLOTS} slots, {QUEUE} queued at most)",
                m.in_flight, m.waiting
            ));
        }
        let probes = self.breaker.metrics().half_open_in_flight;
        if probes > PROBES {
            return Err(format!(
                "the policy breaker has {probes} probes in flight, {PROBES} permits"
            ));
        }
        Ok(())
    }

    /// `Err` unless every slot is back and no probe is left (no caller
    /// left).
    pub(crate) fn check_settled(&self) -> Result<(), String> {
        let m = self.bulkhead.metrics();
        if m.in_flight != 0 || m.available != SLOTS || m.waiting != 0 {
            return Err(format!(
                "the policy bulkhead did not get its slots back: {} in flight, {} of {SLOTS} free, {} waiting",
                m.in_flight, m.available, m.waiting
            ));
        }
        let probes = self.breaker.metrics().half_open_in_flight;
        if probes != 0 {
            return Err(format!("the policy breaker still counts {probes} probes"));
        }
        Ok(())
    }
}

pub(crate) async fn caller(
    part: Arc<PolicyPart>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) {
        let budget = Duration::from_millis(3 + rng.below(28));
        let deadline = Instant::now() + budget;
        let failure_percent = part.failure_percent();
        let mut attempt_rng = Rng::new(rng.next());
        let st = stats.clone();
        let call = part.pipeline.call(|attempt| {
            let started = Instant::now();
            let scope_deadline = weft::cancel::deadline();
            let fail = attempt_rng.below(100) < failure_percent;
            // Mostly 0–4 ms; one call in twenty takes 30 ms.
            let work = if attempt_rng.below(20) == 0 {
                Duration::from_millis(30)
            } else {
                Duration::from_micros(attempt_rng.below(4_000))
            };
            let st = st.clone();
            async move {
                if attempt.number > 1 {
                    st.count(crate::POLICY_RETRIES);
                    if started >= deadline {
                        st.fail(format!(
                            "retry {} started {:?} past the caller's deadline",
                            attempt.number,
                            started - deadline
                        ));
                    }
                }
                if scope_deadline.is_none_or(|d| d > deadline) {
                    st.fail(format!(
                        "attempt {} runs under {scope_deadline:?}, not the caller's deadline",
                        attempt.number
                    ));
                }
                sleep(work).await.map_err(|_| "cut")?;
                if fail {
                    Err("503")
                } else {
                    Ok(())
                }
            }
        });
        match timeout_at(deadline, call).await {
            Ok(Ok(())) => stats.count(crate::POLICY_OK),
            Ok(Err(PolicyError::Call(_))) => stats.count(crate::POLICY_FAILED),
            Ok(Err(PolicyError::Refused {
                layer: Layer::Breaker | Layer::Bulkhead,
                ..
            })) => {
                stats.count(crate::POLICY_REFUSED);
                let _ = sleep(Duration::from_millis(1)).await;
            }
            Ok(Err(PolicyError::Refused {
                layer: Layer::Timeout | Layer::Retry,
                ..
            }))
            | Ok(Err(PolicyError::Interrupted(_)))
            | Err(_) => stats.count(crate::POLICY_DEADLINE),
            Ok(Err(e)) => {
                stats.fail(format!("the policy pipeline refused with {e:?}"));
                return;
            }
        }
    }
}
