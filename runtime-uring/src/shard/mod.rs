//! One shard: a [`Tree`] of pages, made durable by its own [`Log`] (op records for each
//! write, page records for the pages), kept short by its cleaner and within its memory quota
//! by swapping pages out.
//!
//! Writes: the op record is appended to the log, then applied to the tree, both under one of
//! the shard's write stripes (by key hash) and one write ticket, so two writes of one key reach
//! the log in the order they reach the tree, and a snapshot's seal waits for every write it
//! covers; the stripe is released before any wait for durability. Reads go to the tree, and to
//! the log for pages swapped out (`pages.rs`).
//!
//! Page flushes and swapping (`flush.rs`), cleaning (`clean.rs`): the shard's cleaner thread
//! writes pages as page records in rounds, swaps pages out above the quota's high watermark,
//! and cleans the oldest stretch of the log when the log has grown past `(1 + clean_ratio)`
//! times the live data. An open reads the page table file, folds the page records after it and
//! replays only the op records after the last round began (see `docs/pages.md`). Settings,
//! errors and counters are in `config.rs`, `error.rs` and `stats.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use helio_core::log::cut::Plan;
use helio_core::log::frame::{Kind, Op};
use helio_core::log::page::{PageRecord, PageTable, TableMark};
use helio_core::log::replay::{Replay, ReplayStats};
use helio_core::{Guard, Mvcc, PageTile, Snapshot, Tree, WriteTicket};

use budget::Budget;

use crate::commit::Committer;
use crate::cut::plan_recovery;
use crate::disk::{read_file, DiskRef};
use crate::log::{Durability, Log, LogConfig, LogError, LogStats, Recovered};
use crate::segments::Segments;
use crate::striped::Striped;

mod budget;
mod check;
mod clean;
mod config;
mod error;
mod flush;
mod pages;
mod pipeline;
mod stats;

use flush::{Flusher, TABLE_FILE};
use pages::LogPages;

pub use check::{check_pages, PagesChecked};
pub use config::{ShardConfig, UNFLUSHED_TAIL_DEFAULT};
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
    /// Stretches of the key space the open found in page records (their pages start swapped
    /// out); 0 for a shard never flushed.
    pub pages: u64,
}

struct Inner {
    tree: Tree,
    log: Arc<Log>,
    /// The disk the shard's files are on.
    disk: DiskRef,
    /// Where the tree reads swapped-out pages back from.
    pages: Arc<LogPages>,
    /// Page flushes and swapping: one at a time.
    flusher: Mutex<Flusher>,
    /// Writers over the quota or past the tail's bound wait on this for the cleaner.
    caught_up: (Mutex<()>, Condvar),
    /// The shard's place in its store.
    index: usize,
    /// Makes writes recoverable across the store's shards (set once the store's shards are
    /// all open).
    committer: OnceLock<Arc<Committer>>,
    stripes: Box<[Mutex<()>]>,
    clean_ratio: f64,
    /// Head of the log (cached from the superblock).
    head: AtomicU64,
    clean_requested: AtomicBool,
    stop: AtomicBool,
    wake: (Mutex<()>, Condvar),
    /// One cleaning at a time.
    cleaning: Mutex<()>,
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
    /// Batches the store's scans and ranges took from this shard (with `gets`, what tells the
    /// cleaner that users read).
    scan_batches: Striped,
    user_bytes: Striped,
    /// Log bytes the open read: the plan's pass, the page records' fold, the replay.
    replayed_bytes: u64,
    /// The share of the memory quota (see [`ShardConfig::memory_quota`]).
    memory_share: Option<u64>,
    /// Bytes the pages may hold (what the swapper keeps them under), and the buffers' sizes,
    /// under that share.
    budget: Budget,
    /// See [`ShardConfig::unflushed_tail`].
    unflushed_tail: u64,
    /// Payload bytes of the page records the table file last written names: the live data
    /// of the cleaning trigger (op records die once a round covers them).
    table_bytes: AtomicU64,
    /// Where the table file last written says recovery starts reading the log.
    covered_to: AtomicU64,
}

