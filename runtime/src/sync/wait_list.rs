//! An intrusive, doubly linked FIFO of waiters, for `weft::sync`.
//!
//! # Protocol
//! - A [`Waiter`] lives inside a wait future, which is pinned while the
//!   waiter is linked; the list holds raw pointers to it, never owns it, and
//!   allocates nothing.
//! - Every access to a list **and to the waiters linked into it** happens
//!   under the one lock of the primitive that owns the list (a facade
//!   `Mutex`). That lock is what makes the raw pointers sound: a waiter is
//!   unlinked (by whoever wakes it, or by its own future on the way out,
//!   under the lock) before its future's memory can go away.
//! - A wait future that may be linked must, in its `Drop`, take the lock and
//!   [`WaitList::remove`] itself if it is still linked, and hand back
//!   whatever it was given (a permit, a message slot, a notification) to the
//!   next waiter. That is how a waiter leaving through cancellation loses
//!   nothing.
//! - `queued` says whether the node is in a list; `remove` of an unlinked
//!   node is a no-op, so a waker that popped the node and the node's own
//!   future racing for the lock both end consistent.

use std::{marker::PhantomPinned, ptr::NonNull, task::Waker};

/// One waiter's node: the links, the waker to call, and what the primitive
/// hands over to it (`T`: permits assigned, a notified flag, ...).
#[derive(Debug)]
pub(crate) struct Waiter<T> {
    prev: Option<NonNull<Waiter<T>>>,
    next: Option<NonNull<Waiter<T>>>,
    queued: bool,
    /// The waker to call when the primitive hands something over.
    pub(crate) waker: Option<Waker>,
    /// What the primitive hands over, read and written under its lock.
    pub(crate) value: T,
    _pin: PhantomPinned,
}

// SAFETY: a `Waiter` is only touched under its primitive's lock (see the
// module protocol); its links are plain data to the thread holding the lock.
unsafe impl<T: Send> Send for Waiter<T> {}
// SAFETY: as above: shared access never happens without the lock.
unsafe impl<T: Send> Sync for Waiter<T> {}

impl<T> Waiter<T> {
    pub(crate) const fn new(value: T) -> Waiter<T> {
        Waiter {
            prev: None,
            next: None,
            queued: false,
            waker: None,
            value,
            _pin: PhantomPinned,
        }
    }

    /// True while the node is linked into a list.
    pub(crate) fn is_queued(&self) -> bool {
        self.queued
    }

    /// Stores `waker` unless the stored one would wake the same task.
    pub(crate) fn set_waker(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }
}

/// The list's ends. Owned by a primitive, inside its lock.
#[derive(Debug)]
pub(crate) struct WaitList<T> {
    head: Option<NonNull<Waiter<T>>>,
    tail: Option<NonNull<Waiter<T>>>,
    len: usize,
}

// SAFETY: the list is only used under its primitive's lock; the nodes it
// points to are `Send` when `T` is.
unsafe impl<T: Send> Send for WaitList<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for WaitList<T> {}

