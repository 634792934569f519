#![cfg(weft_loom)]
//! The cancellation tree's protocol (`runtime/src/cancel/node.rs`) under
//! every interleaving loom can find: a child attached while its parent is
//! cancelled, two cancels racing, a cancel racing a task's poll and
//! completion (no lost or double wake, every drop exactly once), and a
//! waiter woken exactly once.

use std::{
    future::{poll_fn, Future},
    pin::Pin,
    sync::Arc as StdArc,
    task::{Context, Poll, Wake, Waker},
};

use loom::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    thread,
};
use weft::{
    __loom::{CancelNode, MockScheduler},
    cancel::Cause,
};

/// Counts its own drop; leaks (failing the model) if never dropped.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A waker that counts wakes.
struct CountingWaker(Arc<AtomicUsize>);

impl Wake for CountingWaker {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &StdArc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Cancels `node` from a new loom thread; joining gives `cancel`'s result.
fn cancel_on_a_thread(node: &CancelNode, cause: Cause) -> thread::JoinHandle<bool> {
    let node = node.clone();
    thread::spawn(move || node.cancel(cause))
}

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn cancel_racing_a_child_attach_always_reaches_the_child() {
    loom::model(|| {
        let parent = CancelNode::root();
        let attacher = {
            let parent = parent.clone();
            thread::spawn(move || CancelNode::child(&parent))
        };
        assert!(parent.cancel(Cause::Explicit));
        let child = attacher.join().unwrap();
        let c = child
            .cancelled()
            .expect("a child attached during the cancel is cancelled");
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.origin(), Cause::Explicit);
        child.finish();
        assert_eq!(parent.child_count(), 0);
    });
}

/// A cancel takes the children out of the parent's list (with the list's
/// counts) while a child's `finish` may be unlinking itself: exactly one of
/// them removes the child, the parent's keep-alive count is released once,
/// and nothing leaks (loom's `Arc` checks) or is touched after its free.
#[test]
fn a_cancel_detaching_children_races_their_finish() {
    loom::model(|| {
        let parent = CancelNode::root();
        let child = CancelNode::child(&parent);
        let sibling = CancelNode::child(&parent);
        let finisher = {
            let child = child.clone();
            thread::spawn(move || {
                child.finish();
                drop(child);
            })
        };
        assert!(parent.cancel(Cause::Explicit));
        // The finisher may still be running: only the list's count and
        // its own keep the parent alive for it.
        drop(parent);
        finisher.join().unwrap();
        assert!(sibling.is_cancelled(), "a linked sibling is reached");
        sibling.finish();
        child.finish();
        drop((child, sibling));
    });
}

/// Two children attaching while the parent is cancelled: the second to
/// lock the list may find the parent already marked as having children and
/// read the mark instead of writing it. Both must end cancelled.
#[test]
fn cancel_racing_two_child_attaches_reaches_both() {
    loom::model(|| {
        let parent = CancelNode::root();
        let attachers: Vec<_> = (0..2)
            .map(|_| {
                let parent = parent.clone();
                thread::spawn(move || CancelNode::child(&parent))
            })
            .collect();
        assert!(parent.cancel(Cause::Explicit));
        for attacher in attachers {
            let child = attacher.join().unwrap();
            assert!(
                child.is_cancelled(),
                "a child attached during the cancel is cancelled"
            );
            child.finish();
        }
    });
}

/// The same race one level down: the cancel walks the parent's list and
/// decides whether the child has children to walk while a grandchild
/// attaches to that child.
#[test]
fn cancel_racing_a_grandchild_attach_always_reaches_the_grandchild() {
    loom::model(|| {
        let parent = CancelNode::root();
        let child = CancelNode::child(&parent);
        let attacher = {
            let child = child.clone();
            thread::spawn(move || CancelNode::child(&child))
        };
        assert!(parent.cancel(Cause::Explicit));
        let grandchild = attacher.join().unwrap();
        let c = grandchild
            .cancelled()
            .expect("a grandchild attached during the cancel is cancelled");
        assert_eq!(c.origin(), Cause::Explicit);
        grandchild.finish();
        child.finish();
    });
}

#[test]
fn two_concurrent_cancels_exactly_one_wins_and_its_cause_stays() {
    loom::model(|| {
        let node = CancelNode::root();
        let child = CancelNode::child(&node);
        let other = cancel_on_a_thread(&node, Cause::Deadline);
        let mine = node.cancel(Cause::Explicit);
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "exactly one cancel returns true");
        let winner = if mine {
            Cause::Explicit
        } else {
            Cause::Deadline
        };
        let c = node.cancelled().expect("cancelled");
        assert_eq!(c.cause(), winner);
        assert_eq!(c.origin(), winner);
        let c = child.cancelled().expect("the child too");
        assert_eq!(c.cause(), Cause::Parent);
        assert_eq!(c.origin(), winner);
        child.finish();
    });
}

/// The task's future: pending until its scope (the task's node, set as the
/// current scope by the real harness) is cancelled.
fn wait_for_cancel(
    polls: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
) -> impl Future<Output = usize> + Send + 'static {
    let guard = DropCount(drops);
    poll_fn(move |_cx| {
        let _keep = &guard;
        let n = polls.fetch_add(1, SeqCst) + 1;
        if weft::cancel::is_cancelled() {
            Poll::Ready(n)
        } else {
            // No waker saved: only the node's cancellation wakes the task.
            Poll::Pending
        }
    })
}

