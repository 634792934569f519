//! Socket operations as types.
//!
//! Each operation (receive, send, connect, accept, and the message forms
//! that carry an address) is one type holding what it lends the kernel,
//! with both of its forms side by side:
//!
//! - **io_uring**: the value moves into its op cell, where it stays at a
//!   fixed address until the completion; [`SockOp::entry`] builds the
//!   submission from it there.
//! - **epoll**: the value lives in the awaiting future; [`SockOp::attempt`]
//!   is the same operation as one non-blocking syscall, retried whenever the
//!   socket turns ready.
//!
//! Either way [`SockOp::finish`] turns the raw result (a count, or an fd)
//! into what the caller gets, and hands the buffer back. Only
//! [`Run`](super::sys::Run) looks at which driver a socket uses; adding an
//! operation means adding a type here, not a branch in every method.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use io_uring::{opcode, squeue, types::Fd};
use socket2::{SockAddr, SockRef};

use super::addr::RawAddr;
use crate::{
    io::{epoll::Direction, uring, uring::OpData, IoBuf, IoBufMut},
    runtime::dump::IoOp,
};

/// One socket operation, in its io_uring and its epoll form.
pub(crate) trait SockOp: OpData + Sized {
    /// What the caller gets back.
    type Output;
    /// What the task dump shows while the operation waits.
    const KIND: IoOp;
    /// The readiness the epoll form waits for.
    const DIR: Direction;

    /// io_uring: the submission, built with `self` at its final address
    /// (inside its op cell), where the kernel may read and write it until
    /// the completion.
    fn entry(&mut self, fd: Fd) -> squeue::Entry;

    /// epoll: a step taken once, before any wait for readiness; `None`
    /// goes on to wait. Only connect needs one (its syscall starts the
    /// handshake, which readiness then reports the end of).
    fn start(&mut self, _fd: BorrowedFd<'_>) -> Option<io::Result<usize>> {
        None
    }

    /// epoll: the operation as one non-blocking syscall; `WouldBlock` waits
    /// for readiness and tries again.
    fn attempt(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize>;

    /// epoll: a successful result `n` with `0 < n < drained_below()` shows
    /// the attempt emptied (or filled) the socket's buffer, so readiness is
    /// cleared at once instead of costing one more `EAGAIN`; 0 never does.
    fn drained_below(&self) -> usize {
        0
    }

    /// The caller's result from the raw one (a count, or an accepted fd),
    /// or from the error that ended the operation (the scope's
    /// cancellation included).
    fn finish(self, res: io::Result<usize>) -> Self::Output;
}

/// A receive into the whole of `buf[0..bytes_total]`.
pub(crate) struct Recv<B> {
    buf: B,
    /// A stream socket: a short read shows it was emptied. A short datagram
    /// shows nothing about the ones queued behind it.
    stream: bool,
}

impl<B: IoBufMut> Recv<B> {
    pub(crate) fn stream(buf: B) -> Self {
        Recv { buf, stream: true }
    }

    pub(crate) fn datagram(buf: B) -> Self {
        Recv { buf, stream: false }
    }
}

impl<B: IoBufMut> OpData for Recv<B> {}

impl<B: IoBufMut> SockOp for Recv<B> {
    type Output = (io::Result<usize>, B);
    const KIND: IoOp = IoOp::Read;
    const DIR: Direction = Direction::Read;

    fn entry(&mut self, fd: Fd) -> squeue::Entry {
        let total = self.buf.bytes_total().min(u32::MAX as usize) as u32;
        opcode::Recv::new(fd, self.buf.stable_mut_ptr(), total)
            .ioprio(uring::recv_ioprio())
            .build()
    }

    fn attempt(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let total = self.buf.bytes_total();
        // SAFETY: the buffer is valid for `total` bytes of writes and owned
        // by this operation.
        unsafe { recv_raw(fd, self.buf.stable_mut_ptr(), total) }
    }

    fn drained_below(&self) -> usize {
        if self.stream {
            self.buf.bytes_total()
        } else {
            0
        }
    }

    fn finish(mut self, res: io::Result<usize>) -> Self::Output {
        if let Ok(n) = res {
            // SAFETY: the kernel wrote `n` bytes at the start.
            unsafe { self.buf.set_init(n) };
        }
        (res, self.buf)
    }
}

/// A send of `buf[offset..bytes_init]` (some of it: see the count).
pub(crate) struct Send<B> {
    buf: B,
    offset: usize,
    /// io_uring: `MSG_WAITALL`, so the kernel retries a short send on a
    /// stream socket until all of it went (or it fails) and one completion
    /// reports the whole: what a send nobody waits for needs (the compat
    /// write-behind). Kernels that ignore the flag report a short count,
    /// which its owner sends on from.
    all: bool,
}

impl<B: IoBuf> Send<B> {
    pub(crate) fn at(buf: B, offset: usize) -> Self {
        let offset = offset.min(buf.bytes_init());
        Send {
            buf,
            offset,
            all: false,
        }
    }

    /// As [`at`](Self::at), asking io_uring for all of it in one completion.
    pub(crate) fn all_at(buf: B, offset: usize) -> Self {
        Send {
            all: true,
            ..Send::at(buf, offset)
        }
    }

