//! Signals, as weft await points.
//!
//! - [`ctrl_c`]: completes on the next `SIGINT`.
//! - [`unix::signal`]: a [`Signal`](unix::Signal) listener for any
//!   catchable signal, with `recv().await`, `poll_recv` and a
//!   `futures_core::Stream` impl. Every listener of a signal sees every
//!   delivery.
//!
//! Waiting for a signal is an await point of the task's scope: a cancel or
//! a passed deadline ends it with the [`Cancelled`](crate::cancel::Cancelled)
//! error (`ctrl_c`: an `io::Error` of kind `TimedOut`/`Interrupted` with
//! the `Cancelled` inside, as weft's io errors), so a shutdown listener in
//! a task's scope goes away with the task.
//!
//! Handlers are installed through `signal-hook-registry` (which chains to
//! handlers installed before weft's and keeps `errno`) and do only
//! async-signal-safe work: an atomic flag and one byte written to a
//! self-pipe. A dispatcher thread (`weft-signal`, one per process, started
//! with the first listener, independent of the runtimes and their io
//! driver) reads the pipe and wakes the listeners. `registry.rs` states the
//! protocol.
//!
//! ```no_run
//! # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
//! # rt.block_on(async {
//! use weft::signal::unix::{signal, SignalKind};
//!
//! let mut term = signal(SignalKind::terminate())?;
//! weft::select! {
//!     _ = term.recv() => println!("SIGTERM: draining"),
//!     _ = weft::signal::ctrl_c() => println!("Ctrl-C"),
//! }
//! # std::io::Result::Ok(())
//! # }).unwrap();
//! ```

mod registry;
pub mod unix;

#[cfg(weft_loom)]
#[doc(hidden)]
pub use registry::SignalSlot;

use std::io;

/// Completes on the next `SIGINT` (Ctrl-C) after its first poll.
///
/// The first call installs a `SIGINT` handler for the life of the process
/// (see [`unix::signal`]): from then on Ctrl-C no longer kills the process
/// by itself, so the program must act on it.
///
/// # Errors
/// An error of kind `TimedOut` (deadline) or `Interrupted` (cancel) with
/// the [`Cancelled`](crate::cancel::Cancelled) inside if the scope is
/// cancelled first; the OS error if the handler cannot be installed.
pub async fn ctrl_c() -> io::Result<()> {
    let mut interrupt = unix::signal(unix::SignalKind::interrupt())?;
    interrupt.recv().await.map_err(io::Error::from)
}
