//! Connections to PostgreSQL with libpq's TLS semantics: the `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` of the connection string (or PGSSLMODE, PGSSLROOTCERT,
//! PGSSLCERT, PGSSLKEY), over rustls. tokio-postgres understands only `disable`, `prefer`
//! and `require` and has no certificate options, so those keys are taken out of the
//! string here and turned into a rustls configuration; the rest goes to tokio-postgres.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::connect::{self, ConnectError};
use super::merge::Batch;

/// libpq's sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Without TLS first; with TLS when the server refuses that.
    Allow,
    /// With TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS; the certificate is checked only when a root certificate is available.
    Require,
    /// TLS with a certificate signed by a trusted root, whatever host it names.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(format!("invalid sslmode {other:?}: expected disable, allow, prefer, require, verify-ca or verify-full")),
        })
    }

    /// What tokio-postgres is told: whether TLS is tried, and whether it is required.
    fn wire(self) -> WireMode {
        match self {
            SslMode::Disable | SslMode::Allow => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        }
    }
}

/// The TLS keys of a connection string, with libpq's environment and default files
/// filling in what it leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsOptions {
    pub mode: SslMode,
    /// A PEM file of trusted roots, or `system` for the operating system's store.
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// The keys this module takes out of a connection string.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits a connection string (URI or libpq's `key=value` form) into what tokio-postgres
/// parses and the TLS options. `env` reads libpq's environment (PGSSLMODE...).
pub fn split_connection_string(
    uri: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(String, TlsOptions), String> {
    let (rest, pairs) = if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
        split_uri(uri)
    } else {
        split_key_values(uri)?
    };
    let given = |key: &str, env_name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| env(env_name))
            .filter(|v| !v.is_empty())
    };
    let root_cert = given("sslrootcert", "PGSSLROOTCERT");
    let mode = match given("sslmode", "PGSSLMODE") {
        Some(m) => SslMode::parse(&m)?,
        // libpq: sslrootcert=system makes verify-full the default.
        None if root_cert.as_deref() == Some("system") => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if root_cert.as_deref() == Some("system") && mode != SslMode::VerifyFull {
        return Err("sslrootcert=system needs sslmode=verify-full".into());
    }
    let home = env("HOME").map(PathBuf::from);
    let default_file = |name: &str| {
        home.as_ref()
            .map(|h| h.join(".postgresql").join(name))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
    };
    let options = TlsOptions {
        mode,
        root_cert: root_cert.or_else(|| default_file("root.crt")),
        cert: given("sslcert", "PGSSLCERT").or_else(|| default_file("postgresql.crt")),
        key: given("sslkey", "PGSSLKEY").or_else(|| default_file("postgresql.key")),
    };
    Ok((rest, options))
}

