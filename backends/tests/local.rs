//! Tests that need no server: the memory and file-system backends through the conformance suite,
//! the fault injector, retries, and shared reads.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use helio_backends::{
    conformance, ExternalStore, ExternalStoreHandleExt, Fault, FaultyStore, FsStore, MemoryStore, Op,
    RemoteError, RetryPolicy, Retrying, SharedReads,
};

fn pattern(seed: u64, len: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    Bytes::from(bytes)
}

/// A memory store with `objects` put in it, behind a fault injector.
fn faulty_memory(objects: &[(&str, Bytes)]) -> Arc<FaultyStore> {
    let memory = MemoryStore::new();
    let mut handle = memory.connect().unwrap();
    for (key, bytes) in objects {
        handle.put(key, bytes.clone()).unwrap();
    }
    Arc::new(FaultyStore::new(Arc::new(memory)))
}

mod backends {
    use super::*;

    #[test]
    fn memory_passes_the_conformance_suite() {
        let report = conformance::run(&MemoryStore::new());
        assert!(report.conditional_create);
    }

    #[test]
    fn fs_passes_the_conformance_suite_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path().join("objects")).unwrap();
        let report = conformance::run(&store);
        assert!(report.conditional_create);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("objects")).unwrap().collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }

    #[test]
    fn fs_names_files_by_escaped_keys_and_refuses_names_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let mut handle = store.connect().unwrap();
        handle.put("shard-1/seg.0001", Bytes::from_static(b"x")).unwrap();
        assert!(dir.path().join("shard-1%2Fseg.0001").is_file());
        let long = "/".repeat(100);
        assert!(matches!(handle.put(&long, Bytes::new()), Err(RemoteError::Invalid(_))));
    }

    #[test]
    fn fs_refuses_a_file_as_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        assert!(matches!(FsStore::open(dir.path().join("file")), Err(RemoteError::Invalid(_))));
    }

    #[test]
    fn faulty_store_passes_the_conformance_suite_when_no_fault_is_injected() {
        let store = FaultyStore::new(Arc::new(MemoryStore::new()));
        conformance::run(&store);
        assert!(store.calls(Op::Put) > 50 && store.calls(Op::Get) > 50, "the calls went through it");
    }
}

mod faults {
    use super::*;

    #[test]
    fn each_error_variant_fails_the_call_without_making_it() {
        let store = faulty_memory(&[("k", Bytes::from_static(b"old"))]);
        let mut handle = store.connect().unwrap();
        let errors = [
            RemoteError::NotFound,
            RemoteError::Unavailable("injected".into()),
            RemoteError::Denied("injected".into()),
            RemoteError::Busy,
            RemoteError::AlreadyExists,
            RemoteError::Unsupported("injected".into()),
            RemoteError::Invalid("injected".into()),
            RemoteError::Other("injected".into()),
        ];
        for error in errors {
            store.inject(Fault::error(error.clone()).nth(1));
            assert_eq!(handle.put("k", Bytes::from_static(b"new")), Err(error));
        }
        assert_eq!(handle.get_all("k").unwrap(), Some(Bytes::from_static(b"old")), "a failed put wrote");
    }

    #[test]
    fn nth_fails_only_that_call_and_on_narrows_the_operations() {
        let store = faulty_memory(&[("k", Bytes::from_static(b"v"))]);
        let mut handle = store.connect().unwrap();
        store.inject(Fault::error(RemoteError::Other("third get".into())).on(Op::Get).nth(3));
        assert!(handle.get_all("k").is_ok());
        handle.put("k", Bytes::from_static(b"v")).unwrap();
        assert!(handle.get_all("k").is_ok());
        assert_eq!(handle.get_all("k"), Err(RemoteError::Other("third get".into())));
        assert!(handle.get_all("k").is_ok(), "only the third get fails");
        assert_eq!((store.calls(Op::Get), store.calls(Op::Put)), (4, 1));
    }

    #[test]
    fn times_fails_the_next_calls_and_clear_removes_faults() {
        let store = faulty_memory(&[]);
        let mut handle = store.connect().unwrap();
        store.inject(Fault::error(RemoteError::Busy).times(2));
        assert_eq!(handle.delete("k"), Err(RemoteError::Busy));
        assert_eq!(handle.delete("k"), Err(RemoteError::Busy));
        assert_eq!(handle.delete("k"), Ok(()));
        store.inject(Fault::error(RemoteError::Busy));
        assert_eq!(handle.delete("k"), Err(RemoteError::Busy));
        store.clear();
        assert_eq!(handle.delete("k"), Ok(()));
    }

