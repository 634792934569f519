//! Faults from user code and the environment: a task that blocks its
//! worker, a `Drop` that panics inside a task, a waker used after its
//! runtime is gone, a runtime dropped from inside one of its own tasks, and
//! io_uring refused for lack of fds. Each ends with the runtime (or the
//! process) in a known state: no hang, no leak, a clear error.

mod common;

use std::{
    future::poll_fn,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    task::{Poll, Waker},
    thread,
    time::{Duration, Instant},
};

use common::{block_on_bounded, net::NofileLimit, rt, LIMIT};
use weft::{io::Driver, runtime::Builder};

/// A task blocks its worker (a synchronous sleep: what a blocking call
/// mistakenly made on a worker does) for 1 s. Everything else keeps going:
/// the other worker steals the queued tasks of the blocked one, timers
/// fire, and new tasks run. Even the task the blocker spawned last, which
/// sits in the blocked worker's LIFO slot, runs during the block: the
/// monitor marks the worker stalled and the other worker takes the slot
/// (tokio's LIFO slot is not stealable; see tests/stuck.rs).
#[test]
fn a_task_blocking_its_worker_for_a_second_does_not_stop_the_others() {
    // One at a time: the fd-limit test below must be alone in the process.
    let _serial = common::net::serial();
    const SPAWNED: usize = 50;
    const BLOCK: Duration = Duration::from_secs(1);
    let rt = rt(2);
    let done_during_block = Arc::new(AtomicUsize::new(0));
    let ticks_during_block = Arc::new(AtomicUsize::new(0));
    let blocking = Arc::new(AtomicBool::new(false));
    // Set when the block ends: a child that runs after it was stuck behind
    // the blocked worker. (A child may also run before the block starts,
    // stolen while the blocker is still spawning: that is fine too.)
    let released = Arc::new(AtomicBool::new(false));
    let after_block = Arc::new(AtomicUsize::new(0));
    block_on_bounded(&rt, {
        let (done, ticks, blocking, released, after) = (
            done_during_block.clone(),
            ticks_during_block.clone(),
            blocking.clone(),
            released.clone(),
            after_block.clone(),
        );
        async move {
            // A ticker on its own, spawned from outside the blocker.
            let ticker = weft::spawn({
                let (ticks, blocking) = (ticks.clone(), blocking.clone());
                async move {
                    let start = Instant::now();
                    while start.elapsed() < BLOCK + Duration::from_millis(500) {
                        weft::time::sleep(Duration::from_millis(5)).await.unwrap();
                        if blocking.load(SeqCst) {
                            ticks.fetch_add(1, SeqCst);
                        }
                    }
                }
            });
            let blocker = weft::spawn({
                let (done, blocking) = (done.clone(), blocking.clone());
                let (released, after) = (released.clone(), after.clone());
                async move {
                    // Queued on this worker, then the worker blocks.
                    let children: Vec<_> = (0..SPAWNED)
                        .map(|_| {
                            let (done, blocking) = (done.clone(), blocking.clone());
                            let (released, after) = (released.clone(), after.clone());
                            weft::spawn(async move {
                                if released.load(SeqCst) {
                                    after.fetch_add(1, SeqCst);
                                } else if blocking.load(SeqCst) {
                                    done.fetch_add(1, SeqCst);
                                }
                            })
                        })
                        .collect();
                    blocking.store(true, SeqCst);
                    thread::sleep(BLOCK);
                    released.store(true, SeqCst);
                    blocking.store(false, SeqCst);
                    children
                }
            });
            let children = blocker.await.unwrap();
            for child in children {
                child.await.unwrap();
            }
            ticker.await.unwrap();
        }
    });
    let done = done_during_block.load(SeqCst);
    let after = after_block.load(SeqCst);
    let ticks = ticks_during_block.load(SeqCst);
    eprintln!(
        "while a worker was blocked for {BLOCK:?}: of its {SPAWNED} queued tasks {} ran before the \
         block began (stolen while it was still spawning), {done} ran elsewhere during it, {after} \
         after it; the ticker ticked {ticks} times (5 ms sleeps)",
        SPAWNED - done - after
    );
    assert_eq!(
        after, 0,
        "{after} of the blocked worker's {SPAWNED} queued tasks waited for the block to end \
         (none should: the queue and the LIFO slot of a stuck worker are stolen)"
    );
    // About 190 on an idle machine (debug build); a stall of the timers
    // with the worker gives 0. 20 leaves room for a loaded CI machine.
    assert!(
        ticks >= 20,
        "the ticker ticked {ticks} times in 1 s of 5 ms sleeps: timers stalled with the worker"
    );
    common::assert_no_live_tasks(&rt);
}

struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

