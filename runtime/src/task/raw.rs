//! Type-erased task pointers and the vtable that recovers the types.

use std::{
    future::Future,
    ptr::NonNull,
    task::{Poll, Waker},
};

use super::{
    core::{Cell, Header},
    harness, Id, Schedule,
};

/// The operations on a task that need its future and scheduler types.
pub(crate) struct Vtable {
    pub(crate) poll: unsafe fn(NonNull<Header>),
    pub(crate) schedule: unsafe fn(NonNull<Header>),
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
    /// `dst` is a `*mut Poll<Result<T, JoinError>>`.
    pub(crate) try_read_output: unsafe fn(NonNull<Header>, *mut (), &Waker),
    pub(crate) drop_join_handle: unsafe fn(NonNull<Header>),
    pub(crate) shutdown: unsafe fn(NonNull<Header>),
}

pub(crate) fn vtable<F, S>() -> &'static Vtable
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    &Vtable {
        poll: harness::poll::<F, S>,
        schedule: harness::schedule::<F, S>,
        dealloc: harness::dealloc::<F, S>,
        try_read_output: harness::try_read_output::<F, S>,
        drop_join_handle: harness::drop_join_handle::<F, S>,
        shutdown: harness::shutdown::<F, S>,
    }
}

/// A pointer to a live task. Copying it copies no reference: the types that
/// own one (`Task`, `Notified`, `JoinHandle`, wakers) say so.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawTask {
    ptr: NonNull<Header>,
}

// SAFETY: a task's shared parts are the atomic state word and cells whose
// access is arbitrated by it; the future and output are `Send` (enforced by
// `new_task`), except for local tasks, which `new_local_task`'s contract
// keeps on one thread (only the handle to the task crosses threads).
unsafe impl Send for RawTask {}
// SAFETY: as above.
unsafe impl Sync for RawTask {}

impl RawTask {
    pub(crate) fn new<F, S>(
        future: F,
        scheduler: S,
        id: Id,
        with_node: bool,
        location: &'static std::panic::Location<'static>,
    ) -> (RawTask, Option<crate::cancel::NodeSlot>)
    where
        F: Future + 'static,
        F::Output: 'static,
        S: Schedule,
    {
        let (ptr, slot) = Cell::new(future, scheduler, id, vtable::<F, S>(), with_node, location);
        (RawTask { ptr: ptr.cast() }, slot)
    }

    pub(crate) fn from_raw(ptr: NonNull<Header>) -> RawTask {
        RawTask { ptr }
    }

    pub(crate) fn header_ptr(self) -> NonNull<Header> {
        self.ptr
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: a RawTask is only made from a live cell, and every holder
        // keeps a reference for as long as it uses the pointer.
        unsafe { self.ptr.as_ref() }
    }

    pub(crate) fn id(&self) -> Id {
        self.header().id
    }

    /// Polls the task, consuming one `Notified` reference.
    pub(crate) fn poll(self) {
        // SAFETY: the vtable matches the cell it was created with.
        unsafe { (self.header().vtable.poll)(self.ptr) }
    }

    /// Hands a `Notified` reference to the task's scheduler.
    pub(crate) fn schedule(self) {
        // SAFETY: as in `poll`.
        unsafe { (self.header().vtable.schedule)(self.ptr) }
    }

    pub(crate) fn dealloc(self) {
        // SAFETY: as in `poll`; called only when the count reached zero.
        unsafe { (self.header().vtable.dealloc)(self.ptr) }
    }

    /// # Safety
    /// `dst` points to a `Poll<Result<T, JoinError>>` where `T` is the task's output type.
    pub(crate) unsafe fn try_read_output(self, dst: *mut (), waker: &Waker) {
        // SAFETY: forwarded precondition; the vtable matches the cell.
        unsafe { (self.header().vtable.try_read_output)(self.ptr, dst, waker) }
    }

