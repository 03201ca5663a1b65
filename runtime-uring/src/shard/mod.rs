//! One shard: an in-memory [`Tree`] made durable by its own [`Log`], which its cleaner keeps
//! short.
//!
//! Writes: the op record is appended to the log, then applied to the tree, both under one of
//! the shard's write stripes (by key hash), so two writes of one key reach the log in the order
//! they reach the tree; the stripe is released before any wait for durability (the copy into a
//! write buffer waits for I/O only when every buffer is full). Reads go to the tree only.
//!
//! Cleaning (`clean.rs`): when the log since its head grows past `(1 + clean_ratio)` times the
//! live data, the shard's cleaner thread appends the entries still live in the oldest stretch
//! of the log again at its tail (while writes go on), makes them durable, moves the head past
//! the stretch, and gives the file space behind the head back once no reader pinned before can
//! be inside it (epoch-based, on the tree's collector). The decisions and the replay rules are
//! in `helio_core::log::{clean, batch, replay}`. Settings, errors and counters are in
//! `config.rs`, `error.rs` and `stats.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use helio_core::log::cut::{History, Plan};
use helio_core::log::frame::{Kind, Op};
use helio_core::log::replay::{Replay, ReplayStats};
use helio_core::{Guard, Mvcc, Snapshot, Tree, WriteTicket};

use crate::commit::Committer;
use crate::cut::plan_recovery;
use crate::log::{Durability, Log, LogError, LogStats, Recovered};
use crate::striped::Striped;

mod clean;
mod config;
mod error;
mod stats;

pub use config::ShardConfig;
pub use error::ShardError;
pub use stats::{CleanStats, ShardStats};

/// Write stripes per shard: enough that unrelated keys rarely share one.
const STRIPES: usize = 256;

/// What opening a shard found.
#[derive(Clone, Debug)]
pub struct ShardRecovery {
    /// The log's replay.
    pub log: Recovered,
    /// What was applied to the tree.
    pub applied: ReplayStats,
}

struct Inner {
    tree: Tree,
    log: Arc<Log>,
    /// The shard's place in its store.
    index: usize,
    /// Makes writes recoverable across the store's shards (set once the store's shards are
    /// all open).
    committer: OnceLock<Arc<Committer>>,
    /// The write numbers earlier recoveries dropped: records carrying them are dead.
    dropped: History,
    stripes: Box<[Mutex<()>]>,
    clean_ratio: f64,
    /// Candidate bytes the cleaner checks and appends at a time.
    batch_bytes: usize,
    /// Head of the log (cached from the superblock).
    head: AtomicU64,
    clean_requested: AtomicBool,
    stop: AtomicBool,
    wake: (Mutex<()>, Condvar),
    /// One cleaning at a time.
    cleaning: Mutex<()>,
    /// Share of the last stretch cleaned that was live (`f64` bits; 0 before the first).
    head_live_share: AtomicU64,
    /// The cleaner's window onto the segment files, kept between stretches.
    read_buffer: Mutex<Vec<u8>>,
    /// The file space below this address has no readers left: it can be given back.
    released: Arc<AtomicU64>,
    /// `released` as of the last time space was given back (`u64::MAX` before the first).
    given_back: AtomicU64,
    /// One release of file space at a time.
    releasing: Mutex<()>,
    stats: Mutex<CleanStats>,
    puts: Striped,
    deletes: Striped,
    gets: Striped,
    user_bytes: Striped,
    replayed_bytes: u64,
    memory_quota: Option<u64>,
    /// Bytes of entries in the pages, as last measured by the cleaner thread: the live data.
    memory: AtomicU64,
    /// Log bytes the cleaner last found live (0 before the first round that read the whole
    /// log; see `clean_round`). Above `memory` when the log holds live-looking copies the pages
    /// do not count (a key written again with the value it has); the trigger takes the larger
    /// of the two, so such copies cannot keep the cleaner rewriting the log.
    found_live: AtomicU64,
    /// The end of the log when `memory` was last measured.
    measured_at: AtomicU64,
    /// When the quota last made the cleaner consolidate every page.
    last_compact: Mutex<Option<Instant>>,
}

/// One shard, open. Dropping it closes it (errors ignored; call [`Shard::close`] to see them).
pub struct Shard {
    inner: Arc<Inner>,
    cleaner: Option<JoinHandle<()>>,
}

