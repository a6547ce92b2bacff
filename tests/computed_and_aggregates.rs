//! Computed fields, computed relationships and aggregates end to end.

mod common;

use common::{assert_json, server, server_with};
use serde_json::json;

#[track_caller]
fn check(path: &str, expected: serde_json::Value) {
    assert_json(&server().get(path), 200, expected);
}

fn aggregates() -> common::Server {
    server_with(&[("PGRST_DB_AGGREGATES_ENABLED", "true")])
}

#[test]
fn computed_fields_select_filter_and_order() {
    check(
        "/films?select=title,film_age&id=eq.1",
        json!([{"title": "Alpha", "film_age": 26}]),
    );
    check(
        "/films?select=title&film_age=lt.10",
        json!([{"title": "Delta"}]),
    );
    check(
        "/films?select=title&order=film_age.desc",
        json!([{"title": "Alpha"}, {"title": "Beta"}, {"title": "Gamma"}, {"title": "Delta"}]),
    );
    check(
        "/films?select=title&title_search=fts.alpha",
        json!([{"title": "Alpha"}]),
    );
    // `*` leaves computed fields out.
    check(
        "/films?id=eq.1",
        json!([{"id": 1, "title": "Alpha", "year": 1999, "director_id": 1, "codirector_id": null}]),
    );
}

#[test]
fn computed_relationships_to_one_and_to_many() {
    check(
        "/films?select=title,lead_actor(name)&order=id",
        json!([
            {"title": "Alpha", "lead_actor": {"name": "Ann"}},
            {"title": "Beta", "lead_actor": {"name": "Bob"}},
            {"title": "Gamma", "lead_actor": {"name": "Cat"}},
            {"title": "Delta", "lead_actor": null}
        ]),
    );
    check(
        "/actors?select=name,colleagues(name)&order=id&colleagues.order=name",
        json!([
            {"name": "Ann", "colleagues": [{"name": "Bob"}, {"name": "Cat"}]},
            {"name": "Bob", "colleagues": [{"name": "Ann"}]},
            {"name": "Cat", "colleagues": [{"name": "Ann"}]}
        ]),
    );
    check(
        "/films?select=title,lead_actor!inner(name)&lead_actor.name=neq.Bob&order=id",
        json!([
            {"title": "Alpha", "lead_actor": {"name": "Ann"}},
            {"title": "Gamma", "lead_actor": {"name": "Cat"}}
        ]),
    );
}

#[test]
fn aggregates_group_by_the_other_columns() {
    let s = aggregates();
    assert_json(&s.get("/films?select=count()"), 200, json!([{"count": 4}]));
    assert_json(
        &s.get("/films?select=director_id,n:count(),year.max()&order=director_id.nullsfirst"),
        200,
        json!([
            {"director_id": null, "n": 1, "max": 2020},
            {"director_id": 1, "n": 2, "max": 2005},
            {"director_id": 2, "n": 1, "max": 2010}
        ]),
    );
    assert_json(
        &s.get("/films?select=year.avg()::int"),
        200,
        json!([{"avg": 2009}]),
    );
    assert_json(
        &s.get("/films?select=total:year::numeric.sum()::text"),
        200,
        json!([{"total": "8034"}]),
    );
}

#[test]
fn aggregates_inside_embeds_and_hoisted_from_spreads() {
    let s = aggregates();
    assert_json(
        &s.get("/directors?select=name,films!director_id(year.sum())&order=id"),
        200,
        json!([
            {"name": "Ava", "films": [{"sum": 4004}]},
            {"name": "Ben", "films": [{"sum": 2010}]},
            {"name": "Cy", "films": [{"sum": null}]}
        ]),
    );
    assert_json(
        &s.get(
            "/films?select=director_id,...film_details(budget.sum())&order=director_id.nullsfirst",
        ),
        200,
        json!([
            {"director_id": null, "sum": null},
            {"director_id": 1, "sum": 100},
            {"director_id": 2, "sum": 300}
        ]),
    );
    let r = s.get("/directors?select=name,...films!director_id(year.sum())");
    assert_json(
        &r,
        400,
        json!({"code": "PGRST127", "message": "Feature not implemented", "hint": null,
               "details": "Aggregates are not implemented for one-to-many or many-to-many spreads."}),
    );
}

#[test]
fn aggregates_are_refused_unless_enabled() {
    let r = server().get("/films?select=year.sum()");
    assert_json(
        &r,
        400,
        json!({"code": "PGRST123", "details": null, "hint": null,
               "message": "Use of aggregate functions is not allowed"}),
    );
    let r = server().get("/directors?select=films!director_id(count())");
    assert_eq!(r.json()["code"], "PGRST123");
    // The legacy `select=count` still works.
    check("/films?select=count", json!([{"count": 4}]));
}
