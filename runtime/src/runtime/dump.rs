//! The task dump: [`Handle::dump`](super::Handle::dump) lists the live
//! tasks of a runtime, with what each one waits for (Go's goroutine dump,
//! tokio-console's task list, built in).
//!
//! # How an await point says what it waits for
//! Every task header holds one byte, `awaiting` (an [`Awaiting`] code).
//! - The poller clears it (a relaxed store to the header line the state
//!   transition just wrote) before each poll.
//! - A weft await point that is about to return `Pending` — its waker
//!   registered, the scope checked — stores its kind there, in the task
//!   its waker wakes ([`awaiting`]: a vtable compare finds the task; no
//!   thread-local). Only that `Pending` path pays, a handful of
//!   instructions. The `Ready` path is untouched.
//! - So after a poll that returned `Pending`, the byte names the last weft
//!   await point that returned `Pending` in it. Under `select!` or `join!`
//!   several branches wait at once and the dump shows the one polled last;
//!   [`Awaiting::Unknown`] means the poll ended `Pending` in something that
//!   is not a weft await point (another runtime's future, a hand-written
//!   one: wrap it in [`cancel::cancellable`](crate::cancel::cancellable)
//!   and it shows as [`Awaiting::Foreign`]).
//!
//! # What a dump is consistent with
//! The registry (`task/list.rs`) is walked one shard at a time, each under
//! its lock, without stopping the workers: spawns and completions that
//! hash to the shard being walked wait for it (a few tens of ns per task
//! in it), the rest of the runtime runs on. So
//! - every task that was live for the whole dump is listed exactly once,
//!   and no task freed before the dump started is listed;
//! - a task spawned or finished during the dump may or may not be; one
//!   that just finished can still be listed, as [`TaskState::Complete`],
//!   for a moment after its `JoinHandle` returned (it leaves the registry
//!   right after storing its output);
//! - each entry's fields are read one after the other from the task's
//!   atomics while it runs on: an entry is what that task looked like at
//!   one moment near the dump, not a global snapshot of all tasks at one
//!   instant. A task woken as it is read may show `Scheduled` with what it
//!   was waiting for, or `Running` with nothing.
//!
//! Blocking tasks (`spawn_blocking`) are not in the registry and are not
//! listed. A nested scope inside a task (`timeout`, `cancel::scope`) is
//! not listed either: the deadline and cancellation shown are the task's
//! own scope's.

use std::{
    fmt,
    panic::Location,
    sync::{atomic::Ordering::Relaxed, Arc as StdArc},
    task::Waker,
    time::{Duration, Instant},
};

use crate::{cancel::Cancelled, context, coop, task::Id};

/// What a task waits for: the weft await point its last poll returned
/// `Pending` from (see the [module docs](self) for how this is recorded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Awaiting {
    /// Nothing weft knows: the task is running or was never polled, or its
    /// last poll returned `Pending` from a future that is not a weft await
    /// point.
    Unknown,
    /// A timer: `time::sleep`, `sleep_until`, an `interval` tick.
    Sleep,
    /// A socket operation.
    Io(IoOp),
    /// Another task's [`JoinHandle`](crate::JoinHandle), or a
    /// [`TaskGroup`](crate::cancel::TaskGroup) join.
    Join,
    /// A `weft::sync` primitive.
    Sync(SyncOp),
    /// A `weft::signal` listener.
    Signal,
    /// [`cancel::cancelled`](crate::cancel::cancelled): the scope's own
    /// cancellation.
    Cancelled,
    /// A future wrapped by [`cancel::cancellable`](crate::cancel::cancellable)
    /// that waits in something weft does not know.
    Foreign,
}

/// The socket operation an [`Awaiting::Io`] task waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoOp {
    /// A receive (`read`, `recv`, `recv_from`, the compat `poll_read`).
    Read,
    /// A send (`write`, `send`, `send_to`, the compat `poll_write`).
    Write,
    /// A listener's `accept`.
    Accept,
    /// A stream's `connect`.
    Connect,
    /// A listener's `close`, waiting for its accept to end.
    Close,
}

