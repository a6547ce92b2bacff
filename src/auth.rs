//! JWT authentication: verify the token, check its time and audience claims, find the
//! role claim. The database role switch itself happens in the request transaction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sieve_cache::SieveCache;

use crate::error::ApiError;
use crate::ops::metrics::ShardedCounter;

/// Clock skew PostgREST allows on exp, nbf and iat.
const SKEW_SECONDS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Family {
    fn of(alg: Algorithm) -> Family {
        use Algorithm::*;
        match alg {
            HS256 | HS384 | HS512 => Family::Hmac,
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
            ES256 | ES384 => Family::Ec,
            EdDSA => Family::Ed,
        }
    }
}

struct Key {
    kid: Option<String>,
    family: Family,
    key: DecodingKey,
}

/// One step of a role-claim path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

pub struct Authenticator {
    /// This authenticator's number (see `LAST_TOKEN`).
    id: u64,
    keys: Vec<Key>,
    role_path: RolePath,
    audience: Option<String>,
    cache: Mutex<Cache>,
}

/// Verified claims by token, bounded, with PostgREST's SIEVE eviction (a token used again
/// since the hand last passed it survives a sweep). Time claims are still checked on
/// every use. `None` when jwt-cache-max-entries is 0.
///
/// foldhash, seeded per cache, instead of SipHash: a lookup hashes the whole token (about
/// 600 instructions of a read with a token under SipHash, callgrind); only tokens whose
/// signature verified are ever inserted, so clients cannot choose colliding keys.
struct Cache(Option<SieveCache<String, Arc<Claims>, foldhash::fast::RandomState>>);

/// A token's verified claims, and their JSON text for request.jwt.claims, written once per
/// token rather than per request (about 2,300 instructions of a by-pk read with a token,
/// callgrind).
#[derive(Clone)]
struct Claims {
    value: Value,
    text: String,
}

impl Claims {
    fn new(value: Value) -> Claims {
        let text = value.to_string();
        Claims { value, text }
    }
}

/// The JWT cache's lookups, hits and evictions since the process started (across config
/// reloads, which rebuild the cache), for /metrics. Sharded by thread: counted on every
/// request with a token.
pub struct CacheCounters {
    pub requests: ShardedCounter,
    pub hits: ShardedCounter,
    pub evictions: ShardedCounter,
}

pub static JWT_CACHE: CacheCounters = CacheCounters {
    requests: ShardedCounter::new(),
    hits: ShardedCounter::new(),
    evictions: ShardedCounter::new(),
};

impl Cache {
    fn get(&mut self, token: &str) -> Option<Arc<Claims>> {
        let cache = self.0.as_mut()?;
        JWT_CACHE.requests.add(1);
        let hit = cache.get(token).cloned();
        if hit.is_some() {
            JWT_CACHE.hits.add(1);
        }
        hit
    }

    fn put(&mut self, token: &str, claims: Arc<Claims>) {
        if let Some(cache) = self.0.as_mut() {
            if cache.len() >= cache.capacity() && !cache.contains_key(token) {
                JWT_CACHE.evictions.add(1);
            }
            cache.insert(token.to_string(), claims);
        }
    }
}

/// The token last verified on this thread, by which authenticator: most clients send
/// one token over and over (an API key, a session's token), and looking it up here
/// takes no lock and touches no memory another core writes. Its claims are this
/// thread's own copy, so their reference count is not shared either. Only a token the
/// shared cache holds is kept here, and a reload's new authenticator (another `id`)
/// does not see it.
struct LastToken {
    authenticator: u64,
    token: String,
    claims: Arc<Claims>,
}

thread_local! {
    static LAST_TOKEN: std::cell::RefCell<Option<LastToken>> =
        const { std::cell::RefCell::new(None) };
}

/// Authenticators are numbered as they are made, so a thread's last token is never
/// taken for one verified by another authenticator (with other keys).
static AUTHENTICATORS: AtomicU64 = AtomicU64::new(0);

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub role: String,
    pub anonymous: bool,
    /// The claims as JSON text, for request.jwt.claims.
    pub claims: String,
}

/// Unsecured (`alg: none`) and encrypted (`enc`) tokens are refused before any key is
/// tried, with PostgREST's messages.
fn refuse_unsupported_header(token: &str) -> Result<(), ApiError> {
    let header_json = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| invalid("JWT cryptographic operation failed"))?;
    if header_json.get("alg").and_then(Value::as_str) == Some("none") {
        return Err(ApiError::InvalidJwt {
            message: "Wrong or unsupported encoding algorithm".into(),
            details: Some("JWT is unsecured but expected 'alg' was not 'none'".into()),
        });
    }
    if header_json.get("enc").is_some() {
        return Err(invalid("Unsupported token type"));
    }
    Ok(())
}

