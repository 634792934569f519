//! A counting semaphore whose waits are await points of the task's scope;
//! [`Mutex`](super::Mutex), [`RwLock`](super::RwLock) and
//! [`OnceCell`](super::OnceCell) are built on it, as tokio's are on its
//! `batch_semaphore`.
//!
//! # Protocol
//! - **The state word** (`state`) holds `permits << SHIFT | HAS_WAITERS |
//!   CLOSED`. Permits are taken and (when nobody waits) returned with one
//!   CAS on it, without the lock: that is the whole fast path.
//! - **The wait list** (`waiters`, a facade `Mutex` around an intrusive
//!   [`WaitList`]) holds the waiters, FIFO. A waiter's node holds the
//!   number of permits it still needs, read and written only under the
//!   lock, and a `granted` flag that whoever pops it with all its permits
//!   sets as its last access to the node, so the woken waiter completes
//!   without the lock.
//! - **`HAS_WAITERS` is set exactly while the list is non-empty.** It is
//!   set, under the lock, by the CAS with which a waiter about to be linked
//!   takes the permits that are there (so it is set before the node is
//!   linked and the lock released), and cleared, under the lock, by whoever
//!   empties the list. A release that sees it takes the lock and hands the
//!   permits to the waiters; one that does not see it adds them to the word
//!   with a CAS that fails if the bit appeared meanwhile. So a release never
//!   misses a waiter, and:
//! - **While anyone waits, the word holds no permits**: releases go to the
//!   front waiters (partially, as tokio's batch semaphore does: a waiter for
//!   5 permits takes 2 now and 3 later), and only what is left once the list
//!   is empty goes back to the word. A new acquirer therefore never overtakes
//!   a waiter (FIFO fairness), and `try_acquire` fails while anyone waits.
//! - **A waiter is popped only once it has all its permits**, or by
//!   [`Semaphore::close`], which pops every waiter as it is.
//! - **The cancel hand-back rule.** A wait future that leaves before taking
//!   its result — its scope cancelled or past its deadline (seen at its next
//!   poll: the task's cancellation node wakes it), or the future dropped (a
//!   `timeout`, a `select!` loser, an aborted task) — takes the lock,
//!   unlinks its node if it is still linked, and releases the permits it
//!   was assigned (`needed - remaining`) through the same path as a release,
//!   so they go to the next waiters and nothing is lost or counted twice.
//! - **Closing** sets `CLOSED` under the lock and pops every waiter; each
//!   returns `AcquireError::Closed` at its next poll and hands back what it
//!   was assigned. Permits held or released after the close still count in
//!   [`Semaphore::available_permits`].
//! - **Waking a cancelled waiter.** Every wait here checks the scope first
//!   on each poll (`poll_cancelled`), and once more just before linking,
//!   with `will_wait` so the scope's deadline timer is armed. It makes no
//!   cancellation node for the current scope, as `sleep` and the socket
//!   waits make none: a task's node, whenever it is made (by
//!   `JoinHandle::cancel`, say), wakes the task; a `cancel::scope` wakes
//!   its future; and a `timeout` whose node was never made ends the wait by
//!   dropping it (the hand-back rule above). Making that node here would
//!   cost an allocation per wait under a `timeout`.
//!
//! Waking happens after the lock is released, at most [`WAKE_BATCH`] wakers
//! at a time (the lock is taken again for the next batch), so no allocation
//! is made by a wait, a release or a close.

use std::{
    fmt,
    future::Future,
    mem::MaybeUninit,
    pin::Pin,
    ptr::NonNull,
    sync::Arc as StdArc,
    task::{ready, Context, Poll, Waker},
};

use super::{
    error::{AcquireError, TryAcquireError},
    wait_list::{WaitList, Waiter},
};
use crate::{
    cancel, coop,
    facade::{
        atomic::{AtomicBool, AtomicUsize, Ordering::*},
        lock, Mutex, MutexGuard,
    },
    runtime::dump::{self, Awaiting, SyncOp},
};

