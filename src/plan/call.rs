//! Calls of functions: overload choice and arguments.

use super::read::{read_plan_on, ReadPlan};
use super::{Negotiated, PlanConfig};
use crate::error::ApiError;
use crate::request::{ApiRequest, MediaType, Method};
use crate::schema::routines::{Param, Returns, Routine};
use crate::schema::SchemaCache;

/// How a function receives its arguments.
#[derive(Debug)]
pub enum CallArgs<'a> {
    /// Named arguments taken from a JSON object (text), one per listed parameter.
    Named {
        json: String,
        params: Vec<&'a Param>,
    },
    /// The whole body as the single unnamed parameter.
    Single { value: String, param: &'a Param },
    /// Arguments from the query string, each bound as a parameter cast to its type (a
    /// VARIADIC one as an array literal): what a GET sends, cheaper to plan than JSON.
    Direct(Vec<(&'a Param, String)>),
}

#[derive(Debug)]
pub struct CallPlan<'a> {
    pub routine: &'a Routine,
    /// The custom media type the call answers with its raw value.
    pub media: Option<&'a crate::schema::routines::MediaHandler>,
    pub args: CallArgs<'a>,
    /// Reads over the result rows, for functions returning rows.
    pub read: Option<ReadPlan<'a>>,
    pub read_only: bool,
    pub media_type: MediaType,
    pub head: bool,
}

/// A POST body for /rpc.
pub struct CallBody<'b> {
    pub content_type: Option<&'b str>,
    pub bytes: &'b [u8],
}

/// Which single-unnamed-parameter type a Content-Type feeds.
fn unnamed_kind(media: &str) -> Option<(&'static [&'static str], &'static str)> {
    match media {
        "application/json" => Some((&["json", "jsonb"], "json/jsonb")),
        "text/plain" => Some((&["text"], "text")),
        "text/xml" => Some((&["xml"], "xml")),
        "application/octet-stream" => Some((&["bytea"], "bytea")),
        _ => None,
    }
}

