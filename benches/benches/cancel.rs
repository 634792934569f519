//! Cancellation benches: what deadlines and cancel trees cost on weft, next
//! to the closest tokio equivalent (2 worker threads each).
//!
//! - `spawn_deadline` (weft only): 10,000 spawns from inside a task with a
//!   60 s deadline (`task::Builder::timeout`) against 10,000 plain spawns.
//!   A deadline is a value: an unexpired one that never waits should cost no
//!   timer, so the two should be close.
//! - `timeout_10k`: 10,000 tasks each running `timeout(60 s, yield + 1)`, on
//!   weft (`weft::time::timeout`, a nested cancellation scope) and on tokio
//!   (`tokio::time::timeout`). The body is written once, in `timeouts!`.
//! - `cancel_tree/depth_1`, `cancel_tree/depth_10`: ~100,000 tasks waiting
//!   for cancellation; measured from the root's `cancel()` until every task
//!   has observed it. On weft the tree is the task tree itself (children of
//!   the task that spawned them, awaiting `weft::cancel::cancelled()`); on
//!   tokio the same shape built by hand from tokio-util `CancellationToken`s
//!   (`child_token()` per task, awaiting `token.cancelled()`). Depth 1: one
//!   root task with 100,000 children. Depth 10: a chain of 10 level tasks,
//!   each the child of the one above, each with 10,000 leaf children
//!   (100,010 waiting tasks). Timed with `iter_custom`: building the tree
//!   and tearing it down are outside the measurement.
//!
//! - `is_cancelled`: one call of `weft::cancel::is_cancelled()` inside a
//!   task, in a scope without a deadline (one atomic load and a branch),
//!   with a 60 s deadline (plus the coarse clock read that notices a passed
//!   deadline), `check()` with the same deadline for reference, and
//!   tokio-util's `CancellationToken::is_cancelled` (one atomic load).
//!   Timed inside the task with `iter_custom`.
//!
//! Each runtime is built once per bench function, outside the timed loop.
//! Run with `cargo bench -p weft-benches --bench cancel`; docs/BENCHMARKS.md
//! holds the figures.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};

/// Worker threads of both runtimes (the machine has 2 cores).
const NUM_WORKERS: usize = 2;
/// Tasks per iteration of `spawn_deadline` and `timeout_10k`.
const NUM_SPAWN: usize = 10_000;
/// A deadline that never passes during the bench.
const FAR: Duration = Duration::from_secs(60);
/// Waiting tasks of `cancel_tree` at depth 1 (plus the root).
const TREE_TASKS: usize = 100_000;
/// Levels of the deep `cancel_tree`, and the leaves under each level.
const DEEP_LEVELS: usize = 10;
const DEEP_LEAVES: usize = TREE_TASKS / DEEP_LEVELS;

fn build_weft() -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .build()
        .unwrap()
}

// `enable_all`, as in the scheduler benches: the time driver is needed by
// `timeout`.
fn build_tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NUM_WORKERS)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// spawn_deadline (weft only)

/// 10,000 spawns from inside a spawned task, each with a 60 s deadline or
/// none; the spawning task awaits them all.
fn spawn_batch(rt: &weft::Runtime, with_deadline: bool) {
    rt.block_on(async {
        weft::spawn(async move {
            let mut handles = Vec::with_capacity(NUM_SPAWN);
            for _ in 0..NUM_SPAWN {
                let handle = if with_deadline {
                    weft::task::Builder::new().timeout(FAR).spawn(async {})
                } else {
                    weft::spawn(async {})
                };
                handles.push(handle);
            }
            for handle in handles {
                handle.await.unwrap();
            }
        })
        .await
        .unwrap();
    });
}

/// Times batches of one kind, each right after an untimed batch of the
/// other kind, so both functions run on the same history. Without that,
/// whichever function ran second was 5-10% slower (deadline first:
/// 1.02-1.08, plain first: 1.07-1.29), as much as the difference being
/// measured; with it, and [`in_order`] swapping the order on every other
/// run, the remaining 2-4% averages out over runs.
fn spawn_deadline_weft(b: &mut criterion::Bencher<'_>, with_deadline: bool) {
    let rt = &build_weft();
    b.iter_custom(|iters| {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            spawn_batch(rt, !with_deadline);
            let start = Instant::now();
            spawn_batch(rt, with_deadline);
            timed += start.elapsed();
        }
        timed
    });
}

fn spawn_deadline(c: &mut Criterion) {
    let mut group = group(c, "spawn_deadline", 20, 4);
    in_order(
        &mut group,
        ("weft_plain", &mut |b| spawn_deadline_weft(b, false)),
        ("weft_deadline", &mut |b| spawn_deadline_weft(b, true)),
    );
    group.finish();
}

