//! Recovery's first pass over a store's shards: every log is read once (read only, in
//! parallel), from where its page table file says recovery starts (the head without one),
//! for its commit records, its end and its largest write number (the file's complete commit
//! stands for the commits before that place, which it numbers at or above); the core's
//! [`plan`](helio_core::log::cut::plan) turns them and the store's history into the cut; the
//! new history is written durably before any shard takes a write. The second pass is each
//! shard's replay, which applies only what the plan keeps.
//!
//! The history is the file `CUT` in the store's directory (a shard opened on its own keeps one
//! in its own directory). The pass costs a read of every log's tail beside the replay's: frames
//! and checksums, no tree work, a small share of an open (see `docs/consistency.md`).

use std::path::{Path, PathBuf};

use helio_core::log::cut::{plan, History, Malformed, Plan, ShardScan};
use helio_core::log::page::{PageTable, TableMark};
use helio_core::log::replay::ReplayError;

use crate::disk::{read_file, replace_file};
use crate::fanout;
use crate::log::{Log, LogConfig, LogError};
use crate::shard::{read_table, ShardError};
use crate::superblock_file::SuperblockFileError;

/// The history file's name.
pub const HISTORY_FILE: &str = "CUT";

/// Plans the recovery of the shards in `shard_dirs` (in order) of the store in `dir`, whose
/// logs are configured as `log`, and writes the new history if it changed. Also returns the
/// bytes of each shard's log the pass read.
pub fn plan_recovery(
    dir: &Path,
    shard_dirs: &[PathBuf],
    log: &LogConfig,
) -> Result<(Plan, Vec<u64>), ShardError> {
    let (plan, history, read) = read_plan(dir, shard_dirs, log)?;
    let path = dir.join(HISTORY_FILE);
    let io = |op, source| ShardError::Log(LogError::Io { op, path: path.clone(), source });
    if plan.history != history {
        log.disk.create_dir_all(dir).map_err(|e| io("create directory for", e))?;
        replace_file(&*log.disk, dir, HISTORY_FILE, &plan.history.encode(shard_dirs.len()))
            .map_err(|e| io("write", e))?;
    }
    Ok((plan, read))
}

/// The plan a recovery of those shards would make now, the history on disk, and the bytes of
/// each log read, without writing anything.
pub(crate) fn read_plan(
    dir: &Path,
    shard_dirs: &[PathBuf],
    log: &LogConfig,
) -> Result<(Plan, History, Vec<u64>), ShardError> {
    let path = dir.join(HISTORY_FILE);
    let io = |source| ShardError::Log(LogError::Io { op: "read", path: path.clone(), source });
    let history = match read_file(&*log.disk, &path).map_err(io)? {
        Some(bytes) => History::decode(&bytes, shard_dirs.len())
            .map_err(|reason| ShardError::History { path: path.clone(), reason })?,
        None => History::default(),
    };
    let scans = fanout::each(log.disk.is_real(), shard_dirs, |_, dir| scan(dir, log));
    let (scans, read): (Vec<ShardScan>, Vec<u64>) =
        scans.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().unzip();
    let plan = plan(&history, &scans).map_err(|reason| ShardError::History { path, reason })?;
    Ok((plan, history, read))
}

/// Reads one shard's log for the plan, and returns what it found and the bytes it read; a
/// shard not created yet reads as empty. The log is read from where its page table file says
/// recovery starts, not from the head: the file's complete commit stands for the commits
/// before that place (see `TableMark`).
fn scan(dir: &Path, config: &LogConfig) -> Result<(ShardScan, u64), ShardError> {
    let sb = match Log::superblock_on(dir, config) {
        Ok(sb) => sb,
        Err(LogError::Superblock(SuperblockFileError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok((ShardScan::default(), 0));
        }
        Err(e) => return Err(e.into()),
    };
    let (mark, table) = read_table(dir, config)?.unwrap_or_else(|| (TableMark::at(0), PageTable::new()));
    let mut scan = ShardScan::new(sb.head);
    scan.start_after(&mark, &table);
    let mut bad = None;
    let replayed = Log::read_from(dir, config, mark.position, |_, kind, payload| {
        if bad.is_none() {
            bad = scan.push(kind, payload).err();
        }
    })?;
    if let Some(Malformed { kind }) = bad {
        // What the replay would refuse the log for.
        return Err(ShardError::Replay(ReplayError::Malformed { kind }));
    }
    scan.end = replayed.end_lsn;
    Ok((scan, replayed.bytes))
}
