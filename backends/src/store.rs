//! The remote-store interface: [`ExternalStore`] makes handles, an [`ExternalStoreHandle`] moves
//! bytes, and [`ExternalStoreHandleExt`] adds conveniences built on the required methods.

use std::ops::Range;

use bytes::Bytes;

use crate::RemoteError;

/// A remote store: a bucket, a Redis database, a directory. It only makes handles.
///
/// Keys are non-empty UTF-8 strings of at most [`KEY_BYTES_MAX`](crate::KEY_BYTES_MAX) bytes, of
/// any characters; each backend maps them to its own names one to one (two keys never share an
/// object). A backend with a tighter limit says so and answers [`RemoteError::Invalid`].
pub trait ExternalStore: Send + Sync {
    /// A handle for one thread; many handles may write concurrently.
    fn connect(&self) -> Result<Box<dyn ExternalStoreHandle>, RemoteError>;
}

/// One thread's connection to an [`ExternalStore`].
///
/// Every call is idempotent, so a call that failed with [`RemoteError::Unavailable`] may simply be
/// made again (the network backends already retry it; see [`RetryPolicy`](crate::RetryPolicy)).
pub trait ExternalStoreHandle: Send {
    /// Idempotent and atomic: a reader sees the whole object or none of it.
    ///
    /// Replaces any object under `key`; concurrent puts of one key leave one of them whole.
    fn put(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError>;

    /// The bytes of `range` (cut at the object's end); None when there is no such object.
    ///
    /// A range that starts at or past the end gives `Some` of no bytes; `0..u64::MAX` gives the
    /// whole object. An inverted range (`start > end`) is [`RemoteError::Invalid`].
    fn get(&mut self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, RemoteError>;

    /// Removes the object under `key`; removing a missing object succeeds.
    fn delete(&mut self, key: &str) -> Result<(), RemoteError>;

    /// Puts `bytes` only if no object is under `key`: [`RemoteError::AlreadyExists`] otherwise,
    /// with the existing object left as it was. Atomic against concurrent `put_if_absent` calls:
    /// exactly one of them succeeds.
    ///
    /// After an [`Unavailable`](RemoteError::Unavailable) that was retried, `AlreadyExists` may
    /// mean that the first attempt landed. Backends that cannot do it answer
    /// [`RemoteError::Unsupported`], which is what this default does.
    fn put_if_absent(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        let _ = (key, bytes);
        Err(RemoteError::Unsupported("conditional create (put_if_absent)".into()))
    }
}

/// Conveniences on every [`ExternalStoreHandle`], built on its required methods.
pub trait ExternalStoreHandleExt: ExternalStoreHandle {
    /// The whole object under `key`, or None.
    fn get_all(&mut self, key: &str) -> Result<Option<Bytes>, RemoteError> {
        self.get(key, 0..u64::MAX)
    }

    /// Whether an object is under `key` (a get of no bytes).
    fn exists(&mut self, key: &str) -> Result<bool, RemoteError> {
        Ok(self.get(key, 0..0)?.is_some())
    }

    /// [`put`](ExternalStoreHandle::put) of a copy of `bytes`.
    fn put_slice(&mut self, key: &str, bytes: &[u8]) -> Result<(), RemoteError> {
        self.put(key, Bytes::copy_from_slice(bytes))
    }
}

impl<H: ExternalStoreHandle + ?Sized> ExternalStoreHandleExt for H {}
