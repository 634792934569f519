//! An io_uring provided buffer ring (`IORING_REGISTER_PBUF_RING`, 5.19):
//! buffers the kernel picks from for multishot receives.
//!
//! Protocol. The ring is an array of `count` entries (`struct
//! io_uring_buf`: address, length, buffer id), page-aligned, shared with
//! the kernel; the kernel consumes entries from its head, we produce at the
//! tail, which lives in the `resv` field of entry 0 and is published with a
//! release store (the kernel reads it with an acquire load). Buffer `bid`
//! is bytes `bid * size ..` of one allocation.
//!
//! - A buffer is *in the ring* (the kernel may write it) from the moment
//!   its entry is published until a completion names it
//!   (`IORING_CQE_F_BUFFER`), then *out* ([`BufRing::take`]): owned by a
//!   `RecvBuf`, written by nobody.
//! - [`BufRing::give_back`] puts an out buffer back: from any thread, under
//!   the `tail` mutex (the only producer state; the kernel never writes it),
//!   so two returns never write the same entry. Every buffer is in the ring
//!   or out, never both, so at most `count` entries are published beyond
//!   the kernel's head and the ring never overflows.
//! - The memory is freed when the last `Arc` goes, which the driver only
//!   lets happen once no operation that may select a buffer is in flight
//!   (see `uring::Driver`'s drop).

use std::{
    alloc::{self, Layout},
    io,
    ptr::NonNull,
    sync::{
        atomic::{AtomicU16, AtomicUsize, Ordering::*},
        Arc,
    },
};

use io_uring::{types::BufRingEntry, IoUring};

use super::pool::PoolStats;
use crate::facade::{lock, Mutex};

/// The buffer group id weft registers (one ring per io_uring, so one group).
pub(crate) const BGID: u16 = 0;

/// The kernel's `struct io_uring_buf`, with its fields reachable (the
/// crate's `BufRingEntry` has the same layout but no way to write a field
/// without a `&mut` over the whole entry, whose `resv` is the tail the
/// kernel reads concurrently).
#[repr(C)]
struct RawEntry {
    addr: u64,
    len: u32,
    bid: u16,
    /// Entry 0's is the ring's tail.
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RawEntry>() == std::mem::size_of::<BufRingEntry>());
const _: () = assert!(std::mem::size_of::<RawEntry>() == 16);

/// A registered provided buffer ring and its buffers.
pub(crate) struct BufRing {
    entries: NonNull<RawEntry>,
    entries_layout: Layout,
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    count: u16,
    size: u32,
    /// The next tail to publish: the producer's only state.
    tail: Mutex<u16>,
    /// Buffers out of the ring (taken, not given back).
    out: AtomicUsize,
    stats: Arc<PoolStats>,
}

// SAFETY: the raw pointers are to memory this value owns; entries are
// written only under `tail`'s mutex, buffers only by the kernel while in
// the ring and by nobody while out (see the module doc).
unsafe impl Send for BufRing {}
// SAFETY: as above.
unsafe impl Sync for BufRing {}

