//! Range iteration at a snapshot, forwards and backwards.
//!
//! An iterator reads one page at a time into a cursor: the page's delta records resolved to one
//! visible version per key (an overlay), merged on the fly with a window of the base page. The
//! next page is found again from the index by key, not by pointer, so pages may split, merge or
//! consolidate under a running iterator: it sees exactly its snapshot either way.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::ops::{Bound, Range};

use crossbeam_epoch::Guard;

use crate::mvcc::Snapshot;
use crate::page::base::{Base, Version};
use crate::page::record::Record;
use crate::page::{Gathered, Loaded};
use crate::tree::{Target, Tree};

/// Entries of a range as a snapshot sees them; from [`Tree::range`].
pub struct Iter<'t, 'g> {
    tree: &'t Tree,
    guard: &'g Guard,
    sn: u64,
    /// Keys still to yield lie within `lo..hi`; both narrow as entries are yielded.
    lo: Bound<Cow<'g, [u8]>>,
    hi: Bound<Cow<'g, [u8]>>,
    front: Option<PageCursor<'g>>,
    back: Option<PageCursor<'g>>,
    done: bool,
    /// Why the iteration ended early: a swapped-out page could not be read back.
    error: Option<crate::Error>,
    /// Stop before a swapped-out page instead of reading it back pinned (see
    /// [`Iter::stopping_at_swapped_out`]); and the page it stopped before.
    stop_at_swapped_out: bool,
    swapped_out: Option<SwappedOut>,
}

/// A swapped-out page an iterator stopped before (see [`Iter::stopping_at_swapped_out`]):
/// [`Tree::swap_in_unpinned`] brings it back into memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwappedOut {
    target: OwnedTarget,
}

/// A [`Target`] that owns its key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum OwnedTarget {
    Key(Vec<u8>),
    Below(Vec<u8>),
    Last,
}

impl SwappedOut {
    fn new(target: Target<'_>) -> Self {
        let target = match target {
            Target::Key(k) => OwnedTarget::Key(k.to_vec()),
            Target::Below(k) => OwnedTarget::Below(k.to_vec()),
            Target::Last => OwnedTarget::Last,
        };
        Self { target }
    }

    /// Where the page is, as the index finds it.
    pub(crate) fn target(&self) -> Target<'_> {
        match &self.target {
            OwnedTarget::Key(k) => Target::Key(k),
            OwnedTarget::Below(k) => Target::Below(k),
            OwnedTarget::Last => Target::Last,
        }
    }
}

impl<'t: 'g, 'g> Iter<'t, 'g> {
    pub(crate) fn new(
        tree: &'t Tree,
        snapshot: &'g Snapshot,
        lo: Bound<Cow<'g, [u8]>>,
        hi: Bound<Cow<'g, [u8]>>,
        guard: &'g Guard,
    ) -> Self {
        let empty = match (&lo, &hi) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
            _ => false,
        };
        Self {
            tree,
            guard,
            sn: snapshot.sn(),
            lo,
            hi,
            front: None,
            back: None,
            done: empty,
            error: None,
            stop_at_swapped_out: false,
            swapped_out: None,
        }
    }

    /// Makes the iterator end before the first swapped-out page it meets rather than read the
    /// page back with its guard pinned (which holds up memory reclamation for every thread
    /// while the read waits for the disk). [`Iter::swapped_out`] then names the page: the
    /// caller drops the iterator, brings the page back with [`Tree::swap_in_unpinned`] and
    /// iterates again from past the last entry it took.
    pub fn stopping_at_swapped_out(mut self) -> Self {
        self.stop_at_swapped_out = true;
        self
    }

    /// The swapped-out page the iteration stopped before, if it did (see
    /// [`Iter::stopping_at_swapped_out`]).
    pub fn swapped_out(&self) -> Option<&SwappedOut> {
        self.swapped_out.as_ref()
    }

    fn below_hi(&self, key: &[u8]) -> bool {
        match &self.hi {
            Bound::Included(k) => key <= &**k,
            Bound::Excluded(k) => key < &**k,
            Bound::Unbounded => true,
        }
    }

    fn above_lo(&self, key: &[u8]) -> bool {
        match &self.lo {
            Bound::Included(k) => key >= &**k,
            Bound::Excluded(k) => key > &**k,
            Bound::Unbounded => true,
        }
    }

    /// Whether any key below `low` can still be in range.
    fn room_below(&self, low: &[u8]) -> bool {
        !low.is_empty()
            && match &self.lo {
                Bound::Included(k) | Bound::Excluded(k) => &**k < low,
                Bound::Unbounded => true,
            }
    }

    /// A cursor on the page for `target`; a swapped-out page is brought back into memory
    /// first, or, when stopping at swapped-out pages, named and `None` returned.
    fn open(&self, target: Target<'_>) -> Result<Option<PageCursor<'g>>, crate::Error> {
        loop {
            let (cell, head) = self.tree.locate(target, self.guard);
            // The tighter of our upper bound and the page's.
            let hi = match head.hdr.high() {
                Some(high) if self.below_hi(high) => Bound::Excluded(high),
                _ => self.hi.as_ref().map(|k| &**k),
            };
            cell.touch();
            if let Some(cursor) =
                PageCursor::new(head, self.lo.as_ref().map(|k| &**k), hi, self.sn, &cell.low)
            {
                self.tree.after_read(cell, head, self.guard);
                return Ok(Some(cursor));
            }
            if self.stop_at_swapped_out {
                return Ok(None);
            }
            self.tree.swap_in(cell, head, self.guard)?;
        }
    }

    fn fail(&mut self, error: crate::Error) {
        self.error = Some(error);
        self.done = true;
    }

    /// Why the iteration ended before the end of its range, if it did: a swapped-out page in
    /// it could not be read back.
    pub fn error(&self) -> Option<&crate::Error> {
        self.error.as_ref()
    }
}

