//! Unix domain sockets on both io drivers: echo over a stream through a
//! listener on a path and in the abstract namespace, `pair`, owned and
//! borrowed halves, the futures-io traits; datagrams to a path, over a
//! pair and connected; the fault tests TCP has (peer gone mid-read and
//! mid-write, a read and an accept and a recv ended by a deadline and by
//! an explicit cancel, dropped ops, a connect to a full backlog, accept
//! with no fd free, many connections at once, a runtime dropped with io
//! in flight); bad input (a missing path, a path in
//! use, a path too long). Socket files live in a temp dir removed at the
//! end; every scenario ends with `NetRt::finish`'s leak checks (tasks, io
//! ops in flight, fds).

mod common;

use std::{
    io,
    net::Shutdown,
    path::{Path, PathBuf},
    sync::{
        atomic::{
            AtomicUsize,
            Ordering::{Relaxed, SeqCst},
        },
        Arc,
    },
    time::{Duration, Instant},
};

use common::{
    eventually,
    net::{
        cancelled_of, fd_count, on_each_driver, wait_io_idle, NetRt, NofileLimit, SigpipeDefault,
    },
    Gate, LIMIT,
};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use weft::{
    cancel::Cause,
    io::Driver,
    net::{unix, UnixDatagram, UnixListener, UnixStream},
    task::Builder,
    time::{sleep, timeout},
};

on_each_driver!(
    echo_through_a_listener_on_a_path,
    echo_through_the_abstract_namespace,
    a_pair_with_the_futures_io_traits_and_both_splits,
    datagrams_to_a_path_over_a_pair_and_connected,
    queued_short_datagrams_are_all_received,
    peer_gone_with_unread_data_mid_read_is_connection_reset,
    peer_closed_mid_read_is_eof,
    write_to_a_closed_peer_is_broken_pipe_not_sigpipe,
    a_read_past_its_deadline_times_out_and_the_stream_survives,
    an_explicit_cancel_interrupts_a_blocked_read,
    an_accept_past_its_deadline_times_out,
    an_explicit_cancel_interrupts_a_blocked_accept,
    a_datagram_recv_past_its_deadline_times_out,
    dropped_ops_leak_nothing,
    bad_paths_get_clear_errors,
    a_connect_to_a_full_backlog,
    accept_without_a_free_fd_fails_with_emfile_then_recovers,
    concurrent_connections_echo_through_one_listener,
    dropping_the_runtime_with_io_in_flight_closes_everything,
);

const DEADLINE: Duration = Duration::from_millis(50);

/// What the API promises about threads and traits: everything can move
/// between workers, and the streams and halves have the futures-io traits
/// (and tokio's with `tokio-io`).
#[allow(dead_code)]
fn auto_traits_and_io_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn futures_io<T: futures_util::io::AsyncRead + futures_util::io::AsyncWrite>() {}
    fn futures_read<T: futures_util::io::AsyncRead>() {}
    fn futures_write<T: futures_util::io::AsyncWrite>() {}
    send_sync::<UnixListener>();
    send_sync::<UnixStream>();
    send_sync::<UnixDatagram>();
    send_sync::<unix::OwnedReadHalf>();
    send_sync::<unix::OwnedWriteHalf>();
    send_sync::<unix::ReadHalf<'static>>();
    send_sync::<unix::WriteHalf<'static>>();
    send_sync::<unix::SocketAddr>();
    futures_io::<UnixStream>();
    futures_read::<unix::OwnedReadHalf>();
    futures_read::<unix::ReadHalf<'static>>();
    futures_write::<unix::OwnedWriteHalf>();
    futures_write::<unix::WriteHalf<'static>>();
    #[cfg(feature = "tokio-io")]
    {
        fn tokio_io<T: tokio::io::AsyncRead + tokio::io::AsyncWrite>() {}
        fn tokio_read<T: tokio::io::AsyncRead>() {}
        fn tokio_write<T: tokio::io::AsyncWrite>() {}
        tokio_io::<UnixStream>();
        tokio_read::<unix::OwnedReadHalf>();
        tokio_read::<unix::ReadHalf<'static>>();
        tokio_write::<unix::OwnedWriteHalf>();
        tokio_write::<unix::WriteHalf<'static>>();
        tokio_read::<weft::net::ReadHalf<'static>>();
        tokio_write::<weft::net::WriteHalf<'static>>();
    }
}

