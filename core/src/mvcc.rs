//! Snapshot numbers: which number a write is tagged with, which snapshots are alive, and the
//! visibility rule that decides which versions a snapshot sees and which versions may be dropped.
//!
//! Writes are tagged with the *open* snapshot number. [`Mvcc::snapshot`] seals it: it publishes the
//! number as live, advances the open number, and waits until every write still carrying the sealed
//! number has landed. After that no write with a number at or below the snapshot's can appear, so
//! the snapshot's view never changes. A version is visible to snapshot `s` when it is the first
//! version of its key, in chain order (newest first), whose number is at most `s`.
//!
//! Writers announce themselves on one of a few striped counters (chosen by a hash of the key, and
//! by the parity of their number), so a write costs two mostly uncontended atomic operations and a
//! fence, and sealing waits only for writers of its own number.

use alloc::sync::Arc;
use alloc::vec::Vec;
use crossbeam_utils::CachePadded;

use crate::sync::{fence, AtomicU64, Backoff, Ordering, SpinLock};

/// Number of striped in-flight counters. Writers pick one by a hash of the key. (Two under loom, which
/// explores every interleaving of every atomic access: fewer stripes, same protocol.)
const STRIPES: usize = if cfg!(loom) { 2 } else { 16 };

/// The snapshot number that reads at "the latest state" use: every version is at or below it.
pub const LATEST: u64 = u64::MAX;

/// The global snapshot sequence, shared by every tree (shard) whose snapshots must agree.
pub struct Mvcc {
    /// The number new writes are tagged with; `snapshot()` seals it and moves on.
    open: AtomicU64,
    /// Writers in flight, per stripe, per parity of the number they carry.
    inflight: [CachePadded<[AtomicU64; 2]>; STRIPES],
    /// Sorted snapshot numbers that are alive (with repeats, one per handle).
    live: SpinLock<Vec<u64>>,
    /// Serialises sealing, so a seal waits only for writers of its own number.
    sealing: SpinLock<()>,
}

impl Default for Mvcc {
    fn default() -> Self {
        Self::new()
    }
}

impl Mvcc {
    /// A new sequence whose first writes carry snapshot number 1 (0 means "visible to all").
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// A new sequence whose first writes carry number `first` (at least 1): a reopened store
    /// continues its numbering past every number its logs hold.
    pub fn starting_at(first: u64) -> Self {
        Self {
            open: AtomicU64::new(first.max(1)),
            inflight: core::array::from_fn(|_| CachePadded::new([AtomicU64::new(0), AtomicU64::new(0)])),
            live: SpinLock::new(Vec::new()),
            sealing: SpinLock::new(()),
        }
    }

    /// Announces a write; the ticket carries the number to tag it with and ends the announcement
    /// when dropped (also if the writer panics, so a seal never waits forever). `stripe` picks
    /// the in-flight counter (a hash of the key spreads writers over them). A caller that logs
    /// its write takes the ticket before the log append and keeps it until the write is in the
    /// tree ([`Tree::put_with`](crate::Tree::put_with)): a seal then also means that every write
    /// with the sealed number is in its log.
    pub fn begin_write(&self, stripe: usize) -> WriteTicket<'_> {
        let stripe = stripe % STRIPES;
        loop {
            let sn = self.open.load(Ordering::SeqCst);
            let counter = &self.inflight[stripe][(sn & 1) as usize];
            counter.fetch_add(1, Ordering::Relaxed);
            // Pairs with the fence in `snapshot` (Dekker): either the sealer sees our increment,
            // or we see its new `open` and retry with the new number.
            fence(Ordering::SeqCst);
            if self.open.load(Ordering::Relaxed) == sn {
                return WriteTicket { mvcc: self, sn, stripe };
            }
            counter.fetch_sub(1, Ordering::Release);
        }
    }

    /// Takes a point-in-time snapshot: it sees every write that returned before this call and none
    /// that starts after it returns.
    pub fn snapshot(self: &Arc<Self>) -> Snapshot {
        // Publish before sealing: a consolidation that does not see `sn` read its chain before any
        // write tagged above `sn` could exist, so it keeps what `sn` needs as "latest".
        let sn = self.seal_with(|sn| self.register(sn));
        Snapshot { mvcc: Arc::clone(self), sn }
    }

    /// Seals the open number without taking a snapshot: returns it once every write tagged
    /// with it (or below) has landed, after which no write with a number at or below it can
    /// begin. What a commit of the logs builds on: every write it must cover is appended.
    pub fn seal(&self) -> u64 {
        self.seal_with(|_| {})
    }

    fn seal_with(&self, before: impl FnOnce(u64)) -> u64 {
        let _sealing = self.sealing.lock();
        let sn = self.open.load(Ordering::SeqCst);
        before(sn);
        self.open.fetch_add(1, Ordering::Relaxed);
        // Pairs with the fence in `begin_write`.
        fence(Ordering::SeqCst);
        // A writer of `sn` may be waiting for I/O (a log append waits when every write buffer
        // is full), or be descheduled: spin only briefly, then yield.
        let backoff = Backoff::new();
        for stripe in &self.inflight {
            while stripe[(sn & 1) as usize].load(Ordering::Acquire) != 0 {
                backoff.snooze();
            }
        }
        sn
    }

    fn register(&self, sn: u64) {
        let mut live = self.live.lock();
        let at = live.partition_point(|&s| s <= sn);
        live.insert(at, sn);
    }

    fn release(&self, sn: u64) {
        let mut live = self.live.lock();
        if let Ok(at) = live.binary_search(&sn) {
            live.remove(at);
        } else {
            debug_assert!(false, "released snapshot {sn} that was not live");
        }
    }

    /// Copies the live snapshot numbers, sorted and without repeats, into `out`.
    pub(crate) fn live_into(&self, out: &mut Vec<u64>) {
        out.clear();
        out.extend_from_slice(&self.live.lock());
        out.dedup();
    }

    /// Number of snapshot handles alive.
    pub fn live_count(&self) -> usize {
        self.live.lock().len()
    }

    /// The number that new writes are tagged with now.
    pub fn open_sn(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }
}

