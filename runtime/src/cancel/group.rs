//! `TaskGroup`: a set of tasks that is also a cancellation scope.
//!
//! # Protocol
//! - The group owns its children's `JoinHandle`s in a slab, each with its
//!   spawn number (for `join_all`'s order).
//! - Each child carries a `Finished` guard, moved into its future before
//!   the spawn: dropped when the future ends (returns, panics, is aborted,
//!   or is dropped unpolled at shutdown), it pushes the child's slab key on
//!   the shared `finished` queue and wakes the group's joiner. So the group
//!   learns which children ended without polling every handle: `join_next`
//!   polls only the handles whose keys came through the queue, and a
//!   reaping group drops those handles at its next `spawn`.
//! - A key is pushed once per child, and its slab entry is removed only
//!   after the key was taken from the queue, so a reused key never meets a
//!   stale push.
//! - The joiner's waker is stored under the same lock the queue is drained
//!   under: a push either lands before the drain (and is seen) or after the
//!   waker is stored (and wakes it).
//! - A handle whose guard was dropped may still be `Pending` for a moment
//!   (the task completes after its future returns): it stays in `ready`
//!   and its poll registered the joiner's waker with the task.

use std::{
    fmt,
    future::{poll_fn, Future},
    sync::Arc as StdArc,
    task::{Context, Poll, Waker},
};

use slab::Slab;

use super::{node::Node, poll_cancelled, with_current_scope, CancelHandle, Cause, SpawnOptions};
use crate::{
    cancel::NodeArc,
    context, coop,
    facade::{lock, Arc, Mutex},
    task::Id,
    JoinError, JoinHandle,
};

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

/// The reason children get when the code joining the group is cancelled
/// and the group is not below it (when it is, the cancel reaches the
/// children by the tree, with its own cause).
const JOINER_CANCELLED: &str = "the code joining the task group was cancelled";

/// A group of tasks spawned into one scope of their own (a child of the
/// scope that created the group).
///
/// - [`join_next`](Self::join_next) gives results as tasks finish,
///   [`join_all`](Self::join_all) all of them in spawn order: every child's
///   output, panic or cancellation is reported, none is lost.
/// - **Joining waits for the children, like a Trio nursery or Kotlin's
///   `coroutineScope`.** If the joining code's own scope is cancelled, or
///   its deadline passes, while it waits in `join_next` or `join_all`, the
///   group's children are cancelled and the join goes on waiting for them:
///   their results (their outputs, which usually report the cancellation
///   they saw) are returned, not an error. A child that ignores its
///   cancellation therefore holds the joiner up; bound such code with
///   `abort` or a `shield`.
/// - **Bound a join with the task's deadline, not with `time::timeout`.**
///   A `timeout` ends its future by dropping it at the deadline, and
///   dropping `join_all` drops the group: the children are cancelled but
///   their results are gone. Give the deadline to the joining task
///   (`task::Builder::timeout`), or cancel the group from a timer through
///   [`cancel_handle`](Self::cancel_handle) and keep joining.
/// - Dropping the group cancels (cooperatively) the children that are left.
/// - With [`cancel_on_error`](Self::cancel_on_error), the first child that
///   fails (an `Err`/`None` output per [`Outcome`], or a panic) cancels its
///   siblings, as Java's `ShutdownOnFailure`.
/// - With [`reap_finished`](Self::reap_finished), for an accept loop's
///   connections: each `spawn` drops the handles (and so the outputs) of
///   the children that have finished, so the group holds only what runs.
///
/// ```
/// use weft::cancel::TaskGroup;
///
/// # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// # rt.block_on(rt.spawn(async {
/// let mut group = TaskGroup::new();
/// for i in 0..3 {
///     group.spawn(async move { i * 10 });
/// }
/// let out: Vec<u32> = group.join_all().await.into_iter().map(Result::unwrap).collect();
/// assert_eq!(out, [0, 10, 20]);
/// # })).unwrap();
/// ```
pub struct TaskGroup<T> {
    node: NodeArc,
    /// The scope the group was made in (its node's parent), if any.
    creator: Option<NodeArc>,
    /// Handles not yet joined or reaped, with their spawn number.
    handles: Slab<(u64, JoinHandle<T>)>,
    next_seq: u64,
    /// Keys taken from `shared.finished` whose handle has not been
    /// returned or reaped yet.
    ready: Vec<usize>,
    shared: Arc<Mutex<Shared>>,
    failure: Option<fn(&T) -> bool>,
    reap: bool,
}

