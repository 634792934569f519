//! Outcome windows: what the breaker judges its rates over.
//!
//! Both windows are arrays of atomic counters: recording a call is a few
//! atomic operations, never a lock or an allocation. Relaxed is enough
//! almost everywhere here: the windows are statistics, and every decision
//! taken from them is then made by a compare-and-swap on the state word.
//! The one exception is a SeqCst fence between a striped time window's
//! record and the sum that judges it (see `Recorder::record`).
//!
//! * [`CountWindow`] — the last `n` calls. A cursor hands each call a slot of
//!   a ring of one-byte outcome codes; the slot is swapped to the new code
//!   and a packed total (four 16-bit fields: calls, failures, slow calls,
//!   slow failures) is adjusted by the difference. The total is always the
//!   sum of the slots once the writers are done; a reader racing a writer may
//!   see a field one off (or transiently negative, read as zero). A success
//!   recorded while every slot holds a success changes nothing and takes no
//!   slot: a healthy window is only read, never written.
//! * [`TimeWindow`] — the last `span`, in buckets of `span / buckets`. Each
//!   counter of a bucket carries the epoch (time / bucket length) it counts
//!   for in its high 32 bits; a writer in a new epoch restarts the counter
//!   by CAS, and a reader adds only counters whose epoch is inside the
//!   window, so a stale bucket is never counted. The buckets are **striped**
//!   (LongAdder-style, but owned): each stripe is a full bucket array on
//!   lines of its own, owned by the live thread whose registry id (the one
//!   the pools' shards use) is its index, and written only by that thread,
//!   with a plain load and store: a success costs no read-modify-write at
//!   all. Threads whose id is past the stripe count share one last stripe,
//!   which they bump by CAS. The stripes are summed only when a decision is
//!   due (see `Breaker::settle_closed`: after a failure or a slow call, or
//!   while the window may hold one). Clearing the window writes no counter
//!   (an owner's load and store would undo it): it moves every later
//!   reading a whole window forward (`shift`), past every counter's tag.

use std::time::Duration;

use super::CachePadded;
use crate::divisor::Divisor;
use crate::striped::Row;
use crate::sync::atomic::{
    fence, AtomicU64, AtomicU8,
    Ordering::{Relaxed, SeqCst},
};

/// How one call ended, as the windows count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Succeeded within the slow-call duration.
    Success,
    /// Failed within the slow-call duration.
    Failure,
    /// Succeeded, but took the slow-call duration or longer.
    SlowSuccess,
    /// Failed, and took the slow-call duration or longer.
    SlowFailure,
}

impl Outcome {
    /// The outcome of a call that `failed`, `slow` or not.
    pub const fn new(failed: bool, slow: bool) -> Outcome {
        match (failed, slow) {
            (false, false) => Outcome::Success,
            (true, false) => Outcome::Failure,
            (false, true) => Outcome::SlowSuccess,
            (true, true) => Outcome::SlowFailure,
        }
    }

    /// Whether the call failed.
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure | Outcome::SlowFailure)
    }

    /// Whether the call was slow.
    pub const fn is_slow(self) -> bool {
        matches!(self, Outcome::SlowSuccess | Outcome::SlowFailure)
    }

    /// The code a count-window slot holds (0 is an empty slot).
    const fn code(self) -> u8 {
        match self {
            Outcome::Success => 1,
            Outcome::Failure => 2,
            Outcome::SlowSuccess => 3,
            Outcome::SlowFailure => 4,
        }
    }
}

/// What a window holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls recorded (ignored calls are not recorded).
    pub calls: u64,
    /// Failed calls, slow or not.
    pub failures: u64,
    /// Slow calls, failed or not.
    pub slow_calls: u64,
    /// Calls both slow and failed.
    pub slow_failures: u64,
}

