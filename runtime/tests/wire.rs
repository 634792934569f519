//! Properties of the `grpc-timeout` codec (`weft::cancel::wire`).
//!
//! Precision, stated exactly: for a budget `d` with `0 < d <= MAX_TIMEOUT`,
//! `p = parse(encode(d))` satisfies `p <= d` and `d - p < unit`, where `unit`
//! is the unit letter of the encoding; `p == d` when that unit is `n`, and
//! otherwise `(d - p) / d < 1e-5` (the value sent is then at least 100,000).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use weft::cancel::wire::{
    encode_deadline, encode_timeout, parse_deadline, parse_timeout, Encoder, WireError, MAX_TIMEOUT,
};

/// The grammar, checked by hand: `^[0-9]{1,8}[HMSmun]$`.
fn matches_grammar(value: &str) -> bool {
    let bytes = value.as_bytes();
    match bytes.split_last() {
        Some((unit, digits)) => {
            (1..=8).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && b"HMSmun".contains(unit)
        }
        None => false,
    }
}

/// The length of a unit letter, in nanoseconds.
fn unit_nanos(unit: u8) -> u128 {
    match unit {
        b'n' => 1,
        b'u' => 1_000,
        b'm' => 1_000_000,
        b'S' => 1_000_000_000,
        b'M' => 60_000_000_000,
        b'H' => 3_600_000_000_000,
        _ => unreachable!("not a unit: {unit}"),
    }
}

/// The next finer unit, if any.
fn finer(unit: u8) -> Option<u8> {
    match unit {
        b'u' => Some(b'n'),
        b'm' => Some(b'u'),
        b'S' => Some(b'm'),
        b'M' => Some(b'S'),
        b'H' => Some(b'M'),
        _ => None,
    }
}

