//! Limits: how many calls may run at once ([`Bulkhead`], [`Adaptive`]) and
//! how many may start per unit of time ([`Gcra`], [`WarmUpBucket`],
//! [`KeyedGcra`]).
//!
//! Every limiter is built by a builder whose `build` returns a
//! [`ConfigError`] instead of panicking, reports [`Event`]s to listeners
//! fixed in its configuration (with none, the cost is a slice-length check
//! on the refusal path only), and has a `metrics()` snapshot.
//!
//! Runtime-agnostic cores never wait: they admit or refuse at once
//! (`try_acquire`), or, for the rate limiters, *reserve* a start time and
//! say how long to wait. With the `weft` feature the waits are weft await
//! points: they check the caller's scope first, refuse at once a wait that
//! cannot end before the scope's deadline, and give back what they took
//! when cancelled. A caller cancelled before asking takes nothing (see
//! [`crate::caller`]).

mod adaptive;
mod bulkhead;
mod config;
mod keyed;
mod rate;
mod warm_up;

use std::{fmt, sync::Arc, time::Duration};

pub use self::{
    adaptive::{
        Adaptive, AdaptiveBuilder, AdaptiveError, AdaptiveMetrics, AdaptivePermit, Aimd, Algorithm,
        Gradient2, Vegas, MAX_LIMIT,
    },
    bulkhead::{
        Bulkhead, BulkheadBuilder, BulkheadError, BulkheadMetrics, BulkheadPermit,
        OwnedBulkheadPermit,
    },
    config::ConfigError,
    keyed::{KeyedGcra, KeyedGcraBuilder, KeyedMetrics},
    rate::{Gcra, GcraBuilder, GcraMetrics, RateError, Reservation},
    warm_up::{WarmUpBucket, WarmUpBuilder, WarmUpMetrics},
};

/// A callback for a limiter's [`Event`]s.
pub type Listener = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Something a limiter did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// The limiter's name.
    pub limiter: &'a str,
    /// What happened.
    pub kind: EventKind,
}

/// What a limiter did.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A call was refused.
    Rejected(Refusal),
    /// A waiting caller left because its scope was cancelled; what it had
    /// taken was given back.
    WaitCancelled,
    /// An adaptive limit moved.
    LimitChanged {
        /// The limit before.
        from: u32,
        /// The limit after.
        to: u32,
    },
    /// A keyed limiter forgot idle keys to make room.
    Evicted {
        /// How many keys.
        keys: usize,
    },
}

/// Why a limiter refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// Over the rate.
    RateExceeded,
    /// The wait for a token or a slot would be longer than the maximum.
    WaitTooLong,
    /// The wait could not end before the caller's deadline.
    DeadlineTooSoon,
    /// Every slot is taken and the wait queue is full (or waiting is off).
    Full,
    /// An adaptive limit's current limit is reached (load shed).
    OverLimit,
    /// A keyed limiter holds its maximum of keys and none is idle.
    TooManyKeys,
}

/// Calls every listener with `kind`.
#[inline]
pub(crate) fn emit(listeners: &[Listener], limiter: &str, kind: EventKind) {
    if listeners.is_empty() {
        return;
    }
    let event = Event { limiter, kind };
    for listener in listeners {
        listener(&event);
    }
}

/// Listener lists print as their length.
pub(crate) struct Listeners(pub(crate) Arc<[Listener]>);

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} listeners", self.0.len())
    }
}

impl Clone for Listeners {
    fn clone(&self) -> Self {
        Listeners(Arc::clone(&self.0))
    }
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners(Arc::from(Vec::new()))
    }
}

impl Listeners {
    pub(crate) fn push(&mut self, listener: Listener) {
        let mut all = self.0.to_vec();
        all.push(listener);
        self.0 = Arc::from(all);
    }
}

/// Nanoseconds of a duration, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Keeps a hot atomic on its own cache line(s) (128 bytes: adjacent-line
/// prefetching pairs 64-byte lines on x86).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