/// A fresh directory for socket files, removed (with what is in it) on
/// drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-net-unix-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("creating the temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads from `stream` until `n` bytes arrived (fails on EOF or error).
async fn read_exact(stream: &UnixStream, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..=n {
        if got.len() == n {
            return got;
        }
        let (res, buf) = stream.read(Vec::with_capacity(n - got.len())).await;
        let k = res.expect("read");
        assert!(k > 0, "EOF after {} of {n} bytes", got.len());
        got.extend_from_slice(&buf[..k]);
    }
    panic!("read_exact made no progress")
}

/// Echoes until EOF, then shuts its write side; returns the byte count.
async fn echo(stream: UnixStream, limit: usize) -> usize {
    let mut total = 0;
    for _ in 0..=limit {
        let (res, buf) = stream.read(Vec::with_capacity(16 * 1024)).await;
        let n = res.expect("echo read");
        if n == 0 {
            stream.shutdown(Shutdown::Write).expect("echo shutdown");
            return total;
        }
        total += n;
        assert!(total <= limit, "the echo got more than {limit} bytes");
        stream.write_all(buf).await.0.expect("echo write_all");
    }
    panic!("the echo made no progress")
}

/// A client sends `len` bytes of a pattern through an echo server at
/// `path` and reads them all back, in order.
async fn echo_round_trip(listener: UnixListener, path: PathBuf, len: usize) {
    let server = weft::spawn(async move {
        let (stream, peer) = listener.accept().await.expect("accept");
        assert!(peer.is_unnamed(), "the client never bound: {peer:?}");
        echo(stream, len).await
    });
    let client = UnixStream::connect(&path).await.expect("connect");
    assert!(client.local_addr().unwrap().is_unnamed());
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let (reader, writer) = client.into_split();
    let writing = weft::spawn(async move {
        writer.write_all(data).await.0.expect("client write_all");
        writer.shutdown().expect("client shutdown");
    });
    let mut got = Vec::with_capacity(len);
    for _ in 0..=len {
        let (res, buf) = reader.read(Vec::with_capacity(64 * 1024)).await;
        match res.expect("client read") {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    writing.await.unwrap();
    assert_eq!(server.await.unwrap(), len, "the server echoed every byte");
    assert_eq!(got.len(), len);
    assert!(
        got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8),
        "the bytes came back in order"
    );
}

fn echo_through_a_listener_on_a_path(driver: Driver) {
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let path = dir.path("echo.sock");
    t.in_task(async move {
        let listener = UnixListener::bind(&path).expect("bind");
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        assert_eq!(
            listener
                .local_addr()
                .unwrap()
                .to_std()
                .unwrap()
                .as_pathname(),
            Some(path.as_path())
        );
        assert!(path.exists(), "bind creates the socket file");
        echo_round_trip(listener, path.clone(), 1 << 20).await;
        std::fs::remove_file(&path).unwrap();
    });
    drop(dir);
    t.finish();
}

fn echo_through_the_abstract_namespace(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async move {
        let name = format!("weft-test-{}-{driver:?}", std::process::id());
        let path = PathBuf::from(format!("\0{name}"));
        let listener = UnixListener::bind(&path).expect("bind abstract");
        let addr = listener.local_addr().unwrap();
        assert_eq!(addr.as_abstract_name(), Some(name.as_bytes()));
        assert_eq!(addr.as_pathname(), None);
        assert!(addr.to_std().is_none());
        echo_round_trip(listener, path, 64 * 1024).await;
    });
    t.finish();
}

