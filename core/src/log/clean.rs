//! Cleaning decisions: when a shard's log needs cleaning, which entries at its head may still be
//! live, and how far the head may move.
//!
//! The cleaner works from the head of the log (the oldest records), a stretch at a time. Of each
//! record there it keeps only what may still be live: a put's entry and a relocated batch's
//! entries are candidates, which the runtime compares with the tree (an entry is live when the
//! tree holds exactly its value) and appends again at the tail (see [`super::batch`]), as are
//! a batch's puts; deletes (alone or in a batch) and commits are dropped, since every older record of their key lies at the head too and goes with them.
//! Once the moved entries are durable, the head moves past the stretch and the segments wholly
//! below it are deleted. A stretch never ends inside a record cut into fragments: replay from a
//! head inside one would find its later pieces without the first.

use super::batch;
use super::fragment::{Assembler, BadFragment};
use super::frame::{Frame, Kind, Op};

/// When to clean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanPolicy {
    /// Cleaning starts once the log past its head exceeds `1 + ratio` times the live data.
    pub ratio: f64,
    /// Never clean a log shorter than this (bytes past the head).
    pub floor: u64,
}

impl CleanPolicy {
    /// Log bytes past the head at which cleaning starts, for an estimate of the live data.
    pub fn trigger(&self, live_bytes: u64) -> u64 {
        (((1.0 + self.ratio) * live_bytes as f64) as u64).max(self.floor)
    }

    /// Whether a log of `log_bytes` past its head, holding about `live_bytes` of live data,
    /// needs cleaning.
    pub fn should_clean(&self, log_bytes: u64, live_bytes: u64) -> bool {
        log_bytes > self.trigger(live_bytes)
    }
}

/// Why a record at the head could not be cleaned: its bytes are intact but do not parse. The
/// log is left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The record's log address.
    pub lsn: u64,
}

/// Reads the frames at the head of the log in order: hands back the entries that may still be
/// live and knows where the head may move.
#[derive(Default)]
pub struct HeadScan {
    assembler: Assembler,
    /// Epoch of the fragmented record being assembled, if one is.
    pending: Option<u32>,
    /// The furthest frame boundary outside any fragmented record.
    cut: u64,
}

impl HeadScan {
    /// A scan starting at the head `head`.
    pub fn new(head: u64) -> Self {
        Self { cut: head, ..Self::default() }
    }

    /// Takes the next frame, calling `candidate(sn, key, value)` for every entry it completes
    /// that may still be live, with the write number of its record. (An entry whose number an
    /// earlier recovery dropped is dead whatever its value: the caller skips it, or a copy
    /// of it could hide the live entry before it.)
    pub fn push(
        &mut self,
        frame: &Frame<'_>,
        mut candidate: impl FnMut(u64, &[u8], &[u8]),
    ) -> Result<(), Unreadable> {
        let unreadable = Unreadable { lsn: frame.lsn };
        if frame.kind == Kind::Fragment {
            match self.assembler.push(frame) {
                Ok(Some((kind, payload))) => {
                    self.pending = None;
                    candidates(kind, payload, &mut candidate).ok_or(unreadable)?;
                }
                Ok(None) => self.pending = Some(frame.epoch),
                Err(BadFragment { .. }) => return Err(unreadable),
            }
        } else {
            // A fragmented record still open when a later epoch began was cut short by a crash
            // and never acknowledged: replay drops it, so the head may move past it.
            if self.pending.is_some_and(|epoch| frame.epoch > epoch) {
                self.pending = None;
            }
            candidates(frame.kind, frame.payload, &mut candidate).ok_or(unreadable)?;
        }
        if self.pending.is_none() {
            self.cut = frame.lsn + frame.bytes as u64;
        }
        Ok(())
    }

    /// Where the head may move: the end of the last frame read that is not inside a fragmented
    /// record.
    pub fn cut(&self) -> u64 {
        self.cut
    }
}

