//! Pages written out, swapped out and read back, against a `BTreeMap` model: random writes,
//! reads, scans and snapshots interleaved with flushes (page records into an in-memory log),
//! swap-outs of every settled page, and reopens that rebuild the tree from the page table the
//! records fold into plus the op records no page record covers (the recovery a runtime does,
//! with the log in memory). Thresholds are small so that pages split, merge and consolidate
//! on top of stubs all the time.

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use helio_core::log::frame::Kind;
use helio_core::log::page::{PageRecord, PageTable, PageWriter};
use helio_core::{Captured, Mvcc, PageReadError, PageSource, PageTile, Snapshot, Tree, TreeConfig};
use proptest::prelude::*;

mod common;

use common::{expected_range, Model};

/// The page records appended so far; a record's address is its index plus one.
#[derive(Default)]
struct MemLog {
    records: Mutex<Vec<(Kind, Vec<u8>)>>,
    /// Addresses whose reads fail (to check that errors come back typed).
    failing: Mutex<Vec<u64>>,
    /// Reads of parts of records return damaged bytes (reads of whole records do not).
    damaged_parts: Mutex<bool>,
    /// While set, the next read waits for it to open (a disk read that takes its time).
    gate: Mutex<Option<Arc<Gate>>>,
}

/// Holds reads until opened, and says whether one is waiting.
#[derive(Default)]
struct Gate {
    waiting: std::sync::atomic::AtomicBool,
    open: Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn pass(&self) {
        self.waiting.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl MemLog {
    fn append(&self, kind: Kind, payload: &[u8]) -> u64 {
        let mut records = self.records.lock().unwrap();
        records.push((kind, payload.to_vec()));
        records.len() as u64
    }
}

impl PageSource for MemLog {
    fn read(&self, addr: u64, out: &mut Vec<u8>) -> Result<Kind, PageReadError> {
        // Only the first read after the gate is set waits: the others pass.
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.pass();
        }
        if self.failing.lock().unwrap().contains(&addr) {
            return Err(PageReadError { addr });
        }
        let records = self.records.lock().unwrap();
        let (kind, payload) = records.get(addr as usize - 1).ok_or(PageReadError { addr })?;
        out.clear();
        out.extend_from_slice(payload);
        Ok(*kind)
    }

    /// Exactly the bytes asked for: what a point read reads is what it counts.
    fn read_front(
        &self,
        addr: u64,
        want: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<(Kind, usize)>, PageReadError> {
        let kind = self.read(addr, out)?;
        let len = out.len();
        out.truncate(want);
        self.damage(out);
        Ok(Some((kind, len)))
    }

    fn read_range(
        &self,
        addr: u64,
        range: std::ops::Range<usize>,
        out: &mut Vec<u8>,
    ) -> Result<(), PageReadError> {
        let mut whole = Vec::new();
        self.read(addr, &mut whole)?;
        out.clear();
        out.extend_from_slice(whole.get(range).ok_or(PageReadError { addr })?);
        self.damage(out);
        Ok(())
    }
}

impl MemLog {
    /// Flips a bit of `part` if parts are to come back damaged.
    fn damage(&self, part: &mut [u8]) {
        if *self.damaged_parts.lock().unwrap() && !part.is_empty() {
            let at = part.len() / 2;
            part[at] ^= 0x10;
        }
    }
}

/// A put (`Some` value) or a delete.
type Write = (Vec<u8>, Option<Vec<u8>>);

/// A durable write: what an op record in the log holds.
#[derive(Clone, Debug)]
struct LoggedOp {
    sn: u64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// A tree that writes its pages to a `MemLog`, and the ops since they were last all flushed.
struct Paged {
    tree: Tree,
    log: Arc<MemLog>,
    ops: Vec<LoggedOp>,
    /// The flush's snapshot, kept between rounds (see `crate::paging`).
    flush_snapshot: Option<Snapshot>,
    config: TreeConfig,
}

impl Paged {
    fn new(config: TreeConfig) -> Self {
        let log = Arc::new(MemLog::default());
        let mvcc = Arc::new(Mvcc::new());
        let mut tree =
            Tree::with_parts(config.clone(), crossbeam_epoch::default_collector().clone(), mvcc).unwrap();
        tree.set_page_source(log.clone());
        Self { tree, log, ops: Vec::new(), flush_snapshot: None, config }
    }

    fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        let guard = self.tree.pin();
        let ticket = self.tree.mvcc().begin_write(0);
        self.ops.push(LoggedOp { sn: ticket.sn(), key: key.to_vec(), value: value.map(<[u8]>::to_vec) });
        self.tree.put_with(&ticket, key, value, &guard).unwrap();
    }

    /// Flushes every dirty page as a new snapshot sees it; swaps out every page that allows it
    /// if `swap`. The ops every page record now covers leave the log.
    fn flush(&mut self, swap: bool, images: bool) {
        self.flush_writing(swap, images, &[]);
    }

    /// [`Paged::flush`], with the writes of `during` made while it runs: the first half after
    /// its snapshot (so pages hold versions newer than it as they are captured), the rest one
    /// at a time between a page's capture and its swap-out.
    fn flush_writing(&mut self, swap: bool, images: bool, during: &[Write]) {
        let snapshot = self.tree.snapshot();
        let (before, mut between) = {
            let (before, between) = during.split_at(during.len() / 2);
            (before, between.iter())
        };
        for (key, value) in before {
            self.write(key, value.as_deref());
        }
        let mut guard = self.tree.pin();
        let mut writer = PageWriter::new();
        // Again until no page is left the round has not captured: an image may bring a page
        // back and split it, making new pages (dirty, and holding writes the snapshot sees).
        let mut done = std::collections::HashSet::new();
        loop {
            let lows: Vec<(Box<[u8]>, u64)> = if swap {
                self.tree.pages(&guard).into_iter().map(|p| (p.low, p.id)).collect()
            } else {
                self.tree.dirty_pages(&guard)
            };
            let lows: Vec<_> = lows.into_iter().filter(|(_, id)| done.insert(*id)).collect();
            if lows.is_empty() {
                break;
            }
            for (low, _) in lows {
                let capture = match self.tree.capture(&low, &snapshot, images, &mut writer, &mut guard) {
                    Ok(Captured::Page(capture)) => capture,
                    Ok(Captured::Gone) => continue,
                    Ok(Captured::Busy) => panic!("a page busy with no other thread at work"),
                    Err(e) => panic!("{e}"),
                };
                done.insert(capture.page_id());
                if let Some(kind) = capture.kind() {
                    let addr = self.log.append(kind, writer.payload());
                    self.tree.flushed(&capture, addr, &guard);
                }
                if let Some((key, value)) = between.next() {
                    drop(guard);
                    self.write(key, value.as_deref());
                    guard = self.tree.pin();
                }
                if swap {
                    self.tree.swap_out(&capture, &guard);
                }
            }
        }
        for (key, value) in between {
            self.write(key, value.as_deref());
        }
        // Every page is in the log as `snapshot` sees it, if the round saw every dirty page
        // (pages made after it started are dirty with writes above the snapshot).
        let sn = snapshot.sn();
        self.ops.retain(|op| op.sn > sn);
        self.flush_snapshot = Some(snapshot);
    }

    /// What a reopen after a crash builds: the page table of every record, its pages swapped
    /// out, and the ops no record covers applied on top.
    fn reopen(&mut self) {
        let mut table = PageTable::new();
        let records = self.log.records.lock().unwrap().clone();
        for (i, (kind, payload)) in records.iter().enumerate() {
            let record = PageRecord::decode(payload).expect("a page record");
            table.fold(i as u64 + 1, *kind, &record).unwrap();
        }
        let tiles: Vec<PageTile> = table
            .tiles()
            .map(|(lo, hi, entry)| PageTile {
                lo: lo.into(),
                hi: hi.map(Into::into),
                chain: entry.map(|e| self.chain_of(e.addr)).unwrap_or_default(),
                sn: entry.map_or(0, |e| e.sn),
                items: entry.map_or(0, |e| e.items),
            })
            .collect();
        let next = self.tree.mvcc().open_sn() + 1;
        let mvcc = Arc::new(Mvcc::starting_at(next));
        let collector = crossbeam_epoch::default_collector().clone();
        self.flush_snapshot = None;
        self.tree = Tree::with_pages(self.config.clone(), collector, mvcc, self.log.clone(), &tiles).unwrap();
        let ops = std::mem::take(&mut self.ops);
        for op in ops.iter().filter(|op| op.sn > table.covering(&op.key).map_or(0, |e| e.sn)) {
            self.write(&op.key, op.value.as_deref());
        }
        // The ops replayed keep their place in the log.
        self.ops = ops;
    }

    /// The addresses of the chain of records from `addr`, newest first.
    fn chain_of(&self, addr: u64) -> Vec<u64> {
        let records = self.log.records.lock().unwrap();
        let mut chain = vec![addr];
        while let Some(prev) =
            PageRecord::decode(&records[*chain.last().unwrap() as usize - 1].1).unwrap().prev
        {
            chain.push(prev);
        }
        chain
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    GetOwned(Vec<u8>),
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>, bool),
    TakeSnapshot,
    CheckSnapshot(usize),
    DropSnapshot(usize),
    /// A flush, with writes made while it runs (see [`Paged::flush_writing`]).
    Flush {
        swap: bool,
        images: bool,
        during: Vec<Write>,
    },
    Reopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![(0u8..64).prop_map(|k| vec![b'k', k]), (0u8..8).prop_map(|k| vec![b'k', k, b'x', k]),]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![key().prop_map(Bound::Included), key().prop_map(Bound::Excluded), Just(Bound::Unbounded)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (key(), proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(k, v)| Op::Put(k, v)),
        5 => key().prop_map(Op::Delete),
        3 => key().prop_map(Op::Get),
        4 => key().prop_map(Op::GetOwned),
        2 => (bound(), bound(), any::<bool>()).prop_map(|(lo, hi, rev)| Op::Range(lo, hi, rev)),
        1 => Just(Op::TakeSnapshot),
        2 => (0usize..4).prop_map(Op::CheckSnapshot),
        1 => (0usize..4).prop_map(Op::DropSnapshot),
        4 => (any::<bool>(), prop::bool::weighted(0.2), writes_during())
            .prop_map(|(swap, images, during)| Op::Flush { swap, images, during }),
        1 => Just(Op::Reopen),
    ]
}

/// Writes made during a flush: none half the time.
fn writes_during() -> impl Strategy<Value = Vec<Write>> {
    let write = (key(), proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..16)));
    prop_oneof![Just(Vec::new()), proptest::collection::vec(write, 1..8)]
}

