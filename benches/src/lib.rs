//! # helio-bench
//!
//! Shared pieces of Helio's micro-benchmarks (`benches/core.rs`) and of the memory report
//! (`src/bin/memory.rs`), which compare [`helio_core::Tree`] with crossbeam-skiplist's
//! [`SkipMap`] and a [`RwLock`]`<`[`BTreeMap`]`>` on the same workload:
//!
//! - keys are [`KEY_LEN`] = 16 bytes, pseudo-random but deterministic ([`key`]), so they spread
//!   uniformly over the key space and every run sees the same ones;
//! - values are [`VALUE_LEN`] = 100 bytes ([`value`]);
//! - the key count is [`key_count`]: `HELIO_BENCH_KEYS` from the environment, 1,000,000 unless set.
//!
//! Each structure is driven through the small [`Store`] trait so the benchmarks are written once.
//!
//! The benchmark binaries (all but `memory`, which counts bytes with its own allocator) run on
//! mimalloc, as Helio's own binaries do: records retired by the epoch collector are usually freed
//! by another thread than the one that allocated them, and glibc's malloc then serialises threads
//! on the owning arena's lock (it cost 2-thread fill a third of its throughput; see
//! `docs/store.md`, "Allocator"). C++ peers (RocksDB) keep their own allocation paths.

pub mod runner;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crossbeam_skiplist::SkipMap;
use helio_core::{Tree, TreeConfig};

/// Bytes in every key.
pub const KEY_LEN: usize = 16;

/// Bytes in every value.
pub const VALUE_LEN: usize = 100;

/// Raw bytes of one item: key plus value, the yardstick for memory per item.
pub const RAW_ITEM_BYTES: usize = KEY_LEN + VALUE_LEN;

/// Key count used when `HELIO_BENCH_KEYS` is not set.
pub const DEFAULT_KEYS: usize = 1_000_000;

/// Entries read by one scan in the scan benchmark.
pub const SCAN_LEN: usize = 100;

/// The number of keys to load: `HELIO_BENCH_KEYS` (underscores allowed, e.g. `100_000`), or
/// [`DEFAULT_KEYS`]. Panics on a value that is not a positive integer.
pub fn key_count() -> usize {
    match std::env::var("HELIO_BENCH_KEYS") {
        Ok(s) => {
            let n: usize = s
                .replace('_', "")
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("HELIO_BENCH_KEYS={s:?} is not a key count: {e}"));
            assert!(n > 0, "HELIO_BENCH_KEYS must be positive");
            n
        }
        Err(_) => DEFAULT_KEYS,
    }
}

/// The splitmix64 finalizer applied to `x + golden ratio`: a bijection on `u64` that scatters
/// consecutive inputs uniformly.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th key: two big-endian `u64`s, `splitmix64(i)` then `splitmix64(!i)`. The first half
/// alone is a bijection of `i`, so distinct indices give distinct keys, in an order unrelated
/// to `i`.
#[inline]
pub fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&splitmix64(i).to_be_bytes());
    k[8..].copy_from_slice(&splitmix64(!i).to_be_bytes());
    k
}

/// The value stored under [`key`]`(i)`: `i` little-endian, then a byte pattern derived from `i`.
#[inline]
pub fn value(i: u64) -> [u8; VALUE_LEN] {
    let mut v = [i as u8; VALUE_LEN];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// A small deterministic random generator (splitmix64 over a counter) for picking keys.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next pseudo-random `u64`.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0 ^ 0xD6E8_FEB8_6659_FD93)
    }

    /// A pseudo-random index in `0..n` (multiply-shift, no division).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The operations the benchmarks need from an ordered map of byte keys to byte values that many
/// threads share.
pub trait Store: Sync + Sized {
    /// Short name used in benchmark ids (`helio`, `skipmap`, `btree`).
    const NAME: &'static str;

    /// An empty structure.
    fn create() -> Self;

