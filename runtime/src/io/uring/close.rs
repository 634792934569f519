//! Closing fds the ring may still name.
//!
//! A socket's fd closes through [`close_socket`], which makes sure no
//! entry naming it waits unsubmitted in a submission queue or a mailbox
//! (the kernel resolves an entry's fd when it is submitted, and a number
//! closed and reused meanwhile would send the entry to another socket).
//! Each ring keeps a 64-bit filter of the fds its queue names
//! ([`fd_bit`], [`entry_fd`], `Remote::queued_fds`) so that the common
//! case costs one load per ring. An fd a completion handed over and nobody
//! will use (an accept after its future or listener went away) closes with
//! [`close_fd`].

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Arc,
    time::{Duration, Instant},
};

use io_uring::squeue;

use super::driver::{Driver, Request};

/// Closes a socket's fd once no entry naming it can still reach the kernel.
///
/// An entry carries the fd as a number, which the kernel resolves when the
/// entry is submitted, not when it is pushed. A future dropped (cancelled,
/// timed out, aborted) right after it pushed its entry, and its socket
/// dropped with it, would close the fd while the entry waits in a
/// submission queue (entries are batched until the worker enters) or in a
/// mailbox; the next socket opened gets the same number, and the stale
/// entry then connects, sends or reads on *that* socket (the soak saw
/// `EISCONN` on connects and foreign bytes in echoes). So: the calling
/// worker's own queue is submitted now; every other ring of the runtime
/// that may hold an unsubmitted entry gets the fd in its mailbox, and the
/// last of them to submit closes it. In the common case (nothing queued
/// elsewhere) the fd closes before this returns.
pub(crate) fn close_socket(fd: OwnedFd) {
    let raw = fd.as_raw_fd();
    let own = crate::io::with_local_uring(|d| {
        d.submit_queued();
        d.remote().clone()
    });
    let Ok(handle) = crate::io::current_handle() else {
        // No runtime here to ask: entries pushed from this thread went to
        // a runtime's rings only while it was current, and it is gone.
        drop(fd);
        return;
    };
    let fd = Arc::new(fd);
    let mut posted = false;
    for slot in handle.shared.remotes.iter() {
        let crate::io::RemoteIo::Uring(remote) = &slot.io else {
            continue;
        };
        if own.as_ref().is_some_and(|own| Arc::ptr_eq(own, remote)) || remote.is_closed() {
            continue;
        }
        if remote.may_hold_unsubmitted(raw) {
            remote.mailbox.push(Request::Release(fd.clone()));
            remote.wake_eventfd();
            posted = true;
        }
    }
    if posted {
        wait_released(&fd, own.is_some());
    }
    // The last reference: closes now (or, if the wait gave up, the last
    // ring to submit closes it).
    drop(fd);
}

/// How long [`close_socket`] waits for other rings to submit what may name
/// the fd before it leaves the close to them.
const CLOSE_WAIT_LIMIT: Duration = Duration::from_millis(100);

/// Waits (bounded) until every ring that got `fd` in its mailbox has
/// submitted and let go of it, driving the calling worker's own ring
/// meanwhile (another worker may be waiting the same way for it). A worker
/// whose ring is busy (a drop from inside a completion) does not wait.
fn wait_released(fd: &Arc<OwnedFd>, own_ring: bool) {
    let on_worker = crate::context::with_worker(|w| w.is_some());
    if on_worker && !own_ring {
        return;
    }
    let deadline = Instant::now() + CLOSE_WAIT_LIMIT;
    let mut spins = 0u32;
    while Arc::strong_count(fd) > 1 && Instant::now() < deadline {
        if own_ring {
            crate::io::with_local_uring(Driver::poll);
        }
        spins += 1;
        if spins < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// The bit of `fd` in a ring's filter of queued fds.
pub(super) fn fd_bit(fd: RawFd) -> u64 {
    1 << (fd as u32 % 64)
}

/// The fd an entry names (its `fd` field; for entries without one, such as
/// cancellations, whatever the field holds: at worst a false positive in
/// the filter).
pub(super) fn entry_fd(entry: &squeue::Entry) -> RawFd {
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's
    // `io_uring_sqe`, whose layout is the kernel ABI: `opcode` (u8),
    // `flags` (u8), `ioprio` (u16), then `fd` (i32) at byte offset 4. The
    // entry is live and at least 64 bytes long; the read is aligned (the
    // entry is 8-aligned).
    unsafe {
        (entry as *const squeue::Entry)
            .cast::<u8>()
            .add(SQE_FD_OFFSET)
            .cast::<i32>()
            .read()
    }
}

/// The byte offset of `io_uring_sqe`'s `fd` field (kernel ABI).
pub(super) const SQE_FD_OFFSET: usize = 4;

/// Closes an fd a completion handed over, if it is one.
pub(crate) fn close_fd(res: i32) {
    if res >= 0 {
        // SAFETY: the kernel gave us this fd and nobody else has seen it.
        drop(unsafe { OwnedFd::from_raw_fd(res) });
    }
}
