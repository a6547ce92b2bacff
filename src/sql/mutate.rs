//! Writes: INSERT (upserts), UPDATE, DELETE and PUT from the JSON payload, with the
//! representation read back from the written rows.

use super::read::*;
use super::result::RESPONSE_GUCS;
use super::*;
use std::fmt::Write;

/// Writes the payload as rows: an array of objects (a single object becomes a
/// one-element array; PUT and PATCH use the first element only). The payload moves into
/// the statement's parameters: a bulk body is not copied.
fn push_payload_rows(
    b: &mut Builder,
    out: &mut String,
    plan: &MutatePlan,
    payload: String,
    first_only: bool,
) {
    let p = b.param(payload);
    if !plan.missing_default {
        return push_rows_of(out, p, first_only);
    }
    // `missing=default`: each object is laid over the columns' defaults. The default
    // expressions are catalog text (pg_get_expr), not client input.
    out.push_str("(SELECT coalesce(jsonb_agg(jsonb_build_object(");
    let defaults = plan
        .columns
        .iter()
        .filter_map(|c| c.default.as_ref().map(|d| (c, d)));
    push_separated(out, defaults, ", ", |out, (c, default)| {
        push_literal(out, &c.name);
        out.push_str(", ");
        out.push_str(default);
    });
    out.push_str(") || e), '[]') FROM jsonb_array_elements((");
    push_rows_of(out, p, first_only);
    out.push_str(")::jsonb) AS e)::json");
}

/// The JSON array of the payload `p`'s objects (its first only for PUT and PATCH).
fn push_rows_of(out: &mut String, p: Placeholder, first_only: bool) {
    let _ = if first_only {
        write!(out, "json_build_array(CASE WHEN json_typeof({p}::json) = 'array' THEN {p}::json->0 ELSE {p}::json END)")
    } else {
        write!(out, "CASE WHEN json_typeof({p}::json) = 'array' THEN {p}::json ELSE json_build_array({p}::json) END")
    };
}

/// A string literal for catalog names (column names as JSON keys), quotes doubled.
fn push_literal(out: &mut String, s: &str) {
    out.push('\'');
    for (i, part) in s.split('\'').enumerate() {
        if i > 0 {
            out.push_str("''");
        }
        out.push_str(part);
    }
    out.push('\'');
}

/// `json_to_recordset(rows) AS _("a" type, ...)`, or plain rows when no columns.
fn push_recordset(
    b: &mut Builder,
    out: &mut String,
    plan: &MutatePlan,
    payload: String,
    first_only: bool,
) {
    if plan.columns.is_empty() {
        out.push_str("json_array_elements(");
        push_payload_rows(b, out, plan, payload, first_only);
        out.push_str(") AS _");
        return;
    }
    out.push_str("json_to_recordset(");
    push_payload_rows(b, out, plan, payload, first_only);
    out.push_str(") AS _(");
    push_separated(out, &plan.columns, ", ", |out, c| {
        let _ = write_ident(out, &c.name);
        out.push(' ');
        // A domain with a `json -> domain` cast reads its JSON value through it.
        out.push_str(if c.repr().from_json.is_some() {
            "json"
        } else {
            &c.data_type
        });
    });
    out.push(')');
}

/// Writes each item with `write`, `separator` between them.
fn push_separated<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    separator: &str,
    mut write: impl FnMut(&mut String, T),
) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        write(out, item);
    }
}

/// The names, quoted, each after `prefix`, comma-separated.
fn push_column_list<'a>(
    out: &mut String,
    names: impl IntoIterator<Item = &'a String>,
    prefix: &str,
) {
    push_separated(out, names, ", ", |out, name| {
        out.push_str(prefix);
        let _ = write_ident(out, name);
    });
}

/// A payload column's value, through the column's `json -> domain` cast if it has one.
fn push_payload_value(out: &mut String, c: &crate::schema::Column, source: &str) {
    let cast = c.repr().from_json.as_ref();
    if let Some(function) = cast {
        out.push_str(&function_ref(function));
        out.push('(');
    }
    out.push_str(source);
    out.push('.');
    let _ = write_ident(out, &c.name);
    if cast.is_some() {
        out.push(')');
    }
}

