//! `futures_io` (and, with the `tokio-io` feature, tokio; with the `hyper`
//! feature, `hyper::rt`) io traits on the TCP and Unix stream types (and
//! their halves; hyper's on the streams), so code written against those
//! runs on weft.
//!
//! Under epoll the traits are readiness-based over the caller's slice, no
//! copy. Under io_uring the kernel needs a buffer it owns until completion,
//! so a read fills an internal buffer (keeping what the caller's slice could
//! not take for the next read) and a write copies the caller's bytes into
//! one; `poll_write` returns `Pending` until that send completes, and a
//! retry after `Pending` gets the count of the send already in flight. A
//! write that fits the socket buffer is first tried as a non-blocking
//! `send` straight from the caller's slice (the eager send of `sys.rs`),
//! which needs no copy and no op.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use super::{
    sys::{RecvOwned, SendOwned, Socket},
    tcp::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, TcpStream, WriteHalf},
    unix::{self, UnixStream},
};

/// The in-flight state of the read trait methods of one stream or read
/// half. Allocated on first use, so streams driven by the native api carry
/// one null pointer for it. Reads and writes have separate state so a
/// stream's borrowed halves ([`TcpStream::split`]) can each take theirs.
#[derive(Default)]
pub(crate) struct ReadCompat {
    // A mutex only so the stream stays `Sync`: the trait methods take
    // `Pin<&mut Self>` and reach it with `get_mut`, never locking.
    state: Option<Box<Mutex<ReadState>>>,
}

/// As [`ReadCompat`], for writes.
#[derive(Default)]
pub(crate) struct WriteCompat {
    state: Option<Box<Mutex<WriteState>>>,
}

#[derive(Default)]
struct ReadState {
    read: Option<RecvOwned>,
    /// Bytes read but not yet handed out: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
}

#[derive(Default)]
struct WriteState {
    write: Option<SendOwned>,
    wspare: Vec<u8>,
}

const READ_CHUNK: usize = 16 * 1024;

