//! Which outcomes are worth another attempt.

/// Decides from a whole outcome — the error *or* the value (a `503` that
/// came back as `Ok`) — whether another attempt may do better. Hedging uses
/// the same test: an outcome worth retrying is not an acceptable winner.
///
/// Closures `Fn(&Result<T, E>) -> bool` implement it.
pub trait RetryOn<T, E> {
    /// True to try again.
    fn should_retry(&self, outcome: &Result<T, E>) -> bool;
}

/// Retries every `Err`, never an `Ok` (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnErrors;

impl<T, E> RetryOn<T, E> for OnErrors {
    #[inline]
    fn should_retry(&self, outcome: &Result<T, E>) -> bool {
        outcome.is_err()
    }
}

/// Retries the errors `F` picks (`Fn(&E) -> bool`), never an `Ok`.
#[derive(Debug, Clone, Copy)]
pub struct OnError<F>(pub F);

impl<T, E, F: Fn(&E) -> bool> RetryOn<T, E> for OnError<F> {
    #[inline]
    fn should_retry(&self, outcome: &Result<T, E>) -> bool {
        outcome.as_ref().err().is_some_and(&self.0)
    }
}

impl<T, E, F: Fn(&Result<T, E>) -> bool> RetryOn<T, E> for F {
    #[inline]
    fn should_retry(&self, outcome: &Result<T, E>) -> bool {
        self(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        let ok: Result<u16, &str> = Ok(503);
        let err: Result<u16, &str> = Err("reset");
        assert!(!OnErrors.should_retry(&ok));
        assert!(OnErrors.should_retry(&err));
        let only_reset = OnError(|e: &&str| *e == "reset");
        assert!(only_reset.should_retry(&err));
        assert!(!only_reset.should_retry(&Err::<u16, _>("bad request")));
        let on_503 = |r: &Result<u16, &str>| matches!(r, Ok(503) | Err(_));
        assert!(on_503.should_retry(&ok));
        assert!(!on_503.should_retry(&Ok(200)));
    }
}
