//! Network faults, on both io drivers: a peer that resets the connection
//! while we read or write (an error, never a hang, never a SIGPIPE), writes
//! far larger than the socket buffers (every byte, in order), accept with no
//! fd left under `RLIMIT_NOFILE` (an EMFILE error or a retry, then recovery),
//! a refused connect, and 1,000 connections at once through one listener.
//!
//! This file holds only fault tests: some change process-wide settings (the
//! fd limit, the SIGPIPE disposition), which is safe because every test here
//! holds the binary's network lock and restores what it changed. Each test
//! ends with the leak checks of `NetRt::finish`: no task left, no io op in
//! flight, and once the runtime is gone, no more fds than before.

mod common;

use std::{
    fs::File,
    io::{self, Write},
    net::Shutdown,
    time::Duration,
};

use common::{
    net::{
        check_pattern, echo, fd_count, listener, on_each_driver, pattern, read_exact, read_to_eof,
        reset, std_client_pair, NetRt, NofileLimit, SigpipeDefault, LOOPBACK,
    },
    LIMIT,
};
use weft::{io::Driver, net::TcpStream, time::timeout};

on_each_driver!(
    peer_reset_mid_read_is_connection_reset,
    peer_reset_mid_write_is_an_error_not_a_hang_or_sigpipe,
    large_writes_reach_a_slow_reader_whole_and_in_order,
    accept_without_a_free_fd_fails_with_emfile_then_recovers,
    connect_to_a_closed_port_is_refused,
    a_thousand_concurrent_connections_echo_through_one_listener,
);

fn peer_reset_mid_read_is_connection_reset(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (mut client, server) = std_client_pair().await;
        client.write_all(b"before").unwrap();
        assert_eq!(read_exact(&server, 6).await, b"before");

        // The read is posted (nothing to read), then the peer resets.
        let reading = weft::spawn(async move {
            let (res, _) = server.read(Vec::with_capacity(64)).await;
            (res, server)
        });
        weft::time::sleep(Duration::from_millis(20)).await.unwrap();
        assert!(!reading.is_finished(), "the read waits for data");
        reset(client);

        let (res, server) = reading.await.expect("the reading task completed");
        let err = res.expect_err("a read across a reset fails");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");

        // The reset is reported once; the dead stream then reads EOF or
        // fails, and refuses writes, all at once.
        let (res, _) = server.read(Vec::with_capacity(64)).await;
        assert!(
            matches!(&res, Ok(0)) || res.is_err(),
            "a read after the reset: {res:?}"
        );
        let (res, _) = server.write(b"anyone?".to_vec()).await;
        let err = res.expect_err("a write to a reset connection fails");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
    });
    t.finish();
}

fn peer_reset_mid_write_is_an_error_not_a_hang_or_sigpipe(driver: Driver) {
    // Far more than loopback's socket buffers hold: the write blocks until
    // the reset ends it.
    const LEN: usize = 64 << 20;
    let t = NetRt::new(driver);
    // After the lock: no other test of this binary runs while it is set.
    let sigpipe = SigpipeDefault::new();
    t.in_task(async {
        let (client, server) = std_client_pair().await;
        let writing = weft::spawn(async move {
            let (res, buf) = server.write_all(vec![0x5Au8; LEN]).await;
            (res, buf, server)
        });
        weft::time::sleep(Duration::from_millis(50)).await.unwrap();
        assert!(
            !writing.is_finished(),
            "the peer reads nothing: the write blocks"
        );
        reset(client);

        let (res, buf, server) = writing.await.expect("the writing task completed");
        let err = res.expect_err("write_all to a peer that reset fails");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
        assert_eq!(buf.len(), LEN, "the buffer comes back whole on error");

        // Later writes fail too, at once (and still without SIGPIPE).
        for _ in 0..3 {
            let (res, _) = server.write(b"more".to_vec()).await;
            let err = res.expect_err("a write after the reset fails");
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "{err:?}"
            );
        }
    });
    drop(sigpipe);
    t.finish();
}

