//! One node of the cancellation tree.
//!
//! # Protocol
//! - `state` is one word: `CANCELLED | cause | origin` (and `HAS_REASON`)
//!   once cancelled, plus two flags that live beside them so one RMW reads
//!   and writes both: `HAS_CHILDREN` (a child has attached) and `ARMED` (a
//!   deadline timer is, or is about to be, registered). Cancelling is a CAS
//!   that succeeds only while `CANCELLED` is clear, so the first cause wins
//!   and each node is cancelled (and wakes its waiter) at most once.
//! - `inner` (a mutex) holds a scope's waker, the reason and the deadline
//!   timer. A task node's waiter is the task itself (`task`, fixed at
//!   creation, held without a reference).
//! - Children form an intrusive doubly linked list through their `links`,
//!   guarded by the parent's `children` mutex. The list holds no count of
//!   its children: a child leaves it (in `finish`, or when its node is
//!   dropped) under the list lock before its memory can go, so a child
//!   found in the list under that lock is alive, and so is its task
//!   (`finish` runs before a task is freed).
//! - A child points to its parent without a count of its own: while the
//!   list is non-empty it holds one strong count of its own node
//!   (`keep_alive`), taken when the first child links and released when the
//!   last one leaves. So a spawn and a completion do not both hit the
//!   parent's reference count, and a long chain of nodes is never freed by
//!   a recursive drop.
//! - Attaching a child builds it, then locks only the parent's list, sets
//!   `HAS_CHILDREN` (an RMW, or a load once it is set) and links it. The
//!   cancel's CAS and the attach's RMW are ordered on the same word: either
//!   the cancel sees `HAS_CHILDREN` and walks the list after the attach
//!   released its lock, or the attach sees `CANCELLED` and the child is
//!   born cancelled. A node that never had children skips its list lock.
//! - The walk: under the list lock, each child is flipped (a CAS, and for a
//!   task node a wake: no lock of the child's, as the list lock keeps it
//!   alive), children with children of their own are kept for later, and
//!   then the child is taken out of the list (`LINKED` -> `DETACHED`) as the
//!   last touch. Nodes kept for later are walked after the lock is
//!   released: no recursion, no nested list locks.
//! - `finish` (task completion, scope exit) drops the node's waker and
//!   deadline timer and leaves the parent's list (`FINISHING`), unless a
//!   cancel already took it out (`DETACHED`). A task node the walk
//!   cancelled and detached, with no timer, has nothing left to release:
//!   `finish` is then two loads.
//! - A live node that finishes with children still attached lingers
//!   instead (`LINGERING`, set by an RMW under its own list lock): it stays
//!   in its parent's list and keeps its deadline timer, so an ancestor's
//!   cancel and the deadline still reach the children. Its task may be
//!   freed: a walk whose CAS reads `LINGERING` wakes nothing, and one whose
//!   CAS came first made the node `CANCELLED`, which `finish` reads in the
//!   same RMW and then does not linger. The child whose leave empties the
//!   list (or the walk that does) clears the flag under that lock and
//!   resumes the node: timer, then its own leave, in a loop up the chain.
//! - `deadline` is the effective deadline (min of own and parent's), fixed
//!   at creation: a value, not a timer. A timer is armed only when something
//!   waits in the scope (`check_deadline`), and fires `cancel(Deadline)`.

use std::{
    mem::ManuallyDrop,
    sync::Arc as StdArc,
    task::{Wake, Waker},
    time::Instant,
};

use std::ptr::NonNull;

use super::{Cancelled, Cause};
use crate::cancel::{NodeArc, NodeSlot};
use crate::{
    facade::{
        atomic::{AtomicU8, AtomicUsize, Ordering::*},
        lock, Mutex, UnsafeCell,
    },
    scheduler::Handle,
    task::RawTask,
    time::driver::Registration,
};

