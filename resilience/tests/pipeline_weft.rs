//! The pipeline on a real weft runtime: its futures are `Send` (spawnable),
//! its timeout is the deadline the retries see, and a caller that hangs up
//! trips nothing.
#![cfg(feature = "weft")]

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    task::Poll,
    time::Duration,
};

use weft_resilience::{
    breaker::{Breaker, Config, State},
    env::{Interrupted, WeftEnv},
    limit::Bulkhead,
    policy::{Admission, Layer, OnCallErrors, Pipeline, PolicyError, PolicySet, Reason},
    retry::{Backoff, Retry, RetryConfig},
};

fn runtime() -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

fn retry(expected: Duration) -> Retry<OnCallErrors> {
    Retry::with_predicate(
        RetryConfig::builder()
            .max_attempts(50)
            .backoff(Backoff::constant(Duration::from_millis(10)))
            .expected_attempt(expected)
            .build()
            .unwrap(),
        OnCallErrors,
    )
}

fn breaker() -> Arc<Breaker> {
    Arc::new(Breaker::new(
        "leaf",
        Config::builder()
            .count_window(4)
            .minimum_calls(2)
            .no_slow_calls()
            .build()
            .unwrap(),
    ))
}

#[test]
fn the_pipeline_timeout_is_the_deadline_retries_respect() {
    let rt = runtime();
    let pipeline = Arc::new(
        Pipeline::new("leaf", WeftEnv::new())
            .with_timeout(Duration::from_millis(300))
            .with_retry(retry(Duration::from_millis(100))),
    );
    let attempts = Arc::new(AtomicU32::new(0));
    let (p, a) = (pipeline.clone(), attempts.clone());
    let out = rt.block_on(async move {
        // Spawned: the pipeline's future is Send.
        weft::spawn(async move {
            p.call(|_| {
                let a = a.clone();
                async move {
                    a.fetch_add(1, Ordering::Relaxed);
                    weft::time::sleep(Duration::from_millis(60))
                        .await
                        .map_err(|_| "cut")?;
                    Err::<(), _>("503")
                }
            })
            .await
        })
        .await
        .unwrap()
    });
    // Attempts end at 60, 130, 200 ms; at 200 ms 100 ms are left, which a
    // 10 ms backoff and a 100 ms attempt do not fit: the retry stops
    // itself, before the timeout has to cut anything.
    assert_eq!(out, Err(PolicyError::Call("503")));
    let n = attempts.load(Ordering::Relaxed);
    assert!((2..=3).contains(&n), "{n}");
    assert_eq!(pipeline.retry().unwrap().metrics().deadline_stops, 1);
}

#[test]
fn a_caller_that_hangs_up_trips_nothing() {
    let rt = runtime();
    let pipeline = Arc::new(
        Pipeline::new("leaf", WeftEnv::new())
            .with_retry(retry(Duration::ZERO))
            .with_breaker(breaker()),
    );
    let p = pipeline.clone();
    rt.block_on(async move {
        for _ in 0..5 {
            let p = p.clone();
            let call = weft::spawn(async move {
                p.call(|_| async {
                    // Waits on the downstream; the caller goes away.
                    weft::time::sleep(Duration::from_secs(10)).await?;
                    Ok::<_, weft::cancel::Cancelled>(())
                })
                .await
            });
            weft::time::sleep(Duration::from_millis(5)).await.unwrap();
            call.cancel();
            let out = call.await.unwrap();
            assert_eq!(out, Err(PolicyError::Interrupted(Interrupted::Cancelled)));
        }
    });
    let b = pipeline.breaker().unwrap().metrics();
    assert_eq!(b.state, State::Closed);
    assert_eq!((b.counts.calls, b.counts.failures), (0, 0));
    assert_eq!(pipeline.metrics().interrupted, 5);
    assert_eq!(pipeline.retry().unwrap().metrics().retries, 0);
}

