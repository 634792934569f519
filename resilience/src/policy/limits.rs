//! The crate's limiters as pipeline layers: [`Adaptive`] (shed at once),
//! [`Bulkhead`] (a slot, waiting in its queue if it has one) and [`Gcra`]
//! (a token now, or refused).
//!
//! The adaptive limit learns from the verdict: a success or a call cut by
//! the caller's deadline is a latency sample, a failure a drop, a call the
//! caller cancelled nothing. A bulkhead without a queue costs nothing per
//! call; one with a queue is acquired through its `async` wait, which the
//! adapter boxes (one allocation per call: the wait's future type has no
//! name to store unboxed).

use std::{
    future::{ready, Future, Ready},
    pin::Pin,
    task::{Context, Poll},
};

use super::{Admission, Layer, Reason, Verdict};
use crate::{
    caller::CallerEnd,
    clock::SharedNow,
    env::Interrupted,
    limit::{
        Adaptive, AdaptiveError, AdaptivePermit, Bulkhead, BulkheadError, BulkheadPermit, Gcra,
        RateError,
    },
};

fn caller(end: CallerEnd) -> Reason {
    Reason::Interrupted(match end {
        CallerEnd::Cancelled => Interrupted::Cancelled,
        CallerEnd::DeadlineExceeded => Interrupted::Deadline,
    })
}

fn adaptive_reason(e: AdaptiveError) -> Reason {
    match e {
        AdaptiveError::OverLimit { limit } => Reason::OverLimit { limit },
        AdaptiveError::Cancelled(end) => caller(end),
    }
}

impl Admission for Adaptive {
    type Permit<'a> = AdaptivePermit<'a>;
    type Acquire<'a> = Ready<Result<AdaptivePermit<'a>, Reason>>;

    fn layer(&self) -> Layer {
        Layer::Limit
    }

    #[inline]
    fn acquire(&self) -> Self::Acquire<'_> {
        ready(self.try_acquire().map_err(adaptive_reason))
    }

    #[inline]
    fn acquire_in_live_scope(&self, now: &SharedNow) -> Self::Acquire<'_> {
        ready(self.try_acquire_in_live_scope(now).map_err(adaptive_reason))
    }

    #[inline]
    fn try_admit_in_live_scope(
        &self,
        now: &SharedNow,
    ) -> Option<Result<AdaptivePermit<'_>, Reason>> {
        Some(self.try_acquire_in_live_scope(now).map_err(adaptive_reason))
    }

    #[inline]
    fn try_admit(&self) -> Option<Result<AdaptivePermit<'_>, Reason>> {
        Some(self.try_acquire().map_err(adaptive_reason))
    }

    #[inline]
    fn may_wait(&self) -> bool {
        false
    }

    #[inline]
    fn settle(&self, permit: AdaptivePermit<'_>, verdict: Verdict) {
        match verdict {
            Verdict::Success | Verdict::Slow => permit.success(),
            Verdict::Failure => permit.dropped(),
            Verdict::Ignored => permit.ignore(),
        }
    }

    #[inline]
    fn settle_at(&self, permit: AdaptivePermit<'_>, verdict: Verdict, now: &SharedNow) {
        permit.settle_at(
            match verdict {
                Verdict::Success | Verdict::Slow => Some(false),
                Verdict::Failure => Some(true),
                Verdict::Ignored => None,
            },
            now,
        );
    }
}

fn bulkhead_reason(e: BulkheadError) -> Reason {
    match e {
        BulkheadError::Full => Reason::Full,
        BulkheadError::MaxWait => Reason::WaitTooLong,
        BulkheadError::DeadlineExceeded => Reason::Interrupted(Interrupted::Deadline),
        BulkheadError::Cancelled => Reason::Interrupted(Interrupted::Cancelled),
    }
}

