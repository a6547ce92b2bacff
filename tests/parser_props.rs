//! Property tests for every parser that reads client input: the query-string grammar,
//! Prefer, Accept, Range, Content-Type and the bodies it selects (JSON, CSV, form),
//! paths, cookies and the lenient request-line rewriter. Generated inputs include deep
//! nesting, huge values, invalid UTF-8, NUL and control characters; every parser must
//! answer (a value or a client error), never panic or recurse without bound.

use pgrest::error::ApiError;
use pgrest::request::{self, parse_query, payload, Preferences};
use proptest::prelude::*;

fn acceptable(r: Result<pgrest::request::QueryParams, ApiError>) -> bool {
    match r {
        Ok(_) => true,
        Err(ApiError::Parse { .. })
        | Err(ApiError::NotImplemented(_))
        | Err(ApiError::NulCharacter(_)) => true,
        Err(other) => {
            eprintln!("unexpected error {other:?}");
            false
        }
    }
}

const KEYS: &[&str] = &[
    "select",
    "order",
    "limit",
    "offset",
    "or",
    "and",
    "not.or",
    "a.order",
    "id",
    "data->x",
    "\"a.b\"",
    "a.b.c",
    "columns",
    "on_conflict",
    "a.b.or",
];

/// Any bytes, percent-encoded: NUL, control characters and invalid UTF-8 included.
fn any_bytes_encoded(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(|bytes| {
        percent_encoding::percent_encode(&bytes, percent_encoding::NON_ALPHANUMERIC).to_string()
    })
}

