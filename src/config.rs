//! Configuration: PostgREST's file format and PGRST_* environment variables, with
//! PostgREST's defaults. Precedence: in-database settings > environment > file > default.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Every key PostgREST knows, with its default ("" = unset) and whether --dump-config
/// prints it bare (numbers, booleans) rather than quoted.
const KEYS: &[(&str, &str, bool)] = &[
    // pgrest extension: the admin server's /config is off unless enabled.
    ("admin-server-config-enabled", "false", true),
    // pgrest: loopback by default, where PostgREST follows server-host.
    ("admin-server-host", "127.0.0.1", false),
    ("admin-server-port", "", true),
    ("admin-server-unix-socket", "", false),
    ("admin-server-unix-socket-mode", "660", false),
    ("app.settings", "", false),
    ("client-error-verbosity", "verbose", false),
    // pgrest extension: unknown keys are an error instead of a warning.
    ("config-strict", "false", true),
    ("db-aggregates-enabled", "false", true),
    ("db-anon-role", "", false),
    ("db-channel", "pgrst", false),
    ("db-channel-enabled", "true", true),
    ("db-config", "true", true),
    ("db-extra-search-path", "public", false),
    (
        "db-hoisted-tx-settings",
        "statement_timeout,plan_filter.statement_cost_limit,default_transaction_isolation",
        false,
    ),
    ("db-max-rows", "", true),
    ("db-plan-enabled", "false", true),
    ("db-pool", "10", true),
    ("db-pool-acquisition-timeout", "10", true),
    ("db-pool-automatic-recovery", "true", true),
    ("db-pool-max-idletime", "30", true),
    ("db-pool-max-lifetime", "1800", true),
    ("db-pre-config", "", false),
    ("db-pre-request", "", false),
    ("db-prepared-statements", "true", true),
    // pgrest extensions: read replicas (README, "Scaling out"). The pool size defaults
    // to db-pool's; the lag bound is in milliseconds.
    ("db-replica-max-lag", "5000", true),
    ("db-replica-pool", "", true),
    ("db-replica-uris", "", false),
    ("db-root-spec", "", false),
    ("db-schemas", "public", false),
    ("db-tx-end", "commit", false),
    ("db-uri", "", false),
    ("jwt-aud", "", false),
    ("jwt-cache-max-entries", "1000", true),
    ("jwt-role-claim-key", "$.role", false),
    ("jwt-secret", "", false),
    ("jwt-secret-is-base64", "false", true),
    ("log-level", "error", false),
    ("log-query", "false", true),
    ("openapi-mode", "follow-privileges", false),
    ("openapi-security-active", "false", true),
    ("openapi-server-proxy-uri", "", false),
    ("server-cors-allowed-origins", "", false),
    // pgrest extensions: bounds on what one client can take (README, "Limits").
    ("server-header-read-timeout", "30", true),
    ("server-max-body-size", "104857600", true),
    ("server-max-connections", "0", true),
    ("server-host", "!4", false),
    ("server-port", "3000", true),
    ("server-reuseport", "false", true),
    ("server-timing-enabled", "false", true),
    ("server-trace-header", "", false),
    ("server-unix-socket", "", false),
    ("server-unix-socket-mode", "660", false),
    ("url-use-legacy-target-names", "true", true),
];

/// `pgrest --example`: an annotated configuration file to start from.
pub const EXAMPLE: &str = r##"## pgrest configuration: PostgREST's file format. Every key can also be set in the
## environment as PGRST_<KEY> (db-uri -> PGRST_DB_URI), which wins over this file.

## The database, as a URI or libpq key=value string, or "@/path/to/file". Unset parts come
## from libpq's environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE...).
db-uri = "postgres://authenticator:mysecretpassword@localhost:5432/postgres"

## Schemas exposed as the API; the first is the default (Accept-Profile/Content-Profile
## pick another).
db-schemas = "api"

## The role requests run as without a token (unset: a token is required).
db-anon-role = "web_anon"

## Connections in the pool, and seconds to wait for one before answering 504.
db-pool = 10
db-pool-acquisition-timeout = 10

## Read replicas (pgrest extension): streaming standbys that serve reads; writes answer
## with X-Pgrst-Lsn, which a read sends back to see them (README, "Scaling out").
# db-replica-uris = "postgres://authenticator@standby1/app,postgres://authenticator@standby2/app"
# db-replica-max-lag = 5000

