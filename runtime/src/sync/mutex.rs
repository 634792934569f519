//! An async mutex: a [`Semaphore`] of one permit around an `UnsafeCell`,
//! as tokio's is.
//!
//! # Protocol
//! - Holding the semaphore's one permit is holding the lock: a guard owns
//!   it and returns it when dropped. The semaphore's protocol (see
//!   `semaphore.rs`) gives the rest: an uncontended lock and unlock are one
//!   CAS each; waiters queue FIFO, so the lock is fair; a `lock()` cut short
//!   by its scope, or dropped, hands the permit it may have been given to
//!   the next waiter.
//! - The semaphore's Acquire/Release orderings are what make the data
//!   written under one guard visible under the next.
//! - The semaphore is never closed, so a lock fails only by cancellation.
//!
//! # Errors
//! `lock().await` returns `Result<MutexGuard, Cancelled>`: a weft wait is an
//! await point of the task's scope, and cancellation (with its cause) is the
//! only way it can fail — there is no poisoning, as in tokio. `try_lock`
//! never waits and fails with [`TryLockError`].

use std::{
    cell::UnsafeCell,
    fmt,
    marker::PhantomData,
    mem::ManuallyDrop,
    ops::{Deref, DerefMut},
    sync::Arc as StdArc,
};

use super::{
    error::{AcquireError, TryLockError},
    semaphore::Semaphore,
};
use crate::cancel::Cancelled;

/// An async mutual-exclusion lock: tokio's `Mutex` API, with `lock()` an
/// await point of the task's scope (see the [module docs](super)).
///
/// Fair: tasks get the lock in the order they asked for it.
///
/// # Errors
/// `lock().await` is `Result<MutexGuard, Cancelled>`: where tokio's `lock`
/// cannot fail, weft's fails only when the task's scope is cancelled or
/// past its deadline, and says why ([`Cancelled::cause`]). There is no
/// poisoning. `try_lock` fails with [`TryLockError`].
pub struct Mutex<T: ?Sized> {
    s: Semaphore,
    c: UnsafeCell<T>,
}

// SAFETY: the semaphore gives the data to one holder at a time; moving the
// mutex moves the `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above: `&Mutex` only hands out `&mut T` to one guard at a
// time, so `T: Send` is all that is needed (as for `std::sync::Mutex`).
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Blocks the current thread on `fut` (for `blocking_*` outside a runtime).
pub(super) fn block_on<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake};
    assert!(
        crate::runtime::Handle::try_current().is_none(),
        "`{what}` called inside a weft runtime: it would block a worker; \
         use the async method (or call it from `spawn_blocking`)"
    );
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: StdArc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &StdArc<Self>) {
            self.0.unpark();
        }
    }
    let waker = StdArc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The error of a wait on a semaphore that is never closed.
