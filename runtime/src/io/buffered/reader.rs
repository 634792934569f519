//! [`BufReader`]: reads in large chunks, hands out lines, records, exact
//! counts.

use std::{fmt, io, mem};

use super::{check_capacity, DEFAULT_CAPACITY};
use crate::io::{AsyncReadOwned, IoBuf};

/// Buffers reads from an owned-buffer stream (a [`TcpStream`], a read half,
/// anything [`AsyncReadOwned`]) so a protocol reads lines, delimited records
/// or exact byte counts without framing by hand.
///
/// ```no_run
/// # weft::Runtime::new().unwrap().block_on(async {
/// use weft::{io::BufReader, net::TcpStream};
///
/// let stream = TcpStream::connect("127.0.0.1:7000").await?;
/// let mut reader = BufReader::new(&stream);
/// while let Some(line) = reader.next_line().await? {
///     let (res, _) = stream.write_all(format!("{}\n", line.len())).await;
///     res?;
/// }
/// # Ok::<_, std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// It reads when what it holds does not answer the call, into the room
/// behind the bytes it holds (no copy of those), and grows past its
/// capacity only to hold a line or an exact read longer than it; once that
/// is taken it goes back to its capacity. A call that its buffer answers
/// does no io and so is no await point. Each read is an await point of the
/// task's scope; the [module docs](crate::io::buffered) say what an
/// interrupted call keeps (nothing already read is lost).
///
/// Over a stream that implements `futures_io::AsyncRead` it also implements
/// `futures_io::AsyncRead` and `AsyncBufRead`, filling the same buffer, so
/// futures-util's `AsyncBufReadExt` (its `lines()` stream, say) works on it.
///
/// [`TcpStream`]: crate::net::TcpStream
pub struct BufReader<R> {
    pub(super) inner: R,
    /// The buffered bytes are `buf[pos..]`; `buf.len()` is how far it is
    /// filled, the room behind it is where the next read goes.
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    /// What `buf` shrinks back to after a long line or exact read.
    pub(super) capacity: usize,
    /// `Some(unread)` while a read op holds `buf`. Still set when a call
    /// starts: the future that lent it was dropped, and the buffer with it.
    lent: Option<usize>,
}

impl<R> BufReader<R> {
    /// A reader with an 8 KiB buffer.
    pub fn new(inner: R) -> BufReader<R> {
        BufReader::with_capacity(DEFAULT_CAPACITY, inner)
    }

    /// A reader whose reads ask for up to `capacity` bytes.
    ///
    /// # Panics
    /// If `capacity` is 0.
    #[track_caller]
    pub fn with_capacity(capacity: usize, inner: R) -> BufReader<R> {
        check_capacity("BufReader", capacity);
        BufReader {
            inner,
            buf: Vec::with_capacity(capacity),
            pos: 0,
            capacity,
            lent: None,
        }
    }

    /// The bytes read from the stream and not yet taken.
    pub fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The capacity it was made with (the buffer may be larger for a while,
    /// see the type docs).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Marks the first `amt` bytes of [`buffer`](Self::buffer) as taken
    /// (all of them if there are fewer), so the next call starts after them.
    pub fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }

    /// The stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The stream. Reading from it directly skips what is buffered.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The stream; the buffered bytes are dropped (see
    /// [`into_parts`](Self::into_parts)).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The stream and the bytes read from it but not taken yet.
    pub fn into_parts(mut self) -> (R, Vec<u8>) {
        self.buf.drain(..self.pos);
        (self.inner, self.buf)
    }

    /// Fails if an earlier call's future was dropped while its read held
    /// unread bytes; takes a fresh buffer if it held none.
    pub(super) fn recover(&mut self) -> io::Result<()> {
        match self.lent {
            None => Ok(()),
            Some(0) => {
                self.lent = None;
                self.buf = Vec::with_capacity(self.capacity);
                self.pos = 0;
                Ok(())
            }
            Some(unread) => Err(io::Error::other(format!(
                "BufReader lost {unread} buffered bytes: a call was dropped while its read \
                 held them, so the stream cannot continue where it was (cancel the scope \
                 instead of dropping the future to keep them)"
            ))),
        }
    }

