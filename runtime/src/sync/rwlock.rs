//! An async reader-writer lock on a [`Semaphore`], as tokio's is.
//!
//! # Protocol
//! - The semaphore starts with `max_readers` permits (`MAX_READS`,
//!   `u32::MAX >> 3`, by default). A reader holds one; a writer holds them all.
//! - Fairness comes from the semaphore's FIFO: a writer that cannot get all
//!   permits at once takes those that are free and queues; from then on the
//!   semaphore's word holds no permits, so readers arriving after it queue
//!   behind it, and the permits the current readers return go to the writer.
//!   Writers cannot starve, and readers queued behind a writer run after it.
//! - The cancel hand-back rule is the semaphore's: a writer that leaves its
//!   wait (cancelled, past its deadline, or dropped) returns the permits it
//!   had collected, which lets the readers queued behind it in.
//! - The semaphore is never closed: a wait fails only by cancellation, with
//!   the [`Cancelled`] (no poisoning, as in tokio).

use std::{
    cell::UnsafeCell,
    fmt,
    marker::PhantomData,
    mem::ManuallyDrop,
    ops::{Deref, DerefMut},
    sync::Arc as StdArc,
};

use super::{error::TryLockError, mutex::cancelled_only, semaphore::Semaphore};
use crate::cancel::Cancelled;

/// The readers a [`RwLock`] admits at once by default (tokio's bound).
const MAX_READS: u32 = u32::MAX >> 3;

/// An async reader-writer lock: tokio's `RwLock` API, with every wait an
/// await point of the task's scope (see the [module docs](super)).
///
/// Fair (phase-fair in FIFO order): a queued writer blocks readers that
/// arrive after it.
pub struct RwLock<T: ?Sized> {
    max_readers: u32,
    s: Semaphore,
    c: UnsafeCell<T>,
}

