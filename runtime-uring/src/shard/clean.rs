//! Cleaning, on the shard's cleaner thread: when the log past its head has grown past
//! `(1 + clean_ratio)` times the live data (counting, while writes go on, only the log before
//! the last flush round's place), the oldest stretch is cleaned: its op records are
//! dead once a complete flush round began after them (see `flush.rs`), its page records are
//! live while the page table names them and move by new images of their pages; the table is
//! written, the head moves past the stretch, and the file space behind the head is given back
//! (whole segments deleted or kept as spares, the head's own segment punched up to the head)
//! once no reader pinned before can be inside it. Where the head may move (never inside a
//! fragmented record) is decided in [`helio_core::log::clean`]; this module reads the bytes
//! and holds the locks.
//!
//! How much the cleaner cleans follows what the shard's users did since it last looked (see
//! [`Activity`]): while they write, the log as far as the last round counts; while they only
//! read, their last writes get their flush round and cleaning yields to the reads, a stretch
//! every [`READING_PACE`] (without writes the log does not grow, so waiting costs no disk); at
//! rest, the whole log counts.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use helio_core::log::clean::{CleanPolicy, HeadScan, Unreadable};

use super::{Inner, ShardError};
use crate::log::LogError;
use crate::recovery::{read_durable, CorruptReason, RecoveryError};

/// Log bytes read from the head per stretch: the head moves (one superblock write) after each.
const STRETCH_BYTES: u64 = 4 << 20;

/// How long a full cleaning waits for the readers behind the head to leave before returning.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// While users read and do not write, the cleaner cleans one stretch this often at most.
const READING_PACE: Duration = Duration::from_secs(1);

/// What the shard's users did since the cleaner last looked: it decides how much to clean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Activity {
    /// They wrote (or the cleaner had not looked yet): the log counts as far as the last
    /// round's place (see [`Inner::log_grown_to`]).
    Writing,
    /// They read and did not write: cleaning yields to the reads (its head scans and the
    /// images of the pages it moves take the cores and the device from them), one stretch
    /// per [`READING_PACE`].
    Reading,
    /// Neither: the whole log counts, tail and all.
    Resting,
}

/// The users' writes and reads the cleaner last saw, to tell the [`Activity`] since.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    writes: u64,
    reads: u64,
}

/// What one stretch did.
#[derive(Debug)]
pub(super) struct Stretch {
    /// Log bytes read at the head.
    pub(super) read: u64,
    /// Entries appended.
    pub(super) entries: u64,
}

impl Inner {
    /// When to clean: past `1 + clean_ratio` times the live data, and never a log shorter than
    /// a few stretches or, where segments are smaller (a small store), two segments.
    pub(super) fn policy(&self) -> CleanPolicy {
        let floor = (4 * STRETCH_BYTES).min(2 * self.log.segments().segment_bytes());
        CleanPolicy { ratio: self.clean_ratio, floor }
    }

    /// Whether a log ending at `end` has grown enough past its head to clean while writes
    /// go on. Only the log before the last round's place counts: the op records after it are
    /// in no page record yet, so no cleaning can drop them without a round first, and
    /// counting them made the cleaner force a round and relocate live pages whenever the tail
    /// alone outgrew the ratio (the cleaner then wrote more than the writers did). Writers
    /// pass the end of their own record rather than read the log's end off its busiest cache
    /// line.
    pub(super) fn log_grown_to(&self, end: u64) -> bool {
        let covered = end.min(self.covered_to.load(Ordering::Relaxed));
        self.log_past_head_over_trigger(covered)
    }

    /// Whether the log from the head to `end` is longer than the trigger for the live data.
    fn log_past_head_over_trigger(&self, end: u64) -> bool {
        let head = self.head.load(Ordering::Acquire);
        self.policy().should_clean(end.saturating_sub(head), self.table_bytes.load(Ordering::Relaxed))
    }

    /// Whether to clean now, after `activity`: while users write or read, as
    /// [`Self::log_grown_to`] says; once they rest, the whole log counts, tail and all (the
    /// round cleaning starts with then costs no user anything, and the files come down to the
    /// ratio at rest).
    fn cleaning_due(&self, activity: Activity) -> bool {
        let end = self.log.appended();
        match activity {
            Activity::Resting => self.log_past_head_over_trigger(end),
            Activity::Writing | Activity::Reading => self.log_grown_to(end),
        }
    }

    /// The writes users made so far (puts and deletes, batches' included).
    pub(super) fn user_writes(&self) -> u64 {
        self.puts.sum() + self.deletes.sum()
    }

