//! Replaying logs written frame by frame into real segment files, then torn or damaged on disk:
//! every acknowledged frame comes back, a torn tail is cut, corruption is refused with its
//! segment and offset.

use std::os::unix::fs::FileExt;

use helio::recovery::{replay, CorruptReason, RecoveryError, ScanLimits};
use helio::segments::Segments;
use helio_core::log::frame::{encode, encode_with, frame_bytes, Kind, Op, Stamp, HEADER_BYTES};
use helio_core::log::superblock::Superblock;

const SEGMENT: u64 = 8192;
const STAMP: Stamp = Stamp { salt: 0x0DDB_A11C_0FFE_E000, epoch: 2 };

/// A minimal sequential writer: one frame per write, each durable before the next (so every
/// frame vouches for all before it), pad frames at segment ends.
struct TestLog {
    segments: Segments,
    lsn: u64,
    /// (address, bytes) of every op frame written.
    frames: Vec<(u64, usize)>,
}

impl TestLog {
    fn new(segments: Segments) -> Self {
        segments.create(0, SEGMENT).unwrap();
        Self { segments, lsn: 0, frames: Vec::new() }
    }

    fn write_at(&self, lsn: u64, bytes: &[u8]) {
        let index = self.segments.index_of(lsn);
        let file = std::fs::OpenOptions::new().write(true).open(self.segments.path(index)).unwrap();
        file.write_all_at(bytes, lsn - self.segments.start_of(index)).unwrap();
    }

    fn append(&mut self, op: Op<'_>) {
        let len = frame_bytes(op.payload_len());
        let left = self.segments.segment_bytes() - self.lsn % self.segments.segment_bytes();
        if (len as u64) != left && len as u64 + HEADER_BYTES as u64 > left {
            let mut pad = vec![0u8; left as usize];
            let pad_payload = left as usize - HEADER_BYTES;
            encode(&mut pad, STAMP, self.lsn, self.lsn, Kind::Pad, &vec![0; pad_payload]);
            self.write_at(self.lsn, &pad);
            self.lsn += left;
            self.segments.create(self.segments.index_of(self.lsn), SEGMENT).unwrap();
        }
        let mut frame = vec![0u8; len];
        encode_with(&mut frame, STAMP, self.lsn, self.lsn, op.kind(), op.payload_len(), |p| {
            op.write_payload(p)
        });
        self.write_at(self.lsn, &frame);
        self.frames.push((self.lsn, len));
        self.lsn += len as u64;
        if self.lsn % self.segments.segment_bytes() == 0 {
            self.segments.create(self.segments.index_of(self.lsn), SEGMENT).unwrap();
        }
    }

    fn superblock(&self, tail: u64) -> Superblock {
        Superblock {
            generation: 0,
            head: 0,
            tail,
            segment_bytes: SEGMENT,
            salt: STAMP.salt,
            epoch: STAMP.epoch,
            clean: false,
        }
    }
}

fn value(i: u64) -> Vec<u8> {
    vec![i as u8; (i as usize * 37) % 300]
}

/// A log of `n` puts spread over several segments.
fn written(dir: &tempfile::TempDir, n: u64) -> TestLog {
    let mut log = TestLog::new(Segments::new(dir.path(), SEGMENT));
    for i in 0..n {
        let key = format!("key-{i:05}");
        let value = value(i);
        log.append(Op { sn: i, key: key.as_bytes(), value: Some(&value) });
    }
    log
}

/// Replays and returns the keys of the ops read back, in order.
fn keys_read(log: &TestLog, tail: u64) -> Result<(Vec<String>, helio::recovery::Replayed), RecoveryError> {
    let mut keys = Vec::new();
    let replayed = replay(&log.segments, &log.superblock(tail), ScanLimits::default(), |frame| {
        if let Some(op) = Op::decode(frame) {
            assert_eq!(op.value.map(<[u8]>::to_vec), Some(value(op.sn)), "value of op {}", op.sn);
            keys.push(String::from_utf8(op.key.to_vec()).unwrap());
        }
    })?;
    Ok((keys, replayed))
}

