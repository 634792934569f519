//! Breakers keyed by endpoint, created on demand from one configuration.

use std::{collections::HashMap, fmt, hash::Hash, sync::Arc};

use super::{Breaker, Config, ErrorsFail};
use crate::sync::{read, write, RwLock};

/// A map of breakers, one per key (an endpoint, a host), created from one
/// [`Config`] the first time a key is asked for.
///
/// The map is read-mostly behind an `RwLock`: a lookup takes the read lock
/// and clones an `Arc`; only the first use of a key takes the write lock.
/// Hold on to the `Arc<Breaker>` to keep the per-call path lock-free.
pub struct BreakerSet<K, C = ErrorsFail> {
    config: Config,
    classifier: C,
    breakers: RwLock<HashMap<K, Arc<Breaker<C>>>>,
}

impl<K: Hash + Eq + Clone + fmt::Debug> BreakerSet<K, ErrorsFail> {
    /// A set whose breakers count every `Err` as a failure.
    pub fn new(config: Config) -> Self {
        BreakerSet::with_classifier(config, ErrorsFail)
    }
}

impl<K: Hash + Eq + Clone + fmt::Debug, C: Clone> BreakerSet<K, C> {
    /// A set whose breakers judge results with clones of `classifier`.
    pub fn with_classifier(config: Config, classifier: C) -> Self {
        BreakerSet {
            config,
            classifier,
            breakers: RwLock::new(HashMap::new()),
        }
    }

    /// The breaker for `key`, created (named `format!("{key:?}")`) if new.
    pub fn get(&self, key: &K) -> Arc<Breaker<C>> {
        if let Some(breaker) = read(&self.breakers).get(key) {
            return Arc::clone(breaker);
        }
        let mut breakers = write(&self.breakers);
        let breaker = breakers.entry(key.clone()).or_insert_with(|| {
            Arc::new(Breaker::with_classifier(
                format!("{key:?}"),
                self.config.clone(),
                self.classifier.clone(),
            ))
        });
        Arc::clone(breaker)
    }

    /// The breaker for `key` if it exists.
    pub fn existing(&self, key: &K) -> Option<Arc<Breaker<C>>> {
        read(&self.breakers).get(key).cloned()
    }

    /// Forgets the breaker for `key` (holders of its `Arc` keep using it).
    pub fn remove(&self, key: &K) -> Option<Arc<Breaker<C>>> {
        write(&self.breakers).remove(key)
    }

    /// How many keys have a breaker.
    pub fn len(&self) -> usize {
        read(&self.breakers).len()
    }

    /// Whether no key has a breaker yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys and breakers, in no particular order (a snapshot).
    pub fn snapshot(&self) -> Vec<(K, Arc<Breaker<C>>)> {
        read(&self.breakers)
            .iter()
            .map(|(key, breaker)| (key.clone(), Arc::clone(breaker)))
            .collect()
    }
}

impl<K: fmt::Debug, C> fmt::Debug for BreakerSet<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<_> = read(&self.breakers)
            .keys()
            .map(|k| format!("{k:?}"))
            .collect();
        f.debug_struct("BreakerSet").field("keys", &keys).finish()
    }
}
