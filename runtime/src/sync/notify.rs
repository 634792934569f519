//! Task notification: tokio's `Notify`, with `notified()` an await point of
//! the task's scope.
//!
//! # Protocol
//! - **The state word** holds `calls << 2 | EMPTY/WAITING/NOTIFIED`, with
//!   `calls` the number of [`Notify::notify_waiters`] calls so far (it
//!   wraps). `NOTIFIED` is the stored permit of a [`Notify::notify_one`]
//!   that found nobody waiting; `EMPTY` and `NOTIFIED` are set and taken
//!   with one CAS, without the lock (the fast paths).
//! - **`WAITING` is set exactly while the wait list is non-empty**, and is
//!   only set or cleared under the list's lock; so a `notify_one` that sees
//!   `WAITING` takes the lock and pops the first waiter, and one that does
//!   not see it stores the permit with a CAS that fails if `WAITING`
//!   appeared meanwhile.
//! - **A waiter's node** (in its [`Notified`] future) records `calls` as it
//!   was when `notified()` was called, and a `notification` (`One` or
//!   `All`) written by whoever pops it, under the lock, as its last access
//!   to the node (Release); the waiter reads it without the lock first
//!   (Acquire), so a woken waiter usually completes without the lock. The
//!   waiter itself writes it only under the lock (a reset before linking).
//!   A `Notified` whose recorded `calls` is behind the word's was woken by
//!   `notify_waiters`,
//!   even if it is still linked: `notify_waiters` bumps `calls` under the
//!   lock, then pops those waiters in batches of
//!   [`WAKE_BATCH`](super::semaphore::WAKE_BATCH), taking the lock again
//!   for each. Waiters link in order of `calls`, so such stale waiters are
//!   a prefix of the list; a `notify_one` meanwhile pops them (as `All`)
//!   until it reaches a current waiter, which gets the `One`.
//! - **The cancel hand-back rule.** A `Notified` that leaves while linked
//!   or holding an unconsumed `One` — its scope cancelled or past its
//!   deadline (seen at its next poll), or the future dropped — takes the
//!   lock, unlinks itself, and passes the `One` on exactly as a
//!   `notify_one` would (to the next waiter, or as the stored permit). A
//!   notification is never lost and never consumed twice; an `All` needs
//!   no hand-back.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    ptr::NonNull,
    task::{ready, Context, Poll, Waker},
};

use super::{
    semaphore::WakeList,
    wait_list::{WaitList, Waiter},
};
use crate::{
    cancel::{self, Cancelled},
    coop,
    facade::{
        atomic::{
            AtomicUsize,
            Ordering::{self, Acquire, Relaxed, Release, SeqCst},
        },
        lock, Mutex, MutexGuard,
    },
};

/// Nobody waits and no permit is stored.
const EMPTY: usize = 0;
/// The wait list is non-empty (set and cleared only under its lock); no
/// permit is stored.
const WAITING: usize = 1;
/// A `notify_one` permit is stored; nobody waits.
const NOTIFIED: usize = 2;
const STATE_MASK: usize = 0b11;
/// `notify_waiters` calls are counted above the state bits.
const CALLS_SHIFT: usize = 2;

/// The ordering of the one plain store to the word, WAITING → EMPTY under
/// the lock when the list empties. Not `SeqCst` (an `xchg` on x86, on every
/// `notify_one` that wakes the last waiter): every other change of the word
/// is a read-modify-write, which reads the latest value whatever the store's
/// ordering, or is made under the lock, which orders it; and no reader
/// relies on the word to see another location.
const EMPTY_ORDER: Ordering = Release;

fn state_of(word: usize) -> usize {
    word & STATE_MASK
}

fn calls_of(word: usize) -> usize {
    word >> CALLS_SHIFT
}

fn with_state(word: usize, state: usize) -> usize {
    (word & !STATE_MASK) | state
}

/// `Slot::notification`: not notified yet.
const NONE: usize = 0;
/// Woken by a `notify_one`: a permit the waiter owes back if it leaves
/// without consuming it.
const ONE: usize = 1;
/// Woken by a `notify_waiters`.
const ALL: usize = 2;

