//! Slab-pooled slots (built separately).
