//! Superblock copies: `Superblock::decode` of arbitrary blocks (of any length), and
//! `Superblock::choose` between two slots, raw from the input or valid copies damaged as the
//! input says.
//!
//! Checks: both agree with a reference decoder written from the byte table in `superblock.rs`
//! (magic, block size, checksum, head ≤ tail, nonzero segments, known flags; the copy with the
//! larger generation among the intact ones in their own slots, never an older copy of this
//! version under a newer one of another); a decoded superblock encodes to a block that decodes
//! to the same value (the same bytes, when the reserved bytes were zero); its next generation,
//! open or closed, goes to the other slot.
//!
//! Input: `u8 mode`, then for mode 0 the two raw slots (4096 bytes each, zero-filled), for mode
//! 1 the fields of two superblocks and the damage to each, for mode 2 one block of any length.
#![no_main]

use helio_core::log::crc32c_of;
use helio_core::log::superblock::{Superblock, SuperblockError, BLOCK_BYTES, FORMAT_VERSION};
use helio_core_fuzz::Input;
use libfuzzer_sys::fuzz_target;

const CRC_AT: usize = BLOCK_BYTES - 4;

/// An intact copy of any version, as the byte table says.
fn reference_any(block: &[u8]) -> Option<(u32, Superblock)> {
    if block.len() != BLOCK_BYTES || &block[..8] != b"HELIOLOG" {
        return None;
    }
    let half = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
    let word = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().unwrap());
    if crc32c_of(&block[..CRC_AT]) != half(CRC_AT) || half(12) as usize != BLOCK_BYTES {
        return None;
    }
    let sb = Superblock {
        generation: word(16),
        head: word(24),
        tail: word(32),
        segment_bytes: word(40),
        salt: word(48),
        epoch: half(56),
        clean: half(60) == 1,
    };
    // Flags: bit 0 (closed cleanly) only; a generation that can be followed, an epoch frames
    // can carry.
    let reachable = sb.generation != u64::MAX && sb.epoch <= helio_core::log::frame::EPOCH_MAX;
    (sb.head <= sb.tail && sb.segment_bytes != 0 && half(60) <= 1 && reachable).then_some((half(8), sb))
}

fn reference_decode(block: &[u8]) -> Result<Superblock, SuperblockError> {
    match reference_any(block) {
        None => Err(SuperblockError::Corrupt),
        Some((FORMAT_VERSION, sb)) => Ok(sb),
        Some((found, _)) => Err(SuperblockError::Incompatible { found, expected: FORMAT_VERSION }),
    }
}

fn reference_choose(slot0: &[u8], slot1: &[u8]) -> Result<Superblock, SuperblockError> {
    let in_slot = |block, slot| reference_any(block).filter(|(_, sb)| sb.generation % 2 == slot);
    let newest = match (in_slot(slot0, 0), in_slot(slot1, 1)) {
        (Some(a), Some(b)) => {
            if a.1.generation >= b.1.generation {
                a
            } else {
                b
            }
        }
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => return Err(SuperblockError::Corrupt),
    };
    match newest {
        (FORMAT_VERSION, sb) => Ok(sb),
        (found, _) => Err(SuperblockError::Incompatible { found, expected: FORMAT_VERSION }),
    }
}

/// `decode` of one block, checked.
fn decode_checked(block: &[u8], input: &mut Input<'_>) -> Result<Superblock, SuperblockError> {
    let got = Superblock::decode(block);
    assert_eq!(got, reference_decode(block), "decode disagrees with the byte table");
    if let Ok(sb) = got {
        let again = sb.encode();
        assert_eq!(Superblock::decode(&again), Ok(sb), "a re-encoded superblock decodes to another");
        if block[64..CRC_AT].iter().all(|&b| b == 0) {
            assert_eq!(&again[..], block, "re-encoding gives other bytes");
        }
        assert_eq!(sb.slot(), (sb.generation % 2) as usize);
        // What open does with it: the next generation, with bounds that only move forward, goes
        // to the other slot. `decode` refuses generation u64::MAX, which has no next; the next
        // of u64::MAX - 1 is that one (no log writes 2^64 - 2 superblocks).
        if sb.generation == u64::MAX - 1 {
            return got;
        }
        let head = sb.head.saturating_add(u64::from(input.u16()));
        let tail = sb.tail.max(head).saturating_add(u64::from(input.u16()));
        let next = sb.next(head, tail);
        assert_eq!(
            (next.generation, next.head, next.tail, next.clean),
            (sb.generation + 1, head, tail, false)
        );
        assert_eq!((next.segment_bytes, next.salt, next.epoch), (sb.segment_bytes, sb.salt, sb.epoch));
        assert_ne!(next.slot(), sb.slot());
        assert_eq!(Superblock::decode(&next.encode()), Ok(next));
        // And at a clean close.
        let closed = sb.closed(tail);
        assert_eq!(closed, Superblock { clean: true, ..sb.next(sb.head, tail) });
        assert_eq!(Superblock::decode(&closed.encode()), Ok(closed));
    }
    got
}

