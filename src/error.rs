//! One error type for everything a client can cause, each variant carrying PostgREST's
//! code, HTTP status and JSON body shape.

use serde_json::{json, Value};

/// One of the relationships an ambiguous embed could mean.
#[derive(Debug, Clone, PartialEq)]
pub struct AmbiguousCandidate {
    pub cardinality: String,
    pub relationship: String,
    pub embedding: String,
    /// The `target!hint` that selects this one.
    pub hint: String,
}

const FORBIDDEN_ROLE: &str = "JWT role claim names a role requests cannot run as";

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// PGRST100: the query string did not parse. `message` names the part, `details` the
    /// expectation.
    Parse { message: String, details: String },
    /// PGRST100: a query parameter (name or value) holds a NUL character.
    NulCharacter(String),
    /// PGRST102 with 413: the body is larger than server-max-body-size (bytes).
    BodyTooLarge(u64),
    /// PGRST101: PUT/PATCH/DELETE on /rpc.
    RpcMethod(String),
    /// PGRST102: a body that cannot be used.
    InvalidBody(String),
    /// PGRST105: PUT filters are not exactly the primary key with `eq`.
    InvalidPutFilters,
    /// PGRST103: unsatisfiable range.
    InvalidRange { details: String, total: Option<i64> },
    /// PGRST106: schema not in db-schemas.
    InvalidSchema {
        schema: String,
        allowed: Vec<String>,
    },
    /// PGRST107: no acceptable media type.
    NotAcceptable(String),
    /// PGRST108: a dotted parameter targets something not embedded in `select`.
    NotEmbedded(String),
    /// PGRST108: an aliased embed addressed by its target name with legacy names off.
    AliasedTarget { target: String, alias: String },
    /// PGRST114: limit/offset with PUT.
    PutLimitNotAllowed,
    /// PGRST115: PUT payload primary key differs from the URL's.
    PutMismatch,
    /// PGRST111: response.headers set to something that is not a list of one-key objects.
    InvalidResponseHeaders,
    /// PGRST112: response.status set to something that is not a status code.
    InvalidResponseStatus,
    /// PGRST121: `RAISE SQLSTATE 'PGRST'` whose MESSAGE or DETAIL is not the JSON expected.
    InvalidRaise { details: String, hint: String },
    /// `RAISE SQLSTATE 'PGRST'`: the response the function asked for.
    Custom {
        status: u16,
        status_text: Option<String>,
        headers: Vec<(String, String)>,
        body: Value,
    },
    /// PGRST116: singular response requested but the result has `n` rows.
    Singularity(i64),
    /// PGRST117
    UnsupportedMethod(String),
    /// PGRST123: aggregates while db-aggregates-enabled is false.
    AggregatesNotAllowed,
    /// PGRST122: unknown preferences with handling=strict.
    InvalidPreferences(Vec<String>),
    /// PGRST124: more rows affected than max-affected allows.
    MaxAffected(i64),
    /// PGRST128: max-affected (strict) on a function that does not return a set.
    MaxAffectedNeedsSet,
    /// PGRST125
    InvalidPath,
    /// PGRST127: grammar this build does not implement yet.
    NotImplemented(String),
    /// PGRST120: an embedded resource filtered with an operator other than is.null.
    UnacceptableFilter(String),
    /// PGRST118: `order=rel(col)` on a to-many embed.
    RelatedOrderNotToOne { parent: String, relation: String },
    /// PGRST200: no relationship for an embed.
    NoRelationship {
        parent: String,
        child: String,
        schema: String,
        hint: Option<String>,
        suggestion: Option<String>,
    },
    /// PGRST201: several relationships match an embed.
    AmbiguousEmbed {
        parent: String,
        child: String,
        candidates: Vec<AmbiguousCandidate>,
    },
    /// PGRST202: no function of that name (RPC is not implemented yet).
    NoFunction {
        schema: String,
        name: String,
        /// The argument names looked for, sorted.
        keys: Vec<String>,
        /// `json/jsonb`, `text`, ... when a single unnamed parameter was also looked for.
        unnamed: Option<String>,
        /// A raw body (text, xml, bytes) looks only for that unnamed parameter.
        only_unnamed: bool,
        hint: Option<String>,
    },
    /// PGRST203: several overloads match.
    AmbiguousFunction(Vec<String>),
    /// PGRST204: a column named in the body or `columns` does not exist.
    ColumnNotFound { table: String, column: String },
    /// PGRST205
    TableNotFound {
        schema: String,
        name: String,
        hint: Option<String>,
    },
    /// An error raised by PostgreSQL, passed through.
    Pg {
        sqlstate: String,
        message: String,
        details: Option<String>,
        hint: Option<String>,
        /// Whether the request ran as the anonymous role (42501 -> 401 instead of 403).
        anonymous: bool,
    },
    /// PGRST000: cannot connect.
    Connection(String),
    /// PGRST001: the connection broke while in use.
    Client(String),
    /// PGRST002: schema cache not loaded.
    SchemaCacheNotReady,
    /// PGRST003
    PoolTimeout,
    /// PGRST302: no token and no anonymous role.
    NoAnonRole,
    /// GET / with openapi-mode = disabled.
    OpenApiDisabled,
    /// PGRST300: a token was sent but no jwt-secret is configured.
    NoJwtSecret,
    /// PGRST301: the token cannot be decoded or verified.
    InvalidJwt {
        message: String,
        details: Option<String>,
    },
    /// PGRST303: the token's claims are not acceptable.
    InvalidJwtClaims(String),
    /// PGRST303: the role claim names no role a request may run as (`none`, empty, the
    /// authenticator itself).
    ForbiddenRole(String),
    /// PGRSTX00
    Internal(String),
}

