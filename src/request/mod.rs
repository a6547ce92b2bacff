//! Pure parse of an HTTP request into an `ApiRequest`: path, query string, headers.
//! No database and no schema knowledge here.

pub mod payload;
pub mod prefer;
pub mod query;

pub use prefer::Preferences;

use crate::error::ApiError;
use crate::schema::routines::AggHandler;
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

    pub fn content_type(self) -> &'static str {
        match self {
            MediaType::Json => "application/json; charset=utf-8",
            MediaType::SingleObject => "application/vnd.pgrst.object+json; charset=utf-8",
            MediaType::StrippedArray => {
                "application/vnd.pgrst.array+json;nulls=stripped; charset=utf-8"
            }
            MediaType::StrippedObject => {
                "application/vnd.pgrst.object+json;nulls=stripped; charset=utf-8"
            }
            MediaType::Csv => "text/csv; charset=utf-8",
            MediaType::GeoJson => "application/geo+json; charset=utf-8",
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

#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    pub target: Target,
    pub query: QueryParams,
    pub prefs: Preferences,
    pub media_type: MediaType,
    /// `Range: a-b` request header: (first, last).
    pub range: Option<(i64, Option<i64>)>,
    /// Raw path, for request.path.
    pub path: String,
    /// Lower-cased header names with values (Cookie excluded), for request.headers.
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<(String, String)>,
    /// The schema named by Accept-Profile/Content-Profile, if any.
    pub profile: Option<String>,
    /// The Authorization header, if any.
    pub authorization: Option<String>,
    /// Who the request runs as, once the token is verified.
    pub identity: Option<crate::auth::Identity>,
    /// Accept asked for the statement's plan rather than its result.
    pub plan: Option<PlanRequest>,
    /// The custom media type (a function's return domain) chosen for an RPC call.
    pub handler: Option<String>,
    /// The handler aggregate chosen to render the rows (a custom media type).
    pub aggregate: Option<crate::schema::routines::AggHandler>,
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
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        // A bare key without `=` is ignored, as PostgREST does.
        if !piece.contains('=') {
            continue;
        }
        let (k, v) = form_urlencoded::parse(piece.as_bytes())
            .next()
            .unwrap_or_default();
        refuse_nul("query parameter", &k)?;
        refuse_nul("query parameter value", &v)?;
        pairs.push((k.into_owned(), v.into_owned()));
    }
    for (key, value) in &pairs {
        if key == "select" {
            params.select = parse_select(value)?;
            continue;
        }
        if key == "columns" || key == "on_conflict" {
            let list = parse_column_list(key, value)?;
            if key == "columns" {
                params.columns = Some(list);
            } else {
                params.on_conflict = Some(list);
            }
            continue;
        }
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
            (Some((not, rest)), "or" | "and") if not == "not" => {
                (rest.to_vec(), format!("not.{last}"))
            }
            _ => (path, last),
        };
        match last.as_str() {
            "order" => params.order.push((path, parse_order(value)?)),
            "limit" => params.limits.push((path, parse_int("limit", value)?)),
            "offset" => params.offsets.push((path, parse_int("offset", value)?)),
            "or" | "and" | "not.or" | "not.and" => {
                params.filters.push((path, parse_logic(&last, value)?))
            }
            field => {
                let parsed = parse_field(field).and_then(|f| parse_filter_value(f, value));
                match parsed {
                    Err(_) if rpc_args && path.is_empty() => {
                        params.rpc_args.push((key.clone(), value.clone()))
                    }
                    Err(e) => return Err(e),
                    Ok(filter) => params.filters.push((path, LogicTree::Filter(filter))),
                }
            }
        }
    }
    let mut sorted = pairs.clone();
    sorted.sort();
    params.canonical = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(sorted)
        .finish();
    Ok(params)
}

/// One media range of an Accept header: its lower-cased name and parameters (keys
/// lower-cased, values unquoted; q left out).
struct AcceptItem {
    name: String,
    params: Vec<(String, String)>,
}