    /// What the users did since `seen` (`None`: the cleaner's first look), which it then
    /// records. The log's end does not tell: the cleaner's own records move it.
    pub(super) fn activity_since(&self, seen: &mut Option<Seen>) -> Activity {
        let now = Seen { writes: self.user_writes(), reads: self.gets.sum() + self.scan_batches.sum() };
        match seen.replace(now) {
            Some(before) if before.writes == now.writes && before.reads != now.reads => Activity::Reading,
            Some(before) if before == now => Activity::Resting,
            _ => Activity::Writing,
        }
    }

    /// One wake of the cleaner: swap pages out if over the quota, flush a round if the
    /// unflushed tail is long (or, once users only read, if they wrote since the last round),
    /// clean a round after `activity` (`None`: no cleaning this wake), give space back.
    pub(super) fn clean_once(
        &self,
        activity: Option<Activity>,
        seen: &mut Option<Seen>,
    ) -> Result<(), ShardError> {
        {
            let mut f = self.flusher.lock().unwrap();
            self.swap_pass(&mut f)?;
            self.flush_long_tail(&mut f)?;
            // Users' last writes get their round now rather than at the close (an open after
            // it would read the round's records and the tail before them).
            if activity == Some(Activity::Reading) && f.writes_at_round != self.user_writes() {
                self.flush_round(&mut f, false)?;
            }
        }
        let cleaned = match activity {
            Some(activity) => self.clean_round(activity, seen),
            None => Ok(()),
        };
        self.release_space();
        cleaned
    }

