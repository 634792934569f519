//! Hedging: extra attempts while the first is still running; the first
//! acceptable outcome wins and the others are cancelled.
//!
//! ```text
//! t=0     attempt 1 ──────────────────────────────╳ cancelled (loser)
//! t=delay           attempt 2 (hedge) ──────▶ wins
//! ```
//!
//! The rules:
//!
//! 1. **When to hedge.** After a fixed delay ([`HedgeDelay::Fixed`], Polly's
//!    default is 2 s) or after the endpoint's latency percentile
//!    ([`HedgeDelay::Percentile`], tracked in a [`LatencyHistogram`] of the
//!    acceptable outcomes; a fallback delay until it has enough samples).
//!    An attempt that fails with an outcome worth retrying starts the next
//!    hedge at once (as Polly does). At most `max_attempts` in all.
//! 2. **Who wins.** The first outcome the predicate does not want to retry
//!    ([`RetryOn`]); if every attempt ends unacceptable, the last outcome is
//!    returned.
//! 3. **Losers are cancelled, not abandoned.** Every attempt runs in its own
//!    child scope ([`Env::scoped`]). When one wins, the others' scopes are
//!    cancelled and the losers are polled until they finish, for at most
//!    the loser grace (10 ms by default), so each sees the cancellation at
//!    the await point it is parked on (on weft: its sleep returns
//!    `Err(Cancelled)`, its read is cancelled in the kernel and returns the
//!    cancellation, the tasks it spawned are cancelled through the tree) and
//!    returns; whatever is left then is dropped. Either way every loser's
//!    destructors have run when the call returns.
//! 4. **Budget and deadline.** A hedge withdraws from the endpoint's
//!    [`RetryBudget`] (hedges are retries started
//!    early) and starts only if the caller has at least the expected attempt
//!    time left. The caller's cancellation ends the hedge delay at once and
//!    cancels every attempt.
//!
//! Attempts are polled inside the caller's task, not spawned: no `'static`
//! or `Send` bound on the operation, and no allocation until a hedge
//! actually starts (each extra attempt is boxed).

mod histogram;

use std::{
    fmt,
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::Poll,
    time::Duration,
};

pub use self::histogram::LatencyHistogram;
use crate::{
    env::{Env, ScopeHandle},
    retry::{Attempt, OnErrors, RetryBudget, RetryConfigError, RetryError, RetryOn, Stop},
};

/// When the next hedge starts.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// After this long (0: all attempts at once).
    Fixed(Duration),
    /// After the endpoint's `percentile` latency, once it has `min_samples`
    /// samples; `otherwise` until then.
    Percentile {
        /// In `(0, 100)`, e.g. 95.0.
        percentile: f64,
        /// Samples needed before the percentile is trusted.
        min_samples: u64,
        /// The delay until then.
        otherwise: Duration,
    },
}

/// What a [`Hedge`] does, made by [`HedgeConfig::builder`].
#[derive(Debug, Clone)]
pub struct HedgeConfig {
    max_attempts: u32,
    delay: HedgeDelay,
    budget: Option<Arc<RetryBudget>>,
    expected_attempt: Option<Duration>,
    half_life: u64,
    loser_grace: Duration,
}

/// Builds a [`HedgeConfig`].
#[derive(Debug, Clone)]
pub struct HedgeConfigBuilder {
    config: HedgeConfig,
}

impl HedgeConfig {
    /// Polly's defaults: 2 attempts (one hedge), after 2 s.
    pub fn builder() -> HedgeConfigBuilder {
        HedgeConfigBuilder {
            config: HedgeConfig {
                max_attempts: 2,
                delay: HedgeDelay::Fixed(Duration::from_secs(2)),
                budget: None,
                expected_attempt: None,
                half_life: 1000,
                loser_grace: Duration::from_millis(10),
            },
        }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay rule.
    pub fn delay(&self) -> HedgeDelay {
        self.delay
    }
}

impl HedgeConfigBuilder {
    /// Attempts in all, the first included (1..=8; 1 turns hedging off).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// When the next hedge starts.
    pub fn delay(mut self, delay: HedgeDelay) -> Self {
        self.config.delay = delay;
        self
    }

    /// The endpoint's retry budget: each hedge withdraws from it.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// No hedge starts with less than this left before the deadline.
    pub fn expected_attempt(mut self, time: Duration) -> Self {
        self.config.expected_attempt = Some(time);
        self
    }

    /// The latency histogram halves its samples every `samples` samples.
    pub fn histogram_half_life(mut self, samples: u64) -> Self {
        self.config.half_life = samples;
        self
    }

    /// How long the winner waits for the cancelled losers to finish (10 ms
    /// by default) before dropping them. A loser parked at a weft await
    /// point finishes as soon as it is polled again; one cancelled in the
    /// middle of a kernel read finishes when the kernel confirms the cancel
    /// (microseconds). Zero drops them at once (their io is still
    /// cancelled, by the drop).
    pub fn loser_grace(mut self, grace: Duration) -> Self {
        self.config.loser_grace = grace;
        self
    }

