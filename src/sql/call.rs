//! Calls: the function call as a FROM item, with the read grammar over its rows.

use super::read::*;
use super::result::RESPONSE_GUCS;
use super::*;
use crate::schema::routines::Returns;
use std::fmt::Write;

/// `character(n)` and `bit(n)` parameters take their values as the varying types, so an
/// argument is not cut or refused for its length (PostgREST does the same).
pub(super) fn varying(type_name: &str) -> String {
    match type_name.strip_suffix("[]").unwrap_or(type_name) {
        "character" => type_name.replacen("character", "character varying", 1),
        "bit" => type_name.replacen("bit", "bit varying", 1),
        _ => type_name.to_string(),
    }
}

/// A function call as the CTE `pgrst_call`, then the read over its rows.
pub fn call_statement(plan: &CallPlan) -> Statement {
    let mut b = Builder::default();
    let call = call_from(&mut b, plan);
    let _ = write!(b.sql, "WITH pgrst_call AS (SELECT pgrst_call.* {call}), ");
    match &plan.read {
        Some(read) => read_ctes(&mut b, read, Some("pgrst_call"), &rows_body(plan, read)),
        None => b.push(&value_tail(plan)),
    }
    b.finish()
}

/// The FROM clause that calls the function with its arguments.
fn call_from(b: &mut Builder, plan: &CallPlan) -> String {
    let routine = plan.routine;
    let function = qualified(&routine.schema, &routine.name);
    let (source, args) = arguments(b, &plan.args);
    // A bare `record` has no column list to give: it is called in the select list,
    // one record per row (JSON keeps its field names).
    if plan.read.is_none() && routine.returns == Returns::Composite {
        return format!("FROM {source}(SELECT {function}({args}) AS pgrst_scalar) AS pgrst_call");
    }
    format!(
        "FROM {source}{function}({args}) AS pgrst_call{}",
        result_columns(plan)
    )
}

/// The column list of the call's result: the composite's columns, none for a table's row
/// type, one value per row (`pgrst_scalar`) for anything else.
fn result_columns(plan: &CallPlan) -> String {
    let routine = plan.routine;
    let known: Vec<String> = match (&routine.returns, &routine.result_table) {
        (Returns::Composite, Some(t)) => t.columns.iter().map(|c| quote_ident(&c.name)).collect(),
        _ => Vec::new(),
    };
    match (plan.read.is_some(), known.is_empty()) {
        (true, false) => format!("({})", known.join(", ")),
        (true, true) => String::new(),
        (false, _) => "(pgrst_scalar)".to_string(),
    }
}

/// The arguments, and what the FROM list needs before the call to provide them.
fn arguments(b: &mut Builder, args: &CallArgs) -> (String, String) {
    match args {
        CallArgs::Named { params, .. } if params.is_empty() => (String::new(), String::new()),
        CallArgs::Named { json, params } => {
            let p = b.param(json.clone());
            let defs: Vec<String> = params
                .iter()
                .map(|a| format!("{} {}", Ident(&a.name), varying(&a.type_name)))
                .collect();
            let args: Vec<String> = params
                .iter()
                .map(|a| {
                    let n = quote_ident(&a.name);
                    format!("{}{n} := pgrst_body.{n}", variadic(a))
                })
                .collect();
            let source = format!(
                "json_to_record({p}::json) AS pgrst_body({}), LATERAL ",
                defs.join(", ")
            );
            (source, args.join(", "))
        }
        CallArgs::Direct(values) => {
            let args: Vec<String> = values
                .iter()
                .map(|(a, value)| {
                    let p = b.param(value.clone());
                    let n = quote_ident(&a.name);
                    format!("{}{n} := {p}::{}", variadic(a), varying(&a.type_name))
                })
                .collect();
            (String::new(), args.join(", "))
        }
        CallArgs::Single { value, param } => {
            let p = b.param(value.clone());
            (String::new(), format!("{p}::{}", param.type_name))
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
fn value_tail(plan: &CallPlan) -> String {
    let body = match (plan.head, plan.routine.returns_set, plan.media) {
        (true, _, _) => "''".to_string(),
        (false, _, Some(media)) => handler_output(media, "_postgrest_t.pgrst_scalar"),
        (false, true, None) => "coalesce(json_agg(_postgrest_t.pgrst_scalar), '[]')".to_string(),
        (false, false, None) => {
            "coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')".to_string()
        }
    };
    let page_total = if plan.media.is_some() && !plan.head {
        "1::int8"
    } else {
        "pg_catalog.count(*)::int8"
    };
    let alias = quote_ident(&plan.routine.name);
    format!(
        "pgrst_source AS (SELECT * FROM pgrst_call AS {alias}) SELECT NULL::int8, {page_total}, ({body}), \
         {RESPONSE_GUCS} FROM (SELECT * FROM pgrst_source) _postgrest_t"
    )
}
