//! Templates (http::templates): a read, insert or call whose shape was seen before binds its
//! own values into the statement learnt for that shape (learnt at its second request,
//! used from its third). Each test sends at least three requests of a shape with
//! different values, so a value kept from an earlier request, a constant taken for a
//! value or a stale template after a reload shows up as a wrong answer.

mod common;

use std::sync::Once;

use common::{assert_json, hs256, ids, server_with, sql_exec, wait_for, Server, JWT_SECRET};
use serde_json::json;

fn fixtures() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        sql_exec(
            "CREATE TABLE test_api.tpl_items (id integer PRIMARY KEY, name text, n integer);
             INSERT INTO test_api.tpl_items
               SELECT i, 'item ' || i, i % 7 FROM generate_series(1, 20) i;
             INSERT INTO test_api.tpl_items VALUES (21, 'a b', 0), (22, 'a+b', 0);
             GRANT SELECT ON test_api.tpl_items TO test_anon;
             CREATE TABLE test_api.tpl_children (
               id integer PRIMARY KEY,
               item_id integer REFERENCES test_api.tpl_items);
             INSERT INTO test_api.tpl_children SELECT i, (i % 5) + 1 FROM generate_series(1, 30) i;
             GRANT SELECT ON test_api.tpl_children TO test_anon;
             CREATE TABLE test_api.tpl_posts (
               id integer PRIMARY KEY, title text NOT NULL DEFAULT 'untitled',
               score integer CHECK (score >= 0));
             GRANT ALL ON test_api.tpl_posts TO test_anon;
             CREATE TABLE test_api.tpl_reload (id integer PRIMARY KEY, a text);
             INSERT INTO test_api.tpl_reload VALUES (1, 'one'), (2, 'two');
             GRANT SELECT ON test_api.tpl_reload TO test_anon;
             CREATE TABLE test_api.tpl_reload_kids (
               id integer PRIMARY KEY,
               parent integer CONSTRAINT tpl_kid_parent REFERENCES test_api.tpl_reload);
             INSERT INTO test_api.tpl_reload_kids VALUES (10, 1), (20, 2);
             GRANT SELECT ON test_api.tpl_reload_kids TO test_anon;
             NOTIFY pgrst, 'reload schema';",
        );
    });
}

/// A server on one connection, which has seen the fixtures.
fn server() -> Server {
    fixtures();
    let s = server_with(&[("PGRST_DB_POOL", "1"), ("PGRST_JWT_SECRET", JWT_SECRET)]);
    wait_for("the fixtures", || {
        s.get("/tpl_reload?id=eq.1").status == 200
    });
    s
}

#[test]
fn reads_of_one_shape_bind_their_own_values() {
    let s = server();
    for id in [3, 7, 3, 12, 20] {
        let r = s.get(&format!("/tpl_items?id=eq.{id}&select=id,name"));
        assert_json(&r, 200, json!([{"id": id, "name": format!("item {id}")}]));
    }
    for (lo, hi) in [(2, 5), (10, 14), (2, 5)] {
        let r = s.get(&format!(
            "/tpl_items?id=gt.{lo}&id=lt.{hi}&select=id&order=id"
        ));
        assert_eq!(ids(&r), ((lo + 1)..hi).collect::<Vec<i64>>(), "{lo}..{hi}");
    }
    for id in [1, 19, 5, 20] {
        let r = s.get(&format!("/tpl_items?id=not.lte.{id}&select=id&order=id"));
        assert_eq!(ids(&r), ((id + 1)..=22).collect::<Vec<i64>>());
    }
}

