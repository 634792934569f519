//! A socket on either driver, and the future that runs its operations.
//!
//! Under io_uring a socket is a plain blocking fd (the ring never blocks on
//! it) and every operation is a submitted op; under epoll the fd is
//! non-blocking and registered with a worker's poll, and operations are
//! syscalls retried on readiness. The operations themselves are types in
//! `net/op.rs`; [`Run`] is the one place that picks the driver. Both
//! drivers' waits are weft await points: they spend coop budget and end
//! with the scope's cancellation (see `io::uring::Cancellable` and
//! `poll_epoll_once`).

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
    task::{Context, Poll, Waker},
};

use io_uring::types::Fd;
use socket2::{Domain, SockAddr, SockRef, Type};

use super::op::{recv_raw, send_raw, Accept, Connect, Recv, RecvFrom, Send, SendTo, SockOp};
use crate::{
    cancel, coop,
    io::{
        epoll::{Direction, Registration},
        uring::{self, Cancellable, Op},
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
    /// Its registered-file slot under io_uring (`io/uring/fixed.rs`).
    fixed: uring::FixedFile,
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
            self.fixed.release();
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
            fixed: uring::FixedFile::default(),
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
        let fd = self.as_fd();
        poll_epoll_once(
            reg,
            cx,
            Direction::Read,
            IoOp::Read,
            // SAFETY: `ptr` is valid for `len` bytes of writes (the
            // caller's contract).
            || unsafe { recv_raw(fd, ptr, len) },
            |n| *n > 0 && *n < len,
        )
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
        let fd = self.as_fd();
        let len = buf.len();
        poll_epoll_once(
            reg,
            cx,
            Direction::Write,
            IoOp::Write,
            // SAFETY: `buf` holds `len` initialised bytes.
            || unsafe { send_raw(fd, buf.as_ptr(), len, libc::MSG_NOSIGNAL) },
            |n| *n < len,
        )
    }

    /// Receives into `buf[0..bytes_total]` from a stream socket.
    pub(crate) fn recv<B: IoBufMut>(&self, buf: B) -> Run<&Socket, Recv<B>> {
        Run::new(self, Recv::stream(buf))
    }

    /// Receives one datagram into `buf[0..bytes_total]` (from the connected
    /// peer).
    pub(crate) fn recv_datagram<B: IoBufMut>(&self, buf: B) -> Run<&Socket, Recv<B>> {
        Run::new(self, Recv::datagram(buf))
    }

    /// Sends `buf[0..bytes_init]` (some of it: see the count).
    pub(crate) fn send<B: IoBuf>(&self, buf: B) -> Run<&Socket, Send<B>> {
        Run::new(self, Send::at(buf, 0))
    }

    /// Sends all of `buf[0..bytes_init]`.
    pub(crate) async fn send_all<B: IoBuf>(&self, mut buf: B) -> (io::Result<()>, B) {
        let total = buf.bytes_init();
        let mut sent = 0;
        while sent < total {
            let (res, b) = Run::new(self, Send::at(buf, sent)).await;
            buf = b;
            match send_progress(res, sent, total) {
                Ok(Some(next)) => sent = next,
                Ok(None) => break,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Connects to `addr`.
    pub(crate) fn connect(&self, addr: &SockAddr) -> Run<&Socket, Connect> {
        Run::new(self, Connect::new(addr))
    }

    /// One accept (single shot).
    pub(crate) fn accept(&self) -> Run<&Socket, Accept> {
        Run::new(self, Accept::new())
    }

    /// Receives one datagram and its sender.
    pub(crate) fn recv_from<B: IoBufMut>(&self, buf: B) -> Run<&Socket, RecvFrom<B>> {
        Run::new(self, RecvFrom::new(buf))
    }

    /// Sends one datagram to `addr` (or to the connected peer with `None`).
    pub(crate) fn send_to<B: IoBuf>(
        &self,
        buf: B,
        addr: Option<SockAddr>,
    ) -> Run<&Socket, SendTo<B>> {
        Run::new(self, SendTo::new(buf, addr))
    }
}

/// A socket operation awaited as a weft await point, on whichever driver
/// the socket uses: the only place that looks. Holds the socket through
/// `S` (a borrow, or an `Arc` where the future is kept in state that cannot
/// borrow it, as the compat traits' is).
///
/// Under io_uring the first poll checks the scope, submits the op (linked
/// to a kernel timeout at the scope's deadline) and waits in
/// [`Cancellable`]; under epoll each poll checks the scope and tries the
/// syscall while the socket is ready. Dropped mid-way, an io_uring op is
/// cancelled and its cell keeps the buffer until the kernel lets go.
pub(crate) struct Run<S, O: SockOp> {
    /// Declared before `sock`: an op in flight is abandoned (and its
    /// cancellation posted) before the socket, and its fd, can go.
    state: RunState<O>,
    sock: S,
}

enum RunState<O: SockOp> {
    Start(O),
    Uring(Cancellable<O>),
    Epoll(O),
    Done,
}

// The op is never pinned: it is moved into its cell under io_uring, and the
// epoll form links any pointer into itself afresh for each attempt.
impl<S, O: SockOp> Unpin for Run<S, O> {}

impl<S: std::ops::Deref<Target = Socket>, O: SockOp> Run<S, O> {
    pub(crate) fn new(sock: S, op: O) -> Self {
        Run {
            state: RunState::Start(op),
            sock,
        }
    }

    fn take_op(&mut self) -> O {
        match std::mem::replace(&mut self.state, RunState::Done) {
            RunState::Start(op) | RunState::Epoll(op) => op,
            _ => unreachable!("the op is held only before and during an epoll wait"),
        }
    }

    /// io_uring: submits the op with `waker` in its cell (see
    /// `Op::submit_waking`; `None`: its completion wakes nobody until a
    /// poll registers a waker). `Some` is the result of an op that ended
    /// before the kernel saw it (a cancelled scope, a failed submission);
    /// `Ok(true)` means the waker is in the cell and the caller may return
    /// `Pending` without polling.
    ///
    /// `link`: a kernel timeout at the scope's deadline ends the op.
    fn start_uring(&mut self, waker: Option<&Waker>, link: bool) -> Result<bool, O::Output> {
        let op = self.take_op();
        let timeout = match uring::prelude() {
            Ok(t) => t.filter(|_| link),
            Err(c) => return Err(op.finish(Err(c.into()))),
        };
        let raw = self.sock.fd();
        let file = Some((&self.sock.fixed, raw));
        match Op::submit_waking(op, timeout, file, waker, |o| o.entry(Fd(raw))) {
            Ok((op, waiting)) => {
                self.state = RunState::Uring(Cancellable::new(op, O::KIND));
                Ok(waiting)
            }
            Err((e, op)) => Err(op.finish(Err(e))),
        }
    }

    /// Submits an io_uring op that nobody waits for yet: its completion
    /// wakes no task, and a later poll (after [`is_complete`](Self::is_complete),
    /// or to wait) takes its result. A cancelled scope stops it here
    /// (`Err`, as does a failed submission: the result of an op the kernel
    /// never saw), but no deadline is linked to it: it is the caller's to
    /// bound the waits for it, in whatever scope they happen.
    pub(crate) fn submit_unwaited(&mut self) -> Result<(), O::Output> {
        debug_assert!(self.sock.is_uring() && matches!(self.state, RunState::Start(_)));
        self.start_uring(None, false).map(drop)
    }

    /// The socket the op is on.
    pub(crate) fn socket(&self) -> &S {
        &self.sock
    }

    /// Waits for an op submitted by [`submit_unwaited`](Self::submit_unwaited)
    /// without the await point's checks (see `Cancellable::poll_uncancelled`):
    /// the caller checks its scope itself and leaves the op going when
    /// the scope ends.
    pub(crate) fn poll_unwaited(&mut self, cx: &mut Context<'_>) -> Poll<O::Output> {
        let RunState::Uring(op) = &mut self.state else {
            unreachable!("only a submitted io_uring op is waited for this way")
        };
        let (res, op) = std::task::ready!(op.poll_uncancelled(cx));
        self.state = RunState::Done;
        Poll::Ready(op.finish(finish(res)))
    }

    /// The result of an op submitted by
    /// [`submit_unwaited`](Self::submit_unwaited) that has completed,
    /// without waiting; `None` while it is in flight.
    pub(crate) fn take_completed(&mut self) -> Option<O::Output> {
        let RunState::Uring(op) = &mut self.state else {
            unreachable!("only a submitted io_uring op is taken this way")
        };
        let (res, op) = op.take_completed()?;
        self.state = RunState::Done;
        Some(op.finish(finish(res)))
    }

    /// True once an op submitted by [`submit_unwaited`](Self::submit_unwaited)
    /// completed: a poll returns its result at once.
    pub(crate) fn is_complete(&self) -> bool {
        match &self.state {
            RunState::Uring(op) => op.is_complete(),
            RunState::Done => true,
            RunState::Start(_) | RunState::Epoll(_) => false,
        }
    }
}

impl<S: std::ops::Deref<Target = Socket>, O: SockOp> std::future::Future for Run<S, O> {
    type Output = O::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                RunState::Start(op) => match &this.sock.kind {
                    Kind::Uring => match this.start_uring(Some(cx.waker()), true) {
                        Ok(true) => {
                            // Queued on this worker's ring with our waker in
                            // its cell: nothing to poll yet (see
                            // `Op::submit_waking`).
                            crate::runtime::dump::awaiting(
                                cx.waker(),
                                crate::runtime::dump::Awaiting::Io(O::KIND),
                            );
                            return Poll::Pending;
                        }
                        Ok(false) => {}
                        Err(out) => return Poll::Ready(out),
                    },
                    Kind::Epoll(_) => {
                        if let Some(res) = op.start(this.sock.as_fd()) {
                            return Poll::Ready(this.take_op().finish(res));
                        }
                        let op = this.take_op();
                        this.state = RunState::Epoll(op);
                    }
                },
                RunState::Uring(op) => {
                    let (res, op) = std::task::ready!(std::pin::Pin::new(op).poll(cx));
                    this.state = RunState::Done;
                    return Poll::Ready(op.finish(finish(res)));
                }
                RunState::Epoll(op) => {
                    let Kind::Epoll(reg) = &this.sock.kind else {
                        unreachable!("an epoll op on an io_uring socket");
                    };
                    let below = op.drained_below();
                    let fd = this.sock.as_fd();
                    let res = std::task::ready!(poll_epoll_once(
                        reg,
                        cx,
                        O::DIR,
                        O::KIND,
                        || op.attempt(fd),
                        |n| *n > 0 && *n < below,
                    ));
                    return Poll::Ready(this.take_op().finish(res));
                }
                RunState::Done => panic!("a socket operation polled after it completed"),
            }
        }
    }
}

