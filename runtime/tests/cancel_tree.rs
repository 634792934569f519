//! The cancellation tree across tasks: a task spawned inside a task is its
//! child and is cancelled with it (to any depth), roots are independent, the
//! first cause and reason win, one wake per waiting task, `abort` versus
//! `cancel`, the io error mapping, and shutdown of a waiting tree.

mod common;

use std::{
    future::Future,
    io,
    pin::pin,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        mpsc, Arc, Mutex,
    },
    task::Poll,
    time::Duration,
};

use common::{
    assert_no_live_tasks, block_on_bounded, counting_polls, eventually, rt, DropCounter, Flag,
    LIMIT,
};
use weft::{
    cancel::{cancelled, check, is_cancelled, Cancelled, Cause},
    runtime::Runtime,
    time::sleep,
};

/// Longer than any test may run: only cancellation ends these sleeps.
const LONG: Duration = Duration::from_secs(3600);

/// Runs `future` as a root task of `rt` (spawned from outside any task) and
/// returns its output, failing the test after [`LIMIT`].
fn in_task<F>(rt: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_on_bounded(rt, rt.spawn(future)).expect("the test's task completed")
}

fn recv<T>(rx: &mpsc::Receiver<T>) -> T {
    rx.recv_timeout(LIMIT)
        .expect("a result arrived within the limit")
}

#[test]
fn cancelling_a_task_cancels_its_children_and_grandchildren() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel::<(u32, Result<(), Cancelled>)>();
    let started = Arc::new(AtomicUsize::new(0));
    let parent = {
        let started = started.clone();
        rt.spawn(async move {
            let (tx1, s1) = (tx.clone(), started.clone());
            weft::spawn(async move {
                let (tx2, s2) = (tx1.clone(), s1.clone());
                weft::spawn(async move {
                    let (tx3, s3) = (tx2.clone(), s2.clone());
                    weft::spawn(async move {
                        s3.fetch_add(1, SeqCst);
                        let _ = tx3.send((3, sleep(LONG).await));
                    });
                    s2.fetch_add(1, SeqCst);
                    let _ = tx2.send((2, sleep(LONG).await));
                });
                s1.fetch_add(1, SeqCst);
                let _ = tx1.send((1, sleep(LONG).await));
            });
            started.fetch_add(1, SeqCst);
            cancelled().await
        })
    };
    assert!(eventually(|| started.load(SeqCst) == 4), "the tree started");
    assert!(
        parent.cancel(),
        "the first cancel of the parent takes effect"
    );

    let own = block_on_bounded(&rt, parent).expect("the parent returned normally");
    assert_eq!(own.cause(), Cause::Explicit);
    assert_eq!(own.origin(), Cause::Explicit);

    let mut depths = Vec::new();
    for _ in 0..3 {
        let (depth, res) = recv(&rx);
        let c = res.expect_err("a descendant's sleep fails once the parent is cancelled");
        assert_eq!(c.cause(), Cause::Parent, "depth {depth}");
        assert_eq!(c.origin(), Cause::Explicit, "depth {depth}");
        assert!(!c.is_deadline());
        depths.push(depth);
    }
    depths.sort_unstable();
    assert_eq!(depths, [1, 2, 3]);
    assert_no_live_tasks(&rt);
}

#[test]
fn a_task_spawned_from_block_on_is_a_root() {
    let rt = rt(2);
    rt.block_on(async {
        // Spawned outside any task (and outside any scope): two roots.
        let a = weft::spawn(async { sleep(LONG).await });
        let b = weft::spawn(async {
            let slept = sleep(Duration::from_millis(50)).await;
            (slept, is_cancelled())
        });
        weft::time::timeout(LIMIT, async move {
            assert!(a.cancel());
            let a_out = a.await.expect("a returned normally");
            assert_eq!(a_out.unwrap_err().cause(), Cause::Explicit);
            let (slept, b_cancelled) = b.await.expect("b returned normally");
            assert!(slept.is_ok(), "cancelling one root must not touch another");
            assert!(!b_cancelled);
        })
        .await
        .expect("within the limit");
    });
    assert_no_live_tasks(&rt);
}

