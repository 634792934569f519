//! A point-in-time view of a breaker.

use std::{fmt, sync::Arc, time::Duration};

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

/// A breaker's state as a dashboard shows it: its name, its [`Metrics`] and
/// when it admits a probe again. `Display` prints one line:
///
/// ```text
/// inventory  open  gen 3  calls 100  failures 62.0%  slow 0.0%  rejected 17  retry in 41.2s
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The breaker's name.
    pub name: Arc<str>,
    /// Its metrics.
    pub metrics: Metrics,
    /// In `Open`, how long until it admits a probe (`None` in other states,
    /// or while the winner of the trip has not published the time yet).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.metrics;
        write!(
            f,
            "{}  {}  gen {}  calls {}  failures {:.1}%  slow {:.1}%  rejected {}",
            self.name,
            m.state,
            m.generation,
            m.counts.calls,
            m.failure_rate,
            m.slow_call_rate,
            m.rejected
        )?;
        if m.state == State::HalfOpen {
            write!(
                f,
                "  probes {} in flight, {} ok",
                m.half_open_in_flight, m.half_open_successes
            )?;
        }
        if let Some(after) = self.retry_after {
            write!(f, "  retry in {:.1}s", after.as_secs_f64())?;
        }
        Ok(())
    }
}
