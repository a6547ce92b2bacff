//! Calls: the function call as a FROM item, with the read grammar over its rows.

use super::read::*;
use super::result::RESPONSE_GUCS;
use super::*;

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
    let routine = plan.routine;
    let function = qualified(&routine.schema, &routine.name);
    // Results without known columns are one value per row.
    let result_columns: Vec<String> = match (&routine.returns, &routine.result_table) {
        (crate::schema::routines::Returns::Composite, Some(t)) => {
            t.columns.iter().map(|c| quote_ident(&c.name)).collect()
        }
        _ => Vec::new(),
    };
    // A bare `record` has no column list to give: it is called in the select list,
    // one record per row (JSON keeps its field names).
    let in_select_list =
        plan.read.is_none() && routine.returns == crate::schema::routines::Returns::Composite;
    let columns = match (plan.read.is_some(), result_columns.is_empty()) {
        (true, false) => format!("({})", result_columns.join(", ")),
        (true, true) => String::new(),
        (false, _) => "(pgrst_scalar)".to_string(),
    };
    // The arguments, and what the FROM list needs before the call to provide them.
    let (source, args) = match &plan.args {
        CallArgs::Named { params, .. } if params.is_empty() => (String::new(), String::new()),
        CallArgs::Named { json, params } => {
            let p = b.param(json.clone());
            let defs: Vec<String> = params
                .iter()
                .map(|a| format!("{} {}", quote_ident(&a.name), varying(&a.type_name)))
                .collect();
            let args: Vec<String> = params
                .iter()
                .map(|a| {
                    let n = quote_ident(&a.name);
                    let variadic = if a.variadic { "VARIADIC " } else { "" };
                    format!("{variadic}{n} := pgrst_body.{n}")
                })
                .collect();
            (
                format!(
                    "json_to_record({p}::json) AS pgrst_body({}), LATERAL ",
                    defs.join(", ")
                ),
                args.join(", "),
            )
        }
        CallArgs::Direct(values) => {
            let args: Vec<String> = values
                .iter()
                .map(|(a, value)| {
                    let variadic = if a.variadic { "VARIADIC " } else { "" };
                    let p = b.param(value.clone());
                    let n = quote_ident(&a.name);
                    format!("{variadic}{n} := {p}::{}", varying(&a.type_name))
                })
                .collect();
            (String::new(), args.join(", "))
        }
        CallArgs::Single { value, param } => {
            let p = b.param(value.clone());
            (String::new(), format!("{p}::{}", param.type_name))
        }
    };
    let call = if in_select_list {
        format!("FROM {source}(SELECT {function}({args}) AS pgrst_scalar) AS pgrst_call")
    } else {
        format!("FROM {source}{function}({args}) AS pgrst_call{columns}")
    };
    b.push(&format!(
        "WITH pgrst_call AS (SELECT pgrst_call.* {call}), "
    ));
    match &plan.read {
        Some(read) => {
            let body = if routine.returns_set
                || plan.media_type != MediaType::Json
                || read.aggregate.is_some()
            {
                body_expr(read)
            } else if plan.head {
                "''".into()
            } else {
                "coalesce(json_agg(_postgrest_t)->0, 'null')".into()
            };
            read_ctes(&mut b, read, Some("pgrst_call"), &body);
        }
        None => {
            // A handler function returns one value (SETOF ones are not handlers): it is
            // the body, no aggregate over it.
            let body = match (plan.head, routine.returns_set, plan.media) {
                (true, _, _) => "''".to_string(),
                (false, _, Some(media)) => handler_output(media, "_postgrest_t.pgrst_scalar"),
                (false, true, None) => {
                    "coalesce(json_agg(_postgrest_t.pgrst_scalar), '[]')".to_string()
                }
                (false, false, None) => {
                    "coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')".to_string()
                }
            };
            let page_total = if plan.media.is_some() && !plan.head {
                "1::int8"
            } else {
                "pg_catalog.count(*)::int8"
            };
            let alias = quote_ident(&routine.name);
            b.push(&format!(
                "pgrst_source AS (SELECT * FROM pgrst_call AS {alias}) SELECT NULL::int8, {page_total}, ({body}), \
                 {RESPONSE_GUCS} FROM (SELECT * FROM pgrst_source) _postgrest_t"
            ));
        }
    }
    b.finish()
}
