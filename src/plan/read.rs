//! Reads: the tree of nodes a select builds, with filters, order and pages.

use super::fields::{self, Condition, OrderKey, Ordering, Output, ResolvedField, Source};
use super::page::{cap, last_for, page};
use super::relationships::{find_relationship, no_relationship};
use super::{Negotiated, PlanConfig};
use crate::error::ApiError;
use crate::request::query::{
    Aggregate, CompareOp, Field, LogicTree, Operation, OrderTerm, SelectItem,
};
use crate::request::{ApiRequest, CountPref, MediaType, Method};
use crate::schema::{Relationship, SchemaCache, Table};

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
    /// The body may be sent as PostgreSQL produces it, one row at a time (see
    /// [`streams`]), instead of as one aggregated value.
    pub streamed: bool,
}

/// One table in the read tree: the root, or an embedded resource.
#[derive(Debug)]
pub struct ReadNode<'a> {
    pub table: &'a Table,
    /// SQL alias; `None` for the root, which is referred to by its qualified name.
    pub alias: Option<String>,
    /// The node's own output columns; embeds are in `embeds`.
    pub select: Vec<Output<'a>>,
    pub filters: Vec<Condition<'a>>,
    pub order: Vec<Ordering<'a>>,
    /// Order terms as given, until the whole tree is known (see `resolve_order`).
    pending_order: Vec<OrderTerm>,
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
    /// Columns the parent orders by that this to-one embed does not output: its subquery
    /// gives them under these names, and they are left out of the embedded object.
    pub hidden_order: Vec<(String, ResolvedField<'a>)>,
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

    /// Aggregates a spread node leaves for its parent to apply, by output name: its own and
    /// those its spread children left to it.
    pub fn hoisted_aggregates(&self) -> Vec<(String, Aggregate)> {
        let mut out = Vec::new();
        for o in &self.select {
            if let (Some(name), Some(agg)) = (o.name(), o.aggregate()) {
                out.push((name.to_string(), agg.clone()));
            }
        }
        for e in self.embeds.iter().filter(|e| e.spread) {
            out.extend(e.node.hoisted_aggregates());
        }
        out
    }

    /// Names the node contributes to its output object (what spreading it into its parent
    /// adds, and what an order term on it can refer to).
    pub fn output_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for o in &self.select {
            match o.name() {
                Some(name) => names.push(name.to_string()),
                None => names.extend(self.table.columns.iter().map(|c| c.name.clone())),
            }
        }
        for e in &self.embeds {
            if e.spread {
                names.extend(e.node.output_names());
            } else if !e.is_empty() {
                names.push(e.name.clone());
            }
        }
        names
    }

    /// Whether the node aggregates itself or has aggregates hoisted to it by spreads.
    fn aggregates(&self) -> bool {
        self.select.iter().any(|o| o.aggregate().is_some())
            || self
                .embeds
                .iter()
                .any(|e| e.spread && !e.node.hoisted_aggregates().is_empty())
    }

    pub fn embed(&self, name: &str) -> Option<&Embed<'a>> {
        self.embeds.iter().find(|e| e.name == name)
    }
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

/// `part_part_depth`, the alias of an embed's node or join (written with itoa: format!
/// took about 2 % of an embed read's instructions, callgrind).
fn numbered_alias(parts: &[&str], depth: usize) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 4);
    for part in parts {
        out.push_str(part);
        out.push('_');
    }
    out.push_str(itoa::Buffer::new().format(depth));
    out
}

/// Builds the tree of nodes from `select`, resolving every embed to a relationship.
fn build_node<'a>(
    cache: &'a SchemaCache,
    table: &'a Table,
    alias: Option<String>,
    items: &[SelectItem],
    depth: usize,
) -> Result<ReadNode<'a>, ApiError> {
    let mut node = ReadNode::new(table, alias);
    let mut own: Vec<SelectItem> = Vec::new();
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
            own.push(legacy_count(table, item));
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
            Some(numbered_alias(&[&rel.foreign_table], depth + 1)),
            items,
            depth + 1,
        )?;
        node.embeds.push(Embed {
            join_alias: numbered_alias(&[&table.name, &out_name], depth + 1),
            name: out_name,
            target: name.clone(),
            rel,
            inner: *join == Some(crate::request::query::JoinType::Inner),
            spread: *spread,
            node: child,
            hidden_order: Vec::new(),
        });
    }
    node.select = outputs(&node, &own);
    Ok(node)
}

