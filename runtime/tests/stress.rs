//! Volume: a million tiny tasks, deep spawn trees and cross-worker message
//! passing all finish and leave nothing behind.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::Duration,
};

use common::{assert_no_live_tasks, block_on_bounded, block_on_within, eventually_within, rt};

/// Volume tests get a longer bound than the rest of the suite: they take
/// about 2 s alone but share the machine with every other test. The bound is
/// there to turn a lost wakeup into a failure, not to measure speed.
const VOLUME_LIMIT: Duration = Duration::from_secs(120);

/// A million, in debug builds too (about 2 s unoptimised on 2 cores).
const TASKS: usize = 1_000_000;
const CHUNK: usize = 10_000;

#[test]
fn a_million_tiny_tasks_complete_and_none_is_left() {
    let rt = rt(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let total = {
        let ran = ran.clone();
        block_on_within(&rt, VOLUME_LIMIT, async move {
            weft::spawn(async move {
                let mut total = 0usize;
                let mut joins = Vec::with_capacity(CHUNK);
                for chunk in 0..TASKS / CHUNK {
                    for i in 0..CHUNK {
                        let ran = ran.clone();
                        joins.push(weft::spawn(async move {
                            ran.fetch_add(1, SeqCst);
                            chunk * CHUNK + i
                        }));
                    }
                    for j in joins.drain(..) {
                        total += j.await.unwrap();
                    }
                }
                total
            })
            .await
            .unwrap()
        })
    };
    assert_eq!(ran.load(SeqCst), TASKS);
    assert_eq!(total, TASKS * (TASKS - 1) / 2);
    assert_no_live_tasks(&rt);
}

#[test]
fn detached_tasks_all_run_and_none_is_left() {
    let rt = rt(2);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..50_000 {
        let ran = ran.clone();
        drop(rt.spawn(async move {
            weft::task::yield_now().await;
            ran.fetch_add(1, SeqCst);
        }));
    }
    assert!(eventually_within(VOLUME_LIMIT, || ran.load(SeqCst) == 50_000));
    assert_no_live_tasks(&rt);
}

fn tree(depth: u32) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>> {
    Box::pin(async move {
        if depth == 0 {
            return 1;
        }
        let left = weft::spawn(tree(depth - 1));
        let right = weft::spawn(tree(depth - 1));
        left.await.unwrap() + right.await.unwrap()
    })
}

#[test]
fn a_binary_spawn_tree_completes() {
    let rt = rt(4);
    let leaves = block_on_within(&rt, VOLUME_LIMIT, tree(14));
    assert_eq!(leaves, 1 << 14);
    assert_no_live_tasks(&rt);
}

#[test]
fn ping_pong_across_tasks_with_channels() {
    use futures_channel::mpsc;
    use futures_util::StreamExt;
    let rt = rt(2);
    let rounds = block_on_bounded(&rt, async {
        let pairs: Vec<_> = (0..20)
            .map(|_| {
                let (to_b, mut b_rx) = mpsc::unbounded::<u32>();
                let (to_a, mut a_rx) = mpsc::unbounded::<u32>();
                let b = weft::spawn(async move {
                    while let Some(n) = b_rx.next().await {
                        if to_a.unbounded_send(n + 1).is_err() {
                            break;
                        }
                    }
                });
                let a = weft::spawn(async move {
                    let mut n = 0;
                    for _ in 0..500 {
                        to_b.unbounded_send(n).unwrap();
                        n = a_rx.next().await.unwrap();
                    }
                    n
                });
                (a, b)
            })
            .collect();
        let mut rounds = 0;
        for (a, b) in pairs {
            rounds += a.await.unwrap();
            b.await.unwrap();
        }
        rounds
    });
    assert_eq!(rounds, 20 * 500);
    assert_no_live_tasks(&rt);
}
