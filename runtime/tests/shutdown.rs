//! Shutdown: pending tasks are dropped and their joins cancelled, a worker
//! stuck in a poll does not hold `shutdown_timeout` past its limit, spawns
//! after shutdown are cancelled, thread hooks run for every worker, and
//! nothing leaks.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use common::{block_on_std, pending_forever, rt, DropCounter, Flag, LIMIT};
use weft::runtime::Builder;

const N: usize = 100;

#[test]
fn shutdown_timeout_drops_pending_tasks_and_cancels_their_joins() {
    let rt = rt(2);
    let drops = DropCounter::new();
    let polled = Arc::new(AtomicUsize::new(0));
    let joins: Vec<_> = (0..N)
        .map(|_| {
            let (token, polled) = (drops.token(), polled.clone());
            rt.spawn(async move {
                polled.fetch_add(1, SeqCst);
                pending_forever(token).await
            })
        })
        .collect();
    assert!(common::eventually(|| polled.load(SeqCst) == N));
    assert_eq!(rt.metrics().alive_tasks, N);
    assert!(rt.shutdown_timeout(LIMIT), "idle workers stop in time");
    assert_eq!(drops.get(), N, "every pending future's destructor ran");
    for join in joins {
        assert!(join.is_finished());
        let err = block_on_std(join, LIMIT).expect("a join resolves after shutdown");
        assert!(err.unwrap_err().is_cancelled());
    }
}

#[test]
fn joins_of_a_shut_down_runtime_resolve_inside_a_fresh_runtime() {
    let old = rt(2);
    let drops = DropCounter::new();
    let joins: Vec<_> = (0..N)
        .map(|_| old.spawn(pending_forever(drops.token())))
        .collect();
    // Some never polled, some idle: shutdown handles both.
    drop(old);
    assert_eq!(drops.get(), N);
    let fresh = rt(1);
    let cancelled = common::block_on_bounded(&fresh, async {
        let mut cancelled = 0;
        for join in joins {
            if join.await.unwrap_err().is_cancelled() {
                cancelled += 1;
            }
        }
        cancelled
    });
    assert_eq!(cancelled, N);
}

#[test]
fn tasks_queued_but_never_polled_are_dropped_at_shutdown() {
    let rt = rt(1);
    let (release, blocked) = mpsc::channel::<()>();
    let started = Flag::new();
    {
        let started = started.clone();
        drop(rt.spawn(async move {
            started.set();
            let _ = blocked.recv_timeout(Duration::from_millis(200));
        }));
    }
    assert!(started.wait());
    let drops = DropCounter::new();
    let polled = Flag::new();
    let joins: Vec<_> = (0..N)
        .map(|_| {
            let (token, polled) = (drops.token(), polled.clone());
            rt.spawn(async move {
                let _token = token;
                polled.set();
            })
        })
        .collect();
    drop(release);
    // The worker may get to some of them before the flag is seen; the rest
    // are dropped unpolled. Either way each future is dropped exactly once.
    assert!(rt.shutdown_timeout(LIMIT));
    assert_eq!(drops.get(), N);
    for join in joins {
        let res = block_on_std(join, LIMIT).expect("resolved");
        assert!(res.is_ok() || res.unwrap_err().is_cancelled());
    }
}

#[test]
fn a_worker_stuck_in_a_poll_does_not_hold_shutdown_past_its_timeout() {
    let rt = rt(2);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let stuck = Flag::new();
    let drops = DropCounter::new();
    let join = {
        let (stuck, token) = (stuck.clone(), drops.token());
        rt.spawn(async move {
            let _token = token;
            stuck.set();
            // Blocks its worker; bounded so the test cannot hang.
            let _ = release_rx.recv_timeout(LIMIT);
            std::future::pending::<()>().await;
        })
    };
    assert!(stuck.wait());
    let start = Instant::now();
    let clean = rt.shutdown_timeout(Duration::from_millis(100));
    let took = start.elapsed();
    assert!(!clean, "a worker stuck in a poll is reported");
    assert!(took < LIMIT / 2, "shutdown_timeout returned after {took:?}");
    assert!(
        took >= Duration::from_millis(100),
        "it waited its timeout first"
    );
    // The stuck task is marked cancelled; it is dropped when its poll returns.
    assert_eq!(drops.get(), 0);
    release_tx.send(()).unwrap();
    assert_eq!(drops.wait_for(1), 1);
    let res = block_on_std(join, LIMIT).expect("the stuck task's join resolves");
    assert!(res.unwrap_err().is_cancelled());
}

