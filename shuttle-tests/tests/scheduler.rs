//! The real scheduler under randomized schedules: a `Runtime` with three
//! workers whose threads are shuttle's model threads, running the real run
//! loop (`scheduler/worker.rs`), local queues and stealing
//! (crossbeam-deque), the LIFO slot, the injector, the idle/notify protocol
//! (`idle.rs`), the parker (`park.rs`), the task harness and `JoinHandle`s.
//! What `--cfg weft_shuttle` replaces to make that possible (a worker
//! parks on its parker's condvar, not in its io driver; no monitor thread)
//! is in docs/VERIFICATION.md, "shuttle".
//!
//! Each test checks that every task ran exactly once and every
//! `JoinHandle` got its task's output; that every future was dropped; that
//! no task is alive once the runtime has shut down, and that the shutdown
//! found every worker exited. A lost wakeup leaves a worker (or the
//! `block_on` thread) parked with work pending: shuttle reports the
//! deadlock. Summed over all schedules, the scheduler paths each test is
//! about (steals, parks, LIFO hits, injector pops) must have been taken,
//! so a change that stopped exercising them fails here too.
//!
//! Run: `RUSTFLAGS="--cfg weft_shuttle" CARGO_TARGET_DIR=target-shuttle
//! cargo test -p shuttle-tests --release --test scheduler`
#![cfg(weft_shuttle)]

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use shuttle::thread;
use shuttle_tests::{check, iterations};
use weft::{
    runtime::{Builder, Handle, Runtime, RuntimeMetrics},
    sync::{oneshot, Notify},
};

const WORKERS: usize = 3;

/// A runtime of three model-thread workers. The idle spin is off: it
/// watches the queues for a stretch of wall-clock time, which would make
/// the number of steps of a schedule depend on the machine (and a seed
/// not replay); with it off a worker that finds nothing parks at once,
/// the path every idle spin ends in too.
fn runtime() -> Runtime {
    build(Builder::new_multi_thread())
}

/// `runtime()` on another flavour's builder.
fn build(builder: Builder) -> Runtime {
    builder
        .worker_threads(WORKERS)
        .idle_spin(Duration::ZERO)
        .build()
        .expect("the runtime starts")
}

/// What a task leaves behind: one run, and one drop of its future.
#[derive(Default)]
struct Ledger {
    runs: Vec<AtomicUsize>,
    drops: AtomicUsize,
}

impl Ledger {
    fn new(tasks: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            runs: (0..tasks).map(|_| AtomicUsize::new(0)).collect(),
            drops: AtomicUsize::new(0),
        })
    }

    /// Every task ran exactly once and every future was dropped.
    fn assert_each_ran_once(&self) {
        for (i, runs) in self.runs.iter().enumerate() {
            assert_eq!(runs.load(Relaxed), 1, "task {i} ran {runs:?} times");
        }
        assert_eq!(self.drops.load(Relaxed), self.runs.len(), "futures dropped");
    }
}

/// Counts the drop of the future that holds it.
struct DropGuard(Arc<Ledger>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.drops.fetch_add(1, Relaxed);
    }
}

/// A task body: records its run, yields `yields` times (back through the
/// scheduler), and returns its index as its output. The guard is made
/// before the future, so a future dropped unpolled counts too.
fn task(ledger: Arc<Ledger>, index: usize, yields: usize) -> impl Future<Output = usize> {
    let guard = DropGuard(ledger);
    async move {
        for _ in 0..yields {
            weft::task::yield_now().await;
        }
        guard.0.runs[index].fetch_add(1, Relaxed);
        index
    }
}

/// Shuts the runtime down and checks it ended clean: every worker
/// exited, no task is left alive. Returns the final metrics.
fn shut_down(rt: Runtime) -> RuntimeMetrics {
    let handle = rt.handle().clone();
    // Untimed in effect: shuttle's timed waits end at random points of the
    // schedule, and the deadline is far beyond any run.
    assert!(
        rt.shutdown_timeout(Duration::from_secs(3600)),
        "a worker did not exit"
    );
    let metrics = handle.metrics();
    assert_eq!(metrics.alive_tasks, 0, "tasks alive after shutdown");
    assert_eq!(metrics.injector_depth, 0);
    metrics
}

/// Sums of per-worker counters over all schedules of one test.
#[derive(Default)]
struct Totals {
    steals: AtomicU64,
    parks: AtomicU64,
    lifo_hits: AtomicU64,
    injector_pops: AtomicU64,
}

