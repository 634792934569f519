//! Unix signals as streams of deliveries: [`signal`] and [`Signal`].

use std::{
    fmt, io,
    pin::Pin,
    task::{Context, Poll},
};

use super::registry::{self, Slot};
use crate::{
    cancel::{self, Cancelled},
    coop,
};

/// Which signal to listen for. Constructors for the common ones;
/// [`from_raw`](Self::from_raw) for any other number (checked when
/// [`signal`] is called).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalKind(libc::c_int);

impl SignalKind {
    /// Any signal number (`libc::SIGRTMIN() + 1`, say). [`signal`] rejects
    /// the ones that cannot be handled.
    pub const fn from_raw(signum: libc::c_int) -> SignalKind {
        SignalKind(signum)
    }

    /// The signal number.
    pub const fn as_raw_value(&self) -> libc::c_int {
        self.0
    }

    /// `SIGINT`: the terminal's interrupt (Ctrl-C).
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }

    /// `SIGTERM`: a polite request to terminate (what `kill` and service
    /// managers send first).
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }

    /// `SIGHUP`: the terminal hung up; by convention, "reload the
    /// configuration" for daemons.
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }

    /// `SIGQUIT`: the terminal's quit (Ctrl-\\).
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }

    /// `SIGUSR1`: for the application's own use.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }

    /// `SIGUSR2`: for the application's own use.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }

    /// `SIGCHLD`: a child process stopped or exited.
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }

    /// `SIGPIPE`: a write to a pipe or socket with no reader.
    pub const fn pipe() -> SignalKind {
        SignalKind(libc::SIGPIPE)
    }

    /// `SIGALRM`: an `alarm(2)` timer expired.
    pub const fn alarm() -> SignalKind {
        SignalKind(libc::SIGALRM)
    }

    /// `SIGWINCH`: the terminal's window size changed.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }
}

impl From<libc::c_int> for SignalKind {
    fn from(signum: libc::c_int) -> SignalKind {
        SignalKind::from_raw(signum)
    }
}

/// Checks `signum` can be listened for, with an error that says why not.
fn check(signum: libc::c_int) -> io::Result<()> {
    let max = registry::max_signal();
    if signum < 1 || signum > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signum} is not a signal number (1..={max})"),
        ));
    }
    if signal_hook_registry::FORBIDDEN.contains(&signum) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "signal {signum} cannot be listened for: SIGKILL and SIGSTOP cannot be \
                 caught, and SIGILL, SIGFPE and SIGSEGV must not be handled asynchronously"
            ),
        ));
    }
    if signum > libc::SIGSYS && signum < libc::SIGRTMIN() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "signal {signum} is reserved by the C library (real-time signals start at {})",
                libc::SIGRTMIN()
            ),
        ));
    }
    Ok(())
}

/// Listens for `kind`: the returned [`Signal`] is ready once per delivery
/// (deliveries close together may coalesce into one) from now on.
///
/// The first listener of a signal installs the process's handler for it,
/// and that handler stays for the life of the process (as with tokio): the
/// signal's default action, such as terminating the process on `SIGTERM`,
/// no longer happens, even after every listener is dropped.
///
/// # Errors
/// `InvalidInput` for a number that is not a signal, for `SIGKILL`,
/// `SIGSTOP` (they cannot be caught), `SIGILL`, `SIGFPE`, `SIGSEGV` (not
/// safely handled asynchronously) and the two numbers the C library keeps
/// for itself; the OS error if installing the handler fails.
///
/// ```
/// use weft::signal::unix::{signal, SignalKind};
///
/// # let rt = weft::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// # rt.block_on(rt.spawn(async {
/// let mut hup = signal(SignalKind::hangup())?;
/// // SAFETY: kill(2) to our own process, for a signal we now listen for.
/// unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
/// hup.recv().await.expect("not cancelled");
///
/// let err = signal(SignalKind::from_raw(libc::SIGKILL)).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// # std::io::Result::Ok(())
/// # })).unwrap().unwrap();
/// ```
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    let signum = kind.as_raw_value();
    check(signum)?;
    let registry = registry::registry()?;
    registry.install(signum)?;
    let slot = registry.slot(signum);
    let (key, seen) = slot.listen();
    Ok(Signal {
        kind,
        slot,
        key,
        seen,
    })
}

/// Listeners of `kind` now (tests check that none leak).
#[doc(hidden)]
pub fn __listener_count(kind: SignalKind) -> usize {
    let signum = kind.as_raw_value();
    match (check(signum), registry::registry()) {
        (Ok(()), Ok(registry)) => registry.slot(signum).listener_count(),
        _ => 0,
    }
}

/// A listener for one signal, from [`signal`].
///
/// Every listener sees every delivery: several listeners of one signal
/// (in different tasks, say) are each woken once per delivery. Waiting is
/// a weft await point: in a cancelled scope, or past its deadline,
/// [`recv`](Self::recv) returns `Err(Cancelled)` at once and on every later
/// call, and the stream ends. A delivery that arrived meanwhile is not
/// lost: it is reported by the next `recv` in a scope that is not
/// cancelled.
pub struct Signal {
    kind: SignalKind,
    slot: &'static Slot,
    key: usize,
    /// The slot's delivery count this listener has reported.
    seen: u64,
}

impl Signal {
    /// Waits for the next delivery since the last one reported (or since
    /// the listener was made): `Ok(())`, or `Err(Cancelled)` if the scope
    /// is cancelled or its deadline passes first.
    ///
    /// tokio's `recv` returns `Option<()>` (`None`: no more signals, which
    /// never happens for Unix signals); weft's has the cancellation to
    /// report instead, with its cause. Cancel-safe: dropping the future
    /// loses no delivery.
    pub async fn recv(&mut self) -> Result<(), Cancelled> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The poll behind [`recv`](Self::recv), for hand-written futures.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Cancelled>> {
        let restore = std::task::ready!(coop::poll_proceed(cx));
        if let Some(c) = cancel::poll_cancelled(None, false) {
            restore.made_progress();
            return Poll::Ready(Err(c));
        }
        if let Some(now) = self.slot.poll(self.key, self.seen, Some(cx.waker())) {
            restore.made_progress();
            self.seen = now;
            return Poll::Ready(Ok(()));
        }
        // About to wait: the task's node must wake it on cancel, and the
        // scope's deadline timer must be armed.
        cancel::with_current_scope(|_| ());
        if let Some(c) = cancel::poll_cancelled(None, true) {
            restore.made_progress();
            return Poll::Ready(Err(c));
        }
        crate::runtime::dump::awaiting(cx.waker(), crate::runtime::dump::Awaiting::Signal);
        Poll::Pending
    }

    /// The signal this listens for.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }
}

/// One `()` per delivery; the stream ends (`None`, on every later poll)
/// when the scope is cancelled or its deadline passes.
impl futures_core::Stream for Signal {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.get_mut().poll_recv(cx).map(Result::ok)
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        self.slot.unlisten(self.key);
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("kind", &self.kind)
            .field("seen", &self.seen)
            .finish()
    }
}
