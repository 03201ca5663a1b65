//! The tree: a lock-free skiplist index over pages, and the write, read and structure-modification
//! protocols on them.
//!
//! The index maps each page's low key to its [`PageCell`], which lives on the skiplist node (the
//! cell is boxed so that a split can name the new page before its node exists). A reader or writer
//! finds the node with the greatest low key at or below its key, then follows right siblings while
//! the page's upper bound is at or below the key: splits publish a page before indexing it, as in
//! a B-link tree. Every change to a page is one compare-and-swap of its head; structure changes
//! (consolidate, split, merge) are helped along by whoever meets them half done.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::{Bound, RangeBounds};
use core::ptr::{self, NonNull};

use crossbeam_epoch::{Collector, Guard};
use crossbeam_skiplist::base::SkipList;

use crate::config::{ConfigError, TreeConfig};
use crate::error::Error;
use crate::index::{CellBox, Index, IndexKey};
use crate::iter::Iter;
use crate::mvcc::{Mvcc, Snapshot, WriteTicket, LATEST};
use crate::page::base::{prefix, Version};
use crate::page::record::{chain_bytes, free_chain, merge_state, Body, Header, PageCell, Record};
use crate::page::{self, garbage_collect, Gathered, GcScratch, Loaded};
use crate::paging::PageSource;
use crate::stats::{Counters, TreeStats};
use crate::sync::{AtomicU8, Ordering};

