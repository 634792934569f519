//! Helpers for the networking scenarios (`net_*.rs`): a runtime per test
//! that checks, when the test ends, that nothing leaked (tasks, io ops the
//! drivers still own, file descriptors); connected socket pairs on
//! loopback; a byte pattern that shows any lost, doubled or reordered byte;
//! and the few raw socket options the fault tests need.
//!
//! Every network test in a binary runs under one lock ([`NetRt::new`]
//! takes it): fd counts are per process, so they only mean something when
//! no other test of the binary opens or closes sockets meanwhile, and the
//! fault tests change process-wide settings (`RLIMIT_NOFILE`, `SIGPIPE`).
//!
//! [`on_each_driver!`] turns one scenario `fn(Driver)` into three tests: the
//! default runtime (the driver `WEFT_IO` picks, so CI's second run with
//! `WEFT_IO=epoll` changes it), and one forced to each driver, so a single
//! run covers both.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    os::fd::AsRawFd,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use weft::{
    cancel::Cancelled,
    io::Driver,
    net::{TcpListener, TcpStream},
    runtime::{Builder, Runtime},
};

use super::{block_on_bounded, eventually, eventually_within, LIMIT};

/// Loopback with a port the kernel picks: the only address the suite uses.
pub(crate) const LOOPBACK: &str = "127.0.0.1:0";

/// Generates `mod $name { default_driver, epoll, uring }`, each calling the
/// scenario `$name(driver)` (`Driver::Auto` for the default runtime).
#[allow(unused_macros)] // Not every binary that includes `common` uses it.
macro_rules! on_each_driver {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                /// The runtime `Builder` gives without an `io_driver` call.
                #[test]
                fn default_driver() {
                    super::$name(weft::io::Driver::Auto)
                }

                #[test]
                fn epoll() {
                    super::$name(weft::io::Driver::Epoll)
                }

                #[test]
                fn uring() {
                    super::$name(weft::io::Driver::Uring)
                }
            }
        )*
    };
}
#[allow(unused_imports)] // Not every binary that includes `common` uses it.
pub(crate) use on_each_driver;

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the binary's network lock: one network test at a time.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the next test
    // starts from a fresh runtime anyway.
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Open file descriptors of this process.
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .count()
}

/// Builds a 2-worker runtime on `driver` (`Auto`: the builder's default,
/// without an `io_driver` call), after `configure` has had its say.
pub(crate) fn build_rt_with(driver: Driver, configure: impl FnOnce(Builder) -> Builder) -> Runtime {
    let mut builder = Builder::new_multi_thread().worker_threads(2);
    if !matches!(driver, Driver::Auto) {
        builder = builder.io_driver(driver);
    }
    let rt = configure(builder)
        .build()
        .unwrap_or_else(|e| panic!("building a runtime on {driver:?}: {e}"));
    if !matches!(driver, Driver::Auto) {
        assert_eq!(
            rt.io_driver(),
            driver,
            "the runtime runs the driver asked for"
        );
    }
    rt
}

/// A runtime for one network test, with the leak checks of its end.
pub(crate) struct NetRt {
    pub(crate) rt: Runtime,
    fds_before: usize,
    _serial: MutexGuard<'static, ()>,
}

impl NetRt {
    /// Takes the network lock, counts fds, builds the runtime.
    pub(crate) fn new(driver: Driver) -> NetRt {
        NetRt::with(driver, |builder| builder)
    }

    /// As [`NetRt::new`], with more builder settings.
    pub(crate) fn with(driver: Driver, configure: impl FnOnce(Builder) -> Builder) -> NetRt {
        let serial = serial();
        let fds_before = fd_count();
        NetRt {
            rt: build_rt_with(driver, configure),
            fds_before,
            _serial: serial,
        }
    }

    /// Runs `future` on the runtime, failing the test after [`LIMIT`].
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        block_on_bounded(&self.rt, future)
    }

    /// Runs `future` as a task (a scope of its own, unlike `block_on`) and
    /// returns its output, failing the test after [`LIMIT`].
    pub(crate) fn in_task<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.block_on(self.rt.spawn(future))
            .expect("the test's task completed")
    }

    /// The end of a test: every task finished, the drivers own no op, and
    /// once the runtime is dropped the process has no more fds than before
    /// it was built.
    pub(crate) fn finish(self) {
        let NetRt {
            rt,
            fds_before,
            _serial,
        } = self;
        assert!(
            eventually(|| rt.metrics().alive_tasks == 0),
            "tasks leaked: alive_tasks is still {}",
            rt.metrics().alive_tasks
        );
        assert_io_idle(&rt);
        drop(rt);
        assert_fds_at_most(fds_before, "after the runtime was dropped");
    }

    /// The end of a test that leaves work behind on purpose: drops the
    /// runtime with tasks still blocked in io (bounded: a hang in shutdown
    /// fails the test), then checks that every fd the runtime had was
    /// closed: at most `extra_fds` (sockets the test itself still holds)
    /// over the count before the runtime was built.
    pub(crate) fn finish_by_dropping(self, extra_fds: usize) {
        let NetRt {
            rt,
            fds_before,
            _serial,
        } = self;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(rt);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(LIMIT)
            .expect("dropping a runtime with io in flight finished within the limit");
        assert_fds_at_most(fds_before + extra_fds, "after the runtime was dropped");
    }
}

