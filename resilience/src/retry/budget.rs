//! A retry budget: retries may be at most a fraction of the calls over a
//! sliding window, with a floor for quiet times (Finagle's `RetryBudget`,
//! Envoy's `retry_budget`).
//!
//! # Protocol
//!
//! The window is `buckets` buckets of `window / buckets` each. A bucket is
//! two words, calls and retries, each `epoch << 32 | count`, where the
//! epoch is `now / bucket length` (truncated to 32 bits). A writer whose
//! epoch is the word's adds one with `fetch_add`; a writer with a newer
//! epoch restarts the word at `epoch | 1` by CAS; a writer whose epoch is
//! older (it read the clock before a concurrent writer moved the bucket on)
//! adds to the newer count, which is at most one bucket late. A reader sums
//! the words whose epoch lies in the last `buckets` epochs, so a stale bucket
//! is never counted even if no call ever rotates it. No lock, no allocation
//! per call; a call costs one clock read and one plain load and store on
//! the steady path: the calls are striped by owning thread
//! (`crate::striped`), each live thread below the stripe count writing a
//! row of the calls only it writes (the same tag rules, without the
//! atomic read-modify-write), the others sharing one last row by
//! `fetch_add`/CAS; a sum adds every row.
//!
//! A retry *withdraws* first (adds itself to the retries), then sums the
//! window and checks `retries ≤ max(floor × window, ratio × calls)`; if the
//! check fails it takes itself back out. Concurrent withdrawers can thus
//! only refuse each other, never both pass over the limit: the budget is
//! never overdrawn, it may be under-used for an instant under contention.
//!
//! The counters come from the crate's `sync` facade, so the loom model
//! `loom-tests/tests/retry_budget.rs` runs this code: racing withdrawals
//! never overdraw, and a refused one leaves no trace.
//!
//! The floor is a minimum (Envoy's `min_retry_concurrency` is one too), not
//! added to the ratio: under load the ratio alone bounds the retries, so a
//! storm against a dead service costs at most `1 + ratio` times the offered
//! load, while a service with a handful of calls per second can still retry.
//! The ratio is kept in per-mille so the check is integer arithmetic.

use std::{fmt, sync::Arc, time::Duration};

use super::RetryConfigError;
use crate::{
    clock::{Clock, ClockSource},
    divisor::Divisor,
    striped::{self, Row},
    sync::atomic::{AtomicU64, Ordering},
};

const COUNT_MASK: u64 = u32::MAX as u64;

/// A retry budget shared by every retrying and hedging policy of one
/// endpoint (hold it in an `Arc`). See the module docs (`retry/budget.rs`).
pub struct RetryBudget {
    /// Retries allowed per 1000 calls.
    ratio_milli: u64,
    /// Retries always allowed over one window (the floor × window).
    floor: u64,
    /// The bucket length in nanoseconds, and the bucket count, as divisors:
    /// every call divides by both (a multiply each, not a `div`).
    bucket_nanos: Divisor,
    bucket_count: Divisor,
    buckets: Box<[Bucket]>,
    /// The calls per bucket, striped by owning thread (`crate::striped`):
    /// `stripe_count()` rows written only by their owner with a plain load
    /// and store, then one shared row written by `fetch_add`/CAS. Every
    /// call deposits, so this is the per-call write; retries, rare, stay
    /// in one shared word per bucket (a withdrawal must see every other).
    calls: Box<[crate::limit::CachePadded<Box<[AtomicU64]>>]>,
    /// The default clock held by value (inlined reads), or the builder's.
    clock: ClockSource,
    refused: AtomicU64,
}

struct Bucket {
    retries: AtomicU64,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            retries: AtomicU64::new(0),
        }
    }
}

/// A snapshot of a budget's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetMetrics {
    /// Calls deposited in the window.
    pub calls: u64,
    /// Retries (and hedges) withdrawn in the window.
    pub retries: u64,
    /// Retries the window still allows now.
    pub available: u64,
    /// Withdrawals refused since the budget was made.
    pub refused: u64,
}

