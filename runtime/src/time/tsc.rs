//! Precise readings that are never before the true now, from the CPU's
//! time-stamp counter, for the deadlines of short timeouts.
//!
//! A timeout from `clock::TSC_MIN` (1 ms) to `clock::COARSE_MIN` (2 s)
//! needs `now + d` to within a few µs, and the coarse clock is up to 12 ms off. `Instant::now()` is
//! exact but costs 20–50 ns on the VMs weft is benchmarked on (the vDSO
//! reads the TSC, then scales it under a sequence lock); `rdtsc` alone
//! costs 9–20 ns. A pipeline of resilience policies with a 1 s timeout
//! around a ready future spent about a sixth of its time in that read.
//!
//! # How a TSC reading becomes an `Instant`
//! Each thread keeps an anchor: a TSC reading `a` and an `Instant::now()`
//! taken after it, which is not before the true time at `a`. A later
//! reading `t` within [`ANCHOR_FOR`] of the anchor estimates now as
//! `anchor + (t − a) × rate + SLACK`. The rate (nanoseconds per tick) is
//! measured once per process against `Instant` over at least
//! [`CALIBRATE_OVER`], and accepted only if the two clock pairs it comes
//! from pin it to [`MAX_RATE_ERROR`]. A reading more than [`ANCHOR_FOR`]
//! after the anchor, or before it (another CPU's counter, a counter reset
//! by a suspend), takes a new anchor with `Instant::now()`, which is also
//! that call's answer.
//!
//! [`SLACK`] covers what the estimate can get wrong within one anchor
//! period: the rate's measurement error, `CLOCK_MONOTONIC` being slewed by
//! NTP against the TSC afterwards (the kernel slews by at most 500 ppm
//! plus 500 ppm of frequency correction: 1 µs per ms), and the counters
//! of two CPUs differing when the thread moves between its anchor and a
//! reading. So an estimate is never before the true now and at most
//! `SLACK` plus one `Instant` read after it. A timeout's wheel timer rounds
//! its deadline up to the next millisecond anyway.
//!
//! Each new anchor also checks the thread's previous one: if that one
//! predicts the new reading earlier than the truth by more than twice the
//! slack (the span may be two periods), the counter no longer runs at the
//! measured rate, and no thread takes an anchor again: everything is back
//! on `Instant::now()` within one period.
//!
//! # When it is used
//! On x86_64 when CPUID says the TSC is invariant and the kernel's own
//! clocksource is `tsc` (so the kernel has found the counters in step
//! across CPUs and reads `CLOCK_MONOTONIC` from them itself). Elsewhere,
//! and until the rate is measured, every reading is `Instant::now()`.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        OnceLock,
    },
    time::{Duration, Instant},
};

use crate::runtime::ticks;

/// How long a thread's anchor serves before the next reading takes a new
/// one.
const ANCHOR_FOR: Duration = Duration::from_millis(1);

/// The shortest baseline the rate is measured over.
const CALIBRATE_OVER: Duration = Duration::from_millis(20);

/// The largest relative error of the measured rate that is accepted.
const MAX_RATE_ERROR: f64 = 100e-6;

/// Added to every estimate: 1 µs of NTP slew and 0.1 µs of rate error per
/// 1 ms anchor period, and up to 2.9 µs of counter skew between CPUs.
pub(crate) const SLACK: Duration = Duration::from_micros(4);

/// The widest TSC bracket around an `Instant::now()` a pair is taken
/// from (≈ 8 µs at 2.6 GHz; a thread preempted between the reads makes a
/// far wider one).
const MAX_BRACKET_TICKS: u64 = 20_000;

/// The measured rate, and the origin every estimate is counted from.
#[derive(Clone, Copy, Debug)]
struct Rate {
    /// Estimates are nanoseconds since this instant.
    origin: Instant,
    /// Nanoseconds per tick as a 32.32 fixed-point number.
    mult: u64,
    /// [`ANCHOR_FOR`] in ticks.
    period_ticks: u64,
}

/// A TSC reading and an `Instant` taken after it, in nanoseconds since
/// the rate's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Anchor {
    tsc: u64,
    nanos: u64,
}

