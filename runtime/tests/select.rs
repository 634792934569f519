//! `weft::select!` (tokio's syntax and rules: random or `biased;` order,
//! `, if` conditions, refutable patterns that disable a branch, `else`,
//! losers dropped before the handler runs, handlers that `break`/`return`)
//! and the re-exported `join!`/`try_join!`.

mod common;

use std::{
    future::{poll_fn, ready, Future, IntoFuture},
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    task::Poll,
    time::Duration,
};

use common::{
    assert_no_live_tasks, block_on_bounded, block_on_std, pending_forever, rt, DropCounter, LIMIT,
};
use futures_channel::oneshot;
use weft::{cancel::Cause, time::sleep};

fn run<F: Future>(future: F) -> F::Output {
    block_on_std(future, LIMIT).expect("finished in time")
}

#[test]
fn the_first_to_complete_wins_and_the_losers_are_dropped_before_its_handler() {
    let drops = DropCounter::new();
    let (tx, rx) = oneshot::channel::<u32>();
    tx.send(5).unwrap();
    let (value, dropped_in_handler) = run(async {
        weft::select! {
            _ = pending_forever(drops.token()) => unreachable!(),
            Ok(v) = rx => (v, drops.get()),
            _ = pending_forever(drops.token()) => unreachable!(),
        }
    });
    assert_eq!(value, 5);
    assert_eq!(
        dropped_in_handler, 2,
        "both losers were dropped before the handler ran"
    );
    assert_eq!(drops.get(), 2);
}

#[test]
fn biased_polls_in_order_and_unbiased_is_fair() {
    for _ in 0..100 {
        let out = run(async {
            weft::select! {
                biased;
                a = ready(1) => a,
                b = ready(2) => b,
            }
        });
        assert_eq!(out, 1);
    }
    let mut wins = [0; 3];
    for _ in 0..3000 {
        let i = run(async {
            weft::select! {
                a = ready(0) => a,
                b = ready(1) => b,
                c = ready(2) => c,
            }
        });
        wins[i] += 1;
    }
    assert!(wins.iter().all(|&w| w > 500), "unbiased start: {wins:?}");
}

#[test]
fn a_false_condition_disables_its_branch_without_polling_it() {
    let polls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let polls = polls.clone();
        poll_fn(move |_| {
            polls.fetch_add(1, SeqCst);
            Poll::Ready(1)
        })
    };
    let enabled = false;
    let out = run(async {
        weft::select! {
            biased;
            a = counted, if enabled => a,
            b = ready(2) => b,
        }
    });
    assert_eq!(out, 2);
    assert_eq!(polls.load(SeqCst), 0);
}

#[test]
fn a_refused_pattern_disables_its_branch_and_else_runs_when_all_are() {
    let out = run(async {
        weft::select! {
            biased;
            Some(x) = ready(None::<u32>) => x,
            Ok(y) = async { sleep_free_later().await } => y,
        }
    });
    assert_eq!(out, 9, "the first branch was refused, the second won");
    let out = run(async {
        weft::select! {
            Some(x) = ready(None::<u32>) => x,
            Err(e) = ready(Ok::<u32, u32>(1)) => e,
            else => 42,
        }
    });
    assert_eq!(out, 42);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        run(async {
            weft::select! {
                Some(x) = ready(None::<u32>) => x,
            }
        })
    }));
    let msg = panicked.expect_err("all disabled and no else");
    let msg = msg.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("no `else` branch"), "{msg}");
}

