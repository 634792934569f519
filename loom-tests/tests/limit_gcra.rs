#![cfg(weft_loom)]
//! loom models of the GCRA limiter's one-word protocol, on the real code
//! through `weft_resilience`'s `sync` facade.
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test limit_gcra`

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::Duration,
};

use loom::thread;
use weft_resilience::{clock::ManualClock, limit::Gcra};

fn limiter(burst: u32) -> (Arc<Gcra>, ManualClock) {
    let clock = ManualClock::new();
    let limiter = Gcra::builder()
        .rate(1, Duration::from_secs(1))
        .burst(burst)
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    (Arc::new(limiter), clock)
}

#[test]
fn concurrent_acquires_never_exceed_the_burst() {
    loom::model(|| {
        let (limiter, _) = limiter(2);
        // Observation only: std's atomic, read after the join.
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (limiter, admitted) = (Arc::clone(&limiter), Arc::clone(&admitted));
                thread::spawn(move || {
                    if limiter.try_acquire().is_ok() {
                        admitted.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(
            admitted.load(SeqCst),
            2,
            "exactly the burst, no more, no less"
        );
        assert_eq!(limiter.metrics().available, 0);
    });
}

#[test]
fn a_cancelled_reservation_racing_an_acquire_loses_nothing() {
    loom::model(|| {
        let (limiter, clock) = limiter(1);
        let l = Arc::clone(&limiter);
        // One thread reserves the only token and gives it back; the other
        // tries to take it. Whatever the order, one token per second holds:
        // at most one caller uses a token now, and after the give-back the
        // token is either taken or available again.
        let reserver = thread::spawn(move || match l.reserve(1, Duration::ZERO) {
            Ok(reservation) => {
                reservation.cancel();
                true
            }
            Err(_) => false,
        });
        let taken = limiter.try_acquire().is_ok();
        let reserved = reserver.join().expect("thread");
        assert!(taken || reserved, "someone got the token first");
        let available = limiter.metrics().available;
        assert_eq!(
            available,
            u32::from(!taken),
            "taken {taken}, reserved {reserved}"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.metrics().available, 1, "the burst refills");
    });
}

#[test]
fn leased_admissions_conserve_tokens() {
    loom::model(|| {
        // Two owned rows under loom, leases of up to 3 tokens: with a burst
        // of 10 the margin is 6, so a first admission takes a lease of 3
        // and, once the credit is low, admissions go one CAS at a time.
        // Three calls on each of two threads (one of them the main thread,
        // which owns a row too) are all admitted; whatever the
        // interleaving, the tokens taken plus those still leased are
        // exactly the calls, and a new reading gives the leases back.
        let clock = ManualClock::new();
        let limiter = Arc::new(
            Gcra::builder()
                .rate(1, Duration::from_secs(1))
                .burst(10)
                .lease(3)
                .clock(Arc::new(clock.clone()))
                .build()
                .expect("valid"),
        );
        let other = Arc::clone(&limiter);
        let t = thread::spawn(move || (0..3).all(|_| other.try_acquire().is_ok()));
        let mine = (0..3).all(|_| limiter.try_acquire().is_ok());
        let theirs = t.join().expect("thread");
        assert!(mine && theirs, "six calls fit a burst of ten");
        assert_eq!(limiter.metrics().available, 4, "ten less the six calls");
        // At a new reading the main thread's stale lease goes back as it
        // takes its token; the other thread's waits for its next call, so
        // at most its lease (3) is held back, never more.
        clock.advance(Duration::from_nanos(1));
        limiter.try_acquire().expect("credit");
        let available = limiter.metrics().available;
        assert!((0..=3).contains(&available), "{available}");
    });
}
