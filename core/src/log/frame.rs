//! Frames: how one record sits in the log, and how a reader tells a whole record from a torn or
//! corrupt one.
//!
//! ```text
//! offset  size  field
//!      0     4  crc32c of the log's salt (8 bytes, little-endian) then bytes 4 .. end of padding
//!      4     4  len: payload bytes
//!      8     8  lsn: the log address of this frame (where it was written)
//!     16     4  durable gap: lsn minus the address below which the log was durable when this
//!               frame was encoded; u32::MAX (a gap too large for the field) claims nothing
//!     20     1  kind
//!     21     3  epoch: how many times the log had been recovered when this frame was written
//!     24   len  payload, then zero padding to a multiple of 8
//! ```
//!
//! What keeps bytes that are not this log's records from passing as records:
//! - the **address**: a frame is accepted only where it claims to lie (misdirected writes);
//! - the **salt**, random per log and kept in the superblock, inside the checksum: bytes of
//!   another log in a reused file, or a frame forged inside a user's value, fail it;
//! - the **epoch**, which never decreases along the log: after recovery cuts a torn tail, writing
//!   resumes with the next epoch, so an old frame beyond the cut that a new frame happens to end
//!   exactly in front of is refused as stale.
//!
//! The durable gap lets recovery tell a torn tail from corruption (see [`classify_failure`]).

use super::crc32c;

/// Bytes of a frame header.
pub const HEADER_BYTES: usize = 24;

/// Frames start at log addresses that are multiples of this.
pub const ALIGN: usize = 8;

/// Largest frame a log holds, padding included: half the largest write buffer (64 MiB) any
/// configuration writes with. A header claiming more is not a frame, so a damaged length can
/// never make a reader allocate or read more than this.
pub const FRAME_BYTES_MAX: usize = 32 << 20;

/// Largest payload a frame can carry.
pub const PAYLOAD_BYTES_MAX: usize = FRAME_BYTES_MAX - HEADER_BYTES;

/// The durable gap that claims nothing: a frame encoded more than `u32::MAX - 1` bytes past the
/// durable point says only that the log was durable below address 0. Claiming less than the
/// truth is safe (recovery may cut a tail it could have called corrupt); claiming more is not.
const NO_CLAIM: u32 = u32::MAX;

/// Largest epoch a frame can carry (24 bits): recoveries a log can go through.
pub const EPOCH_MAX: u32 = (1 << 24) - 1;

/// Who writes frames: the log's salt and the current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Random per log, fixed at creation; mixed into every checksum.
    pub salt: u64,
    /// Recoveries so far; at most [`EPOCH_MAX`].
    pub epoch: u32,
}

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
    /// A piece of a record too large for one write buffer (see [`super::fragment`]).
    Fragment = 4,
    /// Live entries the cleaner moved from the head of the log to its tail: each sets its key,
    /// in log order, as a [`Kind::Put`] there would (see [`super::batch`]).
    Relocated = 5,
    /// One shard's part of an atomic batch: puts and deletes under one write number (see
    /// [`super::batch`]).
    Batch = 6,
    /// A commit: every write numbered at or below its number is in the logs below the ends it
    /// names, one per shard (see [`super::cut`]).
    Commit = 7,
    /// A page's full image as of a snapshot, see [`super::page`].
    PageImage = 8,
    /// The versions of a page changed since its previous record, see [`super::page`].
    PageDelta = 9,
}

