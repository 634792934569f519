//! A lock-free GCRA rate limiter in one `AtomicU64`.
//!
//! # Protocol
//!
//! The Generic Cell Rate Algorithm (ATM's virtual scheduling, as in
//! `governor`) keeps one number, the *theoretical arrival time* `tat`: the
//! instant at which the limiter would be back to a full burst had nothing
//! else arrived. With the emission interval `T = period / rate` and a burst
//! of `b` tokens, a request for `n` tokens at time `now` conforms iff
//!
//! ```text
//! max(tat, now) + n·T − b·T ≤ now
//! ```
//!
//! and is then admitted by moving `tat` to `max(tat, now) + n·T`.
//! Equivalently the limiter holds `credit = b·T − max(tat − now, 0)`
//! nanoseconds of tokens, refilled at one token per `T` up to `b` (the
//! proptest in `tests/rate_gcra_props.rs` checks exactly this against a
//! credit model).
//!
//! 1. `tat` lives in one `AtomicU64` (nanoseconds on the limiter's clock).
//!    Admission is a load and one CAS from the value read to the new one; a
//!    lost CAS re-judges against the value that won. So admissions are
//!    linearised by the CAS order and the limiter never admits more than the
//!    rate allows, whatever the interleaving (loom model
//!    `loom-tests/tests/limit_gcra.rs`).
//! 2. Relaxed everywhere: `tat` publishes nothing but itself, and a
//!    read-modify-write on one location sees every earlier one.
//! 3. A refusal writes nothing but a statistic (`rejected`, its own line).
//! 4. [`Gcra::reserve`] admits *in the future*: it moves `tat` as an
//!    admission does and returns how long to wait (at most `max_wait`). A
//!    [`Reservation`] dropped or [`cancel`](Reservation::cancel)led before
//!    its time gives its `n·T` back (`tat −= n·T`, saturating): tokens never
//!    used return to the pool, so the rate still holds; callers that
//!    reserved after it are not moved, they just find credit earlier.
//! 5. **Leases.** On a clock that stands still between ticks (the default
//!    coarse clock), many calls share one reading, and at one reading `n`
//!    admissions in a row are the same as one admission of `n` tokens
//!    (each moves `tat` by `T` from `max(tat, now)`). So a thread that
//!    owns a stripe row (`crate::striped`) takes up to `lease − 1` tokens
//!    beyond its request in the same CAS, and hands them to its own later
//!    calls with a plain load and store for as long as the clock reads the
//!    same; its first call at a new reading gives what is left back
//!    (`tat −= left·T`, as a cancelled reservation does) before taking
//!    anew. A lease is taken only from credit beyond a margin of
//!    `rows × lease` tokens, so near exhaustion every admission is one CAS
//!    again, exactly as without leases: the limiter never admits more than
//!    the rate and burst allow (leased tokens were conforming when taken,
//!    and are spent at the same reading), and holds back at most `lease − 1`
//!    tokens per row, only while more than the margin is free. Under
//!    contention this turns a transfer of `tat`'s line between cores per
//!    call into one per `lease` calls (loom model: leased admissions
//!    conserve tokens). [`GcraBuilder::lease`] sets the size; 1 turns it
//!    off, the default on a clock of nanosecond resolution.
//! 6. With the `weft` feature, [`Gcra::acquire`] is a weft await point that
//!    refuses at once a wait that cannot end before the scope's deadline
//!    (taking nothing), sleeps on weft's timer, and on cancellation gives the
//!    reservation back.
//!
//! The default clock is the coarse monotonic clock (a tick of 1–4 ms): the
//! long-run rate is exact, but the credit of a whole tick arrives at once
//! (never more than the burst). Use [`GcraBuilder::clock`] with
//! [`SystemClock::precise`](crate::clock::SystemClock::precise) for
//! sub-tick smoothness.

use std::{fmt, sync::Arc, time::Duration};

