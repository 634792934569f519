//! A bulkhead: at most `max_concurrent` calls at once, and at most
//! `max_waiting` callers queued for a slot.
//!
//! # Design
//!
//! * **The slots** are a counter of free slots. Without the `weft` feature it
//!   is this crate's own `AtomicU32` and the bulkhead is **try-acquire only**:
//!   with no runtime there is nothing to wait on that would not block a
//!   thread, so a full bulkhead refuses at once (`max_waiting` must then be
//!   0). With the `weft` feature the counter *is* a
//!   [`weft::sync::Semaphore`]: its lock-free fast path (one CAS to take,
//!   one to give back while nobody waits) is the bulkhead's, and its FIFO
//!   wait list, cancellation hand-back and scope checks are the bulkhead's
//!   queue — reused, not duplicated.
//! * **The queue bound** is a second counter, `waiting`, CAS-incremented
//!   only up to `max_waiting` by a caller about to wait and decremented by a
//!   guard when it stops waiting, however that happens (got a slot, timed
//!   out, cancelled, dropped).
//! * **Permits are RAII**: a [`BulkheadPermit`] gives its slot back when
//!   dropped — on success, on error, on panic, or when the future holding it
//!   is dropped by a cancellation. A waiter cancelled while queued gives back
//!   whatever the semaphore had already handed it. So no slot leaks
//!   (`tests/bulkhead.rs` and `tests/weft_bulkhead.rs` count them).
//! * **Leaving a wait** (weft): the caller's scope is checked first (a
//!   cancelled caller takes nothing); the wait ends at the scope's deadline
//!   with [`BulkheadError::DeadlineExceeded`], at the configured maximum wait
//!   with [`BulkheadError::MaxWait`], and on any other cancellation with
//!   [`BulkheadError::Cancelled`].

use std::{fmt, sync::Arc, time::Duration};

use super::{emit, CachePadded, ConfigError, EventKind, Listener, Listeners, Refusal};
use crate::{
    caller::{check_scope, CallerEnd},
    sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
};

/// The largest `max_concurrent` and `max_waiting`.
const MAX_SLOTS: u32 = u32::MAX >> 3;

/// Why a bulkhead did not admit a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadError {
    /// Every slot is taken and the queue is full (or waiting is off).
    Full,
    /// Waited the configured maximum without getting a slot.
    MaxWait,
    /// The caller's deadline passed while it waited (or before it asked).
    DeadlineExceeded,
    /// The caller's scope was cancelled (before asking or while waiting).
    Cancelled,
}

impl fmt::Display for BulkheadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BulkheadError::Full => "bulkhead full",
            BulkheadError::MaxWait => "bulkhead: no slot within the maximum wait",
            BulkheadError::DeadlineExceeded => {
                "bulkhead: the caller's deadline passed while waiting"
            }
            BulkheadError::Cancelled => "bulkhead: the caller was cancelled",
        })
    }
}

impl std::error::Error for BulkheadError {}

impl From<CallerEnd> for BulkheadError {
    fn from(end: CallerEnd) -> Self {
        match end {
            CallerEnd::Cancelled => BulkheadError::Cancelled,
            CallerEnd::DeadlineExceeded => BulkheadError::DeadlineExceeded,
        }
    }
}

/// The free-slot counter; see the module docs.
#[cfg(not(feature = "weft"))]
#[derive(Debug)]
struct Slots(CachePadded<AtomicU32>);

#[cfg(not(feature = "weft"))]
impl Slots {
    fn new(n: u32) -> Slots {
        Slots(CachePadded(AtomicU32::new(n)))
    }

