//! Field resolution: what a name in `select`, a filter or an order term stands for in a
//! table (a column or a computed field, with its JSON path and the casts its type asks
//! for), decided here once so that `sql` only writes what it is told.

use crate::request::query::{Aggregate, Direction, Field, Filter, Nulls, Operation};
use crate::schema::{QualifiedName, Table};

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source<'a> {
    /// A column of the row (or a name the table does not have: PostgreSQL says so).
    Column,
    /// A computed field: its function, called with the row.
    Computed(&'a QualifiedName),
}

/// A field of a table, resolved against the schema cache.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedField<'a> {
    pub field: Field,
    pub source: Source<'a>,
    /// The value is json or jsonb already, so a JSON path applies to it as is (other
    /// types go through to_jsonb first).
    pub is_json: bool,
    /// The `domain -> json` cast its output goes through (whole columns only).
    pub to_json: Option<&'a QualifiedName>,
    /// The `text -> domain` cast that reads filter values (whole columns only).
    pub from_text: Option<&'a QualifiedName>,
    /// A whole tsvector column: full-text search applies to it as is.
    pub is_tsvector: bool,
}

/// Resolves `field` in `table`: a column wins over a computed field of the same name.
pub fn resolve<'a>(table: &'a Table, field: &Field) -> ResolvedField<'a> {
    let column = table.column(&field.name);
    let source = match column {
        Some(_) => Source::Column,
        None => match table.field(&field.name).and_then(|c| c.function.as_deref()) {
            Some(function) => Source::Computed(function),
            None => Source::Column,
        },
    };
    let whole = field.json_path.is_empty();
    let repr = column.filter(|_| whole).map(|c| c.repr());
    ResolvedField {
        is_json: table.field(&field.name).is_some_and(|c| c.is_json()),
        is_tsvector: whole && table.field(&field.name).is_some_and(|c| c.is_tsvector()),
        to_json: repr.and_then(|r| r.to_json.as_ref()),
        from_text: repr.and_then(|r| r.from_text.as_ref()),
        source,
        field: field.clone(),
    }
}

/// A plain column by name (star expansion, keys, RETURNING).
pub fn column<'a>(table: &'a Table, name: &str) -> ResolvedField<'a> {
    resolve(
        table,
        &Field {
            name: name.to_string(),
            json_path: Vec::new(),
        },
    )
}

/// One entry of a node's select list.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<'a> {
    /// `t.*`, as PostgreSQL expands it (no column asks for a representation and nothing
    /// aggregates).
    AllColumns,
    /// A column or computed field (with its JSON path), cast and aggregated as asked,
    /// under `name` in the output object.
    Field {
        field: ResolvedField<'a>,
        name: String,
        cast: Option<String>,
        aggregate: Option<Aggregate>,
    },
    /// `count()`: the rows themselves, counted.
    CountRows {
        name: String,
        cast: Option<String>,
        aggregate: Aggregate,
    },
}

impl Output<'_> {
    pub fn aggregate(&self) -> Option<&Aggregate> {
        match self {
            Output::AllColumns => None,
            Output::Field { aggregate, .. } => aggregate.as_ref(),
            Output::CountRows { aggregate, .. } => Some(aggregate),
        }
    }

    /// Its key in the output object (`None` for `t.*`, which has the table's columns).
    pub fn name(&self) -> Option<&str> {
        match self {
            Output::AllColumns => None,
            Output::Field { name, .. } | Output::CountRows { name, .. } => Some(name),
        }
    }
}

/// A node's condition on its rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition<'a> {
    /// A filter on one field.
    Filter {
        field: ResolvedField<'a>,
        negated: bool,
        operation: Operation,
    },
    /// `embed=is.null` or `not.is.null`: whether an embedded resource has rows.
    EmbedPresence { embed: String, present: bool },
    /// `and(...)`, `or(...)`, possibly negated.
    Tree {
        negated: bool,
        or: bool,
        children: Vec<Condition<'a>>,
    },
}

impl Condition<'_> {
    /// Whether it tests an embed's presence (then a count must join that embed too).
    pub fn mentions_embed(&self, name: &str) -> bool {
        match self {
            Condition::EmbedPresence { embed, .. } => embed == name,
            Condition::Filter { .. } => false,
            Condition::Tree { children, .. } => children.iter().any(|c| c.mentions_embed(name)),
        }
    }
}

/// A filter's condition: an embed's presence when it names one of the node's embeds
/// with `is.null`/`not.is.null`, else a filter on the resolved field.
pub fn condition<'a>(
    table: &'a Table,
    has_embed: impl Fn(&str) -> bool,
    f: &Filter,
) -> Condition<'a> {
    use crate::request::query::IsValue;
    if f.field.json_path.is_empty() && has_embed(&f.field.name) {
        if let Operation::Is(is @ (IsValue::Null | IsValue::NotNull)) = f.operation {
            let wants_null = (is == IsValue::Null) != f.negated;
            return Condition::EmbedPresence {
                embed: f.field.name.clone(),
                present: !wants_null,
            };
        }
    }
    Condition::Filter {
        field: resolve(table, &f.field),
        negated: f.negated,
        operation: f.operation.clone(),
    }
}

/// What an order term sorts by.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderKey<'a> {
    /// A field of the node's own rows.
    Own(ResolvedField<'a>),
    /// A column a to-one embed outputs under that name (an alias included).
    EmbedOutput {
        join_alias: String,
        field: ResolvedField<'a>,
    },
    /// A column of a to-one embed that it does not output: the embed's subquery gives it
    /// under a hidden name (see `Embed::hidden_order`), left out of the embedded object.
    EmbedHidden { join_alias: String, column: String },
}

/// One ORDER BY term.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordering<'a> {
    pub key: OrderKey<'a>,
    pub direction: Option<Direction>,
    pub nulls: Option<Nulls>,
}

/// The name under which a to-one embed's subquery gives the column that order term `i`
/// of its parent sorts by.
pub fn hidden_order_column(i: usize) -> String {
    format!("pgrst_order_{i}")
}
