//! What the pool needs beyond `crate::sync`: thread-locals and the process-wide
//! registry of thread shard ids, each switching to loom under `--cfg weft_loom`.
//!
//! Kept apart from `crate::sync` so the pool does not edit the shared facade.

use slab::Slab;

use crate::sync::{Arc, Mutex};

#[cfg(weft_loom)]
pub(crate) use loom::thread_local;
#[cfg(not(weft_loom))]
pub(crate) use std::thread_local;

/// The ids of the live threads that touched a pool: a `Slab` because one
/// mutex owner suffices (registration happens once per thread), and it hands
/// back the most recently freed id, which keeps ids dense.
pub(crate) type Registry = Arc<Mutex<Slab<()>>>;

#[cfg(weft_loom)]
loom::lazy_static! {
    static ref REGISTRY: Registry = Arc::new(Mutex::new(Slab::new()));
}

#[cfg(not(weft_loom))]
static REGISTRY: std::sync::LazyLock<Registry> =
    std::sync::LazyLock::new(|| Arc::new(Mutex::new(Slab::new())));

/// A handle on the registry. Each thread keeps its own clone because loom
/// drops its statics before the main thread's locals, and a thread's exit
/// must still be able to free its id.
pub(crate) fn registry() -> Registry {
    Arc::clone(&REGISTRY)
}