impl Totals {
    fn add(&self, m: &RuntimeMetrics) {
        for w in &m.worker {
            self.steals.fetch_add(w.steals, Relaxed);
            self.parks.fetch_add(w.parks, Relaxed);
            self.lifo_hits.fetch_add(w.lifo_hits, Relaxed);
            self.injector_pops.fetch_add(w.injector_pops, Relaxed);
        }
    }
}

/// Asserts a path was taken in some schedule (skipped when a tiny
/// `WEFT_SHUTTLE_ITERS` makes that a matter of luck).
fn assert_exercised(what: &str, total: &AtomicU64, iters: usize) {
    if iters >= 20 {
        assert!(total.load(Relaxed) > 0, "no schedule took the {what} path");
    }
}

/// Spawn storm: the `block_on` thread spawns `roots` roots (remote: into
/// the injector), each root spawns `children` children from inside a task
/// (local: LIFO slot and run queue) and awaits them, while another thread
/// spawns `outside` tasks through a `Handle` and waits for them with its
/// own `block_on`. Every task runs once, every `JoinHandle` yields its own
/// task's output.
fn spawn_storm(name: &'static str, iters: usize, roots: usize, children: usize, outside: usize) {
    spawn_storm_on(name, iters, roots, children, outside, false)
}

/// `spawn_storm` on the multi-thread runtime or (`per_core`) the
/// thread-per-core one, where nothing may be stolen and remote spawns and
/// wakes go through each worker's inbox (counted as injector pops).
fn spawn_storm_on(
    name: &'static str,
    iters: usize,
    roots: usize,
    children: usize,
    outside: usize,
    per_core: bool,
) {
    let tasks = roots * (1 + children) + outside;
    let totals = Arc::new(Totals::default());
    let t = totals.clone();
    let ran = iterations(iters);
    check(name, iters, move || {
        let rt = if per_core {
            build(Builder::new_thread_per_core())
        } else {
            runtime()
        };
        let ledger = Ledger::new(tasks);
        let spawner = {
            let handle: Handle = rt.handle().clone();
            let ledger = ledger.clone();
            thread::spawn(move || {
                let base = roots * (1 + children);
                let joins: Vec<_> = (0..outside)
                    .map(|i| handle.spawn(task(ledger.clone(), base + i, i % 2)))
                    .collect();
                let outs = handle.block_on(async move {
                    let mut outs = Vec::new();
                    for join in joins {
                        outs.push(join.await.expect("the task completes"));
                    }
                    outs
                });
                assert_eq!(outs, (base..base + outside).collect::<Vec<_>>());
            })
        };
        rt.block_on({
            let ledger = ledger.clone();
            async move {
                let joins: Vec<_> = (0..roots)
                    .map(|r| {
                        let ledger = ledger.clone();
                        let index = r * (1 + children);
                        weft::spawn(async move {
                            let kids: Vec<_> = (1..=children)
                                .map(|c| weft::spawn(task(ledger.clone(), index + c, c % 2)))
                                .collect();
                            let mut outs = Vec::new();
                            for kid in kids {
                                outs.push(kid.await.expect("the child completes"));
                            }
                            assert_eq!(outs, (index + 1..=index + children).collect::<Vec<_>>());
                            task(ledger, index, 0).await
                        })
                    })
                    .collect();
                for (r, join) in joins.into_iter().enumerate() {
                    assert_eq!(join.await.expect("the root completes"), r * (1 + children));
                }
            }
        });
        spawner.join().expect("the outside spawner");
        t.add(&shut_down(rt));
        ledger.assert_each_ran_once();
    });
    assert_exercised("injector", &totals.injector_pops, ran);
    assert_exercised("LIFO slot", &totals.lifo_hits, ran);
    assert_exercised("park", &totals.parks, ran);
    if per_core {
        assert_eq!(
            totals.steals.load(Relaxed),
            0,
            "a thread-per-core task moved"
        );
    } else {
        assert_exercised("steal", &totals.steals, ran);
    }
}

/// The thread-per-core flavour (`scheduler/pinned.rs`): roots and outside
/// spawns land on the workers round-robin through their inboxes (push,
/// then unpark: a lost wakeup is a shuttle deadlock), children stay on
/// their root's worker, nothing is stolen.
#[test]
fn spawn_storm_thread_per_core() {
    spawn_storm_on("spawn_storm_thread_per_core", 2000, 2, 3, 4, true);
}

/// 12 tasks, many schedules.
#[test]
fn spawn_storm_from_tasks_and_from_outside() {
    spawn_storm("spawn_storm_from_tasks_and_from_outside", 3000, 2, 3, 4);
}

