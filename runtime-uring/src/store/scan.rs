//! The merge behind [`Store::scan`](super::Store::scan): every shard's entries of a range,
//! visited in key order straight from the pages at one snapshot, with no copy.
//!
//! Unlike a [`Range`](super::Range), which copies batches out so that it holds no epoch guard
//! between items, a scan holds every shard's guard for the whole call: it hands out slices of
//! the pages themselves, and shards' iterators are merged by picking the smallest head (shards
//! hold disjoint keys).

use std::ops::{Bound, ControlFlow};

use helio_core::{Guard, Snapshot};

use crate::shard::Shard;

/// Visits the entries of `(lo, hi)` in `shards` as `snapshot` sees them, in key order, until
/// `visit` breaks; returns how many entries it visited. Swapped-out pages are read back (with
/// the shards pinned: a scan is the one read that holds its guard across disk reads).
pub(super) fn scan(
    shards: &[Shard],
    snapshot: &Snapshot,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
    mut visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> Result<usize, helio_core::Error> {
    let guards: Vec<Guard> = shards.iter().map(|shard| shard.tree().pin()).collect();
    let mut parts: Vec<_> = shards
        .iter()
        .zip(&guards)
        .map(|(shard, guard)| shard.tree().range::<[u8], _>(snapshot, (lo, hi), guard))
        .collect();
    let mut heads: Vec<_> = parts.iter_mut().map(Iterator::next).collect();
    let mut visited = 0;
    while let Some(i) = smallest(&heads) {
        let (key, value) = heads[i].expect("smallest picks a shard with a next entry");
        heads[i] = parts[i].next();
        visited += 1;
        if visit(key, value).is_break() {
            break;
        }
    }
    // A shard whose iterator ended early (a swapped-out page not read back) fails the scan.
    match parts.iter().find_map(|part| part.error()) {
        Some(e) => Err(e.clone()),
        None => Ok(visited),
    }
}

/// The shard whose next entry has the smallest key, if any shard has one left.
fn smallest(heads: &[Option<(&[u8], &[u8])>]) -> Option<usize> {
    let mut best: Option<(usize, &[u8])> = None;
    for (i, head) in heads.iter().enumerate() {
        if let Some((key, _)) = head {
            if best.is_none_or(|(_, b)| *key < b) {
                best = Some((i, key));
            }
        }
    }
    best.map(|(i, _)| i)
}
