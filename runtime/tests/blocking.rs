//! `spawn_blocking`: outputs, panics, the thread cap, cancellation of queued
//! jobs, thread names, and idle threads going away.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        mpsc, Arc,
    },
    thread,
    time::Duration,
};

use common::{block_on_bounded, block_on_std, quiet_expected_panics, rt, Flag, EXPECTED, LIMIT};
use weft::runtime::Builder;

#[test]
fn spawn_blocking_returns_the_closures_value() {
    let rt = rt(1);
    assert_eq!(
        block_on_bounded(&rt, rt.spawn_blocking(|| 40 + 2)).unwrap(),
        42
    );
    let from_task = block_on_bounded(&rt, async {
        weft::spawn(async { weft::spawn_blocking(|| "in task").await.unwrap() })
            .await
            .unwrap()
    });
    assert_eq!(from_task, "in task");
    let handle = rt.handle().clone();
    let join = thread::spawn(move || handle.spawn_blocking(|| 7))
        .join()
        .unwrap();
    assert_eq!(block_on_bounded(&rt, join).unwrap(), 7);
}

#[test]
fn blocking_jobs_run_off_the_worker_threads() {
    let rt = rt(1);
    let (worker, blocking) = block_on_bounded(&rt, async {
        let worker = weft::spawn(async { thread::current().id() }).await.unwrap();
        let blocking = weft::spawn_blocking(|| thread::current().id())
            .await
            .unwrap();
        (worker, blocking)
    });
    assert_ne!(worker, blocking);
}

#[test]
fn a_panicking_job_is_reported_as_a_join_error() {
    quiet_expected_panics();
    let rt = rt(1);
    let err = block_on_bounded(&rt, async {
        weft::spawn_blocking(|| -> u32 { panic!("{EXPECTED} blocking boom") })
            .await
            .unwrap_err()
    });
    assert!(err.is_panic());
    let msg = common::panic_message(&*err.into_panic()).unwrap();
    assert!(msg.contains("blocking boom"));
    // The pool still serves.
    assert_eq!(block_on_bounded(&rt, rt.spawn_blocking(|| 1)).unwrap(), 1);
}

#[test]
fn the_thread_cap_is_never_exceeded_and_every_job_completes() {
    const CAP: usize = 2;
    const JOBS: usize = 6;
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(CAP)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let threads_seen = Arc::new(AtomicUsize::new(0));
    let joins: Vec<_> = (0..JOBS)
        .map(|i| {
            let (running, peak) = (running.clone(), peak.clone());
            rt.spawn_blocking(move || {
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                thread::sleep(Duration::from_millis(30));
                running.fetch_sub(1, SeqCst);
                i
            })
        })
        .collect();
    let metrics_seen = threads_seen.clone();
    let out = block_on_bounded(&rt, async move {
        let mut out = Vec::new();
        for j in joins {
            metrics_seen.fetch_max(
                weft::runtime::Handle::current().metrics().blocking_threads,
                SeqCst,
            );
            out.push(j.await.unwrap());
        }
        out
    });
    assert_eq!(out, (0..JOBS).collect::<Vec<_>>());
    let peak = peak.load(SeqCst);
    assert!(peak <= CAP, "{peak} jobs ran at once with a cap of {CAP}");
    assert!(peak >= 1);
    assert!(threads_seen.load(SeqCst) <= CAP);
    assert!(rt.metrics().blocking_threads <= CAP);
}

#[test]
fn aborting_a_queued_job_means_it_never_runs() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started = Flag::new();
    let first = {
        let started = started.clone();
        rt.spawn_blocking(move || {
            started.set();
            let _ = release_rx.recv_timeout(LIMIT);
        })
    };
    assert!(started.wait());
    let ran = Flag::new();
    let queued = {
        let ran = ran.clone();
        rt.spawn_blocking(move || ran.set())
    };
    assert_eq!(rt.metrics().blocking_queue_depth, 1);
    queued.abort();
    release_tx.send(()).unwrap();
    let err = block_on_bounded(&rt, queued).unwrap_err();
    assert!(err.is_cancelled());
    block_on_bounded(&rt, first).unwrap();
    assert!(!ran.get(), "an aborted job was run");
}

