//! Schemas, rows and table metadata: how they are encoded, read through a [`View`] and
//! written through a [`Writer`], index entries kept in step with every row written.

use std::collections::BTreeMap;

use bytes::Bytes;
use gluesql_core::chrono::Utc;
use gluesql_core::data::{Key, Schema, Value};
use gluesql_core::error::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{codec, StorageError};
use crate::index::Indexes;
use crate::keys;
use crate::view::{Tx, View};

/// A stored row: its primary key (or generated id) and its values.
pub(crate) type StoredRow = (Key, Vec<Value>);

/// Table metadata shown in `GLUE_OBJECTS`.
pub(crate) type TableMeta = BTreeMap<String, Value>;

/// Helio's size limits, checked before a write joins a transaction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Largest key, in bytes.
    pub(crate) key: u32,
    /// Largest value, in bytes.
    pub(crate) value: u32,
}

/// Encodes `value` with bincode.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value).map_err(codec)
}

/// Decodes a bincode `value`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(codec)
}

/// The schema of `table`, if it exists.
pub(crate) fn fetch_schema(view: &View<'_>, table: &str) -> Result<Option<Schema>> {
    view.get(&keys::schema(table))?.map(|bytes| decode(&bytes)).transpose()
}

/// Every schema, by table name.
pub(crate) fn fetch_all_schemas(view: &View<'_>) -> Result<Vec<Schema>> {
    view.prefix(&[keys::SCHEMA]).map(|entry| decode(&entry?.1)).collect()
}

/// The row of `table` with primary key `key`.
pub(crate) fn fetch_row(view: &View<'_>, table: &str, key: &Key) -> Result<Option<Vec<Value>>> {
    let found = view.get(&keys::row(table, key)?)?;
    Ok(found.map(|bytes| decode::<StoredRow>(&bytes)).transpose()?.map(|(_, row)| row))
}

/// Decodes one stored row entry.
pub(crate) fn decode_row(entry: Result<(Bytes, Bytes)>) -> Result<StoredRow> {
    decode(&entry?.1)
}

/// Every table's metadata, by table name.
pub(crate) fn table_metas(view: &View<'_>) -> Result<Vec<(String, TableMeta)>> {
    let schemas = fetch_all_schemas(view)?;
    let mut metas = Vec::with_capacity(schemas.len());
    for schema in schemas {
        if let Some(bytes) = view.get(&keys::table_meta(&schema.table_name))? {
            metas.push((schema.table_name, decode(&bytes)?));
        }
    }
    Ok(metas)
}

/// The writes of one storage call, into a transaction, each key and value checked against
/// Helio's limits before it joins the transaction.
pub(crate) struct Writer<'s> {
    pub(crate) tx: &'s mut Tx,
    pub(crate) limits: Limits,
    pub(crate) next_row_id: &'s mut u64,
}