fn large_writes_reach_a_slow_reader_whole_and_in_order(driver: Driver) {
    const LEN: usize = (8 << 20) + 12_345;
    const SEED: u32 = 0xC0FFEE;
    const CHUNK: usize = 16 * 1024;
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = tcp_pair_with_nodelay().await;

        let reading = weft::spawn(async move {
            let mut offset = 0;
            let mut reads = 0usize;
            // At least one byte per read: LEN reads at most.
            while offset < LEN && reads <= LEN {
                let (res, buf) = server.read(Vec::with_capacity(CHUNK)).await;
                let n = res.expect("slow reader read");
                assert!(n > 0, "EOF after {offset} of {LEN} bytes");
                check_pattern(SEED, offset, &buf[..n]);
                offset += n;
                reads += 1;
                // Slow: the writer's buffer fills and its sends go partial.
                if reads % 8 == 0 {
                    weft::time::sleep(Duration::from_millis(1)).await.unwrap();
                }
            }
            assert_eq!(offset, LEN);
            let (res, _) = server.read(Vec::with_capacity(1)).await;
            assert_eq!(res.expect("read at the end"), 0, "nothing past the data");
            reads
        });

        let data = pattern(SEED, LEN);
        // One `write` takes what fits: some, maybe not all.
        let (res, data) = client.write(data).await;
        let first = res.expect("one big write");
        assert!(first > 0 && first <= LEN, "write returned {first}");
        assert_eq!(data.len(), LEN, "write hands the buffer back");
        // write_all sends the rest, however many partial sends it takes.
        let rest = data[first..].to_vec();
        let (res, rest) = client.write_all(rest).await;
        res.expect("write_all of the rest");
        assert_eq!(rest.len(), LEN - first);
        check_pattern(SEED, first, &rest[..64.min(rest.len())]);
        client.shutdown(Shutdown::Write).unwrap();

        let reads = reading.await.expect("the reader completed");
        assert!(reads > 1, "8 MiB does not arrive in one read");
    });
    t.finish();
}

async fn tcp_pair_with_nodelay() -> (TcpStream, TcpStream) {
    let (client, server) = common::net::tcp_pair().await;
    client.set_nodelay(true).unwrap();
    (client, server)
}

fn accept_without_a_free_fd_fails_with_emfile_then_recovers(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        // One full round first, so the drivers hold every fd they open
        // lazily before the limit bites.
        {
            let (warm_listener, warm_addr) = listener().await;
            let _warm = std::net::TcpStream::connect(warm_addr).unwrap();
            warm_listener.accept().await.expect("warm-up accept");
        }

        // The listener is bound and first accepts under the lowered limit:
        // io_uring takes the fd limit of an accept when it is submitted, so
        // a multishot accept armed before the change would not see it.
        let limit = NofileLimit::set_soft(fd_count() as u64 + 16);
        let (listener, addr) = listener().await;
        let mut fillers = Vec::new();
        let mut exhausted = None;
        for _ in 0..10_000 {
            match File::open("/dev/null") {
                Ok(f) => fillers.push(f),
                Err(e) => {
                    exhausted = Some(e);
                    break;
                }
            }
        }
        let exhausted = exhausted.expect("the lowered limit is reached");
        assert_eq!(
            exhausted.raw_os_error(),
            Some(libc::EMFILE),
            "{exhausted:?}"
        );
        // One fd for the client's socket; its connect completes from the
        // listen backlog, without an accept.
        drop(fillers.pop());
        let client = std::net::TcpStream::connect(addr).expect("connect with the last fd");

        // No fd for the accepted socket: an EMFILE error, or the listener
        // keeps the connection queued and retries.
        match timeout(Duration::from_millis(200), listener.accept()).await {
            Ok(Err(err)) => {
                assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err:?}");
                // The error did not drop the connection: with fds free
                // again it is accepted.
                drop(fillers);
                let (server, peer) = listener.accept().await.expect("accept after EMFILE");
                assert_eq!(peer, client.local_addr().unwrap());
                server.write_all(b"!".to_vec()).await.0.unwrap();
                let mut byte = [0u8; 1];
                std::io::Read::read_exact(&mut &client, &mut byte).unwrap();
                assert_eq!(&byte, b"!");
            }
            Err(_elapsed) => {
                // Retrying: once fds are free, a new client is served (the
                // first may have been taken by the dropped accept, which
                // must then have closed it).
                drop(fillers);
                let second = std::net::TcpStream::connect(addr).unwrap();
                let want = second.local_addr().unwrap();
                let mut served = false;
                for _ in 0..2 {
                    let (server, peer) = listener.accept().await.expect("accept after the limit");
                    if peer == want {
                        server.write_all(b"!".to_vec()).await.0.unwrap();
                        served = true;
                        break;
                    }
                }
                assert!(served, "the client that came after the fds were freed");
                let mut second = second;
                let mut byte = [0u8; 1];
                std::io::Read::read_exact(&mut second, &mut byte).unwrap();
                assert_eq!(&byte, b"!");
            }
            Ok(Ok((_, peer))) => panic!("accepted {peer} with no fd free"),
        }
        drop(limit);
        drop(client);
    });
    t.finish();
}

