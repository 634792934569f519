//! The runtime's registry of live tasks, so shutdown can reach tasks that sit
//! idle with their only wakers held elsewhere.
//!
//! An intrusive doubly linked list per shard, the links inside each task's
//! header; a task's shard is fixed by its id. Insert and remove each take one
//! uncontended shard lock. `close` flips a flag that every later insert sees
//! under its shard lock, so no task slips in after the shutdown sweep.

use std::ptr::NonNull;

use super::{
    core::Header,
    raw::{Notified, RawTask, Task},
};
use std::sync::atomic::{AtomicBool as StdAtomicBool, AtomicPtr, AtomicU32};

use crate::facade::{
    atomic::{AtomicBool, Ordering::*},
    lock, Mutex,
};

/// A task's place in its shard's list. Written only under that shard's
/// lock. The fields are (std, not loom) atomics with Relaxed accesses only
/// so `remove` may read them *before* taking the lock, as a prefetch hint
/// for the neighbours it is about to write; the lock orders every access
/// that matters. Relaxed loads and stores compile to plain moves.
pub(crate) struct Links {
    prev: AtomicPtr<Header>,
    next: AtomicPtr<Header>,
    linked: StdAtomicBool,
    /// Not a link: the header's schedule stamp (`Header::set_woken_at`),
    /// kept here in what would be padding, so the header stays 56 bytes.
    /// A 64-bit stamp in the header moved a task with a small future from
    /// the 128-byte block class to 144 (`--bench memory`).
    pub(crate) woken_at: AtomicU32,
    /// Not a link either: what the task waits for (`Header::awaiting`),
    /// in the same padding, so the header stays one cache line.
    pub(crate) awaiting: std::sync::atomic::AtomicU8,
    /// Not a link: nonzero while the task's sampled polls are long
    /// (`Header::long_poll`), in the same padding.
    pub(crate) long_poll: std::sync::atomic::AtomicU8,
}

impl Default for Links {
    fn default() -> Links {
        Links {
            prev: AtomicPtr::new(std::ptr::null_mut()),
            next: AtomicPtr::new(std::ptr::null_mut()),
            linked: StdAtomicBool::new(false),
            woken_at: AtomicU32::new(0),
            awaiting: std::sync::atomic::AtomicU8::new(0),
            long_poll: std::sync::atomic::AtomicU8::new(0),
        }
    }
}

fn ptr_of(header: Option<NonNull<Header>>) -> *mut Header {
    header.map_or(std::ptr::null_mut(), NonNull::as_ptr)
}

struct Shard {
    head: Option<NonNull<Header>>,
    len: usize,
}

/// A shard's lock on a cache line of its own. Unpadded, the eight shards of
/// a 2-worker runtime shared three lines, so a spawn on one worker and a
/// completion on the other bounced the same line even when they locked
/// different shards: the lock's `cmpxchg` and the unlock's `xchg` were 90%
/// of `bind`'s time in the `ping_pong` profile.
#[repr(align(128))]
struct PaddedShard(Mutex<Shard>);

// SAFETY: the raw pointers are task headers, which are Send + Sync; the list
// is only walked under the shard's mutex.
unsafe impl Send for Shard {}

pub(crate) struct OwnedTasks {
    shards: Box<[PaddedShard]>,
    mask: usize,
    closed: AtomicBool,
}

impl OwnedTasks {
    pub(crate) fn new(shards: usize) -> OwnedTasks {
        let n = shards.max(1).next_power_of_two();
        OwnedTasks {
            shards: (0..n)
                .map(|_| PaddedShard(Mutex::new(Shard { head: None, len: 0 })))
                .collect(),
            mask: n - 1,
            closed: AtomicBool::new(false),
        }
    }

    fn shard(&self, raw: RawTask) -> &Mutex<Shard> {
        &self.shards[(raw.id().as_u64() as usize) & self.mask].0
    }

    /// Registers a new task. Returns its first notification, or `None` when
    /// the registry is closed: the task has then been cancelled already.
    pub(crate) fn bind(&self, task: Task, notified: Notified) -> Option<Notified> {
        let raw = task.raw();
        {
            let mut shard = lock(self.shard(raw));
            // Relaxed: `close` sets the flag before taking each shard lock, and
            // we read it under one, so the mutex orders the two.
            if !self.closed.load(Relaxed) {
                let head = shard.head;
                let links = &raw.header().links;
                links.prev.store(std::ptr::null_mut(), Relaxed);
                links.next.store(ptr_of(head), Relaxed);
                links.linked.store(true, Relaxed);
                if let Some(head) = head {
                    // SAFETY: `head` is a live task of this shard (it holds a
                    // registry reference), and we hold the lock.
                    unsafe { head.as_ref() }
                        .links
                        .prev
                        .store(raw.header_ptr().as_ptr(), Relaxed);
                }
                shard.head = Some(raw.header_ptr());
                shard.len += 1;
                // The list now owns the task's registry reference.
                let _ = task.into_raw();
                return Some(notified);
            }
        }
        // Closed: the runtime is shutting down. The task never runs.
        drop(notified);
        task.shutdown();
        None
    }

