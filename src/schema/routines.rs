//! Functions of the exposed schemas, callable at /rpc/<name>.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::{Row, Transaction};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Param {
    /// Empty for an unnamed parameter.
    pub name: String,
    /// `format_type()` of the parameter's type (schema-qualified where needed).
    pub type_name: String,
    /// Base type name (`json`, `text`, `int4`, ...), for unnamed-parameter bodies.
    pub base_type: String,
    pub required: bool,
    pub variadic: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Returns {
    Void,
    /// A scalar (or array, or domain) value.
    Scalar,
    /// Rows of an exposed table or view: read features and embedding apply.
    Table {
        schema: String,
        name: String,
    },
    /// Another composite: a record type, OUT parameters, RETURNS TABLE.
    Composite,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaHandler {
    /// The domain's name: `text/plain`, `image/png`, or `*/*` for any.
    pub media_type: String,
    /// The base type's binary form is the body (bytea's bytes, the text of text-like
    /// types, json, and jsonb with its version byte, as PostgREST sends them); other base
    /// types are sent as their text output.
    pub raw: bool,
}

impl MediaHandler {
    pub fn new(media_type: String, base_type: &str) -> Self {
        let raw = matches!(
            base_type,
            "bytea" | "text" | "varchar" | "bpchar" | "xml" | "json" | "jsonb" | "citext" | "name"
        );
        MediaHandler { media_type, raw }
    }
}

/// A user-defined aggregate whose result type is a domain named like a media type: it
/// renders a table's rows (or any relation's, when it takes `anyelement`) as that type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggHandler {
    pub schema: String,
    pub name: String,
    pub media: MediaHandler,
    /// (schema, name) of the table whose row type it takes; `None` for `anyelement`.
    pub relation: Option<(String, String)>,
}

const AGGREGATES_SQL: &str = r#"
SELECT n.nspname::text, p.proname::text, rt.typname::text,
  coalesce(bt.typname::text, ''), an.nspname::text, ac.relname::text
FROM pg_aggregate a
JOIN pg_proc p ON p.oid = a.aggfnoid
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type rt ON rt.oid = p.prorettype AND rt.typtype = 'd' AND rt.typname LIKE '%/%'
LEFT JOIN pg_type bt ON bt.oid = rt.typbasetype
JOIN pg_type at ON at.oid = p.proargtypes[0]
LEFT JOIN pg_class ac ON at.typrelid <> 0 AND ac.oid = at.typrelid
LEFT JOIN pg_namespace an ON an.oid = ac.relnamespace
WHERE p.pronargs = 1 AND n.nspname = ANY($1)
  AND (at.typname = 'anyelement' OR ac.oid IS NOT NULL)
ORDER BY p.oid
"#;

