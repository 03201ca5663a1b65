//! The shard's I/O thread on the real file system: drives the core's log writer
//! ([`helio_core::log::writer::Writer`], which decides what to write, when to flush and how far
//! the log is durable) with io_uring: writes and fdatasyncs go to the ring, completions go back
//! to the writer.
//!
//! The thread sleeps in `io_uring_enter` with a read always posted on the writers' doorbell (an
//! eventfd), so a hand-off, a durability request or a completion wakes it, whichever comes first,
//! or the end of a `Buffered` interval (the writer's deadline).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use helio_core::log::writer::{Cause, Failure, Io, Step, Writer};
use io_uring::{opcode, squeue, types, IoUring};

use super::config::LogConfig;
use super::error::IoFailure;
use super::shared::Shared;
use crate::disk::{DiskFile, OpenHow};
use crate::dma::DmaBuf;
use crate::segments::{zero_fill, Segments};

const DOORBELL: u64 = 1 << 62;
const WRITE: u64 = 2 << 62;
const FLUSH: u64 = 3 << 62;
const TAG: u64 = 3 << 62;

/// The I/O thread's own state.
pub(crate) struct IoThread {
    shared: Arc<Shared>,
    writer: Writer,
    cpu: Option<usize>,
    ring: IoUring,
    segments: Segments,
    direct: bool,
    files: BTreeMap<u64, Arc<dyn DiskFile>>,
    /// An aligned buffer of zeros for zero-filling.
    zeros: DmaBuf,
    /// Time 0 of the writer's clock.
    started: Instant,
    doorbell_buf: Box<[u8; 8]>,
}

impl IoThread {
    /// The thread's state for `writer`.
    pub fn new(
        shared: Arc<Shared>,
        writer: Writer,
        segments: Segments,
        config: &LogConfig,
        direct: bool,
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
            writer,
            segments,
            direct,
            files: BTreeMap::new(),
            zeros,
            started: Instant::now(),
            doorbell_buf: Box::new([0; 8]),
        })
    }

    /// Most writes in flight for a ring of `depth` entries: room is left for a flush and the
    /// doorbell's read.
    pub fn max_in_flight(depth: u32) -> usize {
        depth as usize - 2
    }

    /// Runs until the log closes (after its final sync) with no I/O left in flight.
    pub fn run(mut self) {
        if let Some(cpu) = self.cpu {
            pin_to(cpu);
        }
        self.post_doorbell_read();
        loop {
            let now = self.now();
            while let Some(io) = self.writer.poll(now, &*self.shared) {
                self.execute(io);
            }
            if self.writer.idle() && self.shared.closing.load(Ordering::Acquire) {
                break;
            }
            self.wait();
            self.reap();
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn execute(&mut self, io: Io) {
        match io {
            Io::Open { segment } => match self.open_segment(segment) {
                Ok(len) => self.writer.opened(segment, len),
                Err(e) => self.fail(Step::Open, segment, e),
            },
            Io::ZeroFill { segment, from, to } => {
                // Through the same (direct) descriptor: zeros that went through the page cache
                // would make every later direct write there invalidate cached pages first.
                match zero_fill(&*self.files[&segment], &self.zeros, from, to) {
                    Ok(()) => self.writer.zeroed(segment, &*self.shared),
                    Err(e) => self.fail(Step::ZeroFill, segment, e),
                }
            }
            Io::Write { seq, slot, segment, offset, len, linked } => {
                let fd = self.files[&segment].raw_fd().expect("a real file");
                let flags = if linked { squeue::Flags::IO_LINK } else { squeue::Flags::empty() };
                let entry = opcode::Write::new(types::Fd(fd), self.shared.slots[slot].as_ptr(), len as u32)
                    .offset(offset)
                    .build()
                    .flags(flags)
                    .user_data(WRITE | seq);
                self.push(&entry);
            }
            Io::Flush { segment } => {
                let fd = self.files[&segment].raw_fd().expect("a real file");
                let entry = opcode::Fsync::new(types::Fd(fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(FLUSH | segment);
                self.push(&entry);
            }
            // Only when nothing is in flight: a queued entry names its file by descriptor.
            Io::Close { segment } => {
                self.files.remove(&segment);
            }
        }
    }

    /// A synchronous step failed: the log is poisoned with the error as the kernel gave it.
    fn fail(&mut self, step: Step, segment: u64, source: io::Error) {
        let cause = Cause::Os(source.raw_os_error().unwrap_or(libc::EIO));
        self.shared.poison(IoFailure { op: step.name(), path: self.segments.path(segment), source });
        self.writer.failed(Failure { step, segment, cause }, &*self.shared);
    }

    /// Sleeps until a completion (or the doorbell) arrives, or the writer's deadline.
    fn wait(&mut self) {
        let result = match self.writer.deadline(&*self.shared) {
            Some(at) => {
                let left = at.saturating_sub(self.now());
                let ts = types::Timespec::new().sec(left / 1_000_000_000).nsec((left % 1_000_000_000) as u32);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
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
            match data & TAG {
                DOORBELL => self.post_doorbell_read(),
                WRITE => {
                    let result = if result < 0 { Err(-result) } else { Ok(result as usize) };
                    self.writer.written(data & !TAG, result, &*self.shared);
                }
                FLUSH => {
                    let result = if result < 0 { Err(-result) } else { Ok(()) };
                    self.writer.flushed(data & !TAG, result, &*self.shared);
                }
                _ => unreachable!("unknown completion {data:#x}"),
            }
        }
    }

    fn post_doorbell_read(&mut self) {
        let fd = self.shared.doorbell.as_ref().expect("a real log has a doorbell").fd();
        let entry =
            opcode::Read::new(types::Fd(fd), self.doorbell_buf.as_mut_ptr(), 8).build().user_data(DOORBELL);
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

    /// Opens the segment for writing (creating it the first time the log reaches it) and
    /// returns its length.
    fn open_segment(&mut self, segment: u64) -> io::Result<u64> {
        if self.segments.open(segment)?.is_none() {
            self.segments.create(segment, 0)?;
        }
        let how = if self.direct { OpenHow::WriteDirect } else { OpenHow::ReadWrite };
        let file = self.segments.open_as(segment, how)?.ok_or(io::ErrorKind::NotFound)?;
        let len = file.len()?;
        self.files.insert(segment, file);
        Ok(len)
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