    #[inline]
    fn try_take(&self) -> Option<SlotGuard<'_>> {
        let mut free = self.0.load(Relaxed);
        loop {
            if free == 0 {
                return None;
            }
            // Acquire: the slot's previous holder's work happens-before ours
            // (the bulkhead may guard a resource that is not `Sync`);
            // pairs with the Release of `give`.
            match self.0.compare_exchange_weak(
                free,
                free - 1,
                crate::sync::atomic::Ordering::Acquire,
                Relaxed,
            ) {
                Ok(_) => return Some(SlotGuard(self)),
                Err(actual) => free = actual,
            }
        }
    }

    #[inline]
    fn give(&self) {
        // Release: see `try_take`.
        self.0.fetch_add(1, crate::sync::atomic::Ordering::Release);
    }

    fn free(&self) -> u32 {
        self.0.load(Relaxed)
    }
}

/// A taken slot; gives it back when dropped.
#[cfg(not(feature = "weft"))]
#[derive(Debug)]
struct SlotGuard<'a>(&'a Slots);

#[cfg(not(feature = "weft"))]
impl Drop for SlotGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.give();
    }
}

#[cfg(feature = "weft")]
#[derive(Debug)]
struct Slots(weft::sync::Semaphore);

#[cfg(feature = "weft")]
type SlotGuard<'a> = weft::sync::SemaphorePermit<'a>;

#[cfg(feature = "weft")]
impl Slots {
    fn new(n: u32) -> Slots {
        Slots(weft::sync::Semaphore::new(n as usize))
    }

    #[inline]
    fn try_take(&self) -> Option<SlotGuard<'_>> {
        self.0.try_acquire().ok()
    }

    fn free(&self) -> u32 {
        u32::try_from(self.0.available_permits()).unwrap_or(u32::MAX)
    }
}

/// A concurrency cap with a bounded wait queue; see the [module
/// docs](self).
///
/// ```
/// use weft_resilience::limit::{Bulkhead, BulkheadError};
///
/// let bulkhead = Bulkhead::builder().max_concurrent(2).build()?;
/// let a = bulkhead.try_acquire()?;
/// let _b = bulkhead.try_acquire()?;
/// assert_eq!(bulkhead.try_acquire().unwrap_err(), BulkheadError::Full);
/// drop(a);
/// assert!(bulkhead.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Bulkhead {
    slots: Slots,
    waiting: CachePadded<AtomicU32>,
    rejected: CachePadded<AtomicU64>,
    max_concurrent: u32,
    max_waiting: u32,
    max_wait: Option<Duration>,
    name: Arc<str>,
    listeners: Listeners,
}

/// A slot in a [`Bulkhead`], given back when dropped.
#[must_use = "dropping the permit gives its slot back at once"]
pub struct BulkheadPermit<'a> {
    _slot: SlotGuard<'a>,
}

impl BulkheadPermit<'_> {
    /// Gives up the guard without giving the slot back (the caller now owes
    /// one `release_one`).
    fn forget(self) {
        #[cfg(feature = "weft")]
        self._slot.forget();
        #[cfg(not(feature = "weft"))]
        std::mem::forget(self._slot);
    }
}

/// A slot in a [`Bulkhead`] held through an `Arc` of it (`'static`, to move
/// into a spawned task or a tower future); given back when dropped.
#[must_use = "dropping the permit gives its slot back at once"]
pub struct OwnedBulkheadPermit {
    bulkhead: Arc<Bulkhead>,
}

impl Drop for OwnedBulkheadPermit {
    fn drop(&mut self) {
        self.bulkhead.release_one();
    }
}

impl fmt::Debug for OwnedBulkheadPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedBulkheadPermit")
            .field("bulkhead", &self.bulkhead.name)
            .finish()
    }
}

impl fmt::Debug for BulkheadPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BulkheadPermit")
    }
}

impl Bulkhead {
    /// A builder: 25 concurrent calls (resilience4j's default), no queue.
    pub fn builder() -> BulkheadBuilder {
        BulkheadBuilder {
            max_concurrent: 25,
            max_waiting: 0,
            max_wait: None,
            name: Arc::from("bulkhead"),
            listeners: Listeners::default(),
        }
    }

