//! One pipeline: every policy around a call, in one documented order, with
//! one error type.
//!
//! ```text
//! timeout → fallback → hedge | retry → breaker → adaptive limit → bulkhead → rate limit → call
//! ```
//!
//! Why this order (outermost first):
//!
//! 1. **Timeout** bounds the whole call, retries and waits included. On
//!    weft it is a scope with a deadline, so everything inside sees it as
//!    the caller's deadline: a retry does not start an attempt that cannot
//!    finish before it, a bulkhead wait ends at it.
//! 2. **Fallback** sees what the retries could not fix (and the refusals of
//!    the layers below: a cached value when the breaker is open). It is
//!    inside the timeout, so a fallback for "too slow" belongs in the
//!    operation or around the pipeline.
//! 3. **Hedge or retry** runs attempts; each attempt goes through every
//!    layer below on its own, so a retry is admitted (or refused) by the
//!    breaker and the limits like any call. Only the call's own errors are
//!    retried by default ([`OnCallErrors`]): a breaker that is open, a limit
//!    that sheds, a full bulkhead say "not now", and retrying them at once
//!    is the storm they exist to stop.
//! 4. **Breaker** before the limits, so an open circuit costs no permit.
//! 5. **Adaptive limit** sheds at once over its limit (load shedding).
//! 6. **Bulkhead / rate limit**: may wait (queue, reservation) — last,
//!    so nothing waits for a call that a layer above would refuse.
//!
//! Outcomes go back up in reverse: each limiter and the breaker are told
//! how the attempt went. An attempt that ended because the *caller* was
//! cancelled or ran out of time is [`Verdict::Ignored`] everywhere — it says
//! nothing about the downstream — and the pipeline returns
//! [`PolicyError::Interrupted`].
//!
//! The steady path (no retry needed, layers admit) allocates nothing: every
//! layer is a type parameter, the call's future lives in the caller's, and
//! the counters are atomics (`tests/pipeline_alloc.rs` counts allocations).
//! [`PolicySet`] keeps one pipeline per endpoint.

mod admission;
mod error;
mod limits;
mod set;
#[cfg(feature = "tower")]
pub mod tower;

use std::{
    fmt,
    future::{ready, Future, Ready},
    sync::Arc,
    time::Duration,
};

pub use self::{
    admission::{Admission, Unlimited, Verdict},
    error::{Layer, PolicyError, Reason},
    limits::BulkheadAcquire,
    set::PolicySet,
};
use crate::{
    breaker::{Breaker, Classify, ErrorsFail, Verdict as BreakerVerdict},
    caller::CallerEnd,
    clock::SharedNow,
    env::{Env, Interrupted},
    fallback::{Fallback, FallbackAction},
    hedge::Hedge,
    retry::{Attempt, Retry, RetryError, RetryOn, Stop},
    striped::StripedCounters,
};

/// Retries only the call's own errors ([`PolicyError::Call`]), never a
/// layer's refusal, never a value.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnCallErrors;

impl<T, E> RetryOn<T, PolicyError<E>> for OnCallErrors {
    #[inline]
    fn should_retry(&self, outcome: &Result<T, PolicyError<E>>) -> bool {
        matches!(outcome, Err(PolicyError::Call(_)))
    }
}

/// No fallback.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFallback;

/// The fallback layer's interface (implemented by [`NoFallback`] and by
/// [`Fallback`] over [`PolicyError`]).
pub trait FallbackStep<T, E> {
    /// The future of [`fallback`](FallbackStep::fallback).
    type Future: Future<Output = Result<T, PolicyError<E>>>;

    /// Called once per pipeline call (for the fallback's counters).
    fn on_call(&self) {}

    /// True if `error` is to be replaced (counted as a use).
    fn picks(&self, error: &PolicyError<E>) -> bool;

    /// The outcome replacing `error`.
    fn fallback(&self, error: PolicyError<E>) -> Self::Future;
}

impl<T, E> FallbackStep<T, E> for NoFallback {
    type Future = Ready<Result<T, PolicyError<E>>>;

    #[inline]
    fn picks(&self, _: &PolicyError<E>) -> bool {
        false
    }

    fn fallback(&self, error: PolicyError<E>) -> Self::Future {
        ready(Err(error))
    }
}

