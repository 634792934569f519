//! Internals exposed to the loom models in `loom-tests/` (only under
//! `--cfg weft_loom`) and to the shuttle tests in `shuttle-tests/` (under
//! `--cfg weft_shuttle`). Everything here drives the real task and parking
//! code; only the scheduler around a task is replaced by a queue.

use std::{collections::VecDeque, future::Future};

use crate::scheduler::{idle, lifo, park};
use crate::{
    facade::{lock, Arc, Mutex},
    task::{self, Id, JoinHandle, Notified, OwnedTasks, RawTask, Schedule, Task},
};

/// A scheduler that queues notifications and runs them when told to, with
/// the runtime's real task registry.
#[derive(Clone)]
pub struct MockScheduler {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<VecDeque<Notified>>,
    owned: OwnedTasks,
}

impl Default for MockScheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MockScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockScheduler").finish_non_exhaustive()
    }
}

impl MockScheduler {
    /// An empty scheduler.
    pub fn new() -> Self {
        MockScheduler {
            inner: Arc::new(Inner {
                queue: Mutex::new(VecDeque::new()),
                owned: OwnedTasks::new(1),
            }),
        }
    }

    /// Spawns a task: registered, then queued.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, notified, join, _no_slot) = task::new_task(
            future,
            self.clone(),
            Id::next(),
            false,
            std::panic::Location::caller(),
        );
        if let Some(notified) = self.inner.owned.bind(task, notified) {
            self.schedule(notified);
        }
        join
    }

    /// Polls the next queued task; false if the queue was empty.
    pub fn run_one(&self) -> bool {
        let next = lock(&self.inner.queue).pop_front();
        match next {
            Some(task) => {
                task.run();
                true
            }
            None => false,
        }
    }

    /// Polls until the queue is empty.
    pub fn run_all(&self) {
        while self.run_one() {}
    }

    /// Tasks registered and not finished.
    pub fn alive(&self) -> usize {
        self.inner.owned.len()
    }

    /// Runtime shutdown: closes the registry, cancels every task, drops the queue.
    pub fn shutdown(&self) {
        self.inner.owned.close_and_shutdown_all();
        let drained: Vec<_> = lock(&self.inner.queue).drain(..).collect();
        drop(drained);
    }
}

impl Schedule for MockScheduler {
    fn schedule(&self, task: Notified) {
        lock(&self.inner.queue).push_back(task);
    }

    fn release(&self, task: RawTask) -> Option<Task> {
        self.inner.owned.remove(task)
    }
}

/// The scheduler's idle-worker accounting (see `scheduler/idle.rs`).
#[derive(Debug)]
pub struct Idle(idle::Idle);

impl Idle {
    /// Accounting for `workers` workers, all unparked.
    pub fn new(workers: usize) -> Idle {
        Idle(idle::Idle::new(workers))
    }
    /// See `Idle::worker_to_notify`.
    pub fn worker_to_notify(&self) -> Option<usize> {
        self.0.worker_to_notify()
    }
    /// See `Idle::try_transition_to_searching`.
    pub fn try_transition_to_searching(&self) -> bool {
        self.0.try_transition_to_searching()
    }
    /// See `Idle::transition_from_searching`.
    pub fn transition_from_searching(&self) -> bool {
        self.0.transition_from_searching()
    }
    /// See `Idle::transition_worker_to_parked`.
    pub fn transition_worker_to_parked(&self, worker: usize, was_searching: bool) -> bool {
        self.0.transition_worker_to_parked(worker, was_searching)
    }
    /// See `Idle::unpark_self`.
    pub fn unpark_self(&self, worker: usize) -> bool {
        self.0.unpark_self(worker)
    }
}

/// A worker's parker (see `scheduler/park.rs`).
#[derive(Debug)]
pub struct Parker(park::Parker);

/// The waking side of a [`Parker`].
#[derive(Debug, Clone)]
pub struct Unparker(park::Unparker);

impl Default for Parker {
    fn default() -> Self {
        Self::new()
    }
}

