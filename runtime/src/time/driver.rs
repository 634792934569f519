//! Timer shards: one wheel per worker, each behind its own mutex.
//!
//! A timer registers in the shard of the worker that first polls it (shard 0
//! for threads that are not workers) and stays there if its task is stolen:
//! the waker it stores reaches the task wherever it runs. Each shard caches its
//! next expiry in an atomic so a parking worker can compute its park timeout
//! over all shards without locking, and any worker that wakes fires every
//! shard that is due, so a busy owner never holds another worker's timers back
//! by more than its current poll.

use std::{
    task::Waker,
    time::{Duration, Instant},
};

use super::wheel::{TimerKey, Wheel};
use crate::facade::{
    atomic::{AtomicU64, AtomicUsize, Ordering::*},
    lock, Mutex,
};

const NONE: u64 = u64::MAX;

pub(crate) struct TimeDriver {
    origin: Instant,
    shards: Box<[Shard]>,
    fired: AtomicUsize,
}

struct Shard {
    wheel: Mutex<Wheel>,
    /// The wheel's next expiry in ms since `origin`, or NONE. May be earlier
    /// than the truth (after a removal), never later.
    next: AtomicU64,
}

/// Where a timer lives, for its later polls and its removal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Registration {
    shard: usize,
    key: TimerKey,
}

impl TimeDriver {
    pub(crate) fn new(shards: usize) -> TimeDriver {
        TimeDriver {
            origin: Instant::now(),
            shards: (0..shards.max(1))
                .map(|_| Shard {
                    wheel: Mutex::new(Wheel::new()),
                    next: AtomicU64::new(NONE),
                })
                .collect(),
            fired: AtomicUsize::new(0),
        }
    }

    /// `instant` in wheel ticks, rounded up so a timer never fires early.
    fn to_tick(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.origin);
        let ms = since.as_millis() as u64;
        if since > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    /// The tick reached by `now`, rounded down.
    fn now_tick(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    fn tick_to_instant(&self, tick: u64) -> Instant {
        self.origin + Duration::from_millis(tick)
    }

    /// Registers a timer for `deadline` in `shard`. `None`: already due.
    pub(crate) fn register(
        &self,
        shard: usize,
        deadline: Instant,
        waker: &Waker,
    ) -> Option<Registration> {
        let shard_idx = shard % self.shards.len();
        let shard = &self.shards[shard_idx];
        let when = self.to_tick(deadline);
        let mut wheel = lock(&shard.wheel);
        let key = wheel.insert(when, waker.clone())?;
        // Relaxed (under the lock): readers only use it as a hint and re-check
        // under the lock before acting.
        if when < shard.next.load(Relaxed) {
            shard.next.store(when, Relaxed);
        }
        Some(Registration {
            shard: shard_idx,
            key,
        })
    }

    /// True if the timer fired; otherwise its waker is updated to `waker`.
    pub(crate) fn poll_fired(&self, reg: Registration, waker: &Waker) -> bool {
        let mut wheel = lock(&self.shards[reg.shard].wheel);
        if wheel.is_fired(reg.key) {
            return true;
        }
        wheel.set_waker(reg.key, waker);
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
            wheel.advance(now_tick, &mut wakers);
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
