//! [`SlotMap`]: concurrent keyed storage with generational keys and tombstones.

use std::{fmt, marker::PhantomData, mem::MaybeUninit, ops::Deref};

use super::{
    config::{ConfigError, Limits},
    pages::Pages,
    shard::{Linked, Shards, DEFAULT_SHARDS},
    slot_word::{AcquireRead, MarkRemoved, Release, SlotWord},
};
use crate::sync::{
    atomic::{AtomicU64, Ordering},
    UnsafeCell,
};

/// Capacity when the builder is not told.
const DEFAULT_CAPACITY: usize = 4096;

/// A key returned by [`SlotMap::insert`]: a slot index and the generation the
/// value was inserted under. A key outlives its value harmlessly: once the
/// value is removed the slot's generation moves on and the key reaches nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// The key as one integer (generation in the high half), e.g. for a wire
    /// format or an `AtomicU64`.
    pub fn to_bits(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.index)
    }

    /// The inverse of [`to_bits`](Key::to_bits). Any `u64` is a valid key; one
    /// that was never handed out simply finds nothing.
    pub fn from_bits(bits: u64) -> Self {
        Self {
            index: bits as u32,
            generation: (bits >> 32) as u32,
        }
    }

    /// The slot index.
    pub fn index(self) -> u32 {
        self.index
    }

    /// The slot generation the key was issued under.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}v{})", self.index, self.generation)
    }
}

struct MapSlot<T> {
    word: SlotWord,
    /// Initialised while the word is `OCCUPIED` or `REMOVED`.
    value: UnsafeCell<MaybeUninit<T>>,
    /// Shard that handed the slot out; written by the inserter, read by the
    /// thread that empties it (ordered by the word's Release/Acquire).
    origin: UnsafeCell<u32>,
    next: UnsafeCell<u32>,
}

impl<T> Default for MapSlot<T> {
    fn default() -> Self {
        Self {
            word: SlotWord::default(),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            origin: UnsafeCell::new(0),
            next: UnsafeCell::new(0),
        }
    }
}

impl<T> Linked for MapSlot<T> {
    fn next(&self) -> &UnsafeCell<u32> {
        &self.next
    }
}

/// The value could not be inserted: every slot is occupied or a tombstone.
/// Holds the value back.
#[derive(Debug, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("slot map is full")
    }
}

impl<T: fmt::Debug> std::error::Error for Full<T> {}

/// Concurrent keyed storage with generational keys.
///
/// All methods take `&self`. [`get`](SlotMap::get) returns a [`Ref`] guard;
/// [`remove`](SlotMap::remove) turns the slot into a *tombstone*: no new
/// reader gets in, but the value is dropped only when the last guard goes,
/// and only then may the slot be reused, under a new generation. A key from
/// before the reuse never reaches the new value.
///
/// ```
/// use weft_resilience::pool::SlotMap;
///
/// let map = SlotMap::with_capacity(16).unwrap();
/// let key = map.insert("a".to_string()).unwrap();
/// let guard = map.get(key).unwrap();
/// assert!(map.remove(key));
/// assert_eq!(*guard, "a"); // still readable: a tombstone until the guard goes
/// assert!(map.get(key).is_none());
/// drop(guard);
/// let again = map.insert("b".to_string()).unwrap();
/// assert_eq!(again.index(), key.index());
/// assert!(map.get(key).is_none()); // stale key, reused slot
/// ```
///
/// A `SlotMap` of values that cannot be shared across threads is not `Sync`:
///
/// ```compile_fail
/// fn sync<T: Sync>(_: &T) {}
/// let map = weft_resilience::pool::SlotMap::<std::rc::Rc<u8>>::with_capacity(1).unwrap();
/// sync(&map);
/// ```
pub struct SlotMap<T> {
    pages: Pages<MapSlot<T>>,
    shards: Shards,
    /// Successful removes.
    removed: AtomicU64,
    /// Tombstones emptied by their last reader.
    freed: AtomicU64,
    /// Peak of slots in use, sampled on the slow path.
    high_water: AtomicU64,
}

// SAFETY: the map owns its values; any thread may drop one (`T: Send`).
unsafe impl<T: Send> Send for SlotMap<T> {}
// SAFETY: guards on several threads read one value at once (`T: Sync`), and
// the last of them drops it on whichever thread it is (`T: Send`).
unsafe impl<T: Send + Sync> Sync for SlotMap<T> {}

/// Builds a [`SlotMap`]; see [`SlotMap::builder`].
pub struct SlotMapBuilder<T> {
    limits: Limits,
    _values: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for SlotMapBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotMapBuilder")
            .field("limits", &self.limits)
            .finish()
    }
}