impl AcceptItem {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The media ranges of an Accept header (none or empty: `*/*`), most preferred first (q,
/// then header order), without those refused with q=0.
fn accept_items(accept: Option<&str>) -> Vec<AcceptItem> {
    let accept = accept.filter(|a| !a.trim().is_empty()).unwrap_or("*/*");
    let mut items: Vec<(f32, usize, AcceptItem)> = Vec::new();
    for (index, item) in accept.split(',').enumerate() {
        let mut parts = item.split(';').map(str::trim);
        let name = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut q = 1.0;
        let mut params = Vec::new();
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().trim_matches('"').to_string();
            if k == "q" {
                q = v.parse().unwrap_or(1.0);
            } else {
                params.push((k, v));
            }
        }
        if q > 0.0 {
            items.push((q, index, AcceptItem { name, params }));
        }
    }
    items.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    items.into_iter().map(|(_, _, item)| item).collect()
}

/// The plan asked for by a `vnd.pgrst.plan` media range, when plans are enabled and its
/// options are known; `None` for any other range.
fn plan_request(item: &AcceptItem, plan_enabled: bool) -> Option<PlanRequest> {
    let plan_type = matches!(
        item.name.as_str(),
        "application/vnd.pgrst.plan"
            | "application/vnd.pgrst.plan+json"
            | "application/vnd.pgrst.plan+text"
    );
    if !plan_enabled || !plan_type {
        return None;
    }
    let mut options = 0u8;
    for o in item
        .param("options")
        .unwrap_or("")
        .split('|')
        .filter(|o| !o.is_empty())
    {
        options |= 1 << PLAN_OPTIONS.iter().position(|p| *p == o)?;
    }
    Some(PlanRequest {
        text: !item.name.ends_with("+json"),
        options,
    })
}

/// What the builtin handlers make of one media range: its media type, and the plan
/// request when it asks for the plan of that type's statement.
fn builtin(item: &AcceptItem, plan_enabled: bool) -> Option<(MediaType, Option<PlanRequest>)> {
    if let Some(plan) = plan_request(item, plan_enabled) {
        let inner = match item.param("for") {
            Some(f) => builtin(accept_items(Some(f)).first()?, false)?.0,
            None => MediaType::Json,
        };
        return Some((inner, Some(plan)));
    }
    let stripped_nulls = item.param("nulls") == Some("stripped");
    let media = match item.name.as_str() {
        "*/*" | "application/*" | "application/json" => MediaType::Json,
        "application/vnd.pgrst.array+json" | "application/vnd.pgrst.array" => {
            if stripped_nulls {
                MediaType::StrippedArray
            } else {
                MediaType::Json
            }
        }
        "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => {
            if stripped_nulls {
                MediaType::StrippedObject
            } else {
                MediaType::SingleObject
            }
        }
        "text/csv" | "text/*" => MediaType::Csv,
        "application/geo+json" => MediaType::GeoJson,
        _ => return None,
    };
    Some((media, None))
}

/// Accept negotiation: highest q first, then header order; the first type we can produce.
/// `application/vnd.pgrst.plan[+json|+text]`: PostgreSQL's EXPLAIN of the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRequest {
    pub text: bool,
    /// Bit i set = PLAN_OPTIONS[i] requested.
    pub options: u8,
}

pub const PLAN_OPTIONS: [&str; 5] = ["analyze", "verbose", "settings", "buffers", "wal"];

impl PlanRequest {
    fn chosen(&self) -> impl Iterator<Item = &'static str> + '_ {
        PLAN_OPTIONS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.options & (1 << i) != 0)
            .map(|(_, o)| *o)
    }

    /// `EXPLAIN (FORMAT ..., ANALYZE, ...) ` (option names are our constants).
    pub fn explain_prefix(&self) -> String {
        let mut parts = vec![if self.text {
            "FORMAT TEXT"
        } else {
            "FORMAT JSON"
        }
        .to_string()];
        parts.extend(self.chosen().map(|o| o.to_ascii_uppercase()));
        format!("EXPLAIN ({}) ", parts.join(", "))
    }

    /// The plan's Content-Type; `inner` names the media type the plan is for.
    pub fn content_type(&self, inner: &str) -> String {
        let options: Vec<&str> = self.chosen().collect();
        let options = if options.is_empty() {
            String::new()
        } else {
            format!("; options={}", options.join("|"))
        };
        format!(
            "application/vnd.pgrst.plan+{}; for=\"{}\"{options}; charset=utf-8",
            if self.text { "text" } else { "json" },
            inner
        )
    }
}

