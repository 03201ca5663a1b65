//! Cleaning, on the shard's cleaner thread: when the log past its head has grown past
//! `(1 + clean_ratio)` times the live data, the entries still live in its oldest stretch are
//! appended again at the tail, the head moves past the stretch, and the file space behind the
//! head is given back (whole segments deleted or kept as spares, the head's own segment punched
//! up to the head) once no reader pinned before can be inside it. Also measures memory for the
//! quota. Which entries are candidates and where the head may move is decided in
//! [`helio_core::log::clean`]; this module reads the bytes and holds the locks.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_epoch::Guard;
use helio_core::log::batch::{self, BatchWriter};
use helio_core::log::clean::{CleanPolicy, HeadScan, Unreadable};
use helio_core::log::frame::{frame_bytes, Kind};

use super::{Inner, ShardError};
use crate::log::{Durability, LogError};
use crate::recovery::{read_durable, CorruptReason, RecoveryError};

/// Log bytes read from the head per stretch: the head moves (one superblock write) after each.
const STRETCH_BYTES: u64 = 4 << 20;

/// How long a full cleaning waits for the readers behind the head to leave before returning.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// Below this share of live bytes, a stretch is cheap to clean: a third of a byte written per
/// byte freed, or less.
const CHEAP_SHARE: f64 = 0.25;

/// What one stretch did.
#[derive(Debug)]
pub(super) struct Stretch {
    /// Log bytes read at the head.
    pub(super) read: u64,
    /// Log bytes appended at the tail for the entries still live.
    pub(super) relocated: u64,
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

