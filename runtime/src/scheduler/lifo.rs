//! The LIFO slot: one task a worker runs next, which other workers may take
//! while the worker is stuck in a poll.
//!
//! # Protocol
//! - The slot is one atomic pointer: null when empty, else the raw form of
//!   one owned item (a `Notified`: the slot owns its reference).
//! - The owner puts a task in with [`LifoSlot::push`]: into an empty slot
//!   with a plain store (nobody else ever makes the slot non-null, so it
//!   stays empty until then; the loom model checks that premise), into a
//!   full one with a swap (the task that was there comes back and goes to
//!   the owner's run queue). It takes with [`LifoSlot::take`] (a plain
//!   load first, so an empty slot costs no locked instruction; then a
//!   swap). A task handing off to another finds the slot empty, so a wake
//!   and the poll after it cost one locked instruction here, not two.
//! - Any other thread may [`LifoSlot::take`] too. Every transfer out of the
//!   slot is a swap, so each item is taken exactly once: whoever's swap
//!   returns the pointer owns it.
//! - Who may steal, and when, is not this type's business: the scheduler
//!   lets other workers take a worker's slot only while that worker is
//!   inside a poll the monitor has seen last longer than one sampling
//!   interval (see `monitor.rs`). Go's `runqsteal` takes `runnext` from a
//!   running P the same way, after a few microseconds.
//!
//! Orderings: AcqRel on the swaps and Release on the owner's store: the
//! Release publishes the task's writes made before it was queued to whoever
//! takes it (the Acquire half of its swap).

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

    /// Puts `item` in the slot, returning the item that was there. Owner
    /// only.
    #[inline]
    pub(crate) fn push(&self, item: T) -> Option<T> {
        let ptr = item.into_slot_ptr();
        // Only the owner makes the slot non-null; thieves only swap it to
        // null. So an empty slot stays empty until our store, which needs
        // no locked instruction (Release: publishes the task to a thief's
        // swap). One locked instruction fewer on every wake that finds the
        // slot empty, the common case of a task handing off to another.
        if self.ptr.load(Relaxed).is_null() {
            self.fill_empty(ptr);
            return None;
        }
        let prev = self.ptr.swap(ptr, AcqRel);
        // SAFETY: a pointer in the slot came from `into_slot_ptr`, and the
        // swap gave it to us alone.
        (!prev.is_null()).then(|| unsafe { T::from_slot_ptr(prev) })
    }

    /// Puts `ptr` into the slot the owner has just seen empty.
    #[cfg(not(weft_loom))]
    #[inline]
    fn fill_empty(&self, ptr: *mut ()) {
        self.ptr.store(ptr, Release);
    }

    /// As above, as loom must see it. loom 0.7 lets a plain store land
    /// between the read and the write of another thread's swap
    /// (tokio-rs/loom#254, fixed by the unmerged #391), which no hardware
    /// or the C++ model allows, so the store would fail the model for
    /// loom's bug. A compare-exchange from null is what the store means
    /// here; the assert checks the premise that makes the two the same
    /// (nobody but the owner ever makes the slot non-null).
    #[cfg(weft_loom)]
    fn fill_empty(&self, ptr: *mut ()) {
        let filled = self
            .ptr
            .compare_exchange(std::ptr::null_mut(), ptr, Release, Relaxed);
        assert!(filled.is_ok(), "only the owner fills the LIFO slot");
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
