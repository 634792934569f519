//! UDP sockets.

use std::{
    fmt, io,
    net::{SocketAddr, ToSocketAddrs},
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
};

use socket2::{Domain, SockAddr, Type};

use super::{
    addr::{inet, resolve},
    sys::Socket,
};
use crate::io::{IoBuf, IoBufMut};

/// A UDP socket. Datagram operations take and return owned buffers, as on
/// [`TcpStream`](super::TcpStream).
pub struct UdpSocket {
    sock: Socket,
}

impl UdpSocket {
    /// Binds to `addr` (the first resolved address that works).
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let mut last = None;
        for addr in resolve(addr)? {
            let sock = Socket::new(Domain::for_address(addr), Type::DGRAM)?;
            match sock.bind(&SockAddr::from(addr)) {
                Ok(()) => return Ok(UdpSocket { sock }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("resolve returns at least one address"))
    }

    /// Adopts a bound std socket. Must be called inside a weft runtime.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            sock: Socket::from_fd(OwnedFd::from(socket))?,
        })
    }

    /// Sets the default peer: `send` goes there and only its datagrams are
    /// received.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let mut last = None;
        for addr in resolve(addr)? {
            // A UDP connect only records the peer: it never blocks.
            match self.sock.sock_ref().connect(&SockAddr::from(addr)) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("resolve returns at least one address"))
    }

    /// Sends one datagram to `addr`.
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: SocketAddr) -> (io::Result<usize>, B) {
        self.sock.send_to(buf, Some(SockAddr::from(addr))).await
    }

    /// Receives one datagram (truncated to the buffer's capacity) and its
    /// sender.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, SocketAddr)>, B) {
        let (res, buf) = self.sock.recv_from(buf).await;
        (res.and_then(|(n, addr)| Ok((n, inet(&addr)?))), buf)
    }

    /// Sends one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.send_to(buf, None).await
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv_datagram(buf).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.local_addr()?)
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.peer_addr()?)
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("socket", &self.sock)
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
