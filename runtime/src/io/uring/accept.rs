//! Multishot accept (`IORING_OP_ACCEPT` + `IORING_ACCEPT_MULTISHOT`): one
//! armed accept per listener fills an [`AcceptQueue`] with accepted fds
//! (or `-errno`), which the listener's `accept` drains.
//!
//! The kernel ends the multishot (no `IORING_CQE_F_MORE`) on an error or
//! when we cancel it; the listener re-arms at its next `accept`. Dropping the listener abandons the queue: what was queued
//! and what still arrives is closed, the owning ring cancels the multishot
//! ([`cancel_multishot`]), and the drop waits (bounded) for the last
//! completion ([`wait_multishot_ended`]), after which the kernel holds no
//! reference to the listening socket and closing its fd really closes it.
//!
//! Ownership: the queue's `state` mutex guards the fds, the wakers and the
//! flags; the owning worker pushes (in `complete`), the listener pops.

use std::{
    collections::VecDeque,
    io,
    os::fd::RawFd,
    sync::{atomic::Ordering::Acquire, Arc},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use io_uring::{opcode, types};

use super::{
    close::close_fd,
    driver::{Driver, Remote, Submission},
    table::{Completable, SlotState},
};
use crate::facade::{lock, Mutex};

/// The queue a multishot accept fills; the listener drains it.
pub(crate) struct AcceptQueue {
    state: Mutex<AcceptState>,
    slot: SlotState,
}

struct AcceptState {
    ready: VecDeque<i32>,
    /// Every task waiting in `accept` (usually one).
    wakers: Vec<Waker>,
    /// The kernel ended the multishot (error, or no MORE): re-arm to go on.
    ended: bool,
    abandoned: bool,
}

impl AcceptQueue {
    pub(crate) fn new() -> Arc<AcceptQueue> {
        Arc::new(AcceptQueue {
            state: Mutex::new(AcceptState {
                ready: Default::default(),
                wakers: Vec::new(),
                ended: false,
                abandoned: false,
            }),
            slot: SlotState::default(),
        })
    }

    /// The next accepted fd (or `-errno`); `None` and the waker stored when
    /// nothing is queued. `Some(Err(()))` when the multishot ended with
    /// nothing queued: the caller must arm a new one.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Result<i32, ()>> {
        let mut state = lock(&self.state);
        if let Some(res) = state.ready.pop_front() {
            return Poll::Ready(Ok(res));
        }
        if state.ended {
            return Poll::Ready(Err(()));
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Ready once the kernel ended the multishot (its last completion
    /// arrived): from then on the ring holds no reference to the socket.
    pub(crate) fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if self.slot.done.load(Acquire) {
            return Poll::Ready(());
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The listener is going away: close what was queued, and whatever the
    /// kernel still delivers. True if the multishot is still armed.
    pub(crate) fn abandon(&self) -> bool {
        let mut state = lock(&self.state);
        state.abandoned = true;
        for fd in state.ready.drain(..) {
            close_fd(fd);
        }
        !state.ended
    }
}

impl Completable for AcceptQueue {
    /// Its completions feed the owner's queue state: the owner's alone.
    fn peer_may_complete(&self) -> bool {
        false
    }

    fn complete(&self, res: i32, more: bool) {
        let mut state = lock(&self.state);
        if !more {
            state.ended = true;
            self.slot.set_done(true);
        }
        if state.abandoned {
            close_fd(res);
            if more {
                return;
            }
            // The end: wake a `close` waiting for it.
            let wakers = std::mem::take(&mut state.wakers);
            drop(state);
            wakers.into_iter().for_each(Waker::wake);
            return;
        }
        // ECANCELED ends a multishot we cancelled ourselves: nothing to report.
        if res != -libc::ECANCELED || more {
            state.ready.push_back(res);
        }
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        for w in wakers {
            w.wake();
        }
    }

    fn slot(&self) -> &SlotState {
        &self.slot
    }
}

/// Arms a multishot accept on `fd` feeding `queue`.
pub(crate) fn arm_multishot_accept(fd: RawFd, queue: &Arc<AcceptQueue>) -> io::Result<Arc<Remote>> {
    {
        let mut state = lock(&queue.state);
        state.ended = false;
    }
    queue.slot.set_done(false);
    let entry = opcode::AcceptMulti::new(types::Fd(fd))
        .flags(libc::SOCK_CLOEXEC)
        .build();
    crate::io::submit(Submission {
        entry,
        target: queue.clone(),
        timeout: None,
    })
}

/// Ends a listener's multishot accept: closes what it queued (and what
/// still arrives) and has the owning ring cancel it. The kernel lets go of
/// the socket only with the last completion; see [`wait_multishot_ended`].
pub(crate) fn cancel_multishot(owner: &Arc<Remote>, queue: &Arc<AcceptQueue>) {
    if queue.abandon() {
        crate::io::cancel(owner, queue.clone());
    }
}

/// Waits, at most `limit`, until the kernel delivered the last completion
/// of `queue`'s (cancelled) multishot accept, so that it holds no reference
/// to the listening socket any more and closing the fd really closes it.
/// True if it ended (or the ring is gone), false if the wait gave up.
///
/// The calling worker's own ring is driven meanwhile: it is the owner's
/// when the listener is dropped where it accepted (then one pass of the
/// ring runs the cancellation), and another worker may be waiting the same
/// way for a listener of this ring. Any other thread waits for the owner,
/// which the cancellation's eventfd write woke. A worker whose ring is busy
/// (a drop from inside a completion) cannot wait for it and gives up at
/// once.
pub(crate) fn wait_multishot_ended(owner: &Remote, queue: &AcceptQueue, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let on_worker = crate::context::with_worker(|w| w.is_some());
    let mut spins = 0u32;
    loop {
        if queue.is_done() || owner.is_closed() {
            return true;
        }
        let drove = crate::io::with_local_uring(Driver::poll).is_some();
        if !drove && on_worker {
            return false;
        }
        if Instant::now() >= deadline {
            return false;
        }
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
