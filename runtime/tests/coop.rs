//! Cooperative scheduling: a task looping over always-ready leaf futures is
//! forced to yield when its budget runs out, so on one worker the other tasks
//! still run; `yield_now` puts the yielder behind the ready tasks.

mod common;

use std::time::Duration;

use common::{block_on_bounded, rt, Flag};
use weft::task::{consume_budget, yield_now};

/// Far more rounds than any number of budgets: reaching it means the loop
/// was never descheduled (starvation), and the test fails instead of hanging.
const STARVED: u64 = 5_000_000;

/// Which always-ready leaf future the greedy task loops on.
#[derive(Clone, Copy)]
enum Leaf {
    ConsumeBudget,
    ZeroSleep,
}

async fn greedy_loop(leaf: Leaf, stop: Flag) -> Result<u64, &'static str> {
    let mut rounds = 0;
    while !stop.get() {
        match leaf {
            Leaf::ConsumeBudget => consume_budget().await,
            Leaf::ZeroSleep => weft::time::sleep(Duration::ZERO).await.unwrap(),
        }
        rounds += 1;
        if rounds >= STARVED {
            return Err("the other task never ran: the loop starved it");
        }
    }
    Ok(rounds)
}

/// On one worker: a greedy task loops on `leaf` until a second task sets a
/// flag. The second task can only run if the greedy one is descheduled.
fn greedy_task_does_not_starve_a_local_peer(leaf: Leaf) {
    let rt = rt(1);
    let before = rt.metrics().total_budget_forced_yields();
    let stop = Flag::new();
    let (rounds, peer_done) = block_on_bounded(&rt, async move {
        weft::spawn(async move {
            // The peer waits on this worker's LIFO slot while we loop.
            let peer = {
                let stop = stop.clone();
                weft::spawn(async move { stop.set() })
            };
            let rounds = greedy_loop(leaf, stop).await;
            (rounds, peer.await.is_ok())
        })
        .await
        .unwrap()
    });
    let rounds = rounds.unwrap();
    assert!(peer_done);
    assert!(rounds >= 1);
    let after = rt.metrics().total_budget_forced_yields();
    assert!(
        after > before,
        "a forced yield was recorded ({before} -> {after})"
    );
    common::assert_no_live_tasks(&rt);
}

#[test]
fn consume_budget_loop_does_not_starve_a_local_peer() {
    greedy_task_does_not_starve_a_local_peer(Leaf::ConsumeBudget);
}

#[test]
fn zero_sleep_loop_does_not_starve_a_local_peer() {
    greedy_task_does_not_starve_a_local_peer(Leaf::ZeroSleep);
}

/// As above, with the peer spawned from outside (it waits in the injector)
/// after the greedy loop is already running.
fn greedy_task_does_not_starve_a_remote_peer(leaf: Leaf) {
    let rt = rt(1);
    let stop = Flag::new();
    let looping = Flag::new();
    let greedy = {
        let (stop, looping) = (stop.clone(), looping.clone());
        rt.spawn(async move {
            looping.set();
            greedy_loop(leaf, stop).await
        })
    };
    assert!(looping.wait());
    let peer = {
        let stop = stop.clone();
        rt.spawn(async move { stop.set() })
    };
    let rounds = block_on_bounded(&rt, async {
        peer.await.unwrap();
        greedy.await.unwrap()
    });
    rounds.unwrap();
    assert!(rt.metrics().total_budget_forced_yields() > 0);
    common::assert_no_live_tasks(&rt);
}

#[test]
fn consume_budget_loop_does_not_starve_a_remote_peer() {
    greedy_task_does_not_starve_a_remote_peer(Leaf::ConsumeBudget);
}

#[test]
fn zero_sleep_loop_does_not_starve_a_remote_peer() {
    greedy_task_does_not_starve_a_remote_peer(Leaf::ZeroSleep);
}

