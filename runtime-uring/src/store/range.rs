//! Ordered iteration over all shards: each shard's part of a range, read in batches at one
//! snapshot and merged by key, from either end.
//!
//! Shards hold disjoint keys, so merging is a pick of the smallest (or largest) head. Batches
//! are copied out under a short epoch guard, so an open iterator holds no guard and delays no
//! memory reclamation; the snapshot keeps what it reads from changing. A batch is copied into
//! one buffer, and entries are [`Bytes`] slices of it: no allocation per entry, and no bound
//! kept up to date per entry (the last key taken from each end bounds what is left). A batch
//! ends before a swapped-out page, which is then read back with the guard unpinned.

use std::collections::VecDeque;
use std::ops::Bound;

use bytes::{BufMut, Bytes, BytesMut};
use helio_core::Snapshot as CoreSnapshot;

use super::error::Error;
use super::UNPINNED_TRIES;
use crate::shard::Shard;

/// Entries the first fetches from all shards together aim at, the least one shard's first
/// fetch takes, and the most any fetch takes.
const FIRST_FETCHES: usize = 128;
const BATCH_MIN: usize = 16;
const BATCH_MAX: usize = 1024;

/// One item of a range: a key and its value (cheap to clone; both share their batch's buffer).
pub type Entry = (Bytes, Bytes);

/// Where the last entry taken from one end was: its key bounds what is left of the part.
enum Taken {
    /// Nothing taken from this end yet: the range's own bound applies.
    Nothing,
    /// The key at these offsets of the end's current batch.
    InBatch(usize, usize),
    /// A key of an earlier batch, kept when that batch was replaced.
    Owned(Bytes),
}

/// What was fetched of one shard's part from one end: one buffer, and the entries still to
/// hand out as offsets into it (nearest first), so taking an entry costs two slices of the
/// buffer and no bound is cloned per entry.
struct End {
    buf: Bytes,
    /// `(key start, key end = value start, value end)` per entry.
    entries: VecDeque<(usize, usize, usize)>,
    taken: Taken,
    /// No more entries to fetch from this end (what is buffered is all).
    done: bool,
    /// Size of the next fetch.
    batch: usize,
}

impl End {
    fn new(batch: usize) -> Self {
        Self { buf: Bytes::new(), entries: VecDeque::new(), taken: Taken::Nothing, done: false, batch }
    }

    /// The key of the last entry taken from this end, if any.
    fn taken_key(&self) -> Option<&[u8]> {
        match &self.taken {
            Taken::Nothing => None,
            Taken::InBatch(start, end) => Some(&self.buf[*start..*end]),
            Taken::Owned(key) => Some(key),
        }
    }

    /// The bound what is left of the part has at this end: past the last key taken, or the
    /// range's own bound.
    fn bound(&self, own: &Bound<Bytes>) -> Bound<Bytes> {
        match &self.taken {
            Taken::Nothing => own.clone(),
            Taken::InBatch(start, end) => Bound::Excluded(self.buf.slice(*start..*end)),
            Taken::Owned(key) => Bound::Excluded(key.clone()),
        }
    }

    /// Replaces the batch, keeping the last taken key (if it was in the old batch).
    fn refill(&mut self, buf: Bytes, entries: VecDeque<(usize, usize, usize)>) {
        if let Taken::InBatch(start, end) = self.taken {
            self.taken = Taken::Owned(self.buf.slice(start..end));
        }
        self.buf = buf;
        self.entries = entries;
    }

    fn next_key(&self) -> Option<&[u8]> {
        self.entries.front().map(|&(start, end, _)| &self.buf[start..end])
    }

    fn take(&mut self) -> Option<Entry> {
        let (start, key_end, end) = self.entries.pop_front()?;
        self.taken = Taken::InBatch(start, key_end);
        Some((self.buf.slice(start..key_end), self.buf.slice(key_end..end)))
    }
}

/// What is left of the range in one shard, and what was fetched of it from each end.
struct Part {
    lo: Bound<Bytes>,
    hi: Bound<Bytes>,
    front: End,
    back: End,
}

impl Part {
    fn end(&mut self, forward: bool) -> &mut End {
        if forward {
            &mut self.front
        } else {
            &mut self.back
        }
    }

    /// The next key from one end, unless the other end already took it (or went past it).
    fn next_key(&self, forward: bool) -> Option<&[u8]> {
        let (this, other) = if forward { (&self.front, &self.back) } else { (&self.back, &self.front) };
        let key = this.next_key()?;
        match other.taken_key() {
            Some(limit) if (forward && key >= limit) || (!forward && key <= limit) => None,
            _ => Some(key),
        }
    }
}