use super::{emit, nanos, CachePadded, ConfigError, EventKind, Listener, Listeners, Refusal};
use crate::{
    caller::{check_scope, CallerEnd},
    clock::{Clock, ClockSource},
    striped::{self, Row},
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

/// Tokens a lease holds at most by default on a coarse clock.
const DEFAULT_LEASE: u32 = 16;

/// A thread's lease (module docs, "Leases"): tokens taken from `tat` beyond
/// a request, at one clock reading, that only the row's owner hands out.
#[derive(Debug, Default)]
struct Lease {
    /// The clock reading the tokens were taken at.
    at: AtomicU64,
    /// Tokens left.
    left: AtomicU64,
}

/// Why a rate limiter did not admit a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateError {
    /// Over the rate: no credit now; try again after `retry_after`.
    Exhausted {
        /// How long until the request would conform.
        retry_after: Duration,
    },
    /// The wait would be longer than the maximum asked for.
    WaitTooLong {
        /// How long it would have been.
        wait: Duration,
    },
    /// The wait could not end before the caller's deadline: refused at
    /// once, nothing taken.
    DeadlineTooSoon {
        /// How long it would have been.
        wait: Duration,
        /// What was left of the caller's budget.
        remaining: Duration,
    },
    /// More tokens than the burst: this request can never conform.
    InsufficientCapacity {
        /// Tokens asked for.
        asked: u32,
        /// The burst.
        burst: u32,
    },
    /// A keyed limiter holds its maximum of keys and none is idle.
    TooManyKeys,
    /// The caller's scope was cancelled (before asking, or while waiting:
    /// what it had reserved was given back).
    Cancelled(CallerEnd),
}

impl RateError {
    /// When the limiter would admit the request, if that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RateError::Exhausted { retry_after } => Some(*retry_after),
            RateError::WaitTooLong { wait } | RateError::DeadlineTooSoon { wait, .. } => {
                Some(*wait)
            }
            _ => None,
        }
    }

    pub(crate) fn refusal(&self) -> Option<Refusal> {
        match self {
            RateError::Exhausted { .. } => Some(Refusal::RateExceeded),
            RateError::WaitTooLong { .. } => Some(Refusal::WaitTooLong),
            RateError::DeadlineTooSoon { .. } => Some(Refusal::DeadlineTooSoon),
            RateError::TooManyKeys => Some(Refusal::TooManyKeys),
            RateError::InsufficientCapacity { .. } | RateError::Cancelled(_) => None,
        }
    }
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateError::Exhausted { retry_after } => {
                write!(f, "rate limit exceeded; retry after {retry_after:?}")
            }
            RateError::WaitTooLong { wait } => {
                write!(f, "rate limit: a wait of {wait:?} exceeds the maximum")
            }
            RateError::DeadlineTooSoon { wait, remaining } => write!(
                f,
                "rate limit: a wait of {wait:?} cannot end within the {remaining:?} left before the deadline"
            ),
            RateError::InsufficientCapacity { asked, burst } => {
                write!(f, "{asked} tokens exceed the burst of {burst}")
            }
            RateError::TooManyKeys => f.write_str("rate limiter holds its maximum of keys"),
            RateError::Cancelled(end) => write!(f, "rate limit wait cancelled ({end:?})"),
        }
    }
}

impl std::error::Error for RateError {}

/// The arithmetic of a GCRA, shared by [`Gcra`] and the keyed limiter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// `T`: nanoseconds per token.
    pub(crate) interval: u64,
    /// `b·T`: the burst's worth of nanoseconds.
    pub(crate) tolerance: u64,
    pub(crate) burst: u32,
}

/// What one judgement decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judged {
    /// Move `tat` to this and admit, after `wait` ns.
    Admit { tat: u64, wait: u64 },
    /// Refused: it would conform after `wait` ns.
    Refuse { wait: u64 },
}

