//! What happens at the capacity bound: `try_get` refuses, `get` hands out an
//! unpooled object that is dropped, not pooled, when its guard goes.

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
fn try_get_returns_none_at_the_bound() {
    let census = Census::new();
    let pool = pool(&census, 2);
    let a = pool.try_get().unwrap();
    let b = pool.try_get().unwrap();
    assert!(pool.try_get().is_none());
    assert_eq!(census.created(), 2, "try_get created an object it refused");
    drop(a);
    let again = pool.try_get().expect("a returned object is free again");
    assert!(again.is_pooled());
    drop((b, again));
}

#[test]
fn get_at_the_bound_creates_an_unpooled_object_dropped_on_return() {
    let census = Census::new();
    let pool = pool(&census, 1);
    let pooled = pool.get();
    let extra = pool.get();
    assert!(pooled.is_pooled());
    assert!(!extra.is_pooled());
    assert_eq!(census.live(), 2);

    drop(extra);
    assert_eq!(
        census.dropped(),
        1,
        "unpooled object was not dropped on return"
    );
    assert_eq!(pool.metrics().created, 1, "unpooled object was pooled");

    drop(pooled);
    assert_eq!(census.live(), 1, "pooled object dropped on return");
    let m = pool.metrics();
    assert_eq!((m.unpooled, m.live, m.idle), (1, 0, 1));
}

#[test]
fn bound_holds_across_threads() {
    let census = Census::new();
    let pool = pool(&census, 3);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    let a = pool.get();
                    let b = pool.get();
                    drop((a, b));
                }
            });
        }
    });
    let m = pool.metrics();
    assert!(m.created <= 3, "{m:?}");
    assert_eq!(m.live, 0, "{m:?}");
    assert_eq!(m.idle, m.created, "{m:?}");
    assert_eq!(census.live() as u64, m.created, "unpooled objects leaked");
}