## Cap on the rows any read returns (unset: no cap).
# db-max-rows = 1000

## A function called before each request's statement (for checks on headers or claims).
# db-pre-request = "api.check_request"

## JWT: an HMAC secret of at least 32 characters, a JWK or JWKS, or "@/path/to/file";
## the claim that names the role, and the audience a token must carry.
# jwt-secret = "reallyreallyreallyreallyverysafe"
# jwt-role-claim-key = "$.role"
# jwt-aud = "my-api"

## Where the API listens ("!4" = every IPv4 address, "*" = IPv4 and IPv6).
server-host = "!4"
server-port = 3000

## The admin server (/live, /ready, /metrics); on loopback unless admin-server-host says
## otherwise.
# admin-server-port = 3001

## Bounds per client (pgrest extensions).
# server-max-body-size = 104857600
# server-header-read-timeout = 30

## crit, error, warn, info or debug.
log-level = "error"
"##;

/// Keys an operator may also set in the database, as `pgrst.<key with underscores>` role
/// settings of the authenticator or from the db-pre-config function.
pub const IN_DB_KEYS: &[&str] = &[
    "client-error-verbosity",
    "db-aggregates-enabled",
    "db-anon-role",
    "db-extra-search-path",
    "db-hoisted-tx-settings",
    "db-max-rows",
    "db-plan-enabled",
    "db-pre-config",
    "db-pre-request",
    "db-prepared-statements",
    "db-root-spec",
    "db-schemas",
    "db-tx-end",
    "jwt-aud",
    "jwt-cache-max-entries",
    "jwt-role-claim-key",
    "jwt-secret",
    "jwt-secret-is-base64",
    "openapi-mode",
    "openapi-security-active",
    "openapi-server-proxy-uri",
    "server-cors-allowed-origins",
    "server-timing-enabled",
    "server-trace-header",
    "url-use-legacy-target-names",
];

/// Old names PostgREST still accepts.
const ALIASES: &[(&str, &str)] = &[
    ("db-schema", "db-schemas"),
    ("max-rows", "db-max-rows"),
    ("pre-request", "db-pre-request"),
    ("root-spec", "db-root-spec"),
    ("role-claim-key", "jwt-role-claim-key"),
    ("secret-is-base64", "jwt-secret-is-base64"),
    ("db-pool-timeout", "db-pool-max-idletime"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Crit,
    Error,
    Warn,
    Info,
    Debug,
}

/// What db-tx-end says: whether a transaction commits by default, and whether
/// `Prefer: tx=` may override it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxEnd {
    pub commit: bool,
    pub overridable: bool,
}

/// openapi-mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenApiMode {
    FollowPrivileges,
    IgnorePrivileges,
    Disabled,
}

