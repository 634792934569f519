#![cfg(weft_loom)]
//! loom models of `weft_resilience::pool`, running the real code through the
//! crate's `sync` facade (capacities and pages shrink under `weft_loom`: two
//! shards, two slots per first page).
//!
//! Run: `RUSTFLAGS="--cfg weft_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2
//! CARGO_TARGET_DIR=target-loom cargo test -p loom-tests --release --test pool`

use loom::{
    alloc::Track,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
};
use weft_resilience::pool::{Pool, SlotMap};

/// Runs `f` with a `'static` borrow of `value` (loom has no scoped threads)
/// and drops `value` afterwards.
///
/// # Safety
/// `f` must join every thread it gave the borrow to before returning.
unsafe fn with_static<T: 'static, R>(value: T, f: impl FnOnce(&'static T) -> R) -> R {
    let ptr = Box::into_raw(Box::new(value));
    // SAFETY: `ptr` is live until the `Box::from_raw` below.
    let result = f(unsafe { &*ptr });
    // SAFETY: by the contract, no borrow handed to `f` is still in use.
    drop(unsafe { Box::from_raw(ptr) });
    result
}

/// A pooled value that fails the model if two guards hold it at once.
#[derive(Default)]
struct Exclusive {
    busy: AtomicBool,
    uses: AtomicUsize,
}

impl Exclusive {
    fn use_once(&self) {
        assert!(
            !self.busy.swap(true, Ordering::Relaxed),
            "one slot, two guards"
        );
        self.uses.fetch_add(1, Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
    }
}

/// Two threads and the main thread (the third thread has no shard under loom,
/// so the overflow list is in the model too) take and return the pool's
/// single object: it is never held by two guards, and nothing is created past
/// the bound.
#[test]
fn pool_never_hands_one_slot_to_two_guards() {
    loom::model(|| {
        let pool = Pool::builder(Exclusive::default)
            .capacity(1)
            .build()
            .unwrap();
        // SAFETY: both threads are joined inside the closure.
        unsafe {
            with_static(pool, |pool| {
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        thread::spawn(move || {
                            if let Some(guard) = pool.try_get() {
                                guard.use_once();
                            }
                        })
                    })
                    .collect();
                if let Some(guard) = pool.try_get() {
                    guard.use_once();
                }
                for worker in workers {
                    worker.join().unwrap();
                }
                let m = pool.metrics();
                assert!(m.created <= 1, "{m:?}");
                assert_eq!(m.live, 0, "{m:?}");
                assert_eq!(m.idle, m.created, "{m:?}");
            });
        }
    });
}

/// An object returned on another thread goes to the origin's remote list and
/// is reused from there; a racing `get` on the origin sees either the object
/// or the bound, never a second pooled object.
#[test]
fn pool_cross_thread_return_is_reused() {
    loom::model(|| {
        let pool = Pool::builder(|| Track::new(0u8))
            .capacity(1)
            .build()
            .unwrap();
        // SAFETY: the thread is joined inside the closure.
        unsafe {
            with_static(pool, |pool| {
                let guard = pool.get();
                assert!(guard.is_pooled());
                let returner = thread::spawn(move || drop(guard));
                let racing = pool.get();
                let m = pool.metrics();
                assert!(m.created == 1, "{m:?}");
                drop(racing);
                returner.join().unwrap();
                let again = pool.try_get().expect("the returned object");
                assert!(again.is_pooled());
                assert_eq!(pool.metrics().created, 1);
            });
        }
    });
}

/// Every object, pooled or not, is dropped exactly once: `Track` fails the
/// model on a leak, and a double drop would free a tracked allocation twice.
#[test]
fn pool_drops_every_value_once() {
    loom::model(|| {
        let pool = Pool::builder(|| Track::new(1u8))
            .capacity(1)
            .reset(|v| assert_eq!(*v.get_ref(), 1))
            .build()
            .unwrap();
        // SAFETY: the thread is joined inside the closure.
        unsafe {
            with_static(pool, |pool| {
                let worker = thread::spawn(move || {
                    let a = pool.get();
                    let b = pool.get(); // unpooled: the bound is 1
                    drop((b, a));
                });
                drop(pool.get());
                worker.join().unwrap();
            });
        }
    });
}

/// A reader holding an old key while the slot is removed and reused never
/// sees the new value, and the old value is dropped once.
#[test]
fn slot_map_stale_key_returns_none_after_reuse() {
    loom::model(|| {
        let map = SlotMap::with_capacity(1).unwrap();
        let old = map.insert(Track::new(1u8)).unwrap();
        // SAFETY: the thread is joined inside the closure.
        unsafe {
            with_static(map, |map| {
                let reader = thread::spawn(move || {
                    if let Some(guard) = map.get(old) {
                        assert_eq!(*guard.get_ref(), 1, "stale key reached the new value");
                    }
                });
                assert!(map.remove(old));
                let new = map.insert(Track::new(2u8));
                if let Ok(new) = new {
                    assert_eq!(new.index(), old.index());
                    assert!(map.get(old).is_none());
                    assert_eq!(*map.get(new).unwrap().get_ref(), 2);
                }
                reader.join().unwrap();
                assert!(map.get(old).is_none());
            });
        }
    });
}

/// `remove` racing a reader's guard (and a second remover): exactly one
/// remove wins, the reader sees the whole value, and the value is dropped once,
/// only after both are done with it.
#[test]
fn slot_map_remove_races_a_reader() {
    loom::model(|| {
        let map = SlotMap::with_capacity(2).unwrap();
        let key = map.insert(Track::new(7u8)).unwrap();
        // SAFETY: both threads are joined inside the closure.
        unsafe {
            with_static(map, |map| {
                let reader = thread::spawn(move || {
                    if let Some(guard) = map.get(key) {
                        assert_eq!(*guard.get_ref(), 7);
                    }
                });
                let remover = thread::spawn(move || map.remove(key));
                let here = map.remove(key);
                let there = remover.join().unwrap();
                assert!(here ^ there, "removed {} times", here as u8 + there as u8);
                reader.join().unwrap();
                let m = map.metrics();
                assert_eq!((m.len, m.tombstones), (0, 0), "{m:?}");
                // The slot is free again.
                let next = map.insert(Track::new(8u8)).unwrap();
                assert!(map.get(key).is_none());
                assert!(map.get(next).is_some());
            });
        }
    });
}
