//! A lock-free circuit breaker.
//!
//! # Protocol
//!
//! All of a breaker's state that decides admission lives in one `AtomicU64`,
//! the *state word* (bit layout in `breaker/state.rs`): the [`State`],
//! the *generation*, and in `HalfOpen` the probes in flight and the probe
//! successes so far. Every transition is one compare-and-swap from the word
//! its caller read to the first word of the next generation, so:
//!
//! 1. **Exactly one caller wins each transition.** Two callers that both see
//!    a tripping window both CAS from the same `Closed` word; one succeeds,
//!    the other finds a new generation and does nothing. Only the winner
//!    draws the open duration, writes the phase word, clears the window and
//!    tells the listeners.
//! 2. **Every transition bumps the generation** and zeroes the probe fields.
//!    A permit carries the generation it was issued in; its verdict is
//!    applied only while that generation lasts (a generation has exactly one
//!    state, so the state is implied). A verdict from an earlier generation
//!    changes nothing (an `EventKind::Stale` is reported).
//! 3. **Closed** admits with a single load: no counter is touched at
//!    admission. A verdict records an [`Outcome`] into the window, then judges
//!    the criteria (failure rate, slow-call rate, consecutive failures — none
//!    before `minimum_calls`) and, if one is met, CASes to `Open`.
//! 4. **Open** is left lazily: the first `acquire` after the open duration
//!    CASes `Open(g)` to `HalfOpen(g+1)` holding one probe, and that caller
//!    is the first probe. No timer thread exists. The open-until instant is in
//!    a second word, the *phase word*, tagged with the generation it belongs
//!    to; it is written right after the winning CAS, and a reader that sees a
//!    newer generation than the phase word's tag treats the breaker as still
//!    open.
//! 5. **HalfOpen** admits by CAS-incrementing the probes in flight, up to
//!    `half_open_permits` (with [`HalfOpenMode::FailureRate`], up to
//!    `probes` admitted in the generation, judged together once all have
//!    settled: the word then holds in flight / settled / failed / slow, see
//!    `state.rs`). A settled probe decrements it in the same CAS that
//!    counts its success, closes the breaker after `half_open_successes`
//!    successes, or reopens it on a failure (a slow probe is a failure when
//!    the slow-call criterion is on). An ignored verdict or a dropped permit
//!    only returns the slot. The phase word holds the time of the last
//!    progress; an `acquire` that finds probes in flight and no progress for
//!    `half_open_max_wait` abandons them and reopens the breaker (the stuck
//!    half-open of resilience4j).
//! 6. **Manual states** (`ForcedOpen`, `Disabled`, `MetricsOnly`) and `reset`
//!    are CAS loops to the next generation from whatever state is current.
//!    `Disabled` is weft's "forced closed": it admits everything and records
//!    nothing. `MetricsOnly` records but never trips.
//! 7. **Backoff.** Each trip to `Open` increments a consecutive-trips count
//!    that picks the open duration from the [`Backoff`]; a close from
//!    half-open (or a reset) sets it back to zero.
//!
//! # Invariants
//!
//! * Probes in flight ≤ `half_open_permits`, and non-zero only in `HalfOpen`.
//! * Every probe slot taken is returned exactly once, by the permit that
//!   took it (success, failure, ignore or drop), or wholesale by the
//!   transition that ends its generation.
//! * The windows are statistics: all their operations are relaxed, and a
//!   verdict racing a transition may land in the window of the generation it
//!   was issued in (where it is harmless: the window is cleared whenever the
//!   breaker enters `Closed` or `MetricsOnly`). Decisions are only ever taken
//!   by a CAS on the state word.
//!
//! # Example
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use weft_resilience::{breaker::{Breaker, Config, State}, clock::ManualClock};
//!
//! let clock = ManualClock::new();
//! let config = Config::builder()
//!     .count_window(10)
//!     .minimum_calls(4)
//!     .clock(Arc::new(clock.clone()))
//!     .build()?;
//! let breaker = Breaker::new("inventory", config);
//! for _ in 0..4 {
//!     breaker.acquire().expect("closed").failure();
//! }
//! assert_eq!(breaker.state(), State::Open);
//! let rejected = breaker.acquire().unwrap_err();
//! assert_eq!(rejected.retry_after(), Some(Duration::from_secs(60)));
//! # Ok::<(), weft_resilience::breaker::ConfigError>(())
//! ```

