//! A token bucket with warm-up: after a quiet spell the rate starts low and
//! climbs to the configured rate over the warm-up period (Sentinel's
//! `WarmUp` controller, Guava's `SmoothWarmingUp`).
//!
//! # Model (Guava's, with Sentinel's cold factor)
//!
//! The bucket stores permits, up to `max`. Taking a stored permit costs time
//! that depends on how full the bucket is: below `threshold` each costs the
//! stable interval `1/rate`; above it the cost grows linearly up to the cold
//! interval `cold_factor / rate` at `max`. Fresh (unstored) permits cost the
//! stable interval. A quiet bucket refills toward `max` (at `max / warm_up`
//! permits per unit of time), so a burst after a quiet spell is served
//! slowly and the rate reaches `rate` after about `warm_up` of traffic:
//!
//! ```text
//! threshold = ½ · warm_up · rate
//! max       = threshold + 2 · warm_up · rate / (1 + cold_factor)
//! ```
//!
//! The area under the cost curve between `threshold` and `max` is exactly
//! `warm_up`. The default cold factor is 3 (Sentinel's and Guava's).
//!
//! The state (stored permits, next free instant) is a few floating-point
//! numbers updated together, so it sits behind a mutex: this limiter guards
//! cold starts of expensive resources, not a hot path. [`Gcra`] is the
//! lock-free one.
//!
//! [`Gcra`]: super::Gcra

use std::{fmt, sync::Arc, time::Duration};

use super::{emit, ConfigError, EventKind, Listener, Listeners, RateError, Refusal};
use crate::{
    caller::check_scope,
    clock::{Clock, ClockSource},
    sync::{lock, Mutex},
};

/// The mutable state: Guava's `storedPermits` and `nextFreeTicketMicros`,
/// in nanoseconds.
#[derive(Debug)]
struct State {
    stored: f64,
    next_free: f64,
    rejected: u64,
}

/// A token bucket that warms up; see the [module docs](self).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use weft_resilience::{clock::ManualClock, limit::WarmUpBucket};
///
/// let clock = ManualClock::new();
/// let bucket = WarmUpBucket::builder()
///     .rate(100.0) // per second, once warm
///     .warm_up(Duration::from_secs(10))
///     .clock(Arc::new(clock.clone()))
///     .build()?;
/// // Cold: the first permits cost the cold interval (30 ms), not 10 ms.
/// assert!(bucket.try_acquire(1).is_ok());
/// assert!(bucket.try_acquire(1).is_err());
/// clock.advance(Duration::from_millis(30));
/// assert!(bucket.try_acquire(1).is_ok());
/// # Ok::<(), weft_resilience::limit::ConfigError>(())
/// ```
pub struct WarmUpBucket {
    state: Mutex<State>,
    /// Nanoseconds per permit once warm.
    stable: f64,
    threshold: f64,
    max: f64,
    slope: f64,
    /// Nanoseconds to refill one permit when idle (`warm_up / max`).
    cool_down: f64,
    clock: ClockSource,
    name: Arc<str>,
    listeners: Listeners,
}

impl WarmUpBucket {
    /// A builder: 100 permits per second, 10 s of warm-up, cold factor 3.
    pub fn builder() -> WarmUpBuilder {
        WarmUpBuilder {
            rate: 100.0,
            warm_up: Duration::from_secs(10),
            cold_factor: 3.0,
            clock: ClockSource::default(),
            name: Arc::from("warm-up"),
            listeners: Listeners::default(),
        }
    }

    /// Adds the permits a quiet spell earned (Guava's `resync`).
    fn resync(&self, state: &mut State, now: f64) {
        if now > state.next_free {
            let earned = (now - state.next_free) / self.cool_down;
            state.stored = (state.stored + earned).min(self.max);
            state.next_free = now;
        }
    }

