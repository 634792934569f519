//! The work-stealing scheduler: N workers, each with a FIFO run queue and a
//! LIFO slot, a shared injector, and the idle/parking protocol.
//!
//! # Where a task goes when it becomes ready
//! - Spawned or woken on a worker of this runtime: into that worker's LIFO
//!   slot; the task that was there moves to the back of the run queue. The
//!   next poll on that worker takes the LIFO slot first (message-passing
//!   pairs run back to back, cache-warm), at most 3 times in a row, then the
//!   LIFO task goes to the back of the queue so the queue is not starved.
//! - Woken during its own poll (`yield_now`): into the worker's deferred
//!   list, which moves to the back of the run queue once the queue and the
//!   injector are empty, or every `event_interval` ticks. A yield thus lets
//!   remote spawns in first (tokio defers yields the same way; without it,
//!   4 yield-looping tasks took 5-9x tokio's time on spawn_many_remote_busy).
//! - From any other thread: into the injector, and a parked worker is woken.
//!
//! # Where a worker finds work, each tick
//! 1. Every `global_queue_interval` ticks the injector first (fairness for
//!    remote spawns), else the LIFO slot, then the local queue, then the
//!    injector, taking a batch into the local queue.
//! 2. Otherwise it becomes a searcher (at most half the workers search) and
//!    steals half of a random victim's queue, then tries the injector.
//! 3. Otherwise it parks until woken or the next timer is due (`idle.rs`
//!    holds the protocol that keeps a wakeup from being lost).
//!
//! Every `event_interval` ticks and after each park the worker fires due
//! timers. Shutdown: see `Runtime::shutdown_timeout`.

pub(crate) mod idle;
mod metrics;
pub(crate) mod park;
pub(crate) mod worker;

use std::{future::Future, time::Instant};

use crossbeam_deque::{Injector, Stealer};

pub(crate) use self::metrics::WorkerMetrics;
use self::{idle::Idle, park::Unparker};
use crate::{
    blocking::BlockingPool,
    cancel::{self, SpawnOptions},
    context,
    sync::{
        atomic::{AtomicBool, Ordering::*},
        Arc,
    },
    task::{self, Id, JoinHandle, Notified, OwnedTasks, RawTask, Schedule, Task},
    time::driver::TimeDriver,
};

/// Knobs the workers read on their hot path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SchedConfig {
    pub(crate) global_queue_interval: u32,
    pub(crate) event_interval: u32,
    /// LIFO-slot polls in a row before the queue gets a turn.
    pub(crate) max_lifo_polls: u8,
    /// Non-blocking driver polls an idle worker with io in flight makes
    /// before it parks (`Builder::io_spin`); `None`: adaptive.
    pub(crate) io_spin: Option<u32>,
    /// How long a worker that ran out of work watches the queues before it
    /// parks (`Builder::idle_spin`).
    pub(crate) idle_spin: std::time::Duration,
}

/// What other threads need to reach one worker.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Notified>,
    pub(crate) unparker: Unparker,
    pub(crate) metrics: WorkerMetrics,
    pub(crate) io: crate::io::RemoteIo,
}

/// State shared by all workers and handles of one runtime.
pub(crate) struct Shared {
    pub(crate) injector: Injector<Notified>,
    pub(crate) remotes: Box<[Remote]>,
    pub(crate) idle: Idle,
    pub(crate) owned: OwnedTasks,
    pub(crate) time: TimeDriver,
    pub(crate) blocking: BlockingPool,
    pub(crate) shutdown: AtomicBool,
    /// The io driver every worker runs (never `Auto`).
    pub(crate) io_kind: crate::io::Driver,
    pub(crate) config: SchedConfig,
}

/// A cheap, cloneable reference to a runtime's scheduler.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn time(&self) -> &TimeDriver {
        &self.shared.time
    }

    /// Spawns a task onto this runtime, under the current scope.
    pub(crate) fn spawn<F>(&self, future: F, id: Id) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_with(future, id, &SpawnOptions::default())
    }

    /// Spawns a task with tree options (deadline, name, parent, detached).
    pub(crate) fn spawn_with<F>(
        &self,
        future: F,
        id: Id,
        opts: &SpawnOptions,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, notified, join) = task::new_task(future, TaskHandle::new(self), id);
        if let Some(node) = cancel::node_for_spawn(opts, task.raw()) {
            task.raw().header().set_node_unshared(node);
        }
        if let Some(notified) = self.shared.owned.bind(task, notified) {
            self.schedule(notified);
        }
        join
    }

    /// The timer shard for the calling thread, and whether it is a worker
    /// of this runtime.
    pub(crate) fn timer_shard(&self) -> (usize, bool) {
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&self.shared) => (w.index(), true),
            _ => (0, false),
        })
    }

    pub(crate) fn unpark_worker(&self, index: usize) {
        self.shared.remotes[index % self.shared.remotes.len()]
            .unparker
            .unpark();
    }
}

