//! Per-thread caches of the small blocks the runtime allocates at spawn
//! rate: task cells and cancellation-tree nodes.
//!
//! # Why
//! A task is usually allocated on one worker and freed on another (it was
//! stolen, or woken remotely). With glibc's malloc every such free locks the
//! *allocating* thread's arena, so two busy workers serialise on each
//! other's arena locks: the profile of `ping_pong` put a quarter of its time
//! in `__lll_lock_wait_private`/`__lll_lock_wake_private` under
//! `free`. A block freed here goes into the freeing thread's cache instead,
//! and that thread's next spawn of a similar size reuses it without any
//! lock or atomic.
//!
//! # Protocol
//! - Blocks are grouped by size class: `class = (size + 23) / 16`, the size
//!   glibc would round the request to, so a cached block is never larger
//!   than what malloc would have used (and idle tasks cost no more memory).
//!   A class's blocks are allocated with `class * 16 - 8` bytes and an
//!   alignment of 16.
//! - Requests aligned to more than 16 and at most 64 bytes (a cache line)
//!   have classes of their own, in steps of 64 bytes: cancellation nodes
//!   ask for a line so the fields a cancel and a woken task touch share
//!   one. Layouts beyond [`MAX_SIZE`] or aligned to more than 64 bypass
//!   the cache.
//! - Each class keeps at most [`CLASS_BYTES`] (1 MiB) worth of blocks per
//!   thread (see the central list below for what happens beyond). 1 MiB holds a burst of a
//!   few thousand tasks: with 128 KiB, the 1,000 tasks `ping_pong` spawns
//!   at once went through malloc and it ran at 0.86x tokio, against 0.74x
//!   now. A worker idle for [`IDLE_TRIM_AFTER`] gives back all but
//!   [`TRIM_KEEP`] per class ([`trim`]), so the memory a burst leaves in
//!   the caches is returned once the runtime goes quiet. A thread's cache
//!   is returned to malloc when the thread exits; a free during thread
//!   teardown goes straight to malloc.
//! - A full class hands its oldest 64 blocks to the class's central list
//!   (a mutex-guarded list of batches shared by all threads, as tcmalloc
//!   does, at most 16 MiB per class), and an empty class refills from it.
//!   When one worker spawns a burst and others free it, the blocks travel
//!   back a batch per lock instead of one contended malloc-arena lock per
//!   free. An idle trim empties the central lists too.
//! - The per-thread part shares nothing: no atomics, no locks. Under
//!   `cfg(weft_loom)` it is plain `alloc`/`dealloc`, so loom sees every
//!   allocation; so it is under `cfg(weft_shuttle)`, where every model
//!   thread runs on one OS thread and would share one thread's cache.
//! - Under `cfg(weft_sanitize)` (the sanitizer runs of `.ci/sanitizers`)
//!   every block goes straight to malloc and back, so AddressSanitizer
//!   sees a use after free of a task cell or node (a cached block would be
//!   reused silently) and ThreadSanitizer sees each free (a block handed
//!   between threads through the central list's std mutex looks racy to a
//!   TSan that cannot see inside std).

use std::{
    alloc::{handle_alloc_error, Layout},
    ptr::NonNull,
};

/// The largest block size cached.
pub(crate) const MAX_SIZE: usize = 1024;
/// What one size class may keep per thread, in bytes.
#[cfg_attr(any(weft_loom, weft_shuttle), allow(dead_code))]
const CLASS_BYTES: usize = 1024 * 1024;
/// What [`trim`] leaves in each class, in bytes.
pub(crate) const TRIM_KEEP: usize = 64 * 1024;
/// How long a worker stays parked before it trims its cache.
pub(crate) const IDLE_TRIM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
const ALIGN: usize = 16;
/// The alignment of the line classes.
const LINE: usize = 64;
/// The classes of alignment 16: `0..SMALL_CLASSES`.
const SMALL_CLASSES: usize = class_of(MAX_SIZE) + 1;
/// All classes: the line classes follow the small ones.
#[cfg_attr(any(weft_loom, weft_shuttle), allow(dead_code))]
const CLASSES: usize = SMALL_CLASSES + MAX_SIZE / LINE;

/// The size class of a request of `size` bytes.
const fn class_of(size: usize) -> usize {
    (size + 8).div_ceil(ALIGN)
}

/// The layout every block of `class` is allocated with.
fn class_layout(class: usize) -> Layout {
    let layout = if class < SMALL_CLASSES {
        // The 8 bytes glibc keeps in front of each chunk are the rest of
        // what the block stands for. `class >= 1`, so the size is at least
        // 8 and a multiple of 8.
        Layout::from_size_align(class_bytes(class) - 8, ALIGN)
    } else {
        Layout::from_size_align(class_bytes(class), LINE)
    };
    layout.expect("valid class layout")
}

