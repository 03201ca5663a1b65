//! `helio-bench`: Helio's workload runner. Runs db_bench- and YCSB-style workloads against Helio
//! and the peer engines compiled in (RocksDB, fjall, sled, redb, LMDB), one engine after another
//! in fresh directories under one root, checks every value read back, and writes a Markdown
//! report, a JSON file of every figure and PNG plots.
//!
//! `cargo run --release -p helio-bench --bin helio-bench -- [OPTIONS]` (`--help` lists them;
//! `--features rocksdb` adds RocksDB, a ~10 minute C++ build that needs clang).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use helio_bench::runner::cgroup::MemoryCgroup;
use helio_bench::runner::engine::{self, EngineKind, Options};
use helio_bench::runner::keys::Presence;
use helio_bench::runner::report::{self, EngineConfig, Machine, Report};
use helio_bench::runner::rounds;
use helio_bench::runner::spec::{Distribution, Durability, Spec, Workload};
use helio_bench::runner::workload::{self, Context, Figures};
use helio_bench::runner::Result;

// mimalloc, as in Helio's binaries: see the crate docs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Helio's workload runner: the same workloads on Helio and its peers, side by side.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Engines to run, in order (default: every engine compiled in).
    #[arg(long, value_enum, value_delimiter = ',')]
    engines: Vec<EngineKind>,
    /// Workloads to run, in order, on each engine's database: fillseq, fillrandom, fillbatch
    /// (atomic batches of --batch puts), readrandom, readseq, seekrandom, overwrite, compact,
    /// readwhilewriting, ycsb-a..ycsb-f, fillsync, deleterandom (default: a mix of about a
    /// minute; `all` for every workload).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Keys the fills load.
    #[arg(long, default_value_t = 200_000)]
    keys: u64,
    /// Operations of each read and mixed workload (default: as many as keys).
    #[arg(long)]
    ops: Option<u64>,
    /// Bytes per key (8..=1024).
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Bytes per value (16..=1048576).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Thread counts to sweep, e.g. `1,2,4` (Helio: one shard per thread; default: all cores).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Durability of the writes of every workload but fillsync.
    #[arg(long, value_enum, default_value = "buffered")]
    durability: Durability,
    /// Key choice of the YCSB workloads.
    #[arg(long, value_enum, default_value = "zipfian")]
    distribution: Distribution,
    /// Entries per seekrandom scan (and the longest YCSB E scan).
    #[arg(long, default_value_t = 100)]
    scan_len: usize,
    /// Thread counts of fillsync.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    sync_threads: Vec<usize>,
    /// Writes of each fillsync phase.
    #[arg(long, default_value_t = 2_000)]
    sync_ops: u64,
    /// Puts per atomic batch of fillbatch (each engine's batch API; ops/s counts puts).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Memory for every engine, in bytes (suffixes K, M, G, KiB, MiB, GiB): Helio's
    /// `memory_quota`, and the cache size of each peer that has one (RocksDB's block cache,
    /// fjall's, sled's and redb's caches; LMDB has none). Default: no quota, peers' caches 1 GiB.
    #[arg(long, value_parser = parse_bytes)]
    memory_quota: Option<u64>,
    /// Runs each engine inside a memory cgroup (v1) of this many bytes, which charges the page
    /// cache its files bring in too (so that reads through the page cache get no memory that
    /// O_DIRECT reads do not). Needs root. Suffixes as for --memory-quota.
    #[arg(long, value_parser = parse_bytes)]
    cgroup_memory: Option<u64>,
    /// Times to repeat the whole run (every engine once per round); each phase is reported from
    /// its median round, with every round's throughput in the report.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Root under which each engine gets a fresh temporary directory (removed afterwards).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Folder for report.md, report.json and the plots.
    #[arg(long, default_value = "helio-bench-report")]
    out: PathBuf,
}

/// A byte count: digits, then optionally K, M, G (powers of 1024; `KiB`, `MiB`, `GiB` too).
fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let shift = match &text[digits.len()..] {
        "" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        other => return Err(format!("unknown unit {other:?} (use K, M, G, KiB, MiB or GiB)")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a byte count"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{text} is too large"))
}

