//! Retry: backoff with jitter, a retry budget, predicates over errors and
//! values, and no attempt that cannot finish before the deadline.
//!
//! ```text
//! call ─ deposit in the budget ─ attempt 1 ─┬─ acceptable outcome ─────────────▶ return it
//!                                           └─ worth retrying (predicate)
//!                                                ├─ caller cancelled/past deadline ─▶ stop (Interrupted)
//!                                                ├─ attempts used up ───────────────▶ stop (Exhausted)
//!                                                ├─ delay + expected attempt > left ─▶ stop (Deadline)
//!                                                ├─ budget refuses ─────────────────▶ stop (Budget)
//!                                                └─ sleep(delay) ─┬─ woke too late ─▶ stop (Deadline/Interrupted)
//!                                                                 └─ attempt 2 ─ …
//! ```
//!
//! The rules, in the order they are checked after a failed attempt:
//!
//! 1. **The caller comes first.** If the caller was cancelled or its
//!    deadline passed ([`Env::check`]), the failure is the caller's, not the
//!    downstream's: no retry, and the outcome is reported as
//!    [`Stop::Interrupted`].
//! 2. **Attempts.** At most `max_attempts` in all (the first included).
//! 3. **Deadline.** The next attempt starts only if the backoff delay plus
//!    the expected attempt time fit in what is left of the caller's deadline
//!    ([`Env::remaining`]; on weft, the task's). Without an expected attempt
//!    time only the delay must fit. The first attempt is refused the same
//!    way ([`RetryError::NotStarted`]) when the deadline leaves less than the
//!    expected attempt time. The rule is checked again when the backoff
//!    sleep ends: a sleep that ended on time leaves exactly what the rule
//!    counted on, but a task woken late (a busy worker, a loaded machine)
//!    may find the deadline passed or too close, and then stops instead of
//!    starting an attempt past it.
//! 4. **Budget.** A retry withdraws from the endpoint's [`RetryBudget`]
//!    (every call deposits once); a refused withdrawal stops, so a storm
//!    against a dead service costs at most `1 + ratio` times the load.
//!
//! Each attempt runs in its own child scope ([`Env::attempt`]): on weft,
//! tasks an attempt spawns belong to that attempt (a lazy scope, made only
//! when something inside needs it, so a plain attempt costs nothing). The
//! backoff sleep is the environment's (on weft, `weft::time::sleep`, which
//! the caller's cancellation ends at once).

mod backoff;
mod budget;
mod predicate;

use std::{fmt, future::Future, sync::Arc, time::Duration};

pub use self::{
    backoff::{Backoff, Jitter},
    budget::{BudgetMetrics, RetryBudget, RetryBudgetBuilder},
    predicate::{OnError, OnErrors, RetryOn},
};
use crate::{
    env::{Env, Interrupted},
    rng::Rng,
    striped::StripedCounters,
};

/// A retry policy. Cheap to share by reference; holds its counters.
pub struct Retry<P = OnErrors> {
    config: RetryConfig,
    predicate: P,
    rng: Rng,
    counters: Counters,
}

/// What a [`Retry`] does, made by [`RetryConfig::builder`].
#[derive(Debug, Clone)]
pub struct RetryConfig {
    max_attempts: u32,
    backoff: Backoff,
    expected_attempt: Option<Duration>,
    budget: Option<Arc<RetryBudget>>,
    seed: Option<u64>,
}

/// Builds a [`RetryConfig`].
#[derive(Debug, Clone)]
pub struct RetryConfigBuilder {
    config: RetryConfig,
}

/// Why a retry setting was refused.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// `max_attempts` must be at least 1 (the first attempt).
    NoAttempts,
    /// A backoff's base is above its cap.
    BackoffBaseAboveCap {
        /// The base.
        base: Duration,
        /// The cap.
        cap: Duration,
    },
    /// A backoff's multiplier must be finite and at least 1.
    BackoffMultiplier(f64),
    /// A budget's ratio must be in `[0, 10]`.
    BudgetRatio(f64),
    /// A budget needs 1 to 1024 buckets.
    BudgetBuckets(u32),
    /// A budget's buckets must be at least 1 ms long.
    BudgetWindow(Duration),
    /// A hedge needs at most this many attempts in flight (1..=8).
    HedgeAttempts(u32),
    /// A percentile must be in `(0, 100)`.
    Percentile(f64),
}

