use std::{
    cell::Cell,
    future::Future,
    pin::{pin, Pin},
    task::{Context, Poll, Waker},
};

use super::*;
use crate::{clock::ManualClock, env::ManualEnv};

const MS: Duration = Duration::from_millis(1);

/// Runs a future that never waits (everything on a `ManualEnv` is ready).
pub(crate) fn block<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited"),
    }
}

fn config() -> RetryConfigBuilder {
    RetryConfig::builder()
        .backoff(Backoff::constant(10 * MS))
        .seed(1)
}

#[test]
fn retries_until_success() {
    let env = ManualEnv::new();
    let retry = Retry::new(config().max_attempts(5).build().unwrap());
    let calls = Cell::new(0);
    let out = block(retry.call(&env, |a| {
        calls.set(calls.get() + 1);
        assert_eq!(a.number, calls.get());
        async move {
            if a.number < 3 {
                Err("flaky")
            } else {
                Ok(a.number)
            }
        }
    }));
    assert_eq!(out, Ok(3));
    assert_eq!(env.slept(), 20 * MS, "two backoffs of 10 ms");
    let m = retry.metrics();
    assert_eq!((m.calls, m.attempts, m.retries, m.recovered), (1, 3, 2, 1));
}

#[test]
fn stops_after_max_attempts_with_the_last_error() {
    let env = ManualEnv::new();
    let retry = Retry::new(config().max_attempts(3).build().unwrap());
    let out = block(retry.call(&env, |a| async move { Err::<(), _>(a.number) }));
    assert_eq!(
        out,
        Err(RetryError::Failed {
            error: 3,
            attempts: 3,
            stop: Stop::Exhausted
        })
    );
    assert_eq!(retry.metrics().exhausted, 1);
}

#[test]
fn a_non_retryable_error_stops_at_once() {
    let env = ManualEnv::new();
    let retry = Retry::with_predicate(
        config().build().unwrap(),
        OnError(|e: &&str| *e != "bad request"),
    );
    let out = block(retry.call(&env, |_| async { Err::<(), _>("bad request") }));
    assert_eq!(out.unwrap_err().stop(), Stop::NotRetryable);
    assert_eq!(env.sleeps(), 0);
}

#[test]
fn a_retryable_value_is_retried_and_returned_when_attempts_end() {
    let env = ManualEnv::new();
    let retry = Retry::with_predicate(
        config().max_attempts(2).build().unwrap(),
        |r: &Result<u16, ()>| matches!(r, Ok(503)),
    );
    let calls = Cell::new(0);
    let out = block(retry.call(&env, |_| {
        calls.set(calls.get() + 1);
        async { Ok(503) }
    }));
    assert_eq!(out, Ok(503));
    assert_eq!(calls.get(), 2);
}

#[test]
fn no_retry_starts_that_cannot_finish_before_the_deadline() {
    let env = ManualEnv::new();
    env.set_deadline(Some(100 * MS));
    let retry = Retry::new(
        config()
            .max_attempts(10)
            .expected_attempt(30 * MS)
            .build()
            .unwrap(),
    );
    let starts = std::cell::RefCell::new(Vec::new());
    let out = block(retry.call(&env, |_| {
        starts.borrow_mut().push(env.now());
        let env = env.clone();
        async move {
            env.sleep(25 * MS).await.unwrap();
            Err::<(), _>("slow failure")
        }
    }));
    // Attempts at 0, 35 and 70 ms take 25 ms each; after the third (95 ms),
    // 5 ms are left: a 10 ms backoff plus a 30 ms attempt do not fit.
    assert_eq!(*starts.borrow(), [Duration::ZERO, 35 * MS, 70 * MS]);
    match out {
        Err(RetryError::Failed {
            attempts: 3,
            stop: Stop::Deadline { remaining },
            ..
        }) => assert_eq!(remaining, 5 * MS),
        other => panic!("{other:?}"),
    }
    assert_eq!(retry.metrics().deadline_stops, 1);
}

