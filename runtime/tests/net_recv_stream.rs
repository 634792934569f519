//! Pooled receive (`TcpStream::recv_stream`), on both io drivers: every
//! byte of many messages over many connections arrives once and in order;
//! the end of the stream (repeatedly) and a peer's reset; every buffer goes
//! back to its pool (`recv_buffers_out` back to 0), also when dropped on
//! another thread; a deadline or an explicit cancel ends a wait at once
//! and loses nothing; a stream dropped mid-wait or with chunks queued lets
//! go of its op, its buffers, its task and its fds; a consumer that holds
//! every buffer of a small ring (io_uring: `ENOBUFS`) still gets every
//! byte; a stream polled off the workers, or moved to the other worker;
//! a Unix stream; and the single-shot fallback forced with
//! `WEFT_IO_RECV_MULTISHOT=off`.
mod common;

use std::{
    io,
    net::Shutdown,
    process::Command,
    time::{Duration, Instant},
};

use common::{
    net::{
        cancelled_of, check_pattern, on_each_driver, pattern, read_exact, reset, std_client_pair,
        tcp_pair, wait_io_idle, NetRt, LOOPBACK,
    },
    Gate, LIMIT,
};
use weft::{
    cancel::Cause,
    io::{Driver, RecvBuf},
    net::{RecvStream, TcpListener, TcpStream},
    runtime::{BuildError, Builder as RtBuilder, Handle},
    task::Builder,
    time::sleep,
};

on_each_driver!(
    many_messages_on_many_connections_arrive_intact,
    the_end_of_the_stream_is_reported_every_time,
    a_peer_reset_is_an_error_after_the_data,
    a_deadline_ends_a_wait_and_loses_nothing,
    an_explicit_cancel_is_level_triggered_and_loses_nothing,
    dropping_a_stream_mid_wait_frees_its_op_and_buffers,
    buffers_dropped_on_another_thread_go_back,
    a_consumer_holding_every_buffer_still_gets_every_byte,
    a_stream_polled_off_the_workers_works,
    dropping_the_runtime_with_streams_armed_closes_everything,
    a_unix_stream_receives_pooled_too,
    a_stream_polled_on_another_worker_keeps_every_byte_in_order,
);

/// Receives until the end of the stream; checks the bytes against pattern
/// `seed`; returns (bytes, chunks from the ring).
async fn drain(stream: &mut RecvStream, seed: u32, limit: usize) -> (usize, usize) {
    let (mut total, mut ring) = (0, 0);
    for _ in 0..=limit {
        match stream.recv().await.expect("pooled receive") {
            None => return (total, ring),
            Some(buf) => {
                assert!(!buf.is_empty(), "a chunk is never empty");
                check_pattern(seed, total, &buf);
                total += buf.len();
                ring += usize::from(buf.is_ring_buffer());
                assert!(total <= limit, "more than {limit} bytes");
            }
        }
    }
    panic!("the stream made no progress")
}

/// Waits (bounded) until every pooled buffer is back.
async fn wait_buffers_back() {
    let handle = Handle::current();
    let deadline = Instant::now() + LIMIT;
    while handle.metrics().recv_buffers_out != 0 {
        assert!(
            Instant::now() < deadline,
            "buffers leaked: recv_buffers_out is still {}",
            handle.metrics().recv_buffers_out
        );
        sleep(Duration::from_millis(1)).await.unwrap();
    }
}

