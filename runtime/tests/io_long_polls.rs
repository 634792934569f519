//! Long polls: a task whose polls run long (a handler that computes for
//! 50 µs or more before it answers; 1 ms in debug builds) is not kept on its worker by io
//! affinity. When its io wakes it, it goes to a peer that is not in a long
//! poll (or, with none free, to a queue any worker takes from; counted in
//! `long_poll_wakes`), so it does not wait behind another long poll on the
//! worker whose ring or poll carries its socket while the other worker
//! idles. A task with short polls keeps affinity: its io wakes stay on its
//! worker (docs/IO.md, "Long polls").

mod common;

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use common::net::{on_each_driver, std_client_pair, NetRt};
use weft::io::Driver;

on_each_driver!(a_task_that_polls_long_is_queued_for_any_worker);

/// Requests per phase. One poll in 32 (on average) is timed, so the
/// handler is known to poll long after a few dozen heavy requests.
const ROUNDS: u64 = 200;
const HEAVY: u8 = b'h';
/// The work of a heavy request: 4× what marks a task in this build (the
/// mark starts at 50 µs in release builds, at 1 ms in debug ones).
const HEAVY_WORK: Duration = if cfg!(debug_assertions) {
    Duration::from_millis(4)
} else {
    Duration::from_micros(200)
};
const LIGHT: u8 = b'l';

fn spin(work: Duration) {
    let start = Instant::now();
    while start.elapsed() < work {
        std::hint::spin_loop();
    }
}

fn long_poll_wakes(rt: &weft::Runtime) -> u64 {
    rt.metrics().worker.iter().map(|w| w.long_poll_wakes).sum()
}

fn a_task_that_polls_long_is_queued_for_any_worker(driver: Driver) {
    let t = NetRt::with(driver, |builder| builder.worker_threads(2));
    let (mut client, server) = t.block_on(std_client_pair());
    // Answers each byte; a heavy one after `HEAVY_WORK` in the poll.
    let handler = t.rt.spawn(async move {
        loop {
            let (read, buf) = server.read(Vec::with_capacity(1)).await;
            if read.expect("read") == 0 {
                return;
            }
            if buf[0] == HEAVY {
                spin(HEAVY_WORK);
            }
            let (written, _) = server.write_all(buf).await;
            written.expect("write");
        }
    });
    let mut phase = |byte: u8| -> u64 {
        let before = long_poll_wakes(&t.rt);
        for _ in 0..ROUNDS {
            // Lets the handler reach its next read and wait in it, so each
            // request is an io wake. A client that answers at once can
            // have the next byte there before the handler reads again
            // (under epoll the read then succeeds in the same poll, and
            // the handler serves every request in one poll).
            std::thread::sleep(Duration::from_micros(200));
            client.write_all(&[byte]).expect("client write");
            let mut answer = [0u8];
            client.read_exact(&mut answer).expect("client read");
            assert_eq!(answer[0], byte);
        }
        long_poll_wakes(&t.rt) - before
    };
    // A light poll preempted past 50 µs on a loaded machine marks the
    // task for a while, rightly: bounded attempts.
    let mut light = u64::MAX;
    for _attempt in 0..3 {
        light = light.min(phase(LIGHT));
        if light < ROUNDS / 10 {
            break;
        }
    }
    let heavy = phase(HEAVY);
    drop(client);
    t.block_on(handler).expect("the handler ends at EOF");
    assert!(
        light < ROUNDS / 10,
        "{light} of {ROUNDS} short requests were woken as long polls"
    );
    assert!(
        heavy >= ROUNDS / 4,
        "only {heavy} of {ROUNDS} long requests were woken as long polls"
    );
    t.finish();
}
