//! Test harness: one throwaway PostgreSQL cluster per test run, the fixture loaded into a
//! database, and real pgrest server processes (one per distinct configuration) spoken to
//! over HTTP on loopback.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pgrest::pgcluster::{free_port, TempCluster};

pub struct Harness {
    pub cluster: TempCluster,
    servers: Mutex<HashMap<Vec<(String, String)>, Server>>,
    /// Server processes, kept (not waited on) so they live as long as the tests.
    children: Mutex<Vec<Child>>,
}

#[derive(Clone)]
pub struct Server {
    pub base: String,
    pub pid: u32,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

pub const DB: &str = "fixture";

/// The HMAC secret the JWT tests configure (PGRST_JWT_SECRET).
pub const JWT_SECRET: &str = "a-secret-of-at-least-thirty-two-characters";

/// A token with `claims`, signed HS256 with [`JWT_SECRET`].
pub fn hs256(claims: serde_json::Value) -> String {
    hs256_with(claims, JWT_SECRET)
}

/// A token with `claims`, signed HS256 with `secret`.
pub fn hs256_with(claims: serde_json::Value, secret: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a token")
}

/// pgrest started on the configuration file `file` alone (no environment but PATH),
/// answering on `port` once this returns. The test kills the child when done; it is
/// killed anyway once the test process exits.
pub fn server_from_file(file: &std::path::Path, port: u16) -> (Child, Server) {
    let child = Command::new(env!("CARGO_BIN_EXE_pgrest"))
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .spawn()
        .expect("start pgrest");
    reap_with_tests(&child);
    let s = Server {
        base: format!("http://127.0.0.1:{port}"),
        pid: child.id(),
    };
    wait_for("the server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (child, s)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let cluster = TempCluster::start("tests").expect("start PostgreSQL");
        cluster.stop_when_process_exits(std::process::id());
        let schema = include_str!("../fixtures/schema.sql");
        let rt = runtime();
        rt.block_on(cluster.execute("postgres", &format!("CREATE DATABASE {DB}")))
            .expect("create database");
        rt.block_on(cluster.execute(DB, schema))
            .expect("load fixture");
        Harness {
            cluster,
            servers: Mutex::new(HashMap::new()),
            children: Mutex::new(Vec::new()),
        }
    })
}

/// Kills `child` once this test process has exited.
pub fn reap_with_tests(child: &Child) {
    pgrest::pgcluster::run_after_exit(
        std::process::id(),
        &format!("kill {} 2>/dev/null", child.id()),
    );
}

pub const BASE_ENV: &[(&str, &str)] = &[
    ("PGRST_DB_SCHEMAS", "test_api"),
    ("PGRST_DB_ANON_ROLE", "test_anon"),
    ("PGRST_APP_SETTINGS_greeting", "hello"),
];

/// The pgrest binary with a clean environment: PATH, the test database as the
/// authenticator and BASE_ENV; stdout discarded. Callers add or override PGRST_* variables.
pub fn pgrest_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrest"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "PGRST_DB_URI",
            harness().cluster.uri_as("authenticator", DB),
        )
        .envs(BASE_ENV.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// pgrest configured for the demo schema, loaded into a database of its own (named
/// `database`) in the tests' cluster; callers add variables and spawn it.
#[allow(dead_code)]
pub fn demo_command(database: &str) -> Command {
    let h = harness();
    let rt = runtime();
    rt.block_on(
        h.cluster
            .execute("postgres", &format!("CREATE DATABASE {database}")),
    )
    .unwrap();
    rt.block_on(h.cluster.execute(database, pgrest::DEMO_SQL))
        .unwrap();
    let mut cmd = pgrest_command();
    cmd.env("PGRST_DB_URI", h.cluster.uri(database))
        .env("PGRST_DB_SCHEMAS", "api")
        .env("PGRST_DB_ANON_ROLE", "web_anon")
        .env("PGRST_DB_CHANNEL_ENABLED", "false");
    cmd
}

/// The headless browser on PATH.
#[allow(dead_code)]
pub fn chromium() -> String {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|b| b.to_string())
        .expect("no chromium on PATH (Debian: apt-get install chromium)")
}

/// Polls `ok` until it holds, failing the test after 15 s (reloads and the like).
pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server with the base configuration plus `extra` PGRST_* variables.
pub fn server_with(extra: &[(&str, &str)]) -> Server {
    let h = harness();
    // The extra settings override the base ones (a map keeps the last value per key).
    let env: Vec<(String, String)> = BASE_ENV
        .iter()
        .chain(extra.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let mut servers = h.servers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = servers.get(&env) {
        return s.clone();
    }
    let mut cmd = pgrest_command();
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let (server, child) = spawn_server(cmd);
    h.children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child);
    servers.insert(env, server.clone());
    server
}

