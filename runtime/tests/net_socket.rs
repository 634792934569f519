//! The `TcpSocket` builder and `lookup_host`, on both io drivers.
//!
//! `TcpSocket`: every option set before `listen`/`connect` is read back
//! from the kernel (through the builder's getters and, after it became a
//! listener or a stream, through socket2 on the weft socket's fd);
//! `SO_REUSEPORT` lets two listeners share a port and without it the
//! second bind fails; a client bound to a local address connects from it;
//! a refused connect and `listen` outside a runtime fail cleanly.
//!
//! `lookup_host`: `localhost` resolves (string and pair), a literal needs
//! no lookup, an invalid name and a missing port are errors, and a lookup
//! stuck behind a busy blocking pool is ended by its deadline and by an
//! explicit cancel (the late answer is dropped, nothing leaks).

mod common;

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{
    net::{cancelled_of, on_each_driver, NetRt},
    Gate, LIMIT,
};
use socket2::SockRef;
use weft::{
    cancel::Cause,
    io::Driver,
    net::{lookup_host, TcpListener, TcpSocket, TcpStream},
    task::Builder,
    time::sleep,
};

on_each_driver!(
    options_set_on_the_builder_reach_the_kernel,
    reuseport_shares_a_port_and_its_absence_refuses_it,
    a_client_bound_first_connects_from_its_address,
    v6_listen_and_connect,
    a_refused_connect_is_an_error,
    localhost_resolves,
    literals_need_no_lookup,
    bad_names_are_errors,
    a_lookup_past_its_deadline_times_out,
    an_explicit_cancel_interrupts_a_lookup,
);

const BUF: u32 = 64 * 1024;

fn options_set_on_the_builder_reach_the_kernel(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let socket = TcpSocket::new_v4().unwrap();
        // The defaults first, so the sets below are seen to change them.
        assert!(!socket.reuseport().unwrap());
        assert!(!socket.nodelay().unwrap());
        assert_eq!(socket.linger().unwrap(), None);

        socket.set_reuseaddr(true).unwrap();
        socket.set_reuseport(true).unwrap();
        socket.set_send_buffer_size(BUF).unwrap();
        socket.set_recv_buffer_size(BUF).unwrap();
        socket.set_nodelay(true).unwrap();
        socket.set_linger(Some(Duration::from_secs(3))).unwrap();
        socket.set_keepalive(true).unwrap();
        assert!(socket.reuseaddr().unwrap());
        assert!(socket.reuseport().unwrap());
        // Linux doubles the size it is given.
        assert!(socket.send_buffer_size().unwrap() >= BUF);
        assert!(socket.recv_buffer_size().unwrap() >= BUF);
        assert!(socket.nodelay().unwrap());
        assert_eq!(socket.linger().unwrap(), Some(Duration::from_secs(3)));
        assert!(socket.keepalive().unwrap());

        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let listener = socket.listen(16).unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);
        let fd = SockRef::from(&listener);
        assert!(fd.reuse_address().unwrap());
        assert!(fd.reuse_port().unwrap());
        assert!(fd.recv_buffer_size().unwrap() >= BUF as usize);
        assert!(fd.is_listener().unwrap(), "listen reached the kernel");

        let client = TcpSocket::new_v4().unwrap();
        client.set_nodelay(true).unwrap();
        client.set_linger(Some(Duration::from_secs(1))).unwrap();
        client.set_send_buffer_size(BUF).unwrap();
        let (stream, accepted) =
            futures_util::future::join(client.connect(addr), listener.accept()).await;
        let stream = stream.unwrap();
        let (server, peer) = accepted.unwrap();
        assert_eq!(peer, stream.local_addr().unwrap());
        assert!(
            stream.nodelay().unwrap(),
            "the connection keeps TCP_NODELAY"
        );
        let fd = SockRef::from(&stream);
        assert_eq!(fd.linger().unwrap(), Some(Duration::from_secs(1)));
        assert!(fd.send_buffer_size().unwrap() >= BUF as usize);

        // The sockets work.
        stream.write_all(b"opt".to_vec()).await.0.unwrap();
        let (n, buf) = server.read(Vec::with_capacity(8)).await;
        assert_eq!(&buf[..n.unwrap()], b"opt");
    });
    t.finish();
}

fn reuseport_shares_a_port_and_its_absence_refuses_it(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let listen = |reuseport: bool, addr: SocketAddr| -> io::Result<TcpListener> {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseport(reuseport)?;
            socket.bind(addr)?;
            socket.listen(8)
        };
        let first = listen(true, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = listen(true, addr).expect("SO_REUSEPORT on both: the port is shared");
        assert_eq!(second.local_addr().unwrap(), addr);
        let err = listen(false, addr).expect_err("without SO_REUSEPORT the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err:?}");
        // Connections reach one of the two.
        let client = TcpStream::connect(addr).await.unwrap();
        drop(client);
    });
    t.finish();
}

fn a_client_bound_first_connects_from_its_address(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        let client = TcpSocket::new_v4().unwrap();
        client.set_reuseaddr(true).unwrap();
        client.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let from = client.local_addr().unwrap();
        assert_ne!(from.port(), 0, "bind picked a port");
        let stream = client.connect(target).await.unwrap();
        assert_eq!(stream.local_addr().unwrap(), from);
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, from);
    });
    t.finish();
}

