//! `select!` (written here, with tokio's syntax) and the re-exported
//! `join!`/`try_join!` (futures-util's), plus what their expansions need.
//!
//! Why `select!` is not futures-util's: its syntax and rules differ from
//! tokio's where a tokio user would trip — `select_biased!` instead of
//! `biased;`, `complete =>`/`default =>` instead of `else =>`, and every
//! future must implement `FusedFuture` (an `async` block, weft's `Sleep`
//! and `JoinHandle` do not), with `Unpin` for futures passed by
//! reference. `join!` and `try_join!` behave as tokio's (all futures polled
//! in the calling task; `try_join!` returns the first `Err` and drops the
//! rest), so those are re-exported.

mod select;

#[doc(hidden)]
pub mod support {
    pub use std::{
        future::{poll_fn, Future, IntoFuture},
        pin::Pin,
        task::Poll,
    };

    /// One branch's output, or the next level (see `__weft_select_wrap!`).
    #[derive(Debug)]
    pub enum Either<A, B> {
        /// This level's branch completed.
        Left(A),
        /// A later branch (or: all disabled).
        Right(B),
    }

    /// Every branch was disabled (precondition false, or pattern refused).
    #[derive(Debug)]
    pub struct AllDisabled;

    /// Where an unbiased `select!` starts polling: a per-thread xorshift,
    /// so no branch is favoured.
    pub fn select_start(branches: u32) -> u32 {
        use std::cell::Cell;
        thread_local! {
            static STATE: Cell<u64> = Cell::new({
                // Seeded from the thread-local's address and the clock.
                let local = 0u8;
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos() as u64);
                (&local as *const u8 as u64) ^ t ^ 0x9E37_79B9_7F4A_7C15 | 1
            });
        }
        if branches <= 1 {
            return 0;
        }
        STATE.with(|s| {
            let mut x = s.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            (x % u64::from(branches)) as u32
        })
    }
}
