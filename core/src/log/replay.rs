//! What replay does with each record it reads back: ops, batches and relocated entries set or
//! remove their keys in log order, those numbered beyond the recovery's cut excepted (see
//! [`super::cut`]).
//!
//! That order is the order the writes reached the tree: a shard appends each op and applies it
//! under the key's write stripe, and the cleaner holds the stripes of a batch's keys from its
//! liveness check until the batch is appended (see [`super::batch`] and [`super::clean`]).

use crossbeam_epoch::Guard;

use super::batch;
use super::cut::{write_sn, Plan};
use super::frame::{Kind, Op};
use super::page::PageTable;
use crate::error::Error;
use crate::tree::Tree;

/// Why a replayed record could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// A record's payload does not parse as its kind says.
    Malformed {
        /// The record's kind.
        kind: Kind,
    },
    /// The tree refused an entry (a key or value above this configuration's limits).
    Refused(Error),
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReplayError::Malformed { kind } => write!(f, "a {kind:?} record in the log does not parse"),
            ReplayError::Refused(e) => write!(f, "a logged write is refused by this configuration: {e}"),
        }
    }
}

impl core::error::Error for ReplayError {}

/// What replay applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Put and delete records applied.
    pub ops: u64,
    /// Relocated entries applied.
    pub relocated: u64,
    /// Batch entries applied.
    pub batched: u64,
    /// Records dropped: numbered beyond the cut, or in a range an earlier recovery dropped.
    pub dropped: u64,
    /// Writes skipped because the page records of their key hold them already.
    pub covered: u64,
}

/// Applies replayed records to a tree, in log order.
pub struct Replay<'t> {
    tree: &'t Tree,
    plan: Option<&'t Plan>,
    pages: Option<&'t PageTable>,
    stats: ReplayStats,
}

impl<'t> Replay<'t> {
    /// Replay into `tree` (empty), applying every record.
    pub fn new(tree: &'t Tree) -> Self {
        Self { tree, plan: None, pages: None, stats: ReplayStats::default() }
    }

    /// Replay into `tree` (empty), applying only the writes `plan` keeps.
    pub fn with_plan(tree: &'t Tree, plan: &'t Plan) -> Self {
        Self { tree, plan: Some(plan), pages: None, stats: ReplayStats::default() }
    }

    /// Replay into `tree` (built from `pages` by [`Tree::with_pages`]), applying only the
    /// writes `plan` keeps that the page records of their key do not hold already (those
    /// numbered above its stretch's snapshot).
    pub fn with_pages(tree: &'t Tree, plan: &'t Plan, pages: &'t PageTable) -> Self {
        Self { tree, plan: Some(plan), pages: Some(pages), stats: ReplayStats::default() }
    }

    /// Whether the page records hold the write numbered `sn` of `key` already.
    fn covered(&mut self, sn: u64, key: &[u8]) -> bool {
        let covered = self.pages.and_then(|p| p.covering(key)).is_some_and(|e| sn <= e.sn);
        self.stats.covered += u64::from(covered);
        covered
    }

