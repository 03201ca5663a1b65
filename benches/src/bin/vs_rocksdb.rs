//! Helio's `Store` against RocksDB (default options) and a mutex around a `BTreeMap` with an
//! append-only file, in the same run, on the same keys: 1M random 16-byte keys with 100-byte
//! values (`HELIO_BENCH_KEYS` to change), fill with `Buffered` durability (RocksDB: its default
//! write options, WAL on and not synced), random gets, and seek + scan of 100 entries; then
//! fill and get again with 2 threads (helio on 2 shards) for the scaling figure.
//!
//! Usage: `cargo run --release -p helio-bench --features rocksdb --bin vs_rocksdb -- [DIR]`
//! (`HELIO_ENGINES=helio,rocksdb` to run some engines only).

// mimalloc, as in Helio's binaries: see the crate docs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use helio::{Config, Durability, Store};
use helio_bench::{key, key_count, run_threads, slice_of, value, Rng, SCAN_LEN};

/// What each engine must do.
trait Engine: Sync {
    fn name(&self) -> &'static str;
    fn put(&self, key: &[u8], value: &[u8]);
    fn get_len(&self, key: &[u8]) -> Option<usize>;
    fn scan(&self, from: &[u8], n: usize) -> usize;
}

struct Helio(Store);

impl Engine for Helio {
    fn name(&self) -> &'static str {
        "helio"
    }
    fn put(&self, key: &[u8], value: &[u8]) {
        self.0.put(key, value).unwrap();
    }
    fn get_len(&self, key: &[u8]) -> Option<usize> {
        self.0.get(key).unwrap().map(|v| v.len())
    }
    fn scan(&self, from: &[u8], n: usize) -> usize {
        let mut seen = 0;
        for entry in self.0.range(from..).take(n) {
            std::hint::black_box(entry.unwrap());
            seen += 1;
        }
        seen
    }
}

struct Rocks(rocksdb::DB);

impl Engine for Rocks {
    fn name(&self) -> &'static str {
        "rocksdb"
    }
    fn put(&self, key: &[u8], value: &[u8]) {
        self.0.put(key, value).unwrap();
    }
    fn get_len(&self, key: &[u8]) -> Option<usize> {
        self.0.get_pinned(key).unwrap().map(|v| v.len())
    }
    fn scan(&self, from: &[u8], n: usize) -> usize {
        let mut it = self.0.raw_iterator();
        it.seek(from);
        let mut seen = 0;
        while seen < n && it.valid() {
            std::hint::black_box((it.key(), it.value()));
            seen += 1;
            it.next();
        }
        seen
    }
}

/// The baseline the issue names: one mutex around a `BTreeMap`, every write also appended to a
/// buffered file.
struct MutexMap(Mutex<MapAndLog>);

/// The map and the file every write is appended to.
type MapAndLog = (BTreeMap<Vec<u8>, Vec<u8>>, BufWriter<File>);

impl Engine for MutexMap {
    fn name(&self) -> &'static str {
        "mutex-btreemap+file"
    }
    fn put(&self, key: &[u8], value: &[u8]) {
        let mut guard = self.0.lock().unwrap();
        let (map, file) = &mut *guard;
        file.write_all(&(key.len() as u32).to_le_bytes()).unwrap();
        file.write_all(key).unwrap();
        file.write_all(&(value.len() as u32).to_le_bytes()).unwrap();
        file.write_all(value).unwrap();
        map.insert(key.to_vec(), value.to_vec());
    }
    fn get_len(&self, key: &[u8]) -> Option<usize> {
        self.0.lock().unwrap().0.get(key).map(|v| v.to_vec().len())
    }
    fn scan(&self, from: &[u8], n: usize) -> usize {
        let guard = self.0.lock().unwrap();
        let mut seen = 0;
        for (k, v) in guard.0.range(from.to_vec()..).take(n) {
            std::hint::black_box((k.clone(), v.clone()));
            seen += 1;
        }
        seen
    }
}

