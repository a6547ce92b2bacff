//! Pure parse of an HTTP request into an `ApiRequest`: path, query string, headers.
//! No database and no schema knowledge here.

pub mod accept;
pub mod payload;
pub mod prefer;
pub mod query;

pub use accept::{negotiate, negotiate_with_plan, PlanRequest};
pub use prefer::Preferences;

use std::borrow::Cow;

use crate::error::ApiError;
use query::{
    parse_field, parse_filter_value, parse_logic, parse_order, parse_select, split_key, LogicTree,
    OrderTerm, SelectItem,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Root,
    Relation(String),
    Rpc(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountPref {
    Exact,
    Planned,
    Estimated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Json,
    SingleObject,
    /// `application/vnd.pgrst.array+json;nulls=stripped`: keys with null values left out.
    StrippedArray,
    /// `application/vnd.pgrst.object+json;nulls=stripped`
    StrippedObject,
    Csv,
    /// `application/geo+json`: a FeatureCollection built by PostGIS's `ST_AsGeoJSON(row)`.
    GeoJson,
}

impl MediaType {
    /// The media type name, without charset.
    pub fn name(self) -> &'static str {
        match self {
            MediaType::Json => "application/json",
            MediaType::SingleObject => "application/vnd.pgrst.object+json",
            MediaType::Csv => "text/csv",
            MediaType::GeoJson => "application/geo+json",
            MediaType::StrippedArray => "application/vnd.pgrst.array+json;nulls=stripped",
            MediaType::StrippedObject => "application/vnd.pgrst.object+json;nulls=stripped",
        }
    }

    /// Whether the response must be exactly one object.
    pub fn is_singular(self) -> bool {
        matches!(self, MediaType::SingleObject | MediaType::StrippedObject)
    }

    /// The Content-Type of a response in this media type, as a header value made at
    /// compile time.
    pub fn content_type_value(self) -> hyper::header::HeaderValue {
        use hyper::header::HeaderValue;
        const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
        const OBJECT: HeaderValue =
            HeaderValue::from_static("application/vnd.pgrst.object+json; charset=utf-8");
        const STRIPPED_ARRAY: HeaderValue = HeaderValue::from_static(
            "application/vnd.pgrst.array+json;nulls=stripped; charset=utf-8",
        );
        const STRIPPED_OBJECT: HeaderValue = HeaderValue::from_static(
            "application/vnd.pgrst.object+json;nulls=stripped; charset=utf-8",
        );
        const CSV: HeaderValue = HeaderValue::from_static("text/csv; charset=utf-8");
        const GEO_JSON: HeaderValue =
            HeaderValue::from_static("application/geo+json; charset=utf-8");
        match self {
            MediaType::Json => JSON,
            MediaType::SingleObject => OBJECT,
            MediaType::StrippedArray => STRIPPED_ARRAY,
            MediaType::StrippedObject => STRIPPED_OBJECT,
            MediaType::Csv => CSV,
            MediaType::GeoJson => GEO_JSON,
        }
    }
}

/// Everything the query string says, keyed by embed path (empty = the root).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryParams {
    pub select: Vec<SelectItem>,
    pub filters: Vec<(Vec<String>, LogicTree)>,
    pub order: Vec<(Vec<String>, Vec<OrderTerm>)>,
    pub limits: Vec<(Vec<String>, i64)>,
    pub offsets: Vec<(Vec<String>, i64)>,
    /// `columns=a,b`: the columns a write takes from the body.
    pub columns: Option<Vec<String>>,
    /// `on_conflict=a,b`: the unique columns an upsert resolves on.
    pub on_conflict: Option<Vec<String>>,
    /// Function arguments from the query string (GET/HEAD /rpc), in order.
    pub rpc_args: Vec<(String, String)>,
    /// Sorted, re-encoded query string for Content-Location.
    pub canonical: String,
}

/// What a request asks for, decided from its method and path alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// GET or HEAD on a table or view.
    Read { relation: String },
    /// POST, PUT, PATCH or DELETE on a table or view.
    Mutate { relation: String },
    /// GET, HEAD or POST on `/rpc/<function>`.
    Call { function: String },
    /// OPTIONS on a table or view.
    RelationInfo { relation: String },
    /// OPTIONS on `/rpc/<function>`.
    RoutineInfo { function: String },
    /// GET or HEAD on `/`: the OpenAPI document or the documentation page.
    Document,
    /// OPTIONS on `/`.
    RootInfo,
}

