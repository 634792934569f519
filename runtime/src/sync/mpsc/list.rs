//! The channel's queue: a lock-free linked list of blocks, many pushers and
//! one popper (the design of crossbeam-channel's `list` flavour).
//!
//! # Protocol
//! - The tail `index` counts slots, shifted past the [`MARK`] bit:
//!   `(lap * LAP + offset) << SHIFT`. An offset below
//!   [`BLOCK_CAP`] names a slot of the block the tail `block` points to;
//!   offset `BLOCK_CAP` is a marker: the sender that claimed the block's
//!   last slot is installing the next block, and others wait for it.
//! - A sender claims a slot with a CAS on `index` (so it reads `block` for
//!   the same lap: `block` only changes while `index` sits on the marker,
//!   and the CAS fails if `index` moved). Only after a successful claim does
//!   it touch the block: writes the value, then sets the slot's `ready`
//!   (Release, publishing the value). The sender of a block's last slot
//!   first allocates the next block (before claiming, outside any window),
//!   stores it as the tail block, moves `index` past the marker, and links
//!   it as `next` *before* writing its own value, so the popper that reads
//!   the last slot finds `next` set.
//! - [`MARK`] closes the list (the receiver closed): from then on no slot
//!   can be claimed, so once the popper finds the list empty after setting
//!   it, no value can arrive any more. A push that finds it set gets its
//!   value back.
//! - The popper alone owns the head (index and block). A slot whose `ready`
//!   is clear is empty (tail == head) or being written (the sender has
//!   claimed it and will notify after writing). After popping a block's
//!   last slot the popper frees the block: every sender that claimed a slot
//!   in it has set that slot's `ready`, which is its last touch of the block,
//!   and senders that hold a stale pointer to it never dereference it (their
//!   claim fails).

use std::{mem::MaybeUninit, ptr};

use crate::facade::{
    atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*},
    UnsafeCell,
};

/// Slots per block, plus the marker offset. Tiny under loom so block
/// changes are reached.
#[cfg(not(any(weft_loom, weft_shuttle)))]
const LAP: usize = 32;
#[cfg(any(weft_loom, weft_shuttle))]
const LAP: usize = 3;
/// Slots in a block.
const BLOCK_CAP: usize = LAP - 1;
/// The list is closed: no slot can be claimed.
const MARK: usize = 1;
/// The slot count starts above the mark bit.
const SHIFT: usize = 1;

struct Slot<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    /// The value is written; set once (Release) by its sender.
    ready: AtomicBool,
}

struct Block<T> {
    /// The next block, set by the sender of this block's last slot before
    /// it marks that slot ready.
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_CAP],
}

impl<T> Block<T> {
    fn alloc() -> *mut Block<T> {
        Box::into_raw(Box::new(Block {
            next: AtomicPtr::new(ptr::null_mut()),
            slots: std::array::from_fn(|_| Slot {
                value: UnsafeCell::new(MaybeUninit::uninit()),
                ready: AtomicBool::new(false),
            }),
        }))
    }
}

/// The senders' end. On a cache line (pair) of its own, apart from the
/// receiver's [`Head`]: a sender's claim and a pop on two workers would
/// otherwise bounce one line per message.
#[repr(align(128))]
pub(super) struct Tail<T> {
    index: AtomicUsize,
    block: AtomicPtr<Block<T>>,
}

/// The popper's end, owned by the receiver; padded like [`Tail`].
#[repr(align(128))]
pub(super) struct Head<T> {
    index: usize,
    block: *mut Block<T>,
}

/// What [`Head::pop`] found.
pub(super) enum Pop<T> {
    Value(T),
    /// No slot claimed.
    Empty,
    /// The next slot is claimed, its sender is still writing; it notifies
    /// the receiver when done.
    Busy,
}

/// A new, empty list: its two ends.
pub(super) fn list<T>() -> (Tail<T>, Head<T>) {
    let block = Block::alloc();
    (
        Tail {
            index: AtomicUsize::new(0),
            block: AtomicPtr::new(block),
        },
        Head { index: 0, block },
    )
}

/// Slots before position `index` (positions count the marker offsets).
fn slots_before(index: usize) -> usize {
    index / LAP * BLOCK_CAP + (index % LAP).min(BLOCK_CAP)
}

