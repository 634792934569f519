//! Fallback: on chosen failures, an alternative outcome (a cached value, a
//! default, a call to a secondary) instead of the error.
//!
//! ```
//! # use weft_resilience::fallback::{Fallback, Value};
//! let fallback = Fallback::new(|e: &&str| *e == "unavailable", Value(vec!["cached"]));
//! let out = futures_lite_block(fallback.call(async { Err::<Vec<&str>, _>("unavailable") }));
//! assert_eq!(out, Ok(vec!["cached"]));
//! # fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
//! #     let mut f = std::pin::pin!(f);
//! #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
//! #         std::task::Poll::Ready(v) => v,
//! #         std::task::Poll::Pending => unreachable!(),
//! #     }
//! # }
//! ```
//!
//! The predicate sees the error by reference; the action takes it by value
//! (a secondary call may want to report it). An error the predicate does not
//! pick is returned unchanged.

use std::{
    fmt,
    future::{ready, Future, Ready},
    sync::atomic::{AtomicU64, Ordering},
};

/// Produces the fallback outcome from the error it replaces.
///
/// Closures `Fn(E) -> impl Future<Output = Result<T, E>>` implement it, and
/// [`Value`] returns a fixed value.
pub trait FallbackAction<T, E> {
    /// The future of [`fallback`](FallbackAction::fallback).
    type Future: Future<Output = Result<T, E>>;

    /// The outcome to use instead of `error`.
    fn fallback(&self, error: E) -> Self::Future;
}

impl<T, E, F, Fut> FallbackAction<T, E> for F
where
    F: Fn(E) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Future = Fut;

    fn fallback(&self, error: E) -> Fut {
        self(error)
    }
}

/// A fallback to a fixed value (cloned per use).
#[derive(Debug, Clone)]
pub struct Value<T>(pub T);

impl<T: Clone, E> FallbackAction<T, E> for Value<T> {
    type Future = Ready<Result<T, E>>;

    fn fallback(&self, _error: E) -> Self::Future {
        ready(Ok(self.0.clone()))
    }
}

/// A fallback policy: `when` picks the errors, `action` replaces them.
pub struct Fallback<W, A> {
    when: W,
    action: A,
    calls: AtomicU64,
    used: AtomicU64,
}

/// A snapshot of a fallback's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackMetrics {
    /// Calls made through the policy.
    pub calls: u64,
    /// Calls whose error was replaced.
    pub used: u64,
}

impl<W, A> Fallback<W, A> {
    /// A fallback using `action` on the errors `when` picks
    /// (`Fn(&E) -> bool`).
    pub fn new(when: W, action: A) -> Fallback<W, A> {
        Fallback {
            when,
            action,
            calls: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn metrics(&self) -> FallbackMetrics {
        FallbackMetrics {
            calls: self.calls.load(Ordering::Relaxed),
            used: self.used.load(Ordering::Relaxed),
        }
    }

    /// True if `error` would be replaced.
    pub fn picks<E>(&self, error: &E) -> bool
    where
        W: Fn(&E) -> bool,
    {
        (self.when)(error)
    }

    /// Runs `future`; replaces a picked error with the fallback's outcome.
    pub async fn call<Fut, T, E>(&self, future: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        W: Fn(&E) -> bool,
        A: FallbackAction<T, E>,
    {
        // Relaxed: statistics only.
        self.calls.fetch_add(1, Ordering::Relaxed);
        match future.await {
            Err(error) if (self.when)(&error) => {
                self.used.fetch_add(1, Ordering::Relaxed);
                self.action.fallback(error).await
            }
            outcome => outcome,
        }
    }

    /// Counts a call made outside [`call`](Self::call) (by the pipeline).
    pub(crate) fn note_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a use made outside [`call`](Self::call) (by the pipeline).
    pub(crate) fn note_use(&self) {
        self.used.fetch_add(1, Ordering::Relaxed);
    }

    /// The action.
    pub fn action(&self) -> &A {
        &self.action
    }
}

impl<W, A> fmt::Debug for Fallback<W, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use super::*;

    fn block<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("the future waited"),
        }
    }

    #[test]
    fn only_picked_errors_fall_back() {
        let fb = Fallback::new(|e: &u16| *e >= 500, Value("stale"));
        assert_eq!(block(fb.call(async { Err::<&str, u16>(503) })), Ok("stale"));
        assert_eq!(block(fb.call(async { Err::<&str, u16>(404) })), Err(404));
        assert_eq!(block(fb.call(async { Ok::<_, u16>("fresh") })), Ok("fresh"));
        assert_eq!(fb.metrics(), FallbackMetrics { calls: 3, used: 1 });
        assert!(fb.picks(&500));
    }

    #[test]
    fn an_async_action_gets_the_error_and_may_fail_too() {
        let fb = Fallback::new(
            |_: &String| true,
            |e: String| async move {
                if e == "primary down" {
                    Ok("from the secondary".to_string())
                } else {
                    Err(format!("{e}; secondary down too"))
                }
            },
        );
        assert_eq!(
            block(fb.call(async { Err::<String, _>("primary down".to_string()) })),
            Ok("from the secondary".to_string())
        );
        assert_eq!(
            block(fb.call(async { Err::<String, _>("boom".to_string()) })),
            Err("boom; secondary down too".to_string())
        );
    }
}