/// The media type handler aggregates of the exposed schemas.
pub(super) async fn load_aggregates(
    tx: &Transaction<'_>,
    schemas: &[String],
) -> Result<Vec<AggHandler>, tokio_postgres::Error> {
    Ok(tx
        .query(AGGREGATES_SQL, &[&schemas])
        .await?
        .iter()
        .map(|r| AggHandler {
            schema: r.get(0),
            name: r.get(1),
            media: MediaHandler::new(r.get(2), r.get::<_, &str>(3)),
            relation: r
                .get::<_, Option<String>>(4)
                .zip(r.get::<_, Option<String>>(5)),
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct Routine {
    pub schema: String,
    pub name: String,
    pub params: Vec<Param>,
    pub returns: Returns,
    pub returns_set: bool,
    /// VOLATILE (POST calls then run READ WRITE).
    pub volatile: bool,
    pub description: Option<String>,
    /// `SET name = value` options of the function (`ALTER FUNCTION ... SET`).
    pub settings: Vec<(String, String)>,
    /// When the return type is a domain named like a media type (`"text/plain"`), the
    /// function answers that media type with its raw value.
    pub media: Option<MediaHandler>,
    /// For a `Composite` result: a table-like description of its columns (OUT and TABLE
    /// parameters; none for a bare `record`), so reads can select and filter on it.
    pub result_table: Option<super::Table>,
}

/// Input parameters come from unnest over the argument arrays; OUT and TABLE columns
/// only make the result a composite.
const ROUTINES_SQL: &str = r#"
SELECT n.nspname::text, p.proname::text,
  coalesce((
    SELECT json_agg(json_build_object(
             'name', coalesce(p.proargnames[a.ord], ''),
             'type_name', format_type(a.typ, NULL),
             'base_type', coalesce(bt.typname, t.typname)::text,
             'mode', coalesce(p.proargmodes[a.ord], 'i')) ORDER BY a.ord)
    FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY AS a(typ, ord)
    JOIN pg_type t ON t.oid = a.typ
    LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
  ), '[]')::text,
  p.pronargdefaults::int4, p.proretset, p.provolatile = 'v',
  coalesce(rbt.typtype, rt.typtype)::text, rt.typname::text, rn.nspname::text,
  rc.relname::text, rc.relkind::text, obj_description(p.oid, 'pg_proc'),
  CASE WHEN rt.typtype = 'd' AND rt.typname LIKE '%/%' AND NOT p.proretset
    THEN rt.typname::text END,
  coalesce(rbt.typname, rt.typname)::text,
  coalesce(p.proconfig, '{}')
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type rt ON rt.oid = p.prorettype
LEFT JOIN pg_type rbt ON rt.typtype = 'd' AND rbt.oid = rt.typbasetype
LEFT JOIN pg_class rc ON coalesce(rbt.typrelid, rt.typrelid) <> 0
  AND rc.oid = coalesce(rbt.typrelid, rt.typrelid)
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE p.prokind = 'f' AND n.nspname = ANY($1)
ORDER BY p.oid
"#;

#[derive(Deserialize)]
struct RawArg {
    name: String,
    type_name: String,
    base_type: String,
    mode: String,
}

pub(super) async fn load(
    tx: &Transaction<'_>,
    schemas: &[String],
) -> Result<HashMap<(String, String), Vec<Routine>>, tokio_postgres::Error> {
    let mut out: HashMap<(String, String), Vec<Routine>> = HashMap::new();
    for r in tx.query(ROUTINES_SQL, &[&schemas]).await? {
        if let Some(routine) = routine_from_row(&r, schemas) {
            out.entry((routine.schema.clone(), routine.name.clone()))
                .or_default()
                .push(routine);
        }
    }
    for overloads in out.values_mut() {
        overloads.sort_by_cached_key(overload_order);
    }
    Ok(out)
}

/// A ROUTINES_SQL row as a routine; `None` for trigger functions and functions /rpc
/// cannot call.
fn routine_from_row(r: &Row, schemas: &[String]) -> Option<Routine> {
    let args: Vec<RawArg> = serde_json::from_str(&r.get::<_, String>(2)).unwrap_or_default();
    let defaults = r.get::<_, i32>(3).max(0) as usize;
    let inputs: Vec<&RawArg> = args
        .iter()
        .filter(|a| matches!(a.mode.as_str(), "i" | "b" | "v"))
        .collect();
    if !callable(&inputs) || r.get::<_, String>(7) == "trigger" {
        return None;
    }
    let has_out = args.iter().any(is_output);
    let returns = returns_of(r, has_out, schemas);
    let schema: String = r.get(0);
    let name: String = r.get(1);
    let media: Option<String> = r.get(12);
    let result_table =
        (returns == Returns::Composite && has_out).then(|| result_table(&schema, &name, &args));
    Some(Routine {
        schema,
        name,
        params: params_of(&inputs, defaults),
        returns,
        returns_set: r.get(4),
        volatile: r.get(5),
        description: r.get(11),
        result_table,
        settings: r
            .get::<_, Vec<String>>(14)
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        media: media.map(|m| MediaHandler::new(m, r.get::<_, &str>(13))),
    })
}

/// An OUT, INOUT or TABLE argument: a column of the result.
fn is_output(a: &RawArg) -> bool {
    matches!(a.mode.as_str(), "o" | "b" | "t")
}

/// The input parameters; the last `defaults` of them are optional.
fn params_of(inputs: &[&RawArg], defaults: usize) -> Vec<Param> {
    let first_optional = inputs.len().saturating_sub(defaults);
    inputs
        .iter()
        .enumerate()
        .map(|(i, a)| Param {
            name: a.name.clone(),
            type_name: a.type_name.clone(),
            base_type: a.base_type.clone(),
            required: i < first_optional,
            variadic: a.mode == "v",
        })
        .collect()
}

/// What a ROUTINES_SQL row's function returns: rows of a table only when the table is
/// in an exposed schema (then read features and embedding apply).
fn returns_of(r: &Row, has_out: bool, schemas: &[String]) -> Returns {
    let typtype: String = r.get(6);
    let typname: String = r.get(7);
    let rel_schema: Option<String> = r.get(8);
    let rel_name: Option<String> = r.get(9);
    let rel_kind: Option<String> = r.get(10);
    match (typtype.as_str(), typname.as_str()) {
        ("p", "void") => Returns::Void,
        _ if has_out => Returns::Composite,
        ("p", "record") => Returns::Composite,
        ("c", _) => match (rel_schema, rel_name, rel_kind.as_deref()) {
            (Some(s), Some(n), Some(kind)) if kind != "c" && schemas.contains(&s) => {
                Returns::Table { schema: s, name: n }
            }
            _ => Returns::Composite,
        },
        _ => Returns::Scalar,
    }
}

/// The columns of a composite result declared by OUT and TABLE parameters.
fn result_table(schema: &str, name: &str, args: &[RawArg]) -> super::Table {
    super::Table {
        schema: schema.to_string(),
        name: name.to_string(),
        kind: "function",
        description: None,
        columns: args
            .iter()
            .filter(|a| is_output(a))
            .map(|a| super::Column {
                name: a.name.clone(),
                data_type: a.type_name.as_str().into(),
                base_type: a.base_type.as_str().into(),
                nullable: true,
                attnum: 0,
                default: None,
                enum_values: Vec::new(),
                description: None,
                function: None,
                repr: None,
            })
            .collect(),
        primary_key: Vec::new(),
        computed_fields: Vec::new(),
        updatable_events: 0,
    }
}

/// Whether a function can be called through /rpc, as PostgREST decides it: every input
/// parameter named, or a single unnamed one when the first parameter is json, jsonb,
/// text, xml or bytea (the body itself is then the argument). Others are left out of the
/// schema cache, so calling them is 404 PGRST202 and they are never PGRST203 candidates.
fn callable(inputs: &[&RawArg]) -> bool {
    match inputs.iter().filter(|a| a.name.is_empty()).count() {
        0 => true,
        1 => matches!(
            inputs[0].type_name.as_str(),
            "bytea" | "json" | "jsonb" | "text" | "xml"
        ),
        _ => false,
    }
}

/// Overloads in PostgREST's order (fewest parameters first, then by their names and
/// types): the order PGRST203 lists candidates in.
fn overload_order(r: &Routine) -> (usize, Vec<(String, String)>) {
    let params = r
        .params
        .iter()
        .map(|p| (p.name.clone(), p.type_name.clone()))
        .collect();
    (r.params.len(), params)
}
