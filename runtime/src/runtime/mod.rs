//! The runtime: builds the scheduler, starts the worker threads (or, for
//! the current-thread flavour, parks its one worker's core for `block_on`
//! to run; `scheduler/current_thread.rs`), runs `block_on`, and shuts
//! everything down.
//!
//! # Shutdown (`Runtime::shutdown_timeout`, also on drop without a limit)
//! 1. Set the shutdown flag and unpark every worker. Each worker finishes
//!    its current poll, drops what is left in its LIFO slot and run queue,
//!    and exits.
//! 2. Wait for the workers (and relief workers, see `scheduler/monitor.rs`)
//!    to exit, up to the timeout; a worker still inside a poll after that
//!    is detached (left running, not joined). The monitor thread exits.
//!    A current-thread runtime has no worker threads: the wait is for the
//!    thread inside `block_on` (if any) to hand the core back, which is
//!    then dropped here (a core kept past the timeout stays with it).
//! 3. Drop every notification left in the injector and in the queues of
//!    detached workers.
//! 4. Close the task registry and cancel every task in it: futures are
//!    dropped on this thread (destructors run, so nothing leaks), join
//!    handles resolve to `JoinError::is_cancelled()`. A task still running
//!    on a detached worker is marked cancelled and dropped when its poll
//!    returns. Spawns after this point are cancelled at once.
//! 5. Drop notifications produced by those destructors, then shut down the
//!    blocking pool (unstarted jobs are cancelled; running ones get what is
//!    left of the timeout).

mod builder;
pub mod dump;
pub(crate) mod histogram;
mod local;
mod metrics;
mod stuck;
pub(crate) mod ticks;

/// What the runtime starts and joins its worker threads with: `std`'s, or
/// under `--cfg weft_shuttle` shuttle's, so the workers are model threads
/// and the real scheduler runs under randomized schedules
/// (`shuttle-tests/tests/scheduler.rs`, docs/VERIFICATION.md). Not the
/// facade: under loom the runtime is compiled but never started, and
/// loom has no channel.
mod threads {
    #[cfg(weft_shuttle)]
    pub(super) use shuttle::{
        sync::{mpsc, Condvar, Mutex},
        thread,
    };
    #[cfg(not(weft_shuttle))]
    pub(super) use std::{
        sync::{mpsc, Condvar, Mutex},
        thread,
    };
}

use std::{
    fmt,
    future::Future,
    pin::pin,
    sync::Arc as StdArc,
    task::{Context, Poll, Wake, Waker},
    time::{Duration, Instant},
};

use crossbeam_deque::Injector;

use self::threads::{mpsc, thread, Condvar, Mutex};
pub use self::{
    builder::{BuildError, Builder, MAX_WORKER_THREADS},
    histogram::{HistogramBucket, HistogramSnapshot},
    local::LocalRuntime,
    metrics::{RuntimeMetrics, WorkerMetrics},
    stuck::StuckPoll,
};
use crate::{
    blocking::{self, BlockingConfig, BlockingPool},
    context::{self, EnterGuard},
    coop,
    facade::{atomic::AtomicBool, atomic::Ordering::*, Arc},
    scheduler::{
        self,
        idle::Idle,
        park::{Parker, Unparker},
        worker::run_worker,
        Remote, SchedConfig, Shared,
    },
    task::{Id, JoinHandle, OwnedTasks},
    time::driver::TimeDriver,
};

/// A running weft runtime: worker threads, timers, blocking pool.
///
/// Dropping it shuts it down, waiting for workers to finish their current
/// polls (see [`Runtime::shutdown_timeout`] for a bounded wait). Dropping
/// it from inside one of its own tasks panics: that wait would include the
/// worker running the drop, and never end.
pub struct Runtime {
    handle: Handle,
    threads: Vec<thread::JoinHandle<()>>,
    exited: StdArc<(Mutex<usize>, Condvar)>,
    /// The stuck-poll monitor (`scheduler/monitor.rs`).
    monitor: Option<std::thread::JoinHandle<()>>,
    done: bool,
}

/// A cloneable reference to a runtime, usable from any thread.
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: scheduler::Handle,
}

impl Runtime {
    /// A runtime with the default configuration (one worker per CPU).
    pub fn new() -> Result<Runtime, BuildError> {
        Builder::new_multi_thread().build()
    }

    pub(crate) fn start(builder: &Builder, workers: usize) -> Result<Runtime, BuildError> {
        Runtime::start_flavor(builder, workers, None)
    }

