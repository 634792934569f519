//! Socket addresses in and out of the kernel's representation.
//!
//! Encoding and decoding is socket2's ([`SockAddr`]); what is left here is
//! the storage an io_uring op owns while the kernel fills it (an accept's
//! or a `recvmsg`'s peer), which must sit at a stable address with a
//! length the kernel can write.

use std::{
    io,
    net::{SocketAddr, ToSocketAddrs},
};

use socket2::{SockAddr, SockAddrStorage};

/// Address storage and its length, owned by an operation while the kernel
/// reads or writes it.
pub(crate) struct RawAddr {
    storage: SockAddrStorage,
    pub(crate) len: libc::socklen_t,
}

impl RawAddr {
    /// Room for any address, for the kernel to fill.
    pub(crate) fn empty() -> RawAddr {
        let storage = SockAddrStorage::zeroed();
        RawAddr {
            len: storage.size_of(),
            storage,
        }
    }

    /// `addr`, for the kernel to read.
    pub(crate) fn from_sockaddr(addr: &SockAddr) -> RawAddr {
        RawAddr {
            len: addr.len(),
            storage: addr.clone().as_storage(),
        }
    }

    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const SockAddrStorage).cast()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut SockAddrStorage).cast()
    }

    /// The address the kernel wrote (its family and `len` bytes).
    pub(crate) fn into_sockaddr(self) -> SockAddr {
        let len = self.len.min(self.storage.size_of());
        // SAFETY: the storage started zeroed and the kernel wrote an address
        // of its family and at most `len` bytes (capped at the storage's
        // size); bytes past what it wrote are zeroes, valid for any family.
        unsafe { SockAddr::new(self.storage, len) }
    }
}

/// An IP address out of a socket address, or an error naming the family.
pub(crate) fn inet(addr: &SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected address family {}", addr.family()),
        )
    })
}

/// Resolves `addr` (on the calling thread: pass IP literals, or resolve
/// host names beforehand, to keep a worker from blocking on DNS).
pub(crate) fn resolve(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_v6_and_unix() {
        for addr in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:1"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let raw = RawAddr::from_sockaddr(&SockAddr::from(addr));
            assert_eq!(inet(&raw.into_sockaddr()).unwrap(), addr);
        }
        let unix = SockAddr::unix("/tmp/weft.sock").unwrap();
        let back = RawAddr::from_sockaddr(&unix).into_sockaddr();
        assert_eq!(
            back.as_pathname(),
            Some(std::path::Path::new("/tmp/weft.sock"))
        );
    }

    #[test]
    fn a_unix_address_is_not_an_ip_address() {
        let unix = SockAddr::unix("/tmp/weft.sock").unwrap();
        assert_eq!(inet(&unix).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn an_empty_storage_filled_by_nobody_is_no_ip_address() {
        let raw = RawAddr::empty();
        assert_eq!(
            inet(&raw.into_sockaddr()).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
