//! Unit tests of the breaker's internals: the words behind the public
//! behaviour.

use std::{sync::Arc, time::Duration};

use super::*;
use crate::clock::ManualClock;

fn breaker(builder: ConfigBuilder) -> (Breaker, ManualClock) {
    let clock = ManualClock::new();
    let config = builder
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid");
    (Breaker::new("unit", config), clock)
}

#[test]
fn an_unpublished_open_duration_reads_as_open_with_unknown_retry() {
    let (breaker, _) = breaker(Config::builder().count_window(1).minimum_calls(1));
    // A trip whose winner has not yet written the phase word.
    let closed = breaker.word();
    assert!(breaker.cas(closed, closed.next(State::Open)).is_ok());
    let rejected = breaker.acquire().expect_err("open");
    assert_eq!(rejected.reason(), RejectReason::Open);
    assert_eq!(rejected.retry_after(), None);
}

#[test]
fn a_trip_publishes_its_deadline_tagged_with_the_new_generation() {
    let (breaker, clock) = breaker(
        Config::builder()
            .count_window(1)
            .minimum_calls(1)
            .open_backoff(Backoff::fixed(Duration::from_secs(3))),
    );
    clock.advance(Duration::from_secs(1));
    breaker.acquire().expect("closed").failure();
    let phase = PhaseWord(breaker.phase.load(Relaxed));
    assert_eq!(phase.time_for(1), Some(4_000_000));
    assert_eq!(phase.time_for(0), None);
}

#[test]
fn half_open_progress_is_not_written_for_another_generation() {
    let (breaker, _) = breaker(Config::builder());
    let word = StateWord::new(State::HalfOpen, 5);
    breaker.publish_phase(StateWord::new(State::Open, 4), Duration::from_secs(9));
    breaker.note_progress(word, Duration::from_secs(1));
    assert_eq!(
        PhaseWord(breaker.phase.load(Relaxed)).time_for(4),
        Some(9_000_000)
    );
}

#[test]
fn closed_admission_touches_no_shared_counter() {
    let (breaker, _) = breaker(Config::builder().no_slow_calls());
    let before = breaker.state.0.load(Relaxed);
    let permit = breaker.acquire().expect("closed");
    assert_eq!(breaker.state.0.load(Relaxed), before);
    assert_eq!(permit.ticket_started(), None, "untimed: no clock read");
}

#[test]
fn a_ticket_is_two_words_and_keeps_every_reading_apart_from_untimed() {
    assert_eq!(std::mem::size_of::<permit::Ticket>(), 16);
    let untimed = permit::Ticket::new(7, None);
    assert_eq!((untimed.generation(), untimed.started()), (7, None));
    for at in [0, 1, 4_000_000, u64::MAX - 1] {
        assert_eq!(permit::Ticket::new(3, Some(at)).started(), Some(at));
    }
    // The one reading that would collide with "untimed" (a clock saturated
    // after 584 years) is kept one short of it, still timed.
    assert_eq!(
        permit::Ticket::new(3, Some(u64::MAX)).started(),
        Some(u64::MAX - 1)
    );
}

#[test]
fn the_state_word_and_the_window_do_not_share_a_cache_line() {
    let (breaker, _) = breaker(Config::builder());
    let state = &breaker.state as *const _ as usize;
    let window = &breaker.window as *const _ as usize;
    assert!(state.abs_diff(window) >= 128);
}
