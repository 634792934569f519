//! Internals exposed to the fuzz targets in `fuzz/` (only under
//! `--cfg fuzzing`, which `.ci/fuzz` sets): the io_uring driver's op table
//! and op cells, driven by a mock completion source instead of a ring.
//! Everything here is the real code the driver runs (`io/uring/`:
//! `OpTable`, `OpCell::prepare`, `poll_take`, `abandon`); only the kernel is
//! replaced by the fuzz target, which decides when each operation completes.

use std::{
    sync::Arc,
    task::{Context, Poll, Waker},
};

use io_uring::opcode;

use crate::io::uring::{self, Completable, OpCell, OpData};

/// What the fuzz target learns about a buffer lent to an operation.
pub trait BufEvents: Send + Sync {
    /// The buffer `id` was freed.
    fn dropped(&self, id: usize);
    /// The operation of buffer `id` completed with `res` after its future
    /// was dropped (the driver's `OpData::orphaned`).
    fn orphaned(&self, id: usize, res: i32);
}

/// A buffer lent to one operation; reports its drop and orphaning.
pub struct Buf {
    id: usize,
    events: Arc<dyn BufEvents>,
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buf")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Buf {
    /// Buffer `id`, reporting to `events`.
    pub fn new(id: usize, events: Arc<dyn BufEvents>) -> Buf {
        Buf { id, events }
    }

    /// Its id.
    pub fn id(&self) -> usize {
        self.id
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.events.dropped(self.id);
    }
}

impl OpData for Buf {
    fn orphaned(&mut self, res: i32) {
        self.events.orphaned(self.id, res);
    }
}

/// The driver's op table (`uring::OpTable`), without a ring.
pub struct OpTable(uring::OpTable);

impl std::fmt::Debug for OpTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpTable")
            .field("len", &self.0.len())
            .finish()
    }
}

/// A submitted operation as its future holds it.
pub struct Op {
    cell: Option<Arc<OpCell<Buf>>>,
    target: Arc<dyn Completable>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Op")
            .field("user_data", &self.user_data())
            .finish_non_exhaustive()
    }
}

impl OpTable {
    /// An empty table whose first operation gets generation `generation + 1`
    /// (a value near `0x7fff_ffff` reaches the wrap at once).
    pub fn new(generation: u32) -> OpTable {
        OpTable(uring::OpTable::with_capacity(16, generation))
    }

    /// Fills an op cell with `buf` and registers it, as `Op::submit` and
    /// `Driver::push` do; `None` if the table refused it.
    pub fn submit(&mut self, buf: Buf) -> Option<(Op, u64)> {
        let (cell, sub) =
            OpCell::prepare(None, None, buf, None, None, |_| opcode::Nop::new().build());
        let target: Arc<dyn Completable> = cell.clone();
        drop(sub);
        let user_data = self.0.register(target.clone())?;
        Some((
            Op {
                cell: Some(cell),
                target,
            },
            user_data,
        ))
    }

    /// A completion from the (mock) kernel, as `Driver::reap` delivers it;
    /// false if stale.
    pub fn deliver(&mut self, user_data: u64, res: i32) -> bool {
        self.0.deliver(user_data, res, 0).is_some()
    }

    /// Entries held (cancelled ones included).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Op {
    /// The `user_data` the table gave it.
    pub fn user_data(&self) -> u64 {
        self.target.user_data()
    }

    /// Polls it as its future does: the result and the buffer once
    /// complete, `None` while pending.
    ///
    /// # Panics
    /// If the result was already taken.
    pub fn poll(&mut self) -> Option<(i32, Buf)> {
        let cell = self
            .cell
            .as_ref()
            .expect("polled after its result was taken");
        match cell.poll_take(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => {
                self.cell = None;
                Some(out)
            }
            Poll::Pending => None,
        }
    }

    /// Drops it as its future is dropped: `Some(user_data)` if the driver
    /// would submit an `ASYNC_CANCEL` naming it (still pending and in the
    /// table), `None` if there is nothing to cancel.
    pub fn drop_future(mut self, table: &OpTable) -> Option<u64> {
        let cell = self.cell.take()?;
        if cell.abandon() {
            table.0.to_cancel(&self.target)
        } else {
            None
        }
    }
}
