//! One request's way through: parse, identify, resolve, read the body, plan, run,
//! respond. Every stage reads the one snapshot of configuration and schema cache the
//! request took when it arrived.

use std::time::Instant;

use super::body::ApiBody;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{header, HeaderMap, Request, Response};

use super::response::{error_response, set, set_header, set_static, Resp, CONTENT_PROFILE};
use super::templates::{Known, PayloadShape, ReadShape};
use crate::error::ApiError;
use crate::ops::state::{AppState, Limits, Snapshot};
use crate::request::{self, Method};
use crate::timing::{time, Stage};
use std::borrow::Cow;

/// Every success varies by these (PostgREST 16 sends Vary on all of them).
const VARY: HeaderValue = HeaderValue::from_static("Accept, Prefer, Range");

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What the outer layers (CORS, the access log, server-trace-header) need of the request
/// once its body is gone. Kept as hyper's own values: cloning them shares the bytes hyper
/// read instead of copying them (the owned Strings this held were 3-5 allocations per
/// request).
struct Head {
    method: hyper::Method,
    uri: hyper::Uri,
    referer: Option<header::HeaderValue>,
    user_agent: Option<header::HeaderValue>,
    origin: Option<header::HeaderValue>,
    /// A CORS preflight: OPTIONS with an Origin and Access-Control-Request-Method.
    preflight: bool,
    requested_headers: Option<header::HeaderValue>,
    /// server-trace-header's name and the request's value (empty if absent).
    trace_header: Option<(String, String)>,
}

/// A header value as text, when it is text.
fn text(value: Option<&header::HeaderValue>) -> Option<&str> {
    value.and_then(|v| v.to_str().ok())
}

impl Head {
    fn of(req: &Request<Incoming>, trace_header: Option<&str>) -> Head {
        let headers = req.headers();
        let cloned = |name: header::HeaderName| headers.get(name).cloned();
        let method = req.method().clone();
        let origin = cloned(header::ORIGIN).filter(|v| v.to_str().is_ok());
        let preflight = method == hyper::Method::OPTIONS
            && origin.is_some()
            && header_str(headers, header::ACCESS_CONTROL_REQUEST_METHOD).is_some();
        Head {
            uri: req.uri().clone(),
            referer: cloned(header::REFERER),
            user_agent: cloned(header::USER_AGENT),
            preflight,
            requested_headers: cloned(header::ACCESS_CONTROL_REQUEST_HEADERS),
            trace_header: trace_header.map(|name| {
                let value = header_str(headers, name).unwrap_or("").to_string();
                (name.to_string(), value)
            }),
            origin,
            method,
        }
    }
}

/// Answers one request: the chain, then CORS, metrics and the access log.
pub async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    peer: Option<std::net::SocketAddr>,
) -> Resp {
    let started = Instant::now();
    let snap = state.snapshot();
    let config = &snap.config;
    let head = Head::of(&req, config.server_trace_header.as_deref());
    let mut trace = crate::timing::Trace::default();
    let mut response = if head.preflight {
        Response::new(ApiBody::whole(Bytes::new()))
    } else {
        // Boxed: the chain's future is large, and moving it by value into the trace's
        // task-local scope cost 2.4 % of pgrest's CPU in memcpy (by-pk, perf).
        let chain = boxed!(respond(state, &snap, req));
        let (result, t) =
            crate::timing::measure(chain, config.log_query, config.server_timing_enabled).await;
        trace = t;
        match result {
            Ok(mut r) => {
                if let Some(timings) = &trace.timings {
                    let timings = timings.header(started.elapsed());
                    set(&mut r, "Server-Timing", &timings);
                }
                r
            }
            Err(e) => failure(state, &snap, &e),
        }
    };
    if let Some((name, value)) = &head.trace_header {
        set(&mut response, name, value);
    }
    super::cors::cors(
        config,
        &mut response,
        text(head.origin.as_ref()),
        head.method == hyper::Method::OPTIONS,
        head.preflight
            .then_some(text(head.requested_headers.as_ref()).unwrap_or("")),
    );
    let status = response.status().as_u16();
    state
        .metrics
        .request(head.method.as_str(), status, started.elapsed());
    log_access(&snap, &head, &trace, &response, peer);
    response
}

