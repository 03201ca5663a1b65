//! Pages in the log: how a tree writes its pages out as page records, swaps them out of memory
//! (leaving a stub that names their records), and reads them back.
//!
//! The tree decides; the runtime moves the bytes. A flush (the runtime's, one thread per tree)
//! takes a [`Snapshot`] and [`Tree::capture`]s pages as that snapshot sees them into page
//! records (a full image, or the versions since the page's last record: see
//! [`crate::log::page`]), appends them, makes them recoverable, and tells the tree with
//! [`Tree::flushed`]; a captured page with nothing newer than the snapshot may then be
//! [`Tree::swap_out`]ed. A page is read back through the [`PageSource`] the runtime gives the
//! tree: point reads ([`Tree::get_owned`]) read it without bringing it back; scans,
//! consolidations, images and borrowed reads bring it back. Point reads, scans that stop before
//! it ([`crate::Iter::stopping_at_swapped_out`], then [`Tree::swap_in_unpinned`]), writers'
//! consolidations ([`Tree::put_deferring_reads`], then [`Tree::consolidate_unpinned`]) and
//! images ([`Tree::capture`]) read with their epoch pin let go, and install what they read only
//! if the page still ends in the same stubs; borrowed reads ([`Tree::get`]), the core's own
//! iterators and writes through [`Tree::put_with`] read pinned.
//!
//! What makes a record exact: the snapshot is registered before it is sealed, so no
//! consolidation drops the version it sees of any key; a page's versions newer than its last
//! record keep their real numbers (see [`crate::page::garbage_collect`]), so a delta finds
//! them; and a tombstone newer than the last record is kept, since it hides the key's version
//! in the log.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::{Bound, Range};
use core::ptr;

use crossbeam_epoch::Guard;

use crate::config::{ConfigError, TreeConfig};
use crate::error::Error;
use crate::index::{CellBox, IndexKey};
use crate::log::block_index::BlockIndex;
use crate::log::frame::Kind;
use crate::log::page::{block_entries, BlockRef, FrontError, PageEntry, PageFront, PageRecord, PageWriter};
use crate::mvcc::{Mvcc, Snapshot, LATEST};
use crate::page::base::{Base, Version};
use crate::page::record::{chain_bytes, Body, FlushState, Header, PageCell, Record, StubRef};
use crate::page::{self, garbage_collect, Gathered, GcScratch, Loaded};
use crate::sync::Ordering;
use crate::tree::{Target, Tree, NODE_BYTES};
use crate::Collector;

/// Records in a page's chain before its next one must be a full image (Plasma's
/// `MaxPageLSSSegments`, 4 there): a read that brings a swapped-out page back reads at most
/// this many records. Twice Plasma's: a point read skips, by their key filters, the records
/// that cannot hold its key (see `crate::log::block_index`), so a longer chain costs it little,
/// while every image not written saves rewriting the whole page (measured in `docs/pages.md`).
pub const MAX_SEGMENTS: usize = 8;

/// Bytes of a page record a point read asks for first: its front (fields and block index) and,
/// for a small record, all of it.
const FRONT_READ: usize = 1024;

/// Where a tree reads its swapped-out pages back from: the runtime's log.
pub trait PageSource: Send + Sync {
    /// Reads the page record at log address `addr`: puts its payload in `out` (replacing what
    /// it held) and returns its kind.
    fn read(&self, addr: u64, out: &mut Vec<u8>) -> Result<Kind, PageReadError>;

    /// Reads the first bytes of the payload of the page record at `addr` into `out`
    /// (replacing what it held): at least `want` bytes, or the whole payload if it is shorter,
    /// or more if that costs no more. Returns the record's kind and its whole payload's length,
    /// or `None` if the record cannot be read in parts (one written in pieces): read it whole.
    /// The bytes are not checked (the frame's checksum covers only the whole record): the
    /// caller checks them by the record's own checksums. By default, reads the whole record.
    fn read_front(
        &self,
        addr: u64,
        want: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<(Kind, usize)>, PageReadError> {
        let _ = want;
        let kind = self.read(addr, out)?;
        Ok(Some((kind, out.len())))
    }

    /// Reads bytes `range` of the payload of the page record at `addr`, one that
    /// [`PageSource::read_front`] could read, into `out` (replacing what it held). Unchecked,
    /// as there. By default, reads the whole record and keeps the range.
    fn read_range(&self, addr: u64, range: Range<usize>, out: &mut Vec<u8>) -> Result<(), PageReadError> {
        let mut whole = Vec::new();
        self.read(addr, &mut whole)?;
        let part = whole.get(range).ok_or(PageReadError { addr })?;
        out.clear();
        out.extend_from_slice(part);
        Ok(())
    }
}

/// Why a page record could not be read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageReadError {
    /// The record's log address.
    pub addr: u64,
}

/// One stretch of the key space for [`Tree::with_pages`]: `[lo, hi)` (`hi` `None` for the
/// last), held in the log by the page records `chain` names (newest first) as snapshot `sn` saw
/// them, or by nothing (an empty `chain`: a page never written out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageTile {
    /// Inclusive lower bound; empty for the first tile.
    pub lo: Box<[u8]>,
    /// Exclusive upper bound; `None` for the last tile.
    pub hi: Option<Box<[u8]>>,
    /// Log addresses of the page's records, newest first.
    pub chain: Vec<u64>,
    /// Snapshot number of the newest record.
    pub sn: u64,
    /// About how many entries the records hold.
    pub items: u32,
}