/// A TSC bracket `[before, after]` around one `Instant::now()`.
#[derive(Clone, Copy, Debug)]
struct Pair {
    before: u64,
    instant: Instant,
    after: u64,
}

impl Pair {
    /// A pair whose bracket is at most [`MAX_BRACKET_TICKS`] wide, if the
    /// thread is not preempted in the middle of a few tries.
    fn take() -> Option<Pair> {
        (0..4).find_map(|_| {
            let before = ticks::rdtsc();
            let instant = Instant::now();
            let after = ticks::rdtsc();
            (after >= before && after - before <= MAX_BRACKET_TICKS).then_some(Pair {
                before,
                instant,
                after,
            })
        })
    }
}

/// Whether this machine's TSC may be used, and the first clock pair.
static START: OnceLock<Option<Pair>> = OnceLock::new();

/// Set once the rate has been measured.
static RATE: OnceLock<Rate> = OnceLock::new();

/// Cleared for good when a new anchor shows that an old one's estimates
/// ran early by more than the slack (see [`contradicts`]).
static TRUSTED: AtomicBool = AtomicBool::new(true);

thread_local! {
    /// This thread's anchor; a `tsc` of 0 is "none yet" (every reading is
    /// then beyond the period).
    static ANCHOR: Cell<Anchor> = const { Cell::new(Anchor { tsc: 0, nanos: 0 }) };
}

/// The rate measured from two pairs, if they pin it to
/// [`MAX_RATE_ERROR`] and are at least [`CALIBRATE_OVER`] apart.
fn calibrate(first: Pair, second: Pair) -> Option<Rate> {
    let nanos = second.instant.checked_duration_since(first.instant)?;
    if nanos < CALIBRATE_OVER {
        return None;
    }
    let mid = |p: &Pair| p.before / 2 + p.after / 2;
    let ticks = mid(&second).checked_sub(mid(&first))?;
    // Each pair's `Instant` lies somewhere in its bracket: the tick count
    // between the two is known to half of both brackets.
    let uncertainty = ((first.after - first.before) + (second.after - second.before)) / 2 + 1;
    if ticks == 0 || uncertainty as f64 / ticks as f64 > MAX_RATE_ERROR {
        return None;
    }
    let nanos_per_tick = nanos.as_nanos() as f64 / ticks as f64;
    let mult = (nanos_per_tick * 4_294_967_296.0).round();
    // A rate outside 0.01–100 ns per tick (10 MHz–100 GHz) is not a TSC
    // worth trusting.
    if !(0.01..=100.0).contains(&nanos_per_tick) {
        return None;
    }
    Some(Rate {
        origin: first.instant,
        mult: mult as u64,
        period_ticks: (ANCHOR_FOR.as_nanos() as f64 / nanos_per_tick) as u64,
    })
}

/// The estimate of now at `tsc` from `anchor`, in nanoseconds since the
/// origin and without [`SLACK`], or `None` when `tsc` is not within the
/// anchor's period after it.
#[inline]
fn estimate(rate: &Rate, anchor: Anchor, tsc: u64) -> Option<u64> {
    let delta = tsc.wrapping_sub(anchor.tsc);
    if delta > rate.period_ticks {
        return None;
    }
    // `period_ticks × mult` is about 2^52 (1 ms in ns times 2^32): no
    // overflow.
    Some(anchor.nanos + ((u128::from(delta) * u128::from(rate.mult)) >> 32) as u64)
}

/// Whether the TSC is invariant and the kernel reads its clock from it.
fn usable() -> bool {
    ticks::invariant_tsc()
        && std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|source| source.trim() == "tsc")
}

/// `now + after`, never before the true now plus `after` (see the module
/// doc), or `None` if it does not fit in an `Instant`.
#[inline]
pub(crate) fn now_plus(after: Duration) -> Option<Instant> {
    if let Some(rate) = RATE.get() {
        let anchor = ANCHOR.get();
        if let Some(nanos) = estimate(rate, anchor, ticks::rdtsc()) {
            let offset = nanos
                .checked_add(SLACK.as_nanos() as u64)?
                .checked_add(after.as_secs().checked_mul(1_000_000_000)?)?
                .checked_add(u64::from(after.subsec_nanos()))?;
            return rate.origin.checked_add(Duration::from_nanos(offset));
        }
    }
    reanchor().checked_add(after)
}

