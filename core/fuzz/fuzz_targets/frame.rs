//! Arbitrary bytes as a log region: `frame::decode` at the start and frame after frame as
//! recovery reads, `classify_failure` where decoding stops, `vouching_frame` from an arbitrary
//! offset, `holds_frames`, and `Op::decode` of every frame found; every frame's payload, and
//! the bytes themselves, as a record of each kind (ops, relocated and batch records, commits,
//! each record's write number).
//!
//! Input: `u64 lsn` (rounded down to a multiple of 8), `u64 salt`, `u32 min_epoch`, `u8 flags`,
//! `u8 from`, then the log bytes. Flag 1 takes the address from the bytes' own header, so that
//! the fuzzer need not find it; flag 2 keeps only the low byte of `min_epoch`.
#![no_main]

use helio_core::log::fragment::Assembler;
use helio_core::log::frame::{holds_frames, vouching_frame, Decoded, Kind, Op, ALIGN};
use helio_core_fuzz::{
    classify_checked, decode_checked, record_checked, reference_holds, reference_vouching, scan, Input, KINDS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut lsn = input.u64();
    let salt = input.u64();
    let mut min_epoch = input.u32();
    let flags = input.u8();
    let from = usize::from(input.u8());
    let log = input.rest();
    if flags & 1 != 0 && log.len() >= 16 {
        lsn = u64::from_le_bytes(log[8..16].try_into().unwrap());
    }
    if flags & 2 != 0 {
        min_epoch &= 0xFF;
    }
    lsn &= !(ALIGN as u64 - 1);

    // One decode at the start, with the caller's epoch floor.
    if let Decoded::Frame(frame) = decode_checked(log, lsn, salt, min_epoch) {
        assert_eq!(Op::decode(&frame), Op::decode_payload(frame.kind, frame.payload));
    }

    // Frame after frame, as recovery reads; each frame's payload checked by its kind, fragments
    // through an assembler.
    let (frames, stopped, floor) = scan(log, lsn, salt);
    let mut assembler = Assembler::new();
    let mut end = lsn;
    for frame in &frames {
        assert_eq!(frame.lsn, end, "frames must follow one another");
        end = end.wrapping_add(frame.bytes as u64);
        record_checked(frame.kind, frame.payload);
        if frame.kind == Kind::Fragment {
            if let Ok(Some((kind, payload))) = assembler.push(frame) {
                assert!(!matches!(kind, Kind::Fragment | Kind::Pad));
                record_checked(kind, payload);
            }
        }
    }
    assert_eq!(end, lsn.wrapping_add(stopped as u64));
    if stopped < log.len() || frames.is_empty() {
        let failed = lsn.wrapping_add(stopped as u64);
        classify_checked(&log[stopped..], failed, salt, floor);
    }

    // The whole region as one failure, and a vouching search from an arbitrary offset.
    classify_checked(log, lsn, salt, min_epoch);
    let from = from.min(log.len() + ALIGN);
    assert_eq!(
        vouching_frame(log, lsn, from, lsn, salt, min_epoch),
        reference_vouching(log, lsn, from, lsn, salt, min_epoch)
    );
    assert_eq!(holds_frames(log, lsn, salt, min_epoch), reference_holds(log, lsn, salt, min_epoch));

    // The bytes as a payload of every kind.
    for kind in KINDS {
        record_checked(kind, log);
    }
});