fn a_pair_with_the_futures_io_traits_and_both_splits(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        assert!(a.peer_addr().unwrap().is_unnamed());

        // futures-io both ways.
        AsyncWriteExt::write_all(&mut a, b"hello").await.unwrap();
        let mut five = [0u8; 5];
        AsyncReadExt::read_exact(&mut b, &mut five).await.unwrap();
        assert_eq!(&five, b"hello");

        // Borrowed halves: read and write at once in one task.
        {
            // `UnixStream::split`, not `b.split()`: with futures'
            // `AsyncReadExt` in scope that is its by-value `split`.
            let (rb, mut wb) = UnixStream::split(&mut b);
            let ((), got) = futures_util::future::join(
                async {
                    AsyncWriteExt::write_all(&mut wb, b"from b").await.unwrap();
                    AsyncWriteExt::flush(&mut wb).await.unwrap();
                },
                async {
                    let mut buf = [0u8; 6];
                    AsyncReadExt::read_exact(&mut a, &mut buf).await.unwrap();
                    buf
                },
            )
            .await;
            assert_eq!(&got, b"from b");
            a.write_all(b"to rb".to_vec()).await.0.unwrap();
            let (n, buf) = rb.read(Vec::with_capacity(5)).await;
            assert_eq!(&buf[..n.unwrap()], b"to rb");
        }

        // Owned halves in different tasks, then back together.
        let (rh, wh) = b.into_split();
        let writer = weft::spawn(async move {
            wh.write_all(b"owned".to_vec()).await.0.unwrap();
            wh
        });
        assert_eq!(read_exact(&a, 5).await, b"owned");
        let wh = writer.await.unwrap();
        a.write_all(b"back".to_vec()).await.0.unwrap();
        let (n, buf) = rh.read(Vec::with_capacity(4)).await;
        assert_eq!(&buf[..n.unwrap()], b"back");

        // Halves of different streams do not reunite; their own do.
        let (c, _d) = UnixStream::pair().unwrap();
        let (crh, cwh) = c.into_split();
        let unix::ReuniteError(rh, cwh) = rh.reunite(cwh).expect_err("different streams");
        drop((crh, cwh));
        let b = rh.reunite(wh).expect("its own halves");

        // EOF after the peer closes.
        drop(a);
        let (res, _) = b.read(Vec::with_capacity(8)).await;
        assert_eq!(res.unwrap(), 0);
    });
    t.finish();
}

fn datagrams_to_a_path_over_a_pair_and_connected(driver: Driver) {
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let (pa, pb) = (dir.path("a.sock"), dir.path("b.sock"));
    t.in_task(async move {
        let a = UnixDatagram::bind(&pa).expect("bind a");
        let b = UnixDatagram::bind(&pb).expect("bind b");
        let (res, _) = a.send_to(b"one".to_vec(), &pb).await;
        assert_eq!(res.unwrap(), 3);
        let (res, buf) = b.recv_from(Vec::with_capacity(16)).await;
        let (n, from) = res.unwrap();
        assert_eq!(&buf[..n], b"one");
        assert_eq!(from.as_pathname(), Some(pa.as_path()), "the sender's path");

        // A datagram longer than the buffer is truncated to it.
        b.send_to(b"0123456789".to_vec(), &pa).await.0.unwrap();
        let (res, buf) = a.recv_from(Vec::with_capacity(4)).await;
        assert_eq!(res.unwrap().0, 4);
        assert_eq!(buf, b"0123");

        // Unbound sender, connected: send/recv without addresses.
        let c = UnixDatagram::unbound().unwrap();
        c.connect(&pa).unwrap();
        assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(pa.as_path()));
        c.send(b"conn".to_vec()).await.0.unwrap();
        let (res, buf) = a.recv_from(Vec::with_capacity(16)).await;
        let (n, from) = res.unwrap();
        assert_eq!(&buf[..n], b"conn");
        assert!(from.is_unnamed(), "an unbound sender: {from:?}");

        // A pair.
        let (x, y) = UnixDatagram::pair().unwrap();
        x.send(b"pair".to_vec()).await.0.unwrap();
        let (res, buf) = y.recv(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..res.unwrap()], b"pair");
        let err = UnixDatagram::unbound().unwrap().peer_addr().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    });
    drop(dir);
    t.finish();
}

