//! Cancellation and deadlines, native to every task.
//!
//! Every task is a node of one cancellation tree (`node.rs` holds the
//! protocol). A task spawned inside a task (or inside a nested scope) is a
//! child of the innermost scope there; one spawned from outside any task is
//! a root. The rules, after Go's `context` and Trio's cancel scopes:
//!
//! 1. **Deadlines are values.** A node's effective deadline is
//!    `min(own, parent's)`, fixed when it is created. A timer is armed only
//!    when something waits in the scope, so an unexpired deadline that never
//!    waits costs no timer.
//! 2. **Cancellation flows down, once.** Cancelling a node cancels its whole
//!    subtree in O(subtree), each node once, with the first [`Cause`] kept
//!    and at most one wake per waiting task. [`is_cancelled`] is one atomic
//!    load (plus a coarse clock read in a live scope with a deadline).
//! 3. **Level-triggered.** Once a scope is cancelled, every weft await point
//!    in it — [`sleep`](crate::time::sleep), [`JoinHandle`](crate::JoinHandle),
//!    [`cancelled`] — completes promptly with the cancellation, and keeps
//!    doing so until the code leaves the scope. Errors: [`Cancelled`] (with
//!    its cause), or for io an `io::Error` of kind `TimedOut` (deadline) or
//!    `Interrupted` whose inner error is the `Cancelled`.
//! 4. **Scopes inside a task.** [`timeout`](crate::time::timeout) opens a
//!    scope with its own deadline; [`scope`] one that can be cancelled
//!    through a [`CancelHandle`]; [`shield`] one that ignores outer
//!    cancellation but is bounded by its own deadline;
//!    [`task::Builder::detached`](crate::task::Builder::detached) spawns with
//!    no parent (Go's `WithoutCancel`).
//! 5. **Groups.** [`TaskGroup`] spawns children into its own scope and
//!    cancels what is left when dropped, or when one child fails; joining
//!    it waits for its children, cancelling them first if the joiner is
//!    cancelled (a Trio nursery).
//! 6. **Foreign futures.** [`cancellable`] makes any future an await point
//!    of the scope; [`current`] hands a task its own scope's
//!    [`CancelHandle`].
//! 7. **Over the wire.** [`wire`] turns the remaining budget into gRPC's
//!    `grpc-timeout` and back.
//!
//! `abort()` stays the hard stop: it drops the future at its next schedule
//! whatever the future does. `cancel()` is cooperative: the task sees it at
//! its next await point and can clean up.

mod cancellable;
mod error;
mod group;
pub(crate) mod node;
mod node_arc;
mod scope;
pub mod wire;