impl Counts {
    /// Failed calls as a percentage of calls (0 with no calls).
    pub fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls as a percentage of calls (0 with no calls).
    pub fn slow_call_rate(&self) -> f64 {
        percent(self.slow_calls, self.calls)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The packed delta a slot code adds to a count window's total: four 16-bit
/// fields, calls (bits 0..16), failures, slow calls, slow failures.
const fn packed(code: u8) -> u64 {
    const CALL: u64 = 1;
    const FAILURE: u64 = 1 << 16;
    const SLOW: u64 = 1 << 32;
    const SLOW_FAILURE: u64 = 1 << 48;
    match code {
        1 => CALL,
        2 => CALL + FAILURE,
        3 => CALL + SLOW,
        4 => CALL + FAILURE + SLOW + SLOW_FAILURE,
        _ => 0,
    }
}

/// Decodes a packed total whose fields are signed 16-bit numbers: a field
/// that is transiently negative borrows from the next one, and this undoes
/// the borrow. Negative fields (a reader between two writers) read as zero.
fn unpack(mut total: u64) -> Counts {
    let mut fields = [0u64; 4];
    for field in &mut fields {
        let value = total as u16 as i16;
        total = total.wrapping_sub(value as i64 as u64) >> 16;
        *field = value.max(0) as u64;
    }
    let [calls, failures, slow_calls, slow_failures] = fields;
    Counts {
        calls,
        failures,
        slow_calls,
        slow_failures,
    }
}

/// The last `n` calls; see the module doc.
#[derive(Debug)]
pub(crate) struct CountWindow {
    /// Every record writes the cursor, so it gets a cache line of its own:
    /// next to the read-only slot pointer and length (and the `Recorder`
    /// tag) it would make every record on one core miss on the load of those
    /// fields after every record on another, on top of the cursor's own
    /// transfer.
    cursor: CachePadded<AtomicU64>,
    slots: Box<[AtomicU8]>,
    /// The slot count as a divisor (a multiply, not a `div`, per record).
    slots_len: Divisor,
    total: AtomicU64,
    /// `total` when every slot holds a success (read-only).
    clean: u64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> CountWindow {
        CountWindow {
            cursor: CachePadded(AtomicU64::new(0)),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            slots_len: Divisor::new(u64::from(size)),
            total: AtomicU64::new(0),
            clean: packed(Outcome::Success.code()) * u64::from(size),
        }
    }

    /// Records one call; returns the new counts if they changed (a call that
    /// replaces an equal outcome leaves every rate as it was).
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome) -> Option<Counts> {
        // The steady state of a healthy service: every slot holds a success.
        // A success then replaces a success wherever the cursor points, so
        // the window reads the same whether or not the call takes a slot:
        // it takes none, and a healthy window costs a plain load of a line
        // nobody writes — no write at all, where the cursor's fetch_add was
        // a read-modify-write of one line shared by every recording thread.
        // A record racing this load (a failure swapped into a slot, its
        // total not yet updated) is ordered after the skipped success,
        // which is as valid an order as any (loom:
        // `a_success_skipping_a_clean_window_never_hides_a_failure`).
        if outcome == Outcome::Success && self.total.load(Relaxed) == self.clean {
            return None;
        }
        let index = self
            .slots_len
            .div_rem(self.cursor.0.fetch_add(1, Relaxed))
            .1 as usize;
        let slot = &self.slots[index];
        let code = outcome.code();
        // The steady state of a healthy service: the slot already says
        // "success". A load keeps the cache line shared between cores.
        if slot.load(Relaxed) == code {
            return None;
        }
        let old = slot.swap(code, Relaxed);
        if old == code {
            return None;
        }
        let delta = packed(code).wrapping_sub(packed(old));
        let total = self.total.fetch_add(delta, Relaxed).wrapping_add(delta);
        Some(unpack(total))
    }

    pub(crate) fn counts(&self) -> Counts {
        unpack(self.total.load(Relaxed))
    }

    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Relaxed);
            if old != 0 {
                self.total.fetch_sub(packed(old), Relaxed);
            }
        }
    }
}

/// Which counter of a time bucket.
const CALLS: usize = 0;
const FAILURES: usize = 1;
const SLOW: usize = 2;
const SLOW_FAILURES: usize = 3;

/// Counters of padding (128 bytes) before and after each stripe's array
/// (none under loom, where lines do not exist and every atomic is tracked).
#[cfg(not(weft_loom))]
const PAD: usize = 16;
#[cfg(weft_loom)]
const PAD: usize = 0;

