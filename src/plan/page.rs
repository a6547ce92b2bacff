//! Paging: limit/offset, the Range header and db-max-rows.

use crate::error::ApiError;
use crate::request::{ApiRequest, Method};

fn range_error(details: &str) -> ApiError {
    ApiError::InvalidRange {
        details: details.to_string(),
        total: None,
    }
}

pub(super) fn last_for(v: &[(Vec<String>, i64)], path: &[String]) -> Option<i64> {
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
pub(super) fn cap(lower: i64, upper: Option<i64>, max_rows: Option<i64>) -> Option<i64> {
    let upper = match max_rows {
        Some(max) => {
            let cap = lower.saturating_add(max) - 1;
            Some(upper.map_or(cap, |u| u.min(cap)))
        }
        None => upper,
    };
    upper.map(|u| u.saturating_sub(lower).saturating_add(1).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_query, Action};

    fn req(query: &str, range: Option<(i64, Option<i64>)>) -> ApiRequest {
        ApiRequest {
            method: Method::Get,
            action: Action::Read {
                relation: "t".into(),
            },
            query: parse_query(query).unwrap(),
            prefs: Default::default(),
            range,
            path: "/t".into(),
            headers: Default::default(),
            cookies: vec![],
            profile: None,
            authorization: None,
            accept: None,
            content_type: None,
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