#[test]
fn the_first_cancel_wins_and_later_ones_return_false() {
    let rt = rt(2);
    let started = Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            started.set();
            let first = cancelled().await;
            // Level-triggered: still the same cancellation afterwards.
            let again = check().expect_err("still cancelled");
            (first, again)
        })
    };
    assert!(started.wait());
    assert!(task.cancel_with("first"));
    assert!(
        !task.cancel_with("second"),
        "a second cancel changes nothing"
    );
    assert!(!task.cancel(), "nor does a third");
    let (first, again) = block_on_bounded(&rt, task).unwrap();
    assert_eq!(first.cause(), Cause::Explicit);
    assert_eq!(first.reason(), Some("first"));
    assert_eq!(again, first);
}

#[test]
fn a_deadline_cause_is_kept_against_a_later_explicit_cancel() {
    let rt = rt(2);
    let task = weft::task::Builder::new()
        .timeout(Duration::from_millis(30))
        .spawn_on(async { cancelled().await }, rt.handle());
    let abort = task.abort_handle();
    assert!(eventually(|| abort.is_finished()), "the deadline fired");
    assert!(!task.cancel(), "the deadline already cancelled the task");
    let c = block_on_bounded(&rt, task).unwrap();
    assert_eq!(c.cause(), Cause::Deadline);
    assert!(c.is_deadline());
}

#[test]
fn an_explicit_cause_is_kept_when_the_deadline_passes_later() {
    let rt = rt(2);
    let started = Flag::new();
    let task = {
        let started = started.clone();
        weft::task::Builder::new()
            .timeout(Duration::from_millis(40))
            .spawn_on(
                async move {
                    started.set();
                    let first = cancelled().await;
                    // Let the deadline pass (blocking the worker briefly on
                    // purpose), then look again.
                    std::thread::sleep(Duration::from_millis(80));
                    let later = sleep(LONG).await.expect_err("still cancelled");
                    (first, later)
                },
                rt.handle(),
            )
    };
    assert!(started.wait());
    assert!(task.cancel());
    let (first, later) = block_on_bounded(&rt, task).unwrap();
    assert_eq!(first.cause(), Cause::Explicit);
    assert_eq!(later.cause(), Cause::Explicit, "the first cause stays");
    assert!(!later.is_deadline());
}

#[test]
fn a_reason_reaches_every_descendant() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel::<Result<(), Cancelled>>();
    let started = Arc::new(AtomicUsize::new(0));
    let parent = {
        let started = started.clone();
        rt.spawn(async move {
            let (tx1, s1) = (tx.clone(), started.clone());
            weft::spawn(async move {
                let (tx2, s2) = (tx1.clone(), s1.clone());
                weft::spawn(async move {
                    s2.fetch_add(1, SeqCst);
                    let _ = tx2.send(sleep(LONG).await);
                });
                s1.fetch_add(1, SeqCst);
                let _ = tx1.send(sleep(LONG).await);
            });
            started.fetch_add(1, SeqCst);
            let own = cancelled().await;
            // Spawned after the cancellation: born cancelled, same reason.
            let tx3 = tx.clone();
            weft::spawn(async move {
                let _ = tx3.send(sleep(LONG).await);
            });
            own
        })
    };
    assert!(eventually(|| started.load(SeqCst) == 3));
    assert!(parent.cancel_with("shutting down the db pool"));
    let own = block_on_bounded(&rt, parent).unwrap();
    assert_eq!(own.reason(), Some("shutting down the db pool"));
    for _ in 0..3 {
        let c = recv(&rx).expect_err("cancelled");
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.reason(), Some("shutting down the db pool"));
        assert!(c.to_string().contains("shutting down the db pool"));
    }
}

