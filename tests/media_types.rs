//! GeoJSON output with PostGIS (scripts/test-deps.sh installs postgresql-15-postgis-3) and
//! media type handler aggregates.

mod common;

use std::sync::OnceLock;

use common::{assert_json, server_with, sql_exec, Server};
use serde_json::json;

const GEO: (&str, &str) = ("Accept", "application/geo+json");

/// A server started after PostGIS and the spatial tables exist (its own configuration, so
/// its schema cache has them).
fn geo() -> Server {
    static SETUP: OnceLock<()> = OnceLock::new();
    SETUP.get_or_init(|| {
        sql_exec(
            "CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public;
             CREATE TABLE test_api.places (
               id integer PRIMARY KEY,
               name text NOT NULL,
               spot geometry(Point, 4326)
             );
             INSERT INTO test_api.places VALUES
               (1, 'harbour', 'SRID=4326;POINT(-71.1 42.37)'),
               (2, 'nowhere', NULL);
             GRANT SELECT, INSERT ON test_api.places TO test_anon;
             CREATE FUNCTION test_api.places_named(prefix text) RETURNS SETOF test_api.places
               STABLE LANGUAGE sql AS $$ SELECT * FROM test_api.places WHERE name LIKE prefix || '%' $$;",
        );
        sql_exec(HANDLERS);
    });
    server_with(&[("PGRST_APP_SETTINGS_geo", "on")])
}

/// Handler aggregates: a table's own (TSV, a CSV override with a header, `*/*`), an
/// `anyelement` one (record text), one over bytes, one whose final function fails.
const HANDLERS: &str = r#"
SET search_path = test_api, public;
CREATE DOMAIN "text/tab-separated-values" AS text;
CREATE FUNCTION tsv_step(state "text/tab-separated-values", next places)
  RETURNS "text/tab-separated-values" LANGUAGE sql AS
  $$ SELECT (state || next.id || E'\t' || next.name || E'\n')::"text/tab-separated-values" $$;
CREATE AGGREGATE tsv_agg(places) (INITCOND = '', STYPE = "text/tab-separated-values", SFUNC = tsv_step);

CREATE DOMAIN "pg/outfunc" AS text;
CREATE FUNCTION outfunc_step(state "pg/outfunc", next anyelement) RETURNS "pg/outfunc"
  LANGUAGE sql AS $$ SELECT (state || next::text || E'\n')::"pg/outfunc" $$;
CREATE AGGREGATE outfunc_agg(anyelement) (INITCOND = '', STYPE = "pg/outfunc", SFUNC = outfunc_step);

CREATE DOMAIN "application/vnd.test.ids" AS bytea;
CREATE FUNCTION ids_step(state "application/vnd.test.ids", next places)
  RETURNS "application/vnd.test.ids" LANGUAGE sql AS
  $$ SELECT (state || set_byte('\x00'::bytea, 0, next.id))::"application/vnd.test.ids" $$;
CREATE AGGREGATE ids_agg(places) (INITCOND = '', STYPE = "application/vnd.test.ids", SFUNC = ids_step);

CREATE DOMAIN "text/csv" AS text;
CREATE FUNCTION csv_step(state "text/csv", next places) RETURNS "text/csv"
  LANGUAGE sql AS $$ SELECT (state || next.name || E'\n')::"text/csv" $$;
CREATE FUNCTION csv_final(data "text/csv") RETURNS "text/csv" LANGUAGE sql AS $$
  SELECT set_config('response.headers',
    '[{"Content-Disposition": "attachment; filename=\"places.csv\""}]', true);
  SELECT ('name' || E'\n' || data)::"text/csv" $$;
CREATE AGGREGATE csv_agg(places) (INITCOND = '', STYPE = "text/csv", SFUNC = csv_step, FINALFUNC = csv_final);

CREATE DOMAIN "application/vnd.test.fails" AS text;
CREATE FUNCTION fails_step(state "application/vnd.test.fails", next places)
  RETURNS "application/vnd.test.fails" LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'the handler ran'; END $$;
CREATE AGGREGATE fails_agg(places) (STYPE = "application/vnd.test.fails", SFUNC = fails_step);

CREATE DOMAIN "application/vnd.test.private" AS text;
CREATE FUNCTION private_step(state "application/vnd.test.private", next places)
  RETURNS "application/vnd.test.private" LANGUAGE sql AS $$ SELECT 'secret'::"application/vnd.test.private" $$;
CREATE AGGREGATE private_agg(places) (STYPE = "application/vnd.test.private", SFUNC = private_step);
REVOKE EXECUTE ON FUNCTION private_agg(places) FROM PUBLIC;

