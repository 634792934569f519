//! One node of the cancellation tree.
//!
//! # Protocol
//! - `state` is 0 while live; cancelling stores `CANCELLED | cause | origin`
//!   (and `HAS_REASON`) under `inner`'s lock, only if it is still 0, so the
//!   first cause wins and each node is cancelled (and wakes its waiter) at
//!   most once.
//! - `inner` (a mutex) holds the waiter, the reason and the deadline timer.
//! - Children form an intrusive doubly linked list through their `links`,
//!   guarded by the parent's `children` mutex; each linked child is owned by
//!   the list (one strong count, from `Arc::into_raw`). No allocation beyond
//!   the child node itself, and the critical sections are a few pointer
//!   writes, so siblings attached and detached on different workers barely
//!   contend.
//! - A child points to its parent without a count of its own: while the
//!   list is non-empty it holds one strong count of its own node
//!   (`keep_alive`), taken when the first child links and released when the
//!   last one leaves. So a spawn and a completion do not both hit the
//!   parent's reference count (a contended line when the parent spawns on
//!   one worker while its children finish on another), and a chain of tasks
//!   each spawning the next does not keep every finished ancestor alive.
//! - Attaching a child builds it, then locks only the parent's list to link
//!   it. Cancelling stores the parent's state, marks `child_flags` and
//!   walks the list under its lock, taking each child out (`DETACHED`) and
//!   cancelling it in the same pass; children with children of their own
//!   go on an explicit stack, walked after the lock is released (no
//!   recursion, no nested list locks). The attach marks `child_flags` too
//!   before it reads the parent's state, so a child attached concurrently
//!   with a cancel is either walked or sees CANCELLED and is born
//!   cancelled; a node that never had children skips its list lock.
//! - `finish` (task completion, scope exit) drops the node's waiter and
//!   deadline timer and leaves the parent's list (`FINISHING`), unless a
//!   cancel already took it out (`DETACHED`), so a long-lived parent does
//!   not accumulate finished children.
//! - `deadline` is the effective deadline (min of own and parent's), fixed
//!   at creation: a value, not a timer. A timer is armed only when something
//!   waits in the scope (`check_deadline`), and fires `cancel(Deadline)`.

use std::{
    sync::Arc as StdArc,
    task::{Wake, Waker},
    time::Instant,
};

use std::ptr::NonNull;

use super::{Cancelled, Cause};
use crate::cancel::NodeArc;
use crate::{
    scheduler::Handle,
    sync::{
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::*},
        lock, Mutex, UnsafeCell,
    },
    task::RawTask,
    time::driver::Registration,
};

const CANCELLED: usize = 1;
const CAUSE_SHIFT: usize = 1;
const ORIGIN_SHIFT: usize = 4;
const CODE_MASK: usize = 0b111;
/// Set with CANCELLED when a reason was stored (under `inner`'s lock,
/// before the state): readers without it skip that lock.
const HAS_REASON: usize = 1 << 7;

/// `link` values: where a node stands with its parent's list.
/// Not in any list (a root, or a scope that never had a parent).
const UNLINKED: u8 = 0;
/// In the parent's list; the list holds one count of the node.
const LINKED: u8 = 1;
/// `finish` claimed the unlink: it will lock the parent's list and leave it.
const FINISHING: u8 = 2;
/// A cancel of the parent took the node out of the list (and the list's
/// count with it): `finish` need not, and must not, touch the parent.
const DETACHED: u8 = 3;

/// `child_flags`: a child has attached at some point.
const HAS_CHILDREN: u8 = 1;
/// `child_flags`: a cancel has stored the state and is about to walk the
/// children.
const CANCEL_WALKED: u8 = 2;

pub(crate) struct Node {
    state: AtomicUsize,
    /// A deadline timer is registered (or the deadline already fired):
    /// lets await points skip the lock on every poll.
    armed: AtomicBool,
    deadline: Option<Instant>,
    /// The ancestor whose own deadline this node inherited (`None` if the
    /// deadline is this node's own, or there is none). One timer on that
    /// ancestor serves its whole subtree: its cancellation flows down.
    deadline_owner: Option<NodeArc>,
    name: Option<StdArc<str>>,
    /// Set at creation, never changed: the list we are linked into. No
    /// count of its own: the parent stays alive while we are linked (its
    /// list's `keep_alive`), and we are linked until `finish`.
    parent: Option<NonNull<Node>>,
    /// Head of our children list (see the module doc).
    children: Mutex<ChildList>,
    /// Our place in the parent's list; guarded by the parent's `children`.
    links: UnsafeCell<Links>,
    /// `UNLINKED`, `LINKED`, `FINISHING` or `DETACHED`: decides, with one
    /// CAS each, whether `finish` or the parent's cancel removes us from
    /// the parent's list.
    link: AtomicU8,
    /// `HAS_CHILDREN` (set by every attach) and `CANCEL_WALKED` (set by
    /// the cancel before it walks the list), each by an RMW: lets a cancel
    /// skip the list lock of the many nodes that never have children.
    child_flags: AtomicU8,
    inner: Mutex<Inner>,
}