fn connect_to_a_closed_port_is_refused(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        // A port that was just free: bound, then closed.
        let addr = {
            let std_listener = std::net::TcpListener::bind(LOOPBACK).unwrap();
            std_listener.local_addr().unwrap()
        };
        for _ in 0..3 {
            let err = TcpStream::connect(addr)
                .await
                .expect_err("nobody listens there");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
        }
        // The refused connects left the runtime able to connect elsewhere.
        let (listener, good) = listener().await;
        let accepting = weft::spawn(async move { listener.accept().await.map(|_| ()) });
        let _client = TcpStream::connect(good)
            .await
            .expect("connect to a listener");
        accepting.await.unwrap().unwrap();
    });
    t.finish();
}

fn a_thousand_concurrent_connections_echo_through_one_listener(driver: Driver) {
    const CONNS: usize = 1000;
    let t = NetRt::new(driver);
    // Two sockets per connection, plus room for the runtime and the harness
    // (raised, if it must be, under the lock).
    let limit =
        (NofileLimit::soft() < 4 * CONNS as u64).then(|| NofileLimit::set_soft(4 * CONNS as u64));
    t.in_task(async {
        let (listener, addr) = listener().await;
        let server = weft::spawn(async move {
            let mut echoes = Vec::with_capacity(CONNS);
            for _ in 0..CONNS {
                let (stream, _) = listener.accept().await.expect("accept");
                echoes.push(weft::spawn(echo(stream, 2 * 1024 + CONNS)));
            }
            let mut total = 0;
            for echo in echoes {
                total += echo.await.expect("an echo task completed");
            }
            total
        });

        let clients: Vec<_> = (0..CONNS)
            .map(|i| {
                weft::spawn(async move {
                    let len = 1024 + i;
                    let client = TcpStream::connect(addr).await.expect("connect");
                    let (res, _) = client.write_all(pattern(i as u32, len)).await;
                    res.expect("client write_all");
                    client.shutdown(Shutdown::Write).unwrap();
                    let back = read_to_eof(&client, len).await;
                    assert_eq!(back.len(), len, "connection {i} got all its bytes back");
                    check_pattern(i as u32, 0, &back);
                    len
                })
            })
            .collect();
        let mut sent = 0;
        for client in clients {
            sent += timeout(LIMIT, client)
                .await
                .expect("every client finished within the limit")
                .expect("a client task completed");
        }
        assert_eq!(server.await.unwrap(), sent, "the echoes saw every byte");
    });
    drop(limit);
    t.finish();
}
