//! One node of the cancellation tree.
//!
//! # Protocol
//! - `state` is 0 while live; cancelling stores `CANCELLED | cause | origin`
//!   by one CAS from 0, so the first cause wins and each node is cancelled
//!   (and wakes its waiter) at most once.
//! - `inner` (a mutex) holds the children, the waiter, the reason, the
//!   parent link and the deadline timer. Attaching a child locks only the
//!   parent (the child is built under that lock, already linked); cancelling
//!   locks one node at a time to copy its children out, then cancels them
//!   from an explicit stack (no recursion, no nested locks). So a child
//!   attached concurrently with a cancel is either in the copied list or
//!   sees the parent's CANCELLED under the lock and is born cancelled.
//! - `finish` (task completion, scope exit) detaches the node from its
//!   parent, drops its waiter and disarms its deadline timer, so a
//!   long-lived parent does not accumulate finished children.
//! - `deadline` is the effective deadline (min of own and parent's), fixed
//!   at creation: a value, not a timer. A timer is armed only when something
//!   waits in the scope (`arm_deadline`), and fires `cancel(Deadline)`.

use std::{
    sync::Arc as StdArc,
    task::{Wake, Waker},
    time::Instant,
};

use slab::Slab;

use super::{Cancelled, Cause};
use crate::{
    scheduler::Handle,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::*},
        lock, Arc, Mutex,
    },
    task::RawTask,
    time::driver::Registration,
};

const CANCELLED: usize = 1;
const CAUSE_SHIFT: usize = 1;
const ORIGIN_SHIFT: usize = 4;
const CODE_MASK: usize = 0b111;

pub(crate) struct Node {
    state: AtomicUsize,
    /// A deadline timer is registered (or the deadline already fired):
    /// lets await points skip the lock on every poll.
    armed: AtomicBool,
    deadline: Option<Instant>,
    /// The ancestor whose own deadline this node inherited (`None` if the
    /// deadline is this node's own, or there is none). One timer on that
    /// ancestor serves its whole subtree: its cancellation flows down.
    deadline_owner: Option<Arc<Node>>,
    name: Option<StdArc<str>>,
    inner: Mutex<Inner>,
}

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
    children: Slab<Arc<Node>>,
    waiter: Option<Waiter>,
    reason: Option<StdArc<str>>,
    parent: Option<(Arc<Node>, usize)>,
    timer: Option<(Handle, Registration)>,
    finished: bool,
}

impl Node {
    /// A node with no parent (a root task, `detached`, or `shield`).
    pub(crate) fn root(deadline: Option<Instant>, name: Option<StdArc<str>>) -> Arc<Node> {
        Arc::new(Node {
            state: AtomicUsize::new(0),
            armed: AtomicBool::new(false),
            deadline,
            deadline_owner: None,
            name,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// A node under `parent`, with effective deadline `min(own, parent's)`.
    /// Born cancelled (cause `Parent`) if the parent already is.
    pub(crate) fn child(
        parent: &Arc<Node>,
        own: Option<Instant>,
        name: Option<StdArc<str>>,
    ) -> Arc<Node> {
        let (deadline, deadline_owner) = match (own, parent.deadline) {
            (Some(own), Some(inherited)) if own < inherited => (Some(own), None),
            (_, Some(inherited)) => (Some(inherited), Some(Node::deadline_owner_or_self(parent))),
            (own, None) => (own, None),
        };
        let mut guard = lock(&parent.inner);
        // Read under the parent's lock: `cancel` sets the state before it
        // takes this lock to copy the children, so either we see it here or
        // the canceller sees us in the list.
        let parent_state = parent.state.load(Acquire);
        let (state, reason) = if parent_state & CANCELLED != 0 {
            let origin = (parent_state >> ORIGIN_SHIFT) & CODE_MASK;
            (encode(Cause::Parent.code(), origin), guard.reason.clone())
        } else {
            (0, None)
        };
        let entry = guard.children.vacant_entry();
        let node = Arc::new(Node {
            state: AtomicUsize::new(state),
            armed: AtomicBool::new(false),
            deadline,
            deadline_owner,
            name,
            inner: Mutex::new(Inner {
                reason,
                parent: Some((parent.clone(), entry.key())),
                ..Inner::default()
            }),
        });
        entry.insert(node.clone());
        node
    }

    fn deadline_owner_or_self(this: &Arc<Node>) -> Arc<Node> {
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
        let reason = lock(&self.inner).reason.clone();
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
        if self
            .state
            .compare_exchange(0, encode(code, code), AcqRel, Acquire)
            .is_err()
        {
            return false;
        }
        let children = self.take_wake(reason.clone());
        let mut stack = children;
        while let Some(node) = stack.pop() {
            if node
                .state
                .compare_exchange(0, encode(Cause::Parent.code(), code), AcqRel, Acquire)
                .is_ok()
            {
                stack.extend(node.take_wake(reason.clone()));
            }
        }
        true
    }

    /// After this node's state flipped: stores the reason, wakes its waiter
    /// once, and returns its children to cancel next.
    fn take_wake(&self, reason: Option<StdArc<str>>) -> Vec<Arc<Node>> {
        let (children, waiter) = {
            let mut inner = lock(&self.inner);
            if inner.reason.is_none() {
                inner.reason = reason;
            }
            let children: Vec<_> = inner.children.iter().map(|(_, c)| c.clone()).collect();
            let waker = match &inner.waiter {
                // Under the lock: `finish` clears it before the task can go.
                Some(Waiter::Task(task)) => {
                    task.wake_by_ref();
                    None
                }
                Some(Waiter::Waker(waker)) => Some(waker.clone()),
                None => None,
            };
            (children, waker)
        };
        if let Some(waker) = waiter {
            waker.wake();
        }
        children
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

    /// Makes `task` (which owns this node) the one woken on cancellation.
    pub(crate) fn set_task(&self, task: RawTask) {
        let mut inner = lock(&self.inner);
        if !inner.finished {
            inner.waiter = Some(Waiter::Task(task));
        }
    }

    pub(crate) fn name(&self) -> Option<&StdArc<str>> {
        self.name.as_ref()
    }

    /// Cancels with `Deadline` if the deadline has passed; otherwise makes
    /// sure a timer will do so. Called by await points about to wait.
    pub(crate) fn check_deadline(this: &Arc<Self>, handle: Option<&Handle>) {
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
        let (parent, waiter, timer) = {
            let mut inner = lock(&self.inner);
            inner.finished = true;
            (inner.parent.take(), inner.waiter.take(), inner.timer.take())
        };
        drop(waiter);
        if let Some((handle, reg)) = timer {
            handle.time().deregister(reg);
        }
        if let Some((parent, key)) = parent {
            let removed = {
                let mut p = lock(&parent.inner);
                p.children.try_remove(key)
            };
            drop(removed);
        }
    }

    /// Children currently attached (for tests and metrics).
    pub(crate) fn child_count(&self) -> usize {
        lock(&self.inner).children.len()
    }
}

fn encode(cause: usize, origin: usize) -> usize {
    CANCELLED | (cause << CAUSE_SHIFT) | (origin << ORIGIN_SHIFT)
}

/// The waker of a scope's deadline timer: firing cancels the scope.
struct DeadlineWaker(Arc<Node>);

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
