//! Reads: the select list, embeds as lateral joins, filters, order, pages and the body.

use super::result::RESPONSE_GUCS;
use super::*;
use std::fmt::Write;

/// A resolved field as an SQL expression over `row_ref`, with its JSON path.
pub(super) fn field_expr(
    b: &mut Builder,
    table: &Table,
    row_ref: &str,
    resolved: &ResolvedField,
) -> String {
    let field = &resolved.field;
    let column = match &resolved.source {
        // A computed field is called with the row cast to the table's type, which also
        // picks the right overload and works on rows of a write's RETURNING.
        Source::Computed(function) => format!(
            "{}({}::{})",
            function_ref(function),
            whole_row(row_ref, table),
            table_ref(table)
        ),
        Source::Column => column_of(row_ref, &field.name),
    };
    if field.json_path.is_empty() {
        return column;
    }
    let mut expr = if resolved.is_json {
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

/// `row_ref."column"`, written without the formatting machinery: field expressions are
/// built several times per embed (format! was about 4 % of an embed read's instructions,
/// callgrind).
fn column_of(row_ref: &str, column: &str) -> String {
    let mut out = String::with_capacity(row_ref.len() + column.len() + 3);
    out.push_str(row_ref);
    out.push('.');
    let _ = write_ident(&mut out, column);
    out
}

pub(super) fn apply_aggregate(agg: &Aggregate, input: &str) -> String {
    let call = format!("pg_catalog.{}({input})", agg.func.name());
    match &agg.cast {
        Some(cast) => format!("CAST({call} AS {})", type_name(cast)),
        None => call,
    }
}

/// A column of a domain with a `domain -> json` cast is output through it.
pub(super) fn represented(expr: String, to_json: Option<&QualifiedName>) -> String {
    match to_json {
        Some(function) => format!("{}({expr})", function_ref(function)),
        None => expr,
    }
}

/// One output column: expression, output name (empty for `t.*`), whether it aggregates.
pub(super) struct OutColumn {
    expr: String,
    name: String,
    aggregate: bool,
}

/// The node's output columns. A root or plain embed applies aggregates itself (and those
/// its spreads hoist to it); a spread node leaves its aggregates to its parent.
pub(super) fn out_columns(b: &mut Builder, node: &ReadNode, aggregating: bool) -> Vec<OutColumn> {
    let row_ref = node_ref(node);
    let mut out: Vec<OutColumn> = node
        .select
        .iter()
        .map(|o| own_column(b, node, &row_ref, o, aggregating))
        .collect();
    for e in &node.embeds {
        out.extend(embed_columns(e, aggregating));
    }
    out
}

/// One of the node's own output columns.
fn own_column(
    b: &mut Builder,
    node: &ReadNode,
    row_ref: &str,
    output: &Output,
    aggregating: bool,
) -> OutColumn {
    let (expr, name, cast, aggregate) = match output {
        Output::AllColumns => {
            return OutColumn {
                expr: format!("{row_ref}.*"),
                name: String::new(),
                aggregate: false,
            }
        }
        Output::Field {
            field,
            name,
            cast,
            aggregate,
        } => {
            let expr = represented(field_expr(b, node.table, row_ref, field), field.to_json);
            (expr, name, cast, aggregate.as_ref())
        }
        // count() counts rows; a spread leaves a non-null marker per row
        Output::CountRows {
            name,
            cast,
            aggregate,
        } => {
            let marker = if aggregating { "*" } else { "1" };
            (marker.to_string(), name, cast, Some(aggregate))
        }
    };
    let expr = match cast {
        Some(cast) => format!("CAST({expr} AS {})", type_name(cast)),
        None => expr,
    };
    let aggregate = aggregate.filter(|_| aggregating);
    OutColumn {
        expr: match aggregate {
            Some(agg) => apply_aggregate(agg, &expr),
            None => expr,
        },
        name: name.clone(),
        aggregate: aggregate.is_some(),
    }
}

/// The columns an embed adds to its parent's output: a spread's columns (with the
/// aggregates it hoists), a to-one embed's object, a to-many embed's array.
fn embed_columns(e: &Embed, aggregating: bool) -> Vec<OutColumn> {
    let j = quote_ident(&e.join_alias);
    if e.spread {
        let hoisted = if aggregating {
            e.node.hoisted_aggregates()
        } else {
            Vec::new()
        };
        return e
            .node
            .output_names()
            .into_iter()
            .map(|name| {
                let column = format!("{j}.{}", Ident(&name));
                let agg = hoisted.iter().find(|(n, _)| *n == name).map(|(_, a)| a);
                OutColumn {
                    expr: match agg {
                        Some(agg) => apply_aggregate(agg, &column),
                        None => column,
                    },
                    name,
                    aggregate: agg.is_some(),
                }
            })
            .collect();
    }
    if e.is_empty() {
        return Vec::new();
    }
    let expr = if e.is_to_one() {
        // The columns the parent orders by are not part of the embedded object.
        let hidden: String = e
            .hidden_order
            .iter()
            .map(|(column, _)| format!(" - '{column}'"))
            .collect();
        format!("row_to_json({j}.*)::jsonb{hidden}")
    } else {
        format!("COALESCE({j}.{j}, '[]')")
    };
    vec![OutColumn {
        expr,
        name: e.name.clone(),
        aggregate: false,
    }]
}

/// Writes the node's select list to `out` and returns its GROUP BY clause (empty
/// unless something aggregates).
pub(super) fn push_select_list(
    b: &mut Builder,
    out: &mut String,
    node: &ReadNode,
    aggregating: bool,
) -> String {
    let columns = out_columns(b, node, aggregating);
    if columns.is_empty() {
        out.push_str("NULL");
        return String::new();
    }
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&c.expr);
        if !c.name.is_empty() {
            out.push_str(" AS ");
            let _ = write_ident(out, &c.name);
        }
    }
    let mut group_by = String::new();
    if columns.iter().any(|c| c.aggregate) {
        for c in columns.iter().filter(|c| !c.aggregate) {
            group_by.push_str(if group_by.is_empty() {
                " GROUP BY "
            } else {
                ", "
            });
            group_by.push_str(&c.expr);
        }
    }
    group_by
}

