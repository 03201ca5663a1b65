//! `WriteBatch` on a `Store` of several shards: snapshots, ranges and scans taken while many
//! threads write batches never see part of one; within a batch a later operation on a key wins;
//! a batch larger than a write buffer works and survives a reopen; bad batches are refused
//! whole with a typed error and write nothing; `iter` needs no type annotations. (Atomicity
//! after crashes: `crash_store.rs` and the power-loss simulation in `sim.rs`.)

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use helio::{Config, Durability, Error, Store, WriteBatch};

fn config(dir: &Path) -> Config {
    Config::new(dir)
        .shards(4)
        .segment_bytes(1 << 20)
        .write_buffer_bytes(64 << 10)
        .split_items(16)
        .merge_items(4)
        .delta_chain(8)
        .pin_threads(false)
}

/// Group `g`'s keys: spread over every shard by the hash.
fn group_keys(g: u64) -> Vec<Vec<u8>> {
    (0..GROUP_KEYS).map(|i| format!("g{g:02}/{i:02}").into_bytes()).collect()
}

const GROUPS: u64 = 3;
const GROUP_KEYS: u64 = 12;

/// Every key of one group in a view: all present with one value, or all absent.
fn check_group(g: u64, seen: &[Option<Vec<u8>>], how: &str) -> Option<u64> {
    let first = seen[0].clone();
    assert!(seen.iter().all(|v| *v == first), "group {g} through {how}: part of a batch: {seen:?}");
    first.map(|v| u64::from_be_bytes(v[..8].try_into().unwrap()))
}

/// Writers set a group's keys all to one value, or delete them all, in one batch each time
/// (alternately `None`, `Buffered` and `Sync`); readers check every group through snapshot
/// gets, the snapshot's range (both directions) and scan, and the store's own range: each must
/// see every group whole. The store ends holding each group's last batch.
#[test]
fn snapshots_ranges_and_scans_never_see_part_of_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let done = AtomicBool::new(false);
    let views = AtomicU64::new(0);
    let last: Vec<AtomicU64> = (0..GROUPS).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..GROUPS)
            .map(|g| {
                let (store, last) = (&store, &last);
                s.spawn(move || {
                    let keys = group_keys(g);
                    let mut batch = WriteBatch::new();
                    for n in 1..=3000u64 {
                        batch.clear();
                        // A delete of the whole group now and then; a stray earlier write of
                        // each key, which the later operation must override.
                        for key in &keys {
                            batch.put(key, b"overridden");
                        }
                        let value = [n.to_be_bytes().as_slice(), &[g as u8; 40]].concat();
                        for key in &keys {
                            if n % 7 == 0 {
                                batch.delete(key);
                            } else {
                                batch.put(key, &value);
                            }
                        }
                        let durability =
                            [Durability::None, Durability::Buffered, Durability::Sync][n as usize % 3];
                        store.write_with(&batch, durability).unwrap();
                        last[g as usize].store(if n % 7 == 0 { 0 } else { n }, Ordering::Release);
                    }
                })
            })
            .collect();
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    let snapshot = store.snapshot();
                    let mut by_get = Vec::new();
                    for g in 0..GROUPS {
                        let seen: Vec<_> = group_keys(g).iter().map(|k| snapshot.get(k).unwrap()).collect();
                        by_get.push(check_group(g, &seen, "snapshot gets"));
                    }
                    // The same snapshot's range, both ways, and scan agree with its gets.
                    let forward: BTreeMap<Vec<u8>, Vec<u8>> =
                        snapshot.iter().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
                    let backward: Vec<Vec<u8>> =
                        snapshot.iter().rev().map(|e| e.unwrap().0.to_vec()).collect();
                    assert!(backward.iter().rev().eq(forward.keys()), "a reversed range differs");
                    let mut scanned = BTreeMap::new();
                    snapshot
                        .scan(b"".as_slice().., |k, v| {
                            scanned.insert(k.to_vec(), v.to_vec());
                            ControlFlow::Continue(())
                        })
                        .unwrap();
                    assert_eq!(scanned, forward, "a scan differs from the range of one snapshot");
                    for g in 0..GROUPS {
                        let seen: Vec<_> = group_keys(g).iter().map(|k| forward.get(k).cloned()).collect();
                        assert_eq!(check_group(g, &seen, "a snapshot's range"), by_get[g as usize]);
                    }
                    // A range of the store is a snapshot of its own.
                    let now: BTreeMap<Vec<u8>, Vec<u8>> =
                        store.iter().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
                    for g in 0..GROUPS {
                        let seen: Vec<_> = group_keys(g).iter().map(|k| now.get(k).cloned()).collect();
                        check_group(g, &seen, "the store's range");
                    }
                    views.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    assert!(views.load(Ordering::Relaxed) > 10, "the readers took too few views");
    let check_final = |store: &Store| {
        for g in 0..GROUPS {
            let want = last[g as usize].load(Ordering::Acquire);
            let seen: Vec<_> = group_keys(g).iter().map(|k| store.get(k).unwrap()).collect();
            let found = check_group(g, &seen, "gets after the writers");
            assert_eq!(found.unwrap_or(0), want, "group {g}");
        }
    };
    check_final(&store);
    store.close().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    check_final(&store);
}

