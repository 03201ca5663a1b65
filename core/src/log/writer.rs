//! The log writer's decisions, without I/O: which sealed fill to write next and where, the
//! partial block carried in front of a fill, when to flush (group commit, the `Buffered`
//! interval), how far the log is durable, when to zero-fill a segment ahead of the writes, and
//! poisoning on the first failure.
//!
//! A driver executes the [`Io`] the writer asks for ([`Writer::poll`]) and reports completions
//! ([`Writer::written`], [`Writer::flushed`], and for the synchronous steps [`Writer::opened`]
//! and [`Writer::zeroed`]): the io_uring I/O thread in production, a simulated disk in tests.
//! The write buffers and the writers' requests live in memory the writer reaches through
//! [`Buffers`] (the runtime's buffer rotation, whose claims are [`super::buffer`]'s state words).
//!
//! What the writer guarantees, which recovery's torn-versus-corrupt rule rests on: the durable
//! address only moves over a contiguous prefix of the log that was written and then flushed,
//! and always to the end of a fill (a frame boundary); after the first failed or short write or
//! flush it never moves again.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

/// Segments are zero-filled this far ahead of the writes, a chunk at a time, while writers wait
/// for durability (writing into unwritten extents makes every fdatasync convert them).
pub const ZERO_AHEAD: u64 = 16 << 20;

/// How long after the last durable wait the writer keeps zero-filling ahead, in nanoseconds.
pub const DURABLE_USE_NANOS: u64 = 1_000_000_000;

/// A sealed fill, handed to the writer: a run of log addresses in one buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// The fill's number (fills are written in this order).
    pub seq: u64,
    /// The buffer it lives in.
    pub slot: usize,
    /// Log address of its first byte.
    pub base: u64,
    /// Bytes claimed in it.
    pub filled: u64,
}

/// The memory the writer works on: the write buffers and what writers ask of the log. All of
/// it is shared with writer threads; the writer only reads requests and publishes progress.
pub trait Buffers {
    /// Moves the fills handed off since the last call into `into`.
    fn take_handoffs(&self, into: &mut Vec<Fill>);
    /// Highest address some writer waits to see durable.
    fn sync_wanted(&self) -> u64;
    /// Asks for the log to be durable up to `lsn` (the `Buffered` interval's flush).
    fn want_durable(&self, lsn: u64);
    /// Whether a `Buffered` write waits for the next interval's flush.
    fn buffered_pending(&self) -> bool;
    /// Clears that request (it is then met by [`Buffers::want_durable`]).
    fn clear_buffered(&self);
    /// End of every claim made so far.
    fn claimed_end(&self) -> u64;
    /// Seals the current fill for a group commit if it holds anything and the next buffer is
    /// free; true if it sealed (the fill reaches [`Buffers::take_handoffs`] once no writer is
    /// copying into it).
    fn seal_for_commit(&self) -> bool;
    /// Whether a writer waited for durability since the last call (clears the note).
    fn take_durable_wait(&self) -> bool;
    /// Runs `f` over bytes `0..len` of buffer `slot`, which the writer owns while a fill in
    /// it is handed off and not yet written.
    fn with_bytes(&self, slot: usize, len: usize, f: &mut dyn FnMut(&mut [u8]));
    /// `n` more fills are written: their buffers may take new fills.
    fn fills_written(&self, n: u64);
    /// The log is durable below `lsn` now.
    fn durable(&self, lsn: u64);
    /// The log failed: no write is acknowledged any more.
    fn poison(&self, failure: Failure);
    /// Counts what the writer did, for the log's statistics.
    fn count(&self, what: Count);
}

/// What [`Buffers::count`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// A segment write of this many bytes was submitted.
    Write(u64),
    /// A flush was submitted, with this many fdatasyncs.
    Flush(u64),
    /// A fill was sealed early for a group commit.
    GroupCommit,
    /// This many zeros were written ahead of the log.
    Zeroed(u64),
    /// A write or flush completed.
    Completion,
}