    /// Sets `key` to `value`.
    fn insert(&self, key: &[u8], value: &[u8]);

    /// The length of the value under `key`, if any.
    fn get_len(&self, key: &[u8]) -> Option<usize>;

    /// Calls `f` on at most `n` entries, in key order, starting at the first key at or above
    /// `from`. Returns how many entries it visited.
    fn scan<F: FnMut(&[u8], &[u8])>(&self, from: &[u8], n: usize, f: F) -> usize;
}

impl Store for Tree {
    const NAME: &'static str = "helio";

    fn create() -> Self {
        Tree::new(TreeConfig::default()).expect("the default config is valid")
    }

    #[inline]
    fn insert(&self, key: &[u8], value: &[u8]) {
        let guard = self.pin();
        self.put(key, value, &guard).expect("key and value are within the default limits");
    }

    #[inline]
    fn get_len(&self, key: &[u8]) -> Option<usize> {
        let guard = self.pin();
        self.get(key, &guard).expect("key is within the default limit").map(<[u8]>::len)
    }

    #[inline]
    fn scan<F: FnMut(&[u8], &[u8])>(&self, from: &[u8], n: usize, mut f: F) -> usize {
        let guard = self.pin();
        let snap = self.snapshot();
        let mut seen = 0;
        for (k, v) in self.range::<[u8], _>(&snap, (Bound::Included(from), Bound::Unbounded), &guard).take(n)
        {
            f(k, v);
            seen += 1;
        }
        seen
    }
}

impl Store for SkipMap<Vec<u8>, Vec<u8>> {
    const NAME: &'static str = "skipmap";

    fn create() -> Self {
        SkipMap::new()
    }

    #[inline]
    fn insert(&self, key: &[u8], value: &[u8]) {
        SkipMap::insert(self, key.to_vec(), value.to_vec());
    }

    #[inline]
    fn get_len(&self, key: &[u8]) -> Option<usize> {
        self.get(key).map(|e| e.value().len())
    }

    #[inline]
    fn scan<F: FnMut(&[u8], &[u8])>(&self, from: &[u8], n: usize, mut f: F) -> usize {
        let mut seen = 0;
        for e in self.range::<[u8], _>((Bound::Included(from), Bound::Unbounded)).take(n) {
            f(e.key(), e.value());
            seen += 1;
        }
        seen
    }
}

impl Store for RwLock<BTreeMap<Vec<u8>, Vec<u8>>> {
    const NAME: &'static str = "btree";

    fn create() -> Self {
        RwLock::new(BTreeMap::new())
    }

    #[inline]
    fn insert(&self, key: &[u8], value: &[u8]) {
        self.write().expect("lock poisoned").insert(key.to_vec(), value.to_vec());
    }

    #[inline]
    fn get_len(&self, key: &[u8]) -> Option<usize> {
        self.read().expect("lock poisoned").get(key).map(Vec::len)
    }

    #[inline]
    fn scan<F: FnMut(&[u8], &[u8])>(&self, from: &[u8], n: usize, mut f: F) -> usize {
        let map = self.read().expect("lock poisoned");
        let mut seen = 0;
        for (k, v) in map.range::<[u8], _>((Bound::Included(from), Bound::Unbounded)).take(n) {
            f(k, v);
            seen += 1;
        }
        seen
    }
}

/// Runs `work(t)` for `t` in `0..threads`, each on its own scoped thread (or on the calling
/// thread when `threads` is 1, so one thread pays no spawn), and returns the wall time from before
/// the first spawn to after the last join.
pub fn run_threads<F>(threads: usize, work: F) -> Duration
where
    F: Fn(usize) + Sync,
{
    let start = Instant::now();
    if threads == 1 {
        work(0);
        return start.elapsed();
    }
    std::thread::scope(|s| {
        for t in 0..threads {
            let work = &work;
            s.spawn(move || work(t));
        }
    });
    start.elapsed()
}

