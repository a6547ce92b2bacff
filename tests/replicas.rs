//! Read replicas (db-replica-uris) against a real primary and real streaming standbys:
//! routing, a standby going away mid-load, a lagging standby, read-your-writes, and every
//! standby down. Each test starts its own primary and standbys (it stops or pauses
//! them), all torn down when the test ends or the test process exits.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use pgrest::pgcluster::{free_port, TempCluster};

const DB: &str = "app";

const SCHEMA: &str = r#"
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE anon;
GRANT anon TO authenticator;
CREATE SCHEMA api;
GRANT USAGE ON SCHEMA api TO anon;
CREATE TABLE api.items (id int PRIMARY KEY, note text);
GRANT SELECT, INSERT ON api.items TO anon;
CREATE TABLE api.ticks (n serial PRIMARY KEY, at timestamptz DEFAULT now());
CREATE VIEW api.server AS
  SELECT pg_is_in_recovery() AS standby, current_setting('port')::int AS port;
GRANT SELECT ON api.server TO anon;
CREATE FUNCTION api.whoami() RETURNS json STABLE LANGUAGE sql AS $$
  SELECT json_build_object('standby', pg_is_in_recovery(), 'port', current_setting('port')::int)
$$;
CREATE FUNCTION api.whoami_volatile() RETURNS json VOLATILE LANGUAGE sql AS $$
  SELECT json_build_object('standby', pg_is_in_recovery(), 'port', current_setting('port')::int)
$$;
CREATE FUNCTION api.whoami_serializable() RETURNS json STABLE LANGUAGE sql
  SET default_transaction_isolation = 'serializable' AS $$
  SELECT json_build_object('standby', pg_is_in_recovery(), 'port', current_setting('port')::int)
$$;
CREATE FUNCTION api.pre() RETURNS void LANGUAGE sql AS $$ SELECT $$;
"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A primary with the schema above and `n` streaming standbys of it; stopped when
/// dropped (and when the test process exits, should it die first).
struct Replicated {
    primary: TempCluster,
    standbys: Vec<TempCluster>,
}

impl Replicated {
    fn start(name: &str, n: usize) -> Replicated {
        let primary = TempCluster::start(&format!("{name}-primary")).expect("start primary");
        primary.stop_when_process_exits(std::process::id());
        let rt = runtime();
        rt.block_on(primary.execute("postgres", &format!("CREATE DATABASE {DB}")))
            .expect("create database");
        rt.block_on(primary.execute(DB, SCHEMA)).expect("schema");
        // The test clusters run with synchronous_commit off: a commit's WAL is flushed
        // (and so streamed) by the WAL writer, every 200 ms by default; 10 ms keeps
        // standbys close behind, as a primary with synchronous commits has them.
        for sql in [
            "ALTER SYSTEM SET wal_writer_delay = '10ms'",
            "SELECT pg_reload_conf()",
        ] {
            rt.block_on(primary.execute("postgres", sql))
                .expect("wal_writer_delay");
        }
        let standbys = (0..n)
            .map(|i| {
                let s = primary
                    .start_standby(&format!("{name}-standby{i}"))
                    .expect("start standby");
                s.stop_when_process_exits(std::process::id());
                s
            })
            .collect();
        Replicated { primary, standbys }
    }

    fn replica_uris(&self) -> String {
        let uris: Vec<String> = self
            .standbys
            .iter()
            .map(|s| s.uri_as("authenticator", DB))
            .collect();
        uris.join(",")
    }

    /// Runs SQL as the superuser on the primary (`None`) or a standby.
    fn sql(&self, on: Option<usize>, sql: &str) {
        let cluster = on.map_or(&self.primary, |i| &self.standbys[i]);
        runtime().block_on(cluster.execute(DB, sql)).expect("sql");
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        for s in &self.standbys {
            s.stop();
        }
        self.primary.stop();
    }
}

