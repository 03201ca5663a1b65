//! Bad input reaches the SQL user as GlueSQL errors, never as panics: values and keys over
//! Helio's limits, a store locked by another process, a nested `BEGIN`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gluesql_core::error::Error;
use gluesql_core::prelude::{Glue, Payload, Value};
use helio::Config;
use helio_gluesql::HelioStorage;

/// The variable that makes `lock_holder` hold a store open (its value: the directory).
const HOLDER_DIR: &str = "HELIO_GLUESQL_LOCK_DIR";

fn count(glue: &mut Glue<HelioStorage>, table: &str) -> i64 {
    let payloads = glue.execute(format!("SELECT COUNT(*) FROM {table}")).expect("count");
    match &payloads[0] {
        Payload::Select { rows, .. } => match rows[0][0] {
            Value::I64(n) => n,
            ref other => panic!("not a count: {other:?}"),
        },
        other => panic!("not a select: {other:?}"),
    }
}

fn storage_msg(result: Result<Vec<Payload>, Error>) -> String {
    match result {
        Err(Error::StorageMsg(msg)) => msg,
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[test]
fn a_value_over_the_limit_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path()).value_bytes_max(1024);
    let mut glue = Glue::new(HelioStorage::with_config(config).unwrap());
    glue.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)").unwrap();
    let big = "x".repeat(4096);
    let sql = format!("INSERT INTO t VALUES (1, 'small'), (2, '{big}'), (3, 'small')");
    let msg = storage_msg(glue.execute(sql));
    assert!(msg.contains("over the store's limit of 1024 bytes"), "{msg}");
    assert_eq!(count(&mut glue, "t"), 0, "no row of the refused statement is written");
    glue.execute("INSERT INTO t VALUES (1, 'small')").unwrap();
    assert_eq!(count(&mut glue, "t"), 1, "the table takes rows after the error");
}

#[test]
fn a_primary_key_over_the_key_limit_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut glue = Glue::new(HelioStorage::open(dir.path()).unwrap());
    glue.execute("CREATE TABLE t (name TEXT PRIMARY KEY)").unwrap();
    let long = "k".repeat(5000);
    let msg = storage_msg(glue.execute(format!("INSERT INTO t VALUES ('{long}')")));
    assert!(msg.contains("the key of a row"), "{msg}");
    assert_eq!(count(&mut glue, "t"), 0);
}

#[test]
fn an_indexed_value_over_the_key_limit_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut glue = Glue::new(HelioStorage::open(dir.path()).unwrap());
    glue.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)").unwrap();
    glue.execute("CREATE INDEX t_body ON t (body)").unwrap();
    let long = "v".repeat(5000);
    let msg = storage_msg(glue.execute(format!("INSERT INTO t VALUES (1, 'a'), (2, '{long}')")));
    assert!(msg.contains("the key of an index entry"), "{msg}");
    assert_eq!(count(&mut glue, "t"), 0);
}

#[test]
fn a_transaction_over_the_limit_keeps_its_earlier_statements() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path()).value_bytes_max(1024);
    let mut glue = Glue::new(HelioStorage::with_config(config).unwrap());
    glue.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)").unwrap();
    glue.execute("BEGIN").unwrap();
    glue.execute("INSERT INTO t VALUES (1, 'a')").unwrap();
    let big = "x".repeat(4096);
    storage_msg(glue.execute(format!("INSERT INTO t VALUES (2, 'b'), (3, '{big}')")));
    glue.execute("COMMIT").unwrap();
    assert_eq!(count(&mut glue, "t"), 1);
}

#[test]
fn an_index_name_starting_with_nul_is_refused_and_writes_nothing() {
    use gluesql_core::ast::{Expr, OrderByExpr};
    use gluesql_core::store::{IndexMut, Store};

    let dir = tempfile::tempdir().unwrap();
    let mut glue = Glue::new(HelioStorage::open(dir.path()).unwrap());
    glue.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)").unwrap();
    let column = OrderByExpr { expr: Expr::Identifier("v".to_owned()), asc: None };
    match glue.storage.create_index("t", "\0by v", &column) {
        Err(Error::StorageMsg(msg)) => assert!(msg.contains("reserved"), "{msg}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(glue.storage.fetch_schema("t").unwrap().unwrap().indexes.is_empty());
}

#[test]
fn nested_begin_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut glue = Glue::new(HelioStorage::open(dir.path()).unwrap());
    glue.execute("BEGIN").unwrap();
    let msg = storage_msg(glue.execute("BEGIN"));
    assert!(msg.contains("nested"), "{msg}");
    glue.execute("ROLLBACK").unwrap();
}

#[test]
fn a_store_open_in_the_same_process_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = HelioStorage::open(dir.path()).unwrap();
    match HelioStorage::open(dir.path()) {
        Err(Error::StorageMsg(msg)) => assert!(msg.contains("is open in another process"), "{msg}"),
        Err(other) => panic!("expected a storage error, got {other:?}"),
        Ok(_) => panic!("a second open of a locked store succeeded"),
    }
}

/// The child of `a_store_locked_by_another_process_is_an_error`: holds the store open until
/// killed. Does nothing when not started by that test.
#[test]
fn lock_holder() {
    let Ok(dir) = std::env::var(HOLDER_DIR) else { return };
    // The parent probes the lock by opening the store too: retry while it has it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let _storage = loop {
        match HelioStorage::open(&dir) {
            Ok(storage) => break storage,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open: {e}"),
        }
    };
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_store_locked_by_another_process_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    HelioStorage::open(dir.path()).unwrap().close().unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_holder", "--nocapture", "--test-threads=1"])
        .env(HOLDER_DIR, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let msg = loop {
        match HelioStorage::open(dir.path()) {
            Err(Error::StorageMsg(msg)) => break msg,
            Err(other) => panic!("expected a storage error, got {other:?}"),
            // The child has not taken the lock yet.
            Ok(storage) => {
                storage.close().unwrap();
                assert!(Instant::now() < deadline, "the child never took the lock");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(msg.contains("is open in another process"), "{msg}");
    let mut glue = Glue::new(HelioStorage::open(dir.path()).expect("open once the holder is gone"));
    glue.execute("CREATE TABLE t (id INTEGER)").unwrap();
}
