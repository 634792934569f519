//! Scopes inside a task: `scope` (cancellable from outside), `shield`
//! (ignores outer cancellation, bounded by its own deadline). `timeout`
//! (in `time/`) is the third kind.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc as StdArc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use super::{node::Node, with_current_scope, Cause};
use crate::cancel::NodeArc;
use crate::{
    context,
    time::{sleep_until, timeout_deadline_after, Elapsed, Sleep},
};

/// Cancels a scope from anywhere. Cheap to clone.
#[derive(Clone)]
pub struct CancelHandle {
    pub(crate) node: NodeArc,
}

impl CancelHandle {
    /// Cancels the scope and everything in it (cause `Explicit`). Returns
    /// false if it was already cancelled (the first cause stays).
    pub fn cancel(&self) -> bool {
        self.node.cancel(Cause::Explicit, None)
    }

    /// As [`cancel`](Self::cancel), with a reason the cancelled code can read
    /// ([`Cancelled::reason`](super::Cancelled::reason)).
    pub fn cancel_with(&self, reason: impl Into<StdArc<str>>) -> bool {
        self.node.cancel(Cause::Explicit, Some(reason.into()))
    }

    /// True once the scope is cancelled (by this handle or otherwise).
    pub fn is_cancelled(&self) -> bool {
        self.node.is_cancelled()
    }

    /// The scope's effective deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.node.deadline()
    }

    /// Tasks and scopes attached directly under this scope now. Finished
    /// children detach, so this stays bounded for a long-lived scope.
    pub fn child_count(&self) -> usize {
        self.node.child_count()
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// Runs `future` in a new scope under the current one (a root outside any
/// task), which [`Scope::handle`] can cancel without cancelling the rest of
/// the task. Tasks the future spawns are children of the scope.
pub fn scope<F: Future>(future: F) -> Scope<F> {
    let node = with_current_scope(|parent| match parent {
        Some(parent) => Node::child(parent, None, None, None),
        None => Node::root(None, None, None),
    });
    Scope { future, node }
}

/// The future returned by [`scope`].
pub struct Scope<F> {
    future: F,
    node: NodeArc,
}

impl<F> Scope<F> {
    /// A handle that cancels this scope.
    pub fn handle(&self) -> CancelHandle {
        CancelHandle {
            node: self.node.clone(),
        }
    }
}

impl<F: Future> Future for Scope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned; `node` is never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        this.node.set_waiter(cx.waker());
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        context::with_scope(&this.node, || future.poll(cx))
    }
}

impl<F> Drop for Scope<F> {
    fn drop(&mut self) {
        self.node.finish();
    }
}

impl<F> fmt::Debug for Scope<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").field("node", &self.node).finish()
    }
}

/// Runs cleanup that must not be cut short by the enclosing scope's
/// cancellation, bounded by its own `limit`: inside, await points ignore
/// outer cancellation and fail only when `limit` passes; the shield returns
/// `Err(Elapsed)` if `future` has not finished by then (it is dropped).
///
/// Tasks spawned inside are children of the shield, not of the outer scope.
pub fn shield<F: Future>(limit: Duration, future: F) -> Shield<F> {
    let deadline = timeout_deadline_after(limit);
    let node = Node::root(Some(deadline), None, None);
    // The shield's own sleep fires this deadline.
    node.assume_armed();
    Shield {
        future,
        node,
        sleep: sleep_until(deadline),
    }
}

/// The future returned by [`shield`].
pub struct Shield<F> {
    future: F,
    node: NodeArc,
    sleep: Sleep,
}

impl<F: Future> Future for Shield<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned; the rest is never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        this.node.set_waiter(cx.waker());
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(out) = context::with_scope(&this.node, || future.poll(cx)) {
            // Finished because our own limit cancelled it: report the limit.
            if this.node.is_cancelled() && this.sleep.is_elapsed() {
                return Poll::Ready(Err(Elapsed::new(this.sleep.deadline())));
            }
            return Poll::Ready(Ok(out));
        }
        match this.sleep.poll_elapsed(cx) {
            Poll::Ready(()) => {
                this.node.cancel(Cause::Deadline, None);
                Poll::Ready(Err(Elapsed::new(this.sleep.deadline())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> Drop for Shield<F> {
    fn drop(&mut self) {
        self.node.finish();
    }
}

impl<F> fmt::Debug for Shield<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shield").field("node", &self.node).finish()
    }
}
