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
//!     48  4044  zero
//!   4092     4  crc32c of bytes 0 .. 4092
//! ```

use core::fmt;

use super::crc32c;

/// Bytes of one superblock copy; the superblock file holds two.
pub const BLOCK_BYTES: usize = 4096;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

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
}

/// Why no superblock copy could be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuperblockError {
    /// Neither copy is intact (wrong magic or checksum in both).
    Corrupt,
    /// An intact copy was written by another format version.
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

    /// The next generation, with new bounds: write it to its [`Superblock::slot`].
    pub fn next(&self, head: u64, tail: u64) -> Self {
        debug_assert!(self.head <= head && head <= tail && self.tail <= tail, "log bounds moved back");
        Self { generation: self.generation + 1, head, tail, ..*self }
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
        let crc = crc32c(&[&block[..CRC_AT]]);
        block[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(Self::decode(&block), Ok(*self));
        block
    }

    /// Decodes one copy.
    pub fn decode(block: &[u8]) -> Result<Self, SuperblockError> {
        if block.len() != BLOCK_BYTES || block[..8] != MAGIC {
            return Err(SuperblockError::Corrupt);
        }
        let crc = u32::from_le_bytes(block[CRC_AT..].try_into().expect("4 bytes"));
        if crc32c(&[&block[..CRC_AT]]) != crc {
            return Err(SuperblockError::Corrupt);
        }
        let word = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"));
        let version = u32::from_le_bytes(block[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(SuperblockError::Incompatible { found: version, expected: FORMAT_VERSION });
        }
        let sb = Self { generation: word(16), head: word(24), tail: word(32), segment_bytes: word(40) };
        if sb.head > sb.tail || sb.segment_bytes == 0 {
            return Err(SuperblockError::Corrupt);
        }
        Ok(sb)
    }

    /// Chooses between the two copies: the intact one with the larger generation. A copy of
    /// another format version is reported as such, unless the other copy is usable.
    pub fn choose(first: &[u8], second: &[u8]) -> Result<Self, SuperblockError> {
        match (Self::decode(first), Self::decode(second)) {
            (Ok(a), Ok(b)) => Ok(if a.generation >= b.generation { a } else { b }),
            (Ok(sb), Err(_)) | (Err(_), Ok(sb)) => Ok(sb),
            (Err(e @ SuperblockError::Incompatible { .. }), _) | (_, Err(e)) => Err(e),
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
        }
    }

    #[test]
    fn newest_intact_copy_wins() {
        let (old, new) = (sb(4).encode(), sb(5).encode());
        assert_eq!(Superblock::choose(&old, &new), Ok(sb(5)));
        assert_eq!(Superblock::choose(&new, &old), Ok(sb(5)));
        assert_eq!(sb(4).next(sb(5).head, sb(5).tail).slot(), 1);
        // A write torn anywhere in the newer copy falls back to the older one.
        for byte in 0..BLOCK_BYTES {
            let mut torn = new;
            torn[byte] ^= 0x40;
            assert_eq!(Superblock::choose(&old, &torn), Ok(sb(4)), "byte {byte}");
        }
        assert_eq!(Superblock::choose(&[0; BLOCK_BYTES], &[0; BLOCK_BYTES]), Err(SuperblockError::Corrupt));
    }

    #[test]
    fn another_format_version_is_named() {
        let mut block = sb(1).encode();
        block[8..12].copy_from_slice(&7u32.to_le_bytes());
        let crc = crc32c(&[&block[..CRC_AT]]);
        block[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        let err = Superblock::choose(&block, &[0; BLOCK_BYTES]).unwrap_err();
        assert_eq!(err, SuperblockError::Incompatible { found: 7, expected: FORMAT_VERSION });
        assert!(alloc::format!("{err}").contains("version 7"));
        assert_eq!(Superblock::choose(&block, &sb(0).encode()), Ok(sb(0)));
    }
}
