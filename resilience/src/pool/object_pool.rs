//! [`Pool`]: reusable objects, reset in place and handed out behind a guard.

use std::{
    fmt,
    mem::MaybeUninit,
    ops::{Deref, DerefMut},
};

use super::{
    config::{ConfigError, Limits},
    pages::Pages,
    shard::{Here, Linked, Shards, DEFAULT_SHARDS},
};
use crate::sync::{
    atomic::{AtomicU64, Ordering},
    UnsafeCell,
};

/// Capacity when the builder is not told.
const DEFAULT_CAPACITY: usize = 1024;

type CreateHook<T> = Box<dyn Fn() -> T + Send + Sync>;
type ResetHook<T> = Box<dyn Fn(&mut T) + Send + Sync>;

/// One pooled object's home. `value` is initialised from the moment the slot's
/// index is claimed until the pool is dropped.
struct PoolSlot<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    next: UnsafeCell<u32>,
}

impl<T> Default for PoolSlot<T> {
    fn default() -> Self {
        Self {
            value: UnsafeCell::new(MaybeUninit::uninit()),
            next: UnsafeCell::new(0),
        }
    }
}

impl<T> Linked for PoolSlot<T> {
    fn next(&self) -> &UnsafeCell<u32> {
        &self.next
    }
}

/// A bounded, sharded pool of reusable `T`.
///
/// [`get`](Pool::get) hands out an idle object (reset in place when it was
/// returned, so a `Vec` keeps its capacity) or creates one with the create
/// hook; dropping the [`Pooled`] guard runs the reset hook and returns the
/// object to the shard that handed it out.
///
/// # At the bound
///
/// At most `capacity` pooled objects ever exist. When the calling thread's
/// shard has nothing idle, no new object may be created, and no other shard
/// has objects waiting on its remote list:
///
/// - [`try_get`](Pool::try_get) returns `None`;
/// - [`get`](Pool::get) creates an *unpooled* object: a normal guard whose
///   object is dropped, not pooled, when the guard goes
///   ([`Pooled::is_pooled`] is `false`; counted in
///   [`PoolMetrics::unpooled`]).
///
/// Objects idle on another live thread's *local* list are not taken (their
/// owner uses that list without atomics), so a pool can refuse while some of
/// its objects sit idle elsewhere, like Go's per-P `sync.Pool` caches.
///
/// ```
/// use weft_resilience::pool::Pool;
///
/// let pool = Pool::builder(Vec::<u8>::new)
///     .capacity(64)
///     .reset(Vec::clear)
///     .build()
///     .unwrap();
/// let mut buf = pool.get();
/// buf.extend_from_slice(b"hello");
/// drop(buf);
/// let buf = pool.get();
/// assert!(buf.is_empty() && buf.capacity() >= 5);
/// ```
pub struct Pool<T> {
    pages: Pages<PoolSlot<T>>,
    shards: Shards,
    create: CreateHook<T>,
    reset: ResetHook<T>,
    /// Unpooled objects created at the bound.
    unpooled_created: AtomicU64,
    /// Unpooled objects dropped.
    unpooled_dropped: AtomicU64,
    /// Peak of `live`, sampled on the slow path (see [`PoolMetrics::high_water`]).
    high_water: AtomicU64,
}

// SAFETY: the pool owns its `T`s (so sending it sends them: `T: Send`), and
// its hooks are `Send + Sync` by type.
unsafe impl<T: Send> Send for Pool<T> {}
// SAFETY: through `&Pool` a thread gets a `T` exclusively (one guard per slot:
// a slot is on at most one free list, and only its taker holds it) and may
// return it on another thread, so `T: Send` is enough; `T` is never shared.
unsafe impl<T: Send> Sync for Pool<T> {}

/// Builds a [`Pool`]; see [`Pool::builder`].
pub struct PoolBuilder<T> {
    limits: Limits,
    create: CreateHook<T>,
    reset: ResetHook<T>,
}

