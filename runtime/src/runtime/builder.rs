use std::{fmt, io, sync::Arc, time::Duration};

use super::Runtime;

type Hook = Arc<dyn Fn() + Send + Sync>;

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = weft::runtime::Builder::new_multi_thread()
///     .worker_threads(2)
///     .thread_name("my-worker")
///     .build()?;
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// # Ok::<(), weft::runtime::BuildError>(())
/// ```
///
/// Bad values are reported by [`build`](Builder::build) as a [`BuildError`],
/// never by a panic in the setter.
pub struct Builder {
    pub(crate) worker_threads: Option<usize>,
    pub(crate) thread_name: Arc<dyn Fn() -> String + Send + Sync>,
    pub(crate) thread_stack_size: Option<usize>,
    pub(crate) on_thread_start: Option<Hook>,
    pub(crate) on_thread_stop: Option<Hook>,
    pub(crate) global_queue_interval: u32,
    pub(crate) event_interval: u32,
    pub(crate) max_blocking_threads: usize,
    pub(crate) blocking_keep_alive: Duration,
    pub(crate) io_driver: crate::io::Driver,
    pub(crate) io_ring_entries: u32,
    /// Buffers per worker for pooled receives (`recv_buffers`): count and
    /// size, checked by `build`.
    pub(crate) recv_buffers: (usize, usize),
    /// `None`: adaptive (see `io_spin`).
    pub(crate) io_spin: Option<u32>,
    pub(crate) io_registered_files: u32,
    pub(crate) io_peer_reap: bool,
    pub(crate) idle_spin: Duration,
    pub(crate) steal_age: Duration,
    /// `dump_on_signal`: the signal and what to do with each dump.
    pub(crate) dump_on_signal: Option<(crate::signal::unix::SignalKind, super::dump::DumpHook)>,
    pub(crate) histograms: bool,
    pub(crate) histogram_sample_interval: u32,
    pub(crate) stuck_poll_threshold: Duration,
    pub(crate) on_stuck_poll: Option<crate::scheduler::monitor::StuckHook>,
    pub(crate) monitor: bool,
    pub(crate) flavor: Flavor,
}

/// Which scheduler a [`Builder`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Worker threads that steal from each other.
    MultiThread,
    /// No worker thread: the thread inside `block_on` is the only worker.
    CurrentThread,
    /// Worker threads that keep each task where it was spawned.
    ThreadPerCore,
}

/// Why a [`Builder`] could not build a runtime.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// `worker_threads(0)`: a runtime needs at least one worker.
    ZeroWorkerThreads,
    /// More workers than the scheduler's idle accounting supports.
    TooManyWorkerThreads {
        /// What was asked for.
        requested: usize,
        /// The limit.
        max: usize,
    },
    /// `global_queue_interval(0)`.
    ZeroGlobalQueueInterval,
    /// `event_interval(0)`.
    ZeroEventInterval,
    /// `max_blocking_threads(0)`: `spawn_blocking` could never run anything.
    ZeroMaxBlockingThreads,
    /// The OS refused to start a worker thread.
    SpawnThread(io::Error),
    /// `io_ring_entries` outside 1..=32768.
    InvalidRingEntries(u32),
    /// `recv_buffers` with a count that is not a power of two in
    /// 1..=32768, or a size outside 1..=16 MiB.
    InvalidRecvBuffers {
        /// The count asked for.
        count: usize,
        /// The size asked for.
        size: usize,
    },
    /// `io_spin` above 100,000.
    InvalidIoSpin(u32),
    /// `io_registered_files` above 32768.
    InvalidRegisteredFiles(u32),
    /// `idle_spin` above 10 ms.
    InvalidIdleSpin(Duration),
    /// `steal_age` above 100 ms.
    InvalidStealAge(Duration),
    /// `histogram_sample_interval(0)`: use `histograms(false)` to turn
    /// the histograms off.
    ZeroHistogramSampleInterval,
    /// `stuck_poll_threshold` of zero (every poll would be stuck) or below
    /// 1 ms (finer than the monitor samples).
    InvalidStuckPollThreshold(Duration),
    /// [`Builder::build_local`] on a builder from `new_multi_thread`: only a
    /// current-thread runtime can keep `!Send` tasks on one thread.
    LocalNeedsCurrentThread,
    /// The io driver could not be set up: io_uring was asked for and is
    /// unavailable, `WEFT_IO` names no driver, or the OS refused a ring,
    /// an epoll instance or an eventfd.
    Io(io::Error),
}

