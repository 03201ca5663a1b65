//! Records: the immutable nodes of a page's delta chain, and the page cell that points at the chain.
//!
//! A page is a [`PageCell`] whose `head` points at the newest record; each record points at the
//! next older one, down to a base. Records are never changed after they are published (except
//! the merge state of a remove record, which only moves forward), so a reader that loaded a head
//! sees a consistent page for as long as its epoch guard is held.

use alloc::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use alloc::boxed::Box;
use core::cmp::Ordering as KeyOrder;
use core::ptr::{self, NonNull};
use core::slice;

use super::base::{prefix, Base, Version};
use crate::log::block_index::BlockIndex;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering, SpinLock};
use alloc::sync::Arc;

/// A stub's log address and key range (see [`Body::Swapped`]).
pub(crate) struct StubRef<'a> {
    pub addr: u64,
    pub low: &'a [u8],
    pub high: Option<&'a [u8]>,
}

/// What every record carries so that readers and writers decide without walking the chain.
#[derive(Clone, Copy)]
pub(crate) struct Header {
    /// Records above the base (0 for a base).
    pub chain_len: u32,
    /// Entries on the page, counting each insert as one more and each delete as one fewer:
    /// exact after consolidation, an estimate in between.
    pub items: u32,
    /// Encoded bytes of the page: exact after consolidation, an estimate in between.
    pub bytes: u32,
    /// Records installed on the page's cell before this one (wrapping; set by
    /// [`PageCell::install`]). With the record's address it names the head a capture saw: the
    /// address alone may come back, on a newer record, once this one is freed.
    pub seq: u32,
    /// Exclusive upper bound of the page's keys; `None` for the last page. Points at bytes owned by
    /// this record or by a record below it, which live exactly as long as this record.
    high: Option<NonNull<[u8]>>,
    /// `prefix(high)`: routing decides most keys against it without touching the high key's
    /// bytes, which live in another allocation (a cache miss on every lookup otherwise).
    high_prefix: u64,
    /// The page holding keys from `high` on; null when `high` is `None`.
    right: *const PageCell,
}

impl Header {
    /// The header of a base or split-off page: no chain yet.
    pub(crate) fn fresh(items: usize, bytes: usize, high: Option<&[u8]>, right: *const PageCell) -> Self {
        Self {
            chain_len: 0,
            items: saturate(items),
            bytes: saturate(bytes),
            seq: 0,
            high: high.map(NonNull::from),
            high_prefix: high.map_or(0, prefix),
            right,
        }
    }

    /// The header of a delta placed on top of `next`: one record longer, `items` and `bytes` moved.
    pub(crate) fn above(next: &Header, items_delta: i64, bytes: usize) -> Self {
        Self {
            chain_len: next.chain_len.saturating_add(1),
            items: saturate((i64::from(next.items) + items_delta).max(0) as usize),
            bytes: saturate(next.bytes as usize + bytes),
            ..*next
        }
    }

    /// The exclusive upper bound of the page's keys; `None` means unbounded.
    pub(crate) fn high(&self) -> Option<&[u8]> {
        // SAFETY: `high` points into this record or a record below it in the same chain; those
        // are freed together with this record, never before it.
        self.high.map(|p| unsafe { p.as_ref() })
    }

    /// How `key`, whose [`prefix`] is `key_prefix`, orders against the high key; `None` when the
    /// page is unbounded above. A difference in prefixes decides without reading the high key.
    #[inline]
    pub(crate) fn cmp_high(&self, key: &[u8], key_prefix: u64) -> Option<KeyOrder> {
        let high = self.high?;
        // SAFETY: as in `high`.
        Some(key_prefix.cmp(&self.high_prefix).then_with(|| key.cmp(unsafe { high.as_ref() })))
    }

    /// The right sibling, which holds keys from `high` on.
    pub(crate) fn right(&self) -> Option<&PageCell> {
        // SAFETY: a right sibling is unlinked only after a merge delta replaced this page's view of
        // it, and freed an epoch later; anyone holding this record is pinned across that.
        unsafe { self.right.as_ref() }
    }

