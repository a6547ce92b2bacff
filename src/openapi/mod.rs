//! The API's description of itself at `GET /`: an OpenAPI 2.0 (Swagger) document shaped
//! like PostgREST's, built from the schema cache, and the same API as OpenAPI 3.1.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::schema::routines::{Param, Routine};
use crate::schema::{Cardinality, Column, SchemaCache, Table};

/// What the document lists: everything in the schema, or only what the request's role
/// may use (openapi-mode follow-privileges).
pub enum Visible {
    All,
    Only {
        tables: HashSet<String>,
        functions: HashSet<String>,
    },
}

impl Visible {
    fn table(&self, name: &str) -> bool {
        match self {
            Visible::All => true,
            Visible::Only { tables, .. } => tables.contains(name),
        }
    }

    fn function(&self, name: &str) -> bool {
        match self {
            Visible::All => true,
            Visible::Only { functions, .. } => functions.contains(name),
        }
    }

    /// From the JSON the privileges query answers.
    pub fn from_privileges(json: &str) -> Visible {
        let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        let names = |key: &str| -> HashSet<String> {
            v[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Visible::Only {
            tables: names("tables"),
            functions: names("functions"),
        }
    }
}

/// Where the API is reached: openapi-server-proxy-uri, else server-host and server-port.
struct Site {
    scheme: String,
    host: String,
    base_path: String,
}

fn site(config: &Config) -> Site {
    if let Some(uri) = config
        .openapi_server_proxy_uri
        .as_deref()
        .and_then(|u| u.parse::<hyper::Uri>().ok())
    {
        if let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) {
            let scheme = scheme.to_ascii_lowercase();
            let port = uri
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            let path = match uri.path() {
                "" => "/",
                p => p,
            };
            return Site {
                host: format!("{host}:{port}"),
                scheme,
                base_path: path.to_string(),
            };
        }
    }
    let host = match config.server_host.as_str() {
        "*" | "*4" | "!4" | "*6" | "!6" => "0.0.0.0",
        h => h,
    };
    Site {
        scheme: "http".into(),
        host: format!("{host}:{}", config.server_port),
        base_path: "/".into(),
    }
}

/// A type name without its modifiers: `character varying(20)` -> `character varying`,
/// `timestamp(3) with time zone` -> `timestamp with time zone`. Parentheses inside a
/// quoted name are kept.
fn plain_type(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let (mut quoted, mut depth) = (false, 0);
    for c in t.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The JSON Schema type of a PostgreSQL type (PostgREST's mapping); `None` for json.
fn json_type(t: &str) -> Option<&'static str> {
    match t {
        "character varying" | "character" | "text" => Some("string"),
        "boolean" => Some("boolean"),
        "smallint" | "integer" | "bigint" => Some("integer"),
        "numeric" | "real" | "double precision" => Some("number"),
        "json" | "jsonb" => None,
        t if t.ends_with("[]") => Some("array"),
        _ => Some("string"),
    }
}

/// The `format` of a type: OpenAPI's names for the integer sizes, else the type itself.
fn format_of(t: &str) -> &str {
    match t {
        "smallint" | "integer" => "int32",
        "bigint" => "int64",
        t => t,
    }
}

/// `items` of an array type: its element's type (`{}` for json elements).
fn array_items(t: &str) -> Option<Value> {
    let element = t.strip_suffix("[]")?;
    Some(match json_type(element) {
        Some(ty) => json!({ "type": ty }),
        None => json!({}),
    })
}

/// A column default as a JSON value, when it is a literal: `'x'::text` -> "x", `42` ->
/// 42; expressions (`nextval(...)`, `now()` for numbers) give none.
fn default_value(t: &str, default: &str) -> Option<Value> {
    if json_type(t) == Some("string") {
        let text = default
            .strip_suffix(&format!("::{t}"))
            .map(|d| d.trim_matches('\''))
            .unwrap_or(default);
        serde_json::from_str(&format!("\"{text}\"")).ok()
    } else {
        serde_json::from_str(default).ok()
    }
}

/// Splits a comment into a summary (its first line) and a description (the rest).
fn summary_and_description(comment: Option<&str>) -> (Option<String>, Option<String>) {
    match comment {
        None => (None, None),
        Some(c) => match c.split_once('\n') {
            None => (Some(c.to_string()), None),
            Some((first, rest)) => {
                let rest = rest.trim_start_matches('\n');
                (
                    Some(first.to_string()),
                    (!rest.is_empty()).then(|| rest.to_string()),
                )
            }
        },
    }
}

fn insert_opt(m: &mut Map<String, Value>, key: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v.into());
    }
}