fn config() -> impl Strategy<Value = TreeConfig> {
    (2u32..8, 1u32..6, 4u32..12).prop_map(|(chain, read_chain, split)| {
        TreeConfig::default()
            .consolidate_chain(chain)
            .read_consolidate_chain(read_chain)
            .split_items(split)
            .merge_items(split / 4)
            .page_bytes_max(256)
    })
}

/// The range, read twice: as a pinned iterator reads it (reading swapped-out pages back with
/// its pin held), and as the runtime's scans do (see [`range_read`]); both must agree.
fn tree_range(
    tree: &Tree,
    snap: &Snapshot,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    rev: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let unpinned = range_read(tree, snap, (lo, hi), rev, true);
    let out = range_read(tree, snap, (lo, hi), rev, false);
    assert_eq!(unpinned, out, "read back unpinned, the range differs");
    out
}

/// The entries of `range`, in reverse if `rev`. With `stop`, as the runtime's scans read them:
/// stopping before each swapped-out page, reading it back unpinned, and going on past the last
/// entry taken.
fn range_read(
    tree: &Tree,
    snap: &Snapshot,
    (lo, hi): (&Bound<Vec<u8>>, &Bound<Vec<u8>>),
    rev: bool,
    stop: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (mut lo, mut hi) = (lo.clone(), hi.clone());
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    loop {
        let mut guard = tree.pin();
        let mut iter = tree.range::<Vec<u8>, _>(snap, (lo.clone(), hi.clone()), &guard);
        if stop {
            iter = iter.stopping_at_swapped_out();
        }
        let own = |(k, v): (&[u8], &[u8])| (k.to_vec(), v.to_vec());
        let taken = out.len();
        if rev {
            out.extend(iter.by_ref().rev().map(own));
        } else {
            out.extend(iter.by_ref().map(own));
        }
        assert!(iter.error().is_none(), "{:?}", iter.error());
        let Some(page) = iter.swapped_out().cloned() else { return out };
        drop(iter);
        if out.len() > taken {
            let last = Bound::Excluded(out.last().expect("taken").0.clone());
            if rev {
                hi = last;
            } else {
                lo = last;
            }
        }
        tree.swap_in_unpinned(&page, &mut guard).unwrap();
    }
}

