//! Slot storage: lazily allocated pages that never move, addressed by a `u32`
//! index, with a bounded counter that hands out never-used indices.
//!
//! Page `k` holds `FIRST_PAGE << k` slots, so index `i` lives in page
//! `log2(i / FIRST_PAGE + 1)`; a pool of capacity `c` allocates at most about
//! `2c` slots and never more than it has handed out indices for (rounded up to
//! a page). A page pointer is written once (null → page, by CAS) and freed
//! only when the `Pages` is dropped, so a `&S` lives as long as `&Pages`.

use std::ptr;

use crate::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// log2 of the first page's length.
#[cfg(not(weft_loom))]
const FIRST_PAGE_SHIFT: u32 = 5;
/// Two slots per first page under loom, so tiny models cross page boundaries.
#[cfg(weft_loom)]
const FIRST_PAGE_SHIFT: u32 = 1;

/// Largest capacity a pool or map accepts: indices stay below `u32::MAX`,
/// which the free lists use as their end marker.
pub(crate) const MAX_CAPACITY: usize = 1 << 31;

/// `(page, offset)` of index `idx`.
#[inline]
fn locate(idx: u32) -> (usize, usize) {
    let x = u64::from(idx) + (1u64 << FIRST_PAGE_SHIFT);
    let log2 = 63 - x.leading_zeros();
    let page = log2 - FIRST_PAGE_SHIFT;
    let offset = x - (1u64 << log2);
    (page as usize, offset as usize)
}

#[inline]
fn page_len(page: usize) -> usize {
    1usize << (page as u32 + FIRST_PAGE_SHIFT)
}

/// Paged slot storage shared by every thread of one pool.
pub(crate) struct Pages<S> {
    /// Null until the first index of that page is claimed.
    pages: Box<[AtomicPtr<S>]>,
    /// Indices below this have been handed out by [`Pages::claim`].
    claimed: AtomicU32,
    capacity: u32,
}

impl<S: Default> Pages<S> {
    /// Storage for `capacity` slots (`1..=MAX_CAPACITY`, checked by the
    /// builders), none allocated yet.
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!((1..=MAX_CAPACITY).contains(&capacity));
        let capacity = capacity as u32;
        let count = locate(capacity - 1).0 + 1;
        let pages = (0..count)
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        Self {
            pages,
            claimed: AtomicU32::new(0),
            capacity,
        }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// How many indices have been handed out (all of `0..claimed()`).
    pub(crate) fn claimed(&self) -> u32 {
        // Relaxed: a count for metrics and for `Drop`, which has `&mut self`.
        self.claimed.load(Ordering::Relaxed)
    }

    /// Whether a never-used index is still available (may race with `claim`).
    pub(crate) fn has_room(&self) -> bool {
        self.claimed() < self.capacity
    }

    /// Hands out a never-used index and its slot, or `None` at capacity.
    /// Each index is returned at most once over the life of the `Pages`.
    pub(crate) fn claim(&self) -> Option<(u32, &S)> {
        let mut n = self.claimed.load(Ordering::Relaxed);
        loop {
            if n >= self.capacity {
                return None;
            }
            // Relaxed: the counter only has to hand out distinct indices; the
            // slot's contents are published by the page CAS and the lists.
            match self
                .claimed
                .compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some((n, self.ensure_page(n))),
                Err(actual) => n = actual,
            }
        }
    }

    /// The slot at `idx`, allocating its page if no one has yet.
    fn ensure_page(&self, idx: u32) -> &S {
        let (page, offset) = locate(idx);
        let cell = &self.pages[page];
        // Acquire: pairs with the AcqRel CAS below, so the page's slots are
        // initialised before we touch them.
        let mut base = cell.load(Ordering::Acquire);
        if base.is_null() {
            let len = page_len(page);
            let fresh: Box<[S]> = (0..len).map(|_| S::default()).collect();
            let fresh = Box::into_raw(fresh).cast::<S>();
            match cell.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => base = fresh,
                Err(installed) => {
                    // SAFETY: `fresh` came from `Box::into_raw` of a `len`-slot
                    // boxed slice just above and was never shared (the CAS failed).
                    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, len)) });
                    base = installed;
                }
            }
        }
        // SAFETY: `base` points to a live page of `page_len(page)` slots (pages
        // are freed only in `Drop`, which needs `&mut self`) and
        // `offset < page_len(page)` by construction of `locate`.
        unsafe { &*base.add(offset) }
    }

    /// The slot at `idx` if its page exists. Claimed indices always have one;
    /// an index from a user's key may not.
    #[inline]
    pub(crate) fn get(&self, idx: u32) -> Option<&S> {
        if idx >= self.capacity {
            return None;
        }
        let (page, offset) = locate(idx);
        // Acquire: pairs with the AcqRel install in `ensure_page`.
        let base = self.pages[page].load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: as in `ensure_page`: a non-null page pointer stays valid
        // until `Drop`, and `offset` is within the page.
        Some(unsafe { &*base.add(offset) })
    }

    /// The slot of an index this pool handed out.
    ///
    /// # Panics
    /// If `idx` was never claimed (a bug in the pool, not in its user).
    #[inline]
    pub(crate) fn claimed_slot(&self, idx: u32) -> &S {
        match self.get(idx) {
            Some(slot) => slot,
            None => unreachable!("index {idx} was handed out without a page"),
        }
    }
}

impl<S> Drop for Pages<S> {
    fn drop(&mut self) {
        for (page, cell) in self.pages.iter().enumerate() {
            // Relaxed: `&mut self` means every other thread is done with us.
            let base = cell.load(Ordering::Relaxed);
            if !base.is_null() {
                // SAFETY: a non-null page came from `Box::into_raw` of a
                // `page_len(page)`-slot slice in `ensure_page` and is freed only
                // here, once.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(base, page_len(page))) });
            }
        }
    }
}

impl<S> std::fmt::Debug for Pages<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("capacity", &self.capacity)
            .field("claimed", &self.claimed.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use super::*;

    #[test]
    fn locate_walks_pages_in_order() {
        let mut expected = (0usize, 0usize);
        for idx in 0..10_000u32 {
            assert_eq!(locate(idx), expected, "index {idx}");
            expected.1 += 1;
            if expected.1 == page_len(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn claim_stops_at_capacity_and_slots_are_stable() {
        let pages: Pages<u64> = Pages::new(100);
        let mut addrs = Vec::new();
        for want in 0..100 {
            let (idx, slot) = pages.claim().expect("room left");
            assert_eq!(idx, want);
            addrs.push(slot as *const u64);
        }
        assert!(pages.claim().is_none());
        assert!(!pages.has_room());
        for (idx, addr) in addrs.iter().enumerate() {
            assert_eq!(pages.claimed_slot(idx as u32) as *const u64, *addr);
        }
        assert!(pages.get(100).is_none());
    }

    #[test]
    fn unclaimed_pages_are_not_allocated() {
        let pages: Pages<u64> = Pages::new(1000);
        assert!(pages.get(500).is_none());
        pages.claim();
        assert!(pages.get(0).is_some());
        assert!(pages.get(31).is_some());
        assert!(pages.get(32).is_none());
    }
}
