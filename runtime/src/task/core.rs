//! The one allocation behind every task: header, core (scheduler + future or
//! output) and trailer (join waker), laid out so a `*mut Header` is also a
//! pointer to the whole cell.

use std::{alloc::Layout, future::Future, panic::Location, ptr::NonNull, task::Waker};

use std::{marker::PhantomData, mem::ManuallyDrop, ops::Deref};

use super::{list::Links, raw::Vtable, state::State, Id, JoinError};
use crate::cancel::{NodeArc, NodeSlot, SlotLayout};
use crate::{
    cancel::node::Node,
    facade::{
        atomic::{
            AtomicPtr,
            Ordering::{Relaxed, SeqCst},
        },
        UnsafeCell,
    },
};

/// The part of a task every holder can use without knowing its future type.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) state: State,
    pub(crate) vtable: &'static Vtable,
    pub(crate) id: Id,
    /// Links in the runtime's task registry; guarded by the registry shard lock.
    pub(crate) links: Links,
    /// The task's cancellation node (an `Arc::into_raw`), or null. Set at
    /// spawn for tasks with a parent or a deadline; installed lazily (one
    /// CAS) for roots when first needed. Released when the cell is freed.
    pub(crate) node: AtomicPtr<Node>,
    /// The task's `tracing` span, set once before the task is shared.
    #[cfg(feature = "tracing")]
    pub(crate) span: std::sync::OnceLock<tracing::Span>,
    /// Where the task was spawned (`#[track_caller]` on the spawn
    /// functions). Immutable; read by the stuck-poll watchdog.
    location: &'static Location<'static>,
}

// The header is what every holder touches (the state word first): one
// cache line. The spawn location took the last 8 bytes; `links` holds the
// schedule stamp and the await byte in its padding, with 2 bytes left.
// (With the `tracing` feature the span makes it larger, by choice.)
#[cfg(all(
    target_pointer_width = "64",
    not(weft_loom),
    not(weft_shuttle),
    not(feature = "tracing")
))]
const _: () = assert!(
    size_of::<Header>() <= 64,
    "the task header outgrew one cache line"
);

impl Drop for Header {
    fn drop(&mut self) {
        let ptr = self.node.load(SeqCst);
        if !ptr.is_null() {
            // SAFETY: a non-null pointer came from `Arc::into_raw` and this
            // is the header's one release of it.
            drop(unsafe { NodeArc::from_raw(ptr) });
        }
    }
}

/// A borrowed `NodeArc` that lives as long as the header it came from.
pub(crate) struct NodeRef<'a> {
    arc: ManuallyDrop<NodeArc>,
    _header: PhantomData<&'a Header>,
}

impl Deref for NodeRef<'_> {
    type Target = NodeArc;
    fn deref(&self) -> &NodeArc {
        &self.arc
    }
}

/// Short sampled polls it takes for a task marked long-polling to lose
/// the mark: a task that does one long poll per request among a few short
/// ones (a handler that computes, then writes and reads) stays marked.
const LONG_POLL_STICKY: u8 = 8;

/// The long-poll count after a sampled poll (see `Header::note_poll_ticks`).
fn next_long_poll_count(count: u8, long: bool) -> u8 {
    match (long, count) {
        (true, 0) => 1,
        (true, _) => 1 + LONG_POLL_STICKY,
        (false, 0..=2) => 0,
        (false, _) => count - 1,
    }
}

impl Header {
    /// Stamps a sampled schedule with `ticks::stamp()`.
    ///
    /// The stamp (in `links.woken_at`, see there) is nonzero while the
    /// task's current schedule is sampled. It is written by the holder of
    /// the task's `Notified` just before it queues it, read and cleared by
    /// the worker that pops it (the queue orders the two). A `std` atomic:
    /// a statistic, not synchronisation (see `scheduler::metrics`).
    #[inline]
    pub(crate) fn set_woken_at(&self, stamp: u32) {
        self.links
            .woken_at
            .store(stamp, std::sync::atomic::Ordering::Relaxed);
    }