const DEFAULT_HISTOGRAM_SAMPLE_INTERVAL: u32 = 128;
const DEFAULT_STUCK_POLL_THRESHOLD: Duration = Duration::from_millis(10);
const MIN_STUCK_POLL_THRESHOLD: Duration = Duration::from_millis(1);
const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(50);

/// `Builder::io_registered_files`'s default and its bound.
const DEFAULT_REGISTERED_FILES: u32 = 1024;
const MAX_REGISTERED_FILES: u32 = 32768;
const MAX_IDLE_SPIN: Duration = Duration::from_millis(10);
const DEFAULT_STEAL_AGE: Duration = Duration::from_micros(20);
const MAX_STEAL_AGE: Duration = Duration::from_millis(100);

/// The most workers a runtime may have (the idle state packs counts in 16 bits).
pub const MAX_WORKER_THREADS: usize = (1 << 15) - 1;

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroWorkerThreads => {
                f.write_str("worker_threads must be at least 1, got 0")
            }
            BuildError::TooManyWorkerThreads { requested, max } => {
                write!(f, "worker_threads must be at most {max}, got {requested}")
            }
            BuildError::ZeroGlobalQueueInterval => {
                f.write_str("global_queue_interval must be at least 1, got 0")
            }
            BuildError::ZeroEventInterval => {
                f.write_str("event_interval must be at least 1, got 0")
            }
            BuildError::ZeroMaxBlockingThreads => {
                f.write_str("max_blocking_threads must be at least 1, got 0")
            }
            BuildError::SpawnThread(err) => write!(f, "failed to spawn a worker thread: {err}"),
            BuildError::InvalidRingEntries(n) => {
                write!(f, "io_ring_entries must be in 1..=32768, got {n}")
            }
            BuildError::InvalidRecvBuffers { count, size } => write!(
                f,
                "recv_buffers needs a power-of-two count in 1..=32768 and a size in \
                 1..=16777216, got {count} buffers of {size} bytes"
            ),
            BuildError::InvalidIoSpin(n) => {
                write!(f, "io_spin must be at most 100000, got {n}")
            }
            BuildError::InvalidRegisteredFiles(n) => {
                write!(f, "io_registered_files must be at most 32768, got {n}")
            }
            BuildError::InvalidIdleSpin(d) => {
                write!(f, "idle_spin must be at most 10ms, got {d:?}")
            }
            BuildError::InvalidStealAge(d) => {
                write!(f, "steal_age must be at most 100ms, got {d:?}")
            }
            BuildError::ZeroHistogramSampleInterval => f.write_str(
                "histogram_sample_interval must be at least 1, got 0 \
                 (use histograms(false) to turn the histograms off)",
            ),
            BuildError::InvalidStuckPollThreshold(d) => write!(
                f,
                "stuck_poll_threshold must be at least 1ms (the monitor samples every 250µs), \
                 got {d:?}"
            ),
            BuildError::LocalNeedsCurrentThread => f.write_str(
                "build_local needs a current-thread builder (Builder::new_current_thread)",
            ),
            BuildError::Io(err) => write!(f, "failed to set up the io driver: {err}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::SpawnThread(err) | BuildError::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<BuildError> for io::Error {
    fn from(err: BuildError) -> io::Error {
        match err {
            BuildError::SpawnThread(err) | BuildError::Io(err) => err,
            other => io::Error::new(io::ErrorKind::InvalidInput, other),
        }
    }
}

