//! The thread-per-core runtime (`Builder::new_thread_per_core`): a task
//! stays on the worker that spawned it, through yields, sleeps, wakes from
//! other threads and other workers, and while its worker is busy and the
//! other one idle (no stealing); spawns from outside go round-robin.
//! `spawn_local` keeps `!Send` tasks on the caller's worker and drops them
//! there at shutdown; off the workers it panics. The usual suite too:
//! panics caught, abort, cancellation and deadlines reaching a sleep, TCP
//! echo on both io drivers with each connection on one thread, shutdown
//! with tasks left (counted, dropped).

mod common;

use std::{
    cell::Cell,
    rc::Rc,
    sync::{Arc, Mutex},
    thread::{self, ThreadId},
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

fn tpc(workers: usize) -> Runtime {
    Builder::new_thread_per_core()
        .worker_threads(workers)
        .build()
        .expect("building a thread-per-core runtime")
}

fn total_steals(rt: &Runtime) -> u64 {
    rt.metrics().worker.iter().map(|w| w.steals).sum()
}

#[test]
fn tasks_stay_on_the_worker_that_spawned_them() {
    let rt = tpc(2);
    let homes = block_on_bounded(&rt, async {
        // From outside the workers: round-robin.
        let roots: Vec<_> = (0..8)
            .map(|_| {
                weft::spawn(async {
                    let home = thread::current().id();
                    for i in 0..50 {
                        if i % 2 == 0 {
                            weft::task::yield_now().await;
                        } else {
                            weft::time::sleep(Duration::from_micros(200)).await.unwrap();
                        }
                        assert_eq!(thread::current().id(), home, "a task moved");
                        let child = weft::spawn(async { thread::current().id() });
                        assert_eq!(child.await.unwrap(), home, "a child left its home");
                    }
                    home
                })
            })
            .collect();
        let mut homes = Vec::new();
        for root in roots {
            homes.push(root.await.unwrap());
        }
        homes
    });
    let mut distinct = homes.clone();
    distinct.sort_by_key(|t| format!("{t:?}"));
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "spawns from outside used both workers");
    for home in &distinct {
        assert_eq!(
            homes.iter().filter(|h| *h == home).count(),
            4,
            "round-robin"
        );
    }
    assert_eq!(total_steals(&rt), 0);
    assert_no_live_tasks(&rt);
}

/// A burst larger than the run queue (a ring of 256) overflows into the
/// worker's own inbox, never the shared injector: the tasks stay home.
#[test]
fn a_burst_past_the_run_queue_stays_on_its_worker() {
    const BURST: usize = 1_000;
    let rt = tpc(2);
    let (home, homes) = block_on_bounded(&rt, async {
        weft::spawn(async {
            let home = thread::current().id();
            let joins: Vec<_> = (0..BURST)
                .map(|_| weft::spawn(async { thread::current().id() }))
                .collect();
            let mut homes = Vec::new();
            for join in joins {
                homes.push(join.await.unwrap());
            }
            (home, homes)
        })
        .await
        .unwrap()
    });
    assert_eq!(homes.len(), BURST);
    assert!(homes.iter().all(|h| *h == home), "a task left its worker");
    let overflowed: u64 = rt
        .metrics()
        .worker
        .iter()
        .map(|w| w.local_queue_overflows)
        .sum();
    assert!(overflowed >= 129, "the burst overflowed: {overflowed}");
    assert_eq!(total_steals(&rt), 0);
    assert_no_live_tasks(&rt);
}

/// A wake from a std thread, and from a task on the other worker, brings
/// the task back to its own worker.
#[test]
fn wakes_from_elsewhere_go_home() {
    let rt = tpc(2);
    block_on_bounded(&rt, async {
        for _ in 0..20 {
            let (tx, rx) = weft::sync::oneshot::channel::<()>();
            let waiter = weft::spawn(async move {
                let home = thread::current().id();
                rx.await.unwrap();
                (home, thread::current().id())
            });
            // The other task is spawned next: round-robin puts it on the
            // other worker.
            let waker_task = weft::spawn(async move {
                weft::time::sleep(Duration::from_micros(300)).await.unwrap();
                let _ = tx.send(());
                thread::current().id()
            });
            let (home, after) = waiter.await.unwrap();
            let waker_on = waker_task.await.unwrap();
            assert_eq!(home, after, "woken from another worker, it stayed home");
            assert_ne!(waker_on, home, "the waker ran on the other worker");

            let (tx, rx) = weft::sync::oneshot::channel::<()>();
            let waiter = weft::spawn(async move {
                let home = thread::current().id();
                rx.await.unwrap();
                (home, thread::current().id())
            });
            thread::spawn(move || {
                thread::sleep(Duration::from_micros(300));
                let _ = tx.send(());
            });
            let (home, after) = waiter.await.unwrap();
            assert_eq!(home, after, "woken from a std thread, it stayed home");
        }
    });
    assert_eq!(total_steals(&rt), 0);
    assert_no_live_tasks(&rt);
}

