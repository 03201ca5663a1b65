//! One point of one order across shards: commit records, the cut recovery computes from them,
//! and the history of earlier cuts that keeps writes beyond a cut from coming back.
//!
//! Every write (a put, a delete, a batch, a relocation) carries a store-wide write number, its
//! snapshot number: a writer takes it before its log append and keeps it until its write is in
//! the tree, and sealing a number waits for every write that carries it (see [`crate::Mvcc`]).
//! Writes are ordered by number, and within a number by log order.
//!
//! A **commit** seals a number `sn`, reads every shard's log end, and appends `(sn, ends)` to
//! one shard's log: every write numbered at or below `sn` lies, in its shard, below that shard's
//! end. Recovery reads every shard ([`ShardScan`]); a commit is **valid** if every shard's
//! recovered log reaches the end the commit names for it. The **cut** is the largest valid
//! commit's number, and recovery keeps exactly the writes numbered at or below it: all of a
//! batch's parts or none, and no write without every write numbered before it.
//!
//! ```text
//! Commit payload: u64 sn, u32 shards, shards × u64 end
//! ```
//!
//! Writes beyond the cut may be durable; they stay in the logs, so the next recovery must not
//! count them once later commits pass their numbers. The [`History`] (a small file of the
//! store's, written durably before the store takes writes) keeps each recovery's cut and
//! numbers its dropped writes may carry as a **void** range; a void range is forgotten once
//! every shard's head has passed the log ends it was recorded with (its writes are gone).
//!
//! ```text
//! History: "HELIOCUT", u32 version, u32 crc32c of what follows,
//!          u64 cut, u64 next_sn, u32 shards, u32 voids,
//!          voids × (u64 after, u64 before, shards × u64 end)
//! ```
//!
//! A shard that takes no writes does nothing: a commit names its end as it is, which its
//! recovered log reaches. A shard that does take writes is flushed up to the end a commit names
//! before the commit counts as durable (see the runtime's committer).

use alloc::vec::Vec;

use super::batch;
use super::crc32c;
use super::frame::{Kind, Op};
use super::page::PageRecord;

/// A commit record: every write numbered at or below `sn` is in shard `i`'s log below
/// `ends[i]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commit {
    /// The sealed write number.
    pub sn: u64,
    /// Each shard's log end when `sn` was sealed.
    pub ends: Vec<u64>,
}

impl Commit {
    /// Bytes of the payload of a commit over `shards` shards.
    pub fn payload_len(shards: usize) -> usize {
        12 + 8 * shards
    }

    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::payload_len(self.ends.len()));
        out.extend_from_slice(&self.sn.to_le_bytes());
        out.extend_from_slice(&(self.ends.len() as u32).to_le_bytes());
        for end in &self.ends {
            out.extend_from_slice(&end.to_le_bytes());
        }
        out
    }

    /// Reads a commit back from its payload; `None` if malformed.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let sn = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let shards = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?) as usize;
        let rest = payload.get(12..)?;
        if rest.len() != shards.checked_mul(8)? {
            return None;
        }
        let ends = rest.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        Some(Self { sn, ends })
    }
}

/// The write number of a record that carries writes (puts, deletes, batches, relocations):
/// `Some(Some(sn))`; `Some(None)` for a record that carries none; `None` if it does not parse.
pub fn write_sn(kind: Kind, payload: &[u8]) -> Option<Option<u64>> {
    match kind {
        Kind::Put | Kind::Delete => Some(Some(Op::decode_payload(kind, payload)?.sn)),
        Kind::Batch | Kind::Relocated => Some(Some(batch::sn(payload)?)),
        Kind::Commit => Commit::decode(payload).map(|_| None),
        // Not write-numbered, like a commit: a page record's `sn` is the snapshot it was
        // captured at, not a write's number, and it writes nothing of its own (each version in
        // it carries the number of the write that made it), so the cut neither keeps nor drops
        // it by number; whoever reads pages back filters their versions by the plan. Checked
        // whole, as a commit is, so that recovery's first pass refuses a page record that does
        // not parse rather than leaving it for later.
        Kind::PageImage | Kind::PageDelta => PageRecord::decode(payload).map(|_| None),
        Kind::Pad | Kind::Fragment => Some(None),
    }
}