impl Builder {
    /// A work-stealing runtime; by default one worker per CPU.
    pub fn new_multi_thread() -> Builder {
        Builder {
            worker_threads: None,
            thread_name: Arc::new(|| "weft-worker".to_owned()),
            thread_stack_size: None,
            on_thread_start: None,
            on_thread_stop: None,
            global_queue_interval: 61,
            event_interval: 61,
            max_blocking_threads: 512,
            blocking_keep_alive: Duration::from_secs(10),
            io_driver: crate::io::Driver::Auto,
            io_ring_entries: 256,
            recv_buffers: (
                crate::io::pool::DEFAULT_RECV_BUFFERS as usize,
                crate::io::pool::DEFAULT_RECV_BUFFER_SIZE as usize,
            ),
            // `WEFT_IO_SPIN=<polls>` fixes the count; unset (or anything
            // else, such as `adaptive`): the adaptive default.
            io_spin: std::env::var("WEFT_IO_SPIN")
                .ok()
                .and_then(|v| v.parse().ok()),
            io_registered_files: DEFAULT_REGISTERED_FILES,
            io_peer_reap: true,
            idle_spin: DEFAULT_IDLE_SPIN,
            steal_age: DEFAULT_STEAL_AGE,
            dump_on_signal: None,
            histograms: true,
            histogram_sample_interval: DEFAULT_HISTOGRAM_SAMPLE_INTERVAL,
            stuck_poll_threshold: DEFAULT_STUCK_POLL_THRESHOLD,
            on_stuck_poll: None,
            monitor: true,
            flavor: Flavor::MultiThread,
        }
    }

    /// A runtime with no worker threads: the thread that calls
    /// [`Runtime::block_on`] runs the tasks, the io driver and the timers
    /// while it is inside `block_on` (tokio's `current_thread`). For
    /// embedding (a library that needs a runtime of its own without
    /// starting threads), tests, and programs that want one core.
    ///
    /// - Tasks spawned while no thread is inside `block_on` (with
    ///   [`Runtime::spawn`], or from other threads through a [`Handle`])
    ///   wait, queued, until the next `block_on`; a wake from another
    ///   thread likewise waits. Timers keep their deadlines, and fire late
    ///   if nobody is inside `block_on` when they are due.
    /// - `block_on` called on two threads at once: one of them drives the
    ///   runtime; the other polls only its own future (woken as usual) and
    ///   takes over the runtime when the first returns, if its own future
    ///   is not done by then. Either thread may be the one that drives.
    /// - `spawn_blocking` has its own threads, as on the multi-thread
    ///   runtime, and both io drivers work as there (the io_uring ring is
    ///   created without `SINGLE_ISSUER`, as `block_on` may run on any
    ///   thread; [`build_local`](Self::build_local) keeps it).
    /// - There is no stuck-poll monitor: a poll that blocks blocks every
    ///   task, as on tokio's current-thread runtime; `monitor(true)`,
    ///   `worker_threads` and `idle_spin` are ignored (there is nothing to
    ///   relieve, count or steal from).
    /// - For `!Send` tasks ([`crate::task::spawn_local`]) build a
    ///   [`LocalRuntime`](super::LocalRuntime) with
    ///   [`build_local`](Self::build_local).
    ///
    /// [`Handle`]: super::Handle
    ///
    /// ```
    /// let rt = weft::runtime::Builder::new_current_thread().build()?;
    /// let here = std::thread::current().id();
    /// let ran_on = rt.block_on(async {
    ///     weft::spawn(async { std::thread::current().id() }).await.unwrap()
    /// });
    /// assert_eq!(ran_on, here);
    /// # Ok::<(), weft::runtime::BuildError>(())
    /// ```
    pub fn new_current_thread() -> Builder {
        Builder {
            flavor: Flavor::CurrentThread,
            monitor: false,
            idle_spin: Duration::ZERO,
            ..Builder::new_multi_thread()
        }
    }