    /// The config, or what is wrong with it.
    pub fn build(self) -> Result<HedgeConfig, RetryConfigError> {
        let n = self.config.max_attempts;
        if !(1..=8).contains(&n) {
            return Err(RetryConfigError::HedgeAttempts(n));
        }
        if let HedgeDelay::Percentile { percentile, .. } = self.config.delay {
            if !(percentile > 0.0 && percentile < 100.0) {
                return Err(RetryConfigError::Percentile(percentile));
            }
        }
        Ok(self.config)
    }
}

/// A snapshot of a hedge policy's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HedgeMetrics {
    /// Calls made through the policy.
    pub calls: u64,
    /// Extra attempts started.
    pub hedges: u64,
    /// Calls won by an extra attempt.
    pub hedge_wins: u64,
    /// Losing attempts cancelled.
    pub cancelled: u64,
    /// Hedges the budget refused.
    pub budget_refused: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
    cancelled: AtomicU64,
    budget_refused: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    // Relaxed: statistics, read in snapshots only.
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A hedging policy for one endpoint. See the [module docs](self).
pub struct Hedge<P = OnErrors> {
    config: HedgeConfig,
    predicate: P,
    histogram: LatencyHistogram,
    counters: Counters,
}

/// An extra attempt in flight.
struct Running<S, H> {
    future: Pin<Box<S>>,
    handle: H,
    started: Duration,
}

enum Finish<T, E> {
    Done {
        outcome: Result<T, E>,
        attempts: u32,
        stop: Stop,
    },
    Interrupted(Stop),
}

impl Hedge<OnErrors> {
    /// A policy where any `Ok` wins.
    pub fn new(config: HedgeConfig) -> Hedge<OnErrors> {
        Hedge::with_predicate(config, OnErrors)
    }
}

impl<P> Hedge<P> {
    /// A policy where outcomes `predicate` would not retry win.
    pub fn with_predicate(config: HedgeConfig, predicate: P) -> Hedge<P> {
        Hedge {
            histogram: LatencyHistogram::new(config.half_life),
            config,
            predicate,
            counters: Counters::default(),
        }
    }

    /// The config.
    pub fn config(&self) -> &HedgeConfig {
        &self.config
    }

    /// The latencies of acceptable outcomes.
    pub fn histogram(&self) -> &LatencyHistogram {
        &self.histogram
    }

    /// The delay the next call would hedge after.
    pub fn current_delay(&self) -> Duration {
        match self.config.delay {
            HedgeDelay::Fixed(d) => d,
            HedgeDelay::Percentile {
                percentile,
                min_samples,
                otherwise,
            } => self
                .histogram
                .percentile(percentile, min_samples)
                .unwrap_or(otherwise),
        }
    }

    /// The counters now.
    pub fn metrics(&self) -> HedgeMetrics {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HedgeMetrics {
            calls: r(&c.calls),
            hedges: r(&c.hedges),
            hedge_wins: r(&c.hedge_wins),
            cancelled: r(&c.cancelled),
            budget_refused: r(&c.budget_refused),
        }
    }

    /// Runs `op`, hedging it (see the [module docs](self)). The error is
    /// the last attempt's, with why no further attempt was made.
    pub async fn call<En, F, Fut, T, E>(&self, env: &En, mut op: F) -> Result<T, RetryError<E>>
    where
        En: Env,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: RetryOn<T, E>,
    {
        bump(&self.counters.calls);
        if let Some(budget) = &self.config.budget {
            budget.deposit();
        }
        if let Err(why) = env.check() {
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
                return Err(RetryError::NotStarted(Stop::Deadline { remaining: left }));
            }
        }
        let max = self.config.max_attempts;
        let delay = self.current_delay();
        let (first, first_handle) = env.scoped(op(Attempt::new(1, false)));
        let first_started = env.now();
        let mut first = pin!(Some(first));
        let mut timer = pin!(None::<En::Sleep>);
        if max > 1 {
            timer.set(Some(env.sleep(delay)));
        }
        let mut extras: Vec<Running<En::Scoped<Fut>, En::Handle>> = Vec::new();
        let mut started = 1u32;
        let mut last: Option<Result<T, E>> = None;
        let mut stop = Stop::Exhausted;

        // Set when an attempt has won: the losers are cancelled and drained
        // (polled until they finish, at most `loser_grace`), then dropped.
        let mut won: Option<(Result<T, E>, u32)> = None;

