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