    /// A thread-per-core runtime: worker threads as on
    /// [`new_multi_thread`](Self::new_multi_thread) (`worker_threads`, by
    /// default one per CPU), but each task stays on the worker that
    /// spawned it, as on monoio or glommio. A task spawned from outside
    /// the workers (`Runtime::spawn`, a `Handle` on another thread) gets a
    /// worker round-robin. Wakes from anywhere go to the task's own
    /// worker (its inbox), never to a shared queue, and workers never
    /// steal: a connection's task, its io (that worker's ring or epoll)
    /// and its wakes stay on one thread and one cache. The price is
    /// balance: a busy worker's tasks wait even while another worker is
    /// idle, so use it where load spreads evenly by itself (one listener
    /// per worker with `SO_REUSEPORT`, many similar connections).
    ///
    /// [`spawn_local`](crate::task::spawn_local) works inside its tasks:
    /// the `!Send` task stays on the caller's worker and is dropped there
    /// at shutdown.
    ///
    /// A flavour rather than a `stealing(false)` switch on the
    /// multi-thread builder: it changes where spawns go and what
    /// `spawn_local` may do, and it turns off the monitor (whose relief
    /// workers and draining of stuck workers move tasks), so it is a
    /// different contract, not a tuning knob. `monitor(true)` and
    /// `idle_spin` are ignored (nobody steals, so nobody spins for work).
    /// Workers park outside the stealing runtime's idle accounting, so the
    /// `parked_workers` and `searching_workers` metrics stay 0 (each
    /// worker's `parks` still counts); `injector_depth` counts the tasks
    /// waiting in the workers' inboxes.
    ///
    /// ```
    /// let rt = weft::runtime::Builder::new_thread_per_core()
    ///     .worker_threads(2)
    ///     .build()?;
    /// let same = rt.block_on(async {
    ///     weft::spawn(async {
    ///         let here = std::thread::current().id();
    ///         weft::spawn(async move { std::thread::current().id() == here })
    ///             .await
    ///             .unwrap()
    ///     })
    ///     .await
    ///     .unwrap()
    /// });
    /// assert!(same, "a child stays on its parent's worker");
    /// # Ok::<(), weft::runtime::BuildError>(())
    /// ```
    pub fn new_thread_per_core() -> Builder {
        Builder {
            flavor: Flavor::ThreadPerCore,
            monitor: false,
            idle_spin: Duration::ZERO,
            ..Builder::new_multi_thread()
        }
    }

    /// Number of worker threads (default: the number of CPUs).
    pub fn worker_threads(mut self, n: usize) -> Builder {
        self.worker_threads = Some(n);
        self
    }

    /// Name of every thread the runtime starts (workers and blocking threads).
    pub fn thread_name(mut self, name: impl Into<String>) -> Builder {
        let name = name.into();
        self.thread_name = Arc::new(move || name.clone());
        self
    }

    /// A function producing each new thread's name.
    pub fn thread_name_fn(mut self, f: impl Fn() -> String + Send + Sync + 'static) -> Builder {
        self.thread_name = Arc::new(f);
        self
    }

    /// Stack size of the runtime's threads (default: std's).
    pub fn thread_stack_size(mut self, bytes: usize) -> Builder {
        self.thread_stack_size = Some(bytes);
        self
    }

    /// Runs on each runtime thread (worker or blocking) when it starts.
    pub fn on_thread_start(mut self, f: impl Fn() + Send + Sync + 'static) -> Builder {
        self.on_thread_start = Some(Arc::new(f));
        self
    }

    /// Runs on each runtime thread just before it exits.
    pub fn on_thread_stop(mut self, f: impl Fn() + Send + Sync + 'static) -> Builder {
        self.on_thread_stop = Some(Arc::new(f));
        self
    }

    /// Ticks between forced looks at the global (injector) queue, so remote
    /// spawns are not starved by a busy local queue (default 61, as Go).
    pub fn global_queue_interval(mut self, ticks: u32) -> Builder {
        self.global_queue_interval = ticks;
        self
    }

    /// Ticks between checks for due timers (and io events) while a worker
    /// has work (default 61).
    pub fn event_interval(mut self, ticks: u32) -> Builder {
        self.event_interval = ticks;
        self
    }

    /// Cap on `spawn_blocking` threads (default 512).
    pub fn max_blocking_threads(mut self, n: usize) -> Builder {
        self.max_blocking_threads = n;
        self
    }

    /// How long an idle blocking thread waits for work before exiting
    /// (default 10 s).
    pub fn thread_keep_alive(mut self, keep_alive: Duration) -> Builder {
        self.blocking_keep_alive = keep_alive;
        self
    }

    /// Which io driver to use (default [`Driver::Auto`](crate::io::Driver::Auto):
    /// io_uring where usable, epoll otherwise, overridable with `WEFT_IO`).
    pub fn io_driver(mut self, driver: crate::io::Driver) -> Builder {
        self.io_driver = driver;
        self
    }

    /// Submission queue entries of each worker's io_uring, 1 to 32768
    /// (default 256; the completion queue is four times larger, at most
    /// 65536).
    pub fn io_ring_entries(mut self, entries: u32) -> Builder {
        self.io_ring_entries = entries;
        self
    }

