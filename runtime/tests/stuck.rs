//! A worker stuck inside one poll (a blocking call, a long computation):
//! nothing queued behind it waits for it, the watchdog names the culprit
//! while it is still stuck, and when every worker is stuck a relief worker
//! runs new work. See `scheduler/monitor.rs` and docs/ARCHITECTURE.md ("The
//! monitor").
//!
//! These tests block workers on purpose, for hundreds of milliseconds each,
//! one test at a time (the binary's network lock: the io test counts fds,
//! and the timings need the cores);
//! the bounds they assert are loose (tens of milliseconds where the
//! mechanism takes well under one) so a loaded machine does not fail them.
//! The latency figures are in `benches/benches/latency.rs`.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_no_live_tasks, block_on_bounded, eventually,
    net::{on_each_driver, NetRt},
};
use weft::runtime::{BuildError, Builder, StuckPoll};

/// Blocks until `count` reaches `n` (bounded): tasks on different workers
/// use it to be stuck at the same time.
fn rendezvous(count: &AtomicUsize, n: usize) {
    count.fetch_add(1, SeqCst);
    let deadline = Instant::now() + common::LIMIT;
    while count.load(SeqCst) < n {
        assert!(Instant::now() < deadline, "the rendezvous never completed");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Task A wakes task B (B goes into A's worker's LIFO slot), then blocks
/// that worker for 100 ms. B runs on the other worker, typically within a
/// millisecond: the monitor sees A's poll outlast a sample with a task
/// behind it, and the parked peer takes the LIFO slot. (Before the slot
/// was stealable, and on tokio, B waited the whole block every time.)
///
/// Most tries, not all, must see it: on a machine with many more runnable
/// threads than cores the peer itself can wait for a CPU for a whole
/// block (docs/BENCHMARKS.md saw that in a few percent of the tries at
/// load 10 on 2 cores). The figures are the `latency` bench's business.
#[test]
fn a_task_woken_into_a_blocked_workers_lifo_slot_runs_during_the_block() {
    let _serial = common::net::serial();
    const BLOCK: Duration = Duration::from_millis(100);
    const TRIES: usize = 10;
    let rt = common::rt(2);
    let mut delays = Vec::new();
    let mut during_block = 0;
    for _ in 0..TRIES {
        let (delay, during) = block_on_bounded(&rt, async {
            let (tx, rx) = weft::sync::oneshot::channel::<Instant>();
            let blocking = Arc::new(AtomicBool::new(false));
            let b = weft::spawn({
                let blocking = blocking.clone();
                async move {
                    let woken_at = rx.await.expect("A sends");
                    (woken_at.elapsed(), blocking.load(SeqCst))
                }
            });
            let a = weft::spawn({
                let blocking = blocking.clone();
                async move {
                    // B is parked on the channel by now.
                    weft::time::sleep(Duration::from_millis(5)).await.unwrap();
                    blocking.store(true, SeqCst);
                    tx.send(Instant::now()).expect("B waits");
                    thread::sleep(BLOCK);
                    blocking.store(false, SeqCst);
                }
            });
            let out = b.await.unwrap();
            a.await.unwrap();
            out
        });
        during_block += usize::from(during);
        delays.push(delay);
    }
    eprintln!("B's delay behind a blocked worker, {TRIES} tries: {delays:?}");
    assert!(
        during_block * 2 >= TRIES,
        "B ran during A's block in only {during_block} of {TRIES} tries (delays {delays:?}): \
         it waited behind the stuck worker"
    );
    delays.sort();
    let median = delays[TRIES / 2];
    assert!(
        median < Duration::from_millis(20),
        "B's median delay behind a blocked worker was {median:?} (the mechanism takes under \
         1 ms; 20 ms leaves room for a loaded machine)"
    );
    assert!(
        rt.metrics().total_steals() >= during_block as u64,
        "the peer stole B each time it ran during the block"
    );
    assert_no_live_tasks(&rt);
}

/// A task queues 50 children on its worker (LIFO slot and run queue) and
/// blocks it: every child runs during the block, none after.
#[test]
fn tasks_queued_on_a_stuck_worker_are_drained_by_the_others() {
    let _serial = common::net::serial();
    const SPAWNED: usize = 50;
    const BLOCK: Duration = Duration::from_millis(300);
    let rt = common::rt(2);
    let released = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    block_on_bounded(&rt, {
        let (released, after, ran) = (released.clone(), after.clone(), ran.clone());
        async move {
            let blocker = weft::spawn(async move {
                let children: Vec<_> = (0..SPAWNED)
                    .map(|_| {
                        let (released, after, ran) = (released.clone(), after.clone(), ran.clone());
                        weft::spawn(async move {
                            ran.fetch_add(1, SeqCst);
                            if released.load(SeqCst) {
                                after.fetch_add(1, SeqCst);
                            }
                        })
                    })
                    .collect();
                thread::sleep(BLOCK);
                released.store(true, SeqCst);
                children
            });
            for child in blocker.await.unwrap() {
                child.await.unwrap();
            }
        }
    });
    assert_eq!(ran.load(SeqCst), SPAWNED);
    assert_eq!(
        after.load(SeqCst),
        0,
        "children of a blocked worker waited for its block to end"
    );
    assert_no_live_tasks(&rt);
}

/// Both workers stuck past the threshold: a relief worker starts and runs
/// a task spawned meanwhile (which also sleeps: timers fire on it), and
/// retires once the stuck polls return.
#[test]
fn when_every_worker_is_stuck_a_relief_worker_runs_new_tasks_and_retires() {
    let _serial = common::net::serial();
    const BLOCK: Duration = Duration::from_millis(600);
    let reports = Arc::new(Mutex::new(Vec::<StuckPoll>::new()));
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .stuck_poll_threshold(Duration::from_millis(20))
        .on_stuck_poll({
            let reports = reports.clone();
            move |stuck| reports.lock().unwrap().push(stuck.clone())
        })
        .build()
        .unwrap();
    assert_eq!(rt.metrics().relief_workers, 0);
    let started = Arc::new(AtomicUsize::new(0));
    let blocking = Arc::new(AtomicBool::new(true));
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let (started, blocking) = (started.clone(), blocking.clone());
            rt.spawn(async move {
                rendezvous(&started, 2);
                thread::sleep(BLOCK);
                blocking.store(false, SeqCst);
            })
        })
        .collect();
    assert!(eventually(|| started.load(SeqCst) == 2));
    // Both workers are inside their blocking polls now.
    let spawned_at = Instant::now();
    let (ran_during_block, ran_after) = rt.block_on({
        let blocking = blocking.clone();
        async move {
            weft::spawn(async move {
                weft::time::sleep(Duration::from_millis(5)).await.unwrap();
                (blocking.load(SeqCst), spawned_at.elapsed())
            })
            .await
            .unwrap()
        }
    });
    let during = rt.metrics();
    eprintln!(
        "a task spawned while both workers were stuck ran after {ran_after:?}; relief workers: \
         {} running, {} started",
        during.relief_workers, during.relief_workers_started
    );
    assert!(
        ran_during_block,
        "the task spawned while every worker was stuck waited for a stuck poll to return"
    );
    assert!(during.relief_workers_started >= 1);
    for blocker in blockers {
        block_on_bounded(&rt, blocker).unwrap();
    }
    assert!(
        eventually(|| rt.metrics().relief_workers == 0),
        "the relief worker did not retire after the stuck polls returned"
    );
    // Both stuck polls were reported, on the workers (not on relief).
    let metrics = rt.metrics();
    assert_eq!(metrics.total_stuck_polls(), 2, "{metrics:?}");
    assert_eq!(metrics.relief_stuck_polls, 0);
    assert_eq!(reports.lock().unwrap().len(), 2);
    assert_no_live_tasks(&rt);
}