/// The argument names of query-string or form pairs, sorted, each once. Their values go
/// to the statement per parameter once the overload is known (`direct_args`,
/// `routine_args`); a JSON object of them built here was never read (about 4,000
/// instructions a GET call, callgrind).
fn arg_keys(pairs: &[(String, String)]) -> Vec<String> {
    let mut keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// What a call's input gives: its argument names (and a JSON body's object), the raw body
/// for a single unnamed parameter, the media type that decides which, and a
/// form's pairs (bound per parameter once the overload is known).
struct CallInput {
    /// A JSON body's object (empty for query-string and form arguments, whose values are
    /// bound per parameter).
    json: String,
    keys: Vec<String>,
    raw: Option<String>,
    media: String,
    form: Option<Vec<(String, String)>>,
    /// Sent as a body (POST), not as the query string.
    posted: bool,
}

impl CallInput {
    fn object(json: String, keys: Vec<String>, media: String) -> CallInput {
        CallInput {
            json,
            keys,
            raw: None,
            media,
            form: None,
            posted: true,
        }
    }

    fn raw(raw: String, media: String) -> CallInput {
        CallInput {
            raw: Some(raw),
            ..CallInput::object("{}".into(), Vec::new(), media)
        }
    }
}

/// Reads a call's input: the query string for GET and HEAD, else the body by its
/// Content-Type.
fn call_input(req: &ApiRequest, body: Option<&CallBody>) -> Result<CallInput, ApiError> {
    let Some(body) = body else {
        let keys = arg_keys(&req.query.rpc_args);
        return Ok(CallInput {
            posted: false,
            ..CallInput::object(String::new(), keys, String::new())
        });
    };
    let media = crate::request::payload::media_type_of(body.content_type).into_owned();
    let text = || {
        std::str::from_utf8(body.bytes)
            .map(str::to_string)
            .map_err(|_| ApiError::InvalidBody("Empty or invalid json".into()))
    };
    match media.as_str() {
        "application/json" => json_input(req, text()?, media),
        "application/x-www-form-urlencoded" => {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(body.bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let keys = arg_keys(&pairs);
            Ok(CallInput {
                form: Some(pairs),
                ..CallInput::object(String::new(), keys, media)
            })
        }
        "text/csv" => {
            let p = crate::request::payload::parse_csv(body.bytes)?;
            let rows: Vec<serde_json::Value> = serde_json::from_str(&p.json).unwrap_or_default();
            let first = rows.into_iter().next().unwrap_or_default();
            Ok(CallInput::object(first.to_string(), p.keys, media))
        }
        "text/plain" | "text/xml" => Ok(CallInput::raw(text()?, media)),
        "application/octet-stream" => {
            let hex: String = body.bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok(CallInput::raw(format!("\\x{hex}"), media))
        }
        other => Err(ApiError::InvalidBody(format!(
            "Content-Type not acceptable: {}",
            body.content_type.unwrap_or(other)
        ))),
    }
}

/// A JSON body: its first object's keys (`columns=` names them instead); the text itself
/// for a single json parameter.
fn json_input(req: &ApiRequest, raw: String, media: String) -> Result<CallInput, ApiError> {
    let trimmed = if raw.trim().is_empty() {
        "{}"
    } else {
        raw.as_str()
    };
    let (json, keys) = match &req.query.columns {
        Some(cols) => (trimmed.to_string(), cols.clone()),
        None => crate::request::payload::first_object(trimmed)?,
    };
    Ok(CallInput {
        raw: Some(raw),
        ..CallInput::object(json, keys, media)
    })
}

/// Key/value arguments (a query string or a form) per parameter given: repeated keys make
/// the values of a VARIADIC parameter; for other parameters the last value wins.
fn given_args<'r, 'p>(
    routine: &'r Routine,
    pairs: &'p [(String, String)],
) -> Vec<(&'r Param, Vec<&'p str>)> {
    routine
        .params
        .iter()
        .filter_map(|p| {
            let mut given = pairs
                .iter()
                .filter(|(k, _)| *k == p.name)
                .map(|(_, v)| v.as_str());
            let values: Vec<&str> = if p.variadic {
                given.collect()
            } else {
                given.next_back().into_iter().collect()
            };
            (!values.is_empty()).then_some((p, values))
        })
        .collect()
}

/// A form's arguments as the JSON object a POST call reads (strings, arrays of strings
/// for a VARIADIC parameter), as PostgREST passes them.
fn routine_args(routine: &Routine, pairs: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = given_args(routine, pairs)
        .into_iter()
        .map(|(p, values)| {
            let value = match values.as_slice() {
                [one] if !p.variadic => serde_json::Value::from(*one),
                _ => serde_json::Value::from(values),
            };
            (p.name.clone(), value)
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Query-string arguments bound directly, each a parameter cast to its type; a VARIADIC
/// parameter's values as an array literal, each element quoted.
fn direct_args<'a>(routine: &'a Routine, pairs: &[(String, String)]) -> CallArgs<'a> {
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let values = given_args(routine, pairs)
        .into_iter()
        .map(|(p, values)| {
            let value = if p.variadic {
                let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
                format!("{{{}}}", items.join(","))
            } else {
                values.concat()
            };
            (p, value)
        })
        .collect();
    CallArgs::Direct(values)
}

fn accepts_keys(r: &Routine, keys: &[String], raw_media: bool) -> bool {
    if r.params.is_empty() {
        return keys.is_empty() && !raw_media;
    }
    let required: Vec<&str> = r
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    let all: Vec<&str> = r.params.iter().map(|p| p.name.as_str()).collect();
    required.iter().all(|p| keys.iter().any(|k| k == p))
        && keys.iter().all(|k| all.contains(&k.as_str()))
}

fn describe_routine(r: &Routine) -> String {
    let params: Vec<String> = r
        .params
        .iter()
        .map(|p| format!("{} => {}", p.name, p.type_name))
        .collect();
    format!("{}.{}({})", r.schema, r.name, params.join(", "))
}

fn no_function(
    cache: &SchemaCache,
    schema: &str,
    name: &str,
    keys: &[String],
    unnamed: Option<&str>,
) -> ApiError {
    // Overloads taking named parameters: the one whose sorted parameter list is closest
    // to the keys given. None (only unnamed ones, or no function of that name): the
    // closest other function name.
    let named: Vec<&Routine> = cache
        .routines
        .get(&(schema.to_string(), name.to_string()))
        .map(|o| {
            o.iter()
                .filter(|r| r.params.iter().all(|p| !p.name.is_empty()))
                .collect()
        })
        .unwrap_or_default();
    let param_list = |names: Vec<&str>| {
        let mut names = names;
        names.sort_unstable();
        format!("({})", names.join(", "))
    };
    let hint = if named.is_empty() {
        let names = cache
            .routines
            .keys()
            .filter(|(s, n)| s == schema && n != name)
            .map(|(_, n)| n.as_str());
        // PostgREST's minimum score for a function name hint.
        crate::hints::closest(names, name, 0.75)
            .map(|n| format!("Perhaps you meant to call the function {schema}.{n}"))
    } else {
        let given = param_list(keys.iter().map(String::as_str).collect());
        let lists: Vec<String> = named
            .iter()
            .map(|r| param_list(r.params.iter().map(|p| p.name.as_str()).collect()))
            .collect();
        // Lists differ in punctuation-heavy ways, hence the lower bar than for names.
        crate::hints::closest(lists.iter().map(String::as_str), &given, 0.35)
            .map(|l| format!("Perhaps you meant to call the function {schema}.{name}{l}"))
    };
    let mut keys = keys.to_vec();
    keys.sort();
    ApiError::NoFunction {
        schema: schema.to_string(),
        name: name.to_string(),
        only_unnamed: keys.is_empty() && unnamed.is_some_and(|u| u != "json/jsonb"),
        keys,
        unnamed: unnamed.map(str::to_string),
        hint,
    }
}

/// Plans a call of `schema.name`; `body` is `None` for GET/HEAD.
pub fn call_plan<'a>(
    req: &ApiRequest,
    neg: &Negotiated,
    cache: &'a SchemaCache,
    schema: &str,
    name: &str,
    body: Option<&CallBody>,
    config: &PlanConfig,
) -> Result<CallPlan<'a>, ApiError> {
    let input = call_input(req, body)?;
    call_plan_with(req, neg, cache, schema, name, input, config)
}

/// The plan of a call with its input read.
fn call_plan_with<'a>(
    req: &ApiRequest,
    neg: &Negotiated,
    cache: &'a SchemaCache,
    schema: &str,
    name: &str,
    input: CallInput,
    config: &PlanConfig,
) -> Result<CallPlan<'a>, ApiError> {
    let is_post = input.posted;
    let (routine, single) = choose_overload(cache, neg, schema, name, &input, is_post)?;
    let args = if is_post {
        post_args(routine, single, input)
    } else {
        direct_args(routine, &req.query.rpc_args)
    };
    call_plan_for(req, neg, cache, routine, args, is_post, config)
}

