//! An operation's entry names its socket by fd number, and io_uring entries
//! wait in the submission queue until the worker enters the kernel. A
//! future dropped right after it queued its entry drops its socket too;
//! the next socket opened gets the same number. The stale entry must not
//! reach that socket (found by the soak: connects failing with `EISCONN`,
//! echoes returning another connection's bytes). The socket's fd now
//! closes only once no queued entry can name it.
//!
//! Each scenario repeats 100 times: queue an operation (poll once), drop
//! it and its socket, open the next socket at once (it reuses the fd
//! number) and check that it works as if the first had never been.

mod common;

use std::{net::SocketAddr, pin::pin};

use common::{
    net::{listener, on_each_driver, read_exact, NetRt},
    poll_once,
};
use weft::{io::Driver, net::TcpStream};

const ROUNDS: usize = 100;

on_each_driver!(
    a_dropped_connect_never_connects_the_next_socket,
    a_dropped_write_never_writes_to_the_next_socket,
    sockets_dropped_off_the_workers_close_after_their_entries,
);

/// A connect to `stale` queued (io_uring: pushed, not yet submitted) and
/// dropped with its socket. Under epoll a loopback connect may finish at
/// once; that socket is dropped too.
async fn queue_and_drop_a_connect(stale: SocketAddr) {
    let mut connect = pin!(TcpStream::connect(stale));
    if let Some(res) = poll_once(&mut connect).await {
        drop(res.expect("connect to loopback"));
    }
}

fn a_dropped_connect_never_connects_the_next_socket(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (stale_listener, stale) = listener().await;
        let (fresh_listener, fresh) = listener().await;
        for round in 0..ROUNDS {
            queue_and_drop_a_connect(stale).await;
            let next = TcpStream::connect(fresh).await.unwrap_or_else(|e| {
                panic!("round {round}: the next socket's own connect failed: {e}")
            });
            assert_eq!(
                next.peer_addr().unwrap(),
                fresh,
                "round {round}: connected where its own connect went"
            );
            let (server, peer) = fresh_listener.accept().await.expect("accept");
            assert_eq!(peer, next.local_addr().unwrap());
            drop((next, server));
        }
        drop(stale_listener);
    });
    t.finish();
}

fn a_dropped_write_never_writes_to_the_next_socket(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async {
        let (l, addr) = listener().await;
        for round in 0..ROUNDS {
            let old = TcpStream::connect(addr).await.expect("connect");
            let (old_server, _) = l.accept().await.expect("accept");
            {
                // Large enough not to be sent eagerly in one go.
                let mut write = pin!(old.write_all(vec![0xAA; 4 << 20]));
                let _ = poll_once(&mut write).await;
            }
            drop(old);
            let next = TcpStream::connect(addr).await.expect("connect the next");
            let (next_server, _) = l.accept().await.expect("accept the next");
            let (res, _) = next.write_all(vec![0x55; 64]).await;
            res.expect("write on the next socket");
            let got = read_exact(&next_server, 64).await;
            assert!(
                got.iter().all(|&b| b == 0x55),
                "round {round}: the next connection carried another socket's bytes"
            );
            drop((old_server, next, next_server));
        }
    });
    t.finish();
}

/// The socket's last drop happens on a thread that is no worker (here:
/// `block_on`'s), while the entry sits in a worker's queue or mailbox.
fn sockets_dropped_off_the_workers_close_after_their_entries(driver: Driver) {
    let t = NetRt::new(driver);
    let (stale_listener, stale) = t.block_on(listener());
    let (fresh_listener, fresh) = t.block_on(listener());
    for round in 0..ROUNDS {
        t.block_on(queue_and_drop_a_connect(stale));
        let next = t
            .block_on(TcpStream::connect(fresh))
            .unwrap_or_else(|e| panic!("round {round}: the next socket's own connect failed: {e}"));
        assert_eq!(next.peer_addr().unwrap(), fresh, "round {round}");
        let (server, _) = t.block_on(fresh_listener.accept()).expect("accept");
        drop((next, server));
    }
    drop((stale_listener, fresh_listener));
    t.finish();
}
