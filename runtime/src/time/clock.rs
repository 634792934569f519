//! Cheap readings of the monotonic clock, for deadlines far away.
//!
//! `Instant::now()` (`CLOCK_MONOTONIC` through the vDSO) costs 20–65 ns on
//! the VMs weft is benchmarked on, which made a spawn with
//! `task::Builder::timeout` ~30% dearer than a plain spawn, and a
//! `timeout(d, fut)` read the clock twice. `CLOCK_MONOTONIC_COARSE` counts
//! the same timeline for ~3 ns, in steps of one kernel tick (1–4 ms).
//!
//! # How a coarse reading becomes an `Instant`
//! Once per process we read the precise clock, the coarse clock and the
//! precise clock again, keeping a pair whose two precise reads are close
//! (`spread`). The coarse reading `c0` then lies in `(t0 - res - spread,
//! t0]`, where `t0` is the second precise read and `res` the tick. A later
//! coarse reading `c` lies in `(t - res, t]` for the true time `t`, so
//! `t0 + (c - c0)` is within `(t - res, t + res + spread)`. Adding or
//! subtracting that slack gives an `Instant` that is certainly not before,
//! or certainly not after, the true now.
//!
//! That holds when every tick lands on time, and they don't: on the 2-vCPU
//! VM weft is benchmarked on, the coarse clock was seen up to 5.9 ms behind
//! the precise one with a 4 ms tick (a tick handled late on a busy or
//! idle-tickless CPU; a VM's stolen time delays it further). So the slack
//! used is twice the tick, and **nothing that must not stall trusts it**:
//! a wrong "certainly before" only makes a deadline check late by the
//! excess (the deadline's wheel timer still fires on the precise clock),
//! or a far timeout early by it. (A `Sleep` that answered polls from the
//! coarse clock instead of asking its wheel entry whether it had fired
//! once missed a firing this way and never woke again; see
//! `Sleep::poll_elapsed`.)
//!
//! # Where it is used
//! - [`deadline_after`]: deadlines of timeouts (`time::timeout`,
//!   `task::Builder::timeout`, `cancel::shield`) of at least
//!   [`COARSE_MIN`] come from the coarse clock. Such a deadline is never
//!   earlier than `now + d` (while ticks are at most one late), and at
//!   most `3 × res + spread` later (≈ 12 ms with 4 ms ticks, 0.6% of 2 s). Timeouts from [`TSC_MIN`] (1 ms) up take
//!   theirs from `tsc`: the TSC scaled from a per-thread `Instant` anchor,
//!   never early and at most a few µs late (or `Instant::now()` where the
//!   TSC is not used). Shorter timeouts and `sleep` read `Instant::now()`.
//! - [`certainly_before`]: a sleep's first poll, and a checkpoint in a
//!   scope with a deadline, skip the precise read when the coarse one
//!   already proves the deadline is ahead.
//!
//! Without a usable coarse clock (resolution above 10 ms, or the call
//! fails) everything falls back to `Instant::now()`.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

/// Timeouts at least this long take their deadline from the coarse clock.
pub(crate) const COARSE_MIN: Duration = Duration::from_secs(2);

/// Timeouts at least this long (and shorter than [`COARSE_MIN`]) take
/// their deadline from the TSC (`tsc.rs`), up to its few µs of slack late:
/// under 0.4% of such a timeout, and below the wheel's 1 ms tick. Shorter
/// ones, down to `timeout(Duration::ZERO, ..)`, read `Instant::now()`, so
/// a zero timeout has passed at its first poll.
pub(crate) const TSC_MIN: Duration = Duration::from_millis(1);

/// A coarse clock coarser than this is not used.
const MAX_RESOLUTION: Duration = Duration::from_millis(10);

/// The most the two precise reads around the pairing may be apart.
const MAX_SPREAD: Duration = Duration::from_micros(50);

