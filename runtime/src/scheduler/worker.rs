//! One worker thread: its queues and its run loop.

use std::{
    cell::{Cell, RefCell},
    time::Instant,
};

use crossbeam_deque::{Injector, Steal};

use super::{metrics, park::Parker, queue::Local, Handle, ScheduleSampler, Shared, WorkerMetrics};
use crate::{
    context,
    facade::{atomic::Ordering::*, Arc},
    io::WorkerIo,
    runtime::ticks,
    task::Notified,
};

/// The most tasks one pull from the injector moves to the local queue. A
/// pull takes its fair share (`len / workers + 1`) up to this cap, as
/// tokio does: with a cap of 32, a burst of remote spawns competing with
/// yielding tasks (`spawn_many_remote_busy`) paid an extra round of the
/// yielders for every 32 spawns, and ran 1.3x tokio's time; at 128 it runs
/// in half of tokio's.
const INJECTOR_BATCH: usize = 128;

/// The most tasks one chunk of an injector pull brings over (see
/// `pull_batch`): crossbeam's `Worker` starts with 64 slots and grows past
/// them, so a chunk leaves at most 63 in it besides the one returned.
const PULL_CHUNK: usize = 64;

/// Batches a worker takes at once from a victim stuck in a poll (each
/// half of what is left in its queue).
const STALLED_DRAIN_BATCHES: usize = 64;

/// Room reserved for the tasks that yield within one round (`deferred`).
const DEFERRED_ROOM: usize = 32;

/// A peer's run queue this long is taken from at once, without waiting for
/// `steal_age` (see [`WorkerCtx::behind`]): a backlog that spreading pays
/// for (the scheduler bench's `yield_many` cycles hundreds of tasks through
/// a queue in less than the age, and ran 50% longer with the wait alone).
const BACKLOG: usize = 8;

/// The idle spin looks at the injector every round (a `sched_yield`, about
/// a microsecond) but at the peers' run queues only every this many: each
/// look at a busy peer's queue positions takes that cache line from its
/// owner, which then misses on its next push or pop. Checking every round
/// cost the `Notify` round trip bench 4–5% (one task pair ping-ponging on
/// one worker through its LIFO slot while the other spun); a task waiting
/// in a peer's queue is seen a few microseconds later, well inside the
/// 20 µs `steal_age` it waits anyway.
const SPIN_PEER_LOOK_EVERY: u32 = 8;

/// A peer's run queue as an idle worker saw it: the position past its last
/// task, and when.
type Sighting = (u32, Instant);

/// A peer's poll counter as last seen (odd: inside that poll), and when.
type PollSighting = (u64, Instant);

/// A worker's own state. Lives on its thread's stack; other threads reach the
/// worker only through `Remote`.
pub(crate) struct WorkerCtx {
    index: usize,
    handle: Handle,
    local: Local<Notified>,
    /// Carries injector pulls to `local` (see `pull_batch`); empty between
    /// pulls.
    pull_scratch: crossbeam_deque::Worker<Notified>,
    /// The LIFO slot (stealable while this worker is stuck in a poll) and
    /// the poll counter the monitor samples; also in `Remote::watch`.
    watch: std::sync::Arc<super::monitor::WorkerWatch>,
    /// `Builder::monitor`: publish each poll to the monitor.
    watched: bool,
    /// Tasks that yielded (or were woken during their own poll). They run
    /// after the local queue and the injector are empty, or every
    /// `event_interval` ticks, whichever comes first: a yield lets remote
    /// spawns in ahead of it instead of competing with them.
    deferred: Cell<Vec<Notified>>,
    lifo_streak: Cell<u8>,
    /// Polls until the next timed one (`run_sampled`), its generator's
    /// state, and whether this flavour samples at all.
    poll_sample_in: Cell<u32>,
    sample_rng: Cell<u32>,
    samples_polls: bool,
    /// Per peer: the end of its run queue when this worker last saw tasks
    /// there, and when (see [`behind`](Self::behind)).
    sightings: Box<[Cell<Option<Sighting>>]>,
    /// Per peer: the poll it was inside when this worker last looked, and
    /// when (see [`poll_outlasted`](Self::poll_outlasted): for its io,
    /// `peer_io_stuck`, and the tasks handed to it, `behind`). Empty
    /// unless the monitor is on and tasks move between workers.
    poll_sightings: Box<[Cell<Option<PollSighting>>]>,
    tick: Cell<u32>,
    searching: Cell<bool>,
    rng: Cell<u64>,
    parker: Parker,
    /// The io driver this worker parks in (borrowed while parking or
    /// polling it; see `io::with_local_uring`).
    io: RefCell<WorkerIo>,
    /// The last park was ended by this worker's own io within `SHORT_PARK`
    /// (adaptive spinning: a request chain's rhythm, not a steal or timer).
    last_park_short: Cell<bool>,
    /// The last spin found work (adaptive spinning).
    last_spin_hit: Cell<bool>,
    /// Adaptive spinning backs off after spins that found nothing: the
    /// parks left to skip before the next spin, and the current backoff.
    spin_skips: Cell<u32>,
    spin_backoff: Cell<u32>,
    /// `spin_for_work`'s own back-off (without io in flight): chances
    /// left to skip after spins that found nothing, and the skip count
    /// the next miss doubles.
    idle_spin_skips: Cell<u32>,
    idle_spin_backoff: Cell<u32>,
    /// The last `spin_for_work` was skipped by its back-off: the park
    /// after it watches as a worker with io does (see
    /// [`arm_park_watch`](Self::arm_park_watch)).
    idle_spin_skipped: Cell<bool>,
    /// The park watch's back-off (see [`arm_park_watch`](Self::arm_park_watch)):
    /// watches left to skip after watches that found the peer's poll
    /// over, and the skip count the next such miss doubles.
    watch_skips: Cell<u32>,
    watch_backoff: Cell<u32>,
    /// The peer's poll the last watch that ran its course was for, and
    /// this worker's own poll counter then: that poll is watched again only
    /// if this worker polled since (the watch found work).
    watched_poll: Cell<Option<(usize, u64, u64)>>,
    /// Per lower-indexed peer: its poll counter as this worker's parks
    /// found it, and when (`runtime::ticks`) a park first found that
    /// value: a peer still inside that poll [`ticks::LONG_POLL`] later is
    /// in a long poll (see [`in_long_poll_seen`](Self::in_long_poll_seen)).
    /// Empty where nothing is handed off.
    seen_at_park: Box<[Cell<(u64, u64)>]>,
    /// The allocation cache was trimmed and no task ran since: the next
    /// park need not wake up to trim again.
    cache_trimmed: Cell<bool>,
    /// Strong counts of `handle.shared` this worker holds for the tasks it
    /// will spawn or has freed (see `TaskHandle`); given back on exit.
    handle_credits: Cell<usize>,
    /// Set while this worker polls or parks in its io driver: the tasks its
    /// completions wake stay here without waking a peer (io affinity; see
    /// `with_io`).
    in_driver: Cell<bool>,
    /// A task an io pass puts into the empty LIFO slot wakes a backed-off
    /// monitor too, while no worker is parked (io_uring only; see
    /// `schedule_local`).
    io_fills_wake_monitor: bool,
    /// Io affinity's estimate of what one poll costs here, in ticks
    /// (`runtime::ticks`; 0 until measured): a moving average over the
    /// stretches of polls between io passes (see [`AFFINITY_BUDGET`]).
    poll_cost: Cell<u64>,
    /// When the current stretch of polls began (the end of the last io
    /// pass; 0 once the worker ran out of tasks, which ends the stretch
    /// unmeasured), and `tick` then.
    stretch_start: Cell<(u64, u32)>,
    /// [`AFFINITY_BUDGET`] in ticks, once the tick rate is known (0 before).
    budget_ticks: Cell<u64>,
    /// This worker's ring (io_uring), held here so the check after each
    /// poll (`submit_if_stale`) is two loads, not the six through
    /// `shared.remotes`.
    ring: Option<std::sync::Arc<crate::io::uring::Remote>>,
    /// When the last io pass ended (`runtime::ticks`): the submission
    /// queue was handed to the kernel then (see `submit_if_stale`).
    io_pass_at: Cell<u64>,
    /// [`SUBMIT_STALE_AFTER`] in ticks, once the tick rate is known (0
    /// before).
    stale_ticks: Cell<u64>,
    /// Picks the schedules from this worker sampled for the histograms.
    schedule_sampler: ScheduleSampler,
}

impl Drop for WorkerCtx {
    fn drop(&mut self) {
        let ptr = Arc::as_ptr(&self.handle.shared);
        for _ in 0..self.handle_credits.take() {
            // SAFETY: counts this worker took and still holds; our own
            // `handle` keeps one more, dropped after this.
            unsafe { Arc::decrement_strong_count(ptr) };
        }
    }
}

/// Counts of the runtime's `Shared` a worker takes at once.
const HANDLE_CREDIT_BATCH: usize = 64;
/// The most credits a worker keeps; beyond, it gives back
/// [`HANDLE_CREDIT_RETURN`] at once. A held count costs nothing (all come
/// back when the worker exits), while each count given back is one RMW on
/// the line every worker gives back to: a worker that only frees tasks (the
/// other one spawns them) gave back 64 at a time, and both workers' bursts
/// on that one line were 3-4% of a 100,000-task cancel.
const HANDLE_CREDIT_MAX: usize = 1 << 16;
const HANDLE_CREDIT_RETURN: usize = 1024;

