//! `weft::sync` channels on a real runtime: every wait interrupted by a
//! deadline (`timeout`, a task spawned with one) and by an explicit cancel
//! (`JoinHandle::cancel`, `cancel::scope`) loses nothing; close semantics;
//! lag in broadcast; many producers; values dropped exactly once.
//!
//! Run on both io drivers: also with `WEFT_IO=epoll`.

mod common;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    thread,
    time::Duration,
};

use common::{assert_no_live_tasks, block_on_bounded, rt, DropCounter, Flag};
use weft::{
    cancel::{scope, Cause},
    runtime::Runtime,
    sync::{broadcast, mpsc, oneshot, watch},
    task::Builder,
    time::{sleep, timeout},
};

const SHORT: Duration = Duration::from_millis(20);

fn in_task<F>(rt: &Runtime, future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    block_on_bounded(rt, rt.spawn(future)).expect("the test's task completed")
}

/// Spawns `wait` (which signals `started` right before it waits), cancels
/// it once started, and returns its output.
fn cancel_after_start<F, T>(rt: &Runtime, started: &Flag, wait: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let task = rt.spawn(wait);
    assert!(started.wait(), "the waiting task started");
    // Give it time to reach the wait itself.
    thread::sleep(SHORT);
    assert!(task.cancel());
    block_on_bounded(rt, task).expect("the cancelled task returned")
}

fn is_cancelled_by(err: &impl std::fmt::Debug, cause: Cause) -> bool {
    format!("{err:?}").contains(&format!("cause: {cause:?}"))
}

// ---------------------------------------------------------------- oneshot

#[test]
fn oneshot_recv_interrupted_by_timeout_keeps_the_value_receivable() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = oneshot::channel::<u32>();
        let waited = timeout(SHORT, &mut rx).await;
        assert!(
            matches!(waited, Err(_) | Ok(Err(oneshot::RecvError::Cancelled(_)))),
            "the wait ended at the deadline: {waited:?}"
        );
        tx.send(7).unwrap();
        assert_eq!(rx.await, Ok(7));
    });
    assert_no_live_tasks(&rt);
}

#[test]
fn oneshot_recv_in_a_task_past_its_deadline_is_cancelled_and_loses_nothing() {
    let rt = rt(2);
    let (tx, rx) = oneshot::channel::<String>();
    let task = Builder::new().timeout(SHORT).spawn_on(
        async move {
            let mut rx = rx;
            let first = (&mut rx).await;
            // Level-triggered: again, at once.
            let second = (&mut rx).await;
            (first, second, rx)
        },
        rt.handle(),
    );
    let (first, second, rx) = block_on_bounded(&rt, task).unwrap();
    let first = first.expect_err("the deadline ended the wait");
    let oneshot::RecvError::Cancelled(c) = &first else {
        panic!("cancelled, not {first:?}")
    };
    assert!(c.is_deadline());
    assert_eq!(second, Err(first));
    tx.send("kept".into()).unwrap();
    assert_eq!(rx.blocking_recv().as_deref(), Ok("kept"));
}

#[test]
fn oneshot_recv_cancelled_explicitly_leaves_a_sent_value_in_the_channel() {
    let rt = rt(2);
    let (tx, rx) = oneshot::channel::<u32>();
    let started = Flag::new();
    let s = started.clone();
    let (result, mut rx) = cancel_after_start(&rt, &started, async move {
        let mut rx = rx;
        s.set();
        let r = (&mut rx).await;
        (r, rx)
    });
    let err = result.expect_err("cancelled");
    assert!(is_cancelled_by(&err, Cause::Explicit), "{err:?}");
    assert_eq!(err.to_string(), "receive cancelled: cancelled explicitly");
    tx.send(3).unwrap();
    assert_eq!(rx.try_recv(), Ok(3));
}

