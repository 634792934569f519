use std::time::Duration;
use weft::{
    io::Driver,
    net::{TcpListener, TcpStream, UdpSocket},
};

fn rt(d: Driver) -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .io_driver(d)
        .build()
        .unwrap()
}

fn echo_roundtrip(d: Driver) {
    let rt = rt(d);
    assert_eq!(rt.io_driver(), d);
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = weft::spawn(async move {
            let (c, _) = l.accept().await.unwrap();
            let mut buf = Vec::with_capacity(1024);
            loop {
                let (n, b) = c.read(buf).await;
                let n = n.unwrap();
                if n == 0 {
                    return;
                }
                let (r, b) = c.write_all(b[..n].to_vec()).await;
                r.unwrap();
                buf = Vec::with_capacity(1024);
                drop(b);
            }
        });
        let c = TcpStream::connect(addr).await.unwrap();
        for i in 0..100u32 {
            let msg = format!("hello {i}").into_bytes();
            let (r, _) = c.write_all(msg.clone()).await;
            r.unwrap();
            let (n, b) = c.read(Vec::with_capacity(64)).await;
            assert_eq!(&b[..n.unwrap()], &msg[..]);
        }
        c.shutdown(std::net::Shutdown::Write).unwrap();
        server.await.unwrap();
        let u1 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let u2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (r, _) = u1.send_to(&b"ping"[..], u2.local_addr().unwrap()).await;
        assert_eq!(r.unwrap(), 4);
        let (r, b) = u2.recv_from(Vec::with_capacity(16)).await;
        let (n, from) = r.unwrap();
        assert_eq!(&b[..n], b"ping");
        assert_eq!(from, u1.local_addr().unwrap());
        // deadline
        let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a2 = l2.local_addr().unwrap();
        let _c2 = TcpStream::connect(a2).await.unwrap();
        let (s2, _) = l2.accept().await.unwrap();
        let j = weft::task::Builder::new()
            .timeout(Duration::from_millis(50))
            .spawn(async move {
                let (r, _) = s2.read(Vec::with_capacity(16)).await;
                r
            });
        let err = j.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err:?}");
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rt.metrics().io_ops_in_flight, 0);
}

#[test]
fn uring_smoke() {
    echo_roundtrip(Driver::Uring)
}
#[test]
fn epoll_smoke() {
    echo_roundtrip(Driver::Epoll)
}