/// Adaptive spinning (`Builder::io_spin_adaptive`): polls per spin, the most
/// io a worker may have in flight to spin, and what counts as a short park.
const ADAPTIVE_SPINS: u32 = 100;
const ADAPTIVE_SPIN_MAX_LOAD: usize = 2;
const SHORT_PARK: std::time::Duration = std::time::Duration::from_micros(200);
/// The most spin chances adaptive spinning skips after misses in a row.
const ADAPTIVE_SPIN_MAX_BACKOFF: u32 = 64;

/// A worker hands its submission queue to the kernel after a poll when
/// its last io pass is this long ago (io_uring; see
/// [`WorkerCtx::submit_if_stale`]): longer than the `event_interval` polls
/// between passes take when they are short (61 polls of a 256-connection
/// echo, ≈ 3 µs each), short against a poll that holds up replies.
const SUBMIT_STALE_AFTER: std::time::Duration = std::time::Duration::from_micros(250);

/// How long a worker parks, at most, while a peer is inside a poll with
/// work behind it (see [`WorkerCtx::arm_park_watch`]), before it looks
/// whether that poll is still running.
const PARK_WATCH: std::time::Duration = std::time::Duration::from_micros(50);

/// Io affinity: after a pass of its io driver a worker wakes a parked peer
/// to steal only when it is really behind: when the tasks in its run queue
/// would take it longer than this to run, by its running estimate of a
/// poll's cost here (the time between io passes over the polls made in
/// it). Below that, the tasks its completions woke run here, where their
/// next operations go to the same ring, and no other worker is woken (a
/// cross-worker wake costs an `io_uring_enter` or eventfd write here and a
/// context switch there, and the tasks a peer steals take their next
/// operations to its ring, from where io consolidation hands them back).
/// A peer that is awake and searching still steals whatever is queued.
///
/// A count alone (16 tasks, until 2026-12-05) served one kind of load at
/// a time: hyper's hello server under `wrk -t1 -c50`, where 16–50 tasks
/// of ≈ 3 µs each come out of one pass, woke the second worker for most
/// bursts; it stole, the stolen connections' next operations went to its
/// ring, and io consolidation handed them back (≈ 1.0× tokio's requests
/// per second). A count of 64 let one worker serve it (1.2× tokio), but
/// left a peer asleep behind a queue of 100 µs requests (the skewed echo
/// fell from 80 k to 57 k req/s). The estimate is a mean, so a few heavy
/// polls among many light ones count for less than they weigh: at 200 µs
/// the skewed echo fell to 66 k, at 60–100 µs it rose to 85–88 k while
/// the hello server was back to 1.0×; 150 µs kept both (docs/BENCHMARKS.md,
/// "Io affinity counted in time").
///
/// Since then heavy polls have a rule of their own (`before_long_poll`:
/// their io wakes go to a free peer, and a worker about to run one makes
/// its queue stealable at once), and the skewed echo no longer depends on
/// this budget: 102–104 k req/s at 150, 300 and 600 µs alike. The hello
/// server's bursts of 50 light tasks (170 µs of work at ≈ 3.4 µs each)
/// sat just over 150 µs, so about one burst in several still woke the
/// second worker, which stole connections onto its ring and shared wrk's
/// CPU. At 300 µs its p99 holds at 0.28–0.44 ms in every round (0.27–1.13
/// ms at 150 µs) at the same req/s and 2–3% less CPU per request
/// (docs/BENCHMARKS.md, "The io affinity budget at 300 µs"). The price:
/// on a machine with an idle core, a burst of up to 300 µs of light work
/// runs on one worker (a peer that is awake still steals it by the steal
/// rules).
const AFFINITY_BUDGET: std::time::Duration = std::time::Duration::from_micros(300);
/// Tasks woken by a running task (not by io) wake a peer once the queue
/// holds this many times [`AFFINITY_BUDGET`] of work: the tasks that wake
/// each other share what they touch (a channel, a lock, a connection's
/// state), so moving them costs more than it does an io-woken task.
/// Waking a peer for every task pushed (tokio's rule, weft's until
/// 2026-12-05) woke the second worker of the HTTP/2 client about once per
/// request: it stole the request tasks that the connection task had
/// woken, polled them against h2's stream lock, and parked again (14 µs
/// of client CPU per request). At 1× the budget the client spent
/// 8.3 µs per request, at twice the budget 6.7 µs; the scheduler bench
/// did not move with either (docs/BENCHMARKS.md, "Task wakes counted in
/// time").
const TASK_WAKE_BUDGET_FACTOR: usize = 2;
/// Io affinity before the tick rate is known (the first millisecond of a
/// runtime) or the cost of a poll measured: wake a peer at this many tasks.
const AFFINITY_BACKLOG: usize = 16;
/// A stretch of fewer polls than this between io passes leaves the cost
/// estimate as it is (too short to measure against the clock's reads).
const MIN_STRETCH_POLLS: u32 = 4;

/// One poll in this many (on average) is timed to tell long-polling tasks
/// (see `before_long_poll`).
const POLL_SAMPLE_MEAN: u32 = 32;

/// Io consolidation: a worker that its own io woke from a park with at most
/// this many tasks to run hands them to a lower-indexed peer whose run
/// queue is no longer than this, instead of running them itself. Their
/// next operations then go to the peer's ring, so this worker stops being
/// woken for them. Under a light load the connections gather on the first
/// workers, as they do on a runtime with one shared epoll (where the worker
/// that polls runs what it finds), and a request costs no context switch
/// on a second worker; under a heavy load the peer's queue is longer than
/// this, nothing is handed, and stealing spreads the work as before.
const HANDOFF_MAX: usize = 8;

/// The spins' back-off (`spin_on_io`, `spin_for_work`): the chances to
/// skip after a spin. None after a spin that found work; after a miss,
/// twice the last count (1 at first), at most
/// [`ADAPTIVE_SPIN_MAX_BACKOFF`].
fn backoff_after(hit: bool, last: u32) -> u32 {
    if hit {
        0
    } else {
        (last * 2).clamp(1, ADAPTIVE_SPIN_MAX_BACKOFF)
    }
}

/// Io affinity's moving average of a poll's cost: a quarter per stretch
/// (the first stretch sets it).
fn fold_cost(cost: u64, per_poll: u64) -> u64 {
    match cost {
        0 => per_poll,
        _ => cost - cost / 4 + per_poll / 4,
    }
}

/// Io affinity's rule: `queued` tasks of `cost` ticks each take at least
/// `budget` ticks to run; with no cost measured or no budget known yet,
/// at least [`AFFINITY_BACKLOG`] tasks are queued.
fn over_budget(queued: usize, cost: u64, budget: u64) -> bool {
    if cost == 0 || budget == 0 {
        return queued >= AFFINITY_BACKLOG;
    }
    (queued as u64).saturating_mul(cost) >= budget
}

impl WorkerCtx {
    pub(crate) fn new(
        index: usize,
        handle: Handle,
        local: Local<Notified>,
        parker: Parker,
        io: WorkerIo,
    ) -> Self {
        let ring = handle.shared.remotes[index].io.uring();
        WorkerCtx {
            index,
            watch: handle.shared.remotes[index].watch.clone(),
            watched: handle.shared.config.monitor,
            sightings: (0..handle.shared.remotes.len())
                .map(|_| Cell::new(None))
                .collect(),
            samples_polls: !handle.shared.config.pinned && handle.shared.remotes.len() > 1,
            // With the monitor's poll counters to read, and peers to read
            // them of (not on thread-per-core: its tasks never move). Under
            // io_uring a peer's ring may refuse (`DEFER_TASKRUN`):
            // `has_io_for_peers` says so.
            poll_sightings: if handle.shared.config.monitor && !handle.shared.config.pinned {
                (0..handle.shared.remotes.len())
                    .map(|_| Cell::new(None))
                    .collect()
            } else {
                Box::new([])
            },
            // Poll counters move only with the monitor on.
            seen_at_park: if handle.shared.config.monitor
                && handle.shared.remotes.len() > 1
                && !handle.shared.config.pinned
            {
                (0..index).map(|_| Cell::new((0, 0))).collect()
            } else {
                Box::new([])
            },
            handle,
            local,
            pull_scratch: crossbeam_deque::Worker::new_fifo(),
            // Room for the yields of a busy round, so that the first ones
            // (a rare budget exhaustion, in the steady state of a server)
            // allocate nothing.
            deferred: Cell::new(Vec::with_capacity(DEFERRED_ROOM)),
            lifo_streak: Cell::new(0),
            poll_sample_in: Cell::new(POLL_SAMPLE_MEAN),
            sample_rng: Cell::new(0x9E37_79B9 ^ (index as u32).wrapping_mul(0x85EB_CA6B) | 1),
            tick: Cell::new(0),
            searching: Cell::new(false),
            rng: Cell::new(
                0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            ),
            parker,
            io_fills_wake_monitor: matches!(io, WorkerIo::Uring(_)),
            io: RefCell::new(io),
            last_park_short: Cell::new(false),
            last_spin_hit: Cell::new(false),
            spin_skips: Cell::new(0),
            spin_backoff: Cell::new(0),
            idle_spin_skips: Cell::new(0),
            idle_spin_backoff: Cell::new(0),
            idle_spin_skipped: Cell::new(false),
            watch_skips: Cell::new(0),
            watch_backoff: Cell::new(0),
            watched_poll: Cell::new(None),
            cache_trimmed: Cell::new(false),
            handle_credits: Cell::new(0),
            in_driver: Cell::new(false),
            poll_cost: Cell::new(0),
            stretch_start: Cell::new((0, 0)),
            budget_ticks: Cell::new(0),
            ring,
            io_pass_at: Cell::new(0),
            stale_ticks: Cell::new(0),
            schedule_sampler: ScheduleSampler::new(),
        }
    }

