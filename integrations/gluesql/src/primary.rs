//! Primary-key ranges. Rows are stored in primary-key order (see [`crate::keys`]), so a query
//! whose `WHERE` bounds the primary key by constants (`id >= 10 AND id < 20`, `id BETWEEN 1 AND
//! 9`, `5 < id`) needs only one key range of the table's rows, not a scan of the table.
//!
//! GlueSQL's plan of a table access is a full scan, a primary-key lookup (`id = 7`), or an
//! index scan with one comparison. [`plan`] turns the full scan under such a `WHERE` into an
//! index access whose name, after the prefix [`RANGE_PREFIX`], carries both bounds as encoded
//! keys (a plan has no other field for them); [`scan`] serves that access from the rows
//! themselves. The `WHERE` stays whole in the plan, so GlueSQL still evaluates every condition
//! on every row the range yields: the range only skips rows, and only rows that no condition
//! could accept. So a bound is taken only where that is certain: a constant (a literal, with
//! signs and parentheses) of exactly the key's type, whose order is the order of the stored
//! keys. A bound of another type (`id16 > 0.5`, a date key against a text literal) is left to
//! GlueSQL's filter alone, with GlueSQL's own comparison rules.

use std::ops::Bound;

use gluesql_core::ast::{BinaryOperator, ColumnDef, UnaryOperator};
use gluesql_core::data::{Key, Schema, Value};
use gluesql_core::error::Result;
use gluesql_core::executor::evaluate_stateless;
use gluesql_core::plan::{
    AggregationInputPlan, DistinctInputPlan, ExprPlan, FilterInputPlan, FilterPlan, LimitInputPlan,
    OffsetInputPlan, ProjectInputPlan, ProjectPlan, QueryPlan, SourcePlan, StatementPlan, TableAccessPlan,
};

use crate::keys;
use crate::view::{prefix_range, KeyRange, Merged, View};

/// How the name of a primary-key range access starts. `CREATE INDEX` refuses names starting
/// with NUL, so no real index is ever taken for a range.
pub(crate) const RANGE_PREFIX: &str = "\u{0}primary key range ";

/// `statement` with every full scan of a table whose `WHERE` bounds its primary key turned into
/// a range access; `schema` gives each table's schema.
pub(crate) fn plan<'s>(
    statement: StatementPlan,
    schema: impl Fn(&str) -> Option<&'s Schema>,
) -> StatementPlan {
    match statement {
        StatementPlan::Query(mut query) => {
            each_project(&mut query, &mut |project| plan_project(project, &schema));
            StatementPlan::Query(query)
        }
        other => other,
    }
}

/// The rows of `table` that the range access `index` names, in key order; `None` if `index`
/// is not a range access.
pub(crate) fn scan<'a>(view: &View<'a>, table: &str, index: &str) -> Result<Option<Merged<'a>>> {
    let Some((lo, hi)) = index.strip_prefix(RANGE_PREFIX).and_then(decode_range) else { return Ok(None) };
    let prefix = keys::row_prefix(table);
    let (all_lo, all_hi) = prefix_range(&prefix);
    // A bound on the key is a bound on the row's key, within the table's rows.
    let within = |bound: Bound<Vec<u8>>, all| match bound {
        Bound::Unbounded => all,
        bound => bound.map(|key| [prefix.as_slice(), &key].concat()),
    };
    Ok(Some(view.range(within(lo, all_lo), within(hi, all_hi))))
}

/// Calls `visit` on every projection of `query` that reads a source directly (not those of
/// subqueries, which keep GlueSQL's plan).
fn each_project(query: &mut QueryPlan, visit: &mut impl FnMut(&mut ProjectPlan)) {
    match query {
        QueryPlan::Project(project) => visit(project),
        QueryPlan::SelectOrderBy(order_by) => visit(&mut order_by.input),
        QueryPlan::Distinct(distinct) => distinct_project(&mut distinct.input, visit),
        QueryPlan::Offset(offset) => offset_project(&mut offset.input, visit),
        QueryPlan::Limit(limit) => match &mut limit.input {
            LimitInputPlan::Project(project) => visit(project),
            LimitInputPlan::SelectOrderBy(order_by) => visit(&mut order_by.input),
            LimitInputPlan::Distinct(distinct) => distinct_project(&mut distinct.input, visit),
            LimitInputPlan::Offset(offset) => offset_project(&mut offset.input, visit),
            LimitInputPlan::Values(_) | LimitInputPlan::ValuesOrderBy(_) => {}
        },
        QueryPlan::Values(_) | QueryPlan::ValuesOrderBy(_) => {}
    }
}

fn distinct_project(input: &mut DistinctInputPlan, visit: &mut impl FnMut(&mut ProjectPlan)) {
    match input {
        DistinctInputPlan::Project(project) => visit(project),
        DistinctInputPlan::SelectOrderBy(order_by) => visit(&mut order_by.input),
    }
}