pub(super) fn cancelled_only(e: AcquireError) -> Cancelled {
    match e {
        AcquireError::Cancelled(c) => c,
        e => unreachable!("a lock's semaphore is never closed: {e}"),
    }
}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            s: Semaphore::new(1),
            c: UnsafeCell::new(value),
        }
    }

    /// As [`Mutex::new`], in a `const` context (e.g. a `static`).
    #[cfg(not(weft_loom))]
    pub const fn const_new(value: T) -> Mutex<T> {
        Mutex {
            s: Semaphore::const_new(1),
            c: UnsafeCell::new(value),
        }
    }

    /// The value, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.c.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Waits for the lock.
    ///
    /// An await point: in a cancelled scope or past its deadline it returns
    /// the [`Cancelled`] at once, every time it is polled; a wait cut short
    /// (or dropped) passes the lock on to the next waiter if it had just
    /// been given it.
    pub async fn lock(&self) -> Result<MutexGuard<'_, T>, Cancelled> {
        self.s
            .acquire_raw(1)
            .waiting_as(crate::runtime::dump::SyncOp::Mutex)
            .await
            .map_err(cancelled_only)?;
        Ok(MutexGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// As [`Mutex::lock`], with a guard that owns an `Arc` of the mutex
    /// (`'static`, for moving into a task).
    pub async fn lock_owned(self: StdArc<Self>) -> Result<OwnedMutexGuard<T>, Cancelled> {
        self.s
            .acquire_raw(1)
            .waiting_as(crate::runtime::dump::SyncOp::Mutex)
            .await
            .map_err(cancelled_only)?;
        Ok(OwnedMutexGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// Takes the lock if it is free (and nobody waits for it).
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        match self.s.try_acquire_raw(1) {
            Ok(()) => Ok(MutexGuard {
                lock: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(TryLockError(())),
        }
    }

    /// As [`Mutex::try_lock`], owned.
    pub fn try_lock_owned(self: StdArc<Self>) -> Result<OwnedMutexGuard<T>, TryLockError> {
        match self.s.try_acquire_raw(1) {
            Ok(()) => Ok(OwnedMutexGuard {
                lock: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(TryLockError(())),
        }
    }

    /// Blocks the thread until the lock is taken, for code outside any
    /// async context.
    ///
    /// # Panics
    /// Inside a weft runtime (it would block a worker).
    pub fn blocking_lock(&self) -> MutexGuard<'_, T> {
        match block_on("Mutex::blocking_lock", self.lock()) {
            Ok(guard) => guard,
            Err(c) => unreachable!("no scope outside a runtime: {c}"),
        }
    }

    /// The value, through `&mut` (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.c.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Self {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(guard) => d.field("data", &&*guard),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

/// The lock of a [`Mutex`], released when dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    lock: &'a Mutex<T>,
    /// The guard acts as a `&mut T`: `Send` if `T: Send`, `Sync` if
    /// `T: Sync` (the `&Mutex` alone would make it `Sync` for any `T: Send`).
    _marker: PhantomData<&'a mut T>,
}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Narrows the guard to a part of the data.
    pub fn map<U: ?Sized>(this: Self, f: impl FnOnce(&mut T) -> &mut U) -> MappedMutexGuard<'a, U> {
        let this = ManuallyDrop::new(this);
        // SAFETY: the guard holds the lock, so the data is ours; the permit
        // moves to the mapped guard (`this` is not dropped).
        let data = f(unsafe { &mut *this.lock.c.get() }) as *mut U;
        MappedMutexGuard {
            s: &this.lock.s,
            data,
            _marker: PhantomData,
        }
    }

    /// The mutex this guard locks.
    pub fn mutex(this: &Self) -> &'a Mutex<T> {
        this.lock
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.s.release(1);
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.c.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.lock.c.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// The lock of an `Arc<Mutex<T>>`, released when dropped.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct OwnedMutexGuard<T: ?Sized> {
    lock: StdArc<Mutex<T>>,
    /// Opts out of the auto traits, which the `Arc<Mutex<T>>` alone would
    /// give for any `T: Send`; the impls below state them as for a `&mut T`.
    _marker: PhantomData<*mut T>,
}

// SAFETY: the guard owns the lock and the `Arc`; moving it moves access to
// the `T`.
unsafe impl<T: ?Sized + Send> Send for OwnedMutexGuard<T> {}
// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Send + Sync> Sync for OwnedMutexGuard<T> {}

impl<T: ?Sized> OwnedMutexGuard<T> {
    /// The mutex this guard locks.
    pub fn mutex(this: &Self) -> &StdArc<Mutex<T>> {
        &this.lock
    }
}

impl<T: ?Sized> Drop for OwnedMutexGuard<T> {
    fn drop(&mut self) {
        self.lock.s.release(1);
    }
}

impl<T: ?Sized> Deref for OwnedMutexGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.c.get() }
    }
}

impl<T: ?Sized> DerefMut for OwnedMutexGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.lock.c.get() }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A [`MutexGuard`] narrowed by [`MutexGuard::map`] to part of the data.
#[must_use = "the lock is released at once if the guard is dropped"]
pub struct MappedMutexGuard<'a, T: ?Sized> {
    s: &'a Semaphore,
    data: *mut T,
    _marker: PhantomData<&'a mut T>,
}

// SAFETY: the guard holds the lock over `*data`, so it is as a `&mut T`.
unsafe impl<T: ?Sized + Send> Send for MappedMutexGuard<'_, T> {}
// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MappedMutexGuard<'_, T> {}

impl<'a, T: ?Sized> MappedMutexGuard<'a, T> {
    /// Narrows the guard further.
    pub fn map<U: ?Sized>(this: Self, f: impl FnOnce(&mut T) -> &mut U) -> MappedMutexGuard<'a, U> {
        let this = ManuallyDrop::new(this);
        let data = this.data;
        // SAFETY: the guard holds the lock over `*data`.
        let data = f(unsafe { &mut *data }) as *mut U;
        MappedMutexGuard {
            s: this.s,
            data,
            _marker: PhantomData,
        }
    }
}

impl<T: ?Sized> Drop for MappedMutexGuard<'_, T> {
    fn drop(&mut self) {
        self.s.release(1);
    }
}

impl<T: ?Sized> Deref for MappedMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock over `*data`.
        unsafe { &*self.data }
    }
}

impl<T: ?Sized> DerefMut for MappedMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock over `*data`.
        unsafe { &mut *self.data }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MappedMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use super::*;

    fn _assert_auto_traits() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Mutex<u32>>();
        send_sync::<MutexGuard<'static, u32>>();
        send_sync::<OwnedMutexGuard<u32>>();
        send_sync::<MappedMutexGuard<'static, u32>>();
    }

    #[test]
    fn blocking_lock_outside_a_runtime_and_try_lock() {
        static M: Mutex<Vec<u32>> = Mutex::const_new(Vec::new());
        M.blocking_lock().push(1);
        let g = M.try_lock().unwrap();
        assert!(M.try_lock().is_err());
        let mut mapped = MutexGuard::map(g, |v| &mut v[0]);
        *mapped += 1;
        assert!(M.try_lock().is_err(), "the mapped guard keeps the lock");
        drop(mapped);
        assert_eq!(*M.try_lock().unwrap(), [2]);
        let mut owned = Mutex::new(5);
        *owned.get_mut() += 1;
        assert_eq!(owned.into_inner(), 6);
    }
}
