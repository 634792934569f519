//! A small shared random source for jitter, hedging and chaos (no `rand`).
//!
//! SplitMix64 (Steele, Lea, Flood 2014) over an atomic counter: each draw is
//! one `fetch_add` of the golden-ratio increment and a mix of the result, so
//! concurrent callers never share a draw and a seeded generator replays the
//! same sequence for one caller.

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A lock-free SplitMix64 generator.
#[derive(Debug)]
pub(crate) struct Rng {
    state: AtomicU64,
}

impl Rng {
    /// A generator seeded with `seed`, or from the address of a stack slot
    /// and the time when `None` (not cryptographic: jitter only needs
    /// callers that started together to drift apart).
    pub(crate) fn new(seed: Option<u64>) -> Rng {
        let seed = seed.unwrap_or_else(|| {
            let local = 0u8;
            let addr = &local as *const u8 as u64;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            mix(addr ^ nanos.rotate_left(17))
        });
        Rng {
            state: AtomicU64::new(seed),
        }
    }

    /// 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&self) -> u64 {
        // Relaxed: the counter orders nothing; each caller only needs a
        // distinct value, which the RMW gives.
        mix(self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN))
    }

    /// A float uniform in `[0, 1)`.
    #[inline]
    pub(crate) fn next_f64(&self) -> f64 {
        unit(self.next_u64())
    }
}

/// The SplitMix64 finaliser.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits as a float uniform in `[0, 1)` (the top 53 bits).
#[inline]
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_generators_replay() {
        let a = Rng::new(Some(3));
        let b = Rng::new(Some(3));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let c = Rng::new(Some(4));
        assert_ne!(Rng::new(Some(3)).next_u64(), c.next_u64());
    }

    #[test]
    fn unit_is_in_range_and_spread() {
        let rng = Rng::new(Some(9));
        let mut below_half = 0;
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            if x < 0.5 {
                below_half += 1;
            }
        }
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
        assert!(unit(u64::MAX) < 1.0);
    }
}
