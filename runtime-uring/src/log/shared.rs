//! The state a shard's log shares between its writers (any thread) and its I/O thread: the
//! write buffers in rotation, the claims writers make in them, the hand-off of filled buffers,
//! and the progress (written, durable) that writers wait on.
//!
//! Buffers are used in a fixed rotation: fill number `s` lives in buffer `s % n`. A fill is a
//! contiguous run of log addresses starting where the previous fill ended; the party that seals a
//! fill (a writer whose record does not fit, or the I/O thread for a group commit) opens the next
//! one, in the next buffer, once that buffer's previous fill has been written. Writers hold no
//! lock: a claim is one CAS on the buffer's state word, a release one atomic decrement.
//!
//! A fill need not start on a block boundary (a group commit may end the previous one anywhere).
//! Its bytes sit in its buffer at their offset within the block, so the I/O thread can put the
//! previous fill's last partial block in front of them and write whole aligned blocks.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;
use std::{io, slice};

use helio_core::log::buffer::{BufferState, Reserve};
use helio_core::log::frame::{encode_with, Kind, Stamp, HEADER_BYTES};
use helio_core::log::writer::{Buffers, Cause, Count, Failure};

use super::engine::Engine;
use super::error::{IoFailure, LogError};
use super::inline::Inline;
use super::io as ring;
use crate::dma::DmaBuf;
use crate::segments::Segments;
use crate::striped::Striped;

/// One write buffer.
pub(crate) struct Slot {
    pub state: BufferState,
    /// The fill the buffer holds now.
    pub seq: AtomicU64,
    /// Log address of the fill's first byte.
    pub base: AtomicU64,
    ptr: *mut u8,
    len: usize,
    _memory: DmaBuf,
}

// SAFETY: writers touch disjoint claimed ranges of the memory; the I/O thread touches a fill's
// bytes only after every claim in it was released (the hand-off), and the rotation reopens a
// buffer only after its write completed.
unsafe impl Sync for Slot {}
// SAFETY: as above; the memory is owned.
unsafe impl Send for Slot {}

impl Slot {
    /// The buffer's bytes, `at..at + len`.
    ///
    /// # Safety
    /// The caller must own that range (a claim, or the I/O thread's hand-off).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes(&self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.len, "range {at}+{len} beyond a {}-byte buffer", self.len);
        // SAFETY: in bounds; exclusivity is the caller's promise.
        unsafe { slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }

    /// Address of the buffer's first byte (for the kernel).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
}

pub(crate) use helio_core::log::writer::Fill;

/// Who drives the log's writer.
pub(crate) enum Driver {
    /// On the real file system: the io_uring I/O thread, or a `Sync` writer that finds nothing
    /// in flight (a leader), whichever holds the engine.
    Ring(Mutex<Engine>),
    /// On any other disk: the threads that wait on the log, in turn.
    Inline(Inline),
}

/// Counters behind [`super::LogStats`]: writers' on stripes, the I/O thread's plain.
pub(crate) struct Counters {
    pub records: Striped,
    pub payload_bytes: Striped,
    pub log_bytes: Striped,
    pub device_bytes: AtomicU64,
    pub writes: AtomicU64,
    pub flushes: AtomicU64,
    pub syncs: AtomicU64,
    pub zeroed_bytes: AtomicU64,
    pub completions: AtomicU64,
    pub group_commits: AtomicU64,
    pub fills: AtomicU64,
}

impl Counters {
    fn new() -> Self {
        Self {
            records: Striped::new(),
            payload_bytes: Striped::new(),
            log_bytes: Striped::new(),
            device_bytes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            zeroed_bytes: AtomicU64::new(0),
            completions: AtomicU64::new(0),
            group_commits: AtomicU64::new(0),
            fills: AtomicU64::new(0),
        }
    }
}

/// An eventfd the I/O thread always has a read posted on: writers ring it to wake the thread.
pub(crate) struct Doorbell(OwnedFd);

impl Doorbell {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> i32 {
        self.0.as_raw_fd()
    }

    pub fn ring(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64. An eventfd write can only fail on counter
        // overflow, which needs 2^64 rings without a read.
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }
}

/// Everything writers and the I/O thread share.
pub(crate) struct Shared {
    pub slots: Box<[Slot]>,
    /// The fill being written into.
    pub current: AtomicU64,
    /// Fills written to disk, counted from fill 0 (they complete in order).
    pub written_fills: AtomicU64,
    pub stamp: Stamp,
    pub segment_bytes: u64,
    pub buffer_bytes: u64,
    /// Direct-I/O block: writes are whole blocks at block-aligned offsets.
    pub block: usize,
    /// The log is durable below this address.
    pub durable: AtomicU64,

