//! Pool and SlotMap throughput: weft against `object-pool`,
//! `lockfree-object-pool` (linear and spin-lock pools) and `sharded-slab`.
//!
//! Every workload takes an object, writes one byte, and gives it back cleared,
//! so each pool does the same work: one uncontended thread, then two threads
//! on one pool. `cargo bench -p weft-benches --bench pool`.

use std::{
    hint::black_box,
    sync::Barrier,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lockfree_object_pool::{LinearObjectPool, SpinLockObjectPool};
use weft_resilience::pool::{Clear, Pool, SlotMap};

const CAPACITY: usize = 1024;

/// The pools under test, each behind one "take, touch, give back" step. Sizes
/// differ; there are five of them, so boxing would only add an indirection.
#[allow(clippy::large_enum_variant)]
enum Contender {
    Weft(Pool<Vec<u8>, Clear>),
    ObjectPool(object_pool::Pool<Vec<u8>>),
    Linear(LinearObjectPool<Vec<u8>>),
    SpinLock(SpinLockObjectPool<Vec<u8>>),
    ShardedSlab(sharded_slab::Pool<Vec<u8>>),
}

impl Contender {
    fn all() -> Vec<(&'static str, Contender)> {
        vec![
            (
                "weft",
                Contender::Weft(
                    Pool::builder(Vec::new)
                        .capacity(CAPACITY)
                        .reset_with(Clear)
                        .build()
                        .unwrap(),
                ),
            ),
            (
                "object-pool",
                Contender::ObjectPool(object_pool::Pool::new(CAPACITY, Vec::new)),
            ),
            (
                "lockfree-linear",
                Contender::Linear(LinearObjectPool::new(Vec::new, Vec::clear)),
            ),
            (
                "lockfree-spinlock",
                Contender::SpinLock(SpinLockObjectPool::new(Vec::new, Vec::clear)),
            ),
            (
                "sharded-slab",
                Contender::ShardedSlab(sharded_slab::Pool::new()),
            ),
        ]
    }

    #[inline]
    fn get_put(&self) {
        match self {
            Contender::Weft(pool) => {
                let mut v = pool.get();
                v.push(black_box(1));
            }
            Contender::ObjectPool(pool) => {
                let mut v = pool.pull(Vec::new);
                v.push(black_box(1));
                v.clear();
            }
            Contender::Linear(pool) => {
                let mut v = pool.pull();
                v.push(black_box(1));
            }
            Contender::SpinLock(pool) => {
                let mut v = pool.pull();
                v.push(black_box(1));
            }
            Contender::ShardedSlab(pool) => {
                let mut v = pool.create().unwrap();
                v.push(black_box(1));
                let key = v.key();
                drop(v);
                pool.clear(key);
            }
        }
    }
}

/// Time for each of `threads` threads to do `iters` get+put steps at once.
fn contended(contender: &Contender, threads: usize, iters: u64) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    contender.get_put(); // register the thread outside the clock
                    start.wait();
                    let t = Instant::now();
                    for _ in 0..iters {
                        contender.get_put();
                    }
                    t.elapsed()
                })
            })
            .collect();
        start.wait();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    })
}

fn get_put(c: &mut Criterion) {
    let contenders = Contender::all();
    let mut group = c.benchmark_group("pool_get_put");
    for (name, contender) in &contenders {
        group.bench_function(BenchmarkId::new("1_thread", name), |b| {
            b.iter(|| contender.get_put())
        });
    }
    for (name, contender) in &contenders {
        group.bench_function(BenchmarkId::new("2_threads", name), |b| {
            b.iter_custom(|iters| contended(contender, 2, iters))
        });
    }
    group.finish();
}

fn slot_map(c: &mut Criterion) {
    let mut group = c.benchmark_group("slotmap_insert_get_remove");
    let weft = SlotMap::with_capacity(CAPACITY).unwrap();
    group.bench_function("weft", |b| {
        b.iter(|| {
            let key = weft.insert(black_box(7u64)).unwrap();
            assert_eq!(*weft.get(key).unwrap(), 7);
            assert!(weft.remove(key));
        })
    });
    let slab = sharded_slab::Slab::new();
    group.bench_function("sharded-slab", |b| {
        b.iter(|| {
            let key = slab.insert(black_box(7u64)).unwrap();
            assert_eq!(*slab.get(key).unwrap(), 7);
            assert!(slab.remove(key));
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = get_put, slot_map
}
criterion_main!(benches);
