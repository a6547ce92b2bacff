//! PostgreSQL going away and coming back while pgrest keeps running. Its own test binary:
//! it stops the cluster the binary's other tests would share.

mod common;

use std::time::{Duration, Instant};

#[test]
fn requests_fail_fast_while_the_database_is_down_and_service_resumes() {
    let h = common::harness();
    let admin_port = pgrest::pgcluster::free_port().unwrap().to_string();
    let s = common::server_with(&[
        ("PGRST_DB_POOL_ACQUISITION_TIMEOUT", "10"),
        ("PGRST_ADMIN_SERVER_PORT", &admin_port),
    ]);
    let admin = |path: &str| {
        let url = format!("http://127.0.0.1:{admin_port}{path}");
        match ureq::get(&url).call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("admin server: {e}"),
        }
    };
    let loads = || {
        let (_, text) = admin("/metrics");
        text.lines()
            .find(|l| l.starts_with("pgrst_schema_cache_loads_total{status=\"SUCCESS\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(s.get("/numbers?limit=1").status, 200);
    assert_eq!(admin("/ready").0, 200);
    let loads_before = loads();
    // Another server with db-pool-automatic-recovery off: it exits when the database goes.
    let mut no_recovery = common::pgrest_command();
    no_recovery.env("PGRST_DB_POOL_AUTOMATIC_RECOVERY", "false");
    let (quitter, mut quitter_child) = common::spawn_server(no_recovery);
    assert_eq!(quitter.get("/numbers?limit=1").status, 200);
    h.cluster.pause().unwrap();
    let exited = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = quitter_child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            // A request meets the lost connection (the listener may see it first).
            let _ = ureq::get(&format!("http://127.0.0.1:{}/numbers", quitter.port()))
                .timeout(Duration::from_secs(2))
                .call();
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let status = exited.expect("pgrest kept running without automatic recovery");
    assert_eq!(status.code(), Some(1));
    for _ in 0..3 {
        let started = Instant::now();
        let r = s.get("/numbers?limit=1");
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(started.elapsed() < Duration::from_secs(3), "not fast");
        assert_eq!(r.json()["code"], "PGRST000");
    }
    assert_eq!(admin("/live").0, 200);
    assert_eq!(admin("/ready").0, 503);
    h.cluster.resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get("/numbers?limit=1");
        if r.status == 200 {
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
    assert_eq!(
        s.get("/numbers?limit=2").json().as_array().unwrap().len(),
        2
    );
    assert_eq!(admin("/ready").0, 200);
    // The listener reconnects with backoff and reloads the schema cache, since the
    // schema may have changed while the database was away.
    let deadline = Instant::now() + Duration::from_secs(40);
    while loads() <= loads_before {
        assert!(
            Instant::now() < deadline,
            "no schema cache reload after recovery"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
