//! Log-linear (HDR-style) latency histograms: a lock-free recorder written
//! by one thread, and the snapshot users read through `RuntimeMetrics`.
//!
//! # Buckets
//! Values below `2^SUB_BITS` (16) have a bucket each. Above, every power of
//! two `[2^k, 2^(k+1))` is cut into `2^SUB_BITS` equal sub-buckets of width
//! `2^(k - SUB_BITS)`. A bucket's width is thus at most 1/16 of its lower
//! bound: a value reported as the upper end of its bucket is never below
//! the true value and at most 6.25% above it (see
//! [`HistogramSnapshot::percentile`]). The whole `u64` range fits in 976
//! buckets; nothing is clamped.
//!
//! # Protocol
//! - One thread writes a recorder (a worker its scheduling histograms, an io
//!   driver's owner its op histogram): each update is a load and a store of
//!   a Relaxed atomic, no read-modify-write. A second writer would not be
//!   unsound, only able to lose counts.
//! - Any thread reads: [`Histogram::snapshot`] copies the buckets. The count
//!   is the sum of the copied buckets, so it matches them exactly; `min`,
//!   `max` and `sum` are separate words and may lag the buckets by the
//!   values being recorded during the copy (percentiles are clamped to
//!   them only when that keeps them inside the bucket).
//! - These are statistics, not synchronisation: they use `std` atomics even
//!   under loom (as the scheduler's counters do), so the models do not
//!   explore them.
//!
//! # Units
//! Recorders hold raw clock ticks ([`super::ticks`]); a snapshot carries
//! the nanoseconds per tick measured when it was taken and reports
//! `Duration`s. Scaling preserves the relative error bound.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

/// Sub-bucket bits: `2^SUB_BITS` buckets per power of two.
const SUB_BITS: u32 = 4;
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Buckets for the whole `u64` range: 16 exact ones, then 16 per power of
/// two from `2^4` to `2^63`.
pub(crate) const BUCKETS: usize = SUB_COUNT + (64 - SUB_BITS as usize) * SUB_COUNT;

/// The bucket holding `value`.
#[inline]
fn bucket_of(value: u64) -> usize {
    if value < SUB_COUNT as u64 {
        return value as usize;
    }
    // `value >= 16`, so `k >= SUB_BITS`.
    let k = 63 - value.leading_zeros();
    let sub = (value >> (k - SUB_BITS)) as usize & (SUB_COUNT - 1);
    (k - SUB_BITS + 1) as usize * SUB_COUNT + sub
}

/// The smallest and largest value bucket `index` holds.
fn bucket_bounds(index: usize) -> (u64, u64) {
    if index < SUB_COUNT {
        return (index as u64, index as u64);
    }
    let k = (index / SUB_COUNT) as u32 + SUB_BITS - 1;
    let sub = (index % SUB_COUNT) as u64;
    let width = 1u64 << (k - SUB_BITS);
    let low = (1u64 << k) + sub * width;
    (low, low + (width - 1))
}

/// The recording side: one per worker and kind, written by one thread.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    min: AtomicU64,
    max: AtomicU64,
    /// Wrapping sum of the values, for the mean.
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value. Single writer: see the module doc.
    #[inline]
    pub(crate) fn record(&self, value: u64) {
        let bucket = &self.buckets[bucket_of(value)];
        bucket.store(bucket.load(Relaxed) + 1, Relaxed);
        if value < self.min.load(Relaxed) {
            self.min.store(value, Relaxed);
        }
        if value > self.max.load(Relaxed) {
            self.max.store(value, Relaxed);
        }
        self.sum
            .store(self.sum.load(Relaxed).wrapping_add(value), Relaxed);
    }

    /// A copy of the buckets, reporting `nanos_per_unit` nanoseconds per
    /// recorded unit.
    pub(crate) fn snapshot(&self, nanos_per_unit: f64) -> HistogramSnapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count = counts.iter().sum();
        HistogramSnapshot {
            counts,
            count,
            min: self.min.load(Relaxed),
            max: self.max.load(Relaxed),
            sum: self.sum.load(Relaxed),
            nanos_per_unit,
        }
    }
}

