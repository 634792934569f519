//! Wakers are task references: clone takes one, drop releases one.
//!
//! # The lent reference
//! While a task is polled its poller holds a reference (the `Notified`'s
//! it ran). The first clone of the task's own waker in that poll, almost
//! always the one a leaf future stores before returning `Pending`, takes
//! no new reference: it borrows the poller's, and the poller adds it to
//! the count afterwards, in the same read-modify-write that ends the poll
//! (`State::transition_to_idle(true)`), or by a separate increment before
//! a completion. One locked instruction fewer per wait.
//!
//! Until then the count is one below the references that exist. That is
//! safe: while the task is RUNNING its poller's reference is among them,
//! so the count cannot reach zero through any other holder's release
//! unless the lent clone was one of them, and a release that finds the
//! count at zero while RUNNING leaves the freeing to the poller
//! (`State::transition_to_terminal`), which sees the count once the lent
//! reference is added. At most one clone per poll borrows, so the count
//! is never below zero.

use std::{
    cell::Cell,
    ptr::NonNull,
    task::{RawWaker, RawWakerVTable, Waker},
};

use super::{core::Header, raw::RawTask, state::TransitionToNotified};

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake_by_val, wake_by_ref, drop_waker);

fn raw_waker(raw: RawTask) -> RawWaker {
    RawWaker::new(raw.header_ptr().as_ptr() as *const (), &VTABLE)
}

fn task(ptr: *const ()) -> RawTask {
    // SAFETY: every RawWaker of this vtable is built from a live header pointer.
    RawTask::from_raw(unsafe { std::ptr::NonNull::new_unchecked(ptr as *mut Header) })
}

/// A waker that borrows the caller's reference instead of owning one.
///
/// # Safety
/// The returned waker must not be dropped (wrap it in `ManuallyDrop`) and must
/// not outlive the reference it borrows.
pub(super) unsafe fn waker_ref(raw: RawTask) -> Waker {
    // SAFETY: the vtable's contract holds for this pointer.
    unsafe { Waker::from_raw(raw_waker(raw)) }
}

/// True if `waker` is the waker of the task this thread is polling and
/// that task has been woken during this poll: it is sure to be polled
/// again, so a leaf future polled with this waker may skip registering it
/// (a timer, say) until a poll that would otherwise wait. Any other waker
/// (a combinator's own, e.g. `FuturesUnordered`) gets `false`: only the
/// task's waker guarantees the re-poll reaches this future.
pub(crate) fn will_be_polled_again(waker: &Waker) -> bool {
    if !std::ptr::eq(waker.vtable(), &VTABLE) {
        return false;
    }
    let Some(current) = crate::context::current_task() else {
        return false;
    };
    std::ptr::eq(waker.data(), current.header_ptr().as_ptr() as *const ())
        && current.header().state.load().is_notified()
}

/// The header of the task `waker` wakes, if it is a weft task's waker
/// (not a combinator's own). The task lives at least as long as the
/// waker, which holds or borrows a reference to it.
#[inline]
pub(crate) fn header_of(waker: &Waker) -> Option<&Header> {
    if !std::ptr::eq(waker.vtable(), &VTABLE) {
        return None;
    }
    // SAFETY: every waker of this vtable is built from a live header
    // pointer, and keeps (or borrows) a reference to its task.
    Some(unsafe { &*(waker.data() as *const Header) })
}

/// An owned waker for `raw` (takes a reference).
pub(crate) fn waker_for(raw: RawTask) -> Waker {
    raw.header().state.ref_inc();
    // SAFETY: the reference just taken backs the waker.
    unsafe { Waker::from_raw(raw_waker(raw)) }
}

/// A poll's offer of its reference to the first clone of its task's waker
/// (see the module docs). Lives on the poller's stack for that poll.
struct Lend {
    task: NonNull<Header>,
    taken: Cell<bool>,
}

// Loom and shuttle run their model threads on one OS thread: their
// thread-locals keep each model thread's lend apart.
#[cfg(weft_loom)]
use loom::thread_local;
#[cfg(weft_shuttle)]
use shuttle::thread_local;

#[cfg(not(weft_loom))]
thread_local! {
    /// The lend of the poll running on this thread (null: none).
    static LENT: Cell<*const Lend> = const { Cell::new(std::ptr::null()) };
}
// loom's macro takes no `const` initializer.
#[cfg(weft_loom)]
thread_local! {
    static LENT: Cell<*const Lend> = Cell::new(std::ptr::null());
}

/// Runs `poll` (one poll of `task`'s future, which must not unwind) with
/// the poller's reference lent to the first clone of `task`'s waker; true
/// if a clone took it: the caller then owns one reference more than the
/// count says, and must add it (`transition_to_idle(true)`, or `ref_inc`).
pub(super) fn lending<R>(task: NonNull<Header>, poll: impl FnOnce() -> R) -> (R, bool) {
    struct Restore(*const Lend);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = LENT.try_with(|l| l.set(self.0));
        }
    }
    let lend = Lend {
        task,
        taken: Cell::new(false),
    };
    let restore = Restore(LENT.with(|l| l.replace(&lend)));
    let out = poll();
    drop(restore);
    (out, lend.taken.get())
}

/// Takes the lent reference if the poll running on this thread lends one
/// for `header`'s task and no clone has taken it yet.
#[inline]
fn take_lent(header: *const Header) -> bool {
    LENT.try_with(|l| {
        let lend = l.get();
        // SAFETY: a non-null `LENT` points to the `Lend` on the stack of
        // the `lending` call running on this thread, which restores the
        // previous value before the `Lend` goes.
        match unsafe { lend.as_ref() } {
            Some(lend) if std::ptr::eq(lend.task.as_ptr(), header) && !lend.taken.get() => {
                lend.taken.set(true);
                true
            }
            _ => false,
        }
    })
    .unwrap_or(false)
}

unsafe fn clone(ptr: *const ()) -> RawWaker {
    let raw = task(ptr);
    if !take_lent(ptr as *const Header) {
        raw.header().state.ref_inc();
    }
    raw_waker(raw)
}

unsafe fn wake_by_val(ptr: *const ()) {
    let raw = task(ptr);
    match raw.header().state.transition_to_notified_by_val() {
        TransitionToNotified::Submit => raw.schedule(),
        TransitionToNotified::Dealloc => raw.dealloc(),
        TransitionToNotified::DoNothing => {}
    }
}

unsafe fn wake_by_ref(ptr: *const ()) {
    let raw = task(ptr);
    match raw.header().state.transition_to_notified_by_ref() {
        TransitionToNotified::Submit => raw.schedule(),
        TransitionToNotified::Dealloc => unreachable!("a borrowed waker releases nothing"),
        TransitionToNotified::DoNothing => {}
    }
}

unsafe fn drop_waker(ptr: *const ()) {
    task(ptr).drop_reference();
}