pub fn negotiate(accept: Option<&str>) -> Result<MediaType, ApiError> {
    negotiate_with_plan(accept, false).map(|(m, _)| m)
}

/// Accept negotiation, with `vnd.pgrst.plan` when db-plan-enabled: then the media type
/// is the one the plan is for.
pub fn negotiate_with_plan(
    accept: Option<&str>,
    plan_enabled: bool,
) -> Result<(MediaType, Option<PlanRequest>), ApiError> {
    accept_items(accept)
        .iter()
        .find_map(|item| builtin(item, plan_enabled))
        .ok_or_else(|| not_acceptable(accept))
}

fn not_acceptable(accept: Option<&str>) -> ApiError {
    let listed: Vec<&str> = accept.unwrap_or("").split(',').map(str::trim).collect();
    ApiError::NotAcceptable(listed.join(", "))
}

/// Accept negotiation for rows that handler aggregates may render (`handlers`: those of
/// the relation, offered only when the select is the default, then the `anyelement`
/// ones). For each acceptable type in order of preference: PostgREST's vendor types stay
/// builtin; then the relation's `*/*` handler, the relation's handler for that type, an
/// `anyelement` handler for it, and the builtin handlers. `Some` aggregate when one wins.
pub fn negotiate_rows(
    accept: Option<&str>,
    plan_enabled: bool,
    handlers: &[&AggHandler],
) -> Result<(MediaType, Option<PlanRequest>, Option<AggHandler>), ApiError> {
    if handlers.is_empty() {
        return negotiate_with_plan(accept, plan_enabled).map(|(m, p)| (m, p, None));
    }
    let for_relation = |media: &str| {
        handlers
            .iter()
            .find(|h| h.relation.is_some() && h.media.media_type.eq_ignore_ascii_case(media))
    };
    for item in accept_items(accept) {
        let name = item.name.as_str();
        if name.starts_with("application/vnd.pgrst.") {
            // The plan of a handler's rendering: `for="<handler type>"` (never one of
            // PostgREST's own types, whatever a handler is named).
            let handler = item
                .param("for")
                .filter(|t| !t.to_ascii_lowercase().starts_with("application/vnd.pgrst."))
                .and_then(|t| {
                    handlers
                        .iter()
                        .find(|h| h.media.media_type.eq_ignore_ascii_case(t))
                });
            if let (Some(plan), Some(h)) = (plan_request(&item, plan_enabled), handler) {
                return Ok((MediaType::Json, Some(plan), Some((*h).clone())));
            }
            if let Some((m, p)) = builtin(&item, plan_enabled) {
                return Ok((m, p, None));
            }
            continue;
        }
        let chosen = for_relation("*/*")
            .or_else(|| for_relation(name))
            .or_else(|| {
                handlers
                    .iter()
                    .find(|h| h.relation.is_none() && h.media.media_type.eq_ignore_ascii_case(name))
            });
        if let Some(h) = chosen {
            return Ok((MediaType::Json, None, Some((*h).clone())));
        }
        if let Some((m, p)) = builtin(&item, plan_enabled) {
            return Ok((m, p, None));
        }
    }
    Err(not_acceptable(accept))
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

/// The media type a function answering custom media types (`handlers`, the names of
/// its return domains) gives for this Accept: an exact match first, `*/*` takes the
/// first, and a `*/*` handler takes anything; a plan range (db-plan-enabled) `for` one
/// of them asks for the plan of that call.
pub fn choose_handler<'h>(
    accept: Option<&str>,
    handlers: &[&'h str],
    plan_enabled: bool,
) -> Option<(&'h str, Option<PlanRequest>)> {
    for item in accept_items(accept) {
        if let Some(plan) = plan_request(&item, plan_enabled) {
            let target = item.param("for").unwrap_or("");
            if let Some(h) = handlers.iter().find(|h| h.eq_ignore_ascii_case(target)) {
                return Some((h, Some(plan)));
            }
            continue;
        }
        let name = item.name;
        if let Some(h) = handlers.iter().find(|h| h.eq_ignore_ascii_case(&name)) {
            return Some((h, None));
        }
        if name == "*/*" {
            return handlers.first().map(|h| (*h, None));
        }
        if let Some(any) = handlers.iter().find(|h| **h == "*/*") {
            return Some((any, None));
        }
    }
    None
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