impl fmt::Display for RetryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryConfigError::NoAttempts => f.write_str("max_attempts must be at least 1"),
            RetryConfigError::BackoffBaseAboveCap { base, cap } => {
                write!(f, "backoff base {base:?} is above its cap {cap:?}")
            }
            RetryConfigError::BackoffMultiplier(m) => {
                write!(f, "backoff multiplier {m} must be finite and at least 1")
            }
            RetryConfigError::BudgetRatio(r) => {
                write!(
                    f,
                    "budget ratio {r} must be in [0, 10] (0.1 = 10 % of calls)"
                )
            }
            RetryConfigError::BudgetBuckets(n) => {
                write!(f, "a budget needs 1 to 1024 buckets, not {n}")
            }
            RetryConfigError::BudgetWindow(w) => {
                write!(f, "budget window {w:?} gives buckets shorter than 1 ms")
            }
            RetryConfigError::HedgeAttempts(n) => {
                write!(f, "a hedge allows 1 to 8 attempts in flight, not {n}")
            }
            RetryConfigError::Percentile(p) => write!(f, "percentile {p} must be in (0, 100)"),
        }
    }
}

impl std::error::Error for RetryConfigError {}

impl RetryConfig {
    /// 3 attempts, [`Backoff::default`], no budget, no expected attempt time.
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder {
            config: RetryConfig {
                max_attempts: 3,
                backoff: Backoff::default(),
                expected_attempt: None,
                budget: None,
                seed: None,
            },
        }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The budget, if any.
    pub fn budget(&self) -> Option<&Arc<RetryBudget>> {
        self.budget.as_ref()
    }
}

impl RetryConfigBuilder {
    /// Attempts in all, the first included (≥ 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// The delay before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// How long an attempt is expected to take (say the endpoint's p99): no
    /// attempt starts with less than this left before the deadline.
    pub fn expected_attempt(mut self, time: Duration) -> Self {
        self.config.expected_attempt = Some(time);
        self
    }

    /// The endpoint's budget, shared with its other retrying and hedging
    /// policies.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// Seeds the jitter, for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// The config, or what is wrong with it.
    pub fn build(self) -> Result<RetryConfig, RetryConfigError> {
        if self.config.max_attempts == 0 {
            return Err(RetryConfigError::NoAttempts);
        }
        self.config.backoff.validate()?;
        Ok(self.config)
    }
}

/// Which attempt this is, given to the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// True for an extra attempt started by a hedge.
    pub hedge: bool,
}

impl Attempt {
    pub(crate) fn new(number: u32, hedge: bool) -> Attempt {
        Attempt { number, hedge }
    }
}

/// Why a retry policy stopped retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stop {
    /// The predicate judged the outcome not worth another attempt.
    NotRetryable,
    /// `max_attempts` were made.
    Exhausted,
    /// The next attempt could not finish before the caller's deadline.
    Deadline {
        /// What was left of the deadline.
        remaining: Duration,
    },
    /// The endpoint's retry budget refused.
    Budget,
    /// The caller was cancelled or ran out of time (its failure, not the
    /// downstream's).
    Interrupted(Interrupted),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::NotRetryable => f.write_str("not retryable"),
            Stop::Exhausted => f.write_str("attempts exhausted"),
            Stop::Deadline { remaining } => {
                write!(
                    f,
                    "no attempt fits in the {remaining:?} left before the deadline"
                )
            }
            Stop::Budget => f.write_str("retry budget exhausted"),
            Stop::Interrupted(i) => write!(f, "interrupted: {i}"),
        }
    }
}