fn push_on_conflict<'a>(
    out: &mut String,
    plan: &MutatePlan,
    key: impl IntoIterator<Item = &'a String>,
    merge: bool,
) {
    out.push_str(" ON CONFLICT (");
    push_column_list(out, key, "");
    if !merge || plan.columns.is_empty() {
        out.push_str(") DO NOTHING");
        return;
    }
    out.push_str(") DO UPDATE SET ");
    push_separated(out, &plan.columns, ", ", |out, c| {
        let _ = write_ident(out, &c.name);
        out.push_str(" = EXCLUDED.");
        let _ = write_ident(out, &c.name);
    });
}

/// Writes the INSERT/UPDATE/DELETE itself, without RETURNING.
fn push_mutation(b: &mut Builder, out: &mut String, plan: &MutatePlan, payload: String) {
    match &plan.kind {
        MutationKind::Insert { conflict } => {
            push_insert(b, out, plan, payload, false);
            if let Some((key, resolution)) = conflict {
                let merge = *resolution == Resolution::MergeDuplicates;
                push_on_conflict(out, plan, key, merge);
            }
        }
        MutationKind::Put { key } => {
            push_insert(b, out, plan, payload, true);
            out.push_str(" WHERE ");
            push_separated(out, key, " AND ", |out, (column, value)| {
                out.push_str("_.");
                let _ = write_ident(out, column);
                let _ = write!(out, " = {}", b.param(value.clone()));
            });
            push_on_conflict(out, plan, key.iter().map(|(c, _)| c), true);
        }
        MutationKind::Update => push_update(b, out, plan, payload),
        MutationKind::Delete => {
            let node = filter_node(plan);
            out.push_str("DELETE FROM ");
            out.push_str(&table_ref(plan.table));
            out.push_str(&where_clause(b, &node, Vec::new()));
        }
    }
}

/// `INSERT INTO t(cols) SELECT ... FROM` the payload's rows (the first only for PUT).
fn push_insert(
    b: &mut Builder,
    out: &mut String,
    plan: &MutatePlan,
    payload: String,
    first_only: bool,
) {
    out.push_str("INSERT INTO ");
    out.push_str(&table_ref(plan.table));
    if !plan.columns.is_empty() {
        out.push('(');
        push_column_list(out, plan.columns.iter().map(|c| &c.name), "");
        out.push(')');
    }
    out.push_str(" SELECT ");
    push_separated(out, &plan.columns, ", ", |out, c| {
        push_payload_value(out, c, "_")
    });
    out.push_str(" FROM ");
    push_recordset(b, out, plan, payload, first_only);
}

/// `UPDATE t SET ... FROM` the payload's first object `WHERE` the filters; with no
/// columns to set, a SELECT of no rows (an empty PATCH changes nothing).
fn push_update(b: &mut Builder, out: &mut String, plan: &MutatePlan, payload: String) {
    let target = table_ref(plan.table);
    if plan.columns.is_empty() {
        let _ = write!(out, "SELECT {target}.* FROM {target} WHERE false");
        return;
    }
    let _ = write!(out, "UPDATE {target} SET ");
    push_separated(out, &plan.columns, ", ", |out, c| {
        let _ = write_ident(out, &c.name);
        out.push_str(" = ");
        push_payload_value(out, c, "pgrst_body");
    });
    out.push_str(" FROM (SELECT * FROM ");
    push_recordset(b, out, plan, payload, true);
    out.push_str(") AS pgrst_body");
    let node = filter_node(plan);
    out.push_str(&where_clause(b, &node, Vec::new()));
}

/// The target table as a node carrying the write's filters, referred to by its name.
pub(super) fn filter_node<'a>(plan: &MutatePlan<'a>) -> ReadNode<'a> {
    ReadNode::filtering(plan.table, plan.filters.clone())
}

