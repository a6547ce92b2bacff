//! Hostile clients: requests built to crash the process or exhaust it, tokens naming
//! roles no request may run as, clients that go away mid-request.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{hs256, server_with, sql_exec, sql_rows, Server, JWT_SECRET as SECRET};
use serde_json::{json, Value};

fn encode_query(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Sends raw bytes on a new connection and returns what comes back until the server
/// closes it or `wait` passes.
fn raw(port: u16, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request).unwrap();
    read_until_closed(&mut stream, wait)
}

fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> String {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP response text (0 when there is none).
fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[track_caller]
fn assert_error(r: &common::Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.json()["code"], code, "{}", r.body);
}

#[track_caller]
fn assert_alive(s: &Server) {
    let r = s.get("/numbers?n=eq.1");
    assert_eq!(r.status, 200, "the server is gone: {}", r.body);
}

#[test]
fn deep_nesting_is_a_400_and_the_server_lives() {
    let s = common::server();
    let nested = |open: &str, inner: &str, close: &str, n: usize| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    let deep = 3000;
    let long_path = format!("{}n", "films.".repeat(deep));
    let queries: Vec<Vec<(&str, String)>> = vec![
        vec![("or", format!("({})", nested("or(", "n.eq.1", ")", deep)))],
        vec![(
            "and",
            format!("({})", nested("not.and(", "n.eq.1", ")", deep)),
        )],
        vec![("select", nested("numbers(", "n", ")", deep))],
        vec![(
            "select",
            format!("n,{}", nested("...numbers(", "n", ")", deep)),
        )],
        vec![
            ("select", "n,films(id)".to_string()),
            (
                "films.or",
                format!("({})", nested("or(", "id.eq.1", ")", deep)),
            ),
        ],
        vec![("select", format!("n->{}", vec!["a"; deep].join("->")))],
        vec![(&long_path, "eq.1".to_string())],
    ];
    for q in &queries {
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
            .collect();
        let r = s.get(&format!("/numbers?{}", query.join("&")));
        assert_error(&r, 400, "PGRST100");
        assert!(r.body.contains("64"), "the limit is named: {}", r.body);
        assert_alive(&s);
    }
    // Up to the limit, nesting works end to end (parser, planner, SQL, PostgreSQL).
    let ok = format!("or=({})", nested("or(", "n.eq.1", ")", 63));
    let r = s.get(&format!("/numbers?or={}", encode_query(&ok[3..])));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!([{"n": 1}]));
    let embeds = nested("manager:employees!manager_id(id,", "id", ")", 64);
    let r = s.get(&format!(
        "/employees?select=id,{}&limit=1",
        encode_query(&embeds)
    ));
    assert_eq!(r.status, 200, "{}", r.body);
    let one_more = nested("manager:employees!manager_id(id,", "id", ")", 65);
    let r = s.get(&format!("/employees?select=id,{}", encode_query(&one_more)));
    assert_error(&r, 400, "PGRST100");
}

