//! The Accept header: its media ranges in order of preference, the builtin media types
//! and `vnd.pgrst.plan` requests. Which of them a resource can answer is the planner's
//! decision (plan::negotiate).

use super::MediaType;
use crate::error::ApiError;

/// One media range of an Accept header: its lower-cased name and parameters (keys
/// lower-cased, values unquoted; q left out).
pub struct AcceptItem {
    pub name: String,
    pub params: Vec<(String, String)>,
}

impl AcceptItem {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The media ranges of an Accept header (none or empty: `*/*`), most preferred first (q,
/// then header order), without those refused with q=0.
pub fn accept_items(accept: Option<&str>) -> Vec<AcceptItem> {
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
pub fn plan_request(item: &AcceptItem, plan_enabled: bool) -> Option<PlanRequest> {
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
pub fn builtin(item: &AcceptItem, plan_enabled: bool) -> Option<(MediaType, Option<PlanRequest>)> {
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
    if plain_json_accepted(accept) {
        return Ok((MediaType::Json, None));
    }
    accept_items(accept)
        .iter()
        .find_map(|item| builtin(item, plan_enabled))
        .ok_or_else(|| not_acceptable(accept))
}

/// The Accept headers most requests carry (none, `*/*`, `application/json`), which
/// negotiate to JSON without splitting and sorting the header (about 1,000 instructions
/// of a by-pk read's 94,000, by callgrind).
fn plain_json_accepted(accept: Option<&str>) -> bool {
    match accept.map(str::trim) {
        None | Some("") => true,
        Some(a) => a == "*/*" || a.eq_ignore_ascii_case("application/json"),
    }
}

pub fn not_acceptable(accept: Option<&str>) -> ApiError {
    let listed: Vec<&str> = accept.unwrap_or("").split(',').map(str::trim).collect();
    ApiError::NotAcceptable(listed.join(", "))
}
