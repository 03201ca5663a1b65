//! What `helio check` verifies of a shard's page records besides their checksums: the page
//! table file parses, every page record in the log decodes and folds as an open would fold
//! it, and every chain the table names checks out against the records the log holds
//! ([`helio_core::log::chains`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use helio_core::log::chains::{check_chains, RecordSummary};
use helio_core::log::cut::Plan;
use helio_core::log::page::PageTable;

use super::{fold_pages, read_table, ShardError, TABLE_FILE};
use crate::cut::read_plan;
use crate::log::LogConfig;

/// What [`check_pages`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagesChecked {
    /// Page records in the log from its head.
    pub records: u64,
    /// Stretches of the key space the table maps to chains.
    pub stretches: u64,
    /// Chain links the stretches name (a record named by two stretches counts twice).
    pub named: u64,
    /// Payload bytes of the records named, each counted once.
    pub live_bytes: u64,
}

/// Checks the page records of the shards in `shard_dirs` (in order) of the store in `dir`
/// without changing anything: plans the recovery an open would make (which writes it keeps),
/// then for each shard reads its table file, reads every page record in its log from the head
/// (decoding each), folds those past the file that the plan keeps into the table, and checks
/// every chain. The outer error is the plan's; each shard's result is its first fault.
pub fn check_pages(
    dir: &Path,
    shard_dirs: &[PathBuf],
    log: &LogConfig,
) -> Result<Vec<Result<PagesChecked, ShardError>>, ShardError> {
    let (plan, _, _) = read_plan(dir, shard_dirs, log)?;
    Ok(shard_dirs.iter().map(|shard| check_shard(shard, log, &plan)).collect())
}

fn check_shard(dir: &Path, config: &LogConfig, plan: &Plan) -> Result<PagesChecked, ShardError> {
    let path = dir.join(TABLE_FILE);
    let mut table = read_table(dir, config)?.map_or_else(PageTable::new, |(_, table)| table);
    let mut records = HashMap::new();
    fold_pages(dir, config, 0, plan, &mut table, |lsn, kind, record, len| {
        records.insert(lsn, RecordSummary::of(kind, record, len as u32));
    })?;
    let named =
        check_chains(&table, |addr| records.get(&addr)).map_err(|fault| ShardError::Chain { path, fault })?;
    Ok(PagesChecked {
        records: records.len() as u64,
        stretches: table.len() as u64,
        named,
        live_bytes: table.live_bytes(),
    })
}
