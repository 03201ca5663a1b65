//! Why a shard operation fails.

use std::fmt;

use helio_core::log::replay::ReplayError;
use helio_core::{ConfigError, Error};

use crate::log::LogError;

/// Why a shard operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShardError {
    /// The write is over the configured limits; nothing was written.
    Refused(Error),
    /// A tree setting is out of its limits.
    TreeConfig(ConfigError),
    /// A shard setting is out of its limits.
    Config {
        /// The setting.
        knob: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// The log failed (see [`LogError`]).
    Log(LogError),
    /// A record read back from the log could not be applied; nothing was changed on disk.
    Replay(ReplayError),
    /// The store's recovery history (the file of earlier recoveries' cuts) is damaged or does
    /// not fit the store; nothing was changed.
    History {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: helio_core::log::cut::CutError,
    },
    /// A swapped-out page could not be read back from the log (see the log for the I/O error),
    /// or what was read is not a page record. Nothing was changed.
    Page(Error),
    /// The page table (the file, or the page records recovery folds into it) does not make
    /// sense: a page record follows another that is not its page's newest. Nothing was
    /// changed.
    Pages {
        /// The table file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: helio_core::log::page::TableError,
    },
    /// A chain of page records the page table names does not check out against the log (see
    /// [`check_pages`](super::check_pages)).
    Chain {
        /// The table file.
        path: std::path::PathBuf,
        /// What is wrong.
        fault: helio_core::log::chains::ChainFault,
    },
    /// No longer returned (pages are swapped out instead); kept so that code matching on it
    /// still builds.
    MemoryQuota {
        /// Bytes of entries held (as last measured).
        used: u64,
        /// The quota.
        quota: u64,
    },
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardError::Refused(e) => e.fmt(f),
            ShardError::TreeConfig(e) => e.fmt(f),
            ShardError::Config { knob, rule } => write!(f, "shard setting {knob}: must be {rule}"),
            ShardError::Log(e) => e.fmt(f),
            ShardError::Replay(e) => write!(f, "replaying the log: {e}"),
            ShardError::History { path, reason } => write!(f, "{}: {reason}", path.display()),
            ShardError::Page(e) => write!(f, "reading a page back from the log: {e}"),
            ShardError::Pages { path, reason } => write!(f, "{}: {reason}", path.display()),
            ShardError::Chain { path, fault } => write!(f, "{}: {fault}", path.display()),
            ShardError::MemoryQuota { used, quota } => {
                write!(f, "the shard holds {used} bytes of entries, at its memory quota of {quota}; delete to make room")
            }
        }
    }
}

impl std::error::Error for ShardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShardError::Refused(e) => Some(e),
            ShardError::TreeConfig(e) => Some(e),
            ShardError::Log(e) => Some(e),
            ShardError::Replay(e) => Some(e),
            ShardError::Page(e) => Some(e),
            ShardError::Pages { .. }
            | ShardError::Chain { .. }
            | ShardError::Config { .. }
            | ShardError::MemoryQuota { .. }
            | ShardError::History { .. } => None,
        }
    }
}

impl From<LogError> for ShardError {
    fn from(e: LogError) -> Self {
        ShardError::Log(e)
    }
}
