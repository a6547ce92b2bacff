//! The read API end to end: a real server process, a real PostgreSQL, real HTTP.

mod common;

use common::{assert_json, ids, server, server_with};
use serde_json::json;

/// `->` must be percent-encoded on the wire (`>` is not a legal URI character).
fn enc(path: &str) -> String {
    path.replace('>', "%3E")
        .replace('"', "%22")
        .replace(' ', "%20")
}

#[test]
fn get_table_returns_rows_with_postgrest_headers() {
    let r = server().get("/kinds?select=id,name&order=id");
    assert_json(
        &r,
        200,
        json!([
            {"id": 1, "name": "alpha"},
            {"id": 2, "name": "beta"},
            {"id": 3, "name": "Gamma, \"quoted\""},
            {"id": 4, "name": null}
        ]),
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("content-range"), Some("0-3/*"));
    assert_eq!(r.header("vary"), Some("Accept, Prefer, Range"));
    assert_eq!(
        r.header("content-location"),
        Some("/kinds?order=id&select=id%2Cname")
    );
}

#[test]
fn every_type_family_serializes_as_postgresql_does() {
    let r = server().get("/kinds?id=eq.1");
    assert_json(
        &r,
        200,
        json!([{
            "id": 1, "name": "alpha", "amount": 10.50, "flag": true, "big": 9000000000i64,
            "at": "2024-01-01T10:00:00+00:00", "day": "2024-01-01",
            "uid": "11111111-1111-1111-1111-111111111111",
            "doc": {"a": {"b": "x"}, "n": 1},
            "data": {"a": {"b": "x"}, "n": 1, "list": [10, 20]},
            "tags": ["red", "green"], "nums": [1, 2, 3], "span": "[1,5)",
            "words": "'brown':3 'fox':4 'quick':2", "feeling": "happy", "raw": "\\x0102"
        }]),
    );
}

#[test]
fn empty_result_is_an_empty_array_with_star_range() {
    let r = server().get("/kinds?id=eq.99");
    assert_json(&r, 200, json!([]));
    assert_eq!(r.header("content-range"), Some("*/*"));
}

#[test]
fn select_aliases_casts_and_json_paths() {
    let s = server();
    let r = s.get(&enc(
        "/kinds?select=ident:id,amount::text,b:data->a->>b,data->list->0,nums->1&id=lt.3&order=id",
    ));
    assert_json(
        &r,
        200,
        json!([
            {"ident": 1, "amount": "10.50", "b": "x", "list": 10, "nums": 2},
            {"ident": 2, "amount": "20.00", "b": "y", "list": 30, "nums": 5}
        ]),
    );
    let r = s.get(&enc("/kinds?select=doc->a->>b&id=eq.2"));
    assert_json(&r, 200, json!([{"b": "y"}]));
    let r = s.get(&enc("/Order Items?select=\"a.b\",count,t"));
    assert_json(&r, 200, json!([{"a.b": "dotted", "count": 7, "t": "tee"}]));
    let r = s.get("/kinds?select=");
    assert_eq!(r.json().as_array().map(|a| a.len()), Some(4));
}

#[test]
fn select_errors_are_pgrst100_or_postgresql_errors() {
    let s = server();
    // `->>` then `->` parses, as in PostgREST; PostgreSQL has no `text -> unknown`
    // operator (42883, which PostgREST answers 404).
    let r = s.get(&enc("/kinds?select=doc->>a->b"));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["code"], "42883");
    let r = s.get(&enc("/kinds?select=doc->"));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "PGRST100");
    let r = s.get("/kinds?select=id,");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "PGRST100");
    let r = s.get("/kinds?select=nope");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "42703");
    let r = s.get("/kinds?select=id::notatype");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "42704");
}