/// `postgres://...?a=b&sslmode=x`: the URI without the TLS parameters, and their values.
fn split_uri(uri: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = uri.split_once('?') else {
        return (uri.to_string(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        if TLS_KEYS.contains(&key) {
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned();
            taken.push((key.to_string(), value));
        } else {
            kept.push(piece);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

/// `host=h sslmode='x'`: the string without the TLS pairs, and their values. Values may
/// be single-quoted, with `\'` and `\\` escapes, as libpq reads them.
fn split_key_values(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut kept = String::new();
    let mut taken = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (pair, key, value, after) = next_pair(rest)?;
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push_str(pair);
            kept.push(' ');
        }
        rest = after.trim_start();
    }
    Ok((kept.trim_end().to_string(), taken))
}

/// The first `key = value` pair of `text`: its text, key, unquoted value and what follows.
fn next_pair(text: &str) -> Result<(&str, String, String, &str), String> {
    let eq = text
        .find('=')
        .ok_or_else(|| format!("missing \"=\" after {text:?}"))?;
    let key = text[..eq].trim().to_string();
    let after_eq = &text[eq + 1..];
    let value_start = after_eq.len() - after_eq.trim_start().len();
    let value_text = after_eq.trim_start();
    let mut value = String::new();
    let end = if let Some(quoted) = value_text.strip_prefix('\'') {
        let mut chars = quoted.char_indices();
        let mut close = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '\'' => {
                    close = Some(i + 2);
                    break;
                }
                c => value.push(c),
            }
        }
        close.ok_or("unterminated quoted value")?
    } else {
        let end = value_text
            .find(char::is_whitespace)
            .unwrap_or(value_text.len());
        value.push_str(&value_text[..end]);
        end
    };
    let pair_end = eq + 1 + value_start + end;
    Ok((&text[..pair_end], key, value, &text[pair_end..]))
}

/// What the connection string leaves unset, from libpq's environment (PGHOST, PGPORT,
/// PGUSER, PGPASSWORD, PGDATABASE, PGAPPNAME, PGCONNECT_TIMEOUT) and then libpq's
/// defaults (the local socket directory, the OS user), as PostgREST gets through libpq.
/// tokio-postgres reads no environment of its own.
pub fn fill_from_libpq_env(
    config: &mut tokio_postgres::Config,
    env: impl Fn(&str) -> Option<String>,
) {
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() {
        match env("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|h| {
                config.host(h.trim());
            }),
            None => {
                config.host(default_socket_dir());
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = env("PGPORT").and_then(|p| p.trim().parse().ok()) {
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        if let Some(user) = env("PGUSER")
            .or_else(|| env("USER"))
            .or_else(|| env("LOGNAME"))
        {
            config.user(user);
        }
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(db) = env("PGDATABASE") {
            config.dbname(db);
        }
    }
    if config.get_application_name().is_none() {
        if let Some(name) = env("PGAPPNAME") {
            config.application_name(name);
        }
    }
    if config.get_connect_timeout().is_none() {
        if let Some(secs) = env("PGCONNECT_TIMEOUT").and_then(|s| s.trim().parse().ok()) {
            config.connect_timeout(std::time::Duration::from_secs(secs));
        }
    }
}

/// libpq's socket directory as Debian builds it, or upstream's /tmp.
fn default_socket_dir() -> &'static str {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql"
    } else {
        "/tmp"
    }
}

/// Whether libpq's environment names a database to connect to: then pgrest serves it
/// rather than starting the demo when db-uri is unset.
pub fn libpq_env_names_a_database(env: impl Fn(&str) -> Option<String>) -> bool {
    ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER"]
        .iter()
        .any(|k| env(k).is_some_and(|v| !v.is_empty()))
}

/// tokio-postgres' connection over rustls (the stream type the crate does not name).
pub type TlsStream = <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream;
pub type Connection = tokio_postgres::Connection<tokio_postgres::Socket, TlsStream>;

/// Opens connections to PostgreSQL as the connection string says, TLS included. Every
/// connection pgrest makes (pool, schema cache and config loads, the listener, cancel
/// requests) comes from here.
#[derive(Clone)]
pub struct Connector {
    pub config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mode: SslMode,
}

impl Connector {
    /// From db-uri, with libpq's environment.
    pub fn from_uri(uri: &str) -> Result<Connector, String> {
        let (rest, options) = split_connection_string(uri, |k| std::env::var(k).ok())
            .map_err(|e| format!("invalid db-uri: {e}"))?;
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e| format!("invalid db-uri: {e}"))?;
        fill_from_libpq_env(&mut config, |k| std::env::var(k).ok());
        config.ssl_mode(options.mode.wire());
        let (client_config, _) = client_config(&options)?;
        Ok(Connector {
            config,
            tls: MakeRustlsConnect::new(client_config),
            mode: options.mode,
        })
    }

    /// The same connector with other connection settings (application name, target
    /// session attributes).
    pub fn with_config(&self, change: impl FnOnce(&mut tokio_postgres::Config)) -> Connector {
        let mut c = self.clone();
        change(&mut c.config);
        c
    }

    pub async fn connect(
        &self,
    ) -> Result<(tokio_postgres::Client, Connection), tokio_postgres::Error> {
        match self.config.connect(self.tls.clone()).await {
            Err(e) if self.mode == SslMode::Allow && refused_without_tls(&e) => {
                let mut with_tls = self.config.clone();
                with_tls.ssl_mode(WireMode::Require);
                with_tls.connect(self.tls.clone()).await
            }
            other => other,
        }
    }

    /// A pool connection: its stream runs through [`super::merge::Merge`], so a request's
    /// statements can share one Sync. Its connection task is spawned.
    pub async fn connect_pooled(
        &self,
    ) -> Result<(tokio_postgres::Client, connect::Peer, Batch), ConnectError> {
        match connect::open(&self.config, &self.tls).await {
            Err(ConnectError::Postgres(e))
                if self.mode == SslMode::Allow && refused_without_tls(&e) =>
            {
                let mut with_tls = self.config.clone();
                with_tls.ssl_mode(WireMode::Require);
                connect::open(&with_tls, &self.tls).await
            }
            other => other,
        }
    }

    /// Sends a cancel request for what a pool connection runs (over TLS too where needed).
    pub async fn cancel(&self, client: &tokio_postgres::Client, peer: &connect::Peer) {
        connect::cancel(client, peer, &self.config, &self.tls).await;
    }
}

