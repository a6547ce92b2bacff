//! Render plans as one parameterized SQL statement. Identifiers go through `quote_ident`;
//! every client value is a bind parameter.

use crate::plan::{CallArgs, CallPlan, Embed, MutatePlan, MutationKind, ReadNode, ReadPlan};
use crate::request::prefer::Resolution;
use crate::request::query::{
    Aggregate, CompareOp, Direction, Field, Filter, IsValue, JsonKey, LogicTree, Nulls, Operation,
    Quantifier, SelectItem,
};
use crate::request::MediaType;
use crate::schema::Table;
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    /// Values sent as untyped text parameters; PostgreSQL infers their types.
    pub params: Vec<String>,
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a dotted name like `schema.fn` part by part.
pub fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// Type names in casts cannot be parameters; the grammar only lets letters, digits,
/// `_` and spaces through, and this re-checks it where the text is written.
fn type_name(cast: &str) -> &str {
    debug_assert!(cast
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == ' '));
    if cast
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == ' ')
    {
        cast
    } else {
        "text"
    }
}

#[derive(Default)]
struct Builder {
    sql: String,
    params: Vec<String>,
}

impl Builder {
    fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    fn param(&mut self, value: impl Into<String>) -> String {
        self.params.push(value.into());
        format!("${}", self.params.len())
    }

    fn finish(self) -> Statement {
        Statement {
            sql: self.sql,
            params: self.params,
        }
    }
}

fn table_ref(table: &Table) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    )
}

/// The whole-row reference for a row ref: an alias as is, a qualified table by its name.
fn whole_row(row_ref: &str, table: &Table) -> String {
    if row_ref == table_ref(table) {
        quote_ident(&table.name)
    } else {
        row_ref.to_string()
    }
}

/// How SQL refers to a node's rows: its alias, or the root's qualified name.
fn node_ref(node: &ReadNode) -> String {
    match &node.alias {
        Some(a) => quote_ident(a),
        None => table_ref(node.table),
    }
}

/// A field as an SQL expression over `row_ref`, with its JSON path.
fn field_expr(b: &mut Builder, table: &Table, row_ref: &str, field: &Field) -> String {
    let computed = table
        .column(&field.name)
        .is_none()
        .then(|| table.field(&field.name).and_then(|c| c.function.as_ref()))
        .flatten();
    let column = match computed {
        // A computed field is called with the row cast to the table's type, which also
        // picks the right overload and works on rows of a write's RETURNING.
        Some(function) => format!(
            "{function}({}::{})",
            whole_row(row_ref, table),
            table_ref(table)
        ),
        None => format!("{row_ref}.{}", quote_ident(&field.name)),
    };
    if field.json_path.is_empty() {
        return column;
    }
    let is_json = table.field(&field.name).is_some_and(|c| c.is_json());
    let mut expr = if is_json {
        column
    } else {
        format!("to_jsonb({column})")
    };
    for step in &field.json_path {
        let arrow = if step.as_text { "->>" } else { "->" };
        let key = match &step.key {
            JsonKey::Key(k) => format!("{}::text", b.param(k.clone())),
            JsonKey::Index(i) => format!("{}::int", b.param(i.to_string())),
        };
        expr = format!("{expr}{arrow}{key}");
    }
    expr
}