#[test]
fn comparison_operators() {
    let s = server();
    let cases: &[(&str, &[i64])] = &[
        ("id=eq.2", &[2]),
        ("id=neq.2", &[1, 3, 4]),
        ("id=gt.2", &[3, 4]),
        ("id=gte.2", &[2, 3, 4]),
        ("id=lt.2", &[1]),
        ("id=lte.2", &[1, 2]),
        ("amount=gt.6", &[1, 2]),
        ("at=lt.2024-01-15T00:00:00Z", &[1, 4]),
        ("day=eq.2024-02-01", &[2]),
        ("uid=eq.22222222-2222-2222-2222-222222222222", &[2]),
        ("feeling=eq.sad", &[2]),
        ("big=gt.100", &[1]),
        ("name=eq.", &[]),
        ("id=not.eq.2", &[1, 3, 4]),
        ("id=gt.0&id=lt.0", &[]),
    ];
    for (q, expected) in cases {
        let r = s.get(&format!("/kinds?select=id&order=id&{q}"));
        assert_eq!(ids(&r), *expected, "{q}");
    }
}

#[test]
fn pattern_operators() {
    let s = server();
    let cases: &[(&str, &[i64])] = &[
        ("name=like.*a", &[1, 2]),
        ("name=like.G*", &[3]),
        ("name=ilike.g*", &[3]),
        ("name=match.^[ab]", &[1, 2]),
        ("name=imatch.^GAM", &[3]),
        ("name=like(any).{a*,b*}", &[1, 2]),
        ("name=like(all).{*l*,*a*}", &[1]),
        ("id=eq(any).{1,3}", &[1, 3]),
        ("id=gt(all).{1,2}", &[3, 4]),
        ("name=not.like.*a", &[3]),
    ];
    for (q, expected) in cases {
        let r = s.get(&format!("/kinds?select=id&order=id&{q}"));
        assert_eq!(ids(&r), *expected, "{q}");
    }
}

#[test]
fn in_and_is_operators() {
    let s = server();
    let cases: &[(&str, &[i64])] = &[
        ("id=in.(1,3)", &[1, 3]),
        ("name=in.(\"Gamma, \\\"quoted\\\"\",beta)", &[2, 3]),
        ("id=in.()", &[]),
        ("id=not.in.()", &[1, 2, 3, 4]),
        ("id=not.in.(1,2)", &[3, 4]),
        ("name=is.null", &[4]),
        ("name=is.NULL", &[4]),
        ("name=is.not_null", &[1, 2, 3]),
        ("name=not.is.not_null", &[4]),
        ("flag=is.true", &[1, 4]),
        ("flag=is.false", &[2]),
        ("flag=is.unknown", &[3]),
        ("flag=isdistinct.true", &[2, 3]),
        ("flag=not.isdistinct.true", &[1, 4]),
    ];
    for (q, expected) in cases {
        let r = s.get(&enc(&format!("/kinds?select=id&order=id&{q}")));
        assert_eq!(ids(&r), *expected, "{q}");
    }
    let r = s.get("/kinds?id=is.maybe");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "PGRST100");
    let r = s.get("/kinds?id=in.(%20,3)");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "22P02");
}

#[test]
fn array_range_and_json_operators() {
    let s = server();
    let cases: &[(&str, &[i64])] = &[
        ("tags=cs.{red}", &[1, 4]),
        ("tags=cd.{red,green,blue}", &[1, 2, 3, 4]),
        ("nums=ov.{3,4}", &[1, 2]),
        ("span=sl.[6,8)", &[1]),
        ("span=sr.[6,8)", &[2, 4]),
        ("span=nxr.[6,8)", &[1]),
        ("span=nxl.[6,8)", &[2, 4]),
        ("span=adj.[5,10)", &[1, 2]),
        ("span=ov.[2,3)", &[1]),
        ("data=cs.{\"n\":2}", &[2]),
        ("data->>n=eq.3", &[3]),
        ("data->n=gt.2", &[3, 4]),
        ("data->a->>b=eq.y", &[2]),
        ("doc->a->>b=eq.x", &[1]),
        ("data->list->0=eq.30", &[2]),
        ("nums->0=eq.4", &[2]),
    ];
    for (q, expected) in cases {
        let r = s.get(&enc(&format!("/kinds?select=id&order=id&{q}")));
        assert_eq!(ids(&r), *expected, "{q}");
    }
}

