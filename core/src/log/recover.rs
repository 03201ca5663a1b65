//! Recovery's decisions, without I/O: reading a log back from its head, window by window,
//! across segments; where the written log ends; whether a frame that does not decode is a torn
//! tail (cut it) or corruption (refuse, naming it), by searching past it for a frame that
//! vouches for it; and where the search may stop.
//!
//! The runtime supplies the bytes through [`Source`] (segment files on a disk); tests and the
//! fuzzers supply them from memory. The decisions on single frames are [`super::frame`]'s.

use alloc::vec::Vec;

use super::frame::{decode, holds_frames, vouching_frame, Decoded, Frame, Invalid, ALIGN, HEADER_BYTES};
use super::superblock::Superblock;

/// Bytes read from a segment at a time (more when one frame is bigger).
pub const CHUNK: usize = 4 << 20;

/// Where the bytes of a log come from.
pub trait Source {
    /// What a failed read reports.
    type Error;
    /// Reads `buf.len()` bytes of segment `index` from `offset`; bytes past the end of the
    /// segment's file read as zeros. `Ok(false)`: there is no such segment.
    fn read(&mut self, index: u64, offset: u64, buf: &mut [u8]) -> Result<bool, Self::Error>;
}

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

/// The evidence behind [`RecoverError::Corrupt`].
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

/// Why a log could not be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoverError<E> {
    /// Reading segment `segment` failed.
    Read {
        /// The segment.
        segment: u64,
        /// What the source said.
        error: E,
    },
    /// Bytes the log had acknowledged are damaged.
    Corrupt {
        /// Log address of the damaged frame.
        lsn: u64,
        /// Why this is known to be corruption rather than a torn write.
        reason: CorruptReason,
    },
    /// A segment between the head and a later segment is missing.
    MissingSegment {
        /// The segment.
        segment: u64,
    },
}

/// How far recovery looks past a failed decode for a frame that proves it corruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimits {
    /// The search stops after this many bytes in a row that hold no intact frame of this log
    /// at its own address ([`holds_frames`]: unwritten space, a recycled segment's stale
    /// frames, garbage): more than the writer can leave unwritten between written fills (its
    /// buffers in flight).
    pub quiet_run: u64,
    /// Largest frame the writer makes; the search reads windows of at least twice this.
    pub max_frame: usize,
}

impl Default for ScanLimits {
    /// Limits for the default log geometry (1 MiB buffers, a few in flight).
    fn default() -> Self {
        Self { quiet_run: 64 << 20, max_frame: 512 << 10 }
    }
}

/// A window onto one segment.
struct Window {
    index: u64,
    /// Bytes read at a time, at least (more for a frame that is larger).
    chunk: usize,
    data: Vec<u8>,
    /// Segment offset of `data[0]`.
    at: u64,
}

impl Window {
    /// Makes sure `len` bytes from `offset` (clipped to the segment) are in memory. `Ok(false)`:
    /// the segment does not exist.
    fn fill<S: Source>(
        &mut self,
        source: &mut S,
        segment_bytes: u64,
        offset: u64,
        len: usize,
    ) -> Result<bool, RecoverError<S::Error>> {
        let end = (offset + len as u64).min(segment_bytes);
        if offset >= self.at && end <= self.at + self.data.len() as u64 {
            return Ok(true);
        }
        let want = ((end - offset) as usize).max(self.chunk).min((segment_bytes - offset) as usize);
        self.data.clear();
        self.data.resize(want, 0);
        self.at = offset;
        let found = source
            .read(self.index, offset, &mut self.data)
            .map_err(|error| RecoverError::Read { segment: self.index, error })?;
        if !found {
            self.data.clear();
        }
        Ok(found)
    }

    /// The bytes in memory from segment offset `offset` on.
    fn from(&self, offset: u64) -> &[u8] {
        &self.data[(offset - self.at) as usize..]
    }
}

