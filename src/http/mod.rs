//! HTTP: the server loop, routing, and turning outcomes and errors into responses.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::config::Config;
use crate::db::{self, Envelope};
use crate::error::ApiError;
use crate::plan;
use crate::request::{self, ApiRequest, CountPref, MediaType, Method, Target};
use crate::schema::routines::{AggHandler, MediaHandler};
use crate::schema::SchemaCache;
use crate::sql;

pub struct AppState {
    /// The live configuration; swapped whole on a config reload.
    pub config: ArcSwap<Config>,
    pub config_source: crate::config::ConfigSource,
    /// `None` when no jwt-secret is configured; rebuilt on a config reload.
    pub auth: arc_swap::ArcSwapOption<crate::auth::Authenticator>,
    pub pool: db::Pool,
    pub schema: ArcSwap<SchemaCache>,
    pub metrics: crate::metrics::Metrics,
    /// The role pgrest connects as (session_user); no token may name it.
    pub authenticator: String,
    /// Bounds fixed at start-up.
    pub limits: Limits,
    /// Signalled after each configuration reload (the NOTIFY listener follows db-channel).
    pub config_reloaded: tokio::sync::Notify,
}

/// What one client may take of the server, fixed at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open API connections at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head this long after it opened, or
    /// after its previous response, is closed; a body that stalls this long is refused.
    pub header_read_timeout: std::time::Duration,
    /// The largest request body read, in bytes.
    pub max_body_size: u64,
}

impl AppState {
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }
}

type Resp = Response<Full<Bytes>>;

const VARY: &str = "Accept, Prefer, Range";

pub mod accept;
pub mod waiting;

pub use accept::Listener;

/// Serves until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    listener: Listener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let max_connections = state.limits.max_connections;
    accept::accept_loop("API server", &listener, max_connections, shutdown, |a| {
        spawn_connection(state.clone(), a, &graceful)
    })
    .await;
    // Stop accepting, let requests in flight finish (idle keep-alive connections close
    // at once), but do not wait forever on a stuck client.
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
            tracing::warn!("requests still in flight after 30 s; stopping anyway");
        }
    }
}

fn spawn_connection(
    state: Arc<AppState>,
    accepted: accept::Accepted,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) {
    let accept::Accepted {
        stream,
        peer,
        permit,
    } = accepted;
    let builder = accept::http1_builder(state.limits.header_read_timeout);
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req, peer).await) }
    });
    let conn = builder.serve_connection(
        TokioIo::new(crate::lenient::LenientStream::new(stream)),
        service,
    );
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        let _ = conn.await;
        drop(permit);
    });
}

async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    peer: Option<std::net::SocketAddr>,
) -> Resp {
    let started = Instant::now();
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let referer = header_str(req.headers(), "referer").map(str::to_string);
    let user_agent = header_str(req.headers(), "user-agent").map(str::to_string);
    let origin = header_str(req.headers(), "origin").map(str::to_string);
    let preflight = (method == "OPTIONS")
        .then(|| header_str(req.headers(), "access-control-request-method"))
        .flatten()
        .is_some()
        && origin.is_some();
    let requested_headers =
        header_str(req.headers(), "access-control-request-headers").map(str::to_string);
    // server-trace-header: the request's value echoed on every response (empty if absent).
    let trace_header = state.config().value("server-trace-header").map(|name| {
        let value = header_str(req.headers(), name).unwrap_or("").to_string();
        (name.to_string(), value)
    });
    let log_queries = state.config().flag("log-query");
    let mut trace = crate::timing::Trace::default();
    let mut response = if preflight {
        Response::new(Full::new(Bytes::new()))
    } else {
        let (result, t) = crate::timing::measure(route(state, req), log_queries).await;
        trace = t;
        match result {
            Ok(mut r) => {
                if state.config().flag("server-timing-enabled") {
                    set(
                        &mut r,
                        "Server-Timing",
                        &trace.timings.header(started.elapsed()),
                    );
                }
                r
            }
            Err(e) => {
                if matches!(e, ApiError::Connection(_) | ApiError::Client(_)) {
                    crate::admin::connection_lost(state);
                }
                if e == ApiError::PoolTimeout {
                    state.metrics.pool_timeout();
                }
                error_response(&e, state.config().minimal_errors)
            }
        }
    };
    if let Some((name, value)) = trace_header {
        set(&mut response, &name, &value);
    }
    cors(
        state,
        &mut response,
        origin.as_deref(),
        method == "OPTIONS",
        preflight.then_some(requested_headers.as_deref().unwrap_or("")),
    );
    let took = started.elapsed();
    state
        .metrics
        .request(&method, response.status().as_u16(), took);
    let status = response.status().as_u16();
    if crate::access_log::wanted(state.config().log_level, status) {
        use hyper::body::Body;
        crate::access_log::write(&crate::access_log::Entry {
            peer,
            role: trace.role.as_deref(),
            method: &method,
            uri: &uri,
            status,
            bytes: response.body().size_hint().exact(),
            referer: referer.as_deref(),
            user_agent: user_agent.as_deref(),
            queries: trace.queries.as_deref(),
        });
    }
    response
}