impl ApiError {
    pub fn parse(what: &str, input: &str, column: usize, details: impl Into<String>) -> Self {
        ApiError::Parse {
            message: format!("\"failed to parse {what} ({input})\" (line 1, column {column})"),
            details: details.into(),
        }
    }

    pub fn status(&self) -> u16 {
        use ApiError::*;
        match self {
            Parse { .. }
            | NulCharacter(_)
            | NotEmbedded(_)
            | NotImplemented(_)
            | NoRelationship { .. }
            | RelatedOrderNotToOne { .. }
            | UnacceptableFilter(_)
            | AliasedTarget { .. }
            | AggregatesNotAllowed
            | InvalidBody(_)
            | PutLimitNotAllowed
            | PutMismatch
            | InvalidPreferences(_)
            | MaxAffected(_)
            | MaxAffectedNeedsSet
            | ColumnNotFound { .. } => 400,
            InvalidPutFilters => 405,
            AmbiguousEmbed { .. } => 300,
            RpcMethod(_) | UnsupportedMethod(_) => 405,
            InvalidRange { .. } => 416,
            InvalidSchema { .. } | NotAcceptable(_) | Singularity(_) => 406,
            InvalidPath | NoFunction { .. } | TableNotFound { .. } => 404,
            AmbiguousFunction(_) => 300,
            Pg {
                sqlstate,
                message,
                anonymous,
                ..
            } => pg_status(sqlstate, message, *anonymous),
            Connection(_) | Client(_) | SchemaCacheNotReady => 503,
            InvalidResponseHeaders | InvalidResponseStatus | InvalidRaise { .. } => 500,
            Custom { status, .. } => *status,
            PoolTimeout => 504,
            NoAnonRole | InvalidJwt { .. } | InvalidJwtClaims(_) | ForbiddenRole(_) => 401,
            BodyTooLarge(_) => 413,
            OpenApiDisabled => 404,
            NoJwtSecret => 500,
            Internal(_) => 500,
        }
    }