    /// Highest address a `Sync` writer or `sync()` waits to see durable.
    pub sync_wanted: AtomicU64,
    /// A `Buffered` write is waiting for the next interval's flush.
    pub buffered_pending: AtomicBool,
    /// A writer (or `sync`) waited for durability since the I/O thread last looked: the log is
    /// in use for durable writes, which is when zero-filling ahead pays (see `io.rs`).
    pub durable_waits_seen: AtomicBool,
    pub closing: AtomicBool,
    poison: OnceLock<Arc<IoFailure>>,
    handoffs: Mutex<Vec<Fill>>,
    /// Writers parked until the log is durable up to an address.
    durable_waiters: Mutex<Vec<(u64, Thread)>>,
    /// Rung to wake the io_uring I/O thread (none where the log is driven inline).
    pub doorbell: Option<Doorbell>,
    driver: Driver,
    segments: Segments,
    lock: Mutex<()>,
    progress: Condvar,
    pub counters: Counters,
}

/// Space claimed in a fill for one frame. Dropped without [`Claim::write`], it becomes a pad
/// frame (a writer that panicked mid-copy leaves a valid log behind).
pub(crate) struct Claim<'a> {
    shared: &'a Shared,
    slot: usize,
    at: usize,
    len: usize,
    /// Log address of the frame.
    pub lsn: u64,
    written: bool,
}

impl Claim<'_> {
    /// Encodes the frame into the claimed space and releases it.
    pub fn write(mut self, kind: Kind, payload_len: usize, fill: impl FnOnce(&mut [u8])) {
        let durable = self.shared.durable.load(Ordering::Acquire);
        // SAFETY: this claim owns the range.
        let out = unsafe { self.shared.slots[self.slot].bytes(self.at, self.len) };
        encode_with(out, self.shared.stamp, self.lsn, durable, kind, payload_len, fill);
        self.written = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.written {
            let durable = self.shared.durable.load(Ordering::Acquire);
            // SAFETY: this claim owns the range.
            let out = unsafe { self.shared.slots[self.slot].bytes(self.at, self.len) };
            encode_with(out, self.shared.stamp, self.lsn, durable, Kind::Pad, self.len - HEADER_BYTES, |p| {
                p.fill(0)
            });
        }
        let slot = &self.shared.slots[self.slot];
        if slot.state.release() {
            self.shared.hand_off(self.slot, slot.state.filled(), true);
        }
    }
}

impl Shared {
    /// Allocates `buffers` buffers of `buffer_bytes` (plus one block for the carried partial
    /// block) and opens fill 0 at `start`, for a writer driven by `driver` (a ring's gets a
    /// doorbell to wake its I/O thread).
    pub fn new(
        stamp: Stamp,
        segments: Segments,
        buffer_bytes: usize,
        buffers: usize,
        block: usize,
        start: u64,
        driver: Driver,
    ) -> io::Result<Self> {
        let segment_bytes = segments.segment_bytes();
        let slots = (0..buffers)
            .map(|i| {
                let mut memory = DmaBuf::new(buffer_bytes + block, block)
                    .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
                Ok(Slot {
                    state: BufferState::new_sealed(buffer_bytes as u64),
                    seq: AtomicU64::new(i as u64),
                    base: AtomicU64::new(start),
                    ptr: memory.as_mut_ptr(),
                    len: memory.len(),
                    _memory: memory,
                })
            })
            .collect::<io::Result<Box<[Slot]>>>()?;
        let shared = Self {
            slots,
            current: AtomicU64::new(0),
            written_fills: AtomicU64::new(0),
            stamp,
            segment_bytes,
            buffer_bytes: buffer_bytes as u64,
            block,
            durable: AtomicU64::new(start),

            sync_wanted: AtomicU64::new(start),
            buffered_pending: AtomicBool::new(false),
            durable_waits_seen: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            poison: OnceLock::new(),
            handoffs: Mutex::new(Vec::new()),
            durable_waiters: Mutex::new(Vec::new()),
            doorbell: if matches!(driver, Driver::Ring(_)) { Some(Doorbell::new()?) } else { None },
            driver,
            segments,
            lock: Mutex::new(()),
            progress: Condvar::new(),
            counters: Counters::new(),
        };
        shared.slots[0].state.reset(shared.fill_capacity(start));
        Ok(shared)
    }