// ---------------------------------------------------------------------------
// timeout_10k

/// Defines `$module::timeout_10k` written against `$krate` and the runtime
/// built by `$build`: both crates spell `spawn`, `task::yield_now` and
/// `time::timeout` the same way.
macro_rules! timeouts {
    ($module:ident, $krate:ident, $build:path) => {
        mod $module {
            use super::*;

            /// 10,000 tasks spawned from inside a task, each running
            /// `timeout(60 s, async { yield_now().await; 1 })`; the spawner
            /// awaits them all.
            pub(crate) fn timeout_10k(b: &mut criterion::Bencher<'_>) {
                let rt = $build();
                b.iter(|| {
                    rt.block_on(async {
                        ::$krate::spawn(async {
                            let mut handles = Vec::with_capacity(NUM_SPAWN);
                            for _ in 0..NUM_SPAWN {
                                handles.push(::$krate::spawn(::$krate::time::timeout(
                                    FAR,
                                    async {
                                        ::$krate::task::yield_now().await;
                                        1u32
                                    },
                                )));
                            }
                            let mut sum = 0;
                            for handle in handles {
                                sum += handle.await.unwrap().unwrap();
                            }
                            assert_eq!(sum as usize, NUM_SPAWN);
                        })
                        .await
                        .unwrap();
                    });
                });
            }
        }
    };
}

timeouts!(on_weft, weft, build_weft);
timeouts!(on_tokio, tokio, build_tokio);

fn timeout_10k(c: &mut Criterion) {
    let mut group = group(c, "timeout_10k", 20, 4);
    in_order(
        &mut group,
        ("weft", &mut on_weft::timeout_10k),
        ("tokio", &mut on_tokio::timeout_10k),
    );
    group.finish();
}

// ---------------------------------------------------------------------------
// cancel_tree

/// Counters shared by every task of one tree.
struct Tree {
    /// Tasks that have started; the last to start signals `ready`.
    started: AtomicUsize,
    /// Tasks that have not yet observed the cancellation; the last to
    /// observe it signals `done`.
    waiting: AtomicUsize,
    total: usize,
    ready: mpsc::SyncSender<()>,
    done: mpsc::SyncSender<()>,
}

impl Tree {
    fn started(&self) {
        if self.started.fetch_add(1, Relaxed) + 1 == self.total {
            self.ready.send(()).unwrap();
        }
    }

    fn observed(&self) {
        if self.waiting.fetch_sub(1, Relaxed) == 1 {
            self.done.send(()).unwrap();
        }
    }
}

/// (levels, leaves under each level): depth 1 is one root with 100,000
/// children; depth 10 a chain of 10 levels with 10,000 leaves each.
fn shape(depth: usize) -> (usize, usize) {
    match depth {
        1 => (1, TREE_TASKS),
        _ => (depth, DEEP_LEAVES),
    }
}

