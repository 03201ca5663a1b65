//! Ordered iteration over all shards: each shard's part of a range, read in batches at one
//! snapshot and merged by key, from either end.
//!
//! Shards hold disjoint keys, so merging is a pick of the smallest (or largest) head. Batches
//! are copied out under a short epoch guard, so an open iterator holds no guard and delays no
//! memory reclamation; the snapshot keeps what it reads from changing. A batch is copied into
//! one buffer, and entries are [`Bytes`] slices of it: no allocation per entry.

use std::collections::VecDeque;
use std::ops::Bound;

use bytes::{BufMut, Bytes, BytesMut};
use helio_core::Snapshot as CoreSnapshot;

use super::error::Error;
use crate::shard::Shard;

/// Entries the first fetches from all shards together aim at, the least one shard's first
/// fetch takes, and the most any fetch takes.
const FIRST_FETCHES: usize = 128;
const BATCH_MIN: usize = 16;
const BATCH_MAX: usize = 1024;

/// One item of a range: a key and its value (cheap to clone; both share their batch's buffer).
pub type Entry = (Bytes, Bytes);

/// What was fetched of one shard's part from one end, nearest first.
struct End {
    buf: VecDeque<Entry>,
    /// No more entries to fetch from this end (what is buffered is all).
    done: bool,
    /// Size of the next fetch.
    batch: usize,
}

/// What is left of the range in one shard, and what was fetched of it from each end.
struct Part {
    lo: Bound<Bytes>,
    hi: Bound<Bytes>,
    front: End,
    back: End,
}

impl Part {
    fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.lo {
            Bound::Included(lo) => key >= lo.as_ref(),
            Bound::Excluded(lo) => key > lo.as_ref(),
            Bound::Unbounded => true,
        };
        let below = match &self.hi {
            Bound::Included(hi) => key <= hi.as_ref(),
            Bound::Excluded(hi) => key < hi.as_ref(),
            Bound::Unbounded => true,
        };
        above && below
    }

    fn end(&mut self, forward: bool) -> &mut End {
        if forward {
            &mut self.front
        } else {
            &mut self.back
        }
    }

    /// The next key from one end, if the part is not used up from there (the other end may
    /// already have taken what was buffered).
    fn next_key(&self, forward: bool) -> Option<&[u8]> {
        let end = if forward { &self.front } else { &self.back };
        end.buf.front().map(|(k, _)| k.as_ref()).filter(|k| self.contains(k))
    }
}

/// An iterator over the entries of a key range at one snapshot, in key order, from both ends
/// (`.rev()`). Items are `Result` so that reads that go to disk (swapped pages, remote tiers)
/// can fail; today every read is from memory and succeeds.
pub struct Range<'s> {
    shards: &'s [Shard],
    snapshot: CoreSnapshot,
    parts: Vec<Part>,
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
        let end = || End { buf: VecDeque::new(), done: false, batch: first };
        let parts = shards
            .iter()
            .map(|_| Part { lo: lo.clone(), hi: hi.clone(), front: end(), back: end() })
            .collect();
        Self { shards, snapshot, parts }
    }

    /// Makes sure shard `i` has entries buffered at one end, if it has any left there.
    fn fill(&mut self, i: usize, forward: bool) {
        let part = &mut self.parts[i];
        let end = part.end(forward);
        if !end.buf.is_empty() || end.done {
            return;
        }
        let range = (part.lo.clone(), part.hi.clone());
        let end = part.end(forward);
        let tree = self.shards[i].tree();
        let guard = tree.pin();
        let batch = next_batch(&mut end.batch);
        let entries = tree.range::<Bytes, _>(&self.snapshot, range, &guard);
        if forward {
            copy_batch(entries.take(batch), batch, &mut end.buf);
        } else {
            copy_batch(entries.rev().take(batch), batch, &mut end.buf);
        }
        end.done = end.buf.len() < batch;
    }

    /// The next entry from one end: the smallest (or largest) next key over the shards.
    fn next_from(&mut self, forward: bool) -> Option<Entry> {
        for i in 0..self.parts.len() {
            self.fill(i, forward);
        }
        let keys = (0..self.parts.len()).filter_map(|i| self.parts[i].next_key(forward).map(|k| (i, k)));
        let (i, _) =
            if forward { keys.min_by(|a, b| a.1.cmp(b.1)) } else { keys.max_by(|a, b| a.1.cmp(b.1)) }?;
        let part = &mut self.parts[i];
        let entry = part.end(forward).buf.pop_front().expect("a key was there");
        let taken = Bound::Excluded(entry.0.clone());
        if forward {
            part.lo = taken;
        } else {
            part.hi = taken;
        }
        Some(entry)
    }
}

/// Copies `entries` into one buffer and queues them as slices of it.
fn copy_batch<'g>(
    entries: impl Iterator<Item = (&'g [u8], &'g [u8])>,
    batch: usize,
    into: &mut VecDeque<Entry>,
) {
    let mut buf = BytesMut::with_capacity(batch * 128);
    let mut ends = Vec::with_capacity(batch);
    for (k, v) in entries {
        buf.put_slice(k);
        let key_end = buf.len();
        buf.put_slice(v);
        ends.push((key_end, buf.len()));
    }
    let buf = buf.freeze();
    let mut start = 0;
    for (key_end, end) in ends {
        into.push_back((buf.slice(start..key_end), buf.slice(key_end..end)));
        start = end;
    }
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
        self.next_from(true).map(Ok)
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.next_from(false).map(Ok)
    }
}