/// The `weft::sync` wait an [`Awaiting::Sync`] task is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyncOp {
    /// `mpsc::Receiver::recv` (or `UnboundedReceiver::recv`).
    MpscRecv,
    /// `mpsc::Sender::send` / `reserve`: waiting for capacity.
    MpscSend,
    /// `mpsc::Sender::closed`.
    MpscClosed,
    /// Awaiting a `oneshot::Receiver`.
    OneshotRecv,
    /// `oneshot::Sender::closed`.
    OneshotClosed,
    /// `Mutex::lock`.
    Mutex,
    /// `RwLock::read`.
    RwLockRead,
    /// `RwLock::write`.
    RwLockWrite,
    /// `Semaphore::acquire`.
    Semaphore,
    /// `Notify::notified`.
    Notify,
    /// `watch::Receiver::changed` / `wait_for`.
    Watch,
    /// `broadcast::Receiver::recv`.
    BroadcastRecv,
    /// `Barrier::wait`.
    Barrier,
    /// `OnceCell::get_or_init` while another task initialises it.
    OnceCell,
}

const IO: u8 = 0x10;
const SYNC: u8 = 0x20;

impl Awaiting {
    /// The byte stored in the task header. Folds to a constant at every
    /// call site (each passes a literal).
    #[inline(always)]
    pub(crate) const fn code(self) -> u8 {
        match self {
            Awaiting::Unknown => 0,
            Awaiting::Sleep => 1,
            Awaiting::Join => 2,
            Awaiting::Signal => 3,
            Awaiting::Cancelled => 4,
            Awaiting::Foreign => 5,
            Awaiting::Io(op) => IO | op as u8,
            Awaiting::Sync(op) => SYNC | op as u8,
        }
    }

    pub(crate) fn from_code(code: u8) -> Awaiting {
        const IO_OPS: [IoOp; 5] = [
            IoOp::Read,
            IoOp::Write,
            IoOp::Accept,
            IoOp::Connect,
            IoOp::Close,
        ];
        const SYNC_OPS: [SyncOp; 14] = [
            SyncOp::MpscRecv,
            SyncOp::MpscSend,
            SyncOp::MpscClosed,
            SyncOp::OneshotRecv,
            SyncOp::OneshotClosed,
            SyncOp::Mutex,
            SyncOp::RwLockRead,
            SyncOp::RwLockWrite,
            SyncOp::Semaphore,
            SyncOp::Notify,
            SyncOp::Watch,
            SyncOp::BroadcastRecv,
            SyncOp::Barrier,
            SyncOp::OnceCell,
        ];
        match code {
            1 => Awaiting::Sleep,
            2 => Awaiting::Join,
            3 => Awaiting::Signal,
            4 => Awaiting::Cancelled,
            5 => Awaiting::Foreign,
            c if c & 0xf0 == IO => IO_OPS
                .get((c & 0x0f) as usize)
                .map_or(Awaiting::Unknown, |op| Awaiting::Io(*op)),
            c if c & 0xf0 == SYNC => SYNC_OPS
                .get((c & 0x0f) as usize)
                .map_or(Awaiting::Unknown, |op| Awaiting::Sync(*op)),
            _ => Awaiting::Unknown,
        }
    }
}

impl fmt::Display for Awaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Awaiting::Unknown => f.write_str("-"),
            Awaiting::Sleep => f.write_str("sleep"),
            Awaiting::Io(op) => write!(f, "io {op}"),
            Awaiting::Join => f.write_str("join"),
            Awaiting::Sync(op) => fmt::Display::fmt(op, f),
            Awaiting::Signal => f.write_str("signal"),
            Awaiting::Cancelled => f.write_str("cancelled()"),
            Awaiting::Foreign => f.write_str("foreign future"),
        }
    }
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Accept => "accept",
            IoOp::Connect => "connect",
            IoOp::Close => "close",
        })
    }
}

