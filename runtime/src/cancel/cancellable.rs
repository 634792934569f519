//! `cancellable(fut)`: a foreign future as a weft await point.
//!
//! A future from a crate that knows nothing of weft (a futures-channel
//! receiver, a tokio `Notify`, a hyper client call) never looks at the
//! task's scope, so a cancel or a passed deadline does not reach it. The
//! wrapper does what every weft await point does around the inner poll:
//!
//! 1. spend one unit of the coop budget (given back if nothing happened);
//! 2. in a cancelled scope (or one whose deadline has passed, read from the
//!    clock without arming a timer) drop the inner future and return the
//!    cancellation;
//! 3. poll the inner future; ready: done;
//! 4. pending: make sure the task has a node that wakes it on cancel and
//!    arm the scope's deadline timer (only now: a future that is ready at
//!    once costs no timer), then check again, so a cancel that raced the
//!    inner poll is not missed.
//!
//! Level-triggered: once cancelled, every later poll returns the same
//! error. The inner future is dropped at the first one, so what it holds (a
//! lock guard, a connection) is released then, not when the wrapper goes.

use std::{
    fmt,
    future::{Future, IntoFuture},
    pin::Pin,
    task::{Context, Poll},
};

use super::{poll_cancelled, with_current_scope, Cancelled};
use crate::coop;

/// Turns any future into a weft await point: it resolves to `Ok(output)`,
/// or to `Err(Cancelled)` as soon as the current scope is cancelled or its
/// deadline passes, whichever comes first. On cancellation the inner
/// future is dropped at once; every later poll returns the same error.
///
/// For futures weft cannot change: channels, locks and clients of other
/// crates. weft's own await points (`sleep`, `JoinHandle`, sockets,
/// `weft::sync`) need no wrapper.
///
/// ```
/// use std::time::Duration;
/// use weft::cancel::{cancellable, Cause};
///
/// # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// # rt.block_on(async {
/// let (_tx, rx) = futures_channel::oneshot::channel::<u32>();
/// let task = weft::task::Builder::new()
///     .timeout(Duration::from_millis(20))
///     // A futures-channel receiver knows nothing of weft's deadlines.
///     .spawn(async move { cancellable(rx).await });
/// let err = task.await.unwrap().unwrap_err();
/// assert_eq!(err.cause(), Cause::Deadline);
/// # });
/// ```
///
/// Outside any task (directly in `block_on`) there is no scope to cancel,
/// and the wrapper only forwards the inner future.
pub fn cancellable<F: IntoFuture>(future: F) -> Cancellable<F::IntoFuture> {
    Cancellable {
        state: State::Running(future.into_future()),
    }
}

/// `.cancellable()` on every future: the method form of [`cancellable`].
///
/// Named so it sits beside futures-util's `FutureExt` (which has no
/// `cancellable`) and tokio-util's without clashing.
///
/// ```
/// use weft::cancel::CancellableExt;
///
/// # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// # rt.block_on(async {
/// let out = weft::spawn(async { std::future::ready(7).cancellable().await });
/// assert_eq!(out.await.unwrap(), Ok(7));
/// # });
/// ```
pub trait CancellableExt: Future + Sized {
    /// See [`cancellable`].
    fn cancellable(self) -> Cancellable<Self> {
        cancellable(self)
    }
}

impl<F: Future> CancellableExt for F {}

/// The future returned by [`cancellable`] and
/// [`CancellableExt::cancellable`].
#[must_use = "futures do nothing unless awaited"]
pub struct Cancellable<F> {
    state: State<F>,
}

enum State<F> {
    Running(F),
    /// The inner future was dropped because of this cancellation.
    Cancelled(Cancelled),
    /// The inner future's output was returned.
    Done,
}

impl<F> Cancellable<F> {
    /// True once the inner future has been dropped because the scope was
    /// cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.state, State::Cancelled(_))
    }

    /// Drops the inner future and remembers why (structurally pinned: the
    /// future is dropped in place, never moved).
    fn cancel_inner(
        self: Pin<&mut Self>,
        cancelled: Cancelled,
    ) -> Poll<Result<F::Output, Cancelled>>
    where
        F: Future,
    {
        // SAFETY: assigning drops the pinned inner future in place, which
        // `Pin` allows; nothing is moved out of it.
        let this = unsafe { self.get_unchecked_mut() };
        this.state = State::Cancelled(cancelled.clone());
        Poll::Ready(Err(cancelled))
    }
}

impl<F: Future> Future for Cancellable<F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Budget first: a loop that ignores the error must still yield.
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(c) = poll_cancelled(None, false) {
            restore.made_progress();
            return self.cancel_inner(c);
        }
        // SAFETY: `Running`'s future is structurally pinned: it is never
        // moved out, only dropped in place (`cancel_inner`, or by the
        // assignment below once it has completed).
        let this = unsafe { self.as_mut().get_unchecked_mut() };
        let inner = match &mut this.state {
            // SAFETY: see above.
            State::Running(f) => unsafe { Pin::new_unchecked(f) },
            State::Cancelled(c) => {
                restore.made_progress();
                return Poll::Ready(Err(c.clone()));
            }
            State::Done => panic!("`Cancellable` polled after it completed"),
        };
        if let Poll::Ready(out) = inner.poll(cx) {
            restore.made_progress();
            this.state = State::Done;
            return Poll::Ready(Ok(out));
        }
        // About to wait: the task's node must wake it on cancel, and the
        // scope's deadline timer must be armed (once).
        with_current_scope(|_| ());
        if let Some(c) = poll_cancelled(None, true) {
            restore.made_progress();
            return self.cancel_inner(c);
        }
        crate::runtime::dump::awaiting_unless_known(
            cx.waker(),
            crate::runtime::dump::Awaiting::Foreign,
        );
        Poll::Pending
    }
}

impl<F> fmt::Debug for Cancellable<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Running(_) => "running",
            State::Cancelled(_) => "cancelled",
            State::Done => "done",
        };
        f.debug_struct("Cancellable")
            .field("state", &state)
            .finish()
    }
}