    pub(crate) fn drop_join_handle(self) {
        // SAFETY: as in `poll`; consumes the join handle's reference.
        unsafe { (self.header().vtable.drop_join_handle)(self.ptr) }
    }

    /// Cancels the task for runtime shutdown, consuming one reference.
    pub(crate) fn shutdown(self) {
        // SAFETY: as in `poll`.
        unsafe { (self.header().vtable.shutdown)(self.ptr) }
    }

    /// Wakes the task for a canceller (see
    /// `State::transition_to_notified_synced`).
    pub(crate) fn wake_by_ref_synced(self) {
        use super::state::TransitionToNotified;
        match self.header().state.transition_to_notified_synced() {
            TransitionToNotified::Submit => self.schedule(),
            TransitionToNotified::Dealloc => unreachable!("a borrowed wake releases nothing"),
            TransitionToNotified::DoNothing => {}
        }
    }

    /// The task's cancellation node, created (as a root) if it has none.
    /// The caller holds a reference to the task.
    pub(crate) fn node_or_init(self) -> crate::cancel::NodeArc {
        let header = self.header();
        if let Some(node) = header.node() {
            return (*node).clone();
        }
        let (node, installed) =
            header.install_node(crate::cancel::node::Node::root(None, None, Some(self)));
        if installed {
            // SeqCst load after the SeqCst install: pairs with `complete`,
            // which flips the state then loads the node pointer. Whichever
            // runs second sees the other and finishes the node.
            if header.state.load_seqcst().is_complete() {
                node.finish();
            }
        }
        (*node).clone()
    }

    pub(crate) fn drop_reference(self) {
        if self.header().state.ref_dec() {
            self.dealloc();
        }
    }

    /// `abort()`: the future is dropped at its next schedule.
    pub(crate) fn remote_abort(self) {
        if self.header().state.transition_to_notified_and_cancel() {
            self.schedule();
        }
    }

    pub(crate) fn is_finished(self) -> bool {
        self.header().state.load().is_complete()
    }
}

/// A reference held by the runtime's registry.
pub(crate) struct Task {
    raw: RawTask,
}

/// A reference that stands for "this task must be polled": at most one
/// exists per task (the NOTIFIED bit).
pub(crate) struct Notified {
    raw: RawTask,
}

impl Task {
    pub(crate) fn from_raw(raw: RawTask) -> Task {
        Task { raw }
    }
    pub(crate) fn raw(&self) -> RawTask {
        self.raw
    }
    pub(crate) fn into_raw(self) -> RawTask {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }
    /// Cancels the task for runtime shutdown, consuming this reference.
    pub(crate) fn shutdown(self) {
        self.into_raw().shutdown();
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.raw.drop_reference();
    }
}

impl Notified {
    pub(crate) fn from_raw(raw: RawTask) -> Notified {
        Notified { raw }
    }
    pub(crate) fn id(&self) -> Id {
        self.raw.id()
    }
    pub(crate) fn header(&self) -> &Header {
        self.raw.header()
    }

    /// The task, without giving up this reference.
    pub(crate) fn raw(&self) -> RawTask {
        self.raw
    }
    pub(crate) fn into_raw(self) -> RawTask {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }
    /// Polls the task, consuming this notification.
    pub(crate) fn run(self) {
        self.into_raw().poll();
    }
    /// Cancels the task without polling it (used when its scheduler is gone).
    pub(crate) fn shutdown(self) {
        self.into_raw().shutdown();
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        self.raw.drop_reference();
    }
}

impl std::fmt::Debug for Notified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notified").field("id", &self.id()).finish()
    }
}

/// Reads a finished output into `dst`, for `JoinHandle::poll`.
pub(crate) fn read_output<T>(raw: RawTask, waker: &Waker) -> Poll<Result<T, super::JoinError>> {
    let mut out: Poll<Result<T, super::JoinError>> = Poll::Pending;
    // SAFETY: `out` has the output type the join handle was created for.
    unsafe { raw.try_read_output(&mut out as *mut _ as *mut (), waker) };
    out
}
