//! Task notification: tokio's `Notify`, with `notified()` an await point of
//! the task's scope.
//!
//! # Protocol
//! - **The state word** holds the address of the **slot** waiter (or 0)
//!   and three flags: `NOTIFIED` (the stored permit of a
//!   [`Notify::notify_one`] that found nobody waiting), `LIST` (the locked
//!   wait list is non-empty; set and cleared only under its lock) and
//!   `EPOCH` (the low bit of `calls`, below). Nodes are 8-aligned, so the
//!   address and the flags share the word.
//! - **The slot: one waiter without the lock.** A waiter that finds no
//!   slot waiter, `LIST` clear, no permit and `EPOCH` matching its `calls`
//!   puts its node's address in the word with one CAS (its waker and
//!   `notification` written before, published by that CAS). So the slot
//!   waiter is the **first** waiter: it came when nobody waited, and every
//!   later one goes to the list while the slot is taken. A `notify_one`
//!   takes it with one CAS (address → 0), without the lock: it then owns the
//!   node until its Release store of `notification`, its last access (the
//!   waker is taken before; the wake comes after). The slot waiter leaves
//!   (cancel, drop) with a CAS of its own address → 0; if that fails it was
//!   taken, and it waits (spins, then yields) for the taker's last store —
//!   a few instructions away — before its memory may go. While in the slot
//!   it never writes its node; a poll with another waker moves it, under
//!   the lock, to the **front** of the list (it was first), in one CAS
//!   (address → 0, `LIST` set) so nobody takes the slot in between.
//! - **The wait list** (intrusive, FIFO, behind a mutex) holds every other
//!   waiter. `LIST` is set exactly while it is non-empty; while `LIST` is
//!   set nobody enters the slot and no permit is stored. A `notify_one`
//!   takes the slot waiter if there is one, else the list's first (under
//!   the lock), else stores the permit with a CAS that fails if a waiter
//!   appeared meanwhile.
//! - **`calls`** (its own atomic) counts [`Notify::notify_waiters`] calls;
//!   it changes only under the lock. A waiter's node records `calls` as it
//!   was when `notified()` was called; a waiter whose recorded `calls` is
//!   behind was woken by `notify_waiters`. Under the lock a list waiter
//!   links only if its `calls` is current. `notify_waiters`, under the
//!   lock, bumps `calls`, then in one CAS flips `EPOCH` and takes the slot
//!   waiter (it was created before the call: a waiter created after it has
//!   the other `EPOCH`, and cannot have entered the slot). A slot waiter
//!   reads `calls` again after its CAS (it happens after any bump whose
//!   `EPOCH` flip it saw), which catches the two bumps that `EPOCH` alone
//!   would miss. Then `notify_waiters` pops the list's waiters in batches
//!   of [`WAKE_BATCH`](super::semaphore::WAKE_BATCH), taking the lock
//!   again for each. Waiters link in order of `calls`, so such stale
//!   waiters are a prefix of the list; a `notify_one` meanwhile pops them
//!   (as `All`), and a stale slot waiter too, until it reaches a current
//!   waiter, which gets the `One`.
//! - **A waiter's `notification`** (`One` or `All`) is written by whoever
//!   takes or pops it, as its last access to the node (Release); the waiter
//!   reads it without the lock (Acquire), so a woken waiter completes
//!   without the lock or a read-modify-write. The waiter itself writes it
//!   only while nobody else can reach the node (a reset before it links or
//!   enters the slot).
//! - **The cancel hand-back rule.** A `Notified` that leaves while waiting
//!   or holding an unconsumed `One` — its scope cancelled or past its
//!   deadline (seen at its next poll), or the future dropped — leaves the
//!   slot or unlinks itself, and passes the `One` on exactly as a
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
            Ordering::{Acquire, Relaxed, Release, SeqCst},
        },
        lock, thread, Mutex, MutexGuard,
    },
};

/// A `notify_one` permit is stored; nobody waits.
const NOTIFIED: usize = 0b001;
/// The wait list is non-empty (set and cleared only under its lock).
const LIST: usize = 0b010;
/// The low bit of `calls`, flipped by `notify_waiters` as it takes the
/// slot waiter.
const EPOCH: usize = 0b100;
const FLAGS: usize = NOTIFIED | LIST | EPOCH;

// The slot waiter's address leaves the flag bits free.
const _: () = assert!(std::mem::align_of::<Waiter<Slot>>() > FLAGS);