/// The configuration, parsed once at load into typed fields (one per key PostgREST
/// knows); nothing reads a key by name afterwards.
#[derive(Debug, Clone)]
pub struct Config {
    /// Raw values after file + env, for --dump-config and in-database settings.
    raw: BTreeMap<String, String>,
    pub admin_server_config_enabled: bool,
    pub admin_server_host: Option<String>,
    pub admin_server_port: Option<u16>,
    pub admin_server_unix_socket: Option<String>,
    /// admin-server-unix-socket-mode, octal 600..=777.
    pub admin_unix_socket_mode: u32,
    pub app_settings: Vec<(String, String)>,
    /// client-error-verbosity = minimal.
    pub minimal_errors: bool,
    pub db_aggregates_enabled: bool,
    pub db_anon_role: Option<String>,
    pub db_channel: String,
    pub db_channel_enabled: bool,
    pub db_config: bool,
    pub db_extra_search_path: Vec<String>,
    /// Function settings that apply to the whole request transaction.
    pub db_hoisted_tx_settings: Vec<String>,
    pub db_max_rows: Option<i64>,
    pub db_plan_enabled: bool,
    pub db_pool: usize,
    /// Seconds.
    pub db_pool_acquisition_timeout: u64,
    pub db_pool_automatic_recovery: bool,
    /// Seconds.
    pub db_pool_max_idletime: u64,
    /// Seconds.
    pub db_pool_max_lifetime: u64,
    pub db_pre_config: Option<String>,
    pub db_pre_request: Option<String>,
    pub db_prepared_statements: bool,
    /// db-replica-max-lag, milliseconds: a standby further behind leaves the rotation.
    pub db_replica_max_lag: u64,
    /// db-replica-pool: connections per replica (default: db-pool).
    pub db_replica_pool: usize,
    /// db-replica-uris: the standbys reads may go to (empty: none, every request goes
    /// to db-uri as in PostgREST).
    pub db_replica_uris: Vec<String>,
    pub db_root_spec: Option<String>,
    pub db_schemas: Vec<String>,
    pub db_tx_end: TxEnd,
    pub db_uri: Option<String>,
    pub jwt_aud: Option<String>,
    pub jwt_cache_max_entries: usize,
    pub jwt_role_claim_key: String,
    pub jwt_secret: Option<String>,
    pub jwt_secret_is_base64: bool,
    pub log_level: LogLevel,
    pub log_query: bool,
    pub openapi_mode: OpenApiMode,
    pub openapi_security_active: bool,
    pub openapi_server_proxy_uri: Option<String>,
    /// `None`: any origin.
    pub server_cors_allowed_origins: Option<Vec<String>>,
    /// server-header-read-timeout, seconds (at least 1).
    pub server_header_read_timeout: u64,
    pub server_host: String,
    /// server-max-body-size, bytes.
    pub server_max_body_size: u64,
    /// server-max-connections; 0 = as many as the open-file limit allows.
    pub server_max_connections: usize,
    pub server_port: u16,
    pub server_reuseport: bool,
    pub server_timing_enabled: bool,
    pub server_trace_header: Option<String>,
    pub server_unix_socket: Option<String>,
    /// server-unix-socket-mode, octal 600..=777.
    pub unix_socket_mode: u32,
    pub url_use_legacy_target_names: bool,
    /// Keys given that are not configuration keys (warned about at start-up).
    pub unknown_keys: Vec<UnknownKey>,
}

fn canonical_key(key: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map(|(_, k)| *k)
        .unwrap_or(key)
}

/// A key given in the file or the environment that is not a configuration key.
#[derive(Debug, Clone)]
pub struct UnknownKey {
    /// Where it was given (file key or environment variable).
    source: String,
    key: String,
}

impl UnknownKey {
    fn warning(&self) -> String {
        let closest = crate::hints::closest(KEYS.iter().map(|(k, _, _)| *k), &self.key, 0.6);
        match closest {
            Some(k) => format!("unknown {}: ignored (did you mean {k}?)", self.source),
            None => format!("unknown {}: ignored", self.source),
        }
    }
}

/// Where the configuration comes from, so it can be read again on a reload: the file (if
/// any), the environment, and settings a caller imposes (the demo's database).
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub file: Option<String>,
    /// Applied after the environment, as PGRST_* pairs.
    pub overrides: Vec<(String, String)>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, String> {
        let text = match &self.file {
            Some(path) => Some(
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?,
            ),
            None => None,
        };
        let env = std::env::vars().chain(self.overrides.iter().cloned());
        Config::load(text.as_deref(), env).map_err(|e| format!("invalid configuration: {e}"))
    }
}

/// Parses PostgREST's `key = value` file syntax into raw strings.
pub fn parse_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected `key = value`", n + 1))?;
        let key = key.trim().to_string();
        let value =
            parse_value(value.trim()).map_err(|e| format!("line {}: {e} for key {key}", n + 1))?;
        out.push((key, value));
    }
    Ok(out)
}

fn parse_value(v: &str) -> Result<String, String> {
    if let Some(rest) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    let tail: String = chars.collect();
                    let tail = tail.trim();
                    if !tail.is_empty() && !tail.starts_with('#') {
                        return Err("unexpected text after the closing quote".into());
                    }
                    return Ok(interpolate_env(&out));
                }
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => return Err("unterminated string".into()),
                },
                c => out.push(c),
            }
        }
        Err("unterminated string".into())
    } else {
        let bare = v.split('#').next().unwrap_or("").trim();
        Ok(bare.to_string())
    }
}

/// `$(VAR)` expands to the environment variable; `$$` is a literal `$`.
fn interpolate_env(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..end + 1];
            out.push_str(&std::env::var(name).unwrap_or_default());
            rest = &after[end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" => Ok(true),
        "false" | "off" | "no" => Ok(false),
        n => n
            .parse::<i64>()
            .map(|n| n > 0)
            .map_err(|_| format!("invalid boolean for {key}: {v:?}")),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("invalid number for {key}: {v:?}"))
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Raw key values, read as the type each key has.
struct Raw<'a>(&'a BTreeMap<String, String>);