impl Params {
    pub(crate) fn new(tokens: u64, period: Duration, burst: u32) -> Result<Params, ConfigError> {
        if tokens == 0 {
            return Err(ConfigError::ZeroRate);
        }
        if period.is_zero() {
            return Err(ConfigError::ZeroPeriod);
        }
        if burst == 0 {
            return Err(ConfigError::ZeroBurst);
        }
        let interval = nanos(period) / tokens;
        if interval == 0 {
            return Err(ConfigError::RateTooHigh { tokens, period });
        }
        let tolerance = interval
            .checked_mul(u64::from(burst))
            .filter(|t| *t < u64::MAX / 4)
            .ok_or(ConfigError::BurstTooLarge(u64::from(burst)))?;
        Ok(Params {
            interval,
            tolerance,
            burst,
        })
    }

    /// Judges a request for `n` tokens at `now` against `tat`, accepting a
    /// wait of up to `max_wait` ns (0: admit only if it conforms now).
    #[inline]
    pub(crate) fn judge(&self, tat: u64, now: u64, n: u32, max_wait: u64) -> Judged {
        let start = tat.max(now);
        let next = start.saturating_add(self.interval * u64::from(n));
        // Conforms at `next - tolerance`; waits that long from now.
        let wait = next.saturating_sub(self.tolerance).saturating_sub(now);
        if wait <= max_wait {
            Judged::Admit { tat: next, wait }
        } else {
            Judged::Refuse { wait }
        }
    }

    /// Whole tokens obtainable at `now`.
    pub(crate) fn available(&self, tat: u64, now: u64) -> u32 {
        let debt = tat.saturating_sub(now);
        let credit = self.tolerance.saturating_sub(debt);
        u32::try_from(credit / self.interval).unwrap_or(u32::MAX)
    }

    pub(crate) fn check_capacity(&self, n: u32) -> Result<(), RateError> {
        if n > self.burst {
            Err(RateError::InsufficientCapacity {
                asked: n,
                burst: self.burst,
            })
        } else {
            Ok(())
        }
    }
}

/// A lock-free GCRA rate limiter; see the [module docs](self).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use weft_resilience::{clock::ManualClock, limit::{Gcra, RateError}};
///
/// let clock = ManualClock::new();
/// let limiter = Gcra::builder()
///     .rate(10, Duration::from_secs(1)) // one token per 100 ms
///     .burst(2)
///     .clock(Arc::new(clock.clone()))
///     .build()?;
/// assert!(limiter.try_acquire().is_ok());
/// assert!(limiter.try_acquire().is_ok());
/// let Err(RateError::Exhausted { retry_after }) = limiter.try_acquire() else { panic!() };
/// assert_eq!(retry_after, Duration::from_millis(100));
/// clock.advance(retry_after);
/// assert!(limiter.try_acquire().is_ok());
/// # Ok::<(), weft_resilience::limit::ConfigError>(())
/// ```
pub struct Gcra {
    tat: CachePadded<AtomicU64>,
    params: Params,
    /// Most tokens per lease (1: no leases, and `leases` is empty).
    lease: u32,
    /// Credit left alone by leases: `leases.len() × lease` tokens.
    lease_margin: u64,
    /// One lease per owned stripe row; written only by the row's owner.
    leases: Box<[CachePadded<Lease>]>,
    clock: ClockSource,
    rejected: CachePadded<AtomicU64>,
    name: Arc<str>,
    listeners: Listeners,
}

impl Gcra {
    /// A builder: 100 tokens per second, burst 1, the coarse system clock.
    pub fn builder() -> GcraBuilder {
        GcraBuilder {
            tokens: 100,
            period: Duration::from_secs(1),
            burst: 1,
            lease: None,
            clock: ClockSource::default(),
            name: Arc::from("gcra"),
            listeners: Listeners::default(),
        }
    }

    /// The limiter's name (events carry it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes one token now, or says when one will be there.
    #[inline]
    pub fn try_acquire(&self) -> Result<(), RateError> {
        self.try_acquire_n(1)
    }

