//! Reading a shard's log back at open: from the superblock's head, frame by frame, across
//! segments, until the written log ends. A torn tail is cut; corruption is refused with the
//! segment and offset. The decisions (where the log ends, whether a failure is a tear, how far
//! to search for proof) are the core's ([`helio_core::log::recover`]); this module reads the
//! segment files for it and names them in errors.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use helio_core::log::frame::Frame;
use helio_core::log::recover::{self, RecoverError, Source};
use helio_core::log::superblock::Superblock;

use crate::disk::{read_full, DiskFile};
use crate::segments::Segments;

pub use helio_core::log::recover::{CorruptReason, Replayed, ScanLimits};

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

/// The segment files as recovery's [`Source`], keeping the last one open.
struct Files<'a> {
    segments: &'a Segments,
    open: Option<(u64, Arc<dyn DiskFile>)>,
}

impl Source for Files<'_> {
    type Error = io::Error;

    fn read(&mut self, index: u64, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        if self.open.as_ref().is_none_or(|(i, _)| *i != index) {
            match self.segments.open(index)? {
                Some(file) => self.open = Some((index, file)),
                None => return Ok(false),
            }
        }
        let (_, file) = self.open.as_ref().expect("opened above");
        read_full(&**file, buf, offset)?;
        Ok(true)
    }
}

impl RecoveryError {
    fn from_core(segments: &Segments, error: RecoverError<io::Error>) -> Self {
        match error {
            RecoverError::Read { segment, error } => {
                RecoveryError::Io { op: "read segment", path: segments.path(segment), source: error }
            }
            RecoverError::Corrupt { lsn, reason } => RecoveryError::corrupt_at(segments, lsn, reason),
            RecoverError::MissingSegment { segment } => {
                RecoveryError::MissingSegment { segment: segments.path(segment) }
            }
        }
    }
}

/// Reads the log described by `sb` from its head, handing every intact frame to `visit` in log
/// order, and returns where the log ends (see [`recover::replay`]). Memory use is bounded by a
/// few windows of `max(4 MiB, 2 × limits.max_frame)`.
pub fn replay(
    segments: &Segments,
    sb: &Superblock,
    limits: ScanLimits,
    visit: impl FnMut(&Frame<'_>),
) -> Result<Replayed, RecoveryError> {
    let list_err = |source| RecoveryError::Io { op: "list segments in", path: segments.path(0), source };
    let existing = segments.list().map_err(list_err)?;
    let mut files = Files { segments, open: None };
    recover::replay(&mut files, sb, &existing, limits, visit)
        .map_err(|e| RecoveryError::from_core(segments, e))
}

/// Reads the frames from `from` up to `until` (both frame boundaries of a durable stretch of the
/// log), handing each to `visit` in log order until it returns `false`, window by window through
/// `buffer` (kept for the next call), `chunk` bytes at a time (more for a larger frame). Any
/// frame that does not decode there is corruption.
pub fn read_durable(
    segments: &Segments,
    salt: u64,
    (from, until): (u64, u64),
    chunk: usize,
    buffer: &mut Vec<u8>,
    visit: impl FnMut(&Frame<'_>) -> bool,
) -> Result<(), RecoveryError> {
    let mut files = Files { segments, open: None };
    recover::read_durable(&mut files, segments.segment_bytes(), salt, (from, until), chunk, buffer, visit)
        .map_err(|e| RecoveryError::from_core(segments, e))
}