    /// A `Handle` for a task spawned on this worker: one of the worker's
    /// credits, taking a batch of counts first if it has none left.
    pub(crate) fn take_handle_credit(&self) -> Handle {
        let ptr = Arc::as_ptr(&self.handle.shared);
        let mut credits = self.handle_credits.get();
        if credits == 0 {
            for _ in 0..HANDLE_CREDIT_BATCH {
                // SAFETY: `ptr` is live: our own `handle` holds a count.
                unsafe { Arc::increment_strong_count(ptr) };
            }
            credits = HANDLE_CREDIT_BATCH;
        }
        self.handle_credits.set(credits - 1);
        // SAFETY: one of the counts taken above (or earlier) moves into the
        // returned `Arc`.
        let shared = unsafe { Arc::from_raw(ptr) };
        Handle { shared }
    }

    /// Keeps the count of a freed task's `Handle` (of this runtime) as a
    /// credit, giving a batch back when there are too many.
    pub(crate) fn return_handle_credit(&self, handle: Handle) {
        debug_assert!(self.belongs_to(&handle.shared));
        let ptr = Arc::into_raw(handle.shared);
        let mut credits = self.handle_credits.get() + 1;
        if credits > HANDLE_CREDIT_MAX {
            for _ in 0..HANDLE_CREDIT_RETURN {
                // SAFETY: counts we hold; never the last (our own `handle`
                // holds one more).
                unsafe { Arc::decrement_strong_count(ptr) };
            }
            credits -= HANDLE_CREDIT_RETURN;
        }
        self.handle_credits.set(credits);
    }