impl<'a> ReadNode<'a> {
    /// The table alone with `filters`, referred to by its name (a write's target).
    pub fn filtering(table: &'a Table, filters: Vec<Condition<'a>>) -> ReadNode<'a> {
        ReadNode {
            filters,
            ..ReadNode::new(table, None)
        }
    }

    fn new(table: &'a Table, alias: Option<String>) -> ReadNode<'a> {
        ReadNode {
            table,
            alias,
            select: Vec::new(),
            filters: Vec::new(),
            order: Vec::new(),
            pending_order: Vec::new(),
            offset: 0,
            limit: None,
            embeds: Vec::new(),
        }
    }
}

/// The node's own select items as output columns. `*` is spelled out column by column
/// when the node aggregates (to group by the columns) and when a column has a data
/// representation (to apply it); otherwise it stays `t.*`.
fn outputs<'a>(node: &ReadNode<'a>, items: &[SelectItem]) -> Vec<Output<'a>> {
    let table = node.table;
    let own_aggregates = items.iter().any(|i| {
        matches!(
            i,
            SelectItem::Column {
                aggregate: Some(_),
                ..
            }
        )
    });
    let has_repr = table.columns.iter().any(|c| c.repr().to_json.is_some());
    let expand_star = own_aggregates || node.aggregates() || has_repr;
    let mut out = Vec::new();
    for item in items {
        match item {
            SelectItem::Star if expand_star => {
                out.extend(table.columns.iter().map(|c| Output::Field {
                    field: fields::column(table, &c.name),
                    name: c.name.clone(),
                    cast: None,
                    aggregate: None,
                }))
            }
            SelectItem::Star => out.push(Output::AllColumns),
            SelectItem::Column {
                field,
                alias,
                cast,
                aggregate,
            } => {
                let name = column_output_name(field, alias, aggregate);
                let cast = cast.clone();
                out.push(match aggregate {
                    Some(agg) if field.name == "*" => Output::CountRows {
                        name,
                        cast,
                        aggregate: agg.clone(),
                    },
                    _ => Output::Field {
                        field: fields::resolve(table, field),
                        name,
                        cast,
                        aggregate: aggregate.clone(),
                    },
                });
            }
            SelectItem::Embed { .. } => {}
        }
    }
    out
}

/// Checks related order terms (`order=rel(col)`) against the node's embeds.
fn check_related_order(node: &ReadNode) -> Result<(), ApiError> {
    for term in &node.pending_order {
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
        if e.spread && !e.is_to_one() && !e.node.hoisted_aggregates().is_empty() {
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
    neg: &Negotiated,
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
    let mut plan = read_plan_on(req, neg, cache, table, config)?;
    // The plan media type explains the aggregated statement, the one PostgREST runs.
    plan.streamed = neg.explain.is_none() && streams(&plan);
    Ok(plan)
}

/// Pages of at most this many rows are aggregated into one value by PostgreSQL, as
/// before streaming: the row-per-item statement costs PostgreSQL a window aggregate and
/// pgrest a row each, which only pays off for big bodies.
const STREAM_ABOVE_ROWS: i64 = 1000;

/// Whether a table read's JSON array may stream: a plain JSON array (CSV, GeoJSON,
/// stripped nulls, singular objects and handler aggregates are built whole), with a body
/// (not HEAD), whose page is not known to be small: no limit of at most
/// [`STREAM_ABOVE_ROWS`] and no equality on every primary-key column.
fn streams(plan: &ReadPlan) -> bool {
    let small =
        plan.root.limit.is_some_and(|n| n <= STREAM_ABOVE_ROWS) || one_row_at_most(&plan.root);
    plan.media_type == MediaType::Json && plan.aggregate.is_none() && !plan.head && !small
}

/// The root's filters pin every primary-key column with `eq` (the by-key read).
fn one_row_at_most(root: &ReadNode) -> bool {
    let key = &root.table.primary_key;
    !key.is_empty()
        && key.iter().all(|column| {
            root.filters.iter().any(|c| match c {
                Condition::Filter {
                    field,
                    negated: false,
                    operation:
                        Operation::Compare {
                            op: CompareOp::Eq,
                            quantifier: None,
                            ..
                        },
                } => {
                    field.field.name == *column
                        && field.field.json_path.is_empty()
                        && matches!(field.source, Source::Column)
                }
                _ => false,
            })
        })
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
    neg: &Negotiated,
    cache: &'a SchemaCache,
    table: &'a Table,
    config: &PlanConfig,
) -> Result<ReadPlan<'a>, ApiError> {
    let max_rows = config.max_rows;
    if !config.aggregates && uses_aggregates(&req.query.select) {
        return Err(ApiError::AggregatesNotAllowed);
    }
    let mut root = build_node(cache, table, None, &req.query.select, 0)?;
    attach_parameters(&mut root, req, config.legacy_names)?;
    check_related_order(&root)?;
    resolve_order(&mut root);
    check_spread_aggregates(&root)?;
    let legacy_targets = legacy_targets(&root, req);
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
        media_type: neg.media_type,
        aggregate: neg.aggregate.clone(),
        head: req.method == Method::Head,
        max_rows,
        legacy_targets,
        streamed: false,
    })
}

