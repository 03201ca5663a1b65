//! The workloads against a `BTreeMap` engine, correct and faulty.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::runner::engine::{EngineKind, Write};

/// A `BTreeMap` engine that can be told to misbehave. It keeps the key indices of every
/// atomic batch it was given, and counts the plain write calls.
#[derive(Default)]
struct MapEngine {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    fault: Fault,
    batches: Mutex<Vec<Vec<u64>>>,
    plain_writes: AtomicU64,
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

impl MapEngine {
    /// Applies `batch` under one lock (so atomically), with the engine's fault.
    fn apply(&self, batch: &[Write<'_>]) {
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
    }
}

impl Engine for MapEngine {
    fn write(&self, batch: &[Write<'_>], _: Durability) -> Result<()> {
        self.plain_writes.fetch_add(1, Ordering::Relaxed);
        self.apply(batch);
        Ok(())
    }

    fn write_batch(&self, batch: &[Write<'_>], _: Durability) -> Result<()> {
        let index = |k: &[u8]| u64::from_be_bytes(k[..8].try_into().unwrap());
        let keys = batch.iter().map(|w| match *w {
            Write::Put(k, _) | Write::Delete(k) => index(k),
        });
        self.batches.lock().unwrap().push(keys.collect());
        self.apply(batch);
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
        batch: 100,
        memory_quota: None,
        cgroup_memory: None,
        rounds: 1,
        dir: ".".into(),
        out: ".".into(),
    }
}

/// Runs `workloads` in order on a `MapEngine` with `fault`; the first error, if any.
fn run(fault: Fault, workloads: &[Workload]) -> Result<()> {
    run_on(&MapEngine { fault, ..MapEngine::default() }, workloads).map(drop)
}

/// Runs `workloads` in order on `engine` at 2 threads; every phase's figures, or the first error.
fn run_on(engine: &MapEngine, workloads: &[Workload]) -> Result<Vec<Figures>> {
    let spec = spec();
    let presence = Presence::new(spec.keys, spec.ops * 4);
    let dir = tempfile::tempdir()?;
    let (written, device, generation) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU32::new(1));
    let progress = ProgressBar::hidden();
    let context = Context {
        spec: &spec,
        engine_name: "map",
        engine,
        dir: dir.path(),
        presence: &presence,
        threads: 2,
        progress: &progress,
        written: &written,
        device_written: &device,
        generation: &generation,
    };
    let mut figures = Vec::new();
    for &w in workloads {
        figures.extend(context.run(w)?);
        generation.fetch_add(1, Ordering::Relaxed);
    }
    Ok(figures)
}

#[test]
fn a_correct_engine_passes_every_workload() {
    // `reopen` closes and reopens the engine, which only the runner that owns it does.
    let all: Vec<Workload> = Workload::ALL.into_iter().filter(|&w| w != Workload::Reopen).collect();
    run(Fault::None, &all).unwrap();
}

#[test]
fn lost_writes_corrupt_values_resurrected_keys_and_bad_scans_are_caught() {
    let err = run(Fault::LosePuts, &[Workload::Fillrandom, Workload::Readrandom]).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    let err = run(Fault::Corrupt, &[Workload::Fillseq, Workload::Readrandom]).unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
    let err = run(Fault::KeepDeleted, &[Workload::Fillrandom, Workload::Deleterandom, Workload::Readrandom])
        .unwrap_err()
        .to_string();
    assert!(err.contains("yet found"), "{err}");
    let err =
        run(Fault::ScanBackwards, &[Workload::Fillrandom, Workload::Seekrandom]).unwrap_err().to_string();
    assert!(err.contains("after"), "{err}");
    let err = run(Fault::LosePuts, &[Workload::Fillrandom, Workload::Readseq]).unwrap_err().to_string();
    assert!(err.contains("readseq"), "{err}");
}

/// fillbatch: every key once, through `write_batch` only, in batches of `spec.batch` whose keys
/// are spread over the key space; the figures count puts, latencies per batch; what it wrote
/// reads back checked, and lost or damaged batch writes are caught.
#[test]
fn fillbatch_writes_atomic_batches_spread_over_the_key_space_and_reads_back() {
    let spec = spec();
    let engine = MapEngine::default();
    let figures = run_on(&engine, &[Workload::Fillbatch, Workload::Readseq, Workload::Readrandom]).unwrap();
    let fill = &figures[0];
    assert_eq!(fill.workload, "fillbatch");
    assert_eq!(fill.ops, spec.keys, "ops count puts");
    assert_eq!(fill.entries_per_call, spec.batch as u64);
    assert_eq!(fill.user_write_bytes, spec.keys * spec.entry_bytes());
    assert_eq!(engine.plain_writes.load(Ordering::Relaxed), 0, "every put went through write_batch");
    let batches = engine.batches.lock().unwrap();
    // 2 threads of 1000 keys each: 10 full batches of 100 each, one write call (one latency) per
    // batch.
    assert_eq!(batches.len(), 20);
    let mut all: Vec<u64> = batches.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..spec.keys).collect::<Vec<_>>(), "every key exactly once");
    for b in batches.iter() {
        assert_eq!(b.len(), spec.batch);
        let (lo, hi) = (b.iter().min().unwrap(), b.iter().max().unwrap());
        assert!(hi - lo > spec.keys / 2, "a batch's keys span only {lo}..={hi} of 0..{}", spec.keys);
    }
    assert_eq!(figures[1].checked, spec.keys, "readseq read back every key fillbatch wrote");
    assert!(figures[2].checked > 0);

    let err = run(Fault::LosePuts, &[Workload::Fillbatch, Workload::Readseq]).unwrap_err().to_string();
    assert!(err.contains("readseq"), "{err}");
    let err = run(Fault::LosePuts, &[Workload::Fillbatch, Workload::Readrandom]).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    let err = run(Fault::Corrupt, &[Workload::Fillbatch, Workload::Readrandom]).unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
}
