//! JWT authentication end to end: tokens signed here, roles and row-level security in the
//! database.

mod common;

use common::{assert_json, server_with, sql_rows, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use common::{hs256, JWT_SECRET as SECRET};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn server() -> Server {
    server_with(&[("PGRST_JWT_SECRET", SECRET)])
}

fn get_as(s: &Server, path: &str, token: &str) -> common::Reply {
    s.get_with(path, &[("Authorization", &format!("Bearer {token}"))])
}

#[test]
fn a_valid_token_switches_role_and_exposes_its_claims() {
    let s = server();
    let token = hs256(json!({"role": "test_user", "sub": "alice", "exp": now() + 60}));
    let r = get_as(&s, "/request_info?select=role,claims", &token);
    assert_eq!(r.status, 200, "{}", r.body);
    let row = &r.json()[0];
    assert_eq!(row["role"], "test_user");
    let claims: Value = serde_json::from_str(row["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims["sub"], "alice");
    // Settings attached to the role apply to its requests.
    let r = get_as(&s, "/request_info?select=statement_timeout", &token);
    assert_json(&r, 200, json!([{"statement_timeout": "1234ms"}]));
    // Scheme names are case-insensitive.
    let r = s.get_with(
        "/request_info?select=role",
        &[("Authorization", &format!("bearer {token}"))],
    );
    assert_json(&r, 200, json!([{"role": "test_user"}]));
}

#[test]
fn row_level_security_sees_only_the_callers_rows() {
    let s = server();
    let alice = hs256(json!({"role": "test_user", "sub": "alice"}));
    let r = get_as(&s, "/notes_rls?select=owner,body&order=id", &alice);
    assert_json(
        &r,
        200,
        json!([{"owner": "alice", "body": "a1"}, {"owner": "alice", "body": "a2"}]),
    );
    let bob = hs256(json!({"role": "test_user", "sub": "bob"}));
    let r = s.send(
        "POST",
        "/notes_rls?select=owner,body",
        &[
            ("Authorization", &format!("Bearer {bob}")),
            ("Content-Type", "application/json"),
            ("Prefer", "return=representation"),
        ],
        Some(r#"{"body":"b2"}"#),
    );
    assert_json(&r, 201, json!([{"owner": "bob", "body": "b2"}]));
    let r = s.send(
        "POST",
        "/notes_rls",
        &[
            ("Authorization", &format!("Bearer {bob}")),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"owner":"alice","body":"forged"}"#),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["code"], "42501");
    assert_eq!(
        sql_rows("SELECT body FROM test_api.notes_rls WHERE body = 'forged'"),
        json!([])
    );
}

#[track_caller]
fn rejected(r: &common::Reply, code: &str, message: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["code"], code);
    assert_eq!(r.json()["message"], message);
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer error=\"invalid_token\", error_description=\"{message}\"").as_str())
    );
}

#[test]
fn time_claims_are_checked_with_a_small_skew() {
    let s = server();
    let t = now();
    rejected(
        &get_as(
            &s,
            "/kinds",
            &hs256(json!({"role": "test_user", "exp": t - 100})),
        ),
        "PGRST303",
        "JWT expired",
    );
    rejected(
        &get_as(
            &s,
            "/kinds",
            &hs256(json!({"role": "test_user", "nbf": t + 100})),
        ),
        "PGRST303",
        "JWT not yet valid",
    );
    rejected(
        &get_as(
            &s,
            "/kinds",
            &hs256(json!({"role": "test_user", "iat": t + 100})),
        ),
        "PGRST303",
        "JWT issued at future",
    );
    rejected(
        &get_as(
            &s,
            "/kinds",
            &hs256(json!({"role": "test_user", "exp": "soon"})),
        ),
        "PGRST303",
        "The JWT 'exp' claim must be a number",
    );
    let r = get_as(
        &s,
        "/request_info?select=role",
        &hs256(json!({"role": "test_user", "exp": t - 10})),
    );
    assert_eq!(r.status, 200, "within the 30 s allowance: {}", r.body);
}

#[test]
fn bad_tokens_are_pgrst301() {
    let s = server();
    rejected(
        &get_as(
            &s,
            "/kinds",
            &hs256(json!({"role": "test_user"}))
                .replace('.', "x")
                .replacen('x', ".", 1),
        ),
        "PGRST301",
        "Expected 3 parts in JWT; got 2",
    );
    let r = s.get_with("/kinds", &[("Authorization", "Bearer ")]);
    rejected(&r, "PGRST301", "Empty JWT is sent in Authorization header");
    let other = encode(
        &Header::new(Algorithm::HS256),
        &json!({"role": "test_user"}),
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough-too"),
    )
    .unwrap();
    let r = get_as(&s, "/kinds", &other);
    rejected(&r, "PGRST301", "No suitable key or wrong key type");
    assert_eq!(
        r.json()["details"],
        "None of the keys was able to decode the JWT"
    );
    // alg none: an unsigned token.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"role": "test_user"}))
    );
    let r = get_as(&s, "/kinds", &unsigned);
    rejected(&r, "PGRST301", "Wrong or unsupported encoding algorithm");
    // An RS256 token against an HMAC secret: the key does not fit the algorithm.
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("fixtures/test_rsa_private.pem")).unwrap();
    let r = get_as(
        &s,
        "/kinds",
        &encode(
            &Header::new(Algorithm::RS256),
            &json!({"role": "test_user"}),
            &rsa,
        )
        .unwrap(),
    );
    rejected(&r, "PGRST301", "No suitable key or wrong key type");
}