/// "This is a Foreign Key to `t.c`" for a column that alone references another table
/// (tables before views when several do).
fn foreign_key_note(cache: &SchemaCache, table: &Table, column: &str) -> Option<String> {
    let mut rels: Vec<_> = cache
        .relationships_of(&table.schema, &table.name)
        .iter()
        .filter(|r| {
            r.holds_key
                && matches!(
                    r.cardinality,
                    Cardinality::ManyToOne | Cardinality::OneToOne
                )
                && r.columns.len() == 1
                && r.columns[0].0 == column
        })
        .collect();
    rels.sort_by_key(|r| r.foreign_is_view);
    let r = rels.first()?;
    let (t, c) = (&r.foreign_table, &r.columns[0].1);
    Some(format!(
        "This is a Foreign Key to `{t}.{c}`.<fk table='{t}' column='{c}'/>"
    ))
}

fn column_schema(cache: &SchemaCache, table: &Table, col: &Column) -> Value {
    let t = plain_type(&col.data_type);
    let mut m = Map::new();
    let mut notes = vec!["Note:".to_string()];
    if table.primary_key.contains(&col.name) {
        notes.push("This is a Primary Key.<pk/>".into());
    }
    notes.extend(foreign_key_note(cache, table, &col.name));
    let description = if notes.len() > 1 {
        let lead = col
            .description
            .as_ref()
            .map(|d| format!("{d}\n\n"))
            .unwrap_or_default();
        Some(format!("{lead}{}", notes.join("\n")))
    } else {
        col.description.clone()
    };
    insert_opt(
        &mut m,
        "default",
        col.default.as_deref().and_then(|d| default_value(&t, d)),
    );
    insert_opt(&mut m, "description", description);
    if !col.enum_values.is_empty() {
        m.insert("enum".into(), json!(col.enum_values));
    }
    m.insert("format".into(), json!(format_of(&t)));
    if t == "character" || t == "character varying" {
        let len = col
            .data_type
            .split_once('(')
            .and_then(|(_, rest)| rest.trim_end_matches(')').parse::<u64>().ok());
        insert_opt(&mut m, "maxLength", len);
    }
    insert_opt(&mut m, "type", json_type(&t));
    insert_opt(&mut m, "items", array_items(&t));
    Value::Object(m)
}

fn table_definition(cache: &SchemaCache, table: &Table) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    insert_opt(&mut m, "description", table.description.clone());
    let properties: Map<String, Value> = table
        .columns
        .iter()
        .map(|c| (c.name.clone(), column_schema(cache, table, c)))
        .collect();
    m.insert("properties".into(), Value::Object(properties));
    let required: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| !c.nullable)
        .map(|c| c.name.as_str())
        .collect();
    if !required.is_empty() {
        m.insert("required".into(), json!(required));
    }
    Value::Object(m)
}

fn refs(names: impl IntoIterator<Item = String>) -> Value {
    Value::Array(
        names
            .into_iter()
            .map(|n| json!({ "$ref": format!("#/parameters/{n}") }))
            .collect(),
    )
}

fn operation(tag: &str, comment: Option<&str>) -> Map<String, Value> {
    let (summary, description) = summary_and_description(comment);
    let mut m = Map::new();
    m.insert("tags".into(), json!([tag]));
    insert_opt(&mut m, "summary", summary);
    insert_opt(&mut m, "description", description);
    m
}

fn with(mut op: Map<String, Value>, parameters: Value, responses: Value) -> Value {
    op.insert("parameters".into(), parameters);
    op.insert("responses".into(), responses);
    Value::Object(op)
}

