//! Page flushes and swapping, on the shard's cleaner thread (or in a caller's checkpoint or
//! close): which pages go to the log as page records, when they are recoverable, and the page
//! table file recovery starts from.
//!
//! A **round** writes every dirty page as one snapshot sees it (the decisions are the core's,
//! see `helio_core::Tree::capture` and `docs/pages.md`). It notes the log's end before the
//! snapshot: every op record before that place then lies in a page record, so the cleaner may
//! drop it, and recovery replays only from there. The records are made durable, then a commit
//! past their snapshot, before the tree may name them, and they are folded into the shard's
//! copy of the page table exactly as recovery would fold them; the table is written (durably)
//! after every round and before every head move, so that the file never names a record the
//! head has passed.
//!
//! **Swapping** runs between a high and a low watermark of the shard's share of the memory
//! quota: the Clock names pages, they are flushed (a delta at most, usually) and replaced by
//! stubs. Writers that find the shard over its whole share wait a little for the swapper, and
//! so do writers that find the log past the last round longer than `TAIL_BOUND` times
//! `unflushed_tail`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use helio_core::log::cut::Commit;
use helio_core::log::page::{PageTable, PageWriter, TableMark};
use helio_core::Capture;

use super::pipeline::{Cause, Pipeline, Written};
use super::{Inner, ShardError};
use crate::disk::replace_file;
use crate::log::LogError;

/// The page table file in a shard's directory.
pub(crate) const TABLE_FILE: &str = "PAGES";

/// Pages the Clock passes over per swap batch (Plasma sweeps 16 at a time; a batch of a few
/// sweeps shares one commit).
const SWEEP_PAGES: usize = 64;

/// Times a flush round tries a busy page again (see [`Captured::Busy`]) before it gives up
/// covering the log with that round.
const BUSY_RETRIES: u32 = 3;

/// Swapping starts above this share of the quota and stops below the low one.
const HIGH_WATERMARK: f64 = 0.90;
const LOW_WATERMARK: f64 = 0.75;

/// How long a writer over the quota, or past the tail's bound, waits for the cleaner at most,
/// per write.
const WRITER_WAIT: Duration = Duration::from_millis(2);

/// Writers are slowed once the unflushed tail is this many times `unflushed_tail` long: the
/// trigger starts a round, this bounds how far the writers may outrun it.
const TAIL_BOUND: u64 = 4;

/// What the flusher keeps between rounds. One flusher works at a time (it is behind a mutex).
#[derive(Default)]
pub(crate) struct Flusher {
    /// The page table as recovery would fold the records written so far.
    pub(crate) table: PageTable,
    /// Where the last complete round began: every op record before it is in a page record.
    pub(crate) covered_to: u64,
    /// The newest complete commit the table file has named (see `TableMark`).
    commit: Commit,
    /// Where the Clock is.
    hand: Vec<u8>,
    pub(super) writer: PageWriter,
    /// The low key of a page whose captures report it busy (see [`super::Shard::hold_busy`]).
    pub(super) held_busy: Option<Box<[u8]>>,
    /// The users' writes counted when the last round began (see [`Inner::user_writes`]).
    pub(super) writes_at_round: u64,
}

impl Flusher {
    /// A flusher starting from a recovered table and its file's mark: the op records before
    /// its position are all in page records.
    pub(crate) fn new(table: PageTable, mark: TableMark) -> Self {
        Self { table, covered_to: mark.position, commit: mark.commit, ..Self::default() }
    }
}

/// A stretch of keys: its low key and high key (`None`: unbounded).
type KeyRange = (Box<[u8]>, Option<Box<[u8]>>);

impl Inner {
    /// A complete round: every dirty page as one snapshot sees it, again until no page is
    /// dirty that the round has not written (pages split off meanwhile); then the table file.
    /// `images`: every record a full image (a checkpoint's round: then no record before the
    /// round stays live through a delta's chain).
    ///
    /// The round covers the log up to the place noted before its snapshot only if it captured
    /// every dirty page: a page found busy is tried again once nothing else is left, up to
    /// [`BUSY_RETRIES`] times; if it is still busy, the round writes what it captured but
    /// leaves the place where it was (the op records of that page's writes stay live, and
    /// recovery replays them).
    pub(super) fn flush_round(&self, f: &mut Flusher, images: bool) -> Result<(), ShardError> {
        f.writes_at_round = self.user_writes();
        let position = self.log.boundary();
        let snapshot = self.tree.snapshot();
        let mut done = HashSet::new();
        let mut busy = Vec::new();
        let mut retries = 0;
        loop {
            let fresh: Vec<(Box<[u8]>, u64)> = {
                let guard = self.tree.pin();
                self.tree.dirty_pages(&guard).into_iter().filter(|(_, id)| !done.contains(id)).collect()
            };
            let todo: Vec<Box<[u8]>> = if fresh.is_empty() {
                if busy.is_empty() || retries == BUSY_RETRIES {
                    break;
                }
                retries += 1;
                std::mem::take(&mut busy)
            } else {
                done.extend(fresh.iter().map(|(_, id)| *id));
                fresh.into_iter().map(|(low, _)| low).collect()
            };
            let written = self.write_pages_of(f, todo, &snapshot, images, Cause::Round)?;
            done.extend(written.captures.iter().map(Capture::page_id));
            busy.extend(written.busy);
        }
        {
            let mut stats = self.stats.lock().unwrap();
            match busy.is_empty() {
                true => {
                    f.covered_to = position;
                    stats.flush_rounds += 1;
                }
                false => stats.rounds_incomplete += 1,
            }
        }
        self.write_table(f)
    }

