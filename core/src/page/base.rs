//! The base page: a page's consolidated entries, sorted, in one compact immutable block.
//!
//! Layout: slot `i` (16 bytes) holds the first 8 bytes of entry `i`'s key (big-endian, zero padded) and the
//! entry's offset into `data`, so a binary search touches one dense array and the slot it ends on
//! already says where the entry is. In `data`, entry `i` is
//! encoded as `varint key_len, varint (value_len << 1 | tombstone), varint sn, key, value`.
//! Entries are sorted by key; versions of one key are adjacent, newest first.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::ops::Range;

/// One version of a key as stored on a page: `value` is `None` for a tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Version<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    pub sn: u64,
}

impl Version<'_> {
    /// Bytes this version takes in a base page's data block plus its slot.
    pub(crate) fn encoded_len(&self) -> usize {
        let value_len = self.value.map_or(0, <[u8]>::len);
        varint_len(self.key.len() as u64)
            + varint_len((value_len as u64) << 1)
            + varint_len(self.sn)
            + self.key.len()
            + value_len
            + SLOT_BYTES
    }
}

/// Bytes of the per-entry slot: a key prefix and an offset.
const SLOT_BYTES: usize = 16;

/// A consolidated, immutable, sorted run of versions.
pub(crate) struct Base {
    /// The prefix of every `FENCE_STRIDE`-th slot: a search reads these few cache lines first and
    /// then one block of slots, instead of probing all over the slot array.
    fences: Box<[u64]>,
    slots: Box<[Slot]>,
    data: Box<[u8]>,
}

/// A base entry's key prefix and where it is encoded. (A 4-byte offset would save 4 bytes an
/// entry but cap a page at 4 GiB, which a key with many large versions held by snapshots can
/// exceed.)
#[derive(Clone, Copy)]
struct Slot {
    prefix: u64,
    offset: u64,
}

const _: () = assert!(core::mem::size_of::<Slot>() == SLOT_BYTES);

/// Slots per fence: a block of 16 slots spans four cache lines.
const FENCE_STRIDE: usize = 16;

