//! A socket on either driver, and its operations.
//!
//! Under io_uring a socket is a plain blocking fd (the ring never blocks on
//! it) and every operation is a submitted op; under epoll the fd is
//! non-blocking and registered with a worker's poll, and operations are
//! syscalls retried on readiness. Both are weft await points: they spend
//! coop budget and end with the scope's cancellation (see `io::uring::
//! Cancellable` and `poll_epoll`).

use std::{
    future::poll_fn,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    task::{Context, Poll},
};

use io_uring::{opcode, types::Fd};
use socket2::{Domain, SockAddr, SockRef, Type};

use super::addr::RawAddr;
use crate::{
    cancel, coop,
    io::{
        epoll::{Direction, Registration},
        uring::{self, Cancellable, Op, OpData},
        Driver, IoBuf, IoBufMut,
    },
    runtime::dump::{self, Awaiting, IoOp},
};

/// A socket and how it is driven. On drop an epoll registration is dropped
/// (deregistered) before the fd closes; an io_uring socket's fd closes
/// through `uring::close_socket`, once no queued entry can still name it.
pub(crate) struct Socket {
    kind: Kind,
    fd: std::mem::ManuallyDrop<OwnedFd>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Drops an epoll registration first.
        let kind = std::mem::replace(&mut self.kind, Kind::Uring);
        let uring = matches!(kind, Kind::Uring);
        drop(kind);
        // SAFETY: taken once, here; the field is not used afterwards.
        let fd = unsafe { std::mem::ManuallyDrop::take(&mut self.fd) };
        if uring {
            uring::close_socket(fd);
        } else {
            drop(fd);
        }
    }
}

enum Kind {
    Uring,
    Epoll(Registration),
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("fd", &self.fd.as_raw_fd())
            .field(
                "driver",
                &match self.kind {
                    Kind::Uring => Driver::Uring,
                    Kind::Epoll(_) => Driver::Epoll,
                },
            )
            .finish()
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub(super) fn cvt_size(rc: isize) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

struct BufData<B>(B);
impl<B: IoBuf> OpData for BufData<B> {}

struct AcceptData(RawAddr);
impl OpData for AcceptData {
    fn orphaned(&mut self, res: i32) {
        // A cancelled accept that completed anyway: close what it got.
        uring::close_fd(res);
    }
}

struct ConnectData(RawAddr);
impl OpData for ConnectData {}

/// `recvmsg`/`sendmsg` state; the header points into the struct itself,
/// which lives at a fixed address inside its op cell.
struct MsgData<B> {
    buf: B,
    addr: RawAddr,
    iov: libc::iovec,
    msg: libc::msghdr,
}

// SAFETY: the raw pointers in `iov` and `msg` point into this struct and
// its buffer, which move with it; nothing else aliases them.
unsafe impl<B: Send> Send for MsgData<B> {}
impl<B: IoBuf> OpData for MsgData<B> {}

impl<B: IoBuf> MsgData<B> {
    fn new(buf: B, addr: RawAddr) -> Self {
        MsgData {
            buf,
            addr,
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: all-zero is a valid msghdr.
            msg: unsafe { std::mem::zeroed() },
        }
    }

