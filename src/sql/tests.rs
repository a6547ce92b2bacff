//! SQL snapshots: the statements plans render to.
use super::*;
use crate::plan::read::read_plan;
use crate::plan::Negotiated;
use crate::request::{parse_query, Action, ApiRequest, CountPref, Method};
use crate::schema::{fixtures, Cardinality, Junction, Relationship, SchemaCache};

fn table() -> Table {
    fixtures::table(
        "items",
        &[
            ("id", "int4"),
            ("data", "jsonb"),
            ("doc", "tsvector"),
            ("body", "text"),
        ],
        &["id"],
    )
}

fn cache() -> SchemaCache {
    let mut cache = SchemaCache::default();
    let t = table();
    cache
        .tables
        .entry(t.schema.clone())
        .or_default()
        .insert(t.name.clone(), t);
    cache
}

fn request(query: &str) -> ApiRequest {
    ApiRequest {
        method: Method::Get,
        action: Action::Read {
            relation: "items".into(),
        },
        query: parse_query(query).unwrap(),
        prefs: Default::default(),
        range: None,
        path: "/items".into(),
        headers: Default::default(),
        cookies: vec![],
        profile: None,
        authorization: None,
        accept: None,
        content_type: None,
    }
}

fn render(query: &str, count: Option<CountPref>) -> Statement {
    let cache = cache();
    let mut req = request(query);
    req.prefs.count = count;
    let mut plan = read_plan(
        &req,
        &Negotiated::default(),
        &cache,
        "api",
        "items",
        &Default::default(),
    )
    .unwrap();
    // The aggregated form; the streamed one has its own tests below.
    plan.streamed = false;
    read_statement(&plan)
}

#[test]
fn an_unbounded_read_streams_one_row_per_item() {
    let cache = cache();
    let plan = |query: &str| {
        read_plan(
            &request(query),
            &Negotiated::default(),
            &cache,
            "api",
            "items",
            &Default::default(),
        )
        .unwrap()
    };
    let unbounded = plan("select=id&body=eq.x");
    assert!(unbounded.streamed);
    let s = read_statement(&unbounded);
    assert_eq!(s.shape, RowShape::Items);
    assert_eq!(
        s.sql,
        "WITH pgrst_source AS (SELECT \"api\".\"items\".\"id\" AS \"id\" FROM \"api\".\"items\" WHERE \"api\".\"items\".\"body\" = $1) SELECT NULL::int8, coalesce(p.page_total, 0)::int8, p.item, nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (VALUES (1)) pgrst_one LEFT JOIN (SELECT item, pg_catalog.count(*) OVER () AS page_total FROM (SELECT to_json(_postgrest_t)::text AS item FROM (SELECT * FROM pgrst_source) _postgrest_t OFFSET 0) pgrst_items) p ON true"
    );
    // Known to be small: aggregated as before.
    assert!(!plan("select=id&id=eq.1").streamed);
    assert!(!plan("select=id&limit=1000").streamed);
    assert!(plan("select=id&limit=1001").streamed);
    assert!(plan("select=id&id=gt.1").streamed);
    assert!(plan("select=id&id=not.eq.1").streamed);
}

#[test]
fn a_streamed_exact_count_is_the_window_count_or_its_own_query() {
    let cache = cache();
    let mut req = request("select=id");
    req.prefs.count = Some(CountPref::Exact);
    let plan = read_plan(
        &req,
        &Negotiated::default(),
        &cache,
        "api",
        "items",
        &Default::default(),
    )
    .unwrap();
    assert!(read_statement(&plan).sql.contains(
        " SELECT coalesce(p.page_total, 0)::int8, coalesce(p.page_total, 0)::int8, p.item"
    ));
    let mut req = request("select=id&offset=5");
    req.prefs.count = Some(CountPref::Exact);
    let plan = read_plan(
        &req,
        &Negotiated::default(),
        &cache,
        "api",
        "items",
        &Default::default(),
    )
    .unwrap();
    assert!(plan.streamed);
    assert!(read_statement(&plan).sql.contains(" SELECT (SELECT pg_catalog.count(*) FROM pgrst_source_count)::int8, coalesce(p.page_total, 0)::int8, p.item"));
}

#[test]
fn quoting() {
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(quote_ident("\"\""), "\"\"\"\"\"\"");
    assert_eq!(quote_ident(""), "\"\"");
    assert_eq!(qualified("s\"", "t"), "\"s\"\"\".\"t\"");
    assert_eq!(
        quote_qualified("test.switch_role"),
        "\"test\".\"switch_role\""
    );
}

