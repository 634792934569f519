//! The pipeline's one error type.

use std::{fmt, time::Duration};

use crate::env::Interrupted;

/// A layer of the pipeline, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// The overall timeout.
    Timeout,
    /// The fallback.
    Fallback,
    /// Hedging.
    Hedge,
    /// Retry.
    Retry,
    /// The circuit breaker.
    Breaker,
    /// The adaptive concurrency limit.
    Limit,
    /// The bulkhead.
    Bulkhead,
    /// The rate limiter.
    RateLimit,
}

impl Layer {
    /// Every layer, outermost first.
    pub const ALL: [Layer; 8] = [
        Layer::Timeout,
        Layer::Fallback,
        Layer::Hedge,
        Layer::Retry,
        Layer::Breaker,
        Layer::Limit,
        Layer::Bulkhead,
        Layer::RateLimit,
    ];

    /// A short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Timeout => "timeout",
            Layer::Fallback => "fallback",
            Layer::Hedge => "hedge",
            Layer::Retry => "retry",
            Layer::Breaker => "breaker",
            Layer::Limit => "limit",
            Layer::Bulkhead => "bulkhead",
            Layer::RateLimit => "rate limit",
        }
    }

    pub(crate) fn index(self) -> usize {
        Layer::ALL.iter().position(|l| *l == self).unwrap_or(0)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a layer refused or cut a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The overall timeout passed.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// The breaker is open (or its half-open probes are taken).
    BreakerOpen {
        /// When it may admit again, if known.
        retry_after: Option<Duration>,
    },
    /// The adaptive limit is reached: the call is shed at once.
    OverLimit {
        /// The limit at the time.
        limit: u32,
    },
    /// Every slot is taken and the wait queue is full.
    Full,
    /// Waited the longest allowed without a slot or token.
    WaitTooLong,
    /// Over the rate.
    RateExceeded {
        /// When a token frees up, if known.
        retry_after: Option<Duration>,
    },
    /// No attempt could finish before the caller's deadline.
    DeadlineTooClose {
        /// What was left of the deadline.
        remaining: Duration,
    },
    /// The caller was cancelled or ran out of time while a layer made it
    /// wait (reported as [`PolicyError::Interrupted`]).
    Interrupted(Interrupted),
    /// Anything else a limiter reports, in its own words.
    Other(&'static str),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::TimedOut { after } => write!(f, "timed out after {after:?}"),
            Reason::BreakerOpen {
                retry_after: Some(d),
            } => write!(f, "circuit open, retry after {d:?}"),
            Reason::BreakerOpen { retry_after: None } => f.write_str("circuit open"),
            Reason::OverLimit { limit } => write!(f, "over the concurrency limit of {limit}"),
            Reason::Full => f.write_str("full"),
            Reason::WaitTooLong => f.write_str("waited too long"),
            Reason::RateExceeded {
                retry_after: Some(d),
            } => write!(f, "over the rate, retry after {d:?}"),
            Reason::RateExceeded { retry_after: None } => f.write_str("over the rate"),
            Reason::DeadlineTooClose { remaining } => {
                write!(f, "only {remaining:?} left before the deadline")
            }
            Reason::Interrupted(i) => write!(f, "{i}"),
            Reason::Other(why) => f.write_str(why),
        }
    }
}

/// The error of a pipeline call: the downstream's own error, a layer that
/// refused (and why), or the caller's own cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError<E> {
    /// The call was made and failed with its own error (after any retries).
    Call(E),
    /// A layer refused the call, or cut it.
    Refused {
        /// Which layer.
        layer: Layer,
        /// Why.
        reason: Reason,
    },
    /// The caller was cancelled or ran out of time while the pipeline
    /// waited (its doing, not the downstream's: no statistics count it).
    Interrupted(Interrupted),
}

impl<E> PolicyError<E> {
    /// The layer that refused, if one did.
    pub fn layer(&self) -> Option<Layer> {
        match self {
            PolicyError::Refused { layer, .. } => Some(*layer),
            _ => None,
        }
    }

    /// The downstream's error, if the call failed with one.
    pub fn call_error(&self) -> Option<&E> {
        match self {
            PolicyError::Call(e) => Some(e),
            _ => None,
        }
    }

    /// `Refused { layer, reason }`, or `Interrupted` for an interruption.
    pub(crate) fn refused(layer: Layer, reason: Reason) -> Self {
        match reason {
            Reason::Interrupted(i) => PolicyError::Interrupted(i),
            reason => PolicyError::Refused { layer, reason },
        }
    }
}

impl<E: fmt::Display> fmt::Display for PolicyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Call(e) => write!(f, "call failed: {e}"),
            PolicyError::Refused { layer, reason } => write!(f, "{layer} refused: {reason}"),
            PolicyError::Interrupted(i) => write!(f, "interrupted: {i}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PolicyError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Call(e) => Some(e),
            PolicyError::Interrupted(i) => Some(i),
            PolicyError::Refused { .. } => None,
        }
    }
}