#[test]
fn a_known_shape_answers_no_rows_bad_values_and_missing_grants_as_planning_would() {
    let s = server();
    for id in [2, 3, 4] {
        assert_eq!(
            ids(&s.get(&format!("/tpl_items?id=eq.{id}&select=id"))),
            vec![id]
        );
    }
    // No row: an empty page.
    let r = s.get("/tpl_items?id=eq.999&select=id");
    assert_json(&r, 200, json!([]));
    assert_eq!(r.header("Content-Range"), Some("*/*"));
    // A value the column's type refuses.
    let r = s.get("/tpl_items?id=eq.two&select=id");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "22P02");
    // The shape was learnt as the anonymous role; a role without SELECT is refused.
    let token = hs256(json!({"role": "test_user"}));
    let bearer = format!("Bearer {token}");
    let r = s.get_with(
        "/tpl_items?id=eq.5&select=id",
        &[("Authorization", &bearer)],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["code"], "42501");
    assert_eq!(ids(&s.get("/tpl_items?id=eq.5&select=id")), vec![5]);
}

#[test]
fn a_constant_equal_to_a_value_stays_a_constant() {
    let s = server();
    let r = s.get("/tpl_items?id=gte.10&limit=3&order=id&select=id");
    assert_eq!(ids(&r), vec![10, 11, 12]);
    // Learnt here: the limit 3 and the value 3 are both "3" in its parameters.
    let r = s.get("/tpl_items?id=gte.3&limit=3&order=id&select=id");
    assert_eq!(ids(&r), vec![3, 4, 5]);
    let r = s.get("/tpl_items?id=gte.10&limit=3&order=id&select=id");
    assert_eq!(ids(&r), vec![10, 11, 12]);
    let r = s.get("/tpl_items?id=gte.10&limit=2&order=id&select=id");
    assert_eq!(ids(&r), vec![10, 11]);
    let r = s.get("/tpl_items?id=gte.2&limit=3&order=id&select=id");
    assert_eq!(ids(&r), vec![2, 3, 4]);
}

#[test]
fn values_used_twice_and_counts_follow_each_request() {
    let s = server();
    for (id, total) in [(5, 5), (8, 8), (5, 5)] {
        let r = s.get_with(
            &format!("/tpl_items?id=lte.{id}&select=id&limit=2&order=id"),
            &[("Prefer", "count=exact")],
        );
        assert_eq!(
            r.status,
            206,
            "{id}: {} {:?}",
            r.body,
            r.header("Content-Range")
        );
        assert_eq!(r.header("Content-Range"), Some(&*format!("0-1/{total}")));
        assert_eq!(r.json(), json!([{"id": 1}, {"id": 2}]));
    }
}

#[test]
fn encoded_values_are_decoded_per_request() {
    let s = server();
    let r = s.get("/tpl_items?name=eq.a%20b&select=id");
    assert_eq!(ids(&r), vec![21]);
    let r = s.get("/tpl_items?name=eq.a+b&select=id");
    assert_eq!(ids(&r), vec![21], "+ is a space in a query string");
    let r = s.get("/tpl_items?name=eq.a%2Bb&select=id");
    assert_eq!(ids(&r), vec![22]);
    let r = s.get("/tpl_items?name=eq.item%207&select=id");
    assert_eq!(ids(&r), vec![7]);
}

