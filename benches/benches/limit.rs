//! Limiters: GCRA acquire against `governor` (1 and 2 threads), and a
//! bulkhead acquire + release against tokio's `Semaphore` and tower's
//! `ConcurrencyLimit` (the `Service` around a ready future).
//!
//! Every limiter admits every call here (a rate far above the call rate, a
//! cap far above the concurrency), so the figure is the admission path.
//!
//! Run: `cargo bench -p weft-benches --bench limit`.

use std::{
    convert::Infallible,
    future::{ready, Future, Ready},
    hint::black_box,
    num::NonZeroU32,
    pin::pin,
    sync::Barrier,
    task::{Context, Poll, Waker},
    thread,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tower::{Service, ServiceExt as _};
use weft_resilience::limit::{Bulkhead, Gcra};

/// Runs `call` `iters` times on each of two threads; returns the wall time.
fn two_threads(iters: u64, call: &(dyn Fn() + Sync)) -> Duration {
    let barrier = Barrier::new(3);
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    call();
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

/// A service that answers at once.
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

fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    pin!(future).poll(&mut cx)
}

fn gcra(c: &mut Criterion) {
    let weft = Gcra::builder()
        .rate(1_000_000_000, Duration::from_secs(1))
        .burst(1_000_000)
        .build()
        .expect("valid");
    let quota = governor::Quota::per_second(NonZeroU32::new(1_000_000_000).expect("non-zero"))
        .allow_burst(NonZeroU32::new(1_000_000).expect("non-zero"));
    let governor = governor::RateLimiter::direct(quota);
    let weft_acquire = || {
        let _ = black_box(weft.try_acquire());
    };
    let governor_check = || {
        let _ = black_box(governor.check());
    };
    let workloads: [(&str, &(dyn Fn() + Sync)); 2] =
        [("weft_gcra", &weft_acquire), ("governor", &governor_check)];
    let mut group = c.benchmark_group("rate/1_thread");
    group.throughput(Throughput::Elements(1));
    for (name, call) in workloads {
        group.bench_function(name, |b| b.iter(call));
    }
    group.finish();
    let mut group = c.benchmark_group("rate/2_threads");
    group.throughput(Throughput::Elements(2));
    for (name, call) in workloads {
        group.bench_function(name, |b| b.iter_custom(|iters| two_threads(iters, call)));
    }
    group.finish();
}

fn bulkhead(c: &mut Criterion) {
    let weft = Bulkhead::builder()
        .max_concurrent(1 << 20)
        .build()
        .expect("valid");
    let tokio_sem = tokio::sync::Semaphore::new(1 << 20);
    let tower_limit = tower::ServiceBuilder::new()
        .concurrency_limit(1 << 20)
        .service(Echo);
    let mut group = c.benchmark_group("bulkhead/1_thread");
    group.throughput(Throughput::Elements(1));
    group.bench_function("weft_bulkhead", |b| {
        b.iter(|| drop(black_box(weft.try_acquire().expect("room"))))
    });
    group.bench_function("tokio_semaphore", |b| {
        b.iter(|| drop(black_box(tokio_sem.try_acquire().expect("room"))))
    });
    group.bench_function("tower_concurrency_limit", |b| {
        // Each iteration: a clone of the service (as a server does per
        // connection or request), ready, called, its future completed.
        b.iter(|| {
            let mut svc = tower_limit.clone();
            let Poll::Ready(Ok(svc)) = poll_once(svc.ready()) else {
                panic!("a limit far above the concurrency is always ready")
            };
            let Poll::Ready(Ok(v)) = poll_once(svc.call(1)) else {
                panic!("ready future")
            };
            black_box(v);
        })
    });
    group.finish();

    let weft_call = || drop(black_box(weft.try_acquire().expect("room")));
    let tokio_call = || drop(black_box(tokio_sem.try_acquire().expect("room")));
    let workloads: [(&str, &(dyn Fn() + Sync)); 2] = [
        ("weft_bulkhead", &weft_call),
        ("tokio_semaphore", &tokio_call),
    ];
    let mut group = c.benchmark_group("bulkhead/2_threads");
    group.throughput(Throughput::Elements(2));
    for (name, call) in workloads {
        group.bench_function(name, |b| b.iter_custom(|iters| two_threads(iters, call)));
    }
    group.finish();
}

criterion_group! {
    name = limit;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = gcra, bulkhead
}
criterion_main!(limit);
