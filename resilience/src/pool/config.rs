//! Configuration shared by [`Pool`](super::Pool) and [`SlotMap`](super::SlotMap)
//! builders, and the error a bad configuration gets.

use std::fmt;

use super::{pages::MAX_CAPACITY, shard::MAX_SHARDS};

/// Why a builder refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `capacity(0)`: a pool that can hold nothing would turn every `get` into
    /// an unpooled allocation and every `try_get` into `None`.
    ZeroCapacity,
    /// More slots than indices can address.
    CapacityTooLarge {
        /// What was asked for.
        requested: usize,
        /// The largest accepted capacity.
        max: usize,
    },
    /// `shards(0)`: there must be at least one shard.
    ZeroShards,
    /// More shards than the pool allows.
    TooManyShards {
        /// What was asked for.
        requested: usize,
        /// The largest accepted shard count.
        max: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroCapacity => f.write_str("pool capacity must be at least 1"),
            ConfigError::CapacityTooLarge { requested, max } => {
                write!(f, "pool capacity {requested} exceeds the maximum of {max}")
            }
            ConfigError::ZeroShards => f.write_str("pool shard count must be at least 1"),
            ConfigError::TooManyShards { requested, max } => {
                write!(
                    f,
                    "pool shard count {requested} exceeds the maximum of {max}"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Capacity and shard count, validated together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) capacity: usize,
    pub(crate) shards: usize,
}

impl Limits {
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if self.capacity > MAX_CAPACITY {
            return Err(ConfigError::CapacityTooLarge {
                requested: self.capacity,
                max: MAX_CAPACITY,
            });
        }
        if self.shards == 0 {
            return Err(ConfigError::ZeroShards);
        }
        if self.shards > MAX_SHARDS {
            return Err(ConfigError::TooManyShards {
                requested: self.shards,
                max: MAX_SHARDS,
            });
        }
        Ok(self)
    }
}