#[test]
fn filters_outside_templates_still_answer_per_value() {
    let s = server();
    let r = s.get("/tpl_items?name=like.item%201*&select=id&order=id");
    assert_eq!(ids(&r), vec![1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    let r = s.get("/tpl_items?name=like.item%202*&select=id&order=id");
    assert_eq!(ids(&r), vec![2, 20]);
    let r = s.get("/tpl_items?id=in.(4,9)&select=id&order=id");
    assert_eq!(ids(&r), vec![4, 9]);
    let r = s.get("/tpl_items?id=in.(5)&select=id&order=id");
    assert_eq!(ids(&r), vec![5]);
}

#[test]
fn embeds_and_headers_follow_each_request() {
    let s = server();
    for (item, above) in [(2, 10), (3, 20), (2, 25)] {
        let r = s.get(&format!(
            "/tpl_items?select=id,tpl_children(id)&id=eq.{item}&tpl_children.id=gt.{above}&tpl_children.order=id"
        ));
        let children: Vec<i64> = (1..=30)
            .filter(|c| c % 5 + 1 == item && *c > above)
            .collect();
        let children: Vec<_> = children.iter().map(|c| json!({"id": c})).collect();
        assert_json(&r, 200, json!([{"id": item, "tpl_children": children}]));
    }
    let object = [("Accept", "application/vnd.pgrst.object+json")];
    for id in [4, 5, 6] {
        let r = s.get_with(&format!("/tpl_items?id=eq.{id}&select=id"), &object);
        assert_json(&r, 200, json!({"id": id}));
    }
    let r = s.get_with("/tpl_items?id=eq.99&select=id", &object);
    assert_eq!(r.status, 406, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST116");
    for (gt, range, expected) in [(4, "0-1", [5, 6]), (4, "1-2", [6, 7]), (9, "1-2", [11, 12])] {
        let path = format!("/tpl_items?id=gt.{gt}&select=id&order=id");
        let r = s.get_with(&path, &[("Range", range)]);
        assert_eq!(ids(&r), expected.to_vec(), "{gt} {range}");
        assert_eq!(r.header("Content-Range"), Some(&*format!("{range}/*")));
    }
    for id in [6, 7, 8] {
        let head = s.request("HEAD", &format!("/tpl_items?id=eq.{id}&select=id"), &[]);
        assert_eq!(head.status, 200);
        assert_eq!(head.body, "");
    }
    for id in [6, 7, 8] {
        let r = s.get(&format!("/tpl_items?id=eq.{id}&select=id"));
        assert_json(&r, 200, json!([{"id": id}]));
    }
}

#[test]
fn a_template_does_not_outlive_a_schema_reload() {
    let s = server();
    for _ in 0..3 {
        let r = s.get("/tpl_reload?select=a&id=eq.1");
        assert_json(&r, 200, json!([{"a": "one"}]));
    }
    sql_exec(
        "ALTER TABLE test_api.tpl_reload RENAME COLUMN a TO b;
         NOTIFY pgrst, 'reload schema';",
    );
    wait_for("the renamed column", || {
        s.get("/tpl_reload?select=b&id=eq.1").status == 200
    });
    let r = s.get("/tpl_reload?select=a&id=eq.2");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "42703");
    let r = s.get("/tpl_reload?select=b&id=eq.2");
    assert_json(&r, 200, json!([{"b": "two"}]));
    // A relationship that went away: a kept template would still join.
    let embed = |id: i64| {
        s.get(&format!(
            "/tpl_reload?select=id,tpl_reload_kids(id)&id=eq.{id}"
        ))
    };
    for id in [1, 2, 1] {
        let r = embed(id);
        assert_json(
            &r,
            200,
            json!([{"id": id, "tpl_reload_kids": [{"id": id * 10}]}]),
        );
    }
    sql_exec(
        "ALTER TABLE test_api.tpl_reload_kids DROP CONSTRAINT tpl_kid_parent;
         NOTIFY pgrst, 'reload schema';",
    );
    wait_for("the relationship to go", || embed(2).status == 400);
    let r = embed(1);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST200");
}

#[test]
fn a_known_shape_still_refuses_what_parsing_refuses() {
    let s = server();
    for id in [3, 4, 5] {
        let r = s.get(&format!("/tpl_items?name=eq.item%20{id}&select=id"));
        assert_eq!(ids(&r), vec![id]);
    }
    let nul = s.get("/tpl_items?name=eq.item%003&select=id");
    assert_eq!(nul.status, 400, "{}", nul.body);
    assert_eq!(nul.json()["code"], "PGRST100");
    // The same refusal as a request of a shape never seen before.
    let fresh = s.get("/tpl_items?name=eq.item%003&select=id,n");
    assert_eq!(fresh.status, 400, "{}", fresh.body);
    assert_eq!(nul.json()["message"], fresh.json()["message"]);
    let profiled = [("Accept-Profile", "test_api")];
    for id in [8, 9, 10] {
        let r = s.get_with(&format!("/tpl_items?id=eq.{id}&select=id"), &profiled);
        assert_eq!(ids(&r), vec![id]);
    }
    let r = s.get_with(
        "/tpl_items?id=eq.8&select=id",
        &[("Accept-Profile", "nope")],
    );
    assert_eq!(r.status, 406, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST106");
}

#[test]
fn a_known_shape_answers_its_own_content_location() {
    let s = server();
    for id in [5, 9, 13, 17] {
        let r = s.get(&format!("/tpl_items?select=id&id=eq.{id}"));
        assert_json(&r, 200, json!([{"id": id}]));
        let location = format!("/tpl_items?id=eq.{id}&select=id");
        assert_eq!(r.header("Content-Location"), Some(&*location));
    }
    for (name, encoded) in [("a b", "a+b"), ("item 1", "item+1"), ("x/é", "x%2F%C3%A9")] {
        let query: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        let r = s.get(&format!("/tpl_items?select=id&name=eq.{query}"));
        assert_eq!(r.status, 200, "{}", r.body);
        let location = format!("/tpl_items?name=eq.{encoded}&select=id");
        assert_eq!(r.header("Content-Location"), Some(&*location));
    }
    // A repeated key: the canonical order follows the values.
    let r = s.get("/tpl_items?id=gt.1&id=gt.3&select=id");
    let location = "/tpl_items?id=gt.1&id=gt.3&select=id";
    assert_eq!(r.header("Content-Location"), Some(location));
    let r = s.get("/tpl_items?id=gt.5&id=gt.2&select=id");
    let location = "/tpl_items?id=gt.2&id=gt.5&select=id";
    assert_eq!(r.header("Content-Location"), Some(location));
    let r = s.get("/tpl_items?id=gt.9&id=gt.4&select=id");
    let location = "/tpl_items?id=gt.4&id=gt.9&select=id";
    assert_eq!(r.header("Content-Location"), Some(location));
    assert_eq!(ids(&r), (10..=22).collect::<Vec<i64>>());
}

fn post(s: &Server, path: &str, prefer: &str, body: &str) -> common::Reply {
    s.send(
        "POST",
        path,
        &[("Prefer", prefer), ("Content-Type", "application/json")],
        Some(body),
    )
}

#[test]
fn inserts_of_one_shape_write_their_own_payloads() {
    let s = server();
    let rep = "return=representation";
    for (id, title) in [(101, "a"), (102, "b \"quoted\""), (103, "c")] {
        let body = json!({"id": id, "title": title, "score": id - 100}).to_string();
        let r = post(&s, "/tpl_posts", rep, &body);
        assert_json(
            &r,
            201,
            json!([{"id": id, "title": title, "score": id - 100}]),
        );
    }
    // The same keys in another order, and as an array of two.
    let r = post(
        &s,
        "/tpl_posts",
        rep,
        r#"{"score": 4, "title": "d", "id": 104}"#,
    );
    assert_json(&r, 201, json!([{"id": 104, "title": "d", "score": 4}]));
    let r = post(
        &s,
        "/tpl_posts",
        rep,
        r#"[{"id": 105, "title": "e", "score": 5}, {"id": 106, "title": "f", "score": 6}]"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let written: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(written, vec![json!(105), json!(106)]);
    // Other keys are another shape: the missing column takes its default.
    let r = post(&s, "/tpl_posts", rep, r#"{"id": 107}"#);
    assert_json(
        &r,
        201,
        json!([{"id": 107, "title": "untitled", "score": null}]),
    );
    for id in [108, 113] {
        let r = post(&s, "/tpl_posts", rep, &json!({"id": id}).to_string());
        assert_json(
            &r,
            201,
            json!([{"id": id, "title": "untitled", "score": null}]),
        );
    }
    let r = post(
        &s,
        "/tpl_posts?select=id",
        rep,
        r#"{"id": 109, "title": "g"}"#,
    );
    assert_json(&r, 201, json!([{"id": 109}]));
    // Without a representation, and with its Location.
    for (id, title) in [(110, "h"), (114, "k"), (115, "l")] {
        let body = json!({"id": id, "title": title}).to_string();
        let r = post(&s, "/tpl_posts", "return=minimal", &body);
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body, "");
    }
    for (id, title) in [(111, "i"), (112, "j"), (116, "m")] {
        let body = json!({"id": id, "title": title}).to_string();
        let r = post(&s, "/tpl_posts", "return=headers-only", &body);
        assert_eq!(
            r.header("Location"),
            Some(&*format!("/tpl_posts?id=eq.{id}"))
        );
    }
    let rows = common::sql_rows(
        "SELECT id, title FROM test_api.tpl_posts WHERE id BETWEEN 101 AND 116 ORDER BY id",
    );
    let titles = [
        "a",
        "b \"quoted\"",
        "c",
        "d",
        "e",
        "f",
        "untitled",
        "untitled",
        "g",
        "h",
        "i",
        "j",
        "untitled",
        "k",
        "l",
        "m",
    ];
    let expected: Vec<_> = (101..=116)
        .zip(titles)
        .map(|(id, title)| json!({"id": id, "title": title}))
        .collect();
    assert_eq!(rows, json!(expected));
}

#[test]
fn an_insert_of_a_known_shape_still_fails_as_it_should() {
    let s = server();
    let rep = "return=representation";
    let r = post(&s, "/tpl_posts", rep, r#"{"id": 201, "score": 1}"#);
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(&s, "/tpl_posts", rep, r#"{"id": 201, "score": 2}"#);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["code"], "23505");
    let r = post(&s, "/tpl_posts", rep, r#"{"id": 202, "score": -1}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "23514");
    let r = post(&s, "/tpl_posts", rep, r#"{"id": 203, "score": "#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST102");
    let r = post(
        &s,
        "/tpl_posts",
        rep,
        r#"[{"id": 204, "score": 1}, {"id": 205}]"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(&s, "/tpl_posts", rep, r#"{"id": 206, "nope": 1}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST204");
    let r = post(&s, "/tpl_posts", rep, r#"{"id": 207, "score": 3}"#);
    assert_json(
        &r,
        201,
        json!([{"id": 207, "title": "untitled", "score": 3}]),
    );
    let n = common::sql_rows(
        "SELECT count(*) AS n FROM test_api.tpl_posts WHERE id BETWEEN 202 AND 206",
    );
    assert_eq!(n, json!([{"n": 0}]));
}

#[test]
fn upserts_of_one_shape_merge_their_own_payloads() {
    let s = server();
    let prefer = "return=representation, resolution=merge-duplicates";
    for (title, status) in [("first", 201), ("second", 200), ("third", 200)] {
        let body = json!({"id": 301, "title": title}).to_string();
        let r = post(&s, "/tpl_posts", prefer, &body);
        assert_eq!(r.status, status, "{title}: {}", r.body);
        assert_eq!(
            r.json(),
            json!([{"id": 301, "title": title, "score": null}])
        );
        assert!(r
            .header("Preference-Applied")
            .unwrap_or("")
            .contains("resolution=merge-duplicates"));
    }
}

#[test]
fn calls_of_one_shape_bind_their_own_arguments() {
    let s = server();
    let plain = "return=representation";
    for (a, b) in [(1, 2), (10, 20), (-5, 7), (100, 1)] {
        let r = post(
            &s,
            "/rpc/add_them",
            plain,
            &json!({"a": a, "b": b}).to_string(),
        );
        assert_json(&r, 200, json!(a + b));
    }
    // The same keys in another order are another shape with the same answers.
    for (a, b) in [(3, 4), (30, 40), (300, 400)] {
        let r = post(
            &s,
            "/rpc/add_them",
            plain,
            &format!(r#"{{"b": {b}, "a": {a}}}"#),
        );
        assert_json(&r, 200, json!(a + b));
    }
    // Rows, with their count and Content-Range, per call.
    for (year, titles) in [
        (2010, vec!["Gamma", "Delta"]),
        (2000, vec!["Beta", "Gamma", "Delta"]),
        (2020, vec!["Delta"]),
        (2030, vec![]),
    ] {
        let r = post(
            &s,
            "/rpc/films_since?select=title&order=year",
            "count=exact",
            &json!({ "y": year }).to_string(),
        );
        let rows: Vec<_> = titles.iter().map(|t| json!({ "title": t })).collect();
        assert_json(&r, 200, json!(rows));
        let range = match titles.len() {
            0 => "*/0".to_string(),
            n => format!("0-{}/{n}", n - 1),
        };
        assert_eq!(r.header("Content-Range"), Some(range.as_str()));
    }
    // A function of one json parameter takes each body whole.
    for body in [r#"{"x": 1}"#, r#"{"x": [2, 3]}"#, r#"{"x": "four"}"#] {
        let r = post(&s, "/rpc/echo_json", plain, body);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap(),
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        );
    }
    // Overloads chosen by key keep apart.
    for _ in 0..3 {
        assert_json(
            &post(&s, "/rpc/pick", plain, r#"{"a": 1}"#),
            200,
            json!("int"),
        );
        assert_json(
            &post(&s, "/rpc/pick", plain, r#"{"b": "x"}"#),
            200,
            json!("text"),
        );
    }
}

#[test]
fn a_call_of_a_known_shape_still_fails_and_writes_as_it_should() {
    let s = server();
    let plain = "return=representation";
    for (a, b) in [(1, 1), (2, 2), (3, 3)] {
        let r = post(
            &s,
            "/rpc/add_them",
            plain,
            &json!({"a": a, "b": b}).to_string(),
        );
        assert_json(&r, 200, json!(a + b));
    }
    let r = post(&s, "/rpc/add_them", plain, r#"{"a": "x", "b": 1}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "22P02");
    let r = post(&s, "/rpc/add_them", plain, r#"{"a": 1, "b": "#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST102");
    let r = post(&s, "/rpc/add_them", plain, r#"{"a": 1, "c": 2}"#);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST202");
    let r = post(&s, "/rpc/add_them", plain, r#"{"a": 7, "b": 8}"#);
    assert_json(&r, 200, json!(15));
    // A volatile function writes on every call, each with its own argument.
    let who = |i: i32| format!("tpl caller {i}");
    for i in 0..4 {
        let r = post(
            &s,
            "/rpc/log_visit",
            plain,
            &json!({ "who": who(i) }).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let rows = common::sql_rows(
        "SELECT who FROM test_api.rpc_visits WHERE who LIKE 'tpl caller %' ORDER BY id",
    );
    let expected: Vec<_> = (0..4).map(|i| json!({ "who": who(i) })).collect();
    assert_eq!(rows, json!(expected));
}

#[test]
fn calls_of_a_known_shape_keep_void_raw_media_response_gucs_and_permissions() {
    let s = server();
    let plain = "return=representation";
    for round in 0..3 {
        let r = post(&s, "/rpc/do_nothing", plain, "{}");
        assert_eq!((r.status, r.body.as_str()), (204, ""), "round {round}");
        let r = s.send(
            "POST",
            "/rpc/motd",
            &[
                ("Content-Type", "application/json"),
                ("Accept", "text/plain"),
            ],
            Some("{}"),
        );
        assert_eq!((r.status, r.body.as_str()), (200, "Have a nice day"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        let r = post(&s, "/rpc/teapot", plain, "{}");
        assert_json(&r, 418, json!("short and stout"));
        assert_eq!(r.header("x-brew"), Some("earl grey"));
        let r = post(&s, "/rpc/secret_fn", plain, "{}");
        assert_eq!(r.status, 401, "round {round}: {}", r.body);
        assert_eq!(r.json()["code"], "42501");
        assert_json(
            &post(&s, "/rpc/greet", plain, "{}"),
            200,
            json!("Hello, you"),
        );
        let name = format!("caller {round}");
        let r = post(
            &s,
            "/rpc/greet",
            plain,
            &json!({ "name": name }).to_string(),
        );
        assert_json(&r, 200, json!(format!("Hello, {name}")));
    }
}