/// Without a retry layer the breaker is the first to look at the caller's
/// scope: a caller cancelled (or past its deadline) before the call is
/// reported as interrupted, never as an open circuit, and the operation
/// never runs.
#[test]
fn an_ended_caller_without_retry_is_interrupted_not_refused_by_the_breaker() {
    let rt = runtime();
    let pipeline = Arc::new(Pipeline::new("leaf", WeftEnv::new()).with_breaker(breaker()));
    let ran = Arc::new(AtomicU32::new(0));
    let (p, r) = (pipeline.clone(), ran.clone());
    let (cancelled, past_deadline) = rt.block_on(async move {
        let (p1, r1) = (p.clone(), r.clone());
        let scope = weft::cancel::scope(async move {
            p1.call(|_| async {
                r1.fetch_add(1, Ordering::SeqCst);
                Ok::<_, weft::cancel::Cancelled>(())
            })
            .await
        });
        scope.handle().cancel();
        let cancelled = scope.await;
        let late = weft::task::Builder::new()
            .timeout(Duration::from_millis(5))
            .spawn(async move {
                // Level-triggered: the sleep ends at the deadline, and the
                // call then starts in a scope past it.
                let _ = weft::time::sleep(Duration::from_secs(5)).await;
                p.call(|_| async {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, weft::cancel::Cancelled>(())
                })
                .await
            });
        (cancelled, late.await)
    });
    assert_eq!(
        cancelled,
        Err(PolicyError::Interrupted(Interrupted::Cancelled))
    );
    assert_eq!(
        past_deadline.expect("the task ran to its end"),
        Err(PolicyError::Interrupted(Interrupted::Deadline))
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the operation never ran");
    let b = pipeline.breaker().unwrap().metrics();
    assert_eq!(b.state, State::Closed);
    assert_eq!((b.counts.calls, b.counts.failures), (0, 0));
}

#[test]
fn a_failing_endpoint_opens_its_own_breaker_only() {
    let rt = runtime();
    let set = PolicySet::new(|name: &&'static str| {
        Pipeline::new(*name, WeftEnv::new())
            .with_timeout(Duration::from_secs(1))
            .with_breaker(breaker())
    });
    rt.block_on(async {
        for _ in 0..4 {
            let _ = set
                .get(&"flaky")
                .call(|_| async { Err::<(), _>("503") })
                .await;
            let _ = set
                .get(&"healthy")
                .call(|_| async { Ok::<_, &str>(()) })
                .await;
        }
        let out = set
            .get(&"flaky")
            .call(|_| async { Ok::<_, &str>(()) })
            .await;
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
        let out = set
            .get(&"healthy")
            .call(|_| async { Ok::<_, &str>(()) })
            .await;
        assert_eq!(out, Ok(()));
    });
    assert_eq!(set.len(), 2);
}

#[test]
fn a_full_bulkhead_names_itself_and_a_cancelled_waiter_leaks_nothing() {
    use weft_resilience::limit::Bulkhead;
    let rt = runtime();
    let pipeline = Arc::new(
        Pipeline::new("leaf", WeftEnv::new()).with_bulkhead(
            Bulkhead::builder()
                .max_concurrent(1)
                .max_waiting(1)
                .build()
                .unwrap(),
        ),
    );
    let p = pipeline.clone();
    rt.block_on(async move {
        let slow = |p: Arc<Pipeline<WeftEnv, _, Bulkhead>>| {
            weft::spawn(async move {
                p.call(|_| async {
                    weft::time::sleep(Duration::from_millis(100)).await?;
                    Ok::<_, weft::cancel::Cancelled>(())
                })
                .await
            })
        };
        let holder = slow(p.clone());
        weft::time::sleep(Duration::from_millis(10)).await.unwrap();
        let waiter = slow(p.clone());
        weft::time::sleep(Duration::from_millis(10)).await.unwrap();
        let out = p
            .call(|_| async { Ok::<_, weft::cancel::Cancelled>(()) })
            .await;
        assert_eq!(
            out,
            Err(PolicyError::Refused {
                layer: Layer::Bulkhead,
                reason: Reason::Full
            })
        );
        waiter.cancel();
        assert_eq!(
            waiter.await.unwrap(),
            Err(PolicyError::Interrupted(Interrupted::Cancelled))
        );
        assert_eq!(holder.await.unwrap(), Ok(()));
    });
    let m = pipeline.bulkhead().metrics();
    assert_eq!((m.in_flight, m.waiting), (0, 0), "nothing leaked");
    assert_eq!(pipeline.metrics().refused_by(Layer::Bulkhead), 1);
}