fn many_messages_on_many_connections_arrive_intact(driver: Driver) {
    const CONNS: usize = 16;
    const MESSAGES: usize = 100;
    let t = NetRt::new(driver);
    let uring = t.rt.io_driver() == Driver::Uring;
    let ring_chunks = t.in_task(async move {
        let listener = TcpListener::bind(LOOPBACK).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = weft::spawn(async move {
            let mut conns = Vec::new();
            for _ in 0..CONNS {
                let (conn, _) = listener.accept().await.unwrap();
                conns.push(weft::spawn(async move {
                    let mut stream = conn.recv_stream();
                    // The first message says which pattern follows.
                    let first = stream.recv().await.unwrap().expect("the seed");
                    let seed = u32::from_le_bytes(first[..4].try_into().unwrap());
                    assert_eq!(first.len(), 4, "the client waits after the seed");
                    drop(first);
                    conn.write_all(vec![1u8]).await.0.unwrap();
                    drain(&mut stream, seed, 1 << 20).await
                }));
            }
            let mut out = Vec::new();
            for c in conns {
                out.push(c.await.unwrap());
            }
            out
        });
        let mut clients = Vec::new();
        for i in 0..CONNS {
            clients.push(weft::spawn(async move {
                let seed = 0x5eed_0000 + i as u32;
                let conn = TcpStream::connect(addr).await.unwrap();
                conn.write_all(seed.to_le_bytes().to_vec()).await.0.unwrap();
                assert_eq!(read_exact(&conn, 1).await, [1]);
                // Messages of 1 to ~6000 bytes: some fill several buffers.
                let mut offset = 0;
                for m in 0..MESSAGES {
                    let len = 1 + (m * 613 + i * 97) % 6000;
                    let bytes = pattern(seed, offset + len)[offset..].to_vec();
                    conn.write_all(bytes).await.0.unwrap();
                    offset += len;
                }
                conn.shutdown(Shutdown::Write).unwrap();
                (offset, conn)
            }));
        }
        let mut sent = Vec::new();
        for c in clients {
            sent.push(c.await.unwrap());
        }
        let got = server.await.unwrap();
        // Both sides in accept order are not the same order: compare sums
        // and each connection's own check (the pattern) did the rest.
        let sent_total: usize = sent.iter().map(|(n, _)| n).sum();
        let got_total: usize = got.iter().map(|(n, _)| n).sum();
        assert_eq!(got_total, sent_total, "every byte arrived once");
        drop(sent);
        wait_buffers_back().await;
        got.iter().map(|(_, r)| r).sum::<usize>()
    });
    if uring {
        assert!(ring_chunks > 0, "io_uring receives into its buffer ring");
    } else {
        assert_eq!(ring_chunks, 0, "epoll has no buffer ring");
    }
    assert_eq!(t.rt.metrics().recv_buffers_out, 0);
    t.finish();
}

fn the_end_of_the_stream_is_reported_every_time(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        client.write_all(b"hello".to_vec()).await.0.unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut stream = server.recv_stream();
        let mut got = Vec::new();
        while let Some(buf) = stream.recv().await.unwrap() {
            got.extend_from_slice(&buf);
        }
        assert_eq!(got, b"hello");
        for _ in 0..3 {
            assert!(stream.recv().await.unwrap().is_none(), "EOF again");
        }
        // The write side still works.
        server.write_all(b"bye".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&client, 3).await, b"bye");
        drop(stream);
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

fn a_peer_reset_is_an_error_after_the_data(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (mut client, server) = std_client_pair().await;
        let mut stream = server.recv_stream();
        std::io::Write::write_all(&mut client, b"before").unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            got.extend_from_slice(&stream.recv().await.unwrap().expect("data"));
        }
        assert_eq!(got, b"before");
        reset(client);
        let err = stream.recv().await.expect_err("the peer reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
        // After the error: the end of the stream (the kernel's answer to a
        // receive on a reset socket), never a hang.
        let next = stream.recv().await;
        assert!(matches!(next, Ok(None)), "{next:?}");
        drop(stream);
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

/// The deadline the tests give their waits.
const DEADLINE: Duration = Duration::from_millis(50);

fn a_deadline_ends_a_wait_and_loses_nothing(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        client.write_all(b"first".to_vec()).await.0.unwrap();
        let started = Instant::now();
        let (first, err, stream) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move {
                let mut stream = server.recv_stream();
                let mut first = Vec::new();
                while first.len() < 5 {
                    first.extend_from_slice(&stream.recv().await.unwrap().unwrap());
                }
                // Nothing more comes: only the deadline ends this.
                let err = stream.recv().await.expect_err("the deadline passed");
                // Level-triggered: at once, again.
                let again = Instant::now();
                let err2 = stream.recv().await.expect_err("still past the deadline");
                assert!(again.elapsed() < Duration::from_millis(500), "at once");
                assert_eq!(err2.kind(), io::ErrorKind::TimedOut);
                (first, err, (stream, server))
            })
            .await
            .unwrap();
        assert!(started.elapsed() >= DEADLINE - Duration::from_millis(10));
        assert_eq!(first, b"first");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        let cancelled = cancelled_of(&err);
        assert!(cancelled.is_deadline());
        assert_eq!(cancelled.cause(), Cause::Deadline);

        // Outside the expired task the same stream goes on, nothing lost.
        let (mut stream, _server) = stream;
        client.write_all(b"second".to_vec()).await.0.unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            got.extend_from_slice(&stream.recv().await.unwrap().unwrap());
        }
        assert_eq!(got, b"second");
        drop(stream);
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

