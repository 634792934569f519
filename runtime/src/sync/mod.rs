//! Synchronization for tasks: every wait is an await point of the task's
//! scope.
//!
//! A wait future here, when polled, checks the task's scope first: in a
//! cancelled scope, or past its deadline, it returns the cancellation at
//! once, and keeps doing so (level-triggered). Otherwise it links its waiter
//! (stored in the future itself: no allocation per wait) into the
//! primitive's intrusive wait list (`wait_list.rs`; `Notify`'s first waiter
//! waits in a lock-free slot instead) and waits; the task's cancellation
//! node wakes the task if the scope is cancelled meanwhile. A waiter that
//! leaves through cancellation unlinks itself and hands back anything it
//! was given (a permit, a message, a notification) to the next waiter, so
//! nothing is lost and nothing is delivered twice.

pub(crate) mod wait_list;

/// The task dump's record of a wait (`runtime/dump.rs`): one short line at
/// each `Pending` return of the primitives here.
pub(crate) use crate::runtime::dump::{awaiting_sync as record_wait, SyncOp};

mod barrier;
pub mod broadcast;
mod channel_wait;
pub mod error;
pub mod mpsc;
mod mutex;
mod notify;
mod once_cell;
pub mod oneshot;
mod rwlock;
mod semaphore;
pub mod watch;

pub use self::{
    barrier::{Barrier, BarrierWaitResult},
    mutex::{MappedMutexGuard, Mutex, MutexGuard, OwnedMutexGuard},
    notify::{Notified, Notify},
    once_cell::OnceCell,
    rwlock::{
        OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
    semaphore::{OwnedSemaphorePermit, Semaphore, SemaphorePermit},
};