/// Times `iters` cancellations of a fresh tree: `build` starts the tree and
/// returns the cancel trigger and a teardown; only `trigger()` until the
/// last task observed it is measured.
fn time_trees<T, D>(
    iters: u64,
    depth: usize,
    mut build: impl FnMut(Arc<Tree>) -> (T, D),
) -> Duration
where
    T: FnOnce(),
    D: FnOnce(),
{
    let (levels, leaves) = shape(depth);
    let total = levels * (leaves + 1);
    let mut elapsed = Duration::ZERO;
    for _ in 0..iters {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let tree = Arc::new(Tree {
            started: AtomicUsize::new(0),
            waiting: AtomicUsize::new(total),
            total,
            ready: ready_tx,
            done: done_tx,
        });
        let (trigger, teardown) = build(tree);
        ready_rx.recv().unwrap();
        let start = Instant::now();
        trigger();
        done_rx.recv().unwrap();
        elapsed += start.elapsed();
        teardown();
    }
    elapsed
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A weft level task: spawns the next level and its leaves (each a child of
/// this task, so of the task tree), then waits for the cancellation.
fn weft_level(tree: Arc<Tree>, level: usize, levels: usize, leaves: usize) -> BoxFuture {
    Box::pin(async move {
        tree.started();
        if level + 1 < levels {
            weft::spawn(weft_level(tree.clone(), level + 1, levels, leaves));
        }
        for _ in 0..leaves {
            let tree = tree.clone();
            weft::spawn(async move {
                tree.started();
                weft::cancel::cancelled().await;
                tree.observed();
            });
        }
        weft::cancel::cancelled().await;
        tree.observed();
    })
}

/// The same shape on tokio: every task holds a `child_token()` of its
/// parent's token.
fn tokio_level(
    tree: Arc<Tree>,
    token: tokio_util::sync::CancellationToken,
    level: usize,
    levels: usize,
    leaves: usize,
) -> BoxFuture {
    Box::pin(async move {
        tree.started();
        if level + 1 < levels {
            tokio::spawn(tokio_level(
                tree.clone(),
                token.child_token(),
                level + 1,
                levels,
                leaves,
            ));
        }
        for _ in 0..leaves {
            let tree = tree.clone();
            let token = token.child_token();
            tokio::spawn(async move {
                tree.started();
                token.cancelled().await;
                tree.observed();
            });
        }
        token.cancelled().await;
        tree.observed();
    })
}

fn cancel_tree_weft(b: &mut criterion::Bencher<'_>, depth: usize) {
    let rt = build_weft();
    let (levels, leaves) = shape(depth);
    b.iter_custom(|iters| {
        time_trees(iters, depth, |tree| {
            let root = rt.spawn(weft_level(tree, 0, levels, leaves));
            let root = Arc::new(root);
            let trigger = {
                let root = root.clone();
                move || {
                    root.cancel();
                }
            };
            let teardown = || {
                let root = Arc::into_inner(root).unwrap();
                rt.block_on(root).unwrap();
            };
            (trigger, teardown)
        })
    });
}

fn cancel_tree_tokio(b: &mut criterion::Bencher<'_>, depth: usize) {
    let rt = build_tokio();
    let (levels, leaves) = shape(depth);
    b.iter_custom(|iters| {
        time_trees(iters, depth, |tree| {
            let token = tokio_util::sync::CancellationToken::new();
            let root = rt.spawn(tokio_level(tree, token.clone(), 0, levels, leaves));
            let trigger = move || token.cancel();
            let teardown = || rt.block_on(root).unwrap();
            (trigger, teardown)
        })
    });
}

fn cancel_tree(c: &mut Criterion) {
    for depth in [1, 10] {
        let name = format!("cancel_tree_depth_{depth}");
        let mut group = group(c, &name, 10, 3);
        group.sampling_mode(criterion::SamplingMode::Flat);
        in_order(
            &mut group,
            ("weft", &mut |b| cancel_tree_weft(b, depth)),
            ("tokio", &mut |b| cancel_tree_tokio(b, depth)),
        );
        group.finish();
    }
}

/// A group with short settings, so the whole bench stays within a few
/// minutes on 2 cores.
fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    samples: usize,
    measure_secs: u64,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(measure_secs));
    group
}

type BenchFn<'f> = &'f mut dyn FnMut(&mut criterion::Bencher<'_>);

/// Runs the two functions of a group in the given order, or swapped (see
/// `weft_benches::swap_order`).
fn in_order<'f>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    first: (&str, BenchFn<'f>),
    second: (&str, BenchFn<'f>),
) {
    let (first, second) = if weft_benches::swap_order() {
        (second, first)
    } else {
        (first, second)
    };
    for (name, f) in [first, second] {
        group.bench_function(name, |b| f(b));
    }
}

/// `iters` calls of `probe` inside a weft task (with a 60 s deadline or
/// none), timed inside the task.
fn time_in_weft_task(
    rt: &weft::Runtime,
    deadline: bool,
    iters: u64,
    probe: fn() -> bool,
) -> Duration {
    let body = async move {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(probe());
        }
        start.elapsed()
    };
    let mut builder = weft::task::Builder::new();
    if deadline {
        builder = builder.timeout(FAR);
    }
    rt.block_on(builder.spawn_on(body, rt.handle())).unwrap()
}

fn is_cancelled(c: &mut Criterion) {
    let mut group = group(c, "is_cancelled", 20, 2);
    let rt = build_weft();
    group.bench_function("weft_no_deadline", |b| {
        b.iter_custom(|iters| time_in_weft_task(&rt, false, iters, weft::cancel::is_cancelled))
    });
    group.bench_function("weft_deadline_60s", |b| {
        b.iter_custom(|iters| time_in_weft_task(&rt, true, iters, weft::cancel::is_cancelled))
    });
    group.bench_function("weft_check_deadline_60s", |b| {
        b.iter_custom(|iters| {
            time_in_weft_task(&rt, true, iters, || weft::cancel::check().is_err())
        })
    });
    group.bench_function("tokio_util_token", |b| {
        let token = tokio_util::sync::CancellationToken::new();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(token.is_cancelled());
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(
    cancel,
    spawn_deadline,
    timeout_10k,
    cancel_tree,
    is_cancelled
);
criterion_main!(cancel);