    /// The bulkhead's name (events carry it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes a slot now, or refuses with [`BulkheadError::Full`] (or the
    /// caller's cancellation).
    #[inline]
    pub fn try_acquire(&self) -> Result<BulkheadPermit<'_>, BulkheadError> {
        check_scope()?;
        self.try_acquire_in_live_scope()
    }

    /// [`try_acquire`](Self::try_acquire) for a caller that has just
    /// checked its scope (the pipeline, once for all its layers).
    #[inline(always)]
    pub(crate) fn try_acquire_in_live_scope(&self) -> Result<BulkheadPermit<'_>, BulkheadError> {
        match self.slots.try_take() {
            Some(slot) => Ok(BulkheadPermit { _slot: slot }),
            None => Err(self.refuse(BulkheadError::Full)),
        }
    }

    /// [`try_acquire`](Self::try_acquire) for a permit that owns an `Arc`
    /// of the bulkhead.
    pub fn try_acquire_owned(self: &Arc<Self>) -> Result<OwnedBulkheadPermit, BulkheadError> {
        self.try_acquire()?.forget();
        Ok(OwnedBulkheadPermit {
            bulkhead: Arc::clone(self),
        })
    }

    /// [`acquire`](Self::acquire) for a permit that owns an `Arc` of the
    /// bulkhead.
    #[cfg(feature = "weft")]
    pub async fn acquire_owned(self: &Arc<Self>) -> Result<OwnedBulkheadPermit, BulkheadError> {
        self.acquire().await?.forget();
        Ok(OwnedBulkheadPermit {
            bulkhead: Arc::clone(self),
        })
    }

    /// Gives back one slot whose guard was forgotten (an owned permit's).
    fn release_one(&self) {
        #[cfg(feature = "weft")]
        self.slots.0.add_permits(1);
        #[cfg(not(feature = "weft"))]
        self.slots.give();
    }

    #[cold]
    fn refuse(&self, error: BulkheadError) -> BulkheadError {
        let refusal = match error {
            BulkheadError::Full => Some(Refusal::Full),
            BulkheadError::MaxWait => Some(Refusal::WaitTooLong),
            BulkheadError::DeadlineExceeded | BulkheadError::Cancelled => None,
        };
        match refusal {
            Some(refusal) => {
                // Relaxed: a statistic. A caller's own cancellation is not
                // counted (see `crate::caller`).
                self.rejected.fetch_add(1, Relaxed);
                emit(&self.listeners.0, &self.name, EventKind::Rejected(refusal))
            }
            None => emit(&self.listeners.0, &self.name, EventKind::WaitCancelled),
        }
        error
    }

    /// Takes a place in the queue if there is one; the guard gives it back.
    #[cfg(feature = "weft")]
    fn enqueue(&self) -> Option<QueuePlace<'_>> {
        let mut waiting = self.waiting.load(Relaxed);
        loop {
            if waiting >= self.max_waiting {
                return None;
            }
            // Relaxed: the count bounds the queue and publishes nothing.
            match self
                .waiting
                .compare_exchange_weak(waiting, waiting + 1, Relaxed, Relaxed)
            {
                Ok(_) => return Some(QueuePlace(&self.waiting)),
                Err(actual) => waiting = actual,
            }
        }
    }

    /// Takes a slot, waiting in the queue for one if every slot is taken and
    /// the queue has room: a weft await point (see the module docs).
    #[cfg(feature = "weft")]
    pub async fn acquire(&self) -> Result<BulkheadPermit<'_>, BulkheadError> {
        check_scope()?;
        if let Some(slot) = self.slots.try_take() {
            return Ok(BulkheadPermit { _slot: slot });
        }
        let Some(_place) = self.enqueue() else {
            return Err(self.refuse(BulkheadError::Full));
        };
        let waited = match self.max_wait {
            Some(max) => match weft::time::timeout(max, self.slots.0.acquire()).await {
                Ok(result) => result,
                Err(_elapsed) => return Err(self.refuse(BulkheadError::MaxWait)),
            },
            None => self.slots.0.acquire().await,
        };
        match waited {
            Ok(slot) => Ok(BulkheadPermit { _slot: slot }),
            Err(weft::sync::error::AcquireError::Cancelled(c)) if c.is_deadline() => {
                Err(self.refuse(BulkheadError::DeadlineExceeded))
            }
            // Cancelled, or closed (the bulkhead never closes its semaphore).
            Err(_) => Err(self.refuse(BulkheadError::Cancelled)),
        }
    }

    /// Whether a full bulkhead queues callers (a wait queue was configured).
    #[cfg(feature = "weft")]
    #[inline]
    pub(crate) fn queues(&self) -> bool {
        self.max_waiting > 0
    }

    /// A snapshot.
    pub fn metrics(&self) -> BulkheadMetrics {
        let free = self.slots.free();
        BulkheadMetrics {
            max_concurrent: self.max_concurrent,
            in_flight: self.max_concurrent.saturating_sub(free),
            available: free,
            waiting: self.waiting.load(Relaxed),
            max_waiting: self.max_waiting,
            rejected: self.rejected.load(Relaxed),
        }
    }
}

