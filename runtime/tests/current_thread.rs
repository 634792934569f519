//! The current-thread runtime (`Builder::new_current_thread`): what a tokio
//! user expects of `current_thread`. Tasks run on the thread inside
//! `block_on` and nowhere else; spawns made while nobody is inside wait for
//! the next `block_on`; panics are caught; abort, cancellation and
//! deadlines reach a sleep; `spawn_blocking` and timers work; TCP echo on
//! both io drivers; shutdown drops and counts the tasks left; `block_on`
//! nested or from a task panics (and leaves the runtime usable); two
//! threads in `block_on` at once hand the runtime over; a handle outlives
//! the runtime. `LocalRuntime` and `spawn_local` are in `local_runtime.rs`.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::{
    assert_no_live_tasks, block_on_bounded, net, panic_message, quiet_expected_panics, DropCounter,
    LIMIT,
};
use weft::{
    cancel::Cause,
    io::Driver,
    net::{TcpListener, TcpStream},
    runtime::{Builder, Runtime},
};

fn ct() -> Runtime {
    Builder::new_current_thread()
        .build()
        .expect("building a current-thread runtime")
}

#[test]
fn spawned_tasks_run_on_the_block_on_thread() {
    let rt = ct();
    let here = thread::current().id();
    let ids = block_on_bounded(&rt, async {
        let handles: Vec<_> = (0..200)
            .map(|i| {
                weft::spawn(async move {
                    // A task spawned by a task, too.
                    let inner = weft::spawn(async { thread::current().id() }).await.unwrap();
                    weft::task::yield_now().await;
                    (i, thread::current().id(), inner)
                })
            })
            .collect();
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.expect("the task completed"));
        }
        out
    });
    assert_eq!(ids.len(), 200);
    for (i, (n, outer, inner)) in ids.into_iter().enumerate() {
        assert_eq!(i, n);
        assert_eq!(outer, here, "task {i} ran on another thread");
        assert_eq!(inner, here, "task {i}'s child ran on another thread");
    }
    let metrics = rt.metrics();
    assert_eq!(metrics.workers, 1);
    assert!(
        metrics.worker[0].polls >= 400,
        "the one worker counted the polls: {}",
        metrics.worker[0].polls
    );
    assert_eq!(metrics.relief_workers_started, 0);
    assert_no_live_tasks(&rt);
}

#[test]
fn tasks_spawned_outside_block_on_wait_for_the_next_one() {
    let rt = ct();
    let ran = Arc::new(AtomicBool::new(false));
    let task = {
        let ran = ran.clone();
        rt.spawn(async move {
            ran.store(true, SeqCst);
            thread::current().id()
        })
    };
    // From another thread, through a handle: also queued.
    let handle = rt.handle().clone();
    let remote = thread::spawn(move || handle.spawn(async { 7 }))
        .join()
        .unwrap();
    thread::sleep(Duration::from_millis(30));
    assert!(!ran.load(SeqCst), "a task ran with nobody inside block_on");
    assert!(!task.is_finished());
    assert_eq!(rt.metrics().alive_tasks, 2);
    let (ran_on, seven) =
        block_on_bounded(&rt, async { (task.await.unwrap(), remote.await.unwrap()) });
    assert!(ran.load(SeqCst));
    assert_eq!(ran_on, thread::current().id());
    assert_eq!(seven, 7);
    assert_no_live_tasks(&rt);
}

