//! [`RemoteError`]: every way a remote call can fail, sorted by what the caller can do about it.

use std::fmt;

/// Why a call to a remote store failed, sorted by what the caller can do about it.
///
/// The variants carry a message for people; code decides on the variant alone.
/// [`RemoteError::is_transient`] says which ones may go away by themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteError {
    /// There is no object under that key. Only [`SharedReads::read`](crate::SharedReads::read)
    /// returns it: a handle's `get` answers `Ok(None)` instead.
    NotFound,
    /// The store could not be reached, timed out, or said it is failing or overloaded (refused or
    /// dropped connections, timeouts, HTTP 5xx and 429, a Redis server still loading). Retrying later
    /// may help. The handles of the network and file-system backends have already retried with
    /// backoff ([`RetryPolicy`](crate::RetryPolicy)) before they return it.
    Unavailable(String),
    /// The store refused and will keep refusing: bad credentials, missing permissions, a bucket that
    /// does not exist, a read-only file system. Retrying will not help; fixing the configuration will.
    Denied(String),
    /// Every buffer of a [`SharedReads`](crate::SharedReads) pool stayed in use by other readers
    /// until the deadline ([`SharedReads::with_busy_deadline`](crate::SharedReads::with_busy_deadline)).
    /// Fewer concurrent readers, or a larger pool, will help.
    Busy,
    /// [`put_if_absent`](crate::ExternalStoreHandle::put_if_absent) found an object under the key
    /// already, and left it as it was.
    AlreadyExists,
    /// This backend, or the service behind it, cannot do the operation (conditional create on an
    /// S3 service configured without it, hard links on a file system that has none).
    Unsupported(String),
    /// The call or the configuration is not acceptable: an empty or over-long key, an inverted
    /// range, a knob out of its range. The message names the value and its limits.
    Invalid(String),
    /// Anything else: a malformed answer, a local I/O error, stored data that fails its checks.
    Other(String),
}

impl RemoteError {
    /// Whether the same call may succeed later without any change by the caller:
    /// [`Unavailable`](Self::Unavailable) and [`Busy`](Self::Busy).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Busy)
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such remote object"),
            Self::Unavailable(why) => write!(f, "remote store unavailable (retrying later may help): {why}"),
            Self::Denied(why) => write!(f, "remote store denied the request: {why}"),
            Self::Busy => f.write_str("every shared-read buffer stayed in use until the deadline"),
            Self::AlreadyExists => f.write_str("a remote object already exists under that key"),
            Self::Unsupported(why) => write!(f, "not supported by this remote store: {why}"),
            Self::Invalid(why) => write!(f, "invalid remote-store request or configuration: {why}"),
            Self::Other(why) => write!(f, "remote store error: {why}"),
        }
    }
}

impl std::error::Error for RemoteError {}
