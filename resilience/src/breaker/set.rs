//! Breakers keyed by endpoint, created on demand from one configuration,
//! with a lock-free lookup for keys that exist.
//!
//! # Protocol
//!
//! * **The table** is an open-addressing array of `AtomicPtr<Entry>` (linear
//!   probing, a power-of-two size), published through one `AtomicPtr`. An
//!   entry (hash, key, breaker) is immutable once published.
//! * **Readers** (`breaker`, `get`, `existing`) load the table (Acquire),
//!   probe from the key's hash and compare hash then key: loads only, no
//!   lock and no write, so lookups on many threads do not contend. A null
//!   slot ends the probe (not found); a tombstone is skipped.
//! * **Writers** (a new key, `remove`) hold one mutex. A new entry is stored
//!   into a null or tombstone slot with Release, after its fields are
//!   written, so a reader that sees the pointer sees the entry. When the
//!   table would be over half full (entries and tombstones), the writer
//!   builds a table twice the size (or the same size, to sweep tombstones),
//!   copies the live pointers and publishes it with Release.
//! * **Nothing a reader may hold is freed while the set lives**: replaced
//!   tables and removed entries are *retired* to lists under the writer's
//!   mutex and freed when the set is dropped. So a reader on an old table
//!   still reads valid memory; it may not see a key inserted after it loaded
//!   the table (then it takes the writer's path and finds it there) or may
//!   return a breaker removed meanwhile (the lookup overlapped the removal).
//!   The price: memory of removed entries and old tables (at most twice the
//!   final table) is held until the set goes; sets are per endpoint and
//!   removal is rare.

use std::{
    collections::hash_map::RandomState,
    fmt,
    hash::{BuildHasher, Hash},
    ptr,
    sync::Arc,
};

use super::{Breaker, Config, ErrorsFail};
use crate::sync::{
    atomic::{AtomicPtr, Ordering::Acquire, Ordering::Relaxed, Ordering::Release},
    lock, Mutex,
};

struct Entry<K, C> {
    hash: u64,
    key: K,
    breaker: Arc<Breaker<C>>,
}

struct Table<K, C> {
    slots: Box<[AtomicPtr<Entry<K, C>>]>,
}

/// The tombstone: a removed entry's slot. Never dereferenced.
fn tombstone<K, C>() -> *mut Entry<K, C> {
    ptr::dangling_mut()
}

impl<K, C> Table<K, C> {
    fn new(size: usize) -> Table<K, C> {
        Table {
            slots: (0..size).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }
}

/// What the writer's mutex guards.
struct Writer<K, C> {
    /// Live entries in the current table.
    live: usize,
    /// Tombstones in the current table.
    tombstones: usize,
    retired_tables: Vec<*mut Table<K, C>>,
    retired_entries: Vec<*mut Entry<K, C>>,
}

/// A map of breakers, one per key (an endpoint, a host), created from one
/// [`Config`] the first time a key is asked for. Lookups of existing keys
/// are lock-free and write nothing (see the [module docs](self)).
pub struct BreakerSet<K, C = ErrorsFail> {
    config: Config,
    classifier: C,
    hasher: RandomState,
    table: AtomicPtr<Table<K, C>>,
    writer: Mutex<Writer<K, C>>,
}

// SAFETY: the raw pointers are owned by the set (entries and tables are
// boxed, freed only in `Drop`); what they point to is `K`, `Arc<Breaker<C>>`
// and atomics, shared across threads exactly as a `HashMap<K, Arc<..>>`
// behind a lock would be.
unsafe impl<K: Send + Sync, C: Send + Sync> Send for BreakerSet<K, C> {}
// SAFETY: as above; readers only take shared references to entries.
unsafe impl<K: Send + Sync, C: Send + Sync> Sync for BreakerSet<K, C> {}

impl<K: Hash + Eq + Clone + fmt::Debug> BreakerSet<K, ErrorsFail> {
    /// A set whose breakers count every `Err` as a failure.
    pub fn new(config: Config) -> Self {
        BreakerSet::with_classifier(config, ErrorsFail)
    }
}

const INITIAL_SIZE: usize = 16;

impl<K: Hash + Eq + Clone + fmt::Debug, C: Clone> BreakerSet<K, C> {
    /// A set whose breakers judge results with clones of `classifier`.
    pub fn with_classifier(config: Config, classifier: C) -> Self {
        BreakerSet {
            config,
            classifier,
            hasher: RandomState::new(),
            table: AtomicPtr::new(Box::into_raw(Box::new(Table::new(INITIAL_SIZE)))),
            writer: Mutex::new(Writer {
                live: 0,
                tombstones: 0,
                retired_tables: Vec::new(),
                retired_entries: Vec::new(),
            }),
        }
    }

