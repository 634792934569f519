//! The io park/unpark protocol (`Parker::with_wake_hook`/`park_with`, the
//! real code) under randomized schedules with many wakers at once: the loom
//! model (`loom-tests/tests/io_park.rs`) stops at two. The ring and the
//! eventfd are the loom model's mock (`MockRing`, the same code on shuttle's
//! primitives): an eventfd keeps its count until the read armed on it
//! completes, a ring keeps a completion until it is reaped, the wait is
//! `io_uring_enter(min_complete = 1)`. A lost wakeup leaves the worker
//! blocked in the mock ring (shuttle reports the deadlock); a worker that
//! parks more often than there were wake events without seeing its work
//! fails the run.
//!
//! Run: `RUSTFLAGS="--cfg weft_shuttle" CARGO_TARGET_DIR=target-shuttle
//! cargo test -p shuttle-tests --release --test io_park`
#![cfg(weft_shuttle)]

use std::{cell::Cell, collections::VecDeque, sync::Arc};

use shuttle::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Condvar, Mutex,
    },
    thread,
};
use shuttle_tests::check;
use weft::__loom::{Parker, Unparker};

/// How `Remote::wake` reaches a parked worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// An 8-byte write to the worker's eventfd (any thread).
    Eventfd,
    /// A `MSG_RING` completion posted into the worker's ring (a thread that
    /// has a ring of its own, i.e. another worker).
    MsgRing,
}

shuttle::thread_local! {
    /// Whether the calling thread is a worker with a ring of its own: the
    /// mock's `with_local_uring`.
    static VIA: Cell<Via> = Cell::new(Via::Eventfd);
}

/// A completion queue entry, by `user_data`.
#[derive(Debug)]
enum Cqe {
    /// `TOKEN_EVENTFD`: the read armed on the eventfd completed.
    EventfdRead,
    /// `TOKEN_MSG`: another ring's `MSG_RING`.
    Msg,
    /// An operation of the worker's own (or a timeout): ends the wait early.
    Io,
}

/// What the kernel holds for one worker: its eventfd and its ring's
/// completion queue, under one lock; the condvar is the wait in
/// `io_uring_enter(min_complete = 1)`.
#[derive(Debug, Default)]
struct Kernel {
    /// The eventfd's counter: writes add to it, a completed read takes it all.
    count: u64,
    /// A read on the eventfd was submitted and has not completed.
    read_in_flight: bool,
    /// Completions not reaped yet.
    cq: VecDeque<Cqe>,
}

/// The shared side of one worker's mocked ring (`io::uring::Remote`).
#[derive(Debug, Default)]
struct MockRing {
    kernel: Mutex<Kernel>,
    completion: Condvar,
    /// Submissions posted by threads that do not own the ring. The real
    /// mailbox is a crossbeam `Injector`, which loom cannot see into; a
    /// mutex stands for its linearizable push and steal.
    mailbox: Mutex<VecDeque<usize>>,
}

impl MockRing {
    /// `Remote::wake`: the parker's hook, run after it saw the worker PARKED.
    fn wake(&self) {
        match VIA.with(Cell::get) {
            Via::MsgRing => self.post(Cqe::Msg),
            Via::Eventfd => self.wake_eventfd(),
        }
    }

    /// `Remote::wake_eventfd`: the count is kept until a read takes it, so a
    /// write before the read is armed completes the read when it is.
    fn wake_eventfd(&self) {
        let mut kernel = self.kernel.lock().unwrap();
        kernel.count += 1;
        if kernel.read_in_flight {
            kernel.read_in_flight = false;
            kernel.count = 0;
            kernel.cq.push_back(Cqe::EventfdRead);
            self.completion.notify_one();
        }
    }

    /// Posts a completion into the ring (a `MSG_RING` delivered, or one of
    /// the worker's own operations finishing).
    fn post(&self, cqe: Cqe) {
        self.kernel.lock().unwrap().cq.push_back(cqe);
        self.completion.notify_one();
    }

    /// `Remote::post_submit`: push, then write the eventfd whether or not
    /// the owner is parked.
    fn post_submit(&self, item: usize) {
        self.mailbox.lock().unwrap().push_back(item);
        self.wake_eventfd();
    }
}

/// The owning side of the mocked ring (`io::uring::Driver`), on the worker.
#[derive(Debug)]
struct Driver {
    ring: Arc<MockRing>,
    /// `Driver::eventfd_armed`: a read on the eventfd is queued or in flight.
    eventfd_armed: bool,
    /// The eventfd read sits in the submission queue, not yet submitted.
    read_queued: bool,
    /// Mailbox items taken (the real driver pushes them into its ring).
    taken: Vec<usize>,
}

impl Driver {
    fn new(ring: Arc<MockRing>) -> Driver {
        Driver {
            ring,
            eventfd_armed: false,
            read_queued: false,
            taken: Vec::new(),
        }
    }

