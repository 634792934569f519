//! Buffered line io over one loopback TCP connection, on weft with
//! io_uring, weft with epoll, and tokio (2 worker threads each).
//!
//! - `lines/read_line`: a client task writes `LINES` lines of 16–79 bytes
//!   (in 64 KiB writes, then shuts its side down); the server reads them
//!   with `read_line` into one reused `String` through an 8 KiB buffer
//!   (weft: `weft::io::BufReader` on the native api; tokio:
//!   `tokio::io::BufReader` with `AsyncBufReadExt::read_line`).
//! - `lines/buf_writer`: the server writes the same lines one `write_all`
//!   each through an 8 KiB `BufWriter` and flushes at the end; the client
//!   task reads and counts the bytes.
//!
//! One criterion iteration is one connection carrying all the lines
//! (connect and accept included), run as a spawned task (so weft's ops go
//! through a worker's own ring), and the throughput line is lines per
//! second. Run with `cargo bench -p weft-benches --bench lines`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

const LINES: usize = 20_000;
const WORKERS: usize = 2;
const CHUNK: usize = 64 * 1024;

/// The lines, concatenated: lengths cycle through 16..80 bytes.
fn payload() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..LINES {
        let len = 16 + i % 64;
        let head = format!("SET k{i} ");
        out.extend_from_slice(head.as_bytes());
        out.extend(std::iter::repeat_n(
            b'v',
            len.saturating_sub(head.len() + 1),
        ));
        out.push(b'\n');
    }
    out
}

fn weft_rt(driver: weft::io::Driver) -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .io_driver(driver)
        .build()
        .expect("a weft runtime")
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A connected pair on `rt`: (client, server).
async fn weft_pair() -> (weft::net::TcpStream, weft::net::TcpStream) {
    let listener = weft::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = weft::net::TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

async fn tokio_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

async fn weft_read_lines(data: &'static [u8]) {
    let (client, server) = weft_pair().await;
    let writer = weft::spawn(async move {
        for chunk in data.chunks(CHUNK) {
            let (res, _) = client.write_all(chunk.to_vec()).await;
            res.unwrap();
        }
        client.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut reader = weft::io::BufReader::new(server);
    let mut line = String::new();
    let mut lines = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap() == 0 {
            break;
        }
        lines += 1;
    }
    assert_eq!(lines, LINES);
    writer.await.unwrap();
}

async fn tokio_read_lines(data: &'static [u8]) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (mut client, server) = tokio_pair().await;
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(CHUNK) {
            client.write_all(chunk).await.unwrap();
        }
        client.shutdown().await.unwrap();
    });
    let mut reader = tokio::io::BufReader::new(server);
    let mut line = String::new();
    let mut lines = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap() == 0 {
            break;
        }
        lines += 1;
    }
    assert_eq!(lines, LINES);
    writer.await.unwrap();
}

async fn weft_buf_writer(data: &'static [u8]) {
    let (client, server) = weft_pair().await;
    let counting = weft::spawn(async move {
        let mut total = 0;
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            let (res, b) = client.read(buf).await;
            match res.unwrap() {
                0 => return total,
                n => total += n,
            }
            buf = b;
        }
    });
    let mut writer = weft::io::BufWriter::new(server);
    for line in data.split_inclusive(|&b| b == b'\n') {
        writer.write_all(line).await.unwrap();
    }
    writer.flush().await.unwrap();
    writer
        .into_inner()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    assert_eq!(counting.await.unwrap(), data.len());
}

async fn tokio_buf_writer(data: &'static [u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio_pair().await;
    let counting = tokio::spawn(async move {
        let mut total = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            match client.read(&mut buf).await.unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    let mut writer = tokio::io::BufWriter::new(server);
    for line in data.split_inclusive(|&b| b == b'\n') {
        writer.write_all(line).await.unwrap();
    }
    writer.flush().await.unwrap();
    writer.into_inner().shutdown().await.unwrap();
    assert_eq!(counting.await.unwrap(), data.len());
}

fn main() {
    let data: &'static [u8] = Box::leak(payload().into_boxed_slice());
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let uring = weft_rt(weft::io::Driver::Uring);
    let epoll = weft_rt(weft::io::Driver::Epoll);
    let tokio = tokio_rt();

    let mut group = c.benchmark_group("lines/read_line");
    group.throughput(Throughput::Elements(LINES as u64));
    for (name, rt) in [("weft_uring", &uring), ("weft_epoll", &epoll)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(rt.spawn(weft_read_lines(data))).unwrap();
                }
                start.elapsed()
            })
        });
    }
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                tokio.block_on(tokio.spawn(tokio_read_lines(data))).unwrap();
            }
            start.elapsed()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("lines/buf_writer");
    group.throughput(Throughput::Elements(LINES as u64));
    for (name, rt) in [("weft_uring", &uring), ("weft_epoll", &epoll)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(rt.spawn(weft_buf_writer(data))).unwrap();
                }
                start.elapsed()
            })
        });
    }
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                tokio.block_on(tokio.spawn(tokio_buf_writer(data))).unwrap();
            }
            start.elapsed()
        })
    });
    group.finish();
    c.final_summary();
}
