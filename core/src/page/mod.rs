//! Pages: a base of sorted entries under a chain of delta records, and the walks over a chain that
//! answer a point lookup, gather a page's versions, or consolidate them into a new base.
//!
//! Routing rule of a chain (newest first): a split record means keys from its separator on live in
//! the right sibling, so records below it only speak for keys under the separator; a merge record
//! means keys from its separator on are found in the absorbed chain it points at. The header of the
//! head record summarises the page's current upper bound and right sibling.

pub(crate) mod base;
pub(crate) mod record;

use alloc::vec::Vec;
use core::ops::Bound;

use base::{cmp_keys, Base, Version};
use record::{Body, Record};

use crate::mvcc;

/// The version of `key` visible at snapshot `sn` on the page whose head is `head`, which must cover
/// `key`: `Ok(None)` if absent or deleted, `Err(stub)` if the answer is in the log, in the page
/// records of the stub reached (no write above it was of `key`).
pub(crate) fn lookup<'g>(head: &'g Record, key: &[u8], sn: u64) -> Result<Option<&'g [u8]>, &'g Record> {
    let key_prefix = base::prefix(key);
    let mut rec = head;
    loop {
        match &rec.body {
            Body::Insert { prefix, .. } | Body::Delete { prefix, .. } if *prefix != key_prefix => {}
            Body::Insert { .. } | Body::Delete { .. } => {
                let v = rec.version().expect("write record");
                if v.key == key && v.sn <= sn {
                    return Ok(v.value);
                }
            }
            Body::Split { sep } => {
                // Routing by the head's header keeps keys at or above a separator off this walk.
                debug_assert!(key < &**sep, "lookup walked past a split that owns its key");
            }
            Body::Merge { sep, right, .. } if key >= &**sep => {
                // SAFETY: a merge record owns the absorbed chain: its remove record, then the rest.
                rec = unsafe { &*(**right).next };
                continue;
            }
            Body::Merge { .. } | Body::Remove { .. } => {}
            Body::Base { base, .. } => return Ok(base.find(key, sn).flatten()),
            Body::Swapped { .. } => return Err(rec),
        }
        // SAFETY: every record but a base has a next one, alive as long as this one.
        rec = unsafe { &*rec.next };
    }
}

/// The bases read back from the log for the stubs of a chain (see [`Body::Swapped`]).
#[derive(Default)]
pub(crate) struct Loaded {
    /// Each stub (by address) and its base.
    bases: Vec<(usize, Base)>,
    /// Gather the chain without the stubs' entries (they are all in the log already).
    skip: bool,
}

impl Loaded {
    /// No bases: a gather stops at the first stub it meets.
    pub(crate) const fn none() -> Self {
        Self { bases: Vec::new(), skip: false }
    }

    /// No bases: a gather skips the stubs it meets.
    pub(crate) fn skipping_stubs() -> Self {
        Self { bases: Vec::new(), skip: true }
    }

    /// Adds the base read for `stub`.
    pub(crate) fn insert(&mut self, stub: &Record, base: Base) {
        self.bases.push((stub as *const Record as usize, base));
    }

    fn get(&self, stub: &Record) -> Option<&Base> {
        let stub = stub as *const Record as usize;
        self.bases.iter().find(|(s, _)| *s == stub).map(|(_, b)| b)
    }
}

/// A page's versions within a key range, as found on its chain.
#[derive(Default)]
pub(crate) struct Gathered<'g> {
    /// Versions from delta records (and from absorbed bases), in chain order: newest first.
    pub deltas: Vec<Version<'g>>,
    /// Runs of base entries `(base, first, end)`, in chain order.
    pub bases: Vec<(&'g Base, usize, usize)>,
}