const CANCELLED: usize = 1;
const CAUSE_SHIFT: usize = 1;
const ORIGIN_SHIFT: usize = 4;
const CODE_MASK: usize = 0b111;
/// Set with CANCELLED when a reason was stored (under `inner`'s lock,
/// which readers take after seeing the bit): readers without it skip that
/// lock.
const HAS_REASON: usize = 1 << 7;
/// A child has attached at some point (set by the attach, under the list
/// lock): a cancel without it skips the list.
const HAS_CHILDREN: usize = 1 << 8;
/// A deadline timer is registered, or is about to be, or someone else
/// fires this node's deadline: `finish` must take the slow path.
const ARMED: usize = 1 << 9;
/// Set with CANCELLED by a parent's walk, which woke the task without
/// `inner`'s lock (see `finish`).
const WALKED: usize = 1 << 10;
/// Set at creation if the node has a deadline owner or a name: its drop
/// must drop them.
const COLD: usize = 1 << 11;
/// Set by `finish` of a live node whose children are still attached: it
/// stays in its parent's list, with its deadline timer, until the last one
/// leaves (see `linger`). Its task may be gone: a walk that sees this flag
/// wakes nothing.
const LINGERING: usize = 1 << 12;
/// Anything that puts something droppable in the cold fields.
const DROP_COLD: usize = HAS_CHILDREN | HAS_REASON | ARMED | COLD;

/// `link` values: where a node stands with its parent's list.
/// Not in any list (a root, or a scope that never had a parent).
const UNLINKED: u8 = 0;
/// In the parent's list.
const LINKED: u8 = 1;
/// `finish` claimed the unlink: it will lock the parent's list and leave it.
const FINISHING: u8 = 2;
/// A cancel of the parent took the node out of the list: `finish` need
/// not, and must not, touch the parent.
const DETACHED: u8 = 3;

/// `repr(C)`, hot fields first: in its 64-byte aligned block (see
/// `node_arc.rs`), the count and everything up to `parent` share one cache
/// line, which is all a cancel's walk touches of a child, and all a woken,
/// cancelled task's `finish` reads. Spread out as Rust laid them, they took
/// three lines, and the walk missed on each.
#[repr(C)]
pub(crate) struct Node {
    /// Cancellation and flags (see the constants above).
    state: AtomicUsize,
    /// The task that owns the node, woken when it is cancelled; fixed at
    /// creation. Held without a reference: the task calls `finish` before
    /// it is freed, and every wake happens where `finish` cannot have
    /// passed (see `flip` and `cancel_children`).
    task: Option<RawTask>,
    /// Our place in the parent's list; guarded by the parent's `children`.
    links: UnsafeCell<Links>,
    /// `UNLINKED`, `LINKED`, `FINISHING` or `DETACHED`: decides, with one
    /// CAS each, whether `finish` or the parent's cancel removes us from
    /// the parent's list.
    link: AtomicU8,
    /// Set at creation, never changed: the list we are linked into. No
    /// count of its own: the parent stays alive while we are linked (its
    /// list's `keep_alive`), and we are linked until we leave.
    parent: Option<NonNull<Node>>,
    deadline: Option<Instant>,
    /// The ancestor whose own deadline this node inherited (`None` if the
    /// deadline is this node's own, or there is none). One timer on that
    /// ancestor serves its whole subtree: its cancellation flows down.
    ///
    /// This and the fields below are dropped only if the state says they
    /// may hold something (see `Drop`): a finished task node is then freed
    /// without reading its two cold lines.
    deadline_owner: ManuallyDrop<Option<NodeArc>>,
    /// Boxed: names are rare, and the box keeps the node within three
    /// cache lines (its block class is 192 bytes, not 256).
    name: ManuallyDrop<Option<Box<StdArc<str>>>>,
    /// Head of our children list (see the module doc).
    children: ManuallyDrop<Mutex<ChildList>>,
    inner: ManuallyDrop<Mutex<Inner>>,
}

struct ChildList {
    head: Option<NonNull<Node>>,
    len: usize,
    /// A strong count of the node owning this list, held while `len > 0`.
    keep_alive: Option<NodeArc>,
}

// SAFETY: the pointers are to live `Node`s (Send + Sync), only followed
// under the mutex that guards the list.
unsafe impl Send for ChildList {}

#[derive(Default)]
#[repr(C)]
struct Links {
    prev: Option<NonNull<Node>>,
    next: Option<NonNull<Node>>,
}

// SAFETY: `links` is only accessed under the parent's list mutex; `task`
// is a task pointer, only used to wake the task while it is alive.
unsafe impl Sync for Node {}
// SAFETY: as above; every other field is Send.
unsafe impl Send for Node {}

