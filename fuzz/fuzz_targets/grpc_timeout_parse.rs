//! `parse_timeout` and `parse_deadline` on any bytes: never a panic; an
//! accepted value is exactly what the grammar says (checked against an
//! independent reading of `1*8DIGIT UNIT`), re-encodes to the same
//! duration, and a rejected one is rejected by that reading too.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weft::cancel::wire::{encode_timeout, parse_deadline, parse_timeout, MAX_TIMEOUT};

/// The grammar, read independently: `Some(nanoseconds)` if `s` is 1 to 8
/// ASCII digits and one of `HMSmun`.
fn oracle(s: &str) -> Option<u128> {
    let bytes = s.as_bytes();
    let (unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u128 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let unit_ns: u128 = match unit {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    Some(value * unit_ns)
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_timeout(s);
    match (oracle(s), &parsed) {
        (Some(ns), Ok(d)) => {
            assert_eq!(d.as_nanos(), ns, "{s:?} parsed to {d:?}");
            assert!(*d <= MAX_TIMEOUT);
            if !d.is_zero() {
                let again = encode_timeout(*d).expect("a positive budget encodes");
                assert_eq!(parse_timeout(&again), Ok(*d), "{s:?} -> {d:?} -> {again:?}");
            }
        }
        (None, Err(e)) => {
            // The error renders (and truncates long inputs) without panicking.
            let _ = e.to_string();
        }
        (expected, got) => panic!("{s:?}: the grammar says {expected:?}, parse_timeout {got:?}"),
    }
    // A local deadline from it, clamped to a cap taken from the input.
    let now = Instant::now();
    let cap = Duration::from_millis(u64::from(data.first().copied().unwrap_or(0)) * 100);
    match (parse_deadline(s, now, cap), parsed) {
        (Ok(p), Ok(d)) => {
            // The cap is at most 25.5 s: `now + cap` always fits.
            assert_eq!(p.budget, d.min(cap), "{s:?} under a cap of {cap:?}");
            assert_eq!(p.deadline, now + p.budget);
            assert_eq!(p.clamped, d > cap);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("{s:?}: parse_deadline {a:?} but parse_timeout {b:?}"),
    }
});