/// Inside the runtime: waits (bounded) until the drivers own no io op. For
/// tests that reuse a stream after a cancelled or dropped op: until the
/// kernel let go of the old op, it may still take the next bytes.
pub(crate) async fn wait_io_idle() {
    let handle = weft::runtime::Handle::current();
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if handle.metrics().io_ops_in_flight == 0 {
            return;
        }
        weft::time::sleep(Duration::from_millis(1))
            .await
            .expect("wait_io_idle runs in a scope that is not cancelled");
    }
    panic!(
        "io ops leaked: io_ops_in_flight is still {}",
        handle.metrics().io_ops_in_flight
    );
}

/// Waits (bounded) until the drivers own no io op, and asserts it.
pub(crate) fn assert_io_idle(rt: &Runtime) {
    assert!(
        eventually(|| rt.metrics().io_ops_in_flight == 0),
        "io ops leaked: io_ops_in_flight is still {}",
        rt.metrics().io_ops_in_flight
    );
}

/// Waits (bounded: closes can lag a moment behind the drops that cause
/// them) until at most `baseline` fds are open, and asserts it.
pub(crate) fn assert_fds_at_most(baseline: usize, when: &str) {
    assert!(
        eventually_within(Duration::from_secs(5), || fd_count() <= baseline),
        "fds leaked {when}: {} open, {baseline} expected",
        fd_count()
    );
}

/// Inside the runtime: as [`assert_fds_at_most`], waiting with weft's
/// timers so the workers (which may have the closing to do) keep running.
pub(crate) async fn wait_fds_at_most(baseline: usize, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while fd_count() > baseline && Instant::now() < deadline {
        weft::time::sleep(Duration::from_millis(1))
            .await
            .expect("wait_fds_at_most runs in a scope that is not cancelled");
    }
    assert!(
        fd_count() <= baseline,
        "fds leaked {when}: {} open, {baseline} expected",
        fd_count()
    );
}

/// A listener on loopback and its address.
pub(crate) async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(LOOPBACK)
        .await
        .expect("binding loopback, port 0");
    let addr = listener.local_addr().expect("a bound listener's address");
    (listener, addr)
}

/// Two connected weft streams: `(client, server)`.
pub(crate) async fn tcp_pair() -> (TcpStream, TcpStream) {
    let (listener, addr) = listener().await;
    let accepting = weft::spawn(async move { listener.accept().await });
    let client = TcpStream::connect(addr).await.expect("connect to loopback");
    let (server, _) = accepting
        .await
        .expect("the accepting task completed")
        .expect("accept");
    (client, server)
}

/// A std (blocking) client connected to a weft server stream: `(client,
/// server)`. Loopback connects complete from the listen backlog, so the
/// blocking connect does not wait for the accept.
pub(crate) async fn std_client_pair() -> (std::net::TcpStream, TcpStream) {
    let (listener, addr) = listener().await;
    let client = std::net::TcpStream::connect(addr).expect("std connect to loopback");
    client
        .set_read_timeout(Some(LIMIT))
        .expect("set_read_timeout");
    client
        .set_write_timeout(Some(LIMIT))
        .expect("set_write_timeout");
    let (server, peer) = listener.accept().await.expect("accept");
    assert_eq!(peer, client.local_addr().unwrap());
    (client, server)
}

/// Reads from `stream` until `n` bytes arrived (fails on EOF or error).
pub(crate) async fn read_exact(stream: &TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(n);
    // Each successful read brings at least one byte: n reads at most.
    for _ in 0..=n {
        if got.len() == n {
            return got;
        }
        let (res, buf) = stream.read(Vec::with_capacity(n - got.len())).await;
        let k = res.expect("read");
        assert!(k > 0, "EOF after {} of {n} bytes", got.len());
        got.extend_from_slice(&buf[..k]);
    }
    panic!("read_exact made no progress")
}

/// Reads from `stream` until EOF; at most `limit` bytes (more fails).
pub(crate) async fn read_to_eof(stream: &TcpStream, limit: usize) -> Vec<u8> {
    let mut got = Vec::new();
    for _ in 0..=limit + 1 {
        let (res, buf) = stream.read(Vec::with_capacity(64 * 1024)).await;
        match res.expect("read") {
            0 => return got,
            k => got.extend_from_slice(&buf[..k]),
        }
        assert!(got.len() <= limit, "more than {limit} bytes before EOF");
    }
    panic!("read_to_eof made no progress")
}

