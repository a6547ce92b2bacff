//! Resolve a parsed request against the schema cache: which table, which embedded
//! resources through which relationships, which rows, which page. No SQL text here.

use crate::error::{AmbiguousCandidate, ApiError};
use crate::request::payload::Payload;
use crate::request::prefer::{Resolution, ReturnPref};
use crate::request::query::{CompareOp, Filter, LogicTree, Operation, OrderTerm, SelectItem};
use crate::request::{ApiRequest, CountPref, MediaType, Method};
use crate::schema::routines::{Param, Returns, Routine};
use crate::schema::{Cardinality, Column, Relationship, SchemaCache, Table};
use MutationKind::{Delete, Insert, Put, Update};

#[derive(Debug)]
pub struct ReadPlan<'a> {
    pub root: ReadNode<'a>,
    /// Whether a limit, offset, range or db-max-rows narrows the root page (an exact
    /// count then needs its own query).
    pub paged: bool,
    pub count: Option<CountPref>,
    pub media_type: MediaType,
    /// Renders the rows instead of `media_type`, when a handler aggregate was chosen.
    pub aggregate: Option<crate::schema::routines::AggHandler>,
    pub head: bool,
    pub max_rows: Option<i64>,
    /// Embeds addressed by relation name despite an alias: (name, alias), for the
    /// deprecation Warning.
    pub legacy_targets: Vec<(String, String)>,
}

/// One table in the read tree: the root, or an embedded resource.
#[derive(Debug)]
pub struct ReadNode<'a> {
    pub table: &'a Table,
    /// SQL alias; `None` for the root, which is referred to by its qualified name.
    pub alias: Option<String>,
    /// `Star` and `Column` items only; embeds are in `embeds`.
    pub select: Vec<SelectItem>,
    pub filters: Vec<LogicTree>,
    pub order: Vec<OrderTerm>,
    /// First row (0-based) of the page.
    pub offset: i64,
    /// Rows in the page; `None` = no limit.
    pub limit: Option<i64>,
    pub embeds: Vec<Embed<'a>>,
}

#[derive(Debug)]
pub struct Embed<'a> {
    /// The output key (alias or name); dotted parameters address the embed by it.
    pub name: String,
    /// The name as written in `select` (`tasks` in `the_tasks:tasks(*)`).
    pub target: String,
    pub rel: &'a Relationship,
    pub inner: bool,
    pub spread: bool,
    /// Alias of the lateral subquery in the parent's FROM.
    pub join_alias: String,
    pub node: ReadNode<'a>,
}

impl Embed<'_> {
    pub fn is_to_one(&self) -> bool {
        self.rel.cardinality.is_to_one()
    }

    /// An embed that selects nothing (`clients()`) only filters its parent.
    pub fn is_empty(&self) -> bool {
        self.node.select.is_empty() && self.node.embeds.iter().all(Embed::is_empty)
    }
}

impl<'a> ReadNode<'a> {
    /// The node a dotted parameter path addresses. With `legacy_names`, an aliased embed
    /// can also be addressed by its target name, as PostgREST allows by default.
    fn at_path(
        &mut self,
        path: &[String],
        legacy_names: bool,
    ) -> Result<&mut ReadNode<'a>, ApiError> {
        let mut node = self;
        for segment in path {
            let by_name = node.embeds.iter().position(|e| &e.name == segment);
            let by_target = node.embeds.iter().position(|e| &e.target == segment);
            let index = match (by_name, by_target) {
                (Some(i), _) => i,
                (None, Some(i)) if legacy_names => i,
                (None, Some(i)) => {
                    return Err(ApiError::AliasedTarget {
                        target: segment.clone(),
                        alias: node.embeds[i].name.clone(),
                    })
                }
                (None, None) => return Err(ApiError::NotEmbedded(segment.clone())),
            };
            node = &mut node.embeds[index].node;
        }
        Ok(node)
    }

    /// The (relation name, alias) pairs `path` reaches embeds by (url-use-legacy-target-
    /// names): each segment that names an aliased embed's table instead of its alias.
    fn legacy_targets(&self, path: &[String]) -> Vec<(String, String)> {
        let mut node = self;
        let mut found = Vec::new();
        for segment in path {
            let Some(embed) = node
                .embed(segment)
                .or_else(|| node.embeds.iter().find(|e| &e.target == segment))
            else {
                break;
            };
            if &embed.name != segment {
                found.push((segment.clone(), embed.name.clone()));
            }
            node = &embed.node;
        }
        found
    }

    pub fn embed(&self, name: &str) -> Option<&Embed<'a>> {
        self.embeds.iter().find(|e| e.name == name)
    }
}