/// Budgets in `1 ns ..= MAX_TIMEOUT`, spread over every order of magnitude
/// (log-uniform) as well as uniformly over the whole range.
fn budget() -> impl Strategy<Value = Duration> {
    let max_secs = MAX_TIMEOUT.as_secs();
    prop_oneof![
        (0u32..64)
            .prop_flat_map(|bits| 1u64..=(u64::MAX >> (63 - bits)))
            .prop_map(Duration::from_nanos),
        (0..max_secs, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        Just(Duration::from_nanos(1)),
        Just(MAX_TIMEOUT),
    ]
    .prop_filter("non-zero and within the format", |d| {
        !d.is_zero() && *d <= MAX_TIMEOUT
    })
}

/// Values in the grammar, built from its parts.
fn grammar_value() -> impl Strategy<Value = String> {
    "[0-9]{1,8}[HMSmun]"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn round_trip_never_gains_time_and_loses_under_one_unit(d in budget()) {
        let header = encode_timeout(d).unwrap();
        let parsed = parse_timeout(&header).unwrap();
        prop_assert!(parsed <= d, "{header} claims more than {d:?}");
        let unit = *header.as_bytes().last().unwrap();
        let lost = (d - parsed).as_nanos();
        prop_assert!(lost < unit_nanos(unit), "{header} lost {lost} ns from {d:?}");
        if unit == b'n' {
            prop_assert_eq!(parsed, d);
        } else {
            prop_assert!(lost * 100_000 < d.as_nanos(), "{header} lost {lost} ns from {d:?}");
        }
    }

    #[test]
    fn encoding_uses_the_finest_unit_that_fits(d in budget()) {
        let header = encode_timeout(d).unwrap();
        let unit = *header.as_bytes().last().unwrap();
        if let Some(finer) = finer(unit) {
            prop_assert!(d.as_nanos() / unit_nanos(finer) > 99_999_999, "{header} for {d:?}");
        }
    }

    #[test]
    fn encoding_always_matches_the_grammar(nanos in any::<u64>(), secs in any::<u64>()) {
        for d in [Duration::from_nanos(nanos), Duration::new(secs, 0)] {
            match encode_timeout(d) {
                Ok(header) => {
                    prop_assert!(matches_grammar(&header), "{header:?}");
                    prop_assert!(!parse_timeout(&header).unwrap().is_zero(), "{header:?} is zero");
                }
                Err(err) => prop_assert!(d.is_zero() && err == WireError::Expired),
            }
        }
    }

    #[test]
    fn budgets_beyond_the_format_clamp_to_max(extra in 1u64..u64::MAX / 2) {
        let d = MAX_TIMEOUT.saturating_add(Duration::from_nanos(extra));
        prop_assert_eq!(encode_timeout(d).unwrap(), "99999999H");
    }

    #[test]
    fn margin_is_subtracted_and_expired_iff_it_eats_the_budget(
        d in 0u64..10_000_000_000,
        margin in 0u64..10_000_000_000,
    ) {
        let now = Instant::now();
        let (d, margin) = (Duration::from_nanos(d), Duration::from_nanos(margin));
        let encoded = encode_deadline(now + d, now, margin);
        prop_assert_eq!(&encoded, &Encoder::new(margin).encode(now + d, now));
        if d <= margin {
            prop_assert_eq!(encoded, Err(WireError::Expired));
        } else {
            let parsed = parse_timeout(&encoded.unwrap()).unwrap();
            prop_assert!(parsed <= d - margin);
        }
    }

    #[test]
    fn parse_never_panics_on_strings(value in any::<String>()) {
        let _ = parse_timeout(&value);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        let value = String::from_utf8_lossy(&bytes);
        prop_assert_eq!(parse_timeout(&value).is_ok(), matches_grammar(&value), "{:?}", value);
    }

    #[test]
    fn parse_accepts_exactly_the_grammar(value in "[0-9+\\- HMSmunhs\u{b5}\u{ff15}]{0,11}") {
        let result = parse_timeout(&value);
        prop_assert_eq!(result.is_ok(), matches_grammar(&value), "{:?}: {:?}", value, result);
        if let Err(err) = result {
            prop_assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn grammar_values_parse_to_their_exact_duration(value in grammar_value()) {
        let parsed = parse_timeout(&value).unwrap();
        let (digits, unit) = value.split_at(value.len() - 1);
        let expected = u128::from(digits.parse::<u64>().unwrap()) * unit_nanos(unit.as_bytes()[0]);
        prop_assert_eq!(parsed.as_nanos(), expected);
    }

    #[test]
    fn re_encoding_a_parsed_value_is_exact(value in grammar_value()) {
        let parsed = parse_timeout(&value).unwrap();
        match encode_timeout(parsed) {
            Ok(header) => prop_assert_eq!(parse_timeout(&header).unwrap(), parsed),
            Err(err) => prop_assert!(parsed.is_zero() && err == WireError::Expired),
        }
    }

    #[test]
    fn parse_deadline_clamps_to_max(value in grammar_value(), max_ms in 0u64..100_000_000) {
        let now = Instant::now();
        let max = Duration::from_millis(max_ms);
        let requested = parse_timeout(&value).unwrap();
        let parsed = parse_deadline(&value, now, max).unwrap();
        prop_assert_eq!(parsed.budget, requested.min(max));
        prop_assert_eq!(parsed.deadline, now + parsed.budget);
        prop_assert_eq!(parsed.clamped, requested > max);
    }
}

#[test]
fn parse_deadline_with_no_cap_handles_the_largest_value() {
    let now = Instant::now();
    let parsed = parse_deadline("99999999H", now, Duration::MAX).unwrap();
    assert_eq!(parsed.deadline - now, parsed.budget);
    assert!(parsed.budget <= MAX_TIMEOUT);
}

/// Recognises the error expected for one malformed value.
type Expect = fn(&WireError) -> bool;

/// Every malformed shape from the issue: an error, never a panic, and never
/// mistaken for a timeout.
#[test]
fn malformed_regressions() {
    let cases: &[(&str, Expect)] = &[
        ("", |e| matches!(e, WireError::Empty)),
        ("S", |e| matches!(e, WireError::MissingDigits { .. })),
        ("n", |e| matches!(e, WireError::MissingDigits { .. })),
        ("5", |e| matches!(e, WireError::MissingUnit { .. })),
        ("12345678", |e| matches!(e, WireError::MissingUnit { .. })),
        ("123456789S", |e| {
            matches!(e, WireError::TooManyDigits { digits: 9, .. })
        }),
        ("999999999H", |e| {
            matches!(e, WireError::TooManyDigits { digits: 9, .. })
        }),
        ("5h", |e| {
            matches!(e, WireError::UnknownUnit { unit: 'h', .. })
        }),
        ("5s", |e| {
            matches!(e, WireError::UnknownUnit { unit: 's', .. })
        }),
        ("5x", |e| {
            matches!(e, WireError::UnknownUnit { unit: 'x', .. })
        }),
        ("5µ", |e| {
            matches!(e, WireError::UnknownUnit { unit: 'µ', .. })
        }),
        ("-5S", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: '-',
                    index: 0,
                    ..
                }
            )
        }),
        ("+5S", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: '+',
                    index: 0,
                    ..
                }
            )
        }),
        (" 5S", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: ' ',
                    index: 0,
                    ..
                }
            )
        }),
        ("5S ", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: ' ',
                    index: 2,
                    ..
                }
            )
        }),
        ("5S\n", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: '\n',
                    index: 2,
                    ..
                }
            )
        }),
        ("5 S", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: ' ',
                    index: 1,
                    ..
                }
            )
        }),
        ("5ms", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: 's',
                    index: 2,
                    ..
                }
            )
        }),
        ("1.5S", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: '.',
                    index: 1,
                    ..
                }
            )
        }),
        ("５S", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: '５',
                    index: 0,
                    ..
                }
            )
        }),
        ("5\u{0}", |e| {
            matches!(
                e,
                WireError::InvalidCharacter {
                    found: '\0',
                    index: 1,
                    ..
                }
            )
        }),
    ];
    for &(value, expected) in cases {
        match parse_timeout(value) {
            Ok(d) => panic!("{value:?} parsed as {d:?}"),
            Err(err) => {
                assert!(expected(&err), "{value:?} gave {err:?}");
                assert!(
                    err.to_string().contains(&format!("{value:?}")) || value.is_empty(),
                    "{err}"
                );
                let io = std::io::Error::from(err);
                assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
            }
        }
        assert!(parse_deadline(value, Instant::now(), Duration::MAX).is_err());
    }
}

#[test]
fn zero_is_accepted_as_already_expired() {
    let now = Instant::now();
    for value in ["0S", "0n", "0H", "00000000m"] {
        assert_eq!(parse_timeout(value), Ok(Duration::ZERO));
        let parsed = parse_deadline(value, now, Duration::from_secs(10)).unwrap();
        assert_eq!((parsed.deadline, parsed.clamped), (now, false));
    }
}