    /// The capacity of a fill starting at `base`: up to the block boundary a buffer's worth
    /// on (so that a fill ended by overflow, padded, leaves the next one starting on a block:
    /// no partial block to carry, and its write need not wait for this one), cut at the segment
    /// end, and never leaving a remainder before the segment end too small for a pad frame.
    fn fill_capacity(&self, base: u64) -> u64 {
        let room = self.segment_bytes - base % self.segment_bytes;
        let natural = self.buffer_bytes - base % self.block as u64;
        if room <= natural {
            room
        } else if room - natural < HEADER_BYTES as u64 {
            room - HEADER_BYTES as u64
        } else {
            natural
        }
    }

    /// End of every claim made so far (some may still be copying): what `sync` must cover.
    pub fn claimed_end(&self) -> u64 {
        loop {
            let seq = self.current.load(Ordering::Acquire);
            let slot = &self.slots[(seq % self.slots.len() as u64) as usize];
            let end = slot.base.load(Ordering::Acquire) + slot.state.filled();
            if self.current.load(Ordering::Acquire) == seq {
                return end;
            }
        }
    }

    /// Notes that a `Buffered` write wants the next interval's flush (a load, and a store only
    /// when the flag was clear: writers do not fight over the line).
    pub fn want_buffered_flush(&self) {
        if !self.buffered_pending.load(Ordering::Relaxed)
            && !self.buffered_pending.swap(true, Ordering::AcqRel)
        {
            // The I/O thread may be asleep with no timeout: wake it to start the interval.
            self.ring();
        }
    }