#[test]
fn cancel_racing_a_tasks_poll_is_never_lost_nor_doubled() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let parent = CancelNode::root();
        let (polls, drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut join = sched.spawn_child(&parent, wait_for_cancel(polls.clone(), drops.clone()));

        let canceller = {
            let parent = parent.clone();
            thread::spawn(move || assert!(parent.cancel(Cause::Explicit)))
        };
        sched.run_all();
        canceller.join().unwrap();
        sched.run_all();

        let n = match noop_poll(&mut join) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            Poll::Pending => panic!(
                "lost wake: the task never saw the cancellation (polls {}, alive {}, parent cancelled {})",
                polls.load(SeqCst),
                sched.alive(),
                parent.is_cancelled()
            ),
        };
        assert!(n <= 2, "polled {n} times: a double wake");
        assert_eq!(polls.load(SeqCst), n);
        assert_eq!(sched.alive(), 0);
        drop(join);
        assert_eq!(drops.load(SeqCst), 1, "the future was dropped exactly once");
        assert_eq!(parent.child_count(), 0, "the finished task left the tree");
    });
}

#[test]
fn cancel_racing_a_tasks_completion_is_safe() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let parent = CancelNode::root();
        let (polls, drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut join = {
            let (polls, guard) = (polls.clone(), DropCount(drops.clone()));
            sched.spawn_child(&parent, async move {
                let _guard = guard;
                polls.fetch_add(1, SeqCst);
                3u8
            })
        };
        let canceller = cancel_on_a_thread(&parent, Cause::Explicit);
        sched.run_all();
        assert!(canceller.join().unwrap());
        // A wake after completion must not re-run anything.
        sched.run_all();
        assert!(matches!(noop_poll(&mut join), Poll::Ready(Ok(3))));
        assert_eq!(polls.load(SeqCst), 1);
        assert_eq!(sched.alive(), 0);
        drop(join);
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(parent.child_count(), 0);
    });
}

/// The walk wakes a task child without the child's lock, relying on the
/// parent's list lock to keep the task alive until the child is detached.
/// Here nothing else holds the task (no join handle), so its completion
/// frees it at once: a `finish` that returned before the walk was done
/// with the task would let the walk touch freed memory (run this model
/// under valgrind to see it; see docs/VERIFICATION.md).
#[test]
fn a_walk_racing_a_task_that_completes_and_is_freed_is_safe() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let parent = CancelNode::root();
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCount(drops.clone());
        drop(sched.spawn_child(&parent, async move {
            let _guard = guard;
        }));
        let canceller = cancel_on_a_thread(&parent, Cause::Explicit);
        sched.run_all();
        assert!(canceller.join().unwrap());
        sched.run_all();
        assert_eq!(sched.alive(), 0);
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(parent.child_count(), 0);
    });
}

/// A task that finishes while its child is still attached lingers in its
/// parent's list (its task gone) so that a cancel of the parent still
/// reaches the child. Raced here against that cancel: whichever comes
/// first, the child ends cancelled and woken once, the walk never wakes
/// the freed task (run under valgrind to see such a wake), and once the
/// child finishes the whole tree has let go of everything.
#[test]
fn a_cancel_reaches_the_child_of_a_task_finishing_at_the_same_time() {
    loom::model(|| {
        let sched = MockScheduler::new();
        let root = CancelNode::root();
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCount(drops.clone());
        let (join, task_node) = sched.spawn_child_node(&root, async move {
            let _guard = guard;
        });
        drop(join);
        let child = CancelNode::child(&task_node);
        let wakes = Arc::new(AtomicUsize::new(0));
        child.set_waiter(&Waker::from(StdArc::new(CountingWaker(wakes.clone()))));
        drop(task_node);
        let canceller = cancel_on_a_thread(&root, Cause::Explicit);
        sched.run_all();
        assert!(canceller.join().unwrap());
        sched.run_all();
        assert_eq!(sched.alive(), 0, "the task is gone");
        assert_eq!(drops.load(SeqCst), 1);
        let c = child.cancelled().expect("the cancel reached the child");
        assert_eq!((c.cause(), c.origin()), (Cause::Parent, Cause::Explicit));
        assert_eq!(wakes.load(SeqCst), 1, "the child's waiter was woken once");
        child.finish();
        assert_eq!(
            root.child_count(),
            0,
            "the lingering node left with its child"
        );
    });
}

#[test]
fn a_waiter_is_woken_exactly_once_by_two_concurrent_cancels() {
    loom::model(|| {
        let node = CancelNode::root();
        let wakes = Arc::new(AtomicUsize::new(0));
        let waker = Waker::from(StdArc::new(CountingWaker(wakes.clone())));
        node.set_waiter(&waker);
        let a = cancel_on_a_thread(&node, Cause::Explicit);
        let b = cancel_on_a_thread(&node, Cause::Shutdown);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a ^ b);
        assert_eq!(wakes.load(SeqCst), 1, "woken exactly once");
        node.finish();
    });
}

#[test]
fn a_waiter_set_while_a_cancel_runs_is_not_left_waiting() {
    loom::model(|| {
        let node = CancelNode::root();
        let wakes = Arc::new(AtomicUsize::new(0));
        let canceller = cancel_on_a_thread(&node, Cause::Explicit);
        // The protocol of a scope's poll: register, then check the state.
        let waker = Waker::from(StdArc::new(CountingWaker(wakes.clone())));
        node.set_waiter(&waker);
        let saw = node.is_cancelled();
        assert!(canceller.join().unwrap());
        assert!(
            saw || wakes.load(SeqCst) == 1,
            "neither saw the cancel nor was woken"
        );
        assert!(wakes.load(SeqCst) <= 1);
        node.finish();
    });
}