    pub(crate) fn io(&self) -> &RefCell<WorkerIo> {
        &self.io
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    pub(crate) fn belongs_to(&self, shared: &Shared) -> bool {
        std::ptr::eq(self.shared(), shared)
    }

    pub(crate) fn metrics(&self) -> &WorkerMetrics {
        &self.shared().remotes[self.index].metrics
    }

    /// Queues a task on this worker (see the module doc of `scheduler`).
    pub(crate) fn schedule_local(&self, task: Notified, is_yield: bool) {
        metrics::sample_schedule(&self.shared().config, &self.schedule_sampler, &task);
        if is_yield {
            let mut deferred = self.deferred.take();
            deferred.push(task);
            self.deferred.set(deferred);
            return;
        } else if self.in_driver.get() && self.samples_polls && task.header().long_poll() {
            // Woken by this worker's io but polling long: affinity would
            // save a wake worth a few µs of its poll and queue it behind
            // whatever else runs here; any free worker takes it instead
            // (see `before_long_poll`).
            self.schedule_long(task);
            return;
        } else {
            match self.watch.lifo().push(task) {
                None => {
                    // Nothing else queued behind the running poll yet:
                    // the monitor must look soon in case it does not
                    // return (and nobody else is told about this task).
                    // Under epoll, not for a task woken by an io pass: no
                    // poll runs then, and this worker polls the task next.
                    // Under io_uring it does while every worker is awake:
                    // the sampling it starts is what finds this worker
                    // preempted in a later poll (its ring's completions
                    // wait for it, however long the kernel keeps it off a
                    // CPU), and its ticks are reschedule points. Measured
                    // on hyper's hello server under `wrk -t1 -c50`
                    // (docs/BENCHMARKS.md, "Io affinity counted in time"):
                    // under epoll these wakes cost 0.8 µs of CPU per
                    // request and rescued nothing (p99 0.23 ms without,
                    // 0.44 with); under io_uring the p99 was 0.48 ms with
                    // them and 2–4 ms without, then, when the second
                    // worker kept waking to steal. With a worker parked
                    // they only cost (see `Monitor::lifo_filled_by_io`).
                    if !self.in_driver.get() {
                        self.shared().monitor.lifo_filled();
                    } else if self.io_fills_wake_monitor {
                        let shared = self.shared();
                        shared.monitor.lifo_filled_by_io(&shared.idle);
                    }
                    return;
                }
                Some(prev) => self.push_local(prev),
            }
        }
        if self.in_driver.get() {
            // Woken by this worker's io: `with_io` decides once per pass.
            return;
        }
        // Woken by a task running here: a peer is woken only for a queue
        // this worker would take longer than twice `AFFINITY_BUDGET` to
        // run (see [`TASK_WAKE_BUDGET_FACTOR`]); a shorter one it runs
        // itself. A poll that does not return while tasks wait behind it
        // is the monitor's to find; without the monitor, every push wakes
        // a peer, which takes the queue once it is `behind`.
        if !self.watched || self.behind_by_budget(self.local.len() / TASK_WAKE_BUDGET_FACTOR) {
            self.shared().notify_parked();
        }
    }

    /// Runs `f` (a pass of the io driver) with io affinity on: the tasks it
    /// wakes stay on this worker unless it falls behind (see
    /// [`AFFINITY_BUDGET`]).
    fn with_io<R>(&self, f: impl FnOnce() -> R) -> R {
        self.end_stretch();
        self.in_driver.set(true);
        let out = f();
        self.in_driver.set(false);
        let now = ticks::now();
        self.io_pass_at.set(now);
        self.stretch_start.set((now, self.tick.get()));
        let queued = self.local.len();
        if queued > 1 && self.behind_by_budget(queued) {
            self.shared().notify_parked();
        }
        out
    }

    /// Ends the stretch of polls since the last io pass: folds its cost
    /// per poll into `poll_cost` (a moving average, a quarter per
    /// stretch).
    #[inline]
    fn end_stretch(&self) {
        let (start, start_tick) = self.stretch_start.get();
        let polls = self.tick.get().wrapping_sub(start_tick);
        if start == 0 || polls < MIN_STRETCH_POLLS {
            return;
        }
        let per_poll = ticks::now().saturating_sub(start) / u64::from(polls);
        self.poll_cost
            .set(fold_cost(self.poll_cost.get(), per_poll));
    }

    /// The worker ran out of tasks: the stretch ends here, unmeasured (the
    /// search, spin or park that follows is not polling).
    #[inline]
    fn idle_stretch(&self) {
        self.stretch_start.set((0, 0));
    }

    /// True if `queued` tasks would take this worker longer than
    /// [`AFFINITY_BUDGET`] (see there); by count until that can be told.
    fn behind_by_budget(&self, queued: usize) -> bool {
        let cost = self.poll_cost.get();
        let budget = ticks::cached_ticks_in(&self.budget_ticks, AFFINITY_BUDGET).unwrap_or(0);
        over_budget(queued, cost, budget)
    }

    /// The run loop. Returns at shutdown.
    pub(crate) fn run(&self) {
        let config = self.shared().config;
        loop {
            if self.shared().shutdown.load(Acquire) {
                break;
            }
            let tick = self.tick.get().wrapping_add(1);
            self.tick.set(tick);
            if tick % config.event_interval == 0 {
                // Submit what the last round queued and reap completions.
                let _ = self.with_io(|| self.io.borrow_mut().poll());
                self.shared().fire_timers(self.index);
                self.flush_deferred();
            }
            let task = self
                .next_local_task(tick)
                .or_else(|| self.reap_before_steal(tick))
                .or_else(|| self.steal_work());
            match task {
                Some(task) => self.run_task(task),
                None => {
                    self.idle_stretch();
                    if !self.spin_on_io() && !self.spin_for_work() {
                        self.park()
                    }
                }
            }
        }
        self.drain();
    }

    /// One round of a current-thread core (`current_thread.rs`): a tick
    /// of [`run`](Self::run) without stealing (there is no one to steal
    /// from), and no park while `woken` is set (the `block_on` future
    /// waits for its poll). False at shutdown, with the queues drained.
    /// Kept next to `run` so the two loops change together.
    pub(crate) fn run_round(&self, woken: &super::current_thread::WakeFlag) -> bool {
        let config = self.shared().config;
        if self.shared().shutdown.load(Acquire) {
            self.drain();
            return false;
        }
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick % config.event_interval == 0 {
            let _ = self.with_io(|| self.io.borrow_mut().poll());
            self.shared().fire_timers(self.index);
            self.flush_deferred();
        }
        match self.next_local_task(tick) {
            Some(task) => self.run_task(task),
            None => {
                self.idle_stretch();
                // A wake after this look leaves the parker a token (or
                // wakes the driver): see `WakeFlag`.
                if !woken.is_set() && !self.spin_on_io() && !woken.is_set() {
                    self.park()
                }
            }
        }
        true
    }

    /// Drops a current-thread core at shutdown: what is still queued
    /// first (a `block_on` may have returned with tasks ready).
    pub(crate) fn shut_down_core(self: Box<Self>) {
        self.drain();
    }

    // Inlined into each loop (`run`, `run_pinned`, `run_round`): with three
    // callers LLVM stopped inlining it into `run`, which cost yield_many 7%
    // more instructions (callgrind).
    #[inline(always)]
    fn run_task(&self, task: Notified) {
        if self.searching.replace(false) && self.shared().idle.transition_from_searching() {
            // The last searcher found work: more may be coming, wake a peer.
            self.shared().notify_parked();
        }
        self.cache_trimmed.set(false);
        let long = task.header().long_poll() && self.before_long_poll();
        let watched = self.watched;
        // With the monitor on, its poll counter is the polls metric too
        // (`WorkerWatch::polls`): one counter per poll, not two.
        let seq = if watched {
            self.watch.begin_poll(&task)
        } else {
            self.metrics().polls.incr();
            0
        };
        let countdown = self.poll_sample_in.get().wrapping_sub(1);
        self.poll_sample_in.set(countdown);
        if countdown == 0 {
            self.run_sampled(task);
        } else {
            self.poll(task);
        }
        if watched {
            self.watch.end_poll(seq);
        }
        if self.ring.as_ref().is_some_and(|ring| ring.has_queued()) {
            self.submit_if_stale();
        }
        if long {
            self.shared().remotes[self.index].handed.end_long_poll();
        }
    }

    /// After a poll (io_uring): if the last io pass, which handed the
    /// submission queue to the kernel, is [`SUBMIT_STALE_AFTER`] or more
    /// ago, hands it over now. What the tasks polled since then queued
    /// there (their replies) waits otherwise for the next pass, which a
    /// long poll puts off: on the fan-out echo (4 requests of 1 ms in
    /// every round of 32) a worker that ran two of them back to back sent
    /// the first one's reply after the second, and the median request
    /// took 2.1 ms against tokio's 1.1 (whose sends are system calls made
    /// at once). One TSC read per poll; the system call only where the
    /// polls since the pass took that long, which a stream of short polls
    /// rarely does before the pass every `event_interval` ticks comes.
    /// Only when something is queued: a poll that started no io pays a
    /// load of its ring's filter (`Remote::has_queued`), not the clock.
    #[inline]
    fn submit_if_stale(&self) {
        let now = ticks::now();
        if now.saturating_sub(self.io_pass_at.get()) >= self.stale_ticks() {
            self.submit_stale(now);
        }
    }

    #[cold]
    #[inline(never)]
    fn submit_stale(&self, now: u64) {
        self.io.borrow_mut().submit_queued();
        self.io_pass_at.set(now);
    }

    /// [`SUBMIT_STALE_AFTER`] in ticks, once the tick rate is known
    /// (`u64::MAX` before: no early submit).
    #[inline]
    fn stale_ticks(&self) -> u64 {
        ticks::cached_ticks_in(&self.stale_ticks, SUBMIT_STALE_AFTER).unwrap_or(u64::MAX)
    }

    /// Polls `task`, timed for the latency histograms if its schedule was
    /// sampled for them (`metrics::sample_schedule`).
    #[inline(always)]
    fn poll(&self, task: Notified) {
        match task.header().take_woken_at() {
            0 => task.run(),
            woken_at => self.metrics().run_timed(task, woken_at),
        }
    }

    /// Runs `task` timed, to keep its long-poll hint (`Header::long_poll`)
    /// current: one poll in [`POLL_SAMPLE_MEAN`], at random.
    #[cold]
    #[inline(never)]
    fn run_sampled(&self, task: Notified) {
        self.poll_sample_in.set(self.next_sample_gap());
        let raw = task.raw();
        // Hold a reference across the poll: the task may complete and be
        // released by it.
        raw.header().state.ref_inc();
        let started = ticks::now();
        self.poll(task);
        raw.header()
            .note_poll_ticks(ticks::now().saturating_sub(started));
        raw.drop_reference();
    }

    /// Polls until the next sampled one: uniform in
    /// `1..2 * POLL_SAMPLE_MEAN` (xorshift), so no periodic schedule is
    /// always or never sampled. Never 0 on the non-stealing flavours,
    /// which do not use the hint: `u32::MAX` polls apart there.
    fn next_sample_gap(&self) -> u32 {
        if !self.samples_polls {
            return u32::MAX;
        }
        let mut x = self.sample_rng.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.sample_rng.set(x);
        1 + x % (2 * POLL_SAMPLE_MEAN - 1)
    }

    /// A task marked as polling long, woken by this worker's io pass: to
    /// a peer that is not in a long poll itself, through its `handed` list
    /// (room reserved up front, then an unpark), an awake peer first. The
    /// peer takes it where it would look at the injector (`pop_shared`).
    /// When every peer is in a long poll (or stalled, or its list is
    /// full, or it starts a long poll first: the list refuses hand-offs
    /// then, see [`Handed`](super::Handed)), to this worker's run queue,
    /// which is stealable: whichever
    /// worker is free first takes it, as from the injector, and peers
    /// take from a worker in a long poll at once (`behind`). The injector
    /// did all of this before, and its block allocation every 63 pushes
    /// was the skewed echo's 0.003 allocations per request.
    #[cold]
    #[inline(never)]
    fn schedule_long(&self, task: Notified) {
        let shared = self.shared();
        self.metrics().long_poll_wakes.incr();
        let fits = |i: &usize| {
            let r = &shared.remotes[*i];
            *i != self.index && !r.watch.is_stalled() && !r.handed.in_long_poll()
        };
        let peers = 0..shared.remotes.len();
        let peer = peers
            .clone()
            .filter(fits)
            .find(|&i| !shared.remotes[i].parked.load(Relaxed))
            .or_else(|| peers.clone().find(fits));
        let mut task = Some(task);
        if let Some(peer) = peer {
            let remote = &shared.remotes[peer];
            if remote.handed.push_all(1, || task.take()) {
                remote.unparker.unpark();
                return;
            }
        }
        if let Some(task) = task {
            self.push_local(task);
            shared.notify_parked();
        }
    }

    /// About to poll a task marked as polling long (`Header::long_poll`):
    /// whatever completes on this worker's ring during the poll waits for
    /// it (only the owner reaps), and so does its queue. So reap the ring
    /// now, move the LIFO task and the tasks peers handed here to the
    /// stealable queue, and wake a peer if anything is queued; until the
    /// poll returns, peers take from this queue at once (`behind`) and
    /// hand nothing here (the list refuses; io consolidation also skips a
    /// worker whose long poll began within the last millisecond,
    /// `long_poll_at`). With the mark, io wakes of the task go to a free
    /// peer (`schedule_long`). True if the mark applies here.
    #[cold]
    #[inline(never)]
    fn before_long_poll(&self) -> bool {
        let shared = self.shared();
        if !self.samples_polls {
            return false;
        }
        // Tasks handed here before the mark would wait in the list until
        // a peer saw the poll outlast `steal_age` (or the monitor marked
        // it): to the stealable queue with the rest, at once (and
        // hand-offs are refused from now on).
        shared.remotes[self.index]
            .handed
            .begin_long_poll(|task| self.push_local(task));
        shared.remotes[self.index]
            .long_poll_at
            .store(ticks::now(), Relaxed);
        let _ = self.with_io(|| self.io.borrow_mut().poll());
        if let Some(task) = self.watch.lifo().take() {
            self.push_local(task);
        }
        if !self.local.is_empty() {
            shared.notify_parked();
        }
        true
    }

    // As `run_task`.
    #[inline(always)]
    fn next_local_task(&self, tick: u32) -> Option<Notified> {
        self.next_task_from(tick, Self::pop_shared)
    }

    /// Out of tasks with a busy ring (`WorkerIo::reaps_while_idle`): reaps
    /// it before looking at the peers, since completions are due on it. A
    /// task stolen instead moves its connection's next ops to this ring
    /// and its state to this core; when both workers are busy that trade
    /// goes both ways for nothing. A hyper server with 256 connections
    /// (wrk -t2) stole 13,000 tasks a second per worker, 13% of its polls,
    /// and 2,800 with this look first, at 3-5% less CPU per request.
    /// Below that load an idle worker steals at once, as before: polling
    /// the ring first there cost a 50-connection server 10% of its req/s.
    fn reap_before_steal(&self, tick: u32) -> Option<Notified> {
        if !self.io.borrow().reaps_while_idle() {
            return None;
        }
        let _ = self.with_io(|| self.io.borrow_mut().poll());
        self.next_local_task(tick)
    }

    /// The queues peers feed: the tasks handed here (see
    /// `hand_off_io_wakes`), then the injector.
    fn pop_shared(&self) -> Option<Notified> {
        let mut first = None;
        self.shared().remotes[self.index]
            .handed
            .take_all(|task| match first {
                None => first = Some(task),
                Some(_) => self.push_local(task),
            });
        first.or_else(|| self.pop_injector())
    }

    /// The next task to run: every `global_queue_interval` ticks `shared`
    /// (the injector, or a pinned worker's inbox) first, then the LIFO slot
    /// (at most `max_lifo_polls` times in a row), the run queue, `shared`,
    /// and the deferred (yielded) tasks. One body for both run loops.
    #[inline(always)]
    fn next_task_from(
        &self,
        tick: u32,
        shared: impl Fn(&Self) -> Option<Notified>,
    ) -> Option<Notified> {
        let config = self.shared().config;
        if tick % config.global_queue_interval == 0 {
            if let Some(task) = shared(self) {
                return Some(task);
            }
        }
        if let Some(task) = self.watch.lifo().take() {
            let streak = self.lifo_streak.get();
            if streak < config.max_lifo_polls {
                self.lifo_streak.set(streak + 1);
                self.metrics().lifo_hits.incr();
                return Some(task);
            }
            // Starvation guard: the LIFO task waits its turn at the back,
            // unless there is no one to wait behind (it would be popped
            // next: the push and the pop's compare-exchange were ≈ 3% of a
            // `Notify` round trip, which hits this every fourth poll).
            if self.local.is_empty() {
                self.lifo_streak.set(0);
                return Some(task);
            }
            self.push_local(task);
        }
        self.lifo_streak.set(0);
        self.local
            .pop()
            .or_else(|| shared(self))
            .or_else(|| self.flush_deferred().then(|| self.local.pop()).flatten())
    }

    /// Moves the deferred (yielded) tasks to the back of the run queue, where
    /// they can also be stolen. True if there were any.
    fn flush_deferred(&self) -> bool {
        let mut deferred = self.deferred.take();
        if deferred.is_empty() {
            self.deferred.set(deferred);
            return false;
        }
        for task in deferred.drain(..) {
            self.push_local(task);
        }
        // Keep the allocation for the next round of yields.
        self.deferred.set(deferred);
        self.shared().notify_parked();
        true
    }

    /// Queues `task` at the back of the run queue. A full queue moves half
    /// of itself to the shared queue (the injector; a thread-per-core
    /// worker's own inbox, so its tasks stay pinned) and wakes a peer to
    /// take it.
    #[inline(always)]
    fn push_local(&self, task: Notified) {
        if let Err(task) = self.local.try_push(task) {
            self.push_overflow(task);
        }
    }

    /// `push_local` with a full ring (or one a thief is copying from).
    #[cold]
    #[inline(never)]
    fn push_overflow(&self, task: Notified) {
        let mut overflowed = 0;
        let shared = self.shared();
        let target = if shared.config.pinned {
            &shared.remotes[self.index].inbox
        } else {
            &shared.injector
        };
        self.local.push(task, |task| {
            overflowed += 1;
            target.push(task);
        });
        if overflowed > 0 {
            self.metrics().local_queue_overflows.add(overflowed);
            if !shared.config.pinned {
                shared.notify_parked();
            }
        }
    }

    /// Takes up to `limit` tasks from `queue` (the injector, or this
    /// worker's inbox): the first to run now, the others into the run
    /// queue as far as it has room.
    ///
    /// The tasks come over in chunks through `pull_scratch`, a crossbeam
    /// `Worker` that never holds more than its minimum capacity, so it never
    /// resizes: one CAS on the shared queue per chunk, where taking the
    /// tasks one `steal` at a time cost ~60 instructions each (3-4% more on
    /// the remote-spawn benches).
    fn pull_batch(&self, queue: &Injector<Notified>, limit: usize) -> Option<Notified> {
        let limit = limit.min(self.local.remaining() + 1);
        let scratch = &self.pull_scratch;
        let mut first = None;
        let mut taken = 0;
        while taken < limit {
            let chunk = (limit - taken).min(PULL_CHUNK);
            let task = loop {
                match queue.steal_batch_with_limit_and_pop(scratch, chunk) {
                    Steal::Success(task) => break Some(task),
                    Steal::Empty => break None,
                    Steal::Retry => {}
                }
            };
            let Some(task) = task else { break };
            taken += 1 + scratch.len();
            match first {
                None => first = Some(task),
                Some(_) => self.push_local(task),
            }
            while let Some(task) = scratch.pop() {
                self.push_local(task);
            }
        }
        self.metrics().injector_pops.add(taken as u64);
        first
    }

    fn pop_injector(&self) -> Option<Notified> {
        let shared = self.shared();
        if shared.injector.is_empty() {
            return None;
        }
        let fair_share = shared.injector.len() / shared.remotes.len() + 1;
        self.pull_batch(&shared.injector, fair_share.min(INJECTOR_BATCH))
    }

    fn next_random(&self) -> u64 {
        // xorshift64*: cheap victim choice, no shared state.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn steal_work(&self) -> Option<Notified> {
        let shared = self.shared();
        if !self.searching.get() {
            if !shared.idle.try_transition_to_searching() {
                return None;
            }
            self.searching.set(true);
        }
        let n = shared.remotes.len();
        let start = (self.next_random() % n as u64) as usize;
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            if !self.behind(victim) {
                continue;
            }
            self.metrics().steal_attempts.incr();
            let before = self.local.len();
            let remote = &shared.remotes[victim];
            match remote.stealer.steal_into(&self.local) {
                Some(task) => {
                    if remote.watch.is_stalled() {
                        self.drain_stalled(remote);
                    }
                    let taken = 1 + self.local.len().saturating_sub(before) as u64;
                    self.metrics().steals.add(taken);
                    return Some(task);
                }
                None => {
                    // A victim stuck in a poll: its LIFO task and the
                    // tasks handed to it too (those also once this worker
                    // saw the poll outlast `steal_age`: see `behind`).
                    let stalled = remote.watch.is_stalled();
                    let mut first = if stalled {
                        remote.watch.lifo().take()
                    } else {
                        None
                    };
                    if stalled || self.poll_outlasted(victim) {
                        remote.handed.take_all(|task| match first {
                            None => first = Some(task),
                            Some(_) => self.push_local(task),
                        });
                    }
                    if let Some(task) = first {
                        self.metrics().steals.incr();
                        return Some(task);
                    }
                }
            }
        }
        if self.reap_stuck_peers() {
            if let Some(task) = self.watch.lifo().take().or_else(|| self.local.pop()) {
                return Some(task);
            }
        }
        self.pop_injector()
    }

