//! The cancellation tree (`runtime/src/cancel/node.rs`) under randomized
//! schedules, wider than the loom models in `loom-tests/tests/cancel.rs`:
//! a root with two inner nodes, task children waiting on a `Notify` and
//! plain children, while one thread cancels the root, one finishes plain
//! children, one attaches new children and one wakes the tasks.
//!
//! Run: `RUSTFLAGS="--cfg weft_shuttle" CARGO_TARGET_DIR=target-shuttle
//! cargo test -p shuttle-tests --release --test cancel`
#![cfg(weft_shuttle)]

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use shuttle::thread;
use shuttle_tests::check;
use weft::{
    __loom::{CancelNode, MockScheduler},
    cancel::Cause,
    sync::Notify,
    JoinHandle,
};

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

fn run_until<T>(sched: &MockScheduler, join: &mut JoinHandle<T>) -> T {
    loop {
        sched.run_all();
        match noop_poll(join) {
            Poll::Ready(Ok(out)) => return out,
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            Poll::Pending => thread::yield_now(),
        }
    }
}

/// What a task child saw.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Its wait ended by the notify.
    Notified,
    /// Its wait ended by the cancel, with this cause.
    Cancelled(Cause),
}

/// A cancel of the root racing everything the tree does at once: every
/// node under it ends cancelled with cause `Parent` (the root keeps
/// `Explicit`), children attached during the walk included, except nodes
/// that finished (left the tree) first; each task child ends once, by the
/// cancel or by the notify that raced it, and is freed; finished children
/// leave their parent's list; at the end every list is empty.
#[test]
fn a_cancel_racing_attaches_finishes_and_wakes_reaches_every_node() {
    check(
        "a_cancel_racing_attaches_finishes_and_wakes_reaches_every_node",
        10_000,
        || {
            let sched = MockScheduler::new();
            let root = CancelNode::root();
            let inner = [CancelNode::child(&root), CancelNode::child(&root)];
            let notify = Arc::new(Notify::new());
            // Two task children under each inner node.
            let mut tasks = Vec::new();
            for node in &inner {
                for _ in 0..2 {
                    let notify = notify.clone();
                    let (join, task_node) = sched.spawn_child_node(node, async move {
                        match notify.notified().await {
                            Ok(()) => Outcome::Notified,
                            Err(c) => Outcome::Cancelled(c.cause()),
                        }
                    });
                    tasks.push((join, task_node));
                }
            }
            // Polled once: every task waits (and has its node registered).
            sched.run_all();
            // Two plain children under each inner node; a thread finishes them.
            let plain: Vec<CancelNode> = inner
                .iter()
                .flat_map(|n| [CancelNode::child(n), CancelNode::child(n)])
                .collect();
            let finisher = {
                let plain = plain.clone();
                thread::spawn(move || {
                    for node in &plain {
                        node.finish();
                    }
                })
            };
            // Attaches during the cancel: born cancelled or reached by the walk.
            let attacher = {
                let inner = inner.clone();
                thread::spawn(move || {
                    inner
                        .iter()
                        .map(|n| {
                            let child = CancelNode::child(n);
                            let grandchild = CancelNode::child(&child);
                            (child, grandchild)
                        })
                        .collect::<Vec<_>>()
                })
            };
            let waker = {
                let notify = notify.clone();
                thread::spawn(move || notify.notify_one())
            };
            let canceller = {
                let root = root.clone();
                thread::spawn(move || root.cancel(Cause::Explicit))
            };
            assert!(canceller.join().unwrap(), "the only cancel wins");
            finisher.join().unwrap();
            waker.join().unwrap();
            let attached = attacher.join().unwrap();

            let outcomes: Vec<Outcome> = tasks
                .iter_mut()
                .map(|(join, _)| run_until(&sched, join))
                .collect();
            // One notify_one: at most one task took it; the rest saw the cancel.
            let notified = outcomes.iter().filter(|o| **o == Outcome::Notified).count();
            assert!(notified <= 1, "{outcomes:?}");
            for o in &outcomes {
                assert!(
                    matches!(o, Outcome::Notified | Outcome::Cancelled(Cause::Parent)),
                    "{outcomes:?}"
                );
            }
            assert_eq!(root.cancelled().map(|c| c.cause()), Some(Cause::Explicit));
            // Nodes still attached when the walk passed: cancelled through
            // their parent, those attached during the walk included.
            let attached_nodes = attached.iter().flat_map(|(c, g)| [c, g]);
            for node in inner.iter().chain(attached_nodes) {
                assert_eq!(node.cancelled().map(|c| c.cause()), Some(Cause::Parent));
            }
            // A node that finished first has left the tree and is not reached;
            // one that did not is cancelled through its parent.
            for node in plain.iter().chain(tasks.iter().map(|(_, n)| n)) {
                let cause = node.cancelled().map(|c| c.cause());
                assert!(matches!(cause, None | Some(Cause::Parent)), "{cause:?}");
            }
            for ((_, node), outcome) in tasks.iter().zip(&outcomes) {
                if *outcome == Outcome::Cancelled(Cause::Parent) {
                    assert!(
                        node.is_cancelled(),
                        "a task woken by the cancel has a cancelled node"
                    );
                }
            }
            assert_eq!(sched.alive(), 0, "every task freed");
            for (child, grandchild) in &attached {
                grandchild.finish();
                assert_eq!(child.child_count(), 0);
                child.finish();
            }
            for node in &inner {
                assert_eq!(node.child_count(), 0, "finished children left the list");
                node.finish();
            }
            assert_eq!(root.child_count(), 0);
        },
    );
}

