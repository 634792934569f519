//! The work-stealing scheduler: N workers, each with a FIFO run queue and a
//! LIFO slot, a shared injector, and the idle/parking protocol.
//!
//! # Where a task goes when it becomes ready
//! - Spawned or woken on a worker of this runtime: into that worker's LIFO
//!   slot; the task that was there moves to the back of the run queue. The
//!   next poll on that worker takes the LIFO slot first (message-passing
//!   pairs run back to back, cache-warm), at most 3 times in a row, then the
//!   LIFO task goes to the back of the queue so the queue is not starved
//!   (with the queue empty it runs at once: nobody is waiting behind it).
//!   While the worker is stuck in a poll the monitor has seen outlast a
//!   sample, other workers take its LIFO task and its whole queue
//!   (`lifo.rs`, `monitor.rs`). A parked peer is woken only when the
//!   queue holds more work than the worker would run in twice its io
//!   affinity budget (`TASK_WAKE_BUDGET_FACTOR` in `worker.rs`), or on
//!   every push when the monitor is off.
//! - Woken during its own poll (`yield_now`): into the worker's deferred
//!   list, which moves to the back of the run queue once the queue and the
//!   injector are empty, or every `event_interval` ticks. A yield thus lets
//!   remote spawns in first (tokio defers yields the same way; without it,
//!   4 yield-looping tasks took 5-9x tokio's time on spawn_many_remote_busy).
//! - From any other thread: into the injector, and a parked worker is woken.
//! - Woken by its worker's io while marked as polling long (one poll in 32
//!   is timed; two of 50 µs or more in a row mark the task, 1 ms in debug
//!   builds): to a peer not in a long poll (its hand-off list, then an
//!   unpark), or with none free onto the worker's stealable run queue, so
//!   it runs wherever a worker is free (`schedule_long` and
//!   `before_long_poll` in `worker.rs` have the rest of the rule).
//!
//! # Where a worker finds work, each tick
//! 1. Every `global_queue_interval` ticks the injector first (fairness for
//!    remote spawns), else the LIFO slot, then the local queue, then the
//!    injector, taking a batch into the local queue.
//! 2. Otherwise it becomes a searcher (at most half the workers search) and
//!    steals half of a random victim's queue, then tries the injector. A
//!    queue shorter than 8 tasks, of a worker not stuck in a poll (nor in
//!    the poll of a task marked as polling long), it takes
//!    from only once a task it saw there has waited `Builder::steal_age`
//!    (20 µs by default; `WorkerCtx::behind`): tasks that wake each other
//!    stay together instead of trading every message across the cores.
//! 3. Otherwise it parks until woken or the next timer is due (`idle.rs`
//!    holds the protocol that keeps a wakeup from being lost).
//!
//! Every `event_interval` ticks and after each park the worker fires due
//! timers. Shutdown: see `Runtime::shutdown_timeout`.

pub(crate) mod current_thread;
pub(crate) mod idle;
pub(crate) mod lifo;
mod metrics;
pub(crate) mod monitor;
pub(crate) mod park;
pub(crate) mod pinned;
pub(crate) mod queue;
pub(crate) mod worker;

use std::{future::Future, time::Instant};

use crossbeam_deque::Injector;

use self::queue::Stealer;

pub(crate) use self::metrics::{ScheduleSampler, WorkerMetrics};
use self::{idle::Idle, park::Unparker};
use crate::{
    blocking::BlockingPool,
    cancel::{self, SpawnOptions},
    context,
    facade::{
        atomic::{AtomicBool, Ordering::*},
        Arc,
    },
    task::{self, Id, JoinHandle, Notified, OwnedTasks, RawTask, Schedule, Task},
    time::driver::TimeDriver,
};

