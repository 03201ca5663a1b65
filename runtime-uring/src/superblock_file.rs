//! The superblock file of one shard's log: two 4 KiB copies of
//! [`Superblock`], written alternately and made durable
//! before a write returns. The format and the choice between copies are the core's; this module
//! moves the bytes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use helio_core::log::superblock::{Superblock, SuperblockError, BLOCK_BYTES};

use crate::disk::{read_full, write_all_at, DiskFile, DiskRef, OpenHow};

/// The file's name in a shard's directory.
pub const FILE_NAME: &str = "superblock";

/// Name of a superblock being created (renamed to [`FILE_NAME`] once whole and durable).
pub const ASIDE_NAME: &str = "superblock.new";

/// Why the superblock file could not be read or written.
#[derive(Debug)]
pub enum SuperblockFileError {
    /// A system call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The bytes are not a usable superblock.
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with them.
        error: SuperblockError,
    },
}

impl fmt::Display for SuperblockFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuperblockFileError::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            SuperblockFileError::Format { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for SuperblockFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SuperblockFileError::Io { source, .. } => Some(source),
            SuperblockFileError::Format { error, .. } => Some(error),
        }
    }
}

/// An open superblock file and the copy it holds newest.
pub struct SuperblockFile {
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    current: Superblock,
}

impl SuperblockFile {
    /// Creates the file in `dir` (which must not have one) holding `first` in its slot, durably:
    /// written aside, synced, renamed into place, directory synced, so that a crash leaves
    /// either no superblock or a whole one.
    pub fn create(dir: &Path, first: Superblock) -> Result<Self, SuperblockFileError> {
        Self::create_on(&DiskRef::real(), dir, first)
    }

    /// [`SuperblockFile::create`] on `disk`.
    pub fn create_on(disk: &DiskRef, dir: &Path, first: Superblock) -> Result<Self, SuperblockFileError> {
        let path = dir.join(FILE_NAME);
        let aside = dir.join(ASIDE_NAME);
        let io = |op, source| SuperblockFileError::Io { op, path: path.clone(), source };
        let file = disk.open(&aside, OpenHow::Truncate).map_err(|e| io("create superblock", e))?;
        file.set_len(2 * BLOCK_BYTES as u64).map_err(|e| io("size superblock", e))?;
        let mut this = Self { file, path: aside.clone(), current: first };
        this.write_copy(first)?;
        if disk.open(&path, OpenHow::Read).is_ok() {
            return Err(io("create superblock", std::io::Error::from(std::io::ErrorKind::AlreadyExists)));
        }
        disk.rename(&aside, &path).map_err(|e| io("rename superblock", e))?;
        disk.sync_dir(dir).map_err(|e| io("sync directory of", e))?;
        this.path = path;
        Ok(this)
    }

    /// Opens the file in `dir` and takes the newest intact copy.
    pub fn open(dir: &Path) -> Result<Self, SuperblockFileError> {
        Self::open_on(&DiskRef::real(), dir)
    }

    /// [`SuperblockFile::open`] on `disk`.
    pub fn open_on(disk: &DiskRef, dir: &Path) -> Result<Self, SuperblockFileError> {
        let path = dir.join(FILE_NAME);
        let io = |op, source| SuperblockFileError::Io { op, path: path.clone(), source };
        let file = disk.open(&path, OpenHow::ReadWrite).map_err(|e| io("open superblock", e))?;
        let mut blocks = vec![0u8; 2 * BLOCK_BYTES];
        let len = file.len().map_err(|e| io("stat superblock", e))?;
        if len != blocks.len() as u64 {
            return Err(SuperblockFileError::Format { path, error: SuperblockError::Corrupt });
        }
        read_full(&*file, &mut blocks, 0).map_err(|e| io("read superblock", e))?;
        let (slot0, slot1) = blocks.split_at(BLOCK_BYTES);
        let current = Superblock::choose(slot0, slot1)
            .map_err(|error| SuperblockFileError::Format { path: path.clone(), error })?;
        Ok(Self { file, path, current })
    }

