use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use super::driver::{Registration, Seen};
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
    /// The wheel entry, if registered.
    timer: Option<Armed>,
    done: bool,
}

/// A `Sleep`'s wheel entry.
struct Armed {
    handle: Handle,
    reg: Registration,
    /// What the last look at the entry under the lock saw (lets a poll
    /// with the same waker skip the lock while nothing fired).
    seen: Seen,
    /// The deadline the entry was made for: never later than the sleep's
    /// (a [`reset`](Sleep::reset) to a later deadline keeps the entry, and
    /// when it fires early the sleep registers again).
    deadline: Instant,
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
    /// back on every request) touches no lock: the wheel entry stays where
    /// it was, and when it fires early the sleep registers again for the
    /// new deadline. A timer reset a thousand times between two firings
    /// costs one registration, not a thousand. Moving it earlier removes
    /// the entry; the next poll registers the new deadline.
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
            if !armed
                .handle
                .time()
                .poll_fired(armed.reg, &mut armed.seen, cx.waker())
            {
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
        let armed = context::with_current_handle(|handle| match handle {
            Some(handle) => self.arm(handle, cx),
            None if Instant::now() < self.deadline => panic!(
                "a weft timer was polled outside a weft runtime: \
                 call it inside `Runtime::block_on` or a spawned task"
            ),
            None => Arm::Due,
        });
        match armed {
            Arm::Armed(armed) => {
                self.timer = Some(armed);
                return Poll::Pending;
            }
            Arm::Later => return Poll::Pending,
            Arm::Due => {}
        }
        self.done = true;
        Poll::Ready(())
    }
}

/// What a poll of an unregistered sleep found.
enum Arm {
    /// Registered: the sleep keeps the entry.
    Armed(Armed),
    /// Still ahead, but the task will be polled again anyway: register then.
    Later,
    /// The deadline has passed.
    Due,
}

impl Sleep {
    /// Registers the timer unless its deadline has passed.
    fn arm(&self, handle: &Handle, cx: &mut Context<'_>) -> Arm {
        let time = handle.time();
        let at = time.at(self.deadline);
        // The coarse clock first: for a far deadline it settles the
        // question without the dearer precise read.
        if !(time.certainly_before(at) || Instant::now() < self.deadline) {
            return Arm::Due;
        }
        // The task was woken during this poll (it yielded, say) and will
        // poll us again: register the timer then, if it is still needed. A
        // `timeout` around code that yields once and finishes then never
        // touches the wheel.
        if crate::task::waker::will_be_polled_again(cx.waker()) {
            return Arm::Later;
        }
        let (shard, on_worker) = handle.timer_shard();
        match time.register_at(shard, at, cx.waker()) {
            Some((reg, seen)) => {
                if !on_worker {
                    // The shard's worker may be parked with a later timeout:
                    // have it recompute.
                    handle.unpark_worker(shard);
                }
                Arm::Armed(Armed {
                    handle: handle.clone(),
                    reg,
                    seen,
                    deadline: self.deadline,
                })
            }
            None => Arm::Due,
        }
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

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering::SeqCst},
            Arc,
        },
        task::{Wake, Waker},
    };

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn wait_for(count: &Count, at_least: usize) {
        let limit = Instant::now() + Duration::from_secs(5);
        while count.0.load(SeqCst) < at_least && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn pending_timers() -> usize {
        crate::runtime::Handle::current().metrics().timers_pending
    }

    /// A later reset keeps the wheel entry; its early firing wakes the
    /// newest waker and the sleep registers again, completing no earlier
    /// than the new deadline. An earlier reset replaces the entry.
    #[test]
    fn a_later_reset_keeps_the_entry_and_still_completes_late_enough() {
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
            {
                let mut poll = |w: &Waker| sleep.as_mut().poll(&mut Context::from_waker(w));
                assert!(poll(&wa).is_pending());
                assert!(poll(&wb).is_pending(), "a new waker replaces the old");
                assert_eq!(pending_timers(), 1);
            }
            // Far enough past the first deadline that a loaded machine
            // does not reach it before the poll after the early firing.
            sleep.as_mut().reset(start + Duration::from_millis(300));
            assert_eq!(pending_timers(), 1, "a later reset keeps the entry");
            // The old entry fires at ~30 ms and wakes B, the newest waker.
            wait_for(&b, 1);
            assert_eq!(a.0.load(SeqCst), 0, "the replaced waker is not woken");
            assert_eq!(b.0.load(SeqCst), 1);
            let mut poll = |w: &Waker| sleep.as_mut().poll(&mut Context::from_waker(w));
            assert!(poll(&wb).is_pending(), "fired early: registers again");
            assert_eq!(pending_timers(), 1);
            wait_for(&b, 2);
            assert!(poll(&wb).is_ready());
            assert_eq!(pending_timers(), 0, "a completed sleep holds no entry");
            Instant::now()
        });
        assert!(fired_at >= start + Duration::from_millis(300));
    }

    /// Moving a registered sleep earlier replaces its entry, so it fires at
    /// the earlier deadline, not the first one.
    #[test]
    fn an_earlier_reset_replaces_the_entry() {
        let rt = crate::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let start = Instant::now();
        let elapsed = rt.block_on(async {
            let mut sleep = Box::pin(sleep(Duration::from_secs(30)));
            let count = Arc::new(Count(AtomicUsize::new(0)));
            let waker = Waker::from(count.clone());
            assert!(sleep
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            sleep
                .as_mut()
                .reset(Instant::now() + Duration::from_millis(20));
            assert_eq!(pending_timers(), 0, "the 30 s entry is gone");
            sleep.as_mut().await.unwrap();
            start.elapsed()
        });
        assert!(elapsed >= Duration::from_millis(20));
        assert!(
            elapsed < Duration::from_secs(5),
            "fired at the new deadline"
        );
    }
}
