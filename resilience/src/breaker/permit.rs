//! Tickets: a [`Permit`] is the right to make one call and the duty to
//! report how it went. It is stamped with the generation it was issued in;
//! its verdict counts only while that generation lasts. A permit dropped
//! without a verdict (a cancelled call) counts as ignored, which returns its
//! half-open slot.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use super::{Breaker, Classify, Verdict};
use crate::clock::SharedNow;

/// What a permit remembers: its generation and, if the breaker times calls,
/// when it was issued (nanoseconds on the breaker's clock).
///
/// Sixteen bytes, not the twenty-four of a `u32` beside an `Option<u64>`:
/// "not timed" is the one reading no clock gives (`u64::MAX`, 584 years),
/// so a ticket moves as two words and a permit as three.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    started: u64,
    generation: u32,
}

/// The `started` of a ticket whose call is not timed.
const NOT_TIMED: u64 = u64::MAX;

impl Ticket {
    #[inline(always)]
    pub(crate) fn new(generation: u32, started: Option<u64>) -> Ticket {
        Ticket {
            // A reading of `u64::MAX` (saturated) is kept one short of it.
            started: started.map_or(NOT_TIMED, |at| at.min(NOT_TIMED - 1)),
            generation,
        }
    }

    #[inline(always)]
    pub(crate) fn generation(self) -> u32 {
        self.generation
    }

    #[inline(always)]
    pub(crate) fn started(self) -> Option<u64> {
        (self.started != NOT_TIMED).then_some(self.started)
    }
}

/// Permission to make one call, borrowed from a [`Breaker`].
///
/// Report the outcome with [`success`](Permit::success),
/// [`failure`](Permit::failure), [`ignore`](Permit::ignore) or
/// [`record`](Permit::record); dropping it reports nothing (ignored).
#[must_use = "a permit reports the call's outcome; dropping it ignores the call"]
pub struct Permit<'a, C> {
    breaker: &'a Breaker<C>,
    ticket: Ticket,
}

/// A [`Permit`] that owns a handle to its breaker (`'static`, for spawned
/// tasks).
#[must_use = "a permit reports the call's outcome; dropping it ignores the call"]
pub struct OwnedPermit<C> {
    breaker: Arc<Breaker<C>>,
    ticket: Ticket,
    settled: bool,
}

macro_rules! verdicts {
    () => {
        /// The generation this permit was issued in.
        pub fn generation(&self) -> u32 {
            self.ticket.generation()
        }

        /// The call succeeded.
        pub fn success(self) {
            self.settle(Verdict::Success);
        }

        /// The call failed.
        pub fn failure(self) {
            self.settle(Verdict::Failure);
        }

        /// The call's outcome says nothing about the callee; not recorded.
        pub fn ignore(self) {
            self.settle(Verdict::Ignore);
        }

        /// Reports `result` as the breaker's classifier judges it.
        pub fn record<T, E>(self, result: &Result<T, E>)
        where
            C: Classify<T, E>,
        {
            let verdict = self.breaker.classifier.classify(result);
            self.settle(verdict);
        }
    };
}

impl<'a, C> Permit<'a, C> {
    pub(crate) fn new(breaker: &'a Breaker<C>, ticket: Ticket) -> Self {
        Permit { breaker, ticket }
    }

    verdicts!();

    #[cfg(test)]
    pub(crate) fn ticket_started(&self) -> Option<Duration> {
        self.ticket.started().map(Duration::from_nanos)
    }

    fn settle(self, verdict: Verdict) {
        let (breaker, ticket) = (self.breaker, self.ticket);
        // Settled here, so the drop below must not settle again; the permit
        // owns nothing that needs dropping (a reference and plain data).
        std::mem::forget(self);
        breaker.settle(ticket, verdict);
    }

    /// Reports `verdict`, timing the call from the pipeline's shared clock
    /// reading at its end.
    #[inline]
    pub(crate) fn settle_at(self, verdict: Verdict, now: &SharedNow) {
        let (breaker, ticket) = (self.breaker, self.ticket);
        // As in `settle`.
        std::mem::forget(self);
        breaker.settle_with(ticket, verdict, Some(now));
    }
}

