//! The writer against a model of the buffers and a driver that completes I/O in random order,
//! checking after every step the guarantee recovery rests on: the durable address only covers
//! fills whose write completed before a flush of their segment was issued (or that flush was
//! linked behind the write), and that flush completed successfully.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::*;

const BLOCK: usize = 4096;
const SEGMENT: u64 = 64 * BLOCK as u64;

/// The writers' side, as a model: fills of given sizes, handed off on demand.
#[derive(Default)]
struct Mem {
    handoffs: RefCell<Vec<Fill>>,
    wanted: Cell<u64>,
    buffered: Cell<bool>,
    claimed: Cell<u64>,
    /// The next fill a group commit would seal (base, filled), if any bytes are claimed.
    open_fill: RefCell<Option<Fill>>,
    durable_wait: Cell<bool>,
    bytes: RefCell<BTreeMap<usize, Vec<u8>>>,
    written: Cell<u64>,
    durable: Cell<u64>,
    poisoned: RefCell<Option<Failure>>,
    group_commits: Cell<u64>,
}

impl Buffers for Mem {
    fn take_handoffs(&self, into: &mut Vec<Fill>) {
        into.append(&mut self.handoffs.borrow_mut());
    }
    fn sync_wanted(&self) -> u64 {
        self.wanted.get()
    }
    fn want_durable(&self, lsn: u64) {
        self.wanted.set(self.wanted.get().max(lsn));
    }
    fn buffered_pending(&self) -> bool {
        self.buffered.get()
    }
    fn clear_buffered(&self) {
        self.buffered.set(false);
    }
    fn claimed_end(&self) -> u64 {
        self.claimed.get()
    }
    fn seal_for_commit(&self) -> bool {
        match self.open_fill.borrow_mut().take() {
            Some(fill) => {
                self.handoffs.borrow_mut().push(fill);
                true
            }
            None => false,
        }
    }
    fn take_durable_wait(&self) -> bool {
        self.durable_wait.replace(false)
    }
    fn with_bytes(&self, slot: usize, len: usize, f: &mut dyn FnMut(&mut [u8])) {
        let mut bytes = self.bytes.borrow_mut();
        let buf = bytes.entry(slot).or_default();
        buf.resize(len.max(buf.len()), 0);
        f(&mut buf[..len]);
    }
    fn fills_written(&self, n: u64) {
        self.written.set(self.written.get() + n);
    }
    fn durable(&self, lsn: u64) {
        assert!(lsn >= self.durable.get(), "durable moved back");
        assert!(self.poisoned.borrow().is_none(), "durable moved after a failure");
        self.durable.set(lsn);
    }
    fn poison(&self, failure: Failure) {
        self.poisoned.borrow_mut().get_or_insert(failure);
    }
    fn count(&self, what: Count) {
        if what == Count::GroupCommit {
            self.group_commits.set(self.group_commits.get() + 1);
        }
    }
}