/// Whether a row an upsert returns was inserted rather than updated. `xmax = 0` says so
/// for a table; a partitioned table's RETURNING cannot read system columns, so there the
/// row counts as inserted when no row with its conflict key was visible before: the
/// statement's own snapshot does not see what it inserts, and sees an updated row's old
/// version.
pub(super) fn inserted_flag(plan: &MutatePlan, target: &str) -> String {
    let conflict: Vec<&String> = match &plan.kind {
        MutationKind::Insert {
            conflict: Some((cols, _)),
        } => cols.iter().collect(),
        MutationKind::Put { key } => key.iter().map(|(c, _)| c).collect(),
        _ => return "(xmax = 0)".to_string(),
    };
    if plan.table.kind != "partitioned_table" || conflict.is_empty() {
        return "(xmax = 0)".to_string();
    }
    let same_key: Vec<String> = conflict
        .iter()
        .map(|c| {
            let c = quote_ident(c);
            format!("pgrst_before.{c} = {target}.{c}")
        })
        .collect();
    format!(
        "(NOT EXISTS (SELECT 1 FROM {target} AS pgrst_before WHERE {}))",
        same_key.join(" AND ")
    )
}

/// A write and its representation in one statement: columns total (NULL), page_total,
/// inserted (upserts only), body, response_headers, response_status. The plan's payload
/// moves into the statement's parameters (a big body is not held twice), and the
/// mutation is written straight into the statement (format! and the strings of its
/// parts were about 9,000 instructions of an insert, callgrind).
pub fn mutate_statement(plan: &mut MutatePlan) -> Statement {
    let payload = std::mem::take(&mut plan.payload);
    let plan = &*plan;
    let mut b = Builder::default();
    let wants_rows = plan.representation || plan.location;
    let inserted = b.in_place(|b, sql| {
        sql.push_str(if plan.track_inserted {
            "WITH pgrst_mutation AS ("
        } else {
            "WITH pgrst_source AS ("
        });
        push_mutation(b, sql, plan, payload);
        let target = table_ref(plan.table);
        // The no-op update is a SELECT: its select list already is the whole row.
        if !(matches!(plan.kind, MutationKind::Update) && plan.columns.is_empty()) {
            sql.push_str(" RETURNING ");
            push_returning_list(sql, plan, wants_rows, &format!("{target}."));
        }
        if !plan.track_inserted {
            sql.push(')');
            return "NULL";
        }
        let _ = write!(
            sql,
            ", {} AS pgrst_inserted), pgrst_source AS (SELECT ",
            inserted_flag(plan, &target)
        );
        push_returning_list(sql, plan, wants_rows, "");
        sql.push_str(" FROM pgrst_mutation)");
        "(SELECT pg_catalog.count(*) FROM pgrst_mutation WHERE pgrst_inserted)"
    });
    let rows = if wants_rows {
        representation_rows(&mut b, &plan.read.root)
    } else {
        "SELECT * FROM pgrst_source".to_string()
    };
    let body = if wants_rows {
        body_expr(&plan.read)
    } else {
        "''".into()
    };
    let _ = write!(
        b.sql,
        " SELECT NULL::int8, pg_catalog.count(*)::int8, {inserted}::int8, ({body}), \
         {RESPONSE_GUCS} FROM ({rows}) _postgrest_t"
    );
    b.finish_as(RowShape::Written)
}

/// The columns the written rows carry on: `1` when nothing reads them, the whole row
/// (`t.*`, or every column by name when `prefix` is empty), or the plan's list.
fn push_returning_list(out: &mut String, plan: &MutatePlan, wants_rows: bool, prefix: &str) {
    match (wants_rows, &plan.returning) {
        (false, _) => out.push('1'),
        (true, None) if !prefix.is_empty() => {
            out.push_str(prefix);
            out.push('*');
        }
        (true, None) => push_column_list(out, plan.table.columns.iter().map(|c| &c.name), prefix),
        (true, Some(cols)) => push_column_list(out, cols, prefix),
    }
}

/// The representation: the read over the written rows (`pgrst_source`).
fn representation_rows(b: &mut Builder, root: &ReadNode) -> String {
    let mut out = String::from("SELECT ");
    let group_by = push_select_list(b, &mut out, root, true);
    push_from(b, &mut out, root, false, Some("pgrst_source"));
    push_where(b, &mut out, root, Vec::new());
    out.push_str(&group_by);
    push_order(b, &mut out, root);
    out
}
