//! A driver for counting what one TCP echo request costs a server in
//! instructions (`valgrind --tool=callgrind`) or samples (`perf record`),
//! with no criterion around it: the 64-byte echo of the `echo` bench on
//! one server, driven by one client thread that writes a message to every
//! connection and then reads every reply, `ROUNDS` times.
//!
//! ```text
//! echo_profile SERVER CONNS ROUNDS [WORKERS]
//!   SERVER: weft | weft_tpc | tokio | monoio
//! ```
//!
//! Instruction counts of two runs that differ only in `ROUNDS`, divided by
//! the difference in requests, give the instructions per request of the
//! server plus the client's (the same client code for every server), with
//! the setup and shutdown cancelled out; they stay comparable while the
//! machine is loaded, where wall times and CPU clocks do not. Under
//! valgrind the threads run one at a time, so the batches a server sees
//! differ from a free run's; compare servers with each other, not with the
//! bench's figures. `WEFT_IO=epoll` runs the weft servers on epoll.
//!
//! valgrind 3.19 hangs on this machine once a server is on io_uring, so
//! for the io_uring servers use `perf record -e cpu-clock:u` and count the
//! samples of the server's threads (named `srv-*`) per request, or compare
//! the shares of functions within one run, which the host's drift in
//! speed leaves alone.

use std::{
    error::Error,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::{AsRawFd, RawFd},
    time::Instant,
};

const MESSAGE: usize = 64;
const SERVER_BUF: usize = 4096;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, conns, rounds, rest @ ..] = args.as_slice() else {
        return Err("usage: echo_profile weft|weft_tpc|tokio|monoio CONNS ROUNDS [WORKERS]".into());
    };
    let conns: usize = conns.parse().map_err(|e| format!("CONNS: {e}"))?;
    let rounds: usize = rounds.parse().map_err(|e| format!("ROUNDS: {e}"))?;
    let workers: usize = match rest.first() {
        Some(w) => w.parse().map_err(|e| format!("WORKERS: {e}"))?,
        None => 2,
    };
    if conns == 0 || workers == 0 {
        return Err("CONNS and WORKERS must be at least 1".into());
    }
    let running = match server.as_str() {
        "weft" => Running::weft(false, workers)?,
        "weft_tpc" => Running::weft(true, workers)?,
        "tokio" => Running::tokio(workers)?,
        "monoio" => Running::monoio(workers)?,
        other => return Err(format!("unknown server {other:?}").into()),
    };
    let mut streams = (0..conns)
        .map(|_| {
            let s = TcpStream::connect(running.addr())?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut msg = [0u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    let start = Instant::now();
    for round in 0..rounds {
        msg[1] = round as u8;
        for s in &mut streams {
            s.write_all(&msg)?;
        }
        for s in &mut streams {
            s.read_exact(&mut reply)?;
            if reply != msg {
                return Err("the echo came back changed".into());
            }
        }
    }
    let elapsed = start.elapsed();
    drop(streams);
    drop(running);
    println!(
        "{server}: {} requests over {conns} connections in {elapsed:?}",
        conns * rounds
    );
    Ok(())
}

enum Running {
    /// The runtime is held so that dropping `Running` shuts it down.
    Weft(#[allow(dead_code)] weft::Runtime, SocketAddr),
    Tokio(#[allow(dead_code)] tokio::runtime::Runtime, SocketAddr),
    Monoio(SocketAddr, Vec<RawFd>, Vec<std::thread::JoinHandle<()>>),
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Weft(_, a) | Running::Tokio(_, a) | Running::Monoio(a, ..) => *a,
        }
    }

    fn weft(per_core: bool, workers: usize) -> Result<Running, Box<dyn Error>> {
        let builder = if per_core {
            weft::runtime::Builder::new_thread_per_core()
        } else {
            weft::runtime::Builder::new_multi_thread()
        };
        let rt = builder
            .worker_threads(workers)
            .thread_name("srv-weft")
            .build()?;
        let addr = if per_core {
            // One listener per worker on one port, as the bench's and
            // monoio's: the kernel spreads the connections.
            let _enter = rt.enter();
            let mut addr: SocketAddr = "127.0.0.1:0".parse()?;
            for _ in 0..workers {
                let socket = weft::net::TcpSocket::new_v4()?;
                socket.set_reuseport(true)?;
                socket.bind(addr)?;
                let listener = socket.listen(1024)?;
                addr = listener.local_addr()?;
                rt.spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        weft::spawn(weft_echo(stream));
                    }
                });
            }
            addr
        } else {
            let listener = rt.block_on(weft::net::TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?;
            rt.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    weft::spawn(weft_echo(stream));
                }
            });
            addr
        };
        Ok(Running::Weft(rt, addr))
    }

    fn tokio(workers: usize) -> Result<Running, Box<dyn Error>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("srv-tokio")
            .enable_all()
            .build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(tokio_echo(stream));
            }
        });
        Ok(Running::Tokio(rt, addr))
    }

    fn monoio(workers: usize) -> Result<Running, Box<dyn Error>> {
        let mut addr: SocketAddr = "127.0.0.1:0".parse()?;
        let (mut fds, mut threads) = (Vec::new(), Vec::new());
        for _ in 0..workers {
            let (tx, rx) = std::sync::mpsc::channel();
            let bind_to = addr;
            let thread = std::thread::Builder::new().name(format!("srv-monoio-{}", threads.len()));
            threads.push(thread.spawn(move || {
                let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .build()
                    .expect("monoio io_uring runtime");
                rt.block_on(async move {
                    let opts = monoio::net::ListenerOpts::new().reuse_port(true);
                    let listener = monoio::net::TcpListener::bind_with_config(bind_to, &opts)
                        .expect("monoio listener");
                    let _ = tx.send((listener.local_addr().unwrap(), listener.as_raw_fd()));
                    while let Ok((stream, _)) = listener.accept().await {
                        monoio::spawn(monoio_echo(stream));
                    }
                });
            })?);
            let (bound, fd) = rx.recv()?;
            addr = bound;
            fds.push(fd);
        }
        Ok(Running::Monoio(addr, fds, threads))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Monoio(_, fds, threads) = self {
            for fd in fds.iter() {
                // SAFETY: the fd is a monoio thread's listener, open until
                // its accept loop ends, which this shutdown causes.
                unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
            }
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

async fn weft_echo(stream: weft::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(SERVER_BUF);
    loop {
        let (read, b) = stream.read(buf).await;
        buf = b;
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
        let (written, b) = stream.write_all(buf).await;
        buf = b;
        if written.is_err() {
            return;
        }
        buf.clear();
    }
}

async fn tokio_echo(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; SERVER_BUF];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn monoio_echo(mut stream: monoio::net::TcpStream) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(SERVER_BUF);
    loop {
        let (read, b) = stream.read(buf).await;
        buf = b;
        if !matches!(read, Ok(n) if n > 0) {
            return;
        }
        let (written, b) = stream.write_all(buf).await;
        buf = b;
        if written.is_err() {
            return;
        }
        buf.clear();
    }
}
