//! Configuration: a builder whose `build` validates every value and returns
//! a [`ConfigError`] instead of panicking.

use std::{fmt, sync::Arc, time::Duration};

use super::{
    backoff::Backoff,
    event::Listener,
    state::{MAX_IN_FLIGHT, MAX_SUCCESSES},
};
use crate::clock::{Clock, ClockSource, SystemClock};

/// Largest count-based window: its counters are 16-bit signed fields.
pub const MAX_COUNT_WINDOW: u32 = i16::MAX as u32;
/// Largest number of buckets in a time-based window.
pub const MAX_BUCKETS: u32 = 4096;
/// Shortest bucket of a time-based window.
pub const MIN_BUCKET: Duration = Duration::from_millis(1);

/// What the breaker judges its rates over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls (resilience4j `COUNT_BASED`).
    Count(u32),
    /// The calls of the last `span`, kept in `buckets` buckets of
    /// `span / buckets` each (resilience4j `TIME_BASED` uses 1 s buckets).
    Time {
        /// How far back the window reaches.
        span: Duration,
        /// How many buckets the span is cut into.
        buckets: u32,
    },
}

/// What a call cut by the caller's deadline counts as (see
/// [`crate::caller`] for the rule and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeadlineRule {
    /// A slow call (success, but slow): the default. In half-open it fails
    /// the probe when a slow-call criterion is on and is ignored otherwise.
    #[default]
    Slow,
    /// A failure.
    Failure,
    /// Nothing: like a cancellation.
    Ignore,
}

/// How a half-open breaker judges its probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HalfOpenMode {
    /// Up to `half_open_permits` probes at once; close after
    /// `half_open_successes` successes, reopen at the first failed (or,
    /// with a slow-call criterion, slow) probe. The default.
    #[default]
    Successes,
    /// resilience4j's `permittedNumberOfCallsInHalfOpenState`: admit exactly
    /// `probes` probes (an ignored or dropped one is replaced), then judge
    /// their failure rate and slow-call rate against the closed-state
    /// thresholds: reopen if either is met, close otherwise. At most
    /// [`MAX_HALF_OPEN_PROBES`] probes.
    FailureRate {
        /// How many probes are judged together.
        probes: u32,
    },
}

/// The most probes [`HalfOpenMode::FailureRate`] judges together.
pub const MAX_HALF_OPEN_PROBES: u32 = super::state::MAX_RATE_PROBES;