/// The memory one block of `class` stands for.
fn class_bytes(class: usize) -> usize {
    if class < SMALL_CLASSES {
        class * ALIGN
    } else {
        (class - SMALL_CLASSES + 1) * LINE
    }
}

fn cached_class(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_SIZE || layout.size() == 0 {
        None
    } else if layout.align() <= ALIGN {
        Some(class_of(layout.size()))
    } else if layout.align() <= LINE {
        Some(SMALL_CLASSES + layout.size().div_ceil(LINE) - 1)
    } else {
        None
    }
}

/// Allocates a block for `layout` (of non-zero size).
pub(crate) fn alloc(layout: Layout) -> NonNull<u8> {
    debug_assert!(layout.size() > 0);
    let class = if cfg!(weft_sanitize) {
        None
    } else {
        cached_class(layout)
    };
    let (layout, cached) = match class {
        Some(class) => (class_layout(class), cache::pop(class)),
        None => (layout, None),
    };
    cached.unwrap_or_else(|| {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        NonNull::new(ptr).unwrap_or_else(|| handle_alloc_error(layout))
    })
}

/// Frees a block from [`alloc`].
///
/// # Safety
/// `ptr` came from `alloc(layout)` with this same `layout`, and the value
/// in it has been dropped.
pub(crate) unsafe fn dealloc(ptr: NonNull<u8>, layout: Layout) {
    let class = if cfg!(weft_sanitize) {
        None
    } else {
        cached_class(layout)
    };
    let layout = match class {
        Some(class) => match cache::push(class, ptr) {
            Ok(()) => return,
            Err(()) => class_layout(class),
        },
        None => layout,
    };
    // SAFETY: the caller's precondition; cached classes were allocated
    // with their class layout.
    unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) }
}

/// Returns free blocks of `class` to malloc.
#[cfg(not(any(weft_loom, weft_shuttle)))]
fn free_blocks(class: usize, blocks: impl IntoIterator<Item = NonNull<u8>>) {
    for ptr in blocks {
        // SAFETY: cached blocks (thread or central) were allocated with
        // their class layout and hold no live value.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), class_layout(class)) };
    }
}

/// Bytes held by this thread's cache.
pub(crate) fn cached_bytes() -> usize {
    cache::bytes()
}

/// Returns this thread's cached blocks beyond [`TRIM_KEEP`] per class to
/// malloc (a worker that has been idle a while).
pub(crate) fn trim() {
    cache::trim(TRIM_KEEP)
}

#[cfg(not(any(weft_loom, weft_shuttle)))]
mod cache {
    use std::{cell::RefCell, ptr::NonNull};

    use super::{class_bytes, free_blocks, CLASSES, CLASS_BYTES};

    struct Cache {
        classes: [Vec<NonNull<u8>>; CLASSES],
        /// Sum over the classes of `len × class size`.
        bytes: usize,
    }

    impl Drop for Cache {
        fn drop(&mut self) {
            for (class, blocks) in self.classes.iter_mut().enumerate() {
                free_blocks(class, blocks.drain(..));
            }
        }
    }

    thread_local! {
        static CACHE: RefCell<Cache> = const {
            RefCell::new(Cache { classes: [const { Vec::new() }; CLASSES], bytes: 0 })
        };
    }

    pub(super) fn pop(class: usize) -> Option<NonNull<u8>> {
        CACHE
            .try_with(|c| {
                let mut c = c.try_borrow_mut().ok()?;
                if c.classes[class].is_empty() {
                    // Refill from the central list: a batch another thread
                    // gave back (see `push`). Appended, not swapped in: the
                    // batch's vector holds 64, and a class stack shrunk to
                    // that regrew through a run of reallocations (malloc in
                    // the middle of a burst of frees) every time it refilled.
                    let batch = central::take(class)?;
                    c.bytes += batch.len() * class_bytes(class);
                    c.classes[class].extend(batch);
                }
                let ptr = c.classes[class].pop()?;
                c.bytes -= class_bytes(class);
                Some(ptr)
            })
            .ok()
            .flatten()
    }

    pub(super) fn bytes() -> usize {
        CACHE
            .try_with(|c| c.try_borrow().map_or(0, |c| c.bytes))
            .unwrap_or(0)
    }