impl Parker {
    /// A parker with no token.
    pub fn new() -> Parker {
        Parker(park::Parker::new())
    }
    /// Its waking side.
    pub fn unparker(&self) -> Unparker {
        Unparker(self.0.unparker())
    }
    /// Parks until unparked (loom has no time, so no deadline).
    pub fn park(&self, deadline: Option<std::time::Instant>) {
        self.0.park(deadline)
    }
    /// A parker whose thread blocks in an io driver, woken by `hook` (see
    /// `Parker::with_wake_hook`; the runtime's hook is `Remote::wake`).
    pub fn with_wake_hook(hook: impl Fn() + Send + Sync + 'static) -> Parker {
        Parker(park::Parker::with_wake_hook(std::sync::Arc::new(hook)))
    }
    /// Parks by calling `wait` (the driver's blocking wait) unless a token
    /// is pending (see `Parker::park_with`). loom has no time, so no
    /// deadline: a wait that ends early is modelled by the wait itself.
    pub fn park_with(&self, wait: impl FnOnce()) {
        self.0.park_with(None, |_deadline| wait())
    }
}

impl Unparker {
    /// Wakes the parker or leaves it a token.
    pub fn unpark(&self) {
        self.0.unpark()
    }
}

/// A current-thread `block_on` future's wake flag (see
/// `scheduler/current_thread.rs`).
#[derive(Debug)]
pub struct BlockOnFlag(crate::scheduler::current_thread::WakeFlag);

impl Default for BlockOnFlag {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockOnFlag {
    /// Set, as for the first poll.
    pub fn new() -> BlockOnFlag {
        BlockOnFlag(crate::scheduler::current_thread::WakeFlag::new())
    }
    /// The waker: sets the flag, unparks each of `unparkers`.
    pub fn wake(&self, unparkers: &[&Unparker]) {
        let inner: Vec<&park::Unparker> = unparkers.iter().map(|u| &u.0).collect();
        self.0.wake(&inner)
    }
    /// Before a poll: clears it, true if it was set.
    pub fn take(&self) -> bool {
        self.0.take()
    }
    /// Before a park: true if set.
    pub fn is_set(&self) -> bool {
        self.0.is_set()
    }
}

/// A node of the cancellation tree (see `cancel/node.rs`).
#[derive(Debug, Clone)]
pub struct CancelNode(crate::cancel::NodeArc);

impl CancelNode {
    /// A root node with no deadline.
    pub fn root() -> CancelNode {
        CancelNode(crate::cancel::node::Node::root(None, None, None))
    }
    /// A child of `parent` (born cancelled if the parent is).
    pub fn child(parent: &CancelNode) -> CancelNode {
        CancelNode(crate::cancel::node::Node::child(
            &parent.0, None, None, None,
        ))
    }
    /// Cancels the subtree; false if already cancelled.
    pub fn cancel(&self, cause: crate::cancel::Cause) -> bool {
        self.0.cancel(cause, None)
    }
    /// One atomic load.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
    /// The cancellation, if any.
    pub fn cancelled(&self) -> Option<crate::cancel::Cancelled> {
        self.0.cancelled()
    }
    /// Sets the waker woken (once) on cancellation.
    pub fn set_waiter(&self, waker: &std::task::Waker) {
        self.0.set_waiter(waker)
    }
    /// Detaches from the parent and drops the waiter.
    pub fn finish(&self) {
        self.0.finish()
    }
    /// Children attached now.
    pub fn child_count(&self) -> usize {
        self.0.child_count()
    }
}

impl MockScheduler {
    /// Spawns a task whose cancellation node is a child of `parent`.
    pub fn spawn_child<F>(&self, parent: &CancelNode, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_child_node(parent, future).0
    }

    /// As [`MockScheduler::spawn_child`], also returning the task's node
    /// (to attach children to it).
    pub fn spawn_child_node<F>(
        &self,
        parent: &CancelNode,
        future: F,
    ) -> (JoinHandle<F::Output>, CancelNode)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, notified, join, _no_slot) = task::new_task(
            future,
            self.clone(),
            Id::next(),
            false,
            std::panic::Location::caller(),
        );
        let raw = task.raw();
        let node = crate::cancel::node::Node::child(&parent.0, None, None, Some(raw));
        let (node, _) = raw.header().install_node(node);
        let node = CancelNode((*node).clone());
        if let Some(notified) = self.inner.owned.bind(task, notified) {
            self.schedule(notified);
        }
        (join, node)
    }
}

