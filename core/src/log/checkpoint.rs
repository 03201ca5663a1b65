//! Checkpoints: how a shard's whole state goes into its log so that the log before it can be
//! deleted, and what replay does with each record it reads back.
//!
//! A checkpoint is taken at a moment when every op logged below some address `C` is in memory
//! and no op above it is half-applied (the runtime holds its write stripes for that instant).
//! Its records:
//!
//! ```text
//! CheckpointBegin  u64 C
//! Page             u64 id, then entries: u32 key_len, key, u32 value_len, value  (repeated)
//! CheckpointEnd    u64 id, u64 entries, u64 pages
//! ```
//!
//! where `id` is the log address of the begin record. Writers go on during a checkpoint, so
//! its pages are interleaved with ops. Once its end is durable, the superblock's head moves to
//! `C` and its `checkpoint` to `id`; segments wholly below `C` are deleted.
//!
//! Replay from `C`: ops are applied in log order; a page entry is applied only if no op at or
//! above `C` has touched its key yet (the op is as new as the image or newer: the image was
//! taken after every op below `C` and holds no op it does not also precede in the log). After
//! the end record, ops simply apply. Pages of any other checkpoint (one cut short by a crash)
//! are ignored.

use alloc::vec::Vec;

use crossbeam_epoch::Guard;
use hashbrown::HashSet;

use super::frame::{Kind, Op};
use crate::error::Error;
use crate::tree::Tree;

/// Payload of a [`Kind::CheckpointBegin`] record: the address below which every op is in the
/// checkpoint.
pub fn begin_payload(cover: u64) -> [u8; 8] {
    cover.to_le_bytes()
}

/// Payload of a [`Kind::CheckpointEnd`] record.
pub fn end_payload(id: u64, entries: u64, pages: u64) -> [u8; 24] {
    let mut out = [0; 24];
    out[..8].copy_from_slice(&id.to_le_bytes());
    out[8..16].copy_from_slice(&entries.to_le_bytes());
    out[16..].copy_from_slice(&pages.to_le_bytes());
    out
}

/// Builds the payloads of [`Kind::Page`] records, entry by entry, cutting a page when it
/// reaches a target size.
pub struct PageWriter {
    id: u64,
    target: usize,
    page: Vec<u8>,
    entries: u64,
}

impl PageWriter {
    /// Pages of checkpoint `id`, each cut once it holds `target` bytes or more.
    pub fn new(id: u64, target: usize) -> Self {
        let mut page = Vec::with_capacity(target + 64);
        page.extend_from_slice(&id.to_le_bytes());
        Self { id, target, page, entries: 0 }
    }

    /// Adds an entry; returns a full page's payload when this entry completed one.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
        let len = |n: usize| u32::try_from(n).expect("entries are at most 4 GiB").to_le_bytes();
        self.page.extend_from_slice(&len(key.len()));
        self.page.extend_from_slice(key);
        self.page.extend_from_slice(&len(value.len()));
        self.page.extend_from_slice(value);
        self.entries += 1;
        (self.page.len() >= self.target).then(|| self.take())
    }

    /// The last, partial page (if it holds any entry).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (self.page.len() > 8).then(|| self.take())
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    fn take(&mut self) -> Vec<u8> {
        let mut next = Vec::with_capacity(self.target + 64);
        next.extend_from_slice(&self.id.to_le_bytes());
        core::mem::replace(&mut self.page, next)
    }
}

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
    /// The superblock names a checkpoint whose end record the log does not hold.
    MissingCheckpointEnd {
        /// The checkpoint.
        id: u64,
    },
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReplayError::Malformed { kind } => write!(f, "a {kind:?} record in the log does not parse"),
            ReplayError::Refused(e) => write!(f, "a logged write is refused by this configuration: {e}"),
            ReplayError::MissingCheckpointEnd { id } => {
                write!(f, "the checkpoint at log address {id} has no end record")
            }
        }
    }
}

impl core::error::Error for ReplayError {}

/// What replay applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Put and delete records applied.
    pub ops: u64,
    /// Checkpoint entries loaded.
    pub entries: u64,
    /// Checkpoint entries skipped because a later op had touched the key.
    pub superseded: u64,
}

/// Applies replayed records to a tree (see the module docs for the rules).
pub struct Replay<'t> {
    tree: &'t Tree,
    /// The checkpoint to load, until its end record is seen.
    loading: Option<u64>,
    touched: HashSet<Vec<u8>>,
    stats: ReplayStats,
}

impl<'t> Replay<'t> {
    /// Replay into `tree` (empty), loading the checkpoint that begins at `checkpoint` (or none:
    /// [`super::superblock::NO_CHECKPOINT`]).
    pub fn new(tree: &'t Tree, checkpoint: u64) -> Self {
        let loading = (checkpoint != super::superblock::NO_CHECKPOINT).then_some(checkpoint);
        Self { tree, loading, touched: HashSet::new(), stats: ReplayStats::default() }
    }

