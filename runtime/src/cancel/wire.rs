//! The deadline wire codec: gRPC's `grpc-timeout` header.
//!
//! A deadline crosses a process boundary as the *remaining budget*, a relative
//! duration, never as an absolute time: two hosts' clocks disagree (skew,
//! steps, NTP slews), so "until 12:00:03.250" means different instants on each
//! side, while "3.25 s from now" only loses the transit time. The client
//! encodes `deadline - now`; the server parses it and adds it to its own
//! `now` (see DESIGN.md, cancellation rule 6).
//!
//! # Format
//! `1*8DIGIT UNIT`: one to eight ASCII digits followed by exactly one unit,
//! `H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds or
//! `n` nanoseconds. Nothing else: no sign, no whitespace, no lowercase `h` or
//! `s`, no non-ASCII digits. Leading zeros are digits like any other
//! (`00000001S` is valid, `000000001S` has nine digits and is not).
//!
//! # Encoding: finest unit, rounded down
//! [`encode_timeout`] picks the *finest* unit in which the budget fits in
//! eight digits, so as much precision as the format allows is kept, and
//! rounds *down* in that unit: the header never claims more time than is left,
//! so a server never works past the client's deadline. Because a coarser unit
//! is only chosen when the next finer one overflowed eight digits, the value
//! sent is then at least 100,000 (at least 1,666,666 for `M` and `H`): the
//! loss is under one unit and under 10⁻⁵ of the budget; in `n` it is exact.
//!
//! - A zero budget (there is nothing below 1 ns in a [`Duration`]) is
//!   [`WireError::Expired`]: gRPC requires a positive value, and the caller
//!   should fail the call locally instead of sending it.
//! - A budget of [`MAX_TIMEOUT`] (99,999,999 hours, about 11,400 years) or
//!   more is clamped to `99999999H`: still never more than the budget, and
//!   no real deadline is that far away.
//!
//! # Margin
//! An [`Encoder`] subtracts a fixed margin from the budget before encoding
//! (Envoy's timeout-header offset): the server, or the proxy in front of it,
//! then gives up slightly before the client does and its error, not a bare
//! client-side timeout, is what the client sees. If the margin eats the whole
//! budget the result is [`WireError::Expired`]. The default margin is zero.
//!
//! # Parsing: zero, clamping
//! [`parse_timeout`] returns the exact duration written (it cannot overflow:
//! the largest value, `99999999H`, is about 3.6 × 10¹¹ s). A zero value
//! (`0S`) is accepted as [`Duration::ZERO`] even though gRPC asks senders for
//! a positive number: its only sensible meaning is "no time left", and
//! answering it with a deadline-exceeded error (what a deadline of `now`
//! produces) tells the client the truth, where rejecting the header as
//! malformed would turn a timeout into a protocol error. Every other
//! deviation from the grammar is a [`WireError`], never a panic.
//!
//! [`parse_deadline`] turns the budget into a local deadline, clamped to the
//! server's own cap `max`. Clamping is silent, not an error: a client asking
//! for more time than the server grants still gets served, within the
//! server's limit. [`ParsedDeadline::clamped`] says whether it happened. The
//! addition to `now` is checked, so no value can overflow [`Instant`].

use std::{
    error::Error,
    fmt, io,
    time::{Duration, Instant},
};

/// The header name under which gRPC sends the timeout.
pub const HEADER: &str = "grpc-timeout";

/// The largest budget the format can carry: `99999999H`. Longer budgets are
/// encoded as this.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(MAX_VALUE * 3600);

/// The largest value that fits in eight digits.
const MAX_VALUE: u64 = 99_999_999;

/// Maximum number of digits before the unit.
const MAX_DIGITS: usize = 8;

/// The units, finest first, with their length in nanoseconds. Each divides
/// the next, which is what makes re-encoding a parsed value exact.
const UNITS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60 * 1_000_000_000),
    (b'H', 3600 * 1_000_000_000),
];

/// The longest prefix of an offending input kept in a [`WireError`].
const MAX_INPUT_CHARS: usize = 32;

/// Encodes `remaining` as a `grpc-timeout` value, in the finest unit that
/// fits and rounded down in it (see the [module docs](self)).
///
/// # Errors
/// [`WireError::Expired`] if `remaining` is zero.
///
/// ```
/// use std::time::Duration;
/// use weft::cancel::wire::encode_timeout;
///
/// assert_eq!(encode_timeout(Duration::from_millis(50)).unwrap(), "50000000n");
/// assert_eq!(encode_timeout(Duration::from_millis(250)).unwrap(), "250000u");
/// assert_eq!(encode_timeout(Duration::from_secs(30)).unwrap(), "30000000u");
/// assert_eq!(encode_timeout(Duration::from_secs(3600)).unwrap(), "3600000m");
/// ```
pub fn encode_timeout(remaining: Duration) -> Result<String, WireError> {
    let nanos = remaining.as_nanos();
    if nanos == 0 {
        return Err(WireError::Expired);
    }
    for (unit, unit_nanos) in UNITS {
        // Rounds down: never claims more time than remains.
        let value = nanos / unit_nanos;
        if value <= u128::from(MAX_VALUE) {
            return Ok(format!("{value}{}", char::from(unit)));
        }
    }
    Ok(format!("{MAX_VALUE}H"))
}

