//! [`StorageError`]: what can go wrong below GlueSQL, and its mapping into GlueSQL's
//! `Error::StorageMsg`, the error GlueSQL hands a storage's failures to the SQL user in.

use std::fmt;

use gluesql_core::error::Error as GlueError;

/// A failure of this storage, as GlueSQL's user sees it through `Error::StorageMsg`.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// Helio refused or failed an operation (a key or value over its limits, a locked
    /// directory, an I/O failure, damaged data, …).
    Helio(helio::Error),
    /// A stored row, schema or function could not be encoded or decoded.
    Codec(bincode::Error),
    /// An encoded key is longer than the store's `key_bytes_max`: nothing was written.
    KeyTooLarge {
        /// What the key was for: a row, an index entry, a schema.
        what: &'static str,
        /// Bytes of the encoded key.
        len: usize,
        /// The store's limit.
        max: u32,
    },
    /// An encoded value (a row, a schema) is longer than the store's `value_bytes_max`.
    ValueTooLarge {
        /// What the value was.
        what: &'static str,
        /// Bytes of the encoded value.
        len: usize,
        /// The store's limit.
        max: u32,
    },
    /// `BEGIN` inside a transaction: transactions do not nest.
    NestedTransaction,
    /// `CREATE INDEX` with a name starting with NUL, which this crate reserves for the
    /// planner's primary-key ranges: nothing was written.
    ReservedIndexName(String),
    /// A stored counter or index entry is not in the format this crate writes.
    Corrupt(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Helio(e) => write!(f, "[helio] {e}"),
            StorageError::Codec(e) => write!(f, "[helio-gluesql] encoding: {e}"),
            StorageError::KeyTooLarge { what, len, max } => write!(
                f,
                "[helio-gluesql] the key of {what} is {len} bytes, over the store's limit of {max} bytes; \
                 nothing was written"
            ),
            StorageError::ValueTooLarge { what, len, max } => write!(
                f,
                "[helio-gluesql] {what} is {len} bytes encoded, over the store's limit of {max} bytes; \
                 nothing was written"
            ),
            StorageError::NestedTransaction => {
                f.write_str("[helio-gluesql] nested transactions are not supported")
            }
            StorageError::ReservedIndexName(name) => write!(
                f,
                "[helio-gluesql] index name {name:?} starts with NUL, which is reserved for primary-key ranges"
            ),
            StorageError::Corrupt(what) => write!(f, "[helio-gluesql] corrupt data: {what}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Helio(e) => Some(e),
            StorageError::Codec(e) => Some(e),
            _ => None,
        }
    }
}

impl From<helio::Error> for StorageError {
    fn from(e: helio::Error) -> Self {
        StorageError::Helio(e)
    }
}

impl From<bincode::Error> for StorageError {
    fn from(e: bincode::Error) -> Self {
        StorageError::Codec(e)
    }
}

impl From<StorageError> for GlueError {
    fn from(e: StorageError) -> Self {
        GlueError::StorageMsg(e.to_string())
    }
}

/// A Helio error as GlueSQL's.
pub(crate) fn helio(e: helio::Error) -> GlueError {
    StorageError::Helio(e).into()
}

/// A codec error as GlueSQL's.
pub(crate) fn codec(e: bincode::Error) -> GlueError {
    StorageError::Codec(e).into()
}