    /// Unlinks a finished task, returning the registry's reference if it was
    /// still linked.
    pub(crate) fn remove(&self, raw: RawTask) -> Option<Task> {
        let links = &raw.header().links;
        // Start loading the neighbours' lines before the lock: they are
        // usually cold (last written by another worker), and the writes to
        // them below otherwise stall the unlock's `xchg`. A racy read is
        // fine for a hint: a prefetch of a stale or freed address has no
        // effect.
        crate::prefetch::for_write(links.prev.load(Relaxed));
        crate::prefetch::for_write(links.next.load(Relaxed));
        let mut shard = lock(self.shard(raw));
        // Loads and stores, not swaps: the lock serialises them, and a
        // swap would be a locked instruction.
        if !links.linked.load(Relaxed) {
            return None;
        }
        let prev = NonNull::new(links.prev.load(Relaxed));
        let next = NonNull::new(links.next.load(Relaxed));
        links.prev.store(std::ptr::null_mut(), Relaxed);
        links.next.store(std::ptr::null_mut(), Relaxed);
        links.linked.store(false, Relaxed);
        match prev {
            // SAFETY: neighbours are live tasks of this shard; we hold the lock.
            Some(prev) => unsafe { prev.as_ref() }
                .links
                .next
                .store(ptr_of(next), Relaxed),
            None => shard.head = next,
        }
        if let Some(next) = next {
            // SAFETY: as above.
            unsafe { next.as_ref() }
                .links
                .prev
                .store(ptr_of(prev), Relaxed);
        }
        shard.len -= 1;
        Some(Task::from_raw(raw))
    }

    fn pop(&self, shard: &Mutex<Shard>) -> Option<Task> {
        let head = lock(shard).head?;
        self.remove(RawTask::from_raw(head))
    }

    /// Closes the registry and cancels every task in it. Tasks running on
    /// another thread are marked cancelled and dropped when their poll returns.
    pub(crate) fn close_and_shutdown_all(&self) {
        self.closed.store(true, Relaxed);
        for PaddedShard(shard) in self.shards.iter() {
            // Shut tasks down outside the lock: their destructors may spawn
            // (into this closed registry) or complete other tasks.
            while let Some(task) = self.pop(shard) {
                task.shutdown();
            }
        }
    }

    /// Calls `f` with every registered task, one shard at a time under its
    /// lock (the task dump). `f` must not spawn, complete or free a task:
    /// that takes a shard lock.
    pub(crate) fn for_each(&self, mut f: impl FnMut(RawTask)) {
        for PaddedShard(shard) in self.shards.iter() {
            let shard = lock(shard);
            let mut cursor = shard.head;
            while let Some(ptr) = cursor {
                // A linked task is alive: the list holds a reference, and
                // only `remove`, under this lock, gives it up.
                let task = RawTask::from_raw(ptr);
                f(task);
                cursor = NonNull::new(task.header().links.next.load(Relaxed));
            }
        }
    }

    /// A new reference to the task whose header is at `ptr`, if a task
    /// with that header is still registered. The caller only knows the
    /// pointer from a racy read (the stuck-poll monitor, which then checks
    /// that the poll it sampled is still running, so an address reused by
    /// a newer task is not mistaken for it): the walk compares addresses
    /// and touches only linked, live tasks, so a stale pointer is never
    /// dereferenced. O(registered tasks), one shard lock at a time; for
    /// rare callers.
    pub(crate) fn get_live(&self, ptr: *const ()) -> Option<Task> {
        for PaddedShard(shard) in self.shards.iter() {
            let shard = lock(shard);
            let mut cursor = shard.head;
            while let Some(header) = cursor {
                if std::ptr::eq(header.as_ptr().cast::<()>(), ptr) {
                    // SAFETY: linked in this shard, so alive: the list
                    // holds a reference, and we hold the lock that
                    // unlinking takes.
                    let header = unsafe { header.as_ref() };
                    header.state.ref_inc();
                    return Some(Task::from_raw(RawTask::from_raw(NonNull::from(header))));
                }
                // SAFETY: as above.
                cursor = NonNull::new(unsafe { header.as_ref() }.links.next.load(Relaxed));
            }
        }
        None
    }

    /// Tasks spawned and not yet finished.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).len).sum()
    }
}