/// Encodes the budget left until `deadline`, minus `margin`.
///
/// Shorthand for `Encoder::new(margin).encode(deadline, now)`.
///
/// # Errors
/// [`WireError::Expired`] if `deadline` is not later than `now + margin`.
pub fn encode_deadline(
    deadline: Instant,
    now: Instant,
    margin: Duration,
) -> Result<String, WireError> {
    Encoder::new(margin).encode(deadline, now)
}

/// Encodes deadlines with a fixed safety margin subtracted from the budget,
/// so the server or proxy times out before the client does.
///
/// `Encoder::default()` has a zero margin.
///
/// ```
/// use std::time::{Duration, Instant};
/// use weft::cancel::wire::{Encoder, WireError};
///
/// let encoder = Encoder::new(Duration::from_millis(5));
/// let now = Instant::now();
/// let header = encoder.encode(now + Duration::from_millis(100), now).unwrap();
/// assert_eq!(header, "95000000n");
/// assert_eq!(encoder.encode(now + Duration::from_millis(5), now), Err(WireError::Expired));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoder {
    margin: Duration,
}

impl Encoder {
    /// An encoder that subtracts `margin` from every budget.
    pub const fn new(margin: Duration) -> Self {
        Self { margin }
    }

    /// The margin subtracted from every budget.
    pub const fn margin(&self) -> Duration {
        self.margin
    }

    /// Encodes the budget left from `now` until `deadline`, minus the margin.
    ///
    /// # Errors
    /// [`WireError::Expired`] if `deadline` is not later than `now` plus the
    /// margin (including a deadline already in the past).
    pub fn encode(&self, deadline: Instant, now: Instant) -> Result<String, WireError> {
        self.encode_remaining(deadline.saturating_duration_since(now))
    }

    /// Encodes `remaining` minus the margin.
    ///
    /// # Errors
    /// [`WireError::Expired`] if `remaining` does not exceed the margin.
    pub fn encode_remaining(&self, remaining: Duration) -> Result<String, WireError> {
        encode_timeout(remaining.saturating_sub(self.margin))
    }
}

/// Parses a `grpc-timeout` value into the exact duration it states.
///
/// `0` in any unit is accepted as [`Duration::ZERO`] ("no time left"); see
/// the [module docs](self) for why.
///
/// # Errors
/// A [`WireError`] naming the problem for anything outside the grammar
/// `1*8DIGIT ("H" / "M" / "S" / "m" / "u" / "n")`.
///
/// ```
/// use std::time::Duration;
/// use weft::cancel::wire::parse_timeout;
///
/// assert_eq!(parse_timeout("250m"), Ok(Duration::from_millis(250)));
/// assert!(parse_timeout("250ms").is_err());
/// ```
pub fn parse_timeout(value: &str) -> Result<Duration, WireError> {
    if value.is_empty() {
        return Err(WireError::Empty);
    }
    // Everything before the first non-digit is the number; the first
    // non-digit must be the unit, and the last character.
    let Some((at, ch)) = value.char_indices().find(|(_, c)| !c.is_ascii_digit()) else {
        return Err(WireError::MissingUnit {
            input: truncate(value),
        });
    };
    let after = at + ch.len_utf8();
    if after < value.len() {
        // Something follows the first non-digit. If that non-digit is a
        // unit, blame what comes after it (`5S `, `5SS`); otherwise blame it
        // (`-5S`, ` 5S`, `５S`).
        let (index, found) = if unit_nanos(ch).is_some() {
            (after, value[after..].chars().next().unwrap_or(ch))
        } else {
            (at, ch)
        };
        return Err(WireError::InvalidCharacter {
            input: truncate(value),
            found,
            index,
        });
    }
    let Some(unit_nanos) = unit_nanos(ch) else {
        return Err(if ch.is_alphabetic() {
            WireError::UnknownUnit {
                input: truncate(value),
                unit: ch,
            }
        } else {
            WireError::InvalidCharacter {
                input: truncate(value),
                found: ch,
                index: at,
            }
        });
    };
    let digits = &value[..at];
    if digits.is_empty() {
        return Err(WireError::MissingDigits {
            input: truncate(value),
        });
    }
    if digits.len() > MAX_DIGITS {
        return Err(WireError::TooManyDigits {
            input: truncate(value),
            digits: digits.len(),
        });
    }
    // At most eight ASCII digits: always fits, and the product below is at
    // most 99,999,999 h ≈ 3.6e20 ns, far inside u128 and inside Duration.
    let number = digits
        .bytes()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let nanos = u128::from(number) * unit_nanos;
    let secs = (nanos / 1_000_000_000) as u64;
    let subsec = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Parses a `grpc-timeout` value into a local deadline `now + budget`, with
/// the budget clamped to `max`, the server's own cap.
///
/// Clamping is silent; [`ParsedDeadline::clamped`] reports it. A zero value
/// gives a deadline of `now` (already expired). The addition is checked: a
/// budget that would overflow [`Instant`] is shortened (and reported as
/// clamped) instead of panicking.
///
/// # Errors
/// As [`parse_timeout`].
///
/// ```
/// use std::time::{Duration, Instant};
/// use weft::cancel::wire::parse_deadline;
///
/// let now = Instant::now();
/// let parsed = parse_deadline("5M", now, Duration::from_secs(30)).unwrap();
/// assert_eq!(parsed.deadline, now + Duration::from_secs(30));
/// assert!(parsed.clamped);
/// ```
pub fn parse_deadline(
    value: &str,
    now: Instant,
    max: Duration,
) -> Result<ParsedDeadline, WireError> {
    let requested = parse_timeout(value)?;
    let capped = requested.min(max);
    let (deadline, budget) = add_clamped(now, capped);
    Ok(ParsedDeadline {
        deadline,
        budget,
        clamped: budget < requested,
    })
}

/// A deadline parsed from the wire by [`parse_deadline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedDeadline {
    /// The local deadline: `now` plus [`budget`](Self::budget).
    pub deadline: Instant,
    /// The budget granted: the one requested, or less if it was clamped.
    pub budget: Duration,
    /// Whether the requested budget was cut down, to the server's `max` or,
    /// for absurd budgets, to what [`Instant`] can represent.
    pub clamped: bool,
}

