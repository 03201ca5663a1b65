//! Relocated batches: `batch::entries` of arbitrary payloads, and of payloads the cleaner's
//! `BatchWriter` wrote (with marks and truncations), whole and cut short.
//!
//! Checks: `entries` agrees with a reference parser written from the byte table (entries in
//! order, in place, `None` last exactly when the payload is malformed, nothing after it); what
//! the writer wrote comes back entry for entry, and its counts and lengths add up; a payload cut
//! between entries holds the entries before the cut, one cut inside an entry reports damage.
//!
//! Input: `u8 mode`; mode 0 takes the rest as a payload, mode 1 as entries to write.
#![no_main]

use helio_core::log::batch::{BatchWriter, ENTRY_OVERHEAD};
use helio_core_fuzz::{entries_checked, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    if input.u8().is_multiple_of(2) {
        let _ = entries_checked(input.rest());
        return;
    }
    let mut batch = BatchWriter::new();
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut mark = None;
    while !input.is_empty() && want.len() < 64 {
        let choice = input.u8();
        match choice % 8 {
            0 => mark = Some((batch.mark(), want.len(), batch.payload().to_vec())),
            1 => {
                if let Some((at, entries, payload)) = mark.take() {
                    batch.truncate(at);
                    want.truncate(entries);
                    assert_eq!(batch.payload(), &payload[..], "truncate to a mark");
                }
            }
            _ => {
                let (key, value) = (input.vec(64), input.vec(300));
                batch.push(&key, &value);
                want.push((key, value));
            }
        }
        assert_eq!(batch.entries(), want.len() as u64);
        assert_eq!(batch.is_empty(), want.is_empty());
        let bytes: usize = want.iter().map(|(k, v)| ENTRY_OVERHEAD + k.len() + v.len()).sum();
        assert_eq!(batch.len(), bytes);
    }
    let payload = batch.payload();
    let back = entries_checked(payload);
    let want_refs: Vec<(&[u8], &[u8])> = want.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    if want.is_empty() {
        assert_eq!(back, Err(Vec::new()), "an empty batch is malformed");
    } else {
        assert_eq!(back, Ok(want_refs.clone()));
    }
    // Cut short at a point from the input: the entries wholly before the cut come back, and
    // damage is reported unless the cut falls between entries.
    if !payload.is_empty() {
        let cut = usize::from(input.u16()) % payload.len();
        let mut ends = want.iter().scan(0, |end, (k, v)| {
            *end += ENTRY_OVERHEAD + k.len() + v.len();
            Some(*end)
        });
        let whole = ends.by_ref().take_while(|&end| end <= cut).count();
        let between = cut > 0
            && want.iter().take(whole).map(|(k, v)| ENTRY_OVERHEAD + k.len() + v.len()).sum::<usize>() == cut;
        match entries_checked(&payload[..cut]) {
            Ok(got) => {
                assert!(between, "a cut at {cut} inside an entry reads as whole");
                assert_eq!(got, want_refs[..whole]);
            }
            Err(got) => {
                assert!(!between, "a cut at {cut} between entries reads as damaged");
                assert_eq!(got, want_refs[..whole]);
            }
        }
    }
    batch.clear();
    assert!(batch.is_empty() && batch.payload().is_empty() && batch.entries() == 0);
});
