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

use self::ops::Calls;
use super::engine::Engine;
use super::keys::{KeySpace, Permutation, Presence, Zipfian};
use super::measure::{self, Sample};
use super::spec::{Distribution, Durability, Spec, Workload};
use super::{BenchError, Result};
use crate::Rng;

/// The figures of one phase (one workload on one engine at one thread count).
#[derive(Clone, Debug, Default, Serialize)]
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
    /// This phase's throughput in every round of the run, in round order (one entry without
    /// `--rounds`); the other figures are those of the median round (see `rounds`).
    pub round_ops_per_sec: Vec<f64>,
    /// The increase of each of the engine's own counters over the phase (see
    /// `Engine::counters`), by name.
    pub engine_counters: Vec<(String, u64)>,
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
        // Entries per write call: the engine's batch for this durability.
        let batch = self.engine.batch_limit(d) as u64;
        let one = |name: &str, threads, ops, calls_entries, body: &Body<'_>| {
            self.phase(name, threads, ops, calls_entries, body).map(|f| vec![f])
        };
        match workload {
            Workload::Fillseq => one("fillseq", t, n, batch, &|th, r, stop| {
                self.write_keys(th, t, n, |j| j, d, false, Calls::Plain, r, stop)
            }),
            Workload::Fillrandom | Workload::Overwrite => {
                let order = Permutation::new(n, seed);
                one(workload.name(), t, n, batch, &|th, r, stop| {
                    self.write_keys(th, t, n, |j| order.at(j), d, false, Calls::Plain, r, stop)
                })
            }
            Workload::Fillbatch => {
                // A random order, as fillrandom: the puts of one batch are spread over the
                // whole key space (in Helio, over every shard).
                let order = Permutation::new(n, seed);
                let size = spec.batch;
                one("fillbatch", t, n, size as u64, &|th, r, stop| {
                    self.write_keys(th, t, n, |j| order.at(j), d, false, Calls::Atomic(size), r, stop)
                })
            }
            Workload::Deleterandom => {
                let order = Permutation::new(n, seed);
                one("deleterandom", t, n, batch, &|th, r, stop| {
                    self.write_keys(th, t, n, |j| order.at(j), d, true, Calls::Plain, r, stop)
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
                    let batch = self.engine.batch_limit(Durability::Sync) as u64;
                    self.phase(&name, threads, ops, batch, &|th, r, stop| {
                        self.write_keys(
                            th,
                            threads,
                            ops,
                            |j| order.at(j % n),
                            Durability::Sync,
                            false,
                            Calls::Plain,
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
            // The engine is closed and opened again, which only its owner can do: see [`reopen`].
            Workload::Reopen => Err(self.fail("reopen", "run through workload::reopen".into())),
        }
    }

    /// Runs `body` on `threads` threads and measures the phase. `entries_per_call` is what the
    /// latencies are of (the engine's write batch, for writes).
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
        let counters_before = self.engine.counters();
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
        let ops_per_sec = all.ops as f64 / seconds.max(1e-9);
        Ok(Figures {
            engine: self.engine_name.to_string(),
            cores: self.threads,
            workload: name.to_string(),
            threads,
            ops: all.ops,
            seconds,
            ops_per_sec,
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: all.latencies.max() as f64 / 1000.0,
            entries_per_call,
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
            round_ops_per_sec: vec![ops_per_sec],
            engine_counters: counter_increases(&counters_before, &self.engine.counters()),
        })
    }
}

/// Each counter of `after` less its value in `before` (0 where `before` lacks it).
fn counter_increases(before: &[(&str, u64)], after: &[(&'static str, u64)]) -> Vec<(String, u64)> {
    let at_start = |name: &str| before.iter().find(|(n, _)| *n == name).map_or(0, |&(_, v)| v);
    after.iter().map(|&(name, v)| (name.to_string(), v.saturating_sub(at_start(name)))).collect()
}

/// The `reopen` phase: closes `engine` cleanly, opens it again with `open` and reads one key
/// back; its figures are the entries present per second of the open, the bytes it read and
/// its peak memory. Returns the reopened engine.
pub fn reopen(
    spec: &Spec,
    engine_name: &'static str,
    dir: &Path,
    presence: &Presence,
    threads: usize,
    engine: Box<dyn Engine>,
    open: impl FnOnce() -> Result<Box<dyn Engine>>,
) -> Result<(Box<dyn Engine>, Figures)> {
    engine.close()?;
    // SAFETY: plain syscall; the close's dirty pages reach the disk before the clock.
    unsafe { libc::sync() };
    measure::reset_peak_rss();
    let (before, started) = (Sample::now(), Instant::now());
    let engine = open()?;
    let seconds = started.elapsed().as_secs_f64();
    let delta = Sample::now().since(&before);
    let live = presence.live();
    // One read checks that the reopened engine holds its data.
    let space = KeySpace { key_size: spec.key_size, value_size: spec.value_size };
    let first_present = (0..spec.keys).find(|&i| presence.is_present(i));
    if let Some(i) = first_present {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        space.key(i, &mut key);
        if !engine.get(&key, &mut value)? {
            return Err(format!("{engine_name} / reopen: key {i} is gone after the reopen").into());
        }
        space.check_value(i, &value).map_err(|e| format!("{engine_name} / reopen: {e}"))?;
    }
    let disk_bytes = measure::disk_bytes(dir);
    let live_bytes = live * spec.entry_bytes();
    let figures = Figures {
        engine: engine_name.to_string(),
        cores: threads,
        workload: "reopen".into(),
        threads: 1,
        ops: live,
        seconds,
        ops_per_sec: live as f64 / seconds.max(1e-9),
        entries_per_call: live,
        device_write_bytes: delta.device_write_bytes,
        device_read_bytes: delta.device_read_bytes,
        disk_bytes,
        live_bytes,
        space_amp: (live_bytes > 0).then(|| disk_bytes as f64 / live_bytes as f64),
        peak_rss_bytes: measure::peak_rss(),
        cpu_seconds: delta.cpu.as_secs_f64(),
        checked: u64::from(first_present.is_some()),
        round_ops_per_sec: vec![live as f64 / seconds.max(1e-9)],
        ..Figures::default()
    };
    Ok((engine, figures))
}

/// Thread `th`'s share of `0..count` when `threads` threads split it into contiguous slices.
fn slice(count: u64, th: usize, threads: usize) -> std::ops::Range<u64> {
    let (th, threads) = (th as u64, threads as u64);
    th * count / threads..(th + 1) * count / threads
}

mod ops;
mod ycsb;

#[cfg(test)]
mod tests;
