//! weft-resilience: lock-free circuit breakers and slab-pooled slots.
//!
//! Runtime-agnostic: time comes through the [`clock::Clock`] trait (a
//! [`clock::ManualClock`] drives every time-based test), so the breaker and
//! the pool work under any executor; weft adds deadlines and cancellation.

#![warn(missing_docs)]

pub mod breaker;
pub mod caller;
pub mod clock;
pub mod limit;
pub mod pool;
mod sync;