#[test]
fn a_row_ref_is_its_table_only_when_written_as_table_ref_writes_it() {
    let mut t = fixtures::table("it\"ems", &[("id", "int4")], &["id"]);
    t.schema = "a\"pi".into();
    assert_eq!(whole_row(&table_ref(&t), &t), "\"it\"\"ems\"");
    for other in [
        "\"a\"pi\".\"it\"ems\"",
        "\"a\"\"pi\".\"it\"\"ems\"x",
        "\"it\"\"ems\"",
        "x",
    ] {
        assert_eq!(whole_row(other, &t), other);
    }
}

#[test]
fn filters_bind_every_value() {
    let s = render("select=id,x:data->a->>b&id=in.(1,2)&body=like.*a*&or=(id.eq.1,id.not.is.null)&doc=fts(english).cat&body=fts.dog&order=data->n.desc.nullslast", None);
    assert_eq!(
        s.sql,
        "WITH pgrst_source AS (SELECT \"api\".\"items\".\"id\" AS \"id\", \"api\".\"items\".\"data\"->$1::text->>$2::text AS \"x\" FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" = ANY($3) AND \"api\".\"items\".\"body\" LIKE $4 AND (\"api\".\"items\".\"id\" = $5 OR NOT (\"api\".\"items\".\"id\" IS NULL)) AND \"api\".\"items\".\"doc\" @@ to_tsquery($6::regconfig, $7) AND to_tsvector(\"api\".\"items\".\"body\") @@ to_tsquery($8) ORDER BY \"api\".\"items\".\"data\"->$9::text DESC NULLS LAST) SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"
    );
    assert_eq!(
        s.params,
        vec![
            "a",
            "b",
            "{\"1\",\"2\"}",
            "%a%",
            "1",
            "english",
            "cat",
            "dog",
            "n"
        ]
    );
}

#[test]
fn exact_count_with_a_page_uses_its_own_query() {
    let s = render("id=gt.1&limit=10", Some(CountPref::Exact));
    assert!(s.sql.contains("LIMIT $2) , pgrst_source_count AS (SELECT 1 FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" > $3)") || s.sql.contains("LIMIT $2), pgrst_source_count AS (SELECT 1 FROM \"api\".\"items\" WHERE \"api\".\"items\".\"id\" > $3)"), "{}", s.sql);
    assert_eq!(s.params, vec!["1", "10", "1"]);
}

#[test]
fn non_json_columns_are_wrapped_for_paths() {
    let s = render("select=body->0", None);
    assert!(s
        .sql
        .contains("to_jsonb(\"api\".\"items\".\"body\")->$1::int AS \"body\""));
}

fn simple_table(name: &str, cols: &[&str]) -> Table {
    let typed: Vec<(&str, &str)> = cols.iter().map(|c| (*c, "int4")).collect();
    fixtures::table(name, &typed, &["id"])
}

fn rel(table: &str, foreign: &str, card: Cardinality, cols: &[(&str, &str)]) -> Relationship {
    fixtures::relationship(table, foreign, card, cols)
}

/// films -> directors (M2O), directors -> films (O2M), films <-> actors through roles.
fn film_cache() -> SchemaCache {
    let mut cache = SchemaCache::default();
    for t in [
        simple_table("films", &["id", "director_id"]),
        simple_table("directors", &["id"]),
        simple_table("actors", &["id"]),
        simple_table("roles", &["film_id", "actor_id"]),
    ] {
        cache
            .tables
            .entry("api".into())
            .or_default()
            .insert(t.name.clone(), t);
    }
    let mut m2m = rel("films", "actors", Cardinality::ManyToMany, &[]);
    m2m.junction = Some(Box::new(Junction {
        table: "roles".into(),
        source_constraint: "roles_film_id_fkey".into(),
        source_columns: vec![("id".into(), "film_id".into())],
        target_constraint: "roles_actor_id_fkey".into(),
        target_columns: vec![("actor_id".into(), "id".into())],
    }));
    cache.relationships.insert(
        ("api".into(), "films".into()),
        vec![
            rel(
                "films",
                "directors",
                Cardinality::ManyToOne,
                &[("director_id", "id")],
            ),
            m2m,
        ],
    );
    cache.relationships.insert(
        ("api".into(), "directors".into()),
        vec![rel(
            "directors",
            "films",
            Cardinality::OneToMany,
            &[("id", "director_id")],
        )],
    );
    cache
}

