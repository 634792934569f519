//! Pooled receive buffers: what a [`RecvStream`](crate::net::RecvStream)
//! yields.
//!
//! Each worker keeps two pools for pooled receives (docs/IO.md, "Pooled
//! receive"):
//!
//! - under io_uring, a provided buffer ring ([`BufRing`]) the kernel picks
//!   a buffer from for each multishot receive completion, created on first
//!   use;
//! - on either driver, a free list of heap buffers ([`HeapPool`]): the
//!   epoll driver reads into them, and io_uring uses them where it has no
//!   ring buffer to give (the ring is empty, the kernel has no buffer rings
//!   or no multishot receive, or the stream is polled off the workers).
//!
//! A [`RecvBuf`] owns one buffer of either kind and gives it back when it
//! is dropped, on whatever thread that happens: a ring buffer goes back
//! into its ring (a short critical section on the ring's tail, see
//! [`BufRing::give_back`]), a heap buffer onto its free list (or to the
//! allocator once the list is full). Nothing needs the owning worker, so a
//! buffer may be sent to another task, kept, or dropped anywhere; a buffer
//! held for long keeps one slot of its worker's ring out of use.
//!
//! [`PoolStats`] counts the buffers out of both pools (handed to user code
//! or queued for it) and how often a ring ran dry; `RuntimeMetrics` sums
//! them over the workers.

use std::{
    fmt,
    ops::Deref,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
};

pub(crate) use super::buf_ring::BufRing;
use crate::facade::{lock, Mutex};

/// The default number of buffers per worker and pool (a power of two).
pub(crate) const DEFAULT_RECV_BUFFERS: u16 = 256;
/// The default size of each pooled buffer.
pub(crate) const DEFAULT_RECV_BUFFER_SIZE: u32 = 4096;

/// How many buffers of what size each worker's pools hold
/// (`Builder::recv_buffers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PoolConfig {
    /// A power of two, at most 32768 (the kernel's limit for a ring).
    pub(crate) count: u16,
    pub(crate) size: u32,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            count: DEFAULT_RECV_BUFFERS,
            size: DEFAULT_RECV_BUFFER_SIZE,
        }
    }
}

/// One worker's pool counters, shared by its pools and read by metrics.
#[derive(Default, Debug)]
pub(crate) struct PoolStats {
    /// Buffers taken from this worker's pools and not given back: held by
    /// user code, or queued in a stream for it.
    pub(crate) out: AtomicUsize,
    /// Times a multishot receive on this worker's ring ended because the
    /// ring had no buffer left (`ENOBUFS`).
    pub(crate) ring_exhausted: AtomicU64,
}

/// A worker's receive pools: the shared side (the ring is the driver's).
pub(crate) struct RecvPools {
    pub(crate) config: PoolConfig,
    pub(crate) stats: Arc<PoolStats>,
    pub(crate) heap: Arc<HeapPool>,
}

impl RecvPools {
    pub(crate) fn new(config: PoolConfig) -> RecvPools {
        let stats = Arc::new(PoolStats::default());
        RecvPools {
            config,
            heap: Arc::new(HeapPool {
                free: Mutex::new(Vec::new()),
                size: config.size as usize,
                cap: usize::from(config.count),
                stats: stats.clone(),
            }),
            stats,
        }
    }
}

/// A free list of heap buffers of one size. Buffers are allocated when the
/// list is empty (so a receive never waits for a buffer) and kept on
/// return up to `cap`.
pub(crate) struct HeapPool {
    free: Mutex<Vec<Box<[u8]>>>,
    size: usize,
    cap: usize,
    stats: Arc<PoolStats>,
}

impl HeapPool {
    /// A buffer of the pool's size, from the free list or fresh.
    pub(crate) fn take(self: &Arc<Self>) -> HeapBuf {
        let buf = lock(&self.free)
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice());
        self.stats.out.fetch_add(1, Relaxed);
        HeapBuf {
            pool: self.clone(),
            buf: Some(buf),
        }
    }

    fn put(&self, buf: Box<[u8]>) {
        self.stats.out.fetch_sub(1, Relaxed);
        let mut free = lock(&self.free);
        if free.len() < self.cap {
            free.push(buf);
        }
    }

    #[cfg(test)]
    pub(crate) fn free_len(&self) -> usize {
        lock(&self.free).len()
    }
}

/// A heap buffer out of its pool; goes back on drop.
pub(crate) struct HeapBuf {
    pool: Arc<HeapPool>,
    /// `Some` until dropped.
    buf: Option<Box<[u8]>>,
}

