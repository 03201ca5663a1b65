//! The shard's I/O thread: writes sealed fills to their segment files in log order with
//! io_uring, flushes them (fdatasync) for group commits and the `Buffered` interval, advances the
//! durable address, and poisons the log on the first failed write or flush.
//!
//! The thread sleeps in `io_uring_enter` with a read always posted on the writers' doorbell (an
//! eventfd), so a hand-off, a durability request or a completion wakes it, whichever comes first.
//! Group commit: a flush is requested by waiting writers; while one write-and-flush is in flight,
//! the next writers' records gather in the current fill, and the thread seals it (not waiting for
//! it to fill) when the previous flush completes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use super::config::{Faults, LogConfig};
use super::error::IoFailure;
use super::shared::{Fill, Shared};
use crate::dma::DmaBuf;
use crate::segments::{zero_fill, Segments};

const DOORBELL: u64 = 1 << 62;
const WRITE: u64 = 2 << 62;
const FLUSH: u64 = 3 << 62;
const TAG: u64 = 3 << 62;

/// Segments are zero-filled this far ahead of the writes, a chunk at a time.
const ZERO_AHEAD: u64 = 16 << 20;

/// How long after the last durable wait the I/O thread keeps zero-filling ahead.
const DURABLE_USE_MEMORY: Duration = Duration::from_secs(1);

/// A write submitted and not yet completed, in submission (log) order.
struct InFlight {
    seq: u64,
    end: u64,
    len: usize,
    segment: u64,
    done: bool,
}

/// A flush (one fdatasync per segment written since the last one) in flight.
struct Flush {
    target: u64,
    pending: usize,
}

/// The I/O thread's own state.
pub(crate) struct IoThread {
    shared: Arc<Shared>,
    cpu: Option<usize>,
    ring: IoUring,
    segments: Segments,
    direct: bool,
    interval: Duration,
    faults: Faults,
    files: BTreeMap<u64, File>,
    /// Bytes zero-filled at the start of each open segment.
    zeroed: BTreeMap<u64, u64>,
    /// An aligned buffer of zeros for zero-filling.
    zeros: DmaBuf,
    handed: Vec<Fill>,
    ready: BTreeMap<u64, Fill>,
    next_seq: u64,
    in_flight: VecDeque<InFlight>,
    /// The log is written (not necessarily durable) below this address.
    written_end: u64,
    /// End of the last fill submitted: the next fill must start here.
    submitted_end: u64,
    /// The partial block at `submitted_end`, rewritten in front of the next fill.
    carry: Vec<u8>,
    unsynced: BTreeSet<u64>,
    flush: Option<Flush>,
    last_flush: Instant,
    /// When a writer last waited for durability (see [`Self::file`]).
    last_durable_wait: Option<Instant>,
    writes: u64,
    flushes: u64,
    doorbell_buf: Box<[u8; 8]>,
}

impl IoThread {
    /// The thread's state for a log resuming at `start`, whose partial first block holds `carry`.
    pub fn new(
        shared: Arc<Shared>,
        segments: Segments,
        config: &LogConfig,
        direct: bool,
        start: u64,
        carry: Vec<u8>,
    ) -> io::Result<Self> {
        let zeros =
            DmaBuf::new(1 << 20, shared.block).map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        let mut builder = IoUring::builder();
        if config.sqpoll {
            builder.setup_sqpoll(50);
        }
        Ok(Self {
            ring: builder.build(config.ring_depth)?,
            cpu: config.cpu,
            shared,
            segments,
            direct,
            interval: config.flush_interval,
            faults: config.faults,
            files: BTreeMap::new(),
            zeroed: BTreeMap::new(),
            zeros,
            handed: Vec::new(),
            ready: BTreeMap::new(),
            next_seq: 0,
            in_flight: VecDeque::new(),
            written_end: start,
            submitted_end: start,
            carry,
            unsynced: BTreeSet::new(),
            flush: None,
            last_flush: Instant::now(),
            last_durable_wait: None,
            writes: 0,
            flushes: 0,
            doorbell_buf: Box::new([0; 8]),
        })
    }

    /// Runs until the log closes (after its final sync) with no I/O left in flight.
    pub fn run(mut self) {
        if let Some(cpu) = self.cpu {
            pin_to(cpu);
        }
        self.post_doorbell_read();
        loop {
            self.shared.take_handoffs(&mut self.handed);
            for fill in self.handed.drain(..) {
                self.ready.insert(fill.seq, fill);
            }
            if self.shared.poisoned().is_none() {
                self.submit_ready();
                self.group_commit();
            }
            let idle = self.in_flight.iter().all(|w| w.done) && self.flush.is_none();
            if idle {
                self.close_old_files();
                if self.shared.closing.load(Ordering::Acquire) {
                    break;
                }
            }
            self.wait();
            self.reap();
        }
    }