#[test]
fn cancelling_a_tree_of_ten_thousand_waiting_tasks_wakes_each_once() {
    const MIDS: usize = 100;
    const LEAVES: usize = 100;
    const TASKS: usize = MIDS + MIDS * LEAVES;
    let rt = rt(4);
    let polls: Arc<Vec<AtomicUsize>> = Arc::new((0..TASKS).map(|_| AtomicUsize::new(0)).collect());
    let outcomes = Arc::new(Mutex::new(Vec::<(usize, Result<(), Cancelled>)>::new()));
    let first_polls = Arc::new(AtomicUsize::new(0));

    let root = {
        let (polls, outcomes, first_polls) = (polls.clone(), outcomes.clone(), first_polls.clone());
        rt.spawn(async move {
            for m in 0..MIDS {
                let (polls, outcomes, first_polls) =
                    (polls.clone(), outcomes.clone(), first_polls.clone());
                weft::spawn(async move {
                    for l in 0..LEAVES {
                        let idx = MIDS + m * LEAVES + l;
                        let (polls, outcomes, first_polls) =
                            (polls.clone(), outcomes.clone(), first_polls.clone());
                        weft::spawn(async move {
                            let counter = Arc::new(AtomicUsize::new(0));
                            let res =
                                counting_polls(counter.clone(), first_polls, sleep(LONG)).await;
                            polls[idx].store(counter.load(SeqCst), SeqCst);
                            outcomes.lock().unwrap().push((idx, res));
                        });
                    }
                    let counter = Arc::new(AtomicUsize::new(0));
                    let res = counting_polls(counter.clone(), first_polls, sleep(LONG)).await;
                    polls[m].store(counter.load(SeqCst), SeqCst);
                    outcomes.lock().unwrap().push((m, res));
                });
            }
            cancelled().await
        })
    };
    // Every task is waiting in its sleep (its first poll returned) before the
    // cancel: a cancel landing inside a task's first poll would end it in
    // one poll, and the count below would be wrong for a reason of the
    // test's own making.
    assert!(
        eventually(|| first_polls.load(SeqCst) == TASKS),
        "all {TASKS} tasks waiting ({} are)",
        first_polls.load(SeqCst)
    );
    assert!(root.cancel());
    assert_eq!(
        block_on_bounded(&rt, root).unwrap().cause(),
        Cause::Explicit
    );
    assert!(
        eventually(|| outcomes.lock().unwrap().len() == TASKS),
        "every task finished ({} of {TASKS})",
        outcomes.lock().unwrap().len()
    );
    let outcomes = outcomes.lock().unwrap();
    let mut seen = vec![false; TASKS];
    for (idx, res) in outcomes.iter() {
        assert!(!seen[*idx], "task {idx} reported twice");
        seen[*idx] = true;
        let c = res.as_ref().expect_err("every sleep was cancelled");
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.origin(), Cause::Explicit);
    }
    // One poll that waited, one after the single cancellation wake.
    let extra: Vec<_> = (0..TASKS)
        .filter(|&i| polls[i].load(SeqCst) != 2)
        .map(|i| (i, polls[i].load(SeqCst)))
        .take(10)
        .collect();
    assert!(
        extra.is_empty(),
        "tasks not polled exactly twice: {extra:?}"
    );
    drop(outcomes);
    assert_no_live_tasks(&rt);
}

#[test]
fn is_cancelled_and_check_outside_and_inside_tasks() {
    assert!(!is_cancelled(), "false outside any runtime");
    assert!(check().is_ok());
    let rt = rt(1);
    rt.block_on(async {
        assert!(!is_cancelled(), "false in block_on, outside any task");
        assert!(check().is_ok());
    });
    let started = Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            let before = (is_cancelled(), check());
            started.set();
            let c = cancelled().await;
            (before, c, is_cancelled(), check())
        })
    };
    assert!(started.wait());
    assert!(task.cancel());
    let ((before_flag, before_check), c, after_flag, after_check) =
        block_on_bounded(&rt, task).unwrap();
    assert!(!before_flag);
    assert!(before_check.is_ok());
    assert!(after_flag, "is_cancelled() is true inside after cancel");
    assert_eq!(after_check.expect_err("check() fails after cancel"), c);
}