/// Knobs the workers read on their hot path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SchedConfig {
    pub(crate) global_queue_interval: u32,
    pub(crate) event_interval: u32,
    /// LIFO-slot polls in a row before the queue gets a turn.
    pub(crate) max_lifo_polls: u8,
    /// Non-blocking driver polls an idle worker with io in flight makes
    /// before it parks (`Builder::io_spin`); `None`: adaptive.
    pub(crate) io_spin: Option<u32>,
    /// How long a worker that ran out of work watches the queues before it
    /// parks (`Builder::idle_spin`).
    pub(crate) idle_spin: std::time::Duration,
    /// How long a task waits in a short run queue before a peer takes it
    /// (`Builder::steal_age`).
    pub(crate) steal_age: std::time::Duration,
    /// One schedule in this many is timed for the histograms; 0: off
    /// (`Builder::histograms`, `Builder::histogram_sample_interval`).
    pub(crate) histogram_interval: u32,
    /// The stuck-poll monitor runs (`Builder::monitor`); when off, workers
    /// do not publish their polls for it.
    pub(crate) monitor: bool,
    /// Thread-per-core: tasks stay on their home worker (`pinned.rs`).
    pub(crate) pinned: bool,
}

/// What other threads need to reach one worker.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Notified>,
    pub(crate) unparker: Unparker,
    pub(crate) metrics: WorkerMetrics,
    pub(crate) io: crate::io::RemoteIo,
    /// The worker's LIFO slot and poll counter (`monitor.rs`).
    pub(crate) watch: std::sync::Arc<monitor::WorkerWatch>,
    /// Thread-per-core: tasks of this home woken elsewhere (`pinned.rs`).
    pub(crate) inbox: Injector<Notified>,
    /// Tasks a peer handed here to consolidate its io (`worker.rs`,
    /// `hand_off_io_wakes`) or to poll a long-polling task
    /// (`schedule_long`), and whether the worker is polling a task marked
    /// as polling long itself (`WorkerCtx::before_long_poll`).
    pub(crate) handed: Handed,
    /// The worker is asleep in its park (or about to be): peers prefer an
    /// awake one to hand io wakes to.
    pub(crate) parked: std::sync::atomic::AtomicBool,
    /// When the worker last started such a poll (`ticks::now`).
    pub(crate) long_poll_at: std::sync::atomic::AtomicU64,
    /// Thread-per-core: this worker's `spawn_local` tasks (`pinned.rs`).
    pub(crate) local_owned: OwnedTasks,
}

/// The tasks peers handed to one worker (io consolidation, and io wakes
/// of long-polling tasks): a list with its room reserved up front, so a
/// hand-off never allocates (a crossbeam injector allocates a block every
/// 63 pushes, which showed up as 0.002 allocations per request in the echo
/// bench), behind a lock that only a hand-off and the owner's take touch.
/// `len` lets the owner skip the lock when nothing is there.
///
/// It also carries the owner's long-poll mark (`WorkerCtx::before_long_poll`):
/// set under the lock, with whatever was handed before moved out, and
/// checked under the lock by every hand-off, which is refused while it is
/// set. A task handed to a worker about to start a long poll thus either
/// goes out with the mark (to the owner's stealable queue) or is refused
/// (the peer keeps it), and never waits in the list for the poll's whole
/// length (peers take a list from behind a poll only once the monitor
/// marks it stalled or their own sighting of it is `steal_age` old; see
/// `WorkerCtx::behind`). Generic for the loom model
/// (`loom-tests/tests/handed.rs`).
pub(crate) struct Handed<T = Notified> {
    tasks: crate::facade::Mutex<Vec<T>>,
    len: crate::facade::atomic::AtomicUsize,
    long_poll: crate::facade::atomic::AtomicBool,
}

/// The most tasks waiting in one worker's [`Handed`] list.
pub(crate) const HANDED_CAPACITY: usize = 64;

impl<T> Handed<T> {
    pub(crate) fn new() -> Handed<T> {
        Handed {
            tasks: crate::facade::Mutex::new(Vec::with_capacity(HANDED_CAPACITY)),
            len: crate::facade::atomic::AtomicUsize::new(0),
            long_poll: crate::facade::atomic::AtomicBool::new(false),
        }
    }

