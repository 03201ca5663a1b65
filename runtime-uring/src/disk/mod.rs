//! Where a log's files live: the few file operations the log, recovery and the cleaner use,
//! behind one trait, so that the same code runs on the real file system ([`RealDisk`], the
//! default) and, in tests, on a simulated disk with a volatile write cache ([`sim::SimDisk`])
//! that loses, keeps or tears what was not flushed when the power goes.
//!
//! The io_uring I/O thread writes a real disk's segment files through their descriptors
//! ([`DiskFile::raw_fd`]); on any other disk the log's writer is driven in the caller's thread
//! through these calls (see `log/driver.rs`).

pub mod sim;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenHow {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write a new file; fails if it exists.
    CreateNew,
    /// Read and write, created if missing, emptied if present.
    Truncate,
    /// Write only, with O_DIRECT where the disk has it; the file must exist.
    WriteDirect,
}

/// The file operations a log needs from where it lives.
pub trait Disk: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens the file at `path`.
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Arc<dyn DiskFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes `dir`'s entries (creates, renames, deletes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// A random number (a new log's salt).
    fn random_u64(&self) -> io::Result<u64>;
    /// Whether this is the real file system, whose files the io_uring I/O thread may write
    /// through their descriptors.
    fn is_real(&self) -> bool {
        false
    }
}

/// An open file.
#[allow(clippy::len_without_is_empty)] // a file's length, not a collection's
pub trait DiskFile: Send + Sync {
    /// Reads at `offset`; returns the bytes read (0 at the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes at `offset`; returns the bytes written (possibly fewer than given).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// fdatasync: everything written to the file so far is durable when this returns.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Sets the file's length (zeros when it grows).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Bytes of storage the file holds (less than its length where it has holes).
    fn allocated(&self) -> io::Result<u64>;
    /// Gives the storage of `offset..offset + len` back (it reads zeros then); does nothing
    /// where the file system cannot.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()>;
    /// The descriptor, for a real file (the io_uring I/O thread writes through it).
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
}

/// Writes all of `buf` at `offset`, retrying short writes.
pub fn write_all_at(file: &dyn DiskFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `offset`; bytes past the file's end read as zeros (never
/// written).
pub fn read_full(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut read = 0;
    while read < buf.len() {
        match file.read_at(&mut buf[read..], offset + read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[read..].fill(0);
    Ok(())
}

/// The whole content of the file at `path`, or `None` if there is no such file.
pub fn read_file(disk: &dyn Disk, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match disk.open(path, OpenHow::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = vec![0; usize::try_from(file.len()?).map_err(io::Error::other)?];
    read_full(&*file, &mut bytes, 0)?;
    Ok(Some(bytes))
}

/// Replaces the file `name` in `dir` with `bytes`, durably and whole: written aside (as
/// `name.new`), synced, renamed into place, the directory synced. A crash leaves the old
/// content or the new.
pub fn replace_file(disk: &dyn Disk, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let aside = dir.join(format!("{name}.new"));
    let file = disk.open(&aside, OpenHow::Truncate)?;
    write_all_at(&*file, bytes, 0)?;
    file.sync_data()?;
    drop(file);
    disk.rename(&aside, &dir.join(name))?;
    disk.sync_dir(dir)
}

/// The disk a log's files are on, as configuration holds it: the real file system unless a
/// test says otherwise. Two handles are equal when they are the same disk.
#[derive(Clone)]
pub struct DiskRef(pub Arc<dyn Disk>);

impl DiskRef {
    /// The real file system.
    pub fn real() -> Self {
        Self(Arc::new(RealDisk))
    }
}

impl Default for DiskRef {
    fn default() -> Self {
        Self::real()
    }
}

impl fmt::Debug for DiskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for DiskRef {
    fn eq(&self, other: &Self) -> bool {
        (self.0.is_real() && other.0.is_real()) || Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DiskRef {}

impl std::ops::Deref for DiskRef {
    type Target = dyn Disk;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Arc<dyn DiskFile>> {
        let mut options = OpenOptions::new();
        match how {
            OpenHow::Read => options.read(true),
            OpenHow::ReadWrite => options.read(true).write(true),
            OpenHow::CreateNew => options.read(true).write(true).create_new(true),
            OpenHow::Truncate => options.read(true).write(true).create(true).truncate(true),
            OpenHow::WriteDirect => options.write(true).custom_flags(libc::O_DIRECT),
        };
        Ok(Arc::new(RealFile(options.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn random_u64(&self) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        // SAFETY: getrandom fills at most `bytes.len()` bytes of our buffer.
        let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if got != bytes.len() as isize {
            return Err(io::Error::last_os_error());
        }
        Ok(u64::from_le_bytes(bytes))
    }

    fn is_real(&self) -> bool {
        true
    }
}

/// A file of the real file system.
struct RealFile(File);

impl DiskFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocated(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.blocks() * 512)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: a plain system call on a descriptor this file owns.
        let rc =
            unsafe { libc::fallocate(self.0.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) };
        match rc {
            0 => Ok(()),
            _ => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
                e => Err(e),
            },
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }
}