#[test]
fn oneshot_in_a_cancelled_scope_does_not_take_a_value_already_sent() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = oneshot::channel::<u32>();
        tx.send(1).unwrap();
        let s = scope(async { (&mut rx).await });
        s.handle().cancel();
        let r = s.await;
        assert!(matches!(r, Err(oneshot::RecvError::Cancelled(_))), "{r:?}");
        assert_eq!(rx.await, Ok(1), "the value stayed");
    });
}

#[test]
fn oneshot_closed_wait_ends_when_the_receiver_goes_or_the_scope_is_cancelled() {
    let rt = rt(2);
    in_task(&rt, async {
        let (mut tx, rx) = oneshot::channel::<u32>();
        let dropper = weft::spawn(async move {
            sleep(SHORT).await.unwrap();
            drop(rx);
        });
        tx.closed().await.unwrap();
        assert!(tx.is_closed());
        assert_eq!(tx.send(9), Err(9), "the value comes back");
        dropper.await.unwrap();

        let (mut tx, _rx) = oneshot::channel::<u32>();
        let waited = timeout(SHORT, tx.closed()).await;
        assert!(matches!(waited, Err(_) | Ok(Err(_))), "{waited:?}");
        assert!(!tx.is_closed());
    });
}

// ------------------------------------------------------------------- mpsc

#[test]
fn mpsc_recv_interrupted_by_timeout_then_receives() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = mpsc::channel::<u32>(4);
        let waited = timeout(SHORT, rx.recv()).await;
        assert!(
            matches!(waited, Err(_) | Ok(Err(mpsc::RecvError::Cancelled(_)))),
            "{waited:?}"
        );
        tx.send(1).await.unwrap();
        assert_eq!(rx.recv().await, Ok(1));
    });
    assert_no_live_tasks(&rt);
}

#[test]
fn mpsc_recv_in_a_task_past_its_deadline_takes_nothing() {
    let rt = rt(2);
    let (tx, rx) = mpsc::unbounded_channel::<u32>();
    let task = Builder::new().timeout(SHORT).spawn_on(
        async move {
            let mut rx = rx;
            let first = rx.recv().await;
            (first, rx)
        },
        rt.handle(),
    );
    let (first, mut rx) = block_on_bounded(&rt, task).unwrap();
    let err = first.expect_err("the deadline ended the wait");
    assert!(err.cancelled().is_some_and(|c| c.is_deadline()), "{err:?}");
    tx.send(5).unwrap();
    assert_eq!(rx.blocking_recv(), Ok(5));
}

#[test]
fn mpsc_cancelled_receive_leaves_queued_messages() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = mpsc::channel::<u32>(4);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        let s = scope(async {
            let a = rx.recv().await;
            let b = rx.recv().await;
            (a, b)
        });
        s.handle().cancel();
        let (a, b) = s.await;
        assert!(matches!(a, Err(mpsc::RecvError::Cancelled(_))), "{a:?}");
        assert_eq!(a, b, "level-triggered");
        assert_eq!(rx.recv().await, Ok(1));
        assert_eq!(rx.recv().await, Ok(2));
    });
}

#[test]
fn mpsc_recv_cancelled_explicitly_then_receives() {
    let rt = rt(2);
    let (tx, rx) = mpsc::channel::<u32>(1);
    let started = Flag::new();
    let s = started.clone();
    let (result, mut rx) = cancel_after_start(&rt, &started, async move {
        let mut rx = rx;
        s.set();
        let r = rx.recv().await;
        (r, rx)
    });
    let err = result.expect_err("cancelled");
    assert!(is_cancelled_by(&err, Cause::Explicit), "{err:?}");
    tx.blocking_send(4).unwrap();
    assert_eq!(rx.try_recv(), Ok(4));
}

