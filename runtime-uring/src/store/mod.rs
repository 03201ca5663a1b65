//! [`Store`]: the engine as a database links it. A store is a directory of shards; each shard
//! owns the keys that hash to it, with its own tree, write buffers, log and I/O thread (pinned
//! to a core). Reads and in-memory writes run on the caller's thread through the lock-free
//! structures; only I/O goes through a shard's ring. One snapshot sequence spans the shards, so
//! a snapshot is one point in time across all of them.

mod batch;
mod config;
mod error;
mod manifest;
mod range;
mod scan;

/// Times in a row a scan or a range batch that stopped before a swapped-out page, read it back
/// unpinned and started again takes no entry (the swapper took the page back first) before it
/// reads the page pinned, so that its progress never depends on winning that race.
const UNPINNED_TRIES: usize = 3;

use std::fs::File;
use std::ops::{Bound, ControlFlow, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use helio_core::log::replay::ReplayError;
use helio_core::{Mvcc, Snapshot as CoreSnapshot};

pub use batch::WriteBatch;
pub use config::{Config, SHARDS_MAX};
pub use error::Error;
pub use manifest::STORE_FORMAT;
pub use range::{Entry, Range};

use crate::commit::Committer;
use crate::cut::plan_recovery;
use crate::fanout;
use crate::log::Durability;
use crate::shard::{Shard, ShardError, ShardStats};

/// An open store. `Send + Sync`: share it (in an `Arc`) between threads; every method may be
/// called from any thread. Dropping it closes it (errors ignored; [`Store::close`] reports them).
///
/// Every write (a put, a delete, a batch) takes its place in one order across the store.
/// After any crash the store holds exactly the writes up to some point of that order; when a
/// `Sync` write or [`Store::sync`] returns, that point is at or past it (see
/// `docs/consistency.md`).
pub struct Store {
    shards: Box<[Shard]>,
    mvcc: Arc<Mvcc>,
    committer: Arc<Committer>,
    durability: Durability,
    dir: PathBuf,
    _lock: Option<File>,
}

/// Counters of a store: per shard and summed.
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    /// One entry per shard.
    pub shards: Vec<ShardStats>,
    /// The sum over shards.
    pub total: ShardStats,
}

impl Store {
    /// Opens the store `config` describes, creating it if its directory holds none, and
    /// recovers every shard (in parallel) from its log, to one point of the store's order of
    /// writes: every log is read once for its commits, which fix that point, then replayed.
    pub fn open(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let dir = config.dir().to_path_buf();
        let disk = config.log.disk.clone();
        disk.create_dir_all(&dir).map_err(|e| error::io_error("create directory", dir.clone(), e))?;
        // A simulated disk is this process's own: no other process can open it.
        let lock = if disk.is_real() { Some(manifest::lock(&dir)?) } else { None };
        match manifest::read(&*disk, &dir)? {
            Some(found) if found != config.shards => {
                return Err(Error::ShardCount { found, configured: config.shards })
            }
            Some(_) => {}
            None => manifest::create(&*disk, &dir, config.shards)?,
        }
        let dirs: Vec<PathBuf> = (0..config.shards).map(|i| shard_dir(&dir, i)).collect();
        let (plan, scanned) = plan_recovery(&dir, &dirs, &config.log).map_err(|e| shard_error(&dir, e))?;
        let mvcc = Arc::new(Mvcc::starting_at(plan.next_sn));
        let recover = |i: usize, path: &PathBuf| {
            Shard::recover(path, &config.shard(i), i, mvcc.clone(), &plan, scanned[i])
                .map(|(shard, _)| shard)
                .map_err(|e| shard_error(path, e))
        };
        let opened = fanout::each(disk.is_real(), &dirs, recover);
        let mut shards = opened.into_iter().collect::<Result<Box<[Shard]>, Error>>()?;
        let logs = shards.iter().map(|shard| shard.log().clone()).collect();
        let committer = Committer::new(mvcc.clone(), logs, disk.is_real(), config.log.flush_interval);
        for shard in shards.iter_mut() {
            shard.start(committer.clone())?;
        }
        Ok(Self { shards, mvcc, committer, durability: config.durability, dir, _lock: lock })
    }

