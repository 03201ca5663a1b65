//! What a run does: the workloads, their sizes, the engines, the core counts and the
//! durability, with the defaults the command line starts from.

use std::path::PathBuf;

use serde::Serialize;

use super::engine::EngineKind;

/// One workload, named as db_bench and YCSB name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Inserts every key in key order.
    Fillseq,
    /// Inserts every key once, in a random order.
    Fillrandom,
    /// Inserts every key once, in a random order, in atomic batches of `batch` puts through
    /// each engine's batch API.
    Fillbatch,
    /// Point reads of random keys.
    Readrandom,
    /// One full scan in key order.
    Readseq,
    /// Seeks to a random key and reads the next `scan_len` entries.
    Seekrandom,
    /// Overwrites random keys (each once, in a random order) with a new version.
    Overwrite,
    /// One writer overwrites random keys while the other threads read random keys; the
    /// readers' throughput is reported.
    Readwhilewriting,
    /// Deletes every key in a random order.
    Deleterandom,
    /// The engine's own cleaning or compaction, run to completion (space figures after it).
    Compact,
    /// Overwrites with `Sync` durability (every write durable before it returns) from each
    /// thread count of `sync_threads`.
    Fillsync,
    /// YCSB A: 50% reads, 50% updates.
    YcsbA,
    /// YCSB B: 95% reads, 5% updates.
    YcsbB,
    /// YCSB C: reads only.
    YcsbC,
    /// YCSB D: 95% reads skewed to the newest keys, 5% inserts.
    YcsbD,
    /// YCSB E: 95% short scans (1 to `scan_len` entries), 5% inserts.
    YcsbE,
    /// YCSB F: 50% reads, 50% read-modify-writes.
    YcsbF,
    /// Closes the engine cleanly and opens it again: entries present per second of the open,
    /// and the bytes the open read.
    Reopen,
}

impl Workload {
    /// The workload's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fillseq => "fillseq",
            Workload::Fillrandom => "fillrandom",
            Workload::Fillbatch => "fillbatch",
            Workload::Readrandom => "readrandom",
            Workload::Readseq => "readseq",
            Workload::Seekrandom => "seekrandom",
            Workload::Overwrite => "overwrite",
            Workload::Readwhilewriting => "readwhilewriting",
            Workload::Deleterandom => "deleterandom",
            Workload::Compact => "compact",
            Workload::Fillsync => "fillsync",
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbD => "ycsb-d",
            Workload::YcsbE => "ycsb-e",
            Workload::YcsbF => "ycsb-f",
            Workload::Reopen => "reopen",
        }
    }

    /// Every workload, in the order a full run takes them (fills first, deletes last).
    pub const ALL: [Workload; 18] = [
        Workload::Fillseq,
        Workload::Fillrandom,
        Workload::Fillbatch,
        Workload::Readrandom,
        Workload::Readseq,
        Workload::Seekrandom,
        Workload::Overwrite,
        Workload::Compact,
        Workload::Readwhilewriting,
        Workload::YcsbA,
        Workload::YcsbB,
        Workload::YcsbC,
        Workload::YcsbD,
        Workload::YcsbE,
        Workload::YcsbF,
        Workload::Reopen,
        Workload::Fillsync,
        Workload::Deleterandom,
    ];

    /// The default mix: the workloads the targets are stated on, plus YCSB A and the durable
    /// writes, small enough to finish in about a minute with every engine.
    pub const DEFAULT: [Workload; 10] = [
        Workload::Fillrandom,
        Workload::Readrandom,
        Workload::Seekrandom,
        Workload::Readseq,
        Workload::Overwrite,
        Workload::Compact,
        Workload::Readwhilewriting,
        Workload::YcsbA,
        Workload::Fillsync,
        Workload::Deleterandom,
    ];
}

/// How durable a write is when the engine acknowledges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// In the engine's memory (and its OS buffers) only.
    None,
    /// Durable within a short interval (Helio: 10 ms); what each peer offers is in the report.
    Buffered,
    /// Durable before the call returns.
    Sync,
}

/// How YCSB workloads pick the keys they read and update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// YCSB's scrambled Zipfian (constant 0.99): a few keys, spread over the key space, take
    /// most requests.
    Zipfian,
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Spec {
    /// Engines, in the order they run.
    pub engines: Vec<EngineKind>,
    /// Workloads, in the order they run on each engine's database.
    pub workloads: Vec<Workload>,
    /// Keys loaded by the fills (and overwritten, deleted, read by the others).
    pub keys: u64,
    /// Operations of each read and mixed workload (all threads together).
    pub ops: u64,
    /// Bytes per key (at least 8).
    pub key_size: usize,
    /// Bytes per value (at least 16).
    pub value_size: usize,
    /// Thread counts to sweep; Helio runs one shard per thread.
    pub cores: Vec<usize>,
    /// Durability of the writes of every workload but `fillsync`.
    pub durability: Durability,
    /// Key choice of the YCSB workloads.
    pub distribution: Distribution,
    /// Entries per `seekrandom` scan, and the longest YCSB E scan.
    pub scan_len: usize,
    /// Thread counts of `fillsync`.
    pub sync_threads: Vec<usize>,
    /// Writes of each `fillsync` phase (all threads together).
    pub sync_ops: u64,
    /// Puts per atomic batch of `fillbatch`.
    pub batch: usize,
    /// Memory for every engine: Helio's `Config::memory_quota`, and each peer's cache size
    /// (`None`: no quota, and the peers' caches [`PEER_CACHE_BYTES`](super::engine::PEER_CACHE_BYTES)).
    pub memory_quota: Option<u64>,
    /// The limit of the memory cgroup each engine runs in (page cache charged), if any.
    pub cgroup_memory: Option<u64>,
    /// Times the whole run is repeated; each phase is reported from its median round.
    pub rounds: usize,
    /// Where the engines' directories are made (each run in a fresh temporary directory).
    pub dir: PathBuf,
    /// Where the report files go.
    pub out: PathBuf,
}

impl Spec {
    /// Checks the sizes; the message names the option.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.key_size >= 8 && self.key_size <= 1024, "--key-size must be 8..=1024"),
            (self.value_size >= 16 && self.value_size <= 1 << 20, "--value-size must be 16..=1048576"),
            (self.keys >= 1, "--keys must be at least 1"),
            (
                !self.cores.is_empty() && self.cores.iter().all(|&c| (1..=1024).contains(&c)),
                "--cores: 1..=1024 each",
            ),
            (self.sync_threads.iter().all(|&c| (1..=1024).contains(&c)), "--sync-threads: 1..=1024 each"),
            (self.scan_len >= 1, "--scan-len must be at least 1"),
            ((1..=1_000_000).contains(&self.batch), "--batch must be 1..=1000000"),
            ((1..=99).contains(&self.rounds), "--rounds must be 1..=99"),
            (!self.engines.is_empty(), "--engines: at least one engine"),
            (!self.workloads.is_empty(), "--workloads: at least one workload"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err((*message).to_string()),
            None => Ok(()),
        }
    }

    /// User bytes of one write.
    pub fn entry_bytes(&self) -> u64 {
        (self.key_size + self.value_size) as u64
    }
}
