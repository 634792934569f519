//! A barrier: `n` tasks wait until all of them have arrived.
//!
//! # Protocol
//! - Everything is under one facade `Mutex`: the number `arrived` in the
//!   current `generation`, and the intrusive list of the waiting tasks,
//!   each node holding the generation it arrived in.
//! - The `n`-th arrival is the leader: it does not wait. Under the lock it
//!   bumps the generation and resets `arrived`, then pops and wakes the
//!   waiters of the finished generation in batches of
//!   [`WAKE_BATCH`](super::semaphore::WAKE_BATCH), taking the lock again for
//!   each. A waiter whose node's generation is behind the barrier's is
//!   released, whether its node was popped yet or not.
//! - **The cancel hand-back rule.** A waiter that leaves before its
//!   generation is released — its scope cancelled or past its deadline
//!   (seen at its next poll), or its future dropped — unlinks its node and
//!   withdraws its arrival, so the barrier still waits for `n` tasks that
//!   are actually there. One that leaves after the release has nothing to
//!   give back (the leader, which never waits, is the only one told it
//!   led).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    ptr::NonNull,
    task::{ready, Context, Poll},
};

use super::{
    semaphore::WakeList,
    wait_list::{WaitList, Waiter},
};
use crate::{
    cancel::{self, Cancelled},
    coop,
    facade::{lock, Mutex, MutexGuard},
};

/// Lets `n` tasks wait for each other: tokio's `Barrier` API, with `wait()`
/// an await point of the task's scope (see the [module docs](super)).
pub struct Barrier {
    n: usize,
    state: Mutex<State>,
}

struct State {
    arrived: usize,
    generation: usize,
    /// Node value: the generation the waiter arrived in.
    waiters: WaitList<usize>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Barrier")
            .field("n", &self.n)
            .field("arrived", &state.arrived)
            .finish()
    }
}

/// What [`Barrier::wait`] tells one task: whether it was the leader (the
/// last to arrive; exactly one per generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for the one task whose arrival released the others.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` tasks (`0` acts as `1`, as in tokio and std).
    pub fn new(n: usize) -> Barrier {
        Barrier {
            n: n.max(1),
            state: Mutex::new(State {
                arrived: 0,
                generation: 0,
                waiters: WaitList::new(),
            }),
        }
    }

    /// Waits until `n` tasks are waiting, then releases them all.
    ///
    /// An await point: in a cancelled scope or past its deadline it returns
    /// the [`Cancelled`] at once, every time it is polled; a task that
    /// leaves that way (or drops the wait) before the release no longer
    /// counts as arrived.
    pub async fn wait(&self) -> Result<BarrierWaitResult, Cancelled> {
        BarrierWait {
            barrier: self,
            phase: Phase::Init,
            node: Waiter::new(0),
        }
        .await
    }

    /// The leader's release of generation `gen`: wakes its waiters in
    /// batches (the lock is released around each batch of wakes).
    fn release<'a>(&'a self, mut state: MutexGuard<'a, State>, gen: usize) {
        loop {
            let mut wakers = WakeList::new();
            let mut more = false;
            while let Some(node) = state.waiters.front() {
                // SAFETY: a linked node is live and we hold the lock.
                let waiter = unsafe { &mut *node.as_ptr() };
                if waiter.value != gen {
                    break; // arrived in the next generation
                }
                if wakers.is_full() {
                    more = true;
                    break;
                }
                state.waiters.pop_front();
                if let Some(w) = waiter.waker.take() {
                    wakers.push(w);
                }
            }
            drop(state);
            wakers.wake_all();
            if !more {
                return;
            }
            state = lock(&self.state);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Init,
    /// Arrived, and linked unless already released.
    Waiting,
    Done(bool),
}

struct BarrierWait<'a> {
    barrier: &'a Barrier,
    phase: Phase,
    node: Waiter<usize>,
}

// SAFETY: `node` is only touched under the barrier's lock while another
// thread can reach it.
unsafe impl Send for BarrierWait<'_> {}

impl BarrierWait<'_> {
    /// The hand-back rule: unlink, and withdraw the arrival unless the
    /// generation was released.
    fn leave(&mut self) {
        if self.phase != Phase::Waiting {
            return;
        }
        self.phase = Phase::Init;
        let mut state = lock(&self.barrier.state);
        // SAFETY: our node, only ever linked into this list; we hold the
        // lock.
        unsafe { state.waiters.remove(NonNull::from(&mut self.node)) };
        if self.node.value == state.generation {
            state.arrived -= 1;
        }
    }
}

