//! The on-disk formats of the log, and the decisions recovery makes on what it reads: where a
//! record starts and ends, whether its bytes are intact, whether a bad record is a torn tail
//! (cut it) or corruption (refuse to open), and which of the two superblock copies to trust.
//!
//! Nothing here does I/O: the runtime reads bytes and asks; it writes what these functions encode.
//! The byte layouts are documented in `docs/log-format.md`.

pub mod batch;
pub(crate) mod block_index;
pub mod buffer;
pub mod chains;
pub mod clean;
pub mod cut;
pub mod fragment;
pub mod frame;
pub mod page;
pub mod recover;
pub mod replay;
pub mod superblock;
pub mod writer;

use crc::{Crc, Table, CRC_32_ISCSI};

/// CRC-32C (Castagnoli), the checksum of every frame and superblock: slice-by-16 tables where
/// the CPU has no CRC-32C instruction.
const CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// The CRC-32C of `bytes`: what every checksum in the log's formats uses.
pub fn crc32c_of(bytes: &[u8]) -> u32 {
    crc32c(&[bytes])
}

/// The checksum of `parts`, as if they were one byte string.
pub(crate) fn crc32c(parts: &[&[u8]]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if hw::available() {
        let mut crc = !0u32;
        for part in parts {
            // SAFETY: the CPU has SSE4.2 (checked by `available`).
            crc = unsafe { hw::update(crc, part) };
        }
        return !crc;
    }
    crc32c_table(parts)
}

/// [`crc32c`] by tables only (the portable path, and the reference for the hardware one).
fn crc32c_table(parts: &[&[u8]]) -> u32 {
    let mut digest = CRC32C.digest();
    for part in parts {
        digest.update(part);
    }
    digest.finalize()
}

/// CRC-32C with the SSE4.2 `crc32` instruction (about 4× the table code here), detected at run
/// time with `cpuid`, which works without `std`.
#[cfg(target_arch = "x86_64")]
mod hw {
    use core::arch::x86_64::{__cpuid, _mm_crc32_u64, _mm_crc32_u8};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// 0: not probed yet, 1: present, 2: absent.
    static SSE42: AtomicU8 = AtomicU8::new(0);

    /// Whether the CPU has the CRC-32C instruction.
    pub fn available() -> bool {
        match SSE42.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                // SAFETY: cpuid leaf 1 exists on every x86-64 CPU (the call is safe in newer
                // Rust, unsafe in the oldest we support).
                #[allow(unused_unsafe)]
                let present = unsafe { __cpuid(1) }.ecx & (1 << 20) != 0;
                SSE42.store(if present { 1 } else { 2 }, Ordering::Relaxed);
                present
            }
        }
    }

    /// Continues a CRC-32C (without its final inversion) over `bytes`.
    ///
    /// # Safety
    /// The CPU must have SSE4.2.
    #[target_feature(enable = "sse4.2")]
    pub unsafe fn update(crc: u32, bytes: &[u8]) -> u32 {
        let mut crc = u64::from(crc);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            crc = _mm_crc32_u64(crc, u64::from_le_bytes(word.try_into().unwrap()));
        }
        let mut crc = crc as u32;
        for &byte in words.remainder() {
            crc = _mm_crc32_u8(crc, byte);
        }
        crc
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(super::crc32c(&[b"1234", b"56789"]), 0xE306_9283);
        assert_eq!(super::crc32c_table(&[b"1234", b"56789"]), 0xE306_9283);
    }

    #[test]
    fn hardware_and_table_crc32c_agree() {
        let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in (0..300).chain([1000, 4095, 4096]) {
            for split in [0, len / 3, len / 2] {
                let (a, b) = bytes[..len].split_at(split);
                assert_eq!(super::crc32c(&[a, b]), super::crc32c_table(&[&bytes[..len]]), "len {len}");
            }
        }
    }
}