    /// A current-thread runtime: one worker, run by `block_on` callers
    /// (`scheduler/current_thread.rs`); with `local`, bound to this thread.
    pub(crate) fn start_current_thread(
        builder: &Builder,
        local: bool,
    ) -> Result<Runtime, BuildError> {
        Runtime::start_flavor(builder, 1, Some(local))
    }

    /// `current_thread`: `None` for worker threads, `Some(local)` for a
    /// current-thread runtime.
    fn start_flavor(
        builder: &Builder,
        workers: usize,
        current_thread: Option<bool>,
    ) -> Result<Runtime, BuildError> {
        let pinned = builder.flavor == builder::Flavor::ThreadPerCore;
        if builder.histograms {
            // The rate of the histograms' clock is measured from here.
            ticks::init();
        }
        // Whether timeout deadlines may come from the TSC: decided here,
        // where opening a `/sys` file is part of building the runtime,
        // rather than on the first timeout (inside some task).
        crate::time::init_tsc();
        let (locals, stealers): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| scheduler::queue::new::<crate::task::Notified>())
            .unzip();
        // Under shuttle: epoll drivers, which stay idle (no socket is
        // registered, so the run loop never polls or waits in them; see
        // `park_worker` in `scheduler/worker.rs`).
        #[cfg(weft_shuttle)]
        let io_driver = crate::io::Driver::Epoll;
        #[cfg(not(weft_shuttle))]
        let io_driver = builder.io_driver;
        // A current-thread ring is driven by whichever thread is in
        // `block_on`, unless the runtime is bound to one (local).
        // Peers reap a busy worker's ring on the work-stealing flavour
        // (docs/IO.md, "Peers reap a busy worker's ring"); elsewhere no
        // other worker would run what they reap.
        let rings = match current_thread {
            Some(false) => crate::io::Rings::Shared,
            // Peers find a stuck worker through the monitor's poll
            // counters: without the monitor nobody would reap.
            None if !pinned && workers > 1 && builder.io_peer_reap && builder.monitor => {
                crate::io::Rings::PeerReaped
            }
            _ => crate::io::Rings::Owned,
        };
        // One schedule and one io_uring op in this many are timed; 0: none.
        let histogram_interval = if builder.histograms {
            builder.histogram_sample_interval
        } else {
            0
        };
        let io = crate::io::build(
            io_driver,
            builder.io_ring_entries,
            workers,
            builder.recv_pool_config()?,
            rings,
            builder.io_registered_files,
            histogram_interval,
        )
        .map_err(BuildError::Io)?;
        let parkers: Vec<Parker> = io.remotes.iter().map(worker_parker).collect();
        let remotes = stealers
            .into_iter()
            .zip(&parkers)
            .zip(&io.remotes)
            .map(|((stealer, parker), io)| Remote {
                stealer,
                unparker: parker.unparker(),
                metrics: Default::default(),
                io: io.clone(),
                watch: StdArc::new(scheduler::monitor::WorkerWatch::new()),
                inbox: Injector::new(),
                handed: crate::scheduler::Handed::new(),
                parked: std::sync::atomic::AtomicBool::new(false),
                long_poll_at: std::sync::atomic::AtomicU64::new(0),
                local_owned: OwnedTasks::new(1),
            })
            .collect();
        let blocking = BlockingPool::new(BlockingConfig {
            max_threads: builder.max_blocking_threads,
            keep_alive: builder.blocking_keep_alive,
            thread_name: builder.thread_name.clone(),
            stack_size: builder.thread_stack_size,
            on_thread_start: builder.on_thread_start.clone(),
            on_thread_stop: builder.on_thread_stop.clone(),
        });
        let shared = Shared {
            injector: Injector::new(),
            remotes,
            idle: Idle::new(workers),
            owned: OwnedTasks::new(workers * 4),
            time: TimeDriver::new(workers),
            blocking,
            shutdown: AtomicBool::new(false),
            io_kind: io.kind,
            config: SchedConfig {
                global_queue_interval: builder.global_queue_interval,
                event_interval: builder.event_interval,
                max_lifo_polls: 3,
                io_spin: builder.io_spin,
                idle_spin: builder.idle_spin,
                steal_age: builder.steal_age,
                histogram_interval,
                // No monitor on a current-thread runtime: it has no other
                // worker to hand a stuck worker's tasks to, and relief
                // workers would run them on other threads.
                // Nor on a thread-per-core one: it would move tasks.
                monitor: builder.monitor && current_thread.is_none() && !pinned,
                pinned,
            },
            monitor: scheduler::monitor::Monitor::new(scheduler::monitor::MonitorConfig {
                threshold: builder.stuck_poll_threshold,
                hook: builder.on_stuck_poll.clone(),
                thread_name: builder.thread_name.clone(),
                stack_size: builder.thread_stack_size,
                on_thread_start: builder.on_thread_start.clone(),
                on_thread_stop: builder.on_thread_stop.clone(),
            }),
            next_home: std::sync::atomic::AtomicUsize::new(0),
            core: current_thread.map(|local| {
                scheduler::current_thread::CoreSlot::new(local.then(|| std::thread::current().id()))
            }),
        };
        let handle = Handle {
            inner: scheduler::Handle {
                shared: Arc::new(shared),
            },
        };
        let exited = StdArc::new((Mutex::new(0usize), Condvar::new()));
        let mut runtime = Runtime {
            handle: handle.clone(),
            threads: Vec::with_capacity(workers),
            exited: exited.clone(),
            monitor: None,
            done: false,
        };
        let workers_io = io.workers;
        if current_thread.is_some() {
            let (local, parker, mut io) = locals
                .into_iter()
                .zip(parkers)
                .zip(workers_io)
                .map(|((local, parker), io)| (local, parker, io))
                .next()
                .expect("one worker");
            // Enabled here: without SINGLE_ISSUER any thread may then
            // submit; with it (local), this thread is the runtime's own.
            if let Err(err) = io.enable() {
                // No core to wait for: nothing has run, nothing to stop.
                runtime.done = true;
                return Err(BuildError::Io(err));
            }
            let core =
                scheduler::worker::WorkerCtx::new(0, handle.inner.clone(), local, parker, io);
            handle
                .inner
                .shared
                .core
                .as_ref()
                .expect("a current-thread runtime has a core slot")
                .put_initial(Box::new(core));
            return Ok(runtime);
        }
        let (enabled_tx, enabled_rx) = mpsc::channel::<std::io::Result<()>>();
        for (index, ((local, parker), mut io)) in
            locals.into_iter().zip(parkers).zip(workers_io).enumerate()
        {
            let mut thread = thread::Builder::new().name((builder.thread_name)());
            if let Some(size) = builder.thread_stack_size {
                thread = thread.stack_size(size);
            }
            let inner = handle.inner.clone();
            let exited = exited.clone();
            let on_start = builder.on_thread_start.clone();
            let on_stop = builder.on_thread_stop.clone();
            let enabled_tx = enabled_tx.clone();
            let spawned = thread.spawn(move || {
                struct Exit(
                    StdArc<(Mutex<usize>, Condvar)>,
                    Option<StdArc<dyn Fn() + Send + Sync>>,
                );
                impl Drop for Exit {
                    fn drop(&mut self) {
                        if let Some(stop) = &self.1 {
                            stop();
                        }
                        let (count, cv) = &*self.0;
                        *count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                        cv.notify_all();
                    }
                }
                let _exit = Exit(exited, on_stop);
                // The ring's only submitter is the thread that enables it.
                let enabled = io.enable();
                let ok = enabled.is_ok();
                if ok {
                    io.register_ring_fd();
                }
                let _ = enabled_tx.send(enabled);
                drop(enabled_tx);
                if !ok {
                    return;
                }
                if let Some(start) = &on_start {
                    start();
                }
                run_worker(inner, index, local, parker, io);
            });
            match spawned {
                Ok(join) => runtime.threads.push(join),
                Err(err) => {
                    // Stop the workers already started before reporting.
                    runtime.shutdown_inner(Some(Duration::from_secs(5)));
                    return Err(BuildError::SpawnThread(err));
                }
            }
        }
        drop(enabled_tx);
        for _ in 0..workers {
            let res = enabled_rx.recv().unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "a worker thread exited during start-up",
                ))
            });
            if let Err(err) = res {
                runtime.shutdown_inner(Some(Duration::from_secs(5)));
                return Err(BuildError::Io(err));
            }
        }
        // Under shuttle there is no monitor thread, whatever the builder
        // says: it samples the workers by the wall clock, which would make
        // a schedule's steps depend on the machine (and it is a std
        // thread). The workers still publish their polls for it; nothing
        // is ever marked stalled.
        if handle.inner.shared.config.monitor && !cfg!(weft_shuttle) {
            match scheduler::monitor::start(&handle.inner) {
                Ok(join) => runtime.monitor = Some(join),
                Err(err) => {
                    runtime.shutdown_inner(Some(Duration::from_secs(5)));
                    return Err(BuildError::SpawnThread(err));
                }
            }
        }
        Ok(runtime)
    }

    /// Runs `future` to completion on the current thread, driving it while
    /// the workers run everything it spawns. On a current-thread runtime
    /// ([`Builder::new_current_thread`]) this thread is the worker: it runs
    /// the tasks, io and timers until `future` is done (see there for two
    /// threads calling `block_on` at once).
    ///
    /// # Panics
    /// When called from a worker thread (a task) or inside another
    /// `block_on`: that would block a thread the runtime needs to make
    /// progress.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Spawns a task. It is a root of its own (it has no parent task).
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `f` on the blocking pool.
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_blocking(f)
    }

    /// A handle to this runtime.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Makes this runtime current on this thread until the guard drops, so
    /// `weft::spawn` and timers work outside `block_on`.
    pub fn enter(&self) -> EnterGuard {
        self.handle.enter()
    }

    /// A snapshot of the runtime's counters.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// The runtime's live tasks; see [`Handle::dump`].
    pub fn dump(&self) -> dump::TaskDump {
        self.handle.dump()
    }

    /// The io driver the workers run: `Uring` or `Epoll`, never `Auto`.
    pub fn io_driver(&self) -> crate::io::Driver {
        self.handle.io_driver()
    }

    /// See [`Handle::io_peer_reap`].
    pub fn io_peer_reap(&self) -> bool {
        self.handle.io_peer_reap()
    }

    /// Shuts down, waiting at most `timeout` for workers and blocking threads
    /// that are inside a poll or job. See the module doc for the steps.
    /// Returns true if every thread stopped in time.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> bool {
        self.shutdown_inner(Some(timeout))
    }

    /// Shuts down without waiting for threads stuck in a poll or job.
    pub fn shutdown_background(self) -> bool {
        self.shutdown_timeout(Duration::ZERO)
    }

    fn shutdown_inner(&mut self, timeout: Option<Duration>) -> bool {
        if self.done {
            return true;
        }
        if timeout.is_none()
            && context::with_worker(|w| w.is_some_and(|w| w.belongs_to(&self.handle.inner.shared)))
        {
            // Waiting would never end: this worker cannot stop while it
            // runs the task that waits. Leave the runtime running.
            self.done = true;
            panic!(
                "a weft runtime was dropped (or shut down) from inside one of its own tasks: \
                 it would wait for its workers to stop, this worker included, and never \
                 return; drop it from outside the runtime, or call `shutdown_background`"
            );
        }
        self.done = true;
        let deadline = timeout.map(|t| Instant::now() + t);
        let shared = &self.handle.inner.shared;
        // 1.
        shared.shutdown.store(true, SeqCst);
        for remote in shared.remotes.iter() {
            remote.unparker.unpark();
        }
        shared.monitor.wake();
        // 2. (a current-thread runtime: its core, once `block_on` lets go)
        let core_back = match &shared.core {
            Some(slot) => match slot.close(deadline) {
                Some(core) => {
                    core.shut_down_core();
                    true
                }
                None => false,
            },
            None => true,
        };
        let total = self.threads.len();
        let mut all_exited = {
            let (count, cv) = &*self.exited;
            let mut exited = count.lock().unwrap_or_else(|p| p.into_inner());
            while *exited < total {
                match deadline {
                    None => exited = cv.wait(exited).unwrap_or_else(|p| p.into_inner()),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        exited = cv
                            .wait_timeout(exited, deadline - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
            }
            *exited == total && core_back
        };
        for thread in self.threads.drain(..) {
            if all_exited || is_finished(&thread) {
                let _ = thread.join();
            }
        }
        // The monitor leaves at once (unless a stuck-poll hook blocks);
        // relief workers after their current poll.
        if let Some(monitor) = self.monitor.take() {
            let _ = monitor.join();
        }
        all_exited &= shared.monitor.wait_relief_exited(deadline);
        // 3.–5. on this thread, inside the runtime so destructors that spawn
        // see the closed registry.
        let _enter = context::enter(self.handle.inner.clone());
        shared.drain_queues();
        shared.owned.close_and_shutdown_all();
        shared.drain_queues();
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        all_exited &= shared.blocking.shutdown(left);
        shared.drain_queues();
        all_exited
    }
}

#[cfg(not(weft_shuttle))]
fn is_finished(thread: &thread::JoinHandle<()>) -> bool {
    thread.is_finished()
}

/// shuttle's join handle cannot tell: a worker that did not report its
/// exit in time is left detached (the shuttle tests' deadlines are far
/// beyond any run, so none is).
#[cfg(weft_shuttle)]
fn is_finished(_thread: &thread::JoinHandle<()>) -> bool {
    false
}

/// A worker's parker: an unpark of the parked worker wakes its io driver.
#[cfg(not(weft_shuttle))]
fn worker_parker(remote: &crate::io::RemoteIo) -> Parker {
    let remote = remote.clone();
    Parker::with_wake_hook(StdArc::new(move || remote.wake()))
}

/// Under shuttle a worker parks on its parker's condvar instead (a model
/// thread must not block in a syscall), so an unpark signals that.
#[cfg(weft_shuttle)]
fn worker_parker(_remote: &crate::io::RemoteIo) -> Parker {
    Parker::new()
}

// Compile-time checks: the runtime and its handles cross threads.
const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    #[allow(dead_code)]
    fn check() {
        assert_send_sync::<Runtime>();
        assert_send_sync::<Handle>();
        assert_send_sync::<JoinHandle<u8>>();
        assert_send_sync::<crate::task::AbortHandle>();
        assert_send_sync::<crate::task::JoinError>();
        assert_send_sync::<crate::time::Sleep>();
    }
};

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_inner(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.handle.inner.shared.remotes.len())
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// The runtime the current thread is in.
    ///
    /// # Panics
    /// Outside a runtime; see [`Handle::try_current`].
    pub fn current() -> Handle {
        Handle::try_current().expect(
            "there is no weft runtime here: call this inside `Runtime::block_on`, \
             a spawned task, or after `Runtime::enter`",
        )
    }

    /// The runtime the current thread is in, if any.
    pub fn try_current() -> Option<Handle> {
        context::current_handle().map(|inner| Handle { inner })
    }

    /// See [`Runtime::spawn`].
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.spawn(future, Id::next())
    }

    /// See [`Runtime::spawn_blocking`].
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        blocking::spawn_blocking(&self.inner.shared.blocking, f)
    }

    /// See [`Runtime::enter`].
    pub fn enter(&self) -> EnterGuard {
        context::enter(self.inner.clone())
    }

    /// See [`Runtime::block_on`].
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _guard = context::enter_block_on();
        let _enter = self.enter();
        if let Some(slot) = &self.inner.shared.core {
            return scheduler::current_thread::block_on(&self.inner, slot, future);
        }
        let parker = Parker::new();
        let waker = Waker::from(StdArc::new(ThreadWaker(parker.unparker())));
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            if let Poll::Ready(out) = coop::with_budget(|| future.as_mut().poll(&mut cx)) {
                return out;
            }
            parker.park(None);
        }
    }

    /// The io driver the workers run: `Uring` or `Epoll`, never `Auto`.
    pub fn io_driver(&self) -> crate::io::Driver {
        self.inner.shared.io_kind
    }

    /// Whether a worker stuck in a poll has its io_uring ring reaped by
    /// its peers (docs/IO.md, "Peers reap a busy worker's ring"): true on
    /// the work-stealing flavour under io_uring with two or more workers
    /// and the monitor on (it is what finds a worker stuck), when the
    /// process could register for `membarrier` and neither
    /// [`Builder::io_peer_reap(false)`](crate::runtime::Builder::io_peer_reap)
    /// nor `WEFT_IO_PEER_REAP=0` turned it off. False under epoll (whose
    /// peers read a stuck worker's epoll instead), on the thread-per-core
    /// flavour (each ring its worker's alone) and on a current-thread
    /// runtime (its ring entered by whichever thread is in `block_on`).
    pub fn io_peer_reap(&self) -> bool {
        self.inner.shared.remotes.iter().any(|r| r.io.peer_reap())
    }

    /// See [`Runtime::metrics`].
    pub fn metrics(&self) -> RuntimeMetrics {
        metrics::snapshot(&self.inner.shared)
    }

    /// Lists the runtime's live tasks: id, name, state, what each awaits,
    /// its deadline and whether its scope is cancelled. The workers keep
    /// running meanwhile; the [`dump`] module says what the listing is
    /// consistent with.
    ///
    /// ```
    /// # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    /// # rt.block_on(async {
    /// use weft::runtime::Handle;
    /// let (tx, rx) = weft::sync::oneshot::channel::<()>();
    /// let waiter = weft::task::Builder::new().name("waiter").spawn(rx);
    /// weft::time::sleep(std::time::Duration::from_millis(20)).await.unwrap();
    /// let dump = Handle::current().dump();
    /// let task = dump.task(waiter.id()).unwrap();
    /// assert_eq!(task.name(), Some("waiter"));
    /// assert_eq!(task.awaiting().to_string(), "oneshot recv");
    /// println!("{dump}");
    /// # drop(tx);
    /// # });
    /// ```
    pub fn dump(&self) -> dump::TaskDump {
        dump::take(&self.inner.shared)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

struct ThreadWaker(Unparker);

impl Wake for ThreadWaker {
    fn wake(self: StdArc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &StdArc<Self>) {
        self.0.unpark();
    }
}
