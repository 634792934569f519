//! Slab-pooled slots: a bounded object [`Pool`] and a concurrent,
//! generational [`SlotMap`], both sharded per thread.
//!
//! Go's map reuses a slot only under rules its authors keep by hand: a deleted
//! slot is a tombstone, a lookup must match the key, nothing is reused while
//! the map is being iterated. Here those rules are structural.
//!
//! # Protocol
//!
//! **Storage** (`pages`). Slots live in lazily allocated pages that never
//! move until the pool is dropped; an index is claimed at most once, from a
//! bounded counter, so at most `capacity` slots ever exist.
//!
//! **Ownership of a slot.** At any moment a slot is exactly one of: unclaimed;
//! on one free list; or held by one holder (a [`Pooled`] guard, an inserter,
//! or, for the map, the readers counted in its word). Taking an index off a
//! list or claiming it makes the taker the only holder; putting it on a list
//! ends the holding. So the pool never hands one slot to two guards.
//!
//! **Free lists** (`shard`). Every live thread has a small id, unique among
//! live threads and reused after exit; shard `i` belongs to the thread with id
//! `i`. Its *local* list is used only by that owner, with plain loads and
//! stores. Its *remote* list is a push-only Treiber stack emptied whole by a
//! single `swap`: objects returned on another thread go there and the owner
//! drains it when its local list is empty. An index returns to the shard that
//! handed it out. Threads past the shard count share one locked overflow list.
//!
//! **Map slot word** (`slot_word`). Each [`SlotMap`] slot has one `AtomicU64`:
//! generation (32 bits) | reader count (30) | state (2: `FREE`, `OCCUPIED`,
//! `REMOVED`), changed only by CAS on the whole word.
//!
//! 1. `insert`: take a `FREE` slot off a list, write the value, store
//!    `OCCUPIED` under the slot's current generation (Release), return
//!    `Key { index, generation }`.
//! 2. `get`: CAS `readers + 1` iff `OCCUPIED` and the generation matches.
//! 3. `remove`: CAS `OCCUPIED → REMOVED` with `readers + 1` iff the
//!    generation matches (one remover wins), then release that reference.
//! 4. release: CAS `readers − 1`; the reader that takes a `REMOVED` slot to
//!    zero instead CASes it to `FREE` under `generation + 1`, drops the value
//!    and puts the slot on a free list.
//!
//! # Invariants
//!
//! - A value is dropped exactly once: by the last reader of its tombstone,
//!   or by the pool's `Drop`, never both (the first leaves the slot `FREE`).
//! - A key reaches a value only while the slot's generation equals the key's;
//!   the generation moves on before the slot can be reused, so a stale key
//!   never reaches a reused slot (until 2^32 reuses of one slot race one
//!   lookup's single CAS).
//! - A tombstone admits no new reader and is never on a free list.
//! - Only a shard's owner touches its local list; the remote list is never
//!   popped one node at a time, so it needs no ABA tag.
//! - Every pooled object counted by `created` is dropped exactly once, when
//!   the [`Pool`] is dropped.
//!
//! See the "Pooled slots" part of `docs/RESILIENCE.md` for the design
//! discussion and the numbers.

mod config;
mod object_pool;
mod pages;
mod shard;
mod slot_map;
mod slot_word;
mod sync_ext;

/// The calling thread's id in the process-wide registry the pools' shards
/// use (unique among live threads, dense, reused after a thread exits): the
/// breaker's time window gives each id below its stripe count a stripe of
/// its own on the same terms.
pub(crate) use shard::{current_id as thread_id, raw_id as thread_id_hint};

pub use config::ConfigError;
pub use object_pool::{Clear, NoReset, Pool, PoolBuilder, PoolMetrics, Pooled, Reset};
pub use slot_map::{Full, Key, Ref, SlotMap, SlotMapBuilder, SlotMapMetrics};
