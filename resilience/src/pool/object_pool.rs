//! [`Pool`]: reusable objects, reset in place and handed out behind a guard.

use std::{
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque},
    fmt,
    marker::PhantomData,
    mem::MaybeUninit,
    ops::{Deref, DerefMut},
    ptr::NonNull,
};

use super::{
    config::{ConfigError, Limits},
    pages::Pages,
    shard::{Here, Linked, Shards, DEFAULT_SHARDS, OVERFLOW},
};
use crate::sync::{
    atomic::{AtomicU64, Ordering},
    UnsafeCell,
};

/// Capacity when the builder is not told.
const DEFAULT_CAPACITY: usize = 1024;

/// Boxed: it runs only on the slow path, when the pool grows or overflows.
type CreateHook<T> = Box<dyn Fn() -> T + Send + Sync>;

/// What a [`Pool`] does to an object when its guard is dropped, before the
/// object goes back on a free list.
///
/// A type parameter of the pool rather than a boxed closure, so the reset is
/// inlined into the return path (it runs on every `get`+`put`). Any
/// `Fn(&mut T)` is a `Reset<T>`, e.g. `Vec::clear`; [`Clear`] and
/// [`NoReset`] are nameable ones, for pools stored in struct fields.
pub trait Reset<T> {
    /// Readies `value` for its next user.
    fn reset(&self, value: &mut T);
}

impl<T, F: Fn(&mut T)> Reset<T> for F {
    #[inline]
    fn reset(&self, value: &mut T) {
        self(value);
    }
}

/// The default [`Reset`]: objects come back as their last user left them.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReset;

impl<T> Reset<T> for NoReset {
    #[inline]
    fn reset(&self, _value: &mut T) {}
}

/// A [`Reset`] that calls `clear()`, which keeps the allocation: for `Vec`,
/// `String`, `VecDeque`, `BinaryHeap`, `HashMap`, `HashSet`, `BTreeMap` and
/// `BTreeSet`. `Pool<Vec<u8>, Clear>` is a nameable buffer pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clear;

macro_rules! clear_impls {
    ($(<$($g:ident),*> $ty:ty;)*) => {$(
        impl<$($g),*> Reset<$ty> for Clear {
            #[inline]
            fn reset(&self, value: &mut $ty) {
                value.clear();
            }
        }
    )*};
}

clear_impls! {
    <> String;
    <E> Vec<E>;
    <E> VecDeque<E>;
    <E> BinaryHeap<E>;
    <K, V, S> HashMap<K, V, S>;
    <K, S> HashSet<K, S>;
    <K, V> BTreeMap<K, V>;
    <K> BTreeSet<K>;
}

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

/// A bounded, sharded pool of reusable `T`, reset with `R` (see [`Reset`]).
///
/// [`get`](Pool::get) hands out an idle object (reset in place when it was
/// returned, so a `Vec` keeps its capacity) or creates one with the create
/// hook; dropping the [`Pooled`] guard runs the reset and returns the
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
///
/// To keep a pool in a struct field, give it a nameable reset:
///
/// ```
/// use weft_resilience::pool::{Clear, Pool};
///
/// struct Buffers {
///     pool: Pool<String, Clear>,
/// }
/// let buffers = Buffers {
///     pool: Pool::builder(String::new).reset_with(Clear).build().unwrap(),
/// };
/// buffers.pool.get().push('x');
/// assert!(buffers.pool.get().is_empty());
/// ```
pub struct Pool<T, R = NoReset> {
    pages: Pages<PoolSlot<T>>,
    shards: Shards,
    create: CreateHook<T>,
    reset: R,
    /// Unpooled objects created at the bound.
    unpooled_created: AtomicU64,
    /// Unpooled objects dropped.
    unpooled_dropped: AtomicU64,
    /// Peak of `live`, sampled on the slow path (see [`PoolMetrics::high_water`]).
    high_water: AtomicU64,
}