impl<T> Default for WaitList<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WaitList<T> {
    pub(crate) const fn new() -> WaitList<T> {
        WaitList {
            head: None,
            tail: None,
            len: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Waiters linked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Links `node` at the back.
    ///
    /// # Safety
    /// `node` is not linked into any list, stays pinned until it is
    /// unlinked, and the caller holds the primitive's lock.
    pub(crate) unsafe fn push_back(&mut self, node: NonNull<Waiter<T>>) {
        // SAFETY: the caller guarantees `node` is live and unlinked, and
        // that no one else touches the list or its nodes (the lock).
        unsafe {
            let n = &mut *node.as_ptr();
            debug_assert!(!n.queued, "a waiter linked twice");
            n.prev = self.tail;
            n.next = None;
            n.queued = true;
            match self.tail {
                Some(tail) => (*tail.as_ptr()).next = Some(node),
                None => self.head = Some(node),
            }
        }
        self.tail = Some(node);
        self.len += 1;
    }

    /// Links `node` at the front (a waiter that was first already, moving
    /// in from elsewhere, keeps its place).
    ///
    /// # Safety
    /// As [`WaitList::push_back`].
    pub(crate) unsafe fn push_front(&mut self, node: NonNull<Waiter<T>>) {
        // SAFETY: as in `push_back`.
        unsafe {
            let n = &mut *node.as_ptr();
            debug_assert!(!n.queued, "a waiter linked twice");
            n.prev = None;
            n.next = self.head;
            n.queued = true;
            match self.head {
                Some(head) => (*head.as_ptr()).prev = Some(node),
                None => self.tail = Some(node),
            }
        }
        self.head = Some(node);
        self.len += 1;
    }

    /// The first waiter, still linked.
    pub(crate) fn front(&self) -> Option<NonNull<Waiter<T>>> {
        self.head
    }

    /// Unlinks and returns the first waiter.
    pub(crate) fn pop_front(&mut self) -> Option<NonNull<Waiter<T>>> {
        let head = self.head?;
        // SAFETY: linked nodes are live (their futures unlink them before
        // going away, under the lock the caller holds).
        unsafe { self.unlink(head) };
        Some(head)
    }

    /// Unlinks `node` if it is linked into this list; false if it was not
    /// linked (already popped by a waker).
    ///
    /// # Safety
    /// `node` is live, was only ever linked into this list, and the caller
    /// holds the primitive's lock.
    pub(crate) unsafe fn remove(&mut self, node: NonNull<Waiter<T>>) -> bool {
        // SAFETY: the caller guarantees `node` is live.
        if !unsafe { (*node.as_ptr()).queued } {
            return false;
        }
        // SAFETY: linked into this list, per the caller.
        unsafe { self.unlink(node) };
        true
    }

    /// # Safety
    /// `node` is live and linked into this list.
    unsafe fn unlink(&mut self, node: NonNull<Waiter<T>>) {
        // SAFETY: per the caller; neighbours of a linked node are linked
        // and so live too.
        unsafe {
            let n = &mut *node.as_ptr();
            match n.prev {
                Some(prev) => (*prev.as_ptr()).next = n.next,
                None => self.head = n.next,
            }
            match n.next {
                Some(next) => (*next.as_ptr()).prev = n.prev,
                None => self.tail = n.prev,
            }
            n.prev = None;
            n.next = None;
            n.queued = false;
        }
        self.len -= 1;
    }

    /// Unlinks every waiter, front to back, passing each to `f` (which
    /// typically takes its waker to call after the lock is released).
    pub(crate) fn drain(&mut self, mut f: impl FnMut(&mut Waiter<T>)) {
        while let Some(node) = self.pop_front() {
            // SAFETY: just unlinked under the caller's lock; the node's
            // future cannot free it before taking that lock.
            f(unsafe { &mut *node.as_ptr() });
        }
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::{pin::Pin, ptr::NonNull};

    use super::*;

    fn ptr(w: Pin<&mut Waiter<u32>>) -> NonNull<Waiter<u32>> {
        // SAFETY: the test never moves the pinned boxes.
        NonNull::from(unsafe { w.get_unchecked_mut() })
    }

    #[test]
    fn fifo_order_and_removal_from_the_middle() {
        let mut a = Box::pin(Waiter::new(1));
        let mut b = Box::pin(Waiter::new(2));
        let mut c = Box::pin(Waiter::new(3));
        let (pa, pb, pc) = (ptr(a.as_mut()), ptr(b.as_mut()), ptr(c.as_mut()));
        let mut list = WaitList::new();
        // SAFETY: the nodes are pinned boxes that outlive the list's use.
        unsafe {
            list.push_back(pa);
            list.push_back(pb);
            list.push_back(pc);
            assert_eq!(list.len(), 3);
            assert!(list.remove(pb));
            assert!(!list.remove(pb), "a second removal is a no-op");
        }
        let mut seen = Vec::new();
        list.drain(|w| seen.push(w.value));
        assert_eq!(seen, [1, 3]);
        assert!(list.is_empty());
        assert_eq!(list.len(), 0);
        assert!(!a.is_queued() && !b.is_queued() && !c.is_queued());
    }

    #[test]
    fn removing_the_ends_keeps_the_links_consistent() {
        let mut a = Box::pin(Waiter::new(1));
        let mut b = Box::pin(Waiter::new(2));
        let (pa, pb) = (ptr(a.as_mut()), ptr(b.as_mut()));
        let mut list = WaitList::new();
        // SAFETY: as above.
        unsafe {
            list.push_back(pa);
            list.push_back(pb);
            assert!(list.remove(pb));
            assert_eq!(list.front(), Some(pa));
            list.push_front(pb);
            assert_eq!(list.front(), Some(pb));
            assert!(list.remove(pb));
            assert!(list.remove(pa));
            assert!(list.is_empty());
            list.push_back(pb);
        }
        assert_eq!(list.pop_front(), Some(pb));
        assert_eq!(list.pop_front(), None);
    }
}