fn check_all(tree: &Tree, snap: Option<&Snapshot>, model: &Model) {
    let latest = tree.snapshot();
    let at = snap.unwrap_or(&latest);
    assert_eq!(
        tree_range(tree, at, &Bound::Unbounded, &Bound::Unbounded, false),
        expected_range(model, &Bound::Unbounded, &Bound::Unbounded, false)
    );
    let mut guard = tree.pin();
    for (k, v) in model {
        // Every other key installs the page it reads.
        let install = k.len() % 2 == 1;
        assert_eq!(
            tree.get_owned(k, snap, install, &mut guard).unwrap().as_deref(),
            Some(&v[..]),
            "key {k:?}"
        );
    }
}

fn run(config: TreeConfig, ops: Vec<Op>) {
    let mut paged = Paged::new(config);
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                paged.write(&k, Some(&v));
                model.insert(k, v);
            }
            Op::Delete(k) => {
                paged.write(&k, None);
                model.remove(&k);
            }
            Op::Get(k) => {
                let guard = paged.tree.pin();
                assert_eq!(paged.tree.get(&k, &guard).unwrap(), model.get(&k).map(|v| &v[..]));
            }
            Op::GetOwned(k) => {
                let mut guard = paged.tree.pin();
                let install = k.first().is_some_and(|b| b % 2 == 0);
                assert_eq!(
                    paged.tree.get_owned(&k, None, install, &mut guard).unwrap(),
                    model.get(&k).cloned()
                );
            }
            Op::Range(lo, hi, rev) => {
                let snap = paged.tree.snapshot();
                assert_eq!(
                    tree_range(&paged.tree, &snap, &lo, &hi, rev),
                    expected_range(&model, &lo, &hi, rev)
                );
            }
            Op::TakeSnapshot => snapshots.push((paged.tree.snapshot(), model.clone())),
            Op::CheckSnapshot(i) => {
                if let Some((snap, then)) = snapshots.get(i) {
                    check_all(&paged.tree, Some(snap), then);
                }
            }
            Op::DropSnapshot(i) => {
                if i < snapshots.len() {
                    snapshots.swap_remove(i);
                }
            }
            Op::Flush { swap, images, during } => {
                paged.flush_writing(swap, images, &during);
                for (key, value) in during {
                    match value {
                        Some(value) => model.insert(key, value),
                        None => model.remove(&key),
                    };
                }
            }
            Op::Reopen => {
                // Snapshots do not outlive the process.
                snapshots.clear();
                paged.reopen();
            }
        }
    }
    let guard = paged.tree.pin();
    paged.tree.check_invariants(&guard).unwrap();
    drop(guard);
    for (snap, then) in &snapshots {
        check_all(&paged.tree, Some(snap), then);
    }
    check_all(&paged.tree, None, &model);
    snapshots.clear();
    paged.reopen();
    check_all(&paged.tree, None, &model);
    paged.flush(true, false);
    paged.reopen();
    check_all(&paged.tree, None, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn paged_tree_matches_btreemap(config in config(), ops in proptest::collection::vec(op(), 1..300)) {
        run(config, ops);
    }
}

