//! Pooled receive: a stream of received chunks in buffers the runtime
//! lends (docs/IO.md, "Pooled receive").
//!
//! States of a [`RecvStream`] under io_uring:
//!
//! - `Idle`: nothing in flight. The next poll arms a multishot receive on
//!   the polling worker's ring if that ring has a buffer ring with free
//!   buffers (`Multishot`), and otherwise starts one single-shot receive
//!   into a heap buffer (`Single`).
//! - `Multishot`: the armed receive's queue is drained item by item; when
//!   the kernel ends it (no `IORING_CQE_F_MORE`) and the queue is empty the
//!   stream goes back to `Idle`, except after `ENOBUFS` (the ring ran
//!   dry), which starts a `Single` receive at once so the bytes waiting in
//!   the socket are read without waiting for a ring buffer to come back.
//! - `Single`: one ordinary `IORING_OP_RECV` (a weft op: linked to the
//!   scope's deadline, cancelled in place), back to `Idle` when it ends.
//!
//! At most one receive is in flight, so chunks come in stream order.
//! Under epoll there is no state: each poll is a readiness-driven `recv`
//! into a heap buffer (kept across `EAGAIN` in `spare`).

use std::{
    fmt,
    future::{poll_fn, Future},
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
};

use io_uring::{opcode, types::Fd};

use super::{
    op::cvt_size,
    sys::{poll_epoll_once, Socket},
};
use crate::{
    cancel, coop,
    io::{
        epoll::Direction,
        pool::HeapBuf,
        uring::{
            self,
            multishot::{self, Ended, RecvQueue, Recvd},
            Cancellable, Op, Remote,
        },
        RecvBuf,
    },
    runtime::dump::{self, Awaiting, IoOp},
};

/// Set when a ring rejected a multishot receive (`EINVAL`, a kernel the
/// start-up probe misjudged): single-shot receives from then on.
static MULTISHOT_REJECTED: AtomicBool = AtomicBool::new(false);

/// A stream of received chunks of a connection, each in a pooled buffer
/// ([`RecvBuf`]), for servers that read many connections: from
/// [`TcpStream::recv_stream`](super::TcpStream::recv_stream),
/// [`OwnedReadHalf::recv_stream`](super::OwnedReadHalf::recv_stream) or
/// [`UnixStream::recv_stream`](super::UnixStream::recv_stream).
///
/// Under io_uring one multishot receive (`IORING_RECV_MULTISHOT`) stays
/// armed per stream and the kernel picks a buffer from the polling
/// worker's provided buffer ring for each chunk, so a busy connection
/// costs no submission per read and an idle one holds no buffer. Under
/// epoll each chunk is a readiness-driven `recv` into a buffer from the
/// worker's free list. The api, and what the caller sees, is the same:
///
/// - [`recv`](Self::recv) gives the next chunk (at most the pool's buffer
///   size, `Builder::recv_buffers`), `Ok(None)` at the end of the stream
///   (and again on every later call), or the connection's error (a later
///   call receives again).
/// - Every call is an await point of the task's scope: in a cancelled
///   scope, or past its deadline, it returns the error at once (`TimedOut`
///   or `Interrupted` with the [`Cancelled`](crate::cancel::Cancelled)
///   inside), even with chunks ready. Nothing is lost: chunks that arrive
///   meanwhile stay queued and a later call in a live scope returns them
///   in order.
/// - When a worker's ring runs dry (its buffers are all held by user code
///   or queued), the kernel ends the multishot with `ENOBUFS`; the caller
///   sees nothing of it but a heap buffer ([`RecvBuf::is_ring_buffer`] is
///   false) for the next chunk: the stream reads the waiting bytes with a
///   single-shot receive and re-arms the multishot once the ring has
///   buffers again (`RuntimeMetrics::recv_ring_exhausted` counts these).
/// - Dropping the stream cancels the multishot; the buffers it had queued
///   go back to the ring at once, those still arriving as the kernel
///   delivers them. The connection stays open (the stream holds a
///   reference to the socket until then).
///
/// Don't read the connection by other means (`read`, the `AsyncRead`
/// traits) while a stream is live: each chunk goes to whichever receive
/// the kernel finds first.
pub struct RecvStream {
    sock: Arc<Socket>,
    state: State,
    /// The end of the stream was returned: every later call returns it.
    eof: bool,
    /// Under epoll: the buffer the next `recv` reads into.
    spare: Option<HeapBuf>,
    /// The queue of the last multishot, reused by the next one.
    spent: Option<Arc<RecvQueue>>,
}

