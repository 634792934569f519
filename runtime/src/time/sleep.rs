use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use super::driver::Registration;
use crate::{
    cancel::{self, Cancelled},
    context, coop,
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
    /// The wheel entry, if registered.
    timer: Option<Armed>,
    done: bool,
}

/// A `Sleep`'s wheel entry.
struct Armed {
    handle: Handle,
    reg: Registration,
    /// The deadline the entry was made for: never later than the sleep's
    /// (a [`reset`](Sleep::reset) to a later deadline keeps the entry, and
    /// its early firing re-registers). The entry cannot fire before it.
    deadline: Instant,
    /// The waker the entry holds, so a poll before `deadline` with the same
    /// waker can answer `Pending` without taking the shard's lock.
    waker: Waker,
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
    ///
    /// Moving a registered sleep *later* (a keep-alive or idle timer pushed
    /// back on every request) touches no lock and no wheel: the timer stays
    /// where it was, and when it fires early the sleep registers again for
    /// the new deadline. So a timer reset a thousand times between two
    /// firings costs one registration, not a thousand. Moving it earlier
    /// re-registers on the next poll.
    pub fn reset(&mut self, deadline: Instant) {
        self.done = false;
        match &self.timer {
            Some(armed) if deadline >= armed.deadline => {}
            _ => self.clear(),
        }
        self.deadline = deadline;
    }

    fn clear(&mut self) {
        if let Some(armed) = self.timer.take() {
            armed.handle.time().deregister(armed.reg);
        }
    }

    /// Polls without spending coop budget (for `Timeout`, whose deadline must
    /// fire even when the inner future used the budget up).
    pub(crate) fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        if let Some(armed) = &mut self.timer {
            // An entry never fires before its deadline: while the coarse
            // clock says it is ahead and the waker is the one the entry
            // holds, nothing can have changed. (A connection task polls its
            // idle and header timers on every wake; this keeps those polls
            // off the shard's lock.)
            if super::clock::certainly_before(armed.deadline) && armed.waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
            if !armed.handle.time().poll_fired(armed.reg, cx.waker()) {
                if !armed.waker.will_wake(cx.waker()) {
                    armed.waker = cx.waker().clone();
                }
                return Poll::Pending;
            }
            let early = armed.deadline < self.deadline;
            self.clear();
            if !early {
                self.done = true;
                return Poll::Ready(());
            }
            // Fired for a deadline a `reset` has since moved later:
            // register again below.
        }
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
                self.timer = Some(Armed {
                    handle,
                    reg,
                    deadline: self.deadline,
                    waker: cx.waker().clone(),
                });
                return Poll::Pending;
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

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering::SeqCst},
            Arc,
        },
        task::Wake,
    };

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// Polls before the deadline answer without the wheel only for the
    /// waker the entry holds: a new waker replaces it, and the firing wakes
    /// the newest one; a reset later keeps the entry and still fires late
    /// enough.
    #[test]
    fn a_changed_waker_reaches_the_entry_and_a_later_reset_keeps_it() {
        let rt = crate::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let start = Instant::now();
        let fired_at = rt.block_on(async {
            let mut sleep = Box::pin(sleep(Duration::from_millis(30)));
            for _ in 0..3 {
                assert!(sleep
                    .as_mut()
                    .poll(&mut Context::from_waker(&wa))
                    .is_pending());
            }
            assert_eq!(
                crate::runtime::Handle::current().metrics().timers_pending,
                1
            );
            assert!(sleep
                .as_mut()
                .poll(&mut Context::from_waker(&wb))
                .is_pending());
            sleep.as_mut().reset(start + Duration::from_millis(60));
            assert_eq!(
                crate::runtime::Handle::current().metrics().timers_pending,
                1,
                "a later reset keeps the entry"
            );
            // The old entry fires at ~30 ms and wakes B, the newest waker.
            let limit = Instant::now() + Duration::from_secs(5);
            while b.0.load(SeqCst) == 0 && Instant::now() < limit {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(a.0.load(SeqCst), 0, "the replaced waker is not woken");
            assert_eq!(b.0.load(SeqCst), 1);
            // Fired early for the new deadline: registers again.
            assert!(sleep
                .as_mut()
                .poll(&mut Context::from_waker(&wb))
                .is_pending());
            let limit = Instant::now() + Duration::from_secs(5);
            while b.0.load(SeqCst) < 2 && Instant::now() < limit {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(sleep
                .as_mut()
                .poll(&mut Context::from_waker(&wb))
                .is_ready());
            Instant::now()
        });
        assert!(fired_at >= start + Duration::from_millis(60));
    }
}
