//! Counters of the tree's structure changes.

use core::sync::atomic::{AtomicU64, Ordering};

/// Structure-change counters, bumped only on the (rare) paths that change a page's shape, so they
/// cost the hot paths nothing. Plain atomics: not part of any protocol.
#[derive(Default)]
pub(crate) struct Counters {
    pub consolidations: AtomicU64,
    pub splits: AtomicU64,
    pub merges: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, pages: usize) -> TreeStats {
        TreeStats {
            pages: pages as u64,
            consolidations: self.consolidations.load(Ordering::Relaxed),
            splits: self.splits.load(Ordering::Relaxed),
            merges: self.merges.load(Ordering::Relaxed),
        }
    }
}

/// What [`Tree::stats`](crate::Tree::stats) reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Pages in the index now.
    pub pages: u64,
    /// Chains replaced by a new base (splits not included).
    pub consolidations: u64,
    /// Pages split in two.
    pub splits: u64,
    /// Pages frozen to be merged into their left sibling.
    pub merges: u64,
}