impl Base {
    /// Encodes `versions`, which must be sorted by key with each key's versions newest first.
    pub(crate) fn build<'a>(versions: impl ExactSizeIterator<Item = Version<'a>> + Clone) -> Self {
        let data_len: usize = versions.clone().map(|v| v.encoded_len() - SLOT_BYTES).sum();
        let mut slots = Vec::with_capacity(versions.len());
        let mut data = Vec::with_capacity(data_len);
        let mut previous: Option<&[u8]> = None;
        for v in versions {
            debug_assert!(previous.is_none_or(|p| p <= v.key), "base entries out of order");
            previous = Some(v.key);
            let offset = data.len() as u64;
            slots.push(Slot { prefix: prefix(v.key), offset });
            let value = v.value.unwrap_or(&[]);
            put_varint(&mut data, v.key.len() as u64);
            put_varint(&mut data, ((value.len() as u64) << 1) | u64::from(v.value.is_none()));
            put_varint(&mut data, v.sn);
            data.extend_from_slice(v.key);
            data.extend_from_slice(value);
        }
        debug_assert_eq!(data.len(), data_len);
        let fences = slots.iter().step_by(FENCE_STRIDE).map(|s| s.prefix).collect();
        Self { fences, slots: slots.into_boxed_slice(), data: data.into_boxed_slice() }
    }

    /// Bytes of memory the base owns.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.fences.len() * 8 + self.slots.len() * SLOT_BYTES + self.data.len()
    }

    /// Number of versions stored.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Encoded bytes, as [`Version::encoded_len`] counts them.
    #[cfg(test)]
    pub(crate) fn encoded_bytes(&self) -> usize {
        self.data.len() + self.len() * SLOT_BYTES
    }

    /// Decodes entry `i`.
    pub(crate) fn get(&self, i: usize) -> Version<'_> {
        let mut at = self.slots[i].offset as usize;
        let key_len = get_varint(&self.data, &mut at) as usize;
        let value_word = get_varint(&self.data, &mut at);
        let sn = get_varint(&self.data, &mut at);
        let key = &self.data[at..at + key_len];
        at += key_len;
        let value_len = (value_word >> 1) as usize;
        let value = (value_word & 1 == 0).then(|| &self.data[at..at + value_len]);
        Version { key, value, sn }
    }

    /// Asks the CPU to start loading entry `i`'s bytes (if there is an entry `i`), so that a
    /// walk over consecutive entries finds them in cache.
    #[inline]
    pub(crate) fn prefetch_entry(&self, i: usize) {
        if let Some(slot) = self.slots.get(i) {
            // Two cache lines: the header and key, and most of a small value.
            let at = slot.offset as usize;
            prefetch(&self.data[at..(at + 128).min(self.data.len())]);
        }
    }

    /// The key of entry `i`.
    pub(crate) fn key(&self, i: usize) -> &[u8] {
        self.get(i).key
    }

    /// Index of the first entry whose key is `>= key` (or `> key` when `inclusive` is false).
    pub(crate) fn seek(&self, key: &[u8], inclusive: bool) -> usize {
        let p = prefix(key);
        // The first slot with a prefix >= p lies in the block after the last fence below p.
        // Each binary search touches every line of its array in the worst case, one miss after
        // another; asking for all of them first overlaps those misses.
        prefetch(&self.fences);
        let block = self.fences.partition_point(|&f| f < p).saturating_sub(1);
        let start = block * FENCE_STRIDE;
        let end = (start + FENCE_STRIDE + 1).min(self.len());
        prefetch(&self.slots[start..end]);
        let lo = start + self.slots[start..end].partition_point(|s| { s.prefix } < p);
        // Usually no slot or one shares the prefix; long runs (keys with a common 8-byte start)
        // fall back to a binary search.
        let mut hi = lo;
        while hi < self.len() && hi < lo + 4 && { self.slots[hi].prefix } == p {
            hi += 1;
        }
        if hi == lo + 4 {
            hi += self.slots[hi..].partition_point(|s| { s.prefix } == p);
        }
        lo + (lo..hi).collect_partition(|i| match self.key(i).cmp(key) {
            Ordering::Less => true,
            Ordering::Equal => !inclusive,
            Ordering::Greater => false,
        })
    }

    /// Whether entries `i - 1` and `i` hold versions of one key (their slots decide most cases).
    fn same_key_as_previous(&self, i: usize) -> bool {
        let (this, previous) = (self.slots[i].prefix, self.slots[i - 1].prefix);
        this == previous && self.key(i) == self.key(i - 1)
    }

    /// The end of the run of versions of entry `start`'s key, not looking past `limit`.
    pub(crate) fn key_run_end(&self, start: usize, limit: usize) -> usize {
        (start + 1..limit).find(|&i| !self.same_key_as_previous(i)).unwrap_or(limit)
    }

    /// The start of the run of versions of entry `last`'s key, not looking before `limit`.
    pub(crate) fn key_run_start(&self, last: usize, limit: usize) -> usize {
        (limit + 1..=last).rev().find(|&i| !self.same_key_as_previous(i)).unwrap_or(limit)
    }

    /// The key of the run `versions` (one key's versions, newest first) and its value visible
    /// at snapshot `sn`: `None` for a tombstone or when no version is visible.
    pub(crate) fn visible(&self, versions: Range<usize>, sn: u64) -> (&[u8], Option<&[u8]>) {
        let first = self.get(versions.start);
        if first.sn <= sn {
            return (first.key, first.value);
        }
        let value = versions.skip(1).map(|i| self.get(i)).find(|v| v.sn <= sn).and_then(|v| v.value);
        (first.key, value)
    }

    /// The version of `key` visible at snapshot `sn`: `Some(None)` for a tombstone, `None` when
    /// this base holds no visible version of the key.
    pub(crate) fn find(&self, key: &[u8], sn: u64) -> Option<Option<&[u8]>> {
        let mut i = self.seek(key, true);
        while i < self.len() {
            let v = self.get(i);
            if v.key != key {
                return None;
            }
            if v.sn <= sn {
                return Some(v.value);
            }
            i += 1;
        }
        None
    }
}

