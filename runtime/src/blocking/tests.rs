//! The pool's contract: the cap, reuse and reaping of threads, panics,
//! hooks, spawn failure and shutdown. Every wait is bounded by `PATIENCE`;
//! nothing asserts how fast anything happens.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        mpsc, Arc, Condvar, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use super::{pool::Job, BlockingConfig, BlockingPool};

/// Upper bound on every wait; reaching it fails the test instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

fn config(max_threads: usize, keep_alive: Duration) -> BlockingConfig {
    BlockingConfig {
        max_threads,
        keep_alive,
        ..BlockingConfig::default()
    }
}

fn job(f: impl FnOnce() + Send + 'static) -> Job {
    Box::new(f)
}

fn spawn(pool: &BlockingPool, f: impl FnOnce() + Send + 'static) {
    assert!(pool.spawn(job(f)).is_ok(), "the pool refused a job");
}

/// Polls `condition` until it holds or `PATIENCE` runs out.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A latch jobs block on until the test opens it (or `PATIENCE` passes, so a
/// failing test cannot leave a job blocked forever).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let open = self.open.lock().unwrap();
        let (open, _) = self
            .opened
            .wait_timeout_while(open, PATIENCE, |open| !*open)
            .unwrap();
        assert!(*open, "gate never opened");
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Counts its drops: a job holding one shows whether it was dropped unrun.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn _assert_send_sync<T: Send + Sync>() {}
const _: fn() = _assert_send_sync::<BlockingPool>;

#[test]
fn threads_never_exceed_max_and_every_job_runs() {
    let pool = BlockingPool::new(config(2, PATIENCE));
    let gate = Arc::new(Gate::default());
    let running = Arc::new(AtomicUsize::new(0));
    let most_running = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = mpsc::channel();

    for i in 0..5 {
        let (gate, running, most_running) = (gate.clone(), running.clone(), most_running.clone());
        let done_tx = done_tx.clone();
        let spawned = pool.spawn(job(move || {
            most_running.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
            gate.wait();
            running.fetch_sub(1, SeqCst);
            done_tx.send(i).unwrap();
        }));
        assert!(spawned.is_ok());
        assert!(pool.metrics().threads_alive <= 2);
    }
    eventually("two running jobs and three queued", || {
        let m = pool.metrics();
        running.load(SeqCst) == 2 && m.queue_depth == 3
    });
    assert_eq!(pool.metrics().threads_alive, 2);

    gate.open();
    let mut done: Vec<i32> = (0..5)
        .map(|_| {
            done_rx
                .recv_timeout(PATIENCE)
                .expect("a job never finished")
        })
        .collect();
    done.sort_unstable();
    assert_eq!(done, [0, 1, 2, 3, 4]);
    assert_eq!(most_running.load(SeqCst), 2);
    eventually("all jobs counted", || pool.metrics().jobs_completed == 5);
    let m = pool.metrics();
    assert_eq!((m.threads_alive, m.queue_depth), (2, 0));
    assert!(pool.shutdown(Some(PATIENCE)));
}

#[test]
fn an_idle_thread_is_reused_before_a_new_one_starts() {
    let pool = BlockingPool::new(config(4, PATIENCE));
    for _ in 0..3 {
        let (tx, rx) = mpsc::channel();
        spawn(&pool, move || tx.send(thread::current().id()).unwrap());
        rx.recv_timeout(PATIENCE).unwrap();
        eventually("the thread to go idle", || pool.metrics().threads_idle == 1);
        assert_eq!(pool.metrics().threads_alive, 1);
    }
    assert!(pool.shutdown(Some(PATIENCE)));
}

#[test]
fn concurrent_spawns_all_run_within_the_cap() {
    let pool = BlockingPool::new(config(3, Duration::from_millis(1)));
    let ran = Arc::new(AtomicUsize::new(0));
    let spawners: Vec<_> = (0..8)
        .map(|_| {
            let (pool, ran) = (pool.clone(), ran.clone());
            thread::spawn(move || {
                for _ in 0..100 {
                    let ran = ran.clone();
                    spawn(&pool, move || {
                        ran.fetch_add(1, SeqCst);
                    });
                    assert!(pool.metrics().threads_alive <= 3);
                }
            })
        })
        .collect();
    for spawner in spawners {
        spawner.join().unwrap();
    }
    eventually("all 800 jobs to run", || ran.load(SeqCst) == 800);
    assert!(pool.shutdown(Some(PATIENCE)));
    assert_eq!(pool.metrics().jobs_completed, 800);
}

