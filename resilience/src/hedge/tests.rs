use std::{
    cell::Cell,
    future::{pending, Future},
    pin::pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use super::*;
use crate::{clock::ManualClock, env::ManualEnv};

const MS: Duration = Duration::from_millis(1);

fn block<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited"),
    }
}

fn hedge(attempts: u32, delay: Duration) -> Hedge {
    Hedge::new(
        HedgeConfig::builder()
            .max_attempts(attempts)
            .delay(HedgeDelay::Fixed(delay))
            .build()
            .unwrap(),
    )
}

/// Counts drops of the future that holds it.
struct DropFlag(Rc<Cell<u32>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn a_fast_first_attempt_starts_no_hedge() {
    let env = ManualEnv::new();
    let h = hedge(3, 10 * MS);
    let out = block(h.call(&env, |a| async move { Ok::<_, ()>(a.number) }));
    assert_eq!(out, Ok(1));
    assert_eq!(h.metrics().hedges, 0);
    assert_eq!(env.now(), Duration::ZERO, "the hedge timer never ran");
    assert_eq!(h.histogram().count(), 1);
}

#[test]
fn a_hedge_wins_over_a_stuck_attempt_which_is_cancelled_and_dropped() {
    let env = ManualEnv::new();
    let h = hedge(2, 10 * MS);
    let drops = Rc::new(Cell::new(0));
    let out = block(h.call(&env, |a| {
        let flag = DropFlag(drops.clone());
        async move {
            let _flag = flag;
            if a.number == 1 {
                pending::<()>().await;
            }
            Ok::<_, ()>(a)
        }
    }));
    let winner = out.unwrap();
    assert!(winner.hedge);
    assert_eq!(winner.number, 2);
    // Hedged after the 10 ms delay; the stuck loser then had its 10 ms
    // grace to finish.
    assert_eq!(env.now(), 20 * MS);
    assert_eq!(
        drops.get(),
        2,
        "the loser was dropped before the call returned"
    );
    assert_eq!(env.scopes_cancelled(), 1);
    let m = h.metrics();
    assert_eq!((m.hedges, m.hedge_wins, m.cancelled), (1, 1, 1));
}

#[test]
fn a_failed_attempt_starts_the_next_hedge_at_once() {
    let env = ManualEnv::new();
    let h = hedge(3, Duration::from_secs(1));
    let out = block(h.call(&env, |a| async move {
        if a.number < 3 {
            Err(a.number)
        } else {
            Ok(a.number)
        }
    }));
    assert_eq!(out, Ok(3));
    assert_eq!(env.now(), Duration::ZERO, "no delay was waited");
}

#[test]
fn when_every_attempt_fails_the_last_error_is_returned() {
    let env = ManualEnv::new();
    let h = hedge(3, MS);
    let out = block(h.call(&env, |a| async move { Err::<(), _>(a.number) }));
    assert_eq!(
        out,
        Err(RetryError::Failed {
            error: 3,
            attempts: 3,
            stop: Stop::Exhausted
        })
    );
}

#[test]
fn hedges_draw_on_the_retry_budget() {
    let clock = ManualClock::new();
    let env = ManualEnv::with_clock(clock.clone());
    let budget = Arc::new(
        RetryBudget::builder()
            .ratio(0.0)
            .floor_per_sec(0)
            .clock(Arc::new(clock))
            .build()
            .unwrap(),
    );
    let h = Hedge::new(
        HedgeConfig::builder()
            .max_attempts(2)
            .delay(HedgeDelay::Fixed(MS))
            .budget(budget.clone())
            .build()
            .unwrap(),
    );
    let out = block(h.call(&env, |_| async { Err::<(), _>("down") }));
    assert_eq!(
        out,
        Err(RetryError::Failed {
            error: "down",
            attempts: 1,
            stop: Stop::Budget
        })
    );
    assert_eq!(h.metrics().budget_refused, 1);
    assert_eq!(budget.metrics().refused, 1);
    assert_eq!(budget.metrics().calls, 1);
}

#[test]
fn no_hedge_starts_without_the_expected_time_left() {
    let env = ManualEnv::new();
    env.set_deadline(Some(30 * MS));
    let h = Hedge::new(
        HedgeConfig::builder()
            .max_attempts(2)
            .delay(HedgeDelay::Fixed(20 * MS))
            .expected_attempt(15 * MS)
            .build()
            .unwrap(),
    );
    let out = block(h.call(&env, |a| {
        let env = env.clone();
        async move {
            // Fails after 25 ms, past the hedge delay.
            env.sleep(25 * MS).await.map_err(|_| 0u32)?;
            Err::<(), _>(a.number)
        }
    }));
    // The attempt failed at 25 ms; a hedge then needs 15 ms, 5 are left.
    assert_eq!(
        out.unwrap_err().stop(),
        Stop::Deadline { remaining: 5 * MS }
    );
    assert_eq!(h.metrics().hedges, 0);
}

#[test]
fn the_percentile_delay_follows_the_endpoint() {
    let h = Hedge::new(
        HedgeConfig::builder()
            .delay(HedgeDelay::Percentile {
                percentile: 90.0,
                min_samples: 10,
                otherwise: 500 * MS,
            })
            .build()
            .unwrap(),
    );
    assert_eq!(h.current_delay(), 500 * MS);
    for ms in 1..=20 {
        h.histogram().record(ms * MS);
    }
    let d = h.current_delay();
    assert!(d >= 18 * MS && d <= 23 * MS, "{d:?}");
}

#[test]
fn bad_configs_are_errors() {
    let e = HedgeConfig::builder().max_attempts(0).build().unwrap_err();
    assert_eq!(e, RetryConfigError::HedgeAttempts(0));
    let e = HedgeConfig::builder()
        .delay(HedgeDelay::Percentile {
            percentile: 100.0,
            min_samples: 1,
            otherwise: MS,
        })
        .build()
        .unwrap_err();
    assert_eq!(e, RetryConfigError::Percentile(100.0));
}