/// Times kept in nanoseconds: the hot path (a spawn with a timeout) then
/// sums integers and converts once, where `Duration` arithmetic normalised
/// and checked at each step.
struct Base {
    /// The precise read after the coarse one.
    instant: Instant,
    /// The coarse reading, in nanoseconds since the clock's epoch.
    coarse: u64,
    /// `2 × res` in nanoseconds: how far the estimate is taken to lag
    /// behind the truth (one tick, and one more for a tick handled late; it
    /// may run ahead by `res + spread`, at most `res + MAX_SPREAD`).
    behind: u64,
}

static BASE: OnceLock<Option<Base>> = OnceLock::new();

/// The clock's reading in nanoseconds (a monotonic clock counts from boot:
/// 584 years fit).
#[inline]
fn read(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    (ts.tv_sec as u64)
        .checked_mul(1_000_000_000)?
        .checked_add(ts.tv_nsec as u64)
}

fn resolution() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

fn base() -> Option<&'static Base> {
    BASE.get_or_init(|| {
        let res = resolution().filter(|r| *r <= MAX_RESOLUTION)?;
        // A few tries for a pair whose precise reads are close (the thread
        // may be preempted between them); give up rather than use a wide one.
        for _ in 0..16 {
            let before = Instant::now();
            let coarse = read(libc::CLOCK_MONOTONIC_COARSE)?;
            let instant = Instant::now();
            let spread = instant - before;
            if spread <= MAX_SPREAD {
                return Some(Base {
                    instant,
                    coarse,
                    behind: u64::try_from(2 * res.as_nanos()).ok()?,
                });
            }
        }
        None
    })
    .as_ref()
}

/// The coarse clock's advance since the base was taken, in nanoseconds,
/// and the base.
#[inline]
fn since_base() -> Option<(u64, &'static Base)> {
    let base = base()?;
    let coarse = read(libc::CLOCK_MONOTONIC_COARSE)?;
    // The coarse clock is monotonic, so `coarse >= base.coarse`.
    Some((coarse.saturating_sub(base.coarse), base))
}

/// The coarse estimate of now, and the base it was made from.
fn estimate() -> Option<(Instant, &'static Base)> {
    since_base().map(|(since, base)| (base.instant + Duration::from_nanos(since), base))
}

/// An instant not before the true now while ticks are at most one late
/// (at most `3 × res + spread` after it), or `None` without a coarse clock.
fn now_at_least() -> Option<Instant> {
    estimate().map(|(now, base)| now + Duration::from_nanos(base.behind))
}

/// `now + duration`, never earlier; from the coarse clock when `duration`
/// is at least [`COARSE_MIN`] (see the module doc for how much later).
/// `None` if it does not fit in an `Instant`.
#[inline]
pub(crate) fn deadline_after(duration: Duration) -> Option<Instant> {
    if duration >= COARSE_MIN {
        if let Some((since, base)) = since_base() {
            // `now_at_least() + duration`, with the offsets summed as
            // nanoseconds and one `Instant` addition (each `Instant`
            // addition normalises and checks a timespec; a spawn with a
            // timeout paid for three).
            let nanos = duration
                .as_secs()
                .checked_mul(1_000_000_000)?
                .checked_add(u64::from(duration.subsec_nanos()))?;
            let offset = since.checked_add(base.behind)?.checked_add(nanos)?;
            return base.instant.checked_add(Duration::from_nanos(offset));
        }
    }
    if duration >= TSC_MIN {
        return super::tsc::now_plus(duration);
    }
    Instant::now().checked_add(duration)
}