fn expected_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key-{i:05}")).collect()
}

#[test]
fn replays_every_frame_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = written(&dir, 200);
    assert!(log.segments.list().unwrap().len() > 3, "the log must span several segments");
    let (keys, replayed) = keys_read(&log, log.lsn).unwrap();
    assert_eq!(keys, expected_keys(200));
    assert_eq!((replayed.end_lsn, replayed.torn_at), (log.lsn, None));
}

#[test]
fn a_torn_tail_is_cut_at_every_point_of_the_last_frames() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = written(&dir, 60);
    let durable = log.lsn; // what the superblock says was durable
    for i in 60..64u64 {
        let key = format!("key-{i:05}");
        let value = value(i);
        log.append(Op { sn: i, key: key.as_bytes(), value: Some(&value) });
    }
    let unacked: Vec<(u64, usize)> = log.frames[60..].to_vec();
    let pristine: Vec<Vec<u8>> =
        log.segments.list().unwrap().iter().map(|&i| std::fs::read(log.segments.path(i)).unwrap()).collect();
    let (first, end) = (unacked[0].0, log.lsn);
    let mut cut = first;
    while cut < end {
        // Restore, then tear: garbage from `cut` to the end of its segment.
        for (i, bytes) in log.segments.list().unwrap().into_iter().zip(&pristine) {
            std::fs::write(log.segments.path(i), bytes).unwrap();
        }
        let index = log.segments.index_of(cut);
        let in_segment = cut - log.segments.start_of(index);
        let garbage = vec![0x5A; (SEGMENT - in_segment) as usize];
        let file = std::fs::OpenOptions::new().write(true).open(log.segments.path(index)).unwrap();
        file.write_all_at(&garbage, in_segment).unwrap();
        let (keys, replayed) = keys_read(&log, durable).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let whole = unacked.iter().filter(|(at, len)| at + *len as u64 <= cut).count();
        assert_eq!(keys, expected_keys(60 + whole), "cut at {cut}");
        assert!(replayed.torn_at.is_some(), "cut at {cut}");
        cut += 8;
    }
}

#[test]
fn damage_below_a_vouching_frame_is_corruption_naming_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = written(&dir, 100);
    for &(at, len) in [log.frames[3], log.frames[50], log.frames[98]].iter() {
        let index = log.segments.index_of(at);
        let path = log.segments.path(index);
        let original = std::fs::read(&path).unwrap();
        let mut damaged = original.clone();
        damaged[(at - log.segments.start_of(index)) as usize + len / 2] ^= 0x10;
        std::fs::write(&path, &damaged).unwrap();
        match keys_read(&log, 0) {
            Err(RecoveryError::Corrupt {
                segment,
                offset,
                reason: CorruptReason::VouchedFor { proof_lsn },
            }) => {
                assert_eq!((segment, offset), (path.clone(), at - log.segments.start_of(index)));
                assert!(proof_lsn > at);
            }
            other => panic!("frame at {at}: {other:?}"),
        }
        std::fs::write(&path, &original).unwrap();
    }
}

#[test]
fn damage_to_the_last_frame_below_the_durable_tail_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let log = written(&dir, 40);
    let (at, _) = *log.frames.last().unwrap();
    log.write_at(at + 30, &[0xFF; 4]);
    // Without the superblock's word it is a torn tail...
    let (keys, replayed) = keys_read(&log, 0).unwrap();
    assert_eq!((keys.len(), replayed.torn_at), (39, Some(at)));
    // ...but the superblock recorded the log durable past it.
    let err = keys_read(&log, log.lsn).unwrap_err();
    assert!(
        matches!(err, RecoveryError::Corrupt { reason: CorruptReason::BelowDurableTail { .. }, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("segment-"), "{err}");
}

#[test]
fn a_missing_middle_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = written(&dir, 200);
    std::fs::remove_file(log.segments.path(1)).unwrap();
    let err = keys_read(&log, 0).unwrap_err();
    assert!(
        matches!(&err, RecoveryError::MissingSegment { segment } if *segment == log.segments.path(1)),
        "{err}"
    );
}