#[test]
fn the_first_attempt_is_refused_when_the_deadline_is_too_close() {
    let env = ManualEnv::new();
    env.set_deadline(Some(20 * MS));
    let retry = Retry::new(config().expected_attempt(30 * MS).build().unwrap());
    let out = block(retry.call(&env, |_| async { Ok::<_, ()>(1) }));
    assert_eq!(
        out,
        Err(RetryError::NotStarted(Stop::Deadline {
            remaining: 20 * MS
        }))
    );
}

#[test]
fn a_cancelled_caller_is_not_retried() {
    let env = ManualEnv::new();
    let retry = Retry::new(config().max_attempts(5).build().unwrap());
    let calls = Cell::new(0);
    let out = block(retry.call(&env, |_| {
        calls.set(calls.get() + 1);
        // The caller hangs up while the attempt runs; the attempt fails
        // because of it.
        env.cancel();
        async { Err::<(), _>("interrupted io") }
    }));
    assert_eq!(calls.get(), 1);
    assert_eq!(
        out.unwrap_err().stop(),
        Stop::Interrupted(Interrupted::Cancelled)
    );
    assert_eq!(retry.metrics().interrupted, 1);
    assert_eq!(retry.metrics().retries, 0);
}

#[test]
fn the_budget_stops_retries() {
    let clock = ManualClock::new();
    let env = ManualEnv::with_clock(clock.clone());
    let budget = Arc::new(
        RetryBudget::builder()
            .ratio(0.5)
            .floor_per_sec(0)
            .clock(Arc::new(clock))
            .build()
            .unwrap(),
    );
    let retry = Retry::new(
        config()
            .max_attempts(3)
            .backoff(Backoff::none())
            .budget(budget.clone())
            .build()
            .unwrap(),
    );
    // Call 1 deposits 1: 0.5 retries allowed, so none.
    let out = block(retry.call(&env, |_| async { Err::<(), _>(()) }));
    assert_eq!(out.unwrap_err().stop(), Stop::Budget);
    // Call 2 deposits: 2 × 0.5 = 1 retry, then refused.
    let out = block(retry.call(&env, |_| async { Err::<(), _>(()) }));
    assert_eq!(
        out,
        Err(RetryError::Failed {
            error: (),
            attempts: 2,
            stop: Stop::Budget
        })
    );
    assert_eq!(retry.metrics().budget_stops, 2);
    assert_eq!(budget.metrics().retries, 1);
}

#[test]
fn the_caller_cancelled_during_backoff_stops() {
    let env = ManualEnv::new();
    env.set_deadline(Some(Duration::from_secs(1)));
    let retry = Retry::new(
        config()
            .max_attempts(3)
            .backoff(Backoff::constant(Duration::from_millis(500)))
            .build()
            .unwrap(),
    );
    // The first backoff runs into the deadline (it fits by the rule: 500 <
    // 1000), the second attempt ends at 900 ms, and the second 500 ms
    // backoff no longer fits.
    let out = block(retry.call(&env, |a| {
        let env = env.clone();
        async move {
            if a.number == 2 {
                env.sleep(Duration::from_millis(400)).await.unwrap();
            }
            Err::<(), _>(a.number)
        }
    }));
    assert_eq!(
        out.unwrap_err().stop(),
        Stop::Deadline {
            remaining: Duration::from_millis(100)
        }
    );
}

/// A [`ManualEnv`] whose backoff sleeps end `lag` late, as a task woken
/// late on a busy worker does.
#[derive(Clone, Debug)]
struct LateEnv {
    inner: ManualEnv,
    lag: Duration,
}

impl Env for LateEnv {
    type Sleep = Pin<Box<dyn Future<Output = Result<(), Interrupted>> + Send>>;
    type Scoped<F: Future> = <ManualEnv as Env>::Scoped<F>;
    type Handle = <ManualEnv as Env>::Handle;
    type Timeout<F: Future> = <ManualEnv as Env>::Timeout<F>;
    type Attempt<F: Future> = <ManualEnv as Env>::Attempt<F>;