impl Action {
    /// The action a method asks of a target; methods a target does not take are refused.
    pub fn of(method: Method, target: Target) -> Result<Action, ApiError> {
        use Method::*;
        Ok(match (target, method) {
            (Target::Root, Get | Head) => Action::Document,
            (Target::Root, Options) => Action::RootInfo,
            (Target::Root, m) => return Err(ApiError::UnsupportedMethod(m.name().into())),
            (Target::Rpc(_), m @ (Put | Patch | Delete)) => {
                return Err(ApiError::RpcMethod(m.name().into()))
            }
            (Target::Rpc(function), Options) => Action::RoutineInfo { function },
            (Target::Rpc(function), _) => Action::Call { function },
            (Target::Relation(relation), Options) => Action::RelationInfo { relation },
            (Target::Relation(relation), Get | Head) => Action::Read { relation },
            (Target::Relation(relation), _) => Action::Mutate { relation },
        })
    }
}

/// A parsed request. Built once by [`parse`] and never changed afterwards: what the
/// schema, the token or the Accept header make of it is the planner's output.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    pub action: Action,
    pub query: QueryParams,
    pub prefs: Preferences,
    /// `Range: a-b` request header: (first, last).
    pub range: Option<(i64, Option<i64>)>,
    /// Raw path, for request.path.
    pub path: String,
    /// Lower-cased header names with values (Cookie excluded), for request.headers.
    pub headers: HeaderPairs,
    pub cookies: Vec<(String, String)>,
    /// The schema named by Accept-Profile/Content-Profile, if any.
    pub profile: Option<String>,
    /// The Authorization header, if any.
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
}

impl ApiRequest {
    /// Whether the request has a body to read (writes other than DELETE take theirs as
    /// the payload; a DELETE's is read and ignored, as before).
    pub fn takes_body(&self) -> bool {
        match self.action {
            Action::Mutate { .. } => true,
            Action::Call { .. } => self.method == Method::Post,
            _ => false,
        }
    }

    /// GET or HEAD.
    pub fn is_read_method(&self) -> bool {
        matches!(self.method, Method::Get | Method::Head)
    }
}

use hyper::header::HeaderName;
pub const PREFER: HeaderName = HeaderName::from_static("prefer");
pub const ACCEPT_PROFILE: HeaderName = HeaderName::from_static("accept-profile");
pub const CONTENT_PROFILE: HeaderName = HeaderName::from_static("content-profile");

/// Parses the parts of an HTTP request: method and path into an [`Action`], the query
/// string, Prefer, Range, the headers and cookies PostgreSQL sees.
pub fn parse(
    method: &str,
    uri: &hyper::Uri,
    headers: &hyper::HeaderMap,
) -> Result<ApiRequest, ApiError> {
    parse_as(method, uri, headers, Query::Parse)
}

/// [`parse`] for a read whose shape has a template (`http::templates`): its query string
/// parsed before, in every part but the values the template binds, so only its canonical
/// form is made (or taken from the template, `canonical`), and NUL refused as [`parse`]
/// refuses it; `query` holds nothing else.
pub fn parse_templated(
    method: &str,
    uri: &hyper::Uri,
    headers: &hyper::HeaderMap,
    canonical: Option<String>,
) -> Result<ApiRequest, ApiError> {
    parse_as(method, uri, headers, Query::CanonicalOnly(canonical))
}

/// How much of the query string a parse reads.
enum Query {
    Parse,
    /// Its canonical form only, made here unless given.
    CanonicalOnly(Option<String>),
}