/// Decides whether the TSC may be used (CPUID and the kernel's
/// clocksource, read from `/sys`) and takes the first clock pair. Called
/// when a runtime is built, so that the one file read happens there and
/// not in the middle of a task (where a test or a user counting open fds
/// could see it); later calls do nothing.
pub(crate) fn init() {
    start();
}

fn start() -> &'static Option<Pair> {
    START.get_or_init(|| usable().then(Pair::take).flatten())
}

/// `Instant::now()`, taking a new anchor for this thread (or measuring the
/// rate first, when it is not yet known).
#[cold]
fn reanchor() -> Instant {
    let Some(start) = start() else {
        return Instant::now();
    };
    let Some(pair) = Pair::take() else {
        return Instant::now();
    };
    let rate = match RATE.get() {
        Some(rate) => rate,
        None => match calibrate(*start, pair) {
            // Two threads may measure at once: the first to set it wins,
            // and both rates are within the accepted error.
            Some(rate) => RATE.get_or_init(|| rate),
            None => return pair.instant,
        },
    };
    if !TRUSTED.load(Relaxed) {
        return pair.instant;
    }
    let Some(since) = pair.instant.checked_duration_since(rate.origin) else {
        return pair.instant;
    };
    let anchor = Anchor {
        // The `Instant` was read after `before`: the anchor errs late.
        tsc: pair.before,
        nanos: since.as_nanos() as u64,
    };
    if contradicts(rate, ANCHOR.get(), anchor, pair.after - pair.before) {
        // The counter no longer runs at the measured rate (a VM moved to
        // another host, a kernel that stopped trusting it): no new anchors
        // anywhere, so every thread is back on `Instant` within a period.
        TRUSTED.store(false, Relaxed);
        ANCHOR.set(Anchor { tsc: 0, nanos: 0 });
        return pair.instant;
    }
    ANCHOR.set(anchor);
    pair.instant
}

