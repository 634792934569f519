//! Per-worker counters. Each is written only by its worker (a plain load and
//! store, no read-modify-write on the hot path) and read by snapshots; they
//! are statistics, not synchronisation, so they use `std` atomics directly
//! even under loom.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use super::SchedConfig;
use crate::{runtime::histogram::Histogram, runtime::ticks, task::Notified};

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Single-writer increment.
    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed) + n, Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct WorkerMetrics {
    pub(crate) polls: Counter,
    pub(crate) steals: Counter,
    pub(crate) steal_attempts: Counter,
    pub(crate) parks: Counter,
    pub(crate) lifo_hits: Counter,
    pub(crate) injector_pops: Counter,
    pub(crate) local_queue_overflows: Counter,
    pub(crate) io_handoffs: Counter,
    pub(crate) long_poll_wakes: Counter,
    pub(crate) budget_forced_yields: Counter,
    pub(crate) park_watch_hits: Counter,
    /// A gauge, set by the worker when it parks and wakes.
    pub(crate) alloc_cache_bytes: Counter,
    /// Sampled polls (see [`sample_schedule`]): how long each ran, and how
    /// long its task waited from being queued to being polled.
    pub(crate) poll_duration: Histogram,
    pub(crate) schedule_latency: Histogram,
}

/// Picks one schedule in `histogram_interval` for the histograms: a
/// countdown per thread (each worker has one, other threads one in their
/// context).
pub(crate) struct ScheduleSampler(Cell<u32>);

impl ScheduleSampler {
    pub(crate) const fn new() -> ScheduleSampler {
        // The first schedule is sampled.
        ScheduleSampler(Cell::new(0))
    }
}

/// Stamps `task` with the time if this schedule is sampled: one in every
/// `histogram_interval` schedules `sampler` sees (none when the interval
/// is 0, histograms off). The worker that polls a stamped task times that
/// poll ([`WorkerMetrics::run_timed`]); the others cost it one load of the
/// stamp.
///
/// Sampling keeps the clock off the common path: a clock read costs 12–20
/// ns here (rdtsc on a VM), and the cheapest scheduler workloads spend
/// ~100 ns per task, so timing every poll (three reads: the stamp, the
/// poll's start and end, and two histogram updates) costs them 6–31% more
/// instructions plus the reads; see docs/BENCHMARKS.md for what the
/// default of one in 128 costs.
///
/// The countdown alone is on the path of every schedule (a load, a
/// decrement, a store): the interval is read only when it runs out, and
/// with the histograms off the countdown restarts from `u32::MAX`.
#[inline]
pub(crate) fn sample_schedule(config: &SchedConfig, sampler: &ScheduleSampler, task: &Notified) {
    let left = sampler.0.get();
    if left > 1 {
        sampler.0.set(left - 1);
    } else {
        restart_sampler(config, sampler, task);
    }
}

#[cold]
#[inline(never)]
fn restart_sampler(config: &SchedConfig, sampler: &ScheduleSampler, task: &Notified) {
    match config.histogram_interval {
        0 => sampler.0.set(u32::MAX),
        interval => {
            sampler.0.set(interval);
            task.header().set_woken_at(ticks::stamp());
        }
    }
}

impl WorkerMetrics {
    /// Polls a task whose schedule was sampled (`woken_at` its stamp),
    /// recording its schedule latency and poll duration.
    #[inline(never)]
    pub(crate) fn run_timed(&self, task: Notified, woken_at: u32) {
        let start = ticks::now();
        self.schedule_latency
            .record(ticks::ticks_since(woken_at, start));
        task.run();
        self.poll_duration
            .record(ticks::now().saturating_sub(start));
    }
}

impl Counter {
    /// Single-writer set (for gauges).
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value, Relaxed);
    }
}