impl fmt::Display for SyncOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncOp::MpscRecv => "mpsc recv",
            SyncOp::MpscSend => "mpsc send",
            SyncOp::MpscClosed => "mpsc closed",
            SyncOp::OneshotRecv => "oneshot recv",
            SyncOp::OneshotClosed => "oneshot closed",
            SyncOp::Mutex => "mutex lock",
            SyncOp::RwLockRead => "rwlock read",
            SyncOp::RwLockWrite => "rwlock write",
            SyncOp::Semaphore => "semaphore",
            SyncOp::Notify => "notify",
            SyncOp::Watch => "watch changed",
            SyncOp::BroadcastRecv => "broadcast recv",
            SyncOp::Barrier => "barrier",
            SyncOp::OnceCell => "once cell",
        })
    }
}

/// Records what the task `waker` wakes is waiting for. Await points call
/// it on their `Pending` path only, with the waker they registered (see
/// the module docs). No thread-local: the task is found through its
/// waker (a vtable compare), so the record is a few instructions. A waker
/// that is not a weft task's (a combinator's own, such as
/// `FuturesUnordered`'s) records nothing: the dump then shows `Unknown`.
#[inline]
pub(crate) fn awaiting(waker: &Waker, kind: Awaiting) {
    if let Some(header) = crate::task::waker::header_of(waker) {
        header.awaiting().store(kind.code(), Relaxed);
    }
}

/// [`awaiting`] a `weft::sync` primitive (one short line at each of their
/// `Pending` returns, as `crate::sync::record_wait`).
#[inline]
pub(crate) fn awaiting_sync(waker: &Waker, op: SyncOp) {
    awaiting(waker, Awaiting::Sync(op));
}

/// As [`awaiting`], unless an await point inside already said what the
/// task waits for during this poll (for wrappers such as `cancellable`,
/// whose inner future may be a weft await point).
#[inline]
pub(crate) fn awaiting_unless_known(waker: &Waker, kind: Awaiting) {
    if let Some(header) = crate::task::waker::header_of(waker) {
        if header.awaiting().load(Relaxed) == Awaiting::Unknown.code() {
            header.awaiting().store(kind.code(), Relaxed);
        }
    }
}

/// Where a task stands in its life, from its state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting to be woken.
    Idle,
    /// Woken (or just spawned) and queued for a worker.
    Scheduled,
    /// Being polled by a worker now.
    Running,
    /// Finished, leaving the registry.
    Complete,
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Idle => "idle",
            TaskState::Scheduled => "scheduled",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
        })
    }
}

/// One live task in a [`TaskDump`].
#[derive(Clone, Debug)]
pub struct TaskInfo {
    // The dump's columns, in display order (see `TaskDump`'s `Display`):
    // a new column is a field here, a `COLUMNS` entry and a cell in
    // `TaskInfo::cells`.
    id: Id,
    state: TaskState,
    aborted: bool,
    awaiting: Awaiting,
    deadline: Option<Instant>,
    remaining: Option<Duration>,
    cancelled: Option<Cancelled>,
    coop_budget: Option<u8>,
    name: Option<StdArc<str>>,
    spawned_at: &'static Location<'static>,
}

impl TaskInfo {
    /// The task's id.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The name given with `task::Builder::name`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Idle, scheduled, running or complete.
    pub fn state(&self) -> TaskState {
        self.state
    }

    /// True once `abort()` was called: the future is dropped at its next
    /// schedule.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// What the task waits for. Meaningful for an idle or scheduled task;
    /// [`Awaiting::Unknown`] while it runs.
    pub fn awaiting(&self) -> Awaiting {
        self.awaiting
    }