/// The hook gets the stuck task's id, name, spawn location and elapsed
/// time while the poll still runs, within twice the threshold of the
/// poll's start; a poll shorter than the threshold is not reported; the
/// worker's metric counts the stuck poll.
#[test]
fn the_hook_names_the_stuck_task_while_it_is_still_stuck() {
    let _serial = common::net::serial();
    const THRESHOLD: Duration = Duration::from_millis(100);
    let blocking = Arc::new(AtomicBool::new(false));
    let started_at = Arc::new(Mutex::new(None::<Instant>));
    // (report, still blocking when reported, time from the poll's start)
    let reports = Arc::new(Mutex::new(Vec::<(StuckPoll, bool, Duration)>::new()));
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .stuck_poll_threshold(THRESHOLD)
        .on_stuck_poll({
            let (reports, blocking, started_at) =
                (reports.clone(), blocking.clone(), started_at.clone());
            move |stuck| {
                let since_start = started_at.lock().unwrap().expect("set before").elapsed();
                let still = blocking.load(SeqCst);
                reports
                    .lock()
                    .unwrap()
                    .push((stuck.clone(), still, since_start));
            }
        })
        .build()
        .unwrap();
    // Shorter than the threshold: not reported.
    rt.block_on(async {
        weft::spawn(async { thread::sleep(THRESHOLD / 4) })
            .await
            .unwrap()
    });
    let spawn_line_before = line!();
    let culprit = weft::task::Builder::new().name("culprit").spawn_on(
        {
            let (blocking, started_at) = (blocking.clone(), started_at.clone());
            async move {
                *started_at.lock().unwrap() = Some(Instant::now());
                blocking.store(true, SeqCst);
                thread::sleep(Duration::from_secs(1));
                blocking.store(false, SeqCst);
                weft::task::id()
            }
        },
        rt.handle(),
    );
    let spawn_line_after = line!();
    let id = block_on_bounded(&rt, culprit).unwrap();
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "one report for the one stuck poll");
    let (report, still_running, since_start) = &reports[0];
    eprintln!("reported {since_start:?} after the poll began: {report}");
    assert!(*still_running, "the report came after the poll returned");
    assert_eq!(report.task_id(), id);
    assert_eq!(report.task_name(), Some("culprit"));
    let location = report.spawn_location();
    assert!(
        location.file().ends_with("stuck.rs")
            && (spawn_line_before..spawn_line_after).contains(&location.line()),
        "the spawn location is the test's call to spawn_on, not {location}"
    );
    assert!(report.elapsed() >= THRESHOLD && report.elapsed() <= *since_start);
    assert!(
        *since_start < 2 * THRESHOLD,
        "the report came {since_start:?} after the poll began (threshold {THRESHOLD:?})"
    );
    assert_eq!(report.threshold(), THRESHOLD);
    assert!(!report.is_relief_worker());
    let line = report.to_string();
    for part in [id.to_string(), "culprit".to_owned(), location.to_string()] {
        assert!(line.contains(&part), "{line:?} lacks {part:?}");
    }
    let metrics = rt.metrics();
    assert_eq!(metrics.total_stuck_polls(), 1);
    assert_eq!(metrics.worker[report.worker()].stuck_polls, 1);
    assert_no_live_tasks(&rt);
}

