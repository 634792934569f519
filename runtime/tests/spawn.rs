//! Spawning and joining: from `block_on`, from tasks, from a `Handle` on a
//! foreign thread; task ids; detached tasks; spawning where no runtime is.

mod common;

use std::{collections::HashSet, sync::mpsc, thread};

use common::{assert_no_live_tasks, block_on_bounded, rt, DropCounter, Flag, Gate, LIMIT};
use weft::{runtime::Handle, task};

fn _assert_send_sync<T: Send + Sync>() {}
fn _assert_send<T: Send>() {}
fn _auto_traits() {
    _assert_send_sync::<weft::Runtime>();
    _assert_send_sync::<Handle>();
    _assert_send_sync::<weft::JoinHandle<u32>>();
    _assert_send_sync::<task::AbortHandle>();
    // Send only: the panic payload is `Box<dyn Any + Send>`.
    _assert_send::<weft::JoinError>();
    _assert_send_sync::<task::Id>();
    _assert_send_sync::<weft::time::Sleep>();
}

#[test]
fn spawn_from_block_on_returns_the_output() {
    let rt = rt(2);
    let out = block_on_bounded(&rt, async { weft::spawn(async { 6 * 7 }).await });
    assert_eq!(out.unwrap(), 42);
    assert_no_live_tasks(&rt);
}

