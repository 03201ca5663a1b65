//! A simulated disk for tests: deterministic from a seed, with a volatile write cache, so that
//! tests can cut the power and see what a real device could have kept.
//!
//! What it models:
//! - **A volatile write cache.** A write is visible to reads at once but durable only once an
//!   fdatasync of its file has completed. At a power loss ([`SimDisk::power_loss`]) every
//!   write since the last sync of its file is, independently and by the seed, kept whole, lost,
//!   or torn at 512-byte sector granularity (some sectors kept, some not), so writes also
//!   persist out of order; a write never rolls a sector back past a newer kept write.
//! - **Sectors never written read as garbage** (seeded bytes, not zeros): a file grown by a
//!   write past its end or by `set_len` holds garbage between, and a power loss that keeps a
//!   later write but not an earlier one leaves garbage in the hole.
//! - **Directory entries** (create, rename, delete) are durable only once their directory is
//!   synced; at a power loss a prefix of the changes since survives, in order (as a journaling
//!   file system commits them).
//! - **A process kill** ([`SimDisk::kill`]): every open file handle dies, and what was written
//!   stays where it was, in the cache, not yet durable (the kernel outlives the process).
//! - **Faults** ([`SimFaults`]): EIO, ENOSPC and short writes at a given rate, or at the Nth
//!   operation; an fdatasync that does nothing (to prove a test notices).
//!
//! What it does not model: metadata other than names and lengths (a length change is durable at
//! once), reads that fail or return wrong data, latency in time (the log's inline driver models
//! completion order instead), a full disk that stays full, several devices.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Disk, DiskFile, OpenHow};

/// Bytes of a sector: the unit a torn write tears at.
pub const SECTOR: u64 = 512;

/// Fault injection on the simulated disk. Rates are per million operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// Writes and syncs that fail with EIO, per million.
    pub eio_per_million: u32,
    /// Writes that fail with ENOSPC, per million.
    pub enospc_per_million: u32,
    /// Writes that write only part of their bytes, per million.
    pub short_per_million: u32,
    /// Fail the Nth write or sync (counted from 1 since the faults were set) with EIO.
    pub fail_op: Option<u64>,
    /// fdatasync and directory syncs make nothing durable (a broken disk, for proving that
    /// the tests notice).
    pub sync_is_noop: bool,
}

/// What the simulated disk has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Read calls.
    pub reads: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Write calls.
    pub writes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// fdatasyncs.
    pub syncs: u64,
    /// Power losses.
    pub power_losses: u64,
    /// Faults injected.
    pub faults: u64,
}

/// The simulated disk. Cheap to clone: clones are the same disk.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power loss now.
    durable: Vec<u8>,
    /// Writes since the last sync, oldest first.
    pending: Vec<(u64, Vec<u8>)>,
}

#[derive(Clone, Debug)]
enum NameOp {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

struct State {
    rng: u64,
    seed: u64,
    /// Bumped at every power loss and kill: handles opened before are dead.
    generation: u64,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    /// Name changes since the last directory sync, per directory, in order.
    pending_names: Vec<(PathBuf, NameOp)>,
    dirs: BTreeSet<PathBuf>,
    faults: SimFaults,
    fault_ops: u64,
    stats: SimStats,
}

impl SimDisk {
    /// An empty disk whose every random choice follows `seed`.
    pub fn new(seed: u64) -> Self {
        let state = State {
            rng: seed ^ 0x9E37_79B9_7F4A_7C15 | 1,
            seed,
            generation: 0,
            inodes: BTreeMap::new(),
            next_inode: 1,
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            pending_names: Vec::new(),
            dirs: BTreeSet::new(),
            faults: SimFaults::default(),
            fault_ops: 0,
            stats: SimStats::default(),
        };
        Self { state: Arc::new(Mutex::new(state)) }
    }

    /// The seed the disk was made with.
    pub fn seed(&self) -> u64 {
        self.state.lock().unwrap().seed
    }

    /// Sets the faults to inject from now on (the Nth-operation count restarts).
    pub fn set_faults(&self, faults: SimFaults) {
        let mut state = self.state.lock().unwrap();
        state.faults = faults;
        state.fault_ops = 0;
    }

    /// What the disk has done so far.
    pub fn stats(&self) -> SimStats {
        self.state.lock().unwrap().stats
    }

    /// The process dies: every open handle fails from now on; what was written stays in the
    /// cache, not durable.
    pub fn kill(&self) {
        self.state.lock().unwrap().generation += 1;
    }