/// A limit layer whose admission waits once, and cancels its caller's
/// scope while it does (a caller hanging up during a queue wait).
struct CancelsWhileWaiting;

impl Admission for CancelsWhileWaiting {
    type Permit<'a> = ();
    type Acquire<'a> = Pin<Box<dyn Future<Output = Result<(), Reason>> + Send + 'a>>;

    fn layer(&self) -> Layer {
        Layer::Limit
    }

    fn acquire(&self) -> Self::Acquire<'_> {
        let mut waited = false;
        Box::pin(std::future::poll_fn(move |cx| {
            if waited {
                return Poll::Ready(Ok(()));
            }
            waited = true;
            weft::cancel::current().expect("in a task").cancel();
            cx.waker().wake_by_ref();
            Poll::Pending
        }))
    }
}

/// The pipeline checks the caller's scope once for the layers below the
/// breaker, and again after a layer whose admission may wait: a caller
/// cancelled during that wait takes no bulkhead slot, its operation never
/// runs, and it is reported as interrupted.
#[test]
fn a_caller_cancelled_while_a_layer_waits_takes_nothing_below_it() {
    let rt = runtime();
    let bulkhead = Arc::new(Bulkhead::builder().max_concurrent(4).build().unwrap());
    let pipeline = Arc::new(
        Pipeline::new("leaf", WeftEnv::new())
            .with_breaker(breaker())
            .with_limit(CancelsWhileWaiting)
            .with_bulkhead(bulkhead.clone()),
    );
    let ran = Arc::new(AtomicU32::new(0));
    let (p, r) = (pipeline.clone(), ran.clone());
    let out = rt.block_on(async move {
        weft::cancel::scope(async move {
            p.call(|_| async {
                r.fetch_add(1, Ordering::SeqCst);
                Ok::<_, weft::cancel::Cancelled>(())
            })
            .await
        })
        .await
    });
    assert_eq!(out, Err(PolicyError::Interrupted(Interrupted::Cancelled)));
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the operation never ran");
    let m = bulkhead.metrics();
    assert_eq!((m.in_flight, m.available, m.rejected), (0, 4, 0));
    assert_eq!(pipeline.metrics().interrupted, 1);
    let b = pipeline.breaker().unwrap().metrics();
    assert_eq!((b.counts.calls, b.counts.failures), (0, 0), "ignored");
}

/// On the default system clock the pipeline's layers share one clock
/// reading at admission and one at the verdict: the verdict's is taken
/// after the call, so a call that took longer than the slow-call threshold
/// is slow (and a quick one is not).
#[test]
fn shared_clock_readings_time_the_call_from_admission_to_verdict() {
    let rt = runtime();
    let breaker = Arc::new(Breaker::new(
        "leaf",
        Config::builder()
            .count_window(10)
            .minimum_calls(10)
            .slow_call_threshold(100.0, Duration::from_millis(40))
            .build()
            .unwrap(),
    ));
    let limit = Arc::new(weft_resilience::limit::Adaptive::builder().build().unwrap());
    let pipeline = Pipeline::new("leaf", WeftEnv::new())
        .with_breaker(breaker.clone())
        .with_limit(limit.clone());
    rt.block_on(async {
        for took in [Duration::from_millis(80), Duration::ZERO] {
            let out = pipeline
                .call(|_| async move {
                    weft::time::sleep(took).await?;
                    Ok::<_, weft::cancel::Cancelled>(())
                })
                .await;
            assert_eq!(out, Ok(()));
        }
    });
    let counts = breaker.metrics().counts;
    assert_eq!((counts.calls, counts.slow_calls), (2, 1));
    assert_eq!(limit.metrics().samples, 2);
}
