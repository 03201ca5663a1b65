//! The merge behind [`Store::scan`](super::Store::scan): every shard's entries of a range,
//! visited in key order straight from the pages at one snapshot, with no copy.
//!
//! Unlike a [`Range`](super::Range), which copies batches out so that it holds no epoch guard
//! between items, a scan holds every shard's guard while it visits: it hands out slices of
//! the pages themselves, and shards' iterators are merged by picking the smallest head (shards
//! hold disjoint keys). It lets go of them to read a swapped-out page back, and starts again
//! past the last entry it visited.

use std::ops::{Bound, ControlFlow};

use helio_core::{Guard, Iter, Snapshot, SwappedOut};

use super::UNPINNED_TRIES;
use crate::shard::Shard;

/// Visits the entries of `(lo, hi)` in `shards` as `snapshot` sees them, in key order, until
/// `visit` breaks; returns how many entries it visited. The scan stops before a swapped-out
/// page, lets go of every guard, reads the page back, and starts again past the last entry it
/// visited: no guard is held across a disk read.
pub(super) fn scan(
    shards: &[Shard],
    snapshot: &Snapshot,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
    mut visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> Result<usize, helio_core::Error> {
    let mut visited = 0;
    let mut from = lo.map(<[u8]>::to_vec);
    let mut fruitless = 0;
    loop {
        shards.iter().for_each(Shard::count_scan_batch);
        let stop = fruitless < UNPINNED_TRIES;
        let Some(Stopped { shard, page, last }) =
            scan_pass(shards, snapshot, (from.as_ref().map(|k| &k[..]), hi), stop, &mut visit, &mut visited)?
        else {
            return Ok(visited);
        };
        match last {
            Some(last) => {
                from = Bound::Excluded(last);
                fruitless = 0;
            }
            None => fruitless += 1,
        }
        let tree = shards[shard].tree();
        tree.swap_in_unpinned(&page, &mut tree.pin())?;
        // The page is back in memory: a scan over more than the quota goes at the swapper's
        // pace rather than past the quota (no guard is held here).
        shards[shard].slow_down_if_over_quota();
    }
}

/// Where a pass of a scan stopped: before a swapped-out page of shard `shard`, after visiting
/// the entry with key `last` (none if it visited none).
struct Stopped {
    shard: usize,
    page: SwappedOut,
    last: Option<Vec<u8>>,
}

/// One pass of [`scan`] over `range`, with every shard pinned: merges the shards' iterators
/// (shards hold disjoint keys: the smallest head is next) until `visit` breaks, the range
/// ends, or (`stop`) a shard's iterator stops before a swapped-out page.
fn scan_pass(
    shards: &[Shard],
    snapshot: &Snapshot,
    range: (Bound<&[u8]>, Bound<&[u8]>),
    stop: bool,
    visit: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    visited: &mut usize,
) -> Result<Option<Stopped>, helio_core::Error> {
    let guards: Vec<Guard> = shards.iter().map(|shard| shard.tree().pin()).collect();
    let mut parts: Vec<_> = shards
        .iter()
        .zip(&guards)
        .map(|(shard, guard)| {
            let part = shard.tree().range::<[u8], _>(snapshot, range, guard);
            if stop {
                part.stopping_at_swapped_out()
            } else {
                part
            }
        })
        .collect();
    let mut heads: Vec<_> = parts.iter_mut().map(Iterator::next).collect();
    if let Some(ended) = stopped_or_failed(&parts, None) {
        return ended;
    }
    while let Some(i) = smallest(&heads) {
        let (key, value) = heads[i].expect("smallest picks a shard with a next entry");
        heads[i] = parts[i].next();
        *visited += 1;
        if visit(key, value).is_break() {
            return Ok(None);
        }
        // An iterator that ends may have stopped or failed: only then is there anything to see.
        if heads[i].is_none() {
            if let Some(ended) = stopped_or_failed(&parts, Some(key)) {
                return ended;
            }
        }
    }
    Ok(None)
}

/// What ends a pass early, if anything has: a shard's iterator that stopped before a
/// swapped-out page (nothing after `last`, the last key visited, is known to be next), or one
/// that failed (a swapped-out page not read back fails the scan).
fn stopped_or_failed(
    parts: &[Iter<'_, '_>],
    last: Option<&[u8]>,
) -> Option<Result<Option<Stopped>, helio_core::Error>> {
    if let Some((shard, page)) = parts.iter().enumerate().find_map(|(i, p)| p.swapped_out().map(|s| (i, s))) {
        return Some(Ok(Some(Stopped { shard, page: page.clone(), last: last.map(<[u8]>::to_vec) })));
    }
    parts.iter().find_map(|part| part.error()).map(|e| Err(e.clone()))
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
