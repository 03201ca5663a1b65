//! GlueSQL on Helio: [`HelioStorage`] implements GlueSQL's storage traits on a
//! [`helio::Store`], so that `gluesql_core::prelude::Glue::new(HelioStorage::open(dir)?)` is a
//! SQL database whose tables, indexes and transactions live in a Helio store.
//!
//! ```no_run
//! use gluesql_core::prelude::Glue;
//! use helio_gluesql::HelioStorage;
//!
//! let mut glue = Glue::new(HelioStorage::open("db")?);
//! glue.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")?;
//! glue.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")?;
//! let payloads = glue.execute("SELECT name FROM t WHERE id = 2")?;
//! # Ok::<(), gluesql_core::error::Error>(())
//! ```
//!
//! # Traits
//!
//! `Store`, `StoreMut`, `Transaction`, `AlterTable` (column changes rewrite the table and its
//! index entries; renaming a table uses GlueSQL's default), `Index`, `IndexMut`, `Metadata`
//! (`GLUE_OBJECTS`: each table's `CREATED` time), `CustomFunction`, `CustomFunctionMut`
//! (functions persist in the store and are cached in memory) and `Planner` (GlueSQL's default
//! planning plus `plan_index`, so that indexes are used, and primary-key ranges: a `WHERE` that
//! bounds the primary key by constants reads one key range of the rows, see below).
//!
//! # Key layout
//!
//! Every key starts with a namespace byte. Names (table, index, the counter's) are written
//! *escaped*: each `0x00` as `0x00 0xFF`, then a terminator `0x00 0x01`. Escaping keeps byte
//! order equal to name order, and no name's encoding is a prefix of another's, so table `t`'s
//! keys never mix with table `t2`'s.
//!
//! | key | value |
//! | --- | --- |
//! | `0x01` `name("row_id")` | next generated row id, big-endian `u64` |
//! | `0x02` `name(table)` | the table's `Schema` (bincode) |
//! | `0x03` `name(table)` `pk` | the row: `(Key, Vec<Value>)` (bincode) |
//! | `0x04` `name(table)` `name(index)` `name(value)` `pk` | `pk` |
//! | `0x05` `name(table)` | the table's metadata map (`CREATED`) |
//! | `0x06` `name(FUNCTION)` | a `CustomFunction` (bincode) |
//!
//! `pk` is GlueSQL's `Key::to_cmp_be_bytes()` of the row's primary key, which is
//! order-preserving, so a table scan returns rows in primary-key order. A table without a
//! primary key gets generated keys `Key::U64(id)` from a store-wide counter, written in the same
//! batch as the rows, so rows come back in insertion order and an id is never reused after a
//! crash. An index entry's `value` is the indexed expression's value in the same
//! order-preserving encoding, so an index scan for `<`, `<=`, `=`, `>=`, `>` is one key range.
//!
//! The same order serves ranges of the primary key: when a query's `WHERE` bounds the primary
//! key with constants of the key's type (`id >= 10 AND id < 20`), the planner makes the table
//! access one key range of the rows, with both bounds, and GlueSQL's filter still checks every
//! condition on the rows it yields. The range access is an index access in GlueSQL's plan,
//! named with both bounds after a reserved prefix (a plan carries one comparison per index
//! access, too few for two bounds); index names starting with NUL are therefore refused.
//!
//! # Atomicity and isolation
//!
//! Every statement runs in a transaction: GlueSQL begins one around each statement
//! (autocommit), or `BEGIN` begins one that lasts until `COMMIT` / `ROLLBACK`. A transaction
//! reads a Helio snapshot taken when it began, under its own pending writes (an ordered
//! overlay that reads and scans merge), and commits all its writes as one Helio `WriteBatch`.
//! So a multi-row `INSERT`, a schema change with its row rewrites, and an index update are
//! each all in the store or none of it, after any crash; with the durability of
//! [`HelioStorage::open`] (`Durability::Sync`) a statement or `COMMIT` that returned is on disk.
//! A batch is limited by [`helio::WriteBatch::MAX_OPS`] and [`helio::WriteBatch::MAX_BYTES`]: a
//! larger transaction fails at commit, with nothing written.
//!
//! Isolation is *snapshot isolation without write-write conflict detection* (snapshot reads,
//! last writer wins at commit): a transaction sees the store as of its `BEGIN` plus its own
//! writes, never another's uncommitted writes, with repeatable reads throughout; it does not
//! see what others commit after its `BEGIN`. What it does not protect against: nothing checks
//! at commit whether another transaction changed the same rows since the snapshot, so two
//! concurrent transactions that update one row would both commit, the later overwriting the
//! earlier (lost updates, write skew). Today no two transactions run concurrently on one store:
//! only one `HelioStorage` can have a store open (Helio locks the directory, across processes
//! too), it holds one transaction at a time, and GlueSQL's `Glue` takes `&mut` for every
//! statement. An open transaction's snapshot keeps the versions it can see from being
//! reclaimed, so keep transactions short.
//!
//! # Limits and errors
//!
//! Keys and values are checked against the store's `key_bytes_max` / `value_bytes_max`
//! before they join a transaction: a row, index entry or schema over them fails its statement
//! with GlueSQL's `Error::StorageMsg`, nothing of that statement written (the rows of a
//! statement are all encoded and checked before any is written). Helio's errors (a directory
//! locked by another process, I/O failures) reach the SQL user the same way: see
//! [`StorageError`].
//!
//! # Tests
//!
//! `cargo test --release -p helio-gluesql` runs GlueSQL's own suite (`tests/suite.rs`) through
//! `gluesql-test-suite`: the store, alter-table, transaction, index, alter-table-index,
//! transaction-alter-table, transaction-index, metadata-table, metadata-index and
//! custom-function groups, every test of each, each in its own temporary store. Also
//! `tests/crash.rs` (SIGKILL cycles of a child writing multi-row statements and transactions),
//! `tests/errors.rs` (limits and a locked store as GlueSQL errors) and `tests/primary_key.rs`
//! (primary-key ranges against a model, and against GlueSQL's own filter for bounds of another
//! type than the key's).