/// The coarse monotonic clock (`CLOCK_MONOTONIC_COARSE` on Linux): time
/// since an unspecified origin (the boot), advancing once per kernel tick
/// (1–4 ms) and costing a few nanoseconds with nothing shared written.
///
/// This is the reading the runtime's far deadlines are taken from; it is
/// public so that code built on weft (`weft-resilience`'s default clock)
/// reads the same clock rather than a second one. Only differences between
/// two readings mean anything. Where the coarse clock is unusable (the call
/// fails), it falls back to `Instant` measured from the first call, so it
/// never goes backwards either way.
#[inline]
pub fn coarse_now() -> Duration {
    match read(libc::CLOCK_MONOTONIC_COARSE) {
        Some(nanos) => Duration::from_nanos(nanos),
        None => precise_fallback(),
    }
}

/// [`coarse_now`] in nanoseconds, without building a `Duration` (its
/// division by 10⁹ and the multiplication back cost a hot path that times
/// calls in integers a dozen instructions per reading). Saturates after
/// 584 years of uptime.
#[inline]
pub fn coarse_now_nanos() -> u64 {
    match read(libc::CLOCK_MONOTONIC_COARSE) {
        Some(nanos) => nanos,
        None => u64::try_from(precise_fallback().as_nanos()).unwrap_or(u64::MAX),
    }
}

#[cold]
fn precise_fallback() -> Duration {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// The resolution of [`coarse_now`]: the kernel tick as the kernel reports
/// it (1 ns on the `Instant` fallback).
pub fn coarse_resolution() -> Duration {
    if read(libc::CLOCK_MONOTONIC_COARSE).is_none() {
        return Duration::from_nanos(1);
    }
    resolution().unwrap_or(Duration::from_millis(4))
}

/// True if `deadline` is certainly still ahead, judged by the coarse
/// clock. False means "maybe not": read the precise clock.
pub(crate) fn certainly_before(deadline: Instant) -> bool {
    now_at_least().is_some_and(|now| now < deadline)
}

/// [`certainly_before`] in integers, for a caller that already has its
/// deadline as nanoseconds since an `origin` of its own (the timer wheel):
/// the coarse reading plus a shift fixed once, instead of two `Instant`
/// additions per question.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CoarseFrame {
    /// `now_at_least()` in ns since `origin` is the coarse reading plus
    /// this: `(base.instant - origin) + base.behind - base.coarse`.
    shift: i128,
}

impl CoarseFrame {
    /// The frame for `origin`, or `None` without a usable coarse clock.
    pub(crate) fn new(origin: Instant) -> Option<CoarseFrame> {
        let base = base()?;
        let base_since_origin = match base.instant.checked_duration_since(origin) {
            Some(d) => d.as_nanos() as i128,
            None => -(origin.duration_since(base.instant).as_nanos() as i128),
        };
        Some(CoarseFrame {
            shift: base_since_origin + i128::from(base.behind) - i128::from(base.coarse),
        })
    }