fn an_explicit_cancel_is_level_triggered_and_loses_nothing(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let (waiting, data_sent) = (Gate::new(), Gate::new());
        let task = {
            let (waiting, data_sent) = (waiting.clone(), data_sent.clone());
            weft::spawn(async move {
                let mut stream = server.recv_stream();
                waiting.open();
                let first = stream.recv().await.map(|b| b.map(|b| b.to_vec()));
                // Not a weft await point: waits out the cancel on purpose.
                data_sent.wait().await;
                let started = Instant::now();
                let second = stream.recv().await.map(|b| b.map(|b| b.to_vec()));
                (first, second, started.elapsed(), stream, server)
            })
        };
        waiting.wait().await;
        sleep(Duration::from_millis(20)).await.unwrap();
        assert!(task.cancel());
        // Data arrives before the cancelled task asks again.
        client.write_all(b"kept".to_vec()).await.0.unwrap();
        sleep(Duration::from_millis(20)).await.unwrap();
        data_sent.open();
        let (first, second, took, mut stream, _server) = task.await.unwrap();
        let err = first.expect_err("the waiting receive is interrupted");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);
        let err = second.expect_err("level-triggered, even with data ready");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert!(took < Duration::from_millis(500), "at once, took {took:?}");
        // Here, in a live scope, the bytes are all there.
        let mut got = Vec::new();
        while got.len() < 4 {
            got.extend_from_slice(&stream.recv().await.unwrap().unwrap());
        }
        assert_eq!(got, b"kept");
        drop(stream);
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

