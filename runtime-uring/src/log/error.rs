//! What can go wrong with a shard's log, as one typed error.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::config::LogConfigError;
use crate::recovery::RecoveryError;
use crate::superblock_file::SuperblockFileError;

/// The I/O failure that poisoned a log.
#[derive(Debug)]
pub struct IoFailure {
    /// What the log was doing.
    pub op: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The error the kernel (or a test's fault injection) gave.
    pub source: io::Error,
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

/// Why a log operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogError {
    /// A setting is out of its limits.
    Config(LogConfigError),
    /// A system call failed while opening or closing the log; nothing was changed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The superblock file is unreadable, damaged or of another format version.
    Superblock(SuperblockFileError),
    /// Replaying the log found corruption or a missing segment; nothing was changed.
    Recovery(RecoveryError),
    /// A write or flush failed earlier: the log takes no more writes, and writes that were not
    /// durable by then may be lost (none that a `Sync` write or `sync()` acknowledged). Reads of
    /// what is in memory go on; reopening recovers what reached the disk.
    Poisoned(Arc<IoFailure>),
    /// The log is closed.
    Closed,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Config(e) => e.fmt(f),
            LogError::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            LogError::Superblock(e) => e.fmt(f),
            LogError::Recovery(e) => e.fmt(f),
            LogError::Poisoned(failure) => {
                write!(f, "the log failed earlier and takes no more writes ({failure})")
            }
            LogError::Closed => f.write_str("the log is closed"),
        }
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogError::Config(e) => Some(e),
            LogError::Io { source, .. } => Some(source),
            LogError::Superblock(e) => Some(e),
            LogError::Recovery(e) => Some(e),
            LogError::Poisoned(failure) => Some(&failure.source),
            LogError::Closed => None,
        }
    }
}