/// A hook that panics does not take the monitor down: the next stuck poll
/// is still reported (and counted).
#[test]
fn a_panicking_hook_does_not_stop_the_watchdog() {
    let _serial = common::net::serial();
    common::quiet_expected_panics();
    let calls = Arc::new(AtomicUsize::new(0));
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .stuck_poll_threshold(Duration::from_millis(10))
        .on_stuck_poll({
            let calls = calls.clone();
            move |_| {
                calls.fetch_add(1, SeqCst);
                panic!("{} a hook that fails", common::EXPECTED);
            }
        })
        .build()
        .unwrap();
    for _ in 0..2 {
        rt.block_on(async {
            weft::spawn(async { thread::sleep(Duration::from_millis(200)) })
                .await
                .unwrap()
        });
    }
    assert!(eventually(|| calls.load(SeqCst) == 2));
    assert_eq!(rt.metrics().total_stuck_polls(), 2);
}

/// `Builder::monitor(false)`: no monitor thread, so a poll far past the
/// threshold is neither reported nor counted, and the runtime otherwise
/// works as before (tasks run, nothing is left behind).
#[test]
fn with_the_monitor_off_nothing_watches_the_polls() {
    let _serial = common::net::serial();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut builder = Builder::new_multi_thread();
    builder = builder
        .worker_threads(2)
        .stuck_poll_threshold(Duration::from_millis(5))
        .on_stuck_poll({
            let calls = calls.clone();
            move |_| {
                calls.fetch_add(1, SeqCst);
            }
        })
        .monitor(false);
    assert!(format!("{builder:?}").contains("monitor: false"));
    let rt = builder.build().unwrap();
    let sum = block_on_bounded(&rt, async {
        let blocker = weft::spawn(async { thread::sleep(Duration::from_millis(60)) });
        let mut joins = Vec::new();
        for i in 0..100u64 {
            joins.push(weft::spawn(async move { i }));
        }
        let mut sum = 0;
        for join in joins {
            sum += join.await.unwrap();
        }
        blocker.await.unwrap();
        sum
    });
    assert_eq!(sum, (0..100).sum::<u64>());
    // Time enough for a monitor (had there been one) to report the 60 ms
    // poll twelve thresholds over.
    thread::sleep(Duration::from_millis(20));
    assert_eq!(calls.load(SeqCst), 0, "a hook ran without a monitor");
    assert_eq!(rt.metrics().total_stuck_polls(), 0);
    assert_no_live_tasks(&rt);
}