// SAFETY: the pool owns its `T`s and its `R` (so sending it sends them:
// `T: Send`, `R: Send`), and its create hook is `Send + Sync` by type.
unsafe impl<T: Send, R: Send> Send for Pool<T, R> {}
// SAFETY: through `&Pool` a thread gets a `T` exclusively (one guard per slot:
// a slot is on at most one free list, and only its taker holds it) and may
// return it on another thread, so `T: Send` is enough; `T` is never shared.
// Any thread dropping a guard calls the reset through `&R`, so `R: Sync`.
unsafe impl<T: Send, R: Sync> Sync for Pool<T, R> {}

/// Builds a [`Pool`]; see [`Pool::builder`].
pub struct PoolBuilder<T, R = NoReset> {
    limits: Limits,
    create: CreateHook<T>,
    reset: R,
}

impl<T, R> PoolBuilder<T, R> {
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
    /// `Vec::clear`, which keeps the allocation. The closure becomes a type
    /// parameter of the pool, so it is inlined into every return.
    pub fn reset<F: Fn(&mut T)>(self, reset: F) -> PoolBuilder<T, F> {
        self.reset_with(reset)
    }

    /// Like [`reset`](Self::reset), for any [`Reset`], such as [`Clear`],
    /// whose type can be named (`Pool<Vec<u8>, Clear>`).
    pub fn reset_with<R2: Reset<T>>(self, reset: R2) -> PoolBuilder<T, R2> {
        PoolBuilder {
            limits: self.limits,
            create: self.create,
            reset,
        }
    }

    /// Checks the configuration and builds the pool.
    ///
    /// # Errors
    /// [`ConfigError`] for a zero or too-large capacity or shard count.
    pub fn build(self) -> Result<Pool<T, R>, ConfigError> {
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

impl<T, R> fmt::Debug for PoolBuilder<T, R> {
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
            reset: NoReset,
        }
    }
}

impl<T, R: Reset<T>> Pool<T, R> {
    /// A pooled object, or an unpooled one at the bound (see the type docs).
    #[inline]
    pub fn get(&self) -> Pooled<'_, T, R> {
        let inner = match self.take_fast() {
            Some(inner) => inner,
            None => self.get_slow(),
        };
        Pooled { pool: self, inner }
    }

    /// A pooled object, or `None` at the bound (see the type docs).
    #[inline]
    pub fn try_get(&self) -> Option<Pooled<'_, T, R>> {
        let inner = match self.take_fast() {
            Some(inner) => inner,
            None => self.acquire_slow().ok()?,
        };
        Some(Pooled { pool: self, inner })
    }

    /// Fast path: one thread-local read and a pop off the owned local list.
    #[inline]
    fn take_fast(&self) -> Option<Inner<'_, T>> {
        let (idx, slot, origin) = self.shards.take_owned(&self.pages)?;
        Some(Inner::slot(slot, idx, origin))
    }

    /// `get` when the fast path missed: the slow take, or an unpooled object.
    #[cold]
    #[inline(never)]
    fn get_slow(&self) -> Inner<'_, T> {
        match self.acquire_slow() {
            Ok(inner) => inner,
            Err(refused) => {
                let value = match refused {
                    Refused::Empty => (self.create)(),
                    Refused::Raced(value) => value,
                };
                // Relaxed: a counter.
                self.unpooled_created.fetch_add(1, Ordering::Relaxed);
                self.note_peak();
                Inner::unpooled(value)
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow(&self) -> Result<Inner<'_, T>, Refused<T>> {
        // Registers the thread on its first call; a reused id may inherit
        // a non-empty local list, so `take` still tries it first.
        let here = self.shards.here();
        if let Some((idx, slot)) = self.shards.take(&here, &self.pages) {
            return Ok(Self::guard(idx, slot, &here));
        }
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
            let guard = Self::guard(idx, slot, &here);
            self.note_peak();
            return Ok(guard);
        }
        if self.shards.steal(&here, &self.pages) {
            if let Some((idx, slot)) = self.shards.take(&here, &self.pages) {
                return Ok(Self::guard(idx, slot, &here));
            }
        }
        Err(Refused::Empty)
    }

    /// A guard for `idx` (whose slot is `slot`), which the caller just took
    /// off a list or claimed.
    #[inline]
    fn guard<'a>(idx: u32, slot: &'a PoolSlot<T>, here: &Here<'_>) -> Inner<'a, T> {
        Inner::slot(slot, idx, here.origin())
    }
}

