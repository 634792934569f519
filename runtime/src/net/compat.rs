//! `futures_io` (and, with the `tokio-io` feature, tokio; with the `hyper`
//! feature, `hyper::rt`) io traits on the TCP and Unix stream types (and
//! their halves; hyper's on the streams), so code written against those
//! runs on weft.
//!
//! Under epoll the traits are readiness-based over the caller's slice, no
//! copy. Under io_uring the kernel needs a buffer it owns until completion,
//! so a read fills an internal buffer (keeping what the caller's slice could
//! not take for the next read) and a write copies the caller's bytes into
//! one, queues their send on the ring and returns: the write behind. The
//! next write, shutdown or native write waits for that send and reports its
//! failure; a stream dropped with it in flight leaves it to a task of its
//! own (docs/IO.md, "Compat writes behind").

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Wake, Waker},
};

use crate::io::IoBuf;

use super::{
    sys::{send_progress, RecvOwned, SendOwned, Socket},
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
///
/// The mutex is locked only by a native write (`&self`) waiting for a
/// send the compat methods queued.
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
    /// The send the last write queued and returned without waiting for
    /// (io_uring).
    behind: Option<Behind>,
    /// The buffer of the last finished send, for the next write's copy.
    spare: Vec<u8>,
    /// The write side is shut down (a compat `close` under io_uring), or
    /// a task of its own shuts it down after a send that was still in
    /// flight when a native `shutdown` ran (see [`shutdown`]): writes
    /// fail from now on, as after a shutdown.
    write_shut: bool,
    /// Native writes (`&self`: several tasks may share the stream) waiting
    /// for `behind`; made on the first such wait.
    waiters: Option<Arc<Waiters>>,
}

/// The tasks whose native writes wait for a queued send. The send's op
/// keeps one waker, so they poll it with this list's (see [`Settle`]): its
/// completion wakes every one of them, and none depends on another, whose
/// write may have been dropped at its deadline, to pass the wake on.
/// Taking the send out of the state wakes them too (a shutdown hands it to
/// a task of its own, which polls it with its own waker). A wait that is
/// dropped takes its entry out, so the list holds only live waits.
#[derive(Default)]
struct Waiters(Mutex<WaiterList>);

#[derive(Default)]
struct WaiterList {
    /// The last entry id given out; 0 means "none yet" to a wait.
    last_id: u64,
    wakers: Vec<(u64, Waker)>,
}

impl Waiters {
    fn list(&self) -> std::sync::MutexGuard<'_, WaiterList> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files `waker` under the wait's entry `*id`, giving it one first.
    /// A waker it replaces is dropped after the lock (dropping one may run
    /// arbitrary code).
    fn register(&self, id: &mut u64, waker: &Waker) {
        let mut list = self.list();
        if let Some((_, w)) = list.wakers.iter_mut().find(|(i, _)| *i == *id) {
            if !w.will_wake(waker) {
                let replaced = std::mem::replace(w, waker.clone());
                drop(list);
                drop(replaced);
            }
            return;
        }
        if *id == 0 {
            list.last_id += 1;
            *id = list.last_id;
        }
        list.wakers.push((*id, waker.clone()));
    }

    fn remove(&self, id: u64) {
        let mut list = self.list();
        let at = list.wakers.iter().position(|(i, _)| *i == id);
        let removed = at.map(|at| list.wakers.swap_remove(at));
        drop(list);
        drop(removed);
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let woken = std::mem::take(&mut self.list().wakers);
        for (_, waker) in woken {
            waker.wake();
        }
    }
}

/// A native write's wait for the send a compat write queued
/// ([`WriteCompat::settle`]): through the state's lock (a native write
/// has only `&self`, so tasks sharing the stream may wait together), each
/// wait an entry of the [`Waiters`] list, taken out when the wait ends or
/// is dropped.
struct Settle<'a> {
    compat: &'a WriteCompat,
    sock: &'a Arc<Socket>,
    /// The list this wait is filed in, and its entry there.
    filed: Option<(Arc<Waiters>, u64)>,
}