    /// The newest copy.
    pub fn current(&self) -> Superblock {
        self.current
    }

    /// Writes `next` (the next generation) to its slot and makes it durable; the other copy is
    /// untouched, so a crash during the write leaves the previous superblock readable.
    pub fn store(&mut self, next: Superblock) -> Result<(), SuperblockFileError> {
        assert_eq!(next.generation, self.current.generation + 1, "superblock generations go one by one");
        self.write_copy(next)?;
        self.current = next;
        Ok(())
    }

    fn write_copy(&mut self, sb: Superblock) -> Result<(), SuperblockFileError> {
        let io = |op, source| SuperblockFileError::Io { op, path: self.path.clone(), source };
        let at = (sb.slot() * BLOCK_BYTES) as u64;
        write_all_at(&*self.file, &sb.encode(), at).map_err(|e| io("write superblock", e))?;
        self.file.sync_data().map_err(|e| io("sync superblock", e))
    }
}

impl fmt::Debug for SuperblockFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuperblockFile").field("path", &self.path).field("current", &self.current).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helio_core::log::superblock::FORMAT_VERSION;
    use std::fs::OpenOptions;
    use std::os::unix::fs::FileExt;

    fn first() -> Superblock {
        Superblock {
            generation: 0,
            head: 0,
            tail: 0,
            segment_bytes: 1 << 20,
            salt: crate::disk::Disk::random_u64(&crate::disk::RealDisk).unwrap(),
            epoch: 0,
            clean: false,
        }
    }

    #[test]
    fn stores_alternate_and_survive_a_torn_copy() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = SuperblockFile::create(dir.path(), first()).unwrap();
        for tail in 1..=5u64 {
            let next = file.current().next(0, tail * 4096);
            file.store(next).unwrap();
            assert_eq!(SuperblockFile::open(dir.path()).unwrap().current(), next);
        }
        let newest = file.current();
        // Tear the newest copy: the previous one is taken.
        let raw = OpenOptions::new().write(true).open(dir.path().join(FILE_NAME)).unwrap();
        raw.write_all_at(&[0xAB; 100], (newest.slot() * BLOCK_BYTES + 1000) as u64).unwrap();
        let reopened = SuperblockFile::open(dir.path()).unwrap().current();
        assert_eq!(reopened.generation, newest.generation - 1);
        assert_eq!(reopened.salt, newest.salt);
    }

    #[test]
    fn refuses_what_it_cannot_use_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SuperblockFile::open(dir.path()).unwrap_err();
        assert!(matches!(&missing, SuperblockFileError::Io { op: "open superblock", .. }), "{missing}");
        assert!(missing.to_string().contains(FILE_NAME));
        SuperblockFile::create(dir.path(), first()).unwrap();
        assert!(matches!(SuperblockFile::create(dir.path(), first()), Err(SuperblockFileError::Io { .. })));
        // A newer copy from another format version.
        let mut next = first().next(0, 0).encode();
        next[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let crc = helio_core::log::crc32c_of(&next[..BLOCK_BYTES - 4]);
        next[BLOCK_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        let raw = OpenOptions::new().write(true).open(dir.path().join(FILE_NAME)).unwrap();
        raw.write_all_at(&next, BLOCK_BYTES as u64).unwrap();
        let err = SuperblockFile::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, SuperblockFileError::Format { error: SuperblockError::Incompatible { .. }, .. }),
            "{err}"
        );
        // Garbage of the wrong size.
        std::fs::write(dir.path().join(FILE_NAME), b"not a superblock").unwrap();
        let err = SuperblockFile::open(dir.path()).unwrap_err();
        assert!(matches!(err, SuperblockFileError::Format { error: SuperblockError::Corrupt, .. }), "{err}");
    }
}
