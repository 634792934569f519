//! The limiters' configuration errors: every builder's `build` returns one
//! of these instead of panicking.

use std::{error::Error, fmt, time::Duration};

/// A limiter configuration value that cannot work.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A rate of zero tokens per period.
    ZeroRate,
    /// A rate over a zero period.
    ZeroPeriod,
    /// A rate so high that one token would cost less than a nanosecond.
    RateTooHigh {
        /// Tokens per period asked for.
        tokens: u64,
        /// The period.
        period: Duration,
    },
    /// A burst of zero: nothing could ever be admitted.
    ZeroBurst,
    /// A burst whose tolerance (burst × interval) overflows 2^64 ns.
    BurstTooLarge(u64),
    /// A concurrency limit of zero.
    ZeroLimit,
    /// A limit above the largest the limiter can count.
    LimitTooLarge {
        /// The value given.
        value: u64,
        /// The largest accepted.
        max: u64,
    },
    /// A minimum limit above the maximum (or an initial limit outside
    /// `[min, max]`).
    LimitsOutOfOrder {
        /// Minimum.
        min: u32,
        /// Initial.
        initial: u32,
        /// Maximum.
        max: u32,
    },
    /// A wait queue longer than the largest the limiter can count.
    QueueTooLarge(u64),
    /// A zero maximum wait (use no waiting instead).
    ZeroMaxWait,
    /// A rate limiter lease of zero tokens (1 turns leasing off).
    ZeroLease,
    /// A warm-up cold factor not above 1 (or not finite).
    ColdFactor(f64),
    /// A factor (backoff ratio, smoothing, tolerance) outside its range.
    FactorOutOfRange {
        /// Which factor.
        which: &'static str,
        /// The value given.
        value: f64,
    },
    /// A wait queue without the `weft` feature: with no runtime to wait on,
    /// a bulkhead is try-acquire only.
    WaitingNeedsRuntime,
    /// A keyed limiter allowed no keys.
    ZeroKeys,
    /// A keyed limiter with zero shards (or more shards than keys).
    BadShards(usize),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroRate => f.write_str("a rate needs at least one token per period"),
            ConfigError::ZeroPeriod => f.write_str("a rate's period must be > 0"),
            ConfigError::RateTooHigh { tokens, period } => write!(
                f,
                "{tokens} tokens per {period:?} is more than one per nanosecond"
            ),
            ConfigError::ZeroBurst => f.write_str("burst must be at least 1"),
            ConfigError::ZeroLease => {
                f.write_str("a lease must be at least 1 token (1 turns leasing off)")
            }
            ConfigError::BurstTooLarge(b) => {
                write!(f, "burst {b} times the interval overflows 2^64 ns")
            }
            ConfigError::ZeroLimit => f.write_str("a concurrency limit must be at least 1"),
            ConfigError::LimitTooLarge { value, max } => {
                write!(f, "limit {value} exceeds the largest supported, {max}")
            }
            ConfigError::LimitsOutOfOrder { min, initial, max } => write!(
                f,
                "limits must satisfy 1 <= min <= initial <= max (min {min}, initial {initial}, max {max})"
            ),
            ConfigError::QueueTooLarge(q) => write!(f, "wait queue of {q} is too long"),
            ConfigError::ZeroMaxWait => {
                f.write_str("max wait must be > 0 (a queue of 0 disables waiting)")
            }
            ConfigError::ColdFactor(c) => {
                write!(f, "cold factor {c} must be finite and > 1")
            }
            ConfigError::FactorOutOfRange { which, value } => {
                write!(f, "{which} {value} is outside its range")
            }
            ConfigError::WaitingNeedsRuntime => f.write_str(
                "waiting for a slot needs the `weft` feature (without a runtime a bulkhead is try-acquire only)",
            ),
            ConfigError::ZeroKeys => f.write_str("a keyed limiter needs room for at least one key"),
            ConfigError::BadShards(n) => {
                write!(f, "{n} shards: need at least 1 and no more than max keys")
            }
        }
    }
}

impl Error for ConfigError {}