impl<T, E, W, A> FallbackStep<T, E> for Fallback<W, A>
where
    W: Fn(&PolicyError<E>) -> bool,
    A: FallbackAction<T, PolicyError<E>>,
{
    type Future = A::Future;

    #[inline]
    fn on_call(&self) {
        self.note_call();
    }

    #[inline]
    fn picks(&self, error: &PolicyError<E>) -> bool {
        let picked = Fallback::picks(self, error);
        if picked {
            self.note_use();
        }
        picked
    }

    fn fallback(&self, error: PolicyError<E>) -> A::Future {
        self.action().fallback(error)
    }
}

/// How attempts are made.
enum Strategy<P> {
    Once,
    Retry(Retry<P>),
    Hedge(Hedge<P>),
}

/// Every policy around a call to one endpoint. See the [module docs](self).
///
/// Made with [`Pipeline::new`] and the `with_*` methods, each of which
/// adds (or replaces) one layer and may change the type.
pub struct Pipeline<
    En,
    L = Unlimited,
    B = Unlimited,
    R = Unlimited,
    C = ErrorsFail,
    P = OnCallErrors,
    Fb = NoFallback,
> {
    name: Arc<str>,
    env: En,
    timeout: Option<Duration>,
    fallback: Fb,
    strategy: Strategy<P>,
    breaker: Option<Arc<Breaker<C>>>,
    limit: L,
    bulkhead: B,
    rate: R,
    counters: Counters,
}

/// The outcome counters, striped by owning thread (`crate::striped`: a
/// plain load and store per call, no locked instruction). Calls are the sum
/// of the outcomes (plus those in flight), so they are not counted
/// separately.
type Counters = StripedCounters<{ REFUSED + Layer::ALL.len() }>;
const OK: usize = 0;
const FAILED: usize = 1;
const INTERRUPTED: usize = 2;
/// `REFUSED + layer.index()` counts the refusals of `layer`.
const REFUSED: usize = 3;

/// A snapshot of a pipeline's outcomes, counted below the fallback: a
/// refusal the fallback answered still counts as a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PipelineMetrics {
    /// Calls finished through the pipeline (the sum of the outcomes).
    pub calls: u64,
    /// Calls that returned `Ok`.
    pub ok: u64,
    /// Calls that failed with the downstream's own error.
    pub failed: u64,
    /// Calls ended by the caller's cancellation or deadline.
    pub interrupted: u64,
    /// Calls refused, by layer (index as [`Layer::ALL`]).
    pub refused: [u64; Layer::ALL.len()],
}

impl PipelineMetrics {
    /// Calls `layer` refused.
    pub fn refused_by(&self, layer: Layer) -> u64 {
        self.refused[layer.index()]
    }
}

impl<En: Env> Pipeline<En> {
    /// A pipeline with no layers: calls pass straight through.
    pub fn new(name: impl Into<Arc<str>>, env: En) -> Pipeline<En> {
        Pipeline {
            name: name.into(),
            env,
            timeout: None,
            fallback: NoFallback,
            strategy: Strategy::Once,
            breaker: None,
            limit: Unlimited,
            bulkhead: Unlimited,
            rate: Unlimited,
            counters: Counters::new(),
        }
    }
}

impl<En, L, B, R, C, P, Fb> Pipeline<En, L, B, R, C, P, Fb> {
    /// The name (the endpoint).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The environment.
    pub fn env(&self) -> &En {
        &self.env
    }

    /// Bounds every call (retries and waits included) by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a retry layer (replacing any hedge or retry).
    pub fn with_retry<P2>(self, retry: Retry<P2>) -> Pipeline<En, L, B, R, C, P2, Fb> {
        self.strategy(Strategy::Retry(retry))
    }

    /// Adds a hedging layer (replacing any hedge or retry).
    pub fn with_hedge<P2>(self, hedge: Hedge<P2>) -> Pipeline<En, L, B, R, C, P2, Fb> {
        self.strategy(Strategy::Hedge(hedge))
    }

    /// Adds a breaker.
    pub fn with_breaker<C2>(self, breaker: Arc<Breaker<C2>>) -> Pipeline<En, L, B, R, C2, P, Fb> {
        Pipeline {
            name: self.name,
            env: self.env,
            timeout: self.timeout,
            fallback: self.fallback,
            strategy: self.strategy,
            breaker: Some(breaker),
            limit: self.limit,
            bulkhead: self.bulkhead,
            rate: self.rate,
            counters: self.counters,
        }
    }