    /// Takes `len` buffered bytes as a line: appends them to `out` if they
    /// are UTF-8, drops them (and says where the first bad byte was) if not.
    fn take_line(&mut self, len: usize, out: &mut String) -> io::Result<usize> {
        let line = &self.buf[self.pos..self.pos + len];
        let res = match std::str::from_utf8(line) {
            Ok(s) => {
                out.push_str(s);
                Ok(len)
            }
            Err(e) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a line of {len} bytes is not UTF-8 (it was dropped): {e}"),
            )),
        };
        self.pos += len;
        self.shrink_if_drained();
        res
    }

    /// After a long line, gives the grown buffer back once it is empty.
    fn shrink_if_drained(&mut self) {
        if self.pos == self.buf.len() && self.buf.capacity() > self.capacity {
            self.buf = Vec::with_capacity(self.capacity);
            self.pos = 0;
        }
    }

    /// Makes room behind the buffered bytes for at least `want` of them in
    /// all (and at least one more byte): reuses the front when it is empty
    /// or when the room behind is small, grows the buffer when it must.
    pub(super) fn make_room(&mut self, want: usize) {
        let unread = self.buf.len() - self.pos;
        if unread == 0 {
            if self.buf.capacity() > self.capacity {
                self.buf = Vec::with_capacity(self.capacity);
            }
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.capacity() - self.buf.len() <= self.capacity / 2 {
            // Moves the unread bytes to the front (one memmove of less than
            // a buffer's worth, typically a partial line).
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let want = want.max(unread + 1);
        if self.buf.capacity() - self.pos < want {
            // `reserve` at least doubles: a long line costs O(log n) moves.
            self.buf.reserve(want - (self.buf.len() - self.pos));
        }
    }
}

impl<R: AsyncReadOwned> BufReader<R> {
    /// Reads once more from the stream, behind the buffered bytes (which
    /// stay where they are): after it, [`buffer`](Self::buffer) is longer by
    /// the count returned. `Ok(0)` is the end of the stream. For framing by
    /// hand: a length-prefixed frame reads until `buffer()` holds it.
    pub async fn fill_more(&mut self) -> io::Result<usize> {
        self.recover()?;
        self.read_more(0).await
    }

    /// The buffered bytes, reading from the stream first if there are none;
    /// empty at the end of the stream. Take what you use with
    /// [`consume`](Self::consume).
    pub async fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.recover()?;
        if self.pos == self.buf.len() {
            self.read_more(0).await?;
        }
        Ok(&self.buf[self.pos..])
    }

    /// Reads through the next `byte` (included) or to the end of the
    /// stream, appending to `out`; returns how many bytes it appended, 0 at
    /// the end of the stream. As std's: after an error, the bytes read so
    /// far are in `out`.
    pub async fn read_until(&mut self, byte: u8, out: &mut Vec<u8>) -> io::Result<usize> {
        self.recover()?;
        let mut appended = 0;
        loop {
            let available = self.fill_buf().await?;
            if available.is_empty() {
                return Ok(appended);
            }
            match memchr::memchr(byte, available) {
                Some(i) => {
                    out.extend_from_slice(&available[..=i]);
                    self.consume(i + 1);
                    return Ok(appended + i + 1);
                }
                None => {
                    let n = available.len();
                    out.extend_from_slice(available);
                    self.consume(n);
                    appended += n;
                }
            }
        }
    }

    /// Reads a line through its `\n` (kept, as a `\r` before it is) or to
    /// the end of the stream, and appends it to `out`; returns its length
    /// in bytes, 0 at the end of the stream.
    ///
    /// The line stays in the buffer until it is complete, so after any
    /// error `out` is unchanged and the partial line is still buffered: a
    /// call interrupted by its scope's deadline or cancel loses nothing and
    /// the next call returns the whole line. A line longer than the
    /// capacity grows the buffer while it is read.
    ///
    /// A line that is not UTF-8 fails with `InvalidData` (saying where the
    /// first bad byte is); its bytes, through its `\n`, are dropped, `out`
    /// is unchanged, and the next call reads the next line. Use
    /// [`read_until`](Self::read_until) for lines that need not be UTF-8.
    pub async fn read_line(&mut self, out: &mut String) -> io::Result<usize> {
        self.recover()?;
        // How much of the buffered bytes has been searched for the `\n`
        // (relative to `pos`, which `read_more` may move).
        let mut searched = 0;
        loop {
            let held = &self.buf[self.pos..];
            if let Some(i) = memchr::memchr(b'\n', &held[searched..]) {
                return self.take_line(searched + i + 1, out);
            }
            searched = held.len();
            if self.read_more(0).await? == 0 {
                // The end of the stream ends the last line.
                return self.take_line(searched, out);
            }
        }
    }

    /// The next line without its `\n` (or `\r\n`), `None` at the end of the
    /// stream; as [`read_line`](Self::read_line) otherwise.
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        if self.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if line.ends_with('\n') {
            line.pop();
            if line.ends_with('\r') {
                line.pop();
            }
        }
        Ok(Some(line))
    }

    /// Fills `out` exactly. The bytes are copied out only once all of them
    /// are buffered: after an error `out` is untouched and the bytes read so
    /// far stay in the buffer. The end of the stream first is
    /// `UnexpectedEof`.
    pub async fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        self.recover()?;
        let want = out.len();
        while self.buf.len() - self.pos < want {
            if self.read_more(want).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the stream ended after {} of {want} bytes (they stay buffered)",
                        self.buf.len() - self.pos
                    ),
                ));
            }
        }
        out.copy_from_slice(&self.buf[self.pos..self.pos + want]);
        self.pos += want;
        self.shrink_if_drained();
        Ok(())
    }

    /// One read into the room behind the buffered bytes, with room for
    /// `want` bytes in all (see `make_room`). Lends the buffer to the op;
    /// `lent` records it so a dropped future is noticed.
    async fn read_more(&mut self, want: usize) -> io::Result<usize> {
        self.make_room(want);
        let buf = mem::take(&mut self.buf);
        // While the op holds the buffer, `self` looks empty (and stays
        // consistent if the future is dropped).
        let pos = mem::replace(&mut self.pos, 0);
        let filled = buf.len();
        self.lent = Some(filled - pos);
        let (res, slice) = self.inner.read(buf.slice(filled..)).await;
        self.buf = slice.into_inner();
        self.pos = pos;
        self.lent = None;
        res
    }
}

impl<R: fmt::Debug> fmt::Debug for BufReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufReader")
            .field("inner", &self.inner)
            .field("buffered", &(self.buf.len() - self.pos))
            .field("capacity", &self.capacity)
            .finish()
    }
}
