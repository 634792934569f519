//! No allocation per wait in `weft::sync::mpsc`: a counting global
//! allocator watches 10,000 messages pass through a channel of capacity 1
//! (so nearly every send waits for capacity and every receive waits for a
//! message) between two tasks. The queue allocates one block per 31
//! messages; everything else must be allocation-free.
//!
//! Its own test binary, because the allocator is process-wide.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering::SeqCst},
    time::Duration,
};

use common::{block_on_bounded, rt};
use weft::{sync::mpsc, task::Builder};

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

fn allocations_for(deadline: bool) -> (usize, u64) {
    let rt = rt(2);
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
            while let Ok(v) = rx.recv().await {
                sum += v;
            }
            sum
        };
        let builder = || {
            if deadline {
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

#[test]
fn mpsc_waits_do_not_allocate() {
    for deadline in [false, true] {
        let (allocs, sum) = allocations_for(deadline);
        assert_eq!(sum, MESSAGES * (MESSAGES - 1) / 2, "every message arrived");
        assert!(
            allocs <= BUDGET,
            "{allocs} allocations for {MESSAGES} messages (deadline: {deadline}); \
             at most {BUDGET} expected: something allocates per wait"
        );
    }
}
