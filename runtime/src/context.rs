//! Per-thread runtime context: which runtime (if any) this thread is in,
//! which worker it is, and which task is being polled.

use std::cell::{Cell, RefCell};

use crate::cancel::NodeArc;
use crate::{
    cancel::{node::Node, PendingScope},
    scheduler::{worker::WorkerCtx, Handle, ScheduleSampler},
    task::{Id, RawTask},
};

struct Context {
    handle: RefCell<Option<Handle>>,
}

/// The per-thread state read on hot paths (every cancellation check, every
/// poll): nothing in it needs dropping, so its thread-local has no
/// destructor to register and an access is a plain TLS address (the
/// `Context` above, which holds a `Handle`, pays a liveness check per
/// access).
struct Hot {
    /// Set for the lifetime of a worker thread.
    worker: Cell<*const WorkerCtx>,
    /// The task being polled.
    task: Cell<Option<RawTask>>,
    /// The innermost cancellation scope of the code being polled: the task's
    /// node, or a `timeout`/`scope`/`shield` inside it. Null: none (yet).
    scope: Cell<*const Node>,
    /// A `timeout` being polled whose scope node is not created yet (see
    /// `cancel::PendingScope`). Null: none.
    pending: Cell<*const PendingScope>,
    /// Picks the schedules from this thread (not a worker's own, which
    /// the worker picks) that are sampled for the histograms.
    schedule_sampler: ScheduleSampler,
}

// Under shuttle every model thread runs on one OS thread: its own
// thread-locals keep each model thread's context apart.
#[cfg(weft_shuttle)]
use shuttle::thread_local;

thread_local! {
    static CONTEXT: Context = const {
        Context {
            handle: RefCell::new(None),
        }
    };
    static HOT: Hot = const {
        Hot {
            worker: Cell::new(std::ptr::null()),
            task: Cell::new(None),
            scope: Cell::new(std::ptr::null()),
            pending: Cell::new(std::ptr::null()),
            schedule_sampler: ScheduleSampler::new(),
        }
    };
}

/// The runtime this thread is in, if any.
pub(crate) fn current_handle() -> Option<Handle> {
    CONTEXT
        .try_with(|c| c.handle.borrow().clone())
        .ok()
        .flatten()
}

/// Enters `handle` for the guard's lifetime (nesting restores the previous).
pub(crate) fn enter(handle: Handle) -> EnterGuard {
    let prev = CONTEXT.with(|c| c.handle.replace(Some(handle)));
    EnterGuard { prev }
}

/// Restores the previously entered runtime on drop.
pub struct EnterGuard {
    prev: Option<Handle>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CONTEXT.try_with(|c| *c.handle.borrow_mut() = prev);
    }
}

impl std::fmt::Debug for EnterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnterGuard").finish_non_exhaustive()
    }
}

/// Runs `f` with this thread marked as `worker`.
pub(crate) fn set_worker<R>(worker: &WorkerCtx, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = HOT.try_with(|c| c.worker.set(std::ptr::null()));
        }
    }
    HOT.with(|c| c.worker.set(worker));
    let _reset = Reset;
    f()
}

/// Runs `f` with the current worker, if this thread is one.
#[inline]
pub(crate) fn with_worker<R>(f: impl FnOnce(Option<&WorkerCtx>) -> R) -> R {
    let ptr = HOT.try_with(|c| c.worker.get()).unwrap_or(std::ptr::null());
    // SAFETY: the pointer is set by `set_worker` for the duration of the
    // worker's run loop and cleared before the `WorkerCtx` is dropped; it is
    // only read on that same thread.
    f(unsafe { ptr.as_ref() })
}

/// Runs `f` (a poll or a drop of `task`) with `task` current and its node,
/// if it has one, as the current scope.
pub(crate) fn with_task<R>(task: RawTask, scope: *const Node, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<RawTask>, *const Node);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = HOT.try_with(|c| {
                c.task.set(self.0);
                c.scope.set(self.1);
            });
        }
    }
    let _reset = HOT.with(|c| Reset(c.task.replace(Some(task)), c.scope.replace(scope)));
    f()
}

