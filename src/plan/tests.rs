//! The planner as a pure function: requests parsed as the server parses them, planned
//! against caches built in memory, one test per decision the planner makes.

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;

use super::fields::{Condition, OrderKey, Output, Source};
use super::*;
use crate::request::{self, MediaType};
use crate::schema::fixtures::{column, param, relationship, routine, table, Fixture};
use crate::schema::{Cardinality, QualifiedName};

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> ApiRequest {
    let uri: hyper::Uri = target.parse().unwrap();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    request::parse(method, &uri, &map).unwrap()
}

fn config(extra: &str) -> Config {
    let file = format!("db-schemas = \"api\"\n{extra}");
    Config::load(Some(&file), Vec::<(String, String)>::new()).unwrap()
}

fn planned<'a>(
    cache: &'a SchemaCache,
    api: &ApiRequest,
    config: &Config,
    body: Option<&str>,
) -> Result<Plan<'a>, ApiError> {
    let resolved = resolve(api, cache, config)?;
    plan(
        api,
        &resolved,
        cache,
        config,
        body.map(|b| Bytes::from(b.to_string())),
    )
}

fn get<'a>(cache: &'a SchemaCache, target: &str) -> Result<ReadPlan<'a>, ApiError> {
    get_with(cache, target, &[], "")
}

fn get_with<'a>(
    cache: &'a SchemaCache,
    target: &str,
    headers: &[(&str, &str)],
    extra_config: &str,
) -> Result<ReadPlan<'a>, ApiError> {
    let api = request("GET", target, headers);
    match planned(cache, &api, &config(extra_config), None)? {
        Plan::Read(read) => Ok(read),
        other => panic!("not a read: {other:?}"),
    }
}

/// orders reference addresses twice (billing, shipping) and a customer; items reference
/// orders. `price` is a domain with representation casts; `with_tax` a computed field.
fn shop() -> SchemaCache {
    let mut orders = table(
        "orders",
        &[
            ("id", "int4"),
            ("customer_id", "int4"),
            ("billing_id", "int4"),
            ("shipping_id", "int4"),
            ("price", "money_domain"),
            ("data", "jsonb"),
        ],
        &["id"],
    );
    orders.columns[4].repr = Some(Box::new(crate::schema::Repr {
        to_json: Some(QualifiedName::new("api", "price_json")),
        from_json: None,
        from_text: Some(QualifiedName::new("api", "price_from_text")),
    }));
    let mut with_tax = column("with_tax", "numeric");
    with_tax.function = Some(Box::new(QualifiedName::new("api", "with_tax")));
    orders.computed_fields.push(with_tax);
    let mut billing = relationship(
        "orders",
        "addresses",
        Cardinality::ManyToOne,
        &[("billing_id", "id")],
    );
    billing.constraint = "orders_billing_fkey".into();
    let mut shipping = relationship(
        "orders",
        "addresses",
        Cardinality::ManyToOne,
        &[("shipping_id", "id")],
    );
    shipping.constraint = "orders_shipping_fkey".into();
    Fixture::default()
        .table(orders)
        .table(table(
            "addresses",
            &[("id", "int4"), ("city", "text")],
            &["id"],
        ))
        .table(table(
            "customers",
            &[("id", "int4"), ("name", "text")],
            &["id"],
        ))
        .table(table(
            "items",
            &[("id", "int4"), ("order_id", "int4"), ("qty", "int4")],
            &["id"],
        ))
        .relationship(billing)
        .relationship(shipping)
        .relationship(relationship(
            "orders",
            "customers",
            Cardinality::ManyToOne,
            &[("customer_id", "id")],
        ))
        .relationship(relationship(
            "customers",
            "orders",
            Cardinality::OneToMany,
            &[("id", "customer_id")],
        ))
        .relationship(relationship(
            "orders",
            "items",
            Cardinality::OneToMany,
            &[("id", "order_id")],
        ))
        .relationship(relationship(
            "items",
            "orders",
            Cardinality::ManyToOne,
            &[("order_id", "id")],
        ))
        .routine(routine("total", vec![param("a", "int4", true)], false))
        .routine(routine(
            "total",
            vec![param("a", "int4", true), param("b", "int4", true)],
            false,
        ))
        .routine(routine("reset", vec![], true))
        .build()
}