/// A POST call's JSON body, read once: its text, which the call binds whole as one
/// parameter, and its object's keys, which choose the overload and the arguments.
pub struct JsonArgs {
    pub text: String,
    pub keys: Vec<String>,
}

/// A call's JSON body as [`call_plan_json`] takes it, or `None` when the body is not
/// bound as sent (another Content-Type, `columns=`, an empty body or an array, whose
/// first object is what is bound). Errors are the ones [`call_plan`] gives the same body.
pub fn json_args(req: &ApiRequest, body: &CallBody) -> Result<Option<JsonArgs>, ApiError> {
    let media = crate::request::payload::media_type_of(body.content_type);
    if media != "application/json" || req.query.columns.is_some() {
        return Ok(None);
    }
    let Ok(text) = std::str::from_utf8(body.bytes) else {
        return Ok(None);
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let (object, keys) = crate::request::payload::first_object(text)?;
    Ok((object == text).then_some(JsonArgs { text: object, keys }))
}

/// The plan of a POST call with a JSON body read by [`json_args`] (or a probe's stand-in
/// for one): what [`call_plan`] plans for that body.
pub fn call_plan_json<'a>(
    req: &ApiRequest,
    neg: &Negotiated,
    cache: &'a SchemaCache,
    schema: &str,
    name: &str,
    args: JsonArgs,
    config: &PlanConfig,
) -> Result<CallPlan<'a>, ApiError> {
    let input = CallInput {
        raw: Some(args.text.clone()),
        ..CallInput::object(args.text, args.keys, "application/json".into())
    };
    call_plan_with(req, neg, cache, schema, name, input, config)
}

