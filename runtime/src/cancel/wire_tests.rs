//! Unit tests of the wire codec: unit choice, rounding, errors.
use super::*;

const NS: u64 = 1;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

fn enc(d: Duration) -> String {
    encode_timeout(d).unwrap()
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

#[test]
fn encodes_nanoseconds_up_to_eight_digits() {
    assert_eq!(enc(nanos(NS)), "1n");
    assert_eq!(enc(nanos(12_345)), "12345n");
    assert_eq!(enc(nanos(99_999_999)), "99999999n");
}

#[test]
fn encodes_microseconds_once_nanoseconds_overflow() {
    assert_eq!(enc(nanos(100_000_000)), "100000u");
    assert_eq!(enc(nanos(99_999_999 * US + 999)), "99999999u");
}

#[test]
fn encodes_milliseconds_once_microseconds_overflow() {
    assert_eq!(enc(nanos(100_000_000 * US)), "100000m");
    assert_eq!(enc(nanos(99_999_999 * MS + 999_999)), "99999999m");
}

#[test]
fn encodes_seconds_once_milliseconds_overflow() {
    assert_eq!(enc(Duration::from_millis(100_000_000)), "100000S");
    assert_eq!(enc(Duration::new(99_999_999, 999_999_999)), "99999999S");
}

#[test]
fn encodes_minutes_once_seconds_overflow() {
    // 1e8 s = 1,666,666 min 40 s.
    assert_eq!(enc(Duration::from_secs(100_000_000)), "1666666M");
    assert_eq!(enc(Duration::from_secs(99_999_999 * 60 + 59)), "99999999M");
}

#[test]
fn encodes_hours_once_minutes_overflow() {
    assert_eq!(enc(Duration::from_secs(100_000_000 * 60)), "1666666H");
    assert_eq!(enc(MAX_TIMEOUT), "99999999H");
}

#[test]
fn clamps_budgets_beyond_the_format_to_max() {
    assert_eq!(enc(MAX_TIMEOUT + nanos(1)), "99999999H");
    assert_eq!(enc(MAX_TIMEOUT + Duration::from_secs(3600)), "99999999H");
    assert_eq!(enc(Duration::MAX), "99999999H");
}

#[test]
fn rounds_down_in_the_chosen_unit() {
    // 100,000.999 µs: never claims the extra 999 ns.
    assert_eq!(enc(nanos(100_000_999)), "100000u");
    // 1.5 s keeps full precision in µs.
    assert_eq!(enc(Duration::from_millis(1500)), "1500000u");
    // 100,000,999.9 ms → 100,000 s.
    assert_eq!(enc(nanos(100_000_999 * MS + 900_000)), "100000S");
    // 100,000,059 s = 1,666,667 min 39 s: the 39 s are dropped.
    assert_eq!(enc(Duration::from_secs(100_000_059)), "1666667M");
    // 6,000,003,599 s = 1,666,667 h 2,399 s: the 2,399 s are dropped.
    assert_eq!(
        enc(Duration::from_secs(100_000_000 * 60 + 3599)),
        "1666667H"
    );
    let d = nanos(123_456_789 * S + 987_654_321);
    assert!(parse_timeout(&enc(d)).unwrap() <= d);
}

#[test]
fn zero_budget_is_expired() {
    assert_eq!(encode_timeout(Duration::ZERO), Err(WireError::Expired));
}

#[test]
fn encoder_subtracts_the_margin() {
    let now = Instant::now();
    let deadline = now + Duration::from_millis(10);
    assert_eq!(Encoder::default().margin(), Duration::ZERO);
    assert_eq!(
        Encoder::default().encode(deadline, now).unwrap(),
        "10000000n"
    );
    let encoder = Encoder::new(Duration::from_millis(2));
    assert_eq!(encoder.encode(deadline, now).unwrap(), "8000000n");
    assert_eq!(
        encoder.encode_remaining(Duration::from_millis(3)).unwrap(),
        "1000000n"
    );
    assert_eq!(
        encode_deadline(deadline, now, Duration::from_millis(9)).unwrap(),
        "1000000n"
    );
}

#[test]
fn margin_eating_the_budget_is_expired() {
    let now = Instant::now();
    let deadline = now + Duration::from_millis(10);
    for margin in [10, 11, 1_000] {
        let margin = Duration::from_millis(margin);
        assert_eq!(
            encode_deadline(deadline, now, margin),
            Err(WireError::Expired)
        );
    }
    // One nanosecond more than the margin is still sendable.
    assert_eq!(
        encode_deadline(deadline + nanos(1), now, Duration::from_millis(10)).unwrap(),
        "1n"
    );
}

#[test]
fn past_deadline_is_expired() {
    let now = Instant::now() + Duration::from_secs(1);
    let past = now - Duration::from_millis(1);
    assert_eq!(
        encode_deadline(past, now, Duration::ZERO),
        Err(WireError::Expired)
    );
    assert_eq!(
        encode_deadline(now, now, Duration::ZERO),
        Err(WireError::Expired)
    );
}

#[test]
fn parses_every_unit() {
    assert_eq!(parse_timeout("7n"), Ok(nanos(7)));
    assert_eq!(parse_timeout("7u"), Ok(Duration::from_micros(7)));
    assert_eq!(parse_timeout("7m"), Ok(Duration::from_millis(7)));
    assert_eq!(parse_timeout("7S"), Ok(Duration::from_secs(7)));
    assert_eq!(parse_timeout("7M"), Ok(Duration::from_secs(7 * 60)));
    assert_eq!(parse_timeout("7H"), Ok(Duration::from_secs(7 * 3600)));
    assert_eq!(parse_timeout("99999999H"), Ok(MAX_TIMEOUT));
    assert_eq!(parse_timeout("99999999n"), Ok(nanos(99_999_999)));
}

#[test]
fn leading_zeros_count_as_digits() {
    assert_eq!(parse_timeout("00000001S"), Ok(Duration::from_secs(1)));
    assert!(matches!(
        parse_timeout("000000001S"),
        Err(WireError::TooManyDigits { digits: 9, .. })
    ));
}

#[test]
fn zero_parses_as_no_time_left() {
    assert_eq!(parse_timeout("0S"), Ok(Duration::ZERO));
    assert_eq!(parse_timeout("00000000n"), Ok(Duration::ZERO));
    let now = Instant::now();
    let parsed = parse_deadline("0m", now, Duration::from_secs(1)).unwrap();
    assert_eq!(
        parsed,
        ParsedDeadline {
            deadline: now,
            budget: Duration::ZERO,
            clamped: false
        }
    );
}

#[test]
fn parse_deadline_clamps_silently_and_says_so() {
    let now = Instant::now();
    let max = Duration::from_secs(30);
    let under = parse_deadline("29S", now, max).unwrap();
    assert_eq!(
        (under.deadline, under.clamped),
        (now + Duration::from_secs(29), false)
    );
    let equal = parse_deadline("30S", now, max).unwrap();
    assert_eq!((equal.deadline, equal.clamped), (now + max, false));
    let over = parse_deadline("30001m", now, max).unwrap();
    assert_eq!(
        (over.deadline, over.budget, over.clamped),
        (now + max, max, true)
    );
    let zero_cap = parse_deadline("1n", now, Duration::ZERO).unwrap();
    assert_eq!((zero_cap.deadline, zero_cap.clamped), (now, true));
}

#[test]
fn parse_deadline_never_overflows_instant() {
    let now = Instant::now();
    let parsed = parse_deadline("99999999H", now, Duration::MAX).unwrap();
    assert!(parsed.deadline >= now);
    assert_eq!(parsed.deadline - now, parsed.budget);
    // Beyond anything the format carries, the checked add shortens.
    let (deadline, budget) = add_clamped(now, Duration::MAX);
    assert!(budget < Duration::MAX);
    assert_eq!(deadline - now, budget);
}

#[test]
fn malformed_values_name_the_problem() {
    use WireError::*;
    let s = |v: &str| v.to_owned();
    let cases = [
        ("", Empty),
        ("S", MissingDigits { input: s("S") }),
        ("5", MissingUnit { input: s("5") }),
        (
            "123456789S",
            TooManyDigits {
                input: s("123456789S"),
                digits: 9,
            },
        ),
        (
            "5h",
            UnknownUnit {
                input: s("5h"),
                unit: 'h',
            },
        ),
        (
            "5s",
            UnknownUnit {
                input: s("5s"),
                unit: 's',
            },
        ),
        (
            "5µ",
            UnknownUnit {
                input: s("5µ"),
                unit: 'µ',
            },
        ),
        (
            "h",
            UnknownUnit {
                input: s("h"),
                unit: 'h',
            },
        ),
        (
            "-5S",
            InvalidCharacter {
                input: s("-5S"),
                found: '-',
                index: 0,
            },
        ),
        (
            "+5S",
            InvalidCharacter {
                input: s("+5S"),
                found: '+',
                index: 0,
            },
        ),
        (
            " 5S",
            InvalidCharacter {
                input: s(" 5S"),
                found: ' ',
                index: 0,
            },
        ),
        (
            "5 S",
            InvalidCharacter {
                input: s("5 S"),
                found: ' ',
                index: 1,
            },
        ),
        (
            "5S ",
            InvalidCharacter {
                input: s("5S "),
                found: ' ',
                index: 2,
            },
        ),
        (
            "5S5",
            InvalidCharacter {
                input: s("5S5"),
                found: '5',
                index: 2,
            },
        ),
        (
            "５S",
            InvalidCharacter {
                input: s("５S"),
                found: '５',
                index: 0,
            },
        ),
        (
            "5%",
            InvalidCharacter {
                input: s("5%"),
                found: '%',
                index: 1,
            },
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(parse_timeout(value), Err(expected), "{value:?}");
    }
}

#[test]
fn display_names_problem_and_input() {
    let msg = parse_timeout("5h").unwrap_err().to_string();
    assert!(
        msg.contains("\"5h\"") && msg.contains("unknown unit 'h'"),
        "{msg}"
    );
    let msg = parse_timeout("5 S").unwrap_err().to_string();
    assert!(msg.contains("' ' at byte 1"), "{msg}");
    let msg = parse_timeout("123456789n").unwrap_err().to_string();
    assert!(msg.contains("9 digits"), "{msg}");
    assert!(WireError::Expired.to_string().contains("expired"));
}

#[test]
fn long_inputs_are_truncated_in_errors() {
    let long = "9".repeat(1000) + "S";
    let Err(WireError::TooManyDigits { input, digits }) = parse_timeout(&long) else {
        panic!("expected TooManyDigits");
    };
    assert_eq!(digits, 1000);
    assert_eq!(input, "9".repeat(32) + "…");
    // Truncation respects character boundaries.
    assert_eq!(truncate(&"é".repeat(40)), "é".repeat(32) + "…");
    assert_eq!(truncate(&"é".repeat(32)), "é".repeat(32));
}

#[test]
fn converts_to_io_error() {
    let err = io::Error::from(WireError::Expired);
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let err = io::Error::from(parse_timeout("5x").unwrap_err());
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("5x"));
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<WireError>());
    assert!(matches!(
        inner,
        Some(WireError::UnknownUnit { unit: 'x', .. })
    ));
}

#[test]
fn error_is_send_sync_static() {
    fn assert_error<E: Error + Send + Sync + 'static>() {}
    assert_error::<WireError>();
}