    /// Applies one record read back from the log.
    pub fn apply(&mut self, kind: Kind, payload: &[u8], guard: &Guard) -> Result<(), ReplayError> {
        let malformed = ReplayError::Malformed { kind };
        match kind {
            Kind::Put | Kind::Delete => {
                let op = Op::decode_payload(kind, payload).ok_or(malformed)?;
                match op.value {
                    Some(value) => self.tree.put(op.key, value, guard),
                    None => self.tree.delete(op.key, guard),
                }
                .map_err(ReplayError::Refused)?;
                if self.loading.is_some() {
                    self.touched.insert(op.key.to_vec());
                }
                self.stats.ops += 1;
            }
            Kind::Page => {
                let id = u64::from_le_bytes(payload.get(..8).ok_or(malformed.clone())?.try_into().unwrap());
                if self.loading != Some(id) {
                    return Ok(());
                }
                let mut rest = &payload[8..];
                while !rest.is_empty() {
                    let (key, after) = take_field(rest).ok_or(malformed.clone())?;
                    let (value, after) = take_field(after).ok_or(malformed.clone())?;
                    rest = after;
                    if self.touched.contains(key) {
                        self.stats.superseded += 1;
                    } else {
                        self.tree.put(key, value, guard).map_err(ReplayError::Refused)?;
                        self.stats.entries += 1;
                    }
                }
            }
            Kind::CheckpointEnd => {
                let id = u64::from_le_bytes(payload.get(..8).ok_or(malformed)?.try_into().unwrap());
                if self.loading == Some(id) {
                    self.loading = None;
                    self.touched = HashSet::new();
                }
            }
            Kind::CheckpointBegin | Kind::Pad | Kind::Fragment => {}
        }
        Ok(())
    }

    /// Ends the replay: the checkpoint named by the superblock must have been loaded whole.
    pub fn finish(self) -> Result<ReplayStats, ReplayError> {
        match self.loading {
            Some(id) => Err(ReplayError::MissingCheckpointEnd { id }),
            None => Ok(self.stats),
        }
    }
}

fn take_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let field = bytes.get(4..4 + len)?;
    Some((field, &bytes[4 + len..]))
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::config::TreeConfig;
    use alloc::collections::BTreeMap;
    use alloc::vec;

    fn op(kind: Kind, key: &[u8], value: &[u8]) -> Vec<u8> {
        let op = Op { sn: 0, key, value: (kind == Kind::Put).then_some(value) };
        let mut out = vec![0; op.payload_len()];
        op.write_payload(&mut out);
        out
    }

    /// A checkpoint taken while writes go on: ops logged before the pages and after the cover
    /// address win over the image; the image wins over nothing; a second, unfinished checkpoint
    /// is ignored.
    #[test]
    fn ops_logged_during_a_checkpoint_win_over_its_image() {
        let tree = Tree::new(TreeConfig::default()).unwrap();
        let id = 1000;
        let mut replay = Replay::new(&tree, id);
        // Logged after the cover address, before the pages: newer than the image.
        replay.apply(Kind::Put, &op(Kind::Put, b"b", b"new-b"), &tree.pin()).unwrap();
        replay.apply(Kind::Delete, &op(Kind::Delete, b"c", b""), &tree.pin()).unwrap();
        replay.apply(Kind::CheckpointBegin, &begin_payload(900), &tree.pin()).unwrap();
        let mut pages = PageWriter::new(id, 16);
        let mut payloads = Vec::new();
        for (k, v) in [(b"a", b"old-a"), (b"b", b"old-b"), (b"c", b"old-c"), (b"d", b"old-d")] {
            payloads.extend(pages.push(k, v));
        }
        payloads.extend(pages.finish());
        assert!(payloads.len() >= 2, "cut into several pages");
        for p in &payloads {
            replay.apply(Kind::Page, p, &tree.pin()).unwrap();
        }
        replay
            .apply(Kind::CheckpointEnd, &end_payload(id, pages.entries(), payloads.len() as u64), &tree.pin())
            .unwrap();
        // After the end, pages of an unfinished later checkpoint change nothing.
        let mut later = PageWriter::new(5000, 1);
        replay.apply(Kind::Page, &later.push(b"a", b"stale").unwrap(), &tree.pin()).unwrap();
        replay.apply(Kind::Put, &op(Kind::Put, b"d", b"newest-d"), &tree.pin()).unwrap();
        let stats = replay.finish().unwrap();
        assert_eq!((stats.ops, stats.entries, stats.superseded), (3, 2, 2));
        let guard = tree.pin();
        let snapshot = tree.snapshot();
        let got: BTreeMap<Vec<u8>, Vec<u8>> =
            tree.range::<[u8], _>(&snapshot, .., &guard).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let want: BTreeMap<Vec<u8>, Vec<u8>> = [(b"a", &b"old-a"[..]), (b"b", b"new-b"), (b"d", b"newest-d")]
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_checkpoint_without_its_end_is_an_error() {
        let tree = Tree::new(TreeConfig::default()).unwrap();
        let replay = Replay::new(&tree, 7);
        assert_eq!(replay.finish(), Err(ReplayError::MissingCheckpointEnd { id: 7 }));
        let mut replay = Replay::new(&tree, 7);
        assert!(matches!(replay.apply(Kind::Page, &[1, 2], &tree.pin()), Err(ReplayError::Malformed { .. })));
    }
}