/// Starts `cmd` (a `pgrest_command()` with its settings) on a free port of 127.0.0.1,
/// killed when the tests exit, and waits until it accepts connections.
pub fn spawn_server(mut cmd: Command) -> (Server, Child) {
    let port = free_port().expect("free port");
    let child = cmd
        .env("PGRST_SERVER_HOST", "127.0.0.1")
        .env("PGRST_SERVER_PORT", port.to_string())
        .spawn()
        .expect("spawn pgrest");
    reap_with_tests(&child);
    (serving(&child, port), child)
}

/// The server `child` runs on 127.0.0.1:`port`, once that port accepts connections.
pub fn serving(child: &Child, port: u16) -> Server {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "pgrest did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        base: format!("http://127.0.0.1:{port}"),
        pid: child.id(),
    }
}

/// The local addresses of the TCP sockets listening on `port`, as /proc/net/tcp prints
/// them (0100007F = 127.0.0.1, 00000000 = every interface).
pub fn listening_addresses(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, local_port) = fields.get(1)?.split_once(':')?;
            let listening = fields.get(3) == Some(&"0A");
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| addr.to_string())
        })
        .collect()
}

/// A start-up failure's one line (`pgrest: ...`), the last of `stderr`; the lines before
/// it may only be the start-up progress lines (INFO/WARN) every start prints.
#[track_caller]
pub fn failure_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let (last, before) = lines.split_last().expect("no output");
    assert!(last.starts_with("pgrest: "), "{stderr}");
    assert!(
        before
            .iter()
            .all(|l| l.contains(" INFO ") || l.contains(" WARN ")),
        "more than one error line:\n{stderr}"
    );
    last.to_string()
}

pub fn server() -> Server {
    server_with(&[])
}

impl Server {
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(method, path, headers, None)
    }

    /// A request with a body (sent as is, with the headers given).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut req = ureq::request(method, &format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let sent = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        let resp = match sent {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .flat_map(|n| {
                resp.all(&n)
                    .into_iter()
                    .map(|v| (n.clone(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let body = resp.into_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers)
    }
}

/// Runs SQL statements directly in the fixture database (as the superuser).
pub fn sql_exec(sql: &str) {
    let h = harness();
    runtime()
        .block_on(h.cluster.execute(DB, sql))
        .expect("sql_exec");
}

/// Rows of a query run directly in the fixture database (as the superuser), as JSON.
pub fn sql_rows(query: &str) -> serde_json::Value {
    let h = harness();
    let rt = runtime();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&h.cluster.uri(DB), tokio_postgres::NoTls)
            .await
            .expect("connect");
        let task = tokio::spawn(conn);
        let row = client
            .query_one(
                &format!("SELECT coalesce(json_agg(t), '[]')::text FROM ({query}) t"),
                &[],
            )
            .await
            .expect("query");
        let text: String = row.get(0);
        drop(client);
        let _ = task.await;
        serde_json::from_str(&text).expect("json")
    })
}

/// Asserts status and JSON body.
#[track_caller]
pub fn assert_json(reply: &Reply, status: u16, expected: serde_json::Value) {
    assert_eq!(reply.status, status, "status; body: {}", reply.body);
    assert_eq!(reply.json(), expected, "body");
}

/// Ids of the rows in a JSON array body.
#[track_caller]
pub fn ids(reply: &Reply) -> Vec<i64> {
    assert_eq!(reply.status, 200, "status; body: {}", reply.body);
    reply
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {}", reply.body))
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}

/// A Python virtual environment with the OpenAPI tools the tests run (a real validator
/// and schemathesis), created once under the target directory; returns its bin/.
pub fn python_tools() -> std::path::PathBuf {
    static BIN: OnceLock<std::path::PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pytools");
        let bin = dir.join("bin");
        let ready = ["openapi-spec-validator", "schemathesis"]
            .iter()
            .all(|t| bin.join(t).exists());
        if !ready {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "python3 -m venv failed (Debian: apt-get install python3-venv)"
            );
            let ok = Command::new(bin.join("pip"))
                .args([
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "openapi-spec-validator==0.9.0",
                    "schemathesis==4.32.5",
                ])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "pip install of openapi-spec-validator and schemathesis failed"
            );
        }
        bin
    })
    .clone()
}