    pub fn code(&self) -> String {
        use ApiError::*;
        let code = match self {
            Parse { .. } | NulCharacter(_) => "PGRST100",
            RpcMethod(_) => "PGRST101",
            InvalidBody(_) | BodyTooLarge(_) => "PGRST102",
            InvalidRange { .. } => "PGRST103",
            InvalidPutFilters => "PGRST105",
            PutLimitNotAllowed => "PGRST114",
            PutMismatch => "PGRST115",
            InvalidPreferences(_) => "PGRST122",
            MaxAffected(_) => "PGRST124",
            MaxAffectedNeedsSet => "PGRST128",
            ColumnNotFound { .. } => "PGRST204",
            InvalidSchema { .. } => "PGRST106",
            NotAcceptable(_) => "PGRST107",
            NotEmbedded(_) | AliasedTarget { .. } => "PGRST108",
            Singularity(_) => "PGRST116",
            UnsupportedMethod(_) => "PGRST117",
            AggregatesNotAllowed => "PGRST123",
            InvalidPath => "PGRST125",
            NotImplemented(_) => "PGRST127",
            RelatedOrderNotToOne { .. } => "PGRST118",
            UnacceptableFilter(_) => "PGRST120",
            NoRelationship { .. } => "PGRST200",
            AmbiguousEmbed { .. } => "PGRST201",
            NoFunction { .. } => "PGRST202",
            AmbiguousFunction(_) => "PGRST203",
            TableNotFound { .. } => "PGRST205",
            Pg { sqlstate, .. } => return sqlstate.clone(),
            Custom { body, .. } => return body["code"].as_str().unwrap_or("PGRST").to_string(),
            InvalidResponseHeaders => "PGRST111",
            InvalidResponseStatus => "PGRST112",
            InvalidRaise { .. } => "PGRST121",
            Connection(_) => "PGRST000",
            Client(_) => "PGRST001",
            SchemaCacheNotReady => "PGRST002",
            PoolTimeout => "PGRST003",
            NoAnonRole => "PGRST302",
            OpenApiDisabled => "PGRST126",
            NoJwtSecret => "PGRST300",
            InvalidJwt { .. } => "PGRST301",
            InvalidJwtClaims(_) | ForbiddenRole(_) => "PGRST303",
            Internal(_) => "PGRSTX00",
        };
        code.to_string()
    }