fn v6_listen_and_connect(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let socket = TcpSocket::new_v6().unwrap();
        socket
            .bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0))
            .unwrap();
        let listener = socket.listen(4).unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.is_ipv6());
        let stream = TcpSocket::new_v6().unwrap().connect(addr).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, stream.local_addr().unwrap());
        // A v4 address on a v6 socket is the kernel's error, not a panic.
        let err = TcpSocket::new_v6()
            .unwrap()
            .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
    });
    t.finish();
}

fn a_refused_connect_is_an_error(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        // A port that was just free: bound, its address taken, closed.
        let addr = {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            socket.local_addr().unwrap()
        };
        let err = TcpSocket::new_v4()
            .unwrap()
            .connect(addr)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
    });
    // Outside any runtime the builder works until it needs a driver.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let err = socket
        .listen(4)
        .expect_err("no runtime to hand the socket to");
    assert!(err.to_string().contains("outside a weft runtime"), "{err}");
    t.finish();
}

fn localhost_resolves(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let addrs: Vec<SocketAddr> = lookup_host("localhost:80").await.unwrap().collect();
        assert!(!addrs.is_empty(), "localhost has an address");
        assert!(
            addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()),
            "{addrs:?}"
        );
        let host = String::from("localhost");
        let pair: Vec<SocketAddr> = lookup_host((host.as_str(), 443)).await.unwrap().collect();
        assert!(
            pair.iter().all(|a| a.port() == 443 && a.ip().is_loopback()),
            "{pair:?}"
        );
        let owned: Vec<SocketAddr> = lookup_host(format!("{host}:8080")).await.unwrap().collect();
        assert!(owned.iter().any(|a| a.port() == 8080));
    });
    t.finish();
}

fn literals_need_no_lookup(driver: Driver) {
    // With the only blocking thread busy, a lookup that needed it would
    // wait: literals answer at once.
    let t = NetRt::with(driver, |b| b.max_blocking_threads(1));
    t.in_task(async {
        let (release, blocker) = busy_blocking_pool();
        let addrs: Vec<SocketAddr> = lookup_host("127.0.0.1:8080").await.unwrap().collect();
        assert_eq!(addrs, ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
        let addrs: Vec<SocketAddr> = lookup_host(("::1", 9)).await.unwrap().collect();
        assert_eq!(addrs, ["[::1]:9".parse::<SocketAddr>().unwrap()]);
        let addr: SocketAddr = "10.1.2.3:4".parse().unwrap();
        assert_eq!(lookup_host(addr).await.unwrap().collect::<Vec<_>>(), [addr]);
        release.send(()).unwrap();
        blocker.await.unwrap();
    });
    t.finish();
}

fn bad_names_are_errors(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        // `.invalid` never resolves (RFC 6761); the resolver says so (or
        // that it could not ask), an error either way.
        let res = lookup_host("no-such-host.invalid:80").await;
        assert!(
            res.is_err(),
            "an invalid name resolved: {:?}",
            res.map(|a| a.collect::<Vec<_>>())
        );
        let err = lookup_host("localhost").await.err().expect("no port");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
        let err = lookup_host("localhost:http")
            .await
            .err()
            .expect("a port name is no port");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err:?}");
    });
    t.finish();
}

/// Occupies the runtime's blocking pool (built with one thread) until the
/// sender is used or dropped: a lookup queued behind it waits.
fn busy_blocking_pool() -> (mpsc::Sender<()>, weft::task::JoinHandle<()>) {
    let (release, wait) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let blocker = weft::spawn_blocking(move || {
        started_tx.send(()).unwrap();
        let _ = wait.recv_timeout(LIMIT);
    });
    started_rx.recv_timeout(LIMIT).expect("the blocker started");
    (release, blocker)
}

fn a_lookup_past_its_deadline_times_out(driver: Driver) {
    const DEADLINE: Duration = Duration::from_millis(50);
    let t = NetRt::with(driver, |b| b.max_blocking_threads(1));
    t.in_task(async {
        let (release, blocker) = busy_blocking_pool();
        let started = Instant::now();
        let res = Builder::new()
            .timeout(DEADLINE)
            .spawn(async { lookup_host("localhost:80").await.map(|a| a.count()) })
            .await
            .unwrap();
        let waited = started.elapsed();
        let err = res.expect_err("the pool is busy: only the deadline ends the wait");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
        assert!(cancelled_of(&err).is_deadline());
        assert!(waited >= DEADLINE - Duration::from_millis(10), "{waited:?}");
        assert!(
            waited < LIMIT / 2,
            "the deadline ended it, not the blocker: {waited:?}"
        );

        // Freed, the pool runs the abandoned lookup and drops its answer;
        // a new lookup works.
        release.send(()).unwrap();
        blocker.await.unwrap();
        assert!(lookup_host("localhost:80").await.unwrap().count() > 0);
    });
    t.finish();
}

fn an_explicit_cancel_interrupts_a_lookup(driver: Driver) {
    let t = NetRt::with(driver, |b| b.max_blocking_threads(1));
    t.in_task(async {
        let (release, blocker) = busy_blocking_pool();
        let waiting = Gate::new();
        let task = {
            let waiting = waiting.clone();
            weft::spawn(async move {
                waiting.open();
                lookup_host("localhost:80").await.map(|a| a.count())
            })
        };
        waiting.wait().await;
        sleep(Duration::from_millis(20)).await.unwrap();
        assert!(!task.is_finished(), "the lookup waits for the pool");
        assert!(task.cancel());
        let err = task.await.unwrap().expect_err("the cancel ends the lookup");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted, "{err:?}");
        assert_eq!(cancelled_of(&err).cause(), Cause::Explicit);
        release.send(()).unwrap();
        blocker.await.unwrap();
    });
    t.finish();
}