struct ChildList {
    head: Option<NonNull<Node>>,
    len: usize,
    /// A strong count of the node owning this list, held while `len > 0`.
    keep_alive: Option<NodeArc>,
}

// SAFETY: the pointers are strong references to `Node`s (Send + Sync),
// only followed under the mutex that guards the list.
unsafe impl Send for ChildList {}

#[derive(Default)]
struct Links {
    prev: Option<NonNull<Node>>,
    next: Option<NonNull<Node>>,
    linked: bool,
}

// SAFETY: `links` is only accessed under the parent's list mutex.
unsafe impl Sync for Node {}
// SAFETY: as above; every other field is Send.
unsafe impl Send for Node {}

/// Who is woken when the node is cancelled.
enum Waiter {
    /// The task that owns the node. Held without a reference: `finish`
    /// clears it (under the lock) before the task can be freed, and wakes
    /// happen under the same lock.
    Task(RawTask),
    /// Whoever last polled a nested scope.
    Waker(Waker),
}

#[derive(Default)]
struct Inner {
    waiter: Option<Waiter>,
    reason: Option<StdArc<str>>,
    timer: Option<(Handle, Registration)>,
    finished: bool,
}

impl Node {
    /// A node with no parent (a root task, `detached`, or `shield`).
    pub(crate) fn root(
        deadline: Option<Instant>,
        name: Option<StdArc<str>>,
        task: Option<RawTask>,
    ) -> NodeArc {
        NodeArc::new(Node::new(deadline, None, name, None, task))
    }

    /// A live node; `parent: Some` makes it `LINKED` (the caller links it).
    fn new(
        deadline: Option<Instant>,
        deadline_owner: Option<NodeArc>,
        name: Option<StdArc<str>>,
        parent: Option<NonNull<Node>>,
        task: Option<RawTask>,
    ) -> Node {
        Node {
            state: AtomicUsize::new(0),
            armed: AtomicBool::new(false),
            deadline,
            deadline_owner,
            name,
            parent,
            children: Mutex::new(ChildList {
                head: None,
                len: 0,
                keep_alive: None,
            }),
            links: UnsafeCell::new(Links::default()),
            link: AtomicU8::new(if parent.is_some() { LINKED } else { UNLINKED }),
            child_flags: AtomicU8::new(0),
            inner: Mutex::new(Inner {
                waiter: task.map(Waiter::Task),
                ..Inner::default()
            }),
        }
    }

