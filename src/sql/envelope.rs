//! The transaction around a request's statement: BEGIN with its isolation level and
//! access mode, the settings statement (search_path, role settings, role, request GUCs),
//! and db-pre-request's call.

use crate::auth::Identity;
use crate::config::Config;
use crate::request::ApiRequest;

/// Transaction-local settings for one request, in PostgREST's order.
pub struct Envelope {
    pub read_only: bool,
    pub search_path: String,
    pub role: String,
    pub anonymous: bool,
    pub gucs: Vec<(String, String)>,
    /// Settings of the role (`ALTER ROLE ... SET`), applied before switching to it.
    pub role_settings: Vec<(String, String)>,
    /// Quoted, qualified function name for db-pre-request.
    pub pre_request: Option<String>,
    /// db-prepared-statements: off sends every statement unnamed (nothing stays prepared
    /// on the connection; for poolers in transaction mode).
    pub prepared: bool,
}

impl Envelope {
    /// The isolation level: a function's or the role's default_transaction_isolation
    /// (the function's wins), else READ COMMITTED.
    fn isolation(&self) -> &'static str {
        let setting = self
            .gucs
            .iter()
            .chain(self.role_settings.iter())
            .find(|(k, _)| k == "default_transaction_isolation")
            .map(|(_, v)| v.trim().trim_matches('\'').to_ascii_lowercase());
        match setting.as_deref() {
            Some("serializable") => "SERIALIZABLE",
            Some("repeatable read") => "REPEATABLE READ",
            _ => "READ COMMITTED",
        }
    }

    /// BEGIN with the isolation level and access mode.
    pub fn begin_sql(&self) -> String {
        let mode = if self.read_only {
            "READ ONLY"
        } else {
            "READ WRITE"
        };
        format!("BEGIN ISOLATION LEVEL {} {mode}", self.isolation())
    }

    /// The db-pre-request call, when configured.
    pub fn pre_request_sql(&self) -> Option<String> {
        self.pre_request.as_ref().map(|f| format!("select {f}()"))
    }

    pub fn settings_statement(&self) -> (String, Vec<String>) {
        let mut sql = String::from("select set_config('search_path', $1, true)");
        let mut params = vec![self.search_path.clone()];
        let settings = self.role_settings.iter();
        let role = std::iter::once(("role".to_string(), self.role.clone()));
        for (name, value) in settings
            .cloned()
            .chain(role)
            .chain(self.gucs.iter().cloned())
        {
            params.push(name);
            params.push(value);
            sql.push_str(&format!(
                ", set_config(${}, ${}, true)",
                params.len() - 1,
                params.len()
            ));
        }
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

impl Envelope {
    /// The envelope of a request running as `identity`.
    pub fn for_request(
        api: &ApiRequest,
        identity: &Identity,
        config: &Config,
        shape: TxShape,
    ) -> Envelope {
        let search_path: Vec<String> = std::iter::once(shape.schema)
            .chain(config.db_extra_search_path.iter().map(String::as_str))
            .map(super::quote_ident)
            .collect();
        let mut gucs = vec![
            ("request.jwt.claims".to_string(), identity.claims.clone()),
            ("request.method".to_string(), api.method.name().to_string()),
            ("request.path".to_string(), api.path.clone()),
            ("request.headers".to_string(), json_text(&api.headers)),
            ("request.cookies".to_string(), json_text(&api.cookies)),
        ];
        if let Some(tz) = &api.prefs.timezone {
            gucs.push(("timezone".to_string(), tz.clone()));
        }
        for (k, v) in &config.app_settings {
            gucs.push((format!("app.settings.{k}"), v.clone()));
        }
        gucs.extend(shape.hoisted);
        Envelope {
            role_settings: shape.role_settings.to_vec(),
            read_only: shape.read_only,
            search_path: search_path.join(", "),
            role: identity.role.clone(),
            anonymous: identity.anonymous,
            gucs,
            pre_request: config.db_pre_request.as_deref().map(super::quote_qualified),
            prepared: config.db_prepared_statements,
        }
    }
}

/// Name/value pairs as a JSON object of strings (request.headers, request.cookies).
fn json_text(v: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = v
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}