/// A bulkhead's admission: at once without a queue, its boxed wait with one.
#[must_use = "futures do nothing unless awaited"]
pub enum BulkheadAcquire<'a> {
    /// Decided without waiting.
    Now(Option<Result<BulkheadPermit<'a>, Reason>>),
    /// Waiting in the bulkhead's queue.
    #[cfg(feature = "weft")]
    Queued(Pin<Box<dyn Future<Output = Result<BulkheadPermit<'a>, BulkheadError>> + Send + 'a>>),
}

impl std::fmt::Debug for BulkheadAcquire<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BulkheadAcquire")
    }
}

impl<'a> Future for BulkheadAcquire<'a> {
    type Output = Result<BulkheadPermit<'a>, Reason>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _ = &cx;
        match self.get_mut() {
            BulkheadAcquire::Now(out) => Poll::Ready(out.take().expect("polled after completion")),
            #[cfg(feature = "weft")]
            BulkheadAcquire::Queued(wait) => {
                wait.as_mut().poll(cx).map(|r| r.map_err(bulkhead_reason))
            }
        }
    }
}

impl Admission for Bulkhead {
    type Permit<'a> = BulkheadPermit<'a>;
    type Acquire<'a> = BulkheadAcquire<'a>;

    fn layer(&self) -> Layer {
        Layer::Bulkhead
    }

    #[inline]
    fn acquire(&self) -> BulkheadAcquire<'_> {
        #[cfg(feature = "weft")]
        if self.queues() {
            return BulkheadAcquire::Queued(Box::pin(Bulkhead::acquire(self)));
        }
        BulkheadAcquire::Now(Some(self.try_acquire().map_err(bulkhead_reason)))
    }

    #[inline]
    fn acquire_in_live_scope(&self, _now: &SharedNow) -> BulkheadAcquire<'_> {
        // The queue's wait is an await point: it checks for itself.
        #[cfg(feature = "weft")]
        if self.queues() {
            return BulkheadAcquire::Queued(Box::pin(Bulkhead::acquire(self)));
        }
        BulkheadAcquire::Now(Some(
            self.try_acquire_in_live_scope().map_err(bulkhead_reason),
        ))
    }

    #[inline]
    fn try_admit_in_live_scope(
        &self,
        _now: &SharedNow,
    ) -> Option<Result<BulkheadPermit<'_>, Reason>> {
        if self.may_wait() {
            return None;
        }
        Some(self.try_acquire_in_live_scope().map_err(bulkhead_reason))
    }

    #[inline]
    fn try_admit(&self) -> Option<Result<BulkheadPermit<'_>, Reason>> {
        if self.may_wait() {
            return None;
        }
        Some(self.try_acquire().map_err(bulkhead_reason))
    }

    #[inline]
    fn may_wait(&self) -> bool {
        #[cfg(feature = "weft")]
        return self.queues();
        #[cfg(not(feature = "weft"))]
        false
    }
}

impl Admission for Gcra {
    type Permit<'a> = ();
    type Acquire<'a> = Ready<Result<(), Reason>>;

    fn layer(&self) -> Layer {
        Layer::RateLimit
    }

    #[inline]
    fn acquire(&self) -> Self::Acquire<'_> {
        ready(self.try_acquire().map_err(rate_reason))
    }

    #[inline]
    fn try_admit_in_live_scope(&self, _now: &SharedNow) -> Option<Result<(), Reason>> {
        Some(self.try_acquire().map_err(rate_reason))
    }

    #[inline]
    fn try_admit(&self) -> Option<Result<(), Reason>> {
        Some(self.try_acquire().map_err(rate_reason))
    }

    #[inline]
    fn may_wait(&self) -> bool {
        false
    }
}

fn rate_reason(error: RateError) -> Reason {
    match error {
        RateError::Exhausted { retry_after } => Reason::RateExceeded {
            retry_after: Some(retry_after),
        },
        RateError::WaitTooLong { .. } => Reason::WaitTooLong,
        RateError::DeadlineTooSoon { remaining, .. } => Reason::DeadlineTooClose { remaining },
        _ => Reason::RateExceeded { retry_after: None },
    }
}
