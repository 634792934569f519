//! One pipeline per endpoint.

use std::{collections::HashMap, fmt, hash::Hash, sync::Arc};

use crate::sync::{read, write, RwLock};

/// Pipelines (or any policy) by key, each made on first use by one
/// factory, so every endpoint gets its own breaker, budget, limits and
/// histograms from one description.
///
/// A lookup takes a read lock and clones an `Arc`: no allocation once the
/// key exists.
pub struct PolicySet<K, Pl> {
    make: Box<dyn Fn(&K) -> Pl + Send + Sync>,
    map: RwLock<HashMap<K, Arc<Pl>>>,
}

impl<K: Eq + Hash + Clone, Pl> PolicySet<K, Pl> {
    /// A set whose pipelines `make` builds from their key.
    pub fn new(make: impl Fn(&K) -> Pl + Send + Sync + 'static) -> PolicySet<K, Pl> {
        PolicySet {
            make: Box::new(make),
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The pipeline for `key`, made now if it is new.
    pub fn get(&self, key: &K) -> Arc<Pl> {
        if let Some(p) = read(&self.map).get(key) {
            return p.clone();
        }
        let made = Arc::new((self.make)(key));
        write(&self.map).entry(key.clone()).or_insert(made).clone()
    }

    /// Every key and its pipeline (for dashboards).
    pub fn snapshot(&self) -> Vec<(K, Arc<Pl>)> {
        read(&self.map)
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }

    /// Forgets `key`'s pipeline (the next `get` makes a fresh one).
    pub fn remove(&self, key: &K) -> Option<Arc<Pl>> {
        write(&self.map).remove(key)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        read(&self.map).len()
    }

    /// True with no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, Pl> fmt::Debug for PolicySet<K, Pl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySet")
            .field("keys", &read(&self.map).len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pipeline_per_key_made_once() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let made = Arc::new(AtomicU32::new(0));
        let m = made.clone();
        let set = PolicySet::new(move |k: &&str| {
            m.fetch_add(1, Ordering::Relaxed);
            k.len()
        });
        assert_eq!(*set.get(&"inventory"), 9);
        assert!(Arc::ptr_eq(&set.get(&"inventory"), &set.get(&"inventory")));
        assert_eq!(*set.get(&"cart"), 4);
        assert_eq!(made.load(Ordering::Relaxed), 2);
        assert_eq!(set.len(), 2);
        assert!(set.remove(&"cart").is_some());
        assert_eq!(set.len(), 1);
        assert_eq!(set.snapshot().len(), 1);
    }
}
