//! Time as a trait, so every time-driven behaviour can be tested without
//! sleeping.
//!
//! A [`Clock`] reports a monotonic [`Duration`] since an origin of its own
//! choosing; only differences between two readings of the same clock mean
//! anything. [`SystemClock`] reads the operating system's monotonic clock
//! (by default its cheap, coarse variant; see [`SystemClock::new`]);
//! [`ManualClock`] moves only when a test [`advance`](ManualClock::advance)s
//! it, and its clones share one time, so a test keeps one handle and gives
//! another to the breaker.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// A monotonic source of time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since this clock's origin. Never goes backwards.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock, measured from the moment the clock was
/// created.
///
/// Two flavours:
///
/// * [`SystemClock::new`] (the default, and what a breaker's default config
///   uses) is **coarse**: on Linux it reads `CLOCK_MONOTONIC_COARSE`, which
///   the vDSO serves from the time the kernel stored at its last tick — a
///   couple of nanoseconds and no shared-cache-line traffic, but it advances
///   only once per tick: a resolution of 1–4 ms (`1 / CONFIG_HZ`; see
///   [`resolution`](SystemClock::resolution)). That is ample for what a
///   breaker times: slow-call thresholds (typically 100 ms or more), open
///   durations and time windows. A call is judged slow only when the clock
///   has moved by the threshold, so a threshold within a tick or two of a
///   call's real duration may be judged either way. Elsewhere it is
///   [`Instant`].
/// * [`SystemClock::precise`] reads [`Instant`] (`CLOCK_MONOTONIC`):
///   nanosecond resolution, at the cost of a full clock read (tens of
///   nanoseconds in a VM) on every call.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Origin,
}

#[derive(Debug, Clone, Copy)]
enum Origin {
    /// The coarse clock's reading at creation, in nanoseconds.
    #[cfg(target_os = "linux")]
    Coarse(u64),
    Precise(Instant),
}