use std::{
    future::Future,
    mem::ManuallyDrop,
    pin::Pin,
    sync::Arc as StdArc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use self::node::Node;
pub(crate) use self::node_arc::{NodeArc, NodeSlot, SlotLayout};
pub use self::{
    cancellable::{cancellable, Cancellable, CancellableExt},
    error::{Cancelled, Cause},
    group::{Outcome, TaskGroup},
    scope::{lazy_scope, scope, shield, CancelHandle, LazyScope, Scope, Shield},
};
use crate::{context, scheduler::Handle, task::RawTask};

/// Runs `f` with the current scope, creating the current task's node if
/// the task has none yet. `None` outside any task and scope.
pub(crate) fn with_current_scope<R>(f: impl FnOnce(Option<&NodeArc>) -> R) -> R {
    let pending = context::current_pending();
    if !pending.is_null() {
        // SAFETY: set by `context::with_pending` from a pinned `Timeout`
        // being polled on this thread, for the duration of that poll.
        let node = unsafe { &*pending }.materialize();
        return f(Some(&node));
    }
    let ptr = context::current_scope_ptr();
    if !ptr.is_null() {
        // SAFETY: the pointer is set from a live `NodeArc` (the task's
        // node, freed only with the task, or a scope future's node) for the
        // duration of the poll that is running this code.
        let node = ManuallyDrop::new(unsafe { NodeArc::from_raw(ptr) });
        return f(Some(&node));
    }
    match context::current_task() {
        Some(task) => {
            let node = task.node_or_init();
            context::set_scope(NodeArc::as_ptr(&node));
            f(Some(&node))
        }
        None => f(None),
    }
}

/// A `timeout`'s scope before its node exists.
///
/// Most timeouts wrap code that never spawns or asks for its scope; for
/// them the timeout's own timer is all that is needed, and creating a node
/// (an allocation and a link into the parent) is wasted. So a `Timeout`
/// polls its future with itself as the *pending* scope: anything that needs
/// the current scope (a spawn, `cancelled()`, `scope`, a `TaskGroup`)
/// creates the node then, under the right parent, and from then on the
/// timeout is an ordinary scope. Await points in a timeout whose node was
/// never created see the enclosing scope; the timeout's deadline still ends
/// them, by dropping the future. A [`lazy_scope`] is the same without a
/// deadline.
pub(crate) struct PendingScope {
    deadline: Option<Instant>,
    /// The pending scope this one is nested in (a `*const PendingScope` as
    /// an address, so the `Timeout` stays `Send`); valid during the poll.
    prev: std::cell::Cell<usize>,
    node: std::cell::Cell<Option<NodeArc>>,
}

impl std::fmt::Debug for PendingScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingScope")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl PendingScope {
    pub(crate) fn new(deadline: Option<Instant>) -> PendingScope {
        PendingScope {
            deadline,
            prev: std::cell::Cell::new(0),
            node: std::cell::Cell::new(None),
        }
    }

    pub(crate) fn set_prev(&self, prev: *const PendingScope) {
        self.prev.set(prev as usize);
    }

    /// The node, if created during the last poll.
    pub(crate) fn take_node(&self) -> Option<NodeArc> {
        self.node.take()
    }

    /// Creates the node under the enclosing scope (creating enclosing
    /// pending scopes first) and makes it the current scope.
    fn materialize(&self) -> NodeArc {
        context::set_pending(self.prev.get() as *const PendingScope);
        let task = context::current_task();
        let node = with_current_scope(|parent| match parent {
            Some(parent) => Node::child(parent, self.deadline, None, None),
            None => Node::root(self.deadline, None, None),
        });
        if self.deadline.is_some() && node.deadline() == self.deadline {
            // The timeout's own timer fires this deadline.
            node.assume_armed();
        }
        if let Some(task) = task {
            node.set_waiter(&crate::task::waker::waker_for(task));
        }
        context::set_scope(NodeArc::as_ptr(&node));
        context::set_pending(std::ptr::null());
        self.node.set(Some(node.clone()));
        node
    }

    /// The earliest deadline of this pending scope and those it is nested
    /// in (`None`: none of them has one).
    fn deadline_chain(&self) -> Option<Instant> {
        let prev = self.prev.get() as *const PendingScope;
        if prev.is_null() {
            return self.deadline;
        }
        // SAFETY: as in `with_current_scope`: enclosing pending scopes are
        // being polled further up this thread's stack.
        let outer = unsafe { &*prev }.deadline_chain();
        match (self.deadline, outer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The scope's cancellation, if any, after noticing a passed deadline.
/// Await points call it first; when they are about to wait, it also arms the
/// scope's deadline timer.
///
/// Every await point calls it once or twice per poll, so the common cases
/// are inlined: no scope, or a live scope without a deadline (a
/// thread-local read and one atomic load). The rest is out of line.
#[inline]
pub(crate) fn poll_cancelled(handle: Option<&Handle>, will_wait: bool) -> Option<Cancelled> {
    let ptr = context::current_scope_ptr();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as in `with_current_scope`.
    let node = unsafe { &*ptr };
    // The state first: a woken, cancelled task reads only that line.
    if !node.is_cancelled() && node.deadline().is_none() {
        return None;
    }
    poll_cancelled_slow(ptr, handle, will_wait)
}

/// [`poll_cancelled`] in a cancelled scope or one with a deadline.
#[inline(never)]
fn poll_cancelled_slow(
    ptr: *const Node,
    handle: Option<&Handle>,
    will_wait: bool,
) -> Option<Cancelled> {
    // SAFETY: as in `with_current_scope`.
    let node = ManuallyDrop::new(unsafe { NodeArc::from_raw(ptr) });
    // The state first: a woken, cancelled task reads only that line.
    if !node.is_cancelled() && node.deadline().is_some() {
        if !will_wait {
            // A checkpoint that does not wait arms no timer.
            if node
                .deadline()
                .is_some_and(|d| !crate::time::certainly_before(d) && Instant::now() >= d)
            {
                Node::check_deadline(&node, None);
            }
            return node.cancelled();
        }
        let owned;
        let handle = match handle {
            Some(h) => Some(h),
            None => {
                owned = context::current_handle();
                owned.as_ref()
            }
        };
        Node::check_deadline(&node, handle);
    }
    node.cancelled()
}

/// Options of a spawn that concern the tree.
#[derive(Default, Clone)]
pub(crate) struct SpawnOptions {
    pub(crate) deadline: Option<Instant>,
    pub(crate) detached: bool,
    pub(crate) name: Option<StdArc<str>>,
    /// Spawn under this scope instead of the current one (task groups).
    pub(crate) parent: Option<NodeArc>,
}

/// Allocates a task about to be spawned with `alloc` and gives it its
/// node, if it needs one. `alloc(true)` is asked for room for the node in
/// the task's block; it returns the task and that room, if it made it.
///
/// Inlined, with the two below, into each spawn path, so the options fold
/// into it: out of line, a `task::Builder` spawn without options cost
/// about 5% more than `weft::spawn` doing the same work.
#[inline(always)]
pub(crate) fn spawn_in_tree<T>(
    opts: &SpawnOptions,
    alloc: impl FnOnce(bool) -> (T, RawTask, Option<NodeSlot>),
) -> T {
    if let Some(parent) = &opts.parent {
        return spawn_child(parent, opts, alloc);
    }
    if opts.detached {
        return spawn_root(opts, alloc);
    }
    with_current_scope(|parent| match parent {
        Some(parent) => spawn_child(parent, opts, alloc),
        None => spawn_root(opts, alloc),
    })
}

#[inline(always)]
fn spawn_child<T>(
    parent: &NodeArc,
    opts: &SpawnOptions,
    alloc: impl FnOnce(bool) -> (T, RawTask, Option<NodeSlot>),
) -> T {
    let (spawned, task, slot) = alloc(true);
    let node = Node::child_in(parent, opts.deadline, opts.name.clone(), Some(task), slot);
    task.header().set_node_unshared(node);
    spawned
}

/// A task with no parent: a node only if it has something to keep (a
/// deadline or a name); otherwise one is made when first needed.
#[inline(always)]
fn spawn_root<T>(
    opts: &SpawnOptions,
    alloc: impl FnOnce(bool) -> (T, RawTask, Option<NodeSlot>),
) -> T {
    let needs_node = opts.deadline.is_some() || opts.name.is_some();
    let (spawned, task, slot) = alloc(needs_node);
    if needs_node {
        let node = Node::root_in(opts.deadline, opts.name.clone(), Some(task), slot);
        task.header().set_node_unshared(node);
    }
    spawned
}

/// True if the current scope is cancelled or its deadline has passed
/// (false outside any task).
///
/// One atomic load in a scope without a deadline; in a scope with one that
/// is not cancelled yet, also a read of the coarse clock (a few ns; the
/// precise clock only within a few ms of the deadline). A passed deadline
/// found this way cancels the scope, as [`check`] does, so the await
/// points and the tasks spawned in it see it too.
pub fn is_cancelled() -> bool {
    let ptr = context::current_scope_ptr();
    if ptr.is_null() {
        return false;
    }
    // SAFETY: as in `with_current_scope`.
    let node = unsafe { &*ptr };
    if node.is_cancelled() {
        return true;
    }
    match node.deadline() {
        None => false,
        Some(d) if crate::time::certainly_before(d) || Instant::now() < d => false,
        Some(_) => {
            // SAFETY: as in `with_current_scope`.
            let node = ManuallyDrop::new(unsafe { NodeArc::from_raw(ptr) });
            Node::check_deadline(&node, None);
            true
        }
    }
}

/// A handle to the current scope (the task's own node, or the innermost
/// `timeout`, `scope` or `shield` it is in), so code can cancel its own
/// subtree without having been given a handle: cancelling it makes every
/// await point in the scope fail and cancels every task spawned in it.
/// `None` outside any task.
///
/// ```
/// # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// # rt.block_on(rt.spawn(async {
/// let me = weft::cancel::current().expect("inside a task");
/// let child = weft::spawn(weft::cancel::cancelled());
/// me.cancel_with("done here");
/// assert!(weft::cancel::is_cancelled());
/// // Our own await points fail now; inside a shield we can still collect
/// // the child, which saw the same cancellation.
/// let limit = std::time::Duration::from_secs(5);
/// let seen = weft::cancel::shield(limit, child).await.unwrap().unwrap();
/// assert_eq!(seen.reason(), Some("done here"));
/// # })).unwrap();
/// ```
pub fn current() -> Option<CancelHandle> {
    with_current_scope(|scope| scope.map(|node| CancelHandle { node: node.clone() }))
}

/// `Err` if the current scope is cancelled or its deadline has passed: a
/// checkpoint for loops that never reach an await point.
#[inline]
pub fn check() -> Result<(), Cancelled> {
    match poll_cancelled(None, false) {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// The current scope's effective deadline (`None`: no deadline, or outside
/// any task).
pub fn deadline() -> Option<Instant> {
    let ptr = context::current_scope_ptr();
    let scope = if ptr.is_null() {
        None
    } else {
        // SAFETY: as in `with_current_scope`.
        unsafe { &*ptr }.deadline()
    };
    let pending = context::current_pending();
    if pending.is_null() {
        return scope;
    }
    // SAFETY: as in `with_current_scope`.
    match (scope, unsafe { &*pending }.deadline_chain()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The deadline of the current scope's node, without enclosing timeouts
/// whose node does not exist (those end their futures themselves). This is
/// what io_uring links to a kernel timeout.
pub(crate) fn scope_deadline() -> Option<Instant> {
    let ptr = context::current_scope_ptr();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as in `with_current_scope`.
    unsafe { &*ptr }.deadline()
}

/// Time left until the current scope's deadline (zero once it passed).
pub fn remaining() -> Option<Duration> {
    deadline().map(|d| d.saturating_duration_since(Instant::now()))
}

/// The current task's name, from `task::Builder::name`.
pub fn task_name() -> Option<StdArc<str>> {
    let task = context::current_task()?;
    task.header().node().and_then(|n| n.name().cloned())
}

/// Completes when the current scope is cancelled, with why.
///
/// Outside any task (e.g. directly in `block_on`) nothing can cancel it and
/// it never completes.
pub fn cancelled() -> WaitCancelled {
    WaitCancelled { _priv: () }
}

/// The future returned by [`cancelled`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct WaitCancelled {
    _priv: (),
}

impl Future for WaitCancelled {
    type Output = Cancelled;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Cancelled> {
        // Make sure the task has a node the canceller can reach and that
        // wakes this task (its waiter) when cancelled.
        with_current_scope(|_| ());
        match poll_cancelled(None, true) {
            Some(c) => Poll::Ready(c),
            None => {
                crate::runtime::dump::awaiting(
                    cx.waker(),
                    crate::runtime::dump::Awaiting::Cancelled,
                );
                Poll::Pending
            }
        }
    }
}