#[test]
fn mpsc_send_waiting_for_capacity_cancelled_gives_the_value_and_the_slot_back() {
    let rt = rt(2);
    let (tx, mut rx) = mpsc::channel::<String>(1);
    tx.try_send("queued".into()).unwrap();
    let started = Flag::new();
    let s = started.clone();
    let tx2 = tx.clone();
    let result = cancel_after_start(&rt, &started, async move {
        s.set();
        tx2.send("waiting".into()).await
    });
    let err = result.expect_err("cancelled while full");
    assert!(err
        .cancelled()
        .is_some_and(|c| c.cause() == Cause::Explicit));
    assert_eq!(err.into_inner(), "waiting");
    // By deadline, through a timeout.
    let waited = block_on_bounded(&rt, async {
        let tx = tx.clone();
        rt.spawn(async move { timeout(SHORT, tx.send("late".into())).await.is_err() })
            .await
            .unwrap()
    });
    assert!(waited, "the timeout ended the send");
    // And through a task deadline.
    let tx3 = tx.clone();
    let r = block_on_bounded(
        &rt,
        Builder::new().timeout(SHORT).spawn_on(
            async move { tx3.send("deadline".into()).await },
            rt.handle(),
        ),
    )
    .unwrap();
    let err = r.expect_err("deadline");
    assert!(err.cancelled().is_some_and(|c| c.is_deadline()));
    assert_eq!(err.into_inner(), "deadline");
    assert_eq!(rx.try_recv().as_deref(), Ok("queued"));
    assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
    assert_eq!(tx.capacity(), 1, "every slot is back");
}

#[test]
fn mpsc_send_timeout_gives_the_value_back_and_the_slot_stays() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = mpsc::channel::<u32>(1);
        tx.send_timeout(1, SHORT).await.unwrap();
        let err = tx.send_timeout(2, SHORT).await.unwrap_err();
        assert!(matches!(err, mpsc::SendTimeoutError::Timeout(2)), "{err:?}");
        assert_eq!(rx.recv().await, Ok(1));
        assert_eq!(tx.capacity(), 1);
        drop(rx);
        let err = tx.send_timeout(3, SHORT).await.unwrap_err();
        assert!(matches!(err, mpsc::SendTimeoutError::Closed(3)), "{err:?}");
    });
}

#[test]
fn mpsc_a_cancelled_waiting_sender_is_skipped_and_the_others_send() {
    // FIFO order among waiting senders is pinned by the unit tests, where
    // the queueing order is deterministic; here the tasks queue in whatever
    // order the scheduler runs them.
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = mpsc::channel::<u32>(1);
        tx.send(0).await.unwrap();
        let mut handles = Vec::new();
        let mut middle = None;
        for i in 1..=3u32 {
            let tx = tx.clone();
            let h = weft::spawn(async move { tx.send(i).await.map_err(|e| e.into_inner()) });
            sleep(Duration::from_millis(5)).await.unwrap();
            if i == 2 {
                middle = Some(h);
            } else {
                handles.push(h);
            }
        }
        let middle = middle.unwrap();
        middle.cancel();
        assert_eq!(
            middle.await.unwrap(),
            Err(2),
            "the cancelled sender's value"
        );
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().await.unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, [0, 1, 3]);
        for h in handles {
            h.await.unwrap().unwrap();
        }
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
        assert_eq!(tx.capacity(), 1);
    });
}

#[test]
fn mpsc_dropping_every_sender_drains_then_reports_closed() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = mpsc::channel::<u32>(8);
        let tx2 = tx.clone();
        tx.send(1).await.unwrap();
        tx2.send(2).await.unwrap();
        drop(tx);
        drop(tx2);
        assert_eq!(rx.recv().await, Ok(1));
        assert_eq!(rx.recv().await, Ok(2));
        assert_eq!(rx.recv().await, Err(mpsc::RecvError::Closed));
        assert_eq!(rx.recv().await, Err(mpsc::RecvError::Closed));
        assert!(rx.is_closed());
    });
}