/// Calls `candidate` for each entry of a whole record that may still be live; `None` if the
/// record does not parse.
fn candidates(kind: Kind, payload: &[u8], candidate: &mut impl FnMut(u64, &[u8], &[u8])) -> Option<()> {
    match kind {
        Kind::Put => {
            let op = Op::decode_payload(kind, payload)?;
            candidate(op.sn, op.key, op.value?);
        }
        Kind::Relocated => {
            let sn = batch::sn(payload)?;
            for entry in batch::entries(payload) {
                let (key, value) = entry?;
                candidate(sn, key, value);
            }
        }
        Kind::Batch => {
            let sn = batch::sn(payload)?;
            for entry in batch::ops(payload) {
                if let (key, Some(value)) = entry? {
                    candidate(sn, key, value);
                }
            }
        }
        Kind::Delete => {
            Op::decode_payload(kind, payload)?;
        }
        Kind::Commit => {
            super::cut::Commit::decode(payload)?;
        }
        Kind::PageImage | Kind::PageDelta => {
            super::page::PageRecord::decode(payload)?;
        }
        Kind::Pad | Kind::Fragment => {}
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::fragment::{pieces, write_fragment, FRAGMENT_HEADER_BYTES};
    use alloc::vec;
    use alloc::vec::Vec;

    fn frame(lsn: u64, epoch: u32, kind: Kind, payload: &[u8]) -> Frame<'_> {
        let bytes = crate::log::frame::frame_bytes(payload.len());
        Frame { lsn, durable_lsn: 0, epoch, kind, payload, bytes }
    }

    fn op(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        let op = Op { sn: 0, key, value };
        let mut out = vec![0; op.payload_len()];
        op.write_payload(&mut out);
        out
    }

    #[test]
    fn puts_and_relocated_entries_are_candidates_deletes_are_not() {
        let mut batch = batch::BatchWriter::new();
        batch.push(b"b", b"2");
        batch.push(b"c", b"3");
        let (put, delete) = (op(b"a", Some(b"1")), op(b"z", None));
        let mut scan = HeadScan::new(64);
        let mut seen = Vec::new();
        let mut at = 64;
        for (kind, payload) in
            [(Kind::Put, &put[..]), (Kind::Delete, &delete), (Kind::Relocated, batch.payload())]
        {
            let f = frame(at, 0, kind, payload);
            scan.push(&f, |_, k, v| seen.push((k.to_vec(), v.to_vec()))).unwrap();
            at += f.bytes as u64;
            assert_eq!(scan.cut(), at);
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(seen, want);
        let bad = frame(at, 0, Kind::Relocated, &[9, 0, 0, 0]);
        assert_eq!(scan.push(&bad, |_, _, _| {}), Err(Unreadable { lsn: at }));
    }

    /// The head never moves inside a fragmented record, unless a later epoch shows the record
    /// was abandoned.
    #[test]
    fn the_cut_skips_fragmented_records() {
        let big = op(b"big", Some(&[7u8; 300]));
        let frag_payloads: Vec<Vec<u8>> = pieces(big.len(), 100)
            .map(|(offset, len)| {
                let mut out = vec![0; FRAGMENT_HEADER_BYTES + len];
                write_fragment(&mut out, Kind::Put, &big, offset, len);
                out
            })
            .collect();
        assert!(frag_payloads.len() >= 3);
        let small = op(b"s", Some(b"v"));
        let mut scan = HeadScan::new(0);
        let mut seen = Vec::new();
        let mut at = 0;
        let mut push = |scan: &mut HeadScan, epoch, kind, payload: &[u8], at: &mut u64| {
            let f = frame(*at, epoch, kind, payload);
            scan.push(&f, |_, k, v| seen.push((k.to_vec(), v.len()))).unwrap();
            *at += f.bytes as u64;
        };
        // A record's pieces with a small record between them: no cut until its last piece.
        push(&mut scan, 0, Kind::Fragment, &frag_payloads[0], &mut at);
        let before = scan.cut();
        assert_eq!(before, 0);
        push(&mut scan, 0, Kind::Put, &small, &mut at);
        assert_eq!(scan.cut(), before);
        for p in &frag_payloads[1..] {
            push(&mut scan, 0, Kind::Fragment, p, &mut at);
        }
        assert_eq!(scan.cut(), at);
        // An abandoned record: the cut waits until a frame of a later epoch.
        push(&mut scan, 0, Kind::Fragment, &frag_payloads[0], &mut at);
        let held = scan.cut();
        push(&mut scan, 0, Kind::Put, &small, &mut at);
        assert_eq!(scan.cut(), held);
        push(&mut scan, 1, Kind::Put, &small, &mut at);
        assert_eq!(scan.cut(), at);
        assert_eq!(
            seen,
            vec![(b"s".to_vec(), 1), (b"big".to_vec(), 300), (b"s".to_vec(), 1), (b"s".to_vec(), 1)]
        );
    }

    #[test]
    fn cleaning_starts_past_the_ratio_and_the_floor() {
        let policy = CleanPolicy { ratio: 0.5, floor: 1000 };
        assert!(!policy.should_clean(1500, 1000));
        assert!(policy.should_clean(1501, 1000));
        assert!(!policy.should_clean(999, 10));
        assert_eq!(policy.trigger(10), 1000);
    }
}