/// Whether the server refused a connection because it was not encrypted (pg_hba.conf
/// has only `hostssl` for it): `allow` then tries again with TLS.
fn refused_without_tls(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code().code() == "28000" && db.message().contains("no encryption"))
}

/// What a connection checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndHost,
}

/// The rustls client configuration for `options`: the roots, what is verified, the
/// client certificate.
fn client_config(options: &TlsOptions) -> Result<(ClientConfig, Check), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match (&options.root_cert, options.mode) {
        (Some(path), SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => {
            Some(load_roots(path)?)
        }
        (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(
                "sslmode verify-ca and verify-full need sslrootcert (a PEM file of trusted \
                 roots, or system), or ~/.postgresql/root.crt"
                    .into(),
            )
        }
        _ => None,
    };
    let check = match (options.mode, &roots) {
        (SslMode::VerifyFull, _) => Check::ChainAndHost,
        // libpq: require with a root certificate verifies as verify-ca does.
        (SslMode::VerifyCa | SslMode::Require, Some(_)) => Check::Chain,
        _ => Check::Nothing,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(AnyCertificate(provider.clone())),
        Some(roots) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("invalid sslrootcert: {e}"))?;
            match check {
                Check::ChainAndHost => webpki,
                _ => Arc::new(AnyHost(webpki)),
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) if options.mode != SslMode::Disable => {
            let certs = read_certs(cert, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read sslkey {key}: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("unusable sslcert/sslkey: {e}"))?
        }
        (Some(_), None) | (None, Some(_)) if options.mode != SslMode::Disable => {
            return Err("sslcert and sslkey go together".into())
        }
        _ => builder.with_no_client_auth(),
    };
    Ok((config, check))
}

fn read_certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {path}: {e}"))?
        .collect();
    let certs = certs.map_err(|e| format!("cannot read {what} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} {path} holds no certificate"));
    }
    Ok(certs)
}

/// The trusted roots: a PEM file, or the operating system's store for `system`.
fn load_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err("sslrootcert=system: no certificates in the system store".into());
        }
        return Ok(roots);
    }
    if !Path::new(path).exists() {
        return Err(format!("sslrootcert {path} does not exist"));
    }
    for cert in read_certs(path, "sslrootcert")? {
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    Ok(roots)
}

/// prefer, allow and require without a root certificate: the connection is encrypted
/// but the server's certificate is not checked (libpq's behaviour). The handshake's own
/// signatures are still verified, so the session is with the certificate's key holder.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// verify-ca: the chain must lead to a trusted root; the name in it is not compared with
/// the host.
#[derive(Debug)]
struct AnyHost(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHost {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls error behind a connection error, if any.
fn rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // An io::Error's source() skips the error it wraps; get_ref() gives it.
        let wrapped = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if let Some(r) = wrapped.and_then(|w| w.downcast_ref::<rustls::Error>()) {
            return Some(r);
        }
        source = s.source();
    }
    None
}