/// 40 tasks (3 roots of 8 children, 8 from outside), fewer schedules:
/// queues long enough for batch steals and injector batches.
#[test]
fn spawn_storm_wide() {
    spawn_storm("spawn_storm_wide", 1000, 3, 8, 8);
}

const STEAL_ITERS: usize = 3000;
const FAN_OUT: usize = 12;

/// Steal storm: one task spawns many children onto its own worker while
/// the others are idle (parked, or searching); they are woken for the
/// stealable work and take it. All children complete, once each.
#[test]
fn steal_storm_one_task_fans_out_on_its_worker() {
    let totals = Arc::new(Totals::default());
    let t = totals.clone();
    let iters = iterations(STEAL_ITERS);
    check(
        "steal_storm_one_task_fans_out_on_its_worker",
        STEAL_ITERS,
        move || {
            let rt = runtime();
            let ledger = Ledger::new(FAN_OUT + 1);
            let out = rt.block_on({
                let ledger = ledger.clone();
                async move {
                    weft::spawn(async move {
                        let children: Vec<_> = (1..=FAN_OUT)
                            .map(|i| weft::spawn(task(ledger.clone(), i, 1)))
                            .collect();
                        let mut sum = 0;
                        for child in children {
                            sum += child.await.expect("the child completes");
                        }
                        sum + task(ledger, 0, 0).await
                    })
                    .await
                    .expect("the parent completes")
                }
            });
            assert_eq!(out, FAN_OUT * (FAN_OUT + 1) / 2);
            t.add(&shut_down(rt));
            ledger.assert_each_ran_once();
        },
    );
    assert_exercised("steal", &totals.steals, iters);
}

const PARK_ITERS: usize = 3000;
const PAIRS: usize = 3;
const ROUNDS: usize = 3;

/// Park storm: pairs of tasks ping-pong through `Notify`s and a ring of
/// tasks passes a token through `oneshot`s, while an outside thread's
/// `notify_one` releases one more task; every hand-off may cross workers,
/// so workers park and are unparked throughout. A lost wakeup is a
/// deadlock (every worker and the `block_on` thread parked).
#[test]
fn park_storm_ping_pong_across_workers() {
    const RING: usize = 3;
    const TASKS: usize = 2 * PAIRS + RING + 1;
    let totals = Arc::new(Totals::default());
    let t = totals.clone();
    let iters = iterations(PARK_ITERS);
    check(
        "park_storm_ping_pong_across_workers",
        PARK_ITERS,
        move || {
            let rt = runtime();
            let ledger = Ledger::new(TASKS);
            let gate = Arc::new(Notify::new());
            let opener = {
                let gate = gate.clone();
                thread::spawn(move || gate.notify_one())
            };
            rt.block_on({
                let ledger = ledger.clone();
                async move {
                    let mut joins = Vec::new();
                    for p in 0..PAIRS {
                        let ping = Arc::new(Notify::new());
                        let pong = Arc::new(Notify::new());
                        let (a, b) = (2 * p, 2 * p + 1);
                        let (ping2, pong2) = (ping.clone(), pong.clone());
                        let l = ledger.clone();
                        joins.push(weft::spawn(async move {
                            for _ in 0..ROUNDS {
                                ping.notify_one();
                                pong.notified().await.expect("no cancel here");
                            }
                            task(l, a, 0).await
                        }));
                        let l = ledger.clone();
                        joins.push(weft::spawn(async move {
                            for _ in 0..ROUNDS {
                                ping2.notified().await.expect("no cancel here");
                                pong2.notify_one();
                            }
                            task(l, b, 0).await
                        }));
                    }
                    // The ring: task i waits for i - 1's token, passes it on.
                    let base = 2 * PAIRS;
                    let (first_tx, mut rx) = oneshot::channel::<usize>();
                    for i in 0..RING {
                        let (tx, next_rx) = oneshot::channel::<usize>();
                        let l = ledger.clone();
                        joins.push(weft::spawn(async move {
                            let token = rx.await.expect("the token comes");
                            assert_eq!(token, i);
                            tx.send(token + 1).expect("the next one waits");
                            task(l, base + i, 0).await
                        }));
                        rx = next_rx;
                    }
                    first_tx.send(0).expect("the ring waits");
                    let gated = {
                        let l = ledger.clone();
                        weft::spawn(async move {
                            gate.notified().await.expect("no cancel here");
                            task(l, base + RING, 0).await
                        })
                    };
                    joins.push(gated);
                    assert_eq!(rx.await.expect("the token comes round"), RING);
                    for (i, join) in joins.into_iter().enumerate() {
                        assert_eq!(join.await.expect("the task completes"), i);
                    }
                }
            });
            opener.join().expect("the opener");
            t.add(&shut_down(rt));
            ledger.assert_each_ran_once();
        },
    );
    assert_exercised("park", &totals.parks, iters);
}

