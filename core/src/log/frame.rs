//! Frames: how one record sits in the log, and how a reader tells a whole record from a torn or
//! corrupt one.
//!
//! ```text
//! offset  size  field
//!      0     4  crc32c of bytes 4 .. 24 + len
//!      4     4  len: payload bytes
//!      8     8  lsn: the log address of this frame (where it was written)
//!     16     4  durable gap: lsn minus the address below which the log was durable when this
//!               frame was encoded (saturating)
//!     20     1  kind
//!     21     3  zero
//!     24   len  payload, then zero padding to a multiple of 8
//! ```
//!
//! Stamping each frame with its own address means stale bytes (from a reused file, a misdirected
//! write, an old lap of the log) never pass as a record where they lie. The durable gap is what
//! lets recovery tell a torn tail from corruption (see [`classify_failure`]).

use super::crc32c;

/// Bytes of a frame header.
pub const HEADER_BYTES: usize = 24;

/// Frames start at log addresses that are multiples of this.
pub const ALIGN: usize = 8;

/// Largest payload a frame can carry.
pub const PAYLOAD_BYTES_MAX: usize = u32::MAX as usize - HEADER_BYTES - ALIGN;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u8)]
pub enum Kind {
    /// Filler up to a boundary; its payload means nothing.
    Pad = 1,
    /// A durable write: an [`Op`] setting a key.
    Put = 2,
    /// A durable write: an [`Op`] removing a key.
    Delete = 3,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Kind::Pad,
            2 => Kind::Put,
            3 => Kind::Delete,
            _ => return None,
        })
    }
}

/// Total log bytes a frame with a `payload_len`-byte payload takes, padding included.
pub const fn frame_bytes(payload_len: usize) -> usize {
    (HEADER_BYTES + payload_len).next_multiple_of(ALIGN)
}

/// Encodes a frame into `out`, which must be exactly [`frame_bytes`]`(payload.len())` long; `lsn`
/// must be a multiple of [`ALIGN`] and `durable_lsn` at most `lsn`.
pub fn encode(out: &mut [u8], lsn: u64, durable_lsn: u64, kind: Kind, payload: &[u8]) {
    encode_with(out, lsn, durable_lsn, kind, payload.len(), |p| p.copy_from_slice(payload));
}

/// Like [`encode`], with `fill` writing the `payload_len` payload bytes in place (no extra copy).
pub fn encode_with(
    out: &mut [u8],
    lsn: u64,
    durable_lsn: u64,
    kind: Kind,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) {
    assert!(payload_len <= PAYLOAD_BYTES_MAX, "frame payload of {payload_len} bytes");
    assert_eq!(out.len(), frame_bytes(payload_len), "frame buffer of the wrong size");
    assert_eq!(lsn % ALIGN as u64, 0, "unaligned frame address {lsn}");
    assert!(durable_lsn <= lsn, "durable point {durable_lsn} beyond the frame at {lsn}");
    let gap = u32::try_from(lsn - durable_lsn).unwrap_or(u32::MAX);
    out[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[8..16].copy_from_slice(&lsn.to_le_bytes());
    out[16..20].copy_from_slice(&gap.to_le_bytes());
    out[20] = kind as u8;
    out[21..24].fill(0);
    fill(&mut out[HEADER_BYTES..HEADER_BYTES + payload_len]);
    out[HEADER_BYTES + payload_len..].fill(0);
    let crc = crc32c(&[&out[4..HEADER_BYTES + payload_len]]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    // Check the record as a reader will see it, before it leaves our hands.
    debug_assert!(
        matches!(decode(out, lsn), Decoded::Frame(f) if f.kind == kind && f.payload.len() == payload_len)
    );
}

/// A whole, intact frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Where the frame lies in the log.
    pub lsn: u64,
    /// Everything in the log below this address was durable when the frame was written.
    pub durable_lsn: u64,
    /// What it holds.
    pub kind: Kind,
    /// Its payload.
    pub payload: &'a [u8],
    /// Log bytes it takes, padding included: the next frame starts at `lsn + bytes`.
    pub bytes: usize,
}

/// What [`decode`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, intact frame.
    Frame(Frame<'a>),
    /// The header is plausible but the frame runs past the bytes given: read more, or, at the
    /// end of the written log, treat it as a failure at this address.
    NeedMore {
        /// Bytes the whole frame needs.
        bytes: usize,
    },
    /// Not a frame: never written, torn, or corrupt. [`classify_failure`] tells which.
    Invalid(Invalid),
}

/// Why the bytes at an address are not a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The header is all zero: nothing was ever written here.
    Unwritten,
    /// The header names another address: stale or misplaced bytes.
    WrongAddress {
        /// The address the header carries.
        stamped: u64,
    },
    /// The checksum does not match.
    Checksum,
    /// The header is intact but names a kind this version does not know.
    UnknownKind(u8),
    /// Fewer bytes remain than a header takes.
    Truncated,
}