impl<T, R> Pool<T, R> {
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

impl<T, R> Drop for Pool<T, R> {
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

impl<T, R> fmt::Debug for Pool<T, R> {
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

/// `Inner::place` of an unpooled value: an origin no shard or the overflow
/// list has.
const UNPOOLED: u64 = (OVERFLOW as u64 - 1) << 32;

/// What a guard holds: a slot, or an unpooled value (only made at the bound)
/// in a `Box`.
///
/// Two words, so it is returned in registers from the outlined slow path and
/// the fast path never builds the guard in memory. Earlier layouts cost more
/// than the whole pop: an enum with the value inline was built on the stack
/// and copied, and one with `u32` fields was stored in 4-byte halves and
/// reloaded in 8-byte pieces, which defeats store-to-load forwarding.
struct Inner<'a, T> {
    /// A `&'a PoolSlot<T>`, or, when `place == UNPOOLED`, a pointer from
    /// `Box::<T>::into_raw` that this `Inner` owns.
    ptr: NonNull<()>,
    /// `idx | origin << 32` of the slot, or `UNPOOLED`.
    place: u64,
    _holds: PhantomData<(&'a PoolSlot<T>, Box<T>)>,
}

impl<'a, T> Inner<'a, T> {
    #[inline]
    fn slot(slot: &'a PoolSlot<T>, idx: u32, origin: u32) -> Self {
        debug_assert_ne!(origin, OVERFLOW - 1, "origin clashes with UNPOOLED");
        Self {
            ptr: NonNull::from(slot).cast(),
            place: u64::from(idx) | u64::from(origin) << 32,
            _holds: PhantomData,
        }
    }

    fn unpooled(value: T) -> Self {
        Self {
            ptr: NonNull::from(Box::leak(Box::new(value))).cast(),
            place: UNPOOLED,
            _holds: PhantomData,
        }
    }

    /// The slot, or `None` for an unpooled value.
    #[inline]
    fn as_slot(&self) -> Option<&'a PoolSlot<T>> {
        if self.place == UNPOOLED {
            return None;
        }
        // SAFETY: `place != UNPOOLED`, so `ptr` came from a `&'a PoolSlot<T>`
        // in `Inner::slot`.
        Some(unsafe { self.ptr.cast::<PoolSlot<T>>().as_ref() })
    }

    /// The unpooled value's box pointer (only when `as_slot` is `None`).
    #[inline]
    fn unpooled_ptr(&self) -> NonNull<T> {
        debug_assert_eq!(self.place, UNPOOLED);
        self.ptr.cast()
    }

    /// The slot's index (only when `as_slot` is `Some`).
    #[inline]
    fn idx(&self) -> u32 {
        self.place as u32
    }