/// A waiter's node value.
#[derive(Debug)]
struct Need {
    /// Permits still to come; under the lock.
    remaining: usize,
    /// Set by whoever pops the node with all its permits, as its **last**
    /// access to the node (Release), so the woken waiter can take its
    /// permits without the lock (Acquire) and free the node at once. Reset
    /// under the lock when the node is linked again.
    granted: AtomicBool,
}

impl Need {
    fn new(n: usize) -> Need {
        Need {
            remaining: n,
            granted: AtomicBool::new(false),
        }
    }
}

/// The semaphore was closed; no acquire succeeds from then on.
const CLOSED: usize = 0b01;
/// The wait list is non-empty. Set and cleared only under the list's lock;
/// while it is set the word holds no permits.
const HAS_WAITERS: usize = 0b10;
/// Permits are counted above the two flag bits.
const SHIFT: usize = 2;

/// Wakers collected under the lock before it is released and they are
/// woken.
pub(super) const WAKE_BATCH: usize = 32;

/// Wakers gathered under a lock, woken after it is released, in a fixed
/// array (no allocation, and nothing to initialize: a release that wakes
/// one waiter writes one slot).
pub(super) struct WakeList {
    /// `wakers[..len]` are initialized.
    wakers: [MaybeUninit<Waker>; WAKE_BATCH],
    len: usize,
}

impl WakeList {
    pub(super) fn new() -> WakeList {
        WakeList {
            wakers: [const { MaybeUninit::uninit() }; WAKE_BATCH],
            len: 0,
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.len == WAKE_BATCH
    }

    /// Keeps `waker` for [`WakeList::wake_all`]; the caller checks
    /// [`WakeList::is_full`] first.
    pub(super) fn push(&mut self, waker: Waker) {
        assert!(!self.is_full(), "a full WakeList");
        self.wakers[self.len].write(waker);
        self.len += 1;
    }

    pub(super) fn wake_all(&mut self) {
        // Taken out first: a panicking waker leaves `len` at 0, and `Drop`
        // then frees nothing twice (the rest leak, as a panic may).
        let len = std::mem::replace(&mut self.len, 0);
        for slot in &self.wakers[..len] {
            // SAFETY: `wakers[..len]` were written by `push`, and are read
            // once (`len` is already 0).
            unsafe { slot.assume_init_read() }.wake();
        }
    }
}

impl Drop for WakeList {
    fn drop(&mut self) {
        for slot in &mut self.wakers[..self.len] {
            // SAFETY: `wakers[..len]` are initialized and not read since.
            unsafe { slot.assume_init_drop() };
        }
    }
}

/// A counting semaphore: tokio's `Semaphore` API, with every wait an await
/// point of the task's scope (see the [module docs](super)).
///
/// Waiters are served in FIFO order; a waiter for many permits holds back
/// the ones behind it until it has them all.
///
/// ```
/// # weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap().block_on(async {
/// use std::{sync::Arc, time::Duration};
/// use weft::sync::Semaphore;
///
/// let sem = Arc::new(Semaphore::new(1));
/// let held = sem.clone().acquire_owned().await.unwrap();
/// // A task whose deadline passes while it waits for the permit.
/// let waiter = weft::task::Builder::new()
///     .timeout(Duration::from_millis(10))
///     .spawn({
///         let sem = sem.clone();
///         async move { sem.acquire().await.map(|_| ()) }
///     });
/// let err = waiter.await.unwrap().unwrap_err();
/// assert!(err.cancelled().unwrap().is_deadline());
/// drop(held);
/// assert_eq!(sem.available_permits(), 1);
/// # });
/// ```
pub struct Semaphore {
    state: AtomicUsize,
    waiters: Mutex<WaitList<Need>>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("permits", &self.available_permits())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Default for Semaphore {
    fn default() -> Self {
        Semaphore::new(0)
    }
}

impl Semaphore {
    /// The most permits a semaphore can hold.
    pub const MAX_PERMITS: usize = usize::MAX >> 3;

