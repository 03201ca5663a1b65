//! The workloads against a `BTreeMap` engine, correct and faulty.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::runner::engine::{EngineKind, Write};

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
        rounds: 1,
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
