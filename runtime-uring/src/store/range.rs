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

/// What is left of the range in one shard, and what was fetched of it from each end.
struct Part {
    lo: Bound<Bytes>,
    hi: Bound<Bytes>,
    front: VecDeque<Entry>,
    back: VecDeque<Entry>,
    /// No more entries to fetch from that end (what is buffered is all).
    front_done: bool,
    back_done: bool,
    /// Size of the next fetch from each end.
    front_batch: usize,
    back_batch: usize,
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
        let parts = shards
            .iter()
            .map(|_| Part {
                lo: lo.clone(),
                hi: hi.clone(),
                front: VecDeque::new(),
                back: VecDeque::new(),
                front_done: false,
                back_done: false,
                front_batch: first,
                back_batch: first,
            })
            .collect();
        Self { shards, snapshot, parts }
    }

    /// Makes sure shard `i` has entries buffered at the front, if it has any left.
    fn fill_front(&mut self, i: usize) {
        let part = &mut self.parts[i];
        if part.front.is_empty() && !part.front_done {
            let tree = self.shards[i].tree();
            let guard = tree.pin();
            let range = (part.lo.clone(), part.hi.clone());
            let batch = next_batch(&mut part.front_batch);
            let entries = tree.range::<Bytes, _>(&self.snapshot, range, &guard).take(batch);
            copy_batch(entries, batch, &mut part.front);
            part.front_done = part.front.len() < batch;
        }
    }

    fn fill_back(&mut self, i: usize) {
        let part = &mut self.parts[i];
        if part.back.is_empty() && !part.back_done {
            let tree = self.shards[i].tree();
            let guard = tree.pin();
            let range = (part.lo.clone(), part.hi.clone());
            let batch = next_batch(&mut part.back_batch);
            let entries = tree.range::<Bytes, _>(&self.snapshot, range, &guard).rev().take(batch);
            copy_batch(entries, batch, &mut part.back);
            part.back_done = part.back.len() < batch;
        }
    }

    /// Shard `i`'s next key from the front, if its part is not used up.
    fn front_key(&self, i: usize) -> Option<&[u8]> {
        let part = &self.parts[i];
        part.front.front().map(|(k, _)| k.as_ref()).filter(|k| part.contains(k))
    }

    fn back_key(&self, i: usize) -> Option<&[u8]> {
        let part = &self.parts[i];
        part.back.front().map(|(k, _)| k.as_ref()).filter(|k| part.contains(k))
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
        for i in 0..self.parts.len() {
            self.fill_front(i);
        }
        let (i, _) = (0..self.parts.len())
            .filter_map(|i| self.front_key(i).map(|k| (i, k)))
            .min_by(|a, b| a.1.cmp(b.1))?;
        let part = &mut self.parts[i];
        let entry = part.front.pop_front().expect("a key was there");
        part.lo = Bound::Excluded(entry.0.clone());
        Some(Ok(entry))
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        for i in 0..self.parts.len() {
            self.fill_back(i);
        }
        let (i, _) = (0..self.parts.len())
            .filter_map(|i| self.back_key(i).map(|k| (i, k)))
            .max_by(|a, b| a.1.cmp(b.1))?;
        let part = &mut self.parts[i];
        let entry = part.back.pop_front().expect("a key was there");
        part.hi = Bound::Excluded(entry.0.clone());
        Some(Ok(entry))
    }
}
