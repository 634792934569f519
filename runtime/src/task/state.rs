//! The task state word: lifecycle bits in the low bits, the reference count
//! above them. Every change is one CAS (or one RMW) that returns what
//! happened, so callers act on a snapshot they own instead of re-reading.

use std::fmt;

use crate::facade::atomic::{AtomicUsize, Ordering::*};

/// A poller owns the future. Excludes COMPLETE.
const RUNNING: usize = 1 << 0;
/// The future has finished (or was dropped by a cancellation) and the output
/// slot holds the result. Never cleared once set; excludes RUNNING.
const COMPLETE: usize = 1 << 1;
/// A `Notified` for this task exists (queued, or about to be) or the task was
/// woken while RUNNING and must be rescheduled when its poll returns. At most
/// one `Notified` exists at a time.
const NOTIFIED: usize = 1 << 2;
/// `abort()` or runtime shutdown asked for the future to be dropped at its
/// next schedule. Set at most once; meaningless after COMPLETE.
const CANCELLED: usize = 1 << 3;
/// The `JoinHandle` is alive: the output belongs to it once COMPLETE is set.
/// When clear, whoever completes the task drops the output.
const JOIN_INTEREST: usize = 1 << 4;
/// The join waker slot holds a waker the task must wake on completion. While
/// set (and before COMPLETE) only the task may read the slot; while clear
/// only the `JoinHandle` may write it.
const JOIN_WAKER: usize = 1 << 5;

const LIFECYCLE_BITS: usize = 6;
/// One reference in the count stored above the lifecycle bits.
const REF_ONE: usize = 1 << LIFECYCLE_BITS;
const REF_MASK: usize = !(REF_ONE - 1);

/// Three references at creation: the runtime's task registry, the first
/// `Notified`, and the `JoinHandle`.
const INITIAL: usize = (3 * REF_ONE) | JOIN_INTEREST | NOTIFIED;

pub(crate) struct State {
    word: AtomicUsize,
}

/// A copy of the state word, decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot(usize);

#[must_use]
pub(crate) enum TransitionToRunning {
    /// The caller owns the future and must poll it.
    Success,
    /// The caller owns the future and must drop it: the task was aborted.
    Cancelled,
    /// The task is running elsewhere or complete; the caller's reference was
    /// released.
    Failed,
    /// As `Failed`, and that was the last reference: deallocate.
    Dealloc,
}

#[must_use]
pub(crate) enum TransitionToIdle {
    /// The task is idle; the poller's reference was released.
    Ok,
    /// Woken during the poll: the poller's reference now backs a new
    /// `Notified` that must be scheduled (behind other ready tasks).
    OkNotified,
    /// As `Ok`, and that was the last reference: deallocate.
    OkDealloc,
    /// Aborted during the poll: the poller still owns the future and must drop it.
    Cancelled,
}

#[must_use]
pub(crate) enum TransitionToNotified {
    /// Nothing to schedule (already notified, running, or complete).
    DoNothing,
    /// The caller holds a reference that now backs a `Notified`: schedule it.
    Submit,
    /// Nothing to schedule and the caller's reference was the last.
    Dealloc,
}

impl State {
    pub(crate) fn new() -> State {
        State {
            word: AtomicUsize::new(INITIAL),
        }
    }

    pub(crate) fn load(&self) -> Snapshot {
        Snapshot(self.word.load(Acquire))
    }

    /// A load in the single total order (see `RawTask::node_or_init`).
    pub(crate) fn load_seqcst(&self) -> Snapshot {
        Snapshot(self.word.load(SeqCst))
    }

    /// Runs `f` on the current value until its CAS succeeds. `f` returns the
    /// outcome and, if the word should change, the new value.
    fn fetch_update_action<T>(&self, mut f: impl FnMut(Snapshot) -> (T, Option<Snapshot>)) -> T {
        let mut curr = self.load();
        loop {
            let (output, next) = f(curr);
            let Some(next) = next else { return output };
            // AcqRel: the Release half publishes the output (or the dropped
            // future) written before the transition; the Acquire half makes
            // the previous owner's writes visible to the next.
            match self
                .word
                .compare_exchange_weak(curr.0, next.0, AcqRel, Acquire)
            {
                Ok(_) => return output,
                Err(actual) => curr = Snapshot(actual),
            }
        }
    }

