//! How the *caller* ended a call, as opposed to how the callee answered it.
//!
//! weft's cancellation is level-triggered: in a cancelled scope every await
//! point — a read, a connect, a join — returns an error carrying a
//! `weft::cancel::Cancelled`. Such an error says nothing about the health
//! of the service being called: the caller hung up, or its parent did, or
//! the runtime is shutting down. Every policy in this crate asks
//! [`caller_end`] before judging an error, and applies one rule:
//!
//! * [`CallerEnd::Cancelled`] (cause `Explicit`, `Parent` or `Shutdown`
//!   with a non-deadline origin): **ignored** — not a success, not a
//!   failure, no latency sample; a half-open probe slot is given back.
//! * [`CallerEnd::DeadlineExceeded`] (the cancellation started with a
//!   deadline passing: the caller's own or an ancestor's): **a slow call**
//!   by default (the breaker's `deadline_exceeded` setting can make it a
//!   failure or ignore it). The deadline is the caller's budget, not a
//!   verdict on the callee: a service that answers in 80 ms to a caller
//!   that allowed 50 ms is slower than that caller wants, which is exactly
//!   what a slow-call rate measures; counting it as an error would let one
//!   impatient client trip a breaker every other client still needs, and
//!   ignoring it would hide a service slowing down until every caller gives
//!   up.
//!
//! Without the `weft` feature nothing is recognised ([`caller_end`] is
//! always `None`) and [`check_scope`] always passes.
//!
//! Recognised error types (matched by `TypeId`, so the test costs nothing
//! for other types): `std::io::Error` whose kind is `Interrupted` or
//! `TimedOut` with a `Cancelled` inside (how weft's io reports it),
//! `weft::cancel::Cancelled`, `weft::JoinError` (a join cut short by the
//! caller's scope, or a task aborted), `weft::sync::error::AcquireError`,
//! and `Box<dyn Error + Send + Sync>` holding any of these.

use std::any::Any;

/// The caller, not the callee, ended the call; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerEnd {
    /// Cancelled by the caller, an ancestor or runtime shutdown: ignored.
    Cancelled,
    /// Cut by a deadline of the caller's scope (or an ancestor's): a slow
    /// call by default.
    DeadlineExceeded,
}

/// Whether `error` reports the caller's cancellation or deadline rather than
/// the callee's failure. Always `None` without the `weft` feature.
#[inline]
pub fn caller_end<E: 'static>(error: &E) -> Option<CallerEnd> {
    imp::caller_end(error as &dyn Any)
}

/// `Err` if the current weft scope is cancelled or past its deadline: what
/// every `acquire` in this crate checks first, so a cancelled caller never
/// takes a half-open probe, a permit or a token. Always `Ok` without the
/// `weft` feature or outside a weft task.
#[inline]
pub fn check_scope() -> Result<(), CallerEnd> {
    imp::check_scope()
}

#[cfg(feature = "weft")]
mod imp {
    use std::{any::Any, error::Error, io};

    use weft::{cancel::Cancelled, sync::error::AcquireError, JoinError};

    use super::CallerEnd;

    fn of(cancelled: &Cancelled) -> CallerEnd {
        if cancelled.is_deadline() {
            CallerEnd::DeadlineExceeded
        } else {
            CallerEnd::Cancelled
        }
    }

    fn of_io(error: &io::Error) -> Option<CallerEnd> {
        match error.kind() {
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut => {
                error.get_ref()?.downcast_ref::<Cancelled>().map(of)
            }
            _ => None,
        }
    }

    fn of_join(error: &JoinError) -> Option<CallerEnd> {
        match error.interrupted() {
            Some(cancelled) => Some(of(cancelled)),
            // The awaited task was aborted or dropped by shutdown: the
            // caller's side ended it, the callee never answered.
            None if error.is_cancelled() => Some(CallerEnd::Cancelled),
            None => None,
        }
    }

    fn of_acquire(error: &AcquireError) -> Option<CallerEnd> {
        error.cancelled().map(of)
    }

    fn of_dyn(error: &(dyn Error + 'static)) -> Option<CallerEnd> {
        if let Some(e) = error.downcast_ref::<io::Error>() {
            of_io(e)
        } else if let Some(e) = error.downcast_ref::<Cancelled>() {
            Some(of(e))
        } else if let Some(e) = error.downcast_ref::<JoinError>() {
            of_join(e)
        } else {
            error.downcast_ref::<AcquireError>().and_then(of_acquire)
        }
    }

    #[inline]
    pub(super) fn caller_end(error: &dyn Any) -> Option<CallerEnd> {
        if let Some(e) = error.downcast_ref::<io::Error>() {
            of_io(e)
        } else if let Some(e) = error.downcast_ref::<Cancelled>() {
            Some(of(e))
        } else if let Some(e) = error.downcast_ref::<JoinError>() {
            of_join(e)
        } else if let Some(e) = error.downcast_ref::<AcquireError>() {
            of_acquire(e)
        } else if let Some(e) = error.downcast_ref::<Box<dyn Error + Send + Sync>>() {
            of_dyn(&**e)
        } else {
            None
        }
    }

    #[inline]
    pub(super) fn check_scope() -> Result<(), CallerEnd> {
        weft::cancel::check().map_err(|c| of(&c))
    }
}

#[cfg(not(feature = "weft"))]
mod imp {
    use std::any::Any;

    use super::CallerEnd;

    #[inline]
    pub(super) fn caller_end(_error: &dyn Any) -> Option<CallerEnd> {
        None
    }

    #[inline]
    pub(super) fn check_scope() -> Result<(), CallerEnd> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_errors_are_the_callee_s() {
        assert_eq!(caller_end(&std::io::Error::other("boom")), None);
        assert_eq!(
            caller_end(&std::io::Error::from(std::io::ErrorKind::TimedOut)),
            None,
            "a timeout without a Cancelled inside is the callee's (a socket timeout)"
        );
        assert_eq!(caller_end(&"not an error type"), None);
        assert_eq!(
            check_scope(),
            Ok(()),
            "outside any task nothing is cancelled"
        );
    }
}
