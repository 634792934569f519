use std::{cell::Cell, fmt, num::NonZeroU64};

/// A task's id: unique among the tasks of this process for its lifetime.
///
/// Ids are handed out in blocks per thread so spawning does not contend on one
/// shared counter; they are therefore not ordered by spawn time across threads.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(NonZeroU64);

const BLOCK: u64 = 1024;

impl Id {
    pub(crate) fn next() -> Id {
        thread_local! {
            static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
        }
        RANGE.with(|range| {
            let (mut next, mut end) = range.get();
            if next == end {
                // Relaxed: uniqueness needs only the atomicity of the add.
                static NEXT_BLOCK: std::sync::atomic::AtomicU64 =
                    std::sync::atomic::AtomicU64::new(1);
                next = NEXT_BLOCK.fetch_add(BLOCK, std::sync::atomic::Ordering::Relaxed);
                end = next + BLOCK;
            }
            range.set((next + 1, end));
            Id(NonZeroU64::new(next).expect("task ids start at 1"))
        })
    }

    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.0)
    }
}