/// The slot waiter's address in `word` (0: none).
fn slot_of(word: usize) -> usize {
    word & !FLAGS
}

/// The `EPOCH` bit that goes with `calls`.
fn epoch_of(calls: usize) -> usize {
    if calls & 1 == 0 {
        0
    } else {
        EPOCH
    }
}

/// `Slot::notification`: not notified yet.
const NONE: usize = 0;
/// Woken by a `notify_one`: a permit the waiter owes back if it leaves
/// without consuming it.
const ONE: usize = 1;
/// Woken by a `notify_waiters`.
const ALL: usize = 2;

/// A waiter's node value (8-aligned: see the state word).
#[derive(Debug)]
#[repr(align(8))]
struct Slot {
    /// `calls` when `notified()` was called.
    calls: usize,
    /// [`NONE`], [`ONE`] or [`ALL`]. Written by whoever takes the node out
    /// of the slot or the list, as its **last** access to the node
    /// (Release), so the waiter may read it without the lock (Acquire) and,
    /// seeing it set, free the node at once.
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
    /// `notify_waiters` calls so far (wrapping); changed only under the
    /// lock.
    calls: AtomicUsize,
    waiters: Mutex<WaitList<Slot>>,
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.state.load(SeqCst);
        f.debug_struct("Notify")
            .field("permit", &(word & NOTIFIED != 0))
            .field("waiting", &(slot_of(word) != 0 || word & LIST != 0))
            .finish()
    }
}

impl Default for Notify {
    fn default() -> Self {
        Notify::new()
    }
}

/// Waits for a taker's last store: spins briefly, then yields (under the
/// model checkers, yields at once so they see the wait).
fn backoff(spins: &mut u32) {
    if cfg!(any(weft_loom, weft_shuttle)) || *spins >= 64 {
        thread::yield_now();
    } else {
        std::hint::spin_loop();
        *spins += 1;
    }
}

/// Takes what a taker needs from a node it owns and writes its last word.
///
/// # Safety
/// The caller owns `node`: it took it out of the slot with a successful CAS
/// or popped it from the list under the lock, and has not yet written its
/// `notification`. The node must not be touched after this call.
unsafe fn finish_take(node: *mut Waiter<Slot>, how: usize) -> Option<Waker> {
    // SAFETY: per the caller, the node is live and ours until the store.
    unsafe {
        let waker = (*node).waker.take();
        // Release, and the last access to the node: see `Slot`.
        (*node).value.notification.store(how, Release);
        waker
    }
}

impl Notify {
    /// A `Notify` with no permit stored.
    pub fn new() -> Notify {
        Notify {
            state: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            waiters: Mutex::new(WaitList::new()),
        }
    }

    /// As [`Notify::new`], in a `const` context.
    #[cfg(not(weft_loom))]
    pub const fn const_new() -> Notify {
        Notify {
            state: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            waiters: Mutex::new(WaitList::new()),
        }
    }

