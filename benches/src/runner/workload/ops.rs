//! The operations of the workloads and the check of everything they read back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::{slice, Context, Figures, ThreadResult};
use crate::runner::engine::Write;
use crate::runner::spec::Durability;
use crate::runner::Result;
use crate::Rng;

/// Operations a thread does between two updates of the shared progress bar (an update per
/// operation was a contended atomic on every write).
pub(super) const PROGRESS_STEP: u64 = 256;

/// How [`Context::write_keys`] hands its writes to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Calls {
    /// [`Engine::write`](crate::runner::engine::Engine::write), in batches of the engine's
    /// `batch_limit` for the durability (one write per call but for redb and LMDB).
    Plain,
    /// [`Engine::write_batch`](crate::runner::engine::Engine::write_batch): atomic batches of
    /// this many writes (`fillbatch`).
    Atomic(usize),
}

impl Context<'_> {
    /// Writes (or deletes) the keys `index(j)` for this thread's share of `0..count`, in batches
    /// of the engine's size or atomic ones (`calls`), then marks them present (or absent). One
    /// latency per call; the operations counted are the writes.
    #[allow(clippy::too_many_arguments, reason = "one shared routine for every write workload")]
    pub(super) fn write_keys(
        &self,
        th: usize,
        threads: usize,
        count: u64,
        index: impl Fn(u64) -> u64,
        durability: Durability,
        delete: bool,
        calls: Calls,
        r: &mut ThreadResult,
        stop: &AtomicBool,
    ) -> Result<()> {
        let space = self.space();
        let generation = self.generation.load(Ordering::Relaxed);
        let batch_limit = match calls {
            Calls::Plain => self.engine.batch_limit(durability),
            Calls::Atomic(size) => size,
        }
        .max(1);
        let mut keys: Vec<Vec<u8>> = (0..batch_limit).map(|_| Vec::new()).collect();
        let mut values: Vec<Vec<u8>> = (0..batch_limit).map(|_| Vec::new()).collect();
        let mut indices = Vec::with_capacity(batch_limit);
        let mut mine = slice(count, th, threads).peekable();
        let mut unreported = 0;
        while mine.peek().is_some() && !stop.load(Ordering::Relaxed) {
            indices.clear();
            indices.extend(mine.by_ref().take(batch_limit).map(&index));
            for (slot, &i) in indices.iter().enumerate() {
                space.key(i, &mut keys[slot]);
                if !delete {
                    space.value(i, generation, &mut values[slot]);
                }
            }
            let batch: Vec<Write<'_>> = (0..indices.len())
                .map(|s| if delete { Write::Delete(&keys[s]) } else { Write::Put(&keys[s], &values[s]) })
                .collect();
            let started = Instant::now();
            match calls {
                Calls::Plain => self.engine.write(&batch, durability)?,
                Calls::Atomic(_) => self.engine.write_batch(&batch, durability)?,
            }
            r.record(started, indices.len() as u64);
            for &i in &indices {
                self.presence.set(i, !delete);
            }
            let per = if delete { space.key_size } else { space.key_size + space.value_size };
            r.user_write_bytes += (per * indices.len()) as u64;
            unreported += indices.len() as u64;
            if unreported >= PROGRESS_STEP {
                self.progress.inc(std::mem::take(&mut unreported));
            }
        }
        self.progress.inc(unreported);
        Ok(())
    }

    /// Reads `count` keys picked by `pick`, checking each.
    pub(super) fn reads(
        &self,
        count: u64,
        r: &mut ThreadResult,
        stop: &AtomicBool,
        mut pick: impl FnMut() -> u64,
    ) -> Result<()> {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for done in 0..count {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.read_one(pick(), &mut key, &mut value, r, "read")?;
            if done % PROGRESS_STEP == PROGRESS_STEP - 1 {
                self.progress.inc(PROGRESS_STEP);
            }
        }
        Ok(())
    }

    /// Reads key `i` and checks what comes back against [`Presence`].
    pub(super) fn read_one(
        &self,
        i: u64,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
        r: &mut ThreadResult,
        what: &str,
    ) -> Result<()> {
        let space = self.space();
        space.key(i, key);
        let expected = self.presence.is_present(i);
        let started = Instant::now();
        let found = self.engine.get(key, value)?;
        r.record(started, 1);
        match (expected, found) {
            (true, true) => space.check_value(i, value).map_err(|e| self.fail(what, e))?,
            (true, false) => return Err(self.fail(what, format!("key {i} was written but is missing"))),
            // An insert may land between the presence check and the read (YCSB D reads the newest
            // keys while they are inserted; presence is marked only after the write returns):
            // found is right for a key handed to an insert.
            (false, true) if self.presence.is_present(i) || self.presence.is_claimed_insert(i) => {
                space.check_value(i, value).map_err(|e| self.fail(what, e))?
            }
            (false, true) => {
                return Err(self.fail(what, format!("key {i} was never written or was deleted, yet found")))
            }
            (false, false) => {}
        }
        r.checked += 1;
        Ok(())
    }

    /// Seeks to key `i` and reads up to `len` entries, checking order and values.
    pub(super) fn scan_from(&self, i: u64, len: usize, r: &mut ThreadResult, what: &str) -> Result<u64> {
        let space = self.space();
        let mut from = Vec::new();
        space.key(i, &mut from);
        // The previous key is copied into one reused buffer: no allocation per entry.
        let mut previous = from.clone();
        let mut first = true;
        let mut problem: Option<String> = None;
        let started = Instant::now();
        let seen = self.engine.scan(&from, len, &mut |k, v| {
            if problem.is_some() {
                return;
            }
            problem = self.check_entry(k, v, &previous, first);
            first = false;
            previous.clear();
            previous.extend_from_slice(k);
        })?;
        r.record(started, 1);
        if let Some(p) = problem {
            return Err(self.fail(what, p));
        }
        r.checked += seen as u64;
        self.progress.inc(1);
        Ok(seen as u64)
    }

    /// Checks one scanned entry: after `previous` (or at/after the seek key when `first`), a
    /// key of this space that is present, with an intact value.
    pub(super) fn check_entry(&self, k: &[u8], v: &[u8], previous: &[u8], first: bool) -> Option<String> {
        let space = self.space();
        if (first && k < previous) || (!first && k <= previous) {
            return Some(format!("scan returned {k:02x?} after {previous:02x?}"));
        }
        let Some(i) = space.index_of(k) else { return Some(format!("scan returned a foreign key {k:02x?}")) };
        // A key handed to an insert may be in flight (YCSB E).
        if !self.presence.is_present(i) && !self.presence.is_claimed_insert(i) {
            return Some(format!("scan returned key {i}, which is not present"));
        }
        space.check_value(i, v).err()
    }

    /// This thread's share of one full scan: from its first key up to the next thread's, in
    /// calls of 1000 entries; the last thread also covers keys inserted past the loaded ones.
    pub(super) fn read_seq(
        &self,
        th: usize,
        threads: usize,
        r: &mut ThreadResult,
        stop: &AtomicBool,
    ) -> Result<()> {
        let space = self.space();
        let n = self.spec.keys;
        let start = th as u64 * n / threads as u64;
        let end = if th + 1 == threads { u64::MAX } else { (th as u64 + 1) * n / threads as u64 };
        let mut from = Vec::new();
        space.key(start, &mut from);
        // The last key seen, in one reused buffer: no allocation per entry.
        let mut previous = from.clone();
        let mut first = true;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut problem = None;
            let mut mine = 0u64;
            let mut past_end = false;
            let started = Instant::now();
            let seen = self.engine.scan(&from, 1000, &mut |k, v| {
                if past_end || problem.is_some() {
                    return;
                }
                if space.index_of(k).is_some_and(|i| i >= end) {
                    past_end = true;
                    return;
                }
                problem = self.check_entry(k, v, &previous, first);
                first = false;
                previous.clear();
                previous.extend_from_slice(k);
                mine += 1;
            })?;
            r.record(started, mine);
            if let Some(p) = problem {
                return Err(self.fail("readseq", p));
            }
            r.checked += mine;
            self.progress.inc(mine);
            if mine == 0 || past_end || seen != 1000 {
                return Ok(());
            }
            from.clear();
            from.extend_from_slice(&previous);
            from.push(0);
        }
    }

    /// `threads` readers of random keys while one more thread overwrites random keys until
    /// the readers are done; the figures are the readers'.
    pub(super) fn read_while_writing(&self, seed: u64) -> Result<Figures> {
        let n = self.spec.keys;
        let readers = self.threads;
        let done = AtomicU64::new(0);
        let ops = self.spec.ops;
        let writer_generation = self.generation.load(Ordering::Relaxed);
        let body = |th: usize, r: &mut ThreadResult, stop: &AtomicBool| -> Result<()> {
            if th == readers {
                return self.overwrite_until(&done, readers as u64, seed, writer_generation, stop);
            }
            let mut rng = Rng::new(seed ^ th as u64);
            let out = self.reads(slice(ops, th, readers).count() as u64, r, stop, || rng.below(n));
            done.fetch_add(1, Ordering::Release);
            out
        };
        self.phase("readwhilewriting", readers + 1, ops, 1, &body)
    }

    /// The writer of `readwhilewriting`: overwrites random present keys until `target` readers
    /// are done. Its writes are not counted in the figures.
    pub(super) fn overwrite_until(
        &self,
        done: &AtomicU64,
        target: u64,
        seed: u64,
        generation: u32,
        stop: &AtomicBool,
    ) -> Result<()> {
        let space = self.space();
        let mut rng = Rng::new(seed ^ 0xABCD);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        while done.load(Ordering::Acquire) < target && !stop.load(Ordering::Relaxed) {
            let i = rng.below(self.spec.keys);
            if !self.presence.is_present(i) {
                continue;
            }
            space.key(i, &mut key);
            space.value(i, generation, &mut value);
            self.engine.write(&[Write::Put(&key, &value)], self.spec.durability)?;
        }
        Ok(())
    }
}
