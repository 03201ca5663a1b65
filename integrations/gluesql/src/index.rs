//! Secondary indexes: one Helio entry per (indexed value, row), kept in step with the rows
//! in the same transaction; index scans by operator and direction; `CREATE` / `DROP INDEX`.
//!
//! An entry's key is `INDEX | table | index | value | primary key` (see [`crate::keys`]) and
//! its value the row's encoded primary key, so that a scan reads the row directly.

use std::ops::Bound;

use gluesql_core::ast::{IndexOperator, OrderByExpr};
use gluesql_core::chrono::Utc;
use gluesql_core::data::{Schema, SchemaIndex, SchemaIndexOrd, Value};
use gluesql_core::error::{IndexError, Result};
use gluesql_core::executor::{evaluate_stateless, RowContext};
use gluesql_core::plan::{plan_scalar_expr, ExprPlan};

use crate::error::StorageError;
use crate::keys::{self, prefix_end};
use crate::rows::{decode, decode_row, fetch_schema, StoredRow, Writer};
use crate::view::{prefix_range, KeyRange, View};

/// One index of a table, its expression planned for evaluation.
struct Planned {
    name: String,
    expr: ExprPlan,
}

/// The indexes of one table, ready to compute the entries of its rows.
pub(crate) struct Indexes {
    table: String,
    columns: Vec<String>,
    indexes: Vec<Planned>,
}

impl Indexes {
    /// The indexes of `table` (none if it does not exist).
    pub(crate) fn of_table(view: &View<'_>, table: &str) -> Result<Self> {
        Ok(match fetch_schema(view, table)? {
            Some(schema) => Self::of_schema(&schema, &schema.indexes),
            None => Self { table: table.to_owned(), columns: Vec::new(), indexes: Vec::new() },
        })
    }

    /// The indexes `indexes` of the table `schema` describes.
    fn of_schema(schema: &Schema, indexes: &[SchemaIndex]) -> Self {
        let columns = schema.column_defs.iter().flatten().map(|c| c.name.clone()).collect();
        let indexes = indexes
            .iter()
            .map(|index| Planned { name: index.name.clone(), expr: plan_scalar_expr(index.expr.clone()) })
            .collect();
        Self { table: schema.table_name.clone(), columns, indexes }
    }

    /// Whether the table has no index.
    pub(crate) fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// The entries (key, value) of the row `row` stored at `row_key`, one per index.
    pub(crate) fn entries(&self, row_key: &[u8], row: &[Value]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let primary = &row_key[keys::row_prefix(&self.table).len()..];
        self.indexes.iter().map(|index| self.entry(index, primary, row)).collect()
    }

    fn entry(&self, index: &Planned, primary: &[u8], row: &[Value]) -> Result<(Vec<u8>, Vec<u8>)> {
        let context = RowContext::RefVecData { columns: &self.columns, values: row };
        let value: Value = evaluate_stateless(Some(context), &index.expr)?.try_into()?;
        let prefix = keys::index_value_prefix(&self.table, &index.name, &value)?;
        Ok((keys::index_entry(&prefix, primary), primary.to_vec()))
    }
}

/// The rows of `table` that index `index` finds for `cmp` (every row if `None`), in index
/// order, descending if `asc` is `Some(false)`.
pub(crate) fn scan(
    view: &View<'_>,
    table: &str,
    index: &str,
    asc: Option<bool>,
    cmp: Option<(&IndexOperator, Value)>,
) -> Result<Vec<StoredRow>> {
    let (lo, hi) = bounds(table, index, cmp)?;
    let row_prefix = keys::row_prefix(table);
    let mut rows = Vec::new();
    for entry in view.range(lo, hi) {
        let row_key = keys::index_entry(&row_prefix, &entry?.1);
        let stored = view.get(&row_key)?.ok_or(IndexError::ConflictOnEmptyIndexValueScan)?;
        rows.push(decode(&stored)?);
    }
    if asc == Some(false) {
        rows.reverse();
    }
    Ok(rows)
}

/// The key range of the entries of `index` that satisfy `cmp`.
fn bounds(table: &str, index: &str, cmp: Option<(&IndexOperator, Value)>) -> Result<KeyRange> {
    let all = keys::index_prefix(table, index);
    let end = |prefix: &[u8]| prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
    let Some((op, value)) = cmp else { return Ok(prefix_range(&all)) };
    let at = keys::index_value_prefix(table, index, &value)?;
    let past = || prefix_end(&at).map_or(Bound::Unbounded, Bound::Included);
    Ok(match op {
        IndexOperator::Eq => (Bound::Included(at.clone()), end(&at)),
        IndexOperator::Gt => (past(), end(&all)),
        IndexOperator::GtEq => (Bound::Included(at), end(&all)),
        IndexOperator::Lt => (Bound::Included(all), Bound::Excluded(at)),
        IndexOperator::LtEq => (Bound::Included(all), end(&at)),
    })
}

/// `CREATE INDEX`: adds the index to the schema and an entry for every row, in one write.
pub(crate) fn create(writer: &mut Writer<'_>, table: &str, name: &str, column: &OrderByExpr) -> Result<()> {
    let mut schema =
        fetch_schema(&writer.view(), table)?.ok_or_else(|| IndexError::TableNotFound(table.to_owned()))?;
    if name.starts_with('\0') {
        return Err(StorageError::ReservedIndexName(name.to_owned()).into());
    }
    if schema.indexes.iter().any(|index| index.name == name) {
        return Err(IndexError::IndexNameAlreadyExists(name.to_owned()).into());
    }
    let index = SchemaIndex {
        name: name.to_owned(),
        expr: column.expr.clone(),
        order: SchemaIndexOrd::Both,
        created: Utc::now().naive_utc(),
    };
    let planned = Indexes::of_schema(&schema, std::slice::from_ref(&index));
    schema.indexes.push(index);
    let rows = writer.view().prefix(&keys::row_prefix(table)).map(decode_row).collect::<Result<Vec<_>>>()?;
    let mut entries = Vec::with_capacity(rows.len());
    for (key, row) in &rows {
        entries.extend(planned.entries(&keys::row(table, key)?, row)?);
    }
    writer.put("a schema", keys::schema(table), crate::rows::encode(&schema)?)?;
    entries.into_iter().try_for_each(|(key, value)| writer.put("an index entry", key, value))
}

/// `DROP INDEX`: removes the index from the schema and all its entries, in one write.
pub(crate) fn drop(writer: &mut Writer<'_>, table: &str, name: &str) -> Result<()> {
    let mut schema =
        fetch_schema(&writer.view(), table)?.ok_or_else(|| IndexError::TableNotFound(table.to_owned()))?;
    let before = schema.indexes.len();
    schema.indexes.retain(|index| index.name != name);
    if schema.indexes.len() == before {
        return Err(IndexError::IndexNameDoesNotExist(name.to_owned()).into());
    }
    writer.put("a schema", keys::schema(table), crate::rows::encode(&schema)?)?;
    writer.delete_prefix(&keys::index_prefix(table, name))
}
