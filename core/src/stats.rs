//! Counters of the tree's structure changes.

use core::sync::atomic::{AtomicU64, Ordering};

/// Structure-change counters, bumped only on the (rare) paths that change a page's shape, so they
/// cost the hot paths nothing. Plain atomics: not part of any protocol.
#[derive(Default)]
pub(crate) struct Counters {
    pub consolidations: AtomicU64,
    pub splits: AtomicU64,
    pub merges: AtomicU64,
    pub swap_outs: AtomicU64,
    pub swap_ins: AtomicU64,
    pub page_flushes: AtomicU64,
    pub page_reads: AtomicU64,
    pub page_read_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, pages: usize) -> TreeStats {
        TreeStats {
            pages: pages as u64,
            consolidations: self.consolidations.load(Ordering::Relaxed),
            splits: self.splits.load(Ordering::Relaxed),
            merges: self.merges.load(Ordering::Relaxed),
            swap_outs: self.swap_outs.load(Ordering::Relaxed),
            swap_ins: self.swap_ins.load(Ordering::Relaxed),
            page_flushes: self.page_flushes.load(Ordering::Relaxed),
            page_reads: self.page_reads.load(Ordering::Relaxed),
            page_read_bytes: self.page_read_bytes.load(Ordering::Relaxed),
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
    /// Pages replaced by a stub naming their records in the log.
    pub swap_outs: u64,
    /// Swapped-out pages brought back into memory.
    pub swap_ins: u64,
    /// Page records the tree was told are in the log.
    pub page_flushes: u64,
    /// Page records read back from the log.
    pub page_reads: u64,
    /// Bytes of page records read back (payloads).
    pub page_read_bytes: u64,
}