impl SystemClock {
    /// A coarse clock (resolution of a kernel tick, 1–4 ms; see the type's
    /// docs) whose origin is now. The default.
    pub fn new() -> SystemClock {
        #[cfg(target_os = "linux")]
        {
            SystemClock {
                origin: Origin::Coarse(coarse_nanos()),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            SystemClock::precise()
        }
    }

    /// A clock reading [`Instant`] (nanosecond resolution, dearer to read)
    /// whose origin is now.
    pub fn precise() -> SystemClock {
        SystemClock {
            origin: Origin::Precise(Instant::now()),
        }
    }

    /// How far apart two distinct readings of this clock are at least: the
    /// kernel tick for the coarse clock, as the kernel reports it.
    pub fn resolution(&self) -> Duration {
        match self.origin {
            #[cfg(target_os = "linux")]
            Origin::Coarse(_) => coarse_resolution(),
            Origin::Precise(_) => Duration::from_nanos(1),
        }
    }
}

/// Reads `CLOCK_MONOTONIC_COARSE` through the runtime, so a process has one
/// coarse clock reader, not two (`weft::time::coarse_now_nanos`).
#[cfg(all(target_os = "linux", feature = "weft"))]
#[inline(always)]
fn coarse_nanos() -> u64 {
    weft::time::coarse_now_nanos()
}

/// Reads `CLOCK_MONOTONIC_COARSE` in nanoseconds.
#[cfg(all(target_os = "linux", not(feature = "weft")))]
#[inline(always)]
fn coarse_nanos() -> u64 {
    nanos_of(coarse_now())
}

/// The resolution of the runtime's coarse clock.
#[cfg(all(target_os = "linux", feature = "weft"))]
fn coarse_resolution() -> Duration {
    weft::time::coarse_resolution()
}

/// Reads `CLOCK_MONOTONIC_COARSE`.
#[cfg(all(target_os = "linux", not(feature = "weft")))]
#[inline]
fn coarse_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` that outlives the call;
    // `clock_gettime` writes only through that pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    // CLOCK_MONOTONIC_COARSE exists on every kernel since 2.6.32 and the
    // pointer is valid, so the call cannot fail; were it to, `ts` stays zero
    // and the clock stands still rather than going backwards.
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC_COARSE) failed");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The resolution of `CLOCK_MONOTONIC_COARSE`.
#[cfg(all(target_os = "linux", not(feature = "weft")))]
fn coarse_resolution() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `coarse_now`: a valid, writable `timespec` for the call.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return Duration::from_millis(4); // the coarsest common tick (HZ=250)
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    // Always: it is two clock reads of every timed breaker call, and out of
    // line it showed as its own 11% in the time-window bench's profile.
    #[inline(always)]
    fn now(&self) -> Duration {
        match self.origin {
            #[cfg(target_os = "linux")]
            Origin::Coarse(origin) => Duration::from_nanos(coarse_nanos().saturating_sub(origin)),
            Origin::Precise(origin) => origin.elapsed(),
        }
    }
}

impl SystemClock {
    /// [`now`](Clock::now) in nanoseconds: the coarse reading minus the
    /// origin as integers (no `Duration` normalised on the way), for the
    /// hot paths that time calls.
    #[inline(always)]
    fn nanos(&self) -> u64 {
        match self.origin {
            #[cfg(target_os = "linux")]
            Origin::Coarse(origin) => coarse_nanos().saturating_sub(origin),
            Origin::Precise(origin) => nanos_of(origin.elapsed()),
        }
    }
}

/// One reading of the system's coarse clock for the layers of one pipeline
/// call: the first layer on the default [`SystemClock`] that needs the time
/// reads the clock, the others reuse that reading (each against its own
/// origin). A layer with a custom [`Clock`] ignores it and reads its own:
/// simulated time stays exact. Made only by the pipeline; a limiter
/// implementing [`Admission`](crate::policy::Admission) may ignore it.
#[derive(Debug, Default)]
pub struct SharedNow {
    /// The absolute coarse reading, once taken.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    raw: std::cell::Cell<Option<u64>>,
}

impl SharedNow {
    /// Nothing read yet.
    #[inline]
    pub(crate) fn new() -> SharedNow {
        SharedNow::default()
    }

    /// The coarse clock's reading in nanoseconds (its own origin), read on
    /// the first call.
    #[cfg(target_os = "linux")]
    #[inline(always)]
    fn raw(&self) -> u64 {
        match self.raw.get() {
            Some(raw) => raw,
            None => {
                let raw = coarse_nanos();
                self.raw.set(Some(raw));
                raw
            }
        }
    }
}

impl SystemClock {
    /// [`nanos`](SystemClock::nanos) from the shared reading.
    #[inline(always)]
    fn nanos_shared(&self, shared: &SharedNow) -> u64 {
        let _ = shared;
        match self.origin {
            #[cfg(target_os = "linux")]
            Origin::Coarse(origin) => shared.raw().saturating_sub(origin),
            Origin::Precise(origin) => nanos_of(origin.elapsed()),
        }
    }
}

/// `duration` in nanoseconds, saturated (584 years fit).
#[inline(always)]
pub(crate) fn nanos_of(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(duration.subsec_nanos()))
}

/// The clock a breaker or limiter reads: the default [`SystemClock`] held by value, so
/// the two reads of a timed call are inlined rather than virtual calls, or
/// whatever a builder's `clock` was given.
#[derive(Clone)]
pub(crate) enum ClockSource {
    System(SystemClock),
    Custom(Arc<dyn Clock>),
}

impl ClockSource {
    #[inline]
    pub(crate) fn now(&self) -> Duration {
        match self {
            ClockSource::System(clock) => clock.now(),
            ClockSource::Custom(clock) => clock.now(),
        }
    }
}

impl fmt::Debug for ClockSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockSource::System(clock) => clock.fmt(f),
            ClockSource::Custom(clock) => clock.fmt(f),
        }
    }
}

impl ClockSource {
    /// Whether readings stand still between ticks (the default coarse
    /// system clock): many calls then share one reading.
    pub(crate) fn is_coarse(&self) -> bool {
        match self {
            ClockSource::System(clock) => clock.resolution() > Duration::from_nanos(1),
            ClockSource::Custom(_) => false,
        }
    }

    /// Now in nanoseconds since the clock's origin (584 years fit).
    #[inline]
    pub(crate) fn nanos(&self) -> u64 {
        match self {
            ClockSource::System(clock) => clock.nanos(),
            ClockSource::Custom(clock) => nanos_of(clock.now()),
        }
    }

    /// [`nanos`](Self::nanos), from `shared` when this is the system
    /// clock; a custom clock is read itself (see [`SharedNow`]).
    #[inline(always)]
    pub(crate) fn nanos_shared(&self, shared: &SharedNow) -> u64 {
        match self {
            ClockSource::System(clock) => clock.nanos_shared(shared),
            ClockSource::Custom(clock) => nanos_of(clock.now()),
        }
    }
}

impl Default for ClockSource {
    fn default() -> ClockSource {
        ClockSource::System(SystemClock::new())
    }
}

/// A clock that stands still until told to move. Clones share the same time.
#[derive(Clone, Default)]
pub struct ManualClock {
    // The clock is test scaffolding, not part of any lock-free protocol, so
    // it uses std's atomics even under loom (loom only sees what we model).
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: the clock orders nothing but itself; readers only need to
        // see some value that never goes backwards, which RMW guarantees.
        let _ = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock to `to` if that is later than now; a clock never goes
    /// backwards, so an earlier `to` is ignored.
    pub fn set(&self, to: Duration) {
        let to = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(to, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_by_clones() {
        let clock = ManualClock::new();
        let other = clock.clone();
        assert_eq!(other.now(), Duration::ZERO);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(other.now(), Duration::from_millis(1500));
    }

    #[test]
    fn manual_clock_never_goes_backwards() {
        let clock = ManualClock::new();
        clock.set(Duration::from_secs(5));
        clock.set(Duration::from_secs(2));
        assert_eq!(clock.now(), Duration::from_secs(5));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn system_clock_is_monotonic() {
        for clock in [SystemClock::new(), SystemClock::precise()] {
            let a = clock.now();
            let b = clock.now();
            assert!(b >= a);
        }
    }

    /// Reads `clock` until it shows at least `at_least`, for up to a
    /// second of wall time; the last reading. The coarse clock is moved
    /// by the kernel's tick, which a loaded machine (or a VM whose vCPU
    /// is descheduled) can deliver several ticks late: a reading right
    /// after a sleep may lag it by more than one resolution.
    fn read_until(clock: &SystemClock, at_least: Duration) -> Duration {
        let give_up = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            let now = clock.now();
            if now >= at_least || std::time::Instant::now() >= give_up {
                return now;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn system_clocks_advance_within_their_resolution() {
        for clock in [SystemClock::new(), SystemClock::precise()] {
            let resolution = clock.resolution();
            assert!(resolution > Duration::ZERO);
            assert!(resolution <= Duration::from_millis(10), "{resolution:?}");
            let a = clock.now();
            std::thread::sleep(Duration::from_millis(20));
            // Slept 20 ms: the clock shows it, less one tick, once the
            // kernel's tick has caught up.
            let b = read_until(&clock, a + Duration::from_millis(20) - resolution);
            assert!(
                b >= a + Duration::from_millis(20) - resolution,
                "{a:?} {b:?}"
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_shared_reading_is_taken_once_and_read_against_each_clock_s_origin() {
        let early_clock = SystemClock::new();
        std::thread::sleep(Duration::from_millis(30));
        let late_clock = SystemClock::new();
        let (Origin::Coarse(early_origin), Origin::Coarse(late_origin)) =
            (early_clock.origin, late_clock.origin)
        else {
            panic!("SystemClock::new() is the coarse clock");
        };
        // 30 ms apart, less what a late kernel tick can hold back (see
        // `read_until`), but never the same tick.
        assert!(late_origin > early_origin, "{early_origin} {late_origin}");
        let early = ClockSource::System(early_clock);
        let late = ClockSource::System(late_clock);
        let shared = SharedNow::new();
        let (e, l) = (early.nanos_shared(&shared), late.nanos_shared(&shared));
        // The same instant, each against its own origin: the earlier clock
        // is ahead by exactly the distance between the origins.
        assert_eq!(e - l, late_origin - early_origin, "{e} {l}");
        // Read once: later readers get the same instant, however late,
        // while the clock itself moves on.
        std::thread::sleep(Duration::from_millis(30));
        read_until(
            &early_clock,
            Duration::from_nanos(e) + Duration::from_millis(20),
        );
        assert_eq!(early.nanos_shared(&shared), e);
        assert!(early.nanos() >= e + 20_000_000, "{e}");
    }

    #[test]
    fn a_custom_clock_ignores_the_shared_reading() {
        let manual = ManualClock::new();
        let custom = ClockSource::Custom(Arc::new(manual.clone()));
        let system = ClockSource::System(SystemClock::new());
        let shared = SharedNow::new();
        let _ = system.nanos_shared(&shared);
        manual.advance(Duration::from_millis(7));
        assert_eq!(custom.nanos_shared(&shared), 7_000_000);
        manual.advance(Duration::from_millis(5));
        assert_eq!(custom.nanos_shared(&shared), 12_000_000, "read again");
    }
}