fn queued_short_datagrams_are_all_received(driver: Driver) {
    // Several datagrams shorter than the buffer queue up before the first
    // recv: each recv must get the next one without new traffic (a short
    // datagram says nothing about the queue behind it).
    let t = NetRt::new(driver);
    t.in_task(async {
        let (x, y) = UnixDatagram::pair().unwrap();
        for i in 0..8u8 {
            x.send(vec![i; 3]).await.0.unwrap();
        }
        for i in 0..8u8 {
            let (res, buf) = y.recv(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 3);
            assert_eq!(buf, vec![i; 3]);
        }
    });
    t.finish();
}

fn peer_gone_with_unread_data_mid_read_is_connection_reset(driver: Driver) {
    // A Unix stream's "reset": the peer closes with bytes it never read.
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = UnixStream::pair().unwrap();
        server.write_all(b"unread".to_vec()).await.0.unwrap();
        let reading = weft::spawn(async move {
            let (res, _) = server.read(Vec::with_capacity(64)).await;
            (res, server)
        });
        sleep(Duration::from_millis(20)).await.unwrap();
        assert!(!reading.is_finished(), "the read waits for data");
        drop(client);
        let (res, server) = reading.await.unwrap();
        let err = res.expect_err("a read across the peer's reset fails");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
        let (res, _) = server.read(Vec::with_capacity(64)).await;
        assert!(matches!(&res, Ok(0)) || res.is_err(), "then: {res:?}");
    });
    t.finish();
}

fn peer_closed_mid_read_is_eof(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = UnixStream::pair().unwrap();
        let reading = weft::spawn(async move { server.read(Vec::with_capacity(64)).await.0 });
        sleep(Duration::from_millis(20)).await.unwrap();
        assert!(!reading.is_finished());
        drop(client);
        assert_eq!(reading.await.unwrap().unwrap(), 0, "a clean close is EOF");
    });
    t.finish();
}

fn write_to_a_closed_peer_is_broken_pipe_not_sigpipe(driver: Driver) {
    let t = NetRt::new(driver);
    let _sigpipe = SigpipeDefault::new();
    t.in_task(async {
        let (client, server) = UnixStream::pair().unwrap();
        // A write blocked on a full socket, then the peer goes away.
        let writing = weft::spawn(async move { server.write_all(vec![7u8; 16 << 20]).await.0 });
        sleep(Duration::from_millis(50)).await.unwrap();
        assert!(!writing.is_finished(), "nobody reads: the write blocks");
        drop(client);
        let err = writing.await.unwrap().expect_err("the peer is gone");
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

fn a_read_past_its_deadline_times_out_and_the_stream_survives(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let (res, server) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move { (server.read(Vec::with_capacity(64)).await.0, server) })
            .await
            .unwrap();
        let err = res.expect_err("the read outlived its deadline");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        assert!(cancelled_of(&err).is_deadline());
        assert!(started.elapsed() >= DEADLINE - Duration::from_millis(10));

        wait_io_idle().await;
        client.write_all(b"late".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&server, 4).await, b"late");
    });
    t.finish();
}

