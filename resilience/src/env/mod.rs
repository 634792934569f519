//! What the policies need from the executor they run on.
//!
//! Retry, hedging, chaos and the pipeline wait (backoff, hedge delays,
//! injected latency), ask how much of the caller's deadline is left, and run
//! attempts in scopes they can cancel. [`Env`] names those needs, so the
//! policies are written once:
//!
//! * [`WeftEnv`] (feature `weft`): sleeps are `weft::time::sleep` (ended by
//!   the caller's cancellation), the deadline is the task's
//!   (`weft::cancel::remaining()`), an attempt runs in a child scope
//!   (`weft::cancel::scope`), so cancelling it cancels its io in the kernel
//!   and every task it spawned (a retry's attempts, never cancelled one by
//!   one, get a lazy scope that costs nothing unless used), and a timeout is
//!   `weft::time::timeout`, whose deadline the code inside sees as its own.
//! * [`ManualEnv`]: simulated time on a [`ManualClock`](crate::clock::ManualClock).
//!   A sleep moves the clock and completes at once, so a test or a
//!   simulation runs ten seconds of retries in microseconds; the deadline is
//!   whatever the test sets.
//!
//! Another executor (tokio, async-std) plugs in by implementing [`Env`]
//! with its own sleep; its deadline is `None` unless it has one.

mod manual;
#[cfg(feature = "weft")]
mod weft;

use std::{fmt, future::Future, time::Duration};

pub use self::manual::{ManualEnv, ManualScopeHandle, ManualScoped, ManualSleep, ManualTimeout};
#[cfg(feature = "weft")]
pub use self::weft::{interrupted, WeftAttempt, WeftEnv, WeftScopeHandle, WeftSleep, WeftTimeout};

/// Why a policy stopped waiting: the caller is gone or out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Interrupted {
    /// The caller's deadline passed.
    Deadline,
    /// The caller (or an enclosing scope) was cancelled.
    Cancelled,
    /// The runtime is shutting down.
    Shutdown,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interrupted::Deadline => "the caller's deadline passed",
            Interrupted::Cancelled => "the caller was cancelled",
            Interrupted::Shutdown => "the runtime is shutting down",
        })
    }
}

impl std::error::Error for Interrupted {}

/// A timeout passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    /// The timeout that passed.
    pub after: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?}", self.after)
    }
}

impl std::error::Error for TimedOut {}

/// Cancels one attempt's scope.
pub trait ScopeHandle: Send + Sync + fmt::Debug {
    /// Cancels the scope: its await points fail from now on (on weft, with
    /// cause `Explicit`). Idempotent.
    fn cancel(&self);
}

/// The executor services the policies use. See the [module docs](self).
pub trait Env: Send + Sync + fmt::Debug {
    /// The future of [`sleep`](Env::sleep).
    type Sleep: Future<Output = Result<(), Interrupted>> + Send;
    /// A future run in its own cancellable scope.
    type Scoped<F: Future>: Future<Output = F::Output>;
    /// Cancels a [`Scoped`](Env::Scoped) future's scope.
    type Handle: ScopeHandle;
    /// The future of [`timeout`](Env::timeout).
    type Timeout<F: Future>: Future<Output = Result<F::Output, TimedOut>>;
    /// A future run in its own scope, made only if something inside needs
    /// it (see [`attempt`](Env::attempt)).
    type Attempt<F: Future>: Future<Output = F::Output>;

    /// The time on this environment's clock (an arbitrary origin).
    fn now(&self) -> Duration;

    /// Waits `duration`; `Err` if the caller is cancelled or its deadline
    /// passes first.
    fn sleep(&self, duration: Duration) -> Self::Sleep;

    /// Time left before the caller's deadline, `None` without one.
    fn remaining(&self) -> Option<Duration>;

    /// `Err` if the caller is already cancelled or past its deadline.
    fn check(&self) -> Result<(), Interrupted>;

    /// Runs `future` in a child scope of the caller's, cancellable through
    /// the returned handle. Call it where the scope should hang: inside the
    /// caller's task (on weft, inside a poll of the caller's future).
    fn scoped<F: Future>(&self, future: F) -> (Self::Scoped<F>, Self::Handle);

    /// Runs `future` in a child scope that is not cancelled separately (a
    /// retry's attempt): on weft a lazy scope, whose node is made only if
    /// the attempt spawns or asks for its scope, so an attempt that does
    /// neither costs nothing; tasks it spawns still belong to it.
    fn attempt<F: Future>(&self, future: F) -> Self::Attempt<F>;

    /// Runs `future` until it finishes or `after` passes.
    fn timeout<F: Future>(&self, after: Duration, future: F) -> Self::Timeout<F>;
}
