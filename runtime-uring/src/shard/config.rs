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
    /// Clean when the log since its head exceeds `(1 + clean_ratio)` × the live data (the bytes
    /// of entries the pages hold; and 16 MiB or two segments). Default 0.5: the log past its head stays near
    /// 1.5 × the live data once cleaning has caught up. Cleaning moves the entries still live
    /// in the oldest stretch of the log to its end, so it writes `u / (1 - u)` bytes per byte
    /// freed, where `u` is the live share of that stretch; the larger the ratio, the smaller
    /// `u` (about 0.42 at 0.5, 0.2 at 1 under uniform overwrites). Limits: 0.1 ..= 100.
    pub clean_ratio: f64,
    /// Candidate bytes the cleaner checks and appends as one record (default 4 KiB; 4 KiB ..=
    /// 16 MiB): writes to the keys' stripes wait for the check and the copy.
    pub batch_bytes: usize,
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
            batch_bytes: 4 << 10,
            memory_quota: None,
        }
    }
}