    /// Buffers each worker keeps for pooled receives
    /// ([`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream)):
    /// `count` buffers of `size` bytes (default 256 of 4 KiB). Under
    /// io_uring they form the worker's provided buffer ring (registered at
    /// the first pooled receive; the memory is allocated then, `count *
    /// size` bytes); under epoll, and for io_uring's fallback, they bound
    /// the free list of heap buffers kept for reuse. Each chunk a pooled
    /// receive yields is at most `size` bytes. `count` must be a power of
    /// two, at most 32768; `size` at most 16 MiB. See docs/IO.md, "Pooled
    /// receive".
    pub fn recv_buffers(mut self, count: usize, size: usize) -> Builder {
        self.recv_buffers = (count, size);
        self
    }

    /// The pool settings, checked.
    pub(crate) fn recv_pool_config(&self) -> Result<crate::io::PoolConfig, BuildError> {
        let (count, size) = self.recv_buffers;
        match (u16::try_from(count), u32::try_from(size)) {
            (Ok(c), Ok(s)) if c.is_power_of_two() && c <= 32768 && (1..=1 << 24).contains(&s) => {
                Ok(crate::io::PoolConfig { count: c, size: s })
            }
            _ => Err(BuildError::InvalidRecvBuffers { count, size }),
        }
    }

    /// A fixed number of times a worker that ran out of tasks, with io in
    /// flight, polls its driver (without blocking) before it parks; 0 parks
    /// at once. The default is adaptive (see
    /// [`io_spin_adaptive`](Self::io_spin_adaptive)); `WEFT_IO_SPIN=<polls>`
    /// sets a fixed count too.
    ///
    /// Each ring or epoll belongs to one worker, so when two tasks on
    /// different workers trade messages every hop wakes a parked worker,
    /// and waking a halted CPU costs tens of microseconds on a VM. Spinning
    /// trades CPU for that latency. A fixed count spins whenever io is in
    /// flight: on TCP echo with the client on the same 2 cores 100 polls
    /// cost ~10% server CPU per request and a worse p99 (the client threads
    /// lose the CPU the spinning worker keeps). See docs/IO.md. At most
    /// 100,000.
    pub fn io_spin(mut self, polls: u32) -> Builder {
        self.io_spin = Some(polls);
        self
    }

    /// Slots in each worker's io_uring table of registered files (default
    /// 1024, at most 32768; 0 turns registered files off). A TCP or Unix
    /// socket that has started 8 operations from a worker gets a slot in
    /// that worker's ring, and its later operations on that ring name the
    /// slot instead of the fd: the kernel then skips the fd lookup and the
    /// file's reference count on every operation (about 2% of a
    /// thread-per-core echo server's CPU). Its operations on other rings
    /// (after its task moved) use the fd. A full table, or a kernel that
    /// refuses to register (the table is also capped at the soft
    /// `RLIMIT_NOFILE`), leaves sockets on their fds. The slot is freed
    /// when the socket is dropped; `RuntimeMetrics::io_registered_files`
    /// counts the slots in use. Ignored under epoll. See docs/IO.md,
    /// "Registered files".
    pub fn io_registered_files(mut self, slots: u32) -> Builder {
        self.io_registered_files = slots;
        self
    }

    /// Whether a worker may reap the io_uring ring of a peer stuck inside
    /// one poll (default on; the work-stealing flavour with two or more
    /// workers only). On, the rings are set up with `COOP_TASKRUN`, and a
    /// worker that finds a peer inside one poll for `steal_age` (or
    /// marked by the monitor) with operations in flight on its ring has
    /// the kernel post their completions (`membarrier`) and delivers them
    /// itself, so a long computation does not hold up the other
    /// connections whose io is on its ring; the woken tasks run on the
    /// reaping worker. (A worker the kernel has preempted posts its
    /// completions only once it runs again.) Off, the rings keep
    /// `SINGLE_ISSUER` + `DEFER_TASKRUN` and only their own worker reaps
    /// them. Also off without the monitor (`monitor(false)`), where the
    /// process cannot register for `membarrier`, or with the environment
    /// variable `WEFT_IO_PEER_REAP=0`. Ignored under epoll,
    /// where peers always take a stuck worker's readiness events. See
    /// docs/IO.md, "Peers reap a busy worker's ring".
    pub fn io_peer_reap(mut self, on: bool) -> Builder {
        self.io_peer_reap = on;
        self
    }

