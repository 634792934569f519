use std::{error::Error, fmt, io, sync::Arc as StdArc};

/// Why a scope was cancelled. The first cause wins; later cancels of the
/// same scope change nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// Someone called `cancel()` on this scope (a `JoinHandle`,
    /// `AbortHandle`, `CancelHandle` or a `TaskGroup`).
    Explicit,
    /// An enclosing scope was cancelled.
    Parent,
    /// The scope's deadline passed.
    Deadline,
    /// The runtime is shutting down.
    Shutdown,
}

impl Cause {
    pub(crate) fn code(self) -> usize {
        match self {
            Cause::Explicit => 1,
            Cause::Parent => 2,
            Cause::Deadline => 3,
            Cause::Shutdown => 4,
        }
    }

    pub(crate) fn from_code(code: usize) -> Option<Cause> {
        match code {
            1 => Some(Cause::Explicit),
            2 => Some(Cause::Parent),
            3 => Some(Cause::Deadline),
            4 => Some(Cause::Shutdown),
            _ => None,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Explicit => "cancelled explicitly",
            Cause::Parent => "cancelled by its parent",
            Cause::Deadline => "deadline exceeded",
            Cause::Shutdown => "runtime shutting down",
        })
    }
}

/// The error of an await point in a cancelled scope.
///
/// `cause` is why this scope was cancelled; `origin` is why the cancellation
/// started (for a scope cancelled because its parent's deadline passed:
/// `cause() == Parent`, `origin() == Deadline`).
#[derive(Clone, PartialEq, Eq)]
pub struct Cancelled {
    pub(crate) cause: Cause,
    pub(crate) origin: Cause,
    pub(crate) reason: Option<StdArc<str>>,
}

impl Cancelled {
    /// Why this scope was cancelled.
    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// Why the cancellation that reached this scope started.
    pub fn origin(&self) -> Cause {
        self.origin
    }

    /// True if the cancellation started with a deadline passing.
    pub fn is_deadline(&self) -> bool {
        self.origin == Cause::Deadline
    }

    /// The reason given to `cancel_with`, if any (also for descendants of
    /// the scope it was given to).
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("cause", &self.cause)
            .field("origin", &self.origin)
            .field("reason", &self.reason)
            .finish()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cause == Cause::Parent && self.origin != Cause::Parent {
            write!(f, "cancelled by its parent ({})", self.origin)?;
        } else {
            write!(f, "{}", self.cause)?;
        }
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        Ok(())
    }
}

impl Error for Cancelled {}

/// `TimedOut` when the cancellation started with a deadline, `Interrupted`
/// otherwise; the `Cancelled` is the inner error (`get_ref`/`downcast`).
impl From<Cancelled> for io::Error {
    fn from(err: Cancelled) -> io::Error {
        let kind = if err.is_deadline() {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::Interrupted
        };
        io::Error::new(kind, err)
    }
}
