//! The soak's heap accounting: a `#[global_allocator]` wrapper over
//! `std::alloc::System` that counts live bytes and live allocations, and
//! live allocations per size class (powers of two), so a check can tell a
//! leak (the live heap grows) from allocator growth (RSS grows, the live
//! heap does not).
//!
//! Relaxed atomics: each counter is an independent tally read by the
//! checker as a snapshot; nothing else is published through them. A
//! snapshot taken while other threads allocate may mix counts from slightly
//! different moments, which is fine for a trend and exact once the
//! workload has stopped.
//!
//! weft's own block cache (`runtime/src/alloc.rs`) gets its blocks from
//! here, so blocks it keeps for reuse count as live; the workers' share is
//! in `WorkerMetrics::alloc_cache_bytes`, printed beside the live heap.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed},
};

/// Size classes: class `c` holds sizes in `(2^(c-1), 2^c]` (class 0: 0–1 B).
pub(crate) const CLASSES: usize = 40;

pub(crate) struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Signed: a block allocated in one class and grown by `realloc` into
/// another leaves one class and joins the other.
static BY_CLASS: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];

fn class(size: usize) -> usize {
    let bits = (usize::BITS - size.saturating_sub(1).leading_zeros()) as usize;
    bits.min(CLASSES - 1)
}

fn added(size: usize) {
    LIVE_BYTES.fetch_add(size, Relaxed);
    LIVE_ALLOCS.fetch_add(1, Relaxed);
    BY_CLASS[class(size)].fetch_add(1, Relaxed);
}

fn removed(size: usize) {
    LIVE_BYTES.fetch_sub(size, Relaxed);
    LIVE_ALLOCS.fetch_sub(1, Relaxed);
    BY_CLASS[class(size)].fetch_sub(1, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// so `System`'s guarantees hold; the counting only touches atomics and
// never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout (non-zero size, the
        // caller's precondition).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            added(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            added(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with
        // `layout`: the caller's precondition.
        unsafe { System.dealloc(ptr, layout) };
        removed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's preconditions, forwarded unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // The old block is gone and a new one is live (on failure the
            // old block stays, counted as it was).
            removed(layout.size());
            added(new_size);
        }
        new
    }
}

/// Bytes to leak per completed echo: `--leak-per-echo`, which exists to
/// show that the shutdown heap check catches a leak.
static LEAK_PER_ECHO: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn set_leak_per_echo(bytes: usize) {
    LEAK_PER_ECHO.store(bytes, Relaxed);
}

/// Leaks what `--leak-per-echo` asked for (nothing by default).
pub(crate) fn leak_if_asked() {
    let bytes = LEAK_PER_ECHO.load(Relaxed);
    if bytes > 0 {
        std::mem::forget(vec![0u8; bytes]);
    }
}

/// The live heap at one moment.
#[derive(Clone)]
pub(crate) struct Heap {
    pub(crate) bytes: usize,
    pub(crate) allocs: usize,
    pub(crate) by_class: [isize; CLASSES],
}

pub(crate) fn snapshot() -> Heap {
    Heap {
        bytes: LIVE_BYTES.load(Relaxed),
        allocs: LIVE_ALLOCS.load(Relaxed),
        by_class: std::array::from_fn(|c| BY_CLASS[c].load(Relaxed)),
    }
}

impl Heap {
    /// The classes whose live count differs from `base`'s, as
    /// `"≤4 KiB +12, ≤64 B -3"`, largest change first.
    pub(crate) fn class_changes(&self, base: &Heap) -> String {
        let mut changes: Vec<(usize, isize)> = (0..CLASSES)
            .map(|c| (c, self.by_class[c] - base.by_class[c]))
            .filter(|&(_, d)| d != 0)
            .collect();
        changes.sort_by_key(|&(c, d)| std::cmp::Reverse((d.unsigned_abs() as u128) << c));
        if changes.is_empty() {
            return "none".into();
        }
        changes
            .iter()
            .map(|&(c, d)| format!("<={} {d:+}", size_name(1usize << c)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn size_name(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// glibc's own view, over all arenas: bytes it got from the OS (heap and
/// mmap) and bytes of that it holds free. RSS growth with a flat live heap
/// shows up here as free bytes kept by malloc.
pub(crate) struct Malloc {
    pub(crate) from_os: usize,
    pub(crate) free: usize,
}

pub(crate) fn malloc_info() -> Malloc {
    // SAFETY: mallinfo2 has no preconditions; it locks each arena briefly.
    let m = unsafe { libc::mallinfo2() };
    Malloc {
        from_os: m.arena + m.hblkhd,
        free: m.fordblks,
    }
}
