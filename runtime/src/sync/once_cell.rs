//! A cell written once, possibly by an async initializer: tokio's
//! `OnceCell`, on a [`Semaphore`] of one permit.
//!
//! # Protocol
//! - `value_set` (an atomic flag) says the value is written; it is set with
//!   Release after the write, and read with Acquire before any read, so a
//!   reader that sees it sees the value. Once set it is never cleared while
//!   the cell is shared (`take` needs `&mut`).
//! - The right to write is the semaphore's one permit: an initializer holds
//!   it while its future runs. When the value is written the semaphore is
//!   closed and the permit forgotten, so every waiter wakes with `Closed`,
//!   which means "initialized".
//! - **The cancel hand-back rule.** An initializer that does not finish —
//!   its future dropped (its task aborted or cancelled, a `timeout`), or its
//!   `try` initializer failing — drops its permit, which goes to the next
//!   waiter through the semaphore (FIFO): that caller runs its own
//!   initializer. The cell stays uninitialized meanwhile.
//! - Waiting for the permit is an await point of the task's scope (the
//!   semaphore's wait). Reading an initialized cell is not a wait and does
//!   not check the scope.

use std::{cell::UnsafeCell, fmt, future::Future, mem::MaybeUninit};

use super::{
    error::{AcquireError, SetError, TryAcquireError},
    semaphore::Semaphore,
};
use crate::{
    cancel::Cancelled,
    facade::atomic::{AtomicBool, Ordering::*},
};

/// A thread-safe cell written at most once: tokio's `OnceCell` API, with
/// the wait for a concurrent initializer an await point of the task's scope
/// (see the [module docs](super)).
pub struct OnceCell<T> {
    value_set: AtomicBool,
    value: UnsafeCell<MaybeUninit<T>>,
    semaphore: Semaphore,
}

// SAFETY: the cell owns its `T`.
unsafe impl<T: Send> Send for OnceCell<T> {}
// SAFETY: `&OnceCell` hands out `&T` to many threads (`T: Sync`) and lets
// any thread write the value (`T: Send`).
unsafe impl<T: Send + Sync> Sync for OnceCell<T> {}

/// Returns the permit to the semaphore unless disarmed: an initializer
/// that did not finish lets the next caller try.
struct PermitGuard<'a>(&'a Semaphore);

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        self.0.release(1);
    }
}

impl<T> OnceCell<T> {
    /// An empty cell.
    pub fn new() -> OnceCell<T> {
        OnceCell {
            value_set: AtomicBool::new(false),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            semaphore: Semaphore::new(1),
        }
    }

    /// As [`OnceCell::new`], in a `const` context (e.g. a `static`).
    #[cfg(not(weft_loom))]
    pub const fn const_new() -> OnceCell<T> {
        OnceCell {
            value_set: AtomicBool::new(false),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            semaphore: Semaphore::const_new(1),
        }
    }

    /// A cell holding `value` if it is `Some`.
    pub fn new_with(value: Option<T>) -> OnceCell<T> {
        match value {
            Some(v) => OnceCell::from(v),
            None => OnceCell::new(),
        }
    }

    /// True once the value is written.
    pub fn initialized(&self) -> bool {
        // Acquire: a caller that then reads the value sees it written.
        self.value_set.load(Acquire)
    }

    /// The value, if written.
    pub fn get(&self) -> Option<&T> {
        if self.initialized() {
            // SAFETY: written before `value_set` (Release/Acquire), and
            // never written again while shared.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// The value, through `&mut`, if written.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        if self.value_set.load(Relaxed) {
            // SAFETY: written, and `&mut self` excludes everyone else.
            Some(unsafe { self.value.get_mut().assume_init_mut() })
        } else {
            None
        }
    }

    /// Writes `value` if the cell is empty and nobody is initializing it;
    /// otherwise gives it back in the error.
    pub fn set(&self, value: T) -> Result<(), SetError<T>> {
        if self.initialized() {
            return Err(SetError::AlreadyInitialized(value));
        }
        match self.semaphore.try_acquire_raw(1) {
            Ok(()) => {
                self.write(value);
                Ok(())
            }
            Err(TryAcquireError::NoPermits) => Err(SetError::Initializing(value)),
            Err(_) => Err(SetError::AlreadyInitialized(value)),
        }
    }