/// The signal registry's per-signal slot (see `signal/registry.rs`).
#[cfg(weft_loom)]
pub use crate::signal::SignalSlot;

/// A worker's LIFO slot (see `scheduler/lifo.rs`), holding boxes instead
/// of task notifications: the same code, every take a swap.
pub struct LifoSlot<T: Send + 'static>(lifo::LifoSlot<Box<T>>);

impl<T: Send + 'static> std::fmt::Debug for LifoSlot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifoSlot")
            .field("occupied", &self.0.is_occupied())
            .finish()
    }
}

impl<T: Send + 'static> Default for LifoSlot<T> {
    fn default() -> Self {
        LifoSlot(lifo::LifoSlot::new())
    }
}

impl<T: Send + 'static> LifoSlot<T> {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }
    /// The owner queues `item` to run next; the item that was there comes
    /// back (the worker moves it to its run queue).
    pub fn push(&self, item: Box<T>) -> Option<Box<T>> {
        self.0.push(item)
    }
    /// The owner, or a thief, takes the item.
    pub fn take(&self) -> Option<Box<T>> {
        self.0.take()
    }
    /// A racy look.
    pub fn is_occupied(&self) -> bool {
        self.0.is_occupied()
    }
}

/// A worker's list of handed tasks with its long-poll mark (see
/// `scheduler::Handed`), holding any items: the same code.
pub struct HandedList<T>(crate::scheduler::Handed<T>);

impl<T> std::fmt::Debug for HandedList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandedList")
            .field("in_long_poll", &self.0.in_long_poll())
            .finish()
    }
}

impl<T> Default for HandedList<T> {
    fn default() -> Self {
        HandedList(crate::scheduler::Handed::new())
    }
}

impl<T> HandedList<T> {
    /// An empty list, its owner not in a long poll.
    pub fn new() -> Self {
        Self::default()
    }
    /// A peer hands `item` over; it comes back if the list refused it
    /// (full, or the owner in a long poll).
    pub fn hand(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        if self.0.push_all(1, || item.take()) {
            Ok(())
        } else {
            Err(item.take().expect("a refused hand-off takes nothing"))
        }
    }
    /// The owner (or a peer) takes everything handed.
    pub fn take_all(&self, sink: impl FnMut(T)) -> usize {
        self.0.take_all(sink)
    }
    /// The owner starts a long poll, taking what was handed before.
    pub fn begin_long_poll(&self, sink: impl FnMut(T)) -> usize {
        self.0.begin_long_poll(sink)
    }
    /// The owner's long poll is over.
    pub fn end_long_poll(&self) {
        self.0.end_long_poll()
    }
}

/// A worker's run queue (`scheduler/queue.rs`) holding any `Send` items:
/// the same code, with 4 slots under loom. The owner's end.
pub struct RunQueue<T>(crate::scheduler::queue::Local<T>);

/// The thieves' end of a [`RunQueue`].
pub struct RunQueueStealer<T>(crate::scheduler::queue::Stealer<T>);

/// Slots in a run queue (4 under loom).
pub const RUN_QUEUE_CAPACITY: usize = crate::scheduler::queue::CAPACITY;

/// A new, empty run queue.
pub fn run_queue<T>() -> (RunQueue<T>, RunQueueStealer<T>) {
    let (local, stealer) = crate::scheduler::queue::new();
    (RunQueue(local), RunQueueStealer(stealer))
}

impl<T> std::fmt::Debug for RunQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunQueue").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for RunQueueStealer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunQueueStealer").finish_non_exhaustive()
    }
}

impl<T> RunQueue<T> {
    /// The owner queues `item`; a full queue hands its oldest half and
    /// `item` to `overflow`.
    pub fn push(&self, item: T, overflow: impl FnMut(T)) {
        self.0.push(item, overflow)
    }
    /// The owner takes the oldest item.
    pub fn pop(&self) -> Option<T> {
        self.0.pop()
    }
    /// Items queued.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> Clone for RunQueueStealer<T> {
    fn clone(&self) -> Self {
        RunQueueStealer(self.0.clone())
    }
}

