use std::{
    future::Future,
    pin::pin,
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
    task::{Context, Poll, Waker},
};

use super::*;
use crate::{
    breaker::{Config, State},
    clock::ManualClock,
    env::{Interrupted, ManualEnv},
    fallback::Value,
    retry::{Backoff, RetryConfig},
};

const MS: Duration = Duration::from_millis(1);

fn block<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited"),
    }
}

/// A try-acquire limiter that records what it was told.
#[derive(Debug)]
struct Gate {
    layer: Layer,
    capacity: u32,
    in_use: AtomicU32,
    verdicts: Mutex<Vec<Verdict>>,
}

impl Gate {
    fn new(layer: Layer, capacity: u32) -> Gate {
        Gate {
            layer,
            capacity,
            in_use: AtomicU32::new(0),
            verdicts: Mutex::new(Vec::new()),
        }
    }

    fn verdicts(&self) -> Vec<Verdict> {
        self.verdicts.lock().unwrap().clone()
    }
}

struct GatePermit<'a>(&'a Gate);
impl Drop for GatePermit<'_> {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission for Gate {
    type Permit<'a> = GatePermit<'a>;
    type Acquire<'a> = std::future::Ready<Result<GatePermit<'a>, Reason>>;

    fn layer(&self) -> Layer {
        self.layer
    }

    fn acquire(&self) -> Self::Acquire<'_> {
        let admitted = self
            .in_use
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        std::future::ready(if admitted {
            Ok(GatePermit(self))
        } else {
            Err(Reason::Full)
        })
    }

    fn settle(&self, permit: GatePermit<'_>, verdict: Verdict) {
        self.verdicts.lock().unwrap().push(verdict);
        drop(permit);
    }
}

fn breaker(clock: &ManualClock) -> Arc<Breaker> {
    Arc::new(Breaker::new(
        "leaf",
        Config::builder()
            .count_window(10)
            .minimum_calls(4)
            .no_slow_calls()
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    ))
}

fn retry(attempts: u32) -> Retry<OnCallErrors> {
    Retry::with_predicate(
        RetryConfig::builder()
            .max_attempts(attempts)
            .backoff(Backoff::constant(5 * MS))
            .build()
            .unwrap(),
        OnCallErrors,
    )
}

#[test]
fn a_bare_pipeline_passes_calls_through() {
    let p = Pipeline::new("leaf", ManualEnv::new());
    assert_eq!(block(p.call(|_| async { Ok::<_, ()>(1) })), Ok(1));
    assert_eq!(
        block(p.call(|_| async { Err::<(), _>("e") })),
        Err(PolicyError::Call("e"))
    );
    let m = p.metrics();
    assert_eq!((m.calls, m.ok, m.failed), (2, 1, 1));
}

#[test]
fn each_retry_goes_through_every_layer() {
    let env = ManualEnv::new();
    let p = Pipeline::new("leaf", env.clone())
        .with_retry(retry(3))
        .with_breaker(breaker(env.clock()))
        .with_limit(Gate::new(Layer::Limit, 4))
        .with_bulkhead(Gate::new(Layer::Bulkhead, 4));
    let out = block(p.call(|a| async move {
        if a.number < 3 {
            Err("503")
        } else {
            Ok(a.number)
        }
    }));
    assert_eq!(out, Ok(3));
    use Verdict::*;
    assert_eq!(p.limit().verdicts(), [Failure, Failure, Success]);
    assert_eq!(p.bulkhead().verdicts(), [Failure, Failure, Success]);
    let counts = p.breaker().unwrap().metrics().counts;
    assert_eq!((counts.calls, counts.failures), (3, 2));
    assert_eq!(p.retry().unwrap().metrics().retries, 2);
    assert_eq!(env.slept(), 10 * MS);
    assert_eq!(
        p.limit().in_use.load(Ordering::Relaxed),
        0,
        "permits returned"
    );
}

#[test]
fn an_open_breaker_refuses_before_any_limit_and_is_not_retried() {
    let env = ManualEnv::new();
    let b = breaker(env.clock());
    let _ = b.force_open();
    let p = Pipeline::new("leaf", env.clone())
        .with_retry(retry(3))
        .with_breaker(b)
        .with_limit(Gate::new(Layer::Limit, 1));
    let out = block(p.call(|_| async { Ok::<_, ()>(()) }));
    assert!(
        matches!(
            out,
            Err(PolicyError::Refused {
                layer: Layer::Breaker,
                reason: Reason::BreakerOpen { .. }
            })
        ),
        "{out:?}"
    );
    assert!(p.limit().verdicts().is_empty(), "no limit permit was taken");
    assert_eq!(p.retry().unwrap().metrics().attempts, 1);
    assert_eq!(p.metrics().refused_by(Layer::Breaker), 1);
}

#[test]
fn a_shed_call_names_the_limit_and_a_full_bulkhead_names_itself() {
    let env = ManualEnv::new();
    let p = Pipeline::new("leaf", env.clone()).with_limit(Gate::new(Layer::Limit, 0));
    let out = block(p.call(|_| async { Ok::<_, ()>(()) }));
    assert_eq!(
        out,
        Err(PolicyError::Refused {
            layer: Layer::Limit,
            reason: Reason::Full
        })
    );
    let p = Pipeline::new("leaf", env).with_bulkhead(Gate::new(Layer::Bulkhead, 0));
    let out = block(p.call(|_| async { Ok::<_, ()>(()) }));
    assert_eq!(out.unwrap_err().layer(), Some(Layer::Bulkhead));
    assert_eq!(p.metrics().refused_by(Layer::Bulkhead), 1);
}

