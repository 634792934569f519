//! The reference-counted pointer to a [`Node`], with a per-thread cache of
//! node allocations.
//!
//! Every task spawned inside a task gets a node, so nodes are allocated at
//! spawn rate, usually on one worker and freed on another. Through malloc
//! that made workers contend on each other's arena locks (a quarter of the
//! `ping_pong` workload, in the profile), so node blocks come from the
//! runtime's per-thread block cache (`crate::alloc`), as task cells do. The API mirrors
//! the parts of `Arc` the tree uses; under loom it *is* loom's `Arc`, so the
//! models check the tree with loom's leak detection.

#[cfg(weft_loom)]
pub(crate) use self::loom::{NodeArc, NodeSlot, SlotLayout};

#[cfg(not(weft_loom))]
pub(crate) use self::pooled::{NodeArc, NodeSlot, SlotLayout};

#[cfg(weft_loom)]
mod loom {
    use super::super::node::Node;

    pub(crate) type NodeArc = crate::facade::Arc<Node>;

    /// Under loom no node shares a task's block: loom's `Arc` tracks every
    /// node. Neither type has a value, so no slot can be made.
    pub(crate) enum NodeSlot {}
    pub(crate) enum SlotLayout {}

    impl SlotLayout {
        pub(crate) fn layout(&self) -> std::alloc::Layout {
            match *self {}
        }
    }

    impl NodeSlot {
        pub(crate) fn layout() -> Option<SlotLayout> {
            None
        }

        /// # Safety
        /// As for the pooled `NodeSlot::new` (never callable here).
        pub(crate) unsafe fn new(
            token: SlotLayout,
            _block: std::ptr::NonNull<u8>,
            _offset: usize,
            _layout: std::alloc::Layout,
        ) -> NodeSlot {
            match token {}
        }

        pub(crate) fn into_arc(self, _node: Node) -> NodeArc {
            match self {}
        }

        pub(crate) fn holds(_node: *const Node) -> bool {
            false
        }
    }
}

#[cfg(not(weft_loom))]
mod pooled {
    use std::{
        alloc::Layout,
        mem::offset_of,
        ops::Deref,
        ptr::NonNull,
        sync::atomic::{fence, AtomicU32, Ordering::*},
    };

    use super::super::node::Node;

    /// Line-aligned (the block cache has line classes): the count and the
    /// node's hot fields share the first line (see `Node`).
    #[repr(C, align(64))]
    struct Inner {
        /// 32 bits, so that `offset` fits beside it in the node's first
        /// line and the block stays at three lines: a count beyond 2^31 is
        /// refused (as `Arc` refuses one beyond `isize::MAX`).
        count: AtomicU32,
        /// Where the node lives: 0 in a block of its own, else the offset
        /// of this `Inner` in a task's block, at whose end it sits (see
        /// [`NodeSlot`]). Fixed at creation; read when the node is freed.
        offset: u32,
        node: Node,
    }

    /// The alignment of a block that holds a node.
    const BLOCK_ALIGN: usize = std::mem::align_of::<Inner>();

    /// Room for a node at the end of a task's block (`task::core::Cell`).
    ///
    /// A task spawned under a parent or with a deadline gets its node at
    /// spawn. In one block with the task, the node and the task header
    /// share a page and sit a few lines apart, and the cancel walk, the
    /// woken task's first poll and its completion touch both: in separate
    /// blocks, reused in freeing order, each was a TLB and a cache miss of
    /// its own (docs/CANCELLATION.md, "Where a task's node lives").
    ///
    /// The block is then shared: the task's header holds one count of the
    /// node, and the block is freed when the node's last count goes, which
    /// is never before the task is dropped (see `Cell::free`).
    pub(crate) struct NodeSlot {
        block: NonNull<u8>,
        offset: u32,
    }

    /// What a slot needs in a block; only [`NodeSlot::layout`] makes one.
    #[derive(Clone, Copy)]
    pub(crate) struct SlotLayout(());

    impl SlotLayout {
        pub(crate) fn layout(&self) -> Layout {
            Layout::new::<Inner>()
        }
    }

    impl NodeSlot {
        /// What a slot needs in a block (`None`: nodes never share one).
        pub(crate) fn layout() -> Option<SlotLayout> {
            Some(SlotLayout(()))
        }

