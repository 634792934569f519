//! What the stuck-poll watchdog reports (see `Builder::on_stuck_poll`).

use std::{fmt, panic::Location, sync::Arc, time::Duration};

use crate::task::Id;

/// A task that has been inside one poll for longer than
/// [`Builder::stuck_poll_threshold`](super::Builder::stuck_poll_threshold),
/// reported while that poll is still running.
///
/// Passed to the hook set with
/// [`Builder::on_stuck_poll`](super::Builder::on_stuck_poll); by default a
/// line with its [`Display`](fmt::Display) form goes to stderr.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StuckPoll {
    pub(crate) task_id: Id,
    pub(crate) task_name: Option<Arc<str>>,
    pub(crate) spawn_location: &'static Location<'static>,
    pub(crate) elapsed: Duration,
    pub(crate) worker: usize,
    pub(crate) relief: bool,
    pub(crate) threshold: Duration,
}

impl StuckPoll {
    /// The id of the task whose poll is stuck.
    pub fn task_id(&self) -> Id {
        self.task_id
    }

    /// Its name (`task::Builder::name`), if it has one.
    pub fn task_name(&self) -> Option<&str> {
        self.task_name.as_deref()
    }

    /// Where it was spawned.
    pub fn spawn_location(&self) -> &'static Location<'static> {
        self.spawn_location
    }

    /// How long the poll has been running when reported: a lower bound,
    /// at most one monitor sampling interval (at most half the threshold)
    /// below the true time, as the monitor samples the workers' poll
    /// counters instead of reading a clock on every poll.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The index of the worker running it; for a relief worker (started
    /// while every worker was stuck), its index among relief workers.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// True if the poll runs on a relief worker.
    pub fn is_relief_worker(&self) -> bool {
        self.relief
    }

    /// The threshold it crossed.
    pub fn threshold(&self) -> Duration {
        self.threshold
    }
}

impl fmt::Display for StuckPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.task_id)?;
        if let Some(name) = &self.task_name {
            write!(f, " ({name:?})")?;
        }
        write!(
            f,
            ", spawned at {}, has been inside one poll for at least {:?} on {}worker {} \
             (threshold {:?}); the worker runs nothing else meanwhile: move blocking or \
             long CPU-bound work to `spawn_blocking`",
            self.spawn_location,
            self.elapsed,
            if self.relief { "relief " } else { "" },
            self.worker,
            self.threshold,
        )
    }
}
