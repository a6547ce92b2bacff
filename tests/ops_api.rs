//! Running it: schema cache reloads and the admin server.

mod common;

use std::time::{Duration, Instant};

use common::{server, server_with, sql_exec, sql_rows, wait_for};

#[test]
fn notify_reloads_the_schema_cache() {
    let s = server();
    assert_eq!(s.get("/reload_probe").status, 404);
    sql_exec(
        "CREATE TABLE test_api.reload_probe (id integer); \
         INSERT INTO test_api.reload_probe VALUES (7); \
         GRANT SELECT ON test_api.reload_probe TO test_anon;",
    );
    // Notified again while waiting: the server's listener may still be connecting when
    // the test starts, and a notification sent before its LISTEN is not delivered.
    wait_for("the new table", || {
        sql_exec("NOTIFY pgrst, 'reload schema'");
        s.get("/reload_probe").status == 200
    });
    assert_eq!(s.get("/reload_probe").body, "[{\"id\":7}]");
}

#[test]
fn sigusr1_reloads_the_schema_cache() {
    let s = server_with(&[("PGRST_DB_CHANNEL_ENABLED", "false")]);
    sql_exec(
        "CREATE TABLE test_api.signal_probe (id integer); \
         GRANT SELECT ON test_api.signal_probe TO test_anon;",
    );
    assert_eq!(
        s.get("/signal_probe").status,
        404,
        "no reload without a signal"
    );
    let killed = std::process::Command::new("kill")
        .args(["-USR1", &s.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for("the new table", || s.get("/signal_probe").status == 200);
}

#[test]
fn admin_server_answers_live_and_ready() {
    let port = pgrest::pgcluster::free_port().unwrap().to_string();
    let _s = server_with(&[("PGRST_ADMIN_SERVER_PORT", &port)]);
    let get = |path: &str| -> u16 {
        match ureq::get(&format!("http://127.0.0.1:{port}{path}")).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    wait_for("the admin server", || {
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok()
    });
    assert_eq!(get("/live"), 200);
    assert_eq!(get("/ready"), 200);
    assert_eq!(get("/nothing"), 404);
    let _ = _s.get("/kinds?select=id&id=eq.1");
    let _ = _s.get("/nope");
    let metrics = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for line in [
        "pgrst_requests_total{method=\"GET\",status=\"200\"} 1",
        "pgrst_requests_total{method=\"GET\",status=\"404\"} 1",
        "pgrst_request_duration_seconds_count 2",
        "pgrst_schema_cache_loads_total{status=\"SUCCESS\"} 1",
        "pgrst_db_pool_max 10",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    let text = |path: &str| {
        ureq::get(&format!("http://127.0.0.1:{port}{path}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    // /config is off by default (it is turned on and redacted in tests/hardening.rs).
    assert_eq!(get("/config"), 404);
    let cache: serde_json::Value = serde_json::from_str(&text("/schema_cache")).unwrap();
    assert!(
        cache["tables"]["test_api"]["numbers"].is_object(),
        "{cache}"
    );
}

/// How many rows GET /numbers answers (30 in the table; db-max-rows caps it).
fn rows(s: &common::Server) -> usize {
    s.get("/numbers")
        .json()
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

#[test]
fn config_reloads_from_the_file_on_notify_and_sigusr2() {
    let h = common::harness();
    let port = pgrest::pgcluster::free_port().unwrap();
    let dir = std::env::temp_dir().join(format!("pgrest-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pgrest.conf");
    let write = |max_rows: u32| {
        std::fs::write(
            &file,
            format!(
                "db-uri = \"{}\"\ndb-schemas = \"test_api\"\ndb-anon-role = \"test_anon\"\nserver-host = \"127.0.0.1\"\nserver-port = {port}\ndb-max-rows = {max_rows}\ndb-channel = \"reload_test\"\n",
                h.cluster.uri_as("authenticator", common::DB)
            ),
        )
        .unwrap()
    };
    write(2);
    let (mut child, s) = common::server_from_file(&file, port);
    assert_eq!(rows(&s), 2);
    write(3);
    sql_exec("NOTIFY reload_test, 'reload config'");
    wait_for("db-max-rows 3", || rows(&s) == 3);
    write(4);
    std::process::Command::new("kill")
        .args(["-USR2", &s.pid.to_string()])
        .status()
        .unwrap();
    wait_for("db-max-rows 4", || rows(&s) == 4);
    // A broken file keeps the running configuration.
    std::fs::write(&file, "db-max-rows = \"many\"\n").unwrap();
    sql_exec("NOTIFY reload_test, 'reload config'");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rows(&s), 4);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn in_database_settings_win_over_the_environment_and_reload() {
    let h = common::harness();
    sql_exec(
        "CREATE ROLE cfg_authenticator LOGIN NOINHERIT;
         GRANT test_anon TO cfg_authenticator;
         CREATE FUNCTION public.cfg_pre_config() RETURNS void LANGUAGE sql AS $$
           SELECT set_config('pgrst.db_max_rows', '3', true),
                  set_config('pgrst.server_timing_enabled', 'true', true) $$;
         ALTER ROLE cfg_authenticator SET pgrst.db_max_rows = '1';
         ALTER ROLE cfg_authenticator SET pgrst.db_uri = 'postgresql://nowhere';",
    );
    let uri = h.cluster.uri_as("cfg_authenticator", common::DB);
    let s = server_with(&[
        ("PGRST_DB_URI", &uri),
        ("PGRST_DB_MAX_ROWS", "5"),
        ("PGRST_DB_PRE_CONFIG", "public.cfg_pre_config"),
        ("PGRST_DB_CHANNEL", "cfg_test"),
    ]);
    // Role setting (1) over pre-config (3) over the environment (5); the pre-config
    // function's other setting applies; db-uri cannot be set in the database.
    assert_eq!(rows(&s), 1);
    assert!(s.get("/numbers").header("server-timing").is_some());
    sql_exec("ALTER ROLE cfg_authenticator SET pgrst.db_max_rows = '2'");
    sql_exec("NOTIFY cfg_test, 'reload config'");
    wait_for("db-max-rows 2", || rows(&s) == 2);
    sql_exec("ALTER ROLE cfg_authenticator RESET pgrst.db_max_rows");
    sql_exec("NOTIFY cfg_test, 'reload config'");
    wait_for("db-max-rows 3 from pre-config", || rows(&s) == 3);
    // An invalid in-database value fails the reload and keeps the running configuration;
    // a later reload (here dropping the bad value) still takes effect.
    sql_exec("ALTER ROLE cfg_authenticator SET pgrst.db_tx_end = 'sometimes'");
    sql_exec("ALTER ROLE cfg_authenticator SET pgrst.db_max_rows = '4'");
    sql_exec("NOTIFY cfg_test, 'reload config'");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rows(&s), 3);
    sql_exec("ALTER ROLE cfg_authenticator RESET pgrst.db_tx_end");
    sql_exec("NOTIFY cfg_test, 'reload config'");
    wait_for("db-max-rows 4 once the bad value is gone", || rows(&s) == 4);
}

#[test]
fn serves_on_a_unix_socket_with_its_mode() {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pgrest-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api.sock");
    let admin = dir.join("admin.sock");
    let spawn = |mode: &str| {
        common::pgrest_command()
            .env("PGRST_SERVER_UNIX_SOCKET", &path)
            .env("PGRST_SERVER_UNIX_SOCKET_MODE", mode)
            .env("PGRST_ADMIN_SERVER_UNIX_SOCKET", &admin)
            .env("PGRST_ADMIN_SERVER_UNIX_SOCKET_MODE", "600")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // A mode outside 600..777 is refused at start-up with one line.
    let out = spawn("644x").wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server-unix-socket-mode"));
    let mut child = spawn("640");
    common::reap_with_tests(&child);
    wait_for("the sockets", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
            && std::os::unix::net::UnixStream::connect(&admin).is_ok()
    });
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let get = |socket: &std::path::Path, path: &str| {
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    };
    // The admin server on its own socket, with its own mode.
    assert_eq!(
        std::fs::metadata(&admin).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let live = get(&admin, "/ready");
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let reply = get(&path, "/numbers?n=lte.2&order=n");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body, serde_json::json!([{"n": 1}, {"n": 2}]));
    // SIGTERM: exits cleanly and removes the socket.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!path.exists());
    assert!(!admin.exists());
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let (s, mut child) = common::spawn_server(common::pgrest_command());
    let port = s.port();
    let in_flight = {
        let s = s.clone();
        std::thread::spawn(move || s.get("/rpc/nap?seconds=1.5"))
    };
    std::thread::sleep(Duration::from_millis(400));
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // New connections are refused while the old request finishes.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!("rested"));
    assert!(child.wait().unwrap().success());
}

/// A server with a pool of one connection and the acquisition timeout given (seconds),
/// and a request holding that connection for `nap` seconds, under way once this returns.
fn one_connection_busy(
    acquisition_timeout: &str,
    nap: &str,
) -> (common::Server, std::thread::JoinHandle<common::Reply>) {
    let s = server_with(&[
        ("PGRST_DB_POOL", "1"),
        ("PGRST_DB_POOL_ACQUISITION_TIMEOUT", acquisition_timeout),
    ]);
    let busy = {
        let s = s.clone();
        let path = format!("/rpc/nap?seconds={nap}");
        std::thread::spawn(move || s.get(&path))
    };
    std::thread::sleep(Duration::from_millis(400));
    (s, busy)
}

#[test]
fn an_exhausted_pool_answers_504_after_the_acquisition_timeout() {
    let (s, busy) = one_connection_busy("1", "2.5");
    let started = Instant::now();
    let r = s.get("/numbers?limit=1");
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["code"], "PGRST003");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(busy.join().unwrap().status, 200);
    // Once the connection is free again the pool serves normally.
    assert_eq!(s.get("/numbers?limit=1").status, 200);
}

#[test]
fn a_request_waits_for_a_busy_pool_connection_within_the_acquisition_timeout() {
    let (s, busy) = one_connection_busy("10", "1.5");
    // No connection is free now: the request waits for the nap's instead of failing.
    let started = Instant::now();
    let r = s.get("/numbers?limit=1");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(busy.join().unwrap().status, 200);
}

/// Pool connections of a server started with application_name=`name`.
fn backends(name: &str) -> i64 {
    sql_rows(&format!(
        "select count(*) as n from pg_stat_activity where application_name = '{name}'"
    ))[0]["n"]
        .as_i64()
        .unwrap()
}

fn server_named(name: &str, extra: &[(&str, &str)]) -> common::Server {
    let uri = format!(
        "{}?application_name={name}",
        common::harness()
            .cluster
            .uri_as("authenticator", common::DB)
    );
    let mut env = vec![
        ("PGRST_DB_URI", uri.as_str()),
        ("PGRST_DB_CHANNEL_ENABLED", "false"),
    ];
    env.extend_from_slice(extra);
    server_with(&env)
}

#[test]
fn idle_and_old_pool_connections_are_closed() {
    let keep = server_named("pool_keep", &[]);
    let idle = server_named("pool_idle", &[("PGRST_DB_POOL_MAX_IDLETIME", "1")]);
    let old = server_named(
        "pool_old",
        &[
            ("PGRST_DB_POOL_MAX_LIFETIME", "1"),
            ("PGRST_DB_POOL_TIMEOUT", "600"),
        ],
    );
    for s in [&keep, &idle, &old] {
        assert_eq!(s.get("/numbers?limit=1").status, 200);
    }
    assert_eq!(backends("pool_keep"), 1);
    std::thread::sleep(Duration::from_millis(2500));
    // Defaults (30 s idle, 30 min lifetime) keep the connection; the others are gone.
    assert_eq!(backends("pool_keep"), 1);
    wait_for("idle connection closed", || backends("pool_idle") == 0);
    wait_for("old connection closed", || backends("pool_old") == 0);
    // And the pool opens new ones on demand.
    assert_eq!(idle.get("/numbers?limit=1").status, 200);
    assert_eq!(old.get("/numbers?limit=1").status, 200);
}

/// A server whose stdout and stderr are kept; returns them once it has been stopped.
fn logged_server(env: &[(&str, &str)], requests: impl FnOnce(&common::Server)) -> (String, String) {
    let mut cmd = common::pgrest_command();
    cmd.envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (s, child) = common::spawn_server(cmd);
    requests(&s);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_request_log_line_per_request_filtered_by_log_level() {
    let (out, err) = logged_server(
        &[
            ("PGRST_LOG_LEVEL", "info"),
            ("PGRST_LOG_QUERY", "true"),
            (
                "PGRST_JWT_SECRET",
                "a-secret-of-at-least-thirty-two-characters",
            ),
        ],
        |s| {
            assert_eq!(
                s.get_with("/numbers?select=n&limit=1", &[("User-Agent", "probe/1")])
                    .status,
                200
            );
            assert_eq!(s.get("/no_such_table").status, 404);
            let bad = s.get_with("/numbers", &[("Authorization", "Bearer not.a.jwt")]);
            assert_eq!(bad.status, 401);
        },
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("127.0.0.1 - test_anon ["),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("] \"GET /numbers?select=n&limit=1 HTTP/1.1\" 200 ")
            && lines[0].ends_with(" \"-\" \"probe/1\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"GET /no_such_table HTTP/1.1\" 404 "),
        "{}",
        lines[1]
    );
    // Authentication failed: no role.
    assert!(lines[2].starts_with("127.0.0.1 - - ["), "{}", lines[2]);
    assert!(lines[2].contains("\" 401 "), "{}", lines[2]);
    // log-query: the settings statement and the main query of the read, one line each.
    assert!(err.contains("set_config('search_path'"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("\"test_api\".\"numbers\"") && l.contains("LIMIT")),
        "{err}"
    );

    let (out, err) = logged_server(&[("PGRST_LOG_LEVEL", "warn")], |s| {
        assert_eq!(s.get("/numbers?limit=1").status, 200);
        assert_eq!(s.get("/no_such_table").status, 404);
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("\" 404 "), "{}", lines[0]);
    assert!(!err.contains("set_config"), "{err}");
}

fn schema_loads(admin_port: &str) -> u64 {
    let metrics = ureq::get(&format!("http://127.0.0.1:{admin_port}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("pgrst_schema_cache_loads_total{status=\"SUCCESS\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn a_burst_of_reloads_under_load_drops_no_request() {
    let port = pgrest::pgcluster::free_port().unwrap().to_string();
    let s = server_with(&[
        ("PGRST_ADMIN_SERVER_PORT", &port),
        ("PGRST_DB_CHANNEL", "burst_channel"),
    ]);
    wait_for("the admin server", || {
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok()
    });
    let before = schema_loads(&port);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    statuses.push(s.get("/numbers?n=lte.3&select=n,n_squared:n").status);
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // 50 distinct notifications delivered together (identical ones would be merged by
    // PostgreSQL itself), then a second burst while the first reload may be running.
    for _ in 0..2 {
        sql_exec(
            "select pg_notify('burst_channel', 'reload schema' || repeat(' ', i)) \
             from generate_series(1, 50) i",
        );
    }
    wait_for("a reload", || schema_loads(&port) > before);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(statuses.len() > 20, "{} requests", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let reloads = schema_loads(&port) - before;
    assert!(
        (1..=3).contains(&reloads),
        "{reloads} reloads for 100 notifications"
    );
}

#[test]
fn a_token_used_again_and_again_is_refused_once_a_reload_changes_the_secret() {
    let h = common::harness();
    let port = pgrest::pgcluster::free_port().unwrap();
    let dir = std::env::temp_dir().join(format!("pgrest-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pgrest.conf");
    let (old, new) = (
        "an-old-secret-of-at-least-32-characters",
        "a-new-secret-of-at-least-32-characters!",
    );
    let write = |secret: &str| {
        std::fs::write(
            &file,
            format!(
                "db-uri = \"{}\"\ndb-schemas = \"test_api\"\ndb-anon-role = \"test_anon\"\nserver-host = \"127.0.0.1\"\nserver-port = {port}\njwt-secret = \"{secret}\"\n",
                h.cluster.uri_as("authenticator", common::DB)
            ),
        )
        .unwrap()
    };
    let token = |secret: &str| common::hs256_with(serde_json::json!({"role": "test_anon"}), secret);
    write(old);
    let (mut child, s) = common::server_from_file(&file, port);
    let with = |t: &str| {
        let bearer = format!("Bearer {t}");
        s.send(
            "GET",
            "/numbers?n=eq.1",
            &[("Authorization", &bearer)],
            None,
        )
        .status
    };
    // Often enough that every worker thread has it as its last token.
    let old_token = token(old);
    for _ in 0..20 {
        assert_eq!(with(&old_token), 200);
    }
    write(new);
    std::process::Command::new("kill")
        .args(["-USR2", &s.pid.to_string()])
        .status()
        .unwrap();
    let new_token = token(new);
    wait_for("the new secret", || with(&new_token) == 200);
    for _ in 0..20 {
        assert_eq!(with(&old_token), 401, "a token of the old secret");
        assert_eq!(with(&new_token), 200);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