/// An iterator over the entries of a key range at one snapshot, in key order, from both ends
/// (`.rev()`). Items are `Result`: a swapped-out page that cannot be read back ends the
/// iteration with its error.
pub struct Range<'s> {
    shards: &'s [Shard],
    snapshot: CoreSnapshot,
    parts: Vec<Part>,
    /// A read failed: handed out next, and the iteration is over.
    failed: Option<Error>,
    done: bool,
}

impl<'s> Range<'s> {
    pub(crate) fn new(
        shards: &'s [Shard],
        snapshot: CoreSnapshot,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
    ) -> Self {
        let (lo, hi) = (lo.map(Bytes::from), hi.map(Bytes::from));
        let first = (FIRST_FETCHES / shards.len()).max(BATCH_MIN);
        let parts = shards
            .iter()
            .map(|_| Part { lo: lo.clone(), hi: hi.clone(), front: End::new(first), back: End::new(first) })
            .collect();
        Self { shards, snapshot, parts, failed: None, done: false }
    }

    /// Makes sure shard `i` has entries buffered at one end, if it has any left there.
    fn fill(&mut self, i: usize, forward: bool) {
        let part = &mut self.parts[i];
        let end = part.end(forward);
        if !end.entries.is_empty() || end.done {
            return;
        }
        let range = (part.front.bound(&part.lo), part.back.bound(&part.hi));
        let tree = self.shards[i].tree();
        let end = part.end(forward);
        let batch = next_batch(&mut end.batch);
        for attempt in 0.. {
            let mut guard = tree.pin();
            // The batch ends before a swapped-out page: it is read back unpinned, below. A page
            // the swapper keeps taking back before the batch gets to it is read pinned at last.
            let mut entries = tree.range::<Bytes, _>(&self.snapshot, range.clone(), &guard);
            if attempt < UNPINNED_TRIES {
                entries = entries.stopping_at_swapped_out();
            }
            let (buf, offsets) = if forward {
                copy_batch(entries.by_ref().take(batch), batch)
            } else {
                copy_batch(entries.by_ref().rev().take(batch), batch)
            };
            let (error, stopped) = (entries.error().cloned(), entries.swapped_out().cloned());
            drop(entries);
            let read = stopped.as_ref().map(|page| tree.swap_in_unpinned(page, &mut guard));
            if let Some(e) = error.or(read.and_then(Result::err)) {
                self.failed = Some(e.into());
            }
            if stopped.is_some() && offsets.is_empty() && self.failed.is_none() {
                continue; // the page is back: the batch starts in it
            }
            end.done = stopped.is_none() && offsets.len() < batch;
            end.refill(buf, offsets);
            break;
        }
        // The batch may have brought swapped-out pages back: a scan over more than the quota
        // goes at the swapper's pace rather than past the quota.
        self.shards[i].count_scan_batch();
        self.shards[i].slow_down_if_over_quota();
    }

    /// The next entry from one end: the smallest (or largest) next key over the shards.
    fn next_from(&mut self, forward: bool) -> Option<Result<Entry, Error>> {
        if self.done {
            return None;
        }
        for i in 0..self.parts.len() {
            self.fill(i, forward);
        }
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Some(Err(e));
        }
        let keys = (0..self.parts.len()).filter_map(|i| self.parts[i].next_key(forward).map(|k| (i, k)));
        let (i, _) =
            if forward { keys.min_by(|a, b| a.1.cmp(b.1)) } else { keys.max_by(|a, b| a.1.cmp(b.1)) }?;
        self.parts[i].end(forward).take().map(Ok)
    }
}

/// Copies `entries` into one buffer; returns it and each entry's offsets in it.
fn copy_batch<'g>(
    entries: impl Iterator<Item = (&'g [u8], &'g [u8])>,
    batch: usize,
) -> (Bytes, VecDeque<(usize, usize, usize)>) {
    let mut buf = BytesMut::with_capacity(batch * 128);
    let mut offsets = VecDeque::with_capacity(batch);
    for (k, v) in entries {
        let start = buf.len();
        buf.put_slice(k);
        let key_end = buf.len();
        buf.put_slice(v);
        offsets.push_back((start, key_end, buf.len()));
    }
    (buf.freeze(), offsets)
}

/// Batches double up to `BATCH_MAX`. The first ones split `FIRST_FETCHES` between the shards:
/// a re-seek costs about as much as copying tens of entries, so a scan of ~100 should need one
/// fetch per shard, and a short one should not copy much more.
fn next_batch(batch: &mut usize) -> usize {
    let this = *batch;
    *batch = (this * 2).min(BATCH_MAX);
    this
}

impl Iterator for Range<'_> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_from(true)
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.next_from(false)
    }
}
