//! Io consolidation: on a lightly loaded 2-worker runtime the connections
//! gather on one worker (a worker that its own io woke hands the woken
//! tasks to a peer with a lower index, and their next operations go to
//! that peer's ring), so a request wakes one worker, not two. The metric
//! `io_handoffs` counts the tasks handed over. Under epoll a socket's
//! readiness stays with the poller of the worker that accepted it, so the
//! connections of one accept loop wake one worker already (no hand-off
//! needed); the test checks the outcome on both drivers. Sockets made off
//! the workers (a `block_on` accept loop) all register with the first
//! worker's poll, which the epoll test below checks. Without the
//! hand-off, the io_uring runs split the polls about evenly (when the
//! placers did spread the connections; a loaded machine may let one worker
//! steal them all first, and then there is nothing to gather).

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream as StdTcpStream},
    sync::{Arc, Barrier},
    time::Duration,
};

use common::net::{echo, listener, on_each_driver, NetRt};
use weft::io::Driver;

on_each_driver!(light_load_gathers_connections_on_one_worker);

/// Under epoll a socket's readiness stays with the poll it was registered
/// with. Sockets made off the workers (a `block_on` accept loop) all go to
/// the first worker's poll, so one worker is woken per burst, not both
/// (docs/IO.md, "Io consolidation"). The echo tasks are accepted and
/// spawned by `block_on`; registered round-robin, as before 2026-12-04,
/// each worker's poll dispatched half the events here (600 and 600).
#[test]
fn epoll_sockets_made_off_the_workers_share_the_first_workers_poll() {
    let t = NetRt::new(Driver::Epoll);
    let (listener, addr) = t.block_on(listener());
    let connected = Arc::new(Barrier::new(CONNS));
    let window = Arc::new(Barrier::new(CONNS + 1));
    let clients: Vec<_> = (0..CONNS)
        .map(|_| {
            let (connected, window) = (connected.clone(), window.clone());
            std::thread::spawn(move || client(addr, connected, window))
        })
        .collect();
    let echoes = t.block_on(async move {
        let mut echoes = Vec::new();
        for _ in 0..CONNS {
            let (stream, _) = listener.accept().await.expect("accept");
            echoes.push(weft::spawn(echo(stream, 1 << 20)));
        }
        echoes
    });
    let completions = |rt: &weft::Runtime| -> Vec<u64> {
        rt.metrics()
            .worker
            .iter()
            .map(|w| w.io_completions)
            .collect()
    };
    window.wait();
    let before = completions(&t.rt);
    window.wait();
    window.wait();
    let after = completions(&t.rt);
    for client in clients {
        client.join().expect("a client thread");
    }
    for echo in echoes {
        t.block_on(echo).expect("the echo task");
    }
    // Readiness events each worker's poll dispatched in the window.
    let per_worker: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = per_worker.iter().sum();
    assert!(
        total >= (CONNS * MEASURED_ROUNDS) as u64,
        "every measured request was a readiness event: {per_worker:?}"
    );
    assert_eq!(
        per_worker[1..].iter().sum::<u64>(),
        0,
        "only the first worker's poll sees these sockets: {per_worker:?}"
    );
    t.finish();
}

const CONNS: usize = 8;
/// Requests per connection before the measured window, and in it.
const WARM_UP_ROUNDS: usize = 200;
const MEASURED_ROUNDS: usize = 150;

/// One blocking client: connects, then `WARM_UP_ROUNDS` light requests
/// (64 bytes, wait for the echo, pause 1 ms), the two barriers around the
/// measured window, `MEASURED_ROUNDS` more, and a close.
fn client(addr: SocketAddr, connected: Arc<Barrier>, window: Arc<Barrier>) {
    let mut stream = StdTcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    connected.wait();
    let mut round = |i: usize| {
        let request = [i as u8; 64];
        stream.write_all(&request).expect("request");
        let mut reply = [0u8; 64];
        stream.read_exact(&mut reply).expect("reply");
        assert_eq!(reply, request, "the echo answers with the request");
        std::thread::sleep(Duration::from_millis(1));
    };
    (0..WARM_UP_ROUNDS).for_each(&mut round);
    window.wait(); // the window opens
    window.wait();
    (0..MEASURED_ROUNDS).for_each(&mut round);
    window.wait(); // the window closes
}

fn light_load_gathers_connections_on_one_worker(driver: Driver) {
    let t = NetRt::new(driver);
    let (listener, addr) = t.block_on(listener());
    let server = t.rt.spawn(async move {
        let mut streams = Vec::new();
        for _ in 0..CONNS {
            streams.push(listener.accept().await.expect("accept").0);
        }
        // Half of the echo tasks are spawned from each worker: two placer
        // tasks meet at a barrier (so they run at once, one per worker),
        // each spawns its half into its own queue, and they meet again
        // before either worker can go looking for the other's. Each echo's
        // first read then goes to its own worker's ring or poller.
        let placed = Arc::new(Barrier::new(2));
        let mut halves = Vec::new();
        for _ in 0..2 {
            let half: Vec<_> = streams.drain(..CONNS / 2).collect();
            let placed = placed.clone();
            halves.push(weft::spawn(async move {
                placed.wait();
                let echoes: Vec<_> = half
                    .into_iter()
                    .map(|stream| weft::spawn(echo(stream, 1 << 20)))
                    .collect();
                placed.wait();
                echoes
            }));
        }
        for half in halves {
            for echo in half.await.expect("a placer task") {
                echo.await.expect("the echo task");
            }
        }
    });
    let connected = Arc::new(Barrier::new(CONNS));
    let window = Arc::new(Barrier::new(CONNS + 1));
    let clients: Vec<_> = (0..CONNS)
        .map(|_| {
            let (connected, window) = (connected.clone(), window.clone());
            std::thread::spawn(move || client(addr, connected, window))
        })
        .collect();
    let polls =
        |rt: &weft::Runtime| -> Vec<u64> { rt.metrics().worker.iter().map(|w| w.polls).collect() };
    window.wait();
    let before = polls(&t.rt);
    window.wait();
    window.wait();
    let after = polls(&t.rt);
    for client in clients {
        client.join().expect("a client thread");
    }
    t.block_on(server).expect("the server task");

    let per_worker: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = per_worker.iter().sum();
    let most = *per_worker.iter().max().expect("two workers");
    assert!(
        total >= (CONNS * MEASURED_ROUNDS) as u64,
        "every measured request polled its echo task: {per_worker:?}"
    );
    // Without consolidation each worker keeps the connections it started
    // with (about half each, on io_uring).
    let handoffs: Vec<u64> =
        t.rt.metrics()
            .worker
            .iter()
            .map(|w| w.io_handoffs)
            .collect();
    assert!(
        most * 10 >= total * 9,
        "one worker ran at least 90% of the polls in the measured window ({:?}): \
         {per_worker:?}, tasks handed off per worker {handoffs:?}",
        t.rt.io_driver()
    );
    // Every hand-off goes to a lower index.
    assert_eq!(handoffs[0], 0, "worker 0 has no peer below it");
    t.finish();
}