/// Operations per second of each phase.
#[derive(Default, Clone, Copy)]
struct Figures {
    fill: f64,
    get: f64,
    scan: f64,
}

fn measure(engine: &dyn Engine, n: usize, threads: usize) -> Figures {
    let fill = run_threads(threads, |t| {
        for i in slice_of(n, t, threads) {
            engine.put(&key(i), &value(i));
        }
    });
    let get = run_threads(threads, |t| {
        let mut rng = Rng::new(t as u64 + 1);
        for _ in slice_of(n, t, threads) {
            let i = rng.below(n as u64);
            assert_eq!(engine.get_len(&key(i)), Some(value(i).len()), "{} lost a key", engine.name());
        }
    });
    let scans = (n / 10).max(1);
    let scan = run_threads(threads, |t| {
        let mut rng = Rng::new(t as u64 + 99);
        for _ in slice_of(scans, t, threads) {
            std::hint::black_box(engine.scan(&key(rng.below(n as u64)), SCAN_LEN));
        }
    });
    let rate = |ops: usize, d: std::time::Duration| ops as f64 / d.as_secs_f64();
    Figures { fill: rate(n, fill), get: rate(n, get), scan: rate(scans, scan) }
}

fn helio(dir: &Path, shards: usize) -> Helio {
    Helio(Store::open(Config::new(dir).shards(shards).durability(Durability::Buffered)).unwrap())
}

fn rocks(dir: &Path) -> Rocks {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    Rocks(rocksdb::DB::open(&options, dir).unwrap())
}

fn mutex_map(dir: &Path) -> MutexMap {
    let file = File::create(dir.join("log")).unwrap();
    MutexMap(Mutex::new((BTreeMap::new(), BufWriter::new(file))))
}

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let tmp = tempfile::Builder::new().prefix("helio-vs-rocksdb").tempdir_in(root).unwrap();
    let n = key_count();
    let fresh = |name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    println!("{n} keys of 16 bytes, values of 100 bytes; ops/s (scan: seeks of {SCAN_LEN} entries/s)");
    println!("{:<22} {:>8} {:>12} {:>12} {:>12}", "engine", "threads", "fill", "get", "scan");
    let mut results = Vec::new();
    for (threads, round) in [(1, 0), (2, 1)] {
        let engines: Vec<Box<dyn Engine>> = vec![
            Box::new(helio(&fresh(&format!("helio{round}")), threads)),
            Box::new(rocks(&fresh(&format!("rocksdb{round}")))),
            Box::new(mutex_map(&fresh(&format!("mutex{round}")))),
        ];
        let only = std::env::var("HELIO_ENGINES").ok();
        for engine in
            engines.iter().filter(|e| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == e.name())))
        {
            // Let the previous engine's dirty pages reach the disk first, so that its writeback
            // does not run during this engine's phases.
            // SAFETY: plain syscall.
            unsafe { libc::sync() };
            let f = measure(engine.as_ref(), n, threads);
            println!("{:<22} {threads:>8} {:>12.0} {:>12.0} {:>12.0}", engine.name(), f.fill, f.get, f.scan);
            results.push((engine.name(), threads, f));
        }
    }
    let find =
        |name: &str, threads: usize| results.iter().find(|r| r.0 == name && r.1 == threads).map(|r| r.2);
    let (Some(h1), Some(r1), Some(h2)) = (find("helio", 1), find("rocksdb", 1), find("helio", 2)) else {
        return;
    };
    println!();
    println!(
        "helio / rocksdb, 1 thread: fill {:.2}x (target 5), get {:.2}x (target 8), scan {:.2}x (target 3)",
        h1.fill / r1.fill,
        h1.get / r1.get,
        h1.scan / r1.scan
    );
    println!(
        "helio 2 threads on 2 shards / 1 thread: fill {:.2}x, get {:.2}x, scan {:.2}x (target 1.7)",
        h2.fill / h1.fill,
        h2.get / h1.get,
        h2.scan / h1.scan
    );
}
