//! GlueSQL on Helio against GlueSQL on its own sled and redb storages, in one run: `INSERT`s
//! of 100-row batches, `SELECT` by primary key, and `SELECT` of a 100-row key range.
//!
//! `cargo run --release -p helio-gluesql --example bench --features peers [ROWS] [POINTS] [RANGES]`
//! (defaults 100000, 20000, 50). Each storage gets a fresh directory under the system's
//! temporary directory. Helio runs twice: with `Durability::Sync` (every statement fsynced,
//! as redb commits) and `Durability::Buffered` (as sled, which flushes in the background).

#![allow(deprecated)] // SledStorage is deprecated upstream (removed in GlueSQL 0.21).

// One allocator for every storage under test, as Helio's own binaries use.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use gluesql_core::prelude::{Glue, Payload};
use gluesql_core::store::{GStore, GStoreMut, Planner};
use gluesql_redb_storage::RedbStorage;
use gluesql_sled_storage::SledStorage;
use helio::{Config, Durability};
use helio_gluesql::HelioStorage;

/// Rows per `INSERT` statement.
const BATCH: usize = 100;
/// Rows per range `SELECT`.
const RANGE: usize = 100;

/// Operations per second of each workload.
#[derive(Clone, Copy)]
struct Rates {
    insert: f64,
    point: f64,
    range: f64,
}

struct Sizes {
    rows: usize,
    points: usize,
    ranges: usize,
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() {
    let sizes = Sizes { rows: arg(1, 100_000), points: arg(2, 20_000), ranges: arg(3, 50) };
    let root = tempfile::tempdir().expect("temporary directory");
    let dir = |name: &str| root.path().join(name);
    // BENCH_ONLY=NAME runs only the storages whose names contain NAME (to profile one);
    // BENCH_SHARDS=N sets Helio's shard count (default: HelioStorage::SHARDS).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let shards = std::env::var("BENCH_SHARDS").ok().and_then(|s| s.parse().ok());
    let helio = |name: &str, durability| {
        let config =
            Config::new(dir(name)).durability(durability).shards(shards.unwrap_or(HelioStorage::SHARDS));
        HelioStorage::with_config(config).expect("helio")
    };
    let mut results = Vec::new();
    if "helio (Sync)".contains(only.as_str()) {
        results.push(("helio (Sync)", run(helio("helio-sync", Durability::Sync), &sizes)));
    }
    if "helio (Buffered)".contains(only.as_str()) {
        results.push(("helio (Buffered)", run(helio("helio-buffered", Durability::Buffered), &sizes)));
    }
    if "sled".contains(only.as_str()) {
        results.push(("sled", run(SledStorage::new(dir("sled")).expect("sled"), &sizes)));
    }
    if "redb".contains(only.as_str()) {
        results.push(("redb", run(RedbStorage::new(dir("redb.redb")).expect("redb"), &sizes)));
    }
    print_table(&sizes, &results);
}

/// Runs the three workloads on `storage`.
fn run<T: GStore + GStoreMut + Planner>(storage: T, sizes: &Sizes) -> Rates {
    let mut glue = Glue::new(storage);
    exec(&mut glue, "CREATE TABLE bench (id INTEGER PRIMARY KEY, name TEXT, amount INTEGER)");
    let insert = rate(sizes.rows, || insert_rows(&mut glue, sizes.rows));
    let mut rng = fastrand::Rng::with_seed(7);
    let point = rate(sizes.points, || {
        for _ in 0..sizes.points {
            let id = rng.usize(0..sizes.rows);
            expect_rows(&mut glue, &format!("SELECT * FROM bench WHERE id = {id}"), 1);
        }
    });
    let range = rate(sizes.ranges, || {
        for _ in 0..sizes.ranges {
            let lo = rng.usize(0..sizes.rows - RANGE);
            let sql = format!("SELECT * FROM bench WHERE id >= {lo} AND id < {}", lo + RANGE);
            expect_rows(&mut glue, &sql, RANGE);
        }
    });
    Rates { insert, point, range }
}

fn insert_rows<T: GStore + GStoreMut + Planner>(glue: &mut Glue<T>, rows: usize) {
    for first in (0..rows).step_by(BATCH) {
        let values: Vec<String> = (first..(first + BATCH).min(rows))
            .map(|id| format!("({id}, 'name-{id}', {})", id * 7 % 1000))
            .collect();
        exec(glue, &format!("INSERT INTO bench VALUES {}", values.join(", ")));
    }
}

fn exec<T: GStore + GStoreMut + Planner>(glue: &mut Glue<T>, sql: &str) -> Payload {
    glue.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).pop().expect("a payload")
}

fn expect_rows<T: GStore + GStoreMut + Planner>(glue: &mut Glue<T>, sql: &str, count: usize) {
    match exec(glue, sql) {
        Payload::Select { rows, .. } => assert_eq!(rows.len(), count, "{sql}"),
        other => panic!("{sql}: {other:?}"),
    }
}

/// `ops` divided by the seconds `work` takes.
fn rate(ops: usize, work: impl FnOnce()) -> f64 {
    let start = Instant::now();
    work();
    ops as f64 / start.elapsed().as_secs_f64()
}

fn print_table(sizes: &Sizes, results: &[(&str, Rates)]) {
    println!(
        "{} rows in INSERTs of {BATCH}; {} SELECTs by primary key; {} SELECTs of {RANGE}-row key ranges",
        sizes.rows, sizes.points, sizes.ranges
    );
    println!("{:<18} {:>14} {:>14} {:>14}", "storage", "insert rows/s", "point q/s", "range q/s");
    for (name, r) in results {
        println!("{name:<18} {:>14.0} {:>14.0} {:>14.1}", r.insert, r.point, r.range);
    }
    let peers: Vec<&Rates> =
        results.iter().filter(|(n, _)| !n.starts_with("helio")).map(|(_, r)| r).collect();
    let best = |f: fn(&Rates) -> f64| peers.iter().map(|r| f(r)).fold(0.0, f64::max);
    for (name, r) in results.iter().filter(|(n, _)| n.starts_with("helio")) {
        println!(
            "{:<18} {:>13.2}x {:>13.2}x {:>13.2}x",
            format!("{name} / best peer"),
            r.insert / best(|r| r.insert),
            r.point / best(|r| r.point),
            r.range / best(|r| r.range)
        );
    }
}
