//! Comparisons on the primary key and `ORDER BY` of it are served as key ranges of the rows:
//! random queries of every shape against a model (`BTreeMap`), inside and outside a
//! transaction, on integer keys, on text keys, and on 16-bit keys compared with 64-bit integers and
//! floats (bounds of another type than the key's), and the plan checked to use the range.

use std::collections::BTreeMap;
use std::ops::Bound;

use gluesql_core::prelude::{Glue, Payload, Value};
use helio_gluesql::HelioStorage;

type Model = BTreeMap<i64, String>;

fn select(glue: &mut Glue<HelioStorage>, sql: &str) -> Vec<Vec<Value>> {
    match glue.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).pop() {
        Some(Payload::Select { rows, .. }) => rows,
        other => panic!("{sql}: {other:?}"),
    }
}

/// The rows `(id, name)` the model holds in `range`, descending if `desc`.
fn expected(model: &Model, range: (Bound<i64>, Bound<i64>), desc: bool) -> Vec<Vec<Value>> {
    let mut rows: Vec<_> =
        model.range(range).map(|(id, name)| vec![Value::I64(*id), Value::Str(name.clone())]).collect();
    if desc {
        rows.reverse();
    }
    rows
}

/// A random query on the integer key and the model's answer, in order.
fn query(rng: &mut fastrand::Rng, model: &Model) -> (String, Vec<Vec<Value>>) {
    use Bound::{Excluded, Included, Unbounded};
    let a = rng.i64(-5..205);
    let b = rng.i64(-5..205);
    let (sql, range, desc) = match rng.u8(0..10) {
        0 => (format!("id > {a}"), (Excluded(a), Unbounded), false),
        1 => (format!("id >= {a}"), (Included(a), Unbounded), false),
        2 => (format!("id < {a}"), (Unbounded, Excluded(a)), false),
        3 => (format!("id <= {a}"), (Unbounded, Included(a)), false),
        4 => (format!("{a} < id"), (Excluded(a), Unbounded), false),
        5 => (format!("id >= {a} AND id < {b}"), (Included(a), Excluded(b.max(a))), false),
        6 => (format!("id > {a} ORDER BY id DESC"), (Excluded(a), Unbounded), true),
        7 => ("id IS NOT NULL ORDER BY id DESC".to_owned(), (Unbounded, Unbounded), true),
        8 => (format!("id <= {b} AND name <> 'none' ORDER BY id"), (Unbounded, Included(b)), false),
        _ => ("id IS NULL".to_owned(), (Included(1), Excluded(1)), false),
    };
    (format!("SELECT id, name FROM t WHERE {sql}"), expected(model, range, desc))
}

fn check_queries(glue: &mut Glue<HelioStorage>, rng: &mut fastrand::Rng, model: &Model, n: usize) {
    for _ in 0..n {
        let (sql, want) = query(rng, model);
        assert_eq!(select(glue, &sql), want, "{sql}");
    }
}

#[test]
fn ranges_of_the_primary_key_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut glue = Glue::new(HelioStorage::open(dir.path()).unwrap());
    glue.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)").unwrap();
    let mut model = Model::new();
    let mut rng = fastrand::Rng::with_seed(11);
    let values: Vec<String> = (0..200).step_by(2).map(|id| format!("({id}, 'n{id}')")).collect();
    glue.execute(format!("INSERT INTO t VALUES {}", values.join(", "))).unwrap();
    model.extend((0..200).step_by(2).map(|id| (id, format!("n{id}"))));
    check_queries(&mut glue, &mut rng, &model, 400);

    // Inside a transaction: ranges see its own writes over the snapshot, and not after ROLLBACK.
    glue.execute("BEGIN").unwrap();
    let mut pending = model.clone();
    for _ in 0..30 {
        let id = rng.i64(0..200);
        if rng.bool() {
            glue.execute(format!("INSERT INTO t VALUES ({id}, 'p{id}')")).ok();
            pending.entry(id).or_insert_with(|| format!("p{id}"));
        } else {
            glue.execute(format!("DELETE FROM t WHERE id = {id}")).unwrap();
            pending.remove(&id);
        }
    }
    check_queries(&mut glue, &mut rng, &pending, 200);
    glue.execute("ROLLBACK").unwrap();
    check_queries(&mut glue, &mut rng, &model, 100);
}