    #[test]
    fn latency_delays_and_timeout_fails_after_waiting() {
        let store = faulty_memory(&[("k", Bytes::from_static(b"v"))]);
        let mut handle = store.connect().unwrap();
        store.inject(Fault::latency(Duration::from_millis(150)).nth(1));
        let start = Instant::now();
        assert_eq!(handle.get_all("k").unwrap(), Some(Bytes::from_static(b"v")));
        assert!(start.elapsed() >= Duration::from_millis(150));
        store.inject(Fault::timeout(Duration::from_millis(150)).nth(1));
        let start = Instant::now();
        assert!(matches!(handle.get_all("k"), Err(RemoteError::Unavailable(why)) if why.contains("timeout")));
        assert!(start.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn connect_faults_apply_to_connect_and_store_faults_to_existing_handles() {
        let store = faulty_memory(&[]);
        let mut early = store.connect().unwrap();
        store.inject(Fault::error(RemoteError::Denied("no".into())).on(Op::Connect).nth(1));
        assert!(matches!(store.connect(), Err(RemoteError::Denied(_))));
        assert!(store.connect().is_ok());
        store.inject(Fault::error(RemoteError::Other("late".into())).on(Op::PutIfAbsent));
        assert_eq!(early.put_if_absent("k", Bytes::new()), Err(RemoteError::Other("late".into())));
        assert_eq!(store.calls(Op::Connect), 3);
    }
}

mod retries {
    use super::*;

    fn quick() -> RetryPolicy {
        RetryPolicy::default()
            .backoff_initial(Duration::from_millis(5))
            .backoff_max(Duration::from_millis(20))
    }

    #[test]
    fn unavailable_is_retried_until_it_works() {
        let faulty = faulty_memory(&[]);
        let store = Retrying::new(faulty.clone(), quick()).unwrap();
        let mut handle = store.connect().unwrap();
        faulty.inject(Fault::error(RemoteError::Unavailable("blip".into())).on(Op::Put).times(2));
        handle.put("k", Bytes::from_static(b"v")).unwrap();
        assert_eq!(faulty.calls(Op::Put), 3);
        assert_eq!(handle.get_all("k").unwrap(), Some(Bytes::from_static(b"v")));
    }

    #[test]
    fn retries_stop_at_the_attempt_limit_and_the_deadline() {
        let faulty = faulty_memory(&[]);
        let store = Retrying::new(faulty.clone(), quick().attempts_max(4)).unwrap();
        let mut handle = store.connect().unwrap();
        faulty.inject(Fault::error(RemoteError::Unavailable("down".into())));
        let result = handle.get_all("k");
        assert!(matches!(result, Err(RemoteError::Unavailable(why)) if why.contains("after 4 attempts")));
        assert_eq!(faulty.calls(Op::Get), 4);

        faulty.clear();
        let policy = quick().attempts_max(100).deadline(Duration::from_millis(300));
        let store = Retrying::new(faulty.clone(), policy).unwrap();
        let mut handle = store.connect().unwrap();
        faulty.inject(Fault::timeout(Duration::from_millis(50)));
        let start = Instant::now();
        assert!(matches!(handle.delete("k"), Err(RemoteError::Unavailable(_))));
        let spent = start.elapsed();
        assert!(spent < Duration::from_millis(300 + 50 + 100), "retried for {spent:?}");
        assert!(spent >= Duration::from_millis(250), "gave up early, after {spent:?}");
    }

    #[test]
    fn errors_that_retrying_cannot_fix_are_returned_at_once() {
        let faulty = faulty_memory(&[]);
        let store = Retrying::new(faulty.clone(), quick()).unwrap();
        let mut handle = store.connect().unwrap();
        faulty.inject(Fault::error(RemoteError::Denied("credentials".into())).nth(1));
        assert_eq!(handle.put("k", Bytes::new()), Err(RemoteError::Denied("credentials".into())));
        assert_eq!(faulty.calls(Op::Put), 1);
    }

    #[test]
    fn an_invalid_policy_is_refused() {
        let store = Arc::new(MemoryStore::new());
        assert!(matches!(
            Retrying::new(store, RetryPolicy::default().attempts_max(0)),
            Err(RemoteError::Invalid(_))
        ));
    }
}

mod shared_reads {
    use super::*;

    const BLOCK: u64 = 4096;

    /// Runs `readers` threads that start `read` together and returns what each got.
    fn together<T: Send>(readers: usize, read: impl Fn(usize) -> T + Sync) -> Vec<T> {
        let barrier = Barrier::new(readers);
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..readers)
                .map(|i| {
                    let (barrier, read) = (&barrier, &read);
                    scope.spawn(move || {
                        barrier.wait();
                        read(i)
                    })
                })
                .collect();
            threads.into_iter().map(|thread| thread.join().unwrap()).collect()
        })
    }

    #[test]
    fn thirty_two_readers_of_one_block_cause_one_fetch() {
        let object = pattern(1, 10 * BLOCK as usize);
        let store = faulty_memory(&[("seg", object.clone())]);
        store.inject(Fault::latency(Duration::from_millis(300)).on(Op::Get));
        let reads = SharedReads::new(store.clone(), 8, BLOCK);
        let got = together(32, |i| reads.read("seg", BLOCK + i as u64..BLOCK + 100 + i as u64));
        for (i, bytes) in got.into_iter().enumerate() {
            let at = BLOCK as usize + i;
            assert_eq!(bytes.unwrap(), object.slice(at..at + 100));
        }
        assert_eq!(store.calls(Op::Get), 1, "the store saw more than one fetch");
        let stats = reads.stats();
        assert_eq!(stats.fetches, 1);
        assert_eq!(stats.shared + stats.pool_hits, 31);
        assert!(stats.shared > 0, "no reader waited for the fetch: {stats:?}");
    }

    #[test]
    fn a_failed_fetch_fails_all_its_waiters_and_is_not_cached() {
        let object = pattern(2, 4 * BLOCK as usize);
        let store = faulty_memory(&[("seg", object.clone())]);
        store.inject(Fault::latency(Duration::from_millis(300)).on(Op::Get).nth(1));
        store.inject(Fault::error(RemoteError::Unavailable("injected".into())).on(Op::Get).nth(1));
        let reads = SharedReads::new(store.clone(), 8, BLOCK);
        let got = together(32, |_| reads.read("seg", 0..10));
        for result in got {
            assert_eq!(result, Err(RemoteError::Unavailable("injected".into())));
        }
        assert_eq!(store.calls(Op::Get), 1);
        assert_eq!(reads.read("seg", 0..10).unwrap(), object.slice(0..10), "the failure was cached");
        assert_eq!(store.calls(Op::Get), 2);
        let stats = reads.stats();
        assert_eq!((stats.fetches, stats.fetch_failures, stats.resident), (2, 1, 1));
    }

    #[test]
    fn the_pool_stays_bounded_and_drops_the_least_recently_used() {
        let object = pattern(3, 64 * BLOCK as usize);
        let store = faulty_memory(&[("seg", object.clone())]);
        let reads = SharedReads::new(store.clone(), 4, BLOCK);
        for block in 0..64 {
            let at = block * BLOCK;
            assert_eq!(reads.read("seg", at..at + 10).unwrap(), object.slice(at as usize..at as usize + 10));
            assert!(reads.stats().resident <= 4);
        }
        assert_eq!(store.calls(Op::Get), 64);
        for block in [60, 61, 62, 63] {
            reads.read("seg", block * BLOCK..block * BLOCK + 1).unwrap();
        }
        assert_eq!(store.calls(Op::Get), 64, "the last four blocks were not kept");
        reads.read("seg", 0..1).unwrap();
        assert_eq!(store.calls(Op::Get), 65);
        for block in [61, 62, 63] {
            reads.read("seg", block * BLOCK..block * BLOCK + 1).unwrap();
        }
        assert_eq!(store.calls(Op::Get), 65, "a recently used block was dropped");
        reads.read("seg", 60 * BLOCK..60 * BLOCK + 1).unwrap();
        assert_eq!(store.calls(Op::Get), 66, "block 60, least recently used, should have gone");
        let stats = reads.stats();
        assert_eq!((stats.fetches, stats.pool_hits, stats.resident), (66, 7, 4));
    }

    #[test]
    fn busy_after_the_deadline_when_every_buffer_is_in_use() {
        let object = pattern(4, 8 * BLOCK as usize);
        let store = faulty_memory(&[("seg", object.clone())]);
        store.inject(Fault::latency(Duration::from_millis(800)).on(Op::Get).times(2));
        let reads = SharedReads::new(store.clone(), 2, BLOCK).with_busy_deadline(Duration::from_millis(100));
        let reads = &reads;
        std::thread::scope(|scope| {
            let holders: Vec<_> = (0..2).map(|b| scope.spawn(move || reads_block(reads, b))).collect();
            while reads.stats().fetches < 2 {
                std::thread::sleep(Duration::from_millis(5));
            }
            let start = Instant::now();
            assert_eq!(reads.read("seg", 2 * BLOCK..2 * BLOCK + 1), Err(RemoteError::Busy));
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(100) && waited < Duration::from_millis(700),
                "{waited:?}"
            );
            for holder in holders {
                holder.join().unwrap().unwrap();
            }
        });
        assert_eq!(reads.stats().busy, 1);
        assert_eq!(reads.read("seg", 2 * BLOCK..2 * BLOCK + 1).unwrap(), object.slice(8192..8193));
    }

    fn reads_block(reads: &SharedReads, block: u64) -> Result<Bytes, RemoteError> {
        reads.read("seg", block * BLOCK..block * BLOCK + 1)
    }

    #[test]
    fn a_reader_waits_for_a_buffer_within_the_deadline() {
        let object = pattern(5, 4 * BLOCK as usize);
        let store = faulty_memory(&[("seg", object.clone())]);
        store.inject(Fault::latency(Duration::from_millis(200)).on(Op::Get).nth(1));
        let reads = SharedReads::new(store.clone(), 1, BLOCK);
        std::thread::scope(|scope| {
            let first = scope.spawn(|| reads_block(&reads, 0));
            while reads.stats().fetches < 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                reads_block(&reads, 1).unwrap(),
                object.slice(4096..4097),
                "the default deadline is 1 s"
            );
            first.join().unwrap().unwrap();
        });
        assert_eq!(reads.stats().busy, 0);
    }

    #[test]
    fn reads_across_blocks_return_their_whole_range_cut_at_the_end() {
        let len = 5 * BLOCK as usize + 123;
        let object = pattern(6, len);
        let store = faulty_memory(&[("seg", object.clone()), ("empty", Bytes::new())]);
        let reads = SharedReads::new(store, 2, BLOCK);
        assert_eq!(reads.read("seg", 100..3 * BLOCK + 7).unwrap(), object.slice(100..3 * BLOCK as usize + 7));
        assert_eq!(reads.read("seg", 0..u64::MAX).unwrap(), object);
        assert_eq!(reads.read("seg", 4 * BLOCK..10 * BLOCK).unwrap(), object.slice(4 * BLOCK as usize..));
        assert_eq!(reads.read("seg", 9 * BLOCK..10 * BLOCK).unwrap(), Bytes::new());
        assert_eq!(reads.read("seg", 7..7).unwrap(), Bytes::new());
        assert_eq!(reads.read("empty", 0..100).unwrap(), Bytes::new());
        assert_eq!(reads.read("missing", 0..100), Err(RemoteError::NotFound));
        assert_eq!(reads.read("missing", 0..0), Err(RemoteError::NotFound));
        assert!(matches!(reads.read("", 0..1), Err(RemoteError::Invalid(_))));
    }

    #[test]
    fn concurrent_random_reads_match_the_objects() {
        let objects: Vec<(String, Bytes)> =
            (0..3).map(|i| (format!("obj-{i}"), pattern(10 + i, 20_000 + 5000 * i as usize))).collect();
        let refs: Vec<(&str, Bytes)> = objects.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let store = faulty_memory(&refs);
        let reads = SharedReads::new(store, 3, 1000).with_busy_deadline(Duration::from_secs(10));
        together(8, |seed| {
            let mut rng = fastrand::Rng::with_seed(seed as u64);
            for _ in 0..2000 {
                let (key, object) = &objects[rng.usize(..objects.len())];
                let start = rng.u64(..object.len() as u64 + 10);
                let end = start + rng.u64(..5000);
                let got = reads.read(key, start..end).unwrap();
                let cut = start.min(object.len() as u64) as usize..end.min(object.len() as u64) as usize;
                assert_eq!(got, object.slice(cut), "{key} {start}..{end}");
            }
        });
        assert!(reads.stats().resident <= 3);
    }
}