fn render_on(cache: &SchemaCache, table: &str, query: &str) -> String {
    let mut req = request(query);
    req.action = Action::Read {
        relation: table.into(),
    };
    let mut plan = read_plan(
        &req,
        &Negotiated::default(),
        cache,
        "api",
        table,
        &Default::default(),
    )
    .unwrap();
    plan.streamed = false;
    read_statement(&plan).sql
}

const TAIL: &str = " SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t";

#[test]
fn many_to_one_is_one_lateral_join_in_one_statement() {
    let sql = render_on(&film_cache(), "films", "select=id,directors(id)");
    assert_eq!(
        sql,
        format!("WITH pgrst_source AS (SELECT \"api\".\"films\".\"id\" AS \"id\", row_to_json(\"films_directors_1\".*)::jsonb AS \"directors\" FROM \"api\".\"films\" LEFT JOIN LATERAL (SELECT \"directors_1\".\"id\" AS \"id\" FROM \"api\".\"directors\" AS \"directors_1\" WHERE \"directors_1\".\"id\" = \"api\".\"films\".\"director_id\") AS \"films_directors_1\" ON TRUE){TAIL}")
    );
}

#[test]
fn one_to_many_aggregates_children_in_a_lateral_subquery() {
    let sql = render_on(
        &film_cache(),
        "directors",
        "select=id,films!inner(id)&films.order=id.desc&films.limit=2",
    );
    assert_eq!(
        sql,
        format!("WITH pgrst_source AS (SELECT \"api\".\"directors\".\"id\" AS \"id\", COALESCE(\"directors_films_1\".\"directors_films_1\", '[]') AS \"films\" FROM \"api\".\"directors\" INNER JOIN LATERAL (SELECT json_agg(\"directors_films_1_rows\")::jsonb AS \"directors_films_1\" FROM (SELECT \"films_1\".\"id\" AS \"id\" FROM \"api\".\"films\" AS \"films_1\" WHERE \"films_1\".\"director_id\" = \"api\".\"directors\".\"id\" ORDER BY \"films_1\".\"id\" DESC LIMIT $1) AS \"directors_films_1_rows\") AS \"directors_films_1\" ON \"directors_films_1\".\"directors_films_1\" IS NOT NULL){TAIL}")
    );
}

#[test]
fn many_to_many_joins_the_junction_inside_the_lateral_subquery() {
    let sql = render_on(&film_cache(), "films", "select=id,actors(id)");
    assert_eq!(
        sql,
        format!("WITH pgrst_source AS (SELECT \"api\".\"films\".\"id\" AS \"id\", COALESCE(\"films_actors_1\".\"films_actors_1\", '[]') AS \"actors\" FROM \"api\".\"films\" LEFT JOIN LATERAL (SELECT json_agg(\"films_actors_1_rows\")::jsonb AS \"films_actors_1\" FROM (SELECT \"actors_1\".\"id\" AS \"id\" FROM \"api\".\"actors\" AS \"actors_1\", \"api\".\"roles\" AS \"films_actors_1_j\" WHERE \"films_actors_1_j\".\"film_id\" = \"api\".\"films\".\"id\" AND \"films_actors_1_j\".\"actor_id\" = \"actors_1\".\"id\") AS \"films_actors_1_rows\") AS \"films_actors_1\" ON TRUE){TAIL}")
    );
}

/// shipments -> orders on a two-column key (M2O).
fn composite_cache() -> SchemaCache {
    let mut cache = SchemaCache::default();
    for t in [
        simple_table("orders", &["id", "region", "num"]),
        simple_table("shipments", &["id", "order_region", "order_num"]),
    ] {
        cache
            .tables
            .entry("api".into())
            .or_default()
            .insert(t.name.clone(), t);
    }
    let key = [("order_region", "region"), ("order_num", "num")];
    cache.relationships.insert(
        ("api".into(), "shipments".into()),
        vec![rel("shipments", "orders", Cardinality::ManyToOne, &key)],
    );
    cache
}