/// A logic tree or select list nested `depth` levels (a tree's outer parentheses are
/// its first level), of one of the recursive forms.
fn nested(form: usize, depth: usize) -> (String, String) {
    let wrap = |n: usize, open: &str, inner: &str, close: &str| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    let inner = depth - 1;
    match form % 4 {
        0 => (
            "or".into(),
            format!("({})", wrap(inner, "or(", "a.eq.1", ")")),
        ),
        1 => (
            "and".into(),
            format!("({})", wrap(inner, "not.and(", "a.eq.1", ")")),
        ),
        2 => ("select".into(), wrap(depth, "x(", "a", ")")),
        _ => (
            "select".into(),
            format!("id,{}", wrap(depth, "...x(", "a", ")")),
        ),
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_query_strings(s in ".{0,80}") {
        prop_assert!(acceptable(parse_query(&s)));
    }

    #[test]
    fn arbitrary_bytes_in_keys_and_values(
        key in prop_oneof![proptest::sample::select(KEYS).prop_map(str::to_string), any_bytes_encoded(20)],
        value in any_bytes_encoded(60),
    ) {
        let q = format!("{key}={value}");
        prop_assert!(acceptable(parse_query(&q)));
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

    #[test]
    fn nesting_parses_up_to_the_limit_and_is_refused_past_it(form in 0usize..4, depth in 1usize..300) {
        let (key, value) = nested(form, depth);
        let parsed = parse_query(&format!("{key}={}", urlencode(&value)));
        if depth <= request::query::MAX_NESTING {
            prop_assert!(parsed.is_ok(), "{:?}", parsed);
        } else {
            prop_assert!(matches!(parsed, Err(ApiError::Parse { .. })), "{:?}", parsed);
        }
    }

    #[test]
    fn long_json_paths_and_embed_paths_are_bounded(steps in 1usize..200) {
        let path = vec!["k"; steps].join("->");
        let select = parse_query(&format!("select=data->{}", urlencode(&path)));
        let filter = parse_query(&format!("{}a=eq.1", "e.".repeat(steps)));
        if steps < request::query::MAX_NESTING {
            prop_assert!(select.is_ok(), "{:?}", select);
            prop_assert!(filter.is_ok(), "{:?}", filter);
        } else if steps > request::query::MAX_NESTING {
            prop_assert!(select.is_err());
            prop_assert!(filter.is_err());
        }
    }

    #[test]
    fn prefer_headers_never_fail(values in proptest::collection::vec("\\PC{0,60}", 0..4)) {
        let p = Preferences::parse(values.iter().map(String::as_str));
        // Everything not understood is kept, to be refused under handling=strict.
        prop_assert!(p.invalid.len() <= values.iter().map(|v| v.split(',').count()).sum::<usize>());
    }

    #[test]
    fn accept_headers_negotiate_or_refuse(accept in "[a-z/*+.;=,\" 0-9|-]{0,80}") {
        match request::negotiate_with_plan(Some(&accept), true) {
            Ok(_) | Err(ApiError::NotAcceptable(_)) => {}
            Err(other) => prop_assert!(false, "{other:?}"),
        }
        let _ = pgrest::plan::negotiate::choose_handler(Some(&accept), &["text/plain", "*/*"], true);
        let _ = pgrest::plan::negotiate::negotiate_rows(Some(&accept), true, &[]);
    }

    #[test]
    fn range_headers(value in "\\PC{0,30}", a in 0..i64::MAX, b in 0..i64::MAX) {
        let _ = request::parse_range_header(&value);
        prop_assert_eq!(request::parse_range_header(&format!("{a}-{b}")), Some((a, Some(b))));
        prop_assert_eq!(request::parse_range_header(&format!("{a}-")), Some((a, None)));
    }

    #[test]
    fn bodies_of_any_type_parse_or_are_refused(
        content_type in prop_oneof![
            Just("application/json".to_string()),
            Just("text/csv".to_string()),
            Just("application/x-www-form-urlencoded".to_string()),
            "\\PC{0,30}",
        ],
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        match payload::parse(Some(&content_type), body) {
            Ok(p) => prop_assert!(p.keys.windows(2).all(|w| w[0] < w[1]), "{:?}", p.keys),
            Err(ApiError::InvalidBody(_)) => {}
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn json_body_keys_are_those_of_the_parsed_tree(
        rows in proptest::collection::vec(
            proptest::collection::btree_map("\\PC{0,6}", any::<i32>(), 0..4), 0..5),
        as_object in any::<bool>(),
    ) {
        let value = if as_object && !rows.is_empty() {
            serde_json::json!(rows[0])
        } else {
            serde_json::json!(rows)
        };
        let text = value.to_string();
        let expected: Result<Vec<String>, ()> = match &value {
            serde_json::Value::Object(o) => Ok(o.keys().cloned().collect()),
            serde_json::Value::Array(items) => {
                let sets: Vec<Vec<String>> = items
                    .iter()
                    .map(|i| i.as_object().unwrap().keys().cloned().collect())
                    .collect();
                match sets.first() {
                    None => Ok(Vec::new()),
                    Some(first) if sets.iter().all(|s| s == first) => Ok(first.clone()),
                    Some(_) => Err(()),
                }
            }
            _ => unreachable!(),
        };
        let got = payload::parse_json(text.into_bytes());
        match expected {
            Ok(keys) if keys.iter().any(|k| k.contains('\0')) => prop_assert!(got.is_err()),
            Ok(keys) => prop_assert_eq!(got.map(|p| p.keys), Ok(keys)),
            Err(()) => prop_assert!(got.is_err()),
        }
    }

    #[test]
    fn paths_and_cookies(path in any_bytes_encoded(40), cookie in "\\PC{0,60}") {
        let _ = request::parse_target(&format!("/{path}"));
        let _ = request::parse_target(&format!("/rpc/{path}"));
        let _ = request::parse_cookies(&cookie);
    }

    #[test]
    fn the_rewriter_gives_the_same_bytes_however_the_input_is_split(
        input in proptest::collection::vec(prop_oneof![
            Just(b"GET /a?select=x->>y HTTP/1.1\r\n".to_vec()),
            Just(b"Content-Length: 3\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"abc".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..20),
        ], 0..12),
        cuts in proptest::collection::vec(1usize..17, 0..12),
    ) {
        let input: Vec<u8> = input.concat();
        let whole = pgrest::http::lenient::Rewriter::default().feed(&input);
        let mut r = pgrest::http::lenient::Rewriter::default();
        let mut pieces = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle().take(input.len()) {
            if at >= input.len() { break; }
            let end = (at + cut).min(input.len());
            pieces.extend(r.feed(&input[at..end]));
            at = end;
        }
        pieces.extend(r.feed(&input[at..]));
        prop_assert_eq!(&pieces, &whole);
        // Only a request line still being read is held back.
        prop_assert!(whole.len() + 64 * 1024 >= input.len());
    }
}

#[test]
fn a_huge_value_and_a_huge_nesting_do_not_overflow() {
    let value = "x".repeat(1_000_000);
    assert!(parse_query(&format!("a=eq.{value}")).is_ok());
    let deep = format!("({}a.eq.1{})", "or(".repeat(100_000), ")".repeat(100_000));
    assert!(matches!(
        parse_query(&format!("or={}", urlencode(&deep))),
        Err(ApiError::Parse { .. })
    ));
    let body = format!("[{}]", "[".repeat(1_000_000));
    assert!(payload::parse_json(body.into_bytes()).is_err());
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// X-Pgrst-Lsn / pgrst_lsn (read replicas): any text is an LSN or PGRST100, and
    /// every LSN reads back from the text it prints as.
    #[test]
    fn lsn_values(text in ".{0,40}", lsn in any::<u64>(), hex in "[0-9a-fA-F]{1,8}/[0-9a-fA-F]{1,8}") {
        use pgrest::db::replicas::{wanted_lsn, Lsn};
        match wanted_lsn(Some(&text), &[]) {
            Ok(got) => prop_assert_eq!(got, Lsn::parse(text.trim())),
            Err(e) => prop_assert_eq!(e.code(), "PGRST100"),
        }
        prop_assert_eq!(Lsn::parse(&Lsn(lsn).to_string()), Some(Lsn(lsn)));
        prop_assert!(Lsn::parse(&hex).is_some());
    }
}
