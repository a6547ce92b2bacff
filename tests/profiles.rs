//! Several exposed schemas: Accept-Profile for reads, Content-Profile for writes and POST
//! calls, embedding across schemas, and the error for a schema that is not exposed.

mod common;

use common::{assert_json, server, server_with, sql_rows, Server};
use serde_json::json;

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn two_schemas() -> Server {
    server_with(&[("PGRST_DB_SCHEMAS", "test_api,v2")])
}

#[test]
fn accept_profile_picks_the_schema_of_a_read() {
    let s = two_schemas();
    // The first schema is the default, and responses name it.
    let r = s.get("/kinds?select=id,name&id=eq.1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-profile"), Some("test_api"));
    assert!(r.json()[0]["name"].is_string(), "{}", r.body);
    let r = s.get_with("/kinds?id=eq.1", &[("Accept-Profile", "v2")]);
    assert_json(&r, 200, json!([{"id": 1, "label": "v2 one"}]));
    assert_eq!(r.header("content-profile"), Some("v2"));
    // Functions of the same name in each schema.
    let r = s.get_with(
        "/rpc/motd",
        &[("Accept-Profile", "v2"), ("Accept", "application/json")],
    );
    assert_json(&r, 200, json!("v2 says hi"));
    let r = s.get_with("/rpc/motd", &[("Accept", "application/json")]);
    assert_json(&r, 200, json!("Have a nice day"));
    // With one schema, responses do not name it.
    let r = server().get("/kinds?select=id&id=eq.1");
    assert_eq!((r.status, r.header("content-profile")), (200, None));
    let r = server().get_with("/rpc/motd", &[("Accept", "application/json")]);
    assert_eq!((r.status, r.header("content-profile")), (200, None));
    // A schema that is not exposed.
    let r = s.get_with("/kinds", &[("Accept-Profile", "extra")]);
    assert_json(
        &r,
        406,
        json!({"code": "PGRST106", "details": null,
               "hint": "Only the following schemas are exposed: test_api, v2",
               "message": "Invalid schema: extra"}),
    );
}

#[test]
fn content_profile_picks_the_schema_of_a_write() {
    let s = two_schemas();
    let r = s.send(
        "POST",
        "/kinds",
        &[
            JSON,
            ("Content-Profile", "v2"),
            ("Prefer", "return=representation"),
        ],
        Some(r#"{"id": 2, "label": "v2 two"}"#),
    );
    assert_json(&r, 201, json!([{"id": 2, "label": "v2 two"}]));
    assert_eq!(r.header("content-profile"), Some("v2"));
    assert_eq!(
        sql_rows("SELECT label FROM v2.kinds WHERE id = 2"),
        json!([{"label": "v2 two"}])
    );
    // A POST call runs in the Content-Profile schema, read-write for a volatile function.
    let r = s.send(
        "POST",
        "/rpc/remember",
        &[JSON, ("Content-Profile", "v2")],
        Some(r#"{"label": "kept"}"#),
    );
    assert_json(&r, 200, json!(100));
    assert_eq!(
        sql_rows("SELECT label FROM v2.kinds WHERE id = 100"),
        json!([{"label": "kept"}])
    );
    // Accept-Profile does not choose a write's schema: without Content-Profile the
    // default schema's table is written, whose columns differ.
    let r = s.send(
        "POST",
        "/kinds",
        &[JSON, ("Accept-Profile", "v2")],
        Some(r#"{"id": 3, "label": "x"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST204");
    let r = s.send(
        "POST",
        "/kinds",
        &[JSON, ("Content-Profile", "extra")],
        Some(r#"{"id": 3}"#),
    );
    assert_eq!(r.status, 406, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST106");
    assert_eq!(sql_rows("SELECT id FROM v2.kinds WHERE id = 3"), json!([]));
}

#[test]
fn relationships_are_those_of_the_chosen_schema() {
    let s = two_schemas();
    // v2.editions has a foreign key to v2.kinds and one to test_api.kinds: embedding
    // `kinds` from v2 follows v2's own (as in PostgREST, a relationship joins tables of
    // one schema; a view in the schema exposes another schema's table).
    let r = s.get_with(
        "/editions?select=id,kinds(id,label)",
        &[("Accept-Profile", "v2")],
    );
    assert_json(
        &r,
        200,
        json!([{"id": 10, "kinds": {"id": 1, "label": "v2 one"}}]),
    );
    let r = s.get_with(
        "/editions?select=id,kinds!origin_id(id)",
        &[("Accept-Profile", "v2")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST200");
    // And from the default schema, v2's tables are not there to embed.
    let r = s.get("/kinds?select=id,editions(id)&id=eq.1");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST200");
}

#[test]
fn the_openapi_root_names_its_schema() {
    let s = two_schemas();
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Content-Profile"), Some("test_api"));
    let r = s.get_with("/", &[("Accept-Profile", "v2")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Content-Profile"), Some("v2"));
    // One schema: no Content-Profile, as on every other response.
    assert_eq!(server().get("/").header("Content-Profile"), None);
}
