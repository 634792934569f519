//! The monitor: one thread per runtime that notices a worker stuck inside
//! one poll, lets the other workers take the work queued behind it, reports
//! the task that is stuck, and, if every worker is stuck, starts a relief
//! worker (Go's `sysmon` with `retake`/`handoffp`).
//!
//! # What a worker publishes (its [`WorkerWatch`])
//! - `poll_seq`: incremented at the start and at the end of every poll, so
//!   it is odd exactly while the worker is inside a poll. Two plain stores
//!   per poll on a line only the worker writes; no clock is read on the
//!   worker's path.
//! - `current`: the header of the task being polled, stored (Release)
//!   before the odd `poll_seq`.
//! - its LIFO slot (`lifo.rs`), which is stealable.
//!
//! # What the monitor does with it, each sample
//! 1. A worker whose `poll_seq` is odd and equal to what the last sample
//!    saw has been inside that one poll for at least the time since the
//!    first sample that saw it (a lower bound: that sighting is timed
//!    right after the load that saw the poll, and each later sample's
//!    clock is read before its load; the monitor reads the clock, the
//!    workers do not).
//! 2. If such a worker has work behind it (its LIFO slot, its run queue,
//!    or tasks peers handed it),
//!    the monitor marks it stalled (`stalled_seq = poll_seq`) and wakes a
//!    parked worker. A searching worker takes a stalled victim's LIFO task
//!    and keeps stealing from its queue until it is empty; the mark is
//!    void as soon as `poll_seq` moves on (the poll returned), so the owner
//!    never races a thief on the slot for longer than it takes to see that.
//!    The slot itself is safe to race at any time (every take is a swap).
//!    Under epoll, sockets registered with the worker's epoll count as work
//!    behind it too (their readiness waits there), and so do operations in
//!    flight on its ring under io_uring where peers may reap it (the
//!    work-stealing flavour): a peer woken for them takes the events or
//!    completions itself (`WorkerCtx::reap_stuck_peers`).
//! 3. Past `Builder::stuck_poll_threshold` the poll is reported once,
//!    while it is still running: task id, name, spawn location and time
//!    so far go to the hook (`Builder::on_stuck_poll`, default: a line on
//!    stderr), and the worker's `stuck_polls` counter goes up. The task is
//!    reached through the task registry (`OwnedTasks::get_live`), which
//!    proves the racy `current` pointer still names a live task before it
//!    is touched.
//! 4. If every worker is stuck past the threshold, and every relief worker
//!    too, one more relief worker starts, up to one per worker
//!    ([`RELIEF_CAP_PER_WORKER`]). A relief worker has no queue, LIFO slot
//!    or io driver of its own: it runs tasks from the injector (where every
//!    spawn and wake lands while no worker is free) and from the stuck
//!    workers' LIFO slots and queues, and fires due timers. As soon as one
//!    worker's stuck poll returns, every relief worker retires after its
//!    current poll.
//!
//! # Sleeping
//! The monitor sleeps [`SHORT_INTERVAL`] while some poll has outlasted a
//! sample; after [`QUIET_SAMPLES`] samples that found none it doubles its
//! sleep, up to half the threshold (so a stuck poll is reported within 1.5
//! thresholds of its start, plus scheduling delay). While it sleeps longer
//! than [`SHORT_INTERVAL`], the first task put into an empty LIFO slot wakes
//! it (one relaxed load of a read-mostly flag on that path, a few more
//! while fill wakes are off): that task may
//! be stuck behind the poll that queued it, and the short interval is what
//! bounds its wait. A task an io pass put there wakes it only under
//! io_uring and while no worker is parked ([`Monitor::lifo_filled_by_io`]).
//! Either kind of fill wakes it only while the short samples such wakes
//! started have lately found a long poll ([`FillWakes`]); otherwise a
//! fill holds its next two sleeps to [`FILL_WATCH_INTERVAL`] and ends a
//! longer sleep it is in, which then bounds the wait of a task stuck
//! behind a poll instead (two samples at most that far apart).
//! A runtime where nothing is queued behind a running poll costs the
//! monitor one wakeup per half threshold.
//!
//! # Io on a stuck worker's ring
//! See docs/ARCHITECTURE.md ("The monitor") and docs/IO.md ("Peers reap a
//! busy worker's ring"): on the work-stealing flavour a peer reaps a stuck
//! worker's ring or takes the readiness on its epoll (step 2); wakes to
//! that ring from elsewhere are not lost.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc as StdArc,
    thread,
    time::{Duration, Instant},
};

use super::{
    idle::Idle,
    lifo::LifoSlot,
    park::{Parker, Unparker},
    Handle, Shared,
};
use crate::{
    context,
    facade::{
        atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*},
        lock, Arc, Condvar, Mutex,
    },
    runtime::StuckPoll,
    task::Notified,
};

/// The hook a stuck poll is reported to.
pub(crate) type StuckHook = StdArc<dyn Fn(&StuckPoll) + Send + Sync>;
type ThreadHook = StdArc<dyn Fn() + Send + Sync>;