/// A PostgreSQL array literal from list elements, every element quoted.
pub(super) fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// `rel=is.null` / `rel=not.is.null` on an embedded resource: whether it has rows.
fn embed_presence(node: &ReadNode, embed: &str, present: bool) -> String {
    let Some(e) = node.embed(embed) else {
        // The planner names only embeds of this node.
        return "FALSE".to_string();
    };
    let j = quote_ident(&e.join_alias);
    if e.is_to_one() {
        let not = if present { "" } else { "NOT " };
        format!("{j} IS {not}DISTINCT FROM NULL")
    } else if e.spread {
        // spread to-many laterals carry their row count in a column named like the join
        format!("{j}.{j} {} 0", if present { ">" } else { "=" })
    } else {
        format!("{j}.{j} IS {}NULL", if present { "NOT " } else { "" })
    }
}

/// Writes one filter's condition to `out`.
fn push_filter(
    b: &mut Builder,
    out: &mut String,
    node: &ReadNode,
    field: &ResolvedField,
    negated: bool,
    operation: &Operation,
) {
    let expr = field_expr(b, node.table, &node_ref(node), field);
    if negated {
        out.push_str("NOT (");
    }
    match operation {
        Operation::Compare {
            op,
            quantifier,
            value,
        } => push_compare(b, out, field, &expr, *op, *quantifier, value),
        Operation::In(items) => {
            let p = b.param(array_literal(items));
            let _ = match field.from_text {
                Some(function) => write!(
                    out,
                    "{expr} = ANY(ARRAY(SELECT {}(pgrst_v) FROM unnest({p}::text[]) AS pgrst_v))",
                    function_ref(function)
                ),
                None => write!(out, "{expr} = ANY({p})"),
            };
        }
        Operation::Is(v) => {
            let test = match v {
                IsValue::Null => "NULL",
                IsValue::NotNull => "NOT NULL",
                IsValue::True => "TRUE",
                IsValue::False => "FALSE",
                IsValue::Unknown => "UNKNOWN",
            };
            let _ = write!(out, "{expr} IS {test}");
        }
        Operation::Fts {
            kind,
            language,
            value,
        } => {
            let lang = language
                .as_ref()
                .map(|l| format!("{}::regconfig, ", b.param(l.clone())))
                .unwrap_or_default();
            let q = b.param(value.clone());
            let _ = match field.is_tsvector {
                true => write!(out, "{expr} @@ {}({lang}{q})", kind.function()),
                false => write!(
                    out,
                    "to_tsvector({lang}{expr}) @@ {}({lang}{q})",
                    kind.function()
                ),
            };
        }
    }
    if negated {
        out.push(')');
    }
}

