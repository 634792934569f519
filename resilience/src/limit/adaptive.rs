//! Adaptive concurrency: a concurrency limit that moves with measured
//! latency (Netflix concurrency-limits' AIMD, Vegas and Gradient2), shedding
//! at once every call over the current limit.
//!
//! # Protocol
//!
//! * **Admission** reads the current `limit` and CAS-increments `in_flight`
//!   only while it is below: one load and one CAS, no lock. A call over the
//!   limit is refused at once ([`AdaptiveError::OverLimit`], carrying the
//!   limit) — load shedding, no queue.
//! * **Settlement** decrements `in_flight` (an [`AdaptivePermit`] does it
//!   exactly once: on a verdict or when dropped) and, for a sample, feeds
//!   `(rtt, in_flight at admission, dropped)` to the [`Algorithm`], which
//!   returns the new limit; that is stored in `limit` for the next
//!   admissions.
//! * The algorithm's state (averages, floating-point limit) sits behind a
//!   lock that settlement only **tries** (`sync::TryLock`: a flag, never
//!   waited for, released by a plain store): a sample that finds another
//!   being applied is skipped. Under load samples are plentiful and the
//!   algorithms are statistical, so a skipped sample loses nothing, and no
//!   settling caller ever blocks. `in_flight` and `limit` are the lock-free
//!   part (loom model `loom-tests/tests/limit_adaptive.rs`): `in_flight`
//!   never exceeds the limit read by the admitting caller, and every
//!   admission is matched by exactly one decrement.
//! * A call ended by the caller's cancellation is no sample; one cut by the
//!   caller's deadline is a sample of its elapsed time (a slow call: its
//!   true latency was at least that) but not a drop (see [`crate::caller`]).
//!
//! Lowering the limit never revokes permits: calls in flight above a new,
//! lower limit finish, and admission resumes once `in_flight` falls below.

use std::{fmt, sync::Arc, time::Duration};

use super::{emit, CachePadded, ConfigError, EventKind, Listener, Listeners, Refusal};
use crate::{
    caller::{caller_end, check_scope, CallerEnd},
    clock::{Clock, ClockSource, SharedNow},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
        TryLock,
    },
};

/// The largest limit an adaptive limiter may reach.
pub const MAX_LIMIT: u32 = 1 << 20;

/// A limit algorithm: turns latency samples into a concurrency limit.
pub trait Algorithm: Send + fmt::Debug {
    /// The limit to start from.
    fn initial_limit(&self) -> u32;
    /// Checks the parameters (called by [`AdaptiveBuilder::build`]).
    fn validate(&self) -> Result<(), ConfigError>;
    /// One sample: a call that took `rtt`, admitted with `in_flight` calls
    /// running (itself included), `dropped` if it failed from overload.
    /// Returns the new limit.
    fn on_sample(&mut self, rtt: Duration, in_flight: u32, dropped: bool) -> u32;
}

fn check_limits(min: u32, initial: u32, max: u32) -> Result<(), ConfigError> {
    if max > MAX_LIMIT {
        return Err(ConfigError::LimitTooLarge {
            value: u64::from(max),
            max: u64::from(MAX_LIMIT),
        });
    }
    if min == 0 || min > initial || initial > max {
        return Err(ConfigError::LimitsOutOfOrder { min, initial, max });
    }
    Ok(())
}

fn check_factor(which: &'static str, value: f64, ok: bool) -> Result<(), ConfigError> {
    if value.is_finite() && ok {
        Ok(())
    } else {
        Err(ConfigError::FactorOutOfRange { which, value })
    }
}

/// Additive increase, multiplicative decrease (Netflix `AIMDLimit`): +1 when
/// the limit is in use (in flight ≥ half of it) and the call was quick;
/// × `backoff_ratio` on a drop or a call slower than `timeout`.
#[derive(Debug, Clone)]
pub struct Aimd {
    /// Starting limit (20).
    initial: u32,
    /// Floor (20).
    min: u32,
    /// Ceiling (200).
    max: u32,
    /// Multiplier on a decrease, in [0.5, 1) (0.9).
    backoff_ratio: f64,
    /// A call slower than this counts as a drop (5 s).
    timeout: Duration,
    /// The limit as a real number; `None` until the first sample (then it
    /// starts from `initial`).
    limit: Option<f64>,
}

