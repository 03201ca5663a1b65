//! Recovery's read of a whole log: `recover::replay` over segments in memory (`MemorySource`),
//! from the superblock's head, across segments, to where the log ends, and `recover::read_durable`
//! (the cleaner's read of a durable stretch).
//!
//! Mode 0 builds a log as the writer does (ops, pads, relocated and batch records, commits,
//! records in fragments; frames never cross a segment end, the rest of a segment padded;
//! durable points and epochs moving forward; segments below the head deleted; the
//! superblock's tail at or below the durable point, or a clean close at the end; after the end
//! zeros, stale frames of a recycled segment or garbage), then damages it as the input says
//! (bit flips, overwrites, zeroed and copied runs, segment files cut short or missing).
//! Undamaged, it must replay completely to exactly the frames written. Damaged: frames before
//! the first damaged byte are still read; when an undamaged later frame vouches for the address
//! where reading stopped, that is corruption, with the first vouching frame as proof; every
//! error names a place that fits it.
//!
//! Mode 1 takes the superblock's fields, the segments and the scan limits raw from the input
//! (as from a damaged or hostile store) and checks only that nothing panics and that what was
//! read fits together.
//!
//! Input: `u8 mode`, then the values of that mode.
#![no_main]

use helio_core::log::cut::Commit;
use helio_core::log::frame::{decode, frame_bytes, Decoded, Frame, Kind, HEADER_BYTES};
use helio_core::log::recover::{
    read_durable, replay, CorruptReason, CHUNK, MemorySource, RecoverError, Replayed, ScanLimits,
};
use helio_core::log::superblock::Superblock;
use helio_core_fuzz::{op_payload, Input, LogBuilder, Written};
use libfuzzer_sys::fuzz_target;

type Result = core::result::Result<Replayed, RecoverError<core::convert::Infallible>>;

/// A frame as `replay` handed it over.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    lsn: u64,
    durable_lsn: u64,
    epoch: u32,
    kind: Kind,
    payload: Vec<u8>,
    bytes: usize,
}

impl Seen {
    fn of(f: &Frame<'_>) -> Self {
        Seen {
            lsn: f.lsn,
            durable_lsn: f.durable_lsn,
            epoch: f.epoch,
            kind: f.kind,
            payload: f.payload.to_vec(),
            bytes: f.bytes,
        }
    }

    fn written(w: &Written) -> Self {
        Seen {
            lsn: w.lsn,
            durable_lsn: w.durable_lsn,
            epoch: w.epoch,
            kind: w.kind,
            payload: w.payload.clone(),
            bytes: w.bytes,
        }
    }
}

/// A segment's bytes as a read sees them: the file, then zeros up to the segment size.
fn effective(source: &MemorySource, index: u64, seg: u64) -> Option<Vec<u8>> {
    let file = source.segments.get(usize::try_from(index).ok()?)?.as_ref()?;
    let mut out = file.clone();
    out.resize(usize::try_from(seg).ok()?.max(file.len()), 0);
    out.truncate(seg as usize);
    Some(out)
}

/// Decodes the frame at `lsn` as the segments hold it (`None` if its segment is missing or it
/// does not decode there).
fn frame_at(source: &MemorySource, seg: u64, lsn: u64, salt: u64, min_epoch: u32) -> Option<Seen> {
    let bytes = effective(source, lsn / seg, seg)?;
    match decode(&bytes[(lsn % seg) as usize..], lsn, salt, min_epoch) {
        Decoded::Frame(f) => Some(Seen::of(&f)),
        _ => None,
    }
}

