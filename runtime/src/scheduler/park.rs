//! Parking a worker thread and waking it: a three-state atomic in front of
//! a mutex and condvar, so an unpark of a thread that is not parked costs one
//! atomic swap and a park after an unpark returns at once (the token is kept).

use std::time::{Duration, Instant};

use crate::sync::{
    atomic::{AtomicUsize, Ordering::*},
    lock, Arc, Condvar, Mutex,
};

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

#[derive(Debug)]
struct Inner {
    state: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
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
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                mutex: Mutex::new(()),
                condvar: Condvar::new(),
            }),
        }
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
        // SeqCst on every state access: the token hand-off must be totally
        // ordered with the idle-worker accounting the caller did before parking.
        if inner
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = lock(&inner.mutex);
        if let Err(actual) = inner.state.compare_exchange(EMPTY, PARKED, SeqCst, SeqCst) {
            debug_assert_eq!(actual, NOTIFIED);
            inner.state.store(EMPTY, SeqCst);
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
            if inner
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
            // Spurious wakeup: wait again.
        }
    }
}

#[cfg(not(weft_loom))]
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
            PARKED => {
                // Take the lock so the parker is inside `wait` (it holds the
                // lock from its PARKED store until it waits), then signal.
                drop(lock(&inner.mutex));
                inner.condvar.notify_one();
            }
            state => unreachable!("invalid park state {state}"),
        }
    }
}
