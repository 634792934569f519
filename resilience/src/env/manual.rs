//! Simulated time: [`ManualEnv`].

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use super::{Env, Interrupted, ScopeHandle, TimedOut};
use crate::clock::{Clock, ManualClock};

/// An [`Env`] on a [`ManualClock`]: [`sleep`](Env::sleep) moves the clock
/// by the duration and completes at once, so code that backs off or hedges
/// runs simulated seconds in microseconds. Clones share the clock, the
/// deadline and the cancellation flag.
///
/// The caller's deadline is [`set_deadline`](ManualEnv::set_deadline) (a
/// time on the clock); [`cancel`](ManualEnv::cancel) makes every later
/// check and sleep fail with [`Interrupted::Cancelled`]. Scopes are
/// recorded but not enforced: a cancelled [`Scoped`](Env::Scoped) future
/// is only dropped, as any future can be.
#[derive(Debug, Clone, Default)]
pub struct ManualEnv {
    clock: ManualClock,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Deadline in nanoseconds on the clock; `u64::MAX`: none.
    deadline: AtomicU64,
    cancelled: AtomicBool,
    /// Time spent in sleeps, in nanoseconds.
    slept: AtomicU64,
    sleeps: AtomicU64,
    scopes_cancelled: AtomicU64,
}

impl ManualEnv {
    /// An environment on a fresh clock at zero, no deadline.
    pub fn new() -> ManualEnv {
        ManualEnv::with_clock(ManualClock::new())
    }

    /// An environment on `clock` (keep a clone to move time yourself).
    pub fn with_clock(clock: ManualClock) -> ManualEnv {
        let shared = Shared {
            deadline: AtomicU64::new(u64::MAX),
            ..Shared::default()
        };
        ManualEnv {
            clock,
            shared: Arc::new(shared),
        }
    }

