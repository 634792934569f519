//! The errors of [`mpsc`](super) channels. Each says which: the channel
//! closed, or the waiting task was cancelled (with the cause); send errors
//! give the value back.

use std::fmt;

use crate::cancel::Cancelled;

/// A send that did not queue its value, which it gives back.
#[derive(PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum SendError<T> {
    /// The receiver was dropped or closed.
    Closed(T),
    /// The sending task's scope was cancelled (or its deadline passed)
    /// while it waited for capacity; nothing was queued.
    Cancelled(T, Cancelled),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(v) | SendError::Cancelled(v, _) => v,
        }
    }

    /// True if the receiver is gone.
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }

    /// The cancellation, if that is why.
    pub fn cancelled(&self) -> Option<&Cancelled> {
        match self {
            SendError::Cancelled(_, c) => Some(c),
            _ => None,
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Cancelled(_, c) => f.debug_tuple("Cancelled").field(c).finish(),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("channel closed"),
            SendError::Cancelled(_, c) => write!(f, "send cancelled: {c}"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

/// A `try_send` that did not queue its value, which it gives back.
#[derive(PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum TrySendError<T> {
    /// The channel is at capacity.
    Full(T),
    /// The receiver was dropped or closed.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }

    /// True if the receiver is gone.
    pub fn is_closed(&self) -> bool {
        matches!(self, TrySendError::Closed(_))
    }

    /// True if the channel was at capacity.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => "Full(..)",
            TrySendError::Closed(_) => "Closed(..)",
        })
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => "channel full",
            TrySendError::Closed(_) => "channel closed",
        })
    }
}

impl<T> std::error::Error for TrySendError<T> {}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(err: SendError<T>) -> TrySendError<T> {
        TrySendError::Closed(err.into_inner())
    }
}

/// A [`send_timeout`](super::Sender::send_timeout) that did not queue its
/// value, which it gives back.
#[derive(PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum SendTimeoutError<T> {
    /// No capacity freed up within the timeout.
    Timeout(T),
    /// The receiver was dropped or closed.
    Closed(T),
    /// The sending task's scope was cancelled (or its deadline passed)
    /// first.
    Cancelled(T, Cancelled),
}

impl<T> SendTimeoutError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v)
            | SendTimeoutError::Closed(v)
            | SendTimeoutError::Cancelled(v, _) => v,
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Closed(_) => f.write_str("Closed(..)"),
            SendTimeoutError::Cancelled(_, c) => f.debug_tuple("Cancelled").field(c).finish(),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("timed out waiting on send operation"),
            SendTimeoutError::Closed(_) => f.write_str("channel closed"),
            SendTimeoutError::Cancelled(_, c) => write!(f, "send cancelled: {c}"),
        }
    }
}

impl<T> std::error::Error for SendTimeoutError<T> {}

/// A receive that returned no message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Every sender is gone (or the receiver closed) and the queue is
    /// drained: no message will come.
    Closed,
    /// The receiving task's scope was cancelled (or its deadline passed).
    /// Nothing was taken: queued messages are still there.
    Cancelled(Cancelled),
}

impl RecvError {
    /// True if the channel is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvError::Closed)
    }

    /// The cancellation, if that is why.
    pub fn cancelled(&self) -> Option<&Cancelled> {
        match self {
            RecvError::Cancelled(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("channel closed"),
            RecvError::Cancelled(c) => write!(f, "receive cancelled: {c}"),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Cancelled(c) => Some(c),
            _ => None,
        }
    }
}

/// A `try_recv` that returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryRecvError {
    /// Nothing queued now (or the next message is still being written).
    Empty,
    /// Every sender is gone (or the receiver closed) and the queue is
    /// drained.
    Disconnected,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "channel empty",
            TryRecvError::Disconnected => "channel closed",
        })
    }
}

impl std::error::Error for TryRecvError {}