mod alter;
mod error;
mod index;
mod keys;
mod primary;
mod rows;
mod view;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gluesql_core::ast::{ColumnDef, IndexOperator, OrderByExpr};
use gluesql_core::data::{CustomFunction as StoredFunction, Key, Schema, Value};
use gluesql_core::error::Result;
use gluesql_core::plan::StatementPlan;
use gluesql_core::planner::{
    fetch_schema_map, plan_aggregate, plan_hash_join, plan_index, plan_primary_key, plan_schemaless, validate,
};
use gluesql_core::store::{
    AlterTable, CustomFunction, CustomFunctionMut, Index, IndexMut, MetaIter, Metadata, Planner, RowIter,
    Store, StoreMut, Transaction,
};
use helio::{Config, Durability};

pub use error::StorageError;

use crate::error::helio;
use crate::rows::{decode, Limits, Writer};
use crate::view::{Tx, View};

/// A GlueSQL storage on a Helio store: give it to `Glue::new`.
///
/// One `HelioStorage` is one connection: it holds at most one open transaction. The store's
/// directory is locked while it is open; [`HelioStorage::close`] (or dropping it) releases it.
pub struct HelioStorage {
    store: Arc<helio::Store>,
    tx: Option<Tx>,
    limits: Limits,
    next_row_id: u64,
    functions: BTreeMap<String, StoredFunction>,
}

