//! A shard log's segment files: the log's u64 address space cut into files of `segment_bytes`
//! each, named by their index. While writers wait for durability, the writer zero-fills a
//! segment ahead of where it writes (a chunk at a time, through its direct descriptor), so that
//! its writes land on written extents: writing into merely allocated (or unallocated) space
//! makes every fdatasync convert extents and commit metadata, which halved the durable-write
//! rate measured here. Without durable waiters it writes into fresh space directly. Bytes past a file's
//! end read as zeros (never written).
//!
//! Zero-filling doubles what a fresh log writes, so segments the cleaner retires are recycled:
//! up to [`SPARES`] whole ones are kept as `spare-*` files and renamed into place when the log
//! reaches a new segment, whose blocks are then already written. Their old frames are harmless:
//! every frame carries its own log address, so recovery reads one at another address as the end
//! of the log, and never as a frame that vouches for earlier ones.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::{read_full, write_all_at, DiskFile, DiskRef, OpenHow};

/// Bytes written at a time when zero-filling a new segment.
const ZERO_CHUNK: usize = 1 << 20;

/// Retired segments kept for reuse.
pub const SPARES: usize = 2;

/// Where a shard's segments live and how big they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segments {
    disk: DiskRef,
    dir: PathBuf,
    segment_bytes: u64,
}

impl Segments {
    /// The segments of the log in `dir` on the real file system, `segment_bytes` each (a
    /// multiple of 4096).
    pub fn new(dir: &Path, segment_bytes: u64) -> Self {
        Self::on(DiskRef::real(), dir, segment_bytes)
    }

    /// The segments of the log in `dir` on `disk`.
    pub fn on(disk: DiskRef, dir: &Path, segment_bytes: u64) -> Self {
        assert!(segment_bytes > 0 && segment_bytes % 4096 == 0, "segment size {segment_bytes}");
        Self { disk, dir: dir.to_path_buf(), segment_bytes }
    }

