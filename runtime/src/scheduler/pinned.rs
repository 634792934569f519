//! The thread-per-core flavour (`Builder::new_thread_per_core`): every
//! task has a home worker and runs nowhere else.
//!
//! # Protocol
//! 1. A task's home is fixed at spawn: the spawning worker, when a worker
//!    of this runtime spawns it; otherwise the next worker round-robin
//!    (`Shared::next_home`). It is kept in the task's scheduler handle
//!    ([`PinnedHandle`]), so a task of this flavour pays nothing in its
//!    header and tasks of the stealing flavour keep their `TaskHandle`.
//! 2. A wake on the home worker (a task waking another, an io completion
//!    reaped there) goes to its LIFO slot or run queue, as on the stealing
//!    runtime. A wake anywhere else (another worker, a timer fired by
//!    another worker, a foreign thread) is pushed to the home worker's
//!    *inbox* (`Remote::inbox`, a crossbeam injector of its own), and the
//!    home worker is unparked: its parker's token, or its io driver's wake
//!    if it is parked. The worker checks its inbox before it parks, so with
//!    the token no push is missed. The global injector is not used.
//! 3. Workers never steal, never search, and are not counted by the idle
//!    accounting (they park without registering as sleepers, so
//!    `notify_parked` finds nobody to wake and costs a fence and a load);
//!    there is no monitor (it would move a stuck worker's tasks).
//! 4. `spawn_local` on a worker: the task is also pinned there, and is
//!    registered in that worker's own registry (`Remote::local_owned`)
//!    instead of the shared one. The worker shuts those tasks down itself
//!    when it leaves its run loop, so a `!Send` future is polled and
//!    dropped on its worker's thread only. (A worker still stuck in a poll
//!    when shutdown gives up on it drops them when that poll returns.)

use std::{future::Future, sync::atomic::Ordering::Relaxed};

use super::{Handle, Shared, TaskHandle};
use crate::{
    cancel::{self, SpawnOptions},
    context,
    task::{self, Id, JoinHandle, Notified, RawTask, Schedule, Task},
};

/// The scheduler handle of a thread-per-core task: the runtime and the
/// task's home worker.
pub(crate) struct PinnedHandle {
    handle: TaskHandle,
    home: usize,
    /// Registered in the home worker's own registry (`spawn_local`).
    local: bool,
}

impl Schedule for PinnedHandle {
    fn schedule(&self, task: Notified) {
        self.schedule_at(task, false)
    }

    fn yield_now(&self, task: Notified) {
        self.schedule_at(task, true)
    }

    fn release(&self, task: RawTask) -> Option<Task> {
        let shared = &self.handle.shared;
        if self.local {
            shared.remotes[self.home].local_owned.remove(task)
        } else {
            shared.owned.remove(task)
        }
    }
}

impl PinnedHandle {
    fn schedule_at(&self, task: Notified, is_yield: bool) {
        let shared = &self.handle.shared;
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(shared) && w.index() == self.home => {
                w.schedule_local(task, is_yield)
            }
            _ => shared.schedule_to(self.home, task),
        })
    }
}

impl Shared {
    /// Queues `task` in worker `home`'s inbox and wakes it (step 2).
    pub(crate) fn schedule_to(&self, home: usize, task: Notified) {
        if self.config.histogram_interval != 0 {
            context::with_schedule_sampler(|s| {
                super::metrics::sample_schedule(&self.config, s, &task)
            });
        }
        if self.shutdown.load(crate::facade::atomic::Ordering::Acquire) {
            // As in `schedule_remote`: the shutdown sweep cancels it.
            drop(task);
            return;
        }
        let remote = &self.remotes[home];
        remote.inbox.push(task);
        remote.unparker.unpark();
    }

    /// The home of a task spawned from the calling thread (step 1).
    fn home_for_spawn(&self) -> usize {
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(self) => w.index(),
            // Round-robin, a statistic rather than synchronisation: Relaxed.
            _ => self.next_home.fetch_add(1, Relaxed) % self.remotes.len(),
        })
    }
}

impl Handle {
    /// `spawn_at` on a thread-per-core runtime.
    pub(crate) fn spawn_pinned_at<F>(
        &self,
        future: F,
        id: Id,
        opts: &SpawnOptions,
        location: &'static std::panic::Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let home = self.shared.home_for_spawn();
        let (task, notified, join) = cancel::spawn_in_tree(opts, |with_node| {
            let scheduler = PinnedHandle {
                handle: TaskHandle::new(self),
                home,
                local: false,
            };
            let (task, notified, join, slot) =
                task::new_task(future, scheduler, id, with_node, location);
            let raw = task.raw();
            ((task, notified, join), raw, slot)
        });
        #[cfg(feature = "tracing")]
        crate::instrument::attach_span(task.raw(), opts);
        if let Some(notified) = self.shared.owned.bind(task, notified) {
            self.schedule_pinned(home, notified);
        }
        join
    }

    /// `spawn_local` on a thread-per-core worker `home` (the caller's).
    ///
    /// # Safety
    /// The caller is worker `home` of this runtime (its thread).
    pub(crate) unsafe fn spawn_pinned_local_at<F>(
        &self,
        future: F,
        home: usize,
        id: Id,
        opts: &SpawnOptions,
        location: &'static std::panic::Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let (task, notified, join) = cancel::spawn_in_tree(opts, |with_node| {
            let scheduler = PinnedHandle {
                handle: TaskHandle::new(self),
                home,
                local: true,
            };
            // SAFETY: the task is pinned to worker `home`, the calling
            // thread (the caller's precondition): only that worker pops
            // its queue and inbox, nobody steals on this flavour and there
            // is no monitor; it is registered in that worker's registry,
            // which the worker shuts down on its own thread (step 4).
            let (task, notified, join, slot) =
                unsafe { task::new_local_task(future, scheduler, id, with_node, location) };
            let raw = task.raw();
            ((task, notified, join), raw, slot)
        });
        #[cfg(feature = "tracing")]
        crate::instrument::attach_span(task.raw(), opts);
        if let Some(notified) = self.shared.remotes[home].local_owned.bind(task, notified) {
            self.schedule_pinned(home, notified);
        }
        join
    }

    fn schedule_pinned(&self, home: usize, task: Notified) {
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&self.shared) && w.index() == home => {
                w.schedule_local(task, false)
            }
            _ => self.shared.schedule_to(home, task),
        })
    }
}