        /// A slot at `offset` in `block`, of `layout`.
        ///
        /// # Safety
        /// `block` came from `crate::alloc::alloc(layout)`, `layout.align()`
        /// is the node's alignment (64), `offset` is not 0, is aligned for
        /// [`NodeSlot::layout`] and the slot ends the block, and the block's
        /// size fits in 32 bits. Nothing
        /// else frees the block: the node does, once the slot is used (see
        /// [`NodeSlot::into_arc`]).
        pub(crate) unsafe fn new(
            _: SlotLayout,
            block: NonNull<u8>,
            offset: usize,
            layout: Layout,
        ) -> NodeSlot {
            debug_assert_eq!(layout.align(), BLOCK_ALIGN);
            debug_assert!(offset > 0 && offset % BLOCK_ALIGN == 0);
            debug_assert_eq!(offset + size_of::<Inner>(), layout.size());
            NodeSlot {
                block,
                offset: u32::try_from(offset).expect("a task block fits in 32 bits"),
            }
        }

        /// True if `node` (live) sits in a slot rather than a block of its own.
        pub(crate) fn holds(node: *const Node) -> bool {
            // SAFETY: `node` sits at a fixed offset inside a live `Inner`.
            let inner = unsafe { node.byte_sub(offset_of!(Inner, node)) }.cast::<Inner>();
            // SAFETY: as above; `offset` never changes after creation.
            unsafe { (*inner).offset != 0 }
        }

        /// Places `node` in the slot, with one reference. The block is freed
        /// (with the layout it was allocated with, at 64-byte alignment)
        /// when the last reference is dropped.
        pub(crate) fn into_arc(self, node: Node) -> NodeArc {
            // SAFETY: the slot's room is in a live block, aligned for
            // `Inner` (see `new`).
            let ptr = unsafe { self.block.byte_add(self.offset as usize) }.cast::<Inner>();
            // SAFETY: as above; nothing else is in this part of the block.
            unsafe {
                ptr.as_ptr().write(Inner {
                    count: AtomicU32::new(1),
                    offset: self.offset,
                    node,
                })
            };
            NodeArc { ptr }
        }
    }

    fn take_block() -> NonNull<Inner> {
        crate::alloc::alloc(Layout::new::<Inner>()).cast()
    }

    /// A block holding `node` with one reference.
    fn block_with(node: Node) -> NonNull<Inner> {
        let ptr = take_block();
        // SAFETY: the block is ours, sized and aligned for `Inner`.
        unsafe {
            ptr.as_ptr().write(Inner {
                count: AtomicU32::new(1),
                offset: 0,
                node,
            })
        };
        ptr
    }

    /// Frees the block of a node that has been dropped.
    fn give_block(ptr: NonNull<Inner>) {
        // SAFETY: the node is dropped but its block is not freed yet.
        let offset = unsafe { (*ptr.as_ptr()).offset } as usize;
        if offset == 0 {
            // SAFETY: allocated by `take_block` with this layout.
            unsafe { crate::alloc::dealloc(ptr.cast(), Layout::new::<Inner>()) }
            return;
        }
        // SAFETY: a slot's node (see `NodeSlot::new`): its block starts
        // `offset` bytes before it and ends with it, was allocated at this
        // alignment, and the task that shared it is dropped (it held a
        // count until then).
        unsafe {
            let base = ptr.cast::<u8>().byte_sub(offset);
            let layout =
                Layout::from_size_align_unchecked(offset + size_of::<Inner>(), BLOCK_ALIGN);
            crate::alloc::dealloc(base, layout)
        }
    }

    /// A strong reference to a node (like `Arc<Node>`).
    pub(crate) struct NodeArc {
        ptr: NonNull<Inner>,
    }

    // SAFETY: shared ownership of a `Node`, which is Send + Sync; the count is
    // atomic.
    unsafe impl Send for NodeArc {}
    // SAFETY: as above.
    unsafe impl Sync for NodeArc {}

    impl NodeArc {
        pub(crate) fn new(node: Node) -> NodeArc {
            NodeArc {
                ptr: block_with(node),
            }
        }

        pub(crate) fn as_ptr(this: &NodeArc) -> *const Node {
            // SAFETY: the block is live while `this` is.
            unsafe { &raw const (*this.ptr.as_ptr()).node }
        }

        pub(crate) fn into_raw(this: NodeArc) -> *const Node {
            let ptr = NodeArc::as_ptr(&this);
            std::mem::forget(this);
            ptr
        }

        /// # Safety
        /// `ptr` came from `into_raw` (or `as_ptr` of a live reference whose
        /// count the caller owns) and that count is handed to the result.
        pub(crate) unsafe fn from_raw(ptr: *const Node) -> NodeArc {
            // SAFETY: `node` sits at a fixed offset inside `Inner` (repr(C)).
            let inner = unsafe { ptr.byte_sub(offset_of!(Inner, node)) } as *mut Inner;
            NodeArc {
                // SAFETY: derived from a non-null node pointer.
                ptr: unsafe { NonNull::new_unchecked(inner) },
            }
        }

