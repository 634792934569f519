//! `futures_io::AsyncRead` and `AsyncBufRead` on [`BufReader`], for code
//! written against those traits (futures-util's `AsyncBufReadExt::lines`
//! stream, codecs). They fill the same buffer through the wrapped stream's
//! own `futures_io::AsyncRead`, so a reader can mix them with the native
//! methods. Under io_uring the stream's `AsyncRead` copies through its
//! internal buffer (see `net/compat.rs`): the native methods save that copy.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures_io::{AsyncBufRead, AsyncRead};

use super::BufReader;

impl<R: AsyncRead + Unpin> BufReader<R> {
    /// One poll of a read into the room behind the buffered bytes. The
    /// trait wants an initialised slice: the room is zeroed first (a
    /// buffer's worth of memset, on this path only).
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.make_room(0);
        let filled = self.buf.len();
        self.buf.resize(self.buf.capacity(), 0);
        let res = Pin::new(&mut self.inner).poll_read(cx, &mut self.buf[filled..]);
        let n = match &res {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        self.buf.truncate(filled + n);
        res
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for BufReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.recover()?;
        if this.pos == this.buf.len() && out.len() >= this.capacity {
            // Nothing buffered and a large read: straight into `out`, as
            // std's BufReader does.
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let held = ready!(Pin::new(&mut *this).poll_fill_buf(cx))?;
        let n = held.len().min(out.len());
        out[..n].copy_from_slice(&held[..n]);
        this.consume(n);
        Poll::Ready(Ok(n))
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for BufReader<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        this.recover()?;
        if this.pos == this.buf.len() {
            ready!(this.poll_read_more(cx))?;
        }
        Poll::Ready(Ok(&this.buf[this.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        BufReader::consume(self.get_mut(), amt);
    }
}
