//! Unix domain sockets: [`UnixListener`], [`UnixStream`] (and its halves),
//! [`UnixDatagram`], and their [`SocketAddr`].
//!
//! They run on the worker's io driver as TCP and UDP do, with the same
//! owned-buffer api and the same await points (the scope's deadline or
//! cancel ends any wait). Paths are file-system paths; on Linux a path that
//! starts with a NUL byte (`"\0name"`) names the abstract namespace, which
//! leaves no file behind. weft does not remove a listener's socket file
//! when it is dropped (neither does std): remove it yourself.
//!
//! Under io_uring a listener accepts with one single-shot accept per call
//! (TCP's multishot accept is for servers taking thousands of connections
//! a second over the network; a local socket rarely is one).

mod datagram;
mod stream;

use std::{fmt, path::Path};

use socket2::SockAddr;

pub use self::{
    datagram::UnixDatagram,
    stream::{
        OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, UnixListener, UnixStream, WriteHalf,
    },
};

/// The address of a Unix socket: a path, a name in Linux's abstract
/// namespace, or unnamed (a socket that was never bound, such as the
/// client end of a connection or either end of a `pair`).
#[derive(Clone)]
pub struct SocketAddr(SockAddr);

impl SocketAddr {
    pub(crate) fn new(addr: SockAddr) -> SocketAddr {
        SocketAddr(addr)
    }

    /// The path, if the socket is bound to one.
    pub fn as_pathname(&self) -> Option<&Path> {
        self.0.as_pathname()
    }

    /// The name (without the leading NUL), if the socket is bound in the
    /// abstract namespace.
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        self.0.as_abstract_namespace()
    }

    /// True if the socket is not bound to any address.
    pub fn is_unnamed(&self) -> bool {
        // Not `SockAddr::is_unnamed`: for a datagram from an unbound
        // sender the kernel reports no address at all (length 0, no
        // family), which that does not count as unnamed.
        self.as_pathname().is_none() && self.as_abstract_name().is_none()
    }

    /// The same address as std's type; `None` for abstract and unnamed
    /// addresses, which std's type cannot be built from.
    pub fn to_std(&self) -> Option<std::os::unix::net::SocketAddr> {
        self.0.as_unix()
    }
}

impl fmt::Debug for SocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = self.as_pathname() {
            write!(f, "{path:?} (pathname)")
        } else if let Some(name) = self.as_abstract_name() {
            write!(f, "{:?} (abstract)", String::from_utf8_lossy(name))
        } else {
            f.write_str("(unnamed)")
        }
    }
}

/// A Unix socket address for `path`, with the length check's error
/// (`InvalidInput`) for a path longer than `sun_path`.
pub(crate) fn sockaddr(path: &Path) -> std::io::Result<SockAddr> {
    SockAddr::unix(path)
}
