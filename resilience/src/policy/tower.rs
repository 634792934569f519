//! Every policy as a tower [`Layer`](tower::Layer) and
//! [`Service`] (feature `tower`), so it composes with
//! hyper, axum and tonic.
//!
//! One adapter serves them all: [`PolicyLayer`] wraps a [`Pipeline`], and a
//! single policy is a pipeline with one layer ([`retry`], [`hedge`],
//! [`breaker`], [`timeout`], [`fallback`], [`limit`], [`bulkhead`],
//! [`rate_limit`] build those). Errors are [`PolicyError`]s naming the
//! layer, as in a direct call.
//!
//! * `poll_ready` is always ready: the pipeline's own limits decide
//!   admission per call, and each attempt waits for the inner service's
//!   readiness on a clone of it (as tower's `Retry` does), so a retry does
//!   not hold a readiness reservation through its backoff.
//! * Requests are cloned per attempt (`Req: Clone`), services per call
//!   (`S: Clone`).
//! * The response future is boxed (one allocation per call): tower needs a
//!   nameable future type, and the pipeline's is an `async fn`'s. The
//!   direct [`Pipeline::call`] allocates nothing.
//! * The service is implemented for pipelines on [`WeftEnv`](crate::env::WeftEnv)
//!   (feature `weft`) and [`ManualEnv`]: the environment must be a concrete
//!   type for the compiler to see that the boxed future is `Send`.

use std::{
    fmt,
    future::{poll_fn, Future},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tower::Service;

use super::{Admission, FallbackStep, NoFallback, OnCallErrors, Pipeline, PolicyError, Unlimited};
use crate::{
    breaker::{Breaker, Classify, ErrorsFail},
    env::{Env, ManualEnv},
    fallback::Fallback,
    hedge::Hedge,
    retry::{Retry, RetryOn},
};

/// A tower layer running calls through a [`Pipeline`].
pub struct PolicyLayer<Pl> {
    pipeline: Arc<Pl>,
}

impl<Pl> PolicyLayer<Pl> {
    /// A layer over `pipeline`.
    pub fn new(pipeline: Pl) -> PolicyLayer<Pl> {
        PolicyLayer::shared(Arc::new(pipeline))
    }

    /// A layer over a pipeline shared with other layers or direct callers
    /// (one breaker, one budget).
    pub fn shared(pipeline: Arc<Pl>) -> PolicyLayer<Pl> {
        PolicyLayer { pipeline }
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Arc<Pl> {
        &self.pipeline
    }
}

impl<Pl> Clone for PolicyLayer<Pl> {
    fn clone(&self) -> Self {
        PolicyLayer::shared(self.pipeline.clone())
    }
}

impl<Pl> fmt::Debug for PolicyLayer<Pl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyLayer").finish_non_exhaustive()
    }
}

impl<Pl, S> tower::Layer<S> for PolicyLayer<Pl> {
    type Service = PolicyService<Pl, S>;

    fn layer(&self, inner: S) -> PolicyService<Pl, S> {
        PolicyService {
            pipeline: self.pipeline.clone(),
            inner,
        }
    }
}

/// The service of a [`PolicyLayer`].
pub struct PolicyService<Pl, S> {
    pipeline: Arc<Pl>,
    inner: S,
}

