//! Shards: who may touch which free list.
//!
//! Every live thread that uses a pool holds a small id from the process-wide
//! registry (`sync_ext`); ids are unique among live threads and reused after a
//! thread exits. Shard `i` of every pool belongs to the thread holding id `i`:
//!
//! - its **local list** is touched only by that owner, with plain loads and
//!   stores (no atomic read-modify-write);
//! - its **remote list** is a Treiber stack that any thread pushes onto
//!   (objects handed out by this shard and returned on another thread) and
//!   that is only ever emptied whole, by one `swap`. Because no thread ever
//!   pops a single node, no CAS compares against a head whose `next` may have
//!   changed underneath it: the ABA problem of Treiber pops cannot arise, so no
//!   tag is needed.
//!
//! Threads whose id is beyond a pool's shard count share the **overflow
//! list**, a `Mutex<Vec<u32>>`.
//!
//! An index goes back to the shard that handed it out (its *origin*), so a
//! producer/consumer pair does not drain the producer's shard into the
//! consumer's. Lists link slots through a `next` cell inside each slot.

use std::{fmt, marker::PhantomData};

use super::{
    pages::Pages,
    sync_ext::{self, thread_local, Registry},
};
use crate::sync::{
    self,
    atomic::{AtomicU32, AtomicU64, Ordering},
    Mutex, UnsafeCell,
};

/// End of a list.
pub(crate) const NIL: u32 = u32::MAX;
/// Origin of an index handed out by the overflow list.
pub(crate) const OVERFLOW: u32 = u32::MAX;

/// Most shards a pool may have.
pub(crate) const MAX_SHARDS: usize = 4096;

/// Shards when the builder is not told: ids are dense over the live threads
/// of the whole process, so this is "threads using pools at once".
#[cfg(not(weft_loom))]
pub(crate) const DEFAULT_SHARDS: usize = 64;
/// Two under loom, so a third model thread exercises the overflow list.
#[cfg(weft_loom)]
pub(crate) const DEFAULT_SHARDS: usize = 2;

/// A slot that can sit on a free list.
pub(crate) trait Linked {
    /// The index of the next slot on the list this slot is on. Written only by
    /// the thread putting the slot on a list, read by the one taking it off.
    fn next(&self) -> &UnsafeCell<u32>;
}

/// This thread's registered id; dropping it (at thread exit) frees the id.
struct Registration {
    id: u32,
    registry: Registry,
}

impl Registration {
    fn new() -> Self {
        let registry = sync_ext::registry();
        let id = sync::lock(&registry).insert(());
        // An id past u32 would need four billion live threads; such a thread
        // simply has no shard and uses the overflow list.
        let id = u32::try_from(id)
            .ok()
            .filter(|&id| id < OVERFLOW - 1)
            .unwrap_or(OVERFLOW);
        Self { id, registry }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        #[cfg(not(weft_loom))]
        CACHED_ID.with(|id| id.set(EXITED));
        // The unlock here and the lock in `Registration::new` order this
        // thread's last use of its shards before the next owner's first use.
        sync::lock(&self.registry).try_remove(self.id as usize);
    }
}

thread_local! {
    static REGISTRATION: Registration = Registration::new();
}

/// `CACHED_ID` before this thread first asks for its id.
#[cfg(not(weft_loom))]
const UNREGISTERED: u32 = u32::MAX - 1;
/// `CACHED_ID` once the thread's registration is dropped (thread exit): no
/// shard from then on.
#[cfg(not(weft_loom))]
const EXITED: u32 = OVERFLOW;

// A copy of the id in a `const`, drop-free thread-local: reading it is one
// TLS load with no lazy-init or destructor-state check, which the fast path
// pays twice per get+put. loom's thread-locals have no `const` form, so under
// loom the id is read from `REGISTRATION` directly.
#[cfg(not(weft_loom))]
std::thread_local! {
    static CACHED_ID: std::cell::Cell<u32> = const { std::cell::Cell::new(UNREGISTERED) };
}

