//! Network ops as cancellation points, on both io drivers: a read that
//! outlives its task's deadline (`TimedOut`, with the deadline's
//! `Cancelled` inside), or its parent's (cause `Parent`, origin
//! `Deadline`), or a `time::timeout` around it; an explicit cancel of a task
//! blocked in read, write or accept (`Interrupted`), level-triggered so the
//! next op fails at once even with data ready; accept and UDP recv past a
//! deadline; op futures dropped mid-flight (the stream keeps working, the
//! drivers let go of every op, no fd leaks, a dropped accept closes what it
//! accepted); and dropping a runtime with io in flight.
//!
//! A stream is reused after a cancelled op only once `io_ops_in_flight` is
//! back to 0: until the kernel has let go of an op it may still take bytes.
mod common;

use std::{
    io,
    net::Shutdown,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{
    eventually,
    net::{
        cancelled_of, fd_count, listener, on_each_driver, read_exact, std_client_pair, tcp_pair,
        wait_fds_at_most, wait_io_idle, NetRt, LOOPBACK,
    },
    poll_once, Gate, LIMIT,
};
use weft::{
    cancel::Cause,
    io::Driver,
    net::{TcpStream, UdpSocket},
    task::Builder,
    time::{sleep, timeout},
};

on_each_driver!(
    a_read_past_its_task_deadline_times_out,
    an_inherited_deadline_ends_a_childs_read,
    a_timeout_around_a_read_times_out,
    an_explicit_cancel_interrupts_a_blocked_read_level_triggered,
    an_explicit_cancel_interrupts_a_blocked_write,
    an_accept_past_its_deadline_times_out,
    an_explicit_cancel_interrupts_a_blocked_accept,
    a_udp_recv_past_its_deadline_times_out,
    dropped_reads_leave_the_connection_working,
    a_dropped_accept_leaves_no_connection_behind,
    dropping_the_runtime_with_io_in_flight_closes_everything,
);

/// The deadline the tests give their reads.
const DEADLINE: Duration = Duration::from_millis(50);

fn a_read_past_its_task_deadline_times_out(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let started = Instant::now();
        let (res, buf, server) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move {
                // The peer never writes: only the deadline ends this.
                let (res, buf) = server.read(Vec::with_capacity(64)).await;
                (res, buf, server)
            })
            .await
            .expect("the task returns its read's result");
        let waited = started.elapsed();

        let err = res.expect_err("the read outlived its deadline");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        let cancelled = cancelled_of(&err);
        assert!(cancelled.is_deadline(), "{cancelled:?}");
        assert_eq!(cancelled.cause(), Cause::Deadline);
        assert!(buf.is_empty(), "a failed read initialises nothing");
        assert!(
            waited >= DEADLINE - Duration::from_millis(10),
            "ended after {waited:?}, before its deadline"
        );

        // Outside the expired task the stream works: nothing was lost.
        wait_io_idle().await;
        client.write_all(b"late".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&server, 4).await, b"late");
    });
    t.finish();
}

fn an_inherited_deadline_ends_a_childs_read(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let (result_tx, result_rx) = futures_channel::oneshot::channel();
        Builder::new()
            .timeout(DEADLINE)
            .spawn(async move {
                // The child has no deadline of its own: it inherits this one.
                // The parent outlives it without a weft await point (which
                // its own expired deadline would end at once).
                let child_done = Gate::new();
                let done = child_done.clone();
                weft::spawn(async move {
                    let (res, _) = server.read(Vec::with_capacity(64)).await;
                    let _ = result_tx.send((res, server));
                    done.open();
                });
                child_done.wait().await;
            })
            .await
            .expect("the parent returned");
        let (res, server) = result_rx.await.expect("the child sent its result");
        let err = res.expect_err("the parent's deadline ends the child's read");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        let cancelled = cancelled_of(&err);
        assert_eq!(cancelled.cause(), Cause::Parent);
        assert_eq!(cancelled.origin(), Cause::Deadline);
        assert!(cancelled.is_deadline());

        wait_io_idle().await;
        client.write_all(b"late".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&server, 4).await, b"late");
    });
    t.finish();
}