    /// `Driver::park`, step for step: the wait `park_with` calls.
    fn park(&mut self) {
        self.drain_mailbox();
        self.arm_eventfd();
        self.submit_and_wait();
        self.drain_mailbox();
    }

    fn drain_mailbox(&mut self) {
        let mut mailbox = self.ring.mailbox.lock().unwrap();
        self.taken.extend(mailbox.drain(..));
    }

    fn arm_eventfd(&mut self) {
        if !self.eventfd_armed {
            self.read_queued = true;
            self.eventfd_armed = true;
        }
    }

    /// `io_uring_enter(to_submit, min_complete = 1)`, then `reap`.
    fn submit_and_wait(&mut self) {
        let mut kernel = self.ring.kernel.lock().unwrap();
        if std::mem::take(&mut self.read_queued) {
            // A read on an eventfd with a count completes at once.
            if kernel.count > 0 {
                kernel.count = 0;
                kernel.cq.push_back(Cqe::EventfdRead);
            } else {
                kernel.read_in_flight = true;
            }
        }
        while kernel.cq.is_empty() {
            kernel = self.ring.completion.wait(kernel).unwrap();
        }
        for cqe in kernel.cq.drain(..) {
            match cqe {
                Cqe::EventfdRead => self.eventfd_armed = false,
                Cqe::Msg | Cqe::Io => {}
            }
        }
    }
}

/// A worker whose parker blocks in `ring`, and the parker's waking side.
fn io_worker(ring: &Arc<MockRing>) -> (Parker, Driver, Unparker) {
    let hook_ring = ring.clone();
    let parker = Parker::with_wake_hook(move || hook_ring.wake());
    let unparker = parker.unparker();
    (parker, Driver::new(ring.clone()), unparker)
}

/// The worker loop reduced to the protocol: look for work; if there is none,
/// park in the ring; repeat. `wake_events` is how many unparks, mailbox posts
/// and foreign completions the model makes: each lets `park_with` return at
/// most once, so more parks than that without the work means a wake was
/// consumed without its work being seen.
fn run_worker(
    parker: &Parker,
    driver: &mut Driver,
    wake_events: usize,
    done: impl Fn(&Driver) -> bool,
) {
    let mut parks = 0;
    while !done(driver) {
        assert!(
            parks < wake_events,
            "parked {parks} times for {wake_events} wake events and the work is still not seen"
        );
        parker.park_with(|| driver.park());
        parks += 1;
    }
}

/// Makes one unit of work available, then unparks (a remote schedule).
fn produce(work: &AtomicUsize, unparker: &Unparker) {
    work.fetch_add(1, SeqCst);
    unparker.unpark();
}

/// Runs `f` on a new thread that wakes through `via`.
fn spawn_via(via: Via, f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        VIA.with(|v| v.set(via));
        f();
    })
}

/// Producers waking through `vias` (each making `per_producer` units of
/// work, one unpark per unit), `posters` foreign threads each posting one
/// submission to the mailbox, and `io` completions of the worker's own
/// ending its wait early: the worker must see every unit and take every
/// submission, parking at most once per wake event.
fn many_wakers(vias: &'static [Via], per_producer: usize, posters: usize, io: usize) {
    let ring = Arc::new(MockRing::default());
    let (parker, mut driver, unparker) = io_worker(&ring);
    let work = Arc::new(AtomicUsize::new(0));
    let mut threads: Vec<_> = vias
        .iter()
        .map(|&via| {
            let (work, unparker) = (work.clone(), unparker.clone());
            spawn_via(via, move || {
                for _ in 0..per_producer {
                    produce(&work, &unparker);
                }
            })
        })
        .collect();
    threads.extend((0..posters).map(|item| {
        let ring = ring.clone();
        thread::spawn(move || ring.post_submit(item))
    }));
    threads.extend((0..io).map(|_| {
        let ring = ring.clone();
        thread::spawn(move || ring.post(Cqe::Io))
    }));
    let units = vias.len() * per_producer;
    let wake_events = units + posters + io;
    run_worker(&parker, &mut driver, wake_events, |d| {
        work.load(SeqCst) == units && d.taken.len() == posters
    });
    for t in threads {
        t.join().unwrap();
    }
    let mut taken = driver.taken.clone();
    taken.sort_unstable();
    assert_eq!(
        taken,
        (0..posters).collect::<Vec<_>>(),
        "each submission taken once"
    );
}

#[test]
fn four_unparkers_mixed_eventfd_and_msg_ring() {
    check("four_unparkers_mixed_eventfd_and_msg_ring", 10_000, || {
        many_wakers(
            &[Via::Eventfd, Via::MsgRing, Via::Eventfd, Via::MsgRing],
            2,
            0,
            0,
        )
    });
}

#[test]
fn unparkers_mailbox_posters_and_own_completions_at_once() {
    check(
        "unparkers_mailbox_posters_and_own_completions_at_once",
        10_000,
        || many_wakers(&[Via::MsgRing, Via::Eventfd, Via::MsgRing], 2, 2, 2),
    );
}