mod backoff;
mod classify;
mod config;
mod event;
mod metrics;
mod permit;
mod set;
mod state;
mod window;

use std::{fmt, sync::Arc as StdArc, time::Duration};

pub use self::{
    backoff::Backoff,
    classify::{Classify, ErrorsFail, Predicates, Verdict},
    config::{
        Config, ConfigBuilder, ConfigError, DeadlineRule, HalfOpenMode, Window, MAX_BUCKETS,
        MAX_COUNT_WINDOW, MAX_HALF_OPEN_PROBES, MIN_BUCKET,
    },
    event::{Cause, Event, EventKind, Listener},
    metrics::{Metrics, Snapshot},
    permit::{CallError, OwnedPermit, Permit, RejectReason, Rejected},
    set::BreakerSet,
    state::State,
    window::{Counts, Outcome},
};
use self::{
    backoff::SplitMix,
    permit::Ticket,
    state::{PhaseWord, StateWord},
    window::Recorder,
};
use crate::{
    clock::{nanos_of, SharedNow},
    sync::atomic::{
        AtomicBool, AtomicU32, AtomicU64,
        Ordering::{AcqRel, Acquire, Relaxed, Release},
    },
};

/// Keeps a hot atomic on its own cache line(s), so writers of the window do
/// not evict the state word that every admission reads. 128 bytes: adjacent
/// line prefetching pairs 64-byte lines on x86.
#[repr(align(128))]
#[derive(Debug)]
struct CachePadded<T>(T);

/// A lock-free circuit breaker; see the [module docs](self) for the protocol.
///
/// `C` decides which results are failures (see [`Classify`]); the default
/// counts every `Err` as a failure.
pub struct Breaker<C = ErrorsFail> {
    /// The state word (layout in `state.rs`).
    state: CachePadded<AtomicU64>,
    /// The phase word: open-until in `Open`, last progress in `HalfOpen`.
    phase: AtomicU64,
    /// Failures in a row in `Closed`; reset by a success and by transitions.
    consecutive_failures: AtomicU32,
    /// Trips since the last healthy close; picks the backoff step.
    consecutive_trips: AtomicU32,
    /// Calls refused, ever.
    rejected: AtomicU64,
    rng: SplitMix,
    window: CachePadded<Recorder>,
    /// Whether the window may hold a failure or a slow call, so that a
    /// success may be the call that trips (the last judgement saw one).
    /// Read by every success, written only when it changes.
    suspect: CachePadded<AtomicBool>,
    name: StdArc<str>,
    config: Config,
    classifier: C,
    times_calls: bool,
    /// The slow-call duration in nanoseconds, `None` if slowness is not a
    /// criterion: judging a call compares two integers.
    slow_nanos: Option<u64>,
}

/// What a manual state change did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The breaker moved.
    Moved {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// The generation entered.
        generation: u32,
    },
    /// The breaker was already in the requested state; nothing changed.
    Unchanged(State),
}

impl Breaker<ErrorsFail> {
    /// A breaker that counts every `Err` as a failure.
    pub fn new(name: impl Into<StdArc<str>>, config: Config) -> Breaker<ErrorsFail> {
        Breaker::with_classifier(name, config, ErrorsFail)
    }
}

impl<C> Breaker<C> {
    /// A breaker judging results with `classifier`.
    pub fn with_classifier(name: impl Into<StdArc<str>>, config: Config, classifier: C) -> Self {
        let name = name.into();
        let salt = config.clock.now().as_nanos() as u64 ^ (name.len() as u64).rotate_left(32);
        Breaker {
            state: CachePadded(AtomicU64::new(StateWord::new(State::Closed, 0).0)),
            phase: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            consecutive_trips: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
            rng: SplitMix::new(config.seed, salt),
            window: CachePadded(Recorder::new(config.window)),
            suspect: CachePadded(AtomicBool::new(false)),
            times_calls: config.times_calls() || !config.listeners.is_empty(),
            slow_nanos: config
                .times_calls()
                .then(|| nanos_of(config.slow_call_duration)),
            name,
            config,
            classifier,
        }
    }