    /// Takes `n` tokens now, or says when they will be there.
    #[inline]
    pub fn try_acquire_n(&self, n: u32) -> Result<(), RateError> {
        if let Err(end) = check_scope() {
            return Err(RateError::Cancelled(end));
        }
        if !self.leases.is_empty() {
            if let Row::Owned(row) = striped::row(self.leases.len()) {
                return self.take_leased(&self.leases[row].0, n);
            }
        }
        match self.take(n, 0, |wait| RateError::Exhausted { retry_after: wait })? {
            0 => Ok(()),
            // `take` admits with a wait only up to `max_wait`, here 0.
            wait => unreachable!("admitted with a wait of {wait} ns and no wait allowed"),
        }
    }

    /// Reserves `n` tokens at the earliest time they conform, if that is
    /// within `max_wait`: the caller then waits [`Reservation::wait`] and
    /// proceeds. Dropping the reservation before using it gives the tokens
    /// back (see the module docs).
    pub fn reserve(&self, n: u32, max_wait: Duration) -> Result<Reservation<'_>, RateError> {
        if let Err(end) = check_scope() {
            return Err(RateError::Cancelled(end));
        }
        let refusal = |wait| {
            if max_wait.is_zero() {
                RateError::Exhausted { retry_after: wait }
            } else {
                RateError::WaitTooLong { wait }
            }
        };
        self.reservation(n, max_wait, refusal)
    }

    fn reservation(
        &self,
        n: u32,
        max_wait: Duration,
        refusal: impl FnOnce(Duration) -> RateError,
    ) -> Result<Reservation<'_>, RateError> {
        let wait = self.take(n, nanos(max_wait), refusal)?;
        Ok(Reservation {
            limiter: self,
            cost: self.params.interval * u64::from(n),
            wait: Duration::from_nanos(wait),
            used: false,
        })
    }

    /// Admits `n` tokens now with a wait of at most `max_wait` ns; returns
    /// the wait.
    #[inline]
    fn take(
        &self,
        n: u32,
        max_wait: u64,
        refusal: impl FnOnce(Duration) -> RateError,
    ) -> Result<u64, RateError> {
        self.params.check_capacity(n)?;
        let now = self.clock.nanos();
        Ok(self.admit_at(now, n, max_wait, refusal, |_| 0)?.1)
    }

    /// The CAS loop at the reading `now`: admits `n` tokens plus `extra`
    /// more (as many as `extra(next)` says, given the `tat` the admission
    /// alone would leave) with a wait of at most `max_wait` ns; returns the
    /// extra tokens taken and the wait.
    #[inline(always)]
    fn admit_at(
        &self,
        now: u64,
        n: u32,
        max_wait: u64,
        refusal: impl FnOnce(Duration) -> RateError,
        extra: impl Fn(u64) -> u64,
    ) -> Result<(u64, u64), RateError> {
        let mut tat = self.tat.load(Relaxed);
        loop {
            match self.params.judge(tat, now, n, max_wait) {
                Judged::Admit { tat: next, wait } => {
                    let extra = extra(next);
                    let next = next + extra * self.params.interval;
                    match self.tat.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                        Ok(_) => return Ok((extra, wait)),
                        Err(actual) => tat = actual,
                    }
                }
                Judged::Refuse { wait } => {
                    return Err(self.refuse(refusal(Duration::from_nanos(wait))));
                }
            }
        }
    }

    /// An admission by a thread that owns `lease`: from the lease while the
    /// clock reads what it read when the lease was taken, else renewed.
    #[inline]
    fn take_leased(&self, lease: &Lease, n: u32) -> Result<(), RateError> {
        self.params.check_capacity(n)?;
        let now = self.clock.nanos();
        // Relaxed: only this thread writes the lease.
        let left = lease.left.load(Relaxed);
        if left >= u64::from(n) && lease.at.load(Relaxed) == now {
            lease.left.store(left - u64::from(n), Relaxed);
            return Ok(());
        }
        self.renew(lease, n, now)
    }

    /// Gives back what is left of the lease, then admits `n` tokens plus
    /// up to `lease − 1` more for the lease, from credit beyond the margin,
    /// in one CAS.
    #[inline(never)]
    fn renew(&self, lease: &Lease, n: u32, now: u64) -> Result<(), RateError> {
        let left = lease.left.load(Relaxed);
        if left != 0 {
            lease.left.store(0, Relaxed);
            self.give_back(left * self.params.interval);
        }
        let (extra, _) = self.admit_at(
            now,
            n,
            0,
            |wait| RateError::Exhausted { retry_after: wait },
            |next| {
                u64::from(self.params.available(next, now))
                    .saturating_sub(self.lease_margin)
                    .min(u64::from(self.lease) - 1)
            },
        )?;
        lease.at.store(now, Relaxed);
        lease.left.store(extra, Relaxed);
        Ok(())
    }

    /// Tokens held in leases taken at the reading `now` (the rest are
    /// stale: their owners give them back on their next call).
    fn leased_at(&self, now: u64) -> u64 {
        self.leases
            .iter()
            .filter(|lease| lease.0.at.load(Relaxed) == now)
            .map(|lease| lease.0.left.load(Relaxed))
            .sum()
    }

    #[cold]
    fn refuse(&self, error: RateError) -> RateError {
        // Relaxed: a statistic.
        self.rejected.fetch_add(1, Relaxed);
        if let Some(refusal) = error.refusal() {
            emit(&self.listeners.0, &self.name, EventKind::Rejected(refusal));
        }
        error
    }

    /// Gives `cost` ns of credit back (an unused reservation).
    fn give_back(&self, cost: u64) {
        // Relaxed: as every access to `tat`.
        let _ = self
            .tat
            .fetch_update(Relaxed, Relaxed, |tat| Some(tat.saturating_sub(cost)));
    }

    /// Waits for `n` tokens, at most `max_wait`, as a weft await point: a
    /// cancelled caller takes nothing; a wait that cannot end before the
    /// scope's deadline is refused at once ([`RateError::DeadlineTooSoon`]);
    /// a wait cut short by cancellation gives its tokens back.
    #[cfg(feature = "weft")]
    pub async fn acquire(&self, n: u32, max_wait: Duration) -> Result<(), RateError> {
        let remaining = weft::cancel::remaining();
        let limit = remaining.map_or(max_wait, |r| r.min(max_wait));
        if let Err(end) = check_scope() {
            return Err(RateError::Cancelled(end));
        }
        // A wait longer than the budget left is refused at once, as such
        // (and reported as such), taking nothing.
        let refusal = |wait| match remaining {
            Some(remaining) if wait > remaining && wait <= max_wait => {
                RateError::DeadlineTooSoon { wait, remaining }
            }
            _ => RateError::WaitTooLong { wait },
        };
        self.reservation(n, limit, refusal)?.wait_weft().await
    }

    /// A snapshot.
    pub fn metrics(&self) -> GcraMetrics {
        let now = self.clock.nanos();
        let tat = self.tat.load(Relaxed);
        let next = self.params.judge(tat, now, 1, 0);
        // Tokens leased at this reading are as good as free: their owner
        // hands them out at once.
        let leased = u32::try_from(self.leased_at(now)).unwrap_or(u32::MAX);
        GcraMetrics {
            available: self
                .params
                .available(tat, now)
                .saturating_add(leased)
                .min(self.params.burst),
            burst: self.params.burst,
            interval: Duration::from_nanos(self.params.interval),
            retry_after: match next {
                Judged::Admit { .. } => Duration::ZERO,
                Judged::Refuse { wait } => Duration::from_nanos(wait),
            },
            rejected: self.rejected.load(Relaxed),
        }
    }
}