/// A configuration value that cannot work.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A rate threshold outside `(0, 100]` percent (or NaN).
    RateOutOfRange {
        /// Which threshold.
        which: &'static str,
        /// The value given.
        value: f64,
    },
    /// A count window of zero calls.
    ZeroWindow,
    /// A count window larger than [`MAX_COUNT_WINDOW`].
    WindowTooLarge(u32),
    /// A time window with no buckets.
    ZeroBuckets,
    /// A time window with more than [`MAX_BUCKETS`] buckets.
    TooManyBuckets(u32),
    /// A time window whose buckets would be shorter than [`MIN_BUCKET`].
    BucketTooShort(Duration),
    /// `minimum_calls` of zero: a breaker would judge on no evidence.
    ZeroMinimumCalls,
    /// `half_open_permits` of zero: a half-open breaker could never probe.
    ZeroHalfOpenPermits,
    /// `half_open_permits` above what the state word holds.
    TooManyHalfOpenPermits(u32),
    /// `half_open_successes` of zero: a half-open breaker would close on
    /// no evidence.
    ZeroHalfOpenSuccesses,
    /// `half_open_successes` above what the state word holds.
    TooManyHalfOpenSuccesses(u32),
    /// `consecutive_failures` of zero.
    ZeroConsecutiveFailures,
    /// A zero slow-call duration: every call would be slow.
    ZeroSlowCallDuration,
    /// A zero half-open maximum wait (use `None` to wait forever).
    ZeroHalfOpenMaxWait,
    /// A backoff starting at zero.
    ZeroOpenDuration,
    /// A backoff multiplier below 1 or not finite.
    BadMultiplier(f64),
    /// A backoff cap below its initial delay.
    CapBelowInitial,
    /// A jitter outside `[0, 1]`.
    JitterOutOfRange(f64),
    /// [`HalfOpenMode::FailureRate`] with 0 probes or more than
    /// [`MAX_HALF_OPEN_PROBES`].
    HalfOpenProbesOutOfRange(u32),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::RateOutOfRange { which, value } => {
                write!(f, "{which} threshold {value}% is outside (0, 100]")
            }
            ConfigError::ZeroWindow => f.write_str("a count window needs at least one call"),
            ConfigError::WindowTooLarge(n) => {
                write!(f, "count window {n} exceeds {MAX_COUNT_WINDOW} calls")
            }
            ConfigError::ZeroBuckets => f.write_str("a time window needs at least one bucket"),
            ConfigError::TooManyBuckets(n) => {
                write!(f, "time window has {n} buckets, more than {MAX_BUCKETS}")
            }
            ConfigError::BucketTooShort(d) => {
                write!(
                    f,
                    "time window buckets of {d:?} are shorter than {MIN_BUCKET:?}"
                )
            }
            ConfigError::ZeroMinimumCalls => f.write_str("minimum calls must be at least 1"),
            ConfigError::ZeroHalfOpenPermits => f.write_str("half-open permits must be at least 1"),
            ConfigError::TooManyHalfOpenPermits(n) => {
                write!(f, "{n} half-open permits exceed {MAX_IN_FLIGHT}")
            }
            ConfigError::ZeroHalfOpenSuccesses => {
                f.write_str("half-open successes to close must be at least 1")
            }
            ConfigError::TooManyHalfOpenSuccesses(n) => {
                write!(f, "{n} half-open successes exceed {MAX_SUCCESSES}")
            }
            ConfigError::ZeroConsecutiveFailures => {
                f.write_str("consecutive failures to trip must be at least 1")
            }
            ConfigError::ZeroSlowCallDuration => f.write_str("slow-call duration must be > 0"),
            ConfigError::ZeroHalfOpenMaxWait => {
                f.write_str("half-open max wait must be > 0 (None waits forever)")
            }
            ConfigError::ZeroOpenDuration => f.write_str("open duration must be > 0"),
            ConfigError::BadMultiplier(m) => {
                write!(f, "backoff multiplier {m} must be finite and >= 1")
            }
            ConfigError::CapBelowInitial => {
                f.write_str("backoff cap must be at least the initial open duration")
            }
            ConfigError::JitterOutOfRange(j) => write!(f, "jitter {j} is outside [0, 1]"),
            ConfigError::HalfOpenProbesOutOfRange(n) => write!(
                f,
                "half-open failure-rate probes {n} outside 1..={MAX_HALF_OPEN_PROBES}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A validated breaker configuration. Cheap to clone (a [`BreakerSet`]
/// clones it for every breaker it creates).
///
/// [`BreakerSet`]: super::BreakerSet
#[derive(Clone)]
pub struct Config {
    pub(crate) window: Window,
    pub(crate) minimum_calls: u32,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_call_rate: Option<f64>,
    pub(crate) slow_call_duration: Duration,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) backoff: Backoff,
    pub(crate) half_open_permits: u32,
    pub(crate) half_open_successes: u32,
    pub(crate) half_open_max_wait: Option<Duration>,
    pub(crate) deadline_rule: DeadlineRule,
    pub(crate) half_open_mode: HalfOpenMode,
    pub(crate) listeners: Arc<[Listener]>,
    pub(crate) clock: ClockSource,
    pub(crate) seed: Option<u64>,
}

impl Config {
    /// A builder starting from the defaults (see [`ConfigBuilder`]).
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The window rates are judged over.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Calls the window must hold before any criterion is judged, clamped to
    /// the size of a count window (as resilience4j does).
    pub fn minimum_calls(&self) -> u32 {
        match self.window {
            Window::Count(n) => self.minimum_calls.min(n),
            Window::Time { .. } => self.minimum_calls,
        }
    }

    /// The half-open probe limit.
    pub fn half_open_permits(&self) -> u32 {
        self.half_open_permits
    }

    /// Whether calls are timed (a slow-call criterion is on).
    pub(crate) fn times_calls(&self) -> bool {
        self.slow_call_rate.is_some()
    }
}

