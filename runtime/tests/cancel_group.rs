//! `TaskGroup`: results in spawn order or as they finish, none lost;
//! `cancel_on_error` on a panic or an `Err` output; no cancellation without
//! it; dropping the group cancels the children left.

mod common;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use common::{assert_no_live_tasks, block_on_bounded, quiet_expected_panics, rt, EXPECTED, LIMIT};
use weft::{
    cancel::{Cancelled, Cause, TaskGroup},
    runtime::Runtime,
    time::sleep,
};

const LONG: Duration = Duration::from_secs(3600);

fn in_task<F>(rt: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_on_bounded(rt, rt.spawn(future)).expect("the test's task completed")
}

#[test]
fn join_all_returns_every_result_in_spawn_order() {
    const N: u64 = 20;
    let rt = rt(4);
    let out = in_task(&rt, async {
        let mut group = TaskGroup::new();
        for i in 0..N {
            // Later spawns finish first.
            group.spawn(async move {
                sleep(Duration::from_millis(2 * (N - i))).await.unwrap();
                i
            });
        }
        assert_eq!(group.len(), N as usize);
        group.join_all().await
    });
    let values: Vec<u64> = out.into_iter().map(|r| r.expect("no failure")).collect();
    assert_eq!(values, (0..N).collect::<Vec<_>>());
    assert_no_live_tasks(&rt);
}

#[test]
fn join_next_gives_each_result_once_then_none() {
    const N: usize = 50;
    let rt = rt(4);
    let (mut values, nones) = in_task(&rt, async {
        let mut group = TaskGroup::new();
        for i in 0..N {
            group.spawn(async move {
                sleep(Duration::from_millis((i % 7) as u64)).await.unwrap();
                i
            });
        }
        let mut values = Vec::new();
        while let Some(res) = group.join_next().await {
            values.push(res.expect("no failure"));
        }
        assert!(group.is_empty());
        let nones = group.join_next().await.is_none();
        (values, nones)
    });
    values.sort_unstable();
    assert_eq!(values, (0..N).collect::<Vec<_>>());
    assert!(nones);
}

/// Siblings that wait until cancelled and report what they saw.
fn spawn_waiting_siblings(
    group: &mut TaskGroup<Result<u32, String>>,
    n: usize,
    seen: &Arc<Mutex<Vec<Cancelled>>>,
) {
    for _ in 0..n {
        let seen = seen.clone();
        group.spawn(async move {
            match sleep(LONG).await {
                Err(c) => {
                    seen.lock().unwrap().push(c);
                    Ok(0)
                }
                Ok(()) => Ok(1),
            }
        });
    }
}

fn assert_cancelled_by_sibling(seen: &[Cancelled], n: usize) {
    assert_eq!(seen.len(), n, "every sibling was cancelled");
    for c in seen {
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.origin(), Cause::Explicit);
        assert!(
            c.reason().is_some_and(|r| r.contains("sibling")),
            "reason: {:?}",
            c.reason()
        );
    }
}

#[test]
fn a_panicking_child_cancels_its_siblings_with_cancel_on_error() {
    quiet_expected_panics();
    const SIBLINGS: usize = 5;
    let rt = rt(4);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = {
        let seen = seen.clone();
        in_task(&rt, async move {
            let mut group = TaskGroup::<Result<u32, String>>::new().cancel_on_error();
            spawn_waiting_siblings(&mut group, SIBLINGS, &seen);
            group.spawn(async {
                sleep(Duration::from_millis(10)).await.unwrap();
                panic!("{EXPECTED} child fails");
            });
            group.join_all().await
        })
    };
    assert_eq!(out.len(), SIBLINGS + 1);
    let panics = out
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.is_panic()))
        .count();
    assert_eq!(panics, 1, "the panic is reported as is_panic()");
    assert!(out[SIBLINGS].as_ref().unwrap_err().is_panic());
    for r in &out[..SIBLINGS] {
        assert_eq!(r.as_ref().expect("the sibling returned"), &Ok(0));
    }
    assert_cancelled_by_sibling(&seen.lock().unwrap(), SIBLINGS);
}

#[test]
fn an_err_output_cancels_its_siblings_with_cancel_on_error() {
    const SIBLINGS: usize = 5;
    let rt = rt(4);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = {
        let seen = seen.clone();
        in_task(&rt, async move {
            let mut group = TaskGroup::<Result<u32, String>>::new().cancel_on_error();
            spawn_waiting_siblings(&mut group, SIBLINGS, &seen);
            group.spawn(async {
                sleep(Duration::from_millis(10)).await.unwrap();
                Err("boom".to_string())
            });
            group.join_all().await
        })
    };
    let out: Vec<_> = out.into_iter().map(|r| r.expect("no panic")).collect();
    assert_eq!(out[SIBLINGS], Err("boom".to_string()));
    assert!(out[..SIBLINGS].iter().all(|r| r == &Ok(0)));
    assert_cancelled_by_sibling(&seen.lock().unwrap(), SIBLINGS);
}

#[test]
fn without_cancel_on_error_a_failure_leaves_siblings_alone() {
    quiet_expected_panics();
    let rt = rt(4);
    let out = in_task(&rt, async {
        let mut group = TaskGroup::<Result<u32, String>>::new();
        group.spawn(async { Err("boom".to_string()) });
        group.spawn(async { panic!("{EXPECTED} child fails") });
        for _ in 0..3 {
            group.spawn(async {
                sleep(Duration::from_millis(40))
                    .await
                    .map(|()| 1)
                    .map_err(|c| c.to_string())
            });
        }
        group.join_all().await
    });
    assert_eq!(out[0].as_ref().unwrap(), &Err("boom".to_string()));
    assert!(out[1].as_ref().unwrap_err().is_panic());
    for r in &out[2..] {
        assert_eq!(r.as_ref().unwrap(), &Ok(1), "siblings were not cancelled");
    }
}

#[test]
fn dropping_a_group_cancels_the_children_left() {
    const N: usize = 20;
    let rt = rt(4);
    let (tx, rx) = mpsc::channel::<Result<(), Cancelled>>();
    let started = Arc::new(AtomicUsize::new(0));
    {
        let started = started.clone();
        in_task(&rt, async move {
            let mut group = TaskGroup::new();
            for _ in 0..N {
                let (tx, started) = (tx.clone(), started.clone());
                group.spawn(async move {
                    started.fetch_add(1, SeqCst);
                    // Cleanup after the await point reports what it saw.
                    let r = sleep(LONG).await;
                    let _ = tx.send(r);
                });
            }
            while started.load(SeqCst) < N {
                sleep(Duration::from_millis(1)).await.unwrap();
            }
            drop(group);
        });
    }
    for i in 0..N {
        let r = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("child {i} of {N} never reported"));
        let c = r.expect_err("the child's sleep was cancelled");
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.origin(), Cause::Explicit);
        assert_eq!(c.reason(), Some("task group dropped"));
    }
    assert_no_live_tasks(&rt);
}