    /// The power goes: every write not yet synced is kept, lost or torn (by the seed), a
    /// prefix of the unsynced directory changes survives, and every handle dies.
    pub fn power_loss(&self) {
        let mut state = self.state.lock().unwrap();
        state.generation += 1;
        state.stats.power_losses += 1;
        let inodes: Vec<u64> = state.inodes.keys().copied().collect();
        for ino in inodes {
            let mut inode = state.inodes.remove(&ino).unwrap();
            for (offset, bytes) in std::mem::take(&mut inode.pending) {
                match state.next() % 3 {
                    0 => {}
                    1 => write_into(&mut inode.durable, offset, &bytes, ino, &mut state),
                    _ => {
                        let sectors = (bytes.len() as u64).div_ceil(SECTOR);
                        for sector in 0..sectors {
                            if state.next() % 2 == 0 {
                                let from = (sector * SECTOR) as usize;
                                let to = (from + SECTOR as usize).min(bytes.len());
                                write_into(
                                    &mut inode.durable,
                                    offset + from as u64,
                                    &bytes[from..to],
                                    ino,
                                    &mut state,
                                );
                            }
                        }
                    }
                }
            }
            inode.data = inode.durable.clone();
            state.inodes.insert(ino, inode);
        }
        let keep = match state.pending_names.len() {
            0 => 0,
            n => (state.next() % (n as u64 + 1)) as usize,
        };
        let mut names = state.durable_names.clone();
        for (_, op) in state.pending_names.drain(..).take(keep) {
            apply(&mut names, op);
        }
        state.names = names.clone();
        state.durable_names = names;
        state.pending_names.clear();
        let live: BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|ino, _| live.contains(ino));
    }

    /// The names of every file on the disk now, with their lengths (for messages).
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let state = self.state.lock().unwrap();
        state.names.iter().map(|(path, ino)| (path.clone(), state.inodes[ino].data.len() as u64)).collect()
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimDisk(seed {:#x})", self.seed())
    }
}

/// Applies a name change.
fn apply(names: &mut BTreeMap<PathBuf, u64>, op: NameOp) {
    match op {
        NameOp::Link(path, ino) => {
            names.insert(path, ino);
        }
        NameOp::Unlink(path) => {
            names.remove(&path);
        }
        NameOp::Rename(from, to) => {
            if let Some(ino) = names.remove(&from) {
                names.insert(to, ino);
            }
        }
    }
}

/// Writes `bytes` at `offset` of `data`, growing it with garbage first where it is shorter.
fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8], ino: u64, state: &mut State) {
    let end = offset as usize + bytes.len();
    grow(data, end, ino, state);
    data[offset as usize..end].copy_from_slice(bytes);
}

/// Grows `data` to `len` bytes of garbage (seeded by the disk, the file and the position).
fn grow(data: &mut Vec<u8>, len: usize, ino: u64, state: &State) {
    let mut at = data.len();
    while at < len {
        let mut x =
            state.seed ^ ino.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (at as u64 / 8).wrapping_mul(0x9E37_79B9);
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 29;
        data.push(x.to_le_bytes()[at % 8]);
        at += 1;
    }
}

