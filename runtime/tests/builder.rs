//! `Builder`: every invalid setting is an `Err` that names the setting, never
//! a panic; valid edge values work; thread names reach the threads.

mod common;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    thread,
};

use common::{block_on_bounded, LIMIT};
use weft::runtime::{BuildError, Builder, MAX_WORKER_THREADS};

fn build_err(builder: Builder) -> BuildError {
    let mut builder = builder;
    match builder.build() {
        Ok(_) => panic!("an invalid builder built a runtime"),
        Err(err) => err,
    }
}

fn assert_rejected(builder: Builder, field: &str) {
    let err = build_err(builder);
    let shown = err.to_string();
    assert!(
        shown.contains(field),
        "the error does not name `{field}`: {shown}"
    );
    assert!(
        shown.contains('0'),
        "the error does not show the bad value: {shown}"
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn zero_worker_threads_is_rejected() {
    let b = Builder::new_multi_thread().worker_threads(0);
    assert!(matches!(build_err(b), BuildError::ZeroWorkerThreads));
    assert_rejected(
        Builder::new_multi_thread().worker_threads(0),
        "worker_threads",
    );
}

#[test]
fn too_many_worker_threads_is_rejected_before_any_thread_starts() {
    let err = build_err(Builder::new_multi_thread().worker_threads(MAX_WORKER_THREADS + 1));
    let shown = err.to_string();
    assert!(shown.contains("worker_threads"), "{shown}");
    assert!(
        shown.contains(&(MAX_WORKER_THREADS + 1).to_string()),
        "{shown}"
    );
    assert!(matches!(err, BuildError::TooManyWorkerThreads { .. }));
}

#[test]
fn zero_global_queue_interval_is_rejected() {
    let b = Builder::new_multi_thread()
        .worker_threads(1)
        .global_queue_interval(0);
    assert!(matches!(build_err(b), BuildError::ZeroGlobalQueueInterval));
    assert_rejected(
        Builder::new_multi_thread()
            .worker_threads(1)
            .global_queue_interval(0),
        "global_queue_interval",
    );
}

#[test]
fn zero_event_interval_is_rejected() {
    let b = Builder::new_multi_thread()
        .worker_threads(1)
        .event_interval(0);
    assert!(matches!(build_err(b), BuildError::ZeroEventInterval));
    assert_rejected(
        Builder::new_multi_thread()
            .worker_threads(1)
            .event_interval(0),
        "event_interval",
    );
}

#[test]
fn zero_max_blocking_threads_is_rejected() {
    let b = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(0);
    assert!(matches!(build_err(b), BuildError::ZeroMaxBlockingThreads));
    assert_rejected(
        Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(0),
        "max_blocking_threads",
    );
}

#[test]
fn a_rejected_build_starts_no_thread() {
    let starts = Arc::new(AtomicUsize::new(0));
    let mut b = {
        let starts = starts.clone();
        Builder::new_multi_thread()
            .worker_threads(2)
            .event_interval(0)
            .on_thread_start(move || {
                starts.fetch_add(1, SeqCst);
            })
    };
    assert!(b.build().is_err());
    assert_eq!(starts.load(SeqCst), 0);
}

#[test]
fn the_same_builder_builds_again_once_fixed() {
    let mut b = Builder::new_multi_thread().worker_threads(0);
    assert!(b.build().is_err());
    let mut b = b.worker_threads(1);
    let rt = b.build().unwrap();
    let rt2 = b.build().unwrap();
    assert_eq!(block_on_bounded(&rt, async { 1 }), 1);
    assert_eq!(block_on_bounded(&rt2, async { 2 }), 2);
}

#[test]
fn the_default_is_one_worker_per_cpu() {
    let rt = Builder::default().build().unwrap();
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(rt.metrics().workers, cpus);
    assert_eq!(rt.metrics().worker.len(), cpus);
}

#[test]
fn worker_threads_sets_the_number_of_workers() {
    for n in [1, 3] {
        let rt = Builder::new_multi_thread()
            .worker_threads(n)
            .build()
            .unwrap();
        assert_eq!(rt.metrics().workers, n);
    }
}

#[test]
fn thread_name_is_applied_to_every_worker() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weft-tests-named")
        .build()
        .unwrap();
    let names = block_on_bounded(&rt, async {
        let joins: Vec<_> = (0..200)
            .map(|_| {
                weft::spawn(async {
                    weft::task::yield_now().await;
                    thread::current().name().map(str::to_owned)
                })
            })
            .collect();
        let mut names = HashSet::new();
        for j in joins {
            names.insert(j.await.unwrap());
        }
        names
    });
    assert_eq!(names, HashSet::from([Some("weft-tests-named".to_owned())]));
}

#[test]
fn thread_name_fn_names_each_thread() {
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let rt = {
        let (counter, seen) = (counter.clone(), seen.clone());
        Builder::new_multi_thread()
            .worker_threads(3)
            .thread_name_fn(move || format!("w-{}", counter.fetch_add(1, SeqCst)))
            .on_thread_start(move || {
                seen.lock()
                    .unwrap()
                    .insert(thread::current().name().unwrap().to_owned());
            })
            .build()
            .unwrap()
    };
    assert!(common::eventually(|| seen.lock().unwrap().len() == 3));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        HashSet::from(["w-0".into(), "w-1".into(), "w-2".into()])
    );
    drop(rt);
}