    fn ptr_len(&self) -> (*const u8, usize) {
        // SAFETY: `offset <= bytes_init` (clamped in `at`): inside the buffer.
        let ptr = unsafe { self.buf.stable_ptr().add(self.offset) };
        (ptr, self.buf.bytes_init() - self.offset)
    }
}

impl<B: IoBuf> OpData for Send<B> {}

impl<B: IoBuf> SockOp for Send<B> {
    type Output = (io::Result<usize>, B);
    const KIND: IoOp = IoOp::Write;
    const DIR: Direction = Direction::Write;

    fn entry(&mut self, fd: Fd) -> squeue::Entry {
        let (ptr, len) = self.ptr_len();
        let flags = if self.all {
            libc::MSG_NOSIGNAL | libc::MSG_WAITALL
        } else {
            libc::MSG_NOSIGNAL
        };
        opcode::Send::new(fd, ptr, len.min(u32::MAX as usize) as u32)
            .flags(flags)
            .build()
    }

    fn attempt(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let (ptr, len) = self.ptr_len();
        // SAFETY: `len` initialised bytes at `ptr`, owned by this operation.
        unsafe { send_raw(fd, ptr, len, libc::MSG_NOSIGNAL) }
    }

    fn drained_below(&self) -> usize {
        self.ptr_len().1
    }

    fn finish(self, res: io::Result<usize>) -> Self::Output {
        (res, self.buf)
    }
}

/// A stream socket's connect.
pub(crate) struct Connect {
    addr: RawAddr,
}

impl Connect {
    pub(crate) fn new(addr: &SockAddr) -> Self {
        Connect {
            addr: RawAddr::from_sockaddr(addr),
        }
    }
}

impl OpData for Connect {}

impl SockOp for Connect {
    type Output = io::Result<()>;
    const KIND: IoOp = IoOp::Connect;
    const DIR: Direction = Direction::Write;

    fn entry(&mut self, fd: Fd) -> squeue::Entry {
        opcode::Connect::new(fd, self.addr.as_ptr(), self.addr.len).build()
    }