/// A waiter's node value.
#[derive(Debug)]
struct Slot {
    /// `calls` when `notified()` was called.
    calls: usize,
    /// [`NONE`], [`ONE`] or [`ALL`]. Written under the lock by whoever pops
    /// the node, as its **last** access to the node (Release), so the
    /// waiter may read it without the lock (Acquire) and, seeing it set,
    /// free the node at once.
    notification: AtomicUsize,
}

/// Notifies tasks: tokio's `Notify` API, with every wait an await point of
/// the task's scope (see the [module docs](super)).
///
/// `notify_one` wakes the first waiter (FIFO) or, if nobody waits, stores
/// one permit that the next `notified()` consumes at once;
/// `notify_waiters` wakes every waiter whose `notified()` was created before
/// the call, and stores nothing.
pub struct Notify {
    state: AtomicUsize,
    waiters: Mutex<WaitList<Slot>>,
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.state.load(SeqCst);
        f.debug_struct("Notify")
            .field("permit", &(state_of(word) == NOTIFIED))
            .field("waiting", &(state_of(word) == WAITING))
            .finish()
    }
}

impl Default for Notify {
    fn default() -> Self {
        Notify::new()
    }
}

impl Notify {
    /// A `Notify` with no permit stored.
    pub fn new() -> Notify {
        Notify {
            state: AtomicUsize::new(EMPTY),
            waiters: Mutex::new(WaitList::new()),
        }
    }

    /// As [`Notify::new`], in a `const` context.
    #[cfg(not(weft_loom))]
    pub const fn const_new() -> Notify {
        Notify {
            state: AtomicUsize::new(EMPTY),
            waiters: Mutex::new(WaitList::new()),
        }
    }