#[test]
fn mpsc_a_dropped_receiver_gives_values_back_and_ends_closed_waits() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, rx) = mpsc::channel::<String>(1);
        tx.send("fills".into()).await.unwrap();
        let waiter = {
            let tx = tx.clone();
            weft::spawn(async move { tx.send("waits".into()).await })
        };
        let closed = {
            let tx = tx.clone();
            weft::spawn(async move { tx.closed().await })
        };
        sleep(SHORT).await.unwrap();
        drop(rx);
        let err = waiter.await.unwrap().expect_err("closed");
        assert!(err.is_closed());
        assert_eq!(err.into_inner(), "waits");
        closed.await.unwrap().unwrap();
        assert_eq!(
            tx.try_send("after".into()),
            Err(mpsc::TrySendError::Closed("after".into()))
        );
        let err = tx.send("after".into()).await.unwrap_err();
        assert_eq!(err, mpsc::SendError::Closed("after".to_string()));

        let (utx, urx) = mpsc::unbounded_channel::<u8>();
        drop(urx);
        assert_eq!(utx.send(1).unwrap_err().into_inner(), 1);
        assert!(utx.is_closed());
    });
}

#[test]
fn mpsc_close_stops_senders_and_lets_the_receiver_drain() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
        tx.send(1).unwrap();
        rx.close();
        assert!(tx.send(2).is_err());
        assert_eq!(rx.recv().await, Ok(1));
        assert_eq!(rx.recv().await, Err(mpsc::RecvError::Closed));
    });
}

#[test]
fn mpsc_permits_reserve_and_return_capacity() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut rx) = mpsc::channel::<u32>(2);
        let p1 = tx.reserve().await.unwrap();
        let p2 = tx.reserve().await.unwrap();
        assert_eq!(tx.capacity(), 0);
        let blocked = timeout(SHORT, tx.reserve()).await;
        assert!(matches!(blocked, Err(_) | Ok(Err(_))));
        p1.send(10);
        drop(p2);
        assert_eq!(tx.capacity(), 1, "the unused permit came back");
        let owned = tx.clone().reserve_owned().await.unwrap();
        let tx_again = owned.send(11);
        assert!(tx_again.same_channel(&tx));
        let mut buf = Vec::new();
        assert_eq!(rx.recv_many(&mut buf, 10).await, Ok(2));
        assert_eq!(buf, [10, 11]);
        assert_eq!(tx.capacity(), 2);
    });
}

#[test]
fn mpsc_four_producers_deliver_every_message_once_in_per_producer_order() {
    const PER: u64 = 20_000;
    let rt = rt(2);
    for bounded in [true, false] {
        let seen = in_task(&rt, async move {
            let (btx, mut brx) = mpsc::channel::<(u64, u64)>(16);
            let (utx, mut urx) = mpsc::unbounded_channel::<(u64, u64)>();
            for p in 0..4 {
                let (btx, utx) = (btx.clone(), utx.clone());
                weft::spawn(async move {
                    for i in 0..PER {
                        if bounded {
                            btx.send((p, i)).await.unwrap();
                        } else {
                            utx.send((p, i)).unwrap();
                        }
                    }
                });
            }
            drop((btx, utx));
            let mut next = HashMap::new();
            let mut count = 0;
            loop {
                let got = if bounded {
                    brx.recv().await
                } else {
                    urx.recv().await
                };
                let Ok((p, i)) = got else { break };
                let expected = next.entry(p).or_insert(0);
                assert_eq!(i, *expected, "producer {p} out of order");
                *expected += 1;
                count += 1;
            }
            (count, next)
        });
        assert_eq!(seen.0, 4 * PER);
        assert!(seen.1.values().all(|&n| n == PER));
    }
    assert_no_live_tasks(&rt);
}

#[test]
fn mpsc_blocking_send_and_recv_from_plain_threads() {
    let (tx, mut rx) = mpsc::channel::<u32>(2);
    let producer = thread::spawn(move || {
        for i in 0..100 {
            tx.blocking_send(i).unwrap();
        }
    });
    for i in 0..100 {
        assert_eq!(rx.blocking_recv(), Ok(i));
    }
    producer.join().unwrap();
    assert_eq!(rx.blocking_recv(), Err(mpsc::RecvError::Closed));
}