/// Runs `replay`, collecting what it handed over; checks what holds for any log: the frames
/// follow one another from the head, each is intact where it lies, and the counts add up.
fn replay_checked(
    source: &mut MemorySource,
    sb: &Superblock,
    limits: ScanLimits,
    check_in_place: bool,
) -> (Result, Vec<Seen>) {
    let existing = source.existing();
    let mut seen = Vec::new();
    let result = replay(source, sb, &existing, limits, |f| seen.push(Seen::of(f)));
    let mut end = sb.head;
    let mut floor = 0;
    for f in &seen {
        assert_eq!(f.lsn, end, "frames must follow one another");
        assert!(f.epoch >= floor, "epochs went back");
        if check_in_place {
            assert_eq!(frame_at(source, sb.segment_bytes, f.lsn, sb.salt, floor).as_ref(), Some(f));
            assert!(f.lsn % sb.segment_bytes + f.bytes as u64 <= sb.segment_bytes, "a frame across segments");
        }
        floor = f.epoch;
        end += f.bytes as u64;
    }
    match &result {
        Ok(r) => {
            assert_eq!((r.end_lsn, r.frames, r.bytes), (end, seen.len() as u64, end - sb.head));
            assert!(r.end_lsn >= sb.tail, "the log ends below its durable tail, yet no error");
            assert!(r.torn_at.is_none_or(|at| at == end));
        }
        Err(RecoverError::Corrupt { lsn, reason }) => {
            assert_eq!(*lsn, end, "corruption named elsewhere than where reading stopped");
            match *reason {
                CorruptReason::VouchedFor { proof_lsn } => {
                    assert!(proof_lsn > end);
                    if check_in_place {
                        let proof = frame_at(source, sb.segment_bytes, proof_lsn, sb.salt, floor)
                            .expect("the proof is an intact frame where it claims to lie");
                        assert!(proof.durable_lsn > end, "the proof does not vouch for {end}");
                    }
                }
                CorruptReason::BelowDurableTail { tail } => assert!(tail == sb.tail && end < tail),
                other => panic!("replay gave {other:?}"),
            }
        }
        Err(RecoverError::MissingSegment { segment }) => {
            assert_eq!(*segment, end / sb.segment_bytes);
            assert!(source.segments.get(*segment as usize).is_none_or(|s| s.is_none()));
            assert!(existing.iter().any(|&later| later > *segment));
        }
        Err(RecoverError::Read { .. }) => unreachable!("memory reads do not fail"),
    }
    (result, seen)
}

/// A log as the writer lays it out in segments of `seg` bytes.
struct SegLog {
    seg: u64,
    log: LogBuilder,
}

impl SegLog {
    /// Appends a record, after a pad to the segment end if it does not fit in what is left (a
    /// fill never crosses a segment end, and never leaves less than a pad frame's room).
    /// `false`: the record is too large for any segment.
    fn push(&mut self, kind: Kind, payload: &[u8]) -> bool {
        let bytes = frame_bytes(payload.len()) as u64;
        let fits = |room: u64| bytes <= room && (room - bytes == 0 || room - bytes >= HEADER_BYTES as u64);
        if !fits(self.seg) {
            return false;
        }
        let room = self.seg - self.log.next_lsn() % self.seg;
        if !fits(room) {
            self.log.push(Kind::Pad, &vec![0; room as usize - HEADER_BYTES]);
        }
        self.log.push(kind, payload);
        true
    }
}

