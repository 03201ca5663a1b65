//! Insert, get and scan-100 on `HELIO_BENCH_KEYS` (default 1,000,000) keys of 16 bytes with
//! 100-byte values, with 1 and 2 threads, for `helio_core::Tree`, crossbeam-skiplist's `SkipMap`
//! and `RwLock<BTreeMap>`, all in one run so their ratios are comparable.
//!
//! Run with `cargo bench -p helio-bench --bench core`; ids are `OP/STRUCTURE/Nt`, e.g.
//! `get/helio/2t`. Insert reports keys inserted per second (one iteration loads all keys into a
//! fresh structure); get and scan report operations per second summed over the threads.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use crossbeam_skiplist::SkipMap;
use helio_bench::{key, key_count, load, loaded, run_threads, verify, Rng, Store, SCAN_LEN, VALUE_LEN};
use helio_core::Tree;

/// Thread counts every operation is measured with.
const THREADS: [usize; 2] = [1, 2];

type Skip = SkipMap<Vec<u8>, Vec<u8>>;
type Locked = RwLock<BTreeMap<Vec<u8>, Vec<u8>>>;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

fn insert_one<S: Store>(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    for threads in THREADS {
        group.bench_function(format!("{}/{threads}t", S::NAME), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store = S::create();
                    total += load(&store, n, threads);
                    drop(black_box(store)); // outside the timed part
                }
                total
            });
        });
    }
}

fn insert(c: &mut Criterion) {
    let n = key_count();
    let mut group = c.benchmark_group("insert");
    group.sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(n as u64));
    insert_one::<Tree>(&mut group, n);
    insert_one::<Skip>(&mut group, n);
    insert_one::<Locked>(&mut group, n);
    group.finish();
}

/// Runs `iters` calls of `op` split over `threads` threads, each with its own random generator.
fn split_ops<F>(iters: u64, threads: usize, op: F) -> Duration
where
    F: Fn(&mut Rng) + Sync,
{
    run_threads(threads, |t| {
        let mut rng = Rng::new(iters.wrapping_mul(0x1000_0000_01B3) ^ t as u64);
        let mine = iters / threads as u64 + u64::from((t as u64) < iters % threads as u64);
        for _ in 0..mine {
            op(&mut rng);
        }
    })
}

/// A structure loaded with `n` keys and checked, for the read benchmarks.
fn prepared<S: Store>(n: usize) -> S {
    let store: S = loaded(n, 1);
    if let Err(e) = verify(&store, n) {
        panic!("{e}");
    }
    store
}

fn get_one<S: Store>(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    let store: S = prepared(n);
    for threads in THREADS {
        group.bench_function(format!("{}/{threads}t", S::NAME), |b| {
            b.iter_custom(|iters| {
                split_ops(iters, threads, |rng| {
                    let k = key(rng.below(n as u64));
                    let len = store.get_len(black_box(&k));
                    assert_eq!(black_box(len), Some(VALUE_LEN));
                })
            });
        });
    }
}

/// A read benchmark group: `one::<S>` for each structure, one operation per element.
fn read_group(c: &mut Criterion, name: &str, one: [fn(&mut BenchmarkGroup<'_, WallTime>, usize); 3]) {
    let n = key_count();
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(1));
    for bench in one {
        bench(&mut group, n);
    }
    group.finish();
}

fn get(c: &mut Criterion) {
    read_group(c, "get", [get_one::<Tree>, get_one::<Skip>, get_one::<Locked>]);
}

fn scan_one<S: Store>(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    let store: S = prepared(n);
    for threads in THREADS {
        group.bench_function(format!("{}/{threads}t", S::NAME), |b| {
            b.iter_custom(|iters| {
                split_ops(iters, threads, |rng| {
                    let k = key(rng.below(n as u64));
                    let mut bytes = 0;
                    let seen = store.scan(black_box(&k), SCAN_LEN, |k, v| bytes += k.len() + v.len());
                    assert!(seen > 0, "a scan from an existing key found nothing");
                    black_box((seen, bytes));
                })
            });
        });
    }
}

fn scan(c: &mut Criterion) {
    read_group(c, "scan100", [scan_one::<Tree>, scan_one::<Skip>, scan_one::<Locked>]);
}

criterion_group! {
    name = benches;
    config = config();
    targets = insert, get, scan
}
criterion_main!(benches);
