//! The breaker's config builder under any sequence of settings, then the
//! breaker it builds under any sequence of calls, outcomes and clock moves.
//! Never a panic (a bad setting is a `ConfigError`, never a crash later); a
//! built config reports what was set; the breaker never has more half-open
//! probes in flight than permits, never counts more calls than a count
//! window holds, and has no probe in flight once every permit is gone.

#![no_main]

use std::{sync::Arc, time::Duration};

use libfuzzer_sys::fuzz_target;
use weft_resilience::{
    breaker::{Backoff, Breaker, Config, State, Window},
    clock::ManualClock,
};

/// Reads the fuzzer's bytes as a stream of small numbers.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u32(&mut self) -> u32 {
        // Mostly small values (where the limits are), sometimes any.
        match self.byte().unwrap_or(0) {
            0..=199 => u32::from(self.byte().unwrap_or(0)),
            200..=249 => u32::from_le_bytes([self.byte().unwrap_or(0), self.byte().unwrap_or(0), 0, 0]),
            _ => u32::from_le_bytes([0, 0, 0, 0].map(|_: u8| self.byte().unwrap_or(0xff))),
        }
    }

    fn duration(&mut self) -> Duration {
        let raw = u64::from(self.u32());
        match self.byte().unwrap_or(0) % 4 {
            0 => Duration::from_nanos(raw),
            1 => Duration::from_micros(raw),
            2 => Duration::from_millis(raw),
            _ => Duration::from_secs(raw),
        }
    }

    fn float(&mut self) -> f64 {
        match self.byte().unwrap_or(0) % 8 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -1.0,
            3 => 0.0,
            4 => 100.0,
            _ => f64::from(self.u32()) / 10.0,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let clock = Arc::new(ManualClock::new());
    let mut builder = Config::builder().clock(clock.clone());
    let mut window = Window::Count(100);
    let mut minimum_calls = 100;
    let mut permits = 10;
    let settings = input.byte().unwrap_or(0) % 16;
    for _ in 0..settings {
        builder = match input.byte().unwrap_or(0) % 14 {
            0 => {
                let n = input.u32();
                window = Window::Count(n);
                builder.count_window(n)
            }
            1 => {
                let (span, buckets) = (input.duration(), input.u32());
                window = Window::Time { span, buckets };
                builder.time_window(span, buckets)
            }
            2 => {
                minimum_calls = input.u32();
                builder.minimum_calls(minimum_calls)
            }
            3 => builder.failure_rate_threshold(input.float()),
            4 => builder.no_failure_rate(),
            5 => builder.slow_call_threshold(input.float(), input.duration()),
            6 => builder.no_slow_calls(),
            7 => builder.consecutive_failures(input.u32()),
            8 => builder.open_backoff(Backoff::fixed(input.duration())),
            9 => builder.open_backoff(
                Backoff::exponential(input.duration(), input.float() / 10.0, input.duration())
                    .with_jitter(input.float() / 100.0),
            ),
            10 => {
                permits = input.u32();
                builder.half_open_permits(permits)
            }
            11 => builder.half_open_successes(input.u32()),
            12 => builder.half_open_max_wait(Some(input.duration()).filter(|_| input.byte().unwrap_or(0) % 2 == 0)),
            _ => builder.seed(u64::from(input.u32())),
        };
    }
    let config = match builder.build() {
        Ok(config) => config,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(config.window(), window);
    // Clamped to a count window's size, as documented.
    let expected_minimum = match window {
        Window::Count(n) => minimum_calls.min(n),
        Window::Time { .. } => minimum_calls,
    };
    assert_eq!(config.minimum_calls(), expected_minimum);
    assert_eq!(config.half_open_permits(), permits);

    let breaker = Breaker::new("fuzz", config);
    let mut held = Vec::new();
    for _ in 0..input.byte().unwrap_or(0) {
        match input.byte().unwrap_or(0) % 6 {
            0 | 1 => {
                if let Ok(permit) = breaker.acquire() {
                    held.push(permit);
                }
            }
            2 => {
                if !held.is_empty() {
                    let permit = held.swap_remove(usize::from(input.byte().unwrap_or(0)) % held.len());
                    match input.byte().unwrap_or(0) % 4 {
                        0 => permit.success(),
                        1 => permit.failure(),
                        2 => permit.ignore(),
                        _ => drop(permit),
                    }
                }
            }
            3 => clock.advance(input.duration()),
            4 => {
                let _ = breaker.call_sync(|| if input.byte().unwrap_or(0) % 2 == 0 { Ok(()) } else { Err(()) });
            }
            _ => {
                let _ = match input.byte().unwrap_or(0) % 8 {
                    0 => breaker.force_open(),
                    1 => breaker.reset(),
                    _ => continue,
                };
            }
        }
        let m = breaker.metrics();
        assert!(m.half_open_in_flight <= permits, "{m:?}");
        if let Window::Count(n) = window {
            assert!(m.counts.calls <= u64::from(n), "{m:?} with a window of {n}");
        }
        if m.state != State::HalfOpen {
            assert_eq!(m.half_open_in_flight, 0, "{m:?}");
        }
    }
    drop(held);
    assert_eq!(breaker.metrics().half_open_in_flight, 0);
});