    /// Called by the poller that popped a `Notified`.
    pub(crate) fn transition_to_running(&self) -> TransitionToRunning {
        self.fetch_update_action(|mut s| {
            debug_assert!(s.is_notified());
            if !s.is_idle() {
                // Running elsewhere or complete: drop the notification's reference.
                s.ref_dec();
                // Zero while RUNNING: that poller frees (a lent reference,
                // see `waker.rs`).
                let action = if s.ref_count() == 0 && !s.is_running() {
                    TransitionToRunning::Dealloc
                } else {
                    TransitionToRunning::Failed
                };
                return (action, Some(s));
            }
            s.0 |= RUNNING;
            s.0 &= !NOTIFIED;
            let action = if s.is_cancelled() {
                TransitionToRunning::Cancelled
            } else {
                TransitionToRunning::Success
            };
            (action, Some(s))
        })
    }

    /// Called by the poller after the future returned `Pending`; `lent`:
    /// a clone of the task's waker took the poller's reference during the
    /// poll (`waker.rs`), so one reference is added with the change.
    pub(crate) fn transition_to_idle(&self, lent: bool) -> TransitionToIdle {
        self.fetch_update_action(|mut s| {
            debug_assert!(s.is_running());
            if lent {
                s.ref_inc();
            }
            if s.is_cancelled() {
                // Still RUNNING: the poller drops the future and completes.
                return (TransitionToIdle::Cancelled, lent.then_some(s));
            }
            s.0 &= !RUNNING;
            if s.is_notified() {
                // Keep the poller's reference for the new Notified.
                return (TransitionToIdle::OkNotified, Some(s));
            }
            s.ref_dec();
            let action = if s.ref_count() == 0 {
                TransitionToIdle::OkDealloc
            } else {
                TransitionToIdle::Ok
            };
            (action, Some(s))
        })
    }

    /// RUNNING → COMPLETE. Returns the snapshot after the change, which says
    /// whether the join handle is interested and has a waker.
    pub(crate) fn transition_to_complete(&self) -> Snapshot {
        const DELTA: usize = RUNNING | COMPLETE;
        // SeqCst (free on x86 for an RMW): the completer then loads the
        // node pointer, racing a lazy node install (`RawTask::node_or_init`).
        let prev = Snapshot(self.word.fetch_xor(DELTA, SeqCst));
        debug_assert!(prev.is_running() && !prev.is_complete());
        Snapshot(prev.0 ^ DELTA)
    }