    /// True if `victim`, with sockets registered on its epoll and not
    /// parked, is inside a poll the monitor marked stalled, or one this
    /// worker already saw it inside `steal_age` ago or more: the readiness
    /// events its poll holds up are this worker's to take
    /// (`reap_stuck_peers`). Where this
    /// happens: on a machine whose cores the workers share with other
    /// threads (a load generator, other services), the kernel preempts a
    /// worker in the middle of a poll and may keep it off its CPU for a
    /// whole slice, milliseconds, and the connections registered on its
    /// epoll wait for it, while tokio's single shared epoll lets any
    /// worker take them. A poll that runs long by itself is the same case.
    fn peer_io_stuck(&self, victim: usize) -> bool {
        if self.poll_sightings.get(victim).is_none() {
            return false;
        }
        let remote = &self.shared().remotes[victim];
        if !remote.io.has_io_for_peers() || remote.parked.load(Relaxed) {
            // Nothing of its io to take; the sighting of its poll is kept
            // (`behind` goes by it for the tasks handed to it).
            return false;
        }
        if remote.watch.is_stalled() {
            // The monitor saw this poll outlast a sample.
            return true;
        }
        self.poll_outlasted(victim)
    }

    /// True if `victim` is inside the poll this worker saw it inside
    /// `steal_age` ago or more; a first sighting of a poll is recorded
    /// (false). False where this worker keeps no poll sightings (the
    /// monitor off, or thread-per-core).
    fn poll_outlasted(&self, victim: usize) -> bool {
        let Some(sighting) = self.poll_sightings.get(victim) else {
            return false;
        };
        let seq = self.shared().remotes[victim].watch.poll_seq();
        if seq & 1 == 0 {
            // Between polls (`begin_poll` makes it odd).
            sighting.set(None);
            return false;
        }
        let now = Instant::now();
        match sighting.get() {
            Some((seen, at)) if seen == seq => {
                now.duration_since(at) >= self.shared().config.steal_age
            }
            _ => {
                sighting.set(Some((seq, now)));
                false
            }
        }
    }

    /// Takes the epoll events of every peer [stuck](Self::peer_io_stuck)
    /// in a poll and runs their wakes here (so the tasks queue on this
    /// worker, as an io pass of its own would queue them). True if that
    /// queued work.
    fn reap_stuck_peers(&self) -> bool {
        let mut reaped = 0;
        // `with_io` notes an io pass, but this one leaves our own queue
        // unsubmitted: keep the time of the last real one for
        // `submit_if_stale`.
        let pass_at = self.io_pass_at.get();
        for victim in 0..self.poll_sightings.len() {
            if victim != self.index && self.peer_io_stuck(victim) {
                reaped += self.with_io(|| self.shared().remotes[victim].io.reap_for_peer());
            }
        }
        self.io_pass_at.set(pass_at);
        reaped > 0
    }

    /// Takes the rest of a stalled victim's queue and its LIFO task (the
    /// monitor saw it stuck in a poll; see `monitor.rs`): nothing waits
    /// behind a stuck worker. Peers may steal from us in turn, so make sure
    /// one is awake if we now hold a backlog.
    fn drain_stalled(&self, victim: &super::Remote) {
        if let Some(task) = victim.watch.lifo().take() {
            self.push_local(task);
        }
        // Bounded: a victim that keeps being fed is not drained forever.
        for _ in 0..STALLED_DRAIN_BATCHES {
            match victim.stealer.steal_into(&self.local) {
                Some(task) => self.push_local(task),
                None => break,
            }
        }
        victim.handed.take_all(|task| self.push_local(task));
        if !self.local.is_empty() {
            self.shared().notify_parked();
        }
    }

    /// Before parking with io in flight, polls the driver a few times: a
    /// reply that lands within microseconds is then handled without the
    /// worker going to sleep and being woken (on a VM a halted vCPU takes
    /// tens of microseconds to wake). True if that made work. See
    /// `Builder::io_spin` and `Builder::io_spin_adaptive`.
    fn spin_on_io(&self) -> bool {
        let spins = match self.shared().config.io_spin {
            Some(fixed) => fixed,
            None => {
                let load = self.io.borrow().load();
                let rhythm = self.last_park_short.get() || self.last_spin_hit.get();
                if !rhythm || !(1..=ADAPTIVE_SPIN_MAX_LOAD).contains(&load) {
                    return false;
                }
                let skips = self.spin_skips.get();
                if skips > 0 {
                    self.spin_skips.set(skips - 1);
                    return false;
                }
                ADAPTIVE_SPINS
            }
        };
        if spins == 0 {
            return false;
        }
        let hit = self.spin(spins);
        self.last_spin_hit.set(hit);
        // Back off after a miss: skip the next 1, 2, 4 ... 64 chances to
        // spin. A worker serving a connection or two of a remote client
        // (its parks short, the next request still hundreds of µs away)
        // otherwise spent 100 futile enters on every request: with io
        // affinity in a 32-connection echo, 0.35 of its 0.7 enters per
        // request. A ping-pong whose answers land within the spin keeps
        // hitting and never backs off.
        let backoff = backoff_after(hit, self.spin_backoff.get());
        self.spin_backoff.set(backoff);
        self.spin_skips.set(backoff);
        hit
    }