fn column_output_name(
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

/// Names a node contributes to its output object (for spreading it into its parent).
fn output_names(node: &ReadNode) -> Vec<String> {
    let mut names = Vec::new();
    for item in &node.select {
        match item {
            SelectItem::Star => names.extend(node.table.columns.iter().map(|c| c.name.clone())),
            SelectItem::Column {
                field,
                alias,
                aggregate,
                ..
            } => names.push(column_output_name(field, alias, aggregate)),
            SelectItem::Embed { .. } => {}
        }
    }
    for e in &node.embeds {
        if e.spread {
            names.extend(output_names(&e.node));
        } else if !e.is_empty() {
            names.push(e.name.clone());
        }
    }
    names
}

/// Aggregates a spread node leaves for its parent to apply, by output name: its own and
/// those its spread children left to it.
pub(crate) fn hoisted_aggregates(node: &ReadNode) -> Vec<(String, Aggregate)> {
    let mut out = Vec::new();
    for item in &node.select {
        if let SelectItem::Column {
            field,
            alias,
            aggregate: Some(agg),
            ..
        } = item
        {
            out.push((
                column_output_name(field, alias, &Some(agg.clone())),
                agg.clone(),
            ));
        }
    }
    for e in node.embeds.iter().filter(|e| e.spread) {
        out.extend(hoisted_aggregates(&e.node));
    }
    out
}

fn apply_aggregate(agg: &Aggregate, input: &str) -> String {
    let call = format!("pg_catalog.{}({input})", agg.func.name());
    match &agg.cast {
        Some(cast) => format!("CAST({call} AS {})", type_name(cast)),
        None => call,
    }
}

/// A column of a domain with a `domain -> json` cast is output through it.
fn represented(expr: String, to_json: Option<&str>) -> String {
    match to_json {
        Some(function) => format!("{function}({expr})"),
        None => expr,
    }
}

/// One output column: expression, output name (empty for `t.*`), whether it aggregates.
struct OutColumn {
    expr: String,
    name: String,
    aggregate: bool,
}

/// The node's output columns. A root or plain embed applies aggregates itself (and those
/// its spreads hoist to it); a spread node leaves its aggregates to its parent.
fn out_columns(b: &mut Builder, node: &ReadNode, aggregating: bool) -> Vec<OutColumn> {
    let row_ref = node_ref(node);
    let own_aggregates = node.select.iter().any(|i| {
        matches!(
            i,
            SelectItem::Column {
                aggregate: Some(_),
                ..
            }
        )
    });
    let hoisting = node
        .embeds
        .iter()
        .any(|e| e.spread && !hoisted_aggregates(&e.node).is_empty());
    // `*` is spelled out when aggregating (to group by the columns) and when a column
    // has a data representation (to apply it).
    let has_repr = node.table.columns.iter().any(|c| c.repr.to_json.is_some());
    let expand_star = own_aggregates || hoisting || has_repr;
    let mut out = Vec::new();
    for item in &node.select {
        match item {
            SelectItem::Star if expand_star => {
                for c in &node.table.columns {
                    let column = format!("{row_ref}.{}", quote_ident(&c.name));
                    out.push(OutColumn {
                        expr: represented(column, c.repr.to_json.as_deref()),
                        name: c.name.clone(),
                        aggregate: false,
                    });
                }
            }
            SelectItem::Star => out.push(OutColumn {
                expr: format!("{row_ref}.*"),
                name: String::new(),
                aggregate: false,
            }),
            SelectItem::Column {
                field,
                alias,
                cast,
                aggregate,
            } => {
                let name = column_output_name(field, alias, aggregate);
                let mut expr = if field.name == "*" && aggregate.is_some() {
                    // count() counts rows; a spread leaves a non-null marker per row
                    if aggregating { "*" } else { "1" }.to_string()
                } else {
                    let repr = node
                        .table
                        .column(&field.name)
                        .filter(|_| field.json_path.is_empty())
                        .and_then(|c| c.repr.to_json.as_deref());
                    represented(field_expr(b, node.table, &row_ref, field), repr)
                };
                if let Some(cast) = cast {
                    expr = format!("CAST({expr} AS {})", type_name(cast));
                }
                let aggregate = aggregate.as_ref().filter(|_| aggregating);
                out.push(OutColumn {
                    expr: match aggregate {
                        Some(agg) => apply_aggregate(agg, &expr),
                        None => expr,
                    },
                    name,
                    aggregate: aggregate.is_some(),
                });
            }
            SelectItem::Embed { .. } => {}
        }
    }
    for e in &node.embeds {
        let j = quote_ident(&e.join_alias);
        if e.spread {
            let hoisted = if aggregating {
                hoisted_aggregates(&e.node)
            } else {
                Vec::new()
            };
            for name in output_names(&e.node) {
                let column = format!("{j}.{}", quote_ident(&name));
                let agg = hoisted.iter().find(|(n, _)| *n == name).map(|(_, a)| a);
                out.push(OutColumn {
                    expr: match agg {
                        Some(agg) => apply_aggregate(agg, &column),
                        None => column,
                    },
                    name,
                    aggregate: agg.is_some(),
                });
            }
        } else if e.is_empty() {
            continue;
        } else if e.is_to_one() {
            // The columns the parent orders by are not part of the embedded object.
            let hidden: String = order_refs(node, e)
                .map(|(i, _)| format!(" - '{}'", order_column(i)))
                .collect();
            out.push(OutColumn {
                expr: format!("row_to_json({j}.*)::jsonb{hidden}"),
                name: e.name.clone(),
                aggregate: false,
            });
        } else {
            out.push(OutColumn {
                expr: format!("COALESCE({j}.{j}, '[]')"),
                name: e.name.clone(),
                aggregate: false,
            });
        }
    }
    out
}

/// The select list and, when something aggregates, the GROUP BY clause.
fn select_list(b: &mut Builder, node: &ReadNode, aggregating: bool) -> (String, String) {
    let columns = out_columns(b, node, aggregating);
    if columns.is_empty() {
        return ("NULL".to_string(), String::new());
    }
    let list: Vec<String> = columns
        .iter()
        .map(|c| {
            if c.name.is_empty() {
                c.expr.clone()
            } else {
                format!("{} AS {}", c.expr, quote_ident(&c.name))
            }
        })
        .collect();
    let keys: Vec<&str> = columns
        .iter()
        .filter(|c| !c.aggregate)
        .map(|c| c.expr.as_str())
        .collect();
    let group_by = if columns.iter().any(|c| c.aggregate) && !keys.is_empty() {
        format!(" GROUP BY {}", keys.join(", "))
    } else {
        String::new()
    };
    (list.join(", "), group_by)
}

/// A PostgreSQL array literal from list elements, every element quoted.
fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// `rel=is.null` / `rel=not.is.null` on an embedded resource: whether it has rows.
fn null_embed_check(node: &ReadNode, filter: &Filter) -> Option<String> {
    if !filter.field.json_path.is_empty() {
        return None;
    }
    let Operation::Is(is) = filter.operation else {
        return None;
    };
    let wants_null = match is {
        IsValue::Null => true,
        IsValue::NotNull => false,
        _ => return None,
    } != filter.negated;
    let e = node.embed(&filter.field.name)?;
    let j = quote_ident(&e.join_alias);
    let not = if wants_null { "NOT " } else { "" };
    Some(if e.is_to_one() {
        format!("{j} IS {not}DISTINCT FROM NULL")
    } else if e.spread {
        // spread to-many laterals carry their row count in a column named like the join
        format!("{j}.{j} {} 0", if wants_null { "=" } else { ">" })
    } else {
        format!("{j}.{j} IS {}NULL", if wants_null { "" } else { "NOT " })
    })
}

/// The `text -> domain` cast function that parses this filter's values, if any.
fn text_repr<'t>(table: &'t Table, filter: &Filter) -> Option<&'t str> {
    if !filter.field.json_path.is_empty() {
        return None;
    }
    table
        .column(&filter.field.name)
        .and_then(|c| c.repr.from_text.as_deref())
}