fn writer_mode(input: &mut Input<'_>) {
    let salt = input.u64();
    let seg = 64 * (2 + u64::from(input.u8() % 31));
    let first = u64::from(input.u8() % 3);
    let mut log = SegLog { seg, log: LogBuilder::new(salt, first * seg, u32::from(input.u8() % 4)) };
    for _ in 0..1 + input.u8() % 14 {
        let choice = input.u8();
        if choice & 0x10 != 0 {
            log.log.sync_to(usize::from(choice >> 5));
        }
        if choice & 0x08 != 0 {
            log.log.bump_epoch(1);
        }
        let _ = match choice % 7 {
            0 => log.push(Kind::Put, &op_payload(input.sn(), &input.vec(16), Some(&input.vec(120)))),
            1 => log.push(Kind::Delete, &op_payload(input.sn(), &input.vec(16), None)),
            2 => log.push(Kind::Pad, &vec![0; input.len(64)]),
            3 | 4 => {
                // A relocated record, or a batch's part (with removals).
                let batched = choice % 7 == 4;
                let mut batch = helio_core::log::batch::BatchWriter::new();
                batch.set_sn(input.sn());
                for _ in 0..1 + input.u8() % 3 {
                    let key = input.vec(8);
                    if batched && input.u8() & 1 == 0 {
                        batch.push_op(&key, None);
                    } else {
                        batch.push(&key, &input.vec(24));
                    }
                }
                log.push(if batched { Kind::Batch } else { Kind::Relocated }, batch.payload())
            }
            5 => {
                let sn = input.sn();
                let commit =
                    Commit { sn, ends: (0..input.u8() % 4).map(|_| u64::from(input.u32())).collect() };
                log.push(Kind::Commit, &commit.encode())
            }
            _ => {
                // A record in fragments, each piece a frame of its own.
                let payload = op_payload(input.sn(), &input.vec(16), Some(&input.vec(200)));
                let piece = 1 + input.len(60);
                let mut all = true;
                for (offset, len) in helio_core::log::fragment::pieces(payload.len(), 24 + piece) {
                    let mut out = vec![0; 24 + len];
                    helio_core::log::fragment::write_fragment(&mut out, Kind::Put, &payload, offset, len);
                    all &= log.push(Kind::Fragment, &out);
                }
                all
            }
        };
    }
    let builder = log.log;
    let written = builder.frames.clone();
    let end = builder.next_lsn();
    // The head: a frame boundary among the first frames (those below it were cleaned); the
    // tail: a boundary at or below the durable point the frames claim (or the end, at a clean
    // close).
    let boundaries: Vec<u64> = builder.boundaries().collect();
    let head = boundaries[usize::from(input.u8()) % boundaries.len().min(4)];
    let durable = written.iter().map(|w| w.durable_lsn).max().unwrap_or(head).max(head);
    let flags = input.u8();
    let clean = flags & 1 != 0;
    let tail = if clean {
        end
    } else {
        let below: Vec<u64> = boundaries.iter().copied().filter(|&b| b >= head && b <= durable).collect();
        below[usize::from(input.u8()) % below.len()]
    };
    let sb = Superblock { generation: 1, head, tail, segment_bytes: seg, salt, epoch: builder.epoch, clean };

    // Segments: none below the first; the written bytes; what lies past the end.
    let last = (end.max(first * seg + 1) - 1) / seg;
    let mut segments: Vec<Option<Vec<u8>>> = vec![None; first as usize];
    for index in first..=last + u64::from(flags >> 1 & 1) {
        let mut bytes = vec![0u8; seg as usize];
        let from = (index * seg).max(first * seg);
        let to = ((index + 1) * seg).min(end);
        if from < to {
            let (a, b) = ((from - first * seg) as usize, (to - first * seg) as usize);
            bytes[(from - index * seg) as usize..(to - index * seg) as usize]
                .copy_from_slice(&builder.log[a..b]);
        }
        segments.push(Some(bytes));
    }
    match flags >> 2 & 3 {
        0 => {} // zero-filled ahead
        1 => {
            // A recycled segment: frames of this log, but stamped with other addresses.
            let mut stale = LogBuilder::new(salt, end + 64 * seg, builder.epoch);
            for _ in 0..3 {
                stale.push(Kind::Put, &op_payload(0, b"old", Some(&[9; 40])));
            }
            let (index, offset) = ((end / seg) as usize, (end % seg) as usize);
            if let Some(Some(bytes)) = segments.get_mut(index) {
                let n = stale.log.len().min(bytes.len() - offset);
                bytes[offset..offset + n].copy_from_slice(&stale.log[..n]);
            }
        }
        _ => {
            // Garbage past the end.
            let (index, offset) = ((end / seg) as usize, (end % seg) as usize);
            if let Some(Some(bytes)) = segments.get_mut(index) {
                let garbage = input.bytes(bytes.len() - offset);
                bytes[offset..offset + garbage.len()].copy_from_slice(garbage);
            }
        }
    }
    let original = MemorySource { segments };
    let limits = ScanLimits { quiet_run: 1 << 40, max_frame: 1 + usize::from(input.u16()) };

    // Undamaged: every frame from the head, and the end where the writer stopped.
    let mut source = original.clone();
    let (result, seen) = replay_checked(&mut source, &sb, limits, true);
    let from_head: Vec<Seen> = written.iter().filter(|w| w.lsn >= head).map(Seen::written).collect();
    let r = result.unwrap_or_else(|e| panic!("an undamaged log does not replay: {e:?}"));
    if flags >> 2 & 3 >= 2 && !clean {
        // Garbage past the end may hold a frame of this log at its own address: read on.
        assert_eq!(seen[..from_head.len()], from_head[..]);
        assert!(r.end_lsn >= end);
    } else {
        assert_eq!(seen, from_head);
        assert_eq!(r.end_lsn, end);
    }
    if clean || flags >> 2 & 3 == 0 {
        assert_eq!(r.torn_at, None, "a log ending on zeros or a clean close is not torn");
    }
    // The cleaner's read of the durable stretch from the head.
    let mut buffer = Vec::new();
    let mut read = Vec::new();
    read_durable(&mut source, seg, salt, (head, tail), CHUNK, &mut buffer, |f| {
        read.push(Seen::of(f));
        true
    })
    .expect("a durable stretch of an undamaged log reads");
    assert_eq!(read[..], from_head[..read.len()]);
    assert_eq!(read.iter().map(|f| f.bytes as u64).sum::<u64>(), tail - head);

    // Damage.
    let mut source = original.clone();
    let span = (source.segments.len() as u64 - first) * seg;
    for _ in 0..input.u8() % 6 {
        let what = input.u8();
        let at = first * seg + u64::from(input.u16()) % span;
        let (index, offset) = ((at / seg) as usize, (at % seg) as usize);
        let Some(bytes) = source.segments[index].as_mut() else { continue };
        if offset >= bytes.len() {
            continue;
        }
        match what % 7 {
            0 => bytes[offset] ^= 1 << (input.u8() % 8),
            1 => bytes[offset] = input.u8(),
            2 => {
                let n = (1 + input.len(600)).min(bytes.len() - offset);
                bytes[offset..offset + n].fill(0);
            }
            3 => {
                let to = usize::from(input.u16()) % bytes.len();
                let n = (1 + input.len(300)).min(bytes.len() - offset).min(bytes.len() - to);
                bytes.copy_within(offset..offset + n, to);
            }
            4 => bytes.truncate(offset),
            5 => source.segments[index] = None,
            _ => {
                let word = input.u32().to_le_bytes();
                let n = word.len().min(bytes.len() - offset);
                bytes[offset..offset + n].copy_from_slice(&word[..n]);
            }
        }
    }
    let (result, seen) = replay_checked(&mut source, &sb, limits, true);
    // The first address whose bytes differ from the undamaged log.
    let first_change = (first..original.segments.len() as u64)
        .find_map(|index| {
            let (a, b) = (effective(&original, index, seg), effective(&source, index, seg));
            match (a, b) {
                (Some(a), Some(b)) => {
                    a.iter().zip(&b).position(|(x, y)| x != y).map(|i| index * seg + i as u64)
                }
                _ => Some(index * seg),
            }
        })
        .unwrap_or(u64::MAX);
    for w in written.iter().filter(|w| w.lsn >= head) {
        if w.lsn + w.bytes as u64 > first_change {
            break;
        }
        assert!(seen.contains(&Seen::written(w)), "the undamaged frame at {} was not read", w.lsn);
    }
    let stopped = head + seen.iter().map(|f| f.bytes as u64).sum::<u64>();
    let floor = seen.last().map_or(0, |f| f.epoch);
    if first_change == u64::MAX {
        assert!(result.is_ok() && stopped == end);
    }
    if matches!(result, Err(RecoverError::MissingSegment { .. })) || (clean && stopped == tail) {
        return;
    }
    // An undamaged later frame that vouches for where reading stopped proves corruption.
    let voucher = written.iter().find(|w| {
        w.lsn >= stopped + 8
            && w.durable_lsn > stopped
            && w.epoch >= floor
            && effective(&source, w.lsn / seg, seg).is_some()
            && frame_at(&source, seg, w.lsn, salt, floor).as_ref() == Some(&Seen::written(w))
    });
    if let Some(w) = voucher {
        match result {
            Err(RecoverError::Corrupt { reason: CorruptReason::VouchedFor { proof_lsn }, .. }) => {
                assert!(proof_lsn <= w.lsn)
            }
            other => panic!("the frame at {} vouches for {stopped}, but replay gave {other:?}", w.lsn),
        }
    }
    // The durable stretch reads the same frames up to the damage, and fails on it.
    let mut read = Vec::new();
    read_durable(&mut source, seg, salt, (head, tail.min(stopped)), CHUNK, &mut buffer, |f| {
        read.push(Seen::of(f));
        true
    })
    .expect("frames replay read are read again");
    assert_eq!(read[..], seen[..read.len()]);
}

