#![cfg(weft_loom)]
//! The signal registry's protocol (`runtime/src/signal/registry.rs`):
//! the handler's flag, the dispatcher's count-then-wake, and a listener
//! that stores its waker and reads the count again. A lost wakeup shows
//! up as a loom deadlock in `block_on`; every listener sees the delivery.

use std::{future::poll_fn, task::Poll};

use loom::{future::block_on, sync::Arc, thread};
use weft::__loom::SignalSlot;

/// Waits (as a task would) until the slot's count moves past `seen`.
fn wait(slot: &SignalSlot, key: usize, seen: u64) -> u64 {
    block_on(poll_fn(|cx| match slot.poll(key, seen, cx.waker()) {
        Some(now) => Poll::Ready(now),
        None => Poll::Pending,
    }))
}

#[test]
fn a_delivery_racing_a_waiting_listener_wakes_it() {
    loom::model(|| {
        let slot = Arc::new(SignalSlot::new());
        let (key, seen) = slot.listen();
        let dispatcher = {
            let slot = slot.clone();
            // The handler, then the dispatcher's scan after the byte.
            thread::spawn(move || {
                slot.raise();
                assert!(slot.publish());
            })
        };
        assert_eq!(wait(&slot, key, seen), seen + 1);
        dispatcher.join().unwrap();
        slot.unlisten(key);
        assert_eq!(slot.listener_count(), 0);
    });
}

#[test]
fn two_listeners_both_see_one_delivery() {
    loom::model(|| {
        let slot = Arc::new(SignalSlot::new());
        let (a, seen_a) = slot.listen();
        let (b, seen_b) = slot.listen();
        let other = {
            let slot = slot.clone();
            thread::spawn(move || wait(&slot, b, seen_b))
        };
        slot.raise();
        slot.publish();
        assert_eq!(wait(&slot, a, seen_a), seen_a + 1);
        assert_eq!(other.join().unwrap(), seen_b + 1);
    });
}

#[test]
fn a_raise_during_a_scan_is_found_by_the_next_scan() {
    loom::model(|| {
        let slot = Arc::new(SignalSlot::new());
        let (key, seen) = slot.listen();
        slot.raise();
        let handler = {
            let slot = slot.clone();
            // A second signal while the dispatcher scans; its byte makes
            // the dispatcher scan once more, below.
            thread::spawn(move || slot.raise())
        };
        let first = slot.publish();
        handler.join().unwrap();
        let second = slot.publish();
        assert!(first);
        // Either coalesced into the first delivery or counted by the next.
        let count = wait(&slot, key, seen);
        assert_eq!(count, seen + 1 + u64::from(second));
        assert!(!slot.publish(), "nothing left pending");
    });
}