/// The failure mode the flavour accepts: a task queued behind a busy
/// worker waits for it even while the other worker idles (a stealing
/// runtime would move it).
#[test]
fn no_stealing_a_busy_workers_task_waits_for_it() {
    const BLOCK: Duration = Duration::from_millis(60);
    let rt = tpc(2);
    let (home, child_on, child_started, unblocked) = block_on_bounded(&rt, async {
        weft::spawn(async {
            let home = thread::current().id();
            let child = weft::spawn(async { (thread::current().id(), Instant::now()) });
            // Keep this worker busy; the other one is idle.
            thread::sleep(BLOCK);
            let unblocked = Instant::now();
            let (child_on, started) = child.await.unwrap();
            (home, child_on, started, unblocked)
        })
        .await
        .unwrap()
    });
    assert_eq!(child_on, home, "the child stayed on its busy worker");
    assert!(
        child_started >= unblocked,
        "the child ran only once its worker was free"
    );
    assert_eq!(total_steals(&rt), 0);
    assert_no_live_tasks(&rt);
}

#[test]
fn panics_abort_cancellation_and_deadlines() {
    quiet_expected_panics();
    let rt = tpc(2);
    let drops = DropCounter::new();
    block_on_bounded(&rt, async {
        let err = weft::spawn(async { panic!("tpc boom") })
            .await
            .expect_err("panicked");
        assert_eq!(
            panic_message(&*err.into_panic()).as_deref(),
            Some("tpc boom")
        );

        let token = drops.token();
        let (started_tx, started_rx) = weft::sync::oneshot::channel::<()>();
        let task = weft::spawn(async move {
            let _token = token;
            let _ = started_tx.send(());
            std::future::pending::<()>().await
        });
        started_rx.await.unwrap();
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());

        let slept = weft::task::Builder::new()
            .timeout(Duration::from_millis(20))
            .spawn(async { weft::time::sleep(Duration::from_secs(3600)).await })
            .await
            .unwrap();
        assert_eq!(slept.expect_err("deadline").cause(), Cause::Deadline);

        let (ready_tx, ready_rx) = weft::sync::oneshot::channel::<()>();
        let sleeper = weft::spawn(async move {
            let _ = ready_tx.send(());
            weft::time::sleep(Duration::from_secs(3600)).await
        });
        ready_rx.await.unwrap();
        assert!(sleeper.cancel());
        let err = sleeper.await.unwrap().expect_err("cancelled");
        assert_eq!(err.cause(), Cause::Explicit);
    });
    assert_eq!(drops.get(), 1);
    assert_no_live_tasks(&rt);
}

/// Records the thread it was dropped on; holds an `Rc` so it is `!Send`.
struct DropsOn {
    _rc: Rc<()>,
    log: Arc<Mutex<Vec<ThreadId>>>,
}

impl Drop for DropsOn {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(thread::current().id());
    }
}

#[test]
fn spawn_local_stays_on_its_worker_and_is_dropped_there() {
    let rt = tpc(2);
    let log = Arc::new(Mutex::new(Vec::new()));
    let homes = {
        let log = log.clone();
        block_on_bounded(&rt, async move {
            let mut homes = Vec::new();
            for _ in 0..4 {
                let log = log.clone();
                homes.push(
                    // A Send root whose body is a local task (an `Rc` lives
                    // across its awaits).
                    weft::spawn(async move {
                        weft::task::spawn_local(async move {
                            let home = thread::current().id();
                            let count = Rc::new(Cell::new(0));
                            let mut done = Vec::new();
                            for _ in 0..10 {
                                let count = count.clone();
                                done.push(weft::task::spawn_local(async move {
                                    weft::time::sleep(Duration::from_micros(100)).await.unwrap();
                                    count.set(count.get() + 1);
                                    thread::current().id()
                                }));
                            }
                            for d in done {
                                assert_eq!(d.await.unwrap(), home);
                            }
                            assert_eq!(count.get(), 10);
                            // Left behind, waiting: dropped at shutdown.
                            for _ in 0..3 {
                                let guard = DropsOn {
                                    _rc: Rc::new(()),
                                    log: log.clone(),
                                };
                                weft::task::spawn_local(async move {
                                    let _guard = guard;
                                    let _ = weft::time::sleep(Duration::from_secs(3600)).await;
                                });
                            }
                            weft::task::yield_now().await;
                            home
                        })
                        .await
                        .unwrap()
                    })
                    .await
                    .unwrap(),
                );
            }
            homes
        })
    };
    assert_eq!(rt.metrics().alive_tasks, 12);
    assert!(rt.shutdown_timeout(LIMIT));
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 12, "every local task was dropped at shutdown");
    for (i, home) in homes.iter().enumerate() {
        let dropped_here = log.iter().filter(|t| *t == home).count();
        let expected = 3 * homes.iter().filter(|h| *h == home).count();
        assert_eq!(
            dropped_here, expected,
            "root {i}'s local tasks dropped on its worker"
        );
    }
}

