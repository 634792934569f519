//! The one atomic word per `SlotMap` slot, and its legal transitions.
//!
//! ```text
//!  63                32 31                      2 1  0
//! +--------------------+-------------------------+----+
//! |     generation     |     reader count        |state|
//! +--------------------+-------------------------+----+
//! ```
//!
//! Every transition is one CAS on the whole word, so a reader that loaded the
//! word under an old generation can never succeed against the new one.

use crate::sync::atomic::{AtomicU64, Ordering};

/// No value: the slot is on a free list, or held by the one inserter that
/// took it off one, or being emptied by its last reader. Readers and
/// removers reject it; it never has readers.
const FREE: u64 = 0;
/// Holds a value that a key of this generation reaches. New readers are
/// admitted. Never on a free list.
const OCCUPIED: u64 = 1;
/// Tombstone: removed, but the value is still there for the readers that hold
/// guards. No new reader is admitted and no remover succeeds; the last reader
/// to leave empties the slot. Never on a free list.
const REMOVED: u64 = 2;

const STATE_MASK: u64 = 0b11;
const REF_SHIFT: u32 = 2;
const REF_ONE: u64 = 1 << REF_SHIFT;
/// Most readers one slot can hold at once (30 bits).
const MAX_REFS: u64 = (1 << 30) - 1;
const REF_MASK: u64 = MAX_REFS << REF_SHIFT;
const GEN_SHIFT: u32 = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn state(self) -> u64 {
        self.0 & STATE_MASK
    }
    fn refs(self) -> u64 {
        (self.0 & REF_MASK) >> REF_SHIFT
    }
    fn generation(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32
    }
    fn pack(state: u64, refs: u64, generation: u32) -> Self {
        Self(u64::from(generation) << GEN_SHIFT | refs << REF_SHIFT | state)
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state() {
            FREE => "free",
            OCCUPIED => "occupied",
            _ => "removed",
        };
        write!(f, "{state} gen={} refs={}", self.generation(), self.refs())
    }
}

/// Outcome of [`SlotWord::acquire_read`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AcquireRead {
    /// The caller holds one reader reference; the value stays until it
    /// calls [`SlotWord::release`].
    Acquired,
    /// The key's generation is gone, or the value is removed or absent.
    Stale,
}

/// Outcome of [`SlotWord::mark_removed`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MarkRemoved {
    /// This caller removed the value and holds one reader reference, which it
    /// must [`release`](SlotWord::release).
    Marked,
    /// Someone else removed it first, or the key is stale.
    Stale,
}

/// Outcome of [`SlotWord::release`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// Other references remain, or the value was not removed.
    Remaining,
    /// The caller was the last reader of a tombstone. The word is now `FREE`
    /// under the next generation, and the caller alone must drop the value and
    /// put the slot on a free list.
    LastOfTombstone,
}

/// The state word of one slot.
#[derive(Debug)]
pub(crate) struct SlotWord(AtomicU64);

impl Default for SlotWord {
    fn default() -> Self {
        Self(AtomicU64::new(Word::pack(FREE, 0, 0).0))
    }
}

impl SlotWord {
    fn load(&self, order: Ordering) -> Word {
        Word(self.0.load(order))
    }

    /// The generation a `FREE` slot will be published under. Only for the
    /// thread that took the slot off a free list (or claimed it fresh).
    pub(crate) fn free_generation(&self) -> u32 {
        // Relaxed: the free list's Acquire already ordered the last release.
        let word = self.load(Ordering::Relaxed);
        debug_assert_eq!(word.state(), FREE, "{word:?}");
        word.generation()
    }

    /// `FREE` → `OCCUPIED` under `generation`, by the slot's only holder,
    /// after the value has been written.
    pub(crate) fn publish(&self, generation: u32) {
        // Release: publishes the value to readers' Acquire CAS.
        self.0
            .store(Word::pack(OCCUPIED, 0, generation).0, Ordering::Release);
    }

    /// Adds a reader if the slot is `OCCUPIED` under `generation`.
    ///
    /// # Panics
    /// If the slot already has `2^30 - 1` readers.
    pub(crate) fn acquire_read(&self, generation: u32) -> AcquireRead {
        let mut word = self.load(Ordering::Relaxed);
        loop {
            if word.state() != OCCUPIED || word.generation() != generation {
                return AcquireRead::Stale;
            }
            assert!(word.refs() < MAX_REFS, "too many guards on one slot");
            // Acquire: pairs with `publish`'s Release store (we read it or an
            // RMW in its release sequence), so the value is visible.
            match self.0.compare_exchange_weak(
                word.0,
                word.0 + REF_ONE,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return AcquireRead::Acquired,
                Err(actual) => word = Word(actual),
            }
        }
    }

