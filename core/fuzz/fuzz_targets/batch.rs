//! Records of several entries under one write number: `batch::sn`, `batch::entries` (relocated
//! records) and `batch::ops` (batch records) of arbitrary payloads, and of payloads
//! `BatchWriter` wrote (numbers set, puts and removals, marks and truncations), whole and cut
//! short.
//!
//! Checks: `sn`, `entries` and `ops` agree with reference parsers written from the byte table
//! (the number in front; entries in order, in place, `None` last exactly when the payload is
//! malformed, nothing after it; a removal ends a relocated record as damage); what the writer
//! wrote comes back entry for entry under the number set last, and its counts and lengths (the
//! header included) add up; truncating to a mark keeps the number; a payload cut between
//! entries holds the entries before the cut, one cut inside an entry or the header reports
//! damage; `clear` keeps the header.
//!
//! Input: `u8 mode`; mode 0 takes the rest as a payload, mode 1 as entries to write.
#![no_main]

use helio_core::log::batch::{self, BatchWriter, ENTRY_OVERHEAD, HEADER_BYTES};
use helio_core_fuzz::{entries_checked, ops_checked, Entry, Input};
use libfuzzer_sys::fuzz_target;

type Owned = (Vec<u8>, Option<Vec<u8>>);

/// Bytes an entry takes in the payload.
fn entry_bytes((key, value): &Owned) -> usize {
    ENTRY_OVERHEAD + key.len() + value.as_ref().map_or(0, Vec::len)
}

/// What `ops` must give for a payload holding `entries` (all of them when `whole`, else damage
/// after them), and what `entries` must give: the same up to the first removal, which is
/// damage there.
#[allow(clippy::type_complexity)]
fn expected<'a>(
    entries: &'a [Owned],
    whole: bool,
) -> (Result<Vec<Entry<'a>>, Vec<Entry<'a>>>, Result<Vec<(&'a [u8], &'a [u8])>, Vec<(&'a [u8], &'a [u8])>>) {
    let ops: Vec<Entry<'a>> = entries.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
    let puts: Vec<(&[u8], &[u8])> = ops.iter().map_while(|&(k, v)| Some((k, v?))).collect();
    let whole = whole && !entries.is_empty();
    let relocated = if whole && puts.len() == ops.len() { Ok(puts) } else { Err(puts) };
    (if whole { Ok(ops) } else { Err(ops) }, relocated)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    if input.u8().is_multiple_of(2) {
        let payload = input.rest();
        let _ = entries_checked(payload);
        let _ = ops_checked(payload);
        return;
    }
    let mut batch = BatchWriter::new();
    let mut sn = 0u64;
    let mut want: Vec<Owned> = Vec::new();
    let mut mark = None;
    while !input.is_empty() && want.len() < 64 {
        let choice = input.u8();
        match choice % 8 {
            0 => mark = Some((batch.mark(), want.len(), batch.payload().to_vec())),
            1 => {
                if let Some((at, entries, payload)) = mark.take() {
                    batch.truncate(at);
                    want.truncate(entries);
                    // The entries as they were at the mark, under the number set last.
                    assert_eq!(
                        batch.payload()[HEADER_BYTES..],
                        payload[HEADER_BYTES..],
                        "truncate to a mark"
                    );
                }
            }
            2 => {
                sn = input.sn();
                batch.set_sn(sn);
            }
            3 => {
                let key = input.vec(64);
                batch.push_op(&key, None);
                want.push((key, None));
            }
            4 => {
                let (key, value) = (input.vec(64), input.vec(300));
                batch.push_op(&key, Some(&value));
                want.push((key, Some(value)));
            }
            _ => {
                let (key, value) = (input.vec(64), input.vec(300));
                batch.push(&key, &value);
                want.push((key, Some(value)));
            }
        }
        assert_eq!(batch.entries(), want.len() as u64);
        assert_eq!(batch.is_empty(), want.is_empty());
        assert_eq!(batch.len(), HEADER_BYTES + want.iter().map(entry_bytes).sum::<usize>());
        assert_eq!(batch.payload().len(), batch.len());
        assert_eq!(batch::sn(batch.payload()), Some(sn));
    }
    let payload = batch.payload();
    let (want_ops, want_entries) = expected(&want, true);
    assert_eq!(ops_checked(payload), want_ops, "the batch as written");
    assert_eq!(entries_checked(payload), want_entries, "the batch as written, read as relocated");

    // Cut short at a point from the input: the entries wholly before the cut come back, and
    // damage is reported unless the cut falls between entries (after the first).
    let cut = usize::from(input.u16()) % payload.len();
    let ends: Vec<usize> = want
        .iter()
        .scan(HEADER_BYTES, |end, entry| {
            *end += entry_bytes(entry);
            Some(*end)
        })
        .collect();
    let whole = ends.iter().take_while(|&&end| end <= cut).count();
    let between = whole > 0 && ends[whole - 1] == cut;
    let (want_ops, want_entries) = expected(&want[..whole], between);
    assert_eq!(ops_checked(&payload[..cut]), want_ops, "the batch cut at {cut}");
    assert_eq!(entries_checked(&payload[..cut]), want_entries, "the batch cut at {cut}, as relocated");
    assert_eq!(batch::sn(&payload[..cut]), (cut >= HEADER_BYTES).then_some(sn));

    batch.clear();
    assert!(batch.is_empty() && batch.entries() == 0 && batch.len() == HEADER_BYTES);
    assert_eq!(batch.payload(), sn.to_le_bytes(), "clear keeps the number");
});
