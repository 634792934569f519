//! Busy rings: a worker with many operations on its io_uring ring (64 or
//! more) reaps the ring in its idle spin and before it steals, instead of
//! parking in the ring at once (docs/IO.md, "Spinning before parking").
//! These tests put that shape on both drivers: 160 connections, each with
//! a read in flight on the server side and one on the client side, through
//! rounds of requests; then a task deadline and an explicit cancel reaching
//! every pending read while the workers idle. Nothing may be lost (every
//! reply arrives, in order, with its own bytes), cut reads take nothing,
//! and tasks, io ops and fds come back to their baseline.

mod common;

use std::{io, time::Duration};

use common::net::{cancelled_of, listener, on_each_driver, read_exact, wait_io_idle, NetRt};
use weft::{
    cancel::Cause,
    io::Driver,
    net::TcpStream,
    task::{Builder, JoinHandle},
};

/// Connections: 160 reads on the server side and as many on the client
/// side, so at least one worker holds 64 or more ops whatever the split.
const CONNS: usize = 160;
/// Request rounds over every connection.
const ROUNDS: u32 = 20;
/// The deadline of the reads in the deadline phase.
const DEADLINE: Duration = Duration::from_millis(50);

/// The 8-byte request of connection `conn` in round `round`.
fn request(conn: usize, round: u32) -> Vec<u8> {
    let mut bytes = (conn as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&round.to_le_bytes());
    bytes
}

/// `CONNS` connected pairs: `(clients, servers)`.
async fn pairs() -> (Vec<TcpStream>, Vec<TcpStream>) {
    let (listener, addr) = listener().await;
    let mut clients = Vec::with_capacity(CONNS);
    let mut servers = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        clients.push(TcpStream::connect(addr).await.expect("connect"));
        servers.push(listener.accept().await.expect("accept").0);
    }
    (clients, servers)
}

/// Answers each 8-byte request with the same bytes reversed, `ROUNDS`
/// times, then returns the stream.
async fn answer(server: TcpStream) -> TcpStream {
    for _ in 0..ROUNDS {
        let mut got = read_exact(&server, 8).await;
        got.reverse();
        server.write_all(got).await.0.expect("answer write");
    }
    server
}

on_each_driver!(
    many_pending_reads_lose_no_completion,
    a_deadline_and_a_cancel_reach_every_read_of_a_busy_ring,
);

fn many_pending_reads_lose_no_completion(driver: Driver) {
    let t = NetRt::new(driver);
    t.in_task(async move {
        let (clients, servers) = pairs().await;
        let answers: Vec<JoinHandle<TcpStream>> = servers
            .into_iter()
            .map(|s| weft::spawn(answer(s)))
            .collect();
        // Every client waits for its answer from the start of a round, so
        // the rings hold a read per stream on both sides.
        let askers: Vec<JoinHandle<TcpStream>> = clients
            .into_iter()
            .enumerate()
            .map(|(conn, client)| {
                weft::spawn(async move {
                    for round in 0..ROUNDS {
                        client
                            .write_all(request(conn, round))
                            .await
                            .0
                            .expect("request write");
                        let mut want = request(conn, round);
                        want.reverse();
                        assert_eq!(
                            read_exact(&client, 8).await,
                            want,
                            "connection {conn}, round {round}: the answer to its own request"
                        );
                    }
                    client
                })
            })
            .collect();
        let mut streams = Vec::with_capacity(2 * CONNS);
        for asker in askers {
            streams.push(asker.await.expect("a client finished its rounds"));
        }
        for answer in answers {
            streams.push(answer.await.expect("a server finished its rounds"));
        }
        drop(streams);
        wait_io_idle().await;
    });
    t.finish();
}

fn a_deadline_and_a_cancel_reach_every_read_of_a_busy_ring(driver: Driver) {
    let t = NetRt::new(driver);
    let uring = t.rt.io_driver() == Driver::Uring;
    t.in_task(async move {
        let (clients, servers) = pairs().await;
        // Half the reads end at their task's deadline, half at an explicit
        // cancel; no peer ever writes, so nothing else ends them.
        let mut timed = Vec::new();
        let mut cancelled = Vec::new();
        for (i, server) in servers.into_iter().enumerate() {
            let read = async move {
                let (res, buf) = server.read(Vec::with_capacity(64)).await;
                (i, res, buf, server)
            };
            if i % 2 == 0 {
                timed.push(Builder::new().timeout(DEADLINE).spawn(read));
            } else {
                cancelled.push(weft::spawn(read));
            }
        }
        let handle = weft::runtime::Handle::current();
        if uring {
            // Every read is on a ring before the cancels start.
            let mut posted = 0;
            for _ in 0..1000 {
                posted = handle.metrics().io_ops_in_flight;
                if posted >= CONNS {
                    break;
                }
                weft::time::sleep(Duration::from_millis(1)).await.unwrap();
            }
            assert!(posted >= CONNS, "{posted} of {CONNS} reads posted");
        }
        for task in &cancelled {
            assert!(task.cancel(), "the first cancel takes effect");
        }
        let mut servers: Vec<Option<TcpStream>> = (0..CONNS).map(|_| None).collect();
        for (task, cause) in timed
            .into_iter()
            .map(|t| (t, Cause::Deadline))
            .chain(cancelled.into_iter().map(|t| (t, Cause::Explicit)))
        {
            let (i, res, buf, server) = task.await.expect("the read's task returned");
            let err = res.expect_err("no peer wrote: only the cut ends the read");
            let want = match cause {
                Cause::Deadline => io::ErrorKind::TimedOut,
                _ => io::ErrorKind::Interrupted,
            };
            assert_eq!(err.kind(), want, "{err:?}");
            assert_eq!(cancelled_of(&err).cause(), cause, "{err:?}");
            assert!(buf.is_empty(), "a cut read initialises nothing");
            servers[i] = Some(server);
        }
        let servers: Vec<TcpStream> = servers
            .into_iter()
            .map(|s| s.expect("every read's task returned its stream"))
            .collect();
        // The streams still work after the cut: nothing was taken.
        wait_io_idle().await;
        for (client, server) in clients.iter().zip(&servers) {
            client.write_all(b"after".to_vec()).await.0.unwrap();
            assert_eq!(read_exact(server, 5).await, b"after");
        }
        drop((clients, servers));
        wait_io_idle().await;
    });
    t.finish();
}