/// An I/O step the writer wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// Open segment `segment` for writing, creating it if the log has not reached it before
    /// (from a spare, or empty). Synchronous: report its length with [`Writer::opened`] before
    /// the next poll.
    Open {
        /// The segment.
        segment: u64,
    },
    /// Write zeros over `from..to` of the segment and make them durable. Synchronous: report
    /// with [`Writer::zeroed`] before the next poll.
    ZeroFill {
        /// The segment.
        segment: u64,
        /// First byte (a block multiple).
        from: u64,
        /// End (a block multiple).
        to: u64,
    },
    /// Write bytes `0..len` of buffer `slot` at `offset` of the segment (whole blocks, block
    /// aligned; the writer has put the carried partial block in front). Complete with
    /// [`Writer::written`]. With `linked`, the next [`Io::Flush`] of the same segment must
    /// start only once this write has completed successfully (io_uring's `IOSQE_IO_LINK`).
    Write {
        /// The fill.
        seq: u64,
        /// Its buffer.
        slot: usize,
        /// The segment.
        segment: u64,
        /// Offset in the segment.
        offset: u64,
        /// Bytes to write.
        len: usize,
        /// Whether the flush that follows is linked behind it.
        linked: bool,
    },
    /// fdatasync the segment. Complete with [`Writer::flushed`].
    Flush {
        /// The segment.
        segment: u64,
    },
    /// Close the segment's file: nothing is in flight or left to flush there.
    Close {
        /// The segment.
        segment: u64,
    },
}

/// What the writer was doing when a step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Opening or creating a segment.
    Open,
    /// Zero-filling a segment ahead of the writes.
    ZeroFill,
    /// Writing a fill.
    Write,
    /// Flushing a segment.
    Flush,
}

impl Step {
    /// The step as the runtime names it in errors ("write segment", ...).
    pub fn name(self) -> &'static str {
        match self {
            Step::Open => "open segment",
            Step::ZeroFill => "zero-fill segment",
            Step::Write => "write segment",
            Step::Flush => "flush segment",
        }
    }
}

/// How a step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The system call failed with this errno.
    Os(i32),
    /// A write wrote fewer bytes than asked.
    Short {
        /// Bytes written.
        wrote: usize,
        /// Bytes asked.
        len: usize,
    },
    /// A test's fault injection ([`Faults`]).
    Injected,
}

/// The failure that poisons the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What was being done.
    pub step: Step,
    /// In which segment.
    pub segment: u64,
    /// How it failed.
    pub cause: Cause,
}

/// Test-only failure injection: the Nth write or flush (counting from 1 when the log opens)
/// fails as if the device had failed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Fail the Nth segment write.
    pub fail_write: Option<u64>,
    /// Fail the Nth flush.
    pub fail_flush: Option<u64>,
}

/// The writer's geometry and timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    /// Writes are whole blocks of this many bytes at block-aligned offsets.
    pub block: usize,
    /// Bytes per segment file.
    pub segment_bytes: u64,
    /// Longest a `Buffered` write waits for its flush, in nanoseconds.
    pub flush_interval_nanos: u64,
    /// Most writes in flight at once.
    pub max_in_flight: usize,
    /// Failure injection.
    pub faults: Faults,
}

/// A write submitted and not yet completed, in submission (log) order.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    end: u64,
    len: usize,
    segment: u64,
    done: bool,
}

/// A flush (one fdatasync per segment written since the last one) in flight.
#[derive(Debug)]
struct Flush {
    target: u64,
    pending: usize,
}

/// The writer's state: see the module documentation.
#[derive(Debug)]
pub struct Writer {
    config: WriterConfig,
    /// Fills handed off, by number, not yet written.
    ready: BTreeMap<u64, Fill>,
    handed: Vec<Fill>,
    next_seq: u64,
    in_flight: VecDeque<InFlight>,
    /// Steps decided and not yet handed to the driver (the parts of a flush).
    queue: VecDeque<Io>,
    /// Segments open for writing, with the bytes at their start known to be written (zeros
    /// or data).
    open: BTreeMap<u64, u64>,
    /// A synchronous step handed out and not yet reported.
    awaiting: Option<Io>,
    /// The log is written (not necessarily durable) below this address.
    written_end: u64,
    /// End of the last fill submitted: the next fill must start here.
    submitted_end: u64,
    /// The log is durable below this address.
    durable: u64,
    /// The partial block at `submitted_end`, rewritten in front of the next fill.
    carry: Vec<u8>,
    /// Segments written since their last flush.
    unsynced: BTreeSet<u64>,
    flush: Option<Flush>,
    /// The fill sealed for a group commit, written with its flush linked behind it.
    commit: Option<u64>,
    last_flush: u64,
    last_durable_wait: Option<u64>,
    writes: u64,
    flushes: u64,
    poisoned: bool,
}