impl State {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A fault for this write or sync, if one is due.
    fn fault(&mut self, write: bool) -> Option<io::Error> {
        self.fault_ops += 1;
        let faults = self.faults;
        let roll = |state: &mut State, per_million: u32| {
            per_million > 0 && state.next() % 1_000_000 < u64::from(per_million)
        };
        let error = if faults.fail_op == Some(self.fault_ops) || roll(self, faults.eio_per_million) {
            Some(io::Error::from_raw_os_error(libc::EIO))
        } else if write && roll(self, faults.enospc_per_million) {
            Some(io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            None
        };
        self.stats.faults += u64::from(error.is_some());
        error
    }

    fn link(&mut self, path: &Path, ino: u64) {
        self.names.insert(path.to_path_buf(), ino);
        self.pending_names.push((parent(path), NameOp::Link(path.to_path_buf(), ino)));
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn dead() -> io::Error {
    io::Error::other("the simulated machine lost power or the process was killed")
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = self.state.lock().unwrap();
        if !state.dirs.contains(&parent(path)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let ino = match (state.names.get(path).copied(), how) {
            (Some(_), OpenHow::CreateNew) => return Err(io::ErrorKind::AlreadyExists.into()),
            (Some(ino), OpenHow::Truncate) => {
                let inode = state.inodes.get_mut(&ino).unwrap();
                inode.data.clear();
                inode.durable.clear();
                inode.pending.clear();
                ino
            }
            (Some(ino), _) => ino,
            (None, OpenHow::CreateNew | OpenHow::Truncate) => {
                let ino = state.next_inode;
                state.next_inode += 1;
                state
                    .inodes
                    .insert(ino, Inode { data: Vec::new(), durable: Vec::new(), pending: Vec::new() });
                state.link(path, ino);
                ino
            }
            (None, _) => return Err(io::ErrorKind::NotFound.into()),
        };
        let writable = how != OpenHow::Read;
        Ok(Arc::new(SimFile { state: self.state.clone(), ino, generation: state.generation, writable }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let ino = state.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        state.names.insert(to.to_path_buf(), ino);
        state.pending_names.push((parent(to), NameOp::Rename(from.to_path_buf(), to.to_path_buf())));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        state.names.remove(path).ok_or(io::ErrorKind::NotFound)?;
        state.pending_names.push((parent(path), NameOp::Unlink(path.to_path_buf())));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock().unwrap();
        if !state.dirs.contains(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(state
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        if let Some(error) = state.fault(false) {
            return Err(error);
        }
        if state.faults.sync_is_noop {
            return Ok(());
        }
        // The journal commits in order: everything up to this directory's last change.
        let Some(last) = state.pending_names.iter().rposition(|(d, _)| d == dir) else { return Ok(()) };
        let committed: Vec<(PathBuf, NameOp)> = state.pending_names.drain(..=last).collect();
        for (_, op) in committed {
            apply(&mut state.durable_names, op);
        }
        Ok(())
    }

    fn random_u64(&self) -> io::Result<u64> {
        Ok(self.state.lock().unwrap().next())
    }
}

/// An open file of the simulated disk.
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    generation: u64,
    writable: bool,
}

impl SimFile {
    /// The disk's state, if this handle is still alive, and the file (which may have been
    /// deleted: an open handle keeps reading and writing it, as on a real file system).
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state.lock().unwrap();
        if state.generation != self.generation {
            return Err(dead());
        }
        if !state.inodes.contains_key(&self.ino) {
            // Deleted and then lost at a power loss: gone.
            return Err(dead());
        }
        f(&mut state, self.ino)
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|state, ino| {
            let data = &state.inodes[&ino].data;
            let from = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - from);
            buf[..n].copy_from_slice(&data[from..from + n]);
            state.stats.reads += 1;
            state.stats.read_bytes += n as u64;
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        self.with(|state, ino| {
            if let Some(error) = state.fault(true) {
                return Err(error);
            }
            let short = state.faults.short_per_million > 0
                && buf.len() > SECTOR as usize
                && state.next() % 1_000_000 < u64::from(state.faults.short_per_million);
            let n = if short {
                (buf.len() / 2).next_multiple_of(SECTOR as usize).min(buf.len() - 1)
            } else {
                buf.len()
            };
            state.stats.faults += u64::from(short);
            let mut inode = state.inodes.remove(&ino).unwrap();
            write_into(&mut inode.data, offset, &buf[..n], ino, state);
            inode.pending.push((offset, buf[..n].to_vec()));
            state.inodes.insert(ino, inode);
            state.stats.writes += 1;
            state.stats.written_bytes += n as u64;
            Ok(n)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|state, ino| {
            if let Some(error) = state.fault(false) {
                return Err(error);
            }
            state.stats.syncs += 1;
            if state.faults.sync_is_noop {
                return Ok(());
            }
            let mut inode = state.inodes.remove(&ino).unwrap();
            for (offset, bytes) in std::mem::take(&mut inode.pending) {
                write_into(&mut inode.durable, offset, &bytes, ino, state);
            }
            // Lengths are durable at once (set_len); the durable copy follows the visible one.
            inode.durable.truncate(inode.data.len());
            state.inodes.insert(ino, inode);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|state, ino| Ok(state.inodes[&ino].data.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|state, ino| {
            let mut inode = state.inodes.remove(&ino).unwrap();
            inode.data.truncate(len as usize);
            grow(&mut inode.data, len as usize, ino, state);
            inode.durable.truncate(len as usize);
            grow(&mut inode.durable, len as usize, ino, state);
            state.inodes.insert(ino, inode);
            Ok(())
        })
    }

    fn allocated(&self) -> io::Result<u64> {
        self.len()
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        // A write of zeros, as volatile as any other (a punched range reads zeros).
        let end = (offset + len).min(self.len()?);
        if end > offset {
            super::write_all_at(self, &vec![0; (end - offset) as usize], offset)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> (SimDisk, PathBuf) {
        let disk = SimDisk::new(7);
        let dir = PathBuf::from("/sim/d");
        disk.create_dir_all(&dir).unwrap();
        (disk, dir)
    }

    #[test]
    fn synced_writes_survive_a_power_loss_and_unsynced_ones_may_not() {
        let mut kept_whole = 0;
        let mut lost_or_torn = 0;
        for seed in 0..64 {
            let disk = SimDisk::new(seed);
            let dir = PathBuf::from("/sim/d");
            disk.create_dir_all(&dir).unwrap();
            let path = dir.join("f");
            let file = disk.open(&path, OpenHow::CreateNew).unwrap();
            disk.sync_dir(&dir).unwrap();
            super::super::write_all_at(&*file, &[1; 4096], 0).unwrap();
            file.sync_data().unwrap();
            super::super::write_all_at(&*file, &[2; 4096], 4096).unwrap();
            let mut back = vec![0; 8192];
            super::super::read_full(&*file, &mut back, 0).unwrap();
            assert!(back[4096..].iter().all(|&b| b == 2), "a write is visible at once");
            disk.power_loss();
            assert!(file.len().is_err(), "handles die at a power loss");
            let file = disk.open(&path, OpenHow::Read).unwrap();
            super::super::read_full(&*file, &mut back, 0).unwrap();
            assert!(back[..4096].iter().all(|&b| b == 1), "seed {seed}: a synced write was lost");
            if back[4096..].iter().all(|&b| b == 2) {
                kept_whole += 1;
            } else {
                lost_or_torn += 1;
            }
        }
        assert!(kept_whole > 5 && lost_or_torn > 5, "{kept_whole} kept, {lost_or_torn} not");
    }

    #[test]
    fn directory_changes_need_a_directory_sync() {
        let mut lost = 0;
        for seed in 0..32 {
            let disk = SimDisk::new(seed);
            let dir = PathBuf::from("/sim/d");
            disk.create_dir_all(&dir).unwrap();
            disk.open(&dir.join("a"), OpenHow::CreateNew).unwrap();
            disk.sync_dir(&dir).unwrap();
            disk.open(&dir.join("b"), OpenHow::CreateNew).unwrap();
            disk.rename(&dir.join("a"), &dir.join("c")).unwrap();
            disk.power_loss();
            let names = disk.list(&dir).unwrap();
            // A prefix of the changes: a; a, b; or b, c.
            assert!(names == ["a"] || names == ["a", "b"] || names == ["b", "c"], "seed {seed}: {names:?}");
            lost += usize::from(names != ["b", "c"]);
        }
        assert!(lost > 0);
    }

    #[test]
    fn a_kill_keeps_unsynced_writes_cached_for_the_next_process() {
        let (disk, dir) = disk();
        let file = disk.open(&dir.join("f"), OpenHow::CreateNew).unwrap();
        super::super::write_all_at(&*file, &[3; 1000], 0).unwrap();
        disk.kill();
        assert!(file.read_at(&mut [0; 1], 0).is_err(), "the killed process's handles die");
        let file = disk.open(&dir.join("f"), OpenHow::ReadWrite).unwrap();
        let mut back = vec![0; 1000];
        super::super::read_full(&*file, &mut back, 0).unwrap();
        assert!(back.iter().all(|&b| b == 3));
        file.sync_data().unwrap();
        disk.sync_dir(&dir).unwrap();
        disk.power_loss();
        let file = disk.open(&dir.join("f"), OpenHow::Read).unwrap();
        super::super::read_full(&*file, &mut back, 0).unwrap();
        assert!(back.iter().all(|&b| b == 3), "synced after the kill: durable");
    }

    #[test]
    fn never_written_sectors_read_as_garbage_and_faults_fire() {
        let (disk, dir) = disk();
        let file = disk.open(&dir.join("f"), OpenHow::CreateNew).unwrap();
        file.write_at(&[1; 8], 8192).unwrap();
        let mut back = vec![0; 4096];
        super::super::read_full(&*file, &mut back, 0).unwrap();
        assert!(back.iter().any(|&b| b != 0), "a hole reads garbage");
        disk.set_faults(SimFaults { fail_op: Some(2), ..SimFaults::default() });
        file.write_at(&[1; 8], 0).unwrap();
        assert_eq!(file.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        disk.set_faults(SimFaults { short_per_million: 1_000_000, ..SimFaults::default() });
        assert!(file.write_at(&[1; 4096], 0).unwrap() < 4096);
    }
}
