//! loom models of weft's lock-free code. The models live in `tests/`; each
//! file is compiled only under `--cfg weft_loom`, where weft's `sync` facade
//! resolves to loom so the models check the real code:
//!
//! ```text
//! RUSTFLAGS="--cfg weft_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 \
//!   CARGO_TARGET_DIR=target-loom cargo test -p loom-tests --release
//! ```
//!
//! Without the cfg this crate is empty and its tests compile to nothing.

/// A task stand-in for the models of the scheduler's queues: it counts
/// its drops, so a model can assert every task comes out exactly once.
#[cfg(weft_loom)]
#[derive(Debug)]
pub struct Item<const N: usize> {
    /// Its index in `drops`.
    pub id: usize,
    /// Drops per item, shared by the model's items.
    pub drops: loom::sync::Arc<[loom::sync::atomic::AtomicUsize; N]>,
}

#[cfg(weft_loom)]
impl<const N: usize> Item<N> {
    /// Item `id`, counting its drop in `drops[id]`.
    pub fn new(id: usize, drops: &loom::sync::Arc<[loom::sync::atomic::AtomicUsize; N]>) -> Self {
        Item {
            id,
            drops: drops.clone(),
        }
    }
}

#[cfg(weft_loom)]
impl<const N: usize> Drop for Item<N> {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
    }
}
