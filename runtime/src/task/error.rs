use std::{any::Any, fmt, io};

use super::Id;
use crate::cancel::Cancelled;

/// Why a task produced no output: it was aborted (or the runtime shut down),
/// or it panicked.
pub struct JoinError {
    id: Id,
    repr: Repr,
}

enum Repr {
    Cancelled,
    Panic(SyncPayload),
    /// The task awaiting the handle was in a cancelled scope; the awaited
    /// task itself may still be running.
    Interrupted(Cancelled),
}

/// A panic payload made `Sync` by never handing out `&` to it except as a
/// type that is itself `Sync` (`downcast_ref_sync`); everything else takes it
/// by value. This lets `JoinError` go into `Box<dyn Error + Send + Sync>`.
struct SyncPayload(Box<dyn Any + Send + 'static>);

// SAFETY: no `&self` method exposes the inner value except as `&T` with
// `T: Sync` (sharing such a reference across threads is sound); ownership
// moves are covered by `Send`.
unsafe impl Sync for SyncPayload {}

impl SyncPayload {
    fn downcast_ref_sync<T: Any + Sync>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl JoinError {
    pub(crate) fn cancelled(id: Id) -> JoinError {
        JoinError {
            id,
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn new_interrupted(id: Id, cancelled: Cancelled) -> JoinError {
        JoinError {
            id,
            repr: Repr::Interrupted(cancelled),
        }
    }

    /// The join itself was cut short because the awaiting code's scope was
    /// cancelled (level-triggered cancellation, as Kotlin's `join`); the
    /// awaited task may still be running. Gives the cancellation.
    pub fn interrupted(&self) -> Option<&Cancelled> {
        match &self.repr {
            Repr::Interrupted(c) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn panic(id: Id, payload: Box<dyn Any + Send + 'static>) -> JoinError {
        JoinError {
            id,
            repr: Repr::Panic(SyncPayload(payload)),
        }
    }

    /// The task was aborted or dropped by runtime shutdown before finishing,
    /// or (see [`interrupted`](Self::interrupted)) the join was cut short by
    /// cancellation of the awaiting scope.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled | Repr::Interrupted(_))
    }

    /// The task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The id of the task that failed.
    pub fn id(&self) -> Id {
        self.id
    }

    /// The panic payload, to re-raise with `std::panic::resume_unwind`.
    ///
    /// # Panics
    /// If the task did not panic.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .expect("`JoinError::into_panic` called on a task that did not panic")
    }

    /// The panic payload, or the error back if the task did not panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(payload) => Ok(payload.0),
            Repr::Cancelled | Repr::Interrupted(_) => Err(self),
        }
    }

    fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            Repr::Panic(p) => p
                .downcast_ref_sync::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref_sync::<String>().map(String::as_str)),
            Repr::Cancelled | Repr::Interrupted(_) => None,
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "task {} was cancelled", self.id),
            Repr::Interrupted(c) => write!(f, "join of task {} interrupted: {c}", self.id),
            Repr::Panic(_) => match self.panic_message() {
                Some(msg) => write!(f, "task {} panicked with message {msg:?}", self.id),
                None => write!(f, "task {} panicked", self.id),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "JoinError::Cancelled({:?})", self.id),
            Repr::Interrupted(c) => write!(f, "JoinError::Interrupted({:?}, {c:?})", self.id),
            Repr::Panic(_) => match self.panic_message() {
                Some(msg) => write!(f, "JoinError::Panic({:?}, {msg:?})", self.id),
                None => write!(f, "JoinError::Panic({:?}, ...)", self.id),
            },
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for io::Error {
    fn from(err: JoinError) -> io::Error {
        io::Error::other(err.to_string())
    }
}
