//! A worker's run queue: a fixed ring of [`CAPACITY`] slots that the owner
//! pushes to and pops from (FIFO), and other workers steal half of.
//!
//! It replaces crossbeam-deque's `Worker`, whose buffer grows when a burst
//! arrives and shrinks when it drains: an io pass that woke 100-200 tasks
//! cost a new buffer and crossbeam-epoch's deferred frees on every pass (98%
//! of the allocations per request of a 256-connection echo server; see
//! docs/BENCHMARKS.md). Here the ring never reallocates: when it is full,
//! half of it goes to the runtime's shared queue (`Local::push`'s
//! `overflow`), as in Go's `runqputslow` and tokio's local queue.
//!
//! # Protocol
//! - `tail` (a `u32`, wrapping) is written only by the owner: it writes a
//!   slot, then publishes it with a Release store of `tail`.
//! - `head` packs two `u32` positions: `real`, the next slot to take, and
//!   `steal`, the first slot a thief may still be copying out. Both equal
//!   when no steal is under way. Slots in `steal..tail` belong to the queue,
//!   so the owner may write at `tail` only while `tail - steal < CAPACITY`.
//! - The owner pops by a CAS of `head` advancing `real` (and `steal` with
//!   it when no steal is under way), then reads the slot it claimed.
//! - A thief claims a batch by a CAS advancing `real` alone, which it may
//!   only do when `steal == real` (one steal at a time per queue; a second
//!   thief finds nothing and moves on). It copies the batch out, then ends
//!   the steal with a CAS setting `steal = real`, which frees the slots for
//!   the owner. The owner may pop meanwhile: it moves `real` only.
//! - A full queue with no steal under way moves its oldest half out by one
//!   CAS advancing both positions, then hands those tasks and the new one to
//!   `overflow`. With a steal under way, only the new task goes there.
//!
//! Orderings: the owner's Release store of `tail` publishes slot writes to
//! thieves (their Acquire load of `tail`); a thief's AcqRel CAS ending its
//! steal publishes that it is done reading to the owner's Acquire load of
//! `head` before reusing the slots. Every claim is a CAS on `head`, so each
//! slot is claimed once. The loom models are in
//! `loom-tests/tests/run_queue.rs`.

use std::{marker::PhantomData, mem::MaybeUninit};

use crate::facade::{
    atomic::{AtomicU32, AtomicU64, Ordering::*},
    Arc, UnsafeCell,
};

/// Slots per queue (a power of two). The loom models use 4, so that they
/// reach a full queue in a few steps.
#[cfg(not(weft_loom))]
pub(crate) const CAPACITY: usize = 256;
#[cfg(weft_loom)]
pub(crate) const CAPACITY: usize = 4;

const MASK: u32 = CAPACITY as u32 - 1;

/// What the owner moves to the shared queue when the ring is full.
const OVERFLOW_BATCH: u32 = CAPACITY as u32 / 2;

fn pack(steal: u32, real: u32) -> u64 {
    (u64::from(steal) << 32) | u64::from(real)
}

fn unpack(head: u64) -> (u32, u32) {
    ((head >> 32) as u32, head as u32)
}

struct Inner<T> {
    head: AtomicU64,
    tail: AtomicU32,
    /// A fixed-size array, so indexing by `pos & MASK` needs no bounds check.
    buffer: Box<[UnsafeCell<MaybeUninit<T>>; CAPACITY]>,
}

/// The owner's end (one per worker; not `Sync`, not `Clone`).
pub(crate) struct Local<T> {
    inner: Arc<Inner<T>>,
    /// Only the owner's thread uses this end.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

/// The thieves' end, one per peer worker.
pub(crate) struct Stealer<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Stealer<T> {
    fn clone(&self) -> Self {
        Stealer {
            inner: self.inner.clone(),
        }
    }
}

/// A new, empty queue.
pub(crate) fn new<T>() -> (Local<T>, Stealer<T>) {
    let buffer: Box<[_]> = (0..CAPACITY)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let Ok(buffer) = buffer.try_into() else {
        unreachable!("CAPACITY slots were made")
    };
    let inner = Arc::new(Inner {
        head: AtomicU64::new(0),
        tail: AtomicU32::new(0),
        buffer,
    });
    (
        Local {
            inner: inner.clone(),
            _not_sync: PhantomData,
        },
        Stealer { inner },
    )
}

impl<T> Inner<T> {
    /// Moves the item out of the slot for position `pos`.
    ///
    /// # Safety
    /// The caller claimed `pos` (see the protocol) and takes it once.
    unsafe fn read(&self, pos: u32) -> T {
        self.buffer[(pos & MASK) as usize]
            // SAFETY: the claim gives the caller the slot alone; the write
            // that filled it happens-before (tail's Release/Acquire).
            .with(|slot| unsafe { (*slot).assume_init_read() })
    }