#[test]
fn rsa_keys_from_a_jwk_set_chosen_by_kid() {
    let jwk: Value =
        serde_json::from_str(include_str!("fixtures/test_rsa_public.jwk.json")).unwrap();
    let jwks = json!({"keys": [jwk]}).to_string();
    let s = server_with(&[("PGRST_JWT_SECRET", &jwks)]);
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("fixtures/test_rsa_private.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key".into());
    let token = encode(&header, &json!({"role": "test_user"}), &rsa).unwrap();
    assert_json(
        &get_as(&s, "/request_info?select=role", &token),
        200,
        json!([{"role": "test_user"}]),
    );
    header.kid = Some("unknown".into());
    let token = encode(&header, &json!({"role": "test_user"}), &rsa).unwrap();
    rejected(
        &get_as(&s, "/kinds", &token),
        "PGRST301",
        "No suitable key or wrong key type",
    );
    // An HMAC token cannot use an RSA key.
    rejected(
        &get_as(&s, "/kinds", &hs256(json!({"role": "test_user"}))),
        "PGRST301",
        "No suitable key or wrong key type",
    );
}

#[test]
fn audience_and_role_claim_paths() {
    let s = server_with(&[
        ("PGRST_JWT_SECRET", SECRET),
        ("PGRST_JWT_AUD", "api"),
        ("PGRST_JWT_ROLE_CLAIM_KEY", "$.app.roles[1]"),
    ]);
    let ok = hs256(json!({"aud": ["web", "api"], "app": {"roles": ["x", "test_user"]}}));
    assert_json(
        &get_as(&s, "/request_info?select=role", &ok),
        200,
        json!([{"role": "test_user"}]),
    );
    let wrong = hs256(json!({"aud": "web", "app": {"roles": ["x", "test_user"]}}));
    rejected(
        &get_as(&s, "/kinds", &wrong),
        "PGRST303",
        "JWT not in audience",
    );
    // No role claim: the anonymous role, with the role put into the claims.
    let anon = hs256(json!({"sub": "someone"}));
    let r = get_as(&s, "/request_info?select=role,claims", &anon);
    assert_eq!(r.json()[0]["role"], "test_anon");
    let claims: Value = serde_json::from_str(r.json()[0]["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims, json!({"sub": "someone", "role": "test_anon"}));
}

#[test]
fn roles_and_privileges() {
    let s = server();
    let r = get_as(&s, "/kinds", &hs256(json!({"role": "nobody_at_all"})));
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["code"], "22023");
    // An authenticated role without the privilege gets 403, not 401.
    let r = get_as(&s, "/private_notes", &hs256(json!({"role": "test_user"})));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["code"], "42501");
    assert_eq!(r.header("www-authenticate"), None);
    // A token without a configured secret.
    let plain = common::server();
    let r = get_as(&plain, "/kinds", &hs256(json!({"role": "test_user"})));
    assert_json(
        &r,
        500,
        json!({"code": "PGRST300", "details": null, "hint": null, "message": "Server lacks JWT secret"}),
    );
}

#[test]
fn ps256_es256_and_eddsa_keys() {
    let key = |file: &str| -> Value { serde_json::from_str(file).unwrap() };
    let rsa: Value = key(include_str!("fixtures/test_rsa_public.jwk.json"));
    let ec: Value = key(include_str!("fixtures/test_ec_public.jwk.json"));
    let ed: Value = key(include_str!("fixtures/test_ed25519_public.jwk.json"));
    let jwks = json!({"keys": [rsa, ec, ed]}).to_string();
    let s = server_with(&[("PGRST_JWT_SECRET", &jwks)]);
    let claims = json!({"role": "test_user"});
    let signed = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        encode(&header, &claims, key).unwrap()
    };
    let rsa_key =
        EncodingKey::from_rsa_pem(include_bytes!("fixtures/test_rsa_private.pem")).unwrap();
    let ec_key = EncodingKey::from_ec_pem(include_bytes!("fixtures/test_ec_private.pem")).unwrap();
    let ed_key =
        EncodingKey::from_ed_pem(include_bytes!("fixtures/test_ed25519_private.pem")).unwrap();
    for (alg, kid, key) in [
        (Algorithm::PS256, "test-key", &rsa_key),
        (Algorithm::PS512, "test-key", &rsa_key),
        (Algorithm::ES256, "ec-key", &ec_key),
        (Algorithm::EdDSA, "ed-key", &ed_key),
    ] {
        assert_json(
            &get_as(&s, "/request_info?select=role", &signed(alg, kid, key)),
            200,
            json!([{"role": "test_user"}]),
        );
    }
    // A signature by another key of the right type is refused.
    let other = signed(Algorithm::ES256, "ec-key", &ec_key);
    let mut parts: Vec<String> = other.split('.').map(str::to_string).collect();
    let forged = signed(Algorithm::EdDSA, "ed-key", &ed_key);
    parts[2] = forged.rsplit('.').next().unwrap().to_string();
    let r = get_as(&s, "/kinds", &parts.join("."));
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST301");
    // An EC key does not take an EdDSA token, whatever the kid says.
    let wrong = signed(Algorithm::EdDSA, "ec-key", &ed_key);
    let r = get_as(&s, "/kinds", &wrong);
    assert_eq!(r.status, 401, "{}", r.body);
}
