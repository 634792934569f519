//! Which results count as failures: a [`Classify`] turns a call's
//! `Result<T, E>` into a [`Verdict`].

use std::fmt;

use crate::caller::CallerEnd;

/// What a call's result means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The call worked.
    Success,
    /// The call failed.
    Failure,
    /// The result says nothing about the callee's health (e.g. a validation
    /// error); it is not recorded, and a half-open probe slot is returned.
    Ignore,
    /// The caller's deadline cut the call (see [`crate::caller`]): a slow
    /// call by default, or what [`ConfigBuilder::deadline_exceeded`] says.
    ///
    /// [`ConfigBuilder::deadline_exceeded`]: super::ConfigBuilder::deadline_exceeded
    DeadlineExceeded,
}

/// The verdict on an error that the caller's cancellation or deadline
/// caused, if it was one.
#[inline]
fn caller_verdict<E: 'static>(error: &E) -> Option<Verdict> {
    crate::caller::caller_end(error).map(|end| match end {
        CallerEnd::Cancelled => Verdict::Ignore,
        CallerEnd::DeadlineExceeded => Verdict::DeadlineExceeded,
    })
}

/// Turns a call's result into a [`Verdict`].
pub trait Classify<T, E> {
    /// The verdict on `result`.
    fn classify(&self, result: &Result<T, E>) -> Verdict;
}

/// Every error is a failure, every value a success (resilience4j's default:
/// every exception recorded) — except an error that reports the caller's own
/// cancellation (ignored) or deadline ([`Verdict::DeadlineExceeded`]); see
/// [`crate::caller`]. Those are only recognised with the `weft` feature.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorsFail;

impl<T, E: 'static> Classify<T, E> for ErrorsFail {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            Err(error) => caller_verdict(error).unwrap_or(Verdict::Failure),
        }
    }
}

/// A classifier from two predicates: the caller's own cancellation and
/// deadline first (as [`ErrorsFail`]), then errors to ignore, then
/// which results are failures, values included (an HTTP 503 is an `Ok`
/// response but a failure of the service).
///
/// ```
/// use weft_resilience::breaker::{Classify, Predicates, Verdict};
///
/// #[derive(Debug)]
/// enum Error { BadRequest, Io }
///
/// let classify = Predicates::new(
///     |result: &Result<u16, Error>| matches!(result, Err(_) | Ok(500..)),
///     |error: &Error| matches!(error, Error::BadRequest),
/// );
/// assert_eq!(classify.classify(&Ok(200)), Verdict::Success);
/// assert_eq!(classify.classify(&Ok(503)), Verdict::Failure);
/// assert_eq!(classify.classify(&Err(Error::Io)), Verdict::Failure);
/// assert_eq!(classify.classify(&Err(Error::BadRequest)), Verdict::Ignore);
/// ```
#[derive(Clone, Copy)]
pub struct Predicates<F, I> {
    is_failure: F,
    is_ignored: I,
}

impl<F, I> Predicates<F, I> {
    /// `is_failure` over the whole result; `is_ignored` over errors.
    pub const fn new(is_failure: F, is_ignored: I) -> Predicates<F, I> {
        Predicates {
            is_failure,
            is_ignored,
        }
    }
}

impl<F, I> fmt::Debug for Predicates<F, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Predicates").finish_non_exhaustive()
    }
}

impl<T, E: 'static, F, I> Classify<T, E> for Predicates<F, I>
where
    F: Fn(&Result<T, E>) -> bool,
    I: Fn(&E) -> bool,
{
    fn classify(&self, result: &Result<T, E>) -> Verdict {
        if let Err(error) = result {
            if let Some(verdict) = caller_verdict(error) {
                return verdict;
            }
            if (self.is_ignored)(error) {
                return Verdict::Ignore;
            }
        }
        if (self.is_failure)(result) {
            Verdict::Failure
        } else {
            Verdict::Success
        }
    }
}