/// CORS headers as PostgREST sends them: any origin unless server-cors-allowed-origins
/// lists some (then only those, echoed, with credentials allowed). `preflight` carries the
/// Access-Control-Request-Headers of a preflight request.
fn cors(
    state: &AppState,
    r: &mut Resp,
    origin: Option<&str>,
    options: bool,
    preflight: Option<&str>,
) {
    let config = state.config();
    let allowed = config.value("server-cors-allowed-origins");
    match (allowed, origin) {
        (None, Some(_)) => set(r, "Access-Control-Allow-Origin", "*"),
        (None, None) if options => set(r, "Access-Control-Allow-Origin", "*"),
        (Some(list), Some(o)) if list.split(',').any(|a| a.trim() == o) => {
            set(r, "Access-Control-Allow-Origin", o);
            set(r, "Access-Control-Allow-Credentials", "true");
        }
        _ => return,
    }
    if origin.is_none() {
        return;
    }
    match preflight {
        Some(requested) => {
            set(
                r,
                "Access-Control-Allow-Methods",
                "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD",
            );
            let mut headers = vec!["Authorization".to_string()];
            headers.extend(
                requested
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_string),
            );
            headers.extend(["Accept", "Accept-Language", "Content-Language"].map(String::from));
            set(r, "Access-Control-Allow-Headers", &headers.join(", "));
            set(r, "Access-Control-Max-Age", "86400");
        }
        None => set(
            r,
            "Access-Control-Expose-Headers",
            "Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, Transfer-Encoding, Range-Unit",
        ),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Builds the ApiRequest from the parts of the HTTP request.
fn api_request(req: &Request<Incoming>) -> Result<ApiRequest, ApiError> {
    let method = request::parse_method(req.method().as_str())?;
    let path = req.uri().path().to_string();
    let target = request::parse_target(&path)?;
    let headers = req.headers();
    let rpc_read = matches!(target, Target::Rpc(_)) && matches!(method, Method::Get | Method::Head);
    let query = request::parse_query_for(req.uri().query().unwrap_or(""), rpc_read)?;
    let prefs = request::Preferences::parse(
        headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let range = header_str(headers, "range").and_then(request::parse_range_header);
    let mut header_pairs = Vec::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        if name == "cookie" {
            cookies.extend(request::parse_cookies(value));
        } else {
            header_pairs.push((name.as_str().to_string(), value.to_string()));
        }
    }
    let profile_header = match method {
        Method::Get | Method::Head => "accept-profile",
        _ => "content-profile",
    };
    Ok(ApiRequest {
        method,
        target,
        query,
        prefs,
        media_type: MediaType::Json,
        range,
        path,
        headers: header_pairs,
        cookies,
        profile: header_str(headers, profile_header).map(str::to_string),
        authorization: header_str(headers, "authorization").map(str::to_string),
        identity: None,
        plan: None,
        handler: None,
        aggregate: None,
    })
}

async fn route(state: &AppState, req: Request<Incoming>) -> Result<Resp, ApiError> {
    use crate::timing::{time, Stage};
    let mut api = time(Stage::Parse, || api_request(&req))?;
    // Who is calling is settled before anything else, without touching the database.
    if api.method != Method::Options {
        let identity = time(Stage::Jwt, || {
            crate::auth::identify(
                state.auth.load().as_deref(),
                api.authorization.as_deref(),
                state.config().db_anon_role.as_deref(),
                &state.authenticator,
            )
        })?;
        crate::timing::record_role(&identity.role);
        api.identity = Some(identity);
    }
    let schema = match &api.profile {
        Some(p) if !state.config().db_schemas.contains(p) => {
            return Err(ApiError::InvalidSchema {
                schema: p.clone(),
                allowed: state.config().db_schemas.clone(),
            })
        }
        Some(p) => p.clone(),
        None => state.config().db_schemas[0].clone(),
    };
    // The OpenAPI document of the root names its schema too.
    let profiled = state.config().db_schemas.len() > 1 && api.method != Method::Options;
    let response = match (&api.target, api.method) {
        (Target::Root, Method::Get | Method::Head) => {
            let accept = header_str(req.headers(), "accept").map(str::to_string);
            root(state, &api, &schema, accept.as_deref()).await
        }
        (Target::Root, Method::Options) => Ok(allow("OPTIONS,GET,HEAD")),
        (Target::Root, m) => Err(ApiError::UnsupportedMethod(method_name(m).into())),
        (Target::Rpc(_), Method::Put | Method::Patch | Method::Delete) => {
            Err(ApiError::RpcMethod(req.method().to_string()))
        }
        (Target::Rpc(name), Method::Options) => {
            let cache = state.schema.load();
            let overloads = cache.routines.get(&(schema.clone(), name.clone()));
            let volatile = overloads.is_some_and(|o| o.iter().all(|r| r.volatile));
            Ok(allow(if volatile {
                "OPTIONS,POST"
            } else {
                "OPTIONS,GET,HEAD,POST"
            }))
        }
        (Target::Rpc(name), method) => {
            if api.prefs.strict == Some(true) && !api.prefs.invalid.is_empty() {
                return Err(ApiError::InvalidPreferences(api.prefs.invalid.clone()));
            }
            let name = name.clone();
            let cache = state.schema.load();
            let accept = header_str(req.headers(), "accept");
            let overloads = cache
                .routines
                .get(&(schema.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let handlers: Vec<&str> = overloads
                .iter()
                .filter_map(|r| r.media.as_ref().map(|m| m.media_type.as_str()))
                .collect();
            let plan_enabled = state.config().flag("db-plan-enabled");
            if let Some((h, plan)) = request::choose_handler(accept, &handlers, plan_enabled) {
                (api.handler, api.plan) = (Some(h.to_string()), plan);
            }
            let only_handlers = !handlers.is_empty() && handlers.len() == overloads.len();
            // Rows of a table type may be rendered by that table's handler aggregates.
            let row_type = overloads.iter().find_map(|r| match &r.returns {
                crate::schema::routines::Returns::Table { schema, name } => Some((schema, name)),
                _ => None,
            });
            let aggregates = row_type
                .map(|(s, n)| row_handlers(&cache, s, n, &api.query.select))
                .unwrap_or_default();
            if api.handler.is_none() || !only_handlers {
                match request::negotiate_rows(accept, plan_enabled, &aggregates) {
                    Ok((media_type, plan, aggregate)) => {
                        (api.media_type, api.plan, api.aggregate) = (media_type, plan, aggregate);
                        if !only_handlers {
                            api.handler = None;
                        }
                    }
                    Err(_) if api.handler.is_some() => {}
                    Err(e) => return Err(e),
                }
            }
            let content_type = header_str(req.headers(), "content-type").map(str::to_string);
            let body = if method == Method::Post {
                Some(read_body(req, &state.limits).await?)
            } else {
                None
            };
            let body = body.as_ref().map(|b| plan::CallBody {
                content_type: content_type.as_deref(),
                bytes: b,
            });
            call(state, &api, &cache, &schema, &name, body.as_ref()).await
        }
        (Target::Relation(name), method) => {
            let cache = state.schema.load();
            if cache.table(&schema, name).is_none() {
                return Err(ApiError::TableNotFound {
                    schema: schema.clone(),
                    name: name.clone(),
                    hint: cache.closest_table(&schema, name),
                });
            }
            if api.prefs.strict == Some(true) && !api.prefs.invalid.is_empty() {
                return Err(ApiError::InvalidPreferences(api.prefs.invalid.clone()));
            }
            let name = name.clone();
            let accept = header_str(req.headers(), "accept");
            let plan_enabled = state.config().flag("db-plan-enabled");
            // Rows read, or written and returned, may be rendered by handler aggregates (a
            // write returning nothing accepts their types too, and runs none).
            if method != Method::Options {
                let handlers = row_handlers(&cache, &schema, &name, &api.query.select);
                (api.media_type, api.plan, api.aggregate) =
                    request::negotiate_rows(accept, plan_enabled, &handlers)?;
                let returns_rows =
                    api.prefs.return_ == Some(request::prefer::ReturnPref::Representation);
                if !matches!(method, Method::Get | Method::Head) && !returns_rows {
                    api.aggregate = None;
                }
            }
            match method {
                Method::Options => {
                    let methods = cache
                        .table(&schema, &name)
                        .map(|t| t.allowed_methods())
                        .unwrap_or_default();
                    Ok(allow(&methods))
                }
                Method::Get | Method::Head => read(state, &api, &cache, &schema, &name).await,
                _ => {
                    let content_type =
                        header_str(req.headers(), "content-type").map(str::to_string);
                    let body = read_body(req, &state.limits).await?;
                    let target = WriteTarget {
                        cache: &cache,
                        schema: &schema,
                        name: &name,
                    };
                    write(state, &api, target, content_type.as_deref(), body).await
                }
            }
        }
    };
    // With several schemas, a response says which one it came from; every success
    // varies by Accept, Prefer and Range (PostgREST 16 sends Vary on all of them).
    response.map(|mut r| {
        if profiled {
            set(&mut r, "Content-Profile", &schema);
        }
        if !r.headers().contains_key(hyper::header::VARY) {
            set(&mut r, "Vary", VARY);
        }
        r
    })
}

/// Reads a request body of at most `limits.max_body_size` bytes: a Content-Length over
/// it is refused before anything is read, a body growing past it as soon as it does, and
/// one that stalls for the header read timeout is refused too (a slow client would
/// otherwise hold its connection and its memory indefinitely).
async fn read_body(req: Request<Incoming>, limits: &Limits) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let max = limits.max_body_size;
    let declared = header_str(req.headers(), "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::BodyTooLarge(max));
    }
    let mut body = req.into_body();
    let capacity = declared.unwrap_or(0).min(max);
    let mut out = bytes::BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    loop {
        let frame = tokio::time::timeout(limits.header_read_timeout, body.frame())
            .await
            .map_err(|_| ApiError::InvalidBody("Timed out reading the body".into()))?;
        let Some(frame) = frame else { break };
        let frame =
            frame.map_err(|e| ApiError::InvalidBody(format!("Cannot read the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if (out.len() + data.len()) as u64 > max {
                return Err(ApiError::BodyTooLarge(max));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// The payload of a write: `columns=` takes a JSON body as is (PostgreSQL reads it);
/// otherwise the body is parsed by its Content-Type.
fn write_payload(
    api: &ApiRequest,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Option<request::payload::Payload>, ApiError> {
    if api.method == Method::Delete {
        return Ok(None);
    }
    // The body's own buffer becomes the payload text (no copy when it is not shared).
    let body = Vec::from(body);
    let is_json = request::payload::media_type_of(content_type) == "application/json";
    if let (Some(columns), true) = (&api.query.columns, is_json) {
        let json = String::from_utf8(body)
            .map_err(|_| ApiError::InvalidBody("Empty or invalid json".into()))?;
        return Ok(Some(request::payload::Payload {
            json,
            keys: columns.clone(),
        }));
    }
    request::payload::parse(content_type, body).map(Some)
}

/// Whether a write's transaction commits (db-tx-end, and `Prefer: tx=` where that is
/// allowed), and whether the preference may override it.
fn commits(config: &Config, prefs: &request::Preferences) -> (bool, bool) {
    use request::prefer::TxPref;
    let mode = config.db_tx_end.as_str();
    let overridable = mode.ends_with("allow-override");
    let default_commit = mode.starts_with("commit");
    let commit = match (overridable, prefs.tx) {
        (true, Some(TxPref::Commit)) => true,
        (true, Some(TxPref::Rollback)) => false,
        _ => default_commit,
    };
    (commit, overridable)
}

/// `Preference-Applied`, in PostgREST's order.
fn preference_applied(api: &ApiRequest, resolution: bool, tx_overridable: bool) -> Option<String> {
    use request::prefer::{Resolution, ReturnPref, TxPref};
    let p = &api.prefs;
    let writes = !matches!(api.method, Method::Get | Method::Head);
    let mut out: Vec<String> = Vec::new();
    if let (true, Some(r)) = (resolution, p.resolution) {
        out.push(match r {
            Resolution::MergeDuplicates => "resolution=merge-duplicates".into(),
            Resolution::IgnoreDuplicates => "resolution=ignore-duplicates".into(),
        });
    }
    let takes_body = matches!(api.method, Method::Post | Method::Patch | Method::Put);
    if let (true, Some(m)) = (takes_body, p.missing_default) {
        out.push(if m { "missing=default" } else { "missing=null" }.into());
    }
    if let (true, Some(r)) = (writes, p.return_) {
        out.push(match r {
            ReturnPref::Minimal => "return=minimal".into(),
            ReturnPref::HeadersOnly => "return=headers-only".into(),
            ReturnPref::Representation => "return=representation".into(),
        });
    }
    if let Some(c) = p.count {
        out.push(match c {
            CountPref::Exact => "count=exact".into(),
            CountPref::Planned => "count=planned".into(),
            CountPref::Estimated => "count=estimated".into(),
        });
    }
    if let (true, Some(t)) = (tx_overridable, p.tx) {
        out.push(match t {
            TxPref::Commit => "tx=commit".into(),
            TxPref::Rollback => "tx=rollback".into(),
        });
    }
    if let Some(strict) = p.strict {
        out.push(
            if strict {
                "handling=strict"
            } else {
                "handling=lenient"
            }
            .into(),
        );
    }
    if let Some(tz) = &p.timezone {
        out.push(format!("timezone={tz}"));
    }
    if let (Some(n), Some(true)) = (p.max_affected, p.strict) {
        out.push(format!("max-affected={n}"));
    }
    (!out.is_empty()).then(|| out.join(", "))
}

/// `Location: /table?pk=eq.value` from the one written row's key.
fn location(table: &str, body: &[u8]) -> Option<String> {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(body).ok()?;
    let [row] = rows.as_slice() else {
        return None;
    };
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let parts: Vec<String> = row
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::Null => format!("{}=is.null", encode(k)),
            serde_json::Value::String(s) => format!("{}=eq.{}", encode(k), encode(s)),
            other => format!("{}=eq.{}", encode(k), encode(&other.to_string())),
        })
        .collect();
    const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'_')
        .remove(b'-')
        .remove(b'.')
        .remove(b'~');
    let table: String = percent_encoding::utf8_percent_encode(table, PATH).collect();
    Some(format!("/{table}?{}", parts.join("&")))
}

/// Where a write goes.
struct WriteTarget<'a> {
    cache: &'a SchemaCache,
    schema: &'a str,
    name: &'a str,
}

async fn write(
    state: &AppState,
    api: &ApiRequest,
    target: WriteTarget<'_>,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Resp, ApiError> {
    let payload = write_payload(api, content_type, body)?;
    let config = plan::PlanConfig {
        max_rows: None,
        legacy_names: state.config().flag("url-use-legacy-target-names"),
        aggregates: state.config().flag("db-aggregates-enabled"),
    };
    let started = std::time::Instant::now();
    let mut plan = plan::mutate_plan(
        api,
        target.cache,
        target.schema,
        target.name,
        payload,
        &config,
    )?;
    let statement = sql::mutate_statement(&plan);
    // The payload lives on as the statement's parameter: the plan's copy goes, so a big
    // body is not held twice while PostgreSQL works.
    plan.payload = String::new();
    crate::timing::record(crate::timing::Stage::Plan, started.elapsed());
    if let Some(explain) = api.plan {
        return explain_response(state, api, target.schema, explain, &statement, false).await;
    }
    let env = envelope(state, api, target.schema, false)?;
    let (commit, overridable) = commits(&state.config(), &api.prefs);
    let singular = api.media_type.is_singular();
    let strict_max = api.prefs.max_affected.filter(|_| {
        api.prefs.strict == Some(true) && matches!(api.method, Method::Patch | Method::Delete)
    });
    let is_put = matches!(plan.kind, plan::MutationKind::Put { .. });
    // A write that nothing can refuse afterwards commits in the same round trip.
    let out = if commit && !singular && strict_max.is_none() && !is_put {
        db::run_committed(&state.pool, &env, &statement).await?
    } else {
        db::run_write(&state.pool, &env, &statement, |o| {
            refuse_count(o.page_total, singular, strict_max)?;
            if is_put && o.page_total == 0 {
                return Err(ApiError::PutMismatch);
            }
            Ok(commit)
        })
        .await?
    };
    let n = out.page_total;
    let total = match api.prefs.count {
        Some(_) => n.to_string(),
        None => "*".to_string(),
    };
    let inserted_any = out.inserted.is_none_or(|i| i > 0);
    // PostgREST answers a POST 200 only when merge-duplicates inserted nothing (every row
    // updated, or none given); ignore-duplicates that skipped every row is still 201.
    let merged_only =
        !inserted_any && api.prefs.resolution == Some(request::prefer::Resolution::MergeDuplicates);
    let status = match api.method {
        Method::Post if !merged_only => 201,
        Method::Put if plan.representation && inserted_any => 201,
        Method::Post => 200,
        _ if plan.representation => 200,
        _ => 204,
    };
    let mut r = if plan.representation {
        let aggregate = api.aggregate.as_ref();
        rows_response(status, out.body.clone(), false, api.media_type, aggregate)
    } else {
        body_response(status, Bytes::new(), false)
    };
    match api.method {
        Method::Patch if n > 0 => set(&mut r, "Content-Range", &format!("0-{}/{total}", n - 1)),
        Method::Put => {}
        _ => set(&mut r, "Content-Range", &format!("*/{total}")),
    }
    if plan.location {
        if let Some(loc) = location(target.name, &out.body) {
            set(&mut r, "Location", &loc);
        }
    }
    let resolution = matches!(&plan.kind, plan::MutationKind::Insert { conflict: Some(_) });
    finish_response(
        r,
        preference_applied(api, resolution, overridable),
        out.response_headers.as_deref(),
        out.response_status.as_deref(),
    )
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
    }
}

fn allow(methods: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    set(&mut r, "Allow", methods);
    r
}

fn set(r: &mut Resp, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        r.headers_mut().insert(n, v);
    }
}

fn append(r: &mut Resp, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        r.headers_mut().append(n, v);
    }
}

/// `GET /` until the OpenAPI document exists: the exposed tables and views.
/// Media types `GET /` answers, in order of preference for `*/*`.
const ROOT_MEDIA: [&str; 4] = [
    "application/openapi+json",
    "application/json",
    // OpenAPI 3.1 (the registered OpenAPI media type); the others get Swagger 2.0.
    "application/vnd.oai.openapi+json",
    // A browser: the documentation page, which renders the 3.1 document.
    "text/html",
];

const DOCS_PAGE: &str = include_str!("../openapi/docs.html");

/// `GET /`: the OpenAPI document of the schema (or db-root-spec's answer).
async fn root(
    state: &AppState,
    api: &ApiRequest,
    schema: &str,
    accept: Option<&str>,
) -> Result<Resp, ApiError> {
    let (media, _) = request::choose_handler(accept, &ROOT_MEDIA, false)
        .ok_or_else(|| ApiError::NotAcceptable(accept.unwrap_or_default().to_string()))?;
    let content_type = format!("{media}; charset=utf-8");
    let config = state.config();
    if media == "text/html" {
        if config.value("openapi-mode") == Some("disabled") {
            return Err(ApiError::OpenApiDisabled);
        }
        let mut r = body_response(200, DOCS_PAGE.to_string(), api.method == Method::Head);
        set(&mut r, "Content-Type", &content_type);
        return Ok(r);
    }
    if let Some(function) = config.value("db-root-spec") {
        let cache = state.schema.load();
        let mut r = call(state, api, &cache, schema, function, None).await?;
        set(&mut r, "Content-Type", &content_type);
        return Ok(r);
    }
    let visible = match config.value("openapi-mode").unwrap_or("follow-privileges") {
        "disabled" => return Err(ApiError::OpenApiDisabled),
        "ignore-privileges" => crate::openapi::Visible::All,
        _ => {
            let env = envelope(state, api, schema, true)?;
            let stmt = sql::openapi_privileges(schema);
            let out = db::run_read(&state.pool, &env, &stmt, None).await?;
            crate::openapi::Visible::from_privileges(&String::from_utf8_lossy(&out.body))
        }
    };
    let cache = state.schema.load();
    let doc = crate::timing::time(crate::timing::Stage::Plan, || {
        let swagger = crate::openapi::swagger(&cache, schema, &config, &visible);
        if media == "application/vnd.oai.openapi+json" {
            crate::openapi::to_openapi31(&swagger)
        } else {
            swagger
        }
    });
    let body = serde_json::to_string(&doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut r = body_response(200, body, api.method == Method::Head);
    set(&mut r, "Content-Type", &content_type);
    Ok(r)
}

/// Refuses a write's or call's outcome by its row count: not exactly one row for a
/// singular Accept, more than `max-affected` with handling=strict.
fn refuse_count(rows: i64, singular: bool, strict_max: Option<i64>) -> Result<(), ApiError> {
    if singular && rows != 1 {
        return Err(ApiError::Singularity(rows));
    }
    if strict_max.is_some_and(|max| rows > max) {
        return Err(ApiError::MaxAffected(rows));
    }
    Ok(())
}

/// The handler aggregates that may render rows of `schema.name`: its own, offered only
/// while the select is the default (their argument is the table's row type), and the
/// `anyelement` ones.
fn row_handlers<'c>(
    cache: &'c SchemaCache,
    schema: &str,
    name: &str,
    select: &[request::query::SelectItem],
) -> Vec<&'c AggHandler> {
    let default_select = select.is_empty() || matches!(select, [request::query::SelectItem::Star]);
    cache
        .aggregates
        .iter()
        .filter(|h| match &h.relation {
            Some((s, n)) => default_select && s == schema && n == name,
            None => true,
        })
        .collect()
}