/// A copy of one latency histogram (or of several, merged).
///
/// Values are durations in log-linear buckets: exact below 16 clock ticks,
/// then 16 buckets per power of two, so every reported value (a
/// [`percentile`](Self::percentile), a bucket's bounds) is within
/// [`RELATIVE_ERROR`](Self::RELATIVE_ERROR) (6.25%) of the recorded ones. The runtime's
/// histograms count clock ticks (the CPU's time-stamp counter where it is
/// invariant, else `Instant`) converted to nanoseconds with a rate
/// measured against `Instant`; that conversion adds well under 0.1%.
///
/// An empty snapshot reports zero for every statistic.
///
/// ```
/// let rt = weft::runtime::Builder::new_multi_thread()
///     .worker_threads(1)
///     .histogram_sample_interval(1)
///     .build()?;
/// rt.block_on(async {
///     // A poll is recorded just after it returns: by the time the one
///     // worker has run the second task, the first one's poll is in.
///     weft::spawn(async {}).await.unwrap();
///     weft::spawn(async {}).await.unwrap();
/// });
/// let polls = rt.metrics().poll_duration();
/// assert!(polls.count() >= 1);
/// assert!(polls.percentile(50.0) <= polls.max());
/// # Ok::<(), weft::runtime::BuildError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Per bucket; empty for a snapshot that never had a recorder.
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u64,
    nanos_per_unit: f64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            counts: Vec::new(),
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
            nanos_per_unit: 1.0,
        }
    }
}

/// One bucket of a [`HistogramSnapshot`]: the values from `low` to `high`
/// (both included) and how many were recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistogramBucket {
    /// The smallest duration the bucket holds.
    pub low: Duration,
    /// The largest duration the bucket holds.
    pub high: Duration,
    /// Values recorded in it.
    pub count: u64,
}

impl HistogramSnapshot {
    /// The bound on the relative error of every reported value: 1/16.
    pub const RELATIVE_ERROR: f64 = 1.0 / SUB_COUNT as f64;

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The smallest value recorded (exact, not bucketed); zero if empty.
    pub fn min(&self) -> Duration {
        self.to_duration(self.min_units())
    }

    /// The largest value recorded (exact); zero if empty.
    pub fn max(&self) -> Duration {
        self.to_duration(self.max_units())
    }

