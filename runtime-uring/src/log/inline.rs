//! The log's writer driven without an I/O thread, through the [`Disk`](crate::disk::Disk)
//! calls, by whichever thread waits on the log (a `Sync` write, `sync()`, a writer waiting for
//! a free buffer). This is how a log on the simulated disk runs: every step happens in the
//! test's own thread, so a seeded run is repeatable.
//!
//! It models an asynchronous device: a write is executed (its bytes reach the disk's volatile
//! cache) only when its completion is delivered, completions are delivered a few at a time in
//! a random order from the seed, a flush covers what was delivered before it was issued, and
//! the flush linked behind a group commit's write runs right after that write.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use helio_core::log::writer::{Buffers, Cause, Failure, Io, Step, Writer};

use super::shared::Shared;
use crate::disk::{DiskFile, OpenHow};
use crate::segments::{zero_fill, Segments};

/// Nanoseconds of the writer's clock per pump: a `Buffered` interval of 10 ms passes in ten.
const TICK: u64 = 1_000_000;

/// An inline-driven writer.
pub(crate) struct Inline {
    state: Mutex<State>,
}

struct State {
    writer: Writer,
    segments: Segments,
    files: BTreeMap<u64, Arc<dyn DiskFile>>,
    /// Writes submitted, not yet executed and completed: (seq, segment, offset, slot, len,
    /// linked).
    submitted: Vec<Submitted>,
    /// Flushes submitted behind a linked write, run once it completes.
    linked_flush: BTreeMap<u64, u64>,
    /// Flushes submitted: run when delivered.
    flushes: Vec<u64>,
    clock: u64,
    rng: u64,
    zeros: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Submitted {
    seq: u64,
    segment: u64,
    offset: u64,
    slot: usize,
    len: usize,
}

impl Inline {
    /// A driver for `writer` on the segments' disk, its completion order drawn from `seed`.
    pub fn new(writer: Writer, segments: Segments, seed: u64) -> Self {
        let state = State {
            writer,
            segments,
            files: BTreeMap::new(),
            submitted: Vec::new(),
            linked_flush: BTreeMap::new(),
            flushes: Vec::new(),
            clock: 0,
            rng: seed | 1,
            zeros: vec![0; 1 << 16],
        };
        Self { state: Mutex::new(state) }
    }

    /// One step: takes every I/O the writer asks for, then delivers some of the completions
    /// pending. False if there was nothing to do (or another thread drives the writer now).
    pub fn pump(&self, shared: &Shared) -> bool {
        let Ok(mut state) = self.state.try_lock() else { return false };
        state.clock += TICK;
        let mut progressed = false;
        while let Some(io) = {
            let now = state.clock;
            state.writer.poll(now, shared)
        } {
            state.execute(io, shared);
            progressed = true;
        }
        progressed | state.deliver(shared)
    }
}

impl State {
    fn execute(&mut self, io: Io, shared: &Shared) {
        match io {
            Io::Open { segment } => match self.open_segment(segment) {
                Ok(len) => self.writer.opened(segment, len),
                Err(e) => self.fail(Step::Open, segment, e, shared),
            },
            Io::ZeroFill { segment, from, to } => {
                match zero_fill(&*self.files[&segment], &self.zeros, from, to) {
                    Ok(()) => self.writer.zeroed(segment, shared),
                    Err(e) => self.fail(Step::ZeroFill, segment, e, shared),
                }
            }
            Io::Write { seq, slot, segment, offset, len, linked } => {
                self.submitted.push(Submitted { seq, segment, offset, slot, len });
                if linked {
                    // The flush the writer asks for next is linked behind this write.
                    let now = self.clock;
                    match self.writer.poll(now, shared) {
                        Some(Io::Flush { segment: s }) if s == segment => {
                            self.linked_flush.insert(seq, segment);
                        }
                        other => panic!("a linked write must be followed by its flush, not {other:?}"),
                    }
                }
            }
            Io::Flush { segment } => self.flushes.push(segment),
            Io::Close { segment } => {
                self.files.remove(&segment);
            }
        }
    }

    /// Completes some of the pending writes and flushes, in a random order; true if any.
    fn deliver(&mut self, shared: &Shared) -> bool {
        let mut delivered = false;
        let mut left = self.submitted.len() + self.flushes.len();
        while left > 0 {
            left -= 1;
            let pick = self.next() as usize % (self.submitted.len() + self.flushes.len());
            // Each pending completion arrives in this pump with probability one half, and at
            // least one arrives.
            if delivered && self.next() % 2 == 0 {
                continue;
            }
            delivered = true;
            if pick < self.submitted.len() {
                let write = self.submitted.swap_remove(pick);
                self.complete_write(write, shared);
            } else {
                let segment = self.flushes.swap_remove(pick - self.submitted.len());
                let result = self.files[&segment].sync_data().map_err(|e| errno(&e));
                self.writer.flushed(segment, result, shared);
            }
            if self.submitted.is_empty() && self.flushes.is_empty() {
                break;
            }
        }
        delivered
    }

    fn complete_write(&mut self, write: Submitted, shared: &Shared) {
        let file = self.files[&write.segment].clone();
        let mut result = Ok(0);
        Buffers::with_bytes(shared, write.slot, write.len, &mut |bytes| {
            result = file.write_at(bytes, write.offset).map_err(|e| errno(&e));
        });
        let failed = !matches!(result, Ok(n) if n == write.len);
        self.writer.written(write.seq, result, shared);
        if let Some(segment) = self.linked_flush.remove(&write.seq) {
            // io_uring cancels a linked flush whose write failed.
            let result = if failed { Err(libc::ECANCELED) } else { file.sync_data().map_err(|e| errno(&e)) };
            self.writer.flushed(segment, result, shared);
        }
    }

    fn open_segment(&mut self, segment: u64) -> std::io::Result<u64> {
        if self.segments.open(segment)?.is_none() {
            self.segments.create(segment, 0)?;
        }
        let file = self.segments.open_as(segment, OpenHow::ReadWrite)?.ok_or(std::io::ErrorKind::NotFound)?;
        let len = file.len()?;
        self.files.insert(segment, file);
        Ok(len)
    }

    fn fail(&mut self, step: Step, segment: u64, source: std::io::Error, shared: &Shared) {
        let cause = Cause::Os(errno(&source));
        shared.poison(super::error::IoFailure { op: step.name(), path: self.segments.path(segment), source });
        self.writer.failed(Failure { step, segment, cause }, shared);
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}