fn no_suitable_key() -> ApiError {
    ApiError::InvalidJwt {
        message: "No suitable key or wrong key type".into(),
        details: Some("None of the keys was able to decode the JWT".into()),
    }
}

/// The claims of the first candidate key the signature verifies with. Time claims and
/// the audience are checked afterwards, with PostgREST's messages.
fn decode_with_any(
    token: &str,
    alg: jsonwebtoken::Algorithm,
    candidates: &[&Key],
) -> Result<Value, ApiError> {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut malformed = false;
    for key in candidates {
        match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
            Ok(data) if data.claims.is_object() => return Ok(data.claims),
            Ok(_) => return Err(bad_claims("Parsing claims failed")),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind::*;
                match e.kind() {
                    InvalidSignature => {}
                    Json(_) => return Err(bad_claims("Parsing claims failed")),
                    _ => malformed = true,
                }
            }
        }
    }
    if malformed {
        Err(invalid("JWT cryptographic operation failed"))
    } else {
        Err(no_suitable_key())
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidJwt {
        message: message.into(),
        details: None,
    }
}

fn bad_claims(message: impl Into<String>) -> ApiError {
    ApiError::InvalidJwtClaims(message.into())
}

/// Where the role claim is: an RFC 9535 JSONPath (`$.a.b[0]`, `$.roles[?@ == 'x']`,
/// `$.roles[?search(@, '^app_')]`, `[-1]`, slices), the first value it selects; or
/// PostgREST's older `.a."b"[0]` form.
enum RolePath {
    JsonPath(serde_json_path::JsonPath),
    Legacy(Vec<Step>),
}

impl RolePath {
    fn parse(path: &str) -> Result<RolePath, String> {
        let trimmed = path.trim();
        if trimmed.starts_with('$') {
            if let Ok(p) = serde_json_path::JsonPath::parse(trimmed) {
                return Ok(RolePath::JsonPath(p));
            }
        }
        parse_role_path(path).map(RolePath::Legacy)
    }

    fn find<'v>(&self, claims: &'v Value) -> Option<&'v Value> {
        match self {
            RolePath::JsonPath(p) => p.query(claims).first(),
            RolePath::Legacy(steps) => steps.iter().try_fold(claims, |at, step| match step {
                Step::Key(k) => at.get(k),
                Step::Index(i) => at.get(*i),
            }),
        }
    }
}

/// Parses `jwt-role-claim-key`: `$.a.b[0]`, `$['a.b']`, and the older `.a."b"[0]`.
fn parse_role_path(path: &str) -> Result<Vec<Step>, String> {
    let err = || format!("invalid jwt-role-claim-key: {path:?}");
    let mut rest = path.trim().strip_prefix('$').unwrap_or(path.trim());
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let (name, after) = if let Some(q) = r.strip_prefix('"') {
                let end = q.find('"').ok_or_else(err)?;
                (q[..end].to_string(), &q[end + 1..])
            } else {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                (r[..end].to_string(), &r[end..])
            };
            if name.is_empty() {
                return Err(err());
            }
            steps.push(Step::Key(name));
            rest = after;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(err)?;
            let inner = r[..end].trim();
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|i| i.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|i| i.strip_suffix('"')));
            steps.push(match quoted {
                Some(key) => Step::Key(key.to_string()),
                None => Step::Index(inner.parse().map_err(|_| err())?),
            });
            rest = &r[end + 1..];
        } else {
            return Err(err());
        }
    }
    Ok(steps)
}

fn decode_secret(secret: &str, is_base64: bool) -> Result<Vec<u8>, String> {
    if !is_base64 {
        return Ok(secret.as_bytes().to_vec());
    }
    let cleaned: String = secret.chars().filter(|c| !c.is_whitespace()).collect();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    engines
        .iter()
        .find_map(|e| {
            e.decode(cleaned.trim_end_matches('='))
                .ok()
                .or_else(|| e.decode(&cleaned).ok())
        })
        .or_else(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(cleaned.trim_end_matches('='))
                .ok()
        })
        .ok_or_else(|| "jwt-secret is not valid base64".to_string())
}