    /// The default: spin only in the shape of a request chain, up to 100
    /// polls when the worker has one or two operations in flight (io_uring)
    /// or sockets registered (epoll), and only while its last park was
    /// ended by its own io within 200 µs or its last spin found work. In the
    /// UDP ping-pong bench that took weft from 0.23x to 1.3-1.4x tokio; in
    /// alternating runs of the TCP echo (many connections per worker) it
    /// changed nothing measurable.
    pub fn io_spin_adaptive(mut self) -> Builder {
        self.io_spin = None;
        self
    }

    /// How long a worker that ran out of work keeps looking for more
    /// (yielding its CPU between looks) before it parks; zero parks at once.
    /// Default 50 µs, at most 10 ms.
    ///
    /// Only a searching worker spins (at most half the workers search at
    /// once), and while it does, spawns and wakes count on it instead of
    /// waking a parked worker. On a VM a parked worker's vCPU halts, and
    /// waking it takes tens of microseconds, longer than many gaps between
    /// bursts of work: in the `chained_spawn` bench (a `block_on` loop
    /// starting a chain of 1,000 spawns) 50 µs took weft from 0.86x to
    /// 0.70x tokio's time. Go's idle Ms spin the same way before they sleep.
    /// An idle runtime pays it once per burst, not continuously.
    ///
    /// What a spinning worker may take, and when, is
    /// [`steal_age`](Self::steal_age)'s to say.
    pub fn idle_spin(mut self, duration: Duration) -> Builder {
        self.idle_spin = duration;
        self
    }

    /// How long a task must wait in another worker's run queue before an
    /// idle worker takes it, when that queue holds fewer than 8 tasks and
    /// its worker is not stuck in a poll (the monitor frees those at once).
    /// A longer queue, and the injector, are taken from at once. Zero
    /// takes any queued task at once, as tokio and Go do. Default 20 µs, at
    /// most 100 ms. Only the multi-thread runtime steals.
    ///
    /// A task woken by another one usually runs on the waker's worker
    /// within microseconds: a channel's receiver and the senders it wakes,
    /// a request chain. Taken at once, such tasks split over the workers
    /// and then trade every message across the cores (each send and
    /// receive a cache miss), which costs more than the parallelism gains.
    /// With the wait, mpsc with 4 senders and 1 receiver ran 1 M messages
    /// in 54 ms instead of 124 ms (tokio: 129 ms), mpsc 1→1 in 49 instead
    /// of 60, and the scheduler bench, where work does need spreading,
    /// stayed within its noise (docs/BENCHMARKS.md, 2026-12-04). Linux's
    /// scheduler has the same rule for its run queues (a task that ran
    /// recently is "cache hot" and not migrated for a small imbalance).
    ///
    /// The wait is a lower bound: the idle worker looks while it spins
    /// ([`idle_spin`](Self::idle_spin)), so one that has parked takes the
    /// task when it is next woken. Keep `idle_spin` above `steal_age`.
    pub fn steal_age(mut self, age: Duration) -> Builder {
        self.steal_age = age;
        self
    }

    /// Prints the task dump ([`Handle::dump`](super::Handle::dump)) to
    /// stderr each time the process receives `signal` (say
    /// `SignalKind::user_defined1()`, for `kill -USR1 <pid>`), as Go
    /// prints its goroutines on SIGQUIT. A detached task named
    /// `weft-dump-on-signal` listens (it is in the dump, and in
    /// `alive_tasks`). [`build`](Builder::build) fails with
    /// [`BuildError::Io`] for a signal that cannot be caught.
    pub fn dump_on_signal(self, signal: crate::signal::unix::SignalKind) -> Builder {
        self.dump_on_signal_with(signal, |dump| eprintln!("{dump}"))
    }

    /// As [`dump_on_signal`](Builder::dump_on_signal), handing each dump to
    /// `f` (on a worker thread: keep it short, or send it elsewhere).
    pub fn dump_on_signal_with(
        mut self,
        signal: crate::signal::unix::SignalKind,
        f: impl Fn(super::dump::TaskDump) + Send + Sync + 'static,
    ) -> Builder {
        self.dump_on_signal = Some((signal, Arc::new(f)));
        self
    }