    /// A semaphore with `permits` permits.
    ///
    /// # Panics
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    pub fn new(permits: usize) -> Semaphore {
        assert!(
            permits <= Self::MAX_PERMITS,
            "a semaphore holds at most {} permits",
            Self::MAX_PERMITS
        );
        Semaphore {
            state: AtomicUsize::new(permits << SHIFT),
            waiters: Mutex::new(WaitList::new()),
        }
    }

    /// As [`Semaphore::new`], in a `const` context (e.g. a `static`).
    ///
    /// # Panics
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`] (at compile time in a
    /// `const`).
    #[cfg(not(weft_loom))]
    pub const fn const_new(permits: usize) -> Semaphore {
        assert!(permits <= Self::MAX_PERMITS);
        Semaphore {
            state: AtomicUsize::new(permits << SHIFT),
            waiters: Mutex::new(WaitList::new()),
        }
    }

    /// Permits available now (none while anyone waits).
    pub fn available_permits(&self) -> usize {
        self.state.load(Acquire) >> SHIFT
    }

    /// Adds `n` permits, handing them to waiters first.
    ///
    /// # Panics
    /// If the total would exceed [`Semaphore::MAX_PERMITS`].
    pub fn add_permits(&self, n: usize) {
        self.release(n);
    }

    /// Removes up to `n` available permits; returns how many it removed.
    pub fn forget_permits(&self, n: usize) -> usize {
        let mut cur = self.state.load(Relaxed);
        loop {
            let take = n.min(cur >> SHIFT);
            if take == 0 {
                return 0;
            }
            match self
                .state
                .compare_exchange(cur, cur - (take << SHIFT), AcqRel, Relaxed)
            {
                Ok(_) => return take,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Closes the semaphore: waiters get [`AcquireError::Closed`], and so
    /// does every later acquire. Permits already held stay valid.
    pub fn close(&self) {
        let mut list = lock(&self.waiters);
        // Release: a `try_acquire` that sees CLOSED sees what preceded it.
        self.state.fetch_or(CLOSED, Release);
        loop {
            let mut wakers = WakeList::new();
            while !wakers.is_full() {
                let Some(node) = list.pop_front() else { break };
                // SAFETY: just unlinked under the lock; its future frees it
                // only after taking the lock (module protocol).
                let waiter = unsafe { &mut *node.as_ptr() };
                if let Some(w) = waiter.waker.take() {
                    wakers.push(w);
                }
            }
            let empty = list.is_empty();
            if empty {
                self.state.fetch_and(!HAS_WAITERS, Relaxed);
            }
            drop(list);
            wakers.wake_all();
            if empty {
                return;
            }
            list = lock(&self.waiters);
        }
    }

    /// True once [`Semaphore::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state.load(Acquire) & CLOSED != 0
    }

    /// Takes a permit if one is available and nobody waits.
    #[inline]
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are available and nobody waits.
    #[inline]
    pub fn try_acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_raw(n as usize)?;
        Ok(SemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// As [`Semaphore::try_acquire`], with a permit that owns an `Arc` of
    /// the semaphore.
    pub fn try_acquire_owned(self: StdArc<Self>) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.try_acquire_many_owned(1)
    }

    /// As [`Semaphore::try_acquire_many`], owned.
    pub fn try_acquire_many_owned(
        self: StdArc<Self>,
        n: u32,
    ) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.try_acquire_raw(n as usize)?;
        Ok(OwnedSemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// Waits for a permit.
    ///
    /// An await point: in a cancelled scope or past its deadline it returns
    /// [`AcquireError::Cancelled`] at once (every time it is polled), and a
    /// wait cut short that way, or dropped, hands back the permits it had
    /// been given to the next waiters.
    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.acquire_raw(1).await?;
        Ok(SemaphorePermit {
            sem: self,
            permits: 1,
        })
    }

    /// Waits for `n` permits (taking them as they come, in FIFO order).
    /// See [`Semaphore::acquire`].
    pub async fn acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.acquire_raw(n as usize).await?;
        Ok(SemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// As [`Semaphore::acquire`], with a permit that owns an `Arc` of the
    /// semaphore (`'static`, for moving into a task).
    pub async fn acquire_owned(self: StdArc<Self>) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.acquire_many_owned(1).await
    }