#[test]
fn values_left_in_channels_are_dropped_exactly_once() {
    let drops = DropCounter::new();
    {
        let (tx, rx) = mpsc::channel(64);
        for _ in 0..40 {
            tx.try_send(drops.token()).unwrap();
        }
        drop(rx);
        assert_eq!(drops.get(), 40, "the receiver's drop drops what is queued");
        let err = tx.try_send(drops.token()).unwrap_err();
        drop(err);
        assert_eq!(drops.get(), 41);
    }
    {
        let (tx, rx) = mpsc::unbounded_channel();
        for _ in 0..100 {
            tx.send(drops.token()).unwrap();
        }
        drop(tx);
        drop(rx);
        assert_eq!(drops.get(), 141);
    }
    {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..70 {
            tx.send(drops.token()).unwrap();
        }
        for _ in 0..35 {
            drop(rx.try_recv().unwrap());
        }
        drop(rx);
        drop(tx);
        assert_eq!(drops.get(), 211);
    }
    {
        // A permit reserved before the receiver closed: its value is
        // dropped (documented), once, and the slot comes back.
        let (tx, mut rx) = mpsc::channel(2);
        let permit = tx.try_reserve().unwrap();
        rx.close();
        permit.send(drops.token());
        assert_eq!(drops.get(), 212);
        assert_eq!(tx.capacity(), 2);
        assert_eq!(
            rx.try_recv().map(drop),
            Err(mpsc::TryRecvError::Disconnected)
        );
    }
    {
        let (tx, rx) = oneshot::channel();
        tx.send(drops.token()).unwrap();
        assert_eq!(drops.get(), 212);
        drop(rx);
        assert_eq!(drops.get(), 213);
        let (tx, rx) = oneshot::channel();
        drop(rx);
        drop(tx.send(drops.token()).unwrap_err());
        assert_eq!(drops.get(), 214);
    }
}

#[test]
fn racing_senders_and_a_dropped_receiver_drop_each_value_once() {
    let rt = rt(2);
    for _ in 0..20 {
        let made = Arc::new(AtomicUsize::new(0));
        let drops = DropCounter::new();
        let (tx, mut rx) = mpsc::channel(4);
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let (tx, drops, made) = (tx.clone(), drops.clone(), made.clone());
                rt.spawn(async move {
                    loop {
                        made.fetch_add(1, SeqCst);
                        if tx.send(drops.token()).await.is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        block_on_bounded(&rt, async {
            for _ in 0..10 {
                drop(rx.recv().await.unwrap());
            }
        });
        drop(rx);
        for p in producers {
            block_on_bounded(&rt, p).unwrap();
        }
        assert_eq!(drops.get(), made.load(SeqCst), "each value dropped once");
    }
}

// ------------------------------------------------------------------ watch

#[test]
fn watch_changed_interrupted_by_deadline_and_cancel_marks_nothing_seen() {
    let rt = rt(2);
    let (tx, rx) = watch::channel(0u32);
    // A task deadline.
    let (first, rx) = block_on_bounded(
        &rt,
        Builder::new().timeout(SHORT).spawn_on(
            async move {
                let mut rx = rx;
                let r = rx.changed().await;
                (r, rx)
            },
            rt.handle(),
        ),
    )
    .unwrap();
    let err = first.expect_err("deadline");
    assert!(
        matches!(&err, watch::RecvError::Cancelled(c) if c.is_deadline()),
        "{err:?}"
    );
    // An explicit cancel.
    let started = Flag::new();
    let s = started.clone();
    let (second, mut rx) = cancel_after_start(&rt, &started, async move {
        let mut rx = rx;
        s.set();
        let r = rx.changed().await;
        (r, rx)
    });
    let err = second.expect_err("cancelled");
    assert!(is_cancelled_by(&err, Cause::Explicit), "{err:?}");
    tx.send(1).unwrap();
    assert_eq!(rx.has_changed(), Ok(true));
    in_task(&rt, async move {
        // A cancelled scope with a change there: still cancelled, and the
        // change stays unseen.
        let s = scope(async { rx.changed().await });
        s.handle().cancel();
        assert!(matches!(s.await, Err(watch::RecvError::Cancelled(_))));
        assert_eq!(rx.has_changed(), Ok(true), "the cancelled wait saw nothing");
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 1);
        let waited = timeout(SHORT, rx.changed()).await;
        assert!(matches!(waited, Err(_) | Ok(Err(_))));
        drop(tx);
        assert_eq!(rx.changed().await, Err(watch::RecvError::Closed));
    });
}

#[test]
fn watch_receivers_wake_on_every_send_and_the_sender_sees_them_go() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, rx) = watch::channel(0u32);
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let mut rx = rx.clone();
            waiters.push(weft::spawn(async move {
                rx.wait_for(|v| *v >= 5).await.map(|v| *v)
            }));
        }
        drop(rx);
        assert_eq!(tx.receiver_count(), 3);
        for i in 1..=5 {
            sleep(Duration::from_millis(1)).await.unwrap();
            tx.send_modify(|v| *v = i);
        }
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(5));
        }
        tx.closed().await.unwrap();
        assert!(tx.is_closed());
        assert_eq!(tx.send(6), Err(watch::SendError(6)));
    });
}

