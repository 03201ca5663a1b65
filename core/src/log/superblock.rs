//! The superblock: where the log starts and ends, kept as two 4 KiB copies written alternately so
//! that a crash while writing one leaves the other intact.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "HELIOLOG"
//!      8     4  format version
//!     12     4  block bytes (4096)
//!     16     8  generation: one more at every write; copy `generation % 2` is the one written
//!     24     8  head: the oldest live log address
//!     32     8  tail: the log address writing resumes at (everything below is in the log)
//!     40     8  segment bytes
//!     48     8  salt: random per log, mixed into every frame checksum
//!     56     4  epoch: recoveries so far; frames written now carry it
//!     60     4  flags: bit 0 set when the log was closed cleanly at `tail` (nothing was written
//!               past it); other bits zero
//!     64  4028  zero (format 2 kept a checkpoint's address at 64; format 3 has no checkpoints)
//!   4092     4  crc32c of bytes 0 .. 4092
//! ```

use core::fmt;

use super::crc32c;

/// Bytes of one superblock copy; the superblock file holds two.
pub const BLOCK_BYTES: usize = 4096;

/// The format version this build writes and reads (4: page records carry a block index; 3: the
/// cleaner relocates live entries; format 2 logs held checkpoints). Logs of other versions are
/// refused, not read.
pub const FORMAT_VERSION: u32 = 4;

const MAGIC: [u8; 8] = *b"HELIOLOG";
const CRC_AT: usize = BLOCK_BYTES - 4;

/// The log's bounds as of one superblock write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Bumped at every write; the larger of two valid copies wins.
    pub generation: u64,
    /// The oldest live log address.
    pub head: u64,
    /// Where writing resumes; everything from `head` to here is in the log.
    pub tail: u64,
    /// Size of each segment file.
    pub segment_bytes: u64,
    /// The log's salt (see [`Stamp`](super::frame::Stamp)).
    pub salt: u64,
    /// Recoveries so far: bumped (and written here) before a recovered log takes new frames.
    pub epoch: u32,
    /// The log was closed cleanly: it ends exactly at `tail`, and recovery reads nothing past
    /// it (where a recycled segment's stale bytes would otherwise have to be told from a tear).
    pub clean: bool,
}

/// Why no superblock copy could be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockError {
    /// Neither copy is intact (wrong magic, size, checksum or slot in both).
    Corrupt,
    /// The newest intact copy was written by another format version.
    Incompatible {
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
}

impl fmt::Display for SuperblockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperblockError::Corrupt => f.write_str("both superblock copies are damaged"),
            SuperblockError::Incompatible { found, expected } => {
                write!(f, "log format version {found}, this build reads version {expected}")
            }
        }
    }
}

impl core::error::Error for SuperblockError {}

impl Superblock {
    /// Which of the two copies (0 or 1) this generation is written to.
    pub fn slot(&self) -> usize {
        (self.generation % 2) as usize
    }

    /// The next generation, with new bounds, for a log still open: write it to its
    /// [`Superblock::slot`].
    pub fn next(&self, head: u64, tail: u64) -> Self {
        debug_assert!(self.head <= head && head <= tail && self.tail <= tail, "log bounds moved back");
        Self { generation: self.generation + 1, head, tail, clean: false, ..*self }
    }

    /// The next generation of a log closed cleanly at `tail` (its durable end).
    pub fn closed(&self, tail: u64) -> Self {
        Self { clean: true, ..self.next(self.head, tail) }
    }

