//! `LocalRuntime` (`Builder::new_current_thread().build_local()`) and
//! `weft::task::spawn_local`: `!Send` futures (an `Rc` inside) run on the
//! runtime's thread, from its `block_on` future, its tasks, or queued
//! before `block_on`; panics are caught; abort from another thread,
//! cancellation and deadlines reach them; TCP echo with `Rc` state on both
//! io drivers; shutdown drops every local task, on the runtime's thread,
//! and counts it. Failure paths: `spawn_local` on a multi-thread or a
//! `Send` current-thread runtime, outside a runtime, or from another
//! thread; `block_on` through the handle on another thread; `build_local`
//! on a multi-thread builder.

mod common;

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::{mpsc, Arc, Mutex},
    thread::{self, ThreadId},
    time::Duration,
};

use common::{net, panic_message, quiet_expected_panics, LIMIT};
use weft::{
    cancel::Cause,
    io::Driver,
    net::{TcpListener, TcpStream},
    runtime::{BuildError, Builder, LocalRuntime},
};

fn local() -> LocalRuntime {
    Builder::new_current_thread()
        .build_local()
        .expect("building a local runtime")
}

/// `block_on` with the suite's time limit.
fn block_on_bounded<F: std::future::Future>(rt: &LocalRuntime, future: F) -> F::Output {
    rt.block_on(async {
        weft::time::timeout(LIMIT, future)
            .await
            .expect("the test's future did not finish within the limit")
    })
}