#[test]
fn spawn_local_off_the_workers_panics() {
    quiet_expected_panics();
    let rt = tpc(2);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { drop(weft::task::spawn_local(async {})) })
    }))
    .expect_err("the block_on thread is not a worker");
    let msg = panic_message(&*caught).unwrap_or_default();
    assert!(msg.contains("off its workers"), "{msg}");
    assert_no_live_tasks(&rt);
}

#[test]
fn shutdown_drops_and_counts_the_tasks_left() {
    let rt = tpc(2);
    let drops = DropCounter::new();
    // Queued in the workers' inboxes, maybe never polled.
    for _ in 0..20 {
        let token = drops.token();
        rt.spawn(async move {
            let _token = token;
            let _ = weft::time::sleep(Duration::from_secs(3600)).await;
        });
    }
    block_on_bounded(&rt, async {
        weft::time::sleep(Duration::from_millis(5)).await.unwrap();
    });
    assert_eq!(rt.metrics().alive_tasks, 20);
    assert!(rt.shutdown_timeout(LIMIT));
    assert_eq!(drops.get(), 20);
}

// TCP echo on each driver: each connection's task on one thread.

net::on_each_driver!(tcp_echo);

fn tcp_echo(driver: Driver) {
    const CLIENTS: usize = 8;
    const ROUNDS: usize = 20;
    let _serial = net::serial();
    let fds_before = net::fd_count();
    let mut builder = Builder::new_thread_per_core().worker_threads(2);
    if driver != Driver::Auto {
        builder = builder.io_driver(driver);
    }
    let rt = builder.build().expect("building on the driver asked for");
    if driver != Driver::Auto {
        assert_eq!(rt.io_driver(), driver);
    }
    let conn_threads = block_on_bounded(&rt, async move {
        let listener = TcpListener::bind(net::LOOPBACK).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = weft::spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..CLIENTS {
                let (stream, _) = listener.accept().await.expect("accept");
                conns.push(weft::spawn(async move {
                    let home = thread::current().id();
                    let mut buf = Vec::with_capacity(64);
                    loop {
                        let (res, b) = stream.read(buf).await;
                        assert_eq!(thread::current().id(), home);
                        let n = res.expect("server read");
                        if n == 0 {
                            return home;
                        }
                        let (res, b) = stream.write_all(b).await;
                        res.expect("server write");
                        buf = b;
                        buf.clear();
                    }
                }));
            }
            let mut homes = Vec::new();
            for conn in conns {
                homes.push(conn.await.unwrap());
            }
            homes
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                weft::spawn(async move {
                    let home = thread::current().id();
                    let stream = TcpStream::connect(addr).await.expect("connect");
                    for r in 0..ROUNDS {
                        let msg = vec![(c * 13 + r) as u8; 64];
                        let (res, _) = stream.write_all(msg.clone()).await;
                        res.expect("client write");
                        assert_eq!(net::read_exact(&stream, 64).await, msg);
                        assert_eq!(thread::current().id(), home);
                    }
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        server.await.unwrap()
    });
    assert_eq!(conn_threads.len(), CLIENTS);
    assert_eq!(total_steals(&rt), 0);
    net::assert_io_idle(&rt);
    assert_no_live_tasks(&rt);
    drop(rt);
    net::assert_fds_at_most(fds_before, "after the runtime was dropped");
}

/// `#[weft::test(flavor = "thread_per_core")]`.
#[weft::test(flavor = "thread_per_core", worker_threads = 3)]
async fn the_test_attribute_builds_a_thread_per_core_runtime() {
    let (home, child) = weft::spawn(async {
        let home = thread::current().id();
        let child = weft::spawn(async { thread::current().id() }).await.unwrap();
        (home, child)
    })
    .await
    .unwrap();
    assert_eq!(home, child);
    let metrics = weft::runtime::Handle::current().metrics();
    assert_eq!(metrics.workers, 3);
    assert_eq!(metrics.worker.iter().map(|w| w.steals).sum::<u64>(), 0);
}