impl Future for Settle<'_> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(state) = &this.compat.state else {
            return Poll::Ready(Ok(()));
        };
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let settled = if st.behind.is_none() {
            // Nothing to wait for (the common case): no list.
            st.poll_settle(this.sock, cx, true)
        } else {
            let waiters = st.waiters.get_or_insert_with(Default::default).clone();
            let mut id = this.filed.as_ref().map_or(0, |(_, id)| *id);
            waiters.register(&mut id, cx.waker());
            let waker = Waker::from(waiters.clone());
            this.filed = Some((waiters, id));
            let settled = st.poll_settle(this.sock, &mut Context::from_waker(&waker), true);
            if settled.is_pending() {
                // The op saw the list's waker, which names no task.
                crate::runtime::dump::awaiting(
                    cx.waker(),
                    crate::runtime::dump::Awaiting::Io(crate::runtime::dump::IoOp::Write),
                );
            }
            settled
        };
        std::task::ready!(settled)?;
        if st.write_shut {
            return Poll::Ready(Err(write_shut()));
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        if let Some((waiters, id)) = self.filed.take() {
            waiters.remove(id);
        }
    }
}

/// A queued send of `buf[offset..]`, submitted with no waker: its
/// completion wakes nobody, and the next write, flush or shutdown takes
/// its result.
struct Behind {
    send: SendOwned,
    offset: usize,
    /// A write waited for it and had the worker hand it to the kernel.
    kicked: bool,
}

/// The most one write copies and queues; a larger write reports a short
/// count (as `write` may), which bounds the buffer each stream keeps.
const WRITE_BEHIND_MAX: usize = 64 * 1024;

/// How long a send queued before its stream was dropped may take to go
/// out (to a peer that reads slowly) before it is cancelled.
const WRITE_LINGER: std::time::Duration = std::time::Duration::from_secs(30);

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

    /// Under io_uring the bytes are copied and their send queued on the
    /// ring, which submits it with the rest of this round's io; the write
    /// returns at once, and only the next write (or a shutdown) waits for
    /// it. One send is in flight per stream, so they go out in order.
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
        std::task::ready!(st.poll_settle(sock, cx, true))?;
        if st.write_shut {
            return Poll::Ready(Err(write_shut()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(WRITE_BEHIND_MAX);
        let mut v = std::mem::take(&mut st.spare);
        v.clear();
        v.extend_from_slice(&buf[..n]);
        st.queue(sock, v, 0)?;
        Poll::Ready(Ok(n))
    }

    /// Reports the failure of a queued send that has completed; one still
    /// in flight is left to the kernel, as `send` leaves the bytes in the
    /// socket's buffer (tokio's `flush` on a `TcpStream` does nothing).
    pub(crate) fn poll_flush(
        &mut self,
        sock: &Arc<Socket>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.state.is_none() {
            return Poll::Ready(Ok(()));
        }
        self.state().poll_settle(sock, cx, false)
    }

    pub(crate) fn poll_close(
        &mut self,
        sock: &Arc<Socket>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if self.state.is_some() {
            let st = self.state();
            std::task::ready!(st.poll_settle(sock, cx, true))?;
            if st.write_shut {
                // A native shutdown already asked for it.
                return Poll::Ready(Ok(()));
            }
        }
        let res = match sock.shutdown(std::net::Shutdown::Write) {
            // Already shut down or reset by the peer: closed either way.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            res => res,
        };
        if res.is_ok() && sock.is_uring() {
            // A write after this fails at once, as the kernel's send would
            // (a queued one would report it only to the write after it).
            self.state().write_shut = true;
        }
        Poll::Ready(res)
    }
}

/// The socket and the compat write state of a stream or write half, for
/// its native writes (which go out after a compat write's queued send).
pub(crate) trait WriteParts {
    fn write_parts(&self) -> (&Arc<Socket>, &WriteCompat);
}

impl<T: WriteParts + ?Sized> WriteParts for &T {
    fn write_parts(&self) -> (&Arc<Socket>, &WriteCompat) {
        (**self).write_parts()
    }
}

/// A native write: after the send a compat write queued, if any (whose
/// failure it reports instead), so the bytes go out in the order written.
pub(crate) async fn send<B: IoBuf>(
    (sock, compat): (&Arc<Socket>, &WriteCompat),
    buf: B,
) -> (io::Result<usize>, B) {
    if compat.state.is_some() {
        if let Err(e) = compat.settle(sock).await {
            return (Err(e), buf);
        }
    }
    sock.send(buf).await
}

/// As [`send`], for all of `buf`.
pub(crate) async fn send_all<B: IoBuf>(
    (sock, compat): (&Arc<Socket>, &WriteCompat),
    buf: B,
) -> (io::Result<()>, B) {
    if compat.state.is_some() {
        if let Err(e) = compat.settle(sock).await {
            return (Err(e), buf);
        }
    }
    sock.send_all(buf).await
}

/// The error of a write after the write side was shut down (the kernel's
/// `EPIPE`).
fn write_shut() -> io::Error {
    io::Error::from_raw_os_error(libc::EPIPE)
}

/// A native `shutdown` (`&self`, not async): the write side's end of
/// stream must reach the peer after the bytes of a send a compat write
/// queued, which may not even have reached the kernel yet (it goes with
/// the worker's next io pass). A send that has completed is settled here:
/// its failure is this call's error, as a compat `close` reports it. One
/// still in flight goes on in a detached task that shuts the write side
/// down when the send is done (or after [`WRITE_LINGER`], as a dropped
/// stream's send), and writes fail from now on; this call shuts the read
/// side (for `Both`) and returns. Outside a runtime there is no task to
/// leave it to: the socket is shut down at once, and the send (not
/// cancelled) is reported by the next write or close; the rest of a short
/// send, which nothing there can send, is this call's error (`WriteZero`).
pub(crate) fn shutdown(
    (sock, compat): (&Arc<Socket>, &WriteCompat),
    how: std::net::Shutdown,
) -> io::Result<()> {
    use std::net::Shutdown;
    let Some(state) = compat.state.as_ref().filter(|_| how != Shutdown::Read) else {
        return sock.shutdown(how);
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    let read_too = || match how {
        Shutdown::Both => sock.shutdown(Shutdown::Read),
        _ => Ok(()),
    };
    if st.write_shut {
        // The write side is shut down, or a task is about to.
        return read_too();
    }
    let Some(mut behind) = st.take_behind() else {
        return sock.shutdown(how);
    };
    if let Some((res, v)) = behind.send.take_completed() {
        match send_progress(res, behind.offset, v.len()) {
            Ok(None) => {
                st.spare = v;
                return sock.shutdown(how);
            }
            Err(e) => {
                st.spare = v;
                return Err(e);
            }
            // A short send: the rest goes first, in the task below. Outside
            // a runtime nothing can send it (and only a submitted send may
            // be left in the state): shut down now, and say what was lost.
            Ok(Some(rest)) => {
                if crate::runtime::Handle::try_current().is_none() {
                    st.spare = v;
                    sock.shutdown(how)?;
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "shutdown outside a runtime: the rest of a short send was not sent",
                    ));
                }
                behind = Behind {
                    send: sock.send_all_owned(v, rest),
                    offset: rest,
                    kicked: false,
                };
            }
        }
    }
    let Some(handle) = crate::runtime::Handle::try_current() else {
        // No task to leave the send to: it stays (not cancelled), and the
        // next write or close reports how it ended.
        st.behind = Some(behind);
        return sock.shutdown(how);
    };
    st.write_shut = true;
    let owned = sock.clone();
    crate::task::Builder::new().detached().spawn_on(
        async move {
            let _ = crate::time::timeout(WRITE_LINGER, behind.finish()).await;
            let _ = owned.shutdown(Shutdown::Write);
        },
        &handle,
    );
    read_too()
}