    /// The stamp of the schedule being consumed, clearing it; 0 if that
    /// schedule was not sampled.
    #[inline]
    pub(crate) fn take_woken_at(&self) -> u32 {
        let woken_at = &self.links.woken_at;
        let stamp = woken_at.load(std::sync::atomic::Ordering::Relaxed);
        if stamp != 0 {
            woken_at.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        stamp
    }

    /// True if the task polls long: two sampled polls in a row took at
    /// least `ticks::LONG_POLL` (one alone may be a preemption), and
    /// fewer than [`LONG_POLL_STICKY`] sampled polls since were short (a
    /// hint for the scheduler; see `scheduler::worker`, "Long polls").
    #[inline]
    pub(crate) fn long_poll(&self) -> bool {
        self.links
            .long_poll
            .load(std::sync::atomic::Ordering::Relaxed)
            > 1
    }

    /// Records a sampled poll of `ticks` (by the worker that ran it, while
    /// it holds a reference). The count is 0 (short), 1 (one long sample)
    /// or `1 + n` (long, `n` short samples from losing the mark). Writes
    /// only when it changes.
    pub(crate) fn note_poll_ticks(&self, ticks: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let count = self.links.long_poll.load(Relaxed);
        let next = next_long_poll_count(count, crate::runtime::ticks::is_long_poll(ticks));
        if next != count {
            self.links.long_poll.store(next, Relaxed);
        }
    }

    /// What the task waits for: an `Awaiting` code, stored (Relaxed) by
    /// the await point that returned `Pending`, cleared before each poll;
    /// read only by the task dump (`runtime/dump.rs`). A std atomic in the
    /// registry links' padding: a hint no protocol depends on.
    #[inline]
    pub(crate) fn awaiting(&self) -> &std::sync::atomic::AtomicU8 {
        &self.links.awaiting
    }

    /// Where the task was spawned: the caller of `weft::spawn`,
    /// `Handle::spawn`, `task::Builder::spawn`, `TaskGroup::spawn`, ...
    pub(crate) fn spawn_location(&self) -> &'static Location<'static> {
        self.location
    }

    pub(crate) fn node_ptr(&self) -> *const Node {
        self.node.load(SeqCst)
    }

    /// The task's node, if it has one.
    pub(crate) fn node(&self) -> Option<NodeRef<'_>> {
        let ptr = self.node_ptr();
        (!ptr.is_null()).then(|| NodeRef {
            // SAFETY: the header owns one strong count of the node until it
            // is dropped; ManuallyDrop keeps this copy from releasing it.
            arc: ManuallyDrop::new(unsafe { NodeArc::from_raw(ptr) }),
            _header: PhantomData,
        })
    }

    /// Gives a task that is not shared yet (just allocated, not bound or
    /// scheduled) its node: a plain store, as nothing can race it; whoever
    /// gets the task later does so through a lock or a queue.
    pub(crate) fn set_node_unshared(&self, node: NodeArc) {
        debug_assert!(self.node.load(Relaxed).is_null());
        self.node
            .store(NodeArc::into_raw(node) as *mut Node, Relaxed);
    }

    /// Installs `node` if the task has none yet. Returns the node that is
    /// installed (ours or the one that won the race).
    pub(crate) fn install_node(&self, node: NodeArc) -> (NodeRef<'_>, bool) {
        let ptr = NodeArc::into_raw(node) as *mut Node;
        // SeqCst: ordered against the state word in `complete` (see there).
        match self
            .node
            .compare_exchange(std::ptr::null_mut(), ptr, SeqCst, SeqCst)
        {
            Ok(_) => (self.node().expect("just installed"), true),
            Err(_) => {
                // SAFETY: ours never left this function.
                drop(unsafe { NodeArc::from_raw(ptr) });
                (self.node().expect("installed by the winner"), false)
            }
        }
    }
}

/// What the task's slot holds over its life.
pub(crate) enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

pub(crate) struct Core<F: Future, S> {
    pub(crate) scheduler: S,
    /// Owned by whoever holds RUNNING; after COMPLETE by the join handle if
    /// it is interested, else by the completer.
    pub(crate) stage: UnsafeCell<Stage<F>>,
}

pub(crate) struct Trailer {
    /// See `JOIN_WAKER` in `state.rs` for who may touch this when.
    pub(crate) join_waker: UnsafeCell<Option<Waker>>,
}

/// The largest cell that shares its block with the task's node.
const MAX_CELL_WITH_NODE: usize = 512;

#[repr(C)]
pub(crate) struct Cell<F: Future, S> {
    pub(crate) header: Header,
    pub(crate) core: Core<F, S>,
    pub(crate) trailer: Trailer,
}