    /// As [`Semaphore::acquire_many`], owned.
    pub async fn acquire_many_owned(
        self: StdArc<Self>,
        n: u32,
    ) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.acquire_raw(n as usize).await?;
        Ok(OwnedSemaphorePermit {
            sem: self,
            permits: n,
        })
    }

    /// The wait future for `n` permits, which are the caller's once it
    /// returns `Ok` (returned with [`Semaphore::release`]).
    pub(crate) fn acquire_raw(&self, n: usize) -> Acquire<'_> {
        assert!(
            n <= Self::MAX_PERMITS,
            "a semaphore holds at most {} permits",
            Self::MAX_PERMITS
        );
        Acquire {
            sem: self,
            node: Waiter::new(Need::new(n)),
            needed: n,
            linked: false,
            kind: SyncOp::Semaphore,
        }
    }

    /// The fast path: one CAS taking `n` permits.
    #[inline]
    pub(crate) fn try_acquire_raw(&self, n: usize) -> Result<(), TryAcquireError> {
        // Acquire (here and on a failed CAS): seeing CLOSED must show what
        // preceded the close (a `OnceCell`'s value; loom found this).
        let mut cur = self.state.load(Acquire);
        loop {
            if cur & CLOSED != 0 {
                return Err(TryAcquireError::Closed);
            }
            if cur >> SHIFT < n {
                return Err(TryAcquireError::NoPermits);
            }
            // Acquire: pairs with the Release of the `release` that put the
            // permits there, so what the releaser did is visible (a Mutex's
            // data).
            match self
                .state
                .compare_exchange_weak(cur, cur - (n << SHIFT), Acquire, Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Returns `n` permits: to the word with one CAS if nobody waits,
    /// otherwise to the waiters under the lock.
    #[inline]
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut cur = self.state.load(Relaxed);
        loop {
            if cur & HAS_WAITERS != 0 {
                self.add_permits_locked(n, lock(&self.waiters));
                return;
            }
            let next = self.checked_add(cur, n);
            // Release: publishes what the holder did before releasing.
            match self
                .state
                .compare_exchange_weak(cur, next, Release, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    #[inline]
    fn checked_add(&self, cur: usize, n: usize) -> usize {
        let total = (cur >> SHIFT).checked_add(n);
        match total {
            Some(t) if t <= Self::MAX_PERMITS => cur + (n << SHIFT),
            _ => overflow(n),
        }
    }

    /// Assigns `rem` permits to the front waiters, popping (and waking,
    /// after the lock is released) those that have all they need; what is
    /// left goes to the word once the list is empty, clearing
    /// `HAS_WAITERS`. Called with `rem == 0` after a removal, to clear the
    /// bit if the list emptied.
    fn add_permits_locked<'a>(&'a self, mut rem: usize, mut list: MutexGuard<'a, WaitList<Need>>) {
        loop {
            let mut wakers = WakeList::new();
            while rem > 0 && !wakers.is_full() {
                let Some(node) = list.front() else { break };
                // SAFETY: a linked node is live and we hold the lock (module
                // protocol).
                let waiter = unsafe { &mut *node.as_ptr() };
                let give = rem.min(waiter.value.remaining);
                waiter.value.remaining -= give;
                rem -= give;
                if waiter.value.remaining == 0 {
                    list.pop_front();
                    if let Some(w) = waiter.waker.take() {
                        wakers.push(w);
                    }
                    // Release, and the last access to the node: see `Need`.
                    waiter.value.granted.store(true, Release);
                }
            }
            let done = rem == 0 || list.is_empty();
            if list.is_empty() {
                let mut cur = self.state.load(Relaxed);
                loop {
                    let next = self.checked_add(cur, rem) & !HAS_WAITERS;
                    // Release: as in `release`.
                    match self
                        .state
                        .compare_exchange_weak(cur, next, Release, Relaxed)
                    {
                        Ok(_) => break,
                        Err(actual) => cur = actual,
                    }
                }
            }
            drop(list);
            wakers.wake_all();
            if done {
                return;
            }
            list = lock(&self.waiters);
        }
    }
}

/// The wait for permits: tokio's `Acquire`, with the scope check and the
/// hand-back rule of the [module protocol](self).
pub(crate) struct Acquire<'a> {
    sem: &'a Semaphore,
    /// Linked into `sem.waiters` while waiting (see [`Need`]). Touched only
    /// under the lock while `linked`, except for `granted`.
    node: Waiter<Need>,
    needed: usize,
    /// True from linking until the outcome is taken: the node may be in the
    /// list, or popped holding permits this future owes back if dropped.
    linked: bool,
    /// What the task dump shows while this waits (the primitive built on
    /// the semaphore).
    kind: SyncOp,
}

// SAFETY: `node` is only touched under the semaphore's lock while another
// thread can reach it; the future itself holds only a shared reference to
// the (Sync) semaphore.
unsafe impl Send for Acquire<'_> {}
// SAFETY: `&Acquire` exposes nothing.
unsafe impl Sync for Acquire<'_> {}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("needed", &self.needed)
            .field("linked", &self.linked)
            .finish_non_exhaustive()
    }
}

