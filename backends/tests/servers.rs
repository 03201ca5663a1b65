//! Tests against real servers: the conformance suite on the shared Redis and S3 (moto) servers
//! that `ci/remote-servers.sh` starts, and outages of servers these tests start, kill and restart
//! themselves. Without the servers they fail, saying how to start them; they never pass unrun.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Kind, Server};
use helio_backends::{
    conformance, ExternalStore, ExternalStoreHandleExt, RedisConfig, RedisStore, RemoteError, RetryPolicy,
    S3Config, S3Store, SharedReads,
};

/// Calls give up after 4 attempts within 1 s of pauses.
fn short_retries() -> RetryPolicy {
    RetryPolicy::default().attempts_max(4).deadline(Duration::from_secs(1))
}

/// The longest an outage may hold a call: the retry deadline plus one attempt's timeout, plus slack.
const OUTAGE_BOUND: Duration = Duration::from_secs(1 + 2 + 2);

fn s3_config(endpoint: &str, bucket: &str) -> S3Config {
    S3Config::new(bucket).endpoint(endpoint).region("us-east-1").credentials("testing", "testing")
}

fn prefix() -> String {
    format!("helio-test-{:08x}:", fastrand::u32(..))
}

/// Asserts that `call` fails with `Unavailable` within [`OUTAGE_BOUND`].
fn unavailable_in_time<T: std::fmt::Debug>(what: &str, call: impl FnOnce() -> Result<T, RemoteError>) {
    let start = Instant::now();
    let result = call();
    let spent = start.elapsed();
    assert!(matches!(result, Err(RemoteError::Unavailable(_))), "{what} during the outage gave {result:?}");
    assert!(spent < OUTAGE_BOUND, "{what} took {spent:?} to give up");
}

/// One call of [`churn`]: when it began, how long it took, how it ended.
struct Call {
    began: Instant,
    took: Duration,
    result: Result<(), RemoteError>,
}

/// Puts and reads back one object after another until `stop` (at most 20,000 calls or 60 s),
/// timing each call; a read that does not give back what its put stored is an error.
fn churn(handle: &mut dyn helio_backends::ExternalStoreHandle, stop: &AtomicBool) -> Vec<Call> {
    let mut calls = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Acquire) && calls.len() < 20_000 && start.elapsed() < Duration::from_secs(60) {
        let (key, value) = (format!("churn-{i}"), Bytes::from(vec![i as u8; 3000 + i as usize % 5000]));
        let began = Instant::now();
        let put = handle.put(&key, value.clone());
        calls.push(Call { began, took: began.elapsed(), result: put.clone() });
        if put.is_ok() {
            let began = Instant::now();
            let result = match handle.get_all(&key) {
                Ok(Some(read)) if read == value => Ok(()),
                Ok(other) => {
                    Err(RemoteError::Other(format!("{key} read back as {:?} bytes", other.map(|b| b.len()))))
                }
                Err(e) => Err(e),
            };
            calls.push(Call { began, took: began.elapsed(), result });
        }
        i += 1;
    }
    calls
}

/// Checks what [`churn`] saw across an outage from `killed` to `restarted` (if it ran that long):
/// every call succeeded or was `Unavailable` within [`OUTAGE_BOUND`], calls failed during the
/// outage, and every call that began a while after the restart succeeded.
fn check_churn(calls: &[Call], killed: Instant, restarted: Option<Instant>) {
    for call in calls {
        let ok = matches!(call.result, Ok(()) | Err(RemoteError::Unavailable(_)));
        assert!(ok, "a call across the outage gave {:?}", call.result);
        assert!(call.took < OUTAGE_BOUND, "a call across the outage took {:?}", call.took);
    }
    assert!(calls.iter().any(|c| c.began < killed && c.result.is_ok()), "no call succeeded before the kill");
    let failed = calls.iter().filter(|c| c.result.is_err()).count();
    let longest = calls.iter().map(|c| c.took).max().unwrap_or_default();
    eprintln!("across the outage: {} calls, {failed} Unavailable, the longest took {longest:?}", calls.len());
    assert!(failed > 0, "no call failed while the server was down");
    if let Some(restarted) = restarted {
        let settled = restarted + Duration::from_millis(300);
        let after: Vec<_> = calls.iter().filter(|c| c.began > settled).collect();
        assert!(!after.is_empty(), "no call was made after the restart");
        assert!(after.iter().all(|c| c.result.is_ok()), "calls still failed after the restart");
    }
}

mod redis {
    use super::*;

    fn redis_keys(url: &str, pattern: &str) -> Vec<Vec<u8>> {
        let client = ::redis::Client::open(url).unwrap();
        let mut connection = client.get_connection().unwrap();
        ::redis::cmd("KEYS").arg(pattern).query(&mut connection).unwrap()
    }