fn parse_as(
    method: &str,
    uri: &hyper::Uri,
    headers: &hyper::HeaderMap,
    mode: Query,
) -> Result<ApiRequest, ApiError> {
    let method = parse_method(method)?;
    let path = uri.path().to_string();
    let target = parse_target(&path)?;
    let rpc_read = matches!(target, Target::Rpc(_)) && matches!(method, Method::Get | Method::Head);
    let raw_query = uri.query().unwrap_or("");
    let query = match mode {
        Query::CanonicalOnly(given) => QueryParams {
            canonical: match given {
                Some(canonical) => canonical,
                None => canonical_query(query_pairs(raw_query)?),
            },
            ..Default::default()
        },
        Query::Parse => parse_query_for(raw_query, rpc_read)?,
    };
    let action = Action::of(method, target)?;
    let profile_header = match method {
        Method::Get | Method::Head => ACCEPT_PROFILE,
        _ => CONTENT_PROFILE,
    };
    let h = Headers::of(headers, &profile_header);
    let owned = |v: Option<Option<&str>>| v.flatten().map(str::to_string);
    Ok(ApiRequest {
        method,
        action,
        query,
        prefs: Preferences::parse(h.prefer.into_iter()),
        range: h.range.flatten().and_then(parse_range_header),
        path,
        headers: h.pairs,
        cookies: h.cookies,
        profile: owned(h.profile),
        authorization: owned(h.authorization),
        accept: owned(h.accept),
        content_type: owned(h.content_type),
    })
}

/// What a request's headers say, read in one pass over them (six lookups by name cost
/// about 700 instructions a request, callgrind). A single-valued header is its first
/// value, `Some(None)` when that one is not text, as `HeaderMap::get` would give it.
struct Headers<'h> {
    pairs: HeaderPairs,
    cookies: Vec<(String, String)>,
    /// Every Prefer value that is text, in order.
    prefer: Vec<&'h str>,
    range: Option<Option<&'h str>>,
    profile: Option<Option<&'h str>>,
    authorization: Option<Option<&'h str>>,
    accept: Option<Option<&'h str>>,
    content_type: Option<Option<&'h str>>,
}

impl<'h> Headers<'h> {
    fn of(headers: &'h hyper::HeaderMap, profile: &HeaderName) -> Headers<'h> {
        use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, RANGE};
        let mut h = Headers {
            pairs: HeaderPairs(Vec::with_capacity(headers.len())),
            cookies: Vec::new(),
            prefer: Vec::new(),
            range: None,
            profile: None,
            authorization: None,
            accept: None,
            content_type: None,
        };
        for (name, value) in headers {
            let text = value.to_str().ok();
            let first = |slot: &mut Option<Option<&'h str>>| {
                slot.get_or_insert(text);
            };
            match name {
                n if n == ACCEPT => first(&mut h.accept),
                n if n == AUTHORIZATION => first(&mut h.authorization),
                n if n == CONTENT_TYPE => first(&mut h.content_type),
                n if n == RANGE => first(&mut h.range),
                n if n == PREFER => h.prefer.extend(text),
                n if n == profile => first(&mut h.profile),
                _ => {}
            }
            let Some(text) = text else { continue };
            if name == COOKIE {
                h.cookies.extend(parse_cookies(text));
            } else {
                h.pairs.0.push((name.clone(), value.clone()));
            }
        }
        h
    }
}

/// A request's headers but Cookie, those whose values are text, in the order given. Kept
/// as hyper's own names and values: a clone shares the bytes hyper read, where copying
/// each into a String took two allocations a header (about 1,500 instructions of a
/// request with six, callgrind).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderPairs(Vec<(HeaderName, hyper::header::HeaderValue)>);

impl HeaderPairs {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        // Only values that are text (visible ASCII) are kept, so they are UTF-8, which
        // is checked a word at a time where to_str checks them byte by byte.
        self.0.iter().map(|(name, value)| {
            let text = std::str::from_utf8(value.as_bytes()).unwrap_or_default();
            (name.as_str(), text)
        })
    }

    /// The first value of a header by its lower-case name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

pub fn parse_method(m: &str) -> Result<Method, ApiError> {
    Ok(match m {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        other => return Err(ApiError::UnsupportedMethod(other.to_string())),
    })
}

/// `/`, `/name`, `/rpc/name`; names are percent-decoded.
pub fn parse_target(path: &str) -> Result<Target, ApiError> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    match segments.as_slice() {
        [] => Ok(Target::Root),
        [name] => Ok(Target::Relation(name.clone())),
        [rpc, name] if rpc == "rpc" => Ok(Target::Rpc(name.clone())),
        _ => Err(ApiError::InvalidPath),
    }
}

fn parse_int(what: &str, v: &str) -> Result<i64, ApiError> {
    v.trim().parse::<i64>().map_err(|_| {
        ApiError::parse(
            what,
            v,
            1,
            format!(
                "unexpected {:?} expecting digit",
                v.chars().next().map(String::from).unwrap_or_default()
            ),
        )
    })
}

