//! Code written against tokio's io traits runs on weft's streams (the
//! `tokio-io` feature): tokio's own `copy_bidirectional` proxies between
//! two weft connections, and `AsyncReadExt`/`AsyncWriteExt` drive them,
//! under both io drivers.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft::{
    io::Driver,
    net::{TcpListener, TcpStream},
    runtime::Builder,
};

async fn echo_server(listener: TcpListener) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            return;
        };
        weft::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            loop {
                buf.clear();
                let (n, b) = conn.read(buf).await;
                buf = b;
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let (res, b) = conn.write_all(buf[..n].to_vec()).await;
                        drop(b);
                        if res.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

fn proxy_round_trips(driver: Driver) {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .io_driver(driver)
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = backend.local_addr().unwrap();
        weft::spawn(echo_server(backend));

        // The proxy: tokio's copy_bidirectional between weft streams.
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let proxy = weft::spawn(async move {
            let (mut inbound, _) = front.accept().await?;
            let mut outbound = TcpStream::connect(backend_addr).await?;
            tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
        });

        let mut client = TcpStream::connect(front_addr).await.unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut echoed = vec![0u8; payload.len()];
        // Write and read concurrently: the echo keeps only so much in flight.
        let (mut reader, mut writer) = client_split(&mut client);
        let write = async {
            writer.write_all(&payload).await.unwrap();
            writer.flush().await.unwrap();
        };
        let read = async {
            reader.read_exact(&mut echoed).await.unwrap();
        };
        futures_join(write, read).await;
        assert!(echoed == payload, "every byte came back in order");
        drop((reader, writer));
        AsyncWriteExt::shutdown(&mut client).await.unwrap();

        let (up, down) = weft::time::timeout(Duration::from_secs(10), proxy)
            .await
            .expect("the proxy finishes once both sides close")
            .expect("proxy task")
            .expect("copy_bidirectional");
        assert_eq!(up, payload.len() as u64);
        assert_eq!(down, payload.len() as u64);
    });
}

/// Splits a borrowed stream into tokio-trait halves for concurrent use.
fn client_split(
    stream: &mut TcpStream,
) -> (
    tokio::io::ReadHalf<&mut TcpStream>,
    tokio::io::WriteHalf<&mut TcpStream>,
) {
    tokio::io::split(stream)
}

/// Polls both futures until both finish (no executor-specific join).
async fn futures_join(
    a: impl std::future::Future<Output = ()>,
    b: impl std::future::Future<Output = ()>,
) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut a_done, mut b_done) = (false, false);
    std::future::poll_fn(|cx| {
        if !a_done {
            a_done = a.as_mut().poll(cx).is_ready();
        }
        if !b_done {
            b_done = b.as_mut().poll(cx).is_ready();
        }
        if a_done && b_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[test]
fn tokio_copy_bidirectional_proxies_weft_streams_on_io_uring() {
    proxy_round_trips(Driver::Uring);
}

#[test]
fn tokio_copy_bidirectional_proxies_weft_streams_on_epoll() {
    proxy_round_trips(Driver::Epoll);
}
