//! The planner: every decision about a parsed request, made against one snapshot of the
//! configuration and the schema cache. Which schema, whether the target exists, which
//! media type answers, which relationships embeds follow, which rows and which page; the
//! output is a typed [`Plan`] that `sql` renders without looking anything up. No SQL
//! text and no I/O here.

pub mod call;
pub mod fields;
pub mod mutate;
pub mod negotiate;
pub mod page;
pub mod read;
pub mod relationships;

pub use call::{CallArgs, CallBody, CallPlan};
pub use mutate::{MutatePlan, MutationKind};
pub use negotiate::Negotiated;
pub use read::{Embed, ReadNode, ReadPlan};

use bytes::Bytes;

use crate::config::Config;
use crate::error::ApiError;
use crate::request::{Action, ApiRequest, Preferences};
use crate::schema::SchemaCache;

/// The configuration a plan depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanConfig {
    pub max_rows: Option<i64>,
    /// url-use-legacy-target-names
    pub legacy_names: bool,
    /// db-aggregates-enabled
    pub aggregates: bool,
}

impl PlanConfig {
    pub fn of(config: &Config) -> PlanConfig {
        PlanConfig {
            max_rows: config.db_max_rows,
            legacy_names: config.url_use_legacy_target_names,
            aggregates: config.db_aggregates_enabled,
        }
    }
}

/// How a request's transaction ends: db-tx-end, and `Prefer: tx=` where allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxEnd {
    pub commit: bool,
    /// Whether `Prefer: tx=` may override db-tx-end (then Preference-Applied says so).
    pub overridable: bool,
}

impl TxEnd {
    fn of(config: &Config, prefs: &Preferences) -> TxEnd {
        use crate::request::prefer::TxPref;
        let overridable = config.db_tx_end.overridable;
        let commit = match (overridable, prefs.tx) {
            (true, Some(TxPref::Commit)) => true,
            (true, Some(TxPref::Rollback)) => false,
            _ => config.db_tx_end.commit,
        };
        TxEnd {
            commit,
            overridable,
        }
    }
}

/// What is settled before a body is read: a request for a missing table or an
/// unacceptable media type is answered without reading what the client sends.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The exposed schema the request addresses (its profile header, or the first).
    pub schema: String,
    /// Whether responses name the schema (several are exposed).
    pub profiled: bool,
    pub negotiated: Negotiated,
    pub tx: TxEnd,
}

/// What `GET /` answers.
#[derive(Debug)]
pub enum RootPlan<'a> {
    /// A browser: the documentation page.
    DocsPage { media: &'static str },
    /// db-root-spec: the function's result is the document.
    RootSpec {
        media: &'static str,
        call: Box<CallPlan<'a>>,
    },
    /// The OpenAPI document; with `privileges`, only what the role may use.
    Document {
        media: &'static str,
        privileges: bool,
    },
}