/// The monitor's sleep while a poll has outlasted a sample. A task stuck
/// in a LIFO slot waits one to two of these before a peer takes it.
pub(crate) const SHORT_INTERVAL: Duration = Duration::from_micros(250);
/// Two sightings of one poll closer than this together do not make it a
/// long poll (see `sample`).
const MIN_SAMPLE_GAP: Duration = Duration::from_micros(125);
/// Samples without a long poll before the monitor doubles its sleep.
const QUIET_SAMPLES: u32 = 4;
/// Runs of short samples in a row, each started by a LIFO fill and ended
/// by [`QUIET_SAMPLES`] that found no long poll, after which LIFO fills
/// stop waking the monitor (see [`FillWakes`]).
/// At 4, hyper's hello server at 256 connections (whose samples see a
/// long poll in 3 of 10) still hit such streaks and lost 8% of its p99;
/// at 16 it keeps its wakes, and the echo at 256 (fewer than 1 in 100)
/// loses them as fast.
const FRUITLESS_RUNS: u32 = 16;
/// The monitor's longest sleep while tasks keep going into empty LIFO
/// slots and their wakes are off (see [`FillWakes`]).
const FILL_WATCH_INTERVAL: Duration = Duration::from_millis(1);
/// Relief workers per worker, at most.
pub(crate) const RELIEF_CAP_PER_WORKER: usize = 1;
/// How long an idle relief worker sleeps between looks at the queues.
const RELIEF_PARK: Duration = Duration::from_micros(200);

/// What the monitor needs from the builder.
pub(crate) struct MonitorConfig {
    pub(crate) threshold: Duration,
    pub(crate) hook: Option<StuckHook>,
    pub(crate) thread_name: StdArc<dyn Fn() -> String + Send + Sync>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) on_thread_start: Option<ThreadHook>,
    pub(crate) on_thread_stop: Option<ThreadHook>,
}

/// What one worker (or relief worker) shows the monitor and its peers.
pub(crate) struct WorkerWatch {
    hot: Hot,
    cold: Cold,
}

/// Written by the owner on every poll.
#[repr(align(128))]
struct Hot {
    lifo: LifoSlot<Notified>,
    /// Odd while inside a poll. Written only by the owner.
    poll_seq: AtomicU64,
    /// The task being polled (its header), valid while `poll_seq` is odd.
    current: AtomicPtr<()>,
}

/// Written by the monitor (rarely).
#[repr(align(128))]
struct Cold {
    /// The `poll_seq` of a poll the monitor saw last with work behind it,
    /// or past the threshold; 0 if none. Stale once `poll_seq` moved on.
    stalled_seq: AtomicU64,
    stuck_polls: AtomicU64,
    /// Relief workers only: stop after the current poll.
    retire: AtomicBool,
}

impl WorkerWatch {
    pub(crate) fn new() -> WorkerWatch {
        WorkerWatch {
            hot: Hot {
                lifo: LifoSlot::new(),
                poll_seq: AtomicU64::new(0),
                current: AtomicPtr::new(std::ptr::null_mut()),
            },
            cold: Cold {
                stalled_seq: AtomicU64::new(0),
                stuck_polls: AtomicU64::new(0),
                retire: AtomicBool::new(false),
            },
        }
    }

    /// The worker's LIFO slot.
    #[inline]
    pub(crate) fn lifo(&self) -> &LifoSlot<Notified> {
        &self.hot.lifo
    }

    /// The owner is about to poll `task`. Returns the poll's sequence
    /// number for [`end_poll`](Self::end_poll).
    #[inline]
    pub(crate) fn begin_poll(&self, task: &Notified) -> u64 {
        let raw = task.raw();
        // Relaxed load: only this thread writes it.
        let seq = self.hot.poll_seq.load(Relaxed) + 1;
        // Release: a monitor that reads this pointer (Acquire) then sees
        // the end of the previous poll, so its re-check of `poll_seq`
        // cannot mistake a newer task for the poll it sampled.
        self.hot
            .current
            .store(raw.header_ptr().as_ptr().cast(), Release);
        // Release: publishes `current` to the monitor's Acquire load.
        self.hot.poll_seq.store(seq, Release);
        seq
    }

    /// The owner's poll `seq` returned.
    #[inline]
    pub(crate) fn end_poll(&self, seq: u64) {
        self.hot.poll_seq.store(seq + 1, Release);
    }

    /// The owner's poll counter: odd while it is inside a poll, and a
    /// given odd value names one poll.
    #[inline]
    pub(crate) fn poll_seq(&self) -> u64 {
        self.hot.poll_seq.load(Acquire)
    }

    /// Polls begun under this watch (its owner counts no others with the
    /// monitor on).
    pub(crate) fn polls(&self) -> u64 {
        self.hot.poll_seq.load(Relaxed).div_ceil(2)
    }

    /// True if the owner is inside a poll the monitor marked stalled: its
    /// LIFO slot and whole queue are for the taking.
    #[inline]
    pub(crate) fn is_stalled(&self) -> bool {
        // The cold line first: it is 0 unless a poll stalled, and nobody
        // writes it on the hot path.
        let stalled = self.cold.stalled_seq.load(Acquire);
        stalled != 0 && self.hot.poll_seq.load(Acquire) == stalled
    }

    /// True if a stalled owner holds a task in its LIFO slot.
    #[inline]
    pub(crate) fn has_stealable_lifo(&self) -> bool {
        self.is_stalled() && self.hot.lifo.is_occupied()
    }

    /// Polls of this worker reported as stuck.
    pub(crate) fn stuck_polls(&self) -> u64 {
        self.cold.stuck_polls.load(Relaxed)
    }
}

