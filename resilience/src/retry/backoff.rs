//! How long to wait before a retry: exponential backoff with full or
//! decorrelated jitter (the AWS architecture blog's "Exponential Backoff
//! and Jitter", 2015).

use std::time::Duration;

use super::RetryConfigError;

/// How a [`Backoff`] randomises its delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: `min(cap, base × multiplier^n)`.
    None,
    /// Uniform in `[0, min(cap, base × multiplier^n)]`. Spreads a burst of
    /// callers that failed together over the whole interval; the default.
    Full,
    /// `min(cap, uniform(base, previous × 3))`, starting from `base`: each
    /// delay depends on the last one rather than on the attempt number, so
    /// callers decorrelate even when they started in lock-step.
    Decorrelated,
}

/// The delay before each retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) multiplier: f64,
    pub(crate) jitter: Jitter,
}

impl Default for Backoff {
    /// Exponential from 50 ms, doubling, capped at 5 s, full jitter.
    fn default() -> Backoff {
        Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5))
    }
}

impl Backoff {
    /// `base`, doubling per retry, capped at `cap`, with full jitter.
    pub const fn exponential(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }

    /// Always `delay`, no jitter.
    pub const fn constant(delay: Duration) -> Backoff {
        Backoff {
            base: delay,
            cap: delay,
            multiplier: 1.0,
            jitter: Jitter::None,
        }
    }

    /// No delay at all (retry at once).
    pub const fn none() -> Backoff {
        Backoff::constant(Duration::ZERO)
    }

    /// Grows by `multiplier` per retry instead of 2 (≥ 1, finite).
    pub const fn multiplier(mut self, multiplier: f64) -> Backoff {
        self.multiplier = multiplier;
        self
    }

    /// Uses `jitter`.
    pub const fn jitter(mut self, jitter: Jitter) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// The first delay before jitter.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    pub(crate) fn validate(&self) -> Result<(), RetryConfigError> {
        if self.base > self.cap {
            return Err(RetryConfigError::BackoffBaseAboveCap {
                base: self.base,
                cap: self.cap,
            });
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(RetryConfigError::BackoffMultiplier(self.multiplier));
        }
        Ok(())
    }

    /// The delay before retry number `retry` (0 for the first retry), given
    /// the previous delay (for decorrelated jitter; `base` before the first)
    /// and a uniform float in `[0, 1)`.
    pub fn delay(&self, retry: u32, previous: Duration, uniform: f64) -> Duration {
        debug_assert!((0.0..1.0).contains(&uniform));
        match self.jitter {
            Jitter::None => self.grown(retry),
            Jitter::Full => scale(self.grown(retry), uniform),
            Jitter::Decorrelated => {
                let low = self.base.min(self.cap);
                let high = previous.max(low).saturating_mul(3).min(self.cap);
                low + scale(high.saturating_sub(low), uniform)
            }
        }
    }

    /// `min(cap, base × multiplier^retry)`.
    fn grown(&self, retry: u32) -> Duration {
        if self.multiplier == 1.0 || retry == 0 {
            return self.base.min(self.cap);
        }
        // powi saturates to +inf for large exponents; the cap applies next.
        let factor = self.multiplier.powi(retry.min(i32::MAX as u32) as i32);
        let secs = self.base.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.cap.as_secs_f64() {
            self.cap
        } else {
            Duration::from_secs_f64(secs).min(self.cap)
        }
    }
}

/// `d × f` for `f` in `[0, 1)`, never more than `d`.
fn scale(d: Duration, f: f64) -> Duration {
    let nanos = d.as_nanos() as f64 * f;
    Duration::from_nanos(nanos as u64).min(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_without_jitter_doubles_to_the_cap() {
        let b = Backoff::exponential(10 * MS, 70 * MS).jitter(Jitter::None);
        let delays: Vec<_> = (0..5).map(|n| b.delay(n, MS, 0.5)).collect();
        assert_eq!(delays, [10 * MS, 20 * MS, 40 * MS, 70 * MS, 70 * MS]);
        assert_eq!(b.delay(u32::MAX, MS, 0.5), 70 * MS);
    }

    #[test]
    fn full_jitter_scales_the_exponential_delay() {
        let b = Backoff::exponential(10 * MS, 1000 * MS);
        assert_eq!(b.delay(2, MS, 0.0), Duration::ZERO);
        assert_eq!(b.delay(2, MS, 0.5), 20 * MS);
    }

    #[test]
    fn decorrelated_jitter_grows_from_the_previous_delay() {
        let b = Backoff::exponential(10 * MS, 100 * MS).jitter(Jitter::Decorrelated);
        assert_eq!(b.delay(0, 10 * MS, 0.0), 10 * MS);
        // uniform(10, 3 × 20 = 60) at 0.5 = 35 ms.
        assert_eq!(b.delay(1, 20 * MS, 0.5), 35 * MS);
        // 3 × 50 = 150 is capped at 100.
        assert!(b.delay(3, 50 * MS, 0.999_999) <= 100 * MS);
    }

    #[test]
    fn constant_and_none() {
        assert_eq!(Backoff::constant(7 * MS).delay(9, MS, 0.3), 7 * MS);
        assert_eq!(Backoff::none().delay(3, MS, 0.3), Duration::ZERO);
    }

    #[test]
    fn invalid_backoffs_are_config_errors() {
        let base_above = Backoff::exponential(10 * MS, MS).validate();
        assert!(matches!(
            base_above,
            Err(RetryConfigError::BackoffBaseAboveCap { .. })
        ));
        let shrinking = Backoff::default().multiplier(0.5).validate();
        assert!(matches!(
            shrinking,
            Err(RetryConfigError::BackoffMultiplier(_))
        ));
        let nan = Backoff::default().multiplier(f64::NAN).validate();
        assert!(matches!(nan, Err(RetryConfigError::BackoffMultiplier(_))));
        assert!(Backoff::default().validate().is_ok());
    }
}