/// A pgrest serving the primary with the standbys as replicas, its admin server on
/// `admin`; killed when dropped.
struct Pgrest {
    server: Server,
    admin: u16,
    child: Child,
}

impl Drop for Pgrest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgrest(c: &Replicated, extra: &[(&str, &str)]) -> Pgrest {
    let admin = free_port().expect("free port");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgrest"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGRST_DB_URI", c.primary.uri_as("authenticator", DB))
        .env("PGRST_DB_SCHEMAS", "api")
        .env("PGRST_DB_ANON_ROLE", "anon")
        .env("PGRST_DB_REPLICA_URIS", c.replica_uris())
        .env("PGRST_ADMIN_SERVER_PORT", admin.to_string())
        .env("PGRST_LOG_LEVEL", "warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let (server, child) = common::spawn_server(cmd);
    Pgrest {
        server,
        admin,
        child,
    }
}

impl Pgrest {
    fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin);
        ureq::get(&url)
            .call()
            .expect("/metrics")
            .into_string()
            .unwrap()
    }

    /// A per-replica sample of /metrics.
    fn replica_metric(&self, name: &str, standby: &TempCluster) -> f64 {
        let prefix = format!("{name}{{replica=\"127.0.0.1:{}\"}} ", standby.port);
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
            .parse()
            .expect("a number")
    }

    fn healthy(&self, standby: &TempCluster) -> bool {
        self.replica_metric("pgrst_db_replica_healthy", standby) == 1.0
    }

    /// Waits until each standby's health is as `want` says.
    #[track_caller]
    fn await_health(&self, c: &Replicated, want: &[bool]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now: Vec<bool> = c.standbys.iter().map(|s| self.healthy(s)).collect();
            if now == want {
                return;
            }
            assert!(Instant::now() < deadline, "health {now:?}, wanted {want:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Who answered a call of `function` by `method`: (standby?, port).
    #[track_caller]
    fn who(&self, method: &str, function: &str) -> (bool, u16) {
        let r = self
            .server
            .send(method, &format!("/rpc/{function}"), &[], None);
        assert_eq!(r.status, 200, "{method} {function}: {}", r.body);
        answer(&r.json())
    }
}

fn answer(v: &serde_json::Value) -> (bool, u16) {
    let standby = v["standby"].as_bool().expect("standby");
    (standby, v["port"].as_u64().expect("port") as u16)
}

fn ports(c: &Replicated) -> Vec<u16> {
    c.standbys.iter().map(|s| s.port).collect()
}

#[test]
fn reads_go_to_the_standbys_and_writes_and_volatile_calls_to_the_primary() {
    let c = Replicated::start("routing", 2);
    let p = pgrest(&c, &[]);
    p.await_health(&c, &[true, true]);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (standby, port) = p.who("GET", "whoami");
        assert!(standby && ports(&c).contains(&port), "{port}");
        seen.insert(port);
    }
    assert_eq!(seen.len(), 2, "equally idle standbys take turns");
    // A view, a HEAD and a STABLE function called by POST (read-only, as PostgREST runs
    // it) are reads too.
    let r = p.server.get("/server");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(answer(&r.json()[0]).0);
    assert!(p.who("POST", "whoami").0);
    assert_eq!(p.server.request("HEAD", "/items", &[]).status, 200);
    // A volatile function may write: the primary, by GET as by POST.
    assert_eq!(p.who("GET", "whoami_volatile"), (false, c.primary.port));
    assert_eq!(p.who("POST", "whoami_volatile"), (false, c.primary.port));
    // A hot standby cannot run SERIALIZABLE transactions.
    assert_eq!(p.who("GET", "whoami_serializable"), (false, c.primary.port));
    // A write answers with its commit LSN, exposed to browser scripts.
    let w = p.server.send(
        "POST",
        "/items",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://a.example"),
        ],
        Some(r#"{"id": 1}"#),
    );
    assert_eq!(w.status, 201, "{}", w.body);
    let lsn = w.header("X-Pgrst-Lsn").expect("X-Pgrst-Lsn on a write");
    assert!(pgrest::db::replicas::Lsn::parse(lsn).is_some(), "{lsn}");
    let exposed = w.header("Access-Control-Expose-Headers").unwrap();
    assert!(exposed.ends_with(", X-Pgrst-Lsn"), "{exposed}");
    // A volatile call commits too, and says where.
    let v = p.server.send("POST", "/rpc/whoami_volatile", &[], None);
    assert!(v.header("X-Pgrst-Lsn").is_some());
    // So does a write decided after its statement (a singular answer is checked before
    // COMMIT), at or past the earlier write's position.
    let d = p.server.send(
        "POST",
        "/items",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/vnd.pgrst.object+json"),
            ("Prefer", "return=representation"),
        ],
        Some(r#"{"id": 3}"#),
    );
    assert_eq!(d.status, 201, "{}", d.body);
    let later = d
        .header("X-Pgrst-Lsn")
        .expect("X-Pgrst-Lsn on a decided write");
    let (first, later) = (
        pgrest::db::replicas::Lsn::parse(lsn).unwrap(),
        pgrest::db::replicas::Lsn::parse(later).unwrap(),
    );
    assert!(later >= first, "{later} before {first}");
    assert!(p.server.get("/items").header("X-Pgrst-Lsn").is_none());
    // A malformed LSN is the client's mistake: 400 in PostgREST's error shape.
    for bad in ["banana", "0/", "1/2/3", "0/1;", "100000000/0"] {
        let r = p
            .server
            .get_with("/rpc/whoami", &[("X-Pgrst-Lsn", bad), ("Cookie", "a=b")]);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        let body = r.json();
        assert_eq!(body["code"], "PGRST100", "{body}");
        assert!(body["message"].as_str().unwrap().contains("X-Pgrst-Lsn"));
        assert!(body.get("hint").is_some() && body.get("details").is_some());
    }
    let r = p
        .server
        .get_with("/rpc/whoami", &[("Cookie", "pgrst_lsn=zz")]);
    assert_eq!(r.status, 400, "{}", r.body);
    // With a db-pre-request (it may write) everything goes to the primary.
    let pre = pgrest(&c, &[("PGRST_DB_PRE_REQUEST", "api.pre")]);
    assert_eq!(pre.who("GET", "whoami"), (false, c.primary.port));
    // Without prepared statements (a pooler in transaction mode) writes report their
    // LSN too, committed with the statement or after a decision.
    let unprepared = pgrest(&c, &[("PGRST_DB_PREPARED_STATEMENTS", "false")]);
    for (id, accept) in [
        (4, "application/json"),
        (5, "application/vnd.pgrst.object+json"),
    ] {
        let w = unprepared.server.send(
            "POST",
            "/items",
            &[
                ("Content-Type", "application/json"),
                ("Accept", accept),
                ("Prefer", "return=representation"),
            ],
            Some(&format!(r#"{{"id": {id}}}"#)),
        );
        assert_eq!(w.status, 201, "{}", w.body);
        let lsn = w
            .header("X-Pgrst-Lsn")
            .expect("X-Pgrst-Lsn without prepared statements");
        assert!(pgrest::db::replicas::Lsn::parse(lsn).is_some(), "{lsn}");
    }
    // Without replicas nothing changes: no LSN header, the header is not even read.
    let plain = pgrest(&c, &[("PGRST_DB_REPLICA_URIS", "")]);
    assert_eq!(plain.who("GET", "whoami"), (false, c.primary.port));
    let w = plain.server.send(
        "POST",
        "/items",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://a.example"),
        ],
        Some(r#"{"id": 2}"#),
    );
    assert_eq!(w.status, 201, "{}", w.body);
    assert!(w.header("X-Pgrst-Lsn").is_none());
    assert!(!w
        .header("Access-Control-Expose-Headers")
        .unwrap()
        .contains("Lsn"));
    let r = plain
        .server
        .get_with("/rpc/whoami", &[("X-Pgrst-Lsn", "banana")]);
    assert_eq!(r.status, 200);
    assert!(plain.metrics().find("pgrst_db_replica").is_none());
}

/// Sends `GET /rpc/whoami` in a loop on `threads` threads until `stop`; every answer
/// that is not 200 is a failure.
fn load(
    server: &Server,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<(usize, Vec<String>)>> {
    (0..threads)
        .map(|_| {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut n, mut failures) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let r = server.get("/rpc/whoami");
                    n += 1;
                    if r.status != 200 {
                        failures.push(format!("{} {}", r.status, r.body));
                    }
                }
                (n, failures)
            })
        })
        .collect()
}