#[test]
fn a_range_of_the_primary_key_is_planned_as_a_key_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut glue = Glue::new(HelioStorage::open(dir.path()).unwrap());
    glue.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)").unwrap();
    glue.execute("CREATE TABLE plain (id INTEGER, name TEXT)").unwrap();
    for (sql, range) in [
        ("SELECT * FROM t WHERE id >= 10 AND id < 20", Some("[0001000000000000000a 00010000000000000014)")),
        (
            "SELECT * FROM t WHERE 20 > id AND id > 10 AND id <= 15",
            Some("(0001000000000000000a 0001000000000000000f]"),
        ),
        (
            "SELECT COUNT(*) FROM t AS x WHERE x.id BETWEEN 1 AND 2",
            Some("[00010000000000000001 00010000000000000002]"),
        ),
        ("SELECT * FROM t WHERE id < -1 ORDER BY name LIMIT 3", Some("- 0000ffffffffffffffff)")),
        ("SELECT * FROM t WHERE name = 'x'", None),
        ("SELECT * FROM t WHERE id > 0.5", None),
        ("SELECT * FROM t WHERE id > 1 OR id < 0", None),
        ("SELECT * FROM t WHERE id > name", None),
        ("SELECT * FROM plain WHERE id >= 10", None),
    ] {
        let plan = format!("{:?}", glue.plan(sql).unwrap());
        let planned =
            plan.split(r#"name: "\0primary key range "#).nth(1).and_then(|rest| rest.split('"').next());
        assert_eq!(planned, range, "{sql}: {plan}");
    }
}

#[test]
fn text_keys_and_bounds_of_another_type_compare_as_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut glue = Glue::new(HelioStorage::open(dir.path()).unwrap());
    glue.execute("CREATE TABLE s (k TEXT PRIMARY KEY)").unwrap();
    glue.execute("INSERT INTO s VALUES ('b'), ('ab'), ('a'), ('c'), ('ba')").unwrap();
    let text = |rows: Vec<Vec<Value>>| -> Vec<String> {
        rows.into_iter()
            .map(|row| match &row[0] {
                Value::Str(s) => s.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(text(select(&mut glue, "SELECT k FROM s WHERE k > 'ab'")), ["b", "ba", "c"]);
    assert_eq!(text(select(&mut glue, "SELECT k FROM s WHERE k <= 'b' ORDER BY k DESC")), ["b", "ab", "a"]);

    // A 16-bit key compared with 64-bit integers and floats: the bound's type is not the key's.
    // The answer must be GlueSQL's own, as a table without a primary key (a full scan and
    // GlueSQL's filter) gives it.
    let values = "(-300), (-2), (-1), (0), (1), (2), (7), (300)";
    glue.execute("CREATE TABLE f (x INT16 PRIMARY KEY)").unwrap();
    glue.execute("CREATE TABLE g (x INT16)").unwrap();
    glue.execute(format!("INSERT INTO f VALUES {values}")).unwrap();
    glue.execute(format!("INSERT INTO g VALUES {values}")).unwrap();
    for condition in [
        "x >= 1",
        "x < 1 ORDER BY x DESC",
        "x > 0.5 AND x <= 7",
        "x <= -1.5",
        "x < -1.5",
        "x > 1.5",
        "x >= 1.5",
        "x > 70000",
        "x < -70000",
        "x >= 2.0",
        "x >= 256",
        "x < 256",
        "x BETWEEN -2 AND 256",
    ] {
        let keyed = select(&mut glue, &format!("SELECT x FROM f WHERE {condition}"));
        let plain = select(&mut glue, &format!("SELECT x FROM g WHERE {condition}"));
        assert_eq!(keyed, plain, "{condition}");
    }
}