impl Acquire<'_> {
    /// Shows the wait in the task dump as `kind` (a `Mutex`, say).
    pub(crate) fn waiting_as(mut self, kind: SyncOp) -> Self {
        self.kind = kind;
        self
    }

    /// The hand-back rule: unlinks the node and releases what it was given.
    /// After it the future is as new (so a later poll starts over).
    fn leave(&mut self) {
        if !self.linked {
            return;
        }
        let mut list = lock(&self.sem.waiters);
        // SAFETY: the node is live (it is ours), only ever linked into this
        // semaphore's list, and we hold its lock.
        unsafe { list.remove(NonNull::from(&mut self.node)) };
        let assigned = self.needed - self.node.value.remaining;
        self.node.value.remaining = self.needed;
        self.node.value.granted.store(false, Relaxed);
        self.linked = false;
        self.sem.add_permits_locked(assigned, list);
    }

    /// Slow path: takes what is there and links the node, or succeeds if
    /// the permits appeared meanwhile.
    fn link(&mut self, waker: &Waker) -> Poll<Result<(), AcquireError>> {
        let mut list = lock(&self.sem.waiters);
        let mut cur = self.sem.state.load(Acquire);
        loop {
            if cur & CLOSED != 0 {
                return Poll::Ready(Err(AcquireError::Closed));
            }
            let available = cur >> SHIFT;
            let (next, outcome) = if available >= self.needed {
                (cur - (self.needed << SHIFT), Poll::Ready(Ok(())))
            } else {
                // Take them all and mark the list non-empty in one step, so
                // a release racing with us either came first (we took its
                // permits) or sees the bit and waits for our lock.
                ((cur & CLOSED) | HAS_WAITERS, Poll::Pending)
            };
            // Acquire: as in `try_acquire_raw`.
            match self
                .sem
                .state
                .compare_exchange_weak(cur, next, AcqRel, Acquire)
            {
                Ok(_) if outcome.is_ready() => return outcome,
                Ok(_) => {
                    self.node.value.remaining = self.needed - available;
                    self.node.value.granted.store(false, Relaxed);
                    break;
                }
                Err(actual) => cur = actual,
            }
        }
        self.node.set_waker(waker);
        // SAFETY: the node is pinned inside this future (which unlinks it in
        // `Drop`), not linked anywhere, and we hold the lock.
        unsafe { list.push_back(NonNull::from(&mut self.node)) };
        self.linked = true;
        Poll::Pending
    }
}

