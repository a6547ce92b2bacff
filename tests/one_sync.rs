//! A request's statements share one Sync (db::merge). These tests fail a statement at
//! each place of the envelope (settings, pre-request, main statement at Bind and at
//! Execute, COMMIT's deferred check), on a pool of one connection so that every request
//! after a failure runs on the same connection: any answer put in the wrong place would
//! show up as a wrong answer or a hang in the next request. With and without prepared
//! statements.

mod common;

use std::sync::Once;

use common::{
    assert_json, harness, hs256, server_with, sql_exec, sql_rows, Server, DB, JWT_SECRET,
};
use serde_json::json;

fn fixtures() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        sql_exec(
            "CREATE TABLE test_api.one_sync_items (
               id integer PRIMARY KEY,
               note text CHECK (note <> 'bad'),
               later integer UNIQUE DEFERRABLE INITIALLY DEFERRED
             );
             GRANT ALL ON test_api.one_sync_items TO test_anon;
             INSERT INTO test_api.one_sync_items VALUES (1, 'one', 1);
             CREATE FUNCTION test_api.one_sync_many(n integer) RETURNS SETOF integer
               LANGUAGE sql STABLE AS $$ SELECT generate_series(1, n) $$;
             CREATE FUNCTION test_api.one_sync_divide(n integer) RETURNS integer
               LANGUAGE sql STABLE AS $$ SELECT 10 / n $$;
             CREATE FUNCTION test_api.one_sync_noisy() RETURNS integer LANGUAGE plpgsql
               STABLE AS $$ BEGIN RAISE NOTICE 'a notice mid-run'; RETURN 7; END $$;
             CREATE TABLE test_api.one_sync_bulk (id integer PRIMARY KEY, note text);
             GRANT ALL ON test_api.one_sync_bulk TO test_anon;
             CREATE FUNCTION test_api.one_sync_tx_facts() RETURNS json LANGUAGE sql STABLE AS $$
               SELECT json_build_object(
                 'role', current_user,
                 'method', current_setting('request.method', true),
                 'read_only', current_setting('transaction_read_only'),
                 'isolation', current_setting('transaction_isolation'),
                 'search_path', current_setting('search_path'))
             $$;
             CREATE FUNCTION test_api.one_sync_write() RETURNS integer LANGUAGE sql VOLATILE AS $$
               INSERT INTO test_api.one_sync_bulk VALUES (-1, 'written by a read') RETURNING id
             $$;
             CREATE FUNCTION test_api.one_sync_scratch() RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
               CREATE TEMP TABLE IF NOT EXISTS one_sync_scratch
                 (x integer UNIQUE DEFERRABLE INITIALLY DEFERRED);
             END $$;
             CREATE FUNCTION test_api.one_sync_fails_at_commit() RETURNS integer
               LANGUAGE plpgsql AS $$
             BEGIN
               INSERT INTO one_sync_scratch VALUES (1), (1);
               RETURN 1;
             END $$;
             CREATE TABLE test_api.one_sync_log (mark text, tx xid8, facts json);
             GRANT INSERT ON test_api.one_sync_log TO test_anon;
             CREATE FUNCTION test_api.one_sync_gate() RETURNS void LANGUAGE plpgsql AS $$
             DECLARE
               headers json := current_setting('request.headers', true)::json;
             BEGIN
               IF headers->>'x-refuse' = 'yes' THEN
                 RAISE EXCEPTION 'refused before the request' USING ERRCODE = 'P0001';
               END IF;
               IF headers->>'x-log' IS NOT NULL THEN
                 INSERT INTO test_api.one_sync_log
                   VALUES (headers->>'x-log', pg_current_xact_id(), test_api.one_sync_tx_facts());
               END IF;
             END $$;",
        );
    });
}

fn server(prepared: bool) -> Server {
    fixtures();
    server_with(&[
        ("PGRST_DB_POOL", "1"),
        ("PGRST_JWT_SECRET", JWT_SECRET),
        ("PGRST_DB_PRE_REQUEST", "test_api.one_sync_gate"),
        (
            "PGRST_DB_PREPARED_STATEMENTS",
            if prepared { "true" } else { "false" },
        ),
    ])
}

