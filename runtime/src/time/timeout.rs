use std::{
    error::Error,
    fmt,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use super::sleep::{sleep_until, timeout_deadline_after, Sleep};
use crate::cancel::NodeArc;
use crate::{
    cancel::{Cause, PendingScope},
    context,
};

/// Runs `future` until it completes or `duration` passes, whichever is first.
///
/// The future runs in a nested cancellation scope whose deadline is
/// `min(now + duration, enclosing deadline)`: await points inside see the
/// scope's cancellation, and tasks it spawns inherit the deadline. On expiry
/// the scope is cancelled, the future dropped and `Err(Elapsed)` returned.
/// The inner future is polled first, so one that is ready at the deadline
/// wins. The deadline fires even if the inner future used up the task's
/// cooperative budget.
///
/// A `duration` of 2 s or more is measured on the kernel's coarse
/// monotonic clock, which is ten times cheaper to read: the deadline is
/// never earlier than `now + duration` and at most two kernel ticks (1–4 ms
/// each) later. Shorter timeouts use the precise clock.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    timeout_at(timeout_deadline_after(duration), future)
}

/// As [`timeout`], with an absolute deadline.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until(deadline),
        node: None,
        pending: PendingScope::new(Some(deadline)),
    }
}

/// The future returned by [`timeout`] and [`timeout_at`].
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
    /// The scope, once something inside needed it (see `PendingScope`).
    node: Option<NodeArc>,
    pending: PendingScope,
}

impl<F> Timeout<F> {
    /// Whether something inside made the timeout's scope node (tests of the
    /// await points that must not).
    #[cfg(test)]
    pub(crate) fn has_node(&self) -> bool {
        self.node.is_some()
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.sleep.deadline()
    }

    /// The wrapped future.
    pub fn into_inner(mut self) -> F {
        if let Some(node) = self.node.take() {
            node.finish();
        }
        // SAFETY: `self` is forgotten right after its fields are moved out,
        // so nothing is dropped twice; `future` is not pinned (we own `self`).
        let future = unsafe { std::ptr::read(&self.future) };
        // SAFETY: as above.
        let sleep = unsafe { std::ptr::read(&self.sleep) };
        std::mem::forget(self);
        drop(sleep);
        future
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned (never moved out while
        // pinned); `sleep` is Unpin and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let deadline = this.sleep.deadline();
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        let polled = match &this.node {
            Some(node) => {
                node.set_waiter(cx.waker());
                context::with_scope(node, || future.poll(cx))
            }
            None => {
                let polled = context::with_pending(&this.pending, || future.poll(cx));
                this.node = this.pending.take_node();
                polled
            }
        };
        if let Poll::Ready(out) = polled {
            // An inner future that finished because our own deadline
            // cancelled it (its await points returned the cancellation)
            // reports the timeout, as if the deadline had been checked first.
            if this.node.as_ref().is_some_and(|n| n.is_cancelled()) && this.sleep.is_elapsed() {
                return Poll::Ready(Err(Elapsed { deadline }));
            }
            return Poll::Ready(Ok(out));
        }
        match this.sleep.poll_elapsed(cx) {
            Poll::Ready(()) => {
                if let Some(node) = &this.node {
                    node.cancel(Cause::Deadline, None);
                }
                // (A node reports its own expiry when cancelled.)
                #[cfg(feature = "tracing")]
                if this.node.is_none() {
                    crate::instrument::deadline_expired(None, deadline);
                }
                Poll::Ready(Err(Elapsed { deadline }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> Drop for Timeout<F> {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.finish();
        }
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("deadline", &self.sleep.deadline())
            .finish()
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    deadline: Instant,
}

impl Elapsed {
    pub(crate) fn new(deadline: Instant) -> Elapsed {
        Elapsed { deadline }
    }

    /// The deadline that passed.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl fmt::Debug for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Elapsed(..)")
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(err: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, err)
    }
}