enum State {
    Idle,
    Multishot {
        queue: Arc<RecvQueue>,
        owner: Arc<Remote>,
        /// Polled on another worker with nothing queued: the multishot was
        /// asked to end so that the stream re-arms where its task runs now.
        moving: bool,
    },
    Single(Cancellable<HeapBuf>),
}

impl RecvStream {
    pub(crate) fn new(sock: Arc<Socket>) -> RecvStream {
        RecvStream {
            sock,
            state: State::Idle,
            eof: false,
            spare: None,
            spent: None,
        }
    }

    /// The next chunk; `Ok(None)` at the end of the stream.
    pub async fn recv(&mut self) -> io::Result<Option<RecvBuf>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The poll behind [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RecvBuf>>> {
        let RecvStream {
            sock, spare, eof, ..
        } = self;
        if let Some(reg) = sock.registration() {
            return poll_epoll(sock, reg, spare, eof, cx);
        }
        self.poll_uring(cx)
    }

    fn poll_uring(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RecvBuf>>> {
        if let State::Single(op) = &mut self.state {
            // The op is an await point of its own (budget, scope, the
            // deadline linked in the kernel).
            let (res, buf) = std::task::ready!(Pin::new(op).poll(cx));
            self.state = State::Idle;
            return Poll::Ready(match res {
                Err(c) => Err(c.into()),
                Ok(n) if n < 0 => Err(io::Error::from_raw_os_error(-n)),
                Ok(0) => {
                    self.eof = true;
                    Ok(None)
                }
                Ok(n) => Ok(Some(RecvBuf::from_heap(buf, n as usize))),
            });
        }
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(c) = cancel::poll_cancelled(None, false) {
            restore.made_progress();
            return Poll::Ready(Err(c.into()));
        }
        if self.eof {
            restore.made_progress();
            return Poll::Ready(Ok(None));
        }
        // Each pass either returns or changes the state: at most one arm,
        // one end and one fallback.
        for _ in 0..4 {
            match &self.state {
                State::Multishot {
                    queue,
                    owner,
                    moving,
                } => match queue.poll_next(cx) {
                    Poll::Ready(Ok(item)) => {
                        restore.made_progress();
                        return Poll::Ready(match item {
                            Recvd::Data(buf) => Ok(Some(buf)),
                            Recvd::Eof => {
                                self.eof = true;
                                Ok(None)
                            }
                            Recvd::Error(e) if e == -libc::EINVAL => {
                                // This kernel has no multishot receive.
                                MULTISHOT_REJECTED.store(true, Relaxed);
                                self.retire_multishot();
                                return self.poll_uring_single(cx);
                            }
                            Recvd::Error(e) => Err(io::Error::from_raw_os_error(-e)),
                        });
                    }
                    Poll::Ready(Err(Ended::RingEmpty)) => {
                        self.retire_multishot();
                        return self.poll_uring_single(cx);
                    }
                    Poll::Ready(Err(Ended::Done)) => self.retire_multishot(),
                    Poll::Pending => {
                        if !*moving && stolen_from(owner) {
                            // The task was stolen: end the multishot on its
                            // old ring (what it still delivers is queued and
                            // comes first) and re-arm on this worker's once
                            // it ended, so the connection follows the task.
                            multishot::cancel_to_move(owner, queue);
                            let (queue, owner) = (queue.clone(), owner.clone());
                            self.state = State::Multishot {
                                queue,
                                owner,
                                moving: true,
                            };
                        }
                        // Waiting in user space (a multishot has no kernel
                        // timeout): the scope's deadline timer must be able
                        // to end the wait.
                        if let Some(c) = cancel::poll_cancelled(None, true) {
                            return Poll::Ready(Err(c.into()));
                        }
                        dump::awaiting(cx.waker(), Awaiting::Io(IoOp::Read));
                        return Poll::Pending;
                    }
                },
                State::Idle => {
                    let armed = if MULTISHOT_REJECTED.load(Relaxed) {
                        None
                    } else {
                        multishot::arm(self.sock.fd(), REARM_MIN_AVAILABLE, &mut self.spent)
                    };
                    match armed {
                        Some((queue, owner)) => {
                            self.state = State::Multishot {
                                queue,
                                owner,
                                moving: false,
                            }
                        }
                        None => return self.poll_uring_single(cx),
                    }
                }
                State::Single(_) => return self.poll_uring(cx),
            }
        }
        // Not reached (three passes at most: an end, an arm, a wait); should
        // it be, poll again rather than fail the read.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The multishot ended: back to `Idle`, keeping its queue for reuse.
    fn retire_multishot(&mut self) {
        if let State::Multishot { queue, .. } = std::mem::replace(&mut self.state, State::Idle) {
            self.spent = Some(queue);
        }
    }

    /// Starts a single-shot receive into a heap buffer and polls it.
    fn poll_uring_single(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<RecvBuf>>> {
        let timeout = match uring::prelude() {
            Ok(t) => t,
            Err(c) => return Poll::Ready(Err(c.into())),
        };
        let buf = match crate::io::local_heap_pool() {
            Ok(pool) => pool.take(),
            Err(e) => return Poll::Ready(Err(e)),
        };
        let fd = self.sock.fd();
        let op = Op::submit(buf, timeout, None, |b| {
            let cap = b.capacity().min(u32::MAX as usize) as u32;
            opcode::Recv::new(Fd(fd), b.as_mut_ptr(), cap)
                .ioprio(uring::recv_ioprio())
                .build()
        });
        match op {
            Ok(op) => {
                self.state = State::Single(Cancellable::new(op, IoOp::Read));
                self.poll_uring(cx)
            }
            Err((e, _)) => Poll::Ready(Err(e)),
        }
    }
}

/// True if this thread is a worker whose ring is not `owner`: the task
/// polling a stream armed on `owner` was stolen.
fn stolen_from(owner: &Arc<Remote>) -> bool {
    crate::io::with_local_uring(|d| !Arc::ptr_eq(d.remote(), owner)).unwrap_or(false)
}

/// Re-arm a multishot only when the ring has at least this many free
/// buffers: right after it ran dry, single-shot receives go on until user
/// code gave a few back, rather than arming one that ends at once.
const REARM_MIN_AVAILABLE: usize = 4;

/// One poll of a pooled receive under epoll: a readiness-driven `recv`
/// into the spare heap buffer, which becomes the chunk.
fn poll_epoll(
    sock: &Socket,
    reg: &crate::io::epoll::Registration,
    spare: &mut Option<HeapBuf>,
    eof: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<RecvBuf>>> {
    let fd = sock.fd();
    let buf = match spare {
        Some(buf) => buf,
        None => spare.insert(reg.heap_pool().take()),
    };
    let (ptr, cap) = (buf.as_mut_ptr(), buf.capacity());
    let at_end = *eof;
    let res = std::task::ready!(poll_epoll_once(
        reg,
        cx,
        Direction::Read,
        IoOp::Read,
        || {
            if at_end {
                return Ok(0);
            }
            // SAFETY: the spare buffer is valid for `cap` bytes of writes
            // and owned by this stream for the call.
            cvt_size(unsafe { libc::recv(fd, ptr.cast(), cap, 0) })
        },
        |n| *n > 0 && *n < cap,
    ));
    Poll::Ready(match res {
        Ok(0) => {
            // Nothing more to read into: the spare goes back.
            *spare = None;
            *eof = true;
            Ok(None)
        }
        Ok(n) => {
            let buf = spare.take().expect("filled above");
            Ok(Some(RecvBuf::from_heap(buf, n)))
        }
        Err(e) => Err(e),
    })
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if let State::Multishot { queue, owner, .. } = &self.state {
            multishot::cancel(owner, queue);
        }
        // A `Single` op cancels itself as it drops (its heap buffer goes
        // back when the kernel lets go of it); the spare goes back now.
    }
}

impl futures_core::Stream for RecvStream {
    type Item = io::Result<RecvBuf>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

impl fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvStream")
            .field("socket", &self.sock)
            .field(
                "state",
                &match self.state {
                    State::Idle => "idle",
                    State::Multishot { .. } => "multishot",
                    State::Single(_) => "single",
                },
            )
            .field("eof", &self.eof)
            .finish()
    }
}
