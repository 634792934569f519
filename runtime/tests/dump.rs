//! The task dump (`Handle::dump`): while tasks wait on each kind of weft
//! await point, the dump lists each with its name, state, what it awaits,
//! its deadline and its scope's cancellation; finished tasks are gone from
//! it; the task taking the dump sees its own coop budget. Each scenario
//! runs on the default runtime and on one forced to each io driver.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    net::{listener, on_each_driver, tcp_pair, NetRt},
    LIMIT,
};
use weft::{
    cancel::{self, Cause},
    io::Driver,
    runtime::{
        dump::{Awaiting, IoOp, SyncOp, TaskDump, TaskState},
        Handle,
    },
    sync::{broadcast, mpsc, oneshot, watch, Barrier, Mutex, Notify, RwLock, Semaphore},
    task::{Builder, Id},
    JoinHandle,
};

on_each_driver!(
    every_await_point_is_named_and_finished_tasks_are_gone,
    deadline_and_cancellation_of_a_waiting_task,
    the_dumping_task_runs_and_sees_its_budget,
);

/// Dumps until every task in `expected` is idle and awaits what it says
/// (spawned tasks need a moment to reach their await point), or fails
/// after [`LIMIT`] with the last dump.
async fn dump_when_waiting(expected: &[(Id, Awaiting)]) -> TaskDump {
    let deadline = Instant::now() + LIMIT;
    loop {
        let dump = Handle::current().dump();
        let settled = expected.iter().all(|(id, kind)| {
            dump.task(*id)
                .is_some_and(|t| t.state() == TaskState::Idle && t.awaiting() == *kind)
        });
        if settled {
            return dump;
        }
        assert!(
            Instant::now() < deadline,
            "the tasks never all waited as expected {expected:?}:\n{dump}"
        );
        weft::time::sleep(Duration::from_millis(2)).await.unwrap();
    }
}