impl Writer {
    /// A writer for a log durable (and written) below `start`, whose partial block before
    /// `start` holds `carry` (`start % block` bytes). Time starts at 0 nanoseconds.
    pub fn new(config: WriterConfig, start: u64, carry: Vec<u8>) -> Self {
        assert!(config.block.is_power_of_two() && config.segment_bytes % config.block as u64 == 0);
        assert_eq!(carry.len() as u64, start % config.block as u64, "carry of the wrong length");
        assert!(config.max_in_flight > 0, "no write may be in flight");
        Self {
            config,
            ready: BTreeMap::new(),
            handed: Vec::new(),
            next_seq: 0,
            in_flight: VecDeque::new(),
            queue: VecDeque::new(),
            open: BTreeMap::new(),
            awaiting: None,
            written_end: start,
            submitted_end: start,
            durable: start,
            carry,
            unsynced: BTreeSet::new(),
            flush: None,
            commit: None,
            last_flush: 0,
            last_durable_wait: None,
            writes: 0,
            flushes: 0,
            poisoned: false,
        }
    }

    /// The next I/O step to take at time `now` (nanoseconds), or `None` until a completion,
    /// a hand-off, a request or the [`Writer::deadline`] comes.
    pub fn poll(&mut self, now: u64, mem: &dyn Buffers) -> Option<Io> {
        assert!(self.awaiting.is_none(), "a synchronous step was not reported: {:?}", self.awaiting);
        if let Some(io) = self.queue.pop_front() {
            return Some(io);
        }
        if self.poisoned {
            return None;
        }
        self.take_handoffs(mem);
        if let Some(io) = self.next_write(now, mem) {
            return Some(io);
        }
        if let Some(io) = self.group_commit(now, mem) {
            return Some(io);
        }
        if self.idle() {
            return self.close_old();
        }
        None
    }

    /// When the writer wants to be polled again with nothing else happening: the end of the
    /// `Buffered` interval, if a `Buffered` write waits for it.
    pub fn deadline(&self, mem: &dyn Buffers) -> Option<u64> {
        let waiting = mem.buffered_pending() && self.flush.is_none() && !self.poisoned;
        waiting.then(|| self.last_flush + self.config.flush_interval_nanos)
    }

    /// Whether nothing is in flight (the log may close).
    pub fn idle(&self) -> bool {
        self.in_flight.iter().all(|w| w.done) && self.flush.is_none() && self.queue.is_empty()
    }

    /// The log is durable below this address.
    pub fn durable_lsn(&self) -> u64 {
        self.durable
    }

    /// Whether a step failed: nothing more is written or acknowledged.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Reports [`Io::Open`]: the segment is open, `len` bytes long.
    pub fn opened(&mut self, segment: u64, len: u64) {
        assert_eq!(self.awaiting.take(), Some(Io::Open { segment }), "an open not asked for");
        self.open.insert(segment, len);
    }

    /// Reports [`Io::ZeroFill`]: done, the zeros durable.
    pub fn zeroed(&mut self, segment: u64, mem: &dyn Buffers) {
        let Some(Io::ZeroFill { from, to, .. }) = self.awaiting.take() else {
            panic!("a zero-fill not asked for");
        };
        self.open.insert(segment, to);
        mem.count(Count::Zeroed(to - from));
    }

    /// Reports that a synchronous step ([`Io::Open`], [`Io::ZeroFill`]) failed: poisons.
    pub fn failed(&mut self, failure: Failure, mem: &dyn Buffers) {
        self.awaiting = None;
        self.poison(failure, mem);
    }

    /// Reports a completed [`Io::Write`]: `Ok(bytes written)` or `Err(errno)`.
    pub fn written(&mut self, seq: u64, result: Result<usize, i32>, mem: &dyn Buffers) {
        mem.count(Count::Completion);
        let write = self.in_flight.iter_mut().find(|w| w.seq == seq).expect("a write in flight");
        write.done = true;
        let (len, segment) = (write.len, write.segment);
        let cause = match result {
            Err(errno) => Some(Cause::Os(errno)),
            Ok(wrote) if wrote != len => Some(Cause::Short { wrote, len }),
            Ok(_) => None,
        };
        if let Some(cause) = cause {
            return self.poison(Failure { step: Step::Write, segment, cause }, mem);
        }
        let mut completed = 0;
        while self.in_flight.front().is_some_and(|w| w.done) {
            self.written_end = self.in_flight.pop_front().unwrap().end;
            completed += 1;
        }
        if completed > 0 {
            mem.fills_written(completed);
        }
    }