impl Raw<'_> {
    fn text(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }

    /// `None` when unset or empty.
    fn opt(&self, key: &str) -> Option<String> {
        Some(self.text(key).to_string()).filter(|s| !s.is_empty())
    }

    fn flag(&self, key: &str) -> Result<bool, String> {
        match self.text(key) {
            "" => Ok(false),
            v => parse_bool(key, v),
        }
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        parse_num(key, self.text(key))
    }

    fn opt_num<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.opt(key).map(|v| parse_num(key, &v)).transpose()
    }

    fn socket_mode(&self, key: &str) -> Result<u32, String> {
        u32::from_str_radix(self.text(key), 8)
            .ok()
            .filter(|m| (0o600..=0o777).contains(m))
            .ok_or_else(|| {
                format!(
                    "invalid {key} {:?}: expected octal 600 to 777",
                    self.text(key)
                )
            })
    }
}

/// Keys printed bare (numbers and booleans) must hold one.
fn check_bare_values(raw: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, _, _) in KEYS.iter().filter(|(_, _, bare)| *bare) {
        let v = raw.get(*key).map(String::as_str).unwrap_or("");
        if !v.is_empty() && parse_bool(key, v).is_err() && v.parse::<f64>().is_err() {
            return Err(format!("invalid value for {key}: {v:?}"));
        }
    }
    Ok(())
}

fn schemas(r: &Raw) -> Result<Vec<String>, String> {
    let db_schemas = split_list(r.text("db-schemas"));
    if db_schemas.is_empty() {
        return Err("db-schemas must name at least one schema".into());
    }
    if let Some(bad) = db_schemas
        .iter()
        .find(|s| *s == "pg_catalog" || *s == "information_schema")
    {
        return Err(format!("db-schemas may not contain {bad}"));
    }
    Ok(db_schemas)
}

fn log_level(r: &Raw) -> Result<LogLevel, String> {
    Ok(match r.text("log-level") {
        "crit" => LogLevel::Crit,
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        other => {
            return Err(format!(
                "invalid log-level {other:?}: expected crit, error, warn, info or debug"
            ))
        }
    })
}

fn minimal_errors(r: &Raw) -> Result<bool, String> {
    match r.text("client-error-verbosity") {
        "verbose" => Ok(false),
        "minimal" => Ok(true),
        other => Err(format!(
            "invalid client-error-verbosity {other:?}: expected verbose or minimal"
        )),
    }
}

fn tx_end(r: &Raw) -> Result<TxEnd, String> {
    let (commit, overridable) = match r.text("db-tx-end") {
        "commit" => (true, false),
        "commit-allow-override" => (true, true),
        "rollback" => (false, false),
        "rollback-allow-override" => (false, true),
        other => return Err(format!("invalid db-tx-end {other:?}")),
    };
    Ok(TxEnd {
        commit,
        overridable,
    })
}

fn openapi_mode(r: &Raw) -> Result<OpenApiMode, String> {
    match r.text("openapi-mode") {
        "follow-privileges" => Ok(OpenApiMode::FollowPrivileges),
        "ignore-privileges" => Ok(OpenApiMode::IgnorePrivileges),
        "disabled" => Ok(OpenApiMode::Disabled),
        other => Err(format!("invalid openapi-mode {other:?}")),
    }
}

/// openapi-server-proxy-uri must be an absolute http(s) URI with a host.
fn proxy_uri(r: &Raw) -> Result<Option<String>, String> {
    let Some(uri) = r.opt("openapi-server-proxy-uri") else {
        return Ok(None);
    };
    let valid = uri.parse::<hyper::Uri>().is_ok_and(|u| {
        u.host().is_some()
            && u.scheme_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
    });
    if !valid {
        return Err(format!(
            "malformed openapi-server-proxy-uri {uri:?}: expected http(s)://host[:port][/path]"
        ));
    }
    Ok(Some(uri))
}