    #[test]
    fn passes_the_conformance_suite_with_1_mib_chunks() {
        let store = RedisStore::new(RedisConfig::new(common::redis_url()).prefix(prefix())).unwrap();
        assert!(conformance::run(&store).conditional_create);
    }

    #[test]
    fn passes_the_conformance_suite_with_small_chunks() {
        let config = RedisConfig::new(common::redis_url()).prefix(prefix()).chunk_bytes(64 << 10);
        assert!(conformance::run(&RedisStore::new(config).unwrap()).conditional_create);
    }

    #[test]
    fn leaves_only_the_chunks_of_the_latest_put_and_none_after_delete() {
        let url = common::redis_url();
        let prefix = prefix();
        let config = RedisConfig::new(&url).prefix(&prefix).chunk_bytes(1 << 10);
        let mut handle = RedisStore::new(config).unwrap().connect().unwrap();
        let all = format!("{prefix}*");
        handle.put("obj", Bytes::from(vec![7; 10 * 1024])).unwrap();
        assert_eq!(redis_keys(&url, &all).len(), 1 + 10, "a manifest and 10 chunks");
        handle.put("obj", Bytes::from(vec![8; 3 * 1024 + 1])).unwrap();
        assert_eq!(redis_keys(&url, &all).len(), 1 + 4, "the old chunks were not deleted");
        let client = ::redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_connection().unwrap();
        for key in redis_keys(&url, &format!("{prefix}c:*")) {
            let ttl: i64 = ::redis::cmd("PTTL").arg(&key).query(&mut connection).unwrap();
            assert_eq!(ttl, -1, "a published chunk still expires");
        }
        handle.put("obj", Bytes::from_static(b"inline")).unwrap();
        assert_eq!(redis_keys(&url, &all).len(), 1);
        handle.delete("obj").unwrap();
        assert!(redis_keys(&url, &all).is_empty());
    }

    #[test]
    fn refuses_wrong_credentials_as_denied() {
        let server = Server::start(Kind::Redis(&["--requirepass", "sesame"]));
        let address = server.url().trim_start_matches("redis://").to_owned();
        let wrong = RedisStore::new(RedisConfig::new(format!("redis://:nope@{address}"))).unwrap();
        assert!(matches!(wrong.connect().map(drop), Err(RemoteError::Denied(_))));
        let none = RedisStore::new(RedisConfig::new(server.url())).unwrap();
        let mut handle = none.connect().unwrap();
        assert!(matches!(handle.get_all("k"), Err(RemoteError::Denied(_))));
        let right = RedisStore::new(RedisConfig::new(format!("redis://:sesame@{address}"))).unwrap();
        right.connect().unwrap().put("k", Bytes::from_static(b"v")).unwrap();
    }

    #[test]
    fn killed_mid_run_calls_fail_in_bounded_time_and_work_after_restart() {
        // Every acknowledged write is on disk before the reply, so reads after the restart see it.
        let mut server = Server::start(Kind::Redis(&["--appendonly", "yes", "--appendfsync", "always"]));
        let config = RedisConfig::new(server.url()).chunk_bytes(1 << 10).retry(short_retries());
        let store = RedisStore::new(config.io_timeout(Duration::from_secs(2))).unwrap();
        let mut handle = store.connect().unwrap();
        let stop = AtomicBool::new(false);
        let (calls, killed, restarted) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| churn(handle.as_mut(), &stop));
            std::thread::sleep(Duration::from_millis(300));
            server.kill();
            let killed = Instant::now();
            std::thread::sleep(Duration::from_millis(2500));
            server.restart();
            let restarted = Instant::now();
            std::thread::sleep(Duration::from_millis(1500));
            stop.store(true, Ordering::Release);
            (worker.join().unwrap(), killed, restarted)
        });
        check_churn(&calls, killed, Some(restarted));
    }

    #[test]
    fn outage_gives_unavailable_in_bounded_time_then_works_again() {
        let mut server = Server::start(Kind::Redis(&[]));
        let config = RedisConfig::new(server.url()).chunk_bytes(1 << 10).retry(short_retries());
        let store = RedisStore::new(config.io_timeout(Duration::from_secs(2))).unwrap();
        let mut handle = store.connect().unwrap();
        let reads = SharedReads::new(
            std::sync::Arc::new(RedisStore::new(RedisConfig::new(server.url())).unwrap()),
            4,
            512,
        );
        handle.put("before", Bytes::from(vec![1; 5000])).unwrap();
        assert_eq!(reads.read("before", 0..3).unwrap(), Bytes::from_static(&[1, 1, 1]));

        server.kill();
        unavailable_in_time("put", || handle.put("during", Bytes::from(vec![2; 5000])));
        unavailable_in_time("get", || handle.get_all("before"));
        unavailable_in_time("delete", || handle.delete("before"));
        unavailable_in_time("connect", || store.connect().map(drop));
        unavailable_in_time("shared read", || reads.read("before", 600..700));

        server.restart();
        handle.put("after", Bytes::from(vec![3; 5000])).unwrap();
        assert_eq!(handle.get_all("after").unwrap(), Some(Bytes::from(vec![3; 5000])));
        store.connect().unwrap().delete("after").unwrap();
        reads.read("after", 0..1).expect_err("deleted, so NotFound");
    }
}