/// A swapped-out page whose record cannot be read: reads of it say so, typed, and nothing
/// changes; blind writes above it and reads of them need no read at all.
#[test]
fn unreadable_pages_fail_reads_with_typed_errors_and_blind_writes_need_no_read() {
    let mut paged = Paged::new(TreeConfig::default().consolidate_chain(64).read_consolidate_chain(64));
    for i in 0u8..20 {
        paged.write(&[i], Some(&[i; 4]));
    }
    paged.flush(true, false);
    let before = paged.tree.stats();
    assert!(before.swap_outs >= 1, "{before:?}");
    // Blind writes: onto the stub, found again without reading the page.
    paged.write(&[3], Some(b"new"));
    paged.write(&[4], None);
    let mut guard = paged.tree.pin();
    assert_eq!(paged.tree.get_owned(&[3], None, false, &mut guard).unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(paged.tree.get_owned(&[4], None, false, &mut guard).unwrap(), None);
    assert_eq!(paged.tree.stats().page_reads, before.page_reads, "a blind write's read went to the log");
    // A key below the stub: read from the log, not brought back.
    assert_eq!(paged.tree.get_owned(&[5], None, false, &mut guard).unwrap().as_deref(), Some(&[5u8; 4][..]));
    assert!(paged.tree.stats().page_reads > before.page_reads);
    assert_eq!(paged.tree.stats().swap_ins, before.swap_ins, "a point read brought the page back");
    // Unreadable: a typed error, from point reads and from scans.
    let all: Vec<u64> = (1..=paged.log.records.lock().unwrap().len() as u64).collect();
    *paged.log.failing.lock().unwrap() = all;
    let err = paged.tree.get_owned(&[6], None, false, &mut guard).unwrap_err();
    assert!(matches!(err, helio_core::Error::PageRead { .. }), "{err:?}");
    let snap = paged.tree.snapshot();
    let mut iter = paged.tree.range::<[u8], _>(&snap, .., &guard);
    assert!(iter.by_ref().count() < 20);
    assert!(matches!(iter.error(), Some(helio_core::Error::PageRead { .. })));
    drop(iter);
    paged.log.failing.lock().unwrap().clear();
    assert_eq!(paged.tree.get_owned(&[6], None, false, &mut guard).unwrap().as_deref(), Some(&[6u8; 4][..]));
}

/// A point read that installs brings its page back: the next read of the page does no I/O;
/// one that does not leaves it out, and every read of it goes to the log.
#[test]
fn a_point_read_that_installs_brings_the_page_back() {
    let mut paged = Paged::new(TreeConfig::default());
    for i in 0u8..20 {
        paged.write(&[i], Some(&[i; 4]));
    }
    paged.flush(true, false);
    let mut guard = paged.tree.pin();
    let reads = |paged: &Paged| paged.tree.stats().page_reads;
    let before = reads(&paged);
    for _ in 0..2 {
        assert_eq!(
            paged.tree.get_owned(&[5], None, false, &mut guard).unwrap().as_deref(),
            Some(&[5u8; 4][..])
        );
    }
    assert_eq!(reads(&paged), before + 2, "each read without install goes to the log");
    let swap_ins = paged.tree.stats().swap_ins;
    assert_eq!(paged.tree.get_owned(&[6], None, true, &mut guard).unwrap().as_deref(), Some(&[6u8; 4][..]));
    assert_eq!((reads(&paged), paged.tree.stats().swap_ins), (before + 3, swap_ins + 1));
    for i in 0u8..20 {
        assert_eq!(paged.tree.get_owned(&[i], None, true, &mut guard).unwrap().as_deref(), Some(&[i; 4][..]));
    }
    assert_eq!(reads(&paged), before + 3, "the page is back in memory");
    drop(guard);
    let guard = paged.tree.pin();
    paged.tree.check_invariants(&guard).unwrap();
}

/// A scan that stops before swapped-out pages and reads them back unpinned (as the runtime's
/// scans and ranges do) sees every entry, and while its read waits for the disk, memory that
/// other threads retire is reclaimed: the epoch moves on.
#[test]
fn a_scan_reads_swapped_out_pages_back_unpinned() {
    let mut paged = Paged::new(TreeConfig::default().split_items(16).merge_items(4));
    let keys: Vec<[u8; 2]> = (0u16..200).map(u16::to_be_bytes).collect();
    for k in &keys {
        paged.write(k, Some(k));
    }
    paged.flush(true, false);
    let gate = Arc::new(Gate::default());
    *paged.log.gate.lock().unwrap() = Some(gate.clone());
    let tree = &paged.tree;
    let snapshot = tree.snapshot();
    let seen = std::thread::scope(|s| {
        let scanner = s.spawn(|| {
            let mut seen: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut guard = tree.pin();
                let from = seen.last().map_or(Bound::Unbounded, |k| Bound::Excluded(k.clone()));
                let mut iter = tree
                    .range::<Vec<u8>, _>(&snapshot, (from, Bound::Unbounded), &guard)
                    .stopping_at_swapped_out();
                seen.extend(iter.by_ref().map(|(k, _)| k.to_vec()));
                assert!(iter.error().is_none());
                let Some(page) = iter.swapped_out().cloned() else { break };
                drop(iter);
                tree.swap_in_unpinned(&page, &mut guard).unwrap();
            }
            seen
        });
        // The scanner waits in a read. Memory retired now must still be freed.
        let reclaimed = reclaims_while_a_read_waits(tree, &gate);
        gate.open();
        let seen = scanner.join().unwrap();
        assert!(reclaimed, "nothing retired was freed while a scan waited for a page read");
        seen
    });
    assert_eq!(seen, keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>());
    assert!(paged.tree.stats().swap_ins > 0);
}

