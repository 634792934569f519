//! Helpers shared by the scenario files: runtimes, drop counters, a gate
//! tasks can wait on, bounded waits and a tiny std-only executor.
//!
//! Every wait here is bounded: a test that would hang fails instead.

#![allow(dead_code)]

pub(crate) mod net;

use std::{
    future::Future,
    panic,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex, Once,
    },
    task::{Context, Poll, Wake, Waker},
    thread,
    time::{Duration, Instant},
};

use weft::runtime::{Builder, Runtime};

/// Receives `n` results of tasks that must each have been cancelled,
/// within [`LIMIT`] each, and returns their cancellations.
pub(crate) fn recv_cancellations(
    rx: &std::sync::mpsc::Receiver<Result<(), weft::cancel::Cancelled>>,
    n: usize,
) -> Vec<weft::cancel::Cancelled> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(LIMIT)
                .unwrap_or_else(|e| panic!("task {i} of {n} did not finish: {e}"))
                .expect_err("the task was cancelled")
        })
        .collect()
}

/// The longest any single wait in the suite may take before the test fails.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// A runtime with `workers` worker threads and defaults otherwise.
pub(crate) fn rt(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("building a runtime with valid settings")
}

/// [`rt`] with the stuck-poll monitor off, for tests that count
/// allocations: a stuck-poll report allocates (its log line), and on a
/// loaded machine a test's poll can outlast the threshold, which says
/// nothing about the allocations under test.
pub(crate) fn unmonitored_rt(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .monitor(false)
        .build()
        .expect("building a runtime with valid settings")
}

/// Runs `future` on `rt` and fails the test if it takes longer than [`LIMIT`].
pub(crate) fn block_on_bounded<F: Future>(rt: &Runtime, future: F) -> F::Output {
    block_on_within(rt, LIMIT, future)
}

/// Runs `future` on `rt` and fails the test if it takes longer than `limit`.
pub(crate) fn block_on_within<F: Future>(rt: &Runtime, limit: Duration, future: F) -> F::Output {
    rt.block_on(async {
        weft::time::timeout(limit, future)
            .await
            .expect("the test's future did not finish within the limit")
    })
}

/// Polls `cond` until it holds or [`LIMIT`] passes; true if it held.
pub(crate) fn eventually(cond: impl FnMut() -> bool) -> bool {
    eventually_within(LIMIT, cond)
}

/// Polls `cond` until it holds or `limit` passes; true if it held.
pub(crate) fn eventually_within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits (bounded) until `rt` has no live task, and asserts it got there.
/// A joiner can see a task's output a moment before the task has left the
/// registry, so `alive_tasks` is awaited rather than read once.
pub(crate) fn assert_no_live_tasks(rt: &Runtime) {
    let ok = eventually(|| rt.metrics().alive_tasks == 0);
    assert!(
        ok,
        "tasks leaked: alive_tasks is still {} after every task finished",
        rt.metrics().alive_tasks
    );
}

/// Counts how many times values made from it were dropped.
#[derive(Clone, Debug, Default)]
pub(crate) struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    pub(crate) fn new() -> DropCounter {
        DropCounter::default()
    }

    /// A value whose drop increments this counter.
    pub(crate) fn token(&self) -> DropToken {
        DropToken(self.0.clone())
    }

    pub(crate) fn get(&self) -> usize {
        self.0.load(SeqCst)
    }

    /// Waits (bounded) until at least `n` drops were counted; returns the count.
    pub(crate) fn wait_for(&self, n: usize) -> usize {
        eventually(|| self.get() >= n);
        self.get()
    }
}

/// Increments its [`DropCounter`] when dropped.
#[derive(Debug)]
pub(crate) struct DropToken(Arc<AtomicUsize>);

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A future that never completes and counts its own drop.
pub(crate) async fn pending_forever(token: DropToken) {
    let _token = token;
    std::future::pending::<()>().await;
}

/// A one-way latch: tasks wait on it until someone opens it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Gate(Arc<Mutex<GateState>>);

#[derive(Debug, Default)]
pub(crate) struct GateState {
    open: bool,
    wakers: Vec<Waker>,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate::default()
    }

    pub(crate) fn open(&self) {
        let wakers = {
            let mut state = self.0.lock().unwrap();
            state.open = true;
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    pub(crate) async fn wait(&self) {
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock().unwrap();
            if state.open {
                Poll::Ready(())
            } else {
                state.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// A flag to set from one place and watch from another.
#[derive(Clone, Debug, Default)]
pub(crate) struct Flag(Arc<AtomicBool>);

impl Flag {
    pub(crate) fn new() -> Flag {
        Flag::default()
    }
    pub(crate) fn set(&self) {
        self.0.store(true, SeqCst);
    }
    pub(crate) fn get(&self) -> bool {
        self.0.load(SeqCst)
    }
    /// Waits (bounded) for the flag; true if it was set.
    pub(crate) fn wait(&self) -> bool {
        eventually(|| self.get())
    }
}

/// Polls `future`, counting its polls in `polls`, and counts itself in
/// `waiting` once its first poll has returned `Pending` (the future is
/// then waiting, with its wake registered).
pub(crate) async fn counting_polls<F: Future>(
    polls: Arc<AtomicUsize>,
    waiting: Arc<AtomicUsize>,
    future: F,
) -> F::Output {
    let mut future = pin!(future);
    std::future::poll_fn(move |cx| {
        let first = polls.fetch_add(1, SeqCst) == 0;
        let poll = future.as_mut().poll(cx);
        if first && poll.is_pending() {
            waiting.fetch_add(1, SeqCst);
        }
        poll
    })
    .await
}

/// Polls `future` once with `cx`'s waker: `Some(output)` if it was ready.
pub(crate) async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match pin!(&mut *future).poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        })
    })
    .await
}

struct ThreadWaker(thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `future` on the calling thread without any weft runtime, giving up
/// after `limit`: `None` if it did not finish in time.
pub(crate) fn block_on_std<F: Future>(future: F, limit: Duration) -> Option<F::Output> {
    let deadline = Instant::now() + limit;
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

/// Marker in the message of every panic a test provokes on purpose.
pub(crate) const EXPECTED: &str = "[expected panic]";

/// Keeps panics that tests provoke on purpose (their message contains
/// [`EXPECTED`]) out of the test output; every other panic is reported as
/// usual.
pub(crate) fn quiet_expected_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if msg.is_some_and(|m| m.contains(EXPECTED)) {
                return;
            }
            default(info);
        }));
    });
}

/// The message of a panic payload, if it is a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
}
