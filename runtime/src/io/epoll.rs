//! The epoll driver (on mio): the fallback where io_uring is missing or
//! refused, with the same public API on top.
//!
//! Each worker owns a `mio::Poll` and parks in it. A socket registers with
//! the poll of the worker that created it (edge-triggered); its readiness
//! lives in a [`ScheduledIo`] shared with the futures that use it, so a task
//! stolen by another worker still finds it. Operations are readiness-based:
//! try the syscall when the direction is (or may be) ready; on `EAGAIN`
//! clear readiness (unless an event arrived meanwhile, which the sequence
//! number in the readiness word shows) and wait for the next event.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::*},
        Arc,
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use mio::{unix::SourceFd, Events, Interest, Registry, Token};
use slab::Slab;

use super::pool::{HeapPool, PoolConfig, RecvPools};
use crate::{
    facade::{lock, Mutex},
    runtime::{histogram::Histogram, ticks},
};

const WAKER_TOKEN: Token = Token(usize::MAX);

const READABLE: usize = 0b0001;
const WRITABLE: usize = 0b0010;
/// The peer closed its side (or the socket failed): not cleared by a short
/// read or write, so a read that drained the data before the FIN's event
/// was handled still finds the end of stream; only an `EAGAIN` (which a
/// closed socket never returns) clears it.
const READ_CLOSED: usize = 0b0100;
const WRITE_CLOSED: usize = 0b1000;
const BITS: usize = 0b1111;
const SEQ_SHIFT: u32 = 4;

/// A direction of interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read = 0,
    Write = 1,
}

impl Direction {
    /// The bit an `EAGAIN` clears.
    fn bit(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }

    /// The bits that let an operation try its syscall.
    fn ready_mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED,
            Direction::Write => WRITABLE | WRITE_CLOSED,
        }
    }
}

/// The readiness of one registered socket and the tasks waiting on it.
pub(crate) struct ScheduledIo {
    /// Ready bits, and above them a count of events seen, so a clear after
    /// `EAGAIN` cannot erase an event that arrived after the syscall.
    readiness: AtomicUsize,
    readers: Mutex<Vec<Waker>>,
    writers: Mutex<Vec<Waker>>,
    /// Per direction (read, write): when an operation first found it not
    /// ready and waited, in `runtime::ticks`; 0 when nobody waits. Set by
    /// the waiting operation, taken by the driver's owner when an event
    /// for that direction arrives (`Driver::turn`). Statistics only: a
    /// race between two waiters loses one of their start times.
    waiting_since: [AtomicU64; 2],
}

