//! Building responses: headers, bodies as PostgreSQL produced them, the statuses and
//! headers PostgREST derives from an outcome, and errors in PostgREST's JSON shape.

use std::borrow::Cow;

use super::body::ApiBody;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::error::ApiError;
use crate::request::{self, ApiRequest, CountPref, MediaType, Method};
use crate::schema::routines::{AggHandler, MediaHandler};

pub type Resp = Response<ApiBody>;

/// `Preference-Applied`, in PostgREST's order.
pub fn preference_applied(
    api: &ApiRequest,
    resolution: bool,
    tx_overridable: bool,
) -> Option<Cow<'static, str>> {
    use request::prefer::{Resolution, ReturnPref, TxPref};
    let p = &api.prefs;
    let writes = !matches!(api.method, Method::Get | Method::Head);
    let mut out: Vec<Cow<'static, str>> = Vec::new();
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
        out.push(format!("timezone={tz}").into());
    }
    if let (Some(n), Some(true)) = (p.max_affected, p.strict) {
        out.push(format!("max-affected={n}").into());
    }
    // One preference (the usual case) is its own static text: no allocation.
    match out.len() {
        0 => None,
        1 => out.pop(),
        _ => Some(out.join(", ").into()),
    }
}

pub fn allow(methods: &str) -> Resp {
    let mut r = Response::new(ApiBody::whole(Bytes::new()));
    set_header(&mut r, hyper::header::ALLOW, methods);
    r
}

pub fn set(r: &mut Resp, name: &str, value: &str) {
    if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
        set_header(r, n, value);
    }
}

/// `set` for a name known at compile time: the constants skip parsing the name, which
/// with the other per-response header work was ~2 % of pgrest's instructions per by-pk
/// request (callgrind).
pub fn set_header(r: &mut Resp, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// `set_header` for a value built for the response: it becomes the header's bytes as is
/// (checked, not copied).
pub fn set_owned(r: &mut Resp, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        r.headers_mut().insert(name, v);
    }
}

/// `set_header` for a value made at compile time (a `const` HeaderValue: checked by the
/// compiler, not per response; the runtime check of a 31-byte Content-Type was about 300
/// instructions, callgrind).
pub fn set_static(r: &mut Resp, name: HeaderName, value: HeaderValue) {
    r.headers_mut().insert(name, value);
}

pub use crate::request::CONTENT_PROFILE;
pub const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

pub fn append(r: &mut Resp, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        r.headers_mut().append(n, v);
    }
}

/// Refuses a write's or call's outcome by its row count: not exactly one row for a
/// singular Accept, more than `max-affected` with handling=strict.
pub fn refuse_count(rows: i64, singular: bool, strict_max: Option<i64>) -> Result<(), ApiError> {
    if singular && rows != 1 {
        return Err(ApiError::Singularity(rows));
    }
    if strict_max.is_some_and(|max| rows > max) {
        return Err(ApiError::MaxAffected(rows));
    }
    Ok(())
}

/// The response for rendered rows: the body as the statement gave it with the media
/// type's Content-Type, or a handler aggregate's output with its own.
pub fn rows_response(
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
            set_static(
                &mut r,
                hyper::header::CONTENT_TYPE,
                media_type.content_type_value(),
            );
            r
        }
    }
}

/// A custom media type's response (a handler function's or aggregate's output, as the
/// statement gave it).
pub fn handler_response(status: u16, body: Bytes, head: bool, media: &MediaHandler) -> Resp {
    let mut r = body_response(status, body, head);
    set(
        &mut r,
        "Content-Type",
        &handler_content_type(&media.media_type),
    );
    r
}

pub fn body_response(status: u16, body: impl Into<Bytes>, head: bool) -> Resp {
    let body = if head { Bytes::new() } else { body.into() };
    let mut r = Response::new(ApiBody::whole(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r
}

/// The Content-Type of a custom media type: PostgREST's known textual types carry the
/// charset, others (and octet-stream) are sent as named; `*/*` is octet-stream.
pub fn handler_content_type(media: &str) -> String {
    match media.to_ascii_lowercase().as_str() {
        "*/*" => "application/octet-stream".to_string(),
        "application/json"
        | "application/geo+json"
        | "text/csv"
        | "text/plain"
        | "text/xml"
        | "application/openapi+json"
        | "application/x-www-form-urlencoded" => {
            format!("{media}; charset=utf-8")
        }
        _ => media.to_string(),
    }
}

/// Status and Content-Range of a page starting at `offset` with `rows` rows, out of
/// `total` when counted; an offset past a known total is unsatisfiable.
pub fn page_status(offset: i64, rows: i64, total: Option<i64>) -> Result<(u16, String), ApiError> {
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
    let status = match total {
        Some(t) if rows < t => 206,
        _ => 200,
    };
    Ok((status, content_range(offset, rows, total)))
}

/// `first-last/total`, `*/total` for no rows, `*` for an unknown total. Written with itoa
/// into one buffer: format! took about 1,000 instructions of a by-pk read (callgrind).
fn content_range(offset: i64, rows: i64, total: Option<i64>) -> String {
    let mut numbers = itoa::Buffer::new();
    let mut out = String::with_capacity(48);
    if rows == 0 {
        out.push('*');
    } else {
        out.push_str(numbers.format(offset));
        out.push('-');
        out.push_str(numbers.format(offset.saturating_add(rows) - 1));
    }
    out.push('/');
    match total {
        Some(t) => out.push_str(numbers.format(t)),
        None => out.push('*'),
    }
    out
}

/// `Location: /table?pk=eq.value` from the one written row's key.
pub fn location(table: &str, body: &[u8]) -> Option<String> {
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

/// PostgREST's warn-agent: the version whose behaviour pgrest follows.
const WARN_AGENT: &str = "PostgRESTv16.1";

const LEGACY_TARGET_WARNING: &str = "Embedded resource was referenced by relation name even though it has an alias. This is deprecated and will stop working in a future release.";

/// url-use-legacy-target-names: a request that addressed aliased embeds by relation
/// name still works, with a `Warning: 299` naming the replacements and a log line.
pub fn warn_legacy_targets(r: &mut Resp, api: &ApiRequest, targets: &[(String, String)]) {
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
        api.method.name(),
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
pub fn finish_response(
    mut r: Resp,
    applied: Option<Cow<'static, str>>,
    headers: Option<&str>,
    status: Option<&str>,
) -> Result<Resp, ApiError> {
    match applied {
        Some(Cow::Borrowed(text)) => {
            set_static(&mut r, PREFERENCE_APPLIED, HeaderValue::from_static(text))
        }
        Some(Cow::Owned(text)) => set_owned(&mut r, PREFERENCE_APPLIED, text),
        None => {}
    }
    apply_response_gucs(&mut r, headers, status)?;
    Ok(r)
}

/// `response.headers` (JSON array of one-key objects) and `response.status` set by SQL.
pub fn apply_response_gucs(
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
        set_static(
            &mut r,
            hyper::header::CONTENT_TYPE,
            MediaType::Json.content_type_value(),
        );
        let code = body["code"].as_str().unwrap_or("PGRST").to_string();
        set(&mut r, "Proxy-Status", &format!("PostgREST; error={code}"));
        for (k, v) in headers {
            set(&mut r, k, v);
        }
        return r;
    }
    let body = e.body(minimal).to_string();
    let mut r = body_response(e.status(), body, false);
    set_static(
        &mut r,
        hyper::header::CONTENT_TYPE,
        MediaType::Json.content_type_value(),
    );
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