impl Default for Aimd {
    fn default() -> Aimd {
        Aimd {
            initial: 20,
            min: 20,
            max: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
            limit: None,
        }
    }
}

impl Aimd {
    /// Floor, starting limit and ceiling.
    pub fn limits(mut self, min: u32, initial: u32, max: u32) -> Self {
        self.min = min;
        self.initial = initial;
        self.max = max;
        self
    }
    /// Multiplier on a decrease, in [0.5, 1).
    pub fn backoff_ratio(mut self, backoff_ratio: f64) -> Self {
        self.backoff_ratio = backoff_ratio;
        self
    }
    /// A call slower than this counts as a drop.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Algorithm for Aimd {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_factor(
            "AIMD backoff ratio",
            self.backoff_ratio,
            (0.5..1.0).contains(&self.backoff_ratio),
        )?;
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroMaxWait);
        }
        Ok(())
    }

    fn on_sample(&mut self, rtt: Duration, in_flight: u32, dropped: bool) -> u32 {
        let mut limit = self.limit.unwrap_or(f64::from(self.initial));
        if dropped || rtt > self.timeout {
            limit *= self.backoff_ratio;
        } else if f64::from(in_flight) * 2.0 >= limit {
            limit += 1.0;
        }
        let limit = limit.clamp(f64::from(self.min), f64::from(self.max));
        self.limit = Some(limit);
        limit as u32
    }
}

/// TCP Vegas (Netflix `VegasLimit`): estimates the queue as `limit × (1 −
/// rtt_noload / rtt)` and grows the limit while the queue is short
/// (`≤ threshold`: + beta; `< alpha`: + log10), shrinks it when long
/// (`> beta`: − log10), with alpha = 3·log10(limit), beta = 6·log10(limit),
/// threshold = log10(limit). `rtt_noload` is the smallest rtt seen, re-probed
/// every `probe_multiplier × limit` samples.
#[derive(Debug, Clone)]
pub struct Vegas {
    /// Starting limit (20).
    initial: u32,
    /// Ceiling (1000).
    max: u32,
    /// Weight of a new estimate, in (0, 1] (1.0).
    smoothing: f64,
    /// Re-probe the no-load rtt every this many × limit samples (30).
    probe_multiplier: u32,
    limit: f64,
    rtt_noload: Option<Duration>,
    samples: u64,
}

impl Default for Vegas {
    fn default() -> Vegas {
        Vegas {
            initial: 20,
            max: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
            limit: 20.0,
            rtt_noload: None,
            samples: 0,
        }
    }
}

impl Vegas {
    /// Starting limit and ceiling.
    pub fn limits(mut self, initial: u32, max: u32) -> Self {
        self.initial = initial;
        self.max = max;
        self
    }
    /// Weight of a new estimate, in (0, 1].
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }
    /// Re-probe the no-load rtt every this many × limit samples.
    pub fn probe_multiplier(mut self, probe_multiplier: u32) -> Self {
        self.probe_multiplier = probe_multiplier;
        self
    }
}

impl Algorithm for Vegas {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_limits(1, self.initial, self.max)?;
        check_factor(
            "Vegas smoothing",
            self.smoothing,
            self.smoothing > 0.0 && self.smoothing <= 1.0,
        )?;
        if self.probe_multiplier == 0 {
            return Err(ConfigError::FactorOutOfRange {
                which: "Vegas probe multiplier",
                value: 0.0,
            });
        }
        Ok(())
    }

    fn on_sample(&mut self, rtt: Duration, in_flight: u32, dropped: bool) -> u32 {
        if self.samples == 0 {
            self.limit = f64::from(self.initial);
        }
        self.samples += 1;
        let probe_every = (f64::from(self.probe_multiplier) * self.limit) as u64;
        if self.samples % probe_every.max(1) == 0 {
            // Forget the no-load rtt: the service may have got slower for
            // good (Netflix's probe).
            self.rtt_noload = Some(rtt);
            return self.limit as u32;
        }
        let noload = match self.rtt_noload {
            Some(noload) if rtt >= noload && !noload.is_zero() => noload,
            _ => {
                self.rtt_noload = Some(rtt);
                return self.limit as u32;
            }
        };
        let limit = self.limit;
        let log = limit.max(1.0).log10();
        let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
        let queue = (limit * (1.0 - noload.as_secs_f64() / rtt.as_secs_f64())).ceil();
        let target = if dropped {
            limit - log
        } else if f64::from(in_flight) * 2.0 < limit {
            return limit as u32; // application-limited: no evidence
        } else if queue <= threshold {
            limit + beta
        } else if queue < alpha {
            limit + log
        } else if queue > beta {
            limit - log
        } else {
            return limit as u32;
        };
        let target = target.clamp(1.0, f64::from(self.max));
        self.limit = (1.0 - self.smoothing) * limit + self.smoothing * target;
        self.limit as u32
    }
}

