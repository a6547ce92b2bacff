//! Streamed reads (db::stream): a big JSON array goes out as PostgreSQL produces it,
//! chunked; a small one whole with its Content-Length. The head is right whatever the
//! size (Content-Range, counts, response GUCs set by any row, errors in any row), a body
//! that fails after its first byte breaks off instead of ending short, and a client that
//! goes away or stops reading gives its connection back (each server here has a pool of
//! one connection, so a connection kept would show up as the next request hanging).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Once;
use std::time::{Duration, Instant};

use common::{server_with, sql_exec, sql_rows, Server};

/// Rows in the big table: about 9 MB of JSON, far past what is read before the
/// response starts (256 KiB) and past what socket buffers hold.
const ROWS: i64 = 200_000;

fn fixtures() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        sql_exec(&format!(
            "CREATE TABLE test_api.stream_rows (id integer PRIMARY KEY, note text);
             INSERT INTO test_api.stream_rows
               SELECT g, 'row ' || g || ' with \"quotes\" and ünïcode' FROM generate_series(1, {ROWS}) g;
             GRANT SELECT ON test_api.stream_rows TO test_anon;
             CREATE FUNCTION test_api.stream_mark(test_api.stream_rows) RETURNS integer
               LANGUAGE plpgsql STABLE AS $$
               BEGIN
                 PERFORM set_config('response.headers',
                   json_build_array(json_build_object('x-last-row', $1.id))::text, true);
                 PERFORM set_config('response.status', '203', true);
                 RETURN $1.id;
               END $$;
             CREATE FUNCTION test_api.stream_fail(test_api.stream_rows) RETURNS integer
               LANGUAGE plpgsql STABLE AS $$
               BEGIN
                 IF $1.id = {ROWS} - 1 THEN
                   RAISE EXCEPTION 'row % refused', $1.id USING ERRCODE = 'P0001';
                 END IF;
                 RETURN $1.id;
               END $$;"
        ));
    });
}

fn server(prepared: bool) -> Server {
    server_for(prepared, "shared")
}

/// A server of its own for a test that holds or breaks its one connection (tests run
/// side by side and share servers of the same settings).
fn server_for(prepared: bool, purpose: &str) -> Server {
    fixtures();
    server_with(&[
        ("PGRST_DB_POOL", "1"),
        (
            "PGRST_DB_PREPARED_STATEMENTS",
            if prepared { "true" } else { "false" },
        ),
        ("PGRST_APP_SETTINGS_purpose", purpose),
    ])
}

/// What json_agg makes of the same rows: the body must be these bytes exactly.
fn aggregated(select: &str, filter: &str) -> String {
    let rows = sql_rows(&format!(
        "SELECT json_agg(t)::text AS body FROM (SELECT {select} FROM test_api.stream_rows {filter} ORDER BY id) t"
    ));
    rows[0]["body"].as_str().unwrap_or("[]").to_string()
}

/// A raw HTTP/1.1 exchange: the head as text, and the rest of what came before the
/// server closed the connection.
struct Raw {
    head: String,
    rest: Vec<u8>,
}

fn raw_get(s: &Server, path: &str) -> (TcpStream, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", s.port())).expect("connect");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).expect("read the head");
        head.push(byte[0]);
    }
    (conn, String::from_utf8(head).expect("head"))
}

fn raw_read_all(s: &Server, path: &str) -> Raw {
    let (mut conn, head) = raw_get(s, path);
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    Raw { head, rest }
}

