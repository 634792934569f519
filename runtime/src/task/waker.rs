//! Wakers are task references: clone takes one, drop releases one.

use std::task::{RawWaker, RawWakerVTable, Waker};

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

unsafe fn clone(ptr: *const ()) -> RawWaker {
    let raw = task(ptr);
    raw.header().state.ref_inc();
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
