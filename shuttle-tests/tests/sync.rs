//! `weft::sync` under randomized schedules: more threads and more steps
//! than the loom models in `loom-tests/tests/sync_*.rs` can explore.
//!
//! Run: `RUSTFLAGS="--cfg weft_shuttle" CARGO_TARGET_DIR=target-shuttle
//! cargo test -p shuttle-tests --release --test sync`
#![cfg(weft_shuttle)]

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use shuttle::{
    future::block_on,
    sync::atomic::{AtomicUsize, Ordering::SeqCst},
    thread,
};
use shuttle_tests::check;
use weft::{
    __loom::{CancelNode, MockScheduler},
    cancel::Cause,
    sync::{error::AcquireError, mpsc, Notify, Semaphore},
    JoinHandle,
};

fn noop_poll<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs the scheduler's queue until `join` is ready. Tasks run on the
/// calling model thread only; the others wake, cancel and send.
fn run_until<T>(sched: &MockScheduler, join: &mut JoinHandle<T>) -> T {
    loop {
        sched.run_all();
        match noop_poll(join) {
            Poll::Ready(Ok(out)) => return out,
            Poll::Ready(Err(e)) => panic!("the task failed: {e}"),
            // Waiting for another model thread's send, wake or cancel.
            Poll::Pending => thread::yield_now(),
        }
    }
}

const PRODUCERS: u32 = 3;
const PER_PRODUCER: u32 = 4;

/// Every value sent exactly once, each producer's values in its order.
fn assert_each_once_in_order(got: &[(u32, u32)]) {
    assert_eq!(got.len(), (PRODUCERS * PER_PRODUCER) as usize, "{got:?}");
    for p in 0..PRODUCERS {
        let mine: Vec<u32> = got.iter().filter(|v| v.0 == p).map(|v| v.1).collect();
        assert_eq!(
            mine,
            (0..PER_PRODUCER).collect::<Vec<_>>(),
            "producer {p}: {got:?}"
        );
    }
}

/// Three producers wait for capacity on a channel of 2 while the receiving
/// task is cancelled through its scope at a random point: the cancelled
/// receive takes nothing, the producers' waits all end, and a later
/// receive outside the scope finds every value not yet taken, once.
#[test]
fn three_producers_and_a_receiver_cancelled_mid_stream() {
    check(
        "three_producers_and_a_receiver_cancelled_mid_stream",
        10_000,
        || {
            let sched = MockScheduler::new();
            let scope = CancelNode::root();
            let (tx, rx) = mpsc::channel::<(u32, u32)>(2);
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        for i in 0..PER_PRODUCER {
                            block_on(tx.send((p, i))).expect("the receiver is alive");
                        }
                    })
                })
                .collect();
            drop(tx);
            let mut join = sched.spawn_child(&scope, async move {
                let mut rx = rx;
                let mut got = Vec::new();
                loop {
                    match rx.recv().await {
                        Ok(v) => got.push(v),
                        Err(mpsc::RecvError::Cancelled(c)) => return (got, rx, Some(c)),
                        // The test holds no sender: `Closed` comes only after
                        // every producer's last send was taken.
                        Err(mpsc::RecvError::Closed) => return (got, rx, None),
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            });
            let canceller = {
                let scope = scope.clone();
                thread::spawn(move || scope.cancel(Cause::Explicit))
            };
            let (mut got, mut rx, cancelled) = run_until(&sched, &mut join);
            canceller.join().unwrap();
            if let Some(c) = cancelled {
                // The task's own node is a child of the cancelled scope.
                assert_eq!(c.cause(), Cause::Parent);
            }
            // Outside the scope: drains what the cancelled task left.
            loop {
                match block_on(rx.recv()) {
                    Ok(v) => got.push(v),
                    Err(mpsc::RecvError::Closed) => break,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            for p in producers {
                p.join().unwrap();
            }
            assert_each_once_in_order(&got);
            assert_eq!(sched.alive(), 0, "the receiving task is gone");
        },
    );
}

/// Three producers race on an unbounded channel whose blocks hold two
/// values under the cfg (so most sends cross or install a block) while the
/// receiver takes values as they come: every value once, in each
/// producer's order, then `Closed`.
#[test]
fn three_unbounded_producers_across_many_blocks() {
    check(
        "three_unbounded_producers_across_many_blocks",
        10_000,
        || {
            let (tx, mut rx) = mpsc::unbounded_channel::<(u32, u32)>();
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        for i in 0..PER_PRODUCER {
                            tx.send((p, i)).expect("the receiver is alive");
                        }
                    })
                })
                .collect();
            drop(tx);
            let mut got = Vec::new();
            loop {
                match block_on(rx.recv()) {
                    Ok(v) => got.push(v),
                    Err(mpsc::RecvError::Closed) => break,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            for p in producers {
                p.join().unwrap();
            }
            assert_each_once_in_order(&got);
        },
    );
}