impl RetryBudget {
    /// A builder with Finagle's defaults: retries up to 20 % of calls, a
    /// floor of 10 retries per second, over 10 s (in 10 buckets). Envoy's
    /// default budget is 20 % too.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ratio: 0.2,
            floor_per_sec: 10,
            window: Duration::from_secs(10),
            buckets: 10,
            clock: None,
        }
    }

    /// Counts a call (every call, retried or not, deposits once).
    #[inline]
    pub fn deposit(&self) {
        let epoch = self.epoch();
        let index = self.index(epoch);
        let owned = self.calls.len() - 1;
        match striped::row(owned) {
            // Nobody else writes this thread's row.
            Row::Owned(id) => add_owned(&self.calls[id].0[index], epoch),
            Row::Shared => add(&self.calls[owned].0[index], epoch),
        }
    }

    /// Takes one retry from the budget: `true` if it may go ahead.
    #[inline]
    pub fn try_withdraw(&self) -> bool {
        let epoch = self.epoch();
        let word = &self.bucket(epoch).retries;
        add(word, epoch);
        let (calls, retries) = self.sums(epoch);
        if retries <= self.allowed(calls) {
            return true;
        }
        take_back(word, epoch);
        self.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// The window now.
    pub fn metrics(&self) -> BudgetMetrics {
        let (calls, retries) = self.sums(self.epoch());
        BudgetMetrics {
            calls,
            retries,
            available: self.allowed(calls).saturating_sub(retries),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.bucket_nanos.divisor() * self.buckets.len() as u64)
    }

    fn allowed(&self, calls: u64) -> u64 {
        (calls.saturating_mul(self.ratio_milli) / 1000).max(self.floor)
    }

    #[inline]
    fn epoch(&self) -> u32 {
        // Truncated: only differences of recent epochs matter (wrapping).
        self.bucket_nanos.div_rem(self.clock.nanos()).0 as u32
    }

    #[inline]
    fn index(&self, epoch: u32) -> usize {
        self.bucket_count.div_rem(u64::from(epoch)).1 as usize
    }

    #[inline]
    fn bucket(&self, epoch: u32) -> &Bucket {
        &self.buckets[self.index(epoch)]
    }

    fn sums(&self, epoch: u32) -> (u64, u64) {
        let n = self.buckets.len() as u32;
        let in_window = |word: u64| {
            let age = epoch.wrapping_sub((word >> 32) as u32);
            // An age "from the future" (a writer ahead of our clock read)
            // wraps to a huge number; count it too, it is this bucket.
            if age < n || age > u32::MAX - n {
                word & COUNT_MASK
            } else {
                0
            }
        };
        // Relaxed: the sums are statistics; decisions tolerate a count that
        // is a few calls stale.
        let calls = self
            .calls
            .iter()
            .flat_map(|row| row.0.iter())
            .map(|word| in_window(word.load(Ordering::Relaxed)))
            .sum();
        let retries = self
            .buckets
            .iter()
            .map(|b| in_window(b.retries.load(Ordering::Relaxed)))
            .sum();
        (calls, retries)
    }
}