/// Gradient2 (Netflix `Gradient2Limit`): compares a short-term rtt (the
/// sample) with a long-term exponential average; `gradient =
/// clamp(tolerance × long / short, 0.5, 1)`, `new = limit × gradient +
/// queue_size`, smoothed by `smoothing`. The long average is pulled down
/// when it exceeds twice the short one (recovery after a spike), and the
/// limit does not grow while under half of it is in use.
#[derive(Debug, Clone)]
pub struct Gradient2 {
    /// Starting limit (20).
    initial: u32,
    /// Floor (20).
    min: u32,
    /// Ceiling (200).
    max: u32,
    /// Weight of a new estimate, in (0, 1] (0.2).
    smoothing: f64,
    /// How much slower than the long average a sample may be before the
    /// limit shrinks, ≥ 1 (1.5).
    rtt_tolerance: f64,
    /// Samples the long average spans (600).
    long_window: u32,
    /// Headroom added to the limit (4).
    queue_size: u32,
    limit: f64,
    long_rtt: f64,
    samples: u64,
}

impl Default for Gradient2 {
    fn default() -> Gradient2 {
        Gradient2 {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            rtt_tolerance: 1.5,
            long_window: 600,
            queue_size: 4,
            limit: 20.0,
            long_rtt: 0.0,
            samples: 0,
        }
    }
}

impl Gradient2 {
    /// Floor, starting limit and ceiling.
    pub fn limits(mut self, min: u32, initial: u32, max: u32) -> Self {
        self.min = min;
        self.initial = initial;
        self.max = max;
        self
    }
    /// Weight of a new estimate, in (0, 1].
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }
    /// How much slower than the long average a sample may be, ≥ 1.
    pub fn rtt_tolerance(mut self, rtt_tolerance: f64) -> Self {
        self.rtt_tolerance = rtt_tolerance;
        self
    }
    /// Samples the long average spans.
    pub fn long_window(mut self, long_window: u32) -> Self {
        self.long_window = long_window;
        self
    }
    /// Headroom added to the limit.
    pub fn queue_size(mut self, queue_size: u32) -> Self {
        self.queue_size = queue_size;
        self
    }
}

impl Algorithm for Gradient2 {
    fn initial_limit(&self) -> u32 {
        self.initial
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_limits(self.min, self.initial, self.max)?;
        check_factor(
            "Gradient2 smoothing",
            self.smoothing,
            self.smoothing > 0.0 && self.smoothing <= 1.0,
        )?;
        check_factor(
            "Gradient2 rtt tolerance",
            self.rtt_tolerance,
            self.rtt_tolerance >= 1.0,
        )?;
        if self.long_window == 0 {
            return Err(ConfigError::FactorOutOfRange {
                which: "Gradient2 long window",
                value: 0.0,
            });
        }
        Ok(())
    }

    fn on_sample(&mut self, rtt: Duration, in_flight: u32, _dropped: bool) -> u32 {
        if self.samples == 0 {
            self.limit = f64::from(self.initial);
        }
        self.samples += 1;
        let short = rtt.as_secs_f64().max(1e-9);
        // Netflix's ExpAvgMeasurement: a plain mean over the first 10
        // samples (warm-up), then an exponential average over the window.
        let warm_up = 10;
        if self.samples <= warm_up {
            self.long_rtt += (short - self.long_rtt) / self.samples as f64;
        } else {
            let factor = 2.0 / (f64::from(self.long_window) + 1.0);
            self.long_rtt = self.long_rtt * (1.0 - factor) + short * factor;
        }
        if self.long_rtt / short > 2.0 {
            self.long_rtt *= 0.95;
        }
        if f64::from(in_flight) < self.limit / 2.0 {
            return self.limit as u32; // application-limited
        }
        let gradient = (self.rtt_tolerance * self.long_rtt / short).clamp(0.5, 1.0);
        let target = self.limit * gradient + f64::from(self.queue_size);
        let next = self.limit * (1.0 - self.smoothing) + target * self.smoothing;
        self.limit = next.clamp(f64::from(self.min), f64::from(self.max));
        self.limit as u32
    }
}