    pub(super) fn trim(keep: usize) {
        central::trim();
        let _ = CACHE.try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return;
            };
            let c = &mut *c;
            for (class, blocks) in c.classes.iter_mut().enumerate().skip(1) {
                let keep_blocks = keep / class_bytes(class);
                if blocks.len() > keep_blocks {
                    c.bytes -= (blocks.len() - keep_blocks) * class_bytes(class);
                    free_blocks(class, blocks.drain(keep_blocks..));
                }
            }
        });
    }

    /// `Err` if the block was not kept (the thread is exiting).
    pub(super) fn push(class: usize, ptr: NonNull<u8>) -> Result<(), ()> {
        let cap = (CLASS_BYTES / class_bytes(class)).max(2 * central::BATCH);
        CACHE
            .try_with(|c| {
                let mut c = c.try_borrow_mut().map_err(|_| ())?;
                if c.classes[class].len() >= cap {
                    // Full: hand a batch to the central list, where the
                    // thread that allocates these blocks (often another
                    // one) takes it back with one lock, instead of a free
                    // per block into its malloc arena.
                    let len = c.classes[class].len();
                    let batch = c.classes[class].split_off(len - central::BATCH);
                    c.bytes -= batch.len() * class_bytes(class);
                    central::give(class, batch);
                }
                c.classes[class].push(ptr);
                c.bytes += class_bytes(class);
                Ok(())
            })
            .unwrap_or(Err(()))
    }

    /// Full batches of free blocks per class, shared by all threads (as
    /// tcmalloc's central free lists): a producer thread's frees reach a
    /// consumer thread's allocations a batch at a time.
    mod central {
        use std::{ptr::NonNull, sync::Mutex};

        use super::super::{class_bytes, free_blocks, CLASSES};

        /// Blocks moved between a thread and the central list at once.
        pub(in super::super) const BATCH: usize = 64;
        /// What one class's central list may hold, in bytes; beyond, the
        /// batch goes back to malloc.
        const CENTRAL_BYTES: usize = 16 * 1024 * 1024;

        struct Batches(Vec<Vec<NonNull<u8>>>);

        // SAFETY: the pointers are free blocks owned by the list; any
        // thread may allocate from or free them.
        unsafe impl Send for Batches {}

        static CENTRAL: [Mutex<Batches>; CLASSES] =
            [const { Mutex::new(Batches(Vec::new())) }; CLASSES];

        pub(in super::super) fn give(class: usize, batch: Vec<NonNull<u8>>) {
            let max_batches = CENTRAL_BYTES / (BATCH * class_bytes(class));
            let rejected = {
                let mut list = CENTRAL[class].lock().unwrap_or_else(|p| p.into_inner());
                if list.0.len() < max_batches {
                    list.0.push(batch);
                    None
                } else {
                    Some(batch)
                }
            };
            if let Some(batch) = rejected {
                free_blocks(class, batch);
            }
        }

        pub(in super::super) fn take(class: usize) -> Option<Vec<NonNull<u8>>> {
            CENTRAL[class]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .pop()
        }

        /// Returns every central batch to malloc.
        pub(in super::super) fn trim() {
            for (class, list) in CENTRAL.iter().enumerate() {
                let batches = std::mem::take(&mut list.lock().unwrap_or_else(|p| p.into_inner()).0);
                for batch in batches {
                    free_blocks(class, batch);
                }
            }
        }
    }

    #[cfg(all(test, not(weft_sanitize)))]
    pub(super) fn len(class: usize) -> usize {
        CACHE.with(|c| c.borrow().classes[class].len())
    }
}

#[cfg(any(weft_loom, weft_shuttle))]
mod cache {
    use std::ptr::NonNull;

    pub(super) fn pop(_class: usize) -> Option<NonNull<u8>> {
        None
    }

    pub(super) fn push(_class: usize, _ptr: NonNull<u8>) -> Result<(), ()> {
        Err(())
    }

    pub(super) fn bytes() -> usize {
        0
    }

    pub(super) fn trim(_keep: usize) {}
}

#[cfg(all(test, not(weft_loom), not(weft_shuttle), not(weft_sanitize)))]
mod tests {
    use super::*;