/// `columns=a,b` / `on_conflict=a,b`: a non-empty list of names.
fn parse_column_list(key: &str, value: &str) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> = value
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_string())
        .collect();
    if let Some(pos) = names.iter().position(|n| n.is_empty()) {
        let what = if key == "columns" {
            "columns parameter"
        } else {
            "on_conflict parameter"
        };
        let column = names[..pos].iter().map(|n| n.len() + 1).sum::<usize>() + 1;
        return Err(ApiError::parse(
            what,
            value,
            column,
            "unexpected end of input expecting field name (* or [a..z0..9_$])",
        ));
    }
    Ok(names)
}

/// Refuses text holding a NUL character, which no PostgreSQL name or text value can
/// contain: as a name it would otherwise reach the SQL text (which the protocol cannot
/// carry), as a value PostgreSQL would refuse it anyway.
pub fn refuse_nul(what: &str, text: &str) -> Result<(), ApiError> {
    if text.contains('\0') {
        return Err(ApiError::NulCharacter(what.to_string()));
    }
    Ok(())
}

/// Parses a raw (still percent-encoded) query string.
pub fn parse_query(raw: &str) -> Result<QueryParams, ApiError> {
    parse_query_for(raw, false)
}

/// With `rpc_args`, a plain parameter whose value is not a filter (`?a=1`) is a function
/// argument rather than an error (GET/HEAD on /rpc).
pub fn parse_query_for(raw: &str, rpc_args: bool) -> Result<QueryParams, ApiError> {
    let mut params = QueryParams {
        select: vec![SelectItem::Star],
        ..Default::default()
    };
    let pairs = query_pairs(raw)?;
    for (key, value) in &pairs {
        let (key, value) = (key.as_ref(), value.as_ref());
        match key {
            "select" => params.select = parse_select(value)?,
            "columns" => params.columns = Some(parse_column_list(key, value)?),
            "on_conflict" => params.on_conflict = Some(parse_column_list(key, value)?),
            _ => add_parameter(&mut params, key, value, rpc_args)?,
        }
    }
    params.canonical = canonical_query(pairs);
    Ok(params)
}

/// The canonical form (see [`canonical_query`]) of a query string, and whether its keys
/// are all different (then the order of its pairs does not depend on their values).
pub fn canonical_form(raw: &str) -> Result<(String, bool), ApiError> {
    let pairs = query_pairs(raw)?;
    let distinct = pairs
        .iter()
        .enumerate()
        .all(|(i, (k, _))| pairs[..i].iter().all(|(other, _)| other != k));
    Ok((canonical_query(pairs), distinct))
}