/// What recovery's first pass learns from one shard's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardScan {
    /// The log's head.
    pub head: u64,
    /// Where the recovered log ends.
    pub end: u64,
    /// The largest write, commit or page snapshot number in the log (0 if none).
    pub max_sn: u64,
    /// The commits in the log, in log order.
    pub commits: Vec<Commit>,
}

/// A record that does not parse as its kind says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The record's kind.
    pub kind: Kind,
}

impl ShardScan {
    /// A scan of a log whose head is `head`.
    pub fn new(head: u64) -> Self {
        Self { head, end: head, ..Self::default() }
    }

    /// Takes what a page table file vouches for about the log before the place this scan
    /// starts reading at (see [`TableMark`](super::page::TableMark)): its complete commit, in
    /// place of the commits there, which it numbers at or above; and the snapshot numbers of
    /// the page records its `table` names there, which may lie above that commit (a round's
    /// snapshot can be sealed past the last write): they count as numbers the log holds, as
    /// they would if the scan read those records.
    pub fn start_after(&mut self, mark: &super::page::TableMark, table: &super::page::PageTable) {
        if !mark.commit.ends.is_empty() {
            self.max_sn = self.max_sn.max(mark.commit.sn);
            self.commits.push(mark.commit.clone());
        }
        self.max_sn = self.max_sn.max(table.entries().map(|e| e.sn).max().unwrap_or(0));
    }

    /// Takes the next record of the log.
    pub fn push(&mut self, kind: Kind, payload: &[u8]) -> Result<(), Malformed> {
        let malformed = Malformed { kind };
        if kind == Kind::Commit {
            let commit = Commit::decode(payload).ok_or(malformed)?;
            self.max_sn = self.max_sn.max(commit.sn);
            self.commits.push(commit);
        } else if matches!(kind, Kind::PageImage | Kind::PageDelta) {
            // Not a write, but its snapshot number must stay below every later write's: replay
            // skips a write numbered at or below the snapshot of its key's page records.
            let record = PageRecord::decode(payload).ok_or(malformed)?;
            self.max_sn = self.max_sn.max(record.sn);
        } else if let Some(sn) = write_sn(kind, payload).ok_or(malformed)? {
            self.max_sn = self.max_sn.max(sn);
        }
        Ok(())
    }
}

/// A range of write numbers whose writes a recovery dropped: `after < sn < before`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Void {
    /// The cut of that recovery.
    pub after: u64,
    /// The first number written after that recovery.
    pub before: u64,
    /// Each shard's log end at that recovery: the dropped writes lie below.
    pub ends: Vec<u64>,
}

/// The store's record of its recoveries' cuts (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The last recovery's cut.
    pub cut: u64,
    /// Numbers given out from here on are at least this.
    pub next_sn: u64,
    /// Numbers whose writes were dropped, in ascending order.
    pub voids: Vec<Void>,
}

/// Why a history file or a set of scans cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutError {
    /// The history's bytes are damaged or not a history.
    Corrupt,
    /// A write number of `u64::MAX` (in a record, a commit or the history): none can have been
    /// given out, and none could follow it.
    Exhausted,
    /// The history or a commit names another number of shards than the store has.
    ShardCount {
        /// Shards named.
        found: usize,
        /// Shards the store has.
        expected: usize,
    },
}

impl core::fmt::Display for CutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CutError::Corrupt => write!(f, "the recovery history is damaged"),
            CutError::Exhausted => {
                write!(f, "a write number of 2^64 - 1 in the logs or the recovery history")
            }
            CutError::ShardCount { found, expected } => {
                write!(f, "a commit or the recovery history names {found} shards, the store has {expected}")
            }
        }
    }
}

const MAGIC: &[u8; 8] = b"HELIOCUT";
const VERSION: u32 = 1;

