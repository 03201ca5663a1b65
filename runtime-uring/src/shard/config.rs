//! A shard's settings: the tree's, the log's, and cleaning's.

use helio_core::TreeConfig;

use crate::log::LogConfig;

/// The default of [`ShardConfig::unflushed_tail`].
pub const UNFLUSHED_TAIL_DEFAULT: u64 = 64 << 20;

/// How a shard is set up.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// The in-memory tree's thresholds and limits.
    pub tree: TreeConfig,
    /// The log's geometry and I/O.
    pub log: LogConfig,
    /// Clean when the log since its head exceeds `(1 + clean_ratio)` × the live data (the
    /// payload bytes of the page records the page table names; and 16 MiB or two segments).
    /// While writes go on, only the log before the last flush round's place counts (the op
    /// records after it, at most about `unflushed_tail`, wait for a round); once the log
    /// rests, all of it does. Default 0.5: the log past its head stays near 1.5 × the live
    /// data once cleaning has caught up. Cleaning moves the page records still named in the
    /// oldest stretch of the log to its end as new page images, so it writes about
    /// `u / (1 - u)` bytes per byte freed, where `u` is the live share of that stretch; the
    /// larger the ratio, the smaller `u`.
    /// Limits: 0.1 ..= 100.
    pub clean_ratio: f64,
    /// Log bytes past the place the last complete flush round began after which the cleaner
    /// thread runs another round (default 64 MiB; limits 1 MiB ..= 1 TiB): what an open after
    /// a crash reads and replays beyond the page records. Writers that find the tail four times as
    /// long wait for the round a little (2 ms per write at most), so writers faster than the
    /// rounds go at their pace. Smaller: faster opens after a crash, more page records written.
    pub unflushed_tail: u64,
    /// Bytes of memory this shard may hold (default: no limit): its buffers first (the log's
    /// write buffers, the cleaner's read window and a flush's batch of page records; see
    /// `budget.rs`), then its pages, the rest: records, bases and index nodes, as the tree
    /// counts them when it allocates and gives them up. Above 90% of their part the cleaner
    /// thread swaps pages out (writing them to the log first) down to 75%; writers that find
    /// the pages over their whole part wait for it a little (2 ms at most per write). Puts are
    /// never refused for it.
    pub memory_quota: Option<u64>,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            tree: TreeConfig::default(),
            log: LogConfig::default(),
            clean_ratio: 0.5,
            unflushed_tail: UNFLUSHED_TAIL_DEFAULT,
            memory_quota: None,
        }
    }
}