/// A value whose `Drop` panics, held by a task: when the task finishes,
/// when it is aborted while waiting, and in its output dropped unread. The
/// join handle reports the panic where there is one to report, and the
/// runtime goes on.
#[test]
fn a_panicking_drop_inside_a_task_is_reported_and_contained() {
    // One at a time: the fd-limit test below must be alone in the process.
    let _serial = common::net::serial();
    let rt = rt(2);
    block_on_bounded(&rt, async {
        // Dropped as the task's future finishes.
        let finished = weft::spawn(async {
            let _guard = PanicOnDrop("drop at the end of the task");
            weft::task::yield_now().await;
            7
        });
        let err = finished.await.expect_err("the drop panicked");
        assert!(err.is_panic());
        let payload = err.into_panic();
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some("drop at the end of the task")
        );

        // Dropped by an abort while the task waits.
        let waiting = weft::spawn(async {
            let _guard = PanicOnDrop("drop on abort");
            std::future::pending::<()>().await;
        });
        weft::task::yield_now().await;
        waiting.abort();
        let err = waiting.await.expect_err("aborted");
        // The abort's drop catches the panic; the join reports the abort
        // (weft does not turn it into a panic error: see the report).
        assert!(err.is_cancelled() || err.is_panic(), "{err:?}");

        // In the output, dropped with a join handle nobody awaits.
        let output = weft::spawn(async { PanicOnDrop("drop of an unread output") });
        weft::task::yield_now().await;
        drop(output);

        // The runtime still runs tasks.
        assert_eq!(weft::spawn(async { 1 + 1 }).await.unwrap(), 2);
    });
    common::assert_no_live_tasks(&rt);
}

/// A waker kept past its runtime's shutdown: waking it (by value, by
/// reference, cloned) and dropping it does nothing and is memory-safe (the
/// sanitizer run checks the latter).
#[test]
fn a_waker_used_after_its_runtime_shut_down_is_a_no_op() {
    // One at a time: the fd-limit test below must be alone in the process.
    let _serial = common::net::serial();
    let rt = rt(2);
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let task = rt.spawn({
        let slot = slot.clone();
        poll_fn(move |cx| {
            *slot.lock().unwrap() = Some(cx.waker().clone());
            Poll::<()>::Pending
        })
    });
    assert!(common::eventually(|| slot.lock().unwrap().is_some()));
    let waker = slot.lock().unwrap().take().unwrap();
    drop(task);
    drop(rt);
    let clone = waker.clone();
    waker.wake_by_ref();
    clone.wake();
    waker.wake();
}

/// Dropping a runtime from inside one of its own tasks: the drop cannot
/// wait for the worker it runs on (it used to hang there for good). It
/// panics with a message that says what went wrong; the runtime is left
/// running (its threads are detached).
#[test]
fn a_runtime_dropped_from_inside_its_own_task_fails_clearly() {
    // One at a time: the fd-limit test below must be alone in the process.
    let _serial = common::net::serial();
    let rt = Arc::new(Mutex::new(Some(rt(2))));
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = rt.lock().unwrap().as_ref().unwrap().handle().clone();
    drop(handle.spawn({
        let rt = rt.clone();
        async move {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drop(rt.lock().unwrap().take());
            }));
            let _ = tx.send(outcome.map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            }));
        }
    }));
    let outcome = rx
        .recv_timeout(LIMIT)
        .expect("dropping the runtime from its own task returned or panicked (no hang)");
    let msg = outcome.expect_err("the drop panics");
    assert!(
        msg.contains("dropped") && msg.contains("inside one of its own tasks"),
        "the panic says what went wrong: {msg:?}"
    );
}

/// io_uring refused for lack of fds: a runtime forced onto io_uring with
/// the fd limit at the current count fails to build, and the error names
/// the driver and the cause; the default driver falls back to epoll or
/// fails the same clear way. The limit comes back afterwards and a
/// runtime builds again.
#[test]
fn io_uring_refused_for_lack_of_fds_is_a_clear_build_error() {
    let _serial = common::net::serial();
    // The lowest free fd number: with the limit there, no fd can be made.
    let lowest_free = {
        let probe = std::fs::File::open("/dev/null").unwrap();
        std::os::fd::AsRawFd::as_raw_fd(&probe) as u64
    };
    {
        let _limit = NofileLimit::set_soft(lowest_free);
        let err = Builder::new_multi_thread()
            .worker_threads(2)
            .io_driver(Driver::Uring)
            .build()
            .expect_err("no fd left for a ring");
        let msg = err.to_string();
        eprintln!("forced io_uring with no fd left: {msg}");
        assert!(
            msg.contains("io") && (msg.contains("Too many open files") || msg.contains("EMFILE")),
            "the error names the io driver and the cause: {msg:?}"
        );
    }
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .io_driver(Driver::Uring)
        .build()
        .expect("with the limit restored, a ring builds");
    assert_eq!(rt.io_driver(), Driver::Uring);
}
