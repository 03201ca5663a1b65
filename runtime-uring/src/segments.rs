//! A shard log's segment files: the log's u64 address space cut into files of `segment_bytes`
//! each, named by their index. The writer zero-fills a segment ahead of where it writes (a
//! chunk at a time, through its direct descriptor), so that its writes land on written extents:
//! writing into merely allocated (or unallocated) space makes every fdatasync convert extents
//! and commit metadata, which halved the durable-write rate measured here. Bytes past a file's
//! end read as zeros (never written).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes written at a time when zero-filling a new segment.
const ZERO_CHUNK: usize = 1 << 20;

/// Where a shard's segments live and how big they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segments {
    dir: PathBuf,
    segment_bytes: u64,
}

impl Segments {
    /// The segments of the log in `dir`, `segment_bytes` each (a multiple of 4096).
    pub fn new(dir: &Path, segment_bytes: u64) -> Self {
        assert!(segment_bytes > 0 && segment_bytes % 4096 == 0, "segment size {segment_bytes}");
        Self { dir: dir.to_path_buf(), segment_bytes }
    }

    /// Size of each segment file.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// The segment holding log address `lsn`.
    pub fn index_of(&self, lsn: u64) -> u64 {
        lsn / self.segment_bytes
    }

    /// The log address of the first byte of segment `index`.
    pub fn start_of(&self, index: u64) -> u64 {
        index * self.segment_bytes
    }

    /// The file of segment `index`.
    pub fn path(&self, index: u64) -> PathBuf {
        self.dir.join(format!("segment-{index:016x}"))
    }

    /// Opens segment `index` for reading, or `None` if it was never created (or was trimmed).
    pub fn open(&self, index: u64) -> io::Result<Option<File>> {
        match File::open(self.path(index)) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates segment `index` with its first `zeroed` bytes zero-filled (at most the segment
    /// size), durably (data and directory entry), and opens it for reading and writing.
    pub fn create(&self, index: u64, zeroed: u64) -> io::Result<File> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(self.path(index))?;
        let zeros = vec![0u8; ZERO_CHUNK];
        zero_fill(&file, &zeros, 0, zeroed.min(self.segment_bytes))?;
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        Ok(file)
    }

    /// Deletes segment `index` (already gone is fine).
    pub fn remove(&self, index: u64) -> io::Result<()> {
        match std::fs::remove_file(self.path(index)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Indices of every segment file present, sorted.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let mut indices = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let parsed = name
                .to_str()
                .and_then(|n| n.strip_prefix("segment-"))
                .and_then(|hex| (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten());
            indices.extend(parsed);
        }
        indices.sort_unstable();
        Ok(indices)
    }
}

/// Writes zeros over `from..to` of `file`, `zeros.len()` bytes at a time, and makes them
/// durable. On a direct descriptor, `zeros` must be aligned and `from`, `to` block multiples.
pub fn zero_fill(file: &File, zeros: &[u8], from: u64, to: u64) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let n = zeros.len().min((to - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}