#[test]
fn composite_keys_join_on_every_column_pair() {
    let sql = render_on(&composite_cache(), "shipments", "select=id,orders(id)");
    assert_eq!(
        sql,
        format!("WITH pgrst_source AS (SELECT \"api\".\"shipments\".\"id\" AS \"id\", row_to_json(\"shipments_orders_1\".*)::jsonb AS \"orders\" FROM \"api\".\"shipments\" LEFT JOIN LATERAL (SELECT \"orders_1\".\"id\" AS \"id\" FROM \"api\".\"orders\" AS \"orders_1\" WHERE \"orders_1\".\"region\" = \"api\".\"shipments\".\"order_region\" AND \"orders_1\".\"num\" = \"api\".\"shipments\".\"order_num\") AS \"shipments_orders_1\" ON TRUE){TAIL}")
    );
}

#[test]
fn spreads_and_ordering_by_a_to_one_embed_stay_one_statement() {
    let sql = render_on(
        &film_cache(),
        "films",
        "select=id,...directors(director:id)&order=directors(id).desc",
    );
    // The embed's subquery also gives the column the parent sorts by, under its own name.
    assert_eq!(
        sql,
        format!("WITH pgrst_source AS (SELECT \"api\".\"films\".\"id\" AS \"id\", \"films_directors_1\".\"director\" AS \"director\" FROM \"api\".\"films\" LEFT JOIN LATERAL (SELECT \"directors_1\".\"id\" AS \"director\", \"directors_1\".\"id\" AS \"pgrst_order_0\" FROM \"api\".\"directors\" AS \"directors_1\" WHERE \"directors_1\".\"id\" = \"api\".\"films\".\"director_id\") AS \"films_directors_1\" ON TRUE ORDER BY \"films_directors_1\".\"pgrst_order_0\" DESC){TAIL}")
    );
}

// Snapshots per plan kind, planned through the planner from requests as the server
// parses them.

fn shop() -> SchemaCache {
    use crate::schema::fixtures::{param, relationship, routine, table, Fixture};
    Fixture::default()
        .table(table(
            "addresses",
            &[("id", "int4"), ("city", "text")],
            &["id"],
        ))
        .table(table(
            "orders",
            &[("id", "int4"), ("address_id", "int4")],
            &["id"],
        ))
        .relationship(relationship(
            "orders",
            "addresses",
            Cardinality::ManyToOne,
            &[("address_id", "id")],
        ))
        .routine(routine("double", vec![param("n", "int4", true)], false))
        .build()
}

fn planned_sql(method: &str, target: &str, prefer: &str, body: Option<&str>) -> Statement {
    let cache = shop();
    let uri: hyper::Uri = target.parse().unwrap();
    let mut headers = hyper::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if !prefer.is_empty() {
        headers.insert("prefer", prefer.parse().unwrap());
    }
    let api = crate::request::parse(method, &uri, &headers).unwrap();
    let config =
        crate::config::Config::load(Some("db-schemas = \"api\""), Vec::<(String, String)>::new())
            .unwrap();
    let resolved = crate::plan::resolve(&api, &cache, &config).unwrap();
    let body = body.map(|b| bytes::Bytes::from(b.to_string()));
    match crate::plan::plan(&api, &resolved, &cache, &config, body).unwrap() {
        crate::plan::Plan::Read(mut p) => {
            p.streamed = false;
            read_statement(&p)
        }
        crate::plan::Plan::Mutate(mut p) => mutate_statement(&mut p),
        crate::plan::Plan::Call(p) => call_statement(&p),
        other => panic!("no statement for {other:?}"),
    }
}