impl Config {
    /// Loads defaults, then the file (if any), then PGRST_* variables from `env`.
    pub fn load(
        file_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let mut raw: BTreeMap<String, String> = KEYS
            .iter()
            .filter(|(k, _, _)| *k != "app.settings")
            .map(|(k, d, _)| (k.to_string(), d.to_string()))
            .collect();
        let mut app_settings = BTreeMap::new();
        let mut unknown = Vec::new();
        let mut set = |key: &str, value: String, source: String| {
            if let Some(name) = key.strip_prefix("app.settings.") {
                app_settings.insert(name.to_string(), value);
                return;
            }
            let key = canonical_key(key);
            if !KEYS.iter().any(|(k, _, _)| *k == key) {
                unknown.push(UnknownKey {
                    source,
                    key: key.to_string(),
                });
                return;
            }
            raw.insert(key.to_string(), value);
        };
        if let Some(text) = file_text {
            for (k, v) in parse_file(text)? {
                let source = format!("key {k:?} in the configuration file");
                set(&k, v, source);
            }
        }
        for (name, value) in env {
            if let Some(setting) = name.strip_prefix("PGRST_APP_SETTINGS_") {
                set(&format!("app.settings.{setting}"), value, String::new());
            } else if let Some(key) = name.strip_prefix("PGRST_") {
                let key = key.to_ascii_lowercase().replace('_', "-");
                set(&key, value, format!("environment variable {name}"));
            }
        }
        let strict = Raw(&raw).flag("config-strict") == Ok(true);
        if strict {
            if let Some(first) = unknown.first() {
                return Err(first.warning());
            }
        }
        let mut config = Self::from_raw(raw, app_settings.into_iter().collect())?;
        config.unknown_keys = unknown;
        Ok(config)
    }

    /// One line per configuration key pgrest does not know (a typo is otherwise silent).
    pub fn unknown_key_warnings(&self) -> Vec<String> {
        self.unknown_keys.iter().map(UnknownKey::warning).collect()
    }

    fn from_raw(
        raw: BTreeMap<String, String>,
        app_settings: Vec<(String, String)>,
    ) -> Result<Config, String> {
        // Checked in this order, so that the first problem named is the same whatever
        // else is wrong.
        let r = Raw(&raw);
        let log_level = log_level(&r)?;
        let minimal_errors = minimal_errors(&r)?;
        let db_tx_end = tx_end(&r)?;
        let openapi_mode = openapi_mode(&r)?;
        let openapi_server_proxy_uri = proxy_uri(&r)?;
        let db_schemas = schemas(&r)?;
        let unix_socket_mode = r.socket_mode("server-unix-socket-mode")?;
        if r.opt("admin-server-port")
            .is_some_and(|p| p == r.text("server-port"))
        {
            return Err("admin-server-port cannot be the same as server-port".into());
        }
        let admin_unix_socket_mode = r.socket_mode("admin-server-unix-socket-mode")?;
        let db_pool: usize = r.num("db-pool")?;
        if db_pool == 0 {
            return Err("db-pool must be at least 1".into());
        }
        let db_max_rows = r.opt_num::<i64>("db-max-rows")?.filter(|n| *n >= 0);
        let db_replica_pool = r.opt_num("db-replica-pool")?.unwrap_or(db_pool);
        if db_replica_pool == 0 {
            return Err("db-replica-pool must be at least 1".into());
        }
        check_bare_values(&raw)?;
        Ok(Config {
            admin_server_config_enabled: r.flag("admin-server-config-enabled")?,
            admin_server_host: r.opt("admin-server-host"),
            admin_server_port: r.opt_num("admin-server-port")?,
            admin_server_unix_socket: r.opt("admin-server-unix-socket"),
            admin_unix_socket_mode,
            app_settings,
            minimal_errors,
            db_aggregates_enabled: r.flag("db-aggregates-enabled")?,
            db_anon_role: r.opt("db-anon-role"),
            db_channel: r.opt("db-channel").unwrap_or_else(|| "pgrst".into()),
            db_channel_enabled: r.flag("db-channel-enabled")?,
            db_config: r.flag("db-config")?,
            db_extra_search_path: split_list(r.text("db-extra-search-path")),
            db_hoisted_tx_settings: split_list(r.text("db-hoisted-tx-settings")),
            db_max_rows,
            db_plan_enabled: r.flag("db-plan-enabled")?,
            db_pool,
            db_pool_acquisition_timeout: r.num("db-pool-acquisition-timeout")?,
            db_pool_automatic_recovery: r.flag("db-pool-automatic-recovery")?,
            db_pool_max_idletime: r.num("db-pool-max-idletime")?,
            db_pool_max_lifetime: r.num("db-pool-max-lifetime")?,
            db_pre_config: r.opt("db-pre-config"),
            db_pre_request: r.opt("db-pre-request"),
            db_prepared_statements: r.flag("db-prepared-statements")?,
            db_replica_max_lag: r.num("db-replica-max-lag")?,
            db_replica_pool,
            db_replica_uris: split_connection_strings(r.text("db-replica-uris")),
            db_root_spec: r.opt("db-root-spec"),
            db_schemas,
            db_tx_end,
            db_uri: r
                .opt("db-uri")
                .map(|v| read_at_file("db-uri", v))
                .transpose()?,
            jwt_aud: r.opt("jwt-aud"),
            jwt_cache_max_entries: r.num("jwt-cache-max-entries")?,
            jwt_role_claim_key: r
                .opt("jwt-role-claim-key")
                .unwrap_or_else(|| "$.role".into()),
            jwt_secret: r.opt("jwt-secret"),
            jwt_secret_is_base64: r.flag("jwt-secret-is-base64")?,
            log_level,
            log_query: r.flag("log-query")?,
            openapi_mode,
            openapi_security_active: r.flag("openapi-security-active")?,
            openapi_server_proxy_uri,
            server_cors_allowed_origins: r
                .opt("server-cors-allowed-origins")
                .map(|list| list.split(',').map(|o| o.trim().to_string()).collect()),
            server_header_read_timeout: r.num::<u64>("server-header-read-timeout")?.max(1),
            server_host: r.text("server-host").to_string(),
            server_max_body_size: r.num("server-max-body-size")?,
            server_max_connections: r.num("server-max-connections")?,
            server_port: r.num("server-port")?,
            server_reuseport: r.flag("server-reuseport")?,
            server_timing_enabled: r.flag("server-timing-enabled")?,
            server_trace_header: r.opt("server-trace-header"),
            server_unix_socket: r.opt("server-unix-socket"),
            unix_socket_mode,
            url_use_legacy_target_names: r.flag("url-use-legacy-target-names")?,
            unknown_keys: Vec::new(),
            raw,
        })
    }