/// Lets another thread finish its step (loom needs an explicit yield).
pub(super) fn backoff(step: &mut u32) {
    #[cfg(weft_loom)]
    {
        let _ = step;
        loom::thread::yield_now();
    }
    // shuttle runs its threads one at a time: a spin would never let the
    // other thread finish its step.
    #[cfg(weft_shuttle)]
    {
        let _ = step;
        shuttle::thread::yield_now();
    }
    #[cfg(not(any(weft_loom, weft_shuttle)))]
    {
        if *step < 6 {
            for _ in 0..(1 << *step) {
                std::hint::spin_loop();
            }
            *step += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

impl<T> Tail<T> {
    /// Appends `value`; `Err(value)` if the list is closed.
    pub(super) fn push(&self, value: T) -> Result<(), T> {
        let mut next_block: *mut Block<T> = ptr::null_mut();
        let mut step = 0;
        let mut index = self.index.load(Acquire);
        let mut block = self.block.load(Acquire);
        loop {
            if index & MARK != 0 {
                if !next_block.is_null() {
                    // SAFETY: ours, never shared.
                    unsafe { drop(Box::from_raw(next_block)) };
                }
                return Err(value);
            }
            let offset = (index >> SHIFT) % LAP;
            if offset == BLOCK_CAP {
                // The next block is being installed.
                backoff(&mut step);
                index = self.index.load(Acquire);
                block = self.block.load(Acquire);
                continue;
            }
            if offset + 1 == BLOCK_CAP && next_block.is_null() {
                next_block = Block::alloc();
            }
            // Acquire on success and failure: pairs with the Release of the
            // lap change, so `block` read after it is this lap's.
            match self
                .index
                .compare_exchange_weak(index, index + (1 << SHIFT), AcqRel, Acquire)
            {
                Ok(_) => {
                    // SAFETY: the claim succeeded with `index` unchanged
                    // since `block` was read for it: `block` is the live
                    // block of this slot, freed only after the popper reads
                    // this slot, which needs our `ready`.
                    unsafe {
                        if offset + 1 == BLOCK_CAP {
                            self.block.store(next_block, Release);
                            self.index.fetch_add(1 << SHIFT, Release);
                            (*block).next.store(next_block, Release);
                        } else if !next_block.is_null() {
                            // Allocated for a lap we did not end.
                            drop(Box::from_raw(next_block));
                        }
                        let slot = &(*block).slots[offset];
                        slot.value.with_mut(|v| (*v).write(value));
                        // Release: publishes the value (and `next`).
                        slot.ready.store(true, Release);
                    }
                    return Ok(());
                }
                Err(now) => {
                    index = now;
                    block = self.block.load(Acquire);
                    std::hint::spin_loop();
                }
            }
        }
    }

    /// True if no slot past `head` is claimed.
    fn is_at(&self, head: usize) -> bool {
        self.index.load(Acquire) >> SHIFT == head
    }

    /// Slots claimed so far (written or being written).
    fn claimed(&self) -> usize {
        slots_before(self.index.load(Acquire) >> SHIFT)
    }

    /// Closes the list: later pushes fail.
    pub(super) fn close(&self) {
        // AcqRel: a claim that succeeded before is visible to the popper's
        // emptiness check after this.
        self.index.fetch_or(MARK, AcqRel);
    }
}

impl<T> Head<T> {
    /// Takes the next value.
    pub(super) fn pop(&mut self, tail: &Tail<T>) -> Pop<T> {
        let offset = self.index % LAP;
        // SAFETY: the head block is live: only the popper frees blocks, and
        // it moves on before freeing this one.
        let block = unsafe { &*self.block };
        let slot = &block.slots[offset];
        // Acquire: pairs with the sender's Release of `ready`.
        if !slot.ready.load(Acquire) {
            return if tail.is_at(self.index) {
                Pop::Empty
            } else {
                Pop::Busy
            };
        }
        // SAFETY: `ready` says the value is written; the popper reads each
        // slot once (the head moves past it).
        let value = slot.value.with(|v| unsafe { (*v).assume_init_read() });
        self.index += 1;
        if offset + 1 == BLOCK_CAP {
            let next = block.next.load(Acquire);
            debug_assert!(
                !next.is_null(),
                "the last slot's sender links the next block"
            );
            // SAFETY: every slot of the old block was read, so every sender
            // that claimed one is done with it (module protocol).
            unsafe { drop(Box::from_raw(self.block)) };
            self.block = next;
            self.index += 1;
        }
        Pop::Value(value)
    }

    /// Values claimed and not popped yet (including ones still being
    /// written).
    pub(super) fn len(&self, tail: &Tail<T>) -> usize {
        tail.claimed().saturating_sub(slots_before(self.index))
    }

    /// Frees the head block. Called with the channel, when no sender is
    /// left and every value was popped.
    pub(super) fn free(&mut self) {
        if !self.block.is_null() {
            // SAFETY: the last block; no one else holds the channel.
            unsafe { drop(Box::from_raw(self.block)) };
            self.block = ptr::null_mut();
        }
    }
}

// SAFETY: the head is the receiver's; it only moves with it.
unsafe impl<T: Send> Send for Head<T> {}
