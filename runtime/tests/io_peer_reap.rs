//! A worker stuck inside one poll does not strand its io: under epoll a
//! peer takes the readiness events waiting in its epoll instance, under
//! io_uring the completions of the operations on its ring (the
//! work-stealing flavour sets its rings up for that), and runs the woken
//! tasks itself (counted in the stuck worker's `io_peer_reaped`). Before,
//! those connections waited for the poll to return, while tasks already
//! queued on the stuck worker were taken by its peers (docs/IO.md, "A
//! stuck worker's epoll", "Peers reap a busy worker's ring").

mod common;

use std::{
    io::{Read, Write},
    sync::{
        atomic::{AtomicBool, Ordering::SeqCst},
        Arc, Mutex,
    },
    thread::ThreadId,
    time::{Duration, Instant},
};

use common::net::{on_each_driver, NetRt};
use weft::io::Driver;

on_each_driver!(a_stuck_worker_does_not_strand_its_io);

#[test]
fn pooled_receives_on_a_stuck_worker_are_left_to_it_in_order() {
    let t = NetRt::with(Driver::Auto, |builder| builder.worker_threads(2));
    let (listener, mut clients, accepted) = connected();
    let started = Arc::new(Mutex::new(0));
    let stuck = {
        let started = started.clone();
        t.rt.spawn(async move {
            let mut echoes = Vec::new();
            for std_stream in accepted {
                std_stream.set_nonblocking(true).expect("nonblocking");
                let stream = weft::net::TcpStream::from_std(std_stream).expect("from_std");
                let started = started.clone();
                echoes.push(weft::spawn(async move {
                    // A multishot receive (under io_uring with the probe's
                    // blessing), armed on this worker's ring.
                    let mut chunks = stream.recv_stream();
                    *started.lock().unwrap() += 1;
                    let mut echoed = Vec::new();
                    while let Some(chunk) = chunks.recv().await.expect("recv") {
                        echoed.extend_from_slice(&chunk);
                        let (written, _) = stream.write_all(chunk.to_vec()).await;
                        written.expect("write");
                    }
                    echoed
                }));
            }
            while *started.lock().unwrap() < CONNS {
                weft::task::yield_now().await;
            }
            weft::time::sleep(Duration::from_millis(5))
                .await
                .expect("no deadline or cancel here");
            std::thread::sleep(STUCK / 3);
            echoes
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    // Three bytes per connection, sent apart: separate completions, some
    // while the worker is stuck (a peer then leaves them to it, in order).
    for round in 0..3u8 {
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .write_all(&[i as u8 * 3 + round])
                .expect("client write");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .set_read_timeout(Some(STUCK * 2))
            .expect("read timeout");
        let mut answer = [0u8; 3];
        client.read_exact(&mut answer).expect("client read");
        let want = [i as u8 * 3, i as u8 * 3 + 1, i as u8 * 3 + 2];
        assert_eq!(answer, want, "connection {i}");
    }
    let echoes = t.block_on(stuck).expect("the stuck task ends");
    drop((clients, listener));
    for (i, echo) in echoes.into_iter().enumerate() {
        let echoed = t.block_on(echo).expect("echo task");
        assert_eq!(echoed, [i as u8 * 3, i as u8 * 3 + 1, i as u8 * 3 + 2]);
    }
    assert_eq!(
        t.rt.metrics().recv_buffers_out,
        0,
        "a pooled buffer was not given back"
    );
    t.finish();
}

/// Connections registered with the stuck worker's epoll.
const CONNS: usize = 8;
/// Scenarios run before giving up on one that puts echo io on the stuck
/// worker.
const ATTEMPTS: usize = 6;
/// How long the stuck poll lasts: far beyond what a peer needs to notice
/// it (the monitor samples every 250 µs; a peer takes a poll that has not
/// moved for `steal_age`, 20 µs), even in a debug or sanitizer build.
const STUCK: Duration = Duration::from_millis(1500);

/// A listener and `CONNS` connections to it: the client ends and the
/// accepted ones.
fn connected() -> (
    std::net::TcpListener,
    Vec<std::net::TcpStream>,
    Vec<std::net::TcpStream>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut clients = Vec::new();
    let mut accepted = Vec::new();
    for _ in 0..CONNS {
        clients.push(std::net::TcpStream::connect(addr).expect("connect"));
        accepted.push(listener.accept().expect("accept").0);
    }
    (listener, clients, accepted)
}

#[test]
fn io_peer_reap_says_whose_rings_peers_reap() {
    use weft::runtime::Builder;
    // One runtime at a time, and none beside another test's: the others
    // here count open fds.
    let _serial = common::net::serial();
    // MEMBARRIER_CMD_QUERY: the commands this kernel has, as bits (8:
    // MEMBARRIER_CMD_PRIVATE_EXPEDITED). The runtime needs its
    // registration to succeed as well, which a seccomp filter that allows
    // the query could still refuse (none here).
    // SAFETY: plain syscall with integer arguments.
    let commands = unsafe { libc::syscall(libc::SYS_membarrier, 0, 0, 0) };
    let private_expedited = commands > 0 && commands & 8 != 0;
    let switched_off = std::env::var("WEFT_IO_PEER_REAP").as_deref() == Ok("0");
    let stealing = || Builder::new_multi_thread().worker_threads(2);
    // `Auto`: io_uring where it is usable (and `WEFT_IO` does not say
    // epoll), else epoll, whose peers read a stuck worker's epoll instead.
    let rt = stealing().build().expect("runtime");
    let uring = rt.io_driver() == Driver::Uring;
    assert_eq!(
        rt.io_peer_reap(),
        uring && private_expedited && !switched_off,
        "the work-stealing flavour's rings are peer-reaped where membarrier allows"
    );
    drop(rt);
    let driver = if uring { Driver::Uring } else { Driver::Epoll };
    // A case's name and how to build its runtime on `driver`.
    type Case = (&'static str, fn(Driver) -> Builder);
    let others: [Case; 5] = [
        ("io_peer_reap(false)", |d| {
            Builder::new_multi_thread()
                .worker_threads(2)
                .io_driver(d)
                .io_peer_reap(false)
        }),
        ("monitor(false)", |d| {
            Builder::new_multi_thread()
                .worker_threads(2)
                .io_driver(d)
                .monitor(false)
        }),
        ("one worker", |d| {
            Builder::new_multi_thread().worker_threads(1).io_driver(d)
        }),
        ("thread-per-core", |d| {
            Builder::new_thread_per_core()
                .worker_threads(2)
                .io_driver(d)
        }),
        ("current-thread", |d| {
            Builder::new_current_thread().io_driver(d)
        }),
    ];
    for (case, builder) in others {
        let rt = builder(driver).build().expect("runtime");
        assert!(!rt.io_peer_reap(), "{case}: no peer reaps these rings");
        drop(rt);
    }
}

fn peer_reaped(rt: &weft::Runtime) -> u64 {
    rt.metrics().worker.iter().map(|w| w.io_peer_reaped).sum()
}

/// Where one scenario put things: the thread the stuck poll ran on, and
/// the threads whose epoll (registration) or ring (first read) carry the
/// echo sockets' io.
struct Placement {
    stuck_on: ThreadId,
    io_on: Vec<ThreadId>,
}

fn a_stuck_worker_does_not_strand_its_io(driver: Driver) {
    // The scheduler decides where the tasks run, and a peer may take the
    // spawner or the echo tasks before the poll gets stuck: a scenario
    // whose echo io all went elsewhere proves nothing and is run again.
    for _ in 0..ATTEMPTS {
        if stuck_worker_scenario(driver) {
            return;
        }
    }
    panic!("in {ATTEMPTS} attempts no echo socket's io was on the stuck worker");
}

/// One scenario; false if no echo socket's io was on the stuck worker.
fn stuck_worker_scenario(driver: Driver) -> bool {
    let t = NetRt::with(driver, |builder| builder.worker_threads(2));
    // Rings only their worker may reap (`WEFT_IO_PEER_REAP=0`, or a kernel
    // that refused the `membarrier` registration): their io waits for the
    // poll, as docs/IO.md says.
    let owner_only_rings = t.rt.io_driver() == Driver::Uring && !t.rt.io_peer_reap();
    let (listener, mut clients, accepted) = connected();
    let released = Arc::new(AtomicBool::new(false));
    let first_reads = Arc::new(Mutex::new(Vec::new()));
    let stuck = {
        let released = released.clone();
        let first_reads = first_reads.clone();
        t.rt.spawn(async move {
            // Registered here, with this worker's epoll: the sockets whose
            // readiness only this worker reaped before. Under io_uring
            // the echo tasks run here first (the spawner yields to them)
            // and start their reads on this worker's ring.
            let registered_on = std::thread::current().id();
            let mut echoes = Vec::new();
            for std_stream in accepted {
                std_stream.set_nonblocking(true).expect("nonblocking");
                let stream = weft::net::TcpStream::from_std(std_stream).expect("from_std");
                let first_reads = first_reads.clone();
                echoes.push(weft::spawn(async move {
                    first_reads
                        .lock()
                        .unwrap()
                        .push(std::thread::current().id());
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
            while first_reads.lock().unwrap().len() < CONNS {
                weft::task::yield_now().await;
            }
            // A short wait: the worker enters its ring (submitting the
            // reads) before this task comes back.
            weft::time::sleep(Duration::from_millis(5))
                .await
                .expect("no deadline or cancel here");
            // Then stuck in this poll, as a worker preempted for a whole
            // slice (or running a long computation) is.
            let stuck_on = std::thread::current().id();
            std::thread::sleep(STUCK);
            released.store(true, SeqCst);
            (echoes, registered_on, stuck_on)
        })
    };
    // The echo tasks wait for their first byte, on the stuck worker's
    // epoll or ring if that is where their io went; a peer that finds
    // that worker stuck takes its events or completions. Give them the
    // time to get there.
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
    let answered_before_release = !released.load(SeqCst);
    let (echoes, registered_on, stuck_on) = t.block_on(stuck).expect("the stuck task ends");
    let placement = Placement {
        stuck_on,
        io_on: match t.rt.io_driver() {
            Driver::Epoll => vec![registered_on],
            _ => first_reads.lock().unwrap().clone(),
        },
    };
    drop((clients, listener));
    for echo in echoes {
        assert_eq!(t.block_on(echo).expect("echo task"), 1);
    }
    let reaped = peer_reaped(&t.rt);
    t.finish();
    if !placement.io_on.contains(&placement.stuck_on) {
        return false;
    }
    if owner_only_rings {
        assert!(
            !answered_before_release,
            "an owner-only ring's io completed while its worker was stuck: update docs/IO.md"
        );
        return true;
    }
    assert!(
        answered_before_release,
        "the answers waited for the stuck poll to return ({answered_in:?})"
    );
    assert!(
        reaped >= 1,
        "a peer answered, but no event was counted as taken from the stuck worker"
    );
    true
}