impl Shard {
    /// Opens (or creates) the shard in `dir` on its own: a store of one shard, with its own
    /// snapshot sequence and its recovery history in `dir`.
    pub fn open(dir: &Path, config: &ShardConfig) -> Result<(Self, ShardRecovery), ShardError> {
        let plan = plan_recovery(dir, &[dir.to_path_buf()], &config.log)?;
        let mvcc = Arc::new(Mvcc::starting_at(plan.next_sn));
        let (mut shard, recovery) = Self::recover(dir, config, 0, mvcc.clone(), &plan)?;
        let log = &config.log;
        let committer =
            Committer::new(mvcc, vec![shard.inner.log.clone()], log.disk.is_real(), log.flush_interval);
        shard.start(committer)?;
        Ok((shard, recovery))
    }

    /// Opens (or creates) the shard in `dir`, number `index` of its store, replaying only the
    /// writes `plan` keeps and tagging writes from `mvcc` (shared by the shards of one store,
    /// so that a snapshot is one point in time across them, and numbered past every write in
    /// their logs). It takes writes once [`Shard::start`]ed.
    pub(crate) fn recover(
        dir: &Path,
        config: &ShardConfig,
        index: usize,
        mvcc: Arc<Mvcc>,
        plan: &Plan,
    ) -> Result<(Self, ShardRecovery), ShardError> {
        if !(0.1..=100.0).contains(&config.clean_ratio) {
            return Err(ShardError::Config { knob: "clean_ratio", rule: "from 0.1 to 100" });
        }
        if !(4 << 10..=16 << 20).contains(&config.batch_bytes) {
            return Err(ShardError::Config { knob: "batch_bytes", rule: "from 4 KiB to 16 MiB" });
        }
        let collector = crossbeam_epoch::default_collector().clone();
        let tree = Tree::with_parts(config.tree.clone(), collector, mvcc).map_err(ShardError::TreeConfig)?;
        let opening = Log::prepare(dir, &config.log)?;
        let sb = opening.superblock();
        let mut replay = Replay::with_plan(&tree, plan);
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
        if let Some(e) = failed {
            log.close().ok();
            return Err(ShardError::Replay(e));
        }
        let applied = replay.stats();
        let end = recovered.replayed.end_lsn;
        let inner = Arc::new(Inner {
            tree,
            log: Arc::new(log),
            index,
            committer: OnceLock::new(),
            dropped: plan.history.clone(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            clean_ratio: config.clean_ratio,
            batch_bytes: config.batch_bytes,
            head: AtomicU64::new(sb.head),
            clean_requested: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            cleaning: Mutex::new(()),
            head_live_share: AtomicU64::new(0),
            read_buffer: Mutex::new(Vec::new()),
            // Nothing can be reading below the head at open (a crash or close may have come
            // between a head move and the release of the space behind it).
            released: Arc::new(AtomicU64::new(sb.head)),
            given_back: AtomicU64::new(u64::MAX),
            releasing: Mutex::new(()),
            stats: Mutex::new(CleanStats { head: sb.head, ..CleanStats::default() }),
            puts: Striped::new(),
            deletes: Striped::new(),
            gets: Striped::new(),
            user_bytes: Striped::new(),
            replayed_bytes: recovered.replayed.bytes,
            memory_quota: config.memory_quota,
            memory: AtomicU64::new(0),
            found_live: AtomicU64::new(0),
            measured_at: AtomicU64::new(end),
            last_compact: Mutex::new(None),
        });
        inner.measure_memory();
        inner.release_space();
        Ok((Self { inner, cleaner: None }, ShardRecovery { log: recovered, applied }))
    }

    /// Lets the shard take writes, made recoverable by `committer`, and starts its cleaner.
    pub(crate) fn start(&mut self, committer: Arc<Committer>) -> Result<(), ShardError> {
        let inner = &self.inner;
        assert!(inner.committer.set(committer).is_ok(), "a shard started twice");
        // On a simulated disk the test cleans when it chooses (`clean_now`), so that a seeded
        // run is repeatable; on the real one a cleaner thread does.
        if inner.log.disk_is_real() {
            let inner = inner.clone();
            let dir = inner.log.dir().to_path_buf();
            let thread = std::thread::Builder::new()
                .name("helio-cleaner".into())
                .spawn(move || inner.run_cleaner())
                .map_err(|source| LogError::Io { op: "start the cleaner for", path: dir, source })?;
            self.cleaner = Some(thread);
        }
        Ok(())
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

    /// Makes every earlier write recoverable: on a store's shard, every earlier write to any
    /// of its shards.
    pub fn sync(&self) -> Result<(), ShardError> {
        Ok(self.inner.committer().commit_all(self.inner.index, true)?)
    }

    /// Cleans the whole log now: every entry still live is appended again, the head moves past
    /// everything written before the call, and the file space behind it (spare segments
    /// included) is given back as soon as no reader can be inside it. Returns the counters after
    /// it.
    pub fn checkpoint(&self) -> Result<CleanStats, ShardError> {
        self.inner.clean_all()?;
        Ok(self.clean_stats())
    }

    /// One round of the background cleaner, in the caller's thread: what the cleaner thread
    /// does on each wake. A test hook for shards on a simulated disk, which have no cleaner
    /// thread.
    #[doc(hidden)]
    pub fn clean_now(&self) -> Result<(), ShardError> {
        self.inner.clean_once()
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
            live_bytes: inner.memory.load(Ordering::Relaxed),
            cleanings: clean.stretches,
            cleaned_bytes: clean.cleaned_bytes,
            relocated_bytes: clean.relocated_bytes,
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

    /// Stops the cleaner, makes every write recoverable and closes the log.
    pub fn close(mut self) -> Result<(), ShardError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), ShardError> {
        if let Some(cleaner) = self.cleaner.take() {
            self.inner.stop.store(true, Ordering::Release);
            self.inner.wake();
            cleaner.join().expect("the cleaner panicked");
        }
        // A shard never started took no writes.
        let committed = match self.inner.committer.get() {
            Some(committer) if !self.inner.log.is_closed() => committer.commit_all(self.inner.index, true),
            _ => Ok(()),
        };
        self.inner.release_space();
        let closed = self.inner.log.shut_down();
        committed?;
        Ok(closed?)
    }

    /// Takes the write stripes of `keys` (in ascending order, the order every holder of
    /// several takes them in, so that batches and the cleaner cannot deadlock): no write of
    /// those keys runs while they are held.
    pub(crate) fn lock_stripes<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Vec<MutexGuard<'_, ()>> {
        self.inner.lock_stripes(keys)
    }

    /// Checks a write against the limits and the memory quota without doing it.
    pub(crate) fn check_write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), ShardError> {
        self.inner.check_write(key, value)
    }

