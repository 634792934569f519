//! Tasks: one heap allocation each, shared by the scheduler, the join handle
//! and any number of wakers.
//!
//! # Layout
//! `core::Cell` holds, in order, the `Header` (state word, vtable, id,
//! registry links), the `Core` (the scheduler handle and the future, later its
//! output) and the `Trailer` (the join waker). A `*mut Header` reaches
//! everything; the vtable recovers the future and scheduler types.
//!
//! # Ownership protocol
//! The state word (`state.rs`) arbitrates every access:
//! - Whoever sets RUNNING owns the future until it clears RUNNING or sets
//!   COMPLETE. Only the holder of a `Notified` may try to set RUNNING, and at
//!   most one `Notified` exists (NOTIFIED bit).
//! - After COMPLETE the output belongs to the `JoinHandle` if JOIN_INTEREST was
//!   set at that moment, otherwise the completer drops it at once.
//! - The join waker slot is written by the `JoinHandle` only while JOIN_WAKER
//!   is clear, read by the task only while it is set.
//! - References: the registry, each `Notified`, the `JoinHandle`, each
//!   `AbortHandle` and each `Waker` own one. The cell is freed by whoever
//!   releases the last (`transition_to_terminal` returns true exactly once).
//!   One exception, bounded to a poll: the first clone of the task's waker
//!   in a poll borrows the poller's reference, which the poller adds to the
//!   count as the poll ends (see `waker.rs`); a count that reaches zero
//!   meanwhile, while RUNNING, leaves the freeing to the poller.
//!
//! # Life of a task
//! 1. `new_task` allocates with three references (registry, first `Notified`,
//!    `JoinHandle`) and NOTIFIED set; the scheduler binds it in the registry.
//! 2. A worker pops the `Notified` and polls: `transition_to_running`, poll,
//!    then `transition_to_idle` (Pending; rescheduled behind the queue if it
//!    was woken meanwhile) or complete (Ready or panic).
//! 3. A wake on an idle task sets NOTIFIED and schedules a new `Notified`.
//! 4. `abort()` sets CANCELLED: the next poller drops the future instead of
//!    polling it; a running task is dropped when its current poll returns.
//! 5. Completion stores the output, wakes the joiner, leaves the registry and
//!    releases the poller's and the registry's references.

mod builder;
mod core;
mod error;
mod harness;
mod id;
mod join;
pub(crate) mod list;
mod raw;
pub(crate) mod state;
pub(crate) mod waker;

use std::future::Future;

use crate::cancel::NodeSlot;

pub use self::{
    builder::Builder,
    error::JoinError,
    id::Id,
    join::{AbortHandle, JoinHandle},
};
pub(crate) use self::{
    list::OwnedTasks,
    raw::{Notified, RawTask, Task},
};
pub use crate::{
    context::{id, try_id},
    coop::{consume_budget, yield_now, YieldNow},
};

/// What a task needs from whoever runs it.
pub(crate) trait Schedule: Send + Sync + Sized + 'static {
    /// Queue a woken task.
    fn schedule(&self, task: Notified);

    /// Queue a task that was woken during its own poll (e.g. `yield_now`):
    /// it goes behind the tasks that are already ready.
    fn yield_now(&self, task: Notified) {
        self.schedule(task);
    }

    /// Remove a completed task from the registry, returning its reference.
    fn release(&self, task: RawTask) -> Option<Task>;
}

/// Allocates a task. The caller binds `Task` in a registry (or drops it, for
/// tasks no registry tracks) and schedules `Notified`. With `with_node`,
/// the task's block has room for its cancellation node, and the slot
/// returned must be given the node before the task is shared (see
/// `Cell::new`). `location` is where the user spawned it.
pub(crate) fn new_task<F, S>(
    future: F,
    scheduler: S,
    id: Id,
    with_node: bool,
    location: &'static std::panic::Location<'static>,
) -> (Task, Notified, JoinHandle<F::Output>, Option<NodeSlot>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let (raw, slot) = RawTask::new(future, scheduler, id, with_node, location);
    (
        Task::from_raw(raw),
        Notified::from_raw(raw),
        JoinHandle::new(raw),
        slot,
    )
}

/// [`new_task`] for a future that need not be `Send` (`spawn_local`).
///
/// # Safety
/// The future (and the output, unless the `JoinHandle` takes it) must only
/// be polled and dropped on one thread: the caller schedules the task on a
/// runtime whose only worker runs on that thread and whose shutdown runs
/// there (a `LocalRuntime`; see `scheduler/current_thread.rs`). The
/// `JoinHandle` is `Send` only if the output is.
pub(crate) unsafe fn new_local_task<F, S>(
    future: F,
    scheduler: S,
    id: Id,
    with_node: bool,
    location: &'static std::panic::Location<'static>,
) -> (Task, Notified, JoinHandle<F::Output>, Option<NodeSlot>)
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    let (raw, slot) = RawTask::new(future, scheduler, id, with_node, location);
    (
        Task::from_raw(raw),
        Notified::from_raw(raw),
        JoinHandle::new(raw),
        slot,
    )
}

pub use crate::{spawn, spawn_blocking};

/// Spawns a future that need not be `Send` onto the current
/// [`LocalRuntime`](crate::runtime::LocalRuntime): it runs on this thread,
/// during the runtime's `block_on`. The task is a child of the current
/// task, as with [`spawn`].
///
/// Valid inside a `LocalRuntime` (its `block_on`, its tasks, or after its
/// `enter`), where its thread is the only one that polls and drops tasks.
///
/// # Panics
/// Outside a runtime, on a runtime that is not a `LocalRuntime` (a
/// multi-thread or a `Send` current-thread [`Runtime`](crate::runtime::Runtime),
/// whose tasks may be polled or dropped on another thread), or on a
/// thread other than the `LocalRuntime`'s (after `Handle::enter` there).
///
/// ```
/// use std::rc::Rc;
/// let rt = weft::runtime::Builder::new_current_thread().build_local()?;
/// let n = rt.block_on(async {
///     let rc = Rc::new(20);
///     weft::task::spawn_local(async move { *rc + 1 }).await.unwrap()
/// });
/// assert_eq!(n, 21);
/// # Ok::<(), weft::runtime::BuildError>(())
/// ```
#[track_caller]
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let location = std::panic::Location::caller();
    crate::context::with_current_handle(|handle| match handle {
        Some(handle) => handle.spawn_local_at(
            future,
            Id::next(),
            &crate::cancel::SpawnOptions::default(),
            location,
        ),
        None => panic!(
            "`weft::task::spawn_local` called outside a weft runtime: call it inside \
             `LocalRuntime::block_on` or one of its tasks"
        ),
    })
}
