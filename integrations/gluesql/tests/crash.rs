//! SIGKILL cycles: a child process (this test binary, re-run as `crash_child`) writes
//! multi-row `INSERT`s and multi-statement transactions to a GlueSQL database on Helio and is
//! killed at a random moment; after each reopen, SQL counts show every statement and
//! transaction the child saw commit wholly there, and none of any other half there.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gluesql_core::prelude::{Glue, Payload, Value};
use helio_gluesql::HelioStorage;

/// The variable that makes `crash_child` the writer (its value: the database directory).
const CHILD_DIR: &str = "HELIO_GLUESQL_CRASH_DIR";
/// The first unit number the child writes.
const CHILD_START: &str = "HELIO_GLUESQL_CRASH_START";
const CYCLES: u64 = 32;

/// Runs `sql` and returns its last payload.
fn exec(glue: &mut Glue<HelioStorage>, sql: &str) -> Payload {
    let mut payloads = glue.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    payloads.pop().expect("a payload")
}

fn int(value: &Value) -> i64 {
    match value {
        Value::I64(v) => *v,
        other => panic!("not an integer: {other:?}"),
    }
}

/// Unit `unit`: an autocommit multi-row INSERT (even units) or a transaction of two
/// multi-row INSERTs into two tables (odd units). Every row carries its unit and the unit's
/// total row count.
fn write_unit(glue: &mut Glue<HelioStorage>, unit: i64, rng: &mut fastrand::Rng) {
    let keyed_rows = |first: usize, count: usize, of: usize| {
        let rows: Vec<String> =
            (first..first + count).map(|j| format!("({}, {unit}, {of})", unit * 100 + j as i64)).collect();
        rows.join(", ")
    };
    if unit % 2 == 0 {
        let count = rng.usize(2..40);
        exec(glue, &format!("INSERT INTO keyed VALUES {}", keyed_rows(0, count, count)));
        return;
    }
    let (loose, keyed) = (rng.usize(2..20), rng.usize(2..20));
    let of = loose + keyed;
    let loose_rows: Vec<String> = (0..loose).map(|_| format!("({unit}, {of})")).collect();
    exec(glue, "BEGIN");
    exec(glue, &format!("INSERT INTO loose VALUES {}", loose_rows.join(", ")));
    exec(glue, &format!("INSERT INTO keyed VALUES {}", keyed_rows(0, keyed, of)));
    exec(glue, "COMMIT");
}

/// The child: writes units from `CHILD_START` on until killed, printing each unit's number
/// once it has committed. Does nothing when not started by `sigkill_cycles`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let start: i64 = std::env::var(CHILD_START).expect("start").parse().expect("a number");
    let mut glue = Glue::new(HelioStorage::open(&dir).expect("open"));
    let mut rng = fastrand::Rng::with_seed(start as u64);
    let mut out = std::io::stdout();
    for unit in start.. {
        write_unit(&mut glue, unit, &mut rng);
        writeln!(out, "committed {unit}").and_then(|()| out.flush()).expect("stdout");
    }
}

/// Rows per unit across both tables, with the count each unit's rows say it has.
fn units(glue: &mut Glue<HelioStorage>) -> BTreeMap<i64, (i64, i64)> {
    let mut found = BTreeMap::new();
    for table in ["keyed", "loose"] {
        let sql = format!("SELECT tag, COUNT(*), MAX(total) FROM {table} GROUP BY tag");
        let Payload::Select { rows, .. } = exec(glue, &sql) else { panic!("not a select") };
        for row in rows {
            let entry = found.entry(int(&row[0])).or_insert((0, int(&row[2])));
            entry.0 += int(&row[1]);
        }
    }
    found
}

fn count(glue: &mut Glue<HelioStorage>, sql: &str) -> i64 {
    let Payload::Select { rows, .. } = exec(glue, sql) else { panic!("not a select") };
    int(&rows[0][0])
}

/// Checks the database after a kill: no unit is partly there, every unit the child reported
/// committed is there, and the index on `keyed.tag` finds exactly the table's rows.
fn verify(dir: &Path, committed: &[i64]) -> usize {
    let mut glue = Glue::new(HelioStorage::open(dir).expect("reopen"));
    let found = units(&mut glue);
    for (unit, (rows, of)) in &found {
        assert_eq!(rows, of, "unit {unit} is half there: {rows} of {of} rows");
    }
    for unit in committed {
        assert!(found.contains_key(unit), "committed unit {unit} is missing");
    }
    let all = count(&mut glue, "SELECT COUNT(*) FROM keyed");
    let by_index = count(&mut glue, "SELECT COUNT(*) FROM keyed WHERE tag >= 0");
    assert_eq!(all, by_index, "the index on keyed.tag disagrees with the table");
    glue.storage.close().expect("close");
    found.len()
}

/// Starts the child writing units from `start`, kills it (SIGKILL) after `delay`, and returns
/// the units it reported committed.
fn run_child(dir: &Path, start: u64, delay: Duration) -> Vec<i64> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_START, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    BufReader::new(out.as_bytes())
        .lines()
        .map_while(Result::ok)
        // The harness prints "test crash_child ... " before the first line, unterminated.
        .filter_map(|line| line.split("committed ").nth(1).and_then(|n| n.trim().parse().ok()))
        .collect()
}

#[test]
fn sigkill_cycles() {
    let dir = tempfile::tempdir().expect("temporary directory");
    {
        let mut glue = Glue::new(HelioStorage::open(dir.path()).expect("create"));
        exec(&mut glue, "CREATE TABLE keyed (id INTEGER PRIMARY KEY, tag INTEGER, total INTEGER)");
        exec(&mut glue, "CREATE TABLE loose (tag INTEGER, total INTEGER)");
        exec(&mut glue, "CREATE INDEX keyed_tag ON keyed (tag)");
        glue.storage.close().expect("close");
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut committed_total = 0;
    for cycle in 1..=CYCLES {
        let delay = Duration::from_millis(rng.u64(150..700));
        let committed = run_child(dir.path(), cycle * 1_000_000, delay);
        committed_total += committed.len();
        let units = verify(dir.path(), &committed);
        eprintln!(
            "cycle {cycle}: killed after {delay:?}, {} units committed, {units} in the store",
            committed.len()
        );
    }
    assert!(committed_total > CYCLES as usize, "the child committed too little to test anything");
}
