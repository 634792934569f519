//! `weft::signal`: deliveries to the own process reach every listener of
//! the signal, once per delivery; a wait ends with the scope's deadline or
//! cancel; forbidden and out-of-range signals get a clear error; nothing
//! leaks (listeners, tasks). Signals are process-wide, so the tests here
//! take turns (`SERIAL`). Only signals with a listener installed are ever
//! raised (SIGUSR1/2, SIGHUP, and SIGINT once `ctrl_c` is polled).

mod common;

use std::{
    io,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use common::{assert_no_live_tasks, block_on_bounded, eventually, poll_once, rt, Flag};
use futures_util::StreamExt;
use weft::{
    cancel::Cause,
    signal::unix::{__listener_count, signal, SignalKind},
    task::Builder,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn raise(kind: SignalKind) {
    // SAFETY: kill(2) to our own pid with a signal a listener is installed
    // for (every caller holds one).
    let rc = unsafe { libc::kill(libc::getpid(), kind.as_raw_value()) };
    assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
}

#[test]
fn every_listener_sees_each_delivery() {
    let _serial = serial();
    const LISTENERS: usize = 4;
    let rt = rt(2);
    let kind = SignalKind::user_defined1();
    let before = __listener_count(kind);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut tasks = Vec::new();
    for i in 0..LISTENERS {
        let mut sig = signal(kind).expect("SIGUSR1 can be listened for");
        let tx = tx.clone();
        tasks.push(rt.spawn(async move {
            for round in 0..2 {
                sig.recv().await.expect("not cancelled");
                tx.send((i, round)).unwrap();
            }
        }));
    }
    assert_eq!(__listener_count(kind), before + LISTENERS);
    for round in 0..2 {
        raise(kind);
        let mut got: Vec<_> = (0..LISTENERS)
            .map(|_| rx.recv_timeout(common::LIMIT).expect("every listener woke"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..LISTENERS).map(|i| (i, round)).collect::<Vec<_>>());
    }
    for task in tasks {
        block_on_bounded(&rt, task).unwrap();
    }
    assert!(
        eventually(|| __listener_count(kind) == before),
        "listeners leaked"
    );
    assert_no_live_tasks(&rt);
}

#[test]
fn a_delivery_before_recv_is_reported_and_earlier_ones_are_not() {
    let _serial = serial();
    let rt = rt(1);
    let kind = SignalKind::user_defined2();
    let mut old = signal(kind).unwrap();
    raise(kind);
    // `old` saw it; a listener made afterwards did not.
    block_on_bounded(&rt, rt.spawn(async move { old.recv().await }))
        .unwrap()
        .unwrap();
    let mut late = signal(kind).unwrap();
    let polled = block_on_bounded(
        &rt,
        rt.spawn(async move {
            let first = poll_once(&mut Box::pin(late.recv())).await;
            (first.is_none(), late)
        }),
    )
    .unwrap();
    assert!(polled.0, "no delivery since `late` was made");
    let mut late = polled.1;
    raise(kind);
    // Raised before the recv: still reported (the listener counts from its
    // creation, not from its wait).
    std::thread::sleep(Duration::from_millis(20));
    block_on_bounded(&rt, rt.spawn(async move { late.recv().await }))
        .unwrap()
        .unwrap();
}

#[test]
fn the_stream_yields_per_delivery() {
    let _serial = serial();
    let rt = rt(1);
    let kind = SignalKind::hangup();
    let mut hup = signal(kind).unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let task = rt.spawn({
        let seen = seen.clone();
        async move {
            let mut n = 0;
            while n < 3 {
                hup.next()
                    .await
                    .expect("the stream goes on while not cancelled");
                n += 1;
                seen.store(n, std::sync::atomic::Ordering::SeqCst);
            }
            n
        }
    });
    for i in 1..=3 {
        raise(kind);
        // Deliveries close together coalesce: the next signal goes only
        // once the listener has taken this one.
        assert!(
            eventually(|| seen.load(std::sync::atomic::Ordering::SeqCst) == i),
            "delivery {i} did not reach the stream"
        );
    }
    assert_eq!(block_on_bounded(&rt, task).unwrap(), 3);
}

#[test]
fn a_deadline_ends_the_wait_and_the_stream() {
    let _serial = serial();
    let rt = rt(2);
    let kind = SignalKind::user_defined1();
    let before = __listener_count(kind);
    let task = Builder::new().timeout(Duration::from_millis(20)).spawn_on(
        async move {
            let mut sig = signal(kind).unwrap();
            let first = sig.recv().await;
            let again = sig.recv().await;
            let next = sig.next().await;
            (first, again, next)
        },
        rt.handle(),
    );
    let (first, again, next) = block_on_bounded(&rt, task).unwrap();
    let c = first.expect_err("no signal came");
    assert_eq!(c.cause(), Cause::Deadline);
    assert_eq!(again.expect_err("level-triggered"), c);
    assert_eq!(next, None, "the stream ended");
    assert_eq!(__listener_count(kind), before);
    assert_no_live_tasks(&rt);
}

#[test]
fn a_cancel_ends_the_wait_and_ctrl_c_reports_it_as_io() {
    let _serial = serial();
    let rt = rt(2);
    let started = Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            let mut sig = signal(SignalKind::user_defined2()).unwrap();
            started.set();
            let r = sig.recv().await;
            let ctrl_c = weft::signal::ctrl_c().await;
            (r, ctrl_c)
        })
    };
    assert!(started.wait());
    std::thread::sleep(Duration::from_millis(10));
    assert!(task.cancel_with("bye"));
    let (r, ctrl_c) = block_on_bounded(&rt, task).unwrap();
    let c = r.expect_err("cancelled");
    assert_eq!(c.cause(), Cause::Explicit);
    assert_eq!(c.reason(), Some("bye"));
    let e = ctrl_c.expect_err("cancelled too");
    assert_eq!(e.kind(), io::ErrorKind::Interrupted);
    let inner = e
        .get_ref()
        .and_then(|e| e.downcast_ref::<weft::cancel::Cancelled>());
    assert_eq!(inner, Some(&c));
    assert_no_live_tasks(&rt);
}