/// A write in flight: the number it carries and where it announced itself. Dropping it announces
/// that the write is installed (or abandoned).
#[must_use]
pub struct WriteTicket<'a> {
    mvcc: &'a Mvcc,
    pub(crate) sn: u64,
    stripe: usize,
}

impl WriteTicket<'_> {
    /// The number the write carries.
    pub fn sn(&self) -> u64 {
        self.sn
    }

    /// Whether the ticket is of `mvcc`.
    pub(crate) fn is_of(&self, mvcc: &Mvcc) -> bool {
        core::ptr::eq(self.mvcc, mvcc)
    }
}

impl Drop for WriteTicket<'_> {
    fn drop(&mut self) {
        self.mvcc.inflight[self.stripe][(self.sn & 1) as usize].fetch_sub(1, Ordering::Release);
    }
}

/// A point-in-time view. Versions it can see are kept by consolidation until it is dropped.
pub struct Snapshot {
    mvcc: Arc<Mvcc>,
    sn: u64,
}

impl Snapshot {
    /// The snapshot number: the view holds exactly the writes tagged at or below it.
    pub fn sn(&self) -> u64 {
        self.sn
    }

    /// The sequence this snapshot belongs to.
    pub fn mvcc(&self) -> &Arc<Mvcc> {
        &self.mvcc
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        self.mvcc.register(self.sn);
        Self { mvcc: Arc::clone(&self.mvcc), sn: self.sn }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.mvcc.release(self.sn);
    }
}

impl core::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Snapshot").field("sn", &self.sn).finish()
    }
}

/// Which versions of one key consolidation keeps.
///
/// `versions` are one key's snapshot numbers in chain order (newest first); `live` is sorted and
/// without repeats. The newest version is kept (it is what the latest state and every future
/// snapshot see); so is, for each live snapshot, the first version at or below it. Returns a mask.
pub(crate) fn retained(versions: &[u64], live: &[u64], keep: &mut Vec<bool>) {
    keep.clear();
    let mut newest_below = u64::MAX; // smallest number among the versions above
    for (i, &sn) in versions.iter().enumerate() {
        // Kept if some live snapshot s has sn <= s < every number above it.
        let first_at_or_above = live.partition_point(|&s| s < sn);
        let serves_snapshot = live.get(first_at_or_above).is_some_and(|&s| s < newest_below);
        keep.push(i == 0 || serves_snapshot);
        newest_below = newest_below.min(sn);
    }
}

/// The number a kept version is stored with: 0 ("visible to every snapshot") when no live snapshot
/// is older than it, which saves bytes and never changes what any snapshot sees.
pub(crate) fn compacted_sn(sn: u64, live: &[u64]) -> u64 {
    match live.first() {
        Some(&oldest) if oldest < sn => sn,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(versions: &[u64], live: &[u64]) -> Vec<bool> {
        let mut keep = Vec::new();
        retained(versions, live, &mut keep);
        keep
    }

    #[test]
    fn keeps_newest_and_one_per_live_snapshot() {
        assert_eq!(kept(&[9, 7, 5, 3], &[]), [true, false, false, false]);
        assert_eq!(kept(&[9, 7, 5, 3], &[6]), [true, false, true, false]);
        assert_eq!(kept(&[9, 7, 5, 3], &[4, 6, 8]), [true, true, true, true]);
        assert_eq!(kept(&[9, 7, 5, 3], &[2]), [true, false, false, false]);
        // Out-of-order numbers (a slower writer landed on top): snapshot 8 sees the first <= 8.
        assert_eq!(kept(&[5, 8, 3], &[8]), [true, false, false]);
    }

    #[test]
    fn compaction_only_when_no_older_snapshot() {
        assert_eq!(compacted_sn(7, &[]), 0);
        assert_eq!(compacted_sn(7, &[7, 9]), 0);
        assert_eq!(compacted_sn(7, &[6]), 7);
    }

    #[test]
    fn snapshot_seals_and_releases() {
        let mvcc = Arc::new(Mvcc::new());
        let t = mvcc.begin_write(3);
        assert_eq!(t.sn, 1);
        drop(t);
        let s = mvcc.snapshot();
        assert_eq!(s.sn(), 1);
        assert_eq!(mvcc.open_sn(), 2);
        let s2 = s.clone();
        assert_eq!(mvcc.live_count(), 2);
        drop(s);
        drop(s2);
        assert_eq!(mvcc.live_count(), 0);
    }
}
