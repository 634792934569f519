//! UDP sockets.

use std::{
    fmt, io,
    net::{SocketAddr, ToSocketAddrs},
    os::fd::{AsRawFd, OwnedFd, RawFd},
};

use super::{addr::resolve, sys::Socket};
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
            let domain = match addr {
                SocketAddr::V4(_) => libc::AF_INET,
                SocketAddr::V6(_) => libc::AF_INET6,
            };
            let sock = Socket::new(domain, libc::SOCK_DGRAM)?;
            match sock.bind(addr) {
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
            let raw = super::addr::RawAddr::from_addr(addr);
            // SAFETY: a valid address of the given length.
            let rc = unsafe { libc::connect(self.sock.fd(), raw.as_ptr(), raw.len) };
            if rc == 0 {
                return Ok(());
            }
            last = Some(io::Error::last_os_error());
        }
        Err(last.expect("resolve returns at least one address"))
    }

    /// Sends one datagram to `addr`.
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: SocketAddr) -> (io::Result<usize>, B) {
        self.sock.send_to(buf, Some(addr)).await
    }

    /// Receives one datagram (truncated to the buffer's capacity) and its
    /// sender.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, SocketAddr)>, B) {
        self.sock.recv_from(buf).await
    }

    /// Sends one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.send_to(buf, None).await
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv(buf).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_addr()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd()
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