#[test]
fn two_foreign_keys_to_one_table_are_ambiguous_until_a_hint_picks_one() {
    let cache = shop();
    match get(&cache, "/orders?select=id,addresses(city)") {
        Err(ApiError::AmbiguousEmbed { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("{other:?}"),
    }
    let by_column = get(&cache, "/orders?select=id,addresses!billing_id(city)").unwrap();
    assert_eq!(
        by_column.root.embeds[0].rel.constraint,
        "orders_billing_fkey"
    );
    let by_constraint = get(
        &cache,
        "/orders?select=id,addresses!orders_shipping_fkey(city)",
    )
    .unwrap();
    assert_eq!(
        by_constraint.root.embeds[0].rel.constraint,
        "orders_shipping_fkey"
    );
    match get(&cache, "/orders?select=id,customer(name)") {
        Err(ApiError::NoRelationship { suggestion, .. }) => {
            assert_eq!(suggestion.as_deref(), Some("customers"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn negotiation_picks_a_media_type_the_resource_can_answer() {
    let cache = shop();
    let csv = get_with(&cache, "/orders", &[("Accept", "text/csv")], "").unwrap();
    assert_eq!(csv.media_type, MediaType::Csv);
    let one = [("Accept", "application/vnd.pgrst.object+json")];
    assert!(get_with(&cache, "/orders", &one, "")
        .unwrap()
        .media_type
        .is_singular());
    let unknown = get_with(&cache, "/orders", &[("Accept", "text/unknown")], "");
    assert!(matches!(unknown, Err(ApiError::NotAcceptable(_))));
    // The plan media type exists only with db-plan-enabled.
    let explain = [("Accept", "application/vnd.pgrst.plan+json")];
    let off = get_with(&cache, "/orders", &explain, "");
    assert!(matches!(off, Err(ApiError::NotAcceptable(_))));
    let api = request("GET", "/orders", &explain);
    let resolved = resolve(&api, &cache, &config("db-plan-enabled = true")).unwrap();
    assert!(resolved.negotiated.explain.is_some());
}

#[test]
fn paging_takes_limit_offset_range_and_db_max_rows() {
    let cache = shop();
    let plan = get(&cache, "/orders?limit=10&offset=5").unwrap();
    assert_eq!((plan.root.offset, plan.root.limit), (5, Some(10)));
    assert!(plan.paged);
    let ranged = get_with(&cache, "/orders", &[("Range", "2-4")], "").unwrap();
    assert_eq!((ranged.root.offset, ranged.root.limit), (2, Some(3)));
    let capped = get_with(
        &cache,
        "/orders?select=id,items(id)",
        &[],
        "db-max-rows = 3",
    )
    .unwrap();
    assert_eq!(capped.root.limit, Some(3));
    assert_eq!(capped.root.embeds[0].node.limit, Some(3));
    let unpaged = get(&cache, "/orders").unwrap();
    assert!(!unpaged.paged && unpaged.root.limit.is_none());
}

#[test]
fn fields_resolve_to_columns_computed_fields_and_representations() {
    let cache = shop();
    let plan = get(
        &cache,
        "/orders?select=id,with_tax,price,total:price-%3Ea&price=eq.5",
    )
    .unwrap();
    let fields: Vec<_> = plan
        .root
        .select
        .iter()
        .map(|o| match o {
            Output::Field { field, name, .. } => (name.as_str(), field),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(fields[0].1.source, Source::Column);
    assert_eq!(
        fields[1].1.source,
        Source::Computed(&QualifiedName::new("api", "with_tax"))
    );
    assert_eq!(
        fields[2].1.to_json.map(|f| f.name.as_str()),
        Some("price_json")
    );
    // A JSON path reads the value, not its representation.
    assert_eq!(fields[3].0, "total");
    assert!(fields[3].1.to_json.is_none() && !fields[3].1.is_json);
    match &plan.root.filters[0] {
        Condition::Filter { field, .. } => {
            assert_eq!(
                field.from_text.map(|f| f.name.as_str()),
                Some("price_from_text")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn star_is_spelled_out_only_to_apply_representations_or_aggregate() {
    let cache = shop();
    let plain = get(&cache, "/addresses?select=*").unwrap();
    assert_eq!(plain.root.select, vec![Output::AllColumns]);
    // orders has a represented column: every column is listed so it can be applied.
    let represented = get(&cache, "/orders?select=*").unwrap();
    assert_eq!(represented.root.select.len(), 6);
    let aggregating = get_with(
        &cache,
        "/addresses?select=*,id.count()",
        &[],
        "db-aggregates-enabled = true",
    )
    .unwrap();
    assert_eq!(aggregating.root.select.len(), 3);
    let refused = get(&cache, "/addresses?select=id.count()");
    assert!(matches!(refused, Err(ApiError::AggregatesNotAllowed)));
}

#[test]
fn ordering_by_a_to_one_embed_sorts_by_its_output_or_a_hidden_column() {
    let cache = shop();
    let hidden = get(
        &cache,
        "/orders?select=id,customers(id)&order=customers(name).desc",
    )
    .unwrap();
    assert_eq!(
        hidden.root.order[0].key,
        OrderKey::EmbedHidden {
            join_alias: "orders_customers_1".into(),
            column: "pgrst_order_0".into()
        }
    );
    assert_eq!(hidden.root.embeds[0].hidden_order[0].0, "pgrst_order_0");
    let output = get(
        &cache,
        "/orders?select=id,customers(name)&order=customers(name)",
    )
    .unwrap();
    assert!(matches!(
        output.root.order[0].key,
        OrderKey::EmbedOutput { .. }
    ));
    assert!(output.root.embeds[0].hidden_order.is_empty());
    let to_many = get(&cache, "/orders?select=id,items(id)&order=items(qty)");
    assert!(matches!(
        to_many,
        Err(ApiError::RelatedOrderNotToOne { .. })
    ));
}

#[test]
fn a_filter_on_an_embed_tests_only_whether_it_has_rows() {
    let cache = shop();
    let plan = get(&cache, "/orders?select=id,items(id)&items=not.is.null").unwrap();
    assert_eq!(
        plan.root.filters,
        vec![Condition::EmbedPresence {
            embed: "items".into(),
            present: true
        }]
    );
    let refused = get(&cache, "/orders?select=id,items(id)&items=eq.1");
    assert!(matches!(refused, Err(ApiError::UnacceptableFilter(_))));
}

#[test]
fn the_schema_and_the_target_are_settled_before_the_body() {
    let cache = shop();
    let profile = request("GET", "/orders", &[("Accept-Profile", "other")]);
    assert!(matches!(
        resolve(&profile, &cache, &config("")),
        Err(ApiError::InvalidSchema { .. })
    ));
    let missing = request("POST", "/ordrs", &[]);
    match resolve(&missing, &cache, &config("")) {
        Err(ApiError::TableNotFound { hint, .. }) => assert_eq!(hint.as_deref(), Some("orders")),
        other => panic!("{other:?}"),
    }
    let strict = request("GET", "/orders", &[("Prefer", "handling=strict, bogus=1")]);
    assert!(matches!(
        resolve(&strict, &cache, &config("")),
        Err(ApiError::InvalidPreferences(_))
    ));
}

fn write<'a>(
    cache: &'a SchemaCache,
    method: &str,
    target: &str,
    prefer: &str,
    body: &str,
) -> Result<MutatePlan<'a>, ApiError> {
    let mut headers = vec![("Content-Type", "application/json")];
    if !prefer.is_empty() {
        headers.push(("Prefer", prefer));
    }
    let api = request(method, target, &headers);
    match planned(cache, &api, &config(""), Some(body))? {
        Plan::Mutate(m) => Ok(m),
        other => panic!("not a write: {other:?}"),
    }
}

#[test]
fn writes_decide_their_kind_key_and_returning_columns() {
    let cache = shop();
    let put = write(
        &cache,
        "PUT",
        "/addresses?id=eq.1",
        "",
        r#"{"id":1,"city":"x"}"#,
    )
    .unwrap();
    assert!(
        matches!(&put.kind, MutationKind::Put { key } if key == &[("id".to_string(), "1".to_string())])
    );
    let not_key = write(&cache, "PUT", "/addresses?city=eq.x", "", r#"{"id":1}"#);
    assert!(matches!(not_key, Err(ApiError::InvalidPutFilters)));
    let upsert = write(
        &cache,
        "POST",
        "/addresses?select=id,city",
        "resolution=merge-duplicates,return=representation",
        r#"[{"id":1}]"#,
    )
    .unwrap();
    assert!(
        matches!(&upsert.kind, MutationKind::Insert { conflict: Some((key, _)) } if key == &["id".to_string()])
    );
    assert!(upsert.track_inserted && upsert.representation);
    assert_eq!(
        upsert.returning,
        Some(vec!["id".to_string(), "city".to_string()])
    );
    let whole = write(
        &cache,
        "POST",
        "/addresses",
        "return=representation",
        r#"{"id":1}"#,
    )
    .unwrap();
    assert_eq!(whole.returning, None);
    let unknown = write(&cache, "POST", "/addresses", "", r#"{"nope":1}"#);
    assert!(matches!(unknown, Err(ApiError::ColumnNotFound { .. })));
}

#[test]
fn calls_pick_the_overload_the_arguments_fit() {
    let cache = shop();
    let call = |target: &str, method: &str| {
        let api = request(method, target, &[]);
        planned(
            &cache,
            &api,
            &config(""),
            (method == "POST").then_some("{}"),
        )
    };
    let one = |p: Plan| match p {
        Plan::Call(c) => (c.routine.params.len(), c.read_only),
        other => panic!("{other:?}"),
    };
    assert_eq!(one(call("/rpc/total?a=1", "GET").unwrap()), (1, true));
    assert_eq!(one(call("/rpc/total?a=1&b=2", "GET").unwrap()), (2, true));
    assert!(matches!(
        call("/rpc/total?c=1", "GET"),
        Err(ApiError::NoFunction { .. })
    ));
    assert_eq!(one(call("/rpc/reset", "POST").unwrap()), (0, false));
    let options = request("OPTIONS", "/rpc/reset", &[]);
    match planned(&cache, &options, &config(""), None).unwrap() {
        Plan::Info(methods) => assert_eq!(methods, "OPTIONS,POST"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_transaction_ends_as_db_tx_end_says_and_prefer_where_allowed() {
    let cache = shop();
    let tx = |setting: &str, prefer: &str| {
        let api = request("POST", "/addresses", &[("Prefer", prefer)]);
        resolve(&api, &cache, &config(&format!("db-tx-end = \"{setting}\"")))
            .unwrap()
            .tx
    };
    let allowed = tx("rollback-allow-override", "tx=commit");
    assert!(allowed.commit && allowed.overridable);
    let ignored = tx("commit", "tx=rollback");
    assert!(ignored.commit && !ignored.overridable);
    assert!(!tx("rollback", "tx=commit").commit);
}
