//! The errors of the lock-type primitives: [`Semaphore`](super::Semaphore),
//! [`Mutex`](super::Mutex), [`RwLock`](super::RwLock),
//! [`Notify`](super::Notify), [`Barrier`](super::Barrier),
//! [`OnceCell`](super::OnceCell).
//!
//! A wait that can only end by succeeding or by the scope's cancellation
//! (`Mutex::lock`, `RwLock::read`/`write`, `Notify::notified`,
//! `Barrier::wait`, `OnceCell::get_or_init`) returns the
//! [`Cancelled`] itself, which carries its cause. A wait that can also fail
//! because the primitive was closed (`Semaphore::acquire*`) returns
//! [`AcquireError`], which says which.

use std::{error::Error, fmt};

use crate::cancel::Cancelled;

/// Why a [`Semaphore`](super::Semaphore) acquire failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcquireError {
    /// The semaphore was closed (before the acquire or while it waited).
    Closed,
    /// The waiting task's scope was cancelled or its deadline passed; the
    /// cause is inside. Permits it had been given were handed back.
    Cancelled(Cancelled),
}

impl AcquireError {
    /// True if the semaphore was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, AcquireError::Closed)
    }

    /// The cancellation, if that is what ended the wait.
    pub fn cancelled(&self) -> Option<&Cancelled> {
        match self {
            AcquireError::Cancelled(c) => Some(c),
            AcquireError::Closed => None,
        }
    }
}

impl From<Cancelled> for AcquireError {
    fn from(c: Cancelled) -> Self {
        AcquireError::Cancelled(c)
    }
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::Closed => f.write_str("semaphore closed"),
            AcquireError::Cancelled(c) => write!(f, "acquire interrupted: {c}"),
        }
    }
}

impl Error for AcquireError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            AcquireError::Cancelled(c) => Some(c),
            AcquireError::Closed => None,
        }
    }
}

/// Why a `Semaphore::try_acquire*` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryAcquireError {
    /// The semaphore was closed.
    Closed,
    /// Not enough permits were available (or others wait before this one).
    NoPermits,
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryAcquireError::Closed => "semaphore closed",
            TryAcquireError::NoPermits => "no permits available",
        })
    }
}

impl Error for TryAcquireError {}

/// `Mutex::try_lock` or `RwLock::try_read`/`try_write` found the lock taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryLockError(pub(crate) ());

impl fmt::Display for TryLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("lock held elsewhere")
    }
}

impl Error for TryLockError {}

/// Why `OnceCell::set` refused the value, which it gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetError<T> {
    /// The cell already holds a value.
    AlreadyInitialized(T),
    /// Another task is running an initializer right now.
    Initializing(T),
}

impl<T> SetError<T> {
    /// The value that was not stored.
    pub fn into_inner(self) -> T {
        match self {
            SetError::AlreadyInitialized(v) | SetError::Initializing(v) => v,
        }
    }
}

impl<T> fmt::Display for SetError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetError::AlreadyInitialized(_) => "cell already initialized",
            SetError::Initializing(_) => "cell being initialized",
        })
    }
}

impl<T: fmt::Debug> Error for SetError<T> {}
