//! No allocation per wait in `weft::sync::mpsc` and `oneshot`: a counting
//! global allocator watches 10,000 messages pass through a channel of
//! capacity 1 (so nearly every send waits for capacity and every receive
//! waits for a message) between two tasks — plain, in tasks with a
//! deadline, and with every receive under its own `timeout` — and 2,000
//! oneshot receives each under a `timeout`. The queue allocates one block
//! per 31 messages and a oneshot channel one allocation; everything else
//! must be allocation-free. (A scope node made per wait would come from
//! the runtime's own block cache, which this allocator does not see once
//! warm: `channel_wait`'s unit test checks that no wait makes one.)
//!
//! Its own test binary, because the allocator is process-wide.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    future::Future,
    sync::atomic::{AtomicUsize, Ordering::SeqCst},
    time::Duration,
};

use common::{block_on_bounded, unmonitored_rt};
use weft::{
    sync::{mpsc, oneshot},
    task::Builder,
    time::timeout,
};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, SeqCst);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, SeqCst);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MESSAGES: u64 = 10_000;
/// Blocks of the queue, plus the two tasks, the channel and slack for the
/// runtime's own bookkeeping (a deadline timer, metrics).
const BUDGET: usize = (MESSAGES as usize).div_ceil(31) + 64;

/// How the tasks wait.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    /// Both tasks spawned with a deadline.
    Deadline,
    /// Every receive under its own (long) `timeout`.
    TimeoutPerRecv,
}

/// Long enough never to fire.
const LONG: Duration = Duration::from_secs(60);

fn allocations_for(mode: Mode) -> (usize, u64) {
    let rt = unmonitored_rt(2);
    // Warm the runtime up (worker queues, thread-locals).
    block_on_bounded(&rt, async {
        for _ in 0..100 {
            weft::spawn(async {}).await.unwrap();
        }
    });
    let before = ALLOCS.load(SeqCst);
    let sum = block_on_bounded(&rt, async {
        let (tx, mut rx) = mpsc::channel::<u64>(1);
        let producer = async move {
            for i in 0..MESSAGES {
                tx.send(i).await.unwrap();
            }
        };
        let consumer = async move {
            let mut sum = 0;
            loop {
                let got = if mode == Mode::TimeoutPerRecv {
                    timeout(LONG, rx.recv()).await.expect("60 s not elapsed")
                } else {
                    rx.recv().await
                };
                match got {
                    Ok(v) => sum += v,
                    Err(_) => break,
                }
            }
            sum
        };
        let builder = || {
            if mode == Mode::Deadline {
                Builder::new().timeout(Duration::from_secs(60))
            } else {
                Builder::new()
            }
        };
        let p = builder().spawn(producer);
        let c = builder().spawn(consumer);
        p.await.unwrap();
        c.await.unwrap()
    });
    (ALLOCS.load(SeqCst) - before, sum)
}

const ONESHOTS: u64 = 2_000;
/// One allocation per oneshot channel, the blocks of the mpsc that carries
/// the senders, and the same slack.
const ONESHOT_BUDGET: usize = ONESHOTS as usize + (ONESHOTS as usize).div_ceil(31) + 64;

/// `ONESHOTS` oneshot receives, each under its own `timeout`; the sender
/// is handed to another task through an mpsc, so the receive waits (most
/// of the time: the count of those that did is returned). Returns
/// (allocations, sum of the values, receives that waited).
fn oneshot_allocations_under_timeout() -> (usize, u64, u64) {
    let rt = unmonitored_rt(2);
    block_on_bounded(&rt, async {
        for _ in 0..100 {
            weft::spawn(async {}).await.unwrap();
        }
    });
    let before = ALLOCS.load(SeqCst);
    let (sum, waited) = block_on_bounded(&rt, async {
        let (txs, mut senders) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(1);
        let replier = weft::spawn(async move {
            while let Ok((i, tx)) = senders.recv().await {
                tx.send(i).unwrap();
            }
        });
        let asker = weft::spawn(async move {
            let (mut sum, mut waited) = (0, 0);
            for i in 0..ONESHOTS {
                let (tx, mut rx) = oneshot::channel();
                txs.send((i, tx)).await.unwrap();
                // Counts the receives that found no value at first.
                let v = timeout(
                    LONG,
                    std::future::poll_fn(|cx| {
                        let p = std::pin::Pin::new(&mut rx).poll(cx);
                        if p.is_pending() {
                            waited += 1;
                        }
                        p
                    }),
                )
                .await
                .expect("60 s not elapsed")
                .unwrap();
                sum += v;
            }
            (sum, waited)
        });
        let out = asker.await.unwrap();
        replier.await.unwrap();
        out
    });
    (ALLOCS.load(SeqCst) - before, sum, waited)
}

#[test]
fn mpsc_and_oneshot_waits_do_not_allocate() {
    for mode in [Mode::Plain, Mode::Deadline, Mode::TimeoutPerRecv] {
        let (allocs, sum) = allocations_for(mode);
        assert_eq!(sum, MESSAGES * (MESSAGES - 1) / 2, "every message arrived");
        assert!(
            allocs <= BUDGET,
            "{allocs} allocations for {MESSAGES} messages ({mode:?}); \
             at most {BUDGET} expected: something allocates per wait"
        );
    }
    let (allocs, sum, waited) = oneshot_allocations_under_timeout();
    assert_eq!(sum, ONESHOTS * (ONESHOTS - 1) / 2, "every value arrived");
    assert!(
        waited >= ONESHOTS / 4,
        "only {waited} of {ONESHOTS} receives waited: the test shows nothing"
    );
    assert!(
        allocs <= ONESHOT_BUDGET,
        "{allocs} allocations for {ONESHOTS} oneshot receives under a timeout \
         ({waited} waited); at most {ONESHOT_BUDGET} expected: something \
         allocates per wait"
    );
}