    /// A future that completes when notified.
    ///
    /// It counts as waiting for [`Notify::notify_waiters`] from this call
    /// on, even before it is polled; for [`Notify::notify_one`] from its
    /// first poll, or from [`Notified::enable`].
    pub fn notified(&self) -> Notified<'_> {
        let calls = calls_of(self.state.load(SeqCst));
        Notified {
            notify: self,
            phase: Phase::Init,
            node: Waiter::new(Slot {
                calls,
                notification: AtomicUsize::new(NONE),
            }),
        }
    }

    /// Wakes the first waiter, or stores a permit if nobody waits (at most
    /// one: a second call with nobody waiting changes nothing).
    pub fn notify_one(&self) {
        let mut cur = self.state.load(SeqCst);
        while state_of(cur) != WAITING {
            match self
                .state
                .compare_exchange(cur, with_state(cur, NOTIFIED), SeqCst, SeqCst)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
        let mut list = lock(&self.waiters);
        // The common case, without a `WakeList`: the first waiter is a
        // current one (no `notify_waiters` is popping stale ones).
        if let Some(waker) = self.notify_first_locked(&mut list) {
            drop(list);
            if let Some(w) = waker {
                w.wake();
            }
            return;
        }
        self.notify_one_slow(list);
    }

    /// Under the lock: if the list's first waiter is current (its `calls`
    /// is the word's), pops it, gives it the `One` and returns its waker;
    /// `None` (nothing done) otherwise, for [`Notify::notify_locked`].
    #[inline]
    fn notify_first_locked(&self, list: &mut WaitList<Slot>) -> Option<Option<Waker>> {
        let cur = self.state.load(SeqCst);
        if state_of(cur) != WAITING {
            return None;
        }
        let node = list.front()?;
        // SAFETY: a linked node is live and we hold the lock.
        let waiter = unsafe { &mut *node.as_ptr() };
        if waiter.value.calls != calls_of(cur) {
            return None;
        }
        list.pop_front();
        let waker = waiter.waker.take();
        // Release, and the last access to the node: see `Slot`.
        waiter.value.notification.store(ONE, Release);
        if list.is_empty() {
            // Under the lock nobody else changes a WAITING word (Release:
            // see `EMPTY_ORDER`).
            self.state.store(with_state(cur, EMPTY), EMPTY_ORDER);
        }
        Some(waker)
    }

    /// `notify_one` under the lock, waking in batches if it has to pop
    /// stale waiters (see the module protocol) first.
    fn notify_one_slow<'a>(&'a self, mut list: MutexGuard<'a, WaitList<Slot>>) {
        loop {
            let mut wakers = WakeList::new();
            let delivered = self.notify_locked(&mut list, &mut wakers);
            drop(list);
            wakers.wake_all();
            if delivered {
                return;
            }
            list = lock(&self.waiters);
        }
    }

    /// Delivers one notification: to the first current waiter (popping
    /// stale ones before it as woken by `notify_waiters`), or as the stored
    /// permit. False if `wakers` filled up first (the caller wakes them
    /// and calls again).
    fn notify_locked(&self, list: &mut WaitList<Slot>, wakers: &mut WakeList) -> bool {
        let mut cur = self.state.load(SeqCst);
        loop {
            if state_of(cur) != WAITING {
                match self
                    .state
                    .compare_exchange(cur, with_state(cur, NOTIFIED), SeqCst, SeqCst)
                {
                    Ok(_) => return true,
                    Err(actual) => {
                        cur = actual;
                        continue;
                    }
                }
            }
            if wakers.is_full() {
                return false;
            }
            let node = list
                .pop_front()
                .expect("WAITING is set only while the list is non-empty");
            // SAFETY: just unlinked under the lock; its future frees it only
            // after taking the lock (module protocol).
            let waiter = unsafe { &mut *node.as_ptr() };
            let stale = waiter.value.calls != calls_of(cur);
            if let Some(w) = waiter.waker.take() {
                wakers.push(w);
            }
            // Release, and the last access to the node: see `Slot`.
            let how = if stale { ALL } else { ONE };
            waiter.value.notification.store(how, Release);
            if list.is_empty() {
                // Under the lock nobody else changes a WAITING word.
                cur = with_state(cur, EMPTY);
                self.state.store(cur, EMPTY_ORDER);
            }
            if !stale {
                return true;
            }
        }
    }

    /// Wakes every waiter whose `notified()` was created before this call.
    /// Stores no permit.
    pub fn notify_waiters(&self) {
        let mut list = lock(&self.waiters);
        // The bump marks every linked waiter as notified at once (their
        // `calls` is now behind); popping and waking them follows.
        let cur = self.state.fetch_add(1 << CALLS_SHIFT, SeqCst);
        if state_of(cur) != WAITING {
            return;
        }
        loop {
            let calls = calls_of(self.state.load(SeqCst));
            let mut wakers = WakeList::new();
            let mut more = false;
            while let Some(node) = list.front() {
                // SAFETY: a linked node is live and we hold the lock.
                let waiter = unsafe { &mut *node.as_ptr() };
                if waiter.value.calls == calls {
                    break; // linked after the bump: not ours to wake
                }
                if wakers.is_full() {
                    more = true;
                    break;
                }
                list.pop_front();
                if let Some(w) = waiter.waker.take() {
                    wakers.push(w);
                }
                // Release, and the last access to the node: see `Slot`.
                waiter.value.notification.store(ALL, Release);
            }
            if list.is_empty() {
                self.set_empty_locked();
            }
            drop(list);
            wakers.wake_all();
            if !more {
                return;
            }
            list = lock(&self.waiters);
        }
    }

    /// WAITING → EMPTY, keeping `calls`; under the lock, once the list is
    /// empty.
    fn set_empty_locked(&self) {
        let cur = self.state.load(SeqCst);
        if state_of(cur) == WAITING {
            // Under the lock nobody else changes a WAITING word.
            self.state.store(with_state(cur, EMPTY), EMPTY_ORDER);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not linked; may consume the stored permit.
    Init,
    /// Linked, or popped with a notification not yet taken.
    Waiting,
    /// Notified (and the notification consumed).
    Done,
}

/// The future of [`Notify::notified`]: `Ok(())` once notified, or the
/// scope's [`Cancelled`].
///
/// An await point: in a cancelled scope or past its deadline it returns the
/// cancellation at once, every time it is polled. A `Notified` that leaves
/// that way (or is dropped) after a `notify_one` chose it passes that
/// notification on, so it is never lost.
#[must_use = "futures do nothing unless awaited"]
pub struct Notified<'a> {
    notify: &'a Notify,
    phase: Phase,
    node: Waiter<Slot>,
}