    /// The shard the slot goes back to (only when `as_slot` is `Some`).
    #[inline]
    fn origin(&self) -> u32 {
        (self.place >> 32) as u32
    }
}

/// An object out of a [`Pool`]; dropping it returns the object.
pub struct Pooled<'a, T, R: Reset<T> = NoReset> {
    pool: &'a Pool<T, R>,
    inner: Inner<'a, T>,
}

// SAFETY: the guard owns its `T` exclusively (see `Pool`'s `Sync`), and
// dropping it on another thread pushes onto the origin shard's remote list,
// which any thread may do, and resets through `&R` (hence `R: Sync`); `&Pool`
// is `Send` because `Pool: Sync`.
unsafe impl<T: Send, R: Reset<T> + Sync> Send for Pooled<'_, T, R> {}
// SAFETY: `&Pooled` only gives `&T`.
unsafe impl<T: Sync, R: Reset<T> + Sync> Sync for Pooled<'_, T, R> {}

impl<T, R: Reset<T>> Pooled<'_, T, R> {
    /// Whether the object goes back to the pool on drop (`false` for objects
    /// created past the bound by [`Pool::get`]).
    pub fn is_pooled(&self) -> bool {
        self.inner.as_slot().is_some()
    }

    /// `drop` of an unpooled guard.
    #[cold]
    #[inline(never)]
    fn drop_unpooled(&mut self) {
        // SAFETY: the guard is unpooled, so the pointer came from
        // `Box::leak` in `Inner::unpooled` and is owned by this guard; this is
        // its `drop`, so nothing uses the pointer again.
        drop(unsafe { Box::from_raw(self.inner.unpooled_ptr().as_ptr()) });
        // Relaxed: a counter.
        self.pool.unpooled_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl<T, R: Reset<T>> Deref for Pooled<'_, T, R> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self.inner.as_slot() {
            Some(slot) => slot.value.with(|cell| {
                // SAFETY: the slot's value is initialised and this guard holds
                // the slot exclusively until it is dropped.
                unsafe { (*cell).assume_init_ref() }
            }),
            // SAFETY: an unpooled guard owns its boxed value until dropped.
            None => unsafe { self.inner.unpooled_ptr().as_ref() },
        }
    }
}

impl<T, R: Reset<T>> DerefMut for Pooled<'_, T, R> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match self.inner.as_slot() {
            // SAFETY: as in `deref`, and `&mut self` makes the access unique.
            Some(slot) => slot
                .value
                .with_mut(|cell| unsafe { (*cell).assume_init_mut() }),
            // SAFETY: as in `deref`, and `&mut self` makes the access unique.
            None => unsafe { self.inner.unpooled_ptr().as_mut() },
        }
    }
}

impl<T, R: Reset<T>> Drop for Pooled<'_, T, R> {
    #[inline]
    fn drop(&mut self) {
        let pool = self.pool;
        match self.inner.as_slot() {
            Some(slot) => {
                // If the hook panics the slot is never returned; its value is
                // still initialised and `Pool::drop` drops it.
                // SAFETY: as in `deref_mut`: this guard holds the slot.
                slot.value
                    .with_mut(|cell| pool.reset.reset(unsafe { (*cell).assume_init_mut() }));
                pool.shards
                    .put(self.inner.idx(), slot, self.inner.origin(), &pool.pages);
            }
            None => self.drop_unpooled(),
        }
    }
}

impl<T: fmt::Debug, R: Reset<T>> fmt::Debug for Pooled<'_, T, R> {
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
    fn guard_state_is_two_words() {
        // The fast path relies on this to return in registers (see `Inner`).
        assert_eq!(
            std::mem::size_of::<Inner<'static, Vec<u8>>>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn clear_keeps_capacity_and_unpooled_values_drop() {
        let pool: Pool<Vec<u8>, Clear> = Pool::builder(Vec::new)
            .capacity(1)
            .reset_with(Clear)
            .build()
            .unwrap();
        let mut first = pool.get();
        first.extend_from_slice(b"abc");
        let mut second = pool.get();
        assert!(!second.is_pooled());
        second.push(1);
        assert_eq!(*second, [1]);
        drop(second);
        drop(first);
        let again = pool.get();
        assert!(again.is_empty() && again.capacity() >= 3);
        let metrics = pool.metrics();
        assert_eq!((metrics.unpooled, metrics.live, metrics.reused), (1, 1, 1));
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