impl std::fmt::Debug for WorkerWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerWatch")
            .field("poll_seq", &self.hot.poll_seq.load(Relaxed))
            .field("stalled_seq", &self.cold.stalled_seq.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// The monitor's state in `Shared`.
pub(crate) struct Monitor {
    config: MonitorConfig,
    parker: Mutex<Option<Parker>>,
    unparker: Unparker,
    /// The monitor sleeps longer than [`SHORT_INTERVAL`]: the next task put
    /// into an empty LIFO slot wakes it.
    backed_off: AtomicBool,
    /// LIFO fills may wake the monitor ([`FillWakes`]). Written by the
    /// monitor only when it changes.
    fill_wakes: AtomicBool,
    /// A task went into an empty LIFO slot while `fill_wakes` was off (by
    /// an io pass: while no worker was parked), since the monitor last
    /// looked.
    filled: AtomicBool,
    /// The monitor is parked for longer than [`FILL_WATCH_INTERVAL`] with
    /// `fill_wakes` off: the next fill wakes it ([`Monitor::watch_fills`]).
    long_park: AtomicBool,
    /// Watches of the relief workers alive.
    relief: Mutex<Vec<StdArc<WorkerWatch>>>,
    relief_started: AtomicU64,
    /// Stuck polls reported on relief workers.
    relief_stuck_polls: AtomicU64,
    /// Relief threads alive, for shutdown to wait on.
    relief_alive: Mutex<usize>,
    relief_exited: Condvar,
    relief_next_index: AtomicUsize,
}

impl Monitor {
    pub(crate) fn new(config: MonitorConfig) -> Monitor {
        let parker = Parker::new();
        Monitor {
            config,
            unparker: parker.unparker(),
            parker: Mutex::new(Some(parker)),
            backed_off: AtomicBool::new(false),
            fill_wakes: AtomicBool::new(true),
            filled: AtomicBool::new(false),
            long_park: AtomicBool::new(false),
            relief: Mutex::new(Vec::new()),
            relief_started: AtomicU64::new(0),
            relief_stuck_polls: AtomicU64::new(0),
            relief_alive: Mutex::new(0),
            relief_exited: Condvar::new(),
            relief_next_index: AtomicUsize::new(0),
        }
    }

    /// A task went into an empty LIFO slot: make sure the monitor samples
    /// soon enough to free it if the poll that queued it does not return:
    /// at once while fills wake the monitor, else within
    /// [`FILL_WATCH_INTERVAL`] ([`FillWakes`]).
    #[inline]
    pub(crate) fn lifo_filled(&self) {
        // Relaxed loads: a stale `false` costs at most one long sleep; the
        // swap makes one waker per back-off.
        if self.backed_off.load(Relaxed) {
            self.filled_while_backed_off();
        }
    }

    /// A fill the backed-off monitor must hear of: it wakes the monitor
    /// (one waker per back-off) while fill wakes are on, else it is
    /// watched for ([`Monitor::watch_fills`]).
    #[inline]
    fn filled_while_backed_off(&self) {
        if !self.fill_wakes.load(Relaxed) {
            self.watch_fills();
        } else if self.backed_off.swap(false, Relaxed) {
            self.unparker.unpark();
        }
    }

    /// A fill while their wakes are off: the monitor's next two sleeps are
    /// at most [`FILL_WATCH_INTERVAL`] each (two samples see a poll that
    /// outlasts them), and a longer park it is in ends now.
    #[inline]
    fn watch_fills(&self) {
        // SeqCst store, then SeqCst load, against the monitor's SeqCst
        // store of `long_park` and load of `filled` (`Sampler::sleep`):
        // either it sees this fill before it parks long, or this sees its
        // long park and ends it. The store is made once per sleep of the
        // monitor at most; the load is a plain load on x86.
        if !self.filled.load(Relaxed) {
            self.filled.store(true, SeqCst);
        }
        if self.long_park.load(SeqCst) && self.long_park.swap(false, Relaxed) {
            self.unparker.unpark();
        }
    }

    /// [`lifo_filled`](Self::lifo_filled) for a task that a worker's io
    /// pass put there (io_uring): only while no worker is parked. The
    /// short ticks this starts are reschedule points on a machine whose
    /// cores the workers share with other busy threads (a worker preempted
    /// holds its ring's completions); while a worker is parked, the
    /// runtime has a worker to spare, and the ticks only cost: on hyper's
    /// hello server at 50 connections, whose second worker is mostly
    /// parked, 10–12% of the server's CPU per request and of wrk's
    /// requests per second, with the same p99 (docs/BENCHMARKS.md, "Io
    /// wakes start the monitor's ticks only with every worker awake").
    /// What that gives up: a worker stuck in a poll (or preempted in one)
    /// with that task in its slot while a peer is parked is found when two
    /// samples of the monitor's longer sleep (up to half the stuck-poll
    /// threshold apart) see it in that poll, unless another fill has
    /// woken the monitor or held its sleep to [`FILL_WATCH_INTERVAL`]
    /// first; only then is the parked peer woken for the task.
    ///
    /// While the short samples such wakes start keep finding nothing
    /// ([`FillWakes`]), the fill only holds the monitor's next two sleeps
    /// to [`FILL_WATCH_INTERVAL`] and ends a longer one it is in
    /// ([`Monitor::watch_fills`]).
    #[inline]
    pub(crate) fn lifo_filled_by_io(&self, idle: &Idle) {
        if self.backed_off.load(Relaxed) && idle.num_parked() == 0 {
            self.filled_while_backed_off();
        }
    }

    /// Wakes the monitor (shutdown).
    pub(crate) fn wake(&self) {
        self.unparker.unpark();
    }

    /// Relief workers alive now, and started since the runtime started.
    pub(crate) fn relief_counts(&self) -> (usize, u64) {
        (*lock(&self.relief_alive), self.relief_started.load(Relaxed))
    }

    pub(crate) fn relief_stuck_polls(&self) -> u64 {
        self.relief_stuck_polls.load(Relaxed)
    }

    /// Waits until every relief worker has exited, at most until
    /// `deadline`. True if none is left.
    pub(crate) fn wait_relief_exited(&self, deadline: Option<Instant>) -> bool {
        let mut alive = lock(&self.relief_alive);
        while *alive > 0 {
            alive = match deadline {
                None => self
                    .relief_exited
                    .wait(alive)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.relief_exited
                        .wait_timeout(alive, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        true
    }
}

/// Starts the monitor thread of `handle`'s runtime.
pub(crate) fn start(handle: &Handle) -> std::io::Result<thread::JoinHandle<()>> {
    let shared = handle.shared.clone();
    let parker = lock(&shared.monitor.parker)
        .take()
        .expect("the monitor starts once");
    thread::Builder::new()
        .name("weft-monitor".to_owned())
        .spawn(move || Sampler::new(&shared).run(&shared, parker))
}

/// What the monitor remembers of one worker between samples.
#[derive(Clone, Copy, Default)]
struct Sample {
    seq: u64,
    /// When a sample first saw `seq`.
    seen_at: Option<Instant>,
    /// The last `seq` reported as stuck.
    reported: u64,
}

/// What one sample found on one worker.
#[derive(Default)]
struct Verdict {
    /// Inside the same poll as at the last sample.
    long: bool,
    /// Inside one poll for at least the threshold.
    stuck: bool,
    /// When the poll will cross the threshold, if it has not yet.
    due: Option<Instant>,
}

struct Sampler {
    workers: Vec<Sample>,
    relief: Vec<(StdArc<WorkerWatch>, Sample, usize)>,
    interval: Duration,
    max_interval: Duration,
    quiet: u32,
    fill_wakes: FillWakes,
    /// Sleeps still held to [`FILL_WATCH_INTERVAL`] after a fill with
    /// wakes off (see [`Monitor::watch_fills`]).
    watch_left: u32,
}

impl Sampler {
    fn new(shared: &Shared) -> Sampler {
        Sampler {
            workers: vec![Sample::default(); shared.remotes.len()],
            relief: Vec::new(),
            interval: SHORT_INTERVAL,
            max_interval: (shared.monitor.config.threshold / 2).max(SHORT_INTERVAL),
            quiet: 0,
            fill_wakes: FillWakes::default(),
            watch_left: 0,
        }
    }

    fn run(&mut self, shared: &Arc<Shared>, parker: Parker) {
        let monitor = &shared.monitor;
        while !shared.shutdown.load(Acquire) {
            let now = Instant::now();
            let mut long = false;
            let mut stuck = 0;
            let mut due: Option<Instant> = None;
            for (index, remote) in shared.remotes.iter().enumerate() {
                // The tasks peers handed it wait for its poll as its run
                // queue does.
                let queued = !remote.stealer.is_empty() || remote.handed.len() > 0;
                let io_for_peers = remote.io.has_io_for_peers();
                let v = sample(
                    shared,
                    &remote.watch,
                    &mut self.workers[index],
                    now,
                    (queued, io_for_peers),
                    (index, false),
                );
                long |= v.long;
                stuck += usize::from(v.stuck);
                due = min_due(due, v.due);
            }
            let (relief_stuck, relief_due, relief_long) = self.sample_relief(shared, now);
            long |= relief_long;
            due = min_due(due, relief_due);
            if stuck == shared.remotes.len() {
                if relief_stuck == self.relief.len()
                    && self.relief.len() < RELIEF_CAP_PER_WORKER * shared.remotes.len()
                {
                    start_relief(shared);
                }
            } else {
                for (watch, _, _) in &self.relief {
                    watch.cold.retire.store(true, Release);
                }
            }
            self.sleep(monitor, &parker, now, long, due);
        }
        for watch in lock(&monitor.relief).iter() {
            watch.cold.retire.store(true, Release);
        }
    }

    /// Samples the relief workers: how many are stuck, the next due
    /// report, and whether any poll outlasted a sample.
    fn sample_relief(&mut self, shared: &Shared, now: Instant) -> (usize, Option<Instant>, bool) {
        let alive = lock(&shared.monitor.relief).clone();
        self.relief
            .retain(|(w, _, _)| alive.iter().any(|a| StdArc::ptr_eq(a, w)));
        for watch in alive {
            if !self
                .relief
                .iter()
                .any(|(w, _, _)| StdArc::ptr_eq(w, &watch))
            {
                let index = shared.monitor.relief_next_index.fetch_add(1, Relaxed);
                self.relief.push((watch, Sample::default(), index));
            }
        }
        let (mut stuck, mut due, mut long) = (0, None, false);
        for (watch, s, index) in &mut self.relief {
            let v = sample(shared, watch, s, now, (false, false), (*index, true));
            stuck += usize::from(v.stuck);
            due = min_due(due, v.due);
            long |= v.long;
        }
        (stuck, due, long)
    }

    /// Takes a fill made while fill wakes were off, if there is one: the
    /// next two sleeps are watched ([`Monitor::watch_fills`]).
    fn take_fill(&mut self, monitor: &Monitor, order: crate::facade::atomic::Ordering) -> bool {
        let filled = monitor.filled.load(order);
        if filled {
            monitor.filled.store(false, Relaxed);
            self.watch_left = 2;
        }
        filled
    }

    /// The next sleep: the interval, or [`FILL_WATCH_INTERVAL`] while a
    /// fill holds it there (counted down).
    fn watch_sleep(&mut self) -> Duration {
        if self.watch_left == 0 {
            return self.interval;
        }
        self.watch_left -= 1;
        self.interval.min(FILL_WATCH_INTERVAL)
    }

    fn sleep(
        &mut self,
        monitor: &Monitor,
        parker: &Parker,
        now: Instant,
        long: bool,
        due: Option<Instant>,
    ) {
        if long {
            self.interval = SHORT_INTERVAL;
            self.quiet = 0;
            self.fill_wakes.long_poll_seen();
        } else {
            self.quiet += 1;
            if self.quiet >= QUIET_SAMPLES {
                self.quiet = 0;
                if self.interval == SHORT_INTERVAL {
                    self.fill_wakes.backing_off();
                }
                self.interval = (self.interval * 2).min(self.max_interval);
            }
        }
        // Both written only when they change: the workers read this line
        // on every task put into an empty LIFO slot.
        if self.interval > SHORT_INTERVAL && !monitor.backed_off.load(Relaxed) {
            monitor.backed_off.store(true, Relaxed);
        }
        if monitor.fill_wakes.load(Relaxed) != self.fill_wakes.on {
            monitor.fill_wakes.store(self.fill_wakes.on, Relaxed);
        }
        // A fill with wakes off holds this sleep and the next to
        // `FILL_WATCH_INTERVAL`: a poll that outlasts them is seen twice.
        self.take_fill(monitor, Relaxed);
        let mut wake_at = min_due(Some(now + self.watch_sleep()), due).expect("some");
        // Parking longer than that with wakes off: say so before the last
        // look at `filled` (see `Monitor::watch_fills`), so that a fill
        // from now on ends the park.
        let long_park = !self.fill_wakes.on && wake_at > now + FILL_WATCH_INTERVAL;
        if long_park {
            monitor.long_park.store(true, SeqCst);
            if self.take_fill(monitor, SeqCst) {
                // A fill came in between: a short park after all.
                monitor.long_park.store(false, Relaxed);
                wake_at = min_due(Some(now + self.watch_sleep()), due).expect("some");
            }
        }
        parker.park(Some(wake_at));
        if long_park {
            monitor.long_park.store(false, Relaxed);
        }
        if self.interval > SHORT_INTERVAL && !monitor.backed_off.load(Relaxed) {
            // Woken by `lifo_filled` (or `lifo_filled_by_io`).
            self.interval = SHORT_INTERVAL;
            self.quiet = 0;
            self.fill_wakes.woken_by_fill();
        }
    }
}

/// Whether LIFO fills wake the backed-off monitor.
///
/// A task put into an empty LIFO slot wakes the monitor (an io pass's
/// fill: under io_uring, while every worker is awake), for the short
/// samples that find the worker preempted (or stuck) in a later poll with
/// that task behind it ([`Monitor::lifo_filled`],
/// [`Monitor::lifo_filled_by_io`]). Where no poll outlasts a sample,
/// those wakes are pure cost: an echo server at 256 connections woke the
/// monitor ≈ 3,000 times a second, ≈ 5–10% of its CPU per request, and
/// its samples found a long poll in fewer than 1 in 100. So the monitor
/// counts the runs of short samples that a fill started: after
/// [`FRUITLESS_RUNS`] in a row that ended without seeing a long poll,
/// fills stop waking it: a fill then holds its next two sleeps to
/// [`FILL_WATCH_INTERVAL`] (and ends a longer one); the first long poll a sample
/// sees turns the wakes back on. On hyper's hello server at 256
/// connections, where wrk's threads preempt the workers inside polls,
/// samples keep finding long polls and the wakes stay on (its p99 rose
/// by a third without them).
///
/// A task's own fill (one task waking another) followed the rule only
/// from 2026-12-06: hyper's HTTP/1.1 client, whose connection tasks wake
/// its request tasks, woke the monitor ≈ 3,000 times a second through
/// them, and the monitor took 4–9% of the client's CPU. With its wakes
/// under this rule, weft's client went from 0.84× hyper-util's
/// requests per second to 0.92× (medians over eight and ten runs, each
/// the median of 12 paired half-second slices), and from 1.16× its CPU
/// per request to 1.04×, about what the monitor switched off gives
/// (docs/BENCHMARKS.md, "A task's fills under the monitor's rule"). What
/// it gives up, once fills have been fruitless 16 runs in a row: a task
/// left in a LIFO slot behind a poll that does not return waits for two
/// samples [`FILL_WATCH_INTERVAL`] apart (≤ 2 ms) instead of two
/// [`SHORT_INTERVAL`]s apart. Go's `sysmon` sleeps 20 µs to 10 ms;
/// tokio's LIFO slot is not stealable at all.
struct FillWakes {
    on: bool,
    /// In a run of short samples a fill started.
    in_run: bool,
    /// That run has seen a long poll.
    run_saw_long: bool,
    /// Runs in a row that ended without one.
    fruitless: u32,
}

impl Default for FillWakes {
    fn default() -> FillWakes {
        FillWakes {
            on: true,
            in_run: false,
            run_saw_long: false,
            fruitless: 0,
        }
    }
}

impl FillWakes {
    fn woken_by_fill(&mut self) {
        self.in_run = true;
        self.run_saw_long = false;
    }

    fn long_poll_seen(&mut self) {
        self.run_saw_long = true;
        self.fruitless = 0;
        self.on = true;
    }

    /// The short samples end: [`QUIET_SAMPLES`] found no long poll.
    fn backing_off(&mut self) {
        if !std::mem::take(&mut self.in_run) || self.run_saw_long {
            return;
        }
        self.fruitless += 1;
        if self.fruitless >= FRUITLESS_RUNS {
            self.on = false;
        }
    }
}

fn min_due(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One look at one worker (see the module doc, steps 1-3). `holds`: its
/// run queue holds tasks; it has io peers may take (sockets registered
/// with its epoll, ops on a ring peers may reap: `has_io_for_peers`).
/// `who`: its index, and whether it is a relief worker.
fn sample(
    shared: &Shared,
    watch: &WorkerWatch,
    s: &mut Sample,
    now: Instant,
    holds: (bool, bool),
    who: (usize, bool),
) -> Verdict {
    let seq = watch.hot.poll_seq.load(Acquire);
    let Some(seen_at) = s.seen_at.filter(|_| seq & 1 == 1 && seq == s.seq) else {
        // Outside a poll, or in a poll that began since the last sample.
        // A poll's first sighting is timed after the load that saw it:
        // the pass's `now` was read before it, and a poll that began in
        // between (the monitor preempted after reading the clock) would
        // be credited with time it had not run (a report of 100.09 ms for
        // a poll 99.93 ms old).
        s.seq = seq;
        s.seen_at = Some(if seq & 1 == 1 { Instant::now() } else { now });
        if watch.cold.stalled_seq.load(Relaxed) != 0 {
            watch.cold.stalled_seq.store(0, Relaxed);
        }
        return Verdict::default();
    };
    let ran = now.saturating_duration_since(seen_at);
    let threshold = shared.monitor.config.threshold;
    if ran < MIN_SAMPLE_GAP {
        // Seen again right after its first sighting (a wake that raced the
        // end of a park: see `Monitor::watch_fills`): not watched running
        // yet. Neither long (which would turn fill wakes back on) nor
        // stalled (its queue would be stolen from a poll µs old).
        return Verdict {
            long: false,
            stuck: false,
            due: Some(seen_at + threshold),
        };
    }
    let stuck = ran >= threshold;
    let (queued, epoll_sockets) = holds;
    let behind = queued || watch.hot.lifo.is_occupied();
    if (behind || stuck || epoll_sockets) && watch.cold.stalled_seq.load(Relaxed) != seq {
        // Release: pairs with `is_stalled`'s Acquire (nothing to publish
        // but the mark itself; the tasks travel through the slot's swaps).
        watch.cold.stalled_seq.store(seq, Release);
    }
    if behind || epoll_sockets {
        // Someone must come and take it: a parked worker, unless one is
        // searching already (it sees the mark in `has_stealable_work`).
        // Readiness waiting in the stuck worker's epoll is taken the same
        // way (`WorkerCtx::reap_stuck_peers`); the monitor cannot see
        // whether any is there, so while the poll lasts a peer comes to
        // look once a sample.
        if epoll_sockets && !who.1 {
            // What its tasks queued on its ring before this poll goes out
            // now, not after it (`submit_for_owner`; once per batch of
            // pushes). Before the wake: the submit holds the ring's lock
            // through its enter, and a peer woken first would find it
            // taken and reap nothing this time.
            shared.remotes[who.0].io.submit_for_owner();
        }
        shared.notify_parked();
    }
    if stuck && s.reported != seq {
        s.reported = seq;
        report(shared, watch, seq, ran, who);
    }
    Verdict {
        long: true,
        stuck,
        due: (!stuck).then(|| seen_at + threshold),
    }
}

/// Reports the stuck poll `seq` of `watch`'s worker, if it is still
/// running and its task still registered.
fn report(shared: &Shared, watch: &WorkerWatch, seq: u64, ran: Duration, who: (usize, bool)) {
    let ptr = watch.hot.current.load(Acquire);
    let Some(task) = shared.owned.get_live(ptr) else {
        return;
    };
    // The task is alive (we hold a reference); is it still in that poll?
    // If so, `ptr` names the task of poll `seq`: `current` changes only at
    // the start of a later poll, and `poll_seq` never goes back.
    if watch.hot.poll_seq.load(Acquire) != seq {
        return;
    }
    let raw = task.raw();
    let header = raw.header();
    let report = StuckPoll {
        task_id: header.id,
        task_name: header.node().and_then(|n| n.name().cloned()),
        spawn_location: header.spawn_location(),
        elapsed: ran,
        worker: who.0,
        relief: who.1,
        threshold: shared.monitor.config.threshold,
    };
    if who.1 {
        shared.monitor.relief_stuck_polls.fetch_add(1, Relaxed);
    }
    watch.cold.stuck_polls.fetch_add(1, Relaxed);
    #[cfg(feature = "tracing")]
    crate::instrument::stuck_poll(
        report.task_id,
        report.task_name.as_deref(),
        Some(report.spawn_location),
        report.elapsed,
    );
    let hook = shared.monitor.config.hook.clone();
    // A panicking hook must not take the monitor down with it.
    let _ = catch_unwind(AssertUnwindSafe(|| match hook {
        Some(hook) => hook(&report),
        None => eprintln!("weft: stuck poll: {report}"),
    }));
    // The reference goes after the hook: the task may be freed here.
    drop(task);
}

/// Starts one relief worker (see the module doc, step 4).
fn start_relief(shared: &Arc<Shared>) {
    let monitor = &shared.monitor;
    let watch = StdArc::new(WorkerWatch::new());
    let handle = Handle {
        shared: shared.clone(),
    };
    let mut builder = thread::Builder::new().name((monitor.config.thread_name)());
    if let Some(size) = monitor.config.stack_size {
        builder = builder.stack_size(size);
    }
    *lock(&monitor.relief_alive) += 1;
    lock(&monitor.relief).push(watch.clone());
    let on_start = monitor.config.on_thread_start.clone();
    let on_stop = monitor.config.on_thread_stop.clone();
    let spawned = builder.spawn(move || {
        if let Some(start) = &on_start {
            start();
        }
        run_relief(&handle, &watch);
        let monitor = &handle.shared.monitor;
        lock(&monitor.relief).retain(|w| !StdArc::ptr_eq(w, &watch));
        if let Some(stop) = &on_stop {
            stop();
        }
        *lock(&monitor.relief_alive) -= 1;
        monitor.relief_exited.notify_all();
    });
    match spawned {
        Ok(_) => {
            monitor.relief_started.fetch_add(1, Relaxed);
        }
        Err(err) => {
            lock(&monitor.relief).pop();
            *lock(&monitor.relief_alive) -= 1;
            eprintln!("weft: every worker is stuck and a relief worker could not start: {err}");
        }
    }
}

/// The body of a relief worker.
fn run_relief(handle: &Handle, watch: &WorkerWatch) {
    let _enter = context::enter(handle.clone());
    let shared = &*handle.shared;
    let parker = Parker::new();
    while !shared.shutdown.load(Acquire) && !watch.cold.retire.load(Acquire) {
        shared.fire_timers(0);
        match take_relief_work(shared) {
            Some(task) => {
                let seq = watch.begin_poll(&task);
                task.run();
                watch.end_poll(seq);
            }
            None => {
                let wake_at = min_due(
                    Some(Instant::now() + RELIEF_PARK),
                    shared.time.next_deadline(),
                )
                .expect("some");
                parker.park(Some(wake_at));
            }
        }
    }
}

/// A task for a relief worker: from the injector, else from a stalled
/// worker's LIFO slot, queue or hand-off list.
fn take_relief_work(shared: &Shared) -> Option<Notified> {
    use crossbeam_deque::Steal;
    loop {
        match shared.injector.steal() {
            Steal::Success(task) => return Some(task),
            Steal::Retry => continue,
            Steal::Empty => break,
        }
    }
    for remote in shared.remotes.iter() {
        if !remote.watch.is_stalled() {
            continue;
        }
        if let Some(task) = remote.watch.lifo().take() {
            return Some(task);
        }
        if let Some(task) = remote.stealer.steal_one() {
            return Some(task);
        }
        if let Some(task) = remote.handed.pop() {
            return Some(task);
        }
    }
    None
}

#[cfg(all(test, not(any(weft_loom, weft_shuttle))))]
mod tests {
    use super::*;

    fn monitor() -> Monitor {
        Monitor::new(MonitorConfig {
            threshold: Duration::from_millis(10),
            hook: None,
            thread_name: StdArc::new(|| "weft-monitor".to_owned()),
            stack_size: None,
            on_thread_start: None,
            on_thread_stop: None,
        })
    }

    #[test]
    fn fills_wake_a_backed_off_monitor_by_their_rules() {
        let monitor = monitor();
        let idle = Idle::new(2);
        // Both workers awake: the fill wakes the monitor (once per back-off).
        monitor.backed_off.store(true, Relaxed);
        monitor.lifo_filled_by_io(&idle);
        assert!(!monitor.backed_off.load(Relaxed), "woken");
        // A worker parked: the monitor keeps its long sleep.
        let _ = idle.transition_worker_to_parked(1, false);
        monitor.backed_off.store(true, Relaxed);
        monitor.lifo_filled_by_io(&idle);
        assert!(monitor.backed_off.load(Relaxed), "left asleep");
        // A fill by a running task wakes it regardless.
        monitor.lifo_filled();
        assert!(!monitor.backed_off.load(Relaxed), "woken by a task's fill");
        // Back awake: io fills wake it again.
        assert!(idle.unpark_self(1));
        monitor.backed_off.store(true, Relaxed);
        monitor.lifo_filled_by_io(&idle);
        assert!(!monitor.backed_off.load(Relaxed));
        // Fill wakes off: a fill leaves the monitor asleep and asks for
        // the watch interval instead.
        monitor.fill_wakes.store(false, Relaxed);
        monitor.backed_off.store(true, Relaxed);
        monitor.lifo_filled_by_io(&idle);
        assert!(monitor.backed_off.load(Relaxed), "left asleep");
        assert!(monitor.filled.load(Relaxed), "asked for the watch");
        // ... but not while a worker is parked.
        monitor.filled.store(false, Relaxed);
        let _ = idle.transition_worker_to_parked(1, false);
        monitor.lifo_filled_by_io(&idle);
        assert!(!monitor.filled.load(Relaxed));
        // A task's fill is under the same rule, parked worker or not.
        monitor.lifo_filled();
        assert!(monitor.backed_off.load(Relaxed), "left asleep");
        assert!(monitor.filled.load(Relaxed), "asked for the watch");
        // Wakes back on: a task's fill wakes it.
        monitor.fill_wakes.store(true, Relaxed);
        monitor.lifo_filled();
        assert!(!monitor.backed_off.load(Relaxed));
    }

    fn sampler(interval: Duration) -> Sampler {
        Sampler {
            workers: Vec::new(),
            relief: Vec::new(),
            interval,
            max_interval: interval,
            quiet: 0,
            fill_wakes: FillWakes::default(),
            watch_left: 0,
        }
    }

    /// Runs one `sleep` of `sampler` on another thread; once `ready`
    /// holds, `fill`s a LIFO slot. How long the sleep took.
    fn sleep_until_filled(
        sampler: &mut Sampler,
        monitor: &Monitor,
        parker: &Parker,
        ready: impl Fn(&Monitor) -> bool,
        fill: impl FnOnce(&Monitor),
    ) -> Duration {
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                let start = Instant::now();
                sampler.sleep(monitor, parker, start, false, None);
                start.elapsed()
            });
            // The sleeper may end before `ready` is seen (a loaded
            // machine): its time then tells.
            while !ready(monitor) && !sleeper.is_finished() {
                std::thread::yield_now();
            }
            fill(monitor);
            sleeper.join().expect("the sampler's sleep")
        })
    }

    #[test]
    fn fills_with_their_wakes_off_hold_two_sleeps_to_the_watch_and_end_a_long_park() {
        let monitor = monitor();
        let idle = Idle::new(2);
        let parker = lock(&monitor.parker).take().expect("the monitor's parker");
        let long_sleep = Duration::from_secs(2);
        let mut sampler = sampler(long_sleep);
        sampler.fill_wakes.on = false;
        // A sleep that ends at once publishes the back-off and the wakes'
        // state.
        let now = Instant::now();
        sampler.sleep(&monitor, &parker, now, false, Some(now));
        assert!(monitor.backed_off.load(Relaxed));
        assert!(!monitor.fill_wakes.load(Relaxed));
        // An io fill now neither wakes it nor is lost: the next sleep is
        // the watch interval, not the long one ...
        monitor.lifo_filled_by_io(&idle);
        assert!(monitor.backed_off.load(Relaxed), "not woken");
        assert!(monitor.filled.load(Relaxed));
        let start = Instant::now();
        sampler.sleep(&monitor, &parker, start, false, None);
        let slept = start.elapsed();
        assert!(slept < long_sleep / 4, "slept {slept:?}: the fill was lost");
        assert!(!monitor.filled.load(Relaxed), "taken by that sleep");
        assert_eq!(sampler.interval, long_sleep, "not counted as a wake");
        // ... and the one after it, so that two samples see a poll that
        // outlasts them.
        let start = Instant::now();
        sampler.sleep(&monitor, &parker, start, false, None);
        let slept = start.elapsed();
        assert!(slept < long_sleep / 4, "slept {slept:?}: the second watch");
        // Then the monitor parks long again; a fill (here a task's) ends
        // that park instead of waiting for it.
        let slept = sleep_until_filled(
            &mut sampler,
            &monitor,
            &parker,
            |m| m.long_park.load(SeqCst),
            Monitor::lifo_filled,
        );
        assert!(
            slept < long_sleep / 4,
            "slept {slept:?}: the long park went on"
        );
        assert!(!monitor.long_park.load(Relaxed));
        assert!(monitor.backed_off.load(Relaxed), "not counted as a wake");
        // The fill asked for the watch (two sleeps), unless the park's
        // last look took it already (the fill came between the flag and
        // that look, and the park itself was the first).
        let watched = match monitor.filled.load(Relaxed) {
            true => 2,
            false => sampler.watch_left,
        };
        assert!(watched > 0, "the watch is asked for");
        for _ in 0..watched {
            let start = Instant::now();
            sampler.sleep(&monitor, &parker, start, false, None);
            assert!(start.elapsed() < long_sleep / 4, "watched after the wake");
        }
        assert_eq!(sampler.watch_left, 0, "two watched sleeps, no more");
        // A long poll turns the wakes back on, and the next fill wakes it.
        sampler.fill_wakes.long_poll_seen();
        let slept = sleep_until_filled(
            &mut sampler,
            &monitor,
            &parker,
            |m| m.fill_wakes.load(Relaxed),
            |m| m.lifo_filled_by_io(&idle),
        );
        assert!(slept < long_sleep / 4, "slept {slept:?}: not woken");
        assert_eq!(sampler.interval, SHORT_INTERVAL, "woken by the fill");
        assert!(sampler.fill_wakes.in_run);
    }

    /// `n` runs of short samples, each started by a fill, that see no
    /// long poll.
    fn fruitless_runs(rule: &mut FillWakes, n: u32) {
        for _ in 0..n {
            rule.woken_by_fill();
            rule.backing_off();
        }
    }

    #[test]
    fn fill_wakes_turn_off_after_fruitless_runs_and_on_at_a_long_poll() {
        let mut rule = FillWakes::default();
        assert!(rule.on);
        // Runs that see no long poll: off after `FRUITLESS_RUNS` of them.
        for run in 1..=FRUITLESS_RUNS {
            assert!(rule.on, "still on before run {run}");
            rule.woken_by_fill();
            rule.backing_off();
        }
        assert!(!rule.on, "off after {FRUITLESS_RUNS} fruitless runs");
        // A back-off not started by a fill counts for nothing.
        rule.backing_off();
        // A long poll turns the wakes back on at once, and resets the count.
        rule.long_poll_seen();
        assert!(rule.on);
        fruitless_runs(&mut rule, FRUITLESS_RUNS - 1);
        assert!(rule.on, "one run short of turning off");
        // A run that sees a long poll breaks the streak.
        rule.woken_by_fill();
        rule.long_poll_seen();
        rule.backing_off();
        fruitless_runs(&mut rule, FRUITLESS_RUNS - 1);
        assert!(rule.on, "the streak started again after the long poll");
        fruitless_runs(&mut rule, 1);
        assert!(!rule.on);
        // Back-offs without a fill (an idle runtime's samples) do not turn
        // them off from on either.
        let mut idle = FillWakes::default();
        for _ in 0..10 * FRUITLESS_RUNS {
            idle.backing_off();
        }
        assert!(idle.on);
    }
}
