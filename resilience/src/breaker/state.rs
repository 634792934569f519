//! The state word: what the breaker is doing, in which generation, and how
//! many half-open probes are out, packed into one `u64` so that every
//! transition is a single compare-and-swap.
//!
//! Layout (bit 0 is the least significant):
//!
//! | bits    | field          | meaning                                             |
//! |---------|----------------|-----------------------------------------------------|
//! | 0..3    | kind           | [`State`] as a 3-bit code                           |
//! | 3..16   | in flight      | half-open probes admitted and not yet settled       |
//! | 16..32  | successes      | successful probes in this half-open generation      |
//! | 32..64  | generation     | bumped by every transition, wraps at 2^32           |
//!
//! `in flight` and `successes` are zero in every state but `HalfOpen`; a
//! transition always resets them, so a probe of an older generation can never
//! release a slot of a newer one.

use std::fmt;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Admits every call and records outcomes; trips when a criterion is met.
    Closed,
    /// Rejects every call until the open duration has elapsed; the next
    /// acquire after that moves to `HalfOpen` (lazily: no timer thread).
    Open,
    /// Admits at most `half_open_permits` probes at once; closes after
    /// `half_open_successes` successes, reopens on a failed probe.
    HalfOpen,
    /// Rejects every call until a manual [`reset`](super::Breaker::reset) or
    /// another manual state change. Never leaves by itself.
    ForcedOpen,
    /// Admits every call and records nothing: the breaker is switched off.
    /// This is also what "force closed" means in weft.
    Disabled,
    /// Admits every call and records outcomes (metrics, events) but never
    /// trips.
    MetricsOnly,
}

impl State {
    const fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
            State::MetricsOnly => 5,
        }
    }

    const fn from_code(code: u64) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::Disabled,
            // Codes 6 and 7 are never written (every store goes through
            // `StateWord::new`); 5 is MetricsOnly.
            _ => State::MetricsOnly,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics-only",
        })
    }
}

/// Bits of the kind field.
const KIND_MASK: u64 = 0b111;
/// Shift of the half-open probes in flight.
const IN_FLIGHT_SHIFT: u32 = 3;
/// Largest number of probes in flight the word can hold (13 bits).
pub(crate) const MAX_IN_FLIGHT: u32 = (1 << 13) - 1;
/// Shift of the half-open successes.
const SUCCESSES_SHIFT: u32 = 16;
/// Largest number of half-open successes the word can hold (16 bits).
pub(crate) const MAX_SUCCESSES: u32 = (1 << 16) - 1;
/// Shift of the generation.
const GENERATION_SHIFT: u32 = 32;

/// A decoded state word. Plain data: reading it never touches the atomic.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateWord(pub(crate) u64);

impl StateWord {
    /// A word in `state` at `generation` with no probes.
    pub(crate) const fn new(state: State, generation: u32) -> StateWord {
        StateWord(state.code() | ((generation as u64) << GENERATION_SHIFT))
    }

    pub(crate) const fn state(self) -> State {
        State::from_code(self.0 & KIND_MASK)
    }

    pub(crate) const fn generation(self) -> u32 {
        (self.0 >> GENERATION_SHIFT) as u32
    }

    /// Half-open probes admitted and not yet settled.
    pub(crate) const fn in_flight(self) -> u32 {
        ((self.0 >> IN_FLIGHT_SHIFT) as u32) & MAX_IN_FLIGHT
    }

    /// Successful probes in this half-open generation.
    pub(crate) const fn successes(self) -> u32 {
        ((self.0 >> SUCCESSES_SHIFT) as u32) & MAX_SUCCESSES
    }

    /// The first word of the next generation, in `state`.
    pub(crate) const fn next(self, state: State) -> StateWord {
        StateWord::new(state, self.generation().wrapping_add(1))
    }

    /// The same generation with one more probe in flight.
    /// The caller has checked `in_flight() < MAX_IN_FLIGHT`.
    pub(crate) const fn with_probe_admitted(self) -> StateWord {
        StateWord(self.0 + (1 << IN_FLIGHT_SHIFT))
    }