    pub(crate) fn child(
        parent: &NodeArc,
        own: Option<Instant>,
        name: Option<StdArc<str>>,
        task: Option<RawTask>,
    ) -> NodeArc {
        let (deadline, deadline_owner) = match (own, parent.deadline) {
            (Some(own), Some(inherited)) if own < inherited => (Some(own), None),
            (_, Some(inherited)) => (Some(inherited), Some(Node::deadline_owner_or_self(parent))),
            (own, None) => (own, None),
        };
        // Build the node before taking the lock: the critical section is
        // then a state check and a few pointer writes. Born with two
        // counts: ours, and the list's.
        let (node, list_ref) = super::node_arc::new_pair(Node::new(
            deadline,
            deadline_owner,
            name,
            Some(NonNull::from(&**parent)),
            task,
        ));
        let ptr = NonNull::new(NodeArc::into_raw(list_ref) as *mut Node).expect("non-null");
        let mut list = lock(&parent.children);
        // Both sides mark `child_flags` with an RMW, so one of them reads
        // the other's mark: if the cancel's came first, its Release
        // publishes the state it stored before, and our load below sees it
        // (we are born cancelled); if ours came first, the cancel sees
        // HAS_CHILDREN, locks the list after we release it, and finds us.
        // Once HAS_CHILDREN is set, a load does instead of the RMW: the
        // value we read either predates the cancel's RMW in the flags'
        // modification order (which then reads HAS_CHILDREN), or carries
        // CANCEL_WALKED from a later RMW in that cancel's release sequence,
        // so our Acquire makes its state visible below.
        if parent.child_flags.load(Acquire) & HAS_CHILDREN == 0 {
            parent.child_flags.fetch_or(HAS_CHILDREN, AcqRel);
        }
        let parent_state = parent.state.load(Acquire);
        if parent_state & CANCELLED != 0 {
            let origin = (parent_state >> ORIGIN_SHIFT) & CODE_MASK;
            let reason = lock(&parent.inner).reason.clone();
            let has_reason = if reason.is_some() { HAS_REASON } else { 0 };
            lock(&node.inner).reason = reason;
            // Relaxed: the node is not shared yet; whoever gets it later
            // does so through a lock or a queue.
            node.state
                .store(encode(Cause::Parent.code(), origin) | has_reason, Relaxed);
        }
        // SAFETY: the node is ours alone until the lock is released, and
        // its links are guarded by this lock from now on.
        node.links.with_mut(|l| unsafe {
            *l = Links {
                prev: None,
                next: list.head,
                linked: true,
            }
        });
        if let Some(head) = list.head {
            // SAFETY: `head` is a linked child (kept alive by the list's
            // reference) and we hold the list lock that guards its links.
            unsafe { head.as_ref() }
                .links
                .with_mut(|l| unsafe { (*l).prev = Some(ptr) });
        }
        list.head = Some(ptr);
        list.len += 1;
        if list.keep_alive.is_none() {
            list.keep_alive = Some(parent.clone());
        }
        drop(list);
        node
    }

    fn deadline_owner_or_self(this: &NodeArc) -> NodeArc {
        this.deadline_owner.clone().unwrap_or_else(|| this.clone())
    }

    /// Something else already fires this node's deadline (a `timeout`'s own
    /// timer): no deadline timer of its own is needed.
    pub(crate) fn assume_armed(&self) {
        self.armed.store(true, Relaxed);
    }

    /// One atomic load.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.load(Acquire) & CANCELLED != 0
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The error await points in this scope return, if it is cancelled.
    pub(crate) fn cancelled(&self) -> Option<Cancelled> {
        let state = self.state.load(Acquire);
        if state & CANCELLED == 0 {
            return None;
        }
        let cause = Cause::from_code((state >> CAUSE_SHIFT) & CODE_MASK)?;
        let origin = Cause::from_code((state >> ORIGIN_SHIFT) & CODE_MASK).unwrap_or(cause);
        let reason = if state & HAS_REASON != 0 {
            lock(&self.inner).reason.clone()
        } else {
            None
        };
        Some(Cancelled {
            cause,
            origin,
            reason,
        })
    }

    /// Cancels this node and its whole subtree. Returns false if it was
    /// already cancelled (the first cause stays).
    pub(crate) fn cancel(&self, cause: Cause, reason: Option<StdArc<str>>) -> bool {
        let code = cause.code();
        let mut wakers = Vec::new();
        let flipped = self.flip(encode(code, code), &reason, &mut wakers);
        wake_all(&mut wakers);
        if !flipped {
            return false;
        }
        let below = encode(Cause::Parent.code(), code);
        let mut stack = Vec::new();
        self.cancel_children(below, &reason, &mut stack, &mut wakers);
        while let Some(node) = stack.pop() {
            node.cancel_children(below, &reason, &mut stack, &mut wakers);
        }
        true
    }

    /// Flips this node's state (if still live) together with storing the
    /// reason, under `inner`'s lock, so a child born cancelled (which reads
    /// the reason under the same lock after seeing the state) always sees
    /// it. Wakes the owning task at once (under the lock: `finish` clears
    /// it before the task can go); another waker is pushed on `wakers` to
    /// be woken outside any lock. False if it was already cancelled.
    fn flip(&self, state: usize, reason: &Option<StdArc<str>>, wakers: &mut Vec<Waker>) -> bool {
        let mut inner = lock(&self.inner);
        if self.state.load(Relaxed) != 0 {
            // Already cancelled (the state changes only under this lock).
            return false;
        }
        if inner.reason.is_none() {
            inner.reason = reason.clone();
        }
        let has_reason = if inner.reason.is_some() {
            HAS_REASON
        } else {
            0
        };
        // Release: published to an attaching child by `child_flags` (see
        // `child`); Acquire readers of the state see the reason too.
        self.state.store(state | has_reason, Release);
        match &inner.waiter {
            Some(Waiter::Task(task)) => {
                // An RMW on the task word before reading it: if the task
                // is NOTIFIED and about to run, its poller's RMW comes
                // after ours and so sees the state we just set; a plain
                // read could miss it and the poll miss the cancel.
                task.header().state.sync_point();
                task.wake_by_ref();
            }
            Some(Waiter::Waker(waker)) => wakers.push(waker.clone()),
            None => {}
        }
        true
    }