#[test]
fn cancelled_resolves_on_join_handle_and_abort_handle_cancel() {
    let rt = rt(2);
    for via_abort_handle in [false, true] {
        let started = Flag::new();
        let task = {
            let started = started.clone();
            rt.spawn(async move {
                started.set();
                cancelled().await
            })
        };
        assert!(started.wait());
        if via_abort_handle {
            assert!(task.abort_handle().cancel_with("via abort handle"));
        } else {
            assert!(task.cancel());
        }
        let c = block_on_bounded(&rt, task).expect("returned normally");
        assert_eq!(c.cause(), Cause::Explicit);
        if via_abort_handle {
            assert_eq!(c.reason(), Some("via abort handle"));
        }
    }
}

#[test]
fn abort_drops_the_future_while_cancel_lets_it_clean_up() {
    let rt = rt(2);

    // abort: the task sees nothing; its future is dropped.
    let drops = DropCounter::new();
    let saw_error = Flag::new();
    let started = Flag::new();
    let aborted = {
        let (token, saw_error, started) = (drops.token(), saw_error.clone(), started.clone());
        rt.spawn(async move {
            let _token = token;
            started.set();
            if sleep(LONG).await.is_err() {
                saw_error.set();
            }
            7
        })
    };
    assert!(started.wait());
    aborted.abort();
    let err = block_on_bounded(&rt, aborted).expect_err("an aborted task has no output");
    assert!(err.is_cancelled());
    assert!(
        err.interrupted().is_none(),
        "abort is not an interrupted join"
    );
    assert_eq!(drops.wait_for(1), 1, "the future was dropped exactly once");
    assert!(
        !saw_error.get(),
        "an aborted task never sees its await point fail"
    );

    // cancel: the await point fails, cleanup runs, the value comes back.
    let cleaned = Flag::new();
    let drops = DropCounter::new();
    let started = Flag::new();
    let cancelled_task = {
        let (token, cleaned, started) = (drops.token(), cleaned.clone(), started.clone());
        rt.spawn(async move {
            let _token = token;
            started.set();
            let err = sleep(LONG).await.expect_err("cancelled");
            cleaned.set();
            (42, err)
        })
    };
    assert!(started.wait());
    assert!(cancelled_task.cancel());
    let (value, err) = block_on_bounded(&rt, cancelled_task).expect("Ok after cancel");
    assert_eq!(value, 42);
    assert_eq!(err.cause(), Cause::Explicit);
    assert!(cleaned.get());
    assert_eq!(drops.wait_for(1), 1);
    assert_no_live_tasks(&rt);
}

#[test]
fn cancelled_maps_to_io_errors_by_origin() {
    let rt = rt(2);
    // Explicit.
    let started = Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            started.set();
            cancelled().await
        })
    };
    assert!(started.wait());
    task.cancel();
    let explicit = block_on_bounded(&rt, task).unwrap();
    let e = io::Error::from(explicit.clone());
    assert_eq!(e.kind(), io::ErrorKind::Interrupted);
    let inner = e.get_ref().and_then(|r| r.downcast_ref::<Cancelled>());
    assert_eq!(inner, Some(&explicit));

    // Own deadline and inherited deadline (cause Parent, origin Deadline).
    let (own, inherited) = in_task(&rt, async {
        weft::task::Builder::new()
            .timeout(Duration::from_millis(20))
            .spawn(async {
                let own = sleep(LONG).await.unwrap_err();
                let inherited = weft::spawn(async { sleep(LONG).await.unwrap_err() });
                // The join is interrupted (this scope is cancelled) — read the
                // child's result through a shield instead.
                let inherited = weft::cancel::shield(LIMIT, inherited).await;
                (own, inherited)
            })
            .await
            .unwrap()
    });
    let inherited = inherited.unwrap().unwrap();
    assert_eq!(own.cause(), Cause::Deadline);
    assert_eq!(inherited.cause(), Cause::Parent);
    assert_eq!(inherited.origin(), Cause::Deadline);
    for c in [own, inherited] {
        let e = io::Error::from(c.clone());
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{c:?}");
        assert_eq!(
            e.get_ref().and_then(|r| r.downcast_ref::<Cancelled>()),
            Some(&c)
        );
    }
}

