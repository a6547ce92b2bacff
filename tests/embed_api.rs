//! Resource embedding end to end: every relationship shape of the fixture, hints, errors.

mod common;

use common::{assert_json, server};
use serde_json::json;

#[track_caller]
fn check(path: &str, expected: serde_json::Value) {
    assert_json(&server().get(path), 200, expected);
}

#[test]
fn ambiguous_embed_lists_the_candidates() {
    let r = server().get("/films?select=title,directors(name)");
    assert_json(
        &r,
        300,
        json!({
            "code": "PGRST201",
            "details": [
                {"cardinality": "many-to-one", "embedding": "films with directors",
                 "relationship": "films_director_id_fkey using films(director_id) and directors(id)"},
                {"cardinality": "many-to-one", "embedding": "films with directors",
                 "relationship": "films_codirector_id_fkey using films(codirector_id) and directors(id)"}
            ],
            "hint": "Try changing 'directors' to one of the following: 'directors!films_director_id_fkey', 'directors!films_codirector_id_fkey'. Find the desired relationship in the 'details' key.",
            "message": "Could not embed because more than one relationship was found for 'films' and 'directors'"
        }),
    );
}

#[test]
fn many_to_one_by_constraint_column_and_hint() {
    check(
        "/films?select=title,director:directors!films_director_id_fkey(name)&order=id",
        json!([
            {"title": "Alpha", "director": {"name": "Ava"}},
            {"title": "Beta", "director": {"name": "Ava"}},
            {"title": "Gamma", "director": {"name": "Ben"}},
            {"title": "Delta", "director": null}
        ]),
    );
    check(
        "/films?select=title,director_id(name)&id=eq.3",
        json!([{"title": "Gamma", "director_id": {"name": "Ben"}}]),
    );
    check(
        "/films?select=title,directors!codirector_id(name)&id=eq.2",
        json!([{"title": "Beta", "directors": {"name": "Ben"}}]),
    );
}

#[test]
fn one_to_many_with_embedded_order() {
    check(
        "/directors?select=name,films!director_id(title)&order=id&films.order=id",
        json!([
            {"name": "Ava", "films": [{"title": "Alpha"}, {"title": "Beta"}]},
            {"name": "Ben", "films": [{"title": "Gamma"}]},
            {"name": "Cy", "films": []}
        ]),
    );
}

#[test]
fn many_to_many_through_a_junction() {
    check(
        "/films?select=title,actors(name)&order=id&actors.order=name.desc",
        json!([
            {"title": "Alpha", "actors": [{"name": "Bob"}, {"name": "Ann"}]},
            {"title": "Beta", "actors": [{"name": "Bob"}]},
            {"title": "Gamma", "actors": [{"name": "Cat"}, {"name": "Ann"}]},
            {"title": "Delta", "actors": []}
        ]),
    );
}

#[test]
fn one_to_one_both_ways() {
    check(
        "/films?select=title,film_details(budget)&order=id",
        json!([
            {"title": "Alpha", "film_details": {"budget": 100}},
            {"title": "Beta", "film_details": null},
            {"title": "Gamma", "film_details": {"budget": 300}},
            {"title": "Delta", "film_details": null}
        ]),
    );
    check(
        "/film_details?select=budget,films(title)&order=film_id",
        json!([
            {"budget": 100, "films": {"title": "Alpha"}},
            {"budget": 300, "films": {"title": "Gamma"}}
        ]),
    );
    check(
        "/film_details?select=*,films(title)&film_id=eq.3",
        json!([{"film_id": 3, "budget": 300, "films": {"title": "Gamma"}}]),
    );
}

#[test]
fn self_reference_parent_and_children() {
    check(
        "/employees?select=name,manager:manager_id(name),reports:employees(name)&order=id&reports.order=id",
        json!([
            {"name": "Boss", "manager": null, "reports": [{"name": "Mid"}, {"name": "Other"}]},
            {"name": "Mid", "manager": {"name": "Boss"}, "reports": [{"name": "Low"}]},
            {"name": "Low", "manager": {"name": "Mid"}, "reports": []},
            {"name": "Other", "manager": {"name": "Boss"}, "reports": []}
        ]),
    );
}