impl Future for Acquire<'_> {
    type Output = Result<(), AcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the node is never moved out of the future; `&mut` access
        // is only used in place.
        let this = unsafe { self.get_unchecked_mut() };
        let restore = ready!(coop::poll_proceed(cx));
        if let Some(c) = cancel::poll_cancelled(None, false) {
            this.leave();
            restore.made_progress();
            return Poll::Ready(Err(AcquireError::Cancelled(c)));
        }
        if this.linked {
            // Without the lock: the popper's last word (see `Need`).
            if this.node.value.granted.load(Acquire) {
                this.linked = false;
                restore.made_progress();
                return Poll::Ready(Ok(()));
            }
            let list = lock(&this.sem.waiters);
            if this.node.is_queued() {
                this.node.set_waker(cx.waker());
                dump::awaiting(cx.waker(), Awaiting::Sync(this.kind));
                return Poll::Pending;
            }
            // Popped: with all its permits, or by `close`.
            this.linked = false;
            restore.made_progress();
            if this.node.value.remaining == 0 {
                return Poll::Ready(Ok(()));
            }
            let assigned = this.needed - this.node.value.remaining;
            this.node.value.remaining = this.needed;
            this.sem.add_permits_locked(assigned, list);
            return Poll::Ready(Err(AcquireError::Closed));
        }
        match this.sem.try_acquire_raw(this.needed) {
            Ok(()) => {
                restore.made_progress();
                return Poll::Ready(Ok(()));
            }
            Err(TryAcquireError::Closed) => {
                restore.made_progress();
                return Poll::Ready(Err(AcquireError::Closed));
            }
            Err(TryAcquireError::NoPermits) => {}
        }
        // About to wait: arm the scope's deadline timer (no node is
        // made: see "Waking a cancelled waiter" in `semaphore.rs`).
        if let Some(c) = cancel::poll_cancelled(None, true) {
            restore.made_progress();
            return Poll::Ready(Err(AcquireError::Cancelled(c)));
        }
        let out = this.link(cx.waker());
        if out.is_ready() {
            restore.made_progress();
        } else {
            dump::awaiting(cx.waker(), Awaiting::Sync(this.kind));
        }
        out
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Permits taken from a [`Semaphore`], released when dropped.
#[must_use = "the permits are released at once if the permit is dropped"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    permits: u32,
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

impl<'a> SemaphorePermit<'a> {
    /// Keeps the permits taken from the semaphore for good.
    pub fn forget(mut self) {
        self.permits = 0;
    }

    /// Adds `other`'s permits to this one.
    ///
    /// # Panics
    /// If they come from different semaphores.
    pub fn merge(&mut self, mut other: SemaphorePermit<'a>) {
        assert!(
            std::ptr::eq(self.sem, other.sem),
            "merging permits of different semaphores"
        );
        self.permits += other.permits;
        other.permits = 0;
    }

    /// Splits `n` permits off into a new permit; `None` if it holds fewer.
    pub fn split(&mut self, n: usize) -> Option<SemaphorePermit<'a>> {
        let n = u32::try_from(n).ok()?;
        if n > self.permits {
            return None;
        }
        self.permits -= n;
        Some(SemaphorePermit {
            sem: self.sem,
            permits: n,
        })
    }

    /// How many permits it holds.
    pub fn num_permits(&self) -> usize {
        self.permits as usize
    }
}

/// The panic of a release past [`Semaphore::MAX_PERMITS`], out of line so
/// the inlined release stays small.
#[cold]
#[inline(never)]
fn overflow(n: usize) -> ! {
    panic!(
        "adding {n} permits would overflow the semaphore's maximum of {}",
        Semaphore::MAX_PERMITS
    )
}

impl Drop for SemaphorePermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.sem.release(self.permits as usize);
    }
}

/// Permits taken from an `Arc<Semaphore>`, released when dropped.
#[must_use = "the permits are released at once if the permit is dropped"]
pub struct OwnedSemaphorePermit {
    sem: StdArc<Semaphore>,
    permits: u32,
}

impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

impl OwnedSemaphorePermit {
    /// Keeps the permits taken from the semaphore for good.
    pub fn forget(mut self) {
        self.permits = 0;
    }

    /// Adds `other`'s permits to this one.
    ///
    /// # Panics
    /// If they come from different semaphores.
    pub fn merge(&mut self, mut other: OwnedSemaphorePermit) {
        assert!(
            StdArc::ptr_eq(&self.sem, &other.sem),
            "merging permits of different semaphores"
        );
        self.permits += other.permits;
        other.permits = 0;
    }