/// The tasks a scenario spawned, each with its name and what it awaits.
#[derive(Default)]
struct Waiters {
    expected: Vec<(Id, Awaiting, &'static str)>,
    handles: Vec<JoinHandle<()>>,
}

impl Waiters {
    fn spawn<F>(&mut self, name: &'static str, kind: Awaiting, future: F) -> Id
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        // Detached: outside the test's `timeout` scope, so no deadline.
        let handle = Builder::new().name(name).detached().spawn(future);
        let id = handle.id();
        self.expected.push((id, kind, name));
        self.handles.push(handle);
        id
    }
}

fn every_await_point_is_named_and_finished_tasks_are_gone(driver: Driver) {
    let rt = NetRt::new(driver);
    rt.block_on(async {
        let mut w = Waiters::default();

        let sleeper = w.spawn("sleeper", Awaiting::Sleep, async {
            let _ = weft::time::sleep(Duration::from_secs(600)).await;
        });

        let (client, server) = tcp_pair().await;
        w.spawn("reader", Awaiting::Io(IoOp::Read), async move {
            // EOF once the client closes.
            let _ = server.read(vec![0u8; 16]).await;
        });

        let (listen, _) = listener().await;
        let acceptor = w.spawn("acceptor", Awaiting::Io(IoOp::Accept), async move {
            // No client comes: cancelled at the end.
            let _ = listen.accept().await;
        });

        let target = Builder::new()
            .name("target")
            .detached()
            .spawn(async { drop(cancel::cancelled().await) });
        w.expected
            .push((target.id(), Awaiting::Cancelled, "target"));
        let target_abort = target.abort_handle();
        w.spawn("joiner", Awaiting::Join, async move {
            let _ = target.await;
        });

        // A group joining a child that waits for its (the group's) cancel.
        let group = w.spawn("group", Awaiting::Join, async {
            let mut group = cancel::TaskGroup::new();
            group.spawn(async { drop(cancel::cancelled().await) });
            while group.join_next().await.is_some() {}
        });

        let (tx, mut rx) = mpsc::channel::<u8>(1);
        w.spawn("mpsc-recv", Awaiting::Sync(SyncOp::MpscRecv), async move {
            let _ = rx.recv().await;
        });
        let (full_tx, full_rx) = mpsc::channel::<u8>(1);
        full_tx.send(1).await.unwrap();
        w.spawn("mpsc-send", Awaiting::Sync(SyncOp::MpscSend), async move {
            let _ = full_tx.send(2).await;
        });

        let mutex = Arc::new(Mutex::new(()));
        let held = mutex.clone().lock_owned().await.unwrap();
        w.spawn("mutex", Awaiting::Sync(SyncOp::Mutex), async move {
            let _ = mutex.lock().await;
        });

        let rwlock = Arc::new(RwLock::new(()));
        let read = rwlock.clone().read_owned().await.unwrap();
        w.spawn(
            "rwlock-write",
            Awaiting::Sync(SyncOp::RwLockWrite),
            async move {
                let _ = rwlock.write().await;
            },
        );

        let sem = Arc::new(Semaphore::new(0));
        let s = sem.clone();
        w.spawn("semaphore", Awaiting::Sync(SyncOp::Semaphore), async move {
            let _ = s.acquire().await;
        });

        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        w.spawn("notify", Awaiting::Sync(SyncOp::Notify), async move {
            let _ = n.notified().await;
        });

        let (once_tx, once_rx) = oneshot::channel::<u8>();
        w.spawn("oneshot", Awaiting::Sync(SyncOp::OneshotRecv), async move {
            let _ = once_rx.await;
        });

        let (watch_tx, mut watch_rx) = watch::channel(0u8);
        w.spawn("watch", Awaiting::Sync(SyncOp::Watch), async move {
            let _ = watch_rx.changed().await;
        });

        let (bcast_tx, mut bcast_rx) = broadcast::channel::<u8>(4);
        w.spawn(
            "broadcast",
            Awaiting::Sync(SyncOp::BroadcastRecv),
            async move {
                let _ = bcast_rx.recv().await;
            },
        );

        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        w.spawn("barrier", Awaiting::Sync(SyncOp::Barrier), async move {
            let _ = b.wait().await;
        });

        let (foreign_tx, foreign_rx) = futures_channel::oneshot::channel::<u8>();
        w.spawn("foreign", Awaiting::Foreign, async move {
            let _ = cancel::cancellable(foreign_rx).await;
        });

        // A future weft knows nothing of, not wrapped: unknown.
        let (unknown_tx, unknown_rx) = futures_channel::oneshot::channel::<u8>();
        w.spawn("unknown", Awaiting::Unknown, async move {
            let _ = unknown_rx.await;
        });

        let kinds: Vec<(Id, Awaiting)> = w.expected.iter().map(|(id, k, _)| (*id, *k)).collect();
        let dump = dump_when_waiting(&kinds).await;
        let text = dump.to_string();
        for (id, kind, name) in &w.expected {
            let task = dump.task(*id).expect("a waiting task is listed");
            assert_eq!(task.name(), Some(*name));
            assert_eq!(task.awaiting(), *kind, "{name}");
            assert_eq!(task.state(), TaskState::Idle, "{name}");
            assert!(!task.is_aborted(), "{name}");
            assert!(task.cancelled().is_none(), "{name} is not cancelled");
            assert_eq!(task.deadline(), None, "{name} has no deadline");
            assert_eq!(task.coop_budget(), None, "only the dumping task has one");
            let line = text
                .lines()
                .find(|l| l.contains(&format!("{name:?}")))
                .unwrap_or_else(|| panic!("no line for {name} in\n{text}"));
            assert!(line.starts_with(&id.to_string()), "{line}");
            assert!(line.contains("idle"), "{line}");
            if *kind != Awaiting::Unknown {
                assert!(line.contains(&kind.to_string()), "{line} names {kind}");
            }
        }
        assert!(text.starts_with("weft task dump: "), "{text}");
        let ids: Vec<Id> = dump.tasks().iter().map(|t| t.id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by id");

        // Release every wait.
        drop(client);
        target_abort.abort();
        drop(tx);
        drop(full_rx);
        drop(held);
        drop(read);
        sem.add_permits(1);
        notify.notify_one();
        once_tx.send(1).unwrap();
        watch_tx.send(1).unwrap();
        bcast_tx.send(1).unwrap();
        barrier.wait().await.unwrap();
        foreign_tx.send(1).unwrap();
        unknown_tx.send(1).unwrap();
        for handle in w.handles.drain(..) {
            if [acceptor, sleeper, group].contains(&handle.id()) {
                handle.cancel();
            }
            let _ = handle.await;
        }
        // A joiner can read the output a moment before the task has left
        // the registry (it is then listed as complete): wait for that.
        let deadline = Instant::now() + LIMIT;
        let after = loop {
            let after = Handle::current().dump();
            let listed: Vec<_> = w
                .expected
                .iter()
                .filter_map(|(id, _, name)| after.task(*id).map(|t| (name, t.state())))
                .collect();
            if listed.is_empty() {
                break after;
            }
            assert!(
                listed.iter().all(|(_, s)| *s == TaskState::Complete),
                "finished tasks listed as live: {listed:?}"
            );
            assert!(Instant::now() < deadline, "never gone: {listed:?}");
            weft::time::sleep(Duration::from_millis(1)).await.unwrap();
        };
        assert!(
            !after.to_string().contains("\"reader\""),
            "finished tasks are not printed"
        );
    });
    // From outside the runtime too: nothing the test spawned is left
    // (bounded: a joined task leaves the registry a moment after).
    assert!(
        common::eventually(|| rt.rt.dump().tasks().is_empty()),
        "{}",
        rt.rt.dump()
    );
    rt.finish();
}

fn deadline_and_cancellation_of_a_waiting_task(driver: Driver) {
    let rt = NetRt::new(driver);
    rt.block_on(async {
        let notify = Arc::new(Notify::new());
        // A deadline that passes while the task waits: its scope is
        // cancelled (cause Deadline), which ends that wait; the task then
        // waits again inside a shield, its scope still cancelled.
        let n = notify.clone();
        let late = Builder::new()
            .name("late")
            .detached()
            .timeout(Duration::from_millis(30))
            .spawn(async move {
                let first = n.notified().await;
                assert!(first.unwrap_err().is_deadline());
                let _ = cancel::shield(LIMIT, n.notified()).await;
            });
        // An explicit cancel with a reason, the task waiting in a shield.
        let n = notify.clone();
        let told = Builder::new().name("told").detached().spawn(async move {
            let _ = cancel::shield(LIMIT, n.notified()).await;
        });
        // A long deadline, not passed.
        let n = notify.clone();
        let spawned_at = Instant::now();
        let patient = Builder::new()
            .name("patient")
            .detached()
            .timeout(Duration::from_secs(300))
            .spawn(async move {
                let _ = n.notified().await;
            });
        let notify_kind = Awaiting::Sync(SyncOp::Notify);
        dump_when_waiting(&[
            (late.id(), notify_kind),
            (told.id(), notify_kind),
            (patient.id(), notify_kind),
        ])
        .await;
        told.cancel_with("operator said so");
        weft::time::sleep(Duration::from_millis(60)).await.unwrap();
        let dump = dump_when_waiting(&[
            (late.id(), notify_kind),
            (told.id(), notify_kind),
            (patient.id(), notify_kind),
        ])
        .await;

        let t = dump.task(late.id()).unwrap();
        let c = t.cancelled().expect("the deadline passed: cancelled");
        assert_eq!(c.cause(), Cause::Deadline);
        assert!(t.deadline().unwrap() <= Instant::now());
        assert_eq!(t.remaining(), Some(Duration::ZERO));

        let t = dump.task(told.id()).unwrap();
        let c = t.cancelled().expect("cancelled explicitly");
        assert_eq!(c.cause(), Cause::Explicit);
        assert_eq!(c.reason(), Some("operator said so"));
        assert_eq!(t.deadline(), None);

        let t = dump.task(patient.id()).unwrap();
        assert!(t.cancelled().is_none());
        let left = t.remaining().expect("a deadline");
        assert!(left > Duration::from_secs(250) && left <= Duration::from_secs(300));
        assert!(t.deadline().unwrap() > spawned_at);

        let text = dump.to_string();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.contains(&format!("{name:?}")))
                .unwrap_or_else(|| panic!("no line for {name} in\n{text}"))
                .to_owned()
        };
        assert!(line("late").contains("passed"), "{text}");
        assert!(line("late").contains("deadline exceeded"), "{text}");
        assert!(line("told").contains("operator said so"), "{text}");
        assert!(line("patient").contains("in "), "{text}");

        notify.notify_waiters();
        for handle in [late, told, patient] {
            let _ = handle.await;
        }
    });
    rt.finish();
}

