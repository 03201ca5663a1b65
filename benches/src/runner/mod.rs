//! The workload runner behind the `helio-bench` binary: db_bench- and YCSB-style workloads run
//! against Helio and peer engines in one process, on the same keys, in the same directory root,
//! with every value read back checked.
//!
//! - [`spec`]: what to run (workloads, sizes, engines, core counts, durability) and its defaults;
//! - [`keys`]: the key space, value encoding and checking, and the request distributions;
//! - [`cgroup`]: a memory cgroup that caps one engine's run, page cache included;
//! - [`engine`]: the [`Engine`](engine::Engine) trait and one adapter per engine;
//! - [`measure`]: process counters read around each phase (device bytes, CPU, peak memory);
//! - [`workload`]: runs one workload on one engine and returns its [`Figures`](workload::Figures);
//! - [`rounds`]: repeated rounds of a run, each phase reported from its median round;
//! - [`report`]: the table, the Markdown report and the JSON file; `plot` draws the PNG plots.

pub mod cgroup;
pub mod engine;
pub mod keys;
pub mod measure;
mod plot;
pub mod report;
pub mod rounds;
pub mod spec;
pub mod workload;

/// Any error of a run: an engine's own error, an I/O error, or a wrong value read back.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// The result type of the runner.
pub type Result<T> = std::result::Result<T, BenchError>;
