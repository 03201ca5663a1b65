//! The conformance suite every [`ExternalStore`] must pass: [`run`] drives one store through the
//! interface's promises and panics, naming the check, at the first one it breaks.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::{ExternalStore, ExternalStoreHandle, ExternalStoreHandleExt, RemoteError};

/// What a passing [`run`] exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Checks made.
    pub checks: usize,
    /// Whether [`put_if_absent`](ExternalStoreHandle::put_if_absent) worked (else the store said
    /// [`RemoteError::Unsupported`], which the suite accepts).
    pub conditional_create: bool,
}

/// Bytes of the large objects: past several chunks of a Redis store with 1 MiB chunks.
const LARGE_BYTES: usize = (3 << 20) + 12_345;
/// Handles that put one key at once, and how many puts each makes.
const WRITERS: usize = 6;
const PUTS_PER_WRITER: usize = 4;

/// Runs every check on `store` under keys that start with a fresh random prefix, and deletes what
/// it wrote. Panics with the check's name at the first failure.
///
/// Checks: put and get, ranged gets inside, across and past the end, empty ranges, missing keys,
/// delete (also of a missing key), overwrite by a shorter object, large and empty objects, keys of
/// odd characters (one object each, never shared), invalid keys and ranges, conditional create,
/// and puts of one key from many handles at once while a reader checks it only ever sees one put
/// whole.
pub fn run(store: &dyn ExternalStore) -> Report {
    let suite = Suite { store, base: format!("conformance-{:016x}/", fastrand::u64(..)) };
    let mut handle = suite.connect();
    let checks = [
        Suite::put_get,
        Suite::ranges,
        Suite::missing_and_delete,
        Suite::overwrite,
        Suite::large,
        Suite::empty,
        Suite::odd_keys,
        Suite::invalid,
    ];
    for check in checks {
        check(&suite, handle.as_mut());
    }
    let conditional_create = suite.put_if_absent(handle.as_mut());
    suite.concurrent_puts();
    Report { checks: checks.len() + 2, conditional_create }
}

struct Suite<'a> {
    store: &'a dyn ExternalStore,
    base: String,
}

/// `len` bytes that differ with `seed` and position, so misplaced bytes show.
pub(crate) fn pattern(seed: u64, len: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    Bytes::from(bytes)
}

fn ok<T>(check: &str, result: Result<T, RemoteError>) -> T {
    result.unwrap_or_else(|e| panic!("conformance check '{check}' failed: {e}"))
}