impl<T> RunQueueStealer<T> {
    /// Steals half into `dst` (the thief's own queue), returning one.
    pub fn steal_into(&self, dst: &RunQueue<T>) -> Option<T> {
        self.0.steal_into(&dst.0)
    }
    /// Steals the oldest item.
    pub fn steal_one(&self) -> Option<T> {
        self.0.steal_one()
    }
    /// A racy count.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// A racy look.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The timer shards (`time/driver.rs`) with one shard, for the model of a
/// registered timer's lock-free "not fired yet" answer.
pub struct TimeDriver(crate::time::driver::TimeDriver);

/// A registration and what its owner last saw of it.
#[derive(Debug)]
pub struct Timer {
    reg: crate::time::driver::Registration,
    seen: crate::time::driver::Seen,
}

impl std::fmt::Debug for TimeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeDriver").finish_non_exhaustive()
    }
}

impl Default for TimeDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeDriver {
    /// One shard, its clock origin now.
    pub fn new() -> Self {
        TimeDriver(crate::time::driver::TimeDriver::new(1))
    }

    fn at_ms(&self, ms: u64) -> std::time::Instant {
        self.0.origin() + std::time::Duration::from_millis(ms)
    }

    /// Registers a timer `ms` after the origin; `None`: already due.
    pub fn register(&self, ms: u64, waker: &std::task::Waker) -> Option<Timer> {
        self.0
            .register(0, self.at_ms(ms), waker)
            .map(|(reg, seen)| Timer { reg, seen })
    }

    /// `Sleep`'s question: true once the timer fired.
    pub fn poll_fired(&self, timer: &mut Timer, waker: &std::task::Waker) -> bool {
        self.0.poll_fired(timer.reg, &mut timer.seen, waker)
    }

    /// Fires what is due `ms` after the origin; returns how many fired.
    pub fn process(&self, ms: u64) -> usize {
        self.0.process(0, self.at_ms(ms))
    }

    /// Drops a registration.
    pub fn deregister(&self, timer: Timer) {
        self.0.deregister(timer.reg);
    }
}

/// An io_uring op cell (`io/uring/op.rs`) driven without a ring: its
/// lock-free lifecycle word between a completion, the future's polls and
/// the future's drop. Its data counts the times it was handed to
/// `OpData::orphaned`.
pub struct IoOpCell(std::sync::Arc<crate::io::uring::OpCell<OrphanCount>>);

/// An op's data that counts its orphanings.
#[derive(Debug)]
pub struct OrphanCount(crate::facade::Arc<crate::facade::atomic::AtomicUsize>);

impl crate::io::uring::OpData for OrphanCount {
    fn orphaned(&mut self, _res: i32) {
        self.0.fetch_add(1, crate::facade::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for IoOpCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoOpCell").finish_non_exhaustive()
    }
}

impl Clone for IoOpCell {
    fn clone(&self) -> Self {
        IoOpCell(self.0.clone())
    }
}

impl IoOpCell {
    /// A submitted op with `waker` stored up front (as a socket op on its
    /// worker's ring has); its data bumps `orphans` when orphaned.
    pub fn new(
        waker: Option<&std::task::Waker>,
        orphans: crate::facade::Arc<crate::facade::atomic::AtomicUsize>,
    ) -> IoOpCell {
        let (cell, sub) = crate::io::uring::OpCell::prepare(
            None,
            None,
            OrphanCount(orphans),
            None,
            waker,
            |_| io_uring::opcode::Nop::new().build(),
        );
        drop(sub);
        IoOpCell(cell)
    }

    /// The ring delivers the op's completion.
    pub fn complete(&self, res: i32) {
        crate::io::uring::Completable::complete(&*self.0, res, false);
    }

    /// The future's poll: the result once complete.
    pub fn poll(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<i32> {
        self.0.poll_take(cx).map(|(res, _data)| res)
    }

    /// The future's drop: true if the op was still pending (the ring
    /// would be asked to cancel it).
    pub fn abandon(&self) -> bool {
        self.0.abandon()
    }

    /// The compat write-behind's look before it waits: true once the
    /// completion arrived.
    pub fn is_complete(&self) -> bool {
        self.0.is_complete()
    }
}
