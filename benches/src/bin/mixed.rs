//! Read-triggered consolidation under a mixed workload: the same 50/50 random get/put workload
//! on a loaded tree, with readers consolidating pages at 16 chain records (the default) and with
//! that effectively off (10000), measured in one run, alternating, three rounds each.
//!
//! `cargo run --release -p helio-bench --bin mixed` (keys: `HELIO_BENCH_KEYS`, default 1M).

// mimalloc, as in Helio's binaries: see the crate docs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use helio_bench::{key, key_count, run_threads, value, Rng};
use helio_core::{Tree, TreeConfig};

const OPS_PER_THREAD: u64 = 1_000_000;

fn round(read_consolidate: u32, n: u64, threads: usize, reads_percent: u64) -> f64 {
    let tree = Tree::new(TreeConfig::default().read_consolidate_chain(read_consolidate)).expect("valid");
    for i in 0..n {
        tree.put(&key(i), &value(i), &tree.pin()).expect("within limits");
    }
    let elapsed = run_threads(threads, |t| {
        let mut rng = Rng::new(0xC0FFEE ^ t as u64);
        for _ in 0..OPS_PER_THREAD {
            let i = rng.below(n);
            let guard = tree.pin();
            if rng.below(100) < reads_percent {
                black_box(tree.get(&key(i), &guard).expect("within limits"));
            } else {
                tree.put(&key(i), &value(i ^ 1), &guard).expect("within limits");
            }
        }
    });
    (OPS_PER_THREAD * threads as u64) as f64 / elapsed.as_secs_f64()
}

fn main() {
    let n = key_count() as u64;
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("{n} keys, {threads} threads, {OPS_PER_THREAD} ops per thread, median of 3 alternating rounds");
    println!("| reads | read consolidation at 16 (ops/s) | off (ops/s) | ratio |");
    println!("|---|---|---|---|");
    for reads in [50, 90] {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            on.push(round(16, n, threads, reads));
            off.push(round(10_000, n, threads, reads));
        }
        on.sort_by(f64::total_cmp);
        off.sort_by(f64::total_cmp);
        println!("| {reads}% | {:.0} | {:.0} | {:.2} |", on[1], off[1], on[1] / off[1]);
    }
}