impl WriteCompat {
    /// Waits for the send a compat write queued (see [`Settle`]).
    fn settle<'a>(&'a self, sock: &'a Arc<Socket>) -> Settle<'a> {
        Settle {
            compat: self,
            sock,
            filed: None,
        }
    }
}

impl Drop for WriteCompat {
    /// A send still in flight goes on in a detached task, for at most
    /// [`WRITE_LINGER`]: the write that queued it reported its bytes
    /// written, and the kernel sends what a closed socket's buffer holds.
    fn drop(&mut self) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let st = state.get_mut().unwrap_or_else(|p| p.into_inner());
        let Some(behind) = st.behind.take() else {
            return;
        };
        if behind.send.is_complete() {
            // Its result has nobody left to report to.
            return;
        }
        // Outside a runtime (or one shutting down) the send is cancelled.
        if let Some(handle) = crate::runtime::Handle::try_current() {
            crate::task::Builder::new().detached().spawn_on(
                async move {
                    let _ = crate::time::timeout(WRITE_LINGER, behind.finish()).await;
                },
                &handle,
            );
        }
    }
}

impl WriteState {
    /// Takes the queued send out, waking the native writes waiting for it:
    /// its op, which held their list's waker, is done or someone else's.
    fn take_behind(&mut self) -> Option<Behind> {
        let behind = self.behind.take();
        if let Some(waiters) = &self.waiters {
            waiters.wake_by_ref();
        }
        behind
    }

