//! The tree's tuning knobs: one validated type, every knob with its default, its limits and its effect.

use core::fmt;

/// Thresholds that shape pages and their delta chains.
///
/// Build it with [`TreeConfig::default`] and the setters; [`Tree::new`](crate::Tree::new) validates it
/// and refuses values outside the documented limits with a [`ConfigError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeConfig {
    pub(crate) consolidate_chain: u32,
    pub(crate) read_consolidate_chain: u32,
    pub(crate) split_items: u32,
    pub(crate) merge_items: u32,
    pub(crate) page_bytes_max: u32,
    pub(crate) key_bytes_max: u32,
    pub(crate) value_bytes_max: u32,
}

/// Limits of every knob, as `(min, max)`; checked together in [`TreeConfig::validate`].
mod limits {
    pub const CONSOLIDATE_CHAIN: (u32, u32) = (1, 10_000);
    pub const READ_CONSOLIDATE_CHAIN: (u32, u32) = (1, 10_000);
    pub const SPLIT_ITEMS: (u32, u32) = (4, 1 << 20);
    pub const PAGE_BYTES_MAX: (u32, u32) = (256, 1 << 30);
    pub const KEY_BYTES_MAX: (u32, u32) = (1, 1 << 16);
    pub const VALUE_BYTES_MAX: (u32, u32) = (0, 1 << 30);
}

impl Default for TreeConfig {
    fn default() -> Self {
        Self {
            consolidate_chain: 200,
            read_consolidate_chain: 16,
            split_items: 800,
            merge_items: 50,
            page_bytes_max: 128 * 1024,
            key_bytes_max: 4096,
            value_bytes_max: 1 << 20,
        }
    }
}

impl TreeConfig {
    /// Delta records on a page before the writer that adds one more consolidates the page into a new
    /// base. Default 200 (Plasma's production value), limits 1..=10000. Lower means faster reads and
    /// more copying on writes.
    pub fn consolidate_chain(mut self, records: u32) -> Self {
        self.consolidate_chain = records;
        self
    }

    /// Delta records a reader walks before it consolidates the page itself. Default 16, limits
    /// 1..=10000. Writers leave chains up to `consolidate_chain` long; a page that is read is worth
    /// consolidating earlier, since every record on the chain costs each read a cache miss. Lower
    /// favours reads; higher favours mixed workloads, where each consolidation copies the page.
    pub fn read_consolidate_chain(mut self, records: u32) -> Self {
        self.read_consolidate_chain = records;
        self
    }

    /// Entries (versions) on a page above which consolidation splits it in two. Default 800, limits
    /// 4..=1048576.
    pub fn split_items(mut self, items: u32) -> Self {
        self.split_items = items;
        self
    }

    /// Entries on a page below which consolidation merges it into its left sibling. Default 50,
    /// limits 0..=`split_items / 4` (0 disables merging); the gap keeps a merged page from splitting
    /// straight away.
    pub fn merge_items(mut self, items: u32) -> Self {
        self.merge_items = items;
        self
    }

    /// Encoded bytes of a page above which consolidation splits it, whatever its entry count.
    /// Default 128 KiB, limits 256 B..=1 GiB. A single entry larger than this is kept on a page of
    /// its own.
    pub fn page_bytes_max(mut self, bytes: u32) -> Self {
        self.page_bytes_max = bytes;
        self
    }

    /// Largest key accepted, in bytes. Default 4096, limits 1..=65536.
    pub fn key_bytes_max(mut self, bytes: u32) -> Self {
        self.key_bytes_max = bytes;
        self
    }

    /// Largest value accepted, in bytes. Default 1 MiB, limits 0..=1 GiB.
    pub fn value_bytes_max(mut self, bytes: u32) -> Self {
        self.value_bytes_max = bytes;
        self
    }

    /// Checks every knob against its limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check("consolidate_chain", self.consolidate_chain, limits::CONSOLIDATE_CHAIN)?;
        check("read_consolidate_chain", self.read_consolidate_chain, limits::READ_CONSOLIDATE_CHAIN)?;
        check("split_items", self.split_items, limits::SPLIT_ITEMS)?;
        check("merge_items", self.merge_items, (0, self.split_items / 4))?;
        check("page_bytes_max", self.page_bytes_max, limits::PAGE_BYTES_MAX)?;
        check("key_bytes_max", self.key_bytes_max, limits::KEY_BYTES_MAX)?;
        check("value_bytes_max", self.value_bytes_max, limits::VALUE_BYTES_MAX)
    }

    /// Largest key accepted, in bytes.
    pub fn key_bytes_limit(&self) -> u32 {
        self.key_bytes_max
    }

    /// Largest value accepted, in bytes.
    pub fn value_bytes_limit(&self) -> u32 {
        self.value_bytes_max
    }
}

fn check(knob: &'static str, value: u32, (min, max): (u32, u32)) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError { knob, value: value.into(), min: min.into(), max: max.into() })
    }
}

/// A knob was set outside its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The knob's name, as its setter is named.
    pub knob: &'static str,
    /// The value given.
    pub value: u64,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config knob `{}` is {}, outside its limits {}..={}",
            self.knob, self.value, self.min, self.max
        )
    }
}

impl core::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_refuse() {
        assert_eq!(TreeConfig::default().validate(), Ok(()));
        let err = TreeConfig::default().split_items(2).validate().unwrap_err();
        assert_eq!(err.knob, "split_items");
        let err = TreeConfig::default().split_items(40).merge_items(11).validate().unwrap_err();
        assert_eq!((err.knob, err.max), ("merge_items", 10));
        assert!(TreeConfig::default().consolidate_chain(0).validate().is_err());
        assert!(TreeConfig::default().key_bytes_max(1 << 17).validate().is_err());
    }
}