/// One page's place in the log now, from [`Tree::pages`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageChain {
    /// The page's low key.
    pub low: Box<[u8]>,
    /// The page's identity in its current shape (see [`Capture::page_id`]).
    pub id: u64,
    /// Its high key (`None` for the last page).
    pub high: Option<Box<[u8]>>,
    /// Its records, newest first (empty if it has none).
    pub chain: Vec<u64>,
    /// The snapshot number of its newest record.
    pub sn: u64,
    /// About how many entries it holds.
    pub items: u32,
    /// Whether it may hold writes no record has.
    pub dirty: bool,
    /// Whether its entries are out of memory (a stub, perhaps under writes since).
    pub swapped: bool,
}

/// A page captured by [`Tree::capture`]: the record written (if any) and what
/// [`Tree::flushed`] and [`Tree::swap_out`] need to know of it.
#[derive(Debug)]
pub struct Capture {
    low: Box<[u8]>,
    id: u64,
    /// The head captured, by its address and its `seq` (the address alone can come back on a
    /// newer record once the captured one is freed, while the flusher waits unpinned).
    head: (usize, u32),
    sn: u64,
    /// The snapshot number of the page's newest record when captured.
    flushed_sn: u64,
    changes: u64,
    image: bool,
    items: u32,
    /// The page held no version newer than the snapshot.
    settled: bool,
    /// A record was written into the caller's [`PageWriter`].
    wrote: bool,
    /// What point reads will keep of that record.
    index: Option<Arc<BlockIndex>>,
}

/// What [`Tree::capture`] made of a page.
pub enum Captured {
    /// The page's record, written into the caller's [`PageWriter`].
    Page(Capture),
    /// No page starts at the low key any more: its keys are in pages of other shapes, which
    /// [`Tree::dirty_pages`] lists if they hold writes no record has.
    Gone,
    /// The page could not be captured now (it is being merged, or writers kept changing it
    /// while it was read back): it stays dirty, and a flush round that has not captured it has
    /// not written every write its snapshot sees.
    Busy,
}

impl Capture {
    /// The kind of record to append, or `None` if the page held nothing new (nothing to append).
    pub fn kind(&self) -> Option<Kind> {
        self.wrote.then_some(if self.image { Kind::PageImage } else { Kind::PageDelta })
    }

    /// The page's low key.
    pub fn low(&self) -> &[u8] {
        &self.low
    }

    /// The page's identity in its shape when captured: never the same for two pages of one
    /// process (a page made by a split may have the low key an earlier page had), and new
    /// when the page absorbs a sibling (whose keys it then holds). A flush round that captures
    /// every page [`Tree::dirty_pages`] lists, again until it lists none it has not captured in
    /// its current shape, has every write its snapshot sees in the log.
    pub fn page_id(&self) -> u64 {
        shape(self.id, self.changes)
    }
}

impl Tree {
    /// A tree whose pages are `tiles` (which must tile the key space in order, the first
    /// starting at the empty key and the last unbounded): those with records start swapped
    /// out, read back through `source`; the others start empty. What a reopened store builds
    /// from its page table, without reading any page.
    pub fn with_pages(
        config: TreeConfig,
        collector: Collector,
        mvcc: Arc<Mvcc>,
        source: Arc<dyn PageSource>,
        tiles: &[PageTile],
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        assert!(tiles.first().is_some_and(|t| t.lo.is_empty()), "tiles must start at the empty key");
        assert!(tiles.last().is_some_and(|t| t.hi.is_none()), "the last tile must be unbounded");
        let tree = Self::empty(config, collector, mvcc, Some(source));
        // SAFETY: nothing else can reach the tree yet.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        let mut right: *const PageCell = ptr::null();
        for tile in tiles.iter().rev() {
            debug_assert!(right.is_null() || unsafe { &*right }.low.as_ref() == tile.hi.as_deref().unwrap());
            let hi = tile.hi.as_deref();
            let (head, flush) = match tile.chain.first() {
                Some(&addr) => (
                    Record::stub(addr, tile.items, &tile.lo, hi, right),
                    FlushState::of_chain(tile.chain.clone(), tile.sn),
                ),
                None => (Record::base(&[], 0, hi, right), FlushState::default()),
            };
            let cell = Box::leak(Box::new(PageCell::with_flush(tile.lo.clone(), head, true, flush)));
            tree.add_resident(NODE_BYTES + tile.lo.len() + chain_bytes(head));
            let cell = ptr::NonNull::from(cell);
            tree.index.get_or_insert_with(IndexKey::new(&tile.lo), || CellBox(cell), guard).release(guard);
            right = cell.as_ptr();
        }
        Ok(tree)
    }

    /// Makes the tree write its pages to the log: swapped-out pages are read back from
    /// `source`. Set before the tree takes any write.
    pub fn set_page_source(&mut self, source: Arc<dyn PageSource>) {
        self.source = Some(source);
    }

    // ---- Reading pages back -----------------------------------------------------------------