impl Default for Config {
    fn default() -> Config {
        match ConfigBuilder::default().build() {
            Ok(config) => config,
            // The defaults are constants validated by a unit test.
            Err(error) => unreachable!("default breaker config is invalid: {error}"),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call_rate", &self.slow_call_rate)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("backoff", &self.backoff)
            .field("half_open_permits", &self.half_open_permits)
            .field("half_open_successes", &self.half_open_successes)
            .field("half_open_max_wait", &self.half_open_max_wait)
            .field("deadline_rule", &self.deadline_rule)
            .field("half_open_mode", &self.half_open_mode)
            .field("listeners", &self.listeners.len())
            .field("clock", &self.clock)
            .finish()
    }
}

/// Builds a [`Config`]. Defaults follow resilience4j where it is sensible:
///
/// | setting | default | note |
/// |---|---|---|
/// | window | count, 100 calls | resilience4j |
/// | minimum calls | 100 | resilience4j |
/// | failure rate | 50 % | resilience4j |
/// | slow-call rate | 100 % of calls slower than 60 s | resilience4j |
/// | consecutive failures | off | gobreaker trips after 5; opt in |
/// | open duration | fixed 60 s | resilience4j |
/// | half-open permits | 10 | resilience4j |
/// | half-open successes to close | 10 | resilience4j judges after 10 probes |
/// | half-open max wait | 60 s | resilience4j waits forever, which leaves breakers stuck |
/// | clock | [`SystemClock::new`] | coarse: resolution of a kernel tick (1–4 ms); [`SystemClock::precise`] for finer |
#[derive(Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConfigBuilder").field(&self.config).finish()
    }
}

impl Default for ConfigBuilder {
    fn default() -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                window: Window::Count(100),
                minimum_calls: 100,
                failure_rate: Some(50.0),
                slow_call_rate: Some(100.0),
                slow_call_duration: Duration::from_secs(60),
                consecutive_failures: None,
                backoff: Backoff::fixed(Duration::from_secs(60)),
                half_open_permits: 10,
                half_open_successes: 10,
                half_open_max_wait: Some(Duration::from_secs(60)),
                deadline_rule: DeadlineRule::Slow,
                half_open_mode: HalfOpenMode::Successes,
                listeners: Arc::from(Vec::new()),
                clock: ClockSource::System(SystemClock::new()),
                seed: None,
            },
        }
    }
}

impl ConfigBuilder {
    /// Judge over the last `calls` calls.
    pub fn count_window(mut self, calls: u32) -> Self {
        self.config.window = Window::Count(calls);
        self
    }

    /// Judge over the calls of the last `span`, in `buckets` buckets.
    pub fn time_window(mut self, span: Duration, buckets: u32) -> Self {
        self.config.window = Window::Time { span, buckets };
        self
    }

