//! The owned-buffer stream traits: what [`BufReader`](super::BufReader) and
//! [`BufWriter`](super::BufWriter) need of the stream they wrap.
//!
//! They are weft's native read and write (the buffer is lent to the
//! operation and handed back with the result, see [`IoBuf`]) as traits, so
//! code can be generic over TCP streams, their halves and any other stream
//! with the same api (a Unix stream, a pipe). Implementing one takes one
//! method that forwards to the type's own `read` or `write`:
//!
//! ```
//! use std::io;
//! use weft::{io::{AsyncReadOwned, IoBufMut}, net::TcpStream};
//!
//! /// A stream that counts what it reads.
//! struct Counted { stream: TcpStream, bytes: u64 }
//!
//! impl AsyncReadOwned for Counted {
//!     async fn read<B: IoBufMut>(&mut self, buf: B) -> (io::Result<usize>, B) {
//!         let (res, buf) = self.stream.read(buf).await;
//!         if let Ok(n) = res {
//!             self.bytes += n as u64;
//!         }
//!         (res, buf)
//!     }
//! }
//! ```
//!
//! (An `async fn` implements the trait's method as long as its future is
//! `Send`; the trait asks for that so generic code built on it can be
//! spawned.)

use std::{future::Future, io};

use super::{IoBuf, IoBufMut};

/// A byte stream read with owned buffers.
pub trait AsyncReadOwned {
    /// Reads into `buf` from the start of its room (all of
    /// `bytes_total()`; pass a [`Slice`](super::Slice) to read into part of
    /// a buffer) and hands it back with the count. `Ok(0)` is the end of
    /// the stream. As every weft io op, an await point of the task's scope:
    /// once the scope is cancelled or past its deadline it fails with the
    /// `Cancelled` inside the error (and still hands the buffer back).
    fn read<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> + Send;
}

/// A byte stream written with owned buffers.
pub trait AsyncWriteOwned {
    /// Writes some of `buf`'s initialised bytes (pass a
    /// [`Slice`](super::Slice) to write part of a buffer) and hands it back
    /// with the count. An await point of the task's scope, as
    /// [`AsyncReadOwned::read`].
    fn write<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> + Send;
}
