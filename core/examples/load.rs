//! Loads keys into an in-memory `helio_core::Tree` from one thread per core, then reads them back
//! and scans, printing throughput for each phase.
//!
//! `cargo run --release -p helio-core --example load -- [KEYS] [THREADS]`
//! (defaults: 1,000,000 keys of 16 bytes with 100-byte values, one thread per core).

use std::time::Instant;

use helio_core::{Tree, TreeConfig};

fn key(i: u64) -> [u8; 16] {
    // splitmix64: spreads keys uniformly over the key space.
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(z ^ (z >> 31)).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn phase(name: &str, ops: u64, threads: u64, tree: &Tree, work: impl Fn(&Tree, u64, u64) + Sync) {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let work = &work;
            s.spawn(move || work(tree, t, threads));
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!("{name:<10} {ops:>10} ops  {secs:>7.3} s  {:>12.0} ops/s", ops as f64 / secs);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("KEYS must be a number"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let threads: u64 = args.next().map_or(cores, |a| a.parse().expect("THREADS must be a number"));
    let tree = Tree::new(TreeConfig::default()).expect("default config is valid");
    let value = [0xA5u8; 100];
    println!("helio-core in memory: {keys} keys (16 B) x 100 B values, {threads} threads");
    phase("put", keys, threads, &tree, |tree, t, n| {
        for i in (t..keys).step_by(n as usize) {
            tree.put(&key(i), &value, &tree.pin()).expect("within limits");
        }
    });
    phase("get", keys, threads, &tree, |tree, t, n| {
        for i in (t..keys).step_by(n as usize) {
            let guard = tree.pin();
            let found = tree.get(&key(i.wrapping_mul(7919) % keys), &guard).expect("within limits");
            assert_eq!(found.map(<[u8]>::len), Some(100), "a loaded key is missing");
        }
    });
    let scans = keys / 100;
    phase("scan-100", scans * 100, threads, &tree, |tree, t, n| {
        for i in (t..scans).step_by(n as usize) {
            let guard = tree.pin();
            let snap = tree.snapshot();
            let from = key(i.wrapping_mul(7919) % keys);
            let seen = tree.range(&snap, &from[..].., &guard).take(100).count();
            assert!(seen > 0, "a scan from a loaded key found nothing");
        }
    });
    let stats = tree.stats();
    println!(
        "pages {}  consolidations {}  splits {}  merges {}",
        stats.pages, stats.consolidations, stats.splits, stats.merges
    );
}