fn an_explicit_cancel_interrupts_a_blocked_read(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (client, server) = UnixStream::pair().unwrap();
        let reading = Gate::new();
        let task = {
            let reading = reading.clone();
            weft::spawn(async move {
                reading.open();
                let (first, _) = server.read(Vec::with_capacity(64)).await;
                (first, server)
            })
        };
        reading.wait().await;
        sleep(Duration::from_millis(20)).await.unwrap();
        assert!(!task.is_finished());
        assert!(task.cancel());
        let (res, server) = task.await.unwrap();
        let err = res.expect_err("the blocked read is interrupted");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);

        wait_io_idle().await;
        client.write_all(b"after".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&server, 5).await, b"after");
    });
    t.finish();
}

fn an_accept_past_its_deadline_times_out(driver: Driver) {
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let path = dir.path("deadline.sock");
    t.in_task(async move {
        let listener = UnixListener::bind(&path).unwrap();
        let (res, listener) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move { (listener.accept().await.map(|_| ()), listener) })
            .await
            .unwrap();
        let err = res.expect_err("nobody connects: the accept times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        assert!(cancelled_of(&err).is_deadline());

        wait_io_idle().await;
        let client = UnixStream::connect(&path).await.unwrap();
        let (server, _) = listener.accept().await.expect("accept afterwards");
        client.write_all(b"hi".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&server, 2).await, b"hi");
    });
    drop(dir);
    t.finish();
}

fn an_explicit_cancel_interrupts_a_blocked_accept(driver: Driver) {
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let path = dir.path("cancel.sock");
    t.in_task(async move {
        let listener = UnixListener::bind(&path).unwrap();
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
        assert!(!task.is_finished());
        assert!(task.cancel());
        let (res, listener) = task.await.unwrap();
        let err = res.expect_err("the blocked accept is interrupted");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);

        wait_io_idle().await;
        let _client = UnixStream::connect(&path).await.unwrap();
        listener.accept().await.expect("accept afterwards");
    });
    drop(dir);
    t.finish();
}

fn a_datagram_recv_past_its_deadline_times_out(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (x, y) = UnixDatagram::pair().unwrap();
        let (res, y) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move { (y.recv(Vec::with_capacity(16)).await.0, y) })
            .await
            .unwrap();
        let err = res.expect_err("nothing sent: the recv times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        assert!(cancelled_of(&err).is_deadline());
        let (res, y) = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move { (y.recv_from(Vec::with_capacity(16)).await.0, y) })
            .await
            .unwrap();
        let err = res.expect_err("nothing sent: the recv_from times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");

        wait_io_idle().await;
        x.send(b"now".to_vec()).await.0.unwrap();
        let (res, buf) = y.recv(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..res.unwrap()], b"now");
    });
    t.finish();
}

fn dropped_ops_leak_nothing(driver: Driver) {
    // Op futures dropped mid-flight (a read, an accept, a recv): the
    // drivers let go of them, and NetRt::finish sees no fd or op left.
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let path = dir.path("dropped.sock");
    t.in_task(async move {
        let listener = UnixListener::bind(&path).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (x, y) = UnixDatagram::pair().unwrap();
        for _ in 0..10 {
            let read = weft::time::timeout(Duration::from_millis(2), b.read(vec![0u8; 16])).await;
            assert!(read.is_err(), "nothing to read: the timeout wins");
            let accept = weft::time::timeout(Duration::from_millis(2), listener.accept()).await;
            assert!(accept.is_err(), "nobody connects: the timeout wins");
            let recv = weft::time::timeout(Duration::from_millis(2), y.recv(vec![0u8; 16])).await;
            assert!(recv.is_err(), "nothing sent: the timeout wins");
        }
        wait_io_idle().await;
        a.write_all(b"still".to_vec()).await.0.unwrap();
        assert_eq!(read_exact(&b, 5).await, b"still");
        x.send(b"dgram".to_vec()).await.0.unwrap();
        let (res, buf) = y.recv(Vec::with_capacity(16)).await;
        assert_eq!(&buf[..res.unwrap()], b"dgram");
    });
    drop(dir);
    t.finish();
}

