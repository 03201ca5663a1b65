//! Many threads on one tree, checked against models: disjoint writers with per-thread models,
//! contended writers on shared keys, and readers that hold snapshots while pages split, merge and
//! consolidate under them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use helio_core::{Tree, TreeConfig};

/// Thresholds small enough that every kind of structure change races with every other.
fn busy_config() -> TreeConfig {
    TreeConfig::default().consolidate_chain(4).read_consolidate_chain(3).split_items(16).merge_items(4)
}

/// A tiny deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key(owner: usize, k: u64) -> Vec<u8> {
    // Interleave owners through the key space so their keys share pages.
    format!("{k:05}-{owner}").into_bytes()
}

#[test]
fn disjoint_writers_and_snapshot_readers_match_models() {
    const WRITERS: usize = 4;
    const READERS: usize = 2;
    const OPS: usize = 100_000;
    let tree = Tree::new(busy_config()).unwrap();
    let stop = AtomicBool::new(false);
    let models: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = std::thread::scope(|s| {
        for r in 0..READERS {
            let (tree, stop) = (&tree, &stop);
            s.spawn(move || snapshot_reader(tree, stop, r));
        }
        let writers: Vec<_> = (0..WRITERS)
            .map(|owner| {
                let tree = &tree;
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ owner as u64);
                    let mut model = BTreeMap::new();
                    for i in 0..OPS {
                        let guard = tree.pin();
                        let k = key(owner, rng.next() % 600);
                        match rng.next() % 10 {
                            0..=5 => {
                                let v = format!("{owner}:{i}").into_bytes();
                                tree.put(&k, &v, &guard).unwrap();
                                model.insert(k, v);
                            }
                            6..=8 => {
                                tree.delete(&k, &guard).unwrap();
                                model.remove(&k);
                            }
                            _ => assert_eq!(tree.get(&k, &guard).unwrap(), model.get(&k).map(|v| &v[..])),
                        }
                    }
                    model
                })
            })
            .collect();
        let models = writers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        models
    });
    let expected: BTreeMap<_, _> = models.into_iter().flatten().collect();
    let guard = tree.pin();
    tree.check_invariants(&guard).unwrap();
    let snap = tree.snapshot();
    let actual: BTreeMap<_, _> =
        tree.range::<[u8], _>(&snap, .., &guard).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert_eq!(actual, expected);
    let stats = tree.stats();
    assert!(stats.splits > 0 && stats.merges > 0 && stats.consolidations > 0, "{stats:?}");
}

/// Takes snapshots and checks that what they show never changes while writers go on: two scans
/// (one of them backwards) and point reads of a snapshot agree.
fn snapshot_reader(tree: &Tree, stop: &AtomicBool, seed: usize) {
    let mut rng = Rng(0xDEAD_BEEF ^ seed as u64);
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) || rounds < 3 {
        rounds += 1;
        let snap = tree.snapshot();
        let guard = tree.pin();
        let first: Vec<(&[u8], &[u8])> = tree.range::<[u8], _>(&snap, .., &guard).collect();
        assert!(first.windows(2).all(|w| w[0].0 < w[1].0), "scan out of order");
        std::thread::yield_now();
        let mut second: Vec<(&[u8], &[u8])> = tree.range::<[u8], _>(&snap, .., &guard).rev().collect();
        second.reverse();
        assert_eq!(first, second, "a snapshot changed under concurrent writes");
        for _ in 0..20 {
            if first.is_empty() {
                break;
            }
            let (k, v) = first[(rng.next() % first.len() as u64) as usize];
            assert_eq!(tree.get_at(&snap, k, &guard).unwrap(), Some(v));
        }
        // A bounded range from both ends at once meets in the middle without overlap.
        if first.len() > 4 {
            let (lo, hi) = (first[1].0, first[first.len() - 2].0);
            let mut iter = tree.range(&snap, lo..hi, &guard);
            let mut seen = Vec::new();
            loop {
                let item = if rng.next() % 2 == 0 { iter.next() } else { iter.next_back() };
                match item {
                    Some(item) => seen.push(item),
                    None => break,
                }
            }
            seen.sort();
            assert_eq!(seen, first[1..first.len() - 2]);
        }
    }
}

