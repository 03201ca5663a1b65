//! The on-disk formats of the log, and the decisions recovery makes on what it reads: where a
//! record starts and ends, whether its bytes are intact, whether a bad record is a torn tail
//! (cut it) or corruption (refuse to open), and which of the two superblock copies to trust.
//!
//! Nothing here does I/O: the runtime reads bytes and asks; it writes what these functions encode.
//! The byte layouts are documented in `docs/log-format.md`.

pub mod buffer;
pub mod fragment;
pub mod frame;
pub mod superblock;

use crc::{Crc, Table, CRC_32_ISCSI};

/// CRC-32C (Castagnoli), the checksum of every frame and superblock, computed slice-by-16.
const CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// The CRC-32C of `bytes`: what every checksum in the log's formats uses.
pub fn crc32c_of(bytes: &[u8]) -> u32 {
    crc32c(&[bytes])
}

/// The checksum of `parts`, as if they were one byte string.
pub(crate) fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut digest = CRC32C.digest();
    for part in parts {
        digest.update(part);
    }
    digest.finalize()
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(super::crc32c(&[b"1234", b"56789"]), 0xE306_9283);
    }
}
