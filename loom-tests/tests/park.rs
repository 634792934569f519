//! The idle-worker protocol and the parker: a producer that makes work
//! available and a worker that gives up and parks never lose the wakeup (a
//! lost one shows up as a loom deadlock: the worker parks forever).
#![cfg(weft_loom)]

use loom::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    thread,
};
use weft::__loom::{Idle, Parker, Unparker};

/// Pops a unit of work if there is one.
fn take(work: &AtomicUsize) -> bool {
    work.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// One worker's loop, reduced to the protocol: look for work, search, park.
/// Exits once `shutdown` is set and it finds nothing more to do.
fn worker(
    idx: usize,
    idle: &Idle,
    parker: &Parker,
    unparkers: &[Unparker],
    work: &AtomicUsize,
    done: &AtomicUsize,
    shutdown: &AtomicBool,
) {
    let mut searching = false;
    loop {
        if take(work) {
            if searching && idle.transition_from_searching() {
                if let Some(w) = idle.worker_to_notify() {
                    unparkers[w].unpark();
                }
            }
            searching = false;
            done.fetch_add(1, SeqCst);
            continue;
        }
        if !searching && idle.try_transition_to_searching() {
            searching = true;
            continue;
        }
        if idle.transition_worker_to_parked(idx, searching) && work.load(SeqCst) > 0 {
            if let Some(w) = idle.worker_to_notify() {
                unparkers[w].unpark();
            }
        }
        searching = false;
        if shutdown.load(SeqCst) {
            idle.unpark_self(idx);
            return;
        }
        parker.park(None);
        if !idle.unpark_self(idx) {
            searching = true;
        }
    }
}

fn producer(idle: &Idle, unparkers: &[Unparker], work: &AtomicUsize) {
    work.fetch_add(1, SeqCst);
    if let Some(w) = idle.worker_to_notify() {
        unparkers[w].unpark();
    }
}

/// `workers` workers on their own threads, `pushes` remote pushes from the
/// model's main thread, which then waits for all the work to be done: a lost
/// wakeup leaves the work undone and a worker parked, and the wait never ends.
fn run_model(workers: usize, pushes: usize) {
    loom::model(move || {
        let idle = Arc::new(Idle::new(workers));
        let parkers: Vec<Parker> = (0..workers).map(|_| Parker::new()).collect();
        let unparkers: Arc<Vec<Unparker>> =
            Arc::new(parkers.iter().map(Parker::unparker).collect());
        let work = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let shutdown = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = parkers
            .into_iter()
            .enumerate()
            .map(|(idx, parker)| {
                let (idle, unparkers, work, done, shutdown) = (
                    idle.clone(),
                    unparkers.clone(),
                    work.clone(),
                    done.clone(),
                    shutdown.clone(),
                );
                thread::spawn(move || {
                    worker(idx, &idle, &parker, &unparkers, &work, &done, &shutdown)
                })
            })
            .collect();
        for _ in 0..pushes {
            producer(&idle, &unparkers, &work);
        }
        while done.load(SeqCst) < pushes {
            thread::yield_now();
        }
        shutdown.store(true, SeqCst);
        for unparker in unparkers.iter() {
            unparker.unpark();
        }
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn one_worker_one_remote_push() {
    run_model(1, 1);
}

#[test]
fn two_workers_one_remote_push() {
    run_model(2, 1);
}

#[test]
fn one_worker_two_remote_pushes() {
    run_model(1, 2);
}

#[test]
fn unpark_before_park_is_kept() {
    loom::model(|| {
        let parker = Parker::new();
        let unparker = parker.unparker();
        let t = thread::spawn(move || unparker.unpark());
        parker.park(None);
        t.join().unwrap();
    });
}
