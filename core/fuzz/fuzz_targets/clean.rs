//! The cleaner's read of the log's head: `clean::HeadScan` over a sequence of frames built from
//! the input (ops, pads, commits, relocated and batch records, fragments of records, and
//! payloads of any kind that do not parse), with epochs moving on now and then.
//!
//! Checks against the rule written from `clean.rs`'s description: the candidates handed out are
//! exactly the entries of each whole put and relocated record and the puts of each batch record
//! (those before a record's damage too), each with its record's write number; deletes, a
//! batch's removals, commits, page records and pads give none; a record that does not parse is `Unreadable`
//! at its address, and the cut is the end of the last frame read outside any fragmented
//! record, unless a frame of a later epoch shows the record was abandoned.
//!
//! Input: `u32 head` (× 8), then frames until it runs out, each a `u8` choice and its values.
#![no_main]

use helio_core::log::batch::BatchWriter;
use helio_core::log::clean::{HeadScan, Unreadable};
use helio_core::log::cut::Commit;
use helio_core::log::fragment::{pieces, write_fragment, FRAGMENT_HEADER_BYTES};
use helio_core::log::frame::{frame_bytes, Frame, Kind};
use helio_core_fuzz::{
    fragment_payload, op_payload, page_payload, reference_commit, reference_entries, reference_op,
    reference_ops, reference_page, reference_sn, Candidate, Input, ModelAssembler, KINDS,
};
use libfuzzer_sys::fuzz_target;

type Entries = Vec<Candidate>;

/// The scan's rule.
#[derive(Default)]
struct Model {
    assembler: ModelAssembler,
    pending: Option<u32>,
    cut: u64,
}

/// The candidates of a whole record, and whether it parses.
fn candidates(kind: Kind, payload: &[u8]) -> (Entries, bool) {
    let owned =
        |sn: u64, e: Vec<(&[u8], &[u8])>| e.into_iter().map(|(k, v)| (sn, k.to_vec(), v.to_vec())).collect();
    match kind {
        Kind::Put => match reference_op(kind, payload) {
            Some(op) => (vec![(op.sn, op.key.to_vec(), op.value.unwrap().to_vec())], true),
            None => (Vec::new(), false),
        },
        Kind::Delete => (Vec::new(), reference_op(kind, payload).is_some()),
        Kind::Relocated => {
            let sn = reference_sn(payload).unwrap_or(0);
            match reference_entries(payload) {
                Ok(all) => (owned(sn, all), true),
                Err(before) => (owned(sn, before), false),
            }
        }
        Kind::Batch => {
            let sn = reference_sn(payload).unwrap_or(0);
            let puts = |ops: Vec<(&[u8], Option<&[u8]>)>| {
                ops.into_iter().filter_map(|(k, v)| Some((sn, k.to_vec(), v?.to_vec()))).collect()
            };
            match reference_ops(payload) {
                Ok(all) => (puts(all), true),
                Err(before) => (puts(before), false),
            }
        }
        Kind::Commit => (Vec::new(), reference_commit(payload).is_some()),
        Kind::PageImage | Kind::PageDelta => (Vec::new(), reference_page(payload).is_some()),
        Kind::Pad | Kind::Fragment => (Vec::new(), true),
        other => panic!("a kind the fuzz targets do not know yet: {other:?}"),
    }
}

impl Model {
    fn push(&mut self, frame: &Frame<'_>) -> (Result<(), Unreadable>, Entries) {
        let bad = Unreadable { lsn: frame.lsn };
        let mut seen = Vec::new();
        if frame.kind == Kind::Fragment {
            match self.assembler.push(frame.payload) {
                Ok(Some((kind, payload))) => {
                    self.pending = None;
                    let (entries, ok) = candidates(kind, &payload);
                    seen = entries;
                    if !ok {
                        return (Err(bad), seen);
                    }
                }
                Ok(None) => self.pending = Some(frame.epoch),
                Err(()) => return (Err(bad), seen),
            }
        } else {
            if self.pending.is_some_and(|epoch| frame.epoch > epoch) {
                self.pending = None;
            }
            let (entries, ok) = candidates(frame.kind, frame.payload);
            seen = entries;
            if !ok {
                return (Err(bad), seen);
            }
        }
        if self.pending.is_none() {
            self.cut = frame.lsn + frame.bytes as u64;
        }
        (Ok(()), seen)
    }
}

/// A batch or relocated record's payload from the input (removals only in batches).
fn batch_payload(input: &mut Input<'_>, removals: bool) -> Vec<u8> {
    let mut batch = BatchWriter::new();
    batch.set_sn(input.sn());
    for _ in 0..1 + input.u8() % 4 {
        let key = input.vec(16);
        if removals && input.u8().is_multiple_of(3) {
            batch.push_op(&key, None);
        } else {
            batch.push(&key, &input.vec(40));
        }
    }
    batch.payload().to_vec()
}

