//! The clock the histograms read: the CPU's time-stamp counter where it is
//! invariant, `Instant` elsewhere.
//!
//! `Instant::now()` costs 35–50 ns on the VMs weft is benchmarked on (the
//! vDSO reads the TSC and scales it), `rdtsc` alone 12–20 ns. Histograms
//! store raw ticks and convert at snapshot time with a rate measured
//! against `Instant` ([`nanos_per_tick`]), so the hot path never scales.
//!
//! The TSC is used on x86_64 when CPUID says it is invariant (constant
//! rate, running in every power state; Linux reports `constant_tsc` and
//! `nonstop_tsc`), which is also when the kernel trusts it across CPUs. A
//! stamp taken on one CPU and read on another may still be skewed by a few
//! ticks: differences saturate at zero, never wrap. Everywhere else a tick
//! is a nanosecond of `Instant` since the first reading.
//!
//! No reading is ever 0: callers use 0 for "no stamp".
//!
//! # Stamps
//! A task's schedule stamp has 32 bits (it lives in padding of the task
//! header, see `task::list::Links`): [`stamp`] keeps bits 6..38 of the
//! tick count, and [`ticks_since`] takes the difference modulo 2^32
//! stamp units. Resolution 64 ticks (25 ns at the 2.6 GHz TSC of the
//! benchmark VM, 64 ns with the `Instant` source); a difference read as
//! negative (CPUs whose counters differ by a few ticks) is 0, so a wait
//! counts up to 2^31 units, ≈ 53 s at 2.6 GHz (137 s with `Instant`),
//! and a longer one wraps around.

use std::{
    sync::{
        atomic::{AtomicU8, Ordering::Relaxed},
        OnceLock,
    },
    time::{Duration, Instant},
};

/// `SOURCE` before the first check.
const UNKNOWN: u8 = 0;
const TSC: u8 = 1;
const INSTANT: u8 = 2;

static SOURCE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The first reading of both clocks: the base of `Instant` ticks and of the
/// rate measurement.
static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();

/// The shortest baseline the rate is measured over. Over 1 ms, the
/// reading noise of both clocks (tens of ns) is below 0.01%.
const MIN_BASELINE: Duration = Duration::from_millis(1);

/// Chooses the source and takes the anchor; called when a runtime starts,
/// so the rate's baseline begins then.
pub(crate) fn init() {
    source();
}

#[cold]
fn choose() -> u8 {
    let source = if invariant_tsc() { TSC } else { INSTANT };
    anchor();
    SOURCE.store(source, Relaxed);
    source
}

/// The anchor, taken by the first caller. `SOURCE` is Relaxed, so a thread
/// that sees it set may not see the anchor yet: everyone goes through
/// `get_or_init`, which waits for an initialisation under way.
fn anchor() -> (Instant, u64) {
    *ANCHOR.get_or_init(|| {
        let instant = Instant::now();
        let tsc = if invariant_tsc() { rdtsc() } else { 0 };
        (instant, tsc)
    })
}

#[inline]
fn source() -> u8 {
    match SOURCE.load(Relaxed) {
        UNKNOWN => choose(),
        source => source,
    }
}

/// The current tick count (never 0).
#[inline]
pub(crate) fn now() -> u64 {
    if source() == TSC {
        rdtsc().max(1)
    } else {
        instant_ticks(Instant::now())
    }
}

/// A sampled poll at least this long counts toward marking its task as
/// polling long (`Header::long_poll`): the work of 15–50 short requests,
/// where a cross-worker wake (a few µs) no longer matters. Debug builds
/// (and sanitizer runs) take 10–50× as long for the same work, so there
/// the mark starts at 1 ms: at 50 µs ordinary echo tasks were marked under
/// ASan and spread over the workers, which io consolidation gathers.
pub(crate) const LONG_POLL: std::time::Duration = if cfg!(debug_assertions) {
    std::time::Duration::from_millis(1)
} else {
    std::time::Duration::from_micros(50)
};
static LONG_POLL_TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// True if a poll of `ticks` is at least [`LONG_POLL`] (false while the
/// tick rate is not known yet).
#[inline]
pub(crate) fn is_long_poll(ticks: u64) -> bool {
    let limit = long_poll_ticks();
    limit != 0 && ticks >= limit
}

/// [`LONG_POLL`] in ticks; 0 while the tick rate is not known yet.
#[inline]
pub(crate) fn long_poll_ticks() -> u64 {
    let mut limit = LONG_POLL_TICKS.load(Relaxed);
    if limit == 0 {
        let Some(ticks) = ticks_in(LONG_POLL) else {
            return 0;
        };
        limit = ticks;
        LONG_POLL_TICKS.store(limit, Relaxed);
    }
    limit
}

/// Ticks dropped from a stamp: its resolution.
const STAMP_SHIFT: u32 = 6;

/// The current time as a 32-bit stamp (never 0).
#[inline]
pub(crate) fn stamp() -> u32 {
    stamp_of(now())
}

#[inline]
fn stamp_of(ticks: u64) -> u32 {
    ((ticks >> STAMP_SHIFT) as u32).max(1)
}