    /// Splits `n` permits off into a new permit; `None` if it holds fewer.
    pub fn split(&mut self, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n).ok()?;
        if n > self.permits {
            return None;
        }
        self.permits -= n;
        Some(OwnedSemaphorePermit {
            sem: self.sem.clone(),
            permits: n,
        })
    }

    /// How many permits it holds.
    pub fn num_permits(&self) -> usize {
        self.permits as usize
    }

    /// The semaphore it came from.
    pub fn semaphore(&self) -> &StdArc<Semaphore> {
        &self.sem
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        self.sem.release(self.permits as usize);
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::{
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use super::*;

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn partial_assignment_is_handed_back_when_the_waiter_leaves() {
        let sem = Semaphore::new(2);
        {
            let mut big = pin!(sem.acquire_raw(5));
            assert!(poll_once(big.as_mut()).is_pending());
            assert_eq!(sem.available_permits(), 0, "the waiter took the 2");
            sem.release(2);
            assert_eq!(sem.available_permits(), 0, "assigned to the waiter");
            assert_eq!(lock(&sem.waiters).len(), 1);
        }
        assert_eq!(sem.available_permits(), 4, "all 4 handed back on drop");
        assert!(lock(&sem.waiters).is_empty());
        assert_eq!(sem.state.load(Relaxed) & HAS_WAITERS, 0);
    }

    #[test]
    fn waiters_are_served_in_order_and_newcomers_do_not_overtake() {
        let sem = Semaphore::new(0);
        let mut a = pin!(sem.acquire_raw(2));
        let mut b = pin!(sem.acquire_raw(1));
        assert!(poll_once(a.as_mut()).is_pending());
        assert!(poll_once(b.as_mut()).is_pending());
        sem.release(1);
        assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
        assert!(poll_once(b.as_mut()).is_pending(), "b waits behind a");
        sem.release(2);
        assert_eq!(poll_once(a.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(poll_once(b.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(sem.available_permits(), 0);
        sem.release(3);
        assert_eq!(sem.available_permits(), 3);
    }

    #[test]
    fn close_fails_waiters_and_keeps_the_count() {
        let sem = Semaphore::new(1);
        let mut a = pin!(sem.acquire_raw(3));
        assert!(poll_once(a.as_mut()).is_pending());
        sem.close();
        assert_eq!(
            poll_once(a.as_mut()),
            Poll::Ready(Err(AcquireError::Closed))
        );
        assert_eq!(sem.available_permits(), 1, "its one permit came back");
        assert_eq!(
            poll_once(a.as_mut()),
            Poll::Ready(Err(AcquireError::Closed))
        );
        assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::Closed);
        assert!(sem.is_closed());
    }

    #[test]
    fn more_waiters_than_a_wake_batch_are_all_served() {
        let sem = Semaphore::new(0);
        let mut futs: Vec<Pin<Box<Acquire<'_>>>> = (0..WAKE_BATCH * 2 + 3)
            .map(|_| Box::pin(sem.acquire_raw(1)))
            .collect();
        for f in &mut futs {
            assert!(poll_once(f.as_mut()).is_pending());
        }
        sem.release(futs.len() + 1);
        for f in &mut futs {
            assert_eq!(poll_once(f.as_mut()), Poll::Ready(Ok(())));
        }
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn permits_split_merge_forget() {
        let sem = Semaphore::new(10);
        let mut p = sem.try_acquire_many(4).unwrap();
        let q = p.split(1).unwrap();
        assert!(p.split(9).is_none());
        assert_eq!((p.num_permits(), q.num_permits()), (3, 1));
        p.merge(q);
        assert_eq!(p.num_permits(), 4);
        assert_eq!(sem.forget_permits(100), 6);
        p.forget();
        assert_eq!(sem.available_permits(), 0);
        sem.add_permits(2);
        assert_eq!(sem.available_permits(), 2);
    }

    #[test]
    #[should_panic(expected = "overflow")]
    fn adding_past_the_maximum_panics() {
        let sem = Semaphore::new(Semaphore::MAX_PERMITS);
        sem.add_permits(1);
    }
}