fn range_error(details: &str) -> ApiError {
    ApiError::InvalidRange {
        details: details.to_string(),
        total: None,
    }
}

fn last_for(v: &[(Vec<String>, i64)], path: &[String]) -> Option<i64> {
    v.iter().rev().find(|(p, _)| p == path).map(|(_, n)| *n)
}

/// Offset and limit of the root from `limit`/`offset`, the Range header (GET only) and
/// db-max-rows.
pub fn page(req: &ApiRequest, max_rows: Option<i64>) -> Result<(i64, Option<i64>), ApiError> {
    let mut lower = last_for(&req.query.offsets, &[]).unwrap_or(0).max(0);
    let limit = last_for(&req.query.limits, &[]);
    if limit.is_some_and(|l| l < 0) {
        return Err(range_error(
            "Limit should be greater than or equal to zero.",
        ));
    }
    // Upper bound, inclusive; None = open.
    let mut upper = limit.map(|l| lower.saturating_add(l) - 1);
    if req.method == Method::Get {
        if let Some((first, last)) = req.range {
            if last.is_some_and(|last| last < first) {
                return Err(range_error(
                    "The lower boundary must be lower than or equal to the upper boundary in the Range header.",
                ));
            }
            let new_lower = lower.max(first);
            upper = match (upper, last) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            lower = new_lower;
        }
    }
    Ok((lower, cap(lower, upper, max_rows)))
}

/// Limit for a page starting at `lower` ending at `upper` (inclusive), capped by max rows.
fn cap(lower: i64, upper: Option<i64>, max_rows: Option<i64>) -> Option<i64> {
    let upper = match max_rows {
        Some(max) => {
            let cap = lower.saturating_add(max) - 1;
            Some(upper.map_or(cap, |u| u.min(cap)))
        }
        None => upper,
    };
    upper.map(|u| u.saturating_sub(lower).saturating_add(1).max(0))
}

/// PostgREST's legacy `select=count` (no parentheses) counts rows when the table has no
/// column of that name, even with aggregates disabled.
fn legacy_count(table: &Table, item: &SelectItem) -> SelectItem {
    match item {
        SelectItem::Column {
            field,
            alias,
            cast: None,
            aggregate: None,
        } if field.name == "count"
            && field.json_path.is_empty()
            && table.column("count").is_none() =>
        {
            SelectItem::Column {
                field: crate::request::query::Field {
                    name: "*".into(),
                    json_path: Vec::new(),
                },
                alias: alias.clone(),
                cast: None,
                aggregate: Some(crate::request::query::Aggregate {
                    func: crate::request::query::AggFunc::Count,
                    cast: None,
                }),
            }
        }
        other => other.clone(),
    }
}

/// Builds the tree of nodes from `select`, resolving every embed to a relationship.
fn build_node<'a>(
    cache: &'a SchemaCache,
    table: &'a Table,
    alias: Option<String>,
    items: &[SelectItem],
    depth: usize,
) -> Result<ReadNode<'a>, ApiError> {
    let mut node = ReadNode {
        table,
        alias,
        select: Vec::new(),
        filters: Vec::new(),
        order: Vec::new(),
        offset: 0,
        limit: None,
        embeds: Vec::new(),
    };
    for item in items {
        let SelectItem::Embed {
            name,
            alias,
            hint,
            join,
            spread,
            items,
        } = item
        else {
            node.select.push(legacy_count(table, item));
            continue;
        };
        let rel = find_relationship(cache, table, name, hint.as_deref())?;
        let child_table = cache
            .table(&rel.schema, &rel.foreign_table)
            .ok_or_else(|| no_relationship(cache, table, name, hint.as_deref()))?;
        let out_name = alias.clone().unwrap_or_else(|| name.clone());
        let child = build_node(
            cache,
            child_table,
            Some(format!("{}_{}", rel.foreign_table, depth + 1)),
            items,
            depth + 1,
        )?;
        node.embeds.push(Embed {
            join_alias: format!("{}_{}_{}", table.name, out_name, depth + 1),
            name: out_name,
            target: name.clone(),
            rel,
            inner: *join == Some(crate::request::query::JoinType::Inner),
            spread: *spread,
            node: child,
        });
    }
    Ok(node)
}

fn single_column(rel: &Relationship) -> Option<&(String, String)> {
    match rel.columns.as_slice() {
        [pair] => Some(pair),
        _ => None,
    }
}

