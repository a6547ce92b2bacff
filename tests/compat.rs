//! PostgREST behaviours clients see, checked one by one against a real server: which
//! functions are callable, overload order, Vary, SO_REUSEPORT, libpq's environment.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{sql_exec, wait_for};
use serde_json::json;

fn functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sql_exec(
            "CREATE FUNCTION test_api.unnamed_int(integer) RETURNS integer LANGUAGE sql
               AS $$ SELECT $1 $$;
             CREATE FUNCTION test_api.two_unnamed(text, text) RETURNS text LANGUAGE sql
               AS $$ SELECT $1 || $2 $$;
             CREATE FUNCTION test_api.unnamed_json(json) RETURNS json LANGUAGE sql
               AS $$ SELECT $1 $$;
             CREATE FUNCTION test_api.ordered(x text) RETURNS text LANGUAGE sql
               AS $$ SELECT 'text' $$;
             CREATE FUNCTION test_api.ordered(x integer) RETURNS text LANGUAGE sql
               AS $$ SELECT 'integer' $$;
             NOTIFY pgrst, 'reload schema';",
        )
    });
}

#[test]
fn functions_postgrest_cannot_call_are_not_in_the_schema_cache() {
    functions();
    let s = common::server();
    wait_for("the new functions", || {
        s.send("POST", "/rpc/unnamed_json", &[], Some(r#"{"a":1}"#))
            .status
            == 200
    });
    // One unnamed json parameter takes the whole body.
    let r = s.send("POST", "/rpc/unnamed_json", &[], Some(r#"{"a":[1,2]}"#));
    assert_eq!(r.json(), json!({"a": [1, 2]}));
    for (path, body) in [
        ("/rpc/unnamed_int", r#"{"":1}"#),
        ("/rpc/unnamed_int", "{}"),
        ("/rpc/two_unnamed", r#"{"":"a"}"#),
    ] {
        let r = s.send("POST", path, &[], Some(body));
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert_eq!(r.json()["code"], "PGRST202", "{}", r.body);
    }
    // PGRST203 lists candidates in PostgREST's order, not the order of creation.
    let r = s.get("/rpc/ordered?x=1");
    assert_eq!(r.status, 300, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        "Could not choose the best candidate function between: test_api.ordered(x => integer), test_api.ordered(x => text)"
    );
}

#[test]
fn every_success_varies_by_accept_prefer_and_range() {
    let s = common::server();
    let vary = |r: &common::Reply| r.header("Vary").map(str::to_string);
    let expected = Some("Accept, Prefer, Range".to_string());
    assert_eq!(vary(&s.get("/numbers?n=eq.1")), expected);
    let created = s.send(
        "POST",
        "/w_bulk",
        &[("Prefer", "return=minimal")],
        Some(r#"{"id":9101,"name":"vary"}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(vary(&created), expected);
    let deleted = s.request("DELETE", "/w_bulk?id=eq.9101", &[]);
    assert_eq!(deleted.status, 204);
    assert_eq!(vary(&deleted), expected);
    assert_eq!(vary(&s.request("OPTIONS", "/numbers", &[])), expected);
    assert_eq!(vary(&s.get("/rpc/add_them?a=1&b=2")), expected);
}

/// Starts pgrest with `env` on `port`.
fn spawn_on(port: u16, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = common::pgrest_command();
    cmd.env("PGRST_SERVER_HOST", "127.0.0.1")
        .env("PGRST_SERVER_PORT", port.to_string())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    common::reap_with_tests(&child);
    child
}

#[test]
fn server_reuseport_lets_two_processes_share_a_port() {
    let port = pgrest::pgcluster::free_port().unwrap();
    let shared = [("PGRST_SERVER_REUSEPORT", "true")];
    let mut first = spawn_on(port, &shared);
    let mut second = spawn_on(port, &shared);
    wait_for("two listeners", || {
        common::listening_addresses(port).len() == 2
    });
    for _ in 0..10 {
        let r = ureq::get(&format!("http://127.0.0.1:{port}/numbers?n=eq.1"))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(first.try_wait().unwrap().is_none());
    assert!(second.try_wait().unwrap().is_none());
    // Without it, the port is taken: start-up fails with exit 1.
    let mut third = spawn_on(port, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = third.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "a third process took the port");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    for mut child in [first, second] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn libpq_environment_and_an_at_file_name_the_database() {
    let h = common::harness();
    let port = h
        .cluster
        .uri("postgres")
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap()
        .to_string();
    // No db-uri at all: PGHOST and friends mean this database, not the demo.
    let api_port = pgrest::pgcluster::free_port().unwrap();
    let mut cmd = common::pgrest_command();
    cmd.env_remove("PGRST_DB_URI")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .env("PGUSER", "authenticator")
        .env("PGDATABASE", common::DB)
        .env("PGRST_SERVER_HOST", "127.0.0.1")
        .env("PGRST_SERVER_PORT", api_port.to_string());
    let mut child = cmd.spawn().unwrap();
    common::reap_with_tests(&child);
    let s = common::serving(&child, api_port);
    assert_eq!(s.get("/numbers?n=eq.2").json(), json!([{"n": 2}]));
    let _ = child.kill();
    let _ = child.wait();
    // db-uri = "@file" reads the connection string from the file.
    let file = std::env::temp_dir().join(format!("pgrest-uri-{}", std::process::id()));
    std::fs::write(
        &file,
        format!("{}\n", h.cluster.uri_as("authenticator", common::DB)),
    )
    .unwrap();
    let at_file = format!("@{}", file.display());
    let mut cmd = common::pgrest_command();
    cmd.env("PGRST_DB_URI", &at_file);
    let (s, mut child) = common::spawn_server(cmd);
    assert_eq!(s.get("/numbers?n=eq.3").json(), json!([{"n": 3}]));
    let _ = child.kill();
    let _ = std::fs::remove_file(&file);
}

/// The value of a metric line `name` in the exposition text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_pool_timeouts_the_jwt_cache_and_the_process() {
    let admin_port = pgrest::pgcluster::free_port().unwrap().to_string();
    let s = common::server_with(&[
        ("PGRST_ADMIN_SERVER_PORT", &admin_port),
        ("PGRST_DB_POOL", "1"),
        ("PGRST_DB_POOL_ACQUISITION_TIMEOUT", "1"),
        ("PGRST_JWT_SECRET", common::JWT_SECRET),
    ]);
    let metrics = || {
        ureq::get(&format!("http://127.0.0.1:{admin_port}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    wait_for("the admin server", || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port.parse::<u16>().unwrap())).is_ok()
    });
    let token = common::hs256(json!({"role": "test_user"}));
    for _ in 0..3 {
        let r = s.get_with(
            "/rpc/add_them?a=1&b=2",
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert_ne!(
            r.json()["code"],
            "PGRST301",
            "the token is valid: {}",
            r.body
        );
    }
    // The one connection is held by a nap; the next request times out waiting.
    let base = s.base.clone();
    let napper = std::thread::spawn(move || {
        let _ = ureq::get(&format!("{base}/rpc/nap?seconds=3")).call();
    });
    std::thread::sleep(Duration::from_millis(500));
    let r = s.get("/numbers?n=eq.1");
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST003");
    napper.join().unwrap();
    let text = metrics();
    assert_eq!(
        metric(&text, "pgrst_db_pool_timeouts_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "pgrst_jwt_cache_requests_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "pgrst_jwt_cache_hits_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "pgrst_jwt_cache_evictions_total"),
        Some(0.0),
        "{text}"
    );
    assert!(
        text.contains("pgrst_schema_cache_loads_total{status=\"FAIL\"} 0"),
        "{text}"
    );
    assert!(
        metric(&text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6),
        "{text}"
    );
    assert!(
        metric(&text, "process_open_fds").is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert!(
        // A release build may have used less than one clock tick (10 ms) by now.
        metric(&text, "process_cpu_seconds_total").is_some_and(|s| s >= 0.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter"),
        "{text}"
    );
    assert!(
        metric(&text, "process_max_fds").is_some_and(|n| n >= 64.0),
        "{text}"
    );
    assert!(
        metric(&text, "process_start_time_seconds").is_some_and(|t| t > 1.7e9),
        "{text}"
    );
}

#[test]
fn an_embed_is_filtered_only_by_whether_it_has_rows() {
    let s = common::server();
    let ok =
        s.get("/directors?select=id,films!films_director_id_fkey(id)&films=not.is.null&order=id");
    assert_eq!(ok.status, 200, "{}", ok.body);
    for path in [
        "/directors?select=id,films!films_director_id_fkey(id)&films=eq.1",
        "/directors?select=id,films!films_director_id_fkey(id)&or=(films.eq.1,id.eq.2)",
        "/directors?select=id,films!films_director_id_fkey(id)&films=is.true",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(
            r.json(),
            json!({
                "code": "PGRST120",
                "message": "Bad operator on the 'films' embedded resource",
                "details": "Only is null or not is null filters are allowed on embedded resources",
                "hint": null
            })
        );
    }
}

#[test]
fn function_name_hints_need_postgrest_similarity() {
    let s = common::server();
    // add_them exists: "add_thm" is close enough, "blurb_them" is not.
    let r = s.send("POST", "/rpc/add_thm", &[], Some("{}"));
    assert_eq!(
        r.json()["hint"],
        "Perhaps you meant to call the function test_api.add_them"
    );
    let r = s.send("POST", "/rpc/blurb_them", &[], Some("{}"));
    assert_eq!(r.json()["hint"], serde_json::Value::Null, "{}", r.body);
}

fn pgrest_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = common::pgrest_command();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn cli_example_ready_dump_schema_and_dump_config_with_database_settings() {
    let o = pgrest_cli(&["--example"], &[]);
    assert!(o.status.success());
    let example = String::from_utf8(o.stdout).unwrap();
    assert!(example.contains("db-uri = "), "{example}");
    assert!(pgrest::config::Config::load(Some(&example), Vec::new()).is_ok());

    let admin_port = pgrest::pgcluster::free_port().unwrap().to_string();
    let _s = common::server_with(&[("PGRST_ADMIN_SERVER_PORT", &admin_port)]);
    wait_for("the admin server", || {
        std::net::TcpStream::connect(("127.0.0.1", admin_port.parse::<u16>().unwrap())).is_ok()
    });
    let ready = pgrest_cli(&["--ready"], &[("PGRST_ADMIN_SERVER_PORT", &admin_port)]);
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let nobody = pgrest::pgcluster::free_port().unwrap().to_string();
    let not_ready = pgrest_cli(&["--ready"], &[("PGRST_ADMIN_SERVER_PORT", &nobody)]);
    assert_eq!(not_ready.status.code(), Some(1));

    let o = pgrest_cli(&["--dump-schema"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cache: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(cache["tables"]["test_api"]["numbers"].is_object());

    sql_exec(
        "ALTER ROLE authenticator IN DATABASE fixture
           SET pgrst.openapi_server_proxy_uri = 'https://api.example.com'",
    );
    let o = pgrest_cli(&["--dump-config"], &[]);
    assert!(o.status.success());
    let config = String::from_utf8(o.stdout).unwrap();
    assert!(
        config
            .lines()
            .any(|l| l == "openapi-server-proxy-uri = \"https://api.example.com\""),
        "{config}"
    );
    sql_exec("ALTER ROLE authenticator IN DATABASE fixture RESET pgrst.openapi_server_proxy_uri");
}

#[test]
fn the_role_claim_key_is_a_jsonpath_with_filters() {
    let s = common::server_with(&[
        ("PGRST_JWT_SECRET", common::JWT_SECRET),
        (
            "PGRST_JWT_ROLE_CLAIM_KEY",
            "$.app.roles[?search(@, '^test_')]",
        ),
    ]);
    let token = common::hs256(json!({"app": {"roles": ["admin", "test_user"]}}));
    let r = s.get_with(
        "/request_info?select=role",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!([{"role": "test_user"}]));
}

#[test]
fn a_legacy_target_name_works_with_a_deprecation_warning() {
    let s = common::server();
    let r = s.get(
        "/directors?select=id,the_films:films!films_director_id_fkey(id)&films.order=id.desc&films.limit=1&id=eq.1",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("Warning"),
        Some("299 PostgRESTv16.1 \"Embedded resource was referenced by relation name even though it has an alias. This is deprecated and will stop working in a future release. Update `films` to `the_films` in query string filters, orders or limits.\"")
    );
    let by_alias = s.get("/directors?select=id,the_films:films!films_director_id_fkey(id)&the_films.order=id.desc&id=eq.1");
    assert_eq!(by_alias.header("Warning"), None);
}

#[test]
fn db_channel_follows_a_config_reload() {
    let h = common::harness();
    let port = pgrest::pgcluster::free_port().unwrap();
    let dir = std::env::temp_dir().join(format!("pgrest-channel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pgrest.conf");
    let write = |channel: &str, enabled: bool| {
        std::fs::write(
            &file,
            format!(
                "db-uri = \"{}\"\ndb-schemas = \"test_api\"\ndb-anon-role = \"test_anon\"\nserver-host = \"127.0.0.1\"\nserver-port = {port}\ndb-channel = \"{channel}\"\ndb-channel-enabled = {enabled}\n",
                h.cluster.uri_as("authenticator", common::DB)
            ),
        )
        .unwrap()
    };
    write("chan_a", true);
    let (mut child, s) = common::server_from_file(&file, port);
    let appears = |table: &str, channel: &str| {
        sql_exec(&format!(
            "CREATE TABLE test_api.{table} (id int); GRANT SELECT ON test_api.{table} TO test_anon;
             NOTIFY {channel}, 'reload schema';"
        ));
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if s.get(&format!("/{table}")).status == 200 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    // A backend whose last statement was LISTEN on `channel`, i.e. a live listener.
    let listening = |channel: &str| {
        common::sql_rows(&format!(
            "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN \"{channel}\"'"
        ))
        .as_array()
        .is_some_and(|rows| !rows.is_empty())
    };
    wait_for("the listener on chan_a", || listening("chan_a"));
    assert!(appears("chan_probe_1", "chan_a"));
    let sigusr2 = || {
        std::process::Command::new("kill")
            .args(["-USR2", &child.id().to_string()])
            .status()
            .unwrap()
    };
    write("chan_b", true);
    sigusr2();
    wait_for("the listener on chan_b", || listening("chan_b"));
    wait_for("no listener on chan_a", || !listening("chan_a"));
    assert!(
        appears("chan_probe_2", "chan_b"),
        "the new channel is listened to"
    );
    assert!(!appears("chan_probe_3", "chan_a"), "the old channel is not");
    write("chan_b", false);
    sigusr2();
    wait_for("no listener at all", || !listening("chan_b"));
    assert!(!appears("chan_probe_4", "chan_b"), "disabled");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_estimated_count_without_max_rows_is_the_larger_of_exact_and_planned() {
    sql_exec(
        "CREATE TABLE test_api.never_analyzed (id int);
         INSERT INTO test_api.never_analyzed SELECT generate_series(1, 5);
         GRANT SELECT ON test_api.never_analyzed TO test_anon;
         NOTIFY pgrst, 'reload schema';",
    );
    let s = common::server();
    wait_for("the table", || s.get("/never_analyzed").status == 200);
    let r = s.get_with("/never_analyzed", &[("Prefer", "count=estimated")]);
    let range = r.header("Content-Range").unwrap().to_string();
    let total: i64 = range.rsplit('/').next().unwrap().parse().unwrap();
    // The planner's guess for a never-analyzed table is its page's worth of rows.
    assert!(total > 5, "{range}");
    assert_eq!(r.status, 206, "{range}");
    assert!(range.starts_with("0-4/"), "{range}");
    let exact = s.get_with("/never_analyzed", &[("Prefer", "count=exact")]);
    assert_eq!(exact.header("Content-Range"), Some("0-4/5"));
}

#[test]
fn an_empty_array_upsert_writes_nothing() {
    let s = common::server();
    // PostgREST: 200 when merge-duplicates inserted nothing, 201 otherwise.
    for (prefer, status) in [
        ("resolution=merge-duplicates", 200),
        ("resolution=ignore-duplicates", 201),
        ("resolution=merge-duplicates, return=representation", 200),
        ("resolution=ignore-duplicates, return=representation", 201),
    ] {
        let r = s.send("POST", "/w_upsert", &[("Prefer", prefer)], Some("[]"));
        assert_eq!(r.status, status, "{prefer}: {}", r.body);
        if prefer.contains("representation") {
            assert_eq!(r.json(), json!([]));
        }
    }
}

#[test]
fn upserts_on_a_partitioned_table_with_a_composite_key() {
    sql_exec(
        "CREATE TABLE test_api.parted (region text, id int, name text, PRIMARY KEY (region, id))
           PARTITION BY LIST (region);
         CREATE TABLE test_api.parted_eu PARTITION OF test_api.parted FOR VALUES IN ('eu');
         CREATE TABLE test_api.parted_us PARTITION OF test_api.parted FOR VALUES IN ('us');
         GRANT SELECT, INSERT, UPDATE ON test_api.parted TO test_anon;
         NOTIFY pgrst, 'reload schema';",
    );
    let s = common::server();
    wait_for("the table", || s.get("/parted").status == 200);
    let rep = [(
        "Prefer",
        "return=representation, resolution=merge-duplicates",
    )];
    let r = s.send(
        "POST",
        "/parted",
        &rep,
        Some(r#"[{"region":"eu","id":1,"name":"a"},{"region":"us","id":1,"name":"b"}]"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.send(
        "POST",
        "/parted",
        &rep,
        Some(r#"[{"region":"eu","id":1,"name":"a2"}]"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!([{"region": "eu", "id": 1, "name": "a2"}]));
    let put = [("Prefer", "return=representation")];
    let r = s.send(
        "PUT",
        "/parted?region=eq.us&id=eq.1",
        &put,
        Some(r#"{"region":"us","id":1,"name":"b2"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!([{"region": "us", "id": 1, "name": "b2"}]));
    let r = s.send(
        "PUT",
        "/parted?region=eq.us&id=eq.2",
        &put,
        Some(r#"{"region":"us","id":2,"name":"c"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.request("OPTIONS", "/parted", &[]);
    assert!(
        r.header("Allow").is_some_and(|a| a.contains("PUT")),
        "{:?}",
        r.headers
    );
}

#[test]
fn planned_and_estimated_counts_with_a_null_filter_on_an_embed() {
    let s = common::server();
    let path = "/directors?select=id,films!films_director_id_fkey(id)&films=not.is.null";
    let exact = s.get_with(path, &[("Prefer", "count=exact")]);
    assert_eq!(exact.status, 200, "{}", exact.body);
    for count in ["count=planned", "count=estimated"] {
        let r = s.get_with(path, &[("Prefer", count)]);
        assert!(
            matches!(r.status, 200 | 206),
            "{count}: {} {}",
            r.status,
            r.body
        );
        assert_eq!(r.body, exact.body, "{count}");
        let total = r
            .header("Content-Range")
            .and_then(|c| c.rsplit('/').next())
            .unwrap();
        assert!(total.parse::<i64>().is_ok(), "{count}: {total}");
    }
}

#[test]
fn start_up_says_what_it_did_plainly_and_warns_of_unknown_keys() {
    let port = pgrest::pgcluster::free_port().unwrap();
    let mut cmd = common::pgrest_command();
    cmd.env("PGRST_SERVER_HOST", "127.0.0.1")
        .env("PGRST_SERVER_PORT", port.to_string())
        .env("PGRST_DB_SHEMAS", "oops")
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    common::reap_with_tests(&child);
    wait_for("the server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    // The default log-level is error, and these still show.
    for line in [
        "starting pgrest",
        "unknown environment variable PGRST_DB_SHEMAS: ignored (did you mean db-schemas?)",
        "connected to PostgreSQL 15",
        "schema cache: ",
        " relationships, ",
        " functions, ",
        "connection pool: up to 10 connections",
        &format!("API server listening on http://127.0.0.1:{port}"),
        "listening for notifications on channel pgrst",
        "stopping",
        "stopped",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in\n{stderr}");
    }
    assert!(!stderr.contains('\u{1b}'), "colour into a pipe:\n{stderr}");
    // config-strict makes an unknown key fatal.
    let o = pgrest_cli(
        &["--dump-config"],
        &[("PGRST_CONFIG_STRICT", "true"), ("PGRST_DB_SHEMAS", "x")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean db-schemas?"));
}

#[test]
fn pgrest_token_signs_a_token_the_server_accepts() {
    let o = pgrest_cli(
        &["token", "--role", "test_user", "--exp", "10m"],
        &[("PGRST_JWT_SECRET", common::JWT_SECRET)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let s = common::server_with(&[("PGRST_JWT_SECRET", common::JWT_SECRET)]);
    let r = s.get_with(
        "/request_info?select=role",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(r.json(), json!([{"role": "test_user"}]), "{}", r.body);
    let missing = pgrest_cli(&["token"], &[("PGRST_JWT_SECRET", common::JWT_SECRET)]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn a_single_json_parameter_overload_takes_bodies_the_named_one_does_not() {
    sql_exec(
        "CREATE FUNCTION test_api.mixed(json) RETURNS text LANGUAGE sql AS $$ SELECT 'json:' || $1::text $$;
         CREATE FUNCTION test_api.mixed(a integer) RETURNS text LANGUAGE sql AS $$ SELECT 'a:' || a $$;
         NOTIFY pgrst, 'reload schema';",
    );
    let s = common::server();
    wait_for("mixed", || {
        s.send("POST", "/rpc/mixed", &[], Some(r#"{"a":1}"#)).status == 200
    });
    let r = s.send("POST", "/rpc/mixed", &[], Some(r#"{"a":1}"#));
    assert_eq!(r.json(), json!("a:1"), "{}", r.body);
    let r = s.send("POST", "/rpc/mixed", &[], Some(r#"{"b":2}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!("json:{\"b\":2}"));
}