    pub(crate) fn right_ptr(&self) -> *const PageCell {
        self.right
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Merge progress of a soft-removed page, kept on its remove record.
pub(crate) mod merge_state {
    /// The page is frozen; its left sibling has not absorbed it yet.
    pub const PENDING: u8 = 0;
    /// The left sibling carries a merge delta pointing at this page's chain, which it now owns.
    pub const MERGED: u8 = 1;
    /// The page's index node is unlinked too.
    pub const UNLINKED: u8 = 2;
}

/// One record of a delta chain.
///
/// An insert or delete record carries its key and value bytes in the same allocation, right
/// after the struct (see [`Record::write`]): one allocation per write, and a chain walk that
/// compares keys touches one cache line run, not two. Records are therefore only ever handled by
/// pointer and freed with [`Record::free`].
pub(crate) struct Record {
    pub hdr: Header,
    /// The next older record; null only below a base.
    pub next: *mut Record,
    pub body: Body,
}

// SAFETY: records are immutable once published except for atomics; the raw pointers they hold are
// to other records and cells whose lifetimes the epoch scheme manages.
unsafe impl Send for Record {}
// SAFETY: as above.
unsafe impl Sync for Record {}

/// The kinds of record.
pub(crate) enum Body {
    /// A new version of a key, whose bytes follow the record. `prefix` is the key's first bytes
    /// (see [`base::prefix`](super::base::prefix)), so a chain walk skips records of other keys
    /// without touching their bytes.
    /// `bytes` points at them (derived from the allocation, so it may reach past the struct).
    Insert { sn: u64, prefix: u64, key_len: u32, value_len: u32, bytes: *const u8 },
    /// A tombstone for a key, whose bytes follow the record, with its prefix as above.
    Delete { sn: u64, prefix: u64, key_len: u32, bytes: *const u8 },
    /// Keys from `sep` on moved to the right sibling named in the header.
    Split { sep: Box<[u8]> },
    /// The right sibling (whose low key is `sep`) was absorbed: keys from `sep` on are found in
    /// `right`'s chain (its remove record, then the chain below it), which this record now owns.
    Merge { sep: Box<[u8]>, right: *mut Record },
    /// The page is being merged into its left sibling: it takes no more writes.
    Remove { state: AtomicU8 },
    /// Consolidated entries, with the page's upper bound (owned here, read through the header).
    Base { base: Base, high: Option<Box<[u8]>> },
    /// In place of a base: the page's entries are in the log, in the page records from `addr`
    /// back (see `crate::log::page`). Records above a stub are writes made since (blind
    /// writes: nobody read the page for them).
    Swapped {
        addr: u64,
        /// The page's low key: the records may hold keys outside the page, which loading drops.
        low: Box<[u8]>,
        high: Option<Box<[u8]>>,
    },
}

impl Record {
    /// The layout of a record followed by `tail` bytes.
    fn layout(tail: usize) -> Layout {
        let bytes = Layout::array::<u8>(tail).expect("a record's bytes fit in memory");
        Layout::new::<Record>().extend(bytes).expect("a record fits in memory").0.pad_to_align()
    }

    /// Allocates a record followed by `tail` bytes written by `fill`; returns the owning pointer.
    fn alloc_with(
        hdr: Header,
        next: *mut Record,
        body: Body,
        tail: usize,
        fill: impl FnOnce(*mut u8),
    ) -> *mut Record {
        let layout = Self::layout(tail);
        // SAFETY: the layout has a non-zero size (it holds a `Record`).
        let rec = unsafe { alloc(layout) }.cast::<Record>();
        if rec.is_null() {
            handle_alloc_error(layout);
        }
        // SAFETY: `rec` is fresh, aligned and big enough for the record and its tail, which
        // starts right after the struct (`layout` extends the struct's own layout).
        unsafe {
            rec.write(Record { hdr, next, body });
            let tail = rec.add(1).cast::<u8>();
            fill(tail);
            if let Body::Insert { bytes, .. } | Body::Delete { bytes, .. } = &mut (*rec).body {
                *bytes = tail;
            }
        }
        rec
    }

    /// Allocates a record without bytes of its own and returns the owning raw pointer.
    pub(crate) fn alloc(hdr: Header, next: *mut Record, body: Body) -> *mut Record {
        debug_assert_eq!(body.tail_len(), 0, "writes are made by `Record::write`");
        Self::alloc_with(hdr, next, body, 0, |_| {})
    }

    /// An insert or delete record not yet placed on any page.
    pub(crate) fn write(key: &[u8], value: Option<&[u8]>) -> *mut Record {
        let (prefix, key_len) = (prefix(key), key.len() as u32);
        let body = match value {
            Some(value) => {
                Body::Insert { sn: 0, prefix, key_len, value_len: value.len() as u32, bytes: ptr::null() }
            }
            None => Body::Delete { sn: 0, prefix, key_len, bytes: ptr::null() },
        };
        let value = value.unwrap_or_default();
        let hdr = Header::fresh(0, 0, None, ptr::null());
        Self::alloc_with(hdr, ptr::null_mut(), body, key.len() + value.len(), |tail| {
            // SAFETY: the tail holds exactly the key then the value.
            unsafe {
                ptr::copy_nonoverlapping(key.as_ptr(), tail, key.len());
                ptr::copy_nonoverlapping(value.as_ptr(), tail.add(key.len()), value.len());
            }
        })
    }

    /// Frees one record (not the records it points at) and its bytes.
    ///
    /// # Safety
    /// `rec` was made by [`Record::alloc`] or [`Record::write`], is owned by the caller and is
    /// unreachable by every other thread.
    pub(crate) unsafe fn free(rec: *mut Record) {
        // SAFETY: per the contract, `rec` is a live record allocated with this layout.
        unsafe {
            let layout = Self::layout((*rec).body.tail_len());
            ptr::drop_in_place(rec);
            dealloc(rec.cast::<u8>(), layout);
        }
    }

    /// The bytes that follow an insert or delete record: its key, then its value.
    fn tail(&self) -> &[u8] {
        match self.body {
            // SAFETY: `bytes` points at the `tail_len` bytes `alloc_with` wrote after the struct,
            // through a pointer derived from the whole allocation; they live as long as `self`.
            Body::Insert { bytes, .. } | Body::Delete { bytes, .. } => unsafe {
                slice::from_raw_parts(bytes, self.body.tail_len())
            },
            _ => &[],
        }
    }

    /// A base record holding `versions`, bounded above by `high`.
    pub(crate) fn base<'a>(
        versions: &[Version<'a>],
        bytes: usize,
        high: Option<&[u8]>,
        right: *const PageCell,
    ) -> *mut Record {
        let high: Option<Box<[u8]>> = high.map(Into::into);
        let hdr = Header::fresh(versions.len(), bytes, high.as_deref(), right);
        let base = Base::build(versions.iter().copied());
        Self::alloc(hdr, ptr::null_mut(), Body::Base { base, high })
    }

    /// A stub standing for a page whose entries are in the log from `addr` on (see
    /// [`Body::Swapped`]), holding about `items` entries below `high`.
    pub(crate) fn stub(
        addr: u64,
        items: u32,
        low: &[u8],
        high: Option<&[u8]>,
        right: *const PageCell,
    ) -> *mut Record {
        let high: Option<Box<[u8]>> = high.map(Into::into);
        let hdr = Header::fresh(items as usize, 0, high.as_deref(), right);
        Self::alloc(hdr, ptr::null_mut(), Body::Swapped { addr, low: low.into(), high })
    }

    /// What a stub says of its page, if this is one.
    pub(crate) fn swapped(&self) -> Option<StubRef<'_>> {
        match &self.body {
            Body::Swapped { addr, low, high, .. } => {
                Some(StubRef { addr: *addr, low, high: high.as_deref() })
            }
            _ => None,
        }
    }

    /// Bytes of memory this one record holds: its allocation, and what its body owns.
    pub(crate) fn heap_bytes(&self) -> usize {
        let owned = match &self.body {
            Body::Base { base, high } => base.heap_bytes() + high.as_ref().map_or(0, |h| h.len()),
            Body::Swapped { low, high, .. } => low.len() + high.as_ref().map_or(0, |h| h.len()),
            Body::Split { sep } | Body::Merge { sep, .. } => sep.len(),
            _ => 0,
        };
        Self::layout(self.body.tail_len()).size() + owned
    }

    /// The version an insert or delete record carries.
    pub(crate) fn version(&self) -> Option<Version<'_>> {
        match &self.body {
            Body::Insert { sn, key_len, .. } => {
                let (key, value) = self.tail().split_at(*key_len as usize);
                Some(Version { key, value: Some(value), sn: *sn })
            }
            Body::Delete { sn, .. } => Some(Version { key: self.tail(), value: None, sn: *sn }),
            _ => None,
        }
    }

