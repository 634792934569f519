//! GCRA limiters per key (client, endpoint) with bounded memory.
//!
//! # Design
//!
//! A key's whole state is its `tat` (one `u64`), kept in one of `shards`
//! hash maps, each behind its own mutex: a call hashes its key, locks one
//! shard, judges and updates the `tat` in place and unlocks — a lock per call,
//! but spread over many shards (as `governor`'s keyed limiter spreads over
//! `DashMap`'s), and no allocation once a key exists.
//!
//! **Memory is bounded**: at most `max_keys` keys (split evenly over the
//! shards). A key is *idle* once its `tat` is at or before now: it has its
//! full burst again, exactly as a key never seen, so forgetting it loses
//! nothing. A new key that finds its shard full first evicts the shard's idle
//! keys; if none is idle it is refused ([`RateError::TooManyKeys`]) rather
//! than evicting a key that is still being limited (which would hand that
//! client a fresh burst). [`KeyedGcra::retain_recent`] sweeps every shard.

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasher, Hash, RandomState},
    marker::PhantomData,
    sync::Arc,
    time::Duration,
};

use super::{
    emit,
    rate::{Judged, Params},
    CachePadded, ConfigError, EventKind, Listener, Listeners, RateError,
};
use crate::{
    caller::check_scope,
    clock::{Clock, ClockSource},
    sync::{lock, Mutex},
};

#[derive(Debug, Default)]
struct Shard<K> {
    tats: HashMap<K, u64>,
    rejected: u64,
    evicted: u64,
}

/// A GCRA limiter per key; see the [module docs](self).
pub struct KeyedGcra<K, S = RandomState> {
    shards: Box<[CachePadded<Mutex<Shard<K>>>]>,
    per_shard: usize,
    hasher: S,
    params: Params,
    clock: ClockSource,
    name: Arc<str>,
    listeners: Listeners,
}