    /// Whether this worker may take from `victim`'s run queue (or LIFO
    /// slot, or the tasks peers handed it): it is stuck in a poll, its
    /// queue holds [`BACKLOG`] tasks or more, or a task this worker saw
    /// queued there has waited `steal_age` since (`Builder::steal_age`).
    /// Its LIFO slot only while it is stuck; its handed tasks while it is
    /// stuck or inside a poll this worker saw `steal_age` ago or more.
    ///
    /// A task waiting behind a short backlog is left to its owner, whose
    /// cache holds what it touches: moved, a channel's senders and receiver
    /// (or any tasks that wake each other) split over the workers and trade
    /// every message across the cores. The first look records the end of
    /// the victim's queue; a later look finds that task still waiting if
    /// the owner has not taken up to it (positions only grow). An empty
    /// queue forgets the sighting.
    fn behind(&self, victim: usize) -> bool {
        let shared = self.shared();
        let remote = &shared.remotes[victim];
        // Inside a poll the monitor found stuck, or one of a task known to
        // poll long (`before_long_poll`): what is queued waits for all of it.
        let stalled = remote.watch.is_stalled() || remote.handed.in_long_poll();
        if stalled && remote.watch.lifo().is_occupied() {
            return true;
        }
        // Tasks handed to it (io consolidation) wait for the poll too, and
        // its run queue may be empty meanwhile.
        if remote.handed.len() > 0 && (stalled || self.poll_outlasted(victim)) {
            return true;
        }
        let (next, end) = remote.stealer.positions();
        let sighting = &self.sightings[victim];
        let queued = end.wrapping_sub(next) as usize;
        if queued == 0 {
            sighting.set(None);
            return false;
        }
        let age = shared.config.steal_age;
        if age.is_zero() || queued >= BACKLOG || stalled {
            return true;
        }
        let now = Instant::now();
        match sighting.get() {
            // The last task seen then is still queued (its position is
            // `seen_end - 1`; the owner takes in order).
            Some((seen_end, seen_at)) if seen_end.wrapping_sub(next) as i32 > 0 => {
                now.duration_since(seen_at) >= age
            }
            _ => {
                sighting.set(Some((end, now)));
                false
            }
        }
    }

    /// The injector holds work, or a peer is [`behind`](Self::behind).
    fn has_work_to_take(&self) -> bool {
        let shared = self.shared();
        !shared.injector.is_empty()
            || (0..shared.remotes.len()).any(|v| v != self.index && self.behind(v))
    }

    /// Before parking, watches the queues for up to `idle_spin`: on a VM
    /// a parked worker's vCPU halts, and waking it takes tens of
    /// microseconds, longer than many gaps between bursts of work (a
    /// `block_on` loop, a request chain hopping between workers). Go's
    /// idle Ms spin the same way. True as soon as there is work this
    /// worker may take ([`has_work_to_take`](Self::has_work_to_take): a
    /// short queue only once a task in it has waited `steal_age`).
    ///
    /// A worker without io in flight backs off after spins that found
    /// nothing (skips the next 1, 2, 4 ... 64 chances, as `spin_on_io`
    /// does; a hit resets it). The second worker of a hyper client with 50
    /// connections (io consolidation gathers the connections on the first)
    /// spent its idle time here, 8–20 k `sched_yield`s a second, each a
    /// switch to the server sharing the cores; with the back-off the
    /// client made 0.95 of hyper-util's requests per second against 0.92
    /// (medians of six rounds), at no cost to the scheduler bench.
    ///
    /// Not while a peer is inside a poll with tasks queued behind it
    /// ([`peer_polls_with_queue`](Self::peer_polls_with_queue)): those
    /// are for this worker once one has waited `steal_age`, and the spin
    /// is what sees that. What this costs where the peer's queue drains
    /// before `steal_age` (short polls): a worker that misses parks, and
    /// spins again only after something wakes it. hyper's hello server
    /// under epoll made 0.002–0.004 `sched_yield`s per request with this
    /// rule (0 before), and the HTTP client above makes 0–0.5 a second
    /// with it (0–41 without). On the fan-out echo under epoll (4 requests of
    /// 1 ms in every round of 32) the misses between rounds held the
    /// back-off at its top, and the spin was skipped just when a slow
    /// request sat behind another on the other worker: a third of the
    /// rounds ran three of the four on one worker (tokio: 3%), 0.81–0.86×
    /// tokio's requests per second; 0.91–0.95× with this rule and the
    /// park watch after a skipped spin (docs/BENCHMARKS.md, "Epoll's fan-out: an idle worker that looks").
    fn spin_for_work(&self) -> bool {
        let limit = self.shared().config.idle_spin;
        self.idle_spin_skipped.set(false);
        // Only a searching worker spins (at most half of them search), so
        // notifiers count on it instead of waking a parked one.
        if limit.is_zero() || !self.searching.get() {
            return false;
        }
        // A worker with a little io in flight has its own, adaptive spin
        // on the driver (`spin_on_io`). Spinning here as well cost a TCP
        // echo server with 32 connections 30% more CPU per request, and
        // its clients (on the same cores) 8% of their requests per second.
        // With many operations on its ring (io_uring only: see
        // `reaps_while_idle`) a completion is due any moment, so it spins
        // and reaps its ring on every round: parking there cost a hyper
        // server with 256 connections a context switch every 11 requests.
        let (load, reap) = {
            let io = self.io.borrow();
            (io.load(), io.reaps_while_idle())
        };
        if load > 0 && !reap {
            return false;
        }
        if reap {
            return self.spin_until(limit, true);
        }
        let skips = self.idle_spin_skips.get();
        if skips > 0 && !self.peer_polls_with_queue() {
            self.idle_spin_skips.set(skips - 1);
            self.idle_spin_skipped.set(true);
            return false;
        }
        let hit = self.spin_until(limit, false);
        let backoff = backoff_after(hit, self.idle_spin_backoff.get());
        self.idle_spin_backoff.set(backoff);
        self.idle_spin_skips.set(backoff);
        hit
    }

    /// True if a peer is inside a poll with tasks queued behind it: they
    /// are this worker's to take once one has waited `steal_age`
    /// ([`behind`](Self::behind)), which the idle spin sees and a park
    /// without a watch does not.
    fn peer_polls_with_queue(&self) -> bool {
        let shared = self.shared();
        (0..shared.remotes.len()).any(|v| {
            let remote = &shared.remotes[v];
            v != self.index && remote.watch.poll_seq() & 1 == 1 && !remote.stealer.is_empty()
        })
    }