#[derive(Default)]
struct Shared {
    /// Slab keys of children whose future has ended.
    finished: Vec<usize>,
    /// The task waiting in `join_next`/`join_all`.
    waker: Option<Waker>,
}

/// Moved into a child's future: its drop tells the group the child ended.
struct Finished {
    shared: Arc<Mutex<Shared>>,
    key: usize,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let waker = {
            let mut shared = lock(&self.shared);
            shared.finished.push(self.key);
            shared.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T: Send + 'static> TaskGroup<T> {
    /// A group under the current scope (a root outside any task).
    pub fn new() -> TaskGroup<T> {
        let (node, creator) = with_current_scope(|parent| match parent {
            Some(parent) => (Node::child(parent, None, None, None), Some(parent.clone())),
            None => (Node::root(None, None, None), None),
        });
        TaskGroup {
            node,
            creator,
            handles: Slab::new(),
            next_seq: 0,
            ready: Vec::new(),
            shared: Arc::new(Mutex::new(Shared::default())),
            failure: None,
            reap: false,
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

    /// Makes each [`spawn`](Self::spawn) first drop the handles of the
    /// children that have finished since the last one, with their outputs
    /// (and panics: use [`cancel_on_error`](Self::cancel_on_error) or handle
    /// errors inside the child if they matter). A group serving an accept
    /// loop then holds only its running connections, however long it runs.
    /// `join_next`, `try_join_next` and `join_all` still return the results
    /// of children that finished after the last spawn, so a graceful
    /// shutdown can stop accepting and `join_all` what is left.
    pub fn reap_finished(mut self) -> TaskGroup<T> {
        self.reap = true;
        self
    }

    /// Spawns a child into the group's scope on the current runtime (in a
    /// reaping group, after dropping the finished children's handles).
    ///
    /// # Panics
    /// Outside a weft runtime.
    #[track_caller]
    pub fn spawn<F>(&mut self, future: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        // Before a key is handed to a guard: a spawn that panicked after
        // that would leave a stale key in the queue.
        if !context::with_current_handle(|handle| handle.is_some()) {
            panic!("`TaskGroup::spawn` called outside a weft runtime");
        }
        if self.reap {
            self.reap_now();
        }
        let node = self.node.clone();
        let failure = self.failure;
        let entry = self.handles.vacant_entry();
        // Owned by the child's future from here on: dropped with it even if
        // the task is never polled.
        let finished = Finished {
            shared: self.shared.clone(),
            key: entry.key(),
        };
        let child = async move {
            let _finished = finished;
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
        let location = std::panic::Location::caller();
        let handle = context::with_current_handle(|handle| {
            handle
                .expect("checked above")
                .spawn_at(child, Id::next(), &opts, location)
        });
        entry.insert((self.next_seq, handle));
        self.next_seq += 1;
    }

    /// Drops the handles of the children that have finished.
    fn reap_now(&mut self) {
        self.take_finished(None);
        for key in self.ready.drain(..) {
            drop(self.handles.remove(key));
        }
    }

    /// Moves the keys of the children that ended into `ready`; with a
    /// waker, stores it (under the same lock) to be woken by the next one.
    fn take_finished(&mut self, waker: Option<&Waker>) {
        let mut shared = lock(&self.shared);
        self.ready.append(&mut shared.finished);
        if let Some(waker) = waker {
            match &shared.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => shared.waker = Some(waker.clone()),
            }
        }
    }

    /// Children not yet joined: running ones, and finished ones whose
    /// result has not been taken. In a [reaping](Self::reap_finished) group,
    /// only the running ones (the finished are reaped, not joined).
    pub fn len(&self) -> usize {
        if self.reap {
            let finished = lock(&self.shared).finished.len();
            self.handles.len() - self.ready.len() - finished
        } else {
            self.handles.len()
        }
    }

    /// True when [`len`](Self::len) is zero: nothing left to join (in a
    /// reaping group: nothing running).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next child to finish, or `None` when all have been joined.
    ///
    /// If the awaiting code's scope is cancelled or its deadline passes, the
    /// group's children are cancelled and this goes on waiting for the next
    /// of them to finish (see the type's docs): a `while let Some(r) =
    /// group.join_next().await` loop then drains the group and ends, with
    /// every child's result.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        poll_fn(|cx| self.poll_join_next(cx))
            .await
            .map(|(_, res)| res)
    }

    /// The result of a child that has finished, if any, without waiting;
    /// `None` also when no child has finished yet (see
    /// [`is_empty`](Self::is_empty)). For loops that reap as they go.
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.take_finished(None);
        let at = self
            .ready
            .iter()
            .position(|&key| self.handles[key].1.is_finished())?;
        let key = self.ready.swap_remove(at);
        let (_, mut handle) = self.handles.remove(key);
        let waker = Waker::noop();
        match handle.poll_unscoped(&mut Context::from_waker(waker)) {
            Poll::Ready(res) => Some(res),
            Poll::Pending => unreachable!("a finished task's output is ready"),
        }
    }

    fn poll_join_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(u64, Result<T, JoinError>)>> {
        if self.handles.is_empty() {
            return Poll::Ready(None);
        }
        let restore = std::task::ready!(coop::poll_proceed(cx));
        self.cancel_if_joiner_cancelled();
        self.take_finished(Some(cx.waker()));
        for i in 0..self.ready.len() {
            let key = self.ready[i];
            if let Poll::Ready(res) = self.handles[key].1.poll_unscoped(cx) {
                restore.made_progress();
                self.ready.swap_remove(i);
                let (seq, _) = self.handles.remove(key);
                return Poll::Ready(Some((seq, res)));
            }
        }
        crate::runtime::dump::awaiting(cx.waker(), crate::runtime::dump::Awaiting::Join);
        Poll::Pending
    }

    /// If the joining code's scope is cancelled (or its deadline has
    /// passed), cancels the children; otherwise makes sure that scope wakes
    /// the joiner when it is cancelled (its node, its deadline timer).
    fn cancel_if_joiner_cancelled(&self) {
        if self.node.is_cancelled() {
            return;
        }
        with_current_scope(|_| ());
        if poll_cancelled(None, true).is_none() {
            return;
        }
        // When the group is below the cancelled scope, the tree's walk
        // cancels it, maybe not yet (the canceller may be on another
        // thread, between the two nodes): cancel it as that walk would, so
        // the children see the cause the tree gives them whichever of the
        // two comes first.
        match self.creator.as_ref().and_then(|c| c.cancelled()) {
            Some(above) => self.node.cancel_below(&above),
            None => self
                .node
                .cancel(Cause::Explicit, Some(StdArc::from(JOINER_CANCELLED))),
        };
    }

    /// Waits for every child, returning their results in spawn order.
    ///
    /// If the awaiting code's scope is cancelled or its deadline passes
    /// meanwhile, the children are cancelled and still waited for: every
    /// child's result is returned, none is lost (see the type's docs).
    pub async fn join_all(mut self) -> Vec<Result<T, JoinError>> {
        let mut out = Vec::with_capacity(self.handles.len());
        while let Some(res) = poll_fn(|cx| self.poll_join_next(cx)).await {
            out.push(res);
        }
        out.sort_unstable_by_key(|(seq, _)| *seq);
        out.into_iter().map(|(_, res)| res).collect()
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
            .field("reap_finished", &self.reap)
            .finish()
    }
}