impl<T> SlotMapBuilder<T> {
    /// Most slots (values plus tombstones) at once (default 4096); at least 1.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.limits.capacity = capacity;
        self
    }

    /// Number of owner shards (default 64).
    pub fn shards(mut self, shards: usize) -> Self {
        self.limits.shards = shards;
        self
    }

    /// Checks the configuration and builds the map.
    ///
    /// # Errors
    /// [`ConfigError`] for a zero or too-large capacity or shard count.
    pub fn build(self) -> Result<SlotMap<T>, ConfigError> {
        let limits = self.limits.validate()?;
        Ok(SlotMap {
            pages: Pages::new(limits.capacity),
            shards: Shards::new(limits.shards),
            removed: AtomicU64::new(0),
            freed: AtomicU64::new(0),
            high_water: AtomicU64::new(0),
        })
    }
}

impl<T> SlotMap<T> {
    /// A builder with the default capacity and shard count.
    pub fn builder() -> SlotMapBuilder<T> {
        SlotMapBuilder {
            limits: Limits {
                capacity: DEFAULT_CAPACITY,
                shards: DEFAULT_SHARDS,
            },
            _values: PhantomData,
        }
    }

    /// A map of at most `capacity` slots.
    ///
    /// # Errors
    /// As [`SlotMapBuilder::build`].
    pub fn with_capacity(capacity: usize) -> Result<Self, ConfigError> {
        Self::builder().capacity(capacity).build()
    }

    /// Stores `value` in a free slot and returns its key.
    ///
    /// # Errors
    /// [`Full`] with the value when every slot holds a value or a tombstone
    /// (or the only free slots wait on another live thread's local list).
    pub fn insert(&self, value: T) -> Result<Key, Full<T>> {
        let here = self.shards.here();
        let mut fresh = false;
        let (idx, slot) = match self.shards.take(&here, &self.pages) {
            Some(taken) => taken,
            None => match self.pages.claim() {
                Some(claimed) => {
                    self.shards.record_fresh(&here);
                    fresh = true;
                    claimed
                }
                None => match self.shards.steal(&here, &self.pages) {
                    true => match self.shards.take(&here, &self.pages) {
                        Some(taken) => taken,
                        None => return Err(self.refuse(value)),
                    },
                    false => return Err(self.refuse(value)),
                },
            },
        };
        let generation = slot.word.free_generation();
        // SAFETY: the slot is `FREE` and came off a free list (or was
        // claimed), so this thread is its only holder: readers and removers
        // reject `FREE` slots without touching `value` or `origin`.
        slot.value.with_mut(|cell| unsafe { (*cell).write(value) });
        // SAFETY: as above.
        slot.origin
            .with_mut(|origin| unsafe { *origin = here.origin() });
        slot.word.publish(generation);
        if fresh {
            self.note_peak();
        }
        Ok(Key {
            index: idx,
            generation,
        })
    }

    #[cold]
    fn refuse(&self, value: T) -> Full<T> {
        self.note_peak();
        Full(value)
    }

    /// Folds the slots in use into the high-water mark; slow path only.
    #[cold]
    fn note_peak(&self) {
        let m = self.metrics();
        // Relaxed: a statistic.
        self.high_water
            .fetch_max(m.len + m.tombstones, Ordering::Relaxed);
    }

    /// A guard on the value under `key`, or `None` if the key is stale, the
    /// value removed (even while other guards still hold it), or the key
    /// never issued.
    ///
    /// # Panics
    /// If one value already has `2^30 - 1` guards.
    pub fn get(&self, key: Key) -> Option<Ref<'_, T>> {
        let slot = self.pages.get(key.index)?;
        match slot.word.acquire_read(key.generation) {
            AcquireRead::Acquired => Some(Ref {
                map: self,
                slot,
                key,
            }),
            AcquireRead::Stale => None,
        }
    }

    /// Whether `key` reaches a value.
    pub fn contains(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    /// Removes the value under `key`; `true` if this call removed it. The
    /// value is dropped now if no guard holds it, else when the last guard
    /// goes; until then the slot is a tombstone.
    ///
    /// # Panics
    /// As [`get`](SlotMap::get).
    pub fn remove(&self, key: Key) -> bool {
        let Some(slot) = self.pages.get(key.index) else {
            return false;
        };
        match slot.word.mark_removed(key.generation) {
            MarkRemoved::Marked => {
                // Relaxed: a counter.
                self.removed.fetch_add(1, Ordering::Relaxed);
                self.release(key.index, slot);
                true
            }
            MarkRemoved::Stale => false,
        }
    }

    /// Drops one reference to slot `idx`, emptying it if it was the last of a
    /// tombstone.
    fn release(&self, idx: u32, slot: &MapSlot<T>) {
        if slot.word.release() == Release::LastOfTombstone {
            // SAFETY: `LastOfTombstone` made the slot `FREE` with no readers
            // and it is on no list: this thread is its only holder, and the
            // value is initialised (it was `REMOVED`).
            let origin = slot.origin.with(|origin| unsafe { *origin });
            // Counted before the drop so a panicking `T::drop` still leaves
            // the tombstone count right.
            // Relaxed: a counter.
            self.freed.fetch_add(1, Ordering::Relaxed);
            // A panic in `T::drop` leaks the slot (it is `FREE` but on no
            // list): never a double drop, never a reuse of a half-dropped value.
            // SAFETY: as above.
            slot.value
                .with_mut(|cell| unsafe { (*cell).assume_init_drop() });
            self.shards.put(idx, slot, origin, &self.pages);
        }
    }

    /// A snapshot of the map's counters: exact while no thread is using the
    /// map, approximate while they are.
    pub fn metrics(&self) -> SlotMapMetrics {
        let totals = self.shards.totals();
        // Relaxed: counters.
        let removed = self.removed.load(Ordering::Relaxed);
        let freed = self.freed.load(Ordering::Relaxed);
        SlotMapMetrics {
            capacity: u64::from(self.pages.capacity()),
            len: totals.taken.saturating_sub(removed),
            tombstones: removed.saturating_sub(freed),
            slots: u64::from(self.pages.claimed()),
            reused: totals.reused,
            // Relaxed: a statistic.
            high_water: self.high_water.load(Ordering::Relaxed),
        }
    }
}