    /// Releases `count` references; true when they were the last. Never
    /// true while RUNNING: the count can only reach zero then with the
    /// poller's reference lent to a waker clone (`waker.rs`) that was just
    /// released, and the poller frees the task when it adds it back.
    pub(crate) fn transition_to_terminal(&self, count: usize) -> bool {
        let prev = Snapshot(self.word.fetch_sub(count * REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= count, "task reference count underflow");
        prev.ref_count() == count && !prev.is_running()
    }

    /// A waker consumed by value.
    pub(crate) fn transition_to_notified_by_val(&self) -> TransitionToNotified {
        self.fetch_update_action(|mut s| {
            if s.is_running() {
                // The poller reschedules; our reference goes. (The count
                // may reach zero here if ours was the poller's, lent: the
                // poller adds it back as the poll ends, see `waker.rs`.)
                s.0 |= NOTIFIED;
                s.ref_dec();
                (TransitionToNotified::DoNothing, Some(s))
            } else if s.is_complete() || s.is_notified() {
                s.ref_dec();
                let action = if s.ref_count() == 0 {
                    TransitionToNotified::Dealloc
                } else {
                    TransitionToNotified::DoNothing
                };
                (action, Some(s))
            } else {
                // Our reference becomes the Notified's.
                s.0 |= NOTIFIED;
                (TransitionToNotified::Submit, Some(s))
            }
        })
    }

    /// A waker used by reference.
    pub(crate) fn transition_to_notified_by_ref(&self) -> TransitionToNotified {
        self.notify_by_ref(false)
    }

    /// A wake by a canceller that has just flipped the task's cancellation
    /// node: like `transition_to_notified_by_ref`, but always an RMW on the
    /// word, even when there is nothing to do. If the task is NOTIFIED and
    /// about to run, its poller's RMW then comes after ours and sees the
    /// flip; a plain read could miss the flip and the poll miss the cancel.
    pub(crate) fn transition_to_notified_synced(&self) -> TransitionToNotified {
        self.notify_by_ref(true)
    }

    /// Sets NOTIFIED, taking a reference for the `Notified` if the task was
    /// idle; `always_write`: an RMW even when nothing changes.
    fn notify_by_ref(&self, always_write: bool) -> TransitionToNotified {
        self.fetch_update_action(|mut s| {
            if s.is_complete() || s.is_notified() {
                (TransitionToNotified::DoNothing, always_write.then_some(s))
            } else if s.is_running() {
                s.0 |= NOTIFIED;
                (TransitionToNotified::DoNothing, Some(s))
            } else {
                s.0 |= NOTIFIED;
                s.ref_inc();
                (TransitionToNotified::Submit, Some(s))
            }
        })
    }

    /// `abort()`: marks the task cancelled and, if it is idle, notifies it
    /// (taking a new reference for the `Notified`) so its poller drops it.
    pub(crate) fn transition_to_notified_and_cancel(&self) -> bool {
        self.fetch_update_action(|mut s| {
            if s.is_cancelled() || s.is_complete() {
                (false, None)
            } else if s.is_running() || s.is_notified() {
                // The poller (current or next) sees CANCELLED.
                s.0 |= CANCELLED | NOTIFIED;
                (false, Some(s))
            } else {
                s.0 |= CANCELLED | NOTIFIED;
                s.ref_inc();
                (true, Some(s))
            }
        })
    }

    /// Shutdown: claims an idle task for the caller (true: the caller now
    /// owns the future and must cancel and complete it); otherwise marks it
    /// cancelled so its current poller drops it.
    pub(crate) fn transition_to_shutdown(&self) -> bool {
        self.fetch_update_action(|mut s| {
            if s.is_complete() {
                return (false, None);
            }
            let claimed = s.is_idle();
            if claimed {
                s.0 |= RUNNING;
            }
            s.0 |= CANCELLED;
            (claimed, Some(s))
        })
    }

    /// The join handle goes away. Fails when the task is already complete: the
    /// output is then the handle's to drop.
    pub(crate) fn unset_join_interested(&self) -> Result<(), Snapshot> {
        self.fetch_update_action(|mut s| {
            debug_assert!(s.is_join_interested());
            if s.is_complete() {
                return (Err(s), None);
            }
            s.0 &= !JOIN_INTEREST;
            (Ok(()), Some(s))
        })
    }

    /// Publishes the join waker just written. Fails if the task completed.
    pub(crate) fn set_join_waker(&self) -> Result<(), Snapshot> {
        self.fetch_update_action(|mut s| {
            debug_assert!(s.is_join_interested() && !s.is_join_waker_set());
            if s.is_complete() {
                return (Err(s), None);
            }
            s.0 |= JOIN_WAKER;
            (Ok(()), Some(s))
        })
    }

    /// Takes back the join waker slot to replace the waker. Fails if the task
    /// completed (it may be reading the slot).
    pub(crate) fn unset_join_waker(&self) -> Result<(), Snapshot> {
        self.fetch_update_action(|mut s| {
            debug_assert!(s.is_join_interested() && s.is_join_waker_set());
            if s.is_complete() {
                return (Err(s), None);
            }
            s.0 &= !JOIN_WAKER;
            (Ok(()), Some(s))
        })
    }

    pub(crate) fn ref_inc(&self) {
        // Relaxed: a new reference is made from an existing one, which already
        // orders everything the new holder may look at (as in `Arc::clone`).
        let prev = self.word.fetch_add(REF_ONE, Relaxed);
        assert!(prev & REF_MASK != REF_MASK, "task reference count overflow");
    }

    /// Releases one reference; true when it was the last.
    pub(crate) fn ref_dec(&self) -> bool {
        self.transition_to_terminal(1)
    }
}

impl Snapshot {
    pub(crate) fn is_idle(self) -> bool {
        self.0 & (RUNNING | COMPLETE) == 0
    }
    pub(crate) fn is_running(self) -> bool {
        self.0 & RUNNING != 0
    }
    pub(crate) fn is_complete(self) -> bool {
        self.0 & COMPLETE != 0
    }
    pub(crate) fn is_notified(self) -> bool {
        self.0 & NOTIFIED != 0
    }
    pub(crate) fn is_cancelled(self) -> bool {
        self.0 & CANCELLED != 0
    }
    pub(crate) fn is_join_interested(self) -> bool {
        self.0 & JOIN_INTEREST != 0
    }
    pub(crate) fn is_join_waker_set(self) -> bool {
        self.0 & JOIN_WAKER != 0
    }
    pub(crate) fn ref_count(self) -> usize {
        self.0 >> LIFECYCLE_BITS
    }
    fn ref_inc(&mut self) {
        self.0 += REF_ONE;
    }
    fn ref_dec(&mut self) {
        debug_assert!(self.ref_count() > 0);
        self.0 -= REF_ONE;
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("running", &self.is_running())
            .field("complete", &self.is_complete())
            .field("notified", &self.is_notified())
            .field("cancelled", &self.is_cancelled())
            .field("join_interested", &self.is_join_interested())
            .field("join_waker", &self.is_join_waker_set())
            .field("refs", &self.ref_count())
            .finish()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.load().fmt(f)
    }
}
