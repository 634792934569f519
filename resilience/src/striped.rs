//! Counters striped by owning thread: a count bumped on every call without
//! a read-modify-write.
//!
//! A `fetch_add` on x86 is a locked instruction: it drains the store buffer
//! before it completes, so on a path that has just written a future's state
//! it costs tens of cycles even on a line no other core touches. The
//! policies' statistics (calls, outcomes, retries) were several of those
//! per call. Here each live thread whose id in the process-wide registry
//! (the one the pools' shards use: unique among live threads, dense, reused
//! after a thread exits, the registry's mutex ordering an exiting owner's
//! last write before the next owner's first) is below the stripe count owns
//! a row of counters and bumps them with a plain load and store: exact,
//! because nobody else writes the row. Threads past the stripe count share
//! one last row, bumped by `fetch_add`. A read sums the rows: exact once the
//! writers are done, a few counts stale while they run, as any snapshot of
//! running counters is.
//!
//! The breaker's time window stripes its buckets on the same terms
//! (`breaker/window.rs`). loom model: `loom-tests/tests/striped_counters.rs`
//! (two owned rows and two threads sharing the last: every call counted
//! once; it fails if the shared row is bumped with a load and a store).

use std::fmt;

use crate::limit::CachePadded;
use crate::pool::{thread_id, thread_id_hint};
use crate::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How many rows are owned: the machine's parallelism rounded up to a power
/// of two, at most 16 (2 under loom, so a third model thread takes the
/// shared row). Thread ids are dense over the live threads that use a pool
/// or a striped counter, so this is "threads counting at once" on a machine
/// whose busy threads are its workers.
pub(crate) fn stripe_count() -> usize {
    #[cfg(weft_loom)]
    {
        2
    }
    #[cfg(not(weft_loom))]
    {
        static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *COUNT.get_or_init(|| {
            std::thread::available_parallelism()
                .map_or(4, |n| n.get())
                .clamp(1, 16)
                .next_power_of_two()
        })
    }
}

/// `stripe_count()` owned rows and then the shared one, each made by
/// `make` and on cache lines of its own: the layout every striped structure
/// here indexes with [`row`] (owned row `i`, shared row `len − 1`).
pub(crate) fn rows<T>(mut make: impl FnMut() -> T) -> Box<[CachePadded<T>]> {
    (0..=stripe_count()).map(|_| CachePadded(make())).collect()
}

/// Where the calling thread counts: its own row, or the shared one.
pub(crate) enum Row {
    /// The thread owns row `.0`: plain loads and stores.
    Owned(usize),
    /// The thread has no row of its own (its id is past `owned`, or it is
    /// being torn down): the shared row, by read-modify-write.
    Shared,
}

/// The calling thread's row among `owned` owned rows. The cached id is one
/// TLS load; a thread not yet registered registers here, once.
#[inline(always)]
pub(crate) fn row(owned: usize) -> Row {
    let id = thread_id_hint() as usize;
    if id < owned {
        Row::Owned(id)
    } else {
        registered_row(owned)
    }
}

#[inline(never)]
fn registered_row(owned: usize) -> Row {
    match thread_id().map(|id| id as usize) {
        Some(id) if id < owned => Row::Owned(id),
        _ => Row::Shared,
    }
}

/// Adds one to a counter only the calling thread writes.
#[inline(always)]
pub(crate) fn bump_owned(counter: &AtomicU64) {
    // Relaxed: statistics; one writer makes the load and store exact.
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}

/// `N` counters, striped by owning thread (see the module docs).
pub(crate) struct StripedCounters<const N: usize> {
    /// `stripe_count()` owned rows, then the shared one; each on lines of
    /// its own.
    rows: Box<[CachePadded<[AtomicU64; N]>]>,
}

impl<const N: usize> StripedCounters<N> {
    pub(crate) fn new() -> Self {
        StripedCounters {
            rows: rows(|| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Adds one to counter `which`.
    #[inline(always)]
    pub(crate) fn bump(&self, which: usize) {
        let owned = self.rows.len() - 1;
        match row(owned) {
            Row::Owned(id) => bump_owned(&self.rows[id].0[which]),
            Row::Shared => {
                self.rows[owned].0[which].fetch_add(1, Relaxed);
            }
        }
    }

    /// Counter `which`, summed over the rows.
    pub(crate) fn get(&self, which: usize) -> u64 {
        self.rows.iter().fold(0u64, |sum, row| {
            sum.wrapping_add(row.0[which].load(Relaxed))
        })
    }
}

impl<const N: usize> fmt::Debug for StripedCounters<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries((0..N).map(|i| self.get(i))).finish()
    }
}

/// Runs `body(t)` on `threads` threads that are all alive at once (so no
/// registry id is reused among them: the first `stripe_count()` own a row,
/// the rest share the last one), for the tests of every striped structure.
#[cfg(all(test, not(weft_loom)))]
pub(crate) fn on_threads_at_once(threads: usize, body: impl Fn(usize) + Sync) {
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (body, barrier) = (&body, &barrier);
            scope.spawn(move || {
                barrier.wait();
                body(t);
                barrier.wait();
            });
        }
    });
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use super::*;

    #[test]
    fn more_counting_threads_than_rows_lose_no_count() {
        let threads = stripe_count() * 2 + 3;
        let counters = StripedCounters::<3>::new();
        on_threads_at_once(threads, |t| {
            for i in 0..5_000 {
                counters.bump((t + i) % 3);
            }
        });
        for which in 0..3 {
            let expected = (0..threads)
                .flat_map(|t| (0..5_000).map(move |i| (t + i) % 3))
                .filter(|&w| w == which)
                .count() as u64;
            assert_eq!(counters.get(which), expected, "{counters:?}");
        }
    }

    #[test]
    fn a_row_passes_to_the_next_thread_with_its_counts() {
        let counters = StripedCounters::<1>::new();
        for _ in 0..8 {
            // Each thread exits before the next starts, so they reuse ids
            // (and rows); no count is lost across the hand-over.
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        counters.bump(0);
                    }
                });
            });
        }
        assert_eq!(counters.get(0), 8_000);
    }
}
