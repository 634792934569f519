//! A small lock-free latency histogram for hedge delays.
//!
//! Log-linear buckets over microseconds: values below 4 µs have a bucket
//! each, then every power of two is split into four, so a bucket's width is
//! at most a quarter of its lower bound (percentiles are reported at the
//! bucket's upper bound: at most 25 % high, never low). 144 buckets reach
//! past 19 hours; longer samples land in the last one.
//!
//! # Protocol
//!
//! A sample is one `fetch_add` on its bucket and one on the total, both
//! relaxed: the histogram is statistics and every reader tolerates counts a
//! few samples stale. To follow a changing endpoint, the writer whose
//! sample makes the total reach `2 × half_life` halves every bucket and the
//! total (each with its own atomic update), so old samples fade
//! geometrically and memory stays fixed. Samples recorded while a halving
//! runs may be halved or not; either is a valid history.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

const SUB: u32 = 4;
const BUCKETS: usize = 144;

/// A latency histogram. See the module docs (`hedge/histogram.rs`).
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    total: AtomicU64,
    half_life: u64,
}

impl LatencyHistogram {
    /// A histogram whose samples are halved every `half_life` samples
    /// (at least 1).
    pub fn new(half_life: u64) -> LatencyHistogram {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            half_life: half_life.max(1),
        }
    }

    /// Records one latency.
    #[inline]
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.buckets[index(micros)].fetch_add(1, Ordering::Relaxed);
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        if total == 2 * self.half_life {
            self.halve();
        }
    }

    /// Samples held now (after halvings).
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The latency at or below which `percentile` % of the samples fall
    /// (the upper bound of that sample's bucket); `None` with fewer than
    /// `min_samples` samples. `percentile` is in `(0, 100]`.
    pub fn percentile(&self, percentile: f64, min_samples: u64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 || total < min_samples {
            return None;
        }
        let rank = ((percentile / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(upper(i)));
            }
        }
        Some(Duration::from_micros(upper(BUCKETS - 1)))
    }

    fn halve(&self) {
        let mut removed = 0;
        for b in self.buckets.iter() {
            let before = b
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n - n / 2))
                .unwrap_or(0);
            removed += before / 2;
        }
        self.total.fetch_sub(removed, Ordering::Relaxed);
    }
}

impl Default for LatencyHistogram {
    /// Halves every 1000 samples.
    fn default() -> LatencyHistogram {
        LatencyHistogram::new(1000)
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .field("p50", &self.percentile(50.0, 1))
            .field("p99", &self.percentile(99.0, 1))
            .finish()
    }
}

/// The bucket of a value in microseconds.
#[inline]
fn index(micros: u64) -> usize {
    if micros < u64::from(SUB) {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros(); // ≥ 2
    let sub = (micros >> (exp - 2)) & u64::from(SUB - 1);
    (((exp - 1) * SUB) as usize + sub as usize).min(BUCKETS - 1)
}

/// The smallest value of bucket `i`.
fn lower(i: usize) -> u64 {
    if i < SUB as usize {
        return i as u64;
    }
    let exp = (i / SUB as usize) as u32 + 1;
    let sub = (i % SUB as usize) as u64;
    (u64::from(SUB) + sub) << (exp - 2)
}

/// The largest value of bucket `i`.
fn upper(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        return lower(i) * 5 / 4;
    }
    lower(i + 1) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        for i in 0..BUCKETS - 1 {
            assert_eq!(upper(i) + 1, lower(i + 1), "bucket {i}");
            assert_eq!(index(lower(i)), i);
            assert_eq!(index(upper(i)), i);
            if lower(i) >= 4 {
                assert!((upper(i) - lower(i) + 1) * 4 <= lower(i), "bucket {i}");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_are_never_low_and_at_most_a_quarter_high() {
        let h = LatencyHistogram::new(1_000_000);
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        for p in [50.0, 90.0, 99.0] {
            let got = h.percentile(p, 1).unwrap();
            let exact = Duration::from_millis(p as u64);
            assert!(got >= exact, "p{p}: {got:?}");
            assert!(got <= exact * 5 / 4, "p{p}: {got:?}");
        }
        assert_eq!(h.percentile(50.0, 101), None);
    }

    #[test]
    fn old_samples_fade() {
        let h = LatencyHistogram::new(100);
        for _ in 0..200 {
            h.record(Duration::from_millis(1));
        }
        assert_eq!(h.count(), 100, "halved at 200");
        for _ in 0..1000 {
            h.record(Duration::from_millis(50));
        }
        let p50 = h.percentile(50.0, 1).unwrap();
        assert!(p50 >= Duration::from_millis(50), "{p50:?}");
        assert!(h.count() < 400, "{}", h.count());
    }
}