/// A dropped receiver racing three senders: each value is either received
/// or handed back to its sender, never lost or duplicated, and every value
/// is dropped exactly once.
#[test]
fn a_receiver_dropped_while_three_send_keeps_every_value_accounted() {
    check(
        "a_receiver_dropped_while_three_send_keeps_every_value_accounted",
        10_000,
        || {
            struct Counted(Arc<AtomicUsize>);
            impl Drop for Counted {
                fn drop(&mut self) {
                    self.0.fetch_add(1, SeqCst);
                }
            }
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, mut rx) = mpsc::channel::<Counted>(2);
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|_| {
                    let tx = tx.clone();
                    let drops = drops.clone();
                    thread::spawn(move || {
                        let mut returned = 0;
                        for _ in 0..2 {
                            if let Err(e) = block_on(tx.send(Counted(drops.clone()))) {
                                returned += 1;
                                drop(e.into_inner());
                            }
                        }
                        returned
                    })
                })
                .collect();
            drop(tx);
            let mut received = 0;
            if let Ok(v) = block_on(rx.recv()) {
                received += 1;
                drop(v);
            }
            drop(rx);
            let returned: usize = producers.into_iter().map(|p| p.join().unwrap()).sum();
            let total = (PRODUCERS * 2) as usize;
            assert!(received + returned <= total);
            // The rest were queued when the receiver went: its drop dropped them.
            assert_eq!(drops.load(SeqCst), total, "every value dropped once");
        },
    );
}

/// Eight waiters on a semaphore of 3 permits: four tasks in a scope that is
/// cancelled at a random point, two threads taking 2 permits at once, two
/// taking 1. Never more than 3 permits out; the cancelled waiters end with
/// `Cancelled` and give back whatever they were assigned; every other
/// waiter is served; all 3 permits are back at the end.
#[test]
fn many_waiters_some_cancelled_never_overdraw_nor_lose_permits() {
    check(
        "many_waiters_some_cancelled_never_overdraw_nor_lose_permits",
        10_000,
        || {
            const PERMITS: usize = 3;
            let sem = Arc::new(Semaphore::new(PERMITS));
            let out = Arc::new(AtomicUsize::new(0));
            let take = |out: &AtomicUsize, n: usize| {
                let now = out.fetch_add(n, SeqCst) + n;
                assert!(now <= PERMITS, "{now} permits out of {PERMITS}");
            };
            let sched = MockScheduler::new();
            let scope = CancelNode::root();
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (sem, out) = (sem.clone(), out.clone());
                    sched.spawn_child(&scope, async move {
                        let permit = match sem.acquire().await {
                            Ok(p) => p,
                            Err(AcquireError::Cancelled(_)) => return false,
                            Err(e) => panic!("unexpected {e:?}"),
                        };
                        take(&out, 1);
                        out.fetch_sub(1, SeqCst);
                        drop(permit);
                        true
                    })
                })
                .collect();
            let threads: Vec<_> = [2u32, 2, 1, 1]
                .into_iter()
                .map(|n| {
                    let (sem, out) = (sem.clone(), out.clone());
                    thread::spawn(move || {
                        let permit = block_on(sem.acquire_many(n)).expect("not closed");
                        take(&out, n as usize);
                        thread::yield_now();
                        out.fetch_sub(n as usize, SeqCst);
                        drop(permit);
                    })
                })
                .collect();
            let canceller = {
                let scope = scope.clone();
                thread::spawn(move || scope.cancel(Cause::Explicit))
            };
            let mut served = 0;
            for mut t in tasks {
                if run_until(&sched, &mut t) {
                    served += 1;
                }
            }
            canceller.join().unwrap();
            for t in threads {
                t.join().unwrap();
            }
            assert!(served <= 4);
            assert_eq!(out.load(SeqCst), 0);
            assert_eq!(sem.available_permits(), PERMITS, "every permit is back");
            assert_eq!(sched.alive(), 0);
        },
    );
}

/// The sync bench's `Notify` round trip on two threads (each wait enters
/// the slot when nobody else waits), while a third thread keeps making
/// waiters on the same `Notify`s that register, may move to the list (a
/// poll with a waker they entered without) and leave (dropped, as a
/// cancelled wait leaves): a notification a leaver was given is passed on
/// (or, if its poll consumed it, given back by hand), so every round ends
/// and nothing is left stored. (`notify_waiters` races are in the loom
/// models: here its extra wake-ups would let one side run ahead and two
/// permits coalesce, which is `Notify`'s contract, not a bug.)
#[test]
fn notify_round_trip_with_leaving_waiters() {
    check("notify_round_trip_with_leaving_waiters", 2_000, || {
        const ROUNDS: usize = 4;
        let ping = Arc::new(Notify::new());
        let pong = Arc::new(Notify::new());
        let pinger = {
            let (ping, pong) = (ping.clone(), pong.clone());
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    ping.notify_one();
                    block_on(pong.notified()).unwrap();
                }
            })
        };
        let ponger = {
            let (ping, pong) = (ping.clone(), pong.clone());
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    block_on(ping.notified()).unwrap();
                    pong.notify_one();
                }
            })
        };
        let leaver = {
            let (ping, pong) = (ping.clone(), pong.clone());
            thread::spawn(move || {
                for i in 0..3 {
                    let n = if i % 2 == 0 { &ping } else { &pong };
                    let mut f = Box::pin(n.notified());
                    let consumed = f.as_mut().enable() || {
                        thread::yield_now();
                        noop_poll(&mut f).is_ready()
                    };
                    drop(f);
                    if consumed {
                        n.notify_one();
                    }
                }
            })
        };
        pinger.join().unwrap();
        ponger.join().unwrap();
        leaver.join().unwrap();
        for n in [&ping, &pong] {
            assert!(
                noop_poll(&mut Box::pin(n.notified())).is_pending(),
                "every notification was consumed once, none left stored"
            );
        }
    });
}
