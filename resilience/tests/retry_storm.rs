//! A retry storm, simulated: the downstream fails every call for 10 s while
//! clients offer a steady load. With a 10 % budget the downstream sees at
//! most 1.1× the offered load; a naive 3-attempt retry triples it.

use std::{
    cell::Cell,
    future::Future,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use weft_resilience::{
    env::{Env, ManualEnv},
    retry::{Backoff, Retry, RetryBudget, RetryConfig},
};

fn block<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the simulation waited"),
    }
}

/// Offers `per_sec` calls a second for `secs` seconds against a dead
/// downstream; returns (offered, reaching the downstream).
fn storm(retry: &Retry, env: &ManualEnv, per_sec: u64, secs: u64) -> (u64, u64) {
    let reached = Cell::new(0u64);
    let gap = Duration::from_secs(1) / per_sec as u32;
    let start = env.now();
    let mut offered = 0;
    for i in 0..per_sec * secs {
        // Each call starts on schedule (the clock only moves forward).
        env.clock().set(start + gap * i as u32);
        offered += 1;
        let _ = block(retry.call(env, |_| {
            reached.set(reached.get() + 1);
            async { Err::<(), _>("503") }
        }));
    }
    (offered, reached.get())
}

fn three_attempts() -> weft_resilience::retry::RetryConfigBuilder {
    RetryConfig::builder()
        .max_attempts(3)
        // Backoff is simulated time: keep it below the call gap so calls
        // stay on schedule.
        .backoff(Backoff::none())
}

#[test]
fn a_ten_percent_budget_bounds_a_storm_to_one_point_one() {
    let env = ManualEnv::new();
    let budget = Arc::new(
        RetryBudget::builder()
            .ratio(0.1)
            .floor_per_sec(10)
            .window(Duration::from_secs(10), 10)
            .clock(Arc::new(env.clock().clone()))
            .build()
            .unwrap(),
    );
    let retry = Retry::new(three_attempts().budget(budget.clone()).build().unwrap());
    let (offered, reached) = storm(&retry, &env, 1_000, 10);
    let amplification = reached as f64 / offered as f64;
    println!("budget 10 %: offered {offered}, reached {reached} ({amplification:.3}x)");
    assert_eq!(offered, 10_000);
    assert!(amplification <= 1.1, "{amplification}");
    // The budget was used, not just refused: retries happened.
    assert!(amplification >= 1.09, "{amplification}");
    assert!(retry.metrics().budget_stops > 8_000);
}

#[test]
fn a_naive_retry_triples_the_load() {
    let env = ManualEnv::new();
    let retry = Retry::new(three_attempts().build().unwrap());
    let (offered, reached) = storm(&retry, &env, 1_000, 10);
    println!("naive 3 attempts: offered {offered}, reached {reached}");
    assert_eq!(reached, 3 * offered);
}