/// Writes `expr op value`, with ANY/ALL; a domain's `text -> domain` cast reads the value
/// of a plain comparison (pattern matches compare text).
fn push_compare(
    b: &mut Builder,
    out: &mut String,
    field: &ResolvedField,
    expr: &str,
    op: CompareOp,
    quantifier: Option<Quantifier>,
    value: &str,
) {
    let value = match op {
        CompareOp::Like | CompareOp::Ilike => value.replace('*', "%"),
        _ => value.to_string(),
    };
    let p = b.param(value);
    let pattern = matches!(
        op,
        CompareOp::Like | CompareOp::Ilike | CompareOp::Match | CompareOp::Imatch
    );
    let op = op.sql();
    let _ = match (field.from_text, quantifier) {
        (Some(function), None) if !pattern => {
            write!(out, "{expr} {op} {}({p}::text)", function_ref(function))
        }
        (_, None) => write!(out, "{expr} {op} {p}"),
        (_, Some(Quantifier::Any)) => write!(out, "{expr} {op} ANY({p})"),
        (_, Some(Quantifier::All)) => write!(out, "{expr} {op} ALL({p})"),
    };
}

/// Writes a condition tree to `out`, each filter straight into it rather than through a
/// String per filter, group and joined list (1-2 % of the instructions of a by-pk or
/// embed request, callgrind).
fn push_tree(b: &mut Builder, out: &mut String, node: &ReadNode, tree: &Condition) {
    match tree {
        Condition::Filter {
            field,
            negated,
            operation,
        } => push_filter(b, out, node, field, *negated, operation),
        Condition::EmbedPresence { embed, present } => {
            out.push_str(&embed_presence(node, embed, *present))
        }
        Condition::Tree {
            negated,
            or,
            children,
        } => {
            let joiner = if *or { " OR " } else { " AND " };
            if *negated {
                out.push_str("NOT ");
            }
            out.push('(');
            for (i, child) in children.iter().enumerate() {
                if i > 0 {
                    out.push_str(joiner);
                }
                push_tree(b, out, node, child);
            }
            out.push(')');
        }
    }
}

/// The node's filters (and join conditions, if any) as a WHERE clause.
pub(super) fn where_clause(
    b: &mut Builder,
    node: &ReadNode,
    join_conditions: Vec<String>,
) -> String {
    let mut out = String::new();
    push_where(b, &mut out, node, join_conditions);
    out
}

/// [`where_clause`], written to `out`.
pub(super) fn push_where(
    b: &mut Builder,
    out: &mut String,
    node: &ReadNode,
    join_conditions: Vec<String>,
) {
    if join_conditions.is_empty() && node.filters.is_empty() {
        return;
    }
    out.push_str(" WHERE ");
    for (i, condition) in join_conditions.iter().enumerate() {
        if i > 0 {
            out.push_str(" AND ");
        }
        out.push_str(condition);
    }
    for (i, filter) in node.filters.iter().enumerate() {
        if i > 0 || !join_conditions.is_empty() {
            out.push_str(" AND ");
        }
        push_tree(b, out, node, filter);
    }
}

