//! The compat write traits (futures-io here; tokio's and hyper's share the
//! code) as a user sees them. Under io_uring a write copies the bytes,
//! queues their send and returns; the next write, `close` or a native write
//! waits for it. What that must keep, on both drivers:
//!
//! - the bytes arrive in the order written, compat and native writes mixed,
//!   writes larger than one queued send included;
//! - a stream dropped right after a write still delivers it (the queued
//!   send lingers in a task of its own), and a send to a peer that never
//!   reads ends when the peer goes: no task, op or fd is left;
//! - a send that fails after its write returned is reported by a later
//!   write, `flush` or `close`;
//! - cancellation and deadlines reach every write: a write in a cancelled
//!   scope fails at once, and one waiting for the previous send ends at its
//!   scope's deadline without losing that send;
//! - a runtime dropped right after a write still sends it;
//! - a native `shutdown` right after a write (the inherent method, not the
//!   trait's `close`) sends the peer every byte before the end of stream,
//!   on the stream and on a write half, and writes fail after it;
//! - tasks sharing a stream whose native writes all wait for one queued
//!   send are each woken when it completes, also after the last of them to
//!   wait has gone at its deadline.
//!
//! Each scenario ends with the leak checks of `NetRt::finish`.

mod common;

use std::{
    io::{self, Read},
    net::Shutdown,
    sync::Arc,
    time::Duration,
};

use common::net::{
    check_pattern, on_each_driver, pattern, read_exact, std_client_pair, tcp_pair, NetRt,
};
use futures_util::io::AsyncWriteExt;
use weft::{io::Driver, net::TcpStream};

on_each_driver!(
    compat_and_native_writes_arrive_in_the_order_written,
    a_stream_dropped_right_after_a_write_still_delivers_it,
    a_send_to_a_peer_that_never_reads_ends_when_the_peer_goes,
    a_failed_send_is_reported_by_a_later_write_flush_or_close,
    a_write_in_a_cancelled_scope_fails_and_a_waiting_one_ends_at_its_deadline,
    a_runtime_dropped_right_after_a_write_still_sends_it,
    a_native_shutdown_after_a_write_sends_every_byte_first,
    a_loop_of_writes_that_never_wait_still_yields,
    writers_sharing_a_stream_all_go_after_a_queued_send,
);

/// Makes closing `peer` send a reset (SO_LINGER 0).
fn reset_on_close(peer: &std::net::TcpStream) {
    socket2::SockRef::from(peer)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// A write under `timeout` that the peer never let finish: the timeout
/// elapsed, or the write saw its deadline first.
fn assert_deadline_ended<T: std::fmt::Debug>(res: Result<io::Result<T>, weft::time::Elapsed>) {
    match res {
        Err(_elapsed) => {}
        Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {}
        other => {
            panic!("the peer reads nothing: the write waits until the deadline, not {other:?}")
        }
    }
}

/// One piece of what a test writes, and how.
enum Piece {
    Compat(Vec<u8>),
    Native(Vec<u8>),
}

fn compat_and_native_writes_arrive_in_the_order_written(driver: Driver) {
    // Larger than one queued send (64 KiB), so `write_all` takes several
    // short counts; and than the socket buffers, so writes wait for sends.
    const BIG: usize = 700 * 1024 + 7;
    let t = NetRt::new(driver);
    t.in_task(async {
        let (mut client, server) = tcp_pair().await;
        let mut pieces = Vec::new();
        for i in 0..60u32 {
            pieces.push(Piece::Compat(pattern(i, 50 + i as usize)));
            if i % 20 == 0 {
                pieces.push(Piece::Compat(pattern(1000 + i, BIG)));
            }
            if i % 7 == 0 {
                pieces.push(Piece::Native(pattern(2000 + i, 3000 + i as usize)));
            }
        }
        let expected: Vec<u8> = pieces
            .iter()
            .flat_map(|p| match p {
                Piece::Compat(v) | Piece::Native(v) => v.iter().copied(),
            })
            .collect();
        let total = expected.len();
        // A reader that starts late, so the first big write fills the
        // socket buffers and the writes behind it wait.
        let reader = weft::spawn(async move {
            weft::time::sleep(Duration::from_millis(30)).await.unwrap();
            read_exact(&server, total).await
        });
        for piece in pieces {
            match piece {
                Piece::Compat(v) => AsyncWriteExt::write_all(&mut client, &v)
                    .await
                    .expect("a compat write_all"),
                Piece::Native(v) => client.write_all(v).await.0.expect("a native write_all"),
            }
        }
        AsyncWriteExt::flush(&mut client).await.expect("flush");
        let got = reader.await.expect("the reader finished");
        assert_eq!(got.len(), total);
        if let Some(i) = (0..total).find(|&i| got[i] != expected[i]) {
            panic!("byte {i} of {total} is out of order");
        }
    });
    t.finish();
}

fn a_stream_dropped_right_after_a_write_still_delivers_it(driver: Driver) {
    let t = NetRt::new(driver);
    let (mut peer, server) = t.in_task(std_client_pair());
    // Writes until the buffers of both ends are full and a write waits
    // (for the send before it, under io_uring): every byte a write took
    // must reach the peer, the last queued send's included.
    let accepted = t.in_task(async move {
        let mut server = server;
        let data = pattern(7, 64 << 20);
        let mut accepted = 0;
        while accepted < data.len() {
            let one = weft::time::timeout(
                Duration::from_millis(50),
                AsyncWriteExt::write(&mut server, &data[accepted..]),
            )
            .await;
            match one {
                Ok(Ok(n)) => accepted += n,
                Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(_elapsed) => break,
                Ok(Err(e)) => panic!("a write failed: {e:?}"),
            }
        }
        assert!(
            accepted < data.len(),
            "the peer reads nothing: writes block"
        );
        accepted
        // Dropped with no flush and no close.
    });
    let got = std::thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("the peer reads to EOF");
        got
    })
    .join()
    .expect("the reader finished");
    assert_eq!(
        got.len(),
        accepted,
        "every byte a write took arrived, then EOF"
    );
    check_pattern(7, 0, &got);
    t.finish();
}