#[test]
fn shutdown_with_a_waiting_tree_leaks_nothing() {
    let rt = rt(2);
    let handle = rt.handle().clone();
    let drops = DropCounter::new();
    let started = Arc::new(AtomicUsize::new(0));
    const ROOTS: usize = 10;
    const PER: usize = 10;
    const TOTAL: usize = ROOTS + ROOTS * PER + ROOTS * PER;
    for _ in 0..ROOTS {
        let (drops, started) = (drops.clone(), started.clone());
        let token = drops.token();
        rt.spawn(async move {
            let _token = token;
            for _ in 0..PER {
                let (drops, started) = (drops.clone(), started.clone());
                let token = drops.token();
                weft::spawn(async move {
                    let _token = token;
                    let (token, s) = (drops.token(), started.clone());
                    weft::spawn(async move {
                        let _token = token;
                        s.fetch_add(1, SeqCst);
                        cancelled().await;
                    });
                    started.fetch_add(1, SeqCst);
                    let _ = sleep(LONG).await;
                });
            }
            started.fetch_add(1, SeqCst);
            let _ = sleep(LONG).await;
        });
    }
    assert!(
        eventually(|| started.load(SeqCst) == TOTAL),
        "the tree started"
    );
    assert!(rt.shutdown_timeout(LIMIT), "every worker stopped in time");
    assert_eq!(drops.get(), TOTAL, "every future was dropped exactly once");
    assert_eq!(handle.metrics().alive_tasks, 0);
}

/// A poll of a cancelled scope's await point is ready at once; this checks
/// the sleep does not even need its timer (it would take an hour).
#[test]
fn await_points_in_a_cancelled_task_are_ready_without_waiting() {
    let rt = rt(1);
    let started = Flag::new();
    let task = {
        let started = started.clone();
        rt.spawn(async move {
            started.set();
            let _ = cancelled().await;
            let mut s = pin!(sleep(LONG));
            std::future::poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx).is_ready())).await
        })
    };
    assert!(started.wait());
    task.cancel();
    assert!(block_on_bounded(&rt, task).unwrap());
}

/// Runtime shutdown cancels each task's scope with `Cause::Shutdown` before
/// dropping its future: destructors (and the subtree) can tell why.
#[test]
fn shutdown_cancels_with_the_shutdown_cause() {
    use std::sync::{Arc, Mutex};

    struct Record(Arc<Mutex<Vec<Option<weft::cancel::Cause>>>>);
    impl Drop for Record {
        fn drop(&mut self) {
            let cause = weft::cancel::check().err().map(|c| c.origin());
            self.0.lock().unwrap().push(cause);
        }
    }

    let rt = weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    {
        let seen = seen.clone();
        rt.spawn(async move {
            let parent_guard = Record(seen.clone());
            let child_seen = seen.clone();
            let child_started = started_tx.clone();
            weft::spawn(async move {
                let _guard = Record(child_seen);
                // The guard exists only once the child ran: wait for that.
                let _ = child_started.send(());
                std::future::pending::<()>().await;
            });
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
            drop(parent_guard);
        });
    }
    for _ in 0..2 {
        started_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the tasks started");
    }
    assert!(rt.shutdown_timeout(std::time::Duration::from_secs(10)));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "both destructors ran: {seen:?}");
    assert!(
        seen.iter()
            .all(|c| *c == Some(weft::cancel::Cause::Shutdown)),
        "{seen:?}"
    );
}

