//! A registered timer's lock-free "not fired yet" (`TimeDriver::poll_fired`,
//! `time/driver.rs`): a poll with the waker the entry holds answers from
//! the shard's fire count without the wheel's lock. The model runs the real
//! driver: one thread fires the shard (first another timer, then ours), the
//! other awaits ours with `loom::future::block_on`, whose thread parks
//! until its waker is called. A poll that answered "not fired" after the
//! entry fired, with no wake left to come, parks that thread forever, which
//! loom reports as a deadlock; the fire must also be seen, not missed.
#![cfg(weft_loom)]

use std::{future::poll_fn, task::Poll};

use loom::{sync::Arc, thread};
use weft::__loom::TimeDriver;

#[test]
fn a_fire_is_never_missed_by_a_lock_free_poll() {
    loom::model(|| {
        let driver = Arc::new(TimeDriver::new());
        // Registered first so the firing thread has something to fire that
        // is not ours (it moves the shard's count before ours fires).
        let other = driver
            .register(1, std::task::Waker::noop())
            .expect("1 ms is ahead");
        let mut firer = None;
        let mut timer = None;
        let mut polls = 0;
        loom::future::block_on(poll_fn(|cx| {
            polls += 1;
            match &mut timer {
                None => {
                    timer = Some(driver.register(5, cx.waker()).expect("5 ms is ahead"));
                    // Started after the registration (a registration made
                    // concurrently with `process` is found through the
                    // shard's `next` hint, which this model does not check:
                    // the runtime unparks the shard's worker for that).
                    let driver = driver.clone();
                    firer = Some(thread::spawn(move || {
                        driver.process(1);
                        driver.process(5);
                    }));
                    Poll::Pending
                }
                Some(t) => {
                    if driver.poll_fired(t, cx.waker()) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }
            }
        }));
        firer.expect("started").join().unwrap();
        assert!(polls <= 4, "{polls} polls: woken without cause");
        if let Some(t) = timer {
            driver.deregister(t);
        }
        driver.deregister(other);
    });
}
