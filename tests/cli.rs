//! The command line: flags, configuration loading and start-up failures.

mod common;

use common::failure_line;
use std::process::{Command, Output};

fn pgrest(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrest"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pgrest")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_and_version() {
    let o = pgrest(&["--help"], &[]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("Usage: pgrest [OPTIONS] [CONFIG_FILE]"));
    let o = pgrest(&["--version"], &[]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        format!("pgrest {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn dump_config_merges_file_and_environment() {
    let dir = std::env::temp_dir().join(format!("pgrest-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pgrest.conf");
    std::fs::write(
        &file,
        "# a comment\ndb-uri = \"postgres://file/db\"\ndb-schemas = \"api\"\ndb-pool = 3\nserver-port = 4000\n",
    )
    .unwrap();
    let o = pgrest(
        &[file.to_str().unwrap(), "--dump-config"],
        &[
            ("PGRST_SERVER_PORT", "5000"),
            ("PGRST_APP_SETTINGS_name", "x"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "db-uri = \"postgres://file/db\"",
        "db-schemas = \"api\"",
        "db-pool = 3",
        "server-port = 5000",
        "db-extra-search-path = \"public\"",
        "jwt-role-claim-key = \"$$.role\"",
        "app.settings.name = \"x\"",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_configuration_is_one_line_and_a_failure() {
    let o = pgrest(&["--dump-config"], &[("PGRST_DB_POOL", "many")]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "pgrest: invalid configuration: invalid number for db-pool: \"many\"\n"
    );
    let o = pgrest(
        &[],
        &[
            ("PGRST_LOG_LEVEL", "loud"),
            ("PGRST_DB_URI", "postgres://x"),
        ],
    );
    assert!(!o.status.success());
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let o = pgrest(&["/nonexistent/pgrest.conf"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("pgrest: cannot read /nonexistent/pgrest.conf"));
    let o = pgrest(&["--bogus"], &[]);
    assert!(!o.status.success());
}

#[test]
fn unreachable_database_is_one_line_and_a_failure_without_automatic_recovery() {
    // With recovery on (the default) pgrest waits for the database instead: see
    // tests/startup_outage.rs.
    let port = pgrest::pgcluster::free_port().unwrap();
    let uri = format!("postgresql://nobody@127.0.0.1:{port}/db");
    let o = pgrest(
        &[],
        &[
            ("PGRST_DB_URI", &uri),
            ("PGRST_DB_POOL_AUTOMATIC_RECOVERY", "false"),
        ],
    );
    assert!(!o.status.success());
    let err = failure_line(&stderr(&o));
    assert!(
        err.starts_with(&format!(
            "pgrest: cannot connect to the database at 127.0.0.1:{port}: "
        )),
        "{err}"
    );
    let o = pgrest(&[], &[("PGRST_DB_URI", "not a uri")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("pgrest: invalid db-uri"),
        "{}",
        stderr(&o)
    );
}

/// README's first command: with no db-uri, pgrest starts a throwaway PostgreSQL with the
/// demo schema, prints the URL and three curl examples that work, and on SIGTERM stops
/// cleanly (exit 0, no error logged) and removes the database.
#[test]
fn the_demo_answers_its_examples_and_cleans_up() {
    use std::io::{BufRead, Read};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgrest"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGRST_SERVER_HOST", "127.0.0.1")
        .env("PGRST_SERVER_PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pgrest");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let last = line.starts_with("Ctrl-C");
        lines.push(line);
        if last {
            break;
        }
    }
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("serving http://127.0.0.1:{port} (database ")),
        "{text}"
    );
    let database_port: u16 = text
        .split("(database ")
        .nth(1)
        .and_then(|rest| rest.split(':').nth(2))
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no database address in {text}"));
    // Each example: `curl 'URL'` and optionally `-H 'Name: value'`.
    let examples: Vec<&String> = lines.iter().filter(|l| l.starts_with("  curl ")).collect();
    assert_eq!(examples.len(), 3, "{text}");
    for example in examples {
        let quoted: Vec<&str> = example.split('\'').skip(1).step_by(2).collect();
        let mut request = ureq::get(quoted[0]);
        if let Some((name, value)) = quoted.get(1).and_then(|h| h.split_once(": ")) {
            request = request.set(name, value);
        }
        let response = request.call().unwrap_or_else(|e| panic!("{example}: {e}"));
        assert_eq!(response.status(), 200, "{example}");
        let body = response.into_string().unwrap();
        assert!(body.len() > 10, "{example}: {body}");
    }
    // README's RPC examples run on the demo as written.
    let base = format!("http://127.0.0.1:{port}");
    let sum = ureq::get(&format!("{base}/rpc/add_them?a=1&b=2"))
        .call()
        .unwrap();
    assert_eq!(sum.into_string().unwrap(), "3");
    let books = ureq::get(&format!(
        "{base}/rpc/books_since?y=1900&select=title,authors(name)&order=published.desc"
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    let books: serde_json::Value = serde_json::from_str(&books).unwrap();
    assert!(
        books
            .as_array()
            .is_some_and(|b| !b.is_empty() && b[0]["authors"]["name"].is_string()),
        "{books}"
    );
    // The printed token runs requests as web_user, who may write where web_anon may not.
    let token = lines
        .iter()
        .find_map(|l| l.strip_prefix("  TOKEN="))
        .unwrap_or_else(|| panic!("no token in {text}"));
    let author = r#"{"name": "Token Tester"}"#;
    let anonymous = ureq::post(&format!("{base}/authors"))
        .set("Content-Type", "application/json")
        .send_string(author);
    assert!(
        matches!(anonymous, Err(ureq::Error::Status(401, _))),
        "{anonymous:?}"
    );
    let created = ureq::post(&format!("{base}/authors"))
        .set("Content-Type", "application/json")
        .set("Authorization", &format!("Bearer {token}"))
        .send_string(author)
        .unwrap();
    assert_eq!(created.status(), 201);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", database_port)).is_err(),
        "the demo's PostgreSQL still answers on {database_port}"
    );
}