/// Writes `byte`s until the buffers of both ends are full and a write
/// waits for the send before it, until a deadline ends the wait (not the
/// send: under io_uring it stays queued until the peer reads).
async fn fill_until_a_deadline(server: &mut TcpStream, byte: u8) {
    let chunk = vec![byte; 256 * 1024];
    let filled = weft::time::timeout(Duration::from_millis(100), async {
        loop {
            AsyncWriteExt::write_all(server, &chunk).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), io::Error>(())
    })
    .await;
    assert_deadline_ended(filled);
}

fn a_send_to_a_peer_that_never_reads_ends_when_the_peer_goes(driver: Driver) {
    let t = NetRt::new(driver);
    let (peer, server) = t.in_task(std_client_pair());
    let tasks_before = t.rt.metrics().alive_tasks;
    t.in_task(async move {
        let mut server = server;
        fill_until_a_deadline(&mut server, 9).await;
        // Dropped with a send in flight (io_uring): it lingers.
    });
    if t.rt.io_driver() == Driver::Uring {
        assert!(
            common::eventually(|| t.rt.metrics().alive_tasks == tasks_before + 1),
            "the send queued before the drop goes on in a task of its own: {} tasks",
            t.rt.metrics().alive_tasks
        );
    }
    // The peer goes without reading: its reset ends the send.
    reset_on_close(&peer);
    drop(peer);
    t.finish();
}

fn a_failed_send_is_reported_by_a_later_write_flush_or_close(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (peer, mut server) = std_client_pair().await;
        // A reset from the peer.
        reset_on_close(&peer);
        drop(peer);
        weft::time::sleep(Duration::from_millis(20)).await.unwrap();
        // Writes succeed until one finds the failure of a send before it:
        // the first may be queued (io_uring) or even accepted by the
        // kernel before the reset is seen.
        let mut failure = None;
        for _ in 0..100 {
            let step = match AsyncWriteExt::write_all(&mut server, b"after the reset").await {
                Ok(()) => AsyncWriteExt::flush(&mut server).await,
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                failure = Some(e);
                break;
            }
            weft::time::sleep(Duration::from_millis(1)).await.unwrap();
        }
        let err = failure.expect("a write or flush reports the failed send");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{err:?}"
        );
        // close() after a failure: it reports no success it cannot know.
        let closed = AsyncWriteExt::close(&mut server).await;
        if let Err(e) = closed {
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::NotConnected
                ),
                "{e:?}"
            );
        }
    });
    t.finish();
}

