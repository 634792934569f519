use crate::scheduler::Shared;

/// A point-in-time view of a runtime's counters.
///
/// Per-worker counters are written by their worker without synchronisation
/// beyond atomicity, so a snapshot taken while the runtime runs is a
/// consistent view of each counter, not of all counters at one instant.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    /// Worker threads.
    pub workers: usize,
    /// Tasks spawned and not yet finished (blocking tasks excluded).
    pub alive_tasks: usize,
    /// Tasks waiting in the global injector queue.
    pub injector_depth: usize,
    /// Workers currently parked.
    pub parked_workers: usize,
    /// Workers currently searching for work to steal.
    pub searching_workers: usize,
    /// Timers registered and not yet fired.
    pub timers_pending: usize,
    /// Timers fired since start.
    pub timers_fired: usize,
    /// Threads in the blocking pool.
    pub blocking_threads: usize,
    /// Idle threads in the blocking pool.
    pub blocking_idle_threads: usize,
    /// Blocking jobs waiting for a thread.
    pub blocking_queue_depth: usize,
    /// The io driver the workers run.
    pub io_driver: crate::io::Driver,
    /// io_uring operations the rings still own, including cancelled ones
    /// whose completion has not arrived yet (0 under epoll).
    pub io_ops_in_flight: usize,
    /// Sockets registered with the epoll drivers (0 under io_uring).
    pub io_registered_sockets: usize,
    /// Relief workers running now: started by the monitor while every
    /// worker was stuck in a poll, they retire once one of those polls
    /// returns (see `Builder::stuck_poll_threshold`).
    pub relief_workers: usize,
    /// Relief workers started since the runtime started.
    pub relief_workers_started: u64,
    /// Stuck polls reported on relief workers (those on the workers are in
    /// [`WorkerMetrics::stuck_polls`]).
    pub relief_stuck_polls: u64,
    /// One entry per worker.
    pub worker: Vec<WorkerMetrics>,
}

/// One worker's counters since start.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// Task polls.
    pub polls: u64,
    /// Tasks taken from other workers' queues.
    pub steals: u64,
    /// Steal operations tried (one per victim visited).
    pub steal_attempts: u64,
    /// Times the worker parked.
    pub parks: u64,
    /// Polls of the task in the LIFO slot.
    pub lifo_hits: u64,
    /// Tasks taken from the injector.
    pub injector_pops: u64,
    /// Polls ended because a task spent its whole coop budget.
    pub budget_forced_yields: u64,
    /// Tasks in the worker's run queue now.
    pub local_queue_depth: usize,
    /// io_uring operations submitted to this worker's ring (0 under epoll).
    pub io_submissions: u64,
    /// io_uring completions delivered, or epoll readiness events
    /// dispatched, by this worker.
    pub io_completions: u64,
    /// Times this worker entered its driver: `io_uring_enter` or
    /// `epoll_wait` calls.
    pub io_enters: u64,
    /// Bytes of freed task and node blocks the worker keeps for reuse, as
    /// of its last park or wake. A burst of spawns can leave up to 1 MiB
    /// per size class; a worker parked for a second gives all but 64 KiB
    /// per class back to malloc.
    pub alloc_cache_bytes: u64,
    /// Polls on this worker that ran past `Builder::stuck_poll_threshold`
    /// (each reported once, while it ran).
    pub stuck_polls: u64,
}

impl RuntimeMetrics {
    /// Sum of `polls` over the workers.
    pub fn total_polls(&self) -> u64 {
        self.worker.iter().map(|w| w.polls).sum()
    }

    /// Sum of `steals` over the workers.
    pub fn total_steals(&self) -> u64 {
        self.worker.iter().map(|w| w.steals).sum()
    }

    /// Stuck polls reported, on the workers and on relief workers.
    pub fn total_stuck_polls(&self) -> u64 {
        self.worker.iter().map(|w| w.stuck_polls).sum::<u64>() + self.relief_stuck_polls
    }

    /// Sum of `budget_forced_yields` over the workers.
    pub fn total_budget_forced_yields(&self) -> u64 {
        self.worker.iter().map(|w| w.budget_forced_yields).sum()
    }
}

pub(super) fn snapshot(shared: &Shared) -> RuntimeMetrics {
    let blocking = shared.blocking.metrics();
    let (relief_workers, relief_workers_started) = shared.monitor.relief_counts();
    RuntimeMetrics {
        relief_workers,
        relief_workers_started,
        relief_stuck_polls: shared.monitor.relief_stuck_polls(),
        workers: shared.remotes.len(),
        alive_tasks: shared.owned.len(),
        injector_depth: shared.injector.len(),
        parked_workers: shared.idle.num_parked(),
        searching_workers: shared.idle.num_searching(),
        timers_pending: shared.time.pending_count(),
        timers_fired: shared.time.fired_count(),
        blocking_threads: blocking.threads_alive,
        blocking_idle_threads: blocking.threads_idle,
        blocking_queue_depth: blocking.queue_depth,
        io_driver: shared.io_kind,
        io_ops_in_flight: shared.remotes.iter().map(|r| r.io.in_flight()).sum(),
        io_registered_sockets: shared.remotes.iter().map(|r| r.io.registered()).sum(),
        worker: shared
            .remotes
            .iter()
            .map(|r| {
                let (io_submissions, io_completions, io_enters) = r.io.counters();
                WorkerMetrics {
                    polls: r.metrics.polls.get(),
                    steals: r.metrics.steals.get(),
                    steal_attempts: r.metrics.steal_attempts.get(),
                    parks: r.metrics.parks.get(),
                    lifo_hits: r.metrics.lifo_hits.get(),
                    injector_pops: r.metrics.injector_pops.get(),
                    budget_forced_yields: r.metrics.budget_forced_yields.get(),
                    local_queue_depth: r.stealer.len(),
                    io_submissions,
                    io_completions,
                    io_enters,
                    alloc_cache_bytes: r.metrics.alloc_cache_bytes.get(),
                    stuck_polls: r.watch.stuck_polls(),
                }
            })
            .collect(),
    }
}