/// A commit's payload from the input.
fn commit_payload(input: &mut Input<'_>) -> Vec<u8> {
    let sn = input.sn();
    Commit { sn, ends: (0..input.u8() % 5).map(|_| u64::from(input.u32())).collect() }.encode()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let head = u64::from(input.u32()) * 8;
    let mut scan = HeadScan::new(head);
    let mut model = Model { cut: head, ..Model::default() };
    let mut lsn = head;
    let mut epoch = 0u32;
    // Fragment payloads still to push, of a record being cut.
    let mut queued: Vec<Vec<u8>> = Vec::new();
    for _ in 0..48 {
        if input.is_empty() && queued.is_empty() {
            break;
        }
        let choice = input.u8();
        if choice & 0x80 != 0 {
            epoch += 1;
        }
        let (kind, payload) = if !queued.is_empty() && choice & 0x40 == 0 {
            (Kind::Fragment, queued.remove(0))
        } else {
            match choice % 8 {
                0 => (Kind::Put, op_payload(input.sn(), &input.vec(32), Some(&input.vec(100)))),
                1 => (Kind::Delete, op_payload(input.sn(), &input.vec(32), None)),
                2 if choice & 0x20 == 0 => (Kind::Pad, vec![0; input.len(64)]),
                2 => (Kind::Commit, commit_payload(&mut input)),
                3 if choice & 0x20 == 0 => (Kind::Relocated, batch_payload(&mut input, false)),
                3 => (Kind::Batch, batch_payload(&mut input, true)),
                4 => {
                    // A record cut into pieces (its payload whole or not), pushed over the next
                    // frames, other records in between.
                    let record_kind = KINDS[usize::from(input.u8()) % KINDS.len()];
                    let record = match record_kind {
                        _ if choice & 0x20 != 0 => input.vec(300),
                        Kind::Put => op_payload(input.sn(), &input.vec(32), Some(&input.vec(300))),
                        Kind::Relocated => batch_payload(&mut input, false),
                        Kind::Batch => batch_payload(&mut input, true),
                        Kind::Commit => commit_payload(&mut input),
                        Kind::PageImage => page_payload(&mut input, false),
                        Kind::PageDelta => page_payload(&mut input, true),
                        _ => input.vec(300),
                    };
                    let max = FRAGMENT_HEADER_BYTES + 1 + input.len(120);
                    queued = pieces(record.len(), max)
                        .map(|(offset, len)| {
                            if matches!(record_kind, Kind::Pad | Kind::Fragment) {
                                fragment_payload(
                                    record_kind as u8,
                                    [0; 7],
                                    record.len() as u64,
                                    offset as u64,
                                    &record[offset..offset + len],
                                )
                            } else {
                                let mut out = vec![0; FRAGMENT_HEADER_BYTES + len];
                                write_fragment(&mut out, record_kind, &record, offset, len);
                                out
                            }
                        })
                        .collect();
                    if queued.is_empty() {
                        queued.push(fragment_payload(record_kind as u8, [0; 7], 0, 0, &[]));
                    }
                    (Kind::Fragment, queued.remove(0))
                }
                5 => {
                    let raw = input.vec(60);
                    (
                        Kind::Fragment,
                        fragment_payload(input.u8() % 9, [0; 7], input.u64() % 512, input.u64() % 512, &raw),
                    )
                }
                6 => {
                    // A frame of an earlier epoch than the last (the scan only compares epochs).
                    epoch = epoch.saturating_sub(u32::from(input.u8() % 3));
                    (KINDS[usize::from(input.u8()) % KINDS.len()], input.vec(80))
                }
                _ => (KINDS[usize::from(input.u8()) % KINDS.len()], input.vec(80)),
            }
        };
        let frame =
            Frame { lsn, durable_lsn: 0, epoch, kind, payload: &payload, bytes: frame_bytes(payload.len()) };
        lsn += frame.bytes as u64;
        let mut seen = Vec::new();
        let got = scan.push(&frame, |sn, k, v| seen.push((sn, k.to_vec(), v.to_vec())));
        let (want, want_seen) = model.push(&frame);
        assert_eq!(got, want, "HeadScan disagrees for a {kind:?} frame at {}", frame.lsn);
        assert_eq!(seen, want_seen, "other candidates from the {kind:?} frame at {}", frame.lsn);
        assert_eq!(scan.cut(), model.cut);
        assert!(head <= scan.cut() && scan.cut() <= lsn);
    }
});