// SAFETY: `node` is only touched under the `Notify`'s lock while another
// thread can reach it; the rest is a shared reference to a `Sync` value.
unsafe impl Send for Notified<'_> {}
// SAFETY: `&Notified` exposes nothing.
unsafe impl Sync for Notified<'_> {}

impl fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notified")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Notified<'_> {
    /// Registers as a waiter without polling, so a later `notify_one` picks
    /// this future; true if it is already notified. Does not check the
    /// scope (it does not wait).
    pub fn enable(self: Pin<&mut Self>) -> bool {
        // SAFETY: the node is never moved out of the future.
        let this = unsafe { self.get_unchecked_mut() };
        if this.phase == Phase::Init && this.try_fast() {
            this.phase = Phase::Done;
            return true;
        }
        this.poll_notified(None)
    }

    /// The stored permit or a `notify_waiters` since `notified()`, without
    /// the lock.
    #[inline]
    fn try_fast(&self) -> bool {
        let mut cur = self.notify.state.load(SeqCst);
        loop {
            if calls_of(cur) != self.node.value.calls {
                return true;
            }
            if state_of(cur) != NOTIFIED {
                return false;
            }
            match self
                .notify
                .state
                .compare_exchange(cur, with_state(cur, EMPTY), SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// True once notified (the phase becomes `Done`); otherwise the node is
    /// linked, with `waker` if given. In `Init`, call [`Notified::try_fast`]
    /// first.
    fn poll_notified(&mut self, waker: Option<&Waker>) -> bool {
        match self.phase {
            Phase::Done => true,
            Phase::Init => {
                // The caller tried `try_fast` already.
                let mut list = lock(&self.notify.waiters);
                let mut cur = self.notify.state.load(SeqCst);
                loop {
                    if calls_of(cur) != self.node.value.calls {
                        self.phase = Phase::Done;
                        return true;
                    }
                    let next = match state_of(cur) {
                        NOTIFIED => with_state(cur, EMPTY),
                        EMPTY => with_state(cur, WAITING),
                        _ => break,
                    };
                    match self
                        .notify
                        .state
                        .compare_exchange(cur, next, SeqCst, SeqCst)
                    {
                        Ok(_) if state_of(cur) == NOTIFIED => {
                            self.phase = Phase::Done;
                            return true;
                        }
                        Ok(_) => break,
                        Err(actual) => cur = actual,
                    }
                }
                if let Some(w) = waker {
                    self.node.set_waker(w);
                }
                // Unlinked and under the lock: nobody else reads it.
                self.node.value.notification.store(NONE, Relaxed);
                // SAFETY: the node is pinned in this future (which unlinks
                // it in `Drop`), not linked, and we hold the lock.
                unsafe { list.push_back(NonNull::from(&mut self.node)) };
                self.phase = Phase::Waiting;
                false
            }
            Phase::Waiting => {
                // Without the lock: the popper's last word (see `Slot`).
                // Only read here (the field is reset when the node is
                // linked again): the waiter never writes it without the
                // lock.
                if self.node.value.notification.load(Acquire) != NONE {
                    self.phase = Phase::Done;
                    return true;
                }
                let mut list = lock(&self.notify.waiters);
                if self.node.value.notification.load(Acquire) != NONE {
                    self.phase = Phase::Done;
                    return true;
                }
                if calls_of(self.notify.state.load(SeqCst)) != self.node.value.calls {
                    // Woken by a `notify_waiters` still popping its batches.
                    // SAFETY: our node, only ever linked into this list; we
                    // hold the lock.
                    unsafe { list.remove(NonNull::from(&mut self.node)) };
                    if list.is_empty() {
                        self.notify.set_empty_locked();
                    }
                    self.phase = Phase::Done;
                    return true;
                }
                if let Some(w) = waker {
                    self.node.set_waker(w);
                }
                false
            }
        }
    }

    /// The hand-back rule: unlinks the node and passes an unconsumed `One`
    /// on. After it the future is back to `Init` (a later poll starts over,
    /// and still sees a `notify_waiters` made since `notified()`).
    #[inline]
    fn leave(&mut self) {
        if self.phase == Phase::Waiting {
            self.leave_linked();
        }
    }

    /// [`Notified::leave`] in `Waiting`.
    #[inline(never)]
    fn leave_linked(&mut self) {
        self.phase = Phase::Init;
        let mut list = lock(&self.notify.waiters);
        // SAFETY: our node, only ever linked into this list; we hold the
        // lock.
        if unsafe { list.remove(NonNull::from(&mut self.node)) } && list.is_empty() {
            self.notify.set_empty_locked();
        }
        if self.node.value.notification.load(Acquire) == ONE {
            self.notify.notify_one_slow(list);
        }
    }
}

impl Future for Notified<'_> {
    type Output = Result<(), Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the node is never moved out of the future.
        let this = unsafe { self.get_unchecked_mut() };
        let restore = ready!(coop::poll_proceed(cx));
        if let Some(c) = cancel::poll_cancelled(None, false) {
            this.leave();
            restore.made_progress();
            return Poll::Ready(Err(c));
        }
        let done = match this.phase {
            Phase::Done => true,
            // Woken: the popper's last word, without the lock (see `Slot`;
            // `poll_notified` reads it again under the lock if unset).
            Phase::Waiting if this.node.value.notification.load(Acquire) != NONE => {
                this.phase = Phase::Done;
                true
            }
            Phase::Waiting => this.poll_notified(Some(cx.waker())),
            Phase::Init if this.try_fast() => {
                this.phase = Phase::Done;
                true
            }
            Phase::Init => {
                // About to wait: arm the scope's deadline timer (no node is
                // made: see "Waking a cancelled waiter" in `semaphore.rs`).
                if let Some(c) = cancel::poll_cancelled(None, true) {
                    restore.made_progress();
                    return Poll::Ready(Err(c));
                }
                this.poll_notified(Some(cx.waker()))
            }
        };
        if done {
            restore.made_progress();
            Poll::Ready(Ok(()))
        } else {
            crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::Notify);
            Poll::Pending
        }
    }
}