impl Shared {
    /// Queues a task from a thread that is not one of our workers.
    pub(crate) fn schedule_remote(&self, task: Notified) {
        if self.shutdown.load(Acquire) {
            // The queues are being (or have been) drained for the last time.
            // Dropping the notification is enough: the shutdown sweep cancels
            // every task still registered.
            drop(task);
            return;
        }
        self.injector.push(task);
        self.notify_parked();
    }

    /// Wakes a parked worker if work may be waiting and nobody is searching.
    pub(crate) fn notify_parked(&self) {
        if let Some(worker) = self.idle.worker_to_notify() {
            self.remotes[worker].unparker.unpark();
        }
    }

    /// True if any queue other workers can take from holds a task.
    pub(crate) fn has_stealable_work(&self) -> bool {
        !self.injector.is_empty() || self.remotes.iter().any(|r| !r.stealer.is_empty())
    }

    /// Fires due timers; `start` is the caller's own shard.
    pub(crate) fn fire_timers(&self, start: usize) -> usize {
        // One clock read: the cached expiries are checked against it first.
        let now = Instant::now();
        if self.time.next_deadline().is_some_and(|d| d <= now) {
            self.time.process(start, now)
        } else {
            0
        }
    }

    /// Drops every queued notification (shutdown).
    pub(crate) fn drain_queues(&self) {
        loop {
            match self.injector.steal() {
                crossbeam_deque::Steal::Success(task) => drop(task),
                crossbeam_deque::Steal::Retry => continue,
                crossbeam_deque::Steal::Empty => break,
            }
        }
        for remote in self.remotes.iter() {
            loop {
                match remote.stealer.steal() {
                    crossbeam_deque::Steal::Success(task) => drop(task),
                    crossbeam_deque::Steal::Retry => continue,
                    crossbeam_deque::Steal::Empty => break,
                }
            }
        }
    }
}

/// The scheduler handle a task holds: a `Handle` whose strong count, on a
/// worker of its runtime, comes from that worker's credits (see
/// `WorkerCtx::take_handle_credit`) and goes back to them when the task is
/// freed there.
///
/// Every task keeps its runtime's `Shared` alive, as tokio's do. Counting
/// that with one `Arc` increment per spawn and one decrement per free made
/// the `Arc`'s count the one line every worker wrote for every task: a
/// task spawned on one worker and freed on another bounced it, and the
/// decrement in `dealloc` was 6% of the workers' time while a 100,000-task
/// tree was cancelled. A worker now takes counts 64 at a time and keeps
/// the counts of the tasks it frees, so the shared line is written once
/// per 64 tasks. Off a worker (or on another runtime's) the count is an
/// ordinary clone and drop.
pub(crate) struct TaskHandle(std::mem::ManuallyDrop<Handle>);

impl TaskHandle {
    pub(crate) fn new(handle: &Handle) -> TaskHandle {
        let handle = context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&handle.shared) => w.take_handle_credit(),
            _ => handle.clone(),
        });
        TaskHandle(std::mem::ManuallyDrop::new(handle))
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is not used again.
        let handle = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&handle.shared) => w.return_handle_credit(handle),
            _ => drop(handle),
        });
    }
}

impl std::ops::Deref for TaskHandle {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.0
    }
}

impl Schedule for TaskHandle {
    fn schedule(&self, task: Notified) {
        Handle::schedule(self, task)
    }

    fn yield_now(&self, task: Notified) {
        Handle::yield_now(self, task)
    }

    fn release(&self, task: RawTask) -> Option<Task> {
        Handle::release(self, task)
    }
}

impl Schedule for Handle {
    fn schedule(&self, task: Notified) {
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&self.shared) => w.schedule_local(task, false),
            _ => self.shared.schedule_remote(task),
        })
    }

    fn yield_now(&self, task: Notified) {
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&self.shared) => w.schedule_local(task, true),
            _ => self.shared.schedule_remote(task),
        })
    }

    fn release(&self, task: RawTask) -> Option<Task> {
        self.shared.owned.remove(task)
    }
}
