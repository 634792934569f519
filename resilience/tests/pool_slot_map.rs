//! SlotMap keys: a stale key never reaches a reused slot, and a removed value
//! is a tombstone until its last guard goes.

mod common;

use common::{Census, Counted};
use weft_resilience::pool::SlotMap;

#[test]
fn stale_key_after_reuse_returns_none() {
    let map = SlotMap::with_capacity(1).unwrap();
    let old = map.insert("old").unwrap();
    assert!(map.remove(old));
    let new = map.insert("new").unwrap();
    assert_eq!(new.index(), old.index(), "capacity 1 must reuse the slot");
    assert!(map.get(old).is_none(), "stale key reached the reused slot");
    assert!(!map.remove(old), "stale key removed the new value");
    assert_eq!(*map.get(new).unwrap(), "new");
}

#[test]
fn tombstone_keeps_the_value_until_the_last_guard() {
    let census = Census::new();
    let map = SlotMap::with_capacity(4).unwrap();
    let key = map.insert(census.make()).unwrap();
    let first = map.get(key).unwrap();
    let second = map.get(key).unwrap();

    assert!(map.remove(key));
    assert!(!map.remove(key), "removed twice");
    assert!(map.get(key).is_none(), "new reader admitted to a tombstone");
    let m = map.metrics();
    assert_eq!((m.len, m.tombstones), (0, 1));

    drop(first);
    assert_eq!(census.dropped(), 0, "dropped while a guard still held it");
    assert_eq!(second.serial, 0, "value unreadable through the last guard");
    drop(second);
    assert_eq!(census.dropped(), 1);
    let m = map.metrics();
    assert_eq!((m.len, m.tombstones), (0, 0));
}

#[test]
fn remove_without_guards_drops_at_once() {
    let census = Census::new();
    let map = SlotMap::with_capacity(4).unwrap();
    let key = map.insert(census.make()).unwrap();
    assert!(map.remove(key));
    assert_eq!(census.dropped(), 1);
}

#[test]
fn metrics_track_len_slots_and_reuse() {
    let map = SlotMap::with_capacity(8).unwrap();
    let keys: Vec<_> = (0..5).map(|i| map.insert(i).unwrap()).collect();
    let m = map.metrics();
    assert_eq!((m.len, m.slots, m.reused, m.tombstones), (5, 5, 0, 0));
    assert!(map.remove(keys[1]));
    assert!(map.remove(keys[3]));
    map.insert(10).unwrap();
    let m = map.metrics();
    assert_eq!(
        (m.capacity, m.len, m.slots, m.reused, m.high_water),
        (8, 4, 5, 1, 5)
    );
}

#[test]
fn concurrent_readers_and_removers_agree() {
    let census = Census::new();
    let map = SlotMap::with_capacity(64).unwrap();
    let keys: Vec<_> = (0..64)
        .map(|_| map.insert(census.make()).unwrap())
        .collect();
    let removed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (map, keys, removed) = (&map, &keys, &removed);
            s.spawn(move || {
                for (i, &key) in keys.iter().enumerate() {
                    if let Some(guard) = map.get(key) {
                        assert_eq!(guard.key(), key);
                    }
                    if i % 4 == t && map.remove(key) {
                        removed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(removed.into_inner(), 64, "each value removed exactly once");
    assert_eq!(census.dropped(), 64);
    assert_eq!(map.metrics().len, 0);
}

#[test]
fn slot_map_drops_remaining_values_once() {
    let census = Census::new();
    let map: SlotMap<Counted> = SlotMap::with_capacity(16).unwrap();
    let keys: Vec<_> = (0..10)
        .map(|_| map.insert(census.make()).unwrap())
        .collect();
    for key in &keys[..4] {
        assert!(map.remove(*key));
    }
    // A tombstone whose guard was forgotten still holds a value.
    let held = map.get(keys[5]).unwrap();
    assert!(map.remove(keys[5]));
    std::mem::forget(held);
    assert_eq!(census.live(), 6);
    drop(map);
    assert_eq!(census.live(), 0);
    assert_eq!(census.dropped(), 10);
}