/// Two cancels of different subtrees racing a cancel of their common
/// root and a wake of every task: each task ends exactly once; the first
/// cause to reach a node stays (and only its call reports the win);
/// nothing is left alive.
#[test]
fn overlapping_cancels_give_each_task_one_outcome() {
    check(
        "overlapping_cancels_give_each_task_one_outcome",
        10_000,
        || {
            let sched = MockScheduler::new();
            let root = CancelNode::root();
            let inner = [CancelNode::child(&root), CancelNode::child(&root)];
            let notify = Arc::new(Notify::new());
            let mut joins = Vec::new();
            for node in &inner {
                for _ in 0..3 {
                    let notify = notify.clone();
                    joins.push(sched.spawn_child(node, async move {
                        match notify.notified().await {
                            Ok(()) => Outcome::Notified,
                            Err(c) => Outcome::Cancelled(c.cause()),
                        }
                    }));
                }
            }
            sched.run_all();
            let cancels: Vec<_> = [root.clone(), inner[0].clone(), inner[1].clone()]
                .into_iter()
                .map(|n| thread::spawn(move || n.cancel(Cause::Explicit)))
                .collect();
            let waker = {
                let notify = notify.clone();
                thread::spawn(move || notify.notify_waiters())
            };
            let won: Vec<bool> = cancels.into_iter().map(|c| c.join().unwrap()).collect();
            assert!(won[0], "the root is cancelled only by its own call");
            waker.join().unwrap();
            for (node, won) in inner.iter().zip(&won[1..]) {
                // The call that reached the node first set the cause: its own
                // cancel (`Explicit`, and the call returned true) or the root's
                // walk (`Parent`, and the node's own call returned false).
                let cause = node.cancelled().expect("cancelled").cause();
                assert_eq!(*won, cause == Cause::Explicit, "{cause:?}");
                assert!(matches!(cause, Cause::Explicit | Cause::Parent));
            }
            for (i, join) in joins.iter_mut().enumerate() {
                match run_until(&sched, join) {
                    Outcome::Notified => {}
                    Outcome::Cancelled(cause) => assert_eq!(
                        cause,
                        Cause::Parent,
                        "task {i}: a task's node is only reached through its parent"
                    ),
                }
            }
            assert_eq!(sched.alive(), 0);
        },
    );
}