/// Once a read waits at `gate`: whether a closure deferred on the epoch now runs within 10 s
/// (it cannot while any thread stays pinned).
fn reclaims_while_a_read_waits(tree: &Tree, gate: &Gate) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    while !gate.waiting.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let freed = Arc::new(AtomicBool::new(false));
    let flag = freed.clone();
    tree.pin().defer(move || flag.store(true, Ordering::SeqCst));
    let started = std::time::Instant::now();
    while !freed.load(Ordering::SeqCst) && started.elapsed().as_secs() < 10 {
        tree.pin().flush();
    }
    freed.load(Ordering::SeqCst)
}

/// A read that installs reads its page with the guard unpinned (a point read, or a scan's
/// read of a page it stopped before); meanwhile the page is brought back by blind writes,
/// split, and its left half swapped out again unchanged, under a stub naming the same record
/// as before but a lower high key. The read must not install what it read for the whole old
/// page into that half (it would hold the right half's keys).
#[test]
fn a_read_does_not_install_what_it_read_for_a_page_since_split() {
    race_a_split_with_an_unpinned_read(|tree| {
        let mut guard = tree.pin();
        let value = tree.get_owned(&[1], None, true, &mut guard).unwrap();
        assert_eq!(value.as_deref(), Some(&[1u8][..]));
    });
    race_a_split_with_an_unpinned_read(|tree| {
        let snapshot = tree.snapshot();
        let mut guard = tree.pin();
        let mut iter = tree.range::<Vec<u8>, _>(&snapshot, .., &guard).stopping_at_swapped_out();
        assert_eq!(iter.next(), None);
        let page = iter.swapped_out().cloned().expect("the page is swapped out");
        drop(iter);
        tree.swap_in_unpinned(&page, &mut guard).unwrap();
    });
}

/// One page of 16 keys swapped out; `read` runs on another thread, and while its first log
/// read waits, 12 blind writes above those keys split the page and a flush round swaps the
/// halves out. Then the tree's invariants must hold.
fn race_a_split_with_an_unpinned_read(read: impl Fn(&Tree) + Sync) {
    let config = TreeConfig::default().split_items(16).merge_items(4).consolidate_chain(4);
    let mut paged = Paged::new(config);
    for i in 0u8..16 {
        paged.write(&[i], Some(&[i]));
    }
    paged.flush(true, false);
    let gate = Arc::new(Gate::default());
    *paged.log.gate.lock().unwrap() = Some(gate.clone());
    let (tree, log) = (&paged.tree, &*paged.log);
    std::thread::scope(|s| {
        let reader = s.spawn(|| read(tree));
        while !gate.waiting.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // The page consolidates (reading the log) and splits; the left half, which none of
        // the writes reached, swaps out under its old record.
        for i in 100u8..112 {
            tree.put(&[i], &[i], &tree.pin()).unwrap();
        }
        assert!(tree.stats().splits > 0, "{:?}", tree.stats());
        flush_round(tree, log, true, &mut None);
        gate.open();
        reader.join().unwrap();
    });
    let guard = tree.pin();
    tree.check_invariants(&guard).unwrap();
    let keys: Vec<u8> = tree.range::<Vec<u8>, _>(&tree.snapshot(), .., &guard).map(|(k, _)| k[0]).collect();
    assert_eq!(keys, (0u8..16).chain(100..112).collect::<Vec<_>>());
}

/// A write into a swapped-out page that makes it due a consolidation leaves it to its caller
/// (`put_deferring_reads`), who reads the page's records with the guard unpinned
/// (`consolidate_unpinned`): while that read waits for the disk, memory other threads retire
/// is reclaimed. Every entry is there after, and the page is back in memory.
#[test]
fn a_writer_consolidates_a_swapped_out_page_unpinned() {
    let config = TreeConfig::default().consolidate_chain(8);
    let mut paged = Paged::new(config);
    for i in 0u8..100 {
        paged.write(&[i], Some(&[i]));
    }
    paged.flush(true, false);
    let tree = &paged.tree;
    // Blind writes until one makes the page due.
    let mut deferred_at = None;
    for i in 0u8..8 {
        let ticket = tree.mvcc().begin_write(0);
        if tree.put_deferring_reads(&ticket, &[i], Some(&[i, i]), &tree.pin()).unwrap() {
            deferred_at = Some(i);
            break;
        }
    }
    let key = [deferred_at.expect("a write made the page due")];
    assert!(paged.tree.stats().page_reads == 0, "the blind writes read nothing");
    let gate = Arc::new(Gate::default());
    *paged.log.gate.lock().unwrap() = Some(gate.clone());
    std::thread::scope(|s| {
        let writer = s.spawn(|| tree.consolidate_unpinned(&key, &mut tree.pin()).unwrap());
        let reclaimed = reclaims_while_a_read_waits(tree, &gate);
        gate.open();
        writer.join().unwrap();
        assert!(reclaimed, "nothing retired was freed while a writer's consolidation read a page");
    });
    let guard = tree.pin();
    tree.check_invariants(&guard).unwrap();
    let reads = tree.stats().page_reads;
    for i in 0u8..100 {
        let want: &[u8] = if i <= key[0] { &[i, i] } else { &[i] };
        assert_eq!(tree.get(&[i], &guard).unwrap(), Some(want), "key {i}");
    }
    assert_eq!(tree.stats().page_reads, reads, "the page is back in memory");
}

