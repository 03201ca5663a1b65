//! Model checking of the compare-and-swap protocols with loom: every interleaving (up to a
//! preemption bound) of delta installs, consolidations, splits and merges racing with writes and
//! reads. Run with `RUSTFLAGS="--cfg loom" cargo test -p helio-core --test loom --release`.
#![cfg(loom)]

use std::collections::BTreeMap;
use std::sync::Arc;

use helio_core::{Collector, Mvcc, Tree, TreeConfig};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.max_branches = 1_000_000;
    builder.check(f);
}

fn tree(config: TreeConfig) -> (Arc<Tree>, Collector) {
    let collector = Collector::new();
    let tree = Tree::with_parts(config, collector.clone(), Arc::new(Mvcc::new())).unwrap();
    (Arc::new(tree), collector)
}

fn contents(tree: &Tree, collector: &Collector) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let handle = collector.register();
    let guard = handle.pin();
    tree.check_invariants(&guard).unwrap();
    let snap = tree.snapshot();
    let forward: BTreeMap<_, _> =
        tree.range::<[u8], _>(&snap, .., &guard).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    let backward: BTreeMap<_, _> =
        tree.range::<[u8], _>(&snap, .., &guard).rev().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert_eq!(forward, backward);
    forward
}

fn put_all(tree: &Tree, collector: &Collector, keys: &[&[u8]], value: &[u8]) {
    let handle = collector.register();
    for key in keys {
        let guard = handle.pin();
        tree.put(key, value, &guard).unwrap();
    }
}

