//! benches, and what they share: `echo_load`, the blocking load client of
//! the TCP echo bench, `server_stats`, its per-thread CPU, context switch
//! and allocation counts, and [`swap_order`].

pub mod echo_load;
pub mod server_stats;

/// True when `WEFT_BENCH_SWAP` is set: a bench then registers each group's
/// two functions in reverse order. On this VM the function a group runs
/// second is measured 2-10% slower than it would be first, whichever it is,
/// enough to move a ratio across a target; `scripts/ratios.py` sets the
/// variable on every other run, so its medians cover both orders.
pub fn swap_order() -> bool {
    std::env::var_os("WEFT_BENCH_SWAP").is_some()
}