/// Where [`Tree::locate`] should land.
#[derive(Clone, Copy)]
pub(crate) enum Target<'k> {
    /// The page that holds this key.
    Key(&'k [u8]),
    /// The page that holds the keys just below this one (which must not be empty).
    Below(&'k [u8]),
    /// The last page.
    Last,
}

/// A memory-resident, lock-free, multi-version ordered map of byte keys to byte values: a
/// Bw-tree-style set of delta-chain pages under a skiplist index.
///
/// Every method takes an epoch [`Guard`] from the tree's collector ([`Tree::pin`]); results borrow
/// from the guard. Any number of threads may call any method at once.
pub struct Tree {
    pub(crate) index: Index,
    collector: Collector,
    mvcc: Arc<Mvcc>,
    config: TreeConfig,
    pub(crate) counters: Counters,
    /// Where swapped-out pages are read back from; `None` for a tree that lives in memory only.
    pub(crate) source: Option<Arc<dyn PageSource>>,
    /// Bytes of memory the pages, their records and index nodes hold (shared with the deferred
    /// frees of retired chains, which count them off when they run).
    resident: Arc<Resident>,
}

/// Counters `Resident` is spread over.
const RESIDENT_STRIPES: usize = 8;

/// Bytes of memory held: a wrapping sum of signed changes, kept as allocations are made and
/// freed (no walk), spread over a few cache lines so that writers on different cores rarely
/// share one. Plain atomics, not part of any protocol (and so not loom's: the epoch collector
/// may run a deferred free after its model execution is over).
struct Resident {
    stripes: [crossbeam_utils::CachePadded<core::sync::atomic::AtomicU64>; RESIDENT_STRIPES],
}

impl Resident {
    fn new() -> Self {
        let zero = || crossbeam_utils::CachePadded::new(core::sync::atomic::AtomicU64::new(0));
        Self { stripes: core::array::from_fn(|_| zero()) }
    }

    /// The counter this thread changes: picked by an address on its stack, which differs
    /// between threads (only the sum over all counters means anything).
    fn stripe(&self, bytes: &usize) -> &core::sync::atomic::AtomicU64 {
        let here = bytes as *const usize as usize;
        &self.stripes[(here >> 12) % RESIDENT_STRIPES]
    }

    fn add(&self, bytes: usize) {
        self.stripe(&bytes).fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.stripe(&bytes).fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        // Momentarily "negative" when a decrement lands before its increment.
        let sum = self.stripes.iter().fold(0u64, |sum, c| sum.wrapping_add(c.load(Ordering::Relaxed)));
        (sum as i64).max(0) as u64
    }
}

/// Retired chains at least this big are handed to the collector at once (a thread's local
/// bag of garbage holds dozens of chains before it is sealed otherwise).
const FLUSH_RETIRED_BYTES: usize = 64 << 10;

/// Memory an index node and its cell take besides the low key (an estimate: the skiplist's
/// tower height varies).
pub(crate) const NODE_BYTES: usize = 96 + core::mem::size_of::<PageCell>();

impl Tree {
    /// A tree with its own snapshot sequence, reclaiming memory through crossbeam's default
    /// collector (so [`Tree::pin`] is as cheap as `crossbeam_epoch::pin`).
    #[cfg(feature = "std")]
    pub fn new(config: TreeConfig) -> Result<Self, ConfigError> {
        Self::with_parts(config, crossbeam_epoch::default_collector().clone(), Arc::new(Mvcc::new()))
    }

    /// A tree that reclaims memory through `collector` and tags writes from `mvcc`, which several
    /// trees (shards) may share so that their snapshots agree.
    pub fn with_parts(
        config: TreeConfig,
        collector: Collector,
        mvcc: Arc<Mvcc>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let tree = Self::empty(config, collector, mvcc, None);
        let base = Record::base(&[], 0, None, ptr::null());
        let cell = Self::new_cell(Box::default(), base, true);
        tree.add_resident(NODE_BYTES + chain_bytes(base));
        // SAFETY: nothing else can reach the tree yet.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        tree.index.get_or_insert_with(IndexKey::new(&[]), || CellBox(cell), guard).release(guard);
        Ok(tree)
    }

    /// A tree without pages yet (every tree has at least one: the caller adds them).
    pub(crate) fn empty(
        config: TreeConfig,
        collector: Collector,
        mvcc: Arc<Mvcc>,
        source: Option<Arc<dyn PageSource>>,
    ) -> Self {
        Self {
            index: SkipList::new(collector.clone()),
            collector,
            mvcc,
            config,
            counters: Counters::default(),
            source,
            resident: Arc::new(Resident::new()),
        }
    }

    pub(crate) fn new_cell(low: Box<[u8]>, head: *mut Record, indexed: bool) -> NonNull<PageCell> {
        NonNull::from(Box::leak(Box::new(PageCell::new(low, head, indexed))))
    }

    /// Counts `bytes` more of memory held.
    pub(crate) fn add_resident(&self, bytes: usize) {
        self.resident.add(bytes);
    }

    /// Counts `bytes` of memory given up.
    pub(crate) fn sub_resident(&self, bytes: usize) {
        self.resident.sub(bytes);
    }

    /// Bytes of memory the tree's pages hold now: records, bases and index nodes, as counted
    /// when they are allocated and freed (retired records count until the epoch collector
    /// frees them; allocator overhead is not counted).
    pub fn resident_bytes(&self) -> u64 {
        self.resident.sum()
    }

    /// The snapshot number below which a page's versions may lose their numbers (see
    /// [`garbage_collect`]): its last flush's for a tree that writes pages to the log.
    fn flushed_floor(&self, cell: &PageCell) -> u64 {
        if self.source.is_some() {
            cell.flushed_sn.load(Ordering::Acquire)
        } else {
            u64::MAX
        }
    }

    /// Pins the current thread: the guard keeps every record it reads alive until dropped.
    #[cfg(feature = "std")]
    pub fn pin(&self) -> Guard {
        if &self.collector == crossbeam_epoch::default_collector() {
            crossbeam_epoch::pin()
        } else {
            self.collector.register().pin()
        }
    }

    /// The collector guards must come from.
    pub fn collector(&self) -> &Collector {
        &self.collector
    }

    /// The snapshot sequence the tree tags writes from.
    pub fn mvcc(&self) -> &Arc<Mvcc> {
        &self.mvcc
    }

    /// The configuration the tree was built with.
    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    fn check_guard(&self, guard: &Guard) {
        assert!(
            guard.collector() == Some(&self.collector),
            "guard pinned on another collector than the tree's"
        );
    }

    fn check_key(&self, key: &[u8]) -> Result<(), Error> {
        let max = self.config.key_bytes_max as usize;
        if key.len() > max {
            return Err(Error::KeyTooLarge { len: key.len(), max });
        }
        Ok(())
    }

    /// Checks a write against the configured limits without doing it: `Ok` means
    /// [`Tree::put`] (or, without a value, [`Tree::delete`]) of it will succeed.
    pub fn check_write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), Error> {
        self.check_key(key)?;
        let max = self.config.value_bytes_max as usize;
        match value {
            Some(value) if value.len() > max => Err(Error::ValueTooLarge { len: value.len(), max }),
            _ => Ok(()),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &[u8], value: &[u8], guard: &Guard) -> Result<(), Error> {
        self.check_write(key, Some(value))?;
        self.write(key, Some(value), None, false, guard);
        Ok(())
    }

    /// Sets `key` to `value` (`None` removes it) as part of the write `ticket` announced (from
    /// this tree's [`Mvcc::begin_write`]): the version carries the ticket's number, so several
    /// writes under one ticket (a batch, across trees that share the sequence) are seen by a
    /// snapshot all together or not at all.
    ///
    /// # Panics
    /// If the ticket is of another sequence than the tree's.
    pub fn put_with(
        &self,
        ticket: &WriteTicket<'_>,
        key: &[u8],
        value: Option<&[u8]>,
        guard: &Guard,
    ) -> Result<(), Error> {
        self.put_ticketed(ticket, key, value, false, guard).map(drop)
    }

    /// [`Tree::put_with`], except that a consolidation the write makes due on a page whose
    /// chain ends in swapped-out records, which would read them from the log with `guard`
    /// pinned, is left to the caller: true if so. Call [`Tree::consolidate_unpinned`] with
    /// `key` then, once the ticket is dropped and no lock is held, so that neither waits for
    /// the device. (A page whose chain is twice `consolidate_chain` long, or whose bytes are
    /// four times `page_bytes_max`, consolidates within the write, pinned and with the ticket
    /// held, so that a caller that never consolidates cannot grow its chain without bound.)
    ///
    /// # Panics
    /// If the ticket is of another sequence than the tree's.
    pub fn put_deferring_reads(
        &self,
        ticket: &WriteTicket<'_>,
        key: &[u8],
        value: Option<&[u8]>,
        guard: &Guard,
    ) -> Result<bool, Error> {
        self.put_ticketed(ticket, key, value, true, guard)
    }

    fn put_ticketed(
        &self,
        ticket: &WriteTicket<'_>,
        key: &[u8],
        value: Option<&[u8]>,
        defer: bool,
        guard: &Guard,
    ) -> Result<bool, Error> {
        assert!(ticket.is_of(&self.mvcc), "a write ticket of another snapshot sequence");
        self.check_write(key, value)?;
        Ok(self.write(key, value, Some(ticket), defer, guard))
    }

    /// Removes `key` (a no-op for a key that is absent, but still a recorded write).
    pub fn delete(&self, key: &[u8], guard: &Guard) -> Result<(), Error> {
        self.check_key(key)?;
        self.write(key, None, None, false, guard);
        Ok(())
    }

    /// The latest value of `key`.
    pub fn get<'t: 'g, 'g>(&'t self, key: &[u8], guard: &'g Guard) -> Result<Option<&'g [u8]>, Error> {
        self.get_sn(key, LATEST, guard)
    }

    /// The value of `key` as `snapshot` sees it.
    pub fn get_at<'t: 'g, 'g>(
        &'t self,
        snapshot: &Snapshot,
        key: &[u8],
        guard: &'g Guard,
    ) -> Result<Option<&'g [u8]>, Error> {
        self.check_snapshot(snapshot);
        self.get_sn(key, snapshot.sn(), guard)
    }

    /// The latest value of `key`, like [`Tree::get`], but never consolidating the page it reads
    /// (a read that finds a long delta chain consolidates it). For background readers such as
    /// a log cleaner, while writers are busy on the same pages: their consolidations would be
    /// undone by the next writes (measured: a cleaner consolidating as it read raised a 1M-key
    /// overwrite's peak memory by about a quarter).
    pub fn peek<'t: 'g, 'g>(&'t self, key: &[u8], guard: &'g Guard) -> Result<Option<&'g [u8]>, Error> {
        self.check_key(key)?;
        self.check_guard(guard);
        loop {
            let (cell, head) = self.locate(Target::Key(key), guard);
            match page::lookup(head, key, LATEST) {
                Ok(found) => return Ok(found),
                Err(_) => self.swap_in(cell, head, guard)?,
            }
        }
    }

    fn get_sn<'t: 'g, 'g>(
        &'t self,
        key: &[u8],
        sn: u64,
        guard: &'g Guard,
    ) -> Result<Option<&'g [u8]>, Error> {
        self.check_key(key)?;
        self.check_guard(guard);
        loop {
            let (cell, head) = self.locate(Target::Key(key), guard);
            match page::lookup(head, key, sn) {
                Ok(found) => {
                    cell.touch();
                    self.after_read(cell, head, guard);
                    return Ok(found);
                }
                // A borrowed answer must outlive the call: the page comes back into memory.
                Err(_) => self.swap_in(cell, head, guard)?,
            }
        }
    }

    /// A point-in-time view; see [`Mvcc::snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        self.mvcc.snapshot()
    }

    pub(crate) fn check_snapshot(&self, snapshot: &Snapshot) {
        assert!(Arc::ptr_eq(snapshot.mvcc(), &self.mvcc), "snapshot taken from another sequence");
    }

    /// The entries of `range` as `snapshot` sees them, in key order; `.rev()` walks backwards.
    pub fn range<'t: 'g, 'g, K, R>(
        &'t self,
        snapshot: &'g Snapshot,
        range: R,
        guard: &'g Guard,
    ) -> Iter<'t, 'g>
    where
        K: AsRef<[u8]> + ?Sized,
        R: RangeBounds<K>,
    {
        self.check_snapshot(snapshot);
        self.check_guard(guard);
        let own = |b: Bound<&K>| b.map(|k| alloc::borrow::Cow::Owned(k.as_ref().to_vec()));
        Iter::new(self, snapshot, own(range.start_bound()), own(range.end_bound()), guard)
    }

    /// Consolidates every page that has a delta chain (splitting and merging as the thresholds
    /// say), so that memory holds base pages only (under a split record where a page split
    /// during the pass). Under concurrent writes a page may gain records again at once; a page
    /// whose consolidation keeps losing races is left after a few tries.
    pub fn compact(&self, guard: &Guard) {
        const TRIES: u32 = 8;
        self.check_guard(guard);
        let mut target: Option<Box<[u8]>> = None;
        let mut failures = 0;
        loop {
            let (cell, head) = self.locate(Target::Key(target.as_deref().unwrap_or(&[])), guard);
            if head.hdr.chain_len > 0 && !self.consolidate(cell, head, guard) {
                failures += 1;
                if failures < TRIES {
                    continue; // lost a race: look again
                }
            }
            let head = cell.load();
            match head.hdr.high() {
                // A page frozen by a merge is found again through its left sibling.
                Some(_) if head.remove_state().is_some() => {}
                Some(high) => {
                    target = Some(high.into());
                    failures = 0;
                }
                None => return,
            }
        }
    }

    /// Counters of structure changes and the page count.
    pub fn stats(&self) -> TreeStats {
        self.counters.snapshot(self.index.len())
    }

    /// Bytes the pages hold now, walking every page once: their entries as encoded (exact for
    /// consolidated pages, an estimate for pages with deltas), without allocator, record-header
    /// and index overhead (about 1.2× more after compaction, per the memory benchmark) and
    /// without versions awaiting reclamation.
    pub fn page_bytes(&self, guard: &Guard) -> u64 {
        let (mut cell, _) = self.locate(Target::Key(&[]), guard);
        let mut bytes = 0u64;
        loop {
            let head = cell.load();
            bytes += u64::from(head.hdr.bytes);
            match head.hdr.right() {
                Some(right) if head.hdr.high().is_some() => cell = right,
                _ => return bytes,
            }
        }
    }

    // ---- Locating pages -------------------------------------------------------------------

    /// Finds the page for `target` and loads its head, helping any merge in the way.
    pub(crate) fn locate<'g>(&self, target: Target<'_>, guard: &'g Guard) -> (&'g PageCell, &'g Record) {
        let key_prefix = match target {
            Target::Key(key) | Target::Below(key) => prefix(key),
            Target::Last => 0,
        };
        'restart: loop {
            let mut cell = self.index_start(target, guard);
            loop {
                let head = cell.load();
                if head.remove_state().is_some() {
                    self.complete_merge(cell, head, guard);
                    continue 'restart;
                }
                let go_right = match target {
                    Target::Key(key) => head.hdr.cmp_high(key, key_prefix).is_some_and(|o| o.is_ge()),
                    Target::Below(key) => head.hdr.cmp_high(key, key_prefix).is_some_and(|o| o.is_gt()),
                    Target::Last => head.hdr.high().is_some(),
                };
                if !go_right {
                    // SAFETY: the lifetimes of both are bounded by the guard (see `PageCell::load`).
                    return unsafe { (&*(cell as *const PageCell), &*(head as *const Record)) };
                }
                cell = head.hdr.right().expect("a bounded page has a right sibling");
            }
        }
    }

    fn index_start<'g>(&self, target: Target<'_>, guard: &'g Guard) -> &'g PageCell {
        let entry = match target {
            Target::Key(key) => self.index.upper_bound(Bound::Included(&IndexKey::new(key)), guard),
            Target::Below(key) => self.index.upper_bound(Bound::Excluded(&IndexKey::new(key)), guard),
            Target::Last => self.index.back(guard),
        };
        let entry = entry.expect("the leftmost page, with the empty low key, is always indexed");
        // SAFETY: the node (and so the cell) outlives the guard's pin.
        unsafe { &*(entry.value().cell() as *const PageCell) }
    }

    // ---- Writes ---------------------------------------------------------------------------

    /// Installs the write; true if it left a due consolidation to the caller (`defer`, see
    /// [`Tree::put_deferring_reads`]).
    fn write(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
        given: Option<&WriteTicket<'_>>,
        defer: bool,
        guard: &Guard,
    ) -> bool {
        self.check_guard(guard);
        let rec = Record::write(key, value);
        // SAFETY: `rec` is ours until installed.
        let (items_delta, bytes) = unsafe { (*rec).write_effect() };
        let mut ticket = None;
        loop {
            let (cell, head) = self.locate(Target::Key(key), guard);
            let sn = match given {
                Some(given) => given.sn,
                None => ticket.get_or_insert_with(|| self.mvcc.begin_write(stripe_of(key))).sn,
            };
            // SAFETY: `rec` is unpublished, so ours to change.
            unsafe {
                (*rec).set_sn(sn);
                (*rec).hdr = Header::above(&head.hdr, items_delta, bytes);
                (*rec).next = head as *const Record as *mut Record;
            }
            if cell.install(head, rec) {
                self.add_resident(bytes_of(rec));
                if self.source.is_some() {
                    // Marked before the ticket ends: a flush whose snapshot covers this write
                    // (its seal waits for the ticket) finds the page dirty.
                    cell.mark_dirty();
                    cell.touch();
                }
                drop(ticket);
                // SAFETY: installed records live as long as the guard.
                return self.after_write(cell, unsafe { &*rec }, defer, guard);
            }
        }
    }

    /// Consolidates the page if the write that made `head` made it due; with `defer`, leaves
    /// it (true) if that would read swapped-out records, unless the page is far past due.
    fn after_write(&self, cell: &PageCell, head: &Record, defer: bool, guard: &Guard) -> bool {
        if !self.consolidation_due(&head.hdr) {
            return false;
        }
        let cfg = &self.config;
        let far_past = head.hdr.chain_len >= cfg.consolidate_chain.saturating_mul(2)
            || head.hdr.bytes / 4 > cfg.page_bytes_max;
        if defer && !far_past && crate::paging::chain_has_stub(head) {
            return true;
        }
        self.consolidate(cell, head, guard);
        false
    }

    /// Whether a page whose head has `hdr` is due a consolidation after a write.
    pub(crate) fn consolidation_due(&self, hdr: &Header) -> bool {
        let cfg = &self.config;
        // Counts are estimates (an overwrite counts as a new entry), so a page that merely looks
        // misshapen waits for a quarter of a chain: that bounds consolidations per write. A page
        // over twice its byte limit consolidates at once, so big values cannot pile up on it.
        let misshapen =
            hdr.items > cfg.split_items || hdr.items < cfg.merge_items || hdr.bytes > cfg.page_bytes_max;
        hdr.chain_len >= cfg.consolidate_chain
            || (misshapen && hdr.chain_len >= (cfg.consolidate_chain / 4).max(1))
            || hdr.bytes / 2 > cfg.page_bytes_max
    }

    /// Consolidates a page a reader found with a long chain of deltas, unless that would read
    /// swapped-out records from the log with the reader's guard pinned (the writers' due rule
    /// consolidates those, unpinned: see [`Tree::put_deferring_reads`]).
    pub(crate) fn after_read(&self, cell: &PageCell, head: &Record, guard: &Guard) {
        if head.hdr.chain_len >= self.config.read_consolidate_chain && !crate::paging::chain_has_stub(head) {
            self.consolidate(cell, head, guard);
        }
    }

    // ---- Consolidation and split ----------------------------------------------------------

    /// Replaces the chain under `head` with a new base, or with two pages if it is too big, or
    /// starts a merge if it is too small. False if another thread changed the page first.
    pub(crate) fn consolidate(&self, cell: &PageCell, head: &Record, guard: &Guard) -> bool {
        if head.remove_state().is_some() {
            return false;
        }
        match self.load_stubs(head) {
            Ok(loaded) => self.consolidate_loaded(cell, head, &loaded, guard),
            // The read failed: the page stays as it is, and its readers see the error.
            Err(_) => false,
        }
    }

    /// [`Tree::consolidate`] with the bases of the chain's stubs read back (`loaded`).
    pub(crate) fn consolidate_loaded(
        &self,
        cell: &PageCell,
        head: &Record,
        loaded: &Loaded,
        guard: &Guard,
    ) -> bool {
        if head.remove_state().is_some() {
            return false;
        }
        let mut gathered = Gathered::default();
        gathered.deltas.reserve(head.hdr.chain_len as usize);
        let high = head.hdr.high().map_or(Bound::Unbounded, Bound::Excluded);
        gathered
            .gather(head, Bound::Unbounded, high, loaded)
            .unwrap_or_else(|_| unreachable!("every stub loaded"));
        // Live snapshots are read after the head: see `Mvcc::snapshot` for why this order matters.
        let mut live = Vec::new();
        self.mvcc.live_into(&mut live);
        let mut versions = Vec::with_capacity(gathered.deltas.len() + head.hdr.items as usize);
        gathered.sorted(&mut versions);
        garbage_collect(&mut versions, &live, self.flushed_floor(cell), &mut GcScratch::default());
        // The chains that merges absorbed are freed with this one: their index nodes go first.
        self.finish_unlinks(head, guard);
        let bytes: usize = versions.iter().map(Version::encoded_len).sum();
        let cfg = &self.config;
        if versions.len() > cfg.split_items as usize || bytes > cfg.page_bytes_max as usize {
            if let Some(at) = split_point(&versions) {
                return self.split(cell, head, &versions, at, guard);
            }
        }
        let new = Record::base(&versions, bytes, head.hdr.high(), head.hdr.right_ptr());
        if !cell.install(head, new) {
            // SAFETY: never published.
            unsafe { free_chain(new) };
            return false;
        }
        self.add_resident(bytes_of(new));
        self.retire(head, guard);
        self.counters.consolidations.fetch_add(1, Ordering::Relaxed);
        let small = versions.len() < cfg.merge_items as usize && bytes < cfg.page_bytes_max as usize / 4;
        if small && !cell.low.is_empty() && cell.is_indexed() {
            // SAFETY: `new` is installed, alive as long as the guard.
            self.start_merge(cell, unsafe { &*new }, guard);
        }
        true
    }

    /// Installs a split: a split record over a base of `versions[..at]` on this page, and a new
    /// right sibling holding `versions[at..]`, which is then indexed.
    fn split(
        &self,
        cell: &PageCell,
        head: &Record,
        versions: &[Version<'_>],
        at: usize,
        guard: &Guard,
    ) -> bool {
        let (left, right) = versions.split_at(at);
        let sep: Box<[u8]> = right[0].key.into();
        let bytes = |vs: &[Version<'_>]| vs.iter().map(Version::encoded_len).sum::<usize>();
        let right_base = Record::base(right, bytes(right), head.hdr.high(), head.hdr.right_ptr());
        let right_cell = Self::new_cell(sep.clone(), right_base, false);
        if self.source.is_some() {
            // A new page: nothing in the log is its own yet; its keys are in this page's records.
            let ours = cell.flush.lock().clone();
            // SAFETY: not yet published.
            unsafe { right_cell.as_ref() }.inherit(&ours);
        }
        let left_bytes = bytes(left);
        let left_base = Record::base(left, left_bytes, Some(&sep), right_cell.as_ptr());
        // One record over the left base, whose header already names the separator (as its high
        // key) and the new sibling.
        // SAFETY: just allocated, not yet published.
        let hdr = Header::above(unsafe { &(*left_base).hdr }, 0, 0);
        let split = Record::alloc(hdr, left_base, Body::Split { sep });
        if !cell.install(head, split) {
            // SAFETY: neither was published.
            unsafe {
                free_chain(split);
                free_chain(right_base);
                drop(Box::from_raw(right_cell.as_ptr()));
            }
            return false;
        }
        self.add_resident(chain_bytes(split) + chain_bytes(right_base) + NODE_BYTES + sep_len_of(right_cell));
        self.retire(head, guard);
        self.counters.splits.fetch_add(1, Ordering::Relaxed);
        self.index_new_page(right_cell, guard);
        true
    }

    /// Inserts a page published by a split into the index, first helping out any removed page
    /// whose node still holds the same low key.
    fn index_new_page(&self, cell: NonNull<PageCell>, guard: &Guard) {
        // SAFETY: the cell is published (reachable through its left sibling) and we are pinned.
        let low = unsafe { &cell.as_ref().low };
        loop {
            let mut placed = Some(CellBox(cell));
            let entry = self.index.get_or_insert_with(
                IndexKey::new(low),
                || placed.take().expect("called once"),
                guard,
            );
            let existing = entry.value().cell() as *const PageCell;
            if existing == cell.as_ptr() {
                entry.release(guard);
                // SAFETY: as above.
                unsafe { cell.as_ref() }.indexed.store(true, Ordering::Release);
                return;
            }
            core::mem::forget(placed); // not inserted: the cell stays owned by its left sibling's split
                                       // SAFETY: the entry holds a reference to the node, so its cell is alive.
            let other = unsafe { &*existing };
            let other_head = other.load();
            assert!(
                other_head.remove_state().is_some() || entry.is_removed(),
                "two live pages share a low key"
            );
            if other_head.remove_state().is_some() {
                self.complete_merge(other, other_head, guard);
            }
            entry.release(guard);
        }
    }

    /// Hands a replaced chain to the epoch collector.
    pub(crate) fn retire(&self, head: &Record, guard: &Guard) {
        let bytes = chain_bytes(head);
        let resident = self.resident.clone();
        let chain = SendPtr(head as *const Record as *mut Record);
        // SAFETY: the chain is unreachable from the page now; pinned readers may still hold it,
        // and the collector runs this only after they unpin.
        unsafe {
            guard.defer_unchecked(move || {
                free_chain(chain.into_inner());
                resident.sub(bytes);
            })
        };
        if bytes >= FLUSH_RETIRED_BYTES {
            guard.flush();
        }
    }

    // ---- Merge ------------------------------------------------------------------------------

    /// Freezes the page with a remove record, then merges it into its left sibling.
    fn start_merge(&self, cell: &PageCell, head: &Record, guard: &Guard) {
        let remove = Record::alloc(
            head.hdr,
            head as *const Record as *mut Record,
            Body::Remove { state: AtomicU8::new(merge_state::PENDING) },
        );
        if !cell.install(head, remove) {
            // SAFETY: never published; frees only the remove record, not the chain below.
            unsafe { Record::free(remove) };
            return;
        }
        self.add_resident(bytes_of(remove));
        self.counters.merges.fetch_add(1, Ordering::Relaxed);
        // SAFETY: installed, alive as long as the guard.
        self.complete_merge(cell, unsafe { &*remove }, guard);
    }

    /// Finishes the merge of the frozen page `cell` (whose head `remove` is a remove record):
    /// installs a merge record on its left sibling unless one is there, then unlinks its node.
    fn complete_merge(&self, cell: &PageCell, remove: &Record, guard: &Guard) {
        let state = remove.remove_state().expect("a remove record");
        let low = &*cell.low;
        debug_assert!(!low.is_empty(), "the leftmost page never merges");
        while state.load(Ordering::Acquire) == merge_state::PENDING {
            let (left, left_head) = self.locate(Target::Below(low), guard);
            // Checked after loading the sibling's head: if the merge landed before that load, the
            // state says so here (it is set before any later consolidation of the sibling).
            if state.load(Ordering::Acquire) != merge_state::PENDING {
                break;
            }
            if left_head.hdr.high() != Some(low) {
                // The sibling already reaches past our low key: it absorbed this page.
                state.fetch_max(merge_state::MERGED, Ordering::AcqRel);
                break;
            }
            let mut hdr = Header::above(&remove.hdr, 0, 0);
            hdr.chain_len = left_head.hdr.chain_len.saturating_add(remove.hdr.chain_len).saturating_add(1);
            hdr.items = left_head.hdr.items.saturating_add(remove.hdr.items);
            hdr.bytes = left_head.hdr.bytes.saturating_add(remove.hdr.bytes);
            let merge = Record::alloc(
                hdr,
                left_head as *const Record as *mut Record,
                Body::Merge { sep: low.into(), right: remove as *const Record as *mut Record },
            );
            // This page's keys are in its own records, not in the sibling's: the sibling
            // inherits them, and is marked dirty, before the merge record is installed and
            // under the sibling's flush lock, which a capture loads the head under. So
            // whoever sees the merge record sees the sibling dirty, in a new shape, needing
            // an image; and a capture that loaded the head before it has the old shape, which
            // its round then finds changed (see `Tree::capture`).
            let absorbed = self.source.is_some().then(|| cell.flush.lock().clone());
            let mut left_flush = left.flush.lock();
            let before = absorbed.as_ref().map(|absorbed| left_flush.inherit(absorbed));
            if before.is_some() {
                left.mark_dirty();
            }
            if left.install(left_head, merge) {
                drop(left_flush);
                self.add_resident(bytes_of(merge));
                state.fetch_max(merge_state::MERGED, Ordering::AcqRel);
                // Deferring: a merged page that needs its stubs read back is consolidated
                // by its next write, unpinned, not by whoever finished the merge.
                // SAFETY: installed; alive as long as the guard.
                self.after_write(left, unsafe { &*merge }, true, guard);
                break;
            }
            if let Some(before) = before {
                left_flush.undo_inherit(before);
            }
            drop(left_flush);
            // SAFETY: never published; frees the merge record only.
            unsafe { Record::free(merge) };
        }
        self.unlink(low, remove, guard);
    }

    /// Removes the index node of an absorbed page (low key `low`, frozen by `remove`), if it is
    /// still there.
    ///
    /// The node is recognised by its head being `remove`: a frozen page's head never changes, and
    /// `remove` stays allocated while the caller can reach it, so no other page can show that
    /// address. (The cell's own address could: an unlinked cell may be freed and its memory
    /// reused by a new page with the same low key.)
    fn unlink(&self, low: &[u8], remove: &Record, guard: &Guard) {
        let state = remove.remove_state().expect("a remove record");
        if state.load(Ordering::Acquire) == merge_state::UNLINKED {
            return;
        }
        if let Some(entry) = self.index.get(&IndexKey::new(low), guard) {
            let cell = entry.value().cell();
            if ptr::eq(cell.head.load(Ordering::Acquire), remove) && entry.remove() {
                self.sub_resident(NODE_BYTES + low.len() + cell.flush.lock().retire());
            }
        }
        state.store(merge_state::UNLINKED, Ordering::Release);
    }

    /// Makes sure every page absorbed by a merge record on this chain is unlinked from the index,
    /// so that freeing the chain cannot free a page the index still leads to.
    pub(crate) fn finish_unlinks(&self, head: &Record, guard: &Guard) {
        let mut rec = head;
        loop {
            match &rec.body {
                Body::Merge { sep, right } => {
                    // SAFETY: owned by the merge record.
                    let right = unsafe { &**right };
                    self.unlink(sep, right, guard);
                    // SAFETY: as above.
                    self.finish_unlinks(unsafe { &*right.next }, guard);
                }
                Body::Base { .. } | Body::Swapped { .. } => return,
                _ => {}
            }
            // SAFETY: every record but a base or a stub has a next one.
            rec = unsafe { &*rec.next };
        }
    }

    // ---- Checks -----------------------------------------------------------------------------

    /// Walks every page from left to right and checks the invariants that tie them together:
    /// pages tile the key space, every page's entries lie within its bounds, sorted, and the
    /// index leads to every page. Returns the number of pages. Meant for tests; call it when no
    /// other thread is writing.
    pub fn check_invariants(&self, guard: &Guard) -> Result<usize, &'static str> {
        let (mut cell, _) = self.locate(Target::Key(&[]), guard);
        let mut pages = 0;
        loop {
            let mut sorted = Vec::new();
            pages += 1;
            let head = cell.load();
            if head.remove_state().is_some() {
                return Err("a frozen page is still reachable from its left sibling");
            }
            let loaded = self.load_stubs(head).map_err(|_| "a swapped-out page could not be read back")?;
            let mut gathered = Gathered::default();
            gathered
                .gather(
                    head,
                    Bound::Unbounded,
                    head.hdr.high().map_or(Bound::Unbounded, Bound::Excluded),
                    &loaded,
                )
                .unwrap_or_else(|_| unreachable!("every stub loaded"));
            gathered.sorted(&mut sorted);
            if sorted.iter().any(|v| v.key < &*cell.low) {
                return Err("a page holds a key below its low key");
            }
            match self.index.get(&IndexKey::new(&cell.low), guard) {
                Some(entry) if ptr::eq(entry.value().cell(), cell) => {}
                _ => return Err("a page is missing from the index"),
            }
            let Some(high) = head.hdr.high() else { break };
            if sorted.last().is_some_and(|v| v.key >= high) {
                return Err("a page holds a key at or above its high key");
            }
            cell = head.hdr.right().expect("a bounded page has a right sibling");
            if &*cell.low != high {
                return Err("a right sibling's low key differs from the page's high key");
            }
        }
        if pages != self.index.len() {
            return Err("the index holds pages the sibling chain does not");
        }
        Ok(pages)
    }
}

