//! Unix datagram sockets.

use std::{
    fmt, io,
    net::Shutdown,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    path::Path,
};

use socket2::{Domain, Type};

use super::{sockaddr, SocketAddr};
use crate::{
    io::{IoBuf, IoBufMut},
    net::sys::Socket,
};

/// A Unix datagram socket. Datagram operations take and return owned
/// buffers, as on [`UdpSocket`](crate::net::UdpSocket); each is an await
/// point of the task's scope.
pub struct UnixDatagram {
    sock: Socket,
}

impl UnixDatagram {
    /// A socket bound to `path` (a leading NUL byte: the abstract
    /// namespace). An existing file at `path` fails with `AddrInUse`. Must
    /// be called inside a weft runtime.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let addr = sockaddr(path.as_ref())?;
        let sock = Socket::new(Domain::UNIX, Type::DGRAM)?;
        sock.bind(&addr)?;
        Ok(UnixDatagram { sock })
    }

    /// A socket bound to no address: it can send, and receive replies only
    /// once connected (a peer cannot address an unnamed socket).
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            sock: Socket::new(Domain::UNIX, Type::DGRAM)?,
        })
    }

    /// Two sockets connected to each other (`socketpair`).
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = socket2::Socket::pair(Domain::UNIX, Type::DGRAM.cloexec(), None)?;
        Ok((
            UnixDatagram {
                sock: Socket::from_fd(a.into())?,
            },
            UnixDatagram {
                sock: Socket::from_fd(b.into())?,
            },
        ))
    }

    /// Adopts a std socket. Must be called inside a weft runtime.
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            sock: Socket::from_fd(OwnedFd::from(socket))?,
        })
    }

    /// Sets the default peer: `send` goes there and only its datagrams are
    /// received. A Unix datagram connect never blocks, so this is not
    /// async. A path nobody bound fails with `NotFound`.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.sock.sock_ref().connect(&sockaddr(path.as_ref())?)
    }

    /// Sends one datagram to the socket bound at `path`.
    pub async fn send_to<B: IoBuf>(
        &self,
        buf: B,
        path: impl AsRef<Path>,
    ) -> (io::Result<usize>, B) {
        match sockaddr(path.as_ref()) {
            Ok(addr) => self.sock.send_to(buf, Some(addr)).await,
            Err(e) => (Err(e), buf),
        }
    }

    /// Receives one datagram (truncated to the buffer's capacity) and its
    /// sender's address (unnamed if the sender is not bound).
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, SocketAddr)>, B) {
        let (res, buf) = self.sock.recv_from(buf).await;
        (res.map(|(n, addr)| (n, SocketAddr::new(addr))), buf)
    }

    /// Sends one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.send_to(buf, None).await
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv_datagram(buf).await
    }

    /// Shuts down reads, writes or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.shutdown(how)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr().map(SocketAddr::new)
    }

    /// The connected peer's address (`NotConnected` if there is none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_addr().map(SocketAddr::new)
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd()
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("socket", &self.sock)
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