#[test]
fn the_default_thread_name_is_weft_worker() {
    let rt = common::rt(1);
    let name = block_on_bounded(&rt, async {
        weft::spawn(async { thread::current().name().map(str::to_owned) })
            .await
            .unwrap()
    });
    assert_eq!(name.as_deref(), Some("weft-worker"));
}

#[test]
fn smallest_intervals_are_valid_and_run_tasks_and_timers() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .global_queue_interval(1)
        .event_interval(1)
        .max_blocking_threads(1)
        .thread_stack_size(256 * 1024)
        .build()
        .unwrap();
    let sum = block_on_bounded(&rt, async {
        let joins: Vec<_> = (0..500u64)
            .map(|i| {
                weft::spawn(async move {
                    if i % 50 == 0 {
                        weft::time::sleep(std::time::Duration::from_millis(1))
                            .await
                            .unwrap();
                    }
                    weft::task::yield_now().await;
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for j in joins {
            sum += j.await.unwrap();
        }
        sum + weft::spawn_blocking(|| 1).await.unwrap()
    });
    assert_eq!(sum, 499 * 500 / 2 + 1);
    assert!(rt.shutdown_timeout(LIMIT));
}

#[test]
fn builder_and_errors_are_debuggable() {
    let b = Builder::new_multi_thread().worker_threads(3);
    assert!(format!("{b:?}").contains("worker_threads"));
    let err = build_err(Builder::new_multi_thread().worker_threads(0));
    assert!(format!("{err:?}").contains("ZeroWorkerThreads"));
    assert!(std::error::Error::source(&err).is_none());
}

#[test]
fn idle_spin_is_validated() {
    let err = build_err(
        Builder::new_multi_thread()
            .worker_threads(1)
            .idle_spin(std::time::Duration::from_millis(11)),
    );
    assert!(
        matches!(err, BuildError::InvalidIdleSpin(d) if d == std::time::Duration::from_millis(11)),
        "{err:?}"
    );
    assert!(err.to_string().contains("idle_spin"), "{err}");
    assert!(err.to_string().contains("11ms"), "{err}");
    // The edges build and run.
    for spin in [
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(10),
    ] {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .idle_spin(spin)
            .build()
            .unwrap();
        assert_eq!(block_on_bounded(&rt, rt.spawn(async { 7 })).unwrap(), 7);
    }
}

/// CPU time used by this process's threads named `name` (their
/// `schedstat`), so that tests running beside this one in the binary do
/// not count.
fn threads_cpu_time(name: &str) -> std::time::Duration {
    let mut nanos = 0;
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = entry.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|comm| comm.trim() == name) {
            let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
            nanos += stat
                .split_whitespace()
                .next()
                .and_then(|cpu| cpu.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    std::time::Duration::from_nanos(nanos)
}

/// The spin before parking is bounded: after a burst of work, idle
/// workers (even with the longest spin allowed) park and use next to no
/// CPU, instead of spinning on.
#[test]
fn idle_workers_park_after_their_spin() {
    // The workers' own CPU is measured: the process's also counts the
    // tests that run beside this one (CI's ASan run once saw 137 ms).
    const NAME: &str = "idle-park-test";
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(NAME)
        .idle_spin(std::time::Duration::from_millis(10))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..1000).map(|i| rt.spawn(async move { i })).collect();
    for h in handles {
        block_on_bounded(&rt, h).unwrap();
    }
    let parks = |rt: &weft::Runtime| -> u64 { rt.metrics().worker.iter().map(|w| w.parks).sum() };
    let before = parks(&rt);
    let cpu_before = threads_cpu_time(NAME);
    assert!(
        cpu_before > std::time::Duration::ZERO,
        "the workers ran the burst: their CPU is readable"
    );
    thread::sleep(std::time::Duration::from_millis(300));
    let cpu_idle = threads_cpu_time(NAME) - cpu_before;
    assert!(parks(&rt) > before || rt.metrics().worker.iter().all(|w| w.parks > 0));
    // Two workers spinning through the whole 300 ms would use ~600 ms of
    // CPU (or ~300 ms yielding to each other); parked, a few ms at most.
    assert!(
        cpu_idle < std::time::Duration::from_millis(100),
        "{cpu_idle:?} of CPU while idle"
    );
}