fn choose_checked(slot0: &[u8], slot1: &[u8], input: &mut Input<'_>) {
    let got = Superblock::choose(slot0, slot1);
    assert_eq!(got, reference_choose(slot0, slot1), "choose disagrees with the rule");
    // Whichever it took decodes on its own to the same value.
    if let Ok(sb) = got {
        let from = if sb.slot() == 0 { slot0 } else { slot1 };
        assert_eq!(Superblock::decode(from), Ok(sb));
    }
    let _ = decode_checked(slot0, input);
    let _ = decode_checked(slot1, input);
}

/// One 4096-byte block from the input, zero-filled.
fn block(input: &mut Input<'_>) -> Vec<u8> {
    let mut out = input.bytes(BLOCK_BYTES).to_vec();
    out.resize(BLOCK_BYTES, 0);
    out
}

/// A valid copy from the input's values, then the damage the input says.
fn damaged(input: &mut Input<'_>, generation: u64) -> Vec<u8> {
    let head = input.u64() >> (input.u8() % 64);
    let sb = Superblock {
        // A copy a log can write: its generation has a next, its epoch fits a frame.
        generation: generation.min(u64::MAX - 2),
        head,
        tail: head.saturating_add(input.u64() >> (input.u8() % 64)),
        segment_bytes: input.u64().max(1),
        salt: input.u64(),
        epoch: input.u32() % (helio_core::log::frame::EPOCH_MAX + 1),
        clean: input.u8() & 1 != 0,
    };
    let mut block = sb.encode().to_vec();
    let how = input.u8();
    for _ in 0..how % 4 {
        let at = usize::from(input.u16()) % BLOCK_BYTES;
        block[at] ^= input.u8().max(1);
    }
    if how & 0x10 != 0 {
        // Another format version (an older or newer build wrote it).
        block[8..12].copy_from_slice(&input.u32().to_le_bytes());
    }
    if how & 0x20 != 0 {
        // A field overwritten, e.g. head past tail, zero segments, another block size.
        let at = [12, 24, 32, 40, 56, 60, 64][usize::from(input.u8()) % 7];
        block[at..at + 8].copy_from_slice(&input.u64().to_le_bytes());
    }
    if how & 0x40 != 0 {
        // The checksum made right again after the damage: only the field checks are left.
        let crc = crc32c_of(&block[..CRC_AT]);
        block[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    }
    if how & 0x80 != 0 {
        // A torn write: the block cut short, the rest zeros.
        let at = usize::from(input.u16()) % BLOCK_BYTES;
        block[at..].fill(0);
    }
    block
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 3 {
        0 => {
            let (slot0, slot1) = (block(&mut input), block(&mut input));
            choose_checked(&slot0, &slot1, &mut input);
        }
        1 => {
            // Two generations in a row (or any two), in their slots or the wrong way round.
            let flags = input.u8();
            let older = input.u64() >> (flags % 64);
            let newer = if flags & 0x40 != 0 { input.u64() } else { older.wrapping_add(1) };
            let (a, b) = (damaged(&mut input, older), damaged(&mut input, newer));
            let (slot0, slot1) = if older.is_multiple_of(2) != (flags & 0x80 != 0) { (a, b) } else { (b, a) };
            choose_checked(&slot0, &slot1, &mut input);
        }
        _ => {
            let len = input.len(BLOCK_BYTES + 8);
            let mut raw = input.bytes(len).to_vec();
            raw.resize(len, 0);
            let _ = decode_checked(&raw, &mut input);
        }
    }
});
