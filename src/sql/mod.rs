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
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    /// Values sent as untyped text parameters; PostgreSQL infers their types.
    pub params: Vec<String>,
    /// The columns of the row it returns.
    pub shape: RowShape,
}

// Identifiers are quoted through `Ident` into one buffer sized up front: the
// format!-and-replace form took three allocations per name, and a rendered embed names
// ~40 (perf: quoting and its allocations were a third of sql::read's 13 % of pgrest's CPU
// on the embed bench).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    let _ = write_ident(&mut out, name);
    out
}

/// The one quoting rule: `name` double-quoted, its own double quotes doubled. Generic so
/// a String is written without going through a Formatter.
fn write_ident(out: &mut impl Write, name: &str) -> std::fmt::Result {
    out.write_char('"')?;
    if name.contains('"') {
        for (i, part) in name.split('"').enumerate() {
            if i > 0 {
                out.write_str("\"\"")?;
            }
            out.write_str(part)?;
        }
    } else {
        out.write_str(name)?;
    }
    out.write_char('"')
}

/// An identifier quoted where it is formatted (`format!("{}", Ident(name))`), without a
/// String of its own.
pub(super) struct Ident<'a>(pub &'a str);

impl std::fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_ident(f, self.0)
    }
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    let mut out = String::with_capacity(schema.len() + name.len() + 5);
    let _ = write_qualified(&mut out, schema, name);
    out
}

/// `"schema"."name"`, written to `out`.
fn write_qualified(out: &mut impl Write, schema: &str, name: &str) -> std::fmt::Result {
    write_ident(out, schema)?;
    out.write_char('.')?;
    write_ident(out, name)
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

/// A parameter's placeholder in the statement text: `$n`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placeholder(usize);

impl std::fmt::Display for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "${}", self.0)
    }
}

pub(super) struct Builder {
    sql: String,
    params: Vec<String>,
}

/// Room for the statement text up front: a simple insert with its representation is
/// about 600 bytes, and growing from empty took eight reallocations (callgrind: about
/// 1,500 instructions of an insert).
const STATEMENT_CAPACITY: usize = 1024;

impl Default for Builder {
    fn default() -> Self {
        Builder {
            sql: String::with_capacity(STATEMENT_CAPACITY),
            params: Vec::new(),
        }
    }
}

impl Builder {
    pub(super) fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    /// Adds a parameter; its placeholder (`$n`) is written where it is displayed.
    pub(super) fn param(&mut self, value: impl Into<String>) -> Placeholder {
        self.params.push(value.into());
        Placeholder(self.params.len())
    }

    /// Runs `write` with the statement text as its output, so clauses are written in
    /// place (not built as strings of their own and copied in) while `write` still adds
    /// parameters through the builder. `write` must write to the output it is given only.
    pub(super) fn in_place<R>(&mut self, write: impl FnOnce(&mut Builder, &mut String) -> R) -> R {
        let mut sql = std::mem::take(&mut self.sql);
        let r = write(self, &mut sql);
        debug_assert!(
            self.sql.is_empty(),
            "in_place: text written to the builder is lost"
        );
        self.sql = sql;
        r
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
    if row_ref == table_ref(table) {
        quote_ident(&table.name)
    } else {
        row_ref.to_string()
    }
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