/// Ready on the second poll.
async fn sleep_free_later() -> Result<u32, ()> {
    let mut first = true;
    poll_fn(|cx| {
        if std::mem::take(&mut first) {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    Ok(9)
}

#[test]
fn patterns_may_bind_mut_and_ref_and_handlers_control_the_enclosing_loop() {
    let out = run(async {
        let mut seen = Vec::new();
        for i in 0..10u32 {
            let v = weft::select! {
                Ok(mut v) = ready(Ok::<Vec<u32>, ()>(vec![i])) => {
                    v.push(0);
                    v
                }
                (ref a, _) = ready((1u8, 2u8)), if false => vec![u32::from(*a)],
            };
            if i == 3 {
                continue;
            }
            seen.push(v);
            weft::select! {
                _ = ready(()), if i == 5 => break,
                else => {}
            }
        }
        seen
    });
    assert_eq!(
        out,
        vec![vec![0, 0], vec![1, 0], vec![2, 0], vec![4, 0], vec![5, 0]]
    );

    async fn early(flag: bool) -> Result<u32, &'static str> {
        let v: u32 = weft::select! {
            r = ready(if flag { Err("no") } else { Ok(1) }) => r?,
        };
        Ok(v + 1)
    }
    assert_eq!(run(early(false)), Ok(2));
    assert_eq!(
        run(early(true)),
        Err("no"),
        "`?` in a handler returns from the fn"
    );
}

struct Later(u32);

impl IntoFuture for Later {
    type Output = u32;
    type IntoFuture = Pin<Box<dyn Future<Output = u32> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(ready(self.0))
    }
}

#[test]
fn weft_futures_and_into_futures_need_no_fuse_or_unpin() {
    let rt = rt(2);
    let out = block_on_bounded(
        &rt,
        rt.spawn(async {
            let task = weft::spawn(async {
                sleep(Duration::from_millis(5)).await.unwrap();
                7
            });
            let first = weft::select! {
                r = task => r.unwrap(),
                _ = sleep(Duration::from_secs(3600)) => 0,
            };
            let second = weft::select! { v = Later(3) => v };
            (first, second)
        }),
    )
    .unwrap();
    assert_eq!(out, (7, 3));
    assert_no_live_tasks(&rt);
}

#[test]
fn in_a_cancelled_task_a_weft_branch_ends_the_select() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let token = drops.token();
    let task = weft::task::Builder::new()
        .timeout(Duration::from_millis(10))
        .spawn_on(
            async move {
                weft::select! {
                    _ = pending_forever(token) => None,
                    r = sleep(Duration::from_secs(3600)) => r.err(),
                }
            },
            rt.handle(),
        );
    let c = block_on_bounded(&rt, task)
        .unwrap()
        .expect("the sleep was cancelled");
    assert_eq!(c.cause(), Cause::Deadline);
    assert_eq!(drops.get(), 1, "the foreign loser was dropped");
    assert_no_live_tasks(&rt);
}

#[test]
fn join_polls_every_future_concurrently() {
    // Each side needs the other's message: sequential polling would hang.
    let (tx_a, rx_a) = oneshot::channel::<u32>();
    let (tx_b, rx_b) = oneshot::channel::<u32>();
    let (a, b) = run(async {
        weft::join!(
            async move {
                tx_b.send(1).unwrap();
                rx_a.await.unwrap()
            },
            async move {
                tx_a.send(2).unwrap();
                rx_b.await.unwrap()
            },
        )
    });
    assert_eq!((a, b), (2, 1));
}

#[test]
fn try_join_returns_the_first_error_and_drops_the_rest() {
    let drops = DropCounter::new();
    let out = run(async {
        weft::try_join!(
            async {
                pending_forever(drops.token()).await;
                Ok::<u32, &str>(1)
            },
            async { Err::<u32, &str>("boom") },
        )
    });
    assert_eq!(out, Err("boom"));
    assert_eq!(drops.get(), 1);
    let ok = run(async { weft::try_join!(async { Ok::<_, ()>(1) }, async { Ok::<_, ()>("a") }) });
    assert_eq!(ok, Ok((1, "a")));
}