impl Kind {
    /// The kind with this byte value, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Kind::Pad,
            2 => Kind::Put,
            3 => Kind::Delete,
            4 => Kind::Fragment,
            5 => Kind::Relocated,
            6 => Kind::Batch,
            7 => Kind::Commit,
            8 => Kind::PageImage,
            9 => Kind::PageDelta,
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
pub fn encode(out: &mut [u8], stamp: Stamp, lsn: u64, durable_lsn: u64, kind: Kind, payload: &[u8]) {
    encode_with(out, stamp, lsn, durable_lsn, kind, payload.len(), |p| p.copy_from_slice(payload));
}

/// Like [`encode`], with `fill` writing the `payload_len` payload bytes in place (no extra copy).
pub fn encode_with(
    out: &mut [u8],
    stamp: Stamp,
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
    assert!(stamp.epoch <= EPOCH_MAX, "epoch {} beyond {EPOCH_MAX}", stamp.epoch);
    // A gap the field cannot hold claims nothing rather than more than happened.
    let gap = u32::try_from(lsn - durable_lsn).ok().filter(|&gap| gap != NO_CLAIM).unwrap_or(NO_CLAIM);
    out[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[8..16].copy_from_slice(&lsn.to_le_bytes());
    out[16..20].copy_from_slice(&gap.to_le_bytes());
    out[20] = kind as u8;
    out[21..24].copy_from_slice(&stamp.epoch.to_le_bytes()[..3]);
    fill(&mut out[HEADER_BYTES..HEADER_BYTES + payload_len]);
    out[HEADER_BYTES + payload_len..].fill(0);
    let crc = crc32c(&[&stamp.salt.to_le_bytes(), &out[4..]]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    // Check the record as a reader will see it, before it leaves our hands.
    debug_assert!(matches!(
        decode(out, lsn, stamp.salt, stamp.epoch),
        Decoded::Frame(f) if f.kind == kind && f.payload.len() == payload_len
    ));
}

/// A whole, intact frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Where the frame lies in the log.
    pub lsn: u64,
    /// Everything in the log below this address was durable when the frame was written.
    pub durable_lsn: u64,
    /// The epoch it was written in.
    pub epoch: u32,
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
    /// The header is plausible but the frame runs past the bytes given: read more (at most
    /// [`FRAME_BYTES_MAX`]), or, at the end of the written log, treat it as a failure at this
    /// address.
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
    /// An intact frame of an earlier epoch than the frames before it: left over beyond a cut.
    Stale {
        /// The epoch it carries.
        epoch: u32,
    },
    /// Fewer bytes remain than a header takes.
    Truncated,
}

/// Decodes the frame at the start of `buf`, whose first byte is log address `lsn`, in the log
/// salted with `salt`, where the frames before it were of epoch `min_epoch` or later.
///
/// `NeedMore` reports a length read before the checksum could be verified: callers must not read
/// past the end of the segment for it.
pub fn decode(buf: &[u8], lsn: u64, salt: u64, min_epoch: u32) -> Decoded<'_> {
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
    if lsn.checked_add(bytes as u64).is_none() {
        // Would end past the last log address.
        return Decoded::Invalid(Invalid::Checksum);
    }
    if buf.len() < bytes {
        return Decoded::NeedMore { bytes };
    }
    if crc32c(&[&salt.to_le_bytes(), &buf[4..bytes]]) != word(0) {
        return Decoded::Invalid(Invalid::Checksum);
    }
    let Some(kind) = Kind::from_byte(header[20]) else {
        return Decoded::Invalid(Invalid::UnknownKind(header[20]));
    };
    let epoch = u32::from_le_bytes([header[21], header[22], header[23], 0]);
    if epoch < min_epoch {
        return Decoded::Invalid(Invalid::Stale { epoch });
    }
    let durable_lsn = match word(16) {
        NO_CLAIM => 0,
        gap => lsn.saturating_sub(u64::from(gap)),
    };
    let payload = &buf[HEADER_BYTES..HEADER_BYTES + payload_len];
    Decoded::Frame(Frame { lsn, durable_lsn, epoch, kind, payload, bytes })
}

/// The header at the start of `buf`, unchecked: the kind and payload length of the frame that
/// claims to lie at `lsn`. `None` unless the header is there, names `lsn`, and claims a known kind
/// and a payload of at most [`PAYLOAD_BYTES_MAX`]. The checksum covers the whole frame, so this
/// proves nothing about the bytes: a reader of part of a payload checks that part by checksums
/// of its own (page records' fronts and blocks, see [`super::page`]).
pub fn peek(buf: &[u8], lsn: u64) -> Option<(Kind, usize)> {
    let header = buf.get(..HEADER_BYTES)?;
    let stamped = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    let payload_len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    if stamped != lsn || payload_len > PAYLOAD_BYTES_MAX {
        return None;
    }
    Some((Kind::from_byte(header[20])?, payload_len))
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
/// from `lsn` on, across segments, and the salt and epoch floor the failed decode used.
///
/// What the writer guarantees: a frame's durable point only ever covers a contiguous prefix of
/// the log that has been written and synced, and lies on a frame boundary; a write is
/// acknowledged only once the log is durable past it. So damage at `lsn` is a torn tail unless
/// some later intact frame was written when `lsn` was already durable. A torn write can leave
/// intact frames after the tear (sectors land in any order, and io_uring may complete writes out
/// of order), which is why "an intact frame follows" alone does not mean corruption. Limit: the
/// last acknowledged frames, if damaged after acknowledgement with no later frame to vouch for
/// them, are indistinguishable from a torn tail and are cut.
pub fn classify_failure(rest: &[u8], lsn: u64, salt: u64, min_epoch: u32) -> Failure {
    match vouching_frame(rest, lsn, ALIGN, lsn, salt, min_epoch) {
        Some(proof_lsn) => Failure::Corrupt { proof_lsn },
        None => Failure::Torn,
    }
}

/// The address of the first intact frame in `bytes` (whose first byte is log address `base`),
/// at offset `from` or later, that says the log was durable past `failed_lsn`: the proof that a
/// failure there is corruption. For logs read piece by piece (one segment at a time), this is
/// [`classify_failure`] over one piece.
pub fn vouching_frame(
    bytes: &[u8],
    base: u64,
    from: usize,
    failed_lsn: u64,
    salt: u64,
    min_epoch: u32,
) -> Option<u64> {
    frames_in_place(bytes, base, from, salt, min_epoch).find(|f| f.durable_lsn > failed_lsn).map(|f| f.lsn)
}

/// Whether `bytes` (whose first byte is log address `base`) hold any intact frame of this log,
/// of epoch `min_epoch` or later, at its own address: a sign that the writer was writing there.
/// Unwritten space holds none, nor does a recycled segment's stale data (its frames carry the
/// addresses of the segment they were written in) or garbage, so a long enough stretch without
/// one ends recovery's search for a vouching frame.
pub fn holds_frames(bytes: &[u8], base: u64, salt: u64, min_epoch: u32) -> bool {
    frames_in_place(bytes, base, 0, salt, min_epoch).next().is_some()
}

/// The intact frames in `bytes` (whose first byte is log address `base`) at offset `from` or
/// later, wherever they start at their own address (frames in the payload of a torn frame
/// included).
fn frames_in_place(
    bytes: &[u8],
    base: u64,
    from: usize,
    salt: u64,
    min_epoch: u32,
) -> impl Iterator<Item = Frame<'_>> {
    let start = from.next_multiple_of(ALIGN);
    (start..bytes.len().saturating_sub(HEADER_BYTES - 1)).step_by(ALIGN).filter_map(move |at| {
        let candidate = base.wrapping_add(at as u64);
        // Cheap filter first: an intact frame here must carry this very address.
        let stamped = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        match stamped == candidate {
            true => match decode(&bytes[at..], candidate, salt, min_epoch) {
                Decoded::Frame(frame) => Some(frame),
                _ => None,
            },
            false => None,
        }
    })
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
        Self::decode_payload(frame.kind, frame.payload)
    }