impl HeapBuf {
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.buf.as_mut().expect("live").as_mut_ptr()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.as_ref().expect("live").len()
    }

    fn as_slice(&self) -> &[u8] {
        self.buf.as_ref().expect("live")
    }
}

impl Drop for HeapBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.put(buf);
        }
    }
}

// A single-shot receive lends its heap buffer to the kernel; an orphaned
// one (its future dropped) gives it back when the cell is freed.
impl super::uring::OpData for HeapBuf {}

/// A received chunk of bytes in a pooled buffer.
///
/// Derefs to the bytes received (`&[u8]`, never empty). Dropping it gives
/// the buffer back to the pool it came from, on whichever thread it is
/// dropped: an io_uring provided-buffer ring slot becomes available to the
/// kernel again at once, a heap buffer returns to its worker's free list.
/// So keep it only as long as the bytes are needed: a buffer held is one
/// the worker's receives cannot use (when a ring runs dry the stream keeps
/// working, with heap buffers, see
/// [`RecvStream`](crate::net::RecvStream)). Copy the bytes out
/// (`to_vec()`) to keep them longer.
///
/// It is an [`IoBuf`](super::IoBuf): `write_all(buf)` sends the chunk
/// without a copy (an echo), and the buffer goes back to its pool when
/// the write hands it back and it is dropped.
pub struct RecvBuf {
    inner: Inner,
    len: usize,
}

enum Inner {
    Ring { ring: Arc<BufRing>, bid: u16 },
    Heap(HeapBuf),
}

impl RecvBuf {
    /// A buffer the kernel filled with `len` bytes from ring slot `bid`
    /// (already counted out of the ring by [`BufRing::take`]).
    pub(crate) fn from_ring(ring: Arc<BufRing>, bid: u16, len: usize) -> RecvBuf {
        RecvBuf {
            inner: Inner::Ring { ring, bid },
            len,
        }
    }

    /// A heap buffer whose first `len` bytes were received.
    pub(crate) fn from_heap(buf: HeapBuf, len: usize) -> RecvBuf {
        debug_assert!(len <= buf.capacity());
        RecvBuf {
            inner: Inner::Heap(buf),
            len,
        }
    }

    /// True if the buffer came from the kernel's provided-buffer ring
    /// (io_uring multishot receive), false for a heap buffer (the epoll
    /// driver, or io_uring's fallback; see docs/IO.md).
    pub fn is_ring_buffer(&self) -> bool {
        matches!(self.inner, Inner::Ring { .. })
    }
}

impl Deref for RecvBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            Inner::Ring { ring, bid } => {
                // SAFETY: slot `bid` is out of the ring (the kernel handed
                // it to us and it goes back only when this buffer drops),
                // so nobody writes it; its first `len` bytes were written
                // by the kernel before the completion we got it from.
                unsafe { std::slice::from_raw_parts(ring.buffer(*bid), self.len) }
            }
            Inner::Heap(buf) => &buf.as_slice()[..self.len],
        }
    }
}

// SAFETY: the bytes live in the ring's allocation or the heap buffer's
// box, neither of which moves with the `RecvBuf`; all `len` bytes were
// written by the kernel; nobody writes them while the buffer is out of
// its pool (the ring gets it back only when this value drops, which an
// operation lending it does only after its completion).
unsafe impl super::IoBuf for RecvBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}

impl AsRef<[u8]> for RecvBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        if let Inner::Ring { ring, bid } = &self.inner {
            ring.give_back(*bid);
        }
        // A heap buffer goes back through `HeapBuf`'s drop.
    }
}

impl fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuf")
            .field("len", &self.len)
            .field("ring", &self.is_ring_buffer())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buffers_go_back_to_the_free_list_up_to_its_cap() {
        let pools = RecvPools::new(PoolConfig { count: 2, size: 16 });
        let bufs: Vec<_> = (0..3).map(|_| pools.heap.take()).collect();
        assert_eq!(pools.stats.out.load(Relaxed), 3);
        assert!(bufs.iter().all(|b| b.capacity() == 16));
        drop(bufs);
        assert_eq!(pools.stats.out.load(Relaxed), 0);
        assert_eq!(pools.heap.free_len(), 2, "the third one was freed");
        let recv = RecvBuf::from_heap(pools.heap.take(), 5);
        assert_eq!(recv.len(), 5);
        assert!(!recv.is_ring_buffer());
        assert_eq!(pools.heap.free_len(), 1);
        drop(recv);
        assert_eq!(pools.heap.free_len(), 2);
        assert_eq!(pools.stats.out.load(Relaxed), 0);
    }
}
