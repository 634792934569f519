use std::sync::atomic::Ordering::Relaxed;

use super::{histogram::HistogramSnapshot, ticks};
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
    /// Slots of the io_uring rings' registered-file tables in use: sockets
    /// whose operations name a slot instead of their fd
    /// (`Builder::io_registered_files`). Back to 0 once those sockets are
    /// dropped (0 under epoll).
    pub io_registered_files: usize,
    /// Pooled receive buffers out of the workers' pools: held by user code
    /// as `RecvBuf`s, or queued in a `RecvStream` for it (docs/IO.md,
    /// "Pooled receive"). Back to 0 once they are all dropped.
    pub recv_buffers_out: usize,
    /// Times an io_uring multishot receive ended because its worker's
    /// provided buffer ring was empty (`ENOBUFS`; the stream went on with
    /// heap buffers). Always 0 under epoll.
    pub recv_ring_exhausted: u64,
    /// One task schedule in this many is sampled for the `poll_duration`
    /// and `schedule_latency` histograms (`Builder::histogram_sample_interval`);
    /// 0 when they are off (`Builder::histograms(false)`).
    pub histogram_sample_interval: u32,
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
    /// Tasks this worker moved to the injector because its run queue (a
    /// fixed ring of 256) was full: half the ring at a time, as Go's
    /// `runqputslow` and tokio do. Steady growth means bursts larger than
    /// the ring.
    pub local_queue_overflows: u64,
    /// Tasks this worker handed to an awake peer right after its own io
    /// woke it from a park (io consolidation: a lightly loaded runtime
    /// gathers its connections on fewer rings, so fewer workers wake per
    /// request; see docs/ARCHITECTURE.md).
    pub io_handoffs: u64,
    /// Io wakes, by this worker's io, of tasks whose polls run long (see
    /// docs/IO.md, "Long polls"): each went to a peer that was not in a
    /// long poll itself (its hand-off list), or, with every peer in one,
    /// to this worker's run queue, where the first free worker takes it.
    pub long_poll_wakes: u64,
    /// Polls ended because a task spent its whole coop budget.
    pub budget_forced_yields: u64,
    /// Parks this worker cut short to look again at a peer that was inside
    /// a poll with work behind it when the park began (tasks in its run
    /// queue, or io peers may take), and that was still inside that poll:
    /// the worker then took that work (work-stealing flavour with the
    /// monitor on; see docs/ARCHITECTURE.md, "The monitor").
    pub park_watch_hits: u64,
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
    /// Readiness events of this worker's sockets (epoll), or completions
    /// of operations on its ring (io_uring), that a peer took and
    /// dispatched because this worker was inside one poll for
    /// `Builder::steal_age` or more (the kernel kept it off its CPU, or
    /// the poll ran long). Under io_uring only on the work-stealing
    /// flavour, where rings are set up for it (docs/IO.md, "Peers reap a
    /// busy worker's ring").
    pub io_peer_reaped: u64,
    /// Times the monitor handed this worker's io_uring submission queue to
    /// the kernel because the worker was inside a poll it marked stalled:
    /// the operations the worker's tasks queued before that poll (their
    /// replies) go out then instead of after it. Work-stealing flavour
    /// only, as `io_peer_reaped`; always 0 under epoll, whose sends are
    /// system calls the tasks make themselves.
    pub io_submitted_for_stuck: u64,
    /// Bytes of freed task and node blocks the worker keeps for reuse, as
    /// of its last park or wake. A burst of spawns can leave up to 1 MiB
    /// per size class; a worker parked for a second gives all but 64 KiB
    /// per class back to malloc.
    pub alloc_cache_bytes: u64,
    /// How long the sampled polls on this worker ran: from just before the
    /// task's `poll` to just after it returned (the harness's state
    /// transitions included). One schedule in
    /// `RuntimeMetrics::histogram_sample_interval` is sampled, so the count
    /// is about `polls` divided by that; with an interval of 1 it equals
    /// the polls of tasks whose schedule went through the scheduler (all
    /// but none in practice: spawns and wakes both do).
    pub poll_duration: HistogramSnapshot,
    /// How long the sampled tasks polled here waited: from being queued
    /// (spawned, woken, or yielding) to the start of their poll, wherever
    /// they were queued (this worker, another, the injector).
    pub schedule_latency: HistogramSnapshot,
    /// io_uring: how long operations on this worker's ring took, from
    /// entering the submission queue to the completion being reaped; one
    /// operation in `Builder::histogram_sample_interval` is timed
    /// (multishot operations are not), none with histograms off. epoll:
    /// how long a socket direction was waited on, from the first operation
    /// that found it not ready to the readiness event that ended the wait;
    /// every wait is counted, also with histograms off.
    pub io_op_latency: HistogramSnapshot,
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

    /// Every worker's `poll_duration`, merged.
    pub fn poll_duration(&self) -> HistogramSnapshot {
        self.merged(|w| &w.poll_duration)
    }

    /// Every worker's `schedule_latency`, merged.
    pub fn schedule_latency(&self) -> HistogramSnapshot {
        self.merged(|w| &w.schedule_latency)
    }

    /// Every worker's `io_op_latency`, merged.
    pub fn io_op_latency(&self) -> HistogramSnapshot {
        self.merged(|w| &w.io_op_latency)
    }

    fn merged(&self, of: impl Fn(&WorkerMetrics) -> &HistogramSnapshot) -> HistogramSnapshot {
        let mut all = HistogramSnapshot::default();
        for worker in &self.worker {
            all.merge(of(worker));
        }
        all
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
    let interval = shared.config.histogram_interval;
    // Every histogram counts `ticks`; the rate is measured once per
    // snapshot.
    let scale = ticks::nanos_per_tick();
    RuntimeMetrics {
        relief_workers,
        relief_workers_started,
        relief_stuck_polls: shared.monitor.relief_stuck_polls(),
        histogram_sample_interval: interval,
        workers: shared.remotes.len(),
        alive_tasks: shared.owned.len()
            + shared
                .remotes
                .iter()
                .map(|r| r.local_owned.len())
                .sum::<usize>(),
        injector_depth: shared.injector.len()
            + shared.remotes.iter().map(|r| r.inbox.len()).sum::<usize>(),
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
        io_registered_files: shared.remotes.iter().map(|r| r.io.fixed_files()).sum(),
        recv_buffers_out: shared
            .remotes
            .iter()
            .map(|r| r.io.recv_pools().stats.out.load(Relaxed))
            .sum(),
        recv_ring_exhausted: shared
            .remotes
            .iter()
            .map(|r| r.io.recv_pools().stats.ring_exhausted.load(Relaxed))
            .sum(),
        worker: shared
            .remotes
            .iter()
            .map(|r| {
                let (io_submissions, io_completions, io_enters) = r.io.counters();
                WorkerMetrics {
                    // One of the two counts, the other is 0: the
                    // monitor's poll counter when it is on.
                    polls: r.metrics.polls.get() + r.watch.polls(),
                    steals: r.metrics.steals.get(),
                    steal_attempts: r.metrics.steal_attempts.get(),
                    parks: r.metrics.parks.get(),
                    lifo_hits: r.metrics.lifo_hits.get(),
                    injector_pops: r.metrics.injector_pops.get(),
                    local_queue_overflows: r.metrics.local_queue_overflows.get(),
                    io_handoffs: r.metrics.io_handoffs.get(),
                    long_poll_wakes: r.metrics.long_poll_wakes.get(),
                    budget_forced_yields: r.metrics.budget_forced_yields.get(),
                    park_watch_hits: r.metrics.park_watch_hits.get(),
                    local_queue_depth: r.stealer.len(),
                    io_submissions,
                    io_completions,
                    io_enters,
                    io_peer_reaped: r.io.peer_reaped(),
                    io_submitted_for_stuck: r.io.submitted_for_owner(),
                    alloc_cache_bytes: r.metrics.alloc_cache_bytes.get(),
                    poll_duration: r.metrics.poll_duration.snapshot(scale),
                    schedule_latency: r.metrics.schedule_latency.snapshot(scale),
                    io_op_latency: r.io.op_latency().snapshot(scale),
                    stuck_polls: r.watch.stuck_polls(),
                }
            })
            .collect(),
    }
}