    /// Fills the slot for position `pos`.
    ///
    /// # Safety
    /// The caller is the owner, `pos` is at or past `tail` and less than
    /// `steal + CAPACITY`, so no one else reads or writes the slot.
    unsafe fn write(&self, pos: u32, item: T) {
        self.buffer[(pos & MASK) as usize]
            // SAFETY: as the caller guarantees; the slot's previous item
            // was moved out, so nothing is overwritten that needs a drop.
            .with_mut(|slot| unsafe { (*slot).write(item) });
    }

    fn len(&self) -> usize {
        let (_, real) = unpack(self.head.load(Acquire));
        let tail = self.tail.load(Acquire);
        tail.wrapping_sub(real) as usize
    }

    /// Claims up to `want(available)` items from the front for a thief:
    /// returns the first claimed position and the count, or `None` if the
    /// queue is empty or another steal is under way. The caller reads the
    /// items and then calls [`end_steal`](Self::end_steal).
    fn claim(&self, want: impl Fn(u32) -> u32) -> Option<(u32, u32)> {
        let mut head = self.head.load(Acquire);
        loop {
            let (steal, real) = unpack(head);
            if steal != real {
                return None;
            }
            let tail = self.tail.load(Acquire);
            let n = want(tail.wrapping_sub(real));
            if n == 0 {
                return None;
            }
            match self.head.compare_exchange_weak(
                head,
                pack(steal, real.wrapping_add(n)),
                AcqRel,
                Acquire,
            ) {
                Ok(_) => return Some((real, n)),
                Err(now) => head = now,
            }
        }
    }