fn a_write_in_a_cancelled_scope_fails_and_a_waiting_one_ends_at_its_deadline(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (mut peer, server) = std_client_pair().await;

        // Cancelled before it writes: nothing is sent.
        let task = weft::spawn(async move {
            let mut server = server;
            weft::cancel::cancelled().await;
            let res = AsyncWriteExt::write(&mut server, b"never").await;
            (res, server)
        });
        assert!(task.cancel_with("stop"));
        let (res, mut server) = task.await.expect("the task returned");
        let err = res.expect_err("a write in a cancelled scope fails");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");

        // A write waiting for the send before it ends at its deadline; the
        // send goes on and delivers once the peer reads.
        let first = vec![3u8; 8 << 20];
        let waited = weft::time::timeout(Duration::from_millis(50), async {
            AsyncWriteExt::write_all(&mut server, &first).await
        })
        .await;
        assert_deadline_ended(waited);
        // Outside the deadline: the stream is whole, the next write goes
        // after what was queued. The peer drains on a thread.
        let draining = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).expect("the peer reads to EOF");
            got
        });
        AsyncWriteExt::write_all(&mut server, b"tail")
            .await
            .expect("a write after the timed-out one");
        AsyncWriteExt::close(&mut server).await.expect("close");
        let got = weft::task::spawn_blocking(move || draining.join().unwrap())
            .await
            .expect("the drain finished");
        assert!(got.ends_with(b"tail"), "the last write came last");
        assert!(
            got[..got.len() - 4].iter().all(|&b| b == 3),
            "before it, only bytes of the first write"
        );
        server.shutdown(Shutdown::Both).ok();
    });
    t.finish();
}

fn a_runtime_dropped_right_after_a_write_still_sends_it(driver: Driver) {
    let t = NetRt::new(driver);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    t.block_on(async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        AsyncWriteExt::write_all(&mut stream, b"sent before the runtime went")
            .await
            .expect("write_all");
        // Dropped at once, and the runtime right after: its send was
        // queued, not yet submitted.
    });
    // The listener is the test's.
    t.finish_by_dropping(1);
    let (mut accepted, _) = listener.accept().unwrap();
    accepted
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    accepted
        .read_to_end(&mut got)
        .expect("the bytes arrived, then EOF");
    assert_eq!(got, b"sent before the runtime went");
}

fn a_native_shutdown_after_a_write_sends_every_byte_first(driver: Driver) {
    // More than the socket buffers hold: the last write returns with its
    // send queued (io_uring), before the peer has read the rest.
    const LEN: usize = 4 << 20;
    let t = NetRt::new(driver);
    // The stream's own shutdown, a write half's, and (for comparison) the
    // trait's close.
    for (seed, how) in [(3u32, "stream"), (4, "half"), (5, "close")] {
        let (mut peer, server) = t.in_task(std_client_pair());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).expect("the peer reads to EOF");
            got
        });
        t.in_task(async move {
            let data = pattern(seed, LEN);
            let broken =
                |err: io::Error| assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err:?}");
            match how {
                "half" => {
                    let (read, mut write) = server.into_split();
                    AsyncWriteExt::write_all(&mut write, &data)
                        .await
                        .expect("write_all");
                    write.shutdown().expect("the write half's shutdown");
                    broken(
                        AsyncWriteExt::write(&mut write, b"late")
                            .await
                            .expect_err("a write after the shutdown"),
                    );
                    drop((read, write));
                }
                "stream" => {
                    let mut server = server;
                    AsyncWriteExt::write_all(&mut server, &data)
                        .await
                        .expect("write_all");
                    server.shutdown(Shutdown::Write).expect("shutdown");
                    let (res, _) = server.write_all(b"late".to_vec()).await;
                    broken(res.expect_err("a native write after the shutdown"));
                    // The trait's close after it is a no-op.
                    AsyncWriteExt::close(&mut server).await.expect("close");
                }
                _ => {
                    let mut server = server;
                    AsyncWriteExt::write_all(&mut server, &data)
                        .await
                        .expect("write_all");
                    AsyncWriteExt::close(&mut server).await.expect("close");
                    broken(
                        AsyncWriteExt::write(&mut server, b"late")
                            .await
                            .expect_err("a write after close"),
                    );
                }
            }
        });
        let got = reader.join().expect("the reader finished");
        assert_eq!(got.len(), LEN, "{how}: every byte written, then EOF");
        check_pattern(seed, 0, &got);
    }
    t.finish();
}