fn table_path(table: &Table) -> Value {
    let tn = &table.name;
    let filters: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("rowFilter.{tn}.{}", c.name))
        .collect();
    let op = || operation(tn, table.description.as_deref());
    let mut path = Map::new();
    path.insert(
        "get".into(),
        with(op(), read_parameters(&filters), read_responses(tn)),
    );
    // pg_relation_is_updatable(): 4 UPDATE, 8 INSERT, 16 DELETE.
    if table.updatable_events & (4 | 8 | 16) != 0 {
        let body = format!("body.{tn}");
        path.insert(
            "post".into(),
            with(
                op(),
                refs([body.clone(), "select".into(), "preferPost".into()]),
                json!({"201": {"description": "Created"}}),
            ),
        );
        path.insert(
            "patch".into(),
            with(
                op(),
                refs(filters.iter().cloned().chain([body, "preferReturn".into()])),
                json!({"204": {"description": "No Content"}}),
            ),
        );
        path.insert(
            "delete".into(),
            with(
                op(),
                refs(filters.iter().cloned().chain(["preferReturn".into()])),
                json!({"204": {"description": "No Content"}}),
            ),
        );
    }
    Value::Object(path)
}

/// A GET's parameters: the row filters, then the read grammar's and paging's.
fn read_parameters(filters: &[String]) -> Value {
    let read = [
        "select",
        "order",
        "range",
        "rangeUnit",
        "offset",
        "limit",
        "preferCount",
    ];
    refs(filters.iter().cloned().chain(read.map(String::from)))
}

fn read_responses(table: &str) -> Value {
    json!({
        "200": {
            "description": "OK",
            "schema": {"type": "array", "items": {"$ref": format!("#/definitions/{table}")}}
        },
        "206": {"description": "Partial Content"}
    })
}

/// A parameter's type as PostgREST names it: built-in types as format_type() gives them,
/// user types without their schema.
fn param_type(type_name: &str) -> String {
    let (base, array) = match type_name.strip_suffix("[]") {
        Some(b) => (b, "[]"),
        None => (type_name, ""),
    };
    let unqualified = match base.rsplit_once('.') {
        Some((_, name)) if !base.contains('"') => name,
        _ => base,
    };
    format!("{unqualified}{array}")
}

fn routine_path(r: &Routine) -> Value {
    let tag = format!("(rpc) {}", r.name);
    let base = || {
        let mut op = operation(&tag, r.description.as_deref());
        op.insert(
            "produces".into(),
            json!([
                "application/json",
                "application/vnd.pgrst.object+json;nulls=stripped",
                "application/vnd.pgrst.object+json"
            ]),
        );
        op
    };
    let ok = json!({"200": {"description": "OK"}});
    let params: Vec<&Param> = r.params.iter().filter(|p| !p.name.is_empty()).collect();
    let post_params = json!([
        {"name": "args", "required": true, "in": "body", "schema": args_schema(r, &params)},
        {"$ref": "#/parameters/preferParams"}
    ]);
    let mut path = Map::new();
    if !r.volatile {
        let get_params = params.iter().map(|p| query_argument(p)).collect();
        path.insert(
            "get".into(),
            with(base(), Value::Array(get_params), ok.clone()),
        );
    }
    path.insert("post".into(), with(base(), post_params, ok));
    Value::Object(path)
}

/// A named argument of a GET call, in the query string (a variadic one repeated).
fn query_argument(p: &Param) -> Value {
    let t = param_type(&p.type_name);
    if p.variadic {
        let element = t.strip_suffix("[]").unwrap_or(&t);
        json!({
            "name": p.name, "required": p.required, "in": "query",
            "type": json_type(&t).unwrap_or("string"),
            "collectionFormat": "multi",
            "items": {"type": json_type(element), "format": element},
        })
    } else {
        let ty = match json_type(&t) {
            Some("array") | None => "string",
            Some(ty) => ty,
        };
        json!({
            "name": p.name, "required": p.required, "in": "query",
            "type": ty, "format": format_of(&t),
        })
    }
}

/// The schema of a POST call's body: an object of the named arguments.
fn args_schema(r: &Routine, params: &[&Param]) -> Value {
    let mut properties = Map::new();
    for p in params {
        let t = param_type(&p.type_name);
        let mut s = Map::new();
        insert_opt(&mut s, "type", json_type(&t));
        insert_opt(&mut s, "items", array_items(&t));
        s.insert("format".into(), json!(format_of(&t)));
        properties.insert(p.name.clone(), Value::Object(s));
    }
    let mut args = Map::new();
    args.insert("type".into(), json!("object"));
    insert_opt(&mut args, "description", r.description.clone());
    if !properties.is_empty() {
        args.insert("properties".into(), Value::Object(properties));
    }
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    if !required.is_empty() {
        args.insert("required".into(), json!(required));
    }
    Value::Object(args)
}

