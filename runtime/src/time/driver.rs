//! Timer shards: one wheel per worker, each behind its own mutex.
//!
//! A timer registers in the shard of the worker that first polls it (shard 0
//! for threads that are not workers) and stays there if its task is stolen:
//! the waker it stores reaches the task wherever it runs. Each shard caches its
//! next expiry in an atomic so a parking worker can compute its park timeout
//! over all shards without locking, and any worker that wakes fires every
//! shard that is due, so a busy owner never holds another worker's timers back
//! by more than its current poll.
//!
//! # Polling a registered timer without the lock
//! Each shard counts the `process` calls that fired at least one of its
//! timers (`Shard::fired_epoch`, bumped under the wheel's lock). A timer's
//! owner keeps what it saw under the lock at its last look ([`Seen`]: that
//! count, and which waker the entry holds). A later poll with the same
//! waker that finds the count unchanged answers "not fired" without the
//! lock. That cannot lose a wakeup: if the entry did fire, the firing
//! thread bumped the count and only then woke the entry's waker, which is
//! the polling task's own; that wake comes after the poll that missed the
//! bump and makes the task poll again, and that poll (ordered after the
//! wake by the task's state word) sees the new count and takes the lock.
//! A poll with any other waker, or after any firing in the shard, takes the
//! lock as before. (hyper polls its timers on every wake of a connection;
//! this was a shard lock round trip per poll.)

use std::{
    task::{RawWakerVTable, Waker},
    time::{Duration, Instant},
};

use super::{
    clock::CoarseFrame,
    wheel::{TimerKey, Wheel},
};
use crate::facade::{
    atomic::{AtomicU64, AtomicUsize, Ordering::*},
    lock, Mutex,
};

const NONE: u64 = u64::MAX;

pub(crate) struct TimeDriver {
    origin: Instant,
    /// The coarse clock in ns since `origin` (`None`: no coarse clock).
    coarse: Option<CoarseFrame>,
    shards: Box<[Shard]>,
    fired: AtomicUsize,
}

struct Shard {
    wheel: Mutex<Wheel>,
    /// The wheel's next expiry in ms since `origin`, or NONE. May be earlier
    /// than the truth (after a removal), never later.
    next: AtomicU64,
    /// How many `process` calls fired at least one timer of this shard.
    /// Written only under `wheel`'s lock, before the fired wakers are
    /// woken; read without it by [`TimeDriver::poll_fired`].
    fired_epoch: AtomicU64,
}

/// Where a timer lives, for its later polls and its removal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Registration {
    shard: usize,
    key: TimerKey,
}

/// A deadline as the wheel counts it: ns since the driver's origin, and
/// the tick it fires at (rounded up: never early).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerAt {
    ns: u64,
    tick: u64,
}

/// What a timer's owner saw of its entry under the lock, the last time it
/// looked: the shard's `fired_epoch` then, and the identity (data and
/// vtable pointers, as `Waker::will_wake` compares them) of the waker the
/// entry holds. The entry's clone keeps that waker's data alive, so the
/// identity cannot be reused by another waker while the entry waits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen {
    epoch: u64,
    data: usize,
    vtable: usize,
}

impl Seen {
    fn new(epoch: u64, waker: &Waker) -> Seen {
        Seen {
            epoch,
            data: waker.data() as usize,
            vtable: waker.vtable() as *const RawWakerVTable as usize,
        }
    }

    /// The same test as `Waker::will_wake`.
    fn holds(&self, waker: &Waker) -> bool {
        self.data == waker.data() as usize
            && self.vtable == waker.vtable() as *const RawWakerVTable as usize
    }
}

impl TimeDriver {
    pub(crate) fn new(shards: usize) -> TimeDriver {
        let origin = Instant::now();
        TimeDriver {
            origin,
            coarse: CoarseFrame::new(origin),
            shards: (0..shards.max(1))
                .map(|_| Shard {
                    wheel: Mutex::new(Wheel::new()),
                    next: AtomicU64::new(NONE),
                    fired_epoch: AtomicU64::new(0),
                })
                .collect(),
            fired: AtomicUsize::new(0),
        }
    }