#[test]
fn a_huge_unknown_name_is_answered_at_once() {
    let s = common::server();
    // hyper refuses a request target past 64 KB with 414; just under that, the "did you
    // mean" search must stay cheap.
    let name = "x".repeat(60_000);
    let started = Instant::now();
    let r = s.get(&format!("/{name}"));
    assert_error(&r, 404, "PGRST205");
    let r = s.send("POST", &format!("/rpc/{name}"), &[], Some("{}"));
    assert_error(&r, 404, "PGRST202");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn nul_in_a_name_is_a_400_not_a_database_outage() {
    let s = common::server();
    let merge = [("Prefer", "resolution=merge-duplicates")];
    for path in [
        "/w_upsert?on_conflict=%00",
        "/w_upsert?columns=id,%00",
        "/w_upsert?select=a%00:id",
    ] {
        let r = s.send("POST", path, &merge, Some(r#"{"id":1}"#));
        assert_error(&r, 400, "PGRST100");
    }
    for path in [
        "/numbers?order=n%00",
        "/numbers?select=n%00",
        "/numbers?n%00=eq.1",
        "/numbers?n=eq.%00",
        "/numbers?or=(n.eq.1,n%00.eq.2)",
        "/rpc/add_them?a=1&b%00=2",
    ] {
        assert_error(&s.get(path), 400, "PGRST100");
    }
    assert_error(&s.get("/rpc/add%00them?a=1&b=2"), 404, "PGRST202");
    assert_error(&s.get("/numbers%00"), 404, "PGRST205");
    for (content_type, body) in [
        ("application/json", r#"{"id":1,"na\u0000me":"x"}"#),
        ("application/json", r#"[{"id\u0000":1}]"#),
        ("text/csv", "id,na\u{0}me\n1,x\n"),
        ("application/x-www-form-urlencoded", "id=1&na%00me=x"),
    ] {
        let r = s.send(
            "POST",
            "/w_upsert",
            &[("Content-Type", content_type)],
            Some(body),
        );
        assert_error(&r, 400, "PGRST102");
    }
    assert_alive(&s);
}

#[test]
fn bodies_past_the_limit_are_413_and_unread_when_the_target_is_settled_first() {
    let s = server_with(&[("PGRST_SERVER_MAX_BODY_SIZE", "1000")]);
    let big = format!(r#"[{{"id":1,"name":"{}"}}]"#, "x".repeat(2000));
    let r = s.send("POST", "/w_bulk", &[], Some(&big));
    assert_error(&r, 413, "PGRST102");
    assert!(r.body.contains("server-max-body-size"), "{}", r.body);
    // Chunked, with no Content-Length to refuse it by: refused as it grows.
    let mut chunked = Vec::from(
        &b"POST /w_bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"[..],
    );
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, " ".repeat(600)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let response = raw(s.port(), &chunked, Duration::from_secs(5));
    assert_eq!(status_of(&response), 413, "{response}");
    // Within the limit it is written.
    let r = s.send(
        "POST",
        "/w_bulk",
        &[("Prefer", "return=representation")],
        Some(r#"[{"id":7001,"name":"small"}]"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // A declared 50 MB body is answered without being sent when the target does not
    // exist, when no one may call anonymously, or when it is over the limit.
    let header_only = |s: &Server, path: &str| {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
        );
        status_of(&raw(s.port(), head.as_bytes(), Duration::from_secs(3)))
    };
    let unlimited = common::server();
    assert_eq!(header_only(&unlimited, "/no_such_table"), 404);
    assert_eq!(header_only(&unlimited, "/rpc/add_them/extra"), 404);
    assert_eq!(header_only(&s, "/w_bulk"), 413);
    let no_anon = server_with(&[("PGRST_DB_ANON_ROLE", ""), ("PGRST_JWT_SECRET", SECRET)]);
    assert_eq!(header_only(&no_anon, "/w_bulk"), 401);
}

#[test]
fn silent_and_slow_clients_are_disconnected() {
    let s = server_with(&[("PGRST_SERVER_HEADER_READ_TIMEOUT", "1")]);
    // Headers that never finish.
    let started = Instant::now();
    let partial = raw(
        s.port(),
        b"GET /numbers HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(5),
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "a slow header was kept {took:?}: {partial}"
    );
    // A connection that sends nothing at all.
    let started = Instant::now();
    let mut idle = TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "an idle socket was kept"
    );
    // A body that stalls.
    let started = Instant::now();
    let stalled = raw(
        s.port(),
        b"POST /w_bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{",
        Duration::from_secs(5),
    );
    assert!(started.elapsed() < Duration::from_secs(4), "{stalled}");
    assert_eq!(status_of(&stalled), 400, "{stalled}");
    assert_alive(&s);
}

#[test]
fn the_header_timeout_counts_waiting_for_a_head_not_answering() {
    let s = server_with(&[("PGRST_SERVER_HEADER_READ_TIMEOUT", "1")]);
    // An answer that takes longer than the timeout is not cut off.
    let slow = raw(
        s.port(),
        b"GET /rpc/nap?seconds=1.6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&slow), 200, "{slow}");
    assert!(slow.contains("rested"), "{slow}");
    // A kept-alive connection left idle after its answer is closed after the timeout,
    // and one that sends its next request in time is answered.
    let mut conn = TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    let request = b"GET /numbers?n=eq.1 HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..3 {
        conn.write_all(request).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
        std::thread::sleep(Duration::from_millis(600));
    }
    let idle_from = Instant::now();
    let rest = read_until_closed(&mut conn, Duration::from_secs(5));
    let idle = idle_from.elapsed() + Duration::from_millis(600);
    assert_eq!(rest, "", "nothing more was asked");
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "an idle kept-alive connection was closed after {idle:?}"
    );
    assert_alive(&s);
}

#[test]
fn connections_past_the_cap_wait_for_a_free_slot() {
    let s = server_with(&[("PGRST_SERVER_MAX_CONNECTIONS", "2")]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port())).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    third
        .write_all(b"GET /numbers?n=eq.1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let early = read_until_closed(&mut third, Duration::from_millis(700));
    assert_eq!(early, "", "answered past the cap");
    drop(held);
    let late = read_until_closed(&mut third, Duration::from_secs(5));
    assert_eq!(status_of(&late), 200, "{late}");
}

fn wait_for_listener(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(addr) = common::listening_addresses(port).pop() {
            return addr;
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_admin_server_stays_on_loopback_and_keeps_secrets() {
    let h = common::harness();
    let api_port = pgrest::pgcluster::free_port().unwrap();
    let admin_port = pgrest::pgcluster::free_port().unwrap();
    let mut cmd = common::pgrest_command();
    cmd.env("PGRST_SERVER_HOST", "0.0.0.0")
        .env("PGRST_SERVER_PORT", api_port.to_string())
        .env("PGRST_ADMIN_SERVER_PORT", admin_port.to_string());
    let mut child = cmd.spawn().unwrap();
    common::reap_with_tests(&child);
    assert_eq!(
        wait_for_listener(api_port),
        "00000000",
        "the API follows server-host"
    );
    assert_eq!(
        wait_for_listener(admin_port),
        "0100007F",
        "the admin server is loopback"
    );
    let admin =
        |port: u16, path: &str| match ureq::get(&format!("http://127.0.0.1:{port}{path}")).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        };
    assert_eq!(admin(admin_port, "/live").0, 200);
    assert_eq!(
        admin(admin_port, "/config").0,
        404,
        "/config is off by default"
    );
    let _ = child.kill();
    let _ = child.wait();

    let port = pgrest::pgcluster::free_port().unwrap();
    let uri = h
        .cluster
        .uri_as("authenticator", common::DB)
        .replace("authenticator@", "authenticator:hunter2@");
    let _s = server_with(&[
        ("PGRST_ADMIN_SERVER_PORT", &port.to_string()),
        ("PGRST_ADMIN_SERVER_CONFIG_ENABLED", "true"),
        ("PGRST_JWT_SECRET", SECRET),
        ("PGRST_DB_URI", &uri),
        ("PGRST_APP_SETTINGS_stripe_secret", "sk_live_1"),
        ("PGRST_APP_SETTINGS_region", "eu"),
    ]);
    wait_for_listener(port);
    let (status, config) = admin(port, "/config");
    assert_eq!(status, 200);
    assert!(config.contains("jwt-secret = \"<redacted>\""), "{config}");
    assert!(
        config.contains("authenticator:<redacted>@127.0.0.1"),
        "{config}"
    );
    assert!(
        config.contains("app.settings.stripe_secret = \"<redacted>\""),
        "{config}"
    );
    assert!(config.contains("app.settings.region = \"eu\""), "{config}");
    assert!(config.contains("db-schemas = \"test_api\""), "{config}");
    for secret in [SECRET, "hunter2", "sk_live_1"] {
        assert!(!config.contains(secret), "{secret} leaked: {config}");
    }
}

/// A function that says who runs it, and a table only the authenticator may read.
fn role_fixtures() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sql_exec(
            "CREATE FUNCTION test_api.whoami() RETURNS text LANGUAGE sql STABLE
               AS $$ SELECT current_user::text $$;
             GRANT EXECUTE ON FUNCTION test_api.whoami() TO test_anon, test_user;
             GRANT USAGE ON SCHEMA test_api TO authenticator;
             CREATE TABLE test_api.authenticator_only (secret text);
             INSERT INTO test_api.authenticator_only VALUES ('only for the authenticator');
             GRANT SELECT ON test_api.authenticator_only TO authenticator;
             CREATE ROLE ungranted_role NOLOGIN;
             NOTIFY pgrst, 'reload schema';",
        )
    });
}

#[test]
fn tokens_cannot_name_none_the_authenticator_or_nothing() {
    role_fixtures();
    let s = server_with(&[("PGRST_JWT_SECRET", SECRET)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get("/rpc/whoami").status != 200 {
        assert!(Instant::now() < deadline, "whoami never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let as_role = |role: Value, path: &str| {
        let token = hs256(json!({ "role": role }));
        s.get_with(path, &[("Authorization", &format!("Bearer {token}"))])
    };
    assert_eq!(
        as_role(json!("test_user"), "/rpc/whoami").body,
        "\"test_user\""
    );
    assert_eq!(s.get("/rpc/whoami").body, "\"test_anon\"");
    for role in [
        json!("none"),
        json!("authenticator"),
        json!(""),
        json!("a\u{0}b"),
    ] {
        for path in ["/rpc/whoami", "/authenticator_only"] {
            let r = as_role(role.clone(), path);
            assert_error(&r, 401, "PGRST303");
            assert!(
                r.header("WWW-Authenticate")
                    .is_some_and(|h| h.contains("invalid_token")),
                "{:?}",
                r.headers
            );
            assert!(!r.body.contains("only for the authenticator"), "{}", r.body);
        }
    }
    // Roles PostgreSQL refuses keep failing as it fails them.
    let r = as_role(json!("no_such_role"), "/rpc/whoami");
    assert_error(&r, 401, "22023");
    let r = as_role(json!("ungranted_role"), "/rpc/whoami");
    assert_error(&r, 403, "42501");
    // The authenticator's table stays out of reach of every request role.
    assert_error(&s.get("/authenticator_only"), 401, "42501");
    assert_error(
        &as_role(json!("test_user"), "/authenticator_only"),
        403,
        "42501",
    );
}

/// Backends running `nap`, from pg_stat_activity.
fn napping_backends() -> usize {
    sql_rows(
        "SELECT pid FROM pg_stat_activity
         WHERE state <> 'idle' AND query LIKE '%nap%' AND pid <> pg_backend_pid()",
    )
    .as_array()
    .map_or(0, Vec::len)
}

#[test]
fn a_client_that_goes_away_cancels_its_query() {
    let s = server_with(&[("PGRST_DB_POOL", "1")]);
    let mut client = TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    client
        .write_all(b"GET /rpc/nap?seconds=30 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while napping_backends() == 0 {
        assert!(Instant::now() < deadline, "the query never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    let gone = Instant::now();
    while napping_backends() > 0 {
        assert!(
            gone.elapsed() < Duration::from_secs(1),
            "the query kept running after its client left"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    // The one pool connection is back and usable at once (it would otherwise be held
    // by the 30 s nap).
    let started = Instant::now();
    assert_alive(&s);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// User plus system CPU time of a process so far, from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn out_of_descriptors_the_server_backs_off_quietly_and_recovers() {
    let log = std::env::temp_dir().join(format!("pgrest-emfile-{}.log", std::process::id()));
    let port = pgrest::pgcluster::free_port().unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        &format!("ulimit -n 64 && exec {}", env!("CARGO_BIN_EXE_pgrest")),
    ])
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env(
        "PGRST_DB_URI",
        common::harness()
            .cluster
            .uri_as("authenticator", common::DB),
    )
    .envs(common::BASE_ENV.iter().copied())
    .env("PGRST_SERVER_HOST", "127.0.0.1")
    .env("PGRST_SERVER_PORT", port.to_string())
    .env("PGRST_DB_POOL", "2")
    // Above what 64 descriptors allow, so that accepting runs out of them.
    .env("PGRST_SERVER_MAX_CONNECTIONS", "1000")
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    common::reap_with_tests(&child);
    let s = Server {
        base: format!("http://127.0.0.1:{port}"),
        pid: child.id(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "pgrest did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_alive(&s);
    let held: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_time(s.pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_time(s.pid) - before;
    assert!(
        spent < Duration::from_millis(300),
        "spun for {spent:?} in 2 s"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let failures = text.matches("accept failed").count();
    assert!(
        (1..=3).contains(&failures),
        "{failures} accept failure lines:\n{}",
        &text[..text.len().min(2000)]
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = ureq::get(&format!("{}/numbers?n=eq.1", s.base))
            .timeout(Duration::from_secs(2))
            .call();
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after the descriptors came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
}
