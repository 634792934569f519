//! Registered files (docs/IO.md, "Registered files"): a socket that has
//! started 8 operations from a worker gets a slot in that worker's ring
//! and gives it back when it is dropped, on the worker or off it; the
//! connection then closes (the table must not keep it open); a full table
//! leaves sockets on their fds and they still work; a registered socket's
//! read ends at its task's deadline and at an explicit cancel, and the
//! socket works after; nothing is leaked (slots, fds). Under epoll (`WEFT_IO=epoll`) no slot is ever used and
//! the same programs pass.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr},
    sync::mpsc,
    time::{Duration, Instant},
};

use weft::{
    io::Driver,
    net::{TcpListener, TcpStream},
    Runtime,
};

const MESSAGE: usize = 64;
const ROUNDS: usize = 40;

/// The tests count the process's fds: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime(slots: u32) -> Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .io_registered_files(slots)
        .build()
        .unwrap()
}

/// Slots the test expects a busy socket to hold: 1 under io_uring, 0
/// under epoll.
fn per_socket(rt: &Runtime) -> usize {
    usize::from(rt.io_driver() == Driver::Uring)
}

fn slots(rt: &Runtime) -> usize {
    rt.metrics().io_registered_files
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Waits (at most 5 s) until `done`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `ROUNDS` round trips of `MESSAGE` bytes over a weft stream.
async fn ping(stream: &TcpStream, tag: u8) {
    let mut buf = Vec::with_capacity(MESSAGE);
    for round in 0..ROUNDS {
        let msg = vec![tag.wrapping_add(round as u8); MESSAGE];
        let (written, _) = stream.write_all(msg.clone()).await;
        written.unwrap();
        let mut got = Vec::new();
        while got.len() < MESSAGE {
            buf.clear();
            let (read, b) = stream.read(buf).await;
            buf = b;
            let n = read.unwrap();
            assert!(n > 0, "the echo server closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, msg, "round {round} came back wrong");
    }
}

/// A stream connected to `addr` and pinged from a task on `rt`'s worker
/// (so it has done its operations there), handed back to the caller.
fn busy_stream(rt: &Runtime, addr: SocketAddr, tag: u8) -> TcpStream {
    rt.block_on(rt.spawn(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        ping(&stream, tag).await;
        stream
    }))
    .unwrap()
}

/// A blocking std read that goes on after `EINTR` (a signal to the
/// process, which the sanitizer runs send, interrupts it).
fn read_retrying(conn: &mut std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match conn.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A std echo server on its own thread for one connection; sends `true`
/// once the connection reached EOF (the client's socket really closed).
fn std_echo_server() -> (SocketAddr, mpsc::Receiver<bool>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let eof = loop {
            match read_retrying(&mut conn, &mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    if conn.write_all(&buf[..n]).is_err() {
                        break false;
                    }
                }
                Err(_) => break false,
            }
        };
        let _ = tx.send(eof);
    });
    (addr, rx)
}

#[test]
fn a_busy_socket_gets_a_slot_and_its_connection_closes_when_it_is_dropped() {
    let _serial = serial();
    let rt = runtime(1024);
    let fds_before = open_fds();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (checked_tx, checked_rx) = mpsc::channel::<()>();
    let server = rt.spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::with_capacity(4096);
        for _ in 0..ROUNDS {
            buf.clear();
            let (read, b) = stream.read(buf).await;
            buf = b;
            assert_eq!(read.unwrap(), MESSAGE);
            let (written, b) = stream.write_all(buf).await;
            buf = b;
            written.unwrap();
        }
        // Hold the stream until the test has seen its slot.
        weft::task::spawn_blocking(move || checked_rx.recv())
            .await
            .unwrap()
            .unwrap();
        // Dropped here, on the worker: the slot goes back at once and the
        // client sees the end of the stream.
    });
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = [0u8; MESSAGE];
    for round in 0..ROUNDS {
        let msg = [round as u8; MESSAGE];
        client.write_all(&msg).unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(reply, msg);
    }
    assert_eq!(
        slots(&rt),
        per_socket(&rt),
        "the server's socket holds a slot"
    );
    checked_tx.send(()).unwrap();
    assert_eq!(
        read_retrying(&mut client, &mut reply).unwrap(),
        0,
        "the server's socket closed although it had a slot"
    );
    rt.block_on(server).unwrap();
    wait_until("the slot is back", || slots(&rt) == 0);
    drop(client);
    wait_until("the fds are back", || open_fds() == fds_before);
}