    /// Appends every task `next` yields, if they all fit and the owner is
    /// not in a long poll; false (nothing taken) otherwise.
    pub(crate) fn push_all(&self, count: usize, mut next: impl FnMut() -> Option<T>) -> bool {
        let mut tasks = crate::facade::lock(&self.tasks);
        // Relaxed: set and read under the lock (see the type's doc).
        if tasks.len() + count > HANDED_CAPACITY
            || self
                .long_poll
                .load(crate::facade::atomic::Ordering::Relaxed)
        {
            return false;
        }
        while let Some(task) = next() {
            // The caller counted what it yields; never grow past the room
            // reserved (a push beyond it would allocate).
            assert!(
                tasks.len() < HANDED_CAPACITY,
                "a hand-off overflowed its count"
            );
            tasks.push(task);
        }
        // Release: a reader that sees the length finds the tasks under the
        // lock anyway; the store only has to come after the pushes.
        self.len
            .store(tasks.len(), crate::facade::atomic::Ordering::Release);
        true
    }

    /// Takes one handed task (a relief worker, which has no queue to put
    /// the rest in).
    pub(crate) fn pop(&self) -> Option<T> {
        if self.len.load(crate::facade::atomic::Ordering::Acquire) == 0 {
            return None;
        }
        let mut tasks = crate::facade::lock(&self.tasks);
        let task = tasks.pop();
        self.len
            .store(tasks.len(), crate::facade::atomic::Ordering::Release);
        task
    }

    /// Takes every handed task into `sink` (empty: no lock taken).
    pub(crate) fn take_all(&self, sink: impl FnMut(T)) -> usize {
        if self.len.load(crate::facade::atomic::Ordering::Acquire) == 0 {
            return 0;
        }
        let mut tasks = crate::facade::lock(&self.tasks);
        Self::drain(&mut tasks, &self.len, sink)
    }

    fn drain(
        tasks: &mut Vec<T>,
        len: &crate::facade::atomic::AtomicUsize,
        mut sink: impl FnMut(T),
    ) -> usize {
        let n = tasks.len();
        len.store(0, crate::facade::atomic::Ordering::Release);
        for task in tasks.drain(..) {
            sink(task);
        }
        n
    }

    /// The owner starts a long poll: hand-offs are refused until
    /// [`end_long_poll`](Self::end_long_poll), and what was handed before
    /// goes to `sink` (always under the lock: a hand-off that took it
    /// first is in the list, one that takes it after sees the mark).
    pub(crate) fn begin_long_poll(&self, sink: impl FnMut(T)) -> usize {
        let mut tasks = crate::facade::lock(&self.tasks);
        self.long_poll
            .store(true, crate::facade::atomic::Ordering::Relaxed);
        Self::drain(&mut tasks, &self.len, sink)
    }

    /// The long poll is over: hand-offs are taken again. No lock: a
    /// hand-off that still sees the mark is refused, which only costs it
    /// its choice of worker.
    pub(crate) fn end_long_poll(&self) {
        self.long_poll
            .store(false, crate::facade::atomic::Ordering::Relaxed);
    }

    /// Tasks in the list: a hint (the owner may be taking them).
    pub(crate) fn len(&self) -> usize {
        self.len.load(crate::facade::atomic::Ordering::Relaxed)
    }

    /// Whether the owner is in a long poll: a hint for choosing where to
    /// hand tasks and whom to steal from (the hand-off itself checks under
    /// the lock).
    pub(crate) fn in_long_poll(&self) -> bool {
        self.long_poll
            .load(crate::facade::atomic::Ordering::Relaxed)
    }
}

/// State shared by all workers and handles of one runtime.
pub(crate) struct Shared {
    pub(crate) injector: Injector<Notified>,
    pub(crate) remotes: Box<[Remote]>,
    pub(crate) idle: Idle,
    pub(crate) owned: OwnedTasks,
    pub(crate) time: TimeDriver,
    pub(crate) blocking: BlockingPool,
    pub(crate) shutdown: AtomicBool,
    /// The io driver every worker runs (never `Auto`).
    pub(crate) io_kind: crate::io::Driver,
    pub(crate) config: SchedConfig,
    /// The stuck-poll monitor's state (`monitor.rs`).
    pub(crate) monitor: monitor::Monitor,
    /// A current-thread runtime's core while no `block_on` drives it
    /// (`current_thread.rs`); `None` on the multi-thread runtime.
    pub(crate) core: Option<current_thread::CoreSlot>,
    /// Thread-per-core: the home of the next task spawned from outside
    /// the workers (`pinned.rs`).
    pub(crate) next_home: std::sync::atomic::AtomicUsize,
}

