//! The operations a ring owns, by `user_data` ([`OpTable`]), and what the
//! driver needs of each ([`Completable`]: deliver a completion, keep its
//! `user_data` and done flag in a [`SlotState`]). Single-shot ops
//! (`op.rs`) and the multishot queues (`accept.rs`, `multishot.rs`)
//! implement it; the fuzz target `io_op_table` drives the table without a
//! ring.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering::*},
    Arc,
};

use io_uring::cqueue;
use slab::Slab;

/// One in-flight operation as the driver sees it.
pub(crate) trait Completable: Send + Sync {
    /// A completion arrived; `more` is set when more will follow
    /// (multishot). Called on the owning worker.
    fn complete(&self, res: i32, more: bool);
    /// A completion arrived with the CQE's flags (`IORING_CQE_F_MORE`, a
    /// selected buffer): what the driver calls. Operations that need no
    /// flag but `MORE` keep the default.
    fn complete_cqe(&self, res: i32, flags: u32) {
        self.complete(res, cqueue::more(flags));
    }
    /// Where the driver keeps its `user_data` and the done flag.
    fn slot(&self) -> &SlotState;

    /// True if a peer reaping the ring for its busy owner may deliver this
    /// operation's completions (`Remote::reap_for_peer`): single-shot
    /// operations, whose completion only wakes their task. Multishot
    /// queues, whose completions feed state the owner keeps (buffer
    /// selection, the order of arrivals), say no and are left to it.
    fn peer_may_complete(&self) -> bool {
        true
    }

    /// The `user_data` the driver gave it (0 before it was submitted).
    fn user_data(&self) -> u64 {
        self.slot().user_data.load(Acquire)
    }
    fn set_user_data(&self, user_data: u64) {
        self.slot().user_data.store(user_data, Release);
    }
    /// True once the final completion was delivered.
    fn is_done(&self) -> bool {
        self.slot().done.load(Acquire)
    }
    /// The ring's reference after the final completion was delivered: a
    /// cell the ring's owner may pool for its next op (`OpCell`: when its
    /// future already took the result and let go). `None` drops it.
    fn into_pooled(self: Arc<Self>) -> Option<super::driver::PooledCell> {
        None
    }
}

/// The driver's bookkeeping inside every operation.
#[derive(Default)]
pub(crate) struct SlotState {
    user_data: AtomicU64,
    pub(super) done: AtomicBool,
}

impl SlotState {
    pub(super) fn set_done(&self, done: bool) {
        self.done.store(done, Release);
    }
}

/// The operations a ring owns, by `user_data`: the slab key in the low 32
/// bits, a 31-bit generation above it (the top bit stays clear for the
/// tokens). A completion is delivered only to the entry its `user_data`
/// names now: one for a slot that was freed (and maybe reused by a later
/// operation, with another generation) is stale and dropped. An entry
/// leaves at its final completion, so no operation completes twice, and
/// holds its cell (with the buffers the kernel may write) until then, even
/// after its future is gone.
pub(crate) struct OpTable {
    ops: Slab<(u32, Arc<dyn Completable>)>,
    generation: u32,
}

impl OpTable {
    /// An empty table whose first operation gets generation
    /// `generation + 1`.
    pub(crate) fn with_capacity(capacity: usize, generation: u32) -> OpTable {
        OpTable {
            ops: Slab::with_capacity(capacity),
            generation: generation & 0x7fff_ffff,
        }
    }

    /// Registers `target` and gives it its `user_data`; `None` if it is
    /// already done (nothing to submit).
    /// Takes the submission's reference (no count change on the way in).
    pub(crate) fn register(&mut self, target: Arc<dyn Completable>) -> Option<u64> {
        if target.is_done() {
            return None;
        }
        self.generation = self.generation.wrapping_add(1) & 0x7fff_ffff;
        let generation = self.generation;
        let entry = self.ops.vacant_entry();
        let user_data = (u64::from(generation) << 32) | entry.key() as u64;
        target.set_user_data(user_data);
        entry.insert((generation, target));
        Some(user_data)
    }

    /// The `user_data` to name in an `ASYNC_CANCEL` for `target`, if it is
    /// still this table's and not done.
    pub(crate) fn to_cancel(&self, target: &Arc<dyn Completable>) -> Option<u64> {
        if target.is_done() {
            return None;
        }
        let user_data = target.user_data();
        let key = (user_data & 0xffff_ffff) as usize;
        let live = self
            .ops
            .get(key)
            .is_some_and(|(g, _)| u64::from(*g) == user_data >> 32);
        live.then_some(user_data)
    }

    /// Delivers a completion with its CQE flags (multishot receives read
    /// the selected buffer from them). `None` if `user_data` names no live
    /// entry (stale); `Some(None)` if the entry stays (more completions
    /// follow: `IORING_CQE_F_MORE`); else the entry leaves, and the
    /// table's reference comes back (the driver may pool the cell).
    pub(crate) fn deliver(
        &mut self,
        user_data: u64,
        res: i32,
        flags: u32,
    ) -> Option<Option<Arc<dyn Completable>>> {
        let more = cqueue::more(flags);
        let key = (user_data & 0xffff_ffff) as usize;
        let generation = (user_data >> 32) as u32;
        let (g, target) = self.ops.get(key)?;
        if *g != generation {
            // Stale: the slot was freed and reused.
            return None;
        }
        if more {
            target.clone().complete_cqe(res, flags);
            return Some(None);
        }
        let target = self.ops.remove(key).1;
        target.complete_cqe(res, flags);
        Some(Some(target))
    }

    /// Takes the entry `user_data` names out of the table, for its final
    /// completion to be delivered by the caller (`complete_cqe`, then the
    /// cell); `None` if it is stale. For single-shot operations: a
    /// multishot one leaves the table only with its last completion.
    pub(crate) fn take_final(&mut self, user_data: u64) -> Option<Arc<dyn Completable>> {
        let key = (user_data & 0xffff_ffff) as usize;
        match self.ops.get(key) {
            Some((g, _)) if u64::from(*g) == user_data >> 32 => Some(self.ops.remove(key).1),
            _ => None,
        }
    }

    /// True unless `user_data` names a live entry that must be completed
    /// by the ring's owner ([`Completable::peer_may_complete`]); a stale
    /// one is the caller's to drop (`deliver` does).
    pub(crate) fn peer_may_complete(&self, user_data: u64) -> bool {
        let key = (user_data & 0xffff_ffff) as usize;
        match self.ops.get(key) {
            Some((g, target)) if u64::from(*g) == user_data >> 32 => target.peer_may_complete(),
            _ => true,
        }
    }

    /// Entries in the table (cancelled ones included).
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The `user_data` of every entry.
    pub(crate) fn user_data(&self) -> Vec<u64> {
        self.ops
            .iter()
            .map(|(key, (g, _))| (u64::from(*g) << 32) | key as u64)
            .collect()
    }

    /// Takes every entry out (the driver's drop).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Arc<dyn Completable>> + '_ {
        self.ops.drain().map(|(_, target)| target)
    }
}