/// Binary search over a range of indices with a predicate true for a prefix of them.
trait CollectPartition {
    fn collect_partition(self, pred: impl FnMut(usize) -> bool) -> usize;
}

impl CollectPartition for core::ops::Range<usize> {
    fn collect_partition(self, mut pred: impl FnMut(usize) -> bool) -> usize {
        let (mut lo, mut hi) = (self.start, self.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo - self.start
    }
}

/// The first 8 bytes of a key, big-endian, zero padded: orders like the key when they differ.
pub(crate) fn prefix(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(bytes)
}

/// Asks the CPU to bring every cache line of `items` in, without waiting for any.
#[inline]
fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let start = items.as_ptr().cast::<i8>();
        for line in (0..core::mem::size_of_val(items)).step_by(64) {
            // SAFETY: a prefetch is a hint; the address is within `items`.
            unsafe { core::arch::x86_64::_mm_prefetch(start.add(line), core::arch::x86_64::_MM_HINT_T0) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}

/// Byte-wise order of two keys, deciding most pairs on their first 8 bytes as one integer
/// comparison instead of a call to `memcmp` (which showed in profiles of short-key workloads).
#[inline]
pub(crate) fn cmp_keys(a: &[u8], b: &[u8]) -> Ordering {
    if let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = data[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn v<'a>(key: &'a [u8], value: Option<&'a [u8]>, sn: u64) -> Version<'a> {
        Version { key, value, sn }
    }

    #[test]
    fn build_then_decode_round_trips() {
        let long = [7u8; 300];
        let versions = [
            v(b"", Some(b"empty"), 0),
            v(b"a", Some(b"1"), 9),
            v(b"a", None, 5),
            v(b"a", Some(b"0"), 2),
            v(b"abcdefgh", Some(&long), 1 << 40),
            v(b"abcdefgh\0", Some(b""), 3),
            v(b"abcdefghz", None, 0),
        ];
        let base = Base::build(versions.iter().copied());
        assert_eq!(base.len(), versions.len());
        for (i, want) in versions.iter().enumerate() {
            assert_eq!(base.get(i), *want);
        }
        let expected: usize = versions.iter().map(Version::encoded_len).sum();
        assert_eq!(base.encoded_bytes(), expected);
        assert_eq!(base.seek(b"a", true), 1);
        assert_eq!(base.seek(b"a", false), 4);
        assert_eq!(base.seek(b"abcdefgh\0", true), 5);
        assert_eq!(base.seek(b"abcdefgh\0", false), 6);
        assert_eq!(base.seek(b"zz", true), 7);
        assert_eq!(base.find(b"a", u64::MAX), Some(Some(&b"1"[..])));
        assert_eq!(base.find(b"a", 8), Some(None));
        assert_eq!(base.find(b"a", 4), Some(Some(&b"0"[..])));
        assert_eq!(base.find(b"a", 1), None);
        assert_eq!(base.find(b"abcdefghz", 0), Some(None));
        assert_eq!(base.find(b"b", u64::MAX), None);
    }

    #[test]
    fn seek_agrees_with_a_linear_scan() {
        // Runs of shared 8-byte prefixes of every length, across fence blocks.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for run in 0u8..40 {
            for i in 0..run {
                keys.push(vec![run, 0, 0, 0, 0, 0, 0, 0, i]);
            }
            keys.push(vec![run]);
        }
        keys.sort();
        let base = Base::build(keys.iter().map(|k| v(k, Some(b""), 0)));
        let mut probes = keys.clone();
        probes.extend(keys.iter().map(|k| [&k[..], &[0]].concat()));
        probes.push(vec![255]);
        for probe in &probes {
            for inclusive in [true, false] {
                let want = keys
                    .iter()
                    .filter(|k| if inclusive { k[..] < probe[..] } else { k[..] <= probe[..] })
                    .count();
                assert_eq!(base.seek(probe, inclusive), want, "{probe:?} {inclusive}");
            }
        }
    }
}