impl HelioStorage {
    /// Opens (or creates) the store in directory `dir` with [`HelioStorage::SHARDS`] shard,
    /// Helio's defaults otherwise, and `Durability::Sync`: every statement (or `COMMIT`) that
    /// returns is on disk.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_config(Config::new(dir).shards(Self::SHARDS).durability(Durability::Sync))
    }

    /// The shards [`HelioStorage::open`] gives a new store: one. GlueSQL runs one statement at
    /// a time on a storage, so more shards add no parallelism, while a statement's batch then
    /// commits across several logs: measured with `--example bench`, one shard inserts 1.8×
    /// as fast with `Sync` as one per core (2 here). An existing store keeps the count it was
    /// created with; [`HelioStorage::with_config`] takes any.
    pub const SHARDS: usize = 1;

    /// Opens (or creates) the store `config` describes. Commits use its durability.
    pub fn with_config(config: Config) -> Result<Self> {
        let limits = Limits { key: config.key_bytes_limit(), value: config.value_bytes_limit() };
        let store = Arc::new(helio::Store::open(config).map_err(helio)?);
        let next_row_id = load_row_id(&store)?;
        let functions = load_functions(&store)?;
        Ok(Self { store, tx: None, limits, next_row_id, functions })
    }

    /// Rolls back any open transaction, makes every commit durable and closes the store.
    pub fn close(mut self) -> Result<()> {
        self.tx = None;
        match Arc::try_unwrap(self.store) {
            Ok(store) => store.close().map_err(helio),
            Err(store) => store.sync().map_err(helio),
        }
    }

    /// Whether a transaction begun by `BEGIN` is open.
    pub fn in_transaction(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| !tx.autocommit)
    }

    /// Reads of the open transaction, or of the store as of now outside one.
    fn view(&self) -> View<'_> {
        match &self.tx {
            Some(tx) => tx.view(),
            None => View::of_store(&self.store),
        }
    }

    /// Runs `op` in the open transaction, or in one of its own committed right after.
    fn write<R>(&mut self, op: impl FnOnce(&mut Writer<'_>) -> Result<R>) -> Result<R> {
        let implicit = self.tx.is_none();
        let tx = self.tx.get_or_insert_with(|| Tx::begin(&self.store, true));
        let result = op(&mut Writer { tx, limits: self.limits, next_row_id: &mut self.next_row_id });
        if implicit {
            let tx = self.tx.take();
            if let (Ok(_), Some(tx)) = (&result, tx) {
                tx.commit()?;
            }
        }
        result
    }

    /// Ends the open transaction, committing it if `commit`; the function cache follows.
    fn end(&mut self, commit: bool) -> Result<()> {
        let Some(tx) = self.tx.take() else { return Ok(()) };
        let committed = if commit { tx.commit() } else { Ok(()) };
        if !commit || committed.is_err() {
            self.functions = load_functions(&self.store)?;
        }
        committed
    }
}

/// The persisted next row id (0 in a new store).
fn load_row_id(store: &helio::Store) -> Result<u64> {
    let Some(bytes) = store.get(&keys::row_id_counter()).map_err(helio)? else { return Ok(0) };
    let bytes: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("row id counter of {} bytes", bytes.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Every stored custom function, by upper-cased name.
fn load_functions(store: &helio::Store) -> Result<BTreeMap<String, StoredFunction>> {
    View::of_store(store)
        .prefix(&[keys::FUNCTION])
        .map(|entry| {
            let function: StoredFunction = decode(&entry?.1)?;
            Ok((function.func_name.to_uppercase(), function))
        })
        .collect()
}

impl Store for HelioStorage {
    fn fetch_schema(&self, table_name: &str) -> Result<Option<Schema>> {
        rows::fetch_schema(&self.view(), table_name)
    }

    fn fetch_all_schemas(&self) -> Result<Vec<Schema>> {
        rows::fetch_all_schemas(&self.view())
    }

    fn fetch_data(&self, table_name: &str, key: &Key) -> Result<Option<Vec<Value>>> {
        rows::fetch_row(&self.view(), table_name, key)
    }

    fn scan_data<'a>(&'a self, table_name: &str) -> Result<RowIter<'a>> {
        let rows = self.view().prefix(&keys::row_prefix(table_name));
        Ok(Box::new(rows.map(rows::decode_row)))
    }
}

impl StoreMut for HelioStorage {
    fn insert_schema(&mut self, schema: &Schema) -> Result<()> {
        self.write(|w| w.insert_schema(schema))
    }

    fn delete_schema(&mut self, table_name: &str) -> Result<()> {
        self.write(|w| w.delete_schema(table_name))
    }

    fn append_data(&mut self, table_name: &str, rows: Vec<Vec<Value>>) -> Result<()> {
        self.write(|w| w.append_data(table_name, rows))
    }

    fn insert_data(&mut self, table_name: &str, rows: Vec<(Key, Vec<Value>)>) -> Result<()> {
        self.write(|w| w.insert_data(table_name, rows))
    }