    /// A future that completes when notified.
    ///
    /// It counts as waiting for [`Notify::notify_waiters`] from this call
    /// on, even before it is polled; for [`Notify::notify_one`] from its
    /// first poll, or from [`Notified::enable`].
    // Inlined (it is not generic, so without this it is not inlined into
    // other crates): built in place in the caller's future instead of
    // returned through a temporary and copied, whose loads stalled on
    // store forwarding. `sync_profile weft notify`'s round trip went from
    // 128–139 to 113–124 ns.
    #[inline]
    pub fn notified(&self) -> Notified<'_> {
        let calls = self.calls.load(SeqCst);
        Notified {
            notify: self,
            phase: Phase::Init,
            registered: None,
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
        loop {
            if slot_of(cur) != 0 {
                match self
                    .state
                    .compare_exchange(cur, cur & FLAGS, SeqCst, SeqCst)
                {
                    Ok(_) => {
                        // SAFETY: just taken out of the slot by our CAS.
                        let (waker, one) = unsafe { self.take_slot(slot_of(cur)) };
                        if let Some(w) = waker {
                            w.wake();
                        }
                        if one {
                            return;
                        }
                        cur = self.state.load(SeqCst);
                    }
                    Err(actual) => cur = actual,
                }
                continue;
            }
            if cur & LIST != 0 {
                break;
            }
            if cur & NOTIFIED != 0 {
                return;
            }
            match self
                .state
                .compare_exchange(cur, cur | NOTIFIED, SeqCst, SeqCst)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
        self.notify_one_slow(lock(&self.waiters));
    }

    /// Delivers to a node just taken out of the slot: `One`, or `All` if it
    /// is stale (a `notify_waiters` since its `notified()`, which would have
    /// taken it next). Returns its waker and whether the `One` was given.
    ///
    /// # Safety
    /// `addr` is the slot waiter's node, taken out of the slot by the
    /// caller's successful CAS.
    unsafe fn take_slot(&self, addr: usize) -> (Option<Waker>, bool) {
        let node = addr as *mut Waiter<Slot>;
        // SAFETY: ours until `finish_take` (its owner waits for that store
        // before it frees or writes the node).
        let stale = unsafe { (*node).value.calls } != self.calls.load(SeqCst);
        let how = if stale { ALL } else { ONE };
        // SAFETY: as above.
        (unsafe { finish_take(node, how) }, !stale)
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

    /// Delivers one notification: to the slot waiter, or the first current
    /// list waiter (taking stale ones before it as woken by
    /// `notify_waiters`), or as the stored permit. False if `wakers` filled
    /// up first (the caller wakes them and calls again).
    fn notify_locked(&self, list: &mut WaitList<Slot>, wakers: &mut WakeList) -> bool {
        // Changed only under the lock, which we hold.
        let calls = self.calls.load(SeqCst);
        let mut cur = self.state.load(SeqCst);
        loop {
            if slot_of(cur) != 0 {
                if wakers.is_full() {
                    return false;
                }
                match self
                    .state
                    .compare_exchange(cur, cur & FLAGS, SeqCst, SeqCst)
                {
                    Ok(_) => {
                        // SAFETY: just taken out of the slot by our CAS.
                        let (waker, one) = unsafe { self.take_slot(slot_of(cur)) };
                        if let Some(w) = waker {
                            wakers.push(w);
                        }
                        if one {
                            return true;
                        }
                        cur = self.state.load(SeqCst);
                    }
                    Err(actual) => cur = actual,
                }
                continue;
            }
            if cur & LIST != 0 {
                if wakers.is_full() {
                    return false;
                }
                let node = list
                    .pop_front()
                    .expect("LIST is set only while the list is non-empty");
                // SAFETY: a linked node is live; we hold the lock.
                let stale = unsafe { (*node.as_ptr()).value.calls } != calls;
                let how = if stale { ALL } else { ONE };
                // SAFETY: just unlinked under the lock; its future frees it
                // only after taking the lock, or after seeing our store.
                if let Some(w) = unsafe { finish_take(node.as_ptr(), how) } {
                    wakers.push(w);
                }
                cur = if list.is_empty() {
                    self.state.fetch_and(!LIST, SeqCst) & !LIST
                } else {
                    self.state.load(SeqCst)
                };
                if !stale {
                    return true;
                }
                continue;
            }
            if cur & NOTIFIED != 0 {
                return true;
            }
            match self
                .state
                .compare_exchange(cur, cur | NOTIFIED, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Wakes every waiter whose `notified()` was created before this call.
    /// Stores no permit.
    pub fn notify_waiters(&self) {
        let mut list = lock(&self.waiters);
        // The bump marks every waiter as notified at once (their `calls` is
        // now behind); taking and waking them follows.
        let calls = self.calls.fetch_add(1, SeqCst).wrapping_add(1);
        let mut wakers = WakeList::new();
        // Flip EPOCH and take the slot waiter in one CAS.
        let mut cur = self.state.load(SeqCst);
        loop {
            let next = (cur & (NOTIFIED | LIST)) | epoch_of(calls);
            match self.state.compare_exchange(cur, next, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if slot_of(cur) != 0 {
            // SAFETY: just taken out of the slot by our CAS.
            if let Some(w) = unsafe { finish_take(slot_of(cur) as *mut Waiter<Slot>, ALL) } {
                wakers.push(w);
            }
        }
        if cur & LIST == 0 {
            drop(list);
            wakers.wake_all();
            return;
        }
        loop {
            let calls = self.calls.load(SeqCst);
            let mut more = false;
            while let Some(node) = list.front() {
                // SAFETY: a linked node is live and we hold the lock.
                if unsafe { (*node.as_ptr()).value.calls } == calls {
                    break; // linked after the bump: not ours to wake
                }
                if wakers.is_full() {
                    more = true;
                    break;
                }
                list.pop_front();
                // SAFETY: just unlinked under the lock.
                if let Some(w) = unsafe { finish_take(node.as_ptr(), ALL) } {
                    wakers.push(w);
                }
            }
            if list.is_empty() {
                self.clear_list_flag();
            }
            drop(list);
            wakers.wake_all();
            if !more {
                return;
            }
            list = lock(&self.waiters);
            wakers = WakeList::new();
        }
    }

    /// Clears `LIST`; under the lock, once the list is empty.
    fn clear_list_flag(&self) {
        if self.state.load(SeqCst) & LIST != 0 {
            // A read-modify-write: the slot bits may change without the lock.
            self.state.fetch_and(!LIST, SeqCst);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not waiting; may consume the stored permit.
    Init,
    /// In the slot, or taken out of it with a notification not yet read.
    Slot,
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
    /// In `Slot`: the waker in the node, as `(data, vtable)` (the node is
    /// not read while a taker may own it), `None` if it entered without.
    registered: Option<(usize, usize)>,
    node: Waiter<Slot>,
}

// SAFETY: `node` is only touched by another thread while that thread owns
// it (under the `Notify`'s lock, or taken out of the slot, until its last
// store); the rest is a shared reference to a `Sync` value.
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

/// What [`Notified::try_slot`] did.
enum Arm {
    /// In the slot.
    Armed,
    /// Notified (a stored permit or a `notify_waiters`).
    Done,
    /// The slot is not for it: take the lock and link.
    Link,
}

fn waker_id(w: &Waker) -> (usize, usize) {
    (w.data() as usize, w.vtable() as *const _ as usize)
}

impl Notified<'_> {
    /// Registers as a waiter without polling, so a later `notify_one` picks
    /// this future; true if it is already notified. Does not check the
    /// scope (it does not wait).
    pub fn enable(self: Pin<&mut Self>) -> bool {
        // SAFETY: the node is never moved out of the future.
        let this = unsafe { self.get_unchecked_mut() };
        match this.phase {
            Phase::Init if this.try_fast() => {
                this.phase = Phase::Done;
                true
            }
            Phase::Init => this.wait(None),
            Phase::Slot => this.slot_notified(),
            _ => this.poll_notified(None),
        }
    }

    fn addr(&self) -> usize {
        &self.node as *const Waiter<Slot> as usize
    }

    /// The stored permit or a `notify_waiters` since `notified()` (as far
    /// as `EPOCH` tells), without the lock.
    #[inline]
    fn try_fast(&self) -> bool {
        let mut cur = self.notify.state.load(SeqCst);
        loop {
            if cur & EPOCH != epoch_of(self.node.value.calls) {
                return true;
            }
            if cur & NOTIFIED == 0 {
                return false;
            }
            match self
                .notify
                .state
                .compare_exchange(cur, cur & !NOTIFIED, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// From `Init`, after `try_fast`: enters the slot or links; true if
    /// notified instead (the phase is then `Done`).
    fn wait(&mut self, waker: Option<&Waker>) -> bool {
        match self.try_slot(waker) {
            Arm::Armed => {
                self.phase = Phase::Slot;
                self.registered = waker.map(waker_id);
                false
            }
            Arm::Done => {
                self.phase = Phase::Done;
                true
            }
            Arm::Link => self.poll_notified(waker),
        }
    }

    /// The slot fast path (module protocol).
    fn try_slot(&mut self, waker: Option<&Waker>) -> Arm {
        if let Some(w) = waker {
            self.node.set_waker(w);
        }
        // Not reachable by anyone else yet: published by the CAS below.
        self.node.value.notification.store(NONE, Relaxed);
        let me = self.addr();
        let epoch = epoch_of(self.node.value.calls);
        let mut cur = self.notify.state.load(SeqCst);
        loop {
            if cur & EPOCH != epoch || slot_of(cur) != 0 || cur & LIST != 0 {
                return Arm::Link;
            }
            let next = if cur & NOTIFIED != 0 {
                cur & !NOTIFIED
            } else {
                cur | me
            };
            match self
                .notify
                .state
                .compare_exchange(cur, next, SeqCst, SeqCst)
            {
                Ok(_) if cur & NOTIFIED != 0 => return Arm::Done,
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        // Two `notify_waiters` since `notified()` leave EPOCH as it was; a
        // bump before a flip our CAS saw is visible now.
        if self.notify.calls.load(SeqCst) != self.node.value.calls {
            // Woken either way: by leaving, or by whoever took us (a `One`
            // taken here is consumed by this completion).
            self.leave_slot();
            return Arm::Done;
        }
        Arm::Armed
    }

    /// In `Slot`: leaves it, or waits for the taker's last store if it was
    /// taken. Returns `NONE` if it left, else the notification given.
    fn leave_slot(&mut self) -> usize {
        let me = self.addr();
        let mut cur = self.notify.state.load(SeqCst);
        while slot_of(cur) == me {
            match self
                .notify
                .state
                .compare_exchange(cur, cur & FLAGS, SeqCst, SeqCst)
            {
                Ok(_) => return NONE,
                Err(actual) => cur = actual,
            }
        }
        self.wait_taken()
    }

    /// Taken out of the slot: the taker's last store, a few instructions
    /// after its CAS.
    fn wait_taken(&self) -> usize {
        let mut spins = 0;
        loop {
            let how = self.node.value.notification.load(Acquire);
            if how != NONE {
                return how;
            }
            backoff(&mut spins);
        }
    }

    /// In `Slot`: true (phase `Done`) if taken and its notification written.
    fn slot_notified(&mut self) -> bool {
        if self.node.value.notification.load(Acquire) != NONE {
            self.phase = Phase::Done;
            return true;
        }
        false
    }

    /// In `Slot`, polled with a waker other than the one in the node: moves
    /// to the front of the list (it is the first waiter), where the node may
    /// be written under the lock. True (phase `Done`) if it was taken
    /// meanwhile.
    fn move_to_list(&mut self, waker: &Waker) -> bool {
        let mut list = lock(&self.notify.waiters);
        let me = self.addr();
        let mut cur = self.notify.state.load(SeqCst);
        loop {
            if slot_of(cur) != me {
                drop(list);
                self.wait_taken();
                self.phase = Phase::Done;
                return true;
            }
            match self
                .notify
                .state
                .compare_exchange(cur, (cur & FLAGS) | LIST, SeqCst, SeqCst)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.node.set_waker(waker);
        // SAFETY: the node is pinned in this future (which unlinks it in
        // `Drop`), out of the slot and not linked, and we hold the lock.
        unsafe { list.push_front(NonNull::from(&mut self.node)) };
        self.phase = Phase::Waiting;
        self.registered = None;
        false
    }

    /// True once notified (the phase becomes `Done`); otherwise the node is
    /// linked, with `waker` if given. In `Init`, call [`Notified::try_fast`]
    /// and [`Notified::try_slot`] first.
    fn poll_notified(&mut self, waker: Option<&Waker>) -> bool {
        match self.phase {
            Phase::Done => true,
            Phase::Slot => unreachable!("a slot waiter links through move_to_list"),
            Phase::Init => {
                let mut list = lock(&self.notify.waiters);
                // Under the lock `calls` does not change.
                if self.notify.calls.load(SeqCst) != self.node.value.calls {
                    self.phase = Phase::Done;
                    return true;
                }
                let mut cur = self.notify.state.load(SeqCst);
                loop {
                    let next = if cur & NOTIFIED != 0 {
                        cur & !NOTIFIED
                    } else if cur & LIST != 0 {
                        break;
                    } else {
                        cur | LIST
                    };
                    match self
                        .notify
                        .state
                        .compare_exchange(cur, next, SeqCst, SeqCst)
                    {
                        Ok(_) if cur & NOTIFIED != 0 => {
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
                if self.notify.calls.load(SeqCst) != self.node.value.calls {
                    // Woken by a `notify_waiters` still popping its batches.
                    // SAFETY: our node, only ever linked into this list; we
                    // hold the lock.
                    unsafe { list.remove(NonNull::from(&mut self.node)) };
                    if list.is_empty() {
                        self.notify.clear_list_flag();
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

    /// The hand-back rule: leaves the slot or unlinks the node and passes
    /// an unconsumed `One` on. After it the future is back to `Init` (a
    /// later poll starts over, and still sees a `notify_waiters` made since
    /// `notified()`).
    #[inline]
    fn leave(&mut self) {
        match self.phase {
            Phase::Slot => self.leave_from_slot(),
            Phase::Waiting => self.leave_linked(),
            Phase::Init | Phase::Done => {}
        }
    }

    /// [`Notified::leave`] in `Slot`.
    #[inline(never)]
    fn leave_from_slot(&mut self) {
        self.phase = Phase::Init;
        self.registered = None;
        if self.leave_slot() == ONE {
            self.notify.notify_one();
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
            self.notify.clear_list_flag();
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
            // Taken: the taker's last word, without the lock (see `Slot`).
            Phase::Slot if this.node.value.notification.load(Acquire) != NONE => {
                this.phase = Phase::Done;
                true
            }
            Phase::Slot if this.registered == Some(waker_id(cx.waker())) => false,
            Phase::Slot => this.move_to_list(cx.waker()),
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
                this.wait(Some(cx.waker()))
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
        assert_eq!(n.state.load(SeqCst), 0, "no permit, nobody waiting");
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

    #[test]
    fn the_first_waiter_takes_the_slot_and_later_ones_queue_behind_it() {
        let n = Notify::new();
        let mut a = pin!(n.notified());
        let mut b = pin!(n.notified());
        let mut c = pin!(n.notified());
        assert!(poll_once(a.as_mut()).is_pending());
        assert_eq!(a.phase, Phase::Slot);
        assert!(poll_once(b.as_mut()).is_pending());
        assert!(poll_once(c.as_mut()).is_pending());
        assert_eq!(b.phase, Phase::Waiting);
        assert_eq!(n.waiters.lock().unwrap().len(), 2);
        for (which, f) in [(&"a", &mut a), (&"b", &mut b), (&"c", &mut c)] {
            n.notify_one();
            assert_eq!(poll_once(f.as_mut()), Poll::Ready(Ok(())), "FIFO: {which}");
        }
        assert_eq!(n.state.load(SeqCst), 0, "slot and list empty, no permit");
        // The slot is free again for the next first waiter.
        let mut d = pin!(n.notified());
        assert!(poll_once(d.as_mut()).is_pending());
        assert_eq!(d.phase, Phase::Slot);
    }

    #[test]
    fn a_slot_waiter_polled_with_another_waker_keeps_its_place() {
        let n = Notify::new();
        let mut a = pin!(n.notified());
        let mut b = pin!(n.notified());
        assert!(!a.as_mut().enable()); // the slot, without a waker
        assert!(poll_once(b.as_mut()).is_pending()); // the list
        let woken = std::sync::Arc::new(Flag::default());
        let waker = Waker::from(woken.clone());
        assert!(a
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(a.phase, Phase::Waiting, "moved to the list");
        n.notify_one();
        assert!(woken.0.load(SeqCst), "its new waker was woken");
        assert_eq!(poll_once(a.as_mut()), Poll::Ready(Ok(())));
        assert!(poll_once(b.as_mut()).is_pending(), "b is still second");
        n.notify_one();
        assert_eq!(poll_once(b.as_mut()), Poll::Ready(Ok(())));
    }

    #[test]
    fn a_dropped_slot_waiter_passes_its_notification_on() {
        let n = Notify::new();
        let mut a = Box::pin(n.notified());
        let mut b = pin!(n.notified());
        assert!(poll_once(a.as_mut()).is_pending());
        assert_eq!(a.phase, Phase::Slot);
        assert!(poll_once(b.as_mut()).is_pending());
        n.notify_one(); // taken out of the slot: `a`'s
        drop(a);
        assert_eq!(poll_once(b.as_mut()), Poll::Ready(Ok(())));
        // And a slot waiter dropped before any notify leaves the slot free.
        let mut c = Box::pin(n.notified());
        assert!(poll_once(c.as_mut()).is_pending());
        drop(c);
        assert_eq!(n.state.load(SeqCst), 0);
        n.notify_one();
        assert_eq!(poll_once(pin!(n.notified())), Poll::Ready(Ok(())), "stored");
    }

    #[test]
    fn notify_waiters_takes_the_slot_waiter_but_not_a_later_one() {
        let n = Notify::new();
        let mut a = pin!(n.notified());
        assert!(poll_once(a.as_mut()).is_pending());
        n.notify_waiters();
        assert_eq!(poll_once(a.as_mut()), Poll::Ready(Ok(())));
        let mut b = Box::pin(n.notified());
        assert!(poll_once(b.as_mut()).is_pending());
        assert_eq!(b.phase, Phase::Slot, "EPOCH flipped with calls");
        drop(b);
        assert_eq!(n.state.load(SeqCst) & !EPOCH, 0, "b left the slot");
        // A `notified()` created before a call and first polled after two
        // calls (EPOCH back where it was) still sees them: it enters the
        // slot, then its second look at `calls` sends it out again.
        let mut c = pin!(n.notified());
        n.notify_waiters();
        n.notify_waiters();
        assert_eq!(poll_once(c.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(n.state.load(SeqCst) & !EPOCH, 0, "slot left free");
    }

    #[derive(Default)]
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, SeqCst);
        }
    }
}