    pub(super) fn run_cleaner(&self) {
        let mut seen = None;
        let mut paced: Option<Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            self.clean_requested.store(false, Ordering::Release);
            let activity = self.activity_since(&mut seen);
            let yielding =
                activity == Activity::Reading && paced.is_some_and(|at| at.elapsed() < READING_PACE);
            if activity == Activity::Reading && !yielding {
                paced = Some(Instant::now());
            }
            // A failed cleaning leaves the log as it was; a poisoned log also fails every later
            // write, which is where a user sees the error.
            let failed = match self.clean_once((!yielding).then_some(activity), &mut seen) {
                Ok(()) => false,
                Err(e) => {
                    ::log::warn!("{}: cleaning failed: {e}", self.log.dir().display());
                    true
                }
            };
            let guard = self.wake.0.lock().unwrap();
            if failed || (!self.clean_requested.load(Ordering::Acquire) && !self.stop.load(Ordering::Acquire))
            {
                let _ = self.wake.1.wait_timeout(guard, Duration::from_millis(50)).unwrap();
            }
        }
    }

    /// Cleans stretch after stretch while the log is past the trigger, at most once over the
    /// log as it was when the round began. The live data the trigger counts is exact (the
    /// page records the table names, see `write_table`), so a round ends once the garbage
    /// is gone, and cannot keep rewriting the same records. A round after reads (see
    /// [`Activity::Reading`]) cleans one stretch, and any round stops once users read without
    /// writing (`seen` tells).
    fn clean_round(&self, mut activity: Activity, seen: &mut Option<Seen>) -> Result<(), ShardError> {
        let _one = self.cleaning.lock().unwrap();
        let end = self.log.appended();
        while !self.stop.load(Ordering::Acquire)
            && self.head.load(Ordering::Acquire) < end
            && self.cleaning_due(activity)
        {
            // Writers over the quota wait for the swapper, not for the cleaning.
            self.swap_pass(&mut self.flusher.lock().unwrap())?;
            if self.clean_stretch(end, false)?.read == 0 || activity == Activity::Reading {
                break;
            }
            activity = match self.activity_since(seen) {
                Activity::Reading => break,
                Activity::Writing => Activity::Writing,
                Activity::Resting => activity,
            };
        }
        Ok(())
    }

    /// Cleans the whole log as it is now: every entry still live is appended again and the
    /// head moves past everything before; spare segments are deleted too, so that the files
    /// hold about the live data.
    pub(super) fn clean_all(&self) -> Result<(), ShardError> {
        let _one = self.cleaning.lock().unwrap();
        let end = self.log.appended();
        while self.head.load(Ordering::Acquire) < end {
            if self.clean_stretch(end, true)?.read == 0 {
                break; // the rest is a fragmented record still being appended
            }
        }
        // Give the space back before returning, as soon as the readers pinned before the head
        // moved are gone (each pin and flush moves the epoch on); a reader that stays pinned
        // longer leaves it to the cleaner thread.
        let head = self.head.load(Ordering::Acquire);
        let waited = Instant::now();
        self.release_space();
        while self.released.load(Ordering::Acquire) < head && waited.elapsed() < RELEASE_WAIT {
            std::thread::sleep(Duration::from_millis(1));
            self.release_space();
        }
        self.log.segments().drop_spares().map_err(|source| LogError::Io {
            op: "delete spare segments in",
            path: self.log.dir().to_path_buf(),
            source,
        })?;
        Ok(())
    }

    /// Cleans one stretch from the head (not past `end`). Op records there are dead once a
    /// complete flush round began after them (one runs first if the last began too early);
    /// page records are live while the page table names them, and are moved by writing new
    /// images of the pages that hold their keys. Then the table is written, and the head moves
    /// past the stretch. `full`: a checkpoint's, whose round writes images only.
    pub(super) fn clean_stretch(&self, end: u64, full: bool) -> Result<Stretch, ShardError> {
        let mut f = self.flusher.lock().unwrap();
        let head = self.head.load(Ordering::Acquire);
        if f.covered_to < (head + STRETCH_BYTES).min(end) {
            self.flush_round(&mut f, full)?;
        }
        let stop = (head + STRETCH_BYTES).min(end).min(f.covered_to);
        if stop <= head {
            return Ok(Stretch { read: 0, entries: 0 });
        }
        self.log.wait_durable_for_upkeep(stop)?;
        let until = self.log.durable_lsn().min(end);
        let segments = self.log.segments();
        let live: HashSet<u64> = f.table.addrs().collect();
        let mut scan = HeadScan::new(head);
        let mut to_move = Vec::new();
        let mut moving_below_cut = 0;
        let mut unreadable = None;
        let mut buffer = self.read_buffer.lock().unwrap();
        let salt = self.log.superblock().salt;
        let read = read_durable(segments, salt, (head, until), self.budget.window, &mut buffer, |frame| {
            // Stop past the stretch, but never inside a fragmented record.
            if frame.lsn >= stop && scan.cut() == frame.lsn {
                return false;
            }
            if live.contains(&frame.lsn) {
                to_move.push(frame.lsn);
            }
            unreadable = scan.push(frame, |_, _, _| {}).err();
            if scan.cut() == frame.lsn + frame.bytes as u64 {
                moving_below_cut = to_move.len();
            }
            unreadable.is_none()
        });
        drop(buffer);
        read.map_err(LogError::Recovery)?;
        if let Some(Unreadable { lsn }) = unreadable {
            let reason = CorruptReason::BelowDurable { durable_lsn: until };
            return Err(LogError::Recovery(RecoveryError::corrupt_at(segments, lsn, reason)).into());
        }
        let cut = scan.cut();
        if cut == head {
            return Ok(Stretch { read: 0, entries: 0 });
        }
        to_move.truncate(moving_below_cut);
        // A page may not take its new image at once (frozen by a merge, or written to all
        // the while): try again a few times, and if a record there is still named, leave the
        // head where it is for a later stretch.
        let named = |f: &super::flush::Flusher| -> Vec<u64> {
            let mut named: Vec<u64> = f.table.addrs().collect();
            named.retain(|a| (head..cut).contains(a));
            named.sort_unstable();
            named.dedup();
            named
        };
        for _ in 0..4 {
            let addrs = named(&f);
            if addrs.is_empty() {
                break;
            }
            self.relocate_records(&mut f, &addrs)?;
        }
        // The file must not name what the head passes.
        self.write_table(&mut f)?;
        if !named(&f).is_empty() {
            self.stats.lock().unwrap().stretches_held += 1;
            return Ok(Stretch { read: 0, entries: 0 });
        }
        drop(f);
        self.log.advance_head(cut)?;
        self.head.store(cut, Ordering::Release);
        let stretch = Stretch { read: cut - head, entries: to_move.len() as u64 };
        {
            let mut stats = self.stats.lock().unwrap();
            stats.stretches += 1;
            stats.cleaned_bytes += stretch.read;
            stats.relocated_entries += stretch.entries;
            stats.head = cut;
        }
        // Readers pinned now may still be inside the space behind the head: give it back only
        // once every such reader has unpinned.
        let released = self.released.clone();
        let guard = self.tree.pin();
        guard.defer(move || {
            released.fetch_max(cut, Ordering::AcqRel);
        });
        guard.flush();
        Ok(stretch)
    }

    /// Gives back the file space below the head as far as its readers are gone: deletes (or
    /// keeps as spares) the segments wholly below it and punches the head's segment up to it.
    pub(super) fn release_space(&self) {
        // One at a time: a segment this call punches must not be retired meanwhile by another
        // (as a spare, it could become the new tail segment before the punch lands).
        let _one = self.releasing.lock().unwrap();
        // Pinning and flushing moves the epoch on, so deferred releases come due.
        self.tree.pin().flush();
        let head = self.released.load(Ordering::Acquire);
        if self.given_back.swap(head, Ordering::AcqRel) == head {
            return; // nothing new since the last time
        }
        let segments = self.log.segments();
        let first_live = segments.index_of(head);
        let dead = segments.list().unwrap_or_default().into_iter().filter(|&i| i < first_live);
        self.pages.forget_below(first_live);
        let deleted = dead.filter(|&index| segments.retire(index).is_ok()).count() as u64;
        let _ = segments.punch_below(head);
        self.stats.lock().unwrap().segments_deleted += deleted;
    }
}