fn raw_mode(input: &mut Input<'_>) {
    let flags = input.u8();
    let small =
        |v: u64, input: &mut Input<'_>| if flags & 1 != 0 { v } else { v % (1 + u64::from(input.u16())) };
    let head = small(input.u64(), input);
    let sb = Superblock {
        generation: 1,
        head,
        tail: head.saturating_add(small(input.u64(), input) >> (input.u8() % 64)),
        // Small segments keep every window small (a damaged length reads at most
        // `FRAME_BYTES_MAX`, checked by a unit test of `recover`).
        segment_bytes: small(input.u64(), input).clamp(1, 1 << 16),
        salt: input.u64(),
        epoch: 0,
        clean: flags & 2 != 0,
    };
    let limits = ScanLimits { quiet_run: u64::from(input.u16()), max_frame: usize::from(input.u16()) };
    let mut segments = Vec::new();
    for _ in 0..1 + input.u8() % 4 {
        let present = input.u8() & 1 == 0;
        let bytes = input.vec(4096);
        segments.push(present.then_some(bytes));
    }
    let mut source = MemorySource { segments };
    let (result, seen) = replay_checked(&mut source, &sb, limits, false);
    let mut buffer = Vec::new();
    let mut read = Vec::new();
    let until = result.as_ref().map_or(sb.tail, |r| r.end_lsn);
    let _ = read_durable(&mut source, sb.segment_bytes, sb.salt, (sb.head, until), CHUNK, &mut buffer, |f| {
        read.push(Seen::of(f));
        true
    });
    // Both read the same log the same way (the durable read with no epoch floor may read on
    // where replay refused a stale frame, never differently before it).
    let n = read.len().min(seen.len());
    assert_eq!(read[..n], seen[..n]);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    if input.u8() & 1 == 0 {
        writer_mode(&mut input);
    } else {
        raw_mode(&mut input);
    }
});
