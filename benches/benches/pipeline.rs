//! The whole pipeline around a ready future: timeout + retry (with a
//! budget) + breaker + adaptive limit + bulkhead, weft against the same
//! stack built from tower (timeout, retry with a `TpsBudget`, two
//! `ConcurrencyLimit`s) and failsafe-rs (the breaker), each inside its own
//! runtime's task. Plus the retry storm, printed: calls reaching a dead
//! downstream for 10 s of offered load, with a 10 % budget and naive.
//!
//! Run: `cargo bench -p weft-benches --bench pipeline`.

use std::{
    convert::Infallible,
    future::{ready, Future},
    hint::black_box,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tower::ServiceExt as _;
use weft_resilience::{
    env::{ManualEnv, WeftEnv},
    policy::Pipeline,
    retry::{Backoff, Retry, RetryBudget, RetryConfig},
};

#[path = "common/stacks.rs"]
mod stacks;

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline/ready_future");
    group.throughput(Throughput::Elements(1));

    let weft_rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a weft runtime");
    // The timeout: 1 s (weft's deadline from the TSC scaled from a
    // per-thread `Instant` anchor) and 5 s (at 2 s and more weft measures
    // on the coarse clock).
    for (name, timeout) in [
        ("weft_pipeline", Duration::from_secs(1)),
        ("weft_pipeline_5s_timeout", Duration::from_secs(5)),
    ] {
        let weft_stack = stacks::weft_stack(timeout);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                weft_rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let out = weft_stack.call(|_| ready(Ok::<u64, Infallible>(i))).await;
                        black_box(out.is_ok());
                    }
                    start.elapsed()
                })
            })
        });
    }
    let bare = Pipeline::new("leaf", WeftEnv::new());
    group.bench_function("weft_pipeline_no_layers", |b| {
        b.iter_custom(|iters| {
            weft_rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let out = bare.call(|_| ready(Ok::<u64, Infallible>(i))).await;
                    black_box(out.is_ok());
                }
                start.elapsed()
            })
        })
    });

    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let tower_stack = {
        let _guard = tokio_rt.enter();
        stacks::tower_stack()
    };
    group.bench_function("tower_failsafe", |b| {
        b.iter_custom(|iters| {
            tokio_rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    // A clone per call, as a server does per request.
                    let out = tower_stack.clone().oneshot(i).await;
                    black_box(out.is_ok());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// Calls reaching a downstream that fails every call for 10 s of offered
/// load at 1000 calls/s, 3 attempts per call.
fn storm(budget: Option<f64>) -> (u64, u64) {
    let env = ManualEnv::new();
    let mut config = RetryConfig::builder()
        .max_attempts(3)
        .backoff(Backoff::none());
    if let Some(ratio) = budget {
        config = config.budget(Arc::new(
            RetryBudget::builder()
                .ratio(ratio)
                .floor_per_sec(10)
                .window(Duration::from_secs(10), 10)
                .clock(Arc::new(env.clock().clone()))
                .build()
                .expect("valid"),
        ));
    }
    let retry = Retry::new(config.build().expect("valid"));
    let reached = std::cell::Cell::new(0u64);
    let offered = 10_000u64;
    for i in 0..offered {
        env.clock().set(Duration::from_millis(i));
        let mut call = pin!(retry.call(&env, |_| {
            reached.set(reached.get() + 1);
            ready(Err::<(), _>("503"))
        }));
        let Poll::Ready(_) = call.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
            panic!("the simulation never waits")
        };
    }
    (offered, reached.get())
}

fn retry_storm(_c: &mut Criterion) {
    for (name, budget) in [("10 % budget", Some(0.1)), ("no budget (naive)", None)] {
        let (offered, reached) = storm(budget);
        println!(
            "retry storm, downstream failing 100 % for 10 s, 3 attempts, {name}: offered {offered}, reached the downstream {reached} ({:.2}x)",
            reached as f64 / offered as f64
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = retry_storm, pipeline
}
criterion_main!(benches);