    /// Sets the snapshot number of an unpublished insert or delete record.
    pub(crate) fn set_sn(&mut self, new: u64) {
        match &mut self.body {
            Body::Insert { sn, .. } | Body::Delete { sn, .. } => *sn = new,
            _ => unreachable!("only writes carry a snapshot number"),
        }
    }

    /// Change to the page's entry count and bytes that this write makes.
    pub(crate) fn write_effect(&self) -> (i64, usize) {
        match self.version() {
            Some(v) if v.value.is_some() => (1, v.encoded_len()),
            Some(v) => (-1, v.key.len()),
            None => (0, 0),
        }
    }

    /// The merge state if this is a remove record.
    pub(crate) fn remove_state(&self) -> Option<&AtomicU8> {
        match &self.body {
            Body::Remove { state } => Some(state),
            _ => None,
        }
    }
}

/// Bytes of memory a chain holds, with the chains it owns (see [`Record::heap_bytes`]).
pub(crate) fn chain_bytes(mut rec: *const Record) -> usize {
    let mut bytes = 0;
    while !rec.is_null() {
        // SAFETY: the caller holds the chain alive (pinned, or owning it).
        let r = unsafe { &*rec };
        bytes += r.heap_bytes();
        if let Body::Merge { right, .. } = r.body {
            bytes += chain_bytes(right);
        }
        rec = r.next;
    }
    bytes
}