    /// The value of `key` at `snapshot` (or the latest, for `None`), copied out. A swapped-out
    /// page is read from the log with the guard unpinned during the read (so a slow device
    /// does not hold memory reclamation back); with `install`, what was read then brings the
    /// page back into memory (when its chain ends in that one stub), as a scan would, so the
    /// next read of it does no I/O. Without, the page stays out (Plasma's `Lookup`), and only
    /// the block of each record that can hold the key is read: the runtime installs while the
    /// tree is below its memory quota.
    pub fn get_owned(
        &self,
        key: &[u8],
        snapshot: Option<&Snapshot>,
        install: bool,
        guard: &mut Guard,
    ) -> Result<Option<Vec<u8>>, Error> {
        let sn = snapshot.map_or(LATEST, |s| {
            self.check_snapshot(s);
            s.sn()
        });
        self.check_write(key, None)?;
        let mut loaded: Option<(ReadFor, ReadBack)> = None;
        let mut learned = Vec::new();
        loop {
            let (cell, head) = self.locate(Target::Key(key), guard);
            cell.touch();
            self.learn_indexes(cell, &mut learned);
            let stub = match page::lookup(head, key, sn) {
                Ok(found) => {
                    let found = found.map(<[u8]>::to_vec);
                    self.after_read(cell, head, guard);
                    return Ok(found);
                }
                Err(stub) => stub,
            };
            let at = stub.swapped().expect("lookup stops at stubs");
            // Read while unpinned: answer from it if the page still ends in a stub like the
            // one it was read for (writes of other keys may have landed above it meanwhile).
            // The same record is not enough: a page split meanwhile can swap its left half out
            // under the record the whole page had, with a lower high key.
            if let Some((_, read)) = loaded.take_if(|(read_for, _)| read_for.is(&at)) {
                return Ok(match read {
                    ReadBack::Key(found) => found,
                    ReadBack::Page(base) => {
                        let found = base.find(key, sn).flatten().map(<[u8]>::to_vec);
                        self.install_read(cell, head, stub, base, guard);
                        found
                    }
                });
            }
            // The stub may be gone once unpinned: copy what the read needs first.
            let read_for = ReadFor::of(&at);
            let indexes = cell.flush.lock().indexes_from(at.addr);
            let read = guard.repin_after(|| match install {
                true => self
                    .read_page(read_for.addr, &read_for.low, read_for.high.as_deref(), Some(&mut learned))
                    .map(ReadBack::Page),
                false => self.read_key(read_for.addr, key, sn, &indexes, &mut learned).map(ReadBack::Key),
            })?;
            loaded = Some((read_for, read));
        }
    }

    /// Keeps the indexes a read `learned` of the records of `cell`'s chain (those it still
    /// holds), counted in its resident bytes.
    fn learn_indexes(&self, cell: &PageCell, learned: &mut Vec<(u64, Arc<BlockIndex>)>) {
        if learned.is_empty() {
            return;
        }
        let mut flush = cell.flush.lock();
        for (addr, index) in learned.drain(..) {
            match flush.learn(addr, index) {
                more @ 0.. => self.add_resident(more as usize),
                fewer => self.sub_resident(fewer.unsigned_abs()),
            }
        }
    }