/// The threshold is checked like the builder's other options.
#[test]
fn a_threshold_below_one_millisecond_is_refused_with_a_clear_error() {
    let _serial = common::net::serial();
    for bad in [Duration::ZERO, Duration::from_micros(999)] {
        let err = Builder::new_multi_thread()
            .worker_threads(1)
            .stuck_poll_threshold(bad)
            .build()
            .expect_err("a threshold below 1 ms is refused");
        assert!(
            matches!(err, BuildError::InvalidStuckPollThreshold(d) if d == bad),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("stuck_poll_threshold must be at least 1ms"),
            "{msg}"
        );
    }
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .stuck_poll_threshold(Duration::from_millis(1))
        .build()
        .expect("1 ms is accepted");
    assert_eq!(rt.block_on(async { 7 }), 7);
}

/// A task whose io is bound to a worker that gets stuck: its read was
/// queued on that worker's ring (io_uring) or its socket registered with
/// that worker's epoll. The data arrives during the block. Under epoll a
/// peer takes the stuck worker's readiness and the read completes during
/// the block (docs/IO.md, "A stuck worker's epoll"). Under io_uring the
/// read was queued in the poll right before the block, not yet handed to
/// the kernel: the monitor submits it for the stuck worker, and a peer
/// reaps its completion (docs/IO.md, "A long poll and the submission
/// queue", "Peers reap a busy worker's ring"), so it completes during the
/// block too, except on rings set up for their owner alone
/// (`WEFT_IO_PEER_REAP=0`), where it waits for the stuck poll to return.
/// Either way it gets every byte: nothing is lost, no op leaks.
///
/// The blocker is queued in the reader's LIFO slot in the poll that starts
/// the read, so it normally runs on the reader's worker right after; on a
/// loaded machine that poll may outlast a monitor sample and a peer may
/// take the blocker instead (the point of the slot being stealable). The
/// scenario is then retried: the threads are compared.
fn a_task_with_io_in_flight_on_a_stuck_worker_is_served_during_the_poll(driver: weft::io::Driver) {
    const BLOCK: Duration = Duration::from_millis(300);
    const TRIES: usize = 5;
    let rt = NetRt::new(driver);
    for attempt in 0..TRIES {
        let outcome = rt.in_task(async move {
            let (mut client, server) = common::net::std_client_pair().await;
            let accepted_on = thread::current().id();
            let blocking = Arc::new(AtomicBool::new(true));
            let blocked_on = Arc::new(Mutex::new(None));
            let writer = thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                use std::io::Write;
                client.write_all(b"during the block").unwrap();
                client
            });
            let mut read = std::pin::pin!(common::net::read_exact(&server, 16));
            // One poll: start the read, then queue the blocker in this
            // worker's LIFO slot (it runs here next).
            let (read_on, blocker) = std::future::poll_fn(|cx| {
                assert!(
                    std::future::Future::poll(read.as_mut(), cx).is_pending(),
                    "nothing was sent yet"
                );
                let blocker = weft::spawn({
                    let (blocking, blocked_on) = (blocking.clone(), blocked_on.clone());
                    async move {
                        *blocked_on.lock().unwrap() = Some(thread::current().id());
                        thread::sleep(BLOCK);
                        blocking.store(false, SeqCst);
                    }
                });
                std::task::Poll::Ready((thread::current().id(), blocker))
            })
            .await;
            let got = read.await;
            let during = blocking.load(SeqCst);
            blocker.await.unwrap();
            drop(writer.join().unwrap());
            let same_worker =
                *blocked_on.lock().unwrap() == Some(read_on) && accepted_on == read_on;
            (same_worker, during, got)
        });
        let (same_worker, read_during_block, got) = outcome;
        assert_eq!(got, b"during the block");
        if !same_worker {
            eprintln!("attempt {attempt}: the blocker ran on another worker than the read; again");
            continue;
        }
        let owner_only_rings =
            rt.rt.io_driver() == weft::io::Driver::Uring && !rt.rt.io_peer_reap();
        if owner_only_rings {
            assert!(
                !read_during_block,
                "the read completed while its owner-only ring's worker was stuck: update docs/IO.md"
            );
        } else {
            assert!(
                read_during_block,
                "the read waited for its stuck worker: no peer took its readiness or completion"
            );
        }
        rt.finish();
        return;
    }
    panic!("in {TRIES} attempts the blocker never ran on the reader's worker");
}

