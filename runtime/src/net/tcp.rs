//! TCP: listeners, streams, owned halves.

use std::{
    fmt,
    future::poll_fn,
    io,
    net::{Shutdown, SocketAddr, ToSocketAddrs},
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    task::Poll,
};

use socket2::{Domain, SockAddr, Type};

use super::{
    addr::{inet, resolve},
    compat::{self, ReadCompat, WriteCompat, WriteParts},
    sys::Socket,
};
use crate::{
    cancel, coop,
    facade::{lock, Mutex},
    io::{
        uring::{self, AcceptQueue, Remote},
        IoBuf, IoBufMut,
    },
};

/// Set when a kernel rejected multishot accept; single-shot from then on.
static MULTISHOT_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// A TCP listener.
///
/// Under io_uring it accepts with one multishot accept kept armed (where the
/// kernel has it): connections queue up as they arrive and `accept` takes
/// the next one; a failed accept (`EMFILE`, ...) is reported by `accept`
/// and the next call re-arms.
///
/// Dropping the listener stops it listening and frees its port before
/// `drop` returns, on both drivers: binding the same address right after
/// works, with or without `SO_REUSEADDR`. Connections nobody took are
/// closed (reset). Under io_uring the kernel holds the socket for as long
/// as the multishot accept is armed, so the drop shuts the socket's
/// receive side (which ends listening at once), cancels the multishot and
/// waits for its last completion: one pass of the ring when dropped on the
/// worker that accepted, a wake-up of that worker (at most
/// [`DROP_WAIT_LIMIT`](TcpListener::DROP_WAIT_LIMIT)) from anywhere else.
/// [`close`](TcpListener::close) does the same without blocking the thread.
/// The one exception: a drop on a worker from inside the io driver itself
/// (a buffer's `Drop` run by a completion) does not wait; the socket stops
/// listening at once, the port is free once the kernel lets go of it.
pub struct TcpListener {
    sock: Socket,
    multishot: Mutex<Option<(Arc<AcceptQueue>, Arc<Remote>)>>,
}