#[test]
fn insert_returns_the_representation_read_from_the_written_rows() {
    let s = planned_sql(
        "POST",
        "/addresses",
        "return=representation",
        Some(r#"{"id":1,"city":"x"}"#),
    );
    assert_eq!(
        s.sql,
        r#"WITH pgrst_source AS (INSERT INTO "api"."addresses"("city", "id") SELECT _."city", _."id" FROM json_to_recordset(CASE WHEN json_typeof($1::json) = 'array' THEN $1::json ELSE json_build_array($1::json) END) AS _("city" text, "id" int4) RETURNING "api"."addresses".*) SELECT NULL::int8, pg_catalog.count(*)::int8, NULL::int8, (coalesce(json_agg(_postgrest_t), '[]')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT "addresses".* FROM pgrst_source AS "addresses") _postgrest_t"#
    );
    assert_eq!(s.params, [r#"{"id":1,"city":"x"}"#] as [&str; 1]);
    assert_eq!(s.shape, RowShape::Written);
}

#[test]
fn an_upsert_counts_the_rows_it_inserted() {
    let s = planned_sql(
        "POST",
        "/addresses?select=id",
        "resolution=merge-duplicates,return=representation",
        Some(r#"[{"id":1,"city":"x"}]"#),
    );
    assert_eq!(
        s.sql,
        r#"WITH pgrst_mutation AS (INSERT INTO "api"."addresses"("city", "id") SELECT _."city", _."id" FROM json_to_recordset(CASE WHEN json_typeof($1::json) = 'array' THEN $1::json ELSE json_build_array($1::json) END) AS _("city" text, "id" int4) ON CONFLICT ("id") DO UPDATE SET "city" = EXCLUDED."city", "id" = EXCLUDED."id" RETURNING "api"."addresses"."id", (xmax = 0) AS pgrst_inserted), pgrst_source AS (SELECT "id" FROM pgrst_mutation) SELECT NULL::int8, pg_catalog.count(*)::int8, (SELECT pg_catalog.count(*) FROM pgrst_mutation WHERE pgrst_inserted)::int8, (coalesce(json_agg(_postgrest_t), '[]')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT "addresses"."id" AS "id" FROM pgrst_source AS "addresses") _postgrest_t"#
    );
    assert_eq!(s.params, [r#"[{"id":1,"city":"x"}]"#] as [&str; 1]);
    assert_eq!(s.shape, RowShape::Written);
}

#[test]
fn put_inserts_or_replaces_the_row_of_its_key() {
    let s = planned_sql(
        "PUT",
        "/addresses?id=eq.1",
        "",
        Some(r#"{"id":1,"city":"x"}"#),
    );
    assert_eq!(
        s.sql,
        r#"WITH pgrst_mutation AS (INSERT INTO "api"."addresses"("city", "id") SELECT _."city", _."id" FROM json_to_recordset(json_build_array(CASE WHEN json_typeof($1::json) = 'array' THEN $1::json->0 ELSE $1::json END)) AS _("city" text, "id" int4) WHERE _."id" = $2 ON CONFLICT ("id") DO UPDATE SET "city" = EXCLUDED."city", "id" = EXCLUDED."id" RETURNING 1, (xmax = 0) AS pgrst_inserted), pgrst_source AS (SELECT 1 FROM pgrst_mutation) SELECT NULL::int8, pg_catalog.count(*)::int8, (SELECT pg_catalog.count(*) FROM pgrst_mutation WHERE pgrst_inserted)::int8, (''), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"#
    );
    assert_eq!(s.params, [r#"{"id":1,"city":"x"}"#, r#"1"#] as [&str; 2]);
    assert_eq!(s.shape, RowShape::Written);
}

#[test]
fn patch_updates_from_the_first_object() {
    let s = planned_sql("PATCH", "/addresses?city=eq.x", "", Some(r#"{"city":"y"}"#));
    assert_eq!(
        s.sql,
        r#"WITH pgrst_source AS (UPDATE "api"."addresses" SET "city" = pgrst_body."city" FROM (SELECT * FROM json_to_recordset(json_build_array(CASE WHEN json_typeof($1::json) = 'array' THEN $1::json->0 ELSE $1::json END)) AS _("city" text)) AS pgrst_body WHERE "api"."addresses"."city" = $2 RETURNING 1) SELECT NULL::int8, pg_catalog.count(*)::int8, NULL::int8, (''), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"#
    );
    assert_eq!(s.params, [r#"{"city":"y"}"#, r#"x"#] as [&str; 2]);
    assert_eq!(s.shape, RowShape::Written);
}

#[test]
fn delete_binds_its_filter_values() {
    let s = planned_sql("DELETE", "/addresses?id=gt.5", "", None);
    assert_eq!(
        s.sql,
        r#"WITH pgrst_source AS (DELETE FROM "api"."addresses" WHERE "api"."addresses"."id" > $1 RETURNING 1) SELECT NULL::int8, pg_catalog.count(*)::int8, NULL::int8, (''), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"#
    );
    assert_eq!(s.params, [r#"5"#] as [&str; 1]);
    assert_eq!(s.shape, RowShape::Written);
}

#[test]
fn a_get_call_binds_typed_arguments() {
    let s = planned_sql("GET", "/rpc/double?n=21", "", None);
    assert_eq!(
        s.sql,
        r#"WITH pgrst_call AS (SELECT pgrst_call.* FROM "api"."double"("n" := $1::int4) AS pgrst_call(pgrst_scalar)), pgrst_source AS (SELECT * FROM pgrst_call AS "double") SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"#
    );
    assert_eq!(s.params, [r#"21"#] as [&str; 1]);
    assert_eq!(s.shape, RowShape::Rows);
}

#[test]
fn a_post_call_reads_named_arguments_from_the_body() {
    let s = planned_sql("POST", "/rpc/double", "", Some(r#"{"n":21}"#));
    assert_eq!(
        s.sql,
        r#"WITH pgrst_call AS (SELECT pgrst_call.* FROM json_to_record($1::json) AS pgrst_body("n" int4), LATERAL "api"."double"("n" := pgrst_body."n") AS pgrst_call(pgrst_scalar)), pgrst_source AS (SELECT * FROM pgrst_call AS "double") SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t.pgrst_scalar)->0, 'null')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"#
    );
    assert_eq!(s.params, [r#"{"n":21}"#] as [&str; 1]);
    assert_eq!(s.shape, RowShape::Rows);
}

#[test]
fn ordering_by_an_embedded_column_it_outputs_uses_the_join() {
    let s = planned_sql(
        "GET",
        "/orders?select=id,addresses(city)&order=addresses(city)",
        "",
        None,
    );
    assert_eq!(
        s.sql,
        r#"WITH pgrst_source AS (SELECT "api"."orders"."id" AS "id", row_to_json("orders_addresses_1".*)::jsonb AS "addresses" FROM "api"."orders" LEFT JOIN LATERAL (SELECT "addresses_1"."city" AS "city" FROM "api"."addresses" AS "addresses_1" WHERE "addresses_1"."id" = "api"."orders"."address_id") AS "orders_addresses_1" ON TRUE ORDER BY "orders_addresses_1"."city") SELECT NULL::int8, pg_catalog.count(*)::int8, (coalesce(json_agg(_postgrest_t), '[]')), nullif(current_setting('response.headers', true), ''), nullif(current_setting('response.status', true), '') FROM (SELECT * FROM pgrst_source) _postgrest_t"#
    );
    assert_eq!(s.params, [] as [&str; 0]);
    assert_eq!(s.shape, RowShape::Rows);
}

#[test]
fn the_envelope_sets_search_path_role_settings_role_and_request_gucs_in_one_statement() {
    let uri: hyper::Uri = "/addresses?id=eq.1".parse().unwrap();
    let mut headers = hyper::HeaderMap::new();
    headers.insert("prefer", "timezone=UTC".parse().unwrap());
    headers.insert("cookie", "a=b".parse().unwrap());
    let api = crate::request::parse("GET", &uri, &headers).unwrap();
    let file = "db-schemas = \"api\"\ndb-pre-request = \"api.check\"\napp.settings.x = \"1\"";
    let config = crate::config::Config::load(Some(file), Vec::<(String, String)>::new()).unwrap();
    let identity = crate::auth::Identity {
        role: "web_user".into(),
        anonymous: false,
        claims: r#"{"role":"web_user"}"#.into(),
    };
    let role_settings = [(
        "default_transaction_isolation".to_string(),
        "serializable".to_string(),
    )];
    let shape = envelope::TxShape {
        schema: "api",
        read_only: true,
        role_settings: &role_settings,
        hoisted: vec![("statement_timeout".into(), "5s".into())],
    };
    let env = Envelope::for_request(&api, &identity, &config, shape);
    assert_eq!(
        env.begin_sql(),
        "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"
    );
    assert_eq!(
        env.pre_request_sql().as_deref(),
        Some("select \"api\".\"check\"()")
    );
    let (sql, params) = env.settings_statement(false);
    assert_eq!(
        sql,
        "select set_config('search_path', $1, true), set_config($2, $3, true), \
         set_config($4, $5, true), set_config($6, $7, true), set_config($8, $9, true), \
         set_config($10, $11, true), set_config($12, $13, true), set_config($14, $15, true), \
         set_config($16, $17, true), set_config($18, $19, true), set_config($20, $21, true)"
    );
    assert_eq!(
        params,
        [
            r#""api", "public""#,
            "default_transaction_isolation",
            "serializable",
            "role",
            "web_user",
            "request.jwt.claims",
            r#"{"role":"web_user"}"#,
            "request.method",
            "GET",
            "request.path",
            "/addresses",
            "request.headers",
            r#"{"prefer":"timezone=UTC"}"#,
            "request.cookies",
            r#"{"a":"b"}"#,
            "timezone",
            "UTC",
            "app.settings.x",
            "1",
            "statement_timeout",
            "5s",
        ]
    );
}