/// This thread's id, or `None` if it has none (being torn down, or an id past
/// `u32`).
#[cfg(not(weft_loom))]
#[inline]
pub(crate) fn current_id() -> Option<u32> {
    match CACHED_ID.with(std::cell::Cell::get) {
        UNREGISTERED => register(),
        EXITED => None,
        id => Some(id),
    }
}

#[cfg(not(weft_loom))]
#[cold]
fn register() -> Option<u32> {
    let id = REGISTRATION.try_with(|r| r.id).ok()?;
    CACHED_ID.with(|cached| cached.set(id));
    (id != OVERFLOW).then_some(id)
}

/// This thread's id, or `None` while the thread is being torn down.
#[cfg(weft_loom)]
#[inline]
pub(crate) fn current_id() -> Option<u32> {
    REGISTRATION.try_with(|r| r.id).ok()
}

/// The cached id as it stands, without registering: a registered id, or
/// `UNREGISTERED` / `EXITED`, both far above `MAX_SHARDS`. So "`raw_id()` is
/// a valid index into the shards" means "this thread owns that shard", with
/// one compare and no branch on the sentinels. For the fast paths only; a
/// miss falls back to [`Shards::here`], which registers.
#[cfg(not(weft_loom))]
#[inline(always)]
pub(crate) fn raw_id() -> u32 {
    CACHED_ID.with(std::cell::Cell::get)
}

/// Under loom there is no cache: the registered id, or `OVERFLOW` (no shard).
#[cfg(weft_loom)]
#[inline]
pub(crate) fn raw_id() -> u32 {
    current_id().unwrap_or(OVERFLOW)
}

/// Counters of one shard. Fields are written by the shard's owner only (a
/// load and a store, so readers see whole values and the fast path has no
/// read-modify-write), except `returned_remote`, which other threads bump
/// when they push onto the remote list, and the overflow list's counters,
/// which its users bump atomically.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    /// Indices handed out by this shard (fresh or reused).
    taken: AtomicU64,
    /// Of those, never-used indices.
    fresh: AtomicU64,
    /// Indices returned to this shard by its owner.
    returned_local: AtomicU64,
    /// Indices returned to this shard by other threads.
    returned_remote: AtomicU64,
}