    /// The effective deadline of the task's scope.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left until [`deadline`](Self::deadline) when the dump was taken
    /// (zero once it passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.remaining
    }

    /// The cancellation of the task's scope, with its cause, origin and
    /// reason; `None` while it is not cancelled.
    pub fn cancelled(&self) -> Option<&Cancelled> {
        self.cancelled.as_ref()
    }

    /// Where the task was spawned (the caller of `weft::spawn`,
    /// `task::Builder::spawn`, `TaskGroup::spawn`, ...).
    pub fn spawn_location(&self) -> &'static Location<'static> {
        self.spawned_at
    }

    /// The cooperative budget left in the current poll: only for the task
    /// that took the dump (every other task's budget is refilled when its
    /// next poll starts, so it has none to report).
    pub fn coop_budget(&self) -> Option<u8> {
        self.coop_budget
    }

    fn cells(&self) -> [String; COLUMNS.len()] {
        let state = if self.aborted {
            format!("{} (aborted)", self.state)
        } else {
            self.state.to_string()
        };
        let deadline = match (self.deadline, self.remaining) {
            (Some(_), Some(left)) if !left.is_zero() => format!("in {left:.3?}"),
            (Some(_), _) => "passed".to_owned(),
            (None, _) => "-".to_owned(),
        };
        let cancelled = self
            .cancelled
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        let name = self
            .name
            .as_deref()
            .map_or_else(|| "-".to_owned(), |n| format!("{n:?}"));
        [
            self.id.to_string(),
            state,
            self.awaiting.to_string(),
            deadline,
            cancelled,
            name,
            self.spawned_at.to_string(),
        ]
    }
}

/// The column titles, in display order.
const COLUMNS: [&str; 7] = [
    "ID",
    "STATE",
    "AWAITING",
    "DEADLINE",
    "CANCELLED",
    "NAME",
    "SPAWNED AT",
];

/// The live tasks of a runtime, from [`Handle::dump`](super::Handle::dump).
///
/// `Display` prints a table, one task per line, sorted by id:
///
/// ```text
/// weft task dump: 2 live tasks
/// ID  STATE  AWAITING   DEADLINE   CANCELLED  NAME
/// 3   idle   mpsc recv  -          -          "consumer"
/// 7   idle   sleep      in 1.204s  -          "tick"
/// ```
///
/// See the [module docs](self) for what the dump is consistent with.
#[derive(Clone, Debug)]
pub struct TaskDump {
    tasks: Vec<TaskInfo>,
}

impl TaskDump {
    /// The tasks, sorted by id.
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    /// The task with this id, if it was listed.
    pub fn task(&self, id: Id) -> Option<&TaskInfo> {
        self.tasks
            .binary_search_by_key(&id, |t| t.id)
            .ok()
            .map(|i| &self.tasks[i])
    }
}

impl fmt::Display for TaskDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "weft task dump: {} live tasks", self.tasks.len())?;
        let rows: Vec<_> = self.tasks.iter().map(TaskInfo::cells).collect();
        let mut widths = COLUMNS.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            let last = cells.len() - 1;
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                if i == last {
                    writeln!(f, "{cell}")?;
                } else {
                    write!(f, "{cell:<width$}  ")?;
                }
            }
            Ok(())
        };
        line(f, &COLUMNS)?;
        for row in &rows {
            line(f, &row.each_ref().map(String::as_str))?;
        }
        Ok(())
    }
}

/// What `Builder::dump_on_signal_with` does with each dump.
pub(crate) type DumpHook = StdArc<dyn Fn(TaskDump) + Send + Sync>;

/// Starts the task behind `Builder::dump_on_signal`: a detached root that
/// hands a dump to `hook` each time `signal` arrives, until the runtime
/// shuts down (which cancels it, and drops its listener).
pub(crate) fn dump_on_signal(
    runtime: &super::Runtime,
    signal: crate::signal::unix::SignalKind,
    hook: DumpHook,
) -> std::io::Result<()> {
    // Listening from now on: a signal sent as soon as `build` returns is
    // seen by the first poll.
    let mut listener = crate::signal::unix::signal(signal)?;
    crate::task::Builder::new()
        .name("weft-dump-on-signal")
        .detached()
        .spawn_on(
            async move {
                while listener.recv().await.is_ok() {
                    // The current runtime: a `Handle` captured here would
                    // keep the runtime alive from its own registry.
                    hook(super::Handle::current().dump());
                }
            },
            runtime.handle(),
        );
    Ok(())
}