impl BufRing {
    /// Allocates `count` (a power of two, at most 32768) buffers of `size`
    /// bytes and registers them with `ring` as group [`BGID`].
    pub(crate) fn register(
        ring: &IoUring,
        count: u16,
        size: u32,
        stats: Arc<PoolStats>,
    ) -> io::Result<Arc<BufRing>> {
        assert!(count.is_power_of_two() && count <= 32768 && size > 0);
        let entries_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<RawEntry>(),
            page_size(),
        )
        .map_err(io::Error::other)?;
        let bufs_layout = Layout::from_size_align(usize::from(count) * size as usize, 64)
            .map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (count >= 1, size >= 1).
        let (entries, bufs) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout),
                alloc::alloc(bufs_layout),
            )
        };
        let (Some(entries), Some(bufs)) =
            (NonNull::new(entries.cast::<RawEntry>()), NonNull::new(bufs))
        else {
            alloc::handle_alloc_error(entries_layout);
        };
        let ring_buf = Arc::new(BufRing {
            entries,
            entries_layout,
            bufs,
            bufs_layout,
            count,
            size,
            tail: Mutex::new(0),
            out: AtomicUsize::new(0),
            stats,
        });
        // Every buffer starts in the ring.
        for bid in 0..count {
            ring_buf.publish(bid);
        }
        // SAFETY: the entries are `count` page-aligned `io_uring_buf`s that
        // live until the last `Arc` of this ring drops, which the driver
        // holds back while an operation may still select a buffer.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                BGID,
                0,
            )?;
        }
        Ok(ring_buf)
    }

    /// Writes `bid`'s entry at the tail and publishes it.
    fn publish(&self, bid: u16) {
        let mut tail = lock(&self.tail);
        let index = usize::from(*tail & (self.count - 1));
        // SAFETY: `index < count`; the entry at the tail is not between the
        // kernel's head and tail (at most `count` buffers are ever in the
        // ring, see the module doc), so the kernel does not read it now, and
        // the mutex makes this the only writer. The writes go through raw
        // field pointers and leave entry 0's `resv` (the tail) alone.
        unsafe {
            let entry = self.entries.as_ptr().add(index);
            std::ptr::addr_of_mut!((*entry).addr).write(self.buffer(bid) as u64);
            std::ptr::addr_of_mut!((*entry).len).write(self.size);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        *tail = tail.wrapping_add(1);
        // SAFETY: entry 0's `resv` is a live, 2-aligned u16 that the kernel
        // reads as the tail (`smp_load_acquire`) and nobody else writes.
        let shared =
            unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*self.entries.as_ptr()).resv)) };
        // Release: publishes the entry written above to the kernel.
        shared.store(*tail, Release);
    }

    /// The kernel handed us buffer `bid` in a completion: it is out of the
    /// ring until [`give_back`](Self::give_back).
    pub(crate) fn take(&self, bid: u16) {
        debug_assert!(bid < self.count);
        self.out.fetch_add(1, Relaxed);
        self.stats.out.fetch_add(1, Relaxed);
    }

    /// Puts an out buffer back into the ring (any thread).
    pub(crate) fn give_back(&self, bid: u16) {
        self.publish(bid);
        self.out.fetch_sub(1, Relaxed);
        self.stats.out.fetch_sub(1, Relaxed);
    }

    /// Buffers in the ring, as far as completions delivered so far tell
    /// (the kernel may have filled some whose completion is not reaped).
    pub(crate) fn available(&self) -> usize {
        usize::from(self.count).saturating_sub(self.out.load(Relaxed))
    }

    /// How many buffers the ring has.
    pub(crate) fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The start of buffer `bid`.
    pub(crate) fn buffer(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < self.count);
        // SAFETY: `bid < count`, so the offset is inside the allocation.
        unsafe {
            self.bufs
                .as_ptr()
                .add(usize::from(bid) * self.size as usize)
        }
    }

    pub(crate) fn stats(&self) -> &Arc<PoolStats> {
        &self.stats
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with these layouts; the last
        // reference is gone and no operation can select a buffer any more.
        unsafe {
            alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            alloc::dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as usize
    } else {
        4096
    }
}

/// True if this kernel runs a multishot receive (`IORING_RECV_MULTISHOT`,
/// 6.0) with a provided buffer ring (5.19): one is tried on a socket pair
/// with a throwaway ring. `WEFT_IO_RECV_MULTISHOT=off` says no without
/// trying (to run the fallback, for tests and measurements).
pub(crate) fn probe_recv_multishot() -> bool {
    if std::env::var_os("WEFT_IO_RECV_MULTISHOT").is_some_and(|v| v == "off") {
        return false;
    }
    try_recv_multishot().unwrap_or(false)
}