impl Drop for Notified<'_> {
    #[inline]
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::{
        pin::{pin, Pin},
        task::{Context, Poll, Waker},
    };

    use super::*;

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_stored_permit_is_consumed_once() {
        let n = Notify::new();
        n.notify_one();
        n.notify_one();
        assert_eq!(poll_once(pin!(n.notified())), Poll::Ready(Ok(())));
        assert!(poll_once(pin!(n.notified())).is_pending());
        assert!(n.waiters.lock().unwrap().is_empty());
        assert_eq!(n.state.load(SeqCst) & STATE_MASK, EMPTY);
    }

    #[test]
    fn a_dropped_waiter_passes_its_notification_on() {
        let n = Notify::new();
        let mut a = Box::pin(n.notified());
        let mut b = pin!(n.notified());
        assert!(poll_once(a.as_mut()).is_pending());
        assert!(!b.as_mut().enable());
        n.notify_one(); // goes to `a`
        drop(a);
        assert_eq!(poll_once(b.as_mut()), Poll::Ready(Ok(())));
        assert!(poll_once(pin!(n.notified())).is_pending(), "given once");
    }

    #[test]
    fn notify_waiters_wakes_more_than_a_batch_and_only_earlier_waiters() {
        let n = Notify::new();
        let mut futs: Vec<_> = (0..super::super::semaphore::WAKE_BATCH * 2 + 5)
            .map(|_| Box::pin(n.notified()))
            .collect();
        for f in &mut futs {
            assert!(poll_once(f.as_mut()).is_pending());
        }
        let created_before = n.notified();
        n.notify_waiters();
        let mut after = pin!(n.notified());
        assert!(poll_once(after.as_mut()).is_pending());
        for f in &mut futs {
            assert_eq!(poll_once(f.as_mut()), Poll::Ready(Ok(())));
        }
        assert_eq!(poll_once(pin!(created_before)), Poll::Ready(Ok(())));
        n.notify_one();
        assert_eq!(poll_once(after.as_mut()), Poll::Ready(Ok(())));
    }
}
