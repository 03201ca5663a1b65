//! [`Config`]: every knob of a store, with its default and limits, checked at open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use helio_core::TreeConfig;

use super::error::Error;
use crate::log::{Durability, LogConfig};
use crate::shard::ShardConfig;

/// How to open a store: a builder. Every setter documents its default and limits; `Store::open`
/// checks them all and refuses the first one out of bounds with [`Error::Config`].
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) dir: PathBuf,
    pub(crate) shards: usize,
    pub(crate) durability: Durability,
    pub(crate) tree: TreeConfig,
    pub(crate) log: LogConfig,
    pub(crate) clean_ratio: f64,
    pub(crate) unflushed_tail: u64,
    pub(crate) pin_threads: bool,
    pub(crate) memory_quota: Option<u64>,
}

/// Most shards a store can have.
pub const SHARDS_MAX: usize = 1024;

impl Config {
    /// A store in `dir` (created if missing) with every default.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            durability: Durability::Buffered,
            tree: TreeConfig::default(),
            log: LogConfig::default(),
            clean_ratio: ShardConfig::default().clean_ratio,
            unflushed_tail: ShardConfig::default().unflushed_tail,
            pin_threads: true,
            memory_quota: None,
        }
    }

    /// Shards, each with its own index, write buffers, log and I/O thread (default: the number of
    /// CPUs; 1 ..= 1024). Fixed when the store is created.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Durability of `put` and `delete` (default [`Durability::Buffered`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Size of each write buffer (default 1 MiB; a power of two from 64 KiB to 64 MiB).
    pub fn write_buffer_bytes(mut self, bytes: usize) -> Self {
        self.log.buffer_bytes = bytes;
        self
    }

    /// Write buffers per shard (default 4; 2 ..= 64).
    pub fn write_buffers(mut self, count: usize) -> Self {
        self.log.buffers = count;
        self
    }

    /// Size of each log segment file (default 4 GiB; 1 MiB ..= 1 TiB, a multiple of the write
    /// buffer size). Fixed when the store is created.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.log.segment_bytes = bytes;
        self
    }

    /// Puts the store's files on `disk` instead of the real file system: a test hook (the
    /// power-loss tests' simulated disk).
    #[doc(hidden)]
    pub fn disk(mut self, disk: crate::disk::DiskRef) -> Self {
        self.log.disk = disk;
        self
    }

    /// Longest a `Buffered` write waits to be flushed (default 10 ms; 100 µs ..= 60 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.log.flush_interval = interval;
        self
    }

    /// Delta records on a page before it is consolidated (default 200; 1 ..= 10 000).
    pub fn delta_chain(mut self, records: u32) -> Self {
        self.tree = self.tree.consolidate_chain(records);
        self
    }

    /// Entries above which a page splits (default 800; 4 ..= 2^20).
    pub fn split_items(mut self, items: u32) -> Self {
        self.tree = self.tree.split_items(items);
        self
    }

    /// Entries below which a page merges into its neighbour (default 50; at most a quarter of
    /// `split_items`).
    pub fn merge_items(mut self, items: u32) -> Self {
        self.tree = self.tree.merge_items(items);
        self
    }

    /// Largest key in bytes (default 4 KiB; 1 ..= 64 KiB).
    pub fn key_bytes_max(mut self, bytes: u32) -> Self {
        self.tree = self.tree.key_bytes_max(bytes);
        self
    }

    /// Largest value in bytes (default 1 MiB; 0 ..= 1 GiB).
    pub fn value_bytes_max(mut self, bytes: u32) -> Self {
        self.tree = self.tree.value_bytes_max(bytes);
        self
    }

    /// Cleaning threshold: a shard's log is cleaned once it exceeds `1 + ratio` times the live
    /// data (default 0.5; 0.1 ..= 100). While writes go on, the unflushed tail (see
    /// [`Config::unflushed_tail`]) does not count; once they rest, it does.
    pub fn clean_ratio(mut self, ratio: f64) -> Self {
        self.clean_ratio = ratio;
        self
    }

    /// Write segments with O_DIRECT where the filesystem allows it (default true).
    pub fn direct_io(mut self, on: bool) -> Self {
        self.log.direct_io = on;
        self
    }

    /// Entries of each shard's io_uring submission queue (default 64; a power of two, 8 ..= 4096).
    pub fn ring_depth(mut self, entries: u32) -> Self {
        self.log.ring_depth = entries;
        self
    }

    /// Kernel-side submission polling for each shard's ring (default off: on costs a CPU per
    /// shard spinning in the kernel, worth it only with spare cores).
    pub fn sqpoll(mut self, on: bool) -> Self {
        self.log.sqpoll = on;
        self
    }

    /// Bytes of memory the store may hold, split evenly between shards (default: no limit).
    /// Each shard's share pays for its buffers first (its log's write buffers, the window its
    /// cleaner reads the log through and the batch of page records a flush holds, the last two
    /// an eighth each of what the log's leave, from 256 KiB to 4 MiB) and its pages get the
    /// rest (their entries, deltas, stubs and index nodes); a share must leave them 256 KiB.
    /// Above 90% of theirs a shard swaps pages out to its log (a Clock picks cold ones; dirty
    /// ones are written first) down to 75%; a writer that finds its shard's pages over their
    /// whole part waits for the swapper at most 2 ms, so writes slow down but are never
    /// refused. The allocator's own overhead is not counted (see `docs/pages.md`).
    pub fn memory_quota(mut self, bytes: u64) -> Self {
        self.memory_quota = Some(bytes);
        self
    }

    /// Log bytes each shard may write past the place its last complete flush round began
    /// before its cleaner runs another (default 64 MiB; from 1 MiB to 1 TiB): about what an
    /// open after a crash reads and replays of each log beyond its page records. Writers that
    /// find a tail four times as long wait for the round a little (2 ms per write at most): writers
    /// faster than the rounds go at their pace rather than lengthen the tail. Smaller: faster
    /// opens after a crash, more page records written.
    pub fn unflushed_tail(mut self, bytes: u64) -> Self {
        self.unflushed_tail = bytes;
        self
    }

    /// Pin each shard's I/O thread to CPU `shard % CPUs` (default true).
    pub fn pin_threads(mut self, on: bool) -> Self {
        self.pin_threads = on;
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest key in bytes this configuration allows (see [`Config::key_bytes_max`]), so
    /// that a layer above can refuse an over-long key before it builds a batch around it.
    pub fn key_bytes_limit(&self) -> u32 {
        self.tree.key_bytes_limit()
    }

    /// The largest value in bytes this configuration allows (see [`Config::value_bytes_max`]).
    pub fn value_bytes_limit(&self) -> u32 {
        self.tree.value_bytes_limit()
    }

    /// Checks every knob.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=SHARDS_MAX).contains(&self.shards) {
            return Err(Error::Config { knob: "shards", rule: format!("from 1 to {SHARDS_MAX}") });
        }
        self.tree.validate().map_err(|e| Error::Config { knob: e.knob, rule: e.to_string() })?;
        self.log.validate().map_err(|e| Error::Config { knob: e.knob, rule: e.rule.to_string() })?;
        let share_min = crate::shard::quota_share_min(&self.log);
        if self.memory_quota.is_some_and(|q| q / (self.shards as u64) < share_min) {
            let rule = format!(
                "at least {} KiB per shard with these write buffers: the log's buffers, the cleaner's and 256 KiB of pages",
                share_min.div_ceil(1024)
            );
            return Err(Error::Config { knob: "memory_quota", rule });
        }
        if !(0.1..=100.0).contains(&self.clean_ratio) {
            return Err(Error::Config { knob: "clean_ratio", rule: "from 0.1 to 100".into() });
        }
        if !(1 << 20..=1 << 40).contains(&self.unflushed_tail) {
            return Err(Error::Config { knob: "unflushed_tail", rule: "from 1 MiB to 1 TiB".into() });
        }
        Ok(())
    }

    /// The configuration of shard `index`.
    pub(crate) fn shard(&self, index: usize) -> ShardConfig {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut log = self.log.clone();
        log.cpu = self.pin_threads.then_some(index % cpus);
        ShardConfig {
            tree: self.tree.clone(),
            log,
            clean_ratio: self.clean_ratio,
            unflushed_tail: self.unflushed_tail,
            memory_quota: self.memory_quota.map(|q| q / self.shards as u64),
        }
    }
}