    /// (message, details, hint)
    fn parts(&self) -> (String, Option<String>, Option<String>) {
        use ApiError::*;
        match self {
            Parse { message, details } => (message.clone(), Some(details.clone()), None),
            NulCharacter(what) => (
                format!("A {what} contains a NUL character"),
                Some("PostgreSQL names and text values cannot contain NUL (\\u0000)".into()),
                None,
            ),
            UnacceptableFilter(target) => (
                format!("Bad operator on the '{target}' embedded resource"),
                Some("Only is null or not is null filters are allowed on embedded resources".into()),
                None,
            ),
            BodyTooLarge(limit) => (
                "Request body too large".into(),
                Some(format!(
                    "The body is larger than server-max-body-size ({limit} bytes)"
                )),
                None,
            ),
            RpcMethod(m) => (format!("Cannot use the {m} method on RPC"), None, None),
            InvalidRange { details, .. } => (
                "Requested range not satisfiable".into(),
                Some(details.clone()),
                None,
            ),
            InvalidSchema { schema, allowed } => (
                format!("Invalid schema: {schema}"),
                None,
                Some(format!(
                    "Only the following schemas are exposed: {}",
                    allowed.join(", ")
                )),
            ),
            NotAcceptable(list) => (
                format!("None of these media types are available: {list}"),
                None,
                None,
            ),
            NotEmbedded(name) => (
                format!("'{name}' is not an embedded resource in this request"),
                None,
                Some(format!(
                    "Verify that '{name}' is included in the 'select' query parameter."
                )),
            ),
            AliasedTarget { target, alias } => (
                format!("'{target}' is not an embedded resource in this request"),
                Some("Target names are not allowed in filters if they have an alias".into()),
                Some(format!("Change '{target}' to '{alias}' in filters, orders or limits.")),
            ),
            Singularity(n) => (
                "Cannot coerce the result to a single JSON object".into(),
                Some(format!("The result contains {n} rows")),
                None,
            ),
            UnsupportedMethod(m) => (format!("Unsupported HTTP method: {m}"), None, None),
            InvalidPath => ("Invalid path specified in request URL".into(), None, None),
            InvalidBody(m) => (m.clone(), None, None),
            InvalidPutFilters => (
                "Filters must include all and only primary key columns with 'eq' operators".into(),
                None,
                None,
            ),
            PutLimitNotAllowed => (
                "limit/offset querystring parameters are not allowed for PUT".into(),
                None,
                None,
            ),
            PutMismatch => (
                "Payload values do not match URL in primary key column(s)".into(),
                None,
                None,
            ),
            InvalidPreferences(list) => (
                "Invalid preferences given with handling=strict".into(),
                Some(format!("Invalid preferences: {}", list.join(", "))),
                None,
            ),
            MaxAffected(n) => (
                "Query result exceeds max-affected preference constraint".into(),
                Some(format!("The query affects {n} rows")),
                None,
            ),
            MaxAffectedNeedsSet => (
                "Function must return SETOF or TABLE when max-affected preference is used with handling=strict".into(),
                None,
                None,
            ),
            ColumnNotFound { table, column } => (
                format!("Could not find the '{column}' column of '{table}' in the schema cache"),
                None,
                None,
            ),
            AggregatesNotAllowed => (
                "Use of aggregate functions is not allowed".into(),
                None,
                None,
            ),
            NotImplemented(what) => (
                "Feature not implemented".into(),
                Some(what.clone()),
                None,
            ),
            NoRelationship {
                parent,
                child,
                schema,
                hint,
                suggestion,
            } => {
                let using = hint
                    .as_ref()
                    .map(|h| format!(" using the hint '{h}'"))
                    .unwrap_or_default();
                (
                    format!("Could not find a relationship between '{parent}' and '{child}' in the schema cache"),
                    Some(format!("Searched for a foreign key relationship between '{parent}' and '{child}'{using} in the schema '{schema}', but no matches were found.")),
                    suggestion
                        .as_ref()
                        .map(|s| format!("Perhaps you meant '{s}' instead of '{child}'.")),
                )
            }
            RelatedOrderNotToOne { parent, relation } => (
                format!("A related order on '{relation}' is not possible"),
                Some(format!("'{parent}' and '{relation}' do not form a many-to-one or one-to-one relationship")),
                None,
            ),
            AmbiguousEmbed {
                parent,
                child,
                candidates,
            } => {
                let hints: Vec<String> =
                    candidates.iter().map(|c| format!("'{}'", c.hint)).collect();
                (
                    format!("Could not embed because more than one relationship was found for '{parent}' and '{child}'"),
                    None,
                    Some(format!("Try changing '{child}' to one of the following: {}. Find the desired relationship in the 'details' key.", hints.join(", "))),
                )
            }
            NoFunction {
                schema,
                name,
                unnamed: Some(kind),
                only_unnamed: true,
                ..
            } => (
                format!("Could not find the function {schema}.{name} in the schema cache"),
                Some(format!("Searched for the function {schema}.{name} with a single unnamed {kind} parameter, but no matches were found in the schema cache.")),
                None,
            ),
            NoFunction {
                schema,
                name,
                keys,
                unnamed,
                hint,
                ..
            } => {
                let signature = if keys.is_empty() {
                    " without parameters".to_string()
                } else {
                    format!("({})", keys.join(", "))
                };
                let searched = match keys.len() {
                    0 => "without parameters".to_string(),
                    1 => format!("with parameter {}", keys[0]),
                    _ => format!("with parameters {}", keys.join(", ")),
                };
                let unnamed = unnamed
                    .as_ref()
                    .map(|t| format!(" or with a single unnamed {t} parameter"))
                    .unwrap_or_default();
                (
                    format!("Could not find the function {schema}.{name}{signature} in the schema cache"),
                    Some(format!("Searched for the function {schema}.{name} {searched}{unnamed}, but no matches were found in the schema cache.")),
                    hint.clone(),
                )
            }
            AmbiguousFunction(candidates) => (
                format!(
                    "Could not choose the best candidate function between: {}",
                    candidates.join(", ")
                ),
                None,
                Some("Try renaming the parameters or the function itself in the database so function overloading can be resolved".into()),
            ),
            TableNotFound { schema, name, hint } => (
                format!("Could not find the table '{schema}.{name}' in the schema cache"),
                None,
                hint.as_ref()
                    .map(|h| format!("Perhaps you meant the table '{schema}.{h}'")),
            ),
            Pg {
                message,
                details,
                hint,
                ..
            } => (message.clone(), details.clone(), hint.clone()),
            Connection(d) => ("Database connection error.".into(), Some(d.clone()), None),
            InvalidResponseHeaders => (
                "response.headers guc must be a JSON array composed of objects with a single key and a string value".into(),
                None,
                None,
            ),
            InvalidResponseStatus => (
                "response.status guc must be a valid status code".into(),
                None,
                None,
            ),
            InvalidRaise { details, hint } => (
                "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error".into(),
                Some(details.clone()),
                Some(hint.clone()),
            ),
            Custom { body, .. } => (
                body["message"].as_str().unwrap_or_default().to_string(),
                None,
                None,
            ),
            Client(d) => (
                "Database client error. Retrying the connection.".into(),
                Some(d.clone()),
                None,
            ),
            SchemaCacheNotReady => (
                "Could not query the database for the schema cache. Retrying.".into(),
                None,
                None,
            ),
            PoolTimeout => (
                "Timed out acquiring connection from connection pool.".into(),
                None,
                None,
            ),
            NoAnonRole => ("Anonymous access is disabled".into(), None, None),
            OpenApiDisabled => ("Root endpoint metadata is disabled".into(), None, None),
            NoJwtSecret => ("Server lacks JWT secret".into(), None, None),
            InvalidJwt { message, details } => (message.clone(), details.clone(), None),
            InvalidJwtClaims(message) => (message.clone(), None, None),
            ForbiddenRole(role) => (
                FORBIDDEN_ROLE.into(),
                Some(format!("The role claim is {role:?}")),
                Some("A token must name a role other than none and the authenticator".into()),
            ),
            Internal(d) => ("Internal server error".into(), Some(d.clone()), None),
        }
    }

