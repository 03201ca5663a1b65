//! The `Store` API against models: several threads of random puts, deletes, gets, ranges in
//! both directions, scans and snapshots, then close, reopen and compare; SIGKILL instead of close for
//! `Sync` writes; and every kind of bad input giving its typed error and changing nothing.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use helio::store::STORE_FORMAT;
use helio::{Config, Durability, Error, Store};

mod common;
use common::{kill_child_after, Rng};

const THREADS: u64 = 4;

fn config(dir: &Path) -> Config {
    Config::new(dir)
        .shards(3)
        .segment_bytes(1 << 20)
        .write_buffer_bytes(64 << 10)
        .split_items(16)
        .merge_items(4)
        .delta_chain(8)
        .clean_ratio(0.5)
}

/// Thread `t`'s keys: its own prefix, so each thread's model is exact.
fn key(t: u64, k: u64) -> Vec<u8> {
    format!("t{t}-{k:04}").into_bytes()
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn collect(range: impl Iterator<Item = Result<helio::Entry, Error>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    range.map(Result::unwrap).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

/// How much each thread writes: keys it picks from, and the longest value.
#[derive(Clone, Copy)]
struct Shape {
    keys: u64,
    value_max: u64,
}

/// Small values on few keys: everything fits in memory.
const SMALL: Shape = Shape { keys: 300, value_max: 200 };

/// One thread's random work on its own keys, checked as it goes; returns its model.
fn work(store: &Store, t: u64, seed: u64, mut model: Model, shape: Shape) -> Model {
    let mut rng = Rng(seed);
    for _ in 0..2500 {
        let k = key(t, rng.next() % shape.keys);
        match rng.next() % 20 {
            0..=8 => {
                let value = vec![rng.next() as u8; (rng.next() % shape.value_max) as usize];
                let durability =
                    [Durability::None, Durability::Buffered, Durability::Sync][(rng.next() % 3) as usize];
                store.put_with(&k, &value, durability).unwrap();
                model.insert(k, value);
            }
            9..=11 => {
                store.delete(&k).unwrap();
                model.remove(&k);
            }
            12..=15 => assert_eq!(store.get(&k).unwrap().as_ref(), model.get(&k)),
            16 | 17 => {
                let (a, b) = (key(t, rng.next() % shape.keys), key(t, rng.next() % shape.keys));
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let want: Vec<_> =
                    model.range(lo.clone()..hi.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(collect(store.range(lo.clone()..hi.clone())), want);
                let mut back = collect(store.range(lo.clone()..hi.clone()).rev());
                back.reverse();
                assert_eq!(back, want);
                let limit = 1 + (rng.next() % 40) as usize;
                assert_eq!(
                    scan_up_to(|visit| store.scan(lo..hi, visit), limit),
                    want[..limit.min(want.len())]
                );
            }
            _ => {
                let snap = store.snapshot();
                let frozen = model.clone();
                // Writes after the snapshot are invisible to it.
                let k2 = key(t, rng.next() % shape.keys);
                store.put(&k2, b"after").unwrap();
                model.insert(k2, b"after".to_vec());
                let prefix = key(t, 0)[..3].to_vec();
                let mine: Vec<_> = collect(snap.range(prefix.clone()..))
                    .into_iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .collect();
                let want: Vec<_> = frozen.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(mine, want);
                let scanned: Vec<_> = scan_up_to(|visit| snap.scan(prefix.clone().., visit), usize::MAX)
                    .into_iter()
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .collect();
                assert_eq!(scanned, want);
                assert_eq!(snap.get(&key(t, 7)).unwrap().as_ref(), frozen.get(&key(t, 7)));
            }
        }
    }
    model
}

/// What a [`Store::scan`] (or `Snapshot::scan`) passed to `scan` visits, stopping it after
/// `limit` entries; checks the count it returns.
fn scan_up_to(
    scan: impl FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> ControlFlow<()>) -> Result<usize, Error>,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut seen = Vec::new();
    let visited = scan(&mut |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        if seen.len() == limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(visited, seen.len(), "the count a scan returns");
    seen
}

/// The whole store, read by a range and by a scan, which must agree.
fn everything(store: &Store) -> Model {
    let ranged = collect(store.range::<[u8], _>(..));
    assert_eq!(
        scan_up_to(|visit| store.scan::<[u8], _>(.., visit), usize::MAX),
        ranged,
        "scan against range"
    );
    ranged.into_iter().collect()
}

#[test]
fn threads_against_models_then_reopen() {
    threads_against_models(config, SMALL);
}

/// The same under a memory quota under half the data (4.5 MiB on 3 shards, of which the
/// buffers take 768 KiB a shard, leaving the pages 768 KiB): pages swap out and back in all
/// the while, under writers, point reads, ranges both ways, scans and snapshots.
#[test]
fn threads_against_models_under_a_quota_then_reopen() {
    let quota = |dir: &Path| config(dir).memory_quota(9 << 19);
    threads_against_models(quota, Shape { keys: 1000, value_max: 8000 });
}

fn threads_against_models(config: impl Fn(&Path) -> Config, shape: Shape) {
    let dir = tempfile::tempdir().unwrap();
    let mut models: Vec<Model> = vec![Model::new(); THREADS as usize];
    for round in 0..3u64 {
        let store = Store::open(config(dir.path())).unwrap();
        let all: Model = models.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(everything(&store), all, "round {round} after reopen");
        models = std::thread::scope(|s| {
            let handles: Vec<_> = models
                .into_iter()
                .enumerate()
                .map(|(t, model)| {
                    let store = &store;
                    s.spawn(move || work(store, t as u64, 0x5EED + round * 100 + t as u64, model, shape))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Model = models.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(everything(&store), all, "round {round} before close");
        let mut back = collect(store.range::<[u8], _>(..).rev());
        back.reverse();
        assert_eq!(back.into_iter().collect::<Model>(), all);
        if round == 1 {
            store.checkpoint().unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.shards.len(), 3);
        assert!(stats.total.puts > 0 && stats.total.io_completed > 0, "{stats:?}");
        // Memory: what the pages hold, as the trees count it: the live entries, plus per-entry
        // encoding, record headers and index nodes (which dominate for entries this small: 4.2×
        // measured), and old versions not yet dropped.
        let live: u64 = all.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        let memory = stats.total.memory_bytes;
        if stats.total.memory_quota == 0 {
            assert!(
                memory >= live && memory < 8 * live + (64 << 10),
                "memory {memory} for {live} live bytes"
            );
        } else if round > 0 {
            // Pages swapped out and came back (a round's open starts them all out).
            assert!(live > 2 * stats.total.memory_quota, "{live} live bytes: too few to swap");
            assert!(stats.total.swap_outs > 0 && stats.total.swap_ins > 0, "{stats:?}");
        }
        store.close().unwrap();
    }
}

const CHILD_ENV: &str = "HELIO_STORE_CRASH_DIR";

#[test]
fn sigkill_keeps_every_acknowledged_sync_write() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let cycle: u64 = std::env::var("HELIO_STORE_CRASH_CYCLE").unwrap().parse().unwrap();
        let store = Store::open(config(Path::new(&dir)).durability(Durability::Sync)).unwrap();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let store = &store;
                s.spawn(move || {
                    for n in 0u64.. {
                        let k = format!("c{cycle}-t{t}-{:03}", n % 200);
                        store.put(k.as_bytes(), &n.to_be_bytes()).unwrap();
                        println!("ACK {k} {n}");
                    }
                });
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut rng = Rng(77);
    for cycle in 0..12u64 {
        let env =
            [(CHILD_ENV, dir.path().display().to_string()), ("HELIO_STORE_CRASH_CYCLE", cycle.to_string())];
        let run = Duration::from_millis(100 + rng.next() % 300);
        let lines: Vec<(String, u64)> =
            kill_child_after("sigkill_keeps_every_acknowledged_sync_write", &env, run)
                .iter()
                .map(|ack| {
                    let (key, n) = ack.split_once(' ').unwrap();
                    (key.to_string(), n.parse().unwrap())
                })
                .collect();
        assert!(!lines.is_empty(), "cycle {cycle}: nothing acknowledged");
        acked.extend(lines);
        let store = Store::open(config(dir.path())).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        for (k, &n) in &acked {
            let got = store.get(k.as_bytes()).unwrap().unwrap_or_else(|| panic!("cycle {cycle}: {k} lost"));
            let found = u64::from_be_bytes(got[..8].try_into().unwrap());
            assert!(found >= n, "cycle {cycle}: {k}: write {n} acknowledged, {found} found");
        }
        store.close().unwrap();
    }
}

/// A store with some data, closed; returns its contents.
fn seeded(dir: &Path) -> Model {
    let store = Store::open(config(dir)).unwrap();
    for i in 0..500u32 {
        store.put(&i.to_be_bytes(), &i.to_le_bytes()).unwrap();
    }
    let model = everything(&store);
    store.close().unwrap();
    model
}

fn intact(dir: &Path, model: &Model) {
    let store = Store::open(config(dir)).unwrap();
    assert_eq!(&everything(&store), model, "data changed by a refused call");
    store.close().unwrap();
}

#[test]
fn bad_input_gives_typed_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = seeded(dir.path());

    // Oversized key and value.
    let store = Store::open(config(dir.path()).key_bytes_max(64).value_bytes_max(1000)).unwrap();
    assert!(matches!(store.put(&[1; 65], b"v"), Err(Error::KeyTooLarge { len: 65, max: 64 })));
    assert!(matches!(store.put(b"k", &[1; 1001]), Err(Error::ValueTooLarge { len: 1001, max: 1000 })));
    assert!(matches!(store.delete(&[1; 65]), Err(Error::KeyTooLarge { .. })));
    // Double open, in this process and (by the same lock) any other.
    assert!(matches!(Store::open(config(dir.path())), Err(Error::Locked { .. })));
    store.close().unwrap();
    intact(dir.path(), &model);

    // Another shard count.
    assert!(matches!(
        Store::open(config(dir.path()).shards(2)),
        Err(Error::ShardCount { found: 3, configured: 2 })
    ));
    // Settings out of bounds.
    assert!(matches!(Store::open(config(dir.path()).shards(0)), Err(Error::Config { knob: "shards", .. })));
    assert!(matches!(Store::open(config(dir.path()).write_buffer_bytes(1000)), Err(Error::Config { .. })));
    assert!(matches!(
        Store::open(config(dir.path()).memory_quota(1000)),
        Err(Error::Config { knob: "memory_quota", .. })
    ));
    assert!(matches!(
        Store::open(config(dir.path()).unflushed_tail(1000)),
        Err(Error::Config { knob: "unflushed_tail", .. })
    ));
    intact(dir.path(), &model);

    // Another format version: of the store layout, then of a shard's log.
    let manifest = dir.path().join("MANIFEST");
    let original = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, b"helio-store 9\nshards 3\n").unwrap();
    assert!(matches!(
        Store::open(config(dir.path())),
        Err(Error::Incompatible { found: 9, expected: STORE_FORMAT, .. })
    ));
    std::fs::write(&manifest, b"garbage").unwrap();
    assert!(matches!(Store::open(config(dir.path())), Err(Error::Corrupt { .. })));
    std::fs::write(&manifest, &original).unwrap();
    let superblock = dir.path().join("shard-0001/superblock");
    let sb = std::fs::read(&superblock).unwrap();
    let mut other = sb.clone();
    for copy in 0..2 {
        let block = &mut other[copy * 4096..(copy + 1) * 4096];
        block[8..12].copy_from_slice(&9u32.to_le_bytes());
        let crc = helio::core::log::crc32c_of(&block[..4092]);
        block[4092..].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&superblock, &other).unwrap();
    let refused = Store::open(config(dir.path()));
    assert!(matches!(refused, Err(Error::Incompatible { found: 9, .. })), "{:?}", refused.err());
    std::fs::write(&superblock, vec![0x5A; 8192]).unwrap();
    assert!(matches!(Store::open(config(dir.path())), Err(Error::Corrupt { .. })));
    // A superblock lost next to its segments: refused, never replaced by a fresh empty log.
    std::fs::remove_file(&superblock).unwrap();
    assert!(matches!(Store::open(config(dir.path())), Err(Error::Corrupt { .. })));
    std::fs::write(&superblock, &sb).unwrap();
    intact(dir.path(), &model);

    // A crash while the store was being created (a manifest half-made) is not garbage.
    let half = tempfile::tempdir().unwrap();
    std::fs::write(half.path().join("MANIFEST.new"), b"helio-sto").unwrap();
    Store::open(config(half.path())).unwrap().close().unwrap();

    // Garbage: a directory of other things is not taken for a store.
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("notes.txt"), b"mine").unwrap();
    assert!(matches!(Store::open(config(foreign.path())), Err(Error::NotAStore { .. })));
    assert_eq!(std::fs::read(foreign.path().join("notes.txt")).unwrap(), b"mine");
    assert!(!foreign.path().join("MANIFEST").exists());
}

#[test]
fn store_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Store>();
    shared::<std::sync::Arc<Store>>();
}

/// A store written to four times its memory quota swaps pages out instead of refusing puts:
/// every write reads back (from memory or the log), the pages hold about the quota, and after
/// a reopen the same, with the pages starting swapped out.
#[test]
fn a_store_four_times_its_quota_swaps_pages_and_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let quota = 4u64 << 20;
    let value = |i: u32| vec![(i % 251) as u8; 1000];
    let keys = 16_000u32;
    {
        let store = Store::open(config(dir.path()).shards(1).memory_quota(quota)).unwrap();
        for i in 0..keys {
            store.put(&i.to_be_bytes(), &value(i)).unwrap();
        }
        let st = store.stats().total;
        assert!(st.swap_outs > 0, "{st:?}");
        assert!(
            st.memory_bytes < quota + (1 << 20),
            "{} bytes in memory for a quota of {quota}",
            st.memory_bytes
        );
        for i in (0..keys).step_by(7) {
            let got = store.get(&i.to_be_bytes());
            assert!(got.is_ok(), "key {i}: {got:?} {:?} {:?}", store.stats().total, store.stats().shards[0]);
            assert_eq!(got.unwrap(), Some(value(i)), "key {i}");
        }
        assert!(store.stats().total.page_reads > 0);
        store.close().unwrap();
    }
    let store = Store::open(config(dir.path()).shards(1).memory_quota(quota)).unwrap();
    let st = store.stats().total;
    assert!(st.memory_bytes < quota, "the open loaded {} bytes", st.memory_bytes);
    let mut seen = 0u32;
    for entry in store.iter() {
        let (k, v) = entry.unwrap();
        let i = u32::from_be_bytes(k[..].try_into().unwrap());
        assert_eq!(i, seen);
        assert_eq!(v[..], value(i)[..]);
        seen += 1;
    }
    assert_eq!(seen, keys);
    store.close().unwrap();
}

#[test]
fn ranges_taken_from_both_ends_at_once_meet_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut model = Model::new();
    for k in 0..3000u64 {
        let (key, value) = (key(k % 7, k), k.to_le_bytes().to_vec());
        store.put(&key, &value).unwrap();
        model.insert(key, value);
    }
    let mut rng = Rng(0xFEED);
    for round in 0..200u64 {
        let (a, b) = (rng.next() % 3100, rng.next() % 3100);
        let (lo, hi) = (key(a % 7, a).min(key(b % 7, b)), key(a % 7, a).max(key(b % 7, b)));
        let mut expected: std::collections::VecDeque<_> =
            model.range(lo.clone()..hi.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut range = store.range(lo..hi);
        // Alternate ends at random, in runs long enough to cross batch boundaries.
        loop {
            let forward = rng.next() % 3 != 0 || round % 2 == 0;
            let got = if forward { range.next() } else { range.next_back() };
            let want = if forward { expected.pop_front() } else { expected.pop_back() };
            let got = got.map(|e| {
                let (k, v) = e.unwrap();
                (k.to_vec(), v.to_vec())
            });
            assert_eq!(got, want, "round {round}, forward {forward}");
            if want.is_none() {
                break;
            }
        }
    }
}
