//! One shard: an in-memory [`Tree`] made durable by its own [`Log`], with checkpoints that let
//! the log be cleaned.
//!
//! Writes: the op record is appended to the log, then applied to the tree, both under one of
//! the shard's write stripes (by key hash), so two writes of one key reach the log in the order
//! they reach the tree; the stripe is released before any wait for durability, and no lock is
//! held across I/O. Reads go to the tree only.
//!
//! Cleaning: when the log since its head grows past `(1 + clean_ratio)` times the data of the
//! last checkpoint, the shard's cleaner thread writes a new checkpoint (every live entry, as
//! page records, while writes go on), makes it durable, moves the head to the checkpoint's
//! cover address, and deletes the segments below it once no reader pinned before that can be
//! inside them (epoch-based, on the tree's collector). The format and the replay rules are in
//! `helio_core::log::checkpoint`.

use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use helio_core::log::checkpoint::{begin_payload, end_payload, PageWriter, Replay, ReplayError, ReplayStats};
use helio_core::log::frame::{frame_bytes, Kind, Op};
use helio_core::{ConfigError, Error, Mvcc, Snapshot, Tree, TreeConfig};

use crate::log::{Durability, Log, LogConfig, LogError, LogStats, Recovered};
use crate::striped::Striped;

/// Write stripes per shard: enough that unrelated keys rarely share one.
const STRIPES: usize = 256;

/// Entries a checkpoint reads under one epoch guard.
const SCAN_CHUNK: usize = 4096;

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
    /// swapped out, a full shard refuses puts ([`ShardError::MemoryQuota`]) and still takes
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

/// Why a shard operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShardError {
    /// The write is over the configured limits; nothing was written.
    Refused(Error),
    /// A tree setting is out of its limits.
    TreeConfig(ConfigError),
    /// A shard setting is out of its limits.
    Config {
        /// The setting.
        knob: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// The log failed (see [`LogError`]).
    Log(LogError),
    /// A record read back from the log could not be applied; nothing was changed on disk.
    Replay(ReplayError),
    /// The shard holds its memory quota of entries: puts are refused until deletes free room.
    MemoryQuota {
        /// Bytes of entries held (as last measured).
        used: u64,
        /// The quota.
        quota: u64,
    },
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardError::Refused(e) => e.fmt(f),
            ShardError::TreeConfig(e) => e.fmt(f),
            ShardError::Config { knob, rule } => write!(f, "shard setting {knob}: must be {rule}"),
            ShardError::Log(e) => e.fmt(f),
            ShardError::Replay(e) => write!(f, "replaying the log: {e}"),
            ShardError::MemoryQuota { used, quota } => {
                write!(f, "the shard holds {used} bytes of entries, at its memory quota of {quota}; delete to make room")
            }
        }
    }
}

impl std::error::Error for ShardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShardError::Refused(e) => Some(e),
            ShardError::TreeConfig(e) => Some(e),
            ShardError::Log(e) => Some(e),
            ShardError::Replay(e) => Some(e),
            ShardError::Config { .. } | ShardError::MemoryQuota { .. } => None,
        }
    }
}

impl From<LogError> for ShardError {
    fn from(e: LogError) -> Self {
        ShardError::Log(e)
    }
}

/// What opening a shard found.
#[derive(Clone, Debug)]
pub struct ShardRecovery {
    /// The log's replay.
    pub log: Recovered,
    /// What was applied to the tree.
    pub applied: ReplayStats,
}

/// A shard's counters (see [`Shard::stats`]); sums over shards with [`ShardStats::plus`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardStats {
    /// `put` calls.
    pub puts: u64,
    /// `delete` calls.
    pub deletes: u64,
    /// `get` calls.
    pub gets: u64,
    /// Key and value bytes written by users.
    pub user_bytes: u64,
    /// Bytes written to segment files: log blocks (checkpoints included) and the zeros
    /// written ahead of them.
    pub device_bytes_written: u64,
    /// Bytes of log read at open (replay).
    pub device_bytes_read: u64,
    /// Log bytes from the head to the end: what the log holds on disk.
    pub log_bytes: u64,
    /// Log bytes of the last checkpoint's pages: about the live data.
    pub live_bytes: u64,
    /// Checkpoints written (each one cleans the log behind it).
    pub checkpoints: u64,
    /// Segment files deleted by cleaning.
    pub segments_deleted: u64,
    /// Page consolidations in the tree.
    pub consolidations: u64,
    /// Page splits.
    pub splits: u64,
    /// Page merges.
    pub merges: u64,
    /// Pages in the index.
    pub pages: u64,
    /// Bytes of entries the pages hold in memory (see `Tree::page_bytes`; allocator and index
    /// overhead not included).
    pub memory_bytes: u64,
    /// The memory quota (0: none).
    pub memory_quota: u64,
    /// I/O operations submitted to the ring (writes and flushes).
    pub io_submitted: u64,
    /// I/O operations completed.
    pub io_completed: u64,
    /// Shards whose log writes with O_DIRECT.
    pub direct_io_shards: u64,
}