/// Ticks from `stamp` to `now` (see the module doc for the range).
#[inline]
pub(crate) fn ticks_since(stamp: u32, now: u64) -> u64 {
    let units = stamp_of(now).wrapping_sub(stamp);
    if units > u32::MAX / 2 {
        0
    } else {
        u64::from(units) << STAMP_SHIFT
    }
}

fn instant_ticks(at: Instant) -> u64 {
    let base = anchor().0;
    (at.saturating_duration_since(base).as_nanos() as u64).max(1)
}

/// Nanoseconds per tick, measured against `Instant` since the anchor (at
/// least [`MIN_BASELINE`] of it: the first call after a runtime starts
/// may wait up to that long, once).
pub(crate) fn nanos_per_tick() -> f64 {
    if source() != TSC {
        return 1.0;
    }
    let (instant0, tsc0) = anchor();
    loop {
        let elapsed = instant0.elapsed();
        let tsc = rdtsc();
        if elapsed >= MIN_BASELINE && tsc > tsc0 {
            return elapsed.as_nanos() as f64 / (tsc - tsc0) as f64;
        }
        std::thread::sleep(MIN_BASELINE.saturating_sub(elapsed));
    }
}

/// `duration` in ticks (at least 1), once the tick rate is known
/// ([`nanos_per_tick_if_known`]); `None` before.
pub(crate) fn ticks_in(duration: std::time::Duration) -> Option<u64> {
    nanos_per_tick_if_known().map(|ns| ((duration.as_nanos() as f64 / ns) as u64).max(1))
}

/// [`ticks_in`] kept in `cache` (0: not known yet), for a constant
/// duration read on a hot path: the division once, a load after.
#[inline]
pub(crate) fn cached_ticks_in(
    cache: &std::cell::Cell<u64>,
    duration: std::time::Duration,
) -> Option<u64> {
    match cache.get() {
        0 => {
            let ticks = ticks_in(duration)?;
            cache.set(ticks);
            Some(ticks)
        }
        ticks => Some(ticks),
    }
}

/// [`nanos_per_tick`] if its baseline has run long enough, without
/// waiting for it; `None` in a runtime's first millisecond.
pub(crate) fn nanos_per_tick_if_known() -> Option<f64> {
    if source() != TSC {
        return Some(1.0);
    }
    let (instant0, tsc0) = anchor();
    let elapsed = instant0.elapsed();
    let tsc = rdtsc();
    (elapsed >= MIN_BASELINE && tsc > tsc0).then(|| elapsed.as_nanos() as f64 / (tsc - tsc0) as f64)
}

#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no preconditions; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn rdtsc() -> u64 {
    unreachable!("the TSC source is only chosen on x86_64")
}

/// CPUID leaf 0x8000_0007, EDX bit 8: the TSC runs at a constant rate in
/// every P-, C- and T-state.
#[cfg(target_arch = "x86_64")]
pub(crate) fn invariant_tsc() -> bool {
    use core::arch::x86_64::__cpuid;
    // Leaf 0x8000_0000 reports the highest extended leaf, checked before
    // reading 0x8000_0007.
    if __cpuid(0x8000_0000).eax < 0x8000_0007 {
        return false;
    }
    let edx = __cpuid(0x8000_0007).edx;
    edx & (1 << 8) != 0
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn invariant_tsc() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_without_waiting_agrees_with_the_measured_one() {
        init();
        let waited = nanos_per_tick();
        // The baseline has run long enough now: known, without a wait.
        let known = nanos_per_tick_if_known().expect("known after the baseline");
        assert!(known > 0.0);
        assert!(
            (known - waited).abs() / waited < 0.01,
            "{known} against {waited}"
        );
    }

    #[test]
    fn stamps_measure_differences_to_their_resolution() {
        let unit = 1u64 << STAMP_SHIFT;
        let t0 = 1_000_000 * unit + 5;
        let s = stamp_of(t0);
        assert_ne!(s, 0);
        assert_eq!(ticks_since(s, t0), 0);
        // Within one unit of the true difference, never more above it.
        for d in [1, unit - 1, unit, 10 * unit + 3, 1 << 36] {
            let got = ticks_since(s, t0 + d);
            assert!(got + unit > d && got <= d + unit, "{d}: {got}");
        }
        // A reading slightly behind the stamp (another CPU) is 0, not a
        // wrap to the far end.
        assert_eq!(ticks_since(s, t0 - 3 * unit), 0);
        // Across the 32-bit wrap of the stamp.
        let t1 = (u64::from(u32::MAX) << STAMP_SHIFT) + 7;
        assert_eq!(ticks_since(stamp_of(t1), t1 + 10 * unit), 10 * unit);
        // A tick count of 0 still makes a stamp.
        assert_eq!(stamp_of(0), 1);
    }

    #[test]
    fn ticks_advance_and_convert_to_elapsed_time() {
        let t0 = now();
        let i0 = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let t1 = now();
        let real = i0.elapsed();
        assert!(t0 > 0 && t1 > t0, "ticks went from {t0} to {t1}");
        let measured = (t1 - t0) as f64 * nanos_per_tick();
        let real = real.as_nanos() as f64;
        // The two readings of each clock are a few µs apart at most.
        assert!(
            (measured - real).abs() < real * 0.05 + 50_000.0,
            "{measured} ns by ticks against {real} ns by Instant"
        );
    }
}
