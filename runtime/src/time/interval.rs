use std::{
    fmt,
    future::poll_fn,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use super::sleep::{sleep_until, Sleep};
use crate::{
    cancel::{self, Cancelled},
    coop,
};

/// Ticks every `period`, the first tick completing at once.
///
/// # Panics
/// If `period` is zero: an interval that never waits is a busy loop.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Ticks every `period`, the first tick at `start`.
///
/// # Panics
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "`period` of an interval must be non-zero"
    );
    Interval {
        period,
        sleep: sleep_until(start),
        missed: MissedTickBehavior::default(),
    }
}

/// What an [`Interval`] does when ticks were missed because the task did not
/// call `tick` in time (it was busy, or the runtime was overloaded).
///
/// With a 10 ms period, ticks due at 10, 20, 30, 40 and a task that only
/// calls `tick` again at 35:
/// - `Burst` (default, as tokio): ticks at 35, 35, then 40, 50 (catches up
///   the missed 20 and 30 at once, keeps the original schedule).
/// - `Delay`: ticks at 35, then 45, 55 (the schedule restarts from now).
/// - `Skip`: ticks at 35, then 40, 50 (drops the missed ticks, keeps the
///   schedule's phase).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks back to back.
    #[default]
    Burst,
    /// Restart the schedule from the late tick.
    Delay,
    /// Skip missed ticks, staying on the original phase.
    Skip,
}

/// A periodic timer, from [`interval`] or [`interval_at`].
pub struct Interval {
    period: Duration,
    sleep: Sleep,
    missed: MissedTickBehavior,
}

impl Interval {
    /// Waits for the next tick and returns the instant it was scheduled for.
    ///
    /// An await point, as [`sleep`](super::sleep): in a cancelled scope or
    /// past the task's deadline it returns the cancellation at once, every
    /// time it is called, and takes no tick (the schedule is as it was, so
    /// a tick that was due is still due when called from a live scope). A
    /// loop over `tick` ends on the error:
    /// `while let Ok(at) = interval.tick().await { ... }`.
    pub async fn tick(&mut self) -> Result<Instant, Cancelled> {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick (an await point: see [`Interval::tick`]).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Result<Instant, Cancelled>> {
        // Budget first, as `Sleep`: a loop that ignores the error still
        // gives its worker back now and then.
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(cancelled) = cancel::poll_cancelled(None, true) {
            restore.made_progress();
            return Poll::Ready(Err(cancelled));
        }
        if self.sleep.poll_elapsed(cx).is_pending() {
            crate::runtime::dump::awaiting(cx.waker(), crate::runtime::dump::Awaiting::Sleep);
            return Poll::Pending;
        }
        restore.made_progress();
        let scheduled = self.sleep.deadline();
        let now = Instant::now();
        let next = match self.missed {
            _ if now < scheduled + self.period => scheduled + self.period,
            MissedTickBehavior::Burst => scheduled + self.period,
            MissedTickBehavior::Delay => now + self.period,
            MissedTickBehavior::Skip => {
                let behind = now.duration_since(scheduled).as_nanos();
                let period = self.period.as_nanos();
                let skipped = (behind / period + 1) as u32;
                scheduled + self.period * skipped
            }
        };
        self.sleep.reset(next);
        Poll::Ready(Ok(scheduled))
    }

    /// Restarts the schedule: the next tick is one period from now.
    pub fn reset(&mut self) {
        self.sleep.reset(Instant::now() + self.period);
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The missed-tick behaviour in use.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed
    }

    /// Sets the missed-tick behaviour.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }
}

impl fmt::Debug for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interval")
            .field("period", &self.period)
            .field("missed", &self.missed)
            .finish()
    }
}