    /// The time to take `take` of the `stored` permits (the area under the
    /// cost curve from `stored - take` to `stored`).
    fn stored_cost(&self, stored: f64, mut take: f64) -> f64 {
        let above = stored - self.threshold;
        let mut cost = 0.0;
        if above > 0.0 {
            let from_above = above.min(take);
            let at = |permits: f64| self.stable + permits * self.slope;
            cost = from_above * (at(above) + at(above - from_above)) / 2.0;
            take -= from_above;
        }
        cost + self.stable * take
    }

    /// Reserves `n` permits if the caller's turn comes within `max_wait`;
    /// returns the wait.
    fn reserve_at(&self, n: u32, max_wait: Duration, now: f64) -> Result<Duration, RateError> {
        let mut state = lock(&self.state);
        self.resync(&mut state, now);
        let wait = (state.next_free - now).max(0.0);
        if wait > max_wait.as_nanos() as f64 {
            state.rejected += 1;
            drop(state);
            let wait = Duration::from_nanos(wait as u64);
            let error = if max_wait.is_zero() {
                RateError::Exhausted { retry_after: wait }
            } else {
                RateError::WaitTooLong { wait }
            };
            let refusal = if max_wait.is_zero() {
                Refusal::RateExceeded
            } else {
                Refusal::WaitTooLong
            };
            emit(&self.listeners.0, &self.name, EventKind::Rejected(refusal));
            return Err(error);
        }
        let n = f64::from(n);
        let from_stored = n.min(state.stored);
        let fresh = n - from_stored;
        let cost = self.stored_cost(state.stored, from_stored) + fresh * self.stable;
        state.next_free += cost;
        state.stored -= from_stored;
        Ok(Duration::from_nanos(wait as u64))
    }

    /// Takes `n` permits if it is the caller's turn now. As Guava's
    /// `tryAcquire`, a request is admitted whenever nothing is owed, and its
    /// cost is charged to the next caller (so a large request does not
    /// starve).
    pub fn try_acquire(&self, n: u32) -> Result<(), RateError> {
        check_scope().map_err(RateError::Cancelled)?;
        self.reserve_at(n, Duration::ZERO, self.clock.nanos() as f64)
            .map(drop)
    }

    /// Reserves `n` permits whose turn comes within `max_wait`; returns how
    /// long to wait before making the call.
    pub fn reserve(&self, n: u32, max_wait: Duration) -> Result<Duration, RateError> {
        check_scope().map_err(RateError::Cancelled)?;
        self.reserve_at(n, max_wait, self.clock.nanos() as f64)
    }

    /// A snapshot.
    pub fn metrics(&self) -> WarmUpMetrics {
        let now = self.clock.nanos() as f64;
        let mut state = lock(&self.state);
        self.resync(&mut state, now);
        let above = (state.stored - self.threshold).max(0.0);
        let interval = self.stable + above * self.slope;
        WarmUpMetrics {
            stored: state.stored,
            max_stored: self.max,
            rate: 1e9 / interval,
            rejected: state.rejected,
        }
    }
}

