//! The command line: flags, configuration loading and start-up failures.

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
fn unreachable_database_is_one_line_and_a_failure() {
    let port = pgrest::pgcluster::free_port().unwrap();
    let uri = format!("postgresql://nobody@127.0.0.1:{port}/db");
    let o = pgrest(&[], &[("PGRST_DB_URI", &uri)]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
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
