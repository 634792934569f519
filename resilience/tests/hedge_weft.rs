//! Hedging on a real weft runtime: the loser is cancelled through the tree
//! (its blocked read fails with the cancellation, its child task sees it),
//! and its destructors run before the call returns.
#![cfg(feature = "weft")]

use std::{
    io,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use weft::{
    cancel::Cause,
    net::{TcpListener, TcpStream},
};
use weft_resilience::{
    env::WeftEnv,
    hedge::{Hedge, HedgeConfig, HedgeDelay},
};

fn runtime() -> weft::Runtime {
    weft::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

#[derive(Default)]
struct Seen {
    read_error: Mutex<Option<io::ErrorKind>>,
    child_cause: Mutex<Option<Cause>>,
    drops: AtomicU32,
}

struct CountDrop(Arc<Seen>);
impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.drops.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_loser_sees_cancelled_and_is_dropped_before_the_call_returns() {
    let rt = runtime();
    let seen = Arc::new(Seen::default());
    let hedge = Hedge::new(
        HedgeConfig::builder()
            .max_attempts(2)
            // Long enough for the first attempt to be in its read when
            // the hedge goes out, even on a loaded machine (at 30 ms it
            // was sometimes still connecting).
            .delay(HedgeDelay::Fixed(Duration::from_millis(300)))
            .build()
            .unwrap(),
    );
    let (s, hedge_ref) = (seen.clone(), &hedge);
    let (out, took, drops_at_return) = rt.block_on(async move {
        // A server that accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = weft::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            weft::time::sleep(Duration::from_secs(5)).await.ok();
            drop(conn);
        });
        let start = Instant::now();
        let out = hedge_ref
            .call(&WeftEnv::new(), |attempt| {
                let s = s.clone();
                async move {
                    let _guard = CountDrop(s.clone());
                    if attempt.number == 2 {
                        return Ok::<_, io::Error>("from the hedge");
                    }
                    let stream = TcpStream::connect(addr).await?;
                    let child_seen = s.clone();
                    let _child = weft::spawn(async move {
                        let why = weft::cancel::cancelled().await;
                        *child_seen.child_cause.lock().unwrap() = Some(why.cause());
                    });
                    let (res, _buf) = stream.read(vec![0u8; 64]).await;
                    if let Err(e) = &res {
                        *s.read_error.lock().unwrap() = Some(e.kind());
                    }
                    res.map(|_| "from the first attempt")
                }
            })
            .await;
        let took = start.elapsed();
        let drops = seen_drops(&s);
        // The child runs on its own; give it a bounded moment.
        for _ in 0..100 {
            if s.child_cause.lock().unwrap().is_some() {
                break;
            }
            weft::time::sleep(Duration::from_millis(10)).await.unwrap();
        }
        server.abort();
        (out, took, drops)
    });
    assert_eq!(out.unwrap(), "from the hedge");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        drops_at_return, 2,
        "both attempts dropped when the call returned"
    );
    assert_eq!(
        *seen.read_error.lock().unwrap(),
        Some(io::ErrorKind::Interrupted),
        "the loser's read was cancelled, not abandoned"
    );
    assert_eq!(*seen.child_cause.lock().unwrap(), Some(Cause::Parent));
    let m = hedge.metrics();
    assert_eq!((m.hedges, m.hedge_wins, m.cancelled), (1, 1, 1));
}

fn seen_drops(s: &Seen) -> u32 {
    s.drops.load(Ordering::SeqCst)
}

#[test]
fn the_callers_cancellation_ends_every_attempt() {
    let rt = runtime();
    let seen = Arc::new(Seen::default());
    let hedge = Arc::new(Hedge::new(
        HedgeConfig::builder()
            .max_attempts(3)
            .delay(HedgeDelay::Fixed(Duration::from_millis(10)))
            .build()
            .unwrap(),
    ));
    let s = seen.clone();
    let out = rt.block_on(async move {
        let task = weft::spawn(async move {
            hedge
                .call(&WeftEnv::new(), |_| {
                    let s = s.clone();
                    async move {
                        let _guard = CountDrop(s);
                        weft::time::sleep(Duration::from_secs(10)).await?;
                        Ok::<_, weft::cancel::Cancelled>(())
                    }
                })
                .await
        });
        weft::time::sleep(Duration::from_millis(100)).await.unwrap();
        task.cancel();
        task.await.unwrap()
    });
    let err = out.unwrap_err();
    assert!(
        matches!(
            err.stop(),
            weft_resilience::retry::Stop::Interrupted(weft_resilience::env::Interrupted::Cancelled)
        ),
        "{err:?}"
    );
    assert_eq!(
        seen.drops.load(Ordering::SeqCst),
        3,
        "all three attempts dropped"
    );
}
