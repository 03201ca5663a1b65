//! Records larger than a write buffer: cut into [`Kind::Fragment`] frames on the way in, put back
//! together on replay.
//!
//! A fragment's payload is a 24-byte header (`u8 kind` of the whole record, 7 zero bytes, `u64`
//! total payload length, `u64` offset of this piece) and the piece. The writer appends the pieces
//! of one record in order, one large record at a time; other records may sit between them. The
//! record takes effect where its last piece lies: a record whose last piece is missing (the log
//! was cut in the middle of it) was never acknowledged and is dropped.

use alloc::vec::Vec;

use super::frame::{Frame, Kind};

/// Bytes of a fragment's own header, before its piece.
pub const FRAGMENT_HEADER_BYTES: usize = 24;

/// Writes the fragment payload for the piece `payload[offset..offset + piece_len]` of a record of
/// kind `kind` into `out` (exactly `FRAGMENT_HEADER_BYTES + piece_len` bytes).
pub fn write_fragment(out: &mut [u8], kind: Kind, payload: &[u8], offset: usize, piece_len: usize) {
    assert_ne!(kind, Kind::Fragment, "fragments are not nested");
    assert_eq!(out.len(), FRAGMENT_HEADER_BYTES + piece_len, "fragment buffer of the wrong size");
    out[0] = kind as u8;
    out[1..8].fill(0);
    out[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    out[16..24].copy_from_slice(&(offset as u64).to_le_bytes());
    out[FRAGMENT_HEADER_BYTES..].copy_from_slice(&payload[offset..offset + piece_len]);
}

/// The pieces of a `len`-byte payload when each fragment payload holds at most `max_payload`
/// bytes: `(offset, piece_len)` in order.
pub fn pieces(len: usize, max_payload: usize) -> impl Iterator<Item = (usize, usize)> {
    assert!(max_payload > FRAGMENT_HEADER_BYTES, "fragment payload limit {max_payload}");
    let step = max_payload - FRAGMENT_HEADER_BYTES;
    (0..len.div_ceil(step)).map(move |i| (i * step, step.min(len - i * step)))
}

/// A fragment that does not continue the record being assembled, or is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadFragment {
    /// Log address of the fragment.
    pub lsn: u64,
}

/// Puts records back together from their fragments during replay.
#[derive(Default)]
pub struct Assembler {
    kind: Option<Kind>,
    total: usize,
    bytes: Vec<u8>,
}

impl Assembler {
    /// A new assembler with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a [`Kind::Fragment`] frame. Returns the whole record's kind and payload when this
    /// was its last piece. A first piece drops a record left unfinished before it (cut short by
    /// a crash and never acknowledged).
    pub fn push(&mut self, frame: &Frame<'_>) -> Result<Option<(Kind, &[u8])>, BadFragment> {
        let bad = BadFragment { lsn: frame.lsn };
        let p = frame.payload;
        if p.len() < FRAGMENT_HEADER_BYTES || p[1..8] != [0; 7] {
            return Err(bad);
        }
        let kind = match Kind::from_byte(p[0]) {
            Some(Kind::Pad | Kind::Fragment) | None => return Err(bad),
            Some(kind) => kind,
        };
        let total = u64::from_le_bytes(p[8..16].try_into().unwrap());
        let offset = u64::from_le_bytes(p[16..24].try_into().unwrap());
        let piece = &p[FRAGMENT_HEADER_BYTES..];
        if offset == 0 {
            self.bytes.clear();
            self.kind = Some(kind);
            self.total = usize::try_from(total).map_err(|_| bad)?;
        }
        let continues = self.kind == Some(kind)
            && self.total as u64 == total
            && self.bytes.len() as u64 == offset
            && offset + piece.len() as u64 <= total;
        if !continues {
            self.kind = None;
            return Err(bad);
        }
        self.bytes.extend_from_slice(piece);
        if self.bytes.len() < self.total {
            return Ok(None);
        }
        self.kind = None;
        Ok(Some((kind, &self.bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::frame::{decode, encode, frame_bytes, Decoded, Stamp};
    use alloc::vec;

    const STAMP: Stamp = Stamp { salt: 7, epoch: 0 };

    fn frames_of(payload: &[u8], max: usize, lsn: &mut u64) -> Vec<Vec<u8>> {
        pieces(payload.len(), max)
            .map(|(offset, len)| {
                let mut piece = vec![0; FRAGMENT_HEADER_BYTES + len];
                write_fragment(&mut piece, Kind::Put, payload, offset, len);
                let mut frame = vec![0; frame_bytes(piece.len())];
                encode(&mut frame, STAMP, *lsn, 0, Kind::Fragment, &piece);
                *lsn += frame.len() as u64;
                frame
            })
            .collect()
    }

    fn push(asm: &mut Assembler, frame: &[u8], lsn: u64) -> Result<Option<(Kind, Vec<u8>)>, BadFragment> {
        let Decoded::Frame(f) = decode(frame, lsn, STAMP.salt, 0) else { panic!("undecodable") };
        asm.push(&f).map(|done| done.map(|(k, b)| (k, b.to_vec())))
    }

    #[test]
    fn pieces_reassemble_and_unfinished_records_are_dropped() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut lsn = 0;
        let first = frames_of(&payload, 100, &mut lsn);
        assert_eq!(first.len(), 1000usize.div_ceil(100 - FRAGMENT_HEADER_BYTES));
        let second = frames_of(&payload[..300], 100, &mut lsn);
        let mut asm = Assembler::new();
        let mut at = 0;
        // The first record, cut short: its pieces assemble nothing.
        for frame in &first[..5] {
            assert_eq!(push(&mut asm, frame, at), Ok(None));
            at += frame.len() as u64;
        }
        at = first.iter().map(|f| f.len() as u64).sum();
        // A new record starts: the unfinished one is dropped, the new one comes back whole.
        let mut done = None;
        for frame in &second {
            done = push(&mut asm, frame, at).unwrap();
            at += frame.len() as u64;
        }
        assert_eq!(done, Some((Kind::Put, payload[..300].to_vec())));
        // A piece out of order is refused.
        let mut asm = Assembler::new();
        assert!(push(&mut asm, &first[1], first[0].len() as u64).is_err());
    }
}
