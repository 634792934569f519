#![cfg(feature = "weft")]
//! Bulkhead and GCRA waits on a real weft runtime: a wait is an await point
//! that leaves at the caller's deadline with a distinct error, gives back
//! what it took when cancelled, and never leaks a slot.
//!
//! Run: `cargo test -p weft-resilience --features weft --test weft_limits`
//! (and again with `WEFT_IO=epoll`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use weft::{
    cancel::scope,
    runtime::{Builder as RtBuilder, Runtime},
    task::Builder,
    time::sleep,
};
use weft_resilience::{
    caller::CallerEnd,
    limit::{Bulkhead, BulkheadError, Gcra, RateError},
};

fn rt() -> Runtime {
    RtBuilder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

fn bounded<F: std::future::Future>(rt: &Runtime, f: F) -> F::Output {
    rt.block_on(async {
        weft::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("the test finished within 20 s")
    })
}

#[test]
fn a_queued_caller_gets_the_slot_a_holder_releases() {
    let rt = rt();
    let bulkhead = Arc::new(
        Bulkhead::builder()
            .max_concurrent(1)
            .max_waiting(1)
            .build()
            .expect("valid"),
    );
    let b = Arc::clone(&bulkhead);
    bounded(&rt, async move {
        let held = b.try_acquire().expect("room");
        let b2 = Arc::clone(&b);
        // An owned permit, held by the spawned task past the wait.
        let waiter = weft::spawn(async move {
            let permit = b2.acquire_owned().await?;
            assert_eq!(b2.metrics().in_flight, 1);
            drop(permit);
            Ok::<(), BulkheadError>(())
        });
        while b.metrics().waiting == 0 {
            sleep(Duration::from_millis(1)).await.expect("live");
        }
        // The queue (1) is full: a third caller is refused at once.
        assert_eq!(b.acquire().await.map(drop), Err(BulkheadError::Full));
        drop(held);
        waiter.await.expect("joined").expect("got the slot");
    });
    let m = bulkhead.metrics();
    assert_eq!((m.available, m.waiting, m.in_flight), (1, 0, 0), "{m:?}");
}

#[test]
fn a_waiter_leaves_at_its_deadline_with_a_distinct_error_and_nothing_leaks() {
    let rt = rt();
    let bulkhead = Arc::new(
        Bulkhead::builder()
            .max_concurrent(2)
            .max_waiting(8)
            .build()
            .expect("valid"),
    );
    let b = Arc::clone(&bulkhead);
    bounded(&rt, async move {
        let _a = b.try_acquire().expect("room");
        let _b = b.try_acquire().expect("room");
        let mut waiters = Vec::new();
        for _ in 0..4 {
            let b = Arc::clone(&b);
            waiters.push(
                Builder::new()
                    .timeout(Duration::from_millis(30))
                    .spawn(async move { b.acquire().await.map(drop) }),
            );
        }
        for waiter in waiters {
            assert_eq!(
                waiter.await.expect("joined"),
                Err(BulkheadError::DeadlineExceeded)
            );
        }
        // Explicitly cancelled waiters, and waits whose future is dropped.
        for _ in 0..4 {
            let b2 = Arc::clone(&b);
            let s = scope(async move { b2.acquire().await.map(drop) });
            let handle = s.handle();
            let task = weft::spawn(s);
            sleep(Duration::from_millis(2)).await.expect("live");
            handle.cancel();
            assert_eq!(task.await.expect("joined"), Err(BulkheadError::Cancelled));
            let dropped = weft::time::timeout(Duration::from_millis(2), b.acquire()).await;
            assert!(dropped.is_err(), "timed out while queued");
        }
        // Already past the deadline: refused before queueing.
        let b3 = Arc::clone(&b);
        let late = Builder::new()
            .deadline(Instant::now() - Duration::from_millis(1))
            .spawn(async move { b3.acquire().await.map(drop) })
            .await
            .expect("joined");
        assert_eq!(late, Err(BulkheadError::DeadlineExceeded));
    });
    let m = bulkhead.metrics();
    assert_eq!((m.available, m.waiting, m.in_flight), (2, 0, 0), "{m:?}");
    assert_eq!(m.rejected, 0, "a caller's cancellation is not a refusal");
    assert!(bulkhead.try_acquire().is_ok());
}

#[test]
fn max_wait_ends_a_wait_with_its_own_error() {
    let rt = rt();
    let bulkhead = Bulkhead::builder()
        .max_concurrent(1)
        .max_waiting(1)
        .max_wait(Some(Duration::from_millis(10)))
        .build()
        .expect("valid");
    let result = bounded(&rt, async {
        let _held = bulkhead.try_acquire().expect("room");
        bulkhead.acquire().await.map(drop)
    });
    assert_eq!(result, Err(BulkheadError::MaxWait));
    assert_eq!(bulkhead.metrics().available, 1);
}

#[test]
fn a_rate_wait_that_cannot_end_before_the_deadline_is_refused_at_once() {
    let rt = rt();
    let limiter = Arc::new(
        Gcra::builder()
            .rate(1, Duration::from_secs(1))
            .build()
            .expect("valid"),
    );
    limiter.try_acquire().expect("the burst");
    // The next token is ~1 s away. On a loaded machine the task may first
    // run after its deadline (then it is refused as cancelled, also taking
    // nothing); try again with a longer budget, still under a second.
    for budget in [200, 400, 800].map(Duration::from_millis) {
        let l = Arc::clone(&limiter);
        let (result, took) = bounded(&rt, async move {
            Builder::new()
                .timeout(budget)
                .spawn(async move {
                    let start = Instant::now();
                    let r = l.acquire(1, Duration::from_secs(5)).await;
                    (r, start.elapsed())
                })
                .await
                .expect("joined")
        });
        match result {
            Err(RateError::DeadlineTooSoon { wait, remaining }) => {
                assert!(wait > remaining, "{wait:?} {remaining:?}");
                assert!(
                    took < budget,
                    "refused at once, not at the deadline: {took:?}"
                );
                break;
            }
            Err(RateError::Cancelled(CallerEnd::DeadlineExceeded))
                if budget < Duration::from_millis(800) => {}
            other => panic!("expected DeadlineTooSoon, got {other:?}"),
        }
    }
    assert!(
        limiter.metrics().retry_after > Duration::from_millis(800),
        "nothing was taken"
    );
}

#[test]
fn a_cancelled_rate_wait_gives_its_tokens_back() {
    let rt = rt();
    let limiter = Arc::new(
        Gcra::builder()
            .rate(10, Duration::from_secs(1))
            .clock(Arc::new(weft_resilience::clock::SystemClock::precise()))
            .build()
            .expect("valid"),
    );
    limiter.try_acquire().expect("the burst");
    let l = Arc::clone(&limiter);
    let result = bounded(&rt, async move {
        let s = scope(async move { l.acquire(1, Duration::from_secs(1)).await });
        let handle = s.handle();
        let task = weft::spawn(s);
        sleep(Duration::from_millis(5)).await.expect("live");
        handle.cancel();
        task.await.expect("joined")
    });
    assert_eq!(result, Err(RateError::Cancelled(CallerEnd::Cancelled)));
    // Only the first token's 100 ms are owed, not the cancelled one's too.
    let retry = limiter.metrics().retry_after;
    assert!(retry <= Duration::from_millis(100), "{retry:?}");
    // And a wait that can finish does.
    let l = Arc::clone(&limiter);
    bounded(
        &rt,
        async move { l.acquire(1, Duration::from_secs(1)).await },
    )
    .expect("waited");
}