/// True if `old` (taken at most two periods before `new`) predicted the
/// time of `new` earlier than the truth by more than the slack allows over
/// that span: the estimates it served may have been early. `bracket` is
/// the width of `new`'s pair in ticks: the true time at `new.tsc` is at
/// least `new.nanos` minus it.
fn contradicts(rate: &Rate, old: Anchor, new: Anchor, bracket: u64) -> bool {
    let delta = new.tsc.wrapping_sub(old.tsc);
    if old.tsc == 0 || delta == 0 || delta > 2 * rate.period_ticks {
        return false;
    }
    let scale = |ticks: u64| ((u128::from(ticks) * u128::from(rate.mult)) >> 32) as u64;
    let predicted = old.nanos + scale(delta);
    let earliest = new.nanos.saturating_sub(scale(bracket));
    predicted + 2 * (SLACK.as_nanos() as u64) < earliest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate() -> Rate {
        Rate {
            origin: Instant::now(),
            // 0.5 ns per tick (a 2 GHz counter).
            mult: 1 << 31,
            period_ticks: 2_000_000,
        }
    }

    #[test]
    fn an_estimate_scales_ticks_within_the_anchor_period_only() {
        let rate = rate();
        let anchor = Anchor {
            tsc: 1_000_000,
            nanos: 7_000,
        };
        assert_eq!(estimate(&rate, anchor, 1_000_000), Some(7_000));
        assert_eq!(estimate(&rate, anchor, 1_000_100), Some(7_050));
        assert_eq!(estimate(&rate, anchor, 3_000_000), Some(1_007_000));
        // Beyond the period, or behind the anchor (another CPU's counter,
        // a reset): no estimate, so the caller reads `Instant` again.
        assert_eq!(estimate(&rate, anchor, 3_000_001), None);
        assert_eq!(estimate(&rate, anchor, 999_999), None);
        // A thread with no anchor yet.
        let none = Anchor { tsc: 0, nanos: 0 };
        assert_eq!(estimate(&rate, none, u64::MAX / 2), None);
    }

    #[test]
    fn an_anchor_that_ran_early_is_caught() {
        let rate = rate();
        let old = Anchor {
            tsc: 1_000_000,
            nanos: 7_000,
        };
        // 1 ms later by the counter (2 M ticks at 0.5 ns).
        let at = |nanos| Anchor {
            tsc: 2_000_000 + 1_000_000,
            nanos,
        };
        // The prediction, 1_007_000 ns: consistent, and late is harmless.
        assert!(!contradicts(&rate, old, at(1_007_000), 100));
        assert!(!contradicts(&rate, old, at(900_000), 100));
        // Early by up to twice the slack (plus the bracket): tolerated.
        assert!(!contradicts(&rate, old, at(1_015_000), 100));
        assert!(!contradicts(&rate, old, at(1_015_050), 100));
        // Early by more: the counter's rate changed.
        assert!(contradicts(&rate, old, at(1_015_051), 100));
        assert!(contradicts(&rate, old, at(1_100_000), 100));
        // Not judged: no old anchor, or one more than two periods back.
        assert!(!contradicts(
            &rate,
            Anchor { tsc: 0, nanos: 0 },
            at(9_000_000),
            100
        ));
        let far = Anchor {
            tsc: old.tsc + 4_000_001,
            nanos: 9_000_000,
        };
        assert!(!contradicts(&rate, old, far, 100));
    }

    #[test]
    fn a_rate_needs_a_long_baseline_and_tight_brackets() {
        let t0 = Instant::now();
        let pair = |at: Duration, tsc: u64, bracket: u64| Pair {
            before: tsc,
            instant: t0 + at,
            after: tsc + bracket,
        };
        let first = pair(Duration::ZERO, 1_000, 100);
        // 2 ticks per ns over 20 ms.
        let rate = calibrate(first, pair(Duration::from_millis(20), 40_001_000, 100)).unwrap();
        assert_eq!(rate.origin, t0);
        assert_eq!(rate.mult, 1 << 31);
        assert_eq!(rate.period_ticks, 2_000_000);
        // Too short a baseline.
        assert!(calibrate(first, pair(Duration::from_millis(19), 38_001_000, 100)).is_none());
        // A bracket that leaves the rate uncertain by more than 100 ppm.
        assert!(calibrate(first, pair(Duration::from_millis(20), 40_001_000, 20_000)).is_none());
        // Pairs out of order, or a counter that did not move.
        assert!(calibrate(pair(Duration::from_millis(20), 40_001_000, 100), first).is_none());
        assert!(calibrate(first, pair(Duration::from_millis(20), 1_000, 100)).is_none());
    }

    /// Readings on several threads, spread over whole anchor periods and
    /// across sleeps, are never before `Instant::now()` taken just before
    /// them and at most [`SLACK`] (plus the reads' own time) after the one
    /// taken just after. A rate 1% off fails it within one period.
    #[test]
    fn readings_bracket_the_precise_clock() {
        let threads: Vec<_> = (0..3)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut late_max = Duration::ZERO;
                    let start = Instant::now();
                    let mut naps = 0;
                    while start.elapsed() < Duration::from_millis(60) {
                        if start.elapsed() > Duration::from_millis(10 * naps + t) {
                            naps += 1;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        let before = Instant::now();
                        let reading = now_plus(Duration::ZERO).unwrap();
                        let after = Instant::now();
                        assert!(reading >= before, "{:?} early", before - reading);
                        late_max = late_max.max(reading.saturating_duration_since(after));
                    }
                    late_max
                })
            })
            .collect();
        for thread in threads {
            let late = thread.join().unwrap();
            assert!(late <= SLACK + Duration::from_micros(20), "{late:?} late");
        }
        if usable() {
            // By now the 20 ms baseline has passed: the TSC path is in use.
            assert!(RATE.get().is_some(), "the rate was never measured");
            // And no anchor contradicted an earlier one on a sound counter.
            assert!(TRUSTED.load(Relaxed), "the TSC path turned itself off");
        }
    }

    #[test]
    fn a_deadline_that_does_not_fit_is_none() {
        assert_eq!(now_plus(Duration::MAX), None);
        let d = Duration::from_millis(250);
        let before = Instant::now();
        let deadline = now_plus(d).unwrap();
        assert!(deadline >= before + d);
    }
}
