//! The engines a run compares, behind one small trait, and how each is opened and configured.
//!
//! Each adapter lives in its own module and is compiled in by the cargo feature of the same
//! name (`rocksdb`, `fjall`, `sled`, `redb`, `lmdb`); Helio is always there. An adapter does
//! what its engine's documentation recommends for these workloads and says so in
//! [`Opened::config`], which the report prints.

use std::path::Path;

use serde::Serialize;

use super::spec::Durability;
use super::Result;

#[cfg(feature = "fjall")]
mod fjall;
mod helio;
#[cfg(feature = "lmdb")]
mod lmdb;
#[cfg(feature = "redb")]
mod redb;
#[cfg(feature = "rocksdb")]
mod rocksdb;
#[cfg(feature = "sled")]
mod sled;

/// The engines the runner knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// This repository's `helio::Store`.
    Helio,
    /// RocksDB through the `rocksdb` crate (feature `rocksdb`).
    Rocksdb,
    /// fjall (feature `fjall`).
    Fjall,
    /// sled (feature `sled`).
    Sled,
    /// redb (feature `redb`).
    Redb,
    /// LMDB through `heed` (feature `lmdb`).
    Lmdb,
}

impl EngineKind {
    /// The engine's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Helio => "helio",
            EngineKind::Rocksdb => "rocksdb",
            EngineKind::Fjall => "fjall",
            EngineKind::Sled => "sled",
            EngineKind::Redb => "redb",
            EngineKind::Lmdb => "lmdb",
        }
    }

    /// Whether this build includes the engine.
    pub fn compiled_in(self) -> bool {
        match self {
            EngineKind::Helio => true,
            EngineKind::Rocksdb => cfg!(feature = "rocksdb"),
            EngineKind::Fjall => cfg!(feature = "fjall"),
            EngineKind::Sled => cfg!(feature = "sled"),
            EngineKind::Redb => cfg!(feature = "redb"),
            EngineKind::Lmdb => cfg!(feature = "lmdb"),
        }
    }

    /// Every engine this build includes, Helio first.
    pub fn available() -> Vec<EngineKind> {
        [Self::Helio, Self::Rocksdb, Self::Fjall, Self::Sled, Self::Redb, Self::Lmdb]
            .into_iter()
            .filter(|e| e.compiled_in())
            .collect()
    }
}

/// One write of a batch.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    /// Set a key.
    Put(&'a [u8], &'a [u8]),
    /// Remove a key.
    Delete(&'a [u8]),
}

/// What the workloads need from an engine. Every method may be called from many threads.
pub trait Engine: Send + Sync {
    /// Applies `batch` with durability `durability`. Engines with transactions apply a batch as
    /// one transaction; the others write its entries one by one.
    fn write(&self, batch: &[Write<'_>], durability: Durability) -> Result<()>;

    /// Applies `batch` atomically through the engine's own batch API (Helio's `WriteBatch`,
    /// RocksDB's and sled's `Batch`, fjall's `WriteBatch`, one transaction in redb and LMDB):
    /// readers see all of its writes or none, and so does recovery. `durability` as for
    /// [`Engine::write`], for the batch as a whole. What `fillbatch` measures.
    fn write_batch(&self, batch: &[Write<'_>], durability: Durability) -> Result<()>;

    /// Copies the value of `key` into `out`; false if the key is absent.
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool>;

    /// Calls `visit` on up to `limit` entries in key order from the first key at or above
    /// `from`; returns how many it visited.
    fn scan(&self, from: &[u8], limit: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize>;

    /// Makes every earlier write durable.
    fn flush(&self) -> Result<()>;

    /// Runs the engine's own cleaning or compaction to completion where it offers one (the
    /// report says which do).
    fn compact(&self) -> Result<()>;

    /// Writes per batch the workloads should use for `durability` (1 unless the engine's
    /// documentation asks to group writes into transactions).
    fn batch_limit(&self, durability: Durability) -> usize {
        let _ = durability;
        1
    }

    /// The engine's own counters that only grow (bytes it wrote by cause, waits…), by name:
    /// the report gives each phase's increase. None by default.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Releases background work that would otherwise run into the next engine's phases.
    fn close(self: Box<Self>) -> Result<()>;
}

/// How a run opens engines.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Threads the workloads use (Helio: shards).
    pub threads: usize,
    /// Helio's memory quota, if any.
    pub memory_quota: Option<u64>,
    /// Cache size for the peers that have one (RocksDB's block cache, fjall, sled, redb).
    pub cache_bytes: u64,
    /// Expected live data in bytes (sizes Helio's log segments).
    pub data_bytes: u64,
}

/// An open engine and the description of how it was configured.
pub struct Opened {
    /// The engine.
    pub engine: Box<dyn Engine>,
    /// Its configuration, in words, for the report.
    pub config: String,
}

/// Opens `kind` in the empty directory `dir`.
pub fn open(kind: EngineKind, dir: &Path, options: &Options) -> Result<Opened> {
    match kind {
        EngineKind::Helio => helio::open(dir, options),
        #[cfg(feature = "rocksdb")]
        EngineKind::Rocksdb => rocksdb::open(dir, options),
        #[cfg(feature = "fjall")]
        EngineKind::Fjall => fjall::open(dir, options),
        #[cfg(feature = "sled")]
        EngineKind::Sled => sled::open(dir, options),
        #[cfg(feature = "redb")]
        EngineKind::Redb => redb::open(dir, options),
        #[cfg(feature = "lmdb")]
        EngineKind::Lmdb => lmdb::open(dir, options),
        #[allow(unreachable_patterns, reason = "reached only in builds without some peers")]
        other => {
            Err(format!("{} is not compiled in (cargo feature `{}`)", other.name(), other.name()).into())
        }
    }
}

/// Copies the value an engine returned (if any) into `out`; whether there was one.
#[cfg_attr(
    not(any(feature = "rocksdb", feature = "fjall", feature = "sled", feature = "redb", feature = "lmdb")),
    expect(dead_code, reason = "used by the peer adapters only")
)]
fn copy_value(value: Option<impl AsRef<[u8]>>, out: &mut Vec<u8>) -> bool {
    let Some(value) = value else { return false };
    out.clear();
    out.extend_from_slice(value.as_ref());
    true
}

/// Writes per transaction for the single-writer B-tree engines (redb, LMDB), whose
/// documentation asks for grouped writes: one per transaction when each must be durable.
#[cfg(any(feature = "redb", feature = "lmdb"))]
fn transaction_batch(durability: Durability) -> usize {
    if durability == Durability::Sync {
        1
    } else {
        1000
    }
}

/// Cache size given to every peer that has one (page cache aside) when the run sets no memory
/// quota: large enough to hold the default data set, as the in-memory read targets assume.
pub const PEER_CACHE_BYTES: u64 = 1 << 30;