    fn delete_data(&mut self, table_name: &str, keys: Vec<Key>) -> Result<()> {
        self.write(|w| w.delete_data(table_name, keys))
    }
}

impl Transaction for HelioStorage {
    fn begin(&mut self, autocommit: bool) -> Result<bool> {
        match (&self.tx, autocommit) {
            (Some(_), true) => Ok(false),
            (Some(_), false) => Err(StorageError::NestedTransaction.into()),
            (None, _) => {
                self.tx = Some(Tx::begin(&self.store, autocommit));
                Ok(autocommit)
            }
        }
    }

    fn rollback(&mut self) -> Result<()> {
        self.end(false)
    }

    fn commit(&mut self) -> Result<()> {
        self.end(true)
    }
}

impl AlterTable for HelioStorage {
    fn rename_column(
        &mut self,
        table_name: &str,
        old_column_name: &str,
        new_column_name: &str,
    ) -> Result<()> {
        self.write(|w| alter::rename_column(w, table_name, old_column_name, new_column_name))
    }

    fn add_column(&mut self, table_name: &str, column_def: &ColumnDef) -> Result<()> {
        self.write(|w| alter::add_column(w, table_name, column_def))
    }

    fn drop_column(&mut self, table_name: &str, column_name: &str, if_exists: bool) -> Result<()> {
        self.write(|w| alter::drop_column(w, table_name, column_name, if_exists))
    }
}

impl Index for HelioStorage {
    fn scan_indexed_data<'a>(
        &'a self,
        table_name: &str,
        index_name: &str,
        asc: Option<bool>,
        cmp_value: Option<(&IndexOperator, Value)>,
    ) -> Result<RowIter<'a>> {
        let view = self.view();
        if let Some(rows) = primary::scan(&view, table_name, index_name)? {
            return Ok(Box::new(rows.map(rows::decode_row)));
        }
        let rows = index::scan(&view, table_name, index_name, asc, cmp_value)?;
        Ok(Box::new(rows.into_iter().map(Ok)))
    }
}

impl IndexMut for HelioStorage {
    fn create_index(&mut self, table_name: &str, index_name: &str, column: &OrderByExpr) -> Result<()> {
        self.write(|w| index::create(w, table_name, index_name, column))
    }

    fn drop_index(&mut self, table_name: &str, index_name: &str) -> Result<()> {
        self.write(|w| index::drop(w, table_name, index_name))
    }
}

impl Metadata for HelioStorage {
    fn scan_table_meta(&self) -> Result<MetaIter> {
        let metas = rows::table_metas(&self.view())?;
        Ok(Box::new(metas.into_iter().map(Ok)))
    }
}

impl CustomFunction for HelioStorage {
    fn fetch_function<'a>(&'a self, func_name: &str) -> Result<Option<&'a StoredFunction>> {
        Ok(self.functions.get(&func_name.to_uppercase()))
    }

    fn fetch_all_functions(&self) -> Result<Vec<&StoredFunction>> {
        Ok(self.functions.values().collect())
    }
}

impl CustomFunctionMut for HelioStorage {
    fn insert_function(&mut self, func: StoredFunction) -> Result<()> {
        let name = func.func_name.to_uppercase();
        let value = rows::encode(&func)?;
        self.write(|w| w.put("a function", keys::function(&name), value))?;
        self.functions.insert(name, func);
        Ok(())
    }

    fn delete_function(&mut self, func_name: &str) -> Result<()> {
        let name = func_name.to_uppercase();
        self.write(|w| {
            w.delete(keys::function(&name));
            Ok(())
        })?;
        self.functions.remove(&name);
        Ok(())
    }
}

impl Planner for HelioStorage {
    fn plan(&self, statement: StatementPlan) -> Result<StatementPlan> {
        let schema_map = fetch_schema_map(self, &statement)?;
        validate(&schema_map, &statement)?;
        let statement = plan_schemaless(&schema_map, statement)?;
        let statement = plan_primary_key(&schema_map, statement);
        let statement = plan_index(&schema_map, statement);
        let statement = primary::plan(statement, |table| schema_map.get(table));
        let statement = plan_hash_join(&schema_map, statement);
        Ok(plan_aggregate(statement))
    }
}