#[test]
fn panics_are_caught_and_the_runtime_goes_on() {
    quiet_expected_panics();
    let rt = ct();
    block_on_bounded(&rt, async {
        let err = weft::spawn(async { panic!("boom in a task") })
            .await
            .expect_err("the task panicked");
        assert!(err.is_panic());
        assert_eq!(
            panic_message(&*err.into_panic()).as_deref(),
            Some("boom in a task")
        );
        assert_eq!(weft::spawn(async { 3 }).await.unwrap(), 3);
    });
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_drops_the_future_at_once() {
    let rt = ct();
    let drops = DropCounter::new();
    block_on_bounded(&rt, async {
        let token = drops.token();
        let (started_tx, started_rx) = weft::sync::oneshot::channel::<()>();
        let task = weft::spawn(async move {
            let _token = token;
            let _ = started_tx.send(());
            std::future::pending::<()>().await
        });
        started_rx.await.expect("the task started");
        task.abort();
        let err = task.await.expect_err("an aborted task does not finish");
        assert!(err.is_cancelled());
    });
    assert_eq!(drops.get(), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn cancellation_and_deadlines_reach_a_sleep() {
    let rt = ct();
    block_on_bounded(&rt, async {
        // A deadline.
        let started = Instant::now();
        let slept = weft::task::Builder::new()
            .timeout(Duration::from_millis(30))
            .spawn(async { weft::time::sleep(Duration::from_secs(3600)).await })
            .await
            .expect("the task returned");
        let err = slept.expect_err("the deadline cut the sleep");
        assert_eq!(err.cause(), Cause::Deadline);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(started.elapsed() < LIMIT);

        // An explicit cancel of a parent, reaching its child's sleep.
        let (ready_tx, ready_rx) = weft::sync::oneshot::channel::<()>();
        let (slept_tx, slept_rx) = weft::sync::oneshot::channel();
        let parent = weft::spawn(async move {
            let child = weft::spawn(async move {
                let _ = ready_tx.send(());
                let _ = slept_tx.send(weft::time::sleep(Duration::from_secs(3600)).await);
            });
            // The join is an await point of the cancelled parent too.
            child.await
        });
        ready_rx.await.expect("the child started");
        assert!(parent.cancel());
        let err = slept_rx
            .await
            .expect("the child's sleep returned")
            .expect_err("the cancel reached the child's sleep");
        assert_eq!(err.cause(), Cause::Parent);
        assert_eq!(err.origin(), Cause::Explicit);
        let join = parent.await.expect("the parent returned");
        assert!(join.expect_err("the parent's join was cut").is_cancelled());

        // A timeout around a sleep in the block_on future itself.
        let cut = weft::time::timeout(
            Duration::from_millis(10),
            weft::time::sleep(Duration::from_secs(3600)),
        )
        .await;
        assert!(cut.is_err(), "the timeout cut the sleep");
    });
    assert_no_live_tasks(&rt);
}

#[test]
fn timers_and_spawn_blocking_work() {
    let rt = ct();
    block_on_bounded(&rt, async {
        let start = Instant::now();
        weft::time::sleep(Duration::from_millis(20)).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
        // Several sleeping tasks, woken in deadline order.
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handles: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                weft::spawn(async move {
                    weft::time::sleep(Duration::from_millis(ms)).await.unwrap();
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [10, 20, 30]);
        let here = thread::current().id();
        let there = weft::spawn_blocking(move || {
            thread::sleep(Duration::from_millis(5));
            thread::current().id()
        })
        .await
        .unwrap();
        assert_ne!(there, here, "spawn_blocking runs on its own thread");
    });
    assert!(rt.metrics().timers_fired >= 4);
    assert_no_live_tasks(&rt);
}

#[test]
fn shutdown_drops_and_counts_the_tasks_left() {
    let rt = ct();
    let drops = DropCounter::new();
    // Never polled: spawned with nobody inside block_on.
    for _ in 0..10 {
        let token = drops.token();
        rt.spawn(async move {
            let _token = token;
            std::future::pending::<()>().await
        });
    }
    // Polled and waiting: on a sleep, on a channel, and a finished parent's
    // children (lingering in the tree).
    let (_keep_tx, keep_rx) = weft::sync::watch::channel(0u8);
    block_on_bounded(&rt, async {
        let mut started = Vec::new();
        for i in 0..30 {
            let token = drops.token();
            let mut rx = keep_rx.clone();
            let (tx, started_rx) = weft::sync::oneshot::channel::<()>();
            started.push(started_rx);
            weft::spawn(async move {
                let _token = token;
                let _ = tx.send(());
                if i % 2 == 0 {
                    let _ = weft::time::sleep(Duration::from_secs(3600)).await;
                } else {
                    let _ = rx.changed().await;
                }
            });
        }
        for rx in started {
            rx.await.unwrap();
        }
    });
    assert_eq!(rt.metrics().alive_tasks, 40);
    assert_eq!(drops.get(), 0);
    assert!(rt.shutdown_timeout(LIMIT), "nothing was stuck");
    assert_eq!(drops.get(), 40, "every task left was dropped at shutdown");
}

#[test]
fn block_on_nested_panics_and_the_runtime_stays_usable() {
    quiet_expected_panics();
    let rt = ct();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { rt.block_on(async {}) })
    }))
    .expect_err("a nested block_on panics");
    let msg = panic_message(&*caught).unwrap_or_default();
    assert!(msg.contains("inside `block_on`"), "{msg}");

    // From a task: the thread is the runtime's worker then.
    let err = block_on_bounded(&rt, async {
        weft::spawn(async {
            weft::runtime::Handle::current().block_on(async {});
        })
        .await
        .expect_err("block_on inside a task panics")
    });
    let msg = panic_message(&*err.into_panic()).unwrap_or_default();
    assert!(msg.contains("worker thread"), "{msg}");

    // The core came back from the unwinding block_on: the runtime runs.
    assert_eq!(
        block_on_bounded(&rt, async { weft::spawn(async { 5 }).await.unwrap() }),
        5
    );
    assert_no_live_tasks(&rt);
}