impl<'g> Gathered<'g> {
    /// Adds every version on the chain from `head` whose key lies within `lo..hi`. `Err(stub)`
    /// if the chain reaches a stub whose base `loaded` does not hold (what was gathered is then
    /// incomplete).
    pub(crate) fn gather<'a>(
        &mut self,
        head: &'g Record,
        lo: Bound<&'a [u8]>,
        hi: Bound<&'a [u8]>,
        loaded: &'g Loaded,
    ) -> Result<(), &'g Record>
    where
        'g: 'a,
    {
        let mut hi = hi;
        let mut rec = head;
        loop {
            match &rec.body {
                Body::Insert { .. } | Body::Delete { .. } => {
                    let v = rec.version().expect("write record");
                    if within(v.key, lo, hi) {
                        self.deltas.push(v);
                    }
                }
                Body::Split { sep } => hi = tighter(hi, sep),
                Body::Merge { sep, right, .. } => {
                    let lo_right = tighter_lo(lo, sep);
                    // SAFETY: the merge record owns the absorbed chain below `right`.
                    let absorbed = unsafe { &*(**right).next };
                    self.gather(absorbed, lo_right, hi, loaded)?;
                    hi = tighter(hi, sep);
                }
                Body::Remove { .. } => {}
                Body::Swapped { .. } => {
                    match loaded.get(rec) {
                        Some(base) => self.push_base(base, rec, lo, hi),
                        None if loaded.skip => {}
                        None => return Err(rec),
                    }
                    return Ok(());
                }
                Body::Base { base, .. } => {
                    self.push_base(base, rec, lo, hi);
                    return Ok(());
                }
            }
            // SAFETY: every record but a base has a next one, alive as long as this one.
            rec = unsafe { &*rec.next };
        }
    }

    /// Adds the entries of `base` (at the bottom of a chain, under `rec`) within `lo..hi`.
    fn push_base<'a>(&mut self, base: &'g Base, rec: &'g Record, lo: Bound<&'a [u8]>, hi: Bound<&'a [u8]>) {
        let first = match lo {
            Bound::Included(k) => base.seek(k, true),
            Bound::Excluded(k) => base.seek(k, false),
            Bound::Unbounded => 0,
        };
        let end = match hi {
            // Every entry of a base lies below the high key it was built with: a bound at or
            // above that (usually the page's own high key, the same bytes) needs no search.
            Bound::Included(k) | Bound::Excluded(k)
                if rec.hdr.high().is_some_and(|h| core::ptr::eq(h, k) || h <= k) =>
            {
                base.len()
            }
            Bound::Included(k) => base.seek(k, false),
            Bound::Excluded(k) => base.seek(k, true),
            Bound::Unbounded => base.len(),
        };
        if first < end {
            self.bases.push((base, first, end));
        }
    }

    /// Every version gathered, sorted by key, each key's versions newest first.
    pub(crate) fn sorted(&mut self, out: &mut Vec<Version<'g>>) {
        out.clear();
        // Stable: keeps chain order (newest first) among one key's versions.
        self.deltas.sort_by(|a, b| cmp_keys(a.key, b.key));
        self.bases.sort_by(|a, b| cmp_keys(a.0.key(a.1), b.0.key(b.1)));
        let base_versions =
            self.bases.iter().flat_map(|&(base, first, end)| (first..end).map(|i| base.get(i)));
        let mut deltas = self.deltas.iter().copied().peekable();
        for b in base_versions {
            // Deltas are newer than any base version of the same key, so they go first on ties.
            while let Some(d) = deltas.next_if(|d| cmp_keys(d.key, b.key).is_le()) {
                out.push(d);
            }
            out.push(b);
        }
        out.extend(deltas);
    }
}

