//! The log's writer with the segment files it writes: the core's writer
//! ([`helio_core::log::writer::Writer`]) and what its synchronous steps need (opening and
//! creating segments, zero-filling ahead, closing), for every driver: the io_uring I/O thread
//! and the leaders on the real disk (`io.rs`), the inline driver on any other (`inline.rs`).
//! Every step the writer hands out is done and reported once, by whoever holds the engine.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use helio_core::log::writer::{Buffers, Cause, Failure, Io, Step, Writer};

use super::error::IoFailure;
use super::shared::Shared;
use crate::disk::{DiskFile, OpenHow};
use crate::dma::DmaBuf;
use crate::segments::{zero_fill, Segments};

/// The writer's clock.
enum Clock {
    /// Nanoseconds since the engine was made.
    Real(Instant),
    /// Nanoseconds moved on by [`Engine::tick`] (a simulation's, repeatable).
    Ticks(u64),
}

/// The writer and the files it writes.
pub(crate) struct Engine {
    writer: Writer,
    segments: Segments,
    direct: bool,
    files: BTreeMap<u64, Arc<dyn DiskFile>>,
    /// An aligned buffer of zeros for zero-filling.
    zeros: DmaBuf,
    clock: Clock,
}

impl Engine {
    /// The engine of `writer`, writing the segments with O_DIRECT if `direct`, in blocks of
    /// `block` bytes.
    pub fn new(writer: Writer, segments: Segments, direct: bool, block: usize) -> io::Result<Self> {
        Self::with_clock(writer, segments, direct, block, Clock::Real(Instant::now()))
    }

    /// An engine for a simulated disk: page-cache writes, a clock that moves only by
    /// [`Engine::tick`].
    pub fn simulated(writer: Writer, segments: Segments) -> io::Result<Self> {
        Self::with_clock(writer, segments, false, 4096, Clock::Ticks(0))
    }

    fn with_clock(
        writer: Writer,
        segments: Segments,
        direct: bool,
        block: usize,
        clock: Clock,
    ) -> io::Result<Self> {
        let zeros = DmaBuf::new(1 << 20, block).map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        Ok(Self { writer, segments, direct, files: BTreeMap::new(), zeros, clock })
    }

    /// The writer's time now, in nanoseconds.
    pub fn now(&self) -> u64 {
        match &self.clock {
            Clock::Real(started) => started.elapsed().as_nanos() as u64,
            Clock::Ticks(now) => *now,
        }
    }

    /// Moves a simulated clock on by `nanos`.
    pub fn tick(&mut self, nanos: u64) {
        if let Clock::Ticks(now) = &mut self.clock {
            *now += nanos;
        }
    }

    /// The writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The writer, to report completions to.
    pub fn writer_mut(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// The open file of `segment` (the writer asked for it to be opened).
    pub fn file(&self, segment: u64) -> &Arc<dyn DiskFile> {
        &self.files[&segment]
    }

    /// The next step the writer wants, with the synchronous ones (open, zero-fill, close) done
    /// here: a write or flush for the driver, or `None`.
    pub fn next(&mut self, shared: &Shared) -> Option<Io> {
        loop {
            let io = self.writer.poll(self.now(), shared)?;
            match io {
                Io::Open { segment } => match self.open_segment(segment) {
                    Ok(len) => self.writer.opened(segment, len),
                    Err(e) => self.fail(Step::Open, segment, e, shared),
                },
                Io::ZeroFill { segment, from, to } => {
                    // Through the same (direct) descriptor: zeros that went through the page
                    // cache would make every later direct write there invalidate cached pages.
                    match zero_fill(&*self.files[&segment], &self.zeros, from, to) {
                        Ok(()) => self.writer.zeroed(segment, shared),
                        Err(e) => self.fail(Step::ZeroFill, segment, e, shared),
                    }
                }
                // Only when nothing is in flight: a queued entry names its file by descriptor.
                Io::Close { segment } => {
                    self.files.remove(&segment);
                }
                Io::Write { .. } | Io::Flush { .. } => return Some(io),
            }
        }
    }

    /// Leads a group commit in the caller's thread, if nothing is in flight: takes every step
    /// the writer wants with blocking calls until the log is durable up to `end` or nothing is
    /// left to do. True if it did anything.
    pub fn lead(&mut self, shared: &Shared, end: u64) -> bool {
        if !self.writer.idle() {
            return false;
        }
        let mut led = false;
        while shared.durable.load(Ordering::Acquire) < end {
            let Some(io) = self.next(shared) else { break };
            led = true;
            match io {
                Io::Write { seq, slot, segment, offset, len, .. } => {
                    let file = &self.files[&segment];
                    let mut result = Ok(0);
                    Buffers::with_bytes(shared, slot, len, &mut |bytes| {
                        result = file.write_at(bytes, offset).map_err(|e| errno(&e));
                    });
                    self.writer.written(seq, result, shared);
                }
                Io::Flush { segment } => {
                    let result = self.files[&segment].sync_data().map_err(|e| errno(&e));
                    self.writer.flushed(segment, result, shared);
                }
                _ => unreachable!("synchronous steps are done in `next`"),
            }
        }
        led
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

    /// A synchronous step failed: the log is poisoned with the error as the kernel gave it.
    fn fail(&mut self, step: Step, segment: u64, source: io::Error, shared: &Shared) {
        let cause = Cause::Os(errno(&source));
        shared.poison(IoFailure { op: step.name(), path: self.segments.path(segment), source });
        self.writer.failed(Failure { step, segment, cause }, shared);
    }
}

pub(crate) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}