fn filter_sql(b: &mut Builder, node: &ReadNode, filter: &Filter) -> String {
    if let Some(check) = null_embed_check(node, filter) {
        return check;
    }
    let table = node.table;
    let expr = field_expr(b, table, &node_ref(node), &filter.field);
    let cond = match &filter.operation {
        Operation::Compare {
            op,
            quantifier,
            value,
        } => {
            let value = match op {
                CompareOp::Like | CompareOp::Ilike => value.replace('*', "%"),
                _ => value.clone(),
            };
            let p = b.param(value);
            let p = match text_repr(table, filter) {
                Some(function)
                    if quantifier.is_none()
                        && !matches!(
                            op,
                            CompareOp::Like
                                | CompareOp::Ilike
                                | CompareOp::Match
                                | CompareOp::Imatch
                        ) =>
                {
                    format!("{function}({p}::text)")
                }
                _ => p,
            };
            match quantifier {
                None => format!("{expr} {} {p}", op.sql()),
                Some(Quantifier::Any) => format!("{expr} {} ANY({p})", op.sql()),
                Some(Quantifier::All) => format!("{expr} {} ALL({p})", op.sql()),
            }
        }
        Operation::In(items) => {
            let p = b.param(array_literal(items));
            match text_repr(table, filter) {
                Some(function) => format!(
                    "{expr} = ANY(ARRAY(SELECT {function}(pgrst_v) FROM unnest({p}::text[]) AS pgrst_v))"
                ),
                None => format!("{expr} = ANY({p})"),
            }
        }
        Operation::Is(v) => {
            let test = match v {
                IsValue::Null => "NULL",
                IsValue::NotNull => "NOT NULL",
                IsValue::True => "TRUE",
                IsValue::False => "FALSE",
                IsValue::Unknown => "UNKNOWN",
            };
            format!("{expr} IS {test}")
        }
        Operation::Fts {
            kind,
            language,
            value,
        } => {
            let is_tsvector = filter.field.json_path.is_empty()
                && table
                    .field(&filter.field.name)
                    .is_some_and(|c| c.is_tsvector());
            let lang = language
                .as_ref()
                .map(|l| format!("{}::regconfig, ", b.param(l.clone())));
            let lang = lang.unwrap_or_default();
            let doc = if is_tsvector {
                expr
            } else {
                format!("to_tsvector({lang}{expr})")
            };
            let q = b.param(value.clone());
            format!("{doc} @@ {}({lang}{q})", kind.function())
        }
    };
    if filter.negated {
        format!("NOT ({cond})")
    } else {
        cond
    }
}

fn tree_sql(b: &mut Builder, node: &ReadNode, tree: &LogicTree) -> String {
    match tree {
        LogicTree::Filter(f) => filter_sql(b, node, f),
        LogicTree::Expr {
            negated,
            or,
            children,
        } => {
            let joiner = if *or { " OR " } else { " AND " };
            let parts: Vec<String> = children.iter().map(|c| tree_sql(b, node, c)).collect();
            let group = format!("({})", parts.join(joiner));
            if *negated {
                format!("NOT {group}")
            } else {
                group
            }
        }
    }
}

/// The node's filters (and join conditions, if any) as a WHERE clause.
fn where_clause(b: &mut Builder, node: &ReadNode, join_conditions: Vec<String>) -> String {
    let mut parts = join_conditions;
    for f in &node.filters {
        parts.push(tree_sql(b, node, f));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(" WHERE {}", parts.join(" AND "))
}

/// The parent's order terms on a to-one embed's columns, with their index.
fn order_refs<'n>(
    parent: &'n ReadNode,
    e: &'n Embed,
) -> impl Iterator<Item = (usize, &'n crate::request::query::OrderTerm)> + 'n {
    parent.order.iter().enumerate().filter(move |(_, t)| {
        e.is_to_one()
            && t.relation.as_deref() == Some(e.name.as_str())
            && !has_output(&e.node, &t.field)
    })
}

/// Whether a node's output has a column of this name: ordering by it refers to that
/// output (an alias included, as in PostgREST), and stays valid when the parent groups by
/// it.
fn has_output(node: &ReadNode, field: &crate::request::query::Field) -> bool {
    output_names(node).contains(&field.name)
}

/// The name under which a to-one embed's subquery gives the column that order term `i`
/// of its parent sorts by (whether or not the embed selects that column, or renames it).
fn order_column(i: usize) -> String {
    format!("pgrst_order_{i}")
}

fn order_clause(b: &mut Builder, node: &ReadNode) -> String {
    if node.order.is_empty() {
        return String::new();
    }
    let row_ref = node_ref(node);
    let terms: Vec<String> = node
        .order
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut s = match t.relation.as_ref().and_then(|r| node.embed(r)) {
                Some(e) if has_output(&e.node, &t.field) => {
                    field_expr(b, e.node.table, &quote_ident(&e.join_alias), &t.field)
                }
                Some(e) => format!(
                    "{}.{}",
                    quote_ident(&e.join_alias),
                    quote_ident(&order_column(i))
                ),
                None => field_expr(b, node.table, &row_ref, &t.field),
            };
            match t.direction {
                Some(Direction::Asc) => s.push_str(" ASC"),
                Some(Direction::Desc) => s.push_str(" DESC"),
                None => {}
            }
            match t.nulls {
                Some(Nulls::First) => s.push_str(" NULLS FIRST"),
                Some(Nulls::Last) => s.push_str(" NULLS LAST"),
                None => {}
            }
            s
        })
        .collect();
    format!(" ORDER BY {}", terms.join(", "))
}

fn page_clause(b: &mut Builder, node: &ReadNode) -> String {
    let mut s = String::new();
    if let Some(limit) = node.limit {
        s.push_str(&format!(" LIMIT {}", b.param(limit.to_string())));
    }
    if node.offset > 0 {
        s.push_str(&format!(" OFFSET {}", b.param(node.offset.to_string())));
    }
    s
}

/// Whether a filter of this node mentions the embed (a null-embed condition).
fn filtered_on(node: &ReadNode, name: &str) -> bool {
    fn mentions(tree: &LogicTree, name: &str) -> bool {
        match tree {
            LogicTree::Filter(f) => f.field.name == name && f.field.json_path.is_empty(),
            LogicTree::Expr { children, .. } => children.iter().any(|c| mentions(c, name)),
        }
    }
    node.filters.iter().any(|f| mentions(f, name))
}

/// `FROM table [AS alias]` plus a lateral join per embed. `only_filtering` keeps just
/// the joins that can remove rows (inner joins and null-embed conditions), for counts.
/// `source` replaces the table (a computed relationship's function call).
fn from_clause(
    b: &mut Builder,
    node: &ReadNode,
    only_filtering: bool,
    source: Option<String>,
) -> String {
    let mut s = format!(" FROM {}", source.unwrap_or_else(|| table_ref(node.table)));
    if let Some(a) = &node.alias {
        s.push_str(&format!(" AS {}", quote_ident(a)));
    }
    for e in &node.embeds {
        if only_filtering && !e.inner && !filtered_on(node, &e.name) {
            continue;
        }
        s.push_str(&embed_join(b, node, e));
    }
    s
}