/// Two threads in `block_on` at once: one drives, the other's future is
/// still woken (its task runs on the driving thread), and when the driver
/// leaves, the other takes the runtime over.
#[test]
fn two_threads_in_block_on_hand_the_runtime_over() {
    let rt = Arc::new(ct());
    let handle = rt.handle().clone();
    let (a_in_tx, a_in_rx) = mpsc::channel::<thread::ThreadId>();
    let release_a = Arc::new(AtomicBool::new(false));
    let a = {
        let rt = rt.clone();
        let release_a = release_a.clone();
        thread::spawn(move || {
            rt.block_on(async move {
                a_in_tx.send(thread::current().id()).unwrap();
                // Drives the runtime until told to leave.
                let deadline = Instant::now() + LIMIT;
                while !release_a.load(SeqCst) && Instant::now() < deadline {
                    weft::time::sleep(Duration::from_millis(1)).await.unwrap();
                }
            })
        })
    };
    let a_id = a_in_rx
        .recv_timeout(LIMIT)
        .expect("thread A entered block_on");
    // B's first task runs while A drives: on A's thread.
    let first = handle.spawn(async { thread::current().id() });
    let b_first = handle.block_on(async {
        weft::time::timeout(LIMIT, first)
            .await
            .expect("within the limit")
    });
    assert_eq!(b_first.unwrap(), a_id, "A drove the runtime");
    // Now B waits on a task that finishes only after A has left.
    let second = handle.spawn(async {
        weft::time::sleep(Duration::from_millis(50)).await.unwrap();
        thread::current().id()
    });
    let release = thread::spawn({
        let release_a = release_a.clone();
        move || {
            thread::sleep(Duration::from_millis(10));
            release_a.store(true, SeqCst);
        }
    });
    let b_second = rt.block_on(async {
        weft::time::timeout(LIMIT, second)
            .await
            .expect("within the limit")
    });
    release.join().unwrap();
    a.join().expect("thread A's block_on returned");
    let b_second = b_second.unwrap();
    // Either thread may have fired the timer, but B must have got the
    // answer: if A left first, B took the core over.
    assert!(b_second == a_id || b_second == thread::current().id());
    assert_no_live_tasks(&rt);
}

/// A handle that outlives its runtime: `block_on` polls its future alone,
/// spawns are cancelled at once.
#[test]
fn a_handle_outlives_the_runtime() {
    let rt = ct();
    let handle = rt.handle().clone();
    drop(rt);
    assert_eq!(handle.block_on(async { 5 }), 5);
    let task = handle.spawn(async { 6 });
    let err = handle.block_on(task).expect_err("spawned after shutdown");
    assert!(err.is_cancelled());
}

/// The runtime dropped while another thread is inside `block_on`: that
/// thread's core is handed back, tasks are cancelled, its future ends.
#[test]
fn dropping_the_runtime_while_another_thread_drives_it() {
    let rt = ct();
    let handle = rt.handle().clone();
    let drops = DropCounter::new();
    let token = drops.token();
    let task = rt.spawn(async move {
        let _token = token;
        std::future::pending::<()>().await
    });
    let (in_tx, in_rx) = mpsc::channel();
    let driver = thread::spawn(move || {
        handle.block_on(async move {
            in_tx.send(()).unwrap();
            task.await
        })
    });
    in_rx.recv_timeout(LIMIT).unwrap();
    thread::sleep(Duration::from_millis(20));
    let started = Instant::now();
    assert!(rt.shutdown_timeout(LIMIT), "the driving thread let go");
    assert!(started.elapsed() < LIMIT);
    let out = driver.join().expect("the driving thread returned");
    assert!(out.expect_err("the task was shut down").is_cancelled());
    assert_eq!(drops.get(), 1);
}

/// Wakes from other threads reach a core parked in its io driver.
#[test]
fn wakes_from_other_threads_reach_the_parked_core() {
    let rt = ct();
    let polls = Arc::new(AtomicUsize::new(0));
    block_on_bounded(&rt, async {
        for _ in 0..50 {
            let (tx, rx) = weft::sync::oneshot::channel::<u32>();
            let waiter = {
                let polls = polls.clone();
                weft::spawn(async move {
                    polls.fetch_add(1, SeqCst);
                    rx.await.unwrap()
                })
            };
            let sender = thread::spawn(move || {
                thread::sleep(Duration::from_micros(300));
                tx.send(9).unwrap();
            });
            assert_eq!(waiter.await.unwrap(), 9);
            sender.join().unwrap();
        }
    });
    assert_eq!(polls.load(SeqCst), 50);
    assert_no_live_tasks(&rt);
}