/// A cheap, cloneable reference to a runtime's scheduler.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn time(&self) -> &TimeDriver {
        &self.shared.time
    }

    /// Spawns a task onto this runtime, under the current scope.
    #[track_caller]
    pub(crate) fn spawn<F>(&self, future: F, id: Id) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_with(future, id, &SpawnOptions::default())
    }

    /// Spawns a task with tree options (deadline, name, parent, detached).
    /// The task's spawn location is this function's caller's (callers up
    /// to the user's code are `#[track_caller]`).
    #[track_caller]
    pub(crate) fn spawn_with<F>(
        &self,
        future: F,
        id: Id,
        opts: &SpawnOptions,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_at(future, id, opts, std::panic::Location::caller())
    }

    /// `spawn_with` for callers that captured the user's location before
    /// a closure (`#[track_caller]` does not reach into closures).
    pub(crate) fn spawn_at<F>(
        &self,
        future: F,
        id: Id,
        opts: &SpawnOptions,
        location: &'static std::panic::Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.shared.config.pinned {
            return self.spawn_pinned_at(future, id, opts, location);
        }
        let (task, notified, join) = cancel::spawn_in_tree(opts, |with_node| {
            let (task, notified, join, slot) =
                task::new_task(future, TaskHandle::new(self), id, with_node, location);
            let raw = task.raw();
            ((task, notified, join), raw, slot)
        });
        #[cfg(feature = "tracing")]
        crate::instrument::attach_span(task.raw(), opts);
        if let Some(notified) = self.shared.owned.bind(task, notified) {
            self.schedule(notified);
        }
        join
    }

    /// Spawns a task into worker `index`'s hand-off list, as io
    /// consolidation hands a task over (`WorkerCtx::hand_off_io_wakes`),
    /// and unparks that worker.
    #[cfg(test)]
    pub(crate) fn spawn_handed_to<F>(&self, index: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, notified, join, _) = task::new_task(
            future,
            TaskHandle::new(self),
            Id::next(),
            false,
            std::panic::Location::caller(),
        );
        if let Some(notified) = self.shared.owned.bind(task, notified) {
            let remote = &self.shared.remotes[index];
            let mut notified = Some(notified);
            assert!(
                remote.handed.push_all(1, || notified.take()),
                "room in the list"
            );
            remote.unparker.unpark();
        }
        join
    }

    /// Spawns a `!Send` task (`spawn_local`): on this `LocalRuntime`, or
    /// on the calling worker of this thread-per-core runtime.
    ///
    /// # Panics
    /// Anywhere else: a runtime of another flavour, another thread.
    pub(crate) fn spawn_local_at<F>(
        &self,
        future: F,
        id: Id,
        opts: &SpawnOptions,
        location: &'static std::panic::Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        if self.shared.config.pinned {
            let home = context::with_worker(|w| match w {
                Some(w) if w.belongs_to(&self.shared) => Some(w.index()),
                _ => None,
            });
            let home = home.expect(
                "`spawn_local` called on a thread-per-core runtime off its workers: call it \
                 inside one of its tasks, whose worker the new task then stays on",
            );
            // SAFETY: `home` is the calling thread's worker, just checked.
            return unsafe { self.spawn_pinned_local_at(future, home, id, opts, location) };
        }
        let owner = self.shared.core.as_ref().and_then(|slot| slot.owner());
        assert!(
            owner.is_some(),
            "`spawn_local` called on a runtime that is not a LocalRuntime or a thread-per-core \
             runtime: `!Send` tasks need a runtime that keeps them on one thread \
             (`Builder::new_current_thread().build_local()`, \
             `Builder::new_thread_per_core()`); use `spawn` here"
        );
        assert!(
            owner == Some(std::thread::current().id()),
            "`spawn_local` called on a LocalRuntime from a thread other than the one that \
             built it"
        );
        let (task, notified, join) = cancel::spawn_in_tree(opts, |with_node| {
            // SAFETY: checked above: this runtime is a LocalRuntime and we
            // are on its thread. Its core runs only there (`block_on`
            // asserts it) and it is shut down only there (a `LocalRuntime`
            // is `!Send`), so the future is polled and dropped on this
            // thread; see `scheduler/current_thread.rs`, step 5.
            let (task, notified, join, slot) = unsafe {
                task::new_local_task(future, TaskHandle::new(self), id, with_node, location)
            };
            let raw = task.raw();
            ((task, notified, join), raw, slot)
        });
        #[cfg(feature = "tracing")]
        crate::instrument::attach_span(task.raw(), opts);
        if let Some(notified) = self.shared.owned.bind(task, notified) {
            self.schedule(notified);
        }
        join
    }

    /// The timer shard for the calling thread, and whether it is a worker
    /// of this runtime.
    pub(crate) fn timer_shard(&self) -> (usize, bool) {
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&self.shared) => (w.index(), true),
            _ => (0, false),
        })
    }

    pub(crate) fn unpark_worker(&self, index: usize) {
        self.shared.remotes[index % self.shared.remotes.len()]
            .unparker
            .unpark();
    }
}

