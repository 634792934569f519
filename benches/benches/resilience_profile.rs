//! A driver for profiling the resilience benches' hot paths under callgrind
//! or `perf record`: runs one workload a given number of times and exits,
//! with no criterion around it. Instruction counts from
//! `valgrind --tool=callgrind` stay comparable while the machine is loaded,
//! where wall times do not. A bench target (not a `src/bin`) so that it can
//! use the benches' dev-dependencies (failsafe, tower).
//!
//! ```text
//! cargo bench -p weft-benches --bench resilience_profile --no-run
//! resilience_profile WORKLOAD CALLS [THREADS]
//!   breaker_count        acquire + success, count window, no slow calls
//!   breaker_timed        the same, default config (slow calls timed)
//!   breaker_time_window  default config, 60 s time window of 60 buckets
//!   breaker_call_sync    `call_sync` on the default config
//!   failsafe             failsafe-rs's default breaker
//!   pipeline             timeout 1 s + retry + breaker + adaptive + bulkhead
//!   pipeline_5s          the same with a 5 s timeout
//!   pipeline_bare        the pipeline with no layers
//!   tower_failsafe       the same stack from tower and failsafe-rs
//! ```
//!
//! THREADS (breaker workloads only, default 1) runs CALLS on each of that
//! many threads at once. Per-call instruction counts: run with CALLS and
//! 2 × CALLS and divide the difference by CALLS (that cancels the setup).

use std::{
    convert::Infallible,
    future::{ready, Ready},
    hint::black_box,
    sync::Arc,
    task::{Context, Poll},
    thread,
    time::{Duration, Instant},
};

use failsafe::CircuitBreaker as _;
use tower::{Service, ServiceBuilder, ServiceExt as _};
use weft_resilience::{
    breaker::{Breaker, Config},
    env::WeftEnv,
    limit::{Adaptive, Bulkhead},
    policy::{OnCallErrors, Pipeline},
    retry::{Backoff, Retry, RetryBudget, RetryConfig},
};

fn ok() -> Result<u64, ()> {
    Ok(black_box(1))
}

fn on_threads(threads: usize, calls: u64, call: &(dyn Fn() + Sync)) {
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..calls {
                    call();
                }
            });
        }
    });
}

fn breaker(config: Config) -> Breaker {
    Breaker::new("profiled", config)
}

#[derive(Clone, Copy)]
struct Echo;

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

#[derive(Clone)]
struct Attempts {
    left: usize,
    budget: Arc<tower::retry::budget::TpsBudget>,
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Ready<()>> {
        use tower::retry::budget::Budget as _;
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

fn weft_pipeline(timeout: Option<Duration>, calls: u64) {
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a weft runtime");
    if timeout.is_none() {
        let bare = Pipeline::new("leaf", WeftEnv::new());
        rt.block_on(async {
            for i in 0..calls {
                let out = bare.call(|_| ready(Ok::<u64, Infallible>(i))).await;
                black_box(out.is_ok());
            }
        });
        return;
    }
    let budget = Arc::new(RetryBudget::builder().build().expect("valid"));
    let stack = Pipeline::new("leaf", WeftEnv::new())
        .with_timeout(timeout.expect("checked"))
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
        );
    eprintln!(
        "the pipeline's call future: {} bytes",
        std::mem::size_of_val(&stack.call(|_| ready(Ok::<u64, Infallible>(0))))
    );
    rt.block_on(async {
        for i in 0..calls {
            let out = stack.call(|_| ready(Ok::<u64, Infallible>(i))).await;
            black_box(out.is_ok());
        }
    });
}

fn tower_failsafe(calls: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let stack = {
        let _guard = rt.enter();
        ServiceBuilder::new()
            .timeout(Duration::from_secs(1))
            .retry(Attempts {
                left: 2,
                budget: Arc::new(tower::retry::budget::TpsBudget::new(
                    Duration::from_secs(10),
                    10,
                    0.2,
                )),
            })
            .layer_fn(|inner| FailsafeService {
                inner,
                breaker: failsafe::Config::new().build(),
            })
            .concurrency_limit(1 << 20)
            .concurrency_limit(1 << 20)
            .service(Echo)
    };
    rt.block_on(async {
        for i in 0..calls {
            let out = stack.clone().oneshot(i).await;
            black_box(out.is_ok());
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` runs every bench target with `--bench`: do nothing then.
    if args.is_empty() || args[0].starts_with("--") {
        return;
    }
    let usage = "resilience_profile WORKLOAD CALLS [THREADS]";
    let workload = args[0].as_str();
    let calls: u64 = args.get(1).and_then(|s| s.parse().ok()).expect(usage);
    let threads: usize = args.get(2).map_or(1, |s| s.parse().expect(usage));
    let start = Instant::now();
    match workload {
        "breaker_count" => {
            let b = breaker(Config::builder().no_slow_calls().build().expect("valid"));
            on_threads(threads, calls, &|| {
                let permit = b.acquire().expect("closed");
                black_box(ok()).expect("ok");
                permit.success();
            });
        }
        "breaker_timed" => {
            let b = breaker(Config::default());
            on_threads(threads, calls, &|| {
                let permit = b.acquire().expect("closed");
                black_box(ok()).expect("ok");
                permit.success();
            });
        }
        "breaker_time_window" => {
            let b = breaker(
                Config::builder()
                    .time_window(Duration::from_secs(60), 60)
                    .build()
                    .expect("valid"),
            );
            on_threads(threads, calls, &|| {
                let permit = b.acquire().expect("closed");
                black_box(ok()).expect("ok");
                permit.success();
            });
        }
        "breaker_call_sync" => {
            let b = breaker(Config::default());
            on_threads(threads, calls, &|| {
                let _ = black_box(b.call_sync(ok));
            });
        }
        "failsafe" => {
            let b = failsafe::Config::new().build();
            on_threads(threads, calls, &|| {
                let _ = black_box(b.call(ok));
            });
        }
        "pipeline" => weft_pipeline(Some(Duration::from_secs(1)), calls),
        "pipeline_5s" => weft_pipeline(Some(Duration::from_secs(5)), calls),
        "pipeline_bare" => weft_pipeline(None, calls),
        "tower_failsafe" => tower_failsafe(calls),
        other => panic!("unknown workload {other}; {usage}"),
    }
    let per_call = start.elapsed().as_nanos() as f64 / (calls as f64 * threads as f64);
    eprintln!("{workload}: {calls} calls x {threads} threads, {per_call:.1} ns per call (wall)");
}