impl ShardStats {
    /// Device bytes written per byte users wrote.
    pub fn write_amplification(&self) -> f64 {
        self.device_bytes_written as f64 / self.user_bytes.max(1) as f64
    }

    /// Share of the log that is not live data (0 when the log holds only its checkpoint).
    pub fn fragmentation(&self) -> f64 {
        1.0 - (self.live_bytes.min(self.log_bytes) as f64 / self.log_bytes.max(1) as f64)
    }

    /// The field-by-field sum of two shards' counters.
    pub fn plus(&self, other: &ShardStats) -> ShardStats {
        ShardStats {
            puts: self.puts + other.puts,
            deletes: self.deletes + other.deletes,
            gets: self.gets + other.gets,
            user_bytes: self.user_bytes + other.user_bytes,
            device_bytes_written: self.device_bytes_written + other.device_bytes_written,
            device_bytes_read: self.device_bytes_read + other.device_bytes_read,
            log_bytes: self.log_bytes + other.log_bytes,
            live_bytes: self.live_bytes + other.live_bytes,
            checkpoints: self.checkpoints + other.checkpoints,
            segments_deleted: self.segments_deleted + other.segments_deleted,
            consolidations: self.consolidations + other.consolidations,
            splits: self.splits + other.splits,
            merges: self.merges + other.merges,
            pages: self.pages + other.pages,
            memory_bytes: self.memory_bytes + other.memory_bytes,
            memory_quota: self.memory_quota + other.memory_quota,
            io_submitted: self.io_submitted + other.io_submitted,
            io_completed: self.io_completed + other.io_completed,
            direct_io_shards: self.direct_io_shards + other.direct_io_shards,
        }
    }
}

/// Cleaning counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Log bytes of the last checkpoint's pages (about the live data).
    pub last_checkpoint_bytes: u64,
    /// Entries the last checkpoint wrote.
    pub last_checkpoint_entries: u64,
    /// Segment files deleted.
    pub segments_deleted: u64,
    /// The log's head.
    pub head: u64,
}

struct Inner {
    tree: Tree,
    log: Log,
    stripes: Box<[Mutex<()>]>,
    clean_ratio: f64,
    page_bytes: usize,
    /// Head of the log (cached from the superblock).
    head: AtomicU64,
    /// Log bytes of the last checkpoint (or of the replayed log before the first).
    live_bytes: AtomicU64,
    clean_requested: AtomicBool,
    stop: AtomicBool,
    wake: (Mutex<()>, Condvar),
    /// One checkpoint at a time.
    checkpointing: Mutex<()>,
    /// Segments retired by a checkpoint whose readers' epochs have passed: safe to delete.
    deletable: Arc<Mutex<Vec<u64>>>,
    stats: Mutex<CleanStats>,
    puts: Striped,
    deletes: Striped,
    gets: Striped,
    user_bytes: Striped,
    replayed_bytes: u64,
    memory_quota: Option<u64>,
    /// Bytes of entries in the pages, as last measured by the cleaner thread.
    memory: AtomicU64,
    /// When the quota last made the cleaner consolidate every page.
    last_compact: Mutex<Option<Instant>>,
}

/// One shard, open. Dropping it closes it (errors ignored; call [`Shard::close`] to see them).
pub struct Shard {
    inner: Arc<Inner>,
    cleaner: Option<JoinHandle<()>>,
}

impl Shard {
    /// Opens (or creates) the shard in `dir` with its own snapshot sequence.
    pub fn open(dir: &Path, config: &ShardConfig) -> Result<(Self, ShardRecovery), ShardError> {
        Self::open_with(dir, config, Arc::new(Mvcc::new()))
    }