impl<'t: 'g, 'g> Iterator for Iter<'t, 'g> {
    type Item = (&'g [u8], &'g [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.front.is_none() {
                let target = match &self.lo {
                    Bound::Included(k) | Bound::Excluded(k) => Target::Key(k),
                    Bound::Unbounded => Target::Key(&[]),
                };
                match self.open(target) {
                    Ok(Some(cursor)) => self.front = Some(cursor),
                    Ok(None) => {
                        self.swapped_out = Some(SwappedOut::new(target));
                        break;
                    }
                    Err(e) => {
                        self.fail(e);
                        break;
                    }
                }
            }
            let cursor = self.front.as_mut().expect("opened above");
            if let Some((key, value)) = cursor.next_front() {
                if !self.below_hi(key) {
                    break;
                }
                self.lo = Bound::Excluded(Cow::Borrowed(key));
                return Some((key, value));
            }
            match cursor.high.filter(|&high| self.below_hi(high)) {
                Some(high) => {
                    self.lo = Bound::Included(Cow::Borrowed(high));
                    self.front = None;
                }
                _ => break,
            }
        }
        self.done = true;
        None
    }
}

impl<'t: 'g, 'g> DoubleEndedIterator for Iter<'t, 'g> {
    fn next_back(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.back.is_none() {
                let target = match &self.hi {
                    Bound::Included(k) => Target::Key(k),
                    Bound::Excluded(k) if k.is_empty() => break,
                    Bound::Excluded(k) => Target::Below(k),
                    Bound::Unbounded => Target::Last,
                };
                match self.open(target) {
                    Ok(Some(cursor)) => self.back = Some(cursor),
                    Ok(None) => {
                        self.swapped_out = Some(SwappedOut::new(target));
                        break;
                    }
                    Err(e) => {
                        self.fail(e);
                        break;
                    }
                }
            }
            let cursor = self.back.as_mut().expect("opened above");
            if let Some((key, value)) = cursor.next_back() {
                if !self.above_lo(key) {
                    break;
                }
                self.hi = Bound::Excluded(Cow::Borrowed(key));
                return Some((key, value));
            }
            let low = cursor.low;
            if !self.room_below(low) {
                break;
            }
            self.hi = Bound::Excluded(Cow::Borrowed(low));
            self.back = None;
        }
        self.done = true;
        None
    }
}

/// Entries ahead of a base window's end whose bytes are prefetched as the window moves.
const PREFETCH_AHEAD: usize = 8;

/// One page's visible entries within a range, consumed from either end.
struct PageCursor<'g> {
    /// Keys with a delta visible at the snapshot, sorted: the value, or `None` for a tombstone.
    overlay: Vec<(&'g [u8], Option<&'g [u8]>)>,
    overlay_left: Range<usize>,
    base: Option<&'g Base>,
    base_left: Range<usize>,
    sn: u64,
    low: &'g [u8],
    high: Option<&'g [u8]>,
}

