//! The one place concurrent code gets its primitives from.
//!
//! Under `--cfg weft_loom` every name here resolves to `loom`'s model-checked
//! version, so the loom models in `loom-tests/` run weft's real code; otherwise
//! they are `std`'s. The cfg is namespaced (`weft_loom`, not `loom`) so other
//! crates in the graph that react to `cfg(loom)` are not switched with us, and
//! it is not a cargo feature, which `cargo test --workspace` would unify.
//!
//! Under `--cfg weft_shuttle` the same names resolve to `shuttle`'s
//! (randomized schedules for models too large for loom, `shuttle-tests/`).
//! shuttle's types follow `std`'s API (`const` constructors, `Arc` is
//! `std`'s), so everywhere else the code takes its `std` path under that
//! cfg; only `UnsafeCell` stays the `std` wrapper (shuttle has none). The
//! runtime's own thread plumbing (`runtime/mod.rs`, module `threads`) and
//! the worker's park (`WorkerCtx::park_worker`) switch too, so a whole
//! `Runtime` runs on model threads (docs/VERIFICATION.md).

#[cfg(weft_loom)]
pub(crate) use loom::{
    sync::{atomic, Arc, Condvar, Mutex, MutexGuard},
    thread,
};

#[cfg(weft_shuttle)]
pub(crate) use shuttle::{
    sync::{atomic, Arc, Condvar, Mutex, MutexGuard},
    thread,
};

#[cfg(not(any(weft_loom, weft_shuttle)))]
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
