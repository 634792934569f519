//! The scheduler's idle/park protocol (`runtime/src/scheduler/idle.rs`,
//! `park.rs`) with three workers under storms of remote pushes and local
//! spawns: the loom model (`loom-tests/tests/park.rs`) stops at two workers
//! and two pushes. Each worker runs the real `Idle` transitions and
//! `Parker`; its run queue is a queue other workers steal from, as the
//! scheduler's are. A lost wakeup leaves work undone with every worker
//! parked: shuttle reports the deadlock. `scheduler.rs` runs the real
//! worker loop around the same protocol with fewer schedules per second;
//! this model reaches more of them.
//!
//! Run: `RUSTFLAGS="--cfg weft_shuttle" CARGO_TARGET_DIR=target-shuttle
//! cargo test -p shuttle-tests --release --test park`
#![cfg(weft_shuttle)]

use std::{collections::VecDeque, sync::Arc};

use shuttle::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Mutex,
    },
    thread,
};
use shuttle_tests::check;
use weft::__loom::{Idle, Parker, Unparker};

/// A unit of work: how many more units running it spawns locally.
type Work = u32;

struct Shared {
    idle: Idle,
    unparkers: Vec<Unparker>,
    /// The injector (remote pushes).
    inject: Mutex<VecDeque<Work>>,
    /// Each worker's run queue; the others steal from it.
    local: Vec<Mutex<VecDeque<Work>>>,
    /// Units pushed (remote or spawned) and units run.
    pushed: AtomicUsize,
    done: AtomicUsize,
    shutdown: AtomicBool,
}

impl Shared {
    fn notify_one(&self) {
        if let Some(w) = self.idle.worker_to_notify() {
            self.unparkers[w].unpark();
        }
    }

    /// Own queue, then the injector, then the others' queues (half of one).
    fn find(&self, me: usize) -> Option<Work> {
        if let Some(w) = self.local[me].lock().unwrap().pop_front() {
            return Some(w);
        }
        if let Some(w) = self.inject.lock().unwrap().pop_front() {
            return Some(w);
        }
        for other in (0..self.local.len()).filter(|o| *o != me) {
            let mut theirs = self.local[other].lock().unwrap();
            let n = theirs.len().div_ceil(2);
            let stolen: Vec<Work> = theirs.drain(..n).collect();
            drop(theirs);
            let mut stolen = stolen.into_iter();
            if let Some(first) = stolen.next() {
                self.local[me].lock().unwrap().extend(stolen);
                return Some(first);
            }
        }
        None
    }

    fn any_work(&self) -> bool {
        !self.inject.lock().unwrap().is_empty()
            || self.local.iter().any(|q| !q.lock().unwrap().is_empty())
    }

    /// A worker spawning onto its own queue wakes an idle peer to steal it
    /// (the scheduler's `notify_parked_local`).
    fn spawn_local(&self, me: usize, work: Work) {
        self.pushed.fetch_add(1, SeqCst);
        self.local[me].lock().unwrap().push_back(work);
        self.notify_one();
    }

    fn push_remote(&self, work: Work) {
        self.pushed.fetch_add(1, SeqCst);
        self.inject.lock().unwrap().push_back(work);
        self.notify_one();
    }
}

/// The worker loop of `scheduler/worker.rs`, reduced to the protocol.
fn worker(me: usize, shared: &Shared, parker: &Parker) {
    let mut searching = false;
    loop {
        if let Some(work) = shared.find(me) {
            if searching && shared.idle.transition_from_searching() {
                shared.notify_one();
            }
            searching = false;
            for _ in 0..work {
                shared.spawn_local(me, 0);
            }
            shared.done.fetch_add(1, SeqCst);
            continue;
        }
        if !searching && shared.idle.try_transition_to_searching() {
            searching = true;
            continue;
        }
        if shared.idle.transition_worker_to_parked(me, searching) && shared.any_work() {
            shared.notify_one();
        }
        searching = false;
        if shared.shutdown.load(SeqCst) {
            shared.idle.unpark_self(me);
            return;
        }
        parker.park(None);
        if !shared.idle.unpark_self(me) {
            searching = true;
        }
    }
}

/// `workers` workers, `remote` threads pushing `per_remote` units each;
/// a unit `n` spawns `n` more locally. The main thread waits until every
/// unit pushed has run (bounded by shuttle's step limit), then shuts down.
fn storm(workers: usize, remote: usize, per_remote: Work, fanout: Work) {
    let parkers: Vec<Parker> = (0..workers).map(|_| Parker::new()).collect();
    let shared = Arc::new(Shared {
        idle: Idle::new(workers),
        unparkers: parkers.iter().map(Parker::unparker).collect(),
        inject: Mutex::new(VecDeque::new()),
        local: (0..workers).map(|_| Mutex::new(VecDeque::new())).collect(),
        pushed: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        shutdown: AtomicBool::new(false),
    });
    let threads: Vec<_> = parkers
        .into_iter()
        .enumerate()
        .map(|(me, parker)| {
            let shared = shared.clone();
            thread::spawn(move || worker(me, &shared, &parker))
        })
        .collect();
    let pushers: Vec<_> = (0..remote)
        .map(|_| {
            let shared = shared.clone();
            thread::spawn(move || {
                for _ in 0..per_remote {
                    shared.push_remote(fanout);
                }
            })
        })
        .collect();
    for p in pushers {
        p.join().unwrap();
    }
    let expected = remote * per_remote as usize * (1 + fanout as usize);
    while shared.done.load(SeqCst) < expected {
        thread::yield_now();
    }
    shared.shutdown.store(true, SeqCst);
    for unparker in &shared.unparkers {
        unparker.unpark();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(shared.pushed.load(SeqCst), expected);
    assert_eq!(shared.done.load(SeqCst), expected, "every unit ran once");
    assert!(!shared.any_work());
}

#[test]
fn three_workers_two_remote_pushers() {
    check("three_workers_two_remote_pushers", 10_000, || {
        storm(3, 2, 2, 0)
    });
}

#[test]
fn three_workers_with_local_spawns_and_steals() {
    check("three_workers_with_local_spawns_and_steals", 10_000, || {
        storm(3, 1, 2, 2)
    });
}