impl ReadCompat {
    fn state(&mut self) -> &mut ReadState {
        self.state
            .get_or_insert_with(Default::default)
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn poll_read(
        &mut self,
        sock: &Arc<Socket>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // SAFETY: an initialised slice is valid for `len` bytes of writes.
        unsafe { self.poll_read_raw(sock, cx, buf.as_mut_ptr(), buf.len()) }
    }

    /// As [`poll_read`](Self::poll_read), into memory that may be
    /// uninitialised (hyper's read buffer): only the first `n` bytes of
    /// the returned count are written.
    ///
    /// # Safety
    /// `ptr` is valid for `len` bytes of writes for the duration of the call.
    pub(crate) unsafe fn poll_read_raw(
        &mut self,
        sock: &Arc<Socket>,
        cx: &mut Context<'_>,
        ptr: *mut u8,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if !sock.is_uring() {
            // SAFETY: the caller's contract.
            return unsafe { sock.poll_recv_raw(cx, ptr, len) };
        }
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let st = self.state();
        if st.rpos < st.rbuf.len() {
            // SAFETY: the caller's contract.
            return Poll::Ready(Ok(unsafe { st.take_buffered_raw(ptr, len) }));
        }
        if st.read.is_none() {
            let mut v = std::mem::take(&mut st.rbuf);
            v.clear();
            v.reserve(len.max(READ_CHUNK));
            st.read = Some(sock.recv_owned(v));
        }
        let fut = st.read.as_mut().expect("set above");
        let (res, v) = std::task::ready!(Pin::new(fut).poll(cx));
        st.read = None;
        st.rbuf = v;
        st.rpos = 0;
        match res {
            Ok(n) => {
                st.rbuf.truncate(n);
                // SAFETY: the caller's contract.
                Poll::Ready(Ok(unsafe { st.take_buffered_raw(ptr, len) }))
            }
            Err(e) => {
                st.rbuf.clear();
                Poll::Ready(Err(e))
            }
        }
    }
}

impl WriteCompat {
    fn state(&mut self) -> &mut WriteState {
        self.state
            .get_or_insert_with(Default::default)
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn poll_write(
        &mut self,
        sock: &Arc<Socket>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !sock.is_uring() {
            return sock.poll_send_slice(cx, buf);
        }
        let st = self.state();
        if st.write.is_none() {
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            // What fits the socket buffer goes straight from the caller's
            // slice: no copy, no op, no allocation.
            if let Some(res) = sock.try_send_now(buf) {
                return Poll::Ready(res);
            }
            let mut v = std::mem::take(&mut st.wspare);
            v.clear();
            v.extend_from_slice(buf);
            st.write = Some(sock.send_owned(v));
        }
        let fut = st.write.as_mut().expect("set above");
        let (res, v) = std::task::ready!(Pin::new(fut).poll(cx));
        st.write = None;
        st.wspare = v;
        Poll::Ready(res)
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.is_none() {
            return Poll::Ready(Ok(()));
        }
        let st = self.state();
        if let Some(fut) = st.write.as_mut() {
            let (res, v) = std::task::ready!(Pin::new(fut).poll(cx));
            st.write = None;
            st.wspare = v;
            res?;
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_close(
        &mut self,
        sock: &Arc<Socket>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_flush(cx))?;
        match sock.shutdown(std::net::Shutdown::Write) {
            // Already shut down or reset by the peer: closed either way.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            res => Poll::Ready(res),
        }
    }
}

impl ReadState {
    /// Copies what is buffered (at most `len` bytes) to `ptr`.
    ///
    /// # Safety
    /// `ptr` is valid for `len` bytes of writes and does not overlap the
    /// buffer.
    unsafe fn take_buffered_raw(&mut self, ptr: *mut u8, len: usize) -> usize {
        let avail = &self.rbuf[self.rpos..];
        let n = avail.len().min(len);
        // SAFETY: `n <= len` bytes of writes at `ptr` (the caller's
        // contract), `n` readable bytes in `avail`, no overlap.
        unsafe { std::ptr::copy_nonoverlapping(avail.as_ptr(), ptr, n) };
        self.rpos += n;
        n
    }
}

macro_rules! impl_read {
    ($ty:ty) => {
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                let (sock, compat) = self.get_mut().compat_read();
                compat.poll_read(sock, cx, buf)
            }
        }

        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let (sock, compat) = self.get_mut().compat_read();
                let n = std::task::ready!(compat.poll_read(sock, cx, buf.initialize_unfilled()))?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    };
}

macro_rules! impl_write {
    ($ty:ty) => {
        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_write(sock, cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().compat_write().1.poll_flush(cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_close(sock, cx)
            }
        }

        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_write(sock, cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().compat_write().1.poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_close(sock, cx)
            }
        }
    };
}

/// hyper's io traits: the same state as the futures/tokio ones, reading
/// into hyper's (possibly uninitialised) buffer without zeroing it.
#[cfg(feature = "hyper")]
macro_rules! impl_hyper {
    ($($ty:ty),*) => {$(
        impl hyper::rt::Read for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: hyper::rt::ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                let (sock, compat) = self.get_mut().compat_read();
                // SAFETY: only the bytes the read reports are written, and
                // only those are advanced over below.
                let dst = unsafe { buf.as_mut() };
                // SAFETY: `dst` is valid for `dst.len()` bytes of writes.
                let n = std::task::ready!(unsafe {
                    compat.poll_read_raw(sock, cx, dst.as_mut_ptr().cast(), dst.len())
                })?;
                // SAFETY: the read initialised the first `n` bytes.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
        }

        impl hyper::rt::Write for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_write(sock, cx, buf)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.get_mut().compat_write().1.poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_close(sock, cx)
            }
        }
    )*};
}

#[cfg(feature = "hyper")]
impl_hyper!(TcpStream, UnixStream);

impl_read!(TcpStream);
impl_write!(TcpStream);
impl_read!(OwnedReadHalf);
impl_write!(OwnedWriteHalf);
impl_read!(ReadHalf<'_>);
impl_write!(WriteHalf<'_>);
impl_read!(UnixStream);
impl_write!(UnixStream);
impl_read!(unix::OwnedReadHalf);
impl_write!(unix::OwnedWriteHalf);
impl_read!(unix::ReadHalf<'_>);
impl_write!(unix::WriteHalf<'_>);