    /// Ends a thief's steal: the copied slots go back to the owner.
    fn end_steal(&self) {
        let mut head = self.head.load(Acquire);
        loop {
            let (_, real) = unpack(head);
            match self
                .head
                .compare_exchange_weak(head, pack(real, real), AcqRel, Acquire)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

impl<T> Local<T> {
    /// Tasks queued (exact for the owner, up to a steal under way).
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free slots: how many pushes will not overflow.
    pub(crate) fn remaining(&self) -> usize {
        let (steal, _) = unpack(self.inner.head.load(Acquire));
        let tail = self.inner.tail.load(Relaxed);
        CAPACITY - tail.wrapping_sub(steal) as usize
    }

    /// Queues `item` at the back if the ring has room; gives it back if
    /// not (the caller then takes [`push`](Self::push)'s slow path).
    #[inline(always)]
    pub(crate) fn try_push(&self, item: T) -> Result<(), T> {
        let (steal, _) = unpack(self.inner.head.load(Acquire));
        self.push_if_room(steal, item)
    }

    /// Writes `item` at `tail` if the ring has room past `steal` (read
    /// from `head` by the caller).
    #[inline(always)]
    fn push_if_room(&self, steal: u32, item: T) -> Result<(), T> {
        let inner = &*self.inner;
        // Relaxed: only this thread writes `tail`.
        let tail = inner.tail.load(Relaxed);
        if (tail.wrapping_sub(steal) as usize) < CAPACITY {
            // SAFETY: we are the owner, and `tail - steal < CAPACITY`.
            unsafe { inner.write(tail, item) };
            inner.tail.store(tail.wrapping_add(1), Release);
            Ok(())
        } else {
            Err(item)
        }
    }

    /// Queues `item` at the back. If the ring is full, its oldest half and
    /// `item` go to `overflow` instead (or `item` alone while a thief is
    /// copying out the front).
    pub(crate) fn push(&self, mut item: T, mut overflow: impl FnMut(T)) {
        let inner = &*self.inner;
        loop {
            let head = inner.head.load(Acquire);
            let (steal, real) = unpack(head);
            item = match self.push_if_room(steal, item) {
                Ok(()) => return,
                Err(item) => item,
            };
            if steal != real {
                // A thief holds the front; it will free room soon.
                overflow(item);
                return;
            }
            // Full, no steal under way: claim the oldest half.
            let moved = pack(
                real.wrapping_add(OVERFLOW_BATCH),
                real.wrapping_add(OVERFLOW_BATCH),
            );
            if inner
                .head
                .compare_exchange(head, moved, AcqRel, Acquire)
                .is_err()
            {
                // A thief or a pop moved the front: look again.
                continue;
            }
            for i in 0..OVERFLOW_BATCH {
                // SAFETY: the CAS above claimed these positions for us.
                overflow(unsafe { inner.read(real.wrapping_add(i)) });
            }
            overflow(item);
            return;
        }
    }

    /// Takes the task at the front.
    pub(crate) fn pop(&self) -> Option<T> {
        let inner = &*self.inner;
        let mut head = inner.head.load(Acquire);
        loop {
            let (steal, real) = unpack(head);
            let tail = inner.tail.load(Relaxed);
            if real == tail {
                return None;
            }
            let next = real.wrapping_add(1);
            let new = if steal == real {
                pack(next, next)
            } else {
                pack(steal, next)
            };
            match inner.head.compare_exchange_weak(head, new, AcqRel, Acquire) {
                // SAFETY: the CAS claimed `real` for us.
                Ok(_) => return Some(unsafe { inner.read(real) }),
                Err(now) => head = now,
            }
        }
    }
}

impl<T> Stealer<T> {
    /// Tasks queued (a racy hint).
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next position the owner will take and the position past the
    /// last queued task (racy hints): a task seen queued at position `p`
    /// is still waiting while `real` has not passed `p`.
    pub(crate) fn positions(&self) -> (u32, u32) {
        let (_, real) = unpack(self.inner.head.load(Acquire));
        (real, self.inner.tail.load(Acquire))
    }

    /// Steals half of this queue (rounded up, at most what fits in `dst`):
    /// returns one task to run and queues the rest in `dst`, the thief's
    /// own queue. `None` if there was nothing, another thief was at it, or
    /// `dst` has no room.
    pub(crate) fn steal_into(&self, dst: &Local<T>) -> Option<T> {
        let room = dst.remaining() as u32;
        if room == 0 {
            return None;
        }
        let src = &*self.inner;
        let (first, n) = src.claim(|available| (available - available / 2).min(room + 1))?;
        // The last one is returned; the others go to `dst` in order.
        let dst_inner = &*dst.inner;
        let dst_tail = dst_inner.tail.load(Relaxed);
        for i in 0..n - 1 {
            // SAFETY: claimed above; `dst` is ours and has `room >= n - 1`
            // free slots past its tail.
            unsafe {
                let item = src.read(first.wrapping_add(i));
                dst_inner.write(dst_tail.wrapping_add(i), item);
            }
        }
        // SAFETY: claimed above.
        let last = unsafe { src.read(first.wrapping_add(n - 1)) };
        src.end_steal();
        if n > 1 {
            dst_inner.tail.store(dst_tail.wrapping_add(n - 1), Release);
        }
        Some(last)
    }

    /// Steals the task at the front (shutdown, relief workers).
    pub(crate) fn steal_one(&self) -> Option<T> {
        let src = &*self.inner;
        let (first, _) = src.claim(|available| available.min(1))?;
        // SAFETY: claimed above.
        let item = unsafe { src.read(first) };
        src.end_steal();
        Some(item)
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        // The last handle: no steal is under way, and nobody else is left.
        let (_, real) = unpack(self.head.load(Acquire));
        let tail = self.tail.load(Acquire);
        let mut pos = real;
        while pos != tail {
            // SAFETY: positions in `real..tail` hold items no one took,
            // and no other handle exists to take them.
            drop(unsafe { self.read(pos) });
            pos = pos.wrapping_add(1);
        }
    }
}

// SAFETY: items move between threads through the protocol above, each
// claimed once; they are `Send`.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above: every slot access is covered by a claim.
unsafe impl<T: Send> Sync for Inner<T> {}
