//! The current-thread flavour (`Builder::new_current_thread`): one worker
//! and no thread of its own; the thread inside `block_on` is the worker.
//!
//! # Protocol
//! The worker's state (a `WorkerCtx`: run queue, LIFO slot, io driver,
//! parker, timers' shard 0) is the *core*. While no thread drives the
//! runtime it sits in the runtime's [`CoreSlot`]. `block_on` takes it out,
//! runs the worker's rounds on the calling thread between polls of its own
//! future ([`WorkerCtx::run_round`]), and puts it back when the future is
//! done, also when the future panics (a drop guard).
//!
//! 1. While a thread holds the core, everything else is the multi-thread
//!    runtime's protocol with one worker: spawns and wakes from other
//!    threads go to the injector and unpark the parked core through the
//!    idle accounting (`idle.rs`), which wakes its io driver. The
//!    `block_on` future's waker sets `woken` and unparks the core the same
//!    way; the core re-checks `woken` before it parks, and the parker's
//!    token covers a wake that comes between the check and the park.
//! 2. While nobody holds the core, the worker counts as unparked (it left
//!    `idle`'s sleepers when its last park ended), so a remote spawn
//!    notifies nobody: the task waits in the injector for the next
//!    `block_on`. Nothing runs, timers included, until then.
//! 3. A second `block_on` that finds the core taken polls only its own
//!    future, woken by its waker, and registers itself in the slot's
//!    waiters under the slot's lock; whoever puts the core back (under the
//!    same lock) unparks every waiter, so the next one takes the core. A
//!    waiter that checked before the core came back is registered before
//!    the put-back looks at the list: no hand-over is lost.
//! 4. Shutdown (`CoreSlot::close`): the slot is closed, the runtime's
//!    shutdown flag is already set and the core unparked; a driving thread
//!    sees the flag at its next round, drains its queues and puts the
//!    core back; `close` waits for that (bounded by the shutdown's
//!    timeout) and hands the core to the runtime, which drops it. A
//!    `block_on` that finds the slot closed polls its own future only.
//! 5. Local runtimes (`LocalRuntime`, `spawn_local`): the slot has an
//!    owner thread, and `block_on` on any other thread panics before it
//!    touches the core. So `!Send` tasks are polled only on the owner; they
//!    are dropped there too, because the `LocalRuntime` is `!Send` and its
//!    drop (or `shutdown_timeout`) is the only way to shut it down.
//!
//! The slot is a plain `std` mutex and condvar, held for a few loads and
//! stores around a hand-over (never while tasks run); the flavour is not
//! run under loom or shuttle, whose models start the multi-thread runtime.
//! The lock-free part, the `block_on` future's wake flag against the
//! parker, is [`WakeFlag`], on the facade, with a loom model.

use std::{
    future::Future,
    pin::{pin, Pin},
    sync::{Arc as StdArc, Condvar, Mutex},
    task::{Context, Poll, Wake, Waker},
    thread::ThreadId,
    time::Instant,
};

use super::{
    park::{Parker, Unparker},
    worker::WorkerCtx,
    Handle,
};
use crate::{
    context, coop,
    facade::atomic::{AtomicBool, Ordering::*},
};

/// Where a current-thread runtime's core waits between `block_on`s.
pub(crate) struct CoreSlot {
    state: Mutex<SlotState>,
    /// Signalled when the core is put back (for `close`).
    returned: Condvar,
    /// A local runtime's thread: the only one that may drive it.
    owner: Option<ThreadId>,
}

struct SlotState {
    /// The core, while no thread drives the runtime.
    core: Option<Box<WorkerCtx>>,
    /// Shut down: the core is gone or about to be.
    closed: bool,
    /// `block_on`s waiting for the core (each registered once).
    waiters: Vec<StdArc<BlockOnSignal>>,
}

impl CoreSlot {
    pub(crate) fn new(owner: Option<ThreadId>) -> CoreSlot {
        CoreSlot {
            state: Mutex::new(SlotState {
                core: None,
                closed: false,
                waiters: Vec::new(),
            }),
            returned: Condvar::new(),
            owner,
        }
    }