    /// Applies one record read back from the log.
    pub fn apply(&mut self, kind: Kind, payload: &[u8], guard: &Guard) -> Result<(), ReplayError> {
        let malformed = ReplayError::Malformed { kind };
        if let Some(plan) = self.plan {
            if let Some(sn) = write_sn(kind, payload).ok_or(malformed.clone())? {
                if !plan.keeps(sn) {
                    self.stats.dropped += 1;
                    return Ok(());
                }
            }
        }
        match kind {
            Kind::Put | Kind::Delete => {
                let op = Op::decode_payload(kind, payload).ok_or(malformed)?;
                if self.covered(op.sn, op.key) {
                    return Ok(());
                }
                match op.value {
                    Some(value) => self.tree.put(op.key, value, guard),
                    None => self.tree.delete(op.key, guard),
                }
                .map_err(ReplayError::Refused)?;
                self.stats.ops += 1;
            }
            Kind::Relocated => {
                let sn = batch::sn(payload).ok_or(malformed.clone())?;
                for entry in batch::entries(payload) {
                    let (key, value) = entry.ok_or(malformed.clone())?;
                    if self.covered(sn, key) {
                        continue;
                    }
                    self.tree.put(key, value, guard).map_err(ReplayError::Refused)?;
                    self.stats.relocated += 1;
                }
            }
            Kind::Batch => {
                let sn = batch::sn(payload).ok_or(malformed.clone())?;
                for entry in batch::ops(payload) {
                    let (key, value) = entry.ok_or(malformed.clone())?;
                    if self.covered(sn, key) {
                        continue;
                    }
                    match value {
                        Some(value) => self.tree.put(key, value, guard),
                        None => self.tree.delete(key, guard),
                    }
                    .map_err(ReplayError::Refused)?;
                    self.stats.batched += 1;
                }
            }
            Kind::Commit => {
                super::cut::Commit::decode(payload).ok_or(malformed)?;
            }
            // Page records change nothing in the tree (for now): checked as a commit is, since
            // `write_sn` refuses one that does not parse whenever there is a plan.
            Kind::PageImage | Kind::PageDelta => {
                super::page::PageRecord::decode(payload).ok_or(malformed)?;
            }
            Kind::Pad | Kind::Fragment => {}
        }
        Ok(())
    }

    /// What was applied so far.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::config::TreeConfig;
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use alloc::vec::Vec;

    fn op(kind: Kind, key: &[u8], value: &[u8]) -> Vec<u8> {
        let op = Op { sn: 0, key, value: (kind == Kind::Put).then_some(value) };
        let mut out = vec![0; op.payload_len()];
        op.write_payload(&mut out);
        out
    }

    /// Ops and relocated entries apply in log order: a relocated entry overrides the ops before
    /// it and is overridden by the ops after it.
    #[test]
    fn ops_and_relocated_entries_apply_in_log_order() {
        let tree = Tree::new(TreeConfig::default()).unwrap();
        let mut replay = Replay::new(&tree);
        let guard = tree.pin();
        replay.apply(Kind::Put, &op(Kind::Put, b"a", b"op-a"), &guard).unwrap();
        replay.apply(Kind::Put, &op(Kind::Put, b"c", b"op-c"), &guard).unwrap();
        let mut moved = batch::BatchWriter::new();
        for (k, v) in [(b"a", b"moved-a"), (b"b", b"moved-b"), (b"c", b"moved-c")] {
            moved.push(k, v);
        }
        replay.apply(Kind::Relocated, moved.payload(), &guard).unwrap();
        replay.apply(Kind::Delete, &op(Kind::Delete, b"c", b""), &guard).unwrap();
        replay.apply(Kind::Pad, &[0; 16], &guard).unwrap();
        assert_eq!(replay.stats(), ReplayStats { ops: 3, relocated: 3, ..ReplayStats::default() });
        let snapshot = tree.snapshot();
        let got: BTreeMap<Vec<u8>, Vec<u8>> =
            tree.range::<[u8], _>(&snapshot, .., &guard).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let want: BTreeMap<Vec<u8>, Vec<u8>> = [(b"a", &b"moved-a"[..]), (b"b", b"moved-b")]
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn malformed_records_are_refused() {
        let tree = Tree::new(TreeConfig::default()).unwrap();
        let mut replay = Replay::new(&tree);
        let guard = tree.pin();
        for kind in [
            Kind::Put,
            Kind::Delete,
            Kind::Relocated,
            Kind::Batch,
            Kind::Commit,
            Kind::PageImage,
            Kind::PageDelta,
        ] {
            assert_eq!(replay.apply(kind, &[1, 2], &guard), Err(ReplayError::Malformed { kind }));
        }
    }
}