        let finish = poll_fn(|cx| loop {
            if let Some((_, attempts)) = &won {
                let attempts = *attempts;
                if let Some(loser) = first.as_mut().as_pin_mut() {
                    if loser.poll(cx).is_ready() {
                        first.set(None);
                    }
                }
                extras.retain_mut(|loser| loser.future.as_mut().poll(cx).is_pending());
                let drained = first.is_none() && extras.is_empty();
                if !drained {
                    if timer.is_none() {
                        timer.set(Some(env.sleep(self.config.loser_grace)));
                    }
                    let sleep = timer.as_mut().as_pin_mut().expect("armed above");
                    if sleep.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Out of grace (or the caller is gone): drop the rest.
                    first.set(None);
                    extras.clear();
                }
                let (outcome, _) = won.take().expect("checked above");
                return Poll::Ready(Finish::Done {
                    outcome,
                    attempts,
                    stop: Stop::NotRetryable,
                });
            }
            let mut fire = false;
            if let Some(future) = first.as_mut().as_pin_mut() {
                if let Poll::Ready(outcome) = future.poll(cx) {
                    first.set(None);
                    if self.accept(&outcome, env.now().saturating_sub(first_started)) {
                        won = Some((outcome, started));
                        self.cancel_losers(None, &extras);
                        timer.set(None);
                        continue;
                    }
                    last = Some(outcome);
                    fire = true;
                }
            }
            let mut i = 0;
            while i < extras.len() {
                let Poll::Ready(outcome) = extras[i].future.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                let done = extras.swap_remove(i);
                if self.accept(&outcome, env.now().saturating_sub(done.started)) {
                    bump(&self.counters.hedge_wins);
                    won = Some((outcome, started));
                    let first_handle = first.is_some().then_some(&first_handle);
                    self.cancel_losers(first_handle, &extras);
                    timer.set(None);
                    break;
                }
                last = Some(outcome);
                fire = true;
            }
            if won.is_some() {
                continue;
            }
            // A failure already starts the next hedge (and re-arms the
            // timer): the timer is polled only when nothing else fires.
            if let Some(sleep) = timer.as_mut().as_pin_mut().filter(|_| !fire) {
                match sleep.poll(cx) {
                    Poll::Ready(Ok(())) => {
                        timer.set(None);
                        fire = true;
                    }
                    Poll::Ready(Err(why)) => {
                        // The caller is gone: its cancellation has reached
                        // every attempt's scope already; let each see it
                        // once, then drop them.
                        timer.set(None);
                        if let Some(loser) = first.as_mut().as_pin_mut() {
                            let _ = loser.poll(cx);
                            first.set(None);
                        }
                        for mut loser in extras.drain(..) {
                            let _ = loser.future.as_mut().poll(cx);
                        }
                        return Poll::Ready(Finish::Interrupted(Stop::Interrupted(why)));
                    }
                    Poll::Pending => {}
                }
            }
            if fire && started < max {
                match self.may_hedge(env) {
                    Ok(()) => {
                        started += 1;
                        bump(&self.counters.hedges);
                        let (future, handle) = env.scoped(op(Attempt::new(started, true)));
                        extras.push(Running {
                            future: Box::pin(future),
                            handle,
                            started: env.now(),
                        });
                        if started < max {
                            timer.set(Some(env.sleep(delay)));
                        }
                        continue; // poll the new attempt
                    }
                    Err(why) => {
                        stop = why;
                        timer.set(None);
                    }
                }
            } else if fire {
                stop = Stop::Exhausted;
            }
            if first.is_none() && extras.is_empty() {
                if let Err(why) = env.check() {
                    stop = Stop::Interrupted(why);
                }
                let outcome = last.take().expect("an attempt finished");
                return Poll::Ready(Finish::Done {
                    outcome,
                    attempts: started,
                    stop,
                });
            }
            return Poll::Pending;
        })
        .await;
        match finish {
            Finish::Done {
                outcome,
                attempts,
                stop,
            } => outcome.map_err(|error| RetryError::Failed {
                error,
                attempts,
                stop,
            }),
            Finish::Interrupted(stop) => match last {
                Some(Err(error)) => Err(RetryError::Failed {
                    error,
                    attempts: started,
                    stop,
                }),
                _ => Err(RetryError::NotStarted(stop)),
            },
        }
    }

    /// True if `outcome` wins; records its latency if so.
    fn accept<T, E>(&self, outcome: &Result<T, E>, latency: Duration) -> bool
    where
        P: RetryOn<T, E>,
    {
        if self.predicate.should_retry(outcome) {
            return false;
        }
        self.histogram.record(latency);
        true
    }

    /// Cancels the scopes of the attempts still running (the first, if
    /// given, and the extras).
    fn cancel_losers<S, H: ScopeHandle>(&self, first: Option<&H>, extras: &[Running<S, H>]) {
        for handle in first.into_iter().chain(extras.iter().map(|r| &r.handle)) {
            handle.cancel();
            bump(&self.counters.cancelled);
        }
    }

    /// Whether another hedge may start now.
    fn may_hedge<En: Env>(&self, env: &En) -> Result<(), Stop> {
        env.check().map_err(Stop::Interrupted)?;
        if let Some(left) = env.remaining() {
            let expected = self.config.expected_attempt.unwrap_or_default();
            if left.is_zero() || expected > left {
                return Err(Stop::Deadline { remaining: left });
            }
        }
        if let Some(budget) = &self.config.budget {
            if !budget.try_withdraw() {
                bump(&self.counters.budget_refused);
                return Err(Stop::Budget);
            }
        }
        Ok(())
    }
}

impl<P> fmt::Debug for Hedge<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("config", &self.config)
            .field("delay", &self.current_delay())
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