#[test]
fn the_timeout_bounds_the_retries() {
    let env = ManualEnv::new();
    let p = Pipeline::new("leaf", env.clone())
        .with_timeout(50 * MS)
        .with_retry(retry(10));
    let out = block(p.call(|_| {
        let env = env.clone();
        async move {
            env.sleep(20 * MS).await.map_err(|_| "cut")?;
            Err::<(), _>("slow 503")
        }
    }));
    assert_eq!(
        out,
        Err(PolicyError::Refused {
            layer: Layer::Timeout,
            reason: Reason::TimedOut { after: 50 * MS }
        })
    );
    assert_eq!(p.metrics().refused_by(Layer::Timeout), 1);
}

#[test]
fn the_fallback_sees_what_retries_could_not_fix() {
    let env = ManualEnv::new();
    let b = breaker(env.clock());
    let _ = b.force_open();
    let p = Pipeline::new("leaf", env)
        .with_retry(retry(2))
        .with_breaker(b)
        .with_fallback(Fallback::new(
            |e: &PolicyError<&str>| e.layer() == Some(Layer::Breaker),
            Value("cached"),
        ));
    assert_eq!(block(p.call(|_| async { Ok("fresh") })), Ok("cached"));
    assert_eq!(p.fallback().metrics().used, 1);
    assert_eq!(
        p.metrics().refused_by(Layer::Breaker),
        1,
        "counted below the fallback"
    );
    assert_eq!(p.metrics().ok, 0);
}

#[test]
fn the_callers_cancellation_is_ignored_by_every_layer() {
    let env = ManualEnv::new();
    let p = Pipeline::new("leaf", env.clone())
        .with_retry(retry(3))
        .with_breaker(breaker(env.clock()))
        .with_limit(Gate::new(Layer::Limit, 4));
    let out = block(p.call(|_| {
        env.cancel(); // the client hangs up mid-call
        async { Err::<(), _>("connection reset") }
    }));
    assert_eq!(out, Err(PolicyError::Interrupted(Interrupted::Cancelled)));
    assert_eq!(p.limit().verdicts(), [Verdict::Ignored]);
    let b = p.breaker().unwrap().metrics();
    assert_eq!(
        (b.counts.calls, b.counts.failures, b.state),
        (0, 0, State::Closed)
    );
    assert_eq!(p.retry().unwrap().metrics().retries, 0);
    assert_eq!(p.metrics().interrupted, 1);
}

#[test]
fn no_attempt_starts_without_the_expected_time() {
    let env = ManualEnv::new();
    env.set_deadline(Some(10 * MS));
    let p = Pipeline::new("leaf", env).with_retry(Retry::with_predicate(
        RetryConfig::builder()
            .expected_attempt(20 * MS)
            .build()
            .unwrap(),
        OnCallErrors,
    ));
    let out = block(p.call(|_| async { Ok::<_, ()>(()) }));
    assert_eq!(
        out,
        Err(PolicyError::Refused {
            layer: Layer::Retry,
            reason: Reason::DeadlineTooClose { remaining: 10 * MS }
        })
    );
}

#[test]
fn errors_name_their_layer() {
    let e: PolicyError<&str> = PolicyError::refused(
        Layer::Breaker,
        Reason::BreakerOpen {
            retry_after: Some(2 * MS),
        },
    );
    assert_eq!(
        e.to_string(),
        "breaker refused: circuit open, retry after 2ms"
    );
    let e: PolicyError<&str> =
        PolicyError::refused(Layer::Bulkhead, Reason::Interrupted(Interrupted::Deadline));
    assert_eq!(e, PolicyError::Interrupted(Interrupted::Deadline));
    assert_eq!(PolicyError::Call("503").to_string(), "call failed: 503");
}

/// The pipeline shares one system-clock reading between its layers; a
/// breaker on a custom clock still reads that clock at admission and at
/// the verdict, so calls the manual clock made slow are slow.
#[test]
fn a_breaker_on_a_custom_clock_times_calls_on_it_not_on_the_shared_reading() {
    let env = ManualEnv::new();
    let breaker = Arc::new(Breaker::new(
        "leaf",
        Config::builder()
            .count_window(10)
            .minimum_calls(10)
            .slow_call_threshold(100.0, 10 * MS)
            .clock(Arc::new(env.clock().clone()))
            .build()
            .unwrap(),
    ));
    let p = Pipeline::new("leaf", env.clone())
        .with_breaker(breaker)
        .with_limit(crate::limit::Adaptive::builder().build().unwrap());
    for took in [20 * MS, MS, 30 * MS] {
        let clock = env.clock().clone();
        assert_eq!(
            block(p.call(move |_| {
                let clock = clock.clone();
                async move {
                    clock.advance(took);
                    Ok::<_, ()>(())
                }
            })),
            Ok(())
        );
    }
    let counts = p.breaker().unwrap().metrics().counts;
    assert_eq!((counts.calls, counts.slow_calls), (3, 2));
    assert_eq!(p.limit().metrics().samples, 3);
}
