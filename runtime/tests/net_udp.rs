//! UDP on both io drivers: `send_to`/`recv_from` with the sender's address,
//! datagram boundaries and truncation, empty datagrams, `connect` with
//! `send`/`recv` (and the filtering and errors that come with it), short
//! datagrams queued before a `recv`, and a ping-pong of many rounds. Each scenario runs on the default runtime and
//! on one forced to each driver, and ends with the leak checks of
//! `NetRt::finish`.

mod common;

use std::{io, net::SocketAddr};

use common::net::{on_each_driver, NetRt, LOOPBACK};
use weft::{io::Driver, net::UdpSocket};

on_each_driver!(
    send_to_and_recv_from,
    datagram_boundaries_and_truncation,
    empty_datagrams,
    connect_then_send_and_recv,
    a_connected_socket_only_hears_its_peer,
    unconnected_send_and_peer_addr_fail,
    ping_pong_rounds,
    queued_short_datagrams_are_all_received,
);

#[allow(dead_code)]
fn auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<UdpSocket>();
    async fn ops(socket: UdpSocket, to: SocketAddr) {
        let recv = socket.recv_from(Vec::new());
        send(&recv);
        drop(recv);
        let sent = socket.send_to(Vec::new(), to);
        send(&sent);
    }
    let _ = ops;
}

async fn bound() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind(LOOPBACK).await.expect("bind udp loopback");
    let addr = socket.local_addr().expect("local_addr");
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0);
    (socket, addr)
}

fn send_to_and_recv_from(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (a, a_addr) = bound().await;
        let (b, b_addr) = bound().await;

        let (res, sent) = a.send_to(b"hello".to_vec(), b_addr).await;
        assert_eq!(res.expect("send_to"), 5);
        assert_eq!(sent, b"hello", "send_to hands the buffer back");

        let (res, buf) = b.recv_from(Vec::with_capacity(64)).await;
        let (n, from) = res.expect("recv_from");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, a_addr, "recv_from reports the sender");

        // And back, with a boxed slice.
        b.send_to(b"world".to_vec().into_boxed_slice(), from)
            .await
            .0
            .expect("reply");
        let (res, buf) = a.recv_from(vec![0u8; 64]).await;
        let (n, from) = res.expect("recv_from the reply");
        assert_eq!(&buf[..n], b"world");
        assert_eq!(from, b_addr);
    });
    t.finish();
}

fn datagram_boundaries_and_truncation(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (a, _) = bound().await;
        let (b, b_addr) = bound().await;
        let sizes = [1usize, 100, 1000, 8000];
        for (i, &size) in sizes.iter().enumerate() {
            let datagram = vec![i as u8 + 1; size];
            let (res, _) = a.send_to(datagram, b_addr).await;
            assert_eq!(res.expect("send_to"), size);
        }
        // Each recv takes exactly one datagram, however large the buffer.
        for (i, &size) in sizes.iter().enumerate().take(3) {
            let (res, buf) = b.recv_from(Vec::with_capacity(16 * 1024)).await;
            let (n, _) = res.expect("recv_from");
            assert_eq!(n, size, "datagram {i} arrives whole and alone");
            assert!(buf[..n].iter().all(|&x| x == i as u8 + 1));
        }
        // A buffer smaller than the datagram gets its head; the rest is
        // discarded and the next recv gets the next datagram.
        let (res, buf) = b.recv_from(Vec::with_capacity(10)).await;
        let (n, _) = res.expect("recv_from into a small buffer");
        assert_eq!(n, buf.capacity(), "the buffer is filled with the head");
        assert!(buf[..n].iter().all(|&x| x == 4));
        a.send_to(b"next".to_vec(), b_addr).await.0.unwrap();
        let (res, buf) = b.recv_from(Vec::with_capacity(64)).await;
        let (n, _) = res.unwrap();
        assert_eq!(&buf[..n], b"next", "the truncated tail was discarded");
    });
    t.finish();
}

fn empty_datagrams(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (a, a_addr) = bound().await;
        let (b, b_addr) = bound().await;
        let (res, _) = a.send_to(Vec::new(), b_addr).await;
        assert_eq!(res.expect("send_to of an empty datagram"), 0);
        a.send_to(b"x".to_vec(), b_addr).await.0.unwrap();
        // For UDP, Ok(0) is an empty datagram, not an end of stream.
        let (res, _) = b.recv_from(Vec::with_capacity(16)).await;
        assert_eq!(res.expect("recv_from"), (0, a_addr));
        let (res, buf) = b.recv_from(Vec::with_capacity(16)).await;
        let (n, _) = res.unwrap();
        assert_eq!(&buf[..n], b"x");
    });
    t.finish();
}

