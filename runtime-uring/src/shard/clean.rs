//! Cleaning: when to checkpoint, the checkpoint itself, retiring and deleting the segments
//! behind it, and measuring memory for the quota (all on the shard's cleaner thread).

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use helio_core::log::checkpoint::{begin_payload, end_payload, PageWriter};
use helio_core::log::frame::{frame_bytes, Kind};

use super::{Inner, ShardError};
use crate::log::{Durability, LogError};

/// Entries a checkpoint reads under one epoch guard.
const SCAN_CHUNK: usize = 4096;

impl Inner {
    /// Log bytes past the head that start a cleaning.
    pub(super) fn clean_trigger(&self) -> u64 {
        let live = self.live_bytes.load(Ordering::Relaxed) as f64;
        let floor = 2 * self.log.segments().segment_bytes();
        (((1.0 + self.clean_ratio) * live) as u64).max(floor)
    }

    /// Measures the bytes of entries the pages hold, for the quota (without one, nothing reads
    /// the figure and the walk over every page is skipped; `stats()` measures on its own). At the
    /// quota, first consolidates every page (at most once a second): deleted entries and old
    /// versions leave memory only when their page is consolidated, and a page with a few deletes
    /// may not reach its chain threshold for a long time.
    pub(super) fn measure_memory(&self) {
        if self.memory_quota.is_none() {
            return;
        }
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
    pub(super) fn needs_cleaning(&self) -> bool {
        self.log_grown_to(self.log.appended())
    }

    /// Whether a log ending at `end` has grown enough past its head to clean. Writers pass the
    /// end of their own record rather than read the log's end off its busiest cache line.
    pub(super) fn log_grown_to(&self, end: u64) -> bool {
        end.saturating_sub(self.head.load(Ordering::Acquire)) > self.clean_trigger()
    }

    pub(super) fn run_cleaner(&self) {
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
    pub(super) fn checkpoint(&self) -> Result<(), ShardError> {
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
        let end = self.log.append(
            Kind::CheckpointEnd,
            &end_payload(id, pages.entries(), written),
            Durability::None,
        )?;
        self.log.wait_durable_for_upkeep(end)?;
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
    pub(super) fn delete_retired(&self) {
        // Pinning and flushing moves the epoch on, so deferred retirements come due.
        self.tree.pin().flush();
        let ready: Vec<u64> = std::mem::take(&mut *self.deletable.lock().unwrap());
        let mut deleted = 0;
        for index in ready {
            if self.log.segments().retire(index).is_ok() {
                deleted += 1;
            }
        }
        self.stats.lock().unwrap().segments_deleted += deleted;
    }
}
