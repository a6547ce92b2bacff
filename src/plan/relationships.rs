//! Which relationship an embed means (PostgREST's disambiguation rules).

use crate::error::{AmbiguousCandidate, ApiError};
use crate::schema::{Cardinality, Relationship, SchemaCache, Table};

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

pub(super) fn no_relationship(
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
        crate::hints::closest(names.into_iter(), target, 0.5)
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

pub(super) fn find_relationship<'a>(
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