/// PostgREST's rules for which relationship `parent?select=target!hint(...)` means.
fn matches(rel: &Relationship, target: &str, hint: Option<&str>) -> bool {
    if rel.function.is_some() {
        return rel.constraint == target;
    }
    let fk_col = || single_column(rel).is_some_and(|(c, _)| c == target);
    let is_fk = rel.cardinality != Cardinality::ManyToMany;
    if rel.is_self && is_fk {
        return match hint {
            None => {
                (rel.foreign_table == target && rel.cardinality == Cardinality::OneToMany)
                    || (fk_col() && rel.cardinality == Cardinality::ManyToOne)
            }
            Some(h) => {
                rel.foreign_table == target
                    && rel.cardinality == Cardinality::OneToMany
                    && single_column(rel).is_some_and(|(_, f)| f == h)
            }
        };
    }
    match hint {
        None => {
            rel.foreign_table == target
                || (is_fk && !rel.foreign_is_view && (rel.constraint == target || fk_col()))
        }
        Some(h) => {
            rel.foreign_table == target
                && ((is_fk && rel.constraint == h)
                    || single_column(rel).is_some_and(|(c, f)| c == h || f == h)
                    || rel.junction.as_ref().is_some_and(|j| j.table == h))
        }
    }
}

fn no_relationship(
    cache: &SchemaCache,
    parent: &Table,
    target: &str,
    hint: Option<&str>,
) -> ApiError {
    let related = cache.relationships_of(&parent.schema, &parent.name);
    let mut names: Vec<&str> = related.iter().map(|r| r.foreign_table.as_str()).collect();
    names.sort();
    names.dedup();
    let suggestion = if names.contains(&target) {
        None
    } else {
        crate::schema::closest(names.into_iter(), target, 0.5)
    };
    ApiError::NoRelationship {
        parent: parent.name.clone(),
        child: target.to_string(),
        schema: parent.schema.clone(),
        hint: hint.map(str::to_string),
        suggestion,
    }
}

fn describe(rel: &Relationship, target: &str) -> AmbiguousCandidate {
    let cols =
        |v: &mut dyn Iterator<Item = &String>| v.map(String::as_str).collect::<Vec<_>>().join(", ");
    let (relationship, hint) = match &rel.junction {
        Some(j) => (
            format!(
                "{} using {}({}) and {}({})",
                j.table,
                j.source_constraint,
                cols(&mut j.source_columns.iter().map(|(_, c)| c)),
                j.target_constraint,
                cols(&mut j.target_columns.iter().map(|(c, _)| c)),
            ),
            format!("{target}!{}", j.table),
        ),
        None => (
            format!(
                "{} using {}({}) and {}({})",
                rel.constraint,
                rel.table,
                cols(&mut rel.columns.iter().map(|(c, _)| c)),
                rel.foreign_table,
                cols(&mut rel.columns.iter().map(|(_, c)| c)),
            ),
            format!("{target}!{}", rel.constraint),
        ),
    };
    AmbiguousCandidate {
        cardinality: rel.cardinality.describe().to_string(),
        relationship,
        embedding: format!("{} with {target}", rel.table),
        hint,
    }
}

fn find_relationship<'a>(
    cache: &'a SchemaCache,
    parent: &Table,
    target: &str,
    hint: Option<&str>,
) -> Result<&'a Relationship, ApiError> {
    let mut found: Vec<&Relationship> = cache
        .relationships_of(&parent.schema, &parent.name)
        .iter()
        .filter(|r| matches(r, target, hint))
        .collect();
    // A computed relationship overrides the inferred ones of the same name.
    if found.iter().any(|r| r.function.is_some()) {
        found.retain(|r| r.function.is_some());
    }
    match found.as_slice() {
        [] => Err(no_relationship(cache, parent, target, hint)),
        [one] => Ok(one),
        many => Err(ApiError::AmbiguousEmbed {
            parent: parent.name.clone(),
            child: target.to_string(),
            candidates: many.iter().map(|r| describe(r, target)).collect(),
        }),
    }
}

/// Checks related order terms (`order=rel(col)`) against the node's embeds.
fn check_related_order(node: &ReadNode) -> Result<(), ApiError> {
    for term in &node.order {
        if let Some(rel) = &term.relation {
            let embed = node
                .embed(rel)
                .ok_or_else(|| ApiError::NotEmbedded(rel.clone()))?;
            if !embed.is_to_one() {
                return Err(ApiError::RelatedOrderNotToOne {
                    parent: node.table.name.clone(),
                    relation: rel.clone(),
                });
            }
        }
    }
    for e in &node.embeds {
        check_related_order(&e.node)?;
    }
    Ok(())
}

