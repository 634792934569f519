//! What the runtime `Builder` decides about the blocking pool.

// `std`'s Arc even under loom: these only share the user's callbacks, which
// loom need not model, and loom's Arc cannot hold a `dyn Fn`.
use std::{fmt, sync::Arc, time::Duration};

/// How the blocking pool sizes, names and reaps its threads.
///
/// `thread_name` runs inside `BlockingPool::spawn` with the pool's lock
/// held, so it must not call into the pool. `on_thread_start` and
/// `on_thread_stop` run on the pool thread itself; they should not panic: a
/// panic ends that thread (the pool's counts stay right, and queued jobs wait
/// for the next thread `spawn` starts).
#[derive(Clone)]
pub(crate) struct BlockingConfig {
    /// Most threads alive at once; at least 1. Jobs beyond this wait in FIFO
    /// order for a thread to become free.
    pub(crate) max_threads: usize,
    /// How long a thread waits idle for a job before it exits.
    pub(crate) keep_alive: Duration,
    /// Called once per new thread for its name.
    pub(crate) thread_name: Arc<dyn Fn() -> String + Send + Sync>,
    /// Stack size of each thread; `None` is std's default.
    pub(crate) stack_size: Option<usize>,
    /// Runs on each new thread before it takes its first job.
    pub(crate) on_thread_start: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Runs on each thread after its last job, before it counts as exited.
    pub(crate) on_thread_stop: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Default for BlockingConfig {
    /// tokio's defaults: 512 threads, 10 s keep-alive.
    fn default() -> Self {
        Self {
            max_threads: 512,
            keep_alive: Duration::from_secs(10),
            thread_name: Arc::new(|| "weft-blocking".to_owned()),
            stack_size: None,
            on_thread_start: None,
            on_thread_stop: None,
        }
    }
}

impl fmt::Debug for BlockingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingConfig")
            .field("max_threads", &self.max_threads)
            .field("keep_alive", &self.keep_alive)
            .field("stack_size", &self.stack_size)
            .field("on_thread_start", &self.on_thread_start.is_some())
            .field("on_thread_stop", &self.on_thread_stop.is_some())
            .finish_non_exhaustive()
    }
}
