//! `TaskGroup`: a set of tasks that is also a cancellation scope.

use std::{
    fmt,
    future::{poll_fn, Future},
    sync::Arc as StdArc,
    task::Poll,
};

use super::{node::Node, with_current_scope, CancelHandle, Cause, SpawnOptions};
use crate::cancel::NodeArc;
use crate::{context, task::Id, JoinError, JoinHandle};

/// An outcome a [`TaskGroup`] with `cancel_on_error` can judge.
pub trait Outcome {
    /// True if this outcome should cancel the siblings.
    fn is_failure(&self) -> bool;
}

impl<T, E> Outcome for Result<T, E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

impl<T> Outcome for Option<T> {
    fn is_failure(&self) -> bool {
        self.is_none()
    }
}

impl Outcome for () {
    fn is_failure(&self) -> bool {
        false
    }
}

/// A group of tasks spawned into one scope of their own (a child of the
/// scope that created the group).
///
/// - [`join_next`](Self::join_next) gives results as tasks finish,
///   [`join_all`](Self::join_all) all of them in spawn order: every child's
///   output, panic or cancellation is reported, none is lost.
/// - Dropping the group cancels (cooperatively) the children that are left.
/// - With [`cancel_on_error`](Self::cancel_on_error), the first child that
///   fails (an `Err`/`None` output per [`Outcome`], or a panic) cancels its
///   siblings, as Java's `ShutdownOnFailure`.
pub struct TaskGroup<T> {
    node: NodeArc,
    handles: Vec<JoinHandle<T>>,
    failure: Option<fn(&T) -> bool>,
}

impl<T: Send + 'static> TaskGroup<T> {
    /// A group under the current scope (a root outside any task).
    pub fn new() -> TaskGroup<T> {
        let node = with_current_scope(|parent| match parent {
            Some(parent) => Node::child(parent, None, None, None),
            None => Node::root(None, None, None),
        });
        TaskGroup {
            node,
            handles: Vec::new(),
            failure: None,
        }
    }

    /// Cancels the siblings when a child fails (see [`Outcome`]) or panics.
    pub fn cancel_on_error(mut self) -> TaskGroup<T>
    where
        T: Outcome,
    {
        self.failure = Some(<T as Outcome>::is_failure);
        self
    }

    /// Spawns a child into the group's scope on the current runtime.
    ///
    /// # Panics
    /// Outside a weft runtime.
    pub fn spawn<F>(&mut self, future: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let node = self.node.clone();
        let failure = self.failure;
        let child = async move {
            // Cancels the siblings if the child panics (dropped while unwinding).
            struct OnPanic(Option<NodeArc>);
            impl Drop for OnPanic {
                fn drop(&mut self) {
                    if let Some(node) = self.0.take() {
                        if std::thread::panicking() {
                            node.cancel(
                                Cause::Explicit,
                                Some(StdArc::from("a sibling task panicked")),
                            );
                        }
                    }
                }
            }
            let mut guard = OnPanic(failure.map(|_| node.clone()));
            let out = future.await;
            if let Some(is_failure) = failure {
                if is_failure(&out) {
                    node.cancel(Cause::Explicit, Some(StdArc::from("a sibling task failed")));
                }
            }
            guard.0 = None;
            out
        };
        let opts = SpawnOptions {
            parent: Some(self.node.clone()),
            ..SpawnOptions::default()
        };
        let handle = context::with_current_handle(|handle| match handle {
            Some(handle) => handle.spawn_with(child, Id::next(), &opts),
            None => panic!("`TaskGroup::spawn` called outside a weft runtime"),
        });
        self.handles.push(handle);
    }

    /// Children spawned and not yet joined.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True when every child has been joined.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The next child to finish, or `None` when all have been joined.
    ///
    /// If the awaiting code's own scope is cancelled, gives that
    /// cancellation as `Err(JoinError)` with `interrupted()` set, without
    /// removing any child.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        if self.handles.is_empty() {
            return None;
        }
        poll_fn(|cx| {
            for i in 0..self.handles.len() {
                if let Poll::Ready(res) = std::pin::Pin::new(&mut self.handles[i]).poll(cx) {
                    if res
                        .as_ref()
                        .err()
                        .and_then(JoinError::interrupted)
                        .is_none()
                    {
                        self.handles.swap_remove(i);
                    }
                    return Poll::Ready(Some(res));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Waits for every child, returning their results in spawn order.
    pub async fn join_all(mut self) -> Vec<Result<T, JoinError>> {
        let handles = std::mem::take(&mut self.handles);
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            out.push(handle.await);
        }
        out
    }

    /// Cancels every child (cooperatively).
    pub fn cancel(&self) -> bool {
        self.node.cancel(Cause::Explicit, None)
    }

    /// A handle that cancels the group from elsewhere.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            node: self.node.clone(),
        }
    }
}

impl<T: Send + 'static> Default for TaskGroup<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for TaskGroup<T> {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            self.node
                .cancel(Cause::Explicit, Some(StdArc::from("task group dropped")));
        }
        self.node.finish();
    }
}

impl<T> fmt::Debug for TaskGroup<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("children", &self.handles.len())
            .field("cancel_on_error", &self.failure.is_some())
            .finish()
    }
}
