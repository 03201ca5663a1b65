//! Fragment frames built from the input — valid pieces of records and headers that are not
//! (unknown or wrong kinds, nonzero padding, arbitrary totals and offsets, short payloads) —
//! pushed through `fragment::Assembler`.
//!
//! Checks: every answer is what the assembler's rule (`ModelAssembler`, written from the
//! description in `fragment.rs`) says, a whole record comes back byte for byte as it was cut,
//! and the assembler's heap never exceeds twice the piece bytes pushed into it: a header's
//! `total` is untrusted and must not be allocated up front.
//!
//! Input: steps until it runs out, each a `u8` choice and its values.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use helio_core::log::fragment::{Assembler, FRAGMENT_HEADER_BYTES};
use helio_core::log::frame::{frame_bytes, Frame, Kind};
use helio_core_fuzz::{fragment_payload, Input, ModelAssembler};
use libfuzzer_sys::fuzz_target;

/// The system allocator, counting the bytes live and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A record being cut into valid pieces.
struct Cutting {
    kind: u8,
    payload: Vec<u8>,
    offset: usize,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut assembler = Assembler::new();
    let mut model = ModelAssembler::default();
    let mut cutting: Option<Cutting> = None;
    // Heap the assembler holds (the sum of what its pushes allocated and freed), and the piece
    // bytes pushed into it so far.
    let mut held: isize = 0;
    let mut pushed = 0usize;
    let mut lsn = 0u64;
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let choice = input.u8();
        let payload = match choice % 5 {
            0 | 1 => {
                // The next valid piece of a record (a new record once the last is done).
                let record = cutting.get_or_insert_with(|| Cutting {
                    kind: [2, 3, 5, 6, 7][usize::from(choice >> 3) % 5],
                    payload: input.vec(3000),
                    offset: 0,
                });
                let piece = (1 + input.len(400)).min(record.payload.len() - record.offset);
                let range = record.offset..record.offset + piece;
                let out = fragment_payload(
                    record.kind,
                    [0; 7],
                    record.payload.len() as u64,
                    record.offset as u64,
                    &record.payload[range],
                );
                record.offset += piece;
                if record.offset == record.payload.len() {
                    cutting = None;
                }
                out
            }
            2 => {
                // Any header at all: a huge total, an offset anywhere, any kind byte and padding.
                let kind = input.u8();
                let pad =
                    if choice & 0x80 != 0 { input.bytes(7).try_into().unwrap_or([1; 7]) } else { [0; 7] };
                let total = match (choice >> 3) % 4 {
                    0 => input.u64(),
                    1 => u64::MAX - u64::from(input.u8()),
                    2 => 1 << (32 + input.u8() % 32),
                    _ => u64::from(input.u16()),
                };
                let offset = match (choice >> 5) % 4 {
                    0 => 0,
                    1 => input.u64(),
                    2 => pushed as u64,
                    _ => u64::from(input.u16()),
                };
                let piece = input.vec(300);
                fragment_payload(kind, pad, total, offset, &piece)
            }
            3 => {
                // A first piece that announces a huge record, then a few real bytes.
                let total = input.u64() | 1 << 40;
                let piece = input.vec(300);
                fragment_payload([2, 3, 5, 6, 7][usize::from(choice >> 3) % 5], [0; 7], total, 0, &piece)
            }
            _ => {
                // Too short to hold a fragment header.
                input.vec(FRAGMENT_HEADER_BYTES - 1)
            }
        };
        let frame = Frame {
            lsn,
            durable_lsn: 0,
            epoch: 0,
            kind: Kind::Fragment,
            payload: &payload,
            bytes: frame_bytes(payload.len()),
        };
        lsn += frame.bytes as u64;
        let piece_bytes = payload.len().saturating_sub(FRAGMENT_HEADER_BYTES);
        pushed += piece_bytes;

        let want = model.push(&payload);
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let got = assembler.push(&frame);
        let peak = PEAK.load(Ordering::Relaxed) - before;
        held += LIVE.load(Ordering::Relaxed) as isize - before as isize;
        assert!(
            peak <= 3 * pushed + 64,
            "one push took {peak} bytes, {pushed} piece bytes were pushed so far"
        );
        assert!(
            held <= (2 * pushed + 16) as isize,
            "the assembler holds {held} bytes for {pushed} piece bytes"
        );

        match (got, want) {
            (Ok(None), Ok(None)) => {}
            (Ok(Some((kind, bytes))), Ok(Some((want_kind, want_bytes)))) => {
                assert_eq!((kind, bytes), (want_kind, &want_bytes[..]));
                assert!(!matches!(kind, Kind::Pad | Kind::Fragment));
            }
            (Err(bad), Err(())) => assert_eq!(bad.lsn, frame.lsn),
            (got, want) => panic!("the assembler answered {got:?}, its rule says {want:?}"),
        }
    }
});
