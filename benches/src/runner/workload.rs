//! Runs one workload on one open engine: the threads, their operations, the check of every value
//! read back, and the figures of the phase.
//!
//! Every read is checked against [`Presence`]: a key marked present must come back with an intact
//! value of that key, an absent one must not come back at all; scans must return keys in strictly
//! increasing order, each with an intact value. A failed check ends the run with an error naming
//! the engine, the workload and the key.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Instant;

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::Serialize;

use super::engine::{Engine, Write};
use super::keys::{unit, KeySpace, Permutation, Presence, Zipfian};
use super::measure::{self, Sample};
use super::spec::{Distribution, Durability, Spec, Workload};
use super::{BenchError, Result};
use crate::Rng;

/// The figures of one phase (one workload on one engine at one thread count).
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    /// Engine name.
    pub engine: String,
    /// The core count of the sweep this phase belongs to.
    pub cores: usize,
    /// Workload name (`fillsync-tN` for `fillsync` with N threads).
    pub workload: String,
    /// Threads that issued the operations.
    pub threads: usize,
    /// Operations done (entries, for scans and batched writes).
    pub ops: u64,
    /// Wall-clock seconds of the phase.
    pub seconds: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Median latency of one call, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency, microseconds.
    pub p999_us: f64,
    /// Longest call, microseconds.
    pub max_us: f64,
    /// Entries per call the latencies are of (1 but for batched writes and `readseq`).
    pub entries_per_call: u64,
    /// Key and value bytes written by the workload.
    pub user_write_bytes: u64,
    /// Bytes the process sent to storage during the phase (and its final flush).
    pub device_write_bytes: u64,
    /// `device_write_bytes / user_write_bytes` of this phase, for write-only phases.
    pub write_amp: Option<f64>,
    /// Device bytes over user bytes of every write phase so far on this database.
    pub cumulative_write_amp: Option<f64>,
    /// Bytes the process read from storage during the phase.
    pub device_read_bytes: u64,
    /// Disk space of the engine's directory after the phase.
    pub disk_bytes: u64,
    /// Key and value bytes of the keys present after the phase.
    pub live_bytes: u64,
    /// `disk_bytes / live_bytes`.
    pub space_amp: Option<f64>,
    /// Peak resident memory of the process during the phase.
    pub peak_rss_bytes: u64,
    /// CPU seconds of all threads of the process during the phase.
    pub cpu_seconds: f64,
    /// Values and scan entries read back and checked.
    pub checked: u64,
}

/// What a workload runs against.
pub struct Context<'a> {
    /// The run.
    pub spec: &'a Spec,
    /// Engine name, for figures and errors.
    pub engine_name: &'static str,
    /// The open engine.
    pub engine: &'a dyn Engine,
    /// The engine's directory (for its disk space).
    pub dir: &'a Path,
    /// Which keys are present.
    pub presence: &'a Presence,
    /// Threads of this sweep step.
    pub threads: usize,
    /// Progress of the current phase (its length is set per phase).
    pub progress: &'a ProgressBar,
    /// Key and value bytes written by every phase so far, for the cumulative write amplification.
    pub written: &'a AtomicU64,
    /// Device bytes of every phase so far.
    pub device_written: &'a AtomicU64,
    /// Generation of the values the next write phase stores.
    pub generation: &'a AtomicU32,
}

/// What one thread of a phase did.
struct ThreadResult {
    latencies: Histogram<u64>,
    ops: u64,
    user_write_bytes: u64,
    checked: u64,
}

impl ThreadResult {
    fn new() -> Self {
        Self {
            latencies: Histogram::new(3).expect("3 significant digits is valid"),
            ops: 0,
            user_write_bytes: 0,
            checked: 0,
        }
    }

    fn record(&mut self, started: Instant, entries: u64) {
        let ns = started.elapsed().as_nanos().max(1) as u64;
        self.latencies.record(ns).expect("the histogram resizes");
        self.ops += entries;
    }
}

/// Per-thread work: thread index, the thread's result to fill, the stop flag (set when another
/// thread failed).
type Body<'b> = dyn Fn(usize, &mut ThreadResult, &AtomicBool) -> Result<()> + Sync + 'b;