    /// `deadline` as the wheel counts it, in ticks rounded up so a timer
    /// never fires early (one `Instant` subtraction, shared by the "is it
    /// ahead" test and the registration).
    pub(crate) fn at(&self, deadline: Instant) -> TimerAt {
        let since = deadline.saturating_duration_since(self.origin);
        // 2^64 ns is 584 years; deadlines are clamped to ~30 years ahead.
        let ns = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        TimerAt {
            ns,
            tick: ns.div_ceil(1_000_000),
        }
    }

    /// True if `at` is certainly still ahead by the coarse clock (no
    /// precise read); false means "maybe not".
    pub(crate) fn certainly_before(&self, at: TimerAt) -> bool {
        self.coarse.is_some_and(|c| c.certainly_before(at.ns))
    }

    /// The tick reached by `now`, rounded down.
    fn now_tick(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    fn tick_to_instant(&self, tick: u64) -> Instant {
        self.origin + Duration::from_millis(tick)
    }

    /// The instant tick 0 stands for.
    #[cfg(any(weft_loom, weft_shuttle))]
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// Registers a timer for `deadline` in `shard`. `None`: already due.
    pub(crate) fn register(
        &self,
        shard: usize,
        deadline: Instant,
        waker: &Waker,
    ) -> Option<(Registration, Seen)> {
        self.register_at(shard, self.at(deadline), waker)
    }

    /// [`register`](Self::register) for a deadline already converted.
    pub(crate) fn register_at(
        &self,
        shard: usize,
        at: TimerAt,
        waker: &Waker,
    ) -> Option<(Registration, Seen)> {
        let shard_idx = shard % self.shards.len();
        let shard = &self.shards[shard_idx];
        let when = at.tick;
        let mut wheel = lock(&shard.wheel);
        let key = wheel.insert(when, waker.clone())?;
        // Relaxed (under the lock): readers only use it as a hint and re-check
        // under the lock before acting.
        if when < shard.next.load(Relaxed) {
            shard.next.store(when, Relaxed);
        }
        // Relaxed: written only under this lock.
        let seen = Seen::new(shard.fired_epoch.load(Relaxed), waker);
        Some((
            Registration {
                shard: shard_idx,
                key,
            },
            seen,
        ))
    }

    /// True if the timer fired; otherwise its waker is updated to `waker`.
    /// `seen` is what the owner saw at its last look, updated when this call
    /// takes the lock (see the module doc for the lock-free answer).
    pub(crate) fn poll_fired(&self, reg: Registration, seen: &mut Seen, waker: &Waker) -> bool {
        let shard = &self.shards[reg.shard];
        // Acquire pairs with the bump's Release; the argument that no wakeup
        // is lost rests on the wake ordering (module doc), not on this.
        if seen.holds(waker) && shard.fired_epoch.load(Acquire) == seen.epoch {
            return false;
        }
        let mut wheel = lock(&shard.wheel);
        if wheel.is_fired(reg.key) {
            return true;
        }
        wheel.set_waker(reg.key, waker);
        // Relaxed: written only under this lock.
        *seen = Seen::new(shard.fired_epoch.load(Relaxed), waker);
        false
    }

    /// Drops a registration, fired or not.
    pub(crate) fn deregister(&self, reg: Registration) {
        lock(&self.shards[reg.shard].wheel).remove(reg.key);
    }

    /// Fires every due timer in every shard. Returns the number fired.
    pub(crate) fn process(&self, start_shard: usize, now: Instant) -> usize {
        let now_tick = self.now_tick(now);
        let mut wakers = Vec::new();
        let n = self.shards.len();
        for i in 0..n {
            let shard = &self.shards[(start_shard + i) % n];
            if shard.next.load(Relaxed) > now_tick {
                continue;
            }
            // Another worker processing this shard will fire it: skip rather
            // than wait.
            let Ok(mut wheel) = shard.wheel.try_lock() else {
                continue;
            };
            let waiting = wheel.len();
            wheel.advance(now_tick, &mut wakers);
            if wheel.len() < waiting {
                // Before the wakers are woken (below, after the unlock):
                // a poll that misses this bump is followed by their wake.
                shard.fired_epoch.fetch_add(1, Release);
            }
            shard
                .next
                .store(wheel.next_expiration().unwrap_or(NONE), Relaxed);
        }
        let fired = wakers.len();
        if fired > 0 {
            self.fired.fetch_add(fired, Relaxed);
        }
        // Wake outside every lock: a waker may register a new timer.
        for waker in wakers {
            waker.wake();
        }
        fired
    }

    /// The earliest expiry over all shards.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let tick = self.shards.iter().map(|s| s.next.load(Relaxed)).min()?;
        (tick != NONE).then(|| self.tick_to_instant(tick))
    }