/// Decodes the frame at the start of `buf`, whose first byte is log address `lsn`.
pub fn decode(buf: &[u8], lsn: u64) -> Decoded<'_> {
    let Some(header) = buf.get(..HEADER_BYTES) else {
        return Decoded::Invalid(Invalid::Truncated);
    };
    if header.iter().all(|&b| b == 0) {
        return Decoded::Invalid(Invalid::Unwritten);
    }
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let stamped = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if stamped != lsn {
        return Decoded::Invalid(Invalid::WrongAddress { stamped });
    }
    let payload_len = word(4) as usize;
    if payload_len > PAYLOAD_BYTES_MAX {
        return Decoded::Invalid(Invalid::Checksum);
    }
    let bytes = frame_bytes(payload_len);
    if buf.len() < bytes {
        return Decoded::NeedMore { bytes };
    }
    let end = HEADER_BYTES + payload_len;
    if crc32c(&[&buf[4..end]]) != word(0) {
        return Decoded::Invalid(Invalid::Checksum);
    }
    let Some(kind) = Kind::from_byte(header[20]) else {
        return Decoded::Invalid(Invalid::UnknownKind(header[20]));
    };
    let durable_lsn = lsn.saturating_sub(u64::from(word(16)));
    Decoded::Frame(Frame { lsn, durable_lsn, kind, payload: &buf[HEADER_BYTES..end], bytes })
}

/// What a failure to decode at some address means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A torn tail: nothing at or after the address was ever acknowledged as durable, so the log
    /// ends there and recovery cuts it.
    Torn,
    /// Corruption: a later intact frame says the log was durable past the address, so bytes that
    /// were acknowledged are damaged. Recovery must refuse, naming the address.
    Corrupt {
        /// The intact frame that proves it.
        proof_lsn: u64,
    },
}

/// Decides what a decode failure at `lsn` means, given `rest`: every byte of the written log
/// from `lsn` on (the rest of the segment, or of the log).
///
/// Writes reach the disk in log order and a write is acknowledged only once everything before it
/// is durable. So damage at `lsn` is a torn tail unless some later intact frame was written when
/// `lsn` was already durable. A torn write can leave intact frames after the tear (sectors land in
/// any order), which is why "an intact frame follows" alone does not mean corruption. Limit: the
/// last acknowledged frames, if damaged after acknowledgement with no later frame to vouch for
/// them, are indistinguishable from a torn tail and are cut.
pub fn classify_failure(rest: &[u8], lsn: u64) -> Failure {
    let mut at = ALIGN;
    while at + HEADER_BYTES <= rest.len() {
        let candidate = lsn + at as u64;
        // Cheap filter first: an intact frame here must carry this very address.
        let stamped = u64::from_le_bytes(rest[at + 8..at + 16].try_into().expect("8 bytes"));
        if stamped == candidate {
            if let Decoded::Frame(frame) = decode(&rest[at..], candidate) {
                if frame.durable_lsn > lsn {
                    return Failure::Corrupt { proof_lsn: candidate };
                }
            }
        }
        at += ALIGN;
    }
    Failure::Torn
}

/// A durable write, as a [`Kind::Put`] or [`Kind::Delete`] frame carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op<'a> {
    /// The snapshot number the write was tagged with.
    pub sn: u64,
    /// The key.
    pub key: &'a [u8],
    /// The value, or `None` for a delete.
    pub value: Option<&'a [u8]>,
}

impl<'a> Op<'a> {
    /// Payload layout: `u64 sn, u32 key_len, key, value`.
    const FIXED: usize = 12;

    /// The frame kind that carries this op.
    pub fn kind(&self) -> Kind {
        if self.value.is_some() {
            Kind::Put
        } else {
            Kind::Delete
        }
    }

    /// Bytes of the payload.
    pub fn payload_len(&self) -> usize {
        Self::FIXED + self.key.len() + self.value.map_or(0, <[u8]>::len)
    }

    /// Writes the payload into `out`, exactly [`Op::payload_len`] bytes.
    pub fn write_payload(&self, out: &mut [u8]) {
        let key_end = Self::FIXED + self.key.len();
        out[..8].copy_from_slice(&self.sn.to_le_bytes());
        out[8..12].copy_from_slice(&(self.key.len() as u32).to_le_bytes());
        out[Self::FIXED..key_end].copy_from_slice(self.key);
        out[key_end..].copy_from_slice(self.value.unwrap_or(&[]));
    }