    /// Takes the children of a just-cancelled node out of its list (with
    /// the list's counts) and cancels each in the same pass, so a wide tree
    /// is walked once. Their `finish` then need not lock this list (every
    /// woken child contended on it). A child already `FINISHING` stays in
    /// the list to unlink itself. Children that have children of their own
    /// go on `stack`, to be walked after this list's lock is released: no
    /// recursion, no nested list locks.
    fn cancel_children(
        &self,
        state: usize,
        reason: &Option<StdArc<str>>,
        stack: &mut Vec<NodeArc>,
        wakers: &mut Vec<Waker>,
    ) {
        // See `child`: either we see HAS_CHILDREN here, or the attacher
        // sees our mark and state and is born cancelled. A node that never
        // had children skips the lock.
        if self.child_flags.fetch_or(CANCEL_WALKED, AcqRel) & HAS_CHILDREN == 0 {
            return;
        }
        let keep_alive = {
            let mut list = lock(&self.children);
            let mut cursor = list.head.take();
            let mut kept_head: Option<NonNull<Node>> = None;
            while let Some(ptr) = cursor {
                // SAFETY: linked children are alive (the list holds a strong
                // reference) and their links are guarded by our lock.
                let child = unsafe { ptr.as_ref() };
                // SAFETY: as above: we hold the lock guarding `links`.
                cursor = child.links.with(|l| unsafe { (*l).next });
                let detached = child
                    .link
                    .compare_exchange(LINKED, DETACHED, AcqRel, Acquire)
                    .is_ok();
                let child_ref = if detached {
                    // SAFETY: as above; the node is no longer in any list.
                    child.links.with_mut(|l| unsafe { *l = Links::default() });
                    list.len -= 1;
                    // SAFETY: the list's reference (from `Arc::into_raw` in
                    // `child`) moves to us.
                    unsafe { NodeArc::from_raw(ptr.as_ptr()) }
                } else {
                    // FINISHING: relink it into the list we rebuild.
                    // SAFETY: as above.
                    child.links.with_mut(|l| unsafe {
                        (*l).prev = None;
                        (*l).next = kept_head;
                    });
                    if let Some(head) = kept_head {
                        // SAFETY: a child we kept, alive and guarded by us.
                        unsafe { head.as_ref() }
                            .links
                            .with_mut(|l| unsafe { (*l).prev = Some(ptr) });
                    }
                    kept_head = Some(ptr);
                    // SAFETY: alive (still in the list); the count we add is
                    // the one we hand out.
                    unsafe {
                        NodeArc::increment_strong_count(ptr.as_ptr());
                        NodeArc::from_raw(ptr.as_ptr())
                    }
                };
                // Cancelled while its line is in cache. Lock order: a
                // parent's list, then a child's `inner` (nothing takes them
                // the other way round).
                // The RMW of `cancel_children` (see there), done here so a
                // childless node is not even pushed: a grandchild attaching
                // now either is seen here or sees the child's state. A child
                // cancelled before is left to that cancel's walk.
                if child.flip(state, reason, wakers)
                    && child.child_flags.fetch_or(CANCEL_WALKED, AcqRel) & HAS_CHILDREN != 0
                {
                    stack.push(child_ref);
                } else {
                    // Released under the lock: if this is the last count,
                    // the child has finished (its waiter and timer are
                    // gone), so its drop frees memory and runs no other
                    // code and takes no lock.
                    drop(child_ref);
                }
            }
            list.head = kept_head;
            if list.len == 0 {
                list.keep_alive.take()
            } else {
                None
            }
        };
        // The caller holds a count of `self`, so this is never the last.
        drop(keep_alive);
        wake_all(wakers);
    }

    /// Sets the waker woken when this node is cancelled (the owning task's).
    pub(crate) fn set_waiter(&self, waker: &Waker) {
        let mut inner = lock(&self.inner);
        if inner.finished {
            return;
        }
        match &inner.waiter {
            Some(Waiter::Waker(w)) if w.will_wake(waker) => {}
            _ => inner.waiter = Some(Waiter::Waker(waker.clone())),
        }
    }