    /// Sets `key` to `value`, with the store's durability.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.put_with(key, value, self.durability)
    }

    /// Sets `key` to `value`, with the durability given.
    pub fn put_with(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<(), Error> {
        Ok(self.shard_of(key).put(key, value, durability)?)
    }

    /// Removes `key` (a no-op if absent), with the store's durability.
    pub fn delete(&self, key: &[u8]) -> Result<(), Error> {
        self.delete_with(key, self.durability)
    }

    /// Removes `key`, with the durability given.
    pub fn delete_with(&self, key: &[u8], durability: Durability) -> Result<(), Error> {
        Ok(self.shard_of(key).delete(key, durability)?)
    }

    /// Applies `batch` all or nothing, with the store's durability (see [`WriteBatch`]).
    pub fn write(&self, batch: &WriteBatch) -> Result<(), Error> {
        self.write_with(batch, self.durability)
    }

    /// Applies `batch` all or nothing, across shards, with the durability given: a snapshot
    /// (and so a range or a scan) sees all of it or none, and so does the store after any
    /// crash. Refused whole, with nothing written, if it is over [`WriteBatch`]'s limits or
    /// holds a key or value over the store's. A `get` is not a snapshot: two of them, one
    /// each side of the moment the batch lands in the tree, can see one key new and another
    /// old; read through [`Store::snapshot`] to see several keys at one point.
    pub fn write_with(&self, batch: &WriteBatch, durability: Durability) -> Result<(), Error> {
        batch::write(self, batch, durability)
    }

    /// The latest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.shard_of(key).get(key)?)
    }

    /// The entries with keys in `range`, in key order (`.rev()` for descending), as of now.
    ///
    /// Forms that infer the key type: `range(&b"a"[..]..&b"z"[..])`, `range(b"a".as_slice()..)`,
    /// `range::<[u8], _>(..)`; the whole store is [`Store::iter`].
    pub fn range<K: AsRef<[u8]> + ?Sized, R: RangeBounds<K>>(&self, range: R) -> Range<'_> {
        self.snapshot().range(range)
    }

    /// Every entry, in key order (`.rev()` for descending), as of now: `range(..)`.
    pub fn iter(&self) -> Range<'_> {
        self.snapshot().iter()
    }

    /// Visits the entries with keys in `range`, in key order, as of now, until `visit` returns
    /// [`ControlFlow::Break`]; returns how many it visited. `visit` gets slices of the pages
    /// themselves: no entry is copied, which makes this the fastest way to read a range. While
    /// the call runs, memory that the scan could still reach is not reclaimed (every shard
    /// stays pinned), so keep `visit` short; [`Store::range`] suits a consumer that keeps
    /// entries or is slow.
    pub fn scan<K: AsRef<[u8]> + ?Sized, R: RangeBounds<K>>(
        &self,
        range: R,
        visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<usize, Error> {
        self.snapshot().scan(range, visit)
    }

    /// A point-in-time view of the whole store.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot { store: self, snapshot: self.shards[0].snapshot() }
    }

    /// Makes every earlier write recoverable, on every shard: after any crash from here on
    /// the store holds them (and so every write before them in the store's order).
    pub fn sync(&self) -> Result<(), Error> {
        Ok(self.committer.commit_all(0, true)?)
    }

    /// Cleans every shard's log whole now: every live entry is appended again, the head moves past
    /// everything written before the call, and the file space behind it (spare segments
    /// included) is given back, so the files hold about the live data. The cleaners do the same
    /// a stretch at a time as logs grow.
    pub fn checkpoint(&self) -> Result<(), Error> {
        // Shards clean at once, each on a thread of its own, as their cleaners would.
        let real = self.shards[0].log().disk_is_real();
        fanout::each(real, &self.shards, |_, shard| shard.checkpoint().map(drop))
            .into_iter()
            .try_for_each(|cleaned| cleaned.map_err(Error::from))
    }

    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        let shards: Vec<ShardStats> = self.shards.iter().map(Shard::stats).collect();
        let total = shards.iter().fold(ShardStats::default(), |sum, s| sum.plus(s));
        StoreStats { shards, total }
    }

    /// The shard count of the store in `dir` (from its manifest), or `None` if `dir` holds no
    /// store. Reads only.
    pub fn shards_in(dir: &Path) -> Result<Option<usize>, Error> {
        manifest::read(&crate::disk::RealDisk, dir)
    }

    /// Takes the lock of the store in `dir` without opening it (for tools that read its files):
    /// `Locked` while a `Store` has it open. The lock lasts as long as the returned file.
    pub fn lock_dir(dir: &Path) -> Result<File, Error> {
        manifest::lock(dir)
    }

    /// The directory of shard `index` of the store in `dir`.
    pub fn shard_dir(dir: &Path, index: usize) -> PathBuf {
        shard_dir(dir, index)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cleans every shard's log one round, as its cleaner would, in the caller's thread: a
    /// test hook for stores on a simulated disk, which have no cleaner threads.
    #[doc(hidden)]
    pub fn clean_now(&self) -> Result<(), Error> {
        self.shards.iter().try_for_each(|shard| shard.clean_now().map_err(Error::from))
    }

    /// Makes everything recoverable and closes every shard.
    pub fn close(self) -> Result<(), Error> {
        let mut first = self.committer.commit_all(0, true).map_err(Error::from);
        self.committer.stop();
        for shard in self.shards.into_vec() {
            let closed = shard.close().map_err(Error::from);
            if first.is_ok() {
                first = closed;
            }
        }
        first
    }

    fn shard_of(&self, key: &[u8]) -> &Shard {
        &self.shards[shard_index(key, self.shards.len())]
    }
}