    /// `RAISE SQLSTATE 'PGRST' USING MESSAGE = '{json}', DETAIL = '{json}'`: the response
    /// a function asks for, or PGRST121 when its JSON is not what PostgREST expects.
    pub fn custom_raise(message: &str, detail: Option<&str>) -> ApiError {
        const MESSAGE_HINT: &str = "MESSAGE must be a JSON object with obligatory keys: 'code', 'message' and optional keys: 'details', 'hint'.";
        const DETAIL_HINT: &str = "DETAIL must be a JSON object with obligatory keys: 'status', 'headers' and optional key: 'status_text'.";
        let invalid = |details: String, hint: &str| ApiError::InvalidRaise {
            details,
            hint: hint.to_string(),
        };
        let body: Value = match serde_json::from_str::<Value>(message) {
            Ok(v) if v.get("code").is_some() && v.get("message").is_some() => json!({
                "code": v["code"],
                "message": v["message"],
                "details": v.get("details").cloned().unwrap_or(Value::Null),
                "hint": v.get("hint").cloned().unwrap_or(Value::Null),
            }),
            _ => {
                return invalid(
                    format!("Invalid JSON value for MESSAGE: '{message}'"),
                    MESSAGE_HINT,
                )
            }
        };
        let Some(detail) = detail else {
            return invalid(
                "DETAIL is missing in the RAISE statement".into(),
                DETAIL_HINT,
            );
        };
        type Detail = (u16, Vec<(String, String)>, Option<String>);
        let parsed: Option<Detail> = serde_json::from_str::<Value>(detail).ok().and_then(|d| {
            let status = u16::try_from(d.get("status")?.as_u64()?).ok()?;
            let headers = d
                .get("headers")?
                .as_object()?
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect();
            let text = d
                .get("status_text")
                .and_then(|t| t.as_str())
                .map(str::to_string);
            Some((status, headers, text))
        });
        match parsed {
            Some((status, headers, status_text)) => ApiError::Custom {
                status,
                status_text,
                headers,
                body,
            },
            None => invalid(
                format!("Invalid JSON value for DETAIL: '{detail}'"),
                DETAIL_HINT,
            ),
        }
    }

