//! The thread pool behind `spawn_blocking`.
//!
//! Blocking jobs (file io, DNS, CPU-heavy work, FFI) run here instead of on
//! a worker, so they never stall the scheduler. Jobs are long next to a
//! mutex, so the pool is a `Mutex<VecDeque<Job>>` and two condvars, not a
//! lock-free queue. It uses only `std` through `crate::facade`.
//!
//! # Protocol
//!
//! All pool state (`pool::State`) lives under one mutex; the counters below
//! are only read or written with it held.
//!
//! - `threads`: workers started and not yet exited. `spawn` increments it
//!   when it starts a thread; the worker decrements it in its exit guard,
//!   after its `on_thread_stop` hook, whether it returns or unwinds.
//! - `idle`: workers waiting for a job *and not yet claimed*. A worker
//!   increments it when it finds the queue empty. `spawn` claims an idle
//!   worker by decrementing `idle` and incrementing `notified` before
//!   `notify_one`, so a burst of spawns never counts the same sleeper twice.
//! - `notified`: claims not yet taken. Any waking worker that sees
//!   `notified > 0` takes one and goes back to the queue (the claims are
//!   interchangeable, so it does not matter which sleeper took which). A
//!   worker that wakes with none was woken spuriously, by its keep-alive, or
//!   by shutdown, and takes itself out of `idle`.
//!
//! `spawn` of a job, in order: refuse if shut down; push to the back of the
//! queue; if `idle > 0`, claim an idle worker; else if `threads <
//! max_threads`, start a thread; else leave the job for the next worker that
//! finishes its job (workers always drain the queue before going idle).
//!
//! # Invariants
//!
//! - A job is queued only if a worker will pop it: some worker is claimed,
//!   started, or busy (and will look at the queue before idling).
//! - `idle + notified <= threads`: every idle or claimed worker is alive.
//! - After shutdown the queue is empty and stays empty.
//! - A job's panic is caught around the job: the thread keeps serving and
//!   `jobs_completed` counts it. The job's owner learns of the panic through
//!   its own channel (its `JoinHandle`), not through the pool.
//!
//! # Failure to start a thread
//!
//! If the OS refuses a thread and no thread exists, `spawn` returns the job
//! in `Err`: nothing could ever run it. If other threads exist, the job stays
//! queued and they run it; the pool is merely smaller than it wanted.
//!
//! # Idle threads
//!
//! A worker that has waited `keep_alive` with no claim exits. The deadline is
//! computed once per idle period, so spurious wakeups do not extend it.
//!
//! # Shutdown
//!
//! Like tokio, jobs that no thread has started are dropped, not run: their
//! owners see cancellation (the `JoinHandle` inside the closure is dropped).
//! `shutdown(timeout)`:
//!
//! 1. Under the lock, set `shutdown` (later `spawn`s return `Err(job)`),
//!    take the whole queue, and wake every idle worker.
//! 2. Drop the taken jobs outside the lock, since their drops run owner code.
//! 3. Wait on `all_exited` until `threads == 0` or the deadline. Running jobs
//!    finish; each worker then sees `shutdown`, runs `on_thread_stop` and
//!    exits.
//! 4. Take the handles of workers that are still inside a job: they are
//!    detached (dropped, never joined) and added to `threads_detached`. They
//!    still count in `threads` until they exit.
//! 5. Join the last exited worker. Each exiting worker joins the one that
//!    exited before it, so this joins every exited thread, TLS destructors
//!    included, without keeping a list.
//!
//! Returns `true` if no thread was left running. Calling it again repeats
//! steps 3–5 for the detached threads that remain.

mod config;
mod pool;
mod spawn;

pub(crate) use config::BlockingConfig;
pub(crate) use pool::BlockingPool;
pub(crate) use spawn::spawn_blocking;

#[cfg(test)]
mod tests;
