//! The one place concurrent code gets its primitives from.
//!
//! Under `--cfg weft_loom` every name here resolves to `loom`'s model-checked
//! version, so the loom models in `loom-tests/` run weft's real code; otherwise
//! they are `std`'s. The cfg is namespaced (`weft_loom`, not `loom`) so other
//! crates in the graph that react to `cfg(loom)` are not switched with us, and
//! it is not a cargo feature, which `cargo test --workspace` would unify.
//!
//! A facade: not every module uses every name, so unused ones are allowed.

#![allow(dead_code, unused_imports)]

#[cfg(weft_loom)]
pub(crate) use loom::{
    sync::{atomic, Arc, Condvar, Mutex, MutexGuard},
    thread,
};

#[cfg(not(weft_loom))]
pub(crate) use std::{
    sync::{atomic, Arc, Condvar, Mutex, MutexGuard},
    thread,
};

#[cfg(weft_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std`'s `UnsafeCell` behind loom's closure API, so the same code compiles
/// against both. The closures make every access point visible to loom.
#[cfg(not(weft_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(weft_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Locks a mutex, ignoring poisoning: weft's own critical sections never panic
/// half-way through an update, and a user panic elsewhere must not turn every
/// later lock into a second panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(weft_loom)]
pub(crate) use loom::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(weft_loom))]
pub(crate) use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Read-locks an `RwLock`, ignoring poisoning (see [`lock`]).
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    match lock.read() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Write-locks an `RwLock`, ignoring poisoning (see [`lock`]).
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    match lock.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A lock that is only ever tried, never waited for: whoever finds it held
/// skips the work (the adaptive limiter's samples). Cheaper than a
/// `Mutex::try_lock` on x86 by a locked instruction: releasing is a plain
/// `Release` store, where a mutex swaps its state to learn whether to wake
/// a waiter, and a held lock is seen by a load, without a CAS.
pub(crate) struct TryLock<T> {
    locked: atomic::AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through `try_with`, which holds the
// flag: one thread at a time, like a `Mutex<T>`, which is `Sync` for
// `T: Send`.
unsafe impl<T: Send> Sync for TryLock<T> {}

impl<T> TryLock<T> {
    pub(crate) fn new(value: T) -> TryLock<T> {
        TryLock {
            locked: atomic::AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value if nobody holds the lock; `None` if somebody
    /// does. The lock is released when `f` returns or unwinds.
    #[inline]
    pub(crate) fn try_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        use atomic::Ordering::{Acquire, Relaxed, Release};
        struct Unlock<'a>(&'a atomic::AtomicBool);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                // Release: the holder's writes happen before the next
                // holder's Acquire.
                self.0.store(false, Release);
            }
        }
        if self.locked.load(Relaxed)
            || self
                .locked
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_err()
        {
            return None;
        }
        let _unlock = Unlock(&self.locked);
        // SAFETY: the flag is ours until `_unlock` drops, after `f` returns:
        // no other reference to the value exists meanwhile.
        Some(self.value.with_mut(|value| f(unsafe { &mut *value })))
    }
}
