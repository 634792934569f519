//! Events for listeners: state changes, outcomes, rejections.
//!
//! Listeners are fixed when the breaker is built (they live in its
//! [`Config`](super::Config)), so the per-call cost with no listener is one
//! length check of a slice the breaker owns: no atomic, no allocation.
//! Listeners run on the thread that caused the event, after the state change
//! is visible; they should be quick and must not call back into the breaker's
//! state-changing methods (that would recurse).

use std::{sync::Arc, time::Duration};

use super::{permit::RejectReason, state::State, window::Outcome};

/// A callback for breaker events.
pub type Listener = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Something a breaker did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// The name of the breaker.
    pub breaker: &'a str,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// The breaker moved from one state to another.
    StateChanged {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// The generation entered.
        generation: u32,
        /// Why.
        cause: Cause,
    },
    /// A call's outcome was recorded (in a window or as a probe).
    Recorded {
        /// How the call ended.
        outcome: Outcome,
        /// How long it took, when the breaker times calls.
        elapsed: Option<Duration>,
    },
    /// A call's outcome was ignored: an ignored error, `Permit::ignore`, or a
    /// permit dropped without a verdict.
    Ignored,
    /// A verdict arrived for a generation that has ended; it changed
    /// nothing.
    Stale {
        /// The generation the permit was issued in.
        issued: u32,
        /// The generation it arrived in.
        current: u32,
    },
    /// A call was refused.
    Rejected(RejectReason),
}

/// Why the state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The failure rate reached its threshold.
    FailureRate,
    /// The slow-call rate reached its threshold.
    SlowCallRate,
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// The open duration elapsed; the first caller after it probes.
    OpenElapsed,
    /// A half-open probe failed (or was slow).
    ProbeFailed,
    /// Enough half-open probes succeeded.
    ProbesSucceeded,
    /// Half-open probes made no progress within the maximum wait; they were
    /// abandoned.
    ProbesAbandoned,
    /// A manual change (force open, disable, metrics-only, reset).
    Manual,
}