    /// Timers fired since start.
    pub(crate) fn fired_count(&self) -> usize {
        self.fired.load(Relaxed)
    }

    /// Timers waiting in all shards.
    pub(crate) fn pending_count(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.wheel).len()).sum()
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering::SeqCst},
            Arc,
        },
        task::Wake,
    };

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// The lock-free answer is "not fired" only while nothing fired in the
    /// shard; once the entry fires, the next poll with the same waker takes
    /// the lock and reports it.
    #[test]
    fn a_fired_entry_is_reported_to_a_poll_with_the_same_waker() {
        let driver = TimeDriver::new(1);
        let (count, waker) = counter();
        let deadline = driver.origin + Duration::from_millis(5);
        let (reg, mut seen) = driver.register(0, deadline, &waker).unwrap();
        for _ in 0..3 {
            assert!(!driver.poll_fired(reg, &mut seen, &waker));
        }
        assert_eq!(driver.process(0, deadline), 1);
        assert_eq!(count.0.load(SeqCst), 1, "the entry's waker was woken");
        assert!(
            driver.poll_fired(reg, &mut seen, &waker),
            "and the fire is seen"
        );
        driver.deregister(reg);
        assert_eq!(driver.pending_count(), 0);
    }

    /// A poll with another waker takes the lock and swaps the entry's
    /// waker: the new one is woken at the firing, the old one is not.
    #[test]
    fn a_poll_with_a_new_waker_moves_the_wakeup_to_it() {
        let driver = TimeDriver::new(1);
        let (old, old_waker) = counter();
        let (new, new_waker) = counter();
        let deadline = driver.origin + Duration::from_millis(5);
        let (reg, mut seen) = driver.register(0, deadline, &old_waker).unwrap();
        assert!(!driver.poll_fired(reg, &mut seen, &new_waker));
        driver.process(0, deadline);
        assert_eq!((old.0.load(SeqCst), new.0.load(SeqCst)), (0, 1));
        // The old waker's poll (a stale `seen` would match it) still learns
        // of the fire: the shard's count moved.
        assert!(driver.poll_fired(reg, &mut seen, &old_waker));
        driver.deregister(reg);
    }

    /// Another timer of the shard firing moves the count: the next poll
    /// takes the lock, finds its own entry still waiting, and goes back to
    /// the lock-free answer after that.
    #[test]
    fn another_timer_firing_sends_the_next_poll_to_the_lock() {
        let driver = TimeDriver::new(1);
        let (mine, my_waker) = counter();
        let (_, other_waker) = counter();
        let soon = driver.origin + Duration::from_millis(2);
        let later = driver.origin + Duration::from_millis(50);
        let (reg, mut seen) = driver.register(0, later, &my_waker).unwrap();
        let (other, _) = driver.register(0, soon, &other_waker).unwrap();
        let before = seen.epoch;
        driver.process(0, soon);
        assert!(!driver.poll_fired(reg, &mut seen, &my_waker));
        assert_eq!(
            seen.epoch,
            before + 1,
            "the look under the lock saw the bump"
        );
        assert!(!driver.poll_fired(reg, &mut seen, &my_waker));
        driver.process(0, later);
        assert_eq!(mine.0.load(SeqCst), 1);
        assert!(driver.poll_fired(reg, &mut seen, &my_waker));
        driver.deregister(reg);
        driver.deregister(other);
        assert_eq!(driver.pending_count(), 0);
    }
}
