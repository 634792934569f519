//! weft-resilience: the policies a service puts around its calls, and
//! pooled slots.
//!
//! * [`breaker`]: a lock-free circuit breaker.
//! * [`limit`]: a bulkhead, GCRA and warm-up rate limiters (keyed too), and
//!   adaptive concurrency limits (AIMD, Vegas, Gradient2).
//! * [`retry`]: backoff with full or decorrelated jitter, a retry budget,
//!   no attempt that cannot finish before the deadline.
//! * [`hedge`]: extra attempts after a delay or a latency percentile; the
//!   losers cancelled.
//! * [`fallback`] and [`chaos`] (fault, latency and outcome injection).
//! * [`policy`]: all of them in one pipeline with one error type, per
//!   endpoint, and as tower layers (feature `tower`).
//! * [`pool`]: pooled objects and a concurrent slot map.
//!
//! Runtime-agnostic: time comes through the [`clock::Clock`] trait and what
//! the policies need from an executor through [`env::Env`] (a
//! [`clock::ManualClock`] and an [`env::ManualEnv`] drive every time-based
//! test). The `weft` feature builds them on weft's deadlines and
//! cancellation tree ([`caller`], [`env::WeftEnv`]).

#![warn(missing_docs)]

pub mod breaker;
pub mod caller;
pub mod chaos;
pub mod clock;
mod divisor;
pub mod env;
pub mod fallback;
pub mod hedge;
pub mod limit;
pub mod policy;
pub mod pool;
pub mod retry;
mod rng;
mod striped;
mod sync;
