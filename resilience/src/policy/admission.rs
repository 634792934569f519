//! The admission layers' interface: adaptive limit, bulkhead, rate limit.
//!
//! The pipeline composes any limiter through [`Admission`]: an `acquire`
//! that admits (a permit), refuses (a [`Reason`]), or waits, and a `settle`
//! that reports how the admitted call went (an adaptive limit learns from
//! it). [`Unlimited`] is the empty layer.

use std::future::{ready, Future, Ready};

use super::{Layer, Reason};
use crate::clock::SharedNow;

/// How an admitted call went, for the limiter that admitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The call succeeded (a latency sample).
    Success,
    /// The call failed in a way that says the downstream is overloaded or
    /// broken.
    Failure,
    /// The caller's deadline cut the call: as slow as the caller could
    /// wait, not a failure (a latency sample, a slow call; see
    /// [`crate::caller`]).
    Slow,
    /// The outcome says nothing about the downstream (the caller was
    /// cancelled): release the slot, learn nothing.
    Ignored,
}

/// A limiter the pipeline can put in front of the call.
///
/// The future and the permit are named types, so a pipeline's future is
/// `Send` whenever they are (a bound generic code, such as the tower
/// service, can state).
pub trait Admission {
    /// What an admitted call holds while it runs; dropping it releases.
    type Permit<'a>
    where
        Self: 'a;

    /// The future of [`acquire`](Admission::acquire).
    type Acquire<'a>: Future<Output = Result<Self::Permit<'a>, Reason>>
    where
        Self: 'a;

    /// Which layer this limiter is (in errors and metrics).
    fn layer(&self) -> Layer;

    /// Admits the call, refuses it, or waits (a bulkhead's queue, a rate
    /// limiter's reservation) as the limiter's rules say.
    fn acquire(&self) -> Self::Acquire<'_>;

    /// [`acquire`](Admission::acquire) when the pipeline has just checked
    /// the caller's scope ([`crate::caller::check_scope`]) on this thread,
    /// with no await point since: a limiter whose `acquire` starts with
    /// that check may skip it (one check per attempt instead of one per
    /// layer). `now` is the call's shared clock reading ([`SharedNow`]):
    /// a limiter that times calls on the default system clock may take its
    /// start from it. The default calls `acquire`.
    #[inline]
    fn acquire_in_live_scope(&self, now: &SharedNow) -> Self::Acquire<'_> {
        let _ = now;
        self.acquire()
    }

    /// Admits or refuses at once, with no await point, if this limiter can
    /// decide without waiting; `None` means "await
    /// [`acquire_in_live_scope`](Admission::acquire_in_live_scope)". The
    /// pipeline tries this first, so a layer that never waits costs its
    /// admission and nothing of an `async` step (a future built, stored in
    /// the call's state, polled and moved out). Same contract as
    /// `acquire_in_live_scope`. The default says `None` (always correct).
    #[inline]
    fn try_admit_in_live_scope(&self, now: &SharedNow) -> Option<Result<Self::Permit<'_>, Reason>> {
        let _ = now;
        None
    }

    /// [`try_admit_in_live_scope`](Admission::try_admit_in_live_scope) for a
    /// caller that has not checked its scope: as `acquire`, at once or
    /// `None`. The default says `None`.
    #[inline]
    fn try_admit(&self) -> Option<Result<Self::Permit<'_>, Reason>> {
        None
    }

    /// Whether [`acquire`](Admission::acquire) may wait (return `Pending`)
    /// as this limiter is configured. The pipeline checks the caller's
    /// scope again after such a layer before skipping the next layer's
    /// check. The default says yes (always safe).
    #[inline]
    fn may_wait(&self) -> bool {
        true
    }

    /// Reports how an admitted call went. The default drops the permit.
    fn settle(&self, permit: Self::Permit<'_>, verdict: Verdict) {
        let _ = (permit, verdict);
    }

    /// [`settle`](Admission::settle) with the call's shared clock reading
    /// at its end ([`SharedNow`]), as in
    /// [`acquire_in_live_scope`](Admission::acquire_in_live_scope). The
    /// default calls `settle`.
    #[inline]
    fn settle_at(&self, permit: Self::Permit<'_>, verdict: Verdict, now: &SharedNow) {
        let _ = now;
        self.settle(permit, verdict)
    }
}

/// No limit: admits every call at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl Admission for Unlimited {
    type Permit<'a> = ();
    type Acquire<'a> = Ready<Result<(), Reason>>;

    fn layer(&self) -> Layer {
        Layer::Limit
    }

    #[inline]
    fn acquire(&self) -> Ready<Result<(), Reason>> {
        ready(Ok(()))
    }

    #[inline]
    fn try_admit_in_live_scope(&self, _now: &SharedNow) -> Option<Result<(), Reason>> {
        Some(Ok(()))
    }

    #[inline]
    fn try_admit(&self) -> Option<Result<(), Reason>> {
        Some(Ok(()))
    }

    #[inline]
    fn may_wait(&self) -> bool {
        false
    }
}

impl<A: Admission> Admission for std::sync::Arc<A> {
    type Permit<'a>
        = A::Permit<'a>
    where
        Self: 'a;
    type Acquire<'a>
        = A::Acquire<'a>
    where
        Self: 'a;

    fn layer(&self) -> Layer {
        (**self).layer()
    }

    #[inline]
    fn acquire(&self) -> A::Acquire<'_> {
        (**self).acquire()
    }

    #[inline]
    fn acquire_in_live_scope(&self, now: &SharedNow) -> A::Acquire<'_> {
        (**self).acquire_in_live_scope(now)
    }

    #[inline]
    fn try_admit_in_live_scope(&self, now: &SharedNow) -> Option<Result<Self::Permit<'_>, Reason>> {
        (**self).try_admit_in_live_scope(now)
    }

    #[inline]
    fn try_admit(&self) -> Option<Result<Self::Permit<'_>, Reason>> {
        (**self).try_admit()
    }

    #[inline]
    fn may_wait(&self) -> bool {
        (**self).may_wait()
    }

    #[inline]
    fn settle(&self, permit: Self::Permit<'_>, verdict: Verdict) {
        (**self).settle(permit, verdict)
    }

    #[inline]
    fn settle_at(&self, permit: Self::Permit<'_>, verdict: Verdict, now: &SharedNow) {
        (**self).settle_at(permit, verdict, now)
    }
}