/// Which in-flight counter a write announces itself on: a hash of the key's ends, so that writers
/// of different keys rarely share a cache line (and so that it is deterministic, as loom needs).
fn stripe_of(key: &[u8]) -> usize {
    let word = |bytes: &[u8]| {
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(word)
    };
    let head = word(&key[..key.len().min(8)]);
    let tail = word(&key[key.len().saturating_sub(8)..]);
    ((head ^ tail.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
}

/// Where to split `versions` near its middle without parting the versions of one key; `None` if
/// they all belong to one key.
fn split_point(versions: &[Version<'_>]) -> Option<usize> {
    let mid = versions.len() / 2;
    let same = |i: usize| versions[i].key == versions[i - 1].key;
    let forward = (mid.max(1)..versions.len()).find(|&i| !same(i));
    let backward = (1..mid.max(1)).rev().find(|&i| !same(i));
    forward.or(backward)
}

/// Bytes of memory the one record `rec` holds (see [`Record::heap_bytes`]).
fn bytes_of(rec: *const Record) -> usize {
    // SAFETY: callers pass a record they just made or installed, alive while they are pinned.
    unsafe { (*rec).heap_bytes() }
}

/// Memory a new page's index node and low key take.
fn sep_len_of(cell: NonNull<PageCell>) -> usize {
    // SAFETY: the cell was just made and is alive (owned by the split record's page).
    unsafe { cell.as_ref() }.low.len()
}

/// A raw pointer moved into a deferred destructor.
struct SendPtr(*mut Record);

// SAFETY: the pointee is a retired chain that only the deferred destructor touches.
unsafe impl Send for SendPtr {}

impl SendPtr {
    fn into_inner(self) -> *mut Record {
        self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no other thread can reach the tree.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        // Decide every page's ownership before freeing anything: freeing a sibling's chain frees
        // the remove records of the pages it absorbed, which later nodes would still point at.
        let mut owned = Vec::new();
        let mut entry = self.index.front(guard);
        while let Some(e) = entry {
            let head = e.value().cell().head.load(Ordering::Relaxed);
            // SAFETY: heads are valid records until freed below.
            let absorbed = unsafe { (*head).remove_state() }
                .is_some_and(|state| state.load(Ordering::Relaxed) != merge_state::PENDING);
            if !absorbed {
                owned.push(head);
            }
            entry = e.next();
        }
        for head in owned {
            // SAFETY: exclusive access; each chain has one owner, and an absorbed page's chain
            // is freed with the merge record that owns it.
            unsafe { free_chain(head) };
        }
    }
}

impl core::fmt::Debug for Tree {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tree").field("config", &self.config).field("stats", &self.stats()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(key: &'static [u8]) -> Version<'static> {
        Version { key, value: None, sn: 0 }
    }

    /// `peek` reads what `get` reads, and leaves a long chain for `get` to consolidate.
    #[cfg(feature = "std")]
    #[test]
    fn peek_reads_like_get_without_consolidating() {
        let config = crate::config::TreeConfig::default().read_consolidate_chain(2).consolidate_chain(100);
        let tree = Tree::new(config).unwrap();
        let guard = tree.pin();
        for i in 0..10u8 {
            tree.put(&[i], &[i, i], &guard).unwrap();
        }
        tree.delete(&[3], &guard).unwrap();
        let before = tree.stats().consolidations;
        for i in 0..12u8 {
            let want = (i < 10 && i != 3).then(|| alloc::vec![i, i]);
            assert_eq!(tree.peek(&[i], &guard).unwrap().map(<[u8]>::to_vec), want);
        }
        assert_eq!(tree.stats().consolidations, before, "peek consolidated");
        assert_eq!(tree.get(&[0], &guard).unwrap(), Some(&[0u8, 0][..]));
        assert!(tree.stats().consolidations > before, "get consolidates a long chain");
    }

    #[test]
    fn split_point_keeps_key_versions_together() {
        assert_eq!(split_point(&[v(b"a"), v(b"a")]), None);
        assert_eq!(split_point(&[v(b"a"), v(b"b")]), Some(1));
        assert_eq!(split_point(&[v(b"a"), v(b"a"), v(b"a"), v(b"b")]), Some(3));
        assert_eq!(split_point(&[v(b"a"), v(b"b"), v(b"b"), v(b"b")]), Some(1));
    }
}