/// Applies db-max-rows and embedded limit/offset to every embedded node.
fn page_embeds(
    node: &mut ReadNode,
    req: &ApiRequest,
    path: &mut Vec<String>,
    max_rows: Option<i64>,
) {
    for e in &mut node.embeds {
        path.push(e.name.clone());
        let offset = last_for(&req.query.offsets, path).unwrap_or(0).max(0);
        let upper = last_for(&req.query.limits, path).map(|l| offset.saturating_add(l.max(0)) - 1);
        e.node.offset = offset;
        e.node.limit = cap(offset, upper, max_rows);
        page_embeds(&mut e.node, req, path, max_rows);
        path.pop();
    }
}

/// The configuration a read plan depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanConfig {
    pub max_rows: Option<i64>,
    /// url-use-legacy-target-names
    pub legacy_names: bool,
    /// db-aggregates-enabled
    pub aggregates: bool,
}

fn uses_aggregates(items: &[SelectItem]) -> bool {
    items.iter().any(|i| match i {
        SelectItem::Column { aggregate, .. } => aggregate.is_some(),
        SelectItem::Embed { items, .. } => uses_aggregates(items),
        SelectItem::Star => false,
    })
}

/// Aggregates cannot be hoisted out of to-many spreads (PostgREST does not either).
fn check_spread_aggregates(node: &ReadNode) -> Result<(), ApiError> {
    for e in &node.embeds {
        if e.spread && !e.is_to_one() && !crate::sql::hoisted_aggregates(&e.node).is_empty() {
            return Err(ApiError::NotImplemented(
                "Aggregates are not implemented for one-to-many or many-to-many spreads.".into(),
            ));
        }
        check_spread_aggregates(&e.node)?;
    }
    Ok(())
}

pub fn read_plan<'a>(
    req: &ApiRequest,
    cache: &'a SchemaCache,
    schema: &str,
    name: &str,
    config: &PlanConfig,
) -> Result<ReadPlan<'a>, ApiError> {
    let table = cache
        .table(schema, name)
        .ok_or_else(|| ApiError::TableNotFound {
            schema: schema.to_string(),
            name: name.to_string(),
            hint: cache.closest_table(schema, name),
        })?;
    read_plan_on(req, cache, table, config)
}

/// A read of `table`'s rows (a table or view, or a function's result).
/// A filter on an embedded resource itself (`tasks=is.null`, inside logic trees too) may
/// only test whether it has rows: any other operator is PGRST120, as in PostgREST (it
/// was PostgreSQL's 42703 on a missing column).
fn check_embed_filters(node: &ReadNode, tree: &LogicTree) -> Result<(), ApiError> {
    use crate::request::query::IsValue;
    match tree {
        LogicTree::Expr { children, .. } => children
            .iter()
            .try_for_each(|c| check_embed_filters(node, c)),
        LogicTree::Filter(f) => {
            let name = &f.field.name;
            let names_embed = node.embed(name).is_some() && node.table.field(name).is_none();
            let tests_rows = f.field.json_path.is_empty()
                && matches!(f.operation, Operation::Is(IsValue::Null | IsValue::NotNull));
            if names_embed && !tests_rows {
                return Err(ApiError::UnacceptableFilter(name.clone()));
            }
            Ok(())
        }
    }
}