    /// Writes images of every page holding keys of the table stretches that name any of
    /// `addrs`, so that no stretch names them any more (the cleaner moving live records off the
    /// head): only the pages within those stretches are visited.
    pub(super) fn relocate_records(&self, f: &mut Flusher, addrs: &[u64]) -> Result<(), ShardError> {
        let ranges: Vec<KeyRange> = f
            .table
            .entries()
            .filter(|e| e.chain.iter().any(|link| addrs.binary_search(&link.addr).is_ok()))
            .map(|e| (e.lo.clone(), e.hi.clone()))
            .collect();
        if ranges.is_empty() {
            return Ok(());
        }
        let snapshot = self.tree.snapshot();
        // The ranges are in key order: a page holding keys of two of them is named once.
        let mut lows: Vec<Box<[u8]>> = Vec::new();
        {
            let guard = self.tree.pin();
            for (lo, hi) in &ranges {
                for low in self.tree.page_lows_within(lo, hi.as_deref(), &guard) {
                    if lows.last() != Some(&low) {
                        lows.push(low);
                    }
                }
            }
        }
        let captures = self.write_pages_of(f, lows, &snapshot, true, Cause::Relocation)?.captures;
        // A page written out again because its record was old is likely cold: under a quota,
        // out of memory again it goes (an image reads the page back in first).
        if self.budget.pages.is_some() {
            let guard = self.tree.pin();
            for capture in &captures {
                self.tree.swap_out(capture, &guard);
            }
        }
        Ok(())
    }

    /// Runs a flush round once the log past the last round's place is longer than
    /// [`ShardConfig::unflushed_tail`](super::ShardConfig::unflushed_tail): so much an open
    /// after a crash must read and replay beyond the page records.
    pub(super) fn flush_long_tail(&self, f: &mut Flusher) -> Result<(), ShardError> {
        if self.log.appended().saturating_sub(f.covered_to) > self.unflushed_tail {
            self.flush_round(f, false)?;
        }
        Ok(())
    }

    /// Swaps pages out while the shard is above its high watermark, down to the low one, or
    /// until the Clock finds nothing more to swap. Each sweep's pages are one batch, captured
    /// while the device flushes the batch before (see `pipeline.rs`); a page swaps out once its
    /// batch is recoverable.
    pub(super) fn swap_pass(&self, f: &mut Flusher) -> Result<(), ShardError> {
        let Some(quota) = self.budget.pages else { return Ok(()) };
        let (high, low) = ((quota as f64 * HIGH_WATERMARK) as u64, (quota as f64 * LOW_WATERMARK) as u64);
        if self.tree.resident_bytes() <= high {
            return Ok(());
        }
        let mut p = Pipeline::new(Cause::Swap);
        let mut fruitless = 0;
        let mut batches = 0;
        while self.tree.resident_bytes() > low && fruitless < 4 && !self.stop.load(Ordering::Acquire) {
            let snapshot = self.tree.snapshot();
            let victims: Vec<Box<[u8]>> = {
                let guard = self.tree.pin();
                let swept = self.tree.sweep(&mut f.hand, SWEEP_PAGES, &guard);
                swept.into_iter().filter(|low| !p.holds(low)).collect()
            };
            let mut done = Written::default();
            self.pipe_pages(f, &mut p, victims, &snapshot, false, &mut done)?;
            self.seal(f, &mut p, &mut done)?;
            batches += done.batches;
            let swapped = self.swap_out_all(&done.captures);
            // The first pass swaps nothing (its batch is still in flight): one of the four.
            fruitless = if swapped == 0 { fruitless + 1 } else { 0 };
        }
        let mut done = Written::default();
        self.drain(f, &mut p, &mut done)?;
        batches += done.batches;
        self.swap_out_all(&done.captures);
        self.stats.lock().unwrap().swap_flushes += batches;
        Ok(())
    }

