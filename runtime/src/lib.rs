//! weft

mod blocking;
// `atomic` and `UnsafeCell` are for the executor core, built on another
// branch; until it lands only the blocking pool uses this facade.
#[allow(dead_code, unused_imports)]
mod sync;