    /// Reports a completed [`Io::Flush`]: `Ok(())` or `Err(errno)`.
    pub fn flushed(&mut self, segment: u64, result: Result<(), i32>, mem: &dyn Buffers) {
        mem.count(Count::Completion);
        let flush = self.flush.as_mut().expect("a flush in flight");
        flush.pending -= 1;
        let last = flush.pending == 0;
        if let Err(errno) = result {
            self.poison(Failure { step: Step::Flush, segment, cause: Cause::Os(errno) }, mem);
        }
        if last {
            let flush = self.flush.take().expect("a flush in flight");
            // A failed flush proves nothing about what it covered: never durable then.
            if !self.poisoned {
                assert!(self.written_end >= flush.target, "flushed past the written log");
                self.durable = self.durable.max(flush.target);
                mem.durable(self.durable);
            }
        }
    }

    fn poison(&mut self, failure: Failure, mem: &dyn Buffers) {
        self.poisoned = true;
        mem.poison(failure);
    }

    fn take_handoffs(&mut self, mem: &dyn Buffers) {
        mem.take_handoffs(&mut self.handed);
        for fill in self.handed.drain(..) {
            self.ready.insert(fill.seq, fill);
        }
    }

    /// The next fill to write, in log order, or the synchronous step it needs first. A fill
    /// that rewrites the previous fill's last block waits until no write is in flight (two
    /// writes of one block must not race).
    fn next_write(&mut self, now: u64, mem: &dyn Buffers) -> Option<Io> {
        let fill = *self.ready.get(&self.next_seq)?;
        let block = self.config.block as u64;
        let lead = fill.base % block;
        if lead != 0 && !self.in_flight.is_empty() || self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        assert_eq!(fill.base, self.submitted_end, "fills must be written in log order");
        let segment = fill.base / self.config.segment_bytes;
        let end = (lead + fill.filled) as usize;
        let len = end.next_multiple_of(block as usize);
        let offset = fill.base - lead - segment * self.config.segment_bytes;
        if let Some(io) = self.prepare_segment(segment, offset + len as u64, now, mem) {
            self.awaiting = Some(io);
            return Some(io);
        }
        self.ready.remove(&fill.seq);
        self.next_seq += 1;
        self.stage(fill, lead as usize, end, len, mem);
        self.submitted_end = fill.base + fill.filled;
        let linked = self.commit.take() == Some(fill.seq);
        self.in_flight.push_back(InFlight {
            seq: fill.seq,
            end: self.submitted_end,
            len,
            segment,
            done: false,
        });
        self.unsynced.insert(segment);
        self.writes += 1;
        if self.config.faults.fail_write == Some(self.writes) {
            self.in_flight.back_mut().unwrap().done = true;
            self.poison(Failure { step: Step::Write, segment, cause: Cause::Injected }, mem);
            return None;
        }
        mem.count(Count::Write(len as u64));
        if linked {
            self.submit_flush(Some(segment), now, mem);
        }
        // An injected flush failure poisons before the flush is queued: nothing to link then.
        let linked = linked && !self.poisoned;
        Some(Io::Write { seq: fill.seq, slot: fill.slot, segment, offset, len, linked })
    }

    /// The segment must be open, and while writers wait for durability (within the last
    /// second) zero-filled a chunk ahead of `end`, so that their fdatasyncs find written
    /// extents; otherwise a zero-fill would only double the bytes written, and the write
    /// extends the file directly. Returns the step needed first, if any.
    fn prepare_segment(&mut self, segment: u64, end: u64, now: u64, mem: &dyn Buffers) -> Option<Io> {
        let Some(&ready) = self.open.get(&segment) else { return Some(Io::Open { segment }) };
        if mem.take_durable_wait() {
            self.last_durable_wait = Some(now);
        }
        if ready >= end {
            return None;
        }
        let durable_use = self.last_durable_wait.is_some_and(|at| now.saturating_sub(at) < DURABLE_USE_NANOS);
        if !durable_use {
            // What this write covers counts as written: a later zero-fill starts past it.
            self.open.insert(segment, end);
            return None;
        }
        let to = (end + ZERO_AHEAD).next_multiple_of(ZERO_AHEAD).min(self.config.segment_bytes);
        Some(Io::ZeroFill { segment, from: ready, to })
    }