    /// The JSON body; `minimal` drops details and hint (client-error-verbosity=minimal).
    pub fn body(&self, minimal: bool) -> Value {
        let (message, details, hint) = self.parts();
        let details = match self {
            ApiError::AmbiguousEmbed { candidates, .. } => Value::Array(
                candidates
                    .iter()
                    .map(|c| {
                        json!({
                            "cardinality": c.cardinality,
                            "embedding": c.embedding,
                            "relationship": c.relationship,
                        })
                    })
                    .collect(),
            ),
            _ => json!(details),
        };
        if minimal {
            json!({"code": self.code(), "message": message})
        } else {
            json!({"code": self.code(), "details": details, "hint": hint, "message": message})
        }
    }

    /// Extra headers that belong to this error (beyond Content-Type and Proxy-Status).
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        match self {
            ApiError::InvalidJwt { message, .. } | ApiError::InvalidJwtClaims(message) => headers
                .push((
                    "WWW-Authenticate",
                    format!("Bearer error=\"invalid_token\", error_description=\"{message}\""),
                )),
            ApiError::ForbiddenRole(_) => headers.push((
                "WWW-Authenticate",
                format!("Bearer error=\"invalid_token\", error_description=\"{FORBIDDEN_ROLE}\""),
            )),
            _ if self.status() == 401 => headers.push(("WWW-Authenticate", "Bearer".to_string())),
            _ => {}
        }
        match self {
            ApiError::InvalidRange {
                total: Some(total), ..
            } => headers.push(("Content-Range", format!("*/{total}"))),
            ApiError::Connection(_) | ApiError::Client(_) | ApiError::SchemaCacheNotReady => {
                headers.push(("Retry-After", "0".to_string()))
            }
            _ => {}
        }
        headers
    }
}

/// PostgREST's SQLSTATE -> HTTP status table (rules applied in this order).
pub fn pg_status(sqlstate: &str, message: &str, anonymous: bool) -> u16 {
    let class = sqlstate.get(..2).unwrap_or("");
    match sqlstate {
        "23503" | "23505" => return 409,
        "25006" => return 405,
        "21000" if message.ends_with("requires a WHERE clause") => return 400,
        "21000" => return 500,
        "22023" if message.starts_with("role \"") && message.ends_with("does not exist") => {
            return 401
        }
        "53400" => return 500,
        "57P01" => return 503,
        "42883" if message.starts_with("function xmlagg(") => return 406,
        "42883" | "42P01" => return 404,
        "42P17" => return 500,
        "42501" => return if anonymous { 401 } else { 403 },
        "P0001" => return 400,
        _ => {}
    }
    if let Some(code) = sqlstate.strip_prefix("PT") {
        return code
            .parse::<u16>()
            .ok()
            .filter(|c| (100..600).contains(c))
            .unwrap_or(500);
    }
    match class {
        "08" | "53" => 503,
        "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "54" | "55" | "57" | "58" | "F0"
        | "HV" | "XX" | "P0" => 500,
        "0L" | "0P" | "28" => 403,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_mapping_follows_postgrest() {
        assert_eq!(pg_status("23505", "", false), 409);
        assert_eq!(pg_status("23502", "", false), 400);
        assert_eq!(pg_status("25006", "", false), 405);
        assert_eq!(pg_status("42501", "", true), 401);
        assert_eq!(pg_status("42501", "", false), 403);
        assert_eq!(pg_status("PT402", "", false), 402);
        assert_eq!(pg_status("PTabc", "", false), 500);
        assert_eq!(pg_status("57014", "", false), 500);
        assert_eq!(pg_status("08006", "", false), 503);
        assert_eq!(pg_status("42703", "", false), 400);
        assert_eq!(pg_status("P0004", "", false), 500);
    }

    #[test]
    fn not_found_body_length_matches_postgrest() {
        let e = ApiError::TableNotFound {
            schema: "test".into(),
            name: "faketable".into(),
            hint: None,
        };
        assert_eq!(e.body(false).to_string().len(), 120);
        assert_eq!(ApiError::InvalidPath.body(false).to_string().len(), 96);
    }
}