    /// Claims `len` bytes (a whole frame, at most half a buffer) at the end of the log.
    pub fn claim(&self, len: usize) -> Result<Claim<'_>, LogError> {
        debug_assert!(len as u64 <= self.buffer_bytes / 2);
        loop {
            self.check_poison()?;
            if self.closing.load(Ordering::Acquire) {
                return Err(LogError::Closed);
            }
            let seq = self.current.load(Ordering::Acquire);
            let index = (seq % self.slots.len() as u64) as usize;
            let slot = &self.slots[index];
            match slot.state.reserve(len as u64) {
                Reserve::At(offset) => {
                    // Read after the claim: a delayed writer may have landed in a later fill,
                    // one its opener has not published yet. Publish it, so that `current`
                    // (and `claimed_end`, and so `sync`) never lags a completed claim.
                    let fill = slot.seq.load(Ordering::Acquire);
                    if self.current.load(Ordering::Acquire) < fill {
                        self.current.fetch_max(fill, Ordering::AcqRel);
                    }
                    let base = slot.base.load(Ordering::Acquire);
                    let at = (base % self.block as u64 + offset) as usize;
                    return Ok(Claim {
                        shared: self,
                        slot: index,
                        at,
                        len,
                        lsn: base + offset,
                        written: false,
                    });
                }
                Reserve::Tail { at, len: tail } => {
                    // Pad the rest of the fill, then open the next one.
                    let base = slot.base.load(Ordering::Acquire);
                    let seq = slot.seq.load(Ordering::Acquire);
                    let at_buf = (base % self.block as u64 + at) as usize;
                    drop(Claim {
                        shared: self,
                        slot: index,
                        at: at_buf,
                        len: tail as usize,
                        lsn: base + at,
                        written: false,
                    });
                    self.rotate(seq, base + at + tail)?;
                }
                Reserve::Sealed { filled, flush } => self.sealed(index, filled, flush, true)?,
                Reserve::Closed => self.wait_for(|| self.current.load(Ordering::Acquire) != seq)?,
            }
        }
    }

    /// The sealer's duties: hand the fill to I/O if nobody is inside (ringing the doorbell
    /// unless the sealer is the I/O thread), open the next fill.
    fn sealed(&self, index: usize, filled: u64, flush: bool, ring: bool) -> Result<(), LogError> {
        let slot = &self.slots[index];
        let base = slot.base.load(Ordering::Acquire);
        let seq = slot.seq.load(Ordering::Acquire);
        if flush {
            self.hand_off(index, filled, ring);
        }
        self.rotate(seq, base + filled)
    }

    /// Opens fill `seq + 1` at `base` once its buffer's previous fill is written.
    fn rotate(&self, seq: u64, base: u64) -> Result<(), LogError> {
        let next = seq + 1;
        let buffers = self.slots.len() as u64;
        self.wait_for(|| self.written_fills.load(Ordering::Acquire) + buffers > next)?;
        let slot = &self.slots[(next % buffers) as usize];
        slot.seq.store(next, Ordering::Relaxed);
        slot.base.store(base, Ordering::Release);
        slot.state.reset(self.fill_capacity(base));
        // A max, not a store: a delayed writer may already have claimed in this fill and
        // published it (or even moved past it) between the reset and here.
        self.current.fetch_max(next, Ordering::AcqRel);
        self.counters.fills.fetch_add(1, Ordering::Relaxed);
        self.notify();
        Ok(())
    }

    /// Seals the current fill for a group commit, if it holds anything and the next buffer is
    /// free (so this never waits). For the writer's driver (whoever holds the engine, or the
    /// inline driver). True if it sealed.
    pub fn seal_for_commit(&self) -> bool {
        let seq = self.current.load(Ordering::Acquire);
        let buffers = self.slots.len() as u64;
        let index = (seq % buffers) as usize;
        let slot = &self.slots[index];
        if slot.state.filled() == 0 || self.written_fills.load(Ordering::Acquire) + buffers <= seq + 1 {
            return false;
        }
        // Only the writer's driver writes fills, and it is here: fill `seq` cannot have been
        // written and its buffer reopened since `current` was read, so a successful seal is of
        // `seq`.
        match slot.state.seal() {
            Some((filled, flush)) => {
                self.sealed(index, filled, flush, false).expect("the next buffer was checked free");
                true
            }
            None => false,
        }
    }

    fn hand_off(&self, slot: usize, filled: u64, ring: bool) {
        let s = &self.slots[slot];
        let fill =
            Fill { seq: s.seq.load(Ordering::Acquire), slot, base: s.base.load(Ordering::Acquire), filled };
        self.handoffs.lock().unwrap().push(fill);
        if ring {
            self.ring();
        }
    }

    /// Fills handed off since the last call.
    pub fn take_handoffs(&self, into: &mut Vec<Fill>) {
        into.append(&mut self.handoffs.lock().unwrap());
    }

    /// Waits until `end` is durable: asks the I/O thread for a flush (group commit) and parks
    /// until a flush covers `end`. The doorbell is rung only when no earlier request is
    /// pending: the I/O thread looks at the newest request whenever a flush completes. `user`:
    /// a writer or `sync` waits (noted in `durable_waits_seen`), not the log's own upkeep.
    pub fn wait_durable(&self, end: u64, user: bool) -> Result<(), LogError> {
        if self.durable.load(Ordering::Acquire) >= end {
            return Ok(());
        }
        if user && !self.durable_waits_seen.load(Ordering::Relaxed) {
            self.durable_waits_seen.store(true, Ordering::Relaxed);
        }
        let pending = self.sync_wanted.fetch_max(end, Ordering::SeqCst);
        self.durable_waiters.lock().unwrap().push((end, std::thread::current()));
        let mut ring = pending <= self.durable.load(Ordering::SeqCst);
        loop {
            if self.durable.load(Ordering::Acquire) >= end {
                return Ok(());
            }
            self.check_poison()?;
            // Commit in this thread if nothing is in flight (or drive an inline log).
            if self.drive(end) {
                continue;
            }
            if std::mem::take(&mut ring) {
                self.ring();
            }
            // The timeout only bounds the cost of a lost unpark or doorbell; none is expected,
            // and ringing again after one is harmless.
            std::thread::park_timeout(Duration::from_millis(5));
            ring = self.durable.load(Ordering::Acquire) < end;
        }
    }

    /// Asks the I/O thread for a flush covering `end`, without waiting (see [`Shared::wait_durable`]).
    pub fn request_durable(&self, end: u64) {
        if self.durable.load(Ordering::Acquire) >= end {
            return;
        }
        let pending = self.sync_wanted.fetch_max(end, Ordering::SeqCst);
        if pending <= self.durable.load(Ordering::SeqCst) {
            self.ring();
        }
    }

    /// Publishes a new durable address and wakes exactly the writers it covers.
    pub fn advance_durable(&self, to: u64) {
        self.durable.fetch_max(to, Ordering::AcqRel);
        let durable = self.durable.load(Ordering::Acquire);
        self.durable_waiters.lock().unwrap().retain(|(end, thread)| {
            let covered = *end <= durable;
            if covered {
                thread.unpark();
            }
            !covered
        });
    }

    /// Spins briefly, then sleeps until `ready` holds; fails if the log is poisoned first.
    pub fn wait_for(&self, ready: impl Fn() -> bool) -> Result<(), LogError> {
        for _ in 0..64 {
            if ready() {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        let mut guard = self.lock.lock().unwrap();
        loop {
            if ready() {
                return Ok(());
            }
            self.check_poison()?;
            if matches!(self.driver, Driver::Inline(_)) {
                drop(guard);
                if !self.drive(0) {
                    std::thread::yield_now();
                }
                guard = self.lock.lock().unwrap();
                continue;
            }
            // The timeout only bounds the cost of a missed notification; none is expected.
            guard = self.progress.wait_timeout(guard, Duration::from_millis(5)).unwrap().0;
        }
    }

    /// Wakes the I/O thread (where there is one).
    pub fn ring(&self) {
        if let Some(doorbell) = &self.doorbell {
            doorbell.ring();
        }
    }

    /// Drives the writer from a thread that waits for the log to be durable up to `end`: leads
    /// a group commit on the real disk if nothing is in flight, pumps an inline log one step.
    /// False if it did nothing (another thread drives the writer now, or I/O is in flight).
    fn drive(&self, end: u64) -> bool {
        match &self.driver {
            Driver::Ring(engine) => ring::lead(engine, self, end),
            Driver::Inline(inline) => inline.pump(self),
        }
    }

    /// The engine an I/O thread drives (on the real disk).
    pub fn engine(&self) -> Option<&Mutex<Engine>> {
        match &self.driver {
            Driver::Ring(engine) => Some(engine),
            Driver::Inline(_) => None,
        }
    }

    /// Wakes every waiter to re-check its condition.
    pub fn notify(&self) {
        let _guard = self.lock.lock().unwrap();
        self.progress.notify_all();
    }

    /// Marks the log failed (the first failure is kept) and wakes every waiter.
    pub fn poison(&self, failure: IoFailure) {
        let _ = self.poison.set(Arc::new(failure));
        for (_, thread) in self.durable_waiters.lock().unwrap().drain(..) {
            thread.unpark();
        }
        self.notify();
    }

    /// The failure that poisoned the log, if any.
    pub fn poisoned(&self) -> Option<&Arc<IoFailure>> {
        self.poison.get()
    }

    pub fn check_poison(&self) -> Result<(), LogError> {
        match self.poison.get() {
            Some(failure) => Err(LogError::Poisoned(failure.clone())),
            None => Ok(()),
        }
    }
}

/// The writer's view of the shared state (see [`helio_core::log::writer::Buffers`]).
impl Buffers for Shared {
    fn take_handoffs(&self, into: &mut Vec<Fill>) {
        Shared::take_handoffs(self, into);
    }

    fn sync_wanted(&self) -> u64 {
        self.sync_wanted.load(Ordering::Acquire)
    }

    fn want_durable(&self, lsn: u64) {
        self.sync_wanted.fetch_max(lsn, Ordering::AcqRel);
    }

    fn buffered_pending(&self) -> bool {
        self.buffered_pending.load(Ordering::Acquire)
    }

    fn clear_buffered(&self) {
        self.buffered_pending.store(false, Ordering::SeqCst);
    }

    fn claimed_end(&self) -> u64 {
        Shared::claimed_end(self)
    }

    fn seal_for_commit(&self) -> bool {
        Shared::seal_for_commit(self)
    }

    fn take_durable_wait(&self) -> bool {
        self.durable_waits_seen.swap(false, Ordering::Relaxed)
    }

    fn with_bytes(&self, slot: usize, len: usize, f: &mut dyn FnMut(&mut [u8])) {
        // SAFETY: the writer owns a handed-off fill's buffer until its write completes; the
        // bytes outside the fill's claims are nobody else's either.
        f(unsafe { self.slots[slot].bytes(0, len) });
    }

    fn fills_written(&self, n: u64) {
        self.written_fills.fetch_add(n, Ordering::AcqRel);
        self.notify();
    }

    fn durable(&self, lsn: u64) {
        self.advance_durable(lsn);
    }

    fn poison(&self, failure: Failure) {
        let source = match failure.cause {
            Cause::Os(errno) => io::Error::from_raw_os_error(errno),
            Cause::Short { wrote, len } => {
                io::Error::new(io::ErrorKind::WriteZero, format!("wrote {wrote} of {len} bytes"))
            }
            Cause::Injected => io::Error::other("injected I/O failure (test fault injection)"),
        };
        let path = self.segments.path(failure.segment);
        Shared::poison(self, IoFailure { op: failure.step.name(), path, source });
    }

    fn count(&self, what: Count) {
        let c = &self.counters;
        match what {
            Count::Write(bytes) => {
                c.writes.fetch_add(1, Ordering::Relaxed);
                c.device_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Count::Flush(syncs) => {
                c.flushes.fetch_add(1, Ordering::Relaxed);
                c.syncs.fetch_add(syncs, Ordering::Relaxed);
            }
            Count::GroupCommit => {
                c.group_commits.fetch_add(1, Ordering::Relaxed);
            }
            Count::Zeroed(bytes) => {
                c.zeroed_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Count::Completion => {
                c.completions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
