//! Writes end to end: each test owns its tables and reads the database back with SQL.

mod common;

use common::{assert_json, server, server_with, sql_rows};
use serde_json::json;

const JSON: (&str, &str) = ("Content-Type", "application/json");
const REPR: (&str, &str) = ("Prefer", "return=representation");

#[test]
fn insert_one_object_minimal() {
    let s = server();
    let r = s.send("POST", "/w_items", &[JSON], Some(r#"{"name":"pen"}"#));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body, "");
    assert_eq!(r.header("content-type"), None);
    assert_eq!(r.header("content-range"), Some("*/*"));
    assert_eq!(
        sql_rows("SELECT name, qty FROM test_api.w_items WHERE name = 'pen'"),
        json!([{"name": "pen", "qty": 1}])
    );
}

#[test]
fn bulk_insert_with_representation_select_and_count() {
    let s = server();
    let r = s.send(
        "POST",
        "/w_bulk?select=id,label:name&order=id.desc",
        &[JSON, ("Prefer", "return=representation, count=exact")],
        Some(r#"[{"id":1,"name":"a","qty":1},{"id":2,"name":"b","qty":2}]"#),
    );
    assert_json(
        &r,
        201,
        json!([{"id": 2, "label": "b"}, {"id": 1, "label": "a"}]),
    );
    assert_eq!(r.header("content-range"), Some("*/2"));
    assert_eq!(
        r.header("preference-applied"),
        Some("return=representation, count=exact")
    );
    // One bad row: nothing of the batch is written.
    let r = s.send(
        "POST",
        "/w_bulk",
        &[JSON],
        Some(r#"[{"id":3,"name":"c","qty":1},{"id":4,"name":"d","qty":-1}]"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "23514");
    let r = s.send("POST", "/w_bulk", &[JSON], Some(r#"{"id":1,"name":"dup"}"#));
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["code"], "23505");
    let r = s.send("POST", "/w_bulk", &[JSON], Some(r#"{"id":5}"#));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "23502");
    assert_eq!(
        sql_rows("SELECT id FROM test_api.w_bulk ORDER BY id"),
        json!([{"id": 1}, {"id": 2}])
    );
}

#[test]
fn bad_bodies_are_pgrst102_or_pgrst204() {
    let s = server();
    for (body, message) in [
        ("}{ x", "Empty or invalid json"),
        ("", "Empty or invalid json"),
        (r#"[{"id":7},{"name":"x"}]"#, "All object keys must match"),
        (r#"[{"id":7},3]"#, "All object keys must match"),
    ] {
        let r = s.send("POST", "/w_items", &[JSON], Some(body));
        assert_json(
            &r,
            400,
            json!({"code": "PGRST102", "details": null, "hint": null, "message": message}),
        );
    }
    let r = s.send(
        "POST",
        "/w_items",
        &[JSON],
        Some(r#"{"name":"x","nope":1}"#),
    );
    assert_json(
        &r,
        400,
        json!({"code": "PGRST204", "details": null, "hint": null,
               "message": "Could not find the 'nope' column of 'w_items' in the schema cache"}),
    );
    let r = s.send(
        "POST",
        "/w_items",
        &[("Content-Type", "text/plain")],
        Some("x"),
    );
    assert_eq!(
        r.json()["message"],
        "Content-Type not acceptable: text/plain"
    );
    assert_eq!(
        sql_rows("SELECT id FROM test_api.w_items WHERE name IN ('x')"),
        json!([])
    );
}

#[test]
fn csv_and_form_bodies() {
    let s = server();
    let r = s.send(
        "POST",
        "/w_forms",
        &[("Content-Type", "text/csv"), REPR],
        Some("id,name,flag,amount\n1,\"a, b\",true,1.5\n2,NULL,false,NULL\n"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.send(
        "POST",
        "/w_forms",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("id=3&name=form+row&flag=true&amount=2.25"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        sql_rows("SELECT id, name, flag, amount::text FROM test_api.w_forms ORDER BY id"),
        json!([
            {"id": 1, "name": "a, b", "flag": true, "amount": "1.5"},
            {"id": 2, "name": null, "flag": false, "amount": null},
            {"id": 3, "name": "form row", "flag": true, "amount": "2.25"}
        ])
    );
    let r = s.send(
        "POST",
        "/w_forms",
        &[("Content-Type", "text/csv")],
        Some("id,name\n9,x\n10\n"),
    );
    assert_eq!(
        r.json()["message"],
        "All lines must have same number of fields"
    );
}

#[test]
fn headers_only_gives_the_location_and_defaults_fill_missing_values() {
    let s = server();
    let r = s.send(
        "POST",
        "/w_ident",
        &[JSON, ("Prefer", "return=headers-only")],
        Some(r#"{"name":"auto"}"#),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.header("location"), Some("/w_ident?id=eq.1"));
    assert_eq!(r.body, "");
    // columns= names a column the body lacks: NULL, or its default with missing=default.
    let r = s.send(
        "POST",
        "/w_ident?columns=id,name,created",
        &[JSON, ("Prefer", "return=representation, missing=default")],
        Some(r#"[{"name":"x"},{"name":"y","created":"2024-05-05"}]"#),
    );
    assert_json(
        &r,
        201,
        json!([
            {"id": 2, "name": "x", "created": "2020-01-01"},
            {"id": 3, "name": "y", "created": "2024-05-05"}
        ]),
    );
    assert_eq!(
        r.header("preference-applied"),
        Some("missing=default, return=representation")
    );
}

#[test]
fn upserts_merge_or_ignore() {
    let s = server();
    let r = s.send(
        "POST",
        "/w_upsert",
        &[
            JSON,
            (
                "Prefer",
                "resolution=merge-duplicates, return=representation",
            ),
        ],
        Some(r#"[{"id":1,"code":"a","name":"uno"}]"#),
    );
    assert_json(&r, 200, json!([{"id": 1, "code": "a", "name": "uno"}]));
    assert_eq!(
        r.header("preference-applied"),
        Some("resolution=merge-duplicates, return=representation")
    );
    let r = s.send(
        "POST",
        "/w_upsert",
        &[JSON, ("Prefer", "resolution=merge-duplicates")],
        Some(r#"[{"id":1,"code":"a","name":"one again"},{"id":3,"code":"c","name":"three"}]"#),
    );
    assert_eq!(r.status, 201);
    let r = s.send(
        "POST",
        "/w_upsert?on_conflict=code",
        &[
            JSON,
            (
                "Prefer",
                "resolution=ignore-duplicates, return=representation",
            ),
        ],
        Some(r#"[{"id":9,"code":"b","name":"ignored"},{"id":4,"code":"d","name":"four"}]"#),
    );
    assert_json(&r, 201, json!([{"id": 4, "code": "d", "name": "four"}]));
    assert_eq!(
        sql_rows("SELECT id, code, name FROM test_api.w_upsert ORDER BY id"),
        json!([
            {"id": 1, "code": "a", "name": "one again"},
            {"id": 2, "code": "b", "name": "two"},
            {"id": 3, "code": "c", "name": "three"},
            {"id": 4, "code": "d", "name": "four"}
        ])
    );
}

#[test]
fn put_inserts_or_replaces_one_row_by_primary_key() {
    let s = server();
    let r = s.send(
        "PUT",
        "/w_put?id=eq.2",
        &[JSON, REPR],
        Some(r#"{"id":2,"name":"second"}"#),
    );
    assert_json(&r, 201, json!([{"id": 2, "name": "second"}]));
    let r = s.send(
        "PUT",
        "/w_put?id=eq.1",
        &[JSON, REPR],
        Some(r#"{"id":1,"name":"replaced"}"#),
    );
    assert_json(&r, 200, json!([{"id": 1, "name": "replaced"}]));
    let r = s.send(
        "PUT",
        "/w_put?id=eq.1",
        &[JSON],
        Some(r#"{"id":1,"name":"quiet"}"#),
    );
    assert_eq!(r.status, 204);
    let r = s.send(
        "PUT",
        "/w_put?id=eq.1",
        &[JSON],
        Some(r#"{"id":5,"name":"other"}"#),
    );
    assert_json(
        &r,
        400,
        json!({"code": "PGRST115", "details": null, "hint": null,
               "message": "Payload values do not match URL in primary key column(s)"}),
    );
    let r = s.send("PUT", "/w_put?name=eq.x", &[JSON], Some(r#"{"id":1}"#));
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["code"], "PGRST105");
    let r = s.send("PUT", "/w_put?id=gt.1", &[JSON], Some(r#"{"id":1}"#));
    assert_eq!(r.json()["code"], "PGRST105");
    let r = s.send(
        "PUT",
        "/w_put?id=eq.1&limit=1",
        &[JSON],
        Some(r#"{"id":1}"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "PGRST114");
    assert_eq!(
        sql_rows("SELECT id, name FROM test_api.w_put ORDER BY id"),
        json!([{"id": 1, "name": "quiet"}, {"id": 2, "name": "second"}])
    );
}

#[test]
fn patch_updates_the_filtered_rows() {
    let s = server();
    let r = s.send(
        "PATCH",
        "/w_patch?grp=eq.1",
        &[JSON],
        Some(r#"{"name":"g1"}"#),
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-range"), Some("0-1/*"));
    let r = s.send(
        "PATCH",
        "/w_patch?id=eq.3&select=id,name",
        &[JSON, REPR],
        Some(r#"{"name":"three"}"#),
    );
    assert_json(&r, 200, json!([{"id": 3, "name": "three"}]));
    let r = s.send(
        "PATCH",
        "/w_patch?id=eq.99",
        &[JSON],
        Some(r#"{"name":"none"}"#),
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-range"), Some("*/*"));
    // Singular representation of two rows: refused, nothing changed.
    let r = s.send(
        "PATCH",
        "/w_patch?grp=eq.1",
        &[JSON, REPR, ("Accept", "application/vnd.pgrst.object+json")],
        Some(r#"{"name":"never"}"#),
    );
    assert_eq!(r.status, 406);
    assert_eq!(r.json()["code"], "PGRST116");
    // max-affected with strict handling.
    let r = s.send(
        "PATCH",
        "/w_patch?grp=eq.1",
        &[JSON, ("Prefer", "handling=strict, max-affected=1")],
        Some(r#"{"name":"never"}"#),
    );
    assert_json(
        &r,
        400,
        json!({"code": "PGRST124", "hint": null,
               "message": "Query result exceeds max-affected preference constraint",
               "details": "The query affects 2 rows"}),
    );
    let r = s.send("PATCH", "/w_patch?id=eq.1", &[JSON], Some("{}"));
    assert_eq!(r.status, 204);
    assert_eq!(
        sql_rows("SELECT id, name FROM test_api.w_patch ORDER BY id"),
        json!([{"id": 1, "name": "g1"}, {"id": 2, "name": "g1"}, {"id": 3, "name": "three"}])
    );
}

#[test]
fn delete_with_representation_and_count() {
    let s = server();
    let r = s.send(
        "DELETE",
        "/w_delete?grp=eq.1&order=id",
        &[("Prefer", "return=representation, count=exact")],
        None,
    );
    assert_json(&r, 200, json!([{"id": 1, "grp": 1}, {"id": 2, "grp": 1}]));
    assert_eq!(r.header("content-range"), Some("*/2"));
    let r = s.send("DELETE", "/w_delete?id=eq.3", &[], None);
    assert_eq!(r.status, 204);
    assert_eq!(r.body, "");
    assert_eq!(
        sql_rows("SELECT id FROM test_api.w_delete"),
        json!([{"id": 4}])
    );
}

#[test]
fn representations_embed_related_rows() {
    let s = server();
    let r = s.send(
        "POST",
        "/w_child?select=id,name,w_parent(name)",
        &[JSON, REPR],
        Some(r#"{"id":1,"parent_id":1,"name":"kid"}"#),
    );
    assert_json(
        &r,
        201,
        json!([{"id": 1, "name": "kid", "w_parent": {"name": "mum"}}]),
    );
    let r = s.send(
        "POST",
        "/w_child",
        &[JSON],
        Some(r#"{"id":2,"parent_id":7,"name":"orphan"}"#),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["code"], "23503");
}

#[test]
fn strict_handling_refuses_unknown_preferences() {
    let r = server().send(
        "POST",
        "/w_items",
        &[JSON, ("Prefer", "handling=strict, frobnicate=yes")],
        Some(r#"{"name":"never"}"#),
    );
    assert_json(
        &r,
        400,
        json!({"code": "PGRST122", "hint": null,
               "message": "Invalid preferences given with handling=strict",
               "details": "Invalid preferences: frobnicate=yes"}),
    );
    assert_eq!(
        sql_rows("SELECT id FROM test_api.w_items WHERE name = 'never'"),
        json!([])
    );
}

#[test]
fn tx_rollback_returns_the_representation_but_keeps_nothing() {
    let s = server_with(&[("PGRST_DB_TX_END", "commit-allow-override")]);
    let r = s.send(
        "PATCH",
        "/w_tx?id=eq.1",
        &[JSON, ("Prefer", "return=representation, tx=rollback")],
        Some(r#"{"name":"changed"}"#),
    );
    assert_json(&r, 200, json!([{"id": 1, "name": "changed"}]));
    assert_eq!(
        r.header("preference-applied"),
        Some("return=representation, tx=rollback")
    );
    assert_eq!(
        sql_rows("SELECT name FROM test_api.w_tx"),
        json!([{"name": "kept"}])
    );
}

#[test]
fn writes_through_views_and_privileges() {
    let s = server();
    let r = s.send(
        "POST",
        "/w_view",
        &[JSON, REPR],
        Some(r#"{"id":1,"name":"via view"}"#),
    );
    assert_json(&r, 201, json!([{"id": 1, "name": "via view"}]));
    assert_eq!(
        sql_rows("SELECT id, name, secret FROM test_api.w_view_base"),
        json!([{"id": 1, "name": "via view", "secret": "hidden"}])
    );
    let r = s.send("POST", "/w_readonly", &[JSON], Some(r#"{"id":1}"#));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "42501");
}
