//! Per-thread runtime context: which runtime (if any) this thread is in,
//! which worker it is, and which task is being polled.

use std::cell::{Cell, RefCell};

use crate::{
    scheduler::{worker::WorkerCtx, Handle},
    task::Id,
};

struct Context {
    handle: RefCell<Option<Handle>>,
    /// Set for the lifetime of a worker thread.
    worker: Cell<*const WorkerCtx>,
    task_id: Cell<Option<Id>>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            handle: RefCell::new(None),
            worker: Cell::new(std::ptr::null()),
            task_id: Cell::new(None),
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
            let _ = CONTEXT.try_with(|c| c.worker.set(std::ptr::null()));
        }
    }
    CONTEXT.with(|c| c.worker.set(worker));
    let _reset = Reset;
    f()
}

/// Runs `f` with the current worker, if this thread is one.
#[inline]
pub(crate) fn with_worker<R>(f: impl FnOnce(Option<&WorkerCtx>) -> R) -> R {
    let ptr = CONTEXT
        .try_with(|c| c.worker.get())
        .unwrap_or(std::ptr::null());
    // SAFETY: the pointer is set by `set_worker` for the duration of the
    // worker's run loop and cleared before the `WorkerCtx` is dropped; it is
    // only read on that same thread.
    f(unsafe { ptr.as_ref() })
}

/// Runs `f` with `id` as the current task id.
pub(crate) fn with_task_id<R>(id: Id, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Id>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = CONTEXT.try_with(|c| c.task_id.set(self.0));
        }
    }
    let _reset = Reset(CONTEXT.with(|c| c.task_id.replace(Some(id))));
    f()
}

/// The id of the task being polled.
///
/// # Panics
/// Outside a task (use [`try_id`] there).
pub fn id() -> Id {
    try_id().expect("`weft::task::id()` called outside a task")
}

/// The id of the task being polled, or `None` outside a task.
pub fn try_id() -> Option<Id> {
    CONTEXT.try_with(|c| c.task_id.get()).ok().flatten()
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
    with_worker(|w| {
        assert!(
            w.is_none(),
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