/// A point-in-time view of a store: reads see exactly the writes that completed before it was
/// taken, on every shard.
pub struct Snapshot<'s> {
    store: &'s Store,
    snapshot: CoreSnapshot,
}

impl<'s> Snapshot<'s> {
    /// The value of `key` in this view.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.store.shard_of(key).get_at(key, Some(&self.snapshot))?)
    }

    /// Visits the entries with keys in `range` in this view, in key order, until `visit` returns
    /// [`ControlFlow::Break`]; returns how many it visited. As [`Store::scan`]: no copies, every
    /// shard pinned while it runs.
    pub fn scan<K: AsRef<[u8]> + ?Sized, R: RangeBounds<K>>(
        &self,
        range: R,
        visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<usize, Error> {
        let (lo, hi) = (bytes_bound(range.start_bound()), bytes_bound(range.end_bound()));
        Ok(scan::scan(&self.store.shards, &self.snapshot, lo, hi, visit)?)
    }

    /// Every entry in this view, in key order (`.rev()` for descending).
    pub fn iter(&self) -> Range<'s> {
        self.range::<[u8], _>(..)
    }

    /// The entries with keys in `range` in this view, in key order (`.rev()` for descending).
    pub fn range<K: AsRef<[u8]> + ?Sized, R: RangeBounds<K>>(&self, range: R) -> Range<'s> {
        let own = |b: Bound<&K>| bytes_bound(b).map(<[u8]>::to_vec);
        Range::new(
            &self.store.shards,
            self.snapshot.clone(),
            own(range.start_bound()),
            own(range.end_bound()),
        )
    }
}

fn bytes_bound<K: AsRef<[u8]> + ?Sized>(bound: Bound<&K>) -> Bound<&[u8]> {
    bound.map(|k| k.as_ref())
}

/// Which shard owns `key`: a fixed hash (the layout on disk depends on it).
pub(crate) fn shard_index(key: &[u8], shards: usize) -> usize {
    // FNV-1a, then the splitmix64 finalizer so that the high bits depend on every byte.
    let mut h =
        key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (((h >> 32) * shards as u64) >> 32) as usize
}

fn shard_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("shard-{index:04}"))
}

/// A shard's error, with replay failures attributed to its directory.
fn shard_error(path: &Path, e: ShardError) -> Error {
    match e {
        // The data is fine; the configuration is too small for it.
        ShardError::Replay(ReplayError::Refused(e)) => Error::Config {
            knob: "key_bytes_max / value_bytes_max",
            rule: format!("at least what {} holds ({e})", path.display()),
        },
        ShardError::Replay(e) => {
            Error::Corrupt { path: path.to_path_buf(), offset: 0, reason: e.to_string() }
        }
        other => other.into(),
    }
}