impl<Pl, S: Clone> Clone for PolicyService<Pl, S> {
    fn clone(&self) -> Self {
        PolicyService {
            pipeline: self.pipeline.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<Pl, S> fmt::Debug for PolicyService<Pl, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyService").finish_non_exhaustive()
    }
}

/// The boxed response future of a [`PolicyService`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, PolicyError<E>>> + Send>>;

macro_rules! service_on {
    ($env:ty) => {
        impl<L, B, R, C, P, Fb, S, Req> Service<Req>
            for PolicyService<Pipeline<$env, L, B, R, C, P, Fb>, S>
        where
            S: Service<Req> + Clone + Send + Sync + 'static,
            S::Future: Send,
            S::Response: Send + 'static,
            S::Error: Send + 'static,
            Req: Clone + Send + Sync + 'static,
            L: Admission + Send + Sync + 'static,
            for<'a> L::Acquire<'a>: Send,
            for<'a> L::Permit<'a>: Send,
            B: Admission + Send + Sync + 'static,
            for<'a> B::Acquire<'a>: Send,
            for<'a> B::Permit<'a>: Send,
            R: Admission + Send + Sync + 'static,
            for<'a> R::Acquire<'a>: Send,
            for<'a> R::Permit<'a>: Send,
            C: Classify<S::Response, S::Error> + Send + Sync + 'static,
            P: RetryOn<S::Response, PolicyError<S::Error>> + Send + Sync + 'static,
            Fb: FallbackStep<S::Response, S::Error> + Send + Sync + 'static,
            Fb::Future: Send,
        {
            type Response = S::Response;
            type Error = PolicyError<S::Error>;
            type Future = ResponseFuture<S::Response, S::Error>;

            fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: Req) -> Self::Future {
                let pipeline = self.pipeline.clone();
                let inner = self.inner.clone();
                Box::pin(async move {
                    pipeline
                        .call(|_| {
                            let mut service = inner.clone();
                            let req = req.clone();
                            async move {
                                poll_fn(|cx| service.poll_ready(cx)).await?;
                                service.call(req).await
                            }
                        })
                        .await
                })
            }
        }
    };
}

service_on!(ManualEnv);
#[cfg(feature = "weft")]
service_on!(crate::env::WeftEnv);

/// A pipeline with one layer and the rest empty.
pub type Single<En, P = OnCallErrors, C = ErrorsFail, L = Unlimited, Fb = NoFallback> =
    Pipeline<En, L, Unlimited, Unlimited, C, P, Fb>;

/// A pipeline with only a fallback.
pub type WithFallback<En, W, A> = Single<En, OnCallErrors, ErrorsFail, Unlimited, Fallback<W, A>>;

/// Retry as a tower layer.
pub fn retry<En: Env, P>(name: &str, env: En, retry: Retry<P>) -> PolicyLayer<Single<En, P>> {
    PolicyLayer::new(Pipeline::new(name, env).with_retry(retry))
}

/// Hedging as a tower layer.
pub fn hedge<En: Env, P>(name: &str, env: En, hedge: Hedge<P>) -> PolicyLayer<Single<En, P>> {
    PolicyLayer::new(Pipeline::new(name, env).with_hedge(hedge))
}

/// A circuit breaker as a tower layer.
pub fn breaker<En: Env, C>(
    env: En,
    breaker: Arc<Breaker<C>>,
) -> PolicyLayer<Single<En, OnCallErrors, C>> {
    let name: Arc<str> = Arc::from(breaker.name());
    PolicyLayer::new(Pipeline::new(name, env).with_breaker(breaker))
}

/// A timeout as a tower layer (on weft, a scope with a deadline).
pub fn timeout<En: Env>(name: &str, env: En, after: Duration) -> PolicyLayer<Single<En>> {
    PolicyLayer::new(Pipeline::new(name, env).with_timeout(after))
}

/// A fallback as a tower layer.
pub fn fallback<En: Env, W, A>(
    name: &str,
    env: En,
    fallback: Fallback<W, A>,
) -> PolicyLayer<WithFallback<En, W, A>> {
    PolicyLayer::new(Pipeline::new(name, env).with_fallback(fallback))
}

/// An adaptive limit (any [`Admission`]) as a tower layer.
pub fn limit<En: Env, L: Admission>(
    name: &str,
    env: En,
    limit: L,
) -> PolicyLayer<Single<En, OnCallErrors, ErrorsFail, L>> {
    PolicyLayer::new(Pipeline::new(name, env).with_limit(limit))
}

/// A bulkhead (any [`Admission`]) as a tower layer.
pub fn bulkhead<En: Env, B: Admission>(
    name: &str,
    env: En,
    bulkhead: B,
) -> PolicyLayer<Pipeline<En, Unlimited, B>> {
    PolicyLayer::new(Pipeline::new(name, env).with_bulkhead(bulkhead))
}

/// A rate limiter (any [`Admission`]) as a tower layer.
pub fn rate_limit<En: Env, R: Admission>(
    name: &str,
    env: En,
    rate: R,
) -> PolicyLayer<Pipeline<En, Unlimited, Unlimited, R>> {
    PolicyLayer::new(Pipeline::new(name, env).with_rate_limit(rate))
}
