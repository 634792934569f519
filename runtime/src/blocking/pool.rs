//! The pool: a FIFO of jobs under one mutex, and the threads that drain it.
//! The protocol is described in the module docs (`blocking/mod.rs`).

use std::{
    collections::{HashMap, VecDeque},
    fmt, io, mem,
    panic::{self, AssertUnwindSafe},
    sync::PoisonError,
    time::{Duration, Instant},
};

use super::BlockingConfig;
use crate::facade::{lock, thread, Arc, Condvar, Mutex, MutexGuard};

/// A unit of blocking work. Whatever the caller wants back (the output, a
/// panic) it sends through a channel captured by the closure.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// The `spawn_blocking` thread pool. Cloning shares the same pool.
#[derive(Clone)]
pub(crate) struct BlockingPool {
    shared: Arc<Shared>,
}

/// A snapshot of the pool's counters, all read under one lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockingMetrics {
    /// Threads started and not yet exited, including detached ones.
    pub(crate) threads_alive: usize,
    /// Threads waiting for a job that no `spawn` has claimed yet.
    pub(crate) threads_idle: usize,
    /// Jobs waiting for a thread.
    pub(crate) queue_depth: usize,
    /// Jobs that ran to the end, panicking ones included.
    pub(crate) jobs_completed: u64,
    /// Threads `shutdown` gave up waiting for and detached.
    pub(crate) threads_detached: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Idle workers wait here; `spawn` notifies one per claimed idle worker,
    /// `shutdown` notifies all.
    work_available: Condvar,
    /// `shutdown` waits here; the worker that brings `threads` to 0 notifies.
    all_exited: Condvar,
    config: BlockingConfig,
}

/// Everything mutable, under `Shared::state`.
struct State {
    queue: VecDeque<Job>,
    /// Set once by `shutdown`; afterwards `spawn` refuses and `queue` stays
    /// empty.
    shutdown: bool,
    /// Workers started and not yet through `WorkerExit`.
    threads: usize,
    /// Workers waiting on `work_available` and not claimed by a `spawn`.
    idle: usize,
    /// Wakeups `spawn` has handed out and no worker has taken yet. Whichever
    /// idle worker wakes first takes one; a worker that wakes and finds none
    /// was woken spuriously, by shutdown, or by its keep-alive.
    notified: usize,
    jobs_completed: u64,
    threads_detached: usize,
    next_worker_id: usize,
    /// Join handles of workers that have not exited yet, by worker id.
    workers: HashMap<usize, thread::JoinHandle<()>>,
    /// The most recently exited worker, joined by the next one to exit or by
    /// `shutdown`, so every exited thread is joined without a growing list.
    last_exited: Option<thread::JoinHandle<()>>,
}