fn a_timeout_around_a_read_times_out(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let mut inner = None;
        let out = timeout(DEADLINE, async {
            inner = Some(server.read(Vec::with_capacity(64)).await.0);
        })
        .await;
        let elapsed = out.expect_err("the peer never writes: the timeout fires");
        assert_eq!(
            io::Error::from(elapsed).kind(),
            io::ErrorKind::TimedOut,
            "as an io error, a timeout is TimedOut"
        );
        // If the read saw the timeout's deadline itself (rather than being
        // dropped by it), it failed the same way as under a task deadline.
        if let Some(res) = inner {
            let err = res.expect_err("a read that returned under an expired timeout");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
            assert!(cancelled_of(&err).is_deadline());
        }

        // The enclosing task is not cancelled: its next read works.
        wait_io_idle().await;
        client.write_all(b"after".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&server, 5).await, b"after");

        // A timeout that does not fire changes nothing.
        client.write_all(b"quick".to_vec()).await.0.unwrap();
        let got = timeout(LIMIT, read_exact(&server, 5))
            .await
            .expect("data was there");
        assert_eq!(got, b"quick");
    });
    t.finish();
}

fn an_explicit_cancel_interrupts_a_blocked_read_level_triggered(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let (reading, data_sent) = (Gate::new(), Gate::new());
        let task = {
            let (reading, data_sent) = (reading.clone(), data_sent.clone());
            weft::spawn(async move {
                reading.open();
                let (first, _) = server.read(Vec::with_capacity(64)).await;
                // Not a weft await point: waits out the cancel on purpose.
                data_sent.wait().await;
                let started = Instant::now();
                let (second, buf) = server.read(Vec::with_capacity(64)).await;
                (first, second, buf, started.elapsed(), server)
            })
        };
        reading.wait().await;
        sleep(Duration::from_millis(20)).await.unwrap();
        assert!(!task.is_finished(), "the peer never wrote: the read waits");
        assert!(task.cancel(), "the first cancel takes effect");

        // Data becomes ready before the cancelled task reads again.
        wait_io_idle().await;
        client.write_all(b"ready".to_vec()).await.0.unwrap();
        sleep(Duration::from_millis(20)).await.unwrap();
        data_sent.open();

        let (first, second, buf, second_took, server) =
            task.await.expect("the cancelled task returned normally");
        let err = first.expect_err("the blocked read is interrupted");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);
        assert!(!cancelled_of(&err).is_deadline());

        let err = second.expect_err("level-triggered: the next read fails too, data or not");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);
        assert!(buf.is_empty());
        assert!(
            second_took < Duration::from_secs(5),
            "the second read failed at once, not after {second_took:?}"
        );

        // The data the cancelled task did not take is still there.
        wait_io_idle().await;
        assert_eq!(read_exact(&server, 5).await, b"ready");
    });
    t.finish();
}

fn an_explicit_cancel_interrupts_a_blocked_write(driver: Driver) {
    const LEN: usize = 64 << 20;
    let t = NetRt::new(driver);
    t.in_task(async {
        let (peer, server) = std_client_pair().await;
        let task = weft::spawn(async move {
            let (res, buf) = server.write_all(vec![1u8; LEN]).await;
            (res, buf, server)
        });
        sleep(Duration::from_millis(50)).await.unwrap();
        assert!(
            !task.is_finished(),
            "the peer reads nothing: the write blocks"
        );
        assert!(task.cancel_with("enough"));

        let (res, buf, server) = task.await.expect("the cancelled task returned");
        let err = res.expect_err("the blocked write_all is interrupted");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        let cancelled = cancelled_of(&err);
        assert_eq!(cancelled.cause(), Cause::Explicit);
        assert_eq!(cancelled.reason(), Some("enough"));
        assert_eq!(buf.len(), LEN, "the buffer comes back");
        wait_io_idle().await;
        server.shutdown(Shutdown::Both).unwrap();
        drop(peer);
    });
    t.finish();
}