    pub(crate) fn name(&self) -> Option<&StdArc<str>> {
        self.name.as_ref()
    }

    /// Cancels with `Deadline` if the deadline has passed; otherwise makes
    /// sure a timer will do so. Called by await points about to wait.
    pub(crate) fn check_deadline(this: &NodeArc, handle: Option<&Handle>) {
        let Some(deadline) = this.deadline else {
            return;
        };
        if this.is_cancelled() {
            return;
        }
        // An inherited deadline is fired on its owner, whose cancellation
        // reaches this node (cause Parent, origin Deadline).
        let this = this.deadline_owner.as_ref().unwrap_or(this);
        let now = Instant::now();
        if now >= deadline {
            this.cancel(Cause::Deadline, None);
            return;
        }
        // Relaxed: a hint; the lock below decides.
        if this.armed.load(Relaxed) {
            return;
        }
        let Some(handle) = handle else { return };
        let mut inner = lock(&this.inner);
        if inner.timer.is_some() || inner.finished {
            return;
        }
        let waker = Waker::from(StdArc::new(DeadlineWaker(this.clone())));
        let (shard, _) = handle.timer_shard();
        match handle.time().register(shard, deadline, &waker) {
            Some(reg) => {
                inner.timer = Some((handle.clone(), reg));
                this.armed.store(true, Relaxed);
            }
            None => {
                drop(inner);
                this.cancel(Cause::Deadline, None);
            }
        }
    }

    /// The scope or task is over: leave the parent, drop the waiter and the
    /// deadline timer. Children stay attached (they hold this node) until
    /// they finish themselves.
    pub(crate) fn finish(&self) {
        let (waiter, timer) = {
            let mut inner = lock(&self.inner);
            if inner.finished {
                // Already left the parent, which may be gone by now.
                return;
            }
            inner.finished = true;
            (inner.waiter.take(), inner.timer.take())
        };
        drop(waiter);
        if let Some((handle, reg)) = timer {
            handle.time().deregister(reg);
        }
        let Some(parent) = self.parent else { return };
        if self
            .link
            .compare_exchange(LINKED, FINISHING, AcqRel, Acquire)
            .is_err()
        {
            // DETACHED: the parent's cancel took us out of its list, and
            // the list's count of us with us.
            return;
        }
        // SAFETY: we are still in the parent's list (a cancel leaves a
        // FINISHING child there), so the list holds a count of the parent
        // (`keep_alive`).
        let parent = unsafe { parent.as_ref() };
        let (released, parent_ref) = {
            let mut list = lock(&parent.children);
            // SAFETY: our links are guarded by the parent's list lock, held
            // here; linked neighbours are alive (strong references).
            let unlinked = self.links.with_mut(|l| unsafe {
                let links = std::mem::take(&mut *l);
                if !links.linked {
                    return false;
                }
                match links.prev {
                    Some(prev) => prev.as_ref().links.with_mut(|p| (*p).next = links.next),
                    None => list.head = links.next,
                }
                if let Some(next) = links.next {
                    next.as_ref().links.with_mut(|n| (*n).prev = links.prev);
                }
                true
            });
            if unlinked {
                list.len -= 1;
            }
            let parent_ref = if list.len == 0 {
                list.keep_alive.take()
            } else {
                None
            };
            (unlinked.then_some(self as *const Node), parent_ref)
        };
        // Released outside the lock, parent first: either may be the last
        // count, and `self` must not be touched once its own is gone.
        drop(parent_ref);
        if let Some(ptr) = released {
            // SAFETY: the list's strong reference, taken in `child`.
            drop(unsafe { NodeArc::from_raw(ptr) });
        }
    }

    /// Children currently attached (for tests and metrics).
    pub(crate) fn child_count(&self) -> usize {
        lock(&self.children).len
    }
}

fn wake_all(wakers: &mut Vec<Waker>) {
    for waker in wakers.drain(..) {
        waker.wake();
    }
}

fn encode(cause: usize, origin: usize) -> usize {
    CANCELLED | (cause << CAUSE_SHIFT) | (origin << ORIGIN_SHIFT)
}

/// The waker of a scope's deadline timer: firing cancels the scope.
struct DeadlineWaker(NodeArc);

impl Wake for DeadlineWaker {
    fn wake(self: StdArc<Self>) {
        self.0.cancel(Cause::Deadline, None);
    }
    fn wake_by_ref(self: &StdArc<Self>) {
        self.0.cancel(Cause::Deadline, None);
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("cancelled", &self.is_cancelled())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