/// A point read of a swapped-out page reads the front of each record it needs and the one
/// block that can hold its key, not whole records; every version comes back right through
/// deltas and at older snapshots; and parts that fail their checksums fall back to reading the
/// record whole.
#[test]
fn a_point_read_reads_the_front_and_one_block_of_each_record() {
    let mut paged = Paged::new(TreeConfig::default());
    let key = |i: u32| format!("key{i:08}").into_bytes();
    for i in 0..4000 {
        paged.write(&key(i), Some(&[i as u8; 100]));
    }
    paged.flush(true, false);
    let old = paged.tree.snapshot();
    for i in (0..4000).step_by(7) {
        paged.write(&key(i), if i % 2 == 0 { Some(b"new") } else { None });
    }
    paged.flush(true, false);
    let largest = paged.log.records.lock().unwrap().iter().map(|(_, p)| p.len()).max().unwrap();
    assert!(largest > 32 << 10, "pages of {largest} bytes");
    let want = |i: u32, snap: Option<&Snapshot>| -> Option<Vec<u8>> {
        match (snap.is_none() && i % 7 == 0, i % 2 == 0) {
            (true, true) => Some(b"new".to_vec()),
            (true, false) => None,
            (false, _) => Some(vec![i as u8; 100]),
        }
    };
    let read_all = |paged: &Paged| -> (u64, u64) {
        let before = paged.tree.stats();
        let mut guard = paged.tree.pin();
        for i in 0..4000 {
            for snap in [None, Some(&old)] {
                let got = paged.tree.get_owned(&key(i), snap, false, &mut guard).unwrap();
                assert_eq!(got, want(i, snap), "key {i} at {:?}", snap.map(Snapshot::sn));
            }
        }
        let after = paged.tree.stats();
        (after.page_reads - before.page_reads, after.page_read_bytes - before.page_read_bytes)
    };
    let (reads, bytes) = read_all(&paged);
    assert!(reads >= 8000, "{reads} records read");
    assert!(bytes / reads < 4096, "{} bytes per record read, of records up to {largest}", bytes / reads);
    assert_eq!(paged.tree.stats().swap_ins, 0);
    // Damaged parts: the same answers, from whole records.
    *paged.log.damaged_parts.lock().unwrap() = true;
    let (reads, bytes) = read_all(&paged);
    assert!(bytes / reads > 8 << 10, "{} bytes per record read: no whole records", bytes / reads);
}

/// A page keeps an index of each of its records (block index and key filter): a point read
/// of the swapped-out page reads one block, in one read, of only the records whose filter
/// passes its key. A tree opened from its page table has no indexes: its first read of a
/// record reads the front and the block, and keeps the front's index, so later reads of the
/// record read one part.
#[test]
fn a_point_read_reads_one_block_of_the_records_that_may_hold_its_key() {
    let mut paged = Paged::new(TreeConfig::default());
    let key = |i: u32| format!("key{i:08}").into_bytes();
    for i in 0..4000 {
        paged.write(&key(i), Some(&[i as u8; 100]));
    }
    paged.flush(true, false);
    for i in (0..4000).step_by(10) {
        paged.write(&key(i), Some(b"new"));
    }
    paged.flush(true, false);
    let value = |i: u32| if i % 10 == 0 { b"new".to_vec() } else { vec![i as u8; 100] };
    let read_all = |paged: &Paged| -> (u64, u64) {
        let before = paged.tree.stats();
        let mut guard = paged.tree.pin();
        for i in 0..4000 {
            let got = paged.tree.get_owned(&key(i), None, false, &mut guard).unwrap();
            assert_eq!(got, Some(value(i)), "key {i}");
        }
        let after = paged.tree.stats();
        (after.page_reads - before.page_reads, after.page_read_bytes - before.page_read_bytes)
    };
    // Each key is in one record (the delta's or the image's); the delta's filter lets about
    // 1 in 400 others through.
    let (reads, bytes) = read_all(&paged);
    assert!((4000..4000 + 40).contains(&reads), "{reads} records read for 4000 keys");
    assert!(bytes / reads <= 2200, "{} bytes per record read", bytes / reads);
    // Opened from the page table: the first read of each record reads its front too, and the
    // page keeps the block index it holds (without a filter: the delta is read for every key).
    paged.reopen();
    let (reads, bytes) = read_all(&paged);
    assert!(reads >= 7000, "{reads} records read for 4000 keys");
    assert!(bytes / reads <= 2200, "{} bytes per record read: fronts read again", bytes / reads);
    assert_eq!(paged.tree.stats().swap_ins, 0);
}

