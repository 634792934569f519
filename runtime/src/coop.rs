//! Cooperative scheduling: a budget per poll.
//!
//! Each task poll starts with [`BUDGET`] units. Every runtime leaf future
//! (timers, `JoinHandle`, later io ops and channels) spends one when it makes
//! progress; once the budget is gone they return `Pending` after waking their
//! task, so a task that loops over always-ready leaf futures still gives the
//! worker back and the tasks queued behind it run. Code outside a task poll
//! (`block_on`'s own future included) runs with the same budget per poll.

use std::{
    cell::Cell,
    future::{poll_fn, Future},
    pin::Pin,
    task::{Context, Poll},
};

use crate::context;

/// Units per task poll.
pub(crate) const BUDGET: u8 = 128;

// Per model thread under shuttle (see `context`).
#[cfg(weft_shuttle)]
use shuttle::thread_local;

thread_local! {
    /// `None`: no budget in force (outside any poll).
    static CURRENT: Cell<Option<u8>> = const { Cell::new(None) };
}

/// Runs `f` (one poll) with a fresh budget, restoring the previous one after.
pub(crate) fn with_budget<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(Option<u8>);
    impl Drop for Reset {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(CURRENT.with(|c| c.replace(Some(BUDGET))));
    f()
}

/// The budget left in the current poll (`None` outside any poll).
pub(crate) fn remaining() -> Option<u8> {
    CURRENT.with(Cell::get)
}

/// Gives back the unit taken by [`poll_proceed`] unless the leaf future
/// reports progress: a leaf that returns `Pending` did no work.
#[must_use]
pub(crate) struct RestoreOnPending(Cell<Option<u8>>);

impl RestoreOnPending {
    #[inline]
    pub(crate) fn made_progress(&self) {
        self.0.set(None);
    }
}

impl Drop for RestoreOnPending {
    #[inline]
    fn drop(&mut self) {
        if let Some(prev) = self.0.get() {
            CURRENT.with(|c| c.set(Some(prev)));
        }
    }
}

/// Takes one unit, or (when the budget is gone) wakes the task and returns
/// `Pending` so it yields.
///
/// On every leaf future's hot path: inlined, one thread-local read and one
/// write; the out-of-budget case is out of line.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<RestoreOnPending> {
    let budget = CURRENT.with(|c| {
        let budget = c.get();
        if let Some(n @ 1..) = budget {
            c.set(Some(n - 1));
        }
        budget
    });
    match budget {
        Some(0) => out_of_budget(cx),
        _ => Poll::Ready(RestoreOnPending(Cell::new(budget))),
    }
}

#[cold]
#[inline(never)]
fn out_of_budget(cx: &mut Context<'_>) -> Poll<RestoreOnPending> {
    context::record_forced_yield();
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Spends one unit of the task's budget, yielding if it is gone.
///
/// For long loops of work that never reaches a runtime leaf future: call it
/// each iteration and the loop yields to other tasks every 128 rounds.
pub async fn consume_budget() {
    poll_fn(|cx| {
        let restore = std::task::ready!(poll_proceed(cx));
        restore.made_progress();
        Poll::Ready(())
    })
    .await
}

/// Yields to the scheduler: the task runs again only after every task that
/// is ready now on its worker, including tasks waiting in the global
/// injector (spawned or woken from outside the runtime), or after at most
/// `event_interval` ticks if ready work keeps arriving.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // Woken while running: the scheduler requeues the task at the back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