    /// Reads an op back from the payload of a record of `kind`; `None` if it is not an op or is
    /// malformed.
    pub fn decode_payload(kind: Kind, payload: &'a [u8]) -> Option<Self> {
        let sn = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let key_len = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?) as usize;
        let key = payload.get(Self::FIXED..Self::FIXED.checked_add(key_len)?)?;
        let rest = &payload[Self::FIXED + key_len..];
        match kind {
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

    const STAMP: Stamp = Stamp { salt: 0x5EED_5EED_5EED_5EED, epoch: 3 };

    /// Decodes frames from the start of `log` (at address `base`) until one fails; returns them
    /// and where decoding stopped.
    fn scan(log: &[u8], base: u64, salt: u64) -> (Vec<Frame<'_>>, usize) {
        let (mut frames, mut at, mut epoch) = (Vec::new(), 0, 0);
        while at < log.len() {
            match decode(&log[at..], base + at as u64, salt, epoch) {
                Decoded::Frame(f) => {
                    epoch = f.epoch;
                    at += f.bytes;
                    frames.push(f);
                }
                _ => break,
            }
        }
        (frames, at)
    }

    /// A log region holding `ops` as frames from address `base`, each written when everything
    /// before it was durable (one frame per group commit).
    fn log_of(base: u64, ops: &[Op<'_>], stamp: Stamp) -> (Vec<u8>, Vec<u64>) {
        let mut log = Vec::new();
        let mut addresses = Vec::new();
        for op in ops {
            let lsn = base + log.len() as u64;
            let start = log.len();
            log.resize(start + frame_bytes(op.payload_len()), 0xEE);
            encode_with(&mut log[start..], stamp, lsn, lsn, op.kind(), op.payload_len(), |p| {
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
        let (log, addresses) = log_of(4096, &ops(), STAMP);
        let (frames, end) = scan(&log, 4096, STAMP.salt);
        assert_eq!(end, log.len());
        for ((frame, op), lsn) in frames.iter().zip(ops()).zip(&addresses) {
            assert_eq!(Op::decode(frame), Some(op));
            assert_eq!((frame.lsn, frame.durable_lsn, frame.epoch), (*lsn, *lsn, STAMP.epoch));
        }
        assert_eq!(decode(&[0; 64], 0, STAMP.salt, 0), Decoded::Invalid(Invalid::Unwritten));
        assert_eq!(decode(&log, 8, STAMP.salt, 0), Decoded::Invalid(Invalid::WrongAddress { stamped: 4096 }));
        assert!(matches!(decode(&log[..30], 4096, STAMP.salt, 0), Decoded::NeedMore { .. }));
        assert_eq!(decode(&log, 4096, STAMP.salt ^ 1, 0), Decoded::Invalid(Invalid::Checksum), "another log");
        assert_eq!(decode(&log, 4096, STAMP.salt, 4), Decoded::Invalid(Invalid::Stale { epoch: 3 }));
    }

    #[test]
    fn peek_reads_the_header_it_is_pointed_at() {
        let (log, addresses) = log_of(4096, &ops(), STAMP);
        for (op, &lsn) in ops().iter().zip(&addresses) {
            let at = (lsn - 4096) as usize;
            assert_eq!(peek(&log[at..at + HEADER_BYTES], lsn), Some((op.kind(), op.payload_len())));
            assert_eq!(peek(&log[at..], lsn + 8), None, "another address");
        }
        assert_eq!(peek(&log[..HEADER_BYTES - 1], 4096), None, "a cut header");
        let mut unknown = log.clone();
        unknown[20] = 0xEE;
        assert_eq!(peek(&unknown, 4096), None, "an unknown kind");
        let mut long = log.clone();
        long[4..8].copy_from_slice(&(PAYLOAD_BYTES_MAX as u32 + 1).to_le_bytes());
        assert_eq!(peek(&long, 4096), None, "a payload too long");
    }

    #[test]
    fn every_truncation_is_a_torn_tail() {
        // Every frame vouches for the ones before it, so a misjudged tear would show as corruption.
        let (log, addresses) = log_of(0, &ops(), STAMP);
        for cut in 0..log.len() {
            let (frames, at) = scan(&log[..cut], 0, STAMP.salt);
            assert_eq!(
                classify_failure(&log[at..cut], at as u64, STAMP.salt, 0),
                Failure::Torn,
                "cut at {cut}"
            );
            let ends = addresses.iter().skip(1).copied().chain([log.len() as u64]);
            assert_eq!(frames.len(), ends.filter(|&end| end <= cut as u64).count(), "cut at {cut}");
        }
    }

    #[test]
    fn every_bit_flip_is_caught_and_classified() {
        // Damage anywhere but the last frame is vouched for by a later frame: corruption. In the
        // last frame it could be a tear. Padding is covered by the checksum too.
        let (log, addresses) = log_of(0, &ops(), STAMP);
        let last = *addresses.last().unwrap() as usize;
        for bit in 0..log.len() * 8 {
            let mut damaged = log.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let (_, stopped) = scan(&damaged, 0, STAMP.salt);
            let frame_start =
                addresses.iter().rev().find(|&&a| a as usize <= bit / 8).copied().unwrap() as usize;
            assert_eq!(stopped, frame_start, "bit {bit}: decoding must stop at the damaged frame");
            let failure = classify_failure(&damaged[stopped..], stopped as u64, STAMP.salt, 0);
            if frame_start == last {
                assert_eq!(failure, Failure::Torn, "bit {bit}");
            } else {
                assert!(matches!(failure, Failure::Corrupt { .. }), "bit {bit}: {failure:?}");
            }
        }
    }

    #[test]
    fn leftovers_beyond_a_cut_stay_dead() {
        // Epoch 3 wrote three frames; the first tore, so recovery cut at 0 and writing resumed in
        // epoch 4 with a frame that ends exactly where the old third frame starts.
        let old_ops = [
            Op { sn: 10, key: b"k", value: Some(&[1; 8]) },
            Op { sn: 11, key: b"k", value: Some(&[2; 8]) },
            Op { sn: 12, key: b"never acked", value: Some(b"!") },
        ];
        let (mut log, addresses) = log_of(0, &old_ops, STAMP);
        let new = Op { sn: 20, key: b"fresh", value: Some(&[3; 55]) };
        let new_len = frame_bytes(new.payload_len());
        assert_eq!(new_len as u64, addresses[2], "the new frame must end where the old third begins");
        let next = Stamp { epoch: STAMP.epoch + 1, ..STAMP };
        encode_with(&mut log[..new_len], next, 0, 0, new.kind(), new.payload_len(), |p| new.write_payload(p));
        let (frames, stopped) = scan(&log, 0, STAMP.salt);
        assert_eq!((frames.len(), stopped), (1, new_len));
        assert_eq!(
            decode(&log[stopped..], stopped as u64, STAMP.salt, next.epoch),
            Decoded::Invalid(Invalid::Stale { epoch: STAMP.epoch })
        );
    }

    #[test]
    fn a_frame_forged_inside_a_value_vouches_for_nothing() {
        // A user value carrying a well-formed frame for its own future address, made without the
        // log's salt; the real frame around it tears.
        let op_fixed = 12 + 3; // sn, key length, then the 3-byte key
        let forged_at = 64usize;
        let mut forged = vec![0u8; frame_bytes(0)];
        encode(
            &mut forged,
            Stamp { salt: 0, epoch: STAMP.epoch },
            forged_at as u64,
            forged_at as u64,
            Kind::Pad,
            &[],
        );
        let mut value = vec![0u8; 200];
        let in_value = forged_at - HEADER_BYTES - op_fixed;
        value[in_value..in_value + forged.len()].copy_from_slice(&forged);
        let op = Op { sn: 1, key: b"abc", value: Some(&value) };
        let mut log = vec![0u8; frame_bytes(op.payload_len())];
        encode_with(&mut log, STAMP, 0, 0, op.kind(), op.payload_len(), |p| op.write_payload(p));
        assert_eq!(&log[forged_at..forged_at + forged.len()], &forged[..], "the forgery sits at its address");
        log[5] ^= 1;
        assert_eq!(classify_failure(&log, 0, STAMP.salt, 0), Failure::Torn);
        assert!(matches!(classify_failure(&log, 0, 0, 0), Failure::Corrupt { .. }), "with the forger's salt");
    }

    /// More than 4 GiB written since the log was last durable (a bulk load without durability):
    /// the frame must claim no more durability than there was. A saturated gap once claimed the
    /// log durable up to `lsn - 4 GiB`.
    #[test]
    fn a_durable_gap_too_large_for_its_field_claims_nothing() {
        let op = Op { sn: 1, key: b"k", value: Some(b"v") };
        let mut frame = vec![0u8; frame_bytes(op.payload_len())];
        for (durable, lsn) in
            [(8u64 << 30, 13u64 << 30), (0, u64::from(u32::MAX) + 1), (0, u64::from(u32::MAX) - 7)]
        {
            encode_with(&mut frame, STAMP, lsn, durable, op.kind(), op.payload_len(), |p| {
                op.write_payload(p)
            });
            let Decoded::Frame(f) = decode(&frame, lsn, STAMP.salt, 0) else { panic!("frame at {lsn}") };
            assert!(f.durable_lsn <= durable, "claims {} durable, only {durable} was", f.durable_lsn);
        }
        // A gap that fits is kept exactly.
        let lsn = 1u64 << 33;
        let durable = lsn - (u64::from(u32::MAX) - 15);
        encode_with(&mut frame, STAMP, lsn, durable, op.kind(), op.payload_len(), |p| op.write_payload(p));
        let Decoded::Frame(f) = decode(&frame, lsn, STAMP.salt, 0) else { panic!("frame") };
        assert_eq!(f.durable_lsn, durable);
    }

    /// A damaged length is never trusted with a read or an allocation beyond the largest frame
    /// a log holds, and a frame cannot end past the last log address (found by fuzzing: a
    /// flipped length bit made recovery read and allocate up to 4 GiB in a default segment).
    #[test]
    fn lengths_no_writer_makes_and_frames_past_the_address_space_are_refused() {
        let op = Op { sn: 1, key: b"k", value: Some(b"v") };
        let mut frame = vec![0u8; frame_bytes(op.payload_len())];
        encode_with(&mut frame, STAMP, 0, 0, op.kind(), op.payload_len(), |p| op.write_payload(p));
        for len in [PAYLOAD_BYTES_MAX as u32 + 1, 0xE000_0000, u32::MAX] {
            frame[4..8].copy_from_slice(&len.to_le_bytes());
            assert_eq!(decode(&frame, 0, STAMP.salt, 0), Decoded::Invalid(Invalid::Checksum), "length {len}");
        }
        frame[4..8].copy_from_slice(&(PAYLOAD_BYTES_MAX as u32).to_le_bytes());
        assert_eq!(decode(&frame, 0, STAMP.salt, 0), Decoded::NeedMore { bytes: FRAME_BYTES_MAX });
        let lsn = u64::MAX - 7;
        encode_with(&mut frame, STAMP, 0, 0, op.kind(), op.payload_len(), |p| op.write_payload(p));
        frame[8..16].copy_from_slice(&lsn.to_le_bytes());
        assert_eq!(decode(&frame, lsn, STAMP.salt, 0), Decoded::Invalid(Invalid::Checksum));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x1234_5678_9ABC_DEF0u64;
        let mut bytes = vec![0u8; 512];
        let at = u64::MAX - 7;
        for round in 0..2000u32 {
            for b in bytes.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            // Make the header plausible: the right address, a length that may fit.
            bytes[8..16].copy_from_slice(&at.to_le_bytes());
            bytes[4..8].copy_from_slice(&(round % 600).to_le_bytes());
            if let Decoded::Frame(f) = decode(&bytes, at, 1, 0) {
                let _ = Op::decode(&f);
            }
            let _ = classify_failure(&bytes, at, 1, 0);
        }
    }
}
