//! Reading a shard's log back at open: from the superblock's head, frame by frame, across
//! segments, until the written log ends. A torn tail is cut; corruption is refused with the
//! segment and offset. The decisions (is this a frame, is this failure a tear) are the core's;
//! this module reads the files.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use helio_core::log::frame::{
    decode, holds_frames, vouching_frame, Decoded, Frame, Invalid, ALIGN, HEADER_BYTES,
};
use helio_core::log::superblock::Superblock;

use crate::disk::{read_full, DiskFile};
use crate::segments::Segments;

/// Bytes read from a segment at a time (more when one frame is bigger).
const CHUNK: usize = 4 << 20;

/// What a replay found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Where the log ends: writing resumes here (in the next epoch).
    pub end_lsn: u64,
    /// Frames read and handed to the caller.
    pub frames: u64,
    /// Log bytes those frames took.
    pub bytes: u64,
    /// Where a torn tail was cut, if the log did not end cleanly on unwritten space.
    pub torn_at: Option<u64>,
}

/// Why a log could not be replayed. Nothing is changed on disk.
#[derive(Debug)]
pub enum RecoveryError {
    /// A system call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Bytes the log had acknowledged are damaged.
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Offset of the damaged frame in that file.
        offset: u64,
        /// Why this is known to be corruption rather than a torn write.
        reason: CorruptReason,
    },
    /// A segment between the head and a later segment is missing.
    MissingSegment {
        /// The file that should be there.
        segment: PathBuf,
    },
}

/// The evidence behind [`RecoveryError::Corrupt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptReason {
    /// A later intact frame (at this log address) was written when this one was durable.
    VouchedFor {
        /// The later frame's address.
        proof_lsn: u64,
    },
    /// The superblock says the log was durable up to here, past the damaged frame.
    BelowDurableTail {
        /// The superblock's tail.
        tail: u64,
    },
    /// An intact frame whose content breaks the log's rules (a fragment out of sequence).
    Malformed,
    /// The frame lies below the address the running log had made durable (found by the
    /// cleaner, which reads only durable records).
    BelowDurable {
        /// The durable address.
        durable_lsn: u64,
    },
}

impl RecoveryError {
    /// Corruption of the frame at log address `lsn`, named by its segment file and offset.
    pub fn corrupt_at(segments: &Segments, lsn: u64, reason: CorruptReason) -> Self {
        let index = segments.index_of(lsn);
        RecoveryError::Corrupt {
            segment: segments.path(index),
            offset: lsn - segments.start_of(index),
            reason,
        }
    }
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            RecoveryError::Corrupt { segment, offset, reason } => {
                write!(f, "corrupt log record in {} at offset {offset}: ", segment.display())?;
                match reason {
                    CorruptReason::VouchedFor { proof_lsn } => {
                        write!(
                            f,
                            "the intact record at log address {proof_lsn} was written after it was durable"
                        )
                    }
                    CorruptReason::BelowDurableTail { tail } => {
                        write!(f, "the superblock records the log durable up to address {tail}")
                    }
                    CorruptReason::Malformed => f.write_str("an intact record breaks the log's rules"),
                    CorruptReason::BelowDurable { durable_lsn } => {
                        write!(f, "the log was durable up to address {durable_lsn}")
                    }
                }
            }
            RecoveryError::MissingSegment { segment } => {
                write!(f, "log segment {} is missing, but later segments exist", segment.display())
            }
        }
    }
}

impl std::error::Error for RecoveryError {}

/// How far recovery looks past a failed decode for a frame that proves it corruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimits {
    /// The scan stops after this many bytes in a row that hold no intact frame of this log at
    /// its own address (unwritten space, a recycled segment's stale frames, garbage): more
    /// than the writer can leave unwritten between written fills (its buffers in flight).
    pub quiet_run: u64,
    /// Largest frame the writer makes; the scan reads windows of at least twice this.
    pub max_frame: usize,
}

impl Default for ScanLimits {
    /// Limits for the default log geometry (1 MiB buffers, a few in flight).
    fn default() -> Self {
        Self { quiet_run: 64 << 20, max_frame: 512 << 10 }
    }
}

