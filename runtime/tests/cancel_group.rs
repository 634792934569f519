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

/// A child that sleeps `ms` (or forever) and reports how it ended.
async fn child_reporting(ms: Option<u64>) -> Result<u64, Cancelled> {
    match ms {
        Some(ms) => sleep(Duration::from_millis(ms)).await.map(|()| ms),
        None => sleep(LONG).await.map(|()| 0),
    }
}

#[test]
fn join_all_past_the_joiners_deadline_waits_for_the_cancelled_children() {
    let rt = rt(4);
    let task = weft::task::Builder::new()
        .timeout(Duration::from_millis(40))
        .spawn_on(
            async {
                let mut group = TaskGroup::new();
                group.spawn(child_reporting(Some(1)));
                for _ in 0..5 {
                    group.spawn(child_reporting(None));
                }
                group.spawn(child_reporting(Some(2)));
                let out = group.join_all().await;
                // The joiner's own scope is still cancelled afterwards.
                (out, weft::cancel::check())
            },
            rt.handle(),
        );
    let (out, after) = block_on_bounded(&rt, task).unwrap();
    assert_eq!(out.len(), 7, "no child lost");
    let out: Vec<_> = out
        .into_iter()
        .map(|r| r.expect("every child returned"))
        .collect();
    assert_eq!(out[0], Ok(1), "finished before the deadline: its output");
    assert_eq!(out[6], Ok(2));
    for r in &out[1..6] {
        let c = r.as_ref().expect_err("cancelled by the deadline");
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.origin(), Cause::Deadline);
    }
    assert_eq!(after.unwrap_err().origin(), Cause::Deadline);
    assert_no_live_tasks(&rt);
}

#[test]
fn join_all_of_a_cancelled_joiner_collects_every_output() {
    let rt = rt(4);
    let started = common::Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            let mut group = TaskGroup::new();
            for _ in 0..10 {
                group.spawn(child_reporting(None));
            }
            started.set();
            group.join_all().await
        })
    };
    assert!(started.wait());
    assert!(task.cancel_with("shutting down"));
    let out = block_on_bounded(&rt, task).unwrap();
    assert_eq!(out.len(), 10);
    for r in out {
        let c = r
            .expect("the child returned")
            .expect_err("the child was cancelled");
        assert_eq!(c.origin(), Cause::Explicit);
        assert_eq!(c.reason(), Some("shutting down"));
    }
    assert_no_live_tasks(&rt);
}

#[test]
fn a_group_from_another_scope_is_cancelled_when_its_joiner_is() {
    let rt = rt(2);
    // Made outside any task: a root, not below the joiner's scope.
    let group = rt.block_on(async {
        let mut group = TaskGroup::new();
        for _ in 0..3 {
            group.spawn(child_reporting(None));
        }
        group
    });
    let task = weft::task::Builder::new()
        .timeout(Duration::from_millis(10))
        .spawn_on(group.join_all(), rt.handle());
    let out = block_on_bounded(&rt, task).unwrap();
    assert_eq!(out.len(), 3);
    for r in out {
        let c = r.unwrap().expect_err("cancelled");
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.origin(), Cause::Explicit);
        assert!(c.reason().is_some_and(|r| r.contains("joining")), "{c:?}");
    }
    assert_no_live_tasks(&rt);
}

#[test]
fn join_next_in_a_cancelled_scope_drains_the_group_then_ends() {
    let rt = rt(4);
    let out = in_task(&rt, async {
        let mut group = TaskGroup::new();
        for i in 0..6 {
            group.spawn(child_reporting(if i % 2 == 0 { Some(1) } else { None }));
        }
        sleep(Duration::from_millis(20)).await.unwrap();
        weft::cancel::current().unwrap().cancel();
        let mut out = Vec::new();
        while let Some(r) = group.join_next().await {
            out.push(r.expect("the child returned"));
        }
        assert!(group.is_empty());
        out
    });
    assert_eq!(out.len(), 6, "every child's result, then None");
    assert_eq!(out.iter().filter(|r| r == &&Ok(1)).count(), 3);
    assert_eq!(out.iter().filter(|r| r.is_err()).count(), 3);
    assert_no_live_tasks(&rt);
}

#[test]
fn try_join_next_never_waits() {
    let rt = rt(2);
    in_task(&rt, async {
        let gate = common::Gate::new();
        let mut group = TaskGroup::new();
        assert!(group.try_join_next().is_none(), "empty");
        {
            let gate = gate.clone();
            group.spawn(async move {
                gate.wait().await;
                1
            });
        }
        group.spawn(async { 2 });
        // The quick one finishes; the gated one does not.
        let mut got = None;
        for _ in 0..1000 {
            if let Some(r) = group.try_join_next() {
                got = Some(r.unwrap());
                break;
            }
            sleep(Duration::from_millis(1)).await.unwrap();
        }
        assert_eq!(got, Some(2));
        assert_eq!(group.len(), 1);
        assert!(
            group.try_join_next().is_none(),
            "the gated child still runs"
        );
        gate.open();
        assert_eq!(group.join_next().await.unwrap().unwrap(), 1);
        assert!(group.is_empty());
        assert!(group.try_join_next().is_none());
    });
    assert_no_live_tasks(&rt);
}

#[test]
fn a_reaping_group_holds_only_its_running_children() {
    const N: usize = 2000;
    let rt = rt(2);
    in_task(&rt, async {
        let gate = common::Gate::new();
        let mut group = TaskGroup::new().reap_finished();
        // Like an accept loop: most connections end quickly, a few stay.
        let mut held = 0;
        for i in 0..N {
            if i % 100 == 0 {
                let gate = gate.clone();
                held += 1;
                group.spawn(async move { gate.wait().await });
            } else {
                group.spawn(async {});
            }
            if i % 50 == 0 {
                weft::task::yield_now().await;
            }
        }
        // Eventually only the held ones count, and the handles of the
        // finished ones go at the next spawn.
        let mut waited = 0;
        while group.len() != held {
            sleep(Duration::from_millis(1)).await.unwrap();
            waited += 1;
            assert!(waited < 10_000, "len stuck at {}", group.len());
        }
        group.spawn(async {});
        let dbg = format!("{group:?}");
        let children: usize = dbg
            .split("children: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.trim().parse().ok())
            .expect("children in the Debug output");
        assert!(children <= held + 1, "handles kept: {children} ({dbg})");
        gate.open();
        // Shutdown: stop spawning, join what is left.
        let rest = group.join_all().await;
        assert!(rest.len() <= held + 1);
        assert!(rest.iter().all(Result::is_ok));
    });
    assert_no_live_tasks(&rt);
}