impl<F: Future, S> Cell<F, S> {
    /// Allocates a cell (from the per-thread block cache, see `alloc.rs`),
    /// with room behind it for the task's cancellation node if `with_node`
    /// (see `NodeSlot`). The slot, if returned, must be given the task's
    /// node before the task is shared: the cell's free relies on it.
    pub(crate) fn new(
        future: F,
        scheduler: S,
        id: Id,
        vtable: &'static Vtable,
        with_node: bool,
        location: &'static Location<'static>,
    ) -> (NonNull<Self>, Option<NodeSlot>) {
        let block = with_node.then(Self::node_block).flatten();
        let layout = block
            .as_ref()
            .map_or(Layout::new::<Self>(), |(_, layout, _)| *layout);
        let ptr = crate::alloc::alloc(layout);
        let slot = block.map(|(slot, layout, offset)| {
            // SAFETY: `node_block` checked what `NodeSlot::new` asks: the
            // block has the node's alignment and a 32-bit size, and the
            // slot is aligned and ends it.
            unsafe { NodeSlot::new(slot, ptr, offset, layout) }
        });
        let ptr = ptr.cast::<Self>();
        // SAFETY: a fresh block sized and aligned for `Self` (first in it).
        unsafe {
            ptr.as_ptr().write(Cell {
                header: Header {
                    state: State::new(),
                    vtable,
                    id,
                    links: Links::default(),
                    node: AtomicPtr::new(std::ptr::null_mut()),
                    #[cfg(feature = "tracing")]
                    span: std::sync::OnceLock::new(),
                    location,
                },
                core: Core {
                    scheduler,
                    stage: UnsafeCell::new(Stage::Running(future)),
                },
                trailer: Trailer {
                    join_waker: UnsafeCell::new(None),
                },
            })
        };
        (ptr, slot)
    }

    /// The layout of a cell followed by a node slot, and the slot's offset;
    /// `None` if the node gets a block of its own: under loom, for a future
    /// aligned beyond a cache line, and for a cell larger than
    /// [`MAX_CELL_WITH_NODE`] (the block stays allocated for as long as
    /// the node is referenced, which can outlast the task: see `Node`'s
    /// `keep_alive` and `LINGERING`; a large cell is not kept for that).
    fn node_block() -> Option<(SlotLayout, Layout, usize)> {
        let slot = NodeSlot::layout()?;
        let node = slot.layout();
        if size_of::<Self>() > MAX_CELL_WITH_NODE {
            return None;
        }
        let (layout, offset) = Layout::new::<Self>().extend(node).ok()?;
        let layout = layout.pad_to_align();
        (layout.align() == node.align()).then_some((slot, layout, offset))
    }

    /// Drops the cell's contents and frees it.
    ///
    /// # Safety
    /// `ptr` came from [`Cell::new`] and nothing can reach the cell any more.
    pub(crate) unsafe fn free(ptr: NonNull<Self>) {
        let cell = ptr.as_ptr();
        // SAFETY: the caller's precondition: the value is live and ours.
        let node = unsafe { (*cell).header.node_ptr() };
        // A node in a slot is always the one its own cell made room for: a
        // node installed later (`install_node`) has a block of its own.
        let shares_block = !node.is_null() && NodeSlot::holds(node);
        // SAFETY: as above. The header goes last: its count of the node may
        // be the node's last, and then it frees a shared block, cell and
        // all; until then nothing else can (the count keeps it).
        unsafe {
            std::ptr::drop_in_place(&raw mut (*cell).core);
            std::ptr::drop_in_place(&raw mut (*cell).trailer);
            std::ptr::drop_in_place(&raw mut (*cell).header);
        }
        if !shares_block {
            // SAFETY: allocated by `new` with this layout (no slot); the
            // value is dropped.
            unsafe { crate::alloc::dealloc(ptr.cast(), Layout::new::<Self>()) };
        }
    }
}

impl<F: Future, S> Core<F, S> {
    /// # Safety
    /// The caller owns the stage (see the field doc).
    pub(crate) unsafe fn set_stage(&self, stage: Stage<F>) {
        // SAFETY: exclusive access is the caller's precondition.
        self.stage.with_mut(|ptr| unsafe { *ptr = stage });
    }

    /// # Safety
    /// The caller owns the stage and it is `Finished`.
    pub(crate) unsafe fn take_output(&self) -> Result<F::Output, JoinError> {
        // SAFETY: exclusive access is the caller's precondition.
        self.stage.with_mut(
            |ptr| match std::mem::replace(unsafe { &mut *ptr }, Stage::Consumed) {
                Stage::Finished(output) => output,
                _ => panic!("JoinHandle polled after completion"),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{next_long_poll_count as next, LONG_POLL_STICKY};

    fn is_long(count: u8) -> bool {
        count > 1
    }

    #[test]
    fn one_long_sample_is_not_enough_two_in_a_row_are() {
        let suspect = next(0, true);
        assert!(!is_long(suspect));
        assert_eq!(
            next(suspect, false),
            0,
            "a short sample clears a lone long one"
        );
        assert!(is_long(next(suspect, true)));
    }

    #[test]
    fn the_mark_lasts_until_enough_short_samples() {
        let mut count = next(next(0, true), true);
        for short in 1..LONG_POLL_STICKY {
            count = next(count, false);
            assert!(is_long(count), "lost after {short} short samples");
        }
        count = next(count, false);
        assert_eq!(count, 0, "kept after {LONG_POLL_STICKY} short samples");
        // A long sample while marked renews the mark in full.
        let mut count = next(next(0, true), true);
        count = next(next(count, false), true);
        assert_eq!(count, 1 + LONG_POLL_STICKY);
    }
}