/// The response for rendered rows: the body as the statement gave it with the media
/// type's Content-Type, or a handler aggregate's output with its own.
fn rows_response(
    status: u16,
    body: Bytes,
    head: bool,
    media_type: MediaType,
    aggregate: Option<&AggHandler>,
) -> Resp {
    match aggregate {
        Some(agg) => handler_response(status, body, head, &agg.media),
        None => {
            let mut r = body_response(status, body, head);
            set(&mut r, "Content-Type", media_type.content_type());
            r
        }
    }
}

/// A custom media type's response (a handler function's or aggregate's output, as the
/// statement gave it).
fn handler_response(status: u16, body: Bytes, head: bool, media: &MediaHandler) -> Resp {
    let mut r = body_response(status, body, head);
    set(
        &mut r,
        "Content-Type",
        &request::handler_content_type(&media.media_type),
    );
    r
}

fn body_response(status: u16, body: impl Into<Bytes>, head: bool) -> Resp {
    let body = if head { Bytes::new() } else { body.into() };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r
}

fn json_text(v: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = v
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn envelope(
    state: &AppState,
    api: &ApiRequest,
    schema: &str,
    read_only: bool,
) -> Result<Envelope, ApiError> {
    let identity = match &api.identity {
        Some(i) => i.clone(),
        None => crate::auth::identify(
            state.auth.load().as_deref(),
            api.authorization.as_deref(),
            state.config().db_anon_role.as_deref(),
            &state.authenticator,
        )?,
    };
    let role = identity.role.clone();
    let search_path: Vec<String> = std::iter::once(schema.to_string())
        .chain(state.config().db_extra_search_path.iter().cloned())
        .map(|s| sql::quote_ident(&s))
        .collect();
    let mut gucs = vec![
        ("request.jwt.claims".to_string(), identity.claims.clone()),
        (
            "request.method".to_string(),
            method_name(api.method).to_string(),
        ),
        ("request.path".to_string(), api.path.clone()),
        ("request.headers".to_string(), json_text(&api.headers)),
        ("request.cookies".to_string(), json_text(&api.cookies)),
    ];
    if let Some(tz) = &api.prefs.timezone {
        gucs.push(("timezone".to_string(), tz.clone()));
    }
    for (k, v) in &state.config().app_settings {
        gucs.push((format!("app.settings.{k}"), v.clone()));
    }
    let role_settings = state
        .schema
        .load()
        .role_settings
        .get(&role)
        .cloned()
        .unwrap_or_default();
    Ok(Envelope {
        role_settings,
        read_only,
        search_path: search_path.join(", "),
        role,
        anonymous: identity.anonymous,
        gucs,
        pre_request: state
            .config()
            .db_pre_request
            .as_deref()
            .map(sql::quote_qualified),
        prepared: state.config().flag("db-prepared-statements"),
    })
}

async fn call(
    state: &AppState,
    api: &ApiRequest,
    cache: &SchemaCache,
    schema: &str,
    name: &str,
    body: Option<&plan::CallBody<'_>>,
) -> Result<Resp, ApiError> {
    let config = plan::PlanConfig {
        max_rows: state.config().db_max_rows,
        legacy_names: state.config().flag("url-use-legacy-target-names"),
        aggregates: state.config().flag("db-aggregates-enabled"),
    };
    let started = std::time::Instant::now();
    let plan = plan::call_plan(api, cache, schema, name, body, &config)?;
    let statement = sql::call_statement(&plan);
    crate::timing::record(crate::timing::Stage::Plan, started.elapsed());
    if let Some(explain) = api.plan {
        let read_only = plan.read_only;
        return explain_response(state, api, schema, explain, &statement, read_only).await;
    }
    let mut env = envelope(state, api, schema, plan.read_only)?;
    // Function settings named in db-hoisted-tx-settings apply to the whole transaction.
    let hoisted = &state.config().db_hoisted_tx_settings;
    env.gucs.extend(
        plan.routine
            .settings
            .iter()
            .filter(|(k, _)| hoisted.contains(k))
            .cloned(),
    );
    let (commit, overridable) = commits(&state.config(), &api.prefs);
    let singular = api.media_type.is_singular() && plan.routine.returns_set;
    let strict_max = api
        .prefs
        .max_affected
        .filter(|_| api.prefs.strict == Some(true));
    if strict_max.is_some() && !plan.routine.returns_set {
        return Err(ApiError::MaxAffectedNeedsSet);
    }
    // A call that nothing can refuse afterwards commits in the same round trip (a read-only
    // one has nothing to roll back even under tx=rollback).
    let out = if (plan.read_only || commit) && !singular && strict_max.is_none() {
        db::run_committed(&state.pool, &env, &statement).await?
    } else {
        db::run_write(&state.pool, &env, &statement, |o| {
            refuse_count(o.page_total, singular, strict_max)?;
            Ok(commit)
        })
        .await?
    };
    if plan.routine.returns == crate::schema::routines::Returns::Void {
        let mut r = body_response(204, String::new(), true);
        apply_response_gucs(
            &mut r,
            out.response_headers.as_deref(),
            out.response_status.as_deref(),
        )?;
        return Ok(r);
    }
    if let Some(media) = plan.media {
        let r = handler_response(200, out.body, plan.head, media);
        return finish_response(
            r,
            None,
            out.response_headers.as_deref(),
            out.response_status.as_deref(),
        );
    }
    let offset = plan.read.as_ref().map_or(0, |r| r.root.offset);
    let total = api.prefs.count.and(out.total.or(Some(out.page_total)));
    let (status, content_range) = page_status(offset, out.page_total, total)?;
    let aggregate = plan.read.as_ref().and_then(|r| r.aggregate.as_ref());
    let mut r = rows_response(status, out.body, plan.head, api.media_type, aggregate);
    set(&mut r, "Content-Range", &content_range);
    finish_response(
        r,
        preference_applied(api, false, overridable),
        out.response_headers.as_deref(),
        out.response_status.as_deref(),
    )
}

/// `application/vnd.pgrst.plan`: the EXPLAIN of exactly the statement the request would run.
async fn explain_response(
    state: &AppState,
    api: &ApiRequest,
    schema: &str,
    explain: request::PlanRequest,
    statement: &sql::Statement,
    read_only: bool,
) -> Result<Resp, ApiError> {
    let wrapped = sql::Statement {
        sql: format!("{}{}", explain.explain_prefix(), statement.sql),
        params: statement.params.clone(),
    };
    let env = envelope(state, api, schema, read_only)?;
    let (commit, _) = commits(&state.config(), &api.prefs);
    let body = db::run_explain(&state.pool, &env, &wrapped, commit).await?;
    let mut r = body_response(200, body, api.method == Method::Head);
    set(
        &mut r,
        "Content-Type",
        &explain.content_type(match (&api.aggregate, &api.handler) {
            (Some(a), _) => a.media.media_type.as_str(),
            (None, Some(h)) => h.as_str(),
            (None, None) => api.media_type.name(),
        }),
    );
    Ok(r)
}

/// Status and Content-Range of a page starting at `offset` with `rows` rows, out of
/// `total` when counted; an offset past a known total is unsatisfiable.
fn page_status(offset: i64, rows: i64, total: Option<i64>) -> Result<(u16, String), ApiError> {
    if let Some(total) = total {
        if offset > total {
            return Err(ApiError::InvalidRange {
                details: format!(
                    "An offset of {offset} was requested, but there are only {total} rows."
                ),
                total: Some(total),
            });
        }
    }
    let total_text = total.map_or("*".to_string(), |t| t.to_string());
    let range = if rows == 0 {
        format!("*/{total_text}")
    } else {
        format!(
            "{}-{}/{total_text}",
            offset,
            offset.saturating_add(rows) - 1
        )
    };
    let status = match total {
        Some(t) if rows < t => 206,
        _ => 200,
    };
    Ok((status, range))
}

async fn read(
    state: &AppState,
    api: &ApiRequest,
    cache: &SchemaCache,
    schema: &str,
    name: &str,
) -> Result<Resp, ApiError> {
    let max_rows = state.config().db_max_rows;
    let config = plan::PlanConfig {
        max_rows,
        legacy_names: state.config().flag("url-use-legacy-target-names"),
        aggregates: state.config().flag("db-aggregates-enabled"),
    };
    let started = std::time::Instant::now();
    let plan = plan::read_plan(api, cache, schema, name, &config)?;
    let main = sql::read_statement(&plan);
    crate::timing::record(crate::timing::Stage::Plan, started.elapsed());
    if let Some(explain) = api.plan {
        return explain_response(state, api, schema, explain, &main, true).await;
    }
    let wants_plan_rows = match plan.count {
        Some(CountPref::Planned) => true,
        // PostgREST asks the planner whenever the exact count passes db-max-rows, and
        // without db-max-rows always (its Maybe comparison: Just n > Nothing).
        Some(CountPref::Estimated) => true,
        _ => false,
    };
    let count = wants_plan_rows.then(|| sql::planned_count_statement(&plan));
    let env = envelope(state, api, schema, true)?;
    let out = db::run_read(&state.pool, &env, &main, count.as_ref()).await?;
    let total = match plan.count {
        None => None,
        Some(CountPref::Exact) => out.total,
        Some(CountPref::Planned) => out.planned_total,
        Some(CountPref::Estimated) => match (out.total, out.planned_total, max_rows) {
            (Some(exact), Some(planned), Some(max)) if exact > max => Some(exact.max(planned)),
            (Some(exact), Some(planned), None) => Some(exact.max(planned)),
            (exact, _, _) => exact,
        },
    };
    if plan.media_type.is_singular() && out.page_total != 1 {
        return Err(ApiError::Singularity(out.page_total));
    }
    let (status, content_range) = page_status(plan.root.offset, out.page_total, total)?;
    let mut r = rows_response(
        status,
        out.body,
        plan.head,
        plan.media_type,
        plan.aggregate.as_ref(),
    );
    set(&mut r, "Content-Range", &content_range);
    let location = if api.query.canonical.is_empty() {
        format!("/{name}")
    } else {
        format!("/{name}?{}", api.query.canonical)
    };
    set(&mut r, "Content-Location", &location);
    warn_legacy_targets(&mut r, api, &plan.legacy_targets);
    let (_, overridable) = commits(&state.config(), &api.prefs);
    finish_response(
        r,
        preference_applied(api, false, overridable),
        out.response_headers.as_deref(),
        out.response_status.as_deref(),
    )
}

/// PostgREST's warn-agent: the version whose behaviour pgrest follows.
const WARN_AGENT: &str = "PostgRESTv16.1";

const LEGACY_TARGET_WARNING: &str = "Embedded resource was referenced by relation name even though it has an alias. This is deprecated and will stop working in a future release.";

/// url-use-legacy-target-names: a request that addressed aliased embeds by relation
/// name still works, with a `Warning: 299` naming the replacements and a log line.
fn warn_legacy_targets(r: &mut Resp, api: &ApiRequest, targets: &[(String, String)]) {
    if targets.is_empty() {
        return;
    }
    let replacements: Vec<String> = targets
        .iter()
        .map(|(name, alias)| format!("`{name}` to `{alias}`"))
        .collect();
    let replacements = replacements.join(", ");
    set(
        r,
        "Warning",
        &format!(
            "299 {WARN_AGENT} \"{LEGACY_TARGET_WARNING} Update {replacements} in query string filters, orders or limits.\""
        ),
    );
    tracing::warn!("{LEGACY_TARGET_WARNING}");
    tracing::warn!(
        "Update filters, orders or limits that use {replacements} in `{} {}{}{}`",
        method_name(api.method),
        api.path,
        if api.query.canonical.is_empty() {
            ""
        } else {
            "?"
        },
        api.query.canonical
    );
}

/// The last touches of a successful response: Preference-Applied, then what SQL set
/// through response.headers and response.status (which win).
fn finish_response(
    mut r: Resp,
    applied: Option<String>,
    headers: Option<&str>,
    status: Option<&str>,
) -> Result<Resp, ApiError> {
    if let Some(applied) = applied {
        set(&mut r, "Preference-Applied", &applied);
    }
    apply_response_gucs(&mut r, headers, status)?;
    Ok(r)
}

/// `response.headers` (JSON array of one-key objects) and `response.status` set by SQL.
fn apply_response_gucs(
    r: &mut Resp,
    headers: Option<&str>,
    status: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(h) = headers {
        let parsed: Option<Vec<serde_json::Map<String, serde_json::Value>>> =
            serde_json::from_str(h).ok();
        let Some(list) = parsed else {
            return Err(ApiError::InvalidResponseHeaders);
        };
        let mut replaced = std::collections::HashSet::new();
        for obj in list {
            for (k, v) in obj {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                if replaced.insert(k.to_ascii_lowercase()) {
                    set(r, &k, &v);
                } else {
                    append(r, &k, &v);
                }
            }
        }
    }
    if let Some(s) = status {
        let code = s
            .trim()
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(ApiError::InvalidResponseStatus)?;
        *r.status_mut() = code;
    }
    Ok(())
}

pub fn error_response(e: &ApiError, minimal: bool) -> Resp {
    if let ApiError::Custom {
        status,
        status_text: _,
        headers,
        body,
    } = e
    {
        let mut r = body_response(*status, body.to_string(), false);
        set(&mut r, "Content-Type", "application/json; charset=utf-8");
        let code = body["code"].as_str().unwrap_or("PGRST").to_string();
        set(&mut r, "Proxy-Status", &format!("PostgREST; error={code}"));
        for (k, v) in headers {
            set(&mut r, k, v);
        }
        return r;
    }
    let body = e.body(minimal).to_string();
    let mut r = body_response(e.status(), body, false);
    set(&mut r, "Content-Type", "application/json; charset=utf-8");
    set(
        &mut r,
        "Proxy-Status",
        &format!("PostgREST; error={}", e.code()),
    );
    for (name, value) in e.extra_headers() {
        set(&mut r, name, &value);
    }
    r
}