    /// The name events carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }

    fn word(&self) -> StateWord {
        // Acquire: pairs with the AcqRel of the CAS that made this word, so
        // whatever the transition's winner did before it is visible.
        StateWord(self.state.0.load(Acquire))
    }

    /// The current state. `Open` stays `Open` past its open duration until
    /// the next `acquire` (transitions are lazy).
    pub fn state(&self) -> State {
        self.word().state()
    }

    /// The current generation (bumped by every transition).
    pub fn generation(&self) -> u32 {
        self.word().generation()
    }

    #[inline]
    fn now(&self) -> Duration {
        self.config.clock.now()
    }

    /// Now in nanoseconds on the breaker's clock: what the hot paths time
    /// calls with (integers, no `Duration` normalised per reading).
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.config.clock.nanos()
    }

    /// Asks to make a call. `Ok` holds a permit to report the outcome with;
    /// `Err` says why not and when to try again.
    #[inline(always)]
    pub fn acquire(&self) -> Result<Permit<'_, C>, Rejected> {
        self.admit().map(|ticket| Permit::new(self, ticket))
    }

    /// [`acquire`](Self::acquire) for a permit that owns a handle to the
    /// breaker, to move into a spawned task.
    pub fn acquire_owned(self: &StdArc<Self>) -> Result<OwnedPermit<C>, Rejected> {
        self.admit()
            .map(|ticket| OwnedPermit::new(StdArc::clone(self), ticket))
    }

    /// [`acquire`](Self::acquire) for a caller that has just checked its
    /// scope (`caller::check_scope`) on this thread with no await point
    /// since: the pipeline checks once for all its layers. A timed call
    /// starts at the call's shared clock reading (`SharedNow`).
    #[inline]
    pub(crate) fn acquire_in_live_scope(&self, now: &SharedNow) -> Result<Permit<'_, C>, Rejected> {
        self.admit_in_live_scope(Some(now))
            .map(|ticket| Permit::new(self, ticket))
    }

    #[inline]
    fn admit(&self) -> Result<Ticket, Rejected> {
        // A cancelled caller takes nothing (above all not a half-open
        // probe) and is not counted as rejected: it never asked the service.
        if crate::caller::check_scope().is_err() {
            return Err(Rejected::new(RejectReason::Cancelled, None));
        }
        self.admit_in_live_scope(None)
    }

    /// Now on the breaker's clock, from `shared` if given.
    #[inline(always)]
    fn nanos_with(&self, shared: Option<&SharedNow>) -> u64 {
        match shared {
            Some(shared) => self.config.clock.nanos_shared(shared),
            None => self.now_nanos(),
        }
    }

    #[inline]
    fn admit_in_live_scope(&self, shared: Option<&SharedNow>) -> Result<Ticket, Rejected> {
        let word = self.word();
        // The closed path inline, the rest (open, half-open: a loop of
        // CASes) out of line, so a caller's closed admission is small.
        if let State::Closed | State::MetricsOnly = word.state() {
            let started = self.times_calls.then(|| self.nanos_with(shared));
            return Ok(Ticket::new(word.generation(), started));
        }
        self.admit_other(word, shared)
    }

    #[inline(never)]
    fn admit_other(
        &self,
        mut word: StateWord,
        shared: Option<&SharedNow>,
    ) -> Result<Ticket, Rejected> {
        loop {
            match word.state() {
                State::Closed | State::MetricsOnly => {
                    let started = self.times_calls.then(|| self.nanos_with(shared));
                    return Ok(Ticket::new(word.generation(), started));
                }
                State::Disabled => return Ok(Ticket::new(word.generation(), None)),
                State::ForcedOpen => return Err(self.reject(RejectReason::ForcedOpen, None)),
                State::Open => {
                    let now = self.now();
                    // Acquire: pairs with the Release store of the winner.
                    let phase = PhaseWord(self.phase.load(Acquire));
                    let Some(until) = phase.time_for(word.generation()) else {
                        // The winner of the trip has not published its
                        // open duration yet: still open, time unknown.
                        return Err(self.reject(RejectReason::Open, None));
                    };
                    let until = Duration::from_micros(until);
                    if now < until {
                        return Err(self.reject(RejectReason::Open, Some((now, until))));
                    }
                    let next = word.next(State::HalfOpen).with_probe_admitted();
                    match self.cas(word, next) {
                        Ok(()) => {
                            self.publish_phase(next, now);
                            self.emit_transition(word, next, Cause::OpenElapsed);
                            return Ok(Ticket::new(next.generation(), Some(nanos_of(now))));
                        }
                        Err(actual) => word = actual,
                    }
                }
                State::HalfOpen => {
                    let now = self.now();
                    if self.probes_in_flight(word) > 0 && self.probes_stuck(word, now) {
                        let next = word.next(State::Open);
                        match self.cas(word, next) {
                            Ok(()) => {
                                self.after_open(word, next, Cause::ProbesAbandoned, now);
                                word = next;
                            }
                            Err(actual) => word = actual,
                        }
                        continue;
                    }
                    let (full, next) = match self.config.half_open_mode {
                        HalfOpenMode::Successes => (
                            word.in_flight() >= self.config.half_open_permits,
                            word.with_probe_admitted(),
                        ),
                        HalfOpenMode::FailureRate { probes } => (
                            word.rate_in_flight() + word.rate_settled() >= probes,
                            word.with_rate_probe_admitted(),
                        ),
                    };
                    if full {
                        return Err(self.reject(RejectReason::HalfOpenFull, None));
                    }
                    match self.cas(word, next) {
                        Ok(()) => return Ok(Ticket::new(word.generation(), Some(nanos_of(now)))),
                        Err(actual) => word = actual,
                    }
                }
            }
        }
    }

    /// Half-open probes in flight, in the breaker's layout.
    fn probes_in_flight(&self, word: StateWord) -> u32 {
        match self.config.half_open_mode {
            HalfOpenMode::Successes => word.in_flight(),
            HalfOpenMode::FailureRate { .. } => word.rate_in_flight(),
        }
    }

    /// Whether the probes of half-open `word` made no progress for the
    /// maximum wait.
    fn probes_stuck(&self, word: StateWord, now: Duration) -> bool {
        let Some(max_wait) = self.config.half_open_max_wait else {
            return false;
        };
        match PhaseWord(self.phase.load(Acquire)).time_for(word.generation()) {
            Some(progress) => now >= Duration::from_micros(progress).saturating_add(max_wait),
            // Entry time not yet published: the phase has just begun.
            None => false,
        }
    }

    fn cas(&self, current: StateWord, next: StateWord) -> Result<(), StateWord> {
        // AcqRel: the winner's later writes (phase, window clear) follow a
        // transition others can see; Acquire on failure to re-read the word.
        self.state
            .0
            .compare_exchange(current.0, next.0, AcqRel, Acquire)
            .map(drop)
            .map_err(StateWord)
    }

    fn publish_phase(&self, word: StateWord, at: Duration) {
        let micros = u64::try_from(at.as_micros()).unwrap_or(u64::MAX);
        // Release: pairs with the Acquire loads in `admit`.
        self.phase
            .store(PhaseWord::new(word.generation(), micros).0, Release);
    }

    fn reject(&self, reason: RejectReason, open: Option<(Duration, Duration)>) -> Rejected {
        // Relaxed: a statistic.
        self.rejected.fetch_add(1, Relaxed);
        self.emit(EventKind::Rejected(reason));
        Rejected::new(reason, open)
    }

    /// Applies a verdict for `ticket`. Called exactly once per permit.
    #[inline]
    pub(crate) fn settle(&self, ticket: Ticket, verdict: Verdict) {
        self.settle_with(ticket, verdict, None);
    }

    /// [`settle`](Self::settle), a closed breaker timing the call from
    /// `shared` if given.
    #[inline(always)]
    pub(crate) fn settle_with(&self, ticket: Ticket, verdict: Verdict, shared: Option<&SharedNow>) {
        let word = self.word();
        if word.generation() != ticket.generation() {
            self.emit_stale(ticket, word);
            return;
        }
        match word.state() {
            State::Closed | State::MetricsOnly => self.settle_closed(word, ticket, verdict, shared),
            State::HalfOpen => self.settle_probe(word, ticket, verdict),
            // Disabled records nothing; Open and ForcedOpen issue no permits.
            State::Disabled | State::Open | State::ForcedOpen => {}
        }
    }

    /// Applies the configured [`DeadlineRule`] to a deadline-cut verdict.
    #[inline]
    fn deadline_verdict(&self, verdict: Verdict) -> Verdict {
        match (verdict, self.config.deadline_rule) {
            (Verdict::DeadlineExceeded, DeadlineRule::Slow) => Verdict::DeadlineExceeded,
            (Verdict::DeadlineExceeded, DeadlineRule::Failure) => Verdict::Failure,
            (Verdict::DeadlineExceeded, DeadlineRule::Ignore) => Verdict::Ignore,
            (verdict, _) => verdict,
        }
    }

    fn emit_stale(&self, ticket: Ticket, word: StateWord) {
        self.emit(EventKind::Stale {
            issued: ticket.generation(),
            current: word.generation(),
        });
    }

    /// Whether a call that took `elapsed` nanoseconds was slow.
    #[inline]
    fn is_slow(&self, elapsed: Option<u64>) -> bool {
        self.slow_nanos
            .zip(elapsed)
            .is_some_and(|(slow, elapsed)| elapsed >= slow)
    }

    #[inline(always)]
    fn settle_closed(
        &self,
        word: StateWord,
        ticket: Ticket,
        verdict: Verdict,
        shared: Option<&SharedNow>,
    ) {
        let (failed, cut) = match self.deadline_verdict(verdict) {
            Verdict::Success => (false, false),
            Verdict::Failure => (true, false),
            Verdict::DeadlineExceeded => (false, true),
            Verdict::Ignore => return self.emit(EventKind::Ignored),
        };
        let now = (ticket.started().is_some() || self.window.0.needs_time())
            .then(|| self.nanos_with(shared));
        let elapsed = ticket
            .started()
            .zip(now)
            .map(|(started, now)| now.saturating_sub(started));
        let outcome = Outcome::new(failed, cut || self.is_slow(elapsed));
        let now = || now.unwrap_or_else(|| self.now_nanos());
        // A success can only trip the breaker if the window may hold a
        // failure or a slow call (every criterion needs one); otherwise the
        // striped time window is not summed (module docs, "Windows").
        let judge = outcome != Outcome::Success || self.suspect.0.load(Relaxed);
        let counts = self.window.0.record(outcome, now, judge);
        // Relaxed: consecutive failures are a statistic like the window.
        let consecutive = if failed {
            self.consecutive_failures
                .fetch_add(1, Relaxed)
                .saturating_add(1)
        } else {
            if self.consecutive_failures.load(Relaxed) != 0 {
                self.consecutive_failures.store(0, Relaxed);
            }
            0
        };
        if !self.config.listeners.is_empty() {
            let elapsed = elapsed.map(Duration::from_nanos);
            self.emit(EventKind::Recorded { outcome, elapsed });
        }
        if word.state() != State::Closed {
            return; // MetricsOnly never trips
        }
        let counts = match counts {
            Some(counts) => counts,
            None if failed && self.config.consecutive_failures.is_some() => {
                self.window.0.counts(now)
            }
            None => return, // the window did not change, or no decision is due
        };
        let suspect = counts.failures > 0 || counts.slow_calls > 0;
        // Relaxed: a hint; a race that clears it while a failure is in the
        // window delays judging successes until the next failure or slow
        // call, which sets it again (the windows are statistics).
        if self.suspect.0.load(Relaxed) != suspect {
            self.suspect.0.store(suspect, Relaxed);
        }
        if let Some(cause) = self.judge(&counts, consecutive) {
            let next = word.next(State::Open);
            if self.cas(word, next).is_ok() {
                self.after_open(word, next, cause, Duration::from_nanos(now()));
            }
        }
    }

    /// Which criterion, if any, trips the breaker.
    fn judge(&self, counts: &Counts, consecutive: u32) -> Option<Cause> {
        let c = &self.config;
        if counts.calls < u64::from(c.minimum_calls()) {
            return None;
        }
        if c.consecutive_failures.is_some_and(|n| consecutive >= n) {
            Some(Cause::ConsecutiveFailures)
        } else if c.failure_rate.is_some_and(|t| counts.failure_rate() >= t) {
            Some(Cause::FailureRate)
        } else if c
            .slow_call_rate
            .is_some_and(|t| counts.slow_call_rate() >= t)
        {
            Some(Cause::SlowCallRate)
        } else {
            None
        }
    }

    fn settle_probe(&self, mut word: StateWord, ticket: Ticket, verdict: Verdict) {
        let now = self.now();
        let elapsed = ticket
            .started()
            .map(|started| nanos_of(now).saturating_sub(started));
        let outcome = match self.deadline_verdict(verdict) {
            Verdict::Ignore => None,
            Verdict::Success => Some(Outcome::new(false, self.is_slow(elapsed))),
            Verdict::Failure => Some(Outcome::new(true, self.is_slow(elapsed))),
            // A probe cut by the caller's deadline proves nothing when
            // slowness is not a criterion: its slot is returned.
            Verdict::DeadlineExceeded if !self.config.times_calls() => None,
            Verdict::DeadlineExceeded => Some(Outcome::SlowSuccess),
        };
        // A slow probe fails the probe when slowness is a criterion at all.
        let probe_failed = outcome.map(|o| o.is_failure() || o.is_slow());
        let next = loop {
            if word.generation() != ticket.generation() || word.state() != State::HalfOpen {
                return self.emit_stale(ticket, word);
            }
            let next = match self.config.half_open_mode {
                HalfOpenMode::Successes => match probe_failed {
                    None => word.with_probe_settled(false),
                    Some(true) => word.next(State::Open),
                    Some(false) if word.successes() + 1 >= self.config.half_open_successes => {
                        word.next(State::Closed)
                    }
                    Some(false) => word.with_probe_settled(true),
                },
                HalfOpenMode::FailureRate { probes } => {
                    let settled = word
                        .with_rate_probe_settled(outcome.map(|o| (o.is_failure(), o.is_slow())));
                    if settled.rate_settled() < probes {
                        settled
                    } else if self.probes_trip(settled, probes) {
                        word.next(State::Open)
                    } else {
                        word.next(State::Closed)
                    }
                }
            };
            match self.cas(word, next) {
                Ok(()) => break next,
                Err(actual) => word = actual,
            }
        };
        let elapsed = elapsed.map(Duration::from_nanos);
        match outcome {
            Some(outcome) => self.emit(EventKind::Recorded { outcome, elapsed }),
            None => self.emit(EventKind::Ignored),
        }
        match next.state() {
            State::Open => self.after_open(word, next, Cause::ProbeFailed, now),
            State::Closed => self.after_close(word, next, Cause::ProbesSucceeded, true),
            _ => self.note_progress(next, now),
        }
    }

    /// Whether `probes` settled probes (rate layout) meet a closed-state
    /// threshold: failure rate, or slow-call rate when slowness is judged.
    fn probes_trip(&self, word: StateWord, probes: u32) -> bool {
        let rate = |n: u32| f64::from(n) * 100.0 / f64::from(probes);
        self.config
            .failure_rate
            .is_some_and(|t| rate(word.rate_failures()) >= t)
            || self
                .config
                .slow_call_rate
                .is_some_and(|t| rate(word.rate_slow()) >= t)
    }

    /// Moves the half-open progress time forward, if the phase word belongs
    /// to this generation (a lost CAS means someone else just did, or the
    /// generation ended; either way there is nothing to do).
    fn note_progress(&self, word: StateWord, now: Duration) {
        let current = self.phase.load(Acquire);
        if PhaseWord(current).time_for(word.generation()).is_some() {
            let micros = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
            let next = PhaseWord::new(word.generation(), micros).0;
            let _ = self.phase.compare_exchange(current, next, AcqRel, Relaxed);
        }
    }

    /// The side effects of the winner of a trip to `Open`.
    fn after_open(&self, from: StateWord, to: StateWord, cause: Cause, now: Duration) {
        let trips = self.consecutive_trips.fetch_add(1, Relaxed);
        let delay = self.config.backoff.delay(trips, self.rng.next_u64());
        self.publish_phase(to, now.saturating_add(delay));
        self.consecutive_failures.store(0, Relaxed);
        self.emit_transition(from, to, cause);
    }

    /// The side effects of the winner of a move to `Closed` (or
    /// `MetricsOnly`): a fresh window; `healthy` also resets the backoff.
    fn after_close(&self, from: StateWord, to: StateWord, cause: Cause, healthy: bool) {
        self.window.0.clear();
        self.suspect.0.store(false, Relaxed);
        self.consecutive_failures.store(0, Relaxed);
        if healthy {
            self.consecutive_trips.store(0, Relaxed);
        }
        self.emit_transition(from, to, cause);
    }

    fn emit_transition(&self, from: StateWord, to: StateWord, cause: Cause) {
        self.emit(EventKind::StateChanged {
            from: from.state(),
            to: to.state(),
            generation: to.generation(),
            cause,
        });
    }

    #[inline]
    fn emit(&self, kind: EventKind) {
        if self.config.listeners.is_empty() {
            return;
        }
        let event = Event {
            breaker: &self.name,
            kind,
        };
        for listener in self.config.listeners.iter() {
            listener(&event);
        }
    }

    /// Rejects every call until another manual change.
    pub fn force_open(&self) -> Transition {
        self.transition_to(State::ForcedOpen)
    }

    /// Admits every call and records nothing: weft's "forced closed".
    pub fn disable(&self) -> Transition {
        self.transition_to(State::Disabled)
    }

    /// The same as [`disable`](Self::disable): a forced-closed breaker is a
    /// disabled one (it has no window to judge, so it keeps none).
    pub fn force_closed(&self) -> Transition {
        self.disable()
    }

    /// Admits every call and records outcomes, never tripping.
    pub fn metrics_only(&self) -> Transition {
        self.transition_to(State::MetricsOnly)
    }

    /// Back to `Closed` with an empty window and the backoff at its first
    /// step, from any state (a new generation even if already closed).
    pub fn reset(&self) -> Transition {
        self.transition_to(State::Closed)
    }

    fn transition_to(&self, to: State) -> Transition {
        let mut word = self.word();
        let next = loop {
            if word.state() == to && to != State::Closed {
                return Transition::Unchanged(to);
            }
            let next = word.next(to);
            match self.cas(word, next) {
                Ok(()) => break next,
                Err(actual) => word = actual,
            }
        };
        match to {
            State::Closed => self.after_close(word, next, Cause::Manual, true),
            State::MetricsOnly => self.after_close(word, next, Cause::Manual, false),
            _ => self.emit_transition(word, next, Cause::Manual),
        }
        Transition::Moved {
            from: word.state(),
            to,
            generation: next.generation(),
        }
    }

    /// What a dashboard shows: name, metrics and, when open, how long until
    /// a probe is admitted.
    pub fn snapshot(&self) -> Snapshot {
        let metrics = self.metrics();
        let retry_after = (metrics.state == State::Open)
            .then(|| PhaseWord(self.phase.load(Acquire)).time_for(metrics.generation))
            .flatten()
            .map(|until| Duration::from_micros(until).saturating_sub(self.now()));
        Snapshot {
            name: StdArc::clone(&self.name),
            metrics,
            retry_after,
        }
    }

    /// A snapshot of the breaker's state and window.
    pub fn metrics(&self) -> Metrics {
        let word = self.word();
        let counts = self.window.0.counts(|| self.now_nanos());
        Metrics {
            state: word.state(),
            generation: word.generation(),
            failure_rate: counts.failure_rate(),
            slow_call_rate: counts.slow_call_rate(),
            counts,
            consecutive_failures: self.consecutive_failures.load(Relaxed),
            consecutive_trips: self.consecutive_trips.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            half_open_in_flight: self.probes_in_flight(word),
            half_open_successes: match self.config.half_open_mode {
                HalfOpenMode::Successes => word.successes(),
                HalfOpenMode::FailureRate { .. } => word.rate_settled() - word.rate_failures(),
            },
        }
    }
}

impl<C> fmt::Debug for Breaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("state", &self.word())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
