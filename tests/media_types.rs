//! GeoJSON output with PostGIS (scripts/test-deps.sh installs postgresql-15-postgis-3).

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
    });
    server_with(&[("PGRST_APP_SETTINGS_geo", "on")])
}

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