    /// Submits the send of `v[offset..]`, waited for by nobody.
    fn queue(&mut self, sock: &Arc<Socket>, v: Vec<u8>, offset: usize) -> io::Result<()> {
        let mut send = sock.send_all_owned(v, offset);
        match send.submit_unwaited() {
            Ok(()) => {
                self.behind = Some(Behind {
                    send,
                    offset,
                    kicked: false,
                });
                Ok(())
            }
            Err((res, v)) => {
                self.spare = v;
                Err(res.expect_err("an op that ended unsubmitted failed"))
            }
        }
    }

    /// Takes the result of the queued send: waiting for it if `wait`,
    /// else only if it has completed. A short send (a kernel that ignores
    /// `MSG_WAITALL`) or an interrupted one queues the rest.
    fn poll_settle(
        &mut self,
        sock: &Arc<Socket>,
        cx: &mut Context<'_>,
        wait: bool,
    ) -> Poll<io::Result<()>> {
        loop {
            let Some(behind) = self.behind.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if !behind.send.is_complete() {
                if !wait {
                    return Poll::Ready(Ok(()));
                }
                // This wait is an await point of the current scope, whose
                // deadline (armed here: the send has no kernel timeout) or
                // cancellation ends it; the send goes on, for a later
                // wait, as the write that queued it promised.
                if let Some(c) = crate::cancel::poll_cancelled(None, true) {
                    return Poll::Ready(Err(c.into()));
                }
                if !behind.kicked {
                    // Queued with this round's io, it may not have reached
                    // the kernel yet: a write that follows it in the same
                    // poll (a burst of HTTP/2 frames) has this worker
                    // submit and reap now, once, so it waits for the
                    // socket's buffer rather than for the next io pass.
                    behind.kicked = true;
                    crate::io::with_local_uring(|d| d.poll());
                }
            }
            // Not the send's own await point: a scope cancelled since
            // the check above (or during the kick) must not cancel bytes
            // an earlier write reported written.
            let (res, v) = std::task::ready!(behind.send.poll_unwaited(cx));
            let offset = behind.offset;
            self.take_behind();
            match send_progress(res, offset, v.len()) {
                Ok(Some(rest)) => self.queue(sock, v, rest)?,
                Ok(None) => {
                    self.spare = v;
                    return Poll::Ready(Ok(()));
                }
                Err(e) => {
                    self.spare = v;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl Behind {
    /// Waits for the send, and for the rest of a short one.
    async fn finish(mut self) -> io::Result<()> {
        let sock = self.send.socket().clone();
        loop {
            let (res, v) = (&mut self.send).await;
            let Some(rest) = send_progress(res, self.offset, v.len())? else {
                return Ok(());
            };
            self.send = sock.send_all_owned(v, rest);
            self.offset = rest;
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
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_flush(sock, cx)
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
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_flush(sock, cx)
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
                let (sock, compat) = self.get_mut().compat_write();
                compat.poll_flush(sock, cx)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use super::*;

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn waiters_wake_every_live_entry_once_and_forget_dropped_ones() {
        let waiters = Arc::new(Waiters::default());
        let ((a, wa), (b, wb), (c, wc)) = (counting(), counting(), counting());
        let (mut ia, mut ib, mut ic) = (0, 0, 0);
        waiters.register(&mut ia, &wa);
        waiters.register(&mut ib, &wb);
        waiters.register(&mut ic, &wc);
        assert!(ia != 0 && ia != ib && ib != ic && ia != ic, "distinct ids");
        // Polled again: the same entry, not a second one.
        waiters.register(&mut ia, &wa);
        assert_eq!(waiters.list().wakers.len(), 3);
        // A wait dropped at its deadline takes its entry out.
        waiters.remove(ib);
        assert_eq!(waiters.list().wakers.len(), 2);
        Waker::from(waiters.clone()).wake();
        let counts = [&a, &b, &c].map(|n| n.0.load(SeqCst));
        assert_eq!(counts, [1, 0, 1], "every live wait woken once");
        assert!(waiters.list().wakers.is_empty(), "a wake empties the list");
        // Removing an entry the wake already took is a no-op.
        waiters.remove(ia);
        // An entry filed again after the wake is woken by the next one.
        waiters.register(&mut ia, &wa);
        Waker::from(waiters.clone()).wake_by_ref();
        assert_eq!(a.0.load(SeqCst), 2);
    }
}
