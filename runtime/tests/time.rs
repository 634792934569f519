//! Time: sleeps never end early, timeouts fire (even over a budget-burning
//! future) and drop what they wrap, intervals keep their documented schedules,
//! dropped sleeps leave no timer behind, and timers fire wherever they were
//! registered and polled.

mod common;

use std::{
    pin::pin,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{block_on_bounded, rt, DropCounter, LIMIT};
use weft::time::{
    interval, interval_at, sleep, sleep_until, timeout, timeout_at, Elapsed, MissedTickBehavior,
};

const MS: Duration = Duration::from_millis(1);

/// `timers_pending` once every task has left the runtime.
///
/// Read right after `block_on_bounded` returns, the count can still include
/// one timer that is not a leak: `block_on_bounded`'s own timeout. A task's
/// join handle may return the output a moment before the task has left the
/// cancellation tree (its worker publishes the output, then finishes the
/// task's node, then takes the task out of the registry), and the scope of
/// the timeout the task was spawned in lingers, with a deadline timer of its
/// own, until its last child has left (see
/// `a_timeout_scope_keeps_a_timer_while_a_task_spawned_in_it_lives`). The
/// registry comes last, so once `alive_tasks` is 0 the count is exact.
fn timers_pending_once_tasks_are_gone(rt: &weft::runtime::Runtime) -> usize {
    common::assert_no_live_tasks(rt);
    rt.metrics().timers_pending
}

#[test]
fn sleep_never_completes_early() {
    let rt = rt(2);
    block_on_bounded(&rt, async {
        let joins: Vec<_> = [0u64, 1, 2, 5, 13, 30, 64, 65, 100]
            .into_iter()
            .map(|ms| {
                weft::spawn(async move {
                    let d = Duration::from_millis(ms);
                    let start = Instant::now();
                    sleep(d).await.unwrap();
                    (d, start.elapsed())
                })
            })
            .collect();
        for join in joins {
            let (asked, slept) = join.await.unwrap();
            assert!(slept >= asked, "slept {slept:?}, asked for {asked:?}");
        }
    });
    assert_eq!(timers_pending_once_tasks_are_gone(&rt), 0);
}

#[test]
fn sleep_until_a_past_instant_is_ready_without_a_timer() {
    let rt = rt(1);
    block_on_bounded(&rt, async {
        let mut s = pin!(sleep_until(Instant::now() - Duration::from_secs(1)));
        assert!(s.is_elapsed());
        assert_eq!(common::poll_once(&mut s).await, Some(Ok(())));
    });
    assert_eq!(rt.metrics().timers_pending, 0);
}

#[test]
fn sleep_polled_from_block_on_fires() {
    let rt = rt(1);
    let start = Instant::now();
    block_on_bounded(&rt, sleep(20 * MS)).unwrap();
    assert!(start.elapsed() >= 20 * MS);
    assert_eq!(rt.metrics().timers_pending, 0);
}

#[test]
fn sleep_deadline_and_reset() {
    let rt = rt(1);
    block_on_bounded(&rt, async {
        let pending = || weft::runtime::Handle::current().metrics().timers_pending;
        let base = pending();
        let start = Instant::now();
        let mut s = pin!(sleep(Duration::from_secs(3600)));
        assert!(s.deadline() >= start + Duration::from_secs(3600));
        assert!(common::poll_once(&mut s).await.is_none());
        assert_eq!(pending(), base + 1);
        // Moving the deadline earlier re-arms it; the old timer is removed.
        let soon = Instant::now() + 10 * MS;
        s.as_mut().reset(soon);
        assert_eq!(s.deadline(), soon);
        assert_eq!(pending(), base, "reset removed the old timer");
        s.as_mut().await.unwrap();
        assert!(Instant::now() >= soon);
        assert!(s.is_elapsed());
        // Reset re-arms a completed sleep too.
        let later = Instant::now() + 5 * MS;
        s.as_mut().reset(later);
        s.await.unwrap();
        assert!(Instant::now() >= later);
    });
}

#[test]
fn a_huge_duration_does_not_overflow() {
    let rt = rt(1);
    block_on_bounded(&rt, async {
        let res = timeout(10 * MS, sleep(Duration::MAX)).await;
        assert!(res.is_err());
        let res = timeout(Duration::MAX, async { 3 }).await;
        assert_eq!(res.unwrap(), 3);
    });
    assert_eq!(rt.metrics().timers_pending, 0);
}

#[test]
fn timeout_returns_the_output_of_a_fast_future() {
    let rt = rt(2);
    block_on_bounded(&rt, async {
        assert_eq!(timeout(Duration::from_secs(10), async { 7 }).await, Ok(7));
        let slept = timeout(Duration::from_secs(10), sleep(5 * MS)).await;
        assert_eq!(slept, Ok(Ok(())));
        let joined = timeout(Duration::from_secs(10), weft::spawn(async { 8 })).await;
        assert_eq!(joined.unwrap().unwrap(), 8);
    });
    assert_eq!(
        timers_pending_once_tasks_are_gone(&rt),
        0,
        "a finished timeout leaves no timer"
    );
}

#[test]
fn timeout_of_a_slow_future_elapses_and_drops_it() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let token = drops.token();
    let (res, waited, deadline) = block_on_bounded(&rt, async move {
        let start = Instant::now();
        let t = timeout(30 * MS, common::pending_forever(token));
        let deadline = t.deadline();
        (t.await, start.elapsed(), deadline)
    });
    let err: Elapsed = res.unwrap_err();
    assert_eq!(err.deadline(), deadline);
    assert_eq!(err.to_string(), "deadline has elapsed");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::TimedOut
    );
    assert!(waited >= 30 * MS, "elapsed after {waited:?}");
    assert_eq!(drops.get(), 1, "the timed-out future was dropped");
    assert_eq!(rt.metrics().timers_pending, 0);
}

