//! The transaction around a request's statement: BEGIN with its isolation level and
//! access mode, the settings statement (search_path, role settings, role, request GUCs),
//! and db-pre-request's call.

use crate::auth::Identity;
use crate::config::Config;
use crate::request::ApiRequest;
use std::borrow::Cow;

/// Settings statements by number of (name, value) pairs, written once: the text is the
/// same for every request with as many settings (and is the prepared statement's key).
fn settings_sql(pairs: usize) -> Cow<'static, str> {
    const CACHED: usize = 64;
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| (0..=CACHED).map(write_settings_sql).collect());
    match texts.get(pairs) {
        Some(text) => Cow::Borrowed(text.as_str()),
        None => Cow::Owned(write_settings_sql(pairs)),
    }
}

fn write_settings_sql(pairs: usize) -> String {
    let mut sql = String::from("select set_config('search_path', $1, true)");
    for i in 0..pairs {
        sql.push_str(&format!(
            ", set_config(${}, ${}, true)",
            2 * i + 2,
            2 * i + 3
        ));
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
    /// Names are mostly PostgREST's fixed ones, borrowed rather than allocated per request.
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
    /// request GUCs, and its parameters (borrowed: nothing is copied per request).
    pub fn settings_statement(&self) -> (Cow<'static, str>, Vec<&str>) {
        // The role's own settings go before the switch to it, as PostgREST applies them.
        let pairs = (self
            .role_settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())))
        .chain(std::iter::once(("role", self.role)))
        .chain(self.gucs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
        let mut params = Vec::with_capacity(3 + 2 * (self.role_settings.len() + self.gucs.len()));
        params.push(self.search_path.as_str());
        for (name, value) in pairs {
            params.push(name);
            params.push(value);
        }
        (settings_sql(params.len() / 2), params)
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
        let mut gucs: Vec<(Cow<'static, str>, Cow<'a, str>)> =
            Vec::with_capacity(6 + config.app_settings.len() + shape.hoisted.len());
        gucs.extend([
            ("request.jwt.claims".into(), identity.claims.as_str().into()),
            ("request.method".into(), api.method.name().into()),
            ("request.path".into(), api.path.as_str().into()),
            ("request.headers".into(), json_text(&api.headers).into()),
            ("request.cookies".into(), json_text(&api.cookies).into()),
        ]);
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
            gucs,
            pre_request: config.db_pre_request.as_deref().map(super::quote_qualified),
            prepared: config.db_prepared_statements,
        }
    }
}

/// Name/value pairs as a JSON object of strings (request.headers, request.cookies): keys
/// sorted, a repeated name keeping its last value, as a JSON object built key by key is.
/// Written from borrowed pairs, without copying them into a map first.
fn json_text(v: &[(String, String)]) -> String {
    struct Pairs<'a>(&'a [(&'a str, &'a str)]);
    impl serde::Serialize for Pairs<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }
    let mut pairs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Stable: equal names keep their order, so the last one given is the one kept.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1 = later.1;
        }
        same
    });
    serde_json::to_string(&Pairs(&pairs)).unwrap_or_else(|_| "{}".into())
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
            super::json_text(&pairs),
            r#"{"x-a":"last \"q\"","x-b":"1"}"#
        );
        assert_eq!(super::json_text(&[]), "{}");
    }
}
