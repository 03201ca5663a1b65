//! Measures the remote backends against loopback servers: throughput and p50/p99 latency of 4 KiB
//! ranged gets and 1 MiB puts from 1 and 16 threads, on S3 (moto) and Redis; and the share of
//! fetches that [`SharedReads`] saves when 32 readers read the same blocks at once.
//!
//! Start the servers first (`eval "$(bash ci/remote-servers.sh start)"`), then:
//! `cargo run --release -p helio-backends --example remote_bench`
//! (`--help` lists the options; the addresses default to the variables that script exports).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use helio_backends::{
    ExternalStore, ExternalStoreHandle, RedisConfig, RedisStore, S3Config, S3Store, SharedReads,
};

#[derive(Parser)]
#[command(about = "Throughput and latency of the remote backends on loopback servers")]
struct Args {
    /// The Redis server [default: $HELIO_TEST_REDIS_URL].
    #[arg(long)]
    redis_url: Option<String>,
    /// The S3-compatible server; a bucket is created on it with an unsigned PUT, as moto takes
    /// [default: $HELIO_TEST_S3_ENDPOINT].
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    threads: Vec<usize>,
    /// 4 KiB gets per measurement (split over the threads).
    #[arg(long, default_value_t = 4000)]
    gets: usize,
    /// 1 MiB puts per measurement (split over the threads).
    #[arg(long, default_value_t = 320)]
    puts: usize,
    /// MiB of the object the gets and shared reads read (moto copies the whole object for each
    /// ranged get, so its gets slow down with this).
    #[arg(long, default_value_t = 8)]
    object_mib: usize,
    /// A measurement stops issuing calls after this many seconds, whatever its count.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

const GET_BYTES: u64 = 4 << 10;
const PUT_BYTES: usize = 1 << 20;
/// Shared reads: readers, block size and pool size; each reader reads every block of the object.
const READERS: usize = 32;
const SHARED_BLOCK_BYTES: u64 = 64 << 10;
const SHARED_BUFFERS: usize = 64;

fn main() {
    let args = Args::parse();
    let redis_url = address(args.redis_url.clone(), "--redis-url", "HELIO_TEST_REDIS_URL");
    let s3_endpoint = address(args.s3_endpoint.clone(), "--s3-endpoint", "HELIO_TEST_S3_ENDPOINT");
    let bucket = format!("helio-bench-{:08x}", fastrand::u32(..));
    create_bucket(&s3_endpoint, &bucket);
    let s3 = S3Config::new(&bucket).endpoint(&s3_endpoint).region("us-east-1").credentials("bench", "bench");
    let stores: [(&str, Arc<dyn ExternalStore>); 2] = [
        ("s3 (moto)", Arc::new(S3Store::new(s3).expect("S3 store"))),
        ("redis", Arc::new(RedisStore::new(RedisConfig::new(&redis_url).prefix("helio-bench:")).unwrap())),
    ];
    println!("| store | op | threads | calls | ops/s | MiB/s | p50 | p99 |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, store) in &stores {
        for &threads in &args.threads {
            report(name, "put 1 MiB", threads, PUT_BYTES, &measure_puts(store.as_ref(), threads, &args));
        }
        let object = pattern(args.object_mib << 20);
        store.connect().unwrap().put("bench/object", object).expect("put the object to read");
        for &threads in &args.threads {
            report(
                name,
                "get 4 KiB",
                threads,
                GET_BYTES as usize,
                &measure_gets(store.as_ref(), threads, &args),
            );
        }
    }
    println!();
    for (name, store) in &stores {
        shared_reads(name, store, &args);
    }
}

/// The option's value, else the variable's, else an exit that says how to start the servers.
fn address(option: Option<String>, flag: &str, var: &str) -> String {
    option.or_else(|| std::env::var(var).ok()).unwrap_or_else(|| {
        eprintln!(
            "no {flag} and no {var}: start the servers with `eval \"$(bash ci/remote-servers.sh start)\"`"
        );
        std::process::exit(2)
    })
}

/// What one measurement saw: each call's latency, and the wall time of all of them.
struct Run {
    latencies: Vec<Duration>,
    wall: Duration,
}

fn report(store: &str, op: &str, threads: usize, bytes: usize, run: &Run) {
    let mut sorted = run.latencies.clone();
    sorted.sort();
    let at = |q: usize| sorted[(sorted.len() * q / 100).min(sorted.len() - 1)];
    let ops = sorted.len() as f64 / run.wall.as_secs_f64();
    let mib = ops * bytes as f64 / f64::from(1 << 20);
    let (calls, p50, p99) = (sorted.len(), at(50), at(99));
    println!("| {store} | {op} | {threads} | {calls} | {ops:.0} | {mib:.1} | {p50:.2?} | {p99:.2?} |");
}

/// Runs `calls` calls of `call(handle, thread, i)` split over `threads` threads, each with its own
/// handle, and times each.
fn run_threads<F>(store: &dyn ExternalStore, threads: usize, calls: usize, seconds: u64, call: F) -> Run
where
    F: Fn(&mut dyn ExternalStoreHandle, usize, usize) + Sync,
{
    let barrier = Barrier::new(threads + 1);
    let cap = Duration::from_secs(seconds);
    let mut start = Instant::now();
    let latencies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let mut handle = store.connect().expect("connect");
                let (barrier, call) = (&barrier, &call);
                scope.spawn(move || {
                    barrier.wait();
                    let began = Instant::now();
                    let mut latencies = Vec::new();
                    for i in (thread..calls).step_by(threads) {
                        if began.elapsed() > cap {
                            break;
                        }
                        let t = Instant::now();
                        call(handle.as_mut(), thread, i);
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        barrier.wait();
        start = Instant::now();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    Run { latencies, wall: start.elapsed() }
}

fn measure_puts(store: &dyn ExternalStore, threads: usize, args: &Args) -> Run {
    let value = pattern(PUT_BYTES);
    let run = run_threads(store, threads, args.puts, args.seconds, |handle, thread, i| {
        handle.put(&format!("bench/put/{thread}/{}", i % 8), value.clone()).expect("put");
    });
    let mut handle = store.connect().unwrap();
    for thread in 0..threads {
        (0..8).for_each(|i| handle.delete(&format!("bench/put/{thread}/{i}")).expect("delete"));
    }
    run
}

fn measure_gets(store: &dyn ExternalStore, threads: usize, args: &Args) -> Run {
    let blocks = ((args.object_mib as u64) << 20) / GET_BYTES;
    run_threads(store, threads, args.gets, args.seconds, |handle, _, i| {
        let at = (i as u64 * 7919 % blocks) * GET_BYTES;
        let got = handle.get("bench/object", at..at + GET_BYTES).expect("get").expect("the object");
        assert_eq!(got.len() as u64, GET_BYTES);
    })
}

/// 32 readers read 4 KiB of every 64 KiB block of the object, in the same order, together:
/// through [`SharedReads`], and each with its own handle (one fetch per read) for comparison.
fn shared_reads(name: &str, store: &Arc<dyn ExternalStore>, args: &Args) {
    let blocks = ((args.object_mib as u64) << 20) / SHARED_BLOCK_BYTES;
    let cap = Duration::from_secs(args.seconds);
    let reads = SharedReads::new(Arc::clone(store), SHARED_BUFFERS, SHARED_BLOCK_BYTES);
    let (shared_done, shared_time) = readers(blocks, cap, |_, block| {
        let at = block * SHARED_BLOCK_BYTES;
        reads.read("bench/object", at..at + GET_BYTES).expect("shared read");
    });
    let handles: Vec<_> = (0..READERS).map(|_| Mutex::new(store.connect().unwrap())).collect();
    let (direct_done, direct_time) = readers(blocks, cap, |reader, block| {
        let at = block * SHARED_BLOCK_BYTES;
        let mut handle = handles[reader].lock().unwrap();
        handle.get("bench/object", at..at + GET_BYTES).expect("get").expect("the object");
    });
    let stats = reads.stats();
    let saved = 100.0 * (1.0 - stats.fetches as f64 / shared_done as f64);
    let rate = |done: u64, time: Duration| done as f64 / time.as_secs_f64();
    println!(
        "{name}: {READERS} readers x {blocks} blocks of 64 KiB (4 KiB read from each), pool of {SHARED_BUFFERS}: \
         {} fetches for {shared_done} reads, {saved:.1}% of fetches saved ({} reads shared a fetch, {} from \
         the pool, {} busy), {:.0} reads/s; one fetch per read: {:.0} reads/s ({direct_done} reads)",
        stats.fetches,
        stats.shared,
        stats.pool_hits,
        stats.busy,
        rate(shared_done, shared_time),
        rate(direct_done, direct_time),
    );
}

/// [`READERS`] threads call `read(reader, block)` for every block in order, together, until done
/// or `cap` has passed; the reads made and the wall time.
fn readers(blocks: u64, cap: Duration, read: impl Fn(usize, u64) + Sync) -> (u64, Duration) {
    let barrier = Barrier::new(READERS);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for reader in 0..READERS {
            let (barrier, read, done) = (&barrier, &read, &done);
            scope.spawn(move || {
                barrier.wait();
                for block in (0..blocks).take_while(|_| start.elapsed() < cap) {
                    read(reader, block);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (done.into_inner(), start.elapsed())
}

fn pattern(len: usize) -> Bytes {
    let mut bytes = vec![0; len];
    fastrand::Rng::with_seed(7).fill(&mut bytes);
    Bytes::from(bytes)
}

/// Creates `bucket` with an unsigned `PUT /bucket` (moto takes it; a real service would not).
fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let authority = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest).trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to the S3 endpoint");
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "create bucket: {}",
        answer.lines().next().unwrap_or_default()
    );
}