#[test]
fn timeout_at_uses_the_absolute_deadline() {
    let rt = rt(1);
    block_on_bounded(&rt, async {
        let deadline = Instant::now() + 20 * MS;
        let res = timeout_at(deadline, std::future::pending::<()>()).await;
        assert!(res.is_err());
        assert!(Instant::now() >= deadline);
        let past = timeout_at(Instant::now() - MS, std::future::pending::<()>()).await;
        assert!(past.is_err(), "a deadline in the past elapses at once");
        let ready_wins = timeout_at(Instant::now() - MS, async { 1 }).await;
        assert_eq!(
            ready_wins,
            Ok(1),
            "a ready future wins over a passed deadline"
        );
    });
}

/// A timeout over a future that spends its whole budget on every poll must
/// still fire: its deadline check spends no budget.
fn timeout_over_a_budget_burner(burn: impl std::future::Future<Output = ()> + Send + 'static) {
    let rt = rt(1);
    let start = Instant::now();
    let res = block_on_bounded(&rt, async move {
        weft::spawn(timeout(30 * MS, burn)).await.unwrap()
    });
    assert!(res.is_err(), "the timeout fired");
    assert!(start.elapsed() >= 30 * MS);
}

#[test]
fn timeout_fires_over_a_consume_budget_loop() {
    timeout_over_a_budget_burner(async {
        loop {
            weft::task::consume_budget().await;
        }
    });
}

#[test]
fn timeout_fires_over_a_zero_sleep_loop() {
    timeout_over_a_budget_burner(async {
        loop {
            // Ignores the cancellation the timeout's deadline delivers:
            // the timeout must still end it.
            let _ = sleep(Duration::ZERO).await;
        }
    });
}

#[test]
fn timeout_fires_over_a_yield_loop_in_block_on() {
    let rt = rt(1);
    let res = block_on_bounded(&rt, async {
        timeout(20 * MS, async {
            loop {
                weft::task::consume_budget().await;
            }
        })
        .await
    });
    assert!(res.is_err());
}

#[test]
fn dropping_a_pending_sleep_removes_its_timer() {
    let rt = rt(2);
    block_on_bounded(&rt, async {
        // The test's bounding timeout arms its timer only after this future
        // first returns Pending; yield once so it is armed before the task
        // below (which may start at once on a worker) reads its base.
        weft::task::yield_now().await;
        weft::spawn(async {
            let metrics = || weft::runtime::Handle::current().metrics();
            // The bounding timeout holds a timer: count from here.
            let base = metrics().timers_pending;
            let mut sleeps: Vec<_> = (0..10)
                .map(|i| Box::pin(sleep(Duration::from_secs(3600 + i))))
                .collect();
            for s in &mut sleeps {
                assert!(common::poll_once(s).await.is_none());
            }
            assert_eq!(metrics().timers_pending, base + 10);
            sleeps.truncate(4);
            assert_eq!(metrics().timers_pending, base + 4);
            drop(sleeps);
            assert_eq!(metrics().timers_pending, base);
        })
        .await
        .unwrap();
    });
    assert_eq!(rt.metrics().timers_pending, 0);
}