    /// Puts the carried partial block in front of the fill's bytes, zeros after them up to the
    /// block, and keeps the fill's own last partial block for the next fill. `0..lead` and
    /// `end..len` lie outside every claim of the fill.
    fn stage(&mut self, fill: Fill, lead: usize, end: usize, len: usize, mem: &dyn Buffers) {
        let block = self.config.block;
        let carry = &mut self.carry;
        mem.with_bytes(fill.slot, len, &mut |bytes| {
            bytes[..lead].copy_from_slice(&carry[..lead]);
            bytes[end..].fill(0);
            carry.clear();
            carry.extend_from_slice(&bytes[end - end % block..end]);
        });
    }

    /// Flushes what was written when a writer waits for durability (or a `Buffered` interval
    /// ran out); seals the current fill first when what is wanted is still in it.
    fn group_commit(&mut self, now: u64, mem: &dyn Buffers) -> Option<Io> {
        if self.flush.is_some() || self.commit.is_some() {
            return None;
        }
        let interval_over = now.saturating_sub(self.last_flush) >= self.config.flush_interval_nanos;
        if mem.buffered_pending() && interval_over {
            // Cleared before reading the end: a Buffered write after this sets it again. The
            // request stays until met, like a Sync writer's.
            mem.clear_buffered();
            mem.want_durable(mem.claimed_end());
        }
        let want = mem.sync_wanted();
        if want <= self.durable {
            return None;
        }
        if self.written_end > self.durable && (self.written_end >= want || !self.in_flight.is_empty()) {
            // Flush what is written now; later records go with the next flush.
            self.submit_flush(None, now, mem);
            return self.queue.pop_front();
        }
        if self.in_flight.is_empty() && self.ready.is_empty() && mem.seal_for_commit() {
            mem.count(Count::GroupCommit);
            self.take_handoffs(mem);
            // Only when the sealed fill is the one fill to write (with more buffers, an
            // earlier fill may have been handed over meanwhile: then the ordinary path writes
            // both; and if a writer is still copying, the last one out hands it over).
            if self.ready.len() == 1 && self.ready.contains_key(&self.next_seq) {
                self.commit = Some(self.next_seq);
            }
            return self.next_write(now, mem);
        }
        None
    }

    /// Flushes every segment written since the last flush; with `linked`, that segment's
    /// flush goes right behind the write just decided (linked to it) and covers it.
    fn submit_flush(&mut self, linked: Option<u64>, now: u64, mem: &dyn Buffers) {
        let target = if linked.is_some() { self.submitted_end } else { self.written_end };
        self.last_flush = now;
        self.flushes += 1;
        // Every segment written since its last flush, busy or not: the target covers only
        // completed writes (and the linked one), and an fdatasync issued now covers those.
        let mut segments: Vec<u64> = linked.into_iter().collect();
        segments.extend(self.unsynced.iter().copied().filter(|&s| Some(s) != linked));
        if self.config.faults.fail_flush == Some(self.flushes) {
            let segment = segments.first().copied().unwrap_or(0);
            return self.poison(Failure { step: Step::Flush, segment, cause: Cause::Injected }, mem);
        }
        let busy: BTreeSet<u64> = self.in_flight.iter().filter(|w| !w.done).map(|w| w.segment).collect();
        for &segment in &segments {
            self.queue.push_back(Io::Flush { segment });
            // A write still in flight there is not covered: the segment stays unflushed. (The
            // linked write is: its flush runs after it.)
            if Some(segment) == linked || !busy.contains(&segment) {
                self.unsynced.remove(&segment);
            }
        }
        mem.count(Count::Flush(segments.len() as u64));
        self.flush = Some(Flush { target, pending: segments.len() });
        if segments.is_empty() {
            self.flushed_nothing(mem);
        }
    }

    /// A flush with no segment to sync (nothing written since the last): durable at once.
    fn flushed_nothing(&mut self, mem: &dyn Buffers) {
        let flush = self.flush.take().expect("a flush in flight");
        assert!(self.written_end >= flush.target, "flushed past the written log");
        self.durable = self.durable.max(flush.target);
        mem.durable(self.durable);
    }

    /// Closes the files of segments behind the newest two that have nothing left to flush.
    fn close_old(&mut self) -> Option<Io> {
        let newest = *self.open.keys().next_back()?;
        let old = self.open.keys().copied().find(|&s| s + 1 < newest && !self.unsynced.contains(&s))?;
        self.open.remove(&old);
        Some(Io::Close { segment: old })
    }
}

#[cfg(test)]
mod tests;
