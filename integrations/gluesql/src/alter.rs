//! `ALTER TABLE` column changes: the schema, every row and every index entry of the table
//! rewritten in one transaction, so that index entries always match the rows' new layout.
//! (Renaming a table uses GlueSQL's default, which already goes through `insert_data`.)

use gluesql_core::ast::{ColumnDef, Expr, Function};
use gluesql_core::data::{Schema, Value};
use gluesql_core::error::{AlterTableError, Result};
use gluesql_core::executor::evaluate_stateless;
use gluesql_core::plan::plan_scalar_expr;

use crate::keys;
use crate::rows::{decode_row, encode, fetch_schema, StoredRow, Writer};

/// The schema of `table` and its column definitions, or GlueSQL's errors for a missing or
/// schemaless table.
fn schema_with_columns(writer: &Writer<'_>, table: &str) -> Result<Schema> {
    let schema = fetch_schema(&writer.view(), table)?
        .ok_or_else(|| AlterTableError::TableNotFound(table.to_owned()))?;
    if schema.column_defs.is_none() {
        return Err(AlterTableError::SchemalessTableFound(table.to_owned()).into());
    }
    Ok(schema)
}

fn rows_of(writer: &Writer<'_>, table: &str) -> Result<Vec<StoredRow>> {
    writer.view().prefix(&keys::row_prefix(table)).map(decode_row).collect()
}

/// Writes `schema`, then `rows` under it, with every index entry of the table rebuilt.
fn rewrite(writer: &mut Writer<'_>, schema: &Schema, rows: Vec<StoredRow>) -> Result<()> {
    let table = &schema.table_name;
    writer.delete_prefix(&keys::index_table_prefix(table))?;
    writer.put("a schema", keys::schema(table), encode(schema)?)?;
    writer.write_rows(table, rows, false).map(drop)
}

/// `ALTER TABLE … RENAME COLUMN`: also renames the column in index expressions.
pub(crate) fn rename_column(writer: &mut Writer<'_>, table: &str, old: &str, new: &str) -> Result<()> {
    let mut schema = schema_with_columns(writer, table)?;
    let columns = schema.column_defs.iter_mut().flatten();
    let mut renamed = false;
    for column in columns {
        if column.name == new {
            return Err(AlterTableError::AlreadyExistingColumn(new.to_owned()).into());
        }
        if column.name == old && !renamed {
            new.clone_into(&mut column.name);
            renamed = true;
        }
    }
    if !renamed {
        return Err(AlterTableError::RenamingColumnNotFound.into());
    }
    for index in &mut schema.indexes {
        rename_in(&mut index.expr, old, new);
    }
    let rows = rows_of(writer, table)?;
    rewrite(writer, &schema, rows)
}

/// Renames column `old` to `new` wherever an index expression names it.
fn rename_in(expr: &mut Expr, old: &str, new: &str) {
    match expr {
        Expr::Identifier(ident) if ident == old => new.clone_into(ident),
        Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => rename_in(inner, old, new),
        Expr::BinaryOp { left, right, .. } => {
            rename_in(left, old, new);
            rename_in(right, old, new);
        }
        Expr::Function(function) => {
            if let Function::Cast { expr: inner, .. } = function.as_mut() {
                rename_in(inner, old, new);
            }
        }
        _ => {}
    }
}

/// `ALTER TABLE … ADD COLUMN`: every row gets the column's default (or NULL).
pub(crate) fn add_column(writer: &mut Writer<'_>, table: &str, column: &ColumnDef) -> Result<()> {
    let mut schema = schema_with_columns(writer, table)?;
    let default = match (&column.default, column.nullable) {
        (Some(default), _) => evaluate_stateless(None, &plan_scalar_expr(default.clone()))?.try_into()?,
        (None, true) => Value::Null,
        (None, false) => return Err(AlterTableError::DefaultValueRequired(column.clone()).into()),
    };
    let columns = schema.column_defs.get_or_insert_with(Vec::new);
    if columns.iter().any(|c| c.name == column.name) {
        return Err(AlterTableError::AlreadyExistingColumn(column.name.clone()).into());
    }
    columns.push(column.clone());
    let mut rows = rows_of(writer, table)?;
    rows.iter_mut().for_each(|(_, row)| row.push(default.clone()));
    rewrite(writer, &schema, rows)
}

/// `ALTER TABLE … DROP COLUMN` (GlueSQL drops the indexes on it first).
pub(crate) fn drop_column(writer: &mut Writer<'_>, table: &str, column: &str, if_exists: bool) -> Result<()> {
    let mut schema = schema_with_columns(writer, table)?;
    let columns = schema.column_defs.get_or_insert_with(Vec::new);
    let Some(at) = columns.iter().position(|c| c.name == column) else {
        if if_exists {
            return Ok(());
        }
        return Err(AlterTableError::DroppingColumnNotFound(column.to_owned()).into());
    };
    columns.remove(at);
    let mut rows = rows_of(writer, table)?;
    for (_, row) in &mut rows {
        if at < row.len() {
            row.remove(at);
        }
    }
    rewrite(writer, &schema, rows)
}