/// Frees a chain and every chain it owns (the absorbed chains of merge records).
///
/// # Safety
/// The chain must be unreachable by every thread, and owned by the caller.
pub(crate) unsafe fn free_chain(mut rec: *mut Record) {
    while !rec.is_null() {
        // SAFETY: the caller owns the chain; each record was made by `Record::alloc` or `write`.
        unsafe {
            if let Body::Merge { right, .. } = (*rec).body {
                // A merge record owns the absorbed chain.
                free_chain(right);
            }
            let next = (*rec).next;
            Record::free(rec);
            rec = next;
        }
    }
}

impl Body {
    /// Bytes that follow a record with this body.
    fn tail_len(&self) -> usize {
        match *self {
            Body::Insert { key_len, value_len, .. } => key_len as usize + value_len as usize,
            Body::Delete { key_len, .. } => key_len as usize,
            _ => 0,
        }
    }
}

/// A page: its immutable low key and the head of its delta chain. Lives on an index node.
pub(crate) struct PageCell {
    /// Inclusive lower bound of the page's keys; empty for the leftmost page.
    pub low: Box<[u8]>,
    /// The newest record of the chain.
    pub head: AtomicPtr<Record>,
    /// Set once the page is reachable from the index; only indexed pages start merges.
    pub indexed: AtomicBool,
    /// Never the same for two cells of one process (a flush names the page it captured by it:
    /// a cell's memory may be reused by a later page with the same low key).
    pub id: u64,
    /// Set by every write to the page, cleared by a flush as it captures the page: a hint of
    /// which pages to flush (the truth is in the snapshot numbers, see `crate::paging`).
    pub dirty: AtomicBool,
    /// The Clock's reference bit: set by reads and writes, cleared by the sweep.
    pub referenced: AtomicBool,
    /// `flush.sn`, readable without the lock: consolidation keeps the real numbers of the
    /// versions above it (a flush tells unflushed versions by them).
    pub flushed_sn: AtomicU64,
    /// Where the page is in the log. Changed only by flushes (one thread per tree).
    pub flush: SpinLock<FlushState>,
}