/// The lateral join that computes one embedded resource for each parent row.
fn embed_join(b: &mut Builder, parent: &ReadNode, e: &Embed) -> String {
    let parent_ref = node_ref(parent);
    let child = &e.node;
    let child_ref = node_ref(child);
    let j = quote_ident(&e.join_alias);
    let mut conditions = Vec::new();
    let mut junction_from = String::new();
    match &e.rel.junction {
        Some(jn) => {
            let jref = quote_ident(&format!("{}_j", e.join_alias));
            junction_from = format!(
                ", {}.{} AS {jref}",
                quote_ident(&e.rel.schema),
                quote_ident(&jn.table)
            );
            for (source, jcol) in &jn.source_columns {
                conditions.push(format!(
                    "{jref}.{} = {parent_ref}.{}",
                    quote_ident(jcol),
                    quote_ident(source)
                ));
            }
            for (jcol, target) in &jn.target_columns {
                conditions.push(format!(
                    "{jref}.{} = {child_ref}.{}",
                    quote_ident(jcol),
                    quote_ident(target)
                ));
            }
        }
        None => {
            for (parent_col, child_col) in &e.rel.columns {
                conditions.push(format!(
                    "{child_ref}.{} = {parent_ref}.{}",
                    quote_ident(child_col),
                    quote_ident(parent_col)
                ));
            }
        }
    }
    let (mut select, group_by) = select_list(b, child, !e.spread);
    for (i, t) in order_refs(parent, e) {
        let column = field_expr(b, child.table, &child_ref, &t.field);
        select.push_str(&format!(", {column} AS {}", quote_ident(&order_column(i))));
    }
    let mut inner = format!("SELECT {select}");
    // A computed relationship calls its function with the parent's whole row, cast to
    // the parent's type: that picks the overload and works over a write's RETURNING rows.
    let source = e.rel.function.as_ref().map(|f| {
        let parent_row = match &parent.alias {
            Some(a) => quote_ident(a),
            None => quote_ident(&parent.table.name),
        };
        format!("{f}({parent_row}::{})", table_ref(parent.table))
    });
    inner.push_str(&from_clause(b, child, false, source));
    inner.push_str(&junction_from);
    inner.push_str(&where_clause(b, child, conditions));
    inner.push_str(&group_by);
    inner.push_str(&order_clause(b, child));
    inner.push_str(&page_clause(b, child));
    let join = if e.inner {
        "INNER JOIN LATERAL"
    } else {
        "LEFT JOIN LATERAL"
    };
    if e.is_to_one() {
        return format!(" {join} ({inner}) AS {j} ON TRUE");
    }
    let sub = quote_ident(&format!("{}_rows", e.join_alias));
    if e.spread {
        let mut columns: Vec<String> = output_names(child)
            .iter()
            .map(|n| {
                let n = quote_ident(n);
                format!("COALESCE(json_agg({sub}.{n}), '[]') AS {n}")
            })
            .collect();
        columns.push(format!("pg_catalog.count(*) AS {j}"));
        let on = if e.inner {
            format!("{j}.{j} > 0")
        } else {
            "TRUE".to_string()
        };
        return format!(
            " {join} (SELECT {} FROM ({inner}) AS {sub}) AS {j} ON {on}",
            columns.join(", ")
        );
    }
    let on = if e.inner {
        format!("{j}.{j} IS NOT NULL")
    } else {
        "TRUE".to_string()
    };
    format!(" {join} (SELECT json_agg({sub})::jsonb AS {j} FROM ({inner}) AS {sub}) AS {j} ON {on}")
}

/// A custom media type's body: the value itself when its binary form is the body,
/// else its text output (format() applies the type's output function).
fn handler_output(media: &crate::schema::routines::MediaHandler, value: &str) -> String {
    if media.raw {
        value.to_string()
    } else {
        format!("format('%s', {value})")
    }
}

/// The body expression over the page rows `_postgrest_t`.
fn body_expr(plan: &ReadPlan) -> Cow<'static, str> {
    if plan.head {
        return "''".into();
    }
    if let Some(agg) = &plan.aggregate {
        // A table's handler takes that table's row type (the select is then the default,
        // so the columns match); an `anyelement` one takes the rows as they are. The
        // output goes out as PostgreSQL sends it (see MediaHandler::raw); no row at all
        // answers an empty body.
        let row = match &agg.relation {
            Some((schema, name)) => format!(
                "_postgrest_t::{}.{}",
                quote_ident(schema),
                quote_ident(name)
            ),
            None => "_postgrest_t".to_string(),
        };
        return handler_output(&agg.media, &format!("{}({row})", agg.qualified())).into();
    }
    let builtin = match plan.media_type {
        MediaType::Json => "coalesce(json_agg(_postgrest_t), '[]')",
        MediaType::SingleObject => "coalesce(json_agg(_postgrest_t)->0, 'null')",
        MediaType::StrippedArray => "coalesce(json_strip_nulls(json_agg(_postgrest_t)), '[]')",
        MediaType::StrippedObject => {
            "coalesce(json_strip_nulls(json_agg(_postgrest_t)->0), 'null')"
        }
        // Header from the first row's keys, then each row in record text form without
        // its parentheses: PostgreSQL's own quoting, NULL as an empty field.
        // PostGIS turns each row into a Feature (its first geometry column the geometry,
        // the other columns the properties); without one it raises 22023.
        MediaType::GeoJson => {
            "json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(ST_AsGeoJSON(_postgrest_t)::json), '[]'))"
        }
        MediaType::Csv => {
            "(SELECT coalesce(string_agg(k.key, ','), '') FROM json_object_keys(json_agg(_postgrest_t)->0) AS k(key)) || E'\\n' || coalesce(string_agg(substring(_postgrest_t::text, 2, length(_postgrest_t::text) - 2), E'\\n'), '')"
        }
    };
    builtin.into()
}