    /// The mean of the values recorded; zero if empty.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        self.to_duration_f64(self.sum as f64 / self.count as f64)
    }

    /// The value at percentile `p` (0 to 100; clamped): the smallest
    /// recorded value with at least `p`% of the values at or below it,
    /// reported as the upper end of its bucket (capped by [`max`](Self::max)).
    /// It is never below the true value and at most [`RELATIVE_ERROR`](Self::RELATIVE_ERROR)
    /// above it. `percentile(0.0)` is the minimum, `percentile(100.0)` the
    /// maximum. Zero if empty.
    pub fn percentile(&self, p: f64) -> Duration {
        self.to_duration(self.percentile_units(p))
    }

    /// Every non-empty bucket, from the lowest values up.
    pub fn buckets(&self) -> impl Iterator<Item = HistogramBucket> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &count)| count > 0)
            .map(|(index, &count)| {
                let (low, high) = bucket_bounds(index);
                HistogramBucket {
                    low: self.to_duration(low),
                    high: self.to_duration(high),
                    count,
                }
            })
    }

    /// Adds `other`'s values to this snapshot (the runtime-wide view of
    /// per-worker histograms). Both must come from the same runtime, whose
    /// histograms share one clock.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
            self.nanos_per_unit = other.nanos_per_unit;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum = self.sum.wrapping_add(other.sum);
    }

    fn min_units(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    fn max_units(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.max
        }
    }

    /// [`percentile`](Self::percentile) in recorded units.
    pub(crate) fn percentile_units(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
        if p == 0.0 {
            return self.min;
        }
        // The rank (1-based) of the value: the smallest with `p`% at or
        // below it.
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bucket_bounds(index);
                // `max` is exact: the cap when it lies in this bucket (it
                // may lag a snapshot taken mid-record, then it does not).
                return if (low..=high).contains(&self.max) {
                    self.max
                } else {
                    high
                };
            }
        }
        self.max
    }

    fn to_duration(&self, units: u64) -> Duration {
        self.to_duration_f64(units as f64)
    }

    fn to_duration_f64(&self, units: f64) -> Duration {
        let nanos = units * self.nanos_per_unit;
        if nanos >= u64::MAX as f64 {
            Duration::from_nanos(u64::MAX)
        } else {
            Duration::from_nanos(nanos.round() as u64)
        }
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("p50", &self.percentile(50.0))
            .field("p99", &self.percentile(99.0))
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the value of rank `ceil(p/100 × n)` in sorted order.
    fn reference(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank - 1]
    }

    fn recorded(values: &[u64]) -> HistogramSnapshot {
        let h = Histogram::new();
        for &v in values {
            h.record(v);
        }
        h.snapshot(1.0)
    }

    /// Checks every percentile from 0 to 100 in steps of 0.5 against the
    /// sorted reference: never below it, at most 1/16 above it.
    fn check_percentiles(values: &[u64]) {
        let snap = recorded(values);
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        assert_eq!(snap.count(), values.len() as u64);
        for step in 0..=200 {
            let p = step as f64 / 2.0;
            let want = if p == 0.0 {
                sorted[0]
            } else {
                reference(&sorted, p)
            };
            let got = snap.percentile_units(p);
            assert!(got >= want, "p{p}: {got} below the true {want}");
            let bound = want + want / SUB_COUNT as u64;
            assert!(
                got <= bound,
                "p{p}: {got} more than 1/16 above the true {want}"
            );
        }
        assert_eq!(snap.percentile_units(100.0), *sorted.last().unwrap());
        assert_eq!(snap.percentile_units(0.0), sorted[0]);
    }

    /// xorshift64*, for reproducible spreads of values.
    fn values(seed: u64, n: usize, f: impl Fn(u64) -> u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                f(x.wrapping_mul(0x2545_F491_4F6C_DD1D))
            })
            .collect()
    }

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it() {
        let mut probes: Vec<u64> = (0..5000).collect();
        for k in 0..64 {
            let p = 1u64 << k;
            probes.extend([p - 1, p, p + 1, p | (p >> 1), p.wrapping_mul(3) / 2]);
        }
        probes.push(u64::MAX);
        for v in probes {
            let index = bucket_of(v);
            assert!(index < BUCKETS, "{v} maps past the last bucket");
            let (low, high) = bucket_bounds(index);
            assert!(
                low <= v && v <= high,
                "{v} not in bucket {index} {low}..={high}"
            );
            assert!(
                (high - low) <= low / SUB_COUNT as u64,
                "bucket {index} wider than 1/16 of its low end"
            );
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        // Buckets tile the range: each starts right after the previous.
        for index in 1..BUCKETS {
            assert_eq!(bucket_bounds(index).0, bucket_bounds(index - 1).1 + 1);
        }
    }

    #[test]
    fn percentiles_match_a_sorted_reference_within_the_bound() {
        // Uniform over a wide range, log-uniform (latency-like), a narrow
        // cluster, and small exact values.
        check_percentiles(&values(1, 10_000, |x| x % 1_000_000));
        check_percentiles(&values(2, 10_000, |x| {
            let shift = x % 40;
            (x >> 24) % (1 << shift).max(1) + (1 << shift)
        }));
        check_percentiles(&values(3, 5_000, |x| 50_000 + x % 700));
        check_percentiles(&values(4, 1_000, |x| x % 16));
        check_percentiles(&[42]);
        check_percentiles(&[7, 1_000_000_007]);
    }

    #[test]
    fn an_empty_histogram_reports_zero() {
        let snap = recorded(&[]);
        assert!(snap.is_empty());
        assert_eq!(snap.count(), 0);
        assert_eq!(snap.min(), Duration::ZERO);
        assert_eq!(snap.max(), Duration::ZERO);
        assert_eq!(snap.mean(), Duration::ZERO);
        assert_eq!(snap.percentile(50.0), Duration::ZERO);
        assert_eq!(snap.buckets().count(), 0);
        let default = HistogramSnapshot::default();
        assert!(default.is_empty());
        assert_eq!(default.percentile(99.0), Duration::ZERO);
    }

    #[test]
    fn zero_and_huge_values_are_kept_exactly_at_the_ends() {
        let snap = recorded(&[0, 0, u64::MAX, 5]);
        assert_eq!(snap.count(), 4);
        assert_eq!(snap.percentile_units(0.0), 0);
        assert_eq!(snap.percentile_units(50.0), 0);
        assert_eq!(snap.percentile_units(75.0), 5);
        assert_eq!(snap.percentile_units(100.0), u64::MAX);
        assert_eq!(snap.max(), Duration::from_nanos(u64::MAX));
        let buckets: Vec<HistogramBucket> = snap.buckets().collect();
        assert_eq!(buckets.len(), 3);
        assert_eq!(buckets[0].count, 2);
        assert_eq!(buckets[0].low, Duration::ZERO);
        assert_eq!(buckets[2].high, Duration::from_nanos(u64::MAX));
        // Out-of-range and NaN percentiles are clamped, not a panic.
        assert_eq!(snap.percentile_units(-3.0), 0);
        assert_eq!(snap.percentile_units(250.0), u64::MAX);
        assert_eq!(snap.percentile_units(f64::NAN), 0);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let a = values(5, 3_000, |x| x % 10_000);
        let b = values(6, 2_000, |x| 5_000 + x % 100_000);
        let mut merged = recorded(&a);
        merged.merge(&recorded(&b));
        let mut empty = HistogramSnapshot::default();
        empty.merge(&merged.clone());
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let whole = recorded(&all);
        assert_eq!(merged, whole);
        assert_eq!(empty, whole);
        assert_eq!(merged.mean(), whole.mean());
    }

    #[test]
    fn scaling_converts_units_to_nanoseconds() {
        let h = Histogram::new();
        for v in [100u64, 200, 300, 400] {
            h.record(v);
        }
        // 0.5 ns per unit: a 2 GHz counter.
        let snap = h.snapshot(0.5);
        assert_eq!(snap.min(), Duration::from_nanos(50));
        assert_eq!(snap.max(), Duration::from_nanos(200));
        assert_eq!(snap.mean(), Duration::from_nanos(125));
        let p50 = snap.percentile(50.0);
        assert!(p50 >= Duration::from_nanos(100) && p50 <= Duration::from_nanos(107));
        let total: u64 = snap.buckets().map(|b| b.count).sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn a_reader_sees_counts_grow_while_the_writer_records() {
        let h = std::sync::Arc::new(Histogram::new());
        let writer = {
            let h = h.clone();
            std::thread::spawn(move || {
                for v in 0..200_000u64 {
                    h.record(v % 5_000);
                }
            })
        };
        let mut last = 0;
        while !writer.is_finished() {
            let count = h.snapshot(1.0).count();
            assert!(count >= last, "the count went back from {last} to {count}");
            last = count;
        }
        writer.join().unwrap();
        let snap = h.snapshot(1.0);
        assert_eq!(snap.count(), 200_000);
        assert_eq!(snap.percentile_units(100.0), 4_999);
    }
}