    /// This configuration with settings read from the database laid over it (they win
    /// over the environment and the file); keys outside [`IN_DB_KEYS`] are ignored.
    pub fn with_db_settings(&self, settings: &[(String, String)]) -> Result<Config, String> {
        let mut raw = self.raw.clone();
        for (key, value) in settings {
            let key = canonical_key(key);
            if IN_DB_KEYS.contains(&key) {
                raw.insert(key.to_string(), value.clone());
            }
        }
        Self::from_raw(raw, self.app_settings.clone())
            .map_err(|e| format!("invalid in-database configuration: {e}"))
    }

    /// The effective configuration in file syntax (`--dump-config`, run by whoever holds
    /// the configuration anyway).
    pub fn dump(&self) -> String {
        self.dump_with(|_, v| v.to_string())
    }

    /// The effective configuration with its secrets masked, for the admin server's
    /// /config: jwt-secret, the password in db-uri, and app.settings whose names say
    /// they hold one.
    pub fn dump_redacted(&self) -> String {
        self.dump_with(|key, v| match key {
            _ if v.is_empty() => String::new(),
            "jwt-secret" => REDACTED.to_string(),
            "db-uri" => redact_uri_password(v),
            "db-replica-uris" => split_connection_strings(v)
                .iter()
                .map(|uri| redact_uri_password(uri))
                .collect::<Vec<_>>()
                .join(","),
            _ if key.starts_with("app.settings.") && secret_name(key) => REDACTED.to_string(),
            _ => v.to_string(),
        })
    }

    fn dump_with(&self, shown: impl Fn(&str, &str) -> String) -> String {
        let mut out = String::new();
        for (key, _, bare) in KEYS {
            if *key == "app.settings" {
                continue;
            }
            let v = shown(key, self.raw.get(*key).map(String::as_str).unwrap_or(""));
            if *bare && !v.is_empty() {
                let _ = writeln!(out, "{key} = {v}");
            } else {
                let _ = writeln!(out, "{key} = \"{}\"", escape(&v));
            }
        }
        for (k, v) in &self.app_settings {
            let v = shown(&format!("app.settings.{k}"), v);
            let _ = writeln!(out, "app.settings.{k} = \"{}\"", escape(&v));
        }
        out
    }
}

