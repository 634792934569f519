use std::{
    fmt,
    future::Future,
    sync::Arc as StdArc,
    time::{Duration, Instant},
};

use super::{Id, JoinHandle};
use crate::{cancel::SpawnOptions, context, runtime::Handle, time::timeout_deadline_after};

/// Spawns a task with a name, a deadline, or no parent.
///
/// ```
/// # weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap().block_on(async {
/// use std::time::Duration;
/// let handle = weft::task::Builder::new()
///     .name("fetch")
///     .timeout(Duration::from_millis(50))
///     .spawn(async {
///         // The deadline flows into everything this task awaits and spawns.
///         assert!(weft::cancel::remaining().unwrap() <= Duration::from_millis(50));
///         weft::time::sleep(Duration::from_secs(5)).await
///     });
/// let slept = handle.await.unwrap();
/// assert!(slept.unwrap_err().is_deadline());
/// # });
/// ```
#[derive(Default)]
pub struct Builder {
    name: Option<StdArc<str>>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    detached: bool,
}

impl Builder {
    /// A builder with no name, no own deadline, attached to the current scope.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the task (readable inside with `weft::cancel::task_name()`).
    pub fn name(mut self, name: impl Into<StdArc<str>>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// The task's own deadline; its effective deadline is the earlier of
    /// this and its parent's.
    pub fn deadline(mut self, deadline: Instant) -> Builder {
        self.deadline = Some(deadline);
        self
    }

    /// A deadline `duration` after the spawn (for 2 s or more, read from
    /// the coarse clock: never early, at most two kernel ticks late; see
    /// [`time::timeout`](crate::time::timeout)).
    pub fn timeout(mut self, duration: Duration) -> Builder {
        self.timeout = Some(duration);
        self
    }

    /// No parent: the task is neither cancelled with the current scope nor
    /// bound by its deadline (Go's `context.WithoutCancel`).
    pub fn detached(mut self) -> Builder {
        self.detached = true;
        self
    }

    // Inlined into `spawn`: out of line it was a fifth of what a spawn
    // with a timeout costs over a plain one.
    #[inline(always)]
    fn into_options(self) -> SpawnOptions {
        let from_timeout = self.timeout.map(timeout_deadline_after);
        let deadline = match (self.deadline, from_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        SpawnOptions {
            deadline,
            detached: self.detached,
            name: self.name,
            parent: None,
        }
    }

    /// Spawns on the current runtime.
    ///
    /// # Panics
    /// Outside a weft runtime.
    #[inline]
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let opts = self.into_options();
        let location = std::panic::Location::caller();
        context::with_current_handle(|handle| match handle {
            Some(handle) => handle.spawn_at(future, Id::next(), &opts, location),
            None => panic!(
                "`task::Builder::spawn` called outside a weft runtime: call it inside \
                 `Runtime::block_on`, a spawned task, or after `Runtime::enter`"
            ),
        })
    }

    /// Spawns on `handle`'s runtime.
    #[track_caller]
    pub fn spawn_on<F>(self, future: F, handle: &Handle) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        handle
            .inner
            .spawn_with(future, Id::next(), &self.into_options())
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("deadline", &self.deadline)
            .field("timeout", &self.timeout)
            .field("detached", &self.detached)
            .finish()
    }
}
