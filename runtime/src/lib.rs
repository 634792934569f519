//! weft: a work-stealing async runtime with cooperative scheduling, timers
//! and a blocking pool, built to carry deadlines, cancellation trees and
//! resilience natively.
//!
//! ```
//! #[weft::main(worker_threads = 2)]
//! async fn main() {
//!     let handle = weft::spawn(async { 6 * 7 });
//!     assert_eq!(handle.await.unwrap(), 42);
//! }
//! ```
//!
//! The attribute macros reject what cannot work, at compile time:
//!
//! ```compile_fail
//! #[weft::main]
//! fn main() {} // error: the `async` keyword is missing
//! ```
//!
//! ```compile_fail
//! #[weft::main(worker_threads = 0)]
//! async fn main() {} // error: a runtime needs at least one worker
//! ```
//!
//! The map of the crate (docs/ARCHITECTURE.md explains each):
//!
//! | module | what it holds |
//! |---|---|
//! | `task/` | the task cell, its state word, `JoinHandle`, `task::Builder` (names, deadlines, detached roots) |
//! | `scheduler/` | workers, run queues, the stealable LIFO slot, stealing, parking; the monitor (stuck workers drained, relief workers, the stuck-poll watchdog); the current-thread and thread-per-core flavours |
//! | `coop` | the per-poll budget, `yield_now`, `consume_budget` |
//! | [`time`] | per-worker timing wheels; `sleep`, `timeout`, `interval`, the coarse clock |
//! | [`cancel`] | the cancellation tree: scopes, `shield`, `TaskGroup`, `cancellable`, `current`, the `grpc-timeout` codec (`wire`) |
//! | [`io`] | the drivers (io_uring per worker, epoll fallback), owned buffers and `Slice`, `BufReader`/`BufWriter` |
//! | [`net`] | TCP, UDP and Unix sockets, `TcpSocket`, `lookup_host`; every op an await point |
//! | [`sync`] | `oneshot`, `mpsc`, `broadcast`, `watch`, `Mutex`, `RwLock`, `Semaphore`, `Notify`, `Barrier`, `OnceCell`; every wait an await point |
//! | [`signal`] | `ctrl_c`, `unix::signal` |
//! | `macros` | [`select!`] (tokio's syntax); [`join!`] and [`try_join!`] are futures-util's |
//! | `blocking/` | the `spawn_blocking` pool |
//! | [`runtime`] | `Builder` (multi-thread, current-thread, thread-per-core), `Runtime`, `LocalRuntime`, `Handle`, metrics and latency histograms, the task dump, stuck-poll reports, shutdown |
//! | `instrument` | `tracing` spans and events (feature `tracing`) |
//! | `facade` | `std`, `loom` or `shuttle` primitives for the concurrent code (`cfg(weft_loom)`, `cfg(weft_shuttle)`) |
//!
//! docs/FROM_TOKIO.md maps tokio's names to weft's and lists what differs.

#![warn(missing_docs)]

mod alloc;
mod blocking;
pub mod cancel;
mod context;
mod coop;
mod facade;
#[cfg(feature = "tracing")]
mod instrument;
// Under shuttle the workers never wait in their drivers nor wake them
// (see `park_worker` in `scheduler/worker.rs`).
#[cfg_attr(weft_shuttle, allow(dead_code))]
pub mod io;
mod macros;
pub mod net;
mod prefetch;
pub mod runtime;
mod scheduler;
pub mod signal;
pub mod sync;
pub mod task;
pub mod time;

#[cfg(any(weft_loom, weft_shuttle))]
#[doc(hidden)]
pub mod __loom;

#[cfg(fuzzing)]
#[doc(hidden)]
pub mod __fuzz;

use std::future::Future;

pub use weft_macros::{main, test};

/// Polls several futures in the calling task until all complete; their
/// outputs as a tuple. futures-util's `join!`, re-exported: it behaves as
/// tokio's (no `Unpin`/`FusedFuture` needed, every future polled
/// concurrently in this task, none dropped early).
#[doc(inline)]
pub use futures_util::join;
/// As [`join!`], for futures of `Result`s: `Ok` of the tuple, or the first
/// `Err`, after which the other futures are dropped (as tokio's).
/// futures-util's `try_join!`, re-exported.
#[doc(inline)]
pub use futures_util::try_join;

#[doc(hidden)]
pub use crate::macros::support as __private;

pub use crate::{
    runtime::Runtime,
    task::{JoinError, JoinHandle},
};

/// Spawns a task onto the current runtime.
///
/// # Panics
/// Outside a weft runtime (see [`runtime::Handle::try_current`]).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // Captured here: `#[track_caller]` does not reach into the closure.
    let location = std::panic::Location::caller();
    context::with_current_handle(|handle| match handle {
        Some(handle) => handle.spawn_at(
            future,
            task::Id::next(),
            &cancel::SpawnOptions::default(),
            location,
        ),
        None => panic!(
            "`weft::spawn` called outside a weft runtime: call it inside \
             `Runtime::block_on`, a spawned task, or after `Runtime::enter`"
        ),
    })
}

/// Runs a blocking closure on the current runtime's blocking pool.
///
/// # Panics
/// Outside a weft runtime.
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    runtime::Handle::current().spawn_blocking(f)
}