/// Everything `sql` and the response need, one variant per kind of request.
#[derive(Debug)]
pub enum Plan<'a> {
    Read(ReadPlan<'a>),
    Mutate(MutatePlan<'a>),
    Call(CallPlan<'a>),
    /// OPTIONS: the methods the target allows.
    Info(String),
    Root(RootPlan<'a>),
}

/// The schema a request addresses: the profile header's, which must be exposed, or the
/// first exposed one.
fn choose_schema(api: &ApiRequest, config: &Config) -> Result<String, ApiError> {
    match &api.profile {
        Some(p) if !config.db_schemas.contains(p) => Err(ApiError::InvalidSchema {
            schema: p.clone(),
            allowed: config.db_schemas.clone(),
        }),
        Some(p) => Ok(p.clone()),
        None => Ok(config.db_schemas[0].clone()),
    }
}

/// `Prefer: handling=strict` refuses preferences it does not know.
fn check_strict(prefs: &Preferences) -> Result<(), ApiError> {
    if prefs.strict == Some(true) && !prefs.invalid.is_empty() {
        return Err(ApiError::InvalidPreferences(prefs.invalid.clone()));
    }
    Ok(())
}

/// Settles the schema, that a table or view exists, strict preferences and the media
/// type, in PostgREST's order.
pub fn resolve(
    api: &ApiRequest,
    cache: &SchemaCache,
    config: &Config,
) -> Result<Resolved, ApiError> {
    let schema = choose_schema(api, config)?;
    let plan_enabled = config.db_plan_enabled;
    let negotiated = match &api.action {
        Action::Read { relation }
        | Action::Mutate { relation }
        | Action::RelationInfo { relation } => {
            if cache.table(&schema, relation).is_none() {
                return Err(ApiError::TableNotFound {
                    schema: schema.clone(),
                    name: relation.clone(),
                    hint: cache.closest_table(&schema, relation),
                });
            }
            check_strict(&api.prefs)?;
            match api.action {
                Action::RelationInfo { .. } => Negotiated::default(),
                _ => negotiate::for_relation(api, cache, &schema, relation, plan_enabled)?,
            }
        }
        Action::Call { function } => {
            check_strict(&api.prefs)?;
            negotiate::for_call(api, cache, &schema, function, plan_enabled)?
        }
        Action::RoutineInfo { .. } | Action::Document | Action::RootInfo => Negotiated::default(),
    };
    Ok(Resolved {
        profiled: config.db_schemas.len() > 1
            && !matches!(api.method, crate::request::Method::Options),
        schema,
        negotiated,
        tx: TxEnd::of(config, &api.prefs),
    })
}

/// The plan of a resolved request; `body` for the actions that take one.
pub fn plan<'a>(
    api: &ApiRequest,
    resolved: &Resolved,
    cache: &'a SchemaCache,
    config: &Config,
    body: Option<Bytes>,
) -> Result<Plan<'a>, ApiError> {
    let schema = resolved.schema.as_str();
    let neg = &resolved.negotiated;
    let plan_config = PlanConfig::of(config);
    Ok(match &api.action {
        Action::Read { relation } => Plan::Read(read::read_plan(
            api,
            neg,
            cache,
            schema,
            relation,
            &plan_config,
        )?),
        Action::Mutate { relation } => {
            let payload = mutate::payload(api, body.unwrap_or_default())?;
            Plan::Mutate(mutate::mutate_plan(
                api,
                neg,
                cache,
                schema,
                relation,
                payload,
                &plan_config,
            )?)
        }
        Action::Call { function } => {
            let body = body.as_ref().map(|b| CallBody {
                content_type: api.content_type.as_deref(),
                bytes: b,
            });
            let call = call::call_plan(
                api,
                neg,
                cache,
                schema,
                function,
                body.as_ref(),
                &plan_config,
            )?;
            Plan::Call(call)
        }
        Action::RelationInfo { relation } => Plan::Info(
            cache
                .table(schema, relation)
                .map(|t| t.allowed_methods())
                .unwrap_or_default(),
        ),
        Action::RoutineInfo { function } => Plan::Info(routine_methods(cache, schema, function)),
        Action::RootInfo => Plan::Info("OPTIONS,GET,HEAD".into()),
        Action::Document => Plan::Root(root_plan(api, cache, schema, config)?),
    })
}

/// OPTIONS on /rpc/name: a function that only changes things is POST only.
fn routine_methods(cache: &SchemaCache, schema: &str, function: &str) -> String {
    let overloads = cache
        .routines
        .get(&(schema.to_string(), function.to_string()));
    let volatile = overloads.is_some_and(|o| o.iter().all(|r| r.volatile));
    if volatile {
        "OPTIONS,POST".into()
    } else {
        "OPTIONS,GET,HEAD,POST".into()
    }
}

/// `GET /`: the documentation page for a browser, else db-root-spec's function or the
/// OpenAPI document, as openapi-mode allows.
fn root_plan<'a>(
    api: &ApiRequest,
    cache: &'a SchemaCache,
    schema: &str,
    config: &Config,
) -> Result<RootPlan<'a>, ApiError> {
    use crate::config::OpenApiMode;
    let media = negotiate::for_root(api.accept.as_deref())?;
    if media == "text/html" {
        if config.openapi_mode == OpenApiMode::Disabled {
            return Err(ApiError::OpenApiDisabled);
        }
        return Ok(RootPlan::DocsPage { media });
    }
    if let Some(function) = &config.db_root_spec {
        let neg = Negotiated::default();
        let plan_config = PlanConfig::of(config);
        let call = call::call_plan(api, &neg, cache, schema, function, None, &plan_config)?;
        return Ok(RootPlan::RootSpec {
            media,
            call: Box::new(call),
        });
    }
    match config.openapi_mode {
        OpenApiMode::Disabled => Err(ApiError::OpenApiDisabled),
        OpenApiMode::IgnorePrivileges => Ok(RootPlan::Document {
            media,
            privileges: false,
        }),
        OpenApiMode::FollowPrivileges => Ok(RootPlan::Document {
            media,
            privileges: true,
        }),
    }
}
#[cfg(test)]
mod tests;