mod s3 {
    use super::*;

    #[test]
    fn passes_the_conformance_suite() {
        let endpoint = common::s3_endpoint();
        let bucket = common::fresh_bucket("conformance");
        common::create_bucket(&endpoint, &bucket);
        let store = S3Store::new(s3_config(&endpoint, &bucket)).unwrap();
        assert!(conformance::run(&store).conditional_create, "moto supports If-None-Match");
    }

    #[test]
    fn passes_the_conformance_suite_under_a_prefix() {
        let endpoint = common::s3_endpoint();
        let bucket = common::fresh_bucket("prefix");
        common::create_bucket(&endpoint, &bucket);
        let store = S3Store::new(s3_config(&endpoint, &bucket).prefix("tier/segments")).unwrap();
        conformance::run(&store);
    }

    #[test]
    fn a_missing_bucket_is_denied() {
        let endpoint = common::s3_endpoint();
        let store = S3Store::new(s3_config(&endpoint, &common::fresh_bucket("missing"))).unwrap();
        let mut handle = store.connect().unwrap();
        let denied = |result: Result<(), RemoteError>| matches!(result, Err(RemoteError::Denied(why)) if why.contains("does not exist"));
        assert!(denied(handle.put("k", Bytes::from_static(b"v"))));
        assert!(denied(handle.get("k", 0..10).map(drop)));
        assert!(denied(handle.get("k", 0..0).map(drop)));
    }

    #[test]
    fn conditional_create_can_be_turned_off() {
        let endpoint = common::s3_endpoint();
        let bucket = common::fresh_bucket("nocreate");
        common::create_bucket(&endpoint, &bucket);
        let store = S3Store::new(s3_config(&endpoint, &bucket).conditional_create(false)).unwrap();
        let mut handle = store.connect().unwrap();
        assert!(matches!(handle.put_if_absent("k", Bytes::new()), Err(RemoteError::Unsupported(_))));
        assert!(!conformance::run(&store).conditional_create);
    }

    #[test]
    fn killed_mid_run_calls_fail_in_bounded_time_and_work_after_restart() {
        let mut server = Server::start(Kind::Moto);
        common::create_bucket(&server.url(), "churn");
        let config =
            s3_config(&server.url(), "churn").retry(short_retries()).request_timeout(Duration::from_secs(2));
        let store = S3Store::new(config).unwrap();
        let mut handle = store.connect().unwrap();
        let stop = AtomicBool::new(false);
        // moto keeps objects in memory, so the run stops before the restart, which loses them.
        let (calls, killed) = std::thread::scope(|scope| {
            let worker = scope.spawn(|| churn(handle.as_mut(), &stop));
            std::thread::sleep(Duration::from_millis(500));
            server.kill();
            let killed = Instant::now();
            std::thread::sleep(Duration::from_millis(2500));
            stop.store(true, Ordering::Release);
            (worker.join().unwrap(), killed)
        });
        check_churn(&calls, killed, None);
        server.restart();
        common::create_bucket(&server.url(), "churn");
        handle.put("after", Bytes::from_static(b"back")).unwrap();
        assert_eq!(handle.get_all("after").unwrap(), Some(Bytes::from_static(b"back")));
    }

    #[test]
    fn outage_gives_unavailable_in_bounded_time_then_works_again() {
        let mut server = Server::start(Kind::Moto);
        let bucket = "outage";
        common::create_bucket(&server.url(), bucket);
        let config =
            s3_config(&server.url(), bucket).retry(short_retries()).request_timeout(Duration::from_secs(2));
        let store = S3Store::new(config).unwrap();
        let mut handle = store.connect().unwrap();
        handle.put("before", Bytes::from(vec![1; 5000])).unwrap();
        assert_eq!(handle.get("before", 10..13).unwrap(), Some(Bytes::from_static(&[1, 1, 1])));

        server.kill();
        unavailable_in_time("put", || handle.put("during", Bytes::from(vec![2; 5000])));
        unavailable_in_time("get", || handle.get_all("before"));
        unavailable_in_time("delete", || handle.delete("before"));

        server.restart();
        common::create_bucket(&server.url(), bucket);
        handle.put("after", Bytes::from(vec![3; 5000])).unwrap();
        assert_eq!(handle.get_all("after").unwrap(), Some(Bytes::from(vec![3; 5000])));
    }
}