    /// Adds an adaptive concurrency limit (any [`Admission`]).
    pub fn with_limit<L2: Admission>(self, limit: L2) -> Pipeline<En, L2, B, R, C, P, Fb> {
        Pipeline {
            name: self.name,
            env: self.env,
            timeout: self.timeout,
            fallback: self.fallback,
            strategy: self.strategy,
            breaker: self.breaker,
            limit,
            bulkhead: self.bulkhead,
            rate: self.rate,
            counters: self.counters,
        }
    }

    /// Adds a bulkhead (any [`Admission`]).
    pub fn with_bulkhead<B2: Admission>(self, bulkhead: B2) -> Pipeline<En, L, B2, R, C, P, Fb> {
        Pipeline {
            name: self.name,
            env: self.env,
            timeout: self.timeout,
            fallback: self.fallback,
            strategy: self.strategy,
            breaker: self.breaker,
            limit: self.limit,
            bulkhead,
            rate: self.rate,
            counters: self.counters,
        }
    }

    /// Adds a rate limiter (any [`Admission`]).
    pub fn with_rate_limit<R2: Admission>(self, rate: R2) -> Pipeline<En, L, B, R2, C, P, Fb> {
        Pipeline {
            name: self.name,
            env: self.env,
            timeout: self.timeout,
            fallback: self.fallback,
            strategy: self.strategy,
            breaker: self.breaker,
            limit: self.limit,
            bulkhead: self.bulkhead,
            rate,
            counters: self.counters,
        }
    }

    /// Adds a fallback: `when` picks errors (`Fn(&PolicyError<E>) -> bool`),
    /// `action` replaces them.
    pub fn with_fallback<W, A>(
        self,
        fallback: Fallback<W, A>,
    ) -> Pipeline<En, L, B, R, C, P, Fallback<W, A>> {
        Pipeline {
            name: self.name,
            env: self.env,
            timeout: self.timeout,
            fallback,
            strategy: self.strategy,
            breaker: self.breaker,
            limit: self.limit,
            bulkhead: self.bulkhead,
            rate: self.rate,
            counters: self.counters,
        }
    }

    fn strategy<P2>(self, strategy: Strategy<P2>) -> Pipeline<En, L, B, R, C, P2, Fb> {
        Pipeline {
            name: self.name,
            env: self.env,
            timeout: self.timeout,
            fallback: self.fallback,
            strategy,
            breaker: self.breaker,
            limit: self.limit,
            bulkhead: self.bulkhead,
            rate: self.rate,
            counters: self.counters,
        }
    }

    /// The retry layer, if any.
    pub fn retry(&self) -> Option<&Retry<P>> {
        match &self.strategy {
            Strategy::Retry(r) => Some(r),
            _ => None,
        }
    }

    /// The hedging layer, if any.
    pub fn hedge(&self) -> Option<&Hedge<P>> {
        match &self.strategy {
            Strategy::Hedge(h) => Some(h),
            _ => None,
        }
    }

    /// The breaker, if any.
    pub fn breaker(&self) -> Option<&Arc<Breaker<C>>> {
        self.breaker.as_ref()
    }

    /// The adaptive limit layer.
    pub fn limit(&self) -> &L {
        &self.limit
    }

    /// The bulkhead layer.
    pub fn bulkhead(&self) -> &B {
        &self.bulkhead
    }

    /// The rate limit layer.
    pub fn rate_limit(&self) -> &R {
        &self.rate
    }

    /// The fallback layer.
    pub fn fallback(&self) -> &Fb {
        &self.fallback
    }

    /// The counters now.
    pub fn metrics(&self) -> PipelineMetrics {
        let c = &self.counters;
        let refused: [u64; Layer::ALL.len()] = std::array::from_fn(|i| c.get(REFUSED + i));
        let (ok, failed, interrupted) = (c.get(OK), c.get(FAILED), c.get(INTERRUPTED));
        PipelineMetrics {
            calls: ok + failed + interrupted + refused.iter().sum::<u64>(),
            ok,
            failed,
            interrupted,
            refused,
        }
    }
}