/// Adds one to a counter that only the caller writes, returning the new value.
#[inline]
fn bump_owned(counter: &AtomicU64) {
    // Relaxed: counters order nothing; a single writer makes load+store exact.
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Adds one to a counter that several threads write.
#[inline]
fn bump_shared(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl ShardStats {
    /// Records a hand-out; `owned` when the caller owns the shard.
    #[inline]
    fn on_take(&self, fresh: bool, owned: bool) {
        let bump = if owned { bump_owned } else { bump_shared };
        bump(&self.taken);
        if fresh {
            bump(&self.fresh);
        }
    }
}

/// Sums of every shard's counters, read without stopping the world: exact when
/// no thread is using the pool, approximate while they are.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) taken: u64,
    pub(crate) reused: u64,
    pub(crate) returned: u64,
}

/// One shard: a local list for its owner and a remote list for everyone else.
/// Aligned so that two owners never share a cache line.
#[repr(align(128))]
struct Shard {
    /// Head of the local list; only the owner reads or writes it.
    local: UnsafeCell<u32>,
    /// Head of the remote list.
    remote: AtomicU32,
    stats: ShardStats,
}

impl Shard {
    fn new() -> Self {
        Self {
            local: UnsafeCell::new(NIL),
            remote: AtomicU32::new(NIL),
            stats: ShardStats::default(),
        }
    }

    /// Pushes `idx` onto the remote list; any thread may call it.
    fn push_remote<S: Linked + Default>(&self, idx: u32, pages: &Pages<S>) {
        let slot = pages.claimed_slot(idx);
        // Relaxed: the head's value is only linked below, never dereferenced.
        let mut head = self.remote.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller owns `idx` (it came off a list or was claimed,
            // and is on no list), so nobody else reads or writes its `next`
            // until the CAS below publishes it.
            slot.next().with_mut(|next| unsafe { *next = head });
            // Release: publishes the slot's contents and `next` to the thread
            // that takes the list with `swap(Acquire)`.
            match self
                .remote
                .compare_exchange_weak(head, idx, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Empties the remote list, returning its head (or `NIL`).
    fn take_remote(&self) -> u32 {
        // Relaxed load first, so an empty list costs no read-modify-write.
        if self.remote.load(Ordering::Relaxed) == NIL {
            return NIL;
        }
        // Acquire: pairs with the pushers' Release CAS; the chain of CASes is
        // one release sequence, so every node's `next` and contents are visible.
        self.remote.swap(NIL, Ordering::Acquire)
    }
}

/// Proof that the current thread owns shard `id`. Not `Send`, and only made
/// from the thread's registered id: by [`Shards::here`], or by the fast paths
/// after checking the cached id.
pub(crate) struct Owner<'a> {
    id: u32,
    shard: &'a Shard,
    _not_send: PhantomData<*const ()>,
}

impl Owner<'_> {
    fn pop_local<'p, S: Linked + Default>(&self, pages: &'p Pages<S>) -> Option<(u32, &'p S)> {
        // SAFETY: only the owner touches `local`; `Owner` is not `Send` and
        // exists only on the thread whose registered id is `self.id`, and ids
        // are unique among live threads. No reference to the head outlives
        // the closure, so reentrant calls are fine.
        let head = self.shard.local.with(|head| unsafe { *head });
        if head == NIL {
            return None;
        }
        let slot = pages.claimed_slot(head);
        // SAFETY: `head` is on our local list, so its `next` is ours alone.
        let next = slot.next().with(|next| unsafe { *next });
        // SAFETY: see above.
        self.shard.local.with_mut(|h| unsafe { *h = next });
        Some((head, slot))
    }

    /// Pushes `idx`, whose slot is `slot`, onto the local list.
    fn push_local<S: Linked>(&self, idx: u32, slot: &S) {
        // SAFETY: see `pop_local`.
        let head = self.shard.local.with(|head| unsafe { *head });
        // SAFETY: the caller owns `idx`, which is on no list.
        slot.next().with_mut(|next| unsafe { *next = head });
        // SAFETY: see `pop_local`.
        self.shard.local.with_mut(|h| unsafe { *h = idx });
    }

    /// Splices a chain taken from a remote list in front of the local list.
    fn splice<S: Linked + Default>(&self, chain: u32, pages: &Pages<S>) {
        let mut tail = chain;
        loop {
            // SAFETY: the chain was taken whole with `swap`, so its nodes are ours.
            let next = pages
                .claimed_slot(tail)
                .next()
                .with(|next| unsafe { *next });
            if next == NIL {
                break;
            }
            tail = next;
        }
        // SAFETY: see `pop_local`.
        let head = self.shard.local.with(|head| unsafe { *head });
        // SAFETY: `tail` is ours (see above).
        pages
            .claimed_slot(tail)
            .next()
            .with_mut(|next| unsafe { *next = head });
        // SAFETY: see `pop_local`.
        self.shard.local.with_mut(|h| unsafe { *h = chain });
    }
}

/// Where the calling thread stands with respect to one pool's shards.
pub(crate) enum Here<'a> {
    /// The thread owns a shard.
    Owner(Owner<'a>),
    /// The thread's id is past the shard count (or it is exiting): it uses the
    /// overflow list.
    Foreign,
}

impl Here<'_> {
    /// The origin to stamp on an index handed out here.
    pub(crate) fn origin(&self) -> u32 {
        match self {
            Here::Owner(owner) => owner.id,
            Here::Foreign => OVERFLOW,
        }
    }
}