impl<T> PoolBuilder<T> {
    /// Most pooled objects that may ever exist (default 1024). Must be at
    /// least 1.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.limits.capacity = capacity;
        self
    }

    /// Number of owner shards (default 64). Threads beyond this share one
    /// locked list; see the module docs.
    pub fn shards(mut self, shards: usize) -> Self {
        self.limits.shards = shards;
        self
    }

    /// Clears an object in place when it is returned (default: nothing), e.g.
    /// `Vec::clear`, which keeps the allocation.
    pub fn reset(mut self, reset: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.reset = Box::new(reset);
        self
    }

    /// Checks the configuration and builds the pool.
    ///
    /// # Errors
    /// [`ConfigError`] for a zero or too-large capacity or shard count.
    pub fn build(self) -> Result<Pool<T>, ConfigError> {
        let limits = self.limits.validate()?;
        Ok(Pool {
            pages: Pages::new(limits.capacity),
            shards: Shards::new(limits.shards),
            create: self.create,
            reset: self.reset,
            unpooled_created: AtomicU64::new(0),
            unpooled_dropped: AtomicU64::new(0),
            high_water: AtomicU64::new(0),
        })
    }
}

impl<T> fmt::Debug for PoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why `acquire` could not hand out a pooled object.
enum Refused<T> {
    /// At the bound; nothing was created.
    Empty,
    /// Lost the race for the last fresh index after creating this value.
    Raced(T),
}

impl<T> Pool<T> {
    /// A builder whose create hook makes new objects.
    pub fn builder(create: impl Fn() -> T + Send + Sync + 'static) -> PoolBuilder<T> {
        PoolBuilder {
            limits: Limits {
                capacity: DEFAULT_CAPACITY,
                shards: DEFAULT_SHARDS,
            },
            create: Box::new(create),
            reset: Box::new(|_| {}),
        }
    }

    /// A pooled object, or an unpooled one at the bound (see the type docs).
    #[inline]
    pub fn get(&self) -> Pooled<'_, T> {
        match self.acquire() {
            Ok(pooled) => pooled,
            Err(refused) => {
                let value = match refused {
                    Refused::Empty => (self.create)(),
                    Refused::Raced(value) => value,
                };
                // Relaxed: a counter.
                self.unpooled_created.fetch_add(1, Ordering::Relaxed);
                self.note_peak();
                Pooled {
                    pool: self,
                    inner: Inner::Unpooled(value),
                }
            }
        }
    }

    /// A pooled object, or `None` at the bound (see the type docs).
    #[inline]
    pub fn try_get(&self) -> Option<Pooled<'_, T>> {
        self.acquire().ok()
    }

    #[inline]
    fn acquire(&self) -> Result<Pooled<'_, T>, Refused<T>> {
        let here = self.shards.here();
        if let Some((idx, slot)) = self.shards.take(&here, &self.pages) {
            return Ok(self.guard(idx, slot, &here));
        }
        self.acquire_slow(here)
    }

    #[cold]
    fn acquire_slow(&self, here: Here<'_>) -> Result<Pooled<'_, T>, Refused<T>> {
        if self.pages.has_room() {
            // Create before claiming: if the hook panics no index is lost, and
            // every claimed slot holds a value (which `Drop` relies on).
            let value = (self.create)();
            let Some((idx, slot)) = self.pages.claim() else {
                return Err(Refused::Raced(value));
            };
            // SAFETY: `idx` was just claimed, so no one else can reach the slot.
            slot.value.with_mut(|cell| unsafe { (*cell).write(value) });
            self.shards.record_fresh(&here);
            let guard = self.guard(idx, slot, &here);
            self.note_peak();
            return Ok(guard);
        }
        if self.shards.steal(&here, &self.pages) {
            if let Some((idx, slot)) = self.shards.take(&here, &self.pages) {
                return Ok(self.guard(idx, slot, &here));
            }
        }
        Err(Refused::Empty)
    }

    /// A guard for `idx` (whose slot is `slot`), which the caller just took
    /// off a list or claimed.
    #[inline]
    fn guard<'a>(&'a self, idx: u32, slot: &'a PoolSlot<T>, here: &Here<'_>) -> Pooled<'a, T> {
        Pooled {
            pool: self,
            inner: Inner::Slot {
                slot,
                idx,
                origin: here.origin(),
            },
        }
    }

    /// Folds the current `live` into the high-water mark. Called only when
    /// the pool grows or refuses, so it may cost a pass over the shards.
    #[cold]
    fn note_peak(&self) {
        let live = self.metrics().live;
        // Relaxed: a statistic.
        self.high_water.fetch_max(live, Ordering::Relaxed);
    }

    /// A snapshot of the pool's counters: exact while no thread is using the
    /// pool, approximate (each field read separately) while they are.
    pub fn metrics(&self) -> PoolMetrics {
        let totals = self.shards.totals();
        let created = u64::from(self.pages.claimed());
        let out = totals.taken.saturating_sub(totals.returned);
        // Relaxed: counters.
        let unpooled = self.unpooled_created.load(Ordering::Relaxed);
        let unpooled_out = unpooled.saturating_sub(self.unpooled_dropped.load(Ordering::Relaxed));
        PoolMetrics {
            capacity: u64::from(self.pages.capacity()),
            live: out + unpooled_out,
            idle: created.saturating_sub(out),
            created,
            reused: totals.reused,
            unpooled,
            // Relaxed: a statistic.
            high_water: self.high_water.load(Ordering::Relaxed),
        }
    }
}