impl fmt::Debug for WarmUpBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmUpBucket")
            .field("name", &self.name)
            .field("stable_ns", &self.stable)
            .field("threshold", &self.threshold)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a [`WarmUpBucket`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct WarmUpMetrics {
    /// Permits stored (the fuller, the colder).
    pub stored: f64,
    /// The most it stores.
    pub max_stored: f64,
    /// The rate the next stored permit is served at, per second.
    pub rate: f64,
    /// Requests refused.
    pub rejected: u64,
}

/// Builds a [`WarmUpBucket`].
#[derive(Debug)]
pub struct WarmUpBuilder {
    rate: f64,
    warm_up: Duration,
    cold_factor: f64,
    clock: ClockSource,
    name: Arc<str>,
    listeners: Listeners,
}

impl WarmUpBuilder {
    /// Permits per second once warm.
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = per_second;
        self
    }

    /// How long traffic takes to bring a cold bucket to the full rate.
    pub fn warm_up(mut self, period: Duration) -> Self {
        self.warm_up = period;
        self
    }

    /// How much slower than the full rate a cold bucket starts (> 1;
    /// default 3, Sentinel's).
    pub fn cold_factor(mut self, factor: f64) -> Self {
        self.cold_factor = factor;
        self
    }

    /// The clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = ClockSource::Custom(clock);
        self
    }

    /// The name events carry.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a listener (refusals).
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Validates and builds the bucket, cold (full of expensive permits).
    pub fn build(self) -> Result<WarmUpBucket, ConfigError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(ConfigError::FactorOutOfRange {
                which: "rate per second",
                value: self.rate,
            });
        }
        if self.rate > 1e9 {
            return Err(ConfigError::RateTooHigh {
                tokens: self.rate as u64,
                period: Duration::from_secs(1),
            });
        }
        if self.warm_up.is_zero() {
            return Err(ConfigError::ZeroPeriod);
        }
        if !(self.cold_factor.is_finite() && self.cold_factor > 1.0) {
            return Err(ConfigError::ColdFactor(self.cold_factor));
        }
        let stable = 1e9 / self.rate;
        let cold = stable * self.cold_factor;
        let warm_up = self.warm_up.as_nanos() as f64;
        let threshold = 0.5 * warm_up / stable;
        let max = threshold + 2.0 * warm_up / (stable + cold);
        let slope = (cold - stable) / (max - threshold);
        Ok(WarmUpBucket {
            state: Mutex::new(State {
                stored: max,
                next_free: 0.0,
                rejected: 0,
            }),
            stable,
            threshold,
            max,
            slope,
            cool_down: warm_up / max,
            clock: self.clock,
            name: self.name,
            listeners: self.listeners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn the_warm_up_area_is_the_warm_up_period() {
        let bucket = WarmUpBucket::builder()
            .rate(10.0)
            .warm_up(Duration::from_secs(4))
            .build()
            .expect("valid");
        let area = bucket.stored_cost(bucket.max, bucket.max - bucket.threshold);
        assert!((area - 4e9).abs() < 1e3, "{area}");
    }

    #[test]
    fn a_cold_bucket_speeds_up_to_the_rate_and_cools_when_idle() {
        let clock = ManualClock::new();
        let bucket = WarmUpBucket::builder()
            .rate(10.0)
            .warm_up(Duration::from_secs(4))
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("valid");
        // Drive it as fast as it admits and record the gaps.
        let mut gaps = Vec::new();
        let mut last = Duration::ZERO;
        for _ in 0..80 {
            loop {
                match bucket.try_acquire(1) {
                    Ok(()) => break,
                    Err(RateError::Exhausted { retry_after }) => clock.advance(retry_after),
                    Err(e) => panic!("{e}"),
                }
            }
            let now = clock.now();
            gaps.push(now - last);
            last = now;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        assert!(
            ms(gaps[1]) > 250.0,
            "starts near the cold interval (300 ms): {:?}",
            gaps[1]
        );
        assert!(
            (ms(gaps[79]) - 100.0).abs() < 1.0,
            "ends at the stable 100 ms: {:?}",
            gaps[79]
        );
        assert!(
            gaps.windows(2)
                .skip(1)
                .all(|w| w[1] <= w[0] + Duration::from_micros(1)),
            "never slows down while busy"
        );
        clock.advance(Duration::from_secs(60));
        let m = bucket.metrics();
        assert!(
            (m.stored - m.max_stored).abs() < 1e-9,
            "idle refills to cold"
        );
        assert!(m.rate < 4.0, "cold again: {}", m.rate);
    }

    #[test]
    fn bad_configs_say_which() {
        let b = WarmUpBucket::builder;
        assert_eq!(
            b().cold_factor(1.0).build().unwrap_err(),
            ConfigError::ColdFactor(1.0)
        );
        assert!(matches!(
            b().cold_factor(f64::NAN).build().unwrap_err(),
            ConfigError::ColdFactor(_)
        ));
        assert_eq!(
            b().warm_up(Duration::ZERO).build().unwrap_err(),
            ConfigError::ZeroPeriod
        );
        assert!(matches!(
            b().rate(0.0).build().unwrap_err(),
            ConfigError::FactorOutOfRange { .. }
        ));
    }
}