    /// Brings the page back into memory from `base`, read for `stub`, if that is the only stub
    /// its chain ends in (a page that absorbed a swapped-out sibling has more: it stays out).
    fn install_read(&self, cell: &PageCell, head: &Record, stub: &Record, base: Base, guard: &Guard) {
        let stubs = stubs_of(head);
        if stubs.len() != 1 || !ptr::eq(stubs[0], stub) {
            return;
        }
        let mut loaded = Loaded::default();
        loaded.insert(stub, base);
        if self.consolidate_loaded(cell, head, &loaded, guard) {
            self.counters.swap_ins.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Brings the swapped-out page an iterator stopped before back into memory (see
    /// [`crate::Iter::stopping_at_swapped_out`]). Its records are read with `guard` unpinned, so
    /// that the wait for the device holds up no memory reclamation, and installed from that read
    /// if the page still ends in the same stubs (each naming the same record over the same
    /// keys); if it changed meanwhile, the page is brought back as a pinned scan would, reading
    /// again what it needs (mostly from the page cache, where the first read left it).
    pub fn swap_in_unpinned(&self, page: &crate::iter::SwappedOut, guard: &mut Guard) -> Result<(), Error> {
        let done =
            self.read_stubs_unpinned(page.target(), guard, |cell, head, loaded, guard| match loaded {
                Some(loaded) => {
                    if self.consolidate_loaded(cell, head, &loaded, guard) {
                        self.counters.swap_ins.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
                None if chain_has_stub(head) => self.swap_in(cell, head, guard),
                None => Ok(()),
            })?;
        done.unwrap_or(Ok(()))
    }

    /// Consolidates the page holding `key` if it is due (what [`Tree::put_deferring_reads`]
    /// left to its caller), reading the swapped-out records it needs with `guard` unpinned.
    /// Does nothing if the page changed while they were read: the next write to it finds it
    /// due again.
    pub fn consolidate_unpinned(&self, key: &[u8], guard: &mut Guard) -> Result<(), Error> {
        let (cell, head) = self.locate(Target::Key(key), guard);
        if !self.consolidation_due(&head.hdr) {
            return Ok(());
        }
        if !chain_has_stub(head) {
            self.consolidate(cell, head, guard);
            return Ok(());
        }
        self.read_stubs_unpinned(Target::Key(key), guard, |cell, head, loaded, guard| {
            if let Some(loaded) = loaded {
                self.consolidate_loaded(cell, head, &loaded, guard);
            }
        })
        .map(drop)
    }

    /// Reads the records of the stubs the page for `target` ends in with `guard` unpinned;
    /// then, pinned again, calls `then` with the page as it is now and, if it still ends in the
    /// same stubs (each naming the same record over the same keys), what was read for them.
    /// `None` if the page had no stub to read.
    fn read_stubs_unpinned<R>(
        &self,
        target: Target<'_>,
        guard: &mut Guard,
        then: impl FnOnce(&PageCell, &Record, Option<Loaded>, &Guard) -> R,
    ) -> Result<Option<R>, Error> {
        let (_, head) = self.locate(target, guard);
        // The stubs may be gone once unpinned: copy what the reads need first.
        let wanted: Vec<ReadFor> =
            stubs_of(head).into_iter().map(|stub| ReadFor::of(&stub.swapped().expect("a stub"))).collect();
        if wanted.is_empty() {
            return Ok(None);
        }
        let mut bases = guard.repin_after(|| {
            wanted
                .iter()
                .map(|w| self.read_page(w.addr, &w.low, w.high.as_deref(), None))
                .collect::<Result<Vec<Base>, Error>>()
        })?;
        let (cell, head) = self.locate(target, guard);
        let stubs = stubs_of(head);
        let same = stubs.len() == wanted.len()
            && stubs.iter().zip(&wanted).all(|(stub, w)| w.is(&stub.swapped().expect("a stub")));
        let loaded = same.then(|| {
            let mut loaded = Loaded::default();
            for stub in stubs.into_iter().rev() {
                loaded.insert(stub, bases.pop().expect("a base per stub"));
            }
            loaded
        });
        Ok(Some(then(cell, head, loaded, guard)))
    }

    /// Brings the page back into memory: consolidates it with its stubs' records read back.
    pub(crate) fn swap_in(&self, cell: &PageCell, head: &Record, guard: &Guard) -> Result<(), Error> {
        let loaded = self.load_stubs(head)?;
        self.consolidate_loaded(cell, head, &loaded, guard);
        self.counters.swap_ins.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reads back the records of every stub on the chain from `head` (absorbed chains included).
    pub(crate) fn load_stubs(&self, head: &Record) -> Result<Loaded, Error> {
        let mut loaded = Loaded::default();
        for stub in stubs_of(head) {
            let at = stub.swapped().expect("a stub");
            loaded.insert(stub, self.read_page(at.addr, at.low, at.high, None)?);
        }
        Ok(loaded)
    }

    /// The value of `key` visible at `sn` in the chain of page records from `addr` (`None`:
    /// absent, or deleted), read newest record first and no further than the first that has a
    /// visible version of it. Nothing is built: of each record, only the block that can hold
    /// the key is read, and scanned in place. `indexes` are what the page keeps of the chain's
    /// records (by position, with their addresses): a record with one is read in one part or
    /// skipped; one without is read in two (its front, then the block), and the index its front
    /// gives goes to `learned`.
    fn read_key(
        &self,
        addr: u64,
        key: &[u8],
        sn: u64,
        indexes: &[(u64, Option<Arc<BlockIndex>>)],
        learned: &mut Vec<(u64, Arc<BlockIndex>)>,
    ) -> Result<Option<Vec<u8>>, Error> {
        let mut buffers = (Vec::new(), Vec::new());
        let mut at = Some(addr);
        let mut records = 0;
        while let Some(addr) = at {
            if records > 4 * MAX_SEGMENTS {
                return Err(Error::PageCorrupt { addr });
            }
            let index = indexes.get(records).filter(|(a, _)| *a == addr).and_then(|(_, i)| i.as_deref());
            records += 1;
            let by_index = index.and_then(|index| self.find_by_index(addr, index, key, sn, &mut buffers.1));
            let (found, prev) = match by_index {
                Some(found) => found,
                None => match self.find_in_parts(addr, key, sn, &mut buffers) {
                    Some((found, index)) => {
                        learned.push((addr, index));
                        found
                    }
                    None => self.find_in_whole(addr, key, sn, &mut buffers.0)?,
                },
            };
            if let Some(found) = found {
                return Ok(found);
            }
            at = prev;
        }
        Ok(None)
    }

    /// What the record at `addr` says of `key` at `sn`, read whole.
    fn find_in_whole(&self, addr: u64, key: &[u8], sn: u64, payload: &mut Vec<u8>) -> Result<Found, Error> {
        let (kind, record) = self.read_record(addr, payload)?;
        let found = visible(record.entries(), key, sn);
        Ok((found, next_in_chain(kind, record.prev, addr)?))
    }

    /// [`Tree::find_in_whole`] through the record's `index`: no read if its filter says the
    /// record holds no version of `key`, else a read of the one block that can hold it,
    /// checked by its checksum. `None` if that read fails (the index is then marked, so that
    /// reads of the record go to its front).
    fn find_by_index(
        &self,
        addr: u64,
        index: &BlockIndex,
        key: &[u8],
        sn: u64,
        bytes: &mut Vec<u8>,
    ) -> Option<Found> {
        if !index.readable_in_parts() {
            return None;
        }
        if !index.may_hold(key) {
            return Some((None, index.prev));
        }
        let Some(block) = index.block_of(key) else {
            return Some((None, index.prev));
        };
        self.count_page_read(1, 0);
        let found = self.read_block(addr, block, key, sn, bytes);
        if found.is_none() {
            index.failed();
        }
        Some((found?, index.prev))
    }

    /// What the block `block` of the record at `addr` says of `key` at `sn`, read and checked;
    /// `None` if it cannot be read or fails its checks.
    fn read_block(
        &self,
        addr: u64,
        block: BlockRef<'_>,
        key: &[u8],
        sn: u64,
        bytes: &mut Vec<u8>,
    ) -> Option<Visible> {
        let source = self.source.as_ref().expect("a tree with stubs has a page source");
        source.read_range(addr, block.start..block.end, bytes).ok()?;
        self.count_page_read(0, bytes.len());
        if bytes.len() != block.end - block.start {
            return None;
        }
        Some(visible(block_entries(bytes, block.crc, block.first)?, key, sn))
    }

    /// [`Tree::find_in_whole`] reading only the record's front and the one block that can hold
    /// `key`, each checked by its own checksum; with the index of the front it read. `None` if
    /// the record cannot be read in parts, or a part fails to read or its checks: the caller
    /// then reads the record whole (checked by its frame's checksum), which answers or says
    /// what is wrong.
    fn find_in_parts(
        &self,
        addr: u64,
        key: &[u8],
        sn: u64,
        buffers: &mut (Vec<u8>, Vec<u8>),
    ) -> Option<(Found, Arc<BlockIndex>)> {
        let source = self.source.as_ref().expect("a tree with stubs has a page source");
        let (front_bytes, block_bytes) = buffers;
        let (kind, len) = source.read_front(addr, FRONT_READ, front_bytes).ok()??;
        self.count_page_read(1, front_bytes.len());
        while matches!(PageFront::decode(front_bytes), Err(FrontError::Short)) && front_bytes.len() < len {
            let want = (2 * front_bytes.len()).clamp(FRONT_READ, len);
            source.read_range(addr, 0..want, front_bytes).ok()?;
            self.count_page_read(0, want);
        }
        let front = PageFront::decode(front_bytes).ok()?;
        let prev = next_in_chain(kind, front.prev, addr).ok()?;
        if front.blocks().last().map_or(front.len(), |b| b.end) != len {
            return None;
        }
        let index = Arc::new(BlockIndex::new(&front, None::<core::iter::Empty<&[u8]>>));
        let Some(block) = front.block_of(key) else {
            return Some(((None, prev), index));
        };
        let found = match front_bytes.get(block.start..block.end) {
            Some(bytes) => visible(block_entries(bytes, block.crc, block.first)?, key, sn),
            None => self.read_block(addr, block, key, sn, block_bytes)?,
        };
        Some(((found, prev), index))
    }

    /// Counts `records` page records read, in parts of `bytes` bytes.
    fn count_page_read(&self, records: u64, bytes: usize) {
        self.counters.page_reads.fetch_add(records, Ordering::Relaxed);
        self.counters.page_read_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Reads the page record at `addr` into `payload` (counted) and decodes it.
    fn read_record<'p>(&self, addr: u64, payload: &'p mut Vec<u8>) -> Result<(Kind, PageRecord<'p>), Error> {
        let source = self.source.as_ref().expect("a tree with stubs has a page source");
        let kind = source.read(addr, payload).map_err(|e| Error::PageRead { addr: e.addr })?;
        self.count_page_read(1, payload.len());
        let record = PageRecord::decode(payload).ok_or(Error::PageCorrupt { addr })?;
        Ok((kind, record))
    }

    /// Reads the chain of page records from `addr` back and builds the base of their entries
    /// within `[low, high)`; with `learned`, puts there the index of each record read.
    fn read_page(
        &self,
        addr: u64,
        low: &[u8],
        high: Option<&[u8]>,
        learned: Option<&mut Vec<(u64, Arc<BlockIndex>)>>,
    ) -> Result<Base, Error> {
        let mut payloads: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut at = Some(addr);
        while let Some(addr) = at {
            if payloads.len() > 4 * MAX_SEGMENTS {
                return Err(Error::PageCorrupt { addr });
            }
            let mut payload = Vec::new();
            let (kind, record) = self.read_record(addr, &mut payload)?;
            at = next_in_chain(kind, record.prev, addr)?;
            payloads.push((addr, payload));
        }

        let records: Vec<PageRecord<'_>> =
            payloads.iter().map(|(_, p)| PageRecord::decode(p).expect("decoded above")).collect();
        if let Some(learned) = learned {
            for ((addr, payload), record) in payloads.iter().zip(&records) {
                let front = PageFront::decode(payload).expect("a record decoded above");
                learned
                    .push((*addr, Arc::new(BlockIndex::new(&front, Some(record.entries().map(|e| e.key))))));
            }
        }
        // Newest record first; a stable sort by key keeps that order among a key's versions,
        // and each record lists a key's versions newest first.
        let mut versions: Vec<Version<'_>> = records
            .iter()
            .flat_map(|r| r.entries())
            .filter(|e| e.key >= low && high.is_none_or(|h| e.key < h))
            .map(|e| Version { key: e.key, value: e.value, sn: e.sn })
            .collect();
        versions.sort_by(|a, b| a.key.cmp(b.key));
        Ok(Base::build(versions.iter().copied()))
    }

    // ---- Writing pages out ------------------------------------------------------------------

    /// Low keys of the pages that may hold writes no page record has, in key order, each with
    /// the page's identity in its current shape (see [`Capture::page_id`]).
    pub fn dirty_pages(&self, guard: &Guard) -> Vec<(Box<[u8]>, u64)> {
        let mut out = Vec::new();
        self.each_page(guard, |cell, _| {
            if cell.dirty.load(Ordering::SeqCst) {
                out.push((cell.low.clone(), shape_of(cell)));
            }
        });
        out
    }

    /// Writes into `out` the record of the page whose low key is `low` as `snapshot` sees it:
    /// an image if `image` is set or the page needs one (never written, restructured, or
    /// [`MAX_SEGMENTS`] records long), a delta of the versions since its last record otherwise.
    /// The caller appends the record (if [`Capture::kind`] says there is one), makes it
    /// recoverable, then calls [`Tree::flushed`]. One capture at a time per tree.
    ///
    /// An image ends the page's chain in the log, so the records its stubs name will die: a
    /// swapped-out page comes back into memory first (it is read for the image anyway), read
    /// with `guard` unpinned.
    pub fn capture(
        &self,
        low: &[u8],
        snapshot: &Snapshot,
        image: bool,
        out: &mut PageWriter,
        guard: &mut Guard,
    ) -> Result<Captured, Error> {
        self.check_snapshot(snapshot);
        let mut tries = 0;
        loop {
            let (cell, head) = self.locate(Target::Key(low), guard);
            if *cell.low != *low {
                return Ok(Captured::Gone);
            }
            if !(image_due(image, &cell.flush.lock()) && chain_has_stub(head)) {
                break;
            }
            tries += 1;
            if tries > 8 {
                return Ok(Captured::Busy); // lost every race to writers; the page is still dirty
            }
            self.read_stubs_unpinned(Target::Key(low), guard, |cell, head, loaded, guard| {
                if loaded.is_some_and(|loaded| self.consolidate_loaded(cell, head, &loaded, guard)) {
                    self.counters.swap_ins.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        }
        Ok(self.capture_resident(low, snapshot.sn(), image, out, guard))
    }

    /// The log addresses of the records [`Tree::capture`] of the page at `low` (an image if
    /// `image`) would read back, newest first: the page's records, if an image is due and some
    /// are swapped out; none otherwise. A runtime asks its device for them ahead of the
    /// captures, so that the reads of a batch of pages overlap.
    pub fn capture_reads(&self, low: &[u8], image: bool, guard: &Guard) -> Vec<u64> {
        let (cell, head) = self.locate(Target::Key(low), guard);
        let flush = cell.flush.lock();
        if *cell.low != *low || !image_due(image, &flush) || !chain_has_stub(head) {
            return Vec::new();
        }
        flush.chain.clone()
    }

    /// [`Tree::capture`] of a page that needs no read from the log.
    fn capture_resident(
        &self,
        low: &[u8],
        s: u64,
        image: bool,
        out: &mut PageWriter,
        guard: &Guard,
    ) -> Captured {
        let (cell, _) = self.locate(Target::Key(low), guard);
        if *cell.low != *low {
            return Captured::Gone;
        }
        // Cleared before the head is read: a write that lands after this read marks the page
        // again (see `PageCell::mark_dirty`).
        cell.dirty.store(false, Ordering::SeqCst);
        crate::sync::fence(Ordering::SeqCst);
        // The head is loaded under the flush lock, which a merge into this page holds while
        // it installs its merge record and makes the page inherit the absorbed page's
        // records: so a head with the merge record comes with that flush state (an image is
        // due), and one without it with the shape from before (see `Tree::complete_merge`).
        let (head, flush) = {
            let flush = cell.flush.lock();
            (cell.load(), flush.clone())
        };
        let image = image_due(image, &flush);
        // Frozen for a merge (its keys are about to be its sibling's), or swapped out again
        // since it was read back (a merge absorbed a swapped-out sibling).
        if head.remove_state().is_some() || (image && chain_has_stub(head)) {
            cell.mark_dirty();
            return Captured::Busy;
        }
        let loaded = Loaded::skipping_stubs();
        let mut gathered = Gathered::default();
        let high = head.hdr.high().map_or(Bound::Unbounded, Bound::Excluded);
        gathered
            .gather(head, Bound::Unbounded, high, &loaded)
            .unwrap_or_else(|_| unreachable!("stubs loaded or skipped"));
        let mut versions = Vec::new();
        gathered.sorted(&mut versions);
        let settled = versions.iter().all(|v| v.sn <= s);
        versions.retain(|v| v.sn <= s);
        let mut live = Vec::new();
        self.mvcc().live_into(&mut live);
        live.retain(|&l| l <= s);
        // An image is the bottom of the chain: nothing below for a tombstone to hide.
        let floor = if image { u64::MAX } else { flush.sn };
        garbage_collect(&mut versions, &live, floor, &mut GcScratch::default());
        if !image {
            versions.retain(|v| v.sn > flush.sn);
        }
        if !settled {
            cell.mark_dirty();
        }
        let wrote = image || !versions.is_empty();
        let mut index = None;
        if wrote {
            out.start(s, if image { None } else { flush.chain.first().copied() }, &cell.low, head.hdr.high());
            for v in &versions {
                out.push(v.key, v.value, v.sn);
            }
            let front = PageFront::decode(out.payload()).expect("a front just written");
            index = Some(Arc::new(BlockIndex::new(&front, Some(versions.iter().map(|v| v.key)))));
        }
        let items = if image { versions.len() as u32 } else { head.hdr.items };
        Captured::Page(Capture {
            low: cell.low.clone(),
            id: cell.id,
            head: (head as *const Record as usize, head.hdr.seq),
            sn: s,
            flushed_sn: flush.sn,
            changes: flush.changes,
            image,
            items,
            settled,
            wrote,
            index,
        })
    }

    /// Records that the page `capture` captured is in the log at `addr` (ignored if the capture
    /// wrote nothing): its next delta will name `addr` as its previous record. Call it only once
    /// the record is recoverable (a crash may not lose it).
    pub fn flushed(&self, capture: &Capture, addr: u64, guard: &Guard) {
        if !capture.wrote {
            return;
        }
        let (cell, _) = self.locate(Target::Key(&capture.low), guard);
        if cell.id != capture.id {
            return; // the page is gone: its keys are another page's now, which has its own records
        }
        let mut flush = cell.flush.lock();
        let (added, dropped) = flush.push_newest(addr, capture.image, capture.index.clone());
        self.add_resident(added);
        self.sub_resident(dropped);
        flush.sn = capture.sn;
        if capture.image && flush.changes == capture.changes {
            flush.needs_image = false;
            flush.inherited.clear();
        }
        cell.flushed_sn.store(capture.sn, Ordering::Release);
        drop(flush);
        self.counters.page_flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives up a capture whose record will not be flushed (its append or its commit failed):
    /// the page is marked dirty again, since the capture cleared the mark.
    pub fn abandon(&self, capture: &Capture, guard: &Guard) {
        let (cell, _) = self.locate(Target::Key(&capture.low), guard);
        if cell.id == capture.id {
            cell.mark_dirty();
        }
    }

    /// Replaces the page `capture` captured with a stub naming its records, if it has not been
    /// split, merged or consolidated since, and its records are recoverable ([`Tree::flushed`]
    /// was called). The versions newer than the capture's snapshot (written since, or before
    /// the capture but after the snapshot) stay in memory, copied onto the stub as blind
    /// writes, and the page stays dirty for them. True if it was swapped out.
    pub fn swap_out(&self, capture: &Capture, guard: &Guard) -> bool {
        let (cell, head) = self.locate(Target::Key(&capture.low), guard);
        if cell.id != capture.id {
            return false;
        }
        let Some(kept) = writes_kept(head, capture) else { return false };
        let addr = {
            let flush = cell.flush.lock();
            // The newest record is the one captured (or, if it held nothing new, the one the
            // page already had).
            let newest = if capture.wrote { capture.sn } else { capture.flushed_sn };
            match flush.chain.first() {
                Some(&addr) if flush.sn == newest && !flush.needs_image => addr,
                _ => return false,
            }
        };
        let mut top = Record::stub(addr, capture.items, &cell.low, head.hdr.high(), head.hdr.right_ptr());
        for write in kept.iter().rev() {
            top = copy_write_onto(write, top);
        }
        self.finish_unlinks(head, guard);
        if !cell.install(head, top) {
            // SAFETY: never published.
            unsafe { crate::page::record::free_chain(top) };
            return false;
        }
        self.add_resident(chain_bytes(top));
        self.retire(head, guard);
        cell.referenced.store(false, Ordering::Relaxed);
        self.counters.swap_outs.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The Clock: passes over up to `n` pages from the one holding `hand` (wrapping around at
    /// the end), clearing reference bits; returns the low keys of those whose bit was already
    /// clear and that hold at least the mean bytes in memory of such pages: the pages to swap
    /// out. `hand` moves on past them. The others keep their clear bit for the next pass: a
    /// page holding a few blind writes above its stub frees little, and flushing it uses up
    /// one of its chain's [`MAX_SEGMENTS`] records (the last of which costs reading the page
    /// back for an image), so it waits until it holds more.
    pub fn sweep(&self, hand: &mut Vec<u8>, n: usize, guard: &Guard) -> Vec<Box<[u8]>> {
        let mut victims = Vec::new();
        let (mut cell, _) = self.locate(Target::Key(hand), guard);
        for _ in 0..n {
            let head = cell.load();
            let bare_stub = head.hdr.chain_len == 0 && head.swapped().is_some();
            if !bare_stub && head.remove_state().is_none() && !cell.referenced.swap(false, Ordering::Relaxed)
            {
                victims.push((cell.low.clone(), head.hdr.bytes as u64));
            }
            match (head.hdr.high(), head.hdr.right()) {
                (Some(high), Some(right)) => {
                    hand.clear();
                    hand.extend_from_slice(high);
                    cell = right;
                }
                _ => {
                    hand.clear();
                    break;
                }
            }
        }
        let total: u64 = victims.iter().map(|(_, bytes)| bytes).sum();
        let count = victims.len() as u64;
        victims.into_iter().filter(|(_, bytes)| bytes * count >= total).map(|(low, _)| low).collect()
    }

    /// Every page's place in the log, in key order: what the runtime writes to its page table.
    pub fn pages(&self, guard: &Guard) -> Vec<PageChain> {
        let mut out = Vec::new();
        self.each_page(guard, |cell, head| {
            let flush = cell.flush.lock().clone();
            out.push(PageChain {
                low: cell.low.clone(),
                id: shape_of(cell),
                high: head.hdr.high().map(Into::into),
                chain: flush.chain,
                sn: flush.sn,
                items: head.hdr.items,
                dirty: cell.dirty.load(Ordering::Relaxed) || flush.needs_image,
                swapped: page_is_swapped(head),
            });
        });
        out
    }

    /// Low keys of the pages holding keys of `[lo, hi)` (`hi` `None`: to the end), in key
    /// order, as a walk from the page holding `lo` finds them (pages split or merged meanwhile
    /// may be named by a low key they no longer have).
    pub fn page_lows_within(&self, lo: &[u8], hi: Option<&[u8]>, guard: &Guard) -> Vec<Box<[u8]>> {
        let (mut cell, _) = self.locate(Target::Key(lo), guard);
        let mut out = Vec::new();
        while hi.is_none_or(|hi| *cell.low < *hi) {
            out.push(cell.low.clone());
            let head = cell.load();
            match (head.hdr.high(), head.hdr.right()) {
                (Some(_), Some(right)) => cell = right,
                _ => break,
            }
        }
        out
    }

    /// Whether the page record at `addr`, of a page whose keys lay in `[low, high)`, is still
    /// in the chain of a page now: if not, nothing will read it again.
    pub fn holds_record(&self, low: &[u8], high: Option<&[u8]>, addr: u64, guard: &Guard) -> bool {
        let (mut cell, _) = self.locate(Target::Key(low), guard);
        loop {
            let flush = cell.flush.lock();
            if flush.chain.contains(&addr) || flush.inherited.contains(&addr) {
                return true;
            }
            drop(flush);
            let head = cell.load();
            match (head.hdr.high(), head.hdr.right()) {
                (Some(h), Some(right)) if high.is_none_or(|high| h < high) => cell = right,
                _ => return false,
            }
        }
    }

    /// Calls `visit` with every page and its head, left to right (pages frozen by a merge
    /// included, once).
    fn each_page<'g>(&self, guard: &'g Guard, mut visit: impl FnMut(&'g PageCell, &'g Record)) {
        let (mut cell, _) = self.locate(Target::Key(&[]), guard);
        loop {
            let head = cell.load();
            visit(cell, head);
            match head.hdr.right() {
                Some(right) if head.hdr.high().is_some() => cell = right,
                _ => return,
            }
        }
    }
}

/// The writes a swap-out keeps in memory above the stub, newest first: those installed on the
/// page above the head `capture` saw, and, if the page held versions newer than its snapshot
/// then, the writes below that head newer than it. `None` if `head` does not lead down to the
/// captured head through writes alone (the page was split, merged or consolidated since), or
/// a newer version is in a base or a record other than a write.
fn writes_kept<'r>(head: &'r Record, capture: &Capture) -> Option<Vec<&'r Record>> {
    let mut kept = Vec::new();
    let mut rec = head;
    while (rec as *const Record as usize, rec.hdr.seq) != capture.head {
        rec.version()?;
        kept.push(rec);
        // SAFETY: a write always has a next record, alive as long as the chain above it.
        rec = unsafe { &*rec.next };
    }
    if capture.settled {
        return Some(kept);
    }
    loop {
        match &rec.body {
            Body::Insert { sn, .. } | Body::Delete { sn, .. } => {
                if *sn > capture.sn {
                    kept.push(rec);
                }
            }
            Body::Base { base, .. } => {
                return (0..base.len()).all(|i| base.get(i).sn <= capture.sn).then_some(kept)
            }
            Body::Swapped { .. } => return Some(kept),
            _ => return None,
        }
        // SAFETY: as above: only a base or a stub ends a chain.
        rec = unsafe { &*rec.next };
    }
}

/// An unpublished copy of the write `write` placed above `next`.
fn copy_write_onto(write: &Record, next: *mut Record) -> *mut Record {
    let v = write.version().expect("only writes are copied");
    let copy = Record::write(v.key, v.value);
    // SAFETY: `copy` is fresh and unpublished; `next` is the caller's, alive.
    unsafe {
        let (items_delta, bytes) = (*copy).write_effect();
        (*copy).set_sn(v.sn);
        (*copy).hdr = Header::above(&(*next).hdr, items_delta, bytes);
        (*copy).next = next;
    }
    copy
}

/// Whether a capture of a page whose flush state is `flush` writes an image (`image`: asked
/// for one): a page never written or restructured needs one, and so does one whose chain in
/// the log is [`MAX_SEGMENTS`] records long.
fn image_due(image: bool, flush: &FlushState) -> bool {
    image || flush.chain.is_empty() || flush.needs_image || flush.chain.len() >= MAX_SEGMENTS
}

/// A page's identity in its current shape (see [`Capture::page_id`]).
fn shape_of(cell: &PageCell) -> u64 {
    shape(cell.id, cell.flush.lock().changes)
}

fn shape(id: u64, changes: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ changes
}

/// What a point read brought back from the log: the value it looked for, or (to install)
/// the whole page.
enum ReadBack {
    Key(Option<Vec<u8>>),
    Page(Base),
}

/// The stub an unpinned read read the log for, copied out before it unpinned: its record and the
/// keys it covers (a read for a page holds what that record has within those keys).
struct ReadFor {
    addr: u64,
    low: Box<[u8]>,
    high: Option<Box<[u8]>>,
}

impl ReadFor {
    fn of(stub: &StubRef<'_>) -> Self {
        Self { addr: stub.addr, low: stub.low.into(), high: stub.high.map(Into::into) }
    }

    /// Whether `stub` names the same record over the same keys.
    fn is(&self, stub: &StubRef<'_>) -> bool {
        self.addr == stub.addr && *self.low == *stub.low && self.high.as_deref() == stub.high
    }
}

/// The record before the one at `addr` (of `kind`, naming `prev`) in its page's chain: a
/// delta's `prev`, nothing below an image.
fn next_in_chain(kind: Kind, prev: Option<u64>, addr: u64) -> Result<Option<u64>, Error> {
    match (kind, prev) {
        (Kind::PageImage, None) => Ok(None),
        (Kind::PageDelta, Some(prev)) => Ok(Some(prev)),
        _ => Err(Error::PageCorrupt { addr }),
    }
}

/// A key's version visible at a snapshot among some entries, if they hold one: its value, or
/// `None` for a tombstone.
type Visible = Option<Option<Vec<u8>>>;

/// What one page record says of a key (see [`Visible`]), and the record before it in its
/// page's chain.
type Found = (Visible, Option<u64>);

/// The value of `key` visible at `sn` among `entries` (a record's, or a block's: sorted by
/// key, a key's versions newest first), if they hold a version of it visible there.
fn visible<'a>(entries: impl Iterator<Item = PageEntry<'a>>, key: &[u8], sn: u64) -> Visible {
    let mut versions = entries.skip_while(|e| e.key < key).take_while(|e| e.key == key);
    versions.find(|e| e.sn <= sn).map(|e| e.value.map(<[u8]>::to_vec))
}

/// Whether any chain from `head` (absorbed ones included) ends in a stub. Allocates nothing:
/// writes ask it whenever a page is due a consolidation.
pub(crate) fn chain_has_stub(head: &Record) -> bool {
    let mut found = false;
    each_stub(head, &mut |_| found = true);
    found
}

/// The stubs of the chain from `head` and of the chains its merge records absorbed.
fn stubs_of(head: &Record) -> Vec<&Record> {
    let mut stubs = Vec::new();
    each_stub(head, &mut |stub| stubs.push(stub));
    stubs
}

/// Calls `visit` with each stub of the chain from `head`, an absorbed chain's where its merge
/// record is (merges nest as deep as a page absorbed siblings since its last consolidation).
fn each_stub<'r>(head: &'r Record, visit: &mut impl FnMut(&'r Record)) {
    let mut rec: *const Record = head;
    while !rec.is_null() {
        // SAFETY: the caller is pinned with `head` loaded; chains below it are alive as long
        // as it is.
        let r = unsafe { &*rec };
        match &r.body {
            // SAFETY: as above.
            Body::Merge { right, .. } if !right.is_null() => each_stub(unsafe { &**right }, visit),
            Body::Swapped { .. } => visit(r),
            _ => {}
        }
        rec = r.next;
    }
}

/// Whether a page's entries are out of memory: its chain ends in a stub.
fn page_is_swapped(head: &Record) -> bool {
    let mut rec = head;
    loop {
        match &rec.body {
            Body::Swapped { .. } => return true,
            Body::Base { .. } => return false,
            // SAFETY: every record but a base or stub has a next one.
            _ => rec = unsafe { &*rec.next },
        }
    }
}