#[test]
fn a_budget_lasts_a_bounded_number_of_leaf_polls() {
    // Each poll of a task has a finite budget: a loop of N consume_budget
    // calls is split into more than one poll once N exceeds it.
    let rt = rt(1);
    block_on_bounded(&rt, async {
        weft::spawn(async {
            for _ in 0..10_000 {
                consume_budget().await;
            }
        })
        .await
        .unwrap();
    });
    let m = rt.metrics();
    assert!(
        m.total_budget_forced_yields() >= 10_000 / 1_000,
        "10,000 budget units spent in one poll? forced yields: {}",
        m.total_budget_forced_yields()
    );
    assert!(m.total_polls() > 10_000 / 1_000);
}

#[test]
fn yield_now_runs_a_ready_local_task_before_resuming() {
    let rt = rt(1);
    let saw_peer = block_on_bounded(&rt, async {
        weft::spawn(async {
            let ran = Flag::new();
            let peer = {
                let ran = ran.clone();
                weft::spawn(async move { ran.set() })
            };
            assert!(!ran.get(), "one worker: the peer cannot have run yet");
            yield_now().await;
            let saw_peer = ran.get();
            peer.await.unwrap();
            saw_peer
        })
        .await
        .unwrap()
    });
    assert!(
        saw_peer,
        "yield_now resumed before a ready task on its worker ran"
    );
}

#[test]
fn yield_now_loop_lets_a_remote_task_run_on_one_worker() {
    let rt = rt(1);
    let stop = Flag::new();
    let looping = Flag::new();
    let yielder = {
        let (stop, looping) = (stop.clone(), looping.clone());
        rt.spawn(async move {
            looping.set();
            let mut rounds = 0u64;
            while !stop.get() {
                yield_now().await;
                rounds += 1;
                if rounds >= STARVED {
                    return Err("starved");
                }
            }
            Ok(rounds)
        })
    };
    assert!(looping.wait());
    let setter = {
        let stop = stop.clone();
        rt.spawn(async move { stop.set() })
    };
    block_on_bounded(&rt, async {
        setter.await.unwrap();
        yielder.await.unwrap().unwrap();
    });
}

#[test]
fn two_yielding_tasks_on_one_worker_interleave() {
    let rt = rt(1);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    block_on_bounded(&rt, async {
        let log = log.clone();
        weft::spawn(async move {
            let spawn_logger = |name: char| {
                let log = log.clone();
                weft::spawn(async move {
                    for _ in 0..5 {
                        log.lock().unwrap().push(name);
                        yield_now().await;
                    }
                })
            };
            let a = spawn_logger('a');
            let b = spawn_logger('b');
            a.await.unwrap();
            b.await.unwrap();
        })
        .await
        .unwrap();
    });
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 10);
    // Neither task ran all its rounds before the other started.
    let first_b = log.iter().position(|&c| c == 'b').unwrap();
    let last_a = log.iter().rposition(|&c| c == 'a').unwrap();
    assert!(
        first_b < last_a,
        "yield_now did not let the other task in: {log:?}"
    );
}

#[test]
fn block_on_itself_survives_an_exhausted_budget() {
    // block_on's future runs with a budget too; running out must only make
    // it yield to itself, never hang.
    let rt = rt(1);
    let n = block_on_bounded(&rt, async {
        let mut n = 0u32;
        for _ in 0..10_000 {
            consume_budget().await;
            weft::time::sleep(Duration::ZERO).await.unwrap();
            n += 1;
        }
        n
    });
    assert_eq!(n, 10_000);
}

#[test]
fn consume_budget_outside_any_runtime_is_always_ready() {
    let done = common::block_on_std(
        async {
            for _ in 0..10_000 {
                consume_budget().await;
            }
        },
        common::LIMIT,
    );
    assert!(done.is_some());
}

#[weft::test(worker_threads = 1)]
async fn a_busy_joiner_loop_does_not_starve_the_task_it_joins() {
    // A task that busy-polls a join handle (instead of awaiting it) while
    // spending budget is descheduled often enough for the target to run.
    let stop = Flag::new();
    let target = {
        let stop = stop.clone();
        weft::spawn(async move {
            stop.set();
            42
        })
    };
    let mut target = target;
    let mut rounds = 0u64;
    let out = loop {
        if let Some(out) = common::poll_once(&mut target).await {
            break out;
        }
        consume_budget().await;
        rounds += 1;
        assert!(rounds < STARVED, "the joined task never ran");
    };
    assert_eq!(out.unwrap(), 42);
    assert!(stop.get());
}