#[test]
fn shutdown_background_returns_without_waiting_for_a_stuck_worker() {
    let rt = rt(1);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let stuck = Flag::new();
    {
        let stuck = stuck.clone();
        drop(rt.spawn(async move {
            stuck.set();
            let _ = release_rx.recv_timeout(LIMIT);
        }));
    }
    assert!(stuck.wait());
    let start = Instant::now();
    assert!(!rt.shutdown_background());
    assert!(start.elapsed() < LIMIT / 2);
    release_tx.send(()).unwrap();
}

#[test]
fn spawn_through_a_kept_handle_after_shutdown_is_cancelled() {
    let rt = rt(2);
    let handle = rt.handle().clone();
    assert!(rt.shutdown_timeout(LIMIT));
    let drops = DropCounter::new();
    let polled = Flag::new();
    let join = {
        let (token, polled) = (drops.token(), polled.clone());
        handle.spawn(async move {
            let _token = token;
            polled.set();
        })
    };
    assert_eq!(drops.get(), 1, "the future is dropped at once");
    let err = block_on_std(join, LIMIT).expect("resolves").unwrap_err();
    assert!(err.is_cancelled());
    assert!(!polled.get());
    // weft::spawn through an entered, shut-down runtime behaves the same.
    let _guard = handle.enter();
    let join = weft::spawn(async { 1 });
    assert!(block_on_std(join, LIMIT)
        .unwrap()
        .unwrap_err()
        .is_cancelled());
    assert_eq!(handle.metrics().alive_tasks, 0);
}

#[test]
fn spawn_blocking_through_a_kept_handle_after_shutdown_is_cancelled() {
    let rt = rt(1);
    let handle = rt.handle().clone();
    drop(rt);
    let ran = Flag::new();
    let join = {
        let ran = ran.clone();
        handle.spawn_blocking(move || ran.set())
    };
    let err = block_on_std(join, LIMIT).expect("resolves").unwrap_err();
    assert!(err.is_cancelled());
    assert!(!ran.get());
}

#[test]
fn a_destructor_that_spawns_during_shutdown_gets_a_cancelled_task() {
    struct SpawnOnDrop {
        spawned: Arc<Mutex<Option<weft::JoinHandle<()>>>>,
        inner: DropCounter,
    }
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            let token = self.inner.token();
            let join = weft::spawn(async move {
                let _token = token;
            });
            *self.spawned.lock().unwrap() = Some(join);
        }
    }
    let rt = rt(1);
    let spawned = Arc::new(Mutex::new(None));
    let inner = DropCounter::new();
    let polled = Flag::new();
    {
        let guard = SpawnOnDrop {
            spawned: spawned.clone(),
            inner: inner.clone(),
        };
        let polled = polled.clone();
        drop(rt.spawn(async move {
            let _guard = guard;
            polled.set();
            std::future::pending::<()>().await;
        }));
    }
    assert!(polled.wait());
    assert!(rt.shutdown_timeout(LIMIT));
    assert_eq!(inner.get(), 1, "the late spawn's future was dropped");
    let join = spawned.lock().unwrap().take().expect("the destructor ran");
    assert!(block_on_std(join, LIMIT)
        .unwrap()
        .unwrap_err()
        .is_cancelled());
}

#[test]
fn dropping_the_runtime_drops_pending_tasks_in_bounded_time() {
    let drops = DropCounter::new();
    let (done_tx, done_rx) = mpsc::channel();
    {
        let drops = drops.clone();
        thread::spawn(move || {
            let rt = rt(2);
            for _ in 0..N {
                drop(rt.spawn(pending_forever(drops.token())));
            }
            for _ in 0..N {
                drop(rt.spawn(async {
                    let _ = weft::time::sleep(Duration::from_secs(3600)).await;
                }));
            }
            drop(rt);
            done_tx.send(()).unwrap();
        });
    }
    done_rx
        .recv_timeout(LIMIT)
        .expect("dropping the runtime finished");
    assert_eq!(drops.get(), N);
}

