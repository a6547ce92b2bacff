//! Render plans as one parameterized SQL statement. Identifiers go through `quote_ident`;
//! every client value is a bind parameter.

use crate::plan::ReadPlan;
use crate::request::query::{
    CompareOp, Direction, Field, Filter, IsValue, JsonKey, LogicTree, Nulls, Operation, OrderTerm,
    Quantifier, SelectItem,
};
use crate::request::MediaType;
use crate::schema::Table;

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

/// A field as an SQL expression, with its JSON path.
fn field_expr(b: &mut Builder, table: &Table, field: &Field) -> String {
    let column = format!("{}.{}", table_ref(table), quote_ident(&field.name));
    if field.json_path.is_empty() {
        return column;
    }
    let is_json = table.column(&field.name).is_some_and(|c| c.is_json());
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

fn select_list(b: &mut Builder, table: &Table, items: &[SelectItem]) -> String {
    let mut out = Vec::new();
    for item in items {
        match item {
            SelectItem::Star => out.push(format!("{}.*", table_ref(table))),
            SelectItem::Column { field, alias, cast } => {
                let mut expr = field_expr(b, table, field);
                if let Some(cast) = cast {
                    expr = format!("CAST({expr} AS {})", type_name(cast));
                }
                let name = alias.as_deref().unwrap_or(field.output_name());
                out.push(format!("{expr} AS {}", quote_ident(name)));
            }
            // Embeds are refused by the planner until relationships exist.
            SelectItem::Embed { .. } => {}
        }
    }
    out.join(", ")
}

/// A PostgreSQL array literal from list elements, every element quoted.
fn array_literal(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

fn filter_sql(b: &mut Builder, table: &Table, filter: &Filter) -> String {
    let expr = field_expr(b, table, &filter.field);
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
            match quantifier {
                None => format!("{expr} {} {p}", op.sql()),
                Some(Quantifier::Any) => format!("{expr} {} ANY({p})", op.sql()),
                Some(Quantifier::All) => format!("{expr} {} ALL({p})", op.sql()),
            }
        }
        Operation::In(items) => {
            let p = b.param(array_literal(items));
            format!("{expr} = ANY({p})")
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
                    .column(&filter.field.name)
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

fn tree_sql(b: &mut Builder, table: &Table, tree: &LogicTree) -> String {
    match tree {
        LogicTree::Filter(f) => filter_sql(b, table, f),
        LogicTree::Expr {
            negated,
            or,
            children,
        } => {
            let joiner = if *or { " OR " } else { " AND " };
            let parts: Vec<String> = children.iter().map(|c| tree_sql(b, table, c)).collect();
            let group = format!("({})", parts.join(joiner));
            if *negated {
                format!("NOT {group}")
            } else {
                group
            }
        }
    }
}

fn where_clause(b: &mut Builder, table: &Table, filters: &[LogicTree]) -> String {
    if filters.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = filters.iter().map(|f| tree_sql(b, table, f)).collect();
    format!(" WHERE {}", parts.join(" AND "))
}

fn order_clause(b: &mut Builder, table: &Table, order: &[OrderTerm]) -> String {
    if order.is_empty() {
        return String::new();
    }
    let terms: Vec<String> = order
        .iter()
        .map(|t| {
            let mut s = field_expr(b, table, &t.field);
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

/// The body expression over the page rows `_postgrest_t`.
fn body_expr(plan: &ReadPlan) -> &'static str {
    if plan.head {
        return "''";
    }
    match plan.media_type {
        MediaType::Json => "coalesce(json_agg(_postgrest_t), '[]')",
        MediaType::SingleObject => "coalesce(json_agg(_postgrest_t)->0, 'null')",
        // Header from the first row's keys, then each row in record text form without
        // its parentheses: PostgreSQL's own quoting, NULL as an empty field.
        MediaType::Csv => {
            "(SELECT coalesce(string_agg(k.key, ','), '') FROM json_object_keys(json_agg(_postgrest_t)->0) AS k(key)) || E'\\n' || coalesce(string_agg(substring(_postgrest_t::text, 2, length(_postgrest_t::text) - 2), E'\\n'), '')"
        }
    }
}

/// The read statement: columns total_result_set (int8, NULL unless counted exactly),
/// page_total (int8), body (text), response_headers, response_status (text).
pub fn read_statement(plan: &ReadPlan) -> Statement {
    let mut b = Builder::default();
    let table = &plan.table;
    let select = select_list(&mut b, table, &plan.select);
    let select = if select.is_empty() {
        "NULL".to_string()
    } else {
        select
    };
    b.push(&format!(
        "WITH pgrst_source AS (SELECT {select} FROM {}",
        table_ref(table)
    ));
    let w = where_clause(&mut b, table, &plan.filters);
    b.push(&w);
    let o = order_clause(&mut b, table, &plan.order);
    b.push(&o);
    if let Some(limit) = plan.limit {
        let p = b.param(limit.to_string());
        b.push(&format!(" LIMIT {p}"));
    }
    if plan.offset > 0 {
        let p = b.param(plan.offset.to_string());
        b.push(&format!(" OFFSET {p}"));
    }
    b.push(")");
    let total = match plan.count {
        None | Some(crate::request::CountPref::Planned) => "NULL".to_string(),
        Some(_) if plan.paged => {
            let mut count_cte = format!(
                ", pgrst_source_count AS (SELECT 1 FROM {}",
                table_ref(table)
            );
            count_cte.push_str(&where_clause(&mut b, table, &plan.filters));
            if let (Some(crate::request::CountPref::Estimated), Some(max)) =
                (plan.count, plan.max_rows)
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
        " SELECT {total}::int8, pg_catalog.count(*)::int8, ({})::text, \
         nullif(current_setting('response.headers', true), ''), \
         nullif(current_setting('response.status', true), '') \
         FROM (SELECT * FROM pgrst_source) _postgrest_t",
        body_expr(plan)
    ));
    b.finish()
}

/// `EXPLAIN (FORMAT JSON)` of the rows a count would see, for count=planned/estimated.
pub fn planned_count_statement(plan: &ReadPlan) -> Statement {
    let mut b = Builder::default();
    b.push(&format!(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM {}",
        table_ref(&plan.table)
    ));
    let w = where_clause(&mut b, &plan.table, &plan.filters);
    b.push(&w);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_query, CountPref};
    use crate::schema::Column;

    fn table() -> Table {
        let col = |name: &str, base: &str| Column {
            name: name.into(),
            data_type: base.into(),
            base_type: base.into(),
            nullable: true,
            default: None,
            enum_values: vec![],
            description: None,
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
        }
    }

    fn plan(query: &str) -> ReadPlan {
        let q = parse_query(query).unwrap();
        ReadPlan {
            table: table(),
            select: q.select,
            filters: q.filters.into_iter().map(|(_, t)| t).collect(),
            order: q.order.into_iter().flat_map(|(_, t)| t).collect(),
            offset: 0,
            limit: None,
            paged: false,
            count: None,
            media_type: MediaType::Json,
            head: false,
            max_rows: None,
        }
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
        let s = read_statement(&plan("select=id,x:data->a->>b&id=in.(1,2)&body=like.*a*&or=(id.eq.1,id.not.is.null)&doc=fts(english).cat&body=fts.dog&order=data->n.desc.nullslast"));
        assert_eq!(
            s.sql,
            "WITH pgrst_source AS (SELECT \"api\".\"items\".\"id\" AS \"id\", \"api\".\"items\".\"data\"->$1::text->>$2::text AS \"x\" FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" = ANY($3) AND \"api\".\"items\".\"body\" LIKE $4 AND (\"api\".\"items\".\"id\" = $5 OR NOT (\"api\".\"items\".\"id\" IS NULL)) AND \"api\".\"items\".\"doc\" @@ to_tsquery($6::regconfig, $7) AND to_tsvector(\"api\".\"items\".\"body\") @@ to_tsquery($8) ORDER BY \"api\".\"items\".\"data\"->$9::text DESC NULLS LAST) SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]'))::text, nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"
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
        let mut p = plan("id=gt.1");
        p.count = Some(CountPref::Exact);
        p.paged = true;
        p.limit = Some(10);
        let s = read_statement(&p);
        assert!(s.sql.contains("LIMIT $2) , pgrst_source_count AS (SELECT 1 FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" > $3)") || s.sql.contains("LIMIT $2), pgrst_source_count AS (SELECT 1 FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" > $3)"), "{}", s.sql);
        assert_eq!(s.params, vec!["1", "10", "1"]);
    }

    #[test]
    fn non_json_columns_are_wrapped_for_paths() {
        let s = read_statement(&plan("select=body->0"));
        assert!(s
            .sql
            .contains("to_jsonb(\"api\".\"items\".\"body\")->$1::int AS \"body\""));
    }
}