    /// The clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Sets the caller's deadline to `at` on the clock (`None`: no deadline).
    pub fn set_deadline(&self, at: Option<Duration>) {
        let nanos = at.map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
        });
        self.shared.deadline.store(nanos, Ordering::Relaxed);
    }

    /// Cancels the caller: every later check and sleep fails.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
    }

    /// Total simulated time spent sleeping.
    pub fn slept(&self) -> Duration {
        Duration::from_nanos(self.shared.slept.load(Ordering::Relaxed))
    }

    /// Number of sleeps taken.
    pub fn sleeps(&self) -> u64 {
        self.shared.sleeps.load(Ordering::Relaxed)
    }

    /// Number of scopes cancelled through their handles.
    pub fn scopes_cancelled(&self) -> u64 {
        self.shared.scopes_cancelled.load(Ordering::Relaxed)
    }

    fn deadline(&self) -> Option<Duration> {
        match self.shared.deadline.load(Ordering::Relaxed) {
            u64::MAX => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

impl Env for ManualEnv {
    type Sleep = ManualSleep;
    type Scoped<F: Future> = ManualScoped<F>;
    type Handle = ManualScopeHandle;
    type Timeout<F: Future> = ManualTimeout<F>;
    type Attempt<F: Future> = ManualScoped<F>;

    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn sleep(&self, duration: Duration) -> ManualSleep {
        ManualSleep {
            env: self.clone(),
            duration,
            done: false,
        }
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline().map(|d| d.saturating_sub(self.clock.now()))
    }

    fn check(&self) -> Result<(), Interrupted> {
        if self.shared.cancelled.load(Ordering::Relaxed) {
            return Err(Interrupted::Cancelled);
        }
        match self.deadline() {
            Some(d) if self.clock.now() >= d => Err(Interrupted::Deadline),
            _ => Ok(()),
        }
    }

    fn scoped<F: Future>(&self, future: F) -> (ManualScoped<F>, ManualScopeHandle) {
        let handle = ManualScopeHandle {
            shared: self.shared.clone(),
            cancelled: AtomicBool::new(false),
        };
        (ManualScoped { future }, handle)
    }

    fn attempt<F: Future>(&self, future: F) -> ManualScoped<F> {
        ManualScoped { future }
    }

    fn timeout<F: Future>(&self, after: Duration, future: F) -> ManualTimeout<F> {
        ManualTimeout {
            future,
            until: self.clock.now().saturating_add(after),
            after,
            clock: self.clock.clone(),
        }
    }
}

/// The sleep of a [`ManualEnv`]: moves the clock on its first poll (up to
/// the deadline, if it is nearer, and then fails).
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct ManualSleep {
    env: ManualEnv,
    duration: Duration,
    done: bool,
}

impl Future for ManualSleep {
    type Output = Result<(), Interrupted>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let env = self.env.clone();
        env.check()?;
        if self.done {
            return Poll::Ready(Ok(()));
        }
        self.done = true;
        let mut by = self.duration;
        let cut = env.remaining().is_some_and(|left| left < by);
        if let Some(left) = env.remaining() {
            by = by.min(left);
        }
        env.clock.advance(by);
        env.shared.slept.fetch_add(
            u64::try_from(by.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        env.shared.sleeps.fetch_add(1, Ordering::Relaxed);
        if cut {
            return Poll::Ready(Err(Interrupted::Deadline));
        }
        Poll::Ready(Ok(()))
    }
}

/// A future in a [`ManualEnv`] scope (polled as is).
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct ManualScoped<F> {
    future: F,
}

impl<F: Future> Future for ManualScoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned: never moved out of the
        // pinned `ManualScoped`.
        unsafe { self.map_unchecked_mut(|s| &mut s.future) }.poll(cx)
    }
}

/// Cancels a [`ManualScoped`] future's scope (counted, not enforced).
#[derive(Debug)]
pub struct ManualScopeHandle {
    shared: Arc<Shared>,
    cancelled: AtomicBool,
}

impl ScopeHandle for ManualScopeHandle {
    fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::Relaxed) {
            self.shared.scopes_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The timeout of a [`ManualEnv`]: the future, failed once the clock has
/// moved past the limit.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct ManualTimeout<F> {
    future: F,
    until: Duration,
    after: Duration,
    clock: ManualClock,
}

impl<F: Future> Future for ManualTimeout<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned; the other fields are
        // plain data never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let (until, after) = (this.until, this.after);
        if this.clock.now() > until {
            return Poll::Ready(Err(TimedOut { after }));
        }
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        match future.poll(cx) {
            // A future that finished after simulated time ran past the
            // limit (it slept through it) timed out.
            Poll::Ready(_) if this.clock.now() > until => Poll::Ready(Err(TimedOut { after })),
            Poll::Ready(out) => Poll::Ready(Ok(out)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("a manual-env future did not finish in one poll"),
        }
    }

    #[test]
    fn sleep_moves_the_clock_and_stops_at_the_deadline() {
        let env = ManualEnv::new();
        block(env.sleep(Duration::from_secs(2))).unwrap();
        assert_eq!(env.now(), Duration::from_secs(2));
        env.set_deadline(Some(Duration::from_secs(3)));
        assert_eq!(env.remaining(), Some(Duration::from_secs(1)));
        assert_eq!(
            block(env.sleep(Duration::from_secs(5))),
            Err(Interrupted::Deadline)
        );
        assert_eq!(env.now(), Duration::from_secs(3));
        assert_eq!(env.check(), Err(Interrupted::Deadline));
        assert_eq!(env.sleeps(), 2);
        assert_eq!(env.slept(), Duration::from_secs(3));
    }

    #[test]
    fn cancel_fails_checks_and_sleeps() {
        let env = ManualEnv::new();
        assert_eq!(env.check(), Ok(()));
        env.cancel();
        assert_eq!(env.check(), Err(Interrupted::Cancelled));
        assert_eq!(
            block(env.sleep(Duration::from_secs(1))),
            Err(Interrupted::Cancelled)
        );
        assert_eq!(env.now(), Duration::ZERO);
    }

    #[test]
    fn timeout_fails_a_future_that_slept_past_it() {
        let env = ManualEnv::new();
        let slow = {
            let env = env.clone();
            async move { env.sleep(Duration::from_millis(50)).await }
        };
        let out = block(env.timeout(Duration::from_millis(10), slow));
        assert_eq!(
            out,
            Err(TimedOut {
                after: Duration::from_millis(10)
            })
        );
        let fast = block(env.timeout(Duration::from_millis(10), async { 7 }));
        assert_eq!(fast, Ok(7));
    }

    #[test]
    fn scope_handles_count_cancels_once() {
        let env = ManualEnv::new();
        let (fut, handle) = env.scoped(async { 1 });
        handle.cancel();
        handle.cancel();
        assert_eq!(env.scopes_cancelled(), 1);
        assert_eq!(block(fut), 1);
    }
}
