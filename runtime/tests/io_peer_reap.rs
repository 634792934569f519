//! Under epoll, a worker stuck inside one poll no longer strands the
//! sockets registered with its epoll instance: a peer takes the readiness
//! events waiting there and runs the woken tasks itself (counted in the
//! stuck worker's `io_peer_reaped`). Before, those connections waited for
//! the poll to return, while tasks already queued on the stuck worker were
//! taken by its peers. Under io_uring only a ring's owner can reap it, and
//! the metric stays 0 (docs/IO.md, "A stuck worker's epoll").

mod common;

use std::{
    io::{Read, Write},
    sync::{
        atomic::{AtomicBool, Ordering::SeqCst},
        Arc,
    },
    time::{Duration, Instant},
};

use common::net::NetRt;
use weft::io::Driver;

/// Connections registered with the stuck worker's epoll.
const CONNS: usize = 8;
/// How long the stuck poll lasts: far beyond what a peer needs to notice
/// it (the monitor samples every 250 µs; a peer takes a poll that has not
/// moved for `steal_age`, 20 µs), even in a debug or sanitizer build.
const STUCK: Duration = Duration::from_millis(1500);

fn peer_reaped(rt: &weft::Runtime) -> u64 {
    rt.metrics().worker.iter().map(|w| w.io_peer_reaped).sum()
}

#[test]
fn a_stuck_worker_does_not_strand_its_epoll_sockets() {
    let t = NetRt::new(Driver::Epoll);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut clients = Vec::new();
    let mut accepted = Vec::new();
    for _ in 0..CONNS {
        clients.push(std::net::TcpStream::connect(addr).expect("connect"));
        accepted.push(listener.accept().expect("accept").0);
    }
    let released = Arc::new(AtomicBool::new(false));
    let stuck = {
        let released = released.clone();
        t.rt.spawn(async move {
            // Registered here, with this worker's epoll: the sockets whose
            // readiness only this worker reaped before.
            let mut echoes = Vec::new();
            for std_stream in accepted {
                std_stream.set_nonblocking(true).expect("nonblocking");
                let stream = weft::net::TcpStream::from_std(std_stream).expect("from_std");
                echoes.push(weft::spawn(async move {
                    let mut served = 0;
                    loop {
                        let (read, buf) = stream.read(Vec::with_capacity(16)).await;
                        if read.expect("read") == 0 {
                            return served;
                        }
                        let (written, _) = stream.write_all(buf).await;
                        written.expect("write");
                        served += 1;
                    }
                }));
            }
            // Then stuck in this poll, as a worker preempted for a whole
            // slice (or running a long computation) is.
            std::thread::sleep(STUCK);
            released.store(true, SeqCst);
            echoes
        })
    };
    // The echo tasks are queued behind the stuck poll: a peer takes them
    // (the monitor marks the worker stalled), they read, find nothing and
    // wait on the stuck worker's epoll. Give them the time to get there.
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .set_read_timeout(Some(STUCK * 2))
            .expect("read timeout");
        client.write_all(&[i as u8]).expect("client write");
        let mut answer = [0u8];
        client.read_exact(&mut answer).expect("client read");
        assert_eq!(answer[0], i as u8);
    }
    let answered_in = start.elapsed();
    assert!(
        !released.load(SeqCst),
        "the answers waited for the stuck poll to return ({answered_in:?})"
    );
    assert!(
        peer_reaped(&t.rt) >= 1,
        "a peer answered, but no event was counted as taken from the stuck worker"
    );
    let echoes = t.block_on(stuck).expect("the stuck task ends");
    drop((clients, listener));
    for echo in echoes {
        assert_eq!(t.block_on(echo).expect("echo task"), 1);
    }
    t.finish();
}

#[test]
fn io_uring_rings_are_never_reaped_by_a_peer() {
    let t = NetRt::new(Driver::Auto);
    if t.rt.io_driver() != Driver::Uring {
        // This machine or `WEFT_IO` chose epoll: the test above covers it.
        t.finish();
        return;
    }
    let (mut client, server) = t.block_on(common::net::std_client_pair());
    let echo = t.rt.spawn(async move {
        let (read, buf) = server.read(Vec::with_capacity(16)).await;
        read.expect("read");
        let (written, _) = server.write_all(buf).await;
        written.expect("write");
    });
    client.write_all(b"x").expect("write");
    let mut answer = [0u8];
    client.read_exact(&mut answer).expect("read");
    t.block_on(echo).expect("echo");
    assert_eq!(peer_reaped(&t.rt), 0);
    drop(client);
    t.finish();
}
