//! A `Store` alone, without the workload runner: in a local directory with one shard and one
//! thread per core; loads keys with `Buffered` durability, reads them back, scans (as a
//! `Range` and with `Store::scan`), then closes, reopens (recovery) and checks a sample.
//! Prints throughput per phase and the store's counters.
//!
//! `cargo run --release -p helio --example load -- [DIR] [KEYS]`
//! (defaults: a temporary directory under the current one, 1,000,000 keys of 16 bytes with
//! 100-byte values).

/// Freed chains are collected by whichever thread next passes an epoch, usually not the one that
/// allocated them; glibc's malloc then takes the owning arena's lock (see docs/store.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use helio::{Config, Durability, Store};

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

fn phase(name: &str, ops: u64, threads: u64, work: impl Fn(u64) + Sync) {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let work = &work;
            s.spawn(move || work(t));
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!("{name:<10} {ops:>10} ops  {secs:>7.3} s  {:>12.0} ops/s", ops as f64 / secs);
}

fn main() -> Result<(), helio::Error> {
    let mut args = std::env::args().skip(1);
    let root = args.next().map_or_else(|| PathBuf::from("."), PathBuf::from);
    let keys: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("KEYS must be a number"));
    let tmp = tempfile::Builder::new().prefix("helio-load").tempdir_in(&root).expect("a scratch directory");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let config = || Config::new(tmp.path()).shards(threads as usize).durability(Durability::Buffered);
    println!("{keys} keys, {threads} threads and shards, store in {}", tmp.path().display());
    let value = [0xA5u8; 100];
    let store = Store::open(config())?;
    let slice = |t: u64| keys * t / threads..keys * (t + 1) / threads;
    phase("put", keys, threads, |t| {
        for i in slice(t) {
            store.put(&key(i), &value).expect("put");
        }
    });
    phase("get", keys, threads, |t| {
        for i in slice(t) {
            assert_eq!(store.get(&key(i)).expect("get").as_deref(), Some(&value[..]));
        }
    });
    let scans = keys / 100;
    phase("range-100", scans * 100, threads, |t| {
        for i in scans * t / threads..scans * (t + 1) / threads {
            let n = store.range(&key(i * 100)[..]..).take(100).count();
            assert!(n > 0);
        }
    });
    phase("scan-100", scans * 100, threads, |t| {
        for i in scans * t / threads..scans * (t + 1) / threads {
            let mut left = 100;
            let n = store
                .scan(&key(i * 100)[..].., |_, _| {
                    left -= 1;
                    if left == 0 {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .expect("scan");
            assert!(n > 0);
        }
    });
    let start = Instant::now();
    store.sync()?;
    println!("sync       {:>7.3} s", start.elapsed().as_secs_f64());
    let stats = store.stats().total;
    println!(
        "device bytes written {} for {} user bytes (write amplification {:.2}), log {} bytes, {} stretches cleaned",
        stats.device_bytes_written,
        stats.user_bytes,
        stats.write_amplification(),
        stats.log_bytes,
        stats.cleanings
    );
    store.close()?;
    let start = Instant::now();
    let store = Store::open(config())?;
    println!("reopen     {:>7.3} s (recovery of every shard)", start.elapsed().as_secs_f64());
    for i in (0..keys).step_by(997) {
        assert_eq!(store.get(&key(i))?.as_deref(), Some(&value[..]), "key {i} after reopen");
    }
    store.close()
}