#[test]
fn runtime_spawn_outside_block_on_is_joined_later() {
    let rt = rt(2);
    let handles: Vec<_> = (0..100u64)
        .map(|i| rt.spawn(async move { i * 2 }))
        .collect();
    let sum = block_on_bounded(&rt, async {
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 2 * (99 * 100 / 2));
    assert_no_live_tasks(&rt);
}

#[test]
fn tasks_spawn_tasks_three_levels_deep() {
    let rt = rt(2);
    let total = block_on_bounded(&rt, async {
        let outer: Vec<_> = (0..10u64)
            .map(|i| {
                weft::spawn(async move {
                    let mid: Vec<_> = (0..10u64)
                        .map(|j| {
                            weft::spawn(async move {
                                let leaf = weft::spawn(async move { i * 100 + j });
                                leaf.await.unwrap()
                            })
                        })
                        .collect();
                    let mut sum = 0;
                    for h in mid {
                        sum += h.await.unwrap();
                    }
                    sum
                })
            })
            .collect();
        let mut total = 0;
        for h in outer {
            total += h.await.unwrap();
        }
        total
    });
    let expected: u64 = (0..10u64)
        .flat_map(|i| (0..10u64).map(move |j| i * 100 + j))
        .sum();
    assert_eq!(total, expected);
    assert_no_live_tasks(&rt);
}

#[test]
fn handle_spawns_from_a_foreign_thread() {
    let rt = rt(2);
    let handle = rt.handle().clone();
    let (tx, rx) = mpsc::channel();
    let foreign = thread::spawn(move || {
        // No runtime is entered on this thread: only the handle reaches it.
        assert!(Handle::try_current().is_none());
        let joins: Vec<_> = (0..50u32)
            .map(|i| handle.spawn(async move { i + 1 }))
            .collect();
        tx.send(joins).unwrap();
        // The foreign thread may also drive a future on the runtime itself.
        handle.block_on(async {
            weft::spawn(async { "from foreign block_on" })
                .await
                .unwrap()
        })
    });
    let joins = rx
        .recv_timeout(LIMIT)
        .expect("foreign thread sent its handles");
    let sum = block_on_bounded(&rt, async {
        let mut sum = 0;
        for j in joins {
            sum += j.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, (1..=50).sum::<u32>());
    assert_eq!(foreign.join().unwrap(), "from foreign block_on");
    assert_no_live_tasks(&rt);
}

#[test]
fn enter_makes_weft_spawn_work_outside_block_on() {
    let rt = rt(1);
    let join = {
        let _guard = rt.enter();
        assert!(Handle::try_current().is_some());
        weft::spawn(async { 5 })
    };
    assert!(
        Handle::try_current().is_none(),
        "the guard restores 'no runtime'"
    );
    assert_eq!(block_on_bounded(&rt, join).unwrap(), 5);
}

#[test]
#[should_panic(expected = "`weft::spawn` called outside a weft runtime")]
fn weft_spawn_outside_a_runtime_panics_with_a_clear_message() {
    drop(weft::spawn(async {}));
}

#[test]
#[should_panic(expected = "there is no weft runtime here")]
fn handle_current_outside_a_runtime_panics_with_a_clear_message() {
    let _ = Handle::current();
}

#[test]
fn handle_current_inside_tasks_reaches_the_same_runtime() {
    let rt = rt(2);
    let workers = block_on_bounded(&rt, async {
        let in_block_on = Handle::current().metrics().workers;
        let in_task = weft::spawn(async { Handle::current().metrics().workers })
            .await
            .unwrap();
        (in_block_on, in_task)
    });
    assert_eq!(workers, (2, 2));
}

#[test]
fn task_id_inside_a_task_matches_its_join_handle() {
    let rt = rt(2);
    block_on_bounded(&rt, async {
        let (tx, rx) = futures_channel::oneshot::channel();
        let join = weft::spawn(async move {
            let _ = rx.await;
            (task::id(), task::try_id())
        });
        let expected = join.id();
        tx.send(()).unwrap();
        let (id, try_id) = join.await.unwrap();
        assert_eq!(id, expected);
        assert_eq!(try_id, Some(expected));
    });
}

#[test]
fn task_ids_are_distinct() {
    let rt = rt(2);
    let ids = block_on_bounded(&rt, async {
        let joins: Vec<_> = (0..2000)
            .map(|_| weft::spawn(async { task::id() }))
            .collect();
        let mut ids = Vec::new();
        for j in joins {
            let from_handle = j.id();
            let from_inside = j.await.unwrap();
            assert_eq!(from_handle, from_inside);
            ids.push(from_inside);
        }
        ids
    });
    let unique: HashSet<_> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "two tasks shared an id");
    assert!(ids.iter().all(|id| id.as_u64() != 0));
}

#[test]
fn try_id_is_none_outside_tasks() {
    assert_eq!(task::try_id(), None);
    let rt = rt(1);
    // `block_on`'s own future is not a task.
    assert_eq!(block_on_bounded(&rt, async { task::try_id() }), None);
    // A blocking closure runs as the only poll of a task, so it has an id.
    let id = block_on_bounded(&rt, async {
        weft::spawn_blocking(task::try_id).await.unwrap()
    });
    assert!(
        id.is_some(),
        "a blocking job runs as a task and sees its id"
    );
}

#[test]
#[should_panic(expected = "`weft::task::id()` called outside a task")]
fn task_id_outside_a_task_panics() {
    let _ = task::id();
}

#[test]
fn dropped_join_handle_detaches_the_task_which_still_runs() {
    let rt = rt(2);
    let gate = Gate::new();
    let ran = Flag::new();
    let outputs = DropCounter::new();
    {
        let (gate, ran, outputs) = (gate.clone(), ran.clone(), outputs.clone());
        drop(rt.spawn(async move {
            gate.wait().await;
            ran.set();
            outputs.token()
        }));
    }
    // The handle is gone before the task could finish.
    assert!(!ran.get());
    gate.open();
    assert!(ran.wait(), "a detached task must still run to completion");
    assert_eq!(outputs.wait_for(1), 1, "the detached output is dropped");
    assert_no_live_tasks(&rt);
    // Exactly once, even after the runtime goes away.
    drop(rt);
    assert_eq!(outputs.get(), 1);
}

#[test]
fn join_handle_dropped_after_completion_drops_the_output_once() {
    let rt = rt(2);
    let outputs = DropCounter::new();
    let join = {
        let outputs = outputs.clone();
        rt.spawn(async move { outputs.token() })
    };
    assert!(common::eventually(|| join.is_finished()));
    assert_eq!(outputs.get(), 0, "the output waits for its join handle");
    drop(join);
    assert_eq!(outputs.get(), 1);
    assert_no_live_tasks(&rt);
    drop(rt);
    assert_eq!(outputs.get(), 1);
}

#[test]
fn joined_output_is_moved_out_not_dropped_by_the_runtime() {
    let rt = rt(2);
    let outputs = DropCounter::new();
    let token = {
        let outputs = outputs.clone();
        block_on_bounded(&rt, async move {
            weft::spawn(async move { outputs.token() }).await
        })
    }
    .unwrap();
    assert_eq!(outputs.get(), 0);
    drop(token);
    drop(rt);
    assert_eq!(outputs.get(), 1);
}

#[test]
fn futures_are_dropped_once_after_completing() {
    let rt = rt(2);
    let futures = DropCounter::new();
    block_on_bounded(&rt, async {
        let joins: Vec<_> = (0..500)
            .map(|i| {
                let token = futures.token();
                weft::spawn(async move {
                    let _token = token;
                    weft::task::yield_now().await;
                    i
                })
            })
            .collect();
        for (i, j) in joins.into_iter().enumerate() {
            assert_eq!(j.await.unwrap(), i);
        }
    });
    assert_eq!(futures.get(), 500);
    assert_no_live_tasks(&rt);
}

#[test]
fn block_on_inside_a_task_panics_with_a_clear_message() {
    common::quiet_expected_panics();
    let rt = rt(2);
    let err = block_on_bounded(&rt, async {
        weft::spawn(async { Handle::current().block_on(async { 1 }) })
            .await
            .unwrap_err()
    });
    assert!(err.is_panic());
    let msg = common::panic_message(&*err.into_panic()).unwrap();
    assert!(
        msg.contains("`block_on` called on a weft worker thread"),
        "unclear message: {msg}"
    );
    // The worker survived the panic.
    assert_eq!(
        block_on_bounded(&rt, async { weft::spawn(async { 3 }).await.unwrap() }),
        3
    );
}

#[test]
#[should_panic(expected = "`block_on` called on a weft worker thread")]
fn block_on_inside_a_task_panics_and_the_panic_reaches_the_joiner() {
    common::quiet_expected_panics();
    let rt = rt(1);
    let err = block_on_bounded(&rt, async {
        weft::spawn(async { Handle::current().block_on(async {}) })
            .await
            .unwrap_err()
    });
    drop(rt);
    std::panic::resume_unwind(err.into_panic());
}

#[test]
#[should_panic(expected = "`block_on` called inside `block_on`")]
fn nested_block_on_panics_with_a_clear_message() {
    let rt = rt(1);
    let handle = rt.handle().clone();
    rt.block_on(async move { handle.block_on(async {}) });
}

#[test]
fn handles_from_many_threads_spawn_concurrently() {
    let rt = rt(2);
    // Each thread hands its values back through `join` (no shared lock:
    // the TSan run cannot see a contended std Mutex's synchronisation).
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let handle = rt.handle().clone();
            thread::spawn(move || {
                let joins: Vec<_> = (0..250u32)
                    .map(|i| handle.spawn(async move { t * 1000 + i }))
                    .collect();
                handle.block_on(async {
                    let mut values = Vec::new();
                    for j in joins {
                        values.push(j.await.unwrap());
                    }
                    values
                })
            })
        })
        .collect();
    let mut got: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    got.sort_unstable();
    let mut want: Vec<u32> = (0..4u32)
        .flat_map(|t| (0..250).map(move |i| t * 1000 + i))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_no_live_tasks(&rt);
}
