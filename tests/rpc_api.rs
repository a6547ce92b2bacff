//! Functions as endpoints: arguments, results, transactions and errors.

mod common;

use common::{assert_json, server, server_with, sql_exec, sql_rows};
use serde_json::json;

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn named_arguments_by_post_get_and_form() {
    let s = server();
    let r = s.send("POST", "/rpc/add_them", &[JSON], Some(r#"{"a":1,"b":2}"#));
    assert_json(&r, 200, json!(3));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_json(&s.get("/rpc/add_them?a=1&b=2"), 200, json!(3));
    let r = s.send(
        "POST",
        "/rpc/add_them",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("a=40&b=2"),
    );
    assert_json(&r, 200, json!(42));
    assert_json(&s.get("/rpc/greet"), 200, json!("Hello, you"));
    assert_json(&s.get("/rpc/greet?name=Ann"), 200, json!("Hello, Ann"));
    // Values that could start a filter but do not parse as one are arguments too.
    assert_json(&s.get("/rpc/greet?name=ann"), 200, json!("Hello, ann"));
    assert_json(
        &s.get("/rpc/greet?name=not.eq"),
        200,
        json!("Hello, not.eq"),
    );
    assert_json(&s.get("/rpc/greet?name=4.5"), 200, json!("Hello, 4.5"));
    let r = s.send("POST", "/rpc/greet", &[JSON], Some(""));
    assert_json(&r, 200, json!("Hello, you"));
}

#[test]
fn set_and_table_results_take_the_read_grammar() {
    let s = server();
    assert_json(&s.get("/rpc/numbers_up_to?n=3"), 200, json!([1, 2, 3]));
    let path =
        "/rpc/films_since?y=2005&select=title,directors!director_id(name)&order=year.desc&limit=2";
    let r = s.get(path);
    assert_json(
        &r,
        200,
        json!([
            {"title": "Delta", "directors": null},
            {"title": "Gamma", "directors": {"name": "Ben"}}
        ]),
    );
    assert_eq!(r.header("content-range"), Some("0-1/*"));
    let r = s.get_with(path, &[("Prefer", "count=exact")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("0-1/3"));
    assert_json(
        &s.get("/rpc/films_since?y=2000&title=eq.Beta&select=id"),
        200,
        json!([{"id": 2}]),
    );
    let r = s.send(
        "POST",
        "/rpc/films_since?select=title&order=id",
        &[JSON],
        Some(r#"{"y":2010}"#),
    );
    assert_json(&r, 200, json!([{"title": "Gamma"}, {"title": "Delta"}]));
    assert_json(
        &s.get("/rpc/film_summary?fid=1"),
        200,
        json!({"title": "Alpha", "age": 26}),
    );
}

#[test]
fn void_is_204_and_raw_bodies_reach_unnamed_parameters() {
    let s = server();
    let r = s.send("POST", "/rpc/do_nothing", &[JSON], Some("{}"));
    assert_eq!(r.status, 204);
    assert_eq!(r.body, "");
    assert_eq!(r.header("content-type"), None);
    let r = s.send("POST", "/rpc/echo_json", &[JSON], Some(r#"{"x":[1,2]}"#));
    assert_json(&r, 200, json!({"x": [1, 2]}));
    let r = s.send(
        "POST",
        "/rpc/shout",
        &[("Content-Type", "text/plain")],
        Some("hi there"),
    );
    assert_json(&r, 200, json!("HI THERE"));
    let r = s.send(
        "POST",
        "/rpc/byte_count",
        &[("Content-Type", "application/octet-stream")],
        Some("abc"),
    );
    assert_json(&r, 200, json!(3));
}

#[test]
fn variadic_arguments() {
    let s = server();
    let r = s.send("POST", "/rpc/total", &[JSON], Some(r#"{"nums":[1,2,3]}"#));
    assert_json(&r, 200, json!(6));
    assert_json(&s.get("/rpc/total?nums=1&nums=2"), 200, json!(3));
    assert_json(&s.get("/rpc/total?nums=5"), 200, json!(5));
    // A form repeats the key too; a value the type refuses is the client's error.
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let r = s.send("POST", "/rpc/total", &[form], Some("nums=4&nums=5"));
    assert_json(&r, 200, json!(9));
    let r = s.send("POST", "/rpc/total", &[form], Some("nums=4&nums=x"));
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("22P02")));
}

#[test]
fn query_string_arguments_bind_as_typed_parameters() {
    let s = server();
    // Variadic elements keep quotes, backslashes, commas and braces.
    let r = s.get("/rpc/join_words?words=a%22b&words=c%5Cd&words=e%2Cf&words=%7B%7D");
    assert_json(&r, 200, json!(r#"a"b|c\d|e,f|{}"#));
    // A character parameter takes the whole value; a repeated one keeps the last.
    let r = s.get("/rpc/padded?c=abc&n=1&n=2.5");
    assert_json(&r, 200, json!("[abc]2.5"));
    let r = s.get("/rpc/padded?c=x");
    assert_json(&r, 200, json!("[x]1"));
    // A value the type refuses is the client's error, for plain and variadic ones.
    for path in ["/rpc/padded?c=x&n=many", "/rpc/total?nums=1&nums=x"] {
        let r = s.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.json()["code"], "22P02", "{path}");
    }
    // Values stay data: nothing they hold reaches the SQL text.
    let r = s.get("/rpc/join_words?words=%27);%20DROP%20TABLE%20canary;--");
    assert_json(&r, 200, json!("'); DROP TABLE canary;--"));
    assert_json(&s.get("/canary"), 200, json!([{"id": 1}]));
}

#[test]
fn overloads_are_chosen_by_argument_names() {
    let s = server();
    assert_json(&s.get("/rpc/pick?a=1"), 200, json!("int"));
    assert_json(&s.get("/rpc/pick?b=x"), 200, json!("text"));
    assert_json(
        &s.get("/rpc/same?x=1"),
        300,
        json!({
            "code": "PGRST203", "details": null,
            "hint": "Try renaming the parameters or the function itself in the database so function overloading can be resolved",
            "message": "Could not choose the best candidate function between: test_api.same(x => integer), test_api.same(x => text)"
        }),
    );
    assert_json(
        &s.get("/rpc/add_them?a=1&c=2"),
        404,
        json!({
            "code": "PGRST202",
            "details": "Searched for the function test_api.add_them with parameters a, c, but no matches were found in the schema cache.",
            "hint": "Perhaps you meant to call the function test_api.add_them(a, b)",
            "message": "Could not find the function test_api.add_them(a, c) in the schema cache"
        }),
    );
    let r = s.get("/rpc/no_such_function");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "PGRST202");
    // Hints: the overload whose parameter list is closest, none when nothing is close,
    // and the closest other name when the function takes no named parameters.
    let hint = |path: &str| s.get(path).json()["hint"].clone();
    assert_eq!(
        hint("/rpc/pick?aa=1"),
        json!("Perhaps you meant to call the function test_api.pick(a)")
    );
    assert_eq!(hint("/rpc/add_them?completely=1&unrelated=2"), json!(null));
    assert_eq!(
        hint("/rpc/shout?text=x"),
        json!("Perhaps you meant to call the function test_api.shoot")
    );
}

#[test]
fn volatile_functions_write_only_through_post() {
    let s = server();
    let r = s.get("/rpc/log_visit?who=getter");
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.json()["code"], "25006");
    let r = s.send(
        "POST",
        "/rpc/log_visit",
        &[JSON],
        Some(r#"{"who":"poster"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        sql_rows("SELECT who FROM test_api.rpc_visits"),
        json!([{"who": "poster"}])
    );
}

#[test]
fn functions_set_status_and_headers_and_raise_errors() {
    let s = server();
    let r = s.get("/rpc/teapot");
    assert_json(&r, 418, json!("short and stout"));
    assert_eq!(r.header("x-brew"), Some("earl grey"));
    assert_json(
        &s.get("/rpc/pay_up"),
        402,
        json!({"code": "PT402", "message": "Payment Required", "details": "Pay first", "hint": null}),
    );
    let r = s.get("/rpc/custom_error");
    assert_json(
        &r,
        409,
        json!({"code": "X1", "message": "Custom", "details": "d", "hint": "h"}),
    );
    assert_eq!(r.header("x-why"), Some("because"));
    assert_json(
        &s.get("/rpc/plain_error"),
        400,
        json!({"code": "P0001", "message": "boom", "details": "dd", "hint": "hh"}),
    );
    let r = s.get("/rpc/secret_fn");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "42501");
    let r = s.request("DELETE", "/rpc/add_them", &[]);
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["message"], "Cannot use the DELETE method on RPC");
}

#[test]
fn raw_bodies_without_a_matching_unnamed_parameter() {
    let r = server().send(
        "POST",
        "/rpc/add_them",
        &[("Content-Type", "text/plain")],
        Some("some text"),
    );
    assert_json(
        &r,
        404,
        json!({
            "code": "PGRST202", "hint": null,
            "message": "Could not find the function test_api.add_them in the schema cache",
            "details": "Searched for the function test_api.add_them with a single unnamed text parameter, but no matches were found in the schema cache."
        }),
    );
}

#[test]
fn functions_returning_media_type_domains_answer_raw() {
    let s = server();
    let r = s.get_with("/rpc/motd", &[("Accept", "text/plain")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "Have a nice day");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = s.get("/rpc/motd");
    assert_eq!(r.body, "Have a nice day", "no Accept means any");
    // JSON stays available; another media type is not.
    let r = s.get_with("/rpc/motd", &[("Accept", "application/json")]);
    assert_json(&r, 200, json!("Have a nice day"));
    let r = s.get_with("/rpc/motd", &[("Accept", "text/xml")]);
    assert_eq!(r.status, 406);
    assert_eq!(r.json()["code"], "PGRST107");
    let r = s.get_with("/rpc/blob", &[("Accept", "image/anything")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let resp = ureq::get(&format!("{}/rpc/blob", s.base)).call().unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut bytes).unwrap();
    assert_eq!(bytes, vec![0x00, 0xff, 0x10]);
    // jsonb goes out as PostgreSQL's binary form, version byte first (as PostgREST sends
    // it); a type that is not text-like goes out as its text output.
    let r = s.get_with("/rpc/doc", &[("Accept", "application/vnd.test.doc")]);
    assert_eq!((r.status, r.body.as_str()), (200, "\u{1}{\"a\": 1}"));
    let r = s.get_with("/rpc/answer", &[("Accept", "application/vnd.test.count")]);
    assert_eq!((r.status, r.body.as_str()), (200, "42"));
}

#[test]
fn the_plan_of_a_call_answering_a_custom_media_type() {
    let s = server_with(&[("PGRST_DB_PLAN_ENABLED", "true")]);
    let accept = "application/vnd.pgrst.plan+json; for=\"text/plain\"; options=verbose";
    let r = s.get_with("/rpc/motd", &[("Accept", accept)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.pgrst.plan+json; for=\"text/plain\"; options=verbose; charset=utf-8")
    );
    // The value itself is the body: nothing aggregates it into JSON.
    let output = r.json()[0]["Plan"]["Output"].to_string();
    assert!(!output.contains("json_agg"), "{output}");
    // A type the function does not return has no plan either.
    let accept = "application/vnd.pgrst.plan+json; for=\"text/xml\"";
    let r = s.get_with("/rpc/motd", &[("Accept", accept)]);
    assert_eq!(r.status, 406, "{}", r.body);
}

#[test]
fn function_settings_for_isolation_and_timeouts_cover_the_transaction() {
    let s = server();
    // The function's own SET only applies inside it; pgrest hoists it so the
    // whole transaction starts serializable.
    assert_json(&s.get("/rpc/strict_isolation"), 200, json!("serializable"));
    // A hoisted statement_timeout cancels the call instead of sleeping 3 s.
    let started = std::time::Instant::now();
    let r = s.send("POST", "/rpc/impatient_sleep", &[JSON], Some("{}"));
    assert_eq!(r.json()["code"], "57014", "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // The cancelled transaction left nothing behind on the connection.
    assert_json(&s.get("/rpc/add_them?a=1&b=1"), 200, json!(2));
}

#[test]
fn db_prepared_statements_off_leaves_nothing_prepared() {
    sql_exec(
        "CREATE OR REPLACE FUNCTION test_api.prepared_here() RETURNS bigint STABLE \
         LANGUAGE sql AS $$ SELECT count(*) FROM pg_catalog.pg_prepared_statements $$; \
         GRANT EXECUTE ON FUNCTION test_api.prepared_here() TO test_anon;",
    );
    // One pool connection, so every call sees the same session.
    let count = |prepared: &str| {
        let s = server_with(&[
            ("PGRST_DB_POOL", "1"),
            ("PGRST_DB_PREPARED_STATEMENTS", prepared),
        ]);
        let mut last = serde_json::Value::Null;
        for _ in 0..3 {
            let r = s.get("/rpc/prepared_here");
            assert_eq!(r.status, 200, "{}", r.body);
            last = r.json();
        }
        last.as_i64().expect("a count")
    };
    assert_eq!(count("false"), 0);
    assert!(count("true") > 0);
}