impl Shared {
    /// Queues a task from a thread that is not one of our workers.
    pub(crate) fn schedule_remote(&self, task: Notified) {
        if self.config.histogram_interval != 0 {
            context::with_schedule_sampler(|s| metrics::sample_schedule(&self.config, s, &task));
        }
        if self.shutdown.load(Acquire) {
            // The queues are being (or have been) drained for the last time.
            // Dropping the notification is enough: the shutdown sweep cancels
            // every task still registered.
            drop(task);
            return;
        }
        self.injector.push(task);
        if !deferred_notify::defer(self) {
            self.notify_parked();
        }
    }

    /// Wakes a parked worker if work may be waiting and nobody is searching.
    pub(crate) fn notify_parked(&self) {
        if let Some(worker) = self.idle.worker_to_notify() {
            self.remotes[worker].unparker.unpark();
        }
    }

    /// True if any queue other workers can take from holds a task (a
    /// stalled worker's LIFO slot included; see `monitor.rs`).
    pub(crate) fn has_stealable_work(&self) -> bool {
        !self.injector.is_empty()
            || self
                .remotes
                .iter()
                .any(|r| !r.stealer.is_empty() || r.watch.has_stealable_lifo())
    }

    /// Fires due timers; `start` is the caller's own shard.
    pub(crate) fn fire_timers(&self, start: usize) -> usize {
        // The cached expiries first: with no timer set, no clock read (a
        // worker calls this after every park and every `event_interval`
        // ticks; `Instant::now()` costs 35-50 ns on the benchmark VMs).
        let Some(next) = self.time.next_deadline() else {
            return 0;
        };
        let now = Instant::now();
        if next <= now {
            self.time.process(start, now)
        } else {
            0
        }
    }

    /// Drops every queued notification (shutdown).
    pub(crate) fn drain_queues(&self) {
        loop {
            match self.injector.steal() {
                crossbeam_deque::Steal::Success(task) => drop(task),
                crossbeam_deque::Steal::Retry => continue,
                crossbeam_deque::Steal::Empty => break,
            }
        }
        for remote in self.remotes.iter() {
            loop {
                match remote.inbox.steal() {
                    crossbeam_deque::Steal::Success(task) => drop(task),
                    crossbeam_deque::Steal::Retry => continue,
                    crossbeam_deque::Steal::Empty => break,
                }
            }
            while let Some(task) = remote.stealer.steal_one() {
                drop(task);
            }
            remote.handed.take_all(drop);
        }
    }
}

