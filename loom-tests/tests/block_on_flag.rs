//! A current-thread `block_on` and its future's waker: the waker sets the
//! flag and unparks (the core's parker, in its io driver or on its condvar,
//! and the thread's own); the driving loop takes the flag before each poll
//! and looks at it before parking. No wake may be lost (a loom deadlock:
//! the loop parks forever), and the poll that follows a wake sees what the
//! waker wrote before it (a stale read makes the loop park again, and
//! deadlock).
#![cfg(weft_loom)]

use loom::{
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, Condvar, Mutex,
    },
    thread,
};
use weft::__loom::{BlockOnFlag, Parker, Unparker};

/// The driving loop reduced to the protocol; `park` is the core's way to
/// wait. Ends when a poll sees `wakes` writes.
fn drive(flag: &BlockOnFlag, data: &AtomicUsize, wakes: usize, park: impl Fn()) {
    loop {
        if flag.take() && data.load(Relaxed) == wakes {
            return;
        }
        if !flag.is_set() {
            park();
        }
    }
}

fn waker(flag: &BlockOnFlag, data: &AtomicUsize, unparkers: &[&Unparker]) {
    data.fetch_add(1, Relaxed);
    flag.wake(unparkers);
}

#[test]
fn a_wake_from_another_thread_reaches_a_parked_core() {
    loom::model(|| {
        let parker = Parker::new();
        let unparker = parker.unparker();
        let flag = Arc::new(BlockOnFlag::new());
        let data = Arc::new(AtomicUsize::new(0));
        let t = {
            let (flag, data) = (flag.clone(), data.clone());
            thread::spawn(move || waker(&flag, &data, &[&unparker]))
        };
        drive(&flag, &data, 1, || parker.park(None));
        t.join().unwrap();
    });
}

/// The core parked in its io driver (`park_with`), whose wait is an
/// eventfd that keeps its count until read (a mutex and condvar here; the
/// hook is the driver's wake), and the waker unparking the thread's own
/// parker too.
#[test]
fn a_wake_reaches_a_core_parked_in_its_driver() {
    loom::model(|| {
        let eventfd = Arc::new((Mutex::new(false), Condvar::new()));
        let parker = {
            let eventfd = eventfd.clone();
            Parker::with_wake_hook(move || {
                *eventfd.0.lock().unwrap() = true;
                eventfd.1.notify_one();
            })
        };
        let thread_parker = Parker::new();
        let (core, own) = (parker.unparker(), thread_parker.unparker());
        let flag = Arc::new(BlockOnFlag::new());
        let data = Arc::new(AtomicUsize::new(0));
        let t = {
            let (flag, data) = (flag.clone(), data.clone());
            thread::spawn(move || waker(&flag, &data, &[&core, &own]))
        };
        drive(&flag, &data, 1, || {
            parker.park_with(|| {
                let mut count = eventfd.0.lock().unwrap();
                while !*count {
                    count = eventfd.1.wait(count).unwrap();
                }
                *count = false;
            })
        });
        t.join().unwrap();
        drop(thread_parker);
    });
}

/// Two wakes from two threads: the loop ends only after a poll saw both.
#[test]
fn two_wakes_from_two_threads() {
    loom::model(|| {
        let parker = Parker::new();
        let flag = Arc::new(BlockOnFlag::new());
        let data = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (flag, data, unparker) = (flag.clone(), data.clone(), parker.unparker());
                thread::spawn(move || waker(&flag, &data, &[&unparker]))
            })
            .collect();
        drive(&flag, &data, 2, || parker.park(None));
        for t in threads {
            t.join().unwrap();
        }
    });
}