/// db-replica-uris: connection strings separated by commas. A comma starts a new one only
/// when what follows it begins like one (`postgres://`, `postgresql://` or a libpq
/// `key=`), since a URI may list several hosts with commas (`postgresql://h1,h2/db`).
fn split_connection_strings(v: &str) -> Vec<String> {
    let starts_one = |rest: &str| {
        let rest = rest.trim_start();
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        rest.starts_with("postgres://")
            || rest.starts_with("postgresql://")
            || (key_len > 0 && rest[key_len..].trim_start().starts_with('='))
    };
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, piece) in v.split(',').enumerate() {
        if i > 0 && starts_one(piece) {
            out.push(std::mem::take(&mut current));
        } else if i > 0 {
            current.push(',');
        }
        current.push_str(piece);
    }
    out.push(current);
    // Stray commas at either end (a trailing one, an empty entry) belong to no string.
    let stray = |c: char| c == ',' || c.is_whitespace();
    out.into_iter()
        .map(|s| s.trim_matches(stray).to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `@path` (PostgREST's form for db-uri): the file's contents, trimmed.
fn read_at_file(key: &str, value: String) -> Result<String, String> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| text.trim().to_string())
            .map_err(|e| format!("cannot read {key} from {path}: {e}")),
        None => Ok(value),
    }
}

const REDACTED: &str = "<redacted>";

/// Whether a setting's name says it holds a secret.
fn secret_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "password", "passwd", "token", "key"]
        .iter()
        .any(|w| key.contains(w))
}

/// A connection string with its password masked: `postgres://user:pw@host` (and a
/// `password=` query parameter) or libpq's `key=value` form.
pub fn redact_uri_password(uri: &str) -> String {
    if let Some((scheme, rest)) = uri.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
                None => format!("{user_info}@{host}"),
            },
            None => authority.to_string(),
        };
        let tail = redact_password_pairs(tail, '&');
        return format!("{scheme}://{authority}{tail}");
    }
    redact_password_pairs(uri, ' ')
}

