//! Writes: INSERT (upserts), UPDATE, DELETE and PUT from the JSON payload, with the
//! representation read back from the written rows.

use super::read::*;
use super::result::RESPONSE_GUCS;
use super::*;
use std::fmt::Write;

/// The payload as rows: an array of objects (a single object becomes a one-element
/// array; PUT and PATCH use the first element only).
pub(super) fn payload_rows(b: &mut Builder, plan: &MutatePlan, first_only: bool) -> String {
    let p = b.param(plan.payload.clone());
    let rows = if first_only {
        format!("json_build_array(CASE WHEN json_typeof({p}::json) = 'array' THEN {p}::json->0 ELSE {p}::json END)")
    } else {
        format!("CASE WHEN json_typeof({p}::json) = 'array' THEN {p}::json ELSE json_build_array({p}::json) END")
    };
    if !plan.missing_default {
        return rows;
    }
    // `missing=default`: each object is laid over the columns' defaults. The default
    // expressions are catalog text (pg_get_expr), not client input.
    let defaults: Vec<String> = plan
        .columns
        .iter()
        .filter_map(|c| {
            c.default
                .as_ref()
                .map(|d| format!("{}, {d}", quote_literal(&c.name)))
        })
        .collect();
    format!(
        "(SELECT coalesce(jsonb_agg(jsonb_build_object({}) || e), '[]') FROM jsonb_array_elements(({rows})::jsonb) AS e)::json",
        defaults.join(", ")
    )
}

/// A string literal for catalog names (column names as JSON keys), quotes doubled.
pub(super) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `json_to_recordset(rows) AS _("a" type, ...)`, or plain rows when no columns.
pub(super) fn recordset(plan: &MutatePlan, rows: &str) -> String {
    if plan.columns.is_empty() {
        return format!("json_array_elements({rows}) AS _");
    }
    // A domain with a `json -> domain` cast reads its JSON value through it.
    let defs: Vec<String> = plan
        .columns
        .iter()
        .map(|c| {
            let ty = if c.repr().from_json.is_some() {
                "json"
            } else {
                &c.data_type
            };
            format!("{} {ty}", Ident(&c.name))
        })
        .collect();
    format!("json_to_recordset({rows}) AS _({})", defs.join(", "))
}

