//! What weft-hyper's server reads from a request head before the handler
//! runs (`runtime/hyper/src/server.rs`, `admit`): the declared body size
//! (`content-length`, 413 over the limit) and the deadline header
//! (`grpc-timeout` format: 400 if it does not parse, 504 for a budget of 0,
//! else the deadline the handler runs under, clamped to the server's
//! maximum; without one, the server's default). Any header map (repeated
//! names, any value bytes hyper lets through) and any limits: never a
//! panic, and the verdict agrees with an independent reading of the rules.

#![no_main]

use std::time::{Duration, Instant};

use http::{header::HeaderName, HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use weft_hyper::server::{Builder, __fuzz_admit};

/// `1*8DIGIT UNIT` in nanoseconds, read independently of weft's codec.
fn grammar(s: &str) -> Option<u128> {
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

/// `content-length` as weft reads it: decimal digits (Rust's integer
/// parse also takes one leading `+`; hyper rejects such a head before
/// weft sees it, so accepting it here is harmless), fitting a u64.
fn declared_length(value: &[u8]) -> Option<u64> {
    let digits = value.strip_prefix(b"+").unwrap_or(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What `HeaderValue::to_str` accepts: visible ASCII, space and tab.
fn visible_ascii(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (32..127).contains(&b))
}

const NAMES: [&str; 5] = ["content-length", "grpc-timeout", "x-deadline", "host", "x-other"];

fuzz_target!(|data: &[u8]| {
    let mut it = data.iter().copied();
    let mut byte = || it.next().unwrap_or(0);
    // The server's limits.
    let max_body = usize::from(byte()) << (byte() % 24);
    let max_deadline = Duration::from_millis(u64::from(byte()) << (byte() % 28));
    let default = match byte() % 3 {
        0 => None,
        1 => Some(Duration::ZERO),
        _ => Some(Duration::from_millis(u64::from(byte()) * 37)),
    };
    let header_name = if byte() % 4 == 0 { "x-deadline" } else { "grpc-timeout" };
    let config = Builder::new()
        .max_body_size(max_body)
        .max_deadline(max_deadline)
        .default_deadline(default)
        .deadline_header(HeaderName::from_static(header_name));
    // The head: (name, length, value bytes) until the input ends.
    let mut headers = HeaderMap::new();
    let rest: Vec<u8> = it.collect();
    let mut i = 0;
    while i + 2 <= rest.len() {
        let name = NAMES[usize::from(rest[i]) % NAMES.len()];
        let len = usize::from(rest[i + 1] % 24);
        let end = (i + 2 + len).min(rest.len());
        let value = &rest[i + 2..end];
        i = end;
        // hyper hands weft only values `HeaderValue` accepts.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }

    let now = Instant::now();
    let verdict = __fuzz_admit(&headers, &config, now);

    // The rules, read independently; the first value of a name counts.
    let expected: Result<Option<Duration>, StatusCode> = (|| {
        if let Some(len) = headers
            .get("content-length")
            .filter(|v| visible_ascii(v.as_bytes()))
            .and_then(|v| declared_length(v.as_bytes()))
        {
            if len > max_body as u64 {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
        let budget = match headers.get(header_name) {
            Some(v) => {
                if !visible_ascii(v.as_bytes()) {
                    return Err(StatusCode::BAD_REQUEST);
                }
                let text = std::str::from_utf8(v.as_bytes()).expect("ASCII");
                let ns = grammar(text).ok_or(StatusCode::BAD_REQUEST)?;
                // 99999999H is over u64 nanoseconds: clamp first, in u128.
                let capped = ns.min(max_deadline.as_nanos());
                Some(Duration::from_nanos(u64::try_from(capped).expect("the cap fits")))
            }
            None => default.map(|d| d.min(max_deadline)),
        };
        match budget {
            Some(b) if b.is_zero() => Err(StatusCode::GATEWAY_TIMEOUT),
            b => Ok(b),
        }
    })();
    match (verdict, expected) {
        (Ok(got), Ok(budget)) => assert_eq!(got, budget.map(|b| now + b), "{headers:?}"),
        (Err((status, msg)), Err(want)) => {
            assert_eq!(status, want, "{headers:?}: {msg}");
            assert!(msg.ends_with('\n') && msg.is_ascii(), "a plain one-line answer");
        }
        (got, want) => panic!("{headers:?}: admit gave {got:?}, the rules say {want:?}"),
    }
});