fn expect(pairs: &[(&[u8], &[u8])]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    pairs.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

/// Two writers append deltas to one page while each crossing of the chain threshold consolidates.
#[test]
fn delta_install_races_consolidation() {
    model(|| {
        let (tree, collector) = tree(TreeConfig::default().consolidate_chain(2));
        let t = {
            let (tree, collector) = (tree.clone(), collector.clone());
            thread::spawn(move || put_all(&tree, &collector, &[b"a", b"c"], b"1"))
        };
        put_all(&tree, &collector, &[b"b", b"a"], b"2");
        t.join().unwrap();
        let got = contents(&tree, &collector);
        let a = got.get(&b"a"[..]).cloned().unwrap();
        assert!(a == b"1" || a == b"2");
        assert_eq!(got.len(), 3);
        assert_eq!(got.get(&b"b"[..]).map(Vec::as_slice), Some(&b"2"[..]));
        assert_eq!(got.get(&b"c"[..]).map(Vec::as_slice), Some(&b"1"[..]));
    });
}

/// A write that splits a full page races a write and a read of keys that move to the new page.
#[test]
fn split_races_write_and_read() {
    model(|| {
        let (tree, collector) =
            tree(TreeConfig::default().consolidate_chain(1).split_items(4).merge_items(0));
        put_all(&tree, &collector, &[b"a", b"b", b"c", b"d"], b"0");
        let t = {
            let (tree, collector) = (tree.clone(), collector.clone());
            thread::spawn(move || put_all(&tree, &collector, &[b"e"], b"1"))
        };
        {
            let handle = collector.register();
            let guard = handle.pin();
            tree.put(b"d", b"2", &guard).unwrap();
            let c = tree.get(b"c", &guard).unwrap();
            assert_eq!(c, Some(&b"0"[..]));
        }
        t.join().unwrap();
        assert_eq!(
            contents(&tree, &collector),
            expect(&[(b"a", b"0"), (b"b", b"0"), (b"c", b"0"), (b"d", b"2"), (b"e", b"1")])
        );
        assert!(tree.stats().splits >= 1);
    });
}

/// Deletes that shrink a page until it merges into its left sibling race a write into that left
/// sibling (where the merge record must also land) and a read of a key of the page being merged.
#[test]
fn merge_races_write_into_merged_page() {
    model(|| {
        let config = TreeConfig::default().consolidate_chain(1).split_items(4).merge_items(1);
        let (tree, collector) = tree(config);
        put_all(&tree, &collector, &[b"a", b"b", b"c", b"d", b"e"], b"0");
        assert_eq!(tree.stats().pages, 2, "set-up must leave two pages");
        let t = {
            let (tree, collector) = (tree.clone(), collector.clone());
            thread::spawn(move || {
                let handle = collector.register();
                let guard = handle.pin();
                // Empties the right page: it freezes and merges left.
                for key in [&b"c"[..], b"d", b"e"] {
                    tree.delete(key, &guard).unwrap();
                }
            })
        };
        {
            let handle = collector.register();
            let guard = handle.pin();
            tree.put(b"bb", b"1", &guard).unwrap();
            let e = tree.get(b"e", &guard).unwrap();
            assert!(e.is_none() || e == Some(&b"0"[..]));
        }
        t.join().unwrap();
        assert_eq!(contents(&tree, &collector), expect(&[(b"a", b"0"), (b"b", b"0"), (b"bb", b"1")]));
        assert!(tree.stats().merges >= 1);
    });
}

/// A snapshot sealed while a write is in flight sees that write either always or never.
#[test]
fn snapshot_is_stable_against_in_flight_write() {
    model(|| {
        let (tree, collector) = tree(TreeConfig::default().consolidate_chain(1));
        put_all(&tree, &collector, &[b"k"], b"old");
        let t = {
            let (tree, collector) = (tree.clone(), collector.clone());
            thread::spawn(move || put_all(&tree, &collector, &[b"k"], b"new"))
        };
        let snap = tree.snapshot();
        let handle = collector.register();
        let first = tree.get_at(&snap, b"k", &handle.pin()).unwrap().map(<[u8]>::to_vec);
        t.join().unwrap();
        let second = tree.get_at(&snap, b"k", &handle.pin()).unwrap().map(<[u8]>::to_vec);
        assert_eq!(first, second);
        assert_eq!(tree.get(b"k", &handle.pin()).unwrap(), Some(&b"new"[..]));
    });
}

/// Two writers race to claim 24 bytes each of a 96-byte buffer while a third thread seals it
/// for group commit. Claims never overlap, exactly one party hands the buffer to I/O, and at that
/// moment every claimed byte has been copied and is visible to it.
#[test]
fn buffer_claims_race_a_group_commit_seal() {
    use helio_core::log::buffer::{BufferState, Reserve};
    use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

    const CLAIM: usize = 24;

    struct Shared {
        state: BufferState,
        bytes: Vec<AtomicU8>,
        flushes: AtomicUsize,
    }

    impl Shared {
        /// What the I/O thread would do: every claimed byte must be there.
        fn flush(&self, filled: u64) {
            // One byte per claim stands for its copy (the first and last are enough to catch
            // a hand-off that does not wait for the copy).
            for at in (0..filled as usize).step_by(CLAIM) {
                for i in [at, at + CLAIM - 1] {
                    assert_ne!(self.bytes[i].load(Ordering::Relaxed), 0, "byte {i} handed to I/O uncopied");
                }
            }
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }

        fn write(&self, mark: u8) {
            match self.state.reserve(CLAIM as u64) {
                Reserve::At(at) => {
                    for i in [at as usize, at as usize + CLAIM - 1] {
                        assert_eq!(
                            self.bytes[i].swap(mark, Ordering::Relaxed),
                            0,
                            "two writers claimed byte {i}"
                        );
                    }
                    if self.state.release() {
                        self.flush(self.state.filled());
                    }
                }
                Reserve::Sealed { filled, flush: true } => self.flush(filled),
                Reserve::Tail { .. } => unreachable!("claims of 24 bytes fill a 96-byte buffer exactly"),
                Reserve::Sealed { .. } | Reserve::Closed => {}
            }
        }
    }

    model(|| {
        let shared = Arc::new(Shared {
            state: BufferState::new(96),
            bytes: (0..96).map(|_| AtomicU8::new(0)).collect(),
            flushes: AtomicUsize::new(0),
        });
        let writers: Vec<_> = (1..=2u8)
            .map(|mark| {
                let shared = shared.clone();
                thread::spawn(move || shared.write(mark))
            })
            .collect();
        if let Some((filled, true)) = shared.state.seal() {
            shared.flush(filled);
        }
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(shared.flushes.load(Ordering::Relaxed), 1, "one hand-off per seal");
    });
}