on_each_driver!(a_task_with_io_in_flight_on_a_stuck_worker_is_served_during_the_poll);

/// Every spawn function records its caller's location (`#[track_caller]`
/// through to the task header), as the watchdog shows: `weft::spawn`,
/// `Runtime::spawn`, `Handle::spawn`, `task::Builder::spawn` and
/// `spawn_on`, `TaskGroup::spawn`.
#[test]
fn every_spawn_function_records_its_callers_location() {
    let _serial = common::net::serial();
    const BLOCK: Duration = Duration::from_millis(200);
    let seen = Arc::new(Mutex::new(Vec::<(weft::task::Id, u32)>::new()));
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .stuck_poll_threshold(Duration::from_millis(20))
        .on_stuck_poll({
            let seen = seen.clone();
            move |stuck| {
                assert!(stuck.spawn_location().file().ends_with("stuck.rs"));
                let line = stuck.spawn_location().line();
                seen.lock().unwrap().push((stuck.task_id(), line));
            }
        })
        .build()
        .unwrap();
    fn block() -> weft::task::Id {
        thread::sleep(BLOCK);
        weft::task::id()
    }
    let mut expected = Vec::new();
    let (h, line) = (rt.spawn(async { block() }), line!());
    expected.push((block_on_bounded(&rt, h).unwrap(), line));
    let (h, line) = (rt.handle().spawn(async { block() }), line!());
    expected.push((block_on_bounded(&rt, h).unwrap(), line));
    let builder = weft::task::Builder::new();
    let (h, line) = (builder.spawn_on(async { block() }, rt.handle()), line!());
    expected.push((block_on_bounded(&rt, h).unwrap(), line));
    let inside = block_on_bounded(&rt, async {
        let mut expected = Vec::new();
        let (h, line) = (weft::spawn(async { block() }), line!());
        expected.push((h.await.unwrap(), line));
        let builder = weft::task::Builder::new();
        let (h, line) = (builder.spawn(async { block() }), line!());
        expected.push((h.await.unwrap(), line));
        let mut group = weft::cancel::TaskGroup::new();
        let line = line!() + 1;
        group.spawn(async { block() });
        let id = group.join_all().await.pop().unwrap().unwrap();
        expected.push((id, line));
        expected
    });
    expected.extend(inside);
    // Each report is made while its poll runs; the last may trail its join.
    assert!(eventually(|| seen.lock().unwrap().len() >= expected.len()));
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "(task id, spawn line) per spawn function");
    assert_no_live_tasks(&rt);
}