/// The smallest share of a memory quota a shard whose log is configured by `log` takes (see
/// `budget.rs`).
pub(crate) fn quota_share_min(log: &LogConfig) -> u64 {
    Budget::share_min(log.log_buffer_bytes())
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
        let (plan, scanned) = plan_recovery(dir, &[dir.to_path_buf()], &config.log)?;
        let mvcc = Arc::new(Mvcc::starting_at(plan.next_sn));
        let (mut shard, recovery) = Self::recover(dir, config, 0, mvcc.clone(), &plan, scanned[0])?;
        let log = &config.log;
        let committer =
            Committer::new(mvcc, vec![shard.inner.log.clone()], log.disk.is_real(), log.flush_interval);
        shard.start(committer)?;
        Ok((shard, recovery))
    }

    /// Opens (or creates) the shard in `dir`, number `index` of its store, replaying only the
    /// writes `plan` keeps and tagging writes from `mvcc` (shared by the shards of one store,
    /// so that a snapshot is one point in time across them, and numbered past every write in
    /// their logs). It takes writes once [`Shard::start`]ed. `scanned`: the bytes of its log
    /// the plan's pass read (counted among the bytes the open read).
    pub(crate) fn recover(
        dir: &Path,
        config: &ShardConfig,
        index: usize,
        mvcc: Arc<Mvcc>,
        plan: &Plan,
        scanned: u64,
    ) -> Result<(Self, ShardRecovery), ShardError> {
        if !(0.1..=100.0).contains(&config.clean_ratio) {
            return Err(ShardError::Config { knob: "clean_ratio", rule: "from 0.1 to 100" });
        }
        if !(1 << 20..=1 << 40).contains(&config.unflushed_tail) {
            return Err(ShardError::Config { knob: "unflushed_tail", rule: "from 1 MiB to 1 TiB" });
        }
        let opening = Log::prepare(dir, &config.log)?;
        let sb = opening.superblock();
        let (mark, table, pages_read) = read_pages(dir, config, plan)?;
        let start = mark.position;
        let pages =
            Arc::new(LogPages::new(Segments::on(config.log.disk.clone(), dir, sb.segment_bytes), sb.salt));
        let tiles: Vec<PageTile> = table
            .tiles()
            .map(|(lo, hi, entry)| PageTile {
                lo: lo.into(),
                hi: hi.map(Into::into),
                chain: entry.map_or_else(Vec::new, |e| e.chain.iter().map(|link| link.addr).collect()),
                sn: entry.map_or(0, |e| e.sn),
                items: entry.map_or(0, |e| e.items),
            })
            .collect();
        let collector = crossbeam_epoch::default_collector().clone();
        let tree = Tree::with_pages(config.tree.clone(), collector, mvcc, pages.clone(), &tiles)
            .map_err(ShardError::TreeConfig)?;
        let mut replay = Replay::with_pages(&tree, plan, &table);
        let mut failed = None;
        let mut guard = tree.pin();
        let mut since_pin = 0u32;
        let (log, recovered) = opening.replay_from(start, |_, kind, payload| {
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
        let stretches = table.len() as u64;
        let table_bytes = AtomicU64::new(table.live_bytes());
        let budget = Budget::of(config.memory_quota, config.log.log_buffer_bytes());
        let inner = Arc::new(Inner {
            tree,
            log: Arc::new(log),
            disk: config.log.disk.clone(),
            pages,
            flusher: Mutex::new(Flusher::new(table, mark)),
            caught_up: (Mutex::new(()), Condvar::new()),
            index,
            committer: OnceLock::new(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            clean_ratio: config.clean_ratio,
            head: AtomicU64::new(sb.head),
            clean_requested: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            cleaning: Mutex::new(()),
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
            scan_batches: Striped::new(),
            user_bytes: Striped::new(),
            replayed_bytes: scanned + pages_read + recovered.replayed.bytes,
            memory_share: config.memory_quota,
            budget,
            unflushed_tail: config.unflushed_tail,
            table_bytes,
            covered_to: AtomicU64::new(start),
        });
        inner.release_space();
        Ok((Self { inner, cleaner: None }, ShardRecovery { log: recovered, applied, pages: stretches }))
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

    /// The latest value of `key`, copied out (read from the log if its page is swapped out, and
    /// brought back into memory while the shard is below its quota's low watermark).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ShardError> {
        self.get_at(key, None)
    }

    /// The value of `key` as `snapshot` sees it (the latest for `None`), copied out.
    pub fn get_at(&self, key: &[u8], snapshot: Option<&Snapshot>) -> Result<Option<Vec<u8>>, ShardError> {
        self.inner.gets.add(1);
        let mut guard = self.inner.tree.pin();
        let install = self.inner.room_to_swap_in();
        self.inner.tree.get_owned(key, snapshot, install, &mut guard).map_err(refused_or_page)
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
    /// does on a wake that finds the log as it was at the last (the whole log counts for the
    /// trigger). A test hook for shards on a simulated disk, which have no cleaner thread.
    #[doc(hidden)]
    pub fn clean_now(&self) -> Result<(), ShardError> {
        self.inner.clean_once(Some(clean::Activity::Resting), &mut None)
    }

    /// Until called again with `None`, every capture of the page whose low key is `low`
    /// reports it busy, as one of a page frozen by a merge or written to all the while does
    /// (see `helio_core::Captured::Busy`): flush rounds stay incomplete and relocations leave
    /// its records named. A test hook: no test can make a real page stay busy on cue.
    #[doc(hidden)]
    pub fn hold_busy(&self, low: Option<&[u8]>) {
        self.inner.flusher.lock().unwrap().held_busy = low.map(Box::from);
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
            live_bytes: inner.table_bytes.load(Ordering::Relaxed),
            cleanings: clean.stretches,
            cleaned_bytes: clean.cleaned_bytes,
            relocated_bytes: clean.relocated_bytes,
            segments_deleted: clean.segments_deleted,
            consolidations: tree.consolidations,
            splits: tree.splits,
            merges: tree.merges,
            pages: tree.pages,
            memory_bytes: inner.tree.resident_bytes(),
            swap_outs: tree.swap_outs,
            swap_ins: tree.swap_ins,
            page_reads: tree.page_reads,
            page_read_bytes: inner.pages.read_bytes.load(Ordering::Relaxed),
            page_bytes_written: clean.page_bytes_written,
            round_page_bytes: clean.round_page_bytes,
            swap_page_bytes: clean.swap_page_bytes,
            image_bytes: clean.image_bytes,
            swap_flushes: clean.swap_flushes,
            swap_misses: clean.swap_misses,
            rounds_incomplete: clean.rounds_incomplete,
            stretches_held: clean.stretches_held,
            writer_waits: clean.writer_waits,
            writer_wait_micros: clean.writer_wait_micros,
            memory_quota: inner.memory_share.unwrap_or(0),
            buffer_bytes: inner.budget.buffers,
            unflushed_bytes: inner.log.appended().saturating_sub(inner.covered_to.load(Ordering::Relaxed)),
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
        // A shard never started took no writes. A clean close writes every dirty page and the
        // page table, so that the next open reads only what comes after.
        let committed = match self.inner.committer.get() {
            Some(committer) if !self.inner.log.is_closed() => {
                let flushed = if self.inner.log.poisoned().is_none() {
                    self.inner.flush_round(&mut self.inner.flusher.lock().unwrap(), false)
                } else {
                    Ok(())
                };
                flushed.and(committer.commit_all(self.inner.index, true).map_err(ShardError::from))
            }
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

    /// Applies one entry of a batch to the tree, under the batch's ticket. True if the page it
    /// landed on is due a consolidation that reads the log: call [`Self::consolidate`] with the
    /// key once the ticket is dropped and the stripes released.
    pub(crate) fn apply(
        &self,
        ticket: &WriteTicket<'_>,
        key: &[u8],
        value: Option<&[u8]>,
        guard: &Guard,
    ) -> bool {
        let tree = &self.inner.tree;
        let deferred =
            tree.put_deferring_reads(ticket, key, value, guard).expect("checked before the batch was logged");
        self.inner.count(key, value);
        deferred
    }

    /// Consolidates the page holding `key`, reading from the log with no epoch pin held: what
    /// a write left to its caller (see `helio_core::Tree::put_deferring_reads`).
    pub(crate) fn consolidate(&self, key: &[u8]) {
        self.inner.consolidate(key);
    }

    /// What follows a write that ended the log at `end`, numbered `sn`: its durability, and
    /// a cleaning if the log has grown enough.
    pub(crate) fn settle(&self, end: u64, sn: u64, durability: Durability) -> Result<(), ShardError> {
        self.inner.settle(end, sn, durability)
    }

    /// Waits a little for the cleaner if the shard is over its memory quota (see
    /// [`ShardConfig::memory_quota`]) or its unflushed tail is past its bound (see
    /// [`ShardConfig::unflushed_tail`]): what a writer whose record ended the log at `end` does,
    /// holding no lock.
    pub(crate) fn slow_down_writer(&self, end: u64) {
        self.inner.slow_down_writer(end);
    }

    /// Waits a little for the swapper if the shard is over its memory quota (see
    /// [`ShardConfig::memory_quota`]): what a reader that brought pages back does.
    pub(crate) fn slow_down_if_over_quota(&self) {
        self.inner.slow_down_if_over_quota();
    }

    /// Counts a batch (or a pass) a store's scan took from the shard: the cleaner yields to
    /// reads.
    pub(crate) fn count_scan_batch(&self) {
        self.inner.scan_batches.add(1);
    }

    /// The shard's log.
    pub(crate) fn log(&self) -> &Arc<Log> {
        &self.inner.log
    }
}

/// The page table file of the shard in `dir`, if it has one: its mark and table.
pub(crate) fn read_table(dir: &Path, log: &LogConfig) -> Result<Option<(TableMark, PageTable)>, ShardError> {
    let path = dir.join(TABLE_FILE);
    let io = |source| ShardError::Log(LogError::Io { op: "read", path: path.clone(), source });
    match read_file(&*log.disk, &path).map_err(io)? {
        Some(bytes) => {
            PageTable::decode(&bytes).map(Some).map_err(|reason| ShardError::Pages { path, reason })
        }
        None => Ok(None),
    }
}

/// Reads the page table file of the shard in `dir` and folds into it the page records of the
/// log after it (those whose snapshot `plan` keeps: a record of a snapshot past the cut may
/// hold writes the cut drops). Returns the file's mark (replay starts at its position), the
/// table, and the bytes of the log read.
fn read_pages(
    dir: &Path,
    config: &ShardConfig,
    plan: &Plan,
) -> Result<(TableMark, PageTable, u64), ShardError> {
    let (mark, mut table) =
        read_table(dir, &config.log)?.unwrap_or_else(|| (TableMark::at(0), PageTable::new()));
    let read = fold_pages(dir, &config.log, mark.position, plan, &mut table, |_, _, _, _| {})?;
    Ok((mark, table, read))
}

/// Reads the page records of the log in `dir` from `start` (or its head, if later), folds into
/// `table` those whose snapshot `plan` keeps, and shows every one read, decoded, to `seen`
/// (with its address, kind and payload length). Stops at the first record that does not
/// decode or fold. Returns the bytes of the log read.
pub(crate) fn fold_pages(
    dir: &Path,
    log: &LogConfig,
    start: u64,
    plan: &Plan,
    table: &mut PageTable,
    mut seen: impl FnMut(u64, Kind, &PageRecord<'_>, usize),
) -> Result<u64, ShardError> {
    let mut failed = None;
    let read = Log::read_from(dir, log, start, |lsn, kind, payload| {
        if failed.is_some() || !matches!(kind, Kind::PageImage | Kind::PageDelta) {
            return;
        }
        let Some(record) = PageRecord::decode(payload) else {
            failed = Some(helio_core::log::page::TableError::WrongKind { lsn });
            return;
        };
        if plan.keeps(record.sn) {
            failed = table.fold(lsn, kind, &record).err();
        }
        seen(lsn, kind, &record, payload.len());
    })?;
    match failed {
        Some(reason) => Err(ShardError::Pages { path: dir.join(TABLE_FILE), reason }),
        None => Ok(read.bytes),
    }
}

/// A core error from a read: the key or value over a limit, or a page not read back.
fn refused_or_page(e: helio_core::Error) -> ShardError {
    match e {
        helio_core::Error::PageRead { .. } | helio_core::Error::PageCorrupt { .. } => ShardError::Page(e),
        e => ShardError::Refused(e),
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
        let (end, sn, deferred) = {
            let _stripe = self.stripe(key).lock().unwrap();
            // Numbered before the append and held until the tree has it: a commit that seals
            // this number finds the record in the log.
            let ticket = self.tree.mvcc().begin_write(self.stripe_index(key));
            let end = self.log.append_op(&Op { sn: ticket.sn(), key, value }, Durability::None)?;
            let guard = self.tree.pin();
            let deferred = self.tree.put_deferring_reads(&ticket, key, value, &guard).expect("checked above");
            (end, ticket.sn(), deferred)
        };
        if deferred {
            self.consolidate(key);
        }
        self.count(key, value);
        self.settle(end, sn, durability)?;
        self.slow_down_writer(end);
        Ok(())
    }

    /// See [`Shard::consolidate`]. A read that fails leaves the page as it is: the write is
    /// done, and the page's readers meet the error.
    fn consolidate(&self, key: &[u8]) {
        let _ = self.tree.consolidate_unpinned(key, &mut self.tree.pin());
    }

    fn check_write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), ShardError> {
        self.tree.check_write(key, value).map_err(ShardError::Refused)?;
        // After a batch left half appended no write may follow it (no commit ever will).
        self.committer().check_poison()?;
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
        if self.log_grown_to(end) {
            self.request_clean();
        }
        Ok(())
    }

    /// Wakes the cleaner thread unless a wake is pending already.
    fn request_clean(&self) {
        if !self.clean_requested.swap(true, Ordering::AcqRel) {
            self.wake();
        }
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

    /// A write between its log append and its tree update holds its write ticket; the
    /// cleaner's flush round must wait for it (its snapshot's seal does). Were the round to
    /// capture the page without the write, the op record would still count as covered, the
    /// head would pass it, and a crash would lose it. Checked as the invariant the head move
    /// rests on: once the head is past the op, the page table covers its number.
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
                    let ticket = inner.tree.mvcc().begin_write(0);
                    let op = Op { sn: ticket.sn(), key: b"k", value: Some(b"new") };
                    let end = inner.log.append_op(&op, Durability::None).unwrap();
                    appended_tx.send((end, ticket.sn())).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    inner.tree.put_with(&ticket, b"k", Some(b"new"), &inner.tree.pin()).unwrap();
                });
                let (end, sn) = appended_rx.recv().unwrap();
                let _one = inner.cleaning.lock().unwrap();
                let stretch = inner.clean_stretch(inner.log.appended(), full).unwrap();
                assert!(stretch.read > 0, "full {full}: the head did not move");
                assert!(inner.head.load(Ordering::Acquire) >= end, "full {full}: the head is before the op");
                let flusher = inner.flusher.lock().unwrap();
                let covered = flusher.table.covering(b"k").map_or(0, |e| e.sn);
                assert!(covered >= sn, "full {full}: the head passed op {sn}, the pages cover {covered}");
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