    /// Measures the live data (the bytes of entries the pages hold, a walk over the pages) for
    /// the cleaning trigger, and for the quota. At the quota, first consolidates every page (at
    /// most once a second): deleted entries and old versions leave memory only when their page
    /// is consolidated, and a page with a few deletes may not reach its chain threshold for a
    /// long time.
    pub(super) fn measure_memory(&self) {
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

    /// Whether a log ending at `end` has grown enough past its head to clean. Writers pass the
    /// end of their own record rather than read the log's end off its busiest cache line.
    pub(super) fn log_grown_to(&self, end: u64) -> bool {
        let head = self.head.load(Ordering::Acquire);
        self.policy().should_clean(end.saturating_sub(head), self.live_estimate())
    }

    /// The live data the trigger works from: the pages' bytes, or what the cleaner last found
    /// live in the log if that is more (see `found_live`).
    fn live_estimate(&self) -> u64 {
        self.memory.load(Ordering::Relaxed).max(self.found_live.load(Ordering::Relaxed))
    }

    /// Measures the live data again when it may have changed enough to matter: always under a
    /// quota; otherwise once the log has grown by an eighth of the last figure since (a walk over
    /// every page is not free: about 0.1–0.4 µs a page).
    fn refresh_live(&self) {
        let end = self.log.appended();
        let grown = end.saturating_sub(self.measured_at.load(Ordering::Relaxed))
            > self.memory.load(Ordering::Relaxed) / 8;
        if self.memory_quota.is_some() || grown {
            self.measured_at.store(end, Ordering::Relaxed);
            self.measure_memory();
        }
    }

    /// One wake of the cleaner: measure, clean a round if due, give space back.
    pub(super) fn clean_once(&self) -> Result<(), ShardError> {
        self.refresh_live();
        let cleaned = self.clean_round();
        self.release_space();
        cleaned
    }

    pub(super) fn run_cleaner(&self) {
        while !self.stop.load(Ordering::Acquire) {
            self.clean_requested.store(false, Ordering::Release);
            // A failed cleaning leaves the log as it was; a poisoned log also fails every later
            // write, which is where a user sees the error.
            let failed = match self.clean_once() {
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

    /// Cleans stretch after stretch while the log is past the trigger, or while the last
    /// stretch cleaned was cheap (less than [`CHEAP_SHARE`] of it live), at most once over the
    /// log as it was when the round began (so a live-data estimate below the truth cannot keep
    /// the cleaner rewriting the same entries). Cheap stretches are cleaned below the trigger
    /// because the estimate can be above the truth (a page's delta chain counts every version
    /// it holds), and because space freed for little writing is worth having.
    fn clean_round(&self) -> Result<(), ShardError> {
        let _one = self.cleaning.lock().unwrap();
        let end = self.log.appended();
        let (start_head, mut read, mut moved) = (self.head.load(Ordering::Acquire), 0, 0);
        // What the round found live. A round that read the whole log as it was when it began
        // (the trigger still held after every stretch) found it exactly: the next round waits
        // until the log has grown past that by the ratio, however little of it the pages count.
        // A round that stopped earlier only lowers the figure, to the share it found live times
        // the log it began on (so that it decays once those copies die), never raises it.
        let found = |read: u64, moved: u64, whole: bool| {
            if whole {
                self.found_live.store(moved, Ordering::Relaxed);
            } else if read > 0 {
                let share = moved as f64 / read as f64;
                self.found_live.fetch_min((share * (end - start_head) as f64) as u64, Ordering::Relaxed);
            }
        };
        loop {
            let head = self.head.load(Ordering::Acquire);
            let log_bytes = self.log.appended() - head;
            let policy = self.policy();
            let cheap = f64::from_bits(self.head_live_share.load(Ordering::Relaxed)) < CHEAP_SHARE
                && log_bytes > policy.floor;
            if self.stop.load(Ordering::Acquire)
                || head >= end
                || !(cheap || self.log_grown_to(head + log_bytes))
            {
                if !self.stop.load(Ordering::Acquire) {
                    found(read, moved, head >= end);
                }
                return Ok(());
            }
            let stretch = self.clean_stretch(end, false)?;
            if stretch.read == 0 {
                return Ok(());
            }
            read += stretch.read;
            moved += stretch.relocated;
            let share = stretch.relocated as f64 / stretch.read as f64;
            self.head_live_share.store(share.to_bits(), Ordering::Relaxed);
        }
    }

    /// Cleans the whole log as it is now: every entry still live is appended again and the
    /// head moves past everything before; spare segments are deleted too, so that the files
    /// hold about the live data.
    pub(super) fn clean_all(&self) -> Result<(), ShardError> {
        let _one = self.cleaning.lock().unwrap();
        let end = self.log.appended();
        let mut moved = 0;
        while self.head.load(Ordering::Acquire) < end {
            let stretch = self.clean_stretch(end, true)?;
            if stretch.read == 0 {
                break; // the rest is a fragmented record still being appended
            }
            moved += stretch.relocated;
        }
        // The log is now about what the cleaner finds live: the background cleaner starts again
        // only once it grows past that by the ratio.
        self.found_live.store(moved, Ordering::Relaxed);
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

    /// Cleans one stretch from the head (not past `end`): reads it, appends its live entries,
    /// waits until they and every write that made an entry dead are durable, and moves the head
    /// past it. A `full` cleaning's lookups consolidate the pages they read (see [`Mover`]).
    pub(super) fn clean_stretch(&self, end: u64, full: bool) -> Result<Stretch, ShardError> {
        let head = self.head.load(Ordering::Acquire);
        let stop = (head + STRETCH_BYTES).min(end);
        self.log.wait_durable_for_upkeep(stop)?;
        let until = self.log.durable_lsn().min(end);
        let segments = self.log.segments();
        let mut scan = HeadScan::new(head);
        let mut candidates = BatchWriter::new();
        // The candidates of the frames below the cut: those past it (after the first piece of a
        // fragmented record not yet whole) stay in the log and are not moved.
        let mut below_cut = candidates.mark();
        let mut unreadable = None;
        let mut buffer = self.read_buffer.lock().unwrap();
        let read = read_durable(segments, self.log.superblock().salt, head, until, &mut buffer, |frame| {
            // Stop past the stretch, but never inside a fragmented record.
            if frame.lsn >= stop && scan.cut() == frame.lsn {
                return false;
            }
            let pushed = scan.push(frame, |sn, key, value| {
                if !self.dropped.is_void(sn) {
                    candidates.push(key, value);
                }
            });
            if scan.cut() == frame.lsn + frame.bytes as u64 {
                below_cut = candidates.mark();
            }
            unreadable = pushed.err();
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
            return Ok(Stretch { read: 0, relocated: 0, entries: 0 });
        }
        candidates.truncate(below_cut);
        let mut mover = Mover::new(self, full);
        mover.relocate(&candidates)?;
        // An entry was found dead because the tree holds a newer write of its key, appended to
        // the log before the check (a writer appends before it updates the tree) but perhaps
        // not yet recoverable: the head may move past the old entry only once that write is
        // covered by a durable commit, or a crash whose cut falls before it would lose both.
        // The moved entries are covered by the same commit.
        self.committer().commit_all(self.index, false)?;
        self.log.advance_head(cut)?;
        self.head.store(cut, Ordering::Release);
        let stretch = Stretch { read: cut - head, relocated: mover.bytes, entries: mover.entries };
        {
            let mut stats = self.stats.lock().unwrap();
            stats.stretches += 1;
            stats.cleaned_bytes += stretch.read;
            stats.relocated_bytes += stretch.relocated;
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
        let deleted = dead.filter(|&index| segments.retire(index).is_ok()).count() as u64;
        let _ = segments.punch_below(head);
        self.stats.lock().unwrap().segments_deleted += deleted;
    }
}

/// Appends the live entries among candidates, a batch at a time. Its lookups consolidate the
/// pages they read only in a full cleaning, which reads every live entry while writers are
/// likely idle: in a background round the writers are busy on those pages and would undo it.
struct Mover<'a> {
    inner: &'a Inner,
    consolidate: bool,
    batch: BatchWriter,
    bytes: u64,
    entries: u64,
}

impl<'a> Mover<'a> {
    fn new(inner: &'a Inner, consolidate: bool) -> Self {
        Self { inner, consolidate, batch: BatchWriter::new(), bytes: 0, entries: 0 }
    }

    /// Whether the tree maps `key` to exactly `value`.
    fn live(&self, key: &[u8], value: &[u8], guard: &Guard) -> bool {
        let tree = &self.inner.tree;
        let found = if self.consolidate { tree.get(key, guard) } else { tree.peek(key, guard) };
        found.ok().flatten() == Some(value)
    }

    /// Appends the entries of `candidates` that are live: those whose key the tree maps to
    /// exactly their value, in key order (nearby keys share pages, so the lookups hit the
    /// cache). First the dead ones are dropped, each checked under its key's stripe: a write
    /// holds it from its log append to its tree update, so an entry found dead then has a newer
    /// record of its key after it in the log, and stays droppable. Then the rest, a batch at a
    /// time, are checked again and appended with the stripes of the batch's keys held from the
    /// check until the append, so no write of those keys falls between the two and the batch
    /// sets each key to the value it has in the tree.
    fn relocate(&mut self, candidates: &BatchWriter) -> Result<(), LogError> {
        let inner = self.inner;
        let mut entries: Vec<(&[u8], &[u8])> = batch::entries(candidates.payload()).flatten().collect();
        // By key, each key's candidates in log order (a stable sort); of those only the last
        // can be live: the others have a newer record of their key right here. Keeping one
        // also drops the copies a key written again with the same value leaves, which the
        // value check below would take for live.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries.reverse();
        entries.dedup_by(|later, newer| later.0 == newer.0);
        entries.reverse();
        // A full cleaning skips the first pass: writers are likely idle, so holding a batch's
        // stripes through its lookups costs them little, and most entries are live, which the
        // first pass would look up twice.
        if !self.consolidate {
            let mut guard = inner.tree.pin();
            let mut checked = 0u32;
            entries.retain(|&(key, value)| {
                // Re-pin now and then, so that the pass does not hold back memory reclamation.
                checked += 1;
                if checked % 256 == 0 {
                    guard.repin();
                }
                let _stripe = inner.stripe(key).lock().unwrap();
                self.live(key, value, &guard)
            });
        }
        let mut from = 0;
        while from < entries.len() {
            let mut to = from;
            let mut bytes = 0;
            while to < entries.len() && bytes < self.inner.batch_bytes {
                bytes += batch::ENTRY_OVERHEAD + entries[to].0.len() + entries[to].1.len();
                to += 1;
            }
            self.relocate_batch(&entries[from..to])?;
            from = to;
        }
        Ok(())
    }

    /// Checks `entries` again and appends the live ones as one record, under their stripes.
    fn relocate_batch(&mut self, entries: &[(&[u8], &[u8])]) -> Result<(), LogError> {
        let inner = self.inner;
        // Ascending order, as every holder of several stripes takes them: no deadlock.
        let _held = inner.lock_stripes(entries.iter().map(|&(key, _)| key));
        self.batch.clear();
        {
            let guard = inner.tree.pin();
            for &(key, value) in entries {
                if self.live(key, value, &guard) {
                    self.batch.push(key, value);
                }
            }
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        // A number of its own: the record says "these keys have these values", true at any
        // cut at or after it; a cut before it drops it, and finds the entries where they were.
        let ticket = inner.tree.mvcc().begin_write(0);
        self.batch.set_sn(ticket.sn());
        inner.log.append(Kind::Relocated, self.batch.payload(), Durability::None)?;
        drop(ticket);
        self.bytes += frame_bytes(self.batch.len()) as u64;
        self.entries += self.batch.entries();
        Ok(())
    }
}
