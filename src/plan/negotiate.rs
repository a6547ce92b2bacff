//! Media type negotiation against what the schema offers: the builtin types, handler
//! aggregates of a relation's rows, functions returning custom media types, and
//! `vnd.pgrst.plan` when db-plan-enabled.

use crate::error::ApiError;
use crate::request::accept::{accept_items, builtin, not_acceptable, plan_request};
use crate::request::prefer::ReturnPref;
use crate::request::query::SelectItem;
use crate::request::{negotiate_with_plan, ApiRequest, MediaType, Method, PlanRequest};
use crate::schema::routines::{AggHandler, Returns};
use crate::schema::SchemaCache;

/// What a response is rendered as.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub media_type: MediaType,
    /// Accept asked for the statement's plan rather than its result.
    pub explain: Option<PlanRequest>,
    /// The custom media type (a function's return domain) chosen for a call.
    pub handler: Option<String>,
    /// The handler aggregate chosen to render the rows (a custom media type).
    pub aggregate: Option<AggHandler>,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated {
            media_type: MediaType::Json,
            explain: None,
            handler: None,
            aggregate: None,
        }
    }
}

impl Negotiated {
    /// The media type the response (or the plan's `for`) names.
    pub fn media_name(&self) -> &str {
        match (&self.aggregate, &self.handler) {
            (Some(a), _) => a.media.media_type.as_str(),
            (None, Some(h)) => h.as_str(),
            (None, None) => self.media_type.name(),
        }
    }
}

/// Media types `GET /` answers, in order of preference for `*/*`.
const ROOT_MEDIA: [&str; 4] = [
    "application/openapi+json",
    "application/json",
    // OpenAPI 3.1 (the registered OpenAPI media type); the others get Swagger 2.0.
    "application/vnd.oai.openapi+json",
    // A browser: the documentation page, which renders the 3.1 document.
    "text/html",
];

/// The media type of `GET /`.
pub fn for_root(accept: Option<&str>) -> Result<&'static str, ApiError> {
    choose_handler(accept, &ROOT_MEDIA, false)
        .map(|(media, _)| media)
        .ok_or_else(|| ApiError::NotAcceptable(accept.unwrap_or_default().to_string()))
}

/// Rows read, or written and returned, may be rendered by handler aggregates (a write
/// returning nothing accepts their types too, and runs none).
pub fn for_relation(
    api: &ApiRequest,
    cache: &SchemaCache,
    schema: &str,
    relation: &str,
    plan_enabled: bool,
) -> Result<Negotiated, ApiError> {
    let handlers = row_handlers(cache, schema, relation, &api.query.select);
    let (media_type, explain, mut aggregate) =
        negotiate_rows(api.accept.as_deref(), plan_enabled, &handlers)?;
    let returns_rows = api.prefs.return_ == Some(ReturnPref::Representation);
    if !matches!(api.method, Method::Get | Method::Head) && !returns_rows {
        aggregate = None;
    }
    Ok(Negotiated {
        media_type,
        explain,
        handler: None,
        aggregate,
    })
}

/// A call answers with a custom media type when an overload returns one that Accept
/// takes; otherwise with rows, which the result table's handler aggregates may render.
pub fn for_call(
    api: &ApiRequest,
    cache: &SchemaCache,
    schema: &str,
    function: &str,
    plan_enabled: bool,
) -> Result<Negotiated, ApiError> {
    let accept = api.accept.as_deref();
    let overloads = cache
        .routines
        .get(&(schema.to_string(), function.to_string()))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let handlers: Vec<&str> = overloads
        .iter()
        .filter_map(|r| r.media.as_ref().map(|m| m.media_type.as_str()))
        .collect();
    let mut out = Negotiated::default();
    if let Some((h, plan)) = choose_handler(accept, &handlers, plan_enabled) {
        (out.handler, out.explain) = (Some(h.to_string()), plan);
    }
    let only_handlers = !handlers.is_empty() && handlers.len() == overloads.len();
    if out.handler.is_some() && only_handlers {
        return Ok(out);
    }
    let row_type = overloads.iter().find_map(|r| match &r.returns {
        Returns::Table { schema, name } => Some((schema, name)),
        _ => None,
    });
    let aggregates = row_type
        .map(|(s, n)| row_handlers(cache, s, n, &api.query.select))
        .unwrap_or_default();
    match negotiate_rows(accept, plan_enabled, &aggregates) {
        Ok((media_type, explain, aggregate)) => {
            (out.media_type, out.explain, out.aggregate) = (media_type, explain, aggregate);
            if !only_handlers {
                out.handler = None;
            }
            Ok(out)
        }
        Err(_) if out.handler.is_some() => Ok(out),
        Err(e) => Err(e),
    }
}

/// The handler aggregates that may render rows of `schema.name`: its own, offered only
/// while the select is the default (their argument is the table's row type), and the
/// `anyelement` ones.
fn row_handlers<'c>(
    cache: &'c SchemaCache,
    schema: &str,
    name: &str,
    select: &[SelectItem],
) -> Vec<&'c AggHandler> {
    let default_select = select.is_empty() || matches!(select, [SelectItem::Star]);
    cache
        .aggregates
        .iter()
        .filter(|h| match &h.relation {
            Some((s, n)) => default_select && s == schema && n == name,
            None => true,
        })
        .collect()
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