/// Writes to a peer that keeps up find the previous send done (or done
/// once the write has the worker submit it), so none of them waits: the
/// coop budget must still make the writing task yield its worker.
fn a_loop_of_writes_that_never_wait_still_yields(driver: Driver) {
    const WRITES: usize = 5_000;
    let t = NetRt::new(driver);
    let (mut peer, server) = t.in_task(std_client_pair());
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("the peer reads to EOF");
        got
    });
    let forced = |rt: &weft::Runtime| -> u64 {
        rt.metrics()
            .worker
            .iter()
            .map(|w| w.budget_forced_yields)
            .sum()
    };
    let before = forced(&t.rt);
    t.in_task(async move {
        let mut server = server;
        for i in 0..WRITES {
            AsyncWriteExt::write_all(&mut server, &[i as u8])
                .await
                .expect("a one-byte write");
        }
        AsyncWriteExt::close(&mut server).await.expect("close");
    });
    let yields = forced(&t.rt) - before;
    assert!(
        yields > 0,
        "{WRITES} writes that never waited ran without a forced yield"
    );
    let got = reader.join().expect("the reader finished");
    assert_eq!(got.len(), WRITES);
    assert!(got.iter().enumerate().all(|(i, b)| *b == i as u8));
    t.finish();
}

/// Native writes take `&self`, so tasks sharing a stream may all wait for
/// the send a compat write queued; its op keeps one waker, and every one
/// of them must still be woken when it is done: also when the last of
/// them to poll it has gone (dropped at its deadline), and when another
/// task shuts the write side down (then they fail at once).
fn writers_sharing_a_stream_all_go_after_a_queued_send(driver: Driver) {
    const WRITERS: u8 = 4;
    const EACH: usize = 1000;
    const FILL: u8 = 3;
    let t = NetRt::new(driver);
    for case in ["the peer reads", "the last waiter left", "shut down"] {
        let shut_down = case == "shut down";
        let (mut peer, server) = t.in_task(std_client_pair());
        let got = t.in_task(async move {
            let mut server = server;
            fill_until_a_deadline(&mut server, FILL).await;
            let server = Arc::new(server);
            let writers: Vec<_> = (0..WRITERS)
                .map(|i| {
                    let server = server.clone();
                    weft::spawn(async move { server.write_all(vec![0xF0 | i; EACH]).await.0 })
                })
                .collect();
            // Every writer reaches its wait before anything moves.
            weft::time::sleep(Duration::from_millis(20)).await.unwrap();
            assert!(
                writers.iter().all(|w| !w.is_finished()),
                "{case}: the writers wait for the queued send"
            );
            if case == "the last waiter left" {
                // One more waits last, so the op holds its waker, and goes
                // at its deadline without writing.
                let late = server.clone();
                let waited = weft::time::timeout(Duration::from_millis(30), async move {
                    late.write_all(vec![0xEE; EACH]).await.0
                })
                .await;
                assert!(waited.is_err(), "the late write ended at its deadline");
            }
            if shut_down {
                server.shutdown(Shutdown::Write).expect("shutdown");
            }
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                peer.read_to_end(&mut got).expect("the peer reads to EOF");
                got
            });
            for (i, writer) in writers.into_iter().enumerate() {
                let res = weft::time::timeout(Duration::from_secs(5), writer)
                    .await
                    .unwrap_or_else(|_| panic!("{case}: writer {i} was never woken"))
                    .expect("the writer returned");
                match res {
                    Ok(()) => assert!(!shut_down, "writer {i} wrote after the shutdown"),
                    Err(e) => {
                        assert!(shut_down, "{case}: writer {i}: {e:?}");
                        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "writer {i}: {e:?}");
                    }
                }
            }
            if !shut_down {
                server.shutdown(Shutdown::Write).expect("shutdown");
            }
            weft::task::spawn_blocking(move || reader.join().unwrap())
                .await
                .expect("the reader finished")
        });
        let filled = got.iter().take_while(|&&b| b == FILL).count();
        assert!(filled > 0, "the filler came first");
        let writers = if shut_down { 0 } else { WRITERS as usize };
        assert_eq!(
            got.len() - filled,
            writers * EACH,
            "{case}: after the filler, only the writers' bytes"
        );
        for i in 0..writers as u8 {
            let n = got[filled..].iter().filter(|&&b| b == 0xF0 | i).count();
            assert_eq!(n, EACH, "writer {i}'s bytes");
        }
    }
    t.finish();
}