impl<En, L, B, R, C, P, Fb> Pipeline<En, L, B, R, C, P, Fb>
where
    En: Env,
    L: Admission,
    B: Admission,
    R: Admission,
{
    /// Calls `op` through every layer (see the [module docs](self)). `op`
    /// makes one attempt; it is called again for each retry or hedge.
    pub async fn call<F, Fut, T, E>(&self, op: F) -> Result<T, PolicyError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
        P: RetryOn<T, PolicyError<E>>,
        Fb: FallbackStep<T, E>,
    {
        self.fallback.on_call();
        match self.timeout {
            // Pinned here and lent to the timeout: the attempts' future is
            // most of this call's state (hundreds of bytes), and handing it
            // to the timeout by value copied it once more per call.
            Some(after) => match self
                .env
                .timeout(after, std::pin::pin!(self.guarded(op)))
                .await
            {
                Ok(outcome) => outcome,
                Err(timed_out) => {
                    self.counters.bump(REFUSED + Layer::Timeout.index());
                    Err(PolicyError::refused(
                        Layer::Timeout,
                        Reason::TimedOut {
                            after: timed_out.after,
                        },
                    ))
                }
            },
            None => self.guarded(op).await,
        }
    }

    /// The fallback layer around the attempts; outcomes are counted before
    /// the fallback, so a refusal or failure it covers still shows.
    async fn guarded<F, Fut, T, E>(&self, op: F) -> Result<T, PolicyError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
        P: RetryOn<T, PolicyError<E>>,
        Fb: FallbackStep<T, E>,
    {
        let outcome = self.attempts(op).await;
        self.count(&outcome);
        match outcome {
            Err(error) if self.fallback.picks(&error) => self.fallback.fallback(error).await,
            outcome => outcome,
        }
    }

    fn count<T, E>(&self, outcome: &Result<T, PolicyError<E>>) {
        match outcome {
            Ok(_) => self.counters.bump(OK),
            Err(PolicyError::Call(_)) => self.counters.bump(FAILED),
            Err(PolicyError::Interrupted(_)) => self.counters.bump(INTERRUPTED),
            Err(PolicyError::Refused { layer, .. }) => self.counters.bump(REFUSED + layer.index()),
        }
    }

    /// The hedge/retry layer.
    async fn attempts<F, Fut, T, E>(&self, mut op: F) -> Result<T, PolicyError<E>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
        P: RetryOn<T, PolicyError<E>>,
    {
        let (layer, outcome) = match &self.strategy {
            Strategy::Once => return self.attempt(op(Attempt::new(1, false))).await,
            Strategy::Retry(retry) => (
                Layer::Retry,
                retry.call(&self.env, |a| self.attempt(op(a))).await,
            ),
            Strategy::Hedge(hedge) => (
                Layer::Hedge,
                hedge.call(&self.env, |a| self.attempt(op(a))).await,
            ),
        };
        outcome.map_err(|e| match e {
            RetryError::Failed {
                stop: Stop::Interrupted(why),
                ..
            } => PolicyError::Interrupted(why),
            RetryError::Failed { error, .. } => error,
            RetryError::NotStarted(Stop::Interrupted(why)) => PolicyError::Interrupted(why),
            RetryError::NotStarted(Stop::Deadline { remaining }) => {
                PolicyError::refused(layer, Reason::DeadlineTooClose { remaining })
            }
            RetryError::NotStarted(_) => PolicyError::refused(layer, Reason::Other("not started")),
        })
    }

    /// One attempt: breaker → limit → bulkhead → rate limit → the call.
    async fn attempt<Fut, T, E>(&self, call: Fut) -> Result<T, PolicyError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        // One reading of the coarse clock for the layers that time the call
        // on the default system clock (a custom clock reads itself).
        let started = SharedNow::new();
        let breaker = match &self.breaker {
            Some(breaker) => {
                // The breaker's scope check, made here once for it and the
                // layers below (each would make it first): a cancelled
                // caller takes no half-open probe and no permit, and is
                // reported as interrupted, never as a refusal.
                if let Err(end) = crate::caller::check_scope() {
                    return Err(PolicyError::Interrupted(match end {
                        CallerEnd::DeadlineExceeded => Interrupted::Deadline,
                        CallerEnd::Cancelled => Interrupted::Cancelled,
                    }));
                }
                match breaker.acquire_in_live_scope(&started) {
                    Ok(permit) => Some(permit),
                    Err(rejected) => {
                        return Err(PolicyError::refused(
                            Layer::Breaker,
                            Reason::BreakerOpen {
                                retry_after: rejected.retry_after(),
                            },
                        ))
                    }
                }
            }
            None => None,
        };
        // The check stays good while nothing waits: after a layer whose
        // admission may wait (a queue, a reservation) the next one checks
        // again. Without a breaker every layer checks for itself, as
        // `Admission::acquire` says.
        // Each layer that can decide at once does so with no await point
        // (`Admission::try_admit*`); the others are awaited.
        let live = self.breaker.is_some();
        let limit = match if live {
            self.limit.try_admit_in_live_scope(&started)
        } else {
            self.limit.try_admit()
        } {
            Some(admitted) => admitted,
            None if live => self.limit.acquire_in_live_scope(&started).await,
            None => self.limit.acquire().await,
        }
        .map_err(|r| PolicyError::refused(self.limit.layer(), r))?;
        let live = live && !self.limit.may_wait();
        let bulkhead = match if live {
            self.bulkhead.try_admit_in_live_scope(&started)
        } else {
            self.bulkhead.try_admit()
        } {
            Some(admitted) => admitted,
            None if live => self.bulkhead.acquire_in_live_scope(&started).await,
            None => self.bulkhead.acquire().await,
        }
        .map_err(|r| PolicyError::refused(self.bulkhead.layer(), r))?;
        let live = live && !self.bulkhead.may_wait();
        let rate = match if live {
            self.rate.try_admit_in_live_scope(&started)
        } else {
            self.rate.try_admit()
        } {
            Some(admitted) => admitted,
            None if live => self.rate.acquire_in_live_scope(&started).await,
            None => self.rate.acquire().await,
        }
        .map_err(|r| PolicyError::refused(self.rate.layer(), r))?;
        let outcome = call.await;
        // The caller's own end says nothing about the downstream: a
        // cancelled caller's call is ignored everywhere; one its deadline
        // cut is slow, not failed (`crate::caller`). The breaker judges a
        // deadline-cut call itself when the error carries weft's
        // cancellation (then it is a slow call by its config); an error
        // that does not is ignored rather than blamed on the downstream.
        let interrupted = self.env.check().err();
        let judged = self
            .breaker
            .as_ref()
            .map(|b| b.classifier().classify(&outcome));
        let verdict = match (interrupted, judged) {
            (Some(Interrupted::Deadline), _) => Verdict::Slow,
            (Some(_), _) => Verdict::Ignored,
            (None, Some(BreakerVerdict::Success)) => Verdict::Success,
            (None, Some(BreakerVerdict::Failure)) => Verdict::Failure,
            (None, Some(BreakerVerdict::DeadlineExceeded)) => Verdict::Slow,
            (None, Some(_)) => Verdict::Ignored,
            (None, None) if outcome.is_ok() => Verdict::Success,
            (None, None) => Verdict::Failure,
        };
        let ended = SharedNow::new();
        self.rate.settle_at(rate, verdict, &ended);
        self.bulkhead.settle_at(bulkhead, verdict, &ended);
        self.limit.settle_at(limit, verdict, &ended);
        if let Some(permit) = breaker {
            permit.settle_at(
                match (verdict, judged) {
                    // The classifier's own verdict: the breaker applies
                    // its deadline rule to it.
                    (Verdict::Slow, Some(BreakerVerdict::DeadlineExceeded)) => {
                        BreakerVerdict::DeadlineExceeded
                    }
                    (Verdict::Success, _) => BreakerVerdict::Success,
                    (Verdict::Failure, _) => BreakerVerdict::Failure,
                    _ => BreakerVerdict::Ignore,
                },
                &ended,
            );
        }
        match (outcome, interrupted) {
            (Ok(value), _) => Ok(value),
            (Err(_), Some(why)) => Err(PolicyError::Interrupted(why)),
            (Err(error), None) => Err(PolicyError::Call(error)),
        }
    }
}

impl<En: fmt::Debug, L, B, R, C, P, Fb> fmt::Debug for Pipeline<En, L, B, R, C, P, Fb> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("env", &self.env)
            .field("timeout", &self.timeout)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
