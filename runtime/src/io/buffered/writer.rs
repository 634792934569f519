//! [`BufWriter`]: gathers small writes into one send.

use std::{fmt, io, mem};

use super::{check_capacity, is_cancellation, DEFAULT_CAPACITY};
use crate::io::{AsyncWriteOwned, IoBuf};

/// Buffers writes to an owned-buffer stream (a [`TcpStream`], a write half,
/// anything [`AsyncWriteOwned`]): [`write_all`](Self::write_all) copies into
/// the buffer, and the bytes go to the stream when the buffer needs room or
/// on [`flush`](Self::flush), in as few sends as the peer allows.
///
/// ```no_run
/// # weft::Runtime::new().unwrap().block_on(async {
/// use weft::{io::BufWriter, net::TcpStream};
///
/// let stream = TcpStream::connect("127.0.0.1:7000").await?;
/// let mut writer = BufWriter::new(stream);
/// for key in ["a", "b", "c"] {
///     writer.write_all(b"GET ").await?;
///     writer.write_all(key.as_bytes()).await?;
///     writer.write_all(b"\n").await?;
/// }
/// writer.flush().await?; // one send for the three requests
/// # Ok::<_, std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// There is no flush on drop (it would have to wait): flush before dropping
/// it, or take the unsent bytes with [`into_parts`](Self::into_parts). Each
/// send is an await point of the task's scope; after an error (a
/// cancellation, a reset peer) the bytes the peer did not take stay
/// buffered, and the next flush sends them (see the [module
/// docs](crate::io::buffered)).
///
/// [`TcpStream`]: crate::net::TcpStream
pub struct BufWriter<W> {
    inner: W,
    /// The bytes not sent yet.
    pub(super) buf: Vec<u8>,
    /// What `buf` shrinks back to after a write larger than it.
    capacity: usize,
    /// `Some(unsent)` while a send op holds `buf`. Still set when a call
    /// starts: the future that lent it was dropped, and the buffer with it.
    lent: Option<usize>,
}

impl<W> BufWriter<W> {
    /// A writer with an 8 KiB buffer.
    pub fn new(inner: W) -> BufWriter<W> {
        BufWriter::with_capacity(DEFAULT_CAPACITY, inner)
    }

    /// A writer that sends once it holds `capacity` bytes.
    ///
    /// # Panics
    /// If `capacity` is 0.
    #[track_caller]
    pub fn with_capacity(capacity: usize, inner: W) -> BufWriter<W> {
        check_capacity("BufWriter", capacity);
        BufWriter {
            inner,
            buf: Vec::with_capacity(capacity),
            capacity,
            lent: None,
        }
    }

    /// The bytes written to it and not sent yet.
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// The capacity it was made with.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The stream.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The stream. Writing to it directly goes ahead of what is buffered.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The stream; unsent bytes are dropped (flush first, or see
    /// [`into_parts`](Self::into_parts)).
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// The stream and the bytes not sent yet.
    pub fn into_parts(self) -> (W, Vec<u8>) {
        (self.inner, self.buf)
    }

    /// Fails if an earlier call's future was dropped while its send held
    /// the buffer: what reached the peer is then unknown.
    fn check_intact(&self) -> io::Result<()> {
        match self.lent {
            None => Ok(()),
            Some(unsent) => Err(io::Error::other(format!(
                "BufWriter lost track of {unsent} unsent bytes: a call was dropped while its \
                 send held them, so what reached the peer is unknown (cancel the scope \
                 instead of dropping the future to keep them)"
            ))),
        }
    }
}

impl<W: AsyncWriteOwned> BufWriter<W> {
    /// Buffers all of `data`, first sending what the buffer holds if `data`
    /// does not fit behind it. Either all of `data` is buffered (`Ok`) or
    /// none of it (`Err`, from that send; the bytes it did not send stay
    /// buffered). `data` larger than the capacity is buffered whole (the
    /// buffer grows until the next send).
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.check_intact()?;
        if !self.buf.is_empty() && self.buf.len() + data.len() > self.capacity {
            self.send_buffered().await?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Sends everything buffered. After an error the bytes not sent stay
    /// buffered and a later flush sends them (the peer never gets a byte
    /// twice).
    pub async fn flush(&mut self) -> io::Result<()> {
        self.check_intact()?;
        self.send_buffered().await
    }

    /// Sends the buffer, slice by slice from the first unsent byte, and
    /// drops from it what was sent, also when a send fails.
    async fn send_buffered(&mut self) -> io::Result<()> {
        let mut sent = 0;
        let res = loop {
            let len = self.buf.len();
            if sent == len {
                break Ok(());
            }
            let buf = mem::take(&mut self.buf);
            self.lent = Some(len - sent);
            let (res, slice) = self.inner.write(buf.slice(sent..)).await;
            self.buf = slice.into_inner();
            self.lent = None;
            match res {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("the stream took none of {} buffered bytes", len - sent),
                    ))
                }
                Ok(n) => sent += n,
                // A signal, not a cancellation: send the rest.
                Err(e) if e.kind() == io::ErrorKind::Interrupted && !is_cancellation(&e) => {}
                Err(e) => break Err(e),
            }
        };
        if sent == self.buf.len() && self.buf.capacity() > self.capacity {
            self.buf = Vec::with_capacity(self.capacity);
        } else {
            // After a failure: keep the unsent tail only.
            self.buf.drain(..sent);
        }
        res
    }
}

impl<W: fmt::Debug> fmt::Debug for BufWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufWriter")
            .field("inner", &self.inner)
            .field("buffered", &self.buf.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}