/// Keeps the versions that the latest state or a live snapshot can see (see [`mvcc::retained`]),
/// drops tombstones that hide nothing, and compacts snapshot numbers. `sorted` is the output of
/// [`Gathered::sorted`]; the result replaces it.
///
/// `flushed` is the snapshot number the page's newest page record holds it at (`u64::MAX` for a
/// page never written to the log as a page): a version above it keeps its number, so that the
/// next flush finds it, and a tombstone above it is kept even if it hides nothing here, since it
/// hides the key's version in the log.
pub(crate) fn garbage_collect<'g>(
    sorted: &mut Vec<Version<'g>>,
    live: &[u64],
    flushed: u64,
    scratch: &mut GcScratch,
) {
    let mut kept = 0;
    let mut start = 0;
    while start < sorted.len() {
        let key = sorted[start].key;
        let end = start + sorted[start..].iter().take_while(|v| v.key == key).count();
        scratch.sns.clear();
        scratch.sns.extend(sorted[start..end].iter().map(|v| v.sn));
        mvcc::retained(&scratch.sns, live, &mut scratch.keep);
        let group_kept = kept;
        for (i, keep) in scratch.keep.iter().enumerate() {
            if *keep {
                let mut v = sorted[start + i];
                if v.sn <= flushed {
                    v.sn = mvcc::compacted_sn(v.sn, live);
                }
                sorted[kept] = v;
                kept += 1;
            }
        }
        // The oldest kept version, if a tombstone, hides nothing any more (unless it hides the
        // key's version in the log).
        while kept > group_kept && sorted[kept - 1].value.is_none() && sorted[kept - 1].sn <= flushed {
            kept -= 1;
        }
        start = end;
    }
    sorted.truncate(kept);
}

/// Reusable buffers for [`garbage_collect`].
#[derive(Default)]
pub(crate) struct GcScratch {
    sns: Vec<u64>,
    keep: Vec<bool>,
}

fn within(key: &[u8], lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    let above = match lo {
        Bound::Included(k) => cmp_keys(key, k).is_ge(),
        Bound::Excluded(k) => cmp_keys(key, k).is_gt(),
        Bound::Unbounded => true,
    };
    above
        && match hi {
            Bound::Included(k) => cmp_keys(key, k).is_le(),
            Bound::Excluded(k) => cmp_keys(key, k).is_lt(),
            Bound::Unbounded => true,
        }
}

/// The tighter of an upper bound and "below `sep`".
fn tighter<'a>(hi: Bound<&'a [u8]>, sep: &'a [u8]) -> Bound<&'a [u8]> {
    match hi {
        Bound::Included(k) | Bound::Excluded(k) if k < sep => hi,
        _ => Bound::Excluded(sep),
    }
}

/// The tighter of a lower bound and "from `sep` on".
fn tighter_lo<'a>(lo: Bound<&'a [u8]>, sep: &'a [u8]) -> Bound<&'a [u8]> {
    match lo {
        Bound::Included(k) | Bound::Excluded(k) if k >= sep => lo,
        _ => Bound::Included(sep),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn v(key: &'static [u8], value: Option<&'static [u8]>, sn: u64) -> Version<'static> {
        Version { key, value, sn }
    }

    #[test]
    fn gc_keeps_what_snapshots_see() {
        let mut versions = vec![
            v(b"a", Some(b"3"), 9),
            v(b"a", None, 6),
            v(b"a", Some(b"1"), 2),
            v(b"b", None, 9),
            v(b"b", Some(b"x"), 1),
            v(b"c", Some(b"y"), 4),
        ];
        let mut scratch = GcScratch::default();
        let mut no_snapshots = versions.clone();
        garbage_collect(&mut no_snapshots, &[], u64::MAX, &mut scratch);
        assert_eq!(no_snapshots, [v(b"a", Some(b"3"), 0), v(b"c", Some(b"y"), 0)]);
        garbage_collect(&mut versions, &[3, 7], u64::MAX, &mut scratch);
        assert_eq!(
            versions,
            [
                v(b"a", Some(b"3"), 9),
                v(b"a", None, 6),
                v(b"a", Some(b"1"), 0),
                v(b"b", None, 9),
                v(b"b", Some(b"x"), 0),
                v(b"c", Some(b"y"), 4),
            ]
        );
    }

    #[test]
    fn bounds_tighten() {
        assert_eq!(tighter(Bound::Unbounded, b"m"), Bound::Excluded(&b"m"[..]));
        assert_eq!(tighter(Bound::Excluded(b"c"), b"m"), Bound::Excluded(&b"c"[..]));
        assert_eq!(tighter(Bound::Included(b"z"), b"m"), Bound::Excluded(&b"m"[..]));
        assert_eq!(tighter_lo(Bound::Unbounded, b"m"), Bound::Included(&b"m"[..]));
        assert_eq!(tighter_lo(Bound::Excluded(b"q"), b"m"), Bound::Excluded(&b"q"[..]));
    }
}
