//! Per-worker counters. Each is written only by its worker (a plain load and
//! store, no read-modify-write on the hot path) and read by snapshots; they
//! are statistics, not synchronisation, so they use `std` atomics directly
//! even under loom.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    pub(crate) budget_forced_yields: Counter,
    /// A gauge, set by the worker when it parks and wakes.
    pub(crate) alloc_cache_bytes: Counter,
}

impl Counter {
    /// Single-writer set (for gauges).
    pub(crate) fn set(&self, value: u64) {
        self.0.store(value, Relaxed);
    }
}