/// [`Socket::recv`] into a `Vec`, holding the socket: the compat read
/// traits keep it in their state across polls (a borrowing future would
/// have to be boxed, one allocation per read).
pub(crate) type RecvOwned = Run<std::sync::Arc<Socket>, Recv<Vec<u8>>>;

/// [`Socket::send`] from a `Vec`, holding the socket (as [`RecvOwned`]).
pub(crate) type SendOwned = Run<std::sync::Arc<Socket>, Send<Vec<u8>>>;

impl Socket {
    /// [`Socket::recv`] of a stream socket into `buf`, as a [`RecvOwned`].
    pub(crate) fn recv_owned(self: &std::sync::Arc<Self>, buf: Vec<u8>) -> RecvOwned {
        Run::new(self.clone(), Recv::stream(buf))
    }

    /// A send of all of `buf[offset..]` in one io_uring completion (see
    /// `Send::all_at`), as a [`SendOwned`]: the compat write-behind.
    pub(crate) fn send_all_owned(
        self: &std::sync::Arc<Self>,
        buf: Vec<u8>,
        offset: usize,
    ) -> SendOwned {
        Run::new(self.clone(), Send::all_at(buf, offset))
    }
}

/// A uring result as an `io::Result` of a count.
fn finish(res: Result<i32, cancel::Cancelled>) -> io::Result<usize> {
    match res {
        Ok(res) => uring::check(res).map(|n| n as usize),
        Err(c) => Err(c.into()),
    }
}

/// Where a send of all of `buf[sent..total]` goes on after one send
/// ended with `res`: from the returned offset, nowhere (all sent), or not
/// at all (the error; a peer that takes no bytes is `WriteZero`; an
/// `EINTR` that is not a cancellation is retried from `sent`).
pub(crate) fn send_progress(
    res: io::Result<usize>,
    sent: usize,
    total: usize,
) -> io::Result<Option<usize>> {
    match res {
        Ok(0) if sent < total => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the peer accepted no more bytes",
        )),
        Ok(n) if sent + n < total => Ok(Some(sent + n)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::Interrupted && !is_cancellation(&e) => Ok(Some(sent)),
        Err(e) => Err(e),
    }
}

/// True if `err` reports a cancelled scope (as opposed to `EINTR`).
pub(crate) fn is_cancellation(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.downcast_ref::<cancel::Cancelled>().is_some())
}