fn try_recv_multishot() -> io::Result<bool> {
    use std::{io::Write, os::fd::AsRawFd};

    use io_uring::{cqueue, opcode, types};

    let mut ring: IoUring = IoUring::builder().build(4)?;
    let bufs = BufRing::register(&ring, 2, 64, Arc::new(PoolStats::default()))?;
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let entry = opcode::RecvMulti::new(types::Fd(theirs.as_raw_fd()), BGID)
        .build()
        .user_data(1);
    // SAFETY: the entry names a socket and a buffer group that outlive the
    // ring (both are dropped after it, below).
    unsafe { ring.submission().push(&entry) }.map_err(io::Error::other)?;
    ours.write_all(b"x")?;
    let ts = types::Timespec::new().sec(1);
    let args = types::SubmitArgs::new().timespec(&ts);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ETIME) => return Ok(false),
        Err(e) => return Err(e),
    }
    let cqe = ring.completion().next();
    let ok = cqe.is_some_and(|c| {
        c.result() == 1 && cqueue::buffer_select(c.flags()).is_some() && cqueue::more(c.flags())
    });
    // The ring goes first: destroying it ends the armed receive, then the
    // sockets (no byte can arrive any more), then the buffers.
    drop(ring);
    drop((ours, theirs));
    drop(bufs);
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail the kernel would read, and entry `index`'s (addr, len, bid).
    fn shared_state(ring: &BufRing, index: usize) -> (u16, u64, u32, u16) {
        // SAFETY: reads of live entries of a ring no operation uses.
        unsafe {
            let base = ring.entries.as_ptr();
            let tail = AtomicU16::from_ptr(std::ptr::addr_of_mut!((*base).resv)).load(Acquire);
            let e = base.add(index);
            (tail, (*e).addr, (*e).len, (*e).bid)
        }
    }

    #[test]
    fn buffers_are_published_at_the_tail_and_given_back_there() {
        let Ok(ring) = IoUring::builder().build(4) else {
            return; // no io_uring here
        };
        let stats = Arc::new(PoolStats::default());
        let Ok(bufs) = BufRing::register(&ring, 4, 16, stats.clone()) else {
            return; // no buffer rings here (before 5.19)
        };
        // All four in the ring, in order; the tail says so.
        for index in 0..4 {
            let (tail, addr, len, bid) = shared_state(&bufs, index);
            assert_eq!(tail, 4);
            assert_eq!(bid as usize, index);
            assert_eq!(len, 16);
            assert_eq!(addr, bufs.buffer(bid) as u64);
        }
        assert_eq!(bufs.available(), 4);
        // The kernel hands out 2, then 0; they come back in another order.
        bufs.take(2);
        bufs.take(0);
        assert_eq!(bufs.available(), 2);
        assert_eq!(stats.out.load(Relaxed), 2);
        bufs.give_back(0);
        bufs.give_back(2);
        assert_eq!(stats.out.load(Relaxed), 0);
        assert_eq!(bufs.available(), 4);
        // Published at the tail (index 4 & 3 = 0, then 1), tail moved on.
        assert_eq!(shared_state(&bufs, 0).3, 0);
        assert_eq!(shared_state(&bufs, 1).3, 2);
        assert_eq!(shared_state(&bufs, 1).0, 6);
        // Buffers do not overlap.
        assert_eq!(bufs.buffer(1) as usize - bufs.buffer(0) as usize, 16);
        drop(ring);
    }

    #[test]
    fn the_probe_finds_multishot_receive_where_a_ring_takes_it() {
        // This kernel either runs a multishot receive into a ring buffer
        // or refuses one of the steps; the probe must say which, without
        // hanging or leaking (it runs at every runtime start).
        let found = probe_recv_multishot();
        let direct = try_recv_multishot().unwrap_or(false);
        let forced_off = std::env::var_os("WEFT_IO_RECV_MULTISHOT").is_some_and(|v| v == "off");
        assert_eq!(found, direct && !forced_off);
    }
}