/// A task that returns while its children run stays in the tree for them:
/// cancelling an ancestor still reaches its children (as cancelling a Go
/// context reaches contexts derived from it after the goroutine that made
/// them returned). Once they are done, nothing of it is left.
#[test]
fn cancelling_an_ancestor_reaches_the_children_of_a_finished_task() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel::<Result<(), Cancelled>>();
    let (finished_tx, finished_rx) = mpsc::channel::<()>();
    let drops = DropCounter::new();
    let grandparent = {
        let drops = drops.clone();
        rt.spawn(async move {
            let token = drops.token();
            weft::spawn(async move {
                for _ in 0..3 {
                    let tx = tx.clone();
                    weft::spawn(async move {
                        let _ = tx.send(sleep(LONG).await);
                    });
                }
                // Returns with its three children still waiting.
                drop(token);
            })
            .await
            .expect("the parent returned");
            let _ = finished_tx.send(());
            cancelled().await
        })
    };
    recv(&finished_rx);
    assert_eq!(drops.get(), 1, "the parent's future is gone");
    assert!(grandparent.cancel());
    // The grandparent's cancel reaches each child.
    for c in common::recv_cancellations(&rx, 3) {
        assert_eq!((c.cause(), c.origin()), (Cause::Parent, Cause::Explicit));
    }
    let own = block_on_bounded(&rt, grandparent).expect("the grandparent returned");
    assert_eq!(own.cause(), Cause::Explicit);
    assert_no_live_tasks(&rt);
}

/// A chain of tasks, each spawning the next and finishing. Each finished
/// link stays in the tree while the next one runs (so a cancel of the
/// first still reaches the last), and when the last ends the chain lets
/// go link by link in a loop: a recursive release would overflow the
/// stack at this length (it did, when every child held a count of its
/// parent).
#[test]
fn a_long_chain_of_spawns_is_released_without_recursion() {
    const CHAIN: usize = 200_000;
    fn link(done: mpsc::SyncSender<()>, left: usize) {
        if left == 0 {
            done.send(()).unwrap();
        } else {
            drop(weft::spawn(async move { link(done, left - 1) }));
        }
    }
    let rt = rt(2);
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    drop(rt.spawn(async move { link(done_tx, CHAIN) }));
    done_rx
        .recv_timeout(LIMIT)
        .expect("the end of the chain was reached");
    assert_no_live_tasks(&rt);
}

/// A finished task's node drops its name and the deadline owner it
/// inherited from, whether it was born cancelled (spawned under an already
/// cancelled parent), cancelled by its parent's walk, or finished plainly:
/// nothing it held stays alive. (A born-cancelled node once lost the flag
/// that tells its drop to drop these.)
#[test]
fn a_finished_tasks_node_lets_go_of_its_name_and_deadline_owner() {
    let rt = rt(2);
    let name: Arc<str> = Arc::from("named-child");
    // The parent's name lives as long as the parent's node: it shows
    // whether the child let go of the node it inherited its deadline from.
    let owner_name: Arc<str> = Arc::from("deadline-owner");
    for (born_cancelled, walked) in [(true, false), (false, true), (false, false)] {
        let (child_name, parent_name) = (name.clone(), owner_name.clone());
        let (seen_tx, seen_rx) = mpsc::channel();
        let (spawned_tx, spawned_rx) = mpsc::channel();
        // The parent owns a deadline, so the child inherits it and points
        // at the parent's node as the deadline's owner.
        let parent = {
            let _enter = rt.enter();
            weft::task::Builder::new()
                .timeout(LONG)
                .name(parent_name)
                .spawn(async move {
                    if born_cancelled {
                        cancelled().await;
                    }
                    weft::task::Builder::new()
                        .name(child_name)
                        .spawn(async move {
                            if walked {
                                cancelled().await;
                            }
                            seen_tx.send(is_cancelled()).unwrap();
                        });
                    spawned_tx.send(()).unwrap();
                    if walked {
                        cancelled().await;
                    }
                })
        };
        if born_cancelled {
            parent.cancel();
            recv(&spawned_rx);
        } else {
            recv(&spawned_rx);
            if walked {
                parent.cancel();
            }
        }
        assert_eq!(recv(&seen_rx), born_cancelled || walked);
        let _ = block_on_bounded(&rt, parent);
        assert_no_live_tasks(&rt);
        assert!(
            eventually(|| Arc::strong_count(&name) == 1),
            "the child's node kept its name (born cancelled: {born_cancelled}, walked: {walked})"
        );
        assert!(
            eventually(|| Arc::strong_count(&owner_name) == 1),
            "the child's node kept its deadline owner (born cancelled: {born_cancelled}, walked: {walked})"
        );
    }
}
