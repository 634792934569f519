#![cfg(weft_loom)]
//! `weft::sync::Semaphore` (and the `Mutex` on it) under every interleaving
//! loom can find: a waiter dropped (a cancelled wait) while a release
//! assigns it permits — the permits are neither lost nor counted twice; a
//! release racing a waiter's link — no lost wakeup (a loom deadlock in
//! `block_on`); a close racing a waiter; a mutex's critical sections never
//! overlap; `OnceCell` and `Barrier`, built on it or on the same lock.
//!
//! The wait futures run outside any task, so no scope cancels them: a
//! cancellation reaches them as their drop (what `timeout`, an abort or the
//! scope check's `leave` do), which is the race that matters here.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use loom::{
    future::block_on,
    sync::atomic::{AtomicUsize, Ordering::SeqCst},
    thread,
};
use weft::sync::{error::AcquireError, Barrier, Mutex, OnceCell, Semaphore};

fn poll_noop<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_waiter_dropped_while_permits_are_assigned_loses_none() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.add_permits(2))
        };
        {
            let mut wait = Box::pin(sem.acquire_many(3));
            // Linked with the 1 permit there, or done if the 2 came first.
            if let Poll::Ready(permit) = poll_noop(wait.as_mut()) {
                drop(permit.unwrap());
            }
            // Dropped: whatever it was assigned goes back.
        }
        releaser.join().unwrap();
        assert_eq!(sem.available_permits(), 3);
        assert_eq!(sem.try_acquire_many(3).unwrap().num_permits(), 3);
    });
}

/// The leaver may be first in line and hold the first permit when it
/// leaves: the permit must reach the waiter behind it.
#[test]
fn a_leaving_waiter_hands_its_permit_to_the_next() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let leaver = {
            let sem = sem.clone();
            thread::spawn(move || {
                let mut wait = Box::pin(sem.acquire_many(2));
                // At most 1 permit exists before the join below.
                assert!(poll_noop(wait.as_mut()).is_pending());
            })
        };
        let stayer = {
            let sem = sem.clone();
            thread::spawn(move || block_on(sem.acquire()).map(|p| p.forget()))
        };
        sem.add_permits(1);
        leaver.join().unwrap();
        stayer.join().unwrap().unwrap();
        sem.add_permits(1);
        assert_eq!(sem.available_permits(), 1, "2 added, 1 forgotten");
    });
}

#[test]
fn a_release_racing_a_waiter_never_loses_its_wakeup() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let releaser = {
            let sem = sem.clone();
            thread::spawn(move || sem.add_permits(1))
        };
        let permit = block_on(sem.acquire()).unwrap();
        assert_eq!(permit.num_permits(), 1);
        drop(permit);
        releaser.join().unwrap();
        assert_eq!(sem.available_permits(), 1);
    });
}

#[test]
fn a_close_racing_a_waiter_wakes_it_and_keeps_its_permit() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(1));
        let closer = {
            let sem = sem.clone();
            thread::spawn(move || sem.close())
        };
        let got = block_on(sem.acquire_many(2)).map(|p| p.num_permits());
        closer.join().unwrap();
        assert_eq!(got, Err(AcquireError::Closed));
        assert_eq!(sem.available_permits(), 1, "its partial permit came back");
    });
}

#[test]
fn mutex_sections_never_overlap_and_no_wakeup_is_lost() {
    loom::model(|| {
        let m = Arc::new(Mutex::new(()));
        let counter = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (m, counter) = (m.clone(), counter.clone());
                thread::spawn(move || {
                    let g = block_on(m.lock()).unwrap();
                    // A split read-modify-write: a lost update if two
                    // holders ever overlap.
                    let v = counter.load(SeqCst);
                    thread::yield_now();
                    counter.store(v + 1, SeqCst);
                    drop(g);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(SeqCst), 2);
        assert!(m.try_lock().is_ok());
    });
}

/// `OnceCell` on the semaphore: an initializer dropped mid-way (a cancelled
/// task) races a waiter, which then initializes the cell itself.
#[test]
fn once_cell_dropped_initializer_lets_the_waiter_initialize() {
    loom::model(|| {
        let cell = Arc::new(OnceCell::<u32>::new());
        let dropper = {
            let cell = cell.clone();
            thread::spawn(move || {
                let mut init = Box::pin(cell.get_or_init(std::future::pending));
                match poll_noop(init.as_mut()) {
                    Poll::Ready(v) => *v.unwrap(), // the other one was first
                    Poll::Pending => 0,
                }
            })
        };
        let mine = *block_on(cell.get_or_init(|| async { 2 })).unwrap();
        let theirs = dropper.join().unwrap();
        assert_eq!(mine, 2);
        assert!(theirs == 0 || theirs == 2);
        assert_eq!(cell.get(), Some(&2));
    });
}

/// `Barrier` of 2 from two threads: both pass, exactly one leads.
#[test]
fn barrier_releases_both_with_one_leader() {
    loom::model(|| {
        let b = Arc::new(Barrier::new(2));
        let other = {
            let b = b.clone();
            thread::spawn(move || block_on(b.wait()).unwrap().is_leader())
        };
        let me = block_on(b.wait()).unwrap().is_leader();
        assert!(me != other.join().unwrap());
    });
}
