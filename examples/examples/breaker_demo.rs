//! A client calling a flaky service through a circuit breaker.
//!
//! The "service" is simulated: it works, then goes down for a burst of
//! 800 ms, twice, then recovers. The client calls it every 5 ms through a
//! breaker and prints every state change (from a listener) and, each
//! 250 ms, what it saw. Runs for about three seconds and exits.
//!
//! `cargo run --release -p weft-examples --example breaker_demo`

use std::{
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use weft_resilience::breaker::{Backoff, Breaker, CallError, Config, EventKind, RejectReason};

/// The flaky service: healthy except during two outages; each call takes
/// 1 ms, and 30 % of calls fail at random during an outage's first half
/// (a service falling over) and all of them after.
fn service(started: Instant, call: u64) -> Result<&'static str, &'static str> {
    thread::sleep(Duration::from_millis(1));
    let at = started.elapsed().as_millis();
    let outage = |from: u128| (from..from + 800).contains(&at).then_some(at - from);
    match outage(300).or_else(|| outage(1500)) {
        Some(into) if into < 400 && call % 10 >= 3 => Ok("ok"),
        Some(_) => Err("503 Service Unavailable"),
        None => Ok("ok"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let config = Config::builder()
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .slow_call_threshold(80.0, Duration::from_millis(50))
        .open_backoff(
            Backoff::exponential(Duration::from_millis(100), 2.0, Duration::from_millis(800))
                .with_jitter(0.2),
        )
        .half_open_permits(2)
        .half_open_successes(3)
        .half_open_max_wait(Some(Duration::from_millis(500)))
        .listener(Arc::new(move |event| {
            if let EventKind::StateChanged {
                from,
                to,
                generation,
                cause,
            } = event.kind
            {
                println!(
                    "{:>6} ms  [{}] {from} -> {to} (generation {generation}, {cause:?})",
                    started.elapsed().as_millis(),
                    event.breaker,
                );
            }
        }))
        .build()?;
    let breaker = Breaker::new("inventory-service", config);

    let (mut ok, mut failed, mut rejected) = (0u32, 0u32, 0u32);
    let mut next_report = Duration::from_millis(250);
    let mut call = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        call += 1;
        match breaker.call_sync(|| service(started, call)) {
            Ok(_) => ok += 1,
            Err(CallError::Failed(_)) => failed += 1,
            Err(CallError::Rejected(why)) => {
                rejected += 1;
                if why.reason() == RejectReason::Open && rejected % 50 == 1 {
                    let after = why.retry_after().unwrap_or_default();
                    println!("           rejected: open, next probe in {after:?}");
                }
            }
        }
        if started.elapsed() >= next_report {
            let metrics = breaker.metrics();
            println!(
                "{:>6} ms  ok {ok:>4}  failed {failed:>3}  rejected {rejected:>4}  \
                 state {}  failure rate {:.0}%",
                started.elapsed().as_millis(),
                metrics.state,
                metrics.failure_rate,
            );
            next_report += Duration::from_millis(250);
        }
        thread::sleep(Duration::from_millis(5));
    }
    let metrics = breaker.metrics();
    println!(
        "done: {ok} ok, {failed} failed, {rejected} rejected (saved calls to a dead service); \
         final state {}, generation {}",
        metrics.state, metrics.generation
    );
    Ok(())
}