pub(super) fn push_order(b: &mut Builder, out: &mut String, node: &ReadNode) {
    if node.order.is_empty() {
        return;
    }
    let row_ref = node_ref(node);
    out.push_str(" ORDER BY ");
    for (i, t) in node.order.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match &t.key {
            OrderKey::Own(field) => out.push_str(&field_expr(b, node.table, &row_ref, field)),
            OrderKey::EmbedOutput { join_alias, field } => {
                let embed_table = node
                    .embeds
                    .iter()
                    .find(|e| &e.join_alias == join_alias)
                    .map_or(node.table, |e| e.node.table);
                out.push_str(&field_expr(b, embed_table, &quote_ident(join_alias), field))
            }
            OrderKey::EmbedHidden { join_alias, column } => {
                let _ = write!(out, "{}.{}", Ident(join_alias), Ident(column));
            }
        }
        match t.direction {
            Some(Direction::Asc) => out.push_str(" ASC"),
            Some(Direction::Desc) => out.push_str(" DESC"),
            None => {}
        }
        match t.nulls {
            Some(Nulls::First) => out.push_str(" NULLS FIRST"),
            Some(Nulls::Last) => out.push_str(" NULLS LAST"),
            None => {}
        }
    }
}

pub(super) fn push_page(b: &mut Builder, out: &mut String, node: &ReadNode) {
    if let Some(limit) = node.limit {
        let _ = write!(out, " LIMIT {}", b.param(limit.to_string()));
    }
    if node.offset > 0 {
        let _ = write!(out, " OFFSET {}", b.param(node.offset.to_string()));
    }
}

/// Whether a filter of this node mentions the embed (a null-embed condition).
pub(super) fn filtered_on(node: &ReadNode, name: &str) -> bool {
    node.filters.iter().any(|f| f.mentions_embed(name))
}

/// `FROM table [AS alias]` plus a lateral join per embed. `only_filtering` keeps just
/// the joins that can remove rows (inner joins and null-embed conditions), for counts.
/// `source` replaces the table (a computed relationship's function call).
pub(super) fn push_from(
    b: &mut Builder,
    out: &mut String,
    node: &ReadNode,
    only_filtering: bool,
    source: Option<&str>,
) {
    out.push_str(" FROM ");
    match source {
        Some(source) => out.push_str(source),
        None => {
            let _ = write_qualified(out, &node.table.schema, &node.table.name);
        }
    }
    if let Some(a) = &node.alias {
        out.push_str(" AS ");
        let _ = write_ident(out, a);
    }
    for e in &node.embeds {
        if only_filtering && !e.inner && !filtered_on(node, &e.name) {
            continue;
        }
        push_embed_join(b, out, node, e);
    }
}

/// Writes the lateral join that computes one embedded resource for each parent row: its
/// subquery goes straight into `out`, between the lateral's opening and closing text.
fn push_embed_join(b: &mut Builder, out: &mut String, parent: &ReadNode, e: &Embed) {
    let (open, close) = lateral(e);
    out.push_str(&open);
    push_embed_subquery(b, out, parent, e);
    out.push_str(&close);
}

/// The SELECT that gives one parent row's embedded rows.
fn push_embed_subquery(b: &mut Builder, out: &mut String, parent: &ReadNode, e: &Embed) {
    let child = &e.node;
    let child_ref = node_ref(child);
    let (junction_from, conditions) = join_conditions(&node_ref(parent), &child_ref, e);
    out.push_str("SELECT ");
    let group_by = push_select_list(b, out, child, !e.spread);
    for (name, field) in &e.hidden_order {
        let column = field_expr(b, child.table, &child_ref, field);
        let _ = write!(out, ", {column} AS {}", Ident(name));
    }
    let source = computed_source(parent, e);
    push_from(b, out, child, false, source.as_deref());
    out.push_str(&junction_from);
    push_where(b, out, child, conditions);
    out.push_str(&group_by);
    push_order(b, out, child);
    push_page(b, out, child);
}