fn bad_paths_get_clear_errors(driver: Driver) {
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let (missing, taken, stale) = (
        dir.path("missing.sock"),
        dir.path("taken.sock"),
        dir.path("stale.sock"),
    );
    t.in_task(async move {
        let err = UnixStream::connect(&missing).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err:?}");

        let _listener = UnixListener::bind(&taken).unwrap();
        let err = UnixListener::bind(&taken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err:?}");
        let err = UnixDatagram::bind(&taken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err:?}");

        // A socket file nobody listens on any more.
        drop(UnixListener::bind(&stale).unwrap());
        let err = UnixStream::connect(&stale).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");

        let too_long = Path::new("/tmp").join("x".repeat(200));
        let err = UnixListener::bind(&too_long).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let err = UnixStream::connect(&too_long).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");

        let x = UnixDatagram::unbound().unwrap();
        let (res, buf) = x.send_to(b"lost".to_vec(), &missing).await;
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(buf, b"lost", "the buffer comes back");
        assert_eq!(
            x.connect(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    });
    drop(dir);
    t.finish();
}

/// A listener whose backlog holds one pending connection, with that one
/// taken by a connected client.
fn full_listener(path: &Path) -> (UnixListener, UnixStream) {
    let raw = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    raw.bind(&socket2::SockAddr::unix(path).unwrap()).unwrap();
    raw.listen(0).unwrap();
    let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(
        std::os::fd::OwnedFd::from(raw),
    ))
    .unwrap();
    let first = std::os::unix::net::UnixStream::connect(path).expect("the backlog's one place");
    (listener, UnixStream::from_std(first).unwrap())
}

fn a_connect_to_a_full_backlog(driver: Driver) {
    // Under epoll the non-blocking connect fails at once with `WouldBlock`
    // (as mio's and so tokio's do: nothing signals when the backlog has
    // room); under io_uring the connect waits in the kernel until there is
    // room, or the deadline or a cancel ends it.
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let path = dir.path("full.sock");
    let uring = t.rt.io_driver() == Driver::Uring;
    t.in_task(async move {
        let (listener, _first) = full_listener(&path);
        let target = path.clone();
        let res = Builder::new()
            .timeout(DEADLINE)
            .spawn(async move { UnixStream::connect(&target).await.map(drop) })
            .await
            .unwrap();
        let err = res.expect_err("the backlog is full");
        if uring {
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
            assert!(cancelled_of(&err).is_deadline());
        } else {
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err:?}");
        }
        if uring {
            // An explicit cancel ends the wait too.
            let target = path.clone();
            let task = weft::spawn(async move { UnixStream::connect(&target).await.map(drop) });
            sleep(Duration::from_millis(20)).await.unwrap();
            assert!(!task.is_finished(), "the connect waits for room");
            assert!(task.cancel());
            let err = task.await.unwrap().expect_err("cancelled");
            assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
            assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);
        }
        wait_io_idle().await;
        // Room again: the next connect goes through.
        let (_taken, _) = listener.accept().await.unwrap();
        let _second = UnixStream::connect(&path)
            .await
            .expect("room in the backlog");
    });
    drop(dir);
    t.finish();
}