    /// Whether the workers keep latency histograms (default on): per
    /// worker, how long polls run and how long woken tasks wait to be
    /// polled; per io driver, how long operations take. Read them through
    /// [`Runtime::metrics`](super::Runtime::metrics) (e.g.
    /// [`RuntimeMetrics::poll_duration`](super::RuntimeMetrics::poll_duration)).
    /// Off, the schedulers and the io drivers read no clock for them and
    /// the snapshots are empty (except epoll's waits, which are timed
    /// either way: each is a system call).
    pub fn histograms(mut self, enabled: bool) -> Builder {
        self.histograms = enabled;
        self
    }

    /// One task schedule in `n` is sampled for the scheduling histograms
    /// (default 128): the sampled schedule is stamped with the time, and
    /// the poll it leads to is timed, start and end. One io_uring
    /// operation in `n` per ring is timed too. 1 times every poll and op:
    /// on the benchmark VM that is 6–31% more instructions on the
    /// scheduler workloads plus three clock reads of 12–20 ns per poll,
    /// where the default costs 0.3–1.5% in instructions (see
    /// docs/BENCHMARKS.md). Each thread counts its own schedules. 0 is a
    /// [`BuildError`]: use [`histograms(false)`](Self::histograms).
    pub fn histogram_sample_interval(mut self, n: u32) -> Builder {
        self.histogram_sample_interval = n;
        self
    }

    /// How long one poll of a task may run before the runtime treats its
    /// worker as stuck (default 10 ms, at least 1 ms).
    ///
    /// A monitor thread samples each worker's poll counter (the workers
    /// read no clock for it). A poll seen running by two samples with
    /// tasks queued behind it on its worker (its LIFO slot or run queue)
    /// has them taken by the other workers: for a task put into the LIFO
    /// slot, the samples come 250 µs apart (1 ms once such tasks have
    /// long found no such poll); otherwise they may be up to half this
    /// threshold apart. A poll past this threshold is reported while it
    /// still runs (see [`on_stuck_poll`](Self::on_stuck_poll)), within 1.5
    /// thresholds of its start plus scheduling delay; and if every worker
    /// is stuck past it, a relief worker starts (at most one per worker)
    /// and runs queued tasks until one of the stuck polls returns. docs/ARCHITECTURE.md
    /// ("The monitor") has the details, including what happens to io in
    /// flight on a stuck worker.
    pub fn stuck_poll_threshold(mut self, threshold: Duration) -> Builder {
        self.stuck_poll_threshold = threshold;
        self
    }

    /// Called (on the monitor thread) for every poll that runs longer than
    /// [`stuck_poll_threshold`](Self::stuck_poll_threshold), once per poll,
    /// while the poll is still running: the task's id, name, spawn location
    /// and how long it has run so far. Replaces the default, a line on
    /// stderr. Each worker's count of stuck polls is in
    /// [`WorkerMetrics::stuck_polls`](super::WorkerMetrics::stuck_polls).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = weft::runtime::Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .stuck_poll_threshold(Duration::from_millis(20))
    ///     .on_stuck_poll(|stuck| eprintln!("{} at {}", stuck.task_id(), stuck.spawn_location()))
    ///     .build()?;
    /// # drop(rt);
    /// # Ok::<(), weft::runtime::BuildError>(())
    /// ```
    pub fn on_stuck_poll(
        mut self,
        hook: impl Fn(&super::StuckPoll) + Send + Sync + 'static,
    ) -> Builder {
        self.on_stuck_poll = Some(Arc::new(hook));
        self
    }

    /// Whether the runtime runs its monitor thread (default: on).
    ///
    /// The monitor (Go's `sysmon`) is what lets other workers take the
    /// tasks queued behind a poll that does not return, reports stuck
    /// polls ([`on_stuck_poll`](Self::on_stuck_poll), the `stuck_polls`
    /// metric) and starts relief workers when every worker is stuck. Off,
    /// there is no monitor thread and workers skip the four stores per
    /// poll that publish it what they run: a task woken behind a blocked
    /// worker then waits for that worker, as on tokio, and nothing reports
    /// it. Meant for measuring what the monitor costs (docs/BENCHMARKS.md:
    /// within the noise) and for embedders that run their own watchdog.
    pub fn monitor(mut self, on: bool) -> Builder {
        self.monitor = on;
        self
    }

