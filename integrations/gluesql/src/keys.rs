//! The byte layout of every Helio key this crate writes (see the crate docs, "Key layout").
//!
//! A key is a namespace byte, then names escaped and terminated so that no name is a prefix of
//! another's encoding, then an order-preserving encoding of a primary key or an index value.
//! Byte order of the keys is the order GlueSQL scans in.

use gluesql_core::data::{Key, Value};
use gluesql_core::error::Result;

/// Namespace of the store's own counters (`META` + name).
pub(crate) const META: u8 = 0x01;
/// Namespace of table schemas (`SCHEMA` + table).
pub(crate) const SCHEMA: u8 = 0x02;
/// Namespace of rows (`ROW` + table + primary key).
pub(crate) const ROW: u8 = 0x03;
/// Namespace of index entries (`INDEX` + table + index + value + primary key).
pub(crate) const INDEX: u8 = 0x04;
/// Namespace of table metadata for `GLUE_OBJECTS` (`TABLE_META` + table).
pub(crate) const TABLE_META: u8 = 0x05;
/// Namespace of custom functions (`FUNCTION` + upper-cased name).
pub(crate) const FUNCTION: u8 = 0x06;

/// The key of the next generated row id (a big-endian `u64`).
pub(crate) fn row_id_counter() -> Vec<u8> {
    let mut key = vec![META];
    push_escaped(&mut key, b"row_id");
    key
}

/// The key of a table's schema.
pub(crate) fn schema(table: &str) -> Vec<u8> {
    named(SCHEMA, table)
}

/// The key of a table's metadata map.
pub(crate) fn table_meta(table: &str) -> Vec<u8> {
    named(TABLE_META, table)
}

/// The key of a custom function.
pub(crate) fn function(name: &str) -> Vec<u8> {
    named(FUNCTION, name)
}

/// The prefix of every row of `table`.
pub(crate) fn row_prefix(table: &str) -> Vec<u8> {
    named(ROW, table)
}

/// The key of the row of `table` with primary key `key`.
pub(crate) fn row(table: &str, key: &Key) -> Result<Vec<u8>> {
    let mut out = row_prefix(table);
    out.extend_from_slice(&key.to_cmp_be_bytes()?);
    Ok(out)
}

/// The prefix of every entry of every index of `table`.
pub(crate) fn index_table_prefix(table: &str) -> Vec<u8> {
    named(INDEX, table)
}

/// The prefix of every entry of index `index` of `table`.
pub(crate) fn index_prefix(table: &str, index: &str) -> Vec<u8> {
    let mut out = index_table_prefix(table);
    push_escaped(&mut out, index.as_bytes());
    out
}

/// The prefix of the entries of index `index` of `table` whose indexed value is `value`.
pub(crate) fn index_value_prefix(table: &str, index: &str, value: &Value) -> Result<Vec<u8>> {
    let mut out = index_prefix(table, index);
    push_escaped(&mut out, &value.to_cmp_be_bytes()?);
    Ok(out)
}

/// The index entry for the row with encoded primary key `row_key` (the part of its row key
/// after [`row_prefix`]).
pub(crate) fn index_entry(value_prefix: &[u8], row_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value_prefix.len() + row_key.len());
    out.extend_from_slice(value_prefix);
    out.extend_from_slice(row_key);
    out
}

/// The least key greater than every key that starts with `prefix` (`None`: there is none).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn named(namespace: u8, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 3);
    key.push(namespace);
    push_escaped(&mut key, name.as_bytes());
    key
}

/// Appends `bytes` with each `0x00` written as `0x00 0xFF`, then the terminator `0x00 0x01`:
/// order-preserving, and no encoding is a prefix of another.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_that_are_prefixes_do_not_collide() {
        let short = row_prefix("t");
        let long = row_prefix("t2");
        assert!(!long.starts_with(&short));
        assert!(short < long);
    }

    #[test]
    fn escaping_preserves_order() {
        let names: [&[u8]; 5] = [b"", b"\x00", b"\x00\x00", b"\x00a", b"a"];
        let encoded: Vec<Vec<u8>> = names
            .iter()
            .map(|n| {
                let mut out = Vec::new();
                push_escaped(&mut out, n);
                out
            })
            .collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn row_keys_sort_by_primary_key() {
        let keys: Vec<Vec<u8>> =
            [-5i64, -1, 0, 3, 100].iter().map(|&k| row("t", &Key::I64(k)).unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