-- A handler named like PostgREST's own type, which must never be used.
CREATE DOMAIN "application/vnd.pgrst.object" AS text;
CREATE FUNCTION vendor_step(state "application/vnd.pgrst.object", next anyelement)
  RETURNS "application/vnd.pgrst.object" LANGUAGE sql AS
  $$ SELECT 'overridden'::"application/vnd.pgrst.object" $$;
CREATE AGGREGATE vendor_agg(anyelement) (STYPE = "application/vnd.pgrst.object", SFUNC = vendor_step);

CREATE TABLE blobs (id integer PRIMARY KEY);
INSERT INTO blobs VALUES (7);
GRANT SELECT ON blobs TO test_anon;
-- "*/*" (bytea) is the fixture's.
CREATE FUNCTION any_step(state "*/*", next blobs) RETURNS "*/*" LANGUAGE sql AS
  $$ SELECT (state || convert_to('blob ' || next.id, 'UTF8'))::"*/*" $$;
CREATE AGGREGATE any_agg(blobs) (INITCOND = '', STYPE = "*/*", SFUNC = any_step);
"#;

fn feature(id: i64, name: &str, geometry: serde_json::Value) -> serde_json::Value {
    json!({"type": "Feature", "geometry": geometry, "properties": {"id": id, "name": name}})
}

#[test]
fn a_table_read_as_a_feature_collection() {
    let s = geo();
    let r = s.get_with("/places?id=lt.3&order=id", &[GEO]);
    assert_json(
        &r,
        200,
        json!({"type": "FeatureCollection", "features": [
            feature(1, "harbour", json!({"type": "Point", "coordinates": [-71.1, 42.37]})),
            // PostGIS's rendering of a NULL geometry.
            feature(2, "nowhere", json!({"type": null})),
        ]}),
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/geo+json; charset=utf-8")
    );
    // No rows: an empty collection, not null.
    assert_json(
        &s.get_with("/places?id=eq.99", &[GEO]),
        200,
        json!({"type": "FeatureCollection", "features": []}),
    );
}

#[test]
fn without_a_geometry_column_is_a_client_error() {
    let s = geo();
    let r = s.get_with("/places?select=id,name", &[GEO]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "22023");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("geometry column is missing"),
        "{}",
        r.body
    );
    // A table that has none at all, likewise.
    let r = s.get_with("/kinds?id=eq.1", &[GEO]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "22023");
}

#[test]
fn write_representations_and_function_results_too() {
    let s = geo();
    let r = s.send(
        "POST",
        "/places",
        &[
            GEO,
            ("Content-Type", "application/json"),
            ("Prefer", "return=representation"),
        ],
        Some(r#"{"id": 3, "name": "market", "spot": "SRID=4326;POINT(2 3)"}"#),
    );
    assert_json(
        &r,
        201,
        json!({"type": "FeatureCollection", "features": [
            feature(3, "market", json!({"type": "Point", "coordinates": [2, 3]})),
        ]}),
    );
    let r = s.get_with("/rpc/places_named?prefix=har", &[GEO]);
    assert_json(
        &r,
        200,
        json!({"type": "FeatureCollection", "features": [
            feature(1, "harbour", json!({"type": "Point", "coordinates": [-71.1, 42.37]})),
        ]}),
    );
}

#[test]
fn a_table_handler_renders_its_rows_when_the_select_is_the_default() {
    let s = geo();
    let tsv = ("Accept", "text/tab-separated-values");
    let r = s.get_with("/places?id=lt.3&order=id", &[tsv]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "1\tharbour\n2\tnowhere\n");
    assert_eq!(r.header("content-type"), Some("text/tab-separated-values"));
    // An explicit select (even of every column) makes the table's handlers unavailable.
    let r = s.get_with("/places?select=id,name,spot", &[tsv]);
    assert_eq!(r.status, 406, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST107");
    // Preference order is kept: JSON first here.
    let r = s.get_with(
        "/places?id=eq.1&select=id",
        &[("Accept", "application/json, text/tab-separated-values")],
    );
    assert_json(&r, 200, json!([{"id": 1}]));
    // A function returning the table's rows uses them too.
    let r = s.get_with("/rpc/places_named?prefix=har", &[tsv]);
    assert_eq!((r.status, r.body.as_str()), (200, "1\tharbour\n"));
}

#[test]
fn anyelement_handlers_take_any_select_and_bytes_travel_as_bytes() {
    let s = geo();
    let r = s.get_with(
        "/places?select=name,id&id=lt.3&order=id",
        &[("Accept", "pg/outfunc")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "(harbour,1)\n(nowhere,2)\n");
    assert_eq!(r.header("content-type"), Some("pg/outfunc"));
    let r = s.get_with(
        "/places?id=lt.3&order=id",
        &[("Accept", "application/vnd.test.ids")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body.as_bytes(), &[1u8, 2]);
    assert_eq!(r.header("content-type"), Some("application/vnd.test.ids"));
}

#[test]
fn a_table_handler_overrides_a_builtin_and_sets_headers() {
    let s = geo();
    let r = s.get_with("/places?id=lt.3&order=id", &[("Accept", "text/csv")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "name\nharbour\nnowhere\n");
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"places.csv\"")
    );
    // Other tables keep the builtin CSV.
    let r = s.get_with("/kinds?select=id&id=eq.1", &[("Accept", "text/csv")]);
    assert_eq!((r.status, r.body.as_str()), (200, "id\n1"));
    // PostgREST's own vendor types cannot be overridden.
    for accept in [
        "application/vnd.pgrst.object",
        "application/vnd.pgrst.object+json",
    ] {
        let r = s.get_with("/places?select=id&id=eq.1", &[("Accept", accept)]);
        assert_json(&r, 200, json!({"id": 1}));
    }
}

#[test]
fn a_catch_all_handler_answers_any_accept() {
    let s = geo();
    for accept in [None, Some("application/x-anything"), Some("*/*")] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let r = s.get_with("/blobs", &headers);
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "blob 7"),
            "Accept {accept:?}"
        );
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    }
}

