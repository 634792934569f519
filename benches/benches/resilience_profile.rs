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
    future::ready,
    hint::black_box,
    thread,
    time::{Duration, Instant},
};

use failsafe::CircuitBreaker as _;
use tower::ServiceExt as _;
use weft_resilience::{
    breaker::{Breaker, Config},
    env::WeftEnv,
    policy::Pipeline,
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

#[path = "common/stacks.rs"]
mod stacks;

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
    let stack = stacks::weft_stack(timeout.expect("checked"));
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
        stacks::tower_stack()
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
