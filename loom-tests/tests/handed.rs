//! A worker's list of handed tasks and its long-poll mark
//! (`scheduler::Handed`): a peer hands a task over (an io wake of a
//! long-polling task, `schedule_long`) while the owner starts a long poll
//! (`before_long_poll`). The task must not wait in the list for the whole
//! poll (peers take the list only once the poll is marked stalled or
//! outlasted their sighting): either the owner's start takes it (to
//! its stealable queue) or the hand-off is refused and the peer keeps it.
//! Every task comes out exactly once.
#![cfg(weft_loom)]

use loom::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    thread,
};
use weft::__loom::HandedList;

/// A task: counts how often it was dropped.
type Item = loom_tests::Item<2>;

#[test]
fn a_task_handed_as_the_owner_starts_a_long_poll_never_waits_in_the_list() {
    loom::model(|| {
        let drops: Arc<[AtomicUsize; 2]> = Arc::new(Default::default());
        let list = Arc::new(HandedList::<Item>::new());

        // A peer hands task 0 over, and keeps it if refused.
        let peer = thread::spawn({
            let (list, drops) = (list.clone(), drops.clone());
            move || list.hand(Item::new(0, &drops)).err()
        });

        // The owner starts a long poll: what was handed goes to its queue.
        let mut queue = Vec::new();
        list.begin_long_poll(|item| queue.push(item));
        // A hand-off during the poll is refused.
        let late = list.hand(Item::new(1, &drops));
        assert!(late.is_err(), "a hand-off during a long poll");
        drop(late);

        let kept = peer.join().unwrap();
        // Mid-poll, nothing waits in the list: task 0 is in the owner's
        // queue or still the peer's.
        let mut left = 0;
        list.take_all(|_| left += 1);
        assert_eq!(left, 0, "a task waited in the list behind the long poll");
        assert!(
            queue.len() + usize::from(kept.is_some()) == 1,
            "task 0 went to the queue or stayed with the peer, once"
        );

        // After the poll, hand-offs are taken again.
        list.end_long_poll();
        drop(queue);
        drop(kept);
        assert!(list.hand(Item::new(1, &drops)).is_ok());
        let mut taken = Vec::new();
        list.take_all(|item| taken.push(item));
        assert_eq!(taken.len(), 1);
        drop(taken);
        drop(list);
        assert_eq!(drops[0].load(SeqCst), 1, "task 0 dropped once");
        assert_eq!(drops[1].load(SeqCst), 2, "each task 1 dropped once");
    });
}