#[test]
fn a_socket_dropped_off_the_workers_gives_its_slot_back() {
    let _serial = serial();
    let rt = runtime(1024);
    let (addr, closed) = std_echo_server();
    // Registered on the worker, then handed to this thread.
    let stream = busy_stream(&rt, addr, 1);
    assert_eq!(slots(&rt), per_socket(&rt));
    drop(stream);
    wait_until("the slot is back", || slots(&rt) == 0);
    assert!(
        closed.recv_timeout(Duration::from_secs(5)).unwrap(),
        "the echo server saw an error instead of the end of the stream"
    );
}

#[test]
fn a_full_table_leaves_sockets_on_their_fds() {
    let _serial = serial();
    let rt = runtime(1);
    let (a, a_closed) = std_echo_server();
    let (b, b_closed) = std_echo_server();
    let (seen_tx, seen_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let task = rt.spawn(async move {
        let first = TcpStream::connect(a).await.unwrap();
        let second = TcpStream::connect(b).await.unwrap();
        // Both busy at once, through one slot.
        weft::join!(ping(&first, 10), ping(&second, 20));
        seen_tx.send(()).unwrap();
        weft::task::spawn_blocking(move || go_rx.recv())
            .await
            .unwrap()
            .unwrap();
        // Both keep working: the one with the slot and the one without.
        weft::join!(ping(&first, 30), ping(&second, 40));
    });
    seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(slots(&rt), per_socket(&rt), "one slot, one socket in it");
    go_tx.send(()).unwrap();
    rt.block_on(task).unwrap();
    wait_until("the slot is back", || slots(&rt) == 0);
    for closed in [a_closed, b_closed] {
        assert!(closed.recv_timeout(Duration::from_secs(5)).unwrap());
    }
}

#[test]
fn no_slots_with_registered_files_off() {
    let _serial = serial();
    let rt = runtime(0);
    let (addr, closed) = std_echo_server();
    let stream = busy_stream(&rt, addr, 5);
    assert_eq!(slots(&rt), 0);
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(closed.recv_timeout(Duration::from_secs(5)).unwrap());
}

#[test]
fn a_table_over_32768_slots_is_refused() {
    let err = weft::runtime::Builder::new_multi_thread()
        .io_registered_files(40_000)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "io_registered_files must be at most 32768, got 40000"
    );
}

/// The cause of a read's cancellation error.
fn cancel_cause(read: std::io::Result<usize>) -> Option<weft::cancel::Cause> {
    let err = read.err()?;
    let cancelled = err.get_ref()?.downcast_ref::<weft::cancel::Cancelled>()?;
    Some(cancelled.cause())
}

#[test]
fn a_registered_sockets_wait_ends_at_a_deadline_and_at_a_cancel_and_it_works_after() {
    let _serial = serial();
    let rt = runtime(1024);
    let (addr, closed) = std_echo_server();
    let stream = busy_stream(&rt, addr, 7);
    assert_eq!(slots(&rt), per_socket(&rt));
    // A read with nothing to read, in a task with a 50 ms deadline.
    let (stream, read) = rt
        .block_on(async move {
            weft::task::Builder::new()
                .timeout(Duration::from_millis(50))
                .spawn(async move {
                    let (read, _) = stream.read(Vec::with_capacity(MESSAGE)).await;
                    (stream, read)
                })
                .await
        })
        .unwrap();
    assert_eq!(cancel_cause(read), Some(weft::cancel::Cause::Deadline));
    // The same read, its scope cancelled while it waits.
    let (stream, read) = rt
        .block_on(async move {
            let waiting = weft::cancel::scope(async move {
                let (read, _) = stream.read(Vec::with_capacity(MESSAGE)).await;
                (stream, read)
            });
            let handle = waiting.handle();
            let task = weft::spawn(waiting);
            weft::time::sleep(Duration::from_millis(10)).await.unwrap();
            handle.cancel();
            task.await
        })
        .unwrap();
    assert_eq!(cancel_cause(read), Some(weft::cancel::Cause::Explicit));
    // Nothing was lost: the stream still echoes, through its slot.
    let stream = rt
        .block_on(rt.spawn(async move {
            ping(&stream, 9).await;
            stream
        }))
        .unwrap();
    assert_eq!(slots(&rt), per_socket(&rt));
    drop(stream);
    wait_until("the slot is back", || slots(&rt) == 0);
    assert!(closed.recv_timeout(Duration::from_secs(5)).unwrap());
}