/// `pgrest token`: a JWT for `role`, valid `lifetime` seconds, signed HS256 with the
/// configured HMAC jwt-secret (plain, base64 or `@file`; JWK secrets cannot sign here).
pub fn sign_token(
    secret: &str,
    is_base64: bool,
    role: &str,
    lifetime: u64,
) -> Result<String, String> {
    let secret = match secret.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read jwt-secret file {file}: {e}"))?,
        None => secret.to_string(),
    };
    if secret.trim_start().starts_with('{') {
        return Err("jwt-secret is a JWK or JWKS: sign tokens with its private key instead".into());
    }
    let key = jsonwebtoken::EncodingKey::from_secret(&decode_secret(&secret, is_base64)?);
    let exp = now().saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX));
    let claims = serde_json::json!({"role": role, "exp": exp});
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| format!("cannot sign: {e}"))
}

/// `30s`, `15m`, `1h`, `7d` or plain seconds.
pub fn parse_lifetime(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid lifetime {text:?}: expected e.g. 30s, 15m, 1h, 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "invalid lifetime {text:?}: expected e.g. 30s, 15m, 1h, 7d"
            ))
        }
    };
    Ok(n.saturating_mul(factor))
}

fn jwk_key(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Key, String> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    let family = match &jwk.algorithm {
        P::RSA(_) => Family::Rsa,
        P::EllipticCurve(_) => Family::Ec,
        P::OctetKey(_) => Family::Hmac,
        P::OctetKeyPair(_) => Family::Ed,
    };
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        family,
        key: DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid JWK in jwt-secret: {e}"))?,
    })
}