fn offset_project(input: &mut OffsetInputPlan, visit: &mut impl FnMut(&mut ProjectPlan)) {
    match input {
        OffsetInputPlan::Project(project) => visit(project),
        OffsetInputPlan::SelectOrderBy(order_by) => visit(&mut order_by.input),
        OffsetInputPlan::Distinct(distinct) => distinct_project(&mut distinct.input, visit),
        OffsetInputPlan::Values(_) | OffsetInputPlan::ValuesOrderBy(_) => {}
    }
}

/// Plans the range access of `project`'s source, if it is a filtered full scan of a table.
fn plan_project<'s>(project: &mut ProjectPlan, schema: &impl Fn(&str) -> Option<&'s Schema>) {
    let filter = match &mut project.input {
        ProjectInputPlan::Filter(filter) => filter,
        ProjectInputPlan::Aggregation(aggregation) => match &mut aggregation.input {
            AggregationInputPlan::Filter(filter) => filter,
            _ => return,
        },
        ProjectInputPlan::Having(having) => match &mut having.input.input {
            AggregationInputPlan::Filter(filter) => filter,
            _ => return,
        },
        _ => return,
    };
    let FilterPlan { input: FilterInputPlan::Source(SourcePlan::Table(table)), expr } = filter else {
        return;
    };
    if table.access != TableAccessPlan::FullScan {
        return;
    }
    let Some(schema) = schema(&table.name) else { return };
    let Some(key) = primary_key(schema) else { return };
    let names =
        Names { column: &key.name, table: table.alias.as_ref().map_or(&table.name, |alias| &alias.name) };
    let mut range = Range::default();
    for (op, bound) in conjuncts(expr).into_iter().flat_map(|conjunct| names.bounds(conjunct)) {
        if let Some(key) = constant_key(bound, key) {
            range.narrow(op, key);
        }
    }
    if range.is_bounded() {
        table.access = TableAccessPlan::Index { name: range.name(), asc: None, predicate: None };
    }
}

/// The conditions `expr` requires all of (its terms joined by `AND`).
fn conjuncts(expr: &ExprPlan) -> Vec<&ExprPlan> {
    match expr {
        ExprPlan::Nested(inner) => conjuncts(inner),
        ExprPlan::BinaryOp { left, op: BinaryOperator::And, right } => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        other => vec![other],
    }
}

/// How a `WHERE` names the primary-key column: `id`, or `t.id` with the table's name or alias.
struct Names<'a> {
    column: &'a str,
    table: &'a str,
}

/// A comparison of the key with a bound: the key is greater than it (`Lower`), less (`Upper`),
/// or equal, each inclusive or not.
#[derive(Clone, Copy)]
enum Op {
    Lower { inclusive: bool },
    Upper { inclusive: bool },
    Equal,
}

impl Names<'_> {
    /// Whether `expr` is the primary-key column.
    fn is_key(&self, expr: &ExprPlan) -> bool {
        match expr {
            ExprPlan::Identifier(name) => name == self.column,
            ExprPlan::CompoundIdentifier { alias, ident } => alias == self.table && ident == self.column,
            ExprPlan::Nested(inner) => self.is_key(inner),
            _ => false,
        }
    }

    /// The comparisons `conjunct` makes of the key with other expressions (`BETWEEN` makes two).
    fn bounds<'e>(&self, conjunct: &'e ExprPlan) -> Vec<(Op, &'e ExprPlan)> {
        let (op, key_left, other) = match conjunct {
            ExprPlan::Between { expr, negated: false, low, high } if self.is_key(expr) => {
                return vec![(Op::Lower { inclusive: true }, low), (Op::Upper { inclusive: true }, high)];
            }
            ExprPlan::BinaryOp { left, op, right } if self.is_key(left) => (op, true, right.as_ref()),
            ExprPlan::BinaryOp { left, op, right } if self.is_key(right) => (op, false, left.as_ref()),
            _ => return Vec::new(),
        };
        let lower = |inclusive| if key_left { Op::Lower { inclusive } } else { Op::Upper { inclusive } };
        let upper = |inclusive| if key_left { Op::Upper { inclusive } } else { Op::Lower { inclusive } };
        let op = match op {
            BinaryOperator::Gt => lower(false),
            BinaryOperator::GtEq => lower(true),
            BinaryOperator::Lt => upper(false),
            BinaryOperator::LtEq => upper(true),
            BinaryOperator::Eq => Op::Equal,
            _ => return Vec::new(),
        };
        vec![(op, other)]
    }
}

/// `expr`'s value as an encoded key, if `expr` is a constant of exactly the key column's type.
fn constant_key(expr: &ExprPlan, key: &ColumnDef) -> Option<Vec<u8>> {
    if !is_constant(expr) {
        return None;
    }
    let value: Value = evaluate_stateless(None, expr).ok()?.try_into().ok()?;
    if value.get_type().as_ref() != Some(&key.data_type) {
        return None;
    }
    Key::try_from(value).ok()?.to_cmp_be_bytes().ok()
}