    /// Submits ready fills in log order. A fill that rewrites the previous fill's last block
    /// waits until no write is in flight (two writes of one block must not race).
    fn submit_ready(&mut self) {
        while let Some(fill) = self.ready.get(&self.next_seq).copied() {
            let lead = (fill.base % self.shared.block as u64) as usize;
            if lead != 0 && !self.in_flight.is_empty() {
                return;
            }
            if self.in_flight.len() + 2 >= self.ring.params().sq_entries() as usize {
                return;
            }
            self.ready.remove(&fill.seq);
            self.next_seq += 1;
            if let Err(failure) = self.submit_write(fill, lead, false) {
                self.shared.poison(failure);
                return;
            }
        }
    }

    /// Writes `fill`. With `link`, the flush queued right after it is linked behind it: the
    /// kernel starts the fdatasync when the write completes, without a round trip through this
    /// thread.
    fn submit_write(&mut self, fill: Fill, lead: usize, link: bool) -> Result<(), IoFailure> {
        assert_eq!(fill.base, self.submitted_end, "fills must be written in log order");
        let block = self.shared.block;
        let segment = self.segments.index_of(fill.base);
        let end = lead + fill.filled as usize;
        let len = end.next_multiple_of(block);
        let offset = fill.base - lead as u64 - self.segments.start_of(segment);
        let fd = self.file(segment, offset + len as u64)?.as_raw_fd();
        let slot = &self.shared.slots[fill.slot];
        // SAFETY: the fill was handed off: every claim in it was released, and its buffer is
        // not reopened before this write completes. `0..lead` and `end..len` are outside every
        // claim of this fill.
        unsafe {
            slot.bytes(0, lead).copy_from_slice(&self.carry[..lead]);
            slot.bytes(end, len - end).fill(0);
        }
        self.carry.clear();
        // SAFETY: as above.
        self.carry.extend_from_slice(unsafe { slot.bytes(end - end % block, end % block) });
        self.submitted_end = fill.base + fill.filled;
        self.in_flight.push_back(InFlight {
            seq: fill.seq,
            end: self.submitted_end,
            len,
            segment,
            done: false,
        });
        self.unsynced.insert(segment);
        self.writes += 1;
        if self.faults.fail_write == Some(self.writes) {
            self.in_flight.back_mut().unwrap().done = true;
            return Err(self.failure("write segment", segment, injected()));
        }
        let flags = if link { squeue::Flags::IO_LINK } else { squeue::Flags::empty() };
        let entry = opcode::Write::new(types::Fd(fd), slot.as_ptr(), len as u32)
            .offset(offset)
            .build()
            .flags(flags)
            .user_data(WRITE | fill.seq);
        self.push(&entry);
        let counters = &self.shared.counters;
        counters.writes.fetch_add(1, Ordering::Relaxed);
        counters.device_bytes.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes what was written when a writer waits for durability (or a `Buffered` interval
    /// ran out); seals the current fill first when what is wanted is still in it.
    fn group_commit(&mut self) {
        if self.flush.is_some() {
            return;
        }
        let durable = self.shared.durable.load(Ordering::Acquire);
        if self.shared.buffered_pending.load(Ordering::Acquire) && self.last_flush.elapsed() >= self.interval
        {
            // Cleared before reading the end: a Buffered write after this sets it again. The
            // request stays until met, like a Sync writer's.
            self.shared.buffered_pending.store(false, Ordering::SeqCst);
            self.shared.sync_wanted.fetch_max(self.shared.claimed_end(), Ordering::AcqRel);
        }
        let want = self.shared.sync_wanted.load(Ordering::Acquire);
        if want <= durable {
            return;
        }
        if self.written_end > durable && (self.written_end >= want || !self.in_flight.is_empty()) {
            // Flush what is written now; later records go with the next flush.
            if let Err(failure) = self.submit_flush(None) {
                self.shared.poison(failure);
            }
        } else if self.in_flight.is_empty() && self.ready.is_empty() && self.shared.seal_for_commit() {
            self.shared.counters.group_commits.fetch_add(1, Ordering::Relaxed);
            self.commit_sealed();
        }
    }

    /// Writes the fill just sealed for a group commit with its flush linked behind it, when
    /// nobody was left copying into it (otherwise the last writer out hands it over and it
    /// takes the ordinary path).
    fn commit_sealed(&mut self) {
        self.shared.take_handoffs(&mut self.handed);
        for fill in self.handed.drain(..) {
            self.ready.insert(fill.seq, fill);
        }
        // Only when the sealed fill is the one fill to write (with more buffers, an earlier
        // fill may have been handed over meanwhile: then the ordinary path writes both).
        if self.ready.len() != 1 || !self.in_flight.is_empty() {
            return self.submit_ready();
        }
        let Some(fill) = self.ready.remove(&self.next_seq) else { return };
        self.next_seq += 1;
        let lead = (fill.base % self.shared.block as u64) as usize;
        let segment = self.segments.index_of(fill.base);
        let linked = self.submit_write(fill, lead, true).and_then(|()| self.submit_flush(Some(segment)));
        if let Err(failure) = linked {
            self.shared.poison(failure);
        }
    }

    /// Flushes every segment written since the last flush; with `linked`, that segment's flush
    /// goes right behind the write just queued (linked to it) and covers it.
    fn submit_flush(&mut self, linked: Option<u64>) -> Result<(), IoFailure> {
        let target = if linked.is_some() { self.submitted_end } else { self.written_end };
        self.last_flush = Instant::now();
        self.flushes += 1;
        // Every segment written since its last flush, busy or not: the target covers only
        // completed writes, and an fdatasync issued now covers those.
        let mut written: Vec<u64> = linked.into_iter().collect();
        written.extend(self.unsynced.iter().copied().filter(|&s| Some(s) != linked));
        let busy: BTreeSet<u64> = self.in_flight.iter().map(|w| w.segment).collect();
        if self.faults.fail_flush == Some(self.flushes) {
            return Err(self.failure("flush segment", written.first().copied().unwrap_or(0), injected()));
        }
        for &segment in &written {
            let fd = self.file(segment, 0)?.as_raw_fd();
            let entry = opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(FLUSH | segment);
            self.push(&entry);
            // A write still in flight there is not covered: the segment stays unflushed. (The
            // linked write is: its flush runs after it.)
            if Some(segment) == linked || !busy.contains(&segment) {
                self.unsynced.remove(&segment);
            }
        }
        self.shared.counters.flushes.fetch_add(1, Ordering::Relaxed);
        self.shared.counters.syncs.fetch_add(written.len() as u64, Ordering::Relaxed);
        self.flush = Some(Flush { target, pending: written.len() });
        if written.is_empty() {
            self.flush_done();
        }
        Ok(())
    }

    fn flush_done(&mut self) {
        let flush = self.flush.take().expect("a flush in flight");
        assert!(self.written_end >= flush.target, "flushed past the written log");
        self.shared.advance_durable(flush.target);
    }

    /// Sleeps until a completion (or the doorbell) arrives, or a `Buffered` interval runs out.
    fn wait(&mut self) {
        let buffered = self.shared.buffered_pending.load(Ordering::Acquire);
        let result = if buffered && self.flush.is_none() && self.shared.poisoned().is_none() {
            let left = self.interval.saturating_sub(self.last_flush.elapsed());
            let ts = types::Timespec::new().sec(left.as_secs()).nsec(left.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submit_and_wait(1)
        };
        match result {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
            Err(e) => panic!("io_uring_enter failed: {e}"),
        }
    }

    fn reap(&mut self) {
        let completions: Vec<(u64, i32)> =
            self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (data, result) in completions {
            if data & TAG != DOORBELL {
                self.shared.counters.completions.fetch_add(1, Ordering::Relaxed);
            }
            match data & TAG {
                DOORBELL => self.post_doorbell_read(),
                WRITE => self.write_done(data & !TAG, result),
                FLUSH => self.flush_part_done(data & !TAG, result),
                _ => unreachable!("unknown completion {data:#x}"),
            }
        }
    }

    fn write_done(&mut self, seq: u64, result: i32) {
        let write = self.in_flight.iter_mut().find(|w| w.seq == seq).expect("a write in flight");
        write.done = true;
        let (len, segment) = (write.len, write.segment);
        if result < 0 {
            let failure = self.failure("write segment", segment, io::Error::from_raw_os_error(-result));
            return self.shared.poison(failure);
        }
        if result as usize != len {
            let error = io::Error::new(io::ErrorKind::WriteZero, format!("wrote {result} of {len} bytes"));
            return self.shared.poison(self.failure("write segment", segment, error));
        }
        let mut advanced = false;
        while self.in_flight.front().is_some_and(|w| w.done) {
            let write = self.in_flight.pop_front().unwrap();
            self.written_end = write.end;
            self.shared.written_fills.fetch_add(1, Ordering::AcqRel);
            advanced = true;
        }
        if advanced {
            self.shared.notify();
        }
    }

    fn flush_part_done(&mut self, segment: u64, result: i32) {
        let flush = self.flush.as_mut().expect("a flush in flight");
        flush.pending -= 1;
        let last = flush.pending == 0;
        if result < 0 {
            let failure = self.failure("flush segment", segment, io::Error::from_raw_os_error(-result));
            self.shared.poison(failure);
        }
        if last {
            if self.shared.poisoned().is_some() {
                // Never durable: a failed flush proves nothing about what it covered.
                self.flush = None;
            } else {
                self.flush_done();
            }
        }
    }

    fn post_doorbell_read(&mut self) {
        let entry =
            opcode::Read::new(types::Fd(self.shared.doorbell.fd()), self.doorbell_buf.as_mut_ptr(), 8)
                .build()
                .user_data(DOORBELL);
        self.push(&entry);
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points to (a fill's buffer, the doorbell's 8 bytes)
            // outlives its completion: fills are not reopened before their write completes and
            // the doorbell buffer lives as long as the thread.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            self.ring.submit().expect("io_uring submit");
        }
    }

    /// The segment's file, open for writing; creates the segment the first time the log
    /// reaches it. While writers wait for durability (within the last second), zero-fills a
    /// chunk ahead of `end`, so that their fdatasyncs find written extents; otherwise a
    /// zero-fill would only double the bytes written (a `Buffered` flush every 10 ms converts
    /// extents cheaply), so the writes extend the file directly.
    fn file(&mut self, segment: u64, end: u64) -> Result<&File, IoFailure> {
        if !self.files.contains_key(&segment) {
            self.open_segment(segment)?;
        }
        if self.shared.durable_waits_seen.swap(false, Ordering::Relaxed) {
            self.last_durable_wait = Some(Instant::now());
        }
        let durable_use = self.last_durable_wait.is_some_and(|at| at.elapsed() < DURABLE_USE_MEMORY);
        let ready = self.zeroed[&segment];
        if ready < end && !durable_use {
            // What this write covers counts as written: a later zero-fill starts past it.
            self.zeroed.insert(segment, end);
        } else if ready < end {
            let to = (end + ZERO_AHEAD).next_multiple_of(ZERO_AHEAD).min(self.segments.segment_bytes());
            // Through the same (direct) descriptor: zeros that went through the page cache
            // would make every later direct write there invalidate cached pages first.
            let fill = zero_fill(&self.files[&segment], &self.zeros, ready, to);
            fill.map_err(|e| self.failure("zero-fill segment", segment, e))?;
            self.shared.counters.zeroed_bytes.fetch_add(to - ready, Ordering::Relaxed);
            self.zeroed.insert(segment, to);
        }
        Ok(&self.files[&segment])
    }

    fn open_segment(&mut self, segment: u64) -> Result<(), IoFailure> {
        let path = self.segments.path(segment);
        if !path.exists() {
            self.segments.create(segment, 0).map_err(|e| self.failure("create segment", segment, e))?;
        }
        let mut options = OpenOptions::new();
        options.write(true);
        if self.direct {
            options.custom_flags(libc::O_DIRECT);
        }
        let file = options.open(&path).map_err(|e| self.failure("open segment", segment, e))?;
        let len = file.metadata().map_err(|e| self.failure("stat segment", segment, e))?.len();
        self.zeroed.insert(segment, len);
        self.files.insert(segment, file);
        Ok(())
    }

    /// Closes the files of segments behind the newest two that have nothing left to flush.
    /// Only when no I/O is in flight: a queued entry names its file by descriptor.
    fn close_old_files(&mut self) {
        let Some(&newest) = self.files.keys().next_back() else { return };
        let unsynced = &self.unsynced;
        self.files.retain(|&s, _| s + 1 >= newest || unsynced.contains(&s));
        let files = &self.files;
        self.zeroed.retain(|s, _| files.contains_key(s));
    }

    fn failure(&self, op: &'static str, segment: u64, source: io::Error) -> IoFailure {
        IoFailure { op, path: self.segments.path(segment), source }
    }
}

/// Pins the calling thread to `cpu` (best effort: a cpuset that excludes it leaves the thread
/// where the scheduler puts it).
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn injected() -> io::Error {
    io::Error::other("injected I/O failure (test fault injection)")
}