pub fn read_plan_on<'a>(
    req: &ApiRequest,
    cache: &'a SchemaCache,
    table: &'a Table,
    config: &PlanConfig,
) -> Result<ReadPlan<'a>, ApiError> {
    let max_rows = config.max_rows;
    let legacy_names = config.legacy_names;
    if !config.aggregates && uses_aggregates(&req.query.select) {
        return Err(ApiError::AggregatesNotAllowed);
    }
    let mut root = build_node(cache, table, None, &req.query.select, 0)?;
    for (path, tree) in &req.query.filters {
        let node = root.at_path(path, legacy_names)?;
        check_embed_filters(node, tree)?;
        node.filters.push(tree.clone());
    }
    for (path, terms) in &req.query.order {
        root.at_path(path, legacy_names)?
            .order
            .extend(terms.iter().cloned());
    }
    for (path, _) in req.query.limits.iter().chain(&req.query.offsets) {
        root.at_path(path, legacy_names)?;
    }
    check_related_order(&root)?;
    check_spread_aggregates(&root)?;
    let mut legacy_targets: Vec<(String, String)> = Vec::new();
    let paths = (req.query.filters.iter().map(|(p, _)| p))
        .chain(req.query.order.iter().map(|(p, _)| p))
        .chain(
            req.query
                .limits
                .iter()
                .chain(&req.query.offsets)
                .map(|(p, _)| p),
        );
    for pair in paths.flat_map(|p| root.legacy_targets(p)) {
        if !legacy_targets.contains(&pair) {
            legacy_targets.push(pair);
        }
    }
    let (offset, limit) = page(req, max_rows)?;
    root.offset = offset;
    root.limit = limit;
    page_embeds(&mut root, req, &mut Vec::new(), max_rows);
    let root_paged =
        last_for(&req.query.offsets, &[]).is_some() || last_for(&req.query.limits, &[]).is_some();
    let ranged = req.method == Method::Get && req.range.is_some();
    Ok(ReadPlan {
        root,
        paged: root_paged || ranged || max_rows.is_some(),
        count: req.prefs.count,
        media_type: req.media_type,
        aggregate: req.aggregate.clone(),
        head: req.method == Method::Head,
        max_rows,
        legacy_targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_query, Target};

    fn req(query: &str, range: Option<(i64, Option<i64>)>) -> ApiRequest {
        ApiRequest {
            method: Method::Get,
            target: Target::Relation("t".into()),
            query: parse_query(query).unwrap(),
            prefs: Default::default(),
            media_type: MediaType::Json,
            range,
            path: "/t".into(),
            headers: vec![],
            cookies: vec![],
            profile: None,
            authorization: None,
            identity: None,
            plan: None,
            handler: None,
            aggregate: None,
        }
    }

    #[test]
    fn paging_intersects_query_header_and_max_rows() {
        assert_eq!(page(&req("", None), None).unwrap(), (0, None));
        assert_eq!(
            page(&req("limit=3", Some((0, Some(1)))), None).unwrap(),
            (0, Some(2))
        );
        assert_eq!(
            page(&req("offset=2&limit=5", None), None).unwrap(),
            (2, Some(5))
        );
        assert_eq!(page(&req("offset=-3", None), None).unwrap(), (0, None));
        assert_eq!(
            page(&req("", Some((5, None))), Some(2)).unwrap(),
            (5, Some(2))
        );
        assert_eq!(page(&req("limit=0", None), Some(10)).unwrap(), (0, Some(0)));
        assert!(page(&req("limit=-1", None), None).is_err());
        let huge = format!("offset={}&limit={}", i64::MAX, i64::MAX);
        assert_eq!(
            page(&req(&huge, None), Some(5)).unwrap(),
            (i64::MAX, Some(0))
        );
        assert!(page(&req("", Some((1, Some(0)))), None).is_err());
    }
}

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
    pub filters: Vec<LogicTree>,
    /// The representation, read from the written rows (`pgrst_source`).
    pub read: ReadPlan<'a>,
    pub representation: bool,
    /// `return=headers-only` on a table with a primary key: the body holds the key.
    pub location: bool,
    /// Count the rows an upsert inserted (201 vs 200).
    pub track_inserted: bool,
}