fn config() -> WriterConfig {
    WriterConfig {
        block: BLOCK,
        segment_bytes: SEGMENT,
        flush_interval_nanos: 10,
        max_in_flight: 3,
        faults: Faults::default(),
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One write the driver holds: when it completed, in driver steps.
struct Written {
    end: u64,
    segment: u64,
    done_at: Option<u64>,
}

/// One random run: fills of random sizes (never crossing a segment end, any 8-byte end)
/// handed off in random order, completions delivered in random order, random failures.
fn run(seed: u64) {
    let mut rng = Rng(seed | 1);
    let mem = Mem::default();
    let mut writer = Writer::new(config(), 0, Vec::new());
    let mut fills: Vec<Fill> = Vec::new();
    let mut held: Vec<Fill> = Vec::new();
    let mut writes: BTreeMap<u64, Written> = BTreeMap::new();
    // Flushes in flight: (segment, issued at, covers writes done by then or linked seq).
    let mut flushes: Vec<(u64, u64, Option<u64>)> = Vec::new();
    // Segment -> latest step at which a successful flush issued then completed covered it.
    let mut synced_upto: BTreeMap<u64, Vec<(u64, Option<u64>)>> = BTreeMap::new();
    let mut pending_writes: Vec<(u64, usize)> = Vec::new();
    let mut base = 0u64;
    let fail_at = rng.below(8);
    for step in 0..400u64 {
        match rng.below(6) {
            0 | 1 if fills.len() < 60 => {
                let room = SEGMENT - base % SEGMENT;
                let filled = (8 * (1 + rng.below(2 * BLOCK as u64 / 8))).min(room);
                let fill = Fill { seq: fills.len() as u64, slot: fills.len() % 4, base, filled };
                base += filled;
                fills.push(fill);
                mem.claimed.set(base);
                held.push(fill);
            }
            2 if !held.is_empty() => {
                let fill = held.swap_remove(rng.below(held.len() as u64) as usize);
                mem.handoffs.borrow_mut().push(fill);
            }
            3 => {
                mem.wanted.set(mem.wanted.get().max(rng.below(base + 1)));
                mem.durable_wait.set(rng.below(2) == 0);
            }
            4 => mem.buffered.set(true),
            _ => {}
        }
        while let Some(io) = writer.poll(step, &mem) {
            match io {
                Io::Open { segment } => writer.opened(segment, 0),
                Io::ZeroFill { segment, .. } => writer.zeroed(segment, &mem),
                Io::Write { seq, segment, len, linked, .. } => {
                    assert_eq!(len % BLOCK, 0);
                    let fill = fills[seq as usize];
                    writes.insert(seq, Written { end: fill.base + fill.filled, segment, done_at: None });
                    pending_writes.push((seq, len));
                    if linked {
                        match writer.poll(step, &mem) {
                            Some(Io::Flush { segment: s }) => {
                                assert_eq!(s, segment);
                                flushes.push((s, step, Some(seq)));
                            }
                            other => panic!("a linked write must be followed by its flush: {other:?}"),
                        }
                    }
                }
                Io::Flush { segment } => flushes.push((segment, step, None)),
                Io::Close { .. } => {}
            }
        }
        // Deliver some completions, in random order.
        if !pending_writes.is_empty() && rng.below(2) == 0 {
            let (seq, len) = pending_writes.swap_remove(rng.below(pending_writes.len() as u64) as usize);
            let fail = fail_at == 0 && rng.below(20) == 0;
            let result = if fail { Err(5) } else { Ok(len) };
            // A linked flush runs only after its write.
            writes.get_mut(&seq).unwrap().done_at = Some(step);
            writer.written(seq, result, &mem);
        }
        if !flushes.is_empty() && rng.below(2) == 0 {
            let i = rng.below(flushes.len() as u64) as usize;
            let (segment, issued, linked) = flushes[i];
            let linked_pending = linked.is_some_and(|seq| writes[&seq].done_at.is_none());
            if !linked_pending {
                flushes.swap_remove(i);
                let fail = fail_at == 1 && rng.below(10) == 0;
                if !fail {
                    synced_upto.entry(segment).or_default().push((issued, linked));
                }
                writer.flushed(segment, if fail { Err(5) } else { Ok(()) }, &mem);
            }
        }
        check(&mem, &fills, &writes, &synced_upto);
    }
}

/// Every fill below the durable address was written, and a successful flush of its segment was
/// issued after its write completed (or linked behind it).
fn check(
    mem: &Mem,
    fills: &[Fill],
    writes: &BTreeMap<u64, Written>,
    synced: &BTreeMap<u64, Vec<(u64, Option<u64>)>>,
) {
    let durable = mem.durable.get();
    assert!(
        durable == 0 || fills.iter().any(|f| f.base + f.filled == durable),
        "durable {durable} is not the end of a fill"
    );
    for fill in fills.iter().filter(|f| f.base + f.filled <= durable && f.filled > 0) {
        let w = writes.get(&fill.seq).unwrap_or_else(|| panic!("fill {} durable, never written", fill.seq));
        let done = w.done_at.unwrap_or_else(|| panic!("fill {} durable, write not completed", fill.seq));
        let covered = synced.get(&w.segment).is_some_and(|flushes| {
            flushes.iter().any(|&(issued, linked)| linked == Some(fill.seq) || issued >= done)
        });
        assert!(covered, "fill {} (end {}) durable without a flush after its write", fill.seq, w.end);
    }
}

#[test]
fn the_durable_address_covers_only_written_and_flushed_fills() {
    for seed in 1..300u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
}

#[test]
fn a_fill_in_a_partial_block_gets_the_carried_bytes_in_front_and_waits_for_the_write_before() {
    let mem = Mem::default();
    let mut writer = Writer::new(config(), 100 * 8, vec![7; 800]);
    // The first fill continues the partial block the log resumed in.
    mem.handoffs.borrow_mut().push(Fill { seq: 0, slot: 0, base: 800, filled: 200 });
    assert_eq!(writer.poll(0, &mem), Some(Io::Open { segment: 0 }));
    writer.opened(0, 4096);
    let Some(Io::Write { seq: 0, offset: 0, len: 4096, .. }) = writer.poll(0, &mem) else { panic!() };
    {
        let bytes = mem.bytes.borrow();
        assert!(bytes[&0][..800].iter().all(|&b| b == 7), "the carried block goes in front");
        assert!(bytes[&0][1000..4096].iter().all(|&b| b == 0), "zeros after the fill");
    }
    // The next fill starts in the same block: it waits until the first write completes.
    mem.handoffs.borrow_mut().push(Fill { seq: 1, slot: 1, base: 1000, filled: 16 });
    assert_eq!(writer.poll(1, &mem), None);
    writer.written(0, Ok(4096), &mem);
    let Some(Io::Write { seq: 1, offset: 0, len: 4096, .. }) = writer.poll(2, &mem) else { panic!() };
    assert!(mem.bytes.borrow()[&1][..800].iter().all(|&b| b == 7), "the carry is carried on");
}

#[test]
fn a_sync_request_seals_the_open_fill_and_links_its_flush() {
    let mem = Mem::default();
    let mut writer = Writer::new(config(), 0, Vec::new());
    mem.claimed.set(64);
    *mem.open_fill.borrow_mut() = Some(Fill { seq: 0, slot: 0, base: 0, filled: 64 });
    mem.wanted.set(64);
    assert_eq!(writer.poll(0, &mem), Some(Io::Open { segment: 0 }));
    writer.opened(0, 0);
    assert!(matches!(writer.poll(0, &mem), Some(Io::Write { seq: 0, linked: true, .. })));
    assert_eq!(writer.poll(0, &mem), Some(Io::Flush { segment: 0 }));
    assert_eq!(mem.group_commits.get(), 1);
    writer.written(0, Ok(4096), &mem);
    assert_eq!(mem.durable.get(), 0, "durable only once the flush completes");
    writer.flushed(0, Ok(()), &mem);
    assert_eq!(mem.durable.get(), 64);
}

#[test]
fn a_failed_flush_or_write_poisons_and_nothing_becomes_durable_after() {
    for fail_write in [true, false] {
        let mem = Mem::default();
        let mut writer = Writer::new(config(), 0, Vec::new());
        mem.handoffs.borrow_mut().push(Fill { seq: 0, slot: 0, base: 0, filled: 4096 });
        mem.claimed.set(4096);
        mem.wanted.set(4096);
        assert_eq!(writer.poll(0, &mem), Some(Io::Open { segment: 0 }));
        writer.opened(0, 0);
        assert!(matches!(writer.poll(0, &mem), Some(Io::Write { seq: 0, linked: false, .. })));
        writer.written(0, if fail_write { Err(5) } else { Ok(4096) }, &mem);
        if !fail_write {
            assert_eq!(writer.poll(0, &mem), Some(Io::Flush { segment: 0 }));
            writer.flushed(0, Err(5), &mem);
        }
        assert!(writer.is_poisoned());
        assert_eq!(mem.durable.get(), 0);
        assert_eq!(mem.poisoned.borrow().unwrap().step, if fail_write { Step::Write } else { Step::Flush });
        mem.handoffs.borrow_mut().push(Fill { seq: 1, slot: 1, base: 4096, filled: 8 });
        assert_eq!(writer.poll(1, &mem), None, "a poisoned writer writes nothing");
    }
}

#[test]
fn buffered_writes_are_flushed_after_the_interval_and_zero_fill_follows_durable_waits() {
    let mem = Mem::default();
    let mut writer = Writer::new(config(), 0, Vec::new());
    mem.handoffs.borrow_mut().push(Fill { seq: 0, slot: 0, base: 0, filled: 4096 });
    mem.claimed.set(4096);
    mem.buffered.set(true);
    assert_eq!(writer.poll(0, &mem), Some(Io::Open { segment: 0 }));
    writer.opened(0, 0);
    // No durable wait yet: no zero-fill.
    assert!(matches!(writer.poll(0, &mem), Some(Io::Write { .. })));
    writer.written(0, Ok(4096), &mem);
    assert_eq!(writer.deadline(&mem), Some(10));
    assert_eq!(writer.poll(5, &mem), None, "the interval is not over");
    assert_eq!(writer.poll(10, &mem), Some(Io::Flush { segment: 0 }));
    writer.flushed(0, Ok(()), &mem);
    assert_eq!(mem.durable.get(), 4096);
    // A durable wait: the next write zero-fills ahead first.
    mem.durable_wait.set(true);
    mem.handoffs.borrow_mut().push(Fill { seq: 1, slot: 1, base: 4096, filled: 4096 });
    assert_eq!(writer.poll(20, &mem), Some(Io::ZeroFill { segment: 0, from: 4096, to: SEGMENT }));
    writer.zeroed(0, &mem);
    assert!(matches!(writer.poll(20, &mem), Some(Io::Write { seq: 1, .. })));
}