    /// The disk the segments are on.
    pub fn disk(&self) -> &DiskRef {
        &self.disk
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
    pub fn open(&self, index: u64) -> io::Result<Option<Arc<dyn DiskFile>>> {
        self.open_as(index, OpenHow::Read)
    }

    /// Opens segment `index` as `how` says, or `None` if there is no such segment.
    pub fn open_as(&self, index: u64, how: OpenHow) -> io::Result<Option<Arc<dyn DiskFile>>> {
        match self.disk.open(&self.path(index), how) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads `buf.len()` bytes of segment `index` at `offset` (zeros past its end).
    pub fn read(&self, index: u64, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let file = self.disk.open(&self.path(index), OpenHow::Read)?;
        read_full(&*file, buf, offset)
    }

    /// Creates segment `index` from a spare if there is one (whole, so already written), else
    /// as a new file with its first `zeroed` bytes zero-filled (at most the segment size);
    /// durably (data and directory entry); opens it for reading and writing.
    pub fn create(&self, index: u64, zeroed: u64) -> io::Result<Arc<dyn DiskFile>> {
        for spare in self.spares()? {
            match self.disk.rename(&spare, &self.path(index)) {
                Ok(()) => {
                    self.disk.sync_dir(&self.dir)?;
                    return self.disk.open(&self.path(index), OpenHow::ReadWrite);
                }
                // Deleted since it was listed (a full cleaning drops the spares).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let file = self.disk.open(&self.path(index), OpenHow::CreateNew)?;
        let zeros = vec![0u8; ZERO_CHUNK];
        zero_fill(&*file, &zeros, 0, zeroed.min(self.segment_bytes))?;
        self.disk.sync_dir(&self.dir)?;
        Ok(file)
    }

    /// Deletes segment `index` (already gone is fine).
    pub fn remove(&self, index: u64) -> io::Result<()> {
        match self.disk.remove_file(&self.path(index)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Retires segment `index`, which the log no longer needs: keeps it as a spare if it is
    /// whole and fewer than [`SPARES`] are kept, else deletes it (already gone is fine).
    pub fn retire(&self, index: u64) -> io::Result<()> {
        let path = self.path(index);
        // Whole: as long as a segment and every block written (none punched out).
        let whole = self.disk.open(&path, OpenHow::Read).is_ok_and(|file| {
            file.len().is_ok_and(|len| len == self.segment_bytes)
                && file.allocated().is_ok_and(|bytes| bytes >= self.segment_bytes)
        });
        if whole && self.spares()?.len() < SPARES {
            // Not synced: a rename lost in a crash leaves a segment below the head, which the
            // next open retires again.
            return self.disk.rename(&path, &self.dir.join(format!("spare-{index:016x}")));
        }
        self.remove(index)
    }

    /// Gives the file space of the segment holding `lsn` back to the file system below `lsn`
    /// (whole 4 KiB blocks; the file keeps its size and reads zeros there). Where the file
    /// system cannot punch holes, nothing happens.
    pub fn punch_below(&self, lsn: u64) -> io::Result<()> {
        let index = self.index_of(lsn);
        let len = (lsn - self.start_of(index)) / 4096 * 4096;
        let Some(file) = self.open_as(index, OpenHow::ReadWrite)? else { return Ok(()) };
        file.punch_hole(0, len)
    }

    /// Deletes the spare segments, returning their space to the file system (a full cleaning
    /// does, so that a compacted log holds live data only). Returns how many there were.
    pub fn drop_spares(&self) -> io::Result<usize> {
        let mut dropped = 0;
        for spare in self.spares()? {
            match self.disk.remove_file(&spare) {
                Ok(()) => dropped += 1,
                // Taken for a new segment since it was listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(dropped)
    }

    /// The spare files, oldest first.
    fn spares(&self) -> io::Result<Vec<PathBuf>> {
        let mut names: Vec<String> =
            self.disk.list(&self.dir)?.into_iter().filter(|n| n.starts_with("spare-")).collect();
        names.sort();
        Ok(names.into_iter().map(|n| self.dir.join(n)).collect())
    }

    /// Indices of every segment file present, sorted.
    pub fn list(&self) -> io::Result<Vec<u64>> {
        let mut indices: Vec<u64> = self
            .disk
            .list(&self.dir)?
            .iter()
            .filter_map(|n| n.strip_prefix("segment-"))
            .filter(|hex| hex.len() == 16)
            .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
            .collect();
        indices.sort_unstable();
        Ok(indices)
    }
}

/// Writes zeros over `from..to` of `file`, `zeros.len()` bytes at a time, and makes them
/// durable. On a direct descriptor, `zeros` must be aligned and `from`, `to` block multiples.
pub fn zero_fill(file: &dyn DiskFile, zeros: &[u8], from: u64, to: u64) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let n = zeros.len().min((to - at) as usize);
        write_all_at(file, &zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_whole_segments_are_reused_and_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::new(dir.path(), 1 << 16);
        for index in 0..4 {
            write_all_at(&*segments.create(index, 1 << 16).unwrap(), &[index as u8 + 1; 16], 0).unwrap();
        }
        segments.create(4, 4096).unwrap();
        for index in 0..4 {
            segments.retire(index).unwrap();
        }
        // Two whole segments kept as spares, the others deleted; a partial one is never kept.
        segments.retire(4).unwrap();
        assert_eq!(segments.list().unwrap(), Vec::<u64>::new());
        assert_eq!(segments.spares().unwrap().len(), SPARES);
        // A new segment takes a spare: whole already, its old bytes still there.
        let file = segments.create(9, 0).unwrap();
        assert_eq!(file.len().unwrap(), 1 << 16);
        let mut first = [0u8; 1];
        read_full(&*file, &mut first, 0).unwrap();
        assert_eq!(first[0], 1, "the oldest spare is used first");
        assert_eq!(segments.list().unwrap(), vec![9]);
        assert_eq!(segments.spares().unwrap().len(), SPARES - 1);
        // Dropping the spares deletes them and nothing else.
        assert_eq!(segments.drop_spares().unwrap(), SPARES - 1);
        assert_eq!(segments.spares().unwrap().len(), 0);
        assert_eq!(segments.list().unwrap(), vec![9]);
    }

    /// Punching gives back whole blocks below an address, and a punched segment is never kept
    /// as a spare (its holes would make writes there allocate again).
    #[test]
    fn punched_segments_read_zeros_below_the_address_and_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::new(dir.path(), 1 << 16);
        let file = segments.create(0, 1 << 16).unwrap();
        write_all_at(&*file, &[7; 1 << 16], 0).unwrap();
        segments.punch_below(3 * 4096 + 100).unwrap();
        let mut back = vec![0u8; 1 << 16];
        read_full(&*file, &mut back, 0).unwrap();
        let punched = back.iter().position(|&b| b != 0).unwrap();
        // File systems without hole punching leave the data: then nothing is punched.
        assert!(punched == 3 * 4096 || punched == 0, "first nonzero byte at {punched}");
        assert!(back[3 * 4096..].iter().all(|&b| b == 7));
        if punched > 0 {
            segments.retire(0).unwrap();
            assert_eq!(segments.spares().unwrap().len(), 0);
        }
    }
}
