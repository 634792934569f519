//! An object returned on another thread goes to its origin shard's remote
//! list, and the origin reuses it; more threads than shards still work.

mod common;

use std::sync::mpsc;

use common::{Census, Counted};
use weft_resilience::pool::Pool;

#[test]
fn object_returned_elsewhere_is_reused_by_its_origin() {
    let census = Census::new();
    let maker = census.clone();
    let pool: Pool<Counted> = Pool::builder(move || maker.make())
        .capacity(8)
        .build()
        .unwrap();

    let guard = pool.get();
    let serial = guard.serial;
    std::thread::scope(|s| {
        s.spawn(move || drop(guard)).join().unwrap();
    });
    // Had the object gone to the other thread's local list, this thread would
    // have to create a new one.
    let again = pool.get();
    assert_eq!(again.serial, serial, "remote return was not reused");
    assert_eq!(census.created(), 1);
    let m = pool.metrics();
    assert_eq!((m.created, m.reused), (1, 1));
}

#[test]
fn remote_returns_are_stolen_at_the_bound() {
    // A producer thread's objects, dropped by a consumer, wait on the
    // producer's remote list. At the bound a third thread takes them over.
    let pool = Pool::builder(Vec::<u8>::new).capacity(2).build().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let pool = &pool;
        s.spawn(move || {
            tx.send(pool.get()).unwrap();
            tx.send(pool.get()).unwrap();
        })
        .join()
        .unwrap();
        s.spawn(move || drop(rx.iter().collect::<Vec<_>>()))
            .join()
            .unwrap();
        s.spawn(|| {
            let a = pool.try_get().expect("remote list not stolen");
            let b = pool.try_get().expect("remote list not stolen");
            assert!(a.is_pooled() && b.is_pooled());
        })
        .join()
        .unwrap();
    });
    assert_eq!(pool.metrics().created, 2);
}

#[test]
fn more_threads_than_shards() {
    let census = Census::new();
    let maker = census.clone();
    let pool = Pool::builder(move || maker.make())
        .capacity(4)
        .shards(1)
        .reset(|c| c.payload.clear())
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..6u8 {
            let pool = &pool;
            s.spawn(move || {
                for _ in 0..2000 {
                    let mut g = pool.get();
                    assert!(g.payload.is_empty(), "handed out without reset");
                    g.payload.push(t);
                }
            });
        }
    });
    let m = pool.metrics();
    assert_eq!(m.live, 0, "{m:?}");
    assert!(m.created <= 4, "{m:?}");
    drop(pool);
    assert_eq!(census.live(), 0);
}

#[test]
fn guards_move_between_threads_without_loss() {
    let census = Census::new();
    let maker = census.clone();
    let pool: Pool<Counted> = Pool::builder(move || maker.make())
        .capacity(16)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::sync_channel(8);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..5000 {
                tx.send(pool.get()).unwrap();
            }
            drop(tx);
        });
        s.spawn(move || rx.iter().for_each(drop));
    });
    let m = pool.metrics();
    assert_eq!(m.live, 0, "{m:?}");
    assert_eq!(m.idle, m.created, "{m:?}");
    drop(pool);
    assert_eq!(census.live(), 0, "leaked objects");
}