/// The error of [`Retry::call`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryError<E> {
    /// The last attempt failed with `error`, and `stop` says why there was
    /// no other.
    Failed {
        /// The last attempt's error.
        error: E,
        /// Attempts made.
        attempts: u32,
        /// Why the policy stopped.
        stop: Stop,
    },
    /// No attempt was started (`Stop::Deadline` or `Stop::Interrupted`).
    NotStarted(Stop),
}

impl<E> RetryError<E> {
    /// Why the policy stopped.
    pub fn stop(&self) -> Stop {
        match self {
            RetryError::Failed { stop, .. } | RetryError::NotStarted(stop) => *stop,
        }
    }

    /// The last attempt's error, if one was made.
    pub fn into_error(self) -> Option<E> {
        match self {
            RetryError::Failed { error, .. } => Some(error),
            RetryError::NotStarted(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryError::Failed {
                error,
                attempts,
                stop,
            } => write!(f, "{error} (after {attempts} attempts; {stop})"),
            RetryError::NotStarted(stop) => write!(f, "no attempt made: {stop}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RetryError::Failed { error, .. } => Some(error),
            RetryError::NotStarted(_) => None,
        }
    }
}

/// A snapshot of a retry policy's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RetryMetrics {
    /// Calls made through the policy.
    pub calls: u64,
    /// Attempts started (first attempts included).
    pub attempts: u64,
    /// Retries started.
    pub retries: u64,
    /// Calls that succeeded after at least one retry.
    pub recovered: u64,
    /// Calls stopped by the budget.
    pub budget_stops: u64,
    /// Calls stopped because no attempt fitted before the deadline.
    pub deadline_stops: u64,
    /// Calls stopped by the caller's cancellation or deadline.
    pub interrupted: u64,
    /// Calls that failed with every attempt used.
    pub exhausted: u64,
}

/// The counters, striped by owning thread (`crate::striped`: a plain load
/// and store per call, no locked instruction). Attempts are `calls +
/// retries` (minus calls never started), so they are not counted
/// separately.
type Counters = StripedCounters<8>;
const CALLS: usize = 0;
const NOT_STARTED: usize = 1;
const RETRIES: usize = 2;
const RECOVERED: usize = 3;
const BUDGET_STOPS: usize = 4;
const DEADLINE_STOPS: usize = 5;
const INTERRUPTED: usize = 6;
const EXHAUSTED: usize = 7;

impl Retry<OnErrors> {
    /// A policy retrying every `Err`.
    pub fn new(config: RetryConfig) -> Retry<OnErrors> {
        Retry::with_predicate(config, OnErrors)
    }
}

impl<P> Retry<P> {
    /// A policy retrying the outcomes `predicate` picks.
    pub fn with_predicate(config: RetryConfig, predicate: P) -> Retry<P> {
        Retry {
            rng: Rng::new(config.seed),
            config,
            predicate,
            counters: Counters::new(),
        }
    }

    /// The config.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// The predicate.
    pub fn predicate(&self) -> &P {
        &self.predicate
    }

    /// The counters now.
    pub fn metrics(&self) -> RetryMetrics {
        let c = &self.counters;
        // `not_started` before `calls`: a call is counted before it can be
        // counted as not started, so a snapshot taken while calls run never
        // has more calls not started than calls.
        let not_started = c.get(NOT_STARTED);
        let calls = c.get(CALLS);
        RetryMetrics {
            calls,
            attempts: calls - not_started.min(calls) + c.get(RETRIES),
            retries: c.get(RETRIES),
            recovered: c.get(RECOVERED),
            budget_stops: c.get(BUDGET_STOPS),
            deadline_stops: c.get(DEADLINE_STOPS),
            interrupted: c.get(INTERRUPTED),
            exhausted: c.get(EXHAUSTED),
        }
    }

