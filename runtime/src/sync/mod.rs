//! Synchronization for tasks: every wait is an await point of the task's
//! scope.
//!
//! A wait future here, when polled, checks the task's scope first: in a
//! cancelled scope, or past its deadline, it returns the cancellation at
//! once, and keeps doing so (level-triggered). Otherwise it links its waiter
//! (stored in the future itself: no allocation per wait) into the
//! primitive's intrusive wait list (`wait_list.rs`) and waits; the task's cancellation
//! node wakes the task if the scope is cancelled meanwhile. A waiter that
//! leaves through cancellation unlinks itself and hands back anything it
//! was given (a permit, a message, a notification) to the next waiter, so
//! nothing is lost and nothing is delivered twice.

#[allow(dead_code)] // the primitives that use it land next
pub(crate) mod wait_list;

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
    rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    semaphore::{OwnedSemaphorePermit, Semaphore, SemaphorePermit},
};