    /// Appends one shard's part of a batch (a [`Kind::Batch`] payload); returns the log end
    /// after it. The caller holds the stripes of its keys and the batch's write ticket.
    pub(crate) fn log_batch(&self, payload: &[u8]) -> Result<u64, ShardError> {
        Ok(self.inner.log.append(Kind::Batch, payload, Durability::None)?)
    }

    /// Applies one entry of a batch to the tree, under the batch's ticket.
    pub(crate) fn apply(&self, ticket: &WriteTicket<'_>, key: &[u8], value: Option<&[u8]>, guard: &Guard) {
        self.inner.tree.put_with(ticket, key, value, guard).expect("checked before the batch was logged");
        self.inner.count(key, value);
    }

    /// What follows a write that ended the log at `end`, numbered `sn`: its durability, and
    /// a cleaning if the log has grown enough.
    pub(crate) fn settle(&self, end: u64, sn: u64, durability: Durability) -> Result<(), ShardError> {
        self.inner.settle(end, sn, durability)
    }

    /// The shard's log.
    pub(crate) fn log(&self) -> &Arc<Log> {
        &self.inner.log
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

impl Inner {
    fn write(&self, key: &[u8], value: Option<&[u8]>, durability: Durability) -> Result<(), ShardError> {
        self.check_write(key, value)?;
        let (end, sn) = {
            let _stripe = self.stripe(key).lock().unwrap();
            // Numbered before the append and held until the tree has it: a commit that seals
            // this number finds the record in the log.
            let ticket = self.tree.mvcc().begin_write(self.stripe_index(key));
            let end = self.log.append_op(&Op { sn: ticket.sn(), key, value }, Durability::None)?;
            let guard = self.tree.pin();
            self.tree.put_with(&ticket, key, value, &guard).expect("checked above");
            (end, ticket.sn())
        };
        self.count(key, value);
        self.settle(end, sn, durability)
    }

    fn check_write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), ShardError> {
        self.tree.check_write(key, value).map_err(ShardError::Refused)?;
        // After a batch left half appended no write may follow it (no commit ever will).
        self.committer().check_poison()?;
        if let (Some(quota), Some(_)) = (self.memory_quota, value) {
            let used = self.memory.load(Ordering::Relaxed);
            if used >= quota {
                return Err(ShardError::MemoryQuota { used, quota });
            }
        }
        Ok(())
    }

    fn count(&self, key: &[u8], value: Option<&[u8]>) {
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
    }

    fn settle(&self, end: u64, sn: u64, durability: Durability) -> Result<(), ShardError> {
        match durability {
            Durability::None => {}
            Durability::Buffered => {
                self.log.settle(end, Durability::Buffered)?;
                self.committer().buffered();
            }
            Durability::Sync => self.committer().commit(self.index, sn, true)?,
        }
        if self.log_grown_to(end) && !self.clean_requested.swap(true, Ordering::AcqRel) {
            self.wake();
        }
        Ok(())
    }

    fn committer(&self) -> &Arc<Committer> {
        self.committer.get().expect("a shard takes writes once started")
    }

    fn lock_stripes<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Vec<MutexGuard<'_, ()>> {
        let mut wanted = [false; STRIPES];
        for key in keys {
            wanted[self.stripe_index(key)] = true;
        }
        (0..STRIPES).filter(|&i| wanted[i]).map(|i| self.stripes[i].lock().unwrap()).collect()
    }

