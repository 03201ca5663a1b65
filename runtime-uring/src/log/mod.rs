//! One shard's log: an append-only sequence of frames in a u64 address space, stored as
//! fixed-size segment files under a two-copy superblock, written through double-buffered
//! (or more) aligned write buffers by the shard's io_uring I/O thread.
//!
//! Writers call [`Log::append`] from any thread: one CAS claims space in the current buffer, the
//! record is encoded in place, and the buffer goes to the I/O thread when it fills (or when a
//! `Sync` writer needs it on disk now: group commit). The I/O thread writes buffers in log order
//! with O_DIRECT, flushes with fdatasync, and advances the durable address. Opening a log replays
//! it ([`crate::recovery`]), cuts a torn tail, and resumes writing in a new epoch.
//!
//! Byte layouts: `docs/log-format.md`; the decisions are in `helio_core::log`.

mod config;
mod engine;
mod error;
mod inline;
mod io;
mod shared;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use helio_core::log::fragment::{pieces, write_fragment, Assembler, FRAGMENT_HEADER_BYTES};
use helio_core::log::frame::{frame_bytes, Kind, Op, Stamp, EPOCH_MAX};
use helio_core::log::superblock::Superblock;
use helio_core::log::writer::{Writer, WriterConfig};

pub use config::{Durability, Faults, LogConfig, LogConfigError};
pub use error::{IoFailure, LogError};

use crate::disk::DiskRef;
use crate::probe::{probe, DirectIo};
use crate::recovery::{replay, CorruptReason, RecoveryError, Replayed, ScanLimits};
use crate::segments::Segments;
use crate::superblock_file::{SuperblockFile, SuperblockFileError};
use inline::Inline;
use shared::{Driver, Shared};

/// What opening a log found and did.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// The replay's result: where the log ends, frames and bytes read, a torn tail cut.
    pub replayed: Replayed,
    /// Records handed to the caller (large records count once).
    pub records: u64,
    /// Time the replay took.
    pub elapsed: Duration,
    /// Whether the log was created by this open.
    pub created: bool,
}

/// A point-in-time copy of a log's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records appended since open.
    pub records: u64,
    /// Payload bytes of those records (what users wrote).
    pub payload_bytes: u64,
    /// Log bytes they took: frame headers, padding and fragments included.
    pub log_bytes: u64,
    /// Bytes written to segment files (whole blocks, partial blocks rewritten).
    pub device_bytes: u64,
    /// Zeros written ahead of the log into its segments (see [`crate::segments`]).
    pub zeroed_bytes: u64,
    /// Segment writes submitted.
    pub writes: u64,
    /// Flushes submitted (each one fdatasync per segment written since the last).
    pub flushes: u64,
    /// fdatasyncs submitted.
    pub syncs: u64,
    /// Writes and flushes completed.
    pub completions: u64,
    /// Buffers sealed early for a group commit.
    pub group_commits: u64,
    /// Buffer fills opened.
    pub fills: u64,
    /// The log is durable below this address.
    pub durable_lsn: u64,
    /// Whether segment files are written with O_DIRECT (false: through the page cache).
    pub direct_io: bool,
}

/// One shard's log, open for appending. Dropping it closes it (errors ignored: call
/// [`Log::close`] to see them).
pub struct Log {
    shared: Arc<Shared>,
    /// The I/O thread (`None` inside where the log is driven inline); `None` once closed.
    io: Mutex<Option<Option<JoinHandle<()>>>>,
    superblock: Mutex<SuperblockFile>,
    segments: Segments,
    /// Serializes records too large for one buffer (their pieces must not interleave).
    large: Mutex<()>,
    direct_io: bool,
    dir: PathBuf,
}

impl Log {
    /// Opens the log in `dir` (creating the directory and the log if there is none), replays it
    /// from its head, handing every record to `visit` in log order (its kind and payload; pad
    /// frames are skipped and fragmented records come whole), and starts the I/O thread. A torn
    /// tail is cut; corruption is an error and changes nothing.
    pub fn open(
        dir: &Path,
        config: &LogConfig,
        visit: impl FnMut(Kind, &[u8]),
    ) -> Result<(Self, Recovered), LogError> {
        Self::prepare(dir, config)?.replay(visit)
    }