impl<'g> PageCursor<'g> {
    /// `None` if the page is swapped out (its chain reaches a stub).
    fn new(head: &'g Record, lo: Bound<&[u8]>, hi: Bound<&[u8]>, sn: u64, low: &'g [u8]) -> Option<Self> {
        static NONE: Loaded = Loaded::none();
        let mut gathered = Gathered::default();
        gathered.gather(head, lo, hi, &NONE).ok()?;
        let mut base = None;
        let mut base_left = 0..0;
        if gathered.bases.len() == 1 {
            let (b, first, end) = gathered.bases[0];
            base = Some(b);
            base_left = first..end;
        } else {
            // Several bases (a merge not yet consolidated): fold them into the overlay. They are
            // older than every delta, so appending keeps chain order.
            let Gathered { deltas, bases } = &mut gathered;
            deltas.extend(bases.iter().flat_map(|&(b, first, end)| (first..end).map(|i| b.get(i))));
        }
        gathered.deltas.sort_by(|a, b| a.key.cmp(b.key));
        let overlay = resolve(&gathered.deltas, sn);
        let overlay_left = 0..overlay.len();
        Some(Self { overlay, overlay_left, base, base_left, sn, low, high: head.hdr.high() })
    }

    fn next_front(&mut self) -> Option<(&'g [u8], &'g [u8])> {
        loop {
            let from_overlay = self.overlay_left.start < self.overlay_left.end;
            let from_base = self.base_left.start < self.base_left.end;
            let (key, value) = match (from_overlay, from_base) {
                (false, false) => return None,
                (true, _) => {
                    let (key, value) = self.overlay[self.overlay_left.start];
                    let base_key = from_base.then(|| self.base().key(self.base_left.start));
                    if base_key.is_some_and(|b| b < key) {
                        self.take_base_front()
                    } else {
                        self.overlay_left.start += 1;
                        if base_key == Some(key) {
                            self.take_base_front();
                        }
                        (key, value)
                    }
                }
                (false, true) => self.take_base_front(),
            };
            if let Some(value) = value {
                return Some((key, value));
            }
        }
    }

    fn next_back(&mut self) -> Option<(&'g [u8], &'g [u8])> {
        loop {
            let from_overlay = self.overlay_left.start < self.overlay_left.end;
            let from_base = self.base_left.start < self.base_left.end;
            let (key, value) = match (from_overlay, from_base) {
                (false, false) => return None,
                (true, _) => {
                    let (key, value) = self.overlay[self.overlay_left.end - 1];
                    let base_key = from_base.then(|| self.base().key(self.base_left.end - 1));
                    if base_key.is_some_and(|b| b > key) {
                        self.take_base_back()
                    } else {
                        self.overlay_left.end -= 1;
                        if base_key == Some(key) {
                            self.take_base_back();
                        }
                        (key, value)
                    }
                }
                (false, true) => self.take_base_back(),
            };
            if let Some(value) = value {
                return Some((key, value));
            }
        }
    }

    fn base(&self) -> &'g Base {
        self.base.expect("a base window implies a base")
    }

    /// Consumes the versions of the first key in the base window; returns the visible one.
    fn take_base_front(&mut self) -> (&'g [u8], Option<&'g [u8]>) {
        let base = self.base();
        let (start, limit) = (self.base_left.start, self.base_left.end);
        base.prefetch_entry(start + PREFETCH_AHEAD);
        let end = base.key_run_end(start, limit);
        self.base_left.start = end;
        base.visible(start..end, self.sn)
    }

    /// Consumes the versions of the last key in the base window; returns the visible one.
    fn take_base_back(&mut self) -> (&'g [u8], Option<&'g [u8]>) {
        let base = self.base();
        let (limit, end) = (self.base_left.start, self.base_left.end);
        if let Some(ahead) = end.checked_sub(PREFETCH_AHEAD + 1) {
            base.prefetch_entry(ahead);
        }
        let start = base.key_run_start(end - 1, limit);
        self.base_left.end = start;
        base.visible(start..end, self.sn)
    }
}

/// One entry per key that has a version visible at `sn`: the first such in chain order.
/// `sorted` is sorted by key, each key's versions newest first.
fn resolve<'g>(sorted: &[Version<'g>], sn: u64) -> Vec<(&'g [u8], Option<&'g [u8]>)> {
    let mut out: Vec<(&'g [u8], Option<&'g [u8]>)> = Vec::with_capacity(sorted.len());
    let mut last: Option<&[u8]> = None;
    for v in sorted {
        if v.sn <= sn && last != Some(v.key) {
            out.push((v.key, v.value));
            last = Some(v.key);
        }
    }
    out
}