impl<T> Drop for Pool<T> {
    fn drop(&mut self) {
        for idx in 0..self.pages.claimed() {
            let slot = self.pages.claimed_slot(idx);
            // SAFETY: every claimed slot holds a value (written right after the
            // claim, dropped only here); `&mut self` means no guard is alive,
            // and a forgotten guard never touches its slot again.
            slot.value
                .with_mut(|cell| unsafe { (*cell).assume_init_drop() });
        }
    }
}

impl<T> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

/// Counters of a [`Pool`], from [`Pool::metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolMetrics {
    /// The configured bound on pooled objects.
    pub capacity: u64,
    /// Objects handed out and not yet returned, pooled and unpooled.
    pub live: u64,
    /// Pooled objects waiting on a free list.
    pub idle: u64,
    /// Pooled objects created (never more than `capacity`).
    pub created: u64,
    /// Hand-outs served by an idle object instead of the create hook.
    pub reused: u64,
    /// Unpooled objects created at the bound by [`Pool::get`].
    pub unpooled: u64,
    /// Peak of `live` (pooled and unpooled objects out at once), sampled
    /// whenever the pool creates an object or refuses one. The pool only does
    /// either when the calling shard has nothing idle, so every peak that made
    /// it grow or overflow is caught and the mark is exact for one thread; a
    /// peak reached purely by reuse on several shards at once can be missed
    /// (tracking it exactly would put a shared counter on the fast path).
    pub high_water: u64,
}

enum Inner<'a, T> {
    Slot {
        slot: &'a PoolSlot<T>,
        idx: u32,
        origin: u32,
    },
    Unpooled(T),
}

/// An object out of a [`Pool`]; dropping it returns the object.
pub struct Pooled<'a, T> {
    pool: &'a Pool<T>,
    inner: Inner<'a, T>,
}

// SAFETY: the guard owns its `T` exclusively (see `Pool`'s `Sync`), and
// dropping it on another thread pushes onto the origin shard's remote list,
// which any thread may do; `&Pool` is `Send` because `Pool: Sync`.
unsafe impl<T: Send> Send for Pooled<'_, T> {}
// SAFETY: `&Pooled` only gives `&T`.
unsafe impl<T: Sync> Sync for Pooled<'_, T> {}