    /// The same generation with one probe fewer in flight, and one more
    /// success if `success`. The caller holds a probe of this generation, so
    /// `in_flight() >= 1`; successes stay below the configured close count,
    /// which is at most `MAX_SUCCESSES`.
    pub(crate) const fn with_probe_settled(self, success: bool) -> StateWord {
        let mut word = self.0 - (1 << IN_FLIGHT_SHIFT);
        if success {
            word += 1 << SUCCESSES_SHIFT;
        }
        StateWord(word)
    }
}

/// Bits of each field of the failure-rate half-open layout.
const RATE_BITS: u32 = 7;
/// Largest probe count of the failure-rate half-open layout.
pub(crate) const MAX_RATE_PROBES: u32 = (1 << RATE_BITS) - 1;
const RATE_IN_FLIGHT_SHIFT: u32 = 3;
const RATE_SETTLED_SHIFT: u32 = RATE_IN_FLIGHT_SHIFT + RATE_BITS;
const RATE_FAILURES_SHIFT: u32 = RATE_SETTLED_SHIFT + RATE_BITS;
const RATE_SLOW_SHIFT: u32 = RATE_FAILURES_SHIFT + RATE_BITS;

/// The failure-rate half-open layout (resilience4j's
/// `permittedNumberOfCallsInHalfOpenState`): bits 3..31 of a `HalfOpen`
/// word, instead of in-flight | successes, hold four 7-bit fields —
/// probes in flight (3..10), probes settled with a verdict (10..17), of
/// which failed (17..24) and slow (24..31). A breaker uses one layout for
/// its whole life (it is fixed by its config), and every transition zeroes
/// the fields, so the two never mix.
impl StateWord {
    /// Probes admitted in this generation and not yet settled (rate layout).
    pub(crate) const fn rate_in_flight(self) -> u32 {
        ((self.0 >> RATE_IN_FLIGHT_SHIFT) as u32) & MAX_RATE_PROBES
    }

    /// Probes settled with a verdict in this generation (rate layout).
    pub(crate) const fn rate_settled(self) -> u32 {
        ((self.0 >> RATE_SETTLED_SHIFT) as u32) & MAX_RATE_PROBES
    }

    /// Settled probes that failed (rate layout).
    pub(crate) const fn rate_failures(self) -> u32 {
        ((self.0 >> RATE_FAILURES_SHIFT) as u32) & MAX_RATE_PROBES
    }

    /// Settled probes that were slow (rate layout).
    pub(crate) const fn rate_slow(self) -> u32 {
        ((self.0 >> RATE_SLOW_SHIFT) as u32) & MAX_RATE_PROBES
    }

    /// One more probe in flight (rate layout). The caller has checked that
    /// in flight + settled is below the configured probes (≤ 127).
    pub(crate) const fn with_rate_probe_admitted(self) -> StateWord {
        StateWord(self.0 + (1 << RATE_IN_FLIGHT_SHIFT))
    }

    /// One probe fewer in flight; if it has a verdict, one more settled,
    /// failed and/or slow as it was (rate layout).
    pub(crate) const fn with_rate_probe_settled(self, verdict: Option<(bool, bool)>) -> StateWord {
        let mut word = self.0 - (1 << RATE_IN_FLIGHT_SHIFT);
        if let Some((failed, slow)) = verdict {
            word += 1 << RATE_SETTLED_SHIFT;
            if failed {
                word += 1 << RATE_FAILURES_SHIFT;
            }
            if slow {
                word += 1 << RATE_SLOW_SHIFT;
            }
        }
        StateWord(word)
    }
}

impl fmt::Debug for StateWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateWord")
            .field("state", &self.state())
            .field("generation", &self.generation())
            .field("in_flight", &self.in_flight())
            .field("successes", &self.successes())
            .finish()
    }
}

