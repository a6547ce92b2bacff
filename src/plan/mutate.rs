//! Writes: POST, PUT, PATCH, DELETE.

use super::fields::{self, Condition, OrderKey, Output, Source};
use super::read::{conditions_of, read_plan, ReadNode, ReadPlan};
use super::{Negotiated, PlanConfig};
use crate::error::ApiError;
use crate::request::payload::Payload;
use crate::request::prefer::{Resolution, ReturnPref};
use crate::request::query::{CompareOp, Filter, LogicTree, Operation};
use crate::request::{ApiRequest, Method};
use crate::schema::{Column, SchemaCache, Table};
use MutationKind::{Delete, Insert, Put, Update};

/// What a POST, PUT, PATCH or DELETE does.
#[derive(Debug)]
pub enum MutationKind {
    /// POST; with `Prefer: resolution=...` and a key to resolve on, an upsert.
    Insert {
        conflict: Option<(Vec<String>, Resolution)>,
    },
    Update,
    Delete,
    /// PUT: the primary key's (column, value) pairs from the URL.
    Put {
        key: Vec<(String, String)>,
    },
}

#[derive(Debug)]
pub struct MutatePlan<'a> {
    pub kind: MutationKind,
    pub table: &'a Table,
    /// Columns written, from the body's keys or `columns=`.
    pub columns: Vec<&'a Column>,
    /// The body as JSON text.
    pub payload: String,
    pub missing_default: bool,
    /// Which rows PATCH and DELETE touch.
    pub filters: Vec<Condition<'a>>,
    /// What RETURNING lists: `None` = the whole row.
    pub returning: Option<Vec<String>>,
    /// The representation, read from the written rows (`pgrst_source`).
    pub read: ReadPlan<'a>,
    pub representation: bool,
    /// `return=headers-only` on a table with a primary key: the body holds the key.
    pub location: bool,
    /// Count the rows an upsert inserted (201 vs 200).
    pub track_inserted: bool,
}

fn put_key(table: &Table, filters: &[&LogicTree]) -> Result<Vec<(String, String)>, ApiError> {
    let mut key = Vec::new();
    for f in filters {
        match f {
            LogicTree::Filter(Filter {
                field,
                negated: false,
                operation:
                    Operation::Compare {
                        op: CompareOp::Eq,
                        quantifier: None,
                        value,
                    },
            }) if field.json_path.is_empty() && !key.iter().any(|(c, _)| c == &field.name) => {
                key.push((field.name.clone(), value.clone()))
            }
            _ => return Err(ApiError::InvalidPutFilters),
        }
    }
    let mut names: Vec<&String> = key.iter().map(|(c, _)| c).collect();
    names.sort();
    let mut pk: Vec<&String> = table.primary_key.iter().collect();
    pk.sort();
    if pk.is_empty() || names != pk {
        return Err(ApiError::InvalidPutFilters);
    }
    Ok(key)
}

/// Plans a write. `payload` is `None` for DELETE.
pub fn mutate_plan<'a>(
    req: &ApiRequest,
    neg: &Negotiated,
    cache: &'a SchemaCache,
    schema: &str,
    name: &str,
    payload: Option<Payload>,
    config: &PlanConfig,
) -> Result<MutatePlan<'a>, ApiError> {
    let config = PlanConfig {
        max_rows: None,
        ..*config
    };
    let mut read = read_plan(req, neg, cache, schema, name, &config)?;
    let table = read.root.table;
    // The write's own filters name no embeds (the statement filters the table itself).
    let root_trees: Vec<&LogicTree> = req
        .query
        .filters
        .iter()
        .filter(|(path, _)| path.is_empty())
        .map(|(_, tree)| tree)
        .collect();
    let filters = root_trees
        .iter()
        .map(|tree| conditions_of(table, |_| false, tree))
        .collect();
    let columns = written_columns(req, table, payload.as_ref())?;
    let kind = mutation_kind(req, table, &root_trees)?;
    let representation = req.prefs.return_ == Some(ReturnPref::Representation);
    let location = req.prefs.return_ == Some(ReturnPref::HeadersOnly)
        && matches!(kind, Insert { .. })
        && !table.primary_key.is_empty();
    read_written_rows(&mut read.root, location && !representation);
    let returning = returning_columns(table, &read.root, location);
    Ok(MutatePlan {
        track_inserted: tracks_inserted(table, &kind),
        kind,
        returning,
        table,
        columns,
        payload: payload.map(|p| p.json).unwrap_or_default(),
        missing_default: req.prefs.missing_default == Some(true),
        filters,
        read,
        representation,
        location,
    })
}