fn header_param(name: &str, description: &str, values: &[&str]) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("description".into(), json!(description));
    m.insert("required".into(), json!(false));
    m.insert("in".into(), json!("header"));
    m.insert("type".into(), json!("string"));
    if !values.is_empty() {
        m.insert("enum".into(), json!(values));
    }
    Value::Object(m)
}

fn query_param(name: &str, description: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    insert_opt(&mut m, "description", description);
    m.insert("required".into(), json!(false));
    m.insert("in".into(), json!("query"));
    m.insert("type".into(), json!("string"));
    Value::Object(m)
}

fn shared_parameters(tables: &[&Table]) -> Map<String, Value> {
    let mut m = common_parameters();
    for t in tables {
        m.insert(
            format!("body.{}", t.name),
            json!({
                "name": t.name, "description": t.name, "required": false, "in": "body",
                "schema": {"$ref": format!("#/definitions/{}", t.name)}
            }),
        );
        for c in &t.columns {
            m.insert(
                format!("rowFilter.{}.{}", t.name, c.name),
                query_param(&c.name, c.description.as_deref()),
            );
        }
    }
    m
}

/// The parameters of every table's paths: Prefer's values, select, on_conflict, order
/// and paging.
fn common_parameters() -> Map<String, Value> {
    let ret = ["return=representation", "return=minimal", "return=none"];
    let resolution = [
        "resolution=ignore-duplicates",
        "resolution=merge-duplicates",
    ];
    let post: Vec<&str> = ret.iter().chain(resolution.iter()).copied().collect();
    let paging = "Limiting and Pagination";
    let mut unit = header_param("Range-Unit", paging, &[]);
    unit["default"] = json!("items");
    [
        ("preferParams", header_param("Prefer", "Preference", &[])),
        ("preferReturn", header_param("Prefer", "Preference", &ret)),
        (
            "preferCount",
            header_param("Prefer", "Preference", &["count=none"]),
        ),
        ("preferPost", header_param("Prefer", "Preference", &post)),
        ("select", query_param("select", Some("Filtering Columns"))),
        (
            "on_conflict",
            query_param("on_conflict", Some("On Conflict")),
        ),
        ("order", query_param("order", Some("Ordering"))),
        ("range", header_param("Range", paging, &[])),
        ("rangeUnit", unit),
        ("offset", query_param("offset", Some(paging))),
        ("limit", query_param("limit", Some(paging))),
    ]
    .into_iter()
    .map(|(name, parameter)| (name.to_string(), parameter))
    .collect()
}

const MEDIA: [&str; 4] = [
    "application/json",
    "application/vnd.pgrst.object+json;nulls=stripped",
    "application/vnd.pgrst.object+json",
    "text/csv",
];

/// The OpenAPI 2.0 document of `schema`.
pub fn swagger(cache: &SchemaCache, schema: &str, config: &Config, visible: &Visible) -> Value {
    let tables = visible_tables(cache, schema, visible);
    let routines = visible_routines(cache, schema, visible);
    let definitions: Map<String, Value> = tables
        .iter()
        .map(|t| (t.name.clone(), table_definition(cache, t)))
        .collect();
    let site = site(config);
    let mut doc = json!({
        "swagger": "2.0",
        "info": info(cache, schema),
        "externalDocs": {
            "description": "PostgREST Documentation",
            "url": "https://postgrest.org/en/stable/references/api.html"
        },
        "host": site.host,
        "basePath": site.base_path,
        "schemes": [site.scheme],
        "consumes": MEDIA,
        "produces": MEDIA,
        "paths": paths(&tables, &routines),
        "definitions": definitions,
        "parameters": shared_parameters(&tables),
    });
    if config.openapi_security_active {
        doc["securityDefinitions"] = json!({"JWT": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Add the token prepending \"Bearer \" (without quotes) to it"
        }});
        doc["security"] = json!([{"JWT": []}]);
    }
    doc
}

/// The tables of `schema` the document shows, by name.
fn visible_tables<'a>(cache: &'a SchemaCache, schema: &str, visible: &Visible) -> Vec<&'a Table> {
    let mut tables: Vec<&Table> = cache
        .tables
        .get(schema)
        .map(|t| t.values().filter(|t| visible.table(&t.name)).collect())
        .unwrap_or_default();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    tables
}