    /// The first half of [`Log::open`]: reads (or creates) the superblock, so that the caller
    /// can see where the log starts before replaying it.
    pub fn prepare<'c>(dir: &Path, config: &'c LogConfig) -> Result<Opening<'c>, LogError> {
        config.validate().map_err(LogError::Config)?;
        let started = Instant::now();
        config.disk.create_dir_all(dir).map_err(|source| LogError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let (superblock, created) = open_superblock(dir, config)?;
        Ok(Opening { dir: dir.to_path_buf(), config, superblock, created, started })
    }

    /// Reads the log in `dir` without changing anything (no epoch, no writes, no thread):
    /// every record, in log order, as [`Log::open`] would replay it. For checking a log and
    /// for tests. `config` gives the geometry the log was written with (how far past a damaged frame to
    /// look for proof of corruption).
    pub fn read(
        dir: &Path,
        config: &LogConfig,
        mut visit: impl FnMut(Kind, &[u8]),
    ) -> Result<Replayed, LogError> {
        Self::read_from(dir, config, 0, |_, kind, payload| visit(kind, payload))
    }

    /// [`Log::read`] from `start` (or the head, if that is later): a frame boundary no large
    /// record straddles ([`Log::boundary`]). `visit` also gets each record's address (its
    /// first piece's, for a large one).
    pub fn read_from(
        dir: &Path,
        config: &LogConfig,
        start: u64,
        visit: impl FnMut(u64, Kind, &[u8]),
    ) -> Result<Replayed, LogError> {
        let sb = SuperblockFile::open_on(&config.disk, dir).map_err(LogError::Superblock)?.current();
        let segments = Segments::on(config.disk.clone(), dir, sb.segment_bytes);
        let from = Superblock { head: sb.head.max(start), ..sb };
        replay_records(&segments, &from, config.scan_limits(), visit)
    }

    /// The superblock of the log in `dir`, read without changing anything.
    pub fn superblock_of(dir: &Path) -> Result<Superblock, LogError> {
        Ok(SuperblockFile::open(dir).map_err(LogError::Superblock)?.current())
    }

    /// [`Log::superblock_of`] on the disk `config` names.
    pub fn superblock_on(dir: &Path, config: &LogConfig) -> Result<Superblock, LogError> {
        Ok(SuperblockFile::open_on(&config.disk, dir).map_err(LogError::Superblock)?.current())
    }

    /// Appends an op record (a put or a delete) with the given durability; returns the log
    /// address just past it.
    pub fn append_op(&self, op: &Op<'_>, durability: Durability) -> Result<u64, LogError> {
        let len = op.payload_len();
        if frame_bytes(len) <= self.max_frame() {
            let end = self.append_with(op.kind(), len, |out| op.write_payload(out))?;
            return self.settle(end, durability);
        }
        let mut payload = vec![0; len];
        op.write_payload(&mut payload);
        self.append(op.kind(), &payload, durability)
    }

    /// Appends a record of `kind` (any but `Pad` and `Fragment`) with the given durability; returns the
    /// log address just past it. Records larger than half a write buffer are written as
    /// fragments and come back whole on replay.
    pub fn append(&self, kind: Kind, payload: &[u8], durability: Durability) -> Result<u64, LogError> {
        let (_, end) = self.append_located(kind, payload)?;
        self.settle(end, durability)
    }

    /// Appends a record as [`Log::append`] does (without waiting for any durability); returns
    /// its address (its first piece's, for a large record) and the address just past it.
    pub fn append_located(&self, kind: Kind, payload: &[u8]) -> Result<(u64, u64), LogError> {
        assert!(!matches!(kind, Kind::Pad | Kind::Fragment), "{kind:?} frames are the log's own");
        if frame_bytes(payload.len()) <= self.max_frame() {
            let end = self.append_with(kind, payload.len(), |out| out.copy_from_slice(payload))?;
            return Ok((end - frame_bytes(payload.len()) as u64, end));
        }
        let _one_at_a_time = self.large.lock().unwrap();
        let max_payload = self.max_frame() - frame_bytes(0);
        let (mut start, mut end) = (None, 0);
        for (offset, len) in pieces(payload.len(), max_payload) {
            end = self.append_with(Kind::Fragment, FRAGMENT_HEADER_BYTES + len, |out| {
                write_fragment(out, kind, payload, offset, len)
            })?;
            start.get_or_insert(end - frame_bytes(FRAGMENT_HEADER_BYTES + len) as u64);
        }
        Ok((start.expect("a large record has pieces"), end))
    }

    /// The end of the log at a moment when no large record is half appended: a place recovery
    /// may start reading at without meeting a record's later pieces before its first.
    pub fn boundary(&self) -> u64 {
        let _no_large_record = self.large.lock().unwrap();
        self.appended()
    }

    /// Largest frame that goes into a buffer whole.
    fn max_frame(&self) -> usize {
        self.shared.buffer_bytes as usize / 2
    }

    fn append_with(
        &self,
        kind: Kind,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64, LogError> {
        let len = frame_bytes(payload_len);
        let claim = self.shared.claim(len)?;
        let end = claim.lsn + len as u64;
        claim.write(kind, payload_len, fill);
        let counters = &self.shared.counters;
        counters.records.add(1);
        counters.payload_bytes.add(payload_len as u64);
        counters.log_bytes.add(len as u64);
        Ok(end)
    }

    /// Gives the records appended up to `end` the durability asked for: nothing more for
    /// `None`, a flush within the interval for `Buffered`, and for `Sync` returns only once
    /// they are durable. Returns `end`.
    pub fn settle(&self, end: u64, durability: Durability) -> Result<u64, LogError> {
        match durability {
            Durability::None => {}
            Durability::Buffered => self.shared.want_buffered_flush(),
            Durability::Sync => self.shared.wait_durable(end, true)?,
        }
        Ok(end)
    }

    /// Asks for a flush that makes the log durable up to `end`, without waiting for it: a
    /// caller that needs several logs durable asks each first, then waits for each
    /// ([`Log::wait_durable`]), so that their flushes overlap.
    pub fn request_durable(&self, end: u64) {
        self.shared.request_durable(end);
    }

    /// Waits until the log is durable up to `end`. `user`: a write or `sync` waits (which
    /// turns on zero-filling ahead of the writes), not the log's own upkeep.
    pub fn wait_durable(&self, end: u64, user: bool) -> Result<(), LogError> {
        self.shared.wait_durable(end, user)
    }

    /// Waits until the log is durable up to `end`, for the log's own upkeep (entries the cleaner
    /// moved): unlike a `Sync` write or [`Log::sync`] it does not mark the log as in use for
    /// durable writes, which would turn on zero-filling ahead of the writes.
    pub fn wait_durable_for_upkeep(&self, end: u64) -> Result<(), LogError> {
        self.shared.wait_durable(end, false)
    }

    /// Makes every record appended before the call durable.
    pub fn sync(&self) -> Result<(), LogError> {
        self.shared.check_poison()?;
        self.shared.wait_durable(self.shared.claimed_end(), true)
    }

    /// End of every record claimed so far (with no append in progress: of every record
    /// appended).
    pub fn appended(&self) -> u64 {
        self.shared.claimed_end()
    }

    /// The superblock as last written.
    pub fn superblock(&self) -> Superblock {
        self.superblock.lock().unwrap().current()
    }

    /// Moves the head to `head`, a frame boundary of the durable log (whatever was live below it
    /// must be durable above it). Returns the segments now wholly below
    /// the head: the caller deletes them ([`Segments::remove`]) once no reader can be inside.
    pub fn advance_head(&self, head: u64) -> Result<Vec<u64>, LogError> {
        self.shared.check_poison()?;
        let mut superblock = self.superblock.lock().unwrap();
        let sb = superblock.current();
        let durable = self.durable_lsn();
        assert!(sb.head <= head && head <= durable, "head {head} moved back or past the durable log");
        let next = sb.next(head, sb.tail.max(durable));
        superblock.store(next).map_err(LogError::Superblock)?;
        let io = |source| LogError::Io { op: "list segments in", path: self.dir.clone(), source };
        let first_live = self.segments.index_of(head);
        Ok(self.segments.list().map_err(io)?.into_iter().filter(|&i| i < first_live).collect())
    }

    /// The log is durable below this address.
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// The failure that poisoned the log, if one did.
    pub fn poisoned(&self) -> Option<Arc<IoFailure>> {
        self.shared.poisoned().cloned()
    }

    /// Whether the log is closed (it takes no more appends).
    pub fn is_closed(&self) -> bool {
        self.io.lock().unwrap().is_none()
    }

    /// Whether the log is on the real disk (driven by its io_uring I/O thread), not a
    /// simulated one (driven in the waiting threads).
    pub fn disk_is_real(&self) -> bool {
        self.shared.engine().is_some()
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's counters now.
    pub fn stats(&self) -> LogStats {
        let c = &self.shared.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        LogStats {
            records: c.records.sum(),
            payload_bytes: c.payload_bytes.sum(),
            log_bytes: c.log_bytes.sum(),
            device_bytes: get(&c.device_bytes),
            zeroed_bytes: get(&c.zeroed_bytes),
            writes: get(&c.writes),
            flushes: get(&c.flushes),
            syncs: get(&c.syncs),
            completions: get(&c.completions),
            group_commits: get(&c.group_commits),
            fills: get(&c.fills),
            durable_lsn: self.durable_lsn(),
            direct_io: self.direct_io,
        }
    }

    /// Makes everything durable, records the durable end in the superblock, and stops the I/O
    /// thread. On error (a poisoned log) the thread is still stopped.
    pub fn close(self) -> Result<(), LogError> {
        self.shut_down()
    }

    /// [`Log::close`] for an owner that only has a reference; later appends fail.
    pub(crate) fn shut_down(&self) -> Result<(), LogError> {
        let Some(handle) = self.io.lock().unwrap().take() else { return Ok(()) };
        let synced = self.sync();
        self.shared.closing.store(true, Ordering::Release);
        self.shared.ring();
        if let Some(handle) = handle {
            handle.join().expect("the log's I/O thread panicked");
        }
        synced?;
        let mut superblock = self.superblock.lock().unwrap();
        let sb = superblock.current();
        let tail = self.durable_lsn().max(sb.tail);
        superblock.store(sb.closed(tail)).map_err(LogError::Superblock)
    }

    /// The segment files' naming and geometry.
    pub fn segments(&self) -> &Segments {
        &self.segments
    }
}

/// A log whose superblock has been read, not yet replayed (see [`Log::prepare`]).
pub struct Opening<'c> {
    dir: PathBuf,
    config: &'c LogConfig,
    superblock: SuperblockFile,
    created: bool,
    started: Instant,
}