fn an_accept_past_its_deadline_times_out(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (listener, addr) = listener().await;
        let (res, listener) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move { (listener.accept().await.map(|_| ()), listener) })
            .await
            .unwrap();
        let err = res.expect_err("nobody connects: the accept times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        assert!(cancelled_of(&err).is_deadline());

        // The listener still accepts afterwards.
        let client = TcpStream::connect(addr).await.unwrap();
        let (_, peer) = listener
            .accept()
            .await
            .expect("accept after a timed-out accept");
        assert_eq!(peer, client.local_addr().unwrap());
    });
    t.finish();
}

fn an_explicit_cancel_interrupts_a_blocked_accept(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (listener, addr) = listener().await;
        let accepting = Gate::new();
        let task = {
            let accepting = accepting.clone();
            weft::spawn(async move {
                accepting.open();
                (listener.accept().await.map(|_| ()), listener)
            })
        };
        accepting.wait().await;
        sleep(Duration::from_millis(20)).await.unwrap();
        assert!(!task.is_finished(), "nobody connects: the accept waits");
        assert!(task.cancel());
        let (res, listener) = task.await.expect("the cancelled task returned");
        let err = res.expect_err("the blocked accept is interrupted");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);

        let client = TcpStream::connect(addr).await.unwrap();
        let (_, peer) = listener
            .accept()
            .await
            .expect("accept after an interrupted accept");
        assert_eq!(peer, client.local_addr().unwrap());
    });
    t.finish();
}

fn a_udp_recv_past_its_deadline_times_out(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let socket = UdpSocket::bind(LOOPBACK).await.unwrap();
        let socket_addr = socket.local_addr().unwrap();
        let (res, socket) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move {
                let (res, _) = socket.recv_from(Vec::with_capacity(64)).await;
                (res.map(|_| ()), socket)
            })
            .await
            .unwrap();
        let err = res.expect_err("nobody sends: the recv times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        assert!(cancelled_of(&err).is_deadline());

        wait_io_idle().await;
        let sender = UdpSocket::bind(LOOPBACK).await.unwrap();
        sender.send_to(b"hi".to_vec(), socket_addr).await.0.unwrap();
        let (res, buf) = socket.recv_from(Vec::with_capacity(8)).await;
        let (n, _) = res.expect("recv after a timed-out recv");
        assert_eq!(&buf[..n], b"hi");
    });
    t.finish();
}

fn dropped_reads_leave_the_connection_working(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        // A full round first, so the drivers hold whatever fds they open
        // lazily before counting.
        client.write_all(b"warm".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&server, 4).await, b"warm");
        let fds = fd_count();

        let handle = weft::runtime::Handle::current();
        for round in 0..50 {
            // Posted (the kernel owns the buffer under io_uring), then
            // dropped before it completes.
            let mut read: Pin<Box<_>> = Box::pin(server.read(vec![0u8; 4096]));
            assert!(
                poll_once(&mut read).await.is_none(),
                "round {round}: nothing to read yet"
            );
            if round == 0 && handle.io_driver() == Driver::Uring {
                // The metric sees a posted read, so its return to 0 below
                // means the dropped ones were let go of.
                let mut counted = false;
                for _ in 0..1000 {
                    counted = handle.metrics().io_ops_in_flight >= 1;
                    if counted {
                        break;
                    }
                    sleep(Duration::from_millis(1)).await.unwrap();
                }
                assert!(counted, "a posted read shows in io_ops_in_flight");
            }
            drop(read);
        }
        // The same through a timeout that drops the read (as a select would).
        for _ in 0..5 {
            let out = timeout(Duration::from_millis(5), server.read(vec![0u8; 4096])).await;
            assert!(out.is_err(), "the peer never wrote: {out:?}");
        }

        wait_io_idle().await;
        assert_eq!(fd_count(), fds, "dropped reads leak no fd");

        // Both directions still carry every byte.
        client.write_all(b"still here".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&server, 10).await, b"still here");
        server.write_all(b"and back".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&client, 8).await, b"and back");
    });
    t.finish();
}