/// The functions of `schema` the document shows (the first overload of each), by name.
fn visible_routines<'a>(
    cache: &'a SchemaCache,
    schema: &str,
    visible: &Visible,
) -> Vec<&'a Routine> {
    let mut routines: Vec<&Routine> = cache
        .routines
        .iter()
        .filter(|((s, name), _)| s == schema && visible.function(name))
        .filter_map(|(_, overloads)| overloads.first())
        .collect();
    routines.sort_by(|a, b| a.name.cmp(&b.name));
    routines
}

/// The document's title and description: the schema's comment, or pgrest's defaults.
fn info(cache: &SchemaCache, schema: &str) -> Value {
    let (title, description) =
        summary_and_description(cache.schema_descriptions.get(schema).map(String::as_str));
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "title": title.unwrap_or_else(|| "pgrest API".into()),
        "description": description
            .unwrap_or_else(|| "This is a dynamic API generated by pgrest".into()),
    })
}

/// `/` (this document), a path per table and one per function.
fn paths(tables: &[&Table], routines: &[&Routine]) -> Map<String, Value> {
    let mut paths = Map::new();
    paths.insert(
        "/".into(),
        json!({"get": {
            "tags": ["Introspection"],
            "summary": "OpenAPI description (this document)",
            "produces": ["application/openapi+json", "application/json"],
            "responses": {"200": {"description": "OK"}}
        }}),
    );
    for t in tables {
        paths.insert(format!("/{}", t.name), table_path(t));
    }
    for r in routines {
        paths.insert(format!("/rpc/{}", r.name), routine_path(r));
    }
    paths
}

/// OpenAPI 3 component names are limited to `[a-zA-Z0-9._-]`: any other character
/// (a table named `Order Items`) is written `_xHH_`, its UTF-8 bytes in hex.
fn component_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("_x{b:02X}_"));
            }
        }
    }
    out
}

/// Points `$ref`s at OpenAPI 3 locations.
fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/definitions/") {
                    *r = format!("#/components/schemas/{}", component_key(name));
                } else if let Some(name) = r.strip_prefix("#/parameters/body.") {
                    *r = format!("#/components/requestBodies/{}", component_key(name));
                } else if let Some(name) = r.strip_prefix("#/parameters/") {
                    *r = format!("#/components/parameters/{}", component_key(name));
                }
            }
            m.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// A Swagger 2.0 non-body parameter as an OpenAPI 3 one (type details move into
/// `schema`; `collectionFormat: multi` becomes form style, exploded).
fn parameter31(p: &Value) -> Value {
    let mut out = Map::new();
    let mut schema = Map::new();
    for (k, v) in p.as_object().into_iter().flatten() {
        match k.as_str() {
            "name" | "in" | "description" | "required" => {
                out.insert(k.clone(), v.clone());
            }
            "collectionFormat" => {
                out.insert("style".into(), json!("form"));
                out.insert("explode".into(), json!(true));
            }
            _ => {
                schema.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("schema".into(), Value::Object(schema));
    Value::Object(out)
}

fn content(media: &[&str], schema: &Value) -> Value {
    Value::Object(
        media
            .iter()
            .map(|m| (m.to_string(), json!({ "schema": schema })))
            .collect(),
    )
}

/// A table's schema for OpenAPI 3.1, which can say what 2.0 cannot: columns that may be
/// NULL (not in 2.0's `required`) take `null` as well. `required` itself goes: `select=`
/// answers any subset of the columns, and a body may leave out columns with defaults.
fn nullable_columns(table: &mut Value) {
    let required: HashSet<String> = table
        .as_object_mut()
        .and_then(|t| t.remove("required"))
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    for (name, column) in table["properties"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.iter_mut())
    {
        if required.contains(name) {
            continue;
        }
        if let Some(Value::String(t)) = column.get("type").cloned() {
            column["type"] = json!([t, "null"]);
        }
        if let Some(Value::Array(values)) = column.get_mut("enum") {
            values.push(Value::Null);
        }
    }
}

/// The same API as an OpenAPI 3.1 document, converted from the 2.0 one.
pub fn to_openapi31(swagger: &Value) -> Value {
    let mut sw = swagger.clone();
    rewrite_refs(&mut sw);
    let server = format!(
        "{}://{}{}",
        sw["schemes"][0].as_str().unwrap_or("http"),
        sw["host"].as_str().unwrap_or(""),
        sw["basePath"].as_str().unwrap_or("/")
    );
    let (parameters, bodies) = parameters_and_bodies31(&sw);
    let mut components = json!({
        "schemas": schemas31(&sw),
        "parameters": parameters,
        "requestBodies": bodies,
    });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": sw["info"],
        "externalDocs": sw["externalDocs"],
        "servers": [{"url": server}],
        "paths": paths31(&sw),
    });
    if sw.get("security").is_some() {
        components["securitySchemes"] = json!({"JWT": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JSON Web Token, sent as `Authorization: Bearer <token>`"
        }});
        doc["security"] = sw["security"].clone();
    }
    doc["components"] = components;
    doc
}