/// Reads the log described by `sb` from its head, handing every intact frame to `visit` in log
/// order, and returns where the log ends. `existing`: the segments present, sorted. Memory use
/// is bounded by a few windows of `max(CHUNK, 2 × limits.max_frame)`.
///
/// The log ends at the first frame that does not decode: unwritten space, a tear, or (for a
/// log closed cleanly) its tail. Past a failure, later frames are searched for one written when
/// the failed address was already durable: then it is corruption, and nothing is cut.
pub fn replay<S: Source>(
    source: &mut S,
    sb: &Superblock,
    existing: &[u64],
    limits: ScanLimits,
    mut visit: impl FnMut(&Frame<'_>),
) -> Result<Replayed, RecoverError<S::Error>> {
    let seg = sb.segment_bytes;
    let mut replayed = Replayed { end_lsn: sb.head, frames: 0, bytes: 0, torn_at: None };
    let mut min_epoch = 0;
    let mut window = Window { index: u64::MAX, chunk: CHUNK, data: Vec::new(), at: 0 };
    loop {
        let lsn = replayed.end_lsn;
        if sb.clean && lsn == sb.tail {
            // Closed cleanly here: nothing was written past it (a recycled segment's old bytes
            // may follow, and are not read).
            return finish(sb, replayed);
        }
        let index = lsn / seg;
        let offset = lsn - index * seg;
        if window.index != index {
            window = Window { index, chunk: CHUNK, data: Vec::new(), at: 0 };
        }
        if !window.fill(source, seg, offset, HEADER_BYTES)? {
            if existing.iter().any(|&later| later > index) {
                return Err(RecoverError::MissingSegment { segment: index });
            }
            return finish(sb, replayed);
        }
        let failure = match decode(window.from(offset), lsn, sb.salt, min_epoch) {
            Decoded::Frame(frame) => {
                visit(&frame);
                min_epoch = frame.epoch;
                replayed.end_lsn += frame.bytes as u64;
                replayed.frames += 1;
                replayed.bytes += frame.bytes as u64;
                continue;
            }
            Decoded::NeedMore { bytes } if offset + bytes as u64 <= seg => {
                window.fill(source, seg, offset, bytes)?;
                continue;
            }
            Decoded::NeedMore { .. } => None,
            Decoded::Invalid(why) => Some(why),
        };
        return after_failure(source, sb, existing, limits, replayed, min_epoch, failure);
    }
}

/// Decides what the failure at `replayed.end_lsn` means: corruption (an error), or the end of
/// the log (a torn tail, or unwritten space).
fn after_failure<S: Source>(
    source: &mut S,
    sb: &Superblock,
    existing: &[u64],
    limits: ScanLimits,
    mut replayed: Replayed,
    min_epoch: u32,
    why: Option<Invalid>,
) -> Result<Replayed, RecoverError<S::Error>> {
    let lsn = replayed.end_lsn;
    if let Some(proof_lsn) = find_vouching(source, sb, existing, limits, lsn, min_epoch)? {
        return Err(RecoverError::Corrupt { lsn, reason: CorruptReason::VouchedFor { proof_lsn } });
    }
    if why != Some(Invalid::Unwritten) {
        replayed.torn_at = Some(lsn);
    }
    finish(sb, replayed)
}

/// Looks for an intact frame after `failed` (in its segment and the existing later ones) that
/// says the log was durable past it, window by window, until `limits.quiet_run` bytes in a row
/// hold no frame of this log, or the last segment ends.
fn find_vouching<S: Source>(
    source: &mut S,
    sb: &Superblock,
    existing: &[u64],
    limits: ScanLimits,
    failed: u64,
    min_epoch: u32,
) -> Result<Option<u64>, RecoverError<S::Error>> {
    let window_bytes = CHUNK.max(2 * limits.max_frame) as u64;
    // Frames of at most `max_frame` that start in the first `step` bytes lie wholly in the window.
    let step = window_bytes - limits.max_frame as u64;
    let seg = sb.segment_bytes;
    let mut at = failed;
    let mut quiet = 0u64;
    let mut data = Vec::new();
    loop {
        let index = at / seg;
        if !existing.contains(&index) {
            match existing.iter().find(|&&i| i > index) {
                Some(&next) => at = next * seg,
                None => return Ok(None),
            }
            continue;
        }
        let offset = at - index * seg;
        data.clear();
        data.resize(window_bytes.min(seg - offset) as usize, 0);
        if !source
            .read(index, offset, &mut data)
            .map_err(|error| RecoverError::Read { segment: index, error })?
        {
            data.fill(0);
        }
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
fn finish<E>(sb: &Superblock, replayed: Replayed) -> Result<Replayed, RecoverError<E>> {
    if replayed.end_lsn < sb.tail {
        let reason = CorruptReason::BelowDurableTail { tail: sb.tail };
        return Err(RecoverError::Corrupt { lsn: replayed.end_lsn, reason });
    }
    Ok(replayed)
}

/// Reads the frames from `from` up to `until` (both frame boundaries of a durable stretch of
/// the log, in segments of `segment_bytes`), handing each to `visit` in log order until it
/// returns `false`, window by window through `buffer` (kept for the next call, so that its
/// pages are not faulted in again), reading `chunk` bytes at a time (more for a larger frame).
/// Any frame that does not decode there is corruption.
pub fn read_durable<S: Source>(
    source: &mut S,
    segment_bytes: u64,
    salt: u64,
    (from, until): (u64, u64),
    chunk: usize,
    buffer: &mut Vec<u8>,
    mut visit: impl FnMut(&Frame<'_>) -> bool,
) -> Result<(), RecoverError<S::Error>> {
    let mut lsn = from;
    let mut window =
        Window { index: u64::MAX, chunk: chunk.max(HEADER_BYTES), data: core::mem::take(buffer), at: 0 };
    let result = (|| {
        while lsn < until {
            let index = lsn / segment_bytes;
            let offset = lsn - index * segment_bytes;
            if window.index != index {
                // Holds nothing of this segment yet.
                window.index = index;
                window.data.clear();
                window.at = 0;
            }
            if !window.fill(source, segment_bytes, offset, HEADER_BYTES)? {
                return Err(RecoverError::MissingSegment { segment: index });
            }
            match decode(window.from(offset), lsn, salt, 0) {
                Decoded::Frame(frame) => {
                    if !visit(&frame) {
                        return Ok(());
                    }
                    lsn += frame.bytes as u64;
                }
                Decoded::NeedMore { bytes } if offset + bytes as u64 <= segment_bytes => {
                    window.fill(source, segment_bytes, offset, bytes)?;
                }
                Decoded::NeedMore { .. } | Decoded::Invalid(_) => {
                    let reason = CorruptReason::BelowDurable { durable_lsn: until };
                    return Err(RecoverError::Corrupt { lsn, reason });
                }
            }
        }
        Ok(())
    })();
    *buffer = window.data;
    result
}

/// A log in memory, one byte vector per segment (absent segments are `None`): a [`Source`]
/// for tests and fuzzing.
#[derive(Clone, Debug, Default)]
pub struct MemorySource {
    /// The segments' bytes, by index.
    pub segments: Vec<Option<Vec<u8>>>,
}

impl MemorySource {
    /// The indices of the segments present.
    pub fn existing(&self) -> Vec<u64> {
        self.segments.iter().enumerate().filter(|(_, s)| s.is_some()).map(|(i, _)| i as u64).collect()
    }
}

impl Source for MemorySource {
    type Error = core::convert::Infallible;

    fn read(&mut self, index: u64, offset: u64, buf: &mut [u8]) -> Result<bool, Self::Error> {
        let Some(Some(bytes)) = usize::try_from(index).ok().and_then(|i| self.segments.get(i)) else {
            return Ok(false);
        };
        let from = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let n = buf.len().min(bytes.len() - from);
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        buf[n..].fill(0);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