/// Whether `expr` is a literal, possibly signed and parenthesized: the same value whenever
/// it is evaluated, with no column, function or subquery.
fn is_constant(expr: &ExprPlan) -> bool {
    match expr {
        ExprPlan::Literal(_) | ExprPlan::Value(_) | ExprPlan::TypedString { .. } => true,
        ExprPlan::Nested(inner) => is_constant(inner),
        ExprPlan::UnaryOp { op: UnaryOperator::Minus | UnaryOperator::Plus, expr } => is_constant(expr),
        _ => false,
    }
}

/// The tightest key range the bounds seen so far allow, each bound an encoded key.
#[derive(Default)]
struct Range {
    lo: Option<(Vec<u8>, bool)>,
    hi: Option<(Vec<u8>, bool)>,
}

impl Range {
    /// Adds the condition `key op bound`.
    fn narrow(&mut self, op: Op, bound: Vec<u8>) {
        match op {
            Op::Lower { inclusive } => Self::tighten(&mut self.lo, bound, inclusive, |new, old| new > old),
            Op::Upper { inclusive } => Self::tighten(&mut self.hi, bound, inclusive, |new, old| new < old),
            Op::Equal => {
                self.narrow(Op::Lower { inclusive: true }, bound.clone());
                self.narrow(Op::Upper { inclusive: true }, bound);
            }
        }
    }

    /// Replaces `side` by `(bound, inclusive)` if that is tighter (`tighter(new, old)`, or the
    /// same key exclusive).
    fn tighten(
        side: &mut Option<(Vec<u8>, bool)>,
        bound: Vec<u8>,
        inclusive: bool,
        tighter: fn(&[u8], &[u8]) -> bool,
    ) {
        let replace = match side {
            None => true,
            Some((old, old_inclusive)) => {
                tighter(&bound, old) || (bound == *old && *old_inclusive && !inclusive)
            }
        };
        if replace {
            *side = Some((bound, inclusive));
        }
    }

    fn is_bounded(&self) -> bool {
        self.lo.is_some() || self.hi.is_some()
    }

    /// The access's name: [`RANGE_PREFIX`], then each side as `-` (unbounded), `[hex` or `(hex`
    /// for the low side, `hex]` or `hex)` for the high side, separated by a space.
    fn name(&self) -> String {
        let hex = |key: &[u8]| key.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let lo = self
            .lo
            .as_ref()
            .map_or("-".to_owned(), |(key, inc)| format!("{}{}", if *inc { '[' } else { '(' }, hex(key)));
        let hi = self
            .hi
            .as_ref()
            .map_or("-".to_owned(), |(key, inc)| format!("{}{}", hex(key), if *inc { ']' } else { ')' }));
        format!("{RANGE_PREFIX}{lo} {hi}")
    }
}

/// The bounds a range access's name (after [`RANGE_PREFIX`]) carries, as [`Range::name`]
/// writes them; `None` if it is not such a name.
fn decode_range(text: &str) -> Option<KeyRange> {
    let unhex = |hex: &str| -> Option<Vec<u8>> {
        if hex.len() % 2 != 0 {
            return None;
        }
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
    };
    let (lo, hi) = text.split_once(' ')?;
    let lo = match lo.split_at_checked(1)? {
        ("-", "") => Bound::Unbounded,
        ("[", hex) => Bound::Included(unhex(hex)?),
        ("(", hex) => Bound::Excluded(unhex(hex)?),
        _ => return None,
    };
    let hi = match hi.split_at_checked(hi.len().checked_sub(1)?)? {
        ("", "-") => Bound::Unbounded,
        (hex, "]") => Bound::Included(unhex(hex)?),
        (hex, ")") => Bound::Excluded(unhex(hex)?),
        _ => return None,
    };
    Some((lo, hi))
}

/// `schema`'s primary-key column, if it has one.
fn primary_key(schema: &Schema) -> Option<&ColumnDef> {
    schema.column_defs.iter().flatten().find(|column| column.unique.is_some_and(|unique| unique.is_primary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_name_carries_its_bounds() {
        let mut range = Range::default();
        range.narrow(Op::Lower { inclusive: true }, vec![1, 0xab]);
        range.narrow(Op::Lower { inclusive: false }, vec![1, 0xab]);
        range.narrow(Op::Lower { inclusive: true }, vec![0]);
        range.narrow(Op::Upper { inclusive: true }, vec![9]);
        range.narrow(Op::Upper { inclusive: false }, vec![8, 1]);
        let name = range.name();
        let text = name.strip_prefix(RANGE_PREFIX).unwrap();
        assert_eq!(text, "(01ab 0801)");
        assert_eq!(decode_range(text), Some((Bound::Excluded(vec![1, 0xab]), Bound::Excluded(vec![8, 1]))));
        assert_eq!(decode_range("- -"), Some((Bound::Unbounded, Bound::Unbounded)));
        assert_eq!(decode_range("[0 -"), None);
        assert_eq!(decode_range("x"), None);
    }
}