    fn stripe(&self, key: &[u8]) -> &Mutex<()> {
        &self.stripes[self.stripe_index(key)]
    }

    fn stripe_index(&self, key: &[u8]) -> usize {
        // FNV-1a: cheap, and spreads short keys well enough for striping.
        let hash = key
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        (hash % STRIPES as u64) as usize
    }

    fn wake(&self) {
        let _guard = self.wake.0.lock().unwrap();
        self.wake.1.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write between its log append and its tree update holds its key's stripe; the cleaner
    /// must wait for it. Were the cleaner to check the old value then, it would move the old
    /// entry behind the new op in the log and drop the new op as dead: the reopened shard would
    /// hold the old value. Both kinds of stretch: a background round's (two passes) and a full
    /// cleaning's (one).
    #[test]
    fn the_cleaner_waits_for_a_write_between_its_log_append_and_its_tree_update() {
        for full in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (shard, _) = Shard::open(dir.path(), &ShardConfig::default()).unwrap();
            shard.put(b"k", b"old", Durability::None).unwrap();
            let inner = &shard.inner;
            let (appended_tx, appended_rx) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _stripe = inner.stripe(b"k").lock().unwrap();
                    inner
                        .log
                        .append_op(&Op { sn: 0, key: b"k", value: Some(b"new") }, Durability::None)
                        .unwrap();
                    appended_tx.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    inner.tree.put(b"k", b"new", &inner.tree.pin()).unwrap();
                });
                appended_rx.recv().unwrap();
                let _one = inner.cleaning.lock().unwrap();
                let stretch = inner.clean_stretch(inner.log.appended(), full).unwrap();
                assert!(stretch.entries > 0, "full {full}: nothing moved");
            });
            shard.close().unwrap();
            let (shard, _) = Shard::open(dir.path(), &ShardConfig::default()).unwrap();
            assert_eq!(shard.get(b"k").unwrap().as_deref(), Some(&b"new"[..]), "full {full}");
        }
    }

    /// An entry is dead because the tree holds a newer write of its key; the head may move past
    /// the entry only once that newer write is durable, or a crash would lose both (the key
    /// would come back absent, a state it never had).
    #[test]
    fn the_head_moves_past_a_dead_entry_only_once_its_successor_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (shard, _) = Shard::open(dir.path(), &ShardConfig::default()).unwrap();
        shard.put(b"k", b"v1", Durability::Sync).unwrap();
        let inner = &shard.inner;
        let end = inner.log.appended();
        shard.put(b"k", b"v2", Durability::None).unwrap();
        let successor = inner.log.appended();
        assert!(inner.log.durable_lsn() < successor, "the second write is not durable yet");
        let _one = inner.cleaning.lock().unwrap();
        let stretch = inner.clean_stretch(end, false).unwrap();
        assert!(stretch.read > 0 && stretch.entries == 0, "the head moved past the dead entry: {stretch:?}");
        assert!(inner.log.durable_lsn() >= successor, "the head moved before the newer write was durable");
    }
}
