//! The bulkhead's runtime-agnostic behaviour: the cap, RAII permits that
//! come back however the holder ends (drop, panic, threads), metrics,
//! events and config errors.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc, Barrier,
    },
    thread,
    time::Duration,
};

use weft_resilience::limit::{Bulkhead, BulkheadError, ConfigError, EventKind, Refusal};

#[test]
fn caps_concurrency_and_permits_come_back_on_drop() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent(3)
        .build()
        .expect("valid");
    let permits: Vec<_> = (0..3)
        .map(|_| bulkhead.try_acquire().expect("room"))
        .collect();
    assert_eq!(bulkhead.try_acquire().unwrap_err(), BulkheadError::Full);
    let m = bulkhead.metrics();
    assert_eq!((m.in_flight, m.available, m.rejected), (3, 0, 1));
    drop(permits);
    let m = bulkhead.metrics();
    assert_eq!((m.in_flight, m.available), (0, 3), "every slot came back");
}

#[test]
fn a_panicking_holder_gives_its_slot_back() {
    let bulkhead = Bulkhead::builder()
        .max_concurrent(1)
        .build()
        .expect("valid");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _permit = bulkhead.try_acquire().expect("room");
        panic!("the call panicked");
    }));
    assert!(result.is_err());
    assert_eq!(bulkhead.metrics().available, 1);
}

#[test]
fn never_more_than_the_cap_across_threads_and_nothing_leaks() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 2_000;
    let bulkhead = Arc::new(
        Bulkhead::builder()
            .max_concurrent(2)
            .build()
            .expect("valid"),
    );
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (bulkhead, inside, peak, admitted, start) = (
                Arc::clone(&bulkhead),
                Arc::clone(&inside),
                Arc::clone(&peak),
                Arc::clone(&admitted),
                Arc::clone(&start),
            );
            thread::spawn(move || {
                start.wait();
                for _ in 0..ROUNDS {
                    if let Ok(_permit) = bulkhead.try_acquire() {
                        let now = inside.fetch_add(1, SeqCst) + 1;
                        peak.fetch_max(now, SeqCst);
                        admitted.fetch_add(1, SeqCst);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("no panic");
    }
    assert!(peak.load(SeqCst) <= 2, "peak {}", peak.load(SeqCst));
    let m = bulkhead.metrics();
    assert_eq!(m.available, 2, "nothing leaked");
    assert_eq!(
        admitted.load(SeqCst) as u64 + m.rejected,
        (THREADS * ROUNDS) as u64
    );
}

#[test]
fn refusals_reach_listeners() {
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&refused);
    let bulkhead = Bulkhead::builder()
        .max_concurrent(1)
        .name("db")
        .listener(Arc::new(move |event| {
            assert_eq!(event.limiter, "db");
            assert_eq!(event.kind, EventKind::Rejected(Refusal::Full));
            counter.fetch_add(1, SeqCst);
        }))
        .build()
        .expect("valid");
    let _held = bulkhead.try_acquire().expect("room");
    assert!(bulkhead.try_acquire().is_err());
    assert_eq!(refused.load(SeqCst), 1);
}

#[test]
fn bad_configs_say_which() {
    let b = Bulkhead::builder;
    assert_eq!(
        b().max_concurrent(0).build().unwrap_err(),
        ConfigError::ZeroLimit
    );
    assert!(matches!(
        b().max_concurrent(u32::MAX).build().unwrap_err(),
        ConfigError::LimitTooLarge { .. }
    ));
    assert_eq!(
        b().max_wait(Some(Duration::ZERO)).build().unwrap_err(),
        ConfigError::ZeroMaxWait
    );
    assert!(matches!(
        b().max_waiting(u32::MAX).build().unwrap_err(),
        ConfigError::QueueTooLarge(_)
    ));
    #[cfg(not(feature = "weft"))]
    assert_eq!(
        b().max_waiting(4).build().unwrap_err(),
        ConfigError::WaitingNeedsRuntime,
        "without a runtime a bulkhead cannot wait"
    );
    #[cfg(feature = "weft")]
    assert!(b().max_waiting(4).build().is_ok());
    assert!(ConfigError::ZeroLimit.to_string().contains("at least 1"));
}

#[test]
fn owned_permits_move_across_threads_and_come_back() {
    let bulkhead = Arc::new(
        Bulkhead::builder()
            .max_concurrent(2)
            .build()
            .expect("valid"),
    );
    let a = bulkhead.try_acquire_owned().expect("room");
    let b = bulkhead.try_acquire_owned().expect("room");
    assert_eq!(
        bulkhead.try_acquire_owned().unwrap_err(),
        BulkheadError::Full
    );
    assert_eq!(bulkhead.metrics().in_flight, 2);
    thread::spawn(move || drop(a)).join().expect("no panic");
    assert_eq!(bulkhead.metrics().available, 1);
    drop(b);
    let m = bulkhead.metrics();
    assert_eq!((m.available, m.in_flight), (2, 0), "nothing leaked");
}
