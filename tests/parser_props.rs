//! Property tests: the query-string parser takes any input without panicking and fails
//! only with PGRST100 (or PGRST127 for grammar not implemented yet).

use pgrest::error::ApiError;
use pgrest::request::parse_query;
use proptest::prelude::*;

fn acceptable(r: Result<pgrest::request::QueryParams, ApiError>) -> bool {
    match r {
        Ok(_) => true,
        Err(ApiError::Parse { .. }) | Err(ApiError::NotImplemented(_)) => true,
        Err(other) => {
            eprintln!("unexpected error {other:?}");
            false
        }
    }
}

const KEYS: &[&str] = &[
    "select", "order", "limit", "offset", "or", "and", "not.or", "a.order", "id", "data->x",
    "\"a.b\"", "a.b.c",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_query_strings(s in ".{0,80}") {
        prop_assert!(acceptable(parse_query(&s)));
    }

    #[test]
    fn grammar_shaped_values(
        key in proptest::sample::select(KEYS),
        value in "[a-z0-9.,()\"{}*:!>\\- ]{0,40}",
    ) {
        let q = format!("{key}={}", urlencode(&value));
        prop_assert!(acceptable(parse_query(&q)));
    }

    #[test]
    fn operators_with_arbitrary_values(
        op in proptest::sample::select(&["eq", "not.eq", "in", "is", "like(any)", "fts(english)", "cs", "not.in"][..]),
        value in ".{0,30}",
    ) {
        let q = format!("col={op}.{}", urlencode(&value));
        prop_assert!(acceptable(parse_query(&q)));
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn known_good_inputs_parse() {
    for q in [
        "select=id,name",
        "select=a:b::text,c->d->>e",
        "or=(a.eq.1,and(b.gt.2,c.not.is.null))",
        "order=a.desc.nullslast,b",
        "id=in.(1,2,3)",
        "limit=10&offset=5",
    ] {
        assert!(parse_query(q).is_ok(), "{q}");
    }
}
