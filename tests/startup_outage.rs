//! Starting while PostgreSQL is down: pgrest serves 503 PGRST002 with Retry-After and
//! retries with backoff until the database comes up. Its own test binary: it stops the
//! cluster its other tests would share.

mod common;

use std::time::{Duration, Instant};

fn get(url: &str) -> (u16, Option<String>, String) {
    match ureq::get(url).timeout(Duration::from_secs(5)).call() {
        Ok(r) => (
            r.status(),
            r.header("Retry-After").map(str::to_string),
            r.into_string().unwrap_or_default(),
        ),
        Err(ureq::Error::Status(code, r)) => (
            code,
            r.header("Retry-After").map(str::to_string),
            r.into_string().unwrap_or_default(),
        ),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[test]
fn pgrest_waits_for_a_database_that_comes_up_later() {
    let h = common::harness();
    h.cluster.pause().unwrap();
    let admin_port = pgrest::pgcluster::free_port().unwrap().to_string();
    let mut cmd = common::pgrest_command();
    cmd.env("PGRST_ADMIN_SERVER_PORT", &admin_port);
    let (s, mut child) = common::spawn_server(cmd);
    let admin = |path: &str| get(&format!("http://127.0.0.1:{admin_port}{path}")).0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", admin_port.parse::<u16>().unwrap())).is_err() {
        assert!(Instant::now() < deadline, "no admin server");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..3 {
        let (status, retry_after, body) = get(&format!("{}/numbers?n=eq.1", s.base));
        assert_eq!(status, 503, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "PGRST002", "{body}");
        let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
        assert!(seconds <= 32, "{seconds}");
        assert_eq!(admin("/live"), 200);
        assert_eq!(admin("/ready"), 503);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(child.try_wait().unwrap().is_none(), "pgrest exited");
    h.cluster.resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, _, body) = get(&format!("{}/numbers?n=eq.1", s.base));
        if status == 200 {
            assert_eq!(body, r#"[{"n":1}]"#);
            break;
        }
        assert!(Instant::now() < deadline, "never served: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(admin("/ready"), 200);
    let _ = child.kill();
    let _ = child.wait();
}
