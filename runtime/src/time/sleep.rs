use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use super::driver::Registration;
use crate::{
    cancel::{self, Cancelled},
    context, coop,
    runtime::dump::{self, Awaiting},
    scheduler::Handle,
};

/// Waits until `duration` has passed. See [`Sleep`].
pub fn sleep(duration: Duration) -> Sleep {
    // A duration too large for `Instant` means "never": clamp to ~30 years.
    sleep_until(far_future_after(duration))
}

/// Waits until `deadline`. See [`Sleep`].
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        timer: None,
        done: false,
    }
}

pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// The deadline of a timeout of `duration` (`time::timeout`,
/// `task::Builder::timeout`, `cancel::shield`): `now + duration`, from the
/// coarse clock for long durations (see `clock.rs`: never early, at most
/// two kernel ticks late), clamped to [`far_future`] when it does not fit.
#[inline]
pub(crate) fn timeout_deadline_after(duration: Duration) -> Instant {
    super::clock::deadline_after(duration).unwrap_or_else(far_future)
}

/// `now + duration`, clamped to [`far_future`] when it does not fit.
pub(crate) fn far_future_after(duration: Duration) -> Instant {
    Instant::now()
        .checked_add(duration)
        .unwrap_or_else(far_future)
}

/// A future that completes at a deadline, with 1 ms resolution (it never
/// completes early), or earlier with `Err(Cancelled)` when the scope it is
/// awaited in is cancelled (level-triggered: every poll in a cancelled scope
/// returns the error at once).
///
/// Creating one costs nothing; the timer is registered in the runtime's wheel
/// on the first `Pending` poll and removed (O(1)) when the `Sleep` is dropped.
/// It must be polled inside a weft runtime. Each poll spends one unit of the
/// task's cooperative budget.
pub struct Sleep {
    deadline: Instant,
    timer: Option<(Handle, Registration)>,
    done: bool,
}

impl Sleep {
    /// When this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        self.done || Instant::now() >= self.deadline
    }

    /// Moves the deadline, re-arming a completed sleep.
    pub fn reset(&mut self, deadline: Instant) {
        self.clear();
        self.done = false;
        self.deadline = deadline;
    }

    fn clear(&mut self) {
        if let Some((handle, reg)) = self.timer.take() {
            handle.time().deregister(reg);
        }
    }

    /// Polls without spending coop budget (for `Timeout`, whose deadline must
    /// fire even when the inner future used the budget up).
    pub(crate) fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        match &self.timer {
            Some((handle, reg)) => {
                if !handle.time().poll_fired(*reg, cx.waker()) {
                    return Poll::Pending;
                }
                self.clear();
            }
            None => {
                // The coarse clock first: for a far deadline it settles
                // the question without the dearer precise read.
                if super::clock::certainly_before(self.deadline) || Instant::now() < self.deadline {
                    // The task was woken during this poll (it yielded, say)
                    // and will poll us again: register the timer then, if
                    // it is still needed. A `timeout` around code that
                    // yields once and finishes then never touches the wheel.
                    if crate::task::waker::will_be_polled_again(cx.waker()) {
                        return Poll::Pending;
                    }
                    let handle = context::current_handle().expect(
                        "a weft timer was polled outside a weft runtime: \
                         call it inside `Runtime::block_on` or a spawned task",
                    );
                    let (shard, on_worker) = handle.timer_shard();
                    if let Some(reg) = handle.time().register(shard, self.deadline, cx.waker()) {
                        if !on_worker {
                            // The shard's worker may be parked with a later
                            // timeout: have it recompute.
                            handle.unpark_worker(shard);
                        }
                        self.timer = Some((handle, reg));
                        return Poll::Pending;
                    }
                }
            }
        }
        self.done = true;
        Poll::Ready(())
    }
}

impl Future for Sleep {
    type Output = Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Budget first: an await point that fails at once in a cancelled
        // scope must still yield now and then, or a loop that ignores the
        // error would never give its worker back.
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(cancelled) = cancel::poll_cancelled(None, true) {
            restore.made_progress();
            return Poll::Ready(Err(cancelled));
        }
        let res = self.poll_elapsed(cx);
        if res.is_ready() {
            restore.made_progress();
        } else {
            dump::awaiting(cx.waker(), Awaiting::Sleep);
        }
        res.map(Ok)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.clear();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("registered", &self.timer.is_some())
            .field("done", &self.done)
            .finish()
    }
}
