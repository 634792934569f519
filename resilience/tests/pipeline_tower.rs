//! The pipeline as a tower layer: readiness, retries through the inner
//! service, errors naming the layer, and the future is `Send`.
#![cfg(feature = "tower")]

use std::{
    future::{poll_fn, Future, Ready},
    pin::pin,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use tower::{Layer as _, Service};
use weft_resilience::{
    breaker::{Breaker, Config},
    env::ManualEnv,
    fallback::{Fallback, Value},
    policy::{tower as policy_tower, Layer, OnCallErrors, Pipeline, PolicyError, Reason},
    retry::{Backoff, Retry, RetryConfig},
};

/// Fails the first `fail` requests, then echoes.
#[derive(Clone)]
struct Flaky {
    fail: u32,
    seen: Arc<AtomicU32>,
}

impl Service<u32> for Flaky {
    type Response = u32;
    type Error = &'static str;
    type Future = Ready<Result<u32, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        std::future::ready(if n < self.fail { Err("503") } else { Ok(req) })
    }
}

fn block<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("waited"),
    }
}

fn assert_send<T: Send>(_: &T) {}

async fn call<S: Service<u32>>(svc: &mut S, req: u32) -> Result<S::Response, S::Error> {
    poll_fn(|cx| svc.poll_ready(cx)).await?;
    svc.call(req).await
}

#[test]
fn retry_layer_retries_through_the_inner_service() {
    let seen = Arc::new(AtomicU32::new(0));
    let layer = policy_tower::retry(
        "flaky",
        ManualEnv::new(),
        Retry::with_predicate(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(1)))
                .build()
                .unwrap(),
            OnCallErrors,
        ),
    );
    let mut svc = layer.layer(Flaky {
        fail: 2,
        seen: seen.clone(),
    });
    let fut = svc.call(41);
    assert_send(&fut);
    assert_eq!(block(fut), Ok(41));
    assert_eq!(seen.load(Ordering::Relaxed), 3);
    assert_eq!(layer.pipeline().retry().unwrap().metrics().retries, 2);
}

#[test]
fn a_breaker_layer_names_itself_and_a_fallback_layer_replaces_it() {
    let breaker = Arc::new(Breaker::new("leaf", Config::default()));
    let _ = breaker.force_open();
    let mut svc = policy_tower::breaker(ManualEnv::new(), breaker.clone()).layer(Flaky {
        fail: 0,
        seen: Arc::default(),
    });
    match block(call(&mut svc, 1)) {
        Err(PolicyError::Refused {
            layer: Layer::Breaker,
            reason: Reason::BreakerOpen { .. },
        }) => {}
        other => panic!("{other:?}"),
    }
    // The whole stack as one layer, with a fallback for the open breaker.
    let pipeline = Pipeline::new("leaf", ManualEnv::new())
        .with_breaker(breaker)
        .with_fallback(Fallback::new(
            |e: &PolicyError<&'static str>| e.layer() == Some(Layer::Breaker),
            Value(0u32),
        ));
    let mut svc = policy_tower::PolicyLayer::new(pipeline).layer(Flaky {
        fail: 0,
        seen: Arc::default(),
    });
    assert_eq!(block(call(&mut svc, 5)), Ok(0));
}

#[test]
fn a_timeout_layer_passes_fast_calls() {
    let mut svc =
        policy_tower::timeout("t", ManualEnv::new(), Duration::from_secs(1)).layer(Flaky {
            fail: 0,
            seen: Arc::default(),
        });
    assert_eq!(block(call(&mut svc, 9)), Ok(9));
}

#[cfg(feature = "weft")]
#[test]
fn on_weft_the_service_future_is_send_and_spawnable() {
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let layer = policy_tower::PolicyLayer::new(
        Pipeline::new("flaky", weft_resilience::env::WeftEnv::new())
            .with_timeout(Duration::from_secs(1))
            .with_retry(Retry::with_predicate(
                RetryConfig::builder()
                    .max_attempts(2)
                    .backoff(Backoff::none())
                    .build()
                    .unwrap(),
                OnCallErrors,
            ))
            .with_breaker(Arc::new(Breaker::new("flaky", Config::default()))),
    );
    let mut svc = layer.layer(Flaky {
        fail: 1,
        seen: seen.clone(),
    });
    let out = rt.block_on(async move { weft::spawn(svc.call(3)).await.unwrap() });
    assert_eq!(out, Ok(3));
    assert_eq!(seen.load(Ordering::Relaxed), 2);
}