impl<C> Drop for Permit<'_, C> {
    fn drop(&mut self) {
        self.breaker.settle(self.ticket, Verdict::Ignore);
    }
}

impl<C> OwnedPermit<C> {
    pub(crate) fn new(breaker: Arc<Breaker<C>>, ticket: Ticket) -> Self {
        OwnedPermit {
            breaker,
            ticket,
            settled: false,
        }
    }

    verdicts!();

    fn settle(mut self, verdict: Verdict) {
        self.settled = true;
        self.breaker.settle(self.ticket, verdict);
    }
}

impl<C> Drop for OwnedPermit<C> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.ticket, Verdict::Ignore);
        }
    }
}

impl<C> fmt::Debug for Permit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name())
            .field("generation", &self.ticket.generation)
            .finish()
    }
}

impl<C> fmt::Debug for OwnedPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("breaker", &self.breaker.name())
            .field("generation", &self.ticket.generation)
            .finish()
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The breaker tripped and its open duration has not elapsed.
    Open,
    /// The breaker was forced open by hand.
    ForcedOpen,
    /// The breaker is half-open and every probe slot is taken.
    HalfOpenFull,
    /// The caller's own scope is cancelled or past its deadline (checked
    /// first, with the `weft` feature): nothing was taken, nothing counted.
    Cancelled,
}

/// A refused call: why, and when the breaker will next admit a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    reason: RejectReason,
    /// (now, open until) on the breaker's clock, when known.
    open: Option<(Duration, Duration)>,
}

impl Rejected {
    pub(crate) fn new(reason: RejectReason, open: Option<(Duration, Duration)>) -> Rejected {
        Rejected { reason, open }
    }

    /// Why.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// How long from the rejection until the breaker admits a probe, if
    /// that is known: `Some` for [`RejectReason::Open`]; `None` for a forced
    /// open breaker (until someone changes it) and a full half-open one
    /// (until a probe settles).
    pub fn retry_after(&self) -> Option<Duration> {
        self.open.map(|(now, until)| until.saturating_sub(now))
    }

    /// The instant, on the breaker's clock, when it admits a probe (see
    /// [`retry_after`](Self::retry_after)).
    pub fn retry_at(&self) -> Option<Duration> {
        self.open.map(|(_, until)| until)
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reason, self.retry_after()) {
            (RejectReason::Open, Some(after)) => {
                write!(f, "circuit breaker open; retry after {after:?}")
            }
            (RejectReason::Open, None) => f.write_str("circuit breaker open"),
            (RejectReason::ForcedOpen, _) => f.write_str("circuit breaker forced open"),
            (RejectReason::HalfOpenFull, _) => {
                f.write_str("circuit breaker half-open; all probe slots taken")
            }
            (RejectReason::Cancelled, _) => {
                f.write_str("caller cancelled before the circuit breaker admitted it")
            }
        }
    }
}

impl std::error::Error for Rejected {}

/// The error of [`Breaker::call`]: refused, or the call's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// The breaker refused the call; it was not made.
    Rejected(Rejected),
    /// The call was made and returned this error.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(rejected) => rejected.fmt(f),
            CallError::Failed(error) => error.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Rejected(rejected) => Some(rejected),
            CallError::Failed(error) => Some(error),
        }
    }
}

impl<C> Breaker<C> {
    /// Makes the call `f` builds if the breaker admits it, and records its
    /// result. Runtime-agnostic: any executor can poll the future. If the
    /// future is dropped before it finishes (a cancelled call), the call is
    /// ignored.
    pub async fn call<F, Fut, T, E>(&self, f: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        let permit = self.acquire().map_err(CallError::Rejected)?;
        let result = f().await;
        permit.record(&result);
        result.map_err(CallError::Failed)
    }

    /// [`call`](Self::call) for a blocking function.
    pub fn call_sync<F, T, E>(&self, f: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Result<T, E>,
        C: Classify<T, E>,
    {
        let permit = self.acquire().map_err(CallError::Rejected)?;
        let result = f();
        permit.record(&result);
        result.map_err(CallError::Failed)
    }
}