/// The scheduler handle a task holds: a `Handle` whose strong count, on a
/// worker of its runtime, comes from that worker's credits (see
/// `WorkerCtx::take_handle_credit`) and goes back to them when the task is
/// freed there.
///
/// Every task keeps its runtime's `Shared` alive, as tokio's do. Counting
/// that with one `Arc` increment per spawn and one decrement per free made
/// the `Arc`'s count the one line every worker wrote for every task: a
/// task spawned on one worker and freed on another bounced it, and the
/// decrement in `dealloc` was 6% of the workers' time while a 100,000-task
/// tree was cancelled. A worker now takes counts 64 at a time and keeps
/// the counts of the tasks it frees (up to 65,536, which cost nothing; all
/// come back when the worker exits), so the shared line is written once
/// per 64 spawns and rarely by a free. Off a worker (or on another
/// runtime's) the count is an ordinary clone and drop.
pub(crate) struct TaskHandle(std::mem::ManuallyDrop<Handle>);

impl TaskHandle {
    pub(crate) fn new(handle: &Handle) -> TaskHandle {
        let handle = context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&handle.shared) => w.take_handle_credit(),
            _ => handle.clone(),
        });
        TaskHandle(std::mem::ManuallyDrop::new(handle))
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is not used again.
        let handle = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&handle.shared) => w.return_handle_credit(handle),
            _ => drop(handle),
        });
    }
}

impl std::ops::Deref for TaskHandle {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.0
    }
}

impl Schedule for TaskHandle {
    fn schedule(&self, task: Notified) {
        Handle::schedule(self, task)
    }

    fn yield_now(&self, task: Notified) {
        Handle::yield_now(self, task)
    }

    fn release(&self, task: RawTask) -> Option<Task> {
        Handle::release(self, task)
    }
}

/// Wakes in bulk from outside the workers (a cancel walking a wide tree
/// from a user thread) check for a parked worker once per
/// [`DEFERRED_NOTIFY_EVERY`] tasks, not after every push.
///
/// The check is a SeqCst fence and a read of the idle state's line, which
/// the workers write as they start and stop searching: a tenth of the
/// canceller's time in a 100,000-task cancel. The first push of a batch
/// still checks at once (parked workers start right away), and the end of
/// the batch checks again, so a task waits at most for the pushes of its
/// batch that follow it.
pub(crate) mod deferred_notify {
    use std::cell::Cell;

    use super::Shared;
    use crate::facade::Arc;

    /// One check per this many remote pushes while deferring.
    pub(crate) const DEFERRED_NOTIFY_EVERY: usize = 32;

    /// This thread's batch: all plain `Cell`s with const initialisers, so
    /// the per-push check is one thread-local access and no borrow flag.
    struct Batch {
        /// Nesting depth of `batch` on this thread.
        depth: Cell<usize>,
        /// The runtime whose checks are deferred (an `Arc::into_raw`: the
        /// batch holds a count of it until its last check), or null.
        shared: Cell<*const Shared>,
        /// Pushes since that runtime's last check.
        pushes: Cell<usize>,
    }

    // Per model thread under shuttle (see `context`).
    #[cfg(weft_shuttle)]
    use shuttle::thread_local;

    thread_local! {
        static BATCH: Batch = const {
            Batch {
                depth: Cell::new(0),
                shared: Cell::new(std::ptr::null()),
                pushes: Cell::new(0),
            }
        };
    }

    /// Runs `f` with the remote pushes it makes checking for parked
    /// workers in batches; checks once more at the end.
    pub(crate) fn batch<R>(f: impl FnOnce() -> R) -> R {
        struct End;
        impl Drop for End {
            fn drop(&mut self) {
                let _ = BATCH.try_with(|b| {
                    b.depth.set(b.depth.get() - 1);
                    let shared = b.shared.get();
                    if b.depth.get() > 0 || shared.is_null() {
                        return;
                    }
                    b.shared.set(std::ptr::null());
                    // SAFETY: the count taken in `defer`, handed back here.
                    let shared = unsafe { Arc::from_raw(shared) };
                    if b.pushes.replace(0) > 0 {
                        shared.notify_parked();
                    }
                });
            }
        }
        let _ = BATCH.try_with(|b| b.depth.set(b.depth.get() + 1));
        let _end = End;
        f()
    }