pub(super) fn column_list(plan: &MutatePlan, prefix: &str) -> String {
    plan.columns
        .iter()
        .map(|c| format!("{prefix}{}", Ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A payload column's value, through the column's `json -> domain` cast if it has one.
pub(super) fn payload_value(c: &crate::schema::Column, source: &str) -> String {
    let value = format!("{source}.{}", Ident(&c.name));
    match &c.repr().from_json {
        Some(function) => format!("{}({value})", function_ref(function)),
        None => value,
    }
}

pub(super) fn on_conflict(plan: &MutatePlan, key: &[String], merge: bool) -> String {
    let key: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
    if !merge || plan.columns.is_empty() {
        return format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "));
    }
    let sets: Vec<String> = plan
        .columns
        .iter()
        .map(|c| {
            let n = quote_ident(&c.name);
            format!("{n} = EXCLUDED.{n}")
        })
        .collect();
    format!(
        " ON CONFLICT ({}) DO UPDATE SET {}",
        key.join(", "),
        sets.join(", ")
    )
}

/// The INSERT/UPDATE/DELETE itself, without RETURNING.
pub(super) fn mutation_sql(b: &mut Builder, plan: &MutatePlan) -> String {
    let target = table_ref(plan.table);
    match &plan.kind {
        MutationKind::Insert { conflict } => {
            let mut sql = insert_sql(b, plan, false);
            if let Some((key, resolution)) = conflict {
                let merge = *resolution == Resolution::MergeDuplicates;
                sql.push_str(&on_conflict(plan, key, merge));
            }
            sql
        }
        MutationKind::Put { key } => {
            let mut sql = insert_sql(b, plan, true);
            let conds: Vec<String> = key
                .iter()
                .map(|(c, v)| format!("_.{} = {}", Ident(c), b.param(v.clone())))
                .collect();
            let _ = write!(sql, " WHERE {}", conds.join(" AND "));
            let names: Vec<String> = key.iter().map(|(c, _)| c.clone()).collect();
            sql.push_str(&on_conflict(plan, &names, true));
            sql
        }
        MutationKind::Update => update_sql(b, plan),
        MutationKind::Delete => {
            let node = filter_node(plan);
            format!("DELETE FROM {target}{}", where_clause(b, &node, Vec::new()))
        }
    }
}

/// `INSERT INTO t(cols) SELECT ... FROM` the payload's rows (the first only for PUT).
fn insert_sql(b: &mut Builder, plan: &MutatePlan, first_only: bool) -> String {
    let target = table_ref(plan.table);
    let rows = payload_rows(b, plan, first_only);
    let cols = column_list(plan, "");
    let select = plan
        .columns
        .iter()
        .map(|c| payload_value(c, "_"))
        .collect::<Vec<_>>()
        .join(", ");
    let into = if cols.is_empty() {
        target
    } else {
        format!("{target}({cols})")
    };
    format!(
        "INSERT INTO {into} SELECT {select} FROM {}",
        recordset(plan, &rows)
    )
}

/// `UPDATE t SET ... FROM` the payload's first object `WHERE` the filters; with no
/// columns to set, a SELECT of no rows (an empty PATCH changes nothing).
fn update_sql(b: &mut Builder, plan: &MutatePlan) -> String {
    let target = table_ref(plan.table);
    let node = filter_node(plan);
    if plan.columns.is_empty() {
        return format!("SELECT {target}.* FROM {target} WHERE false");
    }
    let rows = payload_rows(b, plan, true);
    let sets: Vec<String> = plan
        .columns
        .iter()
        .map(|c| format!("{} = {}", Ident(&c.name), payload_value(c, "pgrst_body")))
        .collect();
    format!(
        "UPDATE {target} SET {} FROM (SELECT * FROM {}) AS pgrst_body{}",
        sets.join(", "),
        recordset(plan, &rows),
        where_clause(b, &node, Vec::new())
    )
}

/// The target table as a node carrying the write's filters, referred to by its name.
pub(super) fn filter_node<'a>(plan: &MutatePlan<'a>) -> ReadNode<'a> {
    ReadNode::filtering(plan.table, plan.filters.clone())
}

/// A write and its representation in one statement: columns total (NULL), page_total,
/// inserted (upserts only), body, response_headers, response_status.
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

pub fn mutate_statement(plan: &MutatePlan) -> Statement {
    let mut b = Builder::default();
    let target = table_ref(plan.table);
    let mutation = mutation_sql(&mut b, plan);
    let wants_rows = plan.representation || plan.location;
    let returning_kw = if matches!(plan.kind, MutationKind::Update) && plan.columns.is_empty() {
        // the no-op update is a SELECT: its select list already is the whole row
        String::new()
    } else {
        format!(
            " RETURNING {}",
            returning_list(plan, wants_rows, &format!("{target}."))
        )
    };
    let inserted = if plan.track_inserted {
        let cols = returning_list(plan, wants_rows, "");
        let inserted_flag = inserted_flag(plan, &target);
        let _ = write!(b.sql,
            "WITH pgrst_mutation AS ({mutation}{returning_kw}, {inserted_flag} AS pgrst_inserted), \
             pgrst_source AS (SELECT {cols} FROM pgrst_mutation)"
        );
        "(SELECT pg_catalog.count(*) FROM pgrst_mutation WHERE pgrst_inserted)"
    } else {
        let _ = write!(b.sql, "WITH pgrst_source AS ({mutation}{returning_kw})");
        "NULL"
    };
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
fn returning_list(plan: &MutatePlan, wants_rows: bool, prefix: &str) -> String {
    let quoted = |names: &mut dyn Iterator<Item = &String>| {
        names
            .map(|c| format!("{prefix}{}", Ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (wants_rows, &plan.returning) {
        (false, _) => "1".to_string(),
        (true, None) if !prefix.is_empty() => format!("{prefix}*"),
        (true, None) => quoted(&mut plan.table.columns.iter().map(|c| &c.name)),
        (true, Some(cols)) => quoted(&mut cols.iter()),
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
