//! The typed half of every vtable entry: poll, complete, cancel, join.

use std::{
    future::Future,
    mem::ManuallyDrop,
    panic::{self, AssertUnwindSafe},
    ptr::NonNull,
    task::{Context, Poll, Waker},
};

use super::{
    core::{Cell, Core, Header, Stage, Trailer},
    raw::{Notified, RawTask},
    state::{TransitionToIdle, TransitionToRunning},
    waker, JoinError, Schedule,
};
use crate::{context, coop};

struct Harness<F: Future, S> {
    cell: NonNull<Cell<F, S>>,
}

impl<F, S> Harness<F, S>
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    /// # Safety
    /// `ptr` points to the header of a live `Cell<F, S>`.
    unsafe fn from_raw(ptr: NonNull<Header>) -> Self {
        Harness { cell: ptr.cast() }
    }

    fn header(&self) -> &Header {
        // SAFETY: the cell is live while any holder of a reference uses it.
        unsafe { &self.cell.as_ref().header }
    }

    fn core(&self) -> &Core<F, S> {
        // SAFETY: as in `header`.
        unsafe { &self.cell.as_ref().core }
    }

    fn trailer(&self) -> &Trailer {
        // SAFETY: as in `header`.
        unsafe { &self.cell.as_ref().trailer }
    }

    fn raw(&self) -> RawTask {
        RawTask::from_raw(self.cell.cast())
    }

    fn poll(self) {
        match self.header().state.transition_to_running() {
            TransitionToRunning::Success => {
                // What the last poll waited for is over: the await point
                // this poll stops at (if any) records its own.
                self.header()
                    .awaiting()
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                let raw = self.raw();
                // SAFETY: the waker borrows the poller's reference, which
                // outlives this poll; ManuallyDrop keeps it from releasing it.
                let waker = ManuallyDrop::new(unsafe { waker::waker_ref(raw) });
                let mut cx = Context::from_waker(&waker);
                let id = self.header().id;
                let core = self.core();
                // Entered for the poll only (dropped below): the cell may be
                // freed by the completion.
                #[cfg(feature = "tracing")]
                let span = self.header().span.get().map(tracing::Span::enter);
                // The poller's reference is lent to the first clone of the
                // waker (`waker.rs`); `lent` says if one took it.
                let (polled, lent) = waker::lending(raw.header_ptr(), || {
                    context::with_task(raw, self.header().node_ptr(), || {
                        coop::with_budget(|| {
                            panic::catch_unwind(AssertUnwindSafe(|| {
                                // SAFETY: RUNNING gives this thread the stage; the
                                // future is never moved out of the cell while Running.
                                core.stage.with_mut(|ptr| match unsafe { &mut *ptr } {
                                    Stage::Running(future) => {
                                        // SAFETY: pinned in the heap cell until dropped in place.
                                        unsafe { std::pin::Pin::new_unchecked(future) }
                                            .poll(&mut cx)
                                    }
                                    _ => unreachable!("polled a task whose future is gone"),
                                })
                            }))
                        })
                    })
                });
                #[cfg(feature = "tracing")]
                drop(span);
                if lent && !matches!(polled, Ok(Poll::Pending)) {
                    // Completing: the lent reference is added before the
                    // completion releases the poller's.
                    self.header().state.ref_inc();
                }
                match polled {
                    Ok(Poll::Pending) => self.after_pending(lent),
                    Ok(Poll::Ready(output)) => {
                        self.store_output(Ok(output));
                        self.complete();
                    }
                    Err(payload) => {
                        // A panicking destructor after a panicking poll: the
                        // first panic is the one reported.
                        let _ = self.drop_future();
                        self.store_output(Err(JoinError::panic(id, payload)));
                        self.complete();
                    }
                }
            }
            TransitionToRunning::Cancelled => {
                self.cancel_task();
                self.complete();
            }
            TransitionToRunning::Failed => {}
            TransitionToRunning::Dealloc => self.dealloc(),
        }
    }

    fn after_pending(self, lent: bool) {
        match self.header().state.transition_to_idle(lent) {
            TransitionToIdle::Ok => {}
            TransitionToIdle::OkNotified => {
                // Woken during its own poll (yield_now, or a wake that raced
                // the poll): go behind the tasks already waiting.
                self.core()
                    .scheduler
                    .yield_now(Notified::from_raw(self.raw()));
            }
            TransitionToIdle::OkDealloc => self.dealloc(),
            TransitionToIdle::Cancelled => {
                self.cancel_task();
                self.complete();
            }
        }
    }

    /// Drops the future (catching a panic from its destructor) and stores
    /// the cancelled result. The caller holds RUNNING.
    fn cancel_task(&self) {
        let id = self.header().id;
        match self.drop_future() {
            Ok(()) => self.store_output(Err(JoinError::cancelled(id))),
            Err(payload) => self.store_output(Err(JoinError::panic(id, payload))),
        }
    }

    fn drop_future(&self) -> std::thread::Result<()> {
        let core = self.core();
        context::with_task(self.raw(), self.header().node_ptr(), || {
            panic::catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: the caller holds RUNNING, so the stage is ours.
                unsafe { core.set_stage(Stage::Consumed) }
            }))
        })
    }

    fn store_output(&self, output: Result<F::Output, JoinError>) {
        // SAFETY: the caller holds RUNNING.
        unsafe { self.core().set_stage(Stage::Finished(output)) }
    }

    /// RUNNING → COMPLETE: hands the output to the join handle (or drops it),
    /// wakes the joiner, leaves the registry and releases the poller's reference.
    fn complete(self) {
        let snapshot = self.header().state.transition_to_complete();
        // The task is over: leave the cancellation tree (SeqCst load, see
        // `RawTask::node_or_init`).
        if let Some(node) = self.header().node() {
            node.finish();
        }
        // Leave the registry before waking the joiner, so a joiner that sees
        // the output also sees the task gone from `alive_tasks`.
        let released = self.core().scheduler.release(self.raw());
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            if !snapshot.is_join_interested() {
                // Nobody will read the output: drop it here.
                // SAFETY: with no join interest the completer owns the stage.
                unsafe { self.core().set_stage(Stage::Consumed) }
            } else if snapshot.is_join_waker_set() {
                self.trailer().join_waker.with(|ptr| {
                    // SAFETY: JOIN_WAKER was set when COMPLETE was: the join
                    // handle no longer writes the slot.
                    if let Some(waker) = unsafe { &*ptr } {
                        waker.wake_by_ref();
                    }
                });
            }
        }));
        let count = if let Some(task) = released {
            // Its reference is released together with ours below.
            let _ = task.into_raw();
            2
        } else {
            1
        };
        if self.header().state.transition_to_terminal(count) {
            self.dealloc();
        }
    }

    fn dealloc(self) {
        // SAFETY: the last reference is gone; nothing else can reach the cell.
        unsafe { Cell::free(self.cell) };
    }

    fn try_read_output(&self, dst: &mut Poll<Result<F::Output, JoinError>>, waker: &Waker) {
        if self.can_read_output(waker) {
            // SAFETY: COMPLETE with join interest: the stage belongs to the
            // join handle, which is our caller.
            *dst = Poll::Ready(unsafe { self.core().take_output() });
        }
    }

    /// True when the output is ready; otherwise makes sure `waker` is woken
    /// on completion.
    fn can_read_output(&self, waker: &Waker) -> bool {
        let state = &self.header().state;
        let snapshot = state.load();
        if snapshot.is_complete() {
            return true;
        }
        let stored = if snapshot.is_join_waker_set() {
            let same = self.trailer().join_waker.with(|ptr| {
                // SAFETY: reading while JOIN_WAKER is set races only with the
                // task's own read, never with a write.
                unsafe { &*ptr }
                    .as_ref()
                    .is_some_and(|w| w.will_wake(waker))
            });
            if same {
                return false;
            }
            state
                .unset_join_waker()
                .and_then(|()| self.set_join_waker(waker))
        } else {
            self.set_join_waker(waker)
        };
        match stored {
            Ok(()) => false,
            Err(snapshot) => {
                debug_assert!(snapshot.is_complete());
                true
            }
        }
    }

    fn set_join_waker(&self, waker: &Waker) -> Result<(), super::state::Snapshot> {
        // SAFETY: JOIN_WAKER is clear, so the join handle (our caller) owns the slot.
        self.trailer()
            .join_waker
            .with_mut(|ptr| unsafe { *ptr = Some(waker.clone()) });
        let res = self.header().state.set_join_waker();
        if res.is_err() {
            // SAFETY: the flag was never set: the slot is still ours.
            self.trailer()
                .join_waker
                .with_mut(|ptr| unsafe { *ptr = None });
        }
        res
    }

    fn drop_join_handle(self) {
        if self.header().state.unset_join_interested().is_err() {
            // Complete: the output is ours to drop. A panicking destructor is
            // the caller's problem only in that it must not unwind into the
            // runtime; catch it.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: COMPLETE with join interest: the handle owns the stage.
                unsafe { self.core().set_stage(Stage::Consumed) }
            }));
        }
        if self.header().state.ref_dec() {
            self.dealloc();
        }
    }

    fn shutdown(self) {
        // The cooperative cause first: the future's destructors (run below,
        // inside the task's scope), a poll still running on a stuck worker,
        // and the task's subtree all see why.
        if let Some(node) = self.header().node() {
            node.cancel(crate::cancel::Cause::Shutdown, None);
        }
        if self.header().state.transition_to_shutdown() {
            self.cancel_task();
            self.complete();
        } else if self.header().state.ref_dec() {
            self.dealloc();
        }
    }
}

