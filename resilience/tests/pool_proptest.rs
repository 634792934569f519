//! SlotMap against a `HashMap` model: random inserts, gets and removes,
//! including keys that went stale, on one thread.

use std::collections::HashMap;

use proptest::prelude::*;
use weft_resilience::pool::{Key, SlotMap};

#[derive(Debug, Clone)]
enum Op {
    Insert(u32),
    /// Get the n-th key ever issued (live or stale).
    Get(usize),
    Remove(usize),
    /// Hold a guard on the n-th key across later operations.
    Hold(usize),
    ReleaseHeld,
    /// Look up a key that was never issued.
    Forged(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u32>().prop_map(Op::Insert),
        3 => any::<usize>().prop_map(Op::Get),
        3 => any::<usize>().prop_map(Op::Remove),
        1 => any::<usize>().prop_map(Op::Hold),
        1 => Just(Op::ReleaseHeld),
        1 => (0u64..16, 0u64..4).prop_map(|(i, g)| Op::Forged(g << 32 | i)),
        1 => any::<u64>().prop_map(Op::Forged),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn slot_map_matches_a_hash_map(capacity in 1usize..12, ops in prop::collection::vec(op(), 1..200)) {
        let map = SlotMap::with_capacity(capacity).unwrap();
        let mut model: HashMap<Key, u32> = HashMap::new();
        let mut issued: Vec<Key> = Vec::new();
        let mut held = Vec::new();
        let mut tombstones = 0usize;
        for op in ops {
            match op {
                Op::Insert(v) => match map.insert(v) {
                    Ok(key) => {
                        prop_assert!(!issued.contains(&key), "key {key:?} issued twice");
                        prop_assert!(model.len() + tombstones < capacity);
                        model.insert(key, v);
                        issued.push(key);
                    }
                    Err(full) => {
                        prop_assert_eq!(full.0, v);
                        prop_assert_eq!(model.len() + tombstones, capacity, "refused with room left");
                    }
                },
                Op::Get(n) if !issued.is_empty() => {
                    let key = issued[n % issued.len()];
                    prop_assert_eq!(map.get(key).map(|g| *g), model.get(&key).copied());
                }
                Op::Remove(n) if !issued.is_empty() => {
                    let key = issued[n % issued.len()];
                    let expected = model.remove(&key).is_some();
                    prop_assert_eq!(map.remove(key), expected);
                    if expected && held.iter().any(|(k, _)| *k == key) {
                        tombstones += 1;
                    }
                }
                Op::Hold(n) if !issued.is_empty() => {
                    let key = issued[n % issued.len()];
                    if let Some(guard) = map.get(key) {
                        prop_assert_eq!(Some(*guard), model.get(&key).copied());
                        if !held.iter().any(|(k, _)| *k == key) {
                            held.push((key, guard));
                        }
                    }
                }
                Op::ReleaseHeld => {
                    if let Some((key, guard)) = held.pop() {
                        drop(guard);
                        if !model.contains_key(&key) {
                            tombstones -= 1;
                        }
                    }
                }
                Op::Forged(bits) => {
                    let key = Key::from_bits(bits);
                    if !issued.contains(&key) {
                        prop_assert!(map.get(key).is_none(), "forged key {key:?} found a value");
                    }
                }
                _ => {}
            }
            let m = map.metrics();
            prop_assert_eq!(m.len as usize, model.len());
            prop_assert_eq!(m.tombstones as usize, tombstones);
        }
    }
}
