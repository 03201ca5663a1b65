//! A valid log, built with `frame::encode` from values in the input (ops, pads, relocated
//! batches, records cut into fragments; epochs and durable points moving forward as the writer
//! moves them), then damaged as the input says (bit flips, byte overwrites, zeroed runs, runs
//! copied elsewhere, truncation), then read back frame by frame as recovery reads it, and the
//! first failure classified.
//!
//! Checks: the undamaged log decodes completely, to exactly the frames written, and hands the
//! cleaner exactly the entries written; after damage, every frame wholly before the first
//! changed byte still decodes as written; the failure is corruption whenever an undamaged later
//! frame vouches for the failed address (and then the proof is the first vouching frame), and a
//! torn tail only when no frame vouches.
//!
//! Input: `u64 salt`, `u8 epoch`, `u32 base` (× 8), `u8 frames`, per frame a kind and its
//! values, then `u8 mutations`, per mutation a kind, a position and its values.
#![no_main]

use helio_core::log::batch::BatchWriter;
use helio_core::log::clean::HeadScan;
use helio_core::log::frame::{Failure, Kind, Op, HEADER_BYTES};
use helio_core_fuzz::{classify_checked, scan, Input, LogBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let salt = input.u64();
    let epoch = u32::from(input.u8());
    let base = u64::from(input.u32()) * 8;
    let records = 1 + usize::from(input.u8() % 8);

    let mut builder = LogBuilder::new(salt, base, epoch);
    // What the cleaner must be handed for the whole log.
    let mut candidates: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for _ in 0..records {
        let choice = input.u8();
        // Durability moves forward now and then (a group commit, a flush), epochs after a
        // recovery; never backwards.
        if choice & 0x10 != 0 {
            builder.sync_to(usize::from(choice >> 5));
        }
        if choice & 0x08 != 0 {
            builder.bump_epoch(u32::from(input.u8() % 3));
        }
        match choice % 6 {
            0 => {
                let (key, value) = (input.vec(40), input.vec(200));
                builder.push_op(&Op { sn: input.u64(), key: &key, value: Some(&value) });
                candidates.push((key, value));
            }
            1 => {
                let key = input.vec(40);
                builder.push_op(&Op { sn: 0, key: &key, value: None });
            }
            2 => {
                let len = input.len(120);
                builder.push(Kind::Pad, &vec![0; len]);
            }
            3 => {
                let mut batch = BatchWriter::new();
                for _ in 0..1 + input.u8() % 4 {
                    let (key, value) = (input.vec(24), input.vec(60));
                    batch.push(&key, &value);
                    candidates.push((key, value));
                }
                builder.push(Kind::Relocated, batch.payload());
            }
            4 => {
                // A record too large for one frame, cut into fragments.
                let (key, value) = (input.vec(40), input.vec(600));
                let op = Op { sn: 0, key: &key, value: Some(&value) };
                let mut payload = vec![0; op.payload_len()];
                op.write_payload(&mut payload);
                builder.push_fragmented(Kind::Put, &payload, 1 + input.len(255));
                candidates.push((key, value));
            }
            _ => {
                let key = input.vec(40);
                let op = Op { sn: 0, key: &key, value: None };
                let mut payload = vec![0; op.payload_len()];
                op.write_payload(&mut payload);
                builder.push_fragmented(Kind::Delete, &payload, 1 + input.len(64));
            }
        }
    }
    let original = builder.log.clone();
    let written = &builder.frames;

    // Undamaged: decodes completely, to what was written, and ends in a torn (empty) tail.
    let (frames, stopped, floor) = scan(&original, base, salt);
    assert_eq!(stopped, original.len(), "an undamaged log does not decode to its end");
    assert_eq!(frames.len(), written.len());
    for (frame, w) in frames.iter().zip(written) {
        assert_eq!(
            (frame.lsn, frame.durable_lsn, frame.epoch, frame.kind, frame.payload, frame.bytes),
            (w.lsn, w.durable_lsn, w.epoch, w.kind, &w.payload[..], w.bytes)
        );
    }
    let end = base + original.len() as u64;
    assert_eq!(classify_checked(&original[stopped..], end, salt, floor), Failure::Torn);
    // The cleaner reads the same log: every put and relocated entry, and the head may move to
    // the end (every fragmented record is whole).
    let mut scan_head = HeadScan::new(base);
    let mut seen = Vec::new();
    for frame in &frames {
        scan_head.push(frame, |k, v| seen.push((k.to_vec(), v.to_vec()))).expect("a written record");
    }
    assert_eq!(seen, candidates);
    assert_eq!(scan_head.cut(), end);

    // Damage.
    let mut log = original.clone();
    for _ in 0..input.u8() % 6 {
        let what = input.u8();
        let len = log.len();
        if len == 0 {
            break;
        }
        let at = usize::from(input.u16()) % len;
        match what % 6 {
            0 => log[at] ^= 1 << (input.u8() % 8),
            1 => log[at] = input.u8(),
            2 => {
                // A run of sectors never written (or punched).
                let n = (1 + input.len(600)).min(len - at);
                log[at..at + n].fill(0);
            }
            3 => {
                // A run of bytes landing somewhere else (a misdirected or reordered write).
                let to = usize::from(input.u16()) % len;
                let n = (1 + input.len(300)).min(len - at).min(len - to);
                log.copy_within(at..at + n, to);
            }
            4 => log.truncate(at),
            _ => {
                // A header word overwritten (a length, an address, a gap).
                let word = input.u32().to_le_bytes();
                let n = word.len().min(len - at);
                log[at..at + n].copy_from_slice(&word[..n]);
            }
        }
    }

    // Recovery's read of the damaged log.
    let (frames, stopped, floor) = scan(&log, base, salt);
    let first_change =
        log.iter().zip(&original).position(|(a, b)| a != b).unwrap_or(log.len().min(original.len()));
    if log == original {
        assert_eq!(stopped, original.len(), "an undamaged log does not decode to its end");
    }
    // Frames wholly before the damage decode as written.
    for (i, w) in written.iter().enumerate() {
        if (w.lsn - base) as usize + w.bytes > first_change {
            break;
        }
        let frame = frames.get(i).unwrap_or_else(|| panic!("undamaged frame {i} at {} lost", w.lsn));
        assert_eq!((frame.lsn, frame.payload, frame.epoch), (w.lsn, &w.payload[..], w.epoch));
    }
    if stopped == log.len() && !frames.is_empty() {
        return;
    }
    let failed = base + stopped as u64;
    let failure = classify_checked(&log[stopped..], failed, salt, floor);
    // An undamaged frame later in the log that says the log was durable past the failure proves
    // corruption; the proof found is the first vouching frame, so it lies at or before it.
    let voucher = written.iter().find(|w| {
        let start = (w.lsn - base) as usize;
        w.lsn >= failed + 8
            && w.durable_lsn > failed
            && w.epoch >= floor
            && start + w.bytes <= log.len()
            && log[start..start + w.bytes] == original[start..start + w.bytes]
            && start + HEADER_BYTES <= log.len()
    });
    if let Some(w) = voucher {
        match failure {
            Failure::Corrupt { proof_lsn } => assert!(proof_lsn <= w.lsn),
            Failure::Torn => panic!("the frame at {} vouches for {failed}, but it was called torn", w.lsn),
        }
    }
});
