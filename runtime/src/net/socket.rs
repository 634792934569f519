//! [`TcpSocket`]: a TCP socket set up option by option before it becomes a
//! listener or a connection (tokio's `TcpSocket`), on socket2.

use std::{
    fmt, io,
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    time::Duration,
};

use socket2::{Domain, SockAddr, Type};

use super::{addr::inet, sys::Socket, TcpListener, TcpStream};

/// A TCP socket not yet listening or connected, for options that must be
/// set before (`SO_REUSEADDR`, `SO_REUSEPORT`, buffer sizes, binding a
/// client to a local address...).
///
/// ```no_run
/// # weft::Runtime::new().unwrap().block_on(async {
/// use weft::net::TcpSocket;
///
/// let socket = TcpSocket::new_v4()?;
/// socket.set_reuseaddr(true)?;
/// socket.set_reuseport(true)?;
/// socket.bind("127.0.0.1:8080".parse().unwrap())?;
/// let listener = socket.listen(4096)?;
/// # Ok::<_, std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// Creating and configuring it needs no runtime; [`listen`](Self::listen)
/// and [`connect`](Self::connect) hand it to the current runtime's driver.
pub struct TcpSocket {
    inner: socket2::Socket,
}

impl TcpSocket {
    /// A new IPv4 TCP socket (close-on-exec).
    pub fn new_v4() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV4)
    }

    /// A new IPv6 TCP socket (close-on-exec).
    pub fn new_v6() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV6)
    }

    fn new(domain: Domain) -> io::Result<TcpSocket> {
        Ok(TcpSocket {
            inner: socket2::Socket::new(domain, Type::STREAM.cloexec(), None)?,
        })
    }

    /// Sets `SO_REUSEADDR`: bind a listening address still in `TIME_WAIT`.
    pub fn set_reuseaddr(&self, reuse: bool) -> io::Result<()> {
        self.inner.set_reuse_address(reuse)
    }

    /// Whether `SO_REUSEADDR` is set.
    pub fn reuseaddr(&self) -> io::Result<bool> {
        self.inner.reuse_address()
    }

    /// Sets `SO_REUSEPORT`: several sockets (all with it set) may bind the
    /// same address, and the kernel spreads connections across them.
    pub fn set_reuseport(&self, reuse: bool) -> io::Result<()> {
        self.inner.set_reuse_port(reuse)
    }

    /// Whether `SO_REUSEPORT` is set.
    pub fn reuseport(&self) -> io::Result<bool> {
        self.inner.reuse_port()
    }

    /// Sets `SO_SNDBUF` (Linux doubles the value for its bookkeeping and
    /// reads back the doubled size).
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.inner.set_send_buffer_size(size as usize)
    }

    /// `SO_SNDBUF` as the kernel reports it.
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        self.inner.send_buffer_size().map(clamp_u32)
    }

    /// Sets `SO_RCVBUF` (doubled by Linux, as `SO_SNDBUF`).
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.inner.set_recv_buffer_size(size as usize)
    }

    /// `SO_RCVBUF` as the kernel reports it.
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        self.inner.recv_buffer_size().map(clamp_u32)
    }

    /// Sets `TCP_NODELAY` (kept by the connection or by accepted ones).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.tcp_nodelay()
    }

    /// Sets `SO_LINGER`: `Some(d)` makes a close wait up to `d` for unsent
    /// data (`Some(0)` resets the connection instead of closing it);
    /// `None`, the default, closes in the background.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.inner.set_linger(linger)
    }

    /// `SO_LINGER`.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.inner.linger()
    }

    /// Sets `SO_KEEPALIVE`.
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.inner.set_keepalive(keepalive)
    }

    /// Whether `SO_KEEPALIVE` is set.
    pub fn keepalive(&self) -> io::Result<bool> {
        self.inner.keepalive()
    }

    /// Binds to `addr` (port 0: the kernel picks one). Never blocks.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.inner.bind(&SockAddr::from(addr))
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.inner.local_addr()?)
    }

    /// Listens with a queue of `backlog` pending connections (the kernel
    /// caps it at `net.core.somaxconn`) and hands the socket to the current
    /// runtime. Unbound, it listens on a port the kernel picks.
    ///
    /// # Errors
    /// Outside a weft runtime, and the kernel's `listen` errors.
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        self.inner.listen(backlog)?;
        let sock = Socket::from_fd(OwnedFd::from(self.inner))?;
        Ok(TcpListener::from_socket(sock))
    }

    /// Connects to `addr` on the current runtime; an await point, as
    /// [`TcpStream::connect`].
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        let sock = Socket::from_fd(OwnedFd::from(self.inner))?;
        sock.connect(&SockAddr::from(addr)).await?;
        Ok(TcpStream::from_socket(sock))
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSocket")
            .field("fd", &self.inner.as_raw_fd())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