/// What a [`FlushState`] was before an [`FlushState::inherit`].
pub(crate) struct Inherited {
    len: usize,
    needs_image: bool,
}

/// The page records that hold a page, newest first, and what its next record must be.
#[derive(Clone, Debug, Default)]
pub(crate) struct FlushState {
    /// Log addresses of the page's records, newest first: an image at the end, deltas before
    /// it. Empty for a page never flushed.
    pub chain: alloc::vec::Vec<u64>,
    /// The snapshot number the newest record was captured at (0 before the first).
    pub sn: u64,
    /// The records hold other keys than the page does now (it absorbed a sibling, or was made
    /// by a split or a load): the next record must be an image.
    pub needs_image: bool,
    /// Bumped whenever `needs_image` is set: a flush captured before that must not clear it.
    pub changes: u64,
    /// Records of other pages that hold some of this page's keys (those of the page it split
    /// from, or of a page it absorbed), until its next image: still live for the cleaner.
    pub inherited: alloc::vec::Vec<u64>,
    /// What point reads keep of the records of `chain`, by position there (missing or `None`:
    /// not known; see [`BlockIndex`]). Counted in the tree's resident bytes while held.
    indexes: alloc::vec::Vec<Option<Arc<BlockIndex>>>,
    /// The page left the tree: it keeps no more indexes (their bytes were given back).
    retired: bool,
}

impl FlushState {
    /// See [`PageCell::inherit`]. Returns what [`FlushState::undo_inherit`] needs to take it
    /// back.
    pub(crate) fn inherit(&mut self, other: &FlushState) -> Inherited {
        let before = Inherited { len: self.inherited.len(), needs_image: self.needs_image };
        self.inherited.extend_from_slice(&other.chain);
        self.inherited.extend_from_slice(&other.inherited);
        self.needs_image = true;
        self.changes += 1;
        before
    }

    /// Takes back the [`FlushState::inherit`] that returned `before`, the last change made.
    pub(crate) fn undo_inherit(&mut self, before: Inherited) {
        self.inherited.truncate(before.len);
        self.needs_image = before.needs_image;
        self.changes -= 1;
    }

    /// A page held by the records `chain` (newest first), captured at `sn`.
    pub(crate) fn of_chain(chain: alloc::vec::Vec<u64>, sn: u64) -> Self {
        Self { chain, sn, ..Self::default() }
    }

    /// Makes the record at `addr` the page's newest (its only one if `image`), with its
    /// index. Returns the index bytes now held more and those given up.
    pub(crate) fn push_newest(
        &mut self,
        addr: u64,
        image: bool,
        index: Option<Arc<BlockIndex>>,
    ) -> (usize, usize) {
        let dropped = if image { self.index_bytes() } else { 0 };
        if image {
            self.chain.clear();
            self.indexes.clear();
        }
        self.indexes.resize(self.chain.len(), None);
        let index = index.filter(|_| !self.retired);
        let added = index.as_ref().map_or(0, |i| i.bytes());
        self.chain.insert(0, addr);
        self.indexes.insert(0, index);
        (added, dropped)
    }