#[test]
fn thread_hooks_run_once_per_worker_on_that_worker() {
    const WORKERS: usize = 4;
    let started = Arc::new(Mutex::new(Vec::new()));
    let stopped = Arc::new(Mutex::new(Vec::new()));
    let rt = {
        let (started, stopped) = (started.clone(), stopped.clone());
        Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("hooked")
            .on_thread_start(move || {
                let me = thread::current();
                started
                    .lock()
                    .unwrap()
                    .push((me.id(), me.name().map(str::to_owned)));
            })
            .on_thread_stop(move || {
                stopped.lock().unwrap().push(thread::current().id());
            })
            .build()
            .unwrap()
    };
    assert!(common::eventually(
        || started.lock().unwrap().len() == WORKERS
    ));
    assert!(stopped.lock().unwrap().is_empty());
    assert!(rt.shutdown_timeout(LIMIT));
    let started = started.lock().unwrap().clone();
    let stopped = stopped.lock().unwrap().clone();
    assert_eq!(started.len(), WORKERS);
    assert_eq!(
        stopped.len(),
        WORKERS,
        "on_thread_stop ran before shutdown returned"
    );
    for (id, name) in &started {
        assert_eq!(
            name.as_deref(),
            Some("hooked"),
            "hooks run on the runtime's threads"
        );
        assert!(stopped.contains(id), "the thread that started also stopped");
    }
    let mut ids: Vec<_> = started.iter().map(|(id, _)| *id).collect();
    ids.sort_by_key(|id| format!("{id:?}"));
    ids.dedup();
    assert_eq!(ids.len(), WORKERS, "one start per distinct worker thread");
}

#[test]
fn thread_hooks_also_cover_blocking_threads() {
    let starts = Arc::new(AtomicUsize::new(0));
    let stops = Arc::new(AtomicUsize::new(0));
    let rt = {
        let (starts, stops) = (starts.clone(), stops.clone());
        Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_start(move || {
                starts.fetch_add(1, SeqCst);
            })
            .on_thread_stop(move || {
                stops.fetch_add(1, SeqCst);
            })
            .build()
            .unwrap()
    };
    common::block_on_bounded(&rt, async {
        weft::spawn_blocking(|| ()).await.unwrap();
    });
    assert!(rt.shutdown_timeout(LIMIT));
    assert_eq!(starts.load(SeqCst), 2, "one worker and one blocking thread");
    assert_eq!(stops.load(SeqCst), 2);
}

#[test]
fn no_task_is_left_after_a_busy_runtime_is_joined_and_shut_down() {
    let rt = rt(2);
    let drops = DropCounter::new();
    common::block_on_bounded(&rt, async {
        let joins: Vec<_> = (0..1000)
            .map(|i| {
                let token = drops.token();
                weft::spawn(async move {
                    let _token = token;
                    if i % 3 == 0 {
                        weft::time::sleep(Duration::from_millis(1)).await.unwrap();
                    }
                    weft::task::yield_now().await;
                })
            })
            .collect();
        for join in joins {
            join.await.unwrap();
        }
    });
    common::assert_no_live_tasks(&rt);
    assert_eq!(rt.metrics().timers_pending, 0);
    assert!(rt.shutdown_timeout(LIMIT));
    assert_eq!(drops.get(), 1000);
}

#[test]
fn wakers_outliving_the_runtime_are_harmless() {
    let rt = rt(1);
    let (waker_tx, waker_rx) = mpsc::channel();
    let join = rt.spawn(std::future::poll_fn(move |cx| {
        let _ = waker_tx.send(cx.waker().clone());
        std::task::Poll::<()>::Pending
    }));
    let waker = waker_rx.recv_timeout(LIMIT).unwrap();
    drop(rt);
    // The task is gone; waking it must neither crash nor resurrect it.
    waker.wake_by_ref();
    waker.wake();
    assert!(block_on_std(join, LIMIT)
        .unwrap()
        .unwrap_err()
        .is_cancelled());
}
