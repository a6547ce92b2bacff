//! TLS to PostgreSQL with libpq's sslmode semantics, against a real server with
//! `ssl = on` and certificates made here with openssl. Its own test binary: it turns the
//! cluster's TLS on and makes pg_hba.conf accept TCP connections only over TLS.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::Server;

/// Certificates: a CA, a server certificate it signed for `localhost` only, a client
/// certificate for `cert_user`, and an unrelated CA.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs() -> Certs {
    let dir = std::env::temp_dir().join(format!("pgrest-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let self_signed = |key: &str, crt: &str, cn: &str| {
        openssl(
            &dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", key,
                "-out", crt, "-subj", cn,
            ],
        )
    };
    self_signed("ca.key", "ca.crt", "/CN=pgrest test CA");
    self_signed("other.key", "other.crt", "/CN=another CA");
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    // Extensions make version 3 certificates, which rustls requires of client ones too.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let signed = |name: &str, cn: &str| {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            &dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", cn,
            ],
        );
        let ext = format!("{name}.ext");
        let x509 = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-days",
            "2",
            "-CAcreateserial",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ];
        openssl(&dir, &x509);
    };
    signed("server", "/CN=localhost");
    signed("client", "/CN=cert_user");
    Certs { dir }
}

/// The harness cluster with TLS on: TCP connections other than the superuser's must use
/// TLS; `cert_user` logs in with a client certificate, `scram_user` with a password.
fn tls_cluster() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let h = common::harness();
        let certs = make_certs();
        let read = |name: &str| std::fs::read(certs.dir.join(name)).unwrap();
        let c = &h.cluster;
        c.write_data_file("server.crt", &read("server.crt"), 0o644, false)
            .unwrap();
        c.write_data_file("server.key", &read("server.key"), 0o600, false)
            .unwrap();
        c.write_data_file("root.crt", &read("ca.crt"), 0o644, false)
            .unwrap();
        c.write_data_file(
            "postgresql.conf",
            b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
            0o600,
            true,
        )
        .unwrap();
        c.write_data_file(
            "pg_hba.conf",
            b"local all all trust\n\
              host all postgres 127.0.0.1/32 trust\n\
              hostssl all cert_user 127.0.0.1/32 cert\n\
              hostssl all scram_user 127.0.0.1/32 scram-sha-256\n\
              hostssl all all 127.0.0.1/32 trust\n\
              hostssl all all ::1/128 trust\n",
            0o600,
            false,
        )
        .unwrap();
        common::sql_exec(
            "CREATE ROLE cert_user LOGIN NOINHERIT;
             CREATE ROLE scram_user LOGIN NOINHERIT PASSWORD 'scram-secret';
             GRANT test_anon TO cert_user, scram_user;
             -- SECURITY DEFINER: pg_stat_ssl shows a backend's TLS state only to its session
             -- user (the authenticator) and superusers, not to the request's role.
             CREATE FUNCTION test_api.ssl_in_use() RETURNS boolean LANGUAGE sql STABLE
               SECURITY DEFINER
               AS $$ SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid() $$;
             GRANT EXECUTE ON FUNCTION test_api.ssl_in_use() TO test_anon;",
        );
        c.pause().unwrap();
        c.resume().unwrap();
        certs
    })
}

fn uri(user: &str, host: &str, params: &str) -> String {
    let port = common::harness()
        .cluster
        .uri("postgres")
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_string();
    format!("postgresql://{user}@{host}:{port}/{}?{params}", common::DB)
}

fn pgrest_at(db_uri: &str) -> Command {
    let mut cmd = common::pgrest_command();
    cmd.env("PGRST_DB_URI", db_uri);
    cmd
}

/// Starts pgrest on `db_uri` and asks the database whether the session uses TLS.
fn ssl_in_use(db_uri: &str) -> bool {
    let (server, mut child) = common::spawn_server(pgrest_at(db_uri));
    let r = server.get("/rpc/ssl_in_use");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 200, "{db_uri}: {}", r.body);
    r.json()
        .as_bool()
        .unwrap_or_else(|| panic!("{db_uri}: not a boolean: {}", r.body))
}