/// The columns written: `columns=`, else the body's keys; each must exist.
fn written_columns<'a>(
    req: &ApiRequest,
    table: &'a Table,
    payload: Option<&Payload>,
) -> Result<Vec<&'a Column>, ApiError> {
    let names: &[String] = match (&req.query.columns, payload) {
        (Some(cols), _) => cols,
        (None, Some(p)) => &p.keys,
        (None, None) => &[],
    };
    names
        .iter()
        .map(|c| {
            table.column(c).ok_or_else(|| ApiError::ColumnNotFound {
                table: table.name.clone(),
                column: c.clone(),
            })
        })
        .collect()
}

/// What the method makes of the write: an insert (an upsert with `Prefer: resolution`
/// and a key to resolve on), PUT's insert-or-replace of one key, an update or a delete.
fn mutation_kind(
    req: &ApiRequest,
    table: &Table,
    root_trees: &[&LogicTree],
) -> Result<MutationKind, ApiError> {
    Ok(match req.method {
        Method::Post => {
            let key = req
                .query
                .on_conflict
                .clone()
                .unwrap_or_else(|| table.primary_key.clone());
            Insert {
                conflict: req
                    .prefs
                    .resolution
                    .filter(|_| !key.is_empty())
                    .map(|r| (key, r)),
            }
        }
        Method::Put => {
            if !req.query.limits.is_empty() || !req.query.offsets.is_empty() {
                return Err(ApiError::PutLimitNotAllowed);
            }
            Put {
                key: put_key(table, root_trees)?,
            }
        }
        Method::Patch => Update,
        _ => Delete,
    })
}

/// The representation reads the written rows (`pgrst_source`, by the table's name),
/// all of them; for Location alone it reads just the primary key.
fn read_written_rows(root: &mut ReadNode, key_only: bool) {
    root.filters.clear();
    root.offset = 0;
    root.limit = None;
    root.alias = Some(root.table.name.clone());
    if key_only {
        let table = root.table;
        root.select = table
            .primary_key
            .iter()
            .map(|c| Output::Field {
                field: fields::column(table, c),
                name: c.clone(),
                cast: None,
                aggregate: None,
            })
            .collect();
        root.embeds.clear();
        root.order.clear();
    }
}

/// Whether to count the rows an upsert inserted (201 rather than 200): merge-duplicates
/// and PUT on a table (a view's RETURNING has no xmax to tell).
fn tracks_inserted(table: &Table, kind: &MutationKind) -> bool {
    let is_table = matches!(table.kind, "table" | "partitioned_table");
    is_table
        && match kind {
            Insert { conflict } => matches!(conflict, Some((_, Resolution::MergeDuplicates))),
            Put { .. } => true,
            _ => false,
        }
}

/// The payload of a write: `columns=` takes a JSON body as is (PostgreSQL reads it);
/// otherwise the body is parsed by its Content-Type. DELETE has none.
pub fn payload(api: &ApiRequest, body: bytes::Bytes) -> Result<Option<Payload>, ApiError> {
    use crate::request::payload;
    if api.method == Method::Delete {
        return Ok(None);
    }
    let content_type = api.content_type.as_deref();
    // The body's own buffer becomes the payload text (no copy when it is not shared).
    let body = Vec::from(body);
    let is_json = payload::media_type_of(content_type) == "application/json";
    if let (Some(columns), true) = (&api.query.columns, is_json) {
        let json = String::from_utf8(body)
            .map_err(|_| ApiError::InvalidBody("Empty or invalid json".into()))?;
        return Ok(Some(Payload {
            json,
            keys: columns.clone(),
        }));
    }
    payload::parse(content_type, body).map(Some)
}

/// What RETURNING lists for the representation to read: the columns it selects, orders
/// by and joins embeds on (and the key for Location); `None` = the whole row, when it
/// selects `*`, a computed field or a computed relationship.
fn returning_columns(table: &Table, root: &ReadNode, location: bool) -> Option<Vec<String>> {
    let mut cols: Vec<String> = Vec::new();
    let mut add = |c: &str| {
        if !cols.iter().any(|x| x == c) {
            cols.push(c.to_string());
        }
    };
    for o in &root.select {
        match o {
            Output::CountRows { .. } => {}
            Output::Field { field, .. }
                if field.source == Source::Column && table.column(&field.field.name).is_some() =>
            {
                add(&field.field.name)
            }
            _ => return None,
        }
    }
    for t in &root.order {
        if let OrderKey::Own(f) = &t.key {
            add(&f.field.name);
        }
    }
    for e in &root.embeds {
        if e.rel.function.is_some() {
            return None;
        }
        match &e.rel.junction {
            Some(j) => j.source_columns.iter().for_each(|(c, _)| add(c)),
            None => e.rel.columns.iter().for_each(|(c, _)| add(c)),
        }
    }
    if location {
        table.primary_key.iter().for_each(|c| add(c));
    }
    (!cols.is_empty()).then_some(cols)
}