    /// Points the header at the buffer and address, at their final place.
    fn link(&mut self, ptr: *mut u8, len: usize, with_addr: bool) -> *mut libc::msghdr {
        self.iov.iov_base = ptr.cast();
        self.iov.iov_len = len;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        if with_addr {
            self.msg.msg_name = self.addr.as_mut_ptr().cast();
            self.msg.msg_namelen = self.addr.len;
        }
        &mut self.msg
    }
}

/// Waits until the scope is cancelled or `op` succeeds on readiness.
async fn poll_epoll<R>(
    reg: &Registration,
    dir: Direction,
    kind: IoOp,
    mut op: impl FnMut() -> io::Result<R>,
    drained: impl Fn(&R) -> bool,
) -> io::Result<R> {
    poll_fn(|cx: &mut Context<'_>| poll_epoll_once(reg, cx, dir, kind, &mut op, &drained)).await
}

/// One poll of a readiness-driven operation, as a weft await point.
pub(super) fn poll_epoll_once<R>(
    reg: &Registration,
    cx: &mut Context<'_>,
    dir: Direction,
    kind: IoOp,
    op: impl FnMut() -> io::Result<R>,
    drained: impl Fn(&R) -> bool,
) -> Poll<io::Result<R>> {
    let restore = std::task::ready!(coop::poll_proceed(cx));
    if let Some(c) = cancel::poll_cancelled(None, false) {
        restore.made_progress();
        return Poll::Ready(Err(c.into()));
    }
    match reg.io().poll_io(cx, dir, op, drained) {
        Poll::Ready(res) => {
            restore.made_progress();
            Poll::Ready(res)
        }
        Poll::Pending => {
            // About to wait: make sure the scope's deadline will end the
            // wait (arms its timer once).
            if let Some(c) = cancel::poll_cancelled(None, true) {
                return Poll::Ready(Err(c.into()));
            }
            dump::awaiting(cx.waker(), Awaiting::Io(kind));
            Poll::Pending
        }
    }
}

impl Socket {
    /// A new socket for the current runtime's driver (close-on-exec; and
    /// non-blocking under epoll).
    pub(crate) fn new(domain: Domain, ty: Type) -> io::Result<Socket> {
        let kind = crate::io::current_kind()?;
        let ty = if kind == Driver::Epoll {
            ty.nonblocking()
        } else {
            ty
        };
        let sock = socket2::Socket::new(domain, ty.cloexec(), None)?;
        Socket::with_kind(sock.into(), kind)
    }

    /// Adopts an fd (from std, socket2, or an accept) for the current
    /// runtime: blocking under io_uring, non-blocking under epoll.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Socket> {
        let kind = crate::io::current_kind()?;
        SockRef::from(&fd).set_nonblocking(kind == Driver::Epoll)?;
        Socket::with_kind(fd, kind)
    }

    fn with_kind(fd: OwnedFd, kind: Driver) -> io::Result<Socket> {
        let kind = match kind {
            Driver::Epoll => Kind::Epoll(crate::io::register_epoll(fd.as_raw_fd())?),
            _ => Kind::Uring,
        };
        Ok(Socket {
            kind,
            fd: std::mem::ManuallyDrop::new(fd),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn is_uring(&self) -> bool {
        matches!(self.kind, Kind::Uring)
    }

    /// The epoll registration (`None` for an io_uring socket).
    pub(super) fn registration(&self) -> Option<&Registration> {
        match &self.kind {
            Kind::Epoll(reg) => Some(reg),
            Kind::Uring => None,
        }
    }

    /// socket2's view of the socket, for set-up and options.
    pub(crate) fn sock_ref(&self) -> SockRef<'_> {
        SockRef::from(&*self.fd)
    }

    pub(crate) fn local_addr(&self) -> io::Result<SockAddr> {
        self.sock_ref().local_addr()
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SockAddr> {
        self.sock_ref().peer_addr()
    }

    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.sock_ref().shutdown(how)
    }

    /// Binds (and for listeners, listens) synchronously: these never block.
    pub(crate) fn bind(&self, addr: &SockAddr) -> io::Result<()> {
        self.sock_ref().bind(addr)
    }

    pub(crate) fn listen(&self, backlog: i32) -> io::Result<()> {
        self.sock_ref().listen(backlog)
    }

    /// Readiness-style receive into a borrowed slice (epoll sockets only;
    /// the compatibility traits use it to avoid a copy).
    ///
    /// # Safety
    /// `ptr` is valid for `len` bytes of writes for the duration of the call
    /// (it may be uninitialised: the kernel only writes to it).
    pub(crate) unsafe fn poll_recv_raw(
        &self,
        cx: &mut Context<'_>,
        ptr: *mut u8,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let Kind::Epoll(reg) = &self.kind else {
            unreachable!("poll_recv_raw on an io_uring socket");
        };
        let fd = self.fd();
        poll_epoll_once(
            reg,
            cx,
            Direction::Read,
            IoOp::Read,
            || {
                // SAFETY: `ptr` is valid for `len` bytes of writes (the
                // caller's contract).
                cvt_size(unsafe { libc::recv(fd, ptr.cast(), len, 0) })
            },
            |n| *n > 0 && *n < len,
        )
    }

    /// An io_uring socket's eager send from a borrowed slice, as an await
    /// point that does not wait: `None` when the ring should take the send
    /// (the socket buffer is full), else the send's result (or the scope's
    /// cancellation). Only the compat traits (hyper, futures-io, tokio-io)
    /// use it: their caller lends a slice, and one `send` from it costs less
    /// than copying it into the stream's buffer for a ring op. The native
    /// owned-buffer `write` always goes through the ring (docs/IO.md).
    pub(crate) fn try_send_now(&self, buf: &[u8]) -> Option<io::Result<usize>> {
        debug_assert!(self.is_uring());
        if let Err(c) = cancel::check() {
            return Some(Err(c.into()));
        }
        if buf.is_empty() {
            return None;
        }
        // SAFETY: `buf` holds `buf.len()` initialised bytes; MSG_DONTWAIT
        // makes this one call non-blocking on the blocking fd.
        let rc = unsafe {
            libc::send(
                self.fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if rc > 0 {
            return Some(Ok(rc as usize));
        }
        let err = io::Error::last_os_error();
        if rc < 0 && err.kind() != io::ErrorKind::WouldBlock {
            return Some(Err(err));
        }
        None
    }

    /// Readiness-style send from a borrowed slice (epoll sockets only).
    pub(crate) fn poll_send_slice(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Kind::Epoll(reg) = &self.kind else {
            unreachable!("poll_send_slice on an io_uring socket");
        };
        let fd = self.fd();
        let len = buf.len();
        poll_epoll_once(
            reg,
            cx,
            Direction::Write,
            IoOp::Write,
            || {
                // SAFETY: `buf` holds `len` initialised bytes.
                cvt_size(unsafe {
                    libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)
                })
            },
            |n| *n < len,
        )
    }

    /// Receives into `buf[0..bytes_total]` from a stream socket.
    pub(crate) async fn recv<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.recv_inner(buf, true).await
    }

    /// Receives one datagram into `buf[0..bytes_total]` (from the connected
    /// peer).
    pub(crate) async fn recv_datagram<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        self.recv_inner(buf, false).await
    }

    /// A receive; on a stream socket a read shorter than the buffer shows
    /// it was emptied (epoll clears readiness at once). A short datagram
    /// shows nothing about the ones queued behind it.
    async fn recv_inner<B: IoBufMut>(&self, mut buf: B, stream: bool) -> (io::Result<usize>, B) {
        let fd = self.fd();
        match &self.kind {
            Kind::Uring => {
                let timeout = match uring::prelude() {
                    Ok(t) => t,
                    Err(c) => return (Err(c.into()), buf),
                };
                let op = Op::submit(BufData(buf), timeout, |d| recv_entry(fd, d));
                let (res, BufData(mut buf)) = match op {
                    Ok(op) => Cancellable::new(op, IoOp::Read).await,
                    Err((e, BufData(buf))) => return (Err(e), buf),
                };
                let res = finish(res);
                if let Ok(n) = res {
                    // SAFETY: the kernel wrote `n` bytes at the start.
                    unsafe { buf.set_init(n) };
                }
                (res, buf)
            }
            Kind::Epoll(reg) => {
                let ptr = buf.stable_mut_ptr() as usize;
                let total = buf.bytes_total();
                let res = poll_epoll(
                    reg,
                    Direction::Read,
                    IoOp::Read,
                    || {
                        // SAFETY: the buffer is valid for `total` bytes of writes
                        // and owned by this call.
                        cvt_size(unsafe { libc::recv(fd, ptr as *mut libc::c_void, total, 0) })
                    },
                    |n| stream && *n > 0 && *n < total,
                )
                .await;
                if let Ok(n) = res {
                    // SAFETY: the kernel wrote `n` bytes at the start.
                    unsafe { buf.set_init(n) };
                }
                (res, buf)
            }
        }
    }

    /// Sends `buf[0..bytes_init]` (some of it: see the count).
    pub(crate) async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.send_at(buf, 0).await
    }

    /// Sends `buf[offset..bytes_init]`.
    pub(crate) async fn send_at<B: IoBuf>(&self, buf: B, offset: usize) -> (io::Result<usize>, B) {
        let fd = self.fd();
        let len = buf.bytes_init().saturating_sub(offset);
        match &self.kind {
            Kind::Uring => {
                let timeout = match uring::prelude() {
                    Ok(t) => t,
                    Err(c) => return (Err(c.into()), buf),
                };
                // Through the ring like every op: the worker submits the
                // round's entries in one enter (see docs/IO.md, Batching).
                let op = Op::submit(BufData(buf), timeout, |d| {
                    // SAFETY: offset <= bytes_init, inside the buffer.
                    let ptr = unsafe { d.0.stable_ptr().add(offset.min(d.0.bytes_init())) };
                    opcode::Send::new(Fd(fd), ptr, len.min(u32::MAX as usize) as u32)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                });
                match op {
                    Ok(op) => {
                        let (res, BufData(buf)) = Cancellable::new(op, IoOp::Write).await;
                        (finish(res), buf)
                    }
                    Err((e, BufData(buf))) => (Err(e), buf),
                }
            }
            Kind::Epoll(reg) => {
                // SAFETY: as above.
                let ptr = unsafe { buf.stable_ptr().add(offset.min(buf.bytes_init())) } as usize;
                let res = poll_epoll(
                    reg,
                    Direction::Write,
                    IoOp::Write,
                    || {
                        // SAFETY: `len` initialised bytes at `ptr`, owned by
                        // this call.
                        cvt_size(unsafe {
                            libc::send(fd, ptr as *const libc::c_void, len, libc::MSG_NOSIGNAL)
                        })
                    },
                    |n| *n < len,
                )
                .await;
                (res, buf)
            }
        }
    }

    /// Sends all of `buf[0..bytes_init]`.
    pub(crate) async fn send_all<B: IoBuf>(&self, mut buf: B) -> (io::Result<()>, B) {
        let total = buf.bytes_init();
        let mut sent = 0;
        while sent < total {
            let (res, b) = self.send_at(buf, sent).await;
            buf = b;
            match res {
                Ok(0) => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the peer accepted no more bytes",
                        )),
                        buf,
                    )
                }
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted && !is_cancellation(&e) => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Connects to `addr`.
    pub(crate) async fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        let fd = self.fd();
        match &self.kind {
            Kind::Uring => {
                let timeout = uring::prelude()?;
                let op = Op::submit(ConnectData(RawAddr::from_sockaddr(addr)), timeout, |d| {
                    opcode::Connect::new(Fd(fd), d.0.as_ptr(), d.0.len).build()
                })
                .map_err(|(e, _)| e)?;
                let (res, _) = Cancellable::new(op, IoOp::Connect).await;
                finish(res).map(drop)
            }
            Kind::Epoll(reg) => {
                match self.sock_ref().connect(addr) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    Err(e) => return Err(e),
                }
                poll_epoll(
                    reg,
                    Direction::Write,
                    IoOp::Connect,
                    || {
                        match self.sock_ref().take_error()? {
                            None => {
                                // Writable with no error: connected, unless the
                                // event was for something else.
                                match self.peer_addr() {
                                    Ok(_) => Ok(()),
                                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                                        Err(io::ErrorKind::WouldBlock.into())
                                    }
                                    Err(e) => Err(e),
                                }
                            }
                            Some(err) => Err(err),
                        }
                    },
                    |_| false,
                )
                .await
            }
        }
    }

    /// One accept (single shot).
    pub(crate) async fn accept(&self) -> io::Result<(OwnedFd, SockAddr)> {
        let fd = self.fd();
        match &self.kind {
            Kind::Uring => {
                let timeout = uring::prelude()?;
                let op = Op::submit(AcceptData(RawAddr::empty()), timeout, |d| {
                    opcode::Accept::new(Fd(fd), d.0.as_mut_ptr(), &mut d.0.len)
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                })
                .map_err(|(e, _)| e)?;
                let (res, data) = Cancellable::new(op, IoOp::Accept).await;
                let new_fd = finish(res)?;
                // SAFETY: the kernel handed us this fd.
                let new_fd = unsafe { OwnedFd::from_raw_fd(new_fd as RawFd) };
                Ok((new_fd, data.0.into_sockaddr()))
            }
            Kind::Epoll(reg) => {
                poll_epoll(
                    reg,
                    Direction::Read,
                    IoOp::Accept,
                    || {
                        let mut raw = RawAddr::empty();
                        // SAFETY: storage and length valid for the kernel to fill.
                        let new_fd = cvt(unsafe {
                            libc::accept4(
                                fd,
                                raw.as_mut_ptr(),
                                &mut raw.len,
                                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                            )
                        })?;
                        // SAFETY: a fresh fd we own.
                        let new_fd = unsafe { OwnedFd::from_raw_fd(new_fd) };
                        Ok((new_fd, raw.into_sockaddr()))
                    },
                    |_| false,
                )
                .await
            }
        }
    }

    /// Receives one datagram and its sender.
    pub(crate) async fn recv_from<B: IoBufMut>(
        &self,
        mut buf: B,
    ) -> (io::Result<(usize, SockAddr)>, B) {
        let fd = self.fd();
        match &self.kind {
            Kind::Uring => {
                let timeout = match uring::prelude() {
                    Ok(t) => t,
                    Err(c) => return (Err(c.into()), buf),
                };
                let op = Op::submit(MsgData::new(buf, RawAddr::empty()), timeout, |d| {
                    let ptr = d.buf.stable_mut_ptr();
                    let total = d.buf.bytes_total();
                    let msg = d.link(ptr, total, true);
                    opcode::RecvMsg::new(Fd(fd), msg).build()
                });
                let (res, data) = match op {
                    Ok(op) => Cancellable::new(op, IoOp::Read).await,
                    Err((e, data)) => return (Err(e), data.buf),
                };
                let MsgData {
                    mut buf,
                    mut addr,
                    msg,
                    ..
                } = data;
                let res = finish(res).map(|n| {
                    addr.len = msg.msg_namelen;
                    (n, addr.into_sockaddr())
                });
                if let Ok((n, _)) = res {
                    // SAFETY: the kernel wrote `n` bytes at the start.
                    unsafe { buf.set_init(n) };
                }
                (res, buf)
            }
            Kind::Epoll(reg) => {
                let ptr = buf.stable_mut_ptr() as usize;
                let total = buf.bytes_total();
                let res = poll_epoll(
                    reg,
                    Direction::Read,
                    IoOp::Read,
                    || {
                        let mut raw = RawAddr::empty();
                        // SAFETY: the buffer is valid for `total` bytes of writes;
                        // the address storage for the kernel to fill.
                        let n = cvt_size(unsafe {
                            libc::recvfrom(
                                fd,
                                ptr as *mut libc::c_void,
                                total,
                                0,
                                raw.as_mut_ptr(),
                                &mut raw.len,
                            )
                        })?;
                        Ok((n, raw.into_sockaddr()))
                    },
                    |_| false,
                )
                .await;
                if let Ok((n, _)) = res {
                    // SAFETY: the kernel wrote `n` bytes at the start.
                    unsafe { buf.set_init(n) };
                }
                (res, buf)
            }
        }
    }

    /// Sends one datagram to `addr` (or to the connected peer with `None`).
    pub(crate) async fn send_to<B: IoBuf>(
        &self,
        buf: B,
        addr: Option<SockAddr>,
    ) -> (io::Result<usize>, B) {
        let fd = self.fd();
        let len = buf.bytes_init();
        match &self.kind {
            Kind::Uring => {
                let timeout = match uring::prelude() {
                    Ok(t) => t,
                    Err(c) => return (Err(c.into()), buf),
                };
                let with_addr = addr.is_some();
                let raw = addr.map_or_else(RawAddr::empty, |a| RawAddr::from_sockaddr(&a));
                let op = Op::submit(MsgData::new(buf, raw), timeout, |d| {
                    let ptr = d.buf.stable_ptr() as *mut u8;
                    let msg = d.link(ptr, len, with_addr);
                    opcode::SendMsg::new(Fd(fd), msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build()
                });
                match op {
                    Ok(op) => {
                        let (res, data) = Cancellable::new(op, IoOp::Write).await;
                        (finish(res), data.buf)
                    }
                    Err((e, data)) => (Err(e), data.buf),
                }
            }
            Kind::Epoll(reg) => {
                let ptr = buf.stable_ptr() as usize;
                let raw = addr.map(|a| RawAddr::from_sockaddr(&a));
                let res = poll_epoll(
                    reg,
                    Direction::Write,
                    IoOp::Write,
                    || {
                        let (name, name_len) = match &raw {
                            Some(r) => (r.as_ptr(), r.len),
                            None => (std::ptr::null(), 0),
                        };
                        // SAFETY: `len` initialised bytes at `ptr`; a valid (or
                        // null) address.
                        cvt_size(unsafe {
                            libc::sendto(
                                fd,
                                ptr as *const libc::c_void,
                                len,
                                libc::MSG_NOSIGNAL,
                                name,
                                name_len,
                            )
                        })
                    },
                    |_| false,
                )
                .await;
                (res, buf)
            }
        }
    }
}