    /// Calls the window must hold before any criterion is judged.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Trip when at least `percent` of the window's calls failed.
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate = Some(percent);
        self
    }

    /// Never trip on the failure rate.
    pub fn no_failure_rate(mut self) -> Self {
        self.config.failure_rate = None;
        self
    }

    /// Trip when at least `percent` of the window's calls took `slower_than`
    /// or longer.
    pub fn slow_call_threshold(mut self, percent: f64, slower_than: Duration) -> Self {
        self.config.slow_call_rate = Some(percent);
        self.config.slow_call_duration = slower_than;
        self
    }

    /// Never time calls, never trip on slowness.
    pub fn no_slow_calls(mut self) -> Self {
        self.config.slow_call_rate = None;
        self
    }

    /// Trip after `failures` failures in a row (once minimum calls is met).
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_failures = Some(failures);
        self
    }

    /// How long to stay open, as a function of consecutive trips.
    pub fn open_backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Probes admitted at once in half-open.
    pub fn half_open_permits(mut self, permits: u32) -> Self {
        self.config.half_open_permits = permits;
        self
    }

    /// Successful probes needed to close.
    pub fn half_open_successes(mut self, successes: u32) -> Self {
        self.config.half_open_successes = successes;
        self
    }

    /// How long half-open may go without a settled probe while probes are in
    /// flight before they are abandoned and the breaker reopens; `None`
    /// waits forever.
    pub fn half_open_max_wait(mut self, wait: Option<Duration>) -> Self {
        self.config.half_open_max_wait = wait;
        self
    }

    /// How half-open judges its probes (default
    /// [`HalfOpenMode::Successes`]).
    pub fn half_open_mode(mut self, mode: HalfOpenMode) -> Self {
        self.config.half_open_mode = mode;
        self
    }

    /// What a call cut by the caller's deadline counts as (default
    /// [`DeadlineRule::Slow`]; see [`crate::caller`]).
    pub fn deadline_exceeded(mut self, rule: DeadlineRule) -> Self {
        self.config.deadline_rule = rule;
        self
    }

    /// Adds a listener for state changes and outcomes.
    pub fn listener(mut self, listener: Listener) -> Self {
        let mut listeners = self.config.listeners.to_vec();
        listeners.push(listener);
        self.config.listeners = Arc::from(listeners);
        self
    }

    /// The clock the breaker reads (a [`ManualClock`] in tests).
    ///
    /// [`ManualClock`]: crate::clock::ManualClock
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = ClockSource::Custom(clock);
        self
    }

    /// Seeds the jitter generator, for reproducible open durations.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.config;
        check_rate("failure-rate", c.failure_rate)?;
        check_rate("slow-call-rate", c.slow_call_rate)?;
        match c.window {
            Window::Count(0) => return Err(ConfigError::ZeroWindow),
            Window::Count(n) if n > MAX_COUNT_WINDOW => return Err(ConfigError::WindowTooLarge(n)),
            Window::Count(_) => {}
            Window::Time { buckets: 0, .. } => return Err(ConfigError::ZeroBuckets),
            Window::Time { buckets, .. } if buckets > MAX_BUCKETS => {
                return Err(ConfigError::TooManyBuckets(buckets))
            }
            Window::Time { span, buckets } => {
                if span / buckets < MIN_BUCKET {
                    return Err(ConfigError::BucketTooShort(span / buckets));
                }
            }
        }
        if c.minimum_calls == 0 {
            return Err(ConfigError::ZeroMinimumCalls);
        }
        match c.half_open_permits {
            0 => return Err(ConfigError::ZeroHalfOpenPermits),
            n if n > MAX_IN_FLIGHT => return Err(ConfigError::TooManyHalfOpenPermits(n)),
            _ => {}
        }
        match c.half_open_successes {
            0 => return Err(ConfigError::ZeroHalfOpenSuccesses),
            n if n > MAX_SUCCESSES => return Err(ConfigError::TooManyHalfOpenSuccesses(n)),
            _ => {}
        }
        if let HalfOpenMode::FailureRate { probes } = c.half_open_mode {
            if probes == 0 || probes > MAX_HALF_OPEN_PROBES {
                return Err(ConfigError::HalfOpenProbesOutOfRange(probes));
            }
        }
        if c.consecutive_failures == Some(0) {
            return Err(ConfigError::ZeroConsecutiveFailures);
        }
        if c.slow_call_rate.is_some() && c.slow_call_duration.is_zero() {
            return Err(ConfigError::ZeroSlowCallDuration);
        }
        if c.half_open_max_wait == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroHalfOpenMaxWait);
        }
        let b = c.backoff;
        if b.initial.is_zero() {
            return Err(ConfigError::ZeroOpenDuration);
        }
        if !b.multiplier.is_finite() || b.multiplier < 1.0 {
            return Err(ConfigError::BadMultiplier(b.multiplier));
        }
        if b.max < b.initial {
            return Err(ConfigError::CapBelowInitial);
        }
        if !(0.0..=1.0).contains(&b.jitter) {
            return Err(ConfigError::JitterOutOfRange(b.jitter));
        }
        Ok(c)
    }
}

fn check_rate(which: &'static str, rate: Option<f64>) -> Result<(), ConfigError> {
    match rate {
        Some(value) if !(value > 0.0 && value <= 100.0) => {
            Err(ConfigError::RateOutOfRange { which, value })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let config = Config::builder().build().expect("defaults");
        assert_eq!(config.window(), Window::Count(100));
        assert_eq!(config.minimum_calls(), 100);
        assert_eq!(config.failure_rate, Some(50.0));
        assert_eq!(config.half_open_permits(), 10);
        let _ = Config::default();
    }

    #[test]
    fn minimum_calls_is_clamped_to_a_count_window() {
        let config = Config::builder()
            .count_window(10)
            .minimum_calls(50)
            .build()
            .expect("valid");
        assert_eq!(config.minimum_calls(), 10);
    }

    #[test]
    fn nan_rate_is_rejected() {
        let err = Config::builder()
            .failure_rate_threshold(f64::NAN)
            .build()
            .expect_err("NaN");
        assert!(matches!(err, ConfigError::RateOutOfRange { .. }));
    }
}
