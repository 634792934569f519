//! Registered files: a socket that does io often gets a slot in the table
//! of the ring it does it on, and its operations there name the slot
//! (`IOSQE_FIXED_FILE`) instead of the fd.
//!
//! For an fd the kernel looks the file up and takes a reference on it for
//! every operation (the fd table is shared by the process's threads, so the
//! lookup cannot skip the count); a registered file is resolved by index,
//! and the ring holds the reference. perf on the thread-per-core echo
//! server put `fget`/`fput` at ~2% of its CPU.
//!
//! - **When.** A socket registers at its [`REGISTER_AFTER`]th operation
//!   submitted from a worker: a connection that makes one request and
//!   closes would pay two extra syscalls (register, unregister) for
//!   nothing.
//! - **Where.** On one ring only, the one its first registering operation
//!   runs on; the socket keeps that ring ([`Remote`]) and the slot. Its
//!   operations on other rings (a task moved by stealing), from off the
//!   workers, and while the driver is busy name the fd as before. A full
//!   or unavailable table leaves the socket on its fd for good.
//! - **Release.** When the socket is dropped its slot is emptied by the
//!   ring's owner (directly if the drop runs there, else through the
//!   mailbox), after the owner submitted what its queue holds: the kernel
//!   resolves the slot when it takes an entry, so no entry naming the slot
//!   can meet the slot's next socket. Until then the table keeps the
//!   socket's file open (the fd itself closes as before). Once the runtime
//!   is gone its tables are gone too, and with them the references.

use std::{
    os::fd::RawFd,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::*},
        Arc, OnceLock,
    },
};

use io_uring::squeue;

use super::{
    close::SQE_FD_OFFSET,
    driver::{Driver, Remote, Request},
};

/// The operation count at which a socket registers.
pub(crate) const REGISTER_AFTER: u32 = 8;

/// `FixedFile::state` when the socket will not register (tried and
/// failed, or dropped).
const NEVER: u64 = u64::MAX;

/// A socket's registration: none yet, or its ring's id and its slot.
#[derive(Default)]
pub(crate) struct FixedFile {
    /// 0: not registered; [`NEVER`]; else the ring's id (high 32 bits)
    /// and the slot.
    state: AtomicU64,
    /// Operations submitted from a worker before registering.
    uses: AtomicU32,
    /// The ring, set by whoever registers (at most one thread gets to).
    ring: OnceLock<Arc<Remote>>,
}

impl std::fmt::Debug for FixedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.state.load(Relaxed) {
            0 | NEVER => f.write_str("FixedFile(none)"),
            s => write!(f, "FixedFile(ring {}, slot {})", s >> 32, s as u32),
        }
    }
}

impl FixedFile {
    /// The slot to name instead of `fd` in an entry pushed to `driver`'s
    /// ring, registering the socket there once it has done
    /// [`REGISTER_AFTER`] operations.
    pub(super) fn slot_on(&self, driver: &mut Driver, fd: RawFd) -> Option<u32> {
        let state = self.state.load(Acquire);
        if state != 0 {
            return (state != NEVER && (state >> 32) as u32 == driver.remote().id)
                .then_some(state as u32);
        }
        // Racy (two threads may count the same use): only a threshold.
        let uses = self.uses.load(Relaxed);
        if uses < REGISTER_AFTER {
            self.uses.store(uses + 1, Relaxed);
            return None;
        }
        // One registrant: whoever sets the ring.
        if self.ring.set(driver.remote().clone()).is_err() {
            return None;
        }
        match driver.register_fixed(fd) {
            Some(slot) => {
                self.state.store(
                    (u64::from(driver.remote().id) << 32) | u64::from(slot),
                    Release,
                );
                Some(slot)
            }
            None => {
                self.state.store(NEVER, Release);
                None
            }
        }
    }

    /// Lets go of the slot (the socket is being dropped; no operation of it
    /// is pending any more).
    pub(crate) fn release(&self) {
        let state = self.state.swap(NEVER, AcqRel);
        if state == 0 || state == NEVER {
            return;
        }
        let slot = state as u32;
        let Some(ring) = self.ring.get() else {
            return;
        };
        let done = crate::io::with_local_uring(|d| {
            if Arc::ptr_eq(d.remote(), ring) {
                d.release_fixed(slot);
                true
            } else {
                false
            }
        });
        if done != Some(true) && !ring.is_closed() {
            ring.mailbox.push(Request::ReleaseFixed(slot));
            ring.wake_eventfd();
        }
    }
}

/// `entry` naming registered-file `slot` instead of the fd it was built
/// with.
pub(super) fn use_fixed(entry: squeue::Entry, slot: u32) -> squeue::Entry {
    let mut entry = entry.flags(squeue::Flags::FIXED_FILE);
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's
    // `io_uring_sqe`, whose layout is the kernel ABI: `opcode` (u8),
    // `flags` (u8), `ioprio` (u16), then `fd` (i32) at byte offset 4, which
    // with `IOSQE_FIXED_FILE` is the index into the registered files. The
    // entry is ours and 64 bytes long; the write is aligned (the entry is
    // 8-aligned).
    unsafe {
        (&mut entry as *mut squeue::Entry)
            .cast::<u8>()
            .add(SQE_FD_OFFSET)
            .cast::<i32>()
            .write(slot as i32);
    }
    entry
}

#[cfg(test)]
mod tests {
    use io_uring::{opcode, types};

    use super::{super::close::entry_fd, *};

    #[test]
    fn use_fixed_names_the_slot_and_sets_the_flag() {
        let entry = opcode::Recv::new(types::Fd(42), std::ptr::null_mut(), 0).build();
        assert_eq!(entry_fd(&entry), 42);
        assert!(format!("{entry:?}").contains("flags: 0,"), "{entry:?}");
        let fixed = use_fixed(entry, 7);
        assert_eq!(entry_fd(&fixed), 7);
        // IOSQE_FIXED_FILE is bit 0 of the flags.
        assert!(format!("{fixed:?}").contains("flags: 1,"), "{fixed:?}");
    }
}