#[test]
fn ctrl_c_completes_on_sigint_once_listening() {
    let _serial = serial();
    let rt = rt(1);
    let (armed_tx, armed_rx) = std::sync::mpsc::channel();
    let task = rt.spawn(async move {
        let mut wait = Box::pin(weft::signal::ctrl_c());
        // The first poll installs the handler: only then is SIGINT safe.
        assert!(poll_once(&mut wait).await.is_none());
        armed_tx.send(()).unwrap();
        wait.await
    });
    armed_rx.recv_timeout(common::LIMIT).unwrap();
    raise(SignalKind::interrupt());
    block_on_bounded(&rt, task)
        .unwrap()
        .expect("SIGINT arrived");
}

#[test]
fn signals_that_cannot_be_listened_for_are_refused() {
    for (signum, what) in [
        (libc::SIGKILL, "cannot be"),
        (libc::SIGSTOP, "cannot be"),
        (libc::SIGSEGV, "cannot be"),
        (0, "not a signal"),
        (-3, "not a signal"),
        (libc::SIGRTMAX() + 1, "not a signal"),
        (10_000, "not a signal"),
        (32, "reserved"),
    ] {
        let err = signal(SignalKind::from_raw(signum)).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "signal {signum}");
        assert!(err.to_string().contains(what), "signal {signum}: {err}");
    }
    // A real-time signal is fine.
    assert!(signal(SignalKind::from_raw(libc::SIGRTMIN() + 2)).is_ok());
}

#[test]
fn a_delivery_during_a_cancelled_wait_is_kept_for_the_next_recv() {
    let _serial = serial();
    let rt = rt(1);
    let kind = SignalKind::user_defined1();
    let out = block_on_bounded(
        &rt,
        rt.spawn(async move {
            let mut sig = signal(kind).unwrap();
            let inner = weft::cancel::scope(async {
                weft::cancel::current().unwrap().cancel();
                raise(kind);
                // Give the dispatcher time to publish it.
                std::thread::sleep(Duration::from_millis(20));
                sig.recv().await
            })
            .await;
            // Out of the cancelled scope: the delivery is still there.
            let after = weft::time::timeout(Duration::from_secs(5), sig.recv()).await;
            (inner, after)
        }),
    )
    .unwrap();
    assert_eq!(out.0.unwrap_err().cause(), Cause::Explicit);
    out.1.expect("not elapsed").expect("delivered");
}

#[test]
fn listeners_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<weft::signal::unix::Signal>();
    send_sync::<SignalKind>();
}