// TCP echo over loopback on each io driver, a server task per connection.

net::on_each_driver!(tcp_echo, io_from_block_on_on_other_threads_in_turn);

fn ct_on(driver: Driver) -> Runtime {
    let mut builder = Builder::new_current_thread();
    if driver != Driver::Auto {
        builder = builder.io_driver(driver);
    }
    let rt = builder.build().expect("building on the driver asked for");
    if driver != Driver::Auto {
        assert_eq!(rt.io_driver(), driver);
    }
    rt
}

fn tcp_echo(driver: Driver) {
    let _serial = net::serial();
    let fds_before = net::fd_count();
    let rt = ct_on(driver);
    echo_round_trips(&rt, 8, 20);
    net::assert_io_idle(&rt);
    assert_no_live_tasks(&rt);
    drop(rt);
    net::assert_fds_at_most(fds_before, "after the runtime was dropped");
}

/// The core (and its io_uring ring or epoll) moves between threads with
/// `block_on`: io works on each, and io left in flight by one `block_on`
/// (a listener's accept) completes under the next one, on another thread.
fn io_from_block_on_on_other_threads_in_turn(driver: Driver) {
    let _serial = net::serial();
    let fds_before = net::fd_count();
    let rt = Arc::new(ct_on(driver));
    let (listener, addr) = rt.block_on(async {
        let listener = TcpListener::bind(net::LOOPBACK).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    });
    // Accept in flight (submitted or registered), nobody in block_on.
    let accepted = rt.spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        net::read_exact(&stream, 5).await
    });
    let client = std::net::TcpStream::connect(addr).expect("std connect");
    std::io::Write::write_all(&mut &client, b"hello").unwrap();
    for round in 0..3 {
        let rt = rt.clone();
        thread::spawn(move || echo_round_trips(&rt, 2, 5))
            .join()
            .unwrap_or_else(|_| panic!("round {round} on a fresh thread failed"));
    }
    let got = block_on_bounded(&rt, accepted).expect("the accepting task");
    assert_eq!(got, b"hello");
    drop(client);
    net::assert_io_idle(&rt);
    assert_no_live_tasks(&rt);
    drop(rt);
    net::assert_fds_at_most(fds_before, "after the runtime was dropped");
}

/// `clients` connections, `rounds` 64-byte round trips each, to an echo
/// server on `rt`; all bounded by the test limit.
pub(crate) fn echo_round_trips(rt: &Runtime, clients: usize, rounds: usize) {
    let here = thread::current().id();
    block_on_bounded(rt, async move {
        let listener = TcpListener::bind(net::LOOPBACK).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = weft::spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..clients {
                let (stream, _) = listener.accept().await.expect("accept");
                conns.push(weft::spawn(async move {
                    assert_eq!(thread::current().id(), here);
                    let mut buf = Vec::with_capacity(64);
                    loop {
                        let (res, b) = stream.read(buf).await;
                        let n = res.expect("server read");
                        if n == 0 {
                            return;
                        }
                        let (res, b) = stream.write_all(b).await;
                        res.expect("server write");
                        buf = b;
                        buf.clear();
                    }
                }));
            }
            for conn in conns {
                conn.await.unwrap();
            }
        });
        let mut clients_done = Vec::new();
        for c in 0..clients {
            clients_done.push(weft::spawn(async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                for r in 0..rounds {
                    let msg = vec![(c * 31 + r) as u8; 64];
                    let (res, _) = stream.write_all(msg.clone()).await;
                    res.expect("client write");
                    let got = net::read_exact(&stream, 64).await;
                    assert_eq!(got, msg);
                }
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("shutdown");
            }));
        }
        for done in clients_done {
            done.await.unwrap();
        }
        server.await.unwrap();
    });
}

/// `#[weft::test(flavor = "current_thread")]`, as tokio's attribute.
#[weft::test(flavor = "current_thread")]
async fn the_test_attribute_builds_a_current_thread_runtime() {
    let here = thread::current().id();
    let there = weft::spawn(async { thread::current().id() }).await.unwrap();
    assert_eq!(there, here);
    assert_eq!(weft::runtime::Handle::current().metrics().workers, 1);
}