    /// Reads an op back from an intact frame; `None` if the frame is not an op or is malformed.
    pub fn decode(frame: &Frame<'a>) -> Option<Self> {
        let payload = frame.payload;
        let sn = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let key_len = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?) as usize;
        let key = payload.get(Self::FIXED..Self::FIXED.checked_add(key_len)?)?;
        let rest = &payload[Self::FIXED + key_len..];
        match frame.kind {
            Kind::Put => Some(Op { sn, key, value: Some(rest) }),
            Kind::Delete if rest.is_empty() => Some(Op { sn, key, value: None }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A log region holding `ops` as frames from address `base`, each written when everything
    /// before it was durable (as a group-committed log with one frame per commit would be).
    fn log_of(base: u64, ops: &[Op<'_>], durable_lags: bool) -> (Vec<u8>, Vec<u64>) {
        let mut log = Vec::new();
        let mut addresses = Vec::new();
        for op in ops {
            let lsn = base + log.len() as u64;
            let durable = if durable_lags { base } else { lsn };
            let start = log.len();
            log.resize(start + frame_bytes(op.payload_len()), 0xEE);
            encode_with(&mut log[start..], lsn, durable, op.kind(), op.payload_len(), |p| {
                op.write_payload(p)
            });
            addresses.push(lsn);
        }
        (log, addresses)
    }

    fn ops() -> Vec<Op<'static>> {
        vec![
            Op { sn: 1, key: b"alpha", value: Some(b"one") },
            Op { sn: 2, key: b"", value: Some(b"") },
            Op { sn: 3, key: b"beta", value: None },
            Op { sn: u64::MAX, key: &[0xFF; 40], value: Some(&[7; 300]) },
        ]
    }

    #[test]
    fn frames_round_trip() {
        let (log, addresses) = log_of(4096, &ops(), false);
        let mut at = 0;
        for (op, lsn) in ops().iter().zip(&addresses) {
            let Decoded::Frame(frame) = decode(&log[at..], *lsn) else { panic!("frame at {lsn}") };
            assert_eq!(Op::decode(&frame), Some(*op));
            assert_eq!(frame.durable_lsn, *lsn);
            at += frame.bytes;
        }
        assert_eq!(at, log.len());
        assert_eq!(decode(&[0; 64], 0), Decoded::Invalid(Invalid::Unwritten));
        assert_eq!(decode(&log, 8), Decoded::Invalid(Invalid::WrongAddress { stamped: 4096 }));
        assert!(matches!(decode(&log[..30], 4096), Decoded::NeedMore { .. }));
    }

    #[test]
    fn every_truncation_is_a_torn_tail() {
        let (log, addresses) = log_of(0, &ops(), true);
        for cut in 0..log.len() {
            let bytes = &log[..cut];
            let mut at = 0;
            let mut whole = 0;
            loop {
                match decode(&bytes[at..], at as u64) {
                    Decoded::Frame(f) => {
                        at += f.bytes;
                        whole += 1;
                    }
                    _ => {
                        assert_eq!(classify_failure(&bytes[at..], at as u64), Failure::Torn, "cut at {cut}");
                        break;
                    }
                }
            }
            // Exactly the frames wholly before the cut survive.
            let expected = addresses
                .iter()
                .zip(addresses.iter().skip(1).chain([&(log.len() as u64)]))
                .filter(|(_, end)| **end <= cut as u64)
                .count();
            assert_eq!(whole, expected, "cut at {cut}");
        }
    }

    #[test]
    fn every_bit_flip_is_caught_and_classified() {
        // Frames written with everything before them durable: damage anywhere but the last frame
        // is vouched for by a later frame, so it must be corruption; in the last one, a tear.
        let (log, addresses) = log_of(0, &ops(), false);
        let last = *addresses.last().unwrap() as usize;
        for bit in 0..log.len() * 8 {
            let mut damaged = log.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let mut at = 0;
            let failed_at = loop {
                match decode(&damaged[at..], at as u64) {
                    Decoded::Frame(f) => at += f.bytes,
                    _ => break at,
                }
                if at == damaged.len() {
                    break at;
                }
            };
            let frame_start =
                addresses.iter().rev().find(|&&a| a as usize <= bit / 8).copied().unwrap() as usize;
            let in_padding = {
                let Decoded::Frame(f) = decode(&log[frame_start..], frame_start as u64) else {
                    unreachable!()
                };
                bit / 8 >= frame_start + HEADER_BYTES + f.payload.len()
            };
            if in_padding {
                continue; // padding is not covered by the checksum and carries nothing
            }
            assert_eq!(failed_at, frame_start, "bit {bit}: decoding must stop at the damaged frame");
            let failure = classify_failure(&damaged[failed_at..], failed_at as u64);
            if frame_start == last {
                assert_eq!(failure, Failure::Torn, "bit {bit}");
            } else {
                assert!(matches!(failure, Failure::Corrupt { .. }), "bit {bit}: {failure:?}");
            }
        }
    }
}