#[test]
fn idle_threads_exit_after_keep_alive() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let on_stop = stopped.clone();
    let pool = BlockingPool::new(BlockingConfig {
        on_thread_stop: Some(Arc::new(move || {
            on_stop.fetch_add(1, SeqCst);
        })),
        ..config(4, Duration::from_millis(50))
    });
    let gate = Arc::new(Gate::default());
    for _ in 0..3 {
        let gate = gate.clone();
        spawn(&pool, move || gate.wait());
    }
    assert_eq!(pool.metrics().threads_alive, 3);
    gate.open();

    eventually("idle threads to be reaped", || {
        pool.metrics().threads_alive == 0
    });
    assert_eq!(stopped.load(SeqCst), 3);
    let m = pool.metrics();
    assert_eq!((m.threads_idle, m.jobs_completed), (0, 3));

    // A reaped pool starts threads again on demand.
    let (tx, rx) = mpsc::channel();
    spawn(&pool, move || tx.send(()).unwrap());
    rx.recv_timeout(PATIENCE).unwrap();
    assert!(pool.shutdown(Some(PATIENCE)));
}

#[test]
fn a_panicking_job_does_not_cost_a_thread() {
    let pool = BlockingPool::new(config(1, PATIENCE));
    let (tx, rx) = mpsc::channel();
    let panicker = tx.clone();
    spawn(&pool, move || {
        panicker.send(thread::current().id()).unwrap();
        panic!("a blocking job panicked (expected by this test)");
    });
    spawn(&pool, move || tx.send(thread::current().id()).unwrap());

    let first = rx.recv_timeout(PATIENCE).unwrap();
    let second = rx.recv_timeout(PATIENCE).expect("the pool lost its thread");
    assert_eq!(first, second, "the same thread serves after the panic");
    eventually("both jobs counted", || pool.metrics().jobs_completed == 2);
    assert_eq!(pool.metrics().threads_alive, 1);
    assert!(pool.shutdown(Some(PATIENCE)));
}

#[test]
fn hooks_and_names_apply_to_every_pool_thread() {
    let started = Arc::new(Mutex::new(Vec::new()));
    let stopped = Arc::new(AtomicUsize::new(0));
    let named = Arc::new(AtomicUsize::new(0));
    let (on_start, on_stop, name) = (started.clone(), stopped.clone(), named.clone());
    let pool = BlockingPool::new(BlockingConfig {
        thread_name: Arc::new(move || format!("blocking-{}", name.fetch_add(1, SeqCst))),
        on_thread_start: Some(Arc::new(move || {
            let name = thread::current().name().map(str::to_owned);
            on_start.lock().unwrap().push(name);
        })),
        on_thread_stop: Some(Arc::new(move || {
            stopped.fetch_add(1, SeqCst);
        })),
        ..config(3, PATIENCE)
    });
    let gate = Arc::new(Gate::default());
    let (tx, rx) = mpsc::channel();
    for _ in 0..3 {
        let (gate, tx) = (gate.clone(), tx.clone());
        spawn(&pool, move || {
            tx.send(thread::current().name().map(str::to_owned))
                .unwrap();
            gate.wait();
        });
    }
    let mut job_threads: Vec<_> = (0..3)
        .map(|_| rx.recv_timeout(PATIENCE).unwrap().unwrap())
        .collect();
    job_threads.sort();
    assert_eq!(job_threads, ["blocking-0", "blocking-1", "blocking-2"]);
    gate.open();

    assert!(pool.shutdown(Some(PATIENCE)));
    let mut started = started.lock().unwrap().clone();
    started.sort();
    let started: Vec<_> = started.into_iter().map(Option::unwrap).collect();
    assert_eq!(
        started, job_threads,
        "on_thread_start ran on each pool thread"
    );
    // shutdown returned true, so every thread is past its stop hook.
    assert_eq!(on_stop.load(SeqCst), 3);
}

