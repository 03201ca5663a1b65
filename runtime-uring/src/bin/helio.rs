//! `helio`: inspect and check a store from the shell.
//!
//! ```text
//! helio stats DIR              counters per shard and in total
//! helio check DIR              read every record, verify every checksum and page chain (exit 1 on corruption)
//! helio get DIR KEY            print the value (exit 1 if absent)
//! helio put DIR KEY VALUE      set a key (durable when the command returns)
//! helio scan DIR [--from K] [--to K] [--limit N] [--rev]
//! ```
//! Keys and values are taken and printed as UTF-8 text (bytes that are not are escaped).

/// Freed chains are collected by whichever thread next passes an epoch, usually not the one that
/// allocated them; glibc's malloc then takes the owning arena's lock (see docs/store.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use helio::core::log::frame::Kind;
use helio::core::log::replay::Replay;
use helio::core::Tree;
use helio::log::{Log, LogConfig};
use helio::shard::{check_pages, PagesChecked, ShardError};
use helio::{Config, Durability, Error, Store};

#[derive(Parser)]
#[command(name = "helio", version, about = "Inspect and check a Helio store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Counters per shard and in total (opens the store, which recovers it).
    Stats { dir: PathBuf },
    /// Read every record of every shard's log and verify every checksum and page chain without
    /// changing anything; exits 1 if anything is corrupt. Refuses a store another process has
    /// open.
    Check { dir: PathBuf },
    /// Print the value of KEY.
    Get { dir: PathBuf, key: String },
    /// Set KEY to VALUE, durably.
    Put { dir: PathBuf, key: String, value: String },
    /// Print the entries in a key range.
    Scan {
        dir: PathBuf,
        /// First key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Last key (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Descending order.
        #[arg(long)]
        rev: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("helio: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Stats { dir } => stats(&dir),
        Command::Check { dir } => check(&dir),
        Command::Get { dir, key } => {
            let store = open(&dir)?;
            let value = store.get(key.as_bytes())?;
            store.close()?;
            Ok(match value {
                Some(v) => {
                    println!("{}", show(&v));
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("helio: {key}: not found");
                    ExitCode::FAILURE
                }
            })
        }
        Command::Put { dir, key, value } => {
            let store = open(&dir)?;
            store.put_with(key.as_bytes(), value.as_bytes(), Durability::Sync)?;
            store.close()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan { dir, from, to, limit, rev } => {
            let store = open(&dir)?;
            let lo = from.map_or(std::ops::Bound::Unbounded, |k| std::ops::Bound::Included(k.into_bytes()));
            let hi = to.map_or(std::ops::Bound::Unbounded, |k| std::ops::Bound::Excluded(k.into_bytes()));
            let range = store.range::<Vec<u8>, _>((lo, hi));
            let items: Box<dyn Iterator<Item = _>> =
                if rev { Box::new(range.rev()) } else { Box::new(range) };
            for item in items.take(limit) {
                let (k, v) = item?;
                println!("{}\t{}", show(&k), show(&v));
            }
            store.close()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Opens an existing store with the shard count it was created with.
fn open(dir: &Path) -> Result<Store, Error> {
    let shards = Store::shards_in(dir)?.ok_or_else(|| Error::NotAStore { dir: dir.to_path_buf() })?;
    Store::open(Config::new(dir).shards(shards))
}

fn stats(dir: &Path) -> Result<ExitCode, Error> {
    let store = open(dir)?;
    let stats = store.stats();
    println!(
        "{:>5} {:>10} {:>9} {:>12} {:>12} {:>6} {:>12} {:>6} {:>6} {:>8} {:>8}",
        "shard",
        "puts",
        "deletes",
        "user bytes",
        "device bytes",
        "WA",
        "log bytes",
        "frag",
        "cleans",
        "pages",
        "io done"
    );
    let row = |name: String, s: &helio::shard::ShardStats| {
        println!(
            "{name:>5} {:>10} {:>9} {:>12} {:>12} {:>6.2} {:>12} {:>6.2} {:>6} {:>8} {:>12} {:>8}",
            s.puts,
            s.deletes,
            s.user_bytes,
            s.device_bytes_written,
            s.write_amplification(),
            s.log_bytes,
            s.fragmentation(),
            s.cleanings,
            s.pages,
            s.memory_bytes,
            s.io_completed
        )
    };
    for (i, s) in stats.shards.iter().enumerate() {
        row(i.to_string(), s);
    }
    row("total".into(), &stats.total);
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Reads every shard's log (checksums verified by the replay), applies every op record to a
/// scratch tree (so every record must parse), checks the page records and their chains
/// against the page table (`helio::shard::check_pages`), and reports.
fn check(dir: &Path) -> Result<ExitCode, Error> {
    let shards = Store::shards_in(dir)?.ok_or_else(|| Error::NotAStore { dir: dir.to_path_buf() })?;
    let _lock = Store::lock_dir(dir)?;
    let dirs: Vec<PathBuf> = (0..shards).map(|i| Store::shard_dir(dir, i)).collect();
    // The chains are checked against the writes an open would keep, which takes every log
    // readable (the cut is the store's): a corrupt log leaves the others' chains unchecked.
    let pages = check_pages(dir, &dirs, &LogConfig::default());
    let unplanned = pages.as_ref().err().map(|e| e.to_string());
    let mut pages = pages.ok().map(Vec::into_iter);
    let mut corrupt = false;
    for (i, path) in dirs.iter().enumerate() {
        let chains =
            pages.as_mut().and_then(Iterator::next).ok_or_else(|| unplanned.clone().unwrap_or_default());
        match check_shard(path, chains) {
            Ok(report) => println!("shard {i}: ok: {report}"),
            Err(e) => {
                println!("shard {i}: CORRUPT: {e}");
                corrupt = true;
            }
        }
    }
    Ok(if corrupt { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Checks one shard: its superblock, every record of its log; `chains` is the check of its
/// page chains, or why there is none (the recovery plan failed).
fn check_shard(
    path: &Path,
    chains: Result<Result<PagesChecked, ShardError>, String>,
) -> Result<String, Error> {
    Log::superblock_of(path)?;
    let tree = Tree::new(Default::default()).expect("default tree settings are valid");
    let mut replay = Replay::new(&tree);
    let mut kinds = [0u64; 256];
    let mut failed = None;
    let read = Log::read(path, &LogConfig::default(), |kind, payload| {
        kinds[kind as usize] += 1;
        if failed.is_none() && !matches!(kind, Kind::PageImage | Kind::PageDelta) {
            failed = replay.apply(kind, payload, &tree.pin()).err();
        }
    })?;
    if let Some(e) = failed {
        return Err(Error::Corrupt { path: path.to_path_buf(), offset: 0, reason: e.to_string() });
    }
    let chains = match chains {
        Ok(checked) => {
            let p = checked?;
            format!(
                "{} page records, {} stretches naming {} of them ({} bytes), every chain whole",
                p.records, p.stretches, p.named, p.live_bytes
            )
        }
        Err(unplanned) => format!("page chains not checked ({unplanned})"),
    };
    Ok(format!(
        "{} frames, {} bytes from the head, {} puts, {} deletes, {} batches; {chains}{}",
        read.frames,
        read.bytes,
        kinds[Kind::Put as usize],
        kinds[Kind::Delete as usize],
        kinds[Kind::Batch as usize],
        read.torn_at.map_or(String::new(), |at| format!(", torn tail cut at log address {at}"))
    ))
}

/// Bytes as text, escaping what is not printable UTF-8.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => bytes.escape_ascii().to_string(),
    }
}
