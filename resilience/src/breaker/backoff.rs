//! How long the breaker stays open: a backoff over consecutive trips, with
//! jitter from a small per-breaker SplitMix64 generator (no `rand`).

use std::{sync::atomic::AtomicU64 as StdAtomicU64, time::Duration};

use crate::sync::atomic::{AtomicU64, Ordering};

/// The open duration as a function of how many times in a row the breaker
/// has tripped without a healthy close in between.
///
/// `delay(n) = min(initial × multiplier^n, max)`, then jitter shortens it by
/// up to `jitter × delay` (never lengthens it, so `max` is a real cap).
/// [`fixed`](Backoff::fixed) is `multiplier = 1`. The trip count resets when
/// a half-open breaker closes, and on [`reset`](super::Breaker::reset).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) multiplier: f64,
    pub(crate) max: Duration,
    pub(crate) jitter: f64,
}

impl Backoff {
    /// Always `open` (resilience4j's default is a fixed 60 s).
    pub const fn fixed(open: Duration) -> Backoff {
        Backoff {
            initial: open,
            multiplier: 1.0,
            max: open,
            jitter: 0.0,
        }
    }

    /// `initial`, then × `multiplier` per consecutive trip, capped at `max`.
    pub const fn exponential(initial: Duration, multiplier: f64, max: Duration) -> Backoff {
        Backoff {
            initial,
            multiplier,
            max,
            jitter: 0.0,
        }
    }

    /// Shortens each delay by a random fraction in `[0, jitter)` of itself, so
    /// breakers that tripped together do not probe together. `jitter` is in
    /// `[0, 1]`.
    pub const fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// The delay after `trips` earlier consecutive trips (0 for the first),
    /// given 64 random bits.
    pub(crate) fn delay(&self, trips: u32, random: u64) -> Duration {
        let grown = if self.multiplier == 1.0 || trips == 0 {
            self.initial
        } else {
            // powi saturates to +inf for large trips; the cap applies next.
            let factor = self.multiplier.powi(trips.min(i32::MAX as u32) as i32);
            let secs = self.initial.as_secs_f64() * factor;
            if secs.is_finite() && secs < self.max.as_secs_f64() {
                Duration::from_secs_f64(secs)
            } else {
                self.max
            }
        };
        let grown = grown.min(self.max);
        if self.jitter == 0.0 {
            return grown;
        }
        // 53 random bits -> a uniform f64 in [0, 1).
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        grown.mul_f64(1.0 - self.jitter * unit)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014) over an atomic counter: each draw
/// is one `fetch_add`, so concurrent draws never repeat a value.
#[derive(Debug)]
pub(crate) struct SplitMix {
    state: AtomicU64,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SplitMix {
    /// A generator seeded with `seed`, or, without one, with a process-wide
    /// counter mixed with the time so two breakers never share a sequence.
    pub(crate) fn new(seed: Option<u64>, salt: u64) -> SplitMix {
        // Not part of any protocol: std's atomic even under loom.
        static BREAKERS: StdAtomicU64 = StdAtomicU64::new(0);
        let seed = seed.unwrap_or_else(|| {
            let n = BREAKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            mix(n.wrapping_mul(GOLDEN_GAMMA) ^ salt)
        });
        SplitMix {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        // Relaxed: the value is all we want; it publishes nothing.
        let state = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        mix(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn fixed_never_grows() {
        let backoff = Backoff::fixed(5 * S);
        assert_eq!(backoff.delay(0, 0), 5 * S);
        assert_eq!(backoff.delay(40, u64::MAX), 5 * S);
    }

    #[test]
    fn exponential_grows_then_caps() {
        let backoff = Backoff::exponential(S, 2.0, 10 * S);
        let delays: Vec<_> = (0..6).map(|n| backoff.delay(n, 0)).collect();
        assert_eq!(delays, [S, 2 * S, 4 * S, 8 * S, 10 * S, 10 * S]);
        assert_eq!(backoff.delay(u32::MAX, 0), 10 * S);
    }

    #[test]
    fn jitter_only_shortens_and_stays_in_band() {
        let backoff = Backoff::exponential(S, 2.0, 10 * S).with_jitter(0.5);
        let rng = SplitMix::new(Some(7), 0);
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..1000 {
            let delay = backoff.delay(3, rng.next_u64());
            assert!(delay <= 8 * S && delay > 4 * S, "{delay:?}");
            distinct.insert(delay);
        }
        assert!(
            distinct.len() > 900,
            "jitter should spread: {}",
            distinct.len()
        );
    }

    #[test]
    fn splitmix_is_deterministic_per_seed_and_distinct_without() {
        let a = SplitMix::new(Some(1), 0);
        let b = SplitMix::new(Some(1), 0);
        assert_eq!(a.next_u64(), b.next_u64());
        let c = SplitMix::new(None, 0);
        let d = SplitMix::new(None, 0);
        assert_ne!(c.next_u64(), d.next_u64());
    }
}