/// A TLS failure in words a user can act on (untrusted certificate, host name
/// mismatch, a server without TLS); `None` when the error is not about TLS.
pub fn describe_tls(e: &tokio_postgres::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let Some(tls) = rustls_error(e) else {
        let mut texts = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source());
        return texts
            .any(|e| e.to_string().contains("server does not support TLS"))
            .then(|| "the server does not support TLS, which sslmode requires".to_string());
    };
    let what = match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the server's certificate is not trusted: no root in sslrootcert signed it"
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "the server's certificate does not name the host connected to (sslmode=verify-full)",
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired"
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet"
        }
        _ => "the TLS handshake failed",
    };
    Some(format!("{what} ({tls})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(uri: &str, env: &[(&str, &str)]) -> Result<(String, TlsOptions), String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        split_connection_string(uri, |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn tls_keys_leave_the_uri() {
        let (rest, o) = split(
            "postgres://u:p@db:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
            &[],
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db:5432/app?application_name=x&connect_timeout=3"
        );
        assert_eq!(o.mode, SslMode::VerifyFull);
        assert_eq!(o.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, o) = split("postgresql://db/app?sslmode=require", &[]).unwrap();
        assert_eq!(
            (rest.as_str(), o.mode),
            ("postgresql://db/app", SslMode::Require)
        );
        let (_, o) = split("postgresql://db/app", &[]).unwrap();
        assert_eq!(o.mode, SslMode::Prefer, "libpq's default");
    }

    #[test]
    fn tls_keys_leave_key_value_strings() {
        let (rest, o) = split(
            "host=db sslmode = 'verify-ca' user=u password='a b\\' c' sslcert=/c.pem sslkey=/k.pem",
            &[],
        )
        .unwrap();
        assert_eq!(rest, "host=db user=u password='a b\\' c'");
        assert_eq!(o.mode, SslMode::VerifyCa);
        assert_eq!(o.cert.as_deref(), Some("/c.pem"));
        assert_eq!(o.key.as_deref(), Some("/k.pem"));
        assert!(split("host=db sslmode='x", &[]).is_err());
        assert!(split("host=db sslmode=sometimes", &[]).is_err());
    }

    #[test]
    fn libpq_environment_fills_in() {
        let (_, o) = split(
            "postgres://db/app",
            &[("PGSSLMODE", "require"), ("PGSSLROOTCERT", "/r.pem")],
        )
        .unwrap();
        assert_eq!(o.mode, SslMode::Require);
        assert_eq!(o.root_cert.as_deref(), Some("/r.pem"));
        let (_, o) = split(
            "postgres://db/app?sslmode=disable",
            &[("PGSSLMODE", "require")],
        )
        .unwrap();
        assert_eq!(o.mode, SslMode::Disable, "the string wins");
        let (_, o) = split("postgres://db/app?sslrootcert=system", &[]).unwrap();
        assert_eq!(o.mode, SslMode::VerifyFull);
        assert!(split("postgres://db/app?sslrootcert=system&sslmode=require", &[]).is_err());
    }

    #[test]
    fn libpq_environment_fills_what_the_uri_leaves_unset() {
        let env = |k: &str| match k {
            "PGHOST" => Some("db1,/run/pg".to_string()),
            "PGPORT" => Some("6543".to_string()),
            "PGUSER" => Some("envuser".to_string()),
            "PGDATABASE" => Some("envdb".to_string()),
            _ => None,
        };
        let mut c: tokio_postgres::Config = "postgresql://".parse().unwrap();
        fill_from_libpq_env(&mut c, env);
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_ports(), &[6543]);
        assert_eq!(c.get_user(), Some("envuser"));
        assert_eq!(c.get_dbname(), Some("envdb"));
        let mut c: tokio_postgres::Config = "postgresql://u@h:1/d".parse().unwrap();
        fill_from_libpq_env(&mut c, env);
        assert_eq!(
            (c.get_user(), c.get_dbname(), c.get_ports()),
            (Some("u"), Some("d"), &[1u16][..])
        );
        assert!(libpq_env_names_a_database(env));
        assert!(!libpq_env_names_a_database(|_| None));
    }

    #[test]
    fn verify_modes_need_roots() {
        let options = TlsOptions {
            mode: SslMode::VerifyFull,
            root_cert: None,
            cert: None,
            key: None,
        };
        assert!(client_config(&options).is_err());
        let options = TlsOptions {
            mode: SslMode::Require,
            ..options
        };
        assert_eq!(client_config(&options).unwrap().1, Check::Nothing);
    }
}
