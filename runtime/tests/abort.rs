//! `abort` in every state of a task: queued before its first poll, idle,
//! running (from inside its own poll), complete; through `AbortHandle`
//! clones; twice; and what `is_finished` says along the way.

mod common;

use std::{sync::mpsc, time::Duration};

use common::{
    assert_no_live_tasks, block_on_bounded, pending_forever, rt, DropCounter, Flag, LIMIT,
};
use weft::{runtime::Runtime, task::yield_now};

/// Occupies the only worker of `rt` until the returned sender is used (or
/// dropped), so that tasks spawned meanwhile stay queued.
fn occupy_the_worker(rt: &Runtime) -> (mpsc::Sender<()>, weft::JoinHandle<()>) {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let started = Flag::new();
    let join = {
        let started = started.clone();
        rt.spawn(async move {
            started.set();
            // Blocking the worker on purpose; bounded so nothing can hang.
            let _ = release_rx.recv_timeout(LIMIT);
        })
    };
    assert!(started.wait(), "the blocker task started");
    (release_tx, join)
}

#[test]
fn abort_before_the_first_poll_drops_the_future_unpolled() {
    // The worker is blocked on purpose: with the monitor on, a relief
    // worker would run the queued task once the block passed 10 ms (a
    // loaded machine can take that long to reach the abort).
    let rt = common::unmonitored_rt(1);
    let (release, blocker) = occupy_the_worker(&rt);
    let polled = Flag::new();
    let drops = DropCounter::new();
    let join = {
        let (polled, token) = (polled.clone(), drops.token());
        rt.spawn(async move {
            let _token = token;
            polled.set();
        })
    };
    assert_eq!(
        rt.metrics().injector_depth,
        1,
        "the task is queued, not running"
    );
    join.abort();
    assert!(
        !join.is_finished(),
        "a queued task is dropped by its next poller"
    );
    release.send(()).unwrap();
    let err = block_on_bounded(&rt, join).unwrap_err();
    assert!(err.is_cancelled());
    assert!(!polled.get(), "an aborted queued task is never polled");
    assert_eq!(drops.get(), 1);
    block_on_bounded(&rt, blocker).unwrap();
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_right_after_a_local_spawn_prevents_the_first_poll() {
    let rt = rt(1);
    let polled = Flag::new();
    let drops = DropCounter::new();
    let err = {
        let (polled, token) = (polled.clone(), drops.token());
        block_on_bounded(&rt, async move {
            weft::spawn(async move {
                // On this worker's LIFO slot; it cannot run before we yield.
                let child = weft::spawn(async move {
                    let _token = token;
                    polled.set();
                });
                child.abort();
                child.await.unwrap_err()
            })
            .await
            .unwrap()
        })
    };
    assert!(err.is_cancelled());
    assert!(!polled.get());
    assert_eq!(drops.get(), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_of_an_idle_task_drops_its_future_and_cancels_the_join() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let polled = Flag::new();
    let join = {
        let (token, polled) = (drops.token(), polled.clone());
        rt.spawn(async move {
            polled.set();
            pending_forever(token).await
        })
    };
    assert!(polled.wait(), "the task reached its never-waking await");
    assert!(!join.is_finished());
    assert_eq!(drops.get(), 0);
    join.abort();
    assert_eq!(
        drops.wait_for(1),
        1,
        "abort drops the future of an idle task"
    );
    assert!(common::eventually(|| join.is_finished()));
    let err = block_on_bounded(&rt, join).unwrap_err();
    assert!(err.is_cancelled());
    assert!(!err.is_panic());
    assert_eq!(drops.get(), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_of_a_task_waiting_on_a_sleep_removes_its_timer() {
    let rt = rt(2);
    let sleeping = Flag::new();
    let join = {
        let sleeping = sleeping.clone();
        rt.spawn(async move {
            let sleep = weft::time::sleep(Duration::from_secs(3600));
            let mut sleep = std::pin::pin!(sleep);
            assert!(common::poll_once(&mut sleep).await.is_none());
            sleeping.set();
            let _ = sleep.await;
        })
    };
    assert!(sleeping.wait());
    assert_eq!(rt.metrics().timers_pending, 1);
    join.abort();
    assert!(block_on_bounded(&rt, join).unwrap_err().is_cancelled());
    assert_eq!(
        rt.metrics().timers_pending,
        0,
        "the aborted task's timer is gone"
    );
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_from_inside_its_own_poll_takes_effect_when_the_poll_returns() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let after_abort = Flag::new();
    let resumed = Flag::new();
    let (tx, rx) = futures_channel::oneshot::channel::<weft::task::AbortHandle>();
    let join = {
        let (token, after_abort, resumed) = (drops.token(), after_abort.clone(), resumed.clone());
        rt.spawn(async move {
            let _token = token;
            let me = rx.await.unwrap();
            me.abort();
            // The current poll carries on...
            after_abort.set();
            yield_now().await;
            // ...but the task is dropped once it returns Pending.
            resumed.set();
        })
    };
    tx.send(join.abort_handle()).unwrap();
    let err = block_on_bounded(&rt, join).unwrap_err();
    assert!(err.is_cancelled());
    assert!(
        after_abort.get(),
        "abort does not interrupt the running poll"
    );
    assert!(!resumed.get(), "the task is never polled again after abort");
    assert_eq!(drops.get(), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn a_task_that_aborts_itself_and_then_finishes_in_the_same_poll_keeps_its_output() {
    let rt = rt(2);
    let (tx, rx) = futures_channel::oneshot::channel::<weft::task::AbortHandle>();
    let join = rt.spawn(async move {
        rx.await.unwrap().abort();
        "finished first"
    });
    tx.send(join.abort_handle()).unwrap();
    assert_eq!(block_on_bounded(&rt, join).unwrap(), "finished first");
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_after_completion_leaves_the_output_in_place() {
    let rt = rt(2);
    let outputs = DropCounter::new();
    let join = {
        let outputs = outputs.clone();
        rt.spawn(async move { (5, outputs.token()) })
    };
    assert!(common::eventually(|| join.is_finished()));
    join.abort();
    join.abort_handle().abort();
    assert!(join.is_finished());
    assert_eq!(
        outputs.get(),
        0,
        "abort after completion must not drop the output"
    );
    let (value, token) = block_on_bounded(&rt, join).unwrap();
    assert_eq!(value, 5);
    drop(token);
    assert_eq!(outputs.get(), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_twice_cancels_once() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let join = rt.spawn(pending_forever(drops.token()));
    join.abort();
    join.abort();
    let second = join.abort_handle();
    second.abort();
    let err = block_on_bounded(&rt, join).unwrap_err();
    assert!(err.is_cancelled());
    second.abort();
    assert!(second.is_finished());
    assert_eq!(drops.get(), 1);
    drop(second);
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_handle_clones_abort_and_dropping_them_changes_nothing() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let gate = common::Gate::new();
    // Handles dropped without aborting: the task runs normally.
    let untouched = {
        let gate = gate.clone();
        rt.spawn(async move {
            gate.wait().await;
            11
        })
    };
    let a = untouched.abort_handle();
    let b = a.clone();
    assert_eq!(a.id(), untouched.id());
    assert_eq!(b.id(), untouched.id());
    drop(a);
    drop(b);
    gate.open();
    assert_eq!(block_on_bounded(&rt, untouched).unwrap(), 11);

    // A clone aborts after the original and the join handle are gone.
    let join = rt.spawn(pending_forever(drops.token()));
    let original = join.abort_handle();
    let clone = original.clone();
    drop(original);
    drop(join);
    assert!(!clone.is_finished());
    clone.abort();
    assert_eq!(drops.wait_for(1), 1);
    assert!(common::eventually(|| clone.is_finished()));
    drop(clone);
    assert_no_live_tasks(&rt);
}

#[test]
fn abort_from_a_foreign_thread() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let join = rt.spawn(pending_forever(drops.token()));
    let abort = join.abort_handle();
    std::thread::spawn(move || abort.abort()).join().unwrap();
    assert!(block_on_bounded(&rt, join).unwrap_err().is_cancelled());
    assert_eq!(drops.get(), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn is_finished_tracks_the_task() {
    let rt = rt(2);
    let gate = common::Gate::new();
    let join = {
        let gate = gate.clone();
        rt.spawn(async move { gate.wait().await })
    };
    assert!(!join.is_finished());
    std::thread::sleep(Duration::from_millis(10));
    assert!(!join.is_finished(), "a pending task is not finished");
    gate.open();
    assert!(common::eventually(|| join.is_finished()));
    block_on_bounded(&rt, join).unwrap();
}

#[weft::test]
async fn abort_many_idle_tasks_from_a_task() {
    let drops = DropCounter::new();
    let joins: Vec<_> = (0..1000)
        .map(|_| weft::spawn(pending_forever(drops.token())))
        .collect();
    yield_now().await;
    for j in &joins {
        j.abort();
    }
    for j in joins {
        assert!(j.await.unwrap_err().is_cancelled());
    }
    assert_eq!(drops.get(), 1000);
    assert!(common::eventually(|| weft::runtime::Handle::current()
        .metrics()
        .alive_tasks
        == 0));
}
