//! The process-wide signal registry: one slot per signal number, one
//! self-pipe, one dispatcher thread.
//!
//! # Protocol
//! 1. **Installing.** The first listener of a signal installs a handler
//!    through `signal-hook-registry` (which chains to handlers installed
//!    before and restores `errno`). It stays installed for the life of the
//!    process, as tokio's does: the signal's default action (terminating
//!    the process, for SIGINT, SIGTERM, SIGHUP...) no longer happens once
//!    weft listens for it.
//! 2. **The handler** does only async-signal-safe things: it sets the
//!    slot's `pending` flag (a lock-free atomic store) and writes one byte
//!    to the self-pipe (`write(2)`; a full pipe, `EAGAIN`, already holds a
//!    byte that will wake the dispatcher, so the error is ignored). No
//!    allocation, no lock, no waker.
//! 3. **The dispatcher**, a thread started with the registry, blocks in
//!    `read(2)` on the pipe. After each read it swaps every installed
//!    slot's `pending` to false; for each that was set it increments the
//!    slot's `deliveries` and then wakes the slot's listeners. `pending` is
//!    set before the byte is written and swapped after a byte is read, so
//!    a delivery is never lost: one that lands during a scan leaves a byte
//!    behind and is found by the next one. Several deliveries between two
//!    scans coalesce into one, as with tokio (and the kernel, which keeps
//!    one pending instance of a standard signal).
//! 4. **A listener** remembers the `deliveries` count it has seen. It is
//!    ready when the count moved. To wait it stores its waker in its slab
//!    entry under `listeners`' lock and reads the count again under that
//!    lock: the dispatcher increments before taking the lock, so either it
//!    finds the waker or the listener finds the new count.
//!
//! The dispatcher is a thread of its own rather than part of an io
//! driver: a process may run several weft runtimes (or none yet) and a
//! signal belongs to the process, and both drivers get the same path. It
//! costs one blocked thread and two fds, from the first listener on.
//! A child made by `fork` without `exec` has the handlers and the pipe but
//! not the thread: listeners there are never woken (as with tokio).

use std::{io, os::fd::RawFd, sync::OnceLock, task::Waker};

use slab::Slab;

use crate::facade::{
    atomic::{AtomicBool, AtomicU64, Ordering::*},
    lock, Mutex,
};

/// One signal number's state.
pub(super) struct Slot {
    /// Set by the handler, cleared by the dispatcher.
    pending: AtomicBool,
    /// Deliveries seen by the dispatcher (coalesced).
    deliveries: AtomicU64,
    /// True once the handler is installed (under this lock: installs of
    /// one signal are serialised).
    installed: Mutex<bool>,
    /// One entry per listener: its waker, once it waits.
    listeners: Mutex<Slab<Option<Waker>>>,
}

pub(super) struct Registry {
    slots: Box<[Slot]>,
    /// The pipe's write end, non-blocking (written by handlers).
    write_fd: RawFd,
}

static REGISTRY: OnceLock<io::Result<Registry>> = OnceLock::new();

/// The registry, created (pipe and dispatcher thread) on first use.
pub(super) fn registry() -> io::Result<&'static Registry> {
    match REGISTRY.get_or_init(Registry::start) {
        Ok(registry) => Ok(registry),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("weft::signal could not start its dispatcher: {e}"),
        )),
    }
}

