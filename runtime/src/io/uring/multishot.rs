//! Multishot receive (`IORING_OP_RECV` + `IORING_RECV_MULTISHOT`) into the
//! worker's provided buffer ring.
//!
//! One armed receive per stream fills a [`RecvQueue`]: each completion
//! names the ring buffer the kernel filled (taken out of the ring, handed
//! on as a `RecvBuf`), or the end of the stream (0), or an error. The queue
//! holds at most one item per ring buffer plus the final one, so it is
//! bounded by the ring's size.
//!
//! The multishot lives on the ring of the worker that armed it until the
//! kernel ends it (no `IORING_CQE_F_MORE`): at the end of the stream, on an
//! error, when the ring ran dry (`ENOBUFS`), or when we cancelled it. Its
//! completions land there whichever worker runs the task meanwhile (the
//! wake brings the task back, see "Io affinity" in docs/IO.md); the stream
//! re-arms on the worker that polls it after an end.
//!
//! Ownership: the queue's `state` mutex guards the items and the waker; the
//! owning worker pushes (in `complete_cqe`), the stream pops. Once the
//! stream is dropped (`abandoned`), buffers that still arrive go straight
//! back into the ring.

use std::{
    collections::VecDeque,
    os::fd::RawFd,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use io_uring::{cqueue, opcode, types};

use super::{
    driver::{Remote, Submission},
    table::{Completable, SlotState},
};
use crate::{
    facade::{lock, Mutex},
    io::{buf_ring::BGID, pool::RecvBuf, BufRing},
};

/// `IORING_CQE_F_MORE` (the crate keeps its `sys` module private).
const CQE_F_MORE: u32 = 1 << 1;

/// What an armed multishot receive delivered.
pub(crate) enum Recvd {
    Data(RecvBuf),
    /// The peer ended the stream.
    Eof,
    /// A negative errno (the multishot ended with it).
    Error(i32),
}

/// Why nothing more will come from this queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The ring had no buffer for the next bytes (`ENOBUFS`): they wait in
    /// the socket.
    RingEmpty,
    /// Ended otherwise (the end of the stream or an error was queued
    /// before it, or it was cancelled).
    Done,
}

/// The queue one multishot receive fills.
pub(crate) struct RecvQueue {
    state: Mutex<RecvState>,
    slot: SlotState,
    ring: Arc<BufRing>,
}

struct RecvState {
    ready: VecDeque<Recvd>,
    waker: Option<Waker>,
    /// The kernel delivered the final completion.
    ended: Option<Ended>,
    /// The stream is gone: buffers go straight back.
    abandoned: bool,
}

