//! The index layer's types: the skiplist key and the node value that owns a page cell.
//!
//! A skiplist search compares the query with a node's key at every step; with plain `Box<[u8]>`
//! keys each comparison would chase a pointer to the key bytes, one cache miss per step. An
//! [`IndexKey`] keeps the first 8 bytes as an integer and the next 16 inline, so searches for
//! keys up to 24 bytes never leave the nodes (and queries need no allocation).

use alloc::boxed::Box;
use core::cmp::Ordering;
use core::ptr::NonNull;

use crossbeam_skiplist::base::SkipList;

use crate::page::base::prefix;
use crate::page::record::PageCell;

/// The index: page low key → the page's cell.
pub(crate) type Index = SkipList<IndexKey, CellBox>;

/// Bytes after the first 8 that are kept inline.
const INLINE: usize = 16;

/// A key as the index orders it: by `prefix` (first 8 bytes, big-endian, zero padded), then by
/// the length of those first bytes, then by the rest. That is exactly byte-wise order.
#[derive(Clone)]
pub(crate) struct IndexKey {
    prefix: u64,
    head_len: u8,
    rest: Rest,
}

#[derive(Clone)]
enum Rest {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl IndexKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        let head_len = key.len().min(8);
        let tail = &key[head_len..];
        let rest = if tail.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..tail.len()].copy_from_slice(tail);
            Rest::Inline { len: tail.len() as u8, bytes }
        } else {
            Rest::Heap(tail.into())
        };
        Self { prefix: prefix(key), head_len: head_len as u8, rest }
    }

    fn rest(&self) -> &[u8] {
        match &self.rest {
            Rest::Inline { len, bytes } => &bytes[..*len as usize],
            Rest::Heap(bytes) => bytes,
        }
    }
}

impl Ord for IndexKey {
    fn cmp(&self, other: &Self) -> Ordering {
        // Equal prefixes with different head lengths: the shorter key is a zero-padded prefix of
        // the longer, so it sorts first; equal head lengths below 8 mean equal keys.
        // Two inline rests compare as big-endian integers of their zero-padded bytes, then by
        // length (a zero-padded rest equal to a longer one is a prefix of it): byte-wise order
        // without a call to `memcmp`, which dominated searches of short keys.
        self.prefix.cmp(&other.prefix).then(self.head_len.cmp(&other.head_len)).then_with(|| {
            match (&self.rest, &other.rest) {
                (Rest::Inline { len: a, bytes: x }, Rest::Inline { len: b, bytes: y }) => {
                    u128::from_be_bytes(*x).cmp(&u128::from_be_bytes(*y)).then(a.cmp(b))
                }
                _ => self.rest().cmp(other.rest()),
            }
        })
    }
}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for IndexKey {}

/// Owns a boxed [`PageCell`] on an index node; frees it when the node is reclaimed.
pub(crate) struct CellBox(pub(crate) NonNull<PageCell>);

// SAFETY: the cell is shared through atomics only.
unsafe impl Send for CellBox {}
// SAFETY: as above.
unsafe impl Sync for CellBox {}

impl CellBox {
    pub(crate) fn cell(&self) -> &PageCell {
        // SAFETY: the box is alive as long as the node, and the node as long as the pinned reader.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for CellBox {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` in `Tree::new_cell`; the node owning it is gone. The
        // chain is not freed here: it is owned by the tree, or by the page that absorbed this one.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn orders_like_bytes() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\0\0\0\0\0\0\0".to_vec(),
            b"a\0\0\0\0\0\0\0\0".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefgh\0\xff".to_vec(),
            b"abcdefgh\x01".to_vec(),
            b"abcdefgh\x01\0".to_vec(),
            b"abcdefghijklmnoo\xff".to_vec(),
            b"abcdefghijklmnop".to_vec(),
            b"abcdefghijklmnopqrstuvwx".to_vec(),
            b"abcdefghijklmnopqrstuvwxy".to_vec(),
            b"abcdefghijklmnopqrstuvwxz".to_vec(),
            b"abcdefghz".to_vec(),
            vec![0xff; 30],
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(IndexKey::new(a).cmp(&IndexKey::new(b)), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