fn connect_then_send_and_recv(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (a, a_addr) = bound().await;
        let (b, b_addr) = bound().await;
        a.connect(b_addr).await.expect("connect");
        assert_eq!(a.peer_addr().expect("peer_addr after connect"), b_addr);
        assert_eq!(a.local_addr().unwrap(), a_addr, "connect keeps the port");

        let (res, sent) = a.send(b"via send".to_vec()).await;
        assert_eq!(res.expect("send"), 8);
        assert_eq!(sent, b"via send");
        let (res, buf) = b.recv_from(Vec::with_capacity(64)).await;
        let (n, from) = res.unwrap();
        assert_eq!((&buf[..n], from), (&b"via send"[..], a_addr));

        b.connect(a_addr).await.expect("connect back");
        b.send(b"via recv".to_vec()).await.0.unwrap();
        let (res, buf) = a.recv(Vec::with_capacity(64)).await;
        let n = res.expect("recv");
        assert_eq!(&buf[..n], b"via recv");

        // Reconnecting points the socket elsewhere.
        let (c, c_addr) = bound().await;
        a.connect(c_addr).await.expect("reconnect");
        assert_eq!(a.peer_addr().unwrap(), c_addr);
        a.send(b"to c".to_vec()).await.0.unwrap();
        let (res, buf) = c.recv_from(Vec::with_capacity(64)).await;
        let (n, from) = res.unwrap();
        assert_eq!((&buf[..n], from), (&b"to c"[..], a_addr));
    });
    t.finish();
}

fn a_connected_socket_only_hears_its_peer(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (a, a_addr) = bound().await;
        let (b, b_addr) = bound().await;
        let (intruder, _) = bound().await;
        a.connect(b_addr).await.unwrap();

        intruder
            .send_to(b"intruder".to_vec(), a_addr)
            .await
            .0
            .unwrap();
        b.send_to(b"peer".to_vec(), a_addr).await.0.unwrap();
        let (res, buf) = a.recv(Vec::with_capacity(64)).await;
        let n = res.unwrap();
        assert_eq!(&buf[..n], b"peer", "datagrams from others are filtered out");
    });
    t.finish();
}

fn unconnected_send_and_peer_addr_fail(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (a, _) = bound().await;
        let err = a
            .peer_addr()
            .expect_err("an unconnected socket has no peer");
        assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err:?}");
        let (res, buf) = a.send(b"nowhere".to_vec()).await;
        assert!(res.is_err(), "send without connect must fail: {res:?}");
        assert_eq!(buf, b"nowhere", "the buffer comes back on error");

        let err = UdpSocket::bind("not an address")
            .await
            .expect_err("binding garbage fails");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let (_held, held_addr) = bound().await;
        let err = UdpSocket::bind(held_addr)
            .await
            .expect_err("binding a bound address again fails");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err:?}");
    });
    t.finish();
}

fn ping_pong_rounds(driver: Driver) {
    const ROUNDS: u32 = 1000;
    let t = NetRt::new(driver);
    t.in_task(async {
        let (pinger, pinger_addr) = bound().await;
        let (ponger, ponger_addr) = bound().await;
        pinger.connect(ponger_addr).await.unwrap();
        ponger.connect(pinger_addr).await.unwrap();

        // The ponger answers each counter with its successor; one datagram
        // in flight at a time, so loopback does not drop any.
        let ponging = weft::spawn(async move {
            let mut buf = Vec::with_capacity(4);
            for round in 0..ROUNDS {
                let (res, b) = ponger.recv(buf).await;
                assert_eq!(res.expect("pong recv"), 4);
                let n = u32::from_le_bytes(b[..4].try_into().unwrap());
                assert_eq!(n, 2 * round, "ping {round} carries its count");
                let (res, b) = ponger.send((n + 1).to_le_bytes().to_vec()).await;
                assert_eq!(res.expect("pong send"), 4);
                buf = b;
                buf.clear();
            }
            ponger
        });
        let mut next = 0u32;
        for round in 0..ROUNDS {
            let (res, _) = pinger.send(next.to_le_bytes().to_vec()).await;
            assert_eq!(res.expect("ping send"), 4);
            let (res, b) = pinger.recv(Vec::with_capacity(4)).await;
            assert_eq!(res.expect("ping recv"), 4);
            let n = u32::from_le_bytes(b[..4].try_into().unwrap());
            assert_eq!(n, next + 1, "pong {round} answers ping {round}");
            next = n + 1;
        }
        assert_eq!(next, 2 * ROUNDS);
        ponging.await.expect("the ponger completed");
    });
    t.finish();
}

fn queued_short_datagrams_are_all_received(driver: Driver) {
    // Datagrams shorter than the buffer queue up before the first `recv`:
    // each `recv` gets the next without new traffic (under epoll a short
    // datagram must not clear readiness as a short stream read does).
    let t = NetRt::new(driver);
    t.in_task(async {
        let (a, a_addr) = bound().await;
        let (b, b_addr) = bound().await;
        a.connect(b_addr).await.unwrap();
        b.connect(a_addr).await.unwrap();
        for i in 0..8u8 {
            a.send(vec![i; 3]).await.0.unwrap();
        }
        for i in 0..8u8 {
            let (res, buf) = b.recv(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 3);
            assert_eq!(buf, vec![i; 3]);
        }
    });
    t.finish();
}
