//! Calls: the function call as a FROM item, with the read grammar over its rows.

use super::read::*;
use super::result::RESPONSE_GUCS;
use super::*;
use crate::schema::routines::Returns;
use std::fmt::Write;

/// `character(n)` and `bit(n)` parameters take their values as the varying types, so an
/// argument is not cut or refused for its length (PostgREST does the same). Written to
/// `out`: the call's text is written in one buffer, without a String per piece (format!
/// per argument was about 7,000 instructions of a two-argument call by POST, callgrind).
fn write_varying(out: &mut String, type_name: &str) {
    match type_name.strip_suffix("[]").unwrap_or(type_name) {
        "character" => out.push_str(&type_name.replacen("character", "character varying", 1)),
        "bit" => out.push_str(&type_name.replacen("bit", "bit varying", 1)),
        _ => out.push_str(type_name),
    }
}

/// A function call as the CTE `pgrst_call`, then the read over its rows.
pub fn call_statement(plan: &CallPlan) -> Statement {
    let mut b = Builder::default();
    b.in_place(|b, sql| {
        sql.push_str("WITH pgrst_call AS (SELECT pgrst_call.* ");
        write_call_from(b, sql, plan);
        sql.push_str("), ");
    });
    match &plan.read {
        Some(read) => read_ctes(&mut b, read, Some("pgrst_call"), &rows_body(plan, read)),
        None => b.in_place(|_, sql| write_value_tail(sql, plan)),
    }
    b.finish()
}

/// The FROM clause that calls the function with its arguments.
fn write_call_from(b: &mut Builder, sql: &mut String, plan: &CallPlan) {
    let routine = plan.routine;
    sql.push_str("FROM ");
    write_argument_source(b, sql, &plan.args);
    // A bare `record` has no column list to give: it is called in the select list,
    // one record per row (JSON keeps its field names).
    let in_select_list = plan.read.is_none() && routine.returns == Returns::Composite;
    if in_select_list {
        sql.push_str("(SELECT ");
    }
    let _ = write_qualified(sql, &routine.schema, &routine.name);
    sql.push('(');
    write_arguments(b, sql, &plan.args);
    sql.push(')');
    if in_select_list {
        sql.push_str(" AS pgrst_scalar) AS pgrst_call");
    } else {
        sql.push_str(" AS pgrst_call");
        write_result_columns(sql, plan);
    }
}

/// The column list of the call's result: the composite's columns, none for a table's row
/// type, one value per row (`pgrst_scalar`) for anything else.
fn write_result_columns(sql: &mut String, plan: &CallPlan) {
    let routine = plan.routine;
    let known = match (&routine.returns, &routine.result_table) {
        (Returns::Composite, Some(t)) => t.columns.as_slice(),
        _ => &[],
    };
    match (plan.read.is_some(), known.is_empty()) {
        (true, false) => {
            sql.push('(');
            for (i, c) in known.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let _ = write_ident(sql, &c.name);
            }
            sql.push(')');
        }
        (true, true) => {}
        (false, _) => sql.push_str("(pgrst_scalar)"),
    }
}

/// What the FROM list needs before the call to provide its arguments: a JSON body's
/// record, for named arguments taken from it.
fn write_argument_source(b: &mut Builder, sql: &mut String, args: &CallArgs) {
    let CallArgs::Named { json, params } = args else {
        return;
    };
    if params.is_empty() {
        return;
    }
    let p = b.param(json.clone());
    let _ = write!(sql, "json_to_record({p}::json) AS pgrst_body(");
    for (i, a) in params.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write_ident(sql, &a.name);
        sql.push(' ');
        write_varying(sql, &a.type_name);
    }
    sql.push_str("), LATERAL ");
}

/// The call's arguments, as its parameter list.
fn write_arguments(b: &mut Builder, sql: &mut String, args: &CallArgs) {
    match args {
        CallArgs::Named { params, .. } => {
            for (i, a) in params.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(variadic(a));
                let _ = write_ident(sql, &a.name);
                sql.push_str(" := pgrst_body.");
                let _ = write_ident(sql, &a.name);
            }
        }
        CallArgs::Direct(values) => {
            for (i, (a, value)) in values.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let p = b.param(value.clone());
                sql.push_str(variadic(a));
                let _ = write_ident(sql, &a.name);
                let _ = write!(sql, " := {p}::");
                write_varying(sql, &a.type_name);
            }
        }
        CallArgs::Single { value, param } => {
            let p = b.param(value.clone());
            let _ = write!(sql, "{p}::{}", param.type_name);
        }
    }
}

fn variadic(p: &crate::schema::routines::Param) -> &'static str {
    if p.variadic {
        "VARIADIC "
    } else {
        ""
    }
}

/// The body over a call's rows: an array for a set or another media type, else the one
/// row as an object.
fn rows_body(plan: &CallPlan, read: &ReadPlan) -> Cow<'static, str> {
    if plan.routine.returns_set || plan.media_type != MediaType::Json || read.aggregate.is_some() {
        body_expr(read)
    } else if plan.head {
        "''".into()
    } else {
        "coalesce(json_agg(_postgrest_t)->0, 'null')".into()
    }
}

/// The rest of a call returning values: a handler function returns one value (SETOF ones
/// are not handlers), which is the body with no aggregate over it.
fn write_value_tail(sql: &mut String, plan: &CallPlan) {
    let handled;
    let body = match (plan.head, plan.routine.returns_set, plan.media) {
        (true, _, _) => "''",
        (false, _, Some(media)) => {
            handled = handler_output(media, "_postgrest_t.pgrst_scalar");
            handled.as_str()
        }
        (false, true, None) => "coalesce(json_agg(_postgrest_t.pgrst_scalar), '[]')",
        (false, false, None) => "coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')",
    };
    let page_total = if plan.media.is_some() && !plan.head {
        "1::int8"
    } else {
        "pg_catalog.count(*)::int8"
    };
    sql.push_str("pgrst_source AS (SELECT * FROM pgrst_call AS ");
    let _ = write_ident(sql, &plan.routine.name);
    let _ = write!(
        sql,
        ") SELECT NULL::int8, {page_total}, ({body}), {RESPONSE_GUCS} FROM (SELECT * FROM pgrst_source) _postgrest_t"
    );
}