/// The byte at `offset` of the test pattern `seed`: each 4-byte word holds
/// its own index (xor the seed), so a lost, doubled or moved chunk shows.
pub(crate) fn pattern_byte(seed: u32, offset: usize) -> u8 {
    let word = (offset / 4) as u32 ^ seed;
    word.to_le_bytes()[offset % 4]
}

/// `len` bytes of pattern `seed` from offset 0.
pub(crate) fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern_byte(seed, i)).collect()
}

/// Asserts `chunk` is the pattern `seed` at `offset`.
pub(crate) fn check_pattern(seed: u32, offset: usize, chunk: &[u8]) {
    if let Some(i) = (0..chunk.len()).find(|&i| chunk[i] != pattern_byte(seed, offset + i)) {
        panic!(
            "byte {} is {:#04x}, the pattern has {:#04x} there (seed {seed:#x})",
            offset + i,
            chunk[i],
            pattern_byte(seed, offset + i)
        );
    }
}

/// The cancellation inside an io error from a cancelled await point.
pub(crate) fn cancelled_of(err: &io::Error) -> &Cancelled {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Cancelled>())
        .unwrap_or_else(|| panic!("{err:?} carries no weft::cancel::Cancelled"))
}

/// Sets `SO_LINGER` to on, 0 s: closing the socket then sends RST.
pub(crate) fn set_linger_zero(socket: &impl AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is a live socket borrowed from `socket`; the option
    // value points at a `linger` that outlives the call, with its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        io::Error::last_os_error()
    );
}

/// Resets a connection: closes `socket` with `SO_LINGER` 0, which sends RST
/// instead of FIN.
pub(crate) fn reset(socket: std::net::TcpStream) {
    set_linger_zero(&socket);
    drop(socket);
}

/// Echoes everything it reads until EOF, then shuts its write side down;
/// returns the byte count. More than `limit` bytes fails the test.
pub(crate) async fn echo(stream: TcpStream, limit: usize) -> usize {
    let mut total = 0;
    for _ in 0..=limit {
        let (res, buf) = stream.read(Vec::with_capacity(16 * 1024)).await;
        let n = res.expect("echo read");
        if n == 0 {
            stream
                .shutdown(std::net::Shutdown::Write)
                .expect("echo shutdown");
            return total;
        }
        total += n;
        assert!(total <= limit, "the echo got more than {limit} bytes");
        let (res, _) = stream.write_all(buf).await;
        res.expect("echo write_all");
    }
    panic!("the echo made no progress")
}

/// The soft `RLIMIT_NOFILE` set to a value for as long as this lives; the
/// old limits come back on drop (also when the test fails).
pub(crate) struct NofileLimit {
    old: libc::rlimit,
}

impl NofileLimit {
    fn get() -> libc::rlimit {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit for the call.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
        lim
    }

    fn set(lim: &libc::rlimit) {
        // SAFETY: `lim` is a valid rlimit for the call.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) };
        assert_eq!(rc, 0, "setrlimit: {}", io::Error::last_os_error());
    }

    /// The soft limit now.
    pub(crate) fn soft() -> u64 {
        Self::get().rlim_cur
    }

    /// Sets the soft limit to `soft` (capped at the hard limit).
    pub(crate) fn set_soft(soft: u64) -> NofileLimit {
        let old = Self::get();
        let new = libc::rlimit {
            rlim_cur: soft.min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        Self::set(&new);
        NofileLimit { old }
    }
}

impl Drop for NofileLimit {
    fn drop(&mut self) {
        Self::set(&self.old);
    }
}

/// `SIGPIPE` back at its default action (kill the process) for as long as
/// this lives. Rust programs ignore it from the start, which would hide a
/// driver that writes to sockets without `MSG_NOSIGNAL`; a library cannot
/// count on its host doing the same.
pub(crate) struct SigpipeDefault {
    old: libc::sighandler_t,
}

impl SigpipeDefault {
    pub(crate) fn new() -> SigpipeDefault {
        // SAFETY: installing the default disposition for SIGPIPE has no
        // preconditions; the old one is restored on drop.
        let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        assert_ne!(old, libc::SIG_ERR, "signal(SIGPIPE, SIG_DFL)");
        SigpipeDefault { old }
    }
}

impl Drop for SigpipeDefault {
    fn drop(&mut self) {
        // SAFETY: `old` is the disposition `signal` returned before.
        unsafe { libc::signal(libc::SIGPIPE, self.old) };
    }
}
