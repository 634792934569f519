//! Which workers are parked and which are searching for work.
//!
//! # Protocol (no lost wakeups)
//! - A producer that made work available (injector push, or a push to its own
//!   run queue) calls [`Idle::worker_to_notify`]: after a SeqCst fence it
//!   wakes a parked worker only if no worker is searching and some are parked.
//!   The woken worker starts as a searcher (counted by the notifier).
//! - At most half the workers search at once ([`Idle::try_transition_to_searching`]).
//! - A searcher that finds work leaves the searching state; if it was the last
//!   searcher it notifies another worker (`transition_from_searching` → true),
//!   since more work may follow the task it found.
//! - A worker parks by registering in `sleepers` and decrementing the counts
//!   (one SeqCst RMW). If it was the last searcher it re-checks every queue
//!   afterwards and notifies if there is anything its search would take
//!   (with the monitor on, a peer's short queue is its owner's, which is
//!   awake to run it; see `WorkerCtx::left_to_us`): a producer
//!   whose fence came before that RMW saw a searcher and relied on it; one
//!   whose fence came after sees the parked worker and wakes it.
//! - A worker that wakes without being picked (timer, spurious) removes itself
//!   from `sleepers` ([`Idle::unpark_self`]); one that was picked is already
//!   counted as unparked and searching.

use crate::facade::{
    atomic::{fence, AtomicUsize, Ordering::SeqCst},
    lock, Mutex,
};

const SEARCH_MASK: usize = (1 << 16) - 1;
const UNPARK_ONE: usize = 1 << 16;

#[derive(Debug)]
pub(crate) struct Idle {
    /// Searching workers in the low 16 bits, unparked workers above.
    state: AtomicUsize,
    sleepers: Mutex<Vec<usize>>,
    num_workers: usize,
}

fn searching(state: usize) -> usize {
    state & SEARCH_MASK
}

fn unparked(state: usize) -> usize {
    state >> 16
}

impl Idle {
    pub(crate) fn new(num_workers: usize) -> Idle {
        Idle {
            state: AtomicUsize::new(num_workers * UNPARK_ONE),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    /// The worker to unpark after making work available, if any. The caller
    /// unparks it.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        // Orders the caller's push before the state read (see the protocol).
        fence(SeqCst);
        if !self.should_notify() {
            return None;
        }
        let mut sleepers = lock(&self.sleepers);
        if !self.should_notify() {
            return None;
        }
        let worker = sleepers.pop()?;
        // The woken worker is unparked and searching from now.
        self.state.fetch_add(UNPARK_ONE | 1, SeqCst);
        Some(worker)
    }

    fn should_notify(&self) -> bool {
        let state = self.state.load(SeqCst);
        searching(state) == 0 && unparked(state) < self.num_workers
    }

    pub(crate) fn try_transition_to_searching(&self) -> bool {
        let state = self.state.load(SeqCst);
        if 2 * searching(state) >= self.num_workers {
            return false;
        }
        self.state.fetch_add(1, SeqCst);
        true
    }

    /// A searcher found work. True if it was the last searcher.
    #[must_use]
    pub(crate) fn transition_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1, SeqCst);
        debug_assert!(searching(prev) > 0);
        searching(prev) == 1
    }

    /// Registers `worker` as parked. True if it was the last searcher, in
    /// which case the caller must re-check the queues before parking.
    #[must_use]
    pub(crate) fn transition_worker_to_parked(&self, worker: usize, was_searching: bool) -> bool {
        let mut sleepers = lock(&self.sleepers);
        let dec = UNPARK_ONE + usize::from(was_searching);
        let prev = self.state.fetch_sub(dec, SeqCst);
        sleepers.push(worker);
        // Pairs with the fence in `worker_to_notify`: the caller's re-check
        // of the queues (plain loads inside crossbeam) must come after our
        // update in the single total order, or a producer that saw us still
        // searching and our re-check could both miss the work.
        fence(SeqCst);
        was_searching && searching(prev) == 1
    }

    /// After waking: true if `worker` was still registered as parked (woken
    /// by a timeout or for shutdown), in which case it is now unparked and
    /// not searching; false if a notifier picked it (it is searching).
    pub(crate) fn unpark_self(&self, worker: usize) -> bool {
        let mut sleepers = lock(&self.sleepers);
        let Some(pos) = sleepers.iter().position(|&w| w == worker) else {
            return false;
        };
        sleepers.swap_remove(pos);
        self.state.fetch_add(UNPARK_ONE, SeqCst);
        true
    }

    /// Workers currently parked.
    pub(crate) fn num_parked(&self) -> usize {
        self.num_workers - unparked(self.state.load(SeqCst))
    }

    /// Workers currently searching.
    pub(crate) fn num_searching(&self) -> usize {
        searching(self.state.load(SeqCst))
    }
}