impl BlockingPool {
    /// Creates an empty pool; threads start on demand.
    ///
    /// # Panics
    ///
    /// If `config.max_threads` is 0.
    pub(crate) fn new(config: BlockingConfig) -> Self {
        assert!(
            config.max_threads > 0,
            "the blocking pool needs max_threads >= 1"
        );
        let state = State {
            queue: VecDeque::new(),
            shutdown: false,
            threads: 0,
            idle: 0,
            notified: 0,
            jobs_completed: 0,
            threads_detached: 0,
            next_worker_id: 0,
            workers: HashMap::new(),
            last_exited: None,
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                work_available: Condvar::new(),
                all_exited: Condvar::new(),
                config,
            }),
        }
    }

    /// Queues `job` to run on a pool thread.
    ///
    /// Hands it to an idle thread if there is one, else starts a thread if
    /// fewer than `max_threads` exist, else leaves it queued for the next
    /// thread to finish its job. Returns the job in `Err` once shutdown has
    /// begun, and when the OS refuses a thread while none exists (nothing
    /// could ever run it); if the OS refuses while other threads exist, the
    /// job stays queued and they run it.
    pub(crate) fn spawn(&self, job: Job) -> Result<(), Job> {
        let mut state = lock(&self.shared.state);
        if state.shutdown {
            return Err(job);
        }
        state.queue.push_back(job);
        if state.idle > 0 {
            // Claim the idle worker here rather than let it count itself out
            // when it wakes: a burst of spawns must not all count on it.
            state.idle -= 1;
            state.notified += 1;
            self.shared.work_available.notify_one();
        } else if state.threads < self.shared.config.max_threads {
            if let Err(_os_refused) = self.start_worker(&mut state) {
                if state.threads == 0 {
                    // No thread exists, so the queue held nothing but this job.
                    return Err(state.queue.pop_back().expect("the job just queued"));
                }
                // The threads that exist will run it; the pool is just smaller.
            }
        }
        Ok(())
    }

    /// Stops the pool: refuses new jobs, drops queued ones that no thread has
    /// started, and waits up to `timeout` (`None`: forever) for running jobs
    /// to finish and their threads to exit.
    ///
    /// Returns `true` if every thread exited and was joined. Threads still
    /// inside a job at the deadline are detached and counted in
    /// [`BlockingMetrics::threads_detached`]. Idempotent: a later call waits
    /// again for whatever threads are left. Must not be called from a pool
    /// thread, which would wait for itself until the timeout.
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut state = lock(&self.shared.state);
        state.shutdown = true;
        let queued = mem::take(&mut state.queue);
        self.shared.work_available.notify_all();
        drop(state);
        // Outside the lock: dropping a job runs its owner's code (it tells a
        // JoinHandle the job was cancelled), which may touch the pool.
        drop(queued);

        let mut state = lock(&self.shared.state);
        while state.threads > 0 {
            state = match deadline {
                None => wait(&self.shared.all_exited, state),
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => {
                        wait_timeout(&self.shared.all_exited, state, left)
                    }
                    _ => break,
                },
            };
        }
        let all_exited = state.threads == 0;
        // Empty if all exited: each worker removes its own handle on exit.
        let still_running = mem::take(&mut state.workers);
        state.threads_detached += still_running.len();
        let last_exited = state.last_exited.take();
        drop(state);
        drop(still_running);
        if let Some(handle) = last_exited {
            // Its thread is past all pool code; this waits for its TLS
            // destructors and for the join it does of its predecessor.
            let _ = handle.join();
        }
        all_exited
    }

    /// The pool's counters, read together under its lock.
    pub(crate) fn metrics(&self) -> BlockingMetrics {
        let state = lock(&self.shared.state);
        BlockingMetrics {
            threads_alive: state.threads,
            threads_idle: state.idle,
            queue_depth: state.queue.len(),
            jobs_completed: state.jobs_completed,
            threads_detached: state.threads_detached,
        }
    }

    /// Starts one worker. Called with the lock held, so the new thread cannot
    /// exit (it needs the lock) before its handle is in `workers`.
    fn start_worker(&self, state: &mut State) -> io::Result<()> {
        let config = &self.shared.config;
        let mut builder = thread::Builder::new().name((config.thread_name)());
        if let Some(size) = config.stack_size {
            builder = builder.stack_size(size);
        }
        let id = state.next_worker_id;
        let shared = Arc::clone(&self.shared);
        let handle = builder.spawn(move || run_worker(&shared, id))?;
        state.next_worker_id += 1;
        state.threads += 1;
        state.workers.insert(id, handle);
        Ok(())
    }
}

/// A worker thread's whole life.
fn run_worker(shared: &Shared, id: usize) {
    // On return and on unwind (a panicking hook), so `threads` stays true.
    let _exit = WorkerExit { shared, id };
    if let Some(hook) = &shared.config.on_thread_start {
        hook();
    }
    serve(shared);
    if let Some(hook) = &shared.config.on_thread_stop {
        hook();
    }
}

/// Runs jobs until shutdown or until `keep_alive` passes without one.
fn serve(shared: &Shared) {
    let keep_alive = shared.config.keep_alive;
    let mut state = lock(&shared.state);
    'work: loop {
        while let Some(job) = state.queue.pop_front() {
            drop(state);
            // The job's owner learns of a panic through its own channel; here
            // it must only not take the thread, or the counts, with it.
            let _ = panic::catch_unwind(AssertUnwindSafe(job));
            state = lock(&shared.state);
            state.jobs_completed += 1;
        }
        if state.shutdown {
            return;
        }

        state.idle += 1;
        // A deadline, not a timeout per wait, so spurious wakeups do not
        // extend a thread's idle life.
        let idle_until = Instant::now().checked_add(keep_alive);
        loop {
            let left = idle_until.map_or(Duration::MAX, |t| {
                t.saturating_duration_since(Instant::now())
            });
            state = wait_timeout(&shared.work_available, state, left);
            if state.notified > 0 {
                // `spawn` already took us out of `idle`.
                state.notified -= 1;
                continue 'work;
            }
            let expired = idle_until.is_some_and(|t| Instant::now() >= t);
            if state.shutdown || expired {
                state.idle -= 1;
                return;
            }
        }
    }
}

/// A worker's exit bookkeeping, run by `Drop` so it also runs on unwind.
struct WorkerExit<'a> {
    shared: &'a Shared,
    id: usize,
}

impl Drop for WorkerExit<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.threads -= 1;
        // `None` if shutdown already detached this thread.
        let previous = match state.workers.remove(&self.id) {
            Some(own) => state.last_exited.replace(own),
            None => None,
        };
        if state.threads == 0 {
            self.shared.all_exited.notify_all();
        }
        drop(state);
        if let Some(previous) = previous {
            let _ = previous.join();
        }
    }
}

fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    match condvar.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool")
            .field("config", &self.shared.config)
            .field("metrics", &self.metrics())
            .finish()
    }
}
