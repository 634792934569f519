//! Any budget through `encode_timeout` (and an `Encoder` with a margin)
//! and back through `parse_timeout`: the header is valid grammar, never
//! claims more time than the budget, loses less than one unit and less
//! than 10^-5 of the budget (none in `n`), and clamps only at MAX_TIMEOUT.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weft::cancel::wire::{encode_timeout, parse_timeout, Encoder, WireError, MAX_TIMEOUT};

fn unit_nanos(unit: u8) -> u128 {
    match unit {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        other => panic!("unit {:?}", char::from(other)),
    }
}

fn check(budget: Duration, header: &str) {
    let bytes = header.as_bytes();
    let (unit, digits) = bytes.split_last().expect("a non-empty header");
    assert!(
        (1..=8).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit),
        "{budget:?} encoded as {header:?}"
    );
    let sent = parse_timeout(header).expect("an encoded header parses");
    assert!(sent <= budget, "{budget:?} encoded as {header:?}, more than the budget");
    if budget >= MAX_TIMEOUT {
        assert_eq!(header, "99999999H");
        return;
    }
    let loss = budget.as_nanos() - sent.as_nanos();
    assert!(loss < unit_nanos(*unit), "{budget:?} -> {header:?} lost {loss} ns");
    if *unit == b'n' {
        assert_eq!(loss, 0);
    } else {
        // A coarser unit only when the finer one overflowed eight digits.
        assert!(loss * 100_000 <= budget.as_nanos(), "{budget:?} -> {header:?} lost {loss} ns");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut words = data
        .chunks(8)
        .map(|c| c.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)));
    let secs = words.next().unwrap_or(0);
    let nanos = (words.next().unwrap_or(0) % 1_000_000_000) as u32;
    // Spread over every unit: the top byte picks how many seconds bits
    // to keep.
    let budget = Duration::new(secs >> (secs >> 58), nanos);
    match encode_timeout(budget) {
        Ok(header) => check(budget, &header),
        Err(e) => {
            assert!(budget.is_zero(), "{budget:?} refused: {e}");
            assert_eq!(e, WireError::Expired);
        }
    }
    let margin = Duration::from_nanos(words.next().unwrap_or(0) >> 20);
    let encoder = Encoder::new(margin);
    match encoder.encode_remaining(budget) {
        Ok(header) => {
            let left = budget.checked_sub(margin).expect("the margin fit");
            assert!(!left.is_zero());
            check(left, &header);
        }
        Err(e) => {
            assert!(budget <= margin, "{budget:?} with a margin of {margin:?} refused: {e}");
            assert_eq!(e, WireError::Expired);
        }
    }
});
