//! The io park/unpark protocol: a worker with an io driver parks by blocking
//! in its ring (`Parker::park_with`), and an unpark that finds it parked runs
//! the wake hook (`Remote::wake`: a `MSG_RING` from a thread with a ring of
//! its own, an eventfd write from any other). The parker is weft's real one;
//! the ring and the eventfd are mocked (`MockRing`) with the two properties
//! the protocol relies on: an eventfd keeps its count until the read armed on
//! it completes, and a ring keeps a completion until it is reaped. So a wake
//! that lands before the worker's wait began still ends that wait.
//!
//! A lost wakeup leaves the worker blocked in the mock ring with nobody left
//! to wake it, which loom reports as a deadlock. The worker also counts its
//! parks: every return from `park_with` consumes an unpark token or a
//! completion, and every wake event makes at most one, so a worker that has
//! parked once per wake event and still sees no work fails the model.
#![cfg(weft_loom)]

use std::{cell::Cell, collections::VecDeque};

use loom::{
    sync::{
        atomic::{
            AtomicUsize,
            Ordering::{Acquire, Release, SeqCst},
        },
        Arc, Condvar, Mutex,
    },
    thread,
};
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

loom::thread_local! {
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
    /// mailbox (`io::uring::driver::Mailbox`) is a vector behind a lock
    /// with its length mirrored in an atomic; this mutex stands for its
    /// push and its take (a post is seen by whoever takes the lock after
    /// it).
    mailbox: Mutex<VecDeque<usize>>,
    /// The mailbox's length hint (`Mailbox::len`): the owner skips the lock
    /// while it reads 0.
    mailbox_len: AtomicUsize,
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
        {
            let mut mailbox = self.mailbox.lock().unwrap();
            mailbox.push_back(item);
            self.mailbox_len.store(mailbox.len(), Release);
        }
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
        if self.ring.mailbox_len.load(Acquire) == 0 {
            return;
        }
        let mut mailbox = self.ring.mailbox.lock().unwrap();
        self.taken.extend(mailbox.drain(..));
        self.ring.mailbox_len.store(0, Release);
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
fn spawn_via(via: Via, f: impl FnOnce() + 'static) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        VIA.with(|v| v.set(via));
        f();
    })
}

/// (1) and (2): `producers` threads each make work available and unpark,
/// waking through the given means; the worker must see all of it.
fn unparks_after_work(vias: &'static [Via]) {
    loom::model(move || {
        let ring = Arc::new(MockRing::default());
        let (parker, mut driver, unparker) = io_worker(&ring);
        let work = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = vias
            .iter()
            .map(|&via| {
                let (work, unparker) = (work.clone(), unparker.clone());
                spawn_via(via, move || produce(&work, &unparker))
            })
            .collect();
        run_worker(&parker, &mut driver, vias.len(), |_| {
            work.load(SeqCst) == vias.len()
        });
        for p in producers {
            p.join().unwrap();
        }
    });
}

#[test]
fn an_eventfd_unpark_after_work_is_never_lost() {
    unparks_after_work(&[Via::Eventfd]);
}

#[test]
fn a_msg_ring_unpark_after_work_is_never_lost() {
    unparks_after_work(&[Via::MsgRing]);
}

#[test]
fn two_racing_eventfd_unparks_are_never_lost() {
    unparks_after_work(&[Via::Eventfd, Via::Eventfd]);
}

#[test]
fn two_racing_msg_ring_unparks_are_never_lost() {
    unparks_after_work(&[Via::MsgRing, Via::MsgRing]);
}

#[test]
fn a_msg_ring_unpark_racing_an_eventfd_unpark_is_never_lost() {
    unparks_after_work(&[Via::MsgRing, Via::Eventfd]);
}

/// (3): the worker's wait ends for a reason of its own (one of its
/// operations completes, or its timer deadline passes) while an unpark
/// races with it leaving the park: the token the unpark leaves behind (or
/// the completion its hook posts) makes the next park return at once.
fn unpark_racing_leaving_park(via: Via) {
    loom::model(move || {
        let ring = Arc::new(MockRing::default());
        let (parker, mut driver, unparker) = io_worker(&ring);
        let work = Arc::new(AtomicUsize::new(0));
        let io = {
            let ring = ring.clone();
            thread::spawn(move || ring.post(Cqe::Io))
        };
        let producer = {
            let work = work.clone();
            spawn_via(via, move || produce(&work, &unparker))
        };
        run_worker(&parker, &mut driver, 2, |_| work.load(SeqCst) == 1);
        io.join().unwrap();
        producer.join().unwrap();
    });
}

#[test]
fn an_eventfd_unpark_racing_a_worker_leaving_park_is_kept() {
    unpark_racing_leaving_park(Via::Eventfd);
}

#[test]
fn a_msg_ring_unpark_racing_a_worker_leaving_park_is_kept() {
    unpark_racing_leaving_park(Via::MsgRing);
}

/// (4): a submission posted from a thread that does not own the ring
/// (`Remote::post_submit`: mailbox push, then an eventfd write, no parker
/// involved) is taken by the driver, whether it lands before the worker's
/// first drain, between the drain and the wait, or during the wait.
#[test]
fn a_mailbox_submit_from_a_foreign_thread_is_taken() {
    loom::model(|| {
        let ring = Arc::new(MockRing::default());
        let (parker, mut driver, _unparker) = io_worker(&ring);
        let poster = {
            let ring = ring.clone();
            thread::spawn(move || ring.post_submit(7))
        };
        run_worker(&parker, &mut driver, 1, |d| d.taken == [7]);
        poster.join().unwrap();
    });
}

/// (4) with two posters: the mailbox's length hint, which lets the owner
/// skip the lock while it reads 0, never reads 0 over an item a post left
/// while the owner was taking the ones before it (the owner clears it under
/// the lock).
#[test]
fn two_mailbox_submits_from_foreign_threads_are_both_taken() {
    loom::model(|| {
        let ring = Arc::new(MockRing::default());
        let (parker, mut driver, _unparker) = io_worker(&ring);
        let posters: Vec<_> = [7, 8]
            .into_iter()
            .map(|item| {
                let ring = ring.clone();
                thread::spawn(move || ring.post_submit(item))
            })
            .collect();
        run_worker(&parker, &mut driver, 2, |d| {
            let mut taken = d.taken.clone();
            taken.sort_unstable();
            taken == [7, 8]
        });
        for p in posters {
            p.join().unwrap();
        }
    });
}

/// (4) with an unpark through `MSG_RING` racing the post: the eventfd's
/// count must survive the worker leaving early for the unpark.
#[test]
fn a_mailbox_submit_racing_an_unpark_is_taken() {
    loom::model(|| {
        let ring = Arc::new(MockRing::default());
        let (parker, mut driver, unparker) = io_worker(&ring);
        let work = Arc::new(AtomicUsize::new(0));
        let poster = {
            let ring = ring.clone();
            thread::spawn(move || ring.post_submit(7))
        };
        let producer = {
            let work = work.clone();
            spawn_via(Via::MsgRing, move || produce(&work, &unparker))
        };
        run_worker(&parker, &mut driver, 2, |d| {
            d.taken == [7] && work.load(SeqCst) == 1
        });
        poster.join().unwrap();
        producer.join().unwrap();
    });
}