impl TcpListener {
    /// Binds to `addr` (the first address that works) and listens, with
    /// `SO_REUSEADDR` set and a backlog of 1024.
    ///
    /// Host names resolve on the calling thread; pass IP literals (or
    /// resolve beforehand) to keep a worker from blocking on DNS.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let mut last = None;
        for addr in resolve(addr)? {
            match Self::bind_one(addr) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("resolve returns at least one address"))
    }

    fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM)?;
        sock.sock_ref().set_reuse_address(true)?;
        sock.bind(&SockAddr::from(addr))?;
        sock.listen(1024)?;
        Ok(TcpListener::from_socket(sock))
    }

    /// A listener on a bound, listening socket (see [`TcpSocket::listen`](super::TcpSocket::listen)).
    pub(crate) fn from_socket(sock: Socket) -> TcpListener {
        TcpListener {
            sock,
            multishot: Mutex::new(None),
        }
    }

    /// Adopts a bound, listening std listener. Must be called inside a
    /// weft runtime.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener::from_socket(Socket::from_fd(OwnedFd::from(
            listener,
        ))?))
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.local_addr()?)
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        if !self.sock.is_uring() || MULTISHOT_UNSUPPORTED.load(Relaxed) {
            let (fd, addr) = self.sock.accept().await?;
            return Ok((TcpStream::from_socket(Socket::from_fd(fd)?), inet(&addr)?));
        }
        loop {
            let queue = self.armed_queue()?;
            let next = poll_fn(|cx| {
                let restore = std::task::ready!(coop::poll_proceed(cx));
                if let Some(c) = cancel::poll_cancelled(None, false) {
                    restore.made_progress();
                    return Poll::Ready(Err(io::Error::from(c)));
                }
                let Poll::Ready(res) = queue.poll_next(cx) else {
                    // Waiting in user space (no op of ours to link a
                    // kernel timeout to): the scope's deadline timer must
                    // end the wait.
                    if let Some(c) = cancel::poll_cancelled(None, true) {
                        return Poll::Ready(Err(io::Error::from(c)));
                    }
                    crate::runtime::dump::awaiting(
                        cx.waker(),
                        crate::runtime::dump::Awaiting::Io(crate::runtime::dump::IoOp::Accept),
                    );
                    return Poll::Pending;
                };
                restore.made_progress();
                Poll::Ready(Ok(res))
            })
            .await?;
            match next {
                Ok(fd) if fd >= 0 => {
                    // SAFETY: the kernel handed us this fd.
                    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                    let stream = TcpStream::from_socket(Socket::from_fd(fd)?);
                    match stream.peer_addr() {
                        Ok(addr) => return Ok((stream, addr)),
                        // Reset before we looked: take the next one.
                        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Ok(err) if err == -libc::EINVAL => {
                    // This kernel has no multishot accept.
                    MULTISHOT_UNSUPPORTED.store(true, Relaxed);
                    *lock(&self.multishot) = None;
                    let (fd, addr) = self.sock.accept().await?;
                    return Ok((TcpStream::from_socket(Socket::from_fd(fd)?), inet(&addr)?));
                }
                Ok(err) => return Err(io::Error::from_raw_os_error(-err)),
                Err(()) => {
                    // The multishot ended: arm a new one.
                    let mut slot = lock(&self.multishot);
                    if slot.as_ref().is_some_and(|(q, _)| Arc::ptr_eq(q, &queue)) {
                        *slot = None;
                    }
                }
            }
        }
    }

    /// The longest a drop away from the listener's io_uring worker waits
    /// for that worker to end the listener's accept (see the type's docs).
    /// Only a worker kept busy by a task that blocks takes that long; if
    /// the wait gives up, the listener has stopped listening all the same
    /// and its port is free once the worker comes round.
    pub const DROP_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

    /// Closes the listener and waits until its port is free, without
    /// blocking the thread (see the type's docs for what `drop` does).
    ///
    /// A weft await point: if the task's scope is cancelled it returns the
    /// cancellation at once; the listener has stopped listening then, and
    /// the port is free as soon as the kernel delivers the accept's last
    /// completion.
    pub async fn close(self) -> io::Result<()> {
        let _ = self.sock.shutdown(Shutdown::Read);
        let Some((queue, owner)) = lock(&self.multishot).take() else {
            // No accept armed: dropping the fd is the whole close.
            return Ok(());
        };
        uring::cancel_multishot(&owner, &queue);
        poll_fn(|cx| {
            let restore = std::task::ready!(coop::poll_proceed(cx));
            if let Some(c) = cancel::poll_cancelled(None, false) {
                restore.made_progress();
                return Poll::Ready(Err(io::Error::from(c)));
            }
            if owner.is_closed() || queue.poll_ended(cx).is_ready() {
                restore.made_progress();
                return Poll::Ready(Ok(()));
            }
            // The owner's completion wakes us; the scope's deadline timer
            // must be able to end the wait too.
            cancel::with_current_scope(|_| ());
            if let Some(c) = cancel::poll_cancelled(None, true) {
                return Poll::Ready(Err(io::Error::from(c)));
            }
            crate::runtime::dump::awaiting(
                cx.waker(),
                crate::runtime::dump::Awaiting::Io(crate::runtime::dump::IoOp::Close),
            );
            Poll::Pending
        })
        .await
    }

    fn armed_queue(&self) -> io::Result<Arc<AcceptQueue>> {
        let mut slot = lock(&self.multishot);
        if let Some((queue, _)) = &*slot {
            return Ok(queue.clone());
        }
        let queue = AcceptQueue::new();
        let owner = uring::arm_multishot_accept(self.sock.fd(), &queue)?;
        *slot = Some((queue.clone(), owner));
        Ok(queue)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        // Stops listening now (the socket leaves the listen hash, queued
        // connections are reset), whoever else still holds the socket: the
        // kernel while an accept is armed, or a dup of the fd. Fails only
        // for a socket that was not listening (`ENOTCONN`): nothing to do.
        let _ = self.sock.shutdown(Shutdown::Read);
        let armed = lock(&self.multishot).take();
        if let Some((queue, owner)) = armed {
            uring::cancel_multishot(&owner, &queue);
            // Then the fd, closed right after this, is the last reference
            // and the close frees the port.
            uring::wait_multishot_ended(&owner, &queue, Self::DROP_WAIT_LIMIT);
        }
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("socket", &self.sock)
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A TCP connection.
///
/// The native api is completion style: `read(buf)` and `write(buf)` take
/// the buffer and give it back with the result, so io_uring can own it while
/// the kernel works. It also implements `futures_io::AsyncRead`/`AsyncWrite`
/// (and tokio's io traits with the `tokio-io` feature) for code written
/// against those; under io_uring they copy through an internal buffer.
///
/// Reads and writes may run at the same time from different tasks (`&self`),
/// or from the two halves of [`into_split`](TcpStream::into_split) (owned)
/// or [`split`](TcpStream::split) (borrowed).
pub struct TcpStream {
    sock: Arc<Socket>,
    read: ReadCompat,
    write: WriteCompat,
}

impl TcpStream {
    pub(crate) fn from_socket(sock: Socket) -> TcpStream {
        TcpStream {
            sock: Arc::new(sock),
            read: ReadCompat::default(),
            write: WriteCompat::default(),
        }
    }

    /// Connects to `addr`, trying each resolved address in turn.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in resolve(addr)? {
            let sock = Socket::new(Domain::for_address(addr), Type::STREAM)?;
            match sock.connect(&SockAddr::from(addr)).await {
                Ok(()) => return Ok(TcpStream::from_socket(sock)),
                Err(e) if super::sys::is_cancellation(&e) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("resolve returns at least one address"))
    }

    /// Adopts a connected std stream. Must be called inside a weft runtime.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream::from_socket(Socket::from_fd(OwnedFd::from(
            stream,
        ))?))
    }

    /// Reads into `buf` (its whole capacity; see [`IoBufMut`]). `Ok(0)` is
    /// the end of the stream.
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv(buf).await
    }

    /// Writes some of `buf`'s initialised bytes; returns how many.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        compat::send(self.write_parts(), buf).await
    }

    /// A stream of the bytes this connection receives, in chunks held in
    /// buffers the runtime pools (an io_uring multishot receive into the
    /// worker's provided buffer ring, or readiness-driven receives into
    /// pooled heap buffers under epoll). For servers that read many
    /// connections: an idle connection holds no buffer. See
    /// [`RecvStream`](super::RecvStream) and docs/IO.md, "Pooled receive".
    /// The stream keeps the socket open; writes go on through the
    /// `TcpStream`.
    pub fn recv_stream(&self) -> super::RecvStream {
        super::RecvStream::new(self.sock.clone())
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

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.local_addr()?)
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.sock.sock_ref().set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.sock.sock_ref().tcp_nodelay()
    }

    /// Splits into a read half and a write half that can move to different
    /// tasks. [`OwnedReadHalf::reunite`] puts them back together. Bytes the
    /// stream's `AsyncRead` had buffered stay with the read half.
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

    /// Splits into a read half and a write half borrowed from the stream,
    /// for reading and writing at once in one task (`join`/`select`) without
    /// the `Arc` of [`into_split`](TcpStream::into_split). The halves share
    /// the stream's `AsyncRead`/`AsyncWrite` state, so nothing buffered is
    /// lost either way.
    ///
    /// With futures' `AsyncReadExt` in scope, `stream.split()` resolves to
    /// its by-value `split` (a method taking `self` is found before one
    /// taking `&mut self`); write `TcpStream::split(&mut stream)`.
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

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("socket", &self.sock)
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