impl Future for BarrierWait<'_> {
    type Output = Result<BarrierWaitResult, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the node is never moved out of the future.
        let this = unsafe { self.get_unchecked_mut() };
        let restore = ready!(coop::poll_proceed(cx));
        if let Some(c) = cancel::poll_cancelled(None, false) {
            this.leave();
            restore.made_progress();
            return Poll::Ready(Err(c));
        }
        match this.phase {
            Phase::Done(leader) => {
                restore.made_progress();
                Poll::Ready(Ok(BarrierWaitResult(leader)))
            }
            Phase::Init => {
                let mut state = lock(&this.barrier.state);
                if state.arrived + 1 == this.barrier.n {
                    let gen = state.generation;
                    state.generation = gen.wrapping_add(1);
                    state.arrived = 0;
                    this.phase = Phase::Done(true);
                    this.barrier.release(state, gen);
                    restore.made_progress();
                    return Poll::Ready(Ok(BarrierWaitResult(true)));
                }
                drop(state);
                // About to wait: arm the scope's deadline timer (no node is
                // made: see "Waking a cancelled waiter" in `semaphore.rs`).
                if let Some(c) = cancel::poll_cancelled(None, true) {
                    restore.made_progress();
                    return Poll::Ready(Err(c));
                }
                let mut state = lock(&this.barrier.state);
                if state.arrived + 1 == this.barrier.n {
                    // The others arrived while the lock was released.
                    let gen = state.generation;
                    state.generation = gen.wrapping_add(1);
                    state.arrived = 0;
                    this.phase = Phase::Done(true);
                    this.barrier.release(state, gen);
                    restore.made_progress();
                    return Poll::Ready(Ok(BarrierWaitResult(true)));
                }
                state.arrived += 1;
                this.node.value = state.generation;
                this.node.set_waker(cx.waker());
                // SAFETY: the node is pinned in this future (which unlinks
                // it in `Drop`), not linked, and we hold the lock.
                unsafe { state.waiters.push_back(NonNull::from(&mut this.node)) };
                this.phase = Phase::Waiting;
                crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::Barrier);
                Poll::Pending
            }
            Phase::Waiting => {
                let mut state = lock(&this.barrier.state);
                if this.node.value == state.generation {
                    this.node.set_waker(cx.waker());
                    crate::sync::record_wait(cx.waker(), crate::sync::SyncOp::Barrier);
                    return Poll::Pending;
                }
                // Released (perhaps not yet popped by the leader's batches).
                // SAFETY: as in `leave`.
                unsafe { state.waiters.remove(NonNull::from(&mut this.node)) };
                this.phase = Phase::Done(false);
                restore.made_progress();
                Poll::Ready(Ok(BarrierWaitResult(false)))
            }
        }
    }
}

impl Drop for BarrierWait<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::{
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use super::*;

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_dropped_waiter_withdraws_its_arrival() {
        let b = Barrier::new(2);
        {
            let mut first = pin!(b.wait());
            assert!(poll_once(first.as_mut()).is_pending());
            assert_eq!(lock(&b.state).arrived, 1);
        }
        assert_eq!(lock(&b.state).arrived, 0);
        let mut w = pin!(b.wait());
        assert!(poll_once(w.as_mut()).is_pending());
        let leader = poll_once(pin!(b.wait()));
        assert_eq!(leader, Poll::Ready(Ok(BarrierWaitResult(true))));
        assert_eq!(
            poll_once(w.as_mut()),
            Poll::Ready(Ok(BarrierWaitResult(false)))
        );
    }

    #[test]
    fn more_waiters_than_a_batch_are_released_and_the_barrier_is_reusable() {
        let n = super::super::semaphore::WAKE_BATCH * 2 + 2;
        let b = Barrier::new(n);
        for _round in 0..2 {
            let mut futs: Vec<_> = (0..n - 1).map(|_| Box::pin(b.wait())).collect();
            for f in &mut futs {
                assert!(poll_once(f.as_mut()).is_pending());
            }
            assert_eq!(
                poll_once(pin!(b.wait())),
                Poll::Ready(Ok(BarrierWaitResult(true)))
            );
            for f in &mut futs {
                assert_eq!(
                    poll_once(f.as_mut()),
                    Poll::Ready(Ok(BarrierWaitResult(false)))
                );
            }
        }
        assert!(lock(&b.state).waiters.is_empty());
    }
}