/// The read statement: columns total_result_set (int8, NULL unless counted exactly),
/// page_total (int8), body (text), response_headers, response_status (text).
pub fn read_statement(plan: &ReadPlan) -> Statement {
    let mut b = Builder::default();
    b.push("WITH ");
    read_ctes(&mut b, plan, None, &body_expr(plan));
    b.finish()
}

/// `pgrst_source` (and `pgrst_source_count`) over the table, or over `source` (a CTE
/// already written into `b`), then the final projection with `body`.
fn read_ctes(b: &mut Builder, plan: &ReadPlan, source: Option<&str>, body: &str) {
    let root = &plan.root;
    let (select, group_by) = select_list(b, root, true);
    let from = from_clause(b, root, false, source.map(str::to_string));
    let w = where_clause(b, root, Vec::new());
    let o = order_clause(b, root);
    let p = page_clause(b, root);
    b.push(&format!(
        "pgrst_source AS (SELECT {select}{from}{w}{group_by}{o}{p})"
    ));
    let total = match plan.count {
        None => "NULL".to_string(),
        Some(crate::request::CountPref::Planned) if source.is_none() => "NULL".to_string(),
        Some(_) if plan.paged => {
            let from = from_clause(b, root, true, source.map(str::to_string));
            let w = where_clause(b, root, Vec::new());
            let mut count_cte = format!(", pgrst_source_count AS (SELECT 1{from}{w}");
            if let (Some(crate::request::CountPref::Estimated), Some(max), None) =
                (plan.count, plan.max_rows, source)
            {
                let p = b.param((max + 1).to_string());
                count_cte.push_str(&format!(" LIMIT {p}"));
            }
            count_cte.push(')');
            b.push(&count_cte);
            "(SELECT pg_catalog.count(*) FROM pgrst_source_count)".to_string()
        }
        Some(_) => "pg_catalog.count(*)".to_string(),
    };
    b.push(&format!(
        " SELECT {total}::int8, pg_catalog.count(*)::int8, ({body}), \
         nullif(current_setting('response.headers', true), ''), \
         nullif(current_setting('response.status', true), '') \
         FROM (SELECT * FROM pgrst_source) _postgrest_t"
    ));
}

/// `character(n)` and `bit(n)` parameters take their values as the varying types, so an
/// argument is not cut or refused for its length (PostgREST does the same).
fn varying(type_name: &str) -> String {
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
    let function = routine.qualified();
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
                 nullif(current_setting('response.headers', true), ''), \
                 nullif(current_setting('response.status', true), '') \
                 FROM (SELECT * FROM pgrst_source) _postgrest_t"
            ));
        }
    }
    b.finish()
}

/// `EXPLAIN (FORMAT JSON)` of the rows a count would see, for count=planned/estimated.
pub fn planned_count_statement(plan: &ReadPlan) -> Statement {
    let mut b = Builder::default();
    let from = from_clause(&mut b, &plan.root, true, None);
    let w = where_clause(&mut b, &plan.root, Vec::new());
    b.push(&format!("EXPLAIN (FORMAT JSON) SELECT 1{from}{w}"));
    b.finish()
}