/// The time that belongs to the current generation, tagged with it: in `Open`
/// the instant the breaker may admit a probe again, in `HalfOpen` the instant
/// of the last progress (entry or a settled probe). Written by the winner of
/// the transition right after its CAS, so a reader can see the new generation
/// before its time; the tag tells it so (and it then treats the breaker as
/// still open / not yet stuck).
///
/// Layout: low 48 bits microseconds on the breaker's clock (8.9 years,
/// saturating), high 16 bits the low 16 bits of the generation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct PhaseWord(pub(crate) u64);

const MICROS_MASK: u64 = (1 << 48) - 1;

impl PhaseWord {
    pub(crate) fn new(generation: u32, micros: u64) -> PhaseWord {
        PhaseWord(((generation as u64 & 0xffff) << 48) | micros.min(MICROS_MASK))
    }

    /// The time if this word belongs to `generation`.
    pub(crate) fn time_for(self, generation: u32) -> Option<u64> {
        ((self.0 >> 48) == (generation as u64 & 0xffff)).then_some(self.0 & MICROS_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let all = [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::Disabled,
            State::MetricsOnly,
        ];
        for state in all {
            let word = StateWord::new(state, u32::MAX);
            assert_eq!(word.state(), state);
            assert_eq!(word.generation(), u32::MAX);
            assert_eq!(word.in_flight(), 0);
            assert_eq!(word.successes(), 0);
        }
    }

    #[test]
    fn probes_do_not_bleed_into_neighbours() {
        let mut word = StateWord::new(State::HalfOpen, 7);
        for _ in 0..MAX_IN_FLIGHT {
            word = word.with_probe_admitted();
        }
        assert_eq!(word.in_flight(), MAX_IN_FLIGHT);
        assert_eq!(word.successes(), 0);
        assert_eq!(word.state(), State::HalfOpen);
        word = word.with_probe_settled(true).with_probe_settled(false);
        assert_eq!(word.in_flight(), MAX_IN_FLIGHT - 2);
        assert_eq!(word.successes(), 1);
        assert_eq!(word.generation(), 7);
    }

    #[test]
    fn next_bumps_generation_and_clears_probes() {
        let word = StateWord::new(State::HalfOpen, u32::MAX).with_probe_admitted();
        let next = word.next(State::Open);
        assert_eq!(next.generation(), 0);
        assert_eq!(next.in_flight(), 0);
        assert_eq!(next.state(), State::Open);
    }

    #[test]
    fn rate_fields_do_not_bleed_into_neighbours() {
        let mut word = StateWord::new(State::HalfOpen, 9);
        for _ in 0..MAX_RATE_PROBES {
            word = word.with_rate_probe_admitted();
        }
        assert_eq!(word.rate_in_flight(), MAX_RATE_PROBES);
        for _ in 0..MAX_RATE_PROBES {
            word = word.with_rate_probe_settled(Some((true, true)));
        }
        assert_eq!(word.rate_in_flight(), 0);
        assert_eq!(word.rate_settled(), MAX_RATE_PROBES);
        assert_eq!(word.rate_failures(), MAX_RATE_PROBES);
        assert_eq!(word.rate_slow(), MAX_RATE_PROBES);
        assert_eq!(word.state(), State::HalfOpen);
        assert_eq!(word.generation(), 9);
        let word = StateWord::new(State::HalfOpen, 1)
            .with_rate_probe_admitted()
            .with_rate_probe_settled(None);
        assert_eq!((word.rate_in_flight(), word.rate_settled()), (0, 0));
    }

    #[test]
    fn phase_word_is_tagged() {
        let word = PhaseWord::new(0x1_0003, 42);
        assert_eq!(word.time_for(3), Some(42));
        assert_eq!(word.time_for(0x1_0003), Some(42));
        assert_eq!(word.time_for(4), None);
        assert_eq!(PhaseWord::new(1, u64::MAX).time_for(1), Some(MICROS_MASK));
    }
}
