//! A hierarchical timing wheel: 6 levels of 64 slots, 1 ms per level-0 slot.
//!
//! Level `l` slots span 64^l ms. An entry lives at the lowest level whose
//! slot range still separates its expiry from `elapsed` (the last processed
//! tick); when that slot's start is reached the entry fires or cascades to a
//! lower level. Entries sit in a `Slab` and each slot is a doubly linked list
//! of slab keys, so insert and remove are O(1) and no entry is ever moved in
//! memory. Times are milliseconds since the driver's origin.

use std::task::Waker;

use slab::Slab;

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// The furthest expiry the wheel can hold; later ones are clamped to it
/// (about 2,179 years, so in practice never).
const MAX_MS: u64 = (1 << (SLOT_BITS * LEVELS as u32)) - 1;

/// A registered timer's place in the wheel. Valid until `remove` or
/// `take_fired` gives it back; the wheel never reuses it before that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey(usize);

#[derive(Debug, PartialEq, Eq)]
enum EntryState {
    /// In slot `slot` of level `level`.
    Waiting { level: u8, slot: u8 },
    /// Expired; its waker was handed out.
    Fired,
}

#[derive(Debug)]
struct Entry {
    when: u64,
    waker: Option<Waker>,
    prev: Option<usize>,
    next: Option<usize>,
    state: EntryState,
}

#[derive(Debug, Clone, Copy)]
struct Level {
    occupied: u64,
    heads: [Option<usize>; SLOTS],
}

#[derive(Debug)]
pub(crate) struct Wheel {
    elapsed: u64,
    levels: [Level; LEVELS],
    entries: Slab<Entry>,
    waiting: usize,
}

fn slot_range(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * level)
}

fn level_range(level: usize) -> u64 {
    slot_range(level + 1)
}