/// Why an adaptive limiter did not admit a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdaptiveError {
    /// The current limit is reached: shed at once.
    OverLimit {
        /// The limit at the time.
        limit: u32,
    },
    /// The caller's scope was cancelled.
    Cancelled(CallerEnd),
}

impl fmt::Display for AdaptiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdaptiveError::OverLimit { limit } => {
                write!(f, "load shed: {limit} calls in flight, the current limit")
            }
            AdaptiveError::Cancelled(end) => write!(f, "caller cancelled ({end:?})"),
        }
    }
}

impl std::error::Error for AdaptiveError {}

/// A concurrency limit driven by latency; see the [module docs](self).
pub struct Adaptive {
    in_flight: CachePadded<AtomicU32>,
    limit: CachePadded<AtomicU32>,
    algorithm: TryLock<Box<dyn Algorithm>>,
    shed: CachePadded<AtomicU64>,
    samples: AtomicU64,
    clock: ClockSource,
    name: Arc<str>,
    listeners: Listeners,
}

impl Adaptive {
    /// A builder with [`Gradient2`]'s defaults.
    pub fn builder() -> AdaptiveBuilder {
        AdaptiveBuilder {
            algorithm: Box::new(Gradient2::default()),
            clock: ClockSource::default(),
            name: Arc::from("adaptive"),
            listeners: Listeners::default(),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    /// Admits a call if fewer than the current limit are in flight, or sheds
    /// it at once.
    #[inline]
    pub fn try_acquire(&self) -> Result<AdaptivePermit<'_>, AdaptiveError> {
        check_scope().map_err(AdaptiveError::Cancelled)?;
        self.try_acquire_in_live_scope(&SharedNow::new())
    }

    /// [`try_acquire`](Self::try_acquire) for a caller that has just
    /// checked its scope (the pipeline, once for all its layers), timed
    /// from the call's shared clock reading.
    #[inline(always)]
    pub(crate) fn try_acquire_in_live_scope(
        &self,
        now: &SharedNow,
    ) -> Result<AdaptivePermit<'_>, AdaptiveError> {
        let limit = self.limit.load(Relaxed);
        let mut in_flight = self.in_flight.load(Relaxed);
        loop {
            if in_flight >= limit {
                return Err(self.shed(limit));
            }
            // Relaxed: the count is the whole protocol; it orders nothing
            // else (the limiter guards no memory).
            match self
                .in_flight
                .compare_exchange_weak(in_flight, in_flight + 1, Relaxed, Relaxed)
            {
                Ok(_) => {
                    return Ok(AdaptivePermit {
                        limiter: self,
                        started: self.clock.nanos_shared(now),
                        in_flight: in_flight + 1,
                        settled: false,
                    })
                }
                Err(actual) => in_flight = actual,
            }
        }
    }

    #[cold]
    fn shed(&self, limit: u32) -> AdaptiveError {
        self.shed.fetch_add(1, Relaxed);
        emit(
            &self.listeners.0,
            &self.name,
            EventKind::Rejected(Refusal::OverLimit),
        );
        AdaptiveError::OverLimit { limit }
    }

    fn settle(&self, permit: &AdaptivePermit<'_>, sample: Option<bool>) {
        self.settle_at(permit, sample, &SharedNow::new());
    }

    #[inline]
    fn settle_at(&self, permit: &AdaptivePermit<'_>, sample: Option<bool>, now: &SharedNow) {
        self.in_flight.fetch_sub(1, Relaxed);
        let Some(dropped) = sample else { return };
        let rtt = Duration::from_nanos(self.clock.nanos_shared(now).saturating_sub(permit.started));
        // A sample being applied elsewhere: skip this one (module docs).
        let Some((before, next)) = self.algorithm.try_with(|algorithm| {
            let next = algorithm.on_sample(rtt, permit.in_flight, dropped);
            // Only the lock's holder writes the limit, so a load and a
            // store (made only when the limit moved) replace a swap: a
            // steady limit, read by every admission, is not written by
            // every sample. The sample count too is written only under the
            // lock: a load and a store, not a locked instruction.
            let before = self.limit.load(Relaxed);
            if before != next {
                self.limit.store(next, Relaxed);
            }
            self.samples
                .store(self.samples.load(Relaxed).wrapping_add(1), Relaxed);
            (before, next)
        }) else {
            return;
        };
        if before != next {
            emit(
                &self.listeners.0,
                &self.name,
                EventKind::LimitChanged {
                    from: before,
                    to: next,
                },
            );
        }
    }