/// What RETURNING lists: `None` = the whole row.
fn returning_columns(plan: &MutatePlan) -> Option<Vec<String>> {
    let root = &plan.read.root;
    let table = plan.table;
    let mut cols: Vec<String> = Vec::new();
    let mut add = |c: &str| {
        if !cols.iter().any(|x| x == c) {
            cols.push(c.to_string());
        }
    };
    for item in &root.select {
        match item {
            SelectItem::Column { field, .. } if field.name == "*" => {}
            SelectItem::Column { field, .. } if table.column(&field.name).is_some() => {
                add(&field.name)
            }
            // `*` and computed fields need the whole row
            _ => return None,
        }
    }
    for t in root.order.iter().filter(|t| t.relation.is_none()) {
        add(&t.field.name);
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
    if plan.location {
        table.primary_key.iter().for_each(|c| add(c));
    }
    if cols.is_empty() {
        None
    } else {
        Some(cols)
    }
}

/// The payload as rows: an array of objects (a single object becomes a one-element
/// array; PUT and PATCH use the first element only).
fn payload_rows(b: &mut Builder, plan: &MutatePlan, first_only: bool) -> String {
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
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `json_to_recordset(rows) AS _("a" type, ...)`, or plain rows when no columns.
fn recordset(plan: &MutatePlan, rows: &str) -> String {
    if plan.columns.is_empty() {
        return format!("json_array_elements({rows}) AS _");
    }
    // A domain with a `json -> domain` cast reads its JSON value through it.
    let defs: Vec<String> = plan
        .columns
        .iter()
        .map(|c| {
            let ty = if c.repr.from_json.is_some() {
                "json"
            } else {
                c.data_type.as_str()
            };
            format!("{} {ty}", quote_ident(&c.name))
        })
        .collect();
    format!("json_to_recordset({rows}) AS _({})", defs.join(", "))
}

fn column_list(plan: &MutatePlan, prefix: &str) -> String {
    plan.columns
        .iter()
        .map(|c| format!("{prefix}{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A payload column's value, through the column's `json -> domain` cast if it has one.
fn payload_value(c: &crate::schema::Column, source: &str) -> String {
    let value = format!("{source}.{}", quote_ident(&c.name));
    match &c.repr.from_json {
        Some(function) => format!("{function}({value})"),
        None => value,
    }
}

fn on_conflict(plan: &MutatePlan, key: &[String], merge: bool) -> String {
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
fn mutation_sql(b: &mut Builder, plan: &MutatePlan) -> String {
    let target = table_ref(plan.table);
    let insert = |b: &mut Builder, first_only: bool| {
        let rows = payload_rows(b, plan, first_only);
        let cols = column_list(plan, "");
        let select = plan
            .columns
            .iter()
            .map(|c| payload_value(c, "_"))
            .collect::<Vec<_>>()
            .join(", ");
        let into = if cols.is_empty() {
            target.clone()
        } else {
            format!("{target}({cols})")
        };
        format!(
            "INSERT INTO {into} SELECT {select} FROM {}",
            recordset(plan, &rows)
        )
    };
    match &plan.kind {
        MutationKind::Insert { conflict } => {
            let mut sql = insert(b, false);
            if let Some((key, resolution)) = conflict {
                sql.push_str(&on_conflict(
                    plan,
                    key,
                    *resolution == Resolution::MergeDuplicates,
                ));
            }
            sql
        }
        MutationKind::Put { key } => {
            let mut sql = insert(b, true);
            let conds: Vec<String> = key
                .iter()
                .map(|(c, v)| format!("_.{} = {}", quote_ident(c), b.param(v.clone())))
                .collect();
            sql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
            let names: Vec<String> = key.iter().map(|(c, _)| c.clone()).collect();
            sql.push_str(&on_conflict(plan, &names, true));
            sql
        }
        MutationKind::Update => {
            let node = filter_node(plan);
            if plan.columns.is_empty() {
                return format!("SELECT {target}.* FROM {target} WHERE false");
            }
            let rows = payload_rows(b, plan, true);
            let sets: Vec<String> = plan
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "{} = {}",
                        quote_ident(&c.name),
                        payload_value(c, "pgrst_body")
                    )
                })
                .collect();
            format!(
                "UPDATE {target} SET {} FROM (SELECT * FROM {}) AS pgrst_body{}",
                sets.join(", "),
                recordset(plan, &rows),
                where_clause(b, &node, Vec::new())
            )
        }
        MutationKind::Delete => {
            let node = filter_node(plan);
            format!("DELETE FROM {target}{}", where_clause(b, &node, Vec::new()))
        }
    }
}

/// The target table as a node carrying the write's filters, referred to by its name.
fn filter_node<'a>(plan: &MutatePlan<'a>) -> ReadNode<'a> {
    ReadNode {
        table: plan.table,
        alias: None,
        select: Vec::new(),
        filters: plan.filters.clone(),
        order: Vec::new(),
        offset: 0,
        limit: None,
        embeds: Vec::new(),
    }
}

/// A write and its representation in one statement: columns total (NULL), page_total,
/// inserted (upserts only), body, response_headers, response_status.
/// Whether a row an upsert returns was inserted rather than updated. `xmax = 0` says so
/// for a table; a partitioned table's RETURNING cannot read system columns, so there the
/// row counts as inserted when no row with its conflict key was visible before: the
/// statement's own snapshot does not see what it inserts, and sees an updated row's old
/// version.
fn inserted_flag(plan: &MutatePlan, target: &str) -> String {
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
    let returning = match (wants_rows, returning_columns(plan)) {
        (false, _) => "1".to_string(),
        (true, None) => format!("{target}.*"),
        (true, Some(cols)) => cols
            .iter()
            .map(|c| format!("{target}.{}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let returning_kw = if matches!(plan.kind, MutationKind::Update) && plan.columns.is_empty() {
        // the no-op update is a SELECT: its select list already is the whole row
        String::new()
    } else {
        format!(" RETURNING {returning}")
    };
    let inserted = if plan.track_inserted {
        let cols = match (wants_rows, returning_columns(plan)) {
            (false, _) => "1".to_string(),
            (true, None) => plan
                .table
                .columns
                .iter()
                .map(|c| quote_ident(&c.name))
                .collect::<Vec<_>>()
                .join(", "),
            (true, Some(cols)) => cols
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let inserted_flag = inserted_flag(plan, &target);
        b.push(&format!(
            "WITH pgrst_mutation AS ({mutation}{returning_kw}, {inserted_flag} AS pgrst_inserted), \
             pgrst_source AS (SELECT {cols} FROM pgrst_mutation)"
        ));
        "(SELECT pg_catalog.count(*) FROM pgrst_mutation WHERE pgrst_inserted)"
    } else {
        b.push(&format!("WITH pgrst_source AS ({mutation}{returning_kw})"));
        "NULL"
    };
    let rows = if wants_rows {
        let root = &plan.read.root;
        let (select, group_by) = select_list(&mut b, root, true);
        let from = from_clause(&mut b, root, false, Some("pgrst_source".to_string()));
        let w = where_clause(&mut b, root, Vec::new());
        let o = order_clause(&mut b, root);
        format!("SELECT {select}{from}{w}{group_by}{o}")
    } else {
        "SELECT * FROM pgrst_source".to_string()
    };
    let body = if plan.representation || plan.location {
        body_expr(&plan.read)
    } else {
        "''".into()
    };
    b.push(&format!(
        " SELECT NULL::int8, pg_catalog.count(*)::int8, {inserted}::int8, ({body}), \
         nullif(current_setting('response.headers', true), ''), \
         nullif(current_setting('response.status', true), '') \
         FROM ({rows}) _postgrest_t"
    ));
    b.finish()
}

/// What the request's role may use in `$1` (a schema), for the OpenAPI document in
/// openapi-mode follow-privileges: `{"tables": [...], "functions": [...]}` in the body
/// column of a read's row shape.
pub fn openapi_privileges(schema: &str) -> Statement {
    let sql = "SELECT NULL::bigint, 0::bigint, CASE WHEN has_schema_privilege($1::text, 'USAGE') \
THEN json_build_object(\
 'tables', coalesce((SELECT json_agg(c.relname) FROM pg_class c \
   JOIN pg_namespace n ON n.oid = c.relnamespace \
   WHERE n.nspname = $1::text AND c.relkind IN ('r', 'v', 'm', 'f', 'p') \
   AND (has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE') \
     OR has_any_column_privilege(c.oid, 'SELECT, INSERT, UPDATE'))), '[]'), \
 'functions', coalesce((SELECT json_agg(DISTINCT p.proname) FROM pg_proc p \
   JOIN pg_namespace n ON n.oid = p.pronamespace \
   WHERE n.nspname = $1::text AND has_function_privilege(p.oid, 'EXECUTE')), '[]'))::text \
ELSE '{\"tables\": [], \"functions\": []}' END, NULL::text, NULL::text";
    Statement {
        sql: sql.to_string(),
        params: vec![schema.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::read_plan;
    use crate::request::{parse_query, ApiRequest, CountPref, Method, Target};
    use crate::schema::{Cardinality, Column, Junction, Relationship, SchemaCache};

    fn table() -> Table {
        let col = |name: &str, base: &str| Column {
            name: name.into(),
            data_type: base.into(),
            base_type: base.into(),
            nullable: true,
            default: None,
            enum_values: vec![],
            description: None,
            function: None,
            repr: Default::default(),
        };
        Table {
            schema: "api".into(),
            name: "items".into(),
            kind: "table",
            description: None,
            columns: vec![
                col("id", "int4"),
                col("data", "jsonb"),
                col("doc", "tsvector"),
                col("body", "text"),
            ],
            primary_key: vec!["id".into()],
            computed_fields: vec![],
            updatable_events: 28,
        }
    }

    fn cache() -> SchemaCache {
        let mut cache = SchemaCache::default();
        let t = table();
        cache
            .tables
            .entry(t.schema.clone())
            .or_default()
            .insert(t.name.clone(), t);
        cache
    }

    fn request(query: &str) -> ApiRequest {
        ApiRequest {
            method: Method::Get,
            target: Target::Relation("items".into()),
            query: parse_query(query).unwrap(),
            prefs: Default::default(),
            media_type: MediaType::Json,
            range: None,
            path: "/items".into(),
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

    fn render(query: &str, count: Option<CountPref>) -> Statement {
        let cache = cache();
        let mut req = request(query);
        req.prefs.count = count;
        let plan = read_plan(&req, &cache, "api", "items", &Default::default()).unwrap();
        read_statement(&plan)
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_qualified("test.switch_role"),
            "\"test\".\"switch_role\""
        );
    }

    #[test]
    fn filters_bind_every_value() {
        let s = render("select=id,x:data->a->>b&id=in.(1,2)&body=like.*a*&or=(id.eq.1,id.not.is.null)&doc=fts(english).cat&body=fts.dog&order=data->n.desc.nullslast", None);
        assert_eq!(
            s.sql,
            "WITH pgrst_source AS (SELECT \"api\".\"items\".\"id\" AS \"id\", \"api\".\"items\".\"data\"->$1::text->>$2::text AS \"x\" FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" = ANY($3) AND \"api\".\"items\".\"body\" LIKE $4 AND (\"api\".\"items\".\"id\" = $5 OR NOT (\"api\".\"items\".\"id\" IS NULL)) AND \"api\".\"items\".\"doc\" @@ to_tsquery($6::regconfig, $7) AND to_tsvector(\"api\".\"items\".\"body\") @@ to_tsquery($8) ORDER BY \"api\".\"items\".\"data\"->$9::text DESC NULLS LAST) SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"
        );
        assert_eq!(
            s.params,
            vec![
                "a",
                "b",
                "{\"1\",\"2\"}",
                "%a%",
                "1",
                "english",
                "cat",
                "dog",
                "n"
            ]
        );
    }

    #[test]
    fn exact_count_with_a_page_uses_its_own_query() {
        let s = render("id=gt.1&limit=10", Some(CountPref::Exact));
        assert!(s.sql.contains("LIMIT $2) , pgrst_source_count AS (SELECT 1 FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" > $3)") || s.sql.contains("LIMIT $2), pgrst_source_count AS (SELECT 1 FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" > $3)"), "{}", s.sql);
        assert_eq!(s.params, vec!["1", "10", "1"]);
    }

    #[test]
    fn non_json_columns_are_wrapped_for_paths() {
        let s = render("select=body->0", None);
        assert!(s
            .sql
            .contains("to_jsonb(\"api\".\"items\".\"body\")->$1::int AS \"body\""));
    }

    fn simple_table(name: &str, cols: &[&str]) -> Table {
        Table {
            schema: "api".into(),
            name: name.into(),
            kind: "table",
            description: None,
            columns: cols
                .iter()
                .map(|c| Column {
                    name: c.to_string(),
                    data_type: "int4".into(),
                    base_type: "int4".into(),
                    nullable: true,
                    default: None,
                    enum_values: vec![],
                    description: None,
                    function: None,
                    repr: Default::default(),
                })
                .collect(),
            primary_key: vec!["id".into()],
            computed_fields: vec![],
            updatable_events: 28,
        }
    }

    fn rel(table: &str, foreign: &str, card: Cardinality, cols: &[(&str, &str)]) -> Relationship {
        Relationship {
            schema: "api".into(),
            table: table.into(),
            foreign_table: foreign.into(),
            cardinality: card,
            constraint: format!("{table}_{foreign}_fkey"),
            columns: cols
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            junction: None,
            is_self: false,
            foreign_is_view: false,
            function: None,
            holds_key: card == Cardinality::ManyToOne,
        }
    }

    /// films -> directors (M2O), directors -> films (O2M), films <-> actors through roles.
    fn film_cache() -> SchemaCache {
        let mut cache = SchemaCache::default();
        for t in [
            simple_table("films", &["id", "director_id"]),
            simple_table("directors", &["id"]),
            simple_table("actors", &["id"]),
            simple_table("roles", &["film_id", "actor_id"]),
        ] {
            cache
                .tables
                .entry("api".into())
                .or_default()
                .insert(t.name.clone(), t);
        }
        let mut m2m = rel("films", "actors", Cardinality::ManyToMany, &[]);
        m2m.junction = Some(Junction {
            table: "roles".into(),
            source_constraint: "roles_film_id_fkey".into(),
            source_columns: vec![("id".into(), "film_id".into())],
            target_constraint: "roles_actor_id_fkey".into(),
            target_columns: vec![("actor_id".into(), "id".into())],
        });
        cache.relationships.insert(
            ("api".into(), "films".into()),
            vec![
                rel(
                    "films",
                    "directors",
                    Cardinality::ManyToOne,
                    &[("director_id", "id")],
                ),
                m2m,
            ],
        );
        cache.relationships.insert(
            ("api".into(), "directors".into()),
            vec![rel(
                "directors",
                "films",
                Cardinality::OneToMany,
                &[("id", "director_id")],
            )],
        );
        cache
    }

    fn render_on(cache: &SchemaCache, table: &str, query: &str) -> String {
        let mut req = request(query);
        req.target = Target::Relation(table.into());
        let plan = read_plan(&req, cache, "api", table, &Default::default()).unwrap();
        read_statement(&plan).sql
    }

    const TAIL: &str = " SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t";

    #[test]
    fn many_to_one_is_one_lateral_join_in_one_statement() {
        let sql = render_on(&film_cache(), "films", "select=id,directors(id)");
        assert_eq!(
            sql,
            format!("WITH pgrst_source AS (SELECT \"api\".\"films\".\"id\" AS \"id\", row_to_json(\"films_directors_1\".*)::jsonb AS \"directors\" FROM \"api\".\"films\" LEFT JOIN LATERAL (SELECT \"directors_1\".\"id\" AS \"id\" FROM \"api\".\"directors\" AS \"directors_1\" WHERE \"directors_1\".\"id\" = \"api\".\"films\".\"director_id\") AS \"films_directors_1\" ON TRUE){TAIL}")
        );
    }

    #[test]
    fn one_to_many_aggregates_children_in_a_lateral_subquery() {
        let sql = render_on(
            &film_cache(),
            "directors",
            "select=id,films!inner(id)&films.order=id.desc&films.limit=2",
        );
        assert_eq!(
            sql,
            format!("WITH pgrst_source AS (SELECT \"api\".\"directors\".\"id\" AS \"id\", COALESCE(\"directors_films_1\".\"directors_films_1\", '[]') AS \"films\" FROM \"api\".\"directors\" INNER JOIN LATERAL (SELECT json_agg(\"directors_films_1_rows\")::jsonb AS \"directors_films_1\" FROM (SELECT \"films_1\".\"id\" AS \"id\" FROM \"api\".\"films\" AS \"films_1\" WHERE \"films_1\".\"director_id\" = \"api\".\"directors\".\"id\" ORDER BY \"films_1\".\"id\" DESC LIMIT $1) AS \"directors_films_1_rows\") AS \"directors_films_1\" ON \"directors_films_1\".\"directors_films_1\" IS NOT NULL){TAIL}")
        );
    }

    #[test]
    fn many_to_many_joins_the_junction_inside_the_lateral_subquery() {
        let sql = render_on(&film_cache(), "films", "select=id,actors(id)");
        assert_eq!(
            sql,
            format!("WITH pgrst_source AS (SELECT \"api\".\"films\".\"id\" AS \"id\", COALESCE(\"films_actors_1\".\"films_actors_1\", '[]') AS \"actors\" FROM \"api\".\"films\" LEFT JOIN LATERAL (SELECT json_agg(\"films_actors_1_rows\")::jsonb AS \"films_actors_1\" FROM (SELECT \"actors_1\".\"id\" AS \"id\" FROM \"api\".\"actors\" AS \"actors_1\", \"api\".\"roles\" AS \"films_actors_1_j\" WHERE \"films_actors_1_j\".\"film_id\" = \"api\".\"films\".\"id\" AND \"films_actors_1_j\".\"actor_id\" = \"actors_1\".\"id\") AS \"films_actors_1_rows\") AS \"films_actors_1\" ON TRUE){TAIL}")
        );
    }

    /// shipments -> orders on a two-column key (M2O).
    fn composite_cache() -> SchemaCache {
        let mut cache = SchemaCache::default();
        for t in [
            simple_table("orders", &["id", "region", "num"]),
            simple_table("shipments", &["id", "order_region", "order_num"]),
        ] {
            cache
                .tables
                .entry("api".into())
                .or_default()
                .insert(t.name.clone(), t);
        }
        let key = [("order_region", "region"), ("order_num", "num")];
        cache.relationships.insert(
            ("api".into(), "shipments".into()),
            vec![rel("shipments", "orders", Cardinality::ManyToOne, &key)],
        );
        cache
    }

    #[test]
    fn composite_keys_join_on_every_column_pair() {
        let sql = render_on(&composite_cache(), "shipments", "select=id,orders(id)");
        assert_eq!(
            sql,
            format!("WITH pgrst_source AS (SELECT \"api\".\"shipments\".\"id\" AS \"id\", row_to_json(\"shipments_orders_1\".*)::jsonb AS \"orders\" FROM \"api\".\"shipments\" LEFT JOIN LATERAL (SELECT \"orders_1\".\"id\" AS \"id\" FROM \"api\".\"orders\" AS \"orders_1\" WHERE \"orders_1\".\"region\" = \"api\".\"shipments\".\"order_region\" AND \"orders_1\".\"num\" = \"api\".\"shipments\".\"order_num\") AS \"shipments_orders_1\" ON TRUE){TAIL}")
        );
    }

    #[test]
    fn spreads_and_ordering_by_a_to_one_embed_stay_one_statement() {
        let sql = render_on(
            &film_cache(),
            "films",
            "select=id,...directors(director:id)&order=directors(id).desc",
        );
        // The embed's subquery also gives the column the parent sorts by, under its own name.
        assert_eq!(
            sql,
            format!("WITH pgrst_source AS (SELECT \"api\".\"films\".\"id\" AS \"id\", \"films_directors_1\".\"director\" AS \"director\" FROM \"api\".\"films\" LEFT JOIN LATERAL (SELECT \"directors_1\".\"id\" AS \"director\", \"directors_1\".\"id\" AS \"pgrst_order_0\" FROM \"api\".\"directors\" AS \"directors_1\" WHERE \"directors_1\".\"id\" = \"api\".\"films\".\"director_id\") AS \"films_directors_1\" ON TRUE ORDER BY \"films_directors_1\".\"pgrst_order_0\" DESC){TAIL}")
        );
    }
}