fn put_key(table: &Table, filters: &[LogicTree]) -> Result<Vec<(String, String)>, ApiError> {
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
    let mut read = read_plan(req, cache, schema, name, &config)?;
    let table = read.root.table;
    let filters = std::mem::take(&mut read.root.filters);
    read.root.offset = 0;
    read.root.limit = None;
    read.root.alias = Some(table.name.clone());
    let column_names: Vec<String> = match (&req.query.columns, &payload) {
        (Some(cols), _) => cols.clone(),
        (None, Some(p)) => p.keys.clone(),
        (None, None) => Vec::new(),
    };
    let columns = column_names
        .iter()
        .map(|c| {
            table.column(c).ok_or_else(|| ApiError::ColumnNotFound {
                table: table.name.clone(),
                column: c.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let kind = match req.method {
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
                key: put_key(table, &filters)?,
            }
        }
        Method::Patch => Update,
        _ => Delete,
    };
    let representation = req.prefs.return_ == Some(ReturnPref::Representation);
    let location = req.prefs.return_ == Some(ReturnPref::HeadersOnly)
        && matches!(kind, Insert { .. })
        && !table.primary_key.is_empty();
    if location && !representation {
        read.root.select = table
            .primary_key
            .iter()
            .map(|c| SelectItem::Column {
                field: crate::request::query::Field {
                    name: c.clone(),
                    json_path: Vec::new(),
                },
                alias: None,
                cast: None,
                aggregate: None,
            })
            .collect();
        read.root.embeds.clear();
        read.root.order.clear();
    }
    let is_table = matches!(table.kind, "table" | "partitioned_table");
    let track_inserted = is_table
        && match &kind {
            Insert { conflict } => {
                matches!(conflict, Some((_, Resolution::MergeDuplicates)))
            }
            Put { .. } => true,
            _ => false,
        };
    Ok(MutatePlan {
        kind,
        table,
        columns,
        payload: payload.map(|p| p.json).unwrap_or_default(),
        missing_default: req.prefs.missing_default == Some(true),
        filters,
        read,
        representation,
        location,
        track_inserted,
    })
}

/// How a function receives its arguments.
#[derive(Debug)]
pub enum CallArgs<'a> {
    /// Named arguments taken from a JSON object (text), one per listed parameter.
    Named {
        json: String,
        params: Vec<&'a Param>,
    },
    /// The whole body as the single unnamed parameter.
    Single { value: String, param: &'a Param },
    /// Arguments from the query string, each bound as a parameter cast to its type (a
    /// VARIADIC one as an array literal): what a GET sends, cheaper to plan than JSON.
    Direct(Vec<(&'a Param, String)>),
}

#[derive(Debug)]
pub struct CallPlan<'a> {
    pub routine: &'a Routine,
    /// The custom media type the call answers with its raw value.
    pub media: Option<&'a crate::schema::routines::MediaHandler>,
    pub args: CallArgs<'a>,
    /// Reads over the result rows, for functions returning rows.
    pub read: Option<ReadPlan<'a>>,
    pub read_only: bool,
    pub media_type: MediaType,
    pub head: bool,
}

/// A POST body for /rpc.
pub struct CallBody<'b> {
    pub content_type: Option<&'b str>,
    pub bytes: &'b [u8],
}

/// Which single-unnamed-parameter type a Content-Type feeds.
fn unnamed_kind(media: &str) -> Option<(&'static [&'static str], &'static str)> {
    match media {
        "application/json" => Some((&["json", "jsonb"], "json/jsonb")),
        "text/plain" => Some((&["text"], "text")),
        "text/xml" => Some((&["xml"], "xml")),
        "application/octet-stream" => Some((&["bytea"], "bytea")),
        _ => None,
    }
}

/// Arguments as a JSON object: repeated keys make arrays (VARIADIC), values are strings.
fn args_object(pairs: &[(String, String)]) -> (String, Vec<String>) {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    for (k, v) in pairs {
        let value = serde_json::Value::String(v.clone());
        match map.get_mut(k) {
            Some(serde_json::Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = serde_json::Value::Array(vec![first, value]);
            }
            None => {
                map.insert(k.clone(), value);
            }
        }
    }
    let keys = map.keys().cloned().collect();
    (serde_json::Value::Object(map).to_string(), keys)
}

/// The call's arguments as (JSON object text, its keys), plus the raw body for a single
/// unnamed parameter and the media type that decides which one.
fn call_input(
    req: &ApiRequest,
    body: Option<&CallBody>,
) -> Result<(String, Vec<String>, Option<String>, String), ApiError> {
    let Some(body) = body else {
        let (json, keys) = args_object(&req.query.rpc_args);
        return Ok((json, keys, None, String::new()));
    };
    let media = crate::request::payload::media_type_of(body.content_type);
    let text = || {
        std::str::from_utf8(body.bytes)
            .map(str::to_string)
            .map_err(|_| ApiError::InvalidBody("Empty or invalid json".into()))
    };
    match media.as_str() {
        "application/json" => {
            let raw = text()?;
            let trimmed = if raw.trim().is_empty() {
                "{}"
            } else {
                raw.as_str()
            };
            if let Some(cols) = &req.query.columns {
                return Ok((trimmed.to_string(), cols.clone(), Some(raw.clone()), media));
            }
            let (object, keys) = crate::request::payload::first_object(trimmed)?;
            Ok((object, keys, Some(raw), media))
        }
        "application/x-www-form-urlencoded" => {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(body.bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let (json, keys) = args_object(&pairs);
            Ok((json, keys, None, media))
        }
        "text/csv" => {
            let p = crate::request::payload::parse_csv(body.bytes)?;
            let rows: Vec<serde_json::Value> = serde_json::from_str(&p.json).unwrap_or_default();
            let first = rows.into_iter().next().unwrap_or_default();
            Ok((first.to_string(), p.keys, None, media))
        }
        "text/plain" | "text/xml" => Ok(("{}".into(), Vec::new(), Some(text()?), media)),
        "application/octet-stream" => {
            let hex: String = body.bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok(("{}".into(), Vec::new(), Some(format!("\\x{hex}")), media))
        }
        other => Err(ApiError::InvalidBody(format!(
            "Content-Type not acceptable: {}",
            body.content_type.unwrap_or(other)
        ))),
    }
}

/// Key/value arguments (a query string or a form) per parameter given: repeated keys make
/// the values of a VARIADIC parameter; for other parameters the last value wins.
fn given_args<'r, 'p>(
    routine: &'r Routine,
    pairs: &'p [(String, String)],
) -> Vec<(&'r Param, Vec<&'p str>)> {
    routine
        .params
        .iter()
        .filter_map(|p| {
            let mut given = pairs
                .iter()
                .filter(|(k, _)| *k == p.name)
                .map(|(_, v)| v.as_str());
            let values: Vec<&str> = if p.variadic {
                given.collect()
            } else {
                given.next_back().into_iter().collect()
            };
            (!values.is_empty()).then_some((p, values))
        })
        .collect()
}

/// A form's arguments as the JSON object a POST call reads (strings, arrays of strings
/// for a VARIADIC parameter), as PostgREST passes them.
fn routine_args(routine: &Routine, pairs: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = given_args(routine, pairs)
        .into_iter()
        .map(|(p, values)| {
            let value = match values.as_slice() {
                [one] if !p.variadic => serde_json::Value::from(*one),
                _ => serde_json::Value::from(values),
            };
            (p.name.clone(), value)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Query-string arguments bound directly, each a parameter cast to its type; a VARIADIC
/// parameter's values as an array literal, each element quoted.
fn direct_args<'a>(routine: &'a Routine, pairs: &[(String, String)]) -> CallArgs<'a> {
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let values = given_args(routine, pairs)
        .into_iter()
        .map(|(p, values)| {
            let value = if p.variadic {
                let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
                format!("{{{}}}", items.join(","))
            } else {
                values.concat()
            };
            (p, value)
        })
        .collect();
    CallArgs::Direct(values)
}

fn accepts_keys(r: &Routine, keys: &[String], raw_media: bool) -> bool {
    if r.params.is_empty() {
        return keys.is_empty() && !raw_media;
    }
    let required: Vec<&str> = r
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    let all: Vec<&str> = r.params.iter().map(|p| p.name.as_str()).collect();
    required.iter().all(|p| keys.iter().any(|k| k == p))
        && keys.iter().all(|k| all.contains(&k.as_str()))
}

fn describe_routine(r: &Routine) -> String {
    let params: Vec<String> = r
        .params
        .iter()
        .map(|p| format!("{} => {}", p.name, p.type_name))
        .collect();
    format!("{}.{}({})", r.schema, r.name, params.join(", "))
}

fn no_function(
    cache: &SchemaCache,
    schema: &str,
    name: &str,
    keys: &[String],
    unnamed: Option<&str>,
) -> ApiError {
    // Overloads taking named parameters: the one whose sorted parameter list is closest
    // to the keys given. None (only unnamed ones, or no function of that name): the
    // closest other function name.
    let named: Vec<&Routine> = cache
        .routines
        .get(&(schema.to_string(), name.to_string()))
        .map(|o| {
            o.iter()
                .filter(|r| r.params.iter().all(|p| !p.name.is_empty()))
                .collect()
        })
        .unwrap_or_default();
    let param_list = |names: Vec<&str>| {
        let mut names = names;
        names.sort_unstable();
        format!("({})", names.join(", "))
    };
    let hint = if named.is_empty() {
        let names = cache
            .routines
            .keys()
            .filter(|(s, n)| s == schema && n != name)
            .map(|(_, n)| n.as_str());
        // PostgREST's minimum score for a function name hint.
        crate::schema::closest(names, name, 0.75)
            .map(|n| format!("Perhaps you meant to call the function {schema}.{n}"))
    } else {
        let given = param_list(keys.iter().map(String::as_str).collect());
        let lists: Vec<String> = named
            .iter()
            .map(|r| param_list(r.params.iter().map(|p| p.name.as_str()).collect()))
            .collect();
        // Lists differ in punctuation-heavy ways, hence the lower bar than for names.
        crate::schema::closest(lists.iter().map(String::as_str), &given, 0.35)
            .map(|l| format!("Perhaps you meant to call the function {schema}.{name}{l}"))
    };
    let mut keys = keys.to_vec();
    keys.sort();
    ApiError::NoFunction {
        schema: schema.to_string(),
        name: name.to_string(),
        only_unnamed: keys.is_empty() && unnamed.is_some_and(|u| u != "json/jsonb"),
        keys,
        unnamed: unnamed.map(str::to_string),
        hint,
    }
}

/// Plans a call of `schema.name`; `body` is `None` for GET/HEAD.
pub fn call_plan<'a>(
    req: &ApiRequest,
    cache: &'a SchemaCache,
    schema: &str,
    name: &str,
    body: Option<&CallBody>,
    config: &PlanConfig,
) -> Result<CallPlan<'a>, ApiError> {
    let (json, keys, raw, media) = call_input(req, body)?;
    let is_post = body.is_some();
    let unnamed = if is_post { unnamed_kind(&media) } else { None };
    let raw_media = is_post && media != "application/json" && unnamed.is_some();
    let overloads: &[Routine] = cache
        .routines
        .get(&(schema.to_string(), name.to_string()))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // A custom media type chosen by Accept narrows the overloads to the functions
    // returning it.
    let answers = |r: &&Routine| match &req.handler {
        Some(h) => r.media.as_ref().is_some_and(|m| &m.media_type == h),
        None => true,
    };
    let named: Vec<&Routine> = overloads
        .iter()
        .filter(answers)
        .filter(|r| accepts_keys(r, &keys, raw_media))
        .collect();
    let fallback: Vec<&Routine> = overloads
        .iter()
        .filter(answers)
        .filter(|r| match (r.params.as_slice(), unnamed) {
            ([p], Some((types, _))) => p.name.is_empty() && types.contains(&p.base_type.as_str()),
            _ => false,
        })
        .collect();
    let chosen = match (named.as_slice(), fallback.as_slice()) {
        ([one], _) => (*one, false),
        ([], [one]) => (*one, true),
        ([], []) => {
            return Err(no_function(
                cache,
                schema,
                name,
                &keys,
                unnamed.map(|(_, t)| t),
            ));
        }
        (many, _) if many.len() > 1 => {
            return Err(ApiError::AmbiguousFunction(
                many.iter().map(|r| describe_routine(r)).collect(),
            ))
        }
        (_, many) => {
            return Err(ApiError::AmbiguousFunction(
                many.iter().map(|r| describe_routine(r)).collect(),
            ))
        }
    };
    let (routine, single) = chosen;
    if body.is_none() {
        let args = direct_args(routine, &req.query.rpc_args);
        return call_plan_for(req, cache, routine, args, is_post, config);
    }
    // Arguments from a form: repeated keys make the array of a VARIADIC parameter; for
    // other parameters the last value wins.
    let json = match body.map(|b| b.content_type) {
        Some(ct)
            if crate::request::payload::media_type_of(ct)
                == "application/x-www-form-urlencoded" =>
        {
            let pairs: Vec<(String, String)> =
                form_urlencoded::parse(body.map(|b| b.bytes).unwrap_or_default())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
            routine_args(routine, &pairs)
        }
        _ => json,
    };
    let args = if single {
        CallArgs::Single {
            value: raw.unwrap_or_default(),
            param: &routine.params[0],
        }
    } else {
        CallArgs::Named {
            json,
            params: routine
                .params
                .iter()
                .filter(|p| keys.contains(&p.name))
                .collect(),
        }
    };
    call_plan_for(req, cache, routine, args, is_post, config)
}

/// The plan of a call of the chosen overload with its arguments.
fn call_plan_for<'a>(
    req: &ApiRequest,
    cache: &'a SchemaCache,
    routine: &'a Routine,
    args: CallArgs<'a>,
    is_post: bool,
    config: &PlanConfig,
) -> Result<CallPlan<'a>, ApiError> {
    let result_table = match &routine.returns {
        Returns::Table { schema, name } => cache.table(schema, name),
        Returns::Composite => routine.result_table.as_ref(),
        _ => None,
    };
    let read = match result_table {
        Some(table) => {
            let mut plan = read_plan_on(req, cache, table, config)?;
            plan.root.alias = Some(routine.name.clone());
            Some(plan)
        }
        None => None,
    };
    let media = routine.media.as_ref().filter(|_| req.handler.is_some());
    Ok(CallPlan {
        media,
        routine,
        args,
        read,
        read_only: !is_post || !routine.volatile,
        media_type: req.media_type,
        head: req.method == Method::Head,
    })
}
