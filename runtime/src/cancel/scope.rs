//! Scopes inside a task: `scope` (cancellable from outside), `lazy_scope`
//! (a child scope made only if something inside needs it), `shield`
//! (ignores outer cancellation, bounded by its own deadline). `timeout`
//! (in `time/`) is the fourth kind.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc as StdArc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use super::{node::Node, with_current_scope, Cause, PendingScope};
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

/// Runs `future` in a child scope of the current one that is created only
/// when something inside needs it: a spawn (the task becomes the scope's
/// child), [`current`](super::current), a nested [`scope`] or `TaskGroup`.
/// Until then it costs a pointer swap per poll and no allocation, and await
/// points inside see the enclosing scope (so the enclosing cancellation and
/// deadline apply exactly as outside). Once made, the scope has no deadline
/// of its own and ends with the future: code inside can cancel it (through
/// `current()`) without cancelling the rest of the task.
///
/// It is [`timeout`](crate::time::timeout)'s lazy scope without the
/// deadline, hence without the timer: for work that wants its spawns grouped
/// under one node (a retry's attempt) but is rarely cancelled on its own.
/// To cancel it from outside, use [`scope`], which has a handle.
///
/// ```
/// # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// # rt.block_on(rt.spawn(async {
/// let inner = weft::cancel::lazy_scope(async {
///     // Asking for the scope makes it: cancelling it stays inside.
///     let me = weft::cancel::current().expect("in a task");
///     me.cancel();
///     weft::cancel::check().is_err()
/// })
/// .await;
/// assert!(inner);
/// assert!(weft::cancel::check().is_ok());
/// # })).unwrap();
/// ```
pub fn lazy_scope<F: Future>(future: F) -> LazyScope<F> {
    LazyScope {
        future,
        node: None,
        pending: PendingScope::new(None),
    }
}

/// The future returned by [`lazy_scope`].
pub struct LazyScope<F> {
    future: F,
    /// The scope, once something inside needed it.
    node: Option<NodeArc>,
    pending: PendingScope,
}

impl<F> LazyScope<F> {
    /// Whether something inside made the scope's node.
    pub fn is_materialized(&self) -> bool {
        self.node.is_some()
    }
}

impl<F: Future> Future for LazyScope<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned (never moved out while
        // pinned); `node` and `pending` are never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        match &this.node {
            Some(node) => {
                node.set_waiter(cx.waker());
                context::with_scope(node, || future.poll(cx))
            }
            None => {
                let polled = context::with_pending(&this.pending, || future.poll(cx));
                this.node = this.pending.take_node();
                polled
            }
        }
    }
}

impl<F> Drop for LazyScope<F> {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.finish();
        }
    }
}

impl<F> fmt::Debug for LazyScope<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyScope")
            .field("materialized", &self.node.is_some())
            .finish()
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
