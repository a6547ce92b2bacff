//! Resolve a parsed request against the schema cache: which table, which rows, which page.
//! No SQL text here.

use crate::error::ApiError;
use crate::request::query::{LogicTree, OrderTerm, SelectItem};
use crate::request::{ApiRequest, CountPref, MediaType, Method};
use crate::schema::{SchemaCache, Table};

#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub table: Table,
    pub select: Vec<SelectItem>,
    pub filters: Vec<LogicTree>,
    pub order: Vec<OrderTerm>,
    /// First row (0-based) of the page.
    pub offset: i64,
    /// Rows in the page; `None` = no limit.
    pub limit: Option<i64>,
    /// Whether a limit or offset narrows the page (count then needs its own query).
    pub paged: bool,
    pub count: Option<CountPref>,
    pub media_type: MediaType,
    pub head: bool,
    pub max_rows: Option<i64>,
}

fn range_error(details: &str) -> ApiError {
    ApiError::InvalidRange {
        details: details.to_string(),
        total: None,
    }
}

/// Offset and limit from `limit`/`offset`, the Range header (GET only) and db-max-rows.
pub fn page(req: &ApiRequest, max_rows: Option<i64>) -> Result<(i64, Option<i64>), ApiError> {
    let root =
        |v: &[(Vec<String>, i64)]| v.iter().rev().find(|(p, _)| p.is_empty()).map(|(_, n)| *n);
    let mut lower = root(&req.query.offsets).unwrap_or(0).max(0);
    let limit = root(&req.query.limits);
    if limit.is_some_and(|l| l < 0) {
        return Err(range_error(
            "Limit should be greater than or equal to zero.",
        ));
    }
    // Upper bound, inclusive; None = open.
    let mut upper = limit.map(|l| lower + l - 1);
    if req.method == Method::Get {
        if let Some((first, last)) = req.range {
            if last.is_some_and(|last| last < first) {
                return Err(range_error(
                    "The lower boundary must be lower than or equal to the upper boundary in the Range header.",
                ));
            }
            // Intersect the two ranges.
            let new_lower = lower.max(first);
            upper = match (upper, last) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            lower = new_lower;
        }
    }
    if let Some(max) = max_rows {
        let cap = lower + max - 1;
        upper = Some(upper.map_or(cap, |u| u.min(cap)));
    }
    let limit = upper.map(|u| (u - lower + 1).max(0));
    Ok((lower, limit))
}

fn check_no_embed_targets(req: &ApiRequest) -> Result<(), ApiError> {
    let paths = req
        .query
        .filters
        .iter()
        .map(|(p, _)| p)
        .chain(req.query.order.iter().map(|(p, _)| p))
        .chain(req.query.limits.iter().map(|(p, _)| p))
        .chain(req.query.offsets.iter().map(|(p, _)| p));
    for path in paths {
        if let Some(first) = path.first() {
            return Err(ApiError::NotEmbedded(first.clone()));
        }
    }
    for (_, terms) in &req.query.order {
        if let Some(rel) = terms.iter().find_map(|t| t.relation.as_ref()) {
            return Err(ApiError::NotEmbedded(rel.clone()));
        }
    }
    Ok(())
}

pub fn read_plan(
    req: &ApiRequest,
    cache: &SchemaCache,
    schema: &str,
    name: &str,
    max_rows: Option<i64>,
) -> Result<ReadPlan, ApiError> {
    let table = cache
        .table(schema, name)
        .ok_or_else(|| ApiError::TableNotFound {
            schema: schema.to_string(),
            name: name.to_string(),
            hint: cache.closest_table(schema, name),
        })?;
    if let Some(SelectItem::Embed { name: child, .. }) = req
        .query
        .select
        .iter()
        .find(|i| matches!(i, SelectItem::Embed { .. }))
    {
        // Relationships arrive with the embedding work; until then nothing embeds.
        return Err(ApiError::NoRelationship {
            parent: table.name.clone(),
            child: child.clone(),
            schema: schema.to_string(),
        });
    }
    check_no_embed_targets(req)?;
    let (offset, limit) = page(req, max_rows)?;
    let root_offset = req.query.offsets.iter().any(|(p, _)| p.is_empty());
    let root_limit = req.query.limits.iter().any(|(p, _)| p.is_empty());
    let ranged = req.method == Method::Get && req.range.is_some();
    Ok(ReadPlan {
        table: table.clone(),
        select: req.query.select.clone(),
        filters: req.query.filters.iter().map(|(_, t)| t.clone()).collect(),
        order: req
            .query
            .order
            .iter()
            .flat_map(|(_, terms)| terms.clone())
            .collect(),
        offset,
        limit,
        paged: root_offset || root_limit || ranged || max_rows.is_some(),
        count: req.count,
        media_type: req.media_type,
        head: req.method == Method::Head,
        max_rows,
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
            count: None,
            media_type: MediaType::Json,
            range,
            path: "/t".into(),
            headers: vec![],
            cookies: vec![],
            profile: None,
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
        assert!(page(&req("", Some((1, Some(0)))), None).is_err());
    }
}
