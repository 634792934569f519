//! Every pooled object is dropped exactly once when the pool goes: idle ones,
//! ones whose guard was forgotten, and none of the unpooled ones twice.

mod common;

use common::{Census, Counted};
use weft_resilience::pool::Pool;

fn pool(census: &Census, capacity: usize) -> Pool<Counted> {
    let census = census.clone();
    Pool::builder(move || census.make())
        .capacity(capacity)
        .build()
        .unwrap()
}

#[test]
fn pool_drop_drops_every_object_once() {
    let census = Census::new();
    let pool = pool(&census, 8);
    let held: Vec<_> = (0..7).map(|_| pool.get()).collect();
    let forgotten = pool.get();
    assert!(forgotten.is_pooled());
    std::mem::forget(forgotten);
    let unpooled: Vec<_> = (0..3).map(|_| pool.get()).collect();
    assert!(unpooled.iter().all(|g| !g.is_pooled()));
    drop(unpooled);
    drop(held);
    assert_eq!(census.created(), 11);
    assert_eq!(census.live(), 8);
    drop(pool);
    assert_eq!(census.live(), 0, "leaked pooled objects");
    assert_eq!(census.dropped(), 11);
}

#[test]
fn objects_from_many_threads_are_dropped_once() {
    let census = Census::new();
    let pool = pool(&census, 32);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut held = Vec::new();
                for i in 0..500 {
                    held.push(pool.get());
                    if i % 3 == 0 {
                        held.clear();
                    }
                }
            });
        }
    });
    let created = pool.metrics().created as usize;
    assert_eq!(census.live(), created);
    drop(pool);
    assert_eq!(census.live(), 0);
}

#[test]
fn empty_pool_drops_nothing() {
    let census = Census::new();
    drop(pool(&census, 4));
    assert_eq!(census.created(), 0);
}