#[test]
fn ten_thousand_concurrent_sleeps_all_complete() {
    const SLEEPS: usize = 10_000;
    let rt = rt(2);
    let done = Arc::new(AtomicUsize::new(0));
    block_on_bounded(&rt, async {
        let joins: Vec<_> = (0..SLEEPS)
            .map(|i| {
                let done = done.clone();
                weft::spawn(async move {
                    // Spread over several wheel slots and levels.
                    let d = Duration::from_millis(1 + (i % 97) as u64 * 3);
                    let start = Instant::now();
                    sleep(d).await.unwrap();
                    assert!(start.elapsed() >= d);
                    done.fetch_add(1, SeqCst);
                })
            })
            .collect();
        for join in joins {
            join.await.unwrap();
        }
    });
    assert_eq!(done.load(SeqCst), SLEEPS);
    assert_eq!(timers_pending_once_tasks_are_gone(&rt), 0);
    let m = rt.metrics();
    assert!(m.timers_fired > 0);
    common::assert_no_live_tasks(&rt);
}

#[test]
fn timers_fire_after_their_tasks_move_between_workers() {
    let rt = rt(4);
    let moved = Arc::new(AtomicUsize::new(0));
    block_on_bounded(&rt, async {
        let joins: Vec<_> = (0..400u64)
            .map(|i| {
                let moved = moved.clone();
                weft::spawn(async move {
                    for round in 0..3u64 {
                        let before = std::thread::current().id();
                        let mut s = pin!(sleep(Duration::from_millis(1 + (i + round) % 7)));
                        // Register on this worker...
                        if common::poll_once(&mut s).await.is_none() {
                            // ...let others run and steal us...
                            for _ in 0..(i % 4) {
                                weft::task::yield_now().await;
                            }
                            // ...and finish wherever we are now.
                            s.await.unwrap();
                        }
                        if std::thread::current().id() != before {
                            moved.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for join in joins {
            join.await.unwrap();
        }
    });
    assert_eq!(timers_pending_once_tasks_are_gone(&rt), 0);
    // Informational: how many sleeps finished on another worker.
    eprintln!(
        "sleeps that finished on another worker: {}",
        moved.load(SeqCst)
    );
}

#[test]
// The task hands the registered (awaitable) sleep back on purpose.
#[allow(clippy::async_yields_async)]
fn a_sleep_registered_in_a_task_fires_when_awaited_by_block_on() {
    let rt = rt(2);
    block_on_bounded(&rt, async {
        let start = Instant::now();
        let registered = weft::spawn(async {
            let mut s = Box::pin(sleep(30 * MS));
            assert!(
                common::poll_once(&mut s).await.is_none(),
                "registered on a worker"
            );
            s
        })
        .await
        .unwrap();
        // Now polled by block_on's thread, with a different waker.
        registered.await.unwrap();
        assert!(start.elapsed() >= 30 * MS);
    });
    assert_eq!(timers_pending_once_tasks_are_gone(&rt), 0);
}

#[test]
fn a_sleep_registered_in_block_on_fires_when_awaited_by_a_task() {
    let rt = rt(2);
    block_on_bounded(&rt, async {
        let start = Instant::now();
        let mut s = Box::pin(sleep(30 * MS));
        assert!(
            common::poll_once(&mut s).await.is_none(),
            "registered off-worker"
        );
        weft::spawn(s).await.unwrap().unwrap();
        assert!(start.elapsed() >= 30 * MS);
    });
    assert_eq!(timers_pending_once_tasks_are_gone(&rt), 0);
}

#[test]
fn a_sleep_created_on_a_foreign_thread_after_enter_fires() {
    let rt = rt(1);
    let handle = rt.handle().clone();
    let slept = std::thread::spawn(move || {
        let start = Instant::now();
        handle.block_on(sleep(15 * MS)).unwrap();
        start.elapsed()
    })
    .join()
    .unwrap();
    assert!(slept >= 15 * MS);
}

#[test]
#[should_panic(expected = "a weft timer was polled outside a weft runtime")]
fn a_sleep_polled_outside_a_runtime_panics_with_a_clear_message() {
    let _ = common::block_on_std(sleep(Duration::from_secs(1)), LIMIT);
}

#[test]
fn interval_first_tick_is_immediate_and_ticks_follow_the_period() {
    let rt = rt(1);
    block_on_bounded(&rt, async {
        let period = 20 * MS;
        let created = Instant::now();
        let mut iv = interval(period);
        assert_eq!(iv.period(), period);
        assert_eq!(iv.missed_tick_behavior(), MissedTickBehavior::Burst);
        // Immediate: ready on its very first poll, without waiting.
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(iv.poll_tick(cx))).await;
        let std::task::Poll::Ready(Ok(first)) = first else {
            panic!("the first tick is not ready on the first poll");
        };
        assert!(first >= created && first <= Instant::now());
        for k in 1..=4u32 {
            let scheduled = iv.tick().await.unwrap();
            assert_eq!(scheduled, first + period * k, "tick {k} is on the schedule");
            assert!(Instant::now() >= scheduled, "tick {k} came early");
        }
    });
}

/// `tick` is an await point, as `sleep`: in a cancelled scope (explicit
/// cancel or past the task's deadline) it returns the cancellation at once
/// and keeps doing so, takes no tick (the due tick is still there, on the
/// original schedule, from a live scope), and a task looping on it ends.
#[test]
fn interval_tick_is_a_cancellation_point() {
    let rt = rt(2);
    let _in_rt = rt.enter();
    // Explicit cancel, with a tick due (the first one is immediate).
    let (scheduled, ticked_after) = block_on_bounded(&rt, async {
        let start = Instant::now();
        let mut iv = interval_at(start, 10 * MS);
        let causes = weft::cancel::scope(async {
            weft::cancel::current().expect("inside a scope").cancel();
            let first = iv.tick().await.unwrap_err();
            let again = iv.tick().await.unwrap_err();
            (first.cause(), again.cause())
        })
        .await;
        assert_eq!(
            causes,
            (weft::cancel::Cause::Explicit, weft::cancel::Cause::Explicit)
        );
        // Nothing was taken: the due tick is the one at `start`.
        (start, iv.tick().await.unwrap())
    });
    assert_eq!(ticked_after, scheduled, "the cancelled ticks took nothing");

    // Past the task's deadline: a task ticking every hour ends at its
    // deadline with the deadline cause, not an hour later.
    let began = Instant::now();
    let ticker = weft::task::Builder::new().timeout(20 * MS).spawn(async {
        let mut iv = interval(Duration::from_secs(3600));
        let mut ticks = 0;
        let err = loop {
            match iv.tick().await {
                Ok(_) => ticks += 1,
                Err(e) => break e,
            }
        };
        (ticks, err.is_deadline())
    });
    let (ticks, deadline) = block_on_bounded(&rt, ticker).unwrap();
    assert_eq!(ticks, 1, "the immediate first tick, then the deadline");
    assert!(deadline, "ended by the deadline");
    assert!(began.elapsed() < LIMIT, "ended well before the next tick");
    assert_eq!(timers_pending_once_tasks_are_gone(&rt), 0, "no timer left");
}

#[test]
#[should_panic(expected = "`period` of an interval must be non-zero")]
fn interval_of_zero_panics() {
    let _ = interval(Duration::ZERO);
}

#[test]
#[should_panic(expected = "`period` of an interval must be non-zero")]
fn interval_at_of_zero_panics() {
    let _ = interval_at(Instant::now(), Duration::ZERO);
}

/// The instants one late-tick scenario observed.
struct LateTicks {
    /// When the task came back from missing ticks.
    back: Instant,
    /// Just after the first late tick was taken.
    after_t1: Instant,
    /// The instants the next three ticks reported.
    ticks: [Instant; 3],
}

/// Ticks once at `start`, then stays away for `late` (missing ticks), then
/// takes three more ticks. The scenario is only meaningful if the first tick
/// itself was on time, which a loaded machine may prevent: then it is run
/// again (bounded), and the test fails if it never could be.
async fn late_ticks(behavior: MissedTickBehavior, period: Duration, late: Duration) -> LateTicks {
    for _attempt in 0..10 {
        let start = Instant::now() + 5 * MS;
        let mut iv = interval_at(start, period);
        iv.set_missed_tick_behavior(behavior);
        assert_eq!(iv.tick().await.unwrap(), start);
        if Instant::now() >= start + period {
            // The first tick was already a missed one: try again.
            continue;
        }
        sleep_until(start + late).await.unwrap();
        let back = Instant::now();
        let t1 = iv.tick().await.unwrap();
        let after_t1 = Instant::now();
        let t2 = iv.tick().await.unwrap();
        let t3 = iv.tick().await.unwrap();
        assert!(Instant::now() >= t3, "a tick completed before its instant");
        assert_eq!(
            t1,
            start + period,
            "the first missed tick reports its own instant"
        );
        return LateTicks {
            back,
            after_t1,
            ticks: [t1, t2, t3],
        };
    }
    panic!("the first tick of an interval was never on time in 10 tries");
}

#[test]
fn missed_ticks_burst_keeps_the_original_schedule() {
    let rt = rt(1);
    let period = 40 * MS;
    let LateTicks { back, ticks, .. } =
        block_on_bounded(&rt, late_ticks(MissedTickBehavior::Burst, period, 150 * MS));
    // The missed ticks come back to back, each reporting its own instant on
    // the grid start + k * period: none skipped, none moved.
    let [t1, t2, t3] = ticks;
    assert!(t1 < back && t2 < back, "the first two were missed");
    assert_eq!(t2, t1 + period);
    assert_eq!(t3, t1 + 2 * period);
}

#[test]
fn missed_ticks_delay_restarts_the_schedule_from_the_late_tick() {
    let rt = rt(1);
    let period = 40 * MS;
    let LateTicks {
        back,
        after_t1,
        ticks,
    } = block_on_bounded(&rt, late_ticks(MissedTickBehavior::Delay, period, 150 * MS));
    let [t1, t2, t3] = ticks;
    // The late tick reports the instant it was due for.
    assert!(t1 < back);
    // The next one is a full period after the late tick was taken.
    assert!(
        t2 >= back + period,
        "delay: next tick {:?} after coming back",
        t2 - back
    );
    assert!(t2 <= after_t1 + period);
    // Then the period again (or later, if this thread was slow to get back).
    assert!(t3 >= t2 + period);
}

#[test]
fn missed_ticks_skip_drops_missed_ticks_and_keeps_the_phase() {
    let rt = rt(1);
    let period = 40 * MS;
    let LateTicks {
        back,
        after_t1,
        ticks,
    } = block_on_bounded(&rt, late_ticks(MissedTickBehavior::Skip, period, 150 * MS));
    let [t1, t2, t3] = ticks;
    assert!(t1 < back);
    // On the original grid (t1 is one of its points)...
    let offset = (t2 - t1).as_nanos() % period.as_nanos();
    assert_eq!(offset, 0, "skip left the phase of the schedule");
    // ...at its first point after the late tick was taken: the missed points
    // before `back` are gone...
    assert!(t2 > back, "skip kept a missed tick");
    assert!(t2 <= after_t1 + period);
    // ...and the phase holds from then on.
    assert!(t3 > t2);
    assert_eq!((t3 - t1).as_nanos() % period.as_nanos(), 0);
}

#[test]
fn interval_reset_restarts_from_now() {
    let rt = rt(1);
    block_on_bounded(&rt, async {
        let period = 15 * MS;
        let mut iv = interval(period);
        iv.tick().await.unwrap();
        let before = Instant::now();
        iv.reset();
        let next = iv.tick().await.unwrap();
        assert!(next >= before + period);
    });
}

#[weft::test(worker_threads = 4)]
async fn many_intervals_tick_concurrently() {
    let joins: Vec<_> = (0..50u32)
        .map(|i| {
            weft::spawn(async move {
                let period = Duration::from_millis(2 + u64::from(i % 5));
                let mut iv = interval(period);
                let first = iv.tick().await.unwrap();
                let mut last = first;
                for _ in 0..5 {
                    last = iv.tick().await.unwrap();
                    assert!(Instant::now() >= last);
                }
                assert_eq!(last, first + period * 5);
            })
        })
        .collect();
    for j in joins {
        j.await.unwrap();
    }
}

/// A timeout around code that keeps yielding: the task is always woken
/// during its own poll, so the timeout's timer is never registered (it
/// would be removed at the next poll anyway), and the deadline is still
/// noticed on time by the polls themselves.
#[test]
fn a_timeout_around_a_yield_loop_fires_without_a_timer() {
    let rt = common::rt(2);
    let pending_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = pending_seen.clone();
    // Not `block_on_bounded`: its own timeout would be a pending timer.
    let (tx, rx) = std::sync::mpsc::channel();
    drop(rt.spawn(async move {
        let started = Instant::now();
        let res = timeout(Duration::from_millis(30), async {
            loop {
                let pending = weft::runtime::Handle::current().metrics().timers_pending;
                seen.fetch_max(pending, std::sync::atomic::Ordering::SeqCst);
                weft::task::yield_now().await;
            }
        })
        .await;
        tx.send((res, started.elapsed())).unwrap();
    }));
    let (res, elapsed) = rx.recv_timeout(LIMIT).expect("the task finished");
    assert!(res.is_err(), "the deadline ended the loop");
    assert!(
        elapsed >= Duration::from_millis(30),
        "never early: {elapsed:?}"
    );
    assert_eq!(
        pending_seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no timer was registered for a task that never waited"
    );
}

/// The other side of the rule above: a sleep polled through a combinator's
/// own waker (here `FuturesUnordered`) registers its timer even when the
/// task was woken during the poll, since the combinator re-polls only the
/// futures whose own waker fired.
#[test]
fn a_sleep_under_a_combinator_registers_even_in_a_woken_task() {
    use futures_util::{stream::FuturesUnordered, StreamExt};
    let rt = common::rt(2);
    let done = common::block_on_bounded(
        &rt,
        rt.spawn(async {
            let mut sleeps = FuturesUnordered::new();
            sleeps.push(weft::time::sleep(Duration::from_millis(20)));
            // Poll the sleep once in a poll where the task has woken itself.
            std::future::poll_fn(|cx| {
                cx.waker().wake_by_ref();
                let _ = sleeps.poll_next_unpin(cx);
                std::task::Poll::Ready(())
            })
            .await;
            sleeps.next().await.expect("the sleep completes").is_ok()
        }),
    )
    .unwrap();
    assert!(done);
}

/// The answer to `timers_pending` = 1 seen once after
/// `timers_fire_after_their_tasks_move_between_workers`: not a timer left
/// behind by a task that moved (a sleep's registration names its shard, and
/// its removal or firing takes that shard's lock wherever the task runs; a
/// wheel counts a timer down exactly once, when it fires or when it is
/// removed unfired), but `block_on_bounded`'s own timeout, whose scope
/// lingers with a deadline timer while a task spawned in it has not left the
/// tree. Here the task outlives `block_on` on purpose, so the window that
/// lasts microseconds in the other test stays open: the count is 1 while
/// the task lives and 0 once it is gone.
#[test]
// The join handle is handed out of `block_on` on purpose.
#[allow(clippy::async_yields_async)]
fn a_timeout_scope_keeps_a_timer_while_a_task_spawned_in_it_lives() {
    let rt = rt(2);
    let (release, released) = futures_channel::oneshot::channel::<()>();
    let task = block_on_bounded(&rt, async move {
        weft::spawn(async move {
            released.await.expect("the test sends before dropping");
        })
    });
    assert_eq!(rt.metrics().alive_tasks, 1);
    assert_eq!(
        rt.metrics().timers_pending,
        1,
        "the finished timeout's scope lingers for its live child, with its deadline timer"
    );
    release.send(()).unwrap();
    block_on_bounded(&rt, task).unwrap();
    assert_eq!(timers_pending_once_tasks_are_gone(&rt), 0);
}

/// Timers registered on one worker and removed or fired from others, many
/// times over, leave every shard's count at 0: the count moves with the
/// registration, not with the task.
#[test]
fn timers_removed_from_other_workers_leave_no_count() {
    let rt = rt(4);
    let (tx, rx) = std::sync::mpsc::channel();
    drop(rt.spawn(async move {
        let mut joins = Vec::new();
        for i in 0..200u64 {
            // Registered here, on this task's worker...
            let mut s = Box::pin(sleep(Duration::from_millis(if i % 2 == 0 {
                1
            } else {
                60_000
            })));
            let first = common::poll_once(&mut s).await;
            // A 1 ms sleep may already be due when a slow machine (or
            // TSan) first polls it; the 60 s one must have registered.
            assert!(i % 2 == 0 || first.is_none(), "a 60 s sleep was ready");
            // ...then fired (even) or dropped unfired (odd) by another task,
            // wherever that runs.
            joins.push(weft::spawn(async move {
                weft::task::yield_now().await;
                if i % 2 == 0 {
                    s.await.unwrap();
                } else {
                    drop(s);
                }
            }));
        }
        for join in joins {
            join.await.unwrap();
        }
        tx.send(()).unwrap();
    }));
    rx.recv_timeout(LIMIT).expect("the task finished");
    assert_eq!(timers_pending_once_tasks_are_gone(&rt), 0);
}