/// The query string as Content-Location shows it: its pairs sorted and re-encoded.
fn canonical_query(mut pairs: Vec<QueryPair>) -> String {
    pairs.sort();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// One decoded `key=value` of a query string.
type QueryPair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// The query string's decoded pairs; a bare key without `=` is ignored, as PostgREST
/// does, and NUL is refused anywhere. Pairs without escapes borrow from `raw`: most
/// query strings (`id=eq.1`) have none, which saves two allocations per pair.
fn query_pairs(raw: &str) -> Result<Vec<QueryPair<'_>>, ApiError> {
    let mut pairs = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        if !piece.contains('=') {
            continue;
        }
        let (k, v) = form_urlencoded::parse(piece.as_bytes())
            .next()
            .unwrap_or_default();
        refuse_nul("query parameter", &k)?;
        refuse_nul("query parameter value", &v)?;
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// A `[path.]order|limit|offset|and|or|not.and|not.or|<field>` parameter; a field that
/// does not parse as a filter is a function argument for GET calls.
fn add_parameter(
    params: &mut QueryParams,
    key: &str,
    value: &str,
    rpc_args: bool,
) -> Result<(), ApiError> {
    let (path, last) = split_key(key);
    if path.len() > query::MAX_NESTING {
        return Err(ApiError::parse(
            "embedded resource path",
            key,
            1,
            format!("more than {} levels (the limit)", query::MAX_NESTING),
        ));
    }
    let (path, last) = match (path.split_last(), last.as_str()) {
        (Some((not, rest)), "or" | "and") if not == "not" => (rest.to_vec(), format!("not.{last}")),
        _ => (path, last),
    };
    match last.as_str() {
        "order" => params.order.push((path, parse_order(value)?)),
        "limit" => params.limits.push((path, parse_int("limit", value)?)),
        "offset" => params.offsets.push((path, parse_int("offset", value)?)),
        "or" | "and" | "not.or" | "not.and" => {
            params.filters.push((path, parse_logic(&last, value)?))
        }
        _ if rpc_args && path.is_empty() && !may_be_filter(value) => {
            params.rpc_args.push((key.to_string(), value.to_string()))
        }
        field => match parse_field(field).and_then(|f| parse_filter_value(f, value)) {
            Err(_) if rpc_args && path.is_empty() => {
                params.rpc_args.push((key.to_string(), value.to_string()))
            }
            Err(e) => return Err(e),
            Ok(filter) => params.filters.push((path, LogicTree::Filter(filter))),
        },
    }
    Ok(())
}

/// Whether a value could parse as a filter: an operator is lower-case letters, after an
/// optional `not.`. A call's argument that cannot (`?a=1`, `?name=Ann`) is known to be one
/// without a failed filter parse, whose error message alone cost about 2,500 instructions
/// an argument (callgrind).
fn may_be_filter(value: &str) -> bool {
    let operator = value.strip_prefix("not.").unwrap_or(value);
    operator.starts_with(|c: char| c.is_ascii_lowercase())
}

/// `Range: a-b` or `a-`; anything else (units, several ranges) is ignored.
pub fn parse_range_header(value: &str) -> Option<(i64, Option<i64>)> {
    let (a, b) = value.trim().split_once('-')?;
    let first = a.trim().parse::<i64>().ok()?;
    let b = b.trim();
    if b.is_empty() {
        return Some((first, None));
    }
    Some((first, Some(b.parse::<i64>().ok()?)))
}

/// Cookie header -> name/value pairs.
pub fn parse_cookies(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("/").unwrap(), Target::Root);
        assert_eq!(
            parse_target("/Order%20Items").unwrap(),
            Target::Relation("Order Items".into())
        );
        assert_eq!(parse_target("/rpc/f").unwrap(), Target::Rpc("f".into()));
        assert_eq!(parse_target("/a/b").unwrap_err(), ApiError::InvalidPath);
        assert_eq!(parse_target("/rpc/f/x").unwrap_err(), ApiError::InvalidPath);
    }

    #[test]
    fn query_keys() {
        let q = parse_query("select=a,b&id=eq.1&not.or=(a.eq.1,b.eq.2)&actors.order=x.desc&limit=5&offset=2&bare&name=like.A%2B*+b").unwrap();
        assert_eq!(q.select.len(), 2);
        assert_eq!(q.filters.len(), 3);
        assert_eq!(q.order[0].0, vec!["actors".to_string()]);
        assert_eq!(q.limits, vec![(vec![], 5)]);
        assert_eq!(q.offsets, vec![(vec![], 2)]);
        match &q.filters[2].1 {
            LogicTree::Filter(f) => match &f.operation {
                query::Operation::Compare { value, .. } => assert_eq!(value, "A+* b"),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert!(parse_query("a=").is_err());
        assert!(parse_query("limit=x").is_err());
        assert_eq!(
            parse_query("b=eq.1&a=eq.1").unwrap().canonical,
            "a=eq.1&b=eq.1"
        );
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(None).unwrap(), MediaType::Json);
        assert_eq!(
            negotiate(Some("text/csv, application/json")).unwrap(),
            MediaType::Csv
        );
        assert_eq!(
            negotiate(Some("text/unknown, */*")).unwrap(),
            MediaType::Json
        );
        assert_eq!(
            negotiate(Some("text/csv;q=0.5, application/vnd.pgrst.object+json")).unwrap(),
            MediaType::SingleObject
        );
        assert_eq!(
            negotiate(Some("Text/CSV; version=1")).unwrap(),
            MediaType::Csv
        );
        assert_eq!(
            negotiate(Some("application/geo+json")).unwrap(),
            MediaType::GeoJson
        );
        assert_eq!(
            negotiate(Some("text/unknowntype")).unwrap_err(),
            ApiError::NotAcceptable("text/unknowntype".into())
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range_header("0-9"), Some((0, Some(9))));
        assert_eq!(parse_range_header("5-"), Some((5, None)));
        assert_eq!(parse_range_header("items=0-9"), None);
    }
}