#[test]
fn full_text_search_operators() {
    let s = server();
    let cases: &[(&str, &[i64])] = &[
        ("words=fts.fox", &[1, 3]),
        ("words=fts(english).jumping", &[3]),
        ("words=plfts.quick%20fox", &[1]),
        ("words=phfts(english).quick%20brown", &[1]),
        ("words=wfts.fox%20-quick", &[3]),
        ("words=not.fts.fox", &[2]),
        ("words=fts.fox%26quick", &[1]),
        ("name=fts.alpha", &[1]),
        ("name=fts(simple).beta", &[2]),
    ];
    for (q, expected) in cases {
        let r = s.get(&format!("/kinds?select=id&order=id&{q}"));
        assert_eq!(ids(&r), *expected, "{q}");
    }
}

#[test]
fn full_text_search_on_a_domain_over_a_tsvector_domain() {
    let r = server().get("/docs?select=id&body=fts(simple).domains");
    assert_json(&r, 200, json!([{"id": 1}]));
}

#[test]
fn logic_trees() {
    let s = server();
    let cases: &[(&str, &[i64])] = &[
        ("or=(id.eq.1,id.eq.3)", &[1, 3]),
        ("and=(id.gte.2,id.lte.3)", &[2, 3]),
        ("not.or=(id.eq.1,id.eq.3)", &[2, 4]),
        ("not.and=(id.gte.2,id.lte.3)", &[1, 4]),
        ("or=(id.eq.4,and(flag.is.true,amount.gt.10))", &[1, 4]),
        ("or=(id.eq.4,not.and(id.gte.2,id.lte.4))", &[1, 4]),
        (
            "or=(name.eq.\"Gamma, \\\"quoted\\\"\",id.in.(1,2))",
            &[1, 2, 3],
        ),
        ("or=(tags.cs.{blue},nums.cs.{6})", &[2, 4]),
        ("or=( id.eq.1 , id.eq.2 )", &[1, 2]),
        ("or=(id.eq.1,id.eq.2)&or=(id.eq.2,id.eq.3)", &[2]),
        ("or=(name.not.is.null,id.eq.4)&id=gt.2", &[3, 4]),
        ("or=(data->>n.eq.2,words.fts.jumping)", &[2, 3]),
    ];
    for (q, expected) in cases {
        let r = s.get(&enc(&format!("/kinds?select=id&order=id&{q}")));
        assert_eq!(ids(&r), *expected, "{q}");
    }
    let r = s.get("/kinds?or=()");
    assert_json(
        &r,
        400,
        json!({
            "code": "PGRST100",
            "details": "unexpected \")\" expecting field name (* or [a..z0..9_$]), negation operator (not) or logic operator (and, or)",
            "hint": null,
            "message": "\"failed to parse logic tree (())\" (line 1, column 4)"
        }),
    );
}

#[test]
fn ordering() {
    let s = server();
    let cases: &[(&str, &[i64])] = &[
        ("order=id.desc", &[4, 3, 2, 1]),
        ("order=amount", &[4, 1, 2, 3]),
        ("order=amount.desc", &[3, 2, 1, 4]),
        ("order=amount.desc.nullslast", &[2, 1, 4, 3]),
        ("order=amount.nullsfirst", &[3, 4, 1, 2]),
        ("order=flag.desc.nullslast,id.desc", &[4, 1, 2, 3]),
        ("order=data->>n.desc", &[4, 3, 2, 1]),
        ("order=nums->0.desc.nullslast,id", &[4, 2, 1, 3]),
    ];
    for (q, expected) in cases {
        let r = s.get(&enc(&format!("/kinds?select=id&{q}")));
        assert_eq!(ids(&r), *expected, "{q}");
    }
    let r = s.get("/kinds?order=id.asc.nullslasttt");
    assert_json(
        &r,
        400,
        json!({
            "code": "PGRST100",
            "details": "unexpected 't' expecting \",\" or end of input",
            "hint": null,
            "message": "\"failed to parse order (id.asc.nullslasttt)\" (line 1, column 17)"
        }),
    );
    assert_eq!(s.get("/kinds?order=id.ascc").status, 400);
}