impl RecvQueue {
    /// The next item; `Err` once the multishot ended and the queue is
    /// drained (the caller re-arms or falls back); pending with the waker
    /// stored otherwise.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Result<Recvd, Ended>> {
        let mut state = lock(&self.state);
        if let Some(item) = state.ready.pop_front() {
            return Poll::Ready(Ok(item));
        }
        if let Some(ended) = state.ended {
            return Poll::Ready(Err(ended));
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The stream is going away: give back what was queued (and, from now
    /// on, what still arrives). True if the multishot is still armed (the
    /// caller cancels it).
    fn abandon(&self) -> bool {
        let mut state = lock(&self.state);
        state.abandoned = true;
        state.waker = None;
        let queued = std::mem::take(&mut state.ready);
        let armed = state.ended.is_none();
        drop(state);
        // Ring buffers go back as their `RecvBuf`s drop.
        drop(queued);
        armed
    }
}

impl Completable for RecvQueue {
    /// Its completions feed the owner's queue state: the owner's alone.
    fn peer_may_complete(&self) -> bool {
        false
    }

    fn complete(&self, res: i32, more: bool) {
        // Every completion of a multishot receive comes through
        // `complete_cqe`, which sees the buffer id; this path carries none.
        self.complete_cqe(res, if more { CQE_F_MORE } else { 0 });
    }

    fn complete_cqe(&self, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let item = match (res, cqueue::buffer_select(flags)) {
            (n, Some(bid)) if n >= 0 => {
                self.ring.take(bid);
                let buf = RecvBuf::from_ring(self.ring.clone(), bid, n as usize);
                // A zero-length completion with a buffer (not seen from
                // TCP, which reports the end without one) gives it back.
                (n > 0).then_some(Recvd::Data(buf))
            }
            (0, None) => Some(Recvd::Eof),
            (e, _) if e == -libc::ENOBUFS => {
                self.ring
                    .stats()
                    .ring_exhausted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
            // Our own cancellation: nothing to report.
            (e, _) if e == -libc::ECANCELED => None,
            (e, _) if e < 0 => Some(Recvd::Error(e)),
            // Bytes without a buffer: cannot happen with BUFFER_SELECT.
            (_, _) => Some(Recvd::Error(-libc::EIO)),
        };
        let mut state = lock(&self.state);
        if !more {
            state.ended = Some(if res == -libc::ENOBUFS {
                Ended::RingEmpty
            } else {
                Ended::Done
            });
            self.slot.set_done(true);
        }
        if state.abandoned {
            drop(state);
            drop(item);
            return;
        }
        if let Some(item) = item {
            state.ready.push_back(item);
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn slot(&self) -> &SlotState {
        &self.slot
    }
}

/// Arms a multishot receive on `fd` in the calling worker's ring, if this
/// thread is a worker with an io_uring that has a buffer ring with at
/// least `min_available` free buffers (or all of them, in a smaller ring). `None` otherwise (the caller falls
/// back to single-shot receives).
///
/// `spent` is the stream's previous queue, reused (no allocation) if
/// nothing else holds it any more (its multishot ended and the ring let go).
pub(crate) fn arm(
    fd: RawFd,
    min_available: usize,
    spent: &mut Option<Arc<RecvQueue>>,
) -> Option<(Arc<RecvQueue>, Arc<Remote>)> {
    crate::io::with_local_uring(|d| {
        let ring = d.buf_ring()?;
        if ring.available() < min_available.clamp(1, ring.count()) {
            return None;
        }
        let queue = match spent.take() {
            Some(mut queue) if Arc::strong_count(&queue) == 1 && Arc::weak_count(&queue) == 0 => {
                let q = Arc::get_mut(&mut queue).expect("checked above");
                // Unique, so the lock is free (`lock` rather than `get_mut`:
                // the loom and shuttle mutexes of the facade have no
                // `get_mut`).
                let mut state = lock(&q.state);
                debug_assert!(state.ready.is_empty() && state.ended.is_some());
                state.ready.clear(); // keeps its capacity
                state.waker = None;
                state.ended = None;
                state.abandoned = false;
                drop(state);
                q.slot = SlotState::default();
                q.ring = ring;
                queue
            }
            _ => Arc::new(RecvQueue {
                state: Mutex::new(RecvState {
                    ready: VecDeque::new(),
                    waker: None,
                    ended: None,
                    abandoned: false,
                }),
                slot: SlotState::default(),
                ring,
            }),
        };
        let entry = opcode::RecvMulti::new(types::Fd(fd), BGID).build();
        d.push(Submission {
            entry,
            target: queue.clone(),
            timeout: None,
        });
        Some((queue, d.remote().clone()))
    })
    .flatten()
}

/// Asks the owning ring to end a stream's multishot receive that the
/// stream keeps: what it delivers until the cancel lands stays queued, and
/// its last completion (`ECANCELED`) ends it (`Ended::Done`), after which
/// the stream arms a new one where it runs. The owner is not woken for it
/// (no eventfd write): until it takes the cancel from its mailbox the
/// multishot goes on delivering, so nothing waits on it but the move.
pub(crate) fn cancel_to_move(owner: &Arc<Remote>, queue: &Arc<RecvQueue>) {
    crate::io::cancel_quiet(owner, queue.clone());
}

/// Ends a stream's multishot receive: gives back what it queued (and what
/// still arrives) and has the owning ring cancel it. The queue, and the
/// socket the kernel holds for it, go with its last completion.
pub(crate) fn cancel(owner: &Arc<Remote>, queue: &Arc<RecvQueue>) {
    if queue.abandon() {
        crate::io::cancel(owner, queue.clone());
    }
}
