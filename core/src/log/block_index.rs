//! What a point read needs of a page record, kept in memory with the page: where the record's
//! blocks lie, their checksums and first keys (its front's block index), and, when the record's
//! keys were seen, a filter of them. With it, a read of a swapped-out page reads, of each record
//! of the chain, only the one block that can hold its key, in one read, and skips without a read
//! the records whose filter says they cannot hold it.
//!
//! An index is a hint, never an answer: every block read through it is checked by the block's
//! checksum, and a read that fails goes back to the record's front (see `crate::paging`).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::mem::size_of;

use super::page::{BlockRef, PageFront};
use crate::sync::{AtomicBool, Ordering};

/// One page record's block index and key filter (see the module docs).
#[derive(Debug)]
pub struct BlockIndex {
    /// The log address of the record before it in its page's chain; `None` for an image.
    pub prev: Option<u64>,
    /// Where the entries start in the payload.
    entries_at: u32,
    /// Per block: where it ends in the payload, its checksum, and where its first key ends in
    /// `keys` (it starts where the previous block's ends).
    blocks: Box<[(u32, u32, u32)]>,
    /// The blocks' first keys, one after the other.
    keys: Box<[u8]>,
    /// The sorted fingerprints of the record's keys ([`fingerprint`]); `None` when the index was
    /// built from the front alone.
    filter: Option<Box<[u16]>>,
    /// Cleared once a block read through the index failed: the record cannot be read in parts
    /// (it was written in pieces, say), so reads go to its front, which says so.
    parts: AtomicBool,
}

impl BlockIndex {
    /// The index of the record whose front is `front`, with the filter of `keys` (the record's
    /// keys, in order, a key's versions repeated) if given.
    pub fn new<'k>(front: &PageFront<'_>, keys: Option<impl Iterator<Item = &'k [u8]>>) -> Self {
        let mut firsts = Vec::new();
        let blocks = front
            .blocks()
            .map(|b| {
                firsts.extend_from_slice(b.first);
                (b.end as u32, b.crc, firsts.len() as u32)
            })
            .collect();
        let filter = keys.map(|keys| {
            let mut prints: Vec<u16> = keys.map(fingerprint).collect();
            prints.sort_unstable();
            prints.dedup();
            prints.into_boxed_slice()
        });
        Self {
            prev: front.prev,
            entries_at: front.len() as u32,
            blocks,
            keys: firsts.into_boxed_slice(),
            filter,
            parts: AtomicBool::new(true),
        }
    }

    /// Whether the record may hold a version of `key`: false only if its filter says it holds
    /// none.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        self.filter.as_ref().is_none_or(|f| f.binary_search(&fingerprint(key)).is_ok())
    }

    /// Whether it has the filter of the record's keys.
    pub fn has_filter(&self) -> bool {
        self.filter.is_some()
    }

    /// Whether reads through the index have not failed yet (see [`BlockIndex::failed`]).
    pub fn readable_in_parts(&self) -> bool {
        self.parts.load(Ordering::Relaxed)
    }

    /// Notes that a block read through the index failed its checks.
    pub fn failed(&self) {
        self.parts.store(false, Ordering::Relaxed);
    }

    /// The block that holds `key`'s versions if the record has any: the last whose first key
    /// is at or below it (as [`PageFront::block_of`]). `None`: the record holds no version of it.
    pub fn block_of(&self, key: &[u8]) -> Option<BlockRef<'_>> {
        let first = |i: usize| -> &[u8] {
            let start = if i == 0 { 0 } else { self.blocks[i - 1].2 as usize };
            &self.keys[start..self.blocks[i].2 as usize]
        };
        // Binary search for the number of blocks whose first key is at or below `key`.
        let (mut lo, mut hi) = (0, self.blocks.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if first(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = lo.checked_sub(1)?;
        let start = if i == 0 { self.entries_at } else { self.blocks[i - 1].0 };
        let (end, crc, _) = self.blocks[i];
        Some(BlockRef { start: start as usize, end: end as usize, crc, first: first(i) })
    }

    /// Bytes of memory the index holds.
    pub fn bytes(&self) -> usize {
        size_of::<Self>()
            + self.blocks.len() * size_of::<(u32, u32, u32)>()
            + self.keys.len()
            + self.filter.as_ref().map_or(0, |f| f.len() * size_of::<u16>())
    }
}

/// A 16-bit fingerprint of a key: a record holding `n` distinct keys passes a key it does not
/// hold with a chance of about `n / 65536`.
fn fingerprint(key: &[u8]) -> u16 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(K).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h ^= h >> 32;
    (h.wrapping_mul(K) >> 48) as u16
}
