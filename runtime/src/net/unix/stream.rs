//! Unix stream sockets: listener, stream, owned and borrowed halves.

use std::{
    fmt, io,
    net::Shutdown,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    path::Path,
    sync::Arc,
};

use socket2::{Domain, Type};

use super::{sockaddr, SocketAddr};
use crate::{
    io::{IoBuf, IoBufMut},
    net::{
        compat::{self, ReadCompat, WriteCompat, WriteParts},
        sys::Socket,
    },
};

/// A Unix stream listener.
pub struct UnixListener {
    sock: Socket,
}

impl UnixListener {
    /// Binds to `path` and listens (backlog 1024). Binding never blocks, so
    /// this is not async; it must be called inside a weft runtime.
    ///
    /// An existing file at `path` fails with `AddrInUse`; a path longer
    /// than the kernel's `sun_path` with `InvalidInput`. A path that starts
    /// with a NUL byte binds in Linux's abstract namespace.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let addr = sockaddr(path.as_ref())?;
        let sock = Socket::new(Domain::UNIX, Type::STREAM)?;
        sock.bind(&addr)?;
        sock.listen(1024)?;
        Ok(UnixListener { sock })
    }

    /// Adopts a bound, listening std listener. Must be called inside a
    /// weft runtime.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            sock: Socket::from_fd(OwnedFd::from(listener))?,
        })
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (fd, addr) = self.sock.accept().await?;
        Ok((
            UnixStream::from_socket(Socket::from_fd(fd)?),
            SocketAddr::new(addr),
        ))
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr().map(SocketAddr::new)
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("socket", &self.sock)
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A Unix stream connection, with the api of
/// [`TcpStream`](crate::net::TcpStream): owned-buffer `read`/`write`, the
/// futures-io (and `tokio-io`) traits, owned and borrowed halves.
pub struct UnixStream {
    sock: Arc<Socket>,
    read: ReadCompat,
    write: WriteCompat,
}

impl UnixStream {
    fn from_socket(sock: Socket) -> UnixStream {
        UnixStream {
            sock: Arc::new(sock),
            read: ReadCompat::default(),
            write: WriteCompat::default(),
        }
    }

    /// Connects to the socket bound at `path`. A path nobody bound fails
    /// with `NotFound`; one that no longer listens with
    /// `ConnectionRefused`.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let addr = sockaddr(path.as_ref())?;
        let sock = Socket::new(Domain::UNIX, Type::STREAM)?;
        sock.connect(&addr).await?;
        Ok(UnixStream::from_socket(sock))
    }

    /// Two streams connected to each other (`socketpair`). Must be called
    /// inside a weft runtime.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = socket2::Socket::pair(Domain::UNIX, Type::STREAM.cloexec(), None)?;
        Ok((
            UnixStream::from_socket(Socket::from_fd(a.into())?),
            UnixStream::from_socket(Socket::from_fd(b.into())?),
        ))
    }

    /// Adopts a connected std stream. Must be called inside a weft runtime.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream::from_socket(Socket::from_fd(OwnedFd::from(
            stream,
        ))?))
    }

    /// Reads into `buf` (its whole capacity). `Ok(0)` is the end of the
    /// stream.
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv(buf).await
    }

    /// A stream of received chunks in pooled buffers; see
    /// [`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream).
    pub fn recv_stream(&self) -> crate::net::RecvStream {
        crate::net::RecvStream::new(self.sock.clone())
    }

    /// Writes some of `buf`'s initialised bytes; returns how many.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        compat::send(self.write_parts(), buf).await
    }

    /// Writes all of `buf`'s initialised bytes.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        compat::send_all(self.write_parts(), buf).await
    }

    /// Shuts down the read side, the write side (the peer reads end of
    /// stream), or both. The end of stream follows every byte written
    /// before, a compat write's (`AsyncWrite`) included, whose send may
    /// still be on its way under io_uring: a failure of that send already
    /// in is this call's error; one still in flight goes on, and the write
    /// side shuts down when it is done (writes fail with `BrokenPipe`
    /// from now on). docs/IO.md, "Compat writes behind".
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        compat::shutdown(self.write_parts(), how)
    }

    /// The peer's address (unnamed for the client end of a connection).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_addr().map(SocketAddr::new)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr().map(SocketAddr::new)
    }

    /// Splits into halves that can move to different tasks;
    /// [`OwnedReadHalf::reunite`] puts them back together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (
            OwnedReadHalf {
                sock: self.sock.clone(),
                compat: self.read,
            },
            OwnedWriteHalf {
                sock: self.sock,
                compat: self.write,
            },
        )
    }

    /// Splits into halves borrowed from the stream; see
    /// [`TcpStream::split`](crate::net::TcpStream::split) (and its note on
    /// futures' `AsyncReadExt::split`).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (
            ReadHalf {
                sock: &self.sock,
                compat: &mut self.read,
            },
            WriteHalf {
                sock: &self.sock,
                compat: &mut self.write,
            },
        )
    }

    pub(crate) fn compat_read(&mut self) -> (&Arc<Socket>, &mut ReadCompat) {
        (&self.sock, &mut self.read)
    }

    pub(crate) fn compat_write(&mut self) -> (&Arc<Socket>, &mut WriteCompat) {
        (&self.sock, &mut self.write)
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("socket", &self.sock)
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// The read half of a [`UnixStream`], from [`UnixStream::into_split`].
pub struct OwnedReadHalf {
    sock: Arc<Socket>,
    compat: ReadCompat,
}

/// The write half of a [`UnixStream`], from [`UnixStream::into_split`].
/// Dropping it does not shut the connection down; call
/// [`shutdown`](OwnedWriteHalf::shutdown).
pub struct OwnedWriteHalf {
    sock: Arc<Socket>,
    compat: WriteCompat,
}

/// The read half of a [`UnixStream`], borrowed by [`UnixStream::split`].
pub struct ReadHalf<'a> {
    sock: &'a Arc<Socket>,
    compat: &'a mut ReadCompat,
}

