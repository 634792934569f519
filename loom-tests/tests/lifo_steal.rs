//! The stealable LIFO slot (`scheduler/lifo.rs`): the owner pushes tasks
//! (getting back the one it displaced) and takes them, while another worker
//! steals from the slot. Every task comes out exactly once (run by one
//! worker, or dropped with the slot), and none leaks.
#![cfg(weft_loom)]

use loom::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    thread,
};
use weft::__loom::LifoSlot;

/// A task: counts how often it was dropped (the model counts its runs).
type Item = loom_tests::Item<3>;

fn item(id: usize, drops: &Arc<[AtomicUsize; 3]>) -> Box<Item> {
    Box::new(Item::new(id, drops))
}

/// Records that `item` ran (it is dropped right after, as a task is).
/// Takes the box the slot hands out, so the drop here is the task's.
#[allow(clippy::boxed_local)]
fn run(item: Box<Item>, runs: &[AtomicUsize; 3]) {
    runs[item.id].fetch_add(1, SeqCst);
}

#[test]
fn every_task_in_the_slot_comes_out_once_with_a_thief_racing_the_owner() {
    loom::model(|| {
        let drops: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let runs: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let slot = Arc::new(LifoSlot::<Item>::new());

        let thief = thread::spawn({
            let (slot, runs) = (slot.clone(), runs.clone());
            move || {
                // A peer that saw the owner stuck: takes whatever is there.
                if let Some(task) = slot.take() {
                    run(task, &runs);
                }
            }
        });

        // The owner: a poll wakes task 0, then task 1 (0 is displaced to
        // the run queue, unless the thief took it first), then the owner
        // comes back and takes the slot.
        let mut queue = Vec::new();
        assert!(slot.push(item(0, &drops)).is_none());
        if let Some(displaced) = slot.push(item(1, &drops)) {
            queue.push(displaced);
        }
        if let Some(task) = slot.take() {
            run(task, &runs);
        }
        for task in queue {
            run(task, &runs);
        }
        // A task woken later, left in the slot (the thief may still take
        // it): otherwise dropped with the slot. Only the owner pushes, and
        // it emptied the slot above.
        assert!(slot.push(item(2, &drops)).is_none());

        thief.join().unwrap();
        drop(slot);
        for id in 0..2 {
            assert_eq!(runs[id].load(SeqCst), 1, "task {id} ran once");
        }
        assert!(runs[2].load(SeqCst) <= 1);
        for id in 0..3 {
            assert_eq!(drops[id].load(SeqCst), 1, "task {id} dropped once");
        }
    });
}

#[test]
fn two_thieves_never_take_the_same_task() {
    loom::model(|| {
        let drops: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let runs: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let slot = Arc::new(LifoSlot::<Item>::new());
        assert!(slot.push(item(0, &drops)).is_none());
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let (slot, runs) = (slot.clone(), runs.clone());
                thread::spawn(move || {
                    if let Some(task) = slot.take() {
                        run(task, &runs);
                    }
                })
            })
            .collect();
        // The owner returns and takes it too, racing both.
        if let Some(task) = slot.take() {
            run(task, &runs);
        }
        for t in thieves {
            t.join().unwrap();
        }
        assert_eq!(runs[0].load(SeqCst), 1);
        assert_eq!(drops[0].load(SeqCst), 1);
        assert!(!slot.is_occupied());
    });
}