impl<K: Hash + Eq + Clone> KeyedGcra<K> {
    /// A builder: 100 tokens per second per key, burst 1, at most 10 000
    /// keys in 16 shards.
    pub fn builder() -> KeyedGcraBuilder<K> {
        KeyedGcraBuilder {
            key: PhantomData,
            tokens: 100,
            period: Duration::from_secs(1),
            burst: 1,
            max_keys: 10_000,
            shards: 16,
            clock: ClockSource::default(),
            name: Arc::from("keyed-gcra"),
            listeners: Listeners::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher> KeyedGcra<K, S> {
    fn shard(&self, key: &K) -> &Mutex<Shard<K>> {
        let hash = self.hasher.hash_one(key);
        &self.shards[(hash % self.shards.len() as u64) as usize]
    }

    /// Takes one token for `key` now, or says when one will be there.
    pub fn try_acquire(&self, key: &K) -> Result<(), RateError> {
        self.try_acquire_n(key, 1)
    }

    /// Takes `n` tokens for `key` now, or says when they will be there.
    pub fn try_acquire_n(&self, key: &K, n: u32) -> Result<(), RateError> {
        check_scope().map_err(RateError::Cancelled)?;
        self.params.check_capacity(n)?;
        let now = self.clock.nanos();
        let mut shard = lock(self.shard(key));
        let tat = match shard.tats.get(key) {
            Some(tat) => *tat,
            None => {
                if shard.tats.len() >= self.per_shard {
                    let before = shard.tats.len();
                    shard.tats.retain(|_, tat| *tat > now);
                    let evicted = before - shard.tats.len();
                    shard.evicted += evicted as u64;
                    if evicted > 0 {
                        emit(
                            &self.listeners.0,
                            &self.name,
                            EventKind::Evicted { keys: evicted },
                        );
                    }
                    if shard.tats.len() >= self.per_shard {
                        shard.rejected += 1;
                        drop(shard);
                        return Err(self.refused(RateError::TooManyKeys));
                    }
                }
                0
            }
        };
        match self.params.judge(tat, now, n, 0) {
            Judged::Admit { tat: next, .. } => {
                match shard.tats.get_mut(key) {
                    Some(slot) => *slot = next,
                    None => {
                        shard.tats.insert(key.clone(), next);
                    }
                }
                Ok(())
            }
            Judged::Refuse { wait } => {
                shard.rejected += 1;
                drop(shard);
                Err(self.refused(RateError::Exhausted {
                    retry_after: Duration::from_nanos(wait),
                }))
            }
        }
    }

    #[cold]
    fn refused(&self, error: RateError) -> RateError {
        if let Some(refusal) = error.refusal() {
            emit(&self.listeners.0, &self.name, EventKind::Rejected(refusal));
        }
        error
    }

    /// Forgets every idle key (one at its full burst: indistinguishable from
    /// a key never seen); returns how many.
    pub fn retain_recent(&self) -> usize {
        let now = self.clock.nanos();
        let mut evicted = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let before = shard.tats.len();
            shard.tats.retain(|_, tat| *tat > now);
            let gone = before - shard.tats.len();
            shard.evicted += gone as u64;
            evicted += gone;
        }
        if evicted > 0 {
            emit(
                &self.listeners.0,
                &self.name,
                EventKind::Evicted { keys: evicted },
            );
        }
        evicted
    }

    /// A snapshot.
    pub fn metrics(&self) -> KeyedMetrics {
        let mut m = KeyedMetrics {
            keys: 0,
            max_keys: self.per_shard * self.shards.len(),
            evicted: 0,
            rejected: 0,
        };
        for shard in self.shards.iter() {
            let shard = lock(shard);
            m.keys += shard.tats.len();
            m.evicted += shard.evicted;
            m.rejected += shard.rejected;
        }
        m
    }
}

impl<K, S> fmt::Debug for KeyedGcra<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedGcra")
            .field("name", &self.name)
            .field("params", &self.params)
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a [`KeyedGcra`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedMetrics {
    /// Keys held now.
    pub keys: usize,
    /// The most it holds.
    pub max_keys: usize,
    /// Idle keys forgotten so far.
    pub evicted: u64,
    /// Requests refused (over the rate, or no room for a new key).
    pub rejected: u64,
}

/// Builds a [`KeyedGcra`] for keys of type `K`.
pub struct KeyedGcraBuilder<K> {
    key: PhantomData<fn(K)>,
    tokens: u64,
    period: Duration,
    burst: u32,
    max_keys: usize,
    shards: usize,
    clock: ClockSource,
    name: Arc<str>,
    listeners: Listeners,
}

impl<K> fmt::Debug for KeyedGcraBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedGcraBuilder")
            .field("tokens", &self.tokens)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .field("max_keys", &self.max_keys)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> KeyedGcraBuilder<K> {
    /// `tokens` per `period` per key.
    pub fn rate(mut self, tokens: u64, period: Duration) -> Self {
        self.tokens = tokens;
        self.period = period;
        self
    }

    /// Burst per key.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The most keys held at once (split evenly over the shards, rounded
    /// up).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// How many independently locked maps the keys are spread over.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// The clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = ClockSource::Custom(clock);
        self
    }

    /// The name events carry.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a listener (refusals, evictions).
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Validates and builds the limiter.
    pub fn build(self) -> Result<KeyedGcra<K>, ConfigError> {
        let params = Params::new(self.tokens, self.period, self.burst)?;
        if self.max_keys == 0 {
            return Err(ConfigError::ZeroKeys);
        }
        if self.shards == 0 || self.shards > self.max_keys {
            return Err(ConfigError::BadShards(self.shards));
        }
        let per_shard = self.max_keys.div_ceil(self.shards);
        Ok(KeyedGcra {
            shards: (0..self.shards)
                .map(|_| {
                    CachePadded(Mutex::new(Shard {
                        tats: HashMap::with_capacity(per_shard.min(1024)),
                        rejected: 0,
                        evicted: 0,
                    }))
                })
                .collect(),
            per_shard,
            hasher: RandomState::new(),
            params,
            clock: self.clock,
            name: self.name,
            listeners: self.listeners,
        })
    }
}