/// Runs `f` with `scope` as the current scope (a nested scope's poll).
pub(crate) fn with_scope<R>(scope: &NodeArc, f: impl FnOnce() -> R) -> R {
    struct Reset(*const Node);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = HOT.try_with(|c| c.scope.set(self.0));
        }
    }
    let _reset = Reset(HOT.with(|c| c.scope.replace(NodeArc::as_ptr(scope))));
    f()
}

/// Runs `f` with `pending` as the innermost (not yet created) scope;
/// restores the scope and pending pointers afterwards, since creating the
/// pending scope changes both.
pub(crate) fn with_pending<R>(pending: &PendingScope, f: impl FnOnce() -> R) -> R {
    struct Reset(*const Node, *const PendingScope);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = HOT.try_with(|c| {
                c.scope.set(self.0);
                c.pending.set(self.1);
            });
        }
    }
    let _reset = HOT.with(|c| {
        let prev = c.pending.replace(pending);
        pending.set_prev(prev);
        Reset(c.scope.get(), prev)
    });
    f()
}

#[inline]
pub(crate) fn current_pending() -> *const PendingScope {
    HOT.try_with(|c| c.pending.get())
        .unwrap_or(std::ptr::null())
}

pub(crate) fn set_pending(pending: *const PendingScope) {
    let _ = HOT.try_with(|c| c.pending.set(pending));
}

/// The task being polled on this thread.
#[inline]
pub(crate) fn current_task() -> Option<RawTask> {
    HOT.try_with(|c| c.task.get()).ok().flatten()
}

/// The current scope's pointer (null: none).
#[inline]
pub(crate) fn current_scope_ptr() -> *const Node {
    HOT.try_with(|c| c.scope.get()).unwrap_or(std::ptr::null())
}

/// Makes `scope` the current scope for the rest of this poll (a task's node
/// created lazily during the poll).
pub(crate) fn set_scope(scope: *const Node) {
    let _ = HOT.try_with(|c| c.scope.set(scope));
}

/// The id of the task being polled.
///
/// # Panics
/// Outside a task (use [`try_id`] there).
pub fn id() -> Id {
    try_id().expect("`weft::task::id()` called outside a task")
}

/// Runs `f` with this thread's schedule sampler (not at all while the
/// thread is being torn down).
#[inline]
pub(crate) fn with_schedule_sampler(f: impl FnOnce(&ScheduleSampler)) {
    let _ = HOT.try_with(|c| f(&c.schedule_sampler));
}

/// The id of the task being polled, or `None` outside a task.
pub fn try_id() -> Option<Id> {
    current_task().map(|t| t.id())
}

pub(crate) fn record_forced_yield() {
    with_worker(|w| {
        if let Some(w) = w {
            w.metrics().budget_forced_yields.incr();
        }
    });
}

thread_local! {
    static IN_BLOCK_ON: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as inside `block_on` until the guard drops.
///
/// # Panics
/// On a worker thread, or when this thread is already inside `block_on`.
pub(crate) fn enter_block_on() -> BlockOnGuard {
    // A current-thread runtime's `block_on` future is polled on the worker
    // (the thread is both): nesting there is reported as nesting below.
    let nested_in_future = current_task().is_none() && IN_BLOCK_ON.with(|b| b.get());
    with_worker(|w| {
        assert!(
            w.is_none() || nested_in_future,
            "`block_on` called on a weft worker thread: it would block a thread the \
             runtime needs; `.await` the future instead, or use `spawn_blocking`"
        )
    });
    let nested = IN_BLOCK_ON.with(|b| b.replace(true));
    assert!(
        !nested,
        "`block_on` called inside `block_on`: `.await` the future instead"
    );
    BlockOnGuard(())
}

pub(crate) struct BlockOnGuard(());

impl Drop for BlockOnGuard {
    fn drop(&mut self) {
        let _ = IN_BLOCK_ON.try_with(|b| b.set(false));
    }
}

/// Runs `f` with the current runtime without cloning its handle.
pub(crate) fn with_current_handle<R>(f: impl FnOnce(Option<&Handle>) -> R) -> R {
    CONTEXT.with(|c| f(c.handle.borrow().as_ref()))
}