/// All the free lists of one pool.
pub(crate) struct Shards {
    shards: Box<[Shard]>,
    overflow: Mutex<Vec<u32>>,
    overflow_stats: ShardStats,
}

impl Shards {
    /// `count` shards (`1..=MAX_SHARDS`, checked by the builders).
    pub(crate) fn new(count: usize) -> Self {
        Self {
            shards: (0..count).map(|_| Shard::new()).collect(),
            overflow: Mutex::new(Vec::new()),
            overflow_stats: ShardStats::default(),
        }
    }

    /// The calling thread's standing.
    #[inline]
    pub(crate) fn here(&self) -> Here<'_> {
        match current_id().and_then(|id| self.shards.get(id as usize).map(|s| (id, s))) {
            Some((id, shard)) => Here::Owner(Owner {
                id,
                shard,
                _not_send: PhantomData,
            }),
            None => Here::Foreign,
        }
    }

    /// Fast path of `take`: if the calling thread is registered and owns a
    /// shard, pops its local list. Returns the index, its slot and the origin
    /// to stamp on it. `None` means "ask [`here`](Self::here) and
    /// [`take`](Self::take)", never "nothing free".
    #[inline]
    pub(crate) fn take_owned<'p, S: Linked + Default>(
        &self,
        pages: &'p Pages<S>,
    ) -> Option<(u32, &'p S, u32)> {
        let id = raw_id();
        // Sentinels are past `MAX_SHARDS`, so this also checks "registered".
        let shard = self.shards.get(id as usize)?;
        // The thread's registered id is `id`, so it owns shard `id`: the same
        // proof `here` builds.
        let owner = Owner {
            id,
            shard,
            _not_send: PhantomData,
        };
        let (idx, slot) = owner.pop_local(pages)?;
        owner.shard.stats.on_take(false, true);
        Some((idx, slot, id))
    }

    /// Takes a free index for `here`: its local list, then its remote list
    /// (or the overflow list for a foreign thread). Records the hand-out.
    #[inline]
    pub(crate) fn take<'p, S: Linked + Default>(
        &self,
        here: &Here<'_>,
        pages: &'p Pages<S>,
    ) -> Option<(u32, &'p S)> {
        if let Here::Owner(owner) = here {
            if let Some(taken) = owner.pop_local(pages) {
                owner.shard.stats.on_take(false, true);
                return Some(taken);
            }
        }
        self.take_slow(here, pages)
    }

    /// `take` when the local list is empty or the thread has no shard.
    #[cold]
    #[inline(never)]
    fn take_slow<'p, S: Linked + Default>(
        &self,
        here: &Here<'_>,
        pages: &'p Pages<S>,
    ) -> Option<(u32, &'p S)> {
        let taken = match here {
            Here::Owner(owner) => {
                let chain = owner.shard.take_remote();
                if chain == NIL {
                    return None;
                }
                owner.splice(chain, pages);
                owner.pop_local(pages)?
            }
            Here::Foreign => {
                let idx = sync::lock(&self.overflow).pop()?;
                (idx, pages.claimed_slot(idx))
            }
        };
        self.record_take(here, false);
        Some(taken)
    }

    /// Records a hand-out of a fresh (never used) index.
    pub(crate) fn record_fresh(&self, here: &Here<'_>) {
        self.record_take(here, true);
    }

    fn record_take(&self, here: &Here<'_>, fresh: bool) {
        match here {
            Here::Owner(owner) => owner.shard.stats.on_take(fresh, true),
            Here::Foreign => self.overflow_stats.on_take(fresh, false),
        }
    }

    /// Returns `idx`, handed out with origin `origin`, to its origin's lists:
    /// the local list if the caller owns that shard, else its remote list.
    #[inline]
    pub(crate) fn put<S: Linked + Default>(
        &self,
        idx: u32,
        slot: &S,
        origin: u32,
        pages: &Pages<S>,
    ) {
        // `OVERFLOW` is past the shard count, so a foreign origin misses here.
        if let Some(shard) = self.shards.get(origin as usize) {
            // No registration on this path: an unregistered thread does not
            // own `origin` and takes the slow path, as it should.
            if raw_id() == origin {
                // The caller's registered id is `origin`, so it owns the shard.
                let owner = Owner {
                    id: origin,
                    shard,
                    _not_send: PhantomData,
                };
                owner.push_local(idx, slot);
                bump_owned(&shard.stats.returned_local);
                return;
            }
        }
        self.put_slow(idx, origin, pages);
    }

    /// `put` from a thread that does not own the origin shard.
    #[cold]
    #[inline(never)]
    fn put_slow<S: Linked + Default>(&self, idx: u32, origin: u32, pages: &Pages<S>) {
        if origin == OVERFLOW {
            sync::lock(&self.overflow).push(idx);
            bump_shared(&self.overflow_stats.returned_remote);
        } else {
            let shard = &self.shards[origin as usize];
            shard.push_remote(idx, pages);
            bump_shared(&shard.stats.returned_remote);
        }
    }

    /// At the bound with nothing free here: moves every other shard's remote
    /// list to `here`. Returns whether anything moved. Local lists of other
    /// shards are never touched (their owners may be using them).
    pub(crate) fn steal<S: Linked + Default>(&self, here: &Here<'_>, pages: &Pages<S>) -> bool {
        let mut moved = false;
        for shard in self.shards.iter() {
            let chain = shard.take_remote();
            if chain == NIL {
                continue;
            }
            moved = true;
            match here {
                Here::Owner(owner) => owner.splice(chain, pages),
                Here::Foreign => {
                    let mut overflow = sync::lock(&self.overflow);
                    let mut idx = chain;
                    while idx != NIL {
                        overflow.push(idx);
                        // SAFETY: the chain was taken whole with `swap`.
                        idx = pages.claimed_slot(idx).next().with(|next| unsafe { *next });
                    }
                }
            }
        }
        moved
    }

    /// Sums of all counters.
    pub(crate) fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        let all = self
            .shards
            .iter()
            .map(|s| &s.stats)
            .chain([&self.overflow_stats]);
        for stats in all {
            totals.taken += stats.taken.load(Ordering::Relaxed);
            totals.reused += stats
                .taken
                .load(Ordering::Relaxed)
                .saturating_sub(stats.fresh.load(Ordering::Relaxed));
            totals.returned += stats.returned_local.load(Ordering::Relaxed)
                + stats.returned_remote.load(Ordering::Relaxed);
        }
        totals
    }
}