    /// The thread of a local runtime.
    pub(crate) fn owner(&self) -> Option<ThreadId> {
        self.owner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // Nothing panics while the lock is held.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the core built by `Runtime::start`.
    pub(crate) fn put_initial(&self, core: Box<WorkerCtx>) {
        self.lock().core = Some(core);
    }

    /// Takes the core, or registers `signal` to be unparked when it comes
    /// back (step 3). `Err(true)`: the slot is closed.
    fn take_or_wait(&self, signal: &StdArc<BlockOnSignal>) -> Result<Box<WorkerCtx>, bool> {
        let mut state = self.lock();
        if state.closed {
            return Err(true);
        }
        if let Some(core) = state.core.take() {
            state.waiters.retain(|w| !StdArc::ptr_eq(w, signal));
            return Ok(core);
        }
        if !state.waiters.iter().any(|w| StdArc::ptr_eq(w, signal)) {
            state.waiters.push(signal.clone());
        }
        Err(false)
    }

    fn forget_waiter(&self, signal: &StdArc<BlockOnSignal>) {
        self.lock().waiters.retain(|w| !StdArc::ptr_eq(w, signal));
    }

    fn put_back(&self, core: Box<WorkerCtx>) {
        let waiters = {
            let mut state = self.lock();
            state.core = Some(core);
            std::mem::take(&mut state.waiters)
        };
        self.returned.notify_all();
        for waiter in waiters {
            waiter.thread.unpark();
        }
    }

    /// Closes the slot (shutdown, step 4) and returns the core once the
    /// thread driving it (if any) has put it back, waiting until
    /// `deadline`; `None` if it did not in time (it is then dropped by
    /// nobody: that thread is stuck in a poll, and keeps the core).
    pub(crate) fn close(&self, deadline: Option<Instant>) -> Option<Box<WorkerCtx>> {
        let mut state = self.lock();
        state.closed = true;
        for waiter in std::mem::take(&mut state.waiters) {
            waiter.thread.unpark();
        }
        loop {
            if let Some(core) = state.core.take() {
                return Some(core);
            }
            state = match deadline {
                None => self.returned.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    self.returned
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

/// A `block_on` future's wake flag (step 1): its waker sets it, then
/// unparks whoever may be waiting for it; the driving loop takes it before
/// each poll and looks at it before parking. The parker's state word
/// orders the rest: a park that began before the unpark is woken, one that
/// begins after it finds the token, and either way the next `take` sees
/// the flag. loom-checked (`loom-tests/tests/block_on_flag.rs`).
#[derive(Debug)]
pub(crate) struct WakeFlag(AtomicBool);

impl WakeFlag {
    /// Set: the future's first poll needs no wake.
    pub(crate) fn new() -> WakeFlag {
        WakeFlag(AtomicBool::new(true))
    }

    /// Sets the flag and unparks `unparkers`. Release: what the waker did
    /// before is seen by the poll whose `take` finds the flag.
    pub(crate) fn wake(&self, unparkers: &[&Unparker]) {
        // A swap where a store would do under the memory model: with a
        // plain store, loom let the loop's take after the unpark read the
        // value of its take before the store (and park for ever), which
        // the C++ model forbids (the unpark orders the store before that
        // take). An RMW is always the newest value in loom too; the cost
        // is an `xchg` on a path that does SeqCst swaps to unpark anyway.
        self.0.swap(true, Release);
        for unparker in unparkers {
            unparker.unpark();
        }
    }

    /// Clears the flag; true if it was set (then poll). Acquire: pairs
    /// with `wake`.
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Acquire)
    }

    /// True if set (do not park).
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Acquire)
    }
}

/// The waker of a `block_on` future on a current-thread runtime.
struct BlockOnSignal {
    woken: WakeFlag,
    /// The `block_on` thread's own parker, for waits without the core.
    thread: Unparker,
    /// The core's parker (its io driver), for waits with it.
    core: Unparker,
}

impl Wake for BlockOnSignal {
    fn wake(self: StdArc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &StdArc<Self>) {
        // Whichever way the thread waits (with the core or without), it
        // returns; the other unpark leaves a token, at most one spare round.
        self.woken.wake(&[&self.core, &self.thread]);
    }
}

/// `Handle::block_on` on a current-thread runtime (see the module doc).
pub(crate) fn block_on<F: Future>(handle: &Handle, slot: &CoreSlot, future: F) -> F::Output {
    if let Some(owner) = slot.owner {
        assert!(
            std::thread::current().id() == owner,
            "`block_on` called on a LocalRuntime from a thread other than the one that built \
             it: its `!Send` tasks may only run on that thread"
        );
    }
    let parker = Parker::new();
    let signal = StdArc::new(BlockOnSignal {
        woken: WakeFlag::new(),
        thread: parker.unparker(),
        core: handle.shared.remotes[0].unparker.clone(),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        // After shutdown began the core only drains (step 4): leave it.
        let taken = if handle.shared.shutdown.load(Acquire) {
            Err(true)
        } else {
            slot.take_or_wait(&signal)
        };
        match taken {
            Ok(core) => {
                let core = PutBack {
                    slot,
                    core: Some(core),
                };
                let ctx = core.core.as_deref().expect("held until dropped");
                let out = context::set_worker(ctx, || {
                    run_until(ctx, future.as_mut(), &signal.woken, &mut cx)
                });
                drop(core);
                if let Some(out) = out {
                    return out;
                }
                // Shut down meanwhile: poll the future alone from now on.
                continue;
            }
            Err(_closed) => {}
        }
        if signal.woken.take() {
            if let Poll::Ready(out) = coop::with_budget(|| future.as_mut().poll(&mut cx)) {
                slot.forget_waiter(&signal);
                return out;
            }
        }
        parker.park(None);
    }
}

/// Puts the core back when `block_on` leaves, by return or by panic.
struct PutBack<'a> {
    slot: &'a CoreSlot,
    core: Option<Box<WorkerCtx>>,
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            self.slot.put_back(core);
        }
    }
}

/// Drives the core and the future until the future is ready (`Some`) or
/// the runtime shuts down (`None`, the core's queues drained).
fn run_until<F: Future>(
    core: &WorkerCtx,
    mut future: Pin<&mut F>,
    woken: &WakeFlag,
    cx: &mut Context<'_>,
) -> Option<F::Output> {
    loop {
        if woken.take() {
            if let Poll::Ready(out) = coop::with_budget(|| future.as_mut().poll(cx)) {
                return Some(out);
            }
        }
        if !core.run_round(woken) {
            return None;
        }
    }
}
