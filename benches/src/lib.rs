//! benches, and what they share: `echo_load`, the blocking load client of
//! the TCP echo bench.

pub mod echo_load;
