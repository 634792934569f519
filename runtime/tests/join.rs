//! Joining: from another task, from another thread, after the fact, with
//! the waker changing between polls; what `JoinError` shows.

mod common;

use std::{sync::mpsc, thread, time::Duration};

use common::{assert_no_live_tasks, block_on_bounded, block_on_std, rt, Gate, LIMIT};

#[test]
fn a_join_handle_moved_into_another_task_is_awaited_there() {
    let rt = rt(2);
    let out = block_on_bounded(&rt, async {
        let gate = Gate::new();
        let target = {
            let gate = gate.clone();
            weft::spawn(async move {
                gate.wait().await;
                "target"
            })
        };
        let joiner = weft::spawn(async move { target.await.unwrap() });
        gate.open();
        joiner.await.unwrap()
    });
    assert_eq!(out, "target");
    assert_no_live_tasks(&rt);
}

#[test]
fn a_join_handle_is_awaited_on_a_thread_without_a_runtime() {
    let rt = rt(2);
    let gate = Gate::new();
    let join = {
        let gate = gate.clone();
        rt.spawn(async move {
            gate.wait().await;
            99
        })
    };
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || tx.send(block_on_std(join, LIMIT)).unwrap());
    thread::sleep(Duration::from_millis(5));
    gate.open();
    let out = rx.recv_timeout(LIMIT).unwrap().expect("joined in time");
    assert_eq!(out.unwrap(), 99);
    waiter.join().unwrap();
    assert_no_live_tasks(&rt);
}

#[test]
fn joining_after_completion_is_immediate() {
    let rt = rt(1);
    let join = rt.spawn(async { 5 });
    assert!(common::eventually(|| join.is_finished()));
    let mut join = join;
    let ready = block_on_bounded(&rt, async { common::poll_once(&mut join).await });
    assert_eq!(ready.unwrap().unwrap(), 5);
}

#[test]
// The tasks here hand the (awaitable) join handle back on purpose.
#[allow(clippy::async_yields_async)]
fn the_join_waker_can_change_between_polls() {
    let rt = rt(2);
    let gate = Gate::new();
    let mut join = {
        let gate = gate.clone();
        rt.spawn(async move {
            gate.wait().await;
            "late"
        })
    };
    // Polled (and its waker registered) by block_on, then abandoned...
    block_on_bounded(&rt, async {
        let early = weft::time::timeout(Duration::from_millis(5), &mut join).await;
        assert!(early.is_err());
    });
    // ...by another task with another waker...
    let join = block_on_bounded(&rt, async move {
        weft::spawn(async move {
            assert!(common::poll_once(&mut join).await.is_none());
            join
        })
        .await
        .unwrap()
    });
    // ...and finally by a plain thread, which must be the one woken.
    let opener = {
        let gate = gate.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(5));
            gate.open();
        })
    };
    assert_eq!(block_on_std(join, LIMIT).expect("woken").unwrap(), "late");
    opener.join().unwrap();
    assert_no_live_tasks(&rt);
}

#[test]
fn many_joiners_of_many_tasks_on_four_workers() {
    let rt = rt(4);
    let sum = block_on_bounded(&rt, async {
        let targets: Vec<_> = (0..200u64)
            .map(|i| {
                weft::spawn(async move {
                    weft::task::yield_now().await;
                    i
                })
            })
            .collect();
        let joiners: Vec<_> = targets
            .into_iter()
            .map(|t| weft::spawn(async move { t.await.unwrap() * 2 }))
            .collect();
        let mut sum = 0;
        for j in joiners {
            sum += j.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, 2 * (199 * 200 / 2));
    assert_no_live_tasks(&rt);
}

#[test]
fn join_error_display_and_debug_name_the_task() {
    common::quiet_expected_panics();
    let rt = rt(1);
    let (cancelled, panicked) = block_on_bounded(&rt, async {
        let c = weft::spawn(std::future::pending::<()>());
        c.abort();
        let p = weft::spawn(async { panic!("{} shown", common::EXPECTED) });
        (c.await.unwrap_err(), p.await.unwrap_err())
    });
    let id = cancelled.id().to_string();
    assert_eq!(cancelled.to_string(), format!("task {id} was cancelled"));
    assert!(format!("{cancelled:?}").contains("Cancelled"));
    let shown = panicked.to_string();
    assert!(
        shown.starts_with(&format!("task {} panicked", panicked.id())),
        "{shown}"
    );
    assert!(shown.contains("shown"));
    assert!(format!("{panicked:?}").contains("Panic"));
    let io: std::io::Error = panicked.into();
    assert!(io.to_string().contains("panicked"));
}

#[weft::test]
async fn join_handle_debug_shows_the_id() {
    let join = weft::spawn(async {});
    let id = join.id();
    assert_eq!(format!("{join:?}"), format!("JoinHandle {{ id: {id:?} }}"));
    assert_eq!(
        format!("{:?}", join.abort_handle()),
        format!("AbortHandle {{ id: {id:?} }}")
    );
    join.await.unwrap();
}