/// The 2.0 document's shared parameters as OpenAPI 3 components: body parameters become
/// request bodies, the others parameters.
fn parameters_and_bodies31(sw: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut parameters = Map::new();
    let mut bodies = Map::new();
    for (name, p) in sw["parameters"].as_object().into_iter().flatten() {
        if p["in"] == "body" {
            let key = name.strip_prefix("body.").unwrap_or(name);
            bodies.insert(
                component_key(key),
                json!({
                    "description": p["description"],
                    "content": content(&MEDIA, &p["schema"]),
                }),
            );
        } else {
            parameters.insert(component_key(name), parameter31(p));
        }
    }
    (parameters, bodies)
}

fn paths31(sw: &Value) -> Map<String, Value> {
    let mut paths = Map::new();
    for (path, item) in sw["paths"].as_object().into_iter().flatten() {
        let ops: Map<String, Value> = item
            .as_object()
            .into_iter()
            .flatten()
            .map(|(method, op)| (method.clone(), operation31(op)))
            .collect();
        paths.insert(path.clone(), Value::Object(ops));
    }
    paths
}

/// A 2.0 operation as an OpenAPI 3 one: a body parameter becomes its request body, and
/// response schemas are given per media type it produces.
fn operation31(op: &Value) -> Value {
    let mut out = Map::new();
    for key in ["tags", "summary", "description"] {
        if let Some(v) = op.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let mut params = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        match p.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/components/requestBodies/") => {
                out.insert("requestBody".into(), p.clone());
            }
            Some(_) => params.push(p.clone()),
            None if p["in"] == "body" => {
                out.insert(
                    "requestBody".into(),
                    json!({
                        "required": p["required"],
                        "content": content(&["application/json"], &p["schema"]),
                    }),
                );
            }
            None => params.push(parameter31(p)),
        }
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    out.insert("responses".into(), responses31(op));
    Value::Object(out)
}

fn responses31(op: &Value) -> Value {
    let produces: Vec<&str> = op["produces"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| MEDIA.to_vec());
    let mut responses = Map::new();
    for (status, r) in op["responses"].as_object().into_iter().flatten() {
        let mut resp = Map::new();
        resp.insert("description".into(), r["description"].clone());
        if let Some(schema) = r.get("schema") {
            resp.insert("content".into(), content(&produces, schema));
        }
        responses.insert(status.clone(), Value::Object(resp));
    }
    Value::Object(responses)
}

fn schemas31(sw: &Value) -> Map<String, Value> {
    let mut schemas = Map::new();
    for (name, table) in sw["definitions"].as_object().into_iter().flatten() {
        let mut table = table.clone();
        nullable_columns(&mut table);
        schemas.insert(component_key(name), table);
    }
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_and_defaults() {
        assert_eq!(plain_type("character varying(20)"), "character varying");
        assert_eq!(
            plain_type("timestamp(3) with time zone"),
            "timestamp with time zone"
        );
        assert_eq!(plain_type("numeric(10,2)[]"), "numeric[]");
        assert_eq!(plain_type("\"odd(name)\""), "\"odd(name)\"");
        assert_eq!(
            default_value("text", "'default'::text"),
            Some(json!("default"))
        );
        assert_eq!(
            default_value("date", "'1900-01-01'::date"),
            Some(json!("1900-01-01"))
        );
        assert_eq!(default_value("integer", "42"), Some(json!(42)));
        assert_eq!(default_value("boolean", "false"), Some(json!(false)));
        assert_eq!(default_value("integer", "nextval('s'::regclass)"), None);
        assert_eq!(
            param_type("test.enum_menagerie_type"),
            "enum_menagerie_type"
        );
        assert_eq!(param_type("character varying[]"), "character varying[]");
        assert_eq!(
            summary_and_description(Some("T\n\nmore\nlines")),
            (Some("T".into()), Some("more\nlines".into()))
        );
    }
}