    /// True if `deadline_ns` (ns since the frame's origin) is certainly
    /// still ahead; false means "maybe not". As [`certainly_before`].
    #[inline]
    pub(crate) fn certainly_before(&self, deadline_ns: u64) -> bool {
        read(libc::CLOCK_MONOTONIC_COARSE)
            .is_some_and(|coarse| i128::from(coarse) + self.shift < i128::from(deadline_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_nanos_read_the_same_clock_as_coarse_now() {
        for _ in 0..1000 {
            let a = coarse_now();
            let n = coarse_now_nanos();
            let b = coarse_now();
            assert!(a.as_nanos() <= u128::from(n) && u128::from(n) <= b.as_nanos());
        }
    }

    #[test]
    fn the_coarse_estimate_brackets_the_precise_clock() {
        let Some(base) = base() else {
            // No usable coarse clock here: the callers fall back.
            return;
        };
        for _ in 0..10_000 {
            let before = Instant::now();
            let (estimate, _) = estimate().unwrap();
            let after = Instant::now();
            let behind = Duration::from_nanos(base.behind);
            assert!(
                estimate + behind >= before,
                "the upper bound is never before the truth"
            );
            assert!(
                estimate <= after + behind + MAX_SPREAD,
                "the estimate runs ahead by at most 2 res + spread"
            );
        }
    }

    #[test]
    fn far_deadlines_are_never_early_and_only_ticks_late() {
        for secs in [2, 60, 3600] {
            let d = Duration::from_secs(secs);
            let before = Instant::now();
            let deadline = deadline_after(d).unwrap();
            let after = Instant::now();
            assert!(deadline >= before + d, "never early");
            let late = deadline.saturating_duration_since(after + d);
            assert!(late <= Duration::from_millis(25), "{late:?} late");
        }
    }

    #[test]
    fn coarse_now_is_monotonic_and_ticks() {
        let res = coarse_resolution();
        assert!(
            res > Duration::ZERO && res <= Duration::from_millis(10),
            "{res:?}"
        );
        let a = coarse_now();
        std::thread::sleep(Duration::from_millis(20));
        // The kernel's tick moves the coarse clock; on a loaded machine
        // (or a descheduled vCPU) it can come several ticks late, so the
        // clock is read until it has caught up, for up to a second.
        let want = a + Duration::from_millis(20) - res;
        let give_up = Instant::now() + Duration::from_secs(1);
        let mut b = coarse_now();
        while b < want && Instant::now() < give_up {
            assert!(coarse_now() >= b, "monotonic");
            std::thread::sleep(Duration::from_millis(1));
            b = coarse_now();
        }
        assert!(b >= want, "{a:?} {b:?}");
    }

    #[test]
    fn near_deadlines_use_the_precise_clock() {
        // Under `TSC_MIN`: exactly `Instant::now() + d`, so a zero
        // timeout has passed at once.
        for d in [Duration::ZERO, Duration::from_micros(999)] {
            let before = Instant::now();
            let deadline = deadline_after(d).unwrap();
            let after = Instant::now();
            assert!(deadline >= before + d && deadline <= after + d, "{d:?}");
        }
        let d = Duration::from_millis(5);
        let before = Instant::now();
        let deadline = deadline_after(d).unwrap();
        let after = Instant::now();
        assert!(deadline >= before + d, "never early");
        assert!(deadline <= after + d + super::super::tsc::SLACK + Duration::from_micros(20));
        assert_eq!(deadline_after(Duration::MAX), None);
    }

    /// The integer frame answers as `certainly_before` does, up to the
    /// nanoseconds the two computations round differently.
    #[test]
    fn the_frame_agrees_with_certainly_before() {
        let origin = Instant::now() - Duration::from_millis(50);
        let Some(frame) = CoarseFrame::new(origin) else {
            return;
        };
        let ns = |i: Instant| i.duration_since(origin).as_nanos() as u64;
        let now = Instant::now();
        assert!(!frame.certainly_before(ns(now)), "now is not ahead");
        assert!(!frame.certainly_before(ns(now - Duration::from_millis(10))));
        assert!(frame.certainly_before(ns(now + Duration::from_secs(1))));
        for ms in [0u64, 1, 5, 9, 20, 100] {
            let d = Instant::now() + Duration::from_millis(ms);
            let (a, b) = (certainly_before(d), frame.certainly_before(ns(d)));
            if a != b {
                // Only a deadline within a few µs of the bound may differ.
                let bound = now_at_least().unwrap();
                let gap = if d > bound { d - bound } else { bound - d };
                assert!(gap < Duration::from_micros(50), "{ms} ms: {a} vs {b}");
            }
        }
        // An origin after the clock's base (the wheel is made after it).
        let later = CoarseFrame::new(Instant::now()).unwrap();
        assert!(!later.certainly_before(0));
    }

    #[test]
    fn certainly_before_never_claims_a_passed_deadline() {
        let now = Instant::now();
        assert!(!certainly_before(now));
        assert!(!certainly_before(now - Duration::from_millis(1)));
        if base().is_some() {
            assert!(certainly_before(now + Duration::from_secs(1)));
        }
    }
}
