//! The transaction around a request's statement: BEGIN with its isolation level and
//! access mode, the settings statement (search_path, role settings, role, request GUCs),
//! and db-pre-request's call.

use crate::auth::Identity;
use crate::config::Config;
use crate::request::ApiRequest;
use std::borrow::Cow;

/// The GUCs every request sets after the role's own settings, in PostgREST's order.
/// Their names are parameters like their values (`set_config($2, $3, true)`), as in
/// PostgREST's statement: tools that replay pgrest's logged settings statement with
/// their own values (../shared/bench-kit's cpu_bench.py builds its pgbench scripts so)
/// expect that shape, $1 the search_path and then name and value pairs.
const REQUEST_GUCS: [&str; 6] = [
    "role",
    "request.jwt.claims",
    "request.method",
    "request.path",
    "request.headers",
    "request.cookies",
];

/// Settings statements by number of role settings and of extra GUCs (timezone,
/// app.settings.*, hoisted function settings), written once: the text is the same for
/// every request with as many of each (and is the prepared statement's key).
/// With `read_only`, the statement also makes the transaction read-only (for one that
/// began without BEGIN READ ONLY).
fn settings_sql(role_settings: usize, extra: usize, read_only: bool) -> Cow<'static, str> {
    const CACHED: usize = 16;
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..2 * CACHED * CACHED)
            .map(|i| write_settings_sql(i / CACHED % CACHED, i % CACHED, i >= CACHED * CACHED))
            .collect()
    });
    if role_settings < CACHED && extra < CACHED {
        let i = usize::from(read_only) * CACHED * CACHED + role_settings * CACHED + extra;
        Cow::Borrowed(texts[i].as_str())
    } else {
        Cow::Owned(write_settings_sql(role_settings, extra, read_only))
    }
}

fn write_settings_sql(role_settings: usize, extra: usize, read_only: bool) -> String {
    use std::fmt::Write;
    let mut sql = String::from("select set_config('search_path', $1, true)");
    let mut n = 1;
    let pair = |sql: &mut String, n: &mut usize| {
        let _ = write!(sql, ", set_config(${}, ${}, true)", *n + 1, *n + 2);
        *n += 2;
    };
    for _ in 0..role_settings {
        pair(&mut sql, &mut n);
    }
    // The parameter holding request.method's value.
    let mut method = 0;
    for name in REQUEST_GUCS {
        pair(&mut sql, &mut n);
        if name == "request.method" {
            method = n;
        }
    }
    for _ in 0..extra {
        pair(&mut sql, &mut n);
    }
    if read_only {
        // Only GET and HEAD run read-only without BEGIN (`at_sync_eligible`), so for
        // pgrest this is always 'on'. Keyed to the method, the same text replayed for a
        // write (as the bench kit replays one settings statement for every scenario)
        // leaves the access mode as it is instead of failing the write.
        let _ = write!(
            sql,
            ", set_config('transaction_read_only', CASE WHEN ${method} IN ('GET', 'HEAD') \
             THEN 'on' ELSE current_setting('transaction_read_only') END, true)"
        );
    }
    sql
}

/// Transaction-local settings for one request, in PostgREST's order. Borrowed from the
/// request, its identity and its snapshot where it can be: only what is computed per
/// request (search_path, the header and cookie JSON) is owned.
pub struct Envelope<'a> {
    pub read_only: bool,
    pub search_path: String,
    pub role: &'a str,
    pub anonymous: bool,
    /// The values of `REQUEST_GUCS` after the role, in its order.
    pub request: [Cow<'a, str>; 5],
    /// Further GUCs: timezone, app.settings.*, hoisted function settings.
    pub gucs: Vec<(Cow<'static, str>, Cow<'a, str>)>,
    /// Settings of the role (`ALTER ROLE ... SET`), applied before switching to it.
    pub role_settings: &'a [(String, String)],
    /// Quoted, qualified function name for db-pre-request.
    pub pre_request: Option<String>,
    /// db-prepared-statements: off sends every statement unnamed (nothing stays prepared
    /// on the connection; for poolers in transaction mode).
    pub prepared: bool,
}

