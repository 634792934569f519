//! Synchronization for tasks: every wait is an await point of the task's
//! scope.
//!
//! A wait future here, when polled, checks the task's scope first: in a
//! cancelled scope, or past its deadline, it returns the cancellation at
//! once, and keeps doing so (level-triggered). Otherwise it links its waiter
//! (stored in the future itself: no allocation per wait) into the
//! primitive's intrusive [`wait_list`] and waits; the task's cancellation
//! node wakes the task if the scope is cancelled meanwhile. A waiter that
//! leaves through cancellation unlinks itself and hands back anything it
//! was given (a permit, a message, a notification) to the next waiter, so
//! nothing is lost and nothing is delivered twice.

pub(crate) mod wait_list;

pub mod error;
mod mutex;
mod notify;
mod rwlock;
mod semaphore;

pub use self::{
    mutex::{MappedMutexGuard, Mutex, MutexGuard, OwnedMutexGuard},
    notify::{Notified, Notify},
    rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    semaphore::{OwnedSemaphorePermit, Semaphore, SemaphorePermit},
};