fn the_dumping_task_runs_and_sees_its_budget(driver: Driver) {
    let rt = NetRt::new(driver);
    rt.in_task(async {
        let me = weft::task::id();
        let dump = Handle::current().dump();
        let own = dump.task(me).expect("the dumping task is live");
        assert_eq!(own.state(), TaskState::Running);
        assert_eq!(
            own.awaiting(),
            Awaiting::Unknown,
            "running: waits for nothing"
        );
        let budget = own.coop_budget().expect("its own budget");
        assert!(budget > 0 && budget <= 128, "{budget}");
        weft::task::consume_budget().await;
        let later = Handle::current().dump();
        assert_eq!(later.task(me).unwrap().coop_budget(), Some(budget - 1));
    });
    rt.finish();
}

/// `Builder::dump_on_signal_with`: each SIGUSR1 hands a dump to the hook,
/// listing the service's tasks and the listener itself; a signal that
/// cannot be caught fails the build; the listener goes with the runtime.
#[test]
fn a_signal_hands_a_dump_to_the_hook() {
    use weft::signal::unix::SignalKind;

    let _serial = common::net::serial();
    let kind = SignalKind::user_defined1();
    let listeners_before = weft::signal::unix::__listener_count(kind);
    let (tx, rx) = std::sync::mpsc::channel::<TaskDump>();
    let tx = std::sync::Mutex::new(tx);
    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .dump_on_signal_with(kind, move |dump| {
            let _ = tx.lock().unwrap().send(dump);
        })
        .build()
        .expect("SIGUSR1 can be caught");
    assert_eq!(
        weft::signal::unix::__listener_count(kind),
        listeners_before + 1
    );
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    let waiter = Builder::new().name("waiting-service").spawn_on(
        async move {
            let _ = n.notified().await;
        },
        rt.handle(),
    );
    for round in 0..2 {
        // SAFETY: sending a signal to our own process; the runtime's
        // handler for it is installed.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) }, 0);
        let dump = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("no dump for signal {round}: {e}"));
        let listener = dump
            .tasks()
            .iter()
            .find(|t| t.name() == Some("weft-dump-on-signal"))
            .expect("the listener is listed");
        assert_eq!(
            listener.state(),
            TaskState::Running,
            "it is taking the dump"
        );
        let service = dump.task(waiter.id()).expect("the service task is listed");
        assert_eq!(service.name(), Some("waiting-service"));
        // It may still be on its way to the wait at the first signal.
        if service.state() == TaskState::Idle {
            assert_eq!(service.awaiting(), Awaiting::Sync(SyncOp::Notify));
        }
    }
    notify.notify_one();
    common::block_on_bounded(&rt, waiter).unwrap();
    // The joiner can see the output a moment before the task leaves the
    // registry, so the count is awaited, not read once.
    assert!(
        common::eventually(|| rt.metrics().alive_tasks == 1),
        "only the listener is left: alive_tasks is {}",
        rt.metrics().alive_tasks
    );
    drop(rt);
    assert_eq!(
        weft::signal::unix::__listener_count(kind),
        listeners_before,
        "the listener went with the runtime"
    );

    let refused = weft::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .dump_on_signal(SignalKind::from_raw(libc::SIGKILL))
        .build();
    match refused {
        Err(weft::runtime::BuildError::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}")
        }
        other => panic!("SIGKILL cannot be caught: {other:?}"),
    }
}