/// `now + budget`, halving the budget until the sum is representable.
/// Returns the deadline and the budget actually added.
fn add_clamped(now: Instant, mut budget: Duration) -> (Instant, Duration) {
    loop {
        if let Some(deadline) = now.checked_add(budget) {
            return (deadline, budget);
        }
        // Terminates: `now + 0` always succeeds.
        budget /= 2;
    }
}

/// The length of `unit` in nanoseconds, if it is one of the six units.
fn unit_nanos(unit: char) -> Option<u128> {
    UNITS
        .iter()
        .find(|&&(u, _)| char::from(u) == unit)
        .map(|&(_, nanos)| nanos)
}

/// Keeps at most [`MAX_INPUT_CHARS`] characters of an offending input, so a
/// hostile header cannot make an error (or a log line) arbitrarily large.
fn truncate(input: &str) -> String {
    match input.char_indices().nth(MAX_INPUT_CHARS) {
        Some((end, _)) => format!("{}…", &input[..end]),
        None => input.to_owned(),
    }
}

/// Why a `grpc-timeout` value could not be encoded or parsed.
///
/// Parse errors carry the offending input, truncated to 32 characters (with
/// `…` appended when cut). Converts into [`io::Error`]: `TimedOut` for
/// [`Expired`](Self::Expired), `InvalidData` for the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Encoding: no budget is left (zero, or eaten by the margin). Fail the
    /// call locally with a deadline error rather than sending it.
    Expired,
    /// Parsing: the value is empty.
    Empty,
    /// Parsing: digits without a unit, like `5`.
    MissingUnit {
        /// The offending value, truncated.
        input: String,
    },
    /// Parsing: a unit without digits, like `S`.
    MissingDigits {
        /// The offending value, truncated.
        input: String,
    },
    /// Parsing: more than eight digits.
    TooManyDigits {
        /// The offending value, truncated.
        input: String,
        /// How many digits it has.
        digits: usize,
    },
    /// Parsing: the value ends in a letter that is not one of `H M S m u n`,
    /// like `5h`, `5s` or `5µ`.
    UnknownUnit {
        /// The offending value, truncated.
        input: String,
        /// The letter found where the unit should be.
        unit: char,
    },
    /// Parsing: a character that is neither an ASCII digit nor a final unit:
    /// a sign, whitespace, a non-ASCII digit, or anything after the unit.
    InvalidCharacter {
        /// The offending value, truncated.
        input: String,
        /// The character.
        found: char,
        /// Its byte offset in the value.
        index: usize,
    },
}

const GRAMMAR: &str = "expected 1 to 8 ASCII digits followed by one of H, M, S, m, u, n";

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => {
                f.write_str("deadline expired: no time budget left to send as grpc-timeout")
            }
            Self::Empty => write!(f, "empty grpc-timeout: {GRAMMAR}"),
            Self::MissingUnit { input } => {
                write!(f, "grpc-timeout {input:?} has no unit: {GRAMMAR}")
            }
            Self::MissingDigits { input } => {
                write!(f, "grpc-timeout {input:?} has no digits: {GRAMMAR}")
            }
            Self::TooManyDigits { input, digits } => {
                write!(
                    f,
                    "grpc-timeout {input:?} has {digits} digits, at most 8 are allowed"
                )
            }
            Self::UnknownUnit { input, unit } => {
                write!(
                    f,
                    "grpc-timeout {input:?} has unknown unit {unit:?}: {GRAMMAR}"
                )
            }
            Self::InvalidCharacter {
                input,
                found,
                index,
            } => {
                write!(f, "grpc-timeout {input:?} has invalid character {found:?} at byte {index}: {GRAMMAR}")
            }
        }
    }
}

impl Error for WireError {}

impl From<WireError> for io::Error {
    fn from(err: WireError) -> Self {
        let kind = match err {
            WireError::Expired => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
