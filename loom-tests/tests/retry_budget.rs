#![cfg(weft_loom)]
//! loom models of the retry budget's counters, on the real code through
//! `weft_resilience`'s `sync` facade: racing withdrawals never overdraw, a
//! refused withdrawal is taken back, a deposit racing a withdrawal is seen
//! or not but never half-seen.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test retry_budget`

use std::{sync::Arc, time::Duration};

use loom::thread;
use weft_resilience::{clock::ManualClock, retry::RetryBudget};

/// A budget of one bucket on a clock that stands still.
fn budget(ratio: f64, floor_per_sec: u32) -> Arc<RetryBudget> {
    Arc::new(
        RetryBudget::builder()
            .ratio(ratio)
            .floor_per_sec(floor_per_sec)
            .window(Duration::from_secs(1), 1)
            .clock(Arc::new(ManualClock::new()))
            .build()
            .expect("valid"),
    )
}

#[test]
fn racing_withdrawals_never_overdraw_an_allowance_of_one() {
    loom::model(|| {
        let b = budget(0.0, 1);
        let other = b.clone();
        let t = thread::spawn(move || other.try_withdraw());
        let mine = b.try_withdraw();
        let theirs = t.join().expect("no panic");
        assert!(!(mine && theirs), "two retries from an allowance of one");
        // A refused withdrawal took itself back: the count is the grants.
        let m = b.metrics();
        assert_eq!(m.retries, u64::from(mine) + u64::from(theirs));
        assert_eq!(m.refused, 2 - m.retries);
    });
}

#[test]
fn a_deposit_racing_a_withdrawal() {
    loom::model(|| {
        // One retry per call, no floor: the withdrawal succeeds exactly
        // when it sees the deposit.
        let b = budget(1.0, 0);
        let other = b.clone();
        let t = thread::spawn(move || other.deposit());
        let granted = b.try_withdraw();
        t.join().expect("no panic");
        let m = b.metrics();
        assert_eq!(m.calls, 1);
        assert_eq!(m.retries, u64::from(granted));
        // Either way a second withdrawal now finds the allowance used or
        // free, never negative.
        let again = b.try_withdraw();
        assert!(!(granted && again), "two retries for one call");
        assert!(granted || again, "the deposit is visible after the join");
    });
}