#[test]
fn limit_offset_and_range_headers() {
    let s = server();
    let r = s.get("/numbers?limit=3&offset=2&order=n");
    assert_json(&r, 200, json!([{"n": 3}, {"n": 4}, {"n": 5}]));
    assert_eq!(r.header("content-range"), Some("2-4/*"));
    let r = s.get_with("/numbers?order=n", &[("Range", "5-6")]);
    assert_json(&r, 200, json!([{"n": 6}, {"n": 7}]));
    assert_eq!(r.header("content-range"), Some("5-6/*"));
    let r = s.get_with(
        "/numbers?order=n&limit=3",
        &[("Range", "0-1"), ("Range-Unit", "items")],
    );
    assert_eq!(r.header("content-range"), Some("0-1/*"));
    let r = s.get_with("/numbers?order=n", &[("Range", "28-")]);
    assert_json(&r, 200, json!([{"n": 29}, {"n": 30}]));
    let r = s.get("/numbers?limit=0");
    assert_json(&r, 200, json!([]));
    assert_eq!(r.header("content-range"), Some("*/*"));
    let r = s.get("/numbers?offset=-5&limit=1&order=n");
    assert_json(&r, 200, json!([{"n": 1}]));
    let r = s.get("/numbers?limit=-1");
    assert_json(
        &r,
        416,
        json!({"code": "PGRST103", "message": "Requested range not satisfiable",
               "details": "Limit should be greater than or equal to zero.", "hint": null}),
    );
    let r = s.get_with("/numbers", &[("Range", "1-0")]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.json()["details"],
        "The lower boundary must be lower than or equal to the upper boundary in the Range header."
    );
    assert_eq!(s.get("/numbers?limit=ten").status, 400);
    // The Range header only applies to GET.
    let r = s.request("HEAD", "/numbers", &[("Range", "0-1")]);
    assert_eq!(r.header("content-range"), Some("0-29/*"));
}

