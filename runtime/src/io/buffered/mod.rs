//! Buffered reads and writes on the owned-buffer api: [`BufReader`] (lines,
//! delimited records, exact counts) and [`BufWriter`] (many small writes,
//! one send).
//!
//! # The buffer and the kernel
//!
//! Each wraps one `Vec<u8>` and lends it to the stream's native op when it
//! needs io: a `BufReader` reads into the room after the bytes it holds
//! (a [`Slice`](super::Slice) of its buffer, no copy of what is there), a
//! `BufWriter` sends the bytes not sent yet (a `Slice` from the first
//! unsent byte). The op hands the buffer back with its result, also when it
//! fails, so between calls the buffer is always home again.
//!
//! # Cancellation: what is kept
//!
//! Every wait is the wrapped stream's op, so it is an await point of the
//! task's scope: a deadline or an explicit cancel ends it with an
//! `io::Error` carrying the [`Cancelled`](crate::cancel::Cancelled)
//! (`TimedOut` for a deadline, `Interrupted` otherwise), and the op hands the
//! buffer back with whatever it read before the cancel landed. Nothing
//! already buffered is lost; a later call (in a scope that is not
//! cancelled) continues where the interrupted one stopped:
//!
//! - [`BufReader::read_line`] takes a line out of the buffer only once it is
//!   complete (its `\n`, or the end of the stream): an interrupted call leaves
//!   the `String` as it was and the partial line in the buffer, and the next
//!   call returns the whole line.
//! - [`BufReader::read_until`] appends to the `Vec` as bytes arrive, as std's
//!   does: after an error, the bytes read so far are in the `Vec` (and no
//!   longer in the reader), and the next call appends the rest.
//! - [`BufReader::read_exact`] copies out only once it has all the bytes:
//!   after an error (including the end of the stream) the destination is
//!   untouched and the bytes read so far stay buffered.
//! - [`BufWriter::flush`] drops from the buffer only what the peer took:
//!   after an error the unsent bytes stay buffered and the next `flush`
//!   sends them (never a byte twice).
//!
//! # Dropped futures
//!
//! Dropping one of these futures while it waits (a `select!` that another
//! branch won, a timeout that drops its future) is not a cancellation: the
//! buffer is in the op, which goes with the future (see docs/IO.md,
//! "Dropped futures"). A `BufReader` whose buffer held no unread bytes at
//! that moment just takes a new one; one that held unread bytes, and a
//! `BufWriter` that held unsent bytes, cannot know what was lost, so every
//! later call on it fails with an error saying so (the stream itself is
//! still usable through `into_inner`, at an unknown position). Under
//! io_uring a dropped read may also have taken bytes from the socket before
//! its cancel landed, as a dropped `TcpStream::read` can: to stop a
//! buffered reader in the middle of a wait without losing anything, cancel
//! its scope instead of dropping the future.

mod futures;
mod reader;
mod writer;

pub use self::{reader::BufReader, writer::BufWriter};

/// The capacity `new` gives a buffer: 8 KiB, as std's and tokio's.
pub const DEFAULT_CAPACITY: usize = 8 * 1024;

/// True if `err` reports a cancelled scope (rather than a signal's `EINTR`).
fn is_cancellation(err: &std::io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.is::<crate::cancel::Cancelled>())
}

#[track_caller]
fn check_capacity(what: &str, capacity: usize) {
    assert!(
        capacity > 0,
        "{what} capacity must be at least 1 byte, got 0"
    );
}

#[cfg(test)]
mod tests;