/// Runs pgrest on `db_uri`, which must fail to start; returns its one error line.
fn start_fails(db_uri: &str) -> String {
    let port = pgrest::pgcluster::free_port().unwrap();
    let mut child = pgrest_at(db_uri)
        .env("PGRST_SERVER_HOST", "127.0.0.1")
        .env("PGRST_SERVER_PORT", port.to_string())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::reap_with_tests(&child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{db_uri}: pgrest started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{db_uri}: {stderr}");
    common::failure_line(&stderr)
}

#[test]
fn require_allow_and_prefer_encrypt_and_disable_is_refused() {
    tls_cluster();
    assert!(ssl_in_use(&uri(
        "authenticator",
        "127.0.0.1",
        "sslmode=require"
    )));
    assert!(ssl_in_use(&uri(
        "authenticator",
        "127.0.0.1",
        "sslmode=prefer"
    )));
    // libpq's default is prefer.
    assert!(ssl_in_use(&uri("authenticator", "127.0.0.1", "")));
    // allow tries without TLS, is refused by pg_hba.conf, and tries again with it.
    assert!(ssl_in_use(&uri(
        "authenticator",
        "127.0.0.1",
        "sslmode=allow"
    )));
    let refused = start_fails(&uri("authenticator", "127.0.0.1", "sslmode=disable"));
    assert!(refused.contains("no encryption"), "{refused}");
    assert_eq!(refused.lines().count(), 1, "{refused}");
}

#[test]
fn verify_full_checks_the_chain_and_the_host() {
    let certs = tls_cluster();
    let ca = certs.path("ca.crt");
    assert!(ssl_in_use(&uri(
        "authenticator",
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}")
    )));
    let wrong_host = start_fails(&uri(
        "authenticator",
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(
        wrong_host.contains("does not name the host"),
        "{wrong_host}"
    );
    assert_eq!(wrong_host.lines().count(), 1, "{wrong_host}");
    // verify-ca takes any host the trusted certificate is for.
    assert!(ssl_in_use(&uri(
        "authenticator",
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}")
    )));
    let untrusted = start_fails(&uri(
        "authenticator",
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            certs.path("other.crt")
        ),
    ));
    assert!(untrusted.contains("not trusted"), "{untrusted}");
    // require with a root certificate verifies the chain too, as libpq does.
    let untrusted = start_fails(&uri(
        "authenticator",
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={}", certs.path("other.crt")),
    ));
    assert!(untrusted.contains("not trusted"), "{untrusted}");
    let missing = start_fails(&uri("authenticator", "localhost", "sslmode=verify-full"));
    assert!(missing.contains("sslrootcert"), "{missing}");
}

#[test]
fn a_client_certificate_logs_in_where_pg_hba_says_cert() {
    let certs = tls_cluster();
    let with_cert = format!(
        "sslmode=require&sslcert={}&sslkey={}",
        certs.path("client.crt"),
        certs.path("client.key")
    );
    assert!(ssl_in_use(&uri("cert_user", "127.0.0.1", &with_cert)));
    let without = start_fails(&uri("cert_user", "127.0.0.1", "sslmode=require"));
    assert!(without.contains("certificate"), "{without}");
}

#[test]
fn scram_channel_binding_over_tls() {
    tls_cluster();
    let params = "sslmode=require&channel_binding=require";
    let db_uri =
        uri("scram_user", "127.0.0.1", params).replace("scram_user@", "scram_user:scram-secret@");
    assert!(ssl_in_use(&db_uri));
    let wrong = db_uri.replace("scram-secret", "wrong");
    let refused = start_fails(&wrong);
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );
}

#[test]
fn prefer_falls_back_to_a_server_without_tls_and_require_does_not() {
    tls_cluster();
    let plain = pgrest::pgcluster::TempCluster::start("plain").unwrap();
    plain.stop_when_process_exits(std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(plain.execute(
        "postgres",
        "CREATE FUNCTION public.ssl_in_use() RETURNS boolean LANGUAGE sql STABLE
           AS $$ SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) $$;",
    ))
    .unwrap();
    let at = |params: &str| format!("{}?{params}", plain.uri("postgres"));
    let mut cmd = pgrest_at(&at("sslmode=prefer"));
    cmd.env("PGRST_DB_SCHEMAS", "public")
        .env("PGRST_DB_ANON_ROLE", "postgres");
    let (server, mut child): (Server, _) = common::spawn_server(cmd);
    let r = server.get("/rpc/ssl_in_use");
    let _ = child.kill();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!(false));
    let refused = start_fails(&at("sslmode=require"));
    assert!(refused.contains("does not support TLS"), "{refused}");
    plain.stop();
}
