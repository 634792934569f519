//! A worker's run queue (`scheduler/queue.rs`, 4 slots under loom): the
//! owner pushes (overflowing half the ring when it is full) and pops while
//! thieves steal half into their own queues. Every item comes out exactly
//! once (run, overflowed, or dropped with a queue) and none leaks.
#![cfg(weft_loom)]

use loom::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    thread,
};
use weft::__loom::{run_queue, RunQueue, RUN_QUEUE_CAPACITY};

const MAX: usize = 8;

/// Per-id counts: how often each item was taken out, and dropped.
#[derive(Default)]
struct Counts {
    taken: [AtomicUsize; MAX],
    drops: [AtomicUsize; MAX],
}

struct Item {
    id: usize,
    counts: Arc<Counts>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.counts.drops[self.id].fetch_add(1, SeqCst);
    }
}

fn item(id: usize, counts: &Arc<Counts>) -> Item {
    Item {
        id,
        counts: counts.clone(),
    }
}

/// Records that `item` came out of the queues (and drops it, as a run
/// task is).
fn take(item: Item) {
    item.counts.taken[item.id].fetch_add(1, SeqCst);
}

/// Pops everything left in `queue`.
fn drain(queue: &RunQueue<Item>) {
    while let Some(item) = queue.pop() {
        take(item);
    }
}

/// After the model's threads are done and every queue is dropped: items
/// `0..n` came out once each (taken or dropped with a queue), and each was
/// dropped once.
fn assert_each_once(counts: &Counts, n: usize) {
    for id in 0..n {
        assert!(counts.taken[id].load(SeqCst) <= 1, "item {id} taken twice");
        assert_eq!(counts.drops[id].load(SeqCst), 1, "item {id} dropped");
    }
}

#[test]
fn the_owner_pops_while_a_thief_steals_half() {
    loom::model(|| {
        let counts = Arc::new(Counts::default());
        let (queue, stealer) = run_queue::<Item>();
        for id in 0..3 {
            queue.push(item(id, &counts), |_| panic!("3 items fit in 4 slots"));
        }
        let thief = thread::spawn(move || {
            let (own, _) = run_queue::<Item>();
            if let Some(first) = stealer.steal_into(&own) {
                take(first);
            }
            // Half of 3, rounded up: the one returned and one queued.
            assert!(own.len() <= 1);
            drain(&own);
        });
        drain(&queue);
        // A fourth push reuses a slot a thief may have just copied out.
        queue.push(item(3, &counts), |_| panic!("the queue had room"));
        thief.join().unwrap();
        drain(&queue);
        for id in 0..4 {
            assert_eq!(counts.taken[id].load(SeqCst), 1, "item {id}");
        }
        drop(queue);
        assert_each_once(&counts, 4);
    });
}

#[test]
fn a_full_queue_overflows_half_while_a_thief_steals() {
    loom::model(|| {
        let counts = Arc::new(Counts::default());
        let (queue, stealer) = run_queue::<Item>();
        for id in 0..RUN_QUEUE_CAPACITY {
            queue.push(item(id, &counts), |_| panic!("the ring has room"));
        }
        let thief = thread::spawn(move || {
            let (own, _) = run_queue::<Item>();
            if let Some(first) = stealer.steal_into(&own) {
                take(first);
            }
            drain(&own);
        });
        // Full: this push overflows half the ring and itself, or only
        // itself while the thief holds the front, or fits if the thief
        // already freed room.
        let mut overflow = Vec::new();
        let id = RUN_QUEUE_CAPACITY;
        queue.push(item(id, &counts), |item| overflow.push(item));
        assert!(
            overflow.is_empty()
                || overflow.len() == 1
                || overflow.len() == RUN_QUEUE_CAPACITY / 2 + 1,
            "overflowed {}",
            overflow.len()
        );
        thief.join().unwrap();
        for item in overflow {
            take(item);
        }
        drain(&queue);
        for id in 0..=RUN_QUEUE_CAPACITY {
            assert_eq!(counts.taken[id].load(SeqCst), 1, "item {id}");
        }
        drop(queue);
        assert_each_once(&counts, RUN_QUEUE_CAPACITY + 1);
    });
}

#[test]
fn two_thieves_and_the_owner_take_each_item_once() {
    loom::model(|| {
        let counts = Arc::new(Counts::default());
        let (queue, stealer) = run_queue::<Item>();
        for id in 0..RUN_QUEUE_CAPACITY {
            queue.push(item(id, &counts), |_| panic!("the ring has room"));
        }
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let stealer = stealer.clone();
                thread::spawn(move || {
                    let (own, _) = run_queue::<Item>();
                    if let Some(first) = stealer.steal_into(&own) {
                        take(first);
                    }
                    drain(&own);
                })
            })
            .collect();
        if let Some(item) = queue.pop() {
            take(item);
        }
        for thief in thieves {
            thief.join().unwrap();
        }
        drain(&queue);
        for id in 0..RUN_QUEUE_CAPACITY {
            assert_eq!(counts.taken[id].load(SeqCst), 1, "item {id}");
        }
        drop((queue, stealer));
        assert_each_once(&counts, RUN_QUEUE_CAPACITY);
    });
}

#[test]
fn steal_one_races_pop_and_what_is_left_drops_with_the_queue() {
    loom::model(|| {
        let counts = Arc::new(Counts::default());
        let (queue, stealer) = run_queue::<Item>();
        for id in 0..3 {
            queue.push(item(id, &counts), |_| panic!("the ring has room"));
        }
        let thief = thread::spawn(move || {
            if let Some(item) = stealer.steal_one() {
                take(item);
            }
        });
        if let Some(item) = queue.pop() {
            take(item);
        }
        thief.join().unwrap();
        // One or two items are still queued: the queue's drop frees them.
        let taken: usize = (0..3).map(|id| counts.taken[id].load(SeqCst)).sum();
        assert!((1..=2).contains(&taken), "taken {taken}");
        drop(queue);
        assert_each_once(&counts, 3);
    });
}