// SAFETY: moving the lock moves the `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: readers share `&T` across threads (`T: Sync`), a writer gets
// `&mut T` on any thread (`T: Send`), as for `std::sync::RwLock`.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> RwLock<T> {
        RwLock::with_max_readers(value, MAX_READS)
    }

    /// A lock that admits at most `max_readers` readers at once.
    ///
    /// # Panics
    /// If `max_readers` is 0 or exceeds `u32::MAX >> 3`.
    pub fn with_max_readers(value: T, max_readers: u32) -> RwLock<T> {
        assert!(
            (1..=MAX_READS).contains(&max_readers),
            "max_readers must be in 1..={MAX_READS}, got {max_readers}"
        );
        RwLock {
            max_readers,
            s: Semaphore::new(max_readers as usize),
            c: UnsafeCell::new(value),
        }
    }

    /// As [`RwLock::new`], in a `const` context.
    #[cfg(not(weft_loom))]
    pub const fn const_new(value: T) -> RwLock<T> {
        RwLock {
            max_readers: MAX_READS,
            s: Semaphore::const_new(MAX_READS as usize),
            c: UnsafeCell::new(value),
        }
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.c.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Waits for shared access.
    ///
    /// An await point: in a cancelled scope or past its deadline it returns
    /// the [`Cancelled`] at once, every time it is polled.
    pub async fn read(&self) -> Result<RwLockReadGuard<'_, T>, Cancelled> {
        self.s
            .acquire_raw(1)
            .waiting_as(crate::runtime::dump::SyncOp::RwLockRead)
            .await
            .map_err(cancelled_only)?;
        Ok(RwLockReadGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// Waits for exclusive access. See [`RwLock::read`]; a writer cut short
    /// hands back what it had collected.
    pub async fn write(&self) -> Result<RwLockWriteGuard<'_, T>, Cancelled> {
        self.s
            .acquire_raw(self.max_readers as usize)
            .waiting_as(crate::runtime::dump::SyncOp::RwLockWrite)
            .await
            .map_err(cancelled_only)?;
        Ok(RwLockWriteGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// Shared access if available now (no writer holds or waits for it).
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, TryLockError> {
        match self.s.try_acquire_raw(1) {
            Ok(()) => Ok(RwLockReadGuard {
                lock: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(TryLockError(())),
        }
    }

    /// Exclusive access if available now.
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>, TryLockError> {
        match self.s.try_acquire_raw(self.max_readers as usize) {
            Ok(()) => Ok(RwLockWriteGuard {
                lock: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(TryLockError(())),
        }
    }

    /// As [`RwLock::read`], with a guard that owns an `Arc` of the lock
    /// (`'static`, for moving into a task).
    pub async fn read_owned(self: StdArc<Self>) -> Result<OwnedRwLockReadGuard<T>, Cancelled> {
        self.s
            .acquire_raw(1)
            .waiting_as(crate::runtime::dump::SyncOp::RwLockRead)
            .await
            .map_err(cancelled_only)?;
        Ok(OwnedRwLockReadGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// As [`RwLock::write`], owned.
    pub async fn write_owned(self: StdArc<Self>) -> Result<OwnedRwLockWriteGuard<T>, Cancelled> {
        self.s
            .acquire_raw(self.max_readers as usize)
            .waiting_as(crate::runtime::dump::SyncOp::RwLockWrite)
            .await
            .map_err(cancelled_only)?;
        Ok(OwnedRwLockWriteGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// As [`RwLock::try_read`], owned.
    pub fn try_read_owned(self: StdArc<Self>) -> Result<OwnedRwLockReadGuard<T>, TryLockError> {
        match self.s.try_acquire_raw(1) {
            Ok(()) => Ok(OwnedRwLockReadGuard {
                lock: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(TryLockError(())),
        }
    }

    /// As [`RwLock::try_write`], owned.
    pub fn try_write_owned(self: StdArc<Self>) -> Result<OwnedRwLockWriteGuard<T>, TryLockError> {
        match self.s.try_acquire_raw(self.max_readers as usize) {
            Ok(()) => Ok(OwnedRwLockWriteGuard {
                lock: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(TryLockError(())),
        }
    }

    /// Blocks the thread for shared access, outside any async context.
    ///
    /// # Panics
    /// Inside a weft runtime.
    pub fn blocking_read(&self) -> RwLockReadGuard<'_, T> {
        match super::mutex::block_on("RwLock::blocking_read", self.read()) {
            Ok(g) => g,
            Err(c) => unreachable!("no scope outside a runtime: {c}"),
        }
    }

    /// Blocks the thread for exclusive access, outside any async context.
    ///
    /// # Panics
    /// Inside a weft runtime.
    pub fn blocking_write(&self) -> RwLockWriteGuard<'_, T> {
        match super::mutex::block_on("RwLock::blocking_write", self.write()) {
            Ok(g) => g,
            Err(c) => unreachable!("no scope outside a runtime: {c}"),
        }
    }

    /// The value, through `&mut` (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.c.get_mut()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> Self {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(guard) => d.field("data", &&*guard),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

/// Shared access to a [`RwLock`], released when dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _marker: PhantomData<&'a T>,
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.s.release(1);
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a reader's permit excludes writers.
        unsafe { &*self.lock.c.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Exclusive access to a [`RwLock`], released when dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _marker: PhantomData<&'a mut T>,
}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    /// Turns exclusive access into shared access without letting a writer
    /// in between (readers queued behind may enter at once).
    pub fn downgrade(this: Self) -> RwLockReadGuard<'a, T> {
        let this = ManuallyDrop::new(this);
        let lock = this.lock;
        lock.s.release(lock.max_readers as usize - 1);
        RwLockReadGuard {
            lock,
            _marker: PhantomData,
        }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.s.release(self.lock.max_readers as usize);
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds every permit.
        unsafe { &*self.lock.c.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the writer holds every permit.
        unsafe { &mut *self.lock.c.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Shared access to an `Arc<RwLock<T>>`, released when dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct OwnedRwLockReadGuard<T: ?Sized> {
    lock: StdArc<RwLock<T>>,
    /// Opts out of the auto traits; the impls below state them as for a
    /// `&T` shared between threads.
    _marker: PhantomData<*const T>,
}

// SAFETY: the guard gives `&T` on the thread it moves to, and the lock's
// `Arc` is shared with threads that may write (`T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Send for OwnedRwLockReadGuard<T> {}
// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Send + Sync> Sync for OwnedRwLockReadGuard<T> {}

impl<T: ?Sized> Drop for OwnedRwLockReadGuard<T> {
    fn drop(&mut self) {
        self.lock.s.release(1);
    }
}

impl<T: ?Sized> Deref for OwnedRwLockReadGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a reader's permit excludes writers.
        unsafe { &*self.lock.c.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedRwLockReadGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Exclusive access to an `Arc<RwLock<T>>`, released when dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct OwnedRwLockWriteGuard<T: ?Sized> {
    lock: StdArc<RwLock<T>>,
    /// Opts out of the auto traits; the impls below state them as for a
    /// `&mut T`.
    _marker: PhantomData<*mut T>,
}

// SAFETY: the guard gives `&mut T` on the thread it moves to; the `Arc` is
// shared with readers on other threads (`T: Sync`).
unsafe impl<T: ?Sized + Send + Sync> Send for OwnedRwLockWriteGuard<T> {}
// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Send + Sync> Sync for OwnedRwLockWriteGuard<T> {}

impl<T: ?Sized> OwnedRwLockWriteGuard<T> {
    /// Turns exclusive access into shared access without letting a writer
    /// in between.
    pub fn downgrade(this: Self) -> OwnedRwLockReadGuard<T> {
        let this = ManuallyDrop::new(this);
        // SAFETY: `this` is never dropped, so its `Arc` is moved out once.
        let lock = unsafe { std::ptr::read(&this.lock) };
        lock.s.release(lock.max_readers as usize - 1);
        OwnedRwLockReadGuard {
            lock,
            _marker: PhantomData,
        }
    }
}

impl<T: ?Sized> Drop for OwnedRwLockWriteGuard<T> {
    fn drop(&mut self) {
        self.lock.s.release(self.lock.max_readers as usize);
    }
}

impl<T: ?Sized> Deref for OwnedRwLockWriteGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds every permit.
        unsafe { &*self.lock.c.get() }
    }
}

impl<T: ?Sized> DerefMut for OwnedRwLockWriteGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the writer holds every permit.
        unsafe { &mut *self.lock.c.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedRwLockWriteGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use super::*;

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn _assert_auto_traits() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RwLock<u32>>();
        send_sync::<RwLockReadGuard<'static, u32>>();
        send_sync::<RwLockWriteGuard<'static, u32>>();
        send_sync::<OwnedRwLockReadGuard<u32>>();
        send_sync::<OwnedRwLockWriteGuard<u32>>();
    }

    #[test]
    fn owned_guards_and_owned_downgrade() {
        let lock = StdArc::new(RwLock::new(1));
        let mut w = lock.clone().try_write_owned().unwrap();
        *w += 1;
        assert!(lock.clone().try_read_owned().is_err());
        let r = OwnedRwLockWriteGuard::downgrade(w);
        let r2 = lock.clone().try_read_owned().unwrap();
        assert_eq!((*r, *r2), (2, 2));
        assert!(lock.try_write().is_err());
        drop((r, r2));
        assert_eq!(
            StdArc::strong_count(&lock),
            1,
            "the guards gave their Arcs back"
        );
        assert_eq!(*lock.try_write().unwrap(), 2);
    }

    #[test]
    fn a_queued_writer_blocks_new_readers_and_downgrade_lets_readers_in() {
        let lock = RwLock::with_max_readers(0u32, 4);
        let r1 = lock.try_read().unwrap();
        let mut w = pin!(lock.write());
        assert!(poll_once(w.as_mut()).is_pending());
        assert!(lock.try_read().is_err(), "a reader may not pass the writer");
        let mut r2 = pin!(lock.read());
        assert!(poll_once(r2.as_mut()).is_pending());
        drop(r1);
        let Poll::Ready(Ok(mut wg)) = poll_once(w.as_mut()) else {
            panic!("the writer gets the lock once the reader left")
        };
        *wg += 1;
        assert!(poll_once(r2.as_mut()).is_pending());
        let rg = RwLockWriteGuard::downgrade(wg);
        assert_eq!(*rg, 1);
        let Poll::Ready(Ok(r2g)) = poll_once(r2.as_mut()) else {
            panic!("the queued reader enters after the downgrade")
        };
        assert_eq!(*r2g, 1);
        assert!(lock.try_write().is_err());
        drop((rg, r2g));
        assert_eq!(*lock.try_write().unwrap(), 1);
        assert_eq!(lock.s.available_permits(), 4);
    }

    #[test]
    #[should_panic(expected = "max_readers")]
    fn zero_max_readers_is_refused() {
        let _ = RwLock::with_max_readers((), 0);
    }
}