impl<T> Drop for SlotMap<T> {
    fn drop(&mut self) {
        for idx in 0..self.pages.claimed() {
            // A claimed index may lack a page only if its claimer is mid-insert,
            // impossible under `&mut self`; `get` keeps this safe regardless.
            let Some(slot) = self.pages.get(idx) else {
                continue;
            };
            if slot.word.holds_value() {
                // SAFETY: `OCCUPIED` or `REMOVED` means initialised; `&mut self`
                // means no guard is alive (a forgotten one never reads again).
                slot.value
                    .with_mut(|cell| unsafe { (*cell).assume_init_drop() });
            }
        }
    }
}

impl<T> fmt::Debug for SlotMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotMap")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

/// Counters of a [`SlotMap`], from [`SlotMap::metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotMapMetrics {
    /// The configured bound on slots.
    pub capacity: u64,
    /// Values reachable by a key.
    pub len: u64,
    /// Removed values still held by a guard.
    pub tombstones: u64,
    /// Slots ever used (never more than `capacity`).
    pub slots: u64,
    /// Inserts that reused a freed slot.
    pub reused: u64,
    /// Peak of slots in use at once (values and tombstones), sampled when the
    /// map claims a never-used slot or refuses an insert, as for
    /// [`PoolMetrics::high_water`](super::PoolMetrics::high_water).
    pub high_water: u64,
}

/// A shared guard on a [`SlotMap`] value.
pub struct Ref<'a, T> {
    map: &'a SlotMap<T>,
    slot: &'a MapSlot<T>,
    key: Key,
}

// SAFETY: a `Ref` gives `&T` (`T: Sync`) and may drop the value on the thread
// it is dropped on (`T: Send`).
unsafe impl<T: Send + Sync> Send for Ref<'_, T> {}
// SAFETY: `&Ref` gives only `&T`.
unsafe impl<T: Sync> Sync for Ref<'_, T> {}

impl<T> Ref<'_, T> {
    /// The key this guard was obtained with.
    pub fn key(&self) -> Key {
        self.key
    }
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds a reader reference, so the word is
        // `OCCUPIED` or `REMOVED` and the value initialised; values are never
        // written while they have readers, only dropped after the last.
        self.slot
            .value
            .with(|cell| unsafe { (*cell).assume_init_ref() })
    }
}

impl<T> Drop for Ref<'_, T> {
    fn drop(&mut self) {
        self.map.release(self.key.index, self.slot);
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ref")
            .field("key", &self.key)
            .field("value", &**self)
            .finish()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use super::*;

    fn _assert_auto_traits() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<SlotMap<String>>();
        send_sync::<Ref<'static, String>>();
    }

    #[test]
    fn key_bits_round_trip() {
        let key = Key {
            index: 0xdead,
            generation: 0xbeef_0001,
        };
        assert_eq!(Key::from_bits(key.to_bits()), key);
        assert_eq!(key.to_bits(), 0xbeef_0001_0000_dead);
    }

    #[test]
    fn full_map_hands_the_value_back() {
        let map = SlotMap::with_capacity(1).unwrap();
        let key = map.insert(String::from("a")).unwrap();
        assert_eq!(map.insert(String::from("b")), Err(Full(String::from("b"))));
        assert!(map.remove(key));
        assert!(map.insert(String::from("c")).is_ok());
    }

    #[test]
    fn tombstone_holds_its_slot_until_released() {
        let map = SlotMap::with_capacity(1).unwrap();
        let key = map.insert(1u8).unwrap();
        let guard = map.get(key).unwrap();
        assert!(map.remove(key));
        assert!(map.insert(2).is_err(), "a tombstone was reused");
        drop(guard);
        let fresh = map.insert(3).unwrap();
        assert_eq!(fresh.index(), key.index());
        assert_eq!(fresh.generation(), key.generation() + 1);
    }

    #[test]
    fn keys_out_of_range_find_nothing() {
        let map = SlotMap::<u8>::with_capacity(4).unwrap();
        assert!(map.get(Key::from_bits(3)).is_none());
        assert!(map.get(Key::from_bits(u64::MAX)).is_none());
        assert!(!map.remove(Key::from_bits(1 << 40)));
    }
}