#[derive(Default)]
struct Inner {
    /// Whoever last polled a nested scope (nodes without a task).
    waker: Option<Waker>,
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
        Node::root_in(deadline, name, task, None)
    }

    /// [`Node::root`], placed in `slot` if given (a task's block).
    pub(crate) fn root_in(
        deadline: Option<Instant>,
        name: Option<StdArc<str>>,
        task: Option<RawTask>,
        slot: Option<NodeSlot>,
    ) -> NodeArc {
        place(Node::new(deadline, None, name, None, task), slot)
    }

    /// A live node; `parent: Some` makes it `LINKED` (the caller links it).
    fn new(
        deadline: Option<Instant>,
        deadline_owner: Option<NodeArc>,
        name: Option<StdArc<str>>,
        parent: Option<NonNull<Node>>,
        task: Option<RawTask>,
    ) -> Node {
        // Fields a task node's drop must look at: deadline_owner and name
        // (the waker, reason, timer and children have flags of their own).
        let cold = if deadline_owner.is_some() || name.is_some() {
            COLD
        } else {
            0
        };
        Node {
            state: AtomicUsize::new(cold),
            task,
            parent,
            links: UnsafeCell::new(Links::default()),
            link: AtomicU8::new(if parent.is_some() { LINKED } else { UNLINKED }),
            deadline,
            deadline_owner: ManuallyDrop::new(deadline_owner),
            name: ManuallyDrop::new(name.map(Box::new)),
            children: ManuallyDrop::new(Mutex::new(ChildList {
                head: None,
                len: 0,
                keep_alive: None,
            })),
            inner: ManuallyDrop::new(Mutex::new(Inner::default())),
        }
    }

    pub(crate) fn child(
        parent: &NodeArc,
        own: Option<Instant>,
        name: Option<StdArc<str>>,
        task: Option<RawTask>,
    ) -> NodeArc {
        Node::child_in(parent, own, name, task, None)
    }

    /// [`Node::child`], placed in `slot` if given (a task's block).
    pub(crate) fn child_in(
        parent: &NodeArc,
        own: Option<Instant>,
        name: Option<StdArc<str>>,
        task: Option<RawTask>,
        slot: Option<NodeSlot>,
    ) -> NodeArc {
        let (deadline, deadline_owner) = match (own, parent.deadline) {
            (Some(own), Some(inherited)) if own < inherited => (Some(own), None),
            (_, Some(inherited)) => (Some(inherited), Some(Node::deadline_owner_or_self(parent))),
            (own, None) => (own, None),
        };
        // Build the node before taking the lock: the critical section is
        // then a flag, a state check and a few pointer writes.
        let node = place(
            Node::new(
                deadline,
                deadline_owner,
                name,
                Some(NonNull::from(&**parent)),
                task,
            ),
            slot,
        );
        let ptr = NonNull::new(NodeArc::as_ptr(&node) as *mut Node).expect("non-null");
        let mut list = lock(&parent.children);
        // HAS_CHILDREN and CANCELLED live in one word, and both the cancel
        // (its CAS) and the first attach (this RMW) write it, so one reads
        // the other: if the cancel came first, we read CANCELLED (and its
        // Release publishes what it wrote before) and are born cancelled;
        // if we came first, the cancel reads HAS_CHILDREN and walks the
        // list after we release it. Once the flag is set a load is enough:
        // a value without CANCELLED precedes the cancel's CAS in the word's
        // modification order, so that CAS reads the flag too.
        let mut parent_state = parent.state.load(Acquire);
        if parent_state & HAS_CHILDREN == 0 {
            parent_state = parent.state.fetch_or(HAS_CHILDREN, AcqRel);
        }
        if parent_state & CANCELLED != 0 {
            let origin = (parent_state >> ORIGIN_SHIFT) & CODE_MASK;
            let mut has_reason = 0;
            if parent_state & HAS_REASON != 0 {
                // Stored under this lock before the bit was published.
                let reason = lock(&parent.inner).reason.clone();
                lock(&node.inner).reason = reason;
                has_reason = HAS_REASON;
            }
            // Relaxed: the node is not shared yet; whoever gets it later
            // does so through a lock or a queue. Keeps the flags set at
            // creation (COLD: its drop must drop the owner and the name).
            let flags = node.state.load(Relaxed);
            node.state.store(
                flags | encode(Cause::Parent.code(), origin) | has_reason,
                Relaxed,
            );
        }
        // SAFETY: the node is ours alone until the lock is released, and
        // its links are guarded by this lock from now on.
        node.links.with_mut(|l| unsafe {
            *l = Links {
                prev: None,
                next: list.head,
            }
        });
        if let Some(head) = list.head {
            // SAFETY: `head` is a linked child (alive while linked, see the
            // module doc) and we hold the list lock that guards its links.
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
        this.deadline_owner
            .as_ref()
            .map_or_else(|| this.clone(), NodeArc::clone)
    }

    /// Something else already fires this node's deadline (a `timeout`'s own
    /// timer): no deadline timer of its own is needed.
    pub(crate) fn assume_armed(&self) {
        self.state.fetch_or(ARMED, Relaxed);
    }

    /// One atomic load.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.load(Acquire) & CANCELLED != 0
    }

    #[inline]
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
        self.cancel_encoded(code, code, reason)
    }

    /// Cancels this node and its subtree as its parent's cancellation
    /// (`above`) would when it reached it: cause `Parent`, the same origin
    /// and reason. For code that sees an ancestor cancelled before the
    /// tree's walk has got here, and must not race it with a cause of its
    /// own (the first cancel wins).
    pub(crate) fn cancel_below(&self, above: &Cancelled) -> bool {
        self.cancel_encoded(
            Cause::Parent.code(),
            above.origin.code(),
            above.reason.clone(),
        )
    }

    fn cancel_encoded(&self, code: usize, origin: usize, reason: Option<StdArc<str>>) -> bool {
        let mut wakers = Vec::new();
        let flipped = self.flip(encode(code, origin), &reason, &mut wakers);
        wake_all(&mut wakers);
        let Some(prev) = flipped else {
            return false;
        };
        if prev & HAS_CHILDREN != 0 {
            let below = encode(Cause::Parent.code(), origin);
            let mut stack = Vec::new();
            // Wakes in bulk: from a user thread they check for parked
            // workers once per batch, not per task.
            crate::scheduler::deferred_notify::batch(|| {
                self.cancel_children(below, &reason, &mut stack, &mut wakers);
                while let Some(node) = stack.pop() {
                    node.cancel_children(below, &reason, &mut stack, &mut wakers);
                }
            });
        }
        true
    }

    /// Sets `bits` in the state if it is not cancelled yet: the first
    /// cancel wins. Returns the state it replaced. Tries a live node with
    /// no flags first, so the common case is one CAS and no load.
    fn try_flip(&self, bits: usize) -> Option<usize> {
        let mut current = 0;
        loop {
            if current & CANCELLED != 0 {
                return None;
            }
            // AcqRel: Release publishes what the canceller wrote before
            // (the reason, under `inner`'s lock); Acquire pairs with the
            // attach's RMW of HAS_CHILDREN.
            match self
                .state
                .compare_exchange_weak(current, current | bits, AcqRel, Acquire)
            {
                Ok(_) => return Some(current),
                Err(actual) => current = actual,
            }
        }
    }

    /// Cancels this node alone (if still live), under `inner`'s lock:
    /// stores the reason and wakes the waiter. The owning task is woken at
    /// once, under the lock (`finish` takes it before the task can go,
    /// and marks the node finished); a scope's waker is pushed on `wakers`
    /// to be woken outside any lock. Returns the state it replaced, `None`
    /// if it was already cancelled.
    fn flip(
        &self,
        state: usize,
        reason: &Option<StdArc<str>>,
        wakers: &mut Vec<Waker>,
    ) -> Option<usize> {
        let mut inner = lock(&self.inner);
        let has_reason = if reason.is_some() || inner.reason.is_some() {
            HAS_REASON
        } else {
            0
        };
        let prev = self.try_flip(state | has_reason)?;
        if inner.reason.is_none() {
            // Readers that see HAS_REASON take this lock, held until the
            // reason is in.
            inner.reason = reason.clone();
        }
        // The task is alive while its node is not finished (see `task`).
        #[cfg(feature = "tracing")]
        self.trace_cancel(state, self.task.filter(|_| !inner.finished), &inner.reason);
        match (self.task, &inner.waker) {
            (Some(task), _) if !inner.finished => task.wake_by_ref_synced(),
            (None, Some(waker)) => wakers.push(waker.clone()),
            _ => {}
        }
        Some(prev)
    }

    /// Takes the children of a just-cancelled node out of its list and
    /// cancels each in the same pass, so a wide tree is walked once. Their
    /// `finish` then need not lock this list (every woken child contended
    /// on it). A child already `FINISHING` stays in the list to unlink
    /// itself. Children that have children of their own go on `stack`, to
    /// be walked after this list's lock is released: no recursion, no
    /// nested list locks.
    fn cancel_children(
        &self,
        state: usize,
        reason: &Option<StdArc<str>>,
        stack: &mut Vec<NodeArc>,
        wakers: &mut Vec<Waker>,
    ) {
        let keep_alive = {
            let mut list = lock(&self.children);
            let mut cursor = list.head.take();
            let mut kept_head: Option<NonNull<Node>> = None;
            while let Some(ptr) = cursor {
                // SAFETY: a linked child is alive until it leaves the list,
                // which takes our lock; its links are guarded by our lock.
                let child = unsafe { ptr.as_ref() };
                // SAFETY: as above: we hold the lock guarding `links`.
                cursor = child.links.with(|l| unsafe { (*l).next });
                // The walk chases pointers: each child's line, then its
                // task's header, each a miss (another core wrote them
                // last). Asking for the next child's line and this task's
                // header now lets the two misses overlap.
                if let Some(next) = cursor {
                    crate::prefetch::for_write(next.as_ptr());
                }
                if let Some(task) = child.task {
                    crate::prefetch::for_write(task.header_ptr().as_ptr());
                }
                // Cancelled while its line is in cache. Lock order: a
                // parent's list, then a child's `inner` (nothing takes them
                // the other way round). A child cancelled before is left to
                // that cancel's walk.
                let flipped = match (child.task, reason) {
                    // A task node and no reason to store: the task is alive
                    // while its node is in our list (its `finish`, which
                    // comes before it is freed, leaves the list under our
                    // lock), so a CAS and a wake do, without its lock.
                    (Some(task), None) => child.try_flip(state | WALKED).inspect(|prev| {
                        #[cfg(feature = "tracing")]
                        child.trace_cancel(
                            state,
                            Some(task).filter(|_| prev & LINGERING == 0),
                            &None,
                        );
                        if prev & LINGERING == 0 {
                            task.wake_by_ref_synced();
                        }
                    }),
                    _ => child.flip(state, reason, wakers),
                };
                if flipped.is_some_and(|prev| prev & HAS_CHILDREN != 0) {
                    // SAFETY: alive, as above; the count is the stack's.
                    stack.push(unsafe {
                        NodeArc::increment_strong_count(ptr.as_ptr());
                        NodeArc::from_raw(ptr.as_ptr())
                    });
                }
                // SAFETY: as above.
                child.links.with_mut(|l| unsafe { *l = Links::default() });
                // The last touch: once DETACHED, the child may finish and
                // be freed without waiting for our lock.
                if child
                    .link
                    .compare_exchange(LINKED, DETACHED, AcqRel, Acquire)
                    .is_ok()
                {
                    list.len -= 1;
                } else {
                    // FINISHING: relink it into the list we rebuild; its
                    // `finish` unlinks it once we release the lock.
                    // SAFETY: as above.
                    child.links.with_mut(|l| unsafe {
                        *l = Links {
                            prev: None,
                            next: kept_head,
                        }
                    });
                    if let Some(head) = kept_head {
                        // SAFETY: a child we kept, alive and guarded by us.
                        unsafe { head.as_ref() }
                            .links
                            .with_mut(|l| unsafe { (*l).prev = Some(ptr) });
                    }
                    kept_head = Some(ptr);
                }
            }
            list.head = kept_head;
            if list.len == 0 {
                Some((list.keep_alive.take(), self.take_lingering()))
            } else {
                None
            }
        };
        wake_all(wakers);
        match keep_alive {
            // Lingering for children that are all cancelled now.
            Some((Some(this), true)) => this.resume(),
            // The caller holds a count of `self`, so this is never the last.
            other => drop(other),
        }
    }

    /// Reports a cancel this node just took (`state`: its bits) to
    /// `tracing`; `task` is the node's task if it is alive.
    #[cfg(feature = "tracing")]
    fn trace_cancel(&self, state: usize, task: Option<RawTask>, reason: &Option<StdArc<str>>) {
        let code = |shift: usize| Cause::from_code((state >> shift) & CODE_MASK);
        if let Some(cause) = code(CAUSE_SHIFT) {
            let origin = code(ORIGIN_SHIFT).unwrap_or(cause);
            let reason = reason.as_deref();
            crate::instrument::cancelled(task, cause, origin, reason, self.deadline);
        }
    }

    /// Clears LINGERING, under the list lock, once the list is empty.
    /// Returns true if it was set: the caller resumes the node.
    fn take_lingering(&self) -> bool {
        // Relaxed: set and cleared under the list lock we hold.
        self.state.load(Relaxed) & LINGERING != 0
            && self.state.fetch_and(!LINGERING, Relaxed) & LINGERING != 0
    }

    /// Sets the waker woken when this node is cancelled (a scope's poller).
    pub(crate) fn set_waiter(&self, waker: &Waker) {
        debug_assert!(self.task.is_none(), "a task node wakes its task");
        let mut inner = lock(&self.inner);
        if inner.finished {
            return;
        }
        match &inner.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => inner.waker = Some(waker.clone()),
        }
    }

    pub(crate) fn name(&self) -> Option<&StdArc<str>> {
        self.name.as_deref()
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
        // Relaxed: a hint; the lock and the RMW below decide.
        if this.state.load(Relaxed) & ARMED != 0 {
            return;
        }
        let Some(handle) = handle else { return };
        let mut inner = lock(&this.inner);
        // A finished owner still fires its deadline while it lingers for
        // its children (the waiter is one of its descendants).
        if inner.timer.is_some() || (inner.finished && this.state.load(Relaxed) & LINGERING == 0) {
            return;
        }
        // ARMED before the timer, by an RMW on the state word: a cancel's
        // CAS then either reads it (and `finish` takes the slow path that
        // deregisters the timer) or comes first, and we see CANCELLED
        // here and need no timer.
        if this.state.fetch_or(ARMED, AcqRel) & CANCELLED != 0 {
            return;
        }
        if !Node::register_timer(this, &mut inner, deadline, handle) {
            drop(inner);
            this.cancel(Cause::Deadline, None);
        }
    }

    /// Registers the deadline timer (under `inner`'s lock). False if the
    /// deadline has passed: the caller cancels, outside the lock.
    fn register_timer(
        this: &NodeArc,
        inner: &mut Inner,
        deadline: Instant,
        handle: &Handle,
    ) -> bool {
        let waker = Waker::from(StdArc::new(DeadlineWaker(this.clone())));
        let (shard, _) = handle.timer_shard();
        match handle.time().register(shard, deadline, &waker) {
            Some((reg, _)) => {
                inner.timer = Some((handle.clone(), reg));
                true
            }
            None => false,
        }
    }

    /// The scope or task is over: leave the parent, drop the waker and the
    /// deadline timer. Children stay attached until they finish themselves
    /// (the list keeps this node alive meanwhile).
    pub(crate) fn finish(&self) {
        // The fast path: a task node a parent's walk cancelled (its CAS
        // won, so no locked `flip` will ever wake the task) and detached
        // (the walk's last touch, after its wake), with no timer: there is
        // no waker, no timer and no list to leave. Not marking it finished
        // is safe: nothing that reads the mark can act on a cancelled node
        // (`flip` fails, `check_deadline` returns).
        if self.task.is_some()
            && self.state.load(Acquire) & (WALKED | ARMED) == WALKED
            && self.link.load(Acquire) == DETACHED
        {
            return;
        }
        let lingers =
            self.state.load(Acquire) & (HAS_CHILDREN | CANCELLED) == HAS_CHILDREN && self.linger();
        let mut passed = false;
        let timer = {
            let mut inner = lock(&self.inner);
            if inner.finished {
                // Already left the parent (or lingers), which may be gone
                // by now.
                return;
            }
            inner.finished = true;
            drop(inner.waker.take());
            if lingers {
                passed = !self.take_over_deadline(&mut inner);
                None
            } else {
                inner.timer.take()
            }
        };
        if lingers {
            if passed {
                self.cancel(Cause::Deadline, None);
            }
            return;
        }
        self.depart(timer);
    }

    /// For `finish` of a live node that has had children: if some are still
    /// attached, the node stays in its parent's list and keeps its deadline
    /// timer until the last one leaves ([`Node::resume`]). An ancestor's
    /// cancel and the node's deadline then still reach them through it,
    /// as a Go context reaches the contexts derived from it after the
    /// goroutine that made it returned. Returns true if the node lingers.
    fn linger(&self) -> bool {
        let list = lock(&self.children);
        if list.len == 0 {
            return false;
        }
        // Set under the list lock, where the last child's leave reads it.
        // The RMW also orders us against a parent's walk, which flips us by
        // CAS and wakes our task without our lock. If the walk came first
        // (CANCELLED), it may still be waking the task, and the children
        // are cancelled anyway: finish as usual (leaving the parent's list
        // waits the walk out). If we came first, every later flip sees
        // LINGERING and wakes nothing, so the task may go once we return.
        if self.state.fetch_or(LINGERING, AcqRel) & CANCELLED != 0 {
            self.state.fetch_and(!LINGERING, Relaxed);
            return false;
        }
        drop(list);
        true
    }

    /// A lingering node's deadline was fired by someone else (a `timeout`'s
    /// or `shield`'s own sleep, ARMED with no timer here), who is gone now:
    /// a timer of its own takes over while children remain. False if the
    /// deadline has passed (the caller cancels).
    fn take_over_deadline(&self, inner: &mut Inner) -> bool {
        let Some(deadline) = self.deadline else {
            return true;
        };
        if inner.timer.is_some()
            || self.deadline_owner.is_some()
            || self.state.load(Relaxed) & (ARMED | CANCELLED) != ARMED
        {
            return true;
        }
        let Some(handle) = crate::context::current_handle() else {
            // Outside any runtime no timer can be armed: the children's
            // own await points still notice the deadline once it passes.
            return true;
        };
        // SAFETY: every node lives in a `NodeArc` (`Node::new` is private
        // to the constructors that wrap it), and `self` is alive; the
        // count taken here is the new reference's.
        let this = unsafe {
            NodeArc::increment_strong_count(self);
            NodeArc::from_raw(self)
        };
        Node::register_timer(&this, inner, deadline, &handle)
    }

    /// The last child of a lingering node has left: does what its `finish`
    /// left undone.
    fn resume(&self) {
        let timer = lock(&self.inner).timer.take();
        self.depart(timer);
    }

    /// Deregisters `timer` and leaves the parent's list; if that leaves a
    /// lingering parent childless, resumes it, and so on up. A loop, not
    /// recursion: a chain of lingering nodes can be long.
    fn depart(&self, mut timer: Option<(Handle, Registration)>) {
        let mut resumed: Option<NodeArc> = None;
        loop {
            if let Some((handle, reg)) = timer.take() {
                handle.time().deregister(reg);
            }
            let node = resumed.as_deref().unwrap_or(self);
            let Some(parent) = node.leave_parent() else {
                return;
            };
            timer = lock(&parent.inner).timer.take();
            resumed = Some(parent);
        }
    }

    /// Takes this node out of its parent's list, unless a cancel already
    /// did (`DETACHED`) or it never was in one. Returns the parent (with
    /// its list's count of it) if we were the last child of a lingering
    /// parent: the caller resumes it (see [`Node::depart`]).
    #[must_use]
    fn leave_parent(&self) -> Option<NodeArc> {
        let parent = self.parent?;
        if self
            .link
            .compare_exchange(LINKED, FINISHING, AcqRel, Acquire)
            .is_err()
        {
            // DETACHED, or already left.
            return None;
        }
        // SAFETY: we are still in the parent's list (a cancel leaves a
        // FINISHING child there), so the list holds a count of the parent
        // (`keep_alive`).
        let parent = unsafe { parent.as_ref() };
        let parent_ref = {
            let mut list = lock(&parent.children);
            // SAFETY: our links are guarded by the parent's list lock, held
            // here; linked neighbours are alive (see the module doc).
            // SAFETY: FINISHING, so still in the list (a cancel relinks a
            // FINISHING child): our links are guarded by the parent's list
            // lock, held here, and linked neighbours are alive (see the
            // module doc).
            self.links.with_mut(|l| unsafe {
                let links = std::mem::take(&mut *l);
                match links.prev {
                    Some(prev) => prev.as_ref().links.with_mut(|p| (*p).next = links.next),
                    None => list.head = links.next,
                }
                if let Some(next) = links.next {
                    next.as_ref().links.with_mut(|n| (*n).prev = links.prev);
                }
            });
            list.len -= 1;
            if list.len == 0 {
                Some((list.keep_alive.take(), parent.take_lingering()))
            } else {
                None
            }
        };
        match parent_ref {
            Some((Some(parent), true)) => Some(parent),
            // Released outside the lock: it may be the parent's last count.
            other => {
                drop(other);
                None
            }
        }
    }

    /// Children currently attached (for tests and metrics).
    pub(crate) fn child_count(&self) -> usize {
        lock(&self.children).len
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A node dropped without `finish` (an owner that never finished
        // it) must still leave the list before its memory goes: the list
        // holds no count of it. A load first: most nodes have left (or
        // were detached) and need no RMW.
        if self.link.load(Acquire) == LINKED {
            self.depart(None);
        }
        // A task node with none of the flags holds nothing in its cold
        // fields: no deadline owner or name (COLD), no children's list
        // count (HAS_CHILDREN), no reason (HAS_REASON), no timer (ARMED),
        // and never a waker (task nodes wake their task). Under loom every
        // field is dropped, so loom sees every drop.
        let state = self.state.load(Relaxed);
        if self.task.is_some() && state & DROP_COLD == 0 && !cfg!(weft_loom) {
            return;
        }
        // SAFETY: dropped once, here; the node is not used afterwards.
        unsafe {
            ManuallyDrop::drop(&mut self.deadline_owner);
            ManuallyDrop::drop(&mut self.name);
            ManuallyDrop::drop(&mut self.children);
            ManuallyDrop::drop(&mut self.inner);
        }
    }
}