impl History {
    /// Whether writes numbered `sn` were dropped by an earlier recovery.
    pub fn is_void(&self, sn: u64) -> bool {
        let at = self.voids.partition_point(|v| v.before <= sn);
        self.voids.get(at).is_some_and(|v| v.after < sn)
    }

    /// The file's bytes for a store of `shards` shards.
    pub fn encode(&self, shards: usize) -> Vec<u8> {
        let mut body = Vec::new();
        let u64s = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        u64s(&mut body, self.cut);
        u64s(&mut body, self.next_sn);
        body.extend_from_slice(&(shards as u32).to_le_bytes());
        body.extend_from_slice(&(self.voids.len() as u32).to_le_bytes());
        for void in &self.voids {
            assert_eq!(void.ends.len(), shards, "a void range of another shard count");
            u64s(&mut body, void.after);
            u64s(&mut body, void.before);
            for &end in &void.ends {
                u64s(&mut body, end);
            }
        }
        let mut out = Vec::with_capacity(16 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&crc32c(&[&body]).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads a history file of a store of `shards` shards.
    pub fn decode(bytes: &[u8], shards: usize) -> Result<Self, CutError> {
        let corrupt = CutError::Corrupt;
        if bytes.get(..8) != Some(&MAGIC[..]) || word(bytes, 8) != Some(VERSION) {
            return Err(corrupt);
        }
        let body = bytes.get(16..).ok_or(corrupt)?;
        if word(bytes, 12) != Some(crc32c(&[body])) {
            return Err(corrupt);
        }
        let long = |at: usize| body.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
        let (cut, next_sn) = (long(0).ok_or(corrupt)?, long(8).ok_or(corrupt)?);
        let found = word(body, 16).ok_or(corrupt)? as usize;
        if found != shards {
            return Err(CutError::ShardCount { found, expected: shards });
        }
        let count = word(body, 20).ok_or(corrupt)? as usize;
        let each = 16 + 8 * shards;
        if body.len() != 24 + count.checked_mul(each).ok_or(corrupt)? {
            return Err(corrupt);
        }
        let voids = (0..count)
            .map(|i| {
                let at = 24 + i * each;
                let ends = (0..shards).map(|s| long(at + 16 + 8 * s).expect("length checked")).collect();
                Void { after: long(at).expect("checked"), before: long(at + 8).expect("checked"), ends }
            })
            .collect::<Vec<_>>();
        let ordered = voids.windows(2).all(|w| w[0].before <= w[1].after);
        if !ordered || voids.iter().any(|v| v.after >= v.before) {
            return Err(corrupt);
        }
        Ok(Self { cut, next_sn, voids })
    }
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// What a recovery keeps and how the store goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Writes numbered above this are dropped.
    pub cut: u64,
    /// The first number the reopened store gives out.
    pub next_sn: u64,
    /// The history to write (durably) before the store takes writes.
    pub history: History,
}

impl Plan {
    /// Whether replay applies a write numbered `sn`.
    pub fn keeps(&self, sn: u64) -> bool {
        sn <= self.cut && !self.history.is_void(sn)
    }
}

/// The cut of a store whose shards' logs read as `scans`, given its `history`.
pub fn plan(history: &History, scans: &[ShardScan]) -> Result<Plan, CutError> {
    let shards = scans.len();
    let commits = || scans.iter().flat_map(|s| &s.commits);
    if let Some(commit) = commits().find(|c| c.ends.len() != shards) {
        return Err(CutError::ShardCount { found: commit.ends.len(), expected: shards });
    }
    let spent = [history.cut, history.next_sn].into_iter().chain(scans.iter().map(|s| s.max_sn));
    if spent.chain(commits().map(|c| c.sn)).any(|sn| sn == u64::MAX) {
        return Err(CutError::Exhausted);
    }
    let mut cut = history.cut;
    for commit in commits() {
        let valid = commit.sn > cut
            && !history.is_void(commit.sn)
            && commit.ends.iter().zip(scans).all(|(&end, scan)| end <= scan.end);
        if valid {
            cut = commit.sn;
        }
    }
    let newest = scans.iter().map(|s| s.max_sn).max().unwrap_or(0);
    let next_sn = history.next_sn.max(newest + 1).max(cut + 1);
    // Forget the void ranges whose writes every head has passed.
    let mut voids: Vec<Void> = history
        .voids
        .iter()
        .filter(|v| !v.ends.iter().zip(scans).all(|(&end, scan)| end <= scan.head))
        .cloned()
        .collect();
    if newest > cut {
        let ends = scans.iter().map(|s| s.end).collect();
        match voids.last_mut() {
            // No progress since the last recovery: its void range grows.
            Some(last) if last.after == cut => {
                last.before = next_sn;
                last.ends = ends;
            }
            _ => voids.push(Void { after: cut, before: next_sn, ends }),
        }
    }
    Ok(Plan { cut, next_sn, history: History { cut, next_sn, voids } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn scan(head: u64, end: u64, max_sn: u64, commits: &[(u64, &[u64])]) -> ShardScan {
        let commits = commits.iter().map(|&(sn, ends)| Commit { sn, ends: ends.to_vec() }).collect();
        ShardScan { head, end, max_sn, commits }
    }

    #[test]
    fn the_cut_is_the_largest_commit_every_shard_reaches() {
        let scans = [
            scan(0, 500, 9, &[(3, &[100, 50]), (6, &[300, 200]), (9, &[500, 400])]),
            scan(0, 350, 8, &[(7, &[320, 340])]),
        ];
        let plan = plan(&History::default(), &scans).unwrap();
        // Commit 9 needs shard 1 at 400; commit 7 needs shard 0 at 320: both reach.
        assert_eq!(plan.cut, 7);
        assert_eq!(plan.next_sn, 10);
        assert!(plan.keeps(7) && !plan.keeps(8) && plan.keeps(0));
        assert_eq!(plan.history.voids, vec![Void { after: 7, before: 10, ends: vec![500, 350] }]);
    }

    /// A page record's snapshot number counts as a number the log holds: the next life's
    /// writes must be numbered above it, or replay would take them for writes the page
    /// records hold already and skip them.
    #[test]
    fn page_snapshots_count_as_numbers_the_log_holds() {
        let mut writer = crate::log::page::PageWriter::new();
        writer.start(42, None, b"", None);
        writer.push(b"k", Some(b"v"), 7);
        let mut scan = ShardScan::new(0);
        scan.push(Kind::Put, &{
            let op = Op { sn: 7, key: b"k", value: Some(b"v") };
            let mut out = alloc::vec![0; op.payload_len()];
            op.write_payload(&mut out);
            out
        })
        .unwrap();
        scan.push(Kind::PageImage, writer.payload()).unwrap();
        assert_eq!(scan.max_sn, 42);
        assert_eq!(scan.push(Kind::PageImage, &[1, 2, 3]), Err(Malformed { kind: Kind::PageImage }));

        // The same record before the place a table file says the scan starts at: the table
        // names it, and its number counts although the scan does not read it and the file's
        // commit is below it. (Found by the SIGKILL test: a new life's first write numbered
        // at the last round's snapshot, and skipped by the replay as held by its page.)
        let mut table = crate::log::page::PageTable::new();
        let record = crate::log::page::PageRecord::decode(writer.payload()).unwrap();
        table.fold(4096, Kind::PageImage, &record).unwrap();
        let mark =
            crate::log::page::TableMark { position: 8192, commit: Commit { sn: 7, ends: alloc::vec![8192] } };
        let mut scan = ShardScan::new(0);
        scan.start_after(&mark, &table);
        assert_eq!(scan.max_sn, 42);
        scan.end = 8192;
        let plan = plan(&History::default(), &[scan]).unwrap();
        assert_eq!((plan.cut, plan.next_sn), (7, 43));
    }

    #[test]
    fn dropped_numbers_stay_dropped_until_every_head_passes_them() {
        let first = plan(&History::default(), &[scan(0, 100, 5, &[(2, &[40])])]).unwrap();
        assert_eq!((first.cut, first.next_sn), (2, 6));
        // The next run writes 6.., commits 8; the void 3..=5 writes are still in the log.
        let second =
            plan(&first.history, &[scan(0, 300, 9, &[(2, &[40]), (4, &[90]), (8, &[250])])]).unwrap();
        assert_eq!(second.cut, 8, "a commit numbered inside a void range never counts");
        assert!(!second.keeps(4) && second.keeps(6) && second.keeps(2) && !second.keeps(9));
        assert_eq!(second.history.voids.len(), 2);
        // Once the head has passed where the first recovery's log ended, its range goes.
        let third = plan(&second.history, &[scan(120, 300, 9, &[(8, &[250])])]).unwrap();
        assert_eq!(third.history.voids, vec![Void { after: 8, before: 10, ends: vec![300] }]);
        assert_eq!(third.next_sn, 10);
    }

    #[test]
    fn a_recovery_without_progress_widens_the_last_void_range() {
        let first = plan(&History::default(), &[scan(0, 100, 5, &[(2, &[40])])]).unwrap();
        let second = plan(&first.history, &[scan(0, 150, 7, &[(2, &[40]), (7, &[200])])]).unwrap();
        assert_eq!(second.cut, 2);
        assert_eq!(second.history.voids, vec![Void { after: 2, before: 8, ends: vec![150] }]);
        // Nothing written beyond the cut: no void range.
        let clean = plan(&History::default(), &[scan(0, 100, 4, &[(4, &[100])])]).unwrap();
        assert!(clean.history.voids.is_empty());
    }

    #[test]
    fn the_last_write_number_is_refused() {
        let commit =
            |sn| ShardScan { end: 8, commits: vec![Commit { sn, ends: vec![8] }], ..ShardScan::default() };
        assert_eq!(plan(&History::default(), &[commit(u64::MAX)]), Err(CutError::Exhausted));
        let full = ShardScan { max_sn: u64::MAX, ..ShardScan::default() };
        assert_eq!(plan(&History::default(), &[full]), Err(CutError::Exhausted));
        let history = History { cut: u64::MAX, ..History::default() };
        assert_eq!(plan(&history, &[ShardScan::new(0)]), Err(CutError::Exhausted));
        assert_eq!(plan(&History::default(), &[commit(u64::MAX - 1)]).unwrap().next_sn, u64::MAX);
    }

    #[test]
    fn history_round_trips_and_damage_is_refused() {
        let history = History {
            cut: 7,
            next_sn: 12,
            voids: vec![
                Void { after: 2, before: 5, ends: vec![1, 2] },
                Void { after: 7, before: 12, ends: vec![3, 4] },
            ],
        };
        let bytes = history.encode(2);
        assert_eq!(History::decode(&bytes, 2), Ok(history));
        assert_eq!(History::decode(&bytes, 3), Err(CutError::ShardCount { found: 2, expected: 3 }));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(History::decode(&bad, 2).is_err(), "a flipped bit at {at} passed");
        }
        assert!(History::decode(&bytes[..bytes.len() - 1], 2).is_err());
    }

    #[test]
    fn commits_round_trip_and_records_name_their_numbers() {
        let commit = Commit { sn: 9, ends: vec![1, 2, 3] };
        let payload = commit.encode();
        assert_eq!(payload.len(), Commit::payload_len(3));
        assert_eq!(Commit::decode(&payload), Some(commit));
        assert_eq!(Commit::decode(&payload[..payload.len() - 1]), None);
        let mut scan = ShardScan::new(0);
        scan.push(Kind::Commit, &payload).unwrap();
        let op = Op { sn: 11, key: b"k", value: None };
        let mut out = vec![0; op.payload_len()];
        op.write_payload(&mut out);
        scan.push(Kind::Delete, &out).unwrap();
        assert_eq!(scan.max_sn, 11);
        assert_eq!(scan.push(Kind::Commit, &[1]), Err(Malformed { kind: Kind::Commit }));
        assert_eq!(write_sn(Kind::Pad, &[]), Some(None));
    }
}