    /// The indexes of the records of the chain from `addr` back (`addr` first), as far as the
    /// chain holds `addr`'s record (empty if it does not).
    /// Each comes with its record's address, and only if it names the record after it in the
    /// chain as its previous one.
    pub(crate) fn indexes_from(&self, addr: u64) -> alloc::vec::Vec<(u64, Option<Arc<BlockIndex>>)> {
        let Some(at) = self.chain.iter().position(|&a| a == addr) else { return alloc::vec::Vec::new() };
        (at..self.chain.len())
            .map(|i| {
                let index = self.indexes.get(i).cloned().flatten();
                (self.chain[i], index.filter(|x| x.prev == self.chain.get(i + 1).copied()))
            })
            .collect()
    }

    /// Keeps `index` for the record at `addr` if the chain holds it and knows no index for it
    /// (or only one without a filter, and `index` has one). Returns the bytes held more
    /// (negative: fewer).
    pub(crate) fn learn(&mut self, addr: u64, index: Arc<BlockIndex>) -> isize {
        let Some(at) = self.chain.iter().position(|&a| a == addr).filter(|_| !self.retired) else { return 0 };
        self.indexes.resize(self.chain.len(), None);
        let slot = &mut self.indexes[at];
        if slot.as_ref().is_some_and(|known| known.has_filter() || !index.has_filter()) {
            return 0;
        }
        let before = slot.as_ref().map_or(0, |i| i.bytes()) as isize;
        let after = index.bytes() as isize;
        *slot = Some(index);
        after - before
    }

    /// Gives up every index, for good (the page left the tree). Returns their bytes.
    pub(crate) fn retire(&mut self) -> usize {
        let bytes = self.index_bytes();
        self.indexes.clear();
        self.retired = true;
        bytes
    }

    fn index_bytes(&self) -> usize {
        self.indexes.iter().flatten().map(|i| i.bytes()).sum()
    }
}

impl PageCell {
    pub(crate) fn new(low: Box<[u8]>, head: *mut Record, indexed: bool) -> Self {
        Self::with_flush(low, head, indexed, FlushState::default())
    }

    pub(crate) fn with_flush(low: Box<[u8]>, head: *mut Record, indexed: bool, flush: FlushState) -> Self {
        static IDS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);
        Self {
            low,
            head: AtomicPtr::new(head),
            indexed: AtomicBool::new(indexed),
            id: IDS.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
            dirty: AtomicBool::new(false),
            referenced: AtomicBool::new(false),
            flushed_sn: AtomicU64::new(flush.sn),
            flush: SpinLock::new(flush),
        }
    }

    /// Marks the page as holding writes no page record has (see `dirty`).
    pub(crate) fn mark_dirty(&self) {
        crate::sync::fence(Ordering::SeqCst);
        if !self.dirty.load(Ordering::Relaxed) {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Says that some of the page's keys are in `other`'s records (it split from or absorbed
    /// that page): those stay live, and the page's next record must be an image.
    pub(crate) fn inherit(&self, other: &FlushState) {
        self.flush.lock().inherit(other);
        self.mark_dirty();
    }

    /// Sets the reference bit if it is clear (a load first: no cache line written when set).
    #[inline]
    pub(crate) fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// Loads the head record. The caller must be pinned for as long as it uses the result.
    pub(crate) fn load(&self) -> &Record {
        // SAFETY: heads are never null, and records are freed only an epoch after they become
        // unreachable, so a pinned caller can use what it loaded.
        unsafe { &*self.head.load(Ordering::Acquire) }
    }

    /// Replaces the head `current` with `new`; true if no other record got there first.
    /// `new` must be unpublished: its `seq` is set here.
    pub(crate) fn install(&self, current: &Record, new: *mut Record) -> bool {
        // SAFETY: `new` is the caller's, unpublished.
        unsafe { (*new).hdr.seq = current.hdr.seq.wrapping_add(1) };
        let current = current as *const Record as *mut Record;
        self.head.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    pub(crate) fn is_indexed(&self) -> bool {
        self.indexed.load(Ordering::Acquire)
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    /// `seq` takes the padding after `bytes`: every record's header stays 48 bytes.
    #[test]
    fn the_header_stays_48_bytes() {
        assert_eq!(core::mem::size_of::<super::Header>(), 48);
    }
}
