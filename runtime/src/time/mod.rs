//! Time: `sleep`, `sleep_until`, `timeout`, `interval` on hierarchical timing
//! wheels.
//!
//! # Structure
//! - `wheel`: one hierarchical wheel (6 levels × 64 slots, 1 ms ticks), slab
//!   backed, O(1) insert and remove.
//! - `driver`: one wheel per worker behind a mutex (a shard), with its next
//!   expiry cached in an atomic. Workers fire due shards every
//!   `event_interval` ticks and whenever they wake from parking; a parking
//!   worker sleeps until the earliest expiry of any shard.
//!   Each shard counts the `process` calls that fired one of its timers,
//!   so a registered timer polled again with the same waker answers "not
//!   yet" from that count, without the lock (protocol in `driver.rs`,
//!   loom model `loom-tests/tests/timer_poll.rs`).
//! - `sleep`, `timeout`, `interval`: the futures. A timer is registered on its
//!   first `Pending` poll, in the shard of the polling worker, and removed when
//!   the future is dropped.
//!
//! # Invariants
//! - A timer never fires before its deadline (deadlines round up to the tick).
//! - A registration belongs to exactly one `Sleep`; only it removes it, so a
//!   slab key is never reused while its `Sleep` lives.
//! - Wakers are woken outside every shard lock.
//! - Timeouts of 2 s or more take their deadline from the coarse clock
//!   (`clock`): never early, at most two kernel ticks late. Those from
//!   1 ms up take it from the TSC (`tsc`): never early, at most ≈ 4 µs
//!   late. Shorter ones and sleeps read `Instant::now()`.

mod clock;
pub(crate) mod driver;
mod interval;
mod sleep;
mod timeout;
pub(crate) mod tsc;
mod wheel;

pub use self::clock::{coarse_now, coarse_now_nanos, coarse_resolution};
pub(crate) use self::{
    clock::certainly_before, sleep::timeout_deadline_after, tsc::init as init_tsc,
};
pub use self::{
    interval::{interval, interval_at, Interval, MissedTickBehavior},
    sleep::{sleep, sleep_until, Sleep},
    timeout::{timeout, timeout_at, Elapsed, Timeout},
};
pub use std::time::{Duration, Instant};