    /// The spin of [`spin_for_work`](Self::spin_for_work), up to `limit`.
    fn spin_until(&self, limit: std::time::Duration, reap: bool) -> bool {
        let shared = self.shared();
        let start = Instant::now();
        let mut round = 0u32;
        loop {
            // Give the CPU to a thread that wants it (the one about to
            // hand us work, often) rather than burn it.
            // (The facade's: under shuttle another model thread runs.)
            crate::facade::thread::yield_now();
            if shared.shutdown.load(Acquire) {
                return false;
            }
            if reap {
                // Completions run their tasks' wakes here: into the LIFO
                // slot or the run queue.
                let _ = self.with_io(|| self.io.borrow_mut().poll());
                if self.watch.lifo().is_occupied() || !self.local.is_empty() {
                    return true;
                }
            }
            if !shared.injector.is_empty() {
                return true;
            }
            // The peers' queues only every few rounds (their lines are
            // their owners'): see `SPIN_PEER_LOOK_EVERY`.
            round = round.wrapping_add(1);
            if round % SPIN_PEER_LOOK_EVERY == 0
                && (self.has_work_to_take() || self.reap_stuck_peers())
            {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
        }
    }

    fn spin(&self, spins: u32) -> bool {
        for _ in 0..spins {
            let had_io = self.with_io(|| self.io.borrow_mut().poll());
            if !had_io {
                return false;
            }
            // Did a completion schedule a task here?
            if self.watch.lifo().is_occupied() {
                return true;
            }
            if !self.local.is_empty() || !self.shared().injector.is_empty() {
                return true;
            }
            if self.shared().shutdown.load(Acquire) {
                return false;
            }
        }
        false
    }

    fn park(&self) {
        let shared = self.shared();
        let was_searching = self.searching.replace(false);
        if shared
            .idle
            .transition_worker_to_parked(self.index, was_searching)
            && self.left_to_us()
        {
            // We were the last searcher: work that arrived while we gave up
            // was left to us, so make sure a worker (maybe us) takes it.
            shared.notify_parked();
        }
        self.metrics().parks.incr();
        let remote = &shared.remotes[self.index];
        remote.parked.store(true, Relaxed);
        // The polls of the peers this worker may hand its io wakes to (see
        // `hand_off_io_wakes`).
        if !self.seen_at_park.is_empty() {
            let now = ticks::now();
            for (peer, seen) in self.seen_at_park.iter().enumerate() {
                let seq = shared.remotes[peer].watch.poll_seq();
                if seen.get().0 != seq {
                    seen.set((seq, now));
                }
            }
        }
        let io_woke = self.sleep();
        remote.parked.store(false, Relaxed);
        if !shared.idle.unpark_self(self.index) {
            // Picked by a notifier, which counted us as searching.
            self.searching.set(true);
        }
        if io_woke {
            self.hand_off_io_wakes();
        }
        shared.fire_timers(self.index);
    }

    /// The re-check of the last searcher about to park: is there work a
    /// worker must come back for? With the monitor on, the work a search
    /// takes ([`has_work_to_take`](Self::has_work_to_take)): a peer's
    /// short queue is left to its owner, which is awake to run it, and the
    /// monitor marks the owner if a poll keeps it from doing so. Counting
    /// any queued task (as with the monitor off) had a worker about to park
    /// wake itself, find nothing it might take, and park again, in a loop
    /// for as long as a peer had a task queued: hyper's hello server under
    /// `wrk -t1 -c50` woke its idle worker up to 86,000 times a second
    /// that way in some runs. With the monitor off nothing else comes
    /// back for a short queue behind an owner stuck in a poll, so any task
    /// queued anywhere counts.
    fn left_to_us(&self) -> bool {
        if self.watched {
            self.has_work_to_take()
        } else {
            self.shared().has_stealable_work()
        }
    }

    /// Io consolidation (see [`HANDOFF_MAX`]): right after this worker's
    /// own io woke it from a park, hands the few tasks that io woke to a
    /// lower-indexed peer with a short queue (its `handed` list, then an
    /// unpark: the peer may be parked or on its way to a park, and the
    /// unpark's token brings it back to look). The flags and lengths read
    /// here are hints; a wrong guess costs one hop, never a lost task.
    fn hand_off_io_wakes(&self) {
        let shared = self.shared();
        let n = shared.remotes.len();
        if n < 2 || shared.config.pinned {
            return;
        }
        let queued = self.local.len() + usize::from(self.watch.lifo().is_occupied());
        if queued == 0 || queued > HANDOFF_MAX {
            return;
        }
        // A peer with a lower index (every worker hands in the same
        // direction, so the connections gather on the first workers
        // instead of trading places) whose queue is short and which is not
        // stuck in a poll: an awake one if there is one, else a parked one
        // (one wake moves the connection for good; its later requests wake
        // only the peer).
        // Nor to one that started a long poll in the last millisecond
        // (20 × `ticks::LONG_POLL`): it would hand them back or make them
        // wait behind the next one.
        let recent = 20 * ticks::long_poll_ticks();
        let now = ticks::now();
        let fits = |i: &usize| {
            let r = &shared.remotes[*i];
            r.stealer.len() <= HANDOFF_MAX
                && !r.watch.is_stalled()
                && !r.handed.in_long_poll()
                && now.saturating_sub(r.long_poll_at.load(Relaxed)) >= recent
                && !self.in_long_poll_seen(*i, now)
        };
        let Some(peer) = (0..self.index)
            .filter(fits)
            .find(|&i| !shared.remotes[i].parked.load(Relaxed))
            .or_else(|| (0..self.index).find(fits))
        else {
            return;
        };
        let remote = &shared.remotes[peer];
        // Nothing else pushes to our queue or LIFO slot meanwhile (only
        // this thread does), so `queued` counts what the closure yields.
        if !remote.handed.push_all(queued, || {
            self.watch.lifo().take().or_else(|| self.local.pop())
        }) {
            return;
        }
        self.metrics().io_handoffs.add(queued as u64);
        remote.unparker.unpark();
    }

    /// True if lower-indexed peer `i` is inside a poll that one of this
    /// worker's parks found running [`ticks::LONG_POLL`] or more before
    /// `now` (ticks): the poll is long, whatever its task's history says.
    /// (`ticks::LONG_POLL` is 50 µs in release builds, 1 ms in debug ones.)
    /// Io consolidation handed such a peer the wakes of this worker's io,
    /// where they waited for the poll to end while this worker went back
    /// to sleep: on the fan-out echo (4 requests of 1 ms in every round of
    /// 32), a worker that had served its one slow request was woken by
    /// the next one's data and handed it to its peer, in the middle of a
    /// slow one of its own (docs/BENCHMARKS.md, "Tasks handed to a worker
    /// inside a long poll"). A hint, as the other reads here: the counter can only
    /// have moved on since.
    fn in_long_poll_seen(&self, i: usize, now: u64) -> bool {
        // 0 while the tick rate is not known: nothing is long yet.
        let long = ticks::long_poll_ticks();
        long != 0
            && self.seen_at_park.get(i).is_some_and(|seen| {
                let (seq, at) = seen.get();
                seq & 1 == 1
                    && self.shared().remotes[i].watch.poll_seq() == seq
                    && now.saturating_sub(at) >= long
            })
    }

    /// The blocking part of a park: in the io driver until an unpark, io,
    /// the next timer or the allocation cache's trim time.
    /// True if the worker's own io ended the park.
    #[inline]
    fn sleep(&self) -> bool {
        let shared = self.shared();
        let mut io_woke = false;
        if !shared.shutdown.load(Acquire) {
            // The TSC's estimate of now, not `Instant::now()`: two clock
            // reads per park were 2% of a busy echo server's CPU. Never
            // before the true now and at most a few µs after (see
            // `time/tsc.rs`), which the two uses below do not notice.
            let parked_at = tsc_now();
            // Blocks a burst left in the allocation cache go back to malloc
            // once the worker has been idle a while: wake up for that.
            let cached = crate::alloc::cached_bytes();
            self.metrics().alloc_cache_bytes.set(cached as u64);
            let trim_at = (cached > crate::alloc::TRIM_KEEP && !self.cache_trimmed.get())
                .then(|| parked_at + crate::alloc::IDLE_TRIM_AFTER);
            let deadline = match (shared.time.next_deadline(), trim_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let watch = self.arm_park_watch(parked_at);
            let deadline = match (deadline, watch) {
                (Some(a), Some((_, _, b))) => Some(a.min(b)),
                (a, b) => a.or(b.map(|(_, _, at)| at)),
            };
            io_woke = self.park_worker(deadline);
            if let Some(watch) = watch {
                self.end_park_watch(watch, io_woke);
            }
            let parked_for = tsc_now().saturating_duration_since(parked_at);
            self.last_park_short.set(io_woke && parked_for < SHORT_PARK);
            if trim_at.is_some() && parked_for >= crate::alloc::IDLE_TRIM_AFTER {
                crate::alloc::trim();
                self.cache_trimmed.set(true);
                self.metrics()
                    .alloc_cache_bytes
                    .set(crate::alloc::cached_bytes() as u64);
            }
        }
        io_woke
    }

    /// About to park while a peer is inside a poll with work behind it
    /// (operations on its ring or sockets on its epoll that peers may take,
    /// tasks in its run queue or handed to it): park for [`PARK_WATCH`] (or `steal_age`) at most,
    /// then look again. Returns the peer, the poll seen and when to look.
    ///
    /// A peer's poll is watched again only while watching it finds work,
    /// each time for [`PARK_WATCH`] or `steal_age`,
    /// whichever is longer (the sightings must be that old by then; an
    /// older sighting of the same poll or queued task is kept).
    ///
    /// Nothing else brings a parked worker back for such a poll but the
    /// monitor, whose samples are [`SHORT_INTERVAL`] apart and need two
    /// sightings of the poll: on the fan-out echo (4 requests of 1 ms in
    /// every round of 32, each round waiting for its slowest), a worker
    /// that had served its share parked while its peer's queue and ring
    /// held the next slow requests, and took them 250–500 µs into the
    /// peer's poll. With the watch, the poll it saw at the park is taken
    /// as seen [`steal_age`](crate::runtime::Builder::steal_age) ago on the
    /// next look (`peer_io_stuck`, `behind`), so the worker reaps and
    /// steals at once if that poll is still running.
    ///
    /// Only where this worker has io in flight (`spin_for_work` leaves
    /// such a worker to `spin_on_io`, which looks at its own ring only,
    /// unless its ring is busy enough to be reaped in the idle spin), or
    /// `idle_spin` is zero. A worker that spun watched the same queues for
    /// `idle_spin`; watching as well, on the scheduler bench (no io), had
    /// the idle worker wake every 50 µs to split a peer's short queue,
    /// which `steal_age` is there to leave alone: `spawn_many_local` took
    /// 3.1–4.3 ms instead of 1.2–1.5, `yield_many` a quarter longer.
    ///
    /// A watch that finds the peer's poll over was a wasted wakeup: the
    /// watches back off as the spins do (skip the next 1, 2, 4 ... 64
    /// chances; a watch that finds the poll still running resets it), so a
    /// server whose polls are all short pays a wakeup every 64 parks at
    /// most, and only for parks its own io does not end first.
    ///
    /// [`SHORT_INTERVAL`]: super::monitor::SHORT_INTERVAL
    fn arm_park_watch(&self, now: Instant) -> Option<(usize, u64, Instant)> {
        // Empty unless peers may take each other's io: the work-stealing
        // flavour with the monitor on.
        if self.poll_sightings.is_empty() {
            return None;
        }
        let shared = self.shared();
        // A worker without io in flight that just spun for `idle_spin`
        // looked at the same queues (`spin_for_work`); one whose spin its
        // back-off skipped did not, and watches here as a worker with io
        // does (that one looks only at its own ring, `spin_on_io`, or at
        // the peers only while its ring is busy enough to be reaped in
        // the idle spin). On the fan-out echo under epoll (all sockets on
        // the first worker's epoll, so the second has no io) the second
        // worker otherwise slept, after skipped spins, until the
        // monitor's sample while a slow request waited behind another.
        if self.io.borrow().load() == 0
            && !shared.config.idle_spin.is_zero()
            && !self.idle_spin_skipped.get()
        {
            return None;
        }
        // A poll whose last watch ran its course and found nothing (this
        // worker has not polled since) is not watched again: that would
        // wake every 50 µs for as long as the poll lasts (and reap, with
        // a `membarrier`, each time), while the monitor wakes a parked
        // worker at each of its samples anyway. One that found work is:
        // on the fan-out echo new requests keep arriving on the stuck
        // worker's ring; one watch per poll made 11,572–12,409 req/s
        // there, this rule 12,174–12,570 (two runs each). Checked per
        // peer: another may be in a poll with work to take.
        let mine = self.watch.poll_seq();
        let fruitless = self.watched_poll.get();
        let (victim, seq) = shared
            .remotes
            .iter()
            .enumerate()
            .filter(|&(v, remote)| v != self.index && !remote.parked.load(Relaxed))
            .find_map(|(v, remote)| {
                let seq = remote.watch.poll_seq();
                // Not its LIFO slot alone: that is for the taking only
                // once the monitor marks the poll (`behind`), and the
                // monitor wakes a parked worker for it then.
                let behind = seq & 1 == 1
                    && fruitless != Some((v, seq, mine))
                    && (remote.io.has_io_for_peers()
                        || !remote.stealer.is_empty()
                        || remote.handed.len() > 0);
                behind.then_some((v, seq))
            })?;
        let skips = self.watch_skips.get();
        if skips > 0 {
            self.watch_skips.set(skips - 1);
            return None;
        }
        // The sightings the next look goes by: the poll, and the end of
        // the queue, as of now, unless one of the same poll or of a task
        // still queued is older.
        if !matches!(self.poll_sightings[victim].get(), Some((seen, _)) if seen == seq) {
            self.poll_sightings[victim].set(Some((seq, now)));
        }
        let (next, end) = shared.remotes[victim].stealer.positions();
        let still_queued = matches!(
            self.sightings[victim].get(),
            Some((seen_end, _)) if seen_end.wrapping_sub(next) as i32 > 0
        );
        if end != next && !still_queued {
            self.sightings[victim].set(Some((end, now)));
        }
        Some((victim, seq, now + PARK_WATCH.max(shared.config.steal_age)))
    }

    /// The park that `watch` bounded is over: if the watch ended it (not
    /// io, an unpark or an earlier deadline), back the watches off when
    /// the poll it watched was over, reset them when it was still running.
    fn end_park_watch(&self, (victim, seq, at): (usize, u64, Instant), io_woke: bool) {
        if io_woke || tsc_now() < at {
            return;
        }
        // What the next park compares against: this watch ran its course
        // on that poll, with this worker's poll counter as it is now (a
        // poll before the next park means the watch found work).
        self.watched_poll
            .set(Some((victim, seq, self.watch.poll_seq())));
        let running = self.shared().remotes[victim].watch.poll_seq() == seq;
        if running {
            self.metrics().park_watch_hits.incr();
        }
        let backoff = backoff_after(running, self.watch_backoff.get());
        self.watch_backoff.set(backoff);
        self.watch_skips.set(backoff);
    }

    /// Blocks in the io driver until an unpark, io, or `deadline`. True if
    /// io ended the wait.
    #[cfg(not(weft_shuttle))]
    #[inline]
    fn park_worker(&self, deadline: Option<Instant>) -> bool {
        let mut io_woke = false;
        self.parker.park_with(deadline, |deadline| {
            io_woke = self.with_io(|| self.io.borrow_mut().park(deadline))
        });
        io_woke
    }

    /// Under shuttle the worker parks on its parker's condvar (a model
    /// thread must not block in a syscall; `Runtime::start` gave it a
    /// parker without a wake hook). Its io driver is idle: no socket is
    /// registered under the shuttle tests, so the run loop's `poll` finds
    /// nothing and no io spin starts. docs/VERIFICATION.md says what this
    /// leaves out.
    #[cfg(weft_shuttle)]
    fn park_worker(&self, deadline: Option<Instant>) -> bool {
        self.parker.park(deadline);
        false
    }

    /// The run loop of a thread-per-core worker (`pinned.rs`): `run`'s
    /// ticks with the worker's inbox in the injector's place, no stealing,
    /// and parks outside the idle accounting. At the end, the worker's own
    /// `spawn_local` tasks are shut down here, on their thread.
    pub(crate) fn run_pinned(&self) {
        let config = self.shared().config;
        loop {
            if self.shared().shutdown.load(Acquire) {
                break;
            }
            let tick = self.tick.get().wrapping_add(1);
            self.tick.set(tick);
            if tick % config.event_interval == 0 {
                let _ = self.with_io(|| self.io.borrow_mut().poll());
                self.shared().fire_timers(self.index);
                self.flush_deferred();
            }
            match self.next_pinned_task(tick) {
                Some(task) => self.run_task(task),
                None => {
                    self.idle_stretch();
                    if !self.spin_on_io() {
                        self.park_pinned()
                    }
                }
            }
        }
        self.drain();
        let remote = &self.shared().remotes[self.index];
        remote.local_owned.close_and_shutdown_all();
        // Destructors may have woken more of them.
        self.drain();
        while let Some(task) = take_one(&remote.inbox) {
            drop(task);
        }
    }

    /// `next_local_task` with the worker's inbox for the injector.
    fn next_pinned_task(&self, tick: u32) -> Option<Notified> {
        self.next_task_from(tick, Self::pop_inbox)
    }

    /// Takes a batch from this worker's inbox (all of it, up to
    /// [`INJECTOR_BATCH`]: nobody else takes from it).
    fn pop_inbox(&self) -> Option<Notified> {
        let inbox = &self.shared().remotes[self.index].inbox;
        if inbox.is_empty() {
            return None;
        }
        self.pull_batch(inbox, INJECTOR_BATCH)
    }

    /// A thread-per-core worker's park: no idle accounting (nobody looks
    /// for it to steal); wakes come as unparks from `Shared::schedule_to`,
    /// and the inbox was empty when the caller looked, so the parker's
    /// token covers a push since.
    fn park_pinned(&self) {
        self.metrics().parks.incr();
        self.sleep();
        self.shared().fire_timers(self.index);
    }

    /// Drops everything still queued here (shutdown). Destructors may wake
    /// more tasks into the LIFO slot or queue, so loop until both are empty.
    fn drain(&self) {
        if self.searching.replace(false) {
            let _ = self.shared().idle.transition_from_searching();
        }
        loop {
            drop(self.deferred.take());
            let task = self.watch.lifo().take().or_else(|| self.local.pop());
            match task {
                Some(task) => drop(task),
                None => break,
            }
        }
    }
}

/// The body of a worker thread.
pub(crate) fn run_worker(
    handle: Handle,
    index: usize,
    local: Local<Notified>,
    parker: Parker,
    io: WorkerIo,
) {
    let _enter = context::enter(handle.clone());
    let ctx = WorkerCtx::new(index, handle, local, parker, io);
    if ctx.shared().config.pinned {
        context::set_worker(&ctx, || ctx.run_pinned());
    } else {
        context::set_worker(&ctx, || ctx.run());
    }
}

/// Now, from the TSC where it can be trusted (`time::tsc::now_plus`).
#[inline]
fn tsc_now() -> Instant {
    crate::time::tsc::now_plus(std::time::Duration::ZERO).unwrap_or_else(Instant::now)
}

/// One task from a shared queue (the injector or an inbox), if any.
fn take_one(queue: &Injector<Notified>) -> Option<Notified> {
    loop {
        match queue.steal() {
            Steal::Success(task) => return Some(task),
            Steal::Empty => return None,
            Steal::Retry => {}
        }
    }
}

#[cfg(all(test, not(any(weft_loom, weft_shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn affinity_wakes_a_peer_by_the_time_its_queue_takes() {
        // 2.6 ticks per ns: the budget is 390,000 ticks.
        let budget = 150_000 * 26 / 10;
        // Light polls (3 µs): 50 queued are 150 µs of work, 49 are less.
        let light = 3_000 * 26 / 10;
        assert!(over_budget(50, light, budget));
        assert!(!over_budget(49, light, budget));
        // Heavy polls (100 µs): two queued are enough.
        let heavy = 100_000 * 26 / 10;
        assert!(over_budget(2, heavy, budget));
        assert!(!over_budget(1, heavy, budget));
        // No overflow on an absurd estimate.
        assert!(over_budget(usize::MAX, u64::MAX, budget));
    }