impl Envelope<'_> {
    /// The isolation level: a function's or the role's default_transaction_isolation
    /// (the function's wins), else READ COMMITTED.
    fn isolation(&self) -> &'static str {
        let setting = (self.gucs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
            .chain(
                self.role_settings
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .find(|(k, _)| *k == "default_transaction_isolation")
            .map(|(_, v)| v.trim().trim_matches('\'').to_ascii_lowercase());
        match setting.as_deref() {
            Some("serializable") => "SERIALIZABLE",
            Some("repeatable read") => "REPEATABLE READ",
            _ => "READ COMMITTED",
        }
    }

    /// Whether the transaction is SERIALIZABLE, which a hot standby cannot run
    /// (read replicas send it to the primary).
    pub fn serializable(&self) -> bool {
        self.isolation() == "SERIALIZABLE"
    }

    /// Whether the request may run without BEGIN, in the transaction PostgreSQL opens for
    /// its statements under one Sync: when it is READ COMMITTED, what that transaction is
    /// on a READ COMMITTED session (whether the session's default access mode fits is the
    /// connection's to say). A GET or HEAD is made read-only by the settings statement;
    /// another read-only request (a POST call of a STABLE function) keeps
    /// `BEGIN ... READ ONLY`.
    pub fn at_sync_eligible(&self) -> bool {
        let read_only_by_settings = matches!(self.method(), "GET" | "HEAD");
        self.isolation() == "READ COMMITTED" && (!self.read_only || read_only_by_settings)
    }

    /// The request's method, as request.method says it.
    fn method(&self) -> &str {
        &self.request[1]
    }

    /// BEGIN with the isolation level and access mode.
    pub fn begin_sql(&self) -> &'static str {
        match (self.isolation(), self.read_only) {
            ("SERIALIZABLE", true) => "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
            ("SERIALIZABLE", false) => "BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE",
            ("REPEATABLE READ", true) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            ("REPEATABLE READ", false) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ WRITE",
            (_, true) => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
            (_, false) => "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE",
        }
    }

    /// The db-pre-request call, when configured.
    pub fn pre_request_sql(&self) -> Option<String> {
        self.pre_request.as_ref().map(|f| format!("select {f}()"))
    }

    /// The one statement that sets search_path, the role's settings, the role and the
    /// request GUCs, and its parameters (borrowed: nothing is copied per request). In a
    /// transaction PostgreSQL opened itself (no BEGIN: `opened_by_postgres`), a read also
    /// makes it read-only, as `BEGIN ... READ ONLY` would have.
    pub fn settings_statement(&self, opened_by_postgres: bool) -> (Cow<'static, str>, Vec<&str>) {
        let read_only = opened_by_postgres && self.read_only;
        let mut params = Vec::with_capacity(
            1 + 2 * (REQUEST_GUCS.len() + self.role_settings.len() + self.gucs.len()),
        );
        params.push(self.search_path.as_str());
        // The role's own settings go before the switch to it, as PostgREST applies them.
        for (name, value) in self.role_settings {
            params.extend([name.as_str(), value.as_str()]);
        }
        let values = std::iter::once(self.role).chain(self.request.iter().map(|v| v.as_ref()));
        for (name, value) in REQUEST_GUCS.into_iter().zip(values) {
            params.extend([name, value]);
        }
        for (name, value) in &self.gucs {
            params.extend([name.as_ref(), value.as_ref()]);
        }
        let sql = settings_sql(self.role_settings.len(), self.gucs.len(), read_only);
        (sql, params)
    }
}

/// What shapes one request's transaction besides the request itself.
pub struct TxShape<'a> {
    pub schema: &'a str,
    pub read_only: bool,
    /// The role's `ALTER ROLE ... SET` settings, from the request's schema cache snapshot.
    pub role_settings: &'a [(String, String)],
    /// Settings of the called function that db-hoisted-tx-settings lifts to the
    /// transaction.
    pub hoisted: Vec<(String, String)>,
}