impl Opening<'_> {
    /// The superblock the log will be replayed from.
    pub fn superblock(&self) -> Superblock {
        self.superblock.current()
    }

    /// Replays the log, handing every record to `visit`, and starts writing (see [`Log::open`]).
    pub fn replay(self, mut visit: impl FnMut(Kind, &[u8])) -> Result<(Log, Recovered), LogError> {
        self.replay_from(0, |_, kind, payload| visit(kind, payload))
    }

    /// [`Opening::replay`] from `start` (or the head, if that is later), a place
    /// [`Log::boundary`] gave: what lies before it is known to the caller already. `visit`
    /// also gets each record's address.
    pub fn replay_from(
        self,
        start: u64,
        mut visit: impl FnMut(u64, Kind, &[u8]),
    ) -> Result<(Log, Recovered), LogError> {
        let Opening { dir, config, mut superblock, created, started } = self;
        let dir = dir.as_path();
        let io = |op, source| LogError::Io { op, path: dir.to_path_buf(), source };
        let sb = superblock.current();
        let segments = Segments::on(config.disk.clone(), dir, sb.segment_bytes);
        let mut records = 0;
        let from = Superblock { head: sb.head.max(start), ..sb };
        let replayed = replay_records(&segments, &from, config.scan_limits(), |lsn, kind, payload| {
            records += 1;
            visit(lsn, kind, payload);
        })?;
        // What was replayed may never have been flushed (the process died before its flush,
        // or the device still holds it in a volatile cache): make it durable before the log
        // takes writes, whose frames vouch for everything below the durable address. (What
        // lies before `start` was durable before the caller learned it.)
        sync_replayed(&segments, from.head, replayed.end_lsn)?;
        // So may the directory entries of the segments: one created by a process that died (or
        // failed) before syncing the directory would be written into now, its data synced, and
        // its name still lost at a power loss.
        config.disk.sync_dir(dir).map_err(|e| io("sync the directory of", e))?;
        let elapsed = started.elapsed();
        // New frames carry the next epoch, so that frames beyond a cut tail read as stale.
        let epoch = sb.epoch + 1;
        if epoch > EPOCH_MAX {
            return Err(io("reopen log in", std::io::Error::other("the log was recovered 2^24 times")));
        }
        let next = Superblock { epoch, ..sb.next(sb.head, sb.tail.max(replayed.end_lsn)) };
        superblock.store(next).map_err(LogError::Superblock)?;

        let direct = direct_io_block(dir, config)?;
        let block = direct.unwrap_or(4096);
        let start = replayed.end_lsn;
        let carry = read_carry(&segments, start, block)?;
        let writer = Writer::new(
            WriterConfig {
                block,
                segment_bytes: sb.segment_bytes,
                flush_interval_nanos: config.flush_interval.as_nanos() as u64,
                max_in_flight: io::IoThread::max_in_flight(config.ring_depth),
                faults: config.faults,
            },
            start,
            carry,
        );
        let stamp = Stamp { salt: sb.salt, epoch };
        // The real file system gets an io_uring I/O thread; any other disk is driven inline.
        let real = config.disk.is_real();
        let driver = if real {
            let engine = engine::Engine::new(writer, segments.clone(), direct.is_some(), block)
                .map_err(|e| io("allocate write buffers for", e))?;
            Driver::Ring(Mutex::new(engine))
        } else {
            let seed = config.disk.random_u64().map_err(|e| io("draw a seed for", e))?;
            Driver::Inline(
                Inline::new(writer, segments.clone(), seed)
                    .map_err(|e| io("allocate write buffers for", e))?,
            )
        };
        let shared =
            Shared::new(stamp, segments.clone(), config.buffer_bytes, config.buffers, block, start, driver)
                .map_err(|e| io("allocate write buffers for", e))?;
        let shared = Arc::new(shared);
        let handle = if real { Some(spawn_io_thread(dir, config, &shared)?) } else { None };
        let log = Log {
            shared,
            io: Mutex::new(Some(handle)),
            superblock: Mutex::new(superblock),
            segments,
            large: Mutex::new(()),
            direct_io: direct.is_some(),
            dir: dir.to_path_buf(),
        };
        Ok((log, Recovered { replayed, records, elapsed, created }))
    }
}

