//! A wait on `weft::sync`'s `Mutex`, `Semaphore` and `Notify` allocates
//! nothing: the waiter lives in the wait future, the wakers are the task's.
//!
//! A counting global allocator (its own test binary) counts the
//! allocations made while a wait future is polled or dropped — the wait,
//! its wake-up poll, and its cancellation path — on a real runtime with
//! tasks contending, and the tests check that real waits happened (futures
//! returned `Pending`), so a zero is not vacuous.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use common::{block_on_bounded, unmonitored_rt};
use weft::sync::{Mutex, Notify, Semaphore};

struct Counting;

thread_local! {
    /// True while this thread polls or drops a counted wait future.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static PENDING: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System`; the counting touches no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, SeqCst);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, SeqCst);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counting<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

/// Counts allocations while `F` is polled or dropped, and its `Pending`s.
struct Counted<F>(Option<Pin<Box<F>>>);

fn counted<F: Future>(f: F) -> Counted<F> {
    Counted(Some(Box::pin(f)))
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let fut = self.0.as_mut().expect("polled after completion");
        let out = counting(|| fut.as_mut().poll(cx));
        match out {
            Poll::Pending => {
                PENDING.fetch_add(1, SeqCst);
            }
            Poll::Ready(_) => {
                let done = self.0.take();
                counting(|| drop(done));
            }
        }
        out
    }
}

impl<F> Drop for Counted<F> {
    fn drop(&mut self) {
        let fut = self.0.take();
        counting(|| drop(fut));
    }
}

/// The task's cancellation node is made at its first wait, once per task,
/// not per wait: make it before counting.
async fn materialize_the_tasks_node() {
    weft::cancel::scope(async {}).await;
}

/// One test, so the global counters are not shared by tests running in
/// parallel.
#[test]
fn waits_on_mutex_semaphore_and_notify_allocate_nothing() {
    let rt = unmonitored_rt(2);

    // Mutex: 8 tasks contending, yielding while they hold the lock.
    let m = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let m = m.clone();
            rt.spawn(async move {
                materialize_the_tasks_node().await;
                for i in 0..300 {
                    let mut g = counted(m.lock()).await.unwrap();
                    *g += 1;
                    if i % 4 == 0 {
                        weft::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for h in handles {
        block_on_bounded(&rt, h).unwrap();
    }
    assert_eq!(*m.try_lock().unwrap(), 8 * 300);
    let mutex_pending = PENDING.swap(0, SeqCst);

    // Semaphore: 2 permits at a time out of 3, and waits cut by a timeout
    // (the hand-back path runs in the counted drop).
    let s = Arc::new(Semaphore::new(3));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            rt.spawn(async move {
                materialize_the_tasks_node().await;
                for i in 0..300 {
                    if i % 50 == 0 {
                        let _ = weft::time::timeout(
                            Duration::from_micros(50),
                            counted(s.acquire_many(3)),
                        )
                        .await;
                        continue;
                    }
                    let p = counted(s.acquire_many(2)).await.unwrap();
                    weft::task::yield_now().await;
                    drop(p);
                }
            })
        })
        .collect();
    for h in handles {
        block_on_bounded(&rt, h).unwrap();
    }
    assert_eq!(s.available_permits(), 3);
    // A wait that certainly waits and is certainly cut by its timeout.
    let s2 = s.clone();
    let cut = block_on_bounded(
        &rt,
        rt.spawn(async move {
            materialize_the_tasks_node().await;
            let _all = s2.acquire_many(3).await.unwrap();
            weft::time::timeout(Duration::from_millis(2), counted(s2.acquire()))
                .await
                .is_err()
        }),
    )
    .unwrap();
    assert!(cut, "the timeout cut the wait");
    assert_eq!(s.available_permits(), 3);
    let sem_pending = PENDING.swap(0, SeqCst);

    // Notify: a ping-pong.
    let (ping, pong) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let a = {
        let (ping, pong) = (ping.clone(), pong.clone());
        rt.spawn(async move {
            materialize_the_tasks_node().await;
            for _ in 0..500 {
                counted(ping.notified()).await.unwrap();
                pong.notify_one();
            }
        })
    };
    let b = rt.spawn(async move {
        materialize_the_tasks_node().await;
        for _ in 0..500 {
            ping.notify_one();
            counted(pong.notified()).await.unwrap();
        }
    });
    block_on_bounded(&rt, a).unwrap();
    block_on_bounded(&rt, b).unwrap();
    let notify_pending = PENDING.swap(0, SeqCst);

    assert_eq!(
        ALLOCATIONS.load(SeqCst),
        0,
        "waits allocated (pending waits: mutex {mutex_pending}, semaphore \
         {sem_pending}, notify {notify_pending})"
    );
    assert!(mutex_pending > 0, "no mutex wait ever waited");
    assert!(sem_pending > 0, "no semaphore wait ever waited");
    assert!(notify_pending > 0, "no notified() ever waited");
}