/// How an embed's rows meet its parent's: through the junction table (added to the
/// embed's FROM list) or on the foreign key's column pairs.
fn join_conditions(parent_ref: &str, child_ref: &str, e: &Embed) -> (String, Vec<String>) {
    let Some(jn) = &e.rel.junction else {
        let conditions = e
            .rel
            .columns
            .iter()
            .map(|(parent_col, child_col)| {
                let mut condition = column_of(child_ref, child_col);
                condition.push_str(" = ");
                condition.push_str(&column_of(parent_ref, parent_col));
                condition
            })
            .collect();
        return (String::new(), conditions);
    };
    let jref = quote_ident(&format!("{}_j", e.join_alias));
    let from = format!(", {}.{} AS {jref}", Ident(&e.rel.schema), Ident(&jn.table));
    let to_source = jn
        .source_columns
        .iter()
        .map(|(source, jcol)| format!("{jref}.{} = {parent_ref}.{}", Ident(jcol), Ident(source)));
    let to_target = jn
        .target_columns
        .iter()
        .map(|(jcol, target)| format!("{jref}.{} = {child_ref}.{}", Ident(jcol), Ident(target)));
    (from, to_source.chain(to_target).collect())
}

/// A computed relationship calls its function with the parent's whole row, cast to the
/// parent's type: that picks the overload and works over a write's RETURNING rows.
fn computed_source(parent: &ReadNode, e: &Embed) -> Option<String> {
    let f = e.rel.function.as_ref()?;
    let parent_row = match &parent.alias {
        Some(a) => quote_ident(a),
        None => quote_ident(&parent.table.name),
    };
    Some(format!(
        "{}({parent_row}::{})",
        function_ref(f),
        table_ref(parent.table)
    ))
}

/// The text before and after an embed's subquery that joins it laterally: its row for a
/// to-one embed, its rows as a JSON array for a to-many one, or a spread's columns as
/// arrays with its row count.
fn lateral(e: &Embed) -> (String, String) {
    let j = quote_ident(&e.join_alias);
    let join = if e.inner {
        "INNER JOIN LATERAL"
    } else {
        "LEFT JOIN LATERAL"
    };
    if e.is_to_one() {
        return (format!(" {join} ("), format!(") AS {j} ON TRUE"));
    }
    let sub = quote_ident(&format!("{}_rows", e.join_alias));
    if e.spread {
        let mut columns: Vec<String> = e
            .node
            .output_names()
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
        return (
            format!(" {join} (SELECT {} FROM (", columns.join(", ")),
            format!(") AS {sub}) AS {j} ON {on}"),
        );
    }
    let on = if e.inner {
        format!("{j}.{j} IS NOT NULL")
    } else {
        "TRUE".to_string()
    };
    (
        format!(" {join} (SELECT json_agg({sub})::jsonb AS {j} FROM ("),
        format!(") AS {sub}) AS {j} ON {on}"),
    )
}

/// A custom media type's body: the value itself when its binary form is the body,
/// else its text output (format() applies the type's output function).
pub(super) fn handler_output(media: &crate::schema::routines::MediaHandler, value: &str) -> String {
    if media.raw {
        value.to_string()
    } else {
        format!("format('%s', {value})")
    }
}

