//! [`FsStore`]: objects as files in one directory (a second disk, a network mount), each put
//! written aside, fsynced and renamed into place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::args::{check_get, check_key, cut, escape};
use crate::retry::RetryingHandle;
use crate::{ExternalStore, ExternalStoreHandle, RemoteError, RetryPolicy};

/// The longest file name the store writes (Linux's `NAME_MAX`).
const NAME_BYTES_MAX: usize = 255;

/// An [`ExternalStore`] in a directory: one file per object, named by the key with every byte
/// other than ASCII letters, digits, `_`, `-` and a `.` that is not first written as `%XX`; so a
/// key may be at most as long as keeps that name within 255 bytes, or [`RemoteError::Invalid`].
///
/// A put writes a temporary file (named `.tmp.*`, which no key escapes to) in the directory,
/// fsyncs it, renames it over the object and fsyncs the directory: readers see the old object or
/// the new one, and a put that returned survives a crash. A crash during a put can leave its
/// temporary file behind; it never shadows an object.
/// Errors that may pass (timeouts, a stale network handle) are retried by a [`RetryPolicy`].
pub struct FsStore {
    shared: Arc<Dir>,
    retry: RetryPolicy,
}

/// What every handle of one store shares.
struct Dir {
    path: PathBuf,
    temp_count: AtomicU64,
}

impl FsStore {
    /// The store in `dir`, created if missing, with the default [`RetryPolicy`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, RemoteError> {
        let path = dir.into();
        if path.exists() && !path.is_dir() {
            return Err(RemoteError::Invalid(format!("{} is not a directory", path.display())));
        }
        fs::create_dir_all(&path).map_err(|e| classify("create the directory", &path, e))?;
        let shared = Arc::new(Dir { path, temp_count: AtomicU64::new(0) });
        Ok(Self { shared, retry: RetryPolicy::default() })
    }

    /// The same store with handles that retry by `policy`; [`RemoteError::Invalid`] if out of range.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Result<Self, RemoteError> {
        policy.validate()?;
        self.retry = policy;
        Ok(self)
    }
}

impl ExternalStore for FsStore {
    fn connect(&self) -> Result<Box<dyn ExternalStoreHandle>, RemoteError> {
        let inner = Box::new(FsHandle { dir: Arc::clone(&self.shared) });
        Ok(Box::new(RetryingHandle { policy: self.retry.clone(), inner }))
    }
}

/// One handle: the directory and nothing else, since files need no connection.
struct FsHandle {
    dir: Arc<Dir>,
}

impl Dir {
    /// The file of `key`, or `Invalid` if its name would be too long.
    fn object_path(&self, key: &str) -> Result<PathBuf, RemoteError> {
        check_key(key)?;
        let name = escape(key);
        if name.len() > NAME_BYTES_MAX {
            return Err(RemoteError::Invalid(format!(
                "the key escapes to a file name of {} bytes, over the file system's {NAME_BYTES_MAX}",
                name.len()
            )));
        }
        Ok(self.path.join(name))
    }

    /// A new, durable temporary file holding `bytes`, for a put to move into place.
    fn write_aside(&self, bytes: &[u8]) -> Result<PathBuf, RemoteError> {
        let count = self.temp_count.fetch_add(1, Ordering::Relaxed);
        let name = format!(".tmp.{}.{count}.{:016x}", std::process::id(), fastrand::u64(..));
        let temp = self.path.join(name);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()));
        match written {
            Ok(()) => Ok(temp),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(classify("write", &temp, e))
            }
        }
    }

    /// Makes the directory's entries durable.
    fn sync(&self) -> Result<(), RemoteError> {
        File::open(&self.path).and_then(|dir| dir.sync_all()).map_err(|e| classify("fsync", &self.path, e))
    }
}

impl ExternalStoreHandle for FsHandle {
    fn put(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        let path = self.dir.object_path(key)?;
        let temp = self.dir.write_aside(&bytes)?;
        if let Err(e) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(classify("rename into", &path, e));
        }
        self.dir.sync()
    }

    fn get(&mut self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, RemoteError> {
        check_get(key, &range)?;
        let path = self.dir.object_path(key)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(classify("open", &path, e)),
        };
        let len = file.metadata().map_err(|e| classify("stat", &path, e))?.len();
        let want = cut(&range, len);
        let bytes = usize::try_from(want.end - want.start)
            .map_err(|_| RemoteError::Invalid(format!("a range of {want:?} does not fit in memory")))?;
        let mut buffer = vec![0; bytes];
        file.read_exact_at(&mut buffer, want.start).map_err(|e| classify("read", &path, e))?;
        Ok(Some(Bytes::from(buffer)))
    }

    fn delete(&mut self, key: &str) -> Result<(), RemoteError> {
        let path = self.dir.object_path(key)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(classify("remove", &path, e)),
            _ => Ok(()),
        }
    }

    /// A hard link from the durable temporary file: the kernel refuses it if the name exists.
    fn put_if_absent(&mut self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        let path = self.dir.object_path(key)?;
        let temp = self.dir.write_aside(&bytes)?;
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => self.dir.sync(),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(RemoteError::AlreadyExists),
            Err(e) if matches!(e.raw_os_error(), Some(errno::EPERM | errno::EOPNOTSUPP)) => {
                Err(RemoteError::Unsupported(format!("hard links in {}: {e}", self.dir.path.display())))
            }
            Err(e) => Err(classify("link into", &path, e)),
        }
    }
}

/// The errno values (Linux's numbers) that `std::io::ErrorKind` does not tell apart.
mod errno {
    /// `link(2)` on a file system without hard links.
    pub const EPERM: i32 = 1;
    /// `link(2)` on a file system without hard links (some FUSE ones).
    pub const EOPNOTSUPP: i32 = 95;
    /// A network file system lost track of a file handle; a new attempt may work.
    pub const ESTALE: i32 = 116;
}

/// An I/O error as a [`RemoteError`], naming the operation and the path.
fn classify(op: &str, path: &Path, e: io::Error) -> RemoteError {
    use io::ErrorKind as Kind;
    let what = format!("{op} {}: {e}", path.display());
    match e.kind() {
        Kind::PermissionDenied | Kind::ReadOnlyFilesystem => RemoteError::Denied(what),
        Kind::TimedOut
        | Kind::Interrupted
        | Kind::WouldBlock
        | Kind::ConnectionRefused
        | Kind::ConnectionReset
        | Kind::ConnectionAborted
        | Kind::NotConnected
        | Kind::StaleNetworkFileHandle => RemoteError::Unavailable(what),
        _ if e.raw_os_error() == Some(errno::ESTALE) => RemoteError::Unavailable(what),
        _ => RemoteError::Other(what),
    }
}