impl Context<'_> {
    fn space(&self) -> KeySpace {
        KeySpace { key_size: self.spec.key_size, value_size: self.spec.value_size }
    }

    fn fail(&self, workload: &str, message: String) -> BenchError {
        format!("{} / {workload}: {message}", self.engine_name).into()
    }

    /// Runs `workload`; `fillsync` gives one phase per thread count.
    pub fn run(&self, workload: Workload) -> Result<Vec<Figures>> {
        let spec = self.spec;
        let n = spec.keys;
        let t = self.threads;
        let d = spec.durability;
        let seed = self.generation.load(Ordering::Relaxed) as u64 * 7919 + 1;
        let one = |name: &str, threads, ops, calls_entries, body: &Body<'_>| {
            self.phase(name, threads, ops, calls_entries, body).map(|f| vec![f])
        };
        match workload {
            Workload::Fillseq => {
                one("fillseq", t, n, 0, &|th, r, stop| self.write_keys(th, t, n, |j| j, d, false, r, stop))
            }
            Workload::Fillrandom | Workload::Overwrite => {
                let order = Permutation::new(n, seed);
                one(workload.name(), t, n, 0, &|th, r, stop| {
                    self.write_keys(th, t, n, |j| order.at(j), d, false, r, stop)
                })
            }
            Workload::Deleterandom => {
                let order = Permutation::new(n, seed);
                one("deleterandom", t, n, 0, &|th, r, stop| {
                    self.write_keys(th, t, n, |j| order.at(j), d, true, r, stop)
                })
            }
            Workload::Readrandom => one("readrandom", t, spec.ops, 1, &|th, r, stop| {
                let mut rng = Rng::new(seed ^ th as u64);
                self.reads(slice(spec.ops, th, t).count() as u64, r, stop, || rng.below(n))
            }),
            Workload::Readseq => {
                let live = self.presence.live();
                let f = self.phase("readseq", t, live, 1000, &|th, r, stop| self.read_seq(th, t, r, stop))?;
                if f.checked != live {
                    return Err(self
                        .fail("readseq", format!("a full scan saw {} keys, {live} are present", f.checked)));
                }
                Ok(vec![f])
            }
            Workload::Seekrandom => {
                let seeks = (spec.ops / 10).max(1);
                one("seekrandom", t, seeks, 1, &|th, r, stop| {
                    let mut rng = Rng::new(seed ^ th as u64);
                    for _ in slice(seeks, th, t) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = rng.below(n);
                        self.scan_from(i, spec.scan_len, r, "seekrandom")?;
                    }
                    Ok(())
                })
            }
            Workload::Readwhilewriting => self.read_while_writing(seed).map(|f| vec![f]),
            Workload::Compact => one("compact", 1, 1, 1, &|_, r, _| {
                let started = Instant::now();
                self.engine.compact()?;
                r.record(started, 1);
                Ok(())
            }),
            Workload::Fillsync => spec
                .sync_threads
                .iter()
                .map(|&threads| {
                    let name = format!("fillsync-t{threads}");
                    let order = Permutation::new(n, seed ^ threads as u64);
                    let ops = spec.sync_ops;
                    self.phase(&name, threads, ops, 0, &|th, r, stop| {
                        self.write_keys(
                            th,
                            threads,
                            ops,
                            |j| order.at(j % n),
                            Durability::Sync,
                            false,
                            r,
                            stop,
                        )
                    })
                })
                .collect(),
            Workload::YcsbA
            | Workload::YcsbB
            | Workload::YcsbC
            | Workload::YcsbD
            | Workload::YcsbE
            | Workload::YcsbF => {
                let zipf = (spec.distribution == Distribution::Zipfian).then(|| Zipfian::new(n));
                one(workload.name(), t, spec.ops, 1, &|th, r, stop| {
                    self.ycsb(
                        workload,
                        zipf.as_ref(),
                        seed ^ th as u64,
                        slice(spec.ops, th, t).count() as u64,
                        r,
                        stop,
                    )
                })
            }
        }
    }

    /// Runs `body` on `threads` threads and measures the phase. `entries_per_call` is what the
    /// latencies are of (0: the engine's write batch).
    fn phase(
        &self,
        name: &str,
        threads: usize,
        ops: u64,
        entries_per_call: u64,
        body: &Body<'_>,
    ) -> Result<Figures> {
        self.progress.set_length(ops);
        self.progress.set_position(0);
        self.progress.set_message(format!("{} {name} ({threads} threads)", self.engine_name));
        // SAFETY: plain syscall; earlier phases' dirty pages reach the disk before the clock.
        unsafe { libc::sync() };
        measure::reset_peak_rss();
        let stop = AtomicBool::new(false);
        // Threads start, set up their own state (whose first allocations fault in fresh memory
        // for each thread's allocator heap), and wait; the clock starts when all are ready.
        let ready = Barrier::new(threads + 1);
        let (results, before, started): (Vec<Result<ThreadResult>>, _, _) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|th| {
                    let (stop, ready) = (&stop, &ready);
                    s.spawn(move || {
                        let mut r = ThreadResult::new();
                        ready.wait();
                        let out = body(th, &mut r, stop);
                        if out.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        out.map(|()| r)
                    })
                })
                .collect();
            ready.wait();
            let (before, started) = (Sample::now(), Instant::now());
            let results = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a worker thread panicked".into())))
                .collect();
            (results, before, started)
        });
        let seconds = started.elapsed().as_secs_f64();
        self.engine.flush()?;
        let delta = Sample::now().since(&before);
        let peak_rss_bytes = measure::peak_rss();
        let mut all = ThreadResult::new();
        for r in results {
            let r = r?;
            all.latencies.add(&r.latencies).expect("histograms of the same precision");
            all.ops += r.ops;
            all.user_write_bytes += r.user_write_bytes;
            all.checked += r.checked;
        }
        self.progress.set_position(ops);
        let user_total =
            self.written.fetch_add(all.user_write_bytes, Ordering::Relaxed) + all.user_write_bytes;
        let device_total = self.device_written.fetch_add(delta.device_write_bytes, Ordering::Relaxed)
            + delta.device_write_bytes;
        let disk_bytes = measure::disk_bytes(self.dir);
        let live_bytes = self.presence.live() * self.spec.entry_bytes();
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let us = |q: f64| all.latencies.value_at_quantile(q) as f64 / 1000.0;
        let batch = if entries_per_call == 0 {
            self.engine.batch_limit(if name.starts_with("fillsync") {
                Durability::Sync
            } else {
                self.spec.durability
            })
        } else {
            entries_per_call as usize
        };
        Ok(Figures {
            engine: self.engine_name.to_string(),
            cores: self.threads,
            workload: name.to_string(),
            threads,
            ops: all.ops,
            seconds,
            ops_per_sec: all.ops as f64 / seconds.max(1e-9),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: all.latencies.max() as f64 / 1000.0,
            entries_per_call: batch as u64,
            user_write_bytes: all.user_write_bytes,
            device_write_bytes: delta.device_write_bytes,
            write_amp: if all.user_write_bytes > 0 {
                ratio(delta.device_write_bytes, all.user_write_bytes)
            } else {
                None
            },
            cumulative_write_amp: ratio(device_total, user_total),
            device_read_bytes: delta.device_read_bytes,
            disk_bytes,
            live_bytes,
            space_amp: ratio(disk_bytes, live_bytes),
            peak_rss_bytes,
            cpu_seconds: delta.cpu.as_secs_f64(),
            checked: all.checked,
        })
    }

    /// Writes (or deletes) the keys `index(j)` for this thread's share of `0..count`, in batches
    /// of the engine's size, then marks them present (or absent).
    #[allow(clippy::too_many_arguments, reason = "one shared routine for every write workload")]
    fn write_keys(
        &self,
        th: usize,
        threads: usize,
        count: u64,
        index: impl Fn(u64) -> u64,
        durability: Durability,
        delete: bool,
        r: &mut ThreadResult,
        stop: &AtomicBool,
    ) -> Result<()> {
        let space = self.space();
        let generation = self.generation.load(Ordering::Relaxed);
        let batch_limit = self.engine.batch_limit(durability).max(1);
        let mut keys: Vec<Vec<u8>> = (0..batch_limit).map(|_| Vec::new()).collect();
        let mut values: Vec<Vec<u8>> = (0..batch_limit).map(|_| Vec::new()).collect();
        let mut indices = Vec::with_capacity(batch_limit);
        let mut mine = slice(count, th, threads).peekable();
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
            self.engine.write(&batch, durability)?;
            r.record(started, indices.len() as u64);
            for &i in &indices {
                self.presence.set(i, !delete);
            }
            let per = if delete { space.key_size } else { space.key_size + space.value_size };
            r.user_write_bytes += (per * indices.len()) as u64;
            self.progress.inc(indices.len() as u64);
        }
        Ok(())
    }

    /// Reads `count` keys picked by `pick`, checking each.
    fn reads(
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
            if done % 256 == 255 {
                self.progress.inc(256);
            }
        }
        Ok(())
    }

    /// Reads key `i` and checks what comes back against [`Presence`].
    fn read_one(
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
    fn scan_from(&self, i: u64, len: usize, r: &mut ThreadResult, what: &str) -> Result<u64> {
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
    fn check_entry(&self, k: &[u8], v: &[u8], previous: &[u8], first: bool) -> Option<String> {
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
    fn read_seq(&self, th: usize, threads: usize, r: &mut ThreadResult, stop: &AtomicBool) -> Result<()> {
        let space = self.space();
        let n = self.spec.keys;
        let start = th as u64 * n / threads as u64;
        let end = if th + 1 == threads { u64::MAX } else { (th as u64 + 1) * n / threads as u64 };
        let mut from = Vec::new();
        space.key(start, &mut from);
        let mut last: Option<Vec<u8>> = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut problem = None;
            let mut batch_last = None;
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
                let first = last.is_none() && batch_last.is_none();
                let prev = batch_last.as_deref().or(last.as_deref()).unwrap_or(&from[..]);
                problem = self.check_entry(k, v, prev, first);
                batch_last = Some(k.to_vec());
                mine += 1;
            })?;
            r.record(started, mine);
            if let Some(p) = problem {
                return Err(self.fail("readseq", p));
            }
            r.checked += mine;
            self.progress.inc(mine);
            match batch_last {
                Some(k) if !past_end && seen == 1000 => {
                    from = k.clone();
                    from.push(0);
                    last = Some(k);
                }
                _ => return Ok(()),
            }
        }
    }

    /// `threads` readers of random keys while one more thread overwrites random keys until
    /// the readers are done; the figures are the readers'.
    fn read_while_writing(&self, seed: u64) -> Result<Figures> {
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
    fn overwrite_until(
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

    /// One thread's share of a YCSB workload.
    fn ycsb(
        &self,
        w: Workload,
        zipf: Option<&Zipfian>,
        seed: u64,
        count: u64,
        r: &mut ThreadResult,
        stop: &AtomicBool,
    ) -> Result<()> {
        let space = self.space();
        let n = self.spec.keys;
        let generation = self.generation.load(Ordering::Relaxed);
        let mut rng = Rng::new(seed);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        let (read_percent, write_kind) = match w {
            Workload::YcsbA => (50, "update"),
            Workload::YcsbB => (95, "update"),
            Workload::YcsbC => (100, "update"),
            Workload::YcsbD | Workload::YcsbE => (95, "insert"),
            _ => (50, "read-modify-write"),
        };
        for done in 0..count {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let u = unit(rng.next_u64());
            // YCSB D skews by recency: its Zipfian rank (0 = newest) is not scrambled.
            let pick = match zipf {
                Some(z) if w == Workload::YcsbD => z.rank(u),
                Some(z) => z.index(u),
                None => (u * n as f64) as u64 % n,
            };
            let reading = rng.below(100) < read_percent;
            if reading && w == Workload::YcsbE {
                let len = 1 + rng.below(self.spec.scan_len as u64) as usize;
                self.scan_from(pick, len, r, w.name())?;
                continue;
            }
            if reading {
                let i = if w == Workload::YcsbD { self.latest(pick) } else { pick };
                self.read_one(i, &mut key, &mut value, r, w.name())?;
            } else {
                let i = match write_kind {
                    "insert" => match self.presence.claim_insert() {
                        Some(i) => i,
                        None => pick,
                    },
                    "read-modify-write" => {
                        self.read_one(pick, &mut key, &mut value, r, w.name())?;
                        pick
                    }
                    _ => pick,
                };
                if !self.presence.is_present(i) && i < self.presence.inserted_base() {
                    continue;
                }
                space.key(i, &mut key);
                space.value(i, generation, &mut value);
                let started = Instant::now();
                self.engine.write(&[Write::Put(&key, &value)], self.spec.durability)?;
                r.record(started, 1);
                self.presence.set(i, true);
                r.user_write_bytes += self.spec.entry_bytes();
            }
            if done % 256 == 255 {
                self.progress.inc(256);
            }
        }
        Ok(())
    }

    /// YCSB D's "latest" choice: the `rank`-th newest key (inserted keys first, then the loaded
    /// ones from the top; with the Zipfian distribution, low ranks are the likely ones).
    fn latest(&self, rank: u64) -> u64 {
        let end = self.presence.insert_end();
        end - 1 - rank % end
    }
}

/// Thread `th`'s share of `0..count` when `threads` threads split it into contiguous slices.
fn slice(count: u64, th: usize, threads: usize) -> std::ops::Range<u64> {
    let (th, threads) = (th as u64, threads as u64);
    th * count / threads..(th + 1) * count / threads
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::runner::engine::EngineKind;

    /// A `BTreeMap` engine that can be told to misbehave.
    #[derive(Default)]
    struct MapEngine {
        map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        fault: Fault,
    }

    #[derive(Default, Clone, Copy, PartialEq)]
    enum Fault {
        #[default]
        None,
        /// Drops every 97th put.
        LosePuts,
        /// Flips a byte of every value read.
        Corrupt,
        /// Ignores deletes.
        KeepDeleted,
        /// Returns scans in reverse order.
        ScanBackwards,
    }

    impl Engine for MapEngine {
        fn write(&self, batch: &[Write<'_>], _: Durability) -> Result<()> {
            let mut map = self.map.lock().unwrap();
            for w in batch {
                match *w {
                    Write::Put(k, v) => {
                        if !(self.fault == Fault::LosePuts
                            && crate::splitmix64(k[7] as u64 ^ k[6] as u64) % 97 == 0)
                        {
                            map.insert(k.to_vec(), v.to_vec());
                        }
                    }
                    Write::Delete(k) => {
                        if self.fault != Fault::KeepDeleted {
                            map.remove(k);
                        }
                    }
                }
            }
            Ok(())
        }

        fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
            let map = self.map.lock().unwrap();
            Ok(match map.get(key) {
                Some(v) => {
                    *out = v.clone();
                    if self.fault == Fault::Corrupt {
                        out[20] ^= 1;
                    }
                    true
                }
                None => false,
            })
        }

        fn scan(&self, from: &[u8], limit: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
            let map = self.map.lock().unwrap();
            let mut entries: Vec<_> = map.range(from.to_vec()..).take(limit).collect();
            if self.fault == Fault::ScanBackwards {
                entries.reverse();
            }
            for (k, v) in &entries {
                visit(k, v);
            }
            Ok(entries.len())
        }

        fn flush(&self) -> Result<()> {
            Ok(())
        }

        fn compact(&self) -> Result<()> {
            Ok(())
        }

        fn close(self: Box<Self>) -> Result<()> {
            Ok(())
        }
    }

    fn spec() -> Spec {
        Spec {
            engines: vec![EngineKind::Helio],
            workloads: vec![],
            keys: 2000,
            ops: 2000,
            key_size: 16,
            value_size: 64,
            cores: vec![2],
            durability: Durability::Buffered,
            distribution: Distribution::Zipfian,
            scan_len: 50,
            sync_threads: vec![2],
            sync_ops: 100,
            memory_quota: None,
            dir: ".".into(),
            out: ".".into(),
        }
    }

    /// Runs `workloads` in order on a `MapEngine` with `fault`; the first error, if any.
    fn run(fault: Fault, workloads: &[Workload]) -> Result<()> {
        let spec = spec();
        let engine = MapEngine { fault, ..MapEngine::default() };
        let presence = Presence::new(spec.keys, spec.ops * 4);
        let dir = tempfile::tempdir()?;
        let (written, device, generation) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU32::new(1));
        let progress = ProgressBar::hidden();
        let context = Context {
            spec: &spec,
            engine_name: "map",
            engine: &engine,
            dir: dir.path(),
            presence: &presence,
            threads: 2,
            progress: &progress,
            written: &written,
            device_written: &device,
            generation: &generation,
        };
        for &w in workloads {
            context.run(w)?;
            generation.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    #[test]
    fn a_correct_engine_passes_every_workload() {
        run(Fault::None, &Workload::ALL).unwrap();
    }

    #[test]
    fn lost_writes_corrupt_values_resurrected_keys_and_bad_scans_are_caught() {
        let err =
            run(Fault::LosePuts, &[Workload::Fillrandom, Workload::Readrandom]).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        let err = run(Fault::Corrupt, &[Workload::Fillseq, Workload::Readrandom]).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        let err =
            run(Fault::KeepDeleted, &[Workload::Fillrandom, Workload::Deleterandom, Workload::Readrandom])
                .unwrap_err()
                .to_string();
        assert!(err.contains("yet found"), "{err}");
        let err =
            run(Fault::ScanBackwards, &[Workload::Fillrandom, Workload::Seekrandom]).unwrap_err().to_string();
        assert!(err.contains("after"), "{err}");
        let err = run(Fault::LosePuts, &[Workload::Fillrandom, Workload::Readseq]).unwrap_err().to_string();
        assert!(err.contains("readseq"), "{err}");
    }
}