fn a_dropped_accept_leaves_no_connection_behind(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (listener, addr) = listener().await;
        {
            let _warm = TcpStream::connect(addr).await.unwrap();
            listener.accept().await.unwrap();
        }
        let fds = fd_count();

        // Accepts posted with nobody connecting, then dropped.
        for _ in 0..20 {
            let mut accept = Box::pin(listener.accept());
            assert!(poll_once(&mut accept).await.is_none());
            drop(accept);
        }
        assert_eq!(fd_count(), fds, "dropped accepts leak no fd");
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, peer) = listener
            .accept()
            .await
            .expect("accept after dropped accepts");
        assert_eq!(
            peer,
            client.local_addr().unwrap(),
            "no dropped accept took it"
        );
        drop((server, client));

        // An accept dropped just as a client arrives: the connection is
        // then still queued for the next accept, or it was accepted and the
        // driver closed it; never lost while open.
        let mut racer = std::net::TcpStream::connect(addr).unwrap();
        racer.set_read_timeout(Some(LIMIT)).unwrap();
        let mut accept = Box::pin(listener.accept());
        let _ = poll_once(&mut accept).await;
        drop(accept);
        match timeout(Duration::from_millis(200), listener.accept()).await {
            Ok(accepted) => {
                let (_, peer) = accepted.expect("accept of the queued connection");
                assert_eq!(peer, racer.local_addr().unwrap());
            }
            Err(_) => {
                let mut byte = [0u8; 1];
                let res = std::io::Read::read(&mut racer, &mut byte);
                assert!(
                    matches!(res, Ok(0)) || res.is_err(),
                    "a connection the dropped accept took was closed: {res:?}"
                );
            }
        }
        wait_fds_at_most(fds + 1, "with only the racing client open").await;
        drop(listener);
        wait_io_idle().await;
        drop(racer);
    });
    t.finish();
}

fn dropping_the_runtime_with_io_in_flight_closes_everything(driver: Driver) {
    let t = NetRt::new(driver);
    let (results_tx, results) = std::sync::mpsc::channel();
    let started = Arc::new(AtomicUsize::new(0));
    let (peers, servers, listener) = t.in_task(async {
        let mut peers = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..10 {
            let (client, server) = std_client_pair().await;
            peers.push(client);
            servers.push(server);
        }
        (peers, servers, listener().await.0)
    });
    // Root tasks, blocked in io when the runtime goes.
    for server in servers {
        let (results_tx, started) = (results_tx.clone(), started.clone());
        t.rt.spawn(async move {
            started.fetch_add(1, SeqCst);
            let (res, _) = server.read(Vec::with_capacity(64)).await;
            let _ = results_tx.send(res);
        });
    }
    {
        let started = started.clone();
        t.rt.spawn(async move {
            started.fetch_add(1, SeqCst);
            let _ = listener.accept().await;
        });
    }
    drop(results_tx);
    assert!(
        eventually(|| started.load(SeqCst) == 11),
        "every task started"
    );
    std::thread::sleep(Duration::from_millis(20));
    t.finish_by_dropping(peers.len());

    // Shutdown cancels each task's scope (or drops the task): a read that
    // returned at all returned an error, never data nor EOF, since the
    // peers were all still open and silent.
    for res in results.try_iter() {
        let err = res.expect_err("a read ended by shutdown");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Shutdown);
    }
    drop(peers);
}