impl fmt::Debug for Shards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shards")
            .field("count", &self.shards.len())
            .field("totals", &self.totals())
            .finish()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use super::*;

    struct Node(UnsafeCell<u32>);

    impl Default for Node {
        fn default() -> Self {
            Self(UnsafeCell::new(NIL))
        }
    }

    impl Linked for Node {
        fn next(&self) -> &UnsafeCell<u32> {
            &self.0
        }
    }

    #[test]
    fn thread_ids_are_unique_among_live_threads() {
        let barrier = std::sync::Barrier::new(8);
        let ids: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let id = current_id().unwrap();
                        barrier.wait(); // all alive at once
                        id
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "{ids:?}");
    }

    #[test]
    fn remote_pushes_come_back_in_one_take() {
        let pages: Pages<Node> = Pages::new(8);
        let shards = Shards::new(1);
        for _ in 0..3 {
            pages.claim();
        }
        let shard = &shards.shards[0];
        for idx in 0..3 {
            shard.push_remote(idx, &pages);
        }
        let mut idx = shard.take_remote();
        let mut seen = Vec::new();
        while idx != NIL {
            seen.push(idx);
            // SAFETY: the chain was taken whole; this thread alone reads it.
            idx = pages.claimed_slot(idx).next().with(|n| unsafe { *n });
        }
        assert_eq!(seen, [2, 1, 0]);
        assert_eq!(shard.take_remote(), NIL);
    }
}