/// The highest signal number (`SIGRTMAX`).
pub(super) fn max_signal() -> libc::c_int {
    libc::SIGRTMAX()
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Registry {
    fn start() -> io::Result<Registry> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        let [read_fd, write_fd] = fds;
        // Only the write end is non-blocking: the dispatcher blocks on the
        // read end, a handler must never block.
        // SAFETY: `write_fd` is the open descriptor pipe2 just returned.
        let set = unsafe {
            cvt(libc::fcntl(write_fd, libc::F_GETFL)).and_then(|flags| {
                cvt(libc::fcntl(
                    write_fd,
                    libc::F_SETFL,
                    flags | libc::O_NONBLOCK,
                ))
            })
        };
        let slots = (0..=max_signal()).map(|_| Slot::new()).collect();
        let spawned = set.and_then(|_| {
            std::thread::Builder::new()
                .name("weft-signal".into())
                .spawn(move || dispatch(read_fd))
        });
        if let Err(e) = spawned {
            // SAFETY: both descriptors are ours and used by nothing else.
            unsafe {
                libc::close(read_fd);
                libc::close(write_fd);
            }
            return Err(e);
        }
        Ok(Registry { slots, write_fd })
    }

    pub(super) fn slot(&'static self, signal: libc::c_int) -> &'static Slot {
        &self.slots[usize::try_from(signal).expect("a checked signal number")]
    }

    /// Installs the handler of `signal` (checked by the caller) unless it
    /// is already.
    pub(super) fn install(&'static self, signal: libc::c_int) -> io::Result<()> {
        let slot = self.slot(signal);
        let mut installed = lock(&slot.installed);
        if *installed {
            return Ok(());
        }
        let write_fd = self.write_fd;
        let action = move || {
            // Async-signal-safe only: a lock-free store and write(2).
            slot.raise();
            let byte = 1u8;
            // SAFETY: `write_fd` stays open for the life of the process
            // (the registry is never dropped); `byte` is a valid 1-byte
            // buffer. The result is ignored: a full pipe already holds a
            // byte that wakes the dispatcher.
            unsafe { libc::write(write_fd, (&byte as *const u8).cast(), 1) };
        };
        // SAFETY: `action` is async-signal-safe (see above) and does not
        // panic; the signal is not one of `FORBIDDEN` (checked by the
        // caller), so `register` does not panic either.
        unsafe { signal_hook_registry::register(signal, action) }?;
        *installed = true;
        Ok(())
    }

    /// The dispatcher's scan after a wake byte: publishes and wakes.
    fn scan(&self) {
        for slot in self.slots.iter() {
            slot.publish();
        }
    }
}

fn dispatch(read_fd: RawFd) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is writable for its length; `read_fd` stays open
        // for the life of the process.
        let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // Nothing sensible to do: listeners stay pending. Cannot happen
            // with a valid pipe fd.
            return;
        }
        if let Some(Ok(registry)) = REGISTRY.get() {
            registry.scan();
        }
    }
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot {
            pending: AtomicBool::new(false),
            deliveries: AtomicU64::new(0),
            installed: Mutex::new(false),
            listeners: Mutex::new(Slab::new()),
        }
    }

    /// The handler's part (async-signal-safe: one lock-free store).
    pub(super) fn raise(&self) {
        // Release: pairs with `publish`'s Acquire swap.
        self.pending.store(true, Release);
    }

    /// The dispatcher's part, after a wake byte: if the handler ran since
    /// the last time, counts a delivery and wakes the listeners. True if
    /// it did.
    pub(super) fn publish(&self) -> bool {
        // Relaxed: a hint; a set flag is always swapped below.
        if !self.pending.load(Relaxed) || !self.pending.swap(false, Acquire) {
            return false;
        }
        // Release: a listener that reads the new count (Acquire) knows the
        // delivery happened. Before the lock (see the protocol, 4).
        self.deliveries.fetch_add(1, Release);
        let wakers: Vec<Waker> = lock(&self.listeners)
            .iter_mut()
            .filter_map(|(_, w)| w.take())
            .collect();
        for waker in wakers {
            waker.wake();
        }
        true
    }

    /// A new listener: its slab key and the deliveries it has seen.
    pub(super) fn listen(&self) -> (usize, u64) {
        let mut listeners = lock(&self.listeners);
        // Read under the lock: a delivery published after this is new.
        (listeners.insert(None), self.deliveries.load(Acquire))
    }

    /// The delivery count if it moved past `seen`, else stores `waker` to
    /// be woken by the next delivery (and checks again, see the protocol).
    pub(super) fn poll(&self, key: usize, seen: u64, waker: Option<&Waker>) -> Option<u64> {
        let now = self.deliveries.load(Acquire);
        if now != seen {
            return Some(now);
        }
        let waker = waker?;
        let mut listeners = lock(&self.listeners);
        match &mut listeners[key] {
            Some(w) if w.will_wake(waker) => {}
            entry => *entry = Some(waker.clone()),
        }
        let now = self.deliveries.load(Acquire);
        (now != seen).then_some(now)
    }

    pub(super) fn unlisten(&self, key: usize) {
        drop(lock(&self.listeners).remove(key));
    }

    /// Listeners registered now (for tests: none leaked).
    pub(super) fn listener_count(&self) -> usize {
        lock(&self.listeners).len()
    }
}

/// A slot on its own, for the loom model of the handler / dispatcher /
/// listener protocol (`loom-tests/tests/signal.rs`).
#[cfg(weft_loom)]
pub struct SignalSlot(Slot);

#[cfg(weft_loom)]
impl Default for SignalSlot {
    fn default() -> Self {
        SignalSlot::new()
    }
}

#[cfg(weft_loom)]
impl std::fmt::Debug for SignalSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalSlot").finish_non_exhaustive()
    }
}

#[cfg(weft_loom)]
impl SignalSlot {
    /// An empty slot.
    pub fn new() -> SignalSlot {
        SignalSlot(Slot::new())
    }
    fn slot(&self) -> &Slot {
        &self.0
    }
    /// The handler's part.
    pub fn raise(&self) {
        self.slot().raise()
    }
    /// The dispatcher's part.
    pub fn publish(&self) -> bool {
        self.slot().publish()
    }
    /// A new listener: its key and the count it has seen.
    pub fn listen(&self) -> (usize, u64) {
        self.slot().listen()
    }
    /// A listener's poll: the new count, or `None` after storing the waker.
    pub fn poll(&self, key: usize, seen: u64, waker: &Waker) -> Option<u64> {
        self.slot().poll(key, seen, Some(waker))
    }
    /// Drops a listener.
    pub fn unlisten(&self, key: usize) {
        self.slot().unlisten(key)
    }
    /// Listeners registered.
    pub fn listener_count(&self) -> usize {
        self.slot().listener_count()
    }
}
