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
/// `key`. `None` if absent or deleted.
pub(crate) fn lookup<'g>(head: &'g Record, key: &[u8], sn: u64) -> Option<&'g [u8]> {
    let key_prefix = base::prefix(key);
    let mut rec = head;
    loop {
        match &rec.body {
            Body::Insert { prefix, .. } | Body::Delete { prefix, .. } if *prefix != key_prefix => {}
            Body::Insert { .. } | Body::Delete { .. } => {
                let v = rec.version().expect("write record");
                if v.key == key && v.sn <= sn {
                    return v.value;
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
            Body::Base { base, .. } => return base.find(key, sn).flatten(),
        }
        // SAFETY: every record but a base has a next one, alive as long as this one.
        rec = unsafe { &*rec.next };
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
    /// Adds every version on the chain from `head` whose key lies within `lo..hi`.
    pub(crate) fn gather<'a>(&mut self, head: &'g Record, lo: Bound<&'a [u8]>, hi: Bound<&'a [u8]>)
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
                    self.gather(absorbed, lo_right, hi);
                    hi = tighter(hi, sep);
                }
                Body::Remove { .. } => {}
                Body::Base { base, .. } => {
                    let first = match lo {
                        Bound::Included(k) => base.seek(k, true),
                        Bound::Excluded(k) => base.seek(k, false),
                        Bound::Unbounded => 0,
                    };
                    let end = match hi {
                        // Every entry of a base lies below the high key it was built with: a
                        // bound at or above that (usually the page's own high key, the same
                        // bytes) needs no search.
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
                    return;
                }
            }
            // SAFETY: every record but a base has a next one, alive as long as this one.
            rec = unsafe { &*rec.next };
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
pub(crate) fn garbage_collect<'g>(sorted: &mut Vec<Version<'g>>, live: &[u64], scratch: &mut GcScratch) {
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
                v.sn = mvcc::compacted_sn(v.sn, live);
                sorted[kept] = v;
                kept += 1;
            }
        }
        // The oldest kept version, if a tombstone, hides nothing any more.
        while kept > group_kept && sorted[kept - 1].value.is_none() {
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
        garbage_collect(&mut no_snapshots, &[], &mut scratch);
        assert_eq!(no_snapshots, [v(b"a", Some(b"3"), 0), v(b"c", Some(b"y"), 0)]);
        garbage_collect(&mut versions, &[3, 7], &mut scratch);
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