/// 64 branches, tokio's limit, within the default recursion limit.
async fn sixty_four(k: u32) -> u32 {
    weft::select! {
        Some(x) = ready(Some(0u32)), if 0 == k => x,
        Some(x) = ready(Some(1u32)), if 1 == k => x,
        Some(x) = ready(Some(2u32)), if 2 == k => x,
        Some(x) = ready(Some(3u32)), if 3 == k => x,
        Some(x) = ready(Some(4u32)), if 4 == k => x,
        Some(x) = ready(Some(5u32)), if 5 == k => x,
        Some(x) = ready(Some(6u32)), if 6 == k => x,
        Some(x) = ready(Some(7u32)), if 7 == k => x,
        Some(x) = ready(Some(8u32)), if 8 == k => x,
        Some(x) = ready(Some(9u32)), if 9 == k => x,
        Some(x) = ready(Some(10u32)), if 10 == k => x,
        Some(x) = ready(Some(11u32)), if 11 == k => x,
        Some(x) = ready(Some(12u32)), if 12 == k => x,
        Some(x) = ready(Some(13u32)), if 13 == k => x,
        Some(x) = ready(Some(14u32)), if 14 == k => x,
        Some(x) = ready(Some(15u32)), if 15 == k => x,
        Some(x) = ready(Some(16u32)), if 16 == k => x,
        Some(x) = ready(Some(17u32)), if 17 == k => x,
        Some(x) = ready(Some(18u32)), if 18 == k => x,
        Some(x) = ready(Some(19u32)), if 19 == k => x,
        Some(x) = ready(Some(20u32)), if 20 == k => x,
        Some(x) = ready(Some(21u32)), if 21 == k => x,
        Some(x) = ready(Some(22u32)), if 22 == k => x,
        Some(x) = ready(Some(23u32)), if 23 == k => x,
        Some(x) = ready(Some(24u32)), if 24 == k => x,
        Some(x) = ready(Some(25u32)), if 25 == k => x,
        Some(x) = ready(Some(26u32)), if 26 == k => x,
        Some(x) = ready(Some(27u32)), if 27 == k => x,
        Some(x) = ready(Some(28u32)), if 28 == k => x,
        Some(x) = ready(Some(29u32)), if 29 == k => x,
        Some(x) = ready(Some(30u32)), if 30 == k => x,
        Some(x) = ready(Some(31u32)), if 31 == k => x,
        Some(x) = ready(Some(32u32)), if 32 == k => x,
        Some(x) = ready(Some(33u32)), if 33 == k => x,
        Some(x) = ready(Some(34u32)), if 34 == k => x,
        Some(x) = ready(Some(35u32)), if 35 == k => x,
        Some(x) = ready(Some(36u32)), if 36 == k => x,
        Some(x) = ready(Some(37u32)), if 37 == k => x,
        Some(x) = ready(Some(38u32)), if 38 == k => x,
        Some(x) = ready(Some(39u32)), if 39 == k => x,
        Some(x) = ready(Some(40u32)), if 40 == k => x,
        Some(x) = ready(Some(41u32)), if 41 == k => x,
        Some(x) = ready(Some(42u32)), if 42 == k => x,
        Some(x) = ready(Some(43u32)), if 43 == k => x,
        Some(x) = ready(Some(44u32)), if 44 == k => x,
        Some(x) = ready(Some(45u32)), if 45 == k => x,
        Some(x) = ready(Some(46u32)), if 46 == k => x,
        Some(x) = ready(Some(47u32)), if 47 == k => x,
        Some(x) = ready(Some(48u32)), if 48 == k => x,
        Some(x) = ready(Some(49u32)), if 49 == k => x,
        Some(x) = ready(Some(50u32)), if 50 == k => x,
        Some(x) = ready(Some(51u32)), if 51 == k => x,
        Some(x) = ready(Some(52u32)), if 52 == k => x,
        Some(x) = ready(Some(53u32)), if 53 == k => x,
        Some(x) = ready(Some(54u32)), if 54 == k => x,
        Some(x) = ready(Some(55u32)), if 55 == k => x,
        Some(x) = ready(Some(56u32)), if 56 == k => x,
        Some(x) = ready(Some(57u32)), if 57 == k => x,
        Some(x) = ready(Some(58u32)), if 58 == k => x,
        Some(x) = ready(Some(59u32)), if 59 == k => x,
        Some(x) = ready(Some(60u32)), if 60 == k => x,
        Some(x) = ready(Some(61u32)), if 61 == k => x,
        Some(x) = ready(Some(62u32)), if 62 == k => x,
        Some(x) = ready(Some(63u32)), if 63 == k => x,
    }
}

#[test]
fn sixty_four_branches_compile_and_pick_the_enabled_one() {
    for k in [0, 1, 31, 63] {
        assert_eq!(run(sixty_four(k)), k);
    }
}

#[derive(Debug)]
#[allow(dead_code)] // `Quit` is only matched against.
enum Message {
    Data(u32),
    Point { x: u32, y: u32 },
    Quit,
}

#[test]
fn every_pattern_shape_works() {
    let out = run(async {
        let mut seen = Vec::new();
        // A path pattern of four token trees (the token-by-token parser).
        seen.push(weft::select! {
            biased;
            Message::Data(mut v) = ready(Message::Data(1)) => { v += 1; v }
            else => 0,
        });
        seen.push(weft::select! {
            biased;
            Message::Point { x, y: 4 } = ready(Message::Point { x: 3, y: 4 }) => x,
            else => 0,
        });
        // Refused, then an or-pattern and a binding with `@`.
        seen.push(weft::select! {
            biased;
            Message::Quit = ready(Message::Data(9)) => 100,
            1 | 5 = ready(5u32) => 5,
        });
        seen.push(weft::select! {
            n @ 6..=9 = ready(7u32) => n,
            else => 0,
        });
        // A pinned future by `&mut`, polled again by a second select.
        let mut slow = Box::pin(sleep_free_later());
        let first = weft::select! {
            biased;
            r = &mut slow => r.unwrap(),
            v = ready(8u32) => v,
        };
        seen.push(first);
        seen.push(weft::select! { r = &mut slow => r.unwrap() });
        seen
    });
    assert_eq!(out, vec![2, 3, 5, 7, 8, 9]);
}