/// Swapping out gives the memory back, and the accounting follows allocations both ways.
#[test]
fn swapping_out_gives_memory_back() {
    let mut paged = Paged::new(TreeConfig::default());
    for i in 0u32..20_000 {
        paged.write(&i.to_be_bytes(), Some(&[7u8; 100]));
    }
    let full = paged.tree.resident_bytes();
    assert!(full > 20_000 * 100, "{full}");
    paged.flush(true, false);
    // Retired pages count until the epoch collector frees them: with one thread pinning, it
    // takes many pins to get through its queue.
    for _ in 0..1_000_000 {
        if paged.tree.resident_bytes() < full / 10 {
            break;
        }
        paged.tree.pin().flush();
    }
    let swapped = paged.tree.resident_bytes();
    assert!(swapped < full / 10, "{full} -> {swapped}: {:?}", paged.tree.stats());
    let guard = paged.tree.pin();
    let snap = paged.tree.snapshot();
    assert_eq!(paged.tree.range::<[u8], _>(&snap, .., &guard).count(), 20_000);
    let back = paged.tree.resident_bytes();
    assert!(back > full / 2, "{full} -> {swapped} -> {back}");
}

/// A flush round as a runtime's flusher does it, concurrently with writers: every dirty page
/// captured at one snapshot, again until no dirty page is left that the round has not
/// captured (pages split off meanwhile), each record "appended" and the page swapped out if it
/// allows. Returns the snapshot number every write at or below is now in a page record, or
/// `None` if a page stayed busy (the round then covers nothing new).
fn flush_round(tree: &Tree, log: &MemLog, swap: bool, held: &mut Option<Snapshot>) -> Option<u64> {
    let snapshot = tree.snapshot();
    let mut guard = tree.pin();
    let mut writer = PageWriter::new();
    let mut done = std::collections::HashSet::new();
    let mut busy = Vec::new();
    let mut retries = 0;
    loop {
        let mut todo: Vec<_> =
            tree.dirty_pages(&guard).into_iter().filter(|(_, id)| !done.contains(id)).collect();
        if todo.is_empty() {
            if busy.is_empty() || retries == 3 {
                break;
            }
            retries += 1;
            todo = std::mem::take(&mut busy);
        }
        for (low, id) in todo {
            done.insert(id);
            let capture = match tree.capture(&low, &snapshot, false, &mut writer, &mut guard).unwrap() {
                Captured::Page(capture) => capture,
                Captured::Gone => continue,
                Captured::Busy => {
                    busy.push((low, id));
                    continue;
                }
            };
            done.insert(capture.page_id());
            if let Some(kind) = capture.kind() {
                let addr = log.append(kind, writer.payload());
                tree.flushed(&capture, addr, &guard);
            }
            if swap {
                tree.swap_out(&capture, &guard);
            }
        }
    }
    let sn = snapshot.sn();
    *held = Some(snapshot);
    busy.is_empty().then_some(sn)
}

/// Writers (each with its own keys and model, interleaved through shared pages), point readers
/// and scanners on stable keys, and a flusher that swaps out everything it can, all at once;
/// then every write checked, and again after a "crash" that rebuilds the tree from the page
/// records and the writes no flush covered.
#[test]
fn writers_readers_and_a_swapping_flusher_agree_with_models() {
    const WRITERS: usize = 3;
    const OPS: usize = 20_000;
    let config =
        TreeConfig::default().consolidate_chain(4).read_consolidate_chain(3).split_items(16).merge_items(4);
    let mut paged = Paged::new(config);
    // Stable keys that readers check while everything else moves.
    for i in 0u32..200 {
        paged.write(format!("stable-{i:04}").as_bytes(), Some(&i.to_be_bytes()));
    }
    let tree = &paged.tree;
    let log = &*paged.log;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let ops = Mutex::new(Vec::<LoggedOp>::new());
    let mut covered = 0;
    let models: Vec<Model> = std::thread::scope(|s| {
        let flusher = s.spawn(|| {
            let mut held = None;
            let mut covered = 0;
            // Two rounds once the writers are done: every page settled, so all swap out.
            let mut after = 0;
            while after < 2 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    after += 1;
                }
                covered = flush_round(tree, log, true, &mut held).unwrap_or(covered);
            }
            covered
        });
        for reader in 0..2u64 {
            let stop = &stop;
            s.spawn(move || {
                let mut x = reader + 1;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let i = (x >> 33) as u32 % 200;
                    let key = format!("stable-{i:04}");
                    let mut guard = tree.pin();
                    // Half the reads bring the pages they read back, racing the swapper.
                    let got = tree.get_owned(key.as_bytes(), None, i % 2 == 0, &mut guard).unwrap();
                    assert_eq!(got.as_deref(), Some(&i.to_be_bytes()[..]), "{key}");
                    if i % 16 == 0 {
                        let snap = tree.snapshot();
                        let lo = format!("stable-{i:04}").into_bytes();
                        let n = tree
                            .range::<Vec<u8>, _>(&snap, lo.., &guard)
                            .take_while(|(k, _)| k.starts_with(b"stable-"))
                            .count();
                        assert_eq!(n, 200 - i as usize);
                    }
                }
            });
        }
        let writers: Vec<_> = (0..WRITERS)
            .map(|owner| {
                let ops = &ops;
                s.spawn(move || {
                    let mut model = Model::new();
                    let mut x = owner as u64 * 7919 + 17;
                    for i in 0..OPS {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let key = format!("w{:04}-{owner}", (x >> 33) % 800).into_bytes();
                        let value = (x % 10 < 7).then(|| format!("{owner}:{i}").into_bytes());
                        let mut guard = tree.pin();
                        let ticket = tree.mvcc().begin_write(owner);
                        ops.lock().unwrap().push(LoggedOp {
                            sn: ticket.sn(),
                            key: key.clone(),
                            value: value.clone(),
                        });
                        // Writer 0 leaves the consolidations that read to after its ticket,
                        // as the runtime's writers do.
                        if owner == 0 {
                            let deferred = tree.put_deferring_reads(&ticket, &key, value.as_deref(), &guard);
                            drop(ticket);
                            if deferred.unwrap() {
                                tree.consolidate_unpinned(&key, &mut guard).unwrap();
                            }
                        } else {
                            tree.put_with(&ticket, &key, value.as_deref(), &guard).unwrap();
                            drop(ticket);
                        }
                        match value {
                            Some(v) => model.insert(key, v),
                            None => model.remove(&key),
                        };
                    }
                    model
                })
            })
            .collect();
        let models = writers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        covered = flusher.join().unwrap();
        models
    });
    let mut model: Model =
        (0u32..200).map(|i| (format!("stable-{i:04}").into_bytes(), i.to_be_bytes().to_vec())).collect();
    for m in models {
        model.extend(m);
    }
    check_all(&paged.tree, None, &model);
    let stats = paged.tree.stats();
    assert!(stats.swap_outs > 50 && stats.page_reads > 0, "{stats:?}");
    let guard = paged.tree.pin();
    paged.tree.check_invariants(&guard).unwrap();
    drop(guard);
    // The crash: only the writes the last round did not cover are still in the log as ops.
    let mut ops = ops.into_inner().unwrap();
    ops.sort_by_key(|op| op.sn);
    ops.retain(|op| op.sn > covered);
    paged.ops = ops;
    paged.reopen();
    check_all(&paged.tree, None, &model);
}