/// Walks `shared`'s registry (see the module docs).
pub(crate) fn take(shared: &crate::scheduler::Shared) -> TaskDump {
    // Under the shard locks only what is cheap and needs the task alive:
    // its atomics, and a count of its cancellation node. The node's
    // cancellation (which may take the node's lock) is read afterwards.
    let mut raw = Vec::with_capacity(shared.owned.len());
    let current = context::current_task().map(|t| t.id());
    // The shared registry, then each thread-per-core worker's own
    // (`spawn_local` tasks; empty on other flavours).
    let mut visit = |task: crate::task::RawTask| {
        let header = task.header();
        let snapshot = header.state.load();
        let state = if snapshot.is_complete() {
            TaskState::Complete
        } else if snapshot.is_running() {
            TaskState::Running
        } else if snapshot.is_notified() {
            TaskState::Scheduled
        } else {
            TaskState::Idle
        };
        let awaiting = match state {
            TaskState::Idle | TaskState::Scheduled => {
                Awaiting::from_code(header.awaiting().load(Relaxed))
            }
            TaskState::Running | TaskState::Complete => Awaiting::Unknown,
        };
        raw.push((
            header.id,
            state,
            snapshot.is_cancelled(),
            awaiting,
            header.node().map(|node| (*node).clone()),
            header.spawn_location(),
        ));
    };
    shared.owned.for_each(&mut visit);
    for remote in shared.remotes.iter() {
        remote.local_owned.for_each(&mut visit);
    }
    let now = Instant::now();
    let budget = coop::remaining();
    let mut tasks: Vec<TaskInfo> = raw
        .into_iter()
        .map(|(id, state, aborted, awaiting, node, spawned_at)| {
            let deadline = node.as_ref().and_then(|n| n.deadline());
            TaskInfo {
                id,
                state,
                aborted,
                awaiting,
                deadline,
                remaining: deadline.map(|d| d.saturating_duration_since(now)),
                cancelled: node.as_ref().and_then(|n| n.cancelled()),
                coop_budget: budget.filter(|_| Some(id) == current),
                name: node.as_ref().and_then(|n| n.name().cloned()),
                spawned_at,
            }
        })
        .collect();
    tasks.sort_unstable_by_key(|t| t.id);
    TaskDump { tasks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_its_byte() {
        let mut kinds = vec![
            Awaiting::Unknown,
            Awaiting::Sleep,
            Awaiting::Join,
            Awaiting::Signal,
            Awaiting::Cancelled,
            Awaiting::Foreign,
        ];
        kinds.extend(
            [
                IoOp::Read,
                IoOp::Write,
                IoOp::Accept,
                IoOp::Connect,
                IoOp::Close,
            ]
            .map(Awaiting::Io),
        );
        kinds.extend(
            [
                SyncOp::MpscRecv,
                SyncOp::MpscSend,
                SyncOp::MpscClosed,
                SyncOp::OneshotRecv,
                SyncOp::OneshotClosed,
                SyncOp::Mutex,
                SyncOp::RwLockRead,
                SyncOp::RwLockWrite,
                SyncOp::Semaphore,
                SyncOp::Notify,
                SyncOp::Watch,
                SyncOp::BroadcastRecv,
                SyncOp::Barrier,
                SyncOp::OnceCell,
            ]
            .map(Awaiting::Sync),
        );
        let mut codes = std::collections::HashSet::new();
        for kind in kinds {
            assert!(codes.insert(kind.code()), "{kind:?} shares its code");
            assert_eq!(Awaiting::from_code(kind.code()), kind);
        }
        // Bytes no kind uses read as unknown, never as another kind.
        for code in [6, 0x15, 0x2e, 0x30, 0xff] {
            assert_eq!(Awaiting::from_code(code), Awaiting::Unknown);
        }
    }
}