fn dropping_a_stream_mid_wait_frees_its_op_and_buffers(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair().await;
        let server = std::sync::Arc::new(server);
        // 1. A task waiting in `recv` is aborted: the stream drops mid-wait.
        let waiting = Gate::new();
        let task = {
            let (server, waiting) = (server.clone(), waiting.clone());
            weft::spawn(async move {
                let mut stream = server.recv_stream();
                waiting.open();
                stream.recv().await.map(|b| b.map(|b| b.len()))
            })
        };
        waiting.wait().await;
        sleep(Duration::from_millis(10)).await.unwrap();
        task.abort();
        assert!(task.await.is_err(), "aborted");
        wait_io_idle().await;
        wait_buffers_back().await;

        // 2. A stream with chunks queued that nobody takes, dropped.
        let mut stream = server.recv_stream();
        client.write_all(b"taken".to_vec()).await.0.unwrap();
        let first = stream.recv().await.unwrap().unwrap();
        assert_eq!(&first[..], b"taken");
        drop(first);
        for i in 0..8u8 {
            client.write_all(vec![i; 100]).await.0.unwrap();
            sleep(Duration::from_millis(1)).await.unwrap();
        }
        sleep(Duration::from_millis(20)).await.unwrap();
        drop(stream);
        wait_io_idle().await;
        wait_buffers_back().await;

        // 3. The connection is still usable: what a dropped stream had
        // queued is gone with it (under io_uring) or still in the socket
        // (epoll); a new message after it arrives intact either way.
        let mut stream = server.recv_stream();
        client.write_all(b"END".to_vec()).await.0.unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut tail = Vec::new();
        while let Some(buf) = stream.recv().await.unwrap() {
            tail.extend_from_slice(&buf);
        }
        assert!(tail.ends_with(b"END"), "{tail:?}");
        assert!(
            tail[..tail.len() - 3].iter().all(|&b| b < 8),
            "only the earlier messages' bytes before it"
        );
        drop(stream);
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

fn buffers_dropped_on_another_thread_go_back(driver: Driver) {
    let t = NetRt::with(driver, |b| b.recv_buffers(8, 256));
    let uring = t.rt.io_driver() == Driver::Uring;
    t.in_task(async move {
        let (client, server) = tcp_pair().await;
        let mut stream = server.recv_stream();
        let mut held: Vec<RecvBuf> = Vec::new();
        let mut total = 0;
        // Round trips keep each chunk to one message of 200 bytes.
        for i in 0..4u8 {
            client.write_all(vec![i; 200]).await.0.unwrap();
            let mut got = 0;
            while got < 200 {
                let buf = stream.recv().await.unwrap().unwrap();
                assert!(buf.iter().all(|&b| b == i));
                got += buf.len();
                held.push(buf);
            }
            total += got;
        }
        assert_eq!(total, 800);
        let out = Handle::current().metrics().recv_buffers_out;
        assert_eq!(out, held.len(), "each chunk held is one buffer out");
        // Dropped on a thread that is no worker.
        std::thread::spawn(move || drop(held)).join().unwrap();
        assert_eq!(Handle::current().metrics().recv_buffers_out, 0);
        // The ring has them again: the next chunks come from it.
        for round in 0..16u8 {
            client.write_all(vec![round; 10]).await.0.unwrap();
            let buf = stream.recv().await.unwrap().unwrap();
            assert_eq!(&buf[..], &[round; 10][..]);
            if uring {
                assert!(buf.is_ring_buffer(), "round {round}: from the ring");
            }
        }
        drop(stream);
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

fn a_consumer_holding_every_buffer_still_gets_every_byte(driver: Driver) {
    const COUNT: usize = 4;
    const SIZE: usize = 64;
    const TOTAL: usize = 64 * 64;
    // One worker: on two, the reading task may move to the other worker
    // (stolen, or handed over by io consolidation) and its stream re-arm
    // on that worker's ring, so the buffers held could come from two rings.
    let t = NetRt::with(driver, |b| b.recv_buffers(COUNT, SIZE).worker_threads(1));
    let uring = t.rt.io_driver() == Driver::Uring;
    let before = t.rt.metrics().recv_ring_exhausted;
    t.in_task(async move {
        let (client, server) = tcp_pair().await;
        let writer = weft::spawn(async move {
            for chunk in pattern(7, TOTAL).chunks(256) {
                client.write_all(chunk.to_vec()).await.0.unwrap();
                sleep(Duration::from_millis(1)).await.unwrap();
            }
            client.shutdown(Shutdown::Write).unwrap();
            client
        });
        let mut stream = server.recv_stream();
        let mut held = Vec::new();
        let mut total = 0;
        for _ in 0..=TOTAL {
            let Some(buf) = stream.recv().await.unwrap() else {
                break;
            };
            assert!(buf.len() <= SIZE, "a chunk fits one buffer");
            check_pattern(7, total, &buf);
            total += buf.len();
            held.push(buf); // never given back until the end
        }
        assert_eq!(total, TOTAL, "every byte, in order");
        let ring_held = held.iter().filter(|b| b.is_ring_buffer()).count();
        assert!(
            ring_held <= COUNT,
            "{ring_held} ring buffers out of {COUNT}"
        );
        if uring {
            assert_eq!(ring_held, COUNT, "the ring was used up");
        }
        assert_eq!(Handle::current().metrics().recv_buffers_out, held.len());
        drop(held);
        assert_eq!(Handle::current().metrics().recv_buffers_out, 0);
        drop(stream);
        let _client = writer.await.unwrap();
        wait_io_idle().await;
    });
    let exhausted = t.rt.metrics().recv_ring_exhausted - before;
    if uring {
        assert!(exhausted >= 1, "the kernel ran out of ring buffers");
    } else {
        assert_eq!(exhausted, 0);
    }
    t.finish();
}

fn a_stream_polled_off_the_workers_works(driver: Driver) {
    let t = NetRt::new(driver);
    // `block_on` polls on the calling thread, which has no ring.
    t.block_on(async {
        let (client, server) = tcp_pair().await;
        let mut stream = server.recv_stream();
        let data = pattern(3, 20_000);
        let writer = weft::spawn(async move {
            client.write_all(data).await.0.unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            client
        });
        let (n, _ring) = drain(&mut stream, 3, 20_000).await;
        assert_eq!(n, 20_000);
        drop(stream);
        drop(writer.await.unwrap());
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

fn dropping_the_runtime_with_streams_armed_closes_everything(driver: Driver) {
    let t = NetRt::new(driver);
    let (results_tx, results) = std::sync::mpsc::channel();
    let (peers, servers) = t.in_task(async {
        let mut peers = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..8 {
            let (client, server) = std_client_pair().await;
            peers.push(client);
            servers.push(server);
        }
        (peers, servers)
    });
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for (i, server) in servers.into_iter().enumerate() {
        let (results_tx, started) = (results_tx.clone(), started.clone());
        t.rt.spawn(async move {
            let mut stream = server.recv_stream();
            // Half of them hold a chunk while they wait.
            let held = if i % 2 == 0 {
                Some(stream.recv().await.map(|b| b.map(|b| b.len())))
            } else {
                None
            };
            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let res = stream.recv().await.map(|b| b.map(|b| b.len()));
            let _ = results_tx.send((held, res));
        });
    }
    drop(results_tx);
    let mut peers = peers;
    for (i, peer) in peers.iter_mut().enumerate() {
        if i % 2 == 0 {
            std::io::Write::write_all(peer, b"x").unwrap();
        }
    }
    assert!(
        common::eventually(|| started.load(std::sync::atomic::Ordering::SeqCst) == 8),
        "every task waits in its stream"
    );
    std::thread::sleep(Duration::from_millis(20));
    t.finish_by_dropping(peers.len());
    // A wait ended by shutdown ended with the cancellation, never data.
    for (_, res) in results.try_iter() {
        let err = res.expect_err("a receive ended by shutdown");
        assert_eq!(cancelled_of(&err).cause(), Cause::Shutdown, "{err:?}");
    }
}

fn a_unix_stream_receives_pooled_too(driver: Driver) {
    let t = NetRt::new(driver);
    let uring = t.rt.io_driver() == Driver::Uring;
    t.in_task(async move {
        let (a, b) = weft::net::UnixStream::pair().unwrap();
        let writer = weft::spawn(async move {
            for chunk in pattern(11, 30_000).chunks(3000) {
                a.write_all(chunk.to_vec()).await.0.unwrap();
            }
            a.shutdown(Shutdown::Write).unwrap();
            a
        });
        let mut stream = b.recv_stream();
        let (n, ring) = drain(&mut stream, 11, 30_000).await;
        assert_eq!(n, 30_000);
        assert_eq!(ring > 0, uring, "ring buffers exactly under io_uring");
        drop(stream);
        drop(writer.await.unwrap());
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

/// The name of the worker thread running the caller.
fn worker_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

/// A stream armed on one worker, then polled by a task on the other one
/// (what a steal does): under io_uring the stream asks the old ring to end
/// its multishot and re-arms where it is polled after that; chunks the old
/// one still delivers come first. Every byte arrives once, in order, and
/// nothing is left behind.
fn a_stream_polled_on_another_worker_keeps_every_byte_in_order(driver: Driver) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let t = NetRt::with(driver, |b| {
        b.thread_name_fn(|| {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("recv-move-{n}")
        })
    });
    let (client, server, mut stream, armed_on) = t.in_task(async {
        let (client, server) = tcp_pair().await;
        let mut stream = server.recv_stream();
        client.write_all(pattern(5, 100)).await.0.unwrap();
        let mut got = 0;
        while got < 100 {
            let buf = stream.recv().await.unwrap().unwrap();
            check_pattern(5, got, &buf);
            got += buf.len();
        }
        (client, server, stream, worker_name())
    });
    let client = std::sync::Arc::new(client);
    let mut moved = false;
    let mut offset = 100;
    for _round in 0..200 {
        let client = client.clone();
        let (s, n, on) = t
            .block_on(t.rt.spawn(async move {
                let on = worker_name();
                // Bytes written after the first poll here, so the receive
                // waits on this worker first (the move), then gets them.
                let writer = weft::spawn(async move {
                    sleep(Duration::from_millis(2)).await.unwrap();
                    client
                        .write_all(pattern(5, offset + 300)[offset..].to_vec())
                        .await
                        .0
                        .unwrap();
                });
                let mut got = 0;
                while got < 300 {
                    let buf = stream.recv().await.unwrap().unwrap();
                    check_pattern(5, offset + got, &buf);
                    got += buf.len();
                }
                writer.await.unwrap();
                (stream, got, on)
            }))
            .unwrap();
        stream = s;
        offset += n;
        if on != armed_on {
            moved = true;
            if offset >= 1000 {
                break;
            }
        }
    }
    assert!(moved, "no task ran on the other worker in 200 tries");
    t.block_on(async move {
        drop(stream);
        drop(server);
        drop(client);
        wait_io_idle().await;
        wait_buffers_back().await;
    });
    t.finish();
}

#[test]
fn bad_recv_buffer_settings_are_build_errors() {
    for (count, size) in [(0, 64), (3, 64), (65536, 64), (4, 0), (4, (1 << 24) + 1)] {
        let err = RtBuilder::new_multi_thread()
            .worker_threads(1)
            .recv_buffers(count, size)
            .build()
            .expect_err("out of range");
        assert!(
            matches!(err, BuildError::InvalidRecvBuffers { count: c, size: s } if c == count && s == size),
            "{err:?}"
        );
        assert!(err.to_string().contains("recv_buffers"), "{err}");
    }
}

const CHILD_ENV: &str = "WEFT_TEST_RECV_FALLBACK_CHILD";

/// With `WEFT_IO_RECV_MULTISHOT=off` (what a kernel without multishot
/// receive or buffer rings gets from the probe) io_uring receives with
/// single-shot ops into heap buffers: same bytes, no ring buffer.
#[test]
fn the_forced_fallback_receives_without_a_ring() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let t = NetRt::new(Driver::Uring);
        t.in_task(async {
            let (client, server) = tcp_pair().await;
            let writer = weft::spawn(async move {
                for chunk in pattern(9, 50_000).chunks(5000) {
                    client.write_all(chunk.to_vec()).await.0.unwrap();
                }
                client.shutdown(Shutdown::Write).unwrap();
                client
            });
            let mut stream = server.recv_stream();
            let (n, ring) = drain(&mut stream, 9, 50_000).await;
            assert_eq!(n, 50_000);
            assert_eq!(ring, 0, "no ring buffer without multishot receive");
            drop(stream);
            drop(writer.await.unwrap());
            wait_io_idle().await;
            wait_buffers_back().await;
        });
        assert_eq!(t.rt.metrics().recv_ring_exhausted, 0);
        t.finish();
        println!("child: received through the fallback");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_forced_fallback_receives_without_a_ring",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env("WEFT_IO_RECV_MULTISHOT", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("child: received through the fallback"),
        "the child ran the checks:\n{stdout}"
    );
}

#[test]
fn recv_streams_are_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<RecvStream>();
    assert_send::<RecvBuf>();
}