/// A row ready to be written: its key, encoded row key and value, and index entries.
struct Prepared {
    row_key: Vec<u8>,
    value: Vec<u8>,
    index_entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Writer<'_> {
    /// Reads of the transaction.
    pub(crate) fn view(&self) -> View<'_> {
        self.tx.view()
    }

    /// Puts `key` = `value`, refused if either is over Helio's limits.
    pub(crate) fn put(&mut self, what: &'static str, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.check(what, &key, &value)?;
        self.tx.put(key, value);
        Ok(())
    }

    /// Deletes `key`.
    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.tx.delete(key);
    }

    /// Deletes every key that starts with `prefix`.
    pub(crate) fn delete_prefix(&mut self, prefix: &[u8]) -> Result<()> {
        let doomed =
            self.view().prefix(prefix).map(|e| e.map(|(k, _)| k.to_vec())).collect::<Result<Vec<_>>>()?;
        doomed.into_iter().for_each(|key| self.delete(key));
        Ok(())
    }

    fn check(&self, what: &'static str, key: &[u8], value: &[u8]) -> Result<()> {
        if key.len() > self.limits.key as usize {
            return Err(StorageError::KeyTooLarge { what, len: key.len(), max: self.limits.key }.into());
        }
        if value.len() > self.limits.value as usize {
            return Err(StorageError::ValueTooLarge { what, len: value.len(), max: self.limits.value }.into());
        }
        Ok(())
    }

    /// Writes `schema` (creating or replacing its table's), and the table's metadata if new.
    pub(crate) fn insert_schema(&mut self, schema: &Schema) -> Result<()> {
        let table = &schema.table_name;
        self.put("a schema", keys::schema(table), encode(schema)?)?;
        let meta_key = keys::table_meta(table);
        if self.view().get(&meta_key)?.is_none() {
            let meta = TableMeta::from([("CREATED".to_owned(), Value::Timestamp(Utc::now().naive_utc()))]);
            self.put("table metadata", meta_key, encode(&meta)?)?;
        }
        Ok(())
    }

    /// Removes `table`: its schema, metadata, rows and index entries.
    pub(crate) fn delete_schema(&mut self, table: &str) -> Result<()> {
        self.delete(keys::schema(table));
        self.delete(keys::table_meta(table));
        self.delete_prefix(&keys::row_prefix(table))?;
        self.delete_prefix(&keys::index_table_prefix(table))
    }

    /// Appends `rows` to `table` under generated ids (and the id counter).
    pub(crate) fn append_data(&mut self, table: &str, rows: Vec<Vec<Value>>) -> Result<()> {
        let first = *self.next_row_id;
        let keyed = rows.into_iter().zip(first..).map(|(row, id)| (Key::U64(id), row)).collect();
        let next = first + self.write_rows(table, keyed, false)? as u64;
        *self.next_row_id = next;
        self.put("the row id counter", keys::row_id_counter(), next.to_be_bytes().to_vec())
    }

    /// Writes `rows` to `table` by key, replacing rows with the same keys.
    pub(crate) fn insert_data(&mut self, table: &str, rows: Vec<StoredRow>) -> Result<()> {
        self.write_rows(table, rows, true).map(drop)
    }

    /// Prepares all of `rows` (so that a row over the limits writes none), then writes them,
    /// replacing old rows (and their index entries) if `replace`. Returns how many.
    pub(crate) fn write_rows(&mut self, table: &str, rows: Vec<StoredRow>, replace: bool) -> Result<usize> {
        let indexes = Indexes::of_table(&self.view(), table)?;
        let prepared = rows
            .into_iter()
            .map(|(key, row)| self.prepare(table, &indexes, key, row))
            .collect::<Result<Vec<_>>>()?;
        let count = prepared.len();
        for row in prepared {
            if replace && !indexes.is_empty() {
                self.unindex(&indexes, &row.row_key)?;
            }
            row.index_entries.into_iter().for_each(|(k, v)| self.tx.put(k, v));
            self.tx.put(row.row_key, row.value);
        }
        Ok(count)
    }

    fn prepare(&self, table: &str, indexes: &Indexes, key: Key, row: Vec<Value>) -> Result<Prepared> {
        let row_key = keys::row(table, &key)?;
        let index_entries = indexes.entries(&row_key, &row)?;
        for (entry, value) in &index_entries {
            self.check("an index entry", entry, value)?;
        }
        let value = encode(&(key, row))?;
        self.check("a row", &row_key, &value)?;
        Ok(Prepared { row_key, value, index_entries })
    }

    /// Deletes the index entries of the row stored at `row_key`, if there is one.
    fn unindex(&mut self, indexes: &Indexes, row_key: &[u8]) -> Result<()> {
        let Some(bytes) = self.view().get(row_key)? else { return Ok(()) };
        let (_, old): StoredRow = decode(&bytes)?;
        for (entry, _) in indexes.entries(row_key, &old)? {
            self.delete(entry);
        }
        Ok(())
    }

    /// Deletes the rows of `table` with `keys`, and their index entries.
    pub(crate) fn delete_data(&mut self, table: &str, keys_: Vec<Key>) -> Result<()> {
        let indexes = Indexes::of_table(&self.view(), table)?;
        for key in keys_ {
            let row_key = keys::row(table, &key)?;
            if !indexes.is_empty() {
                self.unindex(&indexes, &row_key)?;
            }
            self.delete(row_key);
        }
        Ok(())
    }
}