#[test]
fn contended_writers_leave_one_of_the_last_writes() {
    const WRITERS: usize = 4;
    const KEYS: u64 = 64;
    let tree = Tree::new(busy_config()).unwrap();
    // Each writer writes increasing counters; at the end every key must hold the last value that
    // some writer wrote to it.
    let last: Vec<BTreeMap<u64, Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let tree = &tree;
                s.spawn(move || {
                    let mut rng = Rng(7 + w as u64);
                    let mut last = BTreeMap::new();
                    for i in 0..50_000 {
                        let guard = tree.pin();
                        let k = rng.next() % KEYS;
                        let v = format!("{w}:{i}").into_bytes();
                        tree.put(&k.to_be_bytes(), &v, &guard).unwrap();
                        // Our own write, or a later one by someone else: never an older one of ours.
                        let seen = tree.get(&k.to_be_bytes(), &guard).unwrap().unwrap();
                        let seen = std::str::from_utf8(seen).unwrap();
                        let (who, n) = seen.split_once(':').unwrap();
                        if who == w.to_string() {
                            assert_eq!(n.parse::<usize>().unwrap(), i, "read an older write of our own");
                        }
                        last.insert(k, v);
                    }
                    last
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let guard = tree.pin();
    tree.check_invariants(&guard).unwrap();
    for k in 0..KEYS {
        let value = tree.get(&k.to_be_bytes(), &guard).unwrap().map(<[u8]>::to_vec);
        assert!(
            last.iter().any(|l| l.get(&k) == value.as_ref()),
            "key {k} holds {value:?}, nobody's last write"
        );
    }
}

#[test]
fn shared_sequence_across_trees_gives_consistent_snapshots() {
    // Two trees (shards) on one sequence: a snapshot sees a write pair in both or in neither.
    let mvcc = std::sync::Arc::new(helio_core::Mvcc::new());
    let collector = helio_core::Collector::new();
    let shards: Vec<Tree> =
        (0..2).map(|_| Tree::with_parts(busy_config(), collector.clone(), mvcc.clone()).unwrap()).collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (shards, stop, collector) = (&shards, &stop, &collector);
        s.spawn(move || {
            let handle = collector.register();
            for i in 0u64..20_000 {
                let guard = handle.pin();
                let v = i.to_be_bytes();
                // The second shard is written first, so any snapshot that sees the first shard's
                // value i sees the second's at i or later.
                shards[1].put(&(i % 50).to_be_bytes(), &v, &guard).unwrap();
                shards[0].put(&(i % 50).to_be_bytes(), &v, &guard).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        s.spawn(move || {
            let handle = collector.register();
            while !stop.load(Ordering::Relaxed) {
                let snap = mvcc.snapshot();
                let guard = handle.pin();
                for k in 0u64..50 {
                    let a = shards[0].get_at(&snap, &k.to_be_bytes(), &guard).unwrap();
                    let b = shards[1].get_at(&snap, &k.to_be_bytes(), &guard).unwrap();
                    let n = |v: Option<&[u8]>| v.map(|v| u64::from_be_bytes(v.try_into().unwrap()));
                    assert!(n(b) >= n(a), "shard 0 ahead of shard 1 in one snapshot: {a:?} {b:?}");
                }
            }
        });
    });
}

#[derive(Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

fn apply(state: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: &Op) {
    match op {
        Op::Put(k, v) => {
            state.insert(k.clone(), v.clone());
        }
        Op::Delete(k) => {
            state.remove(k);
        }
    }
}

/// Writers run fixed scripts (filling, then draining, so pages split and merge) while a thread
/// compacts in a loop and readers take snapshots. Each snapshot must show, for every writer, the
/// state after some prefix of its script that lies between what the writer had finished before
/// the snapshot and what it had started after: snapshots are consistent cuts. Scans forward,
/// backward, and mixed from both ends of a random sub-range must agree, and so must point reads.
#[test]
fn snapshots_are_consistent_cuts_under_splits_merges_and_compaction() {
    const WRITERS: usize = 3;
    const OPS: usize = 20_000;
    const KEYS: u64 = 120;
    let config = TreeConfig::default()
        .consolidate_chain(2)
        .read_consolidate_chain(2)
        .split_items(8)
        .merge_items(2)
        .page_bytes_max(256);
    let tree = Tree::new(config).unwrap();
    let scripts: Vec<Vec<Op>> = (0..WRITERS)
        .map(|w| {
            let mut rng = Rng(0x1234_5678 ^ ((w as u64 + 1) * 0x9E37_79B9));
            (0..OPS)
                .map(|i| {
                    let k = format!("{:04}-{w}", rng.next() % KEYS).into_bytes();
                    let filling = (i / 2000) % 2 == 0;
                    let roll = rng.next() % 10;
                    if (filling && roll < 7) || (!filling && roll < 2) {
                        Op::Put(k, format!("{w}:{i}").into_bytes())
                    } else {
                        Op::Delete(k)
                    }
                })
                .collect()
        })
        .collect();
    let done: Vec<AtomicUsize> = (0..WRITERS).map(|_| AtomicUsize::new(0)).collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (tree, done, script) = (&tree, &done, &scripts[w]);
                s.spawn(move || {
                    for (i, op) in script.iter().enumerate() {
                        let guard = tree.pin();
                        match op {
                            Op::Put(k, v) => tree.put(k, v, &guard).unwrap(),
                            Op::Delete(k) => tree.delete(k, &guard).unwrap(),
                        }
                        done[w].store(i + 1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let (tree_ref, stop_ref) = (&tree, &stop);
        s.spawn(move || {
            while !stop_ref.load(Ordering::Relaxed) {
                tree_ref.compact(&tree_ref.pin());
                std::thread::yield_now();
            }
        });
        for r in 0..2u64 {
            let (tree, stop, done, scripts) = (&tree, &stop, &done, &scripts);
            s.spawn(move || {
                let mut rng = Rng(0xABCDEF ^ (r + 7));
                while !stop.load(Ordering::Relaxed) {
                    let before: Vec<usize> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
                    let snap = tree.snapshot();
                    let after: Vec<usize> = done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
                    let guard = tree.pin();
                    let own = |(k, v): (&[u8], &[u8])| (k.to_vec(), v.to_vec());
                    let all: Vec<(Vec<u8>, Vec<u8>)> =
                        tree.range::<[u8], _>(&snap, .., &guard).map(own).collect();
                    for (w, script) in scripts.iter().enumerate() {
                        let suffix = format!("-{w}").into_bytes();
                        let seen: BTreeMap<_, _> =
                            all.iter().filter(|(k, _)| k.ends_with(&suffix)).cloned().collect();
                        let mut state = BTreeMap::new();
                        script[..before[w]].iter().for_each(|op| apply(&mut state, op));
                        let mut prefix = before[w];
                        while state != seen && prefix < (after[w] + 1).min(script.len()) {
                            apply(&mut state, &script[prefix]);
                            prefix += 1;
                        }
                        assert_eq!(state, seen, "snapshot {} is no prefix state of writer {w}", snap.sn());
                    }
                    let mut backward: Vec<_> =
                        tree.range::<[u8], _>(&snap, .., &guard).rev().map(own).collect();
                    backward.reverse();
                    assert_eq!(all, backward, "a backward scan differs");
                    if all.len() > 4 {
                        let a = (rng.next() % all.len() as u64) as usize;
                        let b = (rng.next() % all.len() as u64) as usize;
                        let (a, b) = (a.min(b), a.max(b));
                        let mut iter = tree.range(&snap, all[a].0.clone()..=all[b].0.clone(), &guard);
                        let (mut front, mut back) = (Vec::new(), Vec::new());
                        loop {
                            let item = if rng.next() % 2 == 0 {
                                iter.next().map(|x| front.push(own(x)))
                            } else {
                                iter.next_back().map(|x| back.push(own(x)))
                            };
                            if item.is_none() {
                                break;
                            }
                        }
                        back.reverse();
                        front.extend(back);
                        assert_eq!(front, all[a..=b], "mixed iteration from both ends");
                    }
                    for _ in 0..10 {
                        if let Some((k, v)) = all.get((rng.next() % all.len().max(1) as u64) as usize) {
                            assert_eq!(tree.get_at(&snap, k, &guard).unwrap(), Some(&v[..]));
                        }
                    }
                }
            });
        }
        for writer in writers {
            writer.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let guard = tree.pin();
    tree.check_invariants(&guard).unwrap();
    let mut expected = BTreeMap::new();
    scripts.iter().flatten().for_each(|op| apply(&mut expected, op));
    let snap = tree.snapshot();
    let actual: BTreeMap<_, _> =
        tree.range::<[u8], _>(&snap, .., &guard).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    assert_eq!(actual, expected);
    let stats = tree.stats();
    assert!(stats.splits > 0 && stats.merges > 0, "{stats:?}");
}