/// The read half of a [`TcpStream`], from [`TcpStream::into_split`].
pub struct OwnedReadHalf {
    sock: Arc<Socket>,
    compat: ReadCompat,
}

/// The write half of a [`TcpStream`], from [`TcpStream::into_split`].
/// Dropping it does not shut the connection down; call
/// [`shutdown`](OwnedWriteHalf::shutdown).
pub struct OwnedWriteHalf {
    sock: Arc<Socket>,
    compat: WriteCompat,
}

/// The read half of a [`TcpStream`], borrowed by [`TcpStream::split`].
pub struct ReadHalf<'a> {
    sock: &'a Arc<Socket>,
    compat: &'a mut ReadCompat,
}

/// The write half of a [`TcpStream`], borrowed by [`TcpStream::split`].
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
        f.write_str("tried to reunite halves of different TcpStreams")
    }
}

impl std::error::Error for ReuniteError {}

impl OwnedReadHalf {
    /// Reads into `buf`; see [`TcpStream::read`].
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv(buf).await
    }

    /// A stream of received chunks in pooled buffers; see
    /// [`TcpStream::recv_stream`].
    pub fn recv_stream(&self) -> super::RecvStream {
        super::RecvStream::new(self.sock.clone())
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.local_addr()?)
    }

    /// Puts the stream back together, if `write` is its other half.
    pub fn reunite(self, write: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        if !Arc::ptr_eq(&self.sock, &write.sock) {
            return Err(ReuniteError(self, write));
        }
        Ok(TcpStream {
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
    /// Writes some of `buf`; see [`TcpStream::write`].
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        compat::send(self.write_parts(), buf).await
    }

    /// Writes all of `buf`; see [`TcpStream::write_all`].
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        compat::send_all(self.write_parts(), buf).await
    }

    /// Shuts down the write side: the peer reads end of stream, after
    /// every byte written before (see the stream's `shutdown`).
    pub fn shutdown(&self) -> io::Result<()> {
        compat::shutdown(self.write_parts(), Shutdown::Write)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.local_addr()?)
    }

    pub(crate) fn compat_write(&mut self) -> (&Arc<Socket>, &mut WriteCompat) {
        (&self.sock, &mut self.compat)
    }
}

