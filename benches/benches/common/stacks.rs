//! The resilience stacks the pipeline bench compares, shared by
//! `pipeline.rs` (criterion) and `resilience_profile.rs` (the callgrind
//! driver) so that both measure the same thing. Each bench target includes
//! this file with `#[path]`: bench targets can use the benches'
//! dev-dependencies (tower, failsafe-rs), the `weft-benches` library
//! cannot.

use std::{
    convert::Infallible,
    future::{ready, Ready},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tower::{
    retry::budget::{Budget as _, TpsBudget},
    Service, ServiceBuilder,
};
use weft_resilience::{
    breaker::{Breaker, Config},
    env::WeftEnv,
    limit::{Adaptive, Bulkhead},
    policy::{OnCallErrors, Pipeline},
    retry::{Backoff, Retry, RetryBudget, RetryConfig},
};

/// weft's stack: timeout + retry (3 attempts, with a budget) + breaker +
/// adaptive limit + bulkhead.
pub(crate) type WeftStack = Pipeline<WeftEnv, Adaptive, Bulkhead>;

/// [`WeftStack`] with the given timeout.
pub(crate) fn weft_stack(timeout: Duration) -> WeftStack {
    let budget = Arc::new(RetryBudget::builder().build().expect("valid"));
    Pipeline::new("leaf", WeftEnv::new())
        .with_timeout(timeout)
        .with_retry(Retry::with_predicate(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(Backoff::default())
                .budget(budget)
                .build()
                .expect("valid"),
            OnCallErrors,
        ))
        .with_breaker(Arc::new(Breaker::new("leaf", Config::default())))
        .with_limit(Adaptive::builder().build().expect("valid"))
        .with_bulkhead(
            Bulkhead::builder()
                .max_concurrent(1 << 20)
                .build()
                .expect("valid"),
        )
}

/// The same stack from tower (timeout 1 s, retry with a `TpsBudget`, two
/// `ConcurrencyLimit`s) and failsafe-rs (the breaker), around [`Echo`].
/// Build it inside a tokio runtime's context (`Runtime::enter`).
pub(crate) fn tower_stack() -> impl Service<u64, Response = u64> + Clone {
    ServiceBuilder::new()
        .timeout(Duration::from_secs(1))
        .retry(Attempts {
            left: 2,
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        })
        .layer_fn(|inner| FailsafeService {
            inner,
            breaker: failsafe::Config::new().build(),
        })
        .concurrency_limit(1 << 20)
        .concurrency_limit(1 << 20)
        .service(Echo)
}

/// The downstream: answers at once.
#[derive(Clone, Copy)]
pub(crate) struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// tower's retry policy: up to `left` more attempts, drawing on a
/// `TpsBudget`.
#[derive(Clone)]
struct Attempts {
    left: usize,
    budget: Arc<TpsBudget>,
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Ready<()>> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.left > 0 && self.budget.withdraw() => {
                self.left -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// failsafe-rs's breaker as a tower layer.
#[derive(Clone)]
struct FailsafeService<S, B> {
    inner: S,
    breaker: B,
}

impl<S, B> Service<u64> for FailsafeService<S, B>
where
    S: Service<u64>,
    B: failsafe::futures::CircuitBreaker,
{
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<
        S::Future,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, req: u64) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}