#[test]
fn counting() {
    let s = server();
    let r = s.get_with(
        "/numbers?n=lte.10&limit=3&order=n",
        &[("Prefer", "count=exact")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("0-2/10"));
    assert_eq!(r.header("preference-applied"), Some("count=exact"));
    let r = s.get_with("/numbers?n=lte.10", &[("Prefer", "count=exact")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-range"), Some("0-9/10"));
    let r = s.get_with("/numbers?n=gt.100", &[("Prefer", "count=exact")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-range"), Some("*/0"));
    let r = s.get_with("/numbers?offset=30", &[("Prefer", "count=exact")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("*/30"));
    let r = s.get_with("/numbers?offset=31", &[("Prefer", "count=exact")]);
    assert_json(
        &r,
        416,
        json!({"code": "PGRST103", "message": "Requested range not satisfiable",
               "details": "An offset of 31 was requested, but there are only 30 rows.", "hint": null}),
    );
    assert_eq!(r.header("content-range"), Some("*/30"));
    let r = s.get_with("/numbers?limit=2", &[("Prefer", "count=planned")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("0-1/30"));
    assert_eq!(r.header("preference-applied"), Some("count=planned"));
    let r = s.get_with("/numbers?limit=2", &[("Prefer", "count=estimated")]);
    assert_eq!(r.header("content-range"), Some("0-1/30"));
    assert_eq!(r.header("preference-applied"), Some("count=estimated"));
}

#[test]
fn max_rows_caps_results_and_estimated_counts_switch_to_the_planner() {
    let s = server_with(&[("PGRST_DB_MAX_ROWS", "5")]);
    let r = s.get("/numbers?order=n");
    assert_eq!(r.json().as_array().map(|a| a.len()), Some(5));
    assert_eq!(r.header("content-range"), Some("0-4/*"));
    let r = s.get("/numbers?order=n&limit=2&offset=10");
    assert_json(&r, 200, json!([{"n": 11}, {"n": 12}]));
    let r = s.get_with("/numbers?order=n", &[("Prefer", "count=exact")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("0-4/30"));
    // 30 rows > db-max-rows: the planner's estimate (30 after ANALYZE) is used.
    let r = s.get_with("/numbers?order=n", &[("Prefer", "count=estimated")]);
    assert_eq!(r.header("content-range"), Some("0-4/30"));
    let r = s.get_with("/numbers?n=lte.3", &[("Prefer", "count=estimated")]);
    assert_eq!(r.header("content-range"), Some("0-2/3"));
    let r = s.get("/numbers?limit=0");
    assert_eq!(r.header("content-range"), Some("*/*"));
}

#[test]
fn csv_output() {
    let s = server();
    let r = s.get_with(
        "/kinds?select=id,name,amount,tags&order=id",
        &[("Accept", "text/csv")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.body,
        "id,name,amount,tags\n1,alpha,10.50,\"{red,green}\"\n2,beta,20.00,{blue}\n3,\"Gamma, \"\"quoted\"\"\",,{}\n4,,5.25,{red}"
    );
    let r = s.get_with("/kinds?id=eq.99", &[("Accept", "text/csv")]);
    assert_eq!(r.body, "\n");
}

#[test]
fn singular_object() {
    let s = server();
    let r = s.get_with(
        "/kinds?select=id,name&id=eq.2",
        &[("Accept", "application/vnd.pgrst.object+json")],
    );
    assert_json(&r, 200, json!({"id": 2, "name": "beta"}));
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.pgrst.object+json; charset=utf-8")
    );
    let r = s.get_with(
        "/kinds?id=gt.1",
        &[("Accept", "application/vnd.pgrst.object")],
    );
    assert_json(
        &r,
        406,
        json!({"code": "PGRST116", "message": "Cannot coerce the result to a single JSON object",
               "details": "The result contains 3 rows", "hint": null}),
    );
    let r = s.get_with(
        "/kinds?id=eq.99",
        &[("Accept", "application/vnd.pgrst.object+json")],
    );
    assert_eq!(r.json()["details"], "The result contains 0 rows");
}

#[test]
fn accept_negotiation() {
    let s = server();
    let r = s.get_with(
        "/kinds?select=id&id=eq.1",
        &[("Accept", "text/unknown, */*")],
    );
    assert_json(&r, 200, json!([{"id": 1}]));
    let r = s.get_with(
        "/kinds?select=id&id=eq.1",
        &[("Accept", "application/json;q=0.5, text/csv")],
    );
    assert_eq!(r.body, "id\n1");
    let r = s.get_with(
        "/kinds?select=id&id=eq.1",
        &[(
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )],
    );
    assert_json(&r, 200, json!([{"id": 1}]));
    let r = s.get_with("/kinds", &[("Accept", "text/unknowntype")]);
    assert_json(
        &r,
        406,
        json!({"code": "PGRST107", "message": "None of these media types are available: text/unknowntype",
               "details": null, "hint": null}),
    );
    assert_eq!(r.header("proxy-status"), Some("PostgREST; error=PGRST107"));
}

#[test]
fn head_has_headers_but_no_body() {
    let r = server().request("HEAD", "/kinds?select=id", &[("Prefer", "count=exact")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
    assert_eq!(r.header("content-range"), Some("0-3/4"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

#[test]
fn routing_errors() {
    let s = server();
    let r = s.get("/faketable");
    assert_json(
        &r,
        404,
        json!({"code": "PGRST205", "details": null, "hint": null,
               "message": "Could not find the table 'test_api.faketable' in the schema cache"}),
    );
    assert_eq!(r.header("content-length"), Some("124"));
    let r = s.get("/kind");
    assert_eq!(
        r.json()["hint"],
        "Perhaps you meant the table 'test_api.kinds'"
    );
    let r = s.get("/kinds/1");
    assert_json(
        &r,
        404,
        json!({"code": "PGRST125", "details": null, "hint": null,
               "message": "Invalid path specified in request URL"}),
    );
    let r = s.request("TRACE", "/kinds", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["code"], "PGRST117");
    assert_eq!(r.json()["message"], "Unsupported HTTP method: TRACE");
    let r = s.get("/kinds?id=0");
    assert_json(
        &r,
        400,
        json!({"code": "PGRST100", "hint": null,
               "details": "unexpected \"0\" expecting \"not\" or operator (eq, gt, ...)",
               "message": "\"failed to parse filter (0)\" (line 1, column 1)"}),
    );
    let r = s.get("/kinds?nope=eq.1");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "42703");
    let r = s.get("/kinds?id=eq.abc");
    assert_json(
        &r,
        400,
        json!({"code": "22P02", "details": null, "hint": null,
               "message": "invalid input syntax for type integer: \"abc\""}),
    );
    let r = s.get("/kinds?id&a");
    assert_eq!(r.status, 200, "bare keys are ignored");
    let r = s.get("/kinds?select=id,directors(*)");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "PGRST200");
    let r = s.get("/kinds?actors.id=eq.1");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "PGRST108");
    let r = s.request("PATCH", "/rpc/f", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["code"], "PGRST101");
    let r = s.get_with("/kinds", &[("Accept-Profile", "nope")]);
    assert_eq!(r.status, 406);
    assert_eq!(r.json()["code"], "PGRST106");
}

#[test]
fn privileges_are_the_databases() {
    let r = server().get("/private_notes");
    assert_json(
        &r,
        401,
        json!({"code": "42501", "details": null, "hint": null,
               "message": "permission denied for table private_notes"}),
    );
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
}

#[test]
fn reads_run_read_only() {
    let r = server().get("/ticks");
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.json()["code"], "25006");
}

#[test]
fn request_settings_are_visible_to_sql() {
    let r = server().get_with(
        "/request_info",
        &[
            ("X-Probe", "probe value"),
            ("Cookie", "flavour=mint; other=1"),
        ],
    );
    assert_json(
        &r,
        200,
        json!([{
            "role": "test_anon", "method": "GET", "path": "/request_info",
            "probe": "probe value", "cookie": "mint", "claims": "{\"role\":\"test_anon\"}", "greeting": "hello",
            "search_path": "\"test_api\", \"public\"", "read_only": "on",
            "statement_timeout": "0"
        }]),
    );
}

#[test]
fn views_and_special_names() {
    let s = server();
    let r = s.get("/kinds_view?feeling=eq.happy");
    assert_json(
        &r,
        200,
        json!([{"id": 1, "name": "alpha", "feeling": "happy"}]),
    );
    let r = s.get(&enc("/Order Items?\"a.b\"=eq.dotted&select=id"));
    assert_json(&r, 200, json!([{"id": 1}]));
}

#[test]
fn root_lists_the_exposed_relations() {
    // The OpenAPI document (tests/openapi_api.rs checks it in depth): a path per relation
    // of the exposed schema, none from the extra search path.
    let r = server().get("/");
    assert_eq!(r.status, 200);
    let doc = r.json();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/kinds"), "{paths:?}");
    assert!(paths.contains_key("/kinds_view"));
    assert!(!paths.contains_key("/only_in_extra"));
}

#[test]
fn no_anonymous_role_answers_401() {
    let s = server_with(&[("PGRST_DB_ANON_ROLE", "")]);
    let r = s.get("/kinds");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "PGRST302");
}

#[test]
fn client_error_verbosity_minimal() {
    let s = server_with(&[("PGRST_CLIENT_ERROR_VERBOSITY", "minimal")]);
    let r = s.get("/faketable");
    assert_json(
        &r,
        404,
        json!({"code": "PGRST205", "message": "Could not find the table 'test_api.faketable' in the schema cache"}),
    );
}

#[test]
fn cors_preflight_and_allow_headers() {
    let s = server();
    let r = s.request(
        "OPTIONS",
        "/kinds",
        &[
            ("Origin", "http://a.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "X-Thing"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Authorization, X-Thing, Accept, Accept-Language, Content-Language")
    );
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    let r = s.get_with(
        "/kinds?select=id&id=eq.1",
        &[("Origin", "http://a.example")],
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-expose-headers")
        .is_some_and(|h| h.contains("Content-Range")));
    for (path, allow) in [
        ("/kinds", "OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE"),
        ("/request_info", "OPTIONS,GET,HEAD"),
        ("/rpc/log_visit", "OPTIONS,POST"),
        ("/rpc/add_them", "OPTIONS,GET,HEAD,POST"),
    ] {
        let r = s.request("OPTIONS", path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("allow"), Some(allow), "{path}");
    }
    let listed = server_with(&[("PGRST_SERVER_CORS_ALLOWED_ORIGINS", "http://ok.example")]);
    let r = listed.get_with(
        "/kinds?select=id&id=eq.1",
        &[("Origin", "http://ok.example")],
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://ok.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = listed.get_with(
        "/kinds?select=id&id=eq.1",
        &[("Origin", "http://other.example")],
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn raw_json_arrows_and_quotes_in_the_url_are_accepted() {
    use std::io::{Read, Write};
    let base = server().base;
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(
        b"GET /kinds?select=n:data->>n&or=(name.eq.\"beta\",id.eq.99) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("[{\"n\":\"2\"}]"), "{response}");
}

#[test]
fn server_timing_when_enabled() {
    let s = server_with(&[("PGRST_SERVER_TIMING_ENABLED", "true")]);
    let r = s.get("/kinds?select=id&id=eq.1");
    let timing = r.header("server-timing").expect("Server-Timing");
    for stage in ["jwt", "parse", "plan", "transaction", "response"] {
        assert!(timing.contains(&format!("{stage};dur=")), "{timing}");
    }
    assert_eq!(
        server()
            .get("/kinds?select=id&id=eq.1")
            .header("server-timing"),
        None
    );
}

#[test]
fn nulls_stripped_media_types() {
    let s = server();
    let r = s.get_with(
        "/kinds?select=id,name,flag&id=in.(3,4)&order=id",
        &[("Accept", "application/vnd.pgrst.array+json;nulls=stripped")],
    );
    assert_json(
        &r,
        200,
        json!([{"id": 3, "name": "Gamma, \"quoted\""}, {"id": 4, "flag": true}]),
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.pgrst.array+json;nulls=stripped; charset=utf-8")
    );
    let r = s.get_with(
        "/kinds?select=id,name&id=eq.4",
        &[("Accept", "application/vnd.pgrst.object+json;nulls=stripped")],
    );
    assert_json(&r, 200, json!({"id": 4}));
}

#[test]
fn execution_plans_when_enabled() {
    let s = server_with(&[("PGRST_DB_PLAN_ENABLED", "true")]);
    let r = s.get_with(
        "/kinds?id=eq.1",
        &[(
            "Accept",
            "application/vnd.pgrst.plan+json; options=analyze|verbose",
        )],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.pgrst.plan+json; for=\"application/json\"; options=analyze|verbose; charset=utf-8")
    );
    let plan = r.json();
    assert!(plan[0]["Plan"]["Total Cost"].as_f64().is_some(), "{plan}");
    assert!(plan[0]["Plan"]["Actual Rows"].as_f64().is_some(), "{plan}");
    let r = s.get_with(
        "/kinds",
        &[(
            "Accept",
            "application/vnd.pgrst.plan+text; for=\"text/csv\"",
        )],
    );
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("Aggregate"), "{}", r.body);
    let r = server().get_with("/kinds", &[("Accept", "application/vnd.pgrst.plan+json")]);
    assert_eq!(r.status, 406);
    assert_eq!(r.json()["code"], "PGRST107");
}

#[test]
fn execution_plan_options_reach_explain() {
    let s = server_with(&[("PGRST_DB_PLAN_ENABLED", "true")]);
    let plan = |options: &str| {
        let accept = format!("application/vnd.pgrst.plan+json; options={options}");
        let r = s.get_with("/kinds", &[("Accept", &accept)]);
        assert_eq!(r.status, 200, "{options}: {}", r.body);
        r.json()[0].clone()
    };
    // settings: the request's search_path is among the settings shown.
    let p = plan("settings");
    assert!(p["Settings"]["search_path"].is_string(), "{p}");
    // buffers and wal (with analyze) add their counters.
    let p = plan("analyze|buffers|wal");
    assert!(p["Plan"]["Shared Hit Blocks"].is_number(), "{p}");
    assert_eq!(p["Plan"]["WAL Records"], 0, "{p}");
    assert!(p["Execution Time"].is_number(), "{p}");
    // verbose: the output columns.
    let p = plan("verbose");
    assert!(p["Plan"]["Output"].is_array(), "{p}");
    // An option EXPLAIN does not have is not a plan we can give.
    let r = s.get_with(
        "/kinds",
        &[("Accept", "application/vnd.pgrst.plan+json; options=costly")],
    );
    assert_eq!(r.status, 406, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST107");
}

#[test]
fn extreme_paging_values_do_not_break_the_server() {
    let s = server();
    let max = i64::MAX;
    let r = s.get(&format!("/numbers?offset={max}&limit={max}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_json(&r, 200, json!([]));
    let r = s.get_with("/numbers", &[("Range", &format!("{max}-{max}"))]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.get("/numbers?limit=99999999999999999999");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "PGRST100");
}

#[test]
fn data_representations_format_and_parse_domain_values() {
    let s = server();
    assert_json(
        &s.get("/prices?order=id"),
        200,
        json!([{"id": 1, "amount": "12.34"}, {"id": 2, "amount": "0.50"}]),
    );
    assert_json(
        &s.get("/prices?select=id,amount&amount=eq.0.50"),
        200,
        json!([{"id": 2, "amount": "0.50"}]),
    );
    assert_json(
        &s.get("/prices?select=id&amount=in.(12.34,99)"),
        200,
        json!([{"id": 1}]),
    );
    let r = s.send(
        "POST",
        "/prices",
        &[
            ("Content-Type", "application/json"),
            ("Prefer", "return=representation"),
        ],
        Some(r#"{"id":3,"amount":"7.25"}"#),
    );
    assert_json(&r, 201, json!([{"id": 3, "amount": "7.25"}]));
    assert_eq!(
        common::sql_rows("SELECT amount FROM test_api.prices WHERE id = 3"),
        json!([{"amount": 725}])
    );
}

#[test]
fn trace_header_is_echoed_on_every_response() {
    let s = server_with(&[("PGRST_SERVER_TRACE_HEADER", "X-Request-Id")]);
    let r = s.get_with("/kinds?select=id&id=eq.1", &[("X-Request-Id", "abc-1")]);
    assert_eq!(r.header("x-request-id"), Some("abc-1"));
    let r = s.get_with("/nope", &[("X-Request-Id", "abc-2")]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-request-id"), Some("abc-2"));
}