/// The body expression over the page rows `_postgrest_t`.
pub(super) fn body_expr(plan: &ReadPlan) -> Cow<'static, str> {
    if plan.head {
        return "''".into();
    }
    if let Some(agg) = &plan.aggregate {
        // A table's handler takes that table's row type (the select is then the default,
        // so the columns match); an `anyelement` one takes the rows as they are. The
        // output goes out as PostgreSQL sends it (see MediaHandler::raw); no row at all
        // answers an empty body.
        let row = match &agg.relation {
            Some((schema, name)) => format!("_postgrest_t::{}.{}", Ident(schema), Ident(name)),
            None => "_postgrest_t".to_string(),
        };
        return handler_output(
            &agg.media,
            &format!("{}({row})", qualified(&agg.schema, &agg.name)),
        )
        .into();
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
/// page_total (int8), body (text), response_headers, response_status (text); a streamed
/// read's the same with one item per row instead of the body (see [`read_items`]).
pub fn read_statement(plan: &ReadPlan) -> Statement {
    let mut b = Builder::default();
    b.push("WITH ");
    if plan.streamed {
        read_items(&mut b, plan);
        return b.finish_as(RowShape::Items);
    }
    read_ctes(&mut b, plan, None, &body_expr(plan));
    b.finish()
}

/// `pgrst_source` (and `pgrst_source_count`) over the table, or over `source` (a CTE
/// already written into `b`), then the final projection with `body`.
pub(super) fn read_ctes(b: &mut Builder, plan: &ReadPlan, source: Option<&str>, body: &str) {
    let total = source_ctes(b, plan, source, "pg_catalog.count(*)");
    let _ = write!(
        b.sql,
        " SELECT {total}::int8, pg_catalog.count(*)::int8, ({body}), \
         {RESPONSE_GUCS} FROM (SELECT * FROM pgrst_source) _postgrest_t"
    );
}

/// The page's rows as JSON texts, one per row, in order. Every row also carries the
/// page total and the response GUCs, and all of them are known at the first row: the
/// window count must read the whole page before it emits a row, and below it (OFFSET 0
/// keeps the items' subquery from being merged upwards, where PostgreSQL would compute
/// the items after the window) each item, computed fields included, is computed as the
/// window reads it. The outer join answers one row of NULL item for an empty page, so
/// the GUCs arrive then too.
fn read_items(b: &mut Builder, plan: &ReadPlan) {
    let total = source_ctes(b, plan, None, "coalesce(p.page_total, 0)");
    let _ = write!(b.sql,
        " SELECT {total}::int8, coalesce(p.page_total, 0)::int8, p.item, {RESPONSE_GUCS} \
         FROM (VALUES (1)) pgrst_one LEFT JOIN (SELECT item, pg_catalog.count(*) OVER () AS page_total \
         FROM (SELECT to_json(_postgrest_t)::text AS item FROM (SELECT * FROM pgrst_source) _postgrest_t \
         OFFSET 0) pgrst_items) p ON true"
    );
}

/// Writes `pgrst_source` and, when an exact count of more than the page is wanted,
/// `pgrst_source_count`; returns the total's expression (`page_count` when the page is
/// the whole result).
fn source_ctes(b: &mut Builder, plan: &ReadPlan, source: Option<&str>, page_count: &str) -> String {
    let root = &plan.root;
    b.in_place(|b, out| {
        out.push_str("pgrst_source AS (SELECT ");
        let group_by = push_select_list(b, out, root, true);
        push_from(b, out, root, false, source);
        push_where(b, out, root, Vec::new());
        out.push_str(&group_by);
        push_order(b, out, root);
        push_page(b, out, root);
        out.push(')');
    });
    match plan.count {
        None => "NULL".to_string(),
        Some(crate::request::CountPref::Planned) if source.is_none() => "NULL".to_string(),
        Some(_) if plan.paged => {
            b.in_place(|b, out| {
                out.push_str(", pgrst_source_count AS (SELECT 1");
                push_from(b, out, root, true, source);
                push_where(b, out, root, Vec::new());
                if let (Some(crate::request::CountPref::Estimated), Some(max), None) =
                    (plan.count, plan.max_rows, source)
                {
                    let p = b.param((max + 1).to_string());
                    let _ = write!(out, " LIMIT {p}");
                }
                out.push(')');
            });
            "(SELECT pg_catalog.count(*) FROM pgrst_source_count)".to_string()
        }
        Some(_) => page_count.to_string(),
    }
}

/// `EXPLAIN (FORMAT JSON)` of the rows a count would see, for count=planned/estimated.
pub fn planned_count_statement(plan: &ReadPlan) -> Statement {
    let mut b = Builder::default();
    b.in_place(|b, out| {
        out.push_str("EXPLAIN (FORMAT JSON) SELECT 1");
        push_from(b, out, &plan.root, true, None);
        push_where(b, out, &plan.root, Vec::new());
    });
    b.finish()
}
