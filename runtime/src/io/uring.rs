//! The io_uring driver: one ring per worker.
//!
//! Only the owning worker submits to its ring and, unless it is stuck in a
//! poll, reaps it (on the work-stealing flavour a peer reaps the ring of a
//! worker stuck in a poll, `Remote::reap_for_peer`; elsewhere the ring is
//! set up with SINGLE_ISSUER + DEFER_TASKRUN where the kernel has them). Each
//! in-flight operation is an [`OpCell`](op::OpCell) behind an `Arc`, held
//! by the future that awaits it and by the driver's slab; `user_data` is
//! the slab key plus a generation, so a completion for a slot that was
//! freed and reused is recognised as stale and dropped.
//!
//! Other threads reach a ring only through its [`Remote`]: a lock-free
//! mailbox of submissions and cancellations (a `crossbeam` injector) and an
//! eventfd the ring keeps a read armed on. A future dropped on another
//! thread (or on this one while the driver is busy) posts a cancellation;
//! the owner submits `ASYNC_CANCEL` and the cell, with the buffer the kernel
//! may still write, lives until the completion arrives.
//!
//! Submissions are batched: pushing an operation only fills a submission
//! queue entry. The worker enters the kernel when it parks (submit and wait
//! in one call, with the next timer as timeout) or every `event_interval`
//! ticks (submit and reap, no wait), so one `io_uring_enter` covers every
//! operation the tasks of a scheduler round started.
//!
//! The parts:
//! - `probe.rs`: what the kernel offers, found out once at start-up, and
//!   building a ring with it;
//! - `driver.rs`: the ring's owner ([`Driver`]: push, enter, reap, park)
//!   and its shared side ([`Remote`]: the mailbox and the wakeups);
//! - `table.rs`: the operations a ring owns, by `user_data`
//!   ([`OpTable`](table::OpTable)), and what the driver needs of each
//!   ([`Completable`]);
//! - `op.rs`: single-shot operations, from submission to the result
//!   (`OpCell`'s lifecycle, the [`Op`] future, [`Cancellable`]);
//! - `accept.rs` and `multishot.rs`: multishot accept and multishot
//!   receive, each a queue one armed operation fills;
//! - `close.rs`: closing a socket only once no queued entry can still name
//!   its fd;
//! - `fixed.rs`: registered files, a slot per busy socket in its ring's
//!   table.

mod accept;
mod close;
mod driver;
mod fixed;
pub(crate) mod multishot;
mod op;
mod probe;
mod table;

pub(crate) use accept::{
    arm_multishot_accept, cancel_multishot, wait_multishot_ended, AcceptQueue,
};
pub(crate) use close::{close_fd, close_socket};
pub(crate) use driver::{membarrier_ready, Driver, Remote, Submission};
pub(crate) use fixed::FixedFile;
pub(crate) use op::{check, prelude, Cancellable, Op, OpData};
pub(crate) use probe::{probe, recv_ioprio};
pub(crate) use table::Completable;
// The fuzz targets drive these without a ring (`crate::__fuzz`).
// And the loom (and shuttle) builds' `__loom` module.
#[cfg(any(fuzzing, weft_loom, weft_shuttle))]
pub(crate) use op::OpCell;
#[cfg(fuzzing)]
pub(crate) use table::OpTable;