    /// The value, running `f` to make it if the cell is empty. If another
    /// task is initializing it, waits for that task; if that one does not
    /// finish (its future dropped), the next waiter runs its own `f`.
    ///
    /// The wait is an await point: in a cancelled scope or past its
    /// deadline it returns the [`Cancelled`].
    pub async fn get_or_init<F, Fut>(&self, f: F) -> Result<&T, Cancelled>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.get_or_try_init(|| async { Ok::<T, Cancelled>(f().await) })
            .await
    }

    /// As [`OnceCell::get_or_init`] with a fallible initializer: an `Err`
    /// leaves the cell empty (the next caller tries), and is returned. A
    /// cancelled wait returns `E::from(cancelled)`.
    pub async fn get_or_try_init<E, F, Fut>(&self, f: F) -> Result<&T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Cancelled>,
    {
        if let Some(v) = self.get() {
            return Ok(v);
        }
        match self
            .semaphore
            .acquire_raw(1)
            .waiting_as(crate::runtime::dump::SyncOp::OnceCell)
            .await
        {
            Ok(()) => {
                let guard = PermitGuard(&self.semaphore);
                if let Some(v) = self.get() {
                    return Ok(v); // cannot happen while we hold the permit
                }
                let value = f().await?;
                // Keep the permit: `write` closes the semaphore.
                std::mem::forget(guard);
                Ok(self.write(value))
            }
            Err(AcquireError::Cancelled(c)) => Err(E::from(c)),
            // Closed: the value was written.
            Err(_) => Ok(self.get().expect("closed only once written")),
        }
    }

    /// Writes the value; the caller holds (and gives up) the permit.
    fn write(&self, value: T) -> &T {
        // SAFETY: the permit excludes every other writer, and no reader
        // reads before `value_set`.
        let v = unsafe { (*self.value.get()).write(value) };
        // Release: publishes the write to `get`'s Acquire.
        self.value_set.store(true, Release);
        self.semaphore.close();
        v
    }

    /// The value, consuming the cell.
    pub fn into_inner(mut self) -> Option<T> {
        self.take()
    }

    /// Takes the value out, leaving the cell empty.
    pub fn take(&mut self) -> Option<T> {
        // `&mut self`: no one else reads the flag.
        if !self.value_set.swap(false, Relaxed) {
            return None;
        }
        // SAFETY: it was written and is now marked unwritten, so it is read
        // out once.
        let v = unsafe { self.value.get_mut().assume_init_read() };
        self.semaphore = Semaphore::new(1);
        Some(v)
    }
}

impl<T> Drop for OnceCell<T> {
    fn drop(&mut self) {
        if self.value_set.load(Relaxed) {
            // SAFETY: written, and dropped once here.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T> Default for OnceCell<T> {
    fn default() -> Self {
        OnceCell::new()
    }
}

impl<T> From<T> for OnceCell<T> {
    fn from(value: T) -> Self {
        let cell = OnceCell::new();
        let set = cell.set(value);
        debug_assert!(set.is_ok());
        cell
    }
}

impl<T: fmt::Debug> fmt::Debug for OnceCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnceCell")
            .field("value", &self.get())
            .finish()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::{
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use super::*;

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn set_get_take_and_errors() {
        static CELL: OnceCell<String> = OnceCell::const_new();
        assert!(CELL.get().is_none());
        CELL.set("a".into()).unwrap();
        assert_eq!(
            CELL.set("b".into()),
            Err(SetError::AlreadyInitialized("b".to_string()))
        );
        assert_eq!(CELL.get().map(String::as_str), Some("a"));
        let mut c = OnceCell::from(vec![1]);
        c.get_mut().unwrap().push(2);
        assert_eq!(c.take(), Some(vec![1, 2]));
        assert!(!c.initialized());
        c.set(vec![3]).unwrap();
        assert_eq!(c.into_inner(), Some(vec![3]));
    }

    #[test]
    fn a_dropped_initializer_lets_the_next_caller_initialize() {
        let cell = OnceCell::<u32>::new();
        {
            let mut stuck = pin!(cell.get_or_init(std::future::pending));
            assert!(poll_once(stuck.as_mut()).is_pending());
            assert_eq!(
                cell.set(1),
                Err(SetError::Initializing(1)),
                "an initializer runs"
            );
        }
        assert!(cell.get().is_none());
        let got = poll_once(pin!(cell.get_or_init(|| async { 7 })));
        assert_eq!(got, Poll::Ready(Ok(&7)));
    }

    #[test]
    fn a_failed_try_init_leaves_the_cell_empty() {
        #[derive(Debug, PartialEq)]
        enum E {
            Bad,
            Cancelled,
        }
        impl From<Cancelled> for E {
            fn from(_: Cancelled) -> Self {
                E::Cancelled
            }
        }
        let cell = OnceCell::<u32>::new();
        let r = poll_once(pin!(cell.get_or_try_init(|| async { Err(E::Bad) })));
        assert_eq!(r, Poll::Ready(Err(E::Bad)));
        assert_ne!(r, Poll::Ready(Err(E::Cancelled)));
        let r = poll_once(pin!(cell.get_or_try_init(|| async { Ok::<_, E>(5) })));
        assert_eq!(r, Poll::Ready(Ok(&5)));
    }
}