#[test]
fn composite_foreign_keys() {
    check(
        "/boxes?select=id,shelves(label)&order=id",
        json!([
            {"id": 10, "shelves": {"label": "bottom"}},
            {"id": 11, "shelves": {"label": "top"}},
            {"id": 12, "shelves": null}
        ]),
    );
    check(
        "/shelves?select=label,boxes(id)&order=slot",
        json!([
            {"label": "top", "boxes": [{"id": 11}]},
            {"label": "bottom", "boxes": [{"id": 10}]}
        ]),
    );
}

#[test]
fn views_embed_like_their_tables_even_in_chains() {
    check(
        "/recent_films?select=title,directors(name)&order=id",
        json!([
            {"title": "Beta", "directors": {"name": "Ava"}},
            {"title": "Gamma", "directors": {"name": "Ben"}},
            {"title": "Delta", "directors": null}
        ]),
    );
    check(
        "/recent_films_again?select=title,actors(name)&id=eq.3&actors.order=name",
        json!([{"title": "Gamma", "actors": [{"name": "Ann"}, {"name": "Cat"}]}]),
    );
    check(
        "/directors?select=name,recent_films(title)&id=eq.1",
        json!([{"name": "Ava", "recent_films": [{"title": "Beta"}]}]),
    );
}

#[test]
fn inner_joins_drop_parents_without_matches() {
    let path = "/directors?select=name,films!director_id!inner(title)&films.year=gt.2000&order=id";
    check(
        path,
        json!([
            {"name": "Ava", "films": [{"title": "Beta"}]},
            {"name": "Ben", "films": [{"title": "Gamma"}]}
        ]),
    );
    let r = server().get_with(path, &[("Prefer", "count=exact")]);
    assert_eq!(r.header("content-range"), Some("0-1/2"));
    let r = server().get_with(&format!("{path}&limit=1"), &[("Prefer", "count=exact")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("0-0/2"));
}

#[test]
fn null_embed_filters() {
    check(
        "/directors?select=name,films!director_id()&films=is.null",
        json!([{"name": "Cy"}]),
    );
    check(
        "/directors?select=name,films!director_id()&films=not.is.null&order=id",
        json!([{"name": "Ava"}, {"name": "Ben"}]),
    );
    check(
        "/films?select=title,film_details()&film_details=is.null&order=id",
        json!([{"title": "Beta"}, {"title": "Delta"}]),
    );
    check(
        "/directors?select=name,films!director_id(),codirected:films!codirector_id()&or=(films.not.is.null,codirected.not.is.null)&order=id",
        json!([{"name": "Ava"}, {"name": "Ben"}]),
    );
}

#[test]
fn spreads_lift_columns_into_the_parent() {
    check(
        "/films?select=title,...directors!director_id(director:name)&order=id",
        json!([
            {"title": "Alpha", "director": "Ava"},
            {"title": "Beta", "director": "Ava"},
            {"title": "Gamma", "director": "Ben"},
            {"title": "Delta", "director": null}
        ]),
    );
    check(
        "/directors?select=name,...films!director_id(titles:title)&order=id&films.order=id",
        json!([
            {"name": "Ava", "titles": ["Alpha", "Beta"]},
            {"name": "Ben", "titles": ["Gamma"]},
            {"name": "Cy", "titles": []}
        ]),
    );
}

#[test]
fn ordering_by_a_to_one_embed() {
    check(
        "/films?select=title,directors!director_id(name)&order=directors(name).desc.nullslast,id",
        json!([
            {"title": "Gamma", "directors": {"name": "Ben"}},
            {"title": "Alpha", "directors": {"name": "Ava"}},
            {"title": "Beta", "directors": {"name": "Ava"}},
            {"title": "Delta", "directors": null}
        ]),
    );
    // The column ordered by need not be selected, nor keep its name; it stays out of the
    // embedded object, spread or not.
    check(
        "/films?select=title,directors!director_id(who:name)&order=directors(id).desc.nullslast,id",
        json!([
            {"title": "Gamma", "directors": {"who": "Ben"}},
            {"title": "Alpha", "directors": {"who": "Ava"}},
            {"title": "Beta", "directors": {"who": "Ava"}},
            {"title": "Delta", "directors": null}
        ]),
    );
    check(
        "/films?select=title,...directors!director_id(who:name)&order=directors(name).asc.nullsfirst,id",
        json!([
            {"title": "Delta", "who": null},
            {"title": "Alpha", "who": "Ava"},
            {"title": "Beta", "who": "Ava"},
            {"title": "Gamma", "who": "Ben"}
        ]),
    );
    let r = server().get("/directors?select=name,films!director_id(title)&order=films(title)");
    assert_json(
        &r,
        400,
        json!({"code": "PGRST118", "hint": null,
               "details": "'directors' and 'films' do not form a many-to-one or one-to-one relationship",
               "message": "A related order on 'films' is not possible"}),
    );
    let r = server().get("/films?select=title&order=directors(name)");
    assert_json(
        &r,
        400,
        json!({"code": "PGRST108", "details": null,
               "hint": "Verify that 'directors' is included in the 'select' query parameter.",
               "message": "'directors' is not an embedded resource in this request"}),
    );
}

#[test]
fn embedded_paging_filters_and_nesting() {
    check(
        "/directors?select=name,films!director_id(title)&films.order=id&films.limit=1&films.offset=1&id=eq.1",
        json!([{"name": "Ava", "films": [{"title": "Beta"}]}]),
    );
    check(
        "/films?select=title,actors(name)&actors.or=(name.eq.Ann,name.eq.Cat)&id=eq.1",
        json!([{"title": "Alpha", "actors": [{"name": "Ann"}]}]),
    );
    check(
        "/directors?select=name,films!director_id(title,actors(name),film_details(budget))&id=eq.1&films.order=id&films.actors.order=name",
        json!([{"name": "Ava", "films": [
            {"title": "Alpha", "actors": [{"name": "Ann"}, {"name": "Bob"}], "film_details": {"budget": 100}},
            {"title": "Beta", "actors": [{"name": "Bob"}], "film_details": null}
        ]}]),
    );
}

#[test]
fn missing_relationships_are_pgrst200() {
    let r = server().get("/films?select=title,shelves(*)");
    assert_json(
        &r,
        400,
        json!({"code": "PGRST200", "hint": null,
               "details": "Searched for a foreign key relationship between 'films' and 'shelves' in the schema 'test_api', but no matches were found.",
               "message": "Could not find a relationship between 'films' and 'shelves' in the schema cache"}),
    );
    let r = server().get("/films?select=title,directors!nope(name)");
    assert_json(
        &r,
        400,
        json!({"code": "PGRST200", "hint": null,
               "details": "Searched for a foreign key relationship between 'films' and 'directors' using the hint 'nope' in the schema 'test_api', but no matches were found.",
               "message": "Could not find a relationship between 'films' and 'directors' in the schema cache"}),
    );
    let r = server().get("/films?select=title,director(name)");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["hint"],
        "Perhaps you meant 'directors' instead of 'director'."
    );
}

#[test]
fn aliased_embeds_are_addressed_by_alias_or_legacy_target_name() {
    check(
        "/directors?select=name,made:films!director_id(title)&made.order=id&id=eq.1",
        json!([{"name": "Ava", "made": [{"title": "Alpha"}, {"title": "Beta"}]}]),
    );
    check(
        "/directors?select=name,made:films!director_id(title)&films.order=title.desc&id=eq.1",
        json!([{"name": "Ava", "made": [{"title": "Beta"}, {"title": "Alpha"}]}]),
    );
    let strict = common::server_with(&[("PGRST_URL_USE_LEGACY_TARGET_NAMES", "false")]);
    let r = strict.get("/directors?select=name,made:films!director_id(title)&films.order=title");
    assert_json(
        &r,
        400,
        json!({"code": "PGRST108",
               "details": "Target names are not allowed in filters if they have an alias",
               "hint": "Change 'films' to 'made' in filters, orders or limits.",
               "message": "'films' is not an embedded resource in this request"}),
    );
}