/// The write half of a [`UnixStream`], borrowed by [`UnixStream::split`].
pub struct WriteHalf<'a> {
    sock: &'a Arc<Socket>,
    compat: &'a mut WriteCompat,
}

/// The halves passed to [`OwnedReadHalf::reunite`] came from different
/// streams; they are handed back.
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Debug for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves of different UnixStreams")
    }
}

impl std::error::Error for ReuniteError {}

impl OwnedReadHalf {
    /// Reads into `buf`; see [`UnixStream::read`].
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv(buf).await
    }

    /// Puts the stream back together, if `write` is its other half.
    pub fn reunite(self, write: OwnedWriteHalf) -> Result<UnixStream, ReuniteError> {
        if !Arc::ptr_eq(&self.sock, &write.sock) {
            return Err(ReuniteError(self, write));
        }
        Ok(UnixStream {
            sock: self.sock,
            read: self.compat,
            write: write.compat,
        })
    }

    pub(crate) fn compat_read(&mut self) -> (&Arc<Socket>, &mut ReadCompat) {
        (&self.sock, &mut self.compat)
    }
}

impl OwnedWriteHalf {
    /// Writes some of `buf`; see [`UnixStream::write`].
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        compat::send(self.write_parts(), buf).await
    }

    /// Writes all of `buf`; see [`UnixStream::write_all`].
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        compat::send_all(self.write_parts(), buf).await
    }

    /// Shuts down the write side: the peer reads end of stream, after
    /// every byte written before (see the stream's `shutdown`).
    pub fn shutdown(&self) -> io::Result<()> {
        compat::shutdown(self.write_parts(), Shutdown::Write)
    }

    pub(crate) fn compat_write(&mut self) -> (&Arc<Socket>, &mut WriteCompat) {
        (&self.sock, &mut self.compat)
    }
}

impl ReadHalf<'_> {
    /// Reads into `buf`; see [`UnixStream::read`].
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv(buf).await
    }

    pub(crate) fn compat_read(&mut self) -> (&Arc<Socket>, &mut ReadCompat) {
        (self.sock, &mut *self.compat)
    }
}

impl WriteHalf<'_> {
    /// Writes some of `buf`; see [`UnixStream::write`].
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        compat::send(self.write_parts(), buf).await
    }

    /// Writes all of `buf`; see [`UnixStream::write_all`].
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        compat::send_all(self.write_parts(), buf).await
    }

    /// Shuts down the write side: the peer reads end of stream, after
    /// every byte written before (see the stream's `shutdown`).
    pub fn shutdown(&self) -> io::Result<()> {
        compat::shutdown(self.write_parts(), Shutdown::Write)
    }

    pub(crate) fn compat_write(&mut self) -> (&Arc<Socket>, &mut WriteCompat) {
        (self.sock, &mut *self.compat)
    }
}

macro_rules! debug_half {
    ($($ty:ty => $name:literal),*) => {
        $(
            impl fmt::Debug for $ty {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.debug_struct($name).field("socket", &self.sock).finish()
                }
            }
        )*
    };
}

debug_half!(
    OwnedReadHalf => "OwnedReadHalf",
    OwnedWriteHalf => "OwnedWriteHalf",
    ReadHalf<'_> => "ReadHalf",
    WriteHalf<'_> => "WriteHalf"
);

write_parts!(UnixStream, OwnedWriteHalf, WriteHalf<'_>);

owned_io!(
    read: UnixStream, &UnixStream, OwnedReadHalf, &OwnedReadHalf, ReadHalf<'_>;
    write: UnixStream, &UnixStream, OwnedWriteHalf, &OwnedWriteHalf, WriteHalf<'_>
);