impl ReadHalf<'_> {
    /// Reads into `buf`; see [`TcpStream::read`].
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.sock.recv(buf).await
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.local_addr()?)
    }

    pub(crate) fn compat_read(&mut self) -> (&Arc<Socket>, &mut ReadCompat) {
        (self.sock, &mut *self.compat)
    }
}

impl WriteHalf<'_> {
    /// Writes some of `buf`; see [`TcpStream::write`].
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        compat::send(self.write_parts(), buf).await
    }

    /// Writes all of `buf`; see [`TcpStream::write_all`].
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        compat::send_all(self.write_parts(), buf).await
    }

    /// Shuts down the write side: the peer reads end of stream, after
    /// every byte written before (see the stream's `shutdown`).
    pub fn shutdown(&self) -> io::Result<()> {
        compat::shutdown(self.write_parts(), Shutdown::Write)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet(&self.sock.local_addr()?)
    }

    pub(crate) fn compat_write(&mut self) -> (&Arc<Socket>, &mut WriteCompat) {
        (self.sock, &mut *self.compat)
    }
}

impl fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedReadHalf")
            .field("socket", &self.sock)
            .finish()
    }
}

impl fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedWriteHalf")
            .field("socket", &self.sock)
            .finish()
    }
}

impl fmt::Debug for ReadHalf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHalf")
            .field("socket", &self.sock)
            .finish()
    }
}

impl fmt::Debug for WriteHalf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteHalf")
            .field("socket", &self.sock)
            .finish()
    }
}

write_parts!(TcpStream, OwnedWriteHalf, WriteHalf<'_>);

owned_io!(
    read: TcpStream, &TcpStream, OwnedReadHalf, &OwnedReadHalf, ReadHalf<'_>;
    write: TcpStream, &TcpStream, OwnedWriteHalf, &OwnedWriteHalf, WriteHalf<'_>
);
