//! A shard's settings: the tree's, the log's, and cleaning's.

use helio_core::TreeConfig;

use crate::log::LogConfig;

/// How a shard is set up.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// The in-memory tree's thresholds and limits.
    pub tree: TreeConfig,
    /// The log's geometry and I/O.
    pub log: LogConfig,
    /// Clean when the log since its head exceeds `(1 + clean_ratio)` × the last checkpoint's
    /// pages (and two segments). Default 0.5: the log past its head stays under 1.5 × the live
    /// data, plus up to two segments of slack (the head's and the one made ready ahead).
    /// Each cleaning writes the live data once: write amplification about `1 + 1/clean_ratio`.
    /// Limits: 0.1 ..= 100.
    pub clean_ratio: f64,
    /// Target size of one page record in a checkpoint (default 64 KiB; 4 KiB ..= 16 MiB).
    pub page_bytes: usize,
    /// Bytes of entries this shard may hold in memory (default: no limit). Until pages can be
    /// swapped out, a full shard refuses puts ([`ShardError::MemoryQuota`](super::ShardError::MemoryQuota)) and still takes
    /// deletes, like a cache with no eviction policy. Measured by walking the pages every
    /// 50 ms, so a burst can pass the quota by what it writes in that time.
    pub memory_quota: Option<u64>,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            tree: TreeConfig::default(),
            log: LogConfig::default(),
            clean_ratio: 0.5,
            page_bytes: 64 << 10,
            memory_quota: None,
        }
    }
}
