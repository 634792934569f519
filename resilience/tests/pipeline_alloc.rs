//! The pipeline's steady path allocates nothing: a timeout, retry, breaker,
//! adaptive limit, bulkhead and rate-limit layer around a ready call,
//! counted by a global allocator.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    future::{ready, Future},
    pin::pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use weft_resilience::{
    breaker::{Breaker, Config},
    env::{Env, ManualEnv},
    limit::{Adaptive, Bulkhead},
    policy::{Admission, Layer, OnCallErrors, Pipeline, Reason},
    retry::{Backoff, Retry, RetryBudget, RetryConfig},
};

/// Counts allocations made by the thread that switched `COUNTING` on (the
/// test harness's own threads allocate now and then; they are not the
/// pipeline's).
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A user-written limiter: a lock-free concurrency cap.
#[derive(Debug)]
struct Cap(AtomicU32, u32, Layer);

struct CapPermit<'a>(&'a Cap);
impl Drop for CapPermit<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission for Cap {
    type Permit<'a> = CapPermit<'a>;
    type Acquire<'a> = std::future::Ready<Result<CapPermit<'a>, Reason>>;

    fn layer(&self) -> Layer {
        self.2
    }

    fn acquire(&self) -> Self::Acquire<'_> {
        ready(
            self.0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < self.1).then_some(n + 1)
                })
                .map(|_| CapPermit(self))
                .map_err(|_| Reason::Full),
        )
    }
}

fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the call waited"),
    }
}

fn stack<En: Env>(env: En) -> impl Fn() -> u64 {
    let budget = Arc::new(RetryBudget::builder().build().unwrap());
    let pipeline = Pipeline::new("leaf", env)
        .with_timeout(Duration::from_secs(1))
        .with_retry(Retry::with_predicate(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(Backoff::default())
                .budget(budget)
                .build()
                .unwrap(),
            OnCallErrors,
        ))
        .with_breaker(Arc::new(Breaker::new("leaf", Config::default())))
        .with_limit(Adaptive::builder().build().unwrap())
        .with_bulkhead(Bulkhead::builder().max_concurrent(100).build().unwrap())
        .with_rate_limit(Cap(AtomicU32::new(0), 100, Layer::RateLimit));
    move || {
        let out = poll_once(pipeline.call(|_| ready(Ok::<u64, ()>(7))));
        assert_eq!(out, Ok(7));
        pipeline.metrics().ok
    }
}

fn allocations_per_call(call: impl Fn() -> u64) -> (u64, u64) {
    for _ in 0..1_000 {
        call(); // warm every lazily made thing up
    }
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    let mut ok = 0;
    for _ in 0..10_000 {
        ok = call();
    }
    COUNTING.with(|c| c.set(false));
    (ALLOCS.load(Ordering::SeqCst), ok)
}

#[test]
fn the_steady_path_allocates_nothing() {
    let (allocs, ok) = allocations_per_call(stack(ManualEnv::new()));
    assert_eq!(ok, 11_000);
    assert_eq!(allocs, 0, "allocations in 10 000 calls (manual env)");

    #[cfg(feature = "weft")]
    {
        let rt = weft::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (allocs, ok) = rt
            .block_on(async { allocations_per_call(stack(weft_resilience::env::WeftEnv::new())) });
        assert_eq!(ok, 11_000);
        assert_eq!(allocs, 0, "allocations in 10 000 calls (weft env)");
    }
}
