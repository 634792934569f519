//! Bad configuration gets a clear error, not a pool that misbehaves later.

use weft_resilience::pool::{ConfigError, Pool, SlotMap};

#[test]
fn zero_capacity_is_refused() {
    let err = Pool::builder(|| 0u8)
        .capacity(0)
        .build()
        .map(drop)
        .unwrap_err();
    assert_eq!(err, ConfigError::ZeroCapacity);
    assert_eq!(err.to_string(), "pool capacity must be at least 1");
    assert_eq!(
        SlotMap::<u8>::with_capacity(0).map(drop).unwrap_err(),
        ConfigError::ZeroCapacity
    );
}

#[test]
fn oversized_capacity_is_refused() {
    let err = Pool::builder(|| 0u8)
        .capacity(usize::MAX)
        .build()
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::CapacityTooLarge { requested: usize::MAX, max } if max == 1 << 31),
        "{err:?}"
    );
    assert!(err.to_string().contains("exceeds the maximum"));
}

#[test]
fn shard_counts_are_checked() {
    let err = SlotMap::<u8>::builder()
        .shards(0)
        .build()
        .map(drop)
        .unwrap_err();
    assert_eq!(err, ConfigError::ZeroShards);
    let err = Pool::builder(|| 0u8)
        .shards(1 << 20)
        .build()
        .map(drop)
        .unwrap_err();
    assert!(matches!(err, ConfigError::TooManyShards { .. }), "{err:?}");
}

#[test]
fn edge_values_are_accepted() {
    assert!(Pool::builder(|| 0u8).capacity(1).shards(1).build().is_ok());
    assert!(SlotMap::<u8>::builder().capacity(1 << 31).build().is_ok());
}

#[test]
fn config_error_is_an_error() {
    let err: Box<dyn std::error::Error> = Box::new(ConfigError::ZeroShards);
    assert_eq!(err.to_string(), "pool shard count must be at least 1");
}
