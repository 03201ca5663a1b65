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
use std::sync::Mutex;

use helio_core::log::writer::{Buffers, Io, Writer};

use super::engine::{errno, Engine};
use super::shared::Shared;
use crate::segments::Segments;

/// Nanoseconds of the writer's clock per pump: a `Buffered` interval of 10 ms passes in ten.
const TICK: u64 = 1_000_000;

/// An inline-driven writer.
pub(crate) struct Inline {
    state: Mutex<State>,
}

struct State {
    engine: Engine,
    /// Writes submitted, not yet executed and completed.
    submitted: Vec<Submitted>,
    /// Flushes submitted behind a linked write (by the write's fill), run once it completes.
    linked_flush: BTreeMap<u64, u64>,
    /// Flushes submitted: run when delivered.
    flushes: Vec<u64>,
    rng: u64,
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
    pub fn new(writer: Writer, segments: Segments, seed: u64) -> std::io::Result<Self> {
        let state = State {
            engine: Engine::simulated(writer, segments)?,
            submitted: Vec::new(),
            linked_flush: BTreeMap::new(),
            flushes: Vec::new(),
            rng: seed | 1,
        };
        Ok(Self { state: Mutex::new(state) })
    }

    /// One step: takes every I/O the writer asks for, then delivers some of the completions
    /// pending. False if there was nothing to do (or another thread drives the writer now).
    pub fn pump(&self, shared: &Shared) -> bool {
        let Ok(mut state) = self.state.try_lock() else { return false };
        state.engine.tick(TICK);
        let mut progressed = false;
        while let Some(io) = state.engine.next(shared) {
            state.submit(io, shared);
            progressed = true;
        }
        progressed | state.deliver(shared)
    }
}

impl State {
    fn submit(&mut self, io: Io, shared: &Shared) {
        match io {
            Io::Write { seq, slot, segment, offset, len, linked } => {
                self.submitted.push(Submitted { seq, segment, offset, slot, len });
                if linked {
                    // The flush the writer asks for next is linked behind this write.
                    match self.engine.next(shared) {
                        Some(Io::Flush { segment: s }) if s == segment => {
                            self.linked_flush.insert(seq, segment);
                        }
                        other => panic!("a linked write must be followed by its flush, not {other:?}"),
                    }
                }
            }
            Io::Flush { segment } => self.flushes.push(segment),
            _ => unreachable!("synchronous steps are done by the engine"),
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
                let result = self.engine.file(segment).sync_data().map_err(|e| errno(&e));
                self.engine.writer_mut().flushed(segment, result, shared);
            }
            if self.submitted.is_empty() && self.flushes.is_empty() {
                break;
            }
        }
        delivered
    }

    fn complete_write(&mut self, write: Submitted, shared: &Shared) {
        let file = self.engine.file(write.segment).clone();
        let mut result = Ok(0);
        Buffers::with_bytes(shared, write.slot, write.len, &mut |bytes| {
            result = file.write_at(bytes, write.offset).map_err(|e| errno(&e));
        });
        let failed = !matches!(result, Ok(n) if n == write.len);
        self.engine.writer_mut().written(write.seq, result, shared);
        if let Some(segment) = self.linked_flush.remove(&write.seq) {
            // io_uring cancels a linked flush whose write failed.
            let result = if failed { Err(libc::ECANCELED) } else { file.sync_data().map_err(|e| errno(&e)) };
            self.engine.writer_mut().flushed(segment, result, shared);
        }
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}
