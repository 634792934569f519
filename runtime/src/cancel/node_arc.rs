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
pub(crate) type NodeArc = crate::sync::Arc<super::node::Node>;

#[cfg(not(weft_loom))]
pub(crate) use self::pooled::NodeArc;

#[cfg(not(weft_loom))]
mod pooled {
    use std::{
        alloc::Layout,
        mem::offset_of,
        ops::Deref,
        ptr::NonNull,
        sync::atomic::{fence, AtomicUsize, Ordering::*},
    };

    use super::super::node::Node;

    /// Line-aligned (the block cache has line classes): the count and the
    /// node's hot fields share the first line (see `Node`).
    #[repr(C, align(64))]
    struct Inner {
        count: AtomicUsize,
        node: Node,
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
                count: AtomicUsize::new(1),
                node,
            })
        };
        ptr
    }

    fn give_block(ptr: NonNull<Inner>) {
        // SAFETY: allocated by `take_block` with this layout; the node in it
        // has been dropped.
        unsafe { crate::alloc::dealloc(ptr.cast(), Layout::new::<Inner>()) }
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
            assert!(prev < isize::MAX as usize, "node reference count overflow");
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
