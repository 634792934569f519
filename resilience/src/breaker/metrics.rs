//! A point-in-time view of a breaker.

use super::{state::State, window::Counts};

/// A snapshot of a breaker: its state and what its window holds. Fields are
/// read one after another, not atomically together.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// The state.
    pub state: State,
    /// The generation.
    pub generation: u32,
    /// What the window holds.
    pub counts: Counts,
    /// Failed calls in the window, in percent.
    pub failure_rate: f64,
    /// Slow calls in the window, in percent.
    pub slow_call_rate: f64,
    /// Failures in a row (closed state).
    pub consecutive_failures: u32,
    /// Trips since the last healthy close (the backoff step).
    pub consecutive_trips: u32,
    /// Calls refused since the breaker was built.
    pub rejected: u64,
    /// Half-open probes in flight.
    pub half_open_in_flight: u32,
    /// Half-open probes that succeeded in this generation.
    pub half_open_successes: u32,
}