impl<'a> Envelope<'a> {
    /// The envelope of a request running as `identity`.
    pub fn for_request(
        api: &'a ApiRequest,
        identity: &'a Identity,
        config: &'a Config,
        shape: TxShape<'a>,
    ) -> Envelope<'a> {
        let mut search_path = String::with_capacity(32);
        for (i, schema) in std::iter::once(shape.schema)
            .chain(config.db_extra_search_path.iter().map(String::as_str))
            .enumerate()
        {
            if i > 0 {
                search_path.push_str(", ");
            }
            let _ = super::write_ident(&mut search_path, schema);
        }
        let request = [
            identity.claims.as_str().into(),
            api.method.name().into(),
            api.path.as_str().into(),
            json_text(api.headers.iter()),
            json_text(api.cookies.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        ];
        // Sized exactly: most requests have none, and then nothing is allocated.
        let mut gucs: Vec<(Cow<'static, str>, Cow<'a, str>)> = Vec::with_capacity(
            usize::from(api.prefs.timezone.is_some())
                + config.app_settings.len()
                + shape.hoisted.len(),
        );
        if let Some(tz) = &api.prefs.timezone {
            gucs.push(("timezone".into(), tz.as_str().into()));
        }
        for (k, v) in &config.app_settings {
            gucs.push((format!("app.settings.{k}").into(), v.as_str().into()));
        }
        gucs.extend(shape.hoisted.into_iter().map(|(k, v)| (k.into(), v.into())));
        Envelope {
            role_settings: shape.role_settings,
            read_only: shape.read_only,
            search_path,
            role: &identity.role,
            anonymous: identity.anonymous,
            request,
            gucs,
            pre_request: config.db_pre_request.as_deref().map(super::quote_qualified),
            prepared: config.db_prepared_statements,
        }
    }
}

/// Name/value pairs as a JSON object of strings (request.headers, request.cookies): keys
/// sorted, a repeated name keeping its last value, as a JSON object built key by key is.
/// Written from borrowed pairs, without copying them into a map first; none (the usual
/// request.cookies) is the constant `{}`.
fn json_text<'a>(v: impl Iterator<Item = (&'a str, &'a str)>) -> Cow<'static, str> {
    let mut pairs: Vec<(&str, &str)> = v.collect();
    if pairs.is_empty() {
        return Cow::Borrowed("{}");
    }
    // Stable: equal names keep their order, so the last one given is the one kept.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1 = later.1;
        }
        same
    });
    // Sized for the usual case of nothing to escape: `"k":"v",` per pair and the braces.
    let size = 2 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 6)
        .sum::<usize>();
    let mut out = String::with_capacity(size);
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, k);
        out.push(':');
        push_json_string(&mut out, v);
    }
    out.push('}');
    Cow::Owned(out)
}

/// A JSON string literal. Header values and names rarely need escaping, so they are
/// copied whole when they do not; serde_json's escaper otherwise (going through it for
/// every string was about 1,200 instructions of an insert's six headers, callgrind).
fn push_json_string(out: &mut String, s: &str) {
    // Without an early exit the check compiles to vector instructions.
    let escapes = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escapes {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // serde_json writes a string as valid JSON and cannot fail on one.
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_headers_are_an_object_sorted_by_name_with_the_last_value_of_a_repeated_one() {
        let pairs: Vec<(String, String)> = [("x-b", "1"), ("x-a", "first"), ("x-a", "last \"q\"")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            super::json_text(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            r#"{"x-a":"last \"q\"","x-b":"1"}"#
        );
        assert_eq!(super::json_text(std::iter::empty()), "{}");
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in [
            "plain",
            "é ü 日本",
            "q\"uote",
            "back\\slash",
            "tab\tnl\n",
            "\u{1}\u{7f}",
            "",
        ] {
            let mut out = String::new();
            super::push_json_string(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    use super::write_settings_sql;

    #[test]
    fn the_settings_statement_has_postgrest_s_shape_and_a_read_keys_read_only_to_its_method() {
        let read = write_settings_sql(0, 0, true);
        assert!(read.starts_with(
            "select set_config('search_path', $1, true), set_config($2, $3, true), \
             set_config($4, $5, true), set_config($6, $7, true)"
        ));
        assert!(read.ends_with(
            ", set_config($12, $13, true), set_config('transaction_read_only', \
             CASE WHEN $7 IN ('GET', 'HEAD') THEN 'on' \
             ELSE current_setting('transaction_read_only') END, true)"
        ));
        // With a role setting before the role, request.method's value moves by two.
        assert!(write_settings_sql(1, 0, true).contains("CASE WHEN $9 IN ('GET', 'HEAD')"));
        assert!(!write_settings_sql(0, 0, false).contains("transaction_read_only"));
    }
}