/// The overload the input fits: by the keys given, else the one taking the whole body
/// as its single unnamed parameter (`true`). A custom media type chosen by Accept
/// narrows the overloads to the functions returning it.
fn choose_overload<'a>(
    cache: &'a SchemaCache,
    neg: &Negotiated,
    schema: &str,
    name: &str,
    input: &CallInput,
    is_post: bool,
) -> Result<(&'a Routine, bool), ApiError> {
    let unnamed = if is_post {
        unnamed_kind(&input.media)
    } else {
        None
    };
    let raw_media = is_post && input.media != "application/json" && unnamed.is_some();
    let overloads: &[Routine] = cache
        .routines
        .get(&(schema.to_string(), name.to_string()))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let answers = |r: &&Routine| match &neg.handler {
        Some(h) => r.media.as_ref().is_some_and(|m| &m.media_type == h),
        None => true,
    };
    let named: Vec<&Routine> = overloads
        .iter()
        .filter(answers)
        .filter(|r| accepts_keys(r, &input.keys, raw_media))
        .collect();
    let fallback: Vec<&Routine> = overloads
        .iter()
        .filter(answers)
        .filter(|r| match (r.params.as_slice(), unnamed) {
            ([p], Some((types, _))) => p.name.is_empty() && types.contains(&p.base_type.as_str()),
            _ => false,
        })
        .collect();
    let ambiguous = |many: &[&Routine]| {
        ApiError::AmbiguousFunction(many.iter().map(|r| describe_routine(r)).collect())
    };
    match (named.as_slice(), fallback.as_slice()) {
        ([one], _) => Ok((*one, false)),
        ([], [one]) => Ok((*one, true)),
        ([], []) => Err(no_function(
            cache,
            schema,
            name,
            &input.keys,
            unnamed.map(|(_, t)| t),
        )),
        (many, _) if many.len() > 1 => Err(ambiguous(many)),
        (_, many) => Err(ambiguous(many)),
    }
}

/// A POST call's arguments: the whole body for a single unnamed parameter; a form's
/// values per parameter (repeated keys make the array of a VARIADIC one, otherwise the
/// last wins); a JSON object's keys that name parameters.
fn post_args(routine: &Routine, single: bool, input: CallInput) -> CallArgs<'_> {
    if single {
        return CallArgs::Single {
            value: input.raw.unwrap_or_default(),
            param: &routine.params[0],
        };
    }
    let json = match &input.form {
        Some(pairs) => routine_args(routine, pairs),
        None => input.json,
    };
    CallArgs::Named {
        json,
        params: routine
            .params
            .iter()
            .filter(|p| input.keys.contains(&p.name))
            .collect(),
    }
}

/// The plan of a call of the chosen overload with its arguments.
fn call_plan_for<'a>(
    req: &ApiRequest,
    neg: &Negotiated,
    cache: &'a SchemaCache,
    routine: &'a Routine,
    args: CallArgs<'a>,
    is_post: bool,
    config: &PlanConfig,
) -> Result<CallPlan<'a>, ApiError> {
    let result_table = match &routine.returns {
        Returns::Table { schema, name } => cache.table(schema, name),
        Returns::Composite => routine.result_table.as_ref(),
        _ => None,
    };
    let read = match result_table {
        Some(table) => {
            let mut plan = read_plan_on(req, neg, cache, table, config)?;
            plan.root.alias = Some(routine.name.clone());
            Some(plan)
        }
        None => None,
    };
    let media = routine.media.as_ref().filter(|_| neg.handler.is_some());
    Ok(CallPlan {
        media,
        routine,
        args,
        read,
        read_only: !is_post || !routine.volatile,
        media_type: neg.media_type,
        head: req.method == Method::Head,
    })
}
