//! A dropped `TcpListener` gives its port back when `drop` returns, on both
//! io drivers: a server that restarts its listener on the same port (a
//! config reload, a test binding a fixed port) must not trip on
//! `EADDRINUSE`. Under io_uring the listener's multishot accept holds the
//! socket inside the kernel until the accept ends; the listener's drop
//! (and `close().await`) end it before returning.
//!
//! Each scenario binds a fixed port 100 times in a row: bind, accept one
//! connection, drop (or close) the listener, bind the same port again at
//! once, with a raw socket without `SO_REUSEADDR` (the strictest check: any
//! socket still bound to the port refuses it) and with weft's own bind
//! (which sets `SO_REUSEADDR`: only a socket still listening refuses it).
//! The listener is dropped in the task that accepted, on a thread outside
//! the runtime, and in another task (which may run on the other worker).

mod common;

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::fd::{FromRawFd, OwnedFd},
};

use common::net::{on_each_driver, read_to_eof, NetRt};
use weft::{
    io::Driver,
    net::{TcpListener, TcpStream},
};

const ROUNDS: usize = 100;

on_each_driver!(
    dropped_in_its_task_frees_the_port_for_a_raw_bind,
    dropped_in_its_task_frees_the_port_for_a_reuseaddr_bind,
    dropped_outside_the_runtime_frees_the_port,
    dropped_in_another_task_frees_the_port,
    close_frees_the_port,
    dropped_before_any_accept_frees_the_port,
);

/// A port on loopback that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding loopback, port 0")
        .port()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Binds a raw TCP socket to `port` on loopback without `SO_REUSEADDR` and
/// listens; dropped at once. Any socket still bound to the port (listening
/// or not) makes this fail with `EADDRINUSE`.
fn raw_bind_and_listen(port: u16) -> io::Result<()> {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid sockaddr_in and its size, on our live fd.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain syscall on our live fd.
    if unsafe { libc::listen(fd, 16) } < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(sock);
    Ok(())
}

/// Binds `port`, accepts one connection from a std client and serves it to
/// the end. The client closes first, so the connection's TIME_WAIT is on
/// the client's port, not on `port`.
async fn bind_and_accept_once(port: u16, round: usize) -> TcpListener {
    let listener = TcpListener::bind(addr(port))
        .await
        .unwrap_or_else(|e| panic!("round {round}: weft bind of port {port}: {e}"));
    let client = std::net::TcpStream::connect(addr(port)).expect("std connect to loopback");
    let (server, peer) = listener.accept().await.expect("accept");
    assert_eq!(peer, client.local_addr().unwrap());
    drop(client);
    assert!(read_to_eof(&server, 0).await.is_empty());
    drop(server);
    listener
}

/// `rebind` right after the listener went: the raw bind or weft's bind.
#[derive(Clone, Copy)]
enum Rebind {
    Raw,
    Weft,
}

async fn rebind(port: u16, how: Rebind, round: usize) {
    match how {
        Rebind::Raw => raw_bind_and_listen(port).unwrap_or_else(|e| {
            panic!("round {round}: raw bind (no SO_REUSEADDR) of port {port} right after drop: {e}")
        }),
        Rebind::Weft => drop(TcpListener::bind(addr(port)).await.unwrap_or_else(|e| {
            panic!("round {round}: weft bind (SO_REUSEADDR) of port {port} right after drop: {e}")
        })),
    }
}

fn dropped_in_its_task(driver: Driver, how: Rebind) {
    let t = NetRt::new(driver);
    let port = free_port();
    t.in_task(async move {
        for round in 0..ROUNDS {
            let listener = bind_and_accept_once(port, round).await;
            drop(listener);
            rebind(port, how, round).await;
        }
    });
    t.finish();
}

fn dropped_in_its_task_frees_the_port_for_a_raw_bind(driver: Driver) {
    dropped_in_its_task(driver, Rebind::Raw);
}

fn dropped_in_its_task_frees_the_port_for_a_reuseaddr_bind(driver: Driver) {
    dropped_in_its_task(driver, Rebind::Weft);
}

fn dropped_outside_the_runtime_frees_the_port(driver: Driver) {
    let t = NetRt::new(driver);
    let port = free_port();
    for round in 0..ROUNDS {
        let listener = t.in_task(bind_and_accept_once(port, round));
        // This thread is no worker: the listener's ring belongs to one.
        drop(listener);
        raw_bind_and_listen(port).unwrap_or_else(|e| {
            panic!("round {round}: raw bind of port {port} right after a drop off the workers: {e}")
        });
    }
    t.finish();
}

fn dropped_in_another_task_frees_the_port(driver: Driver) {
    let t = NetRt::new(driver);
    let port = free_port();
    t.in_task(async move {
        for round in 0..ROUNDS {
            let listener = bind_and_accept_once(port, round).await;
            weft::spawn(async move {
                drop(listener);
                raw_bind_and_listen(port)
            })
            .await
            .expect("the dropping task completed")
            .unwrap_or_else(|e| {
                panic!("round {round}: raw bind of port {port} right after a drop in another task: {e}")
            });
        }
    });
    t.finish();
}

fn close_frees_the_port(driver: Driver) {
    let t = NetRt::new(driver);
    let port = free_port();
    t.in_task(async move {
        for round in 0..ROUNDS {
            let listener = bind_and_accept_once(port, round).await;
            listener.close().await.expect("close in a live scope");
            rebind(port, Rebind::Raw, round).await;
        }
    });
    t.finish();
}

fn dropped_before_any_accept_frees_the_port(driver: Driver) {
    let t = NetRt::new(driver);
    let port = free_port();
    t.in_task(async move {
        for round in 0..ROUNDS {
            let listener = TcpListener::bind(addr(port)).await.expect("bind");
            drop(listener);
            rebind(port, Rebind::Raw, round).await;
        }
    });
    t.finish();
}

/// Connections the kernel queued but nobody accepted are reset when the
/// listener goes, and a connect after the drop is refused: the socket no
/// longer listens.
fn queued_connections_are_reset_and_new_ones_refused(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = listener.local_addr().unwrap();
        // Arm the accept (under io_uring: the multishot) with one client.
        let first = std::net::TcpStream::connect(a).expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        // Queued in the backlog (or in the multishot's queue), never taken.
        let queued = TcpStream::connect(a).await.expect("connect to the backlog");
        drop(listener);
        let err = TcpStream::connect(a)
            .await
            .expect_err("a connect after the drop is refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        let (res, _) = queued.read(Vec::with_capacity(16)).await;
        match res {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("the queued connection was closed by the drop, got {other:?}"),
        }
        drop((first, server));
    });
    t.finish();
}

on_each_driver!(queued_connections_are_reset_and_new_ones_refused);