    /// The central lists are process-wide and `trim` empties them: tests
    /// that look at them run one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn a_freed_block_is_reused_by_the_next_request_of_its_class() {
        let layout = Layout::from_size_align(200, 8).unwrap();
        let a = alloc(layout);
        // SAFETY: from `alloc(layout)`, holds nothing.
        unsafe { dealloc(a, layout) };
        // 196 bytes rounds to the same class as 200.
        let other = Layout::from_size_align(196, 4).unwrap();
        let b = alloc(other);
        assert_eq!(a, b);
        // SAFETY: as above.
        unsafe { dealloc(b, other) };
    }

    #[test]
    fn classes_never_hand_out_a_smaller_block() {
        for size in 1..=MAX_SIZE {
            let class = class_of(size);
            assert!(class_layout(class).size() >= size, "size {size}");
            // Never more than glibc's own rounding would use.
            assert!(class_layout(class).size() < size + ALIGN, "size {size}");
        }
    }

    #[test]
    fn trim_gives_back_all_but_the_kept_bytes_and_the_count_follows() {
        let _serial = serial();
        let layout = Layout::from_size_align(200, 8).unwrap();
        let class_size = class_layout(class_of(200)).size() + 8;
        let blocks: Vec<_> = (0..2_000).map(|_| alloc(layout)).collect();
        let before = cached_bytes();
        for b in blocks {
            // SAFETY: each from `alloc(layout)`.
            unsafe { dealloc(b, layout) };
        }
        assert_eq!(cached_bytes(), before + 2_000 * class_size);
        trim();
        assert!(cached_bytes() <= CLASSES * TRIM_KEEP, "{}", cached_bytes());
        assert!(cache::len(class_of(200)) <= TRIM_KEEP / class_size);
        // Still works after a trim.
        let b = alloc(layout);
        // SAFETY: from `alloc(layout)`.
        unsafe { dealloc(b, layout) };
    }

    #[test]
    fn large_or_overaligned_layouts_bypass_the_cache() {
        assert_eq!(
            cached_class(Layout::from_size_align(MAX_SIZE + 1, 8).unwrap()),
            None
        );
        assert_eq!(
            cached_class(Layout::from_size_align(64, 128).unwrap()),
            None
        );
        let big = Layout::from_size_align(4096, 64).unwrap();
        let p = alloc(big);
        assert_eq!(p.as_ptr() as usize % 64, 0);
        // SAFETY: from `alloc(big)`.
        unsafe { dealloc(p, big) };
    }

    #[test]
    fn line_aligned_layouts_get_line_aligned_blocks_from_their_own_classes() {
        let _serial = serial();
        for (size, align, class_size) in [(1, 64, 64), (64, 32, 64), (65, 64, 128), (200, 64, 256)]
        {
            let layout = Layout::from_size_align(size, align).unwrap();
            let class = cached_class(layout).expect("cached");
            assert!((SMALL_CLASSES..CLASSES).contains(&class));
            assert_eq!(class_layout(class).size(), class_size);
            assert_eq!(class_bytes(class), class_size);
            let blocks: Vec<_> = (0..100).map(|_| alloc(layout)).collect();
            let before = cached_bytes();
            for &b in &blocks {
                assert_eq!(b.as_ptr() as usize % 64, 0, "{size}/{align}");
            }
            for b in blocks {
                // SAFETY: each from `alloc(layout)`.
                unsafe { dealloc(b, layout) };
            }
            assert_eq!(cached_bytes(), before + 100 * class_size);
            // Reused from the cache, still aligned.
            let again = alloc(layout);
            assert_eq!(again.as_ptr() as usize % 64, 0);
            assert_eq!(cached_bytes(), before + 99 * class_size);
            // SAFETY: from `alloc(layout)`.
            unsafe { dealloc(again, layout) };
        }
        // The small classes are untouched by this: a 16-aligned request of
        // 64 bytes still rounds as glibc does.
        assert!(cached_class(Layout::from_size_align(64, 16).unwrap()).unwrap() < SMALL_CLASSES);
    }

    #[test]
    fn a_full_class_hands_a_batch_to_the_central_list_and_refills_from_it() {
        let _serial = serial();
        let layout = Layout::from_size_align(MAX_SIZE, 8).unwrap();
        let class = class_of(MAX_SIZE);
        let cap = (CLASS_BYTES / class_bytes(class)).max(2 * 64);
        let blocks: Vec<_> = (0..cap + 10).map(|_| alloc(layout)).collect();
        for b in blocks {
            // SAFETY: each from `alloc(layout)`.
            unsafe { dealloc(b, layout) };
        }
        // One batch of 64 moved out when the class was full.
        assert_eq!(cache::len(class), cap + 10 - 64);
        // Empty the thread's class; the next allocation refills it with a
        // central batch (ours, or one another test thread gave back).
        let drained: Vec<_> = (0..cap + 10 - 64).map(|_| alloc(layout)).collect();
        assert_eq!(cache::len(class), 0);
        let refilled = alloc(layout);
        assert_eq!(cache::len(class), 63, "refilled with a batch of 64");
        for b in drained.into_iter().chain([refilled]) {
            // SAFETY: each from `alloc(layout)`.
            unsafe { dealloc(b, layout) };
        }
    }
}