fn spec(args: Args) -> std::result::Result<Spec, String> {
    let workloads = match args.workloads.as_slice() {
        [] => Workload::DEFAULT.to_vec(),
        [all] if all == "all" => Workload::ALL.to_vec(),
        names => names
            .iter()
            .map(|n| {
                <Workload as clap::ValueEnum>::from_str(n, true)
                    .map_err(|_| format!("unknown workload {n:?}"))
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    let engines = if args.engines.is_empty() { EngineKind::available() } else { args.engines };
    if let Some(e) = engines.iter().find(|e| !e.compiled_in()) {
        return Err(format!("{} is not compiled in: build with `--features {}`", e.name(), e.name()));
    }
    let cores = if args.cores.is_empty() {
        vec![std::thread::available_parallelism().map_or(1, |n| n.get())]
    } else {
        args.cores
    };
    let spec = Spec {
        engines,
        workloads,
        keys: args.keys,
        ops: args.ops.unwrap_or(args.keys),
        key_size: args.key_size,
        value_size: args.value_size,
        cores,
        durability: args.durability,
        distribution: args.distribution,
        scan_len: args.scan_len,
        sync_threads: args.sync_threads,
        sync_ops: args.sync_ops,
        batch: args.batch,
        memory_quota: args.memory_quota,
        cgroup_memory: args.cgroup_memory,
        rounds: args.rounds,
        dir: args.dir,
        out: args.out,
    };
    spec.validate()?;
    Ok(spec)
}

/// Runs every workload of `spec` on `kind` with `cores` threads; returns its figures and
/// configuration.
fn run_engine(spec: &Spec, kind: EngineKind, cores: usize, bars: &Bars) -> Result<(Vec<Figures>, String)> {
    let root = tempfile::Builder::new().prefix("helio-bench-").tempdir_in(&spec.dir)?;
    let dir = root.path().join(format!("{}-{cores}", kind.name()));
    std::fs::create_dir_all(&dir)?;
    let options = Options {
        threads: cores,
        memory_quota: spec.memory_quota,
        cache_bytes: spec.memory_quota.unwrap_or(engine::PEER_CACHE_BYTES),
        data_bytes: spec.keys * spec.entry_bytes(),
    };
    let cgroup = match spec.cgroup_memory {
        Some(limit) => {
            Some(MemoryCgroup::enter(&format!("helio-bench-{}-{}", kind.name(), std::process::id()), limit)?)
        }
        None => None,
    };
    let opened = engine::open(kind, &dir, &options)?;
    let presence = Presence::new(spec.keys, spec.ops * spec.workloads.len() as u64);
    let (written, device_written, generation) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU32::new(1));
    let mut figures = Vec::new();
    let mut engine = opened.engine;
    for &w in &spec.workloads {
        if w == Workload::Reopen {
            let open = || engine::open(kind, &dir, &options).map(|o| o.engine);
            let (reopened, f) = workload::reopen(spec, kind.name(), &dir, &presence, cores, engine, open)?;
            engine = reopened;
            figures.push(f);
        } else {
            let context = Context {
                spec,
                engine_name: kind.name(),
                engine: engine.as_ref(),
                dir: &dir,
                presence: &presence,
                threads: cores,
                progress: &bars.phase,
                written: &written,
                device_written: &device_written,
                generation: &generation,
            };
            figures.extend(context.run(w)?);
        }
        generation.fetch_add(1, Ordering::Relaxed);
        bars.overall.inc(1);
    }
    engine.close()?;
    let mut config = opened.config;
    if let Some(group) = &cgroup {
        config += &format!(
            "; ran in a memory cgroup of {} MiB (page cache charged): peak {} MiB, limit hit {} times",
            spec.cgroup_memory.unwrap_or(0) >> 20,
            group.max_usage() >> 20,
            group.limit_hits()
        );
    }
    Ok((figures, config))
}

struct Bars {
    overall: ProgressBar,
    phase: ProgressBar,
}

fn bars(phases: u64) -> Bars {
    let multi = MultiProgress::new();
    let overall = multi.add(ProgressBar::new(phases));
    overall.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} workloads, {elapsed}")
            .expect("valid template"),
    );
    overall.set_prefix("run");
    let phase = multi.add(ProgressBar::new(1));
    phase.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:40}] {percent:>3}% {per_sec:>12} {msg}")
            .expect("valid template"),
    );
    phase.set_prefix("phase");
    Bars { overall, phase }
}

fn main() -> ExitCode {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let spec = match spec(Args::parse()) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("helio-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(spec, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helio-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, the v3 the `mimalloc` crate builds; the
/// `libmimalloc-sys` crate names only older options): milliseconds freed memory stays committed
/// before it goes back to the OS.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Under a memory limit, memory the allocator keeps after a free is memory the engine's pages
/// and the page cache do not get: freed memory goes back to the OS at once (measured, 3M keys
/// under a 64 MiB quota in a 256 MiB cgroup, one run each: Helio's peak RSS 202-223 MiB against
/// 226-239, readrandom 17.7k/s against 12.8k). Without a limit the default (10 ms) stays: the
/// pages freed and touched again cost transparent-huge-page zeroing (see `docs/store.md`).
fn configure_allocator(spec: &Spec) {
    if spec.memory_quota.is_some() || spec.cgroup_memory.is_some() {
        // SAFETY: sets one of mimalloc's options, which it reads with relaxed atomics.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

fn run(spec: Spec, command: String) -> Result<()> {
    configure_allocator(&spec);
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let phases = (spec.rounds * spec.cores.len() * spec.engines.len() * spec.workloads.len()) as u64;
    let bars = bars(phases);
    let mut rounds = Vec::new();
    let mut engines: Vec<EngineConfig> = Vec::new();
    for _ in 0..spec.rounds {
        let mut results = Vec::new();
        for &cores in &spec.cores {
            for &kind in &spec.engines {
                let (figures, config) = run_engine(&spec, kind, cores, &bars)?;
                results.extend(figures);
                if !engines.iter().any(|e| e.engine == kind.name()) {
                    engines.push(EngineConfig { engine: kind.name().to_string(), config });
                }
            }
        }
        rounds.push(results);
    }
    let results = rounds::median_of(&rounds);
    bars.phase.finish_and_clear();
    bars.overall.finish_and_clear();
    let targets = report::targets(&results, &spec);
    let scaling = report::scaling(&results, &spec);
    let out = spec.out.clone();
    let report = Report {
        format: 1,
        started_unix,
        command,
        machine: Machine::describe(),
        spec,
        engines,
        results,
        targets,
        scaling,
    };
    println!("{}", report::table(&report));
    let files = report::write(&report, &out)?;
    println!("\nreport: {}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(())
}