    /// Runs `op` until an outcome is not worth retrying or a rule stops it
    /// (see the [module docs](self)). An `Ok` the predicate would retry is
    /// returned as is when the policy stops.
    pub async fn call<En, F, Fut, T, E>(&self, env: &En, mut op: F) -> Result<T, RetryError<E>>
    where
        En: Env,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: RetryOn<T, E>,
    {
        self.counters.bump(CALLS);
        if let Some(budget) = &self.config.budget {
            budget.deposit();
        }
        if let Err(why) = env.check() {
            self.counters.bump(INTERRUPTED);
            self.counters.bump(NOT_STARTED);
            return Err(RetryError::NotStarted(Stop::Interrupted(why)));
        }
        // The deadline is read only when there is an expected attempt time
        // to compare it with (a clock read on weft).
        if let Some((left, expected)) = self
            .config
            .expected_attempt
            .and_then(|expected| Some((env.remaining()?, expected)))
        {
            if left < expected {
                self.counters.bump(DEADLINE_STOPS);
                self.counters.bump(NOT_STARTED);
                return Err(RetryError::NotStarted(Stop::Deadline { remaining: left }));
            }
        }
        let mut attempt = 1;
        let mut previous = self.config.backoff.base;
        loop {
            let outcome = env.attempt(op(Attempt::new(attempt, false))).await;
            if !self.predicate.should_retry(&outcome) {
                if attempt > 1 && outcome.is_ok() {
                    self.counters.bump(RECOVERED);
                }
                return outcome.map_err(|error| RetryError::Failed {
                    error,
                    attempts: attempt,
                    stop: Stop::NotRetryable,
                });
            }
            let delay = self
                .config
                .backoff
                .delay(attempt - 1, previous, self.rng.next_f64());
            let stop = match self.next(env, attempt, delay) {
                Ok(()) => match env.sleep(delay).await {
                    Ok(()) => self.after_backoff(env),
                    Err(why) => {
                        self.counters.bump(INTERRUPTED);
                        Some(Stop::Interrupted(why))
                    }
                },
                Err(stop) => Some(stop),
            };
            if let Some(stop) = stop {
                return outcome.map_err(|error| RetryError::Failed {
                    error,
                    attempts: attempt,
                    stop,
                });
            }
            previous = delay;
            attempt += 1;
            self.counters.bump(RETRIES);
        }
    }

    /// Rules 1 and 3 again once the backoff sleep ended: `None` if the
    /// next attempt may start now. A sleep that ended on time leaves what
    /// `next` counted on; one woken late may leave the deadline passed (the
    /// soak saw retries start 0.6 ms past it on a loaded machine) or too
    /// close for the expected attempt time.
    fn after_backoff<En: Env>(&self, env: &En) -> Option<Stop> {
        if let Err(why) = env.check() {
            self.counters.bump(INTERRUPTED);
            return Some(Stop::Interrupted(why));
        }
        let left = env.remaining()?;
        if left.is_zero() || left < self.config.expected_attempt.unwrap_or_default() {
            self.counters.bump(DEADLINE_STOPS);
            return Some(Stop::Deadline { remaining: left });
        }
        None
    }

    /// Whether retry `attempt + 1` may start after `delay` (rules 1–4).
    fn next<En: Env>(&self, env: &En, attempt: u32, delay: Duration) -> Result<(), Stop> {
        if let Err(why) = env.check() {
            self.counters.bump(INTERRUPTED);
            return Err(Stop::Interrupted(why));
        }
        if attempt >= self.config.max_attempts {
            self.counters.bump(EXHAUSTED);
            return Err(Stop::Exhausted);
        }
        if let Some(left) = env.remaining() {
            let needed = delay.saturating_add(self.config.expected_attempt.unwrap_or_default());
            // An attempt that fits exactly may start; one that would start
            // at the deadline may not.
            if needed > left || delay >= left {
                self.counters.bump(DEADLINE_STOPS);
                return Err(Stop::Deadline { remaining: left });
            }
        }
        if let Some(budget) = &self.config.budget {
            if !budget.try_withdraw() {
                self.counters.bump(BUDGET_STOPS);
                return Err(Stop::Budget);
            }
        }
        Ok(())
    }
}

impl<P> fmt::Debug for Retry<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("config", &self.config)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
