#![cfg(weft_loom)]
//! loom model of the runtime-agnostic bulkhead's slot counter (without the
//! `weft` feature; with it the counter is `weft::sync::Semaphore`, which has
//! models of its own in the runtime).
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions"
//! LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target-loom cargo test -p
//! loom-tests --release --test limit_bulkhead`

use std::sync::{
    atomic::{AtomicUsize, Ordering::SeqCst},
    Arc,
};

use loom::thread;
use weft_resilience::limit::Bulkhead;

#[test]
fn never_more_than_the_cap_and_every_slot_comes_back() {
    loom::model(|| {
        let bulkhead = Arc::new(
            Bulkhead::builder()
                .max_concurrent(1)
                .build()
                .expect("valid"),
        );
        let inside = Arc::new(AtomicUsize::new(0));
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (bulkhead, inside, admitted) = (
                    Arc::clone(&bulkhead),
                    Arc::clone(&inside),
                    Arc::clone(&admitted),
                );
                thread::spawn(move || {
                    if let Ok(permit) = bulkhead.try_acquire() {
                        let now = inside.fetch_add(1, SeqCst) + 1;
                        assert_eq!(now, 1, "two holders of one slot");
                        admitted.fetch_add(1, SeqCst);
                        inside.fetch_sub(1, SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!(admitted.load(SeqCst) >= 1);
        let m = bulkhead.metrics();
        assert_eq!((m.available, m.in_flight), (1, 0), "no slot leaked");
        assert_eq!(m.rejected as usize + admitted.load(SeqCst), 2);
    });
}