fn accept_without_a_free_fd_fails_with_emfile_then_recovers(driver: Driver) {
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let path = dir.path("emfile.sock");
    t.in_task(async move {
        // One full round first, so the drivers hold every fd they open
        // lazily before the limit bites.
        {
            let (a, b) = UnixStream::pair().unwrap();
            a.write_all(b"w".to_vec()).await.0.unwrap();
            assert_eq!(read_exact(&b, 1).await, b"w");
        }
        let listener = UnixListener::bind(&path).unwrap();
        let limit = NofileLimit::set_soft(fd_count() as u64 + 16);
        let mut fillers = Vec::new();
        for _ in 0..10_000 {
            match std::fs::File::open("/dev/null") {
                Ok(f) => fillers.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e:?}");
                    break;
                }
            }
        }
        // One fd for the client; its connect completes from the backlog.
        drop(fillers.pop());
        let client =
            std::os::unix::net::UnixStream::connect(&path).expect("connect with the last fd");
        // Unix accept takes the fd before it dequeues the connection: the
        // error leaves the connection waiting.
        let err = timeout(Duration::from_millis(500), listener.accept())
            .await
            .expect("an accept with no fd fails at once")
            .map(drop)
            .expect_err("no fd for the accepted socket");
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err:?}");
        drop(fillers);
        let (server, _) = listener.accept().await.expect("accept after EMFILE");
        server.write_all(b"!".to_vec()).await.0.unwrap();
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut &client, &mut byte).unwrap();
        assert_eq!(&byte, b"!");
        drop(limit);
    });
    drop(dir);
    t.finish();
}

fn concurrent_connections_echo_through_one_listener(driver: Driver) {
    const CONNS: usize = 200;
    let t = NetRt::new(driver);
    let limit =
        (NofileLimit::soft() < 4 * CONNS as u64).then(|| NofileLimit::set_soft(4 * CONNS as u64));
    let dir = TempDir::new();
    let path = dir.path("many.sock");
    t.in_task(async move {
        let listener = UnixListener::bind(&path).unwrap();
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
                let path = path.clone();
                weft::spawn(async move {
                    let len = 1024 + i;
                    let data: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
                    let client = UnixStream::connect(&path).await.expect("connect");
                    client
                        .write_all(data.clone())
                        .await
                        .0
                        .expect("client write_all");
                    client.shutdown(Shutdown::Write).unwrap();
                    let mut back = Vec::new();
                    for _ in 0..=len {
                        let (res, buf) = client.read(Vec::with_capacity(4096)).await;
                        match res.expect("client read") {
                            0 => break,
                            n => back.extend_from_slice(&buf[..n]),
                        }
                    }
                    assert_eq!(back, data, "connection {i} got its bytes back in order");
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
    drop(dir);
    t.finish();
}

fn dropping_the_runtime_with_io_in_flight_closes_everything(driver: Driver) {
    let t = NetRt::new(driver);
    let dir = TempDir::new();
    let path = dir.path("shutdown.sock");
    let (results_tx, results) = std::sync::mpsc::channel();
    let started = Arc::new(AtomicUsize::new(0));
    let (peers, servers, listener, datagram) = t.in_task(async move {
        let mut peers = Vec::new();
        let mut servers = Vec::new();
        // The peers are std sockets: weft sockets registered with a
        // worker's epoll would keep its epoll fd open after the runtime.
        for _ in 0..5 {
            let (peer, server) = std::os::unix::net::UnixStream::pair().unwrap();
            peers.push(peer);
            servers.push(UnixStream::from_std(server).unwrap());
        }
        let (d_peer, datagram) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let datagram = UnixDatagram::from_std(datagram).unwrap();
        (
            peers,
            servers,
            (UnixListener::bind(&path).unwrap(), d_peer),
            datagram,
        )
    });
    let (listener, d_peer) = listener;
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
        let (accept_started, recv_started) = (started.clone(), started.clone());
        t.rt.spawn(async move {
            accept_started.fetch_add(1, SeqCst);
            let _ = listener.accept().await;
        });
        t.rt.spawn(async move {
            recv_started.fetch_add(1, SeqCst);
            let _ = datagram.recv(Vec::with_capacity(8)).await;
        });
    }
    drop(results_tx);
    assert!(
        eventually(|| started.load(SeqCst) == 7),
        "every task started"
    );
    std::thread::sleep(Duration::from_millis(20));
    // The test still holds the 5 stream peers and the datagram peer.
    t.finish_by_dropping(peers.len() + 1);
    for res in results.try_iter() {
        let err = res.expect_err("a read ended by shutdown");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Shutdown);
    }
    drop((peers, d_peer));
    drop(dir);
}