/// A page flushed once and not written since swaps out without a new record.
#[test]
fn a_clean_page_swaps_out_without_a_new_record() {
    let mut paged = Paged::new(TreeConfig::default());
    for i in 0u8..10 {
        paged.write(&[i], Some(&[i]));
    }
    paged.flush(false, false);
    let records = paged.log.records.lock().unwrap().len();
    paged.flush(true, false);
    assert_eq!(paged.log.records.lock().unwrap().len(), records, "a clean page was written again");
    assert!(paged.tree.stats().swap_outs >= 1, "{:?}", paged.tree.stats());
}

/// The Clock takes, of the pages whose reference bit it finds clear, those holding at least the
/// mean bytes in memory of them: a page with one blind write above its stub waits, while one
/// with many goes.
#[test]
fn the_clock_takes_the_pages_that_hold_the_most() {
    let mut paged = Paged::new(TreeConfig::default().split_items(16).merge_items(4));
    let key = |i: u16| i.to_be_bytes();
    for i in 0..200 {
        paged.write(&key(i), Some(b"v"));
    }
    paged.flush(true, false);
    paged.write(&key(0), Some(b"one"));
    for _ in 0..10 {
        paged.write(&key(199), Some(b"many"));
    }
    let guard = paged.tree.pin();
    let pages = paged.tree.pages(&guard);
    assert!(pages.len() > 2 && pages.iter().all(|p| p.swapped), "every page swapped out");
    let mut hand = Vec::new();
    assert!(paged.tree.sweep(&mut hand, 1000, &guard).is_empty(), "the writes set both pages' bits");
    let victims = paged.tree.sweep(&mut hand, 1000, &guard);
    assert_eq!(victims, vec![pages.last().unwrap().low.clone()]);
}

/// Writes that land between a page's capture and its swap-out, or between the flush's
/// snapshot and the capture, do not keep the page in memory: it swaps out with them copied
/// onto its stub as blind writes, stays dirty for them, and the next flush writes them.
#[test]
fn a_page_written_while_it_is_flushed_swaps_out_keeping_the_writes() {
    let mut paged = Paged::new(TreeConfig::default());
    let key = |i: u32| i.to_be_bytes().to_vec();
    for i in 0..100 {
        paged.write(&key(i), Some(b"old"));
    }
    // Written out, and left in memory.
    paged.flush(false, false);
    paged.write(&key(7), Some(b"dirty"));
    let newer = (key(8), Some(b"after the snapshot".to_vec()));
    let since = (key(10), Some(b"after the capture".to_vec()));
    paged.flush_writing(true, false, &[newer, since]);
    paged.write(&key(9), None);
    let guard = paged.tree.pin();
    let pages = paged.tree.pages(&guard);
    assert!(pages.iter().all(|p| p.swapped && p.dirty), "{pages:?}");
    let reads = paged.tree.stats().page_reads;
    assert_eq!(paged.tree.get(&key(8), &guard).unwrap(), Some(&b"after the snapshot"[..]));
    assert_eq!(paged.tree.get(&key(10), &guard).unwrap(), Some(&b"after the capture"[..]));
    assert_eq!(paged.tree.get(&key(9), &guard).unwrap(), None);
    assert_eq!(paged.tree.stats().page_reads, reads, "blind writes are read without the log");
    assert_eq!(paged.tree.get(&key(7), &guard).unwrap(), Some(&b"dirty"[..]));
    drop(guard);
    paged.flush(true, false);
    paged.reopen();
    let guard = paged.tree.pin();
    for (k, v) in [
        (7, Some(&b"dirty"[..])),
        (8, Some(b"after the snapshot")),
        (9, None),
        (10, Some(b"after the capture")),
    ] {
        assert_eq!(paged.tree.get(&key(k), &guard).unwrap(), v, "key {k}");
    }
}
