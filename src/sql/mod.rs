//! Render plans as parameterized SQL. Identifiers go through `quote_ident`; every client
//! value is a bind parameter. Nothing here looks at the schema cache: what a statement
//! reads and writes is in its plan.

mod call;
pub mod envelope;
mod mutate;
mod read;
pub mod result;
#[cfg(test)]
mod tests;

pub use call::call_statement;
pub use envelope::Envelope;
pub use mutate::mutate_statement;
pub use read::{planned_count_statement, read_statement};
pub use result::RowShape;

use crate::plan::fields::{Condition, OrderKey, Output, ResolvedField, Source};
use crate::plan::{CallArgs, CallPlan, Embed, MutatePlan, MutationKind, ReadNode, ReadPlan};
use crate::request::prefer::Resolution;
use crate::request::query::{
    Aggregate, CompareOp, Direction, IsValue, JsonKey, Nulls, Operation, Quantifier,
};
use crate::request::MediaType;
use crate::schema::{QualifiedName, Table};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    /// Values sent as untyped text parameters; PostgreSQL infers their types.
    pub params: Vec<String>,
    /// The columns of the row it returns.
    pub shape: RowShape,
}

// Identifiers are quoted into one buffer sized up front: the format!-and-replace form took
// three allocations per name, and a rendered embed names ~40 (perf: quoting and its
// allocations were a third of sql::read's 13 % of pgrest's CPU on the embed bench).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_ident(&mut out, name);
    out
}

/// Appends `name` double-quoted, its own double quotes doubled.
pub(super) fn push_ident(out: &mut String, name: &str) {
    out.push('"');
    if name.contains('"') {
        for (i, part) in name.split('"').enumerate() {
            if i > 0 {
                out.push_str("\"\"");
            }
            out.push_str(part);
        }
    } else {
        out.push_str(name);
    }
    out.push('"');
}

/// An identifier quoted where it is formatted (`format!("{}", Ident(name))`), without a
/// String of its own.
pub(super) struct Ident<'a>(pub &'a str);

impl std::fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"")?;
        for (i, part) in self.0.split('"').enumerate() {
            if i > 0 {
                f.write_str("\"\"")?;
            }
            f.write_str(part)?;
        }
        f.write_str("\"")
    }
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    let mut out = String::with_capacity(schema.len() + name.len() + 5);
    push_ident(&mut out, schema);
    out.push('.');
    push_ident(&mut out, name);
    out
}

/// A function of the schema cache, quoted.
pub(super) fn function_ref(f: &crate::schema::QualifiedName) -> String {
    qualified(&f.schema, &f.name)
}

/// Quotes a dotted name like `schema.fn` part by part.
pub fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// Type names in casts cannot be parameters; the grammar only lets letters, digits,
/// `_` and spaces through, and this re-checks it where the text is written.
pub(super) fn type_name(cast: &str) -> &str {
    debug_assert!(cast
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == ' '));
    if cast
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == ' ')
    {
        cast
    } else {
        "text"
    }
}

#[derive(Default)]
pub(super) struct Builder {
    sql: String,
    params: Vec<String>,
}

impl Builder {
    pub(super) fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    pub(super) fn param(&mut self, value: impl Into<String>) -> String {
        use std::fmt::Write;
        self.params.push(value.into());
        let mut placeholder = String::with_capacity(6);
        let _ = write!(placeholder, "${}", self.params.len());
        placeholder
    }

    pub(super) fn finish(self) -> Statement {
        self.finish_as(RowShape::Rows)
    }

    pub(super) fn finish_as(self, shape: RowShape) -> Statement {
        Statement {
            sql: self.sql,
            params: self.params,
            shape,
        }
    }
}

pub(super) fn table_ref(table: &Table) -> String {
    qualified(&table.schema, &table.name)
}

/// The whole-row reference for a row ref: an alias as is, a qualified table by its name.
pub(super) fn whole_row(row_ref: &str, table: &Table) -> String {
    if is_table_ref(row_ref, table) {
        quote_ident(&table.name)
    } else {
        row_ref.to_string()
    }
}

/// Whether `row_ref` is `table_ref(table)`, without writing it out.
fn is_table_ref(row_ref: &str, table: &Table) -> bool {
    strip_ident(row_ref, &table.schema)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| strip_ident(rest, &table.name))
        .is_some_and(str::is_empty)
}

/// What follows `name`, quoted as `push_ident` writes it, at the start of `text`.
fn strip_ident<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let mut rest = text.strip_prefix('"')?;
    for (i, part) in name.split('"').enumerate() {
        if i > 0 {
            rest = rest.strip_prefix("\"\"")?;
        }
        rest = rest.strip_prefix(part)?;
    }
    rest.strip_prefix('"')
}

/// How SQL refers to a node's rows: its alias, or the root's qualified name.
pub(super) fn node_ref(node: &ReadNode) -> String {
    match &node.alias {
        Some(a) => quote_ident(a),
        None => table_ref(node.table),
    }
}

/// What the request's role may use in `$1` (a schema), for the OpenAPI document in
/// openapi-mode follow-privileges: `{"tables": [...], "functions": [...]}` in the body
/// column of a read's row shape.
pub fn openapi_privileges(schema: &str) -> Statement {
    let sql = "SELECT NULL::bigint, 0::bigint, CASE WHEN has_schema_privilege($1::text, 'USAGE') \
THEN json_build_object(\
 'tables', coalesce((SELECT json_agg(c.relname) FROM pg_class c \
   JOIN pg_namespace n ON n.oid = c.relnamespace \
   WHERE n.nspname = $1::text AND c.relkind IN ('r', 'v', 'm', 'f', 'p') \
   AND (has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE') \
     OR has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE'))), '[]'), \
 'functions', coalesce((SELECT json_agg(DISTINCT p.proname) FROM pg_proc p \
   JOIN pg_namespace n ON n.oid = p.pronamespace \
   WHERE n.nspname = $1::text AND has_function_privilege(p.oid, 'EXECUTE')), '[]'))::text \
ELSE '{\"tables\": [], \"functions\": []}' END, NULL::text, NULL::text";
    Statement {
        sql: sql.to_string(),
        params: vec![schema.to_string()],
        shape: RowShape::Rows,
    }
}