/// `password=...` among `separator`-separated `key=value` pairs, masked (a quoted libpq
/// value may hold the separator).
fn redact_password_pairs(text: &str, separator: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_password_key(rest) {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let (key, value) = after.split_once('=').unwrap_or((after, ""));
        out.push_str(key.trim_end());
        out.push('=');
        let value = value.trim_start();
        let end = match value.strip_prefix('\'') {
            Some(quoted) => quoted_end(quoted).map_or(value.len(), |e| e + 2),
            None => value.find(separator).unwrap_or(value.len()),
        };
        out.push_str(REDACTED);
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Where the next `password` key (followed by `=`) starts.
fn find_password_key(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password") {
        let at = from + i;
        let starts_key = at == 0 || matches!(lower.as_bytes()[at - 1], b' ' | b'?' | b'&');
        let after = lower[at + "password".len()..].trim_start();
        if starts_key && after.starts_with('=') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The index of the closing quote of a libpq quoted value (`\'` escapes).
fn quoted_end(quoted: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in quoted.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '\'' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "$$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_the_closest_known_one() {
        let env = vec![("PGRST_JWT_SECRT".to_string(), "x".to_string())];
        let c = Config::load(Some("db-shemas = \"api\"\nzzz-qqq = 1\n"), env.clone()).unwrap();
        assert_eq!(c.db_schemas, vec!["public"], "the typo is not taken");
        assert_eq!(
            c.unknown_key_warnings(),
            vec![
                "unknown key \"db-shemas\" in the configuration file: ignored (did you mean db-schemas?)",
                "unknown key \"zzz-qqq\" in the configuration file: ignored",
                "unknown environment variable PGRST_JWT_SECRT: ignored (did you mean jwt-secret?)",
            ]
        );
        let strict = Config::load(Some("config-strict = true\ndb-shemas = \"api\"\n"), env);
        assert!(strict.unwrap_err().contains("did you mean db-schemas?"));
    }

    #[test]
    fn replica_uris_split_at_commas_that_start_a_connection_string() {
        let split = |v| super::split_connection_strings(v);
        assert_eq!(
            split("postgresql://a:5433/db, postgres://h1,h2:5434/db?sslmode=require"),
            [
                "postgresql://a:5433/db",
                "postgres://h1,h2:5434/db?sslmode=require"
            ]
        );
        assert_eq!(
            split("host=a port=1,host = b port=2"),
            ["host=a port=1", "host = b port=2"]
        );
        assert!(split("").is_empty());
        assert!(split(" , ").is_empty());
        let c = Config::load(None, env(&[("PGRST_DB_POOL", "7")])).unwrap();
        assert_eq!((c.db_replica_pool, c.db_replica_max_lag), (7, 5000));
        assert!(c.db_replica_uris.is_empty());
        let c = Config::load(
            None,
            env(&[
                (
                    "PGRST_DB_REPLICA_URIS",
                    "postgres://u:pw@r1/db,postgres://u:pw@r2/db",
                ),
                ("PGRST_DB_REPLICA_POOL", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(c.db_replica_uris.len(), 2);
        assert_eq!(c.db_replica_pool, 3);
        assert!(!c.dump_redacted().contains("pw"));
        assert!(Config::load(None, env(&[("PGRST_DB_REPLICA_POOL", "0")])).is_err());
    }

    #[test]
    fn connection_string_passwords_are_masked() {
        for (uri, masked) in [
            (
                "postgres://auth:s3cr%40t@db.example:5432/app?sslmode=require",
                "postgres://auth:<redacted>@db.example:5432/app?sslmode=require",
            ),
            ("postgresql://auth@db/app", "postgresql://auth@db/app"),
            (
                "postgres:///app?user=a&password=hunter2&host=/tmp",
                "postgres:///app?user=a&password=<redacted>&host=/tmp",
            ),
            (
                "host=db user=auth password='a b\\' c' dbname=app",
                "host=db user=auth password=<redacted> dbname=app",
            ),
            ("password = x dbname=app", "password=<redacted> dbname=app"),
        ] {
            assert_eq!(redact_uri_password(uri), masked, "{uri}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_postgrests() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.db_schemas, vec!["public"]);
        assert_eq!(c.db_pool, 10);
        assert_eq!(c.server_port, 3000);
        assert_eq!(c.db_extra_search_path, vec!["public"]);
        assert_eq!(c.log_level, LogLevel::Error);
        assert!(c.db_uri.is_none());
    }

    #[test]
    fn file_then_env_precedence() {
        let file = "# comment\ndb-uri = \"postgres://a\"\ndb-schemas = \"api, v2\"\nserver-port = 4000 # trailing\ndb-max-rows = 100\nmax-rows = 5\napp.settings.jwt = \"x$$y\"\n";
        let c = Config::load(Some(file), env(&[("PGRST_SERVER_PORT", "5000")])).unwrap();
        assert_eq!(c.db_uri.as_deref(), Some("postgres://a"));
        assert_eq!(c.db_schemas, vec!["api", "v2"]);
        assert_eq!(c.server_port, 5000);
        assert_eq!(c.db_max_rows, Some(5));
        assert_eq!(c.app_settings, vec![("jwt".to_string(), "x$y".to_string())]);
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(Config::load(None, env(&[("PGRST_SERVER_PORT", "abc")])).is_err());
        assert!(Config::load(None, env(&[("PGRST_LOG_LEVEL", "loud")])).is_err());
        assert!(Config::load(None, env(&[("PGRST_DB_SCHEMAS", "pg_catalog")])).is_err());
        assert!(Config::load(Some("db-uri = \"x"), env(&[])).is_err());
        let proxy = env(&[("PGRST_OPENAPI_SERVER_PROXY_URI", "ftp://x/y")]);
        assert!(Config::load(None, proxy).is_err());
        let proxy = env(&[(
            "PGRST_OPENAPI_SERVER_PROXY_URI",
            "https://api.example.com/v1",
        )]);
        assert!(Config::load(None, proxy).is_ok());
        let same_port = env(&[("PGRST_ADMIN_SERVER_PORT", "3000")]);
        assert!(Config::load(None, same_port).is_err());
        let mode = env(&[("PGRST_ADMIN_SERVER_UNIX_SOCKET_MODE", "999")]);
        assert!(Config::load(None, mode).is_err());
        let c = Config::load(None, env(&[("PGRST_DB_POOL_TIMEOUT", "7")])).unwrap();
        assert_eq!((c.db_pool_max_idletime, c.db_pool_max_lifetime), (7, 1800));
    }

    #[test]
    fn dump_round_trips() {
        let c = Config::load(None, env(&[("PGRST_DB_ANON_ROLE", "we\"b$")])).unwrap();
        let again = Config::load(Some(&c.dump()), env(&[])).unwrap();
        assert_eq!(again.db_anon_role.as_deref(), Some("we\"b$"));
        assert_eq!(again.dump(), c.dump());
    }
}