fn assert_no_live_tasks(rt: &LocalRuntime) {
    assert_eq!(rt.metrics().alive_tasks, 0, "tasks leaked");
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
fn spawn_local_runs_rc_futures_on_the_runtime_thread() {
    let rt = local();
    let here = thread::current().id();
    let counter = Rc::new(Cell::new(0));
    // Queued before block_on: runs inside it.
    let early = {
        let counter = counter.clone();
        rt.spawn_local(async move {
            counter.set(counter.get() + 1);
            thread::current().id()
        })
    };
    let (early_on, out) = block_on_bounded(&rt, async {
        let mut handles = Vec::new();
        for _ in 0..100 {
            let counter = counter.clone();
            handles.push(weft::task::spawn_local(async move {
                weft::task::yield_now().await;
                weft::time::sleep(Duration::from_millis(1)).await.unwrap();
                // A local task spawning a local task.
                let inner = counter.clone();
                weft::task::spawn_local(async move { inner.set(inner.get() + 1) })
                    .await
                    .unwrap();
                assert_eq!(thread::current().id(), here);
                counter.set(counter.get() + 1);
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        // A `!Send` output through the join handle.
        let rc: Rc<RefCell<String>> = weft::task::spawn_local(async {
            Rc::new(RefCell::new("from a local task".to_owned()))
        })
        .await
        .unwrap();
        (early.await.unwrap(), rc)
    });
    assert_eq!(early_on, here);
    assert_eq!(&*out.borrow(), "from a local task");
    assert_eq!(counter.get(), 201);
    // Send tasks run on this thread too.
    let send_on = block_on_bounded(&rt, rt.spawn(async { thread::current().id() })).unwrap();
    assert_eq!(send_on, here);
    assert_no_live_tasks(&rt);
}

#[test]
fn local_panics_are_caught() {
    quiet_expected_panics();
    let rt = local();
    block_on_bounded(&rt, async {
        let rc = Rc::new(1);
        let err = weft::task::spawn_local(async move {
            let _rc = rc;
            panic!("local boom")
        })
        .await
        .expect_err("the task panicked");
        assert_eq!(
            panic_message(&*err.into_panic()).as_deref(),
            Some("local boom")
        );
    });
    assert_no_live_tasks(&rt);
}

/// An `AbortHandle` may go to another thread; the aborted local task is
/// dropped on the runtime's thread.
#[test]
fn abort_from_another_thread_drops_the_task_here() {
    let rt = local();
    let log = Arc::new(Mutex::new(Vec::new()));
    let here = thread::current().id();
    block_on_bounded(&rt, async {
        let guard = DropsOn {
            _rc: Rc::new(()),
            log: log.clone(),
        };
        let (started_tx, started_rx) = weft::sync::oneshot::channel::<()>();
        let task = weft::task::spawn_local(async move {
            let _guard = guard;
            let _ = started_tx.send(());
            std::future::pending::<()>().await
        });
        started_rx.await.unwrap();
        let abort = task.abort_handle();
        thread::spawn(move || abort.abort()).join().unwrap();
        assert!(task.await.expect_err("aborted").is_cancelled());
    });
    assert_eq!(*log.lock().unwrap(), [here]);
    assert_no_live_tasks(&rt);
}

#[test]
fn cancellation_and_deadlines_reach_a_local_sleep() {
    let rt = local();
    block_on_bounded(&rt, async {
        let rc = Rc::new(Cell::new(None));
        let seen = rc.clone();
        let task = weft::task::spawn_local(async move {
            rc.set(Some(
                weft::time::timeout(Duration::from_millis(20), async {
                    weft::time::sleep(Duration::from_secs(3600)).await
                })
                .await
                .is_err(),
            ));
            weft::time::sleep(Duration::from_secs(3600)).await
        });
        // Past the timeout, the second sleep waits: cancel it.
        weft::time::sleep(Duration::from_millis(60)).await.unwrap();
        assert_eq!(seen.get(), Some(true), "the timeout cut the first sleep");
        assert!(task.cancel());
        let err = task
            .await
            .expect("the task returned")
            .expect_err("the cancel reached the sleep");
        assert_eq!(err.cause(), Cause::Explicit);
    });
    assert_no_live_tasks(&rt);
}

#[test]
fn shutdown_drops_every_local_task_on_the_runtime_thread() {
    let rt = local();
    let here = thread::current().id();
    let log = Arc::new(Mutex::new(Vec::new()));
    let guard = || DropsOn {
        _rc: Rc::new(()),
        log: log.clone(),
    };
    // Never polled.
    for _ in 0..5 {
        let g = guard();
        rt.spawn_local(async move {
            let _g = g;
            std::future::pending::<()>().await
        });
    }
    block_on_bounded(&rt, async {
        let mut started = Vec::new();
        for i in 0..10 {
            let g = guard();
            let (tx, rx) = weft::sync::oneshot::channel::<()>();
            started.push(rx);
            weft::task::spawn_local(async move {
                let _g = g;
                let _ = tx.send(());
                if i % 2 == 0 {
                    let _ = weft::time::sleep(Duration::from_secs(3600)).await;
                } else {
                    std::future::pending::<()>().await
                }
            });
        }
        for rx in started {
            rx.await.unwrap();
        }
    });
    assert_eq!(rt.metrics().alive_tasks, 15);
    assert!(log.lock().unwrap().is_empty());
    assert!(rt.shutdown_timeout(LIMIT));
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 15, "every local task was dropped");
    assert!(
        log.iter().all(|t| *t == here),
        "dropped on the runtime's thread"
    );
}

#[test]
fn spawn_local_off_a_local_runtime_panics() {
    quiet_expected_panics();
    let message = |f: Box<dyn FnOnce() + std::panic::UnwindSafe>| {
        panic_message(&*std::panic::catch_unwind(f).expect_err("spawn_local panicked"))
            .unwrap_or_default()
    };
    // Outside any runtime.
    let msg = message(Box::new(|| {
        drop(weft::task::spawn_local(async {}));
    }));
    assert!(msg.contains("outside a weft runtime"), "{msg}");
    // On a multi-thread runtime, and on a (Send) current-thread one.
    for rt in [
        Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap(),
        Builder::new_current_thread().build().unwrap(),
    ] {
        let rt = std::panic::AssertUnwindSafe(rt);
        let msg = message(Box::new(move || {
            rt.block_on(async {
                drop(weft::task::spawn_local(async {}));
            })
        }));
        assert!(msg.contains("not a LocalRuntime"), "{msg}");
    }
    // From another thread that entered the local runtime.
    let rt = local();
    let handle = rt.handle().clone();
    let msg = thread::spawn(move || {
        let _enter = handle.enter();
        message(Box::new(|| drop(weft::task::spawn_local(async {}))))
    })
    .join()
    .unwrap();
    assert!(msg.contains("other than the one that built it"), "{msg}");
    assert_no_live_tasks(&rt);
}

#[test]
fn block_on_from_another_thread_panics_and_spawn_from_there_works() {
    quiet_expected_panics();
    let rt = local();
    let handle = rt.handle().clone();
    let (tx, rx) = mpsc::channel();
    let other = thread::spawn(move || {
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.block_on(async {})))
                .expect_err("block_on on another thread panics");
        // A Send task spawned from here runs on the runtime's thread.
        tx.send(handle.spawn(async { thread::current().id() }))
            .unwrap();
        panic_message(&*caught).unwrap_or_default()
    });
    let msg = other.join().unwrap();
    assert!(msg.contains("other than the one that built it"), "{msg}");
    let task = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(block_on_bounded(&rt, task).unwrap(), thread::current().id());
    assert_no_live_tasks(&rt);
}

#[test]
fn build_local_needs_a_current_thread_builder() {
    let err = Builder::new_multi_thread()
        .build_local()
        .expect_err("a multi-thread builder cannot build a local runtime");
    assert!(
        matches!(err, BuildError::LocalNeedsCurrentThread),
        "{err:?}"
    );
    assert!(err.to_string().contains("new_current_thread"));
}

// TCP echo with `Rc` state in the local tasks, on each io driver.

net::on_each_driver!(local_tcp_echo);

fn local_tcp_echo(driver: Driver) {
    const CLIENTS: usize = 6;
    const ROUNDS: usize = 20;
    let _serial = net::serial();
    let fds_before = net::fd_count();
    let mut builder = Builder::new_current_thread();
    if driver != Driver::Auto {
        builder = builder.io_driver(driver);
    }
    let rt = builder
        .build_local()
        .expect("building on the driver asked for");
    if driver != Driver::Auto {
        assert_eq!(rt.io_driver(), driver);
    }
    let echoed = Rc::new(Cell::new(0usize));
    let total = echoed.clone();
    block_on_bounded(&rt, async move {
        let listener = TcpListener::bind(net::LOOPBACK).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = weft::task::spawn_local(async move {
            let mut conns = Vec::new();
            for _ in 0..CLIENTS {
                let (stream, _) = listener.accept().await.expect("accept");
                let echoed = echoed.clone();
                conns.push(weft::task::spawn_local(async move {
                    let mut buf = Vec::with_capacity(64);
                    loop {
                        let (res, b) = stream.read(buf).await;
                        let n = res.expect("server read");
                        if n == 0 {
                            return;
                        }
                        echoed.set(echoed.get() + n);
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
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                weft::task::spawn_local(async move {
                    let stream = TcpStream::connect(addr).await.expect("connect");
                    for r in 0..ROUNDS {
                        let msg = vec![(c * 7 + r) as u8; 64];
                        let (res, _) = stream.write_all(msg.clone()).await;
                        res.expect("client write");
                        assert_eq!(net::read_exact(&stream, 64).await, msg);
                    }
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        server.await.unwrap();
    });
    assert_eq!(total.get(), CLIENTS * ROUNDS * 64);
    assert_eq!(rt.metrics().io_ops_in_flight, 0);
    assert_no_live_tasks(&rt);
    drop(rt);
    net::assert_fds_at_most(fds_before, "after the runtime was dropped");
}