/// The last `span` of calls, striped; see the module doc.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: Divisor,
    buckets: Divisor,
    /// Epochs added to every reading: `clear` adds a whole window, so every
    /// counter written before it falls out of the window. Read-mostly (one
    /// write per clear, i.e. per close of the breaker).
    shift: AtomicU64,
    /// One bucket array per stripe: `buckets × 4` counters, epoch tag (high
    /// 32 bits) | count (low 32). Stripe `i < owned` is written only by the
    /// thread with registry id `i`; the last one is shared by the rest.
    stripes: Box<[crate::limit::CachePadded<Box<[AtomicU64]>>]>,
}

impl TimeWindow {
    pub(crate) fn new(span: Duration, buckets: u32) -> TimeWindow {
        let bucket_nanos = u64::try_from((span / buckets).as_nanos()).unwrap_or(u64::MAX);
        TimeWindow {
            bucket_nanos: Divisor::new(bucket_nanos),
            buckets: Divisor::new(u64::from(buckets)),
            shift: AtomicU64::new(0),
            // Each stripe's counters sit between two 128-byte pads, so no
            // line of one stripe is shared with another's (the arrays are
            // separate allocations, which the allocator may place side by
            // side). One more stripe than owners: the shared one.
            stripes: crate::striped::rows(|| {
                (0..buckets as usize * 4 + 2 * PAD)
                    .map(|_| AtomicU64::new(0))
                    .collect()
            }),
        }
    }

    /// The bucket epoch of `now` (nanoseconds on the breaker's clock), moved
    /// on by every clear.
    #[inline]
    fn epoch(&self, now: u64) -> u64 {
        self.bucket_nanos.div_rem(now).0 + self.shift.load(Relaxed)
    }

    #[inline]
    fn index(&self, epoch: u64, which: usize) -> usize {
        PAD + self.buckets.div_rem(epoch).1 as usize * 4 + which
    }

    /// Stripes owned by one thread each (the last stripe is shared).
    #[inline]
    fn owned(&self) -> usize {
        self.stripes.len() - 1
    }

    /// Records one call. On the steady path (a success, on a thread that
    /// owns a stripe) a load and a store of a line no other thread writes.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome, now: u64) {
        let epoch = self.epoch(now);
        match crate::striped::row(self.owned()) {
            // The id is this thread's while it lives, and ids are unique
            // among live threads: nobody else writes this stripe.
            Row::Owned(id) => self.record_into(&self.stripes[id].0, outcome, epoch, bump_owned),
            Row::Shared => {
                self.record_into(&self.stripes[self.owned()].0, outcome, epoch, bump_shared)
            }
        }
    }

    #[inline(always)]
    fn record_into(
        &self,
        stripe: &[AtomicU64],
        outcome: Outcome,
        epoch: u64,
        bump: fn(&AtomicU64, u64),
    ) {
        bump(&stripe[self.index(epoch, CALLS)], epoch);
        if outcome.is_failure() {
            bump(&stripe[self.index(epoch, FAILURES)], epoch);
        }
        if outcome.is_slow() {
            bump(&stripe[self.index(epoch, SLOW)], epoch);
        }
        if outcome == Outcome::SlowFailure {
            bump(&stripe[self.index(epoch, SLOW_FAILURES)], epoch);
        }
    }

    /// The sum over every stripe: read only when a decision is due.
    pub(crate) fn counts(&self, now: u64) -> Counts {
        self.counts_at(self.epoch(now))
    }

    fn counts_at(&self, epoch: u64) -> Counts {
        let mut fields = [0u64; 4];
        for stripe in self.stripes.iter() {
            for back in 0..self.buckets.divisor().min(epoch + 1) {
                let epoch = epoch - back;
                for (which, field) in fields.iter_mut().enumerate() {
                    let word = stripe.0[self.index(epoch, which)].load(Relaxed);
                    if (word >> 32) as u32 == epoch as u32 {
                        *field += word & u64::from(u32::MAX);
                    }
                }
            }
        }
        let [calls, failures, slow_calls, slow_failures] = fields;
        Counts {
            calls,
            failures,
            slow_calls,
            slow_failures,
        }
    }

    /// Empties the window without writing a counter: every later reading
    /// lands a whole window (plus one epoch) past every tag written so far,
    /// so the sums skip those counters and the next write to each restarts
    /// it. A record racing the clear lands before it or after it, as with
    /// any clear. (A write made with a reading from before the clear into a
    /// counter already restarted after it is at least a window behind, and
    /// dropped as a lost race.)
    pub(crate) fn clear(&self) {
        self.shift.fetch_add(self.buckets.divisor() + 1, Relaxed);
    }
}

