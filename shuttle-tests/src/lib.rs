//! Randomized-schedule tests of weft's concurrent code with
//! [shuttle](https://docs.rs/shuttle), for models too large for loom's
//! exhaustive search: several producers and a cancelled receiver, a
//! semaphore with many waiters, a cancel tree with many children, the
//! idle/park protocol with three workers, the io park protocol with many
//! wakers, and the real scheduler (a `Runtime` whose three workers are
//! model threads; docs/VERIFICATION.md says what is replaced to make that
//! possible). The tests live in `tests/`; each
//! file is compiled only under `--cfg weft_shuttle`, where weft's facade
//! (`runtime/src/facade.rs`) resolves to shuttle's primitives and its
//! per-thread context to shuttle's thread-locals, so the tests run the real
//! code:
//!
//! ```text
//! RUSTFLAGS="--cfg weft_shuttle" CARGO_TARGET_DIR=target-shuttle \
//!   cargo test -p shuttle-tests --release
//! ```
//!
//! Each test runs a bounded number of random schedules and as many PCT
//! schedules (shuttle's probabilistic concurrency testing, which finds bugs
//! of small depth with a known probability), both seeded. `WEFT_SHUTTLE_ITERS`
//! scales the count, `WEFT_SHUTTLE_SEED` fixes the seed: a failing test
//! prints its seed (and shuttle prints the failing schedule, which
//! `shuttle::replay` replays step for step).
//!
//! Without the cfg this crate is empty and its tests compile to nothing.
#![cfg(weft_shuttle)]

use std::time::{SystemTime, UNIX_EPOCH};

use shuttle::{
    scheduler::{PctScheduler, RandomScheduler},
    Config, Runner,
};

/// Iterations per scheduler (random, then PCT) unless `WEFT_SHUTTLE_ITERS`
/// says otherwise.
pub fn iterations(default: usize) -> usize {
    std::env::var("WEFT_SHUTTLE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `WEFT_SHUTTLE_SEED`, or a fresh seed from the clock (each CI run explores
/// other schedules; the seed is printed so a failure replays).
fn seed() -> u64 {
    if let Some(seed) = std::env::var("WEFT_SHUTTLE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return seed;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    now.as_secs() ^ u64::from(now.subsec_nanos()).rotate_left(32)
}

/// Prints the seed if the test panics (the output of a passing test is
/// captured and dropped; a failing one's is shown).
struct SeedNote {
    name: &'static str,
    seed: u64,
}

impl Drop for SeedNote {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "shuttle test `{}` failed with seed {}: rerun it with WEFT_SHUTTLE_SEED={} \
                 (same WEFT_SHUTTLE_ITERS) or replay the schedule printed above with \
                 `shuttle::replay`",
                self.name, self.seed, self.seed
            );
        }
    }
}

/// Runs `f` under `default_iters` random schedules, then as many PCT
/// schedules of depth 3, from one seed.
pub fn check(name: &'static str, default_iters: usize, f: impl Fn() + Send + Sync + 'static) {
    let iters = iterations(default_iters);
    let seed = seed();
    let _note = SeedNote { name, seed };
    let f = std::sync::Arc::new(f);
    let g = f.clone();
    Runner::new(RandomScheduler::new_from_seed(seed, iters), config()).run(move || g());
    Runner::new(PctScheduler::new_from_seed(seed, 3, iters), config()).run(move || f());
}

fn config() -> Config {
    let mut config = Config::new();
    // A lost wakeup shows up as a deadlock (shuttle reports it); a livelock
    // as a run past this many steps.
    config.max_steps = shuttle::MaxSteps::FailAfter(200_000);
    config
}