#[test]
fn head_never_runs_the_handler() {
    let s = geo();
    let fails = ("Accept", "application/vnd.test.fails");
    let r = s.request("HEAD", "/places", &[fails]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/vnd.test.fails"));
    let r = s.get_with("/places", &[fails]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["message"], "the handler ran");
}

#[test]
fn the_plan_of_a_handler_rendering() {
    geo();
    let s = server_with(&[
        ("PGRST_APP_SETTINGS_geo", "on"),
        ("PGRST_DB_PLAN_ENABLED", "true"),
    ]);
    let r = s.get_with(
        "/places",
        &[(
            "Accept",
            "application/vnd.pgrst.plan+json; for=\"text/tab-separated-values\"; options=verbose",
        )],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.pgrst.plan+json; for=\"text/tab-separated-values\"; options=verbose; charset=utf-8")
    );
    let output = r.json()[0]["Plan"]["Output"].to_string();
    assert!(output.contains("tsv_agg("), "{output}");
    // Not for PostgREST's own types, whatever handler is named like them.
    let r = s.get_with(
        "/places?id=eq.1",
        &[(
            "Accept",
            "application/vnd.pgrst.plan+json; for=\"application/vnd.pgrst.object\"; options=verbose",
        )],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let output = r.json()[0]["Plan"]["Output"].to_string();
    assert!(
        output.contains("json_agg") && !output.contains("vendor_agg"),
        "{output}"
    );
}

#[test]
fn no_rows_give_an_empty_body_and_a_handler_needs_execute() {
    let s = geo();
    // fails_agg has no initial state: over no rows it is NULL, sent as an empty body.
    let r = s.get_with(
        "/places?id=eq.99",
        &[("Accept", "application/vnd.test.fails")],
    );
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(r.header("content-type"), Some("application/vnd.test.fails"));
    // Without EXECUTE on the aggregate the anonymous role gets PostgreSQL's refusal.
    let r = s.get_with("/places", &[("Accept", "application/vnd.test.private")]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["code"], "42501");
}

#[test]
fn written_rows_returned_through_a_handler() {
    let s = geo();
    let tsv = ("Accept", "text/tab-separated-values");
    let body = r#"{"id": 30, "name": "lighthouse"}"#;
    let r = s.send(
        "POST",
        "/places",
        &[
            ("Content-Type", "application/json"),
            ("Prefer", "return=representation"),
            tsv,
        ],
        Some(body),
    );
    assert_eq!((r.status, r.body.as_str()), (201, "30\tlighthouse\n"));
    assert_eq!(r.header("content-type"), Some("text/tab-separated-values"));
    // Returning nothing, the handler's type is acceptable and no handler runs.
    let r = s.send(
        "POST",
        "/places",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/vnd.test.fails"),
        ],
        Some(r#"{"id": 31, "name": "quay"}"#),
    );
    assert_eq!((r.status, r.body.as_str()), (201, ""));
    assert_eq!(r.header("content-type"), None);
    let r = s.get("/places?id=in.(30,31)&select=id&order=id");
    assert_json(&r, 200, json!([{"id": 30}, {"id": 31}]));
}
