use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::log::frame::{encode, frame_bytes, Kind, Stamp};

const SEG: u64 = 64 << 10;
const STAMP: Stamp = Stamp { salt: 0x5A17, epoch: 2 };

fn sb(head: u64, tail: u64, clean: bool) -> Superblock {
    Superblock { generation: 1, head, tail, segment_bytes: SEG, salt: STAMP.salt, epoch: STAMP.epoch, clean }
}

/// A log of `count` frames of `payload` bytes from address 0, each frame claiming the log
/// durable up to the frame `lag` before it; pads to segment ends as the writer does.
fn log(count: usize, payload: usize, lag: usize) -> (MemorySource, Vec<u64>) {
    let mut segments: Vec<Vec<u8>> = vec![Vec::new()];
    let mut addresses = Vec::new();
    let mut lsn = 0u64;
    let len = frame_bytes(payload);
    let mut i = 0;
    while i < count {
        let seg = (lsn / SEG) as usize;
        if segments.len() <= seg {
            segments.push(Vec::new());
        }
        let room = (SEG - lsn % SEG) as usize;
        if room < len + 24 && room != len {
            // Pad to the segment end.
            let durable = addresses.len().checked_sub(lag + 1).map_or(0, |j| addresses[j]);
            let mut frame = vec![0u8; room];
            encode(&mut frame, STAMP, lsn, durable, Kind::Pad, &vec![0; room - 24]);
            segments[seg].extend_from_slice(&frame);
            lsn += room as u64;
            continue;
        }
        let durable = addresses.len().checked_sub(lag).map_or(0, |j| addresses[j]);
        let mut frame = vec![0u8; len];
        encode(&mut frame, STAMP, lsn, durable.min(lsn), Kind::Put, &vec![i as u8; payload]);
        segments[seg].extend_from_slice(&frame);
        addresses.push(lsn);
        lsn += len as u64;
        i += 1;
    }
    (MemorySource { segments: segments.into_iter().map(Some).collect() }, addresses)
}

fn run(
    source: &mut MemorySource,
    sb: &Superblock,
    limits: ScanLimits,
) -> Result<(Replayed, usize), RecoverError<core::convert::Infallible>> {
    let existing = source.existing();
    let mut frames = 0;
    let replayed = replay(source, sb, &existing, limits, |f| frames += usize::from(f.kind == Kind::Put))?;
    Ok((replayed, frames))
}

const LIMITS: ScanLimits = ScanLimits { quiet_run: 2 * SEG, max_frame: 4096 };

#[test]
fn a_whole_log_replays_across_segments_and_ends_on_unwritten_space() {
    let (mut source, addresses) = log(300, 700, 3);
    let (replayed, frames) = run(&mut source, &sb(0, 0, false), LIMITS).unwrap();
    assert_eq!(frames, 300);
    assert!(replayed.end_lsn > 3 * SEG && replayed.torn_at.is_none());
    assert!(addresses.len() == 300);
}

#[test]
fn a_tear_is_cut_and_damage_something_vouches_for_is_corruption() {
    let (clean, addresses) = log(200, 500, 4);
    // The last frame torn: cut there.
    let mut torn = clean.clone();
    let last = *addresses.last().unwrap();
    let seg = (last / SEG) as usize;
    torn.segments[seg].as_mut().unwrap()[(last % SEG) as usize + 30] ^= 1;
    let (replayed, frames) = run(&mut torn, &sb(0, 0, false), LIMITS).unwrap();
    assert_eq!((replayed.end_lsn, replayed.torn_at, frames), (last, Some(last), 199));
    // A frame in the middle damaged: later frames vouch for it.
    let mut damaged = clean.clone();
    let middle = addresses[100];
    damaged.segments[(middle / SEG) as usize].as_mut().unwrap()[(middle % SEG) as usize + 30] ^= 1;
    let err = run(&mut damaged, &sb(0, 0, false), LIMITS).unwrap_err();
    assert!(
        matches!(err, RecoverError::Corrupt { lsn, reason: CorruptReason::VouchedFor { .. } } if lsn == middle),
        "{err:?}"
    );
    // Ending below the superblock's durable tail is corruption too.
    let err = run(&mut torn, &sb(0, last + 8, false), LIMITS).unwrap_err();
    assert!(matches!(err, RecoverError::Corrupt { reason: CorruptReason::BelowDurableTail { .. }, .. }));
    // A segment missing before a later one.
    let (mut missing, _) = log(300, 700, 3);
    missing.segments[1] = None;
    assert_eq!(
        run(&mut missing, &sb(0, 0, false), LIMITS).unwrap_err(),
        RecoverError::MissingSegment { segment: 1 }
    );
}

/// A source that counts the bytes read.
struct Counting(MemorySource, u64);

impl Source for Counting {
    type Error = core::convert::Infallible;
    fn read(&mut self, index: u64, offset: u64, buf: &mut [u8]) -> Result<bool, Self::Error> {
        self.1 += buf.len() as u64;
        self.0.read(index, offset, buf)
    }
}

#[test]
fn a_clean_log_stops_at_its_tail_and_stale_frames_after_a_tear_end_the_search() {
    // A log whose last segment is a recycled one: after the tail, frames of another segment.
    let (old, _) = log(300, 700, 3);
    let (mut source, addresses) = log(100, 700, 3);
    let end = addresses.last().unwrap() + frame_bytes(700) as u64;
    let tail_seg = (end / SEG) as usize;
    let mut recycled = old.segments[0].clone().unwrap();
    let live = source.segments[tail_seg].as_ref().unwrap().clone();
    recycled[..live.len()].copy_from_slice(&live);
    source.segments[tail_seg] = Some(recycled);
    for later in tail_seg + 1..tail_seg + 10 {
        assert!(later > 0);
        source.segments.push(old.segments[0].clone());
    }
    let existing = source.existing();
    let mut counting = Counting(source.clone(), 0);
    let replayed = replay(&mut counting, &sb(0, end, true), &existing, LIMITS, |_| {}).unwrap();
    assert_eq!((replayed.end_lsn, replayed.torn_at), (end, None));
    assert!(counting.1 <= end + SEG, "read {} bytes of a {end}-byte log", counting.1);
    // The same log after a crash (not clean): stale frames are a tear, and the search for a
    // vouching frame stops after the quiet run instead of reading every later segment.
    let mut counting = Counting(source, 0);
    let replayed = replay(&mut counting, &sb(0, 0, false), &existing, LIMITS, |_| {}).unwrap();
    assert_eq!(replayed.end_lsn, end);
    assert!(counting.1 <= end + SEG + LIMITS.quiet_run + SEG, "read {} bytes", counting.1);
}

#[test]
fn read_durable_reads_a_stretch_and_calls_damage_there_corruption() {
    let (mut source, addresses) = log(200, 300, 1);
    let mut buffer = Vec::new();
    let mut seen = 0;
    let until = addresses[150];
    read_durable(&mut source, SEG, STAMP.salt, (addresses[10], until), CHUNK, &mut buffer, |f| {
        seen += usize::from(f.kind == Kind::Put);
        true
    })
    .unwrap();
    assert_eq!(seen, 140);
    let at = addresses[50];
    source.segments[(at / SEG) as usize].as_mut().unwrap()[(at % SEG) as usize + 40] ^= 4;
    let err =
        read_durable(&mut source, SEG, STAMP.salt, (addresses[10], until), CHUNK, &mut buffer, |_| true)
            .unwrap_err();
    assert_eq!(
        err,
        RecoverError::Corrupt { lsn: at, reason: CorruptReason::BelowDurable { durable_lsn: until } }
    );
}