/// The direct-I/O block size where the log writes with O_DIRECT, `None` for the page cache.
fn direct_io_block(dir: &Path, config: &LogConfig) -> Result<Option<usize>, LogError> {
    if !config.direct_io || !config.disk.is_real() {
        return Ok(None);
    }
    let caps = probe(dir).map_err(|e| LogError::Io {
        op: "probe I/O support in",
        path: dir.to_path_buf(),
        source: e.source,
    })?;
    Ok(match &caps.direct_io {
        DirectIo::Supported { .. } => caps.direct_io.align(),
        DirectIo::Refused { reason } => {
            ::log::warn!(
                "{}: O_DIRECT refused ({reason}); the log writes through the page cache",
                dir.display()
            );
            None
        }
    })
}

/// Starts the io_uring I/O thread driving the shared engine.
fn spawn_io_thread(dir: &Path, config: &LogConfig, shared: &Arc<Shared>) -> Result<JoinHandle<()>, LogError> {
    let io = |op, source| LogError::Io { op, path: dir.to_path_buf(), source };
    let thread = io::IoThread::new(shared.clone(), config).map_err(|e| io("set up io_uring for", e))?;
    let on_panic = (shared.clone(), dir.to_path_buf());
    std::thread::Builder::new()
        .name("helio-log-io".into())
        .spawn(move || {
            // A panic here (a bug) must not leave writers parked forever: poison instead.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.run())).is_err() {
                let (shared, path) = on_panic;
                let source = std::io::Error::other("the log's I/O thread panicked");
                shared.poison(IoFailure { op: "run the I/O thread of", path, source });
            }
        })
        .map_err(|e| io("start the I/O thread for", e))
}