    fn table(&self) -> &Table<K, C> {
        // Acquire: pairs with the Release that published the table, so its
        // slots (and the entries they point to) are initialised.
        // SAFETY: tables are freed only in `Drop` (module protocol).
        unsafe { &*self.table.load(Acquire) }
    }

    fn find<'a>(&self, table: &'a Table<K, C>, hash: u64, key: &K) -> Option<&'a Entry<K, C>> {
        let mask = table.mask();
        let mut i = hash as usize & mask;
        for _ in 0..table.slots.len() {
            // Acquire: pairs with the Release store of the entry.
            let p = table.slots[i].load(Acquire);
            if p.is_null() {
                return None;
            }
            if p != tombstone() {
                // SAFETY: a non-null, non-tombstone slot points to a live
                // entry, freed only in `Drop`.
                let entry = unsafe { &*p };
                if entry.hash == hash && entry.key == *key {
                    return Some(entry);
                }
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The breaker for `key`, created (named `format!("{key:?}")`) if new,
    /// borrowed for as long as the set: for an existing key a lock-free
    /// lookup that writes nothing (no reference count either).
    pub fn breaker(&self, key: &K) -> &Breaker<C> {
        let hash = self.hasher.hash_one(key);
        if let Some(entry) = self.find(self.table(), hash, key) {
            return &entry.breaker;
        }
        self.insert(hash, key)
    }

    /// The breaker for `key` as an `Arc` (one reference-count increment on
    /// top of [`breaker`](Self::breaker)).
    pub fn get(&self, key: &K) -> Arc<Breaker<C>> {
        let hash = self.hasher.hash_one(key);
        if let Some(entry) = self.find(self.table(), hash, key) {
            return Arc::clone(&entry.breaker);
        }
        Arc::clone(self.insert(hash, key))
    }

    #[cold]
    fn insert(&self, hash: u64, key: &K) -> &Arc<Breaker<C>> {
        let mut writer = lock(&self.writer);
        // Another writer may have inserted it, or grown the table.
        if let Some(entry) = self.find(self.table(), hash, key) {
            return &entry.breaker;
        }
        let size = self.table().slots.len();
        if (writer.live + writer.tombstones + 1) * 2 > size {
            let new_size = if (writer.live + 1) * 2 > size / 2 {
                size * 2
            } else {
                size // mostly tombstones: sweep them
            };
            self.rebuild(&mut writer, new_size);
        }
        let entry = Box::into_raw(Box::new(Entry {
            hash,
            key: key.clone(),
            breaker: Arc::new(Breaker::with_classifier(
                format!("{key:?}"),
                self.config.clone(),
                self.classifier.clone(),
            )),
        }));
        let table = self.table();
        let mask = table.mask();
        let mut i = hash as usize & mask;
        loop {
            // Relaxed: only writers store, under the mutex.
            let p = table.slots[i].load(Relaxed);
            if p.is_null() || p == tombstone() {
                if p == tombstone() {
                    writer.tombstones -= 1;
                }
                // Release: publishes the entry's fields to readers' Acquire.
                table.slots[i].store(entry, Release);
                writer.live += 1;
                // SAFETY: just published; freed only in `Drop`.
                return unsafe { &(*entry).breaker };
            }
            i = (i + 1) & mask;
        }
    }

    /// Builds a table of `size` slots holding the live entries, publishes
    /// it and retires the old one.
    fn rebuild(&self, writer: &mut Writer<K, C>, size: usize) {
        let old = self.table.load(Relaxed);
        let new = Table::new(size);
        let mask = new.mask();
        // SAFETY: `old` is the current table, live until `Drop`.
        for slot in unsafe { &*old }.slots.iter() {
            let p = slot.load(Relaxed);
            if p.is_null() || p == tombstone() {
                continue;
            }
            // SAFETY: a live entry.
            let mut i = unsafe { (*p).hash } as usize & mask;
            while !new.slots[i].load(Relaxed).is_null() {
                i = (i + 1) & mask;
            }
            new.slots[i].store(p, Relaxed);
        }
        // Release: the new table's slots are visible to readers that load it.
        self.table.store(Box::into_raw(Box::new(new)), Release);
        writer.tombstones = 0;
        writer.retired_tables.push(old);
    }

    /// The breaker for `key` if it exists.
    pub fn existing(&self, key: &K) -> Option<Arc<Breaker<C>>> {
        let hash = self.hasher.hash_one(key);
        self.find(self.table(), hash, key)
            .map(|entry| Arc::clone(&entry.breaker))
    }

    /// Forgets the breaker for `key` (holders of its `Arc` keep using it;
    /// the entry's memory is kept until the set is dropped).
    pub fn remove(&self, key: &K) -> Option<Arc<Breaker<C>>> {
        let hash = self.hasher.hash_one(key);
        let mut writer = lock(&self.writer);
        let table = self.table();
        let mask = table.mask();
        let mut i = hash as usize & mask;
        for _ in 0..table.slots.len() {
            let p = table.slots[i].load(Relaxed);
            if p.is_null() {
                return None;
            }
            if p != tombstone() {
                // SAFETY: a live entry.
                let entry = unsafe { &*p };
                if entry.hash == hash && entry.key == *key {
                    // Release: as every slot store (readers see a tombstone
                    // or the entry, both valid).
                    table.slots[i].store(tombstone(), Release);
                    writer.live -= 1;
                    writer.tombstones += 1;
                    writer.retired_entries.push(p);
                    return Some(Arc::clone(&entry.breaker));
                }
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// How many keys have a breaker.
    pub fn len(&self) -> usize {
        lock(&self.writer).live
    }

    /// Whether no key has a breaker yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every breaker's [`Snapshot`](super::Snapshot) with its key, for a
    /// dashboard, in no particular order.
    pub fn dashboard(&self) -> Vec<(K, super::Snapshot)> {
        self.snapshot()
            .into_iter()
            .map(|(key, breaker)| (key, breaker.snapshot()))
            .collect()
    }

    /// The keys and breakers, in no particular order (a snapshot).
    pub fn snapshot(&self) -> Vec<(K, Arc<Breaker<C>>)> {
        let _writer = lock(&self.writer);
        self.table()
            .slots
            .iter()
            .filter_map(|slot| {
                let p = slot.load(Acquire);
                (!p.is_null() && p != tombstone()).then(|| {
                    // SAFETY: a live entry, freed only in `Drop`.
                    let entry = unsafe { &*p };
                    (entry.key.clone(), Arc::clone(&entry.breaker))
                })
            })
            .collect()
    }
}

impl<K, C> Drop for BreakerSet<K, C> {
    fn drop(&mut self) {
        // `lock`, not `get_mut`: loom's mutex has no `get_mut`; uncontended.
        let mut writer = lock(&self.writer);
        let table = self.table.load(Relaxed);
        // SAFETY: `&mut self`: no reader is left. Every live entry is in the
        // current table exactly once; removed entries only in the retired
        // list; every table, current or retired, is freed once.
        unsafe {
            for slot in (*table).slots.iter() {
                let p = slot.load(Relaxed);
                if !p.is_null() && p != tombstone() {
                    drop(Box::from_raw(p));
                }
            }
            drop(Box::from_raw(table));
            for p in writer.retired_entries.drain(..) {
                drop(Box::from_raw(p));
            }
            for t in writer.retired_tables.drain(..) {
                drop(Box::from_raw(t));
            }
        }
    }
}

impl<K: fmt::Debug, C> fmt::Debug for BreakerSet<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _writer = lock(&self.writer);
        // SAFETY: the current table, live until `Drop`.
        let table = unsafe { &*self.table.load(Acquire) };
        let keys: Vec<_> = table
            .slots
            .iter()
            .filter_map(|slot| {
                let p = slot.load(Acquire);
                (!p.is_null() && p != tombstone()).then(|| {
                    // SAFETY: a live entry, freed only in `Drop`.
                    let key = unsafe { &(*p).key };
                    format!("{key:?}")
                })
            })
            .collect();
        f.debug_struct("BreakerSet").field("keys", &keys).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_sweeps_and_frees_everything() {
        let set = BreakerSet::<u32>::new(Config::default());
        let first = set.get(&0);
        for key in 0..200 {
            let _ = set.breaker(&key);
        }
        assert_eq!(set.len(), 200);
        assert!(Arc::ptr_eq(&first, &set.get(&0)));
        for key in 0..150 {
            assert!(set.remove(&key).is_some());
            assert!(set.existing(&key).is_none());
        }
        assert!(set.remove(&0).is_none());
        for key in 150..200 {
            assert!(set.existing(&key).is_some());
        }
        // Re-adding removed keys reuses tombstones or sweeps them.
        for key in 0..150 {
            let _ = set.breaker(&key);
        }
        assert_eq!(set.len(), 200);
        assert_eq!(set.snapshot().len(), 200);
        // `first` was removed and replaced: the holder keeps the old one.
        assert!(!Arc::ptr_eq(&first, &set.get(&0)));
        assert_eq!(
            Arc::strong_count(&first),
            2,
            "its retired entry is kept until the set goes"
        );
        let live = set.get(&199);
        drop(set);
        assert_eq!(
            Arc::strong_count(&first),
            1,
            "dropping the set freed the retired entry"
        );
        assert_eq!(Arc::strong_count(&live), 1, "and the live ones");
    }
}