    /// A snapshot.
    pub fn metrics(&self) -> AdaptiveMetrics {
        AdaptiveMetrics {
            limit: self.limit.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            shed: self.shed.load(Relaxed),
            samples: self.samples.load(Relaxed),
        }
    }
}

impl fmt::Debug for Adaptive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adaptive")
            .field("name", &self.name)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

/// A call admitted by an [`Adaptive`] limiter. Report how it went; dropped
/// without a verdict it only frees its slot (no sample).
#[must_use = "a permit reports the call's latency; dropping it records nothing"]
pub struct AdaptivePermit<'a> {
    limiter: &'a Adaptive,
    /// When the call was admitted, in nanoseconds on the limiter's clock.
    started: u64,
    in_flight: u32,
    settled: bool,
}

impl AdaptivePermit<'_> {
    /// The call succeeded: a latency sample.
    pub fn success(mut self) {
        self.settled = true;
        self.limiter.settle(&self, Some(false));
    }

    /// The call failed from overload (a timeout, a 503, a rejection): a
    /// sample that shrinks the limit.
    pub fn dropped(mut self) {
        self.settled = true;
        self.limiter.settle(&self, Some(true));
    }

    /// The outcome says nothing about load: no sample.
    pub fn ignore(mut self) {
        self.settled = true;
        self.limiter.settle(&self, None);
    }

    /// Settles with `sample` (`Some(dropped)`, or `None`: ignored) timed
    /// from the call's shared clock reading (the pipeline).
    #[inline]
    pub(crate) fn settle_at(mut self, sample: Option<bool>, now: &SharedNow) {
        self.settled = true;
        self.limiter.settle_at(&self, sample, now);
    }

    /// `Ok` is a success; an error reporting the caller's cancellation is
    /// ignored, its deadline is a latency sample (not a drop); any other
    /// error is a drop.
    pub fn record<T, E: 'static>(self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.success(),
            Err(error) => match caller_end(error) {
                Some(CallerEnd::Cancelled) => self.ignore(),
                Some(CallerEnd::DeadlineExceeded) => self.success(),
                None => self.dropped(),
            },
        }
    }
}

impl Drop for AdaptivePermit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.limiter.settle(self, None);
        }
    }
}

impl fmt::Debug for AdaptivePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePermit")
            .field("started", &self.started)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

/// A snapshot of an [`Adaptive`] limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveMetrics {
    /// The current limit.
    pub limit: u32,
    /// Calls in flight.
    pub in_flight: u32,
    /// Calls shed since the limiter was built.
    pub shed: u64,
    /// Samples applied to the algorithm.
    pub samples: u64,
}

/// Builds an [`Adaptive`] limiter.
pub struct AdaptiveBuilder {
    algorithm: Box<dyn Algorithm>,
    clock: ClockSource,
    name: Arc<str>,
    listeners: Listeners,
}

impl fmt::Debug for AdaptiveBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveBuilder")
            .field("algorithm", &self.algorithm)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AdaptiveBuilder {
    /// The limit algorithm ([`Aimd`], [`Vegas`], [`Gradient2`] or your own).
    pub fn algorithm(mut self, algorithm: impl Algorithm + 'static) -> Self {
        self.algorithm = Box::new(algorithm);
        self
    }

    /// The clock latency is measured on.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = ClockSource::Custom(clock);
        self
    }

    /// The name events carry.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a listener (sheds, limit changes).
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Validates the algorithm and builds the limiter.
    pub fn build(self) -> Result<Adaptive, ConfigError> {
        self.algorithm.validate()?;
        let initial = self.algorithm.initial_limit();
        Ok(Adaptive {
            in_flight: CachePadded(AtomicU32::new(0)),
            limit: CachePadded(AtomicU32::new(initial)),
            algorithm: TryLock::new(self.algorithm),
            shed: CachePadded(AtomicU64::new(0)),
            samples: AtomicU64::new(0),
            clock: self.clock,
            name: self.name,
            listeners: self.listeners,
        })
    }
}