/// A place in the queue, given back when the wait ends however it ends.
#[cfg(feature = "weft")]
struct QueuePlace<'a>(&'a AtomicU32);

#[cfg(feature = "weft")]
impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("metrics", &self.metrics())
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a [`Bulkhead`]. `in_flight` and `available` come from one
/// reading of the slot counter; while callers wait, `available` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadMetrics {
    /// The cap.
    pub max_concurrent: u32,
    /// Slots taken.
    pub in_flight: u32,
    /// Slots free.
    pub available: u32,
    /// Callers queued.
    pub waiting: u32,
    /// The queue's bound.
    pub max_waiting: u32,
    /// Calls refused (full, or waited the maximum); a caller's own
    /// cancellation or deadline is not counted.
    pub rejected: u64,
}

/// Builds a [`Bulkhead`].
#[derive(Debug)]
pub struct BulkheadBuilder {
    max_concurrent: u32,
    max_waiting: u32,
    max_wait: Option<Duration>,
    name: Arc<str>,
    listeners: Listeners,
}

impl BulkheadBuilder {
    /// Calls allowed at once.
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.max_concurrent = n;
        self
    }

    /// Callers allowed to wait for a slot (0: refuse at once when full).
    /// Waiting needs the `weft` feature.
    pub fn max_waiting(mut self, n: u32) -> Self {
        self.max_waiting = n;
        self
    }

    /// The longest a caller waits for a slot (`None`: until its deadline).
    pub fn max_wait(mut self, wait: Option<Duration>) -> Self {
        self.max_wait = wait;
        self
    }

    /// The name events carry.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a listener (refusals, cancelled waits).
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Validates and builds the bulkhead.
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        match self.max_concurrent {
            0 => return Err(ConfigError::ZeroLimit),
            n if n > MAX_SLOTS => {
                return Err(ConfigError::LimitTooLarge {
                    value: u64::from(n),
                    max: u64::from(MAX_SLOTS),
                })
            }
            _ => {}
        }
        if self.max_waiting > MAX_SLOTS {
            return Err(ConfigError::QueueTooLarge(u64::from(self.max_waiting)));
        }
        #[cfg(not(feature = "weft"))]
        if self.max_waiting > 0 {
            return Err(ConfigError::WaitingNeedsRuntime);
        }
        if self.max_wait == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroMaxWait);
        }
        Ok(Bulkhead {
            slots: Slots::new(self.max_concurrent),
            waiting: CachePadded(AtomicU32::new(0)),
            rejected: CachePadded(AtomicU64::new(0)),
            max_concurrent: self.max_concurrent,
            max_waiting: self.max_waiting,
            max_wait: self.max_wait,
            name: self.name,
            listeners: self.listeners,
        })
    }
}
