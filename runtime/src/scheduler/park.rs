//! Parking a worker thread and waking it: a three-state atomic in front of
//! a mutex and condvar, so an unpark of a thread that is not parked costs one
//! atomic swap and a park after an unpark returns at once (the token is kept).
//!
//! A worker with an io driver parks in the driver instead of the condvar
//! (`park_with`): the same state word decides, and an unpark that finds the
//! worker parked calls the wake hook (an eventfd write or a `MSG_RING` into
//! its ring, mio's waker for epoll) instead of signalling the condvar. The
//! driver's wait must return once the hook ran, even if the hook ran before
//! the wait began (an eventfd keeps its count; a ring keeps its completion).

use std::time::{Duration, Instant};

use crate::facade::{
    atomic::{AtomicUsize, Ordering::*},
    lock, Arc, Condvar, Mutex,
};

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

/// Wakes a worker blocked in its io driver.
pub(crate) type WakeHook = std::sync::Arc<dyn Fn() + Send + Sync>;

struct Inner {
    state: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
    wake_hook: Option<WakeHook>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("state", &self.state)
            .field("io", &self.wake_hook.is_some())
            .finish_non_exhaustive()
    }
}

/// The parking side, owned by one thread.
#[derive(Debug)]
pub(crate) struct Parker {
    inner: Arc<Inner>,
}

/// The waking side, shared.
#[derive(Clone, Debug)]
pub(crate) struct Unparker {
    inner: Arc<Inner>,
}

impl Parker {
    pub(crate) fn new() -> Parker {
        Parker::build(None)
    }

    /// A parker whose thread blocks in an io driver (`park_with`), woken by
    /// `hook`.
    pub(crate) fn with_wake_hook(hook: WakeHook) -> Parker {
        Parker::build(Some(hook))
    }

    fn build(wake_hook: Option<WakeHook>) -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                mutex: Mutex::new(()),
                condvar: Condvar::new(),
                wake_hook,
            }),
        }
    }

    /// Parks by calling `wait` (a blocking wait in the io driver that the
    /// wake hook interrupts), unless an unpark token is pending. `wait` may
    /// return early; the caller re-checks for work either way.
    pub(crate) fn park_with(&self, deadline: Option<Instant>, wait: impl FnOnce(Option<Instant>)) {
        if self.take_token() || !self.enter_parked() {
            return;
        }
        wait(deadline);
        // Leave the parked state, taking a token that raced in.
        self.inner.state.swap(EMPTY, SeqCst);
    }

    /// Consumes a pending unpark token. SeqCst on every state access: the
    /// token hand-off must be totally ordered with the idle-worker
    /// accounting the caller did before parking.
    fn take_token(&self) -> bool {
        self.inner
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
    }

    /// Moves to PARKED; false (and the token taken) if an unpark slipped in
    /// since `take_token`.
    fn enter_parked(&self) -> bool {
        let state = &self.inner.state;
        if let Err(actual) = state.compare_exchange(EMPTY, PARKED, SeqCst, SeqCst) {
            debug_assert_eq!(actual, NOTIFIED);
            state.store(EMPTY, SeqCst);
            return false;
        }
        true
    }

    pub(crate) fn unparker(&self) -> Unparker {
        Unparker {
            inner: self.inner.clone(),
        }
    }

    /// Blocks until unparked or, with a deadline, until it passes. Consumes
    /// a pending unpark token and returns at once if there is one.
    pub(crate) fn park(&self, deadline: Option<Instant>) {
        let inner = &*self.inner;
        if self.take_token() {
            return;
        }
        // PARKED is entered under the lock: an unparker that sees it takes
        // the lock before signalling, so the wait below cannot miss it.
        let mut guard = lock(&inner.mutex);
        if !self.enter_parked() {
            return;
        }
        loop {
            guard = match deadline {
                None => match inner.condvar.wait(guard) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                },
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // Timed out: leave, taking a token that raced in.
                        inner.state.swap(EMPTY, SeqCst);
                        return;
                    }
                    match wait_timeout(&inner.condvar, guard, deadline - now) {
                        Ok(g) => g,
                        Err(p) => p,
                    }
                }
            };
            if self.take_token() {
                return;
            }
            // Spurious wakeup: wait again.
        }
    }
}

#[cfg(not(any(weft_loom, weft_shuttle)))]
fn wait_timeout<'a>(
    condvar: &Condvar,
    guard: std::sync::MutexGuard<'a, ()>,
    timeout: Duration,
) -> Result<std::sync::MutexGuard<'a, ()>, std::sync::MutexGuard<'a, ()>> {
    condvar
        .wait_timeout(guard, timeout)
        .map(|(g, _)| g)
        .map_err(|p| p.into_inner().0)
}

#[cfg(weft_shuttle)]
fn wait_timeout<'a>(
    condvar: &Condvar,
    guard: shuttle::sync::MutexGuard<'a, ()>,
    timeout: Duration,
) -> Result<shuttle::sync::MutexGuard<'a, ()>, shuttle::sync::MutexGuard<'a, ()>> {
    // shuttle's timed wait may return at any point of the schedule, as a
    // timeout or a spurious wakeup would; the caller's loop handles both.
    condvar
        .wait_timeout(guard, timeout)
        .map(|(g, _)| g)
        .map_err(|p| p.into_inner().0)
}

#[cfg(weft_loom)]
fn wait_timeout<'a>(
    condvar: &Condvar,
    guard: loom::sync::MutexGuard<'a, ()>,
    _timeout: Duration,
) -> Result<loom::sync::MutexGuard<'a, ()>, loom::sync::MutexGuard<'a, ()>> {
    // loom has no time: a timed wait is modelled as a wait that may return
    // spuriously, which the caller's loop already handles.
    condvar.wait(guard).map_err(|p| p.into_inner())
}

impl Unparker {
    /// Wakes the parked thread, or makes its next park return at once.
    pub(crate) fn unpark(&self) {
        let inner = &*self.inner;
        match inner.state.swap(NOTIFIED, SeqCst) {
            EMPTY | NOTIFIED => {}
            PARKED => match &inner.wake_hook {
                Some(hook) => hook(),
                None => {
                    // Take the lock so the parker is inside `wait` (it holds
                    // the lock from its PARKED store until it waits), then
                    // signal.
                    drop(lock(&inner.mutex));
                    inner.condvar.notify_one();
                }
            },
            state => unreachable!("invalid park state {state}"),
        }
    }
}