/// Shutdown with work in every state: tasks parked on a `Notify` nobody
/// notifies, tasks still yielding, and tasks spawned from outside while
/// the runtime shuts down. Every future is dropped exactly once, every
/// task's `JoinHandle` resolves (output or cancelled), and nothing is
/// left alive.
#[test]
fn shutdown_with_tasks_waiting_running_and_arriving() {
    const WAITING: usize = 3;
    const YIELDING: usize = 3;
    const LATE: usize = 2;
    const TASKS: usize = WAITING + YIELDING + LATE;
    check(
        "shutdown_with_tasks_waiting_running_and_arriving",
        2000,
        move || {
            let rt = runtime();
            let ledger = Ledger::new(TASKS);
            let never = Arc::new(Notify::new());
            let mut joins = Vec::new();
            for i in 0..WAITING {
                let (l, never) = (ledger.clone(), never.clone());
                let guard = DropGuard(l);
                joins.push(rt.spawn(async move {
                    // Shutdown drops the future: it never returns.
                    never.notified().await.expect("no cancel here");
                    guard.0.runs[i].fetch_add(1, Relaxed);
                    i
                }));
            }
            for i in WAITING..WAITING + YIELDING {
                joins.push(rt.spawn(task(ledger.clone(), i, 2)));
            }
            let late = {
                let handle = rt.handle().clone();
                let ledger = ledger.clone();
                thread::spawn(move || {
                    (WAITING + YIELDING..TASKS)
                        .map(|i| handle.spawn(task(ledger.clone(), i, 0)))
                        .collect::<Vec<_>>()
                })
            };
            shut_down(rt);
            joins.extend(late.join().expect("the late spawner"));
            // Every handle has resolved: shutdown cancelled what had not run.
            let mut finished = 0;
            for (i, mut join) in joins.into_iter().enumerate() {
                let poll = std::pin::Pin::new(&mut join)
                    .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
                match poll {
                    std::task::Poll::Ready(Ok(out)) => {
                        assert_eq!(out, i);
                        assert_eq!(ledger.runs[i].load(Relaxed), 1, "task {i}");
                        finished += 1;
                    }
                    std::task::Poll::Ready(Err(e)) => {
                        assert!(e.is_cancelled(), "task {i}: {e}");
                        assert_eq!(ledger.runs[i].load(Relaxed), 0, "task {i}");
                    }
                    std::task::Poll::Pending => panic!("task {i}'s handle never resolves"),
                }
            }
            assert!(finished <= YIELDING + LATE, "a waiting task finished");
            assert_eq!(ledger.drops.load(Relaxed), TASKS, "futures dropped");
        },
    );
}

const BLOCKING: usize = 2;

/// The blocking pool (its threads are model threads too, through the
/// facade) next to the workers: tasks hand jobs to it and await them, and
/// each job spawns a task back onto the runtime through a `Handle` (a
/// remote spawn from a non-worker thread). Every job and task runs once,
/// and the pool's threads have all exited after shutdown.
#[test]
fn blocking_jobs_spawn_back_onto_the_workers() {
    const TASKS: usize = 2 * BLOCKING;
    check(
        "blocking_jobs_spawn_back_onto_the_workers",
        1000,
        move || {
            let rt = runtime();
            let ledger = Ledger::new(TASKS);
            let handle = rt.handle().clone();
            rt.block_on({
                let ledger = ledger.clone();
                async move {
                    let jobs: Vec<_> = (0..BLOCKING)
                        .map(|i| {
                            let (ledger, handle) = (ledger.clone(), handle.clone());
                            let guard = DropGuard(ledger.clone());
                            weft::spawn(async move {
                                let back = weft::spawn_blocking(move || {
                                    let _guard = guard;
                                    ledger.runs[BLOCKING + i].fetch_add(1, Relaxed);
                                    handle.spawn(task(ledger, i, 1))
                                })
                                .await
                                .expect("the job completes");
                                back.await.expect("the task completes")
                            })
                        })
                        .collect();
                    for (i, job) in jobs.into_iter().enumerate() {
                        assert_eq!(job.await.expect("the spawner completes"), i);
                    }
                }
            });
            let metrics = shut_down(rt);
            assert_eq!(metrics.blocking_threads, 0, "blocking threads left");
            ledger.assert_each_ran_once();
        },
    );
}