    fn now(&self) -> Duration {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        let sleep = self.inner.sleep(duration);
        let (clock, lag) = (self.inner.clock().clone(), self.lag);
        Box::pin(async move {
            sleep.await?;
            // Woken on time, polled `lag` later.
            clock.advance(lag);
            Ok(())
        })
    }

    fn remaining(&self) -> Option<Duration> {
        self.inner.remaining()
    }

    fn check(&self) -> Result<(), Interrupted> {
        self.inner.check()
    }

    fn scoped<F: Future>(&self, future: F) -> (Self::Scoped<F>, Self::Handle) {
        self.inner.scoped(future)
    }

    fn attempt<F: Future>(&self, future: F) -> Self::Attempt<F> {
        self.inner.attempt(future)
    }

    fn timeout<F: Future>(&self, after: Duration, future: F) -> Self::Timeout<F> {
        self.inner.timeout(after, future)
    }
}

/// Regression (found by the soak): a backoff sleep that ends late must not
/// be followed by an attempt past the deadline, or one the expected attempt
/// time no longer fits.
#[test]
fn a_backoff_that_ends_late_starts_no_attempt_past_the_deadline() {
    // 100 ms deadline, 10 ms backoff, 10 ms expected attempt: the retry
    // fits when it is decided at 0 ms. Woken 85 ms late, 5 ms are left;
    // 95 ms late, the deadline has passed.
    for (lag, want) in [
        (85 * MS, Stop::Deadline { remaining: 5 * MS }),
        (95 * MS, Stop::Interrupted(Interrupted::Deadline)),
    ] {
        let env = LateEnv {
            inner: ManualEnv::new(),
            lag,
        };
        env.inner.set_deadline(Some(100 * MS));
        let retry = Retry::new(
            config()
                .max_attempts(5)
                .expected_attempt(10 * MS)
                .build()
                .unwrap(),
        );
        let starts = std::cell::RefCell::new(Vec::new());
        let out = block(retry.call(&env, |a| {
            starts.borrow_mut().push((a.number, env.now()));
            async { Err::<(), _>("fails") }
        }));
        assert_eq!(*starts.borrow(), [(1, Duration::ZERO)], "lag {lag:?}");
        assert_eq!(out.unwrap_err().stop(), want, "lag {lag:?}");
        assert_eq!(retry.metrics().retries, 0, "lag {lag:?}");
    }
    // Woken on time, the same call retries until its attempts are used up.
    let env = LateEnv {
        inner: ManualEnv::new(),
        lag: Duration::ZERO,
    };
    env.inner.set_deadline(Some(100 * MS));
    let retry = Retry::new(
        config()
            .max_attempts(3)
            .expected_attempt(10 * MS)
            .build()
            .unwrap(),
    );
    let out = block(retry.call(&env, |_| async { Err::<(), _>("fails") }));
    assert_eq!(out.unwrap_err().stop(), Stop::Exhausted);
    assert_eq!(retry.metrics().retries, 2);
}

#[test]
fn full_jitter_delays_stay_within_bounds() {
    let env = ManualEnv::new();
    let retry = Retry::new(
        RetryConfig::builder()
            .max_attempts(6)
            .backoff(Backoff::exponential(10 * MS, 100 * MS))
            .seed(42)
            .build()
            .unwrap(),
    );
    let _ = block(retry.call(&env, |_| async { Err::<(), _>(()) }));
    // Five retries, each at most min(100, 10 × 2^n): 10 + 20 + 40 + 80 + 100.
    assert!(env.slept() <= 250 * MS, "{:?}", env.slept());
    assert!(env.slept() > Duration::ZERO);
}

#[test]
fn zero_attempts_is_a_config_error() {
    let e = RetryConfig::builder().max_attempts(0).build().unwrap_err();
    assert_eq!(e, RetryConfigError::NoAttempts);
    assert_eq!(e.to_string(), "max_attempts must be at least 1");
}