    /// Validates the configuration and starts the worker threads.
    pub fn build(&mut self) -> Result<Runtime, BuildError> {
        self.build_flavor(false)
    }

    /// Builds a [`LocalRuntime`](super::LocalRuntime): a current-thread
    /// runtime bound to the calling thread, on which
    /// [`spawn_local`](crate::task::spawn_local) runs `!Send` futures.
    /// Fails with [`BuildError::LocalNeedsCurrentThread`] on a builder from
    /// [`new_multi_thread`](Self::new_multi_thread).
    pub fn build_local(&mut self) -> Result<super::LocalRuntime, BuildError> {
        if self.flavor != Flavor::CurrentThread {
            return Err(BuildError::LocalNeedsCurrentThread);
        }
        Ok(super::LocalRuntime::new(self.build_flavor(true)?))
    }

    fn build_flavor(&mut self, local: bool) -> Result<Runtime, BuildError> {
        let workers = match self.flavor {
            Flavor::CurrentThread => 1,
            Flavor::MultiThread | Flavor::ThreadPerCore => self
                .worker_threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        };
        if workers == 0 {
            return Err(BuildError::ZeroWorkerThreads);
        }
        if workers > MAX_WORKER_THREADS {
            return Err(BuildError::TooManyWorkerThreads {
                requested: workers,
                max: MAX_WORKER_THREADS,
            });
        }
        if self.global_queue_interval == 0 {
            return Err(BuildError::ZeroGlobalQueueInterval);
        }
        if self.event_interval == 0 {
            return Err(BuildError::ZeroEventInterval);
        }
        if self.max_blocking_threads == 0 {
            return Err(BuildError::ZeroMaxBlockingThreads);
        }
        if self.io_ring_entries == 0 || self.io_ring_entries > 32768 {
            return Err(BuildError::InvalidRingEntries(self.io_ring_entries));
        }
        self.recv_pool_config()?;
        if let Some(polls @ 100_001..) = self.io_spin {
            return Err(BuildError::InvalidIoSpin(polls));
        }
        if self.io_registered_files > MAX_REGISTERED_FILES {
            return Err(BuildError::InvalidRegisteredFiles(self.io_registered_files));
        }
        if self.idle_spin > MAX_IDLE_SPIN {
            return Err(BuildError::InvalidIdleSpin(self.idle_spin));
        }
        if self.steal_age > MAX_STEAL_AGE {
            return Err(BuildError::InvalidStealAge(self.steal_age));
        }
        if self.stuck_poll_threshold < MIN_STUCK_POLL_THRESHOLD {
            return Err(BuildError::InvalidStuckPollThreshold(
                self.stuck_poll_threshold,
            ));
        }
        if self.histogram_sample_interval == 0 {
            return Err(BuildError::ZeroHistogramSampleInterval);
        }
        let runtime = match self.flavor {
            Flavor::MultiThread | Flavor::ThreadPerCore => Runtime::start(self, workers)?,
            Flavor::CurrentThread => Runtime::start_current_thread(self, local)?,
        };
        if let Some((signal, hook)) = &self.dump_on_signal {
            super::dump::dump_on_signal(&runtime, *signal, hook.clone()).map_err(BuildError::Io)?;
        }
        Ok(runtime)
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new_multi_thread()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("worker_threads", &self.worker_threads)
            .field("global_queue_interval", &self.global_queue_interval)
            .field("event_interval", &self.event_interval)
            .field("max_blocking_threads", &self.max_blocking_threads)
            .field("blocking_keep_alive", &self.blocking_keep_alive)
            .field("io_driver", &self.io_driver)
            .field("io_ring_entries", &self.io_ring_entries)
            .field("recv_buffers", &self.recv_buffers)
            .field("io_spin", &self.io_spin)
            .field("io_registered_files", &self.io_registered_files)
            .field("io_peer_reap", &self.io_peer_reap)
            .field("idle_spin", &self.idle_spin)
            .field("steal_age", &self.steal_age)
            .field("histograms", &self.histograms)
            .field("histogram_sample_interval", &self.histogram_sample_interval)
            .field("stuck_poll_threshold", &self.stuck_poll_threshold)
            .field("monitor", &self.monitor)
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
}