impl ScheduledIo {
    fn new() -> ScheduledIo {
        ScheduledIo {
            // Unknown at first: let the first operation try the syscall.
            readiness: AtomicUsize::new(READABLE | WRITABLE),
            readers: Mutex::new(Vec::new()),
            writers: Mutex::new(Vec::new()),
            waiting_since: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn set_ready(&self, bits: usize) {
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |cur| {
            Some(((cur >> SEQ_SHIFT).wrapping_add(1) << SEQ_SHIFT) | (cur & BITS) | bits)
        });
        if bits & Direction::Read.ready_mask() != 0 {
            wake_all(&self.readers);
        }
        if bits & Direction::Write.ready_mask() != 0 {
            wake_all(&self.writers);
        }
    }

    /// Runs `op` when `dir` may be ready; on `WouldBlock` waits for the next
    /// readiness event (registering the waker) and tries again.
    ///
    /// `drained` says whether a successful result shows the direction is no
    /// longer ready (a read shorter than the buffer emptied the socket, a
    /// write shorter than asked filled it); readiness is then cleared right
    /// away, saving the syscall that would only return `EAGAIN` (tokio does
    /// the same).
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut() -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        let bit = dir.bit();
        let mask = dir.ready_mask();
        loop {
            let observed = self.readiness.load(Acquire);
            if observed & mask == 0 {
                let since = &self.waiting_since[dir as usize];
                if since.load(Relaxed) == 0 {
                    since.store(ticks::now(), Relaxed);
                }
                self.add_waker(dir, cx.waker());
                // An event may have landed between the load and the
                // registration: look again before sleeping.
                if self.readiness.load(Acquire) & mask == 0 {
                    return Poll::Pending;
                }
                continue;
            }
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Clear only if no event arrived since `observed`. The
                    // syscall is the authority: `EAGAIN` means this
                    // direction is neither ready nor closed (a closed
                    // socket gives 0 or an error, never `EAGAIN`), so a
                    // closed bit is stale too (a fresh socket reports
                    // `EPOLLHUP` when registered before `listen`/`connect`)
                    // and goes with it; otherwise this loop would spin.
                    let _ = self.readiness.compare_exchange(
                        observed,
                        observed & !mask,
                        AcqRel,
                        Acquire,
                    );
                }
                Ok(r) => {
                    if drained(&r) {
                        let _ = self.readiness.compare_exchange(
                            observed,
                            observed & !bit,
                            AcqRel,
                            Acquire,
                        );
                    }
                    return Poll::Ready(Ok(r));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn add_waker(&self, dir: Direction, waker: &Waker) {
        let list = match dir {
            Direction::Read => &self.readers,
            Direction::Write => &self.writers,
        };
        let mut list = lock(list);
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }
}

fn wake_all(list: &Mutex<Vec<Waker>>) {
    let mut guard = lock(list);
    if guard.len() <= 1 {
        // The usual case, one task waiting: `pop` keeps the list's
        // allocation for the next wait (taking the `Vec` cost an allocation
        // per readiness event). The wake runs after the lock is released.
        let waker = guard.pop();
        drop(guard);
        if let Some(w) = waker {
            w.wake();
        }
        return;
    }
    let wakers = std::mem::take(&mut *guard);
    drop(guard);
    for w in wakers {
        w.wake();
    }
}

/// The shared side of one worker's poll.
pub(crate) struct Remote {
    registry: Registry,
    waker: mio::Waker,
    ios: Mutex<Slab<Arc<ScheduledIo>>>,
    registered: AtomicUsize,
    pub(crate) events: AtomicU64,
    pub(crate) polls: AtomicU64,
    /// How long socket directions were waited on (see
    /// `ScheduledIo::waiting_since`), in `runtime::ticks`; written by the
    /// owner in `turn`.
    pub(crate) wait_time: Histogram,
    /// This worker's pooled-receive buffers (see `io::pool`).
    pub(crate) recv: RecvPools,
    /// A second descriptor of the owner's epoll instance, through which a
    /// peer takes the readiness events of an owner stuck in a poll
    /// ([`reap_for_peer`](Self::reap_for_peer)); it keeps the instance
    /// open as long as this `Remote` lives, whatever the owner's side does.
    peer_fd: OwnedFd,
    /// The peer's event buffer; `try_lock`ed, so two peers never wait on
    /// each other for it.
    peer_events: Mutex<Vec<libc::epoll_event>>,
    /// Events a peer took and dispatched (not in `events`, which counts
    /// the owner's).
    pub(crate) peer_reaped: AtomicU64,
}

/// Events one peer reap takes at most.
const PEER_EVENTS: usize = 256;

impl Remote {
    /// Wakes the owner if it is blocked in `epoll_wait`.
    pub(crate) fn wake(&self) {
        // An eventfd write; failure only means the counter is full.
        let _ = self.waker.wake();
    }

    /// Registers `fd` for read and write readiness.
    pub(crate) fn register(self: &Arc<Self>, fd: RawFd) -> io::Result<Registration> {
        let io = Arc::new(ScheduledIo::new());
        let token = lock(&self.ios).insert(io.clone());
        if let Err(err) = self.registry.register(
            &mut SourceFd(&fd),
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            lock(&self.ios).remove(token);
            return Err(err);
        }
        self.registered.fetch_add(1, Relaxed);
        Ok(Registration {
            remote: self.clone(),
            token,
            fd,
            io,
        })
    }

    /// Sockets registered here. A counter, not the slab's length: the
    /// worker reads it on every tick and before every park.
    pub(crate) fn registered(&self) -> usize {
        self.registered.load(Relaxed)
    }

    /// Takes the readiness events waiting in this (another worker's) poll
    /// and dispatches them here, without blocking: the peer's way to run
    /// the io of an owner that the kernel keeps off its CPU, or that is
    /// stuck in a long poll (the caller decides when; see
    /// `WorkerCtx::reap_stuck_peers`). An epoll instance may be waited on
    /// by any thread, each edge reaching one waiter; the wakes run on the
    /// calling thread, so the woken tasks queue on the caller. The owner's
    /// wakeup event, if taken, is given back (written again), since the
    /// owner may be about to sleep on it. Returns the events dispatched.
    pub(crate) fn reap_for_peer(&self) -> u64 {
        let Ok(mut events) = self.peer_events.try_lock() else {
            return 0;
        };
        events.clear();
        // SAFETY: `peer_fd` is an epoll descriptor owned by `self`; the
        // buffer has room for `PEER_EVENTS` entries (reserved at creation,
        // never shrunk), and the length is set to what the kernel wrote.
        let n = unsafe {
            let n = libc::epoll_wait(
                self.peer_fd.as_raw_fd(),
                events.as_mut_ptr(),
                PEER_EVENTS as libc::c_int,
                0,
            );
            if n <= 0 {
                return 0;
            }
            events.set_len(n as usize);
            n as usize
        };
        let mut dispatched = 0;
        let mut now = 0;
        for event in &events[..n] {
            let (token, flags) = (event.u64 as usize, event.events as libc::c_int);
            if token == WAKER_TOKEN.0 {
                self.wake();
                continue;
            }
            if self.dispatch(token, bits_of(flags), &mut now) {
                dispatched += 1;
            }
        }
        self.peer_reaped.fetch_add(dispatched, Relaxed);
        dispatched
    }

    /// Sets `bits` on the socket registered as `token` (waking its tasks)
    /// and records how long its waiters waited; false if the token is no
    /// longer registered. `now`: the clock, read at the first wait that
    /// ends (0 until then).
    fn dispatch(&self, token: usize, bits: usize, now: &mut u64) -> bool {
        let Some(io) = lock(&self.ios).get(token).cloned() else {
            return false;
        };
        for dir in [Direction::Read, Direction::Write] {
            let since = &io.waiting_since[dir as usize];
            if bits & dir.ready_mask() == 0 || since.load(Relaxed) == 0 {
                continue;
            }
            let since = since.swap(0, Relaxed);
            if since != 0 {
                if *now == 0 {
                    *now = ticks::now();
                }
                self.wait_time.record(now.saturating_sub(since));
            }
        }
        io.set_ready(bits);
        true
    }
}

/// The readiness bits of an epoll event's flags, read as mio reads them
/// (`mio::event::Event`'s `is_readable`, `is_read_closed`, ...), so an
/// event means the same whichever side takes it.
fn bits_of(flags: libc::c_int) -> usize {
    let has = |f: libc::c_int| flags & f != 0;
    let mut bits = 0;
    if has(libc::EPOLLIN) || has(libc::EPOLLPRI) {
        bits |= READABLE;
    }
    if has(libc::EPOLLOUT) {
        bits |= WRITABLE;
    }
    let error = has(libc::EPOLLERR);
    if has(libc::EPOLLHUP) || (has(libc::EPOLLIN) && has(libc::EPOLLRDHUP)) || error {
        bits |= READ_CLOSED;
    }
    // mio's `is_write_closed` (a hang-up, or an error with or without
    // `EPOLLOUT`) or `is_error`, as `Driver::turn` reads them.
    if has(libc::EPOLLHUP) || error {
        bits |= WRITE_CLOSED;
    }
    bits
}

/// A socket's registration; deregisters on drop (before the fd closes).
pub(crate) struct Registration {
    remote: Arc<Remote>,
    token: usize,
    fd: RawFd,
    io: Arc<ScheduledIo>,
}

impl Registration {
    pub(crate) fn io(&self) -> &ScheduledIo {
        &self.io
    }

    /// The heap pool of the worker this socket is registered with, which a
    /// pooled receive on it takes buffers from.
    pub(crate) fn heap_pool(&self) -> &Arc<HeapPool> {
        &self.remote.recv.heap
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = self.remote.registry.deregister(&mut SourceFd(&self.fd));
        lock(&self.remote.ios).remove(self.token);
        self.remote.registered.fetch_sub(1, Relaxed);
        // Wake anyone still waiting so they notice the socket is gone.
        self.io.set_ready(BITS);
    }
}

/// The owning side: lives on its worker thread.
pub(crate) struct Driver {
    poll: mio::Poll,
    events: Events,
    remote: Arc<Remote>,
}

impl Driver {
    pub(crate) fn new(pools: PoolConfig) -> io::Result<(Driver, Arc<Remote>)> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        // SAFETY: `dup` of a descriptor `poll` owns and keeps open here;
        // the new descriptor is checked, then owned by the `OwnedFd`.
        let peer_fd = unsafe {
            let fd = libc::fcntl(poll.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        let remote = Arc::new(Remote {
            registry: poll.registry().try_clone()?,
            waker,
            ios: Mutex::new(Slab::new()),
            registered: AtomicUsize::new(0),
            events: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            wait_time: Histogram::new(),
            recv: RecvPools::new(pools),
            peer_fd,
            peer_events: Mutex::new(Vec::with_capacity(PEER_EVENTS)),
            peer_reaped: AtomicU64::new(0),
        });
        Ok((
            Driver {
                poll,
                events: Events::with_capacity(1024),
                remote: remote.clone(),
            },
            remote,
        ))
    }

    /// True if some socket is registered here (worth a non-blocking poll).
    pub(crate) fn has_work(&self) -> bool {
        self.remote.registered() > 0
    }

    /// Sockets registered here.
    pub(crate) fn registered(&self) -> usize {
        self.remote.registered()
    }

    /// Dispatches ready events without blocking.
    pub(crate) fn poll(&mut self) {
        let _ = self.turn(Some(Duration::ZERO));
    }

    /// Blocks until an event, a wakeup, or `deadline`.
    /// True if readiness events arrived (not just a wakeup or the timeout).
    pub(crate) fn park(&mut self, deadline: Option<Instant>) -> bool {
        let timeout = deadline.map(|d| {
            // epoll has millisecond resolution: round up, never wake early.
            let d = d.saturating_duration_since(Instant::now());
            let ms = d.as_nanos().div_ceil(1_000_000);
            Duration::from_millis(ms.min(u64::MAX as u128) as u64)
        });
        self.turn(timeout) > 0
    }

    /// Returns how many readiness events it dispatched.
    fn turn(&mut self, timeout: Option<Duration>) -> u64 {
        self.remote.polls.fetch_add(1, Relaxed);
        if let Err(err) = self.poll.poll(&mut self.events, timeout) {
            if err.kind() != io::ErrorKind::Interrupted {
                panic!("epoll_wait failed: {err}");
            }
            return 0;
        }
        let mut n = 0;
        // One clock read per turn, taken at the first wait that ends.
        let mut now = 0;
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            let mut bits = 0;
            if event.is_readable() {
                bits |= READABLE;
            }
            if event.is_writable() {
                bits |= WRITABLE;
            }
            if event.is_read_closed() || event.is_error() {
                bits |= READ_CLOSED;
            }
            if event.is_write_closed() || event.is_error() {
                bits |= WRITE_CLOSED;
            }
            if self.remote.dispatch(event.token().0, bits, &mut now) {
                n += 1;
            }
        }
        self.remote.events.fetch_add(n, Relaxed);
        n
    }
}

#[cfg(all(test, not(weft_loom), not(weft_shuttle)))]
mod tests {
    use super::*;

    /// `bits_of` reads raw flags as `Driver::turn` reads mio's events
    /// (`is_readable`, `is_writable`, `is_read_closed || is_error`,
    /// `is_write_closed || is_error`): the same event means the same
    /// readiness whichever worker takes it.
    #[test]
    fn raw_flags_read_as_mio_reads_them() {
        use libc::{EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLPRI, EPOLLRDHUP};
        let cases = [
            (EPOLLIN, READABLE),
            (EPOLLPRI, READABLE),
            (EPOLLOUT, WRITABLE),
            (EPOLLIN | EPOLLOUT, READABLE | WRITABLE),
            // A FIN: readable, and the read side closed.
            (EPOLLIN | EPOLLRDHUP, READABLE | READ_CLOSED),
            // RDHUP alone is not a close in mio's reading.
            (EPOLLRDHUP, 0),
            (EPOLLHUP, READ_CLOSED | WRITE_CLOSED),
            (EPOLLERR, READ_CLOSED | WRITE_CLOSED),
            (EPOLLOUT | EPOLLERR, WRITABLE | READ_CLOSED | WRITE_CLOSED),
            (
                EPOLLIN | EPOLLOUT | EPOLLHUP | EPOLLRDHUP,
                READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED,
            ),
            (0, 0),
        ];
        for (flags, bits) in cases {
            assert_eq!(bits_of(flags), bits, "flags {flags:#x}");
        }
    }

    /// A peer's reap of an epoll with nothing ready returns at once with
    /// nothing; one with a ready socket dispatches it and counts it.
    #[test]
    fn a_peer_reap_takes_what_is_ready_and_counts_it() {
        let (driver, remote) = Driver::new(PoolConfig::default()).expect("driver");
        assert_eq!(remote.reap_for_peer(), 0);
        let (a, mut b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let registration = remote.register(a.as_raw_fd()).expect("register");
        // Registration reports the socket writable at once (edge).
        assert_eq!(remote.reap_for_peer(), 1);
        assert_eq!(remote.reap_for_peer(), 0, "an edge reaches one waiter");
        std::io::Write::write_all(&mut b, b"x").expect("write");
        assert_eq!(remote.reap_for_peer(), 1);
        assert_ne!(
            registration.io().readiness.load(Acquire) & READABLE,
            0,
            "the event set the socket readable"
        );
        assert_eq!(remote.peer_reaped.load(Relaxed), 2);
        // The owner's wakeup, taken by the peer, is written again.
        remote.wake();
        assert_eq!(remote.reap_for_peer(), 0);
        let mut events = Events::with_capacity(8);
        let mut poll = driver.poll;
        poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        assert!(
            events.iter().any(|e| e.token() == WAKER_TOKEN),
            "the owner lost its wakeup to the peer"
        );
        drop(registration);
    }
}