/// How many epochs ahead of a writer a counter may be for the writer to
/// conclude that it lost a race to a newer one (rather than that the counter
/// is older than 2^32 epochs and its tag wrapped). Above every window's
/// bucket count plus one (`MAX_BUCKETS`), so a reading from before a clear
/// that meets a counter written after it is dropped, not counted.
const RACE_HORIZON: u32 = 1 << 16;

/// The value `current` becomes when one call of `epoch` is added to it:
/// plus one in the same epoch, restarted at one from an older epoch, `None`
/// if the counter is saturated (4 billion calls in one bucket) or already in
/// a newer epoch (this call is at least a whole window old: its clock
/// reading lost a race; it is dropped).
#[inline(always)]
fn bumped(current: u64, epoch: u64) -> Option<u64> {
    let tag = epoch as u32;
    let current_tag = (current >> 32) as u32;
    if current_tag == tag {
        let count = current & u64::from(u32::MAX);
        (count != u64::from(u32::MAX)).then_some(current + 1)
    } else if current != 0 && current_tag.wrapping_sub(tag) < RACE_HORIZON {
        None
    } else {
        Some((u64::from(tag) << 32) | 1)
    }
}

/// Adds one call of `epoch` to a counter only the calling thread writes: a
/// load and a store, exact because no other thread writes it.
#[inline(always)]
fn bump_owned(counter: &AtomicU64, epoch: u64) {
    if let Some(next) = bumped(counter.load(Relaxed), epoch) {
        counter.store(next, Relaxed);
    }
}