impl Authenticator {
    /// From the jwt-* settings; `None` when no secret is configured.
    /// The verifier the configuration describes; `None` without a jwt-secret.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Authenticator>, String> {
        Self::new(
            config.jwt_secret.as_deref(),
            config.jwt_secret_is_base64,
            &config.jwt_role_claim_key,
            config.jwt_aud.as_deref(),
            config.jwt_cache_max_entries,
        )
    }

    pub fn new(
        secret: Option<&str>,
        is_base64: bool,
        role_claim_key: &str,
        audience: Option<&str>,
        cache_entries: usize,
    ) -> Result<Option<Authenticator>, String> {
        let role_path = RolePath::parse(role_claim_key)?;
        let Some(secret) = secret else {
            return Ok(None);
        };
        let secret = match secret.strip_prefix('@') {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read jwt-secret file {file}: {e}"))?;
                text.strip_suffix('\n').unwrap_or(&text).to_string()
            }
            None => secret.to_string(),
        };
        let keys = if secret.trim_start().starts_with('{') {
            let value: Value = serde_json::from_str(&secret)
                .map_err(|e| format!("jwt-secret is not valid JSON: {e}"))?;
            if value.get("keys").is_some() {
                let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(value)
                    .map_err(|e| format!("invalid JWKS in jwt-secret: {e}"))?;
                set.keys
                    .iter()
                    .map(jwk_key)
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(value)
                    .map_err(|e| format!("invalid JWK in jwt-secret: {e}"))?;
                vec![jwk_key(&jwk)?]
            }
        } else {
            if !is_base64 && secret.chars().count() < 32 {
                return Err("jwt-secret must be at least 32 characters long".into());
            }
            vec![Key {
                kid: None,
                family: Family::Hmac,
                key: DecodingKey::from_secret(&decode_secret(&secret, is_base64)?),
            }]
        };
        Ok(Some(Authenticator {
            id: AUTHENTICATORS.fetch_add(1, Ordering::Relaxed),
            keys,
            role_path,
            audience: audience.map(str::to_string),
            cache: Mutex::new(Cache(
                SieveCache::new_with_hasher(cache_entries, Default::default()).ok(),
            )),
        }))
    }

    /// Signature-verified claims of `token` (from the cache when seen before).
    fn verified_claims(&self, token: &str) -> Result<Arc<Claims>, ApiError> {
        if let Some(claims) = self.last_token(token) {
            return Ok(claims);
        }
        if let Some(claims) = self.cache.lock().ok().and_then(|mut c| c.get(token)) {
            self.keep_as_last(token, &claims);
            return Ok(claims);
        }
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(invalid(format!("Expected 3 parts in JWT; got {parts}")));
        }
        refuse_unsupported_header(token)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("JWT cryptographic operation failed"))?;
        let candidates = self.candidate_keys(&header);
        if candidates.is_empty() {
            return Err(no_suitable_key());
        }
        let claims = Arc::new(Claims::new(decode_with_any(
            token,
            header.alg,
            &candidates,
        )?));
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(token, Arc::clone(&claims));
        }
        Ok(claims)
    }

    /// This thread's last token's claims, when `token` is it (counted as a cache hit).
    fn last_token(&self, token: &str) -> Option<Arc<Claims>> {
        let claims = LAST_TOKEN.with_borrow(|last| {
            last.as_ref()
                .filter(|l| l.authenticator == self.id && l.token == token)
                .map(|l| Arc::clone(&l.claims))
        })?;
        JWT_CACHE.requests.add(1);
        JWT_CACHE.hits.add(1);
        Some(claims)
    }

    /// Keeps a token found in the shared cache as this thread's last, with claims of its
    /// own.
    fn keep_as_last(&self, token: &str, claims: &Claims) {
        LAST_TOKEN.with_borrow_mut(|last| {
            *last = Some(LastToken {
                authenticator: self.id,
                token: token.to_string(),
                claims: Arc::new(claims.clone()),
            });
        });
    }

    /// The keys that may have signed a token with this header: of its algorithm's
    /// family, and with its `kid` when it names one (a single key without a kid serves
    /// any).
    fn candidate_keys(&self, header: &jsonwebtoken::Header) -> Vec<&Key> {
        let family = Family::of(header.alg);
        self.keys
            .iter()
            .filter(|k| k.family == family)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => self.keys.len() == 1,
                (None, _) => true,
            })
            .collect()
    }

    fn check_claims(&self, claims: &Value, now: i64) -> Result<(), ApiError> {
        let number = |name: &str| -> Result<Option<i64>, ApiError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64().map(|f| f as i64)),
                Some(_) => Err(bad_claims(format!(
                    "The JWT '{name}' claim must be a number"
                ))),
            }
        };
        if number("exp")?.is_some_and(|exp| now - SKEW_SECONDS > exp) {
            return Err(bad_claims("JWT expired"));
        }
        if number("nbf")?.is_some_and(|nbf| now + SKEW_SECONDS < nbf) {
            return Err(bad_claims("JWT not yet valid"));
        }
        if number("iat")?.is_some_and(|iat| now + SKEW_SECONDS < iat) {
            return Err(bad_claims("JWT issued at future"));
        }
        let aud_ok = match claims.get("aud") {
            None | Some(Value::Null) => true,
            Some(Value::String(a)) => self.audience.as_ref().is_none_or(|want| a == want),
            Some(Value::Array(items)) => {
                if items.iter().any(|i| !i.is_string()) {
                    return Err(bad_claims(
                        "The JWT 'aud' claim must be a string or an array of strings",
                    ));
                }
                items.is_empty()
                    || self
                        .audience
                        .as_ref()
                        .is_none_or(|want| items.iter().any(|i| i.as_str() == Some(want)))
            }
            Some(_) => {
                return Err(bad_claims(
                    "The JWT 'aud' claim must be a string or an array of strings",
                ))
            }
        };
        if !aud_ok {
            return Err(bad_claims("JWT not in audience"));
        }
        Ok(())
    }

    fn role_of(&self, claims: &Value) -> Option<String> {
        let at = self.role_path.find(claims)?;
        match at {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Refuses a role claim a request must never run as. `set_config('role', 'none', true)`
/// is RESET ROLE, and so is switching to the authenticator (the session user): either
/// would run the request with the authenticator's own rights. An empty name or one with
/// NUL cannot name a role at all.
fn usable_role(role: String, authenticator: &str) -> Result<String, ApiError> {
    if role.is_empty() || role == "none" || role == authenticator || role.contains('\0') {
        return Err(ApiError::ForbiddenRole(role));
    }
    Ok(role)
}

/// `{"role":"<role>"}`, the claims of a request without a token, written in one buffer
/// rather than through a JSON map (3 allocations fewer on every anonymous request).
fn role_claims(role: &str) -> String {
    let mut out = Vec::with_capacity(role.len() + 12);
    out.extend_from_slice(b"{\"role\":");
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, role);
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// The identity of a request from its Authorization header value (if any).
/// `authenticator` is the session user pgrest connects as.
pub fn identify(
    auth: Option<&Authenticator>,
    authorization: Option<&str>,
    anon_role: Option<&str>,
    authenticator: &str,
) -> Result<Identity, ApiError> {
    let anonymous = |claims: serde_json::Map<String, Value>| -> Result<Identity, ApiError> {
        let role = anon_role.ok_or(ApiError::NoAnonRole)?.to_string();
        let claims = if claims.is_empty() {
            role_claims(&role)
        } else {
            let mut claims = claims;
            claims
                .entry("role")
                .or_insert_with(|| Value::String(role.clone()));
            Value::Object(claims).to_string()
        };
        Ok(Identity {
            role,
            anonymous: true,
            claims,
        })
    };
    let token = authorization.and_then(|h| {
        let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let Some(token) = token else {
        return anonymous(serde_json::Map::new());
    };
    let auth = auth.ok_or(ApiError::NoJwtSecret)?;
    if token.is_empty() {
        return Err(invalid("Empty JWT is sent in Authorization header"));
    }
    let verified = auth.verified_claims(token)?;
    let claims = &verified.value;
    auth.check_claims(claims, now())?;
    match auth.role_of(claims) {
        Some(role) => Ok(Identity {
            role: usable_role(role, authenticator)?,
            anonymous: false,
            claims: verified.text.clone(),
        }),
        None => anonymous(claims.as_object().cloned().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_claims_are_the_role_as_json() {
        let who = identify(None, None, Some("we\"b"), "auth").unwrap();
        assert_eq!(who.claims, r#"{"role":"we\"b"}"#);
        let parsed: Value = serde_json::from_str(&who.claims).unwrap();
        assert_eq!(parsed, serde_json::json!({"role": "we\"b"}));
    }

    #[test]
    fn signed_tokens_verify() {
        let secret = "a-secret-of-at-least-thirty-two-characters";
        let token = sign_token(secret, false, "web_user", 3600).unwrap();
        let auth = Authenticator::new(Some(secret), false, "$.role", None, 0)
            .unwrap()
            .unwrap();
        let who = identify(Some(&auth), Some(&format!("Bearer {token}")), None, "auth").unwrap();
        assert_eq!(who.role, "web_user");
        assert_eq!(parse_lifetime("1h"), Ok(3600));
        assert_eq!(parse_lifetime("90"), Ok(90));
        assert_eq!(parse_lifetime("2d"), Ok(172_800));
        assert!(parse_lifetime("soon").is_err());
        assert!(sign_token("{\"kty\":\"oct\"}", false, "r", 1).is_err());
    }

    #[test]
    fn role_claims_by_jsonpath() {
        let claims = serde_json::json!({
            "roles": ["other", "app_admin", "app_user"],
            "realm": {"roles": ["x", "y"]},
            "a.b": "dotted"
        });
        let find = |path: &str| {
            RolePath::parse(path)
                .unwrap()
                .find(&claims)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        assert_eq!(
            find("$.roles[?(@ == 'app_user')]").as_deref(),
            Some("app_user")
        );
        assert_eq!(
            find("$.roles[?search(@, '^app_')]").as_deref(),
            Some("app_admin")
        );
        assert_eq!(find("$.roles[-1]").as_deref(), Some("app_user"));
        assert_eq!(find("$.roles[1:]").as_deref(), Some("app_admin"));
        assert_eq!(find("$.realm.roles[*]").as_deref(), Some("x"));
        assert_eq!(find("$['a.b']").as_deref(), Some("dotted"));
        assert_eq!(find(".\"a.b\"").as_deref(), Some("dotted"));
        assert_eq!(find("$.missing"), None);
    }

    #[test]
    fn role_paths() {
        assert_eq!(
            parse_role_path("$.role").unwrap(),
            vec![Step::Key("role".into())]
        );
        assert_eq!(
            parse_role_path(".role").unwrap(),
            vec![Step::Key("role".into())]
        );
        assert_eq!(
            parse_role_path("$.realm_access.roles[0]").unwrap(),
            vec![
                Step::Key("realm_access".into()),
                Step::Key("roles".into()),
                Step::Index(0)
            ]
        );
        assert_eq!(
            parse_role_path("$['https://x.io/role']").unwrap(),
            vec![Step::Key("https://x.io/role".into())]
        );
        assert_eq!(
            parse_role_path(".\"a.b\"").unwrap(),
            vec![Step::Key("a.b".into())]
        );
        assert!(parse_role_path("$.").is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Authenticator::new(Some("short"), false, "$.role", None, 10).is_err());
        assert!(Authenticator::new(
            Some("reallyreallyreallyreallyverysafe"),
            false,
            "$.role",
            None,
            10
        )
        .unwrap()
        .is_some());
    }
}