impl Suite<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    fn connect(&self) -> Box<dyn ExternalStoreHandle> {
        ok("connect", self.store.connect())
    }

    fn put_get(&self, handle: &mut dyn ExternalStoreHandle) {
        let key = self.key("put-get");
        let value = pattern(1, 10_000);
        ok("put", handle.put(&key, value.clone()));
        assert_eq!(ok("get", handle.get_all(&key)), Some(value), "put-get: the object read back differs");
        assert!(ok("exists", handle.exists(&key)), "put-get: exists says no after a put");
        ok("delete", handle.delete(&key));
    }

    fn ranges(&self, handle: &mut dyn ExternalStoreHandle) {
        let key = self.key("ranges");
        let value = pattern(2, 1000);
        ok("put", handle.put(&key, value.clone()));
        let cases: [(std::ops::Range<u64>, std::ops::Range<usize>); 8] = [
            (0..1000, 0..1000),
            (10..20, 10..20),
            (999..1000, 999..1000),
            (990..2000, 990..1000),
            (0..u64::MAX, 0..1000),
            (1000..1010, 1000..1000),
            (5000..6000, 1000..1000),
            (7..7, 7..7),
        ];
        for (asked, expected) in cases {
            let got = ok("ranged get", handle.get(&key, asked.clone()));
            assert_eq!(got, Some(value.slice(expected)), "ranges: get of {asked:?} of a 1000-byte object");
        }
        ok("delete", handle.delete(&key));
    }

    fn missing_and_delete(&self, handle: &mut dyn ExternalStoreHandle) {
        let key = self.key("missing");
        assert_eq!(ok("get missing", handle.get(&key, 0..10)), None, "missing: a get found an object");
        assert_eq!(ok("get missing", handle.get(&key, 0..0)), None, "missing: an empty get found an object");
        assert!(!ok("exists", handle.exists(&key)), "missing: exists says yes");
        ok("delete missing", handle.delete(&key));
        ok("put", handle.put(&key, pattern(3, 100)));
        ok("delete", handle.delete(&key));
        assert_eq!(ok("get deleted", handle.get_all(&key)), None, "missing: a deleted object is still read");
        ok("delete twice", handle.delete(&key));
    }

    fn overwrite(&self, handle: &mut dyn ExternalStoreHandle) {
        let key = self.key("overwrite");
        ok("put", handle.put(&key, pattern(4, LARGE_BYTES)));
        let shorter = pattern(5, 300);
        ok("overwrite", handle.put(&key, shorter.clone()));
        assert_eq!(ok("get", handle.get_all(&key)), Some(shorter.clone()), "overwrite: old bytes read back");
        let cut = ok("get", handle.get(&key, 200..10_000));
        assert_eq!(cut, Some(shorter.slice(200..300)), "overwrite: a range is not cut at the new end");
        let longer = pattern(6, LARGE_BYTES + 1);
        ok("overwrite", handle.put(&key, longer.clone()));
        assert_eq!(ok("get", handle.get_all(&key)), Some(longer), "overwrite: a longer object reads wrong");
        ok("delete", handle.delete(&key));
    }

    fn large(&self, handle: &mut dyn ExternalStoreHandle) {
        let key = self.key("large");
        let value = pattern(7, LARGE_BYTES);
        ok("put large", handle.put(&key, value.clone()));
        assert_eq!(ok("get large", handle.get_all(&key)), Some(value.clone()), "large: the object differs");
        let across = (1 << 20) - 100..(2 << 20) + 100;
        let got = ok("get across", handle.get(&key, across.start as u64..across.end as u64));
        assert_eq!(got, Some(value.slice(across)), "large: a range across 1 MiB boundaries differs");
        let tail = ok("get tail", handle.get(&key, (LARGE_BYTES - 10) as u64..u64::MAX));
        assert_eq!(tail, Some(value.slice(LARGE_BYTES - 10..)), "large: the tail differs");
        ok("delete", handle.delete(&key));
    }

    fn empty(&self, handle: &mut dyn ExternalStoreHandle) {
        let key = self.key("empty");
        ok("put empty", handle.put(&key, Bytes::new()));
        assert_eq!(
            ok("get empty", handle.get_all(&key)),
            Some(Bytes::new()),
            "empty: not read back as empty"
        );
        assert_eq!(ok("get empty", handle.get(&key, 0..10)), Some(Bytes::new()), "empty: a range of it");
        assert!(ok("exists", handle.exists(&key)), "empty: an empty object does not exist");
        ok("delete", handle.delete(&key));
        assert_eq!(ok("get deleted", handle.get_all(&key)), None, "empty: still there after delete");
    }

    fn odd_keys(&self, handle: &mut dyn ExternalStoreHandle) {
        let names = [
            "a b",
            "a/b",
            "a%2Fb",
            "a//b",
            "/lead",
            "trail/",
            ".",
            "..",
            "./x",
            "%",
            "%41",
            "a?b#c&d=e",
            "*",
            "back\\slash",
            "tab\tnew\nline",
            "ünï cödé",
            "🦀",
            "+~!@$^()[]{}|;:'\",<>`",
            "A",
            "a",
        ];
        let keys: Vec<String> = names.iter().map(|name| self.key(name)).collect();
        for (i, key) in keys.iter().enumerate() {
            ok("put odd key", handle.put(key, pattern(100 + i as u64, 50 + i)));
        }
        for (i, key) in keys.iter().enumerate() {
            let got = ok("get odd key", handle.get_all(key));
            assert_eq!(
                got,
                Some(pattern(100 + i as u64, 50 + i)),
                "odd keys: {key:?} reads another's object"
            );
        }
        for key in &keys {
            ok("delete odd key", handle.delete(key));
            assert_eq!(ok("get odd key", handle.get_all(key)), None, "odd keys: {key:?} survives delete");
        }
    }

    fn invalid(&self, handle: &mut dyn ExternalStoreHandle) {
        let invalid = |result: Result<(), RemoteError>, what: &str| {
            assert!(matches!(result, Err(RemoteError::Invalid(_))), "invalid: {what} gave {result:?}");
        };
        invalid(handle.put("", Bytes::from_static(b"x")), "a put of an empty key");
        invalid(handle.get("", 0..1).map(drop), "a get of an empty key");
        invalid(handle.delete(""), "a delete of an empty key");
        invalid(handle.put(&"k".repeat(crate::KEY_BYTES_MAX + 1), Bytes::new()), "a put of a 1025-byte key");
        let key = self.key("inverted");
        #[expect(clippy::reversed_empty_ranges, reason = "an inverted range is what is checked")]
        let inverted = 5..3;
        invalid(handle.get(&key, inverted).map(drop), "a get of an inverted range");
    }

    /// Whether conditional create works; panics if it half works.
    fn put_if_absent(&self, handle: &mut dyn ExternalStoreHandle) -> bool {
        let key = self.key("put-if-absent");
        let first = pattern(8, 4000);
        match handle.put_if_absent(&key, first.clone()) {
            Err(RemoteError::Unsupported(_)) => return false,
            other => ok("put_if_absent of a new key", other),
        }
        let again = handle.put_if_absent(&key, pattern(9, 10));
        assert_eq!(again, Err(RemoteError::AlreadyExists), "put_if_absent: a second create was not refused");
        assert_eq!(
            ok("get", handle.get_all(&key)),
            Some(first),
            "put_if_absent: a refused create changed it"
        );
        ok("delete", handle.delete(&key));
        let large = pattern(10, LARGE_BYTES);
        ok("put_if_absent of a large object", handle.put_if_absent(&key, large.clone()));
        assert_eq!(ok("get", handle.get_all(&key)), Some(large), "put_if_absent: a large create reads wrong");
        ok("delete", handle.delete(&key));
        true
    }

    /// Handles put one key at once, each value whole and distinct; a reader meanwhile, and
    /// everyone at the end, must see one of them whole.
    fn concurrent_puts(&self) {
        let key = self.key("contended");
        let values: Vec<Bytes> = (0..WRITERS * PUTS_PER_WRITER)
            .map(|i| pattern(1000 + i as u64, if i % 2 == 0 { LARGE_BYTES / 2 + i } else { 5000 + i }))
            .collect();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let mut handle = self.connect();
                    let (key, values) = (&key, &values);
                    scope.spawn(move || {
                        for value in values.iter().skip(w).step_by(WRITERS) {
                            ok("concurrent put", handle.put(key, value.clone()));
                        }
                    })
                })
                .collect();
            let mut reader = self.connect();
            let (key, values, done) = (&key, &values, &done);
            let reading = scope.spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Acquire) || reads == 0 {
                    if let Some(seen) = ok("concurrent get", reader.get_all(key)) {
                        assert!(values.contains(&seen), "concurrent puts: a reader saw a torn object");
                    }
                    reads += 1;
                }
            });
            writers.into_iter().for_each(|writer| writer.join().expect("a writer panicked"));
            done.store(true, Ordering::Release);
            reading.join().expect("the reader panicked");
        });
        let mut handle = self.connect();
        let last = ok("get", handle.get_all(&key)).expect("concurrent puts: no object after them");
        assert!(values.contains(&last), "concurrent puts: the object left is none of the puts");
        ok("delete", handle.delete(&key));
    }
}
