//! The LIFO slot: one task a worker runs next, which other workers may take
//! while the worker is stuck in a poll.
//!
//! # Protocol
//! - The slot is one atomic pointer: null when empty, else the raw form of
//!   one owned item (a `Notified`: the slot owns its reference).
//! - The owner puts a task in with [`LifoSlot::push`] (a swap: the task
//!   that was there comes back and goes to the owner's run queue) and takes
//!   it with [`LifoSlot::take`] (a plain load first, so an empty slot costs
//!   no locked instruction; then a swap).
//! - Any other thread may [`LifoSlot::take`] too. Every transfer out of the
//!   slot is a swap, so each item is taken exactly once: whoever's swap
//!   returns the pointer owns it.
//! - Who may steal, and when, is not this type's business: the scheduler
//!   lets other workers take a worker's slot only while that worker is
//!   inside a poll the monitor has seen last longer than one sampling
//!   interval (see `monitor.rs`). Go's `runqsteal` takes `runnext` from a
//!   running P the same way, after a few microseconds.
//!
//! Orderings: AcqRel on the swaps: the Release half publishes the task's
//! writes made before it was queued to whoever takes it (Acquire half).

use std::marker::PhantomData;

use crate::facade::atomic::{AtomicPtr, Ordering::*};

/// An owned item that can live in a [`LifoSlot`] as a raw pointer.
pub(crate) trait SlotItem: Send {
    /// Gives up ownership as a non-null pointer.
    fn into_slot_ptr(self) -> *mut ();
    /// Takes ownership back.
    ///
    /// # Safety
    /// `ptr` came from `into_slot_ptr` of this type, and is claimed once.
    unsafe fn from_slot_ptr(ptr: *mut ()) -> Self;
}

impl SlotItem for crate::task::Notified {
    fn into_slot_ptr(self) -> *mut () {
        self.into_raw().header_ptr().as_ptr().cast()
    }

    unsafe fn from_slot_ptr(ptr: *mut ()) -> Self {
        // SAFETY: non-null, from `into_slot_ptr` (the caller's contract).
        let header = unsafe { std::ptr::NonNull::new_unchecked(ptr.cast()) };
        crate::task::Notified::from_raw(crate::task::RawTask::from_raw(header))
    }
}

/// Boxes, for the loom model (`loom-tests/tests/lifo_steal.rs`; the
/// `__loom` module that reaches it is also built for shuttle).
#[cfg(any(weft_loom, weft_shuttle))]
impl<T: Send> SlotItem for Box<T> {
    fn into_slot_ptr(self) -> *mut () {
        Box::into_raw(self).cast()
    }

    unsafe fn from_slot_ptr(ptr: *mut ()) -> Self {
        // SAFETY: from `Box::into_raw` in `into_slot_ptr`, claimed once.
        unsafe { Box::from_raw(ptr.cast()) }
    }
}

/// See the module doc.
pub(crate) struct LifoSlot<T: SlotItem> {
    ptr: AtomicPtr<()>,
    _owns: PhantomData<T>,
}

impl<T: SlotItem> LifoSlot<T> {
    pub(crate) fn new() -> Self {
        LifoSlot {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// Puts `item` in the slot, returning the item that was there.
    #[inline]
    pub(crate) fn push(&self, item: T) -> Option<T> {
        let prev = self.ptr.swap(item.into_slot_ptr(), AcqRel);
        // SAFETY: a pointer in the slot came from `into_slot_ptr`, and the
        // swap gave it to us alone.
        (!prev.is_null()).then(|| unsafe { T::from_slot_ptr(prev) })
    }

    /// Takes the item in the slot, if any (owner or thief).
    #[inline]
    pub(crate) fn take(&self) -> Option<T> {
        // Relaxed: a hint only; the swap below decides.
        if self.ptr.load(Relaxed).is_null() {
            return None;
        }
        let prev = self.ptr.swap(std::ptr::null_mut(), AcqRel);
        // SAFETY: as in `push`.
        (!prev.is_null()).then(|| unsafe { T::from_slot_ptr(prev) })
    }

    /// True if the slot holds an item (a racy hint).
    #[inline]
    pub(crate) fn is_occupied(&self) -> bool {
        !self.ptr.load(Relaxed).is_null()
    }
}

impl<T: SlotItem> Drop for LifoSlot<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

// SAFETY: the slot hands its item to exactly one taker (see the protocol);
// the items are `Send`.
unsafe impl<T: SlotItem> Sync for LifoSlot<T> {}
// SAFETY: as above.
unsafe impl<T: SlotItem> Send for LifoSlot<T> {}