    /// `OCCUPIED` → `REMOVED` under `generation`, taking a reader reference so
    /// the remover empties the slot through the same [`release`](Self::release)
    /// as any reader.
    ///
    /// # Panics
    /// As [`acquire_read`](Self::acquire_read).
    pub(crate) fn mark_removed(&self, generation: u32) -> MarkRemoved {
        let mut word = self.load(Ordering::Relaxed);
        loop {
            if word.state() != OCCUPIED || word.generation() != generation {
                return MarkRemoved::Stale;
            }
            assert!(word.refs() < MAX_REFS, "too many guards on one slot");
            let marked = Word::pack(REMOVED, word.refs() + 1, generation);
            // Relaxed: the release below orders the drop; winning this CAS
            // only decides who removed the value.
            match self.0.compare_exchange_weak(
                word.0,
                marked.0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return MarkRemoved::Marked,
                Err(actual) => word = Word(actual),
            }
        }
    }

    /// Drops one reader reference.
    pub(crate) fn release(&self) -> Release {
        let mut word = self.load(Ordering::Relaxed);
        loop {
            debug_assert!(word.refs() > 0 && word.state() != FREE, "{word:?}");
            let (next, outcome) = if word.state() == REMOVED && word.refs() == 1 {
                let next_gen = word.generation().wrapping_add(1);
                (Word::pack(FREE, 0, next_gen), Release::LastOfTombstone)
            } else {
                (Word(word.0 - REF_ONE), Release::Remaining)
            };
            // AcqRel: Release orders this reader's use of the value before the
            // drop; Acquire lets the last one see every other reader's use.
            match self
                .0
                .compare_exchange_weak(word.0, next.0, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return outcome,
                Err(actual) => word = Word(actual),
            }
        }
    }

    /// Whether the slot holds a value (for `Drop`, under `&mut`).
    pub(crate) fn holds_value(&self) -> bool {
        // Relaxed: the caller has exclusive access.
        self.load(Ordering::Relaxed).state() != FREE
    }

    /// Whether the slot is a tombstone (for the unit tests).
    #[cfg(all(test, not(weft_loom)))]
    fn is_removed(&self) -> bool {
        self.load(Ordering::Relaxed).state() == REMOVED
    }
}

#[cfg(all(test, not(weft_loom)))]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let w = Word::pack(REMOVED, MAX_REFS, u32::MAX);
        assert_eq!(
            (w.state(), w.refs(), w.generation()),
            (REMOVED, MAX_REFS, u32::MAX)
        );
    }

    #[test]
    fn free_slot_rejects_readers_and_removers() {
        let word = SlotWord::default();
        assert_eq!(word.acquire_read(0), AcquireRead::Stale);
        assert_eq!(word.mark_removed(0), MarkRemoved::Stale);
    }

    #[test]
    fn tombstone_waits_for_last_reader_then_bumps_generation() {
        let word = SlotWord::default();
        word.publish(7);
        assert_eq!(word.acquire_read(7), AcquireRead::Acquired);
        assert_eq!(word.acquire_read(6), AcquireRead::Stale);
        assert_eq!(word.mark_removed(7), MarkRemoved::Marked);
        assert!(word.is_removed());
        assert_eq!(word.mark_removed(7), MarkRemoved::Stale, "removed twice");
        assert_eq!(
            word.acquire_read(7),
            AcquireRead::Stale,
            "reader admitted to a tombstone"
        );
        assert_eq!(word.release(), Release::Remaining, "remover's reference");
        assert!(word.holds_value());
        assert_eq!(word.release(), Release::LastOfTombstone);
        assert!(!word.holds_value());
        assert_eq!(word.free_generation(), 8);
    }

    #[test]
    fn generation_wraps() {
        let word = SlotWord::default();
        word.publish(u32::MAX);
        assert_eq!(word.mark_removed(u32::MAX), MarkRemoved::Marked);
        assert_eq!(word.release(), Release::LastOfTombstone);
        assert_eq!(word.free_generation(), 0);
    }
}
