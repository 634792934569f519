//! Breaker throughput: acquire + record success on a healthy breaker, one
//! thread and two, against failsafe-rs and a `Mutex<VecDeque>` breaker.
//! `weft_timed` is the default config (slow calls timed on the coarse
//! `SystemClock`); `weft_timed_precise` times them on `SystemClock::precise`;
//! `weft_time_window` is the default config with a 60 s time window of 60
//! buckets; `weft_set_get` looks the breaker up in a `BreakerSet` of 64 keys
//! on every call.
//!
//! Run: `cargo bench -p weft-benches --bench breaker`.

use std::{
    collections::VecDeque,
    hint::black_box,
    sync::{Arc, Barrier, Mutex},
    thread,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use failsafe::CircuitBreaker as _;
use weft_resilience::{
    breaker::{Breaker, Config},
    clock::SystemClock,
};

/// The rival: the textbook breaker, a count window in a `VecDeque` behind a
/// mutex (what resilience4j's default synchronized window amounts to).
#[derive(Debug)]
struct MutexBreaker {
    inner: Mutex<MutexInner>,
    size: usize,
}

#[derive(Debug)]
struct MutexInner {
    window: VecDeque<bool>,
    failures: usize,
    open_until: Option<Instant>,
}

impl MutexBreaker {
    fn new(size: usize) -> MutexBreaker {
        MutexBreaker {
            inner: Mutex::new(MutexInner {
                window: VecDeque::with_capacity(size),
                failures: 0,
                open_until: None,
            }),
            size,
        }
    }

    fn call<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Option<Result<T, E>> {
        {
            let inner = self.inner.lock().expect("lock");
            if inner.open_until.is_some_and(|until| Instant::now() < until) {
                return None;
            }
        }
        let result = f();
        let mut inner = self.inner.lock().expect("lock");
        let failed = result.is_err();
        if inner.window.len() == self.size && inner.window.pop_front() == Some(true) {
            inner.failures -= 1;
        }
        inner.window.push_back(failed);
        inner.failures += usize::from(failed);
        if inner.window.len() == self.size && inner.failures * 2 >= self.size {
            inner.open_until = Some(Instant::now() + Duration::from_secs(60));
        }
        Some(result)
    }
}

fn ok() -> Result<u64, ()> {
    Ok(black_box(1))
}

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

fn benches(c: &mut Criterion) {
    let timed = Breaker::new("timed", Config::default());
    let timed_precise = Breaker::new(
        "timed_precise",
        Config::builder()
            .clock(Arc::new(SystemClock::precise()))
            .build()
            .expect("valid"),
    );
    let untimed = Breaker::new(
        "untimed",
        Config::builder().no_slow_calls().build().expect("valid"),
    );
    let time_window = Breaker::new(
        "time_window",
        Config::builder()
            .time_window(Duration::from_secs(60), 60)
            .build()
            .expect("valid"),
    );
    let set = weft_resilience::breaker::BreakerSet::<u32>::new(Config::default());
    for key in 0..64 {
        let _ = set.get(&key);
    }
    let failsafe = failsafe::Config::new().build();
    let rival = MutexBreaker::new(100);

    let weft_timed = || {
        let permit = timed.acquire().expect("closed");
        black_box(ok()).expect("ok");
        permit.success();
    };
    let weft_timed_precise = || {
        let permit = timed_precise.acquire().expect("closed");
        black_box(ok()).expect("ok");
        permit.success();
    };
    let weft_untimed = || {
        let permit = untimed.acquire().expect("closed");
        black_box(ok()).expect("ok");
        permit.success();
    };
    let weft_time_window = || {
        let permit = time_window.acquire().expect("closed");
        black_box(ok()).expect("ok");
        permit.success();
    };
    let weft_set = || {
        let breaker = set.get(black_box(&17));
        let permit = breaker.acquire().expect("closed");
        black_box(ok()).expect("ok");
        permit.success();
    };
    let weft_call_sync = || {
        let _ = black_box(timed.call_sync(ok));
    };
    let failsafe_call = || {
        let _ = black_box(failsafe.call(ok));
    };
    let rival_call = || {
        let _ = black_box(rival.call(ok));
    };
    let workloads: [(&str, &(dyn Fn() + Sync)); 8] = [
        ("weft", &weft_untimed),
        ("weft_timed", &weft_timed),
        ("weft_time_window", &weft_time_window),
        ("weft_set_get", &weft_set),
        ("weft_timed_precise", &weft_timed_precise),
        ("weft_call_sync", &weft_call_sync),
        ("failsafe", &failsafe_call),
        ("mutex_vecdeque", &rival_call),
    ];

    let mut group = c.benchmark_group("breaker/1_thread");
    group.throughput(Throughput::Elements(1));
    for (name, call) in workloads {
        group.bench_function(name, |b| b.iter(call));
    }
    group.finish();

    let mut group = c.benchmark_group("breaker/2_threads");
    group.throughput(Throughput::Elements(2));
    for (name, call) in workloads {
        group.bench_function(name, |b| b.iter_custom(|iters| two_threads(iters, call)));
    }
    group.finish();
}

criterion_group! {
    name = breaker;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = benches
}
criterion_main!(breaker);
