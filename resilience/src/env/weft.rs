//! The policies on weft: [`WeftEnv`].

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use weft::cancel::{CancelHandle, Cancelled, Cause, Scope};

use super::{Env, Interrupted, ScopeHandle, TimedOut};
use crate::clock::{Clock, SystemClock};

/// The policies on a weft runtime: sleeps end with the caller's
/// cancellation, the deadline is the task's, attempts run in child scopes
/// and timeouts are scopes with a deadline (see the [module docs](super)).
#[derive(Debug, Clone, Copy)]
pub struct WeftEnv {
    clock: SystemClock,
}

impl WeftEnv {
    /// An environment reading the coarse monotonic clock.
    pub fn new() -> WeftEnv {
        WeftEnv {
            clock: SystemClock::new(),
        }
    }
}

impl Default for WeftEnv {
    fn default() -> WeftEnv {
        WeftEnv::new()
    }
}

/// How a weft cancellation reads to a policy: a deadline (its own or an
/// enclosing scope's), a shutdown, or the caller cancelling.
pub fn interrupted(cancelled: &Cancelled) -> Interrupted {
    if cancelled.is_deadline() {
        return Interrupted::Deadline;
    }
    match cancelled.origin() {
        Cause::Shutdown => Interrupted::Shutdown,
        _ => Interrupted::Cancelled,
    }
}

impl Env for WeftEnv {
    type Sleep = WeftSleep;
    type Scoped<F: Future> = Scope<F>;
    type Handle = WeftScopeHandle;
    type Timeout<F: Future> = WeftTimeout<F>;
    type Attempt<F: Future> = WeftAttempt<F>;

    #[inline]
    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn sleep(&self, duration: Duration) -> WeftSleep {
        WeftSleep {
            inner: weft::time::sleep(duration),
        }
    }

    #[inline]
    fn remaining(&self) -> Option<Duration> {
        weft::cancel::remaining()
    }

    #[inline]
    fn check(&self) -> Result<(), Interrupted> {
        weft::cancel::check().map_err(|c| interrupted(&c))
    }

    fn scoped<F: Future>(&self, future: F) -> (Scope<F>, WeftScopeHandle) {
        let scope = weft::cancel::scope(future);
        let handle = WeftScopeHandle(scope.handle());
        (scope, handle)
    }

    #[inline]
    fn attempt<F: Future>(&self, future: F) -> WeftAttempt<F> {
        // weft's lazy scope: its node is made only when the code inside
        // needs one (a spawn, `current()`); no deadline, so no timer.
        WeftAttempt {
            inner: weft::cancel::lazy_scope(future),
        }
    }

    #[inline]
    fn timeout<F: Future>(&self, after: Duration, future: F) -> WeftTimeout<F> {
        WeftTimeout {
            inner: weft::time::timeout(after, future),
            after,
        }
    }
}

/// [`weft::time::Sleep`] with its cancellation read as [`Interrupted`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct WeftSleep {
    inner: weft::time::Sleep,
}

impl Future for WeftSleep {
    type Output = Result<(), Interrupted>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|r| r.map_err(|c| interrupted(&c)))
    }
}

/// Cancels a weft scope (cause `Explicit`).
#[derive(Debug, Clone)]
pub struct WeftScopeHandle(CancelHandle);

impl ScopeHandle for WeftScopeHandle {
    fn cancel(&self) {
        self.0.cancel_with("cancelled by a resilience policy");
    }
}

/// [`weft::time::Timeout`] with its error read as [`TimedOut`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct WeftTimeout<F> {
    inner: weft::time::Timeout<F>,
    after: Duration,
}

impl<F: Future> Future for WeftTimeout<F> {
    type Output = Result<F::Output, TimedOut>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned (never moved out of the
        // pinned `WeftTimeout`); `after` is plain data.
        let this = unsafe { self.get_unchecked_mut() };
        let after = this.after;
        // SAFETY: see above.
        unsafe { Pin::new_unchecked(&mut this.inner) }
            .poll(cx)
            .map(|r| r.map_err(|_| TimedOut { after }))
    }
}

/// A retry attempt in weft's lazy scope ([`weft::cancel::lazy_scope`]): a
/// child scope made only if the attempt spawns or asks for its scope.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct WeftAttempt<F> {
    inner: weft::cancel::LazyScope<F>,
}

impl<F: Future> Future for WeftAttempt<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned (never moved out of the
        // pinned `WeftAttempt`).
        unsafe { self.map_unchecked_mut(|s| &mut s.inner) }.poll(cx)
    }
}