impl<T> Pooled<'_, T> {
    /// Whether the object goes back to the pool on drop (`false` for objects
    /// created past the bound by [`Pool::get`]).
    pub fn is_pooled(&self) -> bool {
        matches!(self.inner, Inner::Slot { .. })
    }
}

impl<T> Deref for Pooled<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match &self.inner {
            Inner::Slot { slot, .. } => slot.value.with(|cell| {
                // SAFETY: the slot's value is initialised and this guard holds
                // the slot exclusively until it is dropped.
                unsafe { (*cell).assume_init_ref() }
            }),
            Inner::Unpooled(value) => value,
        }
    }
}

impl<T> DerefMut for Pooled<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.inner {
            // SAFETY: as in `deref`, and `&mut self` makes the access unique.
            Inner::Slot { slot, .. } => slot
                .value
                .with_mut(|cell| unsafe { (*cell).assume_init_mut() }),
            Inner::Unpooled(value) => value,
        }
    }
}

impl<T> Drop for Pooled<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let pool = self.pool;
        match &self.inner {
            Inner::Slot { slot, idx, origin } => {
                // If the hook panics the slot is never returned; its value is
                // still initialised and `Pool::drop` drops it.
                // SAFETY: as in `deref_mut`: this guard holds the slot.
                slot.value
                    .with_mut(|cell| (pool.reset)(unsafe { (*cell).assume_init_mut() }));
                pool.shards.put(*idx, *slot, *origin, &pool.pages);
            }
            Inner::Unpooled(_) => {
                // Relaxed: a counter. The value drops with `inner`.
                pool.unpooled_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("value", &**self)
            .field("pooled", &self.is_pooled())
            .finish()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::{
        panic::{catch_unwind, AssertUnwindSafe},
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
    };

    use super::*;

    fn _assert_auto_traits() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Pool<Vec<u8>>>();
        send_sync::<Pooled<'static, Vec<u8>>>();
        // A `Cell` is `Send` but not `Sync`: the pool is still `Sync`,
        // because no two threads ever see one object at once.
        send_sync::<Pool<std::cell::Cell<u8>>>();
        send::<Pooled<'static, std::cell::Cell<u8>>>();
    }

    #[test]
    fn panicking_create_hook_loses_no_capacity() {
        let fail = Arc::new(AtomicUsize::new(1));
        let hook = Arc::clone(&fail);
        let pool = Pool::builder(move || {
            if hook.fetch_sub(1, Ordering::SeqCst) == 1 {
                panic!("create failed");
            }
            0u8
        })
        .capacity(1)
        .build()
        .unwrap();
        assert!(catch_unwind(AssertUnwindSafe(|| pool.get())).is_err());
        assert_eq!(pool.metrics().created, 0);
        assert!(pool
            .try_get()
            .expect("the one slot is still free")
            .is_pooled());
    }

    #[test]
    fn panicking_reset_hook_still_drops_the_value_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        struct Noisy(Arc<AtomicUsize>);
        impl Drop for Noisy {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let made = Arc::clone(&drops);
        let pool = Pool::builder(move || Noisy(Arc::clone(&made)))
            .capacity(2)
            .reset(|_| panic!("reset failed"))
            .build()
            .unwrap();
        let guard = pool.get();
        assert!(catch_unwind(AssertUnwindSafe(|| drop(guard))).is_err());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "value dropped before the pool"
        );
        // The first slot is lost for reuse; the second is still free.
        let second = pool.try_get().expect("one slot left");
        assert!(catch_unwind(AssertUnwindSafe(|| drop(second))).is_err());
        assert!(
            pool.try_get().is_none(),
            "a slot whose reset panicked was reused"
        );
        drop(pool);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn raced_creation_becomes_unpooled_not_lost() {
        let pool = Pool::builder(|| 7u32).capacity(1).build().unwrap();
        let first = pool.get();
        let second = pool.get();
        assert!(first.is_pooled());
        assert!(!second.is_pooled());
        assert_eq!(*second, 7);
    }
}
