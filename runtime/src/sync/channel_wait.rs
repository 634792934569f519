//! The steps every channel wait shares: the scope checks of a weft await
//! point, and driving a wait from a thread outside the runtime.
//!
//! A channel's wait future, when polled:
//! 1. spends a unit of the coop budget;
//! 2. [`scope_cancelled`]: a cancelled scope (or one past its deadline)
//!    ends the wait at once, before anything is taken from the channel;
//! 3. tries the channel's fast path;
//! 4. [`before_wait`]: makes sure the task has a cancellation node that
//!    wakes it and arms the scope's deadline timer, then checks again;
//! 5. registers its waker and returns `Pending`.

use std::{
    future::Future,
    pin::pin,
    sync::Arc as StdArc,
    task::{Context, Poll, Wake, Waker},
};

use crate::{
    cancel::{self, Cancelled},
    context,
    facade::{lock, Condvar, Mutex},
};

/// Step 2: the scope's cancellation, if any. Arms no timer.
#[inline]
pub(crate) fn scope_cancelled() -> Option<Cancelled> {
    cancel::poll_cancelled(None, false)
}

/// Step 4: the task is about to wait. Gives it a node the canceller can
/// reach (and that wakes it), arms the deadline timer once, and returns the
/// cancellation if the scope is (now) cancelled.
#[inline]
pub(crate) fn before_wait() -> Option<Cancelled> {
    cancel::with_current_scope(|_| ());
    cancel::poll_cancelled(None, true)
}

/// Wakes a thread blocked in [`block_on`].
struct ThreadSignal {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Wake for ThreadSignal {
    fn wake(self: StdArc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &StdArc<Self>) {
        *lock(&self.woken) = true;
        self.cond.notify_one();
    }
}

/// Drives `future` on this thread, blocking it between polls: the
/// `blocking_*` methods of the channels. Outside any task nothing cancels
/// the wait; it ends when the channel does.
///
/// # Panics
/// On a weft worker thread or inside `block_on` (it would block a thread
/// the runtime needs).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let _guard = context::enter_block_on();
    let signal = StdArc::new(ThreadSignal {
        woken: Mutex::new(false),
        cond: Condvar::new(),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        let mut woken = lock(&signal.woken);
        while !*woken {
            woken = match signal.cond.wait(woken) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        *woken = false;
    }
}