pub(super) unsafe fn poll<F, S>(ptr: NonNull<Header>)
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    // SAFETY: the vtable is only installed on a `Cell<F, S>`.
    unsafe { Harness::<F, S>::from_raw(ptr) }.poll()
}

pub(super) unsafe fn schedule<F, S>(ptr: NonNull<Header>)
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    // SAFETY: as in `poll`.
    let harness = unsafe { Harness::<F, S>::from_raw(ptr) };
    harness
        .core()
        .scheduler
        .schedule(Notified::from_raw(harness.raw()));
}

pub(super) unsafe fn dealloc<F, S>(ptr: NonNull<Header>)
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    // SAFETY: as in `poll`.
    unsafe { Harness::<F, S>::from_raw(ptr) }.dealloc()
}

pub(super) unsafe fn try_read_output<F, S>(ptr: NonNull<Header>, dst: *mut (), waker: &Waker)
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    // SAFETY: as in `poll`.
    let harness = unsafe { Harness::<F, S>::from_raw(ptr) };
    // SAFETY: `dst` points to a `Poll<Result<F::Output, JoinError>>` (the
    // caller's precondition).
    let dst = unsafe { &mut *(dst as *mut Poll<Result<F::Output, JoinError>>) };
    harness.try_read_output(dst, waker);
}

pub(super) unsafe fn drop_join_handle<F, S>(ptr: NonNull<Header>)
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    // SAFETY: as in `poll`.
    unsafe { Harness::<F, S>::from_raw(ptr) }.drop_join_handle()
}

pub(super) unsafe fn shutdown<F, S>(ptr: NonNull<Header>)
where
    F: Future + 'static,
    F::Output: 'static,
    S: Schedule,
{
    // SAFETY: as in `poll`.
    unsafe { Harness::<F, S>::from_raw(ptr) }.shutdown()
}
