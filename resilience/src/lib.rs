//! weft-resilience: lock-free circuit breakers and slab-pooled slots.
//!
//! Runtime-agnostic: time comes through the [`clock::Clock`] trait (a
//! [`clock::ManualClock`] drives every time-based test), so the breaker and
//! the pool work under any executor; weft adds deadlines and cancellation.

#![warn(missing_docs)]

pub mod breaker;
pub mod caller;
pub mod chaos;
pub mod clock;
pub mod env;
pub mod fallback;
pub mod hedge;
pub mod limit;
pub mod policy;
pub mod pool;
pub mod retry;
mod rng;
mod sync;