/// Within a batch a later operation on a key wins, in memory and after a reopen; an empty
/// batch is a no-op.
#[test]
fn a_later_operation_on_a_key_wins_within_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    store.put(b"gone", b"before").unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b"k", b"1").delete(b"k").put(b"k", b"2");
    batch.put(b"gone", b"again").delete(b"gone");
    batch.delete(b"back").put(b"back", b"here");
    assert_eq!(batch.len(), 7);
    store.write_with(&batch, Durability::Sync).unwrap();
    store.write(&WriteBatch::new()).unwrap();
    let want = [(&b"back"[..], &b"here"[..]), (b"k", b"2")];
    let check = |store: &Store| {
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            store.iter().map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = want.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(got, want);
    };
    check(&store);
    store.close().unwrap();
    check(&Store::open(config(dir.path())).unwrap());
}

/// A batch of 4 MiB (64 write buffers' worth) over every shard works, and comes back whole.
#[test]
fn a_batch_larger_than_a_write_buffer_works_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..512u32 {
        batch.put(&i.to_be_bytes(), &vec![i as u8; 8 << 10]);
    }
    assert!(batch.bytes() > 64 * (64 << 10));
    store.write_with(&batch, Durability::Sync).unwrap();
    drop(store); // no close: the Sync batch is recoverable as it is
    let store = Store::open(config(dir.path())).unwrap();
    assert_eq!(store.iter().count(), 512);
    for i in 0..512u32 {
        assert_eq!(store.get(&i.to_be_bytes()).unwrap(), Some(vec![i as u8; 8 << 10]), "key {i}");
    }
}

/// An oversized batch, and a batch with one key or value over the store's limits, are refused
/// with their typed errors; nothing of them is written, in memory or on disk.
#[test]
fn bad_batches_are_refused_whole_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()).key_bytes_max(64).value_bytes_max(1 << 20)).unwrap();
    store.put(b"kept", b"as it was").unwrap();
    let good = |batch: &mut WriteBatch| {
        batch.put(b"a", b"1").put(b"kept", b"changed").delete(b"kept2");
    };
    let mut batch = WriteBatch::new();
    good(&mut batch);
    batch.put(&[b'k'; 65], b"key too long");
    assert!(matches!(store.write(&batch), Err(Error::KeyTooLarge { len: 65, max: 64 })));
    let mut batch = WriteBatch::new();
    good(&mut batch);
    batch.put(b"big", &vec![0; (1 << 20) + 1]);
    assert!(matches!(store.write(&batch), Err(Error::ValueTooLarge { .. })));
    // Over the byte limit: 65 values of 1 MiB.
    let mut batch = WriteBatch::new();
    good(&mut batch);
    for i in 0..65u32 {
        batch.put(&i.to_be_bytes(), &vec![1; 1 << 20]);
    }
    let refused = store.write(&batch).unwrap_err();
    assert!(matches!(refused, Error::BatchTooLarge { ops: 68, .. }), "{refused:?}");
    assert!(refused.to_string().contains("nothing was written"), "{refused}");
    // Over the operation limit.
    let mut batch = WriteBatch::new();
    good(&mut batch);
    for i in 0..WriteBatch::MAX_OPS as u32 {
        batch.delete(&i.to_be_bytes());
    }
    assert!(matches!(store.write(&batch), Err(Error::BatchTooLarge { .. })));
    let check = |store: &Store| {
        let all: Vec<_> = store.iter().map(|e| e.unwrap().0.to_vec()).collect();
        assert_eq!(all, vec![b"kept".to_vec()]);
        assert_eq!(store.get(b"kept").unwrap().as_deref(), Some(&b"as it was"[..]));
    };
    check(&store);
    store.close().unwrap();
    check(&Store::open(config(dir.path())).unwrap());
}

/// `iter` is the whole store, forwards and backwards, on the store and on a snapshot, with no
/// type annotations; `range` keeps its forms.
#[test]
fn iter_is_the_whole_store_without_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    for i in 0..100u32 {
        store.put(&i.to_be_bytes(), b"v").unwrap();
    }
    fn keys(it: impl Iterator<Item = Result<helio::Entry, Error>>) -> Vec<Vec<u8>> {
        it.map(|e| e.unwrap().0.to_vec()).collect()
    }
    let all = keys(store.iter());
    assert_eq!(all.len(), 100);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(all, keys(store.range::<[u8], _>(..)));
    assert_eq!(keys(store.iter().rev()), all.iter().rev().cloned().collect::<Vec<_>>());
    let snapshot = store.snapshot();
    store.put(b"later", b"not in the snapshot").unwrap();
    assert_eq!(keys(snapshot.iter()), all);
    assert_eq!(keys(store.range(b"".as_slice()..)).len(), 101);
}