// -------------------------------------------------------------- broadcast

#[test]
fn broadcast_recv_interrupted_by_deadline_and_cancel_reads_nothing() {
    let rt = rt(2);
    let (tx, rx) = broadcast::channel::<u32>(4);
    let (first, rx) = block_on_bounded(
        &rt,
        Builder::new().timeout(SHORT).spawn_on(
            async move {
                let mut rx = rx;
                let r = rx.recv().await;
                (r, rx)
            },
            rt.handle(),
        ),
    )
    .unwrap();
    assert!(
        matches!(&first, Err(broadcast::RecvError::Cancelled(c)) if c.is_deadline()),
        "{first:?}"
    );
    let started = Flag::new();
    let s = started.clone();
    let (second, mut rx) = cancel_after_start(&rt, &started, async move {
        let mut rx = rx;
        s.set();
        let r = rx.recv().await;
        (r, rx)
    });
    let err = second.expect_err("cancelled");
    assert!(is_cancelled_by(&err, Cause::Explicit), "{err:?}");
    tx.send(1).unwrap();
    in_task(&rt, async move {
        let s = scope(async { rx.recv().await });
        s.handle().cancel();
        assert!(matches!(s.await, Err(broadcast::RecvError::Cancelled(_))));
        let waited = timeout(SHORT, async {
            assert_eq!(rx.recv().await, Ok(1), "the value was still there");
            rx.recv().await
        })
        .await;
        assert!(matches!(waited, Err(_) | Ok(Err(_))));
        tx.send(2).unwrap();
        assert_eq!(rx.recv().await, Ok(2));
        drop(tx);
        assert_eq!(rx.recv().await, Err(broadcast::RecvError::Closed));
    });
}

#[test]
fn broadcast_every_receiver_gets_every_value_and_a_slow_one_lags() {
    let rt = rt(2);
    in_task(&rt, async {
        let (tx, mut fast) = broadcast::channel::<u32>(4);
        let mut slow = tx.subscribe();
        assert_eq!(tx.receiver_count(), 2);
        for i in 0..10 {
            assert_eq!(tx.send(i), Ok(2));
            assert_eq!(fast.recv().await, Ok(i));
        }
        assert_eq!(slow.len(), 4);
        assert_eq!(slow.recv().await, Err(broadcast::RecvError::Lagged(6)));
        for i in 6..10 {
            assert_eq!(slow.recv().await, Ok(i));
        }
        assert_eq!(slow.try_recv(), Err(broadcast::TryRecvError::Empty));
        let mut late = slow.resubscribe();
        tx.send(10).unwrap();
        assert_eq!(late.recv().await, Ok(10));
        drop((fast, slow, late));
        assert_eq!(tx.send(11), Err(broadcast::SendError(11)));
    });
}