    fn start(&mut self, fd: BorrowedFd<'_>) -> Option<io::Result<usize>> {
        // SAFETY: a valid address and its length.
        match cvt(unsafe { libc::connect(fd.as_raw_fd(), self.addr.as_ptr(), self.addr.len) }) {
            Ok(_) => Some(Ok(0)),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn attempt(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let sock = SockRef::from(&fd);
        if let Some(err) = sock.take_error()? {
            return Err(err);
        }
        // Writable with no error: connected, unless the event was for
        // something else.
        match sock.peer_addr() {
            Ok(_) => Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(e),
        }
    }

    fn finish(self, res: io::Result<usize>) -> Self::Output {
        res.map(drop)
    }
}

/// One accept (single shot): the new socket (close-on-exec; non-blocking
/// under epoll, which registers it) and its peer's address.
pub(crate) struct Accept {
    addr: RawAddr,
}

impl Accept {
    pub(crate) fn new() -> Self {
        Accept {
            addr: RawAddr::empty(),
        }
    }
}

impl OpData for Accept {
    fn orphaned(&mut self, res: i32) {
        // A cancelled accept that completed anyway: close what it got.
        uring::close_fd(res);
    }
}

impl SockOp for Accept {
    type Output = io::Result<(OwnedFd, SockAddr)>;
    const KIND: IoOp = IoOp::Accept;
    const DIR: Direction = Direction::Read;

    fn entry(&mut self, fd: Fd) -> squeue::Entry {
        opcode::Accept::new(fd, self.addr.as_mut_ptr(), &mut self.addr.len)
            .flags(libc::SOCK_CLOEXEC)
            .build()
    }

    fn attempt(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.addr = RawAddr::empty();
        // SAFETY: storage and length valid for the kernel to fill.
        let new_fd = cvt(unsafe {
            libc::accept4(
                fd.as_raw_fd(),
                self.addr.as_mut_ptr(),
                &mut self.addr.len,
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        })?;
        Ok(new_fd as usize)
    }

    fn finish(self, res: io::Result<usize>) -> Self::Output {
        let new_fd = res?;
        // SAFETY: the kernel handed us this fd (in this same poll: nothing
        // else has seen it).
        let new_fd = unsafe { OwnedFd::from_raw_fd(new_fd as i32) };
        Ok((new_fd, self.addr.into_sockaddr()))
    }
}

/// `recvmsg`/`sendmsg`: one datagram with its peer's address. The header
/// points into the struct itself, so it is linked where the struct stands
/// when the kernel gets it (in its op cell under io_uring, in the awaiting
/// future for each epoll attempt).
pub(crate) struct Msg<B> {
    buf: B,
    addr: RawAddr,
    /// A send to `addr` (else to the connected peer); a receive always
    /// takes the sender's address.
    with_addr: bool,
    iov: libc::iovec,
    msg: libc::msghdr,
}

// SAFETY: the raw pointers in `iov` and `msg` point into this struct and
// its buffer, which move with it; nothing else aliases them.
unsafe impl<B: std::marker::Send> std::marker::Send for Msg<B> {}

impl<B> Msg<B> {
    fn new(buf: B, addr: RawAddr, with_addr: bool) -> Self {
        Msg {
            buf,
            addr,
            with_addr,
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: all-zero is a valid msghdr.
            msg: unsafe { std::mem::zeroed() },
        }
    }

    /// Points the header at the buffer and address, where they stand now.
    fn link(&mut self, ptr: *mut u8, len: usize) -> *mut libc::msghdr {
        self.iov.iov_base = ptr.cast();
        self.iov.iov_len = len;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        if self.with_addr {
            self.msg.msg_name = self.addr.as_mut_ptr().cast();
            self.msg.msg_namelen = self.addr.len;
        }
        &mut self.msg
    }
}

/// A receive of one datagram and its sender's address.
pub(crate) struct RecvFrom<B>(Msg<B>);

impl<B: IoBufMut> RecvFrom<B> {
    pub(crate) fn new(buf: B) -> Self {
        RecvFrom(Msg::new(buf, RawAddr::empty(), true))
    }

    fn link(&mut self) -> *mut libc::msghdr {
        let ptr = self.0.buf.stable_mut_ptr();
        let total = self.0.buf.bytes_total();
        self.0.link(ptr, total)
    }
}

impl<B: IoBufMut> OpData for RecvFrom<B> {}

impl<B: IoBufMut> SockOp for RecvFrom<B> {
    type Output = (io::Result<(usize, SockAddr)>, B);
    const KIND: IoOp = IoOp::Read;
    const DIR: Direction = Direction::Read;

    fn entry(&mut self, fd: Fd) -> squeue::Entry {
        opcode::RecvMsg::new(fd, self.link()).build()
    }

    fn attempt(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.0.addr = RawAddr::empty();
        let msg = self.link();
        // SAFETY: the header points at the buffer (valid for its
        // `bytes_total` bytes of writes) and the address storage, all owned
        // by this operation.
        cvt_size(unsafe { libc::recvmsg(fd.as_raw_fd(), msg, 0) })
    }

    fn finish(self, res: io::Result<usize>) -> Self::Output {
        let Msg {
            mut buf,
            mut addr,
            msg,
            ..
        } = self.0;
        let res = res.map(|n| {
            addr.len = msg.msg_namelen;
            // SAFETY: the kernel wrote `n` bytes at the start.
            unsafe { buf.set_init(n) };
            (n, addr.into_sockaddr())
        });
        (res, buf)
    }
}

/// A send of one datagram, to an address or to the connected peer.
pub(crate) struct SendTo<B>(Msg<B>);

impl<B: IoBuf> SendTo<B> {
    pub(crate) fn new(buf: B, addr: Option<SockAddr>) -> Self {
        let with_addr = addr.is_some();
        let raw = addr.map_or_else(RawAddr::empty, |a| RawAddr::from_sockaddr(&a));
        SendTo(Msg::new(buf, raw, with_addr))
    }

    fn link(&mut self) -> *mut libc::msghdr {
        // The kernel only reads through a send's iovec.
        let ptr = self.0.buf.stable_ptr() as *mut u8;
        let len = self.0.buf.bytes_init();
        self.0.link(ptr, len)
    }
}

impl<B: IoBuf> OpData for SendTo<B> {}

impl<B: IoBuf> SockOp for SendTo<B> {
    type Output = (io::Result<usize>, B);
    const KIND: IoOp = IoOp::Write;
    const DIR: Direction = Direction::Write;

    fn entry(&mut self, fd: Fd) -> squeue::Entry {
        opcode::SendMsg::new(fd, self.link())
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }

    fn attempt(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let msg = self.link();
        // SAFETY: the header points at `bytes_init` initialised bytes and a
        // valid (or no) address, all owned by this operation.
        cvt_size(unsafe { libc::sendmsg(fd.as_raw_fd(), msg, libc::MSG_NOSIGNAL) })
    }

    fn finish(self, res: io::Result<usize>) -> Self::Output {
        (res, self.0.buf)
    }
}

/// `recv(2)` into raw memory.
///
/// # Safety
/// `ptr` is valid for `len` bytes of writes for the duration of the call
/// (it may be uninitialised: the kernel only writes to it).
pub(crate) unsafe fn recv_raw(fd: BorrowedFd<'_>, ptr: *mut u8, len: usize) -> io::Result<usize> {
    // SAFETY: the caller's contract.
    cvt_size(unsafe { libc::recv(fd.as_raw_fd(), ptr.cast(), len, 0) })
}

/// `send(2)` from raw memory.
///
/// # Safety
/// `ptr` holds `len` initialised bytes for the duration of the call.
pub(crate) unsafe fn send_raw(
    fd: BorrowedFd<'_>,
    ptr: *const u8,
    len: usize,
    flags: libc::c_int,
) -> io::Result<usize> {
    // SAFETY: the caller's contract.
    cvt_size(unsafe { libc::send(fd.as_raw_fd(), ptr.cast(), len, flags) })
}

pub(super) fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
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
