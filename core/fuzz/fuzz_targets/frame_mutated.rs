//! A valid log, built with `frame::encode` from values in the input (ops, pads, relocated and
//! batch records, commits, records cut into fragments; epochs and durable points moving
//! forward as the writer moves them), then damaged as the input says (bit flips, byte
//! overwrites, zeroed runs, runs copied elsewhere, truncation), then read back frame by frame
//! as recovery reads it, and the first failure classified.
//!
//! Checks: the undamaged log decodes completely, to exactly the frames written, hands the
//! cleaner exactly the entries written that may be live (puts, relocated entries, a batch's
//! puts, each with its record's write number), and gives recovery's first pass (`ShardScan`)
//! the largest write number written and the commits in order; after damage, every frame wholly
//! before the first changed byte still decodes as written; the failure is corruption whenever
//! an undamaged later frame vouches for the failed address (and then the proof is the first
//! vouching frame), and a torn tail only when no frame vouches.
//!
//! Input: `u64 salt`, `u8 epoch`, `u32 base` (× 8), `u8 frames`, per frame a kind and its
//! values, then `u8 mutations`, per mutation a kind, a position and its values.
#![no_main]

use helio_core::log::batch::BatchWriter;
use helio_core::log::clean::HeadScan;
use helio_core::log::cut::{Commit, ShardScan};
use helio_core::log::fragment::Assembler;
use helio_core::log::frame::{Failure, Kind, Op, HEADER_BYTES};
use helio_core_fuzz::{classify_checked, op_payload, scan, Candidate, Input, LogBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let salt = input.u64();
    let epoch = u32::from(input.u8());
    let base = u64::from(input.u32()) * 8;
    let records = 1 + usize::from(input.u8() % 8);

    let mut builder = LogBuilder::new(salt, base, epoch);
    // What the cleaner must be handed for the whole log, and what recovery's first pass must
    // find in it.
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut max_sn = 0u64;
    let mut commits: Vec<Commit> = Vec::new();
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
        let sn = input.sn();
        if choice % 8 != 2 {
            max_sn = max_sn.max(sn);
        }
        match choice % 8 {
            0 => {
                let (key, value) = (input.vec(40), input.vec(200));
                builder.push_op(&Op { sn, key: &key, value: Some(&value) });
                candidates.push((sn, key, value));
            }
            1 => {
                let key = input.vec(40);
                builder.push_op(&Op { sn, key: &key, value: None });
            }
            2 => {
                let len = input.len(120);
                builder.push(Kind::Pad, &vec![0; len]);
            }
            3 => {
                let mut batch = BatchWriter::new();
                batch.set_sn(sn);
                for _ in 0..1 + input.u8() % 4 {
                    let (key, value) = (input.vec(24), input.vec(60));
                    batch.push(&key, &value);
                    candidates.push((sn, key, value));
                }
                builder.push(Kind::Relocated, batch.payload());
            }
            4 => {
                // A record too large for one frame, cut into fragments.
                let (key, value) = (input.vec(40), input.vec(600));
                let payload = op_payload(sn, &key, Some(&value));
                builder.push_fragmented(Kind::Put, &payload, 1 + input.len(255));
                candidates.push((sn, key, value));
            }
            5 => {
                let key = input.vec(40);
                builder.push_fragmented(Kind::Delete, &op_payload(sn, &key, None), 1 + input.len(64));
            }
            6 => {
                // One shard's part of a batch: puts and removals, in one frame or in fragments.
                let mut batch = BatchWriter::new();
                batch.set_sn(sn);
                for _ in 0..1 + input.u8() % 5 {
                    let key = input.vec(24);
                    if input.u8() & 1 == 0 {
                        batch.push_op(&key, None);
                    } else {
                        let value = input.vec(120);
                        batch.push_op(&key, Some(&value));
                        candidates.push((sn, key, value));
                    }
                }
                match input.len(255) {
                    0 => builder.push(Kind::Batch, batch.payload()),
                    piece => builder.push_fragmented(Kind::Batch, batch.payload(), piece),
                }
            }
            _ => {
                let commit = Commit { sn, ends: (0..input.u8() % 5).map(|_| input.u64()).collect() };
                builder.push(Kind::Commit, &commit.encode());
                commits.push(commit);
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
    // The cleaner reads the same log: every put, relocated entry and batch put, and the head
    // may move to the end (every fragmented record is whole).
    let mut scan_head = HeadScan::new(base);
    let mut seen = Vec::new();
    for frame in &frames {
        scan_head.push(frame, |sn, k, v| seen.push((sn, k.to_vec(), v.to_vec()))).expect("a written record");
    }
    assert_eq!(seen, candidates);
    assert_eq!(scan_head.cut(), end);
    // So does recovery's first pass, records put back together from their fragments.
    let mut shard = ShardScan::new(base);
    let mut assembler = Assembler::new();
    for frame in &frames {
        if frame.kind == Kind::Fragment {
            if let Some((kind, payload)) = assembler.push(frame).expect("a written fragment") {
                shard.push(kind, payload).expect("a written record");
            }
        } else {
            shard.push(frame.kind, frame.payload).expect("a written record");
        }
    }
    assert_eq!((shard.head, shard.end), (base, base));
    assert_eq!(shard.max_sn, max_sn, "the largest number written");
    assert_eq!(shard.commits, commits, "the commits written");

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