/// The connection is in order: a read, a call and a write answer as they should.
fn assert_healthy(s: &Server) {
    let r = s.get("/one_sync_items?id=eq.1&select=id,note");
    assert_json(&r, 200, json!([{"id": 1, "note": "one"}]));
    let r = s.get("/rpc/one_sync_many?n=3");
    assert_json(&r, 200, json!([1, 2, 3]));
    let r = s.send(
        "PATCH",
        "/one_sync_items?id=eq.1",
        &[("Prefer", "return=representation")],
        Some(r#"{"note": "one"}"#),
    );
    assert_json(&r, 200, json!([{"id": 1, "note": "one", "later": 1}]));
}

fn assert_code(r: &common::Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.json()["code"], code, "{}", r.body);
}

fn failures_leave_the_connection_in_order(prepared: bool) {
    let s = server(prepared);
    assert_healthy(&s);
    // The settings statement: a role that does not exist.
    let ghost = hs256(json!({"role": "no_such_role_here"}));
    let r = s.get_with(
        "/one_sync_items",
        &[("Authorization", &format!("Bearer {ghost}"))],
    );
    assert_code(&r, 401, "22023");
    assert_healthy(&s);
    // db-pre-request raises.
    let r = s.get_with("/one_sync_items", &[("X-Refuse", "yes")]);
    assert_code(&r, 400, "P0001");
    assert_eq!(r.json()["message"], "refused before the request");
    assert_healthy(&s);
    // The main statement at Bind: a value its column's type does not take.
    let r = s.get("/one_sync_items?id=eq.not-a-number");
    assert_code(&r, 400, "22P02");
    assert_healthy(&s);
    // The main statement at Execute, in a read that ends with COMMIT.
    let r = s.get("/rpc/one_sync_divide?n=0");
    assert_code(&r, 400, "22012");
    assert_eq!(r.json()["message"], "division by zero");
    assert_healthy(&s);
    // Writes: a check constraint, a duplicate key.
    let r = s.send(
        "POST",
        "/one_sync_items",
        &[],
        Some(r#"{"id": 2, "note": "bad"}"#),
    );
    assert_code(&r, 400, "23514");
    let r = s.send(
        "POST",
        "/one_sync_items",
        &[],
        Some(r#"{"id": 1, "note": "again"}"#),
    );
    assert_code(&r, 409, "23505");
    assert_healthy(&s);
    // A deferred unique check fails at the end, after the statement.
    let r = s.send(
        "POST",
        "/one_sync_items",
        &[],
        Some(r#"{"id": 3, "note": "late", "later": 1}"#),
    );
    assert_code(&r, 409, "23505");
    assert_healthy(&s);
    // A big answer (PostgreSQL flushes before the Sync) followed by a normal one.
    let r = s.get("/rpc/one_sync_many?n=200000");
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().map(Vec::len), Some(200_000));
    assert_healthy(&s);
    // A notice in the middle of a run passes to the side.
    let r = s.get("/rpc/one_sync_noisy");
    assert_json(&r, 200, json!(7));
    assert_healthy(&s);
    // Nothing half-applied: only the row of the fixture is there.
    let r = s.get("/one_sync_items?select=id");
    assert_json(&r, 200, json!([{"id": 1}]));
}

#[test]
fn failures_leave_the_connection_in_order_with_prepared_statements() {
    failures_leave_the_connection_in_order(true);
}

#[test]
fn failures_leave_the_connection_in_order_without_prepared_statements() {
    failures_leave_the_connection_in_order(false);
}

#[test]
fn a_statement_timeout_inside_a_run_answers_and_the_next_request_runs() {
    let s = server(true);
    let r = s.get("/rpc/impatient_sleep");
    assert_code(&r, 500, "57014");
    assert_healthy(&s);
}

/// Mixed successes and failures from several clients over two connections: each answer
/// is its own request's.
#[test]
fn concurrent_mixed_requests_each_get_their_own_answer() {
    fixtures();
    let s = server_with(&[("PGRST_DB_POOL", "2")]);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..60 {
                    match (t + i) % 3 {
                        0 => {
                            let r = s.get(&format!("/rpc/one_sync_many?n={}", i + 1));
                            assert_eq!(r.status, 200, "{}", r.body);
                            assert_eq!(r.json().as_array().map(Vec::len), Some(i + 1));
                        }
                        1 => {
                            let r = s.get("/one_sync_items?id=eq.x");
                            assert_code(&r, 400, "22P02");
                        }
                        _ => {
                            let r = s.send("POST", "/one_sync_items", &[], Some(r#"{"id": 1}"#));
                            assert_code(&r, 409, "23505");
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
}

/// Pool connections open their own sockets (db::connect): over PostgreSQL's Unix socket
/// too, failures included.
#[test]
fn the_envelope_runs_over_the_unix_socket() {
    fixtures();
    let cluster = &common::harness().cluster;
    let socket_dir = cluster.data_dir().parent().expect("cluster dir").to_owned();
    let uri = format!(
        "postgresql:///{}?host={}&port={}&user=authenticator",
        common::DB,
        socket_dir.display(),
        cluster.port
    );
    let s = server_with(&[
        ("PGRST_DB_URI", &uri),
        ("PGRST_DB_POOL", "1"),
        ("PGRST_DB_PRE_REQUEST", "test_api.one_sync_gate"),
    ]);
    assert_healthy(&s);
    let r = s.get("/one_sync_items?id=eq.x");
    assert_code(&r, 400, "22P02");
    assert_healthy(&s);
}

/// A write whose body spans many of the adapter's 64 KB write chunks (its messages cut
/// across them), under one Sync with BEGIN, the settings and COMMIT.
#[test]
fn a_body_of_many_chunks_goes_through_whole() {
    let s = server(true);
    let rows: Vec<_> = (0..20_000)
        .map(|i| json!({"id": i, "note": format!("row {i} of a big body")}))
        .collect();
    let body = serde_json::to_string(&rows).unwrap();
    assert!(body.len() > 10 * 64 * 1024, "{}", body.len());
    let r = s.send(
        "POST",
        "/one_sync_bulk",
        &[
            ("Content-Type", "application/json"),
            ("Prefer", "return=minimal"),
        ],
        Some(&body),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.get_with(
        "/one_sync_bulk?select=id&id=gte.19998&order=id",
        &[("Prefer", "count=exact")],
    );
    assert_json(&r, 200, json!([{"id": 19998}, {"id": 19999}]));
    assert_eq!(r.header("Content-Range"), Some("0-1/2"));
    let r = s.send("DELETE", "/one_sync_bulk", &[], None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_healthy(&s);
}

/// A read's statements run without BEGIN/COMMIT once they are prepared (the transaction
/// PostgreSQL opens for them under their one Sync): the first request prepares them
/// inside BEGIN ... COMMIT, the later ones must see the same transaction: the role and
/// the request settings of the settings statement (transaction-local), read-only, READ
/// COMMITTED.
fn reads_are_one_read_only_transaction(prepared: bool) {
    let s = server(prepared);
    for _ in 0..3 {
        let r = s.get("/rpc/one_sync_tx_facts");
        assert_json(
            &r,
            200,
            json!({"role": "test_anon", "method": "GET", "read_only": "on",
                   "isolation": "read committed",
                   "search_path": "\"test_api\", \"public\""}),
        );
        let r = s.get("/rpc/one_sync_write");
        assert_code(&r, 405, "25006");
    }
    // A POST call of a STABLE function is read-only too (it keeps BEGIN READ ONLY).
    let r = s.send(
        "POST",
        "/rpc/one_sync_tx_facts",
        &[("Content-Type", "application/json")],
        Some("{}"),
    );
    assert_json(
        &r,
        200,
        json!({"role": "test_anon", "method": "POST", "read_only": "on",
               "isolation": "read committed",
               "search_path": "\"test_api\", \"public\""}),
    );
    let r = s.get("/one_sync_bulk?id=eq.-1");
    assert_json(&r, 200, json!([]));
    assert_healthy(&s);
}

#[test]
fn reads_are_one_read_only_transaction_with_prepared_statements() {
    reads_are_one_read_only_transaction(true);
}

#[test]
fn reads_are_one_read_only_transaction_without_prepared_statements() {
    reads_are_one_read_only_transaction(false);
}

/// A read's commit can still fail: a temporary table may be written in a read-only
/// transaction, and its deferred unique constraint is checked at commit. With COMMIT left
/// to the Sync the error must still come back (as the last statement's), on the first
/// request (BEGIN ... COMMIT while preparing) and the later ones (no BEGIN, no COMMIT).
fn a_read_failing_at_commit_answers_the_error(prepared: bool) {
    let s = server(prepared);
    let r = s.send("POST", "/rpc/one_sync_scratch", &[], Some("{}"));
    assert_eq!(r.status, 204, "{}", r.body);
    for _ in 0..3 {
        let r = s.get("/rpc/one_sync_fails_at_commit");
        assert_code(&r, 409, "23505");
    }
    assert_healthy(&s);
}

#[test]
fn a_read_failing_at_commit_answers_the_error_with_prepared_statements() {
    a_read_failing_at_commit_answers_the_error(true);
}

#[test]
fn a_read_failing_at_commit_answers_the_error_without_prepared_statements() {
    a_read_failing_at_commit_answers_the_error(false);
}

/// A server of one pool connection whose session starts with `setting` (`name%3Dvalue`,
/// set in the connection string; a database or role default does the same), and `extra`.
fn server_on_a_session_with(setting: &str, extra: &[(&str, &str)]) -> Server {
    fixtures();
    let uri = format!(
        "{}?options=-c%20{setting}",
        harness().cluster.uri_as("authenticator", DB)
    );
    let mut env = vec![("PGRST_DB_POOL", "1"), ("PGRST_DB_URI", uri.as_str())];
    env.extend_from_slice(extra);
    server_with(&env)
}

/// A session whose default isolation is not READ COMMITTED keeps BEGIN for its reads: they
/// still run READ COMMITTED, as PostgREST's do, and read-only.
#[test]
fn reads_keep_read_committed_on_a_session_that_defaults_to_serializable() {
    let s = server_on_a_session_with("default_transaction_isolation%3Dserializable", &[]);
    for _ in 0..3 {
        let r = s.get("/rpc/one_sync_tx_facts");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["isolation"], "read committed", "{}", r.body);
        assert_eq!(r.json()["read_only"], "on", "{}", r.body);
        let r = s.get("/rpc/one_sync_write");
        assert_code(&r, 405, "25006");
    }
}

/// A write runs as one READ COMMITTED, READ WRITE transaction (without BEGIN and COMMIT
/// once its statements are prepared): what db-pre-request wrote is kept with the row, in
/// the same transaction, and dropped with it when the write fails, on the first request
/// (statements prepared inside BEGIN ... COMMIT) and the later ones.
fn writes_are_one_transaction(s: &Server, mark: &str, first_id: i64) {
    for id in first_id..first_id + 3 {
        let body = format!(r#"{{"id": {id}, "note": "logged"}}"#);
        let logged = [("X-Log", mark), ("Prefer", "return=representation")];
        let r = s.send("POST", "/one_sync_bulk", &logged, Some(&body));
        assert_json(&r, 201, json!([{"id": id, "note": "logged"}]));
        let r = s.send("POST", "/one_sync_bulk", &logged, Some(&body));
        assert_code(&r, 409, "23505");
    }
    let logged = sql_rows(&format!(
        "SELECT b.id, l.facts FROM test_api.one_sync_log l
           LEFT JOIN test_api.one_sync_bulk b
             ON b.xmin::text = (l.tx::text::bigint % 4294967296)::text
          WHERE l.mark = '{mark}' ORDER BY b.id"
    ));
    let facts = json!({"role": "test_anon", "method": "POST", "read_only": "off",
                       "isolation": "read committed",
                       "search_path": "\"test_api\", \"public\""});
    let expected: Vec<_> = (first_id..first_id + 3)
        .map(|id| json!({"id": id, "facts": facts}))
        .collect();
    assert_eq!(logged, json!(expected));
}

#[test]
fn writes_are_one_transaction_with_prepared_statements() {
    let s = server(true);
    writes_are_one_transaction(&s, "prepared", 1000);
    assert_healthy(&s);
}

#[test]
fn writes_are_one_transaction_without_prepared_statements() {
    let s = server(false);
    writes_are_one_transaction(&s, "unprepared", 2000);
    assert_healthy(&s);
}

/// A session whose transactions start read-only (a standby's way, or a role's or
/// database's default) keeps BEGIN ... READ WRITE for writes, which then work as
/// anywhere else, while reads stay read-only.
#[test]
fn writes_keep_read_write_on_a_session_that_defaults_to_read_only() {
    let s = server_on_a_session_with(
        "default_transaction_read_only%3Don",
        &[("PGRST_DB_PRE_REQUEST", "test_api.one_sync_gate")],
    );
    writes_are_one_transaction(&s, "read-only session", 3000);
    for _ in 0..3 {
        let r = s.get("/rpc/one_sync_tx_facts");
        assert_eq!(r.json()["read_only"], "on", "{}", r.body);
        let r = s.get("/rpc/one_sync_write");
        assert_code(&r, 405, "25006");
    }
}

/// Requests whose client leaves as soon as it has sent them: hyper drops such a request
/// while its statements may still be queued unwritten. Every statement that runs must
/// still run in the request's transaction, as its role; none as the authenticator in a
/// transaction of its own.
#[test]
fn a_request_whose_client_leaves_at_once_runs_as_its_role_or_not_at_all() {
    use std::io::Write;
    fixtures();
    sql_exec(
        "CREATE TABLE IF NOT EXISTS test_api.one_sync_callers (tag text, by_role text);
         GRANT INSERT ON test_api.one_sync_callers TO PUBLIC;
         CREATE OR REPLACE FUNCTION test_api.one_sync_note_caller(tag text) RETURNS integer
           LANGUAGE sql VOLATILE AS $$
             INSERT INTO test_api.one_sync_callers VALUES (tag, current_user) RETURNING 1
           $$;
         GRANT EXECUTE ON FUNCTION test_api.one_sync_note_caller(text) TO PUBLIC;
         NOTIFY pgrst, 'reload schema';",
    );
    let s = server_with(&[("PGRST_DB_POOL", "2"), ("TOKIO_WORKER_THREADS", "1")]);
    common::wait_for("the caller function", || {
        s.send(
            "POST",
            "/rpc/one_sync_note_caller",
            &[("Content-Type", "application/json")],
            Some(r#"{"tag": "warm-up"}"#),
        )
        .status
            == 200
    });
    let body = r#"{"tag": "gone"}"#;
    let request = format!(
        "POST /rpc/one_sync_note_caller HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Leaving at once, and after up to a millisecond: somewhere in there the request is
    // dropped between queueing its statements and their being written.
    for i in 0..600u64 {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", s.port())).unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(i * 7 % 1000));
        let _ = conn.shutdown(std::net::Shutdown::Both);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = s.send(
        "POST",
        "/rpc/one_sync_note_caller",
        &[("Content-Type", "application/json")],
        Some(r#"{"tag": "after"}"#),
    );
    assert_json(&r, 200, json!(1));
    let roles = sql_rows(
        "SELECT DISTINCT by_role FROM test_api.one_sync_callers WHERE tag IN ('gone', 'after')",
    );
    assert_eq!(roles, json!([{"by_role": "test_anon"}]));
}