impl fmt::Debug for Gcra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gcra")
            .field("name", &self.name)
            .field("params", &self.params)
            .field("clock", &self.clock)
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

/// Tokens reserved at a future time by [`Gcra::reserve`]: wait
/// [`wait`](Self::wait), then call [`used`](Self::used). Dropped unused (a
/// cancelled caller), it gives the tokens back.
#[must_use = "a reservation dropped unused gives its tokens back"]
#[derive(Debug)]
pub struct Reservation<'a> {
    limiter: &'a Gcra,
    cost: u64,
    wait: Duration,
    used: bool,
}

impl Reservation<'_> {
    /// How long to wait before making the call.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The call was (or will be) made: keep the tokens.
    pub fn used(mut self) {
        self.used = true;
    }

    /// The call will not be made: give the tokens back (as dropping does).
    pub fn cancel(self) {}

    /// Sleeps out the wait on weft's timer; a cancelled sleep gives the
    /// tokens back.
    #[cfg(feature = "weft")]
    async fn wait_weft(self) -> Result<(), RateError> {
        if !self.wait.is_zero() {
            if let Err(cancelled) = weft::time::sleep(self.wait).await {
                emit(
                    &self.limiter.listeners.0,
                    &self.limiter.name,
                    EventKind::WaitCancelled,
                );
                let end = if cancelled.is_deadline() {
                    CallerEnd::DeadlineExceeded
                } else {
                    CallerEnd::Cancelled
                };
                return Err(RateError::Cancelled(end)); // drop gives back
            }
        }
        self.used();
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.limiter.give_back(self.cost);
        }
    }
}