/// The error response, after noting what the error says about the database.
fn failure(state: &AppState, snap: &Snapshot, e: &ApiError) -> Resp {
    if matches!(e, ApiError::Connection(_) | ApiError::Client(_)) {
        crate::ops::reload::connection_lost(state);
    }
    if *e == ApiError::PoolTimeout {
        state.metrics.pool_timeout();
    }
    error_response(e, snap.config.minimal_errors)
}

fn log_access(
    snap: &Snapshot,
    head: &Head,
    trace: &crate::timing::Trace,
    response: &Resp,
    peer: Option<std::net::SocketAddr>,
) {
    use crate::ops::access_log;
    use hyper::body::Body;
    let status = response.status().as_u16();
    if !access_log::wanted(snap.config.log_level, status) {
        return;
    }
    let uri = head.uri.to_string();
    access_log::write(&access_log::Entry {
        peer,
        role: trace.role.as_deref(),
        method: head.method.as_str(),
        uri: &uri,
        status,
        bytes: response.body().size_hint().exact(),
        referer: text(head.referer.as_ref()),
        user_agent: text(head.user_agent.as_ref()),
        queries: trace.queries.as_deref(),
    });
}

/// The five stages: parse, identify (before anything touches the database), resolve
/// (schema, existence, negotiation: before the body is read), plan, run.
async fn respond(
    state: &AppState,
    snap: &Snapshot,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    // Shared with the request, not copied: the read shape borrows its query string.
    let uri = req.uri().clone();
    let (path, query) = (uri.path(), uri.query().unwrap_or(""));
    let shape = ReadShape::of(req.method(), path, query, req.headers());
    let payload_shape = PayloadShape::of(req.method(), path, query, req.headers());
    let known = shape
        .as_ref()
        .map_or(Known::Unknown, |s| snap.reads.get(s.key()));
    let api = time(Stage::Parse, || {
        let method = req.method().as_str();
        match &known {
            Known::Template(t) => {
                let canonical = shape.as_ref().and_then(|s| t.canonical(s.values()));
                request::parse_templated(method, &uri, req.headers(), canonical)
            }
            _ => request::parse(method, &uri, req.headers()),
        }
    })?;
    let identity = if api.method == Method::Options {
        None
    } else {
        let identity = time(Stage::Jwt, || {
            crate::auth::identify(
                snap.auth.as_deref(),
                api.authorization.as_deref(),
                snap.config.db_anon_role.as_deref(),
                &state.authenticator,
            )
        })?;
        crate::timing::record_role(&identity.role);
        Some(identity)
    };
    let resolved = match &known {
        Known::Template(t) => Cow::Borrowed(&t.resolved),
        _ => Cow::Owned(crate::plan::resolve(&api, &snap.schema, &snap.config)?),
    };
    let body = if api.takes_body() {
        Some(read_body(req, &state.limits).await?)
    } else {
        None
    };
    let run = super::run::Run {
        state,
        snap,
        api: &api,
        identity: identity.as_ref(),
        resolved: &resolved,
    };
    // A payload shape is a POST's: an insert's or a call's by its action.
    let mut r = match (&shape, payload_shape, &api.action) {
        (Some(shape), _, _) => run.read_templated(shape, &known, body).await?,
        (None, Some(payload), request::Action::Mutate { .. }) => {
            run.insert_templated(&payload, body).await?
        }
        (None, Some(payload), request::Action::Call { function }) => {
            run.call_templated(&payload, function, body).await?
        }
        _ => run.plan(run.planned(&api, body)?).await?,
    };
    // With several schemas, a response says which one it came from.
    if resolved.profiled {
        set_header(&mut r, CONTENT_PROFILE, &resolved.schema);
    }
    if !r.headers().contains_key(hyper::header::VARY) {
        set_static(&mut r, hyper::header::VARY, VARY);
    }
    Ok(r)
}

/// Reads a request body of at most `limits.max_body_size` bytes: a Content-Length over
/// it is refused before anything is read, a body growing past it as soon as it does, and
/// one that stalls for the header read timeout is refused too (a slow client would
/// otherwise hold its connection and its memory indefinitely).
async fn read_body(req: Request<Incoming>, limits: &Limits) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let max = limits.max_body_size;
    let declared =
        header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
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
