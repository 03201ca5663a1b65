//! The store directory's own files: `LOCK` (held with `flock` while the store is open) and
//! `MANIFEST` (format version and shard count, written once when the store is created).
//!
//! ```text
//! helio-store <format version>
//! shards <count>
//! ```

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::error::{io_error, Error};
use crate::disk::{read_file, replace_file, Disk};

/// Format version of the store layout (directory, manifest, shard directories, the records in
/// the logs). 2: every record carries its write number, commits and batches.
pub const STORE_FORMAT: u32 = 3;

const MANIFEST: &str = "MANIFEST";
const LOCK: &str = "LOCK";
const ASIDE: &str = "MANIFEST.new";

/// Takes the directory's lock: `Locked` if another process or store holds it. The lock lasts as
/// long as the returned file is open.
pub fn lock(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("open lock file", path.clone(), e))?;
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::Locked { dir: dir.to_path_buf() });
        }
        return Err(io_error("lock", path, e));
    }
    Ok(file)
}

/// Reads the manifest: the store's shard count, or `None` for a directory with no store yet
/// (empty but for the lock file). Refuses other versions and directories holding other things.
pub fn read(disk: &dyn Disk, dir: &Path) -> Result<Option<usize>, Error> {
    let path = dir.join(MANIFEST);
    let text = match read_file(disk, &path).map_err(|e| io_error("read", path.clone(), e))? {
        Some(bytes) => bytes,
        None => {
            let entries = match disk.list(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error("list", dir.to_path_buf(), e)),
            };
            // LOCK, and a manifest a crash left half-made, are ours.
            let foreign = entries.iter().any(|name| name != LOCK && name != ASIDE);
            return if foreign { Err(Error::NotAStore { dir: dir.to_path_buf() }) } else { Ok(None) };
        }
    };
    let corrupt = |reason: &str| Error::Corrupt { path: path.clone(), offset: 0, reason: reason.into() };
    let text = String::from_utf8(text).map_err(|_| corrupt("not text"))?;
    let mut lines = text.lines();
    let version = lines
        .next()
        .and_then(|l| l.strip_prefix("helio-store "))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| corrupt("no `helio-store <version>` line"))?;
    if version != STORE_FORMAT {
        return Err(Error::Incompatible { path, found: version, expected: STORE_FORMAT });
    }
    let shards = lines
        .next()
        .and_then(|l| l.strip_prefix("shards "))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| corrupt("no `shards <count>` line"))?;
    Ok(Some(shards))
}

/// Writes the manifest of a new store, durably (written aside, synced, renamed, directory
/// synced): a crash leaves either no manifest or a whole one.
pub fn create(disk: &dyn Disk, dir: &Path, shards: usize) -> Result<(), Error> {
    let text = format!("helio-store {STORE_FORMAT}\nshards {shards}\n");
    replace_file(disk, dir, MANIFEST, text.as_bytes()).map_err(|e| io_error("write", dir.join(MANIFEST), e))
}