#[test]
fn shutdown_cancels_queued_jobs_and_waits_for_the_running_one() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let started = Flag::new();
    let finished = Flag::new();
    let running = {
        let (started, finished) = (started.clone(), finished.clone());
        rt.spawn_blocking(move || {
            started.set();
            thread::sleep(Duration::from_millis(50));
            finished.set();
            "done"
        })
    };
    assert!(started.wait());
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let ran = ran.clone();
            rt.spawn_blocking(move || {
                ran.fetch_add(1, SeqCst);
            })
        })
        .collect();
    assert!(
        rt.shutdown_timeout(LIMIT),
        "the running job finished within the limit"
    );
    assert!(finished.get(), "shutdown waited for the running job");
    assert_eq!(block_on_std(running, LIMIT).unwrap().unwrap(), "done");
    for q in queued {
        let res = block_on_std(q, LIMIT).expect("a queued job's join resolves");
        assert!(res.unwrap_err().is_cancelled());
    }
    assert_eq!(ran.load(SeqCst), 0, "jobs no thread started are not run");
}

#[test]
fn shutdown_timeout_gives_up_on_a_job_that_runs_too_long() {
    let rt = rt(1);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started = Flag::new();
    {
        let started = started.clone();
        drop(rt.spawn_blocking(move || {
            started.set();
            let _ = release_rx.recv_timeout(LIMIT);
        }));
    }
    assert!(started.wait());
    let start = std::time::Instant::now();
    assert!(!rt.shutdown_timeout(Duration::from_millis(50)));
    assert!(start.elapsed() < LIMIT / 2);
    release_tx.send(()).unwrap();
}

#[test]
fn blocking_threads_carry_the_runtime_thread_name() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("weft-tests-pool")
        .build()
        .unwrap();
    let name = block_on_bounded(&rt, async {
        weft::spawn_blocking(|| thread::current().name().map(str::to_owned))
            .await
            .unwrap()
    });
    assert_eq!(name.as_deref(), Some("weft-tests-pool"));
}

#[test]
fn idle_blocking_threads_exit_after_their_keep_alive() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(20))
        .build()
        .unwrap();
    block_on_bounded(&rt, async {
        let joins: Vec<_> = (0..3)
            .map(|_| weft::spawn_blocking(|| thread::sleep(Duration::from_millis(10))))
            .collect();
        for j in joins {
            j.await.unwrap();
        }
    });
    assert!(rt.metrics().blocking_threads >= 1);
    assert!(
        common::eventually(|| rt.metrics().blocking_threads == 0),
        "idle blocking threads outlived their keep-alive: {}",
        rt.metrics().blocking_threads
    );
    // And new jobs start new threads.
    assert_eq!(block_on_bounded(&rt, rt.spawn_blocking(|| 5)).unwrap(), 5);
}

#[test]
fn blocking_jobs_are_not_counted_as_alive_tasks() {
    let rt = rt(1);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started = Flag::new();
    let join = {
        let started = started.clone();
        rt.spawn_blocking(move || {
            started.set();
            let _ = release_rx.recv_timeout(LIMIT);
        })
    };
    assert!(started.wait());
    assert_eq!(rt.metrics().alive_tasks, 0);
    release_tx.send(()).unwrap();
    block_on_bounded(&rt, join).unwrap();
}

#[weft::test]
async fn many_blocking_jobs_from_many_tasks() {
    let joins: Vec<_> = (0..50u64)
        .map(|i| weft::spawn(async move { weft::spawn_blocking(move || i * i).await.unwrap() }))
        .collect();
    let mut sum = 0;
    for j in joins {
        sum += j.await.unwrap();
    }
    assert_eq!(sum, (0..50u64).map(|i| i * i).sum::<u64>());
}