        /// # Safety
        /// `ptr` points to a live node.
        pub(crate) unsafe fn increment_strong_count(ptr: *const Node) {
            // SAFETY: forwarded.
            let arc = std::mem::ManuallyDrop::new(unsafe { NodeArc::from_raw(ptr) });
            std::mem::forget(NodeArc::clone(&arc));
        }
    }

    impl Clone for NodeArc {
        fn clone(&self) -> NodeArc {
            // SAFETY: the block is live while `self` is.
            let inner = unsafe { self.ptr.as_ref() };
            // Relaxed, as `Arc::clone`: a new reference comes from an existing one.
            let prev = inner.count.fetch_add(1, Relaxed);
            if prev > i32::MAX as u32 {
                // As `Arc`: a count this high means references are leaked
                // in a loop; unwinding could not undo the increment.
                std::process::abort();
            }
            NodeArc { ptr: self.ptr }
        }
    }

    impl Drop for NodeArc {
        fn drop(&mut self) {
            // SAFETY: the block is live until the count reaches zero.
            let inner = unsafe { self.ptr.as_ref() };
            // Release/Acquire, as `Arc::drop`: every use happens before the free.
            if inner.count.fetch_sub(1, Release) != 1 {
                return;
            }
            fence(Acquire);
            // SAFETY: the last reference: nobody else can reach the value.
            unsafe { std::ptr::drop_in_place(&raw mut (*self.ptr.as_ptr()).node) };
            give_block(self.ptr);
        }
    }

    impl std::fmt::Debug for NodeArc {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            (**self).fmt(f)
        }
    }

    impl Deref for NodeArc {
        type Target = Node;
        fn deref(&self) -> &Node {
            // SAFETY: the block is live while `self` is.
            unsafe { &self.ptr.as_ref().node }
        }
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::alloc::Layout;

    use super::{NodeArc, NodeSlot};
    use crate::cancel::{node::Node, Cause};

    /// A block shaped as a task's: 120 bytes of "cell", then a slot.
    fn task_like_block() -> (std::ptr::NonNull<u8>, usize, Layout) {
        let slot = NodeSlot::layout().expect("slots outside loom").layout();
        let (layout, offset) = Layout::from_size_align(120, 8)
            .unwrap()
            .extend(slot)
            .unwrap();
        let layout = layout.pad_to_align();
        (crate::alloc::alloc(layout), offset, layout)
    }

    #[test]
    fn a_node_keeps_three_lines_so_a_slot_adds_three_to_a_task() {
        assert_eq!(
            NodeSlot::layout().unwrap().layout(),
            Layout::from_size_align(192, 64).unwrap()
        );
        let (block, offset, layout) = task_like_block();
        assert_eq!((offset, layout.size()), (128, 320));
        // SAFETY: from `alloc(layout)`, holds nothing.
        unsafe { crate::alloc::dealloc(block, layout) };
    }

    #[test]
    fn a_node_in_a_slot_frees_the_whole_block_when_its_last_count_goes() {
        let parent = Node::root(None, None, None);
        let (block, offset, layout) = task_like_block();
        // SAFETY: the block is fresh, of `layout`, and the slot ends it.
        let slot = unsafe { NodeSlot::new(NodeSlot::layout().unwrap(), block, offset, layout) };
        let child = Node::child_in(&parent, None, Some("in a slot".into()), None, Some(slot));
        assert!(NodeSlot::holds(NodeArc::as_ptr(&child)));
        assert!(!NodeSlot::holds(NodeArc::as_ptr(&parent)));
        let at = NodeArc::as_ptr(&child) as usize - block.as_ptr() as usize;
        assert!((offset..layout.size()).contains(&at), "{at}");

        // The first count goes (as a task's header does when the task is
        // freed); the other keeps the node, and the block, usable.
        let other = child.clone();
        drop(child);
        assert!(parent.cancel(Cause::Explicit, None));
        assert_eq!(other.cancelled().map(|c| c.cause()), Some(Cause::Parent));
        assert_eq!(other.name().map(|n| &**n), Some("in a slot"));
        other.finish();
        drop(other);

        // Freed with the block's own layout: the thread's cache hands the
        // same block to the next request of that layout.
        let again = crate::alloc::alloc(layout);
        assert_eq!(again, block);
        // SAFETY: from `alloc(layout)`, holds nothing.
        unsafe { crate::alloc::dealloc(again, layout) };
        parent.finish();
    }
}