/// Attaches filters and order terms to the node their path names (limits and offsets
/// are checked to name one too; `page_embeds` applies them).
fn attach_parameters(
    root: &mut ReadNode,
    req: &ApiRequest,
    legacy_names: bool,
) -> Result<(), ApiError> {
    for (path, tree) in &req.query.filters {
        let node = root.at_path(path, legacy_names)?;
        check_embed_filters(node, tree)?;
        let condition = conditions_of(node.table, |n| node.embed(n).is_some(), tree);
        node.filters.push(condition);
    }
    for (path, terms) in &req.query.order {
        root.at_path(path, legacy_names)?
            .pending_order
            .extend(terms.iter().cloned());
    }
    for (path, _) in req.query.limits.iter().chain(&req.query.offsets) {
        root.at_path(path, legacy_names)?;
    }
    Ok(())
}

/// Every (relation name, alias) pair the request's parameter paths used, once each.
fn legacy_targets(root: &ReadNode, req: &ApiRequest) -> Vec<(String, String)> {
    let q = &req.query;
    let paths = (q.filters.iter().map(|(p, _)| p))
        .chain(q.order.iter().map(|(p, _)| p))
        .chain(q.limits.iter().chain(&q.offsets).map(|(p, _)| p));
    let mut found: Vec<(String, String)> = Vec::new();
    for pair in paths.flat_map(|p| root.legacy_targets(p)) {
        if !found.contains(&pair) {
            found.push(pair);
        }
    }
    found
}

/// The key a selected column has in the output object.
pub fn column_output_name(
    field: &Field,
    alias: &Option<String>,
    aggregate: &Option<Aggregate>,
) -> String {
    match (alias, aggregate) {
        (Some(a), _) => a.clone(),
        (None, Some(agg)) => agg.func.name().to_string(),
        (None, None) => field.output_name().to_string(),
    }
}

/// A logic tree's conditions, its fields resolved in `table`.
pub fn conditions_of<'a>(
    table: &'a Table,
    has_embed: impl Fn(&str) -> bool + Copy,
    tree: &LogicTree,
) -> Condition<'a> {
    match tree {
        LogicTree::Filter(f) => fields::condition(table, has_embed, f),
        LogicTree::Expr {
            negated,
            or,
            children,
        } => Condition::Tree {
            negated: *negated,
            or: *or,
            children: children
                .iter()
                .map(|c| conditions_of(table, has_embed, c))
                .collect(),
        },
    }
}

/// Resolves every node's order terms, once the tree and its outputs are known: a term on
/// a to-one embed's column sorts by what the embed outputs under that name, or else by a
/// hidden column the embed's subquery adds for it.
fn resolve_order(node: &mut ReadNode) {
    let terms = std::mem::take(&mut node.pending_order);
    for (i, t) in terms.iter().enumerate() {
        let key = match t
            .relation
            .as_ref()
            .and_then(|r| node.embeds.iter_mut().find(|e| &e.name == r))
        {
            None => OrderKey::Own(fields::resolve(node.table, &t.field)),
            Some(e) => {
                let field = fields::resolve(e.node.table, &t.field);
                let join_alias = e.join_alias.clone();
                if e.node.output_names().contains(&t.field.name) {
                    OrderKey::EmbedOutput { join_alias, field }
                } else {
                    let column = fields::hidden_order_column(i);
                    e.hidden_order.push((column.clone(), field));
                    OrderKey::EmbedHidden { join_alias, column }
                }
            }
        };
        node.order.push(Ordering {
            key,
            direction: t.direction,
            nulls: t.nulls,
        });
    }
    for e in &mut node.embeds {
        resolve_order(&mut e.node);
    }
}