    /// Opens (or creates) the shard in `dir`, tagging writes from `mvcc` (shared by the shards
    /// of one store, so that a snapshot is one point in time across them).
    pub fn open_with(
        dir: &Path,
        config: &ShardConfig,
        mvcc: Arc<Mvcc>,
    ) -> Result<(Self, ShardRecovery), ShardError> {
        if !(0.1..=100.0).contains(&config.clean_ratio) {
            return Err(ShardError::Config { knob: "clean_ratio", rule: "from 0.1 to 100" });
        }
        if !(4 << 10..=16 << 20).contains(&config.page_bytes) {
            return Err(ShardError::Config { knob: "page_bytes", rule: "from 4 KiB to 16 MiB" });
        }
        let collector = crossbeam_epoch::default_collector().clone();
        let tree = Tree::with_parts(config.tree.clone(), collector, mvcc).map_err(ShardError::TreeConfig)?;
        let opening = Log::prepare(dir, &config.log)?;
        let sb = opening.superblock();
        let mut replay = Replay::new(&tree, sb.checkpoint);
        let mut failed = None;
        let mut guard = tree.pin();
        let mut since_pin = 0u32;
        let (log, recovered) = opening.replay(|kind, payload| {
            if failed.is_none() {
                failed = replay.apply(kind, payload, &guard).err();
            }
            // Re-pin now and then, so that replay does not hold back memory reclamation.
            since_pin += 1;
            if since_pin == 4096 {
                since_pin = 0;
                guard.repin();
            }
        })?;
        drop(guard);
        let applied = match failed.map_or_else(|| replay.finish(), Err) {
            Ok(applied) => applied,
            Err(e) => {
                log.close().ok();
                return Err(ShardError::Replay(e));
            }
        };
        let end = recovered.replayed.end_lsn;
        let inner = Arc::new(Inner {
            tree,
            log,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            clean_ratio: config.clean_ratio,
            page_bytes: config.page_bytes,
            head: AtomicU64::new(sb.head),
            live_bytes: AtomicU64::new(end - sb.head),
            clean_requested: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            checkpointing: Mutex::new(()),
            deletable: Arc::new(Mutex::new(Vec::new())),
            stats: Mutex::new(CleanStats { head: sb.head, ..CleanStats::default() }),
            puts: Striped::new(),
            deletes: Striped::new(),
            gets: Striped::new(),
            user_bytes: Striped::new(),
            replayed_bytes: recovered.replayed.bytes,
            memory_quota: config.memory_quota,
            memory: AtomicU64::new(0),
            last_compact: Mutex::new(None),
        });
        inner.measure_memory();
        // Segments a checkpoint retired before a crash or close: nothing can be reading them now.
        let dead = inner.log.segments().list().unwrap_or_default();
        let first_live = inner.log.segments().index_of(sb.head);
        for index in dead.into_iter().filter(|&i| i < first_live) {
            let _ = inner.log.segments().remove(index);
        }
        let cleaner = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("helio-cleaner".into())
                .spawn(move || inner.run_cleaner())
                .map_err(|source| LogError::Io {
                    op: "start the cleaner for",
                    path: dir.to_path_buf(),
                    source,
                })?
        };
        Ok((Self { inner, cleaner: Some(cleaner) }, ShardRecovery { log: recovered, applied }))
    }

    /// Sets `key` to `value` with the given durability.
    pub fn put(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<(), ShardError> {
        self.inner.write(key, Some(value), durability)
    }

    /// Removes `key` with the given durability.
    pub fn delete(&self, key: &[u8], durability: Durability) -> Result<(), ShardError> {
        self.inner.write(key, None, durability)
    }

    /// The latest value of `key`, copied out.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ShardError> {
        self.inner.gets.add(1);
        let guard = self.inner.tree.pin();
        let value = self.inner.tree.get(key, &guard).map_err(ShardError::Refused)?;
        Ok(value.map(<[u8]>::to_vec))
    }

    /// The in-memory tree (for reads, ranges and snapshots).
    pub fn tree(&self) -> &Tree {
        &self.inner.tree
    }

    /// A point-in-time view of the shard.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.tree.snapshot()
    }

    /// Makes every earlier write durable.
    pub fn sync(&self) -> Result<(), ShardError> {
        Ok(self.inner.log.sync()?)
    }

    /// Writes a checkpoint now and cleans the log behind it (what the cleaner does when the log
    /// has grown). Returns the counters after it.
    pub fn checkpoint(&self) -> Result<CleanStats, ShardError> {
        self.inner.checkpoint()?;
        self.inner.delete_retired();
        Ok(self.clean_stats())
    }

    /// Cleaning counters.
    pub fn clean_stats(&self) -> CleanStats {
        self.inner.stats.lock().unwrap().clone()
    }

    /// The log's counters.
    pub fn log_stats(&self) -> LogStats {
        self.inner.log.stats()
    }

    /// The shard's counters now.
    pub fn stats(&self) -> ShardStats {
        let inner = &self.inner;
        let log = inner.log.stats();
        let clean = self.clean_stats();
        let tree = inner.tree.stats();
        ShardStats {
            puts: inner.puts.sum(),
            deletes: inner.deletes.sum(),
            gets: inner.gets.sum(),
            user_bytes: inner.user_bytes.sum(),
            device_bytes_written: log.device_bytes + log.zeroed_bytes,
            device_bytes_read: inner.replayed_bytes,
            log_bytes: inner.log.appended() - clean.head,
            live_bytes: inner.live_bytes.load(Ordering::Relaxed),
            checkpoints: clean.checkpoints,
            segments_deleted: clean.segments_deleted,
            consolidations: tree.consolidations,
            splits: tree.splits,
            merges: tree.merges,
            pages: tree.pages,
            memory_bytes: inner.tree.page_bytes(&inner.tree.pin()),
            memory_quota: inner.memory_quota.unwrap_or(0),
            io_submitted: log.writes + log.syncs,
            io_completed: log.completions,
            direct_io_shards: u64::from(log.direct_io),
        }
    }

    /// Stops the cleaner and closes the log (everything durable).
    pub fn close(mut self) -> Result<(), ShardError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), ShardError> {
        if let Some(cleaner) = self.cleaner.take() {
            self.inner.stop.store(true, Ordering::Release);
            self.inner.wake();
            cleaner.join().expect("the cleaner panicked");
        }
        self.inner.delete_retired();
        Ok(self.inner.log.shut_down()?)
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

impl Inner {
    fn write(&self, key: &[u8], value: Option<&[u8]>, durability: Durability) -> Result<(), ShardError> {
        self.tree.check_write(key, value).map_err(ShardError::Refused)?;
        if let (Some(quota), Some(_)) = (self.memory_quota, value) {
            let used = self.memory.load(Ordering::Relaxed);
            if used >= quota {
                return Err(ShardError::MemoryQuota { used, quota });
            }
        }
        let op = Op { sn: 0, key, value };
        let end = {
            let _stripe = self.stripe(key).lock().unwrap();
            let end = self.log.append_op(&op, Durability::None)?;
            let guard = self.tree.pin();
            match value {
                Some(value) => self.tree.put(key, value, &guard),
                None => self.tree.delete(key, &guard),
            }
            .expect("checked above");
            end
        };
        match value {
            Some(value) => {
                self.puts.add(1);
                self.user_bytes.add((key.len() + value.len()) as u64);
            }
            None => {
                self.deletes.add(1);
                self.user_bytes.add(key.len() as u64);
            }
        }
        self.log.settle(end, durability)?;
        if self.needs_cleaning() && !self.clean_requested.swap(true, Ordering::AcqRel) {
            self.wake();
        }
        Ok(())
    }

    fn stripe(&self, key: &[u8]) -> &Mutex<()> {
        // FNV-1a: cheap, and spreads short keys well enough for striping.
        let hash = key
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        &self.stripes[(hash % STRIPES as u64) as usize]
    }

    /// Log bytes past the head that start a cleaning.
    fn clean_trigger(&self) -> u64 {
        let live = self.live_bytes.load(Ordering::Relaxed) as f64;
        let floor = 2 * self.log.segments().segment_bytes();
        (((1.0 + self.clean_ratio) * live) as u64).max(floor)
    }

    fn wake(&self) {
        let _guard = self.wake.0.lock().unwrap();
        self.wake.1.notify_all();
    }

    /// Measures the bytes of entries the pages hold (for the quota and the stats). At the quota,
    /// first consolidates every page (at most once a second): deleted entries and old versions
    /// leave memory only when their page is consolidated, and a page with a few deletes may not
    /// reach its chain threshold for a long time.
    fn measure_memory(&self) {
        let guard = self.tree.pin();
        let mut used = self.tree.page_bytes(&guard);
        if self.memory_quota.is_some_and(|quota| used >= quota) {
            let mut last = self.last_compact.lock().unwrap();
            if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                self.tree.compact(&guard);
                used = self.tree.page_bytes(&guard);
                *last = Some(Instant::now());
            }
        }
        self.memory.store(used, Ordering::Relaxed);
    }

    /// Whether the log past its head has grown enough to clean.
    fn needs_cleaning(&self) -> bool {
        self.log.appended() - self.head.load(Ordering::Acquire) > self.clean_trigger()
    }

    fn run_cleaner(&self) {
        while !self.stop.load(Ordering::Acquire) {
            self.clean_requested.store(false, Ordering::Release);
            // Checked here, not only by writers: writes made during a checkpoint may already
            // call for the next one.
            let mut failed = false;
            if self.needs_cleaning() {
                // A failed checkpoint leaves the log as it was; a poisoned log also fails every
                // later write, which is where a user sees the error.
                if let Err(e) = self.checkpoint() {
                    ::log::warn!("{}: checkpoint failed: {e}", self.log.dir().display());
                    failed = true;
                }
            }
            self.delete_retired();
            self.measure_memory();
            let guard = self.wake.0.lock().unwrap();
            let more = !failed && self.needs_cleaning();
            if !more && !self.clean_requested.load(Ordering::Acquire) && !self.stop.load(Ordering::Acquire) {
                let _ = self.wake.1.wait_timeout(guard, Duration::from_millis(50)).unwrap();
            }
        }
    }

    /// Writes a checkpoint, makes it durable, moves the head, and retires the segments below.
    fn checkpoint(&self) -> Result<(), ShardError> {
        let _one = self.checkpointing.lock().unwrap();
        // With every stripe held, no write is between its log append and its tree update: every
        // op below `cover` is in the tree, and the snapshot holds exactly those and earlier.
        let (cover, snapshot) = {
            let _all: Vec<_> = self.stripes.iter().map(|s| s.lock().unwrap()).collect();
            (self.log.appended(), self.tree.snapshot())
        };
        let id = self.log.append(Kind::CheckpointBegin, &begin_payload(cover), Durability::None)?
            - frame_bytes(8) as u64;
        let mut pages = PageWriter::new(id, self.page_bytes);
        let (mut written, mut bytes) = (0u64, 0u64);
        let mut append_page = |page: Vec<u8>| -> Result<(), LogError> {
            self.log.append(Kind::Page, &page, Durability::None)?;
            written += 1;
            bytes += frame_bytes(page.len()) as u64;
            Ok(())
        };
        // In chunks, each under its own short epoch guard: appending may wait for I/O, and a
        // guard held across the whole scan would hold back memory reclamation everywhere.
        let mut from = Bound::Unbounded;
        loop {
            let mut full = Vec::new();
            let mut last: Option<Vec<u8>> = None;
            {
                let guard = self.tree.pin();
                let range = (from.clone(), Bound::Unbounded);
                let mut read = 0;
                for (key, value) in self.tree.range::<Vec<u8>, _>(&snapshot, range, &guard).take(SCAN_CHUNK) {
                    full.extend(pages.push(key, value));
                    read += 1;
                    if read == SCAN_CHUNK {
                        last = Some(key.to_vec());
                    }
                }
            }
            for page in full {
                append_page(page)?;
            }
            match last {
                Some(key) => from = Bound::Excluded(key),
                None => break,
            }
        }
        if let Some(page) = pages.finish() {
            append_page(page)?;
        }
        self.log.append(Kind::CheckpointEnd, &end_payload(id, pages.entries(), written), Durability::Sync)?;
        let dead = self.log.advance_head(cover, id)?;
        self.head.store(cover, Ordering::Release);
        // The pages' bytes (not the ops interleaved with them) measure the live data.
        self.live_bytes.store(bytes, Ordering::Relaxed);
        {
            let mut stats = self.stats.lock().unwrap();
            stats.checkpoints += 1;
            stats.last_checkpoint_bytes = bytes;
            stats.last_checkpoint_entries = pages.entries();
            stats.head = cover;
        }
        // Readers pinned now may still be reading those segments: delete them only once every
        // such reader has unpinned.
        let deletable = self.deletable.clone();
        let guard = self.tree.pin();
        guard.defer(move || deletable.lock().unwrap().extend(dead));
        guard.flush();
        Ok(())
    }

    /// Deletes the segments whose readers are gone.
    fn delete_retired(&self) {
        // Pinning and flushing moves the epoch on, so deferred retirements come due.
        self.tree.pin().flush();
        let ready: Vec<u64> = std::mem::take(&mut *self.deletable.lock().unwrap());
        let mut deleted = 0;
        for index in ready {
            if self.log.segments().remove(index).is_ok() {
                deleted += 1;
            }
        }
        self.stats.lock().unwrap().segments_deleted += deleted;
    }
}