/// A uring result as an `io::Result` of a count.
/// The submission of a receive into `d`'s whole buffer.
fn recv_entry<B: IoBufMut>(fd: RawFd, d: &mut BufData<B>) -> io_uring::squeue::Entry {
    let total = d.0.bytes_total().min(u32::MAX as usize) as u32;
    opcode::Recv::new(Fd(fd), d.0.stable_mut_ptr(), total)
        .ioprio(uring::recv_ioprio())
        .build()
}

/// Why a receive was not submitted, and its buffer back.
type NotSubmitted = (io::Error, Vec<u8>);

/// [`Socket::recv`] into a `Vec` on an io_uring socket, as a named future
/// that holds the socket: the compat read traits keep it in their state
/// across polls, where the `async fn` (which borrows the socket) had to be
/// boxed, one allocation per read.
pub(crate) struct RecvOwned {
    /// The op, or why it was not submitted (taken by the poll that reports it).
    op: Result<Cancellable<BufData<Vec<u8>>>, Option<NotSubmitted>>,
    /// Keeps the socket, and so its fd, open while the op may be in flight
    /// (declared after `op`: dropped after it, as the boxed future did).
    _sock: std::sync::Arc<Socket>,
}

impl Socket {
    /// Starts [`Socket::recv`] of a stream socket into `buf` (io_uring
    /// only): the scope check and the submission happen now, in the caller's
    /// poll, as on the first poll of `recv`.
    pub(crate) fn recv_owned(self: &std::sync::Arc<Self>, buf: Vec<u8>) -> RecvOwned {
        debug_assert!(self.is_uring());
        let fd = self.fd();
        let op = match uring::prelude() {
            Err(c) => Err(Some((c.into(), buf))),
            Ok(timeout) => Op::submit(BufData(buf), timeout, |d| recv_entry(fd, d))
                .map(|op| Cancellable::new(op, IoOp::Read))
                .map_err(|(e, BufData(buf))| Some((e, buf))),
        };
        RecvOwned {
            op,
            _sock: self.clone(),
        }
    }
}

impl std::future::Future for RecvOwned {
    type Output = (io::Result<usize>, Vec<u8>);

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.op {
            Err(failed) => {
                let (e, buf) = failed.take().expect("RecvOwned polled after it completed");
                Poll::Ready((Err(e), buf))
            }
            Ok(op) => {
                let (res, BufData(mut buf)) = std::task::ready!(std::pin::Pin::new(op).poll(cx));
                let res = finish(res);
                if let Ok(n) = res {
                    // SAFETY: the kernel wrote `n` bytes at the start.
                    unsafe { buf.set_init(n) };
                }
                Poll::Ready((res, buf))
            }
        }
    }
}

fn finish(res: Result<i32, cancel::Cancelled>) -> io::Result<usize> {
    match res {
        Ok(res) => uring::check(res).map(|n| n as usize),
        Err(c) => Err(c.into()),
    }
}

/// True if `err` reports a cancelled scope (as opposed to `EINTR`).
pub(crate) fn is_cancellation(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.downcast_ref::<cancel::Cancelled>().is_some())
}