#[test]
fn shutdown_drops_queued_jobs_without_running_them() {
    let pool = BlockingPool::new(config(1, PATIENCE));
    let gate = Arc::new(Gate::default());
    let (started_tx, started_rx) = mpsc::channel();
    let blocker = gate.clone();
    spawn(&pool, move || {
        started_tx.send(()).unwrap();
        blocker.wait();
    });
    started_rx.recv_timeout(PATIENCE).unwrap();

    let dropped = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let counter = DropCounter(dropped.clone());
        let ran = ran.clone();
        spawn(&pool, move || {
            let _counter = counter;
            ran.fetch_add(1, SeqCst);
        });
    }
    assert_eq!(pool.metrics().queue_depth, 3);

    // Only shutdown can empty the queue while the one thread is blocked, so
    // the running job is released only once the queued ones are gone.
    let gate_opener = {
        let (pool, gate) = (pool.clone(), gate.clone());
        thread::spawn(move || {
            eventually("shutdown to take the queue", || {
                pool.metrics().queue_depth == 0
            });
            gate.open();
        })
    };
    assert!(pool.shutdown(Some(PATIENCE)), "the running job finishes");
    gate_opener.join().unwrap();
    assert_eq!(dropped.load(SeqCst), 3, "queued jobs are dropped");
    assert_eq!(ran.load(SeqCst), 0, "queued jobs never run");
    let m = pool.metrics();
    assert_eq!(
        (m.threads_alive, m.queue_depth, m.jobs_completed),
        (0, 0, 1)
    );
}

#[test]
fn shutdown_detaches_a_job_that_outlives_the_timeout() {
    let pool = BlockingPool::new(config(2, PATIENCE));
    let gate = Arc::new(Gate::default());
    let (started_tx, started_rx) = mpsc::channel();
    let blocker = gate.clone();
    spawn(&pool, move || {
        started_tx.send(()).unwrap();
        blocker.wait();
    });
    started_rx.recv_timeout(PATIENCE).unwrap();

    assert!(!pool.shutdown(Some(Duration::from_millis(20))));
    let m = pool.metrics();
    assert_eq!((m.threads_alive, m.threads_detached), (1, 1));

    // The detached thread finishes its job and exits on its own; a second
    // shutdown sees it gone.
    gate.open();
    eventually("the detached thread to exit", || {
        pool.metrics().threads_alive == 0
    });
    assert!(pool.shutdown(Some(PATIENCE)));
    assert_eq!(pool.metrics().threads_detached, 1);
}

#[test]
fn shutdown_is_idempotent_and_refuses_later_jobs() {
    let pool = BlockingPool::new(config(2, PATIENCE));
    assert!(pool.shutdown(None), "an unused pool shuts down at once");
    assert!(pool.shutdown(Some(Duration::ZERO)));

    let ran = Arc::new(AtomicUsize::new(0));
    let flag = ran.clone();
    let refused = pool
        .spawn(job(move || {
            flag.fetch_add(1, SeqCst);
        }))
        .expect_err("spawn after shutdown must fail");
    assert_eq!(pool.metrics().threads_alive, 0);
    refused();
    assert_eq!(ran.load(SeqCst), 1, "the caller gets its job back intact");
}

#[test]
fn a_thread_the_os_refuses_gives_the_job_back() {
    // No address space holds a 2^60-byte stack, so every spawn fails.
    let pool = BlockingPool::new(BlockingConfig {
        stack_size: Some(1 << 60),
        ..config(2, PATIENCE)
    });
    let refused = pool.spawn(job(|| {}));
    assert!(refused.is_err(), "no thread exists to run the job");
    let m = pool.metrics();
    assert_eq!((m.threads_alive, m.queue_depth), (0, 0));
    assert!(pool.shutdown(Some(PATIENCE)));
}

#[test]
#[should_panic(expected = "max_threads >= 1")]
fn zero_max_threads_is_refused() {
    let _ = BlockingPool::new(config(0, PATIENCE));
}
