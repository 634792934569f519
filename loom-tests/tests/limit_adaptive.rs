#![cfg(weft_loom)]
//! loom models of the adaptive limiter's counters: admission never exceeds
//! the limit the admitting caller read, every admission is settled exactly
//! once, and a limit change racing admissions leaves the counters right.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test limit_adaptive`

use std::sync::{
    atomic::{AtomicUsize, Ordering::SeqCst},
    Arc,
};

use loom::thread;
use weft_resilience::{
    clock::ManualClock,
    limit::{Adaptive, Aimd},
};

fn limiter(min: u32, initial: u32, max: u32) -> Arc<Adaptive> {
    Arc::new(
        Adaptive::builder()
            .algorithm(Aimd::default().limits(min, initial, max))
            .clock(Arc::new(ManualClock::new()))
            .build()
            .expect("valid"),
    )
}

#[test]
fn admissions_never_exceed_a_fixed_limit() {
    loom::model(|| {
        let limiter = limiter(1, 1, 1);
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (limiter, inside) = (Arc::clone(&limiter), Arc::clone(&inside));
                thread::spawn(move || {
                    if let Ok(permit) = limiter.try_acquire() {
                        assert_eq!(inside.fetch_add(1, SeqCst), 0, "over the limit of 1");
                        inside.fetch_sub(1, SeqCst);
                        permit.success();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let m = limiter.metrics();
        assert_eq!(m.in_flight, 0, "every admission settled once");
        assert_eq!(m.limit, 1);
    });
}

#[test]
fn a_drop_shrinking_the_limit_races_an_admission() {
    loom::model(|| {
        // Limit 2; one call is dropped (overload) and shrinks it to 1 while
        // another thread is admitted and settles with no sample.
        let limiter = limiter(1, 2, 2);
        let first = limiter.try_acquire().expect("room");
        let l = Arc::clone(&limiter);
        let other = thread::spawn(move || {
            if let Ok(permit) = l.try_acquire() {
                permit.ignore();
                true
            } else {
                false
            }
        });
        first.dropped();
        let _ = other.join().expect("thread");
        let m = limiter.metrics();
        assert_eq!(m.in_flight, 0);
        assert_eq!(m.limit, 1, "2 × 0.9, floored to the minimum 1");
        assert_eq!(m.samples, 1, "the drop was the only sample");
        let held = limiter.try_acquire().expect("room under the new limit");
        assert!(limiter.try_acquire().is_err(), "the new limit holds");
        drop(held);
    });
}