#[test]
fn broadcast_and_watch_drop_their_values_exactly_once() {
    let drops = DropCounter::new();
    {
        let (tx, rx) = broadcast::channel(4);
        for _ in 0..10 {
            tx.send(Arc::new(drops.token())).unwrap();
        }
        assert_eq!(drops.get(), 6, "overwritten values are dropped");
        drop(rx);
        assert_eq!(tx.send(Arc::new(drops.token())).map_err(drop), Err(()));
        assert_eq!(drops.get(), 7);
        drop(tx);
        assert_eq!(drops.get(), 11);
    }
    {
        let (tx, rx) = watch::channel(drops.token());
        tx.send(drops.token()).unwrap();
        assert_eq!(drops.get(), 12);
        drop(tx.send_replace(drops.token()));
        assert_eq!(drops.get(), 13);
        drop((tx, rx));
        assert_eq!(drops.get(), 14);
    }
}

#[test]
fn mpsc_senders_cut_off_by_deadlines_lose_and_double_nothing() {
    const PRODUCERS: u64 = 6;
    let rt = rt(2);
    let (tx, mut rx) = mpsc::channel::<u64>(2);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            // Deadlines spread over a few ms, while the consumer is slow:
            // senders are cut off while queued, some after being granted
            // a slot.
            Builder::new()
                .timeout(Duration::from_millis(2 + 3 * p))
                .spawn_on(
                    async move {
                        let mut sent = Vec::new();
                        for i in 0.. {
                            match tx.send(p << 32 | i).await {
                                Ok(()) => sent.push(p << 32 | i),
                                Err(e) => {
                                    assert!(e.cancelled().is_some_and(|c| c.is_deadline()));
                                    assert_eq!(e.into_inner(), p << 32 | i, "the value came back");
                                    break;
                                }
                            }
                        }
                        sent
                    },
                    rt.handle(),
                )
        })
        .collect();
    let consumer = rt.spawn(async move {
        let mut got = Vec::new();
        while let Ok(v) = rx.recv().await {
            got.push(v);
            if got.len() % 4 == 0 {
                weft::task::yield_now().await;
            }
        }
        got
    });
    let mut sent = Vec::new();
    for p in producers {
        sent.extend(block_on_bounded(&rt, p).unwrap());
    }
    assert!(
        common::eventually(|| tx.capacity() == tx.max_capacity()),
        "every slot came back once the consumer drained the queue"
    );
    drop(tx);
    let mut got = block_on_bounded(&rt, consumer).unwrap();
    got.sort_unstable();
    sent.sort_unstable();
    assert_eq!(got, sent, "every value sent arrived exactly once");
}

#[test]
fn channel_handles_and_their_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<oneshot::Sender<u8>>();
    send_sync::<oneshot::Receiver<u8>>();
    send_sync::<mpsc::Sender<u8>>();
    send_sync::<mpsc::Receiver<u8>>();
    send_sync::<mpsc::UnboundedSender<u8>>();
    send_sync::<mpsc::UnboundedReceiver<u8>>();
    send_sync::<mpsc::WeakSender<u8>>();
    send_sync::<mpsc::OwnedPermit<u8>>();
    send_sync::<broadcast::Sender<u8>>();
    send_sync::<broadcast::Receiver<u8>>();
    send_sync::<watch::Sender<u8>>();
    send_sync::<watch::Receiver<u8>>();
    let (tx, mut rx) = mpsc::channel::<u8>(1);
    send(&tx.send(1));
    send(&tx.reserve());
    send(&tx.closed());
    send(&rx.recv());
    let (btx, mut brx) = broadcast::channel::<u8>(1);
    send(&brx.recv());
    drop(btx);
    let (wtx, mut wrx) = watch::channel(0u8);
    send(&wrx.changed());
    send(&wtx.closed());
}
