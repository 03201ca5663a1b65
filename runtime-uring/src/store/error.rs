//! The one error type of the `Store` API.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::log::{IoFailure, LogError};
use crate::recovery::RecoveryError;
use crate::shard::ShardError;
use crate::superblock_file::SuperblockFileError;
use helio_core::log::superblock::SuperblockError;

/// Why a store operation failed. Every variant a caller can cause leaves the data as it was.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The key is longer than the configured limit; nothing was written.
    KeyTooLarge {
        /// Length of the key given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is longer than the configured limit; nothing was written.
    ValueTooLarge {
        /// Length of the value given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A [`WriteBatch`](super::WriteBatch) over its limits; nothing was written.
    BatchTooLarge {
        /// Operations in the batch.
        ops: usize,
        /// Bytes of keys and values in it.
        bytes: usize,
        /// Most operations a batch may hold.
        max_ops: usize,
        /// Most bytes a batch may hold.
        max_bytes: usize,
    },
    /// Another process (or another `Store` in this one) has the directory open.
    Locked {
        /// The store's directory.
        dir: PathBuf,
    },
    /// The directory holds a store (or a log) of another format version.
    Incompatible {
        /// The file that says so.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The store was created with another number of shards; it cannot be re-sharded (yet).
    ShardCount {
        /// Shards the store has.
        found: usize,
        /// Shards the configuration asks for.
        configured: usize,
    },
    /// The directory is not empty and holds no Helio store.
    NotAStore {
        /// The directory.
        dir: PathBuf,
    },
    /// Stored bytes are damaged: the file and the offset of the damage.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Offset of the damaged record or block in it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The device is full. The shard that hit it takes no more writes (as if poisoned);
    /// nothing was acknowledged that is not durable; reopen once there is space.
    NoSpace {
        /// What was being written.
        path: PathBuf,
    },
    /// The store cannot take the request now (it is closing).
    Busy,
    /// A page swapped out of memory could not be read back from its shard's log (the I/O
    /// error is logged); nothing was changed, and a later read may succeed.
    PageRead {
        /// The page record's log address.
        addr: u64,
    },
    /// No longer returned: a shard over its share of the memory quota swaps pages out instead
    /// of refusing puts. Kept so that code matching on it still builds.
    MemoryQuota {
        /// Bytes of entries the shard holds (as last measured).
        used: u64,
        /// The shard's share of the quota.
        quota: u64,
    },
    /// A write or flush failed earlier: this shard takes no more writes (reads go on); reopen
    /// the store to recover what reached the disk.
    Poisoned(Arc<IoFailure>),
    /// A system call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A remote store failed (cold-data tiers; none is configured yet).
    Remote(String),
    /// A setting is out of its limits.
    Config {
        /// The setting.
        knob: &'static str,
        /// What it must be.
        rule: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KeyTooLarge { len, max } => write!(f, "key of {len} bytes is larger than the limit of {max}"),
            Error::ValueTooLarge { len, max } => write!(f, "value of {len} bytes is larger than the limit of {max}"),
            Error::BatchTooLarge { ops, bytes, max_ops, max_bytes } => write!(
                f,
                "a batch of {ops} operations and {bytes} bytes is over the limits of {max_ops} operations and \
                 {max_bytes} bytes; nothing was written"
            ),
            Error::Locked { dir } => write!(f, "{} is open in another process or store", dir.display()),
            Error::Incompatible { path, found, expected } => {
                write!(f, "{} is format version {found}; this build reads version {expected}", path.display())
            }
            Error::ShardCount { found, configured } => write!(
                f,
                "the store has {found} shards but {configured} were configured; re-sharding is not supported, \
                 open it with shards({found})"
            ),
            Error::NotAStore { dir } => write!(f, "{} is not empty and holds no Helio store", dir.display()),
            Error::Corrupt { path, offset, reason } => {
                write!(f, "corrupt data in {} at offset {offset}: {reason}", path.display())
            }
            Error::NoSpace { path } => write!(
                f,
                "no space left on the device writing {}; the shard takes no more writes until the store is reopened",
                path.display()
            ),
            Error::Busy => f.write_str("the store is busy closing"),
            Error::PageRead { addr } => {
                write!(f, "a swapped-out page could not be read back from log address {addr}")
            }
            Error::MemoryQuota { used, quota } => write!(
                f,
                "the shard holds {used} bytes of entries, at its memory quota of {quota}; delete to make room"
            ),
            Error::Poisoned(failure) => write!(f, "a shard stopped taking writes after an I/O failure ({failure})"),
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Remote(e) => write!(f, "remote store: {e}"),
            Error::Config { knob, rule } => write!(f, "setting {knob}: must be {rule}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Poisoned(failure) => Some(&failure.source),
            _ => None,
        }
    }
}

impl From<helio_core::Error> for Error {
    fn from(e: helio_core::Error) -> Self {
        match e {
            helio_core::Error::KeyTooLarge { len, max } => Error::KeyTooLarge { len, max },
            helio_core::Error::ValueTooLarge { len, max } => Error::ValueTooLarge { len, max },
            helio_core::Error::PageRead { addr } => Error::PageRead { addr },
            helio_core::Error::PageCorrupt { addr } => {
                Error::Corrupt { path: PathBuf::new(), offset: addr, reason: "not a page record".into() }
            }
            other => Error::Config { knob: "write", rule: other.to_string() },
        }
    }
}

impl From<ShardError> for Error {
    fn from(e: ShardError) -> Self {
        match e {
            ShardError::Refused(e) => e.into(),
            ShardError::TreeConfig(e) => Error::Config { knob: e.knob, rule: e.to_string() },
            ShardError::Config { knob, rule } => Error::Config { knob, rule: rule.to_string() },
            ShardError::Log(e) => e.into(),
            ShardError::Replay(e) => {
                Error::Corrupt { path: PathBuf::new(), offset: 0, reason: e.to_string() }
            }
            ShardError::MemoryQuota { used, quota } => Error::MemoryQuota { used, quota },
            ShardError::Page(e) => e.into(),
            ShardError::Pages { path, reason } => {
                Error::Corrupt { path, offset: 0, reason: reason.to_string() }
            }
            ShardError::Chain { path, fault } => {
                Error::Corrupt { path, offset: 0, reason: fault.to_string() }
            }
            ShardError::History { path, reason } => {
                Error::Corrupt { path, offset: 0, reason: reason.to_string() }
            }
        }
    }
}

impl From<LogError> for Error {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Config(e) => Error::Config { knob: e.knob, rule: e.rule.to_string() },
            LogError::Io { op, path, source } => io_error(op, path, source),
            LogError::Superblock(SuperblockFileError::Io { op, path, source }) => io_error(op, path, source),
            LogError::Superblock(SuperblockFileError::Format { path, error }) => match error {
                SuperblockError::Incompatible { found, expected } => {
                    Error::Incompatible { path, found, expected }
                }
                other => Error::Corrupt { path, offset: 0, reason: other.to_string() },
            },
            LogError::Recovery(RecoveryError::Io { op, path, source }) => io_error(op, path, source),
            LogError::Recovery(e @ RecoveryError::Corrupt { .. }) => {
                let RecoveryError::Corrupt { ref segment, offset, .. } = e else { unreachable!() };
                Error::Corrupt { path: segment.clone(), offset, reason: e.to_string() }
            }
            LogError::Recovery(e @ RecoveryError::MissingSegment { .. }) => {
                let RecoveryError::MissingSegment { ref segment } = e else { unreachable!() };
                Error::Corrupt { path: segment.clone(), offset: 0, reason: e.to_string() }
            }
            LogError::Poisoned(failure) if failure.source.raw_os_error() == Some(libc::ENOSPC) => {
                Error::NoSpace { path: failure.path.clone() }
            }
            LogError::Poisoned(failure) => Error::Poisoned(failure),
            LogError::Closed => Error::Busy,
        }
    }
}

/// An I/O error, as `NoSpace` when the device is full.
pub(crate) fn io_error(op: &'static str, path: PathBuf, source: io::Error) -> Error {
    if source.raw_os_error() == Some(libc::ENOSPC) {
        Error::NoSpace { path }
    } else {
        Error::Io { op, path, source }
    }
}