/// A new node's first reference: in `slot`, or in a block of its own.
fn place(node: Node, slot: Option<NodeSlot>) -> NodeArc {
    match slot {
        Some(slot) => slot.into_arc(node),
        None => NodeArc::new(node),
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

#[cfg(all(test, not(weft_loom)))]
mod layout_tests {
    use super::*;

    /// The walk's and the woken task's fields sit in the node block's first
    /// cache line (the count takes its first 8 bytes).
    #[test]
    fn the_hot_fields_fit_in_the_first_line() {
        let end = std::mem::offset_of!(Node, parent) + std::mem::size_of::<Option<NonNull<Node>>>();
        assert!(8 + end <= 64, "hot fields end at {}", 8 + end);
        for offset in [
            std::mem::offset_of!(Node, state),
            std::mem::offset_of!(Node, task),
            std::mem::offset_of!(Node, links),
            std::mem::offset_of!(Node, link),
        ] {
            assert!(offset < std::mem::offset_of!(Node, parent));
        }
        // Three lines in all: 100,000 nodes in 256-byte blocks overflowed
        // the block caches into malloc, whose coalescing frees then cost
        // the workers more than the walk saved.
        assert!(8 + std::mem::size_of::<Node>() <= 192);
        // And the blocks really are line-aligned, the count first.
        let nodes: Vec<_> = (0..64).map(|_| Node::root(None, None, None)).collect();
        for node in &nodes {
            assert_eq!((NodeArc::as_ptr(node) as usize - 8) % 64, 0);
        }
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use super::*;

    fn parts(c: Option<Cancelled>) -> (Cause, Cause, Option<String>) {
        let c = c.expect("cancelled");
        (c.cause(), c.origin(), c.reason().map(str::to_owned))
    }

    /// A node cancelled ahead of its parent's walk gets what the walk would
    /// have given it, and so does its subtree; the walk then changes
    /// nothing (the first cancel wins).
    #[test]
    fn cancel_below_gives_what_the_parents_walk_would() {
        let top = Node::root(None, None, None);
        let mid = Node::child(&top, None, None, None);
        let low = Node::child(&mid, None, None, None);
        let above = Cancelled {
            cause: Cause::Explicit,
            origin: Cause::Deadline,
            reason: Some(StdArc::from("stop")),
        };
        assert!(mid.cancel_below(&above));
        assert!(!mid.cancel_below(&above), "the first cancel wins");
        let expected = (Cause::Parent, Cause::Deadline, Some("stop".to_owned()));
        assert_eq!(parts(mid.cancelled()), expected);
        assert_eq!(parts(low.cancelled()), expected);
        assert!(top.cancelled().is_none(), "nothing above is touched");
        assert!(top.cancel(Cause::Explicit, Some(StdArc::from("later"))));
        assert_eq!(parts(mid.cancelled()), expected);
        assert_eq!(parts(low.cancelled()), expected);
    }
}