/// The body of a chunked transfer, and whether its last (zero-length) chunk came.
fn dechunk(mut bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = bytes.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size = std::str::from_utf8(&bytes[..eol])
            .ok()
            .and_then(|h| usize::from_str_radix(h.trim(), 16).ok());
        let Some(size) = size else {
            return (body, false);
        };
        bytes = &bytes[eol + 2..];
        if size == 0 {
            return (body, bytes.starts_with(b"\r\n"));
        }
        if bytes.len() < size + 2 {
            body.extend_from_slice(&bytes[..bytes.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// No backend runs, or sits in a transaction after, a statement naming `marker` (an
/// alias in the test's select).
fn assert_no_backend_busy(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let busy = sql_rows(&format!(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND state <> 'idle' \
             AND query LIKE '%{marker}%' AND query NOT LIKE '%pg_stat_activity%'"
        ));
        if busy.as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
        assert!(Instant::now() < deadline, "backends still busy: {busy}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn streams_a_big_read_byte_for_byte(prepared: bool) {
    let s = server(prepared);
    let r = raw_read_all(&s, "/stream_rows?order=id&select=bytes_marker:id,note");
    assert!(r.head.starts_with("HTTP/1.1 200"), "{}", r.head);
    assert_eq!(
        header(&r.head, "transfer-encoding"),
        Some("chunked"),
        "{}",
        r.head
    );
    assert_eq!(header(&r.head, "content-length"), None);
    assert_eq!(
        header(&r.head, "content-range"),
        Some(&*format!("0-{}/*", ROWS - 1))
    );
    let (body, ended) = dechunk(&r.rest);
    assert!(ended, "the body's last chunk is missing");
    let expected = aggregated("id AS bytes_marker, note", "");
    assert_eq!(String::from_utf8(body).expect("utf-8"), expected);
    assert_no_backend_busy("bytes_marker");
}

#[test]
fn a_big_read_streams_the_bytes_json_agg_would_give() {
    streams_a_big_read_byte_for_byte(true);
}

#[test]
fn a_big_read_streams_without_prepared_statements() {
    streams_a_big_read_byte_for_byte(false);
}

#[test]
fn a_small_unbounded_read_is_sent_whole() {
    let s = server(true);
    let r = s.get("/stream_rows?id=lte.3000&order=id&select=id");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), None);
    assert_eq!(
        r.header("content-length").map(str::to_string),
        Some(r.body.len().to_string())
    );
    assert_eq!(r.body, aggregated("id", "WHERE id <= 3000"));
    let empty = s.get("/stream_rows?id=lt.0");
    assert_eq!((empty.status, empty.body.as_str()), (200, "[]"));
    assert_eq!(empty.header("content-range"), Some("*/*"));
}

#[test]
fn counts_and_pages_of_a_streamed_read() {
    let s = server(true);
    let r = s.get_with(
        "/stream_rows?id=gt.10&select=id",
        &[("Prefer", "count=exact")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("0-{}/{}", ROWS - 11, ROWS - 10))
    );
    assert_eq!(r.json().as_array().map(Vec::len), Some(ROWS as usize - 10));
    let r = s.get_with(
        "/stream_rows?offset=5&select=id",
        &[("Prefer", "count=exact")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("5-{}/{ROWS}", ROWS - 1))
    );
}

#[test]
fn response_gucs_set_by_the_last_row_reach_the_head() {
    let s = server(true);
    let r = s.get("/stream_rows?select=id,stream_mark&order=id");
    assert_eq!(r.status, 203, "{}", &r.body[..200.min(r.body.len())]);
    assert_eq!(r.header("x-last-row"), Some(&*ROWS.to_string()));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.json().as_array().map(Vec::len), Some(ROWS as usize));
}

#[test]
fn an_error_in_a_late_row_is_an_error_response() {
    let s = server(true);
    let r = s.get("/stream_rows?select=id,stream_fail&order=id");
    assert_eq!(r.status, 400, "{}", &r.body[..200.min(r.body.len())]);
    assert_eq!(r.json()["code"], "P0001");
    assert_eq!(r.json()["message"], format!("row {} refused", ROWS - 1));
    assert_eq!(
        s.get("/stream_rows?id=eq.1&select=id").body,
        r#"[{"id":1}]"#
    );
}

#[test]
fn a_client_that_leaves_mid_body_gives_its_connection_back() {
    let s = server(true);
    for _ in 0..3 {
        let (mut conn, head) = raw_get(&s, "/stream_rows?select=leave_marker:id,note");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut some = [0u8; 10_000];
        conn.read_exact(&mut some).expect("the body's first bytes");
        drop(conn);
    }
    // A pool of one: this answers only once the connection is back.
    let r = s.get("/stream_rows?id=eq.2&select=id");
    assert_eq!(r.body, r#"[{"id":2}]"#);
    assert_no_backend_busy("leave_marker");
}

#[test]
fn a_body_that_fails_after_its_first_byte_breaks_off() {
    let s = server_for(true, "terminated");
    let (mut conn, head) = raw_get(&s, "/stream_rows?select=terminate_marker:id,note");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut first = vec![0u8; 64 * 1024];
    conn.read_exact(&mut first).expect("the body's first bytes");
    // The backend is held up sending the rest; end it.
    sql_exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query LIKE '%terminate_marker%' AND query NOT LIKE '%pg_stat_activity%'",
    );
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    first.extend_from_slice(&rest);
    let (body, ended) = dechunk(&first);
    assert!(!ended, "a broken body must not end with the last chunk");
    assert!(
        body.len() < 8_000_000,
        "the whole body came: {}",
        body.len()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get("/stream_rows?id=eq.3&select=id");
        if r.status == 200 {
            assert_eq!(r.body, r#"[{"id":3}]"#);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_slow_reader_gets_the_whole_body_past_the_header_timeout() {
    fixtures();
    // The header read timeout (1 s) counts waiting for a request head, never sending an
    // answer: a body read over several seconds arrives whole.
    let s = server_with(&[
        ("PGRST_DB_POOL", "1"),
        ("PGRST_SERVER_HEADER_READ_TIMEOUT", "1"),
    ]);
    let (mut conn, head) = raw_get(&s, "/stream_rows?select=id,note");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = Instant::now();
    let mut rest = Vec::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    assert!(
        started.elapsed() > Duration::from_millis(2500),
        "read too fast to test anything: {:?}",
        started.elapsed()
    );
    let (body, ended) = dechunk(&rest);
    assert!(ended, "the body broke off after {} bytes", body.len());
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        aggregated("id,note", "")
    );
}

#[test]
fn a_client_that_stops_reading_is_let_go() {
    let s = server_for(true, "stalled");
    let (conn, head) = raw_get(&s, "/stream_rows?select=stall_marker:id,note");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = Instant::now();
    // Not reading: the server gives up on this response after 10 s without progress.
    std::thread::sleep(Duration::from_secs(12));
    let r = s.get("/stream_rows?id=eq.4&select=id");
    assert_eq!(r.body, r#"[{"id":4}]"#);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_no_backend_busy("stall_marker");
    drop(conn);
}