    /// Called after a remote push to `shared`: true if the check for a
    /// parked worker is deferred (the caller skips it).
    pub(crate) fn defer(shared: &Shared) -> bool {
        BATCH
            .try_with(|b| {
                if b.depth.get() == 0 {
                    return false;
                }
                let pending = b.shared.get();
                if pending.is_null() {
                    // The first push checks at once; keep a count of the
                    // runtime (it must outlive the batch's last check).
                    // SAFETY: `shared` is the data of a live `Arc<Shared>`
                    // (the caller reached it through a task's handle).
                    unsafe { Arc::increment_strong_count(shared as *const Shared) };
                    b.shared.set(shared);
                    b.pushes.set(0);
                    return false;
                }
                if !std::ptr::eq(pending, shared) {
                    // Another runtime's batch is pending: no deferral here.
                    return false;
                }
                let pushes = b.pushes.get() + 1;
                if pushes >= DEFERRED_NOTIFY_EVERY {
                    b.pushes.set(0);
                    false
                } else {
                    b.pushes.set(pushes);
                    true
                }
            })
            .unwrap_or(false)
    }
}

impl Schedule for Handle {
    fn schedule(&self, task: Notified) {
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&self.shared) => w.schedule_local(task, false),
            _ => self.shared.schedule_remote(task),
        })
    }

    fn yield_now(&self, task: Notified) {
        context::with_worker(|w| match w {
            Some(w) if w.belongs_to(&self.shared) => w.schedule_local(task, true),
            _ => self.shared.schedule_remote(task),
        })
    }

    fn release(&self, task: RawTask) -> Option<Task> {
        self.shared.owned.remove(task)
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        mpsc, Arc as StdArc,
    };

    /// A two-worker runtime, and a weak reference to its shared state that
    /// shows whether anything still holds it once the runtime is dropped.
    fn runtime_and_weak() -> (crate::Runtime, std::sync::Weak<super::Shared>) {
        let rt = crate::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let weak = crate::facade::Arc::downgrade(&rt.handle().inner.shared);
        (rt, weak)
    }

    /// Workers keep counts of the runtime's shared state as credits (see
    /// `TaskHandle`); every one must come back, or the runtime would never
    /// be freed. Enough tasks are spawned on one worker and freed on the
    /// other for the credits to pass every threshold.
    #[test]
    fn every_credit_comes_back_and_the_runtime_is_freed() {
        let (rt, weak) = runtime_and_weak();
        rt.block_on(async {
            crate::spawn(async {
                for _ in 0..10 {
                    let handles: Vec<_> = (0..20_000).map(|_| crate::spawn(async {})).collect();
                    for handle in handles {
                        handle.await.unwrap();
                    }
                }
            })
            .await
            .unwrap();
        });
        assert!(weak.upgrade().is_some());
        drop(rt);
        assert!(weak.upgrade().is_none(), "a count of the runtime leaked");
    }

    /// A finished task whose children still run lingers in the tree with
    /// its deadline timer, and that timer's waker holds the node, whose
    /// timer entry holds the runtime: a cycle until the last child leaves.
    /// Shutting the runtime down ends the children, so the cycle breaks
    /// and the runtime is freed, for a task's own deadline and for a
    /// `timeout` whose node took over its deadline.
    #[test]
    fn lingering_nodes_with_timers_let_the_runtime_go_at_shutdown() {
        use std::time::Duration;
        let (rt, weak) = runtime_and_weak();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        rt.block_on(async move {
            let tx = started_tx.clone();
            crate::task::Builder::new()
                .timeout(Duration::from_secs(3600))
                .spawn(async move {
                    crate::spawn(async move {
                        let _ = tx.send(());
                        // Waits under the inherited deadline: arms the
                        // finished parent's timer.
                        let _ = crate::time::sleep(Duration::from_secs(7200)).await;
                    });
                })
                .await
                .unwrap();
            let tx = started_tx;
            let inner = crate::time::timeout(Duration::from_secs(3600), async move {
                crate::spawn(async move {
                    let _ = tx.send(());
                    let _ = crate::time::sleep(Duration::from_secs(7200)).await;
                });
            })
            .await;
            assert!(inner.is_ok());
        });
        for _ in 0..2 {
            started_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the child started");
        }
        // Time for each child's sleep to be polled once (arming the timer).
        std::thread::sleep(Duration::from_millis(50));
        assert!(weak.upgrade().is_some());
        drop(rt);
        assert!(
            weak.upgrade().is_none(),
            "a lingering node kept the runtime"
        );
    }

    /// A cancel walked from a user thread defers its parked-worker checks:
    /// every woken task still runs, and the batch's count of the runtime
    /// is let go at its end.
    #[test]
    fn a_walk_from_a_user_thread_wakes_every_task_and_keeps_no_count() {
        const CHILDREN: usize = 1000;
        let (rt, weak) = runtime_and_weak();
        let (started, observed) = (
            StdArc::new(AtomicUsize::new(0)),
            StdArc::new(AtomicUsize::new(0)),
        );
        let (ready_tx, ready_rx) = mpsc::channel();
        let root = {
            let (started, observed) = (started.clone(), observed.clone());
            rt.spawn(async move {
                for _ in 0..CHILDREN {
                    let (started, observed, ready_tx) =
                        (started.clone(), observed.clone(), ready_tx.clone());
                    crate::spawn(async move {
                        if started.fetch_add(1, SeqCst) + 1 == CHILDREN {
                            ready_tx.send(()).unwrap();
                        }
                        crate::cancel::cancelled().await;
                        observed.fetch_add(1, SeqCst);
                    });
                }
                crate::cancel::cancelled().await;
            })
        };
        ready_rx.recv().unwrap();
        // Let the workers park: the walk's first push must wake them.
        std::thread::sleep(std::time::Duration::from_millis(20));
        root.cancel();
        rt.block_on(root).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while observed.load(SeqCst) < CHILDREN {
            assert!(
                std::time::Instant::now() < deadline,
                "woken tasks did not run"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(rt);
        assert!(
            weak.upgrade().is_none(),
            "the batch kept a count of the runtime"
        );
    }

    /// Tasks handed to a worker (io consolidation) that then stays inside
    /// one poll are not left waiting for it: the monitor marks the worker
    /// stalled for them, as for its run queue, and a peer takes them. Its
    /// run queue and LIFO slot are empty here, which is what left them in
    /// the list before (a peer looked only at those). The poll spins until
    /// the handed task has run, or for 10 s: without the rescue the task
    /// runs on the spinning worker, after it.
    #[test]
    fn tasks_handed_to_a_worker_stuck_in_a_poll_are_taken_by_a_peer() {
        use std::{
            sync::atomic::AtomicBool,
            time::{Duration, Instant},
        };
        let rt = crate::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let handle = rt.handle().inner.clone();
        let (started_tx, started_rx) = mpsc::channel();
        let done = StdArc::new(AtomicBool::new(false));
        let spinning = StdArc::new(AtomicBool::new(true));
        let spinner = {
            let (done, spinning) = (done.clone(), spinning.clone());
            rt.spawn(async move {
                let index = crate::context::with_worker(|w| w.map(|w| w.index()));
                started_tx
                    .send((index, std::thread::current().id()))
                    .unwrap();
                let start = Instant::now();
                while !done.load(SeqCst) && start.elapsed() < Duration::from_secs(10) {
                    std::hint::spin_loop();
                }
                spinning.store(false, SeqCst);
            })
        };
        let (index, spinner_thread) = started_rx.recv().unwrap();
        let index = index.expect("the spinner runs on a worker");
        let handed = {
            let (done, spinning) = (done.clone(), spinning.clone());
            handle.spawn_handed_to(index, async move {
                let ran = (std::thread::current().id(), spinning.load(SeqCst));
                done.store(true, SeqCst);
                ran
            })
        };
        let (thread, while_spinning) = rt.block_on(handed).unwrap();
        rt.block_on(spinner).unwrap();
        assert!(
            while_spinning && thread != spinner_thread,
            "the handed task waited for the poll of the worker it was handed to"
        );
        // A task's output is taken before it leaves the registry: wait for
        // both to go.
        let start = Instant::now();
        while rt.metrics().alive_tasks != 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(rt.metrics().alive_tasks, 0, "a task was left behind");
    }
}