#[test]
fn standbys_stopped_mid_load_leave_reads_answering_and_the_primary_serves_when_none_is_left() {
    let c = Replicated::start("outage", 2);
    let p = pgrest(&c, &[]);
    p.await_health(&c, &[true, true]);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&p.server, 4, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let stopped = Instant::now();
    c.standbys[0].pause().expect("stop standby 0");
    p.await_health(&c, &[false, true]);
    eprintln!(
        "standby 0 left the rotation {:?} after its stop",
        stopped.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    c.standbys[1].pause().expect("stop standby 1");
    p.await_health(&c, &[false, false]);
    std::thread::sleep(Duration::from_millis(500));
    // Every standby down: the primary answers.
    assert_eq!(p.who("GET", "whoami"), (false, c.primary.port));
    c.standbys[0].resume().expect("restart standby 0");
    let restarted = Instant::now();
    p.await_health(&c, &[true, false]);
    eprintln!(
        "standby 0 back in the rotation {:?} after its restart",
        restarted.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (n, failures) = w.join().unwrap();
        total += n;
        assert!(failures.is_empty(), "{failures:?}");
    }
    let retried: f64 = c
        .standbys
        .iter()
        .map(|s| p.replica_metric("pgrst_db_replica_failures_total", s))
        .sum();
    eprintln!("{total} reads under load, all 200; {retried} retried on the primary");
    assert_eq!(p.who("GET", "whoami"), (true, c.standbys[0].port));
}

#[test]
fn a_standby_that_lags_past_the_bound_leaves_the_rotation_until_it_catches_up() {
    let c = Replicated::start("lag", 2);
    let p = pgrest(&c, &[("PGRST_DB_REPLICA_MAX_LAG", "300")]);
    p.await_health(&c, &[true, true]);
    c.sql(Some(0), "SELECT pg_wal_replay_pause()");
    // Lag is the age of the last transaction replayed while more WAL waits: it grows
    // only while the primary commits.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, uri) = (stop.clone(), c.primary.uri(DB));
        std::thread::spawn(move || {
            runtime().block_on(async {
                let (client, conn) = tokio_postgres::connect(&uri, tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    client
                        .batch_execute("INSERT INTO api.ticks DEFAULT VALUES")
                        .await
                        .expect("insert");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
    };
    let paused = Instant::now();
    p.await_health(&c, &[false, true]);
    eprintln!(
        "paused standby left the rotation {:?} after the pause",
        paused.elapsed()
    );
    assert!(p.replica_metric("pgrst_db_replica_lag_seconds", &c.standbys[0]) > 0.3);
    // Out of the rotation: it serves nothing (the other standby, or the primary should
    // that one lag too on these busy cores).
    for _ in 0..20 {
        assert_ne!(p.who("GET", "whoami").1, c.standbys[0].port);
    }
    c.sql(Some(0), "SELECT pg_wal_replay_resume()");
    let resumed = Instant::now();
    p.await_health(&c, &[true, true]);
    eprintln!(
        "resumed standby back {:?} after the resume",
        resumed.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

/// Writes `ids` through pgrest and reads each back at once with the write's LSN (as the
/// header, or the cookie every other time): every read sees its write. Returns the
/// reads' mean latency.
fn write_then_read(p: &Pgrest, ids: std::ops::RangeInclusive<i64>) -> Duration {
    let json = [("Content-Type", "application/json")];
    let (mut reading, mut n) = (Duration::ZERO, 0);
    for id in ids {
        let w = p
            .server
            .send("POST", "/items", &json, Some(&format!(r#"{{"id": {id}}}"#)));
        assert_eq!(w.status, 201, "{}", w.body);
        let lsn = w.header("X-Pgrst-Lsn").expect("LSN").to_string();
        let path = format!("/items?id=eq.{id}&select=id");
        let started = Instant::now();
        let r = if id % 2 == 0 {
            p.server.get_with(&path, &[("X-Pgrst-Lsn", &lsn)])
        } else {
            let cookie = format!("pgrst_lsn={lsn}");
            p.server.get_with(&path, &[("Cookie", &cookie)])
        };
        reading += started.elapsed();
        n += 1;
        assert_eq!(r.status, 200, "{}", r.body);
        let expected = serde_json::json!([{ "id": id }]);
        assert_eq!(r.json(), expected, "write {id} at {lsn}");
    }
    reading / n.max(1)
}

/// Reads each standby served, and reads the primary served in their place.
fn served(p: &Pgrest, c: &Replicated) -> (Vec<f64>, f64) {
    let on = c
        .standbys
        .iter()
        .map(|s| p.replica_metric("pgrst_db_replica_requests_total", s))
        .collect();
    let text = p.metrics();
    let fallbacks = text
        .lines()
        .find_map(|l| l.strip_prefix("pgrst_db_replica_fallbacks_total "))
        .and_then(|n| n.parse().ok())
        .expect("fallbacks");
    (on, fallbacks)
}

#[test]
fn a_read_with_the_lsn_of_a_write_sees_it_every_time() {
    let c = Replicated::start("ryw", 2);
    // One standby applies each commit 50 ms late: without the LSN, a read right after a
    // write would often miss it there.
    c.sql(
        Some(0),
        "ALTER SYSTEM SET recovery_min_apply_delay = '50ms'",
    );
    c.sql(Some(0), "SELECT pg_reload_conf()");
    // pgrest's commits wait for their WAL flush, as a production primary's do (the test
    // cluster's default is off): streamed at once, not at the WAL writer's next round.
    c.sql(None, "ALTER ROLE authenticator SET synchronous_commit = on");
    let p = pgrest(&c, &[]);
    p.await_health(&c, &[true, true]);
    let mean = write_then_read(&p, 1..=200);
    let (on, fallbacks) = served(&p, &c);
    eprintln!(
        "200 reads of own writes, 2 standbys: standbys {on:?}, primary {fallbacks}, {mean:?} each"
    );
    assert!(on.iter().sum::<f64>() > 0.0, "no read went to a standby");
    // Only the slow standby left: reads wait for it to replay their write (or go to the
    // primary), and still see it.
    c.standbys[1].pause().expect("stop standby 1");
    p.await_health(&c, &[true, false]);
    let mean = write_then_read(&p, 201..=260);
    let (after, fallbacks) = served(&p, &c);
    eprintln!(
        "60 more, the slow standby alone: standbys {after:?}, primary {fallbacks}, {mean:?} each"
    );
    assert!(after[0] > on[0], "the slow standby served none");
}

#[test]
fn a_promoted_standby_leaves_the_rotation() {
    let c = Replicated::start("promoted", 1);
    let p = pgrest(&c, &[]);
    p.await_health(&c, &[true]);
    assert_eq!(p.who("GET", "whoami"), (true, c.standbys[0].port));
    // Promoted, it takes writes of its own: reading there would miss the primary's.
    c.sql(Some(0), "SELECT pg_promote()");
    p.await_health(&c, &[false]);
    for _ in 0..5 {
        assert_eq!(p.who("GET", "whoami"), (false, c.primary.port));
    }
}
