//! The pool and slot-map builders under any capacity and shard count, then
//! the slot map under any sequence of inserts, gets and removes checked
//! against a model. Never a panic; a config the builder refuses names the
//! right limit; a built slot map holds exactly `capacity` values, never
//! returns a value for a removed (stale) key, and never hands out a key
//! twice.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use weft_resilience::pool::{ConfigError, Key, Pool, SlotMap};

fn size(data: &mut &[u8]) -> usize {
    let Some((&tag, rest)) = data.split_first() else {
        return 1;
    };
    *data = rest;
    let mut read = |n: usize| {
        let (head, rest) = data.split_at(n.min(data.len()));
        *data = rest;
        head.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b))
    };
    match tag % 4 {
        // Small: where the pool is built and used below.
        0 | 1 => read(1) % 200,
        2 => read(4),
        _ => usize::MAX - read(1),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let capacity = size(&mut data);
    let shards = size(&mut data);
    let pool = Pool::builder(Vec::<u8>::new)
        .capacity(capacity)
        .shards(shards)
        .build();
    let map = SlotMap::<u32>::builder()
        .capacity(capacity)
        .shards(shards)
        .build();
    match (&pool, &map) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "the two builders validate alike");
            match a {
                ConfigError::ZeroCapacity => assert_eq!(capacity, 0),
                ConfigError::CapacityTooLarge { requested, max } => {
                    assert_eq!(*requested, capacity);
                    assert!(capacity > *max);
                }
                ConfigError::ZeroShards => assert_eq!(shards, 0),
                ConfigError::TooManyShards { requested, max } => {
                    assert_eq!(*requested, shards);
                    assert!(shards > *max);
                }
                other => panic!("unexpected {other:?}"),
            }
            return;
        }
        (a, b) => panic!("pool {:?} but slot map {:?}", a.as_ref().err(), b.as_ref().err()),
    }
    if capacity > 200 {
        // Valid, but too big to fill in a fuzz run.
        return;
    }
    let pool = pool.expect("checked above");
    let map = map.expect("checked above");
    {
        let a = pool.get();
        let b = pool.try_get();
        drop((a, b));
    }
    let mut model: HashMap<Key, u32> = HashMap::new();
    let mut stale: Vec<Key> = Vec::new();
    for (i, &op) in data.iter().enumerate() {
        let value = i as u32;
        match op % 4 {
            0 | 1 => match map.insert(value) {
                Ok(key) => {
                    assert!(model.insert(key, value).is_none(), "key {key:?} handed out twice");
                    assert!(model.len() <= capacity);
                }
                Err(_full) => assert_eq!(model.len(), capacity, "full below capacity"),
            },
            2 => {
                if let Some(&key) = model.keys().nth(usize::from(op) % model.len().max(1)) {
                    assert!(map.remove(key));
                    model.remove(&key);
                    stale.push(key);
                }
            }
            _ => {
                for key in &stale {
                    assert!(map.get(*key).is_none(), "a removed key still reads");
                    assert!(!map.contains(*key));
                }
                for (key, value) in &model {
                    assert_eq!(map.get(*key).map(|r| *r), Some(*value));
                }
            }
        }
    }
});
