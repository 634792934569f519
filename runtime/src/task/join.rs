use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use super::{
    raw::{read_output, RawTask},
    Id, JoinError,
};
use crate::{
    cancel::{self, Cause},
    coop,
    runtime::dump::{self, Awaiting},
};

/// An owned permission to await a task's output.
///
/// Resolves to `Ok(output)`, or `Err(JoinError)` if the task panicked or was
/// aborted. Dropping the handle detaches the task: it keeps running and its
/// output is dropped when it finishes.
pub struct JoinHandle<T> {
    raw: RawTask,
    _output: PhantomData<T>,
}

// SAFETY: the handle only moves the output (`T: Send`) across threads.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` exposes nothing of `T`.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    pub(crate) fn new(raw: RawTask) -> JoinHandle<T> {
        JoinHandle {
            raw,
            _output: PhantomData,
        }
    }

    /// Hard-stops the task: an idle task is dropped at its next schedule, a
    /// running one right after its current poll. Awaiting the handle then
    /// gives `Err(e)` with `e.is_cancelled()`, unless the task finished first.
    pub fn abort(&self) {
        self.raw.remote_abort();
    }

    /// True once the task has finished (output ready, panicked or aborted).
    pub fn is_finished(&self) -> bool {
        self.raw.is_finished()
    }

    /// Cancels the task cooperatively (cause `Explicit`): it and its
    /// descendants see the cancellation at their next await point and can
    /// clean up, unlike [`abort`](Self::abort). Returns false if it was
    /// already cancelled.
    pub fn cancel(&self) -> bool {
        self.raw.node_or_init().cancel(Cause::Explicit, None)
    }

    /// As [`cancel`](Self::cancel), with a reason the task can read.
    pub fn cancel_with(&self, reason: impl Into<std::sync::Arc<str>>) -> bool {
        self.raw
            .node_or_init()
            .cancel(Cause::Explicit, Some(reason.into()))
    }

    /// A handle that can abort the task without owning its output.
    pub fn abort_handle(&self) -> AbortHandle {
        self.raw.header().state.ref_inc();
        AbortHandle { raw: self.raw }
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        self.raw.id()
    }

    /// The output, without looking at the caller's scope and without coop
    /// budget: for `TaskGroup`, which waits for its cancelled children even
    /// when its caller is cancelled (as a Trio nursery does).
    pub(crate) fn poll_unscoped(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
        read_output(self.raw, cx.waker())
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Budget first, as in `Sleep::poll`.
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(cancelled) = cancel::poll_cancelled(None, true) {
            restore.made_progress();
            return Poll::Ready(Err(JoinError::new_interrupted(self.id(), cancelled)));
        }
        let out = read_output(self.raw, cx.waker());
        if out.is_ready() {
            restore.made_progress();
        } else {
            dump::awaiting(cx.waker(), Awaiting::Join);
        }
        out
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        self.raw.drop_join_handle();
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .finish()
    }
}

/// Aborts a task without owning its output. Cheap to clone.
pub struct AbortHandle {
    raw: RawTask,
}

impl AbortHandle {
    /// See [`JoinHandle::abort`].
    pub fn abort(&self) {
        self.raw.remote_abort();
    }

    /// See [`JoinHandle::cancel`].
    pub fn cancel(&self) -> bool {
        self.raw.node_or_init().cancel(Cause::Explicit, None)
    }

    /// See [`JoinHandle::cancel_with`].
    pub fn cancel_with(&self, reason: impl Into<std::sync::Arc<str>>) -> bool {
        self.raw
            .node_or_init()
            .cancel(Cause::Explicit, Some(reason.into()))
    }

    /// True once the task has finished.
    pub fn is_finished(&self) -> bool {
        self.raw.is_finished()
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        self.raw.id()
    }
}

impl Clone for AbortHandle {
    fn clone(&self) -> Self {
        self.raw.header().state.ref_inc();
        AbortHandle { raw: self.raw }
    }
}

impl Drop for AbortHandle {
    fn drop(&mut self) {
        self.raw.drop_reference();
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("id", &self.id())
            .finish()
    }
}