    #[test]
    fn affinity_counts_tasks_until_it_can_time_them() {
        for (cost, budget) in [(0, 1_000), (7_800, 0), (0, 0)] {
            assert!(!over_budget(AFFINITY_BACKLOG - 1, cost, budget));
            assert!(over_budget(AFFINITY_BACKLOG, cost, budget));
        }
    }

    #[test]
    fn a_spin_that_misses_backs_off_doubling_and_a_hit_resets_it() {
        let mut last = 0;
        let mut seen = Vec::new();
        for _ in 0..9 {
            last = backoff_after(false, last);
            seen.push(last);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        assert_eq!(backoff_after(true, last), 0);
        assert_eq!(backoff_after(false, 0), 1);
    }

    #[test]
    fn the_poll_cost_moves_a_quarter_of_the_way_per_stretch() {
        assert_eq!(fold_cost(0, 8_000), 8_000, "the first stretch sets it");
        assert_eq!(fold_cost(8_000, 16_000), 10_000);
        assert_eq!(fold_cost(10_000, 10_000), 10_000, "a steady cost stays");
        // A preempted stretch (1 ms over 60 polls) moves it, then decays.
        let mut cost = fold_cost(8_000, 2_600_000 / 60);
        assert!(cost > 8_000 && cost < 20_000, "{cost}");
        for _ in 0..12 {
            cost = fold_cost(cost, 8_000);
        }
        assert!(cost < 8_500, "{cost}");
    }
}