    /// Swaps out the pages of `captures` (their records are recoverable and named); returns how
    /// many it could, and wakes the writers waiting for memory.
    fn swap_out_all(&self, captures: &[Capture]) -> usize {
        let guard = self.tree.pin();
        let swapped = captures.iter().filter(|c| self.tree.swap_out(c, &guard)).count();
        drop(guard);
        self.stats.lock().unwrap().swap_misses += (captures.len() - swapped) as u64;
        self.caught_up.1.notify_all();
        swapped
    }

    /// Writes the table file: the table, where recovery starts reading the log, and a complete
    /// commit numbered at or above everything before that place (a commit first, so that one
    /// covers every write begun before the call: recovery's first pass then need not read the
    /// log before the place). The bytes of the records it names become the live data of the
    /// cleaning trigger.
    pub(super) fn write_table(&self, f: &mut Flusher) -> Result<(), ShardError> {
        self.table_bytes.store(f.table.live_bytes(), Ordering::Relaxed);
        self.covered_to.store(f.covered_to, Ordering::Relaxed);
        self.caught_up.1.notify_all();
        self.committer().commit_all(self.index, false)?;
        let completed = self.committer().completed();
        if completed.sn > f.commit.sn {
            f.commit = completed;
        }
        let dir = self.log.dir();
        let bytes = f.table.encode(&TableMark { position: f.covered_to, commit: f.commit.clone() });
        replace_file(&*self.disk, dir, TABLE_FILE, &bytes).map_err(|source| LogError::Io {
            op: "write the page table in",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(())
    }

    /// Whether a point read may bring the page it read back into memory: always without a
    /// quota (a store that fits in memory comes back into it as it is read after an open),
    /// below the low watermark with one (so that reads do not swap against the swapper).
    pub(super) fn room_to_swap_in(&self) -> bool {
        self.budget
            .pages
            .is_none_or(|quota| (self.tree.resident_bytes() as f64) < quota as f64 * LOW_WATERMARK)
    }

    /// Slows a reader that brought pages back while the shard is over its whole share of the
    /// quota (see [`Self::wait_for_cleaner`]).
    pub(super) fn slow_down_if_over_quota(&self) {
        self.wait_for_cleaner(|| self.over_quota());
    }

    /// Slows a writer whose record ends at `end` while the shard is over its whole share of the
    /// quota, or while the log past the last flush round is longer than [`TAIL_BOUND`] times
    /// `unflushed_tail` (the rounds fall behind the writers, and an open after a crash would
    /// read and replay all of it).
    pub(super) fn slow_down_writer(&self, end: u64) {
        let bound = self.unflushed_tail.saturating_mul(TAIL_BOUND);
        let tail_long = || end.saturating_sub(self.covered_to.load(Ordering::Relaxed)) > bound;
        self.wait_for_cleaner(|| self.over_quota() || tail_long());
        self.wake_swapper_past_high();
    }

    /// Wakes the cleaner once the shard is past the high watermark (it would otherwise find
    /// that at its next timed wake, by when the writers may be over the quota and waiting).
    fn wake_swapper_past_high(&self) {
        let past_high = |quota| self.tree.resident_bytes() as f64 > quota as f64 * HIGH_WATERMARK;
        if self.budget.pages.is_some_and(past_high) && !self.clean_requested.load(Ordering::Relaxed) {
            self.request_clean();
        }
    }

    fn over_quota(&self) -> bool {
        self.budget.pages.is_some_and(|quota| self.tree.resident_bytes() > quota)
    }

    /// While `behind()`: wakes the cleaner and waits for it a little ([`WRITER_WAIT`] at most;
    /// a cleaner that cannot keep up slows writes, it does not stop them).
    fn wait_for_cleaner(&self, behind: impl Fn() -> bool) {
        // On a simulated disk there is no cleaner thread to wait for (the test cleans).
        if !self.log.disk_is_real() || !behind() {
            return;
        }
        self.request_clean();
        let started = Instant::now();
        let mut waiting = self.caught_up.0.lock().unwrap();
        while behind() && started.elapsed() < WRITER_WAIT {
            waiting = self.caught_up.1.wait_timeout(waiting, Duration::from_millis(1)).unwrap().0;
        }
        let mut stats = self.stats.lock().unwrap();
        stats.writer_waits += 1;
        stats.writer_wait_micros += started.elapsed().as_micros() as u64;
    }

    pub(super) fn table_error(&self, reason: helio_core::log::page::TableError) -> ShardError {
        ShardError::Pages { path: self.log.dir().join(TABLE_FILE), reason }
    }
}