/// fdatasyncs every segment holding the log from `head` to `end`.
fn sync_replayed(segments: &Segments, head: u64, end: u64) -> Result<(), LogError> {
    if end == head {
        return Ok(());
    }
    for index in segments.index_of(head)..=segments.index_of(end - 1) {
        let path = segments.path(index);
        let io = |op, source| LogError::Io { op, path: path.clone(), source };
        if let Some(file) = segments.open(index).map_err(|e| io("open segment", e))? {
            file.sync_data().map_err(|e| io("sync replayed segment", e))?;
        }
    }
    Ok(())
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// Opens the superblock in `dir`, or creates a log there if the directory has none. Segment
/// files without a superblock are refused (creating a new log over them would lose them).
fn open_superblock(dir: &Path, config: &LogConfig) -> Result<(SuperblockFile, bool), LogError> {
    let disk: &DiskRef = &config.disk;
    match SuperblockFile::open_on(disk, dir) {
        Ok(file) => Ok((file, false)),
        Err(SuperblockFileError::Io { source, path, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            let listed = Segments::on(disk.clone(), dir, config.segment_bytes).list();
            let orphans = listed.map_err(|source| LogError::Io {
                op: "list segments in",
                path: dir.to_path_buf(),
                source,
            })?;
            if !orphans.is_empty() {
                let error = helio_core::log::superblock::SuperblockError::Corrupt;
                return Err(LogError::Superblock(SuperblockFileError::Format { path, error }));
            }
            let salt = disk.random_u64().map_err(|source| LogError::Io {
                op: "draw a salt for",
                path: dir.to_path_buf(),
                source,
            })?;
            let first = Superblock {
                generation: 0,
                head: 0,
                tail: 0,
                segment_bytes: config.segment_bytes,
                salt,
                epoch: 0,
                clean: false,
            };
            Ok((SuperblockFile::create_on(disk, dir, first).map_err(LogError::Superblock)?, true))
        }
        Err(e) => Err(LogError::Superblock(e)),
    }
}

/// Replays the log, putting fragmented records back together.
fn replay_records(
    segments: &Segments,
    sb: &Superblock,
    limits: ScanLimits,
    mut visit: impl FnMut(u64, Kind, &[u8]),
) -> Result<Replayed, LogError> {
    let mut assembler = Assembler::new();
    let mut bad = None;
    // Where the large record being assembled starts (its first piece).
    let mut first_piece = 0;
    let replayed = replay(segments, sb, limits, |frame| match frame.kind {
        Kind::Pad => {}
        Kind::Fragment => {
            if fragment_offset(frame.payload) == Some(0) {
                first_piece = frame.lsn;
            }
            match assembler.push(frame) {
                Ok(Some((kind, payload))) => visit(first_piece, kind, payload),
                Ok(None) => {}
                Err(e) => {
                    bad.get_or_insert(e.lsn);
                }
            }
        }
        kind => visit(frame.lsn, kind, frame.payload),
    })
    .map_err(LogError::Recovery)?;
    if let Some(lsn) = bad {
        return Err(LogError::Recovery(RecoveryError::corrupt_at(segments, lsn, CorruptReason::Malformed)));
    }
    Ok(replayed)
}

/// The offset within its record of a fragment's piece, if the payload is long enough to say.
fn fragment_offset(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(16..24)?.try_into().ok()?))
}

/// The bytes of the partial block the log resumes in (rewritten, with new frames after them).
fn read_carry(segments: &Segments, start: u64, block: usize) -> Result<Vec<u8>, LogError> {
    let lead = (start % block as u64) as usize;
    let mut carry = vec![0; lead];
    if lead > 0 {
        let index = segments.index_of(start);
        let offset = start - lead as u64 - segments.start_of(index);
        segments.read(index, &mut carry, offset).map_err(|source| LogError::Io {
            op: "read segment",
            path: segments.path(index),
            source,
        })?;
    }
    Ok(carry)
}
