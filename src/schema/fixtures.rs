//! Schema caches built in memory, for unit tests of the planner and the SQL renderer.

use super::routines::{Param, Returns, Routine};
use super::*;

pub fn column(name: &str, base: &str) -> Column {
    Column {
        name: name.into(),
        data_type: base.into(),
        base_type: base.into(),
        nullable: true,
        attnum: 0,
        default: None,
        enum_values: vec![],
        description: None,
        function: None,
        repr: None,
    }
}

/// A table of schema `api` with `(name, base type)` columns.
pub fn table(name: &str, columns: &[(&str, &str)], primary_key: &[&str]) -> Table {
    Table {
        schema: "api".into(),
        name: name.into(),
        kind: "table",
        description: None,
        columns: columns.iter().map(|(n, t)| column(n, t)).collect(),
        primary_key: primary_key.iter().map(|c| c.to_string()).collect(),
        computed_fields: vec![],
        updatable_events: 28,
    }
}

/// A foreign-key relationship of schema `api`, `(column of table, column of foreign)`.
pub fn relationship(
    table: &str,
    foreign: &str,
    cardinality: Cardinality,
    columns: &[(&str, &str)],
) -> Relationship {
    Relationship {
        schema: "api".into(),
        table: table.into(),
        foreign_table: foreign.into(),
        cardinality,
        constraint: format!("{table}_{foreign}_fkey"),
        columns: columns
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        junction: None,
        is_self: false,
        foreign_is_view: false,
        function: None,
        holds_key: cardinality == Cardinality::ManyToOne,
    }
}

pub fn param(name: &str, base: &str, required: bool) -> Param {
    Param {
        name: name.into(),
        type_name: base.into(),
        base_type: base.into(),
        required,
        variadic: false,
    }
}

/// A function of schema `api` returning a scalar.
pub fn routine(name: &str, params: Vec<Param>, volatile: bool) -> Routine {
    Routine {
        schema: "api".into(),
        name: name.into(),
        params,
        returns: Returns::Scalar,
        returns_set: false,
        volatile,
        description: None,
        settings: vec![],
        media: None,
        result_table: None,
    }
}

/// Builds a cache for schema `api`.
#[derive(Default)]
pub struct Fixture {
    pub cache: SchemaCache,
}

impl Fixture {
    pub fn table(mut self, t: Table) -> Self {
        self.cache
            .tables
            .entry(t.schema.clone())
            .or_default()
            .insert(t.name.clone(), t);
        self
    }

    pub fn relationship(mut self, r: Relationship) -> Self {
        self.cache
            .relationships
            .entry((r.schema.clone(), r.table.clone()))
            .or_default()
            .push(r);
        self
    }

    pub fn routine(mut self, r: Routine) -> Self {
        self.cache
            .routines
            .entry((r.schema.clone(), r.name.clone()))
            .or_default()
            .push(r);
        self
    }

    pub fn build(self) -> SchemaCache {
        self.cache
    }
}