/// Adds one to an epoch-tagged counter (see the protocol).
#[inline]
fn add(word: &AtomicU64, epoch: u32) {
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        // The word's epoch is ours or newer: count in it.
        if counts_for(cur, epoch) {
            word.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let fresh = (u64::from(epoch) << 32) | 1;
        match word.compare_exchange_weak(cur, fresh, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

/// Whether a writer in `epoch` adds to `word` as it is: the word counts for
/// that epoch or a newer one (else the writer restarts it).
#[inline(always)]
fn counts_for(word: u64, epoch: u32) -> bool {
    let tag = (word >> 32) as u32;
    tag == epoch || (tag.wrapping_sub(epoch) as i32) > 0
}

/// [`add`] for a word only the calling thread writes: a load and a store.
#[inline]
fn add_owned(word: &AtomicU64, epoch: u32) {
    let cur = word.load(Ordering::Relaxed);
    let next = if counts_for(cur, epoch) {
        cur + 1
    } else {
        (u64::from(epoch) << 32) | 1
    };
    word.store(next, Ordering::Relaxed);
}

/// Takes one back out, if the word is still in `epoch` (a word that moved
/// on has forgotten the retry already).
fn take_back(word: &AtomicU64, epoch: u32) {
    let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
        ((cur >> 32) as u32 == epoch && cur & COUNT_MASK > 0).then(|| cur - 1)
    });
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio_milli", &self.ratio_milli)
            .field("floor", &self.floor)
            .field("window", &self.window())
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// Builds a [`RetryBudget`].
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    floor_per_sec: u32,
    window: Duration,
    buckets: u32,
    clock: Option<Arc<dyn Clock>>,
}

impl RetryBudgetBuilder {
    /// Retries allowed as a fraction of calls (0.1 = 10 %), in `[0, 10]`.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries per second always allowed, however few the calls.
    pub fn floor_per_sec(mut self, floor: u32) -> Self {
        self.floor_per_sec = floor;
        self
    }

    /// The sliding window and its number of buckets (1..=1024; each at least
    /// 1 ms). The window covers the current bucket and `buckets - 1` before.
    pub fn window(mut self, window: Duration, buckets: u32) -> Self {
        self.window = window;
        self.buckets = buckets;
        self
    }

    /// The clock (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The budget, or what is wrong with the settings.
    pub fn build(self) -> Result<RetryBudget, RetryConfigError> {
        if !(0.0..=10.0).contains(&self.ratio) {
            return Err(RetryConfigError::BudgetRatio(self.ratio));
        }
        if self.buckets == 0 || self.buckets > 1024 {
            return Err(RetryConfigError::BudgetBuckets(self.buckets));
        }
        let bucket_nanos =
            u64::try_from(self.window.as_nanos() / u128::from(self.buckets)).unwrap_or(u64::MAX);
        if bucket_nanos < 1_000_000 {
            return Err(RetryConfigError::BudgetWindow(self.window));
        }
        let floor = u64::from(self.floor_per_sec)
            .saturating_mul(bucket_nanos * u64::from(self.buckets))
            / 1_000_000_000;
        Ok(RetryBudget {
            ratio_milli: (self.ratio * 1000.0).round() as u64,
            floor,
            bucket_nanos: Divisor::new(bucket_nanos),
            bucket_count: Divisor::new(u64::from(self.buckets)),
            buckets: (0..self.buckets).map(|_| Bucket::new()).collect(),
            calls: striped::rows(|| (0..self.buckets).map(|_| AtomicU64::new(0)).collect()),
            clock: self
                .clock
                .map_or_else(ClockSource::default, ClockSource::Custom),
            refused: AtomicU64::new(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn budget(ratio: f64, floor: u32, clock: &ManualClock) -> RetryBudget {
        RetryBudget::builder()
            .ratio(ratio)
            .floor_per_sec(floor)
            .window(Duration::from_secs(10), 10)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    }

    #[test]
    fn retries_are_a_fraction_of_calls() {
        let clock = ManualClock::new();
        let b = budget(0.1, 0, &clock);
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..50).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 10);
        let m = b.metrics();
        assert_eq!(
            (m.calls, m.retries, m.available, m.refused),
            (100, 10, 0, 40)
        );
    }

    #[test]
    fn the_floor_allows_retries_when_quiet() {
        let clock = ManualClock::new();
        let b = budget(0.1, 2, &clock); // 2/s over 10 s = 20
        let granted = (0..50).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let clock = ManualClock::new();
        let b = budget(0.5, 0, &clock);
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.try_withdraw());
        clock.advance(Duration::from_secs(9));
        assert_eq!(
            b.metrics().calls,
            10,
            "9 s later the first bucket is still in"
        );
        clock.advance(Duration::from_secs(1));
        let m = b.metrics();
        assert_eq!((m.calls, m.retries), (0, 0), "10 s later it is out");
        assert!(!b.try_withdraw());
    }

    #[test]
    fn a_refused_withdrawal_is_taken_back() {
        let clock = ManualClock::new();
        let b = budget(0.0, 0, &clock);
        assert!(!b.try_withdraw());
        assert!(!b.try_withdraw());
        assert_eq!(b.metrics().retries, 0);
        assert_eq!(b.metrics().refused, 2);
    }

    #[test]
    fn bad_settings_are_errors() {
        let e = RetryBudget::builder().ratio(-0.1).build().unwrap_err();
        assert!(matches!(e, RetryConfigError::BudgetRatio(_)));
        let e = RetryBudget::builder()
            .window(Duration::from_secs(1), 0)
            .build()
            .unwrap_err();
        assert!(matches!(e, RetryConfigError::BudgetBuckets(0)));
        let e = RetryBudget::builder()
            .window(Duration::from_micros(500), 1)
            .build()
            .unwrap_err();
        assert!(matches!(e, RetryConfigError::BudgetWindow(_)));
        assert!(e.to_string().contains("1 ms"), "{e}");
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let clock = ManualClock::new();
        let b = Arc::new(budget(0.1, 0, &clock));
        for _ in 0..1000 {
            b.deposit();
        }
        let granted: usize = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..500).filter(|_| b.try_withdraw()).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert!(granted <= 100, "{granted}");
        assert!(
            granted >= 90,
            "{granted}: contention may refuse a few, not most"
        );
        assert_eq!(b.metrics().retries, granted as u64);
    }
}