/// The part of `0..n` that thread `t` of `threads` handles: contiguous, disjoint, covering.
pub fn slice_of(n: usize, t: usize, threads: usize) -> std::ops::Range<u64> {
    let lo = n * t / threads;
    let hi = n * (t + 1) / threads;
    lo as u64..hi as u64
}

/// Inserts keys `0..n` into `store` with `threads` threads, each inserting a disjoint slice, and
/// returns the wall time it took.
pub fn load<S: Store>(store: &S, n: usize, threads: usize) -> Duration {
    run_threads(threads, |t| {
        for i in slice_of(n, t, threads) {
            store.insert(&key(i), &value(i));
        }
    })
}

/// A fresh `S` holding keys `0..n`, loaded with `threads` threads.
pub fn loaded<S: Store>(n: usize, threads: usize) -> S {
    let store = S::create();
    load(&store, n, threads);
    store
}

/// Checks that `store` holds exactly keys `0..n` with their values: every key is found with the
/// right value length, scans of [`SCAN_LEN`] entries from random keys return the next keys in
/// sorted order with the right values, and a scan of everything returns `n` entries in order.
/// Returns a description of the first difference.
pub fn verify<S: Store>(store: &S, n: usize) -> Result<(), String> {
    let mut sorted: Vec<(u64, [u8; KEY_LEN])> = (0..n as u64).map(|i| (i, key(i))).collect();
    sorted.sort_unstable_by_key(|a| a.1);
    for (i, k) in &sorted {
        match store.get_len(k) {
            Some(VALUE_LEN) => {}
            other => {
                return Err(format!("{}: get of key #{i} returned a value of length {other:?}", S::NAME))
            }
        }
    }
    let mut rng = Rng::new(42);
    for _ in 0..1000.min(n) {
        let pos = rng.below(n as u64) as usize;
        let expect = &sorted[pos..(pos + SCAN_LEN).min(n)];
        let mut got = Vec::with_capacity(SCAN_LEN);
        let seen = store.scan(&sorted[pos].1, SCAN_LEN, |k, v| got.push((k.to_vec(), v.to_vec())));
        if seen != expect.len() || got.len() != expect.len() {
            return Err(format!(
                "{}: scan from sorted position {pos} gave {} entries, expected {}",
                S::NAME,
                got.len(),
                expect.len()
            ));
        }
        for (j, ((gk, gv), (i, ek))) in got.iter().zip(expect).enumerate() {
            if gk[..] != ek[..] || gv[..] != value(*i)[..] {
                return Err(format!(
                    "{}: scan from sorted position {pos}: entry {j} is key {gk:02x?} (value len {}), expected key \
                     #{i} {ek:02x?}",
                    S::NAME,
                    gv.len()
                ));
            }
        }
    }
    let mut prev: Option<Vec<u8>> = None;
    let mut out_of_order = 0usize;
    let all = store.scan(&[], usize::MAX, |k, _| {
        if prev.as_deref().is_some_and(|p| p >= k) {
            out_of_order += 1;
        }
        prev = Some(k.to_vec());
    });
    if all != n || out_of_order != 0 {
        return Err(format!(
            "{}: full scan gave {all} entries ({out_of_order} out of order), expected {n}",
            S::NAME
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<S: Store>() {
        let n = 5_000;
        let store: S = loaded(n, 2);
        verify(&store, n).unwrap();
    }

    #[test]
    fn keys_are_distinct() {
        let mut keys: Vec<_> = (0..100_000).map(key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 100_000);
    }

    #[test]
    fn slices_cover() {
        let parts: Vec<_> = (0..3).map(|t| slice_of(10, t, 3)).collect();
        assert_eq!(parts, [0..3, 3..6, 6..10]);
    }

    #[test]
    fn stores_roundtrip() {
        roundtrip::<Tree>();
        roundtrip::<SkipMap<Vec<u8>, Vec<u8>>>();
        roundtrip::<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>();
    }
}