/// Reads the log described by `sb` from its head, handing every intact frame to `visit` in log
/// order, and returns where the log ends. Memory use is bounded by a few windows of
/// `max(4 MiB, 2 × limits.max_frame)`.
pub fn replay(
    segments: &Segments,
    sb: &Superblock,
    limits: ScanLimits,
    mut visit: impl FnMut(&Frame<'_>),
) -> Result<Replayed, RecoveryError> {
    let list_err = |source| RecoveryError::Io { op: "list segments in", path: segments.path(0), source };
    let existing = segments.list().map_err(list_err)?;
    let mut replayed = Replayed { end_lsn: sb.head, frames: 0, bytes: 0, torn_at: None };
    let mut min_epoch = 0;
    loop {
        let index = segments.index_of(replayed.end_lsn);
        let path = segments.path(index);
        let io = |op, source| RecoveryError::Io { op, path: path.clone(), source };
        let Some(file) = segments.open(index).map_err(|e| io("open segment", e))? else {
            if existing.iter().any(|&later| later > index) {
                return Err(RecoveryError::MissingSegment { segment: path });
            }
            return finish(segments, sb, replayed);
        };
        let start = segments.start_of(index);
        let mut window = Window::new(file, segments.segment_bytes());
        while replayed.end_lsn < start + segments.segment_bytes() {
            if sb.clean && replayed.end_lsn == sb.tail {
                // Closed cleanly here: nothing was written past it (a recycled segment's old
                // bytes may follow, and are not read).
                return finish(segments, sb, replayed);
            }
            let lsn = replayed.end_lsn;
            let offset = lsn - start;
            window.fill(offset, HEADER_BYTES).map_err(|e| io("read segment", e))?;
            let failure = match decode(window.from(offset), lsn, sb.salt, min_epoch) {
                Decoded::Frame(frame) => {
                    visit(&frame);
                    min_epoch = frame.epoch;
                    replayed.end_lsn += frame.bytes as u64;
                    replayed.frames += 1;
                    replayed.bytes += frame.bytes as u64;
                    continue;
                }
                Decoded::NeedMore { bytes } if offset + bytes as u64 <= segments.segment_bytes() => {
                    window.fill(offset, bytes).map_err(|e| io("read segment", e))?;
                    continue;
                }
                Decoded::NeedMore { .. } => None,
                Decoded::Invalid(why) => Some(why),
            };
            return after_failure(segments, sb, &existing, limits, replayed, min_epoch, failure);
        }
    }
}

/// Reads the frames from `from` up to `until` (both frame boundaries of a durable stretch of the
/// log), handing each to `visit` in log order until it returns `false`, window by window through
/// `buffer` (kept for the next call, so that its pages are not faulted in again). Any frame that
/// does not decode there is corruption.
pub fn read_durable(
    segments: &Segments,
    salt: u64,
    from: u64,
    until: u64,
    buffer: &mut Vec<u8>,
    mut visit: impl FnMut(&Frame<'_>) -> bool,
) -> Result<(), RecoveryError> {
    let mut lsn = from;
    while lsn < until {
        let index = segments.index_of(lsn);
        let path = segments.path(index);
        let io = |op, source| RecoveryError::Io { op, path: path.clone(), source };
        let Some(file) = segments.open(index).map_err(|e| io("open segment", e))? else {
            return Err(RecoveryError::MissingSegment { segment: path });
        };
        let start = segments.start_of(index);
        let end = (start + segments.segment_bytes()).min(until);
        let mut window = Window::new(file, segments.segment_bytes());
        window.data = std::mem::take(buffer);
        window.data.clear(); // holds nothing of this file yet
        let read = read_segment(&mut window, segments, salt, (&mut lsn, end, until), &mut visit);
        *buffer = std::mem::take(&mut window.data);
        if !read? {
            return Ok(());
        }
    }
    Ok(())
}

/// [`read_durable`] within one segment: `Ok(false)` once `visit` returned `false`.
fn read_segment(
    window: &mut Window,
    segments: &Segments,
    salt: u64,
    (lsn, end, until): (&mut u64, u64, u64),
    visit: &mut impl FnMut(&Frame<'_>) -> bool,
) -> Result<bool, RecoveryError> {
    let index = segments.index_of(*lsn);
    let start = segments.start_of(index);
    let path = segments.path(index);
    let io = |op, source| RecoveryError::Io { op, path: path.clone(), source };
    while *lsn < end {
        let offset = *lsn - start;
        window.fill(offset, HEADER_BYTES).map_err(|e| io("read segment", e))?;
        match decode(window.from(offset), *lsn, salt, 0) {
            Decoded::Frame(frame) => {
                if !visit(&frame) {
                    return Ok(false);
                }
                *lsn += frame.bytes as u64;
            }
            Decoded::NeedMore { bytes } if offset + bytes as u64 <= segments.segment_bytes() => {
                window.fill(offset, bytes).map_err(|e| io("read segment", e))?;
            }
            Decoded::NeedMore { .. } | Decoded::Invalid(_) => {
                let reason = CorruptReason::BelowDurable { durable_lsn: until };
                return Err(RecoveryError::corrupt_at(segments, *lsn, reason));
            }
        }
    }
    Ok(true)
}

/// Decides what the failure at `replayed.end_lsn` means: corruption (an error), or the end of
/// the log (a torn tail, or unwritten space).
fn after_failure(
    segments: &Segments,
    sb: &Superblock,
    existing: &[u64],
    limits: ScanLimits,
    mut replayed: Replayed,
    min_epoch: u32,
    why: Option<Invalid>,
) -> Result<Replayed, RecoveryError> {
    let lsn = replayed.end_lsn;
    let corrupt = |reason| RecoveryError::corrupt_at(segments, lsn, reason);
    if let Some(proof_lsn) = find_vouching(segments, sb, existing, limits, lsn, min_epoch)? {
        return Err(corrupt(CorruptReason::VouchedFor { proof_lsn }));
    }
    if why != Some(Invalid::Unwritten) {
        replayed.torn_at = Some(lsn);
    }
    finish(segments, sb, replayed).map_err(|_| corrupt(CorruptReason::BelowDurableTail { tail: sb.tail }))
}

/// Looks for an intact frame after `failed` (in this segment and the existing later ones) that
/// says the log was durable past it, window by window, until `limits.quiet_run` bytes in a row
/// without a frame of this log ([`holds_frames`]) or the last segment's end.
fn find_vouching(
    segments: &Segments,
    sb: &Superblock,
    existing: &[u64],
    limits: ScanLimits,
    failed: u64,
    min_epoch: u32,
) -> Result<Option<u64>, RecoveryError> {
    let window_bytes = CHUNK.max(2 * limits.max_frame) as u64;
    // Frames of at most `max_frame` that start in the first `step` bytes lie wholly in the window.
    let step = window_bytes - limits.max_frame as u64;
    let seg = segments.segment_bytes();
    let mut at = failed;
    let mut quiet = 0u64;
    let mut data = Vec::new();
    loop {
        let index = segments.index_of(at);
        if !existing.contains(&index) {
            match existing.iter().find(|&&i| i > index) {
                Some(&next) => at = segments.start_of(next),
                None => return Ok(None),
            }
            continue;
        }
        let path = segments.path(index);
        let read_err = |source| RecoveryError::Io { op: "read segment", path: path.clone(), source };
        let offset = at - segments.start_of(index);
        let len = window_bytes.min(seg - offset) as usize;
        data.clear();
        data.resize(len, 0);
        segments.read(index, &mut data, offset).map_err(read_err)?;
        let from = if at == failed { ALIGN } else { 0 };
        if let Some(proof) = vouching_frame(&data, at, from, failed, sb.salt, min_epoch) {
            return Ok(Some(proof));
        }
        let advance = step.min(seg - offset);
        if holds_frames(&data, at, sb.salt, min_epoch) {
            quiet = 0;
        } else {
            quiet += advance;
            if quiet >= limits.quiet_run {
                return Ok(None);
            }
        }
        at += advance;
    }
}

/// Checks the end found against the superblock: the log was durable up to its tail.
fn finish(segments: &Segments, sb: &Superblock, replayed: Replayed) -> Result<Replayed, RecoveryError> {
    if replayed.end_lsn < sb.tail {
        let reason = CorruptReason::BelowDurableTail { tail: sb.tail };
        return Err(RecoveryError::corrupt_at(segments, replayed.end_lsn, reason));
    }
    Ok(replayed)
}

/// A readable window over one segment file; bytes past the file's end read as zeros (never
/// written).
struct Window {
    file: Arc<dyn DiskFile>,
    segment_bytes: u64,
    data: Vec<u8>,
    /// Segment offset of `data[0]`.
    at: u64,
}

impl Window {
    fn new(file: Arc<dyn DiskFile>, segment_bytes: u64) -> Self {
        Self { file, segment_bytes, data: Vec::new(), at: 0 }
    }

    /// Makes sure `len` bytes from `offset` (clipped to the segment) are in memory.
    fn fill(&mut self, offset: u64, len: usize) -> io::Result<()> {
        let end = (offset + len as u64).min(self.segment_bytes);
        if offset >= self.at && end <= self.at + self.data.len() as u64 {
            return Ok(());
        }
        let want = ((end - offset) as usize).max(CHUNK).min((self.segment_bytes - offset) as usize);
        self.data.clear();
        self.data.resize(want, 0);
        read_full(&*self.file, &mut self.data, offset)?;
        self.at = offset;
        Ok(())
    }

    /// The bytes in memory from segment offset `offset` on.
    fn from(&self, offset: u64) -> &[u8] {
        &self.data[(offset - self.at) as usize..]
    }
}