/// The level at which an entry expiring at `when` lives, seen from `elapsed`.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = ((elapsed ^ when) | (SLOTS as u64 - 1)).min(MAX_MS);
    let significant = 63 - masked.leading_zeros() as usize;
    significant / SLOT_BITS as usize
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            elapsed: 0,
            levels: [Level {
                occupied: 0,
                heads: [None; SLOTS],
            }; LEVELS],
            entries: Slab::new(),
            waiting: 0,
        }
    }

    /// The last processed tick.
    #[cfg(test)]
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Timers waiting to fire.
    pub(crate) fn len(&self) -> usize {
        self.waiting
    }

    /// Registers a timer. Returns `None` if `when` has already passed (the
    /// caller treats it as fired and nothing is stored).
    pub(crate) fn insert(&mut self, when: u64, waker: Waker) -> Option<TimerKey> {
        if when <= self.elapsed {
            return None;
        }
        let key = self.entries.insert(Entry {
            when: when.min(self.elapsed + MAX_MS),
            waker: Some(waker),
            prev: None,
            next: None,
            state: EntryState::Fired,
        });
        self.link(key);
        self.waiting += 1;
        Some(TimerKey(key))
    }

    /// True once the timer fired.
    pub(crate) fn is_fired(&self, key: TimerKey) -> bool {
        self.entries[key.0].state == EntryState::Fired
    }

    /// Replaces the waker of a waiting timer.
    pub(crate) fn set_waker(&mut self, key: TimerKey, waker: &Waker) {
        let entry = &mut self.entries[key.0];
        match &entry.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => entry.waker = Some(waker.clone()),
        }
    }

    /// Unregisters a timer, fired or not, in O(1). The key is dead afterwards.
    pub(crate) fn remove(&mut self, key: TimerKey) {
        if !self.is_fired(key) {
            self.unlink(key.0);
            self.waiting -= 1;
        }
        self.entries.remove(key.0);
    }

    /// The earliest tick at which `advance` will have something to do.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.next_slot().map(|(_, _, deadline)| deadline)
    }

    /// Fires every timer due at or before `now`, pushing their wakers to
    /// `fired` so the caller wakes them outside its lock.
    pub(crate) fn advance(&mut self, now: u64, fired: &mut Vec<Waker>) {
        while let Some((level, slot, deadline)) = self.next_slot() {
            if deadline > now {
                break;
            }
            self.elapsed = deadline;
            let mut cursor = self.levels[level].heads[slot].take();
            self.levels[level].occupied &= !(1 << slot);
            while let Some(key) = cursor {
                let entry = &mut self.entries[key];
                cursor = entry.next;
                entry.prev = None;
                entry.next = None;
                if entry.when <= self.elapsed {
                    entry.state = EntryState::Fired;
                    self.waiting -= 1;
                    if let Some(waker) = entry.waker.take() {
                        fired.push(waker);
                    }
                } else {
                    // Cascade to the level that now separates it from `elapsed`.
                    self.link(key);
                }
            }
        }
        if now > self.elapsed {
            self.elapsed = now;
        }
    }

    /// (level, slot, start tick) of the next slot to process: the lowest
    /// non-empty level holds the earliest entries.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for (level, lvl) in self.levels.iter().enumerate() {
            if lvl.occupied == 0 {
                continue;
            }
            let range = slot_range(level);
            let now_slot = (self.elapsed / range) % SLOTS as u64;
            let rotated = lvl.occupied.rotate_right(now_slot as u32);
            let slot = ((rotated.trailing_zeros() as u64 + now_slot) % SLOTS as u64) as usize;
            let level_start = self.elapsed & !(level_range(level) - 1);
            let mut deadline = level_start + slot as u64 * range;
            if deadline <= self.elapsed && level > 0 {
                // A slot "behind" the cursor belongs to the next turn of this level.
                deadline += level_range(level);
            }
            return Some((level, slot, deadline.max(self.elapsed)));
        }
        None
    }

    fn link(&mut self, key: usize) {
        let when = self.entries[key].when;
        let level = level_for(self.elapsed, when);
        let slot = ((when >> (SLOT_BITS as usize * level)) % SLOTS as u64) as usize;
        let head = self.levels[level].heads[slot];
        if let Some(head) = head {
            self.entries[head].prev = Some(key);
        }
        let entry = &mut self.entries[key];
        entry.prev = None;
        entry.next = head;
        entry.state = EntryState::Waiting {
            level: level as u8,
            slot: slot as u8,
        };
        self.levels[level].heads[slot] = Some(key);
        self.levels[level].occupied |= 1 << slot;
    }

    fn unlink(&mut self, key: usize) {
        let entry = &self.entries[key];
        let EntryState::Waiting { level, slot } = entry.state else {
            return;
        };
        let (level, slot) = (level as usize, slot as usize);
        let (prev, next) = (entry.prev, entry.next);
        match prev {
            Some(prev) => self.entries[prev].next = next,
            None => {
                self.levels[level].heads[slot] = next;
                if next.is_none() {
                    self.levels[level].occupied &= !(1 << slot);
                }
            }
        }
        if let Some(next) = next {
            self.entries[next].prev = prev;
        }
        let entry = &mut self.entries[key];
        entry.prev = None;
        entry.next = None;
        entry.state = EntryState::Fired;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        task::Wake,
    };

    use super::*;

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> Waker {
        Waker::from(Arc::new(Counter(AtomicUsize::new(0))))
    }

    /// Advances one tick at a time and records when each key fires.
    fn fire_times(wheel: &mut Wheel, keys: &[(TimerKey, u64)], until: u64) -> Vec<Option<u64>> {
        let mut fired_at = vec![None; keys.len()];
        let mut scratch = Vec::new();
        for now in wheel.elapsed() + 1..=until {
            wheel.advance(now, &mut scratch);
            for (i, (key, _)) in keys.iter().enumerate() {
                if fired_at[i].is_none() && wheel.is_fired(*key) {
                    fired_at[i] = Some(now);
                }
            }
        }
        fired_at
    }

    #[test]
    fn fires_exactly_at_expiry_across_levels() {
        let mut wheel = Wheel::new();
        let whens = [1, 2, 63, 64, 65, 100, 4095, 4096, 4097, 10_000, 262_145];
        let keys: Vec<_> = whens
            .iter()
            .map(|&w| (wheel.insert(w, waker()).unwrap(), w))
            .collect();
        assert_eq!(wheel.len(), whens.len());
        let fired = fire_times(&mut wheel, &keys, 262_200);
        for ((_, when), at) in keys.iter().zip(fired) {
            assert_eq!(at, Some(*when), "timer for {when} fired at {at:?}");
        }
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn big_jumps_fire_everything_due_and_nothing_else() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(5, waker()).unwrap();
        let b = wheel.insert(5_000, waker()).unwrap();
        let c = wheel.insert(70_000, waker()).unwrap();
        let mut fired = Vec::new();
        wheel.advance(4_999, &mut fired);
        assert_eq!(fired.len(), 1);
        assert!(wheel.is_fired(a) && !wheel.is_fired(b) && !wheel.is_fired(c));
        assert_eq!(wheel.next_expiration().map(|d| d <= 5_000), Some(true));
        wheel.advance(69_999, &mut fired);
        assert!(wheel.is_fired(b) && !wheel.is_fired(c));
        wheel.advance(70_000, &mut fired);
        assert!(wheel.is_fired(c));
        assert_eq!(fired.len(), 3);
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn removed_timers_never_fire_and_free_their_slot() {
        let mut wheel = Wheel::new();
        let keys: Vec<_> = (1..=200u64)
            .map(|w| wheel.insert(w * 7, waker()).unwrap())
            .collect();
        for key in keys.iter().step_by(2) {
            wheel.remove(*key);
        }
        assert_eq!(wheel.len(), 100);
        let mut fired = Vec::new();
        wheel.advance(10_000, &mut fired);
        assert_eq!(fired.len(), 100);
        for key in keys.iter().skip(1).step_by(2) {
            assert!(wheel.is_fired(*key));
            wheel.remove(*key);
        }
        assert!(wheel.entries.is_empty());
    }

    #[test]
    fn past_deadlines_are_not_stored() {
        let mut wheel = Wheel::new();
        let mut fired = Vec::new();
        wheel.advance(100, &mut fired);
        assert!(wheel.insert(100, waker()).is_none());
        assert!(wheel.insert(50, waker()).is_none());
        assert!(wheel.insert(101, waker()).is_some());
    }

    /// The count behind `timers_pending`: under any sequence of inserts,
    /// advances and removals (fired or not), `len` is the number of
    /// registered timers that have not fired, each timer fires at most
    /// once, never before its tick, and removing it frees its entry.
    #[test]
    fn len_counts_each_timer_down_exactly_once() {
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Insert(u64),
            Advance(u64),
            Remove(usize),
        }
        let op = prop_oneof![
            (1u64..5_000).prop_map(Op::Insert),
            (0u64..300).prop_map(Op::Advance),
            any::<usize>().prop_map(Op::Remove),
        ];
        proptest!(ProptestConfig::with_cases(256), |(ops in proptest::collection::vec(op, 1..200))| {
            let mut wheel = Wheel::new();
            // (key, when, fired) of every registered timer not removed.
            let mut live: Vec<(TimerKey, u64, bool)> = Vec::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Insert(delta) => {
                        let when = now + delta;
                        let key = wheel.insert(when, waker()).expect("a future tick is stored");
                        live.push((key, when, false));
                    }
                    Op::Advance(by) => {
                        now += by;
                        let mut fired = Vec::new();
                        wheel.advance(now, &mut fired);
                        let mut newly = 0;
                        for (key, when, was_fired) in &mut live {
                            let is = wheel.is_fired(*key);
                            prop_assert!(*was_fired <= is, "a fired timer cannot un-fire");
                            prop_assert_eq!(is, *when <= now, "fires at its tick, not before");
                            if is && !*was_fired {
                                newly += 1;
                            }
                            *was_fired = is;
                        }
                        prop_assert_eq!(fired.len(), newly, "one waker per timer fired");
                    }
                    Op::Remove(i) => {
                        if !live.is_empty() {
                            let (key, _, _) = live.swap_remove(i % live.len());
                            wheel.remove(key);
                        }
                    }
                }
                let waiting = live.iter().filter(|(_, _, fired)| !fired).count();
                prop_assert_eq!(wheel.len(), waiting);
                prop_assert_eq!(wheel.entries.len(), live.len(), "removed timers free their entry");
            }
        });
    }

    #[test]
    fn inserting_after_advancing_keeps_exact_expiry() {
        let mut wheel = Wheel::new();
        let mut fired = Vec::new();
        wheel.advance(4_000, &mut fired);
        let keys: Vec<_> = [4_001, 4_095, 4_096, 4_200, 8_192, 300_000]
            .iter()
            .map(|&w| (wheel.insert(w, waker()).unwrap(), w))
            .collect();
        let at = fire_times(&mut wheel, &keys, 300_001);
        for ((_, when), at) in keys.iter().zip(at) {
            assert_eq!(at, Some(*when));
        }
    }
}