/// Adds one call of `epoch` to a counter of the shared stripe, by CAS.
fn bump_shared(counter: &AtomicU64, epoch: u64) {
    let mut current = counter.load(Relaxed);
    while let Some(next) = bumped(current, epoch) {
        match counter.compare_exchange_weak(current, next, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// The window a breaker was configured with.
// The count window is large only by its padded cursor; there is one per
// breaker, and boxing it would add a pointer chase to every record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Recorder {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Recorder {
    pub(crate) fn new(window: super::Window) -> Recorder {
        match window {
            super::Window::Count(size) => Recorder::Count(CountWindow::new(size)),
            super::Window::Time { span, buckets } => Recorder::Time(TimeWindow::new(span, buckets)),
        }
    }

    /// Whether recording needs the time.
    pub(crate) fn needs_time(&self) -> bool {
        matches!(self, Recorder::Time(_))
    }

    /// Records a call. Returns the counts if a decision may be due: for a
    /// count window, whenever they changed; for a time window (whose sum
    /// reads every stripe), when `judge` says so.
    #[inline]
    pub(crate) fn record(
        &self,
        outcome: Outcome,
        now: impl FnOnce() -> u64,
        judge: bool,
    ) -> Option<Counts> {
        match self {
            Recorder::Count(window) => window.record(outcome),
            Recorder::Time(window) => {
                let now = now();
                window.record(outcome, now);
                judge.then(|| {
                    // Two threads that record into different stripes and
                    // then sum must not both miss the other's record (store
                    // buffering), or two concurrent failures that together
                    // reach `minimum_calls` would trip nobody. A SeqCst
                    // fence between record and sum orders them: the later
                    // judge sees both (loom: `time_window_failures_in_two_
                    // stripes_trip_once`). Only the judging path pays it
                    // (an `mfence` on x86), never a plain success.
                    fence(SeqCst);
                    window.counts(now)
                })
            }
        }
    }

    pub(crate) fn counts(&self, now: impl FnOnce() -> u64) -> Counts {
        match self {
            Recorder::Count(window) => window.counts(),
            Recorder::Time(window) => window.counts(now()),
        }
    }

    pub(crate) fn clear(&self) {
        match self {
            Recorder::Count(window) => window.clear(),
            Recorder::Time(window) => window.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_undoes_borrows() {
        // failures -1, calls +1: the borrow from the failure field reaches
        // the slow field.
        let total = packed(1).wrapping_sub(packed(2)).wrapping_add(packed(1));
        let counts = unpack(total);
        assert_eq!(counts.calls, 1);
        assert_eq!(counts.failures, 0, "negative reads as zero");
        assert_eq!(counts.slow_calls, 0);
    }

    #[test]
    fn count_window_evicts_oldest() {
        let window = CountWindow::new(3);
        window.record(Outcome::Failure);
        window.record(Outcome::SlowFailure);
        window.record(Outcome::Success);
        assert_eq!(
            window.counts(),
            Counts {
                calls: 3,
                failures: 2,
                slow_calls: 1,
                slow_failures: 1
            }
        );
        assert!(
            window.record(Outcome::Success).is_some(),
            "evicts a failure"
        );
        assert_eq!(window.counts().failures, 1);
        assert!(
            window.record(Outcome::Success).is_some(),
            "evicts the other"
        );
        assert_eq!(window.counts().failures, 0);
        assert_eq!(
            window.record(Outcome::Success),
            None,
            "success over success"
        );
        window.clear();
        assert_eq!(window.counts(), Counts::default());
    }

    #[test]
    fn time_window_drops_stale_buckets() {
        let window = TimeWindow::new(Duration::from_secs(3), 3);
        let s = |secs: u64| secs * 1_000_000_000;
        window.record(Outcome::Failure, s(0));
        window.record(Outcome::Success, s(1));
        assert_eq!(window.counts(s(2)).calls, 2);
        assert_eq!(window.counts(s(3)).calls, 1, "epoch 0 left the window");
        // Bucket 0 is reused by epoch 3 only when written; until then its
        // stale counters are skipped by tag.
        assert_eq!(window.counts(s(4)).calls, 0);
        window.record(Outcome::Success, s(6));
        assert_eq!(window.counts(s(6)).failures, 0);
        assert_eq!(window.counts(s(6)).calls, 1);
    }

    #[test]
    fn a_cleared_time_window_counts_only_later_calls_even_in_the_same_bucket() {
        let window = TimeWindow::new(Duration::from_secs(10), 10);
        let ms = |ms: u64| ms * 1_000_000;
        window.record(Outcome::Failure, ms(100));
        window.record(Outcome::SlowSuccess, ms(1_100));
        window.clear();
        assert_eq!(window.counts(ms(1_200)), Counts::default());
        window.record(Outcome::Success, ms(1_300)); // the bucket of the slow call
        window.record(Outcome::Failure, ms(2_000));
        assert_eq!(
            window.counts(ms(2_100)),
            Counts {
                calls: 2,
                failures: 1,
                slow_calls: 0,
                slow_failures: 0
            }
        );
        // A second clear, and a call in the bucket of the first.
        window.clear();
        window.record(Outcome::Failure, ms(2_200));
        assert_eq!(window.counts(ms(2_300)).calls, 1);
    }

    #[test]
    fn more_recording_threads_than_stripes_lose_no_call() {
        let threads = crate::striped::stripe_count() * 2 + 3;
        let window = TimeWindow::new(Duration::from_secs(60), 60);
        crate::striped::on_threads_at_once(threads, |t| {
            for i in 0..2_000u64 {
                let outcome = if (i + t as u64) % 4 == 0 {
                    Outcome::SlowFailure
                } else {
                    Outcome::Success
                };
                window.record(outcome, 1_000_000_000);
            }
        });
        let counts = window.counts(1_000_000_000);
        assert_eq!(counts.calls, threads as u64 * 2_000);
        assert_eq!(counts.failures, threads as u64 * 500);
        assert_eq!(counts.slow_calls, counts.failures);
        assert_eq!(counts.slow_failures, counts.failures);
    }

    #[test]
    fn time_window_drops_a_call_older_than_the_bucket_it_lands_in() {
        let window = TimeWindow::new(Duration::from_secs(2), 2);
        let s = |secs: u64| secs * 1_000_000_000;
        window.record(Outcome::Success, s(2));
        window.record(Outcome::Failure, s(0)); // a late clock reading
        assert_eq!(window.counts(s(2)).calls, 1);
        assert_eq!(window.counts(s(2)).failures, 0);
    }
}