/// A snapshot of a [`Gcra`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcraMetrics {
    /// Tokens that could be taken right now.
    pub available: u32,
    /// The burst.
    pub burst: u32,
    /// Time per token.
    pub interval: Duration,
    /// How long until one token conforms (zero if one does now).
    pub retry_after: Duration,
    /// Requests refused since the limiter was built.
    pub rejected: u64,
}

/// Builds a [`Gcra`].
#[derive(Debug)]
pub struct GcraBuilder {
    tokens: u64,
    period: Duration,
    burst: u32,
    lease: Option<u32>,
    clock: ClockSource,
    name: Arc<str>,
    listeners: Listeners,
}

impl GcraBuilder {
    /// `tokens` per `period` in the long run.
    pub fn rate(mut self, tokens: u64, period: Duration) -> Self {
        self.tokens = tokens;
        self.period = period;
        self
    }

    /// How many tokens may be taken at once after a quiet spell (default 1).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The clock (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = ClockSource::Custom(clock);
        self
    }

    /// Tokens a thread may take at once for its own later calls at the
    /// same clock reading (module docs, "Leases"); 1 turns leases off.
    /// Default: 16 on the default coarse clock, 1 on any other (a clock
    /// that moves every nanosecond would only hand leases back).
    pub fn lease(mut self, tokens: u32) -> Self {
        self.lease = Some(tokens);
        self
    }

    /// The name events carry.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a listener (called on refusals and cancelled waits only).
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Validates and builds the limiter, full (a burst available at once).
    pub fn build(self) -> Result<Gcra, ConfigError> {
        let params = Params::new(self.tokens, self.period, self.burst)?;
        let lease = match self.lease {
            Some(0) => return Err(ConfigError::ZeroLease),
            Some(lease) => lease,
            None if self.clock.is_coarse() => DEFAULT_LEASE,
            None => 1,
        };
        let rows = if lease > 1 {
            striped::stripe_count()
        } else {
            0
        };
        Ok(Gcra {
            tat: CachePadded(AtomicU64::new(0)),
            params,
            lease,
            lease_margin: rows as u64 * u64::from(lease),
            leases: (0..rows).map(|_| CachePadded(Lease::default())).collect(),
            clock: self.clock,
            rejected: CachePadded(AtomicU64::new(0)),
            name: self.name,
            listeners: self.listeners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params::new(10, Duration::from_secs(1), 3).expect("valid")
    }

    #[test]
    fn judge_admits_a_burst_then_one_per_interval() {
        let p = params();
        let t = 100_000_000; // T = 100 ms
        let mut tat = 0;
        for _ in 0..3 {
            match p.judge(tat, 0, 1, 0) {
                Judged::Admit { tat: next, wait: 0 } => tat = next,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(p.judge(tat, 0, 1, 0), Judged::Refuse { wait: t });
        assert_eq!(p.available(tat, 0), 0);
        assert_eq!(p.available(tat, t), 1);
        assert!(matches!(p.judge(tat, 0, 1, t), Judged::Admit { wait, .. } if wait == t));
    }

    fn leasing(burst: u32, lease: u32, clock: &crate::clock::ManualClock) -> Gcra {
        Gcra::builder()
            .rate(1, Duration::from_secs(1))
            .burst(burst)
            .lease(lease)
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("valid")
    }

    #[test]
    fn a_lease_admits_exactly_the_burst_at_one_reading() {
        let clock = crate::clock::ManualClock::new();
        let limiter = leasing(1_000, 16, &clock);
        for i in 0..1_000 {
            assert!(limiter.try_acquire().is_ok(), "call {i}");
            assert_eq!(limiter.metrics().available, 999 - i, "after call {i}");
        }
        assert!(matches!(
            limiter.try_acquire(),
            Err(RateError::Exhausted { .. })
        ));
        assert_eq!(limiter.metrics().rejected, 1);
        // One token a second: a second later exactly one more.
        clock.advance(Duration::from_secs(1));
        assert!(limiter.try_acquire().is_ok());
        assert!(limiter.try_acquire().is_err());
    }

    #[test]
    fn a_stale_lease_goes_back_and_a_lease_leaves_the_margin_alone() {
        let clock = crate::clock::ManualClock::new();
        let limiter = leasing(100, 16, &clock);
        limiter.try_acquire().expect("credit");
        let leased = limiter.leased_at(0);
        assert!(
            leased == 0 || leased == 15,
            "a lease is all or nothing here: {leased}"
        );
        assert_eq!(limiter.metrics().available, 99);
        // A new reading: the lease taken at the old one goes back whole.
        clock.advance(Duration::from_nanos(1));
        limiter.try_acquire().expect("credit");
        assert_eq!(limiter.leased_at(0), 0, "the old lease was returned");
        assert_eq!(limiter.metrics().available, 98);
        // Near exhaustion (credit under the margin) no lease is taken: the
        // last tokens go one CAS at a time to whoever asks.
        let limiter = leasing(8, 16, &clock);
        limiter.try_acquire().expect("credit");
        assert_eq!(limiter.leased_at(clock.now().as_nanos() as u64), 0);
    }

    #[test]
    fn leases_across_threads_admit_every_token_once() {
        let clock = crate::clock::ManualClock::new();
        let threads = striped::stripe_count() + 3; // some share the CAS row
        let calls = 2_000;
        let limiter = leasing(u32::try_from(threads * calls).unwrap(), 16, &clock);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for i in 0..calls {
                        assert!(limiter.try_acquire().is_ok(), "call {i}");
                    }
                });
            }
        });
        let m = limiter.metrics();
        assert_eq!(m.available, 0, "every token taken, none held back");
        assert_eq!(m.rejected, 0);
        assert!(limiter.try_acquire().is_err(), "and not one more");
        assert_eq!(
            Gcra::builder().lease(0).build().unwrap_err(),
            ConfigError::ZeroLease
        );
    }

    #[test]
    fn bad_configs_say_which() {
        let b = || Gcra::builder();
        let s = Duration::from_secs(1);
        assert_eq!(b().rate(0, s).build().unwrap_err(), ConfigError::ZeroRate);
        assert_eq!(
            b().rate(1, Duration::ZERO).build().unwrap_err(),
            ConfigError::ZeroPeriod
        );
        assert_eq!(b().burst(0).build().unwrap_err(), ConfigError::ZeroBurst);
        assert!(matches!(
            b().rate(2_000_000_000, s).build().unwrap_err(),
            ConfigError::RateTooHigh { .. }
        ));
        assert!(matches!(
            b().rate(1, Duration::from_secs(1 << 40))
                .burst(u32::MAX)
                .build()
                .unwrap_err(),
            ConfigError::BurstTooLarge(_)
        ));
        assert!(ConfigError::ZeroBurst.to_string().contains("burst"));
    }
}
