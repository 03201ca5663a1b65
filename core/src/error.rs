//! Errors a caller of the core can cause. Each leaves the tree unchanged.

use core::fmt;

/// Why an operation was refused. The tree is unchanged when one is returned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The key is longer than the configured `key_bytes_max`.
    KeyTooLarge {
        /// Length of the key given, in bytes.
        len: usize,
        /// The configured limit, in bytes.
        max: usize,
    },
    /// The value is longer than the configured `value_bytes_max`.
    ValueTooLarge {
        /// Length of the value given, in bytes.
        len: usize,
        /// The configured limit, in bytes.
        max: usize,
    },
    /// A swapped-out page's record could not be read back from the log (the runtime logs the
    /// I/O error that caused it).
    PageRead {
        /// The record's log address.
        addr: u64,
    },
    /// A swapped-out page's record was read back but does not parse as a page record.
    PageCorrupt {
        /// The record's log address.
        addr: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KeyTooLarge { len, max } => {
                write!(f, "key of {len} bytes is larger than the limit of {max} bytes")
            }
            Error::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes is larger than the limit of {max} bytes")
            }
            Error::PageRead { addr } => {
                write!(f, "the page record at log address {addr} could not be read back")
            }
            Error::PageCorrupt { addr } => {
                write!(f, "the page record at log address {addr} does not parse as a page record")
            }
        }
    }
}

impl core::error::Error for Error {}