    /// Encodes one copy.
    pub fn encode(&self) -> [u8; BLOCK_BYTES] {
        let mut block = [0u8; BLOCK_BYTES];
        block[..8].copy_from_slice(&MAGIC);
        block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        block[12..16].copy_from_slice(&(BLOCK_BYTES as u32).to_le_bytes());
        block[16..24].copy_from_slice(&self.generation.to_le_bytes());
        block[24..32].copy_from_slice(&self.head.to_le_bytes());
        block[32..40].copy_from_slice(&self.tail.to_le_bytes());
        block[40..48].copy_from_slice(&self.segment_bytes.to_le_bytes());
        block[48..56].copy_from_slice(&self.salt.to_le_bytes());
        block[56..60].copy_from_slice(&self.epoch.to_le_bytes());
        block[60..64].copy_from_slice(&u32::from(self.clean).to_le_bytes());
        let crc = crc32c(&[&block[..CRC_AT]]);
        block[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(Self::decode(&block), Ok(*self));
        block
    }

    /// Decodes one copy.
    pub fn decode(block: &[u8]) -> Result<Self, SuperblockError> {
        let (version, sb) = Self::decode_any_version(block)?;
        if version != FORMAT_VERSION {
            return Err(SuperblockError::Incompatible { found: version, expected: FORMAT_VERSION });
        }
        Ok(sb)
    }

    /// Decodes an intact copy of any format version (the fields read are the same in all).
    fn decode_any_version(block: &[u8]) -> Result<(u32, Self), SuperblockError> {
        if block.len() != BLOCK_BYTES || block[..8] != MAGIC {
            return Err(SuperblockError::Corrupt);
        }
        let crc = u32::from_le_bytes(block[CRC_AT..].try_into().expect("4 bytes"));
        if crc32c(&[&block[..CRC_AT]]) != crc {
            return Err(SuperblockError::Corrupt);
        }
        let half = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"));
        let word = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"));
        if half(12) as usize != BLOCK_BYTES {
            return Err(SuperblockError::Corrupt);
        }
        let sb = Self {
            generation: word(16),
            head: word(24),
            tail: word(32),
            segment_bytes: word(40),
            salt: word(48),
            epoch: half(56),
            clean: half(60) & 1 != 0,
        };
        // A generation that cannot be followed, or an epoch frames cannot carry, is no copy a
        // log wrote.
        let unreachable = sb.generation == u64::MAX || sb.epoch > super::frame::EPOCH_MAX;
        if sb.head > sb.tail || sb.segment_bytes == 0 || half(60) > 1 || unreachable {
            return Err(SuperblockError::Corrupt);
        }
        Ok((half(8), sb))
    }

    /// Chooses between the two copies (slot 0, slot 1): the intact one with the larger
    /// generation, which must sit in its slot. If that one is of another format version, the log
    /// was written by another version after this one: `Incompatible`, never the older copy.
    pub fn choose(slot0: &[u8], slot1: &[u8]) -> Result<Self, SuperblockError> {
        let in_slot = |block, slot| Self::decode_any_version(block).ok().filter(|(_, sb)| sb.slot() == slot);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(generation: u64) -> Superblock {
        Superblock {
            generation,
            head: 4096 * generation,
            tail: 8192 * generation + 7,
            segment_bytes: 1 << 32,
            salt: 0xA5A5_0000_1111_2222,
            epoch: generation as u32 / 2,
            clean: generation % 3 == 0,
        }
    }

    /// The two slots after generations `older` and `older + 1` were written.
    fn slots(older: u64) -> ([u8; BLOCK_BYTES], [u8; BLOCK_BYTES]) {
        let (a, b) = (sb(older), sb(older + 1));
        if a.slot() == 0 {
            (a.encode(), b.encode())
        } else {
            (b.encode(), a.encode())
        }
    }

    fn with_version(mut block: [u8; BLOCK_BYTES], version: u32) -> [u8; BLOCK_BYTES] {
        block[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c(&[&block[..CRC_AT]]);
        block[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        block
    }

    #[test]
    fn newest_intact_copy_wins() {
        let (slot0, slot1) = slots(4);
        assert_eq!(Superblock::choose(&slot0, &slot1), Ok(sb(5)));
        assert_eq!(sb(5).next(sb(6).head, sb(6).tail).slot(), 0);
        // A write torn anywhere in the newer copy falls back to the older one.
        for byte in 0..BLOCK_BYTES {
            let mut torn = slot1;
            torn[byte] ^= 0x40;
            assert_eq!(Superblock::choose(&slot0, &torn), Ok(sb(4)), "byte {byte}");
        }
        // A copy in the wrong slot is not trusted.
        assert_eq!(Superblock::choose(&slot1, &slot0), Err(SuperblockError::Corrupt));
        assert_eq!(Superblock::choose(&[0; BLOCK_BYTES], &[0; BLOCK_BYTES]), Err(SuperblockError::Corrupt));
    }

    /// Copies no log can have written are refused (found by fuzzing: generation u64::MAX has no
    /// next, and an epoch above what frames carry overflowed the next open's epoch).
    #[test]
    fn unreachable_generations_and_epochs_are_corrupt() {
        let epoch_max = crate::log::frame::EPOCH_MAX;
        for (at, field) in
            [(16, u64::MAX.to_le_bytes().to_vec()), (56, (epoch_max + 1).to_le_bytes().to_vec())]
        {
            let mut block = sb(1).encode();
            block[at..at + field.len()].copy_from_slice(&field);
            let crc = crc32c(&[&block[..CRC_AT]]);
            block[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(Superblock::decode(&block), Err(SuperblockError::Corrupt), "field at {at}");
        }
    }

    #[test]
    fn a_newer_copy_of_another_version_is_never_passed_over() {
        let (slot0, slot1) = slots(4);
        let newer_elsewhere = with_version(slot1, 7);
        let err = Superblock::choose(&slot0, &newer_elsewhere).unwrap_err();
        assert_eq!(err, SuperblockError::Incompatible { found: 7, expected: FORMAT_VERSION });
        assert!(alloc::format!("{err}").contains("version 7"));
        // An older copy of another version under a newer one of ours is fine.
        assert_eq!(Superblock::choose(&with_version(slot0, 7), &slot1), Ok(sb(5)));
        assert_eq!(Superblock::decode(&newer_elsewhere), Err(err));
    }
}
